"""wmanifold.torch -- a trained wmanifold net as a torch.nn.Module.

    import wmanifold as wm, wmanifold.torch
    module = wmanifold.torch.to_torch(net)      # net: an initialised wm.Net
    y = module(torch.from_numpy(x), torch.from_numpy(s))   # == net(x, s) to ~1e-6

The module holds the net's control points P_k as parameters and evaluates
W(s) = sum_k c_k(s) P_k inside the forward pass, with the basis c(s) written
in torch operations (point, line, circle/Fourier, B-spline, products of these),
so it is differentiable in the control points, can be fine-tuned with any
torch optimizer, and traced or exported to ONNX with s as an input:

    torch.onnx.export(module, (x, s), "net.onnx", input_names=["x", "s"])

After fine-tuning, module.copy_to(net) writes the control points back.

A net on a custom manifold needs its basis in torch: to_torch(net,
basis=fn), fn(s) taking an (n, dim) tensor and returning (n, K). Without it,
the basis is evaluated by the library (correct, but not differentiable in s
and not exportable).

Conditioning by concatenation (wm.Conditioning.CONCAT) becomes the same
plain network with the context features appended to the input, as the
library does it.

Every layer kind is exported: dense, conv2d, max/avg pooling, residual
(the skip's source output is kept for it), layernorm and groupnorm
(F.layer_norm / F.group_norm with gain and bias from the manifold), FiLM,
dropout and global average pooling, and layers kept at one point
(wm_net_set_layer_manifold(net, l, 0)), whose K is 1. Dropout behaves as
torch.nn.Dropout: active in training mode (its mask is torch's, not the
library's), the identity after module.eval(), which is what wm_infer
computes.

This module imports PyTorch (Debian: python3-torch); `import wmanifold` does
not.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import wmanifold as _wm
from wmanifold import _format

__all__ = ["to_torch", "WManifoldModule", "ManifoldDense", "ManifoldConv2d", "Pool2d",
           "ManifoldNorm", "Residual", "Dropout", "GlobalAvgPool", "basis", "features"]

BasisFn = Callable[[Tensor], Tensor]

_ACTIVATIONS: Dict[int, Callable[[Tensor], Tensor]] = {
    0: lambda z: z, 1: torch.relu, 2: torch.tanh, 3: torch.sigmoid}


# --------------------------------------------------------------------------
# Bases c(s) in torch operations (src/manifold.c, src/bspline.c)
# --------------------------------------------------------------------------

def _knots(j: Tensor, n: int, p: int, closed: bool) -> Tensor:
    """The uniform knot t_j: closed (j - p) / n; open and clamped, p + 1 zeros,
    uniform interior knots, p + 1 ones."""
    if closed:
        return (j - p) / n
    pieces = n - p
    return torch.where(j <= p, torch.zeros_like(j),
                       torch.where(j >= n, torch.ones_like(j), (j - p) / pieces))


def _bspline(x: Tensor, n: int, p: int, closed: bool) -> Tensor:
    """(m,) contexts -> (m, n) uniform B-spline basis (Cox-de Boor, The NURBS
    Book A2.2, as src/bspline.c); the one-hot sums keep it ONNX-friendly."""
    pieces = n if closed else n - p
    piece = torch.clamp(torch.floor(x * pieces), 0, pieces - 1)
    span = piece + p                                # t_span <= x < t_span+1
    N = [torch.ones_like(x)]
    left: List[Tensor] = [x]                        # index 0 unused
    right: List[Tensor] = [x]
    for j in range(1, p + 1):
        left.append(x - _knots(span + 1 - j, n, p, closed))
        right.append(_knots(span + j, n, p, closed) - x)
        saved = torch.zeros_like(x)
        new = []
        for r in range(j):
            tmp = N[r] / (right[r + 1] + left[j - r])
            new.append(saved + right[r + 1] * tmp)
            saved = left[j - r] * tmp
        new.append(saved)
        N = new
    cols = torch.arange(n, dtype=x.dtype, device=x.device)
    c = torch.zeros(x.shape[0], n, dtype=x.dtype, device=x.device)
    for r in range(p + 1):
        idx = span - p + r
        if closed:
            idx = torch.remainder(idx, n)
        c = c + N[r][:, None] * (cols[None, :] == idx[:, None]).to(x.dtype)
    return c


def _fourier(x: Tensor, harmonics: int) -> Tensor:
    cols = [torch.ones_like(x)]
    for h in range(1, harmonics + 1):
        a = (2 * math.pi * h) * x
        cols += [torch.cos(a), torch.sin(a)]
    return torch.stack(cols, 1)


def basis(spec: Dict[str, Any], s: Tensor) -> Tensor:
    """c(s) for contexts s (n, dim) of the manifold described by spec (a
    Net.architecture()["manifold"]): (n, K). Periodic coordinates must
    already be wrapped into [0, 1) (WManifoldModule does it)."""
    kind, n = spec["kind"], s.shape[0]
    if kind == "point":
        return torch.ones(n, 1, dtype=s.dtype, device=s.device)
    if kind == "line":
        return torch.stack([1 - s[:, 0], s[:, 0]], 1)
    if kind == "fourier":
        return _fourier(s[:, 0], spec["harmonics"])
    if kind == "bspline":
        return _bspline(s[:, 0], spec["n_control"], spec["degree"], spec["closed"])
    if kind == "product":
        da = spec["a"]["dim"]
        ca, cb = basis(spec["a"], s[:, :da]), basis(spec["b"], s[:, da:])
        return (ca[:, :, None] * cb[:, None, :]).reshape(n, -1)
    raise ValueError(f"no torch basis for a {kind} manifold: pass basis=")


def features(spec: Dict[str, Any], s: Tensor) -> Tensor:
    """The context features a concatenation net appends to its input: a line
    gives s; a Fourier curve its basis without the constant; a product both
    factors' features; a B-spline or custom basis its basis values."""
    kind = spec["kind"]
    if kind == "point":
        return s.new_zeros(s.shape[0], 0)
    if kind == "line":
        return s[:, :1]
    if kind == "fourier":
        return _fourier(s[:, 0], spec["harmonics"])[:, 1:]
    if kind == "product":
        da = spec["a"]["dim"]
        return torch.cat([features(spec["a"], s[:, :da]), features(spec["b"], s[:, da:])], 1)
    return basis(spec, s)                           # B-spline


# --------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------

class ManifoldDense(nn.Module):
    """act(W(s) x + b(s)) with W(s) = sum_k c_k(s) P_k: control_points
    (K, out, in) and bias (K, out) are the parameters."""

    def __init__(self, control_points: Tensor, bias: Tensor, act: int) -> None:
        super().__init__()
        self.control_points = nn.Parameter(control_points)
        self.bias = nn.Parameter(bias)
        self.act = int(act)
        self.k, self.n_out, self.n_in = (int(v) for v in control_points.shape)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h (n, in), c (n, K) -> (n, out)."""
        k, out, n_in = self.k, self.n_out, self.n_in
        if h.dim() > 2:
            h = h.flatten(1)                        # CHW, as the library flattens
        if k == 1:
            z = F.linear(h, self.control_points[0], self.bias[0])
        else:                                       # sum_k c_k (P_k h + b_k)
            z = (h @ self.control_points.reshape(k * out, n_in).t()).reshape(-1, k, out)
            z = (c[:, :, None] * z).sum(1) + c @ self.bias
        return _ACTIVATIONS[self.act](z)

    def extra_repr(self) -> str:
        k, out, n_in = self.control_points.shape
        return f"{n_in} -> {out}, K={k}, act={_format.ACTIVATIONS[self.act]}"


class ManifoldConv2d(nn.Module):
    """A convolution whose kernels live on the manifold: control_points
    (K, out, in, k, k) in PyTorch's order and bias (K, out)."""

    def __init__(self, control_points: Tensor, bias: Tensor, stride: int, pad: int,
                 act: int) -> None:
        super().__init__()
        self.control_points = nn.Parameter(control_points)
        self.bias = nn.Parameter(bias)
        self.stride, self.pad, self.act = int(stride), int(pad), int(act)
        self.k, self.n_out = int(control_points.shape[0]), int(control_points.shape[1])

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h (n, in, H, W), c (n, K) -> (n, out, H', W')."""
        k, out = self.k, self.n_out
        if k == 1:
            z = F.conv2d(h, self.control_points[0], self.bias[0], self.stride, self.pad)
        else:                                       # the K basis kernels stacked, then mixed
            w = self.control_points.reshape(k * out, *self.control_points.shape[2:])
            z = F.conv2d(h, w, None, self.stride, self.pad)
            z = z.reshape(z.shape[0], k, out, z.shape[2], z.shape[3])
            z = (c[:, :, None, None, None] * z).sum(1) + (c @ self.bias)[:, :, None, None]
        return _ACTIVATIONS[self.act](z)

    def extra_repr(self) -> str:
        k, out, n_in, ks = self.control_points.shape[:4]
        return (f"{n_in} -> {out}, kernel={ks}, stride={self.stride}, pad={self.pad}, K={k}, "
                f"act={_format.ACTIVATIONS[self.act]}")


class Pool2d(nn.Module):
    """Max or average pooling over size x size windows, stride size, no padding."""

    def __init__(self, kind: str, size: int) -> None:
        super().__init__()
        self.kind, self.size = kind, int(size)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        pool = F.max_pool2d if self.kind == "maxpool" else F.avg_pool2d
        return pool(h, self.size, self.size)

    def extra_repr(self) -> str:
        return f"{self.kind}, size={self.size}"


class ManifoldNorm(nn.Module):
    """layernorm, groupnorm or FiLM with a gain g(s) and bias b(s) on the
    manifold: control_points (K, rows) are the gains' control points, bias
    (K, rows) the biases'; rows is one per feature (layernorm, FiLM on
    features) or one per channel (groupnorm, FiLM on images).
        layernorm  y = layer_norm(x over all its features) * g(s) + b(s)
        groupnorm  y = group_norm(x, groups) * g(s) + b(s)     per channel
        film       y = g(s) * x + b(s)
    eps 1e-5, the biased variance, as the library."""

    def __init__(self, kind: str, control_points: Tensor, bias: Tensor, groups: int = 0,
                 per_channel: bool = False) -> None:
        super().__init__()
        self.kind, self.groups, self.per_channel = kind, int(groups), bool(per_channel)
        self.control_points = nn.Parameter(control_points)
        self.bias = nn.Parameter(bias)
        self.k, self.rows = (int(v) for v in control_points.shape)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        """h (n, F) or (n, C, H, W), c (n, K) -> the same shape as h."""
        if self.k == 1:                             # a point (or a concat net): c_hat = 1
            g, b = self.control_points[0][None, :], self.bias[0][None, :]
        else:
            g, b = c @ self.control_points, c @ self.bias
        if self.kind == "layernorm":
            flat = h.flatten(1)
            y = F.layer_norm(flat, flat.shape[1:], eps=1e-5) * g + b
            return y.reshape(h.shape)
        if self.per_channel:                        # groupnorm, FiLM on images
            g, b = g[:, :, None, None], b[:, :, None, None]
        if self.kind == "groupnorm":
            return F.group_norm(h, self.groups, eps=1e-5) * g + b
        return g * h + b                            # FiLM

    def extra_repr(self) -> str:
        groups = f", groups={self.groups}" if self.kind == "groupnorm" else ""
        per = ", per channel" if self.per_channel else ""
        return f"{self.kind}, rows={self.rows}, K={self.k}{groups}{per}"


class Residual(nn.Module):
    """act(h + output of layer from_layer) (-1: the net's input, without a
    concat net's context features); WManifoldModule passes that output."""

    def __init__(self, from_layer: int, act: int) -> None:
        super().__init__()
        self.from_layer, self.act = int(from_layer), int(act)

    def forward(self, h: Tensor, c: Tensor, src: Tensor) -> Tensor:
        return _ACTIVATIONS[self.act](h + src.reshape(h.shape))

    def extra_repr(self) -> str:
        return f"from_layer={self.from_layer}, act={_format.ACTIVATIONS[self.act]}"


class Dropout(nn.Module):
    """Inverted dropout with probability p in training mode (torch's mask);
    the identity in eval mode, as wm_infer."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return F.dropout(h, self.p, self.training) if self.p > 0 else h

    def extra_repr(self) -> str:
        return f"p={self.p:g}"


class GlobalAvgPool(nn.Module):
    """The mean of each channel over H x W: (n, C, H, W) -> (n, C, 1, 1)."""

    def forward(self, h: Tensor, c: Tensor) -> Tensor:
        return h.mean((2, 3), keepdim=True)


# --------------------------------------------------------------------------
# The network
# --------------------------------------------------------------------------

class WManifoldModule(nn.Module):
    """A wmanifold net in PyTorch; build it with to_torch(net).

    forward(x, s): x (n, n_inputs) (or (n, C, H, W) for an image net), s (n,
    dim) contexts ((n,) for dim 1; omitted for a point) -> (n, n_outputs),
    the same outputs as the library's wm_infer (logits under softmax CE)."""

    def __init__(self, arch: Dict[str, Any], layers: Sequence[nn.Module],
                 basis_fn: Optional[BasisFn] = None,
                 library_manifold: Optional["_wm.Manifold"] = None) -> None:
        super().__init__()
        self.arch = arch
        self.manifold = arch["manifold"]
        self.concat = arch["cond"] == int(_wm.Conditioning.CONCAT)
        self.layers = nn.ModuleList(layers)
        self._basis_fn = basis_fn
        self._library_manifold = library_manifold
        if self.concat and self.manifold["kind"] != "custom" and self._has_custom(self.manifold):
            raise ValueError("a concat net on a product with a custom factor is not supported")
        self._any_periodic = any(self.manifold["periodic"])
        # the outputs a residual reads later (-1: the net's input)
        self._kept = sorted({m.from_layer for m in self.layers if isinstance(m, Residual)})
        self.register_buffer("_periodic", torch.tensor(self.manifold["periodic"], dtype=torch.bool),
                             persistent=False)

    @property
    def context_dim(self) -> int:
        """Context coordinates forward expects."""
        return int(self.manifold["dim"])

    def _contexts(self, s: Optional[Tensor], n: int, like: Tensor) -> Tensor:
        dim = self.context_dim
        if dim == 0:
            return like.new_zeros(n, 0)
        if s is None:
            raise ValueError(f"s: this net needs contexts of dim {dim}")
        s = (s if isinstance(s, Tensor) else torch.as_tensor(s)).to(like.dtype)
        s = s.reshape(-1, dim)
        if not torch.jit.is_tracing():              # a traced graph keeps s as an input
            if s.shape[0] == 1 and n != 1:
                s = s.expand(n, dim)
            if s.shape[0] != n:
                raise ValueError(f"s: expected {n} contexts of dim {dim}, got {tuple(s.shape)}")
        rng = self.manifold.get("range")
        if rng is not None:                         # the user's units to the basis' [0, 1]
            lo = torch.tensor([a for a, _ in rng], dtype=torch.float64, device=s.device)
            hi = torch.tensor([b for _, b in rng], dtype=torch.float64, device=s.device)
            s = ((s.to(torch.float64) - lo) / (hi - lo)).to(s.dtype)
        if self._any_periodic:                      # wrap periodic coordinates into [0, 1)
            wrapped = s - torch.floor(s)
            wrapped = torch.where(wrapped >= 1, torch.zeros_like(wrapped), wrapped)
            s = torch.where(self._periodic.to(s.device)[None, :], wrapped, s)
        return s

    def basis(self, s: Tensor) -> Tensor:
        """c(s), (n, K), for wrapped contexts s (n, dim); a manifold with a
        custom part uses the basis= given to to_torch, else the library."""
        if not self._has_custom(self.manifold):
            return basis(self.manifold, s)
        if self._basis_fn is not None:
            return self._basis_fn(s)
        m = self._library_manifold                  # by the library: no gradient in s
        rows = [m.basis(row) for row in s.detach().cpu().numpy()]
        return torch.as_tensor(np.stack(rows), dtype=s.dtype, device=s.device)

    @staticmethod
    def _has_custom(spec: Dict[str, Any]) -> bool:
        if spec["kind"] == "custom":
            return True
        return spec["kind"] == "product" and (WManifoldModule._has_custom(spec["a"])
                                              or WManifoldModule._has_custom(spec["b"]))

    def forward(self, x: Tensor, s: Optional[Tensor] = None) -> Tensor:
        """Outputs (n, n_outputs) for inputs x and contexts s."""
        params = list(self.parameters())
        dtype = params[0].dtype if params else torch.float32
        x = (x if isinstance(x, Tensor) else torch.as_tensor(x)).to(dtype)
        n = x.shape[0]
        s = self._contexts(s, n, x)
        shape = self.arch["input_shape"]
        h = x.reshape(n, *shape) if shape is not None else x.reshape(n, -1)
        kept: Dict[int, Tensor] = {-1: h} if -1 in self._kept else {}
        if self.concat:
            # a custom basis's features are its values
            f = self.basis(s) if self.manifold["kind"] == "custom" else features(self.manifold, s)
            c = x.new_ones(n, 1)
            if h.dim() == 4 and self.arch["layers"][0]["kind"] != "dense":
                f = f[:, :, None, None].expand(n, f.shape[1], h.shape[2], h.shape[3])
                h = torch.cat([h, f.to(h.dtype)], 1)
            else:
                h = torch.cat([h.flatten(1), f.to(h.dtype)], 1)
        else:
            c = self.basis(s).to(h.dtype)
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Residual):
                h = layer(h, c, kept[layer.from_layer])
            else:
                h = layer(h, c)
            if i in self._kept:
                kept[i] = h
        return h

    def copy_to(self, net: "_wm.Net") -> None:
        """Write the (fine-tuned) control points back into net, a net of the
        same architecture (e.g. the one this module came from)."""
        k_layers = [(i, m) for i, m in enumerate(self.layers) if hasattr(m, "control_points")]
        for i, m in k_layers:
            p = m.control_points.detach().cpu().to(torch.float32).numpy()
            b = m.bias.detach().cpu().to(torch.float32).numpy()
            for k in range(p.shape[0]):
                net.set_control_point(i, k, p[k].reshape(p.shape[1], -1), b[k])

    def extra_repr(self) -> str:
        return (f"manifold={_format.describe_manifold(self.manifold)}, "
                f"cond={'concat' if self.concat else 'manifold'}")


def to_torch(net: "_wm.Net", basis: Optional[BasisFn] = None,
             dtype: torch.dtype = torch.float32) -> WManifoldModule:
    """The initialised wmanifold net `net` as a torch.nn.Module with the same
    outputs (float32 rounding aside). basis: for a manifold with a custom
    part, the whole manifold's c(s) in torch operations, (n, dim) -> (n, K)
    (without it the library evaluates c(s): not differentiable in s, not
    exportable); dtype: of the parameters."""
    arch = net.architecture()
    spec = arch["manifold"]
    concat = arch["cond"] == int(_wm.Conditioning.CONCAT)
    layers: List[nn.Module] = []
    for i, layer in enumerate(arch["layers"]):
        kind = layer["kind"]
        if kind in ("maxpool", "avgpool"):
            layers.append(Pool2d(kind, layer["size"]))
            continue
        if kind == "residual":
            layers.append(Residual(layer["from_layer"], layer["act"]))
            continue
        if kind == "dropout":
            layers.append(Dropout(layer["p"]))
            continue
        if kind == "global_avgpool":
            layers.append(GlobalAvgPool())
            continue
        if kind not in ("dense", "conv2d") + _format.NORM_KINDS:
            raise NotImplementedError(f"wmanifold.torch: layer kind {kind} is not exported")
        # a layer kept at one point (format 2's placement 0) has K = 1
        k = 1 if concat or not layer.get("manifold", 1) else spec["K"]
        info = net.layer_info(i)
        cps = [net.control_point(i, kk) for kk in range(k)]
        p = torch.tensor(np.stack([w for w, _ in cps]), dtype=dtype)
        b = torch.tensor(np.stack([bb for _, bb in cps]), dtype=dtype)
        if kind in _format.NORM_KINDS:
            layers.append(ManifoldNorm(kind, p.reshape(k, -1), b, layer.get("groups", 0),
                                       kind != "layernorm" and _format.image_hw(arch, i) is not None))
        elif kind == "dense":
            layers.append(ManifoldDense(p, b, layer["act"]))
        else:
            ks = layer["kernel"]
            p = p.reshape(k, info.n_out, info.n_in // (ks * ks), ks, ks)
            layers.append(ManifoldConv2d(p, b, layer["stride"], layer["pad"], layer["act"]))
    library_manifold = None
    if WManifoldModule._has_custom(spec) and basis is None:
        library_manifold = net.manifold.clone()
    return WManifoldModule(arch, layers, basis, library_manifold).to(dtype)
