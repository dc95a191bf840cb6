#!/bin/sh
# run_installed.sh [LIB] -- the Python tests against what a user installs.
#
#  1. make install PREFIX=$tmp/prefix (the library, its soname chain, the header);
#     LIB, when given and not the release build's file (a sanitized build),
#     replaces the installed library file so that it is the one tested;
#  2. a virtual environment that sees Debian's packages (numpy, pytest, torch):
#     python3 -m venv --system-site-packages --without-pip (pip is Debian's);
#  3. make install-python PYTHON=$venv/bin/python: pip install
#     --no-build-isolation --no-index, offline;
#  4. pytest tests/python with that interpreter, the installed library found by
#     its soname through LD_LIBRARY_PATH=$tmp/prefix/lib, WMANIFOLD_LIB unset,
#     and WM_TEST_PREFIX naming the prefix.
# Environment: MAKE, PYTHON (default /usr/bin/python3), WM_TEST_PRELOAD (an
# LD_PRELOAD for the pytest run only, e.g. the ASan runtime), PYTEST_ARGS.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
MAKE=${MAKE:-make}
PYTHON=${PYTHON:-/usr/bin/python3}
lib=${1:-}

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
venv=$tmp/venv
# A plain release install even from `make test SANITIZE=1`: the inner make must
# not inherit the outer one's variables.
unset MAKEFLAGS MFLAGS MAKELEVEL SANITIZE VARIANT WMANIFOLD_LIB

step() {  # step WHAT COMMAND...: run quietly, show the log on failure
    what=$1
    shift
    if ! "$@" >"$tmp/log" 2>&1; then
        echo "FAIL python: $what:"
        tail -30 "$tmp/log"
        echo "python: 0 passed, 1 failed"
        exit 1
    fi
}

step "make install PREFIX=$prefix" "$MAKE" -C "$root" --no-print-directory install PREFIX="$prefix"
soname=$(cd "$prefix/lib" && ls libwmanifold.so.? 2>/dev/null | head -1)
if [ -n "$lib" ] && [ "$(readlink -f "$lib")" != "$(readlink -f "$root/lib/$soname")" ]; then
    cp "$(readlink -f "$lib")" "$(readlink -f "$prefix/lib/$soname")"
fi
step "python3 -m venv" "$PYTHON" -m venv --system-site-packages --without-pip "$venv"
step "make install-python into the venv" \
    "$MAKE" -C "$root" --no-print-directory install-python PYTHON="$venv/bin/python"

cd "$root" || exit 1
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
env -u WMANIFOLD_LIB PYTHONDONTWRITEBYTECODE=1 WM_TEST_PREFIX="$prefix" \
    LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    ${WM_TEST_PRELOAD:+LD_PRELOAD="$WM_TEST_PRELOAD"} \
    "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider ${PYTEST_ARGS:-} tests/python
