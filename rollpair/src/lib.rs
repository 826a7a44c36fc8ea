//! The roll-pair client API: a [`RollPairContext`] for a session and typed [`RollPair`]
//! tables whose every operation runs as one task per partition.
//!
//! Byte tables ([`ByteTable`]) hold the caller's own bytes, for clients such as FATE's that
//! serialize for themselves.
//!
//! Where the tasks run is a backend (the `backend` trait): this process in standalone mode
//! (`local`), or a cluster session's eggs (`cluster`). Pairs are written through one batch
//! writer (`writer`).

mod backend;
pub mod byte_table;
mod cluster;
pub mod context;
pub mod error;
mod idle_driver;
mod local;
pub mod options;
pub mod table;
mod writer;

pub use backend::Visit;
pub use byte_table::ByteTable;
pub use context::RollPairContext;
pub use error::{Error, Result};
pub use options::{FateTypes, Options, SessionOptions};
pub use table::RollPair;
