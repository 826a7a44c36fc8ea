//! The egg-pair processes of this node: started per session as children, watched, stopped
//! or killed with their session, and reported when they exit on their own.
//!
//! Each egg holds a pipe on its stdin whose other end only this process has: when the node
//! manager dies, however it dies, the pipe closes and the eggs exit. No orphans.

use crate::spares::{Assignment, Spares};
use eggroll_core::processor;
use eggroll_core::sync::Mutex;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::{Processor, ProcessorExited};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// How a running egg is asked to end.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Close its stdin and give it a moment.
    Stop,
    /// SIGKILL.
    Kill,
}

/// How the node manager starts eggs.
#[derive(Clone, Debug)]
pub struct EggLauncher {
    /// The program, run as `<program> eggpair ...`.
    pub program: PathBuf,
    /// The Python of Python eggs, run as `<python> -m eggroll.egg ...`.
    pub python: PathBuf,
    /// The node's data dir, which every egg of the node shares.
    pub data_dir: PathBuf,
    /// Where each egg's log goes (`<logs_dir>/<session>/egg-<processor>.log`).
    pub logs_dir: PathBuf,
    /// The address eggs listen on.
    pub host: String,
    /// This node's id.
    pub node_id: u64,
    /// Warm Python eggs kept waiting for sessions (`crate::spares`); 0: none.
    pub python_spares: usize,
    /// The modules they import while they wait, comma-separated.
    pub python_preload: String,
}

/// How to end each running egg, by (session, processor id).
type Running = HashMap<(String, u64), oneshot::Sender<Ending>>;

/// The running eggs, by session and processor id.
#[derive(Clone)]
pub struct Supervisor {
    launcher: Arc<EggLauncher>,
    running: Arc<Mutex<Running>>,
    spares: Arc<Spares>,
}

impl Supervisor {
    /// A supervisor with no eggs yet.
    pub fn new(launcher: EggLauncher) -> Self {
        let spares = Spares::new(
            launcher.python.clone(),
            &launcher.python_preload,
            launcher.python_spares,
            launcher.logs_dir.clone(),
        );
        Self {
            launcher: Arc::new(launcher),
            running: Default::default(),
            spares: Arc::new(spares),
        }
    }

    /// Starts warm Python eggs until as many wait as configured. Call it on a tokio runtime,
    /// when no job needs the CPU they take (at start, when a session ends).
    pub fn refill_spares(&self) {
        self.spares.refill();
    }

    /// How many warm Python eggs wait, and how many of them are ready.
    pub fn spare_counts(&self) -> (usize, usize) {
        self.spares.counts()
    }

    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock()
    }

    /// How many eggs run now.
    pub fn count(&self) -> usize {
        self.running().len()
    }

    /// Starts one egg per processor; each reports to `cluster_manager` when it serves.
    pub fn start(
        &self,
        session_id: &str,
        processors: &[Processor],
        cluster_manager: &str,
    ) -> Result<(), String> {
        let l = &self.launcher;
        let log_dir = l.logs_dir.join(session_id);
        std::fs::create_dir_all(&log_dir)
            .map_err(|e| format!("cannot create log dir {}: {e}", log_dir.display()))?;
        for p in processors {
            if p.server_node_id != l.node_id {
                return Err(format!(
                    "processor {} is placed on node {}, but this is node {}",
                    p.id, p.server_node_id, l.node_id
                ));
            }
            let key = (session_id.to_string(), p.id);
            if self.running().contains_key(&key) {
                continue;
            }
            let log_path = log_dir.join(format!("egg-{}.log", p.id));
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .map_err(|e| format!("cannot open egg log {}: {e}", log_path.display()))?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("cannot open egg log {}: {e}", log_path.display()))?;
            let (program, args, setting) = match p.processor_type.as_str() {
                processor::PYTHON_EGG_PAIR => (
                    &l.python,
                    ["-m", "eggroll.egg"].as_slice(),
                    "nodemanager.python_executable",
                ),
                processor::EGG_PAIR | "" => (
                    &l.program,
                    ["eggpair"].as_slice(),
                    "nodemanager.eggpair_executable",
                ),
                other => {
                    return Err(format!(
                        "processor {} is of type {other:?}, which this node manager cannot start",
                        p.id
                    ))
                }
            };
            // A Python egg is a warm spare when one waits: told its session, it serves.
            let spare = (p.processor_type == processor::PYTHON_EGG_PAIR)
                .then(|| self.spares.take())
                .flatten();
            let (child, assign) = match spare {
                Some(child) => {
                    let assignment = Assignment {
                        session_id,
                        processor_id: p.id,
                        cluster_manager,
                        host: &l.host,
                        data_dir: &l.data_dir,
                        log: &log_path,
                    };
                    (child, Some(assignment.line()))
                }
                None => {
                    let child = tokio::process::Command::new(program)
                        .args(args)
                        .args(["--session-id", session_id])
                        .args(["--processor-id", &p.id.to_string()])
                        .args(["--cluster-manager", cluster_manager])
                        .args(["--host", &l.host])
                        .arg("--data-dir")
                        .arg(&l.data_dir)
                        .stdin(Stdio::piped())
                        .stdout(Stdio::from(log))
                        .stderr(Stdio::from(log2))
                        .kill_on_drop(true)
                        .spawn()
                        .map_err(|e| {
                            format!(
                                "cannot start egg-pair program {}: {e}; check {setting}",
                                program.display()
                            )
                        })?;
                    (child, None)
                }
            };
            tracing::info!(session = %session_id, processor = p.id, pid = child.id().unwrap_or(0),
                warm = assign.is_some(), "egg started");
            let (tx, rx) = oneshot::channel();
            self.running().insert(key.clone(), tx);
            let this = self.clone();
            let cm = cluster_manager.to_string();
            tokio::spawn(async move {
                this.watch(child, assign, rx, key, log_path, cm).await;
            });
        }
        Ok(())
    }

    /// Waits for an egg to end; reports it if nobody asked it to.
    async fn watch(
        &self,
        mut child: tokio::process::Child,
        assign: Option<Vec<u8>>,
        ending: oneshot::Receiver<Ending>,
        key: (String, u64),
        log_path: PathBuf,
        cluster_manager: String,
    ) {
        // Held here, not in `child`: tokio's `wait` closes a child's stdin, which the egg
        // reads as its node manager going away.
        let mut stdin = child.stdin.take();
        if let (Some(line), Some(pipe)) = (assign, stdin.as_mut()) {
            // A spare that cannot be told is gone: its exit is reported below.
            let _ = pipe.write_all(&line).await;
            let _ = pipe.flush().await;
        }
        let status = tokio::select! {
            status = child.wait() => Some(status),
            how = ending => {
                match how.unwrap_or(Ending::Kill) {
                    Ending::Kill => {
                        let _ = child.start_kill();
                    }
                    Ending::Stop => {
                        // Closing stdin asks the egg to finish; kill it if it lingers.
                        drop(stdin);
                        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                            let _ = child.start_kill();
                        }
                    }
                }
                let _ = child.wait().await;
                None
            }
        };
        self.running().remove(&key);
        let Some(status) = status else {
            tracing::info!(session = %key.0, processor = key.1, "egg stopped");
            return;
        };
        let status = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("cannot be waited for: {e}"),
        };
        let log_tail = tail(&log_path, 20);
        tracing::warn!(session = %key.0, processor = key.1, %status, "egg exited on its own");
        let report = ProcessorExited {
            session_id: key.0.clone(),
            processor_id: key.1,
            node_id: self.launcher.node_id,
            status,
            log_tail,
        };
        for attempt in 0..5u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
            if let Ok(channel) =
                eggroll_core::channel::connect(&cluster_manager, "cluster manager").await
            {
                let mut c = ClusterManagerClient::new(channel);
                if c.report_exit(report.clone()).await.is_ok() {
                    return;
                }
            }
        }
        tracing::error!(session = %key.0, processor = key.1, "cannot report the exit to the cluster manager at {cluster_manager}");
    }

    /// Ends the eggs of a session (or of every session when `session_id` is None).
    pub fn stop(&self, session_id: Option<&str>, kill: bool) -> usize {
        let how = if kill { Ending::Kill } else { Ending::Stop };
        let mut running = self.running();
        let keys: Vec<_> = running
            .keys()
            .filter(|(s, _)| session_id.is_none_or(|id| id == s))
            .cloned()
            .collect();
        for k in &keys {
            if let Some(tx) = running.remove(k) {
                let _ = tx.send(how);
            }
        }
        drop(running);
        // A session is over: a good moment to warm the eggs of the next one (not when every
        // egg ends: the node manager is stopping or starting afresh).
        if session_id.is_some() && !keys.is_empty() {
            self.refill_spares();
        }
        keys.len()
    }
}

/// The last `n` lines of a log file.
fn tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let start = bytes.len().saturating_sub(16 << 10);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
