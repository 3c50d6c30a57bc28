"""Family G4 (catalog §5): `perona_malik` (explicit 4-neighbour PM scheme, periodic) and `tnrd`
(trainable nonlinear reaction diffusion, symmetric boundary).  float64; references: a numpy PM loop
written from [70], scipy.ndimage convolutions, energies with scipy.special.erf."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical, best_on_grid
from unroll.compiler.driver import shipped_specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DT = torch.float64


def pm_numpy(u, tau, kappa, steps):
    """Perona-Malik [70], explicit scheme with the four nearest neighbours, periodic boundary."""
    u = np.array(u, dtype=float)
    for _ in range(steps):
        flux = 0.0
        for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):  # N, S, W, E neighbours
            d = np.roll(u, shift, axis=axis) - u
            flux = flux + d / (1 + (np.abs(d) / kappa) ** 2)
        u = u + tau * flux
    return u


def images(count, size, seed, sigma=0.1):
    """Piecewise-constant images (random rectangles on a random background) and noisy copies."""
    rng = np.random.default_rng(seed)
    clean = np.empty((count, size, size))
    for c in range(count):
        img = np.full((size, size), rng.uniform(0.2, 0.8))
        for _ in range(4):
            r0, c0 = rng.integers(0, size - 4, 2)
            r1, c1 = r0 + rng.integers(3, size // 2), c0 + rng.integers(3, size // 2)
            img[r0:r1, c0:c1] = rng.uniform(0, 1)
        clean[c] = img
    return clean, clean + sigma * rng.standard_normal(clean.shape)


# ------------------------------------------------------------------ Perona-Malik
def test_perona_malik_equals_the_numpy_scheme_and_conserves_the_sum():
    _, noisy = images(3, 12, seed=0)
    tau, kappa, layers = 0.22, 0.15, 7
    net = unroll.load("perona_malik", layers=layers)(tau=tau, kappa=kappa)
    out = net(torch.from_numpy(noisy)).numpy()
    for i in range(3):
        np.testing.assert_allclose(out[i], pm_numpy(noisy[i], tau, kappa, layers), rtol=1e-12, atol=1e-13)
    sums = [s["u"].sum(dim=(-2, -1)) for s in net.trace(torch.from_numpy(noisy))]
    for s in sums[1:]:
        torch.testing.assert_close(s, sums[0], rtol=1e-14, atol=1e-12)
    assert np.abs(out - noisy).max() > 1e-2  # it did smooth


# ------------------------------------------------------------------ TNRD
def _tnrd_variant(tmp_path, name, replacements):
    """The shipped tnrd spec with its influence function and/or boundary replaced (each replaced text
    occurs exactly once): the stage equation stays the shipped one."""
    text = shipped_specs()["tnrd"].read_text()
    for old, new in replacements:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path = tmp_path / f"{name}.unroll"
    path.write_text(text)
    return path


def _difference_filters():
    """Forward differences as conv2 kernels (centre (1, 1)): u[i+1, j] - u[i, j] and u[i, j+1] - u[i, j]."""
    k = np.zeros((2, 3, 3))
    k[0, 0, 1], k[0, 1, 1] = 1.0, -1.0
    k[1, 1, 0], k[1, 1, 1] = 1.0, -1.0
    return k


def test_tnrd_stage_with_difference_filters_is_a_perona_malik_step(tmp_path):
    """Catalog G4 identity: forward-difference filters, phi(z) = tau z g(|z|), lambda = 0, periodic boundary.
    The filters are normalised by the spec (unit norm: D / sqrt(2)), so phi is written for K = D / sqrt(2):
    K^T phi(K u) = D^T psi(D u) needs phi(z) = sqrt(2) tau psi(sqrt(2) z) = 2 tau z / (1 + 2 (z / kappa)^2)."""
    path = _tnrd_variant(tmp_path, "tnrd_pm", [
        ("rbf(z, wts, centers, gamma)", "2 * tau * z / (1 + 2 * (z / kappa)^2)"),
        ("conv2s(k, u)", "conv2(k, u)"), ("conv2s_adj(k, phi)", "conv2_adj(k, phi)"),
        ("hyper gamma = 0.1", "hyper tau = 0.2\nhyper kappa = 0.1\nhyper gamma = 0.1")])
    _, noisy = images(2, 10, seed=1)
    tau, kappa, layers = 0.2, 0.12, 4
    net = unroll.load(path, layers=layers)(k0=_difference_filters(), w0=np.zeros((2, 3)), centers=np.zeros(3),
                                           lam0=0.0, tau=tau, kappa=kappa)
    out = net(torch.from_numpy(noisy)).detach().numpy()
    pm = unroll.load("perona_malik", layers=layers)(tau=tau, kappa=kappa)(torch.from_numpy(noisy)).numpy()
    assert np.abs(out - pm).max() < 5e-15
    for i in range(2):
        assert np.abs(out[i] - pm_numpy(noisy[i], tau, kappa, layers)).max() < 5e-15


def _dct_filters(s):
    """The s x s 2-D DCT-II basis without the constant (DC) filter: [s*s - 1, s, s], zero mean, unit norm."""
    n = np.arange(s)
    basis = np.array([np.cos(np.pi * (n + 0.5) * k / s) for k in range(s)])
    basis /= np.linalg.norm(basis, axis=1, keepdims=True)
    return np.array([np.outer(basis[a], basis[b]) for a in range(s) for b in range(s) if (a, b) != (0, 0)])


def _rbf_fit(centers, gamma, target):
    """Least-squares RBF weights reproducing target(z) on [-1, 1]."""
    z = np.linspace(-1, 1, 401)
    design = np.exp(-(z[:, None] - centers[None]) ** 2 / (2 * gamma**2))
    return np.linalg.lstsq(design, target(z), rcond=None)[0]


def _foe_energy(u, f, k, w, centers, gamma, lam):
    """E(u) = sum_i sum_p rho_i((K_i u)_p) + lam/2 |u - f|^2 with rho_i' = phi_i (an erf mixture) and K_i the
    symmetric-boundary convolution (scipy.ndimage, mode 'reflect')."""
    from scipy import ndimage, special

    energy = 0.5 * lam * np.sum((u - f) ** 2)
    for i in range(k.shape[0]):
        z = ndimage.convolve(u, k[i], mode="reflect")
        for j, mu in enumerate(centers):
            energy += w[i, j] * gamma * math.sqrt(math.pi / 2) * np.sum(special.erf((z - mu) / (math.sqrt(2) * gamma)))
    return energy


def _tikhonov_energy(u, f, k, eta, lam):
    from scipy import ndimage

    return 0.5 * eta * sum(np.sum(ndimage.convolve(u, k[i], mode="reflect") ** 2) for i in range(k.shape[0])) \
        + 0.5 * lam * np.sum((u - f) ** 2)


@pytest.mark.parametrize("influence", ["rbf", "linear"])
def test_tnrd_stage_is_a_gradient_step_on_its_energy(influence, tmp_path):
    """A stage is u - grad E(u): checked against central finite differences of the energy (written with scipy),
    and the energy decreases (small weights: a small step).  Linear phi(z) = eta z gives the Tikhonov energy."""
    pytest.importorskip("scipy")
    rng = np.random.default_rng(2)
    k0 = _dct_filters(3)[:4]
    centers, gamma, lam = np.linspace(-1, 1, 9), 0.3, 0.05
    w0 = 0.02 * rng.standard_normal((4, 9))
    f = rng.uniform(0, 1, (7, 6))
    if influence == "rbf":
        net = unroll.load("tnrd", layers=2)(k0=k0, w0=w0, centers=centers, gamma=gamma, lam0=lam)
        energy = lambda v: _foe_energy(v, f, k0, w0, centers, gamma, lam)
    else:
        eta = 0.05
        path = _tnrd_variant(tmp_path, "tnrd_linear", [("rbf(z, wts, centers, gamma)", "eta * z"),
                                                       ("hyper gamma = 0.1", "hyper eta = 0.1\nhyper gamma = 0.1")])
        net = unroll.load(path, layers=2)(k0=k0, w0=w0, centers=centers, lam0=lam, eta=eta)
        energy = lambda v: _tikhonov_energy(v, f, k0, eta, lam)
    # the second stage (u1 != f, so the reaction term takes part): u2 = u1 - grad E(u1)
    u1, u2 = (s["u"].detach().numpy() for s in net.trace(torch.from_numpy(f))[1:])
    h = 1e-5
    grad = np.zeros_like(f)
    for idx in np.ndindex(f.shape):
        e = np.zeros_like(f)
        e[idx] = h
        grad[idx] = (energy(u1 + e) - energy(u1 - e)) / (2 * h)
    np.testing.assert_allclose(u1 - u2, grad, rtol=1e-6, atol=1e-9)
    assert energy(u2) < energy(u1) < energy(f)


def test_tnrd_filters_stay_zero_mean_unit_norm_through_training():
    k0 = _dct_filters(3)
    net = unroll.load("tnrd", layers=2)(k0=k0, w0=np.zeros((8, 5)), centers=np.linspace(-1, 1, 5))
    torch.testing.assert_close(net.parameter_values()["k"][0], torch.from_numpy(k0), rtol=1e-14, atol=1e-15)
    _, noisy = images(4, 8, seed=3)
    clean = torch.from_numpy(images(4, 8, seed=3)[0])
    adam(net.parameters(), lambda: (net(torch.from_numpy(noisy)) - clean).pow(2).mean(), steps=5, lr=0.1)
    k = net.parameter_values()["k"]
    assert k.mean(dim=(-2, -1)).abs().max() < 1e-14
    torch.testing.assert_close(k.norm(dim=(-2, -1)), torch.ones(2, 8, dtype=DT))
    assert (k - torch.from_numpy(k0)).abs().max() > 1e-3  # the filters did move


def test_tnrd_training_beats_perona_malik_at_the_same_depth():
    """TNRD initialised as (nearly) a Perona-Malik scheme: two forward-difference filters with the PM influence
    phi fitted by RBFs (symmetric boundary instead of periodic), six more DCT filters with phi = 0, lambda = 0;
    a short training on 16 noisy images, then the held-out error against PM at its best (tau, kappa) on a grid."""
    torch.manual_seed(0)
    layers, size = 3, 16
    clean_train, noisy_train = (torch.from_numpy(a) for a in images(16, size, seed=10))
    clean_test, noisy_test = (torch.from_numpy(a) for a in images(16, size, seed=11))
    centers, gamma, tau, kappa = np.linspace(-1, 1, 21), 0.1, 0.2, 0.2
    w0 = np.zeros((8, 21))
    w0[:2] = _rbf_fit(centers, gamma, lambda z: 2 * tau * z / (1 + 2 * (z / kappa) ** 2))
    k0 = np.concatenate([_difference_filters(), _dct_filters(3)[:6]])
    net = unroll.load("tnrd", layers=layers)(k0=k0, w0=w0, centers=centers, gamma=gamma, lam0=0.0)

    def mse(out, clean):
        return (out - clean).pow(2).mean()

    untrained = mse(net(noisy_test), clean_test).item()
    adam(net.parameters(), lambda: mse(net(noisy_train), clean_train), steps=30, lr=0.005)
    trained = mse(net(noisy_test), clean_test).item()
    PM = unroll.load("perona_malik", layers=layers)
    grid = [(tau, kappa) for tau in (0.05, 0.1, 0.15, 0.2, 0.25) for kappa in (0.02, 0.05, 0.1, 0.2, 0.4)]
    classical, best, _ = best_on_grid(lambda v: mse(PM(tau=v[0], kappa=v[1])(noisy_test), clean_test), grid)
    noise = mse(noisy_test, clean_test).item()
    assert_beats_classical(trained, classical, 0.9, f"tnrd vs Perona-Malik {best} (noise {noise:.4g})")
    assert trained < 0.9 * untrained, (trained, untrained)
