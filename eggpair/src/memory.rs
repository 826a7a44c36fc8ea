//! In-memory partitions: intermediate results that die with their session.

use crate::error::Result;
use crate::store::{combine_values, KeyRange, Pair, PairIterator, PartitionStore, Visit};
use eggroll_core::functions::ErasedFn;
use eggroll_core::sync::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Pairs handed out per lock taken while iterating, so writers are never starved.
const PAGE: usize = 4096;
/// The first page's size; pages double up to [`PAGE`], so a reader that wants only the
/// head of a partition (take, first) copies a few pairs, not a whole page.
const FIRST_PAGE: usize = 16;

/// A sorted in-memory partition.
#[derive(Default)]
pub struct MemStore {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemStore {
    /// A new empty partition.
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.read()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.write()
    }
}

impl PartitionStore for MemStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().get(key).cloned())
    }

    fn put_batch(&self, pairs: Vec<Pair>) -> Result<()> {
        let mut map = self.write();
        // A partition written in key order (a map's output, a copy) arrives in sorted batches
        // past every key held: such a batch is built in bulk and appended, with no search per
        // pair. Appending rebuilds the whole tree, so only while the map is not much larger.
        let in_order = pairs.windows(2).all(|w| w[0].0 < w[1].0)
            && match (map.last_key_value(), pairs.first()) {
                (Some((last, _)), Some((first, _))) => first > last,
                _ => true,
            };
        if in_order && map.len() <= 4 * pairs.len() {
            let mut batch: BTreeMap<Vec<u8>, Vec<u8>> = pairs.into_iter().collect();
            map.append(&mut batch);
        } else {
            for (k, v) in pairs {
                map.insert(k, v);
            }
        }
        Ok(())
    }

    fn put_packed(&self, packed: &[u8]) -> Result<u64> {
        // Straight from the packed bytes into the map: one copy per key and value, where the
        // default (unpack to pairs, then put_batch) makes two. Parsed first, so that a
        // corrupt batch writes nothing, as with a WriteBatch.
        let pairs = eggroll_core::pairs::iter(packed).collect::<eggroll_core::Result<Vec<_>>>()?;
        let mut map = self.write();
        for (k, v) in &pairs {
            map.insert(k.to_vec(), v.to_vec());
        }
        Ok(pairs.len() as u64)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        Ok(self.write().remove(key).is_some())
    }

    fn iter(&self, range: KeyRange) -> Result<PairIterator<'_>> {
        Ok(Box::new(Pages {
            store: self,
            next_start: range.start.map(Bound::Included).unwrap_or(Bound::Unbounded),
            end: range.end,
            page: Vec::new().into_iter(),
            page_size: FIRST_PAGE,
            done: false,
        }))
    }

    fn scan(&self, range: KeyRange, visit: &mut Visit) -> Result<()> {
        // A page at a time, packed into one buffer under the lock (a copy, but no allocation
        // per pair), then visited with the lock released: a visitor may be slow, or write.
        let end = range.end.map(Bound::Excluded).unwrap_or(Bound::Unbounded);
        let mut start = range.start.map(Bound::Included).unwrap_or(Bound::Unbounded);
        let mut page = Vec::new();
        let mut page_size = FIRST_PAGE;
        loop {
            page.clear();
            let mut taken = 0;
            // The last key, copied before the lock goes, is where the next page starts.
            let next_start = {
                let map = self.read();
                let mut last_key = None;
                for (k, v) in map.range((start.clone(), end.clone())).take(page_size) {
                    eggroll_core::pairs::push(&mut page, k, v);
                    last_key = Some(k);
                    taken += 1;
                }
                last_key.map(|k| Bound::Excluded(k.clone()))
            };
            for pair in eggroll_core::pairs::iter(&page) {
                let (k, v) = pair?;
                if !visit(k, v)? {
                    return Ok(());
                }
            }
            match next_start {
                Some(s) if taken == page_size => start = s,
                _ => return Ok(()),
            }
            page_size = (page_size * 2).min(PAGE);
        }
    }

    fn count(&self) -> Result<u64> {
        Ok(self.read().len() as u64)
    }

    fn merge_batch(&self, pairs: Vec<Pair>, combine: &ErasedFn) -> Result<()> {
        let mut map = self.write();
        for (k, v) in pairs {
            let merged = match map.get(&k) {
                Some(old) => combine_values(combine, old, &v)?,
                None => v,
            };
            map.insert(k, merged);
        }
        Ok(())
    }
}

/// Iterates a partition a page at a time, re-seeking after the last key handed out.
struct Pages<'a> {
    store: &'a MemStore,
    next_start: Bound<Vec<u8>>,
    end: Option<Vec<u8>>,
    page: std::vec::IntoIter<Pair>,
    page_size: usize,
    done: bool,
}

impl Iterator for Pages<'_> {
    type Item = Result<Pair>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(pair) = self.page.next() {
            return Some(Ok(pair));
        }
        if self.done {
            return None;
        }
        let end = self
            .end
            .clone()
            .map(Bound::Excluded)
            .unwrap_or(Bound::Unbounded);
        let page: Vec<Pair> = self
            .store
            .read()
            .range((self.next_start.clone(), end))
            .take(self.page_size)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if page.len() < self.page_size {
            self.done = true;
        }
        self.page_size = (self.page_size * 2).min(PAGE);
        if let Some((last, _)) = page.last() {
            self.next_start = Bound::Excluded(last.clone());
        }
        self.page = page.into_iter();
        self.page.next().map(Ok)
    }
}
