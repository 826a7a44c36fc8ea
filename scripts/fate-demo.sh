#!/usr/bin/env bash
# `make fate-demo`: FATE 2.2's hetero SecureBoost (breast-cancer data, split between a guest and
# a host) run by FATE's own Python API, first on FATE's standalone back end, then between two
# eggroll-rs parties on this machine, each with its own cluster (cluster manager, node
# manager, Python eggs) and roll-site. Prints the guest's FATE log and both times.
set -uo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$("$repo/scripts/fate-venv.sh")"
rc=$?
if [ $rc -ne 0 ]; then
    echo "fate-demo: the FATE venv could not be made (see above)" >&2
    exit $rc
fi
(cd "$repo" && cargo build --release -p eggroll) || exit $?
export EGGROLL_BIN="$repo/target/release/eggroll"
exec "$python" "$repo/python/tests/fate_federation.py" --jobs sbt --layouts two-parties --no-faults --show "$@"
