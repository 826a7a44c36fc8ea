"""Faults of FATE computations, checked by the differential suite: on a local cluster of
Python eggs,

- a Python function that raises: FATE gets the traceback's text, and the session still works
  (embedded too);
- an egg killed in the middle of an op: the FATE call fails within seconds, naming the
  processor, and no egg of the session is left once it ends;
- the Python driver killed in the middle of an op: the session's lease runs out and its eggs end;

and in an embedded session, a worker of its process pool killed in the middle of an op: the
call fails saying so, and the next op runs on a new pool.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

from fate.arch.computing.backends.eggroll import CSession as EggrollSession

from local_cluster import eggs_of, processor_of, wait_until

# A killed driver's session ends when its lease (renewed by a live client) runs out.
LEASE_MS = 3000


def error_of_a_slow_op(table, kill):
    """What a minute-long op on `table` raises when `kill` runs 1.5 s into it."""

    def later():
        time.sleep(1.5)
        kill()

    threading.Thread(target=later, daemon=True).start()
    try:
        table.mapPartitions(lambda kvs: (time.sleep(60), [(1, 1)])[1])
        return "no error"
    except Exception as e:
        return str(e)


def python_raises(session):
    """(the error has the exception's name, it has the traceback, the session's next op works)"""
    table = session.parallelize([(i, i) for i in range(100)], include_key=True, partition=4)
    try:
        table.mapValues(lambda v: 1 // (v - v))
        text = "no error"
    except Exception as e:
        text = str(e)
    after = table.mapValues(lambda v: v + 1).reduce(lambda a, b: a + b)
    return "ZeroDivisionError" in text, "Traceback (most recent call last)" in text, after


def egg_killed(cluster):
    """(the error names the killed processor, it came within 10 s of the kill, no egg left)"""
    sid = "fault_egg_killed"
    session = EggrollSession(sid, host=cluster.host, port=cluster.port,
                             options={"eggroll.session.processors.per.node": 2})
    table = session.parallelize([(i, i) for i in range(100)], include_key=True, partition=4)
    victim = eggs_of(sid)[0]
    victim_id = processor_of(victim)
    killed_at = []

    def kill():
        os.kill(victim, signal.SIGKILL)
        killed_at.append(time.monotonic())

    text = error_of_a_slow_op(table, kill)
    failed_at = time.monotonic()
    try:
        session.destroy()
    except Exception:
        pass  # the session is broken; ending it is what matters
    gone = wait_until(lambda: not eggs_of(sid), 15)
    within = bool(killed_at) and failed_at - killed_at[0] < 10
    if f"processor {victim_id}" not in text:
        print(f"  (the error was: {text[:400]})")
    return f"processor {victim_id}" in text, within, gone


DRIVER = textwrap.dedent("""
    import sys, time
    from fate.arch.computing.backends.eggroll import CSession
    s = CSession("fault_driver_killed", host=sys.argv[1], port=int(sys.argv[2]),
                 options={"eggroll.session.processors.per.node": 1, "eggroll.session.lease.ms": %d})
    t = s.parallelize([(i, i) for i in range(10)], include_key=True, partition=2)
    print("running", flush=True)
    t.mapPartitions(lambda kvs: (time.sleep(600), [(1, 1)])[1])
""" % LEASE_MS)


def driver_killed(cluster):
    """(the eggs ran, none is left within the lease and 15 s after the driver's SIGKILL)"""
    sid = "fault_driver_killed"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, cluster.host, str(cluster.port)],
                              stdout=subprocess.PIPE)
    line = driver.stdout.readline().decode().strip()
    ran = line == "running" and wait_until(lambda: bool(eggs_of(sid)), 10)
    time.sleep(1)  # into the long op
    driver.kill()
    driver.wait()
    gone = wait_until(lambda: not eggs_of(sid), LEASE_MS / 1000 + 15)
    return ran, gone


def pool_worker_killed(session):
    """(the error says a worker died, the next op works)"""
    from eggroll.computing import _runner

    table = session.parallelize([(i, i) for i in range(100)], include_key=True, partition=4)
    table.mapValues(lambda v: v).count()  # the pool is up

    def kill():
        os.kill(next(iter(_runner._pool._processes)), signal.SIGKILL)

    text = error_of_a_slow_op(table, kill)
    after = table.mapValues(lambda v: v + 1).reduce(lambda a, b: a + b)
    return "worker process of this embedded session died" in text, after


def check_embedded(tally, session):
    tally.check("embedded: a Python function that raises: FATE gets the traceback, the session goes on",
                python_raises(session), (True, True, sum(range(1, 101))))
    tally.check("embedded: a pool worker killed mid-op: the error says so, the next op works",
                pool_worker_killed(session), (True, sum(range(1, 101))))


def check_all(tally, session, cluster):
    tally.check("cluster: a Python function that raises: FATE gets the traceback, the session goes on",
                python_raises(session), (True, True, sum(range(1, 101))))
    tally.check("cluster: an egg killed mid-op: the error names it within seconds, no egg is left",
                egg_killed(cluster), (True, True, True))
    tally.check("cluster: the driver killed mid-op: its session's eggs end with the lease",
                driver_killed(cluster), (True, True))
