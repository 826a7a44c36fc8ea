//! Errors of the roll-site, and how each maps to a gRPC status.

pub use eggroll_core::transfer::HopFailed;
use thiserror::Error;
use tonic::{Code, Status};

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a roll-site call can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// A setting is missing or wrong.
    #[error("roll-site config: {0}")]
    Config(String),
    /// The route table file cannot be used.
    #[error("route table {path}: {reason}")]
    RouteTable {
        /// The file.
        path: String,
        /// What is wrong, with the line at fault when there is one.
        reason: String,
    },
    /// No route leads to a party.
    #[error("no route to party {party} (role {role}) in the route table {table}: add an entry for it or a `default` entry")]
    NoRoute {
        /// Destination party.
        party: String,
        /// Destination role.
        role: String,
        /// Which table (its path) was searched.
        table: String,
    },
    /// A packet is malformed; says which field.
    #[error("bad packet: {0}")]
    BadPacket(String),
    /// Something exceeds a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// The caller may not do this.
    #[error("refused: {0}")]
    Refused(String),
    /// A get saw no data for its idle timeout.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The party a get waits for gave up on the session and said why.
    #[error("{0}")]
    Aborted(String),
    /// A next hop failed.
    #[error(transparent)]
    Hop(#[from] HopFailed),
    /// The receive buffer's storage failed.
    #[error("receive buffer: {0}")]
    Storage(#[from] eggroll_eggpair::EggError),
    /// Table access failed.
    #[error(transparent)]
    RollPair(#[from] eggroll_rollpair::Error),
    /// Encoding or decoding failed.
    #[error(transparent)]
    Core(eggroll_core::CoreError),
    /// TLS material cannot be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The roll-site is shutting down or a worker died.
    #[error("internal: {0}")]
    Internal(String),
}

impl Error {
    /// The gRPC code of the error.
    pub fn code(&self) -> Code {
        match self {
            Error::Config(_) | Error::RouteTable { .. } | Error::Tls(_) => Code::FailedPrecondition,
            Error::NoRoute { .. } => Code::NotFound,
            Error::BadPacket(_) | Error::Core(_) => Code::InvalidArgument,
            Error::TooLarge(_) => Code::ResourceExhausted,
            Error::Refused(_) => Code::PermissionDenied,
            Error::Timeout(_) => Code::DeadlineExceeded,
            Error::Aborted(_) => Code::Aborted,
            Error::Hop(h) => h.code(),
            Error::Storage(_) | Error::RollPair(_) | Error::Io { .. } | Error::Internal(_) => {
                Code::Internal
            }
        }
    }

    /// Wraps a failure of a hop.
    pub fn hop(hop: impl Into<String>, status: Status) -> Self {
        Error::Hop(HopFailed::new(hop, status))
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        Status::new(e.code(), e.to_string())
    }
}

impl From<eggroll_core::CoreError> for Error {
    fn from(e: eggroll_core::CoreError) -> Self {
        // The federation client sorts packet faults into their own kinds; so does this.
        eggroll_federation::Error::from(e).into()
    }
}

impl From<tokio::task::JoinError> for Error {
    fn from(e: tokio::task::JoinError) -> Self {
        Error::Internal(format!("a worker task failed: {e}"))
    }
}

impl From<eggroll_federation::Error> for Error {
    fn from(e: eggroll_federation::Error) -> Self {
        use eggroll_federation::Error as F;
        // Packet faults keep their own kinds: senders are told which field is wrong.
        match e {
            F::BadPacket(m) => Error::BadPacket(m),
            F::TooLarge(m) => Error::TooLarge(m),
            F::Hop(h) => Error::Hop(h),
            F::RollPair(e) => Error::RollPair(e),
            F::Core(e) => Error::Core(e),
            other => Error::Internal(other.to_string()),
        }
    }
}
