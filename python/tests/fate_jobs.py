"""One party of a two-party FATE job, run through FATE's own Python API: FATE's PSI, then
hetero SecureBoost or SSHE logistic regression on sklearn's breast-cancer data split
vertically (the guest has the label and the first ten features, the host the other twenty).

    python fate_jobs.py --job sbt --role guest --guest 9999 --host 10000 \
        --federation-id f1 --backend eggroll-rs --cluster 127.0.0.1:4670 \
        --rollsite 127.0.0.1:9370 --out guest.json

`--backend standalone --data-dir D` runs the same job on FATE's standalone computing and
federation (both parties sharing D): the reference. Writes what the job produced (the PSI's
ids, the guest's predictions, the model) and per-op counts and times as JSON to `--out`.
"""

import argparse
import json
import os
import sys
import time

PROCESS_START = time.perf_counter()
JOBS = ("psi", "sbt", "sshe-lr")
# What each job imports of FATE and its libraries, whichever back end runs it. They are
# imported before the job's clock starts: loading torch or sklearn is not the back end's
# work. The back ends' own modules are not listed, so their imports count.
_PSI = ["pandas", "fate.arch.context", "fate.arch.federation", "fate.arch.dataframe",
        "fate.arch.protocol.psi"]
JOB_MODULES = {
    "psi": _PSI,
    "sbt": _PSI + ["sklearn.datasets", "fate.ml.ensemble"],
    "sshe-lr": _PSI + ["sklearn.datasets", "torch", "fate.arch.protocol.mpc",
                       "fate.arch.context._metrics", "fate.ml.glm.hetero.sshe"],
}


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--job", choices=JOBS, required=True)
    ap.add_argument("--role", choices=("guest", "host"), required=True)
    ap.add_argument("--guest", default="9999", help="the guest's party id")
    ap.add_argument("--host", default="10000", help="the host's party id")
    ap.add_argument("--federation-id", required=True)
    ap.add_argument("--backend", choices=("eggroll-rs", "standalone"), required=True)
    ap.add_argument("--cluster", help="host:port of the party's cluster manager (eggroll-rs); "
                                      "absent: an embedded session")
    ap.add_argument("--rollsite", help="host:port of the party's roll-site (eggroll-rs)")
    ap.add_argument("--data-dir", help="FATE standalone's shared data dir")
    ap.add_argument("--psi-ids", type=int, default=2000, help="ids per party in the psi job")
    ap.add_argument("--out", required=True)
    ap.add_argument("--verbose", action="store_true", help="print FATE's log (INFO) as the job runs")
    ap.add_argument("--session-option", action="append", default=[], metavar="KEY=VALUE",
                    help="an option of the eggroll session (eggroll-rs), e.g. eggroll.session.lease.ms=3000")
    ap.add_argument("--start-when", metavar="FILE",
                    help="once imported, write FILE.ROLE.ready and start the job when FILE exists "
                         "(both parties start together, whichever imported first)")
    ap.add_argument("--progress", action="store_true",
                    help="print a line as each federation call starts (what the fault tests wait for)")
    return ap.parse_args()


def context(args):
    """FATE's Context for this party, built as FATE's own launcher builds it."""
    from fate.arch.context import Context
    from fate.arch.federation import FederationBuilder, FederationMode

    parties = [("guest", args.guest), ("host", args.host)]
    me = parties[0] if args.role == "guest" else parties[1]
    cs_id = f"{args.federation_id}_{me[0]}_{me[1]}"
    builder = FederationBuilder(federation_session_id=args.federation_id, party=me, parties=parties)
    if args.backend == "standalone":
        from fate.arch.computing.backends.standalone import CSession

        cs = CSession(session_id=cs_id, data_dir=args.data_dir)
        fed = builder.build_standalone(cs)
    else:
        from fate.arch.computing.backends.eggroll import CSession

        host = port = None
        if args.cluster:
            host, port = args.cluster.rsplit(":", 1)
            port = int(port)
        options = dict(o.split("=", 1) for o in args.session_option)
        cs = CSession(session_id=cs_id, host=host, port=port, options=options)
        rs_host, rs_port = args.rollsite.rsplit(":", 1)
        fed = builder.build_osx(cs, host=rs_host, port=int(rs_port), mode=FederationMode.STREAM)
    return Context(computing=cs, federation=fed), cs


def breast_cancer(role):
    """The party's vertical slice of sklearn's breast-cancer data, ids `id0..id568`."""
    import pandas as pd
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    # Standardized, as a job's feature engineering would leave them: LR converges on them.
    data.data = (data.data - data.data.mean(axis=0)) / data.data.std(axis=0)
    n = len(data.target)
    ids = [f"id{i}" for i in range(n)]
    if role == "guest":
        cols = {f"x{j}": data.data[:, j] for j in range(10)}
        df = pd.DataFrame({"sample_id": ids, "id": ids, "y": data.target, **cols})
    else:
        cols = {f"x{j}": data.data[:, j] for j in range(10, 30)}
        df = pd.DataFrame({"sample_id": ids, "id": ids, **cols})
    return df


def psi_ids(role, n):
    """Ids for the psi job: two overlapping, shuffled sets (the host's shifted by n/2)."""
    import random

    start = 0 if role == "guest" else n // 2
    ids = [f"u{i}" for i in range(start, start + n)]
    random.Random(7 if role == "guest" else 8).shuffle(ids)
    return ids


def frame(ctx, df, label):
    from fate.arch.dataframe import PandasReader

    reader = PandasReader(sample_id_name="sample_id", match_id_name="id",
                          label_name="y" if label else None, dtype="float32")
    return reader.to_frame(ctx, df)


def intersect(ctx, df):
    from fate.arch.protocol.psi import psi_run

    return psi_run(ctx, df, protocol="ecdh_psi", curve_type="curve25519")


def run_psi(ctx, args):
    import pandas as pd

    ids = psi_ids(args.role, args.psi_ids)
    df = pd.DataFrame({"sample_id": ids, "id": ids, "v": [float(i) for i in range(len(ids))]})
    out = intersect(ctx, frame(ctx, df, label=False))
    return {"ids": sorted(out.as_pd_df()["id"].tolist())}


def run_sbt(ctx, args):
    from fate.ml.ensemble import HeteroSecureBoostGuest, HeteroSecureBoostHost

    data = intersect(ctx, frame(ctx, breast_cancer(args.role), label=args.role == "guest"))
    # The host shuffles its histograms' bins before sending them, with seeds from os.urandom
    # unless told otherwise, and the guest takes the first of equal gains: two runs of one job
    # can then pick different splits. FATE's own switch fixes the seeds, so a run on eggroll-rs
    # must equal the one on FATE standalone bit for bit.
    ctx.cipher.set_allow_custom_random_seed(True)
    if args.role == "guest":
        ctx.cipher.set_phe(ctx.device, {"kind": "paillier", "key_length": 1024})
        booster = HeteroSecureBoostGuest(num_trees=3, max_depth=3)
        booster.fit(ctx, data)
        pred = booster.get_train_predict().as_pd_df()
        pred = pred.sort_values("sample_id")
        return {
            "sample_id": pred["sample_id"].tolist(),
            "predict_score": [float(s) for s in pred["predict_score"].tolist()],
            "predict_result": [int(r) for r in pred["predict_result"].tolist()],
        }
    booster = HeteroSecureBoostHost(num_trees=3, max_depth=3)
    booster.fit(ctx, data)
    return {"trees": len(booster.get_model().get("trees", []) or [])}


def seed_mpc(role):
    """Makes SSHE's secret sharing repeatable: FATE seeds its MPC generators from os.urandom,
    so two runs of one job differ (truncation of shares is probabilistic), and a run on
    eggroll-rs could not be compared with one on FATE standalone. Seeds them per role
    instead, in both runs alike; nothing else of the job is touched."""
    import random

    import torch
    import fate.arch.protocol.mpc as mpc

    torch.manual_seed(0)
    setup = mpc._setup_prng

    def seeded(ctx, generators):
        rng = random.Random(f"eggroll-rs-test-{role}")
        real = os.urandom
        os.urandom = lambda n: rng.getrandbits(8 * n).to_bytes(n, "big")
        try:
            setup(ctx, generators)
        finally:
            os.urandom = real

    mpc._setup_prng = seeded


def run_sshe_lr(ctx, args):
    from fate.ml.glm.hetero.sshe import SSHELogisticRegression

    from fate.arch.context._metrics import InMemoryMetricsHandler

    metrics = InMemoryMetricsHandler()
    ctx.set_metric_handler(metrics)
    seed_mpc(args.role)
    ctx.mpc.init()
    data = intersect(ctx, frame(ctx, breast_cancer(args.role), label=args.role == "guest"))
    lr = SSHELogisticRegression(
        epochs=3, batch_size=None, tol=1e-4, early_stop="diff", learning_rate=0.15,
        init_param={"method": "random_uniform", "fit_intercept": True, "random_state": 42},
    )
    lr.fit(ctx, data)
    model = lr.get_model()["data"]["estimator"]
    losses = [d["metric"] for m in metrics.get_metrics() if m.get("type") == "loss" for d in m["data"]]
    return {"param": model["param"], "end_epoch": model["end_epoch"], "loss": losses}


class OpCounter:
    """Counts and times FATE's KVTable ops and federation calls in this process."""

    def __init__(self, progress=False):
        self.ops = {}
        self.calls = []  # (op, seconds) of each call, in order
        self.progress = progress
        self.started = 0  # calls started, nested ones (a join's own ops) included

    def wrap(self, cls, names):
        for name in names:
            f = getattr(cls, name, None)
            if f is None:
                continue

            def timed(*a, __f=f, __n=name, **k):
                self.started += 1
                if self.progress:
                    print(f"call {self.started}: {__n}", flush=True)
                t = time.perf_counter()
                try:
                    return __f(*a, **k)
                finally:
                    d = time.perf_counter() - t
                    c = self.ops.setdefault(__n, [0, 0.0])
                    c[0] += 1
                    c[1] += d
                    self.calls.append((__n, round(d, 4)))

            setattr(cls, name, timed)


def ready_file(path, role):
    """The file by which `role` tells the harness waiting at `path` that it has imported."""
    return f"{path}.{role}.ready"


# How often a party and the harness look for each other's file: the most the parties'
# starts can differ by.
START_POLL_SECONDS = 0.001


def wait_for_start(path, role, limit=600):
    """Says this party is ready and waits for the harness's go: without it, the party whose
    imports ended first would wait in its first pull for the other's, and that skew (up to a
    second on a loaded machine) would count as the job's time on either back end."""
    from local_cluster import wait_until

    with open(ready_file(path, role), "w"):
        pass
    if not wait_until(lambda: os.path.exists(path), limit, every=START_POLL_SECONDS):
        sys.exit(f"no start signal at {path} after {limit} s")


def main():
    args = parse()
    import logging

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stdout,
                        format=f"%(asctime)s {args.role} %(name)s: %(message)s")
    if args.backend == "eggroll-rs" and not args.rollsite:
        sys.exit("--backend eggroll-rs needs --rollsite")
    if args.backend == "standalone" and not args.data_dir:
        sys.exit("--backend standalone needs --data-dir")
    from fate.arch.computing.api._table import KVTable
    from fate.arch.federation.api._federation import Federation

    counter = OpCounter(progress=args.progress)
    counter.wrap(KVTable, ["mapValues", "map", "mapPartitions", "mapReducePartitions", "applyPartitions",
                           "join", "union", "subtractByKey", "reduce", "collect", "take", "count",
                           "sample", "filter", "flatMap", "copy", "binarySortedMapPartitionsWithIndex"])
    counter.wrap(Federation, ["push_table", "push_bytes", "pull_table", "pull_bytes"])
    import importlib

    for module in JOB_MODULES[args.job]:
        importlib.import_module(module)
    imported = time.perf_counter()
    # This process's CPU seconds (all its threads) by phase: FATE's driver work, and the
    # back end's client in it.
    cpu = {"imports": time.process_time()}
    if args.start_when:
        wait_for_start(args.start_when, args.role)
    cpu["wait"] = time.process_time() - cpu["imports"]
    began = time.time()
    started = time.perf_counter()
    phases = {"imports": imported - PROCESS_START, "wait": started - imported}
    ctx, cs = context(args)
    phases["context"] = time.perf_counter() - started
    cpu["context"] = time.process_time() - sum(cpu.values())
    try:
        result = {"psi": run_psi, "sbt": run_sbt, "sshe-lr": run_sshe_lr}[args.job](ctx, args)
        phases["job"] = time.perf_counter() - started - phases["context"]
        cpu["job"] = time.process_time() - sum(cpu.values())
    finally:
        t = time.perf_counter()
        ctx.destroy()
        phases["destroy"] = time.perf_counter() - t
        t = time.perf_counter()
        cs.stop()
        phases["stop"] = time.perf_counter() - t
    cpu["end"] = time.process_time() - sum(cpu.values())
    result["seconds"] = time.perf_counter() - started
    # Wall-clock ends of this party's job (imports excluded), to span both parties' jobs.
    result["began"], result["ended"] = began, time.time()
    result["phases"] = {k: round(v, 3) for k, v in phases.items()}
    result["cpu_phases"] = {k: round(v, 3) for k, v in cpu.items()}
    result["ops"] = {k: {"count": v[0], "seconds": round(v[1], 4)} for k, v in sorted(counter.ops.items())}
    result["calls"] = counter.calls
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
