//! FATE's Python functions as eggroll-rs functors: a task carries a cloudpickled callable,
//! which is unpickled once per partition and called where `eggroll.computing._runner` says
//! (in a Python egg's own process; in an embedded session's worker pool). Python's lock is
//! held only while Python runs: the pairs are read before and written after, by Rust, in
//! batches.
//!
//! Functions arrive only in tasks from the session's own client; nothing another party sends
//! through a roll-site is ever run.

use crate::packed::{self, Partition, SharedFile};
use crate::thread_state;
use eggroll_core::functions::{inventory, Emit, ErasedFn, FnKind, PairIter, Registration};
use eggroll_core::pairs;
use eggroll_core::sync::Mutex;
use eggroll_core::{CoreError, Result};
use eggroll_proto::meta::Functor;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyModule};

/// `f(index, pairs) -> pairs`: a map over one partition with its index.
pub const MAP_PARTITIONS: &str = "eggroll.python::map_partitions_with_index";
/// `f(a, b) -> value`: a combiner or reduce of two values.
pub const TWO_VALUES: &str = "eggroll.python::two_values";
/// `f(index, left pairs, right pairs) -> pairs`: a map over two co-partitioned partitions.
pub const TWO_PARTITIONS: &str = "eggroll.python::binary_sorted_map_partitions_with_index";

/// The functor of a pickled callable registered as `name`.
pub fn functor(name: &str, pickled: Vec<u8>) -> Functor {
    Functor {
        name: name.into(),
        kind: FnKind::Builtin.as_str().into(),
        params: pickled,
    }
}

inventory::submit! { Registration { name: MAP_PARTITIONS, kind: FnKind::Builtin, build: map_partitions } }
inventory::submit! { Registration { name: TWO_VALUES, kind: FnKind::Builtin, build: two_values } }
inventory::submit! { Registration { name: TWO_PARTITIONS, kind: FnKind::Builtin, build: two_partitions } }

/// Pairs handed from Python to Rust per taking of the lock.
const BATCH: usize = 4096;

/// Held while a function runs in this process: one at a time, as in each worker of FATE's
/// standalone pool. Python's lock lets only one run anyway, but FATE's heavy functions
/// (torch, Paillier) release it into native code that has threads of its own: two at once
/// in an egg put twice the threads on its cores, and measured twice the time.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// A Python error as a user-function error with its traceback's text, which is what FATE
/// shows its user.
fn raised(py: Python<'_>, e: PyErr) -> CoreError {
    let text = py
        .import("traceback")
        .and_then(|tb| {
            tb.call_method1(
                "format_exception",
                (e.get_type(py), e.value(py), e.traceback(py)),
            )
        })
        .and_then(|lines| lines.extract::<Vec<String>>())
        .map(|lines| lines.concat())
        .unwrap_or_else(|_| e.to_string());
    CoreError::UserFunction(format!("Python raised:\n{}", text.trim_end()))
}

fn unpickle(params: &[u8]) -> Result<Py<PyAny>> {
    thread_state::with_gil(|py| {
        py.import("cloudpickle")
            .and_then(|cp| cp.call_method1("loads", (PyBytes::new(py, params),)))
            .map(Bound::unbind)
            .map_err(|e| raised(py, e))
    })
}

fn bytes_of(x: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    packed::bytes(x, what).map(|b| b.as_bytes().to_vec())
}

/// Packs up to [`BATCH`] pairs from the Python iterator into `out` (one copy each, no
/// allocation per pair while the lock is held); false at its end.
fn next_batch(py: Python<'_>, it: &Py<PyIterator>, out: &mut Vec<u8>) -> PyResult<bool> {
    out.clear();
    let mut n = 0;
    for item in it.bind(py).clone() {
        let (k, v) = packed::output_pair(&item?)?;
        pairs::push(out, k.as_bytes(), v.as_bytes());
        n += 1;
        if n >= BATCH {
            break;
        }
    }
    Ok(n > 0)
}

/// Calls `start` under the lock to get the output iterator, then moves its pairs to `emit`
/// in batches, the lock released while Rust writes them.
fn drain(
    start: impl FnOnce(Python<'_>) -> PyResult<Py<PyIterator>>,
    emit: &mut Emit,
) -> Result<()> {
    let it = thread_state::with_gil(|py| start(py).map_err(|e| raised(py, e)))?;
    let mut batch = Vec::new();
    while thread_state::with_gil(|py| next_batch(py, &it, &mut batch).map_err(|e| raised(py, e)))? {
        for pair in pairs::iter(&batch) {
            let (k, v) = pair?;
            emit(k.to_vec(), v.to_vec())?;
        }
    }
    Ok(())
}

/// Calls `eggroll.computing._runner.run`, which runs the function in this process (a Python
/// egg's, or an embedded one without a pool), and returns its output's iterator.
fn run<'py>(py: Python<'py>, args: impl pyo3::call::PyCallArgs<'py>) -> PyResult<Py<PyIterator>> {
    let out = runner(py)?.call_method1("run", args)?;
    Ok(out.try_iter()?.unbind())
}

fn runner(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    py.import("eggroll.computing._runner")
}

/// None where functions run in this process; in an embedded session, the size in packed
/// bytes up to which a partition still runs here rather than in the worker pool.
fn inline_limit() -> Result<Option<usize>> {
    thread_state::with_gil(|py| {
        runner(py)
            .and_then(|r| r.call_method0("inline_limit"))
            .and_then(|b| b.extract::<Option<usize>>())
            .map_err(|e| raised(py, e))
    })
}

/// Runs the function `kind` on the partition(s), read whole: in a worker of the pool if this
/// process has one and they are larger than its inline limit, else in this process.
fn run_partitions(
    kind: &str,
    blob: &[u8],
    p: u32,
    left: &mut PairIter,
    right: Option<&mut PairIter>,
    emit: &mut Emit,
) -> Result<()> {
    let limit = inline_limit()?;
    let what = format!("partition {p}'s input");
    let left = Partition::read(&what, left, limit)?;
    let right = right
        .map(|r| Partition::read(&what, r, limit))
        .transpose()?;
    let here = match (left.here(), right.as_ref().map(Partition::here)) {
        (Some(l), None) => Some(l),
        (Some(l), Some(Some(r))) => Some(l + r),
        _ => None,
    };
    if limit.is_some_and(|limit| here.is_none_or(|bytes| bytes > limit)) {
        let left = left.into_shared(&what)?;
        let right = right.map(|r| r.into_shared(&what)).transpose()?;
        return run_pooled(kind, blob, p, &left, right.as_ref(), emit);
    }
    let left = left.into_pairs(&what)?;
    let right = right.map(|r| r.into_pairs(&what)).transpose()?;
    let _one_at_a_time = IN_PROCESS.lock();
    drain(
        |py| run(py, (kind, PyBytes::new(py, blob), p, left, right)),
        emit,
    )
}

/// Runs the function in the pool (`kind`): the partitions cross to the worker, and its
/// output back, in shared-memory files of packed pairs; emits what it gave.
fn run_pooled(
    kind: &str,
    blob: &[u8],
    p: u32,
    left: &SharedFile,
    right: Option<&SharedFile>,
    emit: &mut Emit,
) -> Result<()> {
    let what = format!("partition {p}'s output");
    let out = SharedFile::new(&what)?;
    thread_state::with_gil(|py| {
        // The call waits for the worker with Python's lock released.
        runner(py)
            .and_then(|m| {
                m.call_method1(
                    "run_shared",
                    (
                        kind,
                        PyBytes::new(py, blob),
                        p,
                        left.path(),
                        right.map(SharedFile::path),
                        out.path(),
                    ),
                )
            })
            .map(drop)
            .map_err(|e| raised(py, e))
    })?;
    let output = out.map(&what)?;
    for pair in pairs::iter(&output) {
        let (k, v) = pair?;
        emit(k.to_vec(), v.to_vec())?;
    }
    Ok(())
}

fn map_partitions(params: &[u8]) -> Result<ErasedFn> {
    let blob = params.to_vec();
    Ok(ErasedFn::PerPartition(Box::new(move |p, pairs, emit| {
        run_partitions("map", &blob, p, pairs, None, emit)
    })))
}

fn two_partitions(params: &[u8]) -> Result<ErasedFn> {
    let blob = params.to_vec();
    Ok(ErasedFn::PartitionPair(Box::new(
        move |p, left, right, emit| run_partitions("two", &blob, p, left, Some(right), emit),
    )))
}

fn two_values(params: &[u8]) -> Result<ErasedFn> {
    let f = unpickle(params)?;
    Ok(ErasedFn::Binary(Box::new(move |a, b| {
        thread_state::with_gil(|py| {
            f.call1(py, (PyBytes::new(py, a), PyBytes::new(py, b)))
                .and_then(|v| bytes_of(v.bind(py), "value"))
                .map_err(|e| raised(py, e))
        })
    })))
}
