//! The user functions of the end-to-end suite, each in one declaration. The tests link them,
//! and so does the `eggroll-suite-egg` binary the test clusters run as their egg-pair program,
//! exactly as a user's algorithm crate is linked into their own egg binary.

use eggroll_core::function;
use eggroll_core::functions::{
    CollapsePartitions, Filter, FlatMap, Join, Map, MapPartitions, MapValues, Reduce, SeqOp,
};
use serde::{Deserialize, Serialize};

/// v + n.
#[derive(Serialize, Deserialize)]
pub struct AddTo {
    /// What to add.
    pub n: i64,
}
#[function]
impl MapValues for AddTo {
    fn map_values(&self, v: i64) -> i64 {
        v.wrapping_add(self.n)
    }
}

/// The length of a byte value.
#[derive(Serialize, Deserialize)]
pub struct Len;
#[function]
impl MapValues for Len {
    fn map_values(&self, v: Vec<u8>) -> u64 {
        v.len() as u64
    }
}

/// (k, v) -> (k mod m, v): collides keys on purpose.
#[derive(Serialize, Deserialize)]
pub struct ModKey {
    /// The modulus.
    pub m: i64,
}
#[function]
impl Map for ModKey {
    fn map(&self, k: i64, v: i64) -> (i64, i64) {
        (k.rem_euclid(self.m), v)
    }
}

/// (k, v) -> (v, k): a bijection when values are distinct.
#[derive(Serialize, Deserialize)]
pub struct Swap;
#[function]
impl Map for Swap {
    fn map(&self, k: i64, v: i64) -> (i64, i64) {
        (v, k)
    }
}

/// (k, v) -> k mod 3 pairs ("k/i", v).
#[derive(Serialize, Deserialize)]
pub struct Explode;
#[function]
impl FlatMap for Explode {
    fn flat_map(&self, k: i64, v: i64) -> Vec<(String, i64)> {
        (0..k.rem_euclid(3))
            .map(|i| (format!("{k}/{i}"), v))
            .collect()
    }
}

/// Keeps the even keys.
#[derive(Serialize, Deserialize)]
pub struct EvenKeys;
#[function]
impl Filter for EvenKeys {
    fn filter(&self, k: &i64, _: &i64) -> bool {
        k % 2 == 0
    }
}

/// Emits (v mod 5, 1) per pair: counted per bucket with a reduce.
#[derive(Serialize, Deserialize)]
pub struct Buckets;
#[function]
impl MapPartitions for Buckets {
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

/// The wrapping sum of a partition's values.
#[derive(Serialize, Deserialize)]
pub struct SumPartition;
#[function]
impl CollapsePartitions for SumPartition {
    fn collapse(&self, items: &mut dyn Iterator<Item = (i64, i64)>) -> i64 {
        items.map(|(_, v)| v).fold(0i64, i64::wrapping_add)
    }
}

/// The pair of both sides' values.
#[derive(Serialize, Deserialize)]
pub struct Pair;
#[function]
impl Join for Pair {
    fn join(&self, v: i64, w: String) -> (i64, String) {
        (v, w)
    }
}

/// The larger value.
#[derive(Serialize, Deserialize)]
pub struct Max;
#[function]
impl Reduce for Max {
    fn reduce(&self, a: i64, b: i64) -> i64 {
        a.max(b)
    }
}

/// a * 31 + b (wrapping): neither associative nor commutative, so a result shows the order
/// its values were folded in.
#[derive(Serialize, Deserialize)]
pub struct Horner;
#[function]
impl Reduce for Horner {
    fn reduce(&self, a: i64, b: i64) -> i64 {
        a.wrapping_mul(31).wrapping_add(b)
    }
}

/// Counts and sums values.
#[derive(Serialize, Deserialize)]
pub struct CountAndSum;
#[function]
impl SeqOp for CountAndSum {
    fn seq_op(&self, acc: (u64, i64), v: i64) -> (u64, i64) {
        (acc.0 + 1, acc.1.wrapping_add(v))
    }
}

/// Adds (count, sum) accumulators.
#[derive(Serialize, Deserialize)]
pub struct AddPairs;
#[function]
impl Reduce for AddPairs {
    fn reduce(&self, a: (u64, i64), b: (u64, i64)) -> (u64, i64) {
        (a.0 + b.0, a.1.wrapping_add(b.1))
    }
}

/// Sleeps `ms` per value: a job that runs long enough to be interrupted.
#[derive(Serialize, Deserialize)]
pub struct Slow {
    /// Milliseconds per value.
    pub ms: u64,
}
#[function]
impl MapValues for Slow {
    fn map_values(&self, v: i64) -> i64 {
        std::thread::sleep(std::time::Duration::from_millis(self.ms));
        v
    }
}
