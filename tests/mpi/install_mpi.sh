#!/bin/sh
# install_mpi.sh -- `make install` puts libwmanifold_mpi, its header and
# wmanifold_mpi.pc next to the core library; a program built outside the
# tree with `pkg-config --cflags --libs wmanifold_mpi` runs on 2 ranks;
# `make uninstall` removes all of it. Ends with "install-mpi: N passed, N failed".
set -u
MAKE=${MAKE:-make}
MPIRUN=${MPIRUN:-mpirun --oversubscribe -np}
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/usr
if $MAKE --no-print-directory install PREFIX="$prefix" >"$tmp/log" 2>&1 &&
    [ -f "$prefix/include/wmanifold_mpi.h" ] && [ -f "$prefix/lib/libwmanifold_mpi.a" ] &&
    [ -L "$prefix/lib/libwmanifold_mpi.so" ] && [ -f "$prefix/lib/pkgconfig/wmanifold_mpi.pc" ]; then
    ok "make install PREFIX=... installs the header, .so, .a and wmanifold_mpi.pc"
else
    bad "make install: $(tail -5 "$tmp/log")"
fi
cat >"$tmp/p.c" <<'C'
#include <stdio.h>
#include "wmanifold_mpi.h"
int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    wm_manifold *m; wm_net *net; wm_optimizer *opt;
    wm_manifold_circle(&m);
    wm_net_create(&net, m, 2, WM_COND_MANIFOLD);
    wm_net_dense(net, 3, WM_ACT_NONE);
    int rank; MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    wm_net_init(net, 1 + (uint64_t)rank);
    wm_opt_config c = wm_opt_default(WM_OPT_ADAM);
    wm_optimizer_create(&opt, net, &c);
    float x[4] = {1, 2, 3, 4}, s[2] = {0.1f, 0.7f};
    int32_t y[2] = {0, 2};
    wm_batch b = {rank == 0 ? 2 : 0, x, s, y, NULL};
    int bad = wm_mpi_broadcast(net, opt, 0, MPI_COMM_WORLD) != WM_OK
           || wm_mpi_step(opt, &b, MPI_COMM_WORLD, NULL) != WM_OK
           || wm_mpi_check(net, MPI_COMM_WORLD) != WM_OK;
    if (rank == 0) printf("%s\n", bad ? wm_last_error() : "ok");
    wm_optimizer_free(opt); wm_net_free(net); wm_manifold_free(m);
    MPI_Finalize();
    return bad;
}
C
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
# shellcheck disable=SC2046
if cc -std=c11 -Wall -Wextra -Werror -o "$tmp/p" "$tmp/p.c" $(pkg-config --cflags --libs wmanifold_mpi) \
        -Wl,-rpath,"$prefix/lib" 2>"$tmp/err"; then
    ok "cc \$(pkg-config --cflags --libs wmanifold_mpi) builds a program outside the tree"
else
    bad "build against the installed library: $(head -5 "$tmp/err")"
fi
if [ -x "$tmp/p" ] && out=$($MPIRUN 2 "$tmp/p" 2>&1) && [ "$out" = ok ]; then
    ok "it runs on 2 ranks against the installed shared libraries"
else
    bad "running it: ${out:-not built}"
fi
if $MAKE --no-print-directory uninstall PREFIX="$prefix" >"$tmp/log" 2>&1 &&
    [ -z "$(find "$prefix" -type f -o -type l)" ]; then
    ok "make uninstall removes every installed file"
else
    bad "make uninstall left: $(find "$prefix" -type f -o -type l | tr '\n' ' ')"
fi
echo "install-mpi: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
