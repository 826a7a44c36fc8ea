//! `eggroll`: the one binary of eggroll-rs, a subcommand per role.

mod bench;
mod bench_federation;
mod demo;
mod rollsite;
mod table;

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
    /// Inspect the tables of a standalone data dir.
    Table(table::TableArgs),
    /// Measure put_all, get_all, count, map_values, reduce and join against raw RocksDB.
    Bench(bench::BenchArgs),
    /// Run the main job in standalone mode and print what it computed.
    Demo(demo::DemoArgs),
    /// Run the roll-site, the federation gateway of one party (EggRoll's wire protocol).
    Rollsite(rollsite::RollsiteArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("EGGROLL_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let config = match eggroll_core::config::EggrollConfig::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Table(args) => table::run(args, config),
        Command::Bench(args) => bench::run(args, config),
        Command::Demo(args) => demo::run(args, config),
        Command::Rollsite(args) => rollsite::run(args, config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
