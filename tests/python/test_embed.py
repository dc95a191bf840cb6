"""The binding as an embedder meets it: what ctypes and numpy would do
silently, and handle lifetimes across views, threads and garbage collection.

Classes of input, each over every call that takes it:
  * ints outside their C type's range (ctypes keeps the low bits: a silent
    wrong layer, width or seed) -> OverflowError, nothing changed;
  * arrays whose conversion loses meaning (float or out-of-range labels,
    complex, text, object data) -> ValueError / TypeError;
  * every memory layout numpy has (strides, order, byte order, read-only,
    broadcast, other dtypes) -> the same numbers as the plain array; an
    output buffer that cannot take the result -> ValueError, untouched;
  * C memory that something still uses when its handle closes (a numpy
    view, a call in flight in another thread, a dependent handle, any
    garbage-collection order) -> freed after the last user, exactly once.
Run by make test-python (tests/python/run_installed.sh), with the others.
"""

import copy
import ctypes
import gc
import pickle
import threading

import numpy as np
import pytest

import wmanifold as wm


def circle_net(seed=1, hidden=8, n_in=2, n_out=2):
    with wm.Manifold.circle() as m:
        net = wm.Net(m, n_in)
    return net.dense(hidden, wm.Activation.TANH).dense(n_out).init(seed)


def batch(n=6, n_in=2, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    s = rng.random(n).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.int32)
    return x, s, y


class Recorder:
    """Stands in for wm._lib: forwards and records (name, addresses)."""

    def __init__(self, lib, hook=None):
        self._lib, self.calls, self.hook = lib, [], hook

    def __getattr__(self, name):
        fn = getattr(self._lib, name)

        def recorded(*args):
            self.calls.append((name, tuple(getattr(a, "_as_parameter_", a) for a in args)))
            if self.hook:
                self.hook(name)
            r = fn(*args)
            self.calls.append(("returned " + name, ()))
            return r
        return recorded

    def names(self):
        return [n for n, _ in self.calls]


@pytest.fixture
def recorder(monkeypatch):
    rec = Recorder(wm._lib)
    monkeypatch.setattr(wm, "_lib", rec)
    return rec


# --------------------------------------------------------------------------
# Ints beyond the C type: never truncated
# --------------------------------------------------------------------------

BIG = 2 ** 32  # low 32 bits 0: truncated, it would be a valid 0


def _fresh():
    with wm.Manifold.circle() as m:
        return wm.Net(m, 2)


INT_CASES = {
    "Net n_inputs": lambda net: wm.Net(net.manifold, BIG + 2),
    "fourier harmonics": lambda net: wm.Manifold.fourier(BIG + 1),
    "bspline n_control": lambda net: wm.Manifold.bspline(BIG + 4, 3),
    "dense n_outputs": lambda net: _fresh().dense(BIG + 2),
    "dense activation": lambda net: _fresh().dense(2, BIG + 1),
    "conv2d kernel": lambda net: _fresh().input_shape(1, 1, 2).conv2d(1, BIG + 1),
    "input_shape": lambda net: _fresh().input_shape(BIG + 1, 1, 2),
    "weights_at layer": lambda net: net.weights_at(BIG, [0.1]),
    "control_point k": lambda net: net.control_point(0, BIG),
    "layer_info layer": lambda net: net.layer_info(BIG),
    "periodic coordinate": lambda net: net.manifold.periodic(BIG),
    "set_layer_manifold layer": lambda net: _fresh().dense(2).set_layer_manifold(BIG, False),
    "set_context_range coordinate": lambda net: _fresh().set_context_range(BIG, 0, 1),
    "init seed negative": lambda net: _fresh().dense(2).init(-1),
    "init seed 2**64": lambda net: _fresh().dense(2).init(2 ** 64),
    "infer_workspace_size n": lambda net: net.infer_workspace_size(BIG + 1),
    "optimizer set_state steps": lambda net: wm.Optimizer(net).set_state([], -1),
    "set_loss": lambda net: _fresh().set_loss(BIG + 1),
    "optimizer kind over a config": lambda net: wm.Optimizer(net, wm.opt_default(), kind=BIG + 2),
    "optimizer kind": lambda net: wm.Optimizer(net, kind=BIG + 2),
}


@pytest.mark.parametrize("case", sorted(INT_CASES))
def test_int_outside_its_c_type_is_overflow_error(case):
    with circle_net() as net:
        before = net.params()
        with pytest.raises(OverflowError):
            INT_CASES[case](net)
        np.testing.assert_array_equal(net.params(), before)


def test_ints_at_the_edge_of_c_int_reach_c():
    # 2**31 - 1 and -2**31 fit: C sees them and answers (EINVAL), no overflow.
    with circle_net() as net:
        for v in (2 ** 31 - 1, -2 ** 31):
            with pytest.raises(wm.InvalidArgumentError):
                net.layer_info(v)
        with pytest.raises(OverflowError):
            net.layer_info(2 ** 31)
        with pytest.raises(OverflowError):
            net.layer_info(-2 ** 31 - 1)
    with wm.Manifold.circle() as m:
        net = wm.Net(m, 2).dense(2)
        net.init(2 ** 64 - 1)          # the largest seed is a seed
        assert net.initialised
        net.close()


# --------------------------------------------------------------------------
# Conversions that would change what the values mean
# --------------------------------------------------------------------------

BAD_LABELS = {
    "fractional floats": (np.array([0.7, 1.2, 0, 1, 0, 1]), ValueError),
    "int64 beyond int32 (wraps to 0, 1)": (np.array([BIG, BIG + 1, 0, 1, 0, 1], np.int64), ValueError),
    "uint64 beyond int32": (np.array([2 ** 63, 1, 0, 1, 0, 1], np.uint64), ValueError),
    "NaN": (np.array([np.nan, 1, 0, 1, 0, 1]), ValueError),
    "complex": (np.array([0, 1, 0, 1, 0, 1], np.complex128), TypeError),
    "strings": (np.array(["0", "1", "0", "1", "0", "1"]), TypeError),
    "objects": (np.array([0, 1, 0, 1, 0, 1], dtype=object), TypeError),
}


def _label_calls(net, opt, x, s):
    return {
        "step": lambda y: opt.step(x, s, labels=y),
        "grad": lambda y: opt.grad(x, s, labels=y),
        "evaluate": lambda y: net.evaluate(x, s, labels=y),
        "infer_context": lambda y: net.infer_context(x, labels=y),
        "infer_context_batch": lambda y: net.infer_context_batch(x, labels=y),
    }


@pytest.mark.parametrize("kind", sorted(BAD_LABELS))
def test_labels_that_conversion_would_change_are_refused(kind):
    labels, exc = BAD_LABELS[kind]
    x, s, _ = batch()
    with circle_net() as net, wm.Optimizer(net, lr=0.1) as opt:
        before = net.params()
        for name, call in _label_calls(net, opt, x, s).items():
            with pytest.raises(exc):
                call(labels)
            np.testing.assert_array_equal(net.params(), before, err_msg=name)
        assert opt.steps == 0


def test_labels_that_convert_exactly_are_accepted():
    x, s, y = batch()
    with circle_net() as net:
        want = net.evaluate(x, s, labels=y)
        for same in (y.astype(np.float64), y.astype(np.int64), y.astype(np.uint8),
                     y.astype(bool), list(map(int, y))):
            assert net.evaluate(x, s, labels=same) == want


BAD_FLOATS = {
    "complex": (lambda a: a.astype(np.complex64) + 1j, TypeError),
    "strings": (lambda a: a.astype(str), TypeError),
    "objects": (lambda a: a.astype(object), TypeError),
}


@pytest.mark.parametrize("kind", sorted(BAD_FLOATS))
@pytest.mark.parametrize("arg", ["x", "s", "targets", "params", "state", "weights"])
def test_float_arrays_of_non_real_data_are_refused(kind, arg):
    bad, exc = BAD_FLOATS[kind]
    x, s, y = batch()
    with circle_net() as net, wm.Optimizer(net, kind=wm.OptKind.MOMENTUM) as opt:
        before = net.params()
        calls = {
            "x": lambda: net.infer(bad(x), s),
            "s": lambda: net.infer(x, bad(s)),
            "targets": lambda: net.evaluate(x, s, targets=bad(np.zeros((6, 2), np.float32))),
            "params": lambda: net.set_params(bad(before)),
            "state": lambda: opt.set_state(bad(opt.state()), 1),
            "weights": lambda: net.set_control_point(0, 0, w=bad(net.control_point(0, 0)[0])),
        }
        with pytest.raises(exc):
            calls[arg]()
        np.testing.assert_array_equal(net.params(), before)


# --------------------------------------------------------------------------
# Every layout numpy has: the same numbers
# --------------------------------------------------------------------------

def _layouts(a):
    """a (2-D float32) in other layouts holding the same values."""
    wide = np.zeros((a.shape[0], 2 * a.shape[1]), np.float64)
    wide[:, ::2] = a
    rev = np.ascontiguousarray(a[::-1])
    be = a.astype(">f4")
    ro = a.copy()
    ro.flags.writeable = False
    return {
        "fortran": np.asfortranarray(a),
        "column stride 2": wide[:, ::2],
        "negative row stride": rev[::-1],
        "big-endian": be,
        "read-only": ro,
        "float64": a.astype(np.float64),
        "float16-exact": a.astype(np.float16).astype(np.float32),  # compared to itself below
        "list": a.tolist(),
    }


@pytest.mark.parametrize("layout", sorted(_layouts(np.zeros((2, 2), np.float32))))
def test_every_input_layout_gives_the_same_numbers(layout):
    x, s, y = batch(n=8, n_in=4)
    with circle_net(n_in=4) as net:
        xin = _layouts(x)[layout]
        ref = np.asarray(xin, np.float32)
        want = net.infer(np.ascontiguousarray(ref), s)
        np.testing.assert_array_equal(net.infer(xin, s), want)
        sl = _layouts(s.reshape(-1, 1))[layout]
        s_in = sl if isinstance(sl, list) else sl.reshape(-1) if sl.flags.c_contiguous else sl[:, 0]
        np.testing.assert_array_equal(net.infer(ref, s_in),
                                      net.infer(ref, np.asarray(s_in, np.float32).reshape(-1)))
        assert net.evaluate(xin, s, labels=y) == net.evaluate(ref, s, labels=y)


def _unaligned(a):
    """a copy of a whose data starts one byte past an aligned address."""
    raw = bytearray(a.nbytes + 1)
    u = np.frombuffer(raw, a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned
    return u


def test_unaligned_arrays_reach_c_aligned(recorder):
    # A float* or int32_t* off its alignment is undefined behaviour in C
    # (UBSan reports it; vector loads may fault): such arrays are copied.
    x, s, y = batch(n=5)
    with circle_net() as net:
        want = net.infer(x, s)
        wloss = net.evaluate(x, s, labels=y)
        recorder.calls.clear()
        np.testing.assert_array_equal(net.infer(_unaligned(x), _unaligned(s)), want)
        assert net.evaluate(_unaligned(x), _unaligned(s), labels=_unaligned(y)) == wloss
        addr = lambda p: ctypes.cast(p, ctypes.c_void_p).value  # noqa: E731
        for name, args in recorder.calls:
            if name == "wm_infer":
                assert addr(args[1]) % 4 == 0 and addr(args[2]) % 4 == 0
            if name == "wm_evaluate":
                b = args[1]._obj
                assert all(addr(p) % 4 == 0 for p in (b.x, b.s, b.labels))
        assert recorder.names().count("wm_evaluate") == 1
        with pytest.raises(ValueError):
            net.infer(x, s, out=_unaligned(np.zeros((5, 2), np.float32)))


def test_one_context_broadcast_equals_it_repeated():
    x, _, _ = batch(n=5)
    with circle_net() as net:
        want = net.infer(x, np.full(5, 0.3, np.float32))
        for one in (0.3, [0.3], np.float32(0.3), np.broadcast_to(np.float32(0.3), (5,))):
            np.testing.assert_array_equal(net.infer(x, one), want)


def test_output_buffers_that_cannot_take_the_result_are_refused():
    x, s, _ = batch(n=4)
    with circle_net() as net:
        good = np.empty((4, 2), np.float32)
        ro = np.empty((4, 2), np.float32)
        ro.flags.writeable = False
        bad = {
            "float64": np.empty((4, 2), np.float64),
            "big-endian": np.empty((4, 2), ">f4"),
            "fortran": np.empty((2, 4), np.float32).T,
            "strided": np.empty((4, 4), np.float32)[:, ::2],
            "read-only": ro,
            "wrong shape": np.empty((2, 4), np.float32),
            "flat": np.empty(8, np.float32),
            "a list": [[0.0, 0.0]] * 4,
        }
        for name, out in bad.items():
            if isinstance(out, np.ndarray) and out.flags.writeable:
                out[...] = 7
            with pytest.raises(ValueError):
                net.infer(x, s, out=out)
            if isinstance(out, np.ndarray):
                assert np.all(out == 7) or not out.flags.writeable, name
        assert net.infer(x, s, out=good) is good


# --------------------------------------------------------------------------
# Lifetimes: C memory outlives every user, freed exactly once
# --------------------------------------------------------------------------

def _frees(rec, addr):
    return [n for n, a in rec.calls if n.startswith("wm_") and n.endswith("_free") and a == (addr,)]


def test_params_view_outlives_close(recorder):
    net = circle_net()
    addr = net._ptr
    v = net.params(copy=False)
    part = v[3:9]                    # a view of the view keeps it too
    want = v.copy()
    net.close()
    assert net.closed and _frees(recorder, addr) == []   # the view still reads it
    np.testing.assert_array_equal(v, want)
    del v
    gc.collect()
    assert _frees(recorder, addr) == []
    np.testing.assert_array_equal(part, want[3:9])
    del part
    assert _frees(recorder, addr) == ["wm_net_free"]


def test_grad_buffer_view_outlives_optimizer_and_net(recorder):
    x, s, y = batch()
    net = circle_net()
    opt = wm.Optimizer(net)
    opt.grad(x, s, labels=y)
    g = opt.grad_buffer()
    want = g.copy()
    op, np_ = opt._ptr, net._ptr
    net.close()                      # closes opt too
    assert opt.closed
    assert _frees(recorder, np_) == [] and _frees(recorder, op) == []
    g *= 2                           # writable, reaches memory still owned
    np.testing.assert_array_equal(g, 2 * want)
    del g
    # the optimizer's memory first, then the net's it referred to
    frees = [(n, a) for n, a in recorder.calls
             if n.startswith("wm_") and n.endswith("_free") and a in ((op,), (np_,))]
    assert frees == [("wm_optimizer_free", (op,)), ("wm_net_free", (np_,))]


def _close_midcall(monkeypatch, target_call, closer):
    """Patch wm._lib so that, when target_call starts, another thread runs
    closer() (and finishes) before the C function runs."""
    def hook(name):
        if name == target_call:
            t = threading.Thread(target=closer)
            t.start()
            t.join()
    rec = Recorder(wm._lib, hook)
    monkeypatch.setattr(wm, "_lib", rec)
    return rec


@pytest.mark.parametrize("who", ["net", "manifold-of-net"])
def test_close_in_another_thread_during_infer_waits_for_it(monkeypatch, who):
    x, s, _ = batch()
    net = circle_net()
    want = net.infer(x, s)
    addr = net._ptr
    rec = _close_midcall(monkeypatch, "wm_infer", net.close)
    got = net.infer(x, s)            # closed under it, by another thread
    np.testing.assert_array_equal(got, want)
    names = rec.names()
    assert net.closed
    assert names.index("wm_net_free") > names.index("returned wm_infer"), names
    assert _frees(rec, addr) == ["wm_net_free"]
    if who == "manifold-of-net":     # a borrowed handle keeps its owner's memory
        net2 = circle_net()
        m = net2.manifold
        rec2 = _close_midcall(monkeypatch, "wm_manifold_gram", net2.close)
        m.gram()
        names = rec2.names()
        assert names.index("wm_net_free") > names.index("returned wm_manifold_gram"), names


def test_net_closed_during_a_step_of_its_optimizer_waits_for_it(monkeypatch):
    x, s, y = batch()
    net = circle_net()
    opt = wm.Optimizer(net, lr=0.1)
    rec = _close_midcall(monkeypatch, "wm_step", net.close)
    opt.step(x, s, labels=y)
    names = rec.names()
    assert opt.closed and net.closed
    ret = names.index("returned wm_step")
    assert names.index("wm_optimizer_free") > ret and names.index("wm_net_free") > ret, names
    assert names.index("wm_optimizer_free") < names.index("wm_net_free")


def test_close_races_with_inference_threads():
    # Real threads: each call either runs on live memory or sees the handle
    # closed (ValueError); nothing runs on freed memory (a crash, or ASan).
    x, s, _ = batch(n=64, n_in=16)
    for _ in range(20):
        net = circle_net(hidden=64, n_in=16)
        want = net.infer(x, s)
        bad = []

        def worker():
            for _ in range(50):
                try:
                    got = net.infer(x, s)
                except ValueError:
                    return
                if not np.array_equal(got, want):
                    bad.append(got)
        threads = [threading.Thread(target=worker) for _ in range(3)]
        for t in threads:
            t.start()
        net.close()
        for t in threads:
            t.join()
        assert not bad


@pytest.mark.parametrize("order", ["net first", "optimizer first", "cycle"])
def test_any_release_order_frees_each_handle_once(recorder, order):
    net = circle_net()
    opt = wm.Optimizer(net)
    m = net.manifold                 # borrowed: never freed by itself
    v = opt.grad_buffer()
    op, np_ = opt._ptr, net._ptr
    if order == "net first":
        del net
        del m, v
        del opt
    elif order == "optimizer first":
        del opt, v
        del m
        del net
    else:
        net.trainer = opt            # a cycle: only the collector frees it
        opt.self_ref = opt
        v.flags.writeable = True
        del net, opt, m, v
    gc.collect()
    frees = [(n, a) for n, a in recorder.calls
             if n.startswith("wm_") and n.endswith("_free") and a in ((op,), (np_,))]
    assert frees == [("wm_optimizer_free", (op,)), ("wm_net_free", (np_,))]


def test_custom_basis_callback_lives_as_long_as_the_c_memory(recorder):
    # The net copies the manifold and its callback pointer; a view keeps the
    # net's memory, so the Python callback must live as long.
    def basis(s):
        return np.array([1 - s[0], s[0]], np.float32)
    m = wm.Manifold.custom(basis, dim=1, n_basis=2)
    net = wm.Net(m, 2).dense(2).init(1)
    m.close()
    del m, basis
    x, s, _ = batch(n=3)
    want = net.infer(x, s)
    gc.collect()
    np.testing.assert_array_equal(net.infer(x, s), want)   # the callback is still there
    net.close()


@pytest.mark.parametrize("how", ["copy", "deepcopy", "deepcopy in a list", "pickle"])
def test_copies_are_independent_nets(recorder, how):
    # deepcopy duplicated the pointer: the copy read the freed net after
    # the original closed (n_inputs came back as garbage), then freed it twice.
    x, s, _ = batch(n=3)
    net = circle_net()
    want = net.infer(x, s)
    twin = {"copy": copy.copy, "deepcopy": copy.deepcopy,
            "deepcopy in a list": lambda n: copy.deepcopy([n])[0],
            "pickle": lambda n: pickle.loads(pickle.dumps(n))}[how](net)
    assert twin is not net and twin._ptr != net._ptr
    addr = net._ptr
    net.close()
    np.testing.assert_array_equal(twin.infer(x, s), want)
    twin.close()
    assert _frees(recorder, addr) == ["wm_net_free"]
    with wm.Manifold.circle() as m:
        for c in (copy.copy(m), copy.deepcopy(m)):
            assert c._ptr != m._ptr and c.n_basis == 3
            c.close()


def test_what_cannot_be_copied_says_so():
    net = circle_net()
    with wm.Optimizer(net) as opt:
        for f in (copy.copy, copy.deepcopy, pickle.dumps):
            with pytest.raises(TypeError):
                f(opt)
    with wm.Manifold.custom(lambda s: np.array([1 - s[0], s[0]]), dim=1, n_basis=2) as m:
        cnet = wm.Net(m, 2).dense(2).init(1)
    with pytest.raises(TypeError):
        pickle.dumps(cnet)
    with pytest.raises(TypeError):
        pickle.dumps(net.manifold)
    cnet.close()
    net.close()
