//! What every eggroll-rs component shares: configuration, errors, the key/value codec,
//! the partitioner and the registry of user functions that travel to the eggs.

pub mod channel;
pub mod clock;
pub mod codec;
pub mod config;
pub mod error;
pub mod functions;
pub mod names;
pub mod ops_http;
pub mod pairs;
pub mod partitioner;
pub mod placement;
pub mod processor;
pub mod sync;
pub mod transfer;

pub use error::{CoreError, Result};
pub use functions::function;

// The paths that #[function] generates (`::eggroll_core::...`) also work in this crate.
extern crate self as eggroll_core;
