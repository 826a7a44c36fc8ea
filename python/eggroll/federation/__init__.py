"""Federation: EggRoll's `RollSiteContext` and `RollSite`, as FATE's eggroll federation
(`fate.arch.federation.backends.eggroll`) calls them, on eggroll-rs's federation client and
roll-site.

A push or a pull is a future: pushes run on threads of their own, and FATE does not wait for
them, so a pushed table is kept (its destroy deferred) until the roll-site holds all of it,
and the session's stop waits for pushes still running. A failed push tells the party it was
for (its pull fails with the reason, instead of waiting for its idle timeout) and makes this
party's next pull or push fail with it too. A pulled table lands in this party's own session
(its eggs, on a cluster) under the federation session's namespace. A job process that ends
on an uncaught exception tells every party it exchanged with why (an abort), so their pulls
fail with its reason (an egg that died, say) instead of waiting for their idle timeout.
"""

import concurrent.futures
import logging
import os
import sys
import threading
import weakref

from eggroll import _native
from eggroll.computing import RollPair

__all__ = ["RollSiteContext", "RollSite"]

L = logging.getLogger(__name__)

# How long a session's stop waits for pushes still running (EggRoll's
# `eggroll.rollsite.push.overall.timeout.sec`).
DEFAULT_PUSH_WAIT_SEC = 600


# Federation contexts of this process, told to abort when the process dies of an exception.
_LIVE = weakref.WeakSet()
_previous_excepthook = None


def _abort_all_on_crash(exc_type, exc, tb):
    """`sys.excepthook`: the traceback first, then each live context's peers are told."""
    _previous_excepthook(exc_type, exc, tb)
    why = f"{exc_type.__name__}: {exc}"
    for ctx in list(_LIVE):
        ctx._abort_peers(why)


def _watch_crashes(ctx):
    global _previous_excepthook
    _LIVE.add(ctx)
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _abort_all_on_crash


def _option(options, key, env, default):
    """A setting from the context's options, else the environment, else `default`."""
    value = (options or {}).get(key)
    if value is None:
        value = os.environ.get(env)
    return default if value is None else value


def _parties(parties):
    """FATE's `(role, party_id)` pairs as the native client takes them."""
    if not parties:
        raise ValueError("no party given: pass (role, party_id) pairs")
    out = []
    for p in parties:
        try:
            role, party_id = p
        except (TypeError, ValueError):
            raise ValueError(f"a party is a (role, party_id) pair, not {p!r}") from None
        out.append((str(role), str(party_id)))
    return out


class RollSiteContext:
    """One party's federation session (`roll_site_session_id`) through the roll-site at
    `proxy_endpoint_host:proxy_endpoint_port`; `rp_ctx` is the session received tables land in."""

    def __init__(self, roll_site_session_id, rp_ctx, party, proxy_endpoint_host, proxy_endpoint_port,
                 options=None):
        if not roll_site_session_id:
            raise ValueError("a federation needs a session id")
        self.roll_site_session_id = str(roll_site_session_id)
        self.rp_ctx = rp_ctx
        self.role, self.party_id = _parties([party])[0]
        self._options = dict(options or {})
        self.proxy_endpoint = f"{proxy_endpoint_host}:{int(proxy_endpoint_port)}"
        idle_ms = int(_option(self._options, "eggroll.rollsite.get.idle.timeout.ms",
                              "EGGROLL_ROLLSITE_GET_IDLE_TIMEOUT_MS", 0))
        self._push_wait = float(_option(self._options, "eggroll.rollsite.push.overall.timeout.sec",
                                        "EGGROLL_ROLLSITE_PUSH_TIMEOUT_SEC", DEFAULT_PUSH_WAIT_SEC))
        # How often this job tells its peers it lives (their roll-sites fail a get waiting on a
        # job whose signs stopped); None: the roll-site config's default.
        heartbeat_ms = _option(self._options, "eggroll.rollsite.heartbeat.interval.ms",
                               "EGGROLL_ROLLSITE_HEARTBEAT_INTERVAL_MS", None)
        self._fed = _native.Federation(self.proxy_endpoint, self.roll_site_session_id, self.role,
                                       self.party_id, get_idle_timeout_ms=idle_ms,
                                       heartbeat_interval_ms=None if heartbeat_ms is None else int(heartbeat_ms))
        # Pulls wait for the peer; pushes must not queue behind them.
        self._push_pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="eggroll-push")
        self._pull_pool = concurrent.futures.ThreadPoolExecutor(16, thread_name_prefix="eggroll-pull")
        self._lock = threading.Lock()
        self._pushing = set()
        self._failed = None
        # Every party this one pushed to or pulled from: who to tell if this job dies.
        self._peers = set()
        rp_ctx.session.add_exit_task(self._wait_pushes)
        _watch_crashes(self)

    @property
    def session_id(self):
        return self.roll_site_session_id

    def load(self, name, tag, options=None):
        """The transfers named `name`/`tag` of this session."""
        merged = dict(self._options)
        merged.update(options or {})
        return RollSite(name, tag, self, merged)

    def _check(self):
        if self._failed is not None:
            raise RuntimeError(self._failed)

    def _met(self, parties):
        with self._lock:
            self._peers.update(parties)

    def _abort_peers(self, why):
        """Tells every party met that this party's job failed, and why (best effort)."""
        with self._lock:
            peers = sorted(self._peers)
        if not peers:
            return
        reason = f"the job of party {self.role}:{self.party_id} failed: {why}"
        try:
            self._fed.abort(reason, peers)
        except Exception as e:
            L.error(f"could not tell {peers} that this job failed: {e}")

    def _push(self, what, send, obj, name, tag, party):
        """Runs `send` on a push thread; a failure is logged, told to `party` and kept."""
        self._check()
        self._met([party])

        def run():
            try:
                return send()
            except Exception as e:
                reason = (f"party {self.role}:{self.party_id} could not send {what} {name}/{tag} "
                          f"to {party[0]}:{party[1]}: {e}")
                L.error(reason)
                with self._lock:
                    if self._failed is None:
                        self._failed = reason
                try:
                    self._fed.abort(reason, [party])
                except Exception as abort_error:
                    L.error(f"the abort to {party[0]}:{party[1]} did not get through either: {abort_error}")
                raise

        if isinstance(obj, RollPair):
            obj._hold()
        try:
            future = self._push_pool.submit(run)
        except RuntimeError:  # the session stopped: nothing will send it
            if isinstance(obj, RollPair):
                obj._release()
            raise
        with self._lock:
            self._pushing.add(future)

        def done(f):
            with self._lock:
                self._pushing.discard(f)
            if isinstance(obj, RollPair):
                obj._release()

        future.add_done_callback(done)
        return future

    def _wait_pushes(self):
        """Waits (up to the push timeout) until every push has reached the roll-site."""
        with self._lock:
            pending = list(self._pushing)
        if pending:
            _, not_done = concurrent.futures.wait(pending, timeout=self._push_wait)
            if not_done:
                L.error(f"the session ends with {len(not_done)} pushes of federation session "
                        f"{self.roll_site_session_id} unfinished after {self._push_wait} s")
        self._push_pool.shutdown(wait=False)
        self._pull_pool.shutdown(wait=False)


class RollSite:
    """The transfers named `name`/`tag` in a federation session."""

    def __init__(self, name, tag, rs_ctx, options=None):
        self.name = str(name)
        self.tag = str(tag)
        self.ctx = rs_ctx
        self._options = options or {}

    @property
    def roll_site_session_id(self):
        return self.ctx.roll_site_session_id

    def push_bytes(self, obj, parties=None, options=None):
        """Sends `obj` (bytes) to each of `parties`; one future per party."""
        if not isinstance(obj, (bytes, bytearray, memoryview)):
            raise TypeError(f"push_bytes sends bytes, not {type(obj).__name__}: serialize it first")
        data = obj if isinstance(obj, bytes) else bytes(obj)  # the native call copies it once
        fed = self.ctx._fed
        return [
            self.ctx._push("bytes", lambda p=p: fed.remote_bytes(data, self.name, self.tag, [p]),
                           obj, self.name, self.tag, p)
            for p in _parties(parties)
        ]

    def push_rp(self, obj, parties=None, options=None):
        """Sends the table `obj` (a RollPair) to each of `parties`, straight from where its
        partitions are; one future per party. The table is kept until the push is done."""
        if not isinstance(obj, RollPair):
            raise TypeError(f"push_rp sends a RollPair, not {type(obj).__name__}")
        fed, table = self.ctx._fed, obj._t
        return [
            self.ctx._push("the table", lambda p=p: fed.remote_table(table, self.name, self.tag, [p]),
                           obj, self.name, self.tag, p)
            for p in _parties(parties)
        ]

    def pull(self, parties=None):
        """One future per party of what it sent: bytes, or a RollPair of this party's session."""
        self.ctx._check()
        parties = _parties(parties)
        self.ctx._met(parties)
        rp_ctx, fed = self.ctx.rp_ctx, self.ctx._fed

        def get(role, party_id):
            got = fed.get(rp_ctx.session.native, self.name, self.tag, role, party_id)
            if isinstance(got, (bytes, bytearray)):
                return got
            rp = RollPair(got, rp_ctx)
            # Nobody else holds a received table: it goes when FATE drops it, even where the
            # roll-site wrote it into its cluster's eggs as a persistent one.
            rp._owned = True
            return rp

        return [self.ctx._pull_pool.submit(get, role, pid) for role, pid in parties]
