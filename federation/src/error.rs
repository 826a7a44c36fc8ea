//! Errors of the federation client.

use eggroll_core::transfer::HopFailed;
use thiserror::Error;
use tonic::{Code, Status};

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a federation call can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// A setting is missing or wrong.
    #[error("federation config: {0}")]
    Config(String),
    /// What the roll-site sent is malformed; says which field.
    #[error("bad packet: {0}")]
    BadPacket(String),
    /// Something exceeds a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A hop failed (the local roll-site, or one behind it).
    #[error(transparent)]
    Hop(#[from] HopFailed),
    /// Table access failed.
    #[error(transparent)]
    RollPair(#[from] eggroll_rollpair::Error),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Core(eggroll_core::CoreError),
    /// A worker task failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// Wraps a failure of a hop, with the causes of a transport failure spelled out.
    pub fn hop(hop: impl Into<String>, status: Status) -> Self {
        Error::Hop(HopFailed::new(hop, status))
    }

    /// The gRPC code of the error.
    pub fn code(&self) -> Code {
        match self {
            Error::Config(_) => Code::FailedPrecondition,
            Error::BadPacket(_) | Error::Core(_) => Code::InvalidArgument,
            Error::TooLarge(_) => Code::ResourceExhausted,
            Error::Hop(h) => h.code(),
            Error::RollPair(_) | Error::Internal(_) => Code::Internal,
        }
    }

    /// Whether a retry may succeed (the roll-site or the link was unavailable).
    pub fn is_unavailable(&self) -> bool {
        self.code() == Code::Unavailable
    }
}

impl From<eggroll_core::CoreError> for Error {
    fn from(e: eggroll_core::CoreError) -> Self {
        use eggroll_core::CoreError;
        // Packet faults keep their own kinds: callers match on them.
        match e {
            CoreError::BadPacket(m) => Error::BadPacket(m),
            CoreError::TooLarge(m) => Error::TooLarge(m),
            other => Error::Core(other),
        }
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("a worker task failed: {e}"))
    }
}
