"""`history_sum(beta, x)` and `num_layers`: dense (history-cognizant) unrolling.

A generic dense proximal-gradient spec reduces to ISTA with one-hot weights and to FISTA with the
two-tap momentum weights, layer by layer (numpy references); `--layers` resizes the weight table.
"""

import numpy as np
import torch
import unroll
from reference import soft
from unroll.compiler.driver import compile_source

SPEC = """
spec dense_pgd "dense proximal gradient"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
let L = opnorm(A)^2
param beta : real[num_layers] = onehot(layer, num_layers)  learned per_layer
state x : real[m] = 0
layers 2 * 3
step:
    let u = history_sum(beta, x)
    x = soft(u - A.T @ (A @ u - y) / L, lam / L)
output x
"""


def build(tmp_path, **options):
    path = tmp_path / "dense_pgd.unroll"
    path.write_text(SPEC)
    return unroll.load(str(path), **options)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((10, 20)), rng.standard_normal((3, 10))


def states(module, y):
    return [s["x"].detach().numpy() for s in module.trace(torch.from_numpy(y))]


def test_one_hot_history_weights_give_ista(tmp_path):
    A, y = data()
    L = np.linalg.norm(A, 2) ** 2
    x, ref = np.zeros((3, 20)), [np.zeros((3, 20))]
    for _ in range(6):
        x = soft(x - (x @ A.T - y) @ A / L, 0.1 / L)
        ref.append(x)
    got = states(build(tmp_path)(A=A), y)
    assert max(np.abs(g - r).max() for g, r in zip(got, ref)) < 1e-14


def test_momentum_history_weights_give_fista(tmp_path):
    A, y = data(1)
    L = np.linalg.norm(A, 2) ** 2
    x = v = np.zeros((3, 20))
    t, ref = 1.0, [x]
    for _ in range(6):
        x_new = soft(v - (v @ A.T - y) @ A / L, 0.1 / L)
        t_new = (1 + np.sqrt(1 + 4 * t * t)) / 2
        v = x_new + (t - 1) / t_new * (x_new - x)
        x, t = x_new, t_new
        ref.append(x)
    ts = [1.0]
    for _ in range(6):
        ts.append((1 + np.sqrt(1 + 4 * ts[-1] ** 2)) / 2)
    beta = np.zeros((6, 6))
    beta[0, 0] = 1
    for layer in range(1, 6):
        c = (ts[layer - 1] - 1) / ts[layer]
        beta[layer, layer], beta[layer, layer - 1] = 1 + c, -c
    module = build(tmp_path)(A=A)
    with torch.no_grad():
        module.beta.copy_(torch.from_numpy(beta))
    got = states(module, y)
    assert max(np.abs(g - r).max() / np.abs(r).max() for g, r in zip(got[1:], ref[1:])) < 1e-12


def test_weights_above_the_diagonal_are_unused_and_get_no_gradient(tmp_path):
    A, y = data(2)
    module = build(tmp_path)(A=A)
    module(torch.from_numpy(y)).sum().backward()
    grad = module.beta.grad.numpy()
    assert np.all(np.triu(grad, 1) == 0) and np.abs(np.tril(grad)).sum() > 0


def test_num_layers_follows_the_layers_option(tmp_path):
    A, _ = data()
    module = build(tmp_path, layers=3)(A=A)
    assert tuple(module.beta.shape) == (3, 3)
    np.testing.assert_array_equal(module.beta.detach().numpy(), np.eye(3))
    source = compile_source(SPEC, "dense_pgd.unroll")
    assert "rt.history_sum(beta[layer], x_history)" in source
