"""Sessions: `session_init` as FATE's eggroll back end calls it."""

import atexit
import os
import uuid

from eggroll import _native
from eggroll.computing import _runner


def _data_dir(options):
    """Where an embedded session keeps its tables."""
    given = (options or {}).get("eggroll.data_dir")
    if given:
        return given
    home = os.environ.get("EGGROLL_HOME") or os.path.join(os.path.expanduser("~"), ".eggroll-rs")
    return os.path.join(home, "data")


class Session:
    """One eggroll-rs session, embedded or on a cluster."""

    def __init__(self, session_id=None, host=None, port=None, options=None):
        options = dict(options or {})
        self._options = options
        self._embedded = host is None
        if self._embedded:
            # Embedded: our standalone engine in this process, functions in a worker pool.
            self._ctx = _native.Context.standalone(_data_dir(options))
            self._session_id = session_id or self._ctx.session_id()
            workers = options.get("eggroll.embedded.workers", os.environ.get("EGGROLL_EMBEDDED_WORKERS"))
            inline = options.get("eggroll.embedded.inline.bytes", os.environ.get("EGGROLL_EMBEDDED_INLINE_BYTES"))
            _runner.use_pool(
                _runner.default_workers() if workers is None else int(workers),
                _runner.DEFAULT_INLINE_BYTES if inline is None else int(inline),
            )
        else:
            if port is None:
                raise ValueError("a cluster session needs the cluster manager's port as well as its host")
            processors = int(options.get("eggroll.session.processors.per.node", 0) or 0)
            lease_ms = int(options.get("eggroll.session.lease.ms", 0) or 0)
            self._ctx = _native.Context.cluster(
                str(host), int(port), session_id, processors_per_node=processors, lease_ms=lease_ms
            )
            self._session_id = self._ctx.session_id()
            # A job process that ends without stopping its session must not leave its eggs
            # running on the cluster until their lease runs out.
            atexit.register(self.stop)
        self._stopped = False
        self._exit_tasks = []

    @property
    def native(self):
        """The native context (`eggroll._native.Context`)."""
        return self._ctx

    def get_session_id(self):
        return self._session_id

    def get_option(self, key, default=None):
        return self._options.get(key, default)

    def is_stopped(self):
        return self._stopped

    def add_exit_task(self, func):
        """Runs `func` when the session stops, before its tables go (a federation waits for
        its pushes there)."""
        self._exit_tasks.append(func)

    def _run_exit_tasks(self):
        tasks, self._exit_tasks = self._exit_tasks, []
        for task in reversed(tasks):
            try:
                task()
            except Exception as e:  # one failing task must not keep the session alive
                print(f"eggroll: an exit task of session {self._session_id} failed: {e}")

    def stop(self):
        if not self._stopped:
            self._run_exit_tasks()
            self._stopped = True
            if self._embedded:
                _runner.stop_pool()
            self._ctx.stop()

    def kill(self):
        if not self._stopped:
            self._stopped = True
            if self._embedded:
                _runner.stop_pool()
            self._ctx.stop(kill=True)


def session_init(
    session_id=None,
    host=None,
    port=None,
    options=None,
    config=None,
    config_options=None,
    config_properties_file=None,
):
    """A session: embedded without `host`, else on the cluster whose cluster manager is at
    `host:port`. The `config*` arguments of EggRoll's client are accepted; eggroll-rs takes
    its settings from `options` and the environment."""
    return Session(session_id=session_id or f"session_{uuid.uuid4().hex}", host=host, port=port, options=options)
