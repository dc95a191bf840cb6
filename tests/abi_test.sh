#!/bin/sh
# abi_test.sh [LIB [HEADER]] -- the shared library exports exactly the public API.
#
# Checks, against include/wmanifold.h:
#  1. the dynamic symbols lib/libwmanifold.so defines (nm -D --defined-only)
#     are exactly the functions the header declares: an extra one leaks an
#     internal name into the ABI, a missing one breaks every caller;
#  2. every one of them is a function (no exported data);
#  3. the SONAME is libwmanifold.so.MAJOR and the file chain is
#     libwmanifold.so -> libwmanifold.so.MAJOR -> libwmanifold.so.MAJOR.MINOR.PATCH,
#     with the numbers of the header's WM_VERSION_* macros (docs/abi.md);
#  4. the header compiles on its own as C11 and as C++17, warnings as errors.
# Ends with "abi: N passed, N failed"; exits non-zero on any failure.
set -u
lib=${1:-lib/libwmanifold.so}
hdr=${2:-include/wmanifold.h}
CC=${CC:-cc}
CXX=${CXX:-c++}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT

if [ ! -e "$lib" ] || [ ! -r "$hdr" ]; then
    echo "abi_test: need $lib and $hdr (run make lib first)"
    echo "abi: 0 passed, 1 failed"
    exit 1
fi

# Declared functions: preprocess (drops comments), then every `wm_name (`.
# A typedef like (*wm_basis_fn)(...) does not match: a ')' follows its name.
"$CC" -E -P -x c "$hdr" | grep -oE '\bwm_[a-z0-9_]+[[:space:]]*\(' |
    sed 's/[[:space:]]*($//' | sort -u >"$tmp/declared"
# Exported symbols, without version suffixes (name@@VER) and without the
# absolute symbols that name version nodes.
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' |
    sort -u >"$tmp/exported"

n_decl=$(wc -l <"$tmp/declared")
extra=$(comm -13 "$tmp/declared" "$tmp/exported" | tr '\n' ' ')
missing=$(comm -23 "$tmp/declared" "$tmp/exported" | tr '\n' ' ')
if [ "$n_decl" -lt 1 ]; then
    bad "no declarations parsed from $hdr"
elif [ -n "$extra" ] || [ -n "$missing" ]; then
    bad "exported symbols differ from the $n_decl header functions; extra: [${extra% }] missing: [${missing% }]"
else
    ok "exports exactly the $n_decl functions of $hdr"
fi

# Types of exported symbols: T (text) or i (indirect function) only.
nonfunc=$(nm -D --defined-only "$lib" | awk '$2 != "A" && $2 != "T" && $2 != "i" { print $3 "(" $2 ")" }' |
    tr '\n' ' ')
if [ -z "$nonfunc" ]; then
    ok "every exported symbol is a function"
else
    bad "exported non-function symbols: ${nonfunc% }"
fi

# Versions from the header; SONAME and file names from the library.
ver() { sed -n "s/^#define[[:space:]]*WM_VERSION_$1[[:space:]]*\([0-9][0-9]*\).*/\1/p" "$hdr"; }
major=$(ver MAJOR)
minor=$(ver MINOR)
patch=$(ver PATCH)
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
if [ -n "$major" ] && [ "$soname" = "libwmanifold.so.$major" ]; then
    ok "SONAME is $soname"
else
    bad "SONAME is '$soname', want libwmanifold.so.$major (header WM_VERSION_MAJOR '$major')"
fi

dir=$(dirname "$lib")
real=$(basename "$(readlink -f "$lib")")
so_major=$(readlink "$dir/libwmanifold.so.$major" 2>/dev/null)
if [ "$real" = "libwmanifold.so.$major.$minor.$patch" ] &&
    [ "$(readlink -f "$dir/libwmanifold.so.$major")" = "$(readlink -f "$lib")" ]; then
    ok "file chain libwmanifold.so -> libwmanifold.so.$major ($so_major) -> $real"
else
    bad "file chain: $lib resolves to '$real' and libwmanifold.so.$major to '$so_major'; want libwmanifold.so.$major.$minor.$patch"
fi

# The header stands alone, in C and in C++ (extern "C", no C-only syntax).
printf '#include "wmanifold.h"\nint main(void) { return wm_version() == 0; }\n' >"$tmp/h.c"
if "$CC" -std=c11 -Wall -Wextra -Wpedantic -Werror -I"$(dirname "$hdr")" -c "$tmp/h.c" -o "$tmp/h.o" 2>"$tmp/err"; then
    ok "header compiles alone as C11"
else
    bad "header does not compile alone as C11: $(head -3 "$tmp/err")"
fi
cp "$tmp/h.c" "$tmp/h.cpp"
if "$CXX" -std=c++17 -Wall -Wextra -Wpedantic -Werror -I"$(dirname "$hdr")" -c "$tmp/h.cpp" -o "$tmp/hpp.o" 2>"$tmp/err"; then
    ok "header compiles alone as C++17"
else
    bad "header does not compile alone as C++17: $(head -3 "$tmp/err")"
fi

echo "abi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
