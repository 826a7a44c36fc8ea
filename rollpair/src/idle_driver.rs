//! Work a cluster session spawns on its runtime and no call waits for (an in-memory table's
//! destroy), and the thread that sends it while the client makes no call.
//!
//! The session's runtime is current-thread: it moves only while some thread waits on it.
//! Usually the client's next call does, within milliseconds, at no cost of its own (the
//! destroy shares that call's wake-ups and connections). But a client may make no call for
//! long (a FATE job waiting on the other party), while the eggs hold the dropped tables in
//! memory: after a short grace, this thread waits on the runtime itself until the work is done.

use crate::error::{Error, Result};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::runtime::Runtime;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// How long spawned work may wait for the next call before this thread sends it.
const GRACE: Duration = Duration::from_millis(50);

/// How long this thread waits on the runtime at a time.
const LONGEST: Duration = Duration::from_secs(10);

/// Spawned work not yet done.
#[derive(Default)]
struct Pending {
    count: AtomicUsize,
    /// Told when `count` drops to zero.
    none: Notify,
}

/// Counts one piece of work as pending while it lives (done, or dropped with the runtime).
struct Counted(Arc<Pending>);

impl Drop for Counted {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.none.notify_waiters();
        }
    }
}

/// Spawns work on a session's runtime and sees that it moves while the client is idle.
pub(crate) struct IdleDriver {
    runtime: Arc<Runtime>,
    pending: Arc<Pending>,
    /// Wakes the driving thread; it ends when this is dropped.
    wake: Sender<()>,
}

impl IdleDriver {
    /// Starts the driving thread of `runtime`.
    pub(crate) fn start(runtime: Arc<Runtime>) -> Result<Self> {
        let pending = Arc::new(Pending::default());
        let (wake, woken) = channel();
        let (weak, p) = (Arc::downgrade(&runtime), pending.clone());
        std::thread::Builder::new()
            .name("eggroll-idle-driver".into())
            .spawn(move || drive(woken, weak, p))
            .map_err(|e| Error::Pool(format!("cannot start the session's idle driver: {e}")))?;
        Ok(Self {
            runtime,
            pending,
            wake,
        })
    }

    /// Runs `work` on the runtime: sent by the next call's wait, or by the driving thread
    /// after [`GRACE`]. Its handle may be awaited from any runtime.
    pub(crate) fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        self.pending.count.fetch_add(1, Ordering::AcqRel);
        let counted = Counted(self.pending.clone());
        let handle = self.runtime.spawn(async move {
            let _counted = counted;
            work.await;
        });
        let _ = self.wake.send(());
        handle
    }
}

/// The driving thread: after each wake and a grace, waits on the runtime until no spawned
/// work is pending; ends with the session (its `IdleDriver` or its runtime dropped).
fn drive(woken: Receiver<()>, runtime: Weak<Runtime>, pending: Arc<Pending>) {
    while woken.recv().is_ok() {
        std::thread::sleep(GRACE);
        while woken.try_recv().is_ok() {}
        if pending.count.load(Ordering::Acquire) == 0 {
            continue; // the calls in between sent it
        }
        let Some(runtime) = runtime.upgrade() else {
            return;
        };
        let done = async {
            loop {
                // Made before the check, so a drop to zero in between still wakes it.
                let none = pending.none.notified();
                if pending.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                none.await;
            }
        };
        // Bounded: work stuck on an egg that does not answer is left to the calls.
        runtime.block_on(async { tokio::time::timeout(LONGEST, done).await.ok() });
    }
}
