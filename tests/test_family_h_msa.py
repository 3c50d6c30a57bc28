"""Family H4 (catalog): `msa_pmp`, training a network by Pontryagin's maximum principle (the method of
successive approximations).  References: autograd's dPhi/dx_t of a hand-written forward pass (the
costates), and, for linear dynamics x_{t+1} = W_t x_t, a numpy MSA whose maximisation step is the
closed-form argmax of the (extended) Hamiltonian.  float64 throughout."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(S=20, d=3, T=3, seed=0):
    rng = np.random.default_rng(seed)
    x0 = rng.standard_normal((S, d))
    y = x0 @ (0.5 * rng.standard_normal((d, d)) / np.sqrt(d)).T
    W0 = np.stack([0.8 * np.eye(d) + 0.1 * rng.standard_normal((d, d)) for _ in range(T)])
    return x0, y, W0


def test_costates_are_minus_the_gradient_of_the_loss_for_a_three_layer_tanh_net():
    x0, y, W0 = _problem(S=6, d=4, T=3, seed=1)
    net = unroll.load("msa_pmp", layers=1)(S=6, d=4, dtype=torch.float64)
    W, loss, p, yq = net(torch.from_numpy(x0), torch.from_numpy(y), torch.from_numpy(W0), torch.from_numpy(x0))
    xs = [torch.from_numpy(x0).requires_grad_(True)]
    for t in range(3):
        xs.append(torch.tanh(xs[t] @ torch.from_numpy(W0[t]).T))
        xs[-1].retain_grad()
    phi = 0.5 * ((xs[3] - torch.from_numpy(y)) ** 2).sum() / 6
    phi.backward()
    for t in range(4):
        torch.testing.assert_close(p[t], -xs[t].grad, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(loss, phi.detach(), rtol=1e-14, atol=0)
    # the final stage: the network with the updated weights at the query inputs
    z = torch.from_numpy(x0)
    for t in range(3):
        z = torch.tanh(z @ W[t].T)
    torch.testing.assert_close(yq, z, rtol=1e-14, atol=1e-15)


def _numpy_msa_linear(x0, y, W0, lam, rho, K):
    """MSA for x_{t+1} = W_t x_t: forward sweep, costates p_t = W_t^T p_{t+1}, and the closed-form
    argmax of sum_s p_s^T W x_s - lam/2 |W|^2 - rho/(2S) sum_s |x_{t+1,s} - W x_s|^2:
    W (lam I + rho X^T X / S) = P^T X + rho X_{t+1}^T X / S."""
    T, S = W0.shape[0], x0.shape[0]
    W, losses = W0.copy(), []
    for _ in range(K):
        X = [x0]
        for t in range(T):
            X.append(X[t] @ W[t].T)
        losses.append(0.5 * ((X[T] - y) ** 2).sum() / S + 0.5 * lam * (W ** 2).sum())
        p = [None] * (T + 1)
        p[T] = -(X[T] - y) / S
        for t in range(T - 1, -1, -1):
            p[t] = p[t + 1] @ W[t]
        W = W.copy()
        for t in range(T):
            M = lam * np.eye(W.shape[1]) + rho * X[t].T @ X[t] / S
            W[t] = np.linalg.solve(M, (p[t + 1].T @ X[t] + rho * X[t + 1].T @ X[t] / S).T).T
    return W, np.array(losses)


def _linear_msa(tmp_path):
    """The shipped spec with linear dynamics f_t(x, W) = W x (tanh removed from its code lines).  The
    dynamics are written once, as `fn f`, and used by the forward sweep, the Hamiltonian of both sweeps
    and the final stage, so that one line is the only one changed."""
    from unroll.compiler.driver import shipped_specs

    lines = shipped_specs()["msa_pmp"].read_text().splitlines()
    code = [line if line.lstrip().startswith("#") else line.replace("tanh(", "(") for line in lines]
    changed = [a for a, b in zip(lines, code) if a != b]
    assert len(changed) == 1 and changed[0].startswith("fn f(x, W) = tanh("), changed
    path = tmp_path / "msa_linear.unroll"
    path.write_text("\n".join(code) + "\n")
    return unroll.load(path, layers=8)


def test_linear_quadratic_msa_equals_the_closed_form_argmax_and_decreases_the_loss_monotonically(tmp_path):
    x0, y, W0 = _problem()
    lam, rho = 0.1, 1.0
    ref_W, ref_losses = _numpy_msa_linear(x0, y, W0, lam, rho, 8)
    zero_weights = 0.5 * (y ** 2).sum() / y.shape[0]  # the objective at W = 0 (the weight decay's pull)
    assert np.all(np.diff(ref_losses) < 0) and ref_losses[-1] < 0.3 * ref_losses[0] and ref_losses[-1] < zero_weights
    net = _linear_msa(tmp_path)(S=20, d=3, alpha=0.65, rho=rho, lam=lam, inner=450, dtype=torch.float64)
    trace = net.trace(torch.from_numpy(x0), torch.from_numpy(y), torch.from_numpy(W0), torch.from_numpy(x0))
    losses = np.array([float(step["loss"].detach()) for step in trace[1:]])
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-12)
    np.testing.assert_allclose(trace[-1]["W"].detach().numpy(), ref_W, rtol=1e-12, atol=1e-13)
    assert np.all(np.diff(losses) < 0)
    # without the penalty (the basic MSA) the same problem diverges
    _, basic = _numpy_msa_linear(x0, y, W0, lam, 0.0, 3)
    assert basic[1] > basic[0] and basic[2] > 10 * basic[0]


def test_msa_trains_the_tanh_network():
    x0, y, W0 = _problem(seed=2)
    y = np.tanh(y)
    net = unroll.load("msa_pmp", layers=15)(S=20, d=3, alpha=0.5, rho=2.0, lam=0.0, inner=20, dtype=torch.float64)
    trace = net.trace(torch.from_numpy(x0), torch.from_numpy(y), torch.from_numpy(W0), torch.from_numpy(x0))
    losses = np.array([float(step["loss"].detach()) for step in trace[1:]])
    assert np.all(np.diff(losses) < 0) and losses[-1] < 0.05 * losses[0], losses


@pytest.mark.parametrize("bad", [{"alpha": 0.0}, {"lam": -1.0}, {"rho": -0.5}])
def test_preconditions_are_checked_at_construction(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        unroll.load("msa_pmp")(S=2, d=2, **bad)
