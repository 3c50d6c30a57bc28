"""Optimizers as networks (catalog H2, H3) and the Gauss-Newton baseline (catalog K)."""

from __future__ import annotations

import math
from itertools import pairwise

import torch

from . import Problem, register
from .images import randn

TRAIN, TEST = 512, 128


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


def _steps(gen, count, n, pieces=4):
    """Piecewise-constant signals on n samples: `pieces` random levels in [-2, 2] at random cuts."""
    out = torch.zeros(count, n, dtype=torch.float64)
    for i in range(count):
        cuts = torch.sort(torch.randperm(n - 1, generator=gen)[:pieces - 1] + 1).values.tolist()
        bounds = [0] + cuts + [n]
        for a, b in pairwise(bounds):
            out[i, a:b] = 4 * torch.rand(1, generator=gen, dtype=torch.float64).item() - 2
    return out


# ---------------------------------------------------------------- H2 domke_*: denoising with an energy
def _denoising(gen, dtype, spec_data: dict, note: str):
    n, sigma = 24, 0.4
    clean_tr, clean_te = _steps(gen, TRAIN, n), _steps(gen, TEST, n)
    noisy_tr, noisy_te = clean_tr + sigma * randn(gen, TRAIN, n), clean_te + sigma * randn(gen, TEST, n)
    eye = torch.eye(n, dtype=torch.float64)
    diff = eye[1:] - eye[:-1]
    data = {"A": eye.to(dtype), "D": diff.to(dtype), "c0": 0.4} | spec_data
    return Problem(f"denoising piecewise-constant signals (n = {n}, sigma = {sigma}) with the energy "
                   "1/2 ||x - y||^2 + c sum log(1 + (W x)^2), W = differences", data,
                   {"b": noisy_tr.to(dtype)}, clean_tr.to(dtype), {"b": noisy_te.to(dtype)}, clean_te.to(dtype),
                   output="x", state="x", layers=8, lr=1.5e-2, steps=150, note=note)


@register("domke_gd")
def domke_gd(gen, dtype):
    return _denoising(gen, dtype, {"alpha0": 0.5}, "gradient descent on the hand-set energy (W = D, c = 0.4)")


@register("domke_heavy_ball")
def domke_heavy_ball(gen, dtype):
    return _denoising(gen, dtype, {"alpha0": 0.4, "beta0": 0.3},
                      "heavy ball on the hand-set energy (W = D, c = 0.4)")


@register("domke_lbfgs")
def domke_lbfgs(gen, dtype):
    return _denoising(gen, dtype, {"m": 4, "tol": 1e-8}, "L-BFGS on the hand-set energy (W = D, c = 0.4)")


# ---------------------------------------------------------------- H3 unrolled_adam: least squares
@register("unrolled_adam")
def unrolled_adam(gen, dtype):
    """K Adam steps on random least-squares problems; the truth is each problem's minimiser."""
    k, n = 12, 6

    def draw(count):
        A = randn(gen, count, k, n) / math.sqrt(k)
        b = randn(gen, count, k)
        star = torch.linalg.lstsq(A, b.unsqueeze(-1)).solution.squeeze(-1)
        return _cast(dtype, A, b, torch.zeros(count, n, dtype=torch.float64), star)

    A_tr, b_tr, t_tr, s_tr = draw(TRAIN)
    A_te, b_te, t_te, s_te = draw(TEST)
    return Problem(f"least squares min 1/2 ||A theta - b||^2, A {k}x{n} Gaussian, from theta0 = 0",
                   {"lr": 0.1, "dtype": dtype}, {"A": A_tr, "b": b_tr, "theta0": t_tr}, s_tr,
                   {"A": A_te, "b": b_te, "theta0": t_te}, s_te, output="theta", state="theta", layers=10,
                   lr=1e-2, steps=200, note="Adam with a constant step (lr = 0.1)")


# ---------------------------------------------------------------- K gauss_newton_psse
@register("gauss_newton_psse")
def gauss_newton_psse(gen, dtype):
    """Power-system state estimation: quadratic measurements v^T H_m v with small Gaussian noise."""
    n, M = 10, 40
    G = randn(gen, M, n, n) / math.sqrt(n)
    Hs = (G + G.transpose(1, 2)) / 2

    def draw(batch):
        v = torch.cat([1 + 0.1 * randn(gen, batch, 5), 0.2 * randn(gen, batch, 5)], 1)
        z = torch.einsum("bi,mij,bj->bm", v, Hs, v) + 0.01 * randn(gen, batch, M)
        v0 = v + 0.1 * randn(gen, batch, n)
        return _cast(dtype, z, v0, v)

    z_tr, v0_tr, v_tr = draw(64)
    z_te, v0_te, v_te = draw(64)
    return Problem(f"state estimation: {M} quadratic measurements of {n} states, Gaussian noise",
                   {"Hs": Hs.to(dtype)}, {"z": z_tr, "v0": v0_tr}, v_tr, {"z": z_te, "v0": v0_te}, v_te,
                   output="v", state="v", layers=4, note="Gauss-Newton (weighted least squares, unit weights)")
