#!/bin/sh
# suite.sh LOGDIR NAME CMD... -- run one test suite for `make test`.
#
# CMD's whole output goes to LOGDIR/NAME.log; the terminal gets one line (and,
# on a failure, the failing checks and the log's name). The counts go to
# LOGDIR/NAME.result as "STATUS PASSED FAILED SKIPPED" for tests/summary.sh,
# the packages that would run the skipped checks to LOGDIR/NAME.skip.
#
# A suite reports its counts in one of the forms the suites print:
#   "NAME: N passed, M failed" (and "NAME: K skipped") -- the shell suites;
#   "[  PASSED  ] N test(s)." / "[  FAILED  ] M test(s)" -- cmocka;
#   "N passed, K skipped, M failed in 2.1s" -- pytest.
# Each "SKIP ..." line must say which package would run it ("apt-get install
# PKG"); one that does not counts as a failure, so the suite cannot shrink
# silently. A non-zero exit with no failure counted, or no counts at all,
# is one failure. Always exits 0: the verdict is in the .result file.
logdir=${1:?usage: suite.sh LOGDIR NAME CMD...}
name=${2:?usage: suite.sh LOGDIR NAME CMD...}
shift 2
log=$logdir/$name.log
mkdir -p "$logdir"
t0=$(date +%s)
"$@" >"$log" 2>&1
st=$?
secs=$(($(date +%s) - t0))

# pass fail skip nskiplines nopkg: the counts from the log.
set -- $(awk '
    function num(line, word,   m) {   # the number before WORD in LINE, or -1
        if (match(line, "[0-9]+ " word)) { m = substr(line, RSTART, RLENGTH); sub(/ .*/, "", m); return m + 0 }
        return -1
    }
    /^\[  PASSED  \] [0-9]+ test/  { cp += $4; cm = 1; next }
    /^\[  FAILED  \] [0-9]+ test/  { cf += $4; cm = 1; next }
    /^\[  SKIPPED \] [0-9]+ test/  { cs += $4; cm = 1; next }
    /^\[  (SKIPPED|FAILED|ERROR) *\]/ { next }
    /^([A-Za-z0-9_.\/-]+: *)?SKIP(PED)?([^A-Za-z]|$)/ {
        nskip++
        if ($0 !~ /apt-get install/) nopkg++
        next
    }
    /[0-9]+ (passed|failed)/ {
        p = num($0, "passed"); f = num($0, "failed"); s = num($0, "skipped"); e = num($0, "error")
        lp = (p < 0 ? 0 : p); lf = (f < 0 ? 0 : f) + (e < 0 ? 0 : e); if (s >= 0) ls = s; seen = 1
        next
    }
    /^[A-Za-z0-9_.\/-]+: [0-9]+ skipped$/ { ls = num($0, "skipped"); next }
    END {
        if (cm) { pass = cp; fail = cf; skip = cs } else { pass = lp; fail = lf; skip = ls }
        if (!cm && !seen) pass = -1
        if (nskip > skip) skip = nskip
        printf "%d %d %d %d %d\n", pass, fail, skip + 0, nskip + 0, nopkg + 0
    }' "$log")
pass=$1 fail=$2 skip=$3 nopkg=$5
why=""
if [ "$pass" -lt 0 ]; then
    # A suite that only says SKIP (with its package) skipped; silence fails.
    pass=0
    if [ "$st" -ne 0 ] || [ "$skip" -eq 0 ]; then fail=$((fail + 1)); why="printed no counts"; fi
fi
if [ "$st" -ne 0 ] && [ "$fail" -eq 0 ]; then
    fail=1; why="exit status $st"
fi
if [ "$nopkg" -gt 0 ]; then
    fail=$((fail + nopkg)); why="${why:+$why; }$nopkg SKIP line(s) without the package that enables them"
fi

# The packages named on SKIP lines, for the summary's install hint.
grep -E '^([A-Za-z0-9_./-]+: *)?SKIP(PED)?([^A-Za-z]|$)' "$log" |
    sed -n 's/.*apt-get install \(-y \)\{0,1\}\([^)]*\).*/\2/p' | tr ' ' '\n' | grep -v '^-' |
    grep . | sort -u >"$logdir/$name.skip"

counts="$pass passed, $fail failed"
[ "$skip" -gt 0 ] && counts="$counts, $skip skipped"
echo "$([ "$fail" -eq 0 ] && echo 0 || echo 1) $pass $fail $skip" >"$logdir/$name.result"
if [ "$fail" -eq 0 ]; then
    line=$(printf 'ok   %-16s %s (%d s)' "$name" "$counts" "$secs")
    [ -s "$logdir/$name.skip" ] && line="$line; skipped for want of: $(tr '\n' ' ' <"$logdir/$name.skip" | sed 's/ $//')"
    echo "$line"
else
    printf 'FAIL %-16s %s%s (%d s; log %s)\n' "$name" "$counts" "${why:+ ($why)}" "$secs" "$log"
    # The failing checks, else the log's end.
    grep -E '^(FAIL|FAILED )|^\[  (FAILED|ERROR) *\] [a-z_]|^E   |Error [0-9]+$|runtime error|ERROR: AddressSanitizer|SKIP' "$log" |
        grep -v 'apt-get install' | head -n 20 >"$logdir/$name.fails"
    if [ -s "$logdir/$name.fails" ]; then sed 's/^/     | /' "$logdir/$name.fails"
    else tail -n 15 "$log" | sed 's/^/     | /'; fi
    rm -f "$logdir/$name.fails"
fi
exit 0
