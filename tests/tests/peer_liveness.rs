//! A party's job process SIGKILLed while the other party's get waits on it: the waiting get
//! fails within the roll-site's liveness bound, naming the dead party, not after the idle
//! timeout. Real processes: two `eggroll rollsite`s and the host's `eggroll psi`; the guest
//! is this test, a client of its own roll-site.

use eggroll_federation::{BlockingFederation, FederationOptions};
use eggroll_rollpair::RollPairContext;
use eggroll_tests::cluster::binary;
use eggroll_tests::rollsite_processes::RollsiteProcess;
use eggroll_tests::rollsites::{guest, host};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Parties gone after 3 s without a sign of life (the idle timeout stays at its 600 s).
const LIVENESS: [(&str, &str); 3] = [
    ("EGGROLL_LOG", "info"),
    ("EGGROLL_ROLLSITE_LIVENESS_TIMEOUT_MS", "3000"),
    ("EGGROLL_ROLLSITE_HEARTBEAT_INTERVAL_MS", "500"),
];

#[test]
fn a_get_waiting_on_a_killed_job_fails_within_the_liveness_bound_naming_the_party() {
    let dir = tempfile::tempdir().unwrap();
    let [g, h] = RollsiteProcess::pair(dir.path(), &LIVENESS);
    // The host: a PSI job process of its own.
    let mut job = Command::new(binary())
        .args(["psi", "--role", "host", "--party-id", "10000"])
        .args(["--peer-party-id", "9999", "--job-id", "live"])
        .args(["--generate", "2000", "--partitions", "2"])
        .args(["--rollsite", &h.address()])
        .env("EGGROLL_DATA_DIR", dir.path().join("host-job"))
        .envs(LIVENESS)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("host-job.log")).unwrap())
        .spawn()
        .unwrap();

    // An idle timeout well past the bound, and short enough that a failure shows soon.
    let opts = FederationOptions {
        heartbeat_interval: Duration::from_millis(500),
        get_idle_timeout: Duration::from_secs(60),
        ..FederationOptions::default()
    };
    let fed = BlockingFederation::connect(&g.address(), "live", guest(), opts).unwrap();
    let ctx = RollPairContext::standalone(dir.path().join("guest")).unwrap();
    // The host's first transfer: from then on it sends us signs of life. It now waits for
    // ours, which never comes.
    let got = fed
        .get_table::<eggroll_psi::crypto::Point, ()>(&ctx, "host_blinded", "psi", &[host()])
        .unwrap();
    assert_eq!(got[0].count().unwrap(), 2000);

    let waiting = std::thread::spawn(move || {
        fed.get::<u64>("host_double", "psi", &[host()])
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    std::thread::sleep(Duration::from_millis(500));
    job.kill().unwrap();
    job.wait().unwrap();
    let killed = Instant::now();
    let err = waiting.join().unwrap().unwrap_err();
    let took = killed.elapsed();
    let logs = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    if !err.contains("no sign of life") {
        for name in ["host-job.log", "data-9999.log", "data-10000.log"] {
            eprintln!("--- {name}:\n{}", logs(name));
        }
    }
    eprintln!("{took:?} after the kill, the guest's get failed with: {err}");
    assert!(
        err.contains("party 10000 (role host) gave no sign of life for 3.0 s")
            && err.contains("\"host_double\" tag \"psi\"")
            && err.contains("session live"),
        "{err}"
    );
    assert!(took < Duration::from_secs(30), "{took:?}");
}
