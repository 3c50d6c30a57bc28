"""Differential equations and dynamics (catalog family G)."""

from __future__ import annotations

import math

import torch

from . import Problem, register
from .images import cartoon_images, randn


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


# ---------------------------------------------------------------- G1 resnet_euler
@register("resnet_euler")
def resnet_euler(gen, dtype):
    """Learn the flow map of a linear ODE dx/dt = A x over [0, T] from (x(0), x(T)) pairs."""
    n, T = 4, 1.0
    S = randn(gen, n, n)
    A = (S - S.T) + 0.3 * randn(gen, n, n) - 0.5 * torch.eye(n, dtype=torch.float64)  # a damped rotation
    flow = torch.linalg.matrix_exp(A * T)
    x_tr, x_te = randn(gen, 512, n), randn(gen, 128, n)
    return Problem(f"flow of a linear ODE dx/dt = A x in R^{n} over T = {T:g} (target exp(A T) x0)",
                   {"n": n, "T": T, "width": 32, "depth": 2, "dtype": dtype}, {"x0": x_tr.to(dtype)},
                   (x_tr @ flow.T).to(dtype), {"x0": x_te.to(dtype)}, (x_te @ flow.T).to(dtype), output="x",
                   state="x", layers=10, lr=3e-3, steps=500,
                   note="explicit Euler with a random (untrained) vector field f")


# ---------------------------------------------------------------- G3 pde_net
def _moments(terms, s, order, spacing):
    """Fixed moments of each derivative term (i, j) — 1 / (dx^i dy^j) at (i, j), 0 below order i + j +
    order — and the mask of the free (learned) moments."""
    M0, free = torch.zeros(len(terms), s, s, dtype=torch.float64), torch.zeros(len(terms), s, s, dtype=torch.float64)
    for p, (i, j) in enumerate(terms):
        for a in range(s):
            for b in range(s):
                free[p, a, b] = float(a + b >= i + j + order and (a, b) != (i, j))
        M0[p, i, j] = 1.0 / spacing ** (i + j)
    return M0, free


def _smooth_fields(gen, batch, n):
    x = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    X, Y = torch.meshgrid(x, x, indexing="ij")
    out = torch.zeros(batch, n, n, dtype=torch.float64)
    for kx, ky in ((1, 0), (0, 1), (1, 1), (2, 1), (1, 3)):
        amplitude = randn(gen, batch, 1, 1)
        phase = 2 * math.pi * torch.rand(batch, 1, 1, generator=gen, dtype=torch.float64)
        out += amplitude * torch.cos(kx * X + ky * Y + phase)
    return out


def _heat_exact(u0, nu, t):
    n = u0.shape[-1]
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    decay = torch.exp(-nu * (k[:, None] ** 2 + k[None, :] ** 2) * t)
    return torch.fft.ifft2(torch.fft.fft2(u0) * decay).real


@register("pde_net")
def pde_net(gen, dtype):
    n, nu, dt, layers = 32, 0.3, 0.01, 5
    M0, free = _moments([(2, 0), (0, 2)], 3, order=1, spacing=2 * math.pi / n)
    u_tr, u_te = _smooth_fields(gen, 32, n), _smooth_fields(gen, 16, n)
    c0 = torch.full((2, n, n), 0.5 * nu, dtype=torch.float64)  # a wrong diffusivity to learn from
    data = {"M0": M0.to(dtype), "free": free.to(dtype), "c0": c0.to(dtype), "dt": dt}
    t = dt * layers
    return Problem(f"heat equation u_t = nu (u_xx + u_yy), nu = {nu:g}, periodic {n}x{n} grid, {layers} blocks of "
                   f"dt = {dt:g}; target: the exact spectral solution; the network starts from nu / 2",
                   data, {"u0": u_tr.to(dtype)}, _heat_exact(u_tr, nu, t).to(dtype), {"u0": u_te.to(dtype)},
                   _heat_exact(u_te, nu, t).to(dtype), output="u", state="u", layers=layers, lr=1e-2,
                   batch=8, note="forward Euler with the 5-point Laplacian at the wrong diffusivity")


# ---------------------------------------------------------------- G4 perona_malik, tnrd
def _denoising(gen, dtype, size=32, sigma=0.1):
    clean_tr, clean_te = cartoon_images(gen, 64, size, size), cartoon_images(gen, 32, size, size)
    noisy_tr = clean_tr + sigma * randn(gen, *clean_tr.shape)
    noisy_te = clean_te + sigma * randn(gen, *clean_te.shape)
    return _cast(dtype, clean_tr, noisy_tr, clean_te, noisy_te)


@register("perona_malik")
def perona_malik(gen, dtype):
    clean_tr, noisy_tr, clean_te, noisy_te = _denoising(gen, dtype)
    return Problem("denoising: 32x32 cartoon images, Gaussian noise sigma = 0.1", {"tau": 0.2, "kappa": 0.1},
                   {"f": noisy_tr}, clean_tr, {"f": noisy_te}, clean_te, output="u", state="u", metric="psnr",
                   layers=10, note="Perona-Malik diffusion (no trainable parameters)")


def _dct_filters(s):
    """The s x s 2-D DCT-II basis without the constant filter: zero mean, unit norm."""
    n = torch.arange(s, dtype=torch.float64)
    basis = torch.stack([torch.cos(math.pi * (n + 0.5) * k / s) for k in range(s)])
    basis = basis / basis.norm(dim=1, keepdim=True)
    return torch.stack([torch.outer(basis[a], basis[b]) for a in range(s) for b in range(s) if (a, b) != (0, 0)])


@register("tnrd")
def tnrd(gen, dtype):
    clean_tr, noisy_tr, clean_te, noisy_te = _denoising(gen, dtype)
    centers = torch.linspace(-1, 1, 21, dtype=torch.float64)
    k0 = _dct_filters(3)
    data = {"k0": k0.to(dtype), "w0": torch.zeros(k0.shape[0], 21, dtype=dtype), "centers": centers.to(dtype),
            "gamma": 0.1, "lam0": 0.0}
    return Problem("denoising: 32x32 cartoon images, Gaussian noise sigma = 0.1; 8 DCT filters, 21 RBF centres",
                   data, {"f": noisy_tr}, clean_tr, {"f": noisy_te}, clean_te, output="u", state="u",
                   metric="psnr", layers=5, lr=5e-3, batch=8,
                   note="zero influence functions: the untrained network returns the noisy image")


# ---------------------------------------------------------------- G2 cnf_euler
@register("cnf_euler")
def cnf_euler(gen, dtype):
    """The flow of a known linear field dz/dt = A z: target exp(A T) z0; training the field's parameters
    corrects Euler's O(h) error at the network's depth."""
    d, k, T = 3, 8, 1.0
    A = 0.8 * randn(gen, d, d)
    flow = torch.linalg.matrix_exp(A * T)
    z_tr, z_te = randn(gen, 512, d), randn(gen, 256, d)
    data = {"A0": A.to(dtype), "W0": (0.5 * randn(gen, k, d)).to(dtype), "T": T}
    return Problem(f"flow of a linear field dz/dt = A z in R^{d} over T = {T:g} (target exp(A T) z0), Euler steps",
                   data, {"z0": z_tr.to(dtype)}, (z_tr @ flow.T).to(dtype), {"z0": z_te.to(dtype)},
                   (z_te @ flow.T).to(dtype), output="z", layers=4, lr=3e-3, steps=300,
                   note="explicit Euler with the exact field")


# ---------------------------------------------------------------- G5 durr
@register("durr")
def durr(gen, dtype):
    size = 16
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    clean_tr, clean_te = cartoon_images(gen, 64, size, size), cartoon_images(gen, 32, size, size)
    sigma_tr = 0.05 + 0.15 * torch.rand(64, 1, 1, generator=gen, dtype=torch.float64)  # blind: mixed levels
    sigma_te = 0.05 + 0.15 * torch.rand(32, 1, 1, generator=gen, dtype=torch.float64)
    noisy_tr = clean_tr + sigma_tr * randn(gen, 64, size, size)
    noisy_te = clean_te + sigma_te * randn(gen, 32, size, size)
    clean_tr, clean_te, noisy_tr, noisy_te = _cast(dtype, clean_tr[:, None], clean_te[:, None], noisy_tr[:, None],
                                                   noisy_te[:, None])
    return Problem(f"blind denoising: {size}x{size} cartoon images, noise sigma uniform in [0.05, 0.2]",
                   {"lap": lap.to(dtype), "tol": 0.02}, {"y": noisy_tr}, clean_tr, {"y": noisy_te}, clean_te,
                   output="x", metric="psnr", layers=10, lr=1e-3, batch=16,
                   note="heat diffusion stopped per sample by the relative-change rule")
