//! Warm Python eggs: Python processes started ahead of any session, which import the modules
//! FATE's functions need (`nodemanager.python_preload`: torch, pandas and FATE take seconds of
//! CPU per process) and then wait for a session. A session's Python egg is a spare handed its
//! session, so a job does not pay those imports on its first task. Spares are started when
//! the node manager starts and again when a session's eggs end, never while a job runs (their
//! imports would take its CPU).
//!
//! A spare prints `ready` on its stdout once its imports are done and reads one line on its
//! stdin: the JSON of its assignment. Like any egg, it exits when that pipe closes. When its
//! session ends it is released (`release` on its stdin): it stops serving, prints `ready`
//! again and comes back here, so the next session's eggs cost no imports and no warming
//! competes with a job for the CPU. It is retired after [`MAX_USES`] sessions, or when enough
//! spares wait already.

use eggroll_core::sync::Mutex;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

/// How many sessions one Python process serves before it is retired: what the sessions'
/// functions leave behind in it (imported modules, fragmented heap) stays bounded.
pub const MAX_USES: u32 = 50;

/// A started spare.
pub struct Spare {
    /// The process, its stdin still open.
    pub child: Child,
    /// Set once it imported its modules, and again each time it is released; cleared while it
    /// serves a session.
    pub ready: Arc<AtomicBool>,
    /// Sessions it has served.
    pub uses: u32,
}

/// The spares of a node and how to start more.
pub struct Spares {
    python: PathBuf,
    preload: String,
    wanted: usize,
    logs_dir: PathBuf,
    waiting: Mutex<VecDeque<Spare>>,
    started: AtomicU64,
    /// Whether an egg of the node serves a session now: no spare starts then.
    busy: Box<dyn Fn() -> bool + Send + Sync>,
}

/// What a spare is told when it becomes an egg: the arguments of `python -m eggroll.egg`, and
/// the log its output goes to from then on.
pub struct Assignment<'a> {
    /// The session.
    pub session_id: &'a str,
    /// Its processor id.
    pub processor_id: u64,
    /// The cluster manager it reports to.
    pub cluster_manager: &'a str,
    /// The address it listens on.
    pub host: &'a str,
    /// The node's data dir.
    pub data_dir: &'a Path,
    /// The egg's log.
    pub log: &'a Path,
}

impl Assignment<'_> {
    /// The line a spare reads.
    pub fn line(&self) -> Vec<u8> {
        let mut line = serde_json::json!({
            "session_id": self.session_id,
            "processor_id": self.processor_id,
            "cluster_manager": self.cluster_manager,
            "host": self.host,
            "data_dir": self.data_dir,
            "log": self.log,
        })
        .to_string()
        .into_bytes();
        line.push(b'\n');
        line
    }
}

impl Spares {
    /// Keeps `wanted` spares of `python`, each importing the comma-separated `preload`.
    pub fn new(python: PathBuf, preload: &str, wanted: usize, logs_dir: PathBuf) -> Self {
        Self {
            python,
            preload: preload.trim().to_string(),
            wanted,
            logs_dir,
            waiting: Mutex::new(VecDeque::new()),
            started: AtomicU64::new(0),
            busy: Box::new(|| false),
        }
    }

    /// The same spares, started only while `busy` says that no egg of the node serves a
    /// session: a spare's imports take seconds of CPU from a running job.
    pub fn unless_busy(mut self, busy: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        self.busy = Box::new(busy);
        self
    }

    /// Takes a spare that is still alive, a ready one first; None when there is none.
    pub fn take(&self) -> Option<Spare> {
        let mut waiting = self.waiting.lock();
        waiting.retain_mut(|s| matches!(s.child.try_wait(), Ok(None)));
        let i = waiting
            .iter()
            .position(|s| s.ready.load(Ordering::Acquire))
            .unwrap_or(0);
        let spare = waiting.remove(i)?;
        spare.ready.store(false, Ordering::Release);
        Some(spare)
    }

    /// Takes back a released spare (ready again); gives it back when it is to be retired
    /// instead: enough wait, or it served [`MAX_USES`] sessions.
    pub fn put_back(&self, spare: Spare) -> Option<Spare> {
        let mut waiting = self.waiting.lock();
        waiting.retain_mut(|s| matches!(s.child.try_wait(), Ok(None)));
        if waiting.len() >= self.wanted || spare.uses >= MAX_USES {
            return Some(spare);
        }
        waiting.push_back(spare);
        None
    }

    /// How many wait, and how many of them are ready.
    pub fn counts(&self) -> (usize, usize) {
        let waiting = self.waiting.lock();
        let ready = waiting
            .iter()
            .filter(|s| s.ready.load(Ordering::Acquire))
            .count();
        (waiting.len(), ready)
    }

    /// Starts a spare when fewer than `wanted` wait, none is still importing and no egg
    /// serves a session; each one, once ready, starts the next. A spare that cannot start is
    /// logged, not retried. Call it on a tokio runtime.
    pub fn refill(self: &Arc<Self>) {
        if self.wanted == 0 || (self.busy)() {
            return;
        }
        let dir = self.logs_dir.join("spares");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot start Python spares: no log dir");
            return;
        }
        let mut waiting = self.waiting.lock();
        waiting.retain_mut(|s| matches!(s.child.try_wait(), Ok(None)));
        let warming = waiting.iter().any(|s| !s.ready.load(Ordering::Acquire));
        if warming || waiting.len() >= self.wanted {
            return;
        }
        let n = self.started.fetch_add(1, Ordering::Relaxed);
        match self.spawn(&dir.join(format!("spare-{n}.log"))) {
            Ok(s) => waiting.push_back(s),
            Err(e) => tracing::warn!(python = %self.python.display(), error = %e,
                "cannot start a Python spare; Python eggs start cold (check nodemanager.python_executable)"),
        }
    }

    fn spawn(self: &Arc<Self>, log: &Path) -> std::io::Result<Spare> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut child = Command::new(&self.python)
            .args(["-m", "eggroll.egg", "--spare", "--preload", &self.preload])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()?;
        let ready = Arc::new(AtomicBool::new(false));
        if let Some(out) = child.stdout.take() {
            let (flag, spares) = (ready.clone(), Arc::downgrade(self));
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(out).lines();
                let mut first = true;
                while let Ok(Some(line)) = lines.next_line().await {
                    if line.trim() == "ready" {
                        flag.store(true, Ordering::Release);
                        // Warm for the first time: the next one warms now. (Ready again after
                        // a session, it comes back by `put_back`.)
                        if std::mem::take(&mut first) {
                            if let Some(s) = spares.upgrade() {
                                s.refill();
                            }
                        }
                    }
                }
            });
        }
        Ok(Spare {
            child,
            ready,
            uses: 0,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;

    /// A stand-in for `python -m eggroll.egg --spare`: warms for `warm` seconds, says ready,
    /// then writes the line it is given to `<dir>/assigned-<pid>`.
    fn fake_python(dir: &Path, warm: &str) -> PathBuf {
        let path = dir.join("python");
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\nsleep {warm}\necho ready\nread line\necho \"$line\" > {}/assigned-$$\n",
                dir.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..200 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("timed out waiting until {what}");
    }

    #[tokio::test]
    async fn spares_warm_one_at_a_time_and_a_taken_one_reads_its_assignment() {
        let dir = tempfile::tempdir().unwrap();
        let python = fake_python(dir.path(), "0.3");
        let spares = Arc::new(Spares::new(python, "m", 3, dir.path().join("logs")));
        spares.refill();
        // One warms at a time: never two not ready at once, until three are ready.
        for _ in 0..60 {
            let (waiting, ready) = spares.counts();
            assert!(waiting - ready <= 1, "{waiting} waiting, {ready} ready");
            if ready == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        until("three are ready", || spares.counts() == (3, 3)).await;

        let mut child = spares.take().expect("a spare").child;
        assert_eq!(spares.counts(), (2, 2));
        let pid = child.id().unwrap();
        let line = Assignment {
            session_id: "s1",
            processor_id: 7,
            cluster_manager: "127.0.0.1:1",
            host: "127.0.0.1",
            data_dir: dir.path(),
            log: &dir.path().join("egg.log"),
        }
        .line();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&line).await.unwrap();
        child.wait().await.unwrap();
        let got = std::fs::read_to_string(dir.path().join(format!("assigned-{pid}"))).unwrap();
        let v: serde_json::Value = serde_json::from_str(&got).unwrap();
        assert_eq!(
            (v["session_id"].as_str(), v["processor_id"].as_u64()),
            (Some("s1"), Some(7))
        );

        // Refilled back to three.
        spares.refill();
        until("refilled", || spares.counts() == (3, 3)).await;
    }

    #[tokio::test]
    async fn no_spare_starts_while_an_egg_serves_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let busy = Arc::new(AtomicBool::new(true));
        let flag = busy.clone();
        let spares = Arc::new(
            Spares::new(
                fake_python(dir.path(), "0.3"),
                "m",
                3,
                dir.path().join("logs"),
            )
            .unless_busy(move || flag.load(Ordering::Acquire)),
        );
        spares.refill();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(spares.counts(), (0, 0), "a spare started on a busy node");
        // Idle: one starts; a session begins while it warms, so the chain stops at it.
        busy.store(false, Ordering::Release);
        spares.refill();
        assert_eq!(spares.counts(), (1, 0));
        busy.store(true, Ordering::Release);
        until("the first is ready", || spares.counts() == (1, 1)).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(
            spares.counts(),
            (1, 1),
            "the next spare started during a session"
        );
        // The session is over: the rest warm.
        busy.store(false, Ordering::Release);
        spares.refill();
        until("three are ready", || spares.counts() == (3, 3)).await;
    }

    #[tokio::test]
    async fn a_released_spare_comes_back_unless_enough_wait_or_it_served_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let spares = Arc::new(Spares::new(
            fake_python(dir.path(), "0"),
            "m",
            2,
            dir.path().join("logs"),
        ));
        spares.refill();
        until("two are ready", || spares.counts() == (2, 2)).await;
        let taken = spares.take().expect("a spare");
        assert!(
            !taken.ready.load(Ordering::Acquire),
            "a taken spare still counts as ready"
        );
        assert_eq!(spares.counts(), (1, 1));
        // Released (ready again, one more session served): back among the spares.
        taken.ready.store(true, Ordering::Release);
        let back = Spare {
            uses: taken.uses + 1,
            ..taken
        };
        assert!(spares.put_back(back).is_none());
        assert_eq!(spares.counts(), (2, 2));
        // Enough wait: a third is retired.
        let extra = spares.take().expect("a spare");
        spares.refill();
        until("refilled to two", || spares.counts() == (2, 2)).await;
        extra.ready.store(true, Ordering::Release);
        assert!(
            spares.put_back(extra).is_some(),
            "a third spare was kept where two are wanted"
        );
        // One that served its sessions is retired even where there is room.
        let mut worn = spares.take().expect("a spare");
        worn.uses = MAX_USES;
        assert!(
            spares.put_back(worn).is_some(),
            "a spare past MAX_USES was kept"
        );
    }

    #[tokio::test]
    async fn a_spare_that_dies_is_not_handed_out_and_none_are_kept_when_none_are_wanted() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead");
        std::fs::write(&dead, "#!/bin/sh\nexit 3\n").unwrap();
        std::fs::set_permissions(&dead, std::fs::Permissions::from_mode(0o755)).unwrap();
        let spares = Arc::new(Spares::new(dead, "", 2, dir.path().join("logs")));
        spares.refill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(spares.take().is_none(), "a dead spare was handed out");

        let none = Arc::new(Spares::new(
            fake_python(dir.path(), "0"),
            "",
            0,
            dir.path().join("logs"),
        ));
        none.refill();
        assert_eq!(none.counts(), (0, 0));
    }
}
