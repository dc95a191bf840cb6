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
#  4. make install-python PREFIX=$tmp/prefix (no venv) installs an importable
#     package under the prefix, and make uninstall-python removes it;
#  5. pytest tests/python with the venv's interpreter, the installed library found by
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

# Outside a venv, make install-python puts the package under PREFIX's site
# directory (importable with the library from the same prefix), and
# make uninstall-python takes it away again.
site=$("$PYTHON" -c 'import sys; print("lib/python%d.%d/dist-packages" % sys.version_info[:2])')
step "make install-python PREFIX=$prefix" \
    "$MAKE" -C "$root" --no-print-directory install-python PREFIX="$prefix"
step "the package under $prefix/$site imports and loads $prefix/lib/$soname" \
    env -u WMANIFOLD_LIB PYTHONPATH="$prefix/$site" LD_LIBRARY_PATH="$prefix/lib" \
    ${WM_TEST_PRELOAD:+LD_PRELOAD="$WM_TEST_PRELOAD"} "$PYTHON" -c \
    "import os, sys, wmanifold as wm; sys.exit(0 if wm.__file__.startswith('$prefix/') and os.path.realpath(wm.lib_path) == os.path.realpath('$prefix/lib/$soname') else 'loaded %s from %s' % (wm.lib_path, wm.__file__))"
step "make uninstall-python PREFIX=$prefix" \
    "$MAKE" -C "$root" --no-print-directory uninstall-python PREFIX="$prefix"
step "make uninstall-python removes the package" test -z "$(ls -A "$prefix/$site")"

cd "$root" || exit 1
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of words
env -u WMANIFOLD_LIB PYTHONDONTWRITEBYTECODE=1 WM_TEST_PREFIX="$prefix" \
    LD_LIBRARY_PATH="$prefix/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
    ${WM_TEST_PRELOAD:+LD_PRELOAD="$WM_TEST_PRELOAD"} \
    "$venv/bin/python" -m pytest -q -rs -p no:cacheprovider ${PYTEST_ARGS:-} tests/python
