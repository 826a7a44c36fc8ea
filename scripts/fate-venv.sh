#!/usr/bin/env bash
# Makes the FATE virtual environment (.venv-fate at the top of the repository): FATE 2.2 and
# its dependencies from scripts/requirements-fate.txt (about 6 GB with torch; installed once
# by scripts/venv.sh, again only when the file changes, from pip's cache when it has them),
# then builds and installs our `eggroll` module (python/, with maturin, release profile) into
# it. Prints the path of its python. Exits 3 when the packages cannot be installed.
#
#   scripts/fate-venv.sh            # prints e.g. /path/to/repo/.venv-fate/bin/python
#   EGGROLL_FATE_VENV=DIR scripts/fate-venv.sh   # another location
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EGGROLL_FATE_VENV:-$repo/.venv-fate}"
python="$(EGGROLL_VENV="$venv" EGGROLL_VENV_REQUIREMENTS="$repo/scripts/requirements-fate.txt" \
    "$repo/scripts/venv.sh")"
# Our module, built from this checkout each time (cargo rebuilds only what changed).
echo "fate-venv: building the eggroll module (python/) into $venv" >&2
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet \
    -m "$repo/python/Cargo.toml" >&2 \
    || { echo "fate-venv: error: maturin could not build python/ into $venv (output above)" >&2; exit 1; }
echo "$python"
