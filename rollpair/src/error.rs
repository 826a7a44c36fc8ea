//! Errors of the roll-pair API.

use thiserror::Error;

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a roll-pair call can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// Codec, config or function lookup.
    #[error(transparent)]
    Core(#[from] eggroll_core::CoreError),
    /// Storage or task execution.
    #[error(transparent)]
    Egg(#[from] eggroll_eggpair::EggError),
    /// A cluster manager or egg refused or failed a request; the message says which and why.
    #[error("{0}")]
    Cluster(String),
    /// The thread pool could not start.
    #[error("cannot start the task thread pool: {0}")]
    Pool(String),
}
