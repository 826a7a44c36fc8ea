//! A cluster on this machine: a cluster manager and node managers as child processes of
//! this program, on free ports of 127.0.0.1, each with its own data dir. For `eggroll bench
//! --cluster` and trials; the daemons exit with this process (they watch a pipe on stdin).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The daemons of a local cluster; dropping it stops them.
pub struct LocalCluster {
    children: Vec<Child>,
    /// The cluster manager's address.
    pub address: String,
    /// Where data and logs go.
    pub root: PathBuf,
}

/// Starts the daemon `program <args> --exit-with-stdin`, logging to `log` (at `info` unless
/// `EGGROLL_LOG` says otherwise), and reads the address from its "listening on" line.
pub fn spawn(program: &Path, args: &[String], log: &Path) -> Result<(Child, String), String> {
    let log_file =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let mut child = Command::new(program)
        .args(args)
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
    /// Starts a cluster manager and `nodes` node managers under `root`, and waits until the
    /// nodes have registered.
    pub fn start(program: &Path, root: &Path, nodes: usize) -> Result<Self, String> {
        let dir = |name: &str| root.join(name).display().to_string();
        let (cm, address) = spawn(
            program,
            &[
                "clustermanager".into(),
                "--port".into(),
                "0".into(),
                "--data-dir".into(),
                dir("cm"),
            ],
            &root.join("clustermanager.log"),
        )?;
        let mut cluster = Self {
            children: vec![cm],
            address,
            root: root.to_path_buf(),
        };
        for i in 0..nodes {
            let (nm, _) = spawn(
                program,
                &[
                    "nodemanager".into(),
                    "--port".into(),
                    "0".into(),
                    "--cluster-manager".into(),
                    cluster.address.clone(),
                    "--data-dir".into(),
                    dir(&format!("node{i}")),
                    "--logs-dir".into(),
                    dir(&format!("node{i}-logs")),
                    "--heartbeat-interval-ms".into(),
                    "500".into(),
                ],
                &root.join(format!("nodemanager{i}.log")),
            )?;
            cluster.children.push(nm);
        }
        cluster.wait_nodes(nodes)?;
        Ok(cluster)
    }

    /// Waits until `n` nodes are alive.
    fn wait_nodes(&self, n: usize) -> Result<(), String> {
        let rt = crate::client::runtime().map_err(|e| e.to_string())?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let alive = rt.block_on(async {
                let mut cm = crate::client::connect(&self.address).await.ok()?;
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
                    "the node managers did not register within 20 s; see the logs in {}",
                    self.root.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        // Node managers first (their eggs exit with them), then the cluster manager.
        for c in self.children.iter_mut().rev() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
