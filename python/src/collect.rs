//! A byte table's pairs for Python, merged across its partitions in the byte order of the
//! keys (FATE standalone's order), made one pair at a time as Python iterates, as FATE's own
//! engine merges its cursors. Large partitions stream in chunks from scans on threads of
//! their own while the caller consumes earlier pairs: a collect neither waits for the whole
//! table nor holds a second copy of every pair beside what the caller builds.

use crate::packed::PyPair;
use eggroll_core::sync::Mutex;
use eggroll_core::{pairs, Result};
use eggroll_rollpair::ByteTable;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::sync::mpsc::{sync_channel, Receiver};

/// Bytes of pairs per chunk of a streamed partition.
const CHUNK_BYTES: usize = 1 << 20;
/// Chunks a partition's scan reads ahead of the merge.
const AHEAD: usize = 2;

/// One partition's pairs: the chunk being merged and, for a streamed partition, the rest.
struct Run {
    chunk: Vec<u8>,
    /// Offset of the next pair in `chunk`.
    at: usize,
    /// Behind a lock only because a Python object must be shareable between threads.
    more: Option<Mutex<Chunks>>,
}

/// The chunks of a streamed partition, as its scan reads them.
type Chunks = Receiver<eggroll_rollpair::Result<Vec<u8>>>;

impl Run {
    /// The next pair, if any (after [`Run::refill`]).
    fn head(&self) -> Result<Option<(&[u8], &[u8])>> {
        pairs::iter(&self.chunk[self.at..]).next().transpose()
    }

    /// Once the chunk is spent, waits for the next one of a streamed partition (with
    /// Python's lock released); a scan's error comes out here.
    fn refill(&mut self, py: Python<'_>) -> PyResult<()> {
        while self.at >= self.chunk.len() {
            let Some(rx) = &self.more else { return Ok(()) };
            match py.allow_threads(|| rx.lock().recv()) {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Err(e)) => {
                    self.more = None;
                    return Err(crate::err(e));
                }
                Err(_) => self.more = None, // the scan ended
            }
        }
        Ok(())
    }
}

/// The pairs of a table in key order across its partitions (each sorted; keys of different
/// partitions never tie), at most a limit of them.
#[pyclass(module = "eggroll._native")]
pub struct MergedPairs {
    runs: Vec<Run>,
    /// Runs with pairs left, by their next key then run, largest first: the next pair is
    /// the last one's.
    order: Vec<usize>,
    /// Pairs still to give.
    left: usize,
}

impl MergedPairs {
    /// Starts the merge of `table`'s partitions: each one's first chunk read in one round
    /// trip for all, the rest of a larger one scanned on a thread of its own after it.
    pub fn start(py: Python<'_>, table: &ByteTable, limit: usize) -> PyResult<Self> {
        let t = table.clone();
        let firsts = py.allow_threads(|| t.first_chunks()).map_err(crate::err)?;
        let mut runs = Vec::with_capacity(firsts.len());
        for (p, first) in firsts.into_iter().enumerate() {
            let more = if first.more {
                let after = last_key(&first.packed).map_err(crate::err)?;
                Some(Mutex::new(stream(table.clone(), p as u32, after)))
            } else {
                None
            };
            runs.push(Run {
                chunk: first.packed,
                at: 0,
                more,
            });
        }
        Self::merging(py, runs, limit)
    }

    /// The merge of partitions already read, each packed (`eggroll_core::pairs`) in key
    /// order: the first `limit` pairs.
    pub fn of_packed(py: Python<'_>, partitions: Vec<Vec<u8>>, limit: usize) -> PyResult<Self> {
        let runs = partitions
            .into_iter()
            .map(|chunk| Run {
                chunk,
                at: 0,
                more: None,
            })
            .collect();
        Self::merging(py, runs, limit)
    }

    fn merging(py: Python<'_>, runs: Vec<Run>, limit: usize) -> PyResult<Self> {
        let mut merged = Self {
            runs,
            order: Vec::new(),
            left: limit,
        };
        for r in 0..merged.runs.len() {
            merged.runs[r].refill(py)?;
            merged.enqueue(r).map_err(crate::err)?;
        }
        Ok(merged)
    }

    /// Puts run `r` in its place in `order` by its next key; a spent run is left out.
    fn enqueue(&mut self, r: usize) -> Result<()> {
        let Some((key, _)) = self.runs[r].head()? else {
            return Ok(());
        };
        // `order` is largest first: the place is after every run whose key is greater.
        let mut lo = 0;
        let mut hi = self.order.len();
        while lo < hi {
            let mid = (lo + hi) / 2;
            let other = self.order[mid];
            let k = self.runs[other].head()?.map_or(&[][..], |(k, _)| k);
            if (k, other) > (key, r) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        self.order.insert(lo, r);
        Ok(())
    }

    /// The next pair in key order, or None after the last (or the limit).
    pub fn next_pair<'py>(&mut self, py: Python<'py>) -> PyResult<Option<PyPair<'py>>> {
        if self.left == 0 {
            return Ok(None);
        }
        let Some(r) = self.order.pop() else {
            return Ok(None);
        };
        let failed = |me: &mut Self, e: PyErr| {
            // A broken partition ends the iteration with this error.
            me.left = 0;
            me.order.clear();
            Err(e)
        };
        let run = &mut self.runs[r];
        let pair = match run.head() {
            Ok(Some((k, v))) => {
                let len = pairs::encoded_len(k.len(), v.len());
                (PyBytes::new(py, k), PyBytes::new(py, v), len)
            }
            Ok(None) => return Ok(None),
            Err(e) => return failed(self, PyValueError::new_err(e.to_string())),
        };
        run.at += pair.2;
        if let Err(e) = run.refill(py) {
            return failed(self, e);
        }
        if let Err(e) = self.enqueue(r) {
            return failed(self, PyValueError::new_err(e.to_string()));
        }
        self.left -= 1;
        Ok(Some((pair.0, pair.1)))
    }
}

/// The last key of a packed chunk, or None for an empty one.
fn last_key(packed: &[u8]) -> Result<Option<Vec<u8>>> {
    let mut last = None;
    for pair in pairs::iter(packed) {
        last = Some(pair?.0);
    }
    Ok(last.map(<[u8]>::to_vec))
}

/// Scans partition `p` of `table` after the key `after` (from its first key without one)
/// on a thread of its own, its chunks sent as they are read; the scan stops once the
/// receiver is gone.
fn stream(table: ByteTable, p: u32, after: Option<Vec<u8>>) -> Chunks {
    let (tx, rx) = sync_channel(AHEAD);
    std::thread::spawn(move || {
        let done = table.scan_packed(p, after.as_deref(), CHUNK_BYTES, &mut |chunk| {
            tx.send(Ok(chunk)).is_ok()
        });
        if let Err(e) = done {
            let _ = tx.send(Err(e));
        }
    });
    rx
}

#[pymethods]
impl MergedPairs {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<PyPair<'py>>> {
        self.next_pair(py)
    }
}
