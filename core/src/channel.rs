//! gRPC channels to other eggroll-rs processes, built one way.
//!
//! Every client (to a cluster manager, a node manager, an egg, a roll-site) starts from
//! [`endpoint`]: the address checked, Nagle off (small requests must not wait for an ACK), a
//! bounded connect. Callers add what is theirs (a request timeout, window sizes) and connect
//! eagerly or lazily.

use crate::error::{CoreError, Result};
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// How long a connect may take before it fails.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The endpoint of `address` (`host:port`, with or without `http://`), with the shared settings.
pub fn endpoint(address: &str) -> Result<Endpoint> {
    let address = address.trim();
    let uri = if address.starts_with("http://") || address.starts_with("https://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    Ok(Endpoint::from_shared(uri)
        .map_err(|e| {
            CoreError::InvalidArgument(format!("{address:?} is not a valid host:port address: {e}"))
        })?
        .tcp_nodelay(true)
        .connect_timeout(CONNECT_TIMEOUT))
}

/// Connects to the `what` (e.g. "cluster manager") at `address`, naming both on failure.
pub async fn connect(address: &str, what: &str) -> Result<Channel> {
    endpoint(address)?
        .connect()
        .await
        .map_err(|e| CoreError::Unavailable(format!("cannot reach the {what} at {address}: {e}")))
}

/// The connections a server accepts on `listener`, with Nagle's algorithm off: tonic's
/// builder sets it only on listeners it binds itself, and with it on, a small reply waits for
/// the peer's delayed ACK (about 40 ms) before it leaves.
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_with_or_without_a_scheme() {
        assert_eq!(
            endpoint("127.0.0.1:4670").unwrap().uri().to_string(),
            "http://127.0.0.1:4670/"
        );
        assert_eq!(
            endpoint("http://h:1").unwrap().uri().to_string(),
            "http://h:1/"
        );
        let err = endpoint("not an address").unwrap_err().to_string();
        assert!(err.contains("not an address"), "{err}");
    }

    #[tokio::test]
    async fn a_refused_connect_names_what_and_where() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let err = connect(&addr, "cluster manager")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("cluster manager") && err.contains(&addr),
            "{err}"
        );
    }
}
