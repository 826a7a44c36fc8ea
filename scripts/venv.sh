#!/usr/bin/env bash
# Makes the project's Python virtual environment (.venv at the top of the repository) with
# the packages of scripts/requirements-test.txt, once, and prints the path of its python.
# Idempotent and safe to run from several processes at once (tests run in parallel): one
# holds a lock while the others wait, and the packages are installed again only when the
# requirements file changed. Nothing goes into the system Python. Exits 3 when pip cannot
# install the packages (PyPI unreachable, disk full).
#
#   scripts/venv.sh            # prints e.g. /path/to/repo/.venv/bin/python
#   EGGROLL_VENV=DIR scripts/venv.sh   # another location
#   EGGROLL_VENV_REQUIREMENTS=FILE scripts/venv.sh   # other packages (fate-venv.sh's)
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
venv="${EGGROLL_VENV:-$repo/.venv}"
reqs="${EGGROLL_VENV_REQUIREMENTS:-$repo/scripts/requirements-test.txt}"
py="${PYTHON:-python3}"
die() { echo "venv: error: $*" >&2; exit "${2:-1}"; }

command -v "$py" >/dev/null || die "$py not found: install Python 3 (Debian: apt-get install python3 python3-venv), or run 'make deps'"
command -v flock >/dev/null || die "flock not found (Debian: apt-get install util-linux)"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && cmp -s "$reqs" "$stamp"; then
    echo "$venv/bin/python"
    exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "venv: creating $venv" >&2
    "$py" -m venv "$venv" >&2 \
        || die "'$py -m venv' failed: install the venv module (Debian: apt-get install python3-venv), or run 'make deps'"
fi
echo "venv: installing $(grep -v '^#' "$reqs" | tr '\n' ' ')" >&2
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2 \
    || die "pip could not install $reqs into $venv (output above): PyPI unreachable or the disk full?" 3
cp "$reqs" "$stamp"
echo "$venv/bin/python"
