"""wmanifold -- a ctypes binding of libwmanifold (include/wmanifold.h).

Neural networks whose weights live on a manifold over a task context s:
W(s) = sum_k c_k(s) P_k (Benjamin et al. 2025, arXiv 2505.22994).

Every function of the C API is reachable from here:

    import numpy as np, wmanifold as wm
    with wm.Manifold.circle() as m, wm.Net(m, n_inputs=2) as net:
        net.dense(16, wm.Activation.TANH).dense(2)
        net.init(seed=1)
        with wm.Optimizer(net, kind=wm.OptKind.ADAM, lr=1e-2) as opt:
            loss = opt.step(x, s, labels=y)        # x (n,2) s (n,) y (n,)
        logits = net.infer(x, s)                   # (n, 2) float32

Conventions:
  * Arrays go in and come out as numpy arrays, float32 (labels int32),
    C-contiguous. An input that already has that layout is passed to C as is,
    without a copy; anything else is converted once (np.ascontiguousarray).
  * A failing C call raises WmError, whose .status is the wm_status and whose
    message is wm_last_error()'s text. Arrays of the wrong shape are caught
    before C sees them (C trusts the sizes) and raise ValueError.
  * Handles (Manifold, Net, Optimizer) are freed deterministically by close()
    or a `with` block; garbage collection is only the fallback. An Optimizer
    keeps its Net alive; closing a Net first closes its optimizers, because
    the C library forbids using them after the net is gone.
  * Views returned with copy=False (params, grad_buffer) point into C memory
    and are only valid while their handle is open.

The shared library is found through the WMANIFOLD_LIB environment variable,
else ../../lib/libwmanifold.so next to this file (the build tree), else the
system search path (ctypes.util.find_library("wmanifold")).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import enum
import os
import weakref
from collections import namedtuple

import numpy as np

__all__ = [
    "Status", "Activation", "Loss", "Conditioning", "ConvStrategy", "OptKind", "WmError",
    "OptConfig", "Batch", "BASIS_FN", "LayerInfo", "Manifold", "Net", "Optimizer",
    "status_str", "last_error", "version", "opt_default", "lib_path",
]

# --------------------------------------------------------------------------
# Enums (values fixed by the C header)
# --------------------------------------------------------------------------


class Status(enum.IntEnum):
    OK = 0
    EINVAL = 1
    ENOMEM = 2
    EIO = 3
    EFORMAT = 4
    ENUMERIC = 5
    ESTATE = 6


class Activation(enum.IntEnum):
    NONE = 0
    RELU = 1
    TANH = 2
    SIGMOID = 3


class Loss(enum.IntEnum):
    SOFTMAX_CE = 0
    MSE = 1


class Conditioning(enum.IntEnum):
    MANIFOLD = 0
    CONCAT = 1


class ConvStrategy(enum.IntEnum):
    AUTO = 0
    STACKED = 1
    MATERIALISED = 2


class OptKind(enum.IntEnum):
    SD = 0
    MOMENTUM = 1
    ADAM = 2


class WmError(Exception):
    """A libwmanifold call failed: .status (Status) and .message (wm_last_error)."""

    def __init__(self, status, message):
        try:
            status = Status(status)
        except ValueError:  # a status newer than this binding: keep the number
            pass
        self.status = status
        self.message = message
        name = status.name if isinstance(status, Status) else str(status)
        super().__init__(f"{name}: {message}" if message else name)


# --------------------------------------------------------------------------
# C types
# --------------------------------------------------------------------------

_c_float_p = ctypes.POINTER(ctypes.c_float)
_c_double_p = ctypes.POINTER(ctypes.c_double)
_c_int32_p = ctypes.POINTER(ctypes.c_int32)
_c_int_p = ctypes.POINTER(ctypes.c_int)
_c_size_p = ctypes.POINTER(ctypes.c_size_t)
_handle = ctypes.c_void_p            # opaque wm_manifold* / wm_net* / wm_optimizer*
_handle_out = ctypes.POINTER(ctypes.c_void_p)
_status = ctypes.c_int               # C enums are int-sized on every ABI we target

#: void (*wm_basis_fn)(const float *s, float *c, void *user)
BASIS_FN = ctypes.CFUNCTYPE(None, _c_float_p, _c_float_p, ctypes.c_void_p)


class OptConfig(ctypes.Structure):
    """wm_opt_config. Start from opt_default(kind) and change fields."""

    _fields_ = [
        ("kind", ctypes.c_int),
        ("lr", ctypes.c_float),
        ("volume", ctypes.c_float),
        ("momentum", ctypes.c_float),
        ("beta1", ctypes.c_float),
        ("beta2", ctypes.c_float),
        ("eps", ctypes.c_float),
        ("weight_decay", ctypes.c_float),
    ]

    def as_dict(self):
        return {name: getattr(self, name) for name, _ in self._fields_}

    def __repr__(self):
        d = self.as_dict()
        try:
            d["kind"] = OptKind(d["kind"]).name
        except ValueError:
            pass
        return "OptConfig(" + ", ".join(f"{k}={v!r}" for k, v in d.items()) + ")"


class Batch(ctypes.Structure):
    """wm_batch; built for you by Optimizer.step/grad and Net.evaluate."""

    _fields_ = [
        ("n", ctypes.c_int),
        ("x", _c_float_p),
        ("s", _c_float_p),
        ("labels", _c_int32_p),
        ("targets", _c_float_p),
    ]


LayerInfo = namedtuple("LayerInfo", "n_in n_out activation")

# --------------------------------------------------------------------------
# Loading the library and declaring every function of the header
# --------------------------------------------------------------------------

# name -> (restype, argtypes), in header order. Tests check this table against
# the header, so a function added to the C API without a binding is noticed.
_PROTOTYPES = {
    "wm_status_str": (ctypes.c_char_p, [ctypes.c_int]),
    "wm_last_error": (ctypes.c_char_p, []),
    "wm_version": (ctypes.c_char_p, []),
    "wm_manifold_point": (_status, [_handle_out]),
    "wm_manifold_line": (_status, [_handle_out]),
    "wm_manifold_circle": (_status, [_handle_out]),
    "wm_manifold_fourier": (_status, [_handle_out, ctypes.c_int]),
    "wm_manifold_bspline": (_status, [_handle_out, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "wm_manifold_product": (_status, [_handle_out, _handle, _handle]),
    "wm_manifold_custom": (_status, [_handle_out, ctypes.c_int, ctypes.c_int, _c_int_p,
                                     BASIS_FN, ctypes.c_void_p]),
    "wm_manifold_clone": (_status, [_handle_out, _handle]),
    "wm_manifold_dim": (ctypes.c_int, [_handle]),
    "wm_manifold_n_basis": (ctypes.c_int, [_handle]),
    "wm_manifold_periodic": (ctypes.c_int, [_handle, ctypes.c_int]),
    "wm_manifold_basis": (_status, [_handle, _c_float_p, _c_float_p]),
    "wm_manifold_gram": (_status, [_handle, _c_double_p]),
    "wm_manifold_free": (None, [_handle]),
    "wm_net_create": (_status, [_handle_out, _handle, ctypes.c_int, ctypes.c_int]),
    "wm_net_dense": (_status, [_handle, ctypes.c_int, ctypes.c_int]),
    "wm_net_input_shape": (_status, [_handle, ctypes.c_int, ctypes.c_int, ctypes.c_int]),
    "wm_net_conv2d": (_status, [_handle, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                ctypes.c_int]),
    "wm_net_maxpool": (_status, [_handle, ctypes.c_int]),
    "wm_net_avgpool": (_status, [_handle, ctypes.c_int]),
    "wm_net_set_conv_strategy": (_status, [_handle, ctypes.c_int]),
    "wm_net_set_loss": (_status, [_handle, ctypes.c_int]),
    "wm_net_init": (_status, [_handle, ctypes.c_uint64]),
    "wm_net_n_inputs": (ctypes.c_int, [_handle]),
    "wm_net_n_outputs": (ctypes.c_int, [_handle]),
    "wm_net_n_layers": (ctypes.c_int, [_handle]),
    "wm_net_n_params": (ctypes.c_size_t, [_handle]),
    "wm_net_context_dim": (ctypes.c_int, [_handle]),
    "wm_net_manifold": (_handle, [_handle]),
    "wm_net_layer_info": (_status, [_handle, ctypes.c_int, _c_int_p, _c_int_p, _c_int_p]),
    "wm_infer": (_status, [_handle, _c_float_p, _c_float_p, ctypes.c_int, _c_float_p]),
    "wm_infer_workspace_size": (ctypes.c_size_t, [_handle, ctypes.c_int]),
    "wm_infer_ws": (_status, [_handle, _c_float_p, _c_float_p, ctypes.c_int, _c_float_p,
                              ctypes.c_void_p, ctypes.c_size_t]),
    "wm_net_weights_at": (_status, [_handle, ctypes.c_int, _c_float_p, _c_float_p, _c_float_p]),
    "wm_net_control_point": (_status, [_handle, ctypes.c_int, ctypes.c_int, _c_float_p,
                                       _c_float_p]),
    "wm_net_set_control_point": (_status, [_handle, ctypes.c_int, ctypes.c_int, _c_float_p,
                                           _c_float_p]),
    "wm_net_params": (_c_float_p, [_handle, _c_size_p]),
    "wm_net_set_params": (_status, [_handle, _c_float_p, ctypes.c_size_t]),
    "wm_net_save": (_status, [_handle, ctypes.c_char_p]),
    "wm_net_load": (_status, [_handle_out, ctypes.c_char_p]),
    "wm_net_load_custom": (_status, [_handle_out, ctypes.c_char_p, BASIS_FN, ctypes.c_void_p]),
    "wm_net_free": (None, [_handle]),
    "wm_opt_default": (OptConfig, [ctypes.c_int]),
    "wm_optimizer_create": (_status, [_handle_out, _handle, ctypes.POINTER(OptConfig)]),
    "wm_step": (_status, [_handle, ctypes.POINTER(Batch), _c_float_p]),
    "wm_grad": (_status, [_handle, ctypes.POINTER(Batch), _c_float_p]),
    "wm_grad_buffer": (_c_float_p, [_handle, _c_size_p]),
    "wm_apply": (_status, [_handle]),
    "wm_optimizer_steps": (ctypes.c_uint64, [_handle]),
    "wm_evaluate": (_status, [_handle, ctypes.POINTER(Batch), _c_float_p, _c_float_p]),
    "wm_infer_context": (_status, [_handle, _c_float_p, _c_int32_p, ctypes.c_int, _c_float_p]),
    "wm_optimizer_save": (_status, [_handle, ctypes.c_char_p]),
    "wm_optimizer_load": (_status, [_handle_out, _handle_out, ctypes.c_char_p, BASIS_FN,
                                    ctypes.c_void_p]),
    "wm_optimizer_free": (None, [_handle]),
}


def _find_library():
    env = os.environ.get("WMANIFOLD_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    local = os.path.normpath(os.path.join(here, "..", "..", "lib", "libwmanifold.so"))
    if os.path.exists(local):
        return local
    found = ctypes.util.find_library("wmanifold")
    if found:
        return found
    raise OSError("libwmanifold not found: build it (make) or set WMANIFOLD_LIB "
                  "to the path of libwmanifold.so")


def _load(path):
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, name)  # AttributeError here means an ABI mismatch
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


#: the path the library was loaded from
lib_path = _find_library()
# Every call goes through this module global (not a captured function), so a
# test can swap in a recording proxy.
_lib = _load(lib_path)

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _check(status):
    if status != Status.OK:
        raise WmError(status, _lib.wm_last_error().decode("utf-8", "replace"))


def _ptr(arr, ctype=_c_float_p):
    return None if arr is None else arr.ctypes.data_as(ctype)


def _as_array(a, dtype, shape, what):
    """a as a C-contiguous array of dtype and shape; a copy only if needed.
    A flat (or scalar) input of the right size is accepted too; another
    shape is an error even with the right size (a transposed matrix)."""
    arr = np.ascontiguousarray(a, dtype=dtype)
    if arr.shape != shape:
        if arr.ndim > 1 or arr.size != int(np.prod(shape)):
            raise ValueError(f"{what}: expected shape {shape}, got {np.shape(a)}")
        arr = arr.reshape(shape)  # contiguous, so a view
    return arr


def _out_array(out, dtype, shape, what):
    """An output buffer: a new array, or the caller's if it fits exactly
    (an output cannot be converted without losing the result)."""
    if out is None:
        return np.empty(shape, dtype=dtype)
    if (not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape
            or not out.flags.c_contiguous or not out.flags.writeable):
        raise ValueError(f"{what}: needs a writeable C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {shape}")
    return out


def _view(ptr, n, owner, copy, writeable):
    """numpy array over n floats of C memory; the view keeps owner referenced."""
    if not ptr:
        raise WmError(Status.ESTATE, "no buffer (net not initialised?)")
    buf = (ctypes.c_float * n).from_address(ctypes.addressof(ptr.contents))
    if copy:
        return np.array(buf, dtype=np.float32, copy=True)
    buf._owner = owner  # keeps the Python handle (not the C memory) alive
    arr = np.frombuffer(buf, dtype=np.float32)
    arr.flags.writeable = writeable
    return arr


def _basis_callback(fn, dim, n_basis):
    """Wrap a Python basis fn(s) -> K values as a wm_basis_fn.

    Exceptions cannot cross C; the trampoline writes NaN instead, which the
    library rejects (WM_EINVAL), and keeps the exception to chain onto the
    WmError."""
    if isinstance(fn, ctypes._CFuncPtr):  # already a C function: pass through
        return ctypes.cast(fn, BASIS_FN), []
    if not callable(fn):
        raise TypeError("basis must be callable or a ctypes wm_basis_fn")
    if dim is None or n_basis is None:
        raise ValueError("a Python basis function needs dim and n_basis")
    dim, n_basis = int(dim), int(n_basis)
    errors = []
    nbytes = 4 * n_basis

    def trampoline(s_ptr, c_ptr, _user):
        try:
            s = np.array(s_ptr[:dim], dtype=np.float32)
            c = np.ascontiguousarray(fn(s), dtype=np.float32)
            if c.size != n_basis:
                raise ValueError(f"basis returned {c.size} values, expected {n_basis}")
            ctypes.memmove(c_ptr, c.ctypes.data, nbytes)
        except BaseException as e:  # noqa: BLE001 -- nothing may unwind into C
            nan = np.full(n_basis, np.nan, dtype=np.float32)
            ctypes.memmove(c_ptr, nan.ctypes.data, nbytes)
            if not errors:
                errors.append(e)

    return BASIS_FN(trampoline), errors


def _check_cb(status, errors):
    """_check, chaining the basis callback's exception if it raised one."""
    try:
        _check(status)
    except WmError as e:
        if errors:
            raise e from errors[0]
        raise
    if errors:  # the library accepted the call, but Python code failed: say so
        raise errors[0]


def _create(fn_name, *args):
    out = ctypes.c_void_p()
    _check(getattr(_lib, fn_name)(ctypes.byref(out), *args))
    return out.value

# --------------------------------------------------------------------------
# Library-wide functions
# --------------------------------------------------------------------------


def status_str(status):
    """wm_status_str: a short constant description of a status."""
    return _lib.wm_status_str(int(status)).decode()


def last_error():
    """wm_last_error: this thread's most recent failure, in words."""
    return _lib.wm_last_error().decode("utf-8", "replace")


def version():
    """wm_version: "MAJOR.MINOR.PATCH"."""
    return _lib.wm_version().decode()


def opt_default(kind=OptKind.SD):
    """wm_opt_default: the default OptConfig for an optimizer kind."""
    return _lib.wm_opt_default(int(kind))

# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------


class _Handle:
    _free_fn = None  # name of the C function that releases this handle
    # Defaults so that close()/__del__ are harmless on an object whose
    # constructor raised before _Handle.__init__ ran.
    _ptr = None
    _owned = False
    _children = ()

    def __init__(self, ptr, owned=True, keep=(), parent=None):
        self._ptr = ptr
        self._owned = owned
        self._keep = tuple(keep)      # basis callbacks C may still call
        self._parent = parent         # keeps a borrowed handle's owner alive
        self._children = weakref.WeakSet()  # handles that die with this one
        if parent is not None:
            parent._children.add(self)

    @property
    def _p(self):
        if self._ptr is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return self._ptr

    @property
    def closed(self):
        return self._ptr is None

    def close(self):
        """Release the C handle now (idempotent). Dependents close first."""
        for child in list(self._children):
            child.close()
        ptr, self._ptr = self._ptr, None
        if ptr is not None and self._owned:
            getattr(_lib, self._free_fn)(ptr)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: module globals may be gone
            pass

    def __repr__(self):
        state = "closed" if self._ptr is None else hex(self._ptr)
        return f"<wmanifold.{type(self).__name__} {state}>"


class Manifold(_Handle):
    """A basis c(s) over a context domain (wm_manifold). Build with the
    classmethods: point, line, circle, fourier, bspline, product, custom."""

    _free_fn = "wm_manifold_free"

    @classmethod
    def point(cls):
        return cls(_create("wm_manifold_point"))

    @classmethod
    def line(cls):
        return cls(_create("wm_manifold_line"))

    @classmethod
    def circle(cls):
        return cls(_create("wm_manifold_circle"))

    @classmethod
    def fourier(cls, harmonics):
        return cls(_create("wm_manifold_fourier", int(harmonics)))

    @classmethod
    def bspline(cls, n_control, degree, periodic=False):
        return cls(_create("wm_manifold_bspline", int(n_control), int(degree), int(bool(periodic))))

    @classmethod
    def product(cls, a, b):
        """A x B (torus = circle x circle); the result owns copies of a and b."""
        return cls(_create("wm_manifold_product", a._p, b._p), keep=a._keep + b._keep)

    @classmethod
    def custom(cls, fn, dim, n_basis, periodic=None, user=None):
        """Your own basis: fn(s) gets a float32 array of dim context coordinates
        and returns n_basis values. fn may also be a ctypes wm_basis_fn (then
        `user` is its void* argument). periodic: dim flags, or None."""
        cb, errors = _basis_callback(fn, dim, n_basis)
        per = None
        if periodic is not None:
            per = _as_array([int(bool(p)) for p in periodic], np.intc, (int(dim),), "periodic")
        out = ctypes.c_void_p()
        st = _lib.wm_manifold_custom(ctypes.byref(out), int(dim), int(n_basis),
                                     _ptr(per, _c_int_p), cb, user)
        if st != Status.OK:
            _check_cb(st, errors)
        m = cls(out.value, keep=(cb,))
        try:
            _check_cb(Status.OK, errors)
        except BaseException:
            m.close()
            raise
        m._cb_errors = errors
        return m

    def clone(self):
        return Manifold(_create("wm_manifold_clone", self._p), keep=self._keep)

    @property
    def dim(self):
        return _lib.wm_manifold_dim(self._p)

    @property
    def n_basis(self):
        return _lib.wm_manifold_n_basis(self._p)

    def periodic(self, d):
        r = _lib.wm_manifold_periodic(self._p, int(d))
        if r < 0:
            raise ValueError(f"context coordinate {d} out of range for dim {self.dim}")
        return bool(r)

    def _context(self, s):
        dim = self.dim
        if dim == 0 and s is None:
            return None
        return _as_array(s, np.float32, (dim,), "context s")

    def basis(self, s=None):
        """The paper's c(s) at one context: (K,) float32."""
        s = self._context(s)
        c = np.empty(self.n_basis, dtype=np.float32)
        _check(_lib.wm_manifold_basis(self._p, _ptr(s), _ptr(c)))
        return c

    def gram(self):
        """The Gram matrix G, (K, K) float64."""
        k = self.n_basis
        g = np.empty((k, k), dtype=np.float64)
        _check(_lib.wm_manifold_gram(self._p, _ptr(g, _c_double_p)))
        return g


class Net(_Handle):
    """A network on a manifold (wm_net). Net(manifold, n_inputs, cond), then
    .dense(...) layers, optionally .set_loss(...), then .init(seed)."""

    _free_fn = "wm_net_free"

    def __init__(self, manifold, n_inputs, cond=Conditioning.MANIFOLD):
        ptr = _create("wm_net_create", manifold._p, int(n_inputs), int(cond))
        # The net copies the manifold, callback pointer included: keep it alive.
        super().__init__(ptr, keep=manifold._keep)

    @classmethod
    def _wrap(cls, ptr, keep=()):
        net = cls.__new__(cls)
        _Handle.__init__(net, ptr, keep=keep)
        return net

    # ---- building
    def dense(self, n_outputs, act=Activation.NONE):
        _check(_lib.wm_net_dense(self._p, int(n_outputs), int(act)))
        return self

    def input_shape(self, channels, height, width):
        """Rows of x are CHW images; call before the first layer."""
        _check(_lib.wm_net_input_shape(self._p, int(channels), int(height), int(width)))
        return self

    def conv2d(self, out_channels, kernel, stride=1, pad=0, act=Activation.NONE):
        """Append a 2-D convolution (weights on the manifold)."""
        _check(_lib.wm_net_conv2d(self._p, int(out_channels), int(kernel), int(stride),
                                  int(pad), int(act)))
        return self

    def maxpool(self, size):
        _check(_lib.wm_net_maxpool(self._p, int(size)))
        return self

    def avgpool(self, size):
        _check(_lib.wm_net_avgpool(self._p, int(size)))
        return self

    def set_conv_strategy(self, strategy):
        """How convolutions run mixed-context batches (ConvStrategy)."""
        _check(_lib.wm_net_set_conv_strategy(self._p, int(strategy)))
        return self

    def set_loss(self, loss):
        _check(_lib.wm_net_set_loss(self._p, int(loss)))
        return self

    def init(self, seed=0):
        _check(_lib.wm_net_init(self._p, int(seed)))
        return self

    # ---- sizes
    @property
    def n_inputs(self):
        return _lib.wm_net_n_inputs(self._p)

    @property
    def n_outputs(self):
        return _lib.wm_net_n_outputs(self._p)

    @property
    def n_layers(self):
        return _lib.wm_net_n_layers(self._p)

    @property
    def n_params(self):
        return _lib.wm_net_n_params(self._p)

    @property
    def context_dim(self):
        return _lib.wm_net_context_dim(self._p)

    @property
    def manifold(self):
        """The net's own manifold, borrowed: closed when the net closes."""
        ptr = _lib.wm_net_manifold(self._p)
        if not ptr:
            raise WmError(Status.EINVAL, "net has no manifold")
        return Manifold(ptr, owned=False, keep=self._keep, parent=self)

    def layer_info(self, layer):
        n_in, n_out, act = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        _check(_lib.wm_net_layer_info(self._p, int(layer), ctypes.byref(n_in),
                                      ctypes.byref(n_out), ctypes.byref(act)))
        try:
            a = Activation(act.value)
        except ValueError:
            a = act.value
        return LayerInfo(n_in.value, n_out.value, a)

    # ---- argument shaping (C trusts sizes, so they are checked here)
    def _inputs(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"x: expected shape (n, {self.n_inputs}), got {x.shape}")
        return x

    def _contexts(self, s, n):
        """(n, dim) contexts; one context (dim values) is broadcast to all n."""
        dim = self.context_dim
        if dim == 0 and s is None:
            return None
        if s is None:
            raise ValueError(f"s: this net needs contexts of dim {dim}")
        s = np.ascontiguousarray(s, dtype=np.float32)
        if s.size == dim and n != 1:
            return np.ascontiguousarray(np.broadcast_to(s.reshape(1, dim), (n, dim)))
        return _as_array(s, np.float32, (n, dim), "s")

    def _batch(self, x, s, labels, targets):
        x = self._inputs(x)
        n = x.shape[0]
        s = self._contexts(s, n)
        lab = None if labels is None else _as_array(labels, np.int32, (n,), "labels")
        tgt = None if targets is None else _as_array(targets, np.float32,
                                                     (n, self.n_outputs), "targets")
        batch = Batch(n, _ptr(x), _ptr(s), _ptr(lab, _c_int32_p), _ptr(tgt))
        return batch, (x, s, lab, tgt)  # the arrays must outlive the C call

    # ---- inference
    def infer(self, x, s=None, out=None):
        """Outputs (n, n_outputs) float32 for inputs x (n, n_inputs) at
        contexts s (n, dim), (n,) for dim 1, or one context for all."""
        x = self._inputs(x)
        n = x.shape[0]
        s = self._contexts(s, n)
        out = _out_array(out, np.float32, (n, self.n_outputs), "out")
        _check(_lib.wm_infer(self._p, _ptr(x), _ptr(s), n, _ptr(out)))
        return out

    def infer_workspace_size(self, n):
        """Bytes of workspace infer_ws needs for batches of up to n samples."""
        return _lib.wm_infer_workspace_size(self._p, int(n))

    def infer_ws(self, x, s=None, ws=None, out=None):
        """infer with caller-owned workspace `ws` (a writeable buffer, e.g. a
        uint8 array of infer_workspace_size(n) bytes; None: allocate one)."""
        x = self._inputs(x)
        n = x.shape[0]
        s = self._contexts(s, n)
        out = _out_array(out, np.float32, (n, self.n_outputs), "out")
        if ws is None:
            ws = np.empty(max(self.infer_workspace_size(n), 1), dtype=np.uint8)
        wsa = np.frombuffer(ws, dtype=np.uint8) if not isinstance(ws, np.ndarray) else ws
        if not wsa.flags.c_contiguous or not wsa.flags.writeable:
            raise ValueError("ws: needs a writeable contiguous buffer")
        _check(_lib.wm_infer_ws(self._p, _ptr(x), _ptr(s), n, _ptr(out),
                                ctypes.c_void_p(wsa.ctypes.data), wsa.nbytes))
        return out

    def evaluate(self, x, s=None, labels=None, targets=None):
        """(mean loss, accuracy) over a batch."""
        batch, _keep = self._batch(x, s, labels, targets)
        loss, acc = ctypes.c_float(), ctypes.c_float()
        _check(_lib.wm_evaluate(self._p, ctypes.byref(batch), ctypes.byref(loss),
                                ctypes.byref(acc)))
        return loss.value, acc.value

    def infer_context(self, x, labels=None):
        """The context (dim,) float32 that best explains inputs x sharing one
        unknown context: by the labels' loss, or by prediction entropy."""
        x = self._inputs(x)
        n = x.shape[0]
        lab = None if labels is None else _as_array(labels, np.int32, (n,), "labels")
        s_out = np.zeros(max(self.context_dim, 1), dtype=np.float32)
        _check(_lib.wm_infer_context(self._p, _ptr(x), _ptr(lab, _c_int32_p), n, _ptr(s_out)))
        return s_out[:self.context_dim]

    # ---- parameters
    def weights_at(self, layer, s=None):
        """(w (n_out, n_in), b (n_out,)) of the plain layer at context s."""
        info = self.layer_info(layer)
        if s is not None:
            s = _as_array(s, np.float32, (self.context_dim,), "context s")
        w = np.empty((info.n_out, info.n_in), dtype=np.float32)
        b = np.empty(info.n_out, dtype=np.float32)
        _check(_lib.wm_net_weights_at(self._p, int(layer), _ptr(s), _ptr(w), _ptr(b)))
        return w, b

    def control_point(self, layer, k):
        """(w, b) of control point P_k of a layer, paper coordinates."""
        info = self.layer_info(layer)
        w = np.empty((info.n_out, info.n_in), dtype=np.float32)
        b = np.empty(info.n_out, dtype=np.float32)
        _check(_lib.wm_net_control_point(self._p, int(layer), int(k), _ptr(w), _ptr(b)))
        return w, b

    def set_control_point(self, layer, k, w=None, b=None):
        """Overwrite control point P_k (None keeps that part)."""
        info = self.layer_info(layer)
        w = None if w is None else _as_array(w, np.float32, (info.n_out, info.n_in), "w")
        b = None if b is None else _as_array(b, np.float32, (info.n_out,), "b")
        _check(_lib.wm_net_set_control_point(self._p, int(layer), int(k), _ptr(w), _ptr(b)))

    def params(self, copy=True):
        """All parameters in the internal orthonormal coordinates Q (the
        grad_buffer layout). copy=False: a read-only view into the net."""
        n = ctypes.c_size_t()
        ptr = _lib.wm_net_params(self._p, ctypes.byref(n))
        return _view(ptr, n.value, self, copy, writeable=False)

    def set_params(self, q):
        """Overwrite all parameters with q, in the params() layout (Q)."""
        q = np.ascontiguousarray(q, dtype=np.float32).reshape(-1)
        _check(_lib.wm_net_set_params(self._p, _ptr(q), q.size))  # C checks the length

    # ---- files
    def save(self, path):
        _check(_lib.wm_net_save(self._p, os.fsencode(path)))

    @classmethod
    def load(cls, path):
        return cls._wrap(_create("wm_net_load", os.fsencode(path)))

    @classmethod
    def load_custom(cls, path, fn, dim=None, n_basis=None, user=None):
        """Load a net saved on a custom manifold, giving its basis again
        (a Python fn needs dim and n_basis, as for Manifold.custom)."""
        cb, errors = _basis_callback(fn, dim, n_basis)
        out = ctypes.c_void_p()
        st = _lib.wm_net_load_custom(ctypes.byref(out), os.fsencode(path), cb, user)
        if st != Status.OK:
            _check_cb(st, errors)
        net = cls._wrap(out.value, keep=(cb,))
        try:
            _check_cb(Status.OK, errors)
        except BaseException:
            net.close()
            raise
        return net


class Optimizer(_Handle):
    """A training state for a net (wm_optimizer). Optimizer(net, config) or
    Optimizer(net, kind=OptKind.ADAM, lr=1e-2, ...) to override defaults."""

    _free_fn = "wm_optimizer_free"

    def __init__(self, net, config=None, kind=None, **fields):
        if config is None:
            config = opt_default(OptKind.SD if kind is None else kind)
        else:
            config = OptConfig.from_buffer_copy(config)  # never alias the caller's
            if kind is not None:
                config.kind = int(kind)
        names = {name for name, _ in OptConfig._fields_}
        for key, value in fields.items():
            if key not in names:
                raise TypeError(f"unknown optimizer setting {key!r}")
            setattr(config, key, value)
        ptr = _create("wm_optimizer_create", net._p, ctypes.byref(config))
        # parent=net: the net stays alive while we do, and closing it closes us.
        super().__init__(ptr, keep=net._keep, parent=net)
        self.net = net
        self.config = config

    def step(self, x, s=None, labels=None, targets=None):
        """One training step; returns the batch's mean loss before it."""
        batch, _keep = self.net._batch(x, s, labels, targets)
        loss = ctypes.c_float()
        _check(_lib.wm_step(self._p, ctypes.byref(batch), ctypes.byref(loss)))
        return loss.value

    def grad(self, x, s=None, labels=None, targets=None):
        """Gradient into grad_buffer() without changing the net; returns the loss."""
        batch, _keep = self.net._batch(x, s, labels, targets)
        loss = ctypes.c_float()
        _check(_lib.wm_grad(self._p, ctypes.byref(batch), ctypes.byref(loss)))
        return loss.value

    def grad_buffer(self, copy=False):
        """The gradient buffer (n_params,) float32 in Q coordinates. Default:
        a writeable view, so it can be averaged in place before apply()."""
        n = ctypes.c_size_t()
        ptr = _lib.wm_grad_buffer(self._p, ctypes.byref(n))
        return _view(ptr, n.value, self, copy, writeable=True)

    def apply(self):
        """Apply one update from the gradient buffer."""
        _check(_lib.wm_apply(self._p))

    @property
    def steps(self):
        """Updates applied so far."""
        return _lib.wm_optimizer_steps(self._p)

    def save(self, path):
        """Checkpoint: the net with this optimizer's settings and state."""
        _check(_lib.wm_optimizer_save(self._p, os.fsencode(path)))

    @classmethod
    def load(cls, path, fn=None, dim=None, n_basis=None, user=None):
        """Resume a checkpoint: a new Optimizer whose .net is a new Net. A net on
        a custom manifold needs its basis again (as Net.load_custom)."""
        # BASIS_FN() is a NULL function pointer: ctypes refuses None here.
        cb, errors = (BASIS_FN(), []) if fn is None else _basis_callback(fn, dim, n_basis)
        opt_out, net_out = ctypes.c_void_p(), ctypes.c_void_p()
        st = _lib.wm_optimizer_load(ctypes.byref(opt_out), ctypes.byref(net_out),
                                    os.fsencode(path), cb, user)
        if st != Status.OK:
            _check_cb(st, errors)
        net = Net._wrap(net_out.value, keep=() if fn is None else (cb,))
        opt = cls.__new__(cls)
        _Handle.__init__(opt, opt_out.value, keep=net._keep, parent=net)
        opt.net = net
        opt.config = None  # the C API has no getter for a loaded optimizer's settings
        try:
            _check_cb(Status.OK, errors)
        except BaseException:
            net.close()
            raise
        return opt


# --------------------------------------------------------------------------
# Context inference for a batch: wm_infer_context_batch (one block)
# --------------------------------------------------------------------------
_PROTOTYPES["wm_infer_context_batch"] = (
    _status, [_handle, ctypes.POINTER(Batch), ctypes.c_int, _c_float_p, _c_float_p])
_lib.wm_infer_context_batch.restype, _lib.wm_infer_context_batch.argtypes = \
    _PROTOTYPES["wm_infer_context_batch"]


def _net_infer_context_batch(self, x, labels=None, targets=None, shared=True):
    """Which task is this? The context that best explains inputs x (n,
    n_inputs): by the labels' cross-entropy, the targets' MSE, or (neither)
    the prediction entropy. shared=True: one context for the whole batch,
    returns (s (dim,), loss float); shared=False: one per sample, returns
    (s (n, dim), loss (n,)). loss is the objective at the answer."""
    x = self._inputs(x)
    n, dim = x.shape[0], self.context_dim
    lab = None if labels is None else _as_array(labels, np.int32, (n,), "labels")
    tgt = None if targets is None else _as_array(targets, np.float32,
                                                 (n, self.n_outputs), "targets")
    batch = Batch(n, _ptr(x), None, _ptr(lab, _c_int32_p), _ptr(tgt))
    rows = 1 if shared else n
    s_out = np.zeros((rows, max(dim, 1)), dtype=np.float32)
    loss = np.zeros(rows, dtype=np.float32)
    _check(_lib.wm_infer_context_batch(self._p, ctypes.byref(batch), 1 if shared else 0,
                                       _ptr(s_out), _ptr(loss)))
    s_out = s_out[:, :dim]
    return (s_out[0], float(loss[0])) if shared else (s_out, loss)


Net.infer_context_batch = _net_infer_context_batch
