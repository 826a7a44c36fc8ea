//! Partitions handed to Python functions as packed bytes (the one batch format,
//! `eggroll_core::pairs`): a lazy iterator that makes a pair's Python objects only when the
//! function asks for it, as FATE's own engine does with an LMDB cursor; and the shared-memory
//! files through which an embedded session's pool workers read a partition and write their
//! output, with no pipe and no copy of the partition in between.

use eggroll_core::functions::PairIter;
use eggroll_core::{pairs, CoreError, Result};
use memmap2::Mmap;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use std::fs::File;
use std::io::{BufWriter, Write};

/// Bytes of a packed batch: built here, or a shared file mapped.
enum Buffer {
    Owned(Vec<u8>),
    Mapped(Mmap),
}

impl std::ops::Deref for Buffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Buffer::Owned(v) => v,
            Buffer::Mapped(m) => m,
        }
    }
}

/// A pair as Python gets it: `(bytes, bytes)`.
pub type PyPair<'py> = (Bound<'py, PyBytes>, Bound<'py, PyBytes>);

/// An iterator of `(bytes, bytes)` over a packed batch, made one pair at a time.
#[pyclass(module = "eggroll._native")]
pub struct PackedPairs {
    buf: Buffer,
    at: usize,
}

/// A partition read whole for a Python function: in this process's memory while small,
/// else in a [`SharedFile`] for a pool worker to read.
pub enum Partition {
    /// Packed pairs in memory.
    Here(Vec<u8>),
    /// Packed pairs in a shared file.
    Shared(SharedFile),
}

impl Partition {
    /// Reads the rest of `pairs`, packed: into a shared file once past `spill_at` bytes
    /// (never, for None). `what` names it in errors.
    pub fn read(what: &str, pairs: &mut PairIter, spill_at: Option<usize>) -> Result<Self> {
        let mut buf = Vec::new();
        let mut spilled: Option<(SharedFile, BufWriter<File>)> = None;
        pairs.visit_rest(&mut |k, v| {
            if let Some((_, out)) = spilled.as_mut() {
                return pairs::write(out, k, v).map_err(|e| io_error(what, e));
            }
            pairs::push(&mut buf, k, v);
            if spill_at.is_some_and(|limit| buf.len() > limit) {
                let shared = SharedFile::new(what)?;
                let file = shared.file.try_clone().map_err(|e| io_error(what, e))?;
                let mut out = BufWriter::with_capacity(1 << 20, file);
                out.write_all(&std::mem::take(&mut buf))
                    .map_err(|e| io_error(what, e))?;
                spilled = Some((shared, out));
            }
            Ok(())
        })?;
        match spilled {
            None => Ok(Self::Here(buf)),
            Some((shared, mut out)) => {
                out.flush().map_err(|e| io_error(what, e))?;
                Ok(Self::Shared(shared))
            }
        }
    }

    /// How many packed bytes it holds in memory; None once spilled to a shared file.
    pub fn here(&self) -> Option<usize> {
        match self {
            Self::Here(buf) => Some(buf.len()),
            Self::Shared(_) => None,
        }
    }

    /// Its pairs, to be iterated from Python.
    pub fn into_pairs(self, what: &str) -> Result<PackedPairs> {
        let buf = match self {
            Self::Here(buf) => Buffer::Owned(buf),
            Self::Shared(shared) => shared.map(what)?.0,
        };
        Ok(PackedPairs { buf, at: 0 })
    }

    /// It as a shared file.
    pub fn into_shared(self, what: &str) -> Result<SharedFile> {
        match self {
            Self::Here(buf) => {
                let shared = SharedFile::new(what)?;
                (&shared.file)
                    .write_all(&buf)
                    .map_err(|e| io_error(what, e))?;
                Ok(shared)
            }
            Self::Shared(shared) => Ok(shared),
        }
    }
}

#[pymethods]
impl PackedPairs {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<PyPair<'py>>> {
        let rest = &self.buf[self.at..];
        match pairs::iter(rest).next() {
            None => Ok(None),
            Some(Ok((k, v))) => {
                self.at += pairs::encoded_len(k.len(), v.len());
                Ok(Some((PyBytes::new(py, k), PyBytes::new(py, v))))
            }
            Some(Err(e)) => {
                self.at = self.buf.len();
                Err(PyValueError::new_err(e.to_string()))
            }
        }
    }
}

/// A file in memory that another process of this machine opens by [`SharedFile::path`]
/// (`/proc/<pid>/fd/<fd>` of a memfd). It lives while this process holds it, so nothing is
/// left behind when either side dies.
pub struct SharedFile {
    file: File,
    path: String,
}

impl SharedFile {
    /// A new empty file; `what` names it in errors.
    pub fn new(what: &str) -> Result<Self> {
        let name = c"eggroll-partition";
        // SAFETY: memfd_create takes a NUL-terminated name and flags, and returns a new fd
        // that nothing else owns (or -1).
        let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io_error(what, std::io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a fresh descriptor owned by nobody else.
        let file = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        Ok(Self {
            file,
            path: format!("/proc/{}/fd/{fd}", std::process::id()),
        })
    }

    /// The path another process opens it by.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What it holds, mapped.
    pub fn map(&self, what: &str) -> Result<MappedBytes> {
        map_file(&self.file)
            .map_err(|e| io_error(what, e))
            .map(MappedBytes)
    }
}

/// The bytes of a mapped [`SharedFile`].
pub struct MappedBytes(Buffer);

impl std::ops::Deref for MappedBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

fn map_file(file: &File) -> std::io::Result<Buffer> {
    if file.metadata()?.len() == 0 {
        // An empty file cannot be mapped.
        return Ok(Buffer::Owned(Vec::new()));
    }
    // SAFETY: the file is a memfd this process or its pool's worker made; the worker has
    // written and closed it before it is mapped, and nothing writes it while mapped.
    unsafe { Mmap::map(file) }.map(Buffer::Mapped)
}

fn io_error(what: &str, source: std::io::Error) -> CoreError {
    CoreError::Io {
        what: format!("the shared memory of {what}"),
        source,
    }
}

/// An item a function gave as its key and value bytes, or an error saying what is wrong.
pub fn output_pair<'py>(item: &Bound<'py, PyAny>) -> PyResult<PyPair<'py>> {
    let (k, v): (Bound<'py, PyAny>, Bound<'py, PyAny>) = item
        .extract()
        .map_err(|_| PyTypeError::new_err("the function must give (key, value) pairs of bytes"))?;
    Ok((bytes(&k, "key")?.clone(), bytes(&v, "value")?.clone()))
}

/// `x` as bytes, or an error naming what it is instead (`what`: key or value).
pub fn bytes<'a, 'py>(x: &'a Bound<'py, PyAny>, what: &str) -> PyResult<&'a Bound<'py, PyBytes>> {
    x.downcast::<PyBytes>().map_err(|_| {
        let type_name = x
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default();
        PyTypeError::new_err(format!(
            "the function gave a {what} of type {type_name}, not bytes"
        ))
    })
}

fn os_error(path: &str, e: std::io::Error) -> PyErr {
    pyo3::exceptions::PyOSError::new_err(format!("{path}: {e}"))
}

/// `eggroll._native.read_packed`: the pairs of the packed file at `path` (a pool worker's
/// input), iterated lazily.
#[pyfunction]
pub fn read_packed(path: &str) -> PyResult<PackedPairs> {
    let file = File::open(path).map_err(|e| os_error(path, e))?;
    let buf = map_file(&file).map_err(|e| os_error(path, e))?;
    Ok(PackedPairs { buf, at: 0 })
}

/// `eggroll._native.write_packed`: writes an iterable of `(bytes, bytes)` pairs, packed,
/// into the file at `path` (a pool worker's output); returns how many.
#[pyfunction]
pub fn write_packed(path: &str, items: &Bound<'_, PyAny>) -> PyResult<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| os_error(path, e))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut n = 0u64;
    for item in items.try_iter()? {
        let (k, v) = output_pair(&item?)?;
        pairs::write(&mut out, k.as_bytes(), v.as_bytes()).map_err(|e| os_error(path, e))?;
        n += 1;
    }
    out.flush().map_err(|e| os_error(path, e))?;
    Ok(n)
}
