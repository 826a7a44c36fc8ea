//! The user functions of the shared roll-pair test suite. The suite's tests link them, and so
//! does the `eggroll-suite-egg` binary that the test clusters run as their egg-pair program,
//! exactly as a user's algorithm crate is linked into their own egg binary.

#![allow(dead_code)]

use eggroll_core::functions::{
    CollapsePartitions, Filter, FlatMap, Function, Join, Map, MapPartitions, MapValues, Reduce,
    SeqOp,
};
use eggroll_core::register;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct AddTo {
    pub n: i64,
}
impl Function for AddTo {
    const NAME: &'static str = "tests::AddTo";
}
impl MapValues for AddTo {
    type V = i64;
    type Out = i64;
    fn map_values(&self, v: i64) -> i64 {
        v.wrapping_add(self.n)
    }
}
register!(map_values: AddTo);

#[derive(Serialize, Deserialize)]
pub struct Len;
impl Function for Len {
    const NAME: &'static str = "tests::Len";
}
impl MapValues for Len {
    type V = Vec<u8>;
    type Out = u64;
    fn map_values(&self, v: Vec<u8>) -> u64 {
        v.len() as u64
    }
}
register!(map_values: Len);

/// (k, v) -> (k mod m, v): collides keys on purpose.
#[derive(Serialize, Deserialize)]
pub struct ModKey {
    pub m: i64,
}
impl Function for ModKey {
    const NAME: &'static str = "tests::ModKey";
}
impl Map for ModKey {
    type K = i64;
    type V = i64;
    type K2 = i64;
    type V2 = i64;
    fn map(&self, k: i64, v: i64) -> (i64, i64) {
        (k.rem_euclid(self.m), v)
    }
}
register!(map: ModKey);

/// (k, v) -> (v, k): a bijection when values are distinct.
#[derive(Serialize, Deserialize)]
pub struct Swap;
impl Function for Swap {
    const NAME: &'static str = "tests::Swap";
}
impl Map for Swap {
    type K = i64;
    type V = i64;
    type K2 = i64;
    type V2 = i64;
    fn map(&self, k: i64, v: i64) -> (i64, i64) {
        (v, k)
    }
}
register!(map: Swap);

#[derive(Serialize, Deserialize)]
pub struct Explode;
impl Function for Explode {
    const NAME: &'static str = "tests::Explode";
}
impl FlatMap for Explode {
    type K = i64;
    type V = i64;
    type K2 = String;
    type V2 = i64;
    fn flat_map(&self, k: i64, v: i64) -> Vec<(String, i64)> {
        (0..k.rem_euclid(3))
            .map(|i| (format!("{k}/{i}"), v))
            .collect()
    }
}
register!(flat_map: Explode);

#[derive(Serialize, Deserialize)]
pub struct EvenKeys;
impl Function for EvenKeys {
    const NAME: &'static str = "tests::EvenKeys";
}
impl Filter for EvenKeys {
    type K = i64;
    type V = i64;
    fn filter(&self, k: &i64, _: &i64) -> bool {
        k % 2 == 0
    }
}
register!(filter: EvenKeys);

/// Emits (v mod 5, 1) per pair: counted per bucket with a reduce.
#[derive(Serialize, Deserialize)]
pub struct Buckets;
impl Function for Buckets {
    const NAME: &'static str = "tests::Buckets";
}
impl MapPartitions for Buckets {
    type K = i64;
    type V = i64;
    type K2 = i64;
    type V2 = i64;
    fn map_partitions(
        &self,
        _: u32,
        items: &mut dyn Iterator<Item = (i64, i64)>,
        emit: &mut dyn FnMut(i64, i64),
    ) {
        for (_, v) in items {
            emit(v.rem_euclid(5), 1);
        }
    }
}
register!(map_partitions: Buckets);

#[derive(Serialize, Deserialize)]
pub struct SumPartition;
impl Function for SumPartition {
    const NAME: &'static str = "tests::SumPartition";
}
impl CollapsePartitions for SumPartition {
    type K = i64;
    type V = i64;
    type Out = i64;
    fn collapse(&self, items: &mut dyn Iterator<Item = (i64, i64)>) -> i64 {
        items.map(|(_, v)| v).fold(0i64, i64::wrapping_add)
    }
}
register!(collapse_partitions: SumPartition);

#[derive(Serialize, Deserialize)]
pub struct Pair;
impl Function for Pair {
    const NAME: &'static str = "tests::Pair";
}
impl Join for Pair {
    type V = i64;
    type W = String;
    type Out = (i64, String);
    fn join(&self, v: i64, w: String) -> (i64, String) {
        (v, w)
    }
}
register!(join: Pair);

#[derive(Serialize, Deserialize)]
pub struct Max;
impl Function for Max {
    const NAME: &'static str = "tests::Max";
}
impl Reduce for Max {
    type V = i64;
    fn reduce(&self, a: i64, b: i64) -> i64 {
        a.max(b)
    }
}
register!(reduce: Max);

#[derive(Serialize, Deserialize)]
pub struct CountAndSum;
impl Function for CountAndSum {
    const NAME: &'static str = "tests::CountAndSum";
}
impl SeqOp for CountAndSum {
    type Acc = (u64, i64);
    type V = i64;
    fn seq_op(&self, acc: (u64, i64), v: i64) -> (u64, i64) {
        (acc.0 + 1, acc.1.wrapping_add(v))
    }
}
register!(seq_op: CountAndSum);

#[derive(Serialize, Deserialize)]
pub struct AddPairs;
impl Function for AddPairs {
    const NAME: &'static str = "tests::AddPairs";
}
impl Reduce for AddPairs {
    type V = (u64, i64);
    fn reduce(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1.wrapping_add(b.1))
    }
}
register!(reduce: AddPairs);

/// Sleeps `ms` per value: a job that runs long enough to be interrupted.
#[derive(Serialize, Deserialize)]
pub struct Slow {
    pub ms: u64,
}
impl Function for Slow {
    const NAME: &'static str = "tests::Slow";
}
impl MapValues for Slow {
    type V = i64;
    type Out = i64;
    fn map_values(&self, v: i64) -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(self.ms));
        v
    }
}
register!(map_values: Slow);
