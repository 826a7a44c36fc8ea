//! A real cluster for tests: the cluster manager and node managers run as separate processes
//! of the `eggroll-suite-egg` binary on free ports of 127.0.0.1, each with its own data dir.
//! They hold a pipe from this process on stdin, so they exit when the test process does.

use eggroll_rollpair::{RollPairContext, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The binary every role runs: `eggroll::main()` with the suite's functions linked in.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_eggroll-suite-egg"))
}

/// One daemon process.
pub struct Daemon {
    /// The process.
    pub child: Child,
    /// Where it listens ("127.0.0.1:port").
    pub address: String,
}

impl Daemon {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Settings of a test cluster.
#[derive(Clone)]
pub struct ClusterSpec {
    /// Node managers.
    pub nodes: usize,
    /// A node silent this long is lost.
    pub heartbeat_timeout_ms: u64,
    /// How often node managers heartbeat.
    pub heartbeat_interval_ms: u64,
    /// Egg program override (default: the suite binary).
    pub eggpair_executable: Option<PathBuf>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 2,
            heartbeat_timeout_ms: 3000,
            heartbeat_interval_ms: 300,
            eggpair_executable: None,
        }
    }
}

/// A cluster manager and its node managers.
pub struct TestCluster {
    /// Data and log dirs of every daemon.
    pub root: tempfile::TempDir,
    /// The cluster manager.
    pub cm: Daemon,
    /// The node managers.
    pub nodes: Vec<Daemon>,
    spec: ClusterSpec,
}

/// Starts `eggroll <args>` and waits for its "listening on" line.
pub fn spawn(args: &[&str], log: &Path) -> Daemon {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let (child, address) = eggroll::local_cluster::spawn(&binary(), &args, log)
        .unwrap_or_else(|e| panic!("daemon {args:?} did not start: {e}"));
    Daemon { child, address }
}

impl TestCluster {
    /// Starts a cluster and waits until every node manager has registered.
    pub fn start(spec: ClusterSpec) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        let cm = Self::start_cm(root.path(), &spec, "0");
        let mut cluster = Self {
            root,
            cm,
            nodes: Vec::new(),
            spec,
        };
        for i in 0..cluster.spec.nodes {
            let nm = cluster.start_nm(i);
            cluster.nodes.push(nm);
        }
        cluster.wait_nodes(cluster.spec.nodes);
        cluster
    }

    fn start_cm(root: &Path, spec: &ClusterSpec, port: &str) -> Daemon {
        let dir = root.join("cm");
        spawn(
            &[
                "clustermanager",
                "--port",
                port,
                "--data-dir",
                dir.to_str().unwrap(),
                "--logs-dir",
                root.join("cm-logs").to_str().unwrap(),
                "--heartbeat-timeout-ms",
                &spec.heartbeat_timeout_ms.to_string(),
            ],
            &root.join("cm.log"),
        )
    }

    fn start_nm(&self, i: usize) -> Daemon {
        let root = self.root.path();
        let mut args: Vec<String> = [
            "nodemanager",
            "--port",
            "0",
            "--cluster-manager",
            &self.cm.address,
            "--data-dir",
            root.join(format!("node{i}")).to_str().unwrap(),
            "--logs-dir",
            root.join(format!("node{i}-logs")).to_str().unwrap(),
            "--heartbeat-interval-ms",
            &self.spec.heartbeat_interval_ms.to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(exe) = &self.spec.eggpair_executable {
            args.push("--eggpair-executable".into());
            args.push(exe.display().to_string());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        spawn(&args, &root.join(format!("node{i}.log")))
    }

    /// Waits until `n` nodes are ALIVE.
    pub fn wait_nodes(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = self.cli(&["node", "list"]);
            if out.matches(" ALIVE ").count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nodes did not register:\n{out}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs an operator command against this cluster; returns stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(
            out.status.success(),
            "eggroll {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs an operator command against this cluster.
    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        Command::new(binary())
            .args(args)
            .args(["--cluster-manager", &self.cm.address])
            .output()
            .expect("run eggroll")
    }

    /// A new session: two eggs per node, a short lease.
    pub fn connect(&self) -> RollPairContext {
        self.connect_with(SessionOptions {
            processors_per_node: 2,
            lease_ms: 20_000,
            start_timeout_ms: 30_000,
            ..Default::default()
        })
    }

    /// A new session with `opts`.
    pub fn connect_with(&self, opts: SessionOptions) -> RollPairContext {
        RollPairContext::connect(&self.cm.address, opts)
            .unwrap_or_else(|e| panic!("session did not start: {e}\n{}", self.logs()))
    }

    /// Stops every daemon (SIGKILL, the harshest case) and starts them again on the same
    /// data dirs; the cluster manager gets a new port, as after a real restart on a new host.
    pub fn restart_all(&mut self) {
        let _ = self.cm.child.kill();
        let _ = self.cm.child.wait();
        for n in &mut self.nodes {
            let _ = n.child.kill();
            let _ = n.child.wait();
        }
        self.cm = Self::start_cm(self.root.path(), &self.spec, "0");
        self.nodes.clear();
        for i in 0..self.spec.nodes {
            let nm = self.start_nm(i);
            self.nodes.push(nm);
        }
        self.wait_nodes(self.spec.nodes);
    }

    /// Every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for name in std::iter::once("cm.log".to_string())
            .chain((0..self.spec.nodes).map(|i| format!("node{i}.log")))
        {
            let text = std::fs::read_to_string(self.root.path().join(&name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(30).collect();
            out.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for d in self.nodes.iter_mut().chain(std::iter::once(&mut self.cm)) {
            let _ = d.child.kill();
            let _ = d.child.wait();
        }
    }
}
