"""FATE's KVTable operations on eggroll-rs (FATE's own eggroll back end, `CSession`, on our
`eggroll` module) against FATE's standalone back end: every public op, on the same data, must
give the same result, embedded (our engine in this process; small partitions run there, and,
in a second pass, every partition in the worker pool) and on a local cluster of Python
eggs (`eggroll local-cluster`), where the faults of `fate_faults.py` are checked too. Run by
`make fate-test` (and `make test`) in the FATE venv:

    .venv-fate/bin/python python/tests/fate_differential.py

EGGROLL_DIFFERENTIAL_MODES=embedded (or cluster) runs one mode only.

Also FATE's own DataFrame reader and feature statistics (one party, no federation traffic) on
sklearn's breast-cancer data, on both back ends.

Prints one line per case and closes with "N passed, N failed"; exits 1 on any failure.

Both back ends run in this process. FATE's standalone engine runs its functions in a process
pool; forked from a process whose eggroll-rs threads already run, a worker can inherit a lock
held by one of them and hang, so the pool's processes come from a fork server instead.
"""

import os
import random
import sys
import tempfile
import zlib

# Our embedded sessions keep their tables in a directory of this run's own.
os.environ["EGGROLL_HOME"] = tempfile.mkdtemp(prefix="eggroll-rs-differential-")

from fate.arch.computing.backends.eggroll import CSession as EggrollSession  # noqa: E402
from fate.arch.computing.backends.standalone import CSession as StandaloneSession  # noqa: E402
from fate.arch.unify import URI  # noqa: E402


def shapes():
    """(name, pairs, partitions, key serdes type, partitioner type) of each data set."""
    rng = random.Random(20261201)
    ints = [(rng.randrange(10**6), rng.randrange(-(10**9), 10**9)) for _ in range(3000)]
    strings = [(f"id-{rng.randrange(10**5)}", "x" * rng.randrange(0, 40)) for _ in range(2000)]
    big = [(i, os.urandom(rng.choice([1, 1000, 1 << 20]))) for i in range(12)]
    return [
        ("empty, 4 partitions", [], 4, 0, 0),
        ("one pair, 1 partition", [(7, "seven")], 1, 0, 0),
        ("ints with duplicate keys, 1 partition", ints[:500] + ints[:50], 1, 0, 0),
        ("ints, 4 partitions", ints, 4, 0, 0),
        ("ints, 16 partitions", ints, 16, 0, 0),
        ("strings, 3 partitions", strings, 3, 0, 0),
        ("large values, 2 partitions", big, 2, 0, 0),
        ("ints by the integer partitioner, 5 partitions", [(abs(k), v) for k, v in ints], 5, 1, 1),
    ]


def _sorted(pairs):
    return sorted(pairs, key=lambda kv: repr(kv[0]))


def ops():
    """(name, function of (session, table) giving a comparable result) of each op."""

    def keyed(t):
        return _sorted(t.collect())

    return [
        ("count", lambda s, t: t.count()),
        ("collect (in order)", lambda s, t: list(t.collect())),
        ("take 5", lambda s, t: t.take(5) if t.count() else "empty"),
        ("first", lambda s, t: t.first() if t.count() else "empty"),
        ("mapValues", lambda s, t: keyed(t.mapValues(lambda v: repr(v)[:20]))),
        ("map", lambda s, t: keyed(t.map(lambda k, v: (repr(k) + "m", repr(v)[:5])))),
        ("map, keys collide", map_colliding),
        ("flatMap", lambda s, t: keyed(t.flatMap(lambda k, v: [(repr(k) + "a", 1), (repr(k) + "b", 2)]))),
        ("filter", lambda s, t: keyed(t.filter(lambda v: len(repr(v)) % 2 == 0))),
        ("mapPartitions", lambda s, t: keyed(t.mapPartitions(lambda kvs: [(len(list(kvs)), 1)]))),
        (
            "mapPartitions preserving partitioning",
            lambda s, t: keyed(t.mapPartitions(lambda kvs: [(k, 0) for k, _ in kvs], preserves_partitioning=True)),
        ),
        (
            "mapPartitionsWithIndex",
            lambda s, t: keyed(t.mapPartitionsWithIndex(lambda i, kvs: [(i * 1000 + n, 1) for n, _ in enumerate(kvs)])),
        ),
        (
            "mapReducePartitions",
            lambda s, t: keyed(t.mapReducePartitions(lambda kvs: [(zlib.crc32(repr(k).encode()) % 13, 1) for k, _ in kvs], lambda a, b: a + b)),
        ),
        ("mapReducePartitions, floats folded in order", map_reduce_float_order),
        ("applyPartitions", lambda s, t: keyed(t.applyPartitions(lambda kvs: sum(1 for _ in kvs)))),
        ("reduce", lambda s, t: t.mapValues(lambda v: len(repr(v))).reduce(lambda a, b: a + b)),
        ("join", lambda s, t: keyed(t.join(t.mapValues(lambda v: 1), lambda a, b: (repr(a)[:3], b)))),
        (
            "union",
            lambda s, t: keyed(t.filter(lambda v: len(repr(v)) % 3 == 0).union(t.mapValues(lambda v: "u"), lambda a, b: "both")),
        ),
        ("subtractByKey", lambda s, t: keyed(t.subtractByKey(t.filter(lambda v: len(repr(v)) % 2 == 0)))),
        ("sample fraction", lambda s, t: keyed(t.sample(fraction=0.3, seed=11))),
        ("sample num", sample_num),
        ("repartition 3", lambda s, t: (lambda r: (r.num_partitions, keyed(r)))(t.repartition(3))),
        ("copy", lambda s, t: keyed(t.copy())),
        ("save and load", save_and_load),
    ]


def map_colliding(session, table):
    """A map that gives several pairs one key, with no reducer: which of them a key keeps is
    not fixed (it depends on which partition's output lands last, on EggRoll as here), so
    what must be equal is the keys and that each value is one the map gave that key."""

    def crc(k):
        return zlib.crc32(repr(k).encode()) % 101

    given = {}
    for k, v in table.collect():
        given.setdefault(crc(k), set()).add(repr(v)[:5])
    out = table.map(lambda k, v: (crc(k), repr(v)[:5])).collect()
    return sorted(k for k, _ in out), all(v in given.get(k, ()) for k, v in out)


def map_reduce_float_order(session, table):
    """Float sums of mixed magnitudes: another fold order (or a fold per partition first)
    gives other bits, so equal results mean the values were folded in standalone's order."""

    def mapper(kvs):
        out = []
        for k, v in kvs:
            h = zlib.crc32(repr(k).encode())
            out.append((h % 5, (h % 1000 - 500) * 10.0 ** (h % 23 - 11)))
        return out

    return keyed_exact(table.mapReducePartitions(mapper, lambda a, b: a + b))


def keyed_exact(table):
    """The pairs by key, floats as their exact bits."""
    return sorted((k, v.hex()) for k, v in table.collect())


def warm_eggs_serve_one_session_after_another(cluster):
    """Two sessions, one after the other, on a node that keeps two warm eggs: the second
    gets the first one's egg processes back (released, not restarted)."""
    from local_cluster import eggs_of, wait_until

    def session(sid):
        return EggrollSession(sid, host=cluster.host, port=cluster.port,
                              options={"eggroll.session.processors.per.node": 2})

    first = session("warm_first")
    t = first.parallelize([(i, i) for i in range(100)], include_key=True, partition=4)
    t.mapValues(lambda v: v + 1).count()
    before = set(eggs_of("warm_first"))
    first.destroy()
    wait_until(lambda: not eggs_of("warm_first"), 15)
    second = session("warm_second")
    t2 = second.parallelize([(i, i) for i in range(100)], include_key=True, partition=4)
    doubled = sorted(t2.mapValues(lambda v: v * 2).collect())
    after = set(eggs_of("warm_second"))
    second.destroy()
    if before != after:
        print(f"  (the first session's eggs were {sorted(before)}, the second's {sorted(after)})")
    return len(before) == 2 and before == after, doubled


def sample_num(session, table):
    """An exact-size sample: FATE draws each partition's share from numpy's global generator
    (unseeded; it fails when a later share comes to 0), so both back ends get the same seed."""
    import numpy

    if not table.count():
        return 0
    numpy.random.seed(12)
    return sorted(table.sample(num=min(10, table.count()), seed=12).collect(), key=lambda kv: repr(kv[0]))


def save_and_load(session, table):
    scheme = "eggroll" if isinstance(session, EggrollSession) else "standalone"
    name = f"saved_{random.randrange(10**9)}"
    uri = URI.from_string(f"{scheme}:///differential/{name}")
    table.save(uri, schema={"k": "v"})
    loaded = session.load(uri, schema={"k": "v"})
    return (loaded.count(), _sorted(loaded.collect()), loaded.schema)


def statistics(session, name):
    """FATE's feature statistics of the first 10 breast-cancer features, read by FATE's
    PandasReader into a DataFrame on `session`."""
    from sklearn.datasets import load_breast_cancer

    from fate.arch.context import Context
    from fate.arch.dataframe import PandasReader
    from fate.arch.federation.backends.standalone import StandaloneFederation
    from fate.ml.statistics.statistics import FeatureStatistics

    features, label = load_breast_cancer(return_X_y=True, as_frame=True)
    df = features.iloc[:, :10].copy()
    df.insert(0, "sample_id", [f"s{i}" for i in range(len(df))])
    df.insert(1, "id", [f"m{i}" for i in range(len(df))])
    df["y"] = label
    # FATE's own standalone federation, for the local party's name only: no traffic.
    fed_session = StandaloneSession(f"fed_{name}", data_dir=tempfile.mkdtemp(prefix="fate-fed-"))
    fed = StandaloneFederation(fed_session, f"fed_{name}", ("guest", "9999"), [("guest", "9999")])
    ctx = Context(computing=session, federation=fed)
    reader = PandasReader(sample_id_name="sample_id", match_id_name="id", label_name="y", dtype="float32")
    frame = reader.to_frame(ctx, df)
    stats = FeatureStatistics(metrics=["mean", "std", "min", "max", "median", "count", "missing_count"])
    stats.fit(ctx, frame)
    return frame.shape, stats.get_model()


def unreferenced_tables_are_destroyed(session):
    """An intermediate table FATE drops is destroyed by eggroll-rs; one still held is not."""
    import gc

    table = session.parallelize([(i, i) for i in range(100)], include_key=True, partition=2)
    dropped = table.mapValues(lambda v: v + 1)
    native = dropped._rp._t
    del dropped
    gc.collect()
    kept = table.mapValues(lambda v: v * 2)
    return native.destroyed, kept._rp._t.destroyed, kept.count()


def thread_state_is_kept(session, rounds=3):
    """The most calls of a function that one task thread of an egg saw with the same Python
    thread state, over `rounds` mapPartitions on 8 partitions. A thread keeps one state from
    call to call (eggroll-rs's `thread_state.rs`): made and deleted at each call, it cost an
    unmap that interrupted every core, and a `threading.local` value would last one call."""

    def calls_on_this_thread(kvs):
        import threading

        # Kept on a module, as the function itself is unpickled anew for each partition.
        local = threading.__dict__.setdefault("_eggroll_rs_thread_state_probe", threading.local())
        local.calls = getattr(local, "calls", 0) + 1
        return [(k, local.calls) for k, _ in list(kvs)[:1]]

    table = session.parallelize([(i, i) for i in range(64)], include_key=True, partition=8)
    return max(v for _ in range(rounds)
               for _, v in table.mapPartitions(calls_on_this_thread, use_previous_behavior=False).collect())


def outcome(run, session, table):
    """What `run` gives, or the type of what it raised: both back ends must fail alike."""
    try:
        return run(session, table)
    except Exception as e:
        return f"raised {type(e).__name__}"


class Tally:
    """Counts and prints the cases."""

    def __init__(self):
        self.passed = self.failed = 0

    def check(self, case, got, want):
        if got == want:
            self.passed += 1
            print(f"ok      {case}")
        else:
            self.failed += 1
            print(f"FAILED  {case}\n  eggroll-rs: {str(got)[:300]}\n  expected:   {str(want)[:300]}")


def same_as_standalone(tally, label, ours, theirs):
    """Every op on every shape, and FATE's statistics, on `ours` and on FATE's standalone."""
    for shape, pairs, partitions, key_serdes_type, partitioner_type in shapes():
        tables = [
            s.parallelize(pairs, include_key=True, partition=partitions, key_serdes_type=key_serdes_type,
                          partitioner_type=partitioner_type)
            for s in (ours, theirs)
        ]
        for op, run in ops():
            if key_serdes_type == 1 and op in ("map", "flatMap", "mapPartitions", "mapReducePartitions"):
                continue  # their outputs' keys are not integers, which the integer serdes requires
            tally.check(f"{label}: {shape}: {op}", outcome(run, ours, tables[0]), outcome(run, theirs, tables[1]))
    tally.check(
        f"{label}: breast cancer: DataFrame reader and feature statistics",
        outcome(statistics, ours, label),
        outcome(statistics, theirs, f"standalone-{label}"),
    )


def main():
    modes = os.environ.get("EGGROLL_DIFFERENTIAL_MODES", "embedded,cluster").split(",")
    theirs = StandaloneSession("differential_standalone", data_dir=tempfile.mkdtemp(prefix="fate-standalone-"))
    tally = Tally()
    import fate_faults

    if "embedded" in modes:
        # Small partitions run in the calling process: the suite's tables, mostly.
        ours = EggrollSession("differential_eggroll")
        same_as_standalone(tally, "embedded", ours, theirs)
        # (dropped table destroyed, kept table destroyed, kept table's count)
        tally.check(
            "embedded: unreferenced in-memory tables are destroyed",
            outcome(lambda s, t: unreferenced_tables_are_destroyed(s), ours, None),
            (True, False, 100),
        )
        ours.destroy()
        # Every partition in the worker pool, however small.
        ours = EggrollSession("differential_eggroll_pool", options={"eggroll.embedded.inline.bytes": 0})
        same_as_standalone(tally, "embedded pool", ours, theirs)
        fate_faults.check_embedded(tally, ours)
        ours.destroy()
    if "cluster" in modes:
        from local_cluster import LocalCluster

        with LocalCluster(nodes=2) as cluster:
            ours = EggrollSession("differential_cluster", host=cluster.host, port=cluster.port,
                                  options={"eggroll.session.processors.per.node": 2})
            same_as_standalone(tally, "cluster", ours, theirs)
            tally.check("cluster: a task thread keeps its Python thread state from one function to the next",
                        outcome(lambda s, t: thread_state_is_kept(s) > 1, ours, None), True)
            fate_faults.check_all(tally, ours, cluster)
            ours.destroy()
        with LocalCluster(nodes=1, spares=2) as cluster:
            # (the second session ran on the first one's processes, its result right)
            tally.check("cluster: warm eggs serve one session after another",
                        warm_eggs_serve_one_session_after_another(cluster),
                        (True, [(i, 2 * i) for i in range(100)]))
    theirs.destroy()
    print(f"{tally.passed} passed, {tally.failed} failed")
    return 1 if tally.failed else 0


if __name__ == "__main__":
    import multiprocessing

    multiprocessing.set_start_method("forkserver")
    sys.exit(main())
