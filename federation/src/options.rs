//! How a federation sends and waits.

use eggroll_core::config::RollsiteConfig;
use eggroll_core::transfer::RetryPolicy;
use std::time::Duration;

/// How a [`crate::Federation`] sends and waits.
#[derive(Clone, Debug)]
pub struct FederationOptions {
    /// Bytes of data per packet.
    pub batch_body_bytes: usize,
    /// Packets per push stream.
    pub batches_per_stream: usize,
    /// Push streams in flight per call.
    pub streams_in_flight: usize,
    /// Retries of a call that failed with UNAVAILABLE or a broken connection.
    pub max_retry: u32,
    /// How many of those wait `long_retry_wait`.
    pub long_retry: u32,
    /// First retry wait; doubles per retry.
    pub retry_wait: Duration,
    /// Wait before a long retry.
    pub long_retry_wait: Duration,
    /// A get fails when no data arrived for this long.
    pub get_idle_timeout: Duration,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// Largest object a get accepts.
    pub max_object_bytes: u64,
    /// How long connecting to the roll-site may take.
    pub connect_timeout: Duration,
    /// How often the context tells the parties it exchanged with that it lives; zero: never.
    pub heartbeat_interval: Duration,
}

impl FederationOptions {
    /// The options a roll-site config implies.
    pub fn from_config(c: &RollsiteConfig) -> Self {
        Self {
            batch_body_bytes: c.batch_body_bytes.max(1) as usize,
            batches_per_stream: c.push_batches_per_stream.max(1) as usize,
            streams_in_flight: c.push_streams_in_flight.max(1) as usize,
            max_retry: c.push_max_retry as u32,
            long_retry: c.push_long_retry as u32,
            retry_wait: Duration::from_millis(c.push_retry_wait_ms),
            long_retry_wait: Duration::from_millis(c.push_long_retry_wait_ms),
            get_idle_timeout: Duration::from_millis(c.get_idle_timeout_ms),
            max_message_bytes: c.max_message_bytes as usize,
            max_object_bytes: c.max_object_bytes,
            connect_timeout: Duration::from_millis(c.connect_timeout_ms),
            heartbeat_interval: Duration::from_millis(c.heartbeat_interval_ms),
        }
    }

    /// How a call that failed with UNAVAILABLE or a broken connection is retried.
    pub fn retry(&self) -> RetryPolicy {
        RetryPolicy {
            max_retry: self.max_retry,
            long_retry: self.long_retry,
            retry_wait: self.retry_wait,
            long_retry_wait: self.long_retry_wait,
        }
    }
}

impl Default for FederationOptions {
    fn default() -> Self {
        Self::from_config(&RollsiteConfig::default())
    }
}
