//! The pairs of a bulk load gathered in memory and written out as sorted table files, ready
//! to be ingested by RocksDB: no write-ahead log, no memtable, one sort per run.

use crate::error::{EggError, Result};
use rocksdb::{Options, SstFileWriter};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Bytes buffered by every bulk load of the process together: past this, a run is written out
/// once it holds [`MIN_RUN_BYTES`], so that many partitions loading at once stay bounded.
pub const BUFFERED_BUDGET: usize = 128 << 20;
/// The smallest run written early for the process budget: smaller runs make too many files.
pub const MIN_RUN_BYTES: usize = 4 << 20;

/// Bytes buffered by every run of the process.
static BUFFERED: AtomicUsize = AtomicUsize::new(0);
/// Numbers files, so that two loads into one partition never share a name.
static NEXT_FILE: AtomicU64 = AtomicU64::new(0);

/// Pairs in arrival order, as packed bytes with the place of each key and value.
pub struct Run {
    /// Written out once it holds this many bytes.
    limit: usize,
    bytes: Vec<u8>,
    /// Key range and value range of each pair within `bytes`.
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl Run {
    /// An empty run, written out once it holds `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            bytes: Vec::new(),
            pairs: Vec::new(),
        }
    }

    /// Appends a packed batch (checked whole first: a corrupt batch adds nothing); returns
    /// how many pairs it held.
    pub fn add_packed(&mut self, packed: &[u8]) -> Result<u64> {
        let parsed = eggroll_core::pairs::collect(packed)?;
        let base = self.bytes.len();
        let start = packed.as_ptr() as usize;
        self.bytes.extend_from_slice(packed);
        BUFFERED.fetch_add(packed.len(), Ordering::Relaxed);
        for (k, v) in &parsed {
            // Offsets within `packed` carry over to its copy at `base`.
            let k0 = base + (k.as_ptr() as usize - start);
            let v0 = base + (v.as_ptr() as usize - start);
            self.pairs.push((k0..k0 + k.len(), v0..v0 + v.len()));
        }
        Ok(parsed.len() as u64)
    }

    /// The bytes the run holds.
    pub fn bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The pairs in the order added.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.pairs
            .iter()
            .map(|(k, v)| (&self.bytes[k.clone()], &self.bytes[v.clone()]))
    }

    /// Whether the run holds no pair.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Whether the run should be written out now.
    pub fn is_full(&self) -> bool {
        self.bytes.len() >= self.limit
            || (self.bytes.len() >= MIN_RUN_BYTES
                && BUFFERED.load(Ordering::Relaxed) >= BUFFERED_BUDGET)
    }

    /// Sorts the run by key and writes it as a table file in `dir` with `opts` (the options of
    /// the DB that will ingest it); of pairs with one key, the last added is kept. Returns the
    /// file and how many pairs it holds. The run is left empty.
    pub fn write_sorted(&mut self, opts: &Options, dir: &Path) -> Result<(PathBuf, u64)> {
        let mut run = std::mem::replace(self, Run::new(self.limit));
        let mut order = std::mem::take(&mut run.pairs);
        let bytes = &run.bytes;
        // Stable: pairs of one key stay in arrival order, and the last of them wins below.
        order.sort_by(|a, b| bytes[a.0.clone()].cmp(&bytes[b.0.clone()]));
        std::fs::create_dir_all(dir)
            .map_err(EggError::io("cannot create the bulk load directory", dir))?;
        let path = dir.join(format!(
            "{}-{}.sst",
            std::process::id(),
            NEXT_FILE.fetch_add(1, Ordering::Relaxed)
        ));
        let failed = |source| EggError::Rocks {
            path: path.clone(),
            source,
        };
        let mut writer = SstFileWriter::create(opts);
        writer.open(&path).map_err(failed)?;
        let mut written = 0;
        for (i, (k, v)) in order.iter().enumerate() {
            let later = order.get(i + 1);
            if later.is_some_and(|(next, _)| bytes[next.clone()] == bytes[k.clone()]) {
                continue;
            }
            writer
                .put(&bytes[k.clone()], &bytes[v.clone()])
                .map_err(failed)?;
            written += 1;
        }
        writer.finish().map_err(failed)?;
        Ok((path, written))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        BUFFERED.fetch_sub(self.bytes.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rocksdb::DB;

    #[test]
    fn a_run_is_written_sorted_with_the_last_pair_of_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut run = Run::new(1 << 20);
        let mut reference = std::collections::BTreeMap::new();
        for batch in 0..3u32 {
            let mut packed = Vec::new();
            for i in 0..500u32 {
                let k = ((i * 7919 + batch) % 600).to_be_bytes();
                let v = format!("{batch}/{i}").into_bytes();
                eggroll_core::pairs::push(&mut packed, &k, &v);
                reference.insert(k.to_vec(), v);
            }
            assert_eq!(run.add_packed(&packed).unwrap(), 500);
        }
        // A cut-short batch adds nothing.
        assert!(run.add_packed(&[0, 0, 0, 9, 1]).is_err());
        assert_eq!(run.pairs.len(), 1500);

        let opts = Options::default();
        let (file, n) = run.write_sorted(&opts, &dir.path().join("bulk")).unwrap();
        assert!(run.is_empty());
        assert_eq!(n, reference.len() as u64);

        let mut db_opts = Options::default();
        db_opts.create_if_missing(true);
        let db = DB::open(&db_opts, dir.path().join("db")).unwrap();
        db.ingest_external_file(vec![file]).unwrap();
        let got: Vec<_> = db
            .iterator(rocksdb::IteratorMode::Start)
            .map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect();
        assert_eq!(got, reference.into_iter().collect::<Vec<_>>());
    }
}
