#!/bin/sh
# test-examples.sh BIN_DIR DATA_DIR -- end-to-end checks of the examples.
#
# Runs the example programs on tiny inputs: flag handling, the IDX reader's
# error paths (on small broken files made here), a run on a synthetic IDX
# dataset, and short runs on real Fashion-MNIST when DATA_DIR exists (SKIP
# otherwise). EX_RUN may name a wrapper (e.g. valgrind ...).
# The last line is "examples: N passed, N failed"; the exit status is 0 iff
# nothing failed.

BIN=${1:?usage: test-examples.sh BIN_DIR DATA_DIR}
DATA=${2:-/usr/share/datasets/fashion-mnist}
RUN=${EX_RUN:-}
pass=0
fail=0
skip=0
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wm-examples.XXXXXX") || exit 1
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

# check_csv NAME FILE ROWS FIELDS: header + ROWS data rows of FIELDS
# comma-separated fields each, accuracies (the two fields before the split
# label) in [0,1] and the last field train or heldout.
check_csv() {
    name=$1 file=$2 rows=$3 fields=$4
    if [ "$st" -ne 0 ]; then bad "$name" "exit status $st"; return; fi
    if [ ! -f "$file" ]; then bad "$name" "$file not written"; return; fi
    msg=$(awk -F, -v rows="$rows" -v nf="$fields" '
        function die(m) { print m; bad = 1; exit }
        NR == 1 { if ($(nf-2) != "acc_manifold" || $(nf-1) != "acc_concat" || $nf != "split")
                      die("bad header: " $0)
                  next }
        NF != nf { die("line " NR " has " NF " fields") }
        $nf != "train" && $nf != "heldout" { die("line " NR ": bad split " $nf) }
        $(nf-2) < 0 || $(nf-2) > 1 || $(nf-1) < 0 || $(nf-1) > 1 { die("line " NR ": accuracy out of [0,1]") }
        { n++ }
        END { if (!bad && n != rows) print "has " n+0 " data rows, expected " rows }' "$file")
    if [ -n "$msg" ]; then bad "$name" "$file: $msg"; else ok "$name"; fi
}

# ---- small IDX files -------------------------------------------------------------
byte() { printf "\\$(printf '%03o' $(($1 & 255)))"; }
be32() { byte $(($1 >> 24)); byte $(($1 >> 16)); byte $(($1 >> 8)); byte "$1"; }
# images FILE COUNT_IN_HEADER COUNT_WRITTEN
images() { { printf '\000\000\010\003'; be32 "$2"; be32 28; be32 28;
             head -c $(($3 * 784)) /dev/urandom; } | gzip -c > "$1"; }
# labels FILE COUNT [BAD_LABEL]: labels 0..9 cycling, the last one BAD_LABEL if given
labels() { { printf '\000\000\010\001'; be32 "$2"; i=0
             while [ $i -lt $(($2 - 1)) ]; do byte $((i % 10)); i=$((i + 1)); done
             byte "${3:-$(($i % 10))}"; } | gzip -c > "$1"; }
# dataset DIR N: a well-formed dataset of N random images per split
dataset() { mkdir -p "$1"
            for sp in train t10k; do images "$1/$sp-images-idx3-ubyte.gz" "$2" "$2"
                                      labels "$1/$sp-labels-idx1-ubyte.gz" "$2"; done; }

echo "== examples (binaries in $BIN${RUN:+, run under: $RUN})"

# ---- flags ------------------------------------------------------------------------
for ex in rotation noise torus which_task; do
    run "$BIN/$ex" --help
    if [ "$st" -eq 0 ] && grep -q '^usage:' "$tmp/out" && grep -q -- '--epochs' "$tmp/out"; then
        ok "$ex --help"; else bad "$ex --help" "exit $st or no usage text"; fi
done
expect_error "unknown flag is rejected" 2 "unknown flag" "$BIN/rotation" --bogus
expect_error "bad flag value is rejected" 2 "bad value" "$BIN/rotation" --epochs zero
expect_error "bad --train-arc is rejected" 2 "train-arc" "$BIN/rotation" --train-arc 10
expect_error "bad --train-range is rejected" 2 "train-range" "$BIN/noise" --train-range 0.8,0.2
expect_error "bad --only is rejected" 2 "only" "$BIN/which_task" --only torus

# ---- the IDX reader's error paths -------------------------------------------------
expect_error "missing data directory" 1 "cannot open" "$BIN/rotation" --data "$tmp/nowhere"

d=$tmp/magic; dataset "$d" 4
echo "this is not an IDX file at all" | gzip -c > "$d/train-images-idx3-ubyte.gz"
expect_error "wrong magic number" 1 "not an IDX image file: magic number" "$BIN/rotation" --data "$d"

d=$tmp/short; dataset "$d" 4
images "$d/train-images-idx3-ubyte.gz" 100 10
expect_error "truncated image data" 1 "truncated" "$BIN/rotation" --data "$d"

d=$tmp/cut; dataset "$d" 4
images "$tmp/full.gz" 100 100
head -c 3000 "$tmp/full.gz" > "$d/train-images-idx3-ubyte.gz"
expect_error "cut gzip stream" 1 "train-images-idx3-ubyte.gz: truncated" "$BIN/rotation" --data "$d"

d=$tmp/mismatch; dataset "$d" 4
labels "$d/t10k-labels-idx1-ubyte.gz" 3
expect_error "image/label count mismatch" 1 "disagree: 4 images but 3 labels" "$BIN/rotation" --data "$d"

d=$tmp/label; dataset "$d" 4
labels "$d/train-labels-idx1-ubyte.gz" 4 12
expect_error "label out of range" 1 "label 12 of sample 3 is outside 0..9" "$BIN/rotation" --data "$d"

d=$tmp/swapped; dataset "$d" 4
cp "$d/train-labels-idx1-ubyte.gz" "$d/train-images-idx3-ubyte.gz"
expect_error "label file given as images" 1 "magic number 0x00000801, expected 0x00000803" "$BIN/rotation" --data "$d"

# ---- a whole run on a synthetic dataset (needs no download) ------------------------
d=$tmp/synthetic; dataset "$d" 40
run "$BIN/rotation" --data "$d" --train 40 --test 20 --epochs 1 --batch 16 --hidden 16 \
    --out "$tmp/syn-out" --no-plot
check_csv "rotation on a synthetic IDX dataset" "$tmp/syn-out/rotation.csv" 36 5

# ---- short runs on real Fashion-MNIST -----------------------------------------------
if [ ! -d "$DATA" ]; then
    skp "rotation/noise/torus on Fashion-MNIST" "$DATA is absent (sudo apt-get install -y dataset-fashion-mnist)"
else
    o=$tmp/real
    run "$BIN/rotation" --data "$DATA" --train 300 --test 100 --epochs 1 --batch 50 --hidden 64 --out "$o"
    check_csv "rotation: 300 images, 1 epoch, 36 angles" "$o/rotation.csv" 36 5
    if command -v gnuplot > /dev/null 2>&1; then
        if [ -s "$o/rotation.png" ]; then ok "rotation.png rendered"; else bad "rotation.png rendered"; fi
    else
        skp "rotation.png rendered" "gnuplot is absent (sudo apt-get install -y gnuplot-nox)"
    fi
    if grep -q "held-out arc" "$tmp/out" && grep -q "parameters" "$tmp/out"; then
        ok "rotation prints the summary and parameter counts"
    else bad "rotation prints the summary and parameter counts"; fi
    run "$BIN/noise" --data "$DATA" --train 200 --test 100 --epochs 1 --batch 50 --hidden 64 --out "$o" --no-plot
    check_csv "noise: 200 images, 1 epoch, 11 levels" "$o/noise.csv" 11 5
    run "$BIN/torus" --data "$DATA" --train 200 --test 50 --epochs 1 --batch 50 --hidden 64 \
        --angle-step 90 --phase-step 90 --out "$o" --no-plot
    check_csv "torus: 200 images, 1 epoch, 4x4 grid" "$o/torus.csv" 16 7
fi

[ "$skip" -gt 0 ] && echo "examples: $skip skipped"
echo "examples: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
