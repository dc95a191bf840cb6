#!/usr/bin/python3
"""bench_torch.py -- the PyTorch side of the speed benchmark (issue 7).

The same configurations as tests/bench/bench.c, written the way a competent
PyTorch user would write the weight-manifold method:

  * parameters in the metric's orthonormal coordinates Q = L^T P (G = L L^T),
    so the paper's G^-1-preconditioned step is plain SGD on Q, and momentum on
    Q is its volume-aware version (DESIGN.md, "Orthonormal coordinates"); the
    per-sample coefficients c_hat(s) = L^-1 c(s) are computed from s inside
    every timed call, as the library does;
  * the K basis points of a layer stacked into one matrix Wst ((K*out) x in):
    mixed contexts run Z = X @ Wst.T as one matmul and combine with c_hat via
    a batched matmul (y_i = c_hat_i^T Z_i + c_hat_i^T B);
    a batch sharing one context materialises W(s) = sum_k c_hat_k Q_k once and
    runs F.linear (autograd spreads the gradient back to the Q_k);
    the point manifold is a plain F.linear network;
  * autograd backward, torch.optim.SGD(lr=0.01, momentum=0.9);
  * inference: the forward pass under torch.inference_mode().

The CNN (cnn-*: 1x28x28, conv 8 3x3 pad 1 relu, maxpool 2, conv 16 3x3 pad 1
relu, maxpool 2, dense 10, softmax CE) the same way: each conv layer's K basis
kernels stacked along the output-channel axis into one weight (K*out, in, k,
k) in Q coordinates; mixed contexts run one F.conv2d with it and combine the K
outputs per sample with c_hat(s) (torch.einsum over K; the bias is c_hat @ B);
a shared context materialises W(s) and runs one plain F.conv2d; the point is a
plain CNN. F.max_pool2d, F.relu, then the dense layer as above.

Run with Debian's interpreter (/usr/bin/python3, python3-torch):
  bench_torch.py --config NAME [--reps R] [--rep-ms MS] [--threads T]
  bench_torch.py --machine [--threads T]
Prints one JSON line. Timing is as in bench.c: warm-up (at least 3 calls and a
quarter of a repetition), then R repetitions of a loop of `iters` calls, the
step's and the inference's repetitions interleaved; the figure is the median
over repetitions of the time per call, in microseconds (times_us: each one).
"""
import argparse
import json
import math
import platform
import resource
import sys
import time

import torch
import torch.nn.functional as F

POOL_SAMPLES = 4096   # as bench.c: cycle through distinct samples, never one batch


def parse_config(name):
    net, manifold, ctx, n = name.split("-")
    if net not in ("mlp", "ctl", "cnn") or manifold not in ("point", "line", "circle", "bspline16") \
            or ctx not in ("mixed", "shared", "none"):
        raise SystemExit(f"bench_torch: no configuration {name}")
    return net, manifold, ctx, int(n)


def bspline_basis(s, n, p):
    """The n clamped uniform B-spline basis functions of degree p at s (m,),
    float64 (m, n): the p+1 nonzero ones by The NURBS Book's A2.2, as
    src/bspline.c does, vectorised over the batch; s = 1 belongs to the last
    piece."""
    pieces = n - p
    t = torch.cat((torch.zeros(p, dtype=torch.float64),
                   torch.linspace(0, 1, pieces + 1, dtype=torch.float64),
                   torch.ones(p, dtype=torch.float64)))
    s = s.to(torch.float64)
    span = torch.clamp(torch.floor(s * pieces).long(), 0, pieces - 1) + p
    N = [torch.ones_like(s)]
    left, right = [None], [None]
    for j in range(1, p + 1):
        left.append(s - t[span + 1 - j])
        right.append(t[span + j] - s)
        saved = torch.zeros_like(s)
        for r in range(j):
            tmp = N[r] / (right[r + 1] + left[j - r])
            N[r] = saved + right[r + 1] * tmp
            saved = left[j - r] * tmp
        N.append(saved)
    c = torch.zeros(s.shape[0], n, dtype=torch.float64)
    c.scatter_(1, (span - p)[:, None] + torch.arange(p + 1), torch.stack(N, 1))
    return c


class Basis:
    """c_hat(s) = L^-1 c(s) for the point, the line, the circle and the open
    cubic B-spline of 16 control points (dense c_hat, as a user would write)."""

    def __init__(self, manifold):
        self.manifold = manifold
        if manifold == "bspline16":     # G by Gauss-Legendre per piece (exact)
            self.K, p = 16, 3
            x, w = (torch.tensor(v, dtype=torch.float64) for v in
                    __import__("numpy").polynomial.legendre.leggauss(p + 1))
            pieces = self.K - p
            s = torch.cat([(j + 0.5 * (x + 1)) / pieces for j in range(pieces)])
            wt = torch.cat([0.5 * w / pieces for _ in range(pieces)])
            c = bspline_basis(s, self.K, p)
            G = (c * wt[:, None]).T @ c
            a = torch.linalg.solve(G, c.T @ wt)                 # constant = sum a_k c_k
            L = torch.linalg.cholesky(G)
            self.LinvT = torch.linalg.inv(L).T.to(torch.float32).contiguous()
            self.const_q = (L.T @ a).to(torch.float32)
            return
        if manifold == "point":
            self.K, G, a = 1, [[1.0]], [1.0]
        elif manifold == "line":        # c(s) = (1 - s, s): a constant is P_1 = P_2
            self.K, G, a = 2, [[1 / 3, 1 / 6], [1 / 6, 1 / 3]], [1.0, 1.0]
        else:                           # c(s) = (1, cos 2 pi s, sin 2 pi s)
            self.K, G, a = 3, [[1, 0, 0], [0, 0.5, 0], [0, 0, 0.5]], [1.0, 0.0, 0.0]
        L = torch.linalg.cholesky(torch.tensor(G, dtype=torch.float64))
        self.LinvT = torch.linalg.inv(L).T.to(torch.float32).contiguous()
        self.const_q = (L.T @ torch.tensor(a, dtype=torch.float64)).to(torch.float32)

    def chat(self, s):
        """s: (n,) contexts -> (n, K) orthonormal coefficients."""
        if self.manifold == "bspline16":
            c = bspline_basis(s, self.K, 3).to(torch.float32)
        elif self.manifold == "line":
            c = torch.stack((1 - s, s), dim=1)
        else:
            a = (2 * math.pi) * s
            c = torch.stack((torch.ones_like(s), torch.cos(a), torch.sin(a)), dim=1)
        return c @ self.LinvT


class ManifoldNet:
    """A dense net whose layers live on the manifold, stored as stacked Q."""

    def __init__(self, sizes, act, basis, seed=42):
        g = torch.Generator().manual_seed(seed)
        self.sizes, self.act, self.basis, self.K = sizes, act, basis, basis.K
        self.W, self.B = [], []
        K = self.K
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            last = i == len(sizes) - 2
            if act == "relu" or last:
                std = math.sqrt(2.0 / n_in)                       # He
            else:
                std = math.sqrt(2.0 / (n_in + n_out))             # Glorot
            # the manifold starts as a point: P_k = a_k w0 with sum_k a_k c_k(s) = 1,
            # in Q coordinates Q_k = (L^T a)_k w0.
            w0 = torch.randn(n_out, n_in, generator=g) * std
            Q = (basis.const_q.view(K, 1, 1) * w0.view(1, n_out, n_in)).reshape(K * n_out, n_in)
            self.W.append(torch.nn.Parameter(Q.contiguous()))
            self.B.append(torch.nn.Parameter(torch.zeros(K, n_out)))

    def parameters(self):
        return self.W + self.B

    def _act(self, h):
        return torch.relu(h) if self.act == "relu" else torch.tanh(h)

    def forward(self, x, C, shared):
        """x: (n, in); C: (n, K) c_hat per sample; shared: every row of C equal."""
        n, K, h = x.shape[0], self.K, x
        last = len(self.W) - 1
        for i, (W, B) in enumerate(zip(self.W, self.B)):
            n_out = B.shape[1]
            if K == 1:                                   # a plain network
                h = F.linear(h, W, B[0])
            elif shared:                                 # materialise W(s) once
                c = C[0]
                w = (c @ W.view(K, -1)).view(n_out, -1)
                h = F.linear(h, w, c @ B)
            else:                                        # stacked basis points
                z = F.linear(h, W).view(n, K, n_out)     # one GEMM, n x (K*out)
                h = torch.bmm(C.unsqueeze(1), z).squeeze(1) + C @ B
            if i < last:
                h = self._act(h)
        return h


CNN_INPUT = (1, 28, 28)       # as bench.c: C, H, W
CNN_WIDTHS = (8, 16)          # conv 3x3 pad 1 relu + maxpool 2 each, then dense 10


class ManifoldCNN:
    """The CNN with every conv and dense layer on the manifold, stacked Q."""

    def __init__(self, in_shape, widths, n_classes, basis, seed=42):
        g = torch.Generator().manual_seed(seed)
        self.basis, self.K = basis, basis.K
        K, c, hw = basis.K, in_shape[0], in_shape[1]
        self.conv_W, self.conv_B = [], []
        for w in widths:
            std = math.sqrt(2.0 / (c * 9))                           # He (relu)
            w0 = torch.randn(w, c, 3, 3, generator=g) * std
            Q = basis.const_q.view(K, 1, 1, 1, 1) * w0.unsqueeze(0)    # (K, out, in, 3, 3)
            self.conv_W.append(torch.nn.Parameter(Q.reshape(K * w, c, 3, 3).contiguous()))
            self.conv_B.append(torch.nn.Parameter(torch.zeros(K, w)))
            c, hw = w, hw // 2
        n_in = c * hw * hw
        w0 = torch.randn(n_classes, n_in, generator=g) * math.sqrt(2.0 / n_in)
        Q = (basis.const_q.view(K, 1, 1) * w0.unsqueeze(0)).reshape(K * n_classes, n_in)
        self.W = torch.nn.Parameter(Q.contiguous())
        self.B = torch.nn.Parameter(torch.zeros(K, n_classes))

    def parameters(self):
        return self.conv_W + self.conv_B + [self.W, self.B]

    def forward(self, x, C, shared):
        """x: (n, C, H, W); C: (n, K) c_hat per sample; shared: every row equal."""
        n, K, h = x.shape[0], self.K, x
        for W, B in zip(self.conv_W, self.conv_B):
            out = B.shape[1]
            if K == 1:                                   # a plain CNN
                h = F.conv2d(h, W, B[0], padding=1)
            elif shared:                                 # materialise W(s) once
                c = C[0]
                w = (c @ W.view(K, -1)).view(out, *W.shape[1:])
                h = F.conv2d(h, w, c @ B, padding=1)
            else:                                        # stacked basis kernels
                z = F.conv2d(h, W, padding=1)            # (n, K*out, H, W), one conv
                z = z.view(n, K, out, z.shape[2], z.shape[3])
                h = torch.einsum("nk,nkohw->nohw", C, z) + (C @ B)[:, :, None, None]
            h = F.max_pool2d(F.relu(h), 2)
        h = h.flatten(1)
        n_out = self.B.shape[1]
        if K == 1:
            return F.linear(h, self.W, self.B[0])
        if shared:
            c = C[0]
            return F.linear(h, (c @ self.W.view(K, -1)).view(n_out, -1), c @ self.B)
        z = F.linear(h, self.W).view(n, K, n_out)
        return torch.bmm(C.unsqueeze(1), z).squeeze(1) + C @ self.B


class Workload:
    def __init__(self, name, seed=7):
        net, manifold, ctx, n = parse_config(name)
        big = net != "ctl"                               # classification on 784 inputs
        self.big, self.ctx, self.n = big, ctx, n
        self.shared = ctx == "shared"
        sizes = [784, 256, 256, 10] if big else [16, 64, 64, 4]
        self.basis = Basis(manifold)
        if net == "cnn":
            self.net = ManifoldCNN(CNN_INPUT, CNN_WIDTHS, 10, self.basis)
        else:
            self.net = ManifoldNet(sizes, "relu" if big else "tanh", self.basis)
        self.opt = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9)
        g = torch.Generator().manual_seed(seed)
        P = (POOL_SAMPLES + n - 1) // n
        N, n_in, n_out = P * n, sizes[0], sizes[-1]
        a = math.sqrt(3.0 / n_in)                         # |x|^2 ~ 1, as in bench.c
        if net == "cnn":
            x = torch.rand(N, *CNN_INPUT, generator=g)    # pixels in [0, 1], as bench.c
        elif big:
            x = torch.rand(N, n_in, generator=g) * a
        else:
            x = (torch.rand(N, n_in, generator=g) * 2 - 1) * a
        if self.shared:
            s = torch.rand(P, 1, generator=g).expand(P, n).reshape(N).contiguous()
        else:
            s = torch.rand(N, generator=g)
        self.xs = list(x.split(n))
        self.ss = list(s.split(n))
        if big:
            self.ys = list(torch.randint(0, n_out, (N,), generator=g).split(n))
        else:
            self.ys = list((torch.rand(N, n_out, generator=g) * 2 - 1).split(n))
        self.P, self.next, self.point = P, 0, manifold == "point"
        self.loss_sum, self.steps, self.last_loss = 0.0, 0, float("nan")

    def _batch(self):
        i = self.next
        self.next = (i + 1) % self.P
        return self.xs[i], self.ss[i], self.ys[i]

    def _C(self, s):
        if self.point:
            return None
        return self.basis.chat(s[:1] if self.shared else s)

    def step(self):
        x, s, y = self._batch()
        out = self.net.forward(x, self._C(s), self.shared)
        loss = F.cross_entropy(out, y) if self.big else F.mse_loss(out, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        v = loss.item()
        self.last_loss = v
        self.loss_sum += v
        self.steps += 1

    def infer(self):
        x, s, _ = self._batch()
        with torch.inference_mode():
            return self.net.forward(x, self._C(s), self.shared)


def measure(jobs, reps, rep_s):
    """jobs: {key: callable}. Warm-up and loop sizing per job, then the
    repetitions interleaved across jobs, as bench.c does."""
    iters = {}
    for k, f in jobs.items():
        t0 = time.perf_counter()
        w = 0
        while w < 3 or time.perf_counter() - t0 < 0.25 * rep_s:   # warm-up, excluded
            f()
            w += 1
        per = (time.perf_counter() - t0) / w
        iters[k] = max(1, int(rep_s / max(per, 1e-9)))
    times = {k: [] for k in jobs}
    for _ in range(reps):
        for k, f in jobs.items():
            a = time.perf_counter()
            for _ in range(iters[k]):
                f()
            times[k].append((time.perf_counter() - a) / iters[k] * 1e6)
    out = {}
    for k, ts in times.items():
        s = sorted(ts)
        med = s[reps // 2] if reps % 2 else 0.5 * (s[reps // 2 - 1] + s[reps // 2])
        out[k] = {"median_us": med, "iters": iters[k], "reps": reps, "times_us": ts}
    return out


def peak_rss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def machine(threads):
    blas = sorted({line.split()[-1] for line in open("/proc/self/maps")
                   if "blas" in line.split()[-1] and "/" in line.split()[-1]})
    return {"impl": "torch", "machine": True, "torch_version": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(),
            "python": platform.python_version(), "blas_libraries": blas,
            "parallel_backend": "OpenMP" if torch.backends.openmp.is_available() else "native",
            "mkldnn": torch.backends.mkldnn.is_available()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config")
    ap.add_argument("--machine", action="store_true")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rep-ms", type=float, default=40.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--what", default="step,infer")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)
    if a.machine:
        torch.ones(4, 4) @ torch.ones(4, 4)      # loads the BLAS, so /proc/self/maps shows it
        print(json.dumps(machine(a.threads)))
        return
    if not a.config:
        ap.error("--config or --machine")
    w = Workload(a.config)
    rep_s = a.rep_ms * 1e-3
    row = {"impl": "torch", "config": a.config, "threads": a.threads, "n": w.n,
           "K": w.basis.K, "n_params": sum(p.numel() for p in w.net.parameters())}
    jobs = {}
    if "step" in a.what:
        jobs["step"] = w.step
    if "infer" in a.what:
        jobs["infer"] = w.infer
    row.update(measure(jobs, a.reps, rep_s))
    if "step" in jobs:
        if not math.isfinite(w.last_loss):
            raise SystemExit(f"bench_torch: {a.config}: the loss is not finite")
        row["loss"], row["mean_loss"], row["steps"] = w.last_loss, w.loss_sum / w.steps, w.steps
    row["peak_rss_kb"] = peak_rss_kb()
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    sys.exit(main())
