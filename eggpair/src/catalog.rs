//! The stores of one process: where each table's partitions live, their metadata, and the
//! cache of open RocksDB partitions.

use crate::error::{EggError, Result};
use crate::memory::MemStore;
use crate::rocks::{RocksEnv, RocksStore};
use crate::store::PartitionStore;
use eggroll_core::config::StorageConfig;
use eggroll_core::names::{validate_name, validate_partitions};
use eggroll_proto::meta::{StoreLocator, StoreType};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an egg waits for another process to release a partition it wants to open.
const LOCK_WAIT: Duration = Duration::from_secs(15);

/// File beside a table's partitions that records how it was made.
pub const META_FILE: &str = ".meta.json";

/// A table's metadata as stored in [`META_FILE`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
struct TableMeta {
    namespace: String,
    name: String,
    store_type: String,
    total_partitions: u32,
    partitioner: String,
    serdes: String,
    key_type: String,
    value_type: String,
}

impl TableMeta {
    fn from_locator(l: &StoreLocator) -> Self {
        Self {
            namespace: l.namespace.clone(),
            name: l.name.clone(),
            store_type: store_type_dir(l.store_type()).to_string(),
            total_partitions: l.total_partitions,
            partitioner: l.partitioner.clone(),
            serdes: l.serdes.clone(),
            key_type: l.key_type.clone(),
            value_type: l.value_type.clone(),
        }
    }

    fn into_locator(self) -> StoreLocator {
        let mut l = StoreLocator {
            namespace: self.namespace,
            name: self.name,
            total_partitions: self.total_partitions,
            partitioner: self.partitioner,
            serdes: self.serdes,
            key_type: self.key_type,
            value_type: self.value_type,
            ..Default::default()
        };
        l.set_store_type(StoreType::Rocksdb);
        l
    }
}

/// The directory name of a store type, as in EggRoll's layout.
pub fn store_type_dir(t: StoreType) -> &'static str {
    match t {
        StoreType::Rocksdb => "ROCKSDB",
        StoreType::InMemory => "IN_MEMORY",
        StoreType::Unspecified => "UNSPECIFIED",
    }
}

type MemTable = Arc<Vec<Arc<MemStore>>>;

struct OpenCache {
    /// Open partitions with their last use: a tick for LRU order, an instant for idling.
    open: HashMap<PathBuf, (Arc<RocksStore>, u64, Instant)>,
    tick: u64,
}

/// Every store of one process: RocksDB partitions under the data dir, in-memory tables.
pub struct Stores {
    data_dir: PathBuf,
    config: StorageConfig,
    env: RocksEnv,
    rocks: Mutex<OpenCache>,
    opening: Mutex<()>,
    memory: Mutex<HashMap<(String, String), MemTable>>,
    /// Egg mode: tables come into being on first touch (see [`Stores::open_lazy`]).
    lazy: bool,
    /// Egg mode: RocksDB tables whose metadata file is known to be written.
    described: Mutex<std::collections::HashSet<PathBuf>>,
}

impl Stores {
    /// Opens the stores under `data_dir`, creating it; fails clearly if it is not writable.
    pub fn open(data_dir: &Path, config: StorageConfig) -> Result<Self> {
        std::fs::create_dir_all(data_dir)
            .map_err(EggError::io("cannot create data dir", data_dir))?;
        let probe = data_dir.join(".write-probe");
        std::fs::write(&probe, b"ok")
            .map_err(EggError::io("data dir is not writable", data_dir))?;
        let _ = std::fs::remove_file(&probe);
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            env: RocksEnv::new(&config),
            config,
            opening: Mutex::new(()),
            rocks: Mutex::new(OpenCache {
                open: HashMap::new(),
                tick: 0,
            }),
            memory: Mutex::new(HashMap::new()),
            lazy: false,
            described: Mutex::new(Default::default()),
        })
    }

    /// An egg's stores: the cluster manager, not the egg, knows which tables exist, so a
    /// table (or the share of it this egg serves) is created when a task first touches it.
    pub fn open_lazy(data_dir: &Path, config: StorageConfig) -> Result<Self> {
        Ok(Self {
            lazy: true,
            ..Self::open(data_dir, config)?
        })
    }

    /// The data dir.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The storage settings.
    pub fn config(&self) -> &StorageConfig {
        &self.config
    }

    /// The directory of a table.
    pub fn table_dir(&self, l: &StoreLocator) -> PathBuf {
        self.data_dir
            .join(store_type_dir(l.store_type()))
            .join(&l.namespace)
            .join(&l.name)
    }

    /// Creates a table; a persistent table that already exists is an error, never replaced.
    pub fn create(&self, l: &StoreLocator) -> Result<()> {
        validate(l)?;
        match l.store_type() {
            StoreType::InMemory => {
                let parts = (0..l.total_partitions)
                    .map(|_| Arc::new(MemStore::new()))
                    .collect();
                self.lock_memory()
                    .insert((l.namespace.clone(), l.name.clone()), Arc::new(parts));
            }
            _ => {
                let dir = self.table_dir(l);
                if dir.exists() {
                    return Err(EggError::TableExists {
                        namespace: l.namespace.clone(),
                        name: l.name.clone(),
                    });
                }
                std::fs::create_dir_all(&dir)
                    .map_err(EggError::io("cannot create table directory", &dir))?;
                let meta = serde_json::to_vec_pretty(&TableMeta::from_locator(l)).map_err(|e| {
                    EggError::BadMeta {
                        path: dir.clone(),
                        reason: e.to_string(),
                    }
                })?;
                // Write then rename, so a crash never leaves a half-written metadata file.
                let tmp = dir.join(".meta.json.tmp");
                std::fs::write(&tmp, meta)
                    .map_err(EggError::io("cannot write table metadata", &tmp))?;
                std::fs::rename(&tmp, dir.join(META_FILE)).map_err(EggError::io(
                    "cannot write table metadata",
                    dir.join(META_FILE),
                ))?;
            }
        }
        Ok(())
    }

    /// The locator of an existing table, or a clear error.
    pub fn load(&self, store_type: StoreType, namespace: &str, name: &str) -> Result<StoreLocator> {
        validate_name("namespace", namespace)?;
        validate_name("table name", name)?;
        let missing = || EggError::NoSuchTable {
            namespace: namespace.into(),
            name: name.into(),
            store_type: store_type_dir(store_type).into(),
        };
        if store_type == StoreType::InMemory {
            return Err(missing());
        }
        let path = self
            .data_dir
            .join(store_type_dir(store_type))
            .join(namespace)
            .join(name)
            .join(META_FILE);
        if !path.exists() {
            return Err(missing());
        }
        read_meta(&path)
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
        let root = self.data_dir.join(store_type_dir(StoreType::Rocksdb));
        let mut out = Vec::new();
        for ns in read_dir_names(&root)? {
            if !ns_pat.matches(&ns) {
                continue;
            }
            for name in read_dir_names(&root.join(&ns))? {
                let meta = root.join(&ns).join(&name).join(META_FILE);
                if name_pat.matches(&name) && meta.exists() {
                    out.push(read_meta(&meta)?);
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
        match l.store_type() {
            StoreType::InMemory => {
                let mut memory = self.lock_memory();
                let key = (l.namespace.clone(), l.name.clone());
                if self.lazy && !memory.contains_key(&key) {
                    validate(l)?;
                    let parts = (0..l.total_partitions)
                        .map(|_| Arc::new(MemStore::new()))
                        .collect();
                    memory.insert(key.clone(), Arc::new(parts));
                }
                let table = memory
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| EggError::NoSuchTable {
                        namespace: l.namespace.clone(),
                        name: l.name.clone(),
                        store_type: "IN_MEMORY".into(),
                    })?;
                let part = table.get(p as usize).cloned().ok_or_else(|| {
                    EggError::InvalidTask(format!(
                        "in-memory table {}/{} has no partition {p}",
                        l.namespace, l.name
                    ))
                })?;
                Ok(part)
            }
            _ => {
                let dir = self.table_dir(l);
                if self.lazy {
                    self.describe(l, &dir)?;
                }
                Ok(self.rocks_partition(&dir.join(p.to_string()))?)
            }
        }
    }

    /// Egg mode: writes the table's metadata file once, so a node's data dir stays readable
    /// by `eggroll table ls --data-dir`.
    fn describe(&self, l: &StoreLocator, dir: &Path) -> Result<()> {
        if self.lock_described().contains(dir) {
            return Ok(());
        }
        validate(l)?;
        if !dir.join(META_FILE).exists() {
            std::fs::create_dir_all(dir)
                .map_err(EggError::io("cannot create table directory", dir))?;
            // Eggs of one node, and tasks of one egg, may describe a table at once: each
            // writes its own temporary file, and the renames all land the same content.
            static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            write_meta(
                dir,
                l,
                &format!(".meta.json.{}.{n}.tmp", std::process::id()),
            )?;
        }
        self.lock_described().insert(dir.to_path_buf());
        Ok(())
    }

    /// Removes one partition (egg mode: each egg removes the partitions it serves); the
    /// table's directory goes when its last partition has gone.
    pub fn destroy_partition(&self, l: &StoreLocator, p: u32) -> Result<()> {
        match l.store_type() {
            StoreType::InMemory => {
                // An in-memory table is one map per process: drop it when this egg is done.
                self.lock_memory()
                    .remove(&(l.namespace.clone(), l.name.clone()));
            }
            _ => {
                let dir = self.table_dir(l);
                let part = dir.join(p.to_string());
                self.lock_rocks().open.remove(&part);
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
                    self.lock_described().remove(&dir);
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        }
        Ok(())
    }

    fn rocks_partition(&self, path: &Path) -> Result<Arc<RocksStore>> {
        if let Some(store) = self.cached(path) {
            return Ok(store);
        }
        // In egg mode, another process (an egg of another session) may hold the partition
        // for a moment: eggs close what they have not used for a second.
        let deadline = Instant::now() + LOCK_WAIT;
        let mut pause = Duration::from_millis(20);
        loop {
            {
                // One open at a time: RocksDB refuses a second open of a DB within one
                // process. Not held while waiting, so other partitions open meanwhile.
                let _opening = self.opening.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(store) = self.cached(path) {
                    return Ok(store);
                }
                match self.env.open(path) {
                    Err(EggError::Corrupt { source, .. })
                        if source.to_string().contains("lock file") =>
                    {
                        if !self.lazy || Instant::now() >= deadline {
                            return Err(EggError::Locked {
                                path: path.to_path_buf(),
                                waited: if self.lazy { LOCK_WAIT } else { Duration::ZERO },
                            });
                        }
                    }
                    // Cached before the opening lock goes, so no thread opens it twice.
                    other => return Ok(self.insert_open(path, Arc::new(other?))),
                }
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(500));
        }
    }

    /// Adds a just-opened partition to the cache, closing the least used idle ones past the
    /// cap.
    fn insert_open(&self, path: &Path, store: Arc<RocksStore>) -> Arc<RocksStore> {
        let mut cache = self.lock_rocks();
        cache.tick += 1;
        let tick = cache.tick;
        cache
            .open
            .insert(path.to_path_buf(), (store.clone(), tick, Instant::now()));
        let cap = self.config.max_open_partitions.max(1) as usize;
        while cache.open.len() > cap {
            let victim = cache
                .open
                .iter()
                .filter(|(_, (s, _, _))| Arc::strong_count(s) == 1)
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(p, _)| p.clone());
            match victim {
                Some(p) => {
                    cache.open.remove(&p);
                }
                None => break,
            }
        }
        store
    }

    /// An open partition from the cache, marked as just used.
    fn cached(&self, path: &Path) -> Option<Arc<RocksStore>> {
        let mut cache = self.lock_rocks();
        cache.tick += 1;
        let tick = cache.tick;
        let (store, used, at) = cache.open.get_mut(path)?;
        *used = tick;
        *at = Instant::now();
        Some(store.clone())
    }

    /// Closes the partitions nobody has used for `idle`, so that another process (an egg of
    /// another session on this node) can open them; returns how many closed.
    pub fn close_idle(&self, idle: Duration) -> usize {
        let mut cache = self.lock_rocks();
        let before = cache.open.len();
        cache
            .open
            .retain(|_, (s, _, at)| Arc::strong_count(s) > 1 || at.elapsed() < idle);
        before - cache.open.len()
    }

    pub fn destroy(&self, l: &StoreLocator) -> Result<()> {
        match l.store_type() {
            StoreType::InMemory => {
                self.lock_memory()
                    .remove(&(l.namespace.clone(), l.name.clone()));
            }
            _ => {
                let dir = self.table_dir(l);
                self.lock_rocks().open.retain(|p, _| !p.starts_with(&dir));
                if dir.exists() {
                    std::fs::remove_dir_all(&dir)
                        .map_err(EggError::io("cannot remove table directory", &dir))?;
                }
            }
        }
        Ok(())
    }

    /// Removes every in-memory table of a namespace (a session's intermediate results).
    pub fn drop_memory_namespace(&self, namespace: &str) -> usize {
        let mut mem = self.lock_memory();
        let before = mem.len();
        mem.retain(|(ns, _), _| ns != namespace);
        before - mem.len()
    }

    fn lock_memory(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String), MemTable>> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_described(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<PathBuf>> {
        self.described.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_rocks(&self) -> std::sync::MutexGuard<'_, OpenCache> {
        self.rocks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Writes `dir/.meta.json` through a temporary file, so a reader never sees half of it.
fn write_meta(dir: &Path, l: &StoreLocator, tmp_name: &str) -> Result<()> {
    let meta =
        serde_json::to_vec_pretty(&TableMeta::from_locator(l)).map_err(|e| EggError::BadMeta {
            path: dir.to_path_buf(),
            reason: e.to_string(),
        })?;
    let tmp = dir.join(tmp_name);
    std::fs::write(&tmp, meta).map_err(EggError::io("cannot write table metadata", &tmp))?;
    std::fs::rename(&tmp, dir.join(META_FILE)).map_err(EggError::io(
        "cannot write table metadata",
        dir.join(META_FILE),
    ))
}

fn validate(l: &StoreLocator) -> Result<()> {
    validate_name("namespace", &l.namespace)?;
    validate_name("table name", &l.name)?;
    validate_partitions(l.total_partitions)?;
    Ok(())
}

fn read_meta(path: &Path) -> Result<StoreLocator> {
    let bytes = std::fs::read(path).map_err(EggError::io("cannot read table metadata", path))?;
    let meta: TableMeta = serde_json::from_slice(&bytes).map_err(|e| EggError::BadMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let l = meta.into_locator();
    validate(&l).map_err(|e| EggError::BadMeta {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(l)
}

fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(EggError::io("cannot list", dir))? {
        let entry = entry.map_err(EggError::io("cannot list", dir))?;
        if entry.path().is_dir() {
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_string());
            }
        }
    }
    names.sort();
    Ok(names)
}
