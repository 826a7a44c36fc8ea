//! `eggroll demo`: the main job, for now on one party in standalone mode: scores for a set
//! of accounts are scaled, joined with their labels, filtered, and summed, each step a
//! roll-pair operation; every figure is checked against a plain computation.

use clap::Args;
use eggroll_core::config::EggrollConfig;
use eggroll_core::functions::builtin::SumI64;
use eggroll_core::functions::{Filter, Function, Join, MapValues, Reduce};
use eggroll_core::register;
use eggroll_rollpair::{Options, RollPairContext};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// Arguments of `eggroll demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Number of accounts.
    #[arg(long, default_value_t = 100_000)]
    rows: i64,
    /// Partitions of every table.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Data dir (default: a temporary dir removed at the end).
    #[arg(long)]
    data_dir: Option<std::path::PathBuf>,
}

#[derive(Serialize, Deserialize)]
struct Scale {
    factor: i64,
}
impl Function for Scale {
    const NAME: &'static str = "demo::Scale";
}
impl MapValues for Scale {
    type V = i64;
    type Out = i64;
    fn map_values(&self, v: i64) -> i64 {
        v * self.factor
    }
}
register!(map_values: Scale);

#[derive(Serialize, Deserialize)]
struct ScoreIfPositive;
impl Function for ScoreIfPositive {
    const NAME: &'static str = "demo::ScoreIfPositive";
}
impl Join for ScoreIfPositive {
    type V = i64;
    type W = bool;
    type Out = i64;
    fn join(&self, score: i64, positive: bool) -> i64 {
        if positive {
            score
        } else {
            0
        }
    }
}
register!(join: ScoreIfPositive);

#[derive(Serialize, Deserialize)]
struct NonZero;
impl Function for NonZero {
    const NAME: &'static str = "demo::NonZero";
}
impl Filter for NonZero {
    type K = String;
    type V = i64;
    fn filter(&self, _: &String, v: &i64) -> bool {
        *v != 0
    }
}
register!(filter: NonZero);

#[derive(Serialize, Deserialize)]
struct MaxOf;
impl Function for MaxOf {
    const NAME: &'static str = "demo::MaxOf";
}
impl Reduce for MaxOf {
    type V = i64;
    fn reduce(&self, a: i64, b: i64) -> i64 {
        a.max(b)
    }
}
register!(reduce: MaxOf);

/// Runs the demo job.
pub fn run(args: DemoArgs, mut config: EggrollConfig) -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    config.data_dir = args.data_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let n = args.rows;
    println!(
        "eggroll demo: {n} accounts, {} partitions, standalone mode in {}",
        args.partitions,
        config.data_dir.display()
    );
    let ctx = RollPairContext::standalone_with(&config)?;
    let account = |i: i64| format!("acct-{i:07}");
    let started = Instant::now();

    // A demo that failed half-way may have left its table behind.
    ctx.cleanup("demo", "labels")?;
    let scores = ctx.parallelize(
        (0..n).map(|i| (account(i), i % 1000)),
        Options::partitions(args.partitions),
    )?;
    // Labels live in a persistent table with another partition count, as a loaded table would.
    let labels = ctx.parallelize(
        (0..n)
            .filter(|i| i % 3 != 0)
            .map(|i| (account(i), i % 2 == 0)),
        Options::persistent("demo", "labels", args.partitions + 1),
    )?;
    let scaled = scores.map_values(&Scale { factor: 3 })?;
    let joined = scaled.join(&labels, &ScoreIfPositive)?;
    let positive = joined.filter(&NonZero)?;
    let (count, total, max) = (
        positive.count()?,
        positive.reduce(&SumI64)?.unwrap_or(0),
        positive.reduce(&MaxOf)?,
    );

    // The same computation on plain Rust collections.
    let expect: Vec<i64> = (0..n)
        .filter(|i| i % 3 != 0 && i % 2 == 0)
        .map(|i| (i % 1000) * 3)
        .filter(|v| *v != 0)
        .collect();
    let ok = count == expect.len() as u64
        && total == expect.iter().sum::<i64>()
        && max == expect.iter().max().copied();
    println!("  accounts scored            {}", scores.count()?);
    println!("  labelled accounts          {}", labels.count()?);
    println!("  positive, non-zero scores  {count}");
    println!("  sum of their scores        {total}");
    println!("  highest score              {}", max.unwrap_or(0));
    println!("  first result               {:?}", positive.first()?);
    println!("  time                       {:.2?}", started.elapsed());
    labels.destroy()?;
    ctx.stop()?;
    if ok {
        println!("checked against a plain computation: correct");
        Ok(())
    } else {
        Err("the demo's figures differ from the plain computation".into())
    }
}
