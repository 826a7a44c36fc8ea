//! The roll-pair client API: a [`RollPairContext`] for a session and typed [`RollPair`]
//! tables whose every operation runs as one task per partition.

pub mod cluster;
pub mod context;
pub mod error;
pub mod table;

pub use cluster::SessionOptions;
pub use context::{Options, RollPairContext, Visit};
pub use error::{Error, Result};
pub use table::RollPair;
