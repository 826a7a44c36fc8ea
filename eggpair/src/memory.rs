//! In-memory partitions: intermediate results that die with their session.

use crate::error::Result;
use crate::store::{combine_values, KeyRange, Pair, PairIterator, PartitionStore};
use eggroll_core::functions::ErasedFn;
use eggroll_core::sync::RwLock;
use std::collections::BTreeMap;
use std::ops::Bound;

/// Pairs handed out per lock taken while iterating, so writers are never starved.
const PAGE: usize = 4096;

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

    fn put_batch(&self, pairs: &[Pair]) -> Result<()> {
        let mut map = self.write();
        for (k, v) in pairs {
            map.insert(k.clone(), v.clone());
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
            done: false,
        }))
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
            .take(PAGE)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if page.len() < PAGE {
            self.done = true;
        }
        if let Some((last, _)) = page.last() {
            self.next_start = Bound::Excluded(last.clone());
        }
        self.page = page.into_iter();
        self.page.next().map(Ok)
    }
}
