//! The session side of the API: a [`RollPairContext`] names a session and holds its backend
//! (this process, or a cluster session's eggs).

use crate::backend::Backend;
use crate::cluster::ClusterSession;
use crate::error::Result;
use crate::local::Local;
use crate::writer::PairWriter;
use eggroll_core::codec::SERDES;
use eggroll_core::config::EggrollConfig;
use eggroll_core::names::{validate_name, validate_partitions};
use eggroll_proto::meta::{Job, StoreLocator, StoreType, TaskResult};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

pub use crate::backend::Visit;
use crate::options::{FateTypes, Options, SessionOptions, StoreTags};

/// A session: runs every table operation as one task per partition, in this process
/// (standalone) or on a cluster's eggs (`connect`).
#[derive(Clone)]
pub struct RollPairContext {
    backend: Arc<dyn Backend>,
    next_id: Arc<AtomicU64>,
}

impl RollPairContext {
    fn with(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            next_id: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Standalone mode: everything in this process, tables under `data_dir`.
    pub fn standalone(data_dir: impl AsRef<Path>) -> Result<Self> {
        let mut config = EggrollConfig::load(None)?;
        config.data_dir = data_dir.as_ref().to_path_buf();
        Self::standalone_with(&config)
    }

    /// Standalone mode with explicit settings.
    pub fn standalone_with(config: &EggrollConfig) -> Result<Self> {
        Ok(Self::with(Arc::new(Local::open(config)?)))
    }

    /// Distributed mode: starts a session through the cluster manager at `address`
    /// ("host:port") and waits until its eggs serve. Every operation then runs on the eggs
    /// that own the partitions. The API blocks: call it from ordinary threads, not from
    /// inside an async task.
    pub fn connect(address: &str, opts: SessionOptions) -> Result<Self> {
        Ok(Self::with(Arc::new(ClusterSession::connect(
            address, &opts,
        )?)))
    }

    /// This session's id.
    pub fn session_id(&self) -> &str {
        self.backend.session_id()
    }

    /// True for a session on a cluster, false in standalone mode.
    pub fn is_distributed(&self) -> bool {
        self.backend.is_distributed()
    }

    /// In standalone mode, this process's in-memory tables against its memory budget and
    /// what spilled; `None` on a cluster (`eggroll session show` asks its eggs).
    pub fn memory_usage(&self) -> Option<eggroll_eggpair::memory_budget::MemoryUsage> {
        self.backend.memory_usage()
    }

    /// Where the session's tables live and its tasks run.
    pub(crate) fn backend(&self) -> &dyn Backend {
        &*self.backend
    }

    fn fresh_id(&self, what: &str) -> String {
        format!("{what}_{}", self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Makes a new empty table for `K, V` as `opts` says; on a cluster, an in-memory table
    /// is placed like `like` (partition `p` of both on one egg) when given.
    pub(crate) fn new_locator<K, V>(
        &self,
        opts: &Options,
        like: Option<&StoreLocator>,
    ) -> Result<StoreLocator> {
        let tags = StoreTags {
            serdes: SERDES,
            key_type: std::any::type_name::<K>(),
            value_type: std::any::type_name::<V>(),
            fate: FateTypes::default(),
        };
        self.new_store(opts, like, &tags)
    }

    /// Records a new store of `opts` whose pairs are encoded as `tags` say.
    pub(crate) fn new_store(
        &self,
        opts: &Options,
        like: Option<&StoreLocator>,
        tags: &StoreTags,
    ) -> Result<StoreLocator> {
        validate_partitions(opts.partitions)?;
        let mut l = StoreLocator {
            namespace: opts
                .namespace
                .clone()
                .unwrap_or_else(|| self.session_id().to_string()),
            name: opts.name.clone().unwrap_or_else(|| self.fresh_id("table")),
            total_partitions: opts.partitions,
            partitioner: opts.partitioner.name().into(),
            serdes: tags.serdes.into(),
            key_type: tags.key_type.into(),
            value_type: tags.value_type.into(),
            key_serdes_type: tags.fate.key_serdes_type,
            value_serdes_type: tags.fate.value_serdes_type,
            partitioner_type: tags.fate.partitioner_type,
            ..Default::default()
        };
        l.set_store_type(match opts.store_type {
            StoreType::Unspecified => StoreType::InMemory,
            t => t,
        });
        validate_name("namespace", &l.namespace)?;
        validate_name("table name", &l.name)?;
        self.backend.create(&l, like)?;
        Ok(l)
    }

    /// An existing persistent table's locator; a clear error if it does not exist.
    pub(crate) fn load_locator(&self, namespace: &str, name: &str) -> Result<StoreLocator> {
        validate_name("namespace", namespace)?;
        validate_name("table name", name)?;
        self.backend.load(namespace, name)
    }

    /// Whether the persistent table `namespace/name` exists.
    pub fn exists(&self, namespace: &str, name: &str) -> Result<bool> {
        validate_name("namespace", namespace)?;
        validate_name("table name", name)?;
        let found = self.backend.list(namespace, name)?;
        Ok(found
            .iter()
            .any(|l| l.namespace == namespace && l.name == name))
    }

    /// Destroys the persistent tables whose namespace and name match the glob patterns;
    /// returns how many.
    pub fn cleanup(&self, namespace: &str, name_pattern: &str) -> Result<usize> {
        let tables = self.backend.list(namespace, name_pattern)?;
        for l in &tables {
            self.backend.destroy(l)?;
        }
        Ok(tables.len())
    }

    /// Ends the session: its in-memory tables are freed (on a cluster, its eggs exit);
    /// persistent tables stay.
    pub fn stop(self) -> Result<()> {
        self.backend.stop(false)
    }

    /// Ends the session at once: on a cluster its eggs are killed, not asked to stop.
    pub fn kill(self) -> Result<()> {
        self.backend.stop(true)
    }

    /// Runs `job` as one task per partition of its first input, in parallel.
    pub(crate) fn run_job(&self, mut job: Job, partitions: u32) -> Result<Vec<TaskResult>> {
        job.session_id = self.session_id().to_string();
        if job.id.is_empty() {
            job.id = format!("{}-{}", self.session_id(), self.fresh_id("job"));
        }
        self.backend.run_job(job, partitions)
    }

    /// Encodes and writes pairs into `l`, batched by partition; returns how many.
    pub(crate) fn write_pairs<K: Serialize, V: Serialize>(
        &self,
        l: &StoreLocator,
        data: impl IntoIterator<Item = (K, V)>,
    ) -> Result<u64> {
        PairWriter::new(self.backend(), l)?.write_all(data)
    }
}
