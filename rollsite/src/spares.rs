//! Object files kept after their transfer was taken, to receive the next object.
//!
//! A received object is written into the page cache. Writing over pages already cached costs
//! one copy; writing a new file first makes the kernel find, charge and map fresh pages, and
//! delete them again when the transfer is taken. On virtual machines that hand free memory back
//! to the host (free page reporting), fresh pages are faulted in again by the host: there a new
//! 1 GiB file cost 3.1-3.4 s of system time against 0.21 s for writing over a cached one
//! (measured with dd on our bench machine). So, as RocksDB recycles its log files, a taken
//! object's file is renamed into a spare directory and the next object is written over it.
//!
//! A file that mapped views still read (an in-process get hands out the mapped object) is
//! only reused once the last view is gone: each view holds a [`Lease`] on its file.

use eggroll_core::sync::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

/// Spare files kept at most: each may hold up to `max_object_bytes` of page cache, which the
/// kernel can reclaim under memory pressure like any cached file.
pub const MAX_SPARES: usize = 2;

/// A mapped view's hold on an object file: while any lease lives, the file is not reused.
#[derive(Debug)]
pub struct Lease {
    /// Set when the transfer was taken while views were alive: where the file now waits.
    retired: Mutex<Option<PathBuf>>,
    spares: Arc<Pool>,
}

impl Drop for Lease {
    fn drop(&mut self) {
        let retired = self.retired.lock().take();
        if let Some(path) = retired {
            self.spares.outstanding.fetch_sub(1, Ordering::AcqRel);
            self.spares.free.lock().push(path);
        }
    }
}

#[derive(Debug)]
struct Pool {
    free: Mutex<Vec<PathBuf>>,
    /// Spares renamed while still mapped: they join `free` when their last view goes.
    outstanding: AtomicUsize,
}

/// The spare object files of one receive buffer, and the leases on object files in use.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    pool: Arc<Pool>,
    leases: Mutex<HashMap<PathBuf, Weak<Lease>>>,
    next: AtomicU64,
}

impl Spares {
    /// The spares under `dir` (made if missing); files left there before a restart are free,
    /// as no view of them survived it.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let (mut free, mut next) = (Vec::new(), 0);
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let n = path
                .file_name()
                .and_then(|n| n.to_str()?.parse::<u64>().ok());
            match n {
                Some(n) if free.len() < MAX_SPARES => {
                    next = next.max(n + 1);
                    free.push(path);
                }
                _ => std::fs::remove_file(&path)?,
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(next),
            pool: Arc::new(Pool {
                free: Mutex::new(free),
                outstanding: AtomicUsize::new(0),
            }),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// Moves a free spare to `path`, if there is one; the caller then writes over it.
    pub fn take_into(&self, path: &Path) -> std::io::Result<bool> {
        let spare = self.pool.free.lock().pop();
        let Some(spare) = spare else {
            return Ok(false);
        };
        std::fs::rename(&spare, path)?;
        Ok(true)
    }

    /// A lease on the object file at `path`, to take before mapping it and keep beside the
    /// view. A file retired between the two is renamed away, so the mapping then fails (as for
    /// a removed transfer) and the lease frees the spare when it drops.
    pub fn lease(&self, path: &Path) -> Arc<Lease> {
        let mut leases = self.leases.lock();
        if let Some(l) = leases.get(path).and_then(Weak::upgrade) {
            return l;
        }
        let l = Arc::new(Lease {
            retired: Mutex::new(None),
            spares: self.pool.clone(),
        });
        leases.insert(path.to_path_buf(), Arc::downgrade(&l));
        l
    }

    /// Keeps the object file at `path`, whose transfer was taken, as a spare when there is
    /// room; otherwise leaves it to be deleted with its transfer.
    pub fn retire(&self, path: &Path) -> std::io::Result<()> {
        let live = {
            let mut leases = self.leases.lock();
            let live = leases.remove(path).and_then(|w| w.upgrade());
            let kept = self.pool.free.lock().len() + self.pool.outstanding.load(Ordering::Acquire);
            if kept >= MAX_SPARES || !path.exists() {
                return Ok(());
            }
            let n = self.next.fetch_add(1, Ordering::Relaxed);
            let spare = self.dir.join(format!("{n}"));
            std::fs::rename(path, &spare)?;
            match &live {
                Some(l) => {
                    self.pool.outstanding.fetch_add(1, Ordering::AcqRel);
                    *l.retired.lock() = Some(spare);
                }
                None => self.pool.free.lock().push(spare),
            }
            live
        };
        // Dropped outside the lock: if it was the last view, its drop frees the spare.
        drop(live);
        Ok(())
    }

    /// Spare files free for the next object (for tests).
    pub fn free(&self) -> usize {
        self.pool.free.lock().len()
    }
}
