//! Two roll-sites on free ports of 127.0.0.1 that route to each other: guest 9999 and host
//! 10000, configured as the binary's two-party demo configures them.

use eggroll::two_parties::{rollsite_config, route};
use eggroll_core::config::EggrollConfig;
use eggroll_federation::Party;
use eggroll_rollsite::RollSite;
use std::path::Path;

/// The guest of the pair.
pub fn guest() -> Party {
    Party::new("guest", "9999")
}

/// The host of the pair.
pub fn host() -> Party {
    Party::new("host", "10000")
}

/// A started roll-site and its config.
pub struct Site {
    /// The roll-site.
    pub site: RollSite,
    /// What it was started with (its dirs, its route table).
    pub config: EggrollConfig,
}

impl Site {
    /// Its plaintext address, "127.0.0.1:port".
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.site.addr().port())
    }
}

/// The guest's and the host's roll-sites under `dir`; the host's writes the tables it
/// receives into the eggs of the cluster manager `host_cluster` when given.
pub async fn pair(dir: &Path, host_cluster: Option<&str>) -> (Site, Site) {
    let mut sites = Vec::new();
    for party in ["9999", "10000"] {
        std::fs::create_dir_all(dir.join(party)).expect("roll-site dir");
        let mut config = rollsite_config(dir, party, None);
        if party == "10000" {
            config.rollsite.cluster_manager = host_cluster.unwrap_or_default().into();
        }
        std::fs::write(&config.rollsite.route_table, r#"{"route_table": {}}"#)
            .expect("write a route table");
        let site = eggroll_rollsite::start(&config)
            .await
            .unwrap_or_else(|e| panic!("roll-site {party} did not start: {e}"));
        sites.push(Site { site, config });
    }
    let host = sites.pop().expect("two sites");
    let guest = sites.pop().expect("two sites");
    route(&guest.site, &guest.config, "10000", &host.site).expect("route guest to host");
    route(&host.site, &host.config, "9999", &guest.site).expect("route host to guest");
    (guest, host)
}

/// The key of the transfer `name` (tag "0") of `session` from the guest to the host.
pub fn key(session: &str, name: &str) -> eggroll_core::transfer::TransferKey {
    eggroll_core::transfer::TransferKey {
        session: session.into(),
        name: name.into(),
        tag: "0".into(),
        src_role: "guest".into(),
        src_party: "9999".into(),
        dst_role: "host".into(),
        dst_party: "10000".into(),
    }
}

/// The runtime federation calls of a test run on (channels connect lazily on it: enter it).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Stops both roll-sites of a [`pair`].
pub async fn shutdown(a: Site, b: Site) {
    a.site.shutdown().await;
    b.site.shutdown().await;
}
