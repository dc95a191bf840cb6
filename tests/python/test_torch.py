"""Tests of wmanifold.torch: a wmanifold net as a torch.nn.Module.

Run by make test-python with the installed package (see test_wmanifold.py).
Skipped, saying so, where PyTorch (Debian: python3-torch) is not installed.
"""

import io
import subprocess
import sys
import zlib

import numpy as np
import pytest

import wmanifold as wm

try:
    import torch
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip("wmanifold.torch needs PyTorch: apt-get install python3-torch",
                allow_module_level=True)

import wmanifold.torch as wmt  # noqa: E402

TOL = 1e-5  # "the same outputs": |torch - C| <= TOL (1 + |C|)


def make_manifold(name):
    if name == "point":
        return wm.Manifold.point()
    if name == "line":
        return wm.Manifold.line()
    if name == "circle":
        return wm.Manifold.circle()
    if name == "fourier3":
        return wm.Manifold.fourier(3)
    if name == "bspline":
        return wm.Manifold.bspline(6, 3)
    if name == "bspline_closed":
        return wm.Manifold.bspline(5, 2, periodic=True)
    if name == "bspline_linear":
        return wm.Manifold.bspline(4, 1)
    if name in ("torus", "cylinder"):
        with wm.Manifold.circle() as a, (wm.Manifold.circle() if name == "torus"
                                         else wm.Manifold.line()) as b:
            return wm.Manifold.product(b, a) if name == "cylinder" else wm.Manifold.product(a, b)
    if name == "nested":  # (line x circle) x bspline: products nest
        with wm.Manifold.line() as a, wm.Manifold.circle() as b, \
                wm.Manifold.product(a, b) as ab, wm.Manifold.bspline(4, 2) as c:
            return wm.Manifold.product(ab, c)
    raise AssertionError(name)


def build(manifold, arch, cond, seed=3):
    with make_manifold(manifold) as m:
        if arch == "dense":
            net = wm.Net(m, 5, cond)
            net.dense(7, wm.Activation.TANH).dense(6, wm.Activation.RELU)
            net.dense(4, wm.Activation.SIGMOID).dense(3)
        elif arch == "pool_first":  # a concat net's context channels are pooled too
            net = wm.Net(m, 3 * 8 * 8, cond)
            net.input_shape(3, 8, 8).maxpool(2).conv2d(4, 3, stride=1, pad=0,
                                                       act=wm.Activation.SIGMOID)
            net.dense(5, wm.Activation.RELU).dense(2)
        else:  # conv and both poolings, then dense
            net = wm.Net(m, 2 * 8 * 8, cond)
            net.input_shape(2, 8, 8).conv2d(4, 3, stride=1, pad=1, act=wm.Activation.RELU)
            net.maxpool(2).conv2d(5, 3, stride=2, pad=1, act=wm.Activation.TANH)
            net.avgpool(2).dense(3)
    net.init(seed)
    return net


def randomise(net, rng):
    """Control points all different (init puts the manifold at a point: W(s)
    would not depend on s, and a wrong basis would go unnoticed)."""
    arch = net.architecture()
    k = 1 if arch["cond"] == wm.Conditioning.CONCAT else net.manifold.n_basis
    for layer, spec in enumerate(arch["layers"]):
        if spec["kind"] not in ("dense", "conv2d"):
            continue  # pooling: no parameters
        info = net.layer_info(layer)
        for kk in range(k):
            w = rng.standard_normal((info.n_out, info.n_in)) / np.sqrt(info.n_in)
            net.set_control_point(layer, kk, w.astype(np.float32),
                                  0.3 * rng.standard_normal(info.n_out).astype(np.float32))


def contexts(dim, n, rng, periodic):
    s = rng.random((n, dim)).astype(np.float32)
    s[:2] = 0.0                     # the domain's edges and the knots are the hard cases
    s[2:4] = 1.0
    if n > 6:
        s[4] = 0.5
        s[5] = 1.0 / 3.0
    for d, p in enumerate(periodic):
        if p and n > 8:
            s[6:8, d] += np.array([2.0, -1.25], np.float32)  # wrapped like the library
    return s


def assert_same(got, want, what=""):
    err = np.abs(got - want) / (1 + np.abs(want))
    assert err.max() <= TOL, f"{what}: max |torch - C| / (1 + |C|) = {err.max():.3g}"


MANIFOLDS = ["point", "line", "circle", "fourier3", "bspline", "bspline_closed",
             "bspline_linear", "torus", "cylinder", "nested"]


@pytest.mark.parametrize("cond", [wm.Conditioning.MANIFOLD, wm.Conditioning.CONCAT],
                         ids=["manifold", "concat"])
@pytest.mark.parametrize("arch", ["dense", "conv", "pool_first"])
@pytest.mark.parametrize("manifold", MANIFOLDS)
def test_same_outputs_as_the_library(manifold, arch, cond):
    rng = np.random.default_rng(hash((manifold, arch, int(cond))) % 2**32)
    with build(manifold, arch, cond) as net:
        randomise(net, rng)
        n = 40
        x = rng.standard_normal((n, net.n_inputs)).astype(np.float32)
        dim = net.context_dim
        per = [net.manifold.periodic(d) for d in range(dim)]
        s = contexts(dim, n, rng, per) if dim else None
        want = net(x, s)
        module = wmt.to_torch(net)
        with torch.no_grad():
            got = module(torch.from_numpy(x), None if s is None else torch.from_numpy(s)).numpy()
        assert got.shape == want.shape
        assert_same(got, want, f"{manifold} {arch} {cond.name}")
        # The outputs really depend on s (else the test proves little).
        if dim and cond == wm.Conditioning.MANIFOLD:
            assert np.abs(want - net(x, s[::-1].copy())).max() > 1e-3


@pytest.mark.parametrize("manifold", ["line", "circle", "torus", "cylinder"])
def test_contexts_in_user_units(manifold, tmp_path):
    """A net with context ranges (wm_net_set_context_range): the module takes
    the same units, also when rebuilt from a saved file."""
    rng = np.random.default_rng(5)
    with wm.Manifold.circle() as c, wm.Manifold.line() as line:
        m = {"line": line, "circle": c}.get(manifold)
        own = None
        if m is None:
            own = wm.Manifold.product(c if manifold == "torus" else line, c)
            m = own
        net = wm.Net(m, 4)
        ranges = [(0.0, 360.0), (-40.0, 60.0)][:m.dim]
        for d, (lo, hi) in enumerate(ranges):
            net.set_context_range(d, lo, hi)
        net.dense(6, wm.Activation.TANH).dense(3).init(2)
        if own is not None:
            own.close()
    randomise(net, rng)
    x = rng.standard_normal((30, 4)).astype(np.float32)
    s = np.stack([lo + (hi - lo) * rng.random(30) for lo, hi in ranges], 1).astype(np.float32)
    want = net(x, s)
    with torch.no_grad():
        got = wmt.to_torch(net)(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    assert_same(got, want, f"{manifold} in units")
    path = tmp_path / "units.wm"
    net.save(path)
    with wm.Net.load(path) as back, torch.no_grad():
        got = wmt.to_torch(back)(torch.from_numpy(x), torch.from_numpy(s)).numpy()
    assert_same(got, want, f"{manifold} in units, loaded")
    net.close()


def test_basis_matches_the_library():
    rng = np.random.default_rng(5)
    for name in MANIFOLDS:
        with make_manifold(name) as m:
            s = contexts(m.dim, 30, rng, [False] * m.dim) if m.dim else np.zeros((30, 0), np.float32)
            want = np.stack([m.basis(row if m.dim else None) for row in s])
            got = wmt.basis(m.spec, torch.from_numpy(s)).numpy()
            assert_same(got, want, name)


def test_fine_tune_in_torch_and_copy_back(tmp_path):
    rng = np.random.default_rng(11)
    with build("circle", "dense", wm.Conditioning.MANIFOLD) as net:
        randomise(net, rng)
        module = wmt.to_torch(net)
        x = torch.from_numpy(rng.standard_normal((64, 5)).astype(np.float32))
        s = torch.from_numpy(rng.random(64).astype(np.float32))
        y = torch.from_numpy(rng.integers(0, 3, 64))
        opt = torch.optim.SGD(module.parameters(), lr=0.1)
        losses = []
        for _ in range(20):
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(module(x, s), y)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0]
        # Gradients reached every control point (W(s) is built inside forward).
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
        module.copy_to(net)
        with torch.no_grad():
            assert_same(net(x.numpy(), s.numpy()), module(x, s).numpy(), "after copy_to")
        # The library's own loss agrees with torch's after the copy.
        c_loss, _ = net.evaluate(x.numpy(), s.numpy(), labels=y.numpy().astype(np.int32))
        with torch.no_grad():
            t_loss = torch.nn.functional.cross_entropy(module(x, s), y).item()
        assert abs(c_loss - t_loss) <= 1e-5 * (1 + abs(t_loss))


@pytest.mark.parametrize("manifold", ["torus", "bspline"])
def test_traced_graph_takes_s_as_an_input(manifold, tmp_path):
    # What ONNX export records: a trace at one s must still be right at another.
    rng = np.random.default_rng(2)
    with build(manifold, "conv", wm.Conditioning.MANIFOLD) as net:
        randomise(net, rng)
        module = wmt.to_torch(net).eval()
        dim = net.context_dim
        x = torch.from_numpy(rng.standard_normal((6, net.n_inputs)).astype(np.float32))
        s1 = torch.from_numpy(rng.random((6, dim)).astype(np.float32))
        s2 = torch.from_numpy(rng.random((6, dim)).astype(np.float32))
        traced = torch.jit.trace(module, (x, s1))
        with torch.no_grad():
            assert_same(traced(x, s2).numpy(), net(x.numpy(), s2.numpy()), "traced at another s")
        f = io.BytesIO()
        torch.onnx.export(module, (x, s1), f, input_names=["x", "s"], output_names=["y"],
                          dynamic_axes={"x": {0: "n"}, "s": {0: "n"}, "y": {0: "n"}},
                          opset_version=13)
        assert len(f.getvalue()) > 1000


def test_custom_manifold_with_and_without_a_torch_basis():
    rng = np.random.default_rng(4)

    def np_basis(s):
        return [1.0, s[0], s[0] ** 2 - 1.0 / 3.0]

    def torch_basis(s):
        return torch.stack([torch.ones_like(s[:, 0]), s[:, 0], s[:, 0] ** 2 - 1.0 / 3.0], 1)

    with wm.Manifold.custom(np_basis, 1, 3) as m:
        for cond in (wm.Conditioning.MANIFOLD, wm.Conditioning.CONCAT):
            net = wm.Net(m, 4, cond).dense(6, wm.Activation.TANH).dense(2).init(1)
            randomise(net, rng)
            x = rng.standard_normal((20, 4)).astype(np.float32)
            s = rng.random((20, 1)).astype(np.float32)
            want = net(x, s)
            for basis_fn in (torch_basis, None):   # None: the library evaluates c(s)
                module = wmt.to_torch(net, basis=basis_fn)
                with torch.no_grad():
                    got = module(torch.from_numpy(x), torch.from_numpy(s)).numpy()
                assert_same(got, want, f"custom {cond.name} basis={basis_fn}")
            net.close()


def test_loaded_net_and_module_repr(tmp_path):
    with build("cylinder", "conv", wm.Conditioning.MANIFOLD) as net:
        randomise(net, np.random.default_rng(9))
        net.save(tmp_path / "n.wm")
    with wm.Net.load(tmp_path / "n.wm") as loaded:
        module = wmt.to_torch(loaded)
        text = repr(module)
        assert "product(line, circle)" in text and "ManifoldConv2d" in text and "Pool2d" in text
        x = np.random.default_rng(1).standard_normal((3, loaded.n_inputs)).astype(np.float32)
        s = np.array([[0.2, 0.9], [1.0, 0.0], [0.0, 0.5]], np.float32)
        with torch.no_grad():
            assert_same(module(torch.from_numpy(x), torch.from_numpy(s)).numpy(), loaded(x, s))
        # one context for the whole batch, as the binding accepts
        with torch.no_grad():
            assert_same(module(torch.from_numpy(x), torch.tensor([0.3, 0.6])).numpy(),
                        loaded(x, [0.3, 0.6]))


# --------------------------------------------------------------------------
# The layer kinds of format 2: residual, norms, FiLM, dropout, global average
# pooling and layers kept at one point
# --------------------------------------------------------------------------

TOL_GRAPH = 2e-5  # nets that normalise: dividing by the spread of a few values magnifies
#                   float32 rounding, in the library and in torch alike (their float32
#                   results were up to 7e-6 apart over 240 random draws of these nets)


def assert_same_graph(got, want, what):
    err = np.abs(got - want) / (1 + np.abs(want))
    assert err.max() <= TOL_GRAPH, f"{what}: max |torch - C| / (1 + |C|) = {err.max():.3g}"


def build_graph(manifold, arch, cond, seed=4):
    """Nets using every new kind; on a manifold net some layers are points.
    mlp: two skips over the same layer (one from the input), layernorm,
    FiLM per feature, dropout. cnn: conv-GN-relu, FiLM per channel, a residual
    block, global average pooling, dense, layernorm, dropout, dense.
    film: the FiLM baseline, point layers each followed by FiLM on the
    manifold."""
    with make_manifold(manifold) as m:
        if arch == "mlp":
            net = wm.Net(m, 6, cond).dense(6, wm.Activation.TANH)       # 0
            net.layernorm().dense(6).residual(0, wm.Activation.RELU)     # 1 2 3
            net.film().residual(-1).residual(0, wm.Activation.TANH)      # 4 5 6
            net.dropout(0.3).dense(8, wm.Activation.SIGMOID).layernorm()  # 7 8 9
            net.dense(3)                                                 # 10
            points = [2, 9]
        elif arch == "cnn":
            net = wm.Net(m, 2 * 6 * 6, cond).input_shape(2, 6, 6)
            net.conv2d(4, 3, 1, 1).groupnorm(2)                          # 0 1
            net.residual(0, wm.Activation.RELU)                          # 2
            net.film().conv2d(4, 3, 1, 1, wm.Activation.RELU)            # 3 4
            net.groupnorm(4).residual(2, wm.Activation.RELU).maxpool(2)  # 5 6 7
            net.film().global_avgpool().dense(12, wm.Activation.TANH)    # 8 9 10
            net.layernorm().dropout(0.2).dense(3)                        # 11 12 13
            points = [0, 5, 11]
        else:  # film baseline
            net = wm.Net(m, 5, cond).dense(8, wm.Activation.RELU).film()
            net.dense(8, wm.Activation.RELU).film().dense(3)
            points = [0, 2, 4]
        if cond == wm.Conditioning.MANIFOLD and m.n_basis > 1:
            for layer in points:
                net.set_layer_manifold(layer, False)
    net.init(seed)
    return net


def randomise_all(net, rng):
    """Every control point of every layer with parameters different; gains
    around 1 so normalised values keep their scale."""
    arch = net.architecture()
    concat = arch["cond"] == wm.Conditioning.CONCAT
    for layer, spec in enumerate(arch["layers"]):
        if spec["kind"] not in ("dense", "conv2d", "layernorm", "groupnorm", "film"):
            continue
        k = 1 if concat or not spec.get("manifold", 1) else net.manifold.n_basis
        w0, b0 = net.control_point(layer, 0)
        for kk in range(k):
            if spec["kind"] in ("dense", "conv2d"):
                w = rng.standard_normal(w0.shape) / np.sqrt(w0.shape[1])
            else:
                w = (1.0 if kk == 0 else 0.0) + 0.5 * rng.standard_normal(w0.shape)
            net.set_control_point(layer, kk, w.astype(np.float32),
                                  0.3 * rng.standard_normal(b0.shape).astype(np.float32))
        if k > 1:
            with pytest.raises(wm.InvalidArgumentError):
                net.control_point(layer, k)


@pytest.mark.parametrize("cond", [wm.Conditioning.MANIFOLD, wm.Conditioning.CONCAT],
                         ids=["manifold", "concat"])
@pytest.mark.parametrize("arch", ["mlp", "cnn", "film"])
@pytest.mark.parametrize("manifold", ["circle", "torus", "bspline", "point"])
def test_new_layer_kinds_same_outputs_as_the_library(manifold, arch, cond, tmp_path):
    rng = np.random.default_rng(zlib.crc32(f"{manifold} {arch} {int(cond)}".encode()))
    with build_graph(manifold, arch, cond) as net:
        randomise_all(net, rng)
        n = 24
        x = rng.standard_normal((n, net.n_inputs)).astype(np.float32)
        dim = net.context_dim
        per = [net.manifold.periodic(d) for d in range(dim)]
        s = contexts(dim, n, rng, per) if dim else None
        want = net(x, s)
        module = wmt.to_torch(net).eval()                # eval: dropout is the identity
        ts = None if s is None else torch.from_numpy(s)
        with torch.no_grad():
            got = module(torch.from_numpy(x), ts).numpy()
        what = f"{manifold} {arch} {cond.name}"
        assert got.shape == want.shape
        assert_same_graph(got, want, what)
        if dim and cond == wm.Conditioning.MANIFOLD:     # the outputs depend on s
            assert np.abs(want - net(x, s[::-1].copy())).max() > 1e-3
        # point layers have one control point in the module too
        arch_d = net.architecture()
        for i, m in enumerate(module.layers):
            if hasattr(m, "control_points"):
                on = arch_d["layers"][i].get("manifold", 1) and arch_d["cond"] == 0
                assert m.control_points.shape[0] == (net.manifold.n_basis if on else 1), what
        # training mode drops (p > 0), eval does not
        if arch != "film":
            module.train()
            with torch.no_grad():
                assert np.abs(module(torch.from_numpy(x), ts).numpy() - want).max() > 1e-4
            module.eval()
        # copy_to writes every kind's control points back unchanged
        with build_graph(manifold, arch, cond, seed=9) as other:
            module.copy_to(other)
            np.testing.assert_allclose(other(x, s), want, rtol=1e-5, atol=1e-5)
        # a saved and loaded net exports the same module
        net.save(tmp_path / "g.wm")
        with wm.Net.load(tmp_path / "g.wm") as back, torch.no_grad():
            assert_same_graph(wmt.to_torch(back).eval()(torch.from_numpy(x), ts).numpy(), want,
                              what + " loaded")


def test_norm_control_points_are_vectors():
    """layernorm gives a gain per feature, groupnorm per channel, FiLM per
    channel on images and per feature after a dense layer; weights_at agrees."""
    with wm.Manifold.circle() as m:
        net = wm.Net(m, 2 * 4 * 4).input_shape(2, 4, 4).conv2d(6, 3, 1, 1).groupnorm(3)
        net.film().layernorm().dense(5).film().init(1)
    for layer, rows in [(1, 6), (2, 6), (3, 6 * 4 * 4), (5, 5)]:
        w, b = net.control_point(layer, 1)
        assert w.shape == (rows, 1) and b.shape == (rows,)
        w, b = net.weights_at(layer, [0.25])
        assert w.shape == (rows, 1) and b.shape == (rows,)
        np.testing.assert_array_equal(w, 1.0)            # initialised to g = 1, b = 0
        np.testing.assert_array_equal(b, 0.0)
    net.close()


def test_norm_eps_on_inputs_of_small_spread():
    """Inputs whose variance is of the order of eps (1e-5): the outputs
    depend on eps and on the biased variance, so the module must use both as
    the library does."""
    rng = np.random.default_rng(8)
    with wm.Manifold.circle() as m:
        nets = [wm.Net(m, 6).layernorm().dense(3),
                wm.Net(m, 2 * 3 * 3).input_shape(2, 3, 3).groupnorm(2).dense(3)]
    for net in nets:
        net.init(2)
        randomise_all(net, rng)
        x = (0.004 * rng.standard_normal((10, net.n_inputs))).astype(np.float32)
        s = rng.random((10, 1)).astype(np.float32)
        want = net(x, s)
        with torch.no_grad():
            got = wmt.to_torch(net)(torch.from_numpy(x), torch.from_numpy(s)).numpy()
        assert_same_graph(got, want, repr(net))
        net.close()


def test_graph_module_traces_with_s_as_an_input():
    rng = np.random.default_rng(3)
    with build_graph("circle", "cnn", wm.Conditioning.MANIFOLD) as net:
        randomise_all(net, rng)
        module = wmt.to_torch(net).eval()
        x = torch.from_numpy(rng.standard_normal((5, net.n_inputs)).astype(np.float32))
        s1 = torch.from_numpy(rng.random((5, 1)).astype(np.float32))
        s2 = torch.from_numpy(rng.random((5, 1)).astype(np.float32))
        traced = torch.jit.trace(module, (x, s1))
        with torch.no_grad():
            assert_same(traced(x, s2).numpy(), net(x.numpy(), s2.numpy()), "traced graph net")


def test_importing_wmanifold_does_not_import_torch():
    code = "import sys, wmanifold; print('torch' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"
