#!/bin/sh
# summary.sh LOGDIR LABEL NAME... -- the total line of `make test`.
#
# Adds up LOGDIR/NAME.result (written by tests/suite.sh) over the suites
# named; a suite without one (it never ran) is a failure. Prints which
# packages would run the skipped checks, then the one total line
#   LABEL: N passed, M failed, K skipped (S suites, T s; logs in LOGDIR)
# and exits non-zero if anything failed.
logdir=${1:?usage: summary.sh LOGDIR LABEL NAME...}
label=${2:?usage: summary.sh LOGDIR LABEL NAME...}
shift 2
pass=0 fail=0 skip=0 n=0 never=""
for name; do
    n=$((n + 1))
    if [ -r "$logdir/$name.result" ]; then
        read -r st p f s <"$logdir/$name.result"
        pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
    else
        never="$never $name"
        fail=$((fail + 1))
    fi
done
[ -n "$never" ] && echo "FAIL never ran:$never"
secs=""
[ -r "$logdir/.start" ] && secs=", $(($(date +%s) - $(cat "$logdir/.start"))) s"
pkgs=$(cd "$logdir" && for name; do [ -r "$name.skip" ] && cat "$name.skip"; done | sort -u | tr '\n' ' ' | sed 's/ $//')
[ "$skip" -gt 0 ] && [ -n "$pkgs" ] && echo "skipped checks run after: sudo apt-get install -y $pkgs"
echo "$label: $pass passed, $fail failed, $skip skipped ($n suites$secs; logs in $logdir/)"
[ "$fail" -eq 0 ]
