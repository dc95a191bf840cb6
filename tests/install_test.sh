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
#  4. `pkg-config --static` links libwmanifold.a into the program (no
#     libwmanifold.so NEEDED) and it runs;
#  5. make install DESTDIR=$tmp/stage PREFIX=/opt/... stages under DESTDIR
#     only, its .pc names the final prefix (not the staging directory), and a
#     program builds against the staged tree (PKG_CONFIG_SYSROOT_DIR) and runs;
#  6. make uninstall removes what install put there.
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

# ---- 4. static ------------------------------------------------------------------
fresh
# -lwmanifold would pick the .so next to the .a: ask for the archive by name.
# shellcheck disable=SC2086
static_libs=$(pkg-config $pc_override --static --libs wmanifold | sed 's/-lwmanifold\b/-l:libwmanifold.a/')
# shellcheck disable=SC2086
if "$CC" -std=c11 -Wall -Wextra -Werror -o "$app/app_static" "$app/app.c" \
    $(pkg-config $pc_override --cflags wmanifold) $static_libs 2>"$tmp/err"; then
    if readelf -d "$app/app_static" | grep -q 'NEEDED.*libwmanifold'; then
        bad "static program still needs libwmanifold.so"
    elif (cd "$app" && ./app_static >"$tmp/out" 2>&1); then
        ok "C program linked with pkg-config --static (libwmanifold.a) runs"
    else
        bad "static C program failed:"
        cat "$tmp/out"
    fi
else
    bad "C program does not link with pkg-config --static: $(head -5 "$tmp/err")"
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

# ---- 6. uninstall -----------------------------------------------------------------
if "$MAKE" -C "$root" --no-print-directory uninstall PREFIX="$prefix" >"$tmp/install.log" 2>&1 &&
    [ -z "$(find "$prefix" -type f -o -type l)" ]; then
    ok "make uninstall removes every installed file"
else
    bad "make uninstall left: $(find "$prefix" -type f -o -type l | tr '\n' ' ')"
fi

echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
