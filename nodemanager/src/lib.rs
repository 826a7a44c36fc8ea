//! The node manager of eggroll-rs: registers this machine with the cluster manager,
//! heartbeats its resources, and starts, watches and stops the egg-pair processes of each
//! session on it.

pub mod node_id;
pub mod ops;
pub mod processes;
pub mod resources;
pub mod spares;

use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::node_manager_server::{NodeManager, NodeManagerServer};
use eggroll_proto::meta::{Ack, NodeHeartbeat, NodeRegistration, StartProcessors, StopProcessors};
use processes::{EggLauncher, Supervisor};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

/// The `NodeManager` service.
struct NodeService {
    supervisor: Supervisor,
}

#[tonic::async_trait]
impl NodeManager for NodeService {
    async fn start(&self, req: Request<StartProcessors>) -> Result<Response<Ack>, Status> {
        let req = req.into_inner();
        eggroll_core::names::validate_name("session id", &req.session_id)
            .map_err(|e| Status::invalid_argument(format!("node manager: {e}")))?;
        if req.processors.is_empty() || req.cluster_manager.is_empty() {
            return Err(Status::invalid_argument(
                "node manager: a start request needs processors and the cluster manager's address",
            ));
        }
        self.supervisor
            .start(&req.session_id, &req.processors, &req.cluster_manager)
            .map_err(|e| Status::failed_precondition(format!("node manager: {e}")))?;
        Ok(Response::new(Ack {}))
    }

    async fn stop(&self, req: Request<StopProcessors>) -> Result<Response<Ack>, Status> {
        let req = req.into_inner();
        let stopping = self.supervisor.stop(Some(&req.session_id), req.kill);
        let n = stopping.count;
        tracing::info!(session = %req.session_id, eggs = n, kill = req.kill, "session's eggs ending");
        // Answered once its eggs have ended or, warm, are spares again: a session started
        // right after this one gets them.
        stopping
            .finished(processes::RELEASE_WAIT + Duration::from_secs(1))
            .await;
        Ok(Response::new(Ack {}))
    }
}

/// Serves on `listener` (reachable at `advertised` "host:port") until `shutdown` resolves,
/// then stops every egg it started.
pub async fn serve(
    config: EggrollConfig,
    listener: TcpListener,
    advertised: (String, u16),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let node_id = node_id::load_or_create(&config.data_dir)?;
    let program = if config.nodemanager.eggpair_executable.is_empty() {
        std::env::current_exe().map_err(|e| format!("cannot find this program's path: {e}"))?
    } else {
        config.nodemanager.eggpair_executable.clone().into()
    };
    let data_dir = std::path::absolute(&config.data_dir)
        .map_err(|e| format!("bad data dir {}: {e}", config.data_dir.display()))?;
    let supervisor = Supervisor::new(EggLauncher {
        program,
        python: config.nodemanager.python_executable.clone().into(),
        data_dir: data_dir.clone(),
        logs_dir: config.logs_dir.clone(),
        host: advertised.0.clone(),
        node_id,
        python_spares: config.nodemanager.python_spares as usize,
        python_preload: config.nodemanager.python_preload.clone(),
    });
    supervisor.refill_spares();
    let registration = NodeRegistration {
        node_id,
        host: advertised.0.clone(),
        port: advertised.1 as u32,
        cpus: match config.nodemanager.cpus {
            0 => resources::cpus(),
            n => n,
        },
        memory_bytes: resources::memory().0,
        data_dir: data_dir.display().to_string(),
        http_port: 0,
    };
    let registered = Arc::new(AtomicBool::new(false));
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let view = Arc::new(ops::NodeView {
        supervisor: supervisor.clone(),
        node_id,
        registered: registered.clone(),
    });
    let http = eggroll_core::ops_http::serve(
        "nodemanager",
        &advertised.0,
        config.nodemanager.http_port,
        view,
        async move {
            let _ = http_stopped.await;
        },
    )
    .await
    .map_err(|e| e.to_string())?;
    let registration = NodeRegistration {
        http_port: u32::from(http.port()),
        ..registration
    };
    tracing::info!(node = node_id, "node manager starting");
    let beat = tokio::spawn(heartbeat_loop(
        config.clone(),
        registration,
        supervisor.clone(),
        registered,
    ));
    let service = NodeManagerServer::new(NodeService {
        supervisor: supervisor.clone(),
    });
    let res = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(eggroll_core::channel::incoming(listener), shutdown)
        .await;
    beat.abort();
    let _ = http_stop.send(());
    // Give the eggs their moment to end before this process (and their pipes) go. (Polling
    // `count` would not do: `stop` takes them off the running map at once.)
    supervisor
        .stop(None, false)
        .finished(Duration::from_secs(5))
        .await;
    res.map_err(|e| format!("server failed: {e}"))
}

/// Registers, then heartbeats; registers again (ending its eggs, which the cluster manager
/// no longer knows) when the cluster manager has forgotten or given up on this node.
async fn heartbeat_loop(
    config: EggrollConfig,
    registration: NodeRegistration,
    supervisor: Supervisor,
    ready: Arc<AtomicBool>,
) {
    let cm = config.clustermanager.address();
    let mut interval = Duration::from_millis(config.nodemanager.heartbeat_interval_ms.max(50));
    let mut registered = false;
    loop {
        let client = eggroll_core::channel::connect(&cm, "cluster manager")
            .await
            .map(ClusterManagerClient::new);
        match client {
            Err(e) => {
                tracing::warn!("cluster manager at {cm} unreachable: {e}");
            }
            Ok(mut client) => {
                if !registered {
                    match client.register_node(registration.clone()).await {
                        Ok(ack) => {
                            registered = true;
                            ready.store(true, Ordering::Relaxed);
                            let ms = ack.into_inner().heartbeat_interval_ms;
                            if ms > 0 {
                                interval = interval.min(Duration::from_millis(ms));
                            }
                            tracing::info!(
                                node = registration.node_id,
                                "registered with the cluster manager at {cm}"
                            );
                        }
                        Err(s) => tracing::warn!("registration refused: {}", s.message()),
                    }
                }
                while registered {
                    let (_, available) = resources::memory();
                    let hb = NodeHeartbeat {
                        node_id: registration.node_id,
                        load: resources::load(),
                        memory_available_bytes: available,
                        running_processors: supervisor.count() as u32,
                    };
                    match client.heartbeat(hb).await {
                        Ok(ack) if ack.get_ref().known => {}
                        Ok(_) => {
                            let n = supervisor.stop(None, true).count;
                            tracing::warn!(
                                eggs = n,
                                "the cluster manager no longer knows this node; registering again"
                            );
                            registered = false;
                            ready.store(false, Ordering::Relaxed);
                        }
                        Err(s) => {
                            tracing::warn!("heartbeat failed: {}", s.message());
                            break;
                        }
                    }
                    if registered {
                        tokio::time::sleep(interval).await;
                    }
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}
