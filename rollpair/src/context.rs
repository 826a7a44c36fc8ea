//! The session side of the API: a context owns the stores, the executor and the task pool.

use crate::error::{Error, Result};
use crate::table::RollPair;
use eggroll_core::codec::{encode, SERDES};
use eggroll_core::config::EggrollConfig;
use eggroll_core::names::{validate_name, validate_partitions};
use eggroll_core::partitioner::{partition_of, PARTITIONER};
use eggroll_eggpair::executor::LocalSink;
use eggroll_eggpair::{Executor, Pair, Stores};
use eggroll_proto::meta::{Job, StoreLocator, StoreType, Task, TaskResult};
use rayon::prelude::*;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How a new table is made.
#[derive(Clone, Debug)]
pub struct Options {
    /// Partition count (at least 1).
    pub partitions: u32,
    /// Namespace; default: the session id.
    pub namespace: Option<String>,
    /// Name; default: a fresh name.
    pub name: Option<String>,
    /// Where it lives; default: in memory for the session.
    pub store_type: StoreType,
}

impl Options {
    /// An in-memory table of `n` partitions.
    pub fn partitions(n: u32) -> Self {
        Self {
            partitions: n,
            namespace: None,
            name: None,
            store_type: StoreType::InMemory,
        }
    }

    /// A persistent RocksDB table `namespace/name` of `n` partitions.
    pub fn persistent(namespace: &str, name: &str, n: u32) -> Self {
        Self {
            partitions: n,
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            store_type: StoreType::Rocksdb,
        }
    }
}

pub(crate) struct Inner {
    pub(crate) session_id: String,
    pub(crate) executor: Executor,
    pub(crate) pool: rayon::ThreadPool,
    next_id: AtomicU64,
}

/// A session: runs every table operation as one task per partition on its thread pool.
#[derive(Clone)]
pub struct RollPairContext {
    pub(crate) inner: Arc<Inner>,
}

impl RollPairContext {
    /// Standalone mode: everything in this process, tables under `data_dir`.
    pub fn standalone(data_dir: impl AsRef<Path>) -> Result<Self> {
        let mut config = EggrollConfig::load(None)?;
        config.data_dir = data_dir.as_ref().to_path_buf();
        Self::standalone_with(&config)
    }

    /// Standalone mode with explicit settings.
    pub fn standalone_with(config: &EggrollConfig) -> Result<Self> {
        let stores = Arc::new(Stores::open(&config.data_dir, config.storage.clone())?);
        let threads = config.storage.task_threads as usize;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("eggroll-task-{i}"))
            .build()
            .map_err(|e| Error::Pool(e.to_string()))?;
        let session_id = format!(
            "standalone_{}_{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis())
                .unwrap_or(0),
            std::process::id()
        );
        tracing::info!(session = %session_id, data_dir = %config.data_dir.display(), "standalone session started");
        Ok(Self {
            inner: Arc::new(Inner {
                session_id,
                executor: Executor::new(stores),
                pool,
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// This session's id.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    pub(crate) fn stores(&self) -> &Arc<Stores> {
        self.inner.executor.stores()
    }

    pub(crate) fn fresh_id(&self, what: &str) -> String {
        format!(
            "{what}_{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Makes a new empty table for `K, V` as `opts` says.
    pub(crate) fn new_locator<K, V>(&self, opts: &Options) -> Result<StoreLocator> {
        validate_partitions(opts.partitions)?;
        let mut l = StoreLocator {
            namespace: opts
                .namespace
                .clone()
                .unwrap_or_else(|| self.session_id().to_string()),
            name: opts.name.clone().unwrap_or_else(|| self.fresh_id("table")),
            total_partitions: opts.partitions,
            partitioner: PARTITIONER.into(),
            serdes: SERDES.into(),
            key_type: std::any::type_name::<K>().into(),
            value_type: std::any::type_name::<V>().into(),
            ..Default::default()
        };
        l.set_store_type(match opts.store_type {
            StoreType::Unspecified => StoreType::InMemory,
            t => t,
        });
        validate_name("namespace", &l.namespace)?;
        validate_name("table name", &l.name)?;
        self.stores().create(&l)?;
        Ok(l)
    }

    /// A new table holding `data` (a later duplicate key wins).
    pub fn parallelize<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        data: impl IntoIterator<Item = (K, V)>,
        opts: Options,
    ) -> Result<RollPair<K, V>> {
        let table = RollPair::new(self.clone(), self.new_locator::<K, V>(&opts)?);
        table.put_all(data)?;
        Ok(table)
    }

    /// An empty table made as `opts` says (replacing one of the same name).
    pub fn create<K, V>(&self, opts: Options) -> Result<RollPair<K, V>> {
        Ok(RollPair::new(
            self.clone(),
            self.new_locator::<K, V>(&opts)?,
        ))
    }

    /// An existing persistent table; a clear error if it does not exist.
    pub fn load<K, V>(&self, namespace: &str, name: &str) -> Result<RollPair<K, V>> {
        let l = self.stores().load(StoreType::Rocksdb, namespace, name)?;
        Ok(RollPair::new(self.clone(), l))
    }

    /// Destroys the persistent tables whose namespace and name match the glob patterns;
    /// returns how many.
    pub fn cleanup(&self, namespace: &str, name_pattern: &str) -> Result<usize> {
        let tables = self.stores().list(namespace, name_pattern)?;
        for l in &tables {
            self.stores().destroy(l)?;
        }
        Ok(tables.len())
    }

    /// Ends the session: its in-memory tables are freed; persistent tables stay.
    pub fn stop(self) -> Result<()> {
        let n = self.stores().drop_memory_namespace(self.session_id());
        tracing::info!(session = %self.session_id(), freed_tables = n, "session stopped");
        Ok(())
    }

    /// Ends the session at once; in standalone mode the same as [`RollPairContext::stop`].
    pub fn kill(self) -> Result<()> {
        self.stop()
    }

    /// Runs `job` as one task per partition of its first input, in parallel.
    pub(crate) fn run_job(&self, mut job: Job, partitions: u32) -> Result<Vec<TaskResult>> {
        job.session_id = self.session_id().to_string();
        if job.id.is_empty() {
            job.id = format!("{}-{}", self.session_id(), self.fresh_id("job"));
        }
        let sink = LocalSink::new(self.stores().clone());
        let exec = &self.inner.executor;
        let job = &job;
        let results: Vec<_> = self.inner.pool.install(|| {
            (0..partitions)
                .into_par_iter()
                .map(|p| {
                    let task = Task {
                        job: Some(job.clone()),
                        partition: p,
                    };
                    exec.run(&task, &sink)
                })
                .collect()
        });
        Ok(results.into_iter().collect::<Result<Vec<_>, _>>()?)
    }

    /// Encodes and writes pairs into `l`, batching by partition, writes running on the pool.
    pub(crate) fn write_pairs<K: Serialize, V: Serialize>(
        &self,
        l: &StoreLocator,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64> {
        let n = l.total_partitions;
        let limit = self.stores().config().batch_bytes.max(1) as usize;
        let parts = (0..n)
            .map(|p| self.stores().partition(l, p))
            .collect::<Result<Vec<_>, _>>()?;
        let mut buckets: Vec<(Vec<Pair>, usize)> = (0..n).map(|_| (Vec::new(), 0)).collect();
        let failure: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
        let in_flight = AtomicU64::new(0);
        let max_in_flight = (self.inner.pool.current_num_threads() * 2) as u64;
        let mut written = 0u64;
        let write = |p: usize, batch: Vec<Pair>| {
            if let Err(e) = parts[p].put_batch(&batch) {
                *failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.into());
            }
        };
        self.inner.pool.in_place_scope(|s| -> Result<()> {
            for (k, v) in data {
                let (k, v) = (encode(&k)?, encode(&v)?);
                let p = partition_of(&k, n) as usize;
                let bucket = &mut buckets[p];
                bucket.1 += k.len() + v.len() + 16;
                bucket.0.push((k, v));
                written += 1;
                if bucket.1 >= limit {
                    let batch = std::mem::take(&mut bucket.0);
                    bucket.1 = 0;
                    // Hand the write to the pool while this thread keeps encoding; past a
                    // bound, write here instead so memory stays bounded.
                    if in_flight.load(Ordering::Acquire) < max_in_flight {
                        in_flight.fetch_add(1, Ordering::AcqRel);
                        let (write, in_flight) = (&write, &in_flight);
                        s.spawn(move |_| {
                            write(p, batch);
                            in_flight.fetch_sub(1, Ordering::AcqRel);
                        });
                    } else {
                        write(p, batch);
                    }
                }
            }
            for (p, (batch, _)) in buckets.drain(..).enumerate() {
                if !batch.is_empty() {
                    let write = &write;
                    s.spawn(move |_| write(p, batch));
                }
            }
            Ok(())
        })?;
        if let Some(e) = failure.into_inner().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        Ok(written)
    }
}
