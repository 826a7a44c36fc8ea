//! The test kit of eggroll-rs (dev-only): what the end-to-end tests in `tests/tests/` share.
//!
//! - [`cluster`]: a real cluster of daemons on loopback (the binary's own launcher,
//!   `eggroll::local_cluster`), fresh or shared by the tests of one test binary;
//! - [`certs`]: a CA and party certificates for mutual TLS;
//! - [`rollsites`]: two roll-sites on free ports that route to each other;
//! - [`rollsite_processes`]: roll-sites as `eggroll rollsite` processes, to kill and restart;
//! - [`ops`]: daemons' HTTP ports (health, metrics, status pages), Prometheus and Chromium;
//! - [`functions`]: the suite's user functions, which the egg program `eggroll-suite-egg` links.

pub mod certs;
pub mod cluster;
pub mod functions;
pub mod ops;
pub mod rollsite_processes;
pub mod rollsites;

/// A port of 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port on 127.0.0.1")
}
