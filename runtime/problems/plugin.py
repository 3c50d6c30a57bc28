"""Plug-in network hybrids (catalog family I, issue 9): deblurring and tomography of small cartoon
images with a learned denoiser in place of a proximal map or a projection. 16 x 16 images (the
catalog's settings scaled down so that the demo trains in seconds)."""

from __future__ import annotations

import torch

from . import Problem, register
from .images import cartoon_images, circular_blur, gaussian_kernel, randn, ray_transform

SIZE = 16
TRAIN, TEST = 128, 32


def _deblurring(gen, dtype, noise=0.02):
    """5 x 5 Gaussian blur (sigma 1), circular, noise `noise`: (psf, (b_tr, x_tr), (b_te, x_te))."""
    psf = gaussian_kernel(5, 1.0)
    x_tr, x_te = cartoon_images(gen, TRAIN, SIZE, SIZE), cartoon_images(gen, TEST, SIZE, SIZE)
    b_tr = circular_blur(x_tr, psf) + noise * randn(gen, TRAIN, SIZE, SIZE)
    b_te = circular_blur(x_te, psf) + noise * randn(gen, TEST, SIZE, SIZE)
    return psf.to(dtype), (b_tr.to(dtype), x_tr.to(dtype)), (b_te.to(dtype), x_te.to(dtype))


TEXT = f"deblurring: {SIZE}x{SIZE} cartoon images, 5x5 Gaussian blur (sigma 1), noise 0.02"


@register("pnp_fbs")
def pnp_fbs(gen, dtype):
    psf, (b_tr, x_tr), (b_te, x_te) = _deblurring(gen, dtype)
    data = {"psf": psf, "alpha": 1.0, "eps": 0.9, "width": 16, "depth": 4, "h": SIZE, "w": SIZE}
    return Problem(TEXT, data, {"b": b_tr}, x_tr, {"b": b_te}, x_te, output="xhat", metric="psnr", layers=8,
                   lr=2e-3, batch=16, steps=150, note="gradient descent on the data term (H = I)")


@register("pnp_admm")
def pnp_admm(gen, dtype):
    psf, (b_tr, x_tr), (b_te, x_te) = _deblurring(gen, dtype)
    data = {"psf": psf, "alpha": 1.0, "eps": 0.9, "width": 16, "depth": 4, "h": SIZE, "w": SIZE}
    return Problem(TEXT, data, {"b": b_tr}, x_tr, {"b": b_te}, x_te, output="xhat", metric="psnr", layers=8,
                   lr=2e-3, batch=16, steps=150, note="the proximal point method on the data term (H = I)")


@register("diamond_odp")
def diamond_odp(gen, dtype):
    psf, (b_tr, x_tr), (b_te, x_te) = _deblurring(gen, dtype)
    data = {"psf": psf, "alpha0": 1.0, "width": 16, "depth": 3, "h": SIZE, "w": SIZE}
    return Problem(TEXT, data, {"b": b_tr}, x_tr, {"b": b_te}, x_te, output="xhat", metric="psnr", layers=6,
                   lr=2e-3, batch=16, steps=150, note="the proximal point method on the data term (CNN = 0)")


@register("meinhardt_learned_prox")
def meinhardt_learned_prox(gen, dtype):
    psf, (b_tr, x_tr), (b_te, x_te) = _deblurring(gen, dtype)

    def forward(v):
        return circular_blur(v, psf.to(v.dtype))

    def adjoint(v):
        return circular_blur(v, psf.flip(-1, -2).to(v.dtype))

    data = {"A": (forward, adjoint), "tau": 0.9, "sigma": 0.9, "width": 16, "depth": 4,
            "k1": SIZE, "k2": SIZE, "h": SIZE, "w": SIZE}
    return Problem(TEXT, data, {"b": b_tr}, x_tr, {"b": b_te}, x_te, output="xhat", metric="psnr", layers=8,
                   lr=2e-3, batch=16, steps=150, note="PDHG on the data term (D = I)")


@register("gupta_rpgd")
def gupta_rpgd(gen, dtype, angles=12, detectors=24):
    K = ray_transform(angles, detectors, SIZE, SIZE)
    x_tr, x_te = cartoon_images(gen, TRAIN, SIZE, SIZE), cartoon_images(gen, TEST, SIZE, SIZE)
    y_tr = (x_tr.reshape(TRAIN, -1) @ K.T).reshape(TRAIN, angles, detectors)
    y_te = (x_te.reshape(TEST, -1) @ K.T).reshape(TEST, angles, detectors)
    y_tr, y_te = y_tr + 0.05 * randn(gen, *y_tr.shape), y_te + 0.05 * randn(gen, *y_te.shape)
    gamma = 1.0 / torch.linalg.matrix_norm(K, ord=2).item() ** 2
    data = {"Hop": K.to(dtype), "gamma": gamma, "c": 0.99, "width": 16, "depth": 4,
            "k1": angles, "k2": detectors, "h": SIZE, "w": SIZE}
    return Problem(f"tomography: {SIZE}x{SIZE} cartoon images, {angles} angles x {detectors} bins, noise 0.05",
                   data, {"y": y_tr.to(dtype)}, x_tr.to(dtype), {"y": y_te.to(dtype)}, x_te.to(dtype),
                   output="xhat", metric="psnr", layers=10, lr=2e-3, batch=16, steps=150,
                   note="relaxed gradient descent on the data term (P = I)")
