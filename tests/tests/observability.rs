//! Operations of a real two-party deployment on loopback (for each party a cluster manager, a
//! node manager with its eggs and a roll-site, all separate processes), observed the way an
//! operator would:
//!
//! - a real Prometheus (Debian's package) scrapes every daemon, the eggs found through the
//!   cluster managers' service discovery, while a PSI runs; PromQL then finds the transfers
//!   and bytes each party's job says it sent, on both roll-sites, and the eggs of a running
//!   session;
//! - `promtool check metrics` passes on every endpoint;
//! - a real headless Chromium loads both status pages during a job whose link is stalled (the
//!   host's roll-site stopped with SIGSTOP): the cluster manager's lists the running session,
//!   the roll-site's the transfer stuck in flight. Screenshots go to
//!   `target/tmp/status-pages/`.

use eggroll_tests::cluster::{binary, spec, TestCluster};
use eggroll_tests::free_port;
use eggroll_tests::ops::{get, http_address, program};
use eggroll_tests::rollsite_processes::{route_to, RollsiteProcess};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One party: its cluster, its roll-site and where each serves HTTP.
struct Party {
    id: &'static str,
    cluster: TestCluster,
    rollsite: RollsiteProcess,
    cm_http: String,
    rs_http: String,
}

fn party(dir: &Path, id: &'static str, port: u16, peer: &str, peer_port: u16) -> Party {
    let cluster = TestCluster::start(eggroll_tests::cluster::ClusterSpec { nodes: 1, ..spec() });
    let rollsite = RollsiteProcess::start(dir, id, port, &route_to(dir, peer, peer_port), &[]);
    let cm_http = http_address(
        &cluster.root.path().join("clustermanager.log"),
        "clustermanager",
    );
    let rs_http = http_address(&rollsite.log(), "rollsite");
    Party {
        id,
        cluster,
        rollsite,
        cm_http,
        rs_http,
    }
}

/// Starts one side of a PSI of `ids` ids on `p`'s cluster.
fn psi(p: &Party, role: &str, peer: &str, job: &str, ids: u64) -> Child {
    Command::new(binary())
        .args([
            "psi",
            "--role",
            role,
            "--party-id",
            p.id,
            "--peer-party-id",
            peer,
        ])
        .args(["--job-id", job, "--generate", &ids.to_string()])
        .args(["--overlap", &(ids / 4).to_string(), "--partitions", "4"])
        .args(["--rollsite", &p.rollsite.address()])
        .args(["--cluster-manager", p.cluster.address()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start eggroll psi")
}

/// Waits for a PSI side; its (transfers, bytes) sent, from its "sent" line.
fn finish(child: Child, role: &str) -> (u64, u64) {
    let out = child.wait_with_output().expect("wait for eggroll psi");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "the {role} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{role}: sent ")))
        .unwrap_or_else(|| panic!("no 'sent' line in:\n{text}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    (words[0].parse().unwrap(), words[2].parse().unwrap())
}

/// Percent-encodes a query parameter.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of a scalar PromQL query (0 when it has no series yet).
fn query(prom: &str, q: &str) -> f64 {
    let (code, body) = get(prom, &format!("/api/v1/query?query={}", encode(q)));
    assert_eq!(code, 200, "{q}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    v["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until `q` equals `want` in Prometheus (it scrapes every second); fails naming the
/// last value seen.
fn expect_query(prom: &str, q: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = query(prom, q);
    while last != want && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        last = query(prom, q);
    }
    assert_eq!(last, want, "PromQL {q}");
}

/// `promtool check metrics` on what `addr` serves at /metrics.
fn promtool_check(addr: &str, what: &str) {
    let (code, body) = get(addr, "/metrics");
    assert_eq!(code, 200, "{what} /metrics");
    assert!(body.contains("# TYPE"), "{what} serves no metrics:\n{body}");
    let mut child = Command::new(program("promtool", "prometheus"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed on {what} ({addr}):\n{}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server scraping both parties every second.
struct Prometheus {
    child: Child,
    addr: String,
}

impl Prometheus {
    fn start(dir: &Path, parties: &[&Party]) -> Self {
        let statics: Vec<String> = parties
            .iter()
            .flat_map(|p| [format!("'{}'", p.cm_http), format!("'{}'", p.rs_http)])
            .collect();
        let sd: String = parties
            .iter()
            .map(|p| {
                format!(
                    "      - url: 'http://{}/targets'\n        refresh_interval: 1s\n",
                    p.cm_http
                )
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  \
             - job_name: eggroll\n    honor_labels: true\n    static_configs:\n      \
             - targets: [{}]\n    http_sd_configs:\n{sd}",
            statics.join(", ")
        );
        let file = dir.join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let child = Command::new(program("prometheus", "prometheus"))
            .arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(&addr).is_err() || get(&addr, "/-/ready").0 != 200 {
            assert!(
                Instant::now() < deadline,
                "Prometheus did not get ready; its log:\n{}",
                std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Prometheus { child, addr }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Headless Chromium: the page's DOM after it loaded, and a screenshot to `png`.
fn chromium(url: &str, png: &Path) -> String {
    let chromium = program("chromium", "chromium");
    let profile = tempfile::tempdir().unwrap();
    let common = |c: &mut Command| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(["--no-first-run", "--window-size=1280,900"]);
    };
    let mut dump = Command::new(&chromium);
    common(&mut dump);
    let out = dump
        .args(["--dump-dom", url])
        .stderr(Stdio::null())
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    let mut shot = Command::new(&chromium);
    common(&mut shot);
    let out = shot
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .output()
        .expect("run chromium");
    assert!(
        png.exists(),
        "chromium made no screenshot of {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// Waits until the cluster manager at `cm_http` lists a running session named `name`; its id.
fn running_session(cm_http: &str, name: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, page) = get(cm_http, "/");
        if let Some(row) = page
            .split("<tr>")
            .find(|r| r.contains(&format!("<td>{name}</td>")) && r.contains("ACTIVE"))
        {
            let id = row
                .split("<td>")
                .nth(1)
                .and_then(|c| c.split("</td>").next())
                .unwrap_or_default();
            return id.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no running session {name}:\n{page}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn prometheus_counts_what_a_psi_sent_and_the_status_pages_show_a_stalled_job() {
    let dir = tempfile::tempdir().unwrap();
    let (pg, ph) = (free_port(), free_port());
    let guest = party(dir.path(), "9999", pg, "10000", ph);
    let mut host = party(dir.path(), "10000", ph, "9999", pg);

    // Health and readiness of every daemon, as a kubelet would probe them.
    for (addr, what) in [
        (&guest.cm_http, "cluster manager"),
        (&guest.rs_http, "roll-site"),
        (&host.cm_http, "cluster manager"),
        (&host.rs_http, "roll-site"),
    ] {
        assert_eq!(get(addr, "/healthz"), (200, "ok\n".into()), "{what}");
        assert_eq!(get(addr, "/readyz").0, 200, "{what}");
    }
    let prom_dir = dir.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let prom = Prometheus::start(&prom_dir, &[&guest, &host]);

    // 1. A PSI with nothing in its way: Prometheus must see exactly what each side sent.
    let g = psi(&guest, "guest", "10000", "obs-1", 20_000);
    let h = psi(&host, "host", "9999", "obs-1", 20_000);
    // The eggs serve metrics while the session runs: check them with promtool then.
    let deadline = Instant::now() + Duration::from_secs(60);
    let egg = loop {
        let (_, targets) = get(&guest.cm_http, "/targets");
        let v: serde_json::Value = serde_json::from_str(&targets).unwrap();
        let eggs: Vec<String> = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["labels"]["role"] == "egg")
            .map(|g| g["targets"][0].as_str().unwrap().to_string())
            .collect();
        let nodes = v
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["labels"]["role"] == "nodemanager")
            .count();
        assert_eq!(nodes, 1, "the node manager is a target: {targets}");
        if let Some(e) = eggs.first() {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no egg target appeared: {targets}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = egg;
    let (gt, gb) = finish(g, "guest");
    let (ht, hb) = finish(h, "host");
    assert!(
        gt >= 2 && ht >= 2 && gb > 0 && hb > 0,
        "{gt} {gb} {ht} {hb}"
    );
    for (p, peer, t, b) in [(&guest, "10000", gt, gb), (&host, "9999", ht, hb)] {
        let out = format!("party=\"{}\",direction=\"out\",peer=\"{peer}\"", p.id);
        expect_query(
            &prom.addr,
            &format!("sum(eggroll_rollsite_transfers_total{{{out}}})"),
            t as f64,
        );
        expect_query(
            &prom.addr,
            &format!("sum(eggroll_rollsite_transfer_bytes_total{{{out}}})"),
            b as f64,
        );
        // And the other party's roll-site received the same.
        let inn = format!("party=\"{peer}\",direction=\"in\",peer=\"{}\"", p.id);
        expect_query(
            &prom.addr,
            &format!("sum(eggroll_rollsite_transfers_total{{{inn}}})"),
            t as f64,
        );
        expect_query(
            &prom.addr,
            &format!("sum(eggroll_rollsite_transfer_bytes_total{{{inn}}})"),
            b as f64,
        );
        expect_query(
            &prom.addr,
            &format!("sum(eggroll_rollsite_streams_total{{{out},outcome=\"failed\"}})"),
            0.0,
        );
    }
    // Every kind of daemon was scraped, the eggs through service discovery.
    for (q, what) in [
        ("count(eggroll_clustermanager_stores)", "cluster managers"),
        ("count(eggroll_nodemanager_eggs)", "node managers"),
        ("count(eggroll_rollsite_transfers_in_flight)", "roll-sites"),
    ] {
        expect_query(&prom.addr, q, 2.0);
        let _ = what;
    }
    for p in [&guest, &host] {
        promtool_check(&p.cm_http, "cluster manager");
        promtool_check(&p.rs_http, "roll-site");
        let nm = http_address(
            &p.cluster.root.path().join("nodemanager0.log"),
            "nodemanager",
        );
        promtool_check(&nm, "node manager");
    }

    // 2. A job whose link stalls: the host's roll-site is stopped (SIGSTOP), so the guest's
    // first table hangs in the guest's roll-site on its way out.
    let pid = host.rollsite.pid().expect("the host's roll-site runs");
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} {pid}");
    };
    signal("-STOP");
    let g = psi(&guest, "guest", "10000", "obs-2", 20_000);
    let session = running_session(&guest.cm_http, "psi obs-2");

    let deadline = Instant::now() + Duration::from_secs(60);
    while !get(&guest.rs_http, "/").1.contains("obs-2") {
        assert!(
            Instant::now() < deadline,
            "the stalled transfer never showed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Its eggs have blinded their ids and wait on the stalled link: they are there to be
    // checked, with a task done.
    let (_, targets) = get(&guest.cm_http, "/targets");
    let v: serde_json::Value = serde_json::from_str(&targets).unwrap();
    let eggs: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["labels"]["role"] == "egg" && g["labels"]["session"] == session.as_str())
        .collect();
    assert_eq!(eggs.len(), 4, "the session's 4 eggs are targets: {targets}");
    let egg = eggs[0]["targets"][0].as_str().unwrap();
    promtool_check(egg, "egg");
    // Prometheus finds the eggs through the cluster manager's service discovery.
    let q = format!("count(eggroll_egg_tasks_total{{session=\"{session}\",op=\"map_reduce\"}})");
    let deadline = Instant::now() + Duration::from_secs(30);
    while query(&prom.addr, &q) < 4.0 {
        assert!(
            Instant::now() < deadline,
            "Prometheus did not scrape the 4 eggs of {session}: {q} = {}",
            query(&prom.addr, &q)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let (_, metrics) = get(egg, "/metrics");
    assert!(
        metrics.contains("eggroll_egg_tasks_total{op=\"map_reduce\",outcome=\"ok\"")
            && metrics.contains("eggroll_egg_written_bytes_total"),
        "the egg's metrics lack its tasks:\n{metrics}"
    );
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-pages");
    std::fs::create_dir_all(&shots).unwrap();
    let cm_dom = chromium(
        &format!("http://{}/", guest.cm_http),
        &shots.join("clustermanager.png"),
    );
    let rs_dom = chromium(
        &format!("http://{}/", guest.rs_http),
        &shots.join("rollsite.png"),
    );
    signal("-CONT");
    assert!(
        cm_dom.contains(&session) && cm_dom.contains("psi obs-2") && cm_dom.contains("ACTIVE"),
        "the cluster manager's page does not list the running session {session}:\n{cm_dom}"
    );
    let in_flight = rs_dom
        .split("<h2>Transfers in flight</h2>")
        .nth(1)
        .and_then(|s| s.split("<h2>").next())
        .unwrap_or_default();
    assert!(
        in_flight.contains("obs-2") && in_flight.contains("10000") && in_flight.contains(">out<"),
        "the roll-site's page does not list the stalled transfer:\n{rs_dom}"
    );
    // Let the job end: the host joins, and the stalled push goes on.
    let h = psi(&host, "host", "9999", "obs-2", 20_000);
    finish(g, "guest");
    finish(h, "host");
    host.rollsite.kill();
    drop(prom);
}
