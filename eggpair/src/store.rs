//! The partition store: one partition's sorted key/value pairs, whatever holds them.

use crate::error::Result;
use eggroll_core::functions::ErasedFn;

/// One key/value pair, as encoded bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

/// Sees one pair of a scan; returns false to stop the scan.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

/// A boxed, sorted iterator over a partition's pairs.
pub type PairIterator<'a> = Box<dyn Iterator<Item = Result<Pair>> + 'a>;

/// A half-open range of keys, `[start, end)`; `None` is unbounded.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyRange {
    /// First key included.
    pub start: Option<Vec<u8>>,
    /// First key excluded.
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        // The first key after every key with this prefix: bump the last byte below 0xff.
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return Self {
                    start: Some(prefix.to_vec()),
                    end: Some(end),
                };
            }
        }
        Self {
            start: Some(prefix.to_vec()),
            end: None,
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }
}

/// What every partition store does. Calls block: never call them on an async worker.
pub trait PartitionStore: Send + Sync {
    /// The value of `key`, if any.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Writes pairs in one batch; a later pair of the same key wins. Takes them by value: the
    /// caller is done with them, and a store may keep or reuse their buffers.
    fn put_batch(&self, pairs: Vec<Pair>) -> Result<()>;
    /// Writes a packed batch (see `eggroll_core::packed`) in one batch; returns how many.
    fn put_packed(&self, packed: &[u8]) -> Result<u64> {
        let pairs = eggroll_core::pairs::iter(packed)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())))
            .collect::<eggroll_core::Result<Vec<Pair>>>()?;
        let n = pairs.len() as u64;
        self.put_batch(pairs)?;
        Ok(n)
    }
    /// Removes `key`; true if it was there.
    fn delete(&self, key: &[u8]) -> Result<bool>;
    /// The pairs in `range`, in key order.
    fn iter(&self, range: KeyRange) -> Result<PairIterator<'_>>;
    /// Calls `visit` on each pair in `range`, in key order, without copying; `visit` returns
    /// false to stop.
    fn scan(&self, range: KeyRange, visit: &mut Visit) -> Result<()> {
        for pair in self.iter(range)? {
            let (k, v) = pair?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }
    /// How many pairs the partition holds.
    fn count(&self) -> Result<u64>;
    /// Writes pairs, combining each with the value already stored under its key.
    fn merge_batch(&self, pairs: Vec<Pair>, combine: &ErasedFn) -> Result<()>;
    /// Flushes and compacts what is on disk (after a bulk load); in memory, nothing to do.
    fn compact(&self) -> Result<()> {
        Ok(())
    }
    /// Makes every write so far survive a machine crash (fsync of the write-ahead log); in
    /// memory, nothing to do.
    fn sync(&self) -> Result<()> {
        Ok(())
    }
    /// The bytes the partition holds when all of them are in memory; `None` for one on disk
    /// (a caller that only wants to know whether the partition is small need not scan it).
    fn bytes_in_memory(&self) -> Option<u64> {
        None
    }
    /// How many pairs it holds, when that is known at once: no disk read, no wait for a
    /// writer (an egg then answers on its async worker); `None` otherwise.
    fn count_now(&self) -> Option<u64> {
        None
    }
    /// A copy of the first `limit` pairs in key order, when it can be made at once: all in
    /// memory, at most `max_bytes` held, no writer holding the partition; `None` otherwise.
    fn pairs_now(&self, max_bytes: u64, limit: usize) -> Option<Vec<Pair>> {
        let _ = (max_bytes, limit);
        None
    }
    /// A bulk load into this partition, if it is empty and its store has a faster way to fill
    /// it than batch writes; `None` otherwise (write batches as usual).
    fn bulk_load(self: std::sync::Arc<Self>) -> Result<Option<Box<dyn BulkLoad>>> {
        Ok(None)
    }
}

/// A bulk load into a partition: pairs gathered, then made part of it at once by `finish`.
/// Calls block, like a store's. One caller at a time: a later pair of a key wins.
pub trait BulkLoad: Send {
    /// Adds a packed batch; returns how many pairs it held.
    fn put_packed(&mut self, packed: &[u8]) -> Result<u64>;
    /// Makes every pair added part of the partition. Until then none is visible; a load
    /// dropped unfinished adds nothing.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Applies a binary function; errors if `f` has another shape.
pub fn combine_values(f: &ErasedFn, a: &[u8], b: &[u8]) -> Result<Vec<u8>> {
    match f {
        ErasedFn::Binary(f) => Ok(f(a, b)?),
        _ => Err(crate::EggError::InvalidTask(
            "the combiner must be a two-value function (reduce)".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        let r = KeyRange::prefix(b"ab");
        assert!(
            r.contains(b"ab")
                && r.contains(b"ab\xff\xff")
                && !r.contains(b"ac")
                && !r.contains(b"aa")
        );
        let r = KeyRange::prefix(b"a\xff");
        assert_eq!(r.end.as_deref(), Some(&b"b"[..]));
        let r = KeyRange::prefix(b"\xff\xff");
        assert!(r.end.is_none() && r.contains(b"\xff\xff\x00"));
    }
}
