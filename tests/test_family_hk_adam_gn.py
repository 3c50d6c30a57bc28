"""`unrolled_adam` (catalog H3) and `gauss_newton_psse` (catalog K, the baseline of [41]).

References (float64): `torch.optim.Adam` stepping a parameter (the library's own implementation, not
this spec's formula) and central finite differences of that reference trajectory; a numpy Gauss-Newton
loop with the Jacobian written by hand (J = 2 [H_m v]_m) and `scipy.optimize.least_squares`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical, best_on_grid

optimize = pytest.importorskip("scipy.optimize")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ------------------------------------------------------------------ unrolled Adam
def _problem(batch, k, n, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, k, n)), rng.standard_normal((batch, k)), rng.standard_normal((batch, n))


def _torch_adam(A, b, theta0, steps, lr, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam on f(theta) = 1/2 ||A theta - b||^2: the iterates theta_0 .. theta_K."""
    theta = torch.tensor(theta0, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=lr, betas=betas, eps=eps)
    At, bt = torch.as_tensor(A), torch.as_tensor(b)
    out = [theta.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        (0.5 * torch.sum((At @ theta - bt) ** 2)).backward()
        opt.step()
        out.append(theta.detach().clone())
    return out


@pytest.mark.parametrize("lr, betas", [(0.01, (0.9, 0.999)), (0.3, (0.5, 0.9))])
def test_unrolled_adam_reproduces_torch_optim_adam(lr, betas):
    A, b, theta0 = _problem(3, 6, 4, 0)
    K = 12
    net = unroll.load("unrolled_adam", layers=K)(lr=lr, beta1=betas[0], beta2=betas[1], dtype=torch.float64)
    trace = net.trace(torch.tensor(A), torch.tensor(b), torch.tensor(theta0))
    _, loss = net(torch.tensor(A), torch.tensor(b), torch.tensor(theta0))
    for i in range(3):
        ref = _torch_adam(A[i], b[i], theta0[i], K, lr, betas)
        for t in range(K + 1):
            np.testing.assert_allclose(trace[t]["theta"][i].detach().numpy(), ref[t].numpy(), rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(loss[i].item(), 0.5 * np.sum((A[i] @ ref[-1].numpy() - b[i]) ** 2), rtol=1e-12)


def test_the_gradient_with_respect_to_the_problem_data_equals_finite_differences():
    A, b, theta0 = _problem(1, 5, 3, 1)
    K, lr = 8, 0.05
    At = torch.tensor(A, requires_grad=True)
    net = unroll.load("unrolled_adam", layers=K)(lr=lr, dtype=torch.float64)
    _, loss = net(At, torch.tensor(b), torch.tensor(theta0))
    (grad,) = torch.autograd.grad(loss.sum(), At)

    def f_K(Am):
        th = _torch_adam(Am, b[0], theta0[0], K, lr)[-1].numpy()
        return 0.5 * np.sum((Am @ th - b[0]) ** 2)

    h = 1e-6
    fd = np.zeros_like(A[0])
    for idx in np.ndindex(*A[0].shape):
        Ap, Am = A[0].copy(), A[0].copy()
        Ap[idx] += h
        Am[idx] -= h
        fd[idx] = (f_K(Ap) - f_K(Am)) / (2 * h)
    np.testing.assert_allclose(grad[0].numpy(), fd, rtol=1e-6, atol=1e-8)


def test_learned_step_sizes_beat_adam_at_its_best_constant_step_on_held_out_problems():
    torch.manual_seed(0)
    K, k, n = 6, 8, 5
    train, test = [torch.tensor(a) for a in _problem(128, k, n, 2)], [torch.tensor(a) for a in _problem(64, k, n, 3)]
    Net = unroll.load("unrolled_adam", layers=K)

    def held_out(net):
        with torch.no_grad():
            return float(net(*test)[1].mean())

    classical, best, _ = best_on_grid(lambda lr: held_out(Net(lr=lr, dtype=torch.float64)), [0.03, 0.1, 0.2, 0.3, 0.5, 1.0])
    net = Net(lr=best, dtype=torch.float64)
    adam(net.parameters(), lambda: net(*train)[1].mean(), steps=80, lr=3e-2)
    assert_beats_classical(held_out(net), classical, 0.9, "unrolled_adam, mean f(theta_K)")


# ------------------------------------------------------------------ Gauss-Newton
def _psse(batch, n=6, M=18, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal((M, n, n)) / np.sqrt(n)
    Hs = (G + G.transpose(0, 2, 1)) / 2
    vt = np.concatenate([1 + 0.1 * rng.standard_normal((batch, n // 2)), 0.2 * rng.standard_normal((batch, n - n // 2))], 1)
    z = np.einsum("bi,mij,bj->bm", vt, Hs, vt) + noise * rng.standard_normal((batch, M))
    v0 = vt + 0.1 * rng.standard_normal((batch, n))
    return Hs, vt, z, v0


def _np_gauss_newton(Hs, z, v, steps):
    out = [v]
    for _ in range(steps):
        Hv = np.einsum("mij,j->mi", Hs, v)
        J = 2 * Hv
        v = v + np.linalg.solve(J.T @ J, J.T @ (z - Hv @ v))
        out.append(v)
    return out


def test_gauss_newton_equals_the_numpy_iteration():
    Hs, _, z, v0 = _psse(3)
    K = 5
    trace = unroll.load("gauss_newton_psse", layers=K)(Hs=Hs).trace(torch.tensor(z), torch.tensor(v0))
    for i in range(3):
        ref = _np_gauss_newton(Hs, z[i], v0[i], K)
        for t in range(K + 1):
            np.testing.assert_allclose(trace[t]["v"][i].detach().numpy(), ref[t], rtol=1e-10, atol=1e-12)


def test_gauss_newton_converges_to_scipys_least_squares_solution():
    Hs, vt, z, v0 = _psse(4, seed=1)
    v = unroll.load("gauss_newton_psse", layers=12)(Hs=Hs)(torch.tensor(z), torch.tensor(v0)).detach().numpy()
    for i in range(4):
        res = optimize.least_squares(lambda u, zi=z[i]: np.einsum("i,mij,j->m", u, Hs, u) - zi, v0[i],
                                     jac=lambda u: 2 * np.einsum("mij,j->mi", Hs, u), method="lm",
                                     xtol=1e-15, ftol=1e-15, gtol=1e-15)
        np.testing.assert_allclose(v[i], res.x, rtol=1e-7, atol=1e-8)  # scipy stops at its own tolerance
        Hv = np.einsum("mij,j->mi", Hs, v[i])  # the optimality condition J^T (z - h(v)) = 0, tightly
        assert np.linalg.norm(2 * Hv.T @ (z[i] - Hv @ v[i])) <= 1e-11 * np.linalg.norm(z[i])
        assert np.linalg.norm(v[i] - vt[i]) < 0.1 * np.linalg.norm(v0[i] - vt[i]) + 0.05
