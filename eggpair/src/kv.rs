//! A small embedded key/value store: one persistent, sorted map in a directory of its own,
//! for a daemon's own records (the cluster manager's metadata, a roll-site's receive buffer).
//! No table, namespace or partition: those are for user data.

use crate::error::Result;
use crate::rocks::{RocksEnv, RocksStore};
use crate::store::{KeyRange, Pair, PairIterator, PartitionStore, Visit};
use eggroll_core::config::StorageConfig;
use std::path::Path;
use std::sync::Arc;

/// One persistent sorted map. Calls block: never call them on an async worker.
#[derive(Clone)]
pub struct KvStore {
    db: Arc<RocksStore>,
}

impl KvStore {
    /// Opens (or creates) the store in `dir`, with its own `cache_bytes` of block cache and
    /// as much again for write buffers.
    pub fn open(dir: &Path, cache_bytes: u64) -> Result<Self> {
        Self::open_with(
            dir,
            &StorageConfig {
                block_cache_bytes: cache_bytes,
                write_buffer_bytes: cache_bytes,
                ..StorageConfig::default()
            },
        )
    }

    /// Opens (or creates) the store in `dir` with the cache and write buffers of `config`.
    pub fn open_with(dir: &Path, config: &StorageConfig) -> Result<Self> {
        Ok(Self {
            db: Arc::new(RocksEnv::new(config).open(dir)?),
        })
    }

    /// The value of `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key)
    }

    /// Writes pairs atomically; a later pair of the same key wins.
    pub fn put(&self, pairs: Vec<Pair>) -> Result<()> {
        self.db.put_batch(pairs)
    }

    /// Removes `key`; true if it was there.
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        self.db.delete(key)
    }

    /// Writes `puts` and removes `deletes` atomically.
    pub fn write(&self, puts: &[Pair], deletes: &[Vec<u8>]) -> Result<()> {
        self.db.write(puts, deletes)
    }

    /// The pairs in `range`, in key order.
    pub fn iter(&self, range: KeyRange) -> Result<PairIterator<'_>> {
        self.db.iter(range)
    }

    /// Calls `visit` on each pair in `range` without copying, until it returns false.
    pub fn scan(&self, range: KeyRange, visit: &mut Visit) -> Result<()> {
        self.db.scan(range, visit)
    }

    /// Makes every write so far survive a machine crash.
    pub fn sync(&self) -> Result<()> {
        self.db.sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reopen_and_scans_are_sorted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let kv = KvStore::open(dir.path(), 1 << 20).unwrap();
            kv.put(vec![
                (b"b/2".to_vec(), b"two".to_vec()),
                (b"a/1".to_vec(), b"one".to_vec()),
            ])
            .unwrap();
            kv.put(vec![(b"b/1".to_vec(), b"uno".to_vec())]).unwrap();
            kv.write(&[(b"c".to_vec(), b"x".to_vec())], &[b"a/1".to_vec()])
                .unwrap();
            assert!(!kv.delete(b"nothing").unwrap());
            kv.sync().unwrap();
        }
        let kv = KvStore::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(kv.get(b"a/1").unwrap(), None);
        assert_eq!(kv.get(b"c").unwrap().as_deref(), Some(&b"x"[..]));
        let b: Vec<Pair> = kv
            .iter(KeyRange::prefix(b"b/"))
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        assert_eq!(
            b,
            vec![
                (b"b/1".to_vec(), b"uno".to_vec()),
                (b"b/2".to_vec(), b"two".to_vec())
            ]
        );
    }
}
