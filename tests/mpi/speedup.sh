#!/bin/sh
# speedup.sh [ROUNDS] -- the 2-rank over 1-rank speed-up of
# examples/mpi_rotation (the demo's manifold MLP alone, --no-baseline;
# global batch 128, one epoch over
# IMAGES training images, one OpenBLAS thread per rank), 1 rank and 2 ranks
# alternated (the order swapped every round) so that other jobs on a shared
# machine disturb both alike. Prints the CPU, the load average before every
# run, each run's ms per step, each round's speed-up (1-rank time / 2-rank
# time for the same global minibatches) and the medians. About a minute
# with the defaults (ROUNDS 3, IMAGES 6400 = 50 steps); run after
# `make mpi-example`. Not part of `make test` (timing).
#   FULL=1 also runs, each round, 1 rank with 2 OpenBLAS threads and two
#   independent batch-64 processes at once (the compute-only ceiling of
#   2 ranks), as docs/distributed.md's longer measurement did (minutes).
#   BUCKET=bytes passes --bucket (default: the library's; 0 = no overlap).
#   On a loaded machine, OMPI_MCA_mpi_yield_when_idle=1 (a waiting rank gives
#   its core away instead of polling) halved the 2-rank time here (74 and 54
#   against 144 and 117 ms/step, load 12.5); it is printed, not set.
set -u
rounds=${1:-3}
B=${B:-build/release/examples/mpi_rotation}
IMAGES=${IMAGES:-6400}
MPIRUN=${MPIRUN:-mpirun --oversubscribe $( [ "$(id -u)" = 0 ] && echo --allow-run-as-root ) -np}
ARGS="--epochs 1 --train $IMAGES --test 100 --step 180 --bench-allreduce 0 --no-baseline ${BUCKET:+--bucket $BUCKET}"
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
[ -x "$B" ] || { echo "speedup.sh: $B not built (make mpi-example)"; exit 1; }
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs online; $(mpirun --version 2>&1 | head -1)"
echo "mpi_rotation $ARGS, global batch 128, OPENBLAS_NUM_THREADS=1," \
     "OMPI_MCA_mpi_yield_when_idle=${OMPI_MCA_mpi_yield_when_idle:-unset}"
load() { echo "load $(cut -d' ' -f1-3 /proc/loadavg)"; }
# ms per step of one run: the "training: ... (X ms/step)" line
run() {
    # shellcheck disable=SC2086
    OPENBLAS_NUM_THREADS=1 $MPIRUN "$1" "$B" $ARGS >"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
    sed -n 's/^training: .*(\([0-9.]*\) ms\/step).*/\1/p' "$tmp/out"
}
r=1
: >"$tmp/t1"; : >"$tmp/t2"; : >"$tmp/su"
while [ "$r" -le "$rounds" ]; do
    if [ $((r % 2)) = 1 ]; then
        l1=$(load); t1=$(run 1); l2=$(load); t2=$(run 2)
    else
        l2=$(load); t2=$(run 2); l1=$(load); t1=$(run 1)
    fi
    su=$(awk -v a="$t1" -v b="$t2" 'BEGIN { printf "%.2f", a / b }')
    echo "round $r: 1 rank $t1 ms/step ($l1) | 2 ranks $t2 ms/step ($l2) | speed-up $su"
    echo "$t1" >>"$tmp/t1"; echo "$t2" >>"$tmp/t2"; echo "$su" >>"$tmp/su"
    if [ "${FULL:-0}" = 1 ]; then
        # shellcheck disable=SC2086
        OPENBLAS_NUM_THREADS=2 $MPIRUN 1 "$B" $ARGS 2>&1 | sed -n 's/^training/  1 rank, 2 BLAS threads:/p'
        half=$((IMAGES / 2))
        # shellcheck disable=SC2086
        { OPENBLAS_NUM_THREADS=1 "$B" $ARGS --batch 64 --train $half >"$tmp/a" 2>&1 &
          OPENBLAS_NUM_THREADS=1 "$B" $ARGS --batch 64 --train $half >"$tmp/b" 2>&1; wait; }
        sed -n 's/^training/  independent batch-64 run:/p' "$tmp/a" "$tmp/b"
    fi
    r=$((r + 1))
done
med() { sort -g "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
echo "median over $rounds rounds: 1 rank $(med "$tmp/t1") ms/step, 2 ranks $(med "$tmp/t2") ms/step," \
     "speed-up $(med "$tmp/su") (min $(sort -g "$tmp/su" | head -1), max $(sort -g "$tmp/su" | tail -1)); $(load)"
