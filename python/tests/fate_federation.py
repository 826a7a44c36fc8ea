"""FATE's own two-party jobs on eggroll-rs, against the same jobs on FATE's standalone back end.

Each job (`fate_jobs.py`: FATE's PSI, hetero SecureBoost, SSHE logistic regression) runs as
two processes, guest and host, each through FATE's eggroll computing back end and its eggroll
("osx" stream) federation, i.e. our `eggroll` module, on these layouts:

- `two-parties`: each party its own cluster (`eggroll local-cluster`, Python eggs) and its own
  roll-site (`eggroll rollsite`), the roll-sites routing to each other over loopback;
- `one-site`: one cluster and one roll-site serving both parties (`self_party` lists both),
  as FATE's multiprocess launcher runs both ranks;
- `two-parties-tls`: as `two-parties`, the link between the two roll-sites over mutual TLS
  (each party its own CA, made here with openssl; each roll-site trusts the other's).

Then the same jobs on FATE's standalone computing and federation. It checks: PSI's
intersection equals the plain set intersection; SecureBoost's guest labels are identical and its
scores those of one of standalone's runs, or no further from them than standalone's own reruns
(see `check`);
SSHE-LR's coefficients and losses are within 1e-6; no egg of a job is left on either
cluster. It prints each job's time beside standalone's, and the ops FATE called: the job's
span, from both parties' start (each waits, once it has imported FATE and what the job uses,
until the other has too: the same imports on both back ends) to the last one's end, and also
the whole processes' wall time.
`--compare` prints each party's per-op times beside standalone's, and the CPU seconds the
job's processes spent by kind (FATE's drivers, where the functions ran, eggroll-rs's daemons)
with how idle the machine was (`cpu_use`).

Faults, on `two-parties` (a SecureBoost job each): the host's job process killed mid-job (the
guest fails once the host's signs of life have stopped for the liveness bound, long before its
idle timeout, naming the host; the host's eggs end with its session's lease); an egg of the
host killed mid-job (both parties fail naming the processor: the host's op fails, and its job's
abort reaches the guest). Before the jobs, a push the peer's roll-site
refuses (the peer's pull fails at once).

    python fate_federation.py [--jobs psi,sbt,sshe-lr] [--layouts two-parties,one-site] [--repeat N]
        [--compare]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cpu_use import CpuUse  # noqa: E402
from local_cluster import LocalCluster, eggroll_binary, eggs_of, processor_of, wait_until  # noqa: E402
from fate_jobs import START_POLL_SECONDS, psi_ids, ready_file  # noqa: E402

GUEST, HOST = "9999", "10000"
JOB_TIMEOUT = 900
# Whether `run_pair` counts the CPU seconds of the job's processes (`--compare`).
MEASURE_CPU = False


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Rollsite:
    """An `eggroll rollsite` process of `party` on `port`, routing by `routes` (a dict that is
    written as its route table); stopped on exit."""

    def __init__(self, root, party, port, routes, tls=None, env=None):
        self.party, self.port, self.tls, self.env = party, port, tls, env or {}
        self.dir = os.path.join(root, f"rollsite-{party}")
        os.makedirs(self.dir, exist_ok=True)
        self.routes = os.path.join(self.dir, "route_table.json")
        with open(self.routes, "w") as f:
            json.dump(routes, f)
        self._proc = None

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def __enter__(self):
        log = open(os.path.join(self.dir, "rollsite.log"), "wb")
        env = dict(os.environ, EGGROLL_DATA_DIR=os.path.join(self.dir, "data"), **self.env)
        tls = []
        if self.tls:
            tls = ["--secure-port", str(self.tls["port"]), "--tls-cert", self.tls["cert"],
                   "--tls-key", self.tls["key"], "--tls-ca", self.tls["ca"]]
        self._proc = subprocess.Popen(
            [eggroll_binary(), "rollsite", "--party-id", self.party, "--host", "127.0.0.1",
             "--port", str(self.port), "--http-port", "0", "--route-table", self.routes, "--exit-with-stdin", *tls],
            stdin=subprocess.PIPE, stdout=log, stderr=subprocess.PIPE, env=env,
        )
        line = self._proc.stderr.readline().decode()
        if "listening" not in line:
            self._proc.kill()
            raise RuntimeError(f"the roll-site of party {self.party} did not start: {line}")
        # Its log goes on to the file: a pipe nobody drains would stall it once full.
        threading.Thread(target=shutil.copyfileobj, args=(self._proc.stderr, log), daemon=True).start()
        return self

    def __exit__(self, *exc):
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
        return False


def route_to(party, port, tls=False):
    hop = {"ip": "127.0.0.1", "port": port}
    if tls:
        hop["use_ssl"] = True
    return {"route_table": {party: {"default": [hop]}}, "permission": {"default_allow": True}}


def party_tls(root, party):
    """A CA of `party` and its roll-site's certificate for 127.0.0.1, made with openssl."""
    d = os.path.join(root, f"tls-{party}")
    os.makedirs(d, exist_ok=True)
    ca, ca_key = os.path.join(d, "ca.crt"), os.path.join(d, "ca.key")
    cert, key = os.path.join(d, "party.crt"), os.path.join(d, "party.key")
    csr, ext = os.path.join(d, "party.csr"), os.path.join(d, "party.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
    run("req", "-x509", *ec, "-days", "2", "-keyout", ca_key, "-out", ca,
        "-subj", f"/O=party {party}/CN=test CA {party}",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", f"/O=party {party}/CN=rollsite {party}")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "2",
        "-extfile", ext, "-out", cert)
    return {"cert": cert, "key": key, "ca_of_party": ca}


def run_pair(job, backend, root, fed_id, guest_args, host_args, show=False):
    """Runs both parties of `job`; returns (guest result, host result, wall seconds). With
    `show`, the guest's FATE log goes to this terminal as it runs. With `MEASURE_CPU`, the
    guest's result also holds `cpu`: the CPU seconds by kind of process and the machine's
    idle share, over the run and over the job's span (see `cpu_use`)."""
    py = sys.executable
    outs, procs = {}, []
    cpu = CpuUse(eggroll_binary()).start() if MEASURE_CPU else None
    started = time.perf_counter()
    go = os.path.join(root, f"{fed_id}-start")
    for role, extra in (("guest", guest_args), ("host", host_args)):
        out = os.path.join(root, f"{fed_id}-{role}.json")
        log = open(os.path.join(root, f"{fed_id}-{role}.log"), "wb")
        cmd = [py, os.path.join(HERE, "fate_jobs.py"), "--job", job, "--role", role, "--guest", GUEST,
               "--host", HOST, "--federation-id", fed_id, "--backend", backend, "--out", out,
               "--start-when", go, *extra]
        if show and role == "guest":
            proc = subprocess.Popen([*cmd, "--verbose"])
        else:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        if cpu:
            cpu.add_job(proc.pid)
        procs.append((role, proc, log.name))
        outs[role] = out
    deadline = time.monotonic() + JOB_TIMEOUT
    start_together(go, procs, deadline)
    failed = []
    for role, p, log in procs:
        try:
            rc = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            rc = "timeout"
        if rc != 0:
            with open(log, "rb") as f:
                tail = f.read()[-3000:].decode(errors="replace")
            failed.append(f"{role} of {job} on {backend} exited with {rc}; its log ends:\n{tail}")
    wall = time.perf_counter() - started
    used = cpu.stop() if cpu else None
    if failed:
        raise AssertionError("\n".join(failed))
    results = []
    for role in ("guest", "host"):
        with open(outs[role]) as f:
            results.append(json.load(f))
    if used:
        span = cpu.within(min(r["began"] for r in results), max(r["ended"] for r in results))
        results[0]["cpu"] = {"seconds": used[0], "idle": used[1], "span": span[0], "span_idle": span[1]}
    return results[0], results[1], wall


def start_together(go, procs, deadline):
    """Creates `go` once every party has imported what its job uses (or one has ended, or
    `deadline` passed), so that the job's span starts with both parties ready."""
    wait_until(lambda: all(os.path.exists(ready_file(go, role)) or p.poll() is not None
                           for role, p, _ in procs),
               deadline - time.monotonic(), every=START_POLL_SECONDS)
    with open(go, "w"):
        pass


def standalone(job, root, show=False):
    data = os.path.join(root, f"standalone-{job}")
    os.makedirs(data, exist_ok=True)
    fed_id = f"sa-{job}-{uuid.uuid4().hex[:8]}"
    args = ["--data-dir", data]
    return run_pair(job, "standalone", root, fed_id, args, args, show)


def eggroll_rs(job, root, layout, parties, show=False):
    fed_id = f"rs-{job}-{layout}-{uuid.uuid4().hex[:8]}"
    (g_cluster, g_site), (h_cluster, h_site) = parties
    g = ["--cluster", f"{g_cluster.host}:{g_cluster.port}", "--rollsite", g_site.address]
    h = ["--cluster", f"{h_cluster.host}:{h_cluster.port}", "--rollsite", h_site.address]
    guest, host, wall = run_pair(job, "eggroll-rs", root, fed_id, g, h, show)
    for role, pid in (("guest", GUEST), ("host", HOST)):
        # A stopped session's eggs exit as their node manager stops them: give them a moment.
        deadline = time.monotonic() + 15
        while eggs_of(f"{fed_id}_{role}_{pid}") and time.monotonic() < deadline:
            time.sleep(0.2)
        left = eggs_of(f"{fed_id}_{role}_{pid}")
        assert not left, f"{job} on {layout}: eggs of the {role}'s session still run: {left}"
    return guest, host, wall


def check_failed_push(root):
    """A push the peer's roll-site refuses (an object over its max_object_bytes) fails the
    peer's pull at once with the reason, naming the sender, and fails the sender's next call;
    through `eggroll.federation` as FATE calls it, on embedded sessions. Returns what is wrong."""
    import concurrent.futures

    from eggroll.computing import runtime_init
    from eggroll.federation import RollSiteContext
    from eggroll.session import session_init

    errors = []
    pg, ph = free_port(), free_port()
    small = {"EGGROLL_ROLLSITE_MAX_OBJECT_BYTES": "4096"}
    with Rollsite(root, GUEST, pg, route_to(HOST, ph)) as sg, \
            Rollsite(root, HOST, ph, route_to(GUEST, pg), env=small) as sh:
        fed = f"push-fault-{uuid.uuid4().hex[:8]}"
        ctxs = []
        for party, site in ((("guest", GUEST), sg), (("host", HOST), sh)):
            s = session_init(options={"eggroll.data_dir": os.path.join(root, f"embedded-{party[0]}")})
            rp = runtime_init(s)
            ctxs.append((s, RollSiteContext(fed, rp, party, "127.0.0.1", site.port,
                                            options={"eggroll.rollsite.get.idle.timeout.ms": 60000})))
        (gs, g), (hs, h) = ctxs
        started = time.monotonic()
        g.load("big", "0").push_bytes(b"x" * 100_000, parties=[("host", HOST)])
        g.load("fine", "0").push_bytes(b"ok", parties=[("host", HOST)])
        pulled = h.load("big", "0").pull(parties=[("guest", GUEST)])[0]
        try:
            pulled.result(timeout=60)
            errors.append("a pull of a push the roll-site refused returned data")
        except concurrent.futures.TimeoutError:
            errors.append("a pull of a failed push still waits after 60 s: the abort did not reach it")
        except Exception as e:
            took = time.monotonic() - started
            print(f"failed push: the peer's pull failed after {took:.1f} s: {e}", flush=True)
            if GUEST not in str(e) or took > 30:
                errors.append(f"the failed push's pull failed after {took:.0f} s with: {e}")
        # The sender's next call fails with its own push's failure.
        time.sleep(0.5)
        try:
            g.load("next", "0").push_bytes(b"y", parties=[("host", HOST)])
            errors.append("the sender went on after its push failed")
        except RuntimeError as e:
            if "could not send" not in str(e):
                errors.append(f"the sender's next call failed with an unclear error: {e}")
        gs.stop()
        hs.stop()
    return errors


# The faults' jobs: a get gives up after this long without data, and a session whose client
# is gone ends when its lease (this long) runs out.
FAULT_IDLE_MS = 20_000
FAULT_LEASE_MS = 3_000
# Their jobs say they live this often, and the two-parties layout's roll-sites fail a get
# waiting on a job silent for this long: well before the idle timeout.
FAULT_HEARTBEAT_MS = 1_000
FAULT_LIVENESS_MS = 6_000
LIVENESS_ENV = {"EGGROLL_ROLLSITE_HEARTBEAT_INTERVAL_MS": str(FAULT_HEARTBEAT_MS),
                "EGGROLL_ROLLSITE_LIVENESS_TIMEOUT_MS": str(FAULT_LIVENESS_MS)}


def start_faulty_pair(root, fed_id, parties):
    """Starts both parties of a SecureBoost job on eggroll-rs that print each call as it
    starts; returns {role: (process, log path, session id)}."""
    out = {}
    for role, pid, (cluster, site) in (("guest", GUEST, parties[0]), ("host", HOST, parties[1])):
        log = os.path.join(root, f"{fed_id}-{role}.log")
        cmd = [sys.executable, os.path.join(HERE, "fate_jobs.py"), "--job", "sbt", "--role", role,
               "--guest", GUEST, "--host", HOST, "--federation-id", fed_id, "--backend", "eggroll-rs",
               "--out", os.path.join(root, f"{fed_id}-{role}.json"), "--progress",
               "--cluster", f"{cluster.host}:{cluster.port}", "--rollsite", site.address,
               "--session-option", f"eggroll.session.lease.ms={FAULT_LEASE_MS}"]
        env = dict(os.environ, EGGROLL_ROLLSITE_GET_IDLE_TIMEOUT_MS=str(FAULT_IDLE_MS),
                   EGGROLL_ROLLSITE_HEARTBEAT_INTERVAL_MS=str(FAULT_HEARTBEAT_MS))
        with open(log, "wb") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        out[role] = (proc, log, f"{fed_id}_{role}_{pid}")
    return out


def log_text(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")


def error_of(path):
    """(what a job process's log says from its last traceback on, the error's first line)."""
    text = log_text(path)
    at = text.rfind("Traceback (most recent call last)")
    if at < 0:
        return "", "(no error)"
    lines = text[at:].splitlines()[1:]
    first = next((l for l in lines if l and not l.startswith(" ")), "(no error line)")
    return text[at:], first


def failure_of(proc, log, killed, limit):
    """Waits (until `limit` s after `killed`) for a job process to end: (its exit code, the
    seconds since `killed`, its error from the last traceback on, the error's first line);
    None while it still runs."""
    try:
        rc = proc.wait(timeout=max(1, killed + limit - time.monotonic()))
    except subprocess.TimeoutExpired:
        return None
    return (rc, time.monotonic() - killed, *error_of(log))


def eggs_left(pair, what):
    """What is wrong if an egg of either party's session is still there once their leases
    have run out."""
    return [f"{what}: eggs of the {role}'s session are left: {eggs_of(sid)}"
            for role, (_, _, sid) in pair.items()
            if not wait_until(lambda: not eggs_of(sid), FAULT_LEASE_MS / 1000 + 20)]


def into_the_job(pair, calls=60):
    """Waits until the host has started its `calls`-th call (past the PSI, into the trees)."""
    proc, log, _ = pair["host"]
    reached = wait_until(lambda: f"call {calls}:" in log_text(log) or proc.poll() is not None, 300)
    return reached and proc.poll() is None


def stop_pair(pair):
    for proc, _, _ in pair.values():
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def check_job_killed(root, parties):
    """The host's job process SIGKILLed mid-job: the guest fails once the host's signs of life
    stopped for the liveness bound (well before its idle timeout), naming the host; neither
    cluster keeps an egg of the job (the host's session ends with its lease). Returns what is
    wrong."""
    pair = start_faulty_pair(root, f"fault-job-killed-{uuid.uuid4().hex[:8]}", parties)
    errors = []
    try:
        if not into_the_job(pair):
            return [f"job killed: the job did not get to the trees; see {pair['host'][1]}"]
        host = pair["host"][0]
        host.kill()
        host.wait()
        killed = time.monotonic()
        failed = failure_of(*pair["guest"][:2], killed, FAULT_IDLE_MS / 1000 + 60)
        if failed is None:
            return [f"job killed: the guest still runs {FAULT_IDLE_MS / 1000 + 60:.0f} s after the host was killed"]
        rc, took, why, last = failed
        print(f"job killed: the guest failed {took:.1f} s after the host's job process was killed: {last[:300]}",
              flush=True)
        if rc == 0:
            errors.append("job killed: the guest's job succeeded without its host")
        elif f"party {HOST} (role host) gave no sign of life" not in why:
            errors.append(f"job killed: the guest's error does not say that the host ({HOST}) gave no sign of "
                          f"life: {last[:500]}")
        if took >= FAULT_IDLE_MS / 1000:
            errors.append(f"job killed: the guest failed only after {took:.0f} s (liveness bound "
                          f"{FAULT_LIVENESS_MS / 1000:.0f} s, idle timeout {FAULT_IDLE_MS / 1000:.0f} s)")
        errors += eggs_left(pair, "job killed")
    finally:
        stop_pair(pair)
    return errors


def check_egg_killed(root, parties):
    """An egg of the host SIGKILLed mid-job: both parties fail naming the processor (the
    guest by the host's abort), within a minute; no egg of the job is left. Returns what is
    wrong."""
    pair = start_faulty_pair(root, f"fault-egg-killed-{uuid.uuid4().hex[:8]}", parties)
    errors = []
    try:
        if not into_the_job(pair):
            return [f"egg killed: the job did not get to the trees; see {pair['host'][1]}"]
        victims = eggs_of(pair["host"][2])
        if not victims:
            return ["egg killed: the host's session has no egg on this machine"]
        processor = processor_of(victims[0])
        os.kill(victims[0], 9)
        killed = time.monotonic()
        for role, (proc, log, _) in pair.items():
            failed = failure_of(proc, log, killed, 90)
            if failed is None:
                errors.append(f"egg killed: the {role} still runs 90 s after processor {processor} was killed")
                continue
            rc, took, why, last = failed
            print(f"egg killed: the {role} failed {took:.1f} s after processor {processor} was killed: "
                  f"{last[:300]}", flush=True)
            if rc == 0:
                errors.append(f"egg killed: the {role}'s job succeeded")
            elif f"processor {processor}" not in why:
                errors.append(f"egg killed: the {role}'s error does not name processor {processor}: {last[:500]}")
        errors += eggs_left(pair, "egg killed")
    finally:
        stop_pair(pair)
    return errors


def psi_expected(n):
    sys.path.insert(0, HERE)

    return sorted(set(psi_ids("guest", n)) & set(psi_ids("host", n)))


def check(job, layout, got, ref):
    """Compares a job's results on eggroll-rs with standalone's; returns what differs."""
    (g, h), (rg, rh) = got, ref
    errors = []
    if job == "psi":
        want = psi_expected(2000)
        if g["ids"] != want or h["ids"] != want:
            errors.append(f"psi: the intersection has {len(g['ids'])}/{len(h['ids'])} ids, "
                          f"the plain intersection {len(want)}")
        if rg["ids"] != want:
            errors.append("psi: FATE standalone's intersection differs from the plain one")
    elif job == "sbt":
        if g["sample_id"] != rg["sample_id"]:
            errors.append("sbt: the guest's predicted samples differ from standalone's")
        elif g["predict_result"] != rg["predict_result"]:
            n = sum(a != b for a, b in zip(g["predict_result"], rg["predict_result"]))
            errors.append(f"sbt: {n} of the guest's predicted labels differ from standalone's")
        elif g["predict_score"] != rg["predict_score"]:
            # Bit for bit: values of a key are folded in standalone's order, so our floats are
            # standalone's, and the job fixes the host's shuffle seeds (see fate_jobs.run_sbt),
            # so ties between equal gains break the same way in both runs.
            n = sum(a != b for a, b in zip(g["predict_score"], rg["predict_score"]))
            d = max(abs(a - b) for a, b in zip(g["predict_score"], rg["predict_score"]))
            errors.append(f"sbt: {n} of the guest's {len(g['predict_score'])} scores differ from "
                          f"standalone's (max |d| {d:.3g})")
    elif job == "sshe-lr":
        for who, a, b in (("guest", g, rg), ("host", h, rh)):
            pa, pb = a["param"], b["param"]
            flat = lambda p: [x for row in p["coef_"] for x in row] + list(p.get("intercept_") or [])
            fa, fb = flat(pa), flat(pb)
            if len(fa) != len(fb):
                errors.append(f"sshe-lr: the {who}'s model has {len(fa)} weights, standalone's {len(fb)}")
                continue
            d = max((abs(x - y) for x, y in zip(fa, fb)), default=0.0)
            if d > 1e-6:
                errors.append(f"sshe-lr: the {who}'s coefficients differ from standalone's by {d:.3g}")
        la, lb = g.get("loss", []), rg.get("loss", [])
        if len(la) != len(lb) or any(abs(x - y) > 1e-6 for x, y in zip(la, lb)):
            errors.append(f"sshe-lr: losses {la} differ from standalone's {lb}")
    return [f"[{layout}] {e}" for e in errors]


def run_jobs(args, jobs, root, layout, parties, refs):
    """Runs each job `args.repeat` times on `layout`; rows of (job, layout, guest result, host
    result, wall seconds, the standalone run it is compared with). With one run, that is the
    standalone run made before the layouts; with more, each run has its own, made just before
    it, so that both see the same moment of a shared machine."""
    rows = []
    for job in jobs:
        for n in range(args.repeat):
            ref = refs[job] if args.repeat == 1 else standalone(job, root)
            rows.append((job, layout, *eggroll_rs(job, root, layout, parties, args.show), ref))
    return rows


def job_span(guest, host):
    """Seconds from the first party's job start to the last one's end: both parties' jobs,
    without their interpreters' start and FATE's imports, which no back end changes."""
    return max(guest["ended"], host["ended"]) - min(guest["began"], host["began"])


def compare_ops(label, ours, theirs):
    """Per op of one party: calls, summed and median seconds on eggroll-rs beside standalone,
    the ops that took longest first; then the phases."""
    def by_op(result):
        out = {}
        for op, seconds in result.get("calls", []):
            out.setdefault(op, []).append(seconds)
        return out

    a, b = by_op(ours), by_op(theirs)
    lines = [f"  {label}: {'op':<34} {'calls':>5} {'sum s rs/sa':>15} {'median ms rs/sa':>17}"]
    for op in sorted(set(a) | set(b), key=lambda o: -max(sum(a.get(o, [0])), sum(b.get(o, [0])))):
        xa, xb = a.get(op, []), b.get(op, [])
        med = lambda x: statistics.median(x) * 1e3 if x else float("nan")
        lines.append(f"  {label}: {op:<34} {len(xa):>5} {sum(xa):>7.2f}/{sum(xb):<7.2f} "
                     f"{med(xa):>8.1f}/{med(xb):<8.1f}")
    phases = lambda r: " ".join(f"{k} {v:.2f}" for k, v in r.get("phases", {}).items())
    lines.append(f"  {label}: phases eggroll-rs: {phases(ours)}; standalone: {phases(theirs)}")
    cpu = lambda r: " ".join(f"{k} {v:.2f}" for k, v in r.get("cpu_phases", {}).items())
    lines.append(f"  {label}: its process's CPU s by phase, eggroll-rs: {cpu(ours)}; standalone: {cpu(theirs)}")
    return "\n".join(lines)


def compare_cpu(label, ours, theirs, theirs_span):
    """Both parties' CPU seconds by kind of process, on eggroll-rs beside standalone, and how
    idle the machine was: over the whole run (imports included) and within the job's span. A
    job that keeps the cores busy is as fast as its processes' CPU seconds allow: the last
    line says how far that lets eggroll-rs's span go below standalone's `theirs_span`."""
    a, b = ours.get("cpu"), theirs.get("cpu")
    if not a or not b:
        return f"  {label}: (no CPU figures)"

    def line(field, idle):
        kinds = " ".join(f"{k} {a[field][k]:.2f}/{b[field][k]:.2f}" for k in ("job", "functions", "daemons"))
        total = lambda c: sum(c[field].values())
        return (f"CPU s rs/sa: {kinds}, all {total(a):.2f}/{total(b):.2f}; "
                f"machine idle {a[idle] * 100:.0f}%/{b[idle] * 100:.0f}%")

    lines = [f"  {label}: over the run, {line('seconds', 'idle')}"]
    if "span" in a and "span" in b:
        lines.append(f"  {label}: in the job's span, {line('span', 'span_idle')}")
        # A job whose processes keep every core busy takes at least its CPU seconds over the
        # cores: at the CPU eggroll-rs spent, no wait removed could make it faster than this.
        cores = os.cpu_count() or 1
        floor = sum(a["span"].values()) / cores
        if floor <= 0:
            # Both ends of a span shorter than a sampling period fall on one sample.
            lines.append(f"  {label}: the job's span was too short for its CPU to be sampled")
            return "\n".join(lines)
        lines.append(f"  {label}: eggroll-rs's span CPU over {cores} cores is {floor:.2f} s; "
                     f"standalone's span over that: {theirs_span / floor:.2f} (the most this CPU allows)")
    return "\n".join(lines)


def op_summary(result):
    ops = result.get("ops", {})
    calls = sum(v["count"] for v in ops.values())
    top = sorted(ops.items(), key=lambda kv: -kv[1]["seconds"])[:4]
    return calls, ", ".join(f"{k} {v['count']}x {v['seconds']:.2f}s" for k, v in top)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="psi,sbt,sshe-lr")
    ap.add_argument("--layouts", default="two-parties,one-site,two-parties-tls")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    ap.add_argument("--show", action="store_true", help="print the guest's FATE log as each job runs")
    ap.add_argument("--no-faults", dest="faults", action="store_false",
                    help="skip the fault cases (a party's job process killed, an egg killed)")
    ap.add_argument("--compare", action="store_true",
                    help="print each party's per-op calls and times beside standalone's, and the "
                         "CPU seconds of the job's processes by kind")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of each job per layout, each beside a fresh standalone run of it; "
                         "the ratio printed last is their median (a shared machine's noise)")
    args = ap.parse_args()
    global MEASURE_CPU
    MEASURE_CPU = args.compare
    if args.repeat < 1:
        ap.error(f"--repeat must be at least 1, not {args.repeat}")
    jobs = [j for j in args.jobs.split(",") if j]
    layouts = [l for l in args.layouts.split(",") if l]
    root = tempfile.mkdtemp(prefix="eggroll-rs-fate-fed-")
    print(f"work dir {root}")
    refs, rows, errors = {}, [], []
    errors += check_failed_push(root)
    print(f"failed push: {'ok' if not errors else errors}", flush=True)
    for job in jobs if args.repeat == 1 else ():
        if args.show:
            print(f"=== {job} on FATE's standalone back end ===", flush=True)
        g, h, wall = standalone(job, root, args.show)
        refs[job] = (g, h, wall)
        print(f"{job:8} standalone            job {job_span(g, h):6.2f} s, with imports {wall:6.2f} s   "
              f"({op_summary(g)[0]} ops: {op_summary(g)[1]})", flush=True)
    for layout in layouts:
        if args.show:
            print(f"=== {', '.join(jobs)} on eggroll-rs ({layout}) ===", flush=True)
        if layout == "two-parties":
            pg, ph = free_port(), free_port()
            with LocalCluster(nodes=1, spares=None) as cg, LocalCluster(nodes=1, spares=None) as ch, \
                    Rollsite(root, GUEST, pg, route_to(HOST, ph), env=LIVENESS_ENV) as sg, \
                    Rollsite(root, HOST, ph, route_to(GUEST, pg), env=LIVENESS_ENV) as sh:
                rows += run_jobs(args, jobs, root, layout, ((cg, sg), (ch, sh)), refs)
                if args.faults:
                    for check_fault in (check_job_killed, check_egg_killed):
                        found = check_fault(root, ((cg, sg), (ch, sh)))
                        print(f"{check_fault.__name__}: {'ok' if not found else found}", flush=True)
                        errors += found
        elif layout == "two-parties-tls":
            pg, ph, tg, th = free_port(), free_port(), free_port(), free_port()
            cg_tls, ch_tls = party_tls(root, GUEST), party_tls(root, HOST)
            # Each roll-site serves its certificate and trusts the other party's CA only.
            g_tls = {"port": tg, "cert": cg_tls["cert"], "key": cg_tls["key"], "ca": ch_tls["ca_of_party"]}
            h_tls = {"port": th, "cert": ch_tls["cert"], "key": ch_tls["key"], "ca": cg_tls["ca_of_party"]}
            with LocalCluster(nodes=1, spares=None) as cg, LocalCluster(nodes=1, spares=None) as ch, \
                    Rollsite(root, GUEST, pg, route_to(HOST, th, tls=True), tls=g_tls) as sg, \
                    Rollsite(root, HOST, ph, route_to(GUEST, tg, tls=True), tls=h_tls) as sh:
                rows += run_jobs(args, jobs, root, layout, ((cg, sg), (ch, sh)), refs)
        elif layout == "one-site":
            p = free_port()
            routes = {"route_table": {}, "self_party": [GUEST, HOST], "permission": {"default_allow": True}}
            with LocalCluster(nodes=2, spares=None) as c, Rollsite(root, GUEST, p, routes) as s:
                rows += run_jobs(args, jobs, root, layout, ((c, s), (c, s)), refs)
        else:
            sys.exit(f"unknown layout {layout!r}: two-parties, two-parties-tls or one-site")
        for job in jobs:
            runs = [r for r in rows if r[0] == job and r[1] == layout]
            for _, lay, g, h, wall, (rg, rh, ref_wall) in runs:
                errors += check(job, lay, (g, h), (rg, rh))
                calls, top = op_summary(g)
                ours, theirs = job_span(g, h), job_span(rg, rh)
                print(f"{job:8} {lay:12} job: eggroll-rs {ours:6.2f} s, standalone {theirs:6.2f} s, "
                      f"standalone/eggroll-rs {theirs / ours:5.2f}; with the processes' start and imports: "
                      f"{wall:6.2f} s, {ref_wall:6.2f} s, {ref_wall / wall:5.2f}   ({calls} ops: {top})",
                      flush=True)
                if args.compare:
                    for role, ours_r, theirs_r in (("guest", g, rg), ("host", h, rh)):
                        print(compare_ops(f"{job} {lay} {role}", ours_r, theirs_r), flush=True)
                    print(compare_cpu(f"{job} {lay} both parties", g, rg, theirs), flush=True)
            if len(runs) > 1:
                for what, ratio in (("job", lambda r: job_span(*r[5][:2]) / job_span(r[2], r[3])),
                                    ("with imports", lambda r: r[5][2] / r[4])):
                    ratios = sorted(ratio(r) for r in runs)
                    print(f"{job:8} {layout:12} median standalone/eggroll-rs of {len(runs)} runs ({what}): "
                          f"{statistics.median(ratios):.2f} (each: {', '.join(f'{x:.2f}' for x in ratios)})",
                          flush=True)
    if errors:
        print("FAILED:\n" + "\n".join(errors))
        print(f"logs in {root}")
        sys.exit(1)
    print(f"fate-federation: {len(rows)} jobs on eggroll-rs matched FATE standalone")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
