//! A Python thread state kept for each Rust thread that runs Python functions (an egg's task
//! threads, an embedded session's), from its first call until the thread ends.
//!
//! Without it, each `Python::with_gil` on such a thread makes a thread state and deletes it
//! on release, and a deleted state unmaps its frame stack: a munmap, which in a process of
//! many threads interrupts every core to flush its TLB. A partition's function takes the lock
//! several times (unpickle, run, each batch of output), and on a small table that churn was
//! most of an egg's CPU.

use pyo3::ffi;
use std::cell::RefCell;

/// This thread's own thread state, with Python's lock released.
struct Kept {
    gil: ffi::PyGILState_STATE,
    state: *mut ffi::PyThreadState,
}

impl Drop for Kept {
    fn drop(&mut self) {
        // SAFETY: `keep` made both on this thread, which is ending and holds no lock of
        // Python's: taking the lock back and releasing the state deletes it, as a
        // `with_gil` would have at its end.
        unsafe {
            if ffi::Py_IsInitialized() != 0 {
                ffi::PyEval_RestoreThread(self.state);
                ffi::PyGILState_Release(self.gil);
            }
        }
    }
}

thread_local! {
    static KEPT: RefCell<Option<Kept>> = const { RefCell::new(None) };
}

/// Gives this thread a thread state that lasts as long as it does, once; later
/// `with_gil`s on it find that state instead of making their own. Does nothing on a thread
/// that has one already (Python's own threads, and any thread within a `with_gil`).
fn keep() {
    KEPT.with(|kept| {
        let Ok(mut kept) = kept.try_borrow_mut() else {
            return;
        };
        if kept.is_some() {
            return;
        }
        // SAFETY: the interpreter runs (this module is loaded in it). A thread with no state
        // holds no lock of Python's, so Ensure takes it with a new state and SaveThread
        // releases it again, leaving the state counted once more than any `with_gil`
        // releases: it outlives them.
        unsafe {
            if !ffi::PyGILState_GetThisThreadState().is_null() {
                return;
            }
            let gil = ffi::PyGILState_Ensure();
            let state = ffi::PyEval_SaveThread();
            *kept = Some(Kept { gil, state });
        }
    });
}

/// `Python::with_gil` on a thread whose state is kept (see [`keep`]).
pub fn with_gil<R>(f: impl for<'py> FnOnce(pyo3::Python<'py>) -> R) -> R {
    keep();
    pyo3::Python::with_gil(f)
}
