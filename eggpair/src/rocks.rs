//! RocksDB partitions: one DB per partition, sharing one block cache and one memtable budget
//! per process. Each DB has a `meta` column family beside its pairs, which keeps the
//! partition's count once known (see `counts`).

use crate::counts::Counts;
use crate::error::{EggError, Result};
use crate::store::{combine_values, KeyRange, Pair, PairIterator, PartitionStore, Visit};
use eggroll_core::config::StorageConfig;
use eggroll_core::functions::ErasedFn;
use eggroll_core::sync::Mutex;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, ReadOptions, WriteBatch,
    WriteBufferManager, DB,
};
use std::path::{Path, PathBuf};

/// The column family of a partition's own metadata (never a user's pair).
const META: &str = "meta";
/// Key of the stored count in `META`: a u64, little-endian.
const COUNT_KEY: &[u8] = b"count";

/// What every RocksDB partition of a process shares.
pub struct RocksEnv {
    cache: Cache,
    write_buffers: WriteBufferManager,
}

impl RocksEnv {
    /// Makes the shared cache and memtable budget.
    pub fn new(cfg: &StorageConfig) -> Self {
        let cache = Cache::new_lru_cache(cfg.block_cache_bytes as usize);
        // Memtable memory is charged to the block cache, so one figure bounds both.
        let write_buffers = WriteBufferManager::new_write_buffer_manager_with_cache(
            cfg.write_buffer_bytes as usize,
            false,
            cache.clone(),
        );
        Self {
            cache,
            write_buffers,
        }
    }

    fn options(&self) -> Options {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        // Partitions written before `meta` existed gain it on open.
        opts.create_missing_column_families(true);
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_write_buffer_manager(&self.write_buffers);
        opts.set_write_buffer_size(32 << 20);
        // Each partition keeps few files open; the process caps open partitions instead.
        opts.set_max_open_files(256);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&self.cache);
        table.set_block_size(16 << 10);
        opts.set_block_based_table_factory(&table);
        opts
    }

    /// Opens (creating if missing) the partition at `path`.
    pub fn open(&self, path: &Path) -> Result<RocksStore> {
        std::fs::create_dir_all(path)
            .map_err(EggError::io("cannot create partition directory", path))?;
        let corrupt = |source| EggError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let db = DB::open_cf(
            &self.options(),
            path,
            [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, META],
        )
        .map_err(corrupt)?;
        let meta = db.cf_handle(META).ok_or_else(|| EggError::BadMeta {
            path: path.to_path_buf(),
            reason: format!("its column family {META} is missing after open"),
        })?;
        // A stored count of another size is not ours to trust: count again.
        let stored = db
            .get_cf(meta, COUNT_KEY)
            .map_err(corrupt)?
            .and_then(|v| <[u8; 8]>::try_from(v.as_slice()).ok())
            .map(u64::from_le_bytes);
        Ok(RocksStore {
            db,
            path: path.to_path_buf(),
            merge_lock: Mutex::new(()),
            counts: Counts::new(stored),
        })
    }
}

/// One partition in its own RocksDB.
pub struct RocksStore {
    db: DB,
    path: PathBuf,
    /// Serializes read-modify-write merges; plain writes do not take it.
    merge_lock: Mutex<()>,
    /// The count, once known, forgotten by writes.
    counts: Counts,
}

impl RocksStore {
    fn err(&self) -> impl Fn(rocksdb::Error) -> EggError + '_ {
        move |source| EggError::Rocks {
            path: self.path.clone(),
            source,
        }
    }

    /// A raw iterator positioned at the start of `range`, bounded by its end.
    fn raw_iter(&self, range: KeyRange) -> rocksdb::DBRawIterator<'_> {
        let mut opts = ReadOptions::default();
        if let Some(end) = range.end {
            opts.set_iterate_upper_bound(end);
        }
        opts.set_readahead_size(2 << 20);
        let mut it = self.db.raw_iterator_opt(opts);
        match &range.start {
            Some(start) => it.seek(start),
            None => it.seek_to_first(),
        }
        it
    }

    /// The partition directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn meta(&self) -> Result<&rocksdb::ColumnFamily> {
        self.db.cf_handle(META).ok_or_else(|| EggError::BadMeta {
            path: self.path.clone(),
            reason: format!("its column family {META} is missing"),
        })
    }

    /// Applies `batch`: the one way pairs are written. The count is forgotten until the batch
    /// is applied, and its stored copy deleted in the same batch.
    fn apply(&self, mut batch: WriteBatch) -> Result<()> {
        let writing = self.counts.writing();
        if writing.delete_stored {
            batch.delete_cf(self.meta()?, COUNT_KEY);
        }
        self.db.write(batch).map_err(self.err())
    }

    /// Writes `puts` and removes `deletes` in one atomic batch.
    pub fn write(&self, puts: &[Pair], deletes: &[Vec<u8>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in puts {
            batch.put(k, v);
        }
        for k in deletes {
            batch.delete(k);
        }
        self.apply(batch)
    }
}

impl PartitionStore for RocksStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.db.get(key).map_err(self.err())
    }

    fn put_batch(&self, pairs: Vec<Pair>) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (k, v) in &pairs {
            batch.put(k, v);
        }
        self.apply(batch)
    }

    fn put_packed(&self, packed: &[u8]) -> Result<u64> {
        let mut batch = WriteBatch::default();
        let mut n = 0;
        for pair in eggroll_core::pairs::iter(packed) {
            let (k, v) = pair?;
            batch.put(k, v);
            n += 1;
        }
        self.apply(batch)?;
        Ok(n)
    }

    fn delete(&self, key: &[u8]) -> Result<bool> {
        let existed = self.db.get_pinned(key).map_err(self.err())?.is_some();
        let mut batch = WriteBatch::default();
        batch.delete(key);
        self.apply(batch)?;
        Ok(existed)
    }

    fn iter(&self, range: KeyRange) -> Result<PairIterator<'_>> {
        let mut it = self.raw_iter(range);
        let mut failed = false;
        Ok(Box::new(std::iter::from_fn(move || {
            if failed {
                return None;
            }
            if !it.valid() {
                return match it.status() {
                    Ok(()) => None,
                    Err(source) => {
                        failed = true;
                        Some(Err(EggError::Rocks {
                            path: self.path.clone(),
                            source,
                        }))
                    }
                };
            }
            let pair = (it.key()?.to_vec(), it.value()?.to_vec());
            it.next();
            Some(Ok(pair))
        })))
    }

    fn scan(&self, range: KeyRange, visit: &mut Visit) -> Result<()> {
        let mut it = self.raw_iter(range);
        while it.valid() {
            if let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !visit(k, v)? {
                    return Ok(());
                }
            }
            it.next();
        }
        it.status().map_err(self.err())
    }

    fn count(&self) -> Result<u64> {
        if let Some(n) = self.counts.known() {
            return Ok(n);
        }
        let scan = self.counts.scanning();
        let mut it = self.raw_iter(KeyRange::all());
        let mut n = 0u64;
        while it.valid() {
            n += 1;
            it.next();
        }
        it.status().map_err(self.err())?;
        let meta = self.meta()?;
        self.counts.scanned(scan, n, |n| {
            self.db
                .put_cf(meta, COUNT_KEY, n.to_le_bytes())
                .map_err(self.err())
        })?;
        Ok(n)
    }

    fn sync(&self) -> Result<()> {
        self.db.flush_wal(true).map_err(self.err())
    }

    fn compact(&self) -> Result<()> {
        self.db.flush().map_err(self.err())?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        // A compaction follows a bulk load: count it now, so that `count` answers at once.
        self.count()?;
        Ok(())
    }

    fn merge_batch(&self, pairs: Vec<Pair>, combine: &ErasedFn) -> Result<()> {
        let _guard = self.merge_lock.lock();
        let mut batch = WriteBatch::default();
        let mut pending: std::collections::HashMap<Vec<u8>, Vec<u8>> = Default::default();
        for (k, v) in pairs {
            let merged = match pending.get(&k) {
                Some(old) => combine_values(combine, old, &v)?,
                None => match self.db.get_pinned(&k).map_err(self.err())? {
                    Some(old) => combine_values(combine, &old, &v)?,
                    None => v,
                },
            };
            pending.insert(k, merged);
        }
        for (k, v) in &pending {
            batch.put(k, v);
        }
        self.apply(batch)
    }
}
