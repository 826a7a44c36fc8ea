//! Errors of the cluster manager, and how they reach a gRPC caller.

use thiserror::Error;
use tonic::Status;

/// Result with [`CmError`].
pub type Result<T, E = CmError> = std::result::Result<T, E>;

/// What can go wrong in the cluster manager.
#[derive(Debug, Error)]
pub enum CmError {
    /// Storage of the metadata.
    #[error("metadata storage: {0}")]
    Storage(#[from] eggroll_eggpair::EggError),
    /// Names, config.
    #[error(transparent)]
    Core(#[from] eggroll_core::CoreError),
    /// A stored record does not decode.
    #[error("metadata record {key} is unreadable: {reason}")]
    Corrupt {
        /// The record's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// No such session.
    #[error("session {0} does not exist; `eggroll session list` shows the sessions there are")]
    NoSuchSession(String),
    /// No such store.
    #[error("table {namespace}/{name} does not exist on this cluster; `eggroll table ls` lists the tables there are")]
    NoSuchStore {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// The store exists.
    #[error(
        "table {namespace}/{name} already exists; load it, pick another name, or destroy it first"
    )]
    StoreExists {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A request that cannot be served as given.
    #[error("{0}")]
    Invalid(String),
    /// The cluster cannot serve the request now (no live nodes, ...).
    #[error("{0}")]
    Unavailable(String),
    /// The session is not in a state that allows the request.
    #[error("{0}")]
    State(String),
    /// A blocking task failed.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<CmError> for Status {
    fn from(e: CmError) -> Self {
        let msg = format!("cluster manager: {e}");
        match e {
            CmError::NoSuchSession(_) | CmError::NoSuchStore { .. } => Status::not_found(msg),
            CmError::StoreExists { .. } => Status::already_exists(msg),
            CmError::Invalid(_) | CmError::Core(_) => Status::invalid_argument(msg),
            CmError::Unavailable(_) => Status::unavailable(msg),
            CmError::State(_) => Status::failed_precondition(msg),
            _ => Status::internal(msg),
        }
    }
}
