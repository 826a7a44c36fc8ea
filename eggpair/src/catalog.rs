//! The stores of one process: where each table's partitions live. Persistent tables are
//! directories of partitions under the data dir (described by their metadata files, opened
//! through the handle cache); in-memory tables live in the process.

use crate::error::{EggError, Result};
use crate::memory_budget::{MemoryBudget, MemoryUsage};
use crate::memory_tables::MemoryTables;
use crate::open_partitions::OpenPartitions;
use crate::store::PartitionStore;
use crate::table_meta::{self, store_type_dir, META_FILE};
use eggroll_core::config::StorageConfig;
use eggroll_core::names::validate_name;
use eggroll_core::sync::Mutex;
use eggroll_proto::meta::{StoreLocator, StoreType};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Every store of one process: persistent partitions under the data dir, in-memory tables.
pub struct Stores {
    data_dir: PathBuf,
    config: StorageConfig,
    open: OpenPartitions,
    memory: MemoryTables,
    /// Egg mode: tables come into being on first touch (see [`Stores::open_lazy`]).
    lazy: bool,
    /// Egg mode: persistent tables whose metadata file is known to be written.
    described: Mutex<HashSet<PathBuf>>,
}

impl Stores {
    /// Opens the stores under `data_dir`, creating it; fails clearly if it is not writable.
    pub fn open(data_dir: &Path, config: StorageConfig) -> Result<Self> {
        Self::open_with(data_dir, config, false)
    }

    /// An egg's stores: the cluster manager, not the egg, knows which tables exist, so a
    /// table (or the share of it this egg serves) is created when a task first touches it.
    pub fn open_lazy(data_dir: &Path, config: StorageConfig) -> Result<Self> {
        Self::open_with(data_dir, config, true)
    }

    fn open_with(data_dir: &Path, config: StorageConfig, lazy: bool) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(EggError::io("cannot create data dir", data_dir))?;
        let probe = data_dir.join(".write-probe");
        std::fs::write(&probe, b"ok")
            .map_err(EggError::io("data dir is not writable", data_dir))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            // An egg waits for a partition that an egg of another session still holds.
            open: OpenPartitions::new(&config, lazy),
            memory: MemoryTables::new(MemoryBudget::new(data_dir, &config)),
            config,
            lazy,
            described: Mutex::new(HashSet::new()),
        })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The memory of in-memory tables against the process's budget, and what spilled.
    pub fn memory_usage(&self) -> MemoryUsage {
        self.memory.usage()
    }

    /// The storage settings.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The directory of a table.
    pub fn table_dir(&self, l: &StoreLocator) -> PathBuf {
        table_meta::table_dir(&self.data_dir, l.store_type(), &l.namespace, &l.name)
    }

    /// Creates a table; a persistent table that already exists is an error, never replaced.
    pub fn create(&self, l: &StoreLocator) -> Result<()> {
        table_meta::validate(l)?;
        if !l.store_type().is_persistent() {
            self.memory.create(l);
            return Ok(());
        }
        let dir = self.table_dir(l);
        if dir.exists() {
            return Err(EggError::TableExists {
                namespace: l.namespace.clone(),
                name: l.name.clone(),
            });
        }
        std::fs::create_dir_all(&dir)
            .map_err(EggError::io("cannot create table directory", &dir))?;
        table_meta::write(&dir, l, ".meta.json.tmp")
    }

    /// The locator of an existing persistent table, or a clear error.
    pub fn load(&self, store_type: StoreType, namespace: &str, name: &str) -> Result<StoreLocator> {
        validate_name("namespace", namespace)?;
        validate_name("table name", name)?;
        let path =
            table_meta::table_dir(&self.data_dir, store_type, namespace, name).join(META_FILE);
        if !store_type.is_persistent() || !path.exists() {
            return Err(EggError::NoSuchTable {
                namespace: namespace.into(),
                name: name.into(),
                store_type: store_type_dir(store_type).into(),
            });
        }
        table_meta::read(&path)
    }

    /// The persistent tables whose namespace and name match the glob patterns.
    pub fn list(&self, namespace_glob: &str, name_glob: &str) -> Result<Vec<StoreLocator>> {
        let pattern = |p: &str| {
            glob::Pattern::new(p).map_err(|e| {
                EggError::Core(eggroll_core::CoreError::InvalidArgument(format!(
                    "`{p}` is not a valid glob pattern: {e}"
                )))
            })
        };
        let (ns_pat, name_pat) = (pattern(namespace_glob)?, pattern(name_glob)?);
        let root = self.data_dir.join(store_type_dir(StoreType::PERSISTENT));
        let mut out = Vec::new();
        for ns in table_meta::dir_names(&root)? {
            if !ns_pat.matches(&ns) {
                continue;
            }
            for name in table_meta::dir_names(&root.join(&ns))? {
                let meta = root.join(&ns).join(&name).join(META_FILE);
                if name_pat.matches(&name) && meta.exists() {
                    out.push(table_meta::read(&meta)?);
                }
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        Ok(out)
    }

    /// Partition `p` of a table.
    pub fn partition(&self, l: &StoreLocator, p: u32) -> Result<Arc<dyn PartitionStore>> {
        if p >= l.total_partitions {
            return Err(EggError::InvalidTask(format!(
                "partition {p} does not exist in {}/{}, which has {} partitions",
                l.namespace, l.name, l.total_partitions
            )));
        }
        if !l.store_type().is_persistent() {
            if self.lazy {
                table_meta::validate(l)?;
            }
            return Ok(self.memory.partition(l, p, self.lazy)?);
        }
        let dir = self.table_dir(l);
        if self.lazy {
            self.describe(l, &dir)?;
        }
        Ok(self.open.get(&dir.join(p.to_string()))?)
    }

    /// Egg mode: writes the table's metadata file once, so a node's data dir stays readable
    /// by `eggroll table ls --data-dir`.
    fn describe(&self, l: &StoreLocator, dir: &Path) -> Result<()> {
        if self.described.lock().contains(dir) {
            return Ok(());
        }
        table_meta::validate(l)?;
        if !dir.join(META_FILE).exists() {
            std::fs::create_dir_all(dir)
                .map_err(EggError::io("cannot create table directory", dir))?;
            // Eggs of one node, and tasks of one egg, may describe a table at once: each
            // writes its own temporary file, and the renames all land the same content.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            table_meta::write(
                dir,
                l,
                &format!(".meta.json.{}.{n}.tmp", std::process::id()),
            )?;
        }
        self.described.lock().insert(dir.to_path_buf());
        Ok(())
    }

    /// Removes one partition (egg mode: each egg removes the partitions it serves); the
    /// table's directory goes when its last partition has gone.
    pub fn destroy_partition(&self, l: &StoreLocator, p: u32) -> Result<()> {
        if !l.store_type().is_persistent() {
            // An in-memory table is one map per process: drop it when this egg is done.
            self.memory.remove(l);
            return Ok(());
        }
        let dir = self.table_dir(l);
        let part = dir.join(p.to_string());
        self.open.forget_under(&part);
        if part.exists() {
            std::fs::remove_dir_all(&part)
                .map_err(EggError::io("cannot remove partition directory", &part))?;
        }
        let others = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            })
            .unwrap_or(true);
        if !others {
            self.described.lock().remove(&dir);
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(())
    }

    /// Closes the partitions nobody has used for `idle`, so that another process (an egg of
    /// another session on this node) can open them; returns how many closed.
    pub fn close_idle(&self, idle: Duration) -> usize {
        self.open.close_idle(idle)
    }

    /// Removes a whole table.
    pub fn destroy(&self, l: &StoreLocator) -> Result<()> {
        if !l.store_type().is_persistent() {
            self.memory.remove(l);
            return Ok(());
        }
        let dir = self.table_dir(l);
        self.open.forget_under(&dir);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .map_err(EggError::io("cannot remove table directory", &dir))?;
        }
        Ok(())
    }

    /// Removes every in-memory table of a namespace (a session's intermediate results).
    pub fn drop_memory_namespace(&self, namespace: &str) -> usize {
        self.memory.remove_namespace(namespace)
    }
}
