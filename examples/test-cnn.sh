#!/bin/sh
# test-cnn.sh BIN_DIR DATA_DIR -- end-to-end checks of the CNN example.
#
# Flag handling; the CIFAR-10 reader on small files in CIFAR-10's binary format
# made here (well-formed, several batches, and broken ones); a 1-epoch CNN run
# on them; a short run on real Fashion-MNIST when DATA_DIR exists (SKIP
# otherwise). EX_RUN may name a wrapper (e.g. valgrind ...).
# The last line is "cnn: N passed, N failed"; the exit status is 0 iff
# nothing failed.

BIN=${1:?usage: test-cnn.sh BIN_DIR DATA_DIR}
DATA=${2:-/usr/share/datasets/fashion-mnist}
RUN=${EX_RUN:-}
PROG=$BIN/cnn_rotation
pass=0
fail=0
skip=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wm-cnn.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT

ok()   { pass=$((pass + 1)); echo "ok    $1"; }
bad()  { fail=$((fail + 1)); echo "FAIL  $1${2:+: $2}"; [ -f "$tmp/out" ] && tail -n 15 "$tmp/out" | sed 's/^/      | /'; }
skp()  { skip=$((skip + 1)); echo "SKIP  $1${2:+: $2}"; }

# run CMD...: run with output (stdout and stderr) in $tmp/out; sets $st.
run() { $RUN "$@" > "$tmp/out" 2>&1; st=$?; }

# expect_error NAME STATUS PATTERN CMD...: must exit with STATUS and say PATTERN.
expect_error() {
    name=$1 want=$2 pat=$3; shift 3
    run "$@"
    if [ "$st" -ne "$want" ]; then bad "$name" "exit status $st, expected $want"
    elif ! grep -q -- "$pat" "$tmp/out"; then bad "$name" "no message matching '$pat'"
    else ok "$name"; fi
}

# expect_output NAME PATTERN: the last run succeeded and printed PATTERN.
expect_output() {
    if [ "$st" -ne 0 ]; then bad "$1" "exit status $st"
    elif ! grep -q -- "$2" "$tmp/out"; then bad "$1" "no output matching '$2'"
    else ok "$1"; fi
}

# check_csv NAME FILE ROWS: header + ROWS rows of s,angle_deg,acc_manifold,
# acc_concat,split with accuracies in [0,1] and split train or heldout.
check_csv() {
    name=$1 file=$2 rows=$3
    if [ "$st" -ne 0 ]; then bad "$name" "exit status $st"; return; fi
    if [ ! -f "$file" ]; then bad "$name" "$file not written"; return; fi
    msg=$(awk -F, -v rows="$rows" '
        function die(m) { print m; bad = 1; exit }
        NR == 1 { if ($0 != "s,angle_deg,acc_manifold,acc_concat,split") die("bad header: " $0)
                  next }
        NF != 5 { die("line " NR " has " NF " fields") }
        $5 != "train" && $5 != "heldout" { die("line " NR ": bad split " $5) }
        $3 < 0 || $3 > 1 || $4 < 0 || $4 > 1 { die("line " NR ": accuracy out of [0,1]") }
        { n++ }
        END { if (!bad && n != rows) print "has " n+0 " data rows, expected " rows }' "$file")
    if [ -n "$msg" ]; then bad "$name" "$file: $msg"; else ok "$name"; fi
}

# ---- small files in CIFAR-10's binary format -------------------------------------
# cifar FILE N [LAST_LABEL]: N records of a label byte (0..9 cycling; the last
# one LAST_LABEL if given) and 3072 random pixel bytes.
byte() { printf "\\$(printf '%03o' $(($1 & 255)))"; }
cifar() {
    i=0
    : > "$1"
    while [ $i -lt "$2" ]; do
        lab=$((i % 10))
        [ $i -eq $(($2 - 1)) ] && [ -n "$3" ] && lab=$3
        { byte $lab; head -c 3072 /dev/urandom; } >> "$1"
        i=$((i + 1))
    done
}
# cifar_set DIR NTRAIN NTEST: data_batch_1.bin and test_batch.bin
cifar_set() { mkdir -p "$1"; cifar "$1/data_batch_1.bin" "$2"; cifar "$1/test_batch.bin" "$3"; }

echo "== cnn (binary in $BIN${RUN:+, run under: $RUN})"

# ---- flags ------------------------------------------------------------------------
run "$PROG" --help
if [ "$st" -eq 0 ] && grep -q '^usage:' "$tmp/out" && grep -q -- '--cifar' "$tmp/out"; then
    ok "cnn_rotation --help"; else bad "cnn_rotation --help" "exit $st or no usage text"; fi
expect_error "unknown flag is rejected" 2 "unknown flag" "$PROG" --bogus
expect_error "bad --conv is rejected" 2 "conv wants" "$PROG" --conv 8,x
expect_error "bad --strategy is rejected" 2 "strategy wants" "$PROG" --strategy fastest
expect_error "bad --epochs is rejected" 2 "bad value" "$PROG" --epochs 0

# ---- a whole run on a generated CIFAR-10 file set ---------------------------------
c=$tmp/cifar; cifar_set "$c" 50 50
run "$PROG" --cifar "$c" --epochs 1 --batch 16 --train 50 --test 50 --out "$tmp/c-out" --no-plot
check_csv "--cifar: 1 epoch on 50 generated records, 36 angles" "$tmp/c-out/cnn_rotation_cifar.csv" 36
if grep -q "data: 50 training and 50 test images of 3x32x32" "$tmp/out" &&
   grep -q "^epoch  1/1" "$tmp/out" && grep -q "held-out arc" "$tmp/out"; then
    ok "--cifar run reports the data, the epoch and the summary"
else bad "--cifar run reports the data, the epoch and the summary"; fi

# Several batches are read in order; --train stops early.
c=$tmp/cifar3; cifar_set "$c" 7 5; cifar "$c/data_batch_2.bin" 6; cifar "$c/data_batch_3.bin" 4
run "$PROG" --cifar "$c" --epochs 1 --batch 8 --step 90 --out "$tmp/c3" --no-plot
check_csv "--cifar reads data_batch_1..3 (17 records)" "$tmp/c3/cnn_rotation_cifar.csv" 4
grep -q "data: 17 training and 5 test" "$tmp/out" && ok "17 training records counted" ||
    bad "17 training records counted"
run "$PROG" --cifar "$c" --train 10 --epochs 1 --batch 8 --step 90 --out "$tmp/c3" --no-plot
expect_output "--train 10 stops inside data_batch_2" "data: 10 training and 5 test"

# ---- broken CIFAR-10 files --------------------------------------------------------
expect_error "missing CIFAR directory" 1 "cannot open .*data_batch_1.bin" \
    "$PROG" --cifar "$tmp/nowhere" --no-plot
c=$tmp/size; cifar_set "$c" 3 3
head -c 9000 "$tmp/cifar/test_batch.bin" > "$c/test_batch.bin"
expect_error "size not a multiple of 3073" 1 "size 9000 bytes is not a positive multiple of 3073" \
    "$PROG" --cifar "$c" --no-plot
c=$tmp/empty; cifar_set "$c" 3 3; : > "$c/data_batch_1.bin"
expect_error "empty file" 1 "size 0 bytes" "$PROG" --cifar "$c" --no-plot
c=$tmp/label; cifar_set "$c" 3 3; cifar "$c/data_batch_1.bin" 4 12
expect_error "label above 9" 1 "label 12 of record 3 .* is outside 0..9" "$PROG" --cifar "$c" --no-plot
c=$tmp/gap; cifar_set "$c" 3 3; cifar "$c/data_batch_3.bin" 3
expect_error "data_batch_2 missing but _3 present" 1 "data_batch_2.bin is missing but" \
    "$PROG" --cifar "$c" --no-plot
c=$tmp/notest; mkdir -p "$c"; cifar "$c/data_batch_1.bin" 3
expect_error "missing test_batch.bin" 1 "cannot open .*test_batch.bin" "$PROG" --cifar "$c" --no-plot

# ---- timing mode, tiny ------------------------------------------------------------
run "$PROG" --time-steps --batch 4
if [ "$st" -eq 0 ] && [ "$(grep -c 'mixed\|shared' "$tmp/out")" -ge 8 ]; then
    ok "--time-steps prints 8 timing rows"
else bad "--time-steps prints 8 timing rows" "exit $st"; fi

# ---- a short run on real Fashion-MNIST ---------------------------------------------
if [ ! -d "$DATA" ]; then
    skp "cnn_rotation on Fashion-MNIST" "$DATA is absent (sudo apt-get install -y dataset-fashion-mnist)"
else
    o=$tmp/real
    run "$PROG" --data "$DATA" --train 300 --test 200 --epochs 1 --batch 50 --out "$o"
    check_csv "Fashion-MNIST CNN: 300 images, 1 epoch, 36 angles" "$o/cnn_rotation.csv" 36
    if command -v gnuplot > /dev/null 2>&1; then
        if [ -s "$o/cnn_rotation.png" ]; then ok "cnn_rotation.png rendered"; else bad "cnn_rotation.png rendered"; fi
    else
        skp "cnn_rotation.png rendered" "gnuplot is absent (sudo apt-get install -y gnuplot-nox)"
    fi
    if grep -q "held-out arc" "$tmp/out" && grep -q "parameters" "$tmp/out"; then
        ok "prints the summary and parameter counts"
    else bad "prints the summary and parameter counts"; fi
fi

[ "$skip" -gt 0 ] && echo "cnn: $skip skipped"
echo "cnn: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
