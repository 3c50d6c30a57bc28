"""Domke's unrolled energy minimisation (catalog H2): `domke_gd`, `domke_heavy_ball`, `domke_lbfgs`.

References (float64), all independent of the specs' formulas: numpy loops with the energy's gradient
written out by hand (A x - b + c W^T rho'(W x)), `numpy.linalg.solve` for the quadratic's minimiser, a
numpy two-loop recursion written from Nocedal & Wright Alg. 7.4 with the analytic exact line search
(-g^T d / d^T A d), `scipy.optimize.minimize(method='L-BFGS-B')`, central finite differences and the
implicit-function gradient -(d^2E/dx dtheta)^T H^{-1} grad l at a Newton-converged minimiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical, best_on_grid

optimize = pytest.importorskip("scipy.optimize")
pytestmark = pytest.mark.usefixtures("one_torch_thread")

N = 8


def _spd(n, kappa, seed):
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    eig = np.linspace(1.0, kappa, n)
    return (q * eig) @ q.T, eig[0], eig[-1]


def _diff(n):
    return np.eye(n)[1:] - np.eye(n)[:-1]


def _grad(A, D, c, b, x):
    """grad_x of 1/2 x^T A x - b^T x + c sum log(1 + (D x)^2), by hand."""
    u = D @ x
    return A @ x - b + c * D.T @ (2 * u / (1 + u ** 2))


def _energy(A, D, c, b, x):
    return 0.5 * x @ A @ x - b @ x + c * np.sum(np.log1p((D @ x) ** 2))


def _hess(A, D, c, x):
    u = D @ x
    return A + c * D.T @ np.diag(2 * (1 - u ** 2) / (1 + u ** 2) ** 2) @ D


def _net(name, layers, **kw):
    return unroll.load(name, layers=layers)(**kw)


def _run(net, b):
    out = net(torch.tensor(b))
    return (out[0] if isinstance(out, tuple) else out).detach().numpy()


# ------------------------------------------------------------------ (a) GD and heavy ball
@pytest.mark.parametrize("c0", [0.0, 0.3])
def test_gd_and_heavy_ball_equal_their_numpy_iterations(c0):
    A, _, L = _spd(N, 100.0, 0)
    D = _diff(N)
    B = np.random.default_rng(1).standard_normal((3, N))
    alpha, beta = 1 / (L + 4 * c0 * 2), 0.6
    gd = _run(_net("domke_gd", 30, A=A, D=D, c0=c0, alpha0=alpha), B)
    hb = _run(_net("domke_heavy_ball", 30, A=A, D=D, c0=c0, alpha0=alpha, beta0=beta), B)
    for i, b in enumerate(B):
        x = np.zeros(N)
        for _ in range(30):
            x = x - alpha * _grad(A, D, c0, b, x)
        np.testing.assert_allclose(gd[i], x, rtol=1e-11, atol=1e-13)
        x, xp = np.zeros(N), np.zeros(N)
        for _ in range(30):
            x, xp = x - alpha * _grad(A, D, c0, b, x) + beta * (x - xp), x
        np.testing.assert_allclose(hb[i], x, rtol=1e-11, atol=1e-13)


def test_gd_and_heavy_ball_converge_to_the_solve_and_heavy_ball_is_ahead():
    A, mu, L = _spd(N, 100.0, 2)
    D = _diff(N)
    B = np.random.default_rng(3).standard_normal((2, N))
    star = np.linalg.solve(A, B.T).T
    kappa = L / mu
    alpha_hb = 4 / (np.sqrt(L) + np.sqrt(mu)) ** 2
    beta_hb = ((np.sqrt(kappa) - 1) / (np.sqrt(kappa) + 1)) ** 2
    def err(x):
        return np.linalg.norm(x - star) / np.linalg.norm(star)

    gd_k = _run(_net("domke_gd", 300, A=A, D=D, alpha0=1 / L), B)
    hb_k = _run(_net("domke_heavy_ball", 300, A=A, D=D, alpha0=alpha_hb, beta0=beta_hb), B)
    assert err(hb_k) < 1e-10  # rate (sqrt(kappa) - 1)/(sqrt(kappa) + 1) = 0.82 per step
    assert err(hb_k) < 1e-6 * err(gd_k)  # heavy ball is far ahead after K = 300 steps
    gd_long = _run(_net("domke_gd", 3000, A=A, D=D, alpha0=1 / L), B)
    assert err(gd_long) < 1e-10  # GD converges too, at rate 1 - 1/kappa


# ------------------------------------------------------------------ (b) L-BFGS
def _lbfgs_reference(A, b, m, steps, eta=1.0, D=None, c=0.0):
    """Nocedal & Wright Alg. 7.4 (two-loop recursion, H0 = gamma I with eq. 7.20) on
    1/2 x^T A x - b^T x + c sum log(1 + (D x)^2), gradient by hand.  Step: eta times the exact line search
    -g^T d / d^T A d on the quadratic (c = 0); for c > 0 the secant step along d.  Returns the iterates."""
    x = np.zeros_like(b)
    grad = (lambda v: A @ v - b) if c == 0 else (lambda v: _grad(A, D, c, b, v))
    g = grad(x)
    pairs: list[tuple[np.ndarray, np.ndarray]] = []
    xs = [x]
    for _ in range(steps):
        if np.linalg.norm(g) <= 1e-10 * np.linalg.norm(b):
            xs.append(x)
            continue
        q = g.copy()
        alphas = []
        for s, y in reversed(pairs):
            a = s @ q / (y @ s)
            alphas.append(a)
            q = q - a * y
        gamma = pairs[-1][0] @ pairs[-1][1] / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
        r = gamma * q
        for (s, y), a in zip(pairs, reversed(alphas)):
            r = r + s * (a - y @ r / (y @ s))
        d = -r
        t = eta * (-(g @ d) / (d @ A @ d) if c == 0 else -(g @ d) / (d @ (grad(x + d) - g)))
        x_new = x + t * d
        g_new = grad(x_new)
        pairs = (pairs + [(x_new - x, g_new - g)])[-m:]
        x, g = x_new, g_new
        xs.append(x)
    return xs


@pytest.mark.parametrize("m, eta, c0", [(3, 1.0, 0.0), (N, 1.0, 0.0), (3, 0.7, 0.0), (N, 0.7, 0.0), (3, 1.0, 0.2)])
def test_lbfgs_equals_the_two_loop_recursion_of_the_paper(m, eta, c0):
    """With the exact line search on a quadratic, L-BFGS's iterates are CG's whatever the memory and the
    scaling gamma; an inexact step (eta = 0.7) or a non-quadratic energy makes them depend on both."""
    A, _, _ = _spd(N, 100.0, 4)
    D = _diff(N)
    B = np.random.default_rng(5).standard_normal((3, N))
    steps = 7
    net = _net("domke_lbfgs", steps, A=A, D=D, m=m, c0=c0)
    with torch.no_grad():
        net.eta.fill_(eta)
    trace = net.trace(torch.tensor(B))
    for i, b in enumerate(B):
        ref = _lbfgs_reference(A, b, m, steps, eta, D, c0)
        for k in range(steps + 1):
            np.testing.assert_allclose(trace[k]["x"][i].detach().numpy(), ref[k], rtol=1e-9, atol=1e-11)


def test_lbfgs_with_exact_line_search_terminates_in_at_most_n_steps_and_matches_scipy():
    A, _, _ = _spd(N, 100.0, 6)
    D = _diff(N)
    B = np.random.default_rng(7).standard_normal((4, N))
    x, depth = _net("domke_lbfgs", 3 * N, A=A, D=D, m=N)(torch.tensor(B))
    assert int(depth.max()) <= N, depth
    star = np.linalg.solve(A, B.T).T
    np.testing.assert_allclose(x.detach().numpy(), star, rtol=1e-9, atol=1e-11)
    for i, b in enumerate(B):
        res = optimize.minimize(lambda v, b=b: 0.5 * v @ A @ v - b @ v, np.zeros(N), jac=lambda v, b=b: A @ v - b,
                                method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 500})
        np.testing.assert_allclose(x[i].detach().numpy(), res.x, rtol=1e-6, atol=1e-7)


def test_lbfgs_on_the_non_quadratic_energy_reaches_scipys_minimiser_and_freezes():
    A, _, _ = _spd(N, 20.0, 8)
    D = _diff(N)
    c0 = 0.2
    B = 2 * np.random.default_rng(9).standard_normal((2, N))
    x, depth = _net("domke_lbfgs", 40, A=A, D=D, m=5, c0=c0, tol=1e-9)(torch.tensor(B))
    assert int(depth.max()) < 40 and torch.isfinite(x).all()
    for i, b in enumerate(B):
        res = optimize.minimize(lambda v, b=b: _energy(A, D, c0, b, v), np.zeros(N),
                                jac=lambda v, b=b: _grad(A, D, c0, b, v),
                                method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 1000})
        np.testing.assert_allclose(x[i].detach().numpy(), res.x, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------------ (c) hypergradient
def _loss_and_grad_c(name, layers, A, D, c0, b, xt, **kw):
    net = _net(name, layers, A=A, D=D, c0=c0, **kw)
    x = net(torch.tensor(b))
    x = x[0] if isinstance(x, tuple) else x
    loss = 0.5 * torch.sum((x - torch.tensor(xt)) ** 2)
    (g,) = torch.autograd.grad(loss, net.c)
    return loss.item(), g.item()


def test_the_hypergradient_equals_finite_differences_and_approaches_the_implicit_gradient():
    A, _, L = _spd(N, 10.0, 10)
    D = _diff(N)
    rng = np.random.default_rng(11)
    b, xt = 2 * rng.standard_normal(N), rng.standard_normal(N)
    c0, alpha = 0.3, 1 / (L + 8 * 0.3)
    _, g = _loss_and_grad_c("domke_gd", 20, A, D, c0, b, xt, alpha0=alpha)
    h = 1e-5
    fd = (_loss_and_grad_c("domke_gd", 20, A, D, c0 + h, b, xt, alpha0=alpha)[0]
          - _loss_and_grad_c("domke_gd", 20, A, D, c0 - h, b, xt, alpha0=alpha)[0]) / (2 * h)
    assert abs(g - fd) <= 1e-7 * abs(fd)
    # implicit gradient at the minimiser (Newton, from the hand-written gradient and Hessian)
    x = np.linalg.solve(A, b)
    for _ in range(50):
        x = x - np.linalg.solve(_hess(A, D, c0, x), _grad(A, D, c0, b, x))
    u = D @ x
    cross = D.T @ (2 * u / (1 + u ** 2))  # d^2 E / dx dc
    implicit = -cross @ np.linalg.solve(_hess(A, D, c0, x), x - xt)
    gaps = [abs(_loss_and_grad_c("domke_gd", k, A, D, c0, b, xt, alpha0=alpha)[1] - implicit) for k in (10, 40, 200)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] <= 1e-6 * abs(implicit), (gaps, implicit)


# ------------------------------------------------------------------ training
def _signals(count, n, sigma, seed):
    rng = np.random.default_rng(seed)
    clean = np.zeros((count, n))
    for i in range(count):
        cuts = np.sort(rng.choice(np.arange(1, n), size=3, replace=False))
        levels = rng.uniform(-2, 2, size=4)
        clean[i] = np.repeat(levels, np.diff(np.concatenate([[0], cuts, [n]])))
    return clean, clean + sigma * rng.standard_normal(clean.shape)


GRIDS = {
    "domke_gd": [{"c0": c, "alpha0": a} for c in (0.2, 0.4, 0.8) for a in (0.25, 0.5)],
    "domke_heavy_ball": [{"c0": c, "alpha0": a, "beta0": 0.3} for c in (0.2, 0.4, 0.8) for a in (0.25, 0.5)],
    "domke_lbfgs": [{"c0": c, "m": 4} for c in (0.1, 0.2, 0.4, 0.8)],
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_learning_the_energy_beats_the_hand_set_energy_on_held_out_signals(name):
    """Denoising piecewise-constant signals (A = I, b = y, D = differences): the learned filters W,
    prior weight c and steps beat the hand-set energy at its best setting on a grid, at K = 8 steps."""
    torch.manual_seed(0)
    n, layers = 24, 8
    clean, noisy = _signals(320, n, 0.4, 12)
    tclean, tnoisy = _signals(200, n, 0.4, 13)
    D, I = _diff(n), np.eye(n)
    Net = unroll.load(name, layers=layers)

    def out(net, y):
        x = net(y)
        return x[0] if isinstance(x, tuple) else x

    def held_out(net):
        with torch.no_grad():
            return float(torch.mean((out(net, torch.tensor(tnoisy)) - torch.tensor(tclean)) ** 2))

    grid = GRIDS[name]
    classical, best, _ = best_on_grid(lambda i: held_out(Net(A=I, D=D, **grid[i])), range(len(grid)))
    net = Net(A=I, D=D, **grid[best])
    x_train, y_train = torch.tensor(noisy), torch.tensor(clean)
    adam(net.parameters(), lambda: torch.mean((out(net, x_train) - y_train) ** 2), steps=80, lr=1.5e-2)
    assert_beats_classical(held_out(net), classical, 0.9, f"{name} denoising (learned W, c and steps)")
