#!/bin/sh
# speedup.sh [ROUNDS] -- the speed-up measurement of docs/distributed.md:
# examples/mpi_rotation (MLP, global batch 128, 20000 images, one epoch) on
# 1 rank and on 2 ranks, alternated so that other jobs on a shared machine
# disturb both alike, one OpenBLAS thread per rank; then two independent
# 1-rank runs with batch 64 at the same time (the compute-only ceiling of
# 2 ranks). Not part of `make test` (minutes, and timing). Run after
# `make mpi-example`.
set -u
rounds=${1:-3}
B=${B:-build/release/examples/mpi_rotation}
MPIRUN=${MPIRUN:-mpirun --oversubscribe $( [ "$(id -u)" = 0 ] && echo --allow-run-as-root ) -np}
ARGS="--epochs 1 --train 20000 --test 100 --step 180"
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
lscpu | sed -n 's/^Model name: *//p'
r=1
while [ "$r" -le "$rounds" ]; do
    echo "== round $r, load $(cut -d' ' -f1 /proc/loadavg)"
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 $MPIRUN 1 "$B" $ARGS --bench-allreduce 0 2>&1 | grep '^training'
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 $MPIRUN 2 "$B" $ARGS --bench-allreduce 20 2>&1 | grep -E '^training|MPI_All'
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=2 $MPIRUN 1 "$B" $ARGS --bench-allreduce 0 2>&1 | sed -n 's/^training/training (2 BLAS threads)/p'
    # shellcheck disable=SC2086
    { OPENBLAS_NUM_THREADS=1 "$B" $ARGS --batch 64 --train 10000 --bench-allreduce 0 >"$tmp/a" 2>&1 &
      OPENBLAS_NUM_THREADS=1 "$B" $ARGS --batch 64 --train 10000 --bench-allreduce 0 >"$tmp/b" 2>&1; wait; }
    sed -n 's/^training/independent batch-64 run:/p' "$tmp/a" "$tmp/b"
    r=$((r + 1))
done
