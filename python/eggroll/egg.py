"""`python -m eggroll.egg`: a Python egg. A node manager starts one per processor of a session
that asks for Python eggs (FATE's): eggroll-rs's egg-pair server, run in this process so that
its tasks' Python functions run here. Not started by hand."""

import argparse
import sys

from eggroll import _native


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m eggroll.egg", description=__doc__)
    parser.add_argument("--session-id", required=True)
    parser.add_argument("--processor-id", required=True, type=int)
    parser.add_argument("--cluster-manager", required=True, help="host:port it reports to")
    parser.add_argument("--host", required=True, help="address to listen on")
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args(argv)
    try:
        _native.serve_egg(args.session_id, args.processor_id, args.cluster_manager, args.host, args.data_dir)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
