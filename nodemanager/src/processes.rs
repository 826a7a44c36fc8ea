//! The egg-pair processes of this node: started per session as children, watched, stopped
//! or killed with their session, and reported when they exit on their own.
//!
//! Each egg holds a pipe on its stdin whose other end only this process has: when the node
//! manager dies, however it dies, the pipe closes and the eggs exit. No orphans.

use crate::spares::{Assignment, Spare, Spares};
use eggroll_core::processor;
use eggroll_core::sync::Mutex;
use eggroll_proto::meta::cluster_manager_client::ClusterManagerClient;
use eggroll_proto::meta::{Processor, ProcessorExited};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// How a running egg is asked to end.
#[derive(Clone, Copy, Debug)]
enum Ending {
    /// Close its stdin and give it a moment; with `recycle`, a warm Python egg is released
    /// back to the spares instead (its session ended; the node manager goes on).
    Stop { recycle: bool },
    /// SIGKILL.
    Kill,
}

/// A warm egg handed a session: what it is told, its ready flag and the sessions it served.
struct Warm {
    assignment: Vec<u8>,
    ready: Arc<AtomicBool>,
    uses: u32,
}

/// How long a released egg has to say it is ready for another session.
pub const RELEASE_WAIT: Duration = Duration::from_secs(5);

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
type Running = HashMap<(String, u64), oneshot::Sender<(Ending, Done)>>;

/// Dropped when an egg asked to end has ended (or is back among the spares).
type Done = oneshot::Sender<()>;

/// The eggs [`Supervisor::stop`] asked to end.
pub struct Stopping {
    /// How many.
    pub count: usize,
    done: Vec<oneshot::Receiver<()>>,
}

impl Stopping {
    /// Waits (at most `limit`) until each has ended or, warm, is a spare again.
    pub async fn finished(self, limit: Duration) {
        let all = async {
            for d in self.done {
                let _ = d.await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// The running eggs, by session and processor id.
#[derive(Clone)]
pub struct Supervisor {
    launcher: Arc<EggLauncher>,
    running: Arc<Mutex<Running>>,
    spares: Arc<Spares>,
    /// The process id of every egg alive, by (session, processor id): for its CPU and
    /// memory figures, until its watcher sees it end or go back to the spares.
    pids: Arc<Mutex<HashMap<(String, u64), u32>>>,
}

impl Supervisor {
    /// A supervisor with no eggs yet.
    pub fn new(launcher: EggLauncher) -> Self {
        let running: Arc<Mutex<Running>> = Default::default();
        // Spares start only on an idle node. A session's eggs come back as spares when it
        // ends, so a refill is rarely needed; and one during a job (5 s of CPU per spare)
        // slowed FATE's SecureBoost from 12.5 s to 20 s on two cores.
        let serving = running.clone();
        let spares = Spares::new(
            launcher.python.clone(),
            &launcher.python_preload,
            launcher.python_spares,
            launcher.logs_dir.clone(),
        )
        .unless_busy(move || !serving.lock().is_empty());
        Self {
            launcher: Arc::new(launcher),
            running,
            spares: Arc::new(spares),
            pids: Default::default(),
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

    /// Every egg alive: (session, processor id, process id), in that order.
    pub fn eggs(&self) -> Vec<(String, u64, u32)> {
        let mut out: Vec<_> = self
            .pids
            .lock()
            .iter()
            .map(|((s, p), pid)| (s.clone(), *p, *pid))
            .collect();
        out.sort();
        out
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
            let (child, warm) = match spare {
                Some(Spare { child, ready, uses }) => {
                    let assignment = Assignment {
                        session_id,
                        processor_id: p.id,
                        cluster_manager,
                        host: &l.host,
                        data_dir: &l.data_dir,
                        log: &log_path,
                    };
                    let warm = Warm {
                        assignment: assignment.line(),
                        ready,
                        uses,
                    };
                    (child, Some(warm))
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
                warm = warm.is_some(), "egg started");
            let (tx, rx) = oneshot::channel();
            self.running().insert(key.clone(), tx);
            if let Some(pid) = child.id() {
                self.pids.lock().insert(key.clone(), pid);
            }
            let this = self.clone();
            let cm = cluster_manager.to_string();
            tokio::spawn(async move {
                this.watch(child, warm, rx, key, log_path, cm).await;
            });
        }
        Ok(())
    }

    /// Waits for an egg to end; reports it if nobody asked it to. A warm egg (`spare`: its
    /// ready flag and sessions served) is released back to the spares when its session stops.
    async fn watch(
        &self,
        mut child: tokio::process::Child,
        warm: Option<Warm>,
        ending: oneshot::Receiver<(Ending, Done)>,
        key: (String, u64),
        log_path: PathBuf,
        cluster_manager: String,
    ) {
        // Held here, not in `child`: tokio's `wait` closes a child's stdin, which the egg
        // reads as its node manager going away.
        let mut stdin = child.stdin.take();
        if let (Some(w), Some(pipe)) = (&warm, stdin.as_mut()) {
            // A spare that cannot be told is gone: its exit is reported below.
            let _ = pipe.write_all(&w.assignment).await;
            let _ = pipe.flush().await;
        }
        let status = tokio::select! {
            status = child.wait() => Some(status),
            how = ending => {
                // `_done` goes when this egg is dealt with: `Stopping::finished` waits for it.
                let (how, _done) = match how {
                    Ok((how, done)) => (how, Some(done)),
                    Err(_) => (Ending::Kill, None),
                };
                if let (Ending::Stop { recycle: true }, Some(w)) = (how, warm) {
                    if let Some(pipe) = stdin.take() {
                        match release(child, pipe, &w.ready).await {
                            Ok(child) => {
                                let back = Spare { child, ready: w.ready, uses: w.uses + 1 };
                                match self.spares.put_back(back) {
                                    None => tracing::info!(session = %key.0, processor = key.1,
                                        "egg released to the spares"),
                                    // Dropped: killed (kill_on_drop) and reaped by tokio.
                                    Some(retired) => drop(retired),
                                }
                            }
                            Err(()) => tracing::info!(session = %key.0, processor = key.1,
                                "egg not released (it did not say ready): ended"),
                        }
                        self.running().remove(&key);
                        self.pids.lock().remove(&key);
                        return;
                    }
                }
                match how {
                    Ending::Kill => {
                        let _ = child.start_kill();
                    }
                    Ending::Stop { .. } => {
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
        self.pids.lock().remove(&key);
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
    pub fn stop(&self, session_id: Option<&str>, kill: bool) -> Stopping {
        // A session is over: its warm eggs go back to the spares, and spares are refilled
        // (not when every egg ends: the node manager is stopping or starting afresh).
        let how = if kill {
            Ending::Kill
        } else {
            Ending::Stop {
                recycle: session_id.is_some(),
            }
        };
        let mut running = self.running();
        let keys: Vec<_> = running
            .keys()
            .filter(|(s, _)| session_id.is_none_or(|id| id == s))
            .cloned()
            .collect();
        let mut waits = Vec::new();
        for k in &keys {
            if let Some(tx) = running.remove(k) {
                let (done, finished) = oneshot::channel();
                if tx.send((how, done)).is_ok() {
                    waits.push(finished);
                }
            }
        }
        drop(running);
        if session_id.is_some() && !keys.is_empty() {
            if kill {
                self.refill_spares();
            } else {
                // Once its eggs are back (or ended), so that a spare being released is not
                // taken for a missing one.
                let this = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(RELEASE_WAIT + Duration::from_millis(500)).await;
                    this.refill_spares();
                });
            }
        }
        Stopping {
            count: keys.len(),
            done: waits,
        }
    }
}

/// Releases a warm egg whose session ended: tells it `release` and waits (at most
/// [`RELEASE_WAIT`]) until it says it is ready again; gives it back with its stdin. Err when it
/// does not (it is then killed).
async fn release(
    mut child: tokio::process::Child,
    mut stdin: tokio::process::ChildStdin,
    ready: &AtomicBool,
) -> Result<tokio::process::Child, ()> {
    let line = format!("{}\n", processor::RELEASE_LINE);
    if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
        let _ = child.start_kill();
        let _ = child.wait().await;
        return Err(());
    }
    let deadline = tokio::time::Instant::now() + RELEASE_WAIT;
    while tokio::time::Instant::now() < deadline {
        if ready.load(Ordering::Acquire) {
            child.stdin = Some(stdin);
            return Ok(child);
        }
        if !matches!(child.try_wait(), Ok(None)) {
            return Err(()); // it exited (a task still ran in it, say)
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = child.start_kill();
    let _ = child.wait().await;
    Err(())
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
