//! `eggroll`: the one binary of eggroll-rs, a subcommand per role.
//!
//! A crate of your own functions gets into the eggs by linking it into a binary whose `main`
//! calls [`main`], and pointing `nodemanager.eggpair_executable` at that binary.

mod allocator;
mod bench;
mod bench_fate;
mod bench_federation;
mod bench_latency;
mod client;
mod daemons;
mod demo;
mod deploy;
pub mod local_cluster;
mod node;
mod ping;
mod progress;
mod psi;
mod rollsite;
mod session;
mod table;
pub mod two_parties;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// eggroll-rs: partitioned key/value tables and map/reduce for federated learning.
#[derive(Parser)]
#[command(name = "eggroll", version, about)]
struct Cli {
    /// Config file (TOML); every key can also be set by an EGGROLL_* variable.
    #[arg(long, global = true, env = "EGGROLL_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cluster manager (sessions, store metadata, node registry).
    Clustermanager(daemons::ClusterManagerArgs),
    /// Run a node manager (starts the egg-pair processes of sessions on this machine).
    Nodemanager(daemons::NodeManagerArgs),
    /// Run one egg-pair process (started by a node manager, not by hand).
    #[command(hide = true)]
    Eggpair(daemons::EggPairArgs),
    /// Run a whole cluster on this machine (a cluster manager and node managers), for trials.
    LocalCluster(local_cluster::LocalClusterArgs),
    /// The nodes of a cluster.
    Node(node::NodeArgs),
    /// The sessions of a cluster.
    Session(session::SessionArgs),
    /// Run the roll-site, the federation gateway of one party (EggRoll's wire protocol).
    Rollsite(rollsite::RollsiteArgs),
    /// Check the route to another party hop by hop: each roll-site's address, TLS and round
    /// trip, and the hop that fails and why.
    Ping(ping::PingArgs),
    /// One party's side of a two-party private set intersection, through its roll-site.
    Psi(psi::PsiArgs),
    /// Inspect the tables of a cluster or of a standalone data dir.
    Table(table::TableArgs),
    /// Measure put_all, get_all, count, map_values, reduce and join against raw RocksDB
    /// (--latency: p50 and p99 of every op on a small table).
    Bench(bench::BenchArgs),
    /// Run the main job: a private set intersection between two parties on this machine.
    Demo(demo::DemoArgs),
    /// Deployment: render a party file into Kubernetes manifests or a docker-compose bundle.
    Deploy(deploy::DeployArgs),
}

/// Parses the command line and runs the subcommand; the whole `eggroll` program.
pub fn main() -> ExitCode {
    allocator::cap_arenas();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EGGROLL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal: egg and daemon logs are files, quoted in errors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let config = match eggroll_core::config::EggrollConfig::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(path) = &cli.config {
        // Eggs started by a node manager read the same file.
        std::env::set_var("EGGROLL_CONFIG", path);
    }
    let result = match cli.command {
        Command::Clustermanager(args) => daemons::clustermanager(args, config),
        Command::Nodemanager(args) => daemons::nodemanager(args, config),
        Command::Eggpair(args) => daemons::eggpair(args, config),
        Command::LocalCluster(args) => local_cluster::run(args),
        Command::Node(args) => node::run(args, config),
        Command::Session(args) => session::run(args, config),
        Command::Rollsite(args) => rollsite::run(args, config),
        Command::Ping(args) => ping::run(args, config),
        Command::Psi(args) => psi::run(args, config),
        Command::Table(args) => table::run(args, config),
        Command::Bench(args) => bench::run(args, config),
        Command::Demo(args) => demo::run(args, config),
        Command::Deploy(args) => deploy::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
