//! The channels of bulk transfers: to other eggs and to roll-sites.

use eggroll_core::channel::endpoint;
use eggroll_core::transfer::CONNECTION_WINDOW;
use std::time::Duration;
use tonic::transport::Channel;
use tonic::Status;

/// A lazily connecting channel to `addr` ("host:port", a `what`) with the settings of bulk
/// transfers: no Nagle delay, keepalives, and HTTP/2 windows of `stream_window` per stream
/// and 32 MiB per connection, so one stream can fill a link.
pub fn bulk_channel(
    addr: &str,
    what: &str,
    connect_timeout: Duration,
    stream_window: u32,
) -> Result<Channel, Status> {
    let channel = endpoint(addr)
        .map_err(|e| Status::invalid_argument(format!("the {what} address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .http2_keep_alive_interval(Duration::from_secs(5))
        .keep_alive_timeout(Duration::from_secs(10))
        .initial_stream_window_size(stream_window)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .connect_lazy();
    Ok(channel)
}
