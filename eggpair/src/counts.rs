//! A partition's pair count, kept so that `count` answers at once instead of scanning: known
//! after a scan or a compaction, forgotten by any write (whose batch also deletes the stored
//! copy, atomically with its data), so that it is never stale, also after a restart.
//!
//! A scan's count is kept only if no write was in flight when it began and none began while
//! it ran: then it saw exactly the partition's pairs.

use eggroll_core::sync::Mutex;

/// The bookkeeping of one partition's count.
#[derive(Default)]
pub struct Counts {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The count, when known.
    known: Option<u64>,
    /// Whether a copy is stored with the data (a write must delete it).
    stored: bool,
    /// Writes begun so far.
    writes: u64,
    /// Writes begun and not yet applied.
    in_flight: u64,
}

/// A write in progress: the count is forgotten; dropping it marks the write applied.
pub struct Writing<'a> {
    counts: &'a Counts,
    /// Whether this write's batch must delete the stored count.
    pub delete_stored: bool,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.counts.state.lock().in_flight -= 1;
    }
}

/// A count that may be kept once its scan is done.
pub struct Scan {
    writes: Option<u64>,
}

impl Counts {
    /// Starts with a count read back from the stored copy, if there was one.
    pub fn new(stored: Option<u64>) -> Self {
        Counts {
            state: Mutex::new(State {
                known: stored,
                stored: stored.is_some(),
                ..State::default()
            }),
        }
    }

    /// The count, if known.
    pub fn known(&self) -> Option<u64> {
        self.state.lock().known
    }

    /// Call before a write: forgets the count until the write is applied and counted again.
    pub fn writing(&self) -> Writing<'_> {
        let (delete_stored, _) = self.begin_write();
        Writing {
            counts: self,
            delete_stored,
        }
    }

    /// Begins a write that outlives a borrow (a bulk load): whether the stored copy must be
    /// deleted, and the number of this write if no other write is in flight. Every call must
    /// be matched by one of [`Self::end_write`] or [`Self::loaded`].
    pub fn begin_write(&self) -> (bool, Option<u64>) {
        let mut s = self.state.lock();
        s.known = None;
        s.writes += 1;
        s.in_flight += 1;
        let alone = s.in_flight == 1;
        (std::mem::take(&mut s.stored), alone.then_some(s.writes))
    }

    /// Ends a write begun by [`Self::begin_write`].
    pub fn end_write(&self) {
        self.state.lock().in_flight -= 1;
    }

    /// Ends write `write` (a load into a partition that was empty when it began, numbered by
    /// [`Self::begin_write`]) that left `n` pairs: `n` is the count if no other write ran
    /// when it began, began since or runs still. `store` writes the copy kept with the data,
    /// as for [`Self::scanned`].
    pub fn loaded<E>(
        &self,
        write: Option<u64>,
        n: u64,
        store: impl FnOnce(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut s = self.state.lock();
        s.in_flight -= 1;
        if write == Some(s.writes) && s.in_flight == 0 {
            store(n)?;
            s.known = Some(n);
            s.stored = true;
        }
        Ok(())
    }

    /// Call before scanning to count.
    pub fn scanning(&self) -> Scan {
        let s = self.state.lock();
        Scan {
            writes: (s.in_flight == 0).then_some(s.writes),
        }
    }

    /// Keeps `n`, the count `scan` found, if no write overlapped it; `store` writes the copy
    /// kept with the data (called under the lock, so that a later write deletes it).
    pub fn scanned<E>(
        &self,
        scan: Scan,
        n: u64,
        store: impl FnOnce(u64) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut s = self.state.lock();
        if scan.writes == Some(s.writes) && s.in_flight == 0 {
            store(n)?;
            s.known = Some(n);
            s.stored = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keep(c: &Counts, scan: Scan, n: u64) {
        c.scanned(scan, n, |_| Ok::<(), ()>(())).unwrap();
    }

    #[test]
    fn a_count_is_kept_only_when_no_write_overlapped_its_scan() {
        let c = Counts::new(None);
        assert_eq!(c.known(), None);
        let scan = c.scanning();
        keep(&c, scan, 5);
        assert_eq!(c.known(), Some(5));

        // A write forgets it, and deletes the stored copy once.
        let w = c.writing();
        assert!(w.delete_stored);
        assert_eq!(c.known(), None);
        // A scan begun while a write is in flight may miss it: not kept.
        let scan = c.scanning();
        drop(w);
        keep(&c, scan, 5);
        assert_eq!(c.known(), None);
        // A write that begins while a scan runs: not kept either.
        let scan = c.scanning();
        let w = c.writing();
        assert!(!w.delete_stored, "nothing stored to delete");
        drop(w);
        keep(&c, scan, 6);
        assert_eq!(c.known(), None);
        // A quiet scan is kept again.
        let scan = c.scanning();
        keep(&c, scan, 6);
        assert_eq!(c.known(), Some(6));

        // A failed store keeps nothing.
        let c = Counts::new(Some(3));
        assert_eq!(c.known(), Some(3));
        drop(c.writing());
        let scan = c.scanning();
        assert!(c.scanned(scan, 4, |_| Err("disk full")).is_err());
        assert_eq!(c.known(), None);
    }

    #[test]
    fn a_load_sets_the_count_only_when_it_was_the_only_write() {
        let c = Counts::new(Some(0));
        let (delete, write) = c.begin_write();
        assert!(delete);
        c.loaded(write, 7, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(c.known(), Some(7));

        // Another write ran when the load began: the load's figure may miss it.
        let w = c.writing();
        let (_, write) = c.begin_write();
        assert_eq!(write, None);
        drop(w);
        c.loaded(write, 9, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(c.known(), None);

        // Another write began during the load: the load's figure misses it.
        let (_, write) = c.begin_write();
        drop(c.writing());
        c.loaded(write, 9, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(c.known(), None);

        // Another write still in flight when the load ends: not kept either.
        let w = c.writing();
        let (_, write) = c.begin_write();
        c.loaded(write, 9, |_| Ok::<(), ()>(())).unwrap();
        assert_eq!(c.known(), None);
        drop(w);

        // An abandoned load forgets the count like any write.
        let scan = c.scanning();
        keep(&c, scan, 2);
        let _ = c.begin_write();
        c.end_write();
        assert_eq!(c.known(), None);
    }
}
