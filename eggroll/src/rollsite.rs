//! `eggroll rollsite`: run the federation gateway of one party.

use clap::Args;
use eggroll_core::config::EggrollConfig;
use std::path::PathBuf;

/// Arguments of `eggroll rollsite`; each overrides the `[rollsite]` config key of its name.
#[derive(Args)]
pub struct RollsiteArgs {
    /// This party's id (rollsite.party_id).
    #[arg(long)]
    party_id: Option<String>,
    /// Address to listen on.
    #[arg(long)]
    host: Option<String>,
    /// Plaintext port (default 9370).
    #[arg(long)]
    port: Option<u16>,
    /// Mutual-TLS port, open when a certificate is set (default 9371).
    #[arg(long)]
    secure_port: Option<u16>,
    /// EggRoll route-table JSON; reloaded when it changes.
    #[arg(long)]
    route_table: Option<PathBuf>,
    /// Durable receive buffer (default: <data_dir>/rollsite).
    #[arg(long)]
    buffer_dir: Option<PathBuf>,
    /// PEM certificate of this party.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate.
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// PEM certificate of the CA this party trusts.
    #[arg(long)]
    tls_ca: Option<PathBuf>,
    /// host:port of an exchange to receive through a polling stream (no inbound port needed).
    #[arg(long)]
    polling_exchange: Option<String>,
    /// HTTP port of /healthz, /readyz, /metrics and the status page (default 9380; 0: any).
    #[arg(long)]
    http_port: Option<u16>,
    /// Check the route table, print where each party goes, and exit.
    #[arg(long)]
    check: bool,
    /// Exit when stdin closes (for a parent process that owns this roll-site).
    #[arg(long)]
    exit_with_stdin: bool,
}

/// Runs the roll-site until Ctrl-C or SIGTERM.
pub fn run(
    args: RollsiteArgs,
    mut config: EggrollConfig,
) -> Result<(), Box<dyn std::error::Error>> {
    let rs = &mut config.rollsite;
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = args.$f { rs.$f = v; } )* };
    }
    set!(
        party_id,
        host,
        port,
        secure_port,
        route_table,
        buffer_dir,
        tls_cert,
        tls_key,
        tls_ca,
        polling_exchange,
        http_port
    );
    if args.check {
        let routes = eggroll_rollsite::route::Routes::load(&rs.route_table)?;
        println!("route table {} is valid", routes.table().source());
        return Ok(());
    }
    crate::allocator::tune_for_packets();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rollsite")
        .build()?;
    let exit_with_stdin = args.exit_with_stdin;
    runtime.block_on(async {
        tokio::select! {
            r = eggroll_rollsite::serve(&config) => r,
            _ = eggroll_eggpair::process::stdin_closed(), if exit_with_stdin => Ok(()),
        }
    })?;
    Ok(())
}
