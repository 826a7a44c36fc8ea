"""Where a task's Python function runs. eggroll-rs's executor hands each partition here (from
Rust, with the pairs already read): in a Python egg the function runs in the egg's own
process; in an embedded session, in a pool of worker processes, so that partitions run in
parallel as they do in FATE's standalone engine.

A partition crosses to a worker, and its output back, in a memfd of packed pairs that the
worker opens by its /proc path: no pipe, no copy in between, and nothing left behind if
either side dies.

The pool's processes are started by spawn/forkserver, never fork: this process runs
eggroll-rs's threads, and a forked child could inherit a lock one of them holds.
"""

import multiprocessing
import os
import sys
import threading
import traceback
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import cloudpickle

_lock = threading.Lock()
_pool = None
_workers = 0
# Partitions of at most this many packed bytes run in this process: for them, a round trip
# to a worker costs more than it saves.
DEFAULT_INLINE_BYTES = 32 << 10
_inline_bytes = DEFAULT_INLINE_BYTES


class FunctionFailed(Exception):
    """A function raised in a pool worker; the message is the worker's traceback."""


def use_pool(workers, inline_bytes=DEFAULT_INLINE_BYTES):
    """Runs functions in `workers` processes from now on (0: in this process), except on
    partitions of at most `inline_bytes` packed bytes, which run in this process."""
    global _workers, _inline_bytes
    with _lock:
        _workers = max(0, int(workers))
        _inline_bytes = max(0, int(inline_bytes))
        _stop_locked()


def stop_pool():
    """Ends the pool's processes (a session's end)."""
    with _lock:
        _stop_locked()


def _stop_locked():
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _get_pool():
    global _pool
    with _lock:
        if _workers == 0 or not _main_importable():
            return None
        if _pool is None:
            methods = multiprocessing.get_all_start_methods()
            context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            _pool = ProcessPoolExecutor(max_workers=_workers, mp_context=context)
        return _pool


def _main_importable():
    """False when this program's main module is a file a new process cannot load again
    (a script read from standard input): the pool's processes would die starting."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return path is None or os.path.exists(path)


def _call(kind, blob, index, left, right):
    f = cloudpickle.loads(blob)
    if kind == "map":
        return f(index, iter(left))
    return f(index, iter(left), iter(right))


def inline_limit():
    """None when functions run in this process; else the size in packed bytes up to which a
    partition still runs here rather than in the pool (this process is an embedded
    session's)."""
    return None if _get_pool() is None else _inline_bytes


def _in_worker_shared(kind, blob, index, left, right, out):
    from eggroll import _native

    try:
        pairs = _call(kind, blob, index, _native.read_packed(left),
                      None if right is None else _native.read_packed(right))
        return _native.write_packed(out, pairs)
    except BaseException:
        raise FunctionFailed(traceback.format_exc().rstrip()) from None


def run_shared(kind, blob, index, left, right, out):
    """Runs the pickled function `blob` on partition `index` in a pool worker: its pairs are
    read from the shared file at path `left` (and `right`, for "two"), its output written,
    packed, into the one at `out`; returns how many pairs it gave."""
    pool = _get_pool()
    if pool is None:  # stopped since the caller asked `inline_limit()`
        return _in_worker_shared(kind, blob, index, left, right, out)
    try:
        return pool.submit(_in_worker_shared, kind, blob, index, left, right, out).result()
    except BrokenProcessPool as e:
        # A worker died (killed, out of memory): the next call gets a new pool.
        with _lock:
            _stop_locked()
        raise RuntimeError(f"a worker process of this embedded session died while running partition {index}: {e}") from None


def run(kind, blob, index, left, right=None):
    """The output pairs of the pickled function `blob` on partition `index` ("map": its
    pairs `left`; "two": `left` and `right`), as an iterable, run in this process (where
    there is a pool, eggroll-rs calls `run_shared` for a partition past the inline limit)."""
    return _call(kind, blob, index, left, right)


def default_workers():
    """One worker per core; none off Linux, where partitions cannot cross to the workers in
    shared memory (memfd)."""
    if not sys.platform.startswith("linux"):
        return 0
    return os.cpu_count() or 1
