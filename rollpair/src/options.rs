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

impl FateTypes {
    /// The codes as a transfer header carries them: `key,value,partitioner`.
    pub fn to_header(self) -> String {
        format!(
            "{},{},{}",
            self.key_serdes_type, self.value_serdes_type, self.partitioner_type
        )
    }

    /// The codes of a transfer header; says what is wrong with a malformed one.
    pub fn from_header(s: &str) -> std::result::Result<Self, String> {
        let codes: Vec<i32> = s
            .split(',')
            .map(|c| c.trim().parse::<i32>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| format!("bad FATE type codes {s:?}: {e}"))?;
        match codes[..] {
            [key_serdes_type, value_serdes_type, partitioner_type] => Ok(Self {
                key_serdes_type,
                value_serdes_type,
                partitioner_type,
            }),
            _ => Err(format!(
                "bad FATE type codes {s:?}: three (key, value, partitioner) expected"
            )),
        }
    }
}

/// How a new store's pairs are encoded, as its metadata records it.
pub(crate) struct StoreTags {
    pub(crate) serdes: &'static str,
    pub(crate) key_type: &'static str,
    pub(crate) value_type: &'static str,
    pub(crate) fate: FateTypes,
}

#[cfg(test)]
mod tests {
    use super::FateTypes;

    #[test]
    fn fate_types_round_trip_through_a_header_and_bad_ones_are_named() {
        let t = FateTypes {
            key_serdes_type: 1,
            value_serdes_type: 0,
            partitioner_type: 2,
        };
        assert_eq!(FateTypes::from_header(&t.to_header()), Ok(t));
        for bad in ["", "1,2", "1,2,3,4", "a,b,c"] {
            let e = FateTypes::from_header(bad).unwrap_err();
            assert!(e.contains("FATE type codes"), "{e}");
        }
    }
}
