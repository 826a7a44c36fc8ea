//! An egg-pair process: serves its session's partitions until the session ends or its node
//! manager goes away. A warm Python egg can instead be released: told `release` on its stdin,
//! it stops serving and waits for its next session (see nodemanager's `spares`).

use crate::catalog::Stores;
use crate::executor::Executor;
use crate::metrics::{EggMetrics, EggView};
use crate::service::{EggServer, MAX_MESSAGE_BYTES};
use eggroll_core::config::StorageConfig;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::egg_service_server::EggServiceServer;
use eggroll_proto::meta::ProcessorReady;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What a node manager tells an egg when it starts one.
#[derive(Clone, Debug)]
pub struct EggArgs {
    /// The session the egg serves.
    pub session_id: String,
    /// Its processor id.
    pub processor_id: u64,
    /// Where it reports that it is ready ("host:port").
    pub cluster_manager: String,
    /// Address to listen on; the port is picked by the OS.
    pub host: String,
    /// The node's data dir.
    pub data_dir: PathBuf,
    /// Storage settings.
    pub storage: StorageConfig,
    /// Exit when standard input closes (the node manager holds the other end).
    pub watch_stdin: bool,
}

/// How an egg's serving ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// Its node manager went away or asked it to stop (stdin closed, SIGTERM): it exits.
    Stopped,
    /// Its node manager released it (a `release` line on stdin) and nothing of the session
    /// runs in it any more: it may serve another session.
    Released,
}

/// The line on stdin that releases an egg (see [`Ended::Released`]).
pub use eggroll_core::processor::RELEASE_LINE as RELEASE;

/// Runs the egg until its node manager closes its stdin or releases it, or SIGTERM / Ctrl-C.
pub async fn run(args: EggArgs) -> Result<Ended, String> {
    let span =
        tracing::info_span!("eggpair", session = %args.session_id, processor = args.processor_id);
    serve(args).instrument(span).await
}

async fn serve(args: EggArgs) -> Result<Ended, String> {
    let stores =
        Stores::open_lazy(&args.data_dir, args.storage.clone()).map_err(|e| e.to_string())?;
    let stores = Arc::new(stores);
    // Persistent partitions idle for a second are closed, so eggs of other sessions on this
    // node can open them (RocksDB lets one process at a time hold a DB).
    let sweep = Arc::downgrade(&stores);
    std::thread::Builder::new()
        .name("eggroll-idle-close".into())
        .spawn(move || {
            while let Some(stores) = sweep.upgrade() {
                stores.close_idle(Duration::from_secs(1));
                drop(stores);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
        .map_err(|e| format!("cannot start the idle-close thread: {e}"))?;
    let executor = Arc::new(Executor::new(stores.clone()));
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), 0))
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.host))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("cannot read the bound address: {e}"))?
        .port();
    let endpoint = format!("{}:{port}", args.host);
    let metrics = Arc::new(EggMetrics::new(&args.session_id, args.processor_id));
    // Metrics on a port of their own, which the cluster manager lists for Prometheus.
    let (http_stop, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let view = Arc::new(EggView {
        metrics: metrics.clone(),
        stores: stores.clone(),
    });
    let http = listen_http(&args.host, view, async move {
        let _ = http_stopped.await;
    })
    .await;
    let http_endpoint = http
        .map(|a| format!("{}:{}", args.host, a.port()))
        .unwrap_or_default();
    let service = EggServiceServer::new(EggServer::new(
        executor,
        args.processor_id,
        endpoint.clone(),
        metrics,
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);

    let watch_stdin = args.watch_stdin;
    let (ended_tx, ended_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let (ended, why) = tokio::select! {
            e = stdin_event(), if watch_stdin => match e {
                StdinEvent::Release => (Ended::Released, "its node manager released it"),
                StdinEvent::Closed => (Ended::Stopped, "its node manager went away"),
            },
            _ = terminate() => (Ended::Stopped, "it was asked to stop"),
        };
        tracing::info!("egg-pair stopping: {why}");
        let _ = ended_tx.send(ended);
    };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(32 << 20)
            .add_service(service)
            .serve_with_incoming_shutdown(eggroll_core::channel::incoming(listener), shutdown),
    );
    report_ready(&args, &endpoint, &http_endpoint).await?;
    tracing::info!(%endpoint, "egg-pair serving");
    server
        .await
        .map_err(|e| format!("server task failed: {e}"))?
        .map_err(|e| format!("server failed: {e}"))?;
    let _ = http_stop.send(());
    let ended = ended_rx.await.unwrap_or(Ended::Stopped);
    if ended == Ended::Released && !settled(&stores).await {
        // A task of the session still runs (in a user's function): this process must not
        // serve another session while it does.
        tracing::warn!("a task still runs after the release: the egg exits instead");
        return Ok(Ended::Stopped);
    }
    Ok(ended)
}

/// Serves the egg's metrics on a free port of `host`; an egg without them still serves its
/// tasks, so a failure is logged, not fatal.
async fn listen_http(
    host: &str,
    view: Arc<EggView>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<std::net::SocketAddr> {
    let listener = match tokio::net::TcpListener::bind((host, 0)).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!("the egg cannot serve its metrics on {host}: {e}");
            return None;
        }
    };
    let addr = listener.local_addr().ok()?;
    eggroll_core::ops_http::serve_on(listener, view, stop);
    Some(addr)
}

/// Waits briefly until nothing but the caller holds `stores` (every task has returned).
async fn settled(stores: &Arc<Stores>) -> bool {
    for _ in 0..100 {
        if Arc::strong_count(stores) == 1 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Tells the cluster manager where this egg serves; retried briefly, since the cluster
/// manager may be busy starting the rest of the session.
async fn report_ready(args: &EggArgs, endpoint: &str, http_endpoint: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..10 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
        }
        let client = eggroll_core::channel::connect(&args.cluster_manager, "cluster manager").await;
        let mut client = match client.map(ClusterManagerClient::new) {
            Ok(c) => c,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let report = ProcessorReady {
            session_id: args.session_id.clone(),
            processor_id: args.processor_id,
            endpoint: endpoint.to_string(),
            pid: std::process::id(),
            http_endpoint: http_endpoint.to_string(),
        };
        match client.report_ready(report).await {
            Ok(_) => return Ok(()),
            Err(s) if s.code() == tonic::Code::Unavailable => last = s.message().to_string(),
            Err(s) => {
                return Err(format!(
                    "the cluster manager refused this egg: {}",
                    s.message()
                ))
            }
        }
    }
    Err(format!(
        "cannot report to the cluster manager at {}: {last}",
        args.cluster_manager
    ))
}

/// Resolves when standard input closes: the process that holds its other end (a node
/// manager, a test) has gone, however it went.
pub async fn stdin_closed() {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // A plain thread, not spawn_blocking: a runtime shutting down waits for its blocking
    // tasks, and this read may never end.
    let spawned = std::thread::Builder::new()
        .name("eggroll-stdin".into())
        .spawn(move || {
            let mut buf = [0u8; 64];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    if spawned.is_ok() {
        let _ = rx.await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// What an egg's node manager said on its stdin.
enum StdinEvent {
    /// The pipe closed.
    Closed,
    /// A [`RELEASE`] line.
    Release,
}

/// Resolves when stdin closes or says [`RELEASE`]. The node manager writes nothing after that
/// line until the egg says it is ready again, so nothing of the next assignment (which Python
/// reads) is taken here.
async fn stdin_event() -> StdinEvent {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("eggroll-stdin".into())
        .spawn(move || {
            let mut line = Vec::new();
            let mut byte = [0u8; 1];
            let mut stdin = std::io::stdin().lock();
            let event = loop {
                match stdin.read(&mut byte) {
                    Ok(1) if byte[0] == b'\n' => {
                        if line == RELEASE.as_bytes() {
                            break StdinEvent::Release;
                        }
                        line.clear();
                    }
                    Ok(1) => line.push(byte[0]),
                    _ => break StdinEvent::Closed,
                }
            };
            let _ = tx.send(event);
        });
    match spawned {
        Ok(_) => rx.await.unwrap_or(StdinEvent::Closed),
        Err(_) => std::future::pending().await,
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
