#!/bin/sh
# install_test.sh -- an installed libwmanifold is usable from outside the tree.
#
#  1. make install PREFIX=$tmp/prefix puts the header, the library chain
#     (.so -> .so.MAJOR -> .so.MAJOR.MINOR.PATCH), the static library and
#     wmanifold.pc in place, and the .pc names that prefix;
#  2. a program outside the tree (a copy of examples/tutorial/01_point.c)
#     builds with `pkg-config --cflags --libs wmanifold` against the shared
#     library and runs with LD_LIBRARY_PATH, resolving the installed copy;
#  3. the C++ example builds the same way with an rpath and runs;
#  4. the README's static links (its "install_test: static" block): with
#     `pkg-config --static` alone, -static makes a program with no NEEDED
#     entry at all, and -l:libwmanifold.a one without libwmanifold.so; both run;
#  5. make install DESTDIR=$tmp/stage PREFIX=/opt/... stages under DESTDIR
#     only, its .pc names the final prefix (not the staging directory), and a
#     program builds against the staged tree (PKG_CONFIG_SYSROOT_DIR) and
#     runs; make uninstall with the same DESTDIR and PREFIX empties it;
#  6. make uninstall removes what install put there;
#  7. ldconfig: install into a directory the loader searches runs it (as
#     root; LDCONFIG is replaced by an echo) or says to run it (not root);
#     into any other directory it does not, and prints the rpath and
#     LD_LIBRARY_PATH ways instead;
#  8. the README's "install_test: other-prefix" block, run as written with
#     HOME in a temp dir: install, rpath build, LD_LIBRARY_PATH build, both
#     run, uninstall leaves nothing.
# Ends with "install: N passed, N failed"; exits non-zero on any failure.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
MAKE=${MAKE:-make}
CC=${CC:-cc}
CXX=${CXX:-c++}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
fresh() { rm -f "$tmp/out" "$tmp/err"; }  # no step reports an earlier one's output

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
# A plain release install, even when run from `make test SANITIZE=1`: the
# inner make must not inherit the outer one's variables.
unset MAKEFLAGS MFLAGS MAKELEVEL SANITIZE VARIANT

# Programs built outside the tree: nothing of the source tree is on their paths.
app=$tmp/app
mkdir -p "$app"
cp "$root/examples/tutorial/01_point.c" "$app/app.c"
cp "$root/examples/cpp/train.cpp" "$app/"  # wmanifold.hpp: the installed one

# pc_flags VAR...: pkg-config arguments; when the installed .pc names the
# wrong directories, override them so the remaining steps still test the
# files (the wrong .pc itself is counted as a failure where it is found).
pc_override=""

# ---- 1. install into a prefix ------------------------------------------------
prefix=$tmp/prefix
if "$MAKE" -C "$root" --no-print-directory install PREFIX="$prefix" >"$tmp/install.log" 2>&1; then
    ok "make install PREFIX=$prefix"
else
    bad "make install PREFIX=$prefix failed:"
    tail -20 "$tmp/install.log"
fi

ver() { sed -n "s/^#define[[:space:]]*WM_VERSION_$1[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$root/include/wmanifold.h"; }
major=$(ver MAJOR)
full=$major.$(ver MINOR).$(ver PATCH)
missing=""
for f in include/wmanifold.h include/wmanifold.hpp lib/libwmanifold.so.$full lib/libwmanifold.a lib/pkgconfig/wmanifold.pc; do
    [ -f "$prefix/$f" ] || missing="$missing $f"
done
[ "$(readlink "$prefix/lib/libwmanifold.so.$major")" = "libwmanifold.so.$full" ] || missing="$missing lib/libwmanifold.so.$major->so.$full"
[ "$(readlink "$prefix/lib/libwmanifold.so")" = "libwmanifold.so.$major" ] || missing="$missing lib/libwmanifold.so->so.$major"
if [ -z "$missing" ]; then
    ok "installed headers, libwmanifold.so chain, libwmanifold.a, wmanifold.pc"
else
    bad "missing or wrong in $prefix:$missing"
fi

export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
pc_prefix=$(pkg-config --variable=prefix wmanifold 2>/dev/null)
pc_libdir=$(pkg-config --variable=libdir wmanifold 2>/dev/null)
pc_incdir=$(pkg-config --variable=includedir wmanifold 2>/dev/null)
if [ "$pc_prefix" = "$prefix" ] && [ "$pc_libdir" = "$prefix/lib" ] && [ "$pc_incdir" = "$prefix/include" ]; then
    ok "installed wmanifold.pc names prefix=$prefix"
else
    bad "installed wmanifold.pc says prefix=$pc_prefix libdir=$pc_libdir includedir=$pc_incdir, want $prefix (was it generated at build time with another PREFIX?)"
    pc_override="--define-variable=prefix=$prefix --define-variable=libdir=$prefix/lib --define-variable=includedir=$prefix/include"
fi

# ---- 2. shared, LD_LIBRARY_PATH ---------------------------------------------
fresh
# shellcheck disable=SC2086  # pc_override is a list of words
if "$CC" -std=c11 -Wall -Wextra -Werror -o "$app/app_shared" "$app/app.c" \
    $(pkg-config $pc_override --cflags --libs wmanifold) -lm 2>"$tmp/err"; then
    resolved=$(LD_LIBRARY_PATH="$prefix/lib" ldd "$app/app_shared" | awk '/libwmanifold/ { print $3 }')
    if [ "$(readlink -f "$resolved")" != "$(readlink -f "$prefix/lib/libwmanifold.so.$major")" ]; then
        bad "shared program resolves libwmanifold to '$resolved', not the installed copy"
    elif (cd "$app" && LD_LIBRARY_PATH="$prefix/lib" ./app_shared >"$tmp/out" 2>&1); then
        ok "C program built with pkg-config runs against the installed libwmanifold.so"
    else
        bad "shared C program failed:"
        cat "$tmp/out"
    fi
else
    bad "C program does not build with pkg-config --cflags --libs: $(head -5 "$tmp/err")"
fi

# ---- 3. C++, rpath -------------------------------------------------------------
fresh
# shellcheck disable=SC2086
if "$CXX" -std=c++17 -Wall -Wextra -Werror -o "$app/train" "$app/train.cpp" \
    $(pkg-config $pc_override --cflags --libs wmanifold) -Wl,-rpath,"$prefix/lib" -lpthread 2>"$tmp/err"; then
    if (cd "$app" && ./train --steps 200 --threads 2 >"$tmp/out" 2>&1); then
        ok "C++ example built with pkg-config runs (rpath)"
    else
        bad "C++ example failed:"
        cat "$tmp/out"
    fi
else
    bad "C++ example does not build with pkg-config: $(head -5 "$tmp/err")"
fi

# ---- 4. static (the README's commands) ------------------------------------------
# readme_block NAME: the ```sh block after README.md's "<!-- install_test: NAME -->".
readme_block() {
    awk -v m="<!-- install_test: $1 -->" '$0 == m { f = 1; next }
        f && /^```sh/ { g = 1; next } g && /^```/ { exit } g { print }' "$root/README.md"
}
mkdir -p "$app/examples"
cp "$root/examples/quickstart.c" "$app/examples/"
readme_block static >"$tmp/static.sh"
if [ "$(wc -l <"$tmp/static.sh")" -ne 2 ]; then
    bad "README.md's static block has $(wc -l <"$tmp/static.sh") commands, want 2"
fi
n=0
while IFS= read -r cmd; do
    n=$((n + 1))
    fresh
    rm -f "$app/quickstart"
    # shellcheck disable=SC2086
    if ! (cd "$app" && eval "$cmd") 2>"$tmp/err"; then
        bad "README static link $n does not link: $cmd: $(head -5 "$tmp/err")"
        continue
    fi
    needed=$(readelf -d "$app/quickstart" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    if [ $n = 1 ] && [ -n "$needed" ]; then
        bad "README static link 1 (-static) still needs: $needed"
    elif echo "$needed" | grep -q libwmanifold; then
        bad "README static link $n still needs libwmanifold.so"
    elif (cd "$app" && ./quickstart >"$tmp/out" 2>&1); then
        ok "README static link $n runs (NEEDED: ${needed:-none})"
    else
        bad "README static link $n: the program failed:"
        cat "$tmp/out"
    fi
done <"$tmp/static.sh"
# What the static link pulls in: at least every library the BLAS's own
# static link names (OpenBLAS: -lgfortran).
blas_pc=$(pkg-config $pc_override --print-requires-private wmanifold 2>/dev/null | awk '{ print $1 }')
if [ -n "$blas_pc" ]; then
    want=$(pkg-config --static --libs-only-l "$blas_pc" | tr ' ' '\n' | grep . | sort -u)
    # shellcheck disable=SC2086
    have=$(pkg-config $pc_override --static --libs-only-l wmanifold | tr ' ' '\n' | grep . | sort -u)
    lacking=$(printf '%s\n' "$want" | while read -r l; do printf '%s\n' "$have" | grep -qx -- "$l" || printf '%s ' "$l"; done)
    if [ -z "$lacking" ]; then
        ok "pkg-config --static --libs wmanifold includes $blas_pc's static libs ($(echo $want))"
    else
        bad "pkg-config --static --libs wmanifold lacks $lacking"
    fi
else
    bad "wmanifold.pc names no BLAS in Requires.private"
fi

# ---- 5. DESTDIR staging ---------------------------------------------------------
stage=$tmp/stage
final=/opt/wmanifold-install-test-$$
if "$MAKE" -C "$root" --no-print-directory install DESTDIR="$stage" PREFIX="$final" >"$tmp/install.log" 2>&1 &&
    [ -f "$stage$final/lib/libwmanifold.so.$full" ] && [ -f "$stage$final/include/wmanifold.h" ] &&
    [ ! -e "$final" ]; then
    ok "make install DESTDIR=... stages under DESTDIR only"
else
    bad "DESTDIR install: not staged under $stage$final (or wrote to $final):"
    tail -20 "$tmp/install.log"
fi
spc=$(PKG_CONFIG_PATH="$stage$final/lib/pkgconfig" pkg-config --variable=prefix wmanifold 2>/dev/null)
stage_override=""
if [ "$spc" = "$final" ]; then
    ok "staged wmanifold.pc names the final prefix $final"
else
    bad "staged wmanifold.pc says prefix=$spc, want $final"
    stage_override="--define-variable=prefix=$final --define-variable=libdir=$final/lib --define-variable=includedir=$final/include"
fi
# The sysroot maps the .pc's final paths into the staging tree.
fresh
# shellcheck disable=SC2086
if flags=$(PKG_CONFIG_SYSROOT_DIR="$stage" PKG_CONFIG_PATH="$stage$final/lib/pkgconfig" \
        pkg-config $stage_override --cflags --libs wmanifold) &&
    "$CC" -std=c11 -Wall -Wextra -Werror -o "$app/app_staged" "$app/app.c" $flags -lm 2>"$tmp/err" &&
    (cd "$app" && LD_LIBRARY_PATH="$stage$final/lib" ./app_staged >"$tmp/out" 2>&1); then
    ok "C program builds against the staged tree and runs"
else
    bad "C program against the staged tree failed: $(head -5 "$tmp/err" "$tmp/out" 2>/dev/null)"
fi

if "$MAKE" -C "$root" --no-print-directory uninstall DESTDIR="$stage" PREFIX="$final" >"$tmp/install.log" 2>&1 &&
    [ -z "$(find "$stage" -type f -o -type l)" ]; then
    ok "make uninstall DESTDIR=... PREFIX=... empties the staged tree"
else
    bad "make uninstall DESTDIR=... left: $(find "$stage" -type f -o -type l | tr '\n' ' ')"
fi

# ---- 6. uninstall -----------------------------------------------------------------
if "$MAKE" -C "$root" --no-print-directory uninstall PREFIX="$prefix" >"$tmp/install.log" 2>&1 &&
    [ -z "$(find "$prefix" -type f -o -type l)" ]; then
    ok "make uninstall removes every installed file"
else
    bad "make uninstall left: $(find "$prefix" -type f -o -type l | tr '\n' ' ')"
fi

# ---- 7. ldconfig -------------------------------------------------------------------
# A directory the loader searches on this system, and one it does not.
sysdir=$( { /sbin/ldconfig -v -N 2>/dev/null || ldconfig -v -N 2>/dev/null; } |
    sed -n 's|^\(/[^:]*\):.*|\1|p' | sort | grep -x /usr/local/lib || echo)
[ -n "$sysdir" ] || sysdir=$( { /sbin/ldconfig -v -N 2>/dev/null || ldconfig -v -N 2>/dev/null; } |
    sed -n 's|^\(/[^:]*\):.*|\1|p' | head -n 1)
if [ -z "$sysdir" ]; then
    bad "ldconfig -v -N lists no directory"
else
    "$MAKE" -C "$root" --no-print-directory install-ldconfig LIBDIR="$sysdir" \
        LDCONFIG="echo LDCONFIG-RAN" >"$tmp/out" 2>&1
    if [ "$(id -u)" = 0 ]; then
        if grep -q '^LDCONFIG-RAN$' "$tmp/out"; then ok "install into $sysdir as root runs ldconfig"
        else bad "install into $sysdir as root does not run ldconfig: $(cat "$tmp/out")"; fi
    else
        if grep -q 'run ldconfig as root' "$tmp/out"; then ok "install into $sysdir not as root says to run ldconfig"
        else bad "install into $sysdir not as root: $(cat "$tmp/out")"; fi
    fi
fi
"$MAKE" -C "$root" --no-print-directory install-ldconfig LIBDIR="$tmp/elsewhere/lib" \
    LDCONFIG="echo LDCONFIG-RAN" >"$tmp/out" 2>&1
if ! grep -q LDCONFIG-RAN "$tmp/out" && grep -q -- "-Wl,-rpath,$tmp/elsewhere/lib" "$tmp/out" &&
    grep -q "LD_LIBRARY_PATH=$tmp/elsewhere/lib" "$tmp/out"; then
    ok "install elsewhere does not run ldconfig and names -Wl,-rpath and LD_LIBRARY_PATH"
else
    bad "install elsewhere: $(cat "$tmp/out")"
fi

# ---- 8. the README's other-prefix commands, as written --------------------------------
readme_block other-prefix >"$tmp/readme.sh"
home=$tmp/home
mkdir -p "$home"
fresh
if [ ! -s "$tmp/readme.sh" ]; then
    bad "README.md has no install_test: other-prefix block"
elif (cd "$app" && HOME=$home PKG_CONFIG_PATH= sh -ec "make() { command \"$MAKE\" -C \"$root\" --no-print-directory \"\$@\"; }
        $(cat "$tmp/readme.sh")") >"$tmp/out" 2>&1; then
    left=$(find "$home" -type f -o -type l | tr '\n' ' ')
    if [ "$(grep -c 'want' "$tmp/out")" -ne 2 ]; then
        bad "README other-prefix block: the two programs did not both print their result"
    elif [ -n "$left" ]; then
        bad "README other-prefix block: make uninstall left $left"
    else
        ok "README's other-prefix commands (install, rpath, LD_LIBRARY_PATH, uninstall) work as written"
    fi
else
    bad "README's other-prefix commands failed:"
    tail -15 "$tmp/out"
fi
# The rpath line alone really records the directory.
rline=$(grep -- '-Wl,-rpath' "$tmp/readme.sh" | head -n 1)
fresh
if [ -n "$rline" ] &&
    "$MAKE" -C "$root" --no-print-directory install PREFIX="$home/.local" >"$tmp/install.log" 2>&1 &&
    (cd "$app" && HOME=$home PKG_CONFIG_PATH=$home/.local/lib/pkgconfig && eval "$rline") 2>"$tmp/err" &&
    readelf -d "$app/quickstart" | grep -E '(RUNPATH|RPATH)' | grep -q "$home/.local/lib"; then
    ok "the README's rpath build records \$HOME/.local/lib in the program"
else
    bad "the README's rpath build: no RUNPATH naming $home/.local/lib $(head -3 "$tmp/err" 2>/dev/null)"
fi
"$MAKE" -C "$root" --no-print-directory uninstall PREFIX="$home/.local" >/dev/null 2>&1

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
