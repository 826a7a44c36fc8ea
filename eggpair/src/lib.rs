//! Partition storage (RocksDB and in-memory) and the task executor of an egg.
//!
//! The rest of the system never names RocksDB: it sees [`store::PartitionStore`] and the
//! [`catalog::Stores`] of a process.

pub mod baseline;
pub mod catalog;
pub mod channel;
pub mod compact_map;
pub mod counts;
pub mod error;
pub mod executor;
pub mod kv;
pub mod memory;
pub mod memory_budget;
pub mod memory_tables;
pub mod metrics;
pub mod open_partitions;
pub mod process;
pub mod push;
pub mod rocks;
pub mod service;
pub mod sorted_runs;
pub mod store;
pub mod table_meta;

pub use catalog::Stores;
pub use error::{EggError, Result};
pub use executor::{Executor, ShuffleSink};
pub use kv::KvStore;
pub use store::{BulkLoad, KeyRange, Pair, PartitionStore};
