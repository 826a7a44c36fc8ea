//! The open persistent partitions of a process: a bounded cache of handles, least recently
//! used closed first, and opening that waits for another process to let a partition go.

use crate::error::{EggError, Result};
use crate::rocks::{RocksEnv, RocksStore};
use eggroll_core::config::StorageConfig;
use eggroll_core::sync::Mutex;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long an egg waits for another process to release a partition it wants to open.
const LOCK_WAIT: Duration = Duration::from_secs(15);

struct Cache {
    /// Open partitions with their last use: a tick for LRU order, an instant for idling.
    open: HashMap<PathBuf, (Arc<RocksStore>, u64, Instant)>,
    tick: u64,
}

/// Open partition handles, at most `max_open_partitions` idle ones kept.
pub struct OpenPartitions {
    env: RocksEnv,
    cap: usize,
    cache: Mutex<Cache>,
    opening: Mutex<()>,
    /// Egg mode: wait for a partition that another process holds.
    wait_for_others: bool,
}

impl OpenPartitions {
    /// An empty cache with the shared RocksDB budget of `config`.
    pub fn new(config: &StorageConfig, wait_for_others: bool) -> Self {
        Self {
            env: RocksEnv::new(config),
            cap: config.max_open_partitions.max(1) as usize,
            cache: Mutex::new(Cache {
                open: HashMap::new(),
                tick: 0,
            }),
            opening: Mutex::new(()),
            wait_for_others,
        }
    }

    /// The partition at `path`, opened (and created) if it is not open yet.
    pub fn get(&self, path: &Path) -> Result<Arc<RocksStore>> {
        if let Some(store) = self.cached(path) {
            return Ok(store);
        }
        // In egg mode, another process (an egg of another session) may hold the partition
        // for a moment: eggs close what they have not used for a second.
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            {
                // One open at a time: RocksDB refuses a second open of a DB within one
                // process. Not held while waiting, so other partitions open meanwhile.
                let _opening = self.opening.lock();
                if let Some(store) = self.cached(path) {
                    return Ok(store);
                }
                match self.env.open(path) {
                    Err(EggError::Corrupt { source, .. })
                        if source.to_string().contains("lock file") =>
                    {
                        if !self.wait_for_others || Instant::now() >= deadline {
                            return Err(EggError::Locked {
                                path: path.to_path_buf(),
                                waited: if self.wait_for_others {
                                    LOCK_WAIT
                                } else {
                                    Duration::ZERO
                                },
                            });
                        }
                    }
                    // Cached before the opening lock goes, so no thread opens it twice.
                    other => return Ok(self.insert(path, Arc::new(other?))),
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Adds a just-opened partition, closing the least used idle ones past the cap.
    fn insert(&self, path: &Path, store: Arc<RocksStore>) -> Arc<RocksStore> {
        let mut cache = self.cache.lock();
        cache.tick += 1;
        let tick = cache.tick;
        cache
            .open
            .insert(path.to_path_buf(), (store.clone(), tick, Instant::now()));
        while cache.open.len() > self.cap {
            let victim = cache
                .open
                .iter()
                .filter(|(_, (s, _, _))| Arc::strong_count(s) == 1)
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(p, _)| p.clone());
            match victim {
                Some(p) => {
                    cache.open.remove(&p);
                }
                None => break,
            }
        }
        store
    }

    /// An open partition, marked as just used.
    fn cached(&self, path: &Path) -> Option<Arc<RocksStore>> {
        let mut cache = self.cache.lock();
        cache.tick += 1;
        let tick = cache.tick;
        let (store, used, at) = cache.open.get_mut(path)?;
        *used = tick;
        *at = Instant::now();
        Some(store.clone())
    }

    /// Closes the partitions nobody has used for `idle`, so that another process (an egg of
    /// another session on this node) can open them; returns how many closed.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let mut cache = self.cache.lock();
        let before = cache.open.len();
        cache
            .open
            .retain(|_, (s, _, at)| Arc::strong_count(s) > 1 || at.elapsed() < idle);
        before - cache.open.len()
    }

    /// Forgets every handle under `dir` (a partition or a whole table about to be removed).
    pub fn forget_under(&self, dir: &Path) {
        self.cache.lock().open.retain(|p, _| !p.starts_with(dir));
    }
}
