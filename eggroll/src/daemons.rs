//! `eggroll clustermanager`, `eggroll nodemanager` and `eggroll eggpair`: the daemons of a
//! cluster. Flags override the config file and `EGGROLL_*` variables.

use clap::Args;
use eggroll_core::config::EggrollConfig;
use std::io::Write;
use std::path::PathBuf;

type CliResult = Result<(), Box<dyn std::error::Error>>;

/// Flags every daemon shares.
#[derive(Args)]
pub struct DaemonFlags {
    /// Address to listen on (and to advertise).
    #[arg(long)]
    host: Option<String>,
    /// Port to listen on; 0 picks a free one (printed on start).
    #[arg(long)]
    port: Option<u16>,
    /// HTTP port of /healthz, /readyz and /metrics (and the cluster manager's status page);
    /// 0 picks a free one, printed on standard error.
    #[arg(long)]
    http_port: Option<u16>,
    /// Data dir.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Log dir.
    #[arg(long)]
    logs_dir: Option<PathBuf>,
    /// Exit when standard input closes: for tests and supervisors that hold a pipe to it.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
}

/// Arguments of `eggroll clustermanager`.
#[derive(Args)]
pub struct ClusterManagerArgs {
    #[command(flatten)]
    flags: DaemonFlags,
    /// A node manager silent for this long is marked LOST.
    #[arg(long)]
    heartbeat_timeout_ms: Option<u64>,
    /// Default egg-pair processes per node of a session.
    #[arg(long)]
    processors_per_node: Option<u64>,
    /// Default time a session may take to start.
    #[arg(long)]
    session_start_timeout_ms: Option<u64>,
    /// The address eggs dial to report, when --host is a wildcard such as 0.0.0.0.
    #[arg(long)]
    advertise_host: Option<String>,
}

/// Arguments of `eggroll nodemanager`.
#[derive(Args)]
pub struct NodeManagerArgs {
    #[command(flatten)]
    flags: DaemonFlags,
    /// The cluster manager's address ("host:port").
    #[arg(long, env = "EGGROLL_CLUSTER_MANAGER")]
    cluster_manager: Option<String>,
    /// How often to heartbeat.
    #[arg(long)]
    heartbeat_interval_ms: Option<u64>,
    /// The program run as `<program> eggpair ...` for each egg.
    #[arg(long)]
    eggpair_executable: Option<String>,
}

/// Arguments of `eggroll eggpair` (set by the node manager).
#[derive(Args)]
pub struct EggPairArgs {
    #[arg(long)]
    session_id: String,
    #[arg(long)]
    processor_id: u64,
    #[arg(long)]
    cluster_manager: String,
    #[arg(long)]
    host: String,
    #[arg(long)]
    data_dir: PathBuf,
}

fn runtime() -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Applies the shared flags to the config and picks the endpoint section to fill.
fn apply(flags: &DaemonFlags, config: &mut EggrollConfig) {
    if let Some(d) = &flags.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(d) = &flags.logs_dir {
        config.logs_dir = d.clone();
    }
}

/// Binds `host:port`, and prints the bound address so scripts and tests can find it.
async fn bind(
    role: &str,
    host: &str,
    port: u16,
) -> Result<(tokio::net::TcpListener, u16), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("{role} cannot listen on {host}:{port}: {e}"))?;
    let port = listener.local_addr()?.port();
    println!("{role} listening on {host}:{port}");
    std::io::stdout().flush()?;
    Ok((listener, port))
}

/// Resolves on SIGTERM, Ctrl-C, or (with `--exit-with-stdin`) when stdin closes.
async fn shutdown(exit_with_stdin: bool) {
    tokio::select! {
        _ = eggroll_eggpair::process::terminate() => {}
        _ = eggroll_eggpair::process::stdin_closed(), if exit_with_stdin => {}
    }
}

/// Runs `eggroll clustermanager`.
pub fn clustermanager(args: ClusterManagerArgs, mut config: EggrollConfig) -> CliResult {
    apply(&args.flags, &mut config);
    if let Some(h) = &args.flags.host {
        config.clustermanager.host = h.clone();
    }
    if let Some(p) = args.flags.port {
        config.clustermanager.port = p;
    }
    if let Some(p) = args.flags.http_port {
        config.clustermanager.http_port = p;
    }
    if let Some(t) = args.heartbeat_timeout_ms {
        config.clustermanager.heartbeat_timeout_ms = t;
    }
    if let Some(n) = args.processors_per_node {
        config.session.processors_per_node = n;
    }
    if let Some(t) = args.session_start_timeout_ms {
        config.session.start_timeout_ms = t;
    }
    if let Some(h) = &args.advertise_host {
        config.clustermanager.advertise_host = h.clone();
    }
    let advertise = match config.clustermanager.advertise_host.trim() {
        "" => config.clustermanager.host.clone(),
        h => h.to_string(),
    };
    if matches!(advertise.as_str(), "0.0.0.0" | "::" | "[::]") {
        return Err(format!(
            "clustermanager.host is {advertise}, which eggs on other machines cannot dial; set clustermanager.advertise_host (EGGROLL_CLUSTERMANAGER_ADVERTISE_HOST, --advertise-host) to this machine's address"
        )
        .into());
    }
    runtime()?.block_on(async move {
        let host = config.clustermanager.host.clone();
        let (listener, port) = bind("clustermanager", &host, config.clustermanager.port).await?;
        let advertised = format!("{advertise}:{port}");
        eggroll_clustermanager::serve(
            config,
            listener,
            advertised,
            shutdown(args.flags.exit_with_stdin),
        )
        .await?;
        Ok(())
    })
}

/// Runs `eggroll nodemanager`.
pub fn nodemanager(args: NodeManagerArgs, mut config: EggrollConfig) -> CliResult {
    apply(&args.flags, &mut config);
    if let Some(h) = &args.flags.host {
        config.nodemanager.host = h.clone();
    }
    if let Some(p) = args.flags.port {
        config.nodemanager.port = p;
    }
    if let Some(p) = args.flags.http_port {
        config.nodemanager.http_port = p;
    }
    if let Some(addr) = &args.cluster_manager {
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("--cluster-manager {addr:?} is not host:port"))?;
        config.clustermanager.host = host;
        config.clustermanager.port = port;
    }
    if let Some(t) = args.heartbeat_interval_ms {
        config.nodemanager.heartbeat_interval_ms = t;
    }
    if let Some(e) = &args.eggpair_executable {
        config.nodemanager.eggpair_executable = e.clone();
    }
    runtime()?.block_on(async move {
        let host = config.nodemanager.host.clone();
        let (listener, port) = bind("nodemanager", &host, config.nodemanager.port).await?;
        eggroll_nodemanager::serve(
            config,
            listener,
            (host, port),
            shutdown(args.flags.exit_with_stdin),
        )
        .await?;
        Ok(())
    })
}

/// Runs `eggroll eggpair`.
pub fn eggpair(args: EggPairArgs, config: EggrollConfig) -> CliResult {
    let egg = eggroll_eggpair::process::EggArgs {
        session_id: args.session_id,
        processor_id: args.processor_id,
        cluster_manager: args.cluster_manager,
        host: args.host,
        data_dir: args.data_dir,
        storage: config.storage,
        watch_stdin: true,
    };
    // A Rust egg is never recycled: released or stopped, it exits.
    runtime()?.block_on(eggroll_eggpair::process::run(egg))?;
    Ok(())
}
