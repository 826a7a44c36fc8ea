"""A local eggroll-rs cluster for the FATE suites: `eggroll local-cluster` as a child process
(a cluster manager and node managers on 127.0.0.1, whose Python eggs run this Python), and
the egg processes of a session as the operating system sees them."""

import os
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def eggroll_binary():
    """The `eggroll` program: $EGGROLL_BIN, else the workspace's release build."""
    path = os.environ.get("EGGROLL_BIN") or os.path.join(REPO, "target", "release", "eggroll")
    if not os.access(path, os.X_OK):
        raise SystemExit(f"no eggroll program at {path}: run `cargo build --release -p eggroll` or set EGGROLL_BIN")
    return path


class LocalCluster:
    """Started on entry, stopped (with every egg) on exit."""

    def __init__(self, nodes=2, spares=0):
        """`spares`: warm Python eggs per node (None: local-cluster's default, two sessions'
        worth, which it waits for at start)."""
        self.nodes = nodes
        self.spares = spares
        self.root = tempfile.mkdtemp(prefix="eggroll-rs-cluster-")
        self.host = self.port = None
        self._proc = None

    def __enter__(self):
        log = open(os.path.join(self.root, "local-cluster.log"), "wb")
        self._proc = subprocess.Popen(
            [eggroll_binary(), "local-cluster", "--nodes", str(self.nodes), "--dir", self.root,
             "--python", sys.executable, "--exit-with-stdin",
             *([] if self.spares is None else ["--python-spares", str(self.spares)])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
        )
        line = self._proc.stdout.readline().decode().strip()
        if "listening on" not in line:
            self._proc.kill()
            raise RuntimeError(f"the local cluster did not start; see {self.root}: {line}")
        self.host, port = line.rsplit(" ", 1)[1].rsplit(":", 1)
        self.port = int(port)
        return self

    def __exit__(self, *exc):
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        return False


def eggs_of(session_id):
    """Process ids of the Python eggs of `session_id` that run on this machine: started for
    it (its id in their arguments), or warm ones handed to it (their output in its logs)."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"eggroll.egg" not in argv:
            continue
        if session_id.encode() in argv:
            pids.append(int(pid))
            continue
        # A warm egg (started as a spare) was told its session later: its output goes to the
        # session's egg log.
        try:
            out = os.readlink(f"/proc/{pid}/fd/1")
        except OSError:
            continue
        if f"/{session_id}/" in out:
            pids.append(int(pid))
    return pids


def processor_of(pid):
    """The processor id of the egg `pid`: from its arguments, or, for a warm egg, from the
    name of the log its output goes to (`egg-<processor>.log`)."""
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().decode().split("\0")
    if "--processor-id" in argv:
        return argv[argv.index("--processor-id") + 1]
    name = os.path.basename(os.readlink(f"/proc/{pid}/fd/1"))
    if not (name.startswith("egg-") and name.endswith(".log")):
        raise ValueError(f"process {pid} is not an egg of a session (its output goes to {name})")
    return name[len("egg-"):-len(".log")]


def wait_until(cond, seconds, every=0.2):
    """Polls `cond` every `every` seconds until it holds or `seconds` pass; whether it holds."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(every)
    return cond()
