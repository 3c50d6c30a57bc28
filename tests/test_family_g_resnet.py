"""Family G1 (catalog §5): `resnet_euler`, the neural ODE / ResNet as explicit Euler steps, and the
sub-network features it uses (an MLP with the time as an extra input, sizes from `int`
hyperparameters and from a dim the constructor takes).  float64 throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _stable_matrix(n: int, seed: int = 0) -> np.ndarray:
    """A stable A (eigenvalues with negative real parts): a damped rotation plus a small random part."""
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n)) / np.sqrt(n)
    return 0.5 * (M - M.T) - 0.6 * np.eye(n) + 0.1 * M


def _linear_ode_net(A: np.ndarray, layers: int, T: float):
    """resnet_euler with f(x, t) = A x: a depth-1 MLP (one linear layer) whose weight is [A | 0]."""
    n = A.shape[0]
    net = unroll.load("resnet_euler", layers=layers)(n=n, T=T, depth=1, dtype=torch.float64)
    linear = net.f.body[0]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(np.hstack([A, np.zeros((n, 1))])))
        linear.bias.zero_()
    return net


def test_linear_ode_converges_at_first_order_to_expm():
    from scipy.linalg import expm

    n, T = 4, 1.0
    A = _stable_matrix(n)
    x0 = np.random.default_rng(1).standard_normal((3, n))
    exact = x0 @ expm(A * T).T
    errors = []
    for layers in (10, 20, 40, 80):
        x = _linear_ode_net(A, layers, T)(torch.from_numpy(x0)).detach().numpy()
        # the Euler map is (I + hA)^L exactly: a dense reference for the network itself
        step = np.linalg.matrix_power(np.eye(n) + (T / layers) * A, layers)
        np.testing.assert_allclose(x, x0 @ step.T, rtol=1e-12, atol=1e-13)
        errors.append(np.abs(x - exact).max())
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    assert all(1.8 <= r <= 2.2 for r in ratios), (errors, ratios)


def test_equals_torchdiffeq_euler_with_a_nonlinear_time_dependent_mlp():
    torchdiffeq = pytest.importorskip("torchdiffeq")
    torch.manual_seed(0)
    n, T, layers = 3, 2.0, 16
    net = unroll.load("resnet_euler", layers=layers)(n=n, T=T, width=8, depth=3, dtype=torch.float64)
    x0 = torch.randn(5, n, dtype=torch.float64)

    def f(t, x):  # the same network, time appended as the last feature
        return net.f(torch.cat([x, t.expand(x.shape[0], 1)], dim=1))

    h = T / layers
    times = torch.tensor([0.0, T], dtype=torch.float64)
    reference = torchdiffeq.odeint(f, x0, times, method="euler", options={"step_size": h})[-1]
    out = net(x0)
    torch.testing.assert_close(out, reference, rtol=1e-12, atol=1e-12)
    # the time input matters: a network that ignored it would not match a time-shifted integration
    shifted = torchdiffeq.odeint(f, x0, times + 1.0, method="euler", options={"step_size": h})[-1]
    assert (out - shifted).abs().max() > 1e-6


def test_resnet_euler_trains_and_keeps_its_sizes():
    torch.manual_seed(0)
    net = unroll.load("resnet_euler", layers=4)(n=2, width=5, depth=2, dtype=torch.float64)
    assert net.f.body[0].weight.shape == (5, 3) and net.f.body[2].weight.shape == (2, 5)
    x0 = torch.randn(8, 2, dtype=torch.float64)
    loss = (net(x0) - 2 * x0).pow(2).mean()
    loss.backward()
    assert net.f.body[0].weight.grad.abs().sum() > 0


def test_constructor_errors_name_the_size():
    Net = unroll.load("resnet_euler", layers=2)
    with pytest.raises(TypeError, match="pass n="):
        Net()
    with pytest.raises(ValueError, match="width"):
        Net(n=3, width=0)
    net = Net(n=3, dtype=torch.float64)
    with pytest.raises(ValueError, match="x0"):
        net(torch.zeros(2, 4, dtype=torch.float64))


def test_resnet_variant_with_one_network_per_layer_is_a_numpy_resnet(tmp_path):
    """The ResNet reading of the same spec (`f` per_layer: theta_l per layer) against a numpy residual network."""
    from unroll.compiler.driver import shipped_specs

    text = shipped_specs()["resnet_euler"].read_text()
    old = "width=width, depth=depth)  learned shared"
    assert text.count(old) == 1
    path = tmp_path / "resnet.unroll"
    path.write_text(text.replace(old, "width=width, depth=depth)  learned per_layer"))
    torch.manual_seed(1)
    n, T, layers = 3, 1.5, 5
    net = unroll.load(path, layers=layers)(n=n, T=T, width=6, depth=2, dtype=torch.float64)
    x0 = np.random.default_rng(2).standard_normal((4, n))
    x, h = x0.copy(), T / layers
    for l in range(layers):
        W1, b1 = (p.detach().numpy() for p in (net.f[l].body[0].weight, net.f[l].body[0].bias))
        W2, b2 = (p.detach().numpy() for p in (net.f[l].body[2].weight, net.f[l].body[2].bias))
        features = np.hstack([x, np.full((4, 1), l * h)])
        x = x + h * (np.maximum(features @ W1.T + b1, 0) @ W2.T + b2)
    np.testing.assert_allclose(net(torch.from_numpy(x0)).detach().numpy(), x, rtol=1e-12, atol=1e-12)
