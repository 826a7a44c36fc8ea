//! A cluster on this machine: a cluster manager and node managers as child processes of
//! this program, on free ports of 127.0.0.1, each with its own data dir. The one launcher of
//! `eggroll bench --cluster`, the demo's cluster mode and the test kit; the daemons exit with
//! this process (they watch a pipe on stdin).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Settings of a local cluster.
#[derive(Clone, Debug)]
pub struct ClusterSpec {
    /// Node managers.
    pub nodes: usize,
    /// A node silent this long is lost (the cluster manager's default when `None`).
    pub heartbeat_timeout_ms: Option<u64>,
    /// How often node managers heartbeat.
    pub heartbeat_interval_ms: u64,
    /// The egg-pair program (default: the program the daemons run).
    pub eggpair_executable: Option<PathBuf>,
    /// Environment of the node managers (and so of their eggs), beside this process's own:
    /// `EGGROLL_*` settings for the nodes only.
    pub node_env: Vec<(String, String)>,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        Self {
            nodes: 2,
            heartbeat_timeout_ms: None,
            heartbeat_interval_ms: 500,
            eggpair_executable: None,
            node_env: Vec::new(),
        }
    }
}

/// One daemon process of a local cluster.
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

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The daemons of a local cluster; dropping it stops them.
pub struct LocalCluster {
    /// The cluster manager.
    pub cm: Daemon,
    /// The node managers, node `i` with its data in `root/node{i}`.
    pub nodes: Vec<Daemon>,
    /// Where data and logs go: `cm/`, `node{i}/`, `node{i}-logs/` (the eggs' logs), and a
    /// `.log` file per daemon.
    pub root: PathBuf,
    program: PathBuf,
    spec: ClusterSpec,
}

/// Starts the daemon `program <args> --exit-with-stdin`, logging to `log` (at `info` unless
/// `EGGROLL_LOG` says otherwise), and reads the address from its "listening on" line.
pub fn spawn(program: &Path, args: &[String], log: &Path) -> Result<(Child, String), String> {
    spawn_with(program, args, log, &[])
}

/// [`spawn`] with `env` added to the daemon's environment.
pub fn spawn_with(
    program: &Path,
    args: &[String],
    log: &Path,
    env: &[(String, String)],
) -> Result<(Child, String), String> {
    let log_file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .arg("--exit-with-stdin")
        .env(
            "EGGROLL_LOG",
            std::env::var("EGGROLL_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    match line.trim().rsplit(' ').next().filter(|a| a.contains(':')) {
        Some(address) => Ok((child, address.to_string())),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "{} {} did not start; its log ({}) says:\n{}",
                program.display(),
                args.first().map(String::as_str).unwrap_or(""),
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            ))
        }
    }
}

impl LocalCluster {
    /// Starts a cluster manager and the spec's node managers under `root`, all running
    /// `program`, and waits until every node has registered.
    pub fn start(program: &Path, root: &Path, spec: ClusterSpec) -> Result<Self, String> {
        std::fs::create_dir_all(root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let cm = Self::start_cm(program, root, &spec)?;
        let mut cluster = Self {
            cm,
            nodes: Vec::new(),
            root: root.to_path_buf(),
            program: program.to_path_buf(),
            spec,
        };
        cluster.start_nodes()?;
        Ok(cluster)
    }

    /// The cluster manager's address.
    pub fn address(&self) -> &str {
        &self.cm.address
    }

    /// What the cluster was started with.
    pub fn spec(&self) -> &ClusterSpec {
        &self.spec
    }

    fn dir(root: &Path, name: &str) -> String {
        root.join(name).display().to_string()
    }

    fn start_cm(program: &Path, root: &Path, spec: &ClusterSpec) -> Result<Daemon, String> {
        let mut args: Vec<String> = vec![
            "clustermanager".into(),
            "--port".into(),
            "0".into(),
            "--http-port".into(),
            "0".into(),
            "--data-dir".into(),
            Self::dir(root, "cm"),
            "--logs-dir".into(),
            Self::dir(root, "cm-logs"),
        ];
        if let Some(t) = spec.heartbeat_timeout_ms {
            args.extend(["--heartbeat-timeout-ms".into(), t.to_string()]);
        }
        let (child, address) = spawn(program, &args, &root.join("clustermanager.log"))?;
        Ok(Daemon { child, address })
    }

    fn start_nodes(&mut self) -> Result<(), String> {
        for i in 0..self.spec.nodes {
            let mut args: Vec<String> = vec![
                "nodemanager".into(),
                "--port".into(),
                "0".into(),
                "--http-port".into(),
                "0".into(),
                "--cluster-manager".into(),
                self.cm.address.clone(),
                "--data-dir".into(),
                Self::dir(&self.root, &format!("node{i}")),
                "--logs-dir".into(),
                Self::dir(&self.root, &format!("node{i}-logs")),
                "--heartbeat-interval-ms".into(),
                self.spec.heartbeat_interval_ms.to_string(),
            ];
            if let Some(exe) = &self.spec.eggpair_executable {
                args.extend(["--eggpair-executable".into(), exe.display().to_string()]);
            }
            let log = self.root.join(format!("nodemanager{i}.log"));
            let (child, address) = spawn_with(&self.program, &args, &log, &self.spec.node_env)?;
            self.nodes.push(Daemon { child, address });
        }
        self.wait_nodes(self.spec.nodes)
    }

    /// Kills every daemon (SIGKILL, the harshest case) and starts them again on the same data
    /// dirs; the cluster manager gets a new port, as after a restart on a new host.
    pub fn restart(&mut self) -> Result<(), String> {
        for d in self.nodes.iter_mut().rev() {
            d.stop();
        }
        self.nodes.clear();
        self.cm.stop();
        self.cm = Self::start_cm(&self.program, &self.root, &self.spec)?;
        self.start_nodes()
    }

    /// Waits until `n` nodes are alive.
    pub fn wait_nodes(&self, n: usize) -> Result<(), String> {
        let rt = crate::client::runtime().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let alive = rt.block_on(async {
                let mut cm = crate::client::connect(&self.cm.address).await.ok()?;
                let nodes = cm.list_nodes(eggroll_proto::meta::Ack {}).await.ok()?;
                Some(
                    nodes
                        .into_inner()
                        .nodes
                        .iter()
                        .filter(|n| n.node.as_ref().is_some_and(|s| s.status == "ALIVE"))
                        .count(),
                )
            });
            if alive.unwrap_or(0) >= n {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "the node managers did not register within 20 s; see the logs in {}\n{}",
                    self.root.display(),
                    self.log_tails(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until every node has `n` warm Python eggs (each says `ready` in its log under
    /// `node{i}-logs/spares/`), at most `limit`; a cluster whose spares do not warm still
    /// works (its eggs start cold), so it only says so.
    pub fn wait_spares(&self, n: usize, limit: Duration) {
        let deadline = Instant::now() + limit;
        let ready = |i: usize| -> usize {
            let dir = self.root.join(format!("node{i}-logs")).join("spares");
            std::fs::read_dir(dir)
                .map(|d| {
                    d.flatten()
                        .filter(|e| {
                            std::fs::read_to_string(e.path())
                                .is_ok_and(|t| t.lines().any(|l| l.trim() == "ready"))
                        })
                        .count()
                })
                .unwrap_or(0)
        };
        while (0..self.spec.nodes).any(|i| ready(i) < n) {
            if Instant::now() > deadline {
                eprintln!(
                    "warning: the warm Python eggs did not all start within {} s (see {}); \
                     Python eggs may start cold",
                    limit.as_secs(),
                    self.root.display()
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last `lines` lines of every daemon's log, for error messages.
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        let names = std::iter::once("clustermanager.log".to_string())
            .chain((0..self.spec.nodes).map(|i| format!("nodemanager{i}.log")));
        for name in names {
            let text = std::fs::read_to_string(self.root.join(&name)).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(lines).collect();
            out.push_str(&format!("--- {name} (last lines)\n"));
            for l in tail.into_iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Node managers first (their eggs exit with them), then the cluster manager.
        for d in self.nodes.iter_mut().rev() {
            d.stop();
        }
        self.cm.stop();
    }
}

/// Arguments of `eggroll local-cluster`.
#[derive(clap::Args)]
pub struct LocalClusterArgs {
    /// Node managers to start.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Where the daemons keep their data and logs (created if missing).
    #[arg(long, default_value = "local-cluster")]
    dir: PathBuf,
    /// The Python of Python eggs (FATE's sessions): one with the `eggroll-rs` package installed.
    #[arg(long, env = "EGGROLL_NODEMANAGER_PYTHON_EXECUTABLE")]
    python: Option<PathBuf>,
    /// Warm Python eggs per node (modules imported, waiting for a session); with `--python`,
    /// two sessions' worth by default (2 × session.python_processors_per_node, one per CPU
    /// unless set). Startup waits until they are warm.
    #[arg(long, env = "EGGROLL_NODEMANAGER_PYTHON_SPARES")]
    python_spares: Option<u32>,
    /// Exit when standard input closes: for tests and scripts that hold a pipe to it.
    #[arg(long, hide = true)]
    exit_with_stdin: bool,
}

/// Runs `eggroll local-cluster`: a cluster manager and node managers on 127.0.0.1 until
/// Ctrl-C, SIGTERM (or, with `--exit-with-stdin`, until stdin closes).
pub fn run(args: LocalClusterArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut spares = 0;
    if let Some(python) = &args.python {
        // The node managers read it from their environment.
        std::env::set_var("EGGROLL_NODEMANAGER_PYTHON_EXECUTABLE", python);
        // Every node is on this machine: each offers its share of the CPUs, and a Python
        // session gets one egg per CPU a node offers (unless configured otherwise).
        let share = (eggroll_nodemanager::resources::cpus() / args.nodes.max(1) as u32).max(1);
        std::env::set_var("EGGROLL_NODEMANAGER_CPUS", share.to_string());
        let per_session = match eggroll_core::config::EggrollConfig::load(None)
            .map_or(0, |c| c.session.python_processors_per_node)
        {
            0 => share,
            n => n as u32,
        };
        // Two sessions' worth: a job takes a session's eggs while the next session's wait.
        spares = args.python_spares.unwrap_or(2 * per_session);
        std::env::set_var("EGGROLL_NODEMANAGER_PYTHON_SPARES", spares.to_string());
    }
    let program = std::env::current_exe()?;
    let cluster = LocalCluster::start(
        &program,
        &args.dir,
        ClusterSpec {
            nodes: args.nodes,
            ..ClusterSpec::default()
        },
    )?;
    if spares > 0 {
        cluster.wait_spares(spares as usize, Duration::from_secs(180));
    }
    println!("clustermanager listening on {}", cluster.address());
    println!(
        "{} node managers; data and logs in {}; Ctrl-C stops them",
        args.nodes,
        args.dir.display()
    );
    std::io::Write::flush(&mut std::io::stdout())?;
    crate::client::runtime()?.block_on(async {
        tokio::select! {
            _ = eggroll_eggpair::process::terminate() => {}
            _ = eggroll_eggpair::process::stdin_closed(), if args.exit_with_stdin => {}
        }
    });
    drop(cluster);
    Ok(())
}
