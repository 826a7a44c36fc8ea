//! A process's memory budget for in-memory partitions, and where partitions past it spill:
//! RocksDB with no write-ahead log in the process's scratch space under the data dir, removed
//! when the partition goes (with its table or its session).

use crate::error::{EggError, Result};
use crate::rocks::{RocksEnv, RocksStore};
use eggroll_core::config::StorageConfig;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Past the budget, a partition spills once it holds this much (or a sixteenth of the budget,
/// if less): tiny partitions are not worth a database each.
const MIN_SPILL: u64 = 1 << 20;
/// The directory, under the data dir, of every process's spilled partitions.
pub const SCRATCH_DIR: &str = "scratch";

/// The memory in-memory partitions of one process use, against its budget.
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
    spilled_bytes: AtomicU64,
    spilled_partitions: AtomicU64,
    /// This process's scratch dir: `<data dir>/scratch/<pid>`.
    root: PathBuf,
    env: RocksEnv,
    next: AtomicU64,
}

/// A snapshot of a budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryUsage {
    /// The budget, in bytes.
    pub limit: u64,
    /// Bytes held by in-memory partitions now.
    pub used: u64,
    /// Bytes moved to disk by spills so far.
    pub spilled_bytes: u64,
    /// Partitions spilled so far.
    pub spilled_partitions: u64,
}

/// The default budget: an eighth of the machine's memory (several eggs share a node), or
/// 2 GiB where the machine's memory cannot be read.
pub fn default_limit() -> u64 {
    proc_bytes("/proc/meminfo", "MemTotal:").map_or(2 << 30, |t| t / 8)
}

/// This process's resident set, from `/proc/self/status`; `None` where it cannot be read.
pub fn resident_bytes() -> Option<u64> {
    proc_bytes("/proc/self/status", "VmRSS:")
}

/// The figure of line `field` (in kB) of the /proc file `file`, in bytes.
fn proc_bytes(file: &str, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    let kb = text
        .lines()
        .find_map(|l| l.strip_prefix(field))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kb * 1024)
}

impl MemoryBudget {
    /// The budget of `config.memory_budget_bytes` (0: [`default_limit`]), spilling under
    /// `data_dir`.
    pub fn new(data_dir: &Path, config: &StorageConfig) -> Self {
        let limit = match config.memory_budget_bytes {
            0 => default_limit(),
            n => n,
        };
        // Spilled partitions have their own small cache: they are read mostly in order.
        let spill = StorageConfig {
            block_cache_bytes: config.block_cache_bytes.min(32 << 20),
            write_buffer_bytes: config.write_buffer_bytes.min(64 << 20),
            bulk_run_bytes: 0,
            ..config.clone()
        };
        Self {
            limit,
            used: AtomicU64::new(0),
            spilled_bytes: AtomicU64::new(0),
            spilled_partitions: AtomicU64::new(0),
            root: data_dir
                .join(SCRATCH_DIR)
                .join(std::process::id().to_string()),
            env: RocksEnv::new(&spill),
            next: AtomicU64::new(0),
        }
    }

    /// Charges `n` more bytes.
    pub fn grow(&self, n: u64) {
        self.used.fetch_add(n, Ordering::Relaxed);
    }

    /// Releases `n` bytes.
    pub fn shrink(&self, n: u64) {
        // Saturating: a release never takes the figure below zero.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }

    /// Whether a partition holding `bytes` should spill now: the process is over its budget
    /// and the partition is large enough to be worth a database.
    pub fn should_spill(&self, bytes: u64) -> bool {
        self.used.load(Ordering::Relaxed) > self.limit && bytes >= MIN_SPILL.min(self.limit / 16)
    }

    /// A new, empty database for a partition of `bytes` about to spill.
    pub fn spill_store(&self, bytes: u64) -> Result<Arc<SpillStore>> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        if n == 0 {
            remove_stale(&self.root);
        }
        let dir = self.root.join(n.to_string());
        let store = self.env.open_scratch(&dir)?;
        self.spilled_bytes.fetch_add(bytes, Ordering::Relaxed);
        self.spilled_partitions.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(SpillStore {
            store: Some(store),
            dir,
        }))
    }

    /// The budget's figures now.
    pub fn usage(&self) -> MemoryUsage {
        MemoryUsage {
            limit: self.limit,
            used: self.used.load(Ordering::Relaxed),
            spilled_bytes: self.spilled_bytes.load(Ordering::Relaxed),
            spilled_partitions: self.spilled_partitions.load(Ordering::Relaxed),
        }
    }
}

impl Drop for MemoryBudget {
    fn drop(&mut self) {
        // Every partition charged to the budget holds it, so none is left to spill here.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Removes the scratch dirs of processes that are gone (killed before they could remove
/// theirs), beside `own`.
fn remove_stale(own: &Path) {
    let Some(parent) = own.parent() else { return };
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let alive = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| Path::new("/proc").join(pid.to_string()).exists());
        if !alive && entry.path() != own {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// A spilled partition's database; its directory goes when the last handle does.
pub struct SpillStore {
    store: Option<RocksStore>,
    dir: PathBuf,
}

impl SpillStore {
    /// The database.
    pub fn store(&self) -> Result<&RocksStore> {
        self.store.as_ref().ok_or_else(|| EggError::BadMeta {
            path: self.dir.clone(),
            reason: "the spilled partition was closed".into(),
        })
    }
}

impl Drop for SpillStore {
    fn drop(&mut self) {
        // Closed before its files go.
        drop(self.store.take());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
