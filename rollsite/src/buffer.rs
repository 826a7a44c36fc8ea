//! The durable receive buffer: what other parties pushed to us, kept until a `get` takes it.
//!
//! One persistent table of the roll-site's own data dir holds, per transfer (its rs key):
//! `H` its header, `M` a marker per stored batch (partition, batch sequence), `F` each
//! finished partition's batch count and `T` when data last arrived (for expiry). The batch
//! bodies, often megabytes each, live under `blobs/<transfer>/`, not in RocksDB (large values
//! would cost it several rewrites): an object whose sender names its batch size
//! ([`CHUNK_OPTION`]) is written batch by batch at its offset into one file `object`, which a
//! get maps into memory instead of copying; other batches are files of their own, written
//! whole then renamed into place. A marker is written only after its bytes. A batch sent
//! twice lands on the same name and key, so retried streams never duplicate data. Like RocksDB's default writes, a
//! stored batch survives a restart of the roll-site (not of the machine). Every call blocks
//! on storage: run it on a blocking thread.

use crate::error::{Error, Result};
use crate::packet::{ABORT_NAME, CHUNK_OPTION, OBJECT};
use crate::spares::{Lease, Spares};
use bytes::Bytes;
use eggroll_core::config::StorageConfig;
use eggroll_core::partitioner::murmur3_32;
use eggroll_core::sync::Mutex;
use eggroll_eggpair::{KeyRange, KvStore, Pair};
use eggroll_proto::transfer::RollSiteHeader;
use prost::Message;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Where in the buffer dir the records (markers, headers, finish marks) live.
const RECORDS_DIR: &str = "records";
/// Where the records were before they had a store of their own (a table partition).
const OLD_RECORDS_DIR: &str = "ROCKSDB/rollsite/inbox/0";
/// The file of an object written at offsets.
const OBJECT_FILE: &str = "object";
/// Marker value of a batch stored in [`OBJECT_FILE`]: this tag, then its offset and its
/// length (u64 BE each), so reading it needs nothing else.
const IN_OBJECT: u8 = b'O';
/// Marker value of a batch written into the cluster's eggs (see `inbox`): nothing is here.
const IN_EGGS: u8 = b'E';

/// One batch of a transfer as it is stored.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Partition (0 for objects).
    pub partition: u32,
    /// Sequence of the batch within its partition.
    pub seq: u64,
    /// Last batch of its partition.
    pub finish: bool,
    /// The bytes.
    pub body: bytes::Bytes,
}

/// How far a transfer has arrived.
#[derive(Clone, Debug)]
pub struct Arrival {
    /// Its header (data type, partitions, options).
    pub header: RollSiteHeader,
    /// Partitions complete.
    pub done: u32,
    /// Partitions in all.
    pub total: u32,
}

impl Arrival {
    /// Whether every partition is complete.
    pub fn complete(&self) -> bool {
        self.done == self.total
    }
}

/// In-memory progress of a transfer, to wake gets and time them out.
#[derive(Debug)]
pub struct Progress {
    /// Notified after every write.
    pub notify: Notify,
    last: Mutex<Instant>,
    seen: Mutex<HashMap<(u32, u64), u64>>,
    error: Mutex<Option<String>>,
    /// Held while writing the object file: the file system serializes writes to one file
    /// anyway, and its lock spins, burning CPU, where this one sleeps.
    object_file: Mutex<()>,
}

impl Progress {
    fn new() -> Self {
        Self {
            notify: Notify::new(),
            last: Mutex::new(Instant::now()),
            seen: Mutex::new(HashMap::new()),
            error: Mutex::new(None),
            object_file: Mutex::new(()),
        }
    }

    /// When data last arrived (or the roll-site started watching).
    pub fn last_arrival(&self) -> Instant {
        *self.last.lock()
    }

    /// Why the last push of this transfer failed, if it did.
    pub fn last_error(&self) -> Option<String> {
        self.error.lock().clone()
    }

    /// Records a failed push, for the waiting get to report.
    pub fn fail(&self, why: String) {
        *self.error.lock() = Some(why);
        self.notify.notify_waiters();
    }
}

/// The receive buffer of one roll-site.
pub struct Buffer {
    blobs: PathBuf,
    store: KvStore,
    live: Mutex<HashMap<String, Arc<Progress>>>,
    max_object_bytes: u64,
    fsync: bool,
    /// Taken objects' files, to write the next objects over.
    spares: Spares,
    /// Notified when any abort arrives: every waiting get checks whether it is its own.
    pub aborts: Notify,
}

fn prefix(kind: u8, rk: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(rk.len() + 16);
    k.push(kind);
    k.extend_from_slice(&(rk.len() as u16).to_be_bytes());
    k.extend_from_slice(rk.as_bytes());
    k
}

/// The transfer key of a record key made by [`prefix`] (kind, length, key, ...).
fn record_rk(k: &[u8]) -> Option<String> {
    let n = u16::from_be_bytes([*k.get(1)?, *k.get(2)?]) as usize;
    k.get(3..3 + n)
        .map(|rk| String::from_utf8_lossy(rk).into_owned())
}

fn batch_key(kind: u8, rk: &str, p: u32, seq: u64) -> Vec<u8> {
    let mut k = prefix(kind, rk);
    k.extend_from_slice(&p.to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k
}

fn blob_name(p: u32, seq: u64) -> String {
    format!("{p:08x}-{seq:016x}")
}

fn finish_key(rk: &str, p: u32) -> Vec<u8> {
    let mut k = prefix(b'F', rk);
    k.extend_from_slice(&p.to_be_bytes());
    k
}

fn tail_u64(k: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    if k.len() >= 8 {
        b.copy_from_slice(&k[k.len() - 8..]);
    }
    u64::from_be_bytes(b)
}

/// The batch size of an object written at offsets, from its header; `None` for batches
/// stored as files of their own (tables, and objects from senders that do not name it).
fn object_chunk(h: &RollSiteHeader) -> Result<Option<u64>> {
    if h.data_type != OBJECT {
        return Ok(None);
    }
    let Some(c) = h.options.get(CHUNK_OPTION) else {
        return Ok(None);
    };
    match c.parse::<u64>() {
        Ok(c) if c > 0 => Ok(Some(c)),
        _ => Err(Error::BadPacket(format!(
            "RollSiteHeader.options[{CHUNK_OPTION}] is {c:?}, not a positive number"
        ))),
    }
}

/// A mapped range of an object file, with its lease: the file is not reused while it lives.
struct View {
    map: memmap2::Mmap,
    _lease: Arc<Lease>,
}

impl AsRef<[u8]> for View {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

/// `len` bytes of `path` from `offset`, mapped read-only. The roll-site writes a batch's
/// bytes before its marker, rewrites them only with what a retried stream resends, never
/// truncates, and reuses a taken object's file only after its last view is dropped
/// ([`Spares`]), so mapped bytes stay valid.
fn map(spares: &Spares, path: &Path, offset: u64, len: u64) -> Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    // The lease first: a retire after it waits for this view.
    let lease = spares.lease(path);
    let map = map_file(path, offset, len)?;
    Ok(Bytes::from_owner(View { map, _lease: lease }))
}

fn map_file(path: &Path, offset: u64, len: u64) -> Result<memmap2::Mmap> {
    let io = |source| Error::Io {
        what: format!("cannot map a received object {}", path.display()),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let have = file.metadata().map_err(io)?.len();
    if have < offset + len {
        return Err(Error::Internal(format!(
            "{} holds {have} bytes, but its markers promise {}",
            path.display(),
            offset + len
        )));
    }
    // SAFETY: marked ranges are never truncated or changed while mapped (see `map`).
    unsafe {
        memmap2::MmapOptions::new()
            .offset(offset)
            .len(len as usize)
            .map(&file)
    }
    .map_err(io)
}

/// The file-system and table name of a transfer: two independent 32-bit hashes of its rs
/// key, a 64-bit name stable across restarts.
pub fn transfer_name(rk: &str) -> String {
    let (a, b) = (
        murmur3_32(rk.as_bytes(), 0),
        murmur3_32(rk.as_bytes(), 0x5bd1_e995),
    );
    format!("{a:08x}{b:08x}")
}

/// Offset and length of a batch stored in the object file, from its marker.
fn object_range(marker: &[u8]) -> (u64, u64) {
    let at = |i: usize| {
        let mut b = [0u8; 8];
        if let Some(s) = marker.get(i..i + 8) {
            b.copy_from_slice(s);
        }
        u64::from_be_bytes(b)
    };
    (at(1), at(9))
}

fn tail_partition(k: &[u8]) -> u32 {
    let mut b = [0u8; 4];
    if k.len() >= 12 {
        b.copy_from_slice(&k[k.len() - 12..k.len() - 8]);
    }
    u32::from_be_bytes(b)
}

impl Buffer {
    /// Opens (or creates) the buffer under `dir`; what it held before a restart is kept.
    pub fn open(dir: &Path, storage: StorageConfig, max_object_bytes: u64) -> Result<Self> {
        let records = dir.join(RECORDS_DIR);
        let old = dir.join(OLD_RECORDS_DIR);
        // A buffer dir of the earlier layout: the same RocksDB files, moved as they are.
        if !records.exists() && old.exists() {
            std::fs::rename(&old, &records).map_err(|source| Error::Io {
                what: format!("cannot move {} to {}", old.display(), records.display()),
                source,
            })?;
            let _ = std::fs::remove_dir_all(dir.join("ROCKSDB"));
            tracing::info!(
                "moved the receive buffer's records to {}",
                records.display()
            );
        }
        let store = KvStore::open_with(&records, &storage)?;
        let blobs = dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(|source| Error::Io {
            what: format!("cannot create {}", blobs.display()),
            source,
        })?;
        let spare_dir = dir.join("spare-objects");
        let spares = Spares::open(&spare_dir).map_err(|source| Error::Io {
            what: format!(
                "cannot open the spare object files in {}",
                spare_dir.display()
            ),
            source,
        })?;
        let buffer = Self {
            blobs,
            store,
            live: Mutex::new(HashMap::new()),
            max_object_bytes,
            fsync: false,
            spares,
            aborts: Notify::new(),
        };
        buffer.sweep_orphans()?;
        Ok(buffer)
    }

    /// Removes batch files of transfers whose records are gone: a crash between clearing a
    /// transfer's records and removing its files leaves them behind.
    fn sweep_orphans(&self) -> Result<()> {
        let mut known = std::collections::HashSet::new();
        self.store.scan(KeyRange::prefix(b"H"), &mut |k, _| {
            if let Some(rk) = record_rk(k) {
                known.insert(self.transfer_dir(&rk));
            }
            Ok(true)
        })?;
        let io = |what: String| move |source| Error::Io { what, source };
        let entries = std::fs::read_dir(&self.blobs)
            .map_err(io(format!("cannot list {}", self.blobs.display())))?;
        for entry in entries {
            let path = entry
                .map_err(io(format!("cannot list {}", self.blobs.display())))?
                .path();
            if path.is_dir() && !known.contains(&path) {
                tracing::info!(dir = %path.display(), "removing the files of a cleared transfer");
                std::fs::remove_dir_all(&path)
                    .map_err(io(format!("cannot remove {}", path.display())))?;
            }
        }
        Ok(())
    }

    /// With `on`, a write returns only once its batches, their directory entries and their
    /// markers are on disk (`rollsite.fsync`): they then survive a crash of the machine.
    pub fn with_fsync(mut self, on: bool) -> Self {
        self.fsync = on;
        self
    }

    /// The progress of a transfer (made on first use).
    pub fn progress(&self, rk: &str) -> Arc<Progress> {
        self.live
            .lock()
            .entry(rk.to_string())
            .or_insert_with(|| Arc::new(Progress::new()))
            .clone()
    }

    /// Drops the in-memory progress of a transfer of which nothing is stored (a get that
    /// timed out), so waiting for transfers that never come does not grow memory.
    pub fn forget_if_empty(&self, rk: &str) -> Result<()> {
        if self.store.get(&prefix(b'H', rk))?.is_none() {
            self.live.lock().remove(rk);
        }
        Ok(())
    }

    /// Stores batches of a transfer durably, then wakes its waiting gets. A batch already
    /// stored (a retried stream) is overwritten with the same bytes, never added twice.
    pub fn write(&self, rk: &str, header: &RollSiteHeader, batches: Vec<Batch>) -> Result<()> {
        let progress = self.progress(rk);
        if header.data_type == OBJECT {
            let mut seen = progress.seen.lock();
            for b in &batches {
                seen.insert((b.partition, b.seq), b.body.len() as u64);
            }
            let total: u64 = seen.values().sum();
            if total > self.max_object_bytes {
                return Err(Error::TooLarge(format!(
                    "object {rk} has reached {total} bytes, over this roll-site's \
                     max_object_bytes of {}",
                    self.max_object_bytes
                )));
            }
        }
        let mut meta = header.clone();
        meta.partition_id = 0;
        meta.batch_seq = 0;
        meta.stream_seq = 0;
        meta.stage.clear();
        let dir = self.transfer_dir(rk);
        let chunk = object_chunk(header)?;
        let in_eggs = header.options.contains_key(crate::packet::EGG_TABLE_OPTION);
        // Batches in the eggs leave no files here.
        if !in_eggs {
            std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                what: format!("cannot create {}", dir.display()),
                source,
            })?;
        }
        let mut markers = Vec::with_capacity(batches.len());
        let mut object: Option<std::fs::File> = None;
        let _writing = chunk.map(|_| progress.object_file.lock());
        for b in &batches {
            if in_eggs {
                markers.push(vec![IN_EGGS]);
                continue;
            }
            let Some(chunk) = chunk else {
                self.write_batch_file(&dir, b)?;
                markers.push(Vec::new());
                continue;
            };
            let len = b.body.len() as u64;
            if len > chunk || (!b.finish && len != chunk) {
                return Err(Error::BadPacket(format!(
                    "object batch {} has {len} bytes, but the header's {CHUNK_OPTION} is \
                     {chunk}: every batch but the last must have exactly that many",
                    b.seq
                )));
            }
            let offset = b
                .seq
                .checked_mul(chunk)
                .filter(|o| o.saturating_add(len) <= self.max_object_bytes)
                .ok_or_else(|| {
                    Error::TooLarge(format!(
                        "object batch {} of {rk} ends beyond max_object_bytes {}",
                        b.seq, self.max_object_bytes
                    ))
                })?;
            let path = dir.join(OBJECT_FILE);
            let io = |source| Error::Io {
                what: format!("cannot store a received batch in {}", path.display()),
                source,
            };
            if object.is_none() {
                // A new object file starts as a spare when one is free (see `Spares`).
                if !path.exists() {
                    self.spares.take_into(&path).map_err(io)?;
                }
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .write(true)
                    .truncate(false)
                    .open(&path)
                    .map_err(io)?;
                object = Some(f);
            }
            if let Some(f) = &object {
                use std::os::unix::fs::FileExt;
                f.write_all_at(&b.body, offset).map_err(io)?;
            }
            let mut m = vec![IN_OBJECT];
            m.extend_from_slice(&offset.to_be_bytes());
            m.extend_from_slice(&len.to_be_bytes());
            markers.push(m);
        }
        if self.fsync {
            let io = |what: &Path| {
                let what = format!("cannot sync {} to disk", what.display());
                move |source| Error::Io { what, source }
            };
            if let Some(f) = &object {
                f.sync_data().map_err(io(&dir.join(OBJECT_FILE)))?;
            }
            // The directory entries: new files, renames, and the transfer's own directory.
            for d in [&dir, &self.blobs] {
                std::fs::File::open(d)
                    .and_then(|f| f.sync_all())
                    .map_err(io(d))?;
            }
        }
        let mut pairs: Vec<Pair> = Vec::with_capacity(batches.len() * 2 + 2);
        pairs.push((prefix(b'H', rk), meta.encode_to_vec()));
        pairs.push((
            prefix(b'T', rk),
            eggroll_core::clock::epoch_millis().to_be_bytes().to_vec(),
        ));
        for (b, m) in batches.into_iter().zip(markers) {
            pairs.push((batch_key(b'M', rk, b.partition, b.seq), m));
            if b.finish {
                pairs.push((
                    finish_key(rk, b.partition),
                    (b.seq + 1).to_be_bytes().to_vec(),
                ));
            }
        }
        self.store.put(pairs)?;
        if self.fsync {
            self.store.sync()?;
        }
        *progress.last.lock() = Instant::now();
        progress.notify.notify_waiters();
        if header.name == ABORT_NAME {
            self.aborts.notify_waiters();
        }
        Ok(())
    }

    /// Stores one batch as a file of its own: written whole, synced when asked, then renamed
    /// into place.
    fn write_batch_file(&self, dir: &Path, b: &Batch) -> Result<()> {
        use std::io::Write;
        let path = dir.join(blob_name(b.partition, b.seq));
        let tmp = path.with_extension("tmp");
        std::fs::File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(&b.body)?;
                if self.fsync {
                    f.sync_data()?;
                }
                Ok(())
            })
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io {
                what: format!("cannot store a received batch in {}", path.display()),
                source,
            })
    }

    /// How far a transfer has arrived; `None` if nothing of it is here.
    pub fn arrival(&self, rk: &str) -> Result<Option<Arrival>> {
        let Some(h) = self.store.get(&prefix(b'H', rk))? else {
            return Ok(None);
        };
        let header = RollSiteHeader::decode(&h[..])
            .map_err(|e| Error::Internal(format!("stored header of {rk} does not decode: {e}")))?;
        let total = header.total_partitions.max(1) as u32;
        let mut done = 0;
        for p in 0..total {
            let Some(f) = self.store.get(&finish_key(rk, p))? else {
                continue;
            };
            let expected = tail_u64(&f);
            let mut have = 0u64;
            let mut start = prefix(b'M', rk);
            start.extend_from_slice(&p.to_be_bytes());
            self.store.scan(KeyRange::prefix(&start), &mut |k, _| {
                if tail_u64(k) < expected {
                    have += 1;
                }
                Ok(true)
            })?;
            if have == expected {
                done += 1;
            }
        }
        Ok(Some(Arrival {
            header,
            done,
            total,
        }))
    }

    fn transfer_dir(&self, rk: &str) -> PathBuf {
        self.blobs.join(transfer_name(rk))
    }

    /// The header of a transfer, once any of it arrived.
    pub fn header(&self, rk: &str) -> Result<Option<RollSiteHeader>> {
        let Some(h) = self.store.get(&prefix(b'H', rk))? else {
            return Ok(None);
        };
        RollSiteHeader::decode(&h[..])
            .map(Some)
            .map_err(|e| Error::Internal(format!("stored header of {rk} does not decode: {e}")))
    }

    /// Batch `seq` of partition `p` and, once known, the partition's batch count; `None`
    /// until the batch arrived. A batch of an object file is mapped, not copied.
    pub fn batch(&self, rk: &str, p: u32, seq: u64) -> Result<Option<(Bytes, Option<u64>)>> {
        let Some(marker) = self.store.get(&batch_key(b'M', rk, p, seq))? else {
            return Ok(None);
        };
        let body = self.body(rk, p, seq, &marker)?;
        let total = self.store.get(&finish_key(rk, p))?.map(|f| tail_u64(&f));
        Ok(Some((body, total)))
    }

    /// The bytes of one stored batch, given its marker.
    fn body(&self, rk: &str, p: u32, seq: u64, marker: &[u8]) -> Result<Bytes> {
        if marker.first() == Some(&IN_EGGS) {
            return Ok(Bytes::new());
        }
        let dir = self.transfer_dir(rk);
        if marker.first() != Some(&IN_OBJECT) {
            let path = dir.join(blob_name(p, seq));
            return std::fs::read(&path)
                .map(Bytes::from)
                .map_err(|source| Error::Io {
                    what: format!("cannot read a received batch {}", path.display()),
                    source,
                });
        }
        let (offset, len) = object_range(marker);
        map(&self.spares, &dir.join(OBJECT_FILE), offset, len)
    }

    /// The whole object `rk`, once every batch arrived: the object file mapped into memory
    /// (no copy), or its batch files read one after another; `None` until complete.
    pub fn object(&self, rk: &str) -> Result<Option<Bytes>> {
        let Some(total) = self.store.get(&finish_key(rk, 0))?.map(|f| tail_u64(&f)) else {
            return Ok(None);
        };
        let mut markers = Vec::new();
        let mut start = prefix(b'M', rk);
        start.extend_from_slice(&0u32.to_be_bytes());
        self.store.scan(KeyRange::prefix(&start), &mut |k, v| {
            if tail_u64(k) < total {
                markers.push((tail_u64(k), v.to_vec()));
            }
            Ok(true)
        })?;
        if (markers.len() as u64) < total {
            return Ok(None);
        }
        if markers.iter().all(|(_, m)| m.first() == Some(&IN_OBJECT)) {
            let len = markers.iter().map(|(_, m)| object_range(m).1).sum();
            let path = self.transfer_dir(rk).join(OBJECT_FILE);
            return map(&self.spares, &path, 0, len).map(Some);
        }
        let mut out = Vec::new();
        for (seq, m) in markers {
            out.extend_from_slice(&self.body(rk, 0, seq, &m)?);
        }
        Ok(Some(Bytes::from(out)))
    }

    /// Calls `each(partition, seq, body)` for every batch in order; stops when it returns
    /// false.
    pub fn read(&self, rk: &str, each: &mut dyn FnMut(u32, u64, Bytes) -> bool) -> Result<()> {
        let mut batches = Vec::new();
        self.store
            .scan(KeyRange::prefix(&prefix(b'M', rk)), &mut |k, v| {
                batches.push((tail_partition(k), tail_u64(k), v.to_vec()));
                Ok(true)
            })?;
        for (p, seq, marker) in batches {
            if !each(p, seq, self.body(rk, p, seq, &marker)?) {
                break;
            }
        }
        Ok(())
    }

    /// Drops every transfer that saw no data for `age` (nobody took it); returns their keys.
    /// Each comes with the table in the cluster's eggs that held its batches, if one did
    /// (`namespace/name`, see `inbox`): the caller drops that too.
    pub fn expire(&self, age: Duration) -> Result<Vec<(String, Option<String>)>> {
        let cutoff = eggroll_core::clock::epoch_millis().saturating_sub(age.as_millis() as u64);
        let mut old = Vec::new();
        self.store.scan(KeyRange::prefix(b"T"), &mut |k, v| {
            if tail_u64(v) < cutoff {
                old.extend(record_rk(k));
            }
            Ok(true)
        })?;
        let mut expired = Vec::with_capacity(old.len());
        for rk in old {
            let in_eggs = self
                .header(&rk)?
                .and_then(|h| h.options.get(crate::packet::EGG_TABLE_OPTION).cloned());
            let batches = self.clear(&rk)?;
            tracing::warn!(key = %rk, batches, hours = age.as_secs() / 3600,
                "dropped a received transfer that no get took (rollsite.buffer_expiry_hours)");
            expired.push((rk, in_eggs));
        }
        Ok(expired)
    }

    /// Removes a transfer that a get has taken; returns how many batches it held.
    pub fn clear(&self, rk: &str) -> Result<u64> {
        let mut keys = Vec::new();
        let mut batches = 0;
        for kind in [b'M', b'F', b'H', b'T'] {
            self.store
                .scan(KeyRange::prefix(&prefix(kind, rk)), &mut |k, _| {
                    keys.push(k.to_vec());
                    Ok(true)
                })?;
            if kind == b'M' {
                batches = keys.len() as u64;
            }
        }
        // Markers first: a crash half-way leaves files without markers (swept at the next
        // open), never markers without files.
        for k in keys {
            self.store.delete(&k)?;
        }
        if self.fsync {
            self.store.sync()?;
        }
        let dir = self.transfer_dir(rk);
        if dir.exists() {
            let object = dir.join(OBJECT_FILE);
            self.spares.retire(&object).map_err(|source| Error::Io {
                what: format!("cannot keep {} as a spare", object.display()),
                source,
            })?;
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                what: format!("cannot remove {}", dir.display()),
                source,
            })?;
        }
        self.live.lock().remove(rk);
        Ok(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(data_type: &str, n: i32) -> RollSiteHeader {
        RollSiteHeader {
            data_type: data_type.into(),
            total_partitions: n,
            ..Default::default()
        }
    }

    /// Every batch of transfer `rk`: (partition, seq, body).
    fn batches(buf: &Buffer, rk: &str) -> Vec<(u32, u64, Vec<u8>)> {
        let mut got = Vec::new();
        buf.read(rk, &mut |p, s, v| {
            got.push((p, s, v.to_vec()));
            true
        })
        .unwrap();
        got
    }

    #[test]
    fn batches_survive_reopen_and_retries_do_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let b = |p, seq, finish, body: &[u8]| Batch {
            partition: p,
            seq,
            finish,
            body: body.to_vec().into(),
        };
        {
            // Synced writes: the same behaviour, only slower.
            let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20)
                .unwrap()
                .with_fsync(true);
            let h = header(crate::packet::TABLE, 2);
            assert!(buf.arrival("t").unwrap().is_none());
            buf.write("t", &h, vec![b(0, 0, false, b"a"), b(0, 1, true, b"b")])
                .unwrap();
            // The same stream again: a retry.
            buf.write("t", &h, vec![b(0, 0, false, b"a"), b(0, 1, true, b"b")])
                .unwrap();
            let a = buf.arrival("t").unwrap().unwrap();
            assert_eq!((a.done, a.total, a.complete()), (1, 2, false));
            buf.write("t", &h, vec![b(1, 0, true, b"c")]).unwrap();
            buf.write("other", &h, vec![b(1, 0, true, b"x")]).unwrap();
        }
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        assert!(buf.arrival("t").unwrap().unwrap().complete());
        let got = batches(&buf, "t");
        assert_eq!(
            got,
            vec![
                (0, 0, b"a".to_vec()),
                (0, 1, b"b".to_vec()),
                (1, 0, b"c".to_vec())
            ]
        );
        assert_eq!(buf.clear("t").unwrap(), 3);
        assert!(buf.arrival("t").unwrap().is_none());
        assert_eq!(buf.arrival("other").unwrap().unwrap().done, 1);
    }

    #[test]
    fn a_buffer_dir_of_the_earlier_layout_keeps_its_transfers() {
        let dir = tempfile::tempdir().unwrap();
        let h = header(crate::packet::TABLE, 1);
        let batch = Batch {
            partition: 0,
            seq: 0,
            finish: true,
            body: b"kept".to_vec().into(),
        };
        {
            let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
            buf.write("t", &h, vec![batch]).unwrap();
        }
        // Where the records lived when they were a table partition.
        let old = dir.path().join(OLD_RECORDS_DIR);
        std::fs::create_dir_all(old.parent().unwrap()).unwrap();
        std::fs::rename(dir.path().join(RECORDS_DIR), &old).unwrap();
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        assert!(buf.arrival("t").unwrap().unwrap().complete());
        let got = batches(&buf, "t");
        assert_eq!(got, vec![(0, 0, b"kept".to_vec())]);
        assert!(!dir.path().join("ROCKSDB").exists());
    }

    #[test]
    fn objects_land_at_their_offsets_in_any_order_and_map_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut h = header(crate::packet::OBJECT, 1);
        h.options.insert(CHUNK_OPTION.into(), "4096".into());
        let batch = |seq: u64| Batch {
            partition: 0,
            seq,
            finish: seq == 2,
            body: data[(seq as usize * 4096)..((seq as usize + 1) * 4096).min(data.len())]
                .to_vec()
                .into(),
        };
        let mapped;
        {
            let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
            // Last batch first, then a retry of it, then the rest in another group.
            buf.write("o", &h, vec![batch(2)]).unwrap();
            buf.write("o", &h, vec![batch(2)]).unwrap();
            assert!(buf.object("o").unwrap().is_none(), "incomplete");
            buf.write("o", &h, vec![batch(0)]).unwrap();
            assert!(buf.object("o").unwrap().is_none(), "incomplete");
            buf.write("o", &h, vec![batch(1)]).unwrap();
            assert_eq!(&buf.object("o").unwrap().unwrap()[..], &data[..]);
            let (b1, total) = buf.batch("o", 0, 1).unwrap().unwrap();
            assert_eq!((&b1[..], total), (&data[4096..8192], Some(3)));
        }
        // After a restart, the object is still whole; a view outlives its clearing.
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        mapped = buf.object("o").unwrap().unwrap();
        assert_eq!(buf.clear("o").unwrap(), 3);
        assert_eq!(&mapped[..], &data[..]);
        assert!(buf.object("o").unwrap().is_none());

        // A middle batch of the wrong size, a chunk size that is not a number, and a batch
        // beyond max_object_bytes are refused.
        let mut short = batch(0);
        short.body = short.body.slice(..100);
        let e = buf.write("p", &h, vec![short]).unwrap_err().to_string();
        assert!(e.contains("chunk_bytes"), "{e}");
        let mut bad = h.clone();
        bad.options.insert(CHUNK_OPTION.into(), "many".into());
        assert!(buf.write("q", &bad, vec![batch(0)]).is_err());
        let mut far = batch(0);
        far.seq = 1 << 20;
        let e = buf.write("r", &h, vec![far]).unwrap_err().to_string();
        assert!(e.contains("max_object_bytes"), "{e}");
    }

    /// Writes `data` as object `rk` in 4 KiB batches, last batch first.
    fn write_object(buf: &Buffer, rk: &str, data: &[u8]) {
        let mut h = header(crate::packet::OBJECT, 1);
        h.options.insert(CHUNK_OPTION.into(), "4096".into());
        let n = data.len().div_ceil(4096) as u64;
        for seq in (0..n).rev() {
            let body = data[(seq as usize * 4096)..((seq as usize + 1) * 4096).min(data.len())]
                .to_vec()
                .into();
            let b = Batch {
                partition: 0,
                seq,
                finish: seq + 1 == n,
                body,
            };
            buf.write(rk, &h, vec![b]).unwrap();
        }
    }

    #[test]
    fn taken_object_files_are_written_over_only_after_their_last_view() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = |n: usize, salt: u32| -> Vec<u8> {
            (0..n as u32)
                .map(|i| (i.wrapping_mul(31) ^ salt) as u8)
                .collect()
        };
        let (a, b, c, d) = (
            bytes(20_000, 1),
            bytes(9_000, 2),
            bytes(30_000, 3),
            bytes(5_000, 4),
        );
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        write_object(&buf, "a", &a);
        let view_a = buf.object("a").unwrap().unwrap();
        buf.clear("a").unwrap();
        // Still mapped: not free for reuse, so the next object gets a file of its own.
        assert_eq!(buf.spares.free(), 0);
        write_object(&buf, "b", &b);
        assert_eq!(&view_a[..], &a[..]);
        let view_b = buf.object("b").unwrap().unwrap();
        assert_eq!(&view_b[..], &b[..]);
        drop(view_a);
        assert_eq!(buf.spares.free(), 1, "the last view of a freed its file");
        buf.clear("b").unwrap();
        drop(view_b);
        assert_eq!(buf.spares.free(), 2);
        // Larger and smaller objects written over spares map back exactly, every batch too.
        write_object(&buf, "c", &c);
        write_object(&buf, "d", &d);
        assert_eq!(buf.spares.free(), 0);
        assert_eq!(&buf.object("c").unwrap().unwrap()[..], &c[..]);
        assert_eq!(&buf.object("d").unwrap().unwrap()[..], &d[..]);
        let (d1, total) = buf.batch("d", 0, 1).unwrap().unwrap();
        assert_eq!((&d1[..], total), (&d[4096..5000], Some(2)));
        drop(d1);
        // No more than MAX_SPARES are kept; they survive a restart.
        write_object(&buf, "e", &a);
        for rk in ["c", "d", "e"] {
            buf.clear(rk).unwrap();
        }
        assert_eq!(buf.spares.free(), crate::spares::MAX_SPARES);
        let kept = std::fs::read_dir(dir.path().join("spare-objects"))
            .unwrap()
            .count();
        assert_eq!(kept, crate::spares::MAX_SPARES);
        drop(buf);
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        assert_eq!(buf.spares.free(), crate::spares::MAX_SPARES);
        write_object(&buf, "f", &d);
        assert_eq!(&buf.object("f").unwrap().unwrap()[..], &d[..]);
        assert_eq!(buf.spares.free(), crate::spares::MAX_SPARES - 1);
    }

    #[test]
    fn files_of_cleared_transfers_left_by_a_crash_are_swept_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![5u8; 10_000];
        {
            let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20)
                .unwrap()
                .with_fsync(true);
            write_object(&buf, "kept", &data);
            write_object(&buf, "taken", &data);
            // A crash after the records went and before the files did.
            let taken = buf.transfer_dir("taken");
            let copy = dir.path().join("copy");
            std::fs::rename(&taken, &copy).unwrap();
            buf.clear("taken").unwrap();
            std::fs::rename(&copy, &taken).unwrap();
        }
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        assert!(!buf.transfer_dir("taken").exists());
        assert!(buf.transfer_dir("kept").exists());
        assert_eq!(&buf.object("kept").unwrap().unwrap()[..], &data[..]);
    }

    #[test]
    fn transfers_nobody_took_expire_and_fresh_ones_stay() {
        let dir = tempfile::tempdir().unwrap();
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 1 << 20).unwrap();
        let h = header(crate::packet::TABLE, 1);
        let batch = Batch {
            partition: 0,
            seq: 0,
            finish: true,
            body: b"x".to_vec().into(),
        };
        buf.write("old", &h, vec![batch.clone()]).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        buf.write("new", &h, vec![batch]).unwrap();
        assert!(buf.expire(Duration::from_secs(3600)).unwrap().is_empty());
        assert_eq!(
            buf.expire(Duration::from_millis(15)).unwrap(),
            vec![("old".to_string(), None)]
        );
        assert!(buf.arrival("old").unwrap().is_none());
        assert!(!buf.transfer_dir("old").exists());
        assert!(buf.arrival("new").unwrap().unwrap().complete());
    }

    #[test]
    fn objects_over_the_limit_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let buf = Buffer::open(dir.path(), StorageConfig::default(), 10).unwrap();
        let h = header(crate::packet::OBJECT, 1);
        let batch = |seq| Batch {
            partition: 0,
            seq,
            finish: false,
            body: vec![0; 6].into(),
        };
        buf.write("o", &h, vec![batch(0)]).unwrap();
        buf.write("o", &h, vec![batch(0)]).unwrap();
        let e = buf.write("o", &h, vec![batch(1)]).unwrap_err();
        assert!(e.to_string().contains("max_object_bytes"), "{e}");
    }
}
