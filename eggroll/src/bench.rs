//! `eggroll bench`: roll-pair throughput beside raw RocksDB on the same data, in the same run.
//! Ratios, not timings, are the figures to compare: this machine is shared and noisy.

use clap::Args;
use eggroll_core::codec::{encode, Bytes};
use eggroll_core::config::EggrollConfig;
use eggroll_core::functions::{Function, Join, MapValues, SeqOp};
use eggroll_core::register;
use eggroll_eggpair::baseline;
use eggroll_rollpair::{Options, RollPairContext};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Arguments of `eggroll bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Pairs in the table.
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Partitions of the table.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Measure roll-site object and table transfers beside raw TCP and raw tonic instead.
    #[arg(long)]
    federation: bool,
    /// Object size for --federation, in MiB.
    #[arg(long, default_value_t = 1024)]
    object_mib: u64,
}

#[derive(Serialize, Deserialize)]
struct FlipFirst;
impl Function for FlipFirst {
    const NAME: &'static str = "bench::FlipFirst";
}
impl MapValues for FlipFirst {
    type V = Bytes;
    type Out = Bytes;
    fn map_values(&self, mut v: Bytes) -> Bytes {
        flip(&mut v.0);
        v
    }
}
register!(map_values: FlipFirst);

fn flip(v: &mut [u8]) {
    if let Some(b) = v.first_mut() {
        *b ^= 0xff;
    }
}

#[derive(Serialize, Deserialize)]
struct TotalLen;
impl Function for TotalLen {
    const NAME: &'static str = "bench::TotalLen";
}
impl SeqOp for TotalLen {
    type Acc = u64;
    type V = Bytes;
    fn seq_op(&self, acc: u64, v: Bytes) -> u64 {
        acc + v.len() as u64
    }
}
register!(seq_op: TotalLen);

#[derive(Serialize, Deserialize)]
struct Left;
impl Function for Left {
    const NAME: &'static str = "bench::Left";
}
impl Join for Left {
    type V = Bytes;
    type W = Bytes;
    type Out = Bytes;
    fn join(&self, v: Bytes, _: Bytes) -> Bytes {
        v
    }
}
register!(join: Left);

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-9)
}

/// Runs the benchmark and prints a table of rows per second and ratios.
pub fn run(args: BenchArgs, mut config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    if args.federation {
        let sizes = (
            args.object_mib,
            args.rows,
            args.value_bytes,
            args.partitions,
        );
        return crate::bench_federation::run(sizes, config);
    }
    let dir = tempfile::tempdir()?;
    config.data_dir = dir.path().join("eggroll");
    let n = args.rows;
    println!(
        "eggroll bench: {n} pairs, {}-byte values, {} partitions, {} cores; data in {}",
        args.value_bytes,
        args.partitions,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        dir.path().display()
    );
    let value = |i: u64| {
        let mut v = vec![0u8; args.value_bytes];
        for (j, b) in v.iter_mut().enumerate() {
            *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
        }
        Bytes(v)
    };

    // Baseline: the same encoded pairs straight into one RocksDB.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| Ok((encode(&i)?, encode(&value(i))?)))
        .collect::<Result<_, eggroll_core::CoreError>>()?;
    let raw_dir = dir.path().join("raw");
    let raw_write = baseline::write(&raw_dir, &encoded, 40_000)?;
    drop(encoded);
    let (raw_scan, scanned) = baseline::scan(&raw_dir)?;
    let raw_scan_write =
        baseline::scan_write(&raw_dir, &dir.path().join("raw-copy"), 40_000, |v| {
            let mut v = v.to_vec();
            flip(&mut v);
            v
        })?;
    if scanned != n {
        return Err(format!("raw scan saw {scanned} pairs, expected {n}").into());
    }

    let ctx = RollPairContext::standalone_with(&config)?;
    let opts = Options::persistent("bench", "table", args.partitions);
    // Values are `Bytes`: the type for blobs (encoded as Vec<u8> is, decoded in one copy).
    let table = ctx.create::<u64, Bytes>(opts)?;
    let t = Instant::now();
    table.put_all((0..n).map(|i| (i, value(i))))?;
    let put_all = t.elapsed();
    // Untimed, as for the baseline: scans below read compacted partitions, not a compaction
    // racing them.
    table.compact()?;

    let t = Instant::now();
    let mut got = 0u64;
    for pair in table.get_all()? {
        let (_, v) = pair?;
        got += (!v.is_empty()) as u64;
    }
    let get_all = t.elapsed();

    let t = Instant::now();
    let counted = table.count()?;
    let count = t.elapsed();

    let t = Instant::now();
    let mapped = table.map_values(&FlipFirst)?;
    let map_values = t.elapsed();

    let t = Instant::now();
    let total = table.aggregate(&0u64, &TotalLen, &eggroll_core::functions::builtin::SumU64)?;
    let reduce = t.elapsed();

    let t = Instant::now();
    let joined = table.join(&mapped, &Left)?;
    let join = t.elapsed();
    let joined_count = joined.count()?;

    if got != n || counted != n || total != n * args.value_bytes as u64 || joined_count != n {
        return Err(format!("wrong results: get_all {got}, count {counted}, total bytes {total}, join {joined_count}").into());
    }
    let row = |name: &str, ours: Duration, base: Duration, base_name: &str, target: &str| {
        println!(
            "{name:<12} {:>12.0} rows/s   raw {base_name:<16} {:>12.0} rows/s   ratio {:>5.2}  {target}",
            rate(n, ours),
            rate(n, base),
            base.as_secs_f64() / ours.as_secs_f64().max(1e-9)
        );
    };
    println!();
    row(
        "put_all",
        put_all,
        raw_write,
        "batch write",
        "(target >= 0.6)",
    );
    row("get_all", get_all, raw_scan, "scan", "(target >= 0.6)");
    row("count", count, raw_scan, "scan", "(target >= 0.6)");
    row(
        "map_values",
        map_values,
        raw_scan_write,
        "scan+write",
        "(target >= 0.4)",
    );
    row("reduce", reduce, raw_scan, "scan", "");
    row("join", join, raw_scan_write, "scan+write", "");
    ctx.stop()?;
    Ok(())
}
