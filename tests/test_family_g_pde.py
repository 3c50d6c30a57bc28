"""Family G3 (catalog §5): `pde_net` and its moment-constrained filters (`moment_filter`).  float64;
references: polynomials (exact derivatives), the explicit finite-difference heat scheme written with
numpy, the exact spectral solution of the heat equation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from unroll import runtime as rt
from unroll.compiler.operators import OPERATORS

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DT = torch.float64


def moments(terms, s, order, spacing):
    """M0 and the mask of free moments for the derivative terms [(i, j), ...]: the moment (i, j) is fixed to
    1 / (dx^i dy^j), the moments of total order below i + j + order to 0, the others are free."""
    M0, free = np.zeros((len(terms), s, s)), np.zeros((len(terms), s, s))
    for p, (i, j) in enumerate(terms):
        for a in range(s):
            for b in range(s):
                free[p, a, b] = float(a + b >= i + j + order and (a, b) != (i, j))
        M0[p, i, j] = 1.0 / spacing ** (i + j)
    return M0, free


def test_moment_filter_matches_its_dense_reference_and_gradcheck():
    m = torch.randn(3, 5, 5, dtype=DT, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(rt.moment_filter(m).numpy(), OPERATORS["moment_filter"].reference(m.numpy()),
                               rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(rt.moment_filter, (m[0, :3, :3].clone().requires_grad_(),))


def test_moment_filter_is_linear_with_the_transposed_dense_inverse_as_adjoint():
    """<F m, q> = <m, F^T q> with F^T from the dense moment equations (the backward pass uses it)."""
    g = torch.Generator().manual_seed(1)
    m, q = torch.randn(4, 5, dtype=DT, generator=g).requires_grad_(), torch.randn(4, 5, dtype=DT, generator=g)
    dense = np.stack([OPERATORS["moment_filter"].reference(e.reshape(4, 5)) for e in np.eye(20)], axis=-1)
    dense = dense.reshape(20, 20)  # column k: the filter of the k-th unit moment array
    out = rt.moment_filter(m)
    (vjp,) = torch.autograd.grad(out, m, q)
    adjoint = (dense.T @ q.numpy().reshape(-1)).reshape(4, 5)
    np.testing.assert_allclose(vjp.numpy(), adjoint, rtol=1e-10, atol=1e-10)
    lhs, rhs = float((out.detach() * q).sum()), float((m.detach().numpy() * adjoint).sum())
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)


@pytest.mark.parametrize("s", [3, 5])
def test_moment_constructed_dx_filter_annihilates_constants_and_differentiates_quadratics(s):
    ndimage = pytest.importorskip("scipy.ndimage")
    M0, free = moments([(1, 0)], s, order=2, spacing=1.0)
    rng = np.random.default_rng(s)
    q = rt.moment_filter(torch.from_numpy(M0 + free * rng.standard_normal(free.shape)))[0].numpy()
    n = 12
    x, y = np.meshgrid(np.arange(n, dtype=float), np.arange(n, dtype=float), indexing="ij")  # x: the first axis
    interior = (slice(s, n - s), slice(s, n - s))
    constant = ndimage.convolve(np.full((n, n), 3.7), q, mode="constant")
    assert np.abs(constant[interior]).max() < 1e-12
    a, b, c, d, e = rng.standard_normal(5)
    u = a * x**2 + b * x * y + c * y**2 + d * x + e * y + 1.0
    du = ndimage.convolve(u, q, mode="constant")  # scipy convolves, like conv2 (odd s: the same centre)
    np.testing.assert_allclose(du[interior], (2 * a * x + b * y + d)[interior], rtol=1e-10, atol=1e-10)
    # a free moment of order 3 does change the filter (the constraint leaves something to learn)
    assert np.abs(q - rt.moment_filter(torch.from_numpy(M0))[0].numpy()).max() > 1e-3


def heat_net(n, nu, dt, layers):
    dx = 2 * np.pi / n
    M0, free = moments([(2, 0), (0, 2)], 3, order=1, spacing=dx)
    return unroll.load("pde_net", layers=layers)(M0=M0, free=free, c0=np.full((2, n, n), nu), dt=dt), dx


def heat_fd(u, nu, dt, dx, steps):
    """Explicit finite differences for u_t = nu (u_xx + u_yy), 5-point Laplacian, periodic."""
    for _ in range(steps):
        lap = (np.roll(u, 1, 0) + np.roll(u, -1, 0) + np.roll(u, 1, 1) + np.roll(u, -1, 1) - 4 * u) / dx**2
        u = u + dt * nu * lap
    return u


def heat_exact(u0, nu, t):
    n = u0.shape[-1]
    k = np.fft.fftfreq(n, d=1.0 / n)  # integer wavenumbers on [0, 2 pi)
    decay = np.exp(-nu * (k[:, None] ** 2 + k[None, :] ** 2) * t)
    return np.real(np.fft.ifft2(np.fft.fft2(u0) * decay))


def smooth_field(n, seed):
    rng = np.random.default_rng(seed)
    x = 2 * np.pi * np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="ij")
    out = np.zeros((n, n))
    for kx, ky in ((1, 0), (0, 1), (1, 1), (2, 1), (1, 3)):
        out += rng.standard_normal() * np.cos(kx * X + ky * Y + rng.uniform(0, 2 * np.pi))
    return out


def test_heat_blocks_are_the_finite_difference_scheme_and_converge_to_the_spectral_solution():
    nu, T = 0.5, 0.2
    errors = []
    for n, layers in ((16, 10), (32, 40)):  # dt proportional to dx^2
        dt = T / layers
        net, dx = heat_net(n, nu, dt, layers)
        u0 = smooth_field(n, seed=0)
        out = net(torch.from_numpy(u0)).detach().numpy()
        np.testing.assert_allclose(out, heat_fd(u0, nu, dt, dx, layers), rtol=1e-12, atol=1e-12)
        errors.append(np.abs(out - heat_exact(u0, nu, T)).max())
    assert errors[1] < 0.02 * np.abs(u0).max()
    assert 3.5 < errors[0] / errors[1] < 4.5, errors  # O(dt + dx^2) with dt ~ dx^2: a factor 4 per halving of dx


def test_learning_nu_from_trajectories_recovers_it():
    torch.manual_seed(0)
    n, nu, dt, layers = 32, 0.3, 0.01, 5
    # trajectories of the exact solution; the network starts from a wrong nu and learns the coefficients
    starts = np.stack([smooth_field(n, seed) for seed in range(6)])
    targets = torch.from_numpy(np.stack([[heat_exact(u, nu, dt * (l + 1)) for l in range(layers)]
                                         for u in starts]))
    net, _ = heat_net(n, 0.5 * nu, dt, layers)
    net.Mf.requires_grad_(False)

    def loss():
        states = net.trace(torch.from_numpy(starts))[1:]
        return sum((s["u"] - targets[:, l]).pow(2).mean() for l, s in enumerate(states))

    opt = torch.optim.LBFGS([net.c], lr=1, max_iter=60, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        value = loss()
        value.backward()
        return value

    opt.step(closure)
    learned = net.c.detach()
    assert abs(learned.mean().item() / nu - 1) < 0.01, learned.mean().item()
    assert (learned / nu - 1).abs().quantile(0.9).item() < 0.05
