"""FATE-style table operations timed through FATE's eggroll back end on eggroll-rs (embedded,
and on a local cluster of Python eggs) beside FATE's standalone back end, in the same run.
Prints, per op and size, each back end's median time and the ratio standalone / eggroll-rs
(above 1: eggroll-rs is faster). The 10-row table measures each op's fixed cost, its overhead:
there the rows' own work (FATE unpickling, calling and pickling each value, the same on both
back ends) is a few microseconds. There, FATE's own layers above any back end (its KVTable
wrappers, serdes lookups, tracing) are timed too, on the same tables with their back-end
calls answering at once: the last column is the ratio of what each back end adds above them.
The back ends' runs alternate (one run of each, then again). At the end, a summary per
mode and size: the lowest ratio and the ops under the targets (1 everywhere; 10 for the
overhead).

    .venv-fate/bin/python python/tests/fate_bench.py [--rows 10 1000 100000 1000000] [--runs 3]
        [--modes embedded cluster] [--partitions 4] [--ops count mapValues ...]

`make fate-bench` runs it with the defaults.
"""

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

os.environ["EGGROLL_HOME"] = tempfile.mkdtemp(prefix="eggroll-rs-bench-")

from fate.arch.computing.backends.eggroll import CSession as EggrollSession  # noqa: E402
from fate.arch.computing.backends.standalone import CSession as StandaloneSession  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from local_cluster import LocalCluster  # noqa: E402


def ops(rows, partitions):
    data = [(i, {"x": i, "y": [i % 7] * 4}) for i in range(rows)]
    return [
        ("parallelize", lambda s, t: s.parallelize(data, include_key=True, partition=partitions)),
        # FATE's KVTable keeps a table's count after its first call: forget it, or this
        # would time FATE's own cache on both back ends.
        ("count", lambda s, t: (setattr(t, "_count_cache", None), t.count())),
        ("collect", lambda s, t: list(t.collect())),
        ("take 10", lambda s, t: t.take(10)),
        ("first", lambda s, t: t.first()),
        ("mapValues", lambda s, t: t.mapValues(lambda v: v["x"] + 1)),
        ("filter", lambda s, t: t.filter(lambda v: v["x"] % 2 == 0)),
        ("mapPartitions", lambda s, t: t.mapPartitions(lambda kvs: [(k, 1) for k, _ in kvs])),
        ("map (shuffle)", lambda s, t: t.map(lambda k, v: (k % 1000, v["x"]))),
        ("mapReducePartitions", lambda s, t: t.mapReducePartitions(lambda kvs: [(k % 100, 1) for k, _ in kvs], lambda a, b: a + b)),
        ("reduce", lambda s, t: t.mapValues(lambda v: v["x"]).reduce(lambda a, b: a + b)),
        ("join", lambda s, t: t.join(t, lambda a, b: a["x"] + b["x"])),
        ("union", lambda s, t: t.union(t, lambda a, b: a)),
        ("subtractByKey", lambda s, t: t.subtractByKey(t)),
        ("sample 0.1", lambda s, t: t.sample(fraction=0.1, seed=1)),
    ], data


# An op that takes less than this is run at least SHORT_RUNS times, whatever the table's
# size: one run of a millisecond op (a first on a million rows) is as long as a hiccup of the
# machine.
SHORT_SECONDS = 0.05
SHORT_RUNS = 30


def median_times(fns, runs):
    """The median time of each of `fns`, run in turn (one run of each, then again), so that
    a slow spell of the machine falls on all of them alike."""
    times = [[] for _ in fns]
    while len(times[0]) < runs or (len(times[0]) < SHORT_RUNS and max(map(max, times)) < SHORT_SECONDS):
        for fn, took in zip(fns, times):
            # The garbage of the previous op (a collect of a million pairs) is not this op's time.
            gc.collect()
            started = time.perf_counter()
            fn()
            took.append(time.perf_counter() - started)
    return [statistics.median(took) for took in times]


# Rows up to which a table measures the ops' overhead, where the target ratio is 10.
OVERHEAD_ROWS = 100


# {mode: {rows: {op: standalone's time above FATE's own layers / eggroll-rs's}}}
ABOVE = {}


def fate_layers(table):
    """`table` (of either back end) with every back-end primitive FATE's KVTable lowers its ops
    onto answering at once with what it gave before: an op on it costs FATE's own layers alone."""
    pairs = list(table._collect())
    table._impl_map_reduce_partitions_with_index = lambda **kw: table
    table._binary_sorted_map_partitions_with_index = lambda *a, **kw: table
    table._count = lambda: len(pairs)
    table._take = lambda n=1, **kw: pairs[:n]
    table._collect = lambda: iter(pairs)
    table._reduce = lambda func: pairs[0][1] if pairs else None
    table._sample = lambda **kw: table
    return table


def bench(label, ours, theirs, rows_list, runs, only=None, partitions=4):
    """Times each op on both back ends, on tables of `partitions` partitions; returns
    {rows: {op: ratio}}."""
    ratios = {}
    for rows in rows_list:
        table_ops, data = ops(rows, partitions)
        tables = [s.parallelize(data, include_key=True, partition=partitions) for s in (ours, theirs)]
        # The same tables again, their back ends answering at once: FATE's layers alone.
        layers = ([fate_layers(s.parallelize(data, include_key=True, partition=partitions)) for s in (ours, theirs)]
                  if rows <= OVERHEAD_ROWS else None)
        # Large tables too: one run of an op whose time is FATE's per-pair Python on both
        # back ends put its ratio anywhere from 0.82 to 1.21 from one bench to the next.
        n = runs
        # Small tables' times are a few ms, and one scheduling hiccup is as long: many more
        # runs steady their medians (9 runs moved a ratio by 30% from one run to the next).
        n = n * 10 if rows <= OVERHEAD_ROWS else n
        for name, op in table_ops:
            if only and name not in only:
                continue
            # Back end after back end, each run on the same table; results dropped at once.
            fns = [lambda: op(ours, tables[0]), lambda: op(theirs, tables[1])]
            timed_layers = layers is not None and name != "parallelize"
            if timed_layers:
                fns += [lambda: op(ours, layers[0]), lambda: op(theirs, layers[1])]
            t_ours, t_theirs, *t_fate = median_times(fns, n)
            ratios.setdefault(rows, {})[name] = t_theirs / t_ours
            line = f"{label:<9} {name:<20} {rows:>8} {t_ours * 1e3:>14.2f} {t_theirs * 1e3:>14.2f} {t_theirs / t_ours:>7.2f}"
            if timed_layers:
                # What each back end adds above FATE's layers over it; within 0.05 ms of
                # them, a back end's share is below what this machine can time.
                ours_own = max(t_ours - t_fate[0], 5e-5)
                above = (t_theirs - t_fate[1]) / ours_own
                ABOVE.setdefault(label, {}).setdefault(rows, {})[name] = above
                bound = ">" if ours_own <= 5e-5 else " "
                line += f" {t_fate[0] * 1e3:>6.2f}/{t_fate[1] * 1e3:<5.2f} {bound}{above:>8.2f}"
            print(line, flush=True)
        del tables, layers
    return ratios


def summary(label, ratios):
    for rows, by_op in ratios.items():
        target = 10 if rows <= OVERHEAD_ROWS else 1
        low = min(by_op, key=by_op.get)
        under = [f"{op} {r:.2f}" for op, r in sorted(by_op.items(), key=lambda kv: kv[1]) if r < target]
        what = "overhead" if rows <= OVERHEAD_ROWS else "time"
        print(f"{label:<9} {rows:>8} rows: {what} ratio at least {by_op[low]:.2f} ({low}); "
              f"under {target}: {', '.join(under) or 'none'}")
        above = ABOVE.get(label, {}).get(rows)
        if above:
            low = min(above, key=above.get)
            under = [f"{op} {r:.2f}" for op, r in sorted(above.items(), key=lambda kv: kv[1]) if r < target]
            print(f"{label:<9} {rows:>8} rows: above FATE's own layers, at least {above[low]:.2f} ({low}); "
                  f"under {target}: {', '.join(under) or 'none'}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="*", default=[10, 1000, 100_000, 1_000_000])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--modes", nargs="*", default=["embedded", "cluster"])
    ap.add_argument("--ops", nargs="*", help="only these ops (as printed)")
    ap.add_argument("--partitions", type=int, default=4,
                    help="partitions of every table (FATE's DataFrame reader makes 4)")
    args = ap.parse_args()
    if args.partitions < 1:
        ap.error(f"--partitions must be at least 1, not {args.partitions}")
    theirs = StandaloneSession("bench_standalone", data_dir=tempfile.mkdtemp(prefix="fate-standalone-"))
    print(f"{'mode':<9} {'op':<20} {'rows':>8} {'eggroll-rs ms':>14} {'standalone ms':>14} {'ratio':>7}"
          f" {'FATE alone ms':>12} {'above it':>9}")
    print(f"{'':<68} {'rs/standalone':>12}")
    results = {}
    if "embedded" in args.modes:
        ours = EggrollSession("bench_eggroll")
        results["embedded"] = bench("embedded", ours, theirs, args.rows, args.runs, args.ops,
                                     args.partitions)
        ours.destroy()
    if "cluster" in args.modes:
        with LocalCluster(nodes=1) as cluster:
            ours = EggrollSession("bench_cluster", host=cluster.host, port=cluster.port,
                                  options={"eggroll.session.processors.per.node": 2})
            results["cluster"] = bench("cluster", ours, theirs, args.rows, args.runs, args.ops,
                                    args.partitions)
            ours.destroy()
    theirs.destroy()
    print()
    for label, ratios in results.items():
        summary(label, ratios)


if __name__ == "__main__":
    import multiprocessing

    # FATE's standalone pool must not fork a process running eggroll-rs's threads.
    multiprocessing.set_start_method("forkserver")
    main()
