#!/usr/bin/python3
"""rotation_torch.py -- the rotation experiment (examples/rotation.c) in PyTorch.

The end-to-end row of `make bench`: the same training and testing as one run
of `make demo`'s rotation (build/release/examples/rotation with its defaults),
written the way a competent PyTorch user would:

  data     Fashion-MNIST from the same IDX files (/255), all 60000 training
           and 10000 test images;
  contexts every training image gets its own angle, uniform on the training
           arc (default 0..270 degrees), s = angle / 360; the image is rotated
           by 2 pi s about its centre, bilinear, zero outside (the example's
           ex_warp, here F.affine_grid + F.grid_sample with align_corners=True:
           the same inverse map on a square image, the same taps and weights
           to float rounding);
  models   784-256-256-10 relu, softmax cross-entropy (mean over the batch):
           manifold: every dense layer on the circle, parameters in the
           metric's orthonormal coordinates Q (c_hat(s) = (1, sqrt2 cos 2 pi s,
           sqrt2 sin 2 pi s)), the K = 3 basis points stacked into one matmul
           and combined per sample (bench_torch.py's ManifoldNet); started as
           a point (He-normal weights on the constant direction, zero biases);
           concat: the same MLP, one point of weights, input widened by
           (cos 2 pi s, sin 2 pi s); He-normal, zero biases;
  training 5 epochs, batch 128, a fresh shuffle per epoch, both models on
           identical batches, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8) on Q,
           after each epoch the accuracy on a fixed probe of 1000 training
           images at training contexts (as the example prints);
  testing  the whole test set at every 10 degrees (36 angles), both models,
           in chunks of 2000; one angle per pass, so W(s) is materialised once
           and the manifold runs a plain MLP.

Timed: everything after `import torch` (loading the data, warping, training,
testing), like the example's own "time: ... total" line, which starts before
it loads the data. One thread: torch.set_num_threads(1) (and
OMP_NUM_THREADS=1 from the caller). Prints the example's kind of report and,
last, one JSON line: {"total_s", "train_s", "test_s", "load_s", "cpu_s" (CPU
seconds over total_s's span), "import_s", "import_cpu_s", "acc": {...}}.

    rotation_torch.py [--data DIR] [--epochs 5] [--batch 128] [--seed 1]
                      [--train N] [--test N] [--train-arc 0,270] [--step 10]
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

T_PROCESS = time.monotonic()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

T_IMPORT = time.monotonic() - T_PROCESS
CPU_IMPORT = time.process_time()   # CPU seconds of starting Python and the imports
N_CLASSES = 10
HIDDEN = (256, 256)


def read_idx(path, max_n=0):
    with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    a = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)
    return a[:max_n] if max_n > 0 else a


def load(data_dir, split, max_n):
    def find(stem):
        for name in (stem, stem + ".gz"):
            if os.path.exists(os.path.join(data_dir, name)):
                return os.path.join(data_dir, name)
        raise SystemExit(f"rotation_torch: {stem}[.gz] not found in {data_dir}")
    x = read_idx(find(f"{split}-images-idx3-ubyte"), max_n)
    y = read_idx(find(f"{split}-labels-idx1-ubyte"), max_n)
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def rotate(img, s):
    """img (n, H, W), s (n,) -> each image rotated by 2 pi s (counter-clockwise
    on screen) about its centre; bilinear, zero outside. ex_warp's inverse
    map, (xs, ys) = R(-angle) (x - c, y - c) + c with screen y down, in the
    normalised coordinates of affine_grid (square images: the same map)."""
    a = (2 * math.pi) * s
    c, sn = torch.cos(a), torch.sin(a)
    z = torch.zeros_like(c)
    theta = torch.stack((torch.stack((c, -sn, z), 1), torch.stack((sn, c, z), 1)), 1)
    grid = F.affine_grid(theta, (img.shape[0], 1) + tuple(img.shape[1:]), align_corners=True)
    return F.grid_sample(img.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros",
                         align_corners=True).flatten(1)


def chat(s):
    """c_hat(s) = L^-1 c(s) for the circle: G = diag(1, 1/2, 1/2)."""
    a = (2 * math.pi) * s
    r2 = math.sqrt(2.0)
    return torch.stack((torch.ones_like(s), r2 * torch.cos(a), r2 * torch.sin(a)), 1)


class ManifoldMLP:
    """Dense layers on the circle, K = 3 basis points stacked in Q coordinates."""

    def __init__(self, sizes, g, K=3):
        self.K, self.W, self.B = K, [], []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            w0 = torch.randn(n_out, n_in, generator=g) * math.sqrt(2.0 / n_in)   # He
            Q = torch.zeros(K, n_out, n_in)
            Q[0] = w0                       # the constant direction: W(s) = w0 for every s
            self.W.append(torch.nn.Parameter(Q.reshape(K * n_out, n_in)))
            self.B.append(torch.nn.Parameter(torch.zeros(K, n_out)))

    def parameters(self):
        return self.W + self.B

    def forward(self, x, s):
        C, h, n, K = chat(s), x, x.shape[0], self.K
        for i, (W, B) in enumerate(zip(self.W, self.B)):
            z = F.linear(h, W).view(n, K, -1)                       # one GEMM, n x (K*out)
            h = torch.bmm(C.unsqueeze(1), z).squeeze(1) + C @ B
            if i < len(self.W) - 1:
                h = torch.relu(h)
        return h

    def forward_shared(self, x, s):
        """Every sample at context s (a float): materialise W(s) once."""
        c, h = chat(torch.tensor([s]))[0], x
        for i, (W, B) in enumerate(zip(self.W, self.B)):
            n_out = B.shape[1]
            h = F.linear(h, (c @ W.view(self.K, -1)).view(n_out, -1), c @ B)
            if i < len(self.W) - 1:
                h = torch.relu(h)
        return h


class ConcatMLP:
    """One point of weights; the input widened by (cos 2 pi s, sin 2 pi s)."""

    def __init__(self, sizes, g):
        sizes = (sizes[0] + 2,) + tuple(sizes[1:])
        self.W = [torch.nn.Parameter(torch.randn(o, i, generator=g) * math.sqrt(2.0 / i))
                  for i, o in zip(sizes[:-1], sizes[1:])]
        self.B = [torch.nn.Parameter(torch.zeros(o)) for o in sizes[1:]]

    def parameters(self):
        return self.W + self.B

    def forward(self, x, s):
        a = (2 * math.pi) * s
        h = torch.cat((x, torch.cos(a).unsqueeze(1), torch.sin(a).unsqueeze(1)), 1)
        for i, (W, B) in enumerate(zip(self.W, self.B)):
            h = F.linear(h, W, B)
            if i < len(self.W) - 1:
                h = torch.relu(h)
        return h

    def forward_shared(self, x, s):
        return self.forward(x, torch.full((x.shape[0],), s))


def accuracy(model, x, s, y, chunk=2000, shared=None):
    correct = 0
    with torch.inference_mode():
        for i in range(0, x.shape[0], chunk):
            xb = x[i:i + chunk]
            out = model.forward_shared(xb, shared) if shared is not None else \
                model.forward(xb, s[i:i + chunk])
            correct += int((out.argmax(1) == y[i:i + chunk]).sum())
    return correct / x.shape[0]


def in_arc(start, length, deg):
    return (deg - start) % 360.0 <= length + 1e-3


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--train", type=int, default=0)
    ap.add_argument("--test", type=int, default=0)
    ap.add_argument("--train-arc", default="0,270")
    ap.add_argument("--step", type=float, default=10.0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    a0, a1 = (float(v) for v in a.train_arc.split(","))
    start, length = a0 % 360.0, a1 - a0
    if not 0 < length <= 360:
        length = (a1 - a0) % 360.0

    t_start, cpu_start = time.monotonic(), time.process_time()
    xtr, ytr = load(a.data, "train", a.train)
    xte, yte = load(a.data, "t10k", a.test)
    t_load = time.monotonic() - t_start
    n, d = xtr.shape[0], xtr.shape[1] * xtr.shape[2]
    print(f"data: {n} training and {xte.shape[0]} test images of {xtr.shape[1]}x{xtr.shape[2]} "
          f"from {a.data} ({t_load:.1f} s)")

    g = torch.Generator().manual_seed(a.seed)
    sizes = (d,) + HIDDEN + (N_CLASSES,)
    models = {"manifold": ManifoldMLP(sizes, g), "concat": ConcatMLP(sizes, g)}
    opts = {k: torch.optim.Adam(m.parameters(), lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
            for k, m in models.items()}
    for k, m in models.items():
        print(f"  {k:<8}  {sum(p.numel() for p in m.parameters())} parameters")

    def train_ctx(count):
        deg = (start + torch.rand(count, generator=g) * length) % 360.0
        return deg / 360.0

    # the probe: 1000 training images at training contexts, fixed
    n_probe = min(n, 1000)
    sp = train_ctx(n_probe)
    xp = rotate(xtr[:n_probe], sp)

    t_train = time.monotonic()
    for ep in range(1, a.epochs + 1):
        t_ep = time.monotonic()
        order = torch.randperm(n, generator=g)
        loss_sum = {k: 0.0 for k in models}
        for i in range(0, n, a.batch):
            idx = order[i:i + a.batch]
            sb = train_ctx(idx.shape[0])
            xb, yb = rotate(xtr[idx], sb), ytr[idx]
            for k, m in models.items():
                loss = F.cross_entropy(m.forward(xb, sb), yb)
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
                loss_sum[k] += float(loss) * idx.shape[0]
        accs = {k: accuracy(m, xp, sp, ytr[:n_probe]) for k, m in models.items()}
        print(f"epoch {ep:2d}/{a.epochs}" + "".join(
            f"  | {k}: loss {loss_sum[k] / n:.4f} train-acc {accs[k]:.3f}" for k in models)
            + f"  | {time.monotonic() - t_ep:.1f} s", flush=True)
    t_train = time.monotonic() - t_train

    t_test = time.monotonic()
    print("\n angle  split     manifold  concat   manifold-concat")
    sums = {False: {k: 0.0 for k in models}, True: {k: 0.0 for k in models}}
    counts = {False: 0, True: 0}
    deg = 0.0
    while deg < 360.0 - 1e-3:
        s = deg / 360.0
        x = rotate(xte, torch.full((xte.shape[0],), s))
        acc = {k: accuracy(m, x, None, yte, shared=s) for k, m in models.items()}
        held = not in_arc(start, length, deg)
        for k in models:
            sums[held][k] += acc[k]
        counts[held] += 1
        print(f"{deg:6.0f}  {'heldout' if held else 'train':<8}  {acc['manifold']:.4f}    "
              f"{acc['concat']:.4f}   {acc['manifold'] - acc['concat']:+.4f}")
        deg += a.step
    t_test = time.monotonic() - t_test
    means = {}
    print("\nmean test accuracy      manifold  concat   manifold-concat")
    for held in (False, True):
        if counts[held]:
            mm, mc = (sums[held][k] / counts[held] for k in ("manifold", "concat"))
            name = "held-out" if held else "training"
            means[name] = {"manifold": mm, "concat": mc, "angles": counts[held]}
            print(f"{name:<8} arc ({counts[held]:2d} angles)  {mm:.4f}    {mc:.4f}   {mm - mc:+.4f}")
    total = time.monotonic() - t_start
    print(f"time: training {t_train:.1f} s, testing {t_test:.1f} s, total {total:.1f} s")
    print(json.dumps({"total_s": total, "train_s": t_train, "test_s": t_test, "load_s": t_load,
                      "cpu_s": time.process_time() - cpu_start,
                      "import_s": T_IMPORT, "import_cpu_s": CPU_IMPORT, "threads": torch.get_num_threads(),
                      "torch_version": torch.__version__, "acc": means}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
