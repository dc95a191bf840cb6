#!/usr/bin/python3
"""ab.py -- is a new build as fast as an old one? Alternating A/B runs.

For every configuration both builds' `bench --config NAME --what step,infer`
run in fresh processes, in the order A B B A repeated --rounds times; the
figure per build is the median over all its repetitions, and new/old is the
ratio of medians (below 1: the new build is faster). Every round's own ratio
is kept too, so the spread shows how much of a difference is noise.

    ab.py --old /path/old/bench --new build/release/bench [--rounds 2] [--reps 5]
          [--only SUBSTRING[,SUBSTRING]] [--out build/ab.md]
"""
import argparse, json, os, statistics, subprocess, sys


def run(binary, config, reps, rep_ms):
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    p = subprocess.run([binary, "--config", config, "--reps", str(reps), "--rep-ms", str(rep_ms),
                        "--what", "step,infer"], capture_output=True, text=True, env=env, timeout=600)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode or not lines:
        raise SystemExit(f"ab: {binary} --config {config}: exit {p.returncode}: {p.stderr[-300:]}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True)
    ap.add_argument("--new", required=True)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--rep-ms", type=int, default=40)
    ap.add_argument("--only", default="")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    old = subprocess.run([a.old, "--list"], capture_output=True, text=True).stdout.split()
    new = set(subprocess.run([a.new, "--list"], capture_output=True, text=True).stdout.split())
    wanted = [s for s in a.only.split(",") if s]
    configs = [c for c in old if c in new and (not wanted or any(w in c for w in wanted))]
    rows = []
    for c in configs:
        t = {"old": {"step": [], "infer": []}, "new": {"step": [], "infer": []}}
        rounds = {"step": [], "infer": []}
        for r in range(a.rounds):
            got = {}
            for who in ("old", "new", "new", "old"):
                j = run(a.old if who == "old" else a.new, c, a.reps, a.rep_ms)
                for w in ("step", "infer"):
                    t[who][w] += j[w]["times_us"]
                    got.setdefault((who, w), []).extend(j[w]["times_us"])
            for w in ("step", "infer"):
                rounds[w].append(statistics.median(got[("new", w)]) / statistics.median(got[("old", w)]))
        row = {"config": c}
        for w in ("step", "infer"):
            o, n = statistics.median(t["old"][w]), statistics.median(t["new"][w])
            row[w] = (o, n, n / o, min(rounds[w]), max(rounds[w]))
        rows.append(row)
        print(f"{c}: step {row['step'][2]:.3f} infer {row['infer'][2]:.3f}", file=sys.stderr, flush=True)
    out = ["| config | step old µs | step new µs | new/old | rounds | infer old µs | infer new µs | new/old | rounds |",
           "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | --- |"]
    for r in rows:
        cells = [f"`{r['config']}`"]
        for w in ("step", "infer"):
            o, n, q, lo, hi = r[w]
            cells += [f"{o:,.1f}", f"{n:,.1f}", f"{q:.3f}", f"{lo:.3f}–{hi:.3f}"]
        out.append("| " + " | ".join(cells) + " |")
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        open(a.out, "w").write(text)


if __name__ == "__main__":
    main()
