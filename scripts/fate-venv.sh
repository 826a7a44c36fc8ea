#!/usr/bin/env bash
# Makes the FATE virtual environment (.venv-fate at the top of the repository): FATE 2.2 and
# its dependencies from scripts/requirements-fate.txt (about 6 GB with torch; installed once,
# again only when the file changes, from pip's cache when it has them), then builds and
# installs our `eggroll` module (python/, with maturin, release profile) into it. Prints the
# path of its python. Nothing goes into the system Python. Exits 3 when the packages cannot
# be installed (no network, no disk), saying why.
#
#   scripts/fate-venv.sh            # prints e.g. /path/to/repo/.venv-fate/bin/python
#   EGGROLL_FATE_VENV=DIR scripts/fate-venv.sh   # another location
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EGGROLL_FATE_VENV:-$repo/.venv-fate}"
reqs="$repo/scripts/requirements-fate.txt"
py="${PYTHON:-python3}"
die() { echo "fate-venv: error: $*" >&2; exit "${2:-1}"; }

command -v "$py" >/dev/null || die "$py not found: install Python 3 (Debian: apt-get install python3 python3-venv), or run 'make deps'"
command -v flock >/dev/null || die "flock not found (Debian: apt-get install util-linux)"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="$venv/.requirements"
if ! { [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$reqs" "$stamp"; }; then
    if [ ! -x "$venv/bin/python" ]; then
        echo "fate-venv: creating $venv" >&2
        "$py" -m venv "$venv" >&2 \
            || die "'$py -m venv' failed: install the venv module (Debian: apt-get install python3-venv), or run 'make deps'"
    fi
    echo "fate-venv: installing $(grep -v '^#' "$reqs" | tr '\n' ' ')(about 6 GB, once)" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2 \
        || die "pip could not install $reqs into $venv (output above): PyPI unreachable or the disk full?" 3
    cp "$reqs" "$stamp"
fi
# Our module, built from this checkout each time (cargo rebuilds only what changed).
echo "fate-venv: building the eggroll module (python/) into $venv" >&2
VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet \
    -m "$repo/python/Cargo.toml" >&2 \
    || die "maturin could not build python/ into $venv (output above)"
echo "$venv/bin/python"
