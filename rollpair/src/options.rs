//! How tables and sessions are made: [`Options`] and [`SessionOptions`].

use eggroll_core::partitioner::Partitioner;
use eggroll_proto::meta::StoreType;

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
    /// How its keys are placed in its partitions; default: mmh3 of the encoded key.
    pub partitioner: Partitioner,
}

impl Options {
    /// An in-memory table of `n` partitions.
    pub fn partitions(n: u32) -> Self {
        Self {
            partitions: n,
            namespace: None,
            name: None,
            store_type: StoreType::InMemory,
            partitioner: Partitioner::Mmh3,
        }
    }

    /// A persistent table `namespace/name` of `n` partitions.
    pub fn persistent(namespace: &str, name: &str, n: u32) -> Self {
        Self {
            partitions: n,
            namespace: Some(namespace.into()),
            name: Some(name.into()),
            store_type: StoreType::PERSISTENT,
            partitioner: Partitioner::Mmh3,
        }
    }
}

impl Options {
    /// The same table, its keys placed by `partitioner`.
    pub fn with_partitioner(mut self, partitioner: Partitioner) -> Self {
        self.partitioner = partitioner;
        self
    }
}

/// How a session on a cluster is started.
#[derive(Clone, Debug, Default)]
pub struct SessionOptions {
    /// The session id; default: the cluster manager picks one.
    pub session_id: Option<String>,
    /// A name shown in listings.
    pub name: String,
    /// Eggs per node; 0: the cluster manager's default.
    pub processors_per_node: u32,
    /// How long the session may take to start, in ms; 0: the cluster manager's default.
    pub start_timeout_ms: u64,
    /// The session ends when this client stops renewing it for this long, in ms; 0: default.
    pub lease_ms: u64,
    /// The eggs' program (`eggroll_core::processor`); empty: Rust eggs.
    pub processor_type: String,
}

/// FATE's type codes of a byte table: its key and value serdes and its partitioner.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FateTypes {
    /// FATE's `key_serdes_type`.
    pub key_serdes_type: i32,
    /// FATE's `value_serdes_type`.
    pub value_serdes_type: i32,
    /// FATE's `partitioner_type` (0 and 2: mmh3; 1: integer).
    pub partitioner_type: i32,
}

/// How a new store's pairs are encoded, as its metadata records it.
pub(crate) struct StoreTags {
    pub(crate) serdes: &'static str,
    pub(crate) key_type: &'static str,
    pub(crate) value_type: &'static str,
    pub(crate) fate: FateTypes,
}
