//! The docker-compose two-party trial (`deploy/docker-compose/trial.sh`) with this build's
//! `eggroll` binary: image built locally, both parties up, the PSI job checked, the job again
//! while one of party 9999's node managers is killed (it must finish or fail, never hang),
//! everything down. Skipped, saying so, where no docker engine answers.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds each job of the trial; the whole trial stays well under 10 minutes.
const JOB_TIMEOUT_S: &str = "150";
/// If the script itself overruns (it should not: every step has a bound), stop it.
const TRIAL_LIMIT: Duration = Duration::from_secs(9 * 60);

fn docker_engine() -> bool {
    Command::new("docker")
        .arg("info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// What the trial makes, by the names it gives them: images, containers, networks, volumes.
fn trial_leftovers() -> Vec<String> {
    let list = |args: &[&str]| -> Vec<String> {
        let out = Command::new("docker").args(args).output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
    };
    let mut all = list(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    all.extend(list(&["ps", "-a", "--format", "{{.Names}}"]));
    all.extend(list(&["network", "ls", "--format", "{{.Name}}"]));
    all.extend(list(&["volume", "ls", "--format", "{{.Name}}"]));
    all.retain(|n| n.contains("eggtrial-"));
    all.sort();
    all
}

#[test]
fn two_party_trial_in_docker() {
    if !docker_engine() {
        println!("skipped: no docker engine (docker info fails)");
        eprintln!("skipped: no docker engine (docker info fails)");
        return;
    }
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/docker-compose/trial.sh"
    );
    let before = trial_leftovers();
    let log = tempfile::NamedTempFile::new().unwrap();
    // One open file for both streams (a shared offset), so their lines interleave in order.
    let out = log.reopen().unwrap();
    let started = Instant::now();
    let mut child = Command::new("bash")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_eggroll"))
        .env("EGGROLL_TRIAL_TIMEOUT", JOB_TIMEOUT_S)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("cannot start bash to run the trial script");
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > TRIAL_LIMIT {
            // SIGTERM lets the script's trap bring the containers down.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let grace = Instant::now();
            while grace.elapsed() < Duration::from_secs(60) {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut output = String::new();
    log.reopen().unwrap().read_to_string(&mut output).unwrap();
    println!("{output}");
    match status {
        Some(s) if s.success() => {
            assert!(
                output.contains("PASSED"),
                "the trial exited 0 without PASSED"
            );
            println!("trial passed in {:.0} s", started.elapsed().as_secs_f64());
            let after = trial_leftovers();
            let left: Vec<&String> = after.iter().filter(|n| !before.contains(n)).collect();
            assert!(
                left.is_empty(),
                "the trial left docker objects behind: {left:?}"
            );
        }
        Some(s) => panic!(
            "the docker-compose trial failed ({s}) after {:.0} s; its output is above, \
             the reason on its last FAILED line",
            started.elapsed().as_secs_f64()
        ),
        None => panic!(
            "the docker-compose trial was still running after {} s and was stopped; its \
             output is above",
            TRIAL_LIMIT.as_secs()
        ),
    }
}
