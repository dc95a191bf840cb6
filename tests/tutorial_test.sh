#!/bin/sh
# tutorial_test.sh BIN_DIR -- docs/tutorial.md shows code that really runs.
#
#  * every ```c block after a `<!-- file: PATH -->` marker occurs verbatim in
#    PATH, so the snippets cannot drift from the compiled programs;
#  * every program in examples/tutorial/ is quoted by the tutorial;
#  * every program, built into BIN_DIR by `make test-tutorial`, runs and
#    exits 0 (each checks its own result);
#  * every ```text block after `<!-- output: PATH -->` matches that program's
#    output line by line, numbers aside (they move with BLAS rounding).
# $RUN (e.g. valgrind) prefixes each program. Ends with
# "tutorial: N passed, N failed"; exits non-zero on any failure.
set -u
bindir=${1:?usage: tutorial_test.sh BIN_DIR}
root=$(cd "$(dirname "$0")/.." && pwd)
doc=$root/docs/tutorial.md
RUN=${RUN:-}
pass=0
fail=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }

tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
bindir=$(cd "$bindir" && pwd) || exit 1

# Split the tutorial into blocks: $tmp/b.N holds block N, and $tmp/index
# lists "N kind path" (kind: file or output).
awk -v dir="$tmp" '
    /<!-- (file|output): [^ ]+ -->/ {
        kind = ($0 ~ /<!-- file:/) ? "file" : "output"
        path = $0; sub(/.*<!-- (file|output): /, "", path); sub(/ -->.*/, "", path)
        want = (kind == "file") ? "```c" : "```text"
        next
    }
    want != "" && $0 == want { n++; out = dir "/b." n; printf "" > out
                               print n, kind, path >> (dir "/index"); want = ""; next }
    out != "" && /^```/ { close(out); out = ""; next }
    out != "" { print >> out }
' "$doc"
touch "$tmp/index"

# 1. snippets are verbatim pieces of their files
while read -r n kind path; do
    [ "$kind" = file ] || continue
    if [ ! -f "$root/$path" ]; then
        bad "tutorial block $n quotes $path, which does not exist"
    elif awk 'FNR == NR { src = src $0 "\n"; next } { blk = blk $0 "\n" }
              END { exit !(blk != "" && index(src, blk)) }' "$root/$path" "$tmp/b.$n"; then
        ok "tutorial block $n is verbatim from $path"
    else
        bad "tutorial block $n is not verbatim in $path: $(head -2 "$tmp/b.$n" | tr '\n' ' ')"
    fi
done <"$tmp/index"

# 2. every program is quoted; 3. every program runs; 4. outputs match
for src in "$root"/examples/tutorial/*.c; do
    name=$(basename "$src" .c)
    rel=examples/tutorial/$name.c
    grep -q " file $rel\$" "$tmp/index" || bad "docs/tutorial.md never quotes $rel"
    mkdir -p "$tmp/run.$name"
    if [ ! -x "$bindir/$name" ]; then
        bad "$name was not built in $bindir"
        continue
    fi
    # shellcheck disable=SC2086  # RUN may be several words
    if (cd "$tmp/run.$name" && $RUN "$bindir/$name" >"$tmp/out.$name" 2>&1); then
        ok "$name runs and passes its own checks"
    else
        bad "$name failed:"
        cat "$tmp/out.$name"
        continue
    fi
    grep " output $rel\$" "$tmp/index" | while read -r n _ _; do
        # Numbers (1, -0.5, 1.2e-05, 0x1f) become '#'; the rest must be equal.
        skel() { sed -E 's/-?(0x[0-9a-f]+|[0-9]+(\.[0-9]*)?(e[-+]?[0-9]+)?)/#/g' "$1"; }
        if [ "$(skel "$tmp/b.$n")" = "$(skel "$tmp/out.$name")" ]; then
            echo "ok   output shown in block $n matches $name" >>"$tmp/outchecks"
        else
            echo "FAIL output shown in block $n differs from $name's:" >>"$tmp/outchecks"
            diff "$tmp/b.$n" "$tmp/out.$name" | head -10 >>"$tmp/outchecks"
        fi
    done
done
# The output checks ran in a pipeline's subshell: count them here.
if [ -f "$tmp/outchecks" ]; then
    cat "$tmp/outchecks"
    pass=$((pass + $(grep -c '^ok' "$tmp/outchecks")))
    fail=$((fail + $(grep -c '^FAIL' "$tmp/outchecks")))
fi

echo "tutorial: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
