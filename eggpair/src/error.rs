//! Errors of partition storage and task execution.

use eggroll_core::CoreError;
use std::path::PathBuf;
use thiserror::Error;

/// Result with [`EggError`].
pub type Result<T, E = EggError> = std::result::Result<T, E>;

/// What can go wrong in an egg.
#[derive(Debug, Error)]
pub enum EggError {
    /// Config, codec or function lookup.
    #[error(transparent)]
    Core(#[from] CoreError),
    /// RocksDB refused an operation on a partition.
    #[error("RocksDB error on partition at {path}: {source}")]
    Rocks {
        /// The partition directory.
        path: PathBuf,
        /// RocksDB's complaint.
        source: rocksdb::Error,
    },
    /// A partition directory could not be opened as RocksDB (corrupt or not a DB).
    #[error("cannot open partition at {path} as RocksDB: {source}; the directory is damaged or not a partition: restore it from a backup, or destroy the table")]
    Corrupt {
        /// The partition directory.
        path: PathBuf,
        /// RocksDB's complaint.
        source: rocksdb::Error,
    },
    /// Another process has the partition open.
    #[error("partition at {path} is open in another process (an egg of another session on this node, or a standalone program on this data dir){}; stop that session or program, then retry", if waited.is_zero() { String::new() } else { format!(" and was not released within {} s", waited.as_secs()) })]
    Locked {
        /// The partition directory.
        path: PathBuf,
        /// How long this process waited for it.
        waited: std::time::Duration,
    },
    /// A file operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS's complaint.
        source: std::io::Error,
    },
    /// The table does not exist.
    #[error("table {namespace}/{name} ({store_type}) does not exist; create it with parallelize or put_all first, or check the name with `eggroll table ls`")]
    NoSuchTable {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
        /// The store type looked in.
        store_type: String,
    },
    /// A persistent table of that name is already there.
    #[error("table {namespace}/{name} already exists; load it, pick another name, or destroy it first (`cleanup`)")]
    TableExists {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A table's metadata file could not be read.
    #[error("metadata of table at {path} is unreadable: {reason}")]
    BadMeta {
        /// The metadata file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A task that cannot run as given.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// A task failed on a partition.
    #[error("job {job} failed on partition {partition}: {source}")]
    Task {
        /// The job id.
        job: String,
        /// The partition.
        partition: u32,
        /// The failure.
        source: Box<EggError>,
    },
}

impl EggError {
    /// Wraps an I/O error with what was being done to which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| EggError::Io {
            action,
            path,
            source,
        }
    }
}
