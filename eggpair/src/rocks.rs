//! RocksDB partitions: one DB per partition, sharing one block cache and one memtable budget
//! per process. Each DB has a `meta` column family beside its pairs, which keeps the
//! partition's count once known (see `counts`).

use crate::counts::Counts;
use crate::error::{EggError, Result};
use crate::sorted_runs::Run;
use crate::store::{combine_values, BulkLoad, KeyRange, Pair, PairIterator, PartitionStore, Visit};
use eggroll_core::config::StorageConfig;
use eggroll_core::functions::ErasedFn;
use eggroll_core::sync::Mutex;
use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, IngestExternalFileOptions, Options, ReadOptions,
    WriteBatch, WriteBufferManager, WriteOptions, DB,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The column family of a partition's own metadata (never a user's pair).
const META: &str = "meta";
/// Key of the stored count in `META`: a u64, little-endian.
const COUNT_KEY: &[u8] = b"count";
/// The subdirectory of a partition where a bulk load writes its files before ingesting them.
const BULK_DIR: &str = "bulk";
/// A bulk load smaller than this is written as one batch, not as a file.
const SMALL_LOAD_BYTES: usize = 1 << 20;

/// What every RocksDB partition of a process shares.
pub struct RocksEnv {
    cache: Cache,
    write_buffers: WriteBufferManager,
    /// Run size of bulk loads (0: none).
    bulk_run_bytes: usize,
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
            bulk_run_bytes: cfg.bulk_run_bytes as usize,
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
        self.open_with(path, true)
    }

    /// Opens a scratch partition at `path`: written without a write-ahead log, as its data
    /// need not survive the process (a spilled in-memory partition).
    pub fn open_scratch(&self, path: &Path) -> Result<RocksStore> {
        self.open_with(path, false)
    }

    fn open_with(&self, path: &Path, wal: bool) -> Result<RocksStore> {
        std::fs::create_dir_all(path)
            .map_err(EggError::io("cannot create partition directory", path))?;
        let corrupt = |source| EggError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let opts = self.options();
        let db = DB::open_cf(&opts, path, [rocksdb::DEFAULT_COLUMN_FAMILY_NAME, META])
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
            opts,
            wal,
            bulk_run_bytes: self.bulk_run_bytes,
            path: path.to_path_buf(),
            merge_lock: Mutex::new(()),
            counts: Counts::new(stored),
        })
    }
}

/// One partition in its own RocksDB.
pub struct RocksStore {
    db: DB,
    /// The options it was opened with, which a bulk load's files are written with.
    opts: Options,
    /// Whether writes go through the write-ahead log (not for scratch partitions).
    wal: bool,
    /// Run size of bulk loads (0: none).
    bulk_run_bytes: usize,
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
        let mut opts = WriteOptions::default();
        opts.disable_wal(!self.wal);
        self.db.write_opt(batch, &opts).map_err(self.err())
    }

    /// Whether the partition holds no pair.
    fn is_empty(&self) -> Result<bool> {
        let it = self.raw_iter(KeyRange::all());
        let empty = !it.valid();
        it.status().map_err(self.err())?;
        Ok(empty)
    }

    /// Writes `count`, a count just made, as the copy kept with the data.
    fn store_count(&self, count: u64) -> Result<()> {
        self.db
            .put_cf(self.meta()?, COUNT_KEY, count.to_le_bytes())
            .map_err(self.err())
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
        self.counts.scanned(scan, n, |n| self.store_count(n))?;
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

    fn bulk_load(self: Arc<Self>) -> Result<Option<Box<dyn BulkLoad>>> {
        if self.bulk_run_bytes == 0 || !self.is_empty()? {
            return Ok(None);
        }
        // Begun before checking again, so that a write racing the check shows at the end.
        let (delete_stored, write) = self.counts.begin_write();
        let run = Run::new(self.bulk_run_bytes);
        let load = RocksLoad {
            store: self,
            run,
            files: Vec::new(),
            pairs: 0,
            write,
            ended: false,
        };
        if delete_stored {
            let store = &load.store;
            store
                .db
                .delete_cf(store.meta()?, COUNT_KEY)
                .map_err(store.err())?;
        }
        if !load.store.is_empty()? {
            // Dropping the load ends its write.
            return Ok(None);
        }
        Ok(Some(Box::new(load)))
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

/// A bulk load into an empty partition: runs sorted and written as table files, which are
/// ingested in the order written (a later pair of a key wins), with no write-ahead log.
struct RocksLoad {
    store: Arc<RocksStore>,
    run: Run,
    /// Files written so far, not yet ingested.
    files: Vec<PathBuf>,
    /// Pairs in those files (distinct keys within each file).
    pairs: u64,
    /// The load's number among the partition's writes, if it began alone (see
    /// `Counts::begin_write`).
    write: Option<u64>,
    /// Whether the load's write was ended.
    ended: bool,
}

impl RocksLoad {
    fn write_run(&mut self) -> Result<()> {
        let dir = self.store.path.join(BULK_DIR);
        let (file, n) = self.run.write_sorted(&self.store.opts, &dir)?;
        self.files.push(file);
        self.pairs += n;
        Ok(())
    }
}

impl BulkLoad for RocksLoad {
    fn put_packed(&mut self, packed: &[u8]) -> Result<u64> {
        let n = self.run.add_packed(packed)?;
        if self.run.is_full() {
            self.write_run()?;
        }
        Ok(n)
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        let store = self.store.clone();
        if self.files.is_empty() && self.run.bytes() < SMALL_LOAD_BYTES.min(store.bulk_run_bytes) {
            // A small load: a file and its ingestion (two fsyncs) would cost more than one
            // batch through the write-ahead log.
            let mut batch = WriteBatch::default();
            for (k, v) in self.run.pairs() {
                batch.put(k, v);
            }
            // Through `apply`, the one write path (the write-ahead log setting included).
            let res = store.apply(batch);
            self.ended = true;
            store.counts.end_write();
            return res;
        }
        if !self.run.is_empty() {
            self.write_run()?;
        }
        let mut opts = IngestExternalFileOptions::default();
        // Linked into the DB rather than copied: the files are ours, on the same disk.
        opts.set_move_files(true);
        let files = std::mem::take(&mut self.files);
        let written = files.len();
        // One file per call, in order: files of one call may not overlap.
        for file in files {
            store
                .db
                .ingest_external_file_opts(&opts, vec![&file])
                .map_err(store.err())?;
            let _ = std::fs::remove_file(&file);
        }
        self.ended = true;
        // Into an empty partition, a single file's pairs are the count; several files may
        // share keys, so then the count is left to the next scan or compaction.
        if written <= 1 {
            store
                .counts
                .loaded(self.write, self.pairs, |n| store.store_count(n))
        } else {
            store.counts.end_write();
            Ok(())
        }
    }
}

impl Drop for RocksLoad {
    fn drop(&mut self) {
        if !self.ended {
            self.store.counts.end_write();
        }
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
    }
}
