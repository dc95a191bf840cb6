"""Reading the architecture from a model file's header (docs/model-format.md).

The C API describes a net only by sizes (wm_net_layer_info); the kinds of its
layers and manifold are in the file wm_net_save writes. wmanifold.torch and
Net's repr use this reader; it does not check the CRC or the parameters (the
library does, when it loads the file).
"""

from __future__ import annotations

import struct
from typing import Any, Dict, List, Optional, Tuple

MAGIC = b"WMNF"
VERSIONS = (1, 2, 3)

ACTIVATIONS = ("none", "relu", "tanh", "sigmoid")
LAYER_KINDS = ("dense", "conv2d", "maxpool", "avgpool", "residual", "layernorm", "groupnorm", "film",
               "dropout", "global_avgpool")
MANIFOLD_KINDS = ("point", "line", "fourier", "bspline", "product", "custom")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self.data, self.pos, self.what = data, 0, what

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise ValueError(f"{self.what}: the model header is truncated")
        (v,) = struct.unpack_from("<I", self.data, self.pos)
        self.pos += 4
        return v


def _manifold(r: _Reader, depth: int = 0) -> Dict[str, Any]:
    if depth > 32:
        raise ValueError(f"{r.what}: products nest too deeply")
    kind = r.u32()
    if kind >= len(MANIFOLD_KINDS):
        raise ValueError(f"{r.what}: unknown manifold kind {kind}")
    m: Dict[str, Any] = {"kind": MANIFOLD_KINDS[kind], "dim": r.u32(), "K": r.u32()}
    if m["dim"] > 16:
        raise ValueError(f"{r.what}: manifold dim {m['dim']} out of range")
    m["periodic"] = [bool(r.u32()) for _ in range(m["dim"])]
    if m["kind"] == "fourier":
        m["harmonics"] = r.u32()
    elif m["kind"] == "bspline":
        m["n_control"], m["degree"], m["closed"] = r.u32(), r.u32(), bool(r.u32())
    elif m["kind"] == "product":
        m["a"] = _manifold(r, depth + 1)
        m["b"] = _manifold(r, depth + 1)
    return m


RANGED_TAG = 6  # contexts in the user's units (wm_net_set_context_range)


def _net_manifold(r: _Reader) -> Dict[str, Any]:
    """The net's manifold; a ranged record around it gives "range": a list
    of (lo, hi) per coordinate (absent: [0, 1] each)."""
    start = r.pos
    if r.u32() != RANGED_TAG:
        r.pos = start
        return _manifold(r)
    dim, _k = r.u32(), r.u32()
    if dim > 16:
        raise ValueError(f"{r.what}: manifold dim {dim} out of range")
    for _ in range(dim):
        r.u32()
    ranges = []
    for _ in range(dim):
        lo, hi = r.u32(), r.u32()
        ranges.append(struct.unpack("<ff", struct.pack("<II", lo, hi)))
    m = _manifold(r)
    m["range"] = [(float(lo), float(hi)) for lo, hi in ranges]
    return m


def parse_header(data: bytes, what: str = "model file") -> Dict[str, Any]:
    """The architecture in a model file's bytes: a dict with manifold (kind,
    dim, K, periodic and the kind's fields; products: a and b), cond (0
    manifold, 1 concat), n_inputs, input_shape ((c, h, w) or None), loss
    (0 softmax CE, 1 MSE) and layers (dicts with kind and its fields); a
    version-3 file (a net with a dropout layer) adds seed, the wm_net_init
    seed that selects the dropout masks (older files load with seed 0).
    Raises ValueError on a file it cannot read."""
    if data[:4] != MAGIC:
        raise ValueError(f"{what}: not a libwmanifold model file")
    r = _Reader(data, what)
    r.pos = 4
    version = r.u32()
    if version not in VERSIONS:
        raise ValueError(f"{what}: model format version {version}; this binding reads "
                         f"version {', '.join(map(str, VERSIONS))}")
    header_bytes = r.u32()
    end = r.pos + header_bytes
    if end > len(data):
        raise ValueError(f"{what}: the model header is truncated")
    r.data = data[:end]
    arch: Dict[str, Any] = {"manifold": _net_manifold(r), "cond": r.u32(), "n_inputs": r.u32()}
    shape = (r.u32(), r.u32(), r.u32())
    arch["input_shape"] = None if shape == (0, 0, 0) else shape
    arch["loss"] = r.u32()
    layers: List[Dict[str, Any]] = []
    for _ in range(r.u32()):
        kind = r.u32()
        if kind >= len(LAYER_KINDS):
            raise ValueError(f"{what}: unknown layer kind {kind}")
        layer: Dict[str, Any] = {"kind": LAYER_KINDS[kind]}
        if version >= 2:                    # 1: on the net's manifold, 0: one point
            layer["manifold"] = r.u32()
        if layer["kind"] == "dense":
            layer["out"], layer["act"] = r.u32(), r.u32()
        elif layer["kind"] == "conv2d":
            layer["out"], layer["kernel"], layer["stride"], layer["pad"], layer["act"] = (
                r.u32() for _ in range(5))
        elif layer["kind"] == "residual":
            layer["from_layer"], layer["act"] = r.u32() - 1, r.u32()
        elif layer["kind"] == "groupnorm":
            layer["groups"] = r.u32()
        elif layer["kind"] == "dropout":
            (layer["p"],) = struct.unpack("<f", struct.pack("<I", r.u32()))
        elif layer["kind"] in ("maxpool", "avgpool"):
            layer["size"] = r.u32()
        layers.append(layer)
    arch["layers"] = layers
    if version >= 3:
        arch["seed"] = r.u32() | r.u32() << 32
    return arch


def describe_manifold(m: Dict[str, Any]) -> str:
    """A short name: point, line, circle, fourier(2), bspline(6, 3),
    bspline(6, 3, periodic), product(circle, circle), custom(dim 2, K 5)."""
    kind = m["kind"]
    if kind == "fourier":
        return "circle" if m["harmonics"] == 1 else f"fourier({m['harmonics']})"
    if kind == "bspline":
        return f"bspline({m['n_control']}, {m['degree']}{', periodic' if m['closed'] else ''})"
    if kind == "product":
        return f"product({describe_manifold(m['a'])}, {describe_manifold(m['b'])})"
    if kind == "custom":
        return f"custom(dim {m['dim']}, K {m['K']})"
    return kind


def describe_layer(layer: Dict[str, Any]) -> str:
    """dense(16, tanh), conv2d(8, 3, stride=1, pad=1, relu), maxpool(2),
    residual(-1, relu), groupnorm(4), dropout(0.1), layernorm()."""
    kind = layer["kind"]
    act = layer.get("act")
    act_s = "" if not act else f", {ACTIVATIONS[act] if act < len(ACTIVATIONS) else act}"
    if kind == "dense":
        return f"dense({layer['out']}{act_s})"
    if kind == "conv2d":
        return (f"conv2d({layer['out']}, {layer['kernel']}, stride={layer['stride']}, "
                f"pad={layer['pad']}{act_s})")
    if kind == "residual":
        return f"residual({layer['from_layer']}{act_s})"
    if kind == "groupnorm":
        return f"groupnorm({layer['groups']})"
    if kind == "dropout":
        return f"dropout({layer['p']:g})"
    if "size" in layer:
        return f"{kind}({layer['size']})"
    return f"{kind}()"


def conv_output(shape: Tuple[int, int, int], layer: Dict[str, Any]) -> Tuple[int, int, int]:
    """The (c, h, w) after a conv or pooling layer (as the library computes it)."""
    c, h, w = shape
    if layer["kind"] == "conv2d":
        k, st, p = layer["kernel"], layer["stride"], layer["pad"]
        return layer["out"], (h + 2 * p - k) // st + 1, (w + 2 * p - k) // st + 1
    size = layer["size"]
    return c, h // size, w // size


NORM_KINDS = ("layernorm", "groupnorm", "film")  # w is a vector: a gain or scale per row


def image_hw(arch: Dict[str, Any], upto: int) -> Optional[Tuple[int, int]]:
    """The (h, w) of the output of the first `upto` layers (the net's input
    for 0) when it is an image, else None."""
    shape = arch["input_shape"]
    for layer in arch["layers"][:upto]:
        kind = layer["kind"]
        if kind == "dense":
            shape = None
        elif kind in ("conv2d", "maxpool", "avgpool"):
            shape = conv_output(shape, layer)
        elif kind == "global_avgpool":
            shape = (shape[0], 1, 1)
    return None if shape is None else (shape[1], shape[2])


def norm_rows(arch: Dict[str, Any], layer: int, features: int) -> int:
    """The gains (and biases) of a layernorm, groupnorm or FiLM layer whose
    input has `features` values per sample: one per feature for layernorm,
    one per channel for groupnorm and, on images, FiLM."""
    if arch["layers"][layer]["kind"] == "layernorm":
        return features
    hw = image_hw(arch, layer)
    return features // (hw[0] * hw[1]) if hw else features
