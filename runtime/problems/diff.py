"""Tasks of the specs that differentiate in the forward pass, draw noise or stop per sample (catalog E5,
G2, G5): a continuous normalizing flow, N-EM / RNN-EM mixture fitting, DURR denoising."""

from __future__ import annotations

import math

import torch

from . import Problem, register
from .images import cartoon_images, rand, randn


# ---------------------------------------------------------------- CNF (catalog G2)
@register("cnf_euler")
def cnf_euler(gen, dtype):
    """Samples pushed through the linear flow dz/dt = A z over [0, T]: the exact endpoint e^{AT} z0 is the
    truth; the untrained network is Euler's scheme with the true A (first-order error), training learns
    the discretisation's correction."""
    d, k, T = 4, 8, 1.0
    A = 0.8 * randn(gen, d, d) / math.sqrt(d)
    W0 = randn(gen, k, d) / math.sqrt(d)
    M = torch.linalg.matrix_exp(A.double() * T).to(A.dtype)
    z_tr, z_te = randn(gen, 512, d), randn(gen, 128, d)
    cast = [t.to(dtype) for t in (A, W0, z_tr, z_te, z_tr @ M.T, z_te @ M.T)]
    A, W0, z_tr, z_te, t_tr, t_te = cast
    return Problem(f"continuous normalizing flow: {d}-D Gaussian samples through a linear flow over [0, {T}]; the "
                   "endpoint against the exact e^(AT) z0", {"A0": A, "W0": W0, "T": T}, {"z0": z_tr}, t_tr,
                   {"z0": z_te}, t_te, output="z", state="z", layers=4, lr=1e-2, steps=200,
                   note="Euler steps of the known vector field")


# ---------------------------------------------------------------- N-EM, RNN-EM (catalog E5)
def _em_images(gen, count, D, hd, K, B_true, sigma):
    latents = randn(gen, count, K, hd)
    owner = (rand(gen, count, D) * K).long().clamp(max=K - 1)
    means = latents @ B_true.T  # [count, K, D]
    clean = means.gather(1, owner[:, None, :]).squeeze(1)
    return clean, clean + sigma * randn(gen, count, D)


def _em_problem(gen, dtype, squash):
    D, K, hd, sigma = 16, 3, 4, 0.25
    B_true = randn(gen, D, hd) / math.sqrt(hd)
    c_tr, x_tr = _em_images(gen, 256, D, hd, K, B_true, 0.1)
    c_te, x_te = _em_images(gen, 64, D, hd, K, B_true, 0.1)
    if squash:
        c_tr, x_tr, c_te, x_te = (torch.sigmoid(t) for t in (c_tr, x_tr, c_te, x_te))
    th_tr, th_te = randn(gen, 256, K, hd), randn(gen, 64, K, hd)
    return (D, K, hd, sigma, B_true), [t.to(dtype) for t in (c_tr, x_tr, c_te, x_te, th_tr, th_te)]


@register("neural_em")
def neural_em(gen, dtype):
    """Pixels from K affine 'objects'; the mixture's reconstruction of the image against the clean image."""
    (D, K, hd, sigma, _), (c_tr, x_tr, c_te, x_te, th_tr, th_te) = _em_problem(gen, dtype, squash=False)
    B0 = (randn(gen, D, hd) / math.sqrt(hd)).to(dtype)
    return Problem(f"N-EM: {D}-pixel images whose pixels come from one of {K} affine objects; the mixture's "
                   "reconstruction against the clean image", {"B0": B0, "K": K, "sigma": sigma, "eta": 0.05},
                   {"x": x_tr, "theta0": th_tr}, c_tr, {"x": x_te, "theta0": th_te}, c_te, output="xhat",
                   layers=5, lr=1e-2, steps=200, note="N-EM with an untrained (random) affine decoder")


@register("rnn_em")
def rnn_em(gen, dtype):
    """As neural_em, pixels squashed to (0, 1) for the sigmoid decoder."""
    (D, K, hd, sigma, _), (c_tr, x_tr, c_te, x_te, th_tr, th_te) = _em_problem(gen, dtype, squash=True)
    weights = {"Wx0": randn(gen, hd, D) / math.sqrt(D), "Wh0": 0.5 * randn(gen, hd, hd) / math.sqrt(hd),
               "Wy0": randn(gen, D, hd) / math.sqrt(hd)}
    return Problem(f"RNN-EM: {D}-pixel images in (0, 1) from {K} objects; the mixture's reconstruction against "
                   "the clean image", {**{k: v.to(dtype) for k, v in weights.items()}, "K": K, "sigma": sigma},
                   {"x": x_tr, "theta0": th_tr}, c_tr, {"x": x_te, "theta0": th_te}, c_te, output="xhat",
                   layers=5, lr=1e-2, steps=200, note="RNN-EM with untrained (random) weights")


# ---------------------------------------------------------------- DURR (catalog G5)
@register("durr")
def durr(gen, dtype):
    """Blind denoising of cartoon images (noise levels 10..50 on [0, 255]); each sample stops when its
    relative change is small (the untrained policy's P(stop) = sigmoid(-10) practically never stops one)."""
    h = w = 16
    layers = 8
    clean_tr, clean_te = cartoon_images(gen, 128, h, w), cartoon_images(gen, 32, h, w)
    sig_tr = (10 + 40 * rand(gen, 128, 1, 1)) / 255
    sig_te = (10 + 40 * rand(gen, 32, 1, 1)) / 255
    y_tr = clean_tr + sig_tr * randn(gen, 128, h, w)
    y_te = clean_te + sig_te * randn(gen, 32, h, w)
    lap = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
    cast = [t.to(dtype) for t in (lap, y_tr[:, None], clean_tr[:, None], y_te[:, None], clean_te[:, None])]
    lap, y_tr, clean_tr, y_te, clean_te = cast
    return Problem(f"DURR: blind denoising of {h}x{w} cartoon images, noise sigma 10..50 (of 255)",
                   {"lap": lap, "tau": 0.1, "tol": 0.02}, {"y": y_tr}, clean_tr,
                   {"y": y_te}, clean_te, output="x", state="x", metric="psnr", layers=layers,
                   lr=3e-3, steps=100, note="heat diffusion stopped per sample by the relative-change rule")
