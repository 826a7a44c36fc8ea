//! In-memory partitions: intermediate results that die with their session. A partition
//! charges its pairs to the process's memory budget; once the process is past it, a partition
//! that is written spills: its pairs move to a scratch RocksDB (see `memory_budget`), and
//! every op goes on there.

use crate::compact_map::{CompactMap, MAX_LEN};
use crate::error::{EggError, Result};
use crate::memory_budget::{MemoryBudget, SpillStore};
use crate::store::{combine_values, KeyRange, Pair, PairIterator, PartitionStore, Visit};
use eggroll_core::functions::ErasedFn;
use eggroll_core::sync::RwLock;
use std::ops::Bound;
use std::sync::{Arc, RwLockWriteGuard};

/// Pairs handed out per lock taken while iterating, so writers are never starved.
const PAGE: usize = 4096;
/// The first page's size; pages double up to [`PAGE`], so a reader that wants only the
/// head of a partition (take, first) copies a few pairs, not a whole page.
const FIRST_PAGE: usize = 16;
/// Pairs per write batch when a partition spills.
const SPILL_BATCH: usize = 4096;

/// Where a partition's pairs are.
enum State {
    /// In a compact sorted map, charged `bytes` to the budget.
    Map { map: CompactMap, bytes: u64 },
    /// Spilled to disk, for good.
    Spilled(Arc<SpillStore>),
}

/// A sorted in-memory partition.
pub struct MemStore {
    state: RwLock<State>,
    budget: Option<Arc<MemoryBudget>>,
}

impl Default for MemStore {
    fn default() -> Self {
        Self::new()
    }
}

/// A partition's spilled store, or the lock on its map.
enum Held<'a> {
    Map(RwLockWriteGuard<'a, State>),
    Spilled(Arc<SpillStore>),
}

/// The lowest key a range starting at `start` holds (an excluded key's first successor).
fn start_key(start: &Bound<Vec<u8>>) -> Option<Vec<u8>> {
    match start {
        Bound::Included(k) => Some(k.clone()),
        Bound::Excluded(k) => {
            let mut k = k.clone();
            k.push(0);
            Some(k)
        }
        Bound::Unbounded => None,
    }
}

impl MemStore {
    /// A new empty partition with no budget: it never spills.
    pub fn new() -> Self {
        Self::with_budget(None)
    }

    /// A new empty partition charged to `budget`.
    pub fn with_budget(budget: Option<Arc<MemoryBudget>>) -> Self {
        Self {
            state: RwLock::new(State::Map {
                map: CompactMap::new(),
                bytes: 0,
            }),
            budget,
        }
    }

    /// The map locked for writing, or the spilled store (then no lock is held).
    fn hold(&self) -> Held<'_> {
        let guard = self.state.write();
        match &*guard {
            State::Spilled(s) => Held::Spilled(s.clone()),
            State::Map { .. } => Held::Map(guard),
        }
    }

    /// Charges what the map's writes added (or freed) to the budget, then spills the
    /// partition if the process is past its budget.
    fn charged(&self, mut guard: RwLockWriteGuard<'_, State>) -> Result<()> {
        let State::Map { map, bytes } = &mut *guard else {
            return Ok(());
        };
        let (was, now) = (*bytes, map.heap_bytes());
        *bytes = now;
        let Some(budget) = &self.budget else {
            return Ok(());
        };
        if now >= was {
            budget.grow(now - was);
        } else {
            budget.shrink(was - now);
        }
        if !budget.should_spill(now) {
            return Ok(());
        }
        // Under the write lock: no reader sees a partly moved partition.
        let spill = budget.spill_store(now)?;
        let store = spill.store()?;
        // Packed batches, as a put stream sends them: one buffer, not two allocations a pair.
        let (mut batch, mut in_batch, mut failed) = (Vec::new(), 0, None);
        map.walk(Bound::Unbounded, None, |k, v| {
            eggroll_core::pairs::push(&mut batch, k, v);
            in_batch += 1;
            if in_batch == SPILL_BATCH {
                in_batch = 0;
                if let Err(e) = store.put_packed(&batch) {
                    failed = Some(e);
                    return false;
                }
                batch.clear();
            }
            true
        });
        if let Some(e) = failed {
            return Err(e);
        }
        if !batch.is_empty() {
            store.put_packed(&batch)?;
        }
        *map = CompactMap::new();
        budget.shrink(now);
        tracing::debug!(bytes = now, "in-memory partition spilled to disk");
        *guard = State::Spilled(spill);
        Ok(())
    }

    /// Up to `n` pairs from `start` to `end`, in key order.
    fn page(&self, start: &Bound<Vec<u8>>, end: &Option<Vec<u8>>, n: usize) -> Result<Vec<Pair>> {
        let state = self.state.read();
        match &*state {
            State::Map { map, .. } => {
                let mut page = Vec::with_capacity(n.min(map.len()));
                map.walk(as_ref(start), end.as_deref(), |k, v| {
                    page.push((k.to_vec(), v.to_vec()));
                    page.len() < n
                });
                Ok(page)
            }
            State::Spilled(s) => {
                let s = s.clone();
                drop(state);
                let range = KeyRange {
                    start: start_key(start),
                    end: end.clone(),
                };
                let page = s.store()?.iter(range)?.take(n).collect();
                page
            }
        }
    }
}

impl Drop for MemStore {
    fn drop(&mut self) {
        if let (Some(budget), State::Map { bytes, .. }) = (&self.budget, &*self.state.read()) {
            budget.shrink(*bytes);
        }
    }
}

impl PartitionStore for MemStore {
    fn bytes_in_memory(&self) -> Option<u64> {
        match &*self.state.read() {
            State::Map { bytes, .. } => Some(*bytes),
            State::Spilled(_) => None,
        }
    }

    fn count_now(&self) -> Option<u64> {
        match &*self.state.try_read()? {
            State::Map { map, .. } => Some(map.len() as u64),
            State::Spilled(_) => None,
        }
    }

    fn pairs_now(&self, max_bytes: u64, limit: usize) -> Option<Vec<Pair>> {
        let state = self.state.try_read()?;
        let State::Map { map, bytes } = &*state else {
            return None;
        };
        if *bytes > max_bytes {
            return None;
        }
        let mut out = Vec::with_capacity(map.len().min(limit));
        if limit > 0 {
            map.walk(Bound::Unbounded, None, |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                out.len() < limit
            });
        }
        Some(out)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match &*self.state.read() {
            State::Map { map, .. } => Ok(map.get(key).map(<[u8]>::to_vec)),
            State::Spilled(s) => s.store()?.get(key),
        }
    }

    fn put_batch(&self, pairs: Vec<Pair>) -> Result<()> {
        let mut guard = match self.hold() {
            Held::Spilled(s) => return s.store()?.put_batch(pairs),
            Held::Map(guard) => guard,
        };
        let State::Map { map, .. } = &mut *guard else {
            return Ok(());
        };
        // A batch in key order past every key held (a map's output, a copy) is appended to
        // the map's packed buffer with no search (see `CompactMap::insert`).
        for (k, v) in &pairs {
            checked_len(k, v)?;
        }
        for (k, v) in pairs {
            map.insert(&k, &v);
        }
        self.charged(guard)
    }

    fn put_packed(&self, packed: &[u8]) -> Result<u64> {
        // Straight from the packed bytes into the map: one copy per key and value, where the
        // default (unpack to pairs, then put_batch) makes two. Parsed first, so that a
        // corrupt batch writes nothing, as with a WriteBatch.
        // (The packed layout's lengths are u32, as the map's are: no pair here is too long.)
        let pairs = eggroll_core::pairs::iter(packed).collect::<eggroll_core::Result<Vec<_>>>()?;
        let mut guard = match self.hold() {
            Held::Spilled(s) => return s.store()?.put_packed(packed),
            Held::Map(guard) => guard,
        };
        let State::Map { map, .. } = &mut *guard else {
            return Ok(0);
        };
        for (k, v) in &pairs {
            map.insert(k, v);
        }
        self.charged(guard)?;
        Ok(pairs.len() as u64)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let mut guard = match self.hold() {
            Held::Spilled(s) => return s.store()?.delete(key),
            Held::Map(guard) => guard,
        };
        let State::Map { map, .. } = &mut *guard else {
            return Ok(false);
        };
        if map.remove(key).is_none() {
            return Ok(false);
        }
        self.charged(guard)?;
        Ok(true)
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
        let end = range.end;
        let mut start = range.start.map(Bound::Included).unwrap_or(Bound::Unbounded);
        let mut page = Vec::new();
        let mut page_size = FIRST_PAGE;
        loop {
            page.clear();
            let mut taken = 0;
            {
                let state = self.state.read();
                let map = match &*state {
                    State::Map { map, .. } => map,
                    State::Spilled(s) => {
                        // Spilled meanwhile (perhaps by the visitor's own writes): the rest
                        // is read from disk, with no lock held.
                        let s = s.clone();
                        drop(state);
                        let rest = KeyRange {
                            start: start_key(&start),
                            end,
                        };
                        return s.store()?.scan(rest, visit);
                    }
                };
                map.walk(as_ref(&start), end.as_deref(), |k, v| {
                    eggroll_core::pairs::push(&mut page, k, v);
                    taken += 1;
                    taken < page_size
                });
            }
            // The page's last key is where the next page starts.
            let mut last_key = None;
            for pair in eggroll_core::pairs::iter(&page) {
                let (k, v) = pair?;
                last_key = Some(k);
                if !visit(k, v)? {
                    return Ok(());
                }
            }
            match last_key {
                Some(k) if taken == page_size => start = Bound::Excluded(k.to_vec()),
                _ => return Ok(()),
            }
            page_size = (page_size * 2).min(PAGE);
        }
    }

    fn count(&self) -> Result<u64> {
        match &*self.state.read() {
            State::Map { map, .. } => Ok(map.len() as u64),
            State::Spilled(s) => s.store()?.count(),
        }
    }

    fn merge_batch(&self, pairs: Vec<Pair>, combine: &ErasedFn) -> Result<()> {
        let mut guard = match self.hold() {
            Held::Spilled(s) => return s.store()?.merge_batch(pairs, combine),
            Held::Map(guard) => guard,
        };
        let State::Map { map, .. } = &mut *guard else {
            return Ok(());
        };
        for (k, v) in pairs {
            let merged = match map.get(&k) {
                Some(old) => combine_values(combine, old, &v)?,
                None => v,
            };
            checked_len(&k, &merged)?;
            map.insert(&k, &merged);
        }
        self.charged(guard)
    }
}

/// A bound on a borrowed key.
fn as_ref(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Refuses a key or value too long for the in-memory layout.
fn checked_len(k: &[u8], v: &[u8]) -> Result<()> {
    if k.len() > MAX_LEN || v.len() > MAX_LEN {
        return Err(EggError::InvalidTask(format!(
            "a pair of {} key bytes and {} value bytes is too large for an in-memory table (at most {MAX_LEN} each); split the value",
            k.len(),
            v.len()
        )));
    }
    Ok(())
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
        let page = match self.store.page(&self.next_start, &self.end, self.page_size) {
            Ok(page) => page,
            Err(e) => {
                self.done = true;
                return Some(Err(e));
            }
        };
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
