//! `eggroll bench --latency`: how long each roll-pair op takes on a small table (p50 and p99
//! of many calls), standalone and on a local two-node cluster, and a small remote + get
//! between two parties. FATE calls such ops dozens of times per job, between iterations: a
//! fixed delay per call shows here, where a throughput bench would hide it.

use crate::local_cluster::{ClusterSpec, LocalCluster};
use crate::two_parties::{AnyError, Setup, TwoParties};
use eggroll_core::config::EggrollConfig;
use eggroll_core::functions::builtin::SumU64;
use eggroll_core::functions::{Filter, Join, Map, MapValues};
use eggroll_federation::Party;
use eggroll_rollpair::{Options, RollPair, RollPairContext, SessionOptions};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// Calls of each op before its timed ones (first connections, caches).
const WARMUP: usize = 3;
/// On the cluster, every op's p50 and p99 should stay within these.
const TARGET_P50: Duration = Duration::from_millis(5);
const TARGET_P99: Duration = Duration::from_millis(20);

type Table = RollPair<u64, u64>;

#[derive(Serialize, Deserialize)]
struct PlusOne;
#[eggroll_core::function]
impl MapValues for PlusOne {
    type V = u64;
    type Out = u64;
    fn map_values(&self, v: u64) -> u64 {
        v + 1
    }
}

#[derive(Serialize, Deserialize)]
struct Shift;
#[eggroll_core::function]
impl Map for Shift {
    type K = u64;
    type V = u64;
    type K2 = u64;
    type V2 = u64;
    fn map(&self, k: u64, v: u64) -> (u64, u64) {
        (k + 1, v)
    }
}

#[derive(Serialize, Deserialize)]
struct EvenKeys;
#[eggroll_core::function]
impl Filter for EvenKeys {
    type K = u64;
    type V = u64;
    fn filter(&self, k: &u64, _: &u64) -> bool {
        k.is_multiple_of(2)
    }
}

#[derive(Serialize, Deserialize)]
struct Add;
#[eggroll_core::function]
impl Join for Add {
    type V = u64;
    type W = u64;
    type Out = u64;
    fn join(&self, a: u64, b: u64) -> u64 {
        a + b
    }
}

/// p50 and p99 of one op's timed calls.
#[derive(Clone, Copy)]
struct Spread {
    p50: Duration,
    p99: Duration,
}

fn spread(mut took: Vec<Duration>) -> Spread {
    took.sort();
    let at = |q: f64| took[((took.len() as f64 * q).ceil() as usize).clamp(1, took.len()) - 1];
    Spread {
        p50: at(0.5),
        p99: at(0.99),
    }
}

/// Times `samples` calls of `op` (after a warm-up); `op` returns what it made, which is
/// checked and then dropped by `after`, untimed (destroying an output is not the op).
fn time<T>(
    samples: usize,
    mut op: impl FnMut(usize) -> Result<T, AnyError>,
    mut after: impl FnMut(T) -> Result<(), AnyError>,
) -> Result<Spread, AnyError> {
    let mut took = Vec::with_capacity(samples);
    for i in 0..WARMUP + samples {
        let t = Instant::now();
        let out = op(i)?;
        let d = t.elapsed();
        after(out)?;
        if i >= WARMUP {
            took.push(d);
        }
    }
    Ok(spread(took))
}

/// Fails with `what` unless `ok`.
fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), AnyError> {
    if ok {
        Ok(())
    } else {
        Err(what().into())
    }
}

/// Destroys an output table, checking its count first.
fn destroy_counted(t: Table, want: u64, op: &str) -> Result<(), AnyError> {
    let n = t.count()?;
    check(n == want, || {
        format!("{op} gave {n} pairs, expected {want}")
    })?;
    t.destroy()?;
    Ok(())
}

/// Every op's spread on `ctx`, in `OPS` order.
fn measure(
    ctx: &RollPairContext,
    rows: u64,
    parts: u32,
    n: usize,
) -> Result<Vec<Spread>, AnyError> {
    let data = || (0..rows).map(|i| (i, i));
    let table: Table = ctx.parallelize(data(), Options::partitions(parts))?;
    let other: Table =
        ctx.parallelize(data().map(|(k, v)| (k, v * 2)), Options::partitions(parts))?;
    let half: Table = ctx.parallelize(
        data().filter(|(k, _)| k.is_multiple_of(2)),
        Options::partitions(parts),
    )?;
    let sum: u64 = (0..rows).sum();
    let mut out = Vec::new();
    let key = |i: usize| (i as u64 * 7919) % rows;

    out.push(time(
        n,
        |i| Ok(table.get(&key(i))?),
        |v| check(v.is_some(), || "get found nothing".into()),
    )?);
    out.push(time(n, |i| Ok(table.put(&key(i), &key(i))?), |_| Ok(()))?);
    // delete: each call deletes a pair that exists (put back untimed).
    out.push(time(
        n,
        |i| Ok((key(i), table.delete(&key(i))?)),
        |(k, found)| {
            check(found, || format!("delete did not find {k}"))?;
            Ok(table.put(&k, &k)?)
        },
    )?);
    out.push(time(
        n,
        |_| {
            let t: Table = ctx.create(Options::partitions(parts))?;
            t.put_all(data())?;
            Ok(t)
        },
        |t| destroy_counted(t, rows, "put_all"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.get_all()?.collect::<Result<Vec<_>, _>>()?.len()),
        |got| check(got as u64 == rows, || format!("get_all gave {got} pairs")),
    )?);
    out.push(time(
        n,
        |_| Ok(table.take(10)?),
        |t| check(t.len() == 10, || format!("take gave {} pairs", t.len())),
    )?);
    out.push(time(
        n,
        |_| Ok(table.first()?),
        |f| check(f.is_some(), || "first found nothing".into()),
    )?);
    out.push(time(
        n,
        |_| Ok(table.count()?),
        |c| check(c == rows, || format!("count said {c}")),
    )?);
    out.push(time(
        n,
        |_| Ok(table.map_values(&PlusOne)?),
        |t| destroy_counted(t, rows, "map_values"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.map(&Shift)?),
        |t| destroy_counted(t, rows, "map"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.filter(&EvenKeys)?),
        |t| destroy_counted(t, rows.div_ceil(2), "filter"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.reduce(&SumU64)?),
        |s| {
            check(s == Some(sum), || {
                format!("reduce gave {s:?}, expected {sum}")
            })
        },
    )?);
    out.push(time(
        n,
        |_| Ok(table.join(&other, &Add)?),
        |t| destroy_counted(t, rows, "join"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.union(&half, &SumU64)?),
        |t| destroy_counted(t, rows, "union"),
    )?);
    out.push(time(
        n,
        |_| Ok(table.subtract_by_key(&half)?),
        |t| destroy_counted(t, rows / 2, "subtract_by_key"),
    )?);
    for t in [table, other, half] {
        t.destroy()?;
    }
    Ok(out)
}

/// The ops `measure` times, in its order.
const OPS: [&str; 15] = [
    "get",
    "put",
    "delete",
    "put_all",
    "get_all",
    "take(10)",
    "first",
    "count",
    "map_values",
    "map",
    "filter",
    "reduce",
    "join",
    "union",
    "subtract_by_key",
];

/// A small object from the guest to the host and its get there, between two parties (each
/// its own roll-site, gRPC between them).
fn remote_and_get(root: &std::path::Path, n: usize) -> Result<Spread, AnyError> {
    let parties = TwoParties::start(root, "bench_latency", &Setup::default())?;
    let host = Party::new("host", "10000");
    let guest = Party::new("guest", "9999");
    let r = time(
        n,
        |i| {
            let tag = i.to_string();
            parties
                .guest
                .fed
                .remote(&(i as u64), "latency", &tag, std::slice::from_ref(&host))?;
            let got: Vec<u64> =
                parties
                    .host
                    .fed
                    .get("latency", &tag, std::slice::from_ref(&guest))?;
            Ok((i as u64, got))
        },
        |(i, got)| {
            check(got == vec![i], || {
                format!("get gave {got:?}, expected [{i}]")
            })
        },
    );
    parties.stop()?;
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the latency bench and prints p50 and p99 per op and back end.
pub fn run(
    rows: u64,
    parts: u32,
    samples: usize,
    mut config: EggrollConfig,
) -> Result<(), AnyError> {
    if rows == 0 || samples == 0 {
        return Err("--rows and --samples must be at least 1 for --latency".into());
    }
    let dir = tempfile::tempdir()?;
    config.data_dir = dir.path().join("eggroll");
    println!(
        "eggroll bench --latency: {rows} rows (u64 keys and values), {parts} partitions, \
         {samples} timed calls per op; target on the cluster: p50 <= {} ms, p99 <= {} ms",
        ms(TARGET_P50),
        ms(TARGET_P99)
    );
    let ctx = RollPairContext::standalone_with(&config)?;
    let standalone = measure(&ctx, rows, parts, samples)?;
    ctx.stop()?;

    let program = std::env::current_exe()?;
    let daemons = LocalCluster::start(
        &program,
        &dir.path().join("cluster"),
        ClusterSpec::default(),
    )?;
    let ctx = RollPairContext::connect(
        daemons.address(),
        SessionOptions {
            name: "eggroll bench --latency".into(),
            processors_per_node: parts.div_ceil(2).max(1),
            ..Default::default()
        },
    )?;
    let cluster = measure(&ctx, rows, parts, samples)?;
    ctx.stop()?;
    drop(daemons);
    let federation = remote_and_get(&dir.path().join("parties"), samples)?;

    println!();
    println!(
        "{:<26} {:>15} {:>9}  {:>12} {:>9}",
        "op", "standalone p50", "p99", "cluster p50", "p99"
    );
    let mut over = Vec::new();
    for ((op, s), c) in OPS.iter().zip(&standalone).zip(&cluster) {
        let verdict = if c.p50 <= TARGET_P50 && c.p99 <= TARGET_P99 {
            "ok"
        } else {
            over.push(*op);
            "over target"
        };
        println!(
            "{op:<26} {:>12.3} ms {:>6.3} ms  {:>9.3} ms {:>6.3} ms  {verdict}",
            ms(s.p50),
            ms(s.p99),
            ms(c.p50),
            ms(c.p99)
        );
    }
    let verdict = if federation.p50 <= TARGET_P50 && federation.p99 <= TARGET_P99 {
        "ok"
    } else {
        over.push("remote + get");
        "over target"
    };
    println!(
        "{:<26} {:>12.3} ms {:>6.3} ms  {:>9} {:>9}  {verdict}",
        "remote + get (2 parties)",
        ms(federation.p50),
        ms(federation.p99),
        "",
        ""
    );
    if over.is_empty() {
        println!("\nevery op within target");
    } else {
        println!("\nover target: {}", over.join(", "));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let s = spread((1..=100).rev().map(ms).collect());
        assert_eq!((s.p50, s.p99), (ms(50), ms(99)));
        let s = spread(vec![ms(7)]);
        assert_eq!((s.p50, s.p99), (ms(7), ms(7)));
        let s = spread(vec![ms(1), ms(2), ms(30)]);
        assert_eq!((s.p50, s.p99), (ms(2), ms(30)));
    }
}
