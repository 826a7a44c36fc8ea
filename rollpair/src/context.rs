//! The session side of the API: a context owns the stores, the executor and the task pool.

use crate::cluster::{ClusterSession, SessionOptions};
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

/// Where tasks run.
pub(crate) enum Backend {
    /// Standalone: in this process, on the thread pool.
    Local(Executor),
    /// A session on a cluster: on its eggs.
    Cluster(Box<ClusterSession>),
}

/// Sees one encoded pair of a scan; returns false to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> Result<bool> + 'a;

pub(crate) struct Inner {
    pub(crate) session_id: String,
    pub(crate) backend: Backend,
    pub(crate) pool: rayon::ThreadPool,
    next_id: AtomicU64,
}

/// A session: runs every table operation as one task per partition, in this process
/// (standalone) or on a cluster's eggs (`connect`).
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
        let pool = pool(config.storage.task_threads as usize)?;
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
                backend: Backend::Local(Executor::new(stores)),
                pool,
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// Distributed mode: starts a session through the cluster manager at `address`
    /// ("host:port") and waits until its eggs serve. Every operation then runs on the eggs
    /// that own the partitions. The API blocks: call it from ordinary threads, not from
    /// inside an async task.
    pub fn connect(address: &str, opts: SessionOptions) -> Result<Self> {
        let session = ClusterSession::connect(address, &opts)?;
        Ok(Self {
            inner: Arc::new(Inner {
                session_id: session.session_id().to_string(),
                backend: Backend::Cluster(Box::new(session)),
                pool: pool(0)?,
                next_id: AtomicU64::new(0),
            }),
        })
    }

    /// This session's id.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// True for a session on a cluster, false in standalone mode.
    pub fn is_distributed(&self) -> bool {
        matches!(self.inner.backend, Backend::Cluster(_))
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn fresh_id(&self, what: &str) -> String {
        format!(
            "{what}_{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Makes a new empty table for `K, V` as `opts` says; on a cluster, an in-memory table
    /// is placed like `like` (partition `p` of both on one egg) when given.
    pub(crate) fn new_locator<K, V>(
        &self,
        opts: &Options,
        like: Option<&StoreLocator>,
    ) -> Result<StoreLocator> {
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
        match self.backend() {
            Backend::Local(exec) => exec.stores().create(&l)?,
            Backend::Cluster(c) => c.create(&l, like)?,
        }
        Ok(l)
    }

    /// A new table holding `data` (a later duplicate key wins).
    pub fn parallelize<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        data: impl IntoIterator<Item = (K, V)>,
        opts: Options,
    ) -> Result<RollPair<K, V>> {
        let table = RollPair::new(self.clone(), self.new_locator::<K, V>(&opts, None)?);
        table.put_all(data)?;
        Ok(table)
    }

    /// An empty table made as `opts` says (replacing one of the same name).
    pub fn create<K, V>(&self, opts: Options) -> Result<RollPair<K, V>> {
        Ok(RollPair::new(
            self.clone(),
            self.new_locator::<K, V>(&opts, None)?,
        ))
    }

    /// An existing persistent table; a clear error if it does not exist.
    pub fn load<K, V>(&self, namespace: &str, name: &str) -> Result<RollPair<K, V>> {
        validate_name("namespace", namespace)?;
        validate_name("table name", name)?;
        let l = match self.backend() {
            Backend::Local(exec) => exec.stores().load(StoreType::Rocksdb, namespace, name)?,
            Backend::Cluster(c) => c.load(namespace, name)?,
        };
        Ok(RollPair::new(self.clone(), l))
    }

    /// Destroys the persistent tables whose namespace and name match the glob patterns;
    /// returns how many.
    pub fn cleanup(&self, namespace: &str, name_pattern: &str) -> Result<usize> {
        let tables = match self.backend() {
            Backend::Local(exec) => exec.stores().list(namespace, name_pattern)?,
            Backend::Cluster(c) => c.list(namespace, name_pattern)?,
        };
        for l in &tables {
            self.destroy_store(l)?;
        }
        Ok(tables.len())
    }

    /// Removes a table and its files.
    pub(crate) fn destroy_store(&self, l: &StoreLocator) -> Result<()> {
        match self.backend() {
            Backend::Local(exec) => Ok(exec.stores().destroy(l)?),
            Backend::Cluster(c) => {
                let job = Job {
                    inputs: vec![eggroll_proto::meta::Store {
                        locator: Some(l.clone()),
                        ..Default::default()
                    }],
                    op: Some(eggroll_proto::meta::job::Op::Destroy(Default::default())),
                    ..Default::default()
                };
                self.run_job(job, l.total_partitions)?;
                c.forget(l)
            }
        }
    }

    /// Whether partition `p` of `a` and of `b` sit on the same egg, for every `p`.
    pub(crate) fn same_placement(&self, a: &StoreLocator, b: &StoreLocator) -> Result<bool> {
        match self.backend() {
            Backend::Local(_) => Ok(true),
            Backend::Cluster(c) => {
                let (a, b) = (c.store(a)?, c.store(b)?);
                Ok(a.partitions.len() == b.partitions.len()
                    && a.partitions
                        .iter()
                        .zip(&b.partitions)
                        .all(|(x, y)| x.processor_id == y.processor_id))
            }
        }
    }

    /// Calls `visit` on every pair of partition `p` of `l` in key order; it returns false
    /// to stop.
    pub(crate) fn scan_partition(&self, l: &StoreLocator, p: u32, visit: &mut Visit) -> Result<()> {
        match self.backend() {
            Backend::Local(exec) => {
                let part = exec.stores().partition(l, p)?;
                let mut failed = None;
                part.scan(
                    eggroll_eggpair::KeyRange::all(),
                    &mut |k, v| match visit(k, v) {
                        Ok(more) => Ok(more),
                        Err(e) => {
                            failed = Some(e);
                            Ok(false)
                        }
                    },
                )?;
                failed.map_or(Ok(()), Err)
            }
            Backend::Cluster(c) => c.scan(l, p, visit),
        }
    }

    /// Ends the session: its in-memory tables are freed (on a cluster, its eggs exit);
    /// persistent tables stay.
    pub fn stop(self) -> Result<()> {
        self.end(false)
    }

    /// Ends the session at once: on a cluster its eggs are killed, not asked to stop.
    pub fn kill(self) -> Result<()> {
        self.end(true)
    }

    fn end(self, kill: bool) -> Result<()> {
        match self.backend() {
            Backend::Local(exec) => {
                let n = exec.stores().drop_memory_namespace(self.session_id());
                tracing::info!(session = %self.session_id(), freed_tables = n, "session stopped");
                Ok(())
            }
            Backend::Cluster(c) => c.stop(kill),
        }
    }

    /// Runs `job` as one task per partition of its first input, in parallel.
    pub(crate) fn run_job(&self, mut job: Job, partitions: u32) -> Result<Vec<TaskResult>> {
        job.session_id = self.session_id().to_string();
        if job.id.is_empty() {
            job.id = format!("{}-{}", self.session_id(), self.fresh_id("job"));
        }
        let exec = match self.backend() {
            Backend::Local(exec) => exec,
            Backend::Cluster(c) => return c.run_job(job, partitions),
        };
        let sink = LocalSink::new(exec.stores().clone());
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
        let exec = match self.backend() {
            Backend::Local(exec) => exec,
            Backend::Cluster(c) => return write_to_cluster(c, l, data),
        };
        let limit = exec.stores().config().batch_bytes.max(1) as usize;
        let parts = (0..n)
            .map(|p| exec.stores().partition(l, p))
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

/// The task thread pool (`threads` 0: one per core).
fn pool(threads: usize) -> Result<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("eggroll-task-{i}"))
        .build()
        .map_err(|e| Error::Pool(e.to_string()))
}

/// Batch size of client puts on a cluster.
pub(crate) const CLUSTER_BATCH_BYTES: usize = 4 << 20;

/// Encodes pairs, buckets them by partition and streams full buckets to the owning eggs.
fn write_to_cluster<K: Serialize, V: Serialize>(
    c: &ClusterSession,
    l: &StoreLocator,
    data: impl IntoIterator<Item = (K, V)>,
) -> Result<u64> {
    let n = l.total_partitions;
    let mut streams = c.put_streams(l)?;
    let mut buckets: Vec<Vec<u8>> = (0..n).map(|_| Vec::new()).collect();
    let (mut k, mut v) = (Vec::new(), Vec::new());
    for (key, value) in data {
        k.clear();
        v.clear();
        eggroll_core::codec::encode_into(&key, &mut k)?;
        eggroll_core::codec::encode_into(&value, &mut v)?;
        let p = partition_of(&k, n);
        let bucket = &mut buckets[p as usize];
        eggroll_core::pairs::push(bucket, &k, &v);
        if bucket.len() >= CLUSTER_BATCH_BYTES {
            let full = std::mem::replace(bucket, Vec::with_capacity(CLUSTER_BATCH_BYTES + 4096));
            streams.send(p, full)?;
        }
    }
    for (p, batch) in buckets.into_iter().enumerate() {
        if !batch.is_empty() {
            streams.send(p as u32, batch)?;
        }
    }
    streams.finish()
}
