//! Helpers shared by the roll-site integration tests: real roll-sites on 127.0.0.1:0.
#![allow(dead_code)]

use eggroll_core::config::EggrollConfig;
use eggroll_federation::{Federation, FederationOptions, Party};
use eggroll_rollsite::RollSite;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A roll-site config for tests: free ports, fast retries, its own data dir.
pub fn config(dir: &Path, party: &str) -> EggrollConfig {
    let mut c = EggrollConfig {
        data_dir: dir.join(format!("party-{party}")),
        ..Default::default()
    };
    let rs = &mut c.rollsite;
    rs.party_id = party.into();
    rs.port = 0;
    rs.secure_port = 0;
    rs.route_table = dir.join(format!("routes-{party}.json"));
    rs.route_reload_ms = 100;
    rs.push_retry_wait_ms = 50;
    rs.push_long_retry_wait_ms = 200;
    rs.get_idle_timeout_ms = 30_000;
    rs.connect_timeout_ms = 2000;
    if !rs.route_table.exists() {
        std::fs::write(&rs.route_table, r#"{"route_table": {}}"#).unwrap();
    }
    c
}

/// The configs of guest 9999 and host 10000, the host's port fixed now: a route can name it
/// before the host starts, and it is the same after a restart.
pub fn host_on_a_fixed_port(dir: &Path) -> (EggrollConfig, EggrollConfig) {
    let mut host = config(dir, "10000");
    host.rollsite.port = free_port();
    (config(dir, "9999"), host)
}

/// Starts a roll-site with `config`.
pub async fn start(config: &EggrollConfig) -> RollSite {
    eggroll_rollsite::start(config).await.unwrap()
}

/// A route-table entry to a roll-site on 127.0.0.1.
pub fn to(addr: SocketAddr) -> Value {
    json!({"default": [{"ip": "127.0.0.1", "port": addr.port()}]})
}

/// Writes a route table and makes `site` load it now (the watcher would, a moment later).
pub fn set_routes(site: &RollSite, config: &EggrollConfig, table: Value) {
    let text = serde_json::to_string_pretty(&json!({
        "route_table": table,
        "permission": {"default_allow": true}
    }))
    .unwrap();
    std::fs::write(&config.rollsite.route_table, text).unwrap();
    site.site().routes.reload_if_changed();
    assert!(
        site.site().routes.last_error().is_none(),
        "{:?}",
        site.site().routes.last_error()
    );
}

/// Fast-failing federation options for tests.
pub fn options() -> FederationOptions {
    FederationOptions {
        retry_wait: Duration::from_millis(50),
        long_retry_wait: Duration::from_millis(200),
        get_idle_timeout: Duration::from_secs(30),
        ..FederationOptions::default()
    }
}

/// A federation of `party` in `role` through the roll-site `site`.
pub fn federation(site: &RollSite, session: &str, role: &str, party: &str) -> Federation {
    federation_with(site, session, role, party, options())
}

/// Same, with options.
pub fn federation_with(
    site: &RollSite,
    session: &str,
    role: &str,
    party: &str,
    opts: FederationOptions,
) -> Federation {
    Federation::connect(
        &site.addr().to_string(),
        session,
        Party::new(role, party),
        opts,
    )
    .unwrap()
}

/// Bytes that differ everywhere (a cheap xorshift stream).
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = seed | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        let n = (len - out.len()).min(8);
        out.extend_from_slice(&b[..n]);
    }
    out
}

pub use eggroll_tests::free_port;

/// A scratch directory path.
pub fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// The data dir of a party's session.
pub fn data(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("session-{name}"))
}

/// The key of a transfer `name` of job `job` from guest 9999 to arbiter 8888 (the polling
/// party of the exchange tests).
pub fn key_to_8888(name: &str) -> eggroll_rollsite::packet::TransferKey {
    eggroll_rollsite::packet::TransferKey {
        session: "job".into(),
        name: name.into(),
        tag: "0".into(),
        src_role: "guest".into(),
        src_party: "9999".into(),
        dst_role: "arbiter".into(),
        dst_party: "8888".into(),
    }
}
