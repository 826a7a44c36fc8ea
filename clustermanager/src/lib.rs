//! The cluster manager of eggroll-rs: the node registry (registrations, heartbeats, lost
//! nodes), sessions and their egg-pair processors, and the metadata of persistent stores,
//! kept in RocksDB under its data dir so it survives a restart.

pub mod catalog;
pub mod cluster;
pub mod error;
pub mod meta_store;
pub mod nodes;
pub mod service;
pub mod session;
pub mod session_entry;
pub mod status_page;
pub mod stores;

pub use cluster::Cluster;
pub use error::{CmError, Result};

use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::cluster_manager_server::ClusterManagerServer;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Serves on `listener` until `shutdown` resolves. `address` is what eggs dial to report.
pub async fn serve(
    config: EggrollConfig,
    listener: TcpListener,
    address: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    // Reading the records back is RocksDB work: not on an async worker.
    let cluster = tokio::task::spawn_blocking(move || Cluster::open(config, address))
        .await
        .map_err(|e| CmError::Internal(format!("start-up thread failed: {e}")))??;
    let cluster = Arc::new(cluster);
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let host = cluster.config.clustermanager.host.clone();
    let http_port = cluster.config.clustermanager.http_port;
    eggroll_core::ops_http::serve(
        "clustermanager",
        &host,
        http_port,
        Arc::new(status_page::ClusterView(cluster.clone())),
        async move {
            let _ = http_stopped.await;
        },
    )
    .await
    .map_err(|e| CmError::Internal(e.to_string()))?;
    let watcher = cluster.clone();
    // Failure detection and lease expiry, twice a second.
    let watch = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tick.tick().await;
            watcher.expire_nodes().await;
            watcher.expire_leases().await;
        }
    });
    let service = ClusterManagerServer::new(service::ClusterService { cluster });
    let res = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(eggroll_core::channel::incoming(listener), shutdown)
        .await;
    watch.abort();
    let _ = http_stop.send(());
    res.map_err(|e| CmError::Internal(format!("server failed: {e}")))
}
