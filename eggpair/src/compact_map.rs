//! A sorted map of byte keys to byte values kept in a few large buffers instead of two heap
//! allocations per pair: the layout of an in-memory partition.
//!
//! Most pairs live in a packed, sorted *base*: one byte buffer of `key length, value length,
//! key, value` records and one offset per record. Writes that do not extend the base at its
//! end go to a small sorted *delta* (a `BTreeMap`, a removed key kept as `None`), which is
//! folded into a new base once it holds an eighth of the pairs: each pair is copied a bounded
//! number of times on average, and a pair costs its bytes plus 16, not plus about 100.

use std::collections::BTreeMap;
use std::ops::Bound;

/// Bytes of a record's header in the base: the key's and the value's length, as u32.
const HEADER: usize = 8;
/// Bytes of a pair's offset in the base.
const OFFSET: usize = std::mem::size_of::<u64>();
/// What a delta entry costs beyond its key and value: two `Vec` headers, the allocator's
/// headers and rounding, the tree's share of a node.
const DELTA_OVERHEAD: usize = 64;
/// The delta is folded into the base once it has this many entries and an eighth of the base.
const MIN_FOLD: usize = 4096;

/// The longest key or value a [`CompactMap`] holds (its records store u32 lengths).
pub const MAX_LEN: usize = u32::MAX as usize;

/// A sorted byte map in packed buffers; see the module's doc.
#[derive(Default)]
pub struct CompactMap {
    /// Records, in key order, with no key twice.
    data: Vec<u8>,
    /// Where each record of `data` starts.
    offsets: Vec<u64>,
    /// Writes not folded into the base yet: a value, or `None` for a key removed.
    delta: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// The delta's share of `heap_bytes`.
    delta_bytes: usize,
    /// Keys in the map (base and delta together).
    len: usize,
}

/// Where a key lies in the base: found at an index, or where it would be inserted.
type Search = Result<usize, usize>;

impl CompactMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many keys it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// What its pairs take in memory, roughly: what the memory budget is charged.
    pub fn heap_bytes(&self) -> u64 {
        (self.data.len() + self.offsets.len() * OFFSET + self.delta_bytes) as u64
    }

    /// The base's record `i`: its key and value.
    fn record(&self, i: usize) -> (&[u8], &[u8]) {
        let at = self.offsets[i] as usize;
        let klen = u32::from_le_bytes(self.data[at..at + 4].try_into().expect("4 bytes")) as usize;
        let vlen =
            u32::from_le_bytes(self.data[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let k = at + HEADER;
        (
            &self.data[k..k + klen],
            &self.data[k + klen..k + klen + vlen],
        )
    }

    /// Where `key` is in the base.
    fn search(&self, key: &[u8]) -> Search {
        let (mut lo, mut hi) = (0, self.offsets.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.record(mid).0.cmp(key) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(mid),
            }
        }
        Err(lo)
    }

    /// The base's first record at or after `start`.
    fn lower_bound(&self, start: Bound<&[u8]>) -> usize {
        match start {
            Bound::Unbounded => 0,
            Bound::Included(k) => self.search(k).unwrap_or_else(|i| i),
            Bound::Excluded(k) => match self.search(k) {
                Ok(i) => i + 1,
                Err(i) => i,
            },
        }
    }

    /// The base's last key, if the base holds any.
    fn last_base_key(&self) -> Option<&[u8]> {
        self.offsets.len().checked_sub(1).map(|i| self.record(i).0)
    }

    /// Appends a record to `data` and `offsets` (the caller keeps them sorted).
    fn push_record(data: &mut Vec<u8>, offsets: &mut Vec<u64>, k: &[u8], v: &[u8]) {
        offsets.push(data.len() as u64);
        data.extend_from_slice(&(k.len() as u32).to_le_bytes());
        data.extend_from_slice(&(v.len() as u32).to_le_bytes());
        data.extend_from_slice(k);
        data.extend_from_slice(v);
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        if let Some(v) = self.delta.get(key) {
            return v.as_deref();
        }
        self.search(key).ok().map(|i| self.record(i).1)
    }

    /// Sets `key` to `value`; returns the old value's length, if there was one.
    ///
    /// Panics if the key or the value is longer than [`MAX_LEN`]; callers check.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) -> Option<usize> {
        assert!(key.len() <= MAX_LEN && value.len() <= MAX_LEN);
        // Past every key held, with nothing pending: straight onto the end of the base.
        if self.delta.is_empty() && self.last_base_key().is_none_or(|last| key > last) {
            Self::push_record(&mut self.data, &mut self.offsets, key, value);
            self.len += 1;
            return None;
        }
        let old = self.get(key).map(<[u8]>::len);
        if old.is_none() {
            self.len += 1;
        }
        self.delta_put(key.to_vec(), Some(value.to_vec()));
        self.maybe_fold();
        old
    }

    /// Removes `key`; returns its value's length, if it was there.
    pub fn remove(&mut self, key: &[u8]) -> Option<usize> {
        let old = self.get(key).map(<[u8]>::len)?;
        self.len -= 1;
        if self.search(key).is_ok() {
            self.delta_put(key.to_vec(), None);
        } else if let Some(Some(v)) = self.delta.remove(key) {
            self.delta_bytes -= key.len() + v.len() + DELTA_OVERHEAD;
        }
        self.maybe_fold();
        Some(old)
    }

    /// Puts an entry into the delta, keeping `delta_bytes`.
    fn delta_put(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        let added = key.len() + value.as_ref().map_or(0, Vec::len) + DELTA_OVERHEAD;
        let klen = key.len();
        if let Some(old) = self.delta.insert(key, value) {
            self.delta_bytes -= klen + old.map_or(0, |v| v.len()) + DELTA_OVERHEAD;
        }
        self.delta_bytes += added;
    }

    /// Folds the delta into the base once it has grown enough to pay for the copy.
    fn maybe_fold(&mut self) {
        if self.delta.len() >= MIN_FOLD.max(self.offsets.len() / 8) {
            self.fold();
        }
    }

    /// Merges the delta into a new base.
    pub fn fold(&mut self) {
        if self.delta.is_empty() {
            return;
        }
        let delta = std::mem::take(&mut self.delta);
        self.delta_bytes = 0;
        let mut data = Vec::with_capacity(
            self.data.len()
                + delta
                    .iter()
                    .map(|(k, v)| HEADER + k.len() + v.as_ref().map_or(0, Vec::len))
                    .sum::<usize>(),
        );
        let mut offsets = Vec::with_capacity(self.len);
        let mut base = 0..self.offsets.len();
        let mut next_base = base.next();
        for (k, v) in &delta {
            // Base records before this delta key go first; one with this key is replaced.
            while let Some(i) = next_base {
                let (bk, bv) = self.record(i);
                if bk > k.as_slice() {
                    break;
                }
                if bk < k.as_slice() {
                    Self::push_record(&mut data, &mut offsets, bk, bv);
                }
                next_base = base.next();
            }
            if let Some(v) = v {
                Self::push_record(&mut data, &mut offsets, k, v);
            }
        }
        while let Some(i) = next_base {
            let (bk, bv) = self.record(i);
            Self::push_record(&mut data, &mut offsets, bk, bv);
            next_base = base.next();
        }
        self.data = data;
        self.offsets = offsets;
        debug_assert_eq!(self.offsets.len(), self.len);
    }

    /// Calls `visit` on the pairs from `start` to `end` (excluded; `None`: to the end), in key
    /// order, until it returns false.
    pub fn walk(
        &self,
        start: Bound<&[u8]>,
        end: Option<&[u8]>,
        mut visit: impl FnMut(&[u8], &[u8]) -> bool,
    ) {
        let before_end = |k: &[u8]| end.is_none_or(|e| k < e);
        let mut base = self.lower_bound(start);
        let mut delta = self
            .delta
            .range::<[u8], _>((start, Bound::Unbounded))
            .peekable();
        loop {
            let b = (base < self.offsets.len()).then(|| self.record(base));
            let (k, v) = match (b, delta.peek()) {
                (None, None) => return,
                (Some((bk, bv)), d) if d.is_none_or(|(dk, _)| bk < dk.as_slice()) => {
                    base += 1;
                    (bk, Some(bv))
                }
                (b, Some((dk, dv))) => {
                    // The delta's entry wins over a base record of the same key.
                    if b.is_some_and(|(bk, _)| bk == dk.as_slice()) {
                        base += 1;
                    }
                    let entry = (dk.as_slice(), dv.as_deref());
                    delta.next();
                    entry
                }
                (Some(_), None) => unreachable!("the first arm takes a base record with no delta"),
            };
            if !before_end(k) {
                return;
            }
            if let Some(v) = v {
                if !visit(k, v) {
                    return;
                }
            }
        }
    }

    /// Every pair, in key order, emptying the map.
    pub fn drain_sorted(&mut self) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::with_capacity(self.len);
        self.walk(Bound::Unbounded, None, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        });
        *self = Self::default();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn all(m: &CompactMap, start: Bound<&[u8]>, end: Option<&[u8]>) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        m.walk(start, end, |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            true
        });
        out
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(Vec<u8>, Vec<u8>),
        Remove(Vec<u8>),
        Fold,
    }

    fn key() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(0u8..4, 0..4)
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (key(), prop::collection::vec(any::<u8>(), 0..6)).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => key().prop_map(Op::Remove),
            1 => Just(Op::Fold),
        ]
    }

    proptest! {
        /// Every read matches a BTreeMap after any mix of writes, removals and folds.
        #[test]
        fn matches_a_btreemap(ops in prop::collection::vec(op(), 0..300),
                              lo in key(), hi in key(), exclusive in any::<bool>()) {
            let mut m = CompactMap::new();
            let mut want: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        let old = m.insert(&k, &v);
                        prop_assert_eq!(old, want.insert(k, v).map(|v| v.len()));
                    }
                    Op::Remove(k) => {
                        prop_assert_eq!(m.remove(&k), want.remove(&k).map(|v| v.len()));
                    }
                    Op::Fold => m.fold(),
                }
                prop_assert_eq!(m.len(), want.len());
            }
            for k in want.keys() {
                prop_assert_eq!(m.get(k), want.get(k).map(Vec::as_slice));
            }
            prop_assert_eq!(m.get(b"\x09"), None);
            let got = all(&m, Bound::Unbounded, None);
            prop_assert_eq!(&got, &want.clone().into_iter().collect::<Vec<_>>());
            let start = if exclusive { Bound::Excluded(lo.as_slice()) } else { Bound::Included(lo.as_slice()) };
            let expect: Vec<_> = want
                .range::<[u8], _>((start, Bound::Unbounded))
                .take_while(|(k, _)| k.as_slice() < hi.as_slice())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            prop_assert_eq!(all(&m, start, Some(&hi)), expect);
            prop_assert_eq!(m.drain_sorted(), want.into_iter().collect::<Vec<_>>());
            prop_assert!(m.is_empty() && m.heap_bytes() == 0);
        }
    }

    #[test]
    fn sorted_writes_go_straight_to_the_base_and_others_are_folded() {
        let mut m = CompactMap::new();
        for i in 0u32..10_000 {
            m.insert(&i.to_be_bytes(), b"v");
        }
        assert!(m.delta.is_empty());
        assert_eq!(m.heap_bytes(), 10_000 * (4 + 1 + 8 + 8));
        // Out of order: into the delta, folded once it holds an eighth of the base.
        for i in (0u32..10_000).rev().step_by(2) {
            m.insert(&i.to_be_bytes(), b"ww");
        }
        assert!(m.delta.len() < MIN_FOLD);
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&9_999u32.to_be_bytes()), Some(&b"ww"[..]));
        assert_eq!(m.get(&9_998u32.to_be_bytes()), Some(&b"v"[..]));
        let mut n = 0;
        m.walk(Bound::Included(&5_000u32.to_be_bytes()), None, |_, _| {
            n += 1;
            n < 10
        });
        assert_eq!(n, 10);
    }
}
