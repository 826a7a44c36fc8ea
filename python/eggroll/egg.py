"""`python -m eggroll.egg`: a Python egg. A node manager starts one per processor of a session
that asks for Python eggs (FATE's): eggroll-rs's egg-pair server, run in this process so that
its tasks' Python functions run here. Not started by hand.

With `--spare`, it is a warm egg: it imports the `--preload` modules (what FATE's functions
import: seconds of CPU), says `ready` on stdout and in its log, then waits for its session: one
JSON line on stdin from the node manager. Its output then goes to that egg's log. When the
session ends, the node manager may release it (`release` on stdin) instead of stopping it: it
then says `ready` again and waits for its next session, its imports still done."""

import argparse
import gc
import importlib
import json
import os
import sys

from eggroll import _native


def _serve(session_id, processor_id, cluster_manager, host, data_dir):
    """Serves one session; (exit code, whether the node manager released this process)."""
    try:
        released = _native.serve_egg(session_id, int(processor_id), cluster_manager, host, data_dir)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1, False
    return 0, released


def _spare(preload):
    for name in (m.strip() for m in preload.split(",")):
        if not name:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # a module this machine lacks: the functions will say so
            print(f"spare: cannot preload {name}: {e}", file=sys.stderr)
    # What the imports made lives as long as the process: frozen, the collector no longer
    # walks it (some 400k objects with FATE: 150 ms a full collection, in every session's
    # tasks and at every release, where the node manager waits for it).
    gc.collect()
    gc.freeze()
    # The node manager's pipe and the spare's log, kept: a released egg goes back to them.
    spare_out, spare_err = os.dup(1), os.dup(2)
    while True:
        print("ready", file=sys.stderr, flush=True)
        try:
            print("ready", flush=True)
        except BrokenPipeError:
            return 0  # the node manager went away while this spare warmed
        line = sys.stdin.buffer.readline()
        if not line:
            return 0  # the node manager retired this spare, or went away
        try:
            a = json.loads(line)
            log = os.open(a["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        except (ValueError, KeyError, OSError) as e:
            print(f"spare: bad assignment {line[:200]!r}: {e}", file=sys.stderr)
            return 2
        # From now on this is the session's egg: its output goes to the egg's log (a test finds
        # a session's eggs by that file), not to the node manager's pipe.
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        code, released = _serve(a["session_id"], a["processor_id"], a["cluster_manager"], a["host"], a["data_dir"])
        if not released:
            return code
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(spare_out, 1)
        os.dup2(spare_err, 2)
        gc.collect()  # what the session's functions left


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eggroll.egg", description=__doc__)
    parser.add_argument("--spare", action="store_true", help="wait warm for a session (see above)")
    parser.add_argument("--preload", default="", help="modules a spare imports, comma-separated")
    parser.add_argument("--session-id")
    parser.add_argument("--processor-id", type=int)
    parser.add_argument("--cluster-manager", help="host:port it reports to")
    parser.add_argument("--host", help="address to listen on")
    parser.add_argument("--data-dir")
    args = parser.parse_args(argv)
    if args.spare:
        return _spare(args.preload)
    missing = [f"--{k.replace('_', '-')}" for k in ("session_id", "processor_id", "cluster_manager", "host",
                                                    "data_dir") if getattr(args, k) is None]
    if missing:
        parser.error(f"an egg needs {', '.join(missing)}")
    return _serve(args.session_id, args.processor_id, args.cluster_manager, args.host, args.data_dir)[0]


if __name__ == "__main__":
    sys.exit(main())
