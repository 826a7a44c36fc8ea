//! The algorithm-facing federation client of eggroll-rs: `remote` / `get` of objects and
//! tables between parties, through the party's own roll-site.
//!
//! Objects are cut into packets of `batch_body_bytes`; tables travel partition by partition
//! as batches of `(key, value)` pairs (the one pair codec, `eggroll_core::pairs`), each
//! partition's last packet marked `finish`, pushed by the eggs' table pusher
//! (`eggroll_eggpair::push`). Packets go in streams of `batches_per_stream`, several streams
//! in flight; a stream that fails with UNAVAILABLE is sent again after a backoff (the
//! receiver stores each batch under its sequence number, so a stream sent twice is stored
//! once).
//!
//! Algorithm code uses [`BlockingFederation`]; the async [`Federation`] is underneath. The
//! roll-site (`eggroll-rollsite`) depends on this crate, never the reverse: a roll-site in
//! the same process is reached through the [`LocalRollsite`] trait, which it implements.

mod assembly;
pub mod blocking;
pub mod client;
pub mod error;
mod heartbeat;
pub mod link;
mod objects;
pub mod options;
pub mod party;
pub mod received;
pub mod tables_receive;
mod tables_send;

pub use blocking::BlockingFederation;
pub use client::Federation;
pub use error::{Error, Result};
pub use link::LocalRollsite;
pub use options::FederationOptions;
pub use party::Party;
pub use received::Received;
pub use tables_receive::write_batch;
