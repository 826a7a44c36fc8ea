//! Configuration: defaults that need no file, an optional TOML file, and `EGGROLL_*`
//! environment overrides for every key.
//!
//! A key's variable is its path in upper case joined by `_`: `storage.block_cache_bytes` is
//! `EGGROLL_STORAGE_BLOCK_CACHE_BYTES`, `data_dir` is `EGGROLL_DATA_DIR`.

use crate::error::{CoreError, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Every setting of every component, with EggRoll's defaults.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct EggrollConfig {
    /// Where tables live (`eggroll.data.dir`).
    pub data_dir: PathBuf,
    /// Where logs go (`eggroll.logs.dir`).
    pub logs_dir: PathBuf,
    /// RocksDB and batching settings of a process.
    pub storage: StorageConfig,
    /// Settings of sessions.
    pub session: SessionConfig,
    /// Where the cluster manager listens (and where clients and node managers find it).
    pub clustermanager: ClusterManagerConfig,
    /// Where the node manager listens, and how it runs egg-pair processes.
    pub nodemanager: NodeManagerConfig,
    /// The roll-site: where it listens, its party, routes, TLS, retries and limits.
    pub rollsite: RollsiteConfig,
}

/// Storage settings shared by every partition of one process.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// One block cache for every RocksDB of the process.
    pub block_cache_bytes: u64,
    /// One memtable budget for every RocksDB of the process.
    pub write_buffer_bytes: u64,
    /// At most this many RocksDB partitions open at once; the least used close first.
    pub max_open_partitions: u64,
    /// Pairs move in batches of about this many bytes.
    pub batch_bytes: u64,
    /// Threads that run partition tasks (0: one per core).
    pub task_threads: u64,
    /// A bulk load into an empty stored partition is sorted in runs of about this many bytes,
    /// each written as a table file and ingested (0: bulk loads write batches like any put).
    pub bulk_run_bytes: u64,
    /// In-memory partitions of a process together hold at most about this many bytes; past
    /// it, partitions spill to RocksDB in the data dir's scratch space (0: an eighth of the
    /// machine's memory).
    pub memory_budget_bytes: u64,
}

/// Session settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Egg-pair processes per node (`eggroll.session.processors.per.node`).
    pub processors_per_node: u64,
    /// Python egg processes per node, for sessions of Python eggs (FATE's) that do not ask
    /// for a count; 0: one per CPU of each node. A Python egg runs one function at a time
    /// and FATE's heavy ones (torch, Paillier) use a core each: more eggs than cores only
    /// makes them take turns.
    pub python_processors_per_node: u64,
    /// How long a session may take to start (`eggroll.session.start.timeout.ms`).
    pub start_timeout_ms: u64,
    /// A session whose client stops renewing it for this long is stopped, and its eggs exit.
    pub lease_ms: u64,
}

/// Cluster manager settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterManagerConfig {
    /// Host name or address to listen on and to dial.
    pub host: String,
    /// TCP port (`eggroll.resourcemanager.clustermanager.port`).
    pub port: u16,
    /// A node manager silent for this long is marked LOST and gets no new sessions.
    pub heartbeat_timeout_ms: u64,
    /// The address eggs dial to report to the cluster manager when `host` is a wildcard
    /// such as 0.0.0.0; empty: `host`.
    pub advertise_host: String,
    /// HTTP port of `/healthz`, `/readyz`, Prometheus `/metrics` and the status page `/`,
    /// on `host`; 0 picks a free one (printed on start).
    pub http_port: u16,
}

/// Node manager settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeManagerConfig {
    /// Host name or address to listen on; eggs of this node listen on it too, and it is the
    /// address the cluster manager and clients dial.
    pub host: String,
    /// TCP port (`eggroll.resourcemanager.nodemanager.port`).
    pub port: u16,
    /// How often it heartbeats to the cluster manager.
    pub heartbeat_interval_ms: u64,
    /// The program run as `<program> eggpair ...` for each egg; empty: this binary.
    pub eggpair_executable: String,
    /// The Python run as `<python> -m eggroll.egg ...` for each Python egg (sessions of
    /// FATE's jobs); it must have the `eggroll-rs` package installed.
    pub python_executable: String,
    /// Warm Python eggs kept waiting for sessions, so that a job's eggs have their modules
    /// imported already (0: Python eggs start when a session asks for them).
    pub python_spares: u32,
    /// The modules a warm Python egg imports while it waits, comma-separated (a module that
    /// is missing is skipped): what FATE's functions import.
    pub python_preload: String,
    /// HTTP port of `/healthz`, `/readyz` and Prometheus `/metrics`, on `host`; 0 picks a
    /// free one (printed on start). Its eggs serve theirs on ports the OS picks.
    pub http_port: u16,
    /// The CPUs this node offers its sessions (0: the machine's). A session of Python eggs
    /// gets one per CPU; node managers that share a machine each offer their share.
    pub cpus: u32,
}

impl Default for EggrollConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("data"),
            logs_dir: PathBuf::from("logs"),
            storage: StorageConfig::default(),
            session: SessionConfig::default(),
            clustermanager: ClusterManagerConfig::default(),
            nodemanager: NodeManagerConfig::default(),
            rollsite: RollsiteConfig::default(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            block_cache_bytes: 256 << 20,
            write_buffer_bytes: 256 << 20,
            max_open_partitions: 512,
            batch_bytes: 4 << 20,
            task_threads: 0,
            bulk_run_bytes: 64 << 20,
            memory_budget_bytes: 0,
        }
    }
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            processors_per_node: 4,
            python_processors_per_node: 0,
            start_timeout_ms: 180_000,
            lease_ms: 60_000,
        }
    }
}

impl Default for ClusterManagerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 4670,
            heartbeat_timeout_ms: 15_000,
            advertise_host: String::new(),
            http_port: 4690,
        }
    }
}

impl Default for NodeManagerConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 4671,
            heartbeat_interval_ms: 3_000,
            eggpair_executable: String::new(),
            python_executable: "python3".into(),
            python_spares: 0,
            python_preload: "fate.arch.dataframe, fate.arch.protocol.psi, fate.ml.ensemble, \
                             fate.ml.glm"
                .into(),
            http_port: 4691,
            cpus: 0,
        }
    }
}

impl ClusterManagerConfig {
    /// The address clients and node managers dial.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Settings of the roll-site (the federation gateway) and of its clients.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RollsiteConfig {
    /// Address to listen on (`eggroll.rollsite.host`).
    pub host: String,
    /// Plaintext port (`eggroll.rollsite.port`); 0 picks a free one.
    pub port: u16,
    /// Mutual-TLS port, open when `tls_cert` is set; 0 picks a free one.
    pub secure_port: u16,
    /// This party's id (`eggroll.rollsite.party.id`); required to serve.
    pub party_id: String,
    /// EggRoll route-table JSON (`eggroll.rollsite.route.table.path`); empty: no routes.
    pub route_table: PathBuf,
    /// How often the route table file is checked for changes, in milliseconds.
    pub route_reload_ms: u64,
    /// PEM certificate chain of this party (server and client identity).
    pub tls_cert: PathBuf,
    /// PEM private key of `tls_cert`.
    pub tls_key: PathBuf,
    /// PEM certificate of the CA whose certificates this party trusts.
    pub tls_ca: PathBuf,
    /// Retries of a failed push stream (`eggroll.rollsite.push.max.retry`).
    pub push_max_retry: u64,
    /// How many of those retries wait longer (`eggroll.rollsite.push.long.retry`).
    pub push_long_retry: u64,
    /// First retry wait in milliseconds; doubles per retry.
    pub push_retry_wait_ms: u64,
    /// Wait before each long retry, in milliseconds.
    pub push_long_retry_wait_ms: u64,
    /// Batches per push stream (`eggroll.rollsite.push.batches.per.stream`).
    pub push_batches_per_stream: u64,
    /// Push streams in flight per destination.
    pub push_streams_in_flight: u64,
    /// Bytes of data per packet.
    pub batch_body_bytes: u64,
    /// Largest gRPC message accepted or sent.
    pub max_message_bytes: u64,
    /// Largest object accepted.
    pub max_object_bytes: u64,
    /// A get fails when no data arrived for this long, in milliseconds.
    pub get_idle_timeout_ms: u64,
    /// A federation context sends a sign of life this often (milliseconds) to every party it
    /// exchanged with, while it lives; 0: none.
    pub heartbeat_interval_ms: u64,
    /// A get waiting on a party whose signs of life stopped this long ago (milliseconds; at
    /// least three of the party's own intervals) fails then, naming it, without waiting for
    /// `get_idle_timeout_ms`; 0: only the idle timeout.
    pub liveness_timeout_ms: u64,
    /// Durable receive buffer; empty: `<data_dir>/rollsite`.
    pub buffer_dir: PathBuf,
    /// Acknowledge a push only after its batches and markers are on disk (fsync): what was
    /// acknowledged then survives a crash of the machine, not only of the roll-site, at the
    /// cost of waiting for the disk.
    pub fsync: bool,
    /// A received transfer that no get took and that saw no data for this many hours is
    /// dropped (with a warning in the log); 0 keeps everything until taken.
    pub buffer_expiry_hours: u64,
    /// `host:port` of an exchange to hold a polling stream open to; empty: none.
    pub polling_exchange: String,
    /// Whether the polling stream uses TLS.
    pub polling_tls: bool,
    /// Polling streams our poller holds open at once, so calls run side by side (EggRoll's
    /// `eggroll.rollsite.polling.concurrency`).
    pub polling_concurrency: u64,
    /// As an exchange: end a polling stream that waited this many seconds for a call, so the
    /// poller opens a fresh one; keep it below the pollers' own give-up time (EggRoll's 300).
    pub polling_idle_s: u64,
    /// As a poller: give up on a stream that brought no call for this many seconds.
    pub polling_no_data_s: u64,
    /// Comma-separated client addresses or CIDR networks (`10.244.0.0/16`) allowed to pull
    /// and clear received data.
    pub local_clients: String,
    /// How long connecting to a next hop may take, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Distributed mode: the cluster manager (`host:port`) whose eggs receive the tables
    /// pushed to this party, on arrival; empty: they stay in the receive buffer until a get.
    pub cluster_manager: String,
    /// HTTP port of `/healthz`, `/readyz`, Prometheus `/metrics` and the status page `/`,
    /// on `host`; 0 picks a free one (printed on start). Serve it to the party only.
    pub http_port: u16,
}

impl Default for RollsiteConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 9370,
            secure_port: 9371,
            party_id: String::new(),
            route_table: PathBuf::new(),
            route_reload_ms: 1000,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            tls_ca: PathBuf::new(),
            push_max_retry: 3,
            push_long_retry: 2,
            push_retry_wait_ms: 500,
            push_long_retry_wait_ms: 10_000,
            push_batches_per_stream: 10,
            push_streams_in_flight: 4,
            batch_body_bytes: 4 << 20,
            max_message_bytes: 32 << 20,
            max_object_bytes: 4 << 30,
            get_idle_timeout_ms: 600_000,
            heartbeat_interval_ms: 5000,
            liveness_timeout_ms: 30_000,
            buffer_dir: PathBuf::new(),
            fsync: false,
            buffer_expiry_hours: 72,
            polling_exchange: String::new(),
            polling_tls: false,
            polling_concurrency: 16,
            polling_idle_s: 240,
            polling_no_data_s: 300,
            local_clients: "127.0.0.1,::1".into(),
            connect_timeout_ms: 5000,
            cluster_manager: String::new(),
            http_port: 9380,
        }
    }
}

impl EggrollConfig {
    /// Defaults, then `file` if given, then the process environment.
    pub fn load(file: Option<&Path>) -> Result<Self> {
        Self::load_with(file, |name| std::env::var(name).ok())
    }

    /// Like [`EggrollConfig::load`], reading overrides through `env`.
    pub fn load_with(file: Option<&Path>, env: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut tree = toml::Value::try_from(Self::default())
            .map_err(|e| CoreError::Config(format!("defaults do not serialize: {e}")))?;
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                CoreError::Config(format!("cannot read config file {}: {e}", path.display()))
            })?;
            let from_file: toml::Value = toml::from_str(&text).map_err(|e| {
                CoreError::Config(format!(
                    "config file {} is not valid TOML: {e}",
                    path.display()
                ))
            })?;
            merge(&mut tree, from_file);
        }
        apply_env(&mut tree, "EGGROLL", &env)?;
        let described = match file {
            Some(p) => format!("config file {}", p.display()),
            None => "config".to_string(),
        };
        tree.try_into()
            .map_err(|e| CoreError::Config(format!("{described}: {e}")))
    }

    /// Every environment variable that overrides a key, with the key's current value.
    pub fn env_keys(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Ok(tree) = toml::Value::try_from(self) {
            collect_leaves(&tree, "EGGROLL", &mut out);
        }
        out
    }
}

fn merge(base: &mut toml::Value, over: toml::Value) {
    match (base, over) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

fn apply_env(
    node: &mut toml::Value,
    prefix: &str,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<()> {
    let toml::Value::Table(table) = node else {
        return Ok(());
    };
    for (key, value) in table.iter_mut() {
        let name = format!("{prefix}_{}", key.to_uppercase());
        if value.is_table() {
            apply_env(value, &name, env)?;
            continue;
        }
        let Some(raw) = env(&name) else { continue };
        *value = match value {
            toml::Value::Integer(_) => {
                toml::Value::Integer(raw.trim().parse().map_err(|_| {
                    CoreError::Config(format!("{name}={raw:?} is not a whole number"))
                })?)
            }
            toml::Value::Boolean(_) => {
                toml::Value::Boolean(raw.trim().parse().map_err(|_| {
                    CoreError::Config(format!("{name}={raw:?} is not true or false"))
                })?)
            }
            _ => toml::Value::String(raw),
        };
    }
    Ok(())
}

fn collect_leaves(node: &toml::Value, prefix: &str, out: &mut Vec<(String, String)>) {
    if let toml::Value::Table(table) = node {
        for (key, value) in table {
            let name = format!("{prefix}_{}", key.to_uppercase());
            if value.is_table() {
                collect_leaves(value, &name, out);
            } else {
                out.push((name, value.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn defaults_file_then_env() {
        let none = |_: &str| None;
        let cfg = EggrollConfig::load_with(None, none).unwrap();
        assert_eq!(cfg.clustermanager.port, 4670);
        assert_eq!(cfg.rollsite.port, 9370);
        assert_eq!(cfg.session.processors_per_node, 4);

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("eggroll.toml");
        std::fs::write(
            &file,
            "data_dir = \"/srv/eggroll\"\n[storage]\nbatch_bytes = 1024\n",
        )
        .unwrap();
        let env: HashMap<&str, &str> = [
            ("EGGROLL_STORAGE_BATCH_BYTES", "2048"),
            ("EGGROLL_CLUSTERMANAGER_HOST", "cm.example"),
        ]
        .into();
        let cfg =
            EggrollConfig::load_with(Some(&file), |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/eggroll"));
        assert_eq!(cfg.storage.batch_bytes, 2048);
        assert_eq!(cfg.clustermanager.host, "cm.example");
        assert!(cfg
            .env_keys()
            .iter()
            .any(|(k, _)| k == "EGGROLL_STORAGE_BLOCK_CACHE_BYTES"));
    }

    #[test]
    fn bad_input_names_the_fault() {
        let env = |k: &str| (k == "EGGROLL_ROLLSITE_PORT").then(|| "ninety".to_string());
        let err = EggrollConfig::load_with(None, env).unwrap_err().to_string();
        assert!(err.contains("EGGROLL_ROLLSITE_PORT"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, "[storage]\nblock_cache = 1\n").unwrap();
        let err = EggrollConfig::load_with(Some(&file), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("block_cache"), "{err}");
        std::fs::write(&file, "data_dir = [").unwrap();
        let err = EggrollConfig::load_with(Some(&file), |_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not valid TOML"), "{err}");
        let missing = dir.path().join("missing.toml");
        assert!(EggrollConfig::load_with(Some(&missing), |_| None).is_err());
    }

    #[test]
    fn rollsite_keys_from_env() {
        let env: HashMap<&str, &str> = [
            ("EGGROLL_ROLLSITE_PARTY_ID", "10000"),
            ("EGGROLL_ROLLSITE_PUSH_MAX_RETRY", "5"),
            (
                "EGGROLL_ROLLSITE_ROUTE_TABLE",
                "/etc/eggroll/route_table.json",
            ),
        ]
        .into();
        let cfg = EggrollConfig::load_with(None, |k| env.get(k).map(|v| v.to_string())).unwrap();
        assert_eq!(cfg.rollsite.party_id, "10000");
        assert_eq!(cfg.rollsite.push_max_retry, 5);
        assert_eq!(cfg.rollsite.push_long_retry, 2);
        assert_eq!(
            cfg.rollsite.route_table,
            PathBuf::from("/etc/eggroll/route_table.json")
        );
    }
}

#[cfg(test)]
mod deploy_samples {
    use super::*;

    /// The samples under deploy/ load, so they cannot drift from the keys we read.
    #[test]
    fn every_sample_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                EggrollConfig::load_with(Some(&path), |_| None)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                seen += 1;
            }
        }
        assert!(
            seen >= 3,
            "expected the daemon samples in {}",
            dir.display()
        );
    }
}
