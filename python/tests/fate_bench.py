"""FATE-style table operations timed on eggroll-rs (FATE's eggroll back end on our `eggroll`
module, embedded) beside FATE's standalone back end, in the same run. Prints, per op and
size, each back end's median time and the ratio standalone / eggroll-rs (above 1: eggroll-rs
is faster).

    .venv-fate/bin/python python/tests/fate_bench.py [--rows 100000] [--runs 3]
"""

import argparse
import os
import statistics
import tempfile
import time

os.environ["EGGROLL_HOME"] = tempfile.mkdtemp(prefix="eggroll-rs-bench-")

from fate.arch.computing.backends.eggroll import CSession as EggrollSession  # noqa: E402
from fate.arch.computing.backends.standalone import CSession as StandaloneSession  # noqa: E402


def ops(rows):
    data = [(i, {"x": i, "y": [i % 7] * 4}) for i in range(rows)]
    return [
        ("parallelize", lambda s, t: s.parallelize(data, include_key=True, partition=4)),
        ("count", lambda s, t: t.count()),
        ("collect", lambda s, t: list(t.collect())),
        ("take 10", lambda s, t: t.take(10)),
        ("mapValues", lambda s, t: t.mapValues(lambda v: v["x"] + 1).count()),
        ("map (shuffle)", lambda s, t: t.map(lambda k, v: (k % 1000, v["x"])).count()),
        ("reduce", lambda s, t: t.mapValues(lambda v: v["x"]).reduce(lambda a, b: a + b)),
        ("join", lambda s, t: t.join(t, lambda a, b: a["x"] + b["x"]).count()),
    ], data


def median_time(fn, runs):
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="*", default=[1000, 100_000])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    ours = EggrollSession("bench_eggroll")
    theirs = StandaloneSession("bench_standalone", data_dir=tempfile.mkdtemp(prefix="fate-standalone-"))
    print(f"{'op':<16} {'rows':>8} {'eggroll-rs ms':>14} {'standalone ms':>14} {'ratio':>7}")
    for rows in args.rows:
        table_ops, data = ops(rows)
        tables = [s.parallelize(data, include_key=True, partition=4) for s in (ours, theirs)]
        for name, op in table_ops:
            # Alternating back ends, each run on the same table.
            t_ours = median_time(lambda: op(ours, tables[0]), args.runs)
            t_theirs = median_time(lambda: op(theirs, tables[1]), args.runs)
            print(f"{name:<16} {rows:>8} {t_ours * 1e3:>14.2f} {t_theirs * 1e3:>14.2f} {t_theirs / t_ours:>7.2f}")
    ours.destroy()
    theirs.destroy()


if __name__ == "__main__":
    main()
