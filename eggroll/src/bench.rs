//! `eggroll bench`: roll-pair throughput beside raw RocksDB on the same data, in the same run.
//! Ratios, not timings, are the figures to compare: this machine is shared and noisy.

use crate::local_cluster::{ClusterSpec, LocalCluster};
use clap::Args;
use eggroll_core::codec::{encode, Bytes};
use eggroll_core::config::EggrollConfig;
use eggroll_core::functions::{Join, MapValues, SeqOp};
use eggroll_eggpair::baseline;
use eggroll_rollpair::{Options, RollPairContext, SessionOptions};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Arguments of `eggroll bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Pairs in the table (default 2,000,000; with --latency 1,000).
    #[arg(long)]
    rows: Option<u64>,
    /// Bytes per value.
    #[arg(long, default_value_t = 100)]
    value_bytes: usize,
    /// Partitions of the table.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Also run on a local two-node cluster (a cluster manager and two node managers as
    /// child processes) and print its figures beside the standalone ones.
    #[arg(long)]
    cluster: bool,
    /// Measure roll-site object and table transfers beside raw TCP and raw tonic instead.
    #[arg(long)]
    federation: bool,
    /// Object size for --federation, in MiB.
    #[arg(long, default_value_t = 1024)]
    object_mib: u64,
    /// Measure each op's latency (p50, p99) on a small table instead, standalone and on a
    /// local two-node cluster, and a small remote + get between two parties.
    #[arg(long, conflicts_with_all = ["federation", "cluster"])]
    latency: bool,
    /// Timed calls per op for --latency.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Also run the same ops on FATE 2.2's standalone engine (with the project's FATE venv,
    /// `make fate-venv`, or the Python in EGGROLL_FATE_PYTHON) and print the ratios.
    #[arg(long, conflicts_with_all = ["federation", "latency"])]
    vs_fate: bool,
}

impl BenchArgs {
    /// Pairs in the table: as given, else the mode's default.
    fn rows(&self) -> u64 {
        self.rows
            .unwrap_or(if self.latency { 1_000 } else { 2_000_000 })
    }
}

#[derive(Serialize, Deserialize)]
struct FlipFirst;
#[eggroll_core::function]
impl MapValues for FlipFirst {
    fn map_values(&self, mut v: Bytes) -> Bytes {
        flip(&mut v.0);
        v
    }
}

fn flip(v: &mut [u8]) {
    if let Some(b) = v.first_mut() {
        *b ^= 0xff;
    }
}

#[derive(Serialize, Deserialize)]
struct TotalLen;
#[eggroll_core::function]
impl SeqOp for TotalLen {
    fn seq_op(&self, acc: u64, v: Bytes) -> u64 {
        acc + v.len() as u64
    }
}

#[derive(Serialize, Deserialize)]
struct Left;
#[eggroll_core::function]
impl Join for Left {
    fn join(&self, v: Bytes, _: Bytes) -> Bytes {
        v
    }
}

fn rate(rows: u64, d: Duration) -> f64 {
    rows as f64 / d.as_secs_f64().max(1e-9)
}

/// A line of the table: op, its timing, the baseline's time and name, the target.
type Row = (
    &'static str,
    fn(&Timings) -> Duration,
    Duration,
    &'static str,
    &'static str,
);

/// Times of one back end's run of the ops.
struct Timings {
    put_all: Duration,
    get_all: Duration,
    count: Duration,
    map_values: Duration,
    reduce: Duration,
    join: Duration,
}

/// A bench value: `value_bytes` bytes that differ from row to row.
fn value(i: u64, value_bytes: usize) -> Bytes {
    let mut v = vec![0u8; value_bytes];
    for (j, b) in v.iter_mut().enumerate() {
        *b = (i as usize).wrapping_mul(31).wrapping_add(j) as u8;
    }
    Bytes(v)
}

/// Runs every op once on `ctx` and checks the results.
fn measure(ctx: &RollPairContext, args: &BenchArgs) -> Result<Timings, Box<dyn std::error::Error>> {
    let n = args.rows();
    let opts = Options::persistent("bench", "table", args.partitions);
    // Values are `Bytes`: the type for blobs (encoded as Vec<u8> is, decoded in one copy).
    let table = ctx.create::<u64, Bytes>(opts)?;
    // The input is made before the clock starts, as the baselines' (and FATE's list) are:
    // put_all is timed on encoding and storing pairs, not on making them.
    let data: Vec<(u64, Bytes)> = (0..n).map(|i| (i, value(i, args.value_bytes))).collect();
    let t = Instant::now();
    table.put_all(data)?;
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

    // count answers from the count kept with each partition (the compaction counted it):
    // the median of five calls, so that one call's wake-up of the pool does not decide.
    let mut counts = Vec::new();
    let mut counted = 0;
    for _ in 0..5 {
        let t = Instant::now();
        counted = table.count()?;
        counts.push(t.elapsed());
    }
    counts.sort();
    let count = counts[2];

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
    table.destroy()?;
    Ok(Timings {
        put_all,
        get_all,
        count,
        map_values,
        reduce,
        join,
    })
}

/// Runs the benchmark and prints a table of rows per second and ratios.
pub fn run(args: BenchArgs, mut config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    if args.latency {
        return crate::bench_latency::run(args.rows(), args.partitions, args.samples, config)
            .map_err(|e| e as Box<dyn std::error::Error>);
    }
    if args.federation {
        let sizes = (
            args.object_mib,
            args.rows(),
            args.value_bytes,
            args.partitions,
        );
        return crate::bench_federation::run(sizes, config);
    }
    let dir = tempfile::tempdir()?;
    config.data_dir = dir.path().join("eggroll");
    let n = args.rows();
    println!(
        "eggroll bench: {n} pairs, {}-byte values, {} partitions, {} cores; data in {}",
        args.value_bytes,
        args.partitions,
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        dir.path().display()
    );

    // Baseline: the same encoded pairs straight into one RocksDB.
    let encoded: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| Ok((encode(&i)?, encode(&value(i, args.value_bytes))?)))
        .collect::<Result<_, eggroll_core::CoreError>>()?;
    let raw_dir = dir.path().join("raw");
    let raw_write = baseline::write(&raw_dir, &encoded, 40_000)?;
    // Runs of about 64 MiB, as a bulk load into a partition writes.
    let run = (64usize << 20) / (args.value_bytes + 16).max(1);
    let raw_ingest = baseline::write_ingested(&dir.path().join("raw-ingest"), &encoded, run)?;
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
    let local = measure(&ctx, &args)?;
    ctx.stop()?;

    let cluster = if args.cluster {
        let program = std::env::current_exe()?;
        let root = dir.path().join("cluster");
        let daemons = LocalCluster::start(&program, &root, ClusterSpec::default())?;
        let ctx = RollPairContext::connect(
            daemons.address(),
            SessionOptions {
                name: "eggroll bench".into(),
                processors_per_node: args.partitions.div_ceil(2).max(1),
                ..Default::default()
            },
        )?;
        let timings = measure(&ctx, &args)?;
        ctx.stop()?;
        drop(daemons);
        Some(timings)
    } else {
        None
    };

    let fate = if args.vs_fate {
        let python = crate::bench_fate::python().ok_or(
            "--vs-fate needs FATE's venv: run `make fate-venv` in the repository, or set \
             EGGROLL_FATE_PYTHON to a Python with pyfate 2.2 installed",
        )?;
        println!(
            "FATE standalone ({}) on the same workload...",
            python.display()
        );
        let times = crate::bench_fate::run(
            &python,
            n,
            args.value_bytes,
            args.partitions,
            &dir.path().join("fate"),
        )?;
        let op = |name: &str| {
            times
                .get(name)
                .copied()
                .ok_or_else(|| format!("FATE standalone gave no time for {name}"))
        };
        Some(Timings {
            put_all: op("put_all")?,
            get_all: op("get_all")?,
            count: op("count")?,
            map_values: op("map_values")?,
            reduce: op("reduce")?,
            join: op("join")?,
        })
    } else {
        None
    };

    let ratio = |ours: Duration, base: Duration| base.as_secs_f64() / ours.as_secs_f64().max(1e-9);
    println!();
    print!(
        "{:<11} {:>14} {:>14} {:>16}  {:>6}",
        "op", "raw rows/s", "baseline", "standalone rows/s", "ratio"
    );
    if cluster.is_some() {
        print!(" {:>15}  {:>6}", "cluster rows/s", "ratio");
    }
    if fate.is_some() {
        print!(" {:>12}  {:>6}", "FATE rows/s", "x FATE");
    }
    println!("  target");
    let rows: [Row; 7] = [
        (
            "put_all",
            |t| t.put_all,
            raw_write,
            "batch write",
            ">= 1.5 standalone; >= 5 x FATE",
        ),
        ("put_all", |t| t.put_all, raw_ingest, "sort+ingest", ""),
        (
            "get_all",
            |t| t.get_all,
            raw_scan,
            "scan",
            ">= 0.6 standalone, >= 0.5 cluster",
        ),
        (
            "count",
            |t| t.count,
            raw_scan,
            "scan",
            "<= 1 ms for 2 M pairs (O(1))",
        ),
        (
            "map_values",
            |t| t.map_values,
            raw_scan_write,
            "scan+write",
            ">= 0.4 standalone",
        ),
        ("reduce", |t| t.reduce, raw_scan, "scan", ""),
        ("join", |t| t.join, raw_scan_write, "scan+write", ""),
    ];
    for (name, pick, base, base_name, target) in rows {
        print!(
            "{name:<11} {:>14.0} {base_name:>14} {:>16.0}  {:>6.2}",
            rate(n, base),
            rate(n, pick(&local)),
            ratio(pick(&local), base)
        );
        if let Some(c) = &cluster {
            print!(" {:>15.0}  {:>6.2}", rate(n, pick(c)), ratio(pick(c), base));
        }
        if let Some(f) = &fate {
            // Standalone against standalone: how many times FATE's time ours is.
            print!(
                " {:>12.0}  {:>6.2}",
                rate(n, pick(f)),
                ratio(pick(&local), pick(f))
            );
        }
        println!("  {target}");
    }
    print!(
        "\ncount of {n} pairs: {:.3} ms standalone",
        local.count.as_secs_f64() * 1e3
    );
    if let Some(c) = &cluster {
        print!(", {:.3} ms cluster", c.count.as_secs_f64() * 1e3);
    }
    println!(" (median of 5 calls)");
    Ok(())
}
