#!/bin/sh
# fresh-debian.sh -- the README's commands on a bare Debian 12, as a new user.
#
# As root, on a Debian (or any) host with debootstrap:
#   1. debootstrap --variant=minbase bookworm into a temp dir, from the mirror
#      this machine's apt uses (override: FRESH_MIRROR=URL), then
#      `apt-get install make` in it, nothing else;
#   2. copies this tree in (the working tree's tracked and untracked,
#      not-ignored files; FRESH_TREE=head copies `git archive HEAD` instead);
#   3. mounts /proc, /sys, /dev, /dev/pts and a tmpfs /dev/shm in the chroot;
#   4. as an unprivileged user: `make test` and `make demo` must stop before
#      building anything, with exactly one `apt-get install` line;
#   5. as root: `make test`, then `make demo`; the README's system install
#      (make install, its quickstart build runs with no LD_LIBRARY_PATH, make
#      uninstall leaves nothing); then `.ci/run`; each must pass;
#   6. prints a summary; the mounts are undone on any exit (trap), and the
#      chroot deleted unless FRESH_KEEP=1.
# FRESH_DEMO_ARGS="DEMO_SEEDS=1 DEMO_MATCHED=0" shortens the demo (for trying
# the script out; the proof is the full demo).
# FRESH_BASE=FILE.tar caches step 1 (made if absent, reused if present), for
# reruns. Each step's whole output goes to $FRESH_LOG_DIR (default
# build/fresh-debian/) as NAME.log; the last lines of a failing one are shown.
# Ends with "fresh-debian: N passed, M failed"; exits non-zero on a failure.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
chroot_bin=$(command -v chroot)
[ "$(id -u)" = 0 ] || { echo "fresh-debian: must run as root (debootstrap, chroot, mount)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "fresh-debian: needs debootstrap (apt-get install debootstrap)" >&2; exit 2; }

# The mirror: the URI this machine's apt uses for bookworm main.
mirror=${FRESH_MIRROR:-}
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
        awk '/^URIs:/ { u = $2 } /^Suites:/ && / bookworm( |$)/ && u { print u; exit }')
fi
if [ -z "$mirror" ]; then
    mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
fi
mirror=${mirror:-http://deb.debian.org/debian}

logs=${FRESH_LOG_DIR:-$root/build/fresh-debian}
mkdir -p "$logs"
tmp=$(mktemp -d "${TMPDIR:-/var/tmp}/wm-fresh-debian.XXXXXX") || exit 1
ch=$tmp/root
mounted=""
cleanup() {
    for m in $mounted; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
    # Never delete through a mount that is still there.
    if grep -q " $tmp/" /proc/mounts; then
        echo "fresh-debian: mounts left under $tmp, not deleting it" >&2
    elif [ "${FRESH_KEEP:-0}" = 1 ]; then
        echo "fresh-debian: chroot kept in $ch"
    else
        rm -rf "$tmp"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

pass=0
fail=0
summary=""
t_start=$(date +%s)
# step NAME CMD...: run, log to $logs/NAME.log, count, remember a summary line.
step() {
    name=$1; shift
    t0=$(date +%s)
    "$@" >"$logs/$name.log" 2>&1
    st=$?
    secs=$(($(date +%s) - t0))
    if [ "$st" = 0 ]; then
        pass=$((pass + 1)); line="ok   $name (${secs} s)"
    else
        fail=$((fail + 1)); line="FAIL $name (exit $st, ${secs} s; log $logs/$name.log)"
    fi
    echo "$line"
    [ "$st" = 0 ] || tail -n 25 "$logs/$name.log" | sed 's/^/     | /'
    summary="$summary$line
"
    return "$st"
}
finish() {
    echo "---- summary (mirror $mirror, $(($(date +%s) - t_start)) s in all; logs in $logs)"
    printf '%s' "$summary"
    echo "fresh-debian: $pass passed, $fail failed"
    [ "$fail" = 0 ]
    exit $?
}

# In the chroot, with a clean environment: what a root login would have.
in_chroot() {
    env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 TERM=dumb chroot "$ch" "$@"
}
as_user() {
    # chroot(8) by its path: the user's PATH has no sbin.
    env -i HOME=/tmp PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 TERM=dumb \
        "$chroot_bin" --userspec=65534:65534 "$ch" "$@"
}

# ---- 1. the bare system ---------------------------------------------------------
make_base() {
    if [ -n "${FRESH_BASE:-}" ] && [ -s "$FRESH_BASE" ]; then
        echo "reusing $FRESH_BASE"
        mkdir -p "$ch" && tar -C "$ch" -xpf "$FRESH_BASE"
        return
    fi
    debootstrap --variant=minbase bookworm "$ch" "$mirror" || return 1
    if [ -n "${FRESH_BASE:-}" ]; then tar -C "$ch" -cpf "$FRESH_BASE" . || return 1; fi
}
step debootstrap make_base || finish

cp /etc/resolv.conf "$ch/etc/resolv.conf"
for m in proc sys dev dev/pts dev/shm; do mkdir -p "$ch/$m"; done
mount -t proc proc "$ch/proc" && mounted="$ch/proc $mounted"
mount -t sysfs sysfs "$ch/sys" && mounted="$ch/sys $mounted"
mount --bind /dev "$ch/dev" && mounted="$ch/dev $mounted"
mount --bind /dev/pts "$ch/dev/pts" && mounted="$ch/dev/pts $mounted"
mount -t tmpfs -o mode=1777 shm "$ch/dev/shm" && mounted="$ch/dev/shm $mounted"

step install-make in_chroot sh -c 'export DEBIAN_FRONTEND=noninteractive;
    apt-get update -qq && apt-get install -y -qq make >/dev/null && make --version | head -1' || finish

# ---- 2. the tree ----------------------------------------------------------------
copy_tree() {
    mkdir -p "$ch/src/wmanifold"
    if [ "${FRESH_TREE:-work}" = head ]; then
        git -C "$root" archive HEAD | tar -C "$ch/src/wmanifold" -xf -
    else
        (cd "$root" && git ls-files -z --cached --others --exclude-standard |
            xargs -0 sh -c 'for f; do [ -e "$f" ] && printf "%s\0" "$f"; done' sh |
            tar --null -T - -cf -) | tar -C "$ch/src/wmanifold" -xf -
    fi
    # Readable by the unprivileged user; writable only by root.
    chmod -R a+rX "$ch/src"
    ls "$ch/src/wmanifold"
}
step copy-tree copy_tree || finish

# ---- 3. not root: one exact apt-get line, nothing built -------------------------
# Run from a copy the user owns, so that a failure is the missing packages,
# not a permission problem.
user_check() {
    target=$1
    rm -rf "$ch/tmp/user-tree" && cp -a "$ch/src/wmanifold" "$ch/tmp/user-tree" &&
        chown -R 65534:65534 "$ch/tmp/user-tree" || return 1
    as_user sh -c "cd /tmp/user-tree && make $target" >"$tmp/user.out" 2>&1
    st=$?
    cat "$tmp/user.out"
    n=$(grep -c 'apt-get install' "$tmp/user.out")
    echo "-- exit status $st; lines naming apt-get install: $n"
    [ "$st" != 0 ] || { echo "make $target succeeded without the packages?"; return 1; }
    [ "$n" = 1 ] || { echo "want exactly one apt-get install line"; return 1; }
    built=$(cd "$ch/tmp/user-tree" && find build lib -name '*.o' -o -name '*.a' 2>/dev/null | head -3)
    [ -z "$built" ] || { echo "built before stopping: $built"; return 1; }
    grep 'apt-get install' "$tmp/user.out" | sed 's/^.*\(apt-get install\)/\1/' >"$logs/user-$target.line"
}
step user-make-test user_check test
step user-make-demo user_check demo
rm -rf "$ch/tmp/user-tree"

# ---- 4. root: the two commands, then CI -------------------------------------------
step root-make-test in_chroot sh -c 'cd /src/wmanifold && make test'
step root-make-demo in_chroot sh -c "cd /src/wmanifold && make demo ${FRESH_DEMO_ARGS:-}"
# The README's system install: programs find the library at once (ldconfig),
# and uninstall takes it all away again.
step readme-install in_chroot sh -c 'set -e; cd /src/wmanifold; make install
    mkdir -p /tmp/q && cp examples/quickstart.c /tmp/q/ && cd /tmp/q
    cc -std=c11 quickstart.c $(pkg-config --cflags --libs wmanifold) -lm
    ./a.out
    cd /src/wmanifold && make uninstall
    left=$(find /usr/local -name "*wmanifold*"; ldconfig -p | grep wmanifold || true)
    [ -z "$left" ] || { echo "left after make uninstall: $left"; exit 1; }
    echo "installed, ran ./a.out with no LD_LIBRARY_PATH, uninstalled: nothing left"'
step ci-run in_chroot sh -c 'cd /src/wmanifold && .ci/run'
# The totals each printed, for the summary.
for n in root-make-test root-make-demo ci-run; do
    grep -E '^(make test|make test-c|demo|ci): ' "$logs/$n.log" | tail -n 2 | sed "s/^/     $n: /"
done
finish
