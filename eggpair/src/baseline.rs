//! Raw RocksDB baselines for `eggroll bench`: the same data written and scanned with no
//! eggroll-rs layer in between, so ratios are measured against this machine in this run.

use crate::error::{EggError, Result};
use rocksdb::{DBCompressionType, Options, WriteBatch, DB};
use std::path::Path;
use std::time::{Duration, Instant};

fn open(path: &Path) -> Result<DB> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    opts.set_write_buffer_size(32 << 20);
    DB::open(&opts, path).map_err(|source| EggError::Rocks {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `pairs` into a new DB at `path` in WriteBatches of `batch` pairs.
pub fn write(path: &Path, pairs: &[(Vec<u8>, Vec<u8>)], batch: usize) -> Result<Duration> {
    let db = open(path)?;
    let start = Instant::now();
    for chunk in pairs.chunks(batch.max(1)) {
        let mut wb = WriteBatch::default();
        for (k, v) in chunk {
            wb.put(k, v);
        }
        db.write(wb).map_err(|source| EggError::Rocks {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let elapsed = start.elapsed();
    // Scans then read a compacted DB, as the tables measured beside it do.
    db.flush().map_err(|source| EggError::Rocks {
        path: path.to_path_buf(),
        source,
    })?;
    db.compact_range::<&[u8], &[u8]>(None, None);
    Ok(elapsed)
}

/// Scans every pair of the DB at `path`, touching each key and value; returns (time, pairs).
pub fn scan(path: &Path) -> Result<(Duration, u64)> {
    let db = open(path)?;
    let start = Instant::now();
    let mut it = db.raw_iterator();
    it.seek_to_first();
    let (mut n, mut bytes) = (0u64, 0usize);
    while it.valid() {
        bytes += it.key().map_or(0, <[u8]>::len) + it.value().map_or(0, <[u8]>::len);
        n += 1;
        it.next();
    }
    std::hint::black_box(bytes);
    Ok((start.elapsed(), n))
}

/// Scans the DB at `src` and writes every pair, value transformed by `f`, into a new DB at
/// `dst` in WriteBatches of `batch` pairs.
pub fn scan_write(
    src: &Path,
    dst: &Path,
    batch: usize,
    f: impl Fn(&[u8]) -> Vec<u8>,
) -> Result<Duration> {
    let from = open(src)?;
    let to = open(dst)?;
    let start = Instant::now();
    let mut it = from.raw_iterator();
    it.seek_to_first();
    let mut wb = WriteBatch::default();
    while it.valid() {
        if let (Some(k), Some(v)) = (it.key(), it.value()) {
            wb.put(k, f(v));
        }
        if wb.len() >= batch {
            to.write(std::mem::take(&mut wb))
                .map_err(|source| EggError::Rocks {
                    path: dst.to_path_buf(),
                    source,
                })?;
        }
        it.next();
    }
    to.write(wb).map_err(|source| EggError::Rocks {
        path: dst.to_path_buf(),
        source,
    })?;
    Ok(start.elapsed())
}
