//! `eggroll._native`: eggroll-rs sessions and byte tables for the `eggroll` Python package,
//! which gives FATE's eggroll computing back end the module it imports. Every call into
//! eggroll-rs (RocksDB, gRPC to the eggs) runs with Python's lock released.

mod collect;
mod egg;
mod federation;
mod functions;
mod packed;
mod thread_state;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use collect::MergedPairs;
use eggroll_proto::meta::StoreType;
use eggroll_rollpair::{ByteTable, FateTypes, Options, RollPairContext, SessionOptions};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

/// An eggroll-rs error as a Python `RuntimeError` carrying its message.
fn err(e: impl std::fmt::Display) -> PyErr {
    PyRuntimeError::new_err(e.to_string())
}

/// EggRoll's store type names: `IN_MEMORY` is in memory, every other (LMDB, LEVEL_DB, ...)
/// is one of our persistent tables.
fn store_type(name: Option<&str>) -> StoreType {
    match name {
        Some("IN_MEMORY") | None => StoreType::InMemory,
        Some(_) => StoreType::PERSISTENT,
    }
}

/// The options and FATE codes (key serdes, value serdes, partitioner) of a new table.
fn spec(
    partitions: u32,
    namespace: Option<String>,
    name: Option<String>,
    store_type: Option<&str>,
    [key_serdes_type, value_serdes_type, partitioner_type]: [i32; 3],
) -> (Options, FateTypes) {
    let opts = Options {
        namespace,
        name,
        store_type: self::store_type(store_type),
        ..Options::partitions(partitions)
    };
    let types = FateTypes {
        key_serdes_type,
        value_serdes_type,
        partitioner_type,
    };
    (opts, types)
}

/// A session: standalone in this process, or on a cluster's eggs.
#[pyclass(module = "eggroll._native", frozen)]
struct Context {
    pub(crate) ctx: RollPairContext,
}

#[pymethods]
impl Context {
    /// A standalone session whose tables live under `data_dir`.
    #[staticmethod]
    fn standalone(py: Python<'_>, data_dir: String) -> PyResult<Self> {
        let ctx = py
            .allow_threads(|| RollPairContext::standalone(&data_dir))
            .map_err(err)?;
        Ok(Self { ctx })
    }

    /// A session on the cluster whose cluster manager is at `host:port`.
    /// Its eggs are Python eggs (which run Python functions) unless `python_eggs` is false.
    #[staticmethod]
    #[pyo3(signature = (host, port, session_id=None, processors_per_node=0, lease_ms=0, python_eggs=true))]
    fn cluster(
        py: Python<'_>,
        host: String,
        port: u16,
        session_id: Option<String>,
        processors_per_node: u32,
        lease_ms: u64,
        python_eggs: bool,
    ) -> PyResult<Self> {
        let opts = SessionOptions {
            session_id,
            name: "fate".into(),
            processors_per_node,
            lease_ms,
            processor_type: if python_eggs {
                eggroll_core::processor::PYTHON_EGG_PAIR.into()
            } else {
                String::new()
            },
            ..SessionOptions::default()
        };
        let address = format!("{host}:{port}");
        let ctx = py
            .allow_threads(|| RollPairContext::connect(&address, opts))
            .map_err(err)?;
        Ok(Self { ctx })
    }

    /// The session's id.
    fn session_id(&self) -> String {
        self.ctx.session_id().to_string()
    }

    /// A new empty table.
    #[pyo3(signature = (partitions, namespace=None, name=None, store_type=None, key_serdes_type=0, value_serdes_type=0, partitioner_type=0))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        &self,
        py: Python<'_>,
        partitions: u32,
        namespace: Option<String>,
        name: Option<String>,
        store_type: Option<&str>,
        key_serdes_type: i32,
        value_serdes_type: i32,
        partitioner_type: i32,
    ) -> PyResult<Table> {
        let (opts, types) = spec(
            partitions,
            namespace,
            name,
            store_type,
            [key_serdes_type, value_serdes_type, partitioner_type],
        );
        let t = py
            .allow_threads(|| self.ctx.create_bytes(opts, types))
            .map_err(err)?;
        Ok(Table { t: Some(t) })
    }

    /// The persistent table `namespace/name`, or None if there is none.
    fn load(&self, py: Python<'_>, namespace: String, name: String) -> PyResult<Option<Table>> {
        py.allow_threads(|| {
            if !self.ctx.exists(&namespace, &name)? {
                return Ok(None);
            }
            self.ctx.load_bytes(&namespace, &name).map(Some)
        })
        .map(|t| t.map(|t| Table { t: Some(t) }))
        .map_err(err)
    }

    /// Destroys the persistent tables matching the glob patterns; returns how many.
    fn cleanup(&self, py: Python<'_>, namespace: String, name: String) -> PyResult<usize> {
        py.allow_threads(|| self.ctx.cleanup(&namespace, &name))
            .map_err(err)
    }

    /// Ends the session (`kill`: at once).
    #[pyo3(signature = (kill=false))]
    fn stop(&self, py: Python<'_>, kill: bool) -> PyResult<()> {
        let ctx = self.ctx.clone();
        py.allow_threads(|| if kill { ctx.kill() } else { ctx.stop() })
            .map_err(err)
    }
}

/// A byte table: keys and values are the caller's bytes.
#[pyclass(module = "eggroll._native")]
struct Table {
    /// None once destroyed.
    pub(crate) t: Option<ByteTable>,
}

impl Table {
    pub(crate) fn table(&self) -> PyResult<&ByteTable> {
        self.t
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the table was destroyed"))
    }
}

/// The `(bytes, bytes)` pairs of a Python iterable.
fn pairs_of(items: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    for item in items.try_iter()? {
        let item = item?;
        let pair = item.downcast::<PyTuple>().map_err(|_| {
            PyValueError::new_err(format!(
                "a table takes (key, value) tuples of bytes, not {}",
                item.get_type()
                    .name()
                    .map(|n| n.to_string())
                    .unwrap_or_default()
            ))
        })?;
        if pair.len() != 2 {
            return Err(PyValueError::new_err(format!(
                "a table takes (key, value) pairs, not tuples of {}",
                pair.len()
            )));
        }
        let bytes = |i: usize, what: &str| -> PyResult<Vec<u8>> {
            let x = pair.get_item(i)?;
            let b = x.downcast::<PyBytes>().map_err(|_| {
                PyValueError::new_err(format!("a {what} must be bytes (serialized by the caller)"))
            })?;
            Ok(b.as_bytes().to_vec())
        };
        out.push((bytes(0, "key")?, bytes(1, "value")?));
    }
    Ok(out)
}

/// A Python list of `(bytes, bytes)` tuples.
fn list_of<'py>(py: Python<'py>, pairs: Vec<(Vec<u8>, Vec<u8>)>) -> PyResult<Bound<'py, PyList>> {
    let items: Vec<Bound<'py, PyTuple>> = pairs
        .iter()
        .map(|(k, v)| PyTuple::new(py, [PyBytes::new(py, k), PyBytes::new(py, v)]))
        .collect::<PyResult<_>>()?;
    PyList::new(py, items)
}

#[pymethods]
impl Table {
    /// Partition count.
    #[getter]
    fn partitions(&self) -> PyResult<u32> {
        Ok(self.table()?.partitions())
    }

    /// Namespace.
    #[getter]
    fn namespace(&self) -> PyResult<String> {
        Ok(self.table()?.namespace().to_string())
    }

    /// Name.
    #[getter]
    fn name(&self) -> PyResult<String> {
        Ok(self.table()?.name().to_string())
    }

    /// EggRoll's name of its store type.
    #[getter]
    fn store_type(&self) -> PyResult<&'static str> {
        Ok(match self.table()?.locator().store_type() {
            StoreType::InMemory => "IN_MEMORY",
            _ => "LMDB",
        })
    }

    /// FATE's key serdes type.
    #[getter]
    fn key_serdes_type(&self) -> PyResult<i32> {
        Ok(self.table()?.types().key_serdes_type)
    }

    /// FATE's value serdes type.
    #[getter]
    fn value_serdes_type(&self) -> PyResult<i32> {
        Ok(self.table()?.types().value_serdes_type)
    }

    /// FATE's partitioner type.
    #[getter]
    fn partitioner_type(&self) -> PyResult<i32> {
        Ok(self.table()?.types().partitioner_type)
    }

    /// Writes `(key, value)` pairs, each into its key's partition; returns how many.
    fn put_all(&self, py: Python<'_>, items: &Bound<'_, PyAny>) -> PyResult<u64> {
        let pairs = pairs_of(items)?;
        let t = self.table()?;
        py.allow_threads(|| t.put_all(pairs)).map_err(err)
    }

    /// Every pair in the byte order of the keys across partitions (FATE standalone's
    /// order); the first `limit` only, if given, made as the caller iterates (see
    /// `collect`).
    #[pyo3(signature = (limit=None))]
    fn get_all_sorted(&self, py: Python<'_>, limit: Option<usize>) -> PyResult<MergedPairs> {
        MergedPairs::start(py, self.table()?, limit.unwrap_or(usize::MAX))
    }

    /// The first `n` pairs in the byte order of the keys across partitions: each
    /// partition's first `n` in one round trip, merged as a collect's are.
    fn take_sorted<'py>(&self, py: Python<'py>, n: usize) -> PyResult<Bound<'py, PyList>> {
        let t = self.table()?;
        let heads = py.allow_threads(|| t.heads_packed(n as u64)).map_err(err)?;
        let mut merged = MergedPairs::of_packed(py, heads, n)?;
        let mut pairs = Vec::new();
        while let Some(pair) = merged.next_pair(py)? {
            pairs.push(pair);
        }
        PyList::new(py, pairs)
    }

    /// The value of `key`, or None.
    fn get<'py>(&self, py: Python<'py>, key: Vec<u8>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let t = self.table()?;
        let v = py.allow_threads(|| t.get(&key)).map_err(err)?;
        Ok(v.map(|v| PyBytes::new(py, &v)))
    }

    /// Sets the value of `key`.
    fn put(&self, py: Python<'_>, key: Vec<u8>, value: Vec<u8>) -> PyResult<()> {
        let t = self.table()?;
        py.allow_threads(|| t.put(&key, &value)).map_err(err)
    }

    /// Removes `key`; True if it was there.
    fn delete(&self, py: Python<'_>, key: Vec<u8>) -> PyResult<bool> {
        let t = self.table()?;
        py.allow_threads(|| t.delete(&key)).map_err(err)
    }

    /// How many pairs it holds.
    fn count(&self, py: Python<'_>) -> PyResult<u64> {
        let t = self.table()?;
        py.allow_threads(|| t.count()).map_err(err)
    }

    /// A copy as `namespace/name` of `store_type` (persistent unless IN_MEMORY), with the
    /// same FATE codes; `partitions` moves the keys to another count.
    #[pyo3(signature = (namespace, name, store_type=None, partitions=None))]
    fn copy_as(
        &self,
        py: Python<'_>,
        namespace: String,
        name: String,
        store_type: Option<&str>,
        partitions: Option<u32>,
    ) -> PyResult<Table> {
        let t = self.table()?;
        let opts = Options {
            namespace: Some(namespace),
            name: Some(name),
            store_type: match store_type {
                None => StoreType::PERSISTENT,
                s => self::store_type(s),
            },
            ..Options::partitions(partitions.unwrap_or(t.partitions()))
        };
        let copy = py.allow_threads(|| t.copy_as(opts)).map_err(err)?;
        Ok(Table { t: Some(copy) })
    }

    /// A new empty table placed like this one (`partitions` of them, FATE's codes as given).
    #[pyo3(signature = (partitions, key_serdes_type, value_serdes_type, partitioner_type, namespace=None, name=None, store_type=None))]
    #[allow(clippy::too_many_arguments)]
    fn create_like(
        &self,
        py: Python<'_>,
        partitions: u32,
        key_serdes_type: i32,
        value_serdes_type: i32,
        partitioner_type: i32,
        namespace: Option<String>,
        name: Option<String>,
        store_type: Option<&str>,
    ) -> PyResult<Table> {
        let t = self.table()?;
        let (opts, types) = spec(
            partitions,
            namespace,
            name,
            store_type,
            [key_serdes_type, value_serdes_type, partitioner_type],
        );
        let out = py
            .allow_threads(|| t.create_like(opts, types))
            .map_err(err)?;
        Ok(Table { t: Some(out) })
    }

    /// Runs the pickled `mapper(index, pairs) -> pairs` on every partition in the eggs into
    /// `out`: with `shuffle`, pairs move to their key's partition, equal keys folded by the
    /// pickled `combiner(a, b)` (absent: a later write wins).
    #[pyo3(signature = (mapper, shuffle, combiner, out))]
    fn map_reduce(
        &self,
        py: Python<'_>,
        mapper: Vec<u8>,
        shuffle: bool,
        combiner: Option<Vec<u8>>,
        out: &Table,
    ) -> PyResult<()> {
        let (t, o) = (self.table()?, out.table()?);
        let mapper = functions::functor(functions::MAP_PARTITIONS, mapper);
        let combiner = combiner.map(|c| functions::functor(functions::TWO_VALUES, c));
        py.allow_threads(|| t.map_reduce(mapper, shuffle, combiner, o))
            .map_err(err)
    }

    /// Runs the pickled `f(index, pairs) -> pairs` on each partition, in the eggs, and
    /// returns what it gave, in partition order then the order it gave them; no table is
    /// made (for small results, such as a reduce's partials).
    fn map_to_caller<'py>(&self, py: Python<'py>, mapper: Vec<u8>) -> PyResult<Bound<'py, PyList>> {
        let t = self.table()?;
        let mapper = functions::functor(functions::MAP_PARTITIONS, mapper);
        let parts = py.allow_threads(|| t.map_to_caller(mapper)).map_err(err)?;
        list_of(py, parts.into_iter().flatten().collect())
    }

    /// Shuffles the output of the pickled `mapper` into `out`, each key's values folded by
    /// the pickled `fold(index, tagged pairs) -> pairs` in FATE standalone's order (see
    /// `ByteTable::map_reduce_folding`).
    fn map_reduce_folding(
        &self,
        py: Python<'_>,
        mapper: Vec<u8>,
        fold: Vec<u8>,
        out: &Table,
    ) -> PyResult<()> {
        let (t, o) = (self.table()?, out.table()?);
        let mapper = functions::functor(functions::MAP_PARTITIONS, mapper);
        let fold = functions::functor(functions::MAP_PARTITIONS, fold);
        py.allow_threads(|| t.map_reduce_folding(mapper, fold, o))
            .map_err(err)
    }

    /// Runs the pickled `f(index, left pairs, right pairs) -> pairs` on each pair of
    /// partitions of this table and `other`, into `out`.
    fn merge_partitions(
        &self,
        py: Python<'_>,
        other: &Table,
        f: Vec<u8>,
        out: &Table,
    ) -> PyResult<()> {
        let (t, r, o) = (self.table()?, other.table()?, out.table()?);
        let f = functions::functor(functions::TWO_PARTITIONS, f);
        py.allow_threads(|| t.merge_partitions(r, f, o))
            .map_err(err)
    }

    /// Removes the table and its data; a second call is an error.
    fn destroy(&mut self, py: Python<'_>) -> PyResult<()> {
        let t = self
            .t
            .take()
            .ok_or_else(|| PyValueError::new_err("the table was destroyed before"))?;
        py.allow_threads(|| t.destroy()).map_err(err)
    }

    /// True once destroyed.
    #[getter]
    fn destroyed(&self) -> bool {
        self.t.is_none()
    }
}

/// FATE's partition of `key` among `n` partitions by `partitioner_type`, as our tables place it.
#[pyfunction]
fn partition_of(key: &[u8], n: u32, partitioner_type: i32) -> PyResult<u32> {
    let p =
        eggroll_core::partitioner::Partitioner::from_fate_type(partitioner_type).map_err(err)?;
    Ok(p.partition(key, n.max(1)))
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Context>()?;
    m.add_class::<Table>()?;
    m.add_class::<federation::Federation>()?;
    m.add_function(wrap_pyfunction!(partition_of, m)?)?;
    m.add(
        "SEQUENCE_TAG_BYTES",
        eggroll_rollpair::byte_table::SEQUENCE_TAG_BYTES,
    )?;
    m.add_function(wrap_pyfunction!(egg::serve_egg, m)?)?;
    m.add_class::<packed::PackedPairs>()?;
    m.add_class::<MergedPairs>()?;
    m.add_function(wrap_pyfunction!(packed::read_packed, m)?)?;
    m.add_function(wrap_pyfunction!(packed::write_packed, m)?)?;
    Ok(())
}
