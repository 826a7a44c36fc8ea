//! Who sent a request, as the server saw it.

use std::net::SocketAddr;

/// Who sent a request, as the server saw it.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The remote address, if known.
    pub addr: Option<SocketAddr>,
    /// Whether it came over the mutual-TLS port.
    pub secure: bool,
    /// Roll-sites it already passed.
    pub hops: u32,
    /// This party's own code calling in-process.
    pub trusted: bool,
}
