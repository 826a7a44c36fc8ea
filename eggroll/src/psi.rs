//! `eggroll psi`: one party's side of the two-party private set intersection, talking to the
//! other party through its roll-site. Standalone by default; `--cluster-manager` runs it on
//! the party's cluster.

use clap::{Args, ValueEnum};
use eggroll_core::config::EggrollConfig;
use eggroll_federation::{BlockingFederation, FederationOptions, Party};
use eggroll_psi::{demo_ids, Role};
use eggroll_rollpair::{Options, RollPairContext, SessionOptions};
use std::io::BufRead;
use std::path::PathBuf;
use std::time::Instant;

/// Which side this party plays.
#[derive(Clone, Copy, ValueEnum)]
pub enum RoleArg {
    /// Learns the intersection and tells the host.
    Guest,
    /// Learns the intersection from the guest.
    Host,
}

/// Arguments of `eggroll psi`.
#[derive(Args)]
pub struct PsiArgs {
    /// This party's role.
    #[arg(long, value_enum)]
    role: RoleArg,
    /// This party's id.
    #[arg(long)]
    party_id: String,
    /// The other party's id.
    #[arg(long)]
    peer_party_id: String,
    /// The job id; both parties must use the same one.
    #[arg(long)]
    job_id: String,
    /// A file of ids, one per line.
    #[arg(long, conflicts_with = "generate")]
    ids: Option<PathBuf>,
    /// Generate this many demo ids (the guest `id-0..`, the host shifted by n - overlap).
    #[arg(long)]
    generate: Option<u64>,
    /// With --generate: how many ids both parties hold; the answer is checked against it.
    #[arg(long, default_value_t = 0)]
    overlap: u64,
    /// This party's roll-site ("host:port"); default: the config's rollsite host and port.
    #[arg(long)]
    rollsite: Option<String>,
    /// Run on this cluster ("host:port") instead of standalone.
    #[arg(long, env = "EGGROLL_CLUSTER_MANAGER")]
    cluster_manager: Option<String>,
    /// Partitions of the id table.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Write the intersection's ids here, one per line.
    #[arg(long)]
    output: Option<PathBuf>,
}

/// Runs `eggroll psi`.
pub fn run(args: PsiArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let role = match args.role {
        RoleArg::Guest => Role::Guest,
        RoleArg::Host => Role::Host,
    };
    let (peer_role, me) = match role {
        Role::Guest => ("host", Party::new("guest", &args.party_id)),
        Role::Host => ("guest", Party::new("host", &args.party_id)),
    };
    let peer = Party::new(peer_role, &args.peer_party_id);
    let scratch = tempfile::tempdir()?;
    let ctx = match &args.cluster_manager {
        Some(addr) => RollPairContext::connect(
            addr,
            SessionOptions {
                name: format!("psi {}", args.job_id),
                ..Default::default()
            },
        )?,
        None => {
            let mut c = config.clone();
            c.data_dir = scratch.path().to_path_buf();
            RollPairContext::standalone_with(&c)?
        }
    };
    let rollsite = args
        .rollsite
        .clone()
        .unwrap_or_else(|| format!("{}:{}", config.rollsite.host, config.rollsite.port));
    let fed = BlockingFederation::connect(
        &rollsite,
        &args.job_id,
        me,
        FederationOptions::from_config(&config.rollsite),
    )?;
    let (ids, expected) = match (&args.ids, args.generate) {
        (Some(path), _) => {
            let file = std::fs::File::open(path)
                .map_err(|e| format!("cannot read ids from {}: {e}", path.display()))?;
            let ids: Vec<String> = std::io::BufReader::new(file)
                .lines()
                .collect::<Result<_, _>>()?;
            (ids, None)
        }
        (None, Some(n)) => (
            demo_ids(role, n, args.overlap).collect(),
            Some(args.overlap.min(n)),
        ),
        (None, None) => return Err("give --ids FILE or --generate N".into()),
    };
    let n = ids.len();
    let table = ctx.parallelize(
        ids.into_iter().map(|id| (id, ())),
        Options::partitions(args.partitions),
    )?;
    let started = Instant::now();
    let progress = crate::progress::Phases::new(role.name());
    let outcome = eggroll_psi::run(role, &table, &fed, &peer, &progress);
    progress.finish();
    ctx.stop()?;
    let outcome = outcome?;
    let elapsed = started.elapsed();
    for (phase, d) in &outcome.phases {
        println!("  {phase:<40} {:>8.2} s", d.as_secs_f64());
    }
    println!(
        "{}: {n} ids, {:.0} ids/s, {} sent to the {peer_role}",
        role.name(),
        n as f64 / elapsed.as_secs_f64().max(1e-9),
        crate::client::bytes(outcome.bytes_sent)
    );
    // Exact figures, for checks against the roll-sites' metrics.
    println!(
        "{}: sent {} transfers, {} bytes of data",
        role.name(),
        outcome.transfers_sent,
        outcome.bytes_sent
    );
    let found = outcome.intersection.len() as u64;
    if let Some(path) = &args.output {
        std::fs::write(path, outcome.intersection.join("\n"))?;
    }
    match expected {
        Some(e) if e == found => println!("intersection: {found} ids (expected {e}, correct)"),
        Some(e) => {
            return Err(format!("intersection: {found} ids, but {e} were expected: WRONG").into())
        }
        None => println!("intersection: {found} ids"),
    }
    Ok(())
}
