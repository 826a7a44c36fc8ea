//! A real cluster for tests: the cluster manager and node managers run as separate processes
//! of the `eggroll-suite-egg` binary on free ports of 127.0.0.1, started by the binary's own
//! launcher. A test that does not harm its cluster uses [`TestCluster::shared`].

use eggroll::local_cluster::LocalCluster;
pub use eggroll::local_cluster::{ClusterSpec, Daemon};
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::{SessionId, SessionMeta};
use eggroll_rollpair::{RollPairContext, SessionOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The program every role runs: `eggroll::main()` with the suite's functions linked in. It
/// sits beside the test binaries' directory (`target/<profile>/`).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary lives in target/<profile>/deps");
    let program = profile.join("eggroll-suite-egg");
    assert!(
        program.exists(),
        "{} is missing: run the tests with `cargo test --release --workspace` (or `-p eggroll-tests`), which builds it",
        program.display()
    );
    program
}

/// The spec of a test cluster: two nodes that heartbeat fast and are lost after 3 s, whose
/// eggs load stored tables in tiny bulk-load runs, so that every put_all into a new stored
/// table in a test goes through sorted files (or, when tiny, a batch).
pub fn spec() -> ClusterSpec {
    ClusterSpec {
        nodes: 2,
        heartbeat_timeout_ms: Some(3000),
        heartbeat_interval_ms: 300,
        eggpair_executable: None,
        node_env: vec![("EGGROLL_STORAGE_BULK_RUN_BYTES".into(), "2048".into())],
    }
}

/// A cluster manager and its node managers, in a scratch dir of their own.
pub struct TestCluster {
    daemons: LocalCluster,
    /// Data and logs of every daemon (removed with the cluster).
    pub root: tempfile::TempDir,
}

impl TestCluster {
    /// Starts a cluster of its own and waits until every node manager has registered.
    pub fn start(spec: ClusterSpec) -> Self {
        let root = tempfile::tempdir().expect("tempdir");
        Self::start_in(root, spec)
    }

    fn start_in(root: tempfile::TempDir, spec: ClusterSpec) -> Self {
        let daemons = LocalCluster::start(&binary(), root.path(), spec)
            .unwrap_or_else(|e| panic!("the test cluster did not start: {e}"));
        Self { daemons, root }
    }

    /// The cluster the tests of this test binary share (started by the first that asks).
    /// When the test process exits, its daemons are killed and its dir removed; a dir left by
    /// a process that died harder is removed by the next run.
    pub fn shared() -> &'static TestCluster {
        SHARED.get_or_init(|| {
            let parent = std::env::temp_dir();
            remove_stale_shared_dirs(&parent);
            let root = tempfile::Builder::new()
                .prefix(&format!("{SHARED_PREFIX}{}-", std::process::id()))
                .tempdir_in(&parent)
                .expect("tempdir");
            let cluster = Self::start_in(root, spec());
            // SAFETY: registers a plain function with no arguments; libc runs it at exit.
            unsafe { libc::atexit(stop_shared) };
            cluster
        })
    }

    /// The cluster manager.
    pub fn cm(&self) -> &Daemon {
        &self.daemons.cm
    }

    /// The node managers.
    pub fn nodes(&self) -> &[Daemon] {
        &self.daemons.nodes
    }

    /// The cluster manager's address.
    pub fn address(&self) -> &str {
        self.daemons.address()
    }

    /// Waits until `n` nodes are alive.
    pub fn wait_nodes(&self, n: usize) {
        self.daemons.wait_nodes(n).unwrap_or_else(|e| panic!("{e}"));
    }

    /// Kills every daemon and starts them again on the same data dirs.
    pub fn restart_all(&mut self) {
        self.daemons
            .restart()
            .unwrap_or_else(|e| panic!("the cluster did not come back: {e}"));
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
            .args(["--cluster-manager", self.address()])
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
        RollPairContext::connect(self.address(), opts)
            .unwrap_or_else(|e| panic!("session did not start: {e}\n{}", self.logs()))
    }

    /// A session's record at the cluster manager.
    pub fn session(&self, id: &str) -> SessionMeta {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut cm = ClusterManagerClient::connect(format!("http://{}", self.address()))
                .await
                .expect("reach the cluster manager");
            cm.get_session(SessionId { id: id.into() })
                .await
                .unwrap_or_else(|e| panic!("session {id}: {e}"))
                .into_inner()
        })
    }

    /// The logs of a session's eggs, concatenated.
    pub fn egg_logs(&self, session_id: &str) -> String {
        let ids: Vec<String> = self
            .session(session_id)
            .processors
            .iter()
            .map(|p| format!("egg-{}.log", p.id))
            .collect();
        let mut text = String::new();
        for i in 0..self.nodes().len() {
            let dir = self.root.path().join(format!("node{i}-logs"));
            for e in walk(&dir) {
                if e.file_name()
                    .is_some_and(|f| ids.iter().any(|id| f == id.as_str()))
                {
                    text.push_str(&std::fs::read_to_string(&e).unwrap_or_default());
                }
            }
        }
        text
    }

    /// The last lines of every daemon's log, for failure messages.
    pub fn logs(&self) -> String {
        self.daemons.log_tails(30)
    }
}

/// Every regular file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// The cluster of [`TestCluster::shared`].
static SHARED: OnceLock<TestCluster> = OnceLock::new();

/// How the dirs of shared clusters begin: the test process id follows.
const SHARED_PREFIX: &str = "eggroll-shared-cluster-";

/// At exit: kills the shared cluster's daemons (node managers first: their eggs exit with
/// them) and removes its dir. Statics are never dropped, so nothing else would.
extern "C" fn stop_shared() {
    if let Some(c) = SHARED.get() {
        for d in c.nodes().iter().chain(std::iter::once(c.cm())) {
            // SAFETY: kill(2) on a child process id; a stale id only fails.
            unsafe { libc::kill(d.pid() as libc::pid_t, libc::SIGKILL) };
        }
        let _ = std::fs::remove_dir_all(c.root.path());
    }
}

/// Removes the dirs of shared clusters whose test process has exited.
fn remove_stale_shared_dirs(parent: &Path) {
    for e in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(SHARED_PREFIX) else {
            continue;
        };
        let pid = rest.split('-').next().unwrap_or("");
        if !pid.is_empty() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}
