//! A two-party PSI whose roll-sites (real `eggroll rollsite` processes) are SIGKILLed at random
//! moments of the job, again and again, and started again: every client call to the local
//! roll-site retries broken connections and resumes (batches are idempotent, the buffer is
//! durable), so each run completes with the plain set intersection. The seed of the moments
//! is printed; set `EGGROLL_RESTART_SEED` to replay one. The same again over a link that drops
//! packets: in a network namespace of its own whose loopback loses 5 % of them.

use eggroll_federation::{BlockingFederation, FederationOptions};
use eggroll_psi::{PsiOutcome, Role};
use eggroll_rollpair::{Options, RollPair, RollPairContext};
use eggroll_tests::rollsite_processes::RollsiteProcess;
use eggroll_tests::rollsites::{guest, host};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Ids per party; half of them shared.
const IDS: u32 = 40_000;
/// Runs with a kill, after the undisturbed one.
const RUNS: u32 = 6;

/// xorshift64: enough to spread kills over a job, and replayable from its seed.
struct Moments(u64);
impl Moments {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Retries quick enough for a test: a roll-site down for a second is waited out within
/// a few seconds (0.1 s doubling, 8 tries).
fn options() -> FederationOptions {
    FederationOptions {
        max_retry: 8,
        long_retry: 0,
        retry_wait: Duration::from_millis(100),
        ..FederationOptions::default()
    }
}

type Outcome = Result<PsiOutcome, String>;

/// Starts one PSI between the two roll-sites at `guest_site` and `host_site`; each party's
/// outcome arrives on the returned channel as (role, outcome).
fn start_psi(
    root: &Path,
    session: &str,
    guest_site: &str,
    host_site: &str,
) -> mpsc::Receiver<(Role, Outcome)> {
    let (tx, rx) = mpsc::channel();
    let sides = [
        (Role::Guest, guest(), host(), guest_site, 0..IDS),
        (
            Role::Host,
            host(),
            guest(),
            host_site,
            IDS / 2..IDS + IDS / 2,
        ),
    ];
    for (role, me, peer, site, range) in sides {
        let fed = BlockingFederation::connect(site, session, me.clone(), options()).unwrap();
        let ctx = RollPairContext::standalone(root.join(&me.party_id)).unwrap();
        let tx = tx.clone();
        std::thread::spawn(move || {
            let ids: RollPair<String, ()> = ctx
                .parallelize(
                    range.map(|i| (format!("id-{i}"), ())),
                    Options::partitions(4),
                )
                .unwrap();
            let r = eggroll_psi::run(role, &ids, &fed, &peer, &()).map_err(|e| e.to_string());
            let _ = tx.send((role, r));
        });
    }
    rx
}

/// Checks both parties' outcomes: each the plain intersection.
fn check(got: Vec<(Role, Outcome)>, run: &str, expected: &[String]) {
    for (role, r) in got {
        let out = r.unwrap_or_else(|e| panic!("{run}: the {} failed: {e}", role.name()));
        assert_eq!(
            out.intersection,
            expected,
            "{run}: the {}'s intersection",
            role.name()
        );
    }
}

/// Waits for both parties' outcomes, calling `between` whenever `pause()` passes without one;
/// panics when the job takes over 180 s.
fn both(
    rx: &mpsc::Receiver<(Role, Outcome)>,
    run: &str,
    mut pause: impl FnMut() -> Duration,
    mut between: impl FnMut(),
) -> Vec<(Role, Outcome)> {
    let started = Instant::now();
    let mut got = Vec::new();
    while got.len() < 2 {
        match rx.recv_timeout(pause()) {
            Ok(o) => got.push(o),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                assert!(
                    started.elapsed() < Duration::from_secs(180),
                    "{run}: the PSI did not end within 180 s"
                );
                between();
            }
            Err(e) => panic!("{run}: a party's thread ended without an outcome: {e}"),
        }
    }
    got
}

/// Share of packets the lossy link drops.
const LOSS: f64 = 0.05;
/// Set in the network namespace the lossy test runs its job in.
const LOSSY_NETNS: &str = "EGGROLL_TEST_LOSSY_NETNS";

#[test]
fn a_psi_completes_correctly_however_its_roll_sites_are_killed_and_restarted() {
    kill_and_restart(RUNS);
}

/// Runs `in_a_lossy_namespace` in a new network namespace whose loopback drops [`LOSS`] of
/// its packets (iptables' random match: this machine's kernel has no netem), and checks it
/// passed and that packets were dropped. Without the means (not root, no `unshare` or
/// `iptables`), says so and passes.
#[test]
fn a_psi_completes_correctly_over_a_lossy_link_while_its_roll_sites_are_killed() {
    if let Err(why) = Command::new("unshare")
        .args(["--net", "--", "iptables", "-L", "INPUT", "-n"])
        .output()
        .map_err(|e| e.to_string())
        .and_then(|o| {
            o.status
                .success()
                .then_some(())
                .ok_or_else(|| String::from_utf8_lossy(&o.stderr).into_owned())
        })
    {
        eprintln!("skipped: cannot make a network namespace with iptables here: {why}");
        return;
    }
    let script = format!(
        "ip link set lo up \
         && iptables -A INPUT -i lo -m statistic --mode random --probability {LOSS} -j DROP \
         && {{ \"$0\" --exact in_a_lossy_namespace --ignored --nocapture; rc=$?; \
               iptables -L INPUT -v -n -x | tail -n 1; exit $rc; }}"
    );
    let out = Command::new("unshare")
        .args(["--net", "--", "sh", "-c", &script])
        .arg(std::env::current_exe().unwrap())
        .env(LOSSY_NETNS, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "the job over the lossy link failed (output above)"
    );
    // The rule's counters: packets first.
    let dropped: u64 = stdout
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(dropped > 0, "the lossy link dropped no packet: {stdout}");
    eprintln!("the lossy link dropped {dropped} packets");
}

/// The kill-and-restart job with fewer runs, in the namespace the test above makes.
#[test]
#[ignore = "run by a_psi_completes_correctly_over_a_lossy_link_while_its_roll_sites_are_killed"]
fn in_a_lossy_namespace() {
    assert!(
        std::env::var_os(LOSSY_NETNS).is_some(),
        "runs only in the namespace its caller makes"
    );
    kill_and_restart(2);
}

/// An undisturbed PSI, then `runs` during which one party's roll-site is killed and restarted.
fn kill_and_restart(runs: u32) {
    let seed = std::env::var("EGGROLL_RESTART_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
                | 1
        });
    eprintln!("EGGROLL_RESTART_SEED={seed}");
    let mut moments = Moments(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut sites = RollsiteProcess::pair(dir.path(), &[]);
    let (ga, ha) = (sites[0].address(), sites[1].address());
    let expected: Vec<String> = (0..IDS)
        .map(|i| format!("id-{i}"))
        .collect::<BTreeSet<_>>()
        .intersection(
            &(IDS / 2..IDS + IDS / 2)
                .map(|i| format!("id-{i}"))
                .collect(),
        )
        .cloned()
        .collect();

    // An undisturbed run, to compare with.
    let started = Instant::now();
    let rx = start_psi(&dir.path().join("run0"), "restart-0", &ga, &ha);
    let got = both(&rx, "the undisturbed run", || Duration::from_secs(1), || {});
    check(got, "the undisturbed run", &expected);
    eprintln!(
        "undisturbed PSI of {IDS} ids a party: {:?}",
        started.elapsed()
    );

    // Then runs during which one party's roll-site is killed every 0.2 to 0.8 s, and
    // started again 0.1 to 0.5 s later, until both parties are done: kills land in
    // computing, in pushes and in waiting gets alike.
    for run in 1..=runs {
        let victim = (run % 2) as usize;
        let name = format!(
            "run {run} ({} roll-site killed again and again; log {})",
            ["guest's", "host's"][victim],
            sites[victim].log().display()
        );
        let started = Instant::now();
        let rx = start_psi(
            &dir.path().join(format!("run{run}")),
            &format!("restart-{run}"),
            &ga,
            &ha,
        );
        let mut kills = 0;
        let mut pauses = Moments(moments.below(u64::MAX) | 1);
        let got = both(
            &rx,
            &name,
            || Duration::from_millis(200 + moments.below(600)),
            || {
                sites[victim].kill();
                kills += 1;
                std::thread::sleep(Duration::from_millis(100 + pauses.below(400)));
                sites[victim].restart();
            },
        );
        eprintln!("{name}: {kills} kills, done in {:?}", started.elapsed());
        check(got, &name, &expected);
    }
}
