//! How operator commands find and call a cluster manager.

use clap::Args;
use eggroll_core::config::EggrollConfig;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use std::time::Duration;
use tonic::transport::Channel;

/// Where the cluster manager is.
#[derive(Args, Clone)]
pub struct ClusterFlags {
    /// The cluster manager's address ("host:port"); default: the config's clustermanager
    /// host and port.
    #[arg(long, env = "EGGROLL_CLUSTER_MANAGER", global = true)]
    pub cluster_manager: Option<String>,
}

impl ClusterFlags {
    /// The address to dial.
    pub fn address(&self, config: &EggrollConfig) -> String {
        self.cluster_manager
            .clone()
            .unwrap_or_else(|| config.clustermanager.address())
    }
}

/// A runtime for one command.
pub fn runtime() -> Result<tokio::runtime::Runtime, Box<dyn std::error::Error>> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// Connects to the cluster manager, with a message that says what to check.
pub async fn connect(
    address: &str,
) -> Result<ClusterManagerClient<Channel>, Box<dyn std::error::Error>> {
    let channel = eggroll_core::channel::endpoint(address)
        .map_err(|e| format!("bad cluster manager address: {e}"))?
        .timeout(Duration::from_secs(60))
        .connect()
        .await
        .map_err(|e| {
            format!("cannot reach the cluster manager at {address}: {e}; is `eggroll clustermanager` running there? (set --cluster-manager or EGGROLL_CLUSTER_MANAGER)")
        })?;
    Ok(ClusterManagerClient::new(channel))
}

/// A gRPC error as the user should read it.
pub fn status(s: tonic::Status) -> Box<dyn std::error::Error> {
    s.message().to_string().into()
}

/// "3.2 GiB", "512 MiB".
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// "12:03:04 UTC" style age: seconds, minutes, hours or days ago.
pub fn ago(ms_since_epoch: u64) -> String {
    let s = eggroll_core::clock::epoch_millis().saturating_sub(ms_since_epoch) / 1000;
    match s {
        0..=119 => format!("{s}s ago"),
        120..=7199 => format!("{}m ago", s / 60),
        7200..=172_799 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}
