#!/bin/sh
# example_mpi.sh BIN DATA -- examples/mpi_rotation on 1 and on 2 ranks trains
# on the same global minibatches: with momentum (no amplification of
# rounding, docs/distributed.md) the epoch loss agrees to 1e-4 and every
# test accuracy to 0.5 %, for the manifold net and the concat baseline. Skips when Fashion-MNIST is not installed.
# Ends with "mpi-example: N passed, N failed".
set -u
bin=$1 data=$2
MPIRUN=${MPIRUN:-mpirun --oversubscribe -np}
if [ ! -r "$data/train-images-idx3-ubyte.gz" ]; then
    echo "mpi-example: SKIP (no Fashion-MNIST in $data: apt-get install dataset-fashion-mnist)"
    echo "mpi-example: 0 passed, 0 failed (skipped)"
    exit 0
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
args="--data $data --opt momentum --epochs 1 --train 1024 --test 500 --step 90 --bench-allreduce 0"
for np in 1 2; do
    # shellcheck disable=SC2086
    if OPENBLAS_NUM_THREADS=1 $MPIRUN $np "$bin" $args >"$tmp/out$np" 2>&1; then
        pass=$((pass + 1)); echo "ok   mpi_rotation on $np rank(s)"
    else
        fail=$((fail + 1)); echo "FAIL mpi_rotation on $np rank(s):"; tail -5 "$tmp/out$np"
    fi
done
# the manifold net's and the concat baseline's losses and accuracies
if awk 'FNR == 1 { f++ } /^epoch/ { l[f] = $4 } /concat baseline: loss/ { lb[f] = $4 }
        /^ *[0-9]+  0\./ { a[f, $1] = $2; b[f, $1] = $3 }
        END { bad = (l[1] == "" || l[1] - l[2] > 1e-4 || l[2] - l[1] > 1e-4)
              bad = bad || lb[1] == "" || lb[1] - lb[2] > 1e-4 || lb[2] - lb[1] > 1e-4
              for (k in a) { split(k, p, SUBSEP); d = a[1, p[2]] - a[2, p[2]]
                             e = b[1, p[2]] - b[2, p[2]]
                             if (d > 0.005 || d < -0.005 || e > 0.005 || e < -0.005) bad = 1 }
              exit bad }' "$tmp/out1" "$tmp/out2"; then
    pass=$((pass + 1)); echo "ok   1 and 2 ranks: the same loss and accuracies"
else
    fail=$((fail + 1)); echo "FAIL 1 and 2 ranks differ:"; grep -hE "^epoch|^ *[0-9]+  0\." "$tmp/out1" "$tmp/out2"
fi
echo "mpi-example: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
