#!/usr/bin/env python3
"""scaling_model.py -- the cost model of docs/distributed.md, as a program.

Per step, every rank computes the gradient of its per-rank batch b
(T_comp(b), measured on this machine with one process), then
wm_mpi_step all-reduces 4 P bytes (P parameters) and a 32-byte status
record. Ring all-reduce of M bytes on p ranks, link latency alpha and
bandwidth beta (per direction), reduction arithmetic at rho bytes/s:

    T_ring(M, p) = 2 (p-1) alpha + 2 (p-1)/p M / beta + (p-1)/p M / rho
    T_status(p)  = 2 ceil(log2 p) alpha            (recursive doubling, 32 bytes)

(The last column replaces the ring's 2 (p-1) alpha by Rabenseifner's
2 log2(p) alpha, same bandwidth term.)

Without overlap the step takes T_comp + T_comm, so the parallel efficiency
at a fixed per-rank batch (weak scaling) is

    E(p) = T_comp(b) / (T_comp(b) + T_ring(4P, p) + T_status(p)).

With the all-reduce overlapped perfectly with the backward pass, at best
E = T_comp / (T_fwd + max(T_bwd, T_comm)), T_bwd ~ 2/3 T_comp (the "ideal
overlap" column; overlap_model.py models the buckets wm_mpi_step really
starts, from per-layer times measured here, and finds much less).

The batch per rank that reaches 90 % (T_comp >= 9 T_comm) comes from a
least-squares line T_comp(b) = c0 + c1 b through the measured points.

Usage: scaling_model.py NAME P B_REF b1:ms1,b2:ms2,... [NAME P B_REF ...]
  e.g. scaling_model.py mlp 807966 128 32:5.50,128:15.4,512:48.7
"""
import math
import sys

LINKS = [  # name, alpha (s), beta (bytes/s): peak rates, so efficiencies are upper bounds
    ("10 Gbit/s Ethernet (TCP, alpha 25 us)", 25e-6, 10e9 / 8),
    ("100 Gbit/s (RDMA, alpha 2 us)", 2e-6, 100e9 / 8),
]
RHO = 10e9          # float sums at memory bandwidth, bytes/s
RANKS = [8, 64, 512]


def t_comm(M, p, alpha, beta, halving=False):
    """ring; halving=True: the same bandwidth term with recursive-halving
    latency 2 log2(p) alpha (Rabenseifner), what MPI libraries switch to at
    large p"""
    lat = 2 * math.ceil(math.log2(p)) * alpha if halving else 2 * (p - 1) * alpha
    ring = lat + 2 * (p - 1) / p * M / beta + (p - 1) / p * M / RHO
    status = 2 * math.ceil(math.log2(p)) * alpha
    return ring + status


def fit(points):
    n = len(points)
    mb = sum(b for b, _ in points) / n
    mt = sum(t for _, t in points) / n
    c1 = sum((b - mb) * (t - mt) for b, t in points) / sum((b - mb) ** 2 for b, _ in points)
    return mt - c1 * mb, c1


def main(argv):
    if len(argv) < 4 or len(argv) % 4:
        sys.exit(__doc__)
    for i in range(0, len(argv), 4):
        name, P, bref = argv[i], int(argv[i + 1]), int(argv[i + 2])
        pts = [(int(b), float(t) / 1e3) for b, t in (x.split(":") for x in argv[i + 3].split(","))]
        c0, c1 = fit(pts)
        tc = dict(pts)[bref]
        M = 4 * P
        print(f"\n{name}: P = {P} parameters, M = 4 P = {M} bytes per step; per-rank batch "
              f"{bref}: T_comp = {tc * 1e3:.2f} ms (fit: {c0 * 1e3:.2f} ms + {c1 * 1e6:.1f} us/sample)")
        print("| link | ranks | T_comm ring (ms) | efficiency | ideal overlap | batch/rank for 90 % "
              "| Rabenseifner: T_comm (ms), efficiency |")
        print("|---|---|---|---|---|---|---|")
        for lname, alpha, beta in LINKS:
            for p in RANKS:
                tcm = t_comm(M, p, alpha, beta)
                e = tc / (tc + tcm)
                eo = tc / (tc / 3 + max(2 * tc / 3, tcm))
                b90 = max(1, math.ceil((9 * tcm - c0) / c1)) if c1 > 0 else float("nan")
                th = t_comm(M, p, alpha, beta, halving=True)
                print(f"| {lname} | {p} | {tcm * 1e3:.2f} | {100 * e:.0f} % | {100 * eo:.0f} % "
                      f"| {b90} | {th * 1e3:.2f}, {100 * tc / (tc + th):.0f} % |")


if __name__ == "__main__":
    main(sys.argv[1:])
