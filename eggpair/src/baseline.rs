//! Raw RocksDB baselines for `eggroll bench`: the same data written and scanned with no
//! eggroll-rs layer in between, so ratios are measured against this machine in this run.

use crate::error::{EggError, Result};
use rocksdb::{
    DBCompressionType, IngestExternalFileOptions, Options, SstFileWriter, WriteBatch, DB,
};
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

/// Loads `pairs` into a new DB at `path` the best-practice way for a bulk load: runs of `run`
/// pairs sorted (the last of a key kept), each written as a table file and ingested, with no
/// write-ahead log and no memtable.
pub fn write_ingested(path: &Path, pairs: &[(Vec<u8>, Vec<u8>)], run: usize) -> Result<Duration> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.set_compression_type(DBCompressionType::Lz4);
    let db = DB::open(&opts, path).map_err(|source| EggError::Rocks {
        path: path.to_path_buf(),
        source,
    })?;
    let failed = |source| EggError::Rocks {
        path: path.to_path_buf(),
        source,
    };
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    let start = Instant::now();
    for (i, chunk) in pairs.chunks(run.max(1)).enumerate() {
        let mut order: Vec<usize> = (0..chunk.len()).collect();
        order.sort_by(|a, b| chunk[*a].0.cmp(&chunk[*b].0));
        let file = path.join(format!("run-{i}.sst"));
        let mut writer = SstFileWriter::create(&opts);
        writer.open(&file).map_err(failed)?;
        for (j, at) in order.iter().enumerate() {
            if order
                .get(j + 1)
                .is_some_and(|next| chunk[*next].0 == chunk[*at].0)
            {
                continue;
            }
            writer.put(&chunk[*at].0, &chunk[*at].1).map_err(failed)?;
        }
        writer.finish().map_err(failed)?;
        db.ingest_external_file_opts(&ingest, vec![&file])
            .map_err(failed)?;
    }
    let elapsed = start.elapsed();
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
