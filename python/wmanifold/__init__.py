"""wmanifold -- Python bindings of libwmanifold (ctypes over include/wmanifold.h).

Neural networks whose weights live on a manifold over a task context s:
W(s) = sum_k c_k(s) P_k (Benjamin et al. 2025, arXiv 2505.22994).

Every function of the C API is reachable from here:

    import numpy as np, wmanifold as wm
    with wm.Manifold.circle() as m, wm.Net(m, n_inputs=2) as net:
        net.dense(16, wm.Activation.TANH).dense(2)
        net.init(seed=1)
        with wm.Optimizer(net, kind=wm.OptKind.ADAM, lr=1e-2) as opt:
            loss = opt.step(x, s, labels=y)        # x (n,2) s (n,) y (n,)
        logits = net(x, s)                         # (n, 2) float32 (= net.infer)

Conventions:
  * Arrays go in and come out as numpy arrays, float32 (labels int32),
    C-contiguous. An input that already has that layout is passed to C as is,
    without a copy; anything else is converted once (np.ascontiguousarray).
  * A failing C call raises a subclass of WmError, whose .status is the
    wm_status, .message wm_last_error()'s text and .call the C function. Each
    is also the built-in exception a Python programmer expects:
        WM_EINVAL   InvalidArgumentError  (a ValueError)
        WM_EFORMAT  FormatError           (a ValueError: not a model file)
        WM_ENOMEM   OutOfMemoryError      (a MemoryError)
        WM_EIO      FileError             (an OSError; a missing file is also a
                                           FileNotFoundError, a refused one a
                                           PermissionError, a directory an
                                           IsADirectoryError, with .errno and
                                           .filename set)
        WM_ENUMERIC NumericError          (a FloatingPointError)
        WM_ESTATE   StateError            (a RuntimeError)
    Arrays of the wrong shape are caught before C sees them (C trusts the
    sizes) and raise a plain ValueError.
  * Handles (Manifold, Net, Optimizer) are freed deterministically by close()
    or a `with` block; garbage collection is only the fallback. An Optimizer
    keeps its Net alive; closing a Net first closes its optimizers, because
    the C library forbids using them after the net is gone.
  * Views returned with copy=False (params, grad_buffer) point into C memory,
    which they keep alive: after close() a view still reads the values it
    last saw (and writes to it reach nothing); the memory goes with the view.
  * A handle closed while a call on it runs in another thread (ctypes
    releases the GIL) is freed when that call returns, never under it.
  * An int argument outside its C type's range (int, size_t, uint64_t) is an
    OverflowError, never truncated; labels must be integers that fit int32
    and the float arrays real numbers (complex or text data: TypeError).

The shared library is found, in this order, through the WMANIFOLD_LIB
environment variable (a path); when this package is imported from a source
checkout (python/ next to include/wmanifold.h), the checkout's
lib/libwmanifold.so.0; else the installed library by its soname,
libwmanifold.so.0, on the dynamic loader's path (ld.so.cache after
`make install` and ldconfig, or LD_LIBRARY_PATH for another prefix).

The optional module wmanifold.torch turns a trained net into a
torch.nn.Module (import it explicitly; it needs PyTorch).
"""

from __future__ import annotations

import copy
import ctypes
import enum
import errno as _errno
import os
import tempfile
import weakref
from collections import namedtuple
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from . import _format

__all__ = [
    "Status", "Activation", "Loss", "Conditioning", "ConvStrategy", "OptKind",
    "WmError", "InvalidArgumentError", "OutOfMemoryError", "FileError", "FormatError",
    "NumericError", "StateError",
    "OptConfig", "Batch", "BASIS_FN", "LayerInfo", "Manifold", "Net", "Optimizer",
    "status_str", "last_error", "version", "opt_default", "lib_path", "SONAME",
]

#: the version of this package (the library's is version()); pyproject.toml reads it
__version__ = "0.1.0"
#: the shared library this binding was written for (its ABI major version)
SONAME = "libwmanifold.so.0"

PathLike = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]
ArrayLike = Any  # anything np.asarray accepts

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
    """A libwmanifold call failed.

    .status is the Status (an int if newer than this binding), .message the
    library's wm_last_error() text and .call the C function that failed (or
    None). Each status raises its own subclass, which is also the matching
    built-in exception (see the module's docstring); catch WmError for all."""

    def __init__(self, status: Union[Status, int], message: str = "",
                 call: Optional[str] = None) -> None:
        try:
            status = Status(status)
        except ValueError:  # a status newer than this binding: keep the number
            pass
        self.status = status
        self.message = message
        self.call = call
        self._init_base()

    def _text(self) -> str:
        name = self.status.name if isinstance(self.status, Status) else str(self.status)
        return f"{name}: {self.message}" if self.message else name

    def _init_base(self) -> None:
        super().__init__(self._text())

    def __str__(self) -> str:
        return self._text()

    def __reduce__(self):
        return (_error, (int(self.status), self.message, self.call,
                         getattr(self, "filename", None)))


class InvalidArgumentError(WmError, ValueError):
    """WM_EINVAL: an argument is invalid (NULL, out of range, NaN/Inf input)."""


class OutOfMemoryError(WmError, MemoryError):
    """WM_ENOMEM: an allocation failed."""


class FormatError(WmError, ValueError):
    """WM_EFORMAT: a file is not a valid model file (truncated, corrupt, foreign)."""


class NumericError(WmError, FloatingPointError):
    """WM_ENUMERIC: the computation turned non-finite (diverging loss or update)."""


class StateError(WmError, RuntimeError):
    """WM_ESTATE: the call is not allowed in the object's current state."""


class FileError(WmError, OSError):
    """WM_EIO: a file could not be opened, read or written. .errno and
    .filename are set when known; a missing file raises the subclass that is
    also a FileNotFoundError (PermissionError, IsADirectoryError, ... alike)."""

    def __init__(self, status: Union[Status, int], message: str = "",
                 call: Optional[str] = None, errno: Optional[int] = None,
                 filename: Optional[str] = None) -> None:
        self._errno, self._filename = errno, filename
        super().__init__(status, message, call)

    def _init_base(self) -> None:
        if self._errno is not None:
            OSError.__init__(self, self._errno, self._text(), self._filename)
        else:
            OSError.__init__(self, self._text())
            self.filename = self._filename


def _file_error(name: str, builtin: type) -> type:
    """A FileError that is also the specific built-in OSError `builtin`."""
    return type(name, (FileError, builtin), {
        "__doc__": f"WM_EIO that is also a {builtin.__name__}.", "__module__": __name__,
        "__qualname__": name})


_FileNotFound = _file_error("_FileNotFound", FileNotFoundError)
_FilePermission = _file_error("_FilePermission", PermissionError)
_FileIsADirectory = _file_error("_FileIsADirectory", IsADirectoryError)
_FileNotADirectory = _file_error("_FileNotADirectory", NotADirectoryError)
_FILE_ERRORS = {_errno.ENOENT: _FileNotFound, _errno.EACCES: _FilePermission,
                _errno.EPERM: _FilePermission, _errno.EISDIR: _FileIsADirectory,
                _errno.ENOTDIR: _FileNotADirectory}

_ERRORS = {Status.EINVAL: InvalidArgumentError, Status.ENOMEM: OutOfMemoryError,
           Status.EIO: FileError, Status.EFORMAT: FormatError,
           Status.ENUMERIC: NumericError, Status.ESTATE: StateError}


def _io_errno(message: str, path: Optional[str]) -> Optional[int]:
    """The errno behind a WM_EIO message: the library appends strerror()'s
    text (the same libc's); failing that, a path that does not exist."""
    for code in _FILE_ERRORS:
        if message.endswith(": " + os.strerror(code)):
            return code
    if path is not None:
        if not os.path.lexists(path):
            return _errno.ENOENT
        if os.path.isdir(path):
            return _errno.EISDIR
    return None


def _error(status: int, message: str, call: Optional[str] = None,
           path: Optional[str] = None) -> WmError:
    """The exception for a failed call: the subclass its status maps to."""
    try:
        cls = _ERRORS.get(Status(status), WmError)
    except ValueError:
        cls = WmError
    if cls is FileError:
        code = _io_errno(message, path)
        cls = _FILE_ERRORS.get(code, FileError)
        return cls(status, message, call, errno=code, filename=path)
    return cls(status, message, call)


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
# void ready(void *user, int layer, size_t offset, size_t len): wm_grad_notify
GRAD_READY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t, ctypes.c_size_t)


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

    def as_dict(self) -> Dict[str, Any]:
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
    "wm_net_residual": (_status, [_handle, ctypes.c_int, ctypes.c_int]),
    "wm_net_layernorm": (_status, [_handle]),
    "wm_net_groupnorm": (_status, [_handle, ctypes.c_int]),
    "wm_net_film": (_status, [_handle]),
    "wm_net_dropout": (_status, [_handle, ctypes.c_float]),
    "wm_net_global_avgpool": (_status, [_handle]),
    "wm_net_set_layer_manifold": (_status, [_handle, ctypes.c_int, ctypes.c_int]),
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
    "wm_optimizer_net": (_handle, [_handle]),
    "wm_evaluate": (_status, [_handle, ctypes.POINTER(Batch), _c_float_p, _c_float_p]),
    "wm_infer_context": (_status, [_handle, _c_float_p, _c_int32_p, ctypes.c_int, _c_float_p]),
    "wm_optimizer_save": (_status, [_handle, ctypes.c_char_p]),
    "wm_optimizer_load": (_status, [_handle_out, _handle_out, ctypes.c_char_p, BASIS_FN,
                                    ctypes.c_void_p]),
    "wm_optimizer_free": (None, [_handle]),
    # data-parallel support (declared for completeness; libwmanifold_mpi uses them)
    "wm_optimizer_state_len": (ctypes.c_size_t, [_handle]),
    "wm_optimizer_get_state": (_status, [_handle, _c_float_p, ctypes.c_size_t]),
    "wm_optimizer_set_state": (_status, [_handle, _c_float_p, ctypes.c_size_t, ctypes.c_uint64]),
    "wm_grad_zero": (_status, [_handle]),
    "wm_optimizer_set_lr": (_status, [_handle, ctypes.c_float]),
    "wm_optimizer_lr": (ctypes.c_float, [_handle]),
    "wm_optimizer_set_clip_norm": (_status, [_handle, ctypes.c_float]),
    "wm_net_clone": (_status, [_handle_out, _handle]),
    "wm_net_summary": (_status, [_handle, ctypes.c_char_p, ctypes.c_size_t]),
    "wm_scratch_free": (None, []),
    "wm_net_save_buffer": (_status, [_handle, ctypes.POINTER(ctypes.c_void_p), _c_size_p]),
    "wm_net_load_buffer": (_status, [_handle_out, ctypes.c_void_p, ctypes.c_size_t]),
    "wm_net_load_buffer_custom": (_status, [_handle_out, ctypes.c_void_p, ctypes.c_size_t, BASIS_FN,
                                            ctypes.c_void_p]),
    "wm_free": (None, [ctypes.c_void_p]),
    "wm_net_set_context_range": (_status, [_handle, ctypes.c_int, ctypes.c_float, ctypes.c_float]),
    "wm_net_context_range": (_status, [_handle, ctypes.c_int, _c_float_p, _c_float_p]),
    "wm_infer_context_batch": (_status, [_handle, ctypes.POINTER(Batch), ctypes.c_int, _c_float_p,
                                         _c_float_p]),
    "wm_error_set": (_status, [_status, ctypes.c_char_p]),
    "wm_grad_notify": (_status, [_handle, ctypes.POINTER(Batch), _c_float_p, GRAD_READY_FN,
                                 ctypes.c_void_p]),
}


class _CInt(ctypes.c_int):
    """c_int that refuses a Python int outside its range (plain ctypes keeps
    the low 32 bits: Net(m, 2**32 + 2) had 2 inputs, weights_at(2**32)
    returned layer 0)."""

    _lo, _hi = -2 ** 31, 2 ** 31 - 1

    @classmethod
    def from_param(cls, value):
        if isinstance(value, int) and not cls._lo <= value <= cls._hi:
            raise OverflowError(f"{value} is outside the C argument's range "
                                f"[{cls._lo}, {cls._hi}]")
        return ctypes.c_int.from_param(value)


class _CULong(ctypes.c_ulong):
    """size_t / uint64_t (both unsigned long on the targeted ABIs) that
    refuses a negative or too large int instead of wrapping it."""

    @classmethod
    def from_param(cls, value):
        if isinstance(value, int) and not 0 <= value < 2 ** (8 * ctypes.sizeof(ctypes.c_ulong)):
            raise OverflowError(f"{value} is outside the C argument's range "
                                f"[0, 2**{8 * ctypes.sizeof(ctypes.c_ulong)})")
        return ctypes.c_ulong.from_param(value)


#: argument types replaced by their range-checked forms when the library loads
_CHECKED = {ctypes.c_int: _CInt, ctypes.c_ulong: _CULong, ctypes.c_size_t: _CULong,
            ctypes.c_uint64: _CULong}


def _source_tree_library() -> Optional[str]:
    """lib/libwmanifold.so.0 of the checkout this package sits in, if it is
    imported from a source checkout (python/ beside include/wmanifold.h) and
    the library has been built; None for an installed package."""
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, "..", ".."))
    if not (os.path.isfile(os.path.join(here, "..", "pyproject.toml"))
            and os.path.isfile(os.path.join(root, "include", "wmanifold.h"))):
        return None
    local = os.path.join(root, "lib", SONAME)
    return local if os.path.exists(local) else None


def _find_library() -> str:
    """What to dlopen: WMANIFOLD_LIB, the source checkout's build, or the soname."""
    env = os.environ.get("WMANIFOLD_LIB")
    if env:
        return env
    return _source_tree_library() or SONAME


class _DlInfo(ctypes.Structure):
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _loaded_from(lib: ctypes.CDLL, name: str) -> str:
    """The file the dynamic loader opened for lib (dladdr), else name."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
        dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
        info = _DlInfo()
        if dladdr(ctypes.cast(lib.wm_version, ctypes.c_void_p), ctypes.byref(info)) \
                and info.dli_fname:
            return os.fsdecode(info.dli_fname)
    except (AttributeError, OSError):  # no dladdr (not glibc): keep the name
        pass
    return name


def _load(name: str) -> Tuple[ctypes.CDLL, str]:
    try:
        lib = ctypes.CDLL(name)
    except OSError as e:
        if name != SONAME:
            raise OSError(f"WMANIFOLD_LIB={name}: cannot load it: {e}") from None
        raise OSError(
            f"{SONAME} not found on the dynamic loader's path ({e}). Install the "
            "library (make install; as root into /usr/local it runs ldconfig), or "
            "for another prefix set LD_LIBRARY_PATH=PREFIX/lib, or set "
            "WMANIFOLD_LIB to the library's path") from None
    for fn_name, (restype, argtypes) in _PROTOTYPES.items():
        fn = getattr(lib, fn_name)  # AttributeError here means an ABI mismatch
        fn.restype = restype
        fn.argtypes = [_CHECKED.get(t, t) for t in argtypes]
    return lib, _loaded_from(lib, name)


# Every call goes through this module global (not a captured function), so a
# test can swap in a recording proxy.
_lib, lib_path = _load(_find_library())
#: lib_path: the file the library was loaded from

# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------


def _check(status: int, call: Optional[str] = None, path: Optional[str] = None) -> None:
    """Raise the exception for status (nothing for WM_OK); call names the C
    function, path the file a file function was given."""
    if status != Status.OK:
        raise _error(status, _lib.wm_last_error().decode("utf-8", "replace"), call, path)


def _call(fn_name: str, *args: Any) -> None:
    """Call the C function fn_name(*args) and raise if it fails."""
    status = _invoke(fn_name, args)
    del args  # a kept traceback must not keep the handles (their _Life) alive
    _check(status, fn_name)


def _invoke(fn_name: str, args: Tuple[Any, ...]) -> Any:
    """fn_name(*args); an int argument outside its C type's range is an
    OverflowError naming the call (ctypes reports it as an ArgumentError)."""
    try:
        return getattr(_lib, fn_name)(*args)
    except ctypes.ArgumentError as e:
        if "OverflowError" in str(e):
            raise OverflowError(f"{fn_name}: {e}") from None
        raise


def _ptr(arr, ctype=_c_float_p):
    return None if arr is None else arr.ctypes.data_as(ctype)


def _convert(a, dtype, what):
    """np.ascontiguousarray(a, dtype) for a numeric input whose values
    survive the conversion: complex, string or object data is a TypeError
    (numpy would drop the imaginary part or parse the text), and int32
    data (labels) must be integers that fit, else ValueError (numpy would
    truncate 0.7 to 0 and wrap 2**32 to 0: a valid label, silently)."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{what}: expected real numbers, got an array of {arr.dtype}")
    if arr.dtype == dtype or np.dtype(dtype).kind == "f":
        out = np.ascontiguousarray(arr, dtype=dtype)
    else:  # to int32 (labels) from another type: the values must survive
        with np.errstate(invalid="ignore"):  # NaN to int: refused just below
            out = np.ascontiguousarray(arr, dtype=dtype)
        if not np.array_equal(out, arr):
            raise ValueError(f"{what}: values must be integers in the range of {out.dtype.name}")
    if not out.flags.aligned:  # e.g. np.frombuffer at an odd offset: C needs aligned floats
        out = out.copy()
    return out


def _as_array(a, dtype, shape, what):
    """a as a C-contiguous array of dtype and shape; a copy only if needed.
    A flat (or scalar) input of the right size is accepted too; another
    shape is an error even with the right size (a transposed matrix)."""
    arr = _convert(a, dtype, what)
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
            or not out.flags.c_contiguous or not out.flags.writeable or not out.flags.aligned):
        raise ValueError(f"{what}: needs a writeable, aligned, C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {shape}")
    return out


def _view(ptr, n, owner, copy, writeable):
    """numpy array over n floats of C memory; the view keeps the memory
    (owner's _Life) alive, even past owner.close()."""
    if not ptr:
        raise StateError(Status.ESTATE, "no buffer (net not initialised?)")
    buf = (ctypes.c_float * n).from_address(ctypes.addressof(ptr.contents))
    if copy:
        return np.array(buf, dtype=np.float32, copy=True)
    buf._owner = owner._p  # keeps the C memory alive until the last view goes
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


def _check_cb(status: int, errors: list, call: Optional[str] = None,
              path: Optional[str] = None) -> None:
    """_check, chaining the basis callback's exception if it raised one."""
    try:
        _check(status, call, path)
    except WmError as e:
        if errors:
            raise e from errors[0]
        raise
    if errors:  # the library accepted the call, but Python code failed: say so
        raise errors[0]


def _create(fn_name: str, *args: Any, path: Optional[str] = None) -> int:
    """Call a constructor fn_name(&out, *args); the new handle's address."""
    out = ctypes.c_void_p()
    status = _invoke(fn_name, (ctypes.byref(out),) + args)
    del args  # as in _call
    _check(status, fn_name, path)
    return out.value

# --------------------------------------------------------------------------
# Library-wide functions
# --------------------------------------------------------------------------


def status_str(status: Union[Status, int]) -> str:
    """wm_status_str: a short constant description of a status."""
    return _lib.wm_status_str(int(status)).decode()


def set_error(status: Union[Status, int], message: str) -> Status:
    """wm_error_set: record message as this thread's last error."""
    return Status(_lib.wm_error_set(int(status), message.encode("utf-8")))


def last_error() -> str:
    """wm_last_error: this thread's most recent failure, in words."""
    return _lib.wm_last_error().decode("utf-8", "replace")


def version() -> str:
    """wm_version: "MAJOR.MINOR.PATCH"."""
    return _lib.wm_version().decode()


def scratch_free() -> None:
    """wm_scratch_free: give back this thread's inference scratch memory now
    (it is otherwise kept for reuse until the thread exits)."""
    _lib.wm_scratch_free()


def opt_default(kind: OptKind = OptKind.SD) -> OptConfig:
    """wm_opt_default: the default OptConfig for an optimizer kind."""
    return _invoke("wm_opt_default", (int(kind),))

# --------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------


class _Life:
    """The C memory of one handle, freed when the last reference goes: the
    handle's own (dropped by close()), each numpy view into it (params,
    grad_buffer with copy=False), each C call in flight (the handle is
    passed to C as this object, through _as_parameter_), and each dependent
    handle's _Life (an optimizer's holds its net's; a borrowed manifold's
    its net's). So close() from one thread while another is inside a call,
    or reading a view after close(), never touches freed memory: the free
    waits for them.

    The garbage collector finalizes a cycle's objects in any order, a parent
    before its dependents too; so a parent counts its unfinished dependents
    (_users) and, finalized while some remain, leaves the free to the last."""

    __slots__ = ("_as_parameter_", "_free_fn", "_parent", "_keep", "_users", "_dead",
                 "__weakref__")

    def __init__(self, ptr, free_fn, parent, keep):
        self._as_parameter_ = ptr     # what ctypes passes for a handle argument
        self._free_fn = free_fn       # None: borrowed, nothing to free
        self._parent = parent         # the owner's _Life, freed after this one
        self._keep = keep             # basis callbacks C may call until the free
        self._users = 0               # dependents' _Life objects not finished yet
        self._dead = False            # finalized: only dependents still hold it
        if parent is not None:
            parent._users += 1

    def __del__(self):
        self._dead = True
        if self._users == 0:
            self._finish()

    def _finish(self):
        free_fn, self._free_fn = self._free_fn, None
        if free_fn is not None:
            try:
                getattr(_lib, free_fn)(self._as_parameter_)
            except Exception:  # interpreter shutdown: module globals may be gone
                pass
        parent, self._parent = self._parent, None
        if parent is not None:
            parent._users -= 1
            if parent._dead and parent._users == 0:
                parent._finish()


class _Handle:
    _free_fn = None  # name of the C function that releases this handle
    # Defaults so that close()/__del__ are harmless on an object whose
    # constructor raised before _Handle.__init__ ran.
    _ptr = None
    _life = None
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
        if ptr is not None:
            self._life = _Life(ptr, self._free_fn if owned else None,
                               None if parent is None else parent._life, self._keep)

    @property
    def _p(self):
        """The handle as a C argument (its _Life): raises once closed."""
        life = self._life
        if life is None:
            raise ValueError(f"{type(self).__name__} is closed")
        return life

    @property
    def closed(self) -> bool:
        """Whether close() has released the handle."""
        return self._ptr is None

    def close(self) -> None:
        """Release the C handle (idempotent). Dependents close first. The C
        memory is freed at once, unless a numpy view into it (copy=False)
        or a call in another thread still uses it: then when they end."""
        for child in list(self._children):
            child.close()
        self._ptr = None
        self._life = None             # the last reference frees (see _Life)

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

    # copy.copy/deepcopy would duplicate the pointer (deepcopy even the
    # _Life: two frees, and use after free before that); pickling would save
    # an address. Net and Manifold copy through the C clone instead.
    def __copy__(self):
        raise TypeError(f"a wmanifold.{type(self).__name__} cannot be copied")

    def __deepcopy__(self, memo):
        return self.__copy__()

    def __reduce_ex__(self, protocol):
        raise TypeError(f"a wmanifold.{type(self).__name__} cannot be pickled")


def _spec(kind: str, dim: int, k: int, periodic: Sequence[bool], **fields: Any) -> Dict[str, Any]:
    """A manifold description in the model file's terms (see _format)."""
    return dict(kind=kind, dim=dim, K=k, periodic=list(periodic), **fields)


class Manifold(_Handle):
    """A basis c(s) over a context domain (wm_manifold). Build with the
    classmethods: point, line, circle, fourier, bspline, product, custom.

    .spec describes it (kind and parameters) when known: always for one built
    here, and for a net's manifold when the net's architecture is known."""

    _free_fn = "wm_manifold_free"
    spec: Optional[Dict[str, Any]] = None

    def __init__(self, ptr: int, owned: bool = True, keep: Sequence[Any] = (),
                 parent: Optional["_Handle"] = None,
                 spec: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(ptr, owned=owned, keep=keep, parent=parent)
        self.spec = spec

    @classmethod
    def point(cls) -> "Manifold":
        """No context: K = 1, a plain network."""
        return cls(_create("wm_manifold_point"), spec=_spec("point", 0, 1, []))

    @classmethod
    def line(cls) -> "Manifold":
        """s in [0, 1], c(s) = (1 - s, s): W(0) = P_1, W(1) = P_2."""
        return cls(_create("wm_manifold_line"), spec=_spec("line", 1, 2, [False]))

    @classmethod
    def circle(cls) -> "Manifold":
        """Periodic s, c(s) = (1, cos 2 pi s, sin 2 pi s); fourier(1)."""
        return cls(_create("wm_manifold_circle"),
                   spec=_spec("fourier", 1, 3, [True], harmonics=1))

    @classmethod
    def fourier(cls, harmonics: int) -> "Manifold":
        """A closed curve with `harmonics` harmonics: K = 2 harmonics + 1."""
        h = int(harmonics)
        return cls(_create("wm_manifold_fourier", h),
                   spec=_spec("fourier", 1, 2 * h + 1, [True], harmonics=h))

    @classmethod
    def bspline(cls, n_control: int, degree: int, periodic: bool = False) -> "Manifold":
        """A uniform B-spline curve: open and clamped, or closed (periodic)."""
        n, d, closed = int(n_control), int(degree), bool(periodic)
        return cls(_create("wm_manifold_bspline", n, d, int(closed)),
                   spec=_spec("bspline", 1, n, [closed], n_control=n, degree=d, closed=closed))

    @classmethod
    def product(cls, a: "Manifold", b: "Manifold") -> "Manifold":
        """A x B (torus = circle x circle); the result owns copies of a and b."""
        m = cls(_create("wm_manifold_product", a._p, b._p), keep=a._keep + b._keep)
        if a.spec is not None and b.spec is not None:
            m.spec = _spec("product", a.spec["dim"] + b.spec["dim"], a.spec["K"] * b.spec["K"],
                           a.spec["periodic"] + b.spec["periodic"], a=a.spec, b=b.spec)
        return m

    @classmethod
    def custom(cls, fn: Callable[[np.ndarray], ArrayLike], dim: int, n_basis: int,
               periodic: Optional[Sequence[bool]] = None, user: Any = None) -> "Manifold":
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
            _check_cb(st, errors, "wm_manifold_custom")
        m = cls(out.value, keep=(cb,))
        try:
            _check_cb(Status.OK, errors)
        except BaseException:
            m.close()
            raise
        m._cb_errors = errors
        m.spec = _spec("custom", int(dim), int(n_basis),
                       [bool(p) for p in periodic] if periodic is not None else [False] * int(dim))
        return m

    def __copy__(self) -> "Manifold":
        """copy.copy and copy.deepcopy: clone()."""
        return self.clone()

    def clone(self) -> "Manifold":
        """An independent copy."""
        return Manifold(_create("wm_manifold_clone", self._p), keep=self._keep, spec=self.spec)

    @property
    def dim(self) -> int:
        """Context coordinates (0 for a point)."""
        return _lib.wm_manifold_dim(self._p)

    @property
    def n_basis(self) -> int:
        """Basis functions K."""
        return _lib.wm_manifold_n_basis(self._p)

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<wmanifold.Manifold closed>"
        dim = self.dim
        per = [self.periodic(d) for d in range(dim)]
        ctx = "no context" if dim == 0 else (
            f"dim {dim}" + (" periodic" if all(per) else "" if not any(per) else
                            " (periodic: " + ", ".join("yes" if p else "no" for p in per) + ")"))
        name = _format.describe_manifold(self.spec) + ": " if self.spec else ""
        return f"<wmanifold.Manifold {name}{ctx}, K {self.n_basis}>"

    def periodic(self, d: int) -> bool:
        """Whether context coordinate d wraps (s and s + 1 are the same point)."""
        r = _invoke("wm_manifold_periodic", (self._p, int(d)))
        if r < 0:
            raise ValueError(f"context coordinate {d} out of range for dim {self.dim}")
        return bool(r)

    def _context(self, s: Optional[ArrayLike]) -> Optional[np.ndarray]:
        dim = self.dim
        if dim == 0 and s is None:
            return None
        return _as_array(s, np.float32, (dim,), "context s")

    def basis(self, s: Optional[ArrayLike] = None) -> np.ndarray:
        """The paper's c(s) at one context: (K,) float32."""
        s = self._context(s)
        c = np.empty(self.n_basis, dtype=np.float32)
        _call("wm_manifold_basis", self._p, _ptr(s), _ptr(c))
        return c

    def gram(self) -> np.ndarray:
        """The Gram matrix G, (K, K) float64."""
        k = self.n_basis
        g = np.empty((k, k), dtype=np.float64)
        _call("wm_manifold_gram", self._p, _ptr(g, _c_double_p))
        return g


class Net(_Handle):
    """A network on a manifold (wm_net). Net(manifold, n_inputs, cond), then
    .dense(...) layers, optionally .set_loss(...), then .init(seed).

    net(x, s) runs it (the same as net.infer(x, s))."""

    _free_fn = "wm_net_free"
    _arch: Optional[Dict[str, Any]] = None

    def __init__(self, manifold: Manifold, n_inputs: int,
                 cond: Conditioning = Conditioning.MANIFOLD) -> None:
        ptr = _create("wm_net_create", manifold._p, int(n_inputs), int(cond))
        # The net copies the manifold, callback pointer included: keep it alive.
        super().__init__(ptr, keep=manifold._keep)
        # What the C API does not report (layer kinds), recorded as it is built.
        self._arch = {"manifold": manifold.spec, "cond": int(cond), "n_inputs": int(n_inputs),
                      "input_shape": None, "loss": int(Loss.SOFTMAX_CE), "layers": []}

    @classmethod
    def _wrap(cls, ptr: int, keep: Sequence[Any] = (), path: Optional[PathLike] = None) -> "Net":
        net = cls.__new__(cls)
        _Handle.__init__(net, ptr, keep=keep)
        if path is not None:  # the file just loaded says what the net is
            try:
                with open(path, "rb") as f:
                    net._arch = _format.parse_header(f.read(), os.fsdecode(path))
            except (OSError, ValueError):  # only the repr loses detail
                net._arch = None
        return net

    def _add_layer(self, **layer: Any) -> "Net":
        if self._arch is not None:
            self._arch["layers"].append(layer)
        return self

    # ---- building
    def dense(self, n_outputs: int, act: Activation = Activation.NONE) -> "Net":
        """Append a dense layer act(W(s) x + b(s)); after a conv or pooling
        layer it flattens its input (CHW)."""
        _call("wm_net_dense", self._p, int(n_outputs), int(act))
        return self._add_layer(kind="dense", out=int(n_outputs), act=int(act))

    def input_shape(self, channels: int, height: int, width: int) -> "Net":
        """Rows of x are CHW images; call before the first layer."""
        _call("wm_net_input_shape", self._p, int(channels), int(height), int(width))
        if self._arch is not None:
            self._arch["input_shape"] = (int(channels), int(height), int(width))
        return self

    def conv2d(self, out_channels: int, kernel: int, stride: int = 1, pad: int = 0,
               act: Activation = Activation.NONE) -> "Net":
        """Append a 2-D convolution (weights on the manifold)."""
        _call("wm_net_conv2d", self._p, int(out_channels), int(kernel), int(stride),
              int(pad), int(act))
        return self._add_layer(kind="conv2d", out=int(out_channels), kernel=int(kernel),
                               stride=int(stride), pad=int(pad), act=int(act))

    def maxpool(self, size: int) -> "Net":
        """Append max pooling over size x size windows, stride size."""
        _call("wm_net_maxpool", self._p, int(size))
        return self._add_layer(kind="maxpool", size=int(size))

    def avgpool(self, size: int) -> "Net":
        """Append average pooling over size x size windows, stride size."""
        _call("wm_net_avgpool", self._p, int(size))
        return self._add_layer(kind="avgpool", size=int(size))

    def residual(self, from_layer: int, act: Activation = Activation.NONE) -> "Net":
        """Append act(current output + output of layer from_layer); -1 is
        the net's input. The shapes must be equal. No parameters."""
        _call("wm_net_residual", self._p, int(from_layer), int(act))
        return self._add_layer(kind="residual", from_layer=int(from_layer), act=int(act))

    def layernorm(self) -> "Net":
        """Append a layer normalisation over all features of the current
        output (torch.nn.LayerNorm, eps 1e-5), gain and bias on the manifold."""
        _call("wm_net_layernorm", self._p)
        return self._add_layer(kind="layernorm")

    def groupnorm(self, groups: int) -> "Net":
        """Append a group normalisation of an image (torch.nn.GroupNorm,
        eps 1e-5), per-channel gain and bias on the manifold."""
        _call("wm_net_groupnorm", self._p, int(groups))
        return self._add_layer(kind="groupnorm", groups=int(groups))

    def film(self) -> "Net":
        """Append FiLM: per feature (per channel on images) gamma(s) x + beta(s),
        initialised to gamma = 1, beta = 0."""
        _call("wm_net_film", self._p)
        return self._add_layer(kind="film")

    def dropout(self, p: float) -> "Net":
        """Append inverted dropout with probability p (training only; the mask
        depends on the init seed, the step count and the sample index)."""
        _call("wm_net_dropout", self._p, float(p))
        return self._add_layer(kind="dropout", p=float(p))

    def global_avgpool(self) -> "Net":
        """Append a global average pooling of an image: C x 1 x 1."""
        _call("wm_net_global_avgpool", self._p)
        return self._add_layer(kind="global_avgpool")

    def set_layer_manifold(self, layer: int, on: bool) -> "Net":
        """Before init: on=False keeps layer's parameters at one point (K = 1),
        on=True (the default) puts them on the net's manifold."""
        _call("wm_net_set_layer_manifold", self._p, int(layer), int(bool(on)))
        if self._arch is not None and 0 <= int(layer) < len(self._arch["layers"]):
            self._arch["layers"][int(layer)]["manifold"] = int(bool(on))
        return self

    def set_conv_strategy(self, strategy: ConvStrategy) -> "Net":
        """How convolutions run mixed-context batches (ConvStrategy)."""
        _call("wm_net_set_conv_strategy", self._p, int(strategy))
        return self

    def set_loss(self, loss: Loss) -> "Net":
        """The training loss (before init)."""
        _call("wm_net_set_loss", self._p, int(loss))
        if self._arch is not None:
            self._arch["loss"] = int(loss)
        return self

    def init(self, seed: int = 0) -> "Net":
        """Allocate and initialise the parameters from seed (re-initialises)."""
        _call("wm_net_init", self._p, int(seed))
        return self

    @property
    def initialised(self) -> bool:
        """Whether init (or a load) has given the net its parameters."""
        return bool(_lib.wm_net_params(self._p, None))

    def architecture(self) -> Dict[str, Any]:
        """What the net is, in the model file's terms (docs/model-format.md):
        a dict with manifold (kind, dim, K, periodic and the kind's fields),
        cond, n_inputs, input_shape, loss and layers (kind and fields each);
        an initialised net with a dropout layer adds seed (its init seed,
        which selects the masks). An initialised net is read back from what wm_net_save writes, so it
        is the library's own account."""
        if self.initialised:
            with tempfile.TemporaryDirectory(prefix="wmanifold-") as d:
                path = os.path.join(d, "net.wm")
                self.save(path)
                with open(path, "rb") as f:
                    return _format.parse_header(f.read(), path)
        if self._arch is None or self._arch["manifold"] is None:
            raise StateError(Status.ESTATE, "the architecture of this net is not known "
                             "before init")
        return {k: (list(v) if k == "layers" else v) for k, v in self._arch.items()}

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<wmanifold.Net closed>"
        arch = self._arch
        if arch is not None:
            layers = [_format.describe_layer(layer) for layer in arch["layers"]]
        else:
            layers = [f"{i.n_out}" + (f" {i.activation.name.lower()}"
                                      if isinstance(i.activation, Activation) and i.activation
                                      else "")
                      for i in (self.layer_info(k) for k in range(self.n_layers))]
        inputs = str(self.n_inputs)
        if arch is not None and arch.get("input_shape"):
            inputs = "x".join(map(str, arch["input_shape"]))
        man = self.manifold
        parts = [" -> ".join([inputs] + layers), f"on {man!r}"[:-1].replace("<wmanifold.Manifold ", "")]
        if arch is not None:
            parts.append("concat conditioning" if arch["cond"] == Conditioning.CONCAT
                         else "manifold conditioning")
            parts.append("MSE" if arch["loss"] == Loss.MSE else "softmax CE")
        parts.append(f"{self.n_params} params" if self.initialised else "not initialised")
        return "<wmanifold.Net " + ", ".join(parts) + ">"

    def __call__(self, x: ArrayLike, s: Optional[ArrayLike] = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
        """net(x, s): the outputs (n, n_outputs), as infer."""
        return self.infer(x, s, out)

    # ---- sizes
    @property
    def n_inputs(self) -> int:
        """Features per sample."""
        return _lib.wm_net_n_inputs(self._p)

    @property
    def n_outputs(self) -> int:
        """The last layer's width."""
        return _lib.wm_net_n_outputs(self._p)

    @property
    def n_layers(self) -> int:
        """Layers, pooling included."""
        return _lib.wm_net_n_layers(self._p)

    @property
    def n_params(self) -> int:
        """Every trainable scalar over all K basis points."""
        return _lib.wm_net_n_params(self._p)

    @property
    def context_dim(self) -> int:
        """Context coordinates the net expects (its manifold's dim)."""
        return _lib.wm_net_context_dim(self._p)

    @property
    def manifold(self) -> Manifold:
        """The net's own manifold, borrowed: closed when the net closes."""
        ptr = _lib.wm_net_manifold(self._p)
        if not ptr:
            raise InvalidArgumentError(Status.EINVAL, "net has no manifold")
        return Manifold(ptr, owned=False, keep=self._keep, parent=self,
                        spec=None if self._arch is None else self._arch["manifold"])

    def layer_info(self, layer: int) -> LayerInfo:
        """Sizes and activation of layer `layer` (see wm_net_layer_info)."""
        n_in, n_out, act = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        _call("wm_net_layer_info", self._p, int(layer), ctypes.byref(n_in),
                                      ctypes.byref(n_out), ctypes.byref(act))
        try:
            a = Activation(act.value)
        except ValueError:
            a = act.value
        return LayerInfo(n_in.value, n_out.value, a)

    # ---- argument shaping (C trusts sizes, so they are checked here)
    def _inputs(self, x):
        x = _convert(x, np.float32, "x")
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
        s = _convert(s, np.float32, "s")
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
    def infer(self, x: ArrayLike, s: Optional[ArrayLike] = None,
              out: Optional[np.ndarray] = None) -> np.ndarray:
        """Outputs (n, n_outputs) float32 for inputs x (n, n_inputs) at
        contexts s (n, dim), (n,) for dim 1, or one context for all."""
        x = self._inputs(x)
        n = x.shape[0]
        s = self._contexts(s, n)
        out = _out_array(out, np.float32, (n, self.n_outputs), "out")
        _call("wm_infer", self._p, _ptr(x), _ptr(s), n, _ptr(out))
        return out

    def infer_workspace_size(self, n: int) -> int:
        """Bytes of workspace infer_ws needs for batches of up to n samples."""
        return _invoke("wm_infer_workspace_size", (self._p, int(n)))

    def infer_ws(self, x: ArrayLike, s: Optional[ArrayLike] = None, ws: Any = None,
                 out: Optional[np.ndarray] = None) -> np.ndarray:
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
        _call("wm_infer_ws", self._p, _ptr(x), _ptr(s), n, _ptr(out),
                                ctypes.c_void_p(wsa.ctypes.data), wsa.nbytes)
        return out

    def evaluate(self, x: ArrayLike, s: Optional[ArrayLike] = None,
                 labels: Optional[ArrayLike] = None,
                 targets: Optional[ArrayLike] = None) -> Tuple[float, float]:
        """(mean loss, accuracy) over a batch."""
        batch, _keep = self._batch(x, s, labels, targets)
        loss, acc = ctypes.c_float(), ctypes.c_float()
        _call("wm_evaluate", self._p, ctypes.byref(batch), ctypes.byref(loss),
                                ctypes.byref(acc))
        return loss.value, acc.value

    def infer_context(self, x: ArrayLike, labels: Optional[ArrayLike] = None) -> np.ndarray:
        """The context (dim,) float32 that best explains inputs x sharing one
        unknown context: by the labels' loss, or by prediction entropy."""
        x = self._inputs(x)
        n = x.shape[0]
        lab = None if labels is None else _as_array(labels, np.int32, (n,), "labels")
        s_out = np.zeros(max(self.context_dim, 1), dtype=np.float32)
        _call("wm_infer_context", self._p, _ptr(x), _ptr(lab, _c_int32_p), n, _ptr(s_out))
        return s_out[:self.context_dim]

    def set_context_range(self, coord: int, lo: float, hi: float) -> "Net":
        """wm_net_set_context_range: give context coordinate coord in your
        own units, [lo, hi] (a periodic one with period hi - lo), e.g. 0-40
        degrees C or an angle in [0, 360); before init(); stored in files."""
        _call("wm_net_set_context_range", self._p, int(coord), float(lo), float(hi))
        if self._arch is not None:
            m = self._arch["manifold"] = dict(self._arch["manifold"])   # not the Manifold's spec
            rng = m["range"] = list(m.get("range", [(0.0, 1.0)] * int(m["dim"])))
            rng[int(coord)] = (float(np.float32(lo)), float(np.float32(hi)))
        return self

    def context_range(self, coord: int) -> Tuple[float, float]:
        """wm_net_context_range: (lo, hi) of context coordinate coord."""
        lo, hi = ctypes.c_float(), ctypes.c_float()
        _call("wm_net_context_range", self._p, int(coord), ctypes.byref(lo), ctypes.byref(hi))
        return lo.value, hi.value

    def infer_context_batch(self, x: ArrayLike, labels: Optional[ArrayLike] = None,
                            targets: Optional[ArrayLike] = None, shared: bool = True
                            ) -> Tuple[np.ndarray, Any]:
        """Which task is this? (wm_infer_context_batch) The context that best
        explains inputs x (n, n_inputs): by the labels' cross-entropy, the
        targets' MSE, or (neither) the prediction entropy. shared=True: one
        context for the whole batch, returns (s (dim,), loss float);
        shared=False: one per sample, returns (s (n, dim), loss (n,)). loss is
        the objective at the answer."""
        x = self._inputs(x)
        n, dim = x.shape[0], self.context_dim
        lab = None if labels is None else _as_array(labels, np.int32, (n,), "labels")
        tgt = None if targets is None else _as_array(targets, np.float32,
                                                     (n, self.n_outputs), "targets")
        batch = Batch(n, _ptr(x), None, _ptr(lab, _c_int32_p), _ptr(tgt))
        rows = 1 if shared else n
        s_out = np.zeros((rows, max(dim, 1)), dtype=np.float32)
        loss = np.zeros(rows, dtype=np.float32)
        _call("wm_infer_context_batch", self._p, ctypes.byref(batch), 1 if shared else 0,
              _ptr(s_out), _ptr(loss))
        s_out = s_out[:, :dim]
        return (s_out[0], float(loss[0])) if shared else (s_out, loss)

    # ---- parameters
    def _point_shape(self, layer: int) -> Tuple[Tuple[int, int], int]:
        """The shape of w and the length of b in control_point and
        weights_at: (n_out, n_in) and n_out from wm_net_layer_info, except for
        layernorm, groupnorm and FiLM, whose w is a gain per row ((rows, 1):
        per feature, or per channel on images) and b a bias per row."""
        info = self.layer_info(layer)
        arch = self._arch
        if arch is not None and 0 <= int(layer) < len(arch["layers"]) and \
                arch["layers"][int(layer)]["kind"] in _format.NORM_KINDS:
            rows = _format.norm_rows(arch, int(layer), info.n_out)
            return (rows, 1), rows
        return (info.n_out, info.n_in), info.n_out

    def weights_at(self, layer: int,
                   s: Optional[ArrayLike] = None) -> Tuple[np.ndarray, np.ndarray]:
        """(w (n_out, n_in), b (n_out,)) of the plain layer at context s."""
        wshape, rows = self._point_shape(layer)
        if s is not None:
            s = _as_array(s, np.float32, (self.context_dim,), "context s")
        w = np.empty(wshape, dtype=np.float32)
        b = np.empty(rows, dtype=np.float32)
        _call("wm_net_weights_at", self._p, int(layer), _ptr(s), _ptr(w), _ptr(b))
        return w, b

    def control_point(self, layer: int, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """(w, b) of control point P_k of a layer, paper coordinates."""
        wshape, rows = self._point_shape(layer)
        w = np.empty(wshape, dtype=np.float32)
        b = np.empty(rows, dtype=np.float32)
        _call("wm_net_control_point", self._p, int(layer), int(k), _ptr(w), _ptr(b))
        return w, b

    def set_control_point(self, layer: int, k: int, w: Optional[ArrayLike] = None,
                          b: Optional[ArrayLike] = None) -> None:
        """Overwrite control point P_k (None keeps that part)."""
        wshape, rows = self._point_shape(layer)
        w = None if w is None else _as_array(w, np.float32, wshape, "w")
        b = None if b is None else _as_array(b, np.float32, (rows,), "b")
        _call("wm_net_set_control_point", self._p, int(layer), int(k), _ptr(w), _ptr(b))

    def params(self, copy: bool = True) -> np.ndarray:
        """All parameters in the internal orthonormal coordinates Q (the
        grad_buffer layout). copy=False: a read-only view into the net."""
        n = ctypes.c_size_t()
        ptr = _lib.wm_net_params(self._p, ctypes.byref(n))
        return _view(ptr, n.value, self, copy, writeable=False)

    def set_params(self, q: ArrayLike) -> None:
        """Overwrite all parameters with q, in the params() layout (Q)."""
        q = _convert(q, np.float32, "params").reshape(-1)
        _call("wm_net_set_params", self._p, _ptr(q), q.size)  # C checks the length

    # ---- files
    def __copy__(self) -> "Net":
        """copy.copy and copy.deepcopy: clone()."""
        return self.clone()

    def __reduce_ex__(self, protocol):
        """Pickled as its model bytes (to_bytes); a net on a custom manifold
        cannot be (its basis is code: save it and use load_custom)."""
        if self._keep:
            raise TypeError("a wmanifold.Net on a custom manifold cannot be pickled "
                            "(its basis is a function): save() it and load_custom()")
        return (Net.from_bytes, (self.to_bytes(),))

    def clone(self) -> "Net":
        """wm_net_clone: an independent deep copy (architecture, manifold,
        parameters); the copy infers bit-identically."""
        net = Net._wrap(_create("wm_net_clone", self._p), keep=self._keep)
        net._arch = copy.deepcopy(self._arch)
        return net

    def summary(self) -> str:
        """wm_net_summary: a table of the layers, shapes, placement and
        parameter counts."""
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            _call("wm_net_summary", self._p, buf, size)
            text = buf.value.decode("utf-8", "replace")
            if len(text) < size - 1:
                return text
            size *= 4

    def save(self, path: PathLike) -> None:
        """Write the model to path, atomically (docs/model-format.md)."""
        _check(_lib.wm_net_save(self._p, os.fsencode(path)), "wm_net_save", os.fsdecode(path))

    @classmethod
    def load(cls, path: PathLike) -> "Net":
        """A net saved by save(); FileNotFoundError if path does not exist,
        FormatError if it is not a model file."""
        return cls._wrap(_create("wm_net_load", os.fsencode(path), path=os.fsdecode(path)),
                         path=path)

    @classmethod
    def load_custom(cls, path: PathLike, fn: Any, dim: Optional[int] = None,
                    n_basis: Optional[int] = None, user: Any = None) -> "Net":
        """Load a net saved on a custom manifold, giving its basis again
        (a Python fn needs dim and n_basis, as for Manifold.custom)."""
        cb, errors = _basis_callback(fn, dim, n_basis)
        out = ctypes.c_void_p()
        st = _lib.wm_net_load_custom(ctypes.byref(out), os.fsencode(path), cb, user)
        if st != Status.OK:
            _check_cb(st, errors, "wm_net_load_custom", os.fsdecode(path))
        net = cls._wrap(out.value, keep=(cb,), path=path)
        try:
            _check_cb(Status.OK, errors)
        except BaseException:
            net.close()
            raise
        return net

    def to_bytes(self) -> bytes:
        """wm_net_save_buffer: exactly the bytes save() would write, e.g. to
        embed a model or send it over a socket."""
        buf = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _call("wm_net_save_buffer", self._p, ctypes.byref(buf), ctypes.byref(n))
        try:
            return ctypes.string_at(buf.value, n.value)
        finally:
            _lib.wm_free(buf)

    @classmethod
    def from_bytes(cls, data: bytes, fn: Any = None, dim: Optional[int] = None,
                   n_basis: Optional[int] = None, user: Any = None) -> "Net":
        """wm_net_load_buffer: a net from the bytes of a model file (to_bytes()
        or a file's contents); FormatError if they are not a valid model. A
        net on a custom manifold needs its basis fn again, as load_custom."""
        data = bytes(data)
        raw = ctypes.create_string_buffer(data, max(len(data), 1))   # never NULL: empty is EFORMAT
        if fn is None:
            ptr = _create("wm_net_load_buffer", raw, len(data))
            keep: Tuple[Any, ...] = ()
        else:
            cb, errors = _basis_callback(fn, dim, n_basis)
            out = ctypes.c_void_p()
            st = _lib.wm_net_load_buffer_custom(ctypes.byref(out), raw, len(data), cb, user)
            if st != Status.OK:
                _check_cb(st, errors, "wm_net_load_buffer_custom")
            ptr, keep = out.value, (cb,)
        net = cls._wrap(ptr, keep=keep)
        try:
            net._arch = _format.parse_header(data, "<buffer>")
        except (OSError, ValueError):
            net._arch = None
        return net


class Optimizer(_Handle):
    """A training state for a net (wm_optimizer). Optimizer(net, config) or
    Optimizer(net, kind=OptKind.ADAM, lr=1e-2, ...) to override defaults."""

    _free_fn = "wm_optimizer_free"

    def __init__(self, net: Net, config: Optional[OptConfig] = None,
                 kind: Optional[OptKind] = None, **fields: float) -> None:
        if config is None:
            config = opt_default(OptKind.SD if kind is None else kind)  # (checked argument)
        else:
            config = OptConfig.from_buffer_copy(config)  # never alias the caller's
            if kind is not None:
                config.kind = int(kind)
        names = {name for name, _ in OptConfig._fields_}
        for key, value in fields.items():
            if key not in names:
                raise TypeError(f"unknown optimizer setting {key!r}")
            setattr(config, key, value)
        # A ctypes field keeps an int's low 32 bits, as an argument did.
        if kind is not None and config.kind != int(kind):
            raise OverflowError(f"kind = {int(kind)} is outside the range of a C int")
        ptr = _create("wm_optimizer_create", net._p, ctypes.byref(config))
        # parent=net: the net stays alive while we do, and closing it closes us.
        super().__init__(ptr, keep=net._keep, parent=net)
        self.net = net
        self.config = config

    def step(self, x: ArrayLike, s: Optional[ArrayLike] = None,
             labels: Optional[ArrayLike] = None, targets: Optional[ArrayLike] = None) -> float:
        """One training step; returns the batch's mean loss before it."""
        batch, _keep = self.net._batch(x, s, labels, targets)
        loss = ctypes.c_float()
        _call("wm_step", self._p, ctypes.byref(batch), ctypes.byref(loss))
        return loss.value

    def grad(self, x: ArrayLike, s: Optional[ArrayLike] = None,
             labels: Optional[ArrayLike] = None, targets: Optional[ArrayLike] = None) -> float:
        """Gradient into grad_buffer() without changing the net; returns the loss."""
        batch, _keep = self.net._batch(x, s, labels, targets)
        loss = ctypes.c_float()
        _call("wm_grad", self._p, ctypes.byref(batch), ctypes.byref(loss))
        return loss.value

    def grad_notify(self, ready, x: ArrayLike, s: Optional[ArrayLike] = None,
                    labels: Optional[ArrayLike] = None, targets: Optional[ArrayLike] = None) -> float:
        """grad(), calling ready(layer, offset, length) during the backward
        pass as each layer's block grad_buffer()[offset:offset + length] is
        final (last layer first); returns the loss. An exception in ready is
        re-raised after the pass."""
        batch, _keep = self.net._batch(x, s, labels, targets)
        loss = ctypes.c_float()
        raised = []

        def trampoline(_user, layer, offset, length):
            if not raised:
                try:
                    ready(layer, offset, length)
                except BaseException as e:  # noqa: BLE001 -- carried across C
                    raised.append(e)
        fn = GRAD_READY_FN(trampoline)
        _call("wm_grad_notify", self._p, ctypes.byref(batch), ctypes.byref(loss), fn, None)
        if raised:
            raise raised[0]
        return loss.value

    def grad_buffer(self, copy: bool = False) -> np.ndarray:
        """The gradient buffer (n_params,) float32 in Q coordinates. Default:
        a writeable view, so it can be averaged in place before apply()."""
        n = ctypes.c_size_t()
        ptr = _lib.wm_grad_buffer(self._p, ctypes.byref(n))
        return _view(ptr, n.value, self, copy, writeable=True)

    def apply(self) -> None:
        """Apply one update from the gradient buffer."""
        _call("wm_apply", self._p)

    def __repr__(self) -> str:
        if self._ptr is None:
            return "<wmanifold.Optimizer closed>"
        if self.config is None:
            cfg = "loaded settings"
        else:
            c = self.config
            try:
                kind = OptKind(c.kind).name
            except ValueError:
                kind = str(c.kind)
            cfg = kind + (f" volume={c.volume:g}" if c.volume > 0 else f" lr={c.lr:g}")
            if c.kind == OptKind.MOMENTUM:
                cfg += f" momentum={c.momentum:g}"
            if c.weight_decay:
                cfg += f" weight_decay={c.weight_decay:g}"
        return f"<wmanifold.Optimizer {cfg}, {self.steps} steps, for {self.net!r}>"

    def grad_zero(self) -> None:
        """Zero the gradient buffer and mark it computed (an empty shard)."""
        _call("wm_grad_zero", self._p)

    def state(self) -> np.ndarray:
        """The moments as one float32 array (SD: empty; momentum: v;
        Adam: m then v), the layout wm_optimizer_get_state gives."""
        n = _lib.wm_optimizer_state_len(self._p)
        out = np.empty(n, dtype=np.float32)
        _call("wm_optimizer_get_state", self._p, _ptr(out), n)
        return out

    def set_state(self, state: ArrayLike, steps: int) -> None:
        """Overwrite the moments (the state() layout) and the step count."""
        st = _convert(state, np.float32, "state").reshape(-1)
        _call("wm_optimizer_set_state", self._p, _ptr(st), st.size, int(steps))

    @property
    def lr(self) -> float:
        """The learning rate (wm_optimizer_lr); assign to change it between
        steps, e.g. for a schedule (wm_optimizer_set_lr)."""
        return float(_lib.wm_optimizer_lr(self._p))

    @lr.setter
    def lr(self, value: float) -> None:
        _call("wm_optimizer_set_lr", self._p, float(value))

    def set_clip_norm(self, max_norm: float) -> None:
        """wm_optimizer_set_clip_norm: scale each gradient to an L2 norm of at
        most max_norm before the update (0 turns clipping off)."""
        _call("wm_optimizer_set_clip_norm", self._p, float(max_norm))

    @property
    def steps(self) -> int:
        """Updates applied so far."""
        return _lib.wm_optimizer_steps(self._p)

    def save(self, path: PathLike) -> None:
        """Checkpoint: the net with this optimizer's settings and state."""
        _check(_lib.wm_optimizer_save(self._p, os.fsencode(path)), "wm_optimizer_save",
               os.fsdecode(path))

    @classmethod
    def load(cls, path: PathLike, fn: Any = None, dim: Optional[int] = None,
             n_basis: Optional[int] = None, user: Any = None) -> "Optimizer":
        """Resume a checkpoint: a new Optimizer whose .net is a new Net. A net on
        a custom manifold needs its basis again (as Net.load_custom)."""
        # BASIS_FN() is a NULL function pointer: ctypes refuses None here.
        cb, errors = (BASIS_FN(), []) if fn is None else _basis_callback(fn, dim, n_basis)
        opt_out, net_out = ctypes.c_void_p(), ctypes.c_void_p()
        st = _lib.wm_optimizer_load(ctypes.byref(opt_out), ctypes.byref(net_out),
                                    os.fsencode(path), cb, user)
        if st != Status.OK:
            _check_cb(st, errors, "wm_optimizer_load", os.fsdecode(path))
        net = Net._wrap(net_out.value, keep=() if fn is None else (cb,), path=path)
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
