//! `eggroll ping <party>`, the real binary, against roll-sites on 127.0.0.1: a working route
//! through an exchange (one link over mutual TLS), a dead peer, a silent one, a TLS route to a
//! certificate from a CA the guest does not trust, an unknown party, and no local roll-site.

use eggroll::two_parties::{rollsite_config, TlsFiles};
use eggroll_core::config::EggrollConfig;
use eggroll_rollsite::RollSite;
use eggroll_tests::certs::Ca;
use eggroll_tests::cluster::binary;
use eggroll_tests::free_port;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

struct Site {
    site: RollSite,
    config: EggrollConfig,
}

impl Site {
    fn addr(&self) -> String {
        self.site.addr().to_string()
    }

    fn secure(&self) -> SocketAddr {
        self.site.secure_addr().expect("a TLS port")
    }

    /// Writes its route table and has it read now.
    fn routes(&self, table: Value) {
        let text = json!({"route_table": table, "permission": {"default_allow": true}});
        std::fs::write(&self.config.rollsite.route_table, text.to_string()).unwrap();
        self.site.site().routes.reload_if_changed();
        assert_eq!(self.site.site().routes.last_error(), None);
    }
}

fn start(rt: &tokio::runtime::Runtime, dir: &Path, party: &str, tls: Option<&TlsFiles>) -> Site {
    std::fs::create_dir_all(dir.join(party)).unwrap();
    let config = rollsite_config(dir, party, tls);
    std::fs::write(&config.rollsite.route_table, r#"{"route_table": {}}"#).unwrap();
    let site = rt.block_on(eggroll_rollsite::start(&config)).unwrap();
    Site { site, config }
}

fn plain(port: u16) -> Value {
    json!({"default": [{"ip": "127.0.0.1", "port": port}]})
}

fn tls(addr: SocketAddr) -> Value {
    json!({"default": [{"ip": "127.0.0.1", "port": addr.port(), "use_ssl": true}]})
}

/// What `eggroll ping` printed: success, stdout with runs of spaces made one, stderr.
fn ping(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(binary())
        .arg("ping")
        .args(args)
        .env_remove("EGGROLL_CONFIG")
        .envs(env.iter().copied())
        .output()
        .expect("run eggroll ping");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let squeezed: Vec<String> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    (
        out.status.success(),
        squeezed.join("\n"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The row of hop `n`: asserts it starts with `start` and has a round trip in ms after it.
fn row(out: &str, start: &str) {
    let line = out
        .lines()
        .find(|l| l.starts_with(start))
        .unwrap_or_else(|| panic!("no row {start:?} in\n{out}"));
    let rtt = line[start.len()..].split(' ').next().unwrap_or_default();
    assert!(rtt.parse::<f64>().is_ok(), "no round trip in {line:?}");
}

#[test]
fn eggroll_ping_names_each_hop_and_the_one_that_fails() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ca = Ca::new(d, "ca");
    let (ex_tls, host_tls) = (ca.party(d, "exchange"), ca.party(d, "host"));
    let guest = start(&rt, d, "9999", None);
    let exchange = start(&rt, d, "8888", Some(&ex_tls));
    let host = start(&rt, d, "10000", Some(&host_tls));
    // A peer whose certificate comes from a CA the guest's side does not trust.
    let rogue_ca = Ca::new(d, "rogue-ca");
    let mut rogue_tls = rogue_ca.party(d, "rogue");
    rogue_tls.ca = ca.pem.clone();
    let rogue = start(&rt, d, "7777", Some(&rogue_tls));
    let dead = free_port();
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept() {
            held.push(s);
        }
    });
    guest.routes(json!({
        "10000": plain(exchange.site.addr().port()),
        "7777": plain(exchange.site.addr().port()),
        "4444": plain(dead),
        "5555": plain(silent_port),
    }));
    exchange.routes(json!({
        "10000": tls(host.secure()),
        "7777": tls(rogue.secure()),
        "9999": plain(guest.site.addr().port()),
    }));
    host.routes(json!({"9999": tls(exchange.secure())}));
    let g = guest.addr();

    // (a) A working route, found from the config as an operator's would be.
    let port = guest.site.addr().port().to_string();
    let (ok, out, err) = ping(
        &["10000", "--role", "host"],
        &[
            ("EGGROLL_ROLLSITE_HOST", "0.0.0.0"),
            ("EGGROLL_ROLLSITE_PORT", &port),
        ],
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains(&format!("through the roll-site at 127.0.0.1:{port}")));
    assert!(out.contains("hop role party address TLS rtt ms hop ms software"));
    row(&out, &format!("1 local roll-site 9999 {g} plaintext "));
    row(
        &out,
        &format!("2 exchange 8888 {} plaintext ", exchange.addr()),
    );
    row(
        &out,
        &format!("3 peer roll-site 10000 {} mutual TLS ", host.secure()),
    );
    assert!(out.contains("party 10000 reached in 3 hops, "), "{out}");
    assert!(out.contains(" ms round trip"), "{out}");

    // (b) A dead peer: refused at its hop, with its address.
    let (ok, out, err) = ping(&["4444", "--rollsite", &g], &[]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "FAILED at hop 2, peer roll-site 127.0.0.1:{dead} (plaintext): refused"
        )),
        "{out}"
    );
    assert!(out.contains("check: nothing listens at"), "{out}");
    assert!(
        err.contains(&format!(
            "party 4444 not reached: hop 2 (peer roll-site 127.0.0.1:{dead}) failed: refused"
        )),
        "{err}"
    );
    // ...and one that takes the connection and never answers: timed out.
    let (ok, out, _) = ping(&["5555", "--rollsite", &g, "--timeout-ms", "1500"], &[]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "FAILED at hop 2, peer roll-site 127.0.0.1:{silent_port} (plaintext): timed out"
        )),
        "{out}"
    );

    // (c) Behind the exchange, a TLS route to a certificate the exchange does not trust.
    let (ok, out, _) = ping(&["7777", "--rollsite", &g], &[]);
    assert!(!ok);
    row(
        &out,
        &format!("2 exchange 8888 {} plaintext ", exchange.addr()),
    );
    assert!(
        out.contains(&format!(
            "FAILED at hop 3, peer roll-site {} (mutual TLS): TLS rejected",
            rogue.secure()
        )),
        "{out}"
    );
    assert!(out.contains("certificate"), "{out}");

    // (d) An unknown party: no route at the local roll-site, naming its route table.
    let (ok, out, _) = ping(&["424242", "--rollsite", &g], &[]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "FAILED at hop 1, local roll-site {g} (plaintext): no route"
        )),
        "{out}"
    );
    let table = guest.config.rollsite.route_table.display().to_string();
    assert!(
        out.contains(&format!(
            "why: no route to party 424242 (role default) in the route table {table}"
        )),
        "{out}"
    );

    // No roll-site where the ping is sent: refused at hop 1.
    let (ok, out, _) = ping(&["10000", "--rollsite", &format!("127.0.0.1:{dead}")], &[]);
    assert!(!ok);
    assert!(
        out.contains(&format!(
            "FAILED at hop 1, local roll-site 127.0.0.1:{dead} (plaintext): refused"
        )),
        "{out}"
    );

    // The report as JSON, for scripts.
    let (ok, out, _) = ping(&["10000", "--rollsite", &g, "--json"], &[]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["outcome"], "reached");
    assert_eq!(v["hops"][2]["link"], "mutual_tls");

    for s in [guest, exchange, host, rogue] {
        rt.block_on(s.site.shutdown());
    }
}
