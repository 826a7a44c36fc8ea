"""CPU seconds that the processes of a FATE job spent while it ran, by what they are, and how
busy the machine was: where a job's time goes when both parties share one machine's cores.

A sampler thread reads `/proc` every `PERIOD` seconds. It counts:

- `job`: the job processes started by the suite (FATE's driver of each party);
- `functions`: their descendants (FATE standalone's worker pool) and eggroll-rs's Python eggs
  (`python -m eggroll.egg`): where the tables' functions run, on either back end;
- `daemons`: the `eggroll` program's processes (cluster managers, node managers, roll-sites).

A process counts from the first sample that sees it (from zero if it started after the first
sample) to the last one; one that lives less than a period is missed, and one that ends loses
at most a period of its time. A sample costs this process about 1.4 ms of CPU on the
development machine (130 processes), under 1% of a core.
"""

import os
import threading
import time

PERIOD = 0.2
_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid):
    """(parent pid, user + system CPU seconds) of `pid`, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: the fields follow the last ')'.
    fields = text[text.rfind(")") + 2:].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _argv(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _machine():
    """(idle, all) CPU seconds of the whole machine since it started."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (ticks[3] + ticks[4]) / _TICK, sum(ticks) / _TICK


class CpuUse:
    """Counts CPU seconds by kind of process from `start()` to `stop()`: the job processes
    are told as they start (`add_job`); `program` is the `eggroll` binary's path."""

    def __init__(self, program):
        self.program = os.path.realpath(program).encode()  # as /proc gives argv: bytes
        self.jobs = set()
        self._kind = {}  # pid -> kind, or None for a process that is not counted
        self._first = {}  # pid -> CPU seconds when first seen
        self._last = {}  # pid -> CPU seconds when last seen
        self._done = threading.Event()
        self._thread = None
        # (wall time, {kind: CPU seconds so far}, machine (idle, all)) at each sample: what a
        # window of the run (a job's span) spent is read off it.
        self.timeline = []

    def add_job(self, pid):
        self.jobs.add(pid)

    def _classify(self, pid, parent):
        argv = _argv(pid)
        if b"eggroll.egg" in argv:
            return "functions"
        if argv and os.path.realpath(argv[0]) == self.program:
            return "daemons"
        if pid in self.jobs:
            return "job"
        # A descendant of a job process (standalone's pool, its forkserver).
        seen = set()
        while parent > 1 and parent not in seen:
            if parent in self.jobs:
                return "functions"
            seen.add(parent)
            st = _stat(parent)
            if st is None:
                return None
            parent = st[0]
        return None

    def _sample(self, first):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            st = _stat(pid)
            if st is None:
                continue
            parent, cpu = st
            # A pid once passed over is looked at again only if it has become a job process
            # since (`add_job` follows its start).
            if pid not in self._kind or (self._kind[pid] is None and pid in self.jobs):
                self._kind[pid] = self._classify(pid, parent)
                if self._kind[pid] is None:
                    continue
                self._first[pid] = cpu if first else 0.0
            self._last[pid] = cpu
        by = {"job": 0.0, "functions": 0.0, "daemons": 0.0}
        for pid, kind in self._kind.items():
            if kind is not None and pid in self._last:
                by[kind] += self._last[pid] - self._first[pid]
        self.timeline.append((time.time(), by, _machine()))
        return by

    def _run(self):
        while not self._done.wait(PERIOD):
            self._sample(first=False)

    def start(self):
        self._machine = _machine()
        self._sample(first=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """{kind: CPU seconds} and the machine's idle share (0-1) over the run."""
        self._done.set()
        self._thread.join()
        by = self._sample(first=False)
        idle0, all0 = self._machine
        idle1, all1 = _machine()
        return by, (idle1 - idle0) / max(all1 - all0, 1e-9)

    def within(self, began, ended):
        """{kind: CPU seconds} and the machine's idle share (0-1) from wall time `began` to
        `ended`, from the samples nearest them (a sample every `PERIOD` seconds)."""
        def at(t):
            return min(self.timeline, key=lambda s: abs(s[0] - t))

        _, by0, (idle0, all0) = at(began)
        _, by1, (idle1, all1) = at(ended)
        return {k: by1[k] - by0[k] for k in by1}, (idle1 - idle0) / max(all1 - all0, 1e-9)
