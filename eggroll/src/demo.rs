//! `eggroll demo`: the main job. Two parties on this machine, guest 9999 and host 10000, each
//! with its own roll-site and cluster, find the ids they share with a private set
//! intersection: real gRPC between the roll-sites, no id outside the intersection crossing.
//! The answer is checked against the overlap the generated ids were made with.

use crate::two_parties::{Setup, TwoParties};
use clap::Args;
use eggroll_core::config::EggrollConfig;
use eggroll_psi::crypto::Secret;
use eggroll_psi::{demo_ids, Role};
use std::time::{Duration, Instant};

/// Arguments of `eggroll demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Ids per party.
    #[arg(long, default_value_t = 100_000)]
    ids: u64,
    /// Ids both parties hold (the known answer).
    #[arg(long, default_value_t = 30_000)]
    overlap: u64,
    /// Partitions of each party's id table.
    #[arg(long, default_value_t = 8)]
    partitions: u32,
    /// Run each party on a local cluster of daemons (cluster manager, node managers, egg-pair
    /// processes) instead of standalone.
    #[arg(long)]
    cluster: bool,
    /// Where the parties keep their data (default: a temporary dir removed at the end).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

/// The same curve operations as the PSI does per id, in one thread of this process: hash and
/// blind an own id, blind a peer's point. The baseline the PSI's throughput is measured against.
fn curve_baseline(n: u64) -> Result<Duration, String> {
    let (a, b) = (Secret::random()?, Secret::random()?);
    let started = Instant::now();
    for i in 0..n {
        let id = format!("id-{i}");
        let p = a.hash_and_blind(id.as_bytes());
        std::hint::black_box(b.blind(&p));
    }
    Ok(started.elapsed())
}

/// Runs the demo and prints the checked answer, each phase's time and the bytes exchanged.
pub fn run(args: DemoArgs, config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let scratch = tempfile::tempdir()?;
    let root = args
        .data_dir
        .clone()
        .unwrap_or_else(|| scratch.path().to_path_buf());
    let expected = args.overlap.min(args.ids);
    println!(
        "eggroll demo: private set intersection between guest 9999 and host 10000, {} ids each, {} shared, {} mode",
        args.ids,
        expected,
        if args.cluster { "cluster" } else { "standalone" }
    );
    let setup = Setup {
        cluster: if args.cluster {
            Some(std::env::current_exe()?)
        } else {
            None
        },
        tls: None,
        // The user's storage settings (from --config or EGGROLL_STORAGE_*), so that a memory
        // budget set there holds for the parties.
        storage: config.storage,
    };
    let job = format!("psi_demo_{}", eggroll_core::clock::epoch_millis());
    let parties = TwoParties::start(&root, &job, &setup).map_err(|e| e.to_string())?;
    println!(
        "roll-sites: guest at {}, host at {}",
        parties.guest.site.addr(),
        parties.host.site.addr()
    );
    let multi = indicatif::MultiProgress::new();
    let progress = |who: &str| -> Box<dyn eggroll_psi::Progress + Send> {
        Box::new(crate::progress::Phases::new_in(&multi, who))
    };
    let started = Instant::now();
    let result = parties.psi(
        demo_ids(Role::Guest, args.ids, args.overlap),
        demo_ids(Role::Host, args.ids, args.overlap),
        args.partitions,
        &progress,
    );
    let elapsed = started.elapsed();
    let _ = multi.clear();
    parties.stop().map_err(|e| e.to_string())?;
    let (guest, host) = result.map_err(|e| e.to_string())?;

    for (who, out) in [("guest 9999", &guest), ("host 10000", &host)] {
        println!("\n{who}:");
        for (phase, d) in &out.phases {
            println!("  {phase:<40} {:>8.2} s", d.as_secs_f64());
        }
        println!(
            "  sent {} to the other party",
            crate::client::bytes(out.bytes_sent)
        );
    }
    let baseline = curve_baseline(args.ids.min(20_000))?;
    let per_party = args.ids as f64 / elapsed.as_secs_f64().max(1e-9);
    let base_rate = args.ids.min(20_000) as f64 / baseline.as_secs_f64().max(1e-9);
    println!(
        "\nthroughput: {per_party:.0} ids/s per party ({:.2} s for both parties at once); \
         the same curve operations in one thread: {base_rate:.0} ids/s (ratio {:.2})",
        elapsed.as_secs_f64(),
        per_party / base_rate.max(1e-9)
    );
    let (g, h) = (
        guest.intersection.len() as u64,
        host.intersection.len() as u64,
    );
    let agree = guest.intersection == host.intersection;
    let all_shared = guest.intersection.iter().all(|id| {
        id.strip_prefix("id-")
            .and_then(|i| i.parse::<u64>().ok())
            .is_some_and(|i| i >= args.ids - expected && i < args.ids)
    });
    if g == expected && agree && all_shared {
        println!("intersection: {g} ids (expected {expected}, correct); both parties agree");
        Ok(())
    } else {
        Err(format!(
            "intersection WRONG: guest found {g}, host {h}, expected {expected} (agree: {agree}, all shared: {all_shared})"
        )
        .into())
    }
}
