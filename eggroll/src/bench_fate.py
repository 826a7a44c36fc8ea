"""FATE's standalone engine on `eggroll bench`'s workload, for `eggroll bench --vs-fate`.

Run by the bench with FATE's venv: `python - ROWS VALUE_BYTES PARTITIONS DATA_DIR`. Times, on a
table of ROWS pairs (integer keys, VALUE_BYTES-byte values equal to the bench's), the bench's
ops in FATE's own calls, checks each result, and prints one JSON line of seconds per op.
"""

import json
import sys
import time


def main():
    rows, value_bytes, partitions = (int(a) for a in sys.argv[1:4])
    data_dir = sys.argv[4]
    from fate.arch.computing.backends.standalone import CSession

    # The bench's value of row i: byte j is (31 i + j) mod 256, a slice of one pattern.
    pattern = bytes(k & 0xFF for k in range(256 + value_bytes))
    data = [(i, pattern[(i * 31) & 0xFF:][:value_bytes]) for i in range(rows)]
    session = CSession("eggroll_bench_vs_fate", data_dir=data_dir)
    times = {}

    def timed(name, fn):
        started = time.perf_counter()
        out = fn()
        times[name] = time.perf_counter() - started
        return out

    table = timed("put_all", lambda: session.parallelize(data, include_key=True, partition=partitions))
    del data
    got = timed("get_all", lambda: sum(1 for _, v in table.collect() if v))
    counted = timed("count", table.count)
    mapped = timed("map_values", lambda: table.mapValues(lambda v: bytes([v[0] ^ 0xFF]) + v[1:]))
    total = timed("reduce", lambda: table.mapValues(len).reduce(lambda a, b: a + b))
    joined = timed("join", lambda: table.join(mapped, lambda a, b: a))
    joined_count = joined.count()
    if (got, counted, total, joined_count) != (rows, rows, rows * value_bytes, rows):
        sys.exit(f"FATE standalone gave wrong results: get_all {got}, count {counted}, "
                 f"total bytes {total}, join {joined_count}")
    session.destroy()
    print(json.dumps(times))


main()
