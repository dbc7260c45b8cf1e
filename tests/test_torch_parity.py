"""Parity with PyTorch (batch_norm + autograd, BatchNorm1d), when torch is installed.

torch is not a dependency of bncli nor of the test extra: these tests are skipped
without it (pip install torch==2.13.0 to run them).
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest

from bncli import core
from bncli.io import read

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.extras


def torch_batchnorm(x, g, w, b, eps=1e-5):
    xt = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    y = torch.nn.functional.batch_norm(xt, None, None, wt, bt, training=True, eps=eps)
    y.backward(torch.tensor(g, dtype=torch.float64))
    return y.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()


def relative(a, b):
    return np.max(np.abs(a - b), axis=0) / np.max(np.abs(b), axis=0)


@pytest.mark.parametrize("name", ["unit", "blood", "mixed", "offset", "tiny", "huge"])
def test_forward_and_backward_match_torch(name):
    rng = np.random.default_rng(5)
    x = datasets.named(rng)[name]
    w, b = datasets.parameters(rng, x.shape[1])
    g = rng.standard_normal(x.shape)
    # torch's own variance loses digits on large offsets; batch norm is exactly shift-invariant,
    # so torch gets the data shifted by its first row (exact: x − x₀ is exact when x ≈ x₀).
    y, dx, dw, db = torch_batchnorm(x - x[0], g, w, b)
    bn = core.forward(x, w, b)
    grads = core.backward(g, bn)
    assert np.all(relative(bn.y, y) < 1e-12)
    assert np.all(relative(grads.dx, dx) < 1e-12)
    np.testing.assert_allclose(grads.dw, dw, rtol=1e-12)
    np.testing.assert_allclose(grads.db, db, rtol=1e-12)


def test_jacobian_matches_torch_autograd():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((7, 2)) * 1e6 + 3e7
    w, b = np.array([1.5, -0.5]), np.array([0.1, 0.2])

    def f(t):
        return torch.nn.functional.batch_norm(t, None, None, torch.tensor(w), torch.tensor(b), training=True, eps=1e-5)

    jac = torch.autograd.functional.jacobian(f, torch.tensor(x - x[0])).numpy()  # (k, n, k, n)
    bn = core.forward(x, w, b)
    for c in range(2):
        np.testing.assert_allclose(core.jacobian(bn, c), jac[:, c, :, c], rtol=1e-12, atol=1e-12 * np.abs(jac).max())


def test_two_training_batches_then_eval_match_batchnorm1d(bncli, tmp_path):
    rng = np.random.default_rng(3)
    n = 3
    w, b = np.array([0.7, -1.3, 2.0]), np.array([0.5, 0.0, -0.25])
    layer = torch.nn.BatchNorm1d(n, eps=1e-5, momentum=0.2, dtype=torch.float64)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor(w))
        layer.bias.copy_(torch.tensor(b))
    running = tmp_path / "run.json"
    weight, bias = ",".join(map(repr, w.tolist())), ",".join(map(repr, b.tolist()))
    for i, k in enumerate((8, 5)):
        x = rng.standard_normal((k, n)) * [1.0, 1e3, 1e-3] + [5.0, -2e3, 1e-2]
        path = tmp_path / f"train{i}.csv"
        np.savetxt(path, x, delimiter=",", fmt="%.17g")
        layer.train()
        layer(torch.tensor(x))
        args = ["forward", path, "-w", weight, "-b", bias, "--momentum", "0.2", "--save-running", running]
        assert bncli(*args, *(["--running", running] if i else [])).code == 0
    saved = json.loads(running.read_text())
    np.testing.assert_allclose(saved["mean"], layer.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(saved["var"], layer.running_var.numpy(), rtol=1e-12)

    x = rng.standard_normal((6, n)) * [1.0, 1e3, 1e-3] + [5.0, -2e3, 1e-2]
    g = rng.standard_normal((6, n))
    test, dy = tmp_path / "test.csv", tmp_path / "dy.csv"
    np.savetxt(test, x, delimiter=",", fmt="%.17g")
    np.savetxt(dy, g, delimiter=",", fmt="%.17g")
    layer.eval()
    xt = torch.tensor(x, requires_grad=True)
    y = layer(xt)
    y.backward(torch.tensor(g))
    doc = bncli("grad", test, "--dy", dy, "--eval", "--running", running, "-w", weight, "-b", bias, "-f", "json").json
    forward = bncli("forward", test, "--eval", "--running", running, "-w", weight, "-b", bias).matrix(skip_header=False)
    np.testing.assert_allclose(forward, y.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(doc["dx"], xt.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(doc["dw"], layer.weight.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(doc["db"], layer.bias.grad.numpy(), rtol=1e-12)


def test_sample_matches_torch():
    x = read.read_matrix(str(read.sample_path())).values
    g = read.read_matrix(str(read.sample_path(read.SAMPLE_DY_NAME))).values
    y, dx, _, _ = torch_batchnorm(x, g, np.ones(4), np.zeros(4))
    bn = core.forward(x)
    grads = core.backward(g, bn)
    assert np.all(relative(bn.y, y) < 1e-12) and np.all(relative(grads.dx, dx) < 1e-12)
