#!/usr/bin/python3
"""Train a circle-manifold network from Python: phase-shifted sine regression.

The task family: y = sin 2 pi (x + s), one task per phase s in [0, 1). The
phase is periodic (s = 0 and s = 1 are the same task), so the weights live
on a circle, W(s) = P_1 + P_2 cos 2 pi s + P_3 sin 2 pi s.

Training sees only phases s < 1 - holdout; the test also asks about the
phases it never saw. The same architecture with s appended to the input
(the concatenation baseline, arXiv 2505.22994) is trained alongside.

    /usr/bin/python3 examples/python/train_circle.py --steps 2000

It uses the installed package (pip install --no-build-isolation ./python, or
make install-python), else the checkout's python/ with the library in lib/.
"""

import argparse
import os
import sys

import numpy as np

try:
    import wmanifold as wm  # the installed package (pip install ./python)
except ImportError:  # run from a checkout: the package in python/, the library in lib/
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "python"))
    import wmanifold as wm  # noqa: E402


def batch(rng, n, s_lo, s_hi):
    x = rng.random((n, 1), dtype=np.float32)
    s = rng.uniform(s_lo, s_hi, n).astype(np.float32)
    y = np.sin(2 * np.pi * (x + s[:, None])).astype(np.float32)
    return x, s, y


def train(cond, args):
    """Train one net; returns (net, final training loss). Caller closes net."""
    rng = np.random.default_rng(args.seed)
    with wm.Manifold.circle() as m:
        net = wm.Net(m, 1, cond)
    net.dense(args.hidden, wm.Activation.TANH).dense(1).set_loss(wm.Loss.MSE).init(args.seed)
    with wm.Optimizer(net, kind=wm.OptKind.ADAM, lr=args.lr) as opt:
        for step in range(args.steps):
            x, s, y = batch(rng, args.batch, 0.0, 1.0 - args.holdout)
            loss = opt.step(x, s, targets=y)
            if args.verbose and step % max(1, args.steps // 5) == 0:
                print(f"  [{cond.name.lower():8s}] step {step:5d}  loss {loss:.4f}")
    return net, loss


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="Prints test MSE on seen and unseen phases.")
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--batch", type=int, default=64, help="samples per step (default 64)")
    p.add_argument("--hidden", type=int, default=32, help="hidden tanh units (default 32)")
    p.add_argument("--lr", type=float, default=0.01, help="Adam learning rate (default 0.01)")
    p.add_argument("--holdout", type=float, default=0.25,
                   help="fraction of phases never trained on, at the end of [0,1) (default 0.25)")
    p.add_argument("--seed", type=int, default=1, help="seed for data and weights (default 1)")
    p.add_argument("--save", metavar="PATH", help="save the manifold net to PATH")
    p.add_argument("-q", "--quiet", dest="verbose", action="store_false", help="no progress")
    args = p.parse_args(argv)
    if not 0 <= args.holdout < 1:
        p.error("--holdout must be in [0, 1)")

    print(f"libwmanifold {wm.version()} ({wm.lib_path})")
    rng = np.random.default_rng(args.seed + 1)
    seen = batch(rng, 2000, 0.0, 1.0 - args.holdout)
    unseen = batch(rng, 2000, 1.0 - args.holdout, 1.0) if args.holdout > 0 else None

    results = {}
    for cond in (wm.Conditioning.MANIFOLD, wm.Conditioning.CONCAT):
        net, _ = train(cond, args)
        with net:
            mse_seen, _ = net.evaluate(*seen[:2], targets=seen[2])
            mse_unseen = net.evaluate(*unseen[:2], targets=unseen[2])[0] if unseen else float("nan")
            results[cond] = (mse_seen, mse_unseen)
            if args.save and cond == wm.Conditioning.MANIFOLD:
                net.save(args.save)
                print(f"saved the manifold net to {args.save}")

    print(f"{'':14s} {'seen phases':>12s} {'unseen phases':>14s}")
    for cond, (a, b) in results.items():
        print(f"{cond.name.lower():14s} {a:12.4f} {b:14.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
