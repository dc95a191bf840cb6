#!/bin/sh
# abi_mpi.sh LIB HEADER CXX -- libwmanifold_mpi exports exactly the functions
# wmanifold_mpi.h declares (wm_mpi_*), its SONAME is libwmanifold_mpi.so.MAJOR,
# it needs libwmanifold.so and MPI, and the header compiles alone as C11 and
# C++17 with MPI's flags. Ends with "abi-mpi: N passed, N failed".
set -u
lib=$1 hdr=$2 CXX=${3:-c++}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
mpiflags=$(mpicc --showme:compile)
grep -oE '\bwm_mpi_[a-z0-9_]+[[:space:]]*\(' "$hdr" | sed 's/[[:space:]]*($//' | sort -u >"$tmp/declared"
nm -D --defined-only "$lib" | awk '$2 != "A" { sub(/@.*/, "", $3); print $3 }' | sort -u >"$tmp/exported"
if [ -s "$tmp/declared" ] && cmp -s "$tmp/declared" "$tmp/exported"; then
    ok "exports exactly the $(wc -l <"$tmp/declared") wm_mpi_ functions of $hdr"
else
    bad "exported [$(tr '\n' ' ' <"$tmp/exported")] declared [$(tr '\n' ' ' <"$tmp/declared")]"
fi
major=$(sed -n 's/^#define[[:space:]]*WM_VERSION_MAJOR[[:space:]]*\([0-9]*\).*/\1/p' "$(dirname "$hdr")/wmanifold.h")
soname=$(readelf -d "$lib" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libwmanifold_mpi.so.$major" ] && ok "SONAME is $soname" || bad "SONAME is '$soname'"
needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | tr '\n' ' ')
case "$needed" in
*libwmanifold.so.$major*libmpi*|*libmpi*libwmanifold.so.$major*) ok "needs $needed" ;;
*) bad "NEEDED is '$needed': want libwmanifold.so.$major and libmpi" ;;
esac
printf '#include "wmanifold_mpi.h"\nint main(void) { return wm_mpi_check(0, MPI_COMM_WORLD) == WM_OK; }\n' >"$tmp/h.c"
# shellcheck disable=SC2086
if cc -std=c11 -Wall -Wextra -Wpedantic -Werror $mpiflags -I"$(dirname "$hdr")" -c "$tmp/h.c" -o "$tmp/h.o" 2>"$tmp/err"; then
    ok "header compiles alone as C11"
else
    bad "header does not compile alone as C11: $(head -3 "$tmp/err")"
fi
# Open MPI's own C++ bindings (deprecated) warn under -Wpedantic: C API only.
cp "$tmp/h.c" "$tmp/h.cpp"
# shellcheck disable=SC2086
if "$CXX" -std=c++17 -Wall -Wextra -Wpedantic -Werror -DOMPI_SKIP_MPICXX $mpiflags -I"$(dirname "$hdr")" -c "$tmp/h.cpp" -o "$tmp/h2.o" 2>"$tmp/err"; then
    ok "header compiles alone as C++17"
else
    bad "header does not compile alone as C++17: $(head -3 "$tmp/err")"
fi
echo "abi-mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
