#!/usr/bin/env python3
"""overlap_model.py -- what bucketing overlapped with the backward pass buys
(docs/distributed.md), from per-layer times measured here.

wm_mpi_step_buckets groups the layers' gradient blocks, last layer first,
into buckets of at least S bytes; a bucket starts its all-reduce when the
backward pass has finished its lowest layer, i.e. with `tail` ms of the
pass still to run (measured per layer with `mpi_rotation --time-layers`).
The link carries one bucket at a time:

    f_0 = -inf;   f_k = max(f_{k-1}, -tail_k) + T_ring(M_k, p)
    exposed = f_last            (time after the pass ends; >= T_ring(last))
    E = T_comp / (T_comp + exposed + T_status)

against no overlap, E = T_comp / (T_comp + T_ring(M, p) + T_status).
T_ring as in scaling_model.py (ring latency 2 (p-1) alpha per bucket: a
bucket's latency is paid in full even when several start together, so
many small buckets are charged pessimistically; the "Rabenseifner" columns
use 2 log2(p) alpha per bucket). S = 1: a bucket per layer; S larger than
the buffer: one bucket, started when the pass ends (no overlap, the same
as S = 0's one blocking all-reduce).

Usage: overlap_model.py T_COMP_MS floats:tail_ms,... S_BYTES ...
  blocks from the last layer to the first, e.g. the demo MLP at 128/rank:
  overlap_model.py 6.0 7710:2.64,197376:1.59,602880:0 1 262144
"""
import math
import sys

from scaling_model import LINKS, RANKS, RHO


def t_ring(M, p, alpha, beta, halving):
    lat = 2 * math.ceil(math.log2(p)) * alpha if halving else 2 * (p - 1) * alpha
    return lat + 2 * (p - 1) / p * M / beta + (p - 1) / p * M / RHO


def buckets(blocks, S):
    """[(bytes, tail_s)] of each bucket in start order: blocks accumulate
    (last layer first) until a bucket holds >= S bytes, and the first
    layer's block always closes one (wm_mpi_step_buckets' rule)."""
    out, acc = [], 0
    for i, (n, tail) in enumerate(blocks):
        acc += 4 * n
        if acc >= S or i == len(blocks) - 1:
            out.append((acc, tail))
            acc = 0
    return out


def exposed(bks, p, alpha, beta, halving):
    f = -math.inf
    for M, tail in bks:
        f = max(f, -tail) + t_ring(M, p, alpha, beta, halving)
    return f


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    tc = float(argv[0]) / 1e3
    blocks = [(int(a), float(b) / 1e3) for a, b in (x.split(":") for x in argv[1].split(","))]
    sizes = argv[2:]
    if any(int(x) < 1 for x in sizes):
        sys.exit("S must be >= 1 (S = 0, one blocking all-reduce, is the no-overlap column)")
    M = 4 * sum(n for n, _ in blocks)
    print(f"T_comp = {tc * 1e3:.2f} ms, M = {M} bytes; blocks (last layer first, floats: ms of the "
          f"pass left): {argv[1]}")
    for s in sizes:
        b = buckets(blocks, int(s))
        print(f"  buckets {s}: {len(b)} ({', '.join(f'{m // 1024} KiB @ {t * 1e3:.2f}' for m, t in b[:6])}"
              f"{', ...' if len(b) > 6 else ''})")
    head = " | ".join(f"S = {s} B: exposed, E" for s in sizes)
    for halving in (False, True):
        print(f"\n{'Rabenseifner latency' if halving else 'ring latency'}")
        print(f"| link | ranks | no overlap: T_comm, E | {head} |")
        print("|---|---|---|" + "---|" * len(sizes))
        for lname, alpha, beta in LINKS:
            for p in RANKS:
                st = 2 * math.ceil(math.log2(p)) * alpha
                t0 = t_ring(M, p, alpha, beta, halving)
                row = f"| {lname.split(' (')[0]} | {p} | {t0 * 1e3:.2f} ms, {100 * tc / (tc + t0 + st):.0f} % |"
                for s in sizes:
                    e = exposed(buckets(blocks, int(s)), p, alpha, beta, halving)
                    row += f" {e * 1e3:.2f} ms, {100 * tc / (tc + e + st):.0f} % |"
                print(row)


if __name__ == "__main__":
    main(sys.argv[1:])
