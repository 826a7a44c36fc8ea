//! Errors shared by every component.

use thiserror::Error;

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// What can go wrong in the shared pieces: config, codec, function lookup.
#[derive(Debug, Error)]
pub enum CoreError {
    /// A config file or override could not be read or parsed.
    #[error("config error: {0}")]
    Config(String),
    /// Bytes did not decode as the type the caller asked for.
    #[error("cannot decode {what} as `{type_name}`: {source}; check that the table was written with this type")]
    Decode {
        /// What was being decoded (key, value, parameters of a function).
        what: String,
        /// The Rust type asked for.
        type_name: &'static str,
        /// The codec's own complaint.
        source: postcard::Error,
    },
    /// A value could not be encoded.
    #[error("cannot encode `{type_name}`: {source}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// The codec's own complaint.
        source: postcard::Error,
    },
    /// No function of that name is linked into this process.
    #[error("no function named `{name}` is registered in this process ({known} functions are); link the crate that registers it into the egg-pair binary")]
    UnknownFunction {
        /// The name asked for.
        name: String,
        /// How many functions this process knows.
        known: usize,
    },
    /// A function exists under that name but implements another trait.
    #[error("function `{name}` is registered as a {registered} function, but this operation needs a {wanted} function")]
    WrongFunctionKind {
        /// The function's name.
        name: String,
        /// The trait it implements.
        registered: &'static str,
        /// The trait the operation needs.
        wanted: String,
    },
    /// A roll-site packet is malformed; says which field.
    #[error("bad packet: {0}")]
    BadPacket(String),
    /// Something exceeds a configured limit.
    #[error("too large: {0}")]
    TooLarge(String),
    /// A name, count or option given by the user is not acceptable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A user's function failed (raised, for a Python one: the text has its traceback).
    #[error("the user's function failed: {0}")]
    UserFunction(String),
    /// Another process could not be reached; says which and where.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A local file or memory could not be made, written or read; says which.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, and to what.
        what: String,
        /// The system's own complaint.
        source: std::io::Error,
    },
}
