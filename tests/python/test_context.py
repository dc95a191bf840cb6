"""Context inference from Python: Net.infer_context_batch (wm_infer_context_batch)."""
import numpy as np
import pytest

import wmanifold as wm


def circle_net(seed=3, loss=wm.Loss.SOFTMAX_CE, n_out=3):
    with wm.Manifold.circle() as m:
        net = wm.Net(m, 2)
    net.dense(6, wm.Activation.TANH).dense(n_out).set_loss(loss).init(seed)
    # a fresh net is the same at every context: spread it over the circle
    rng = np.random.default_rng(seed)
    net.set_params(rng.standard_normal(net.params().size).astype(np.float32))
    return net


def test_shared_agrees_with_infer_context_and_evaluate():
    rng = np.random.default_rng(5)
    with circle_net() as net:
        x = rng.standard_normal((20, 2)).astype(np.float32)
        y = np.argmax(net.infer(x, np.full(20, 0.3, np.float32)), axis=1).astype(np.int32)
        s, loss = net.infer_context_batch(x, labels=y)
        assert s.shape == (1,) and 0.0 <= s[0] < 1.0
        assert s[0] == net.infer_context(x, labels=y)[0]
        l_eval, _ = net.evaluate(x, np.full(20, s[0], np.float32), labels=y)
        assert abs(loss - l_eval) <= 1e-5 * max(1.0, abs(l_eval))
        l_true, _ = net.evaluate(x, np.full(20, 0.3, np.float32), labels=y)
        assert loss <= l_true + 1e-6


def test_per_sample_shapes_and_each_loss():
    rng = np.random.default_rng(6)
    with circle_net() as net:
        x = rng.standard_normal((7, 2)).astype(np.float32)
        s, loss = net.infer_context_batch(x, shared=False)        # entropy
        assert s.shape == (7, 1) and loss.shape == (7,)
        out = net.infer(x, s[:, 0])
        p = np.exp(out - out.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        entropy = -(p * np.log(p)).sum(axis=1)
        np.testing.assert_allclose(loss, entropy, rtol=1e-4, atol=1e-6)


def test_mse_targets_and_errors():
    rng = np.random.default_rng(7)
    with circle_net(loss=wm.Loss.MSE, n_out=2) as net:
        x = rng.standard_normal((5, 2)).astype(np.float32)
        t = net.infer(x, np.full(5, 0.7, np.float32))
        s, loss = net.infer_context_batch(x, targets=t)
        assert loss <= 1e-6
        d = abs(s[0] - 0.7)
        assert min(d, 1 - d) < 1e-3
        with pytest.raises(wm.WmError) as e:          # an MSE net with neither
            net.infer_context_batch(x)
        assert e.value.status == wm.Status.EINVAL and e.value.message
    with circle_net() as net:
        x = np.ones((3, 2), np.float32)
        with pytest.raises(wm.WmError) as e:
            net.infer_context_batch(x, labels=np.array([0, 3, 1], np.int32))
        assert e.value.status == wm.Status.EINVAL
        x[1, 1] = np.nan
        with pytest.raises(wm.WmError) as e:
            net.infer_context_batch(x, shared=False)
        assert e.value.status == wm.Status.EINVAL
