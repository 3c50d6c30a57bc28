"""Catalog tasks of family I1: `ldit`, `ldamp` (learned D-IT / D-AMP) and `bm3d_amp` (D-AMP with an external
denoiser given as function data).

The catalog's setting (Metzler et al., Learned D-AMP: compressive imaging, Gaussian A, natural images) is
scaled down to 8x8 images made of a few smooth bumps (not sparse in pixels, so a learned denoiser has
something to learn) measured by a 32 x 64 Gaussian matrix with N(0, 1/m) entries, SNR 40 dB.

`soft_denoiser` and `bm3d_denoiser` are top-level functions (so a network holding them pickles by
reference): the first is the default function data of the `bm3d_amp` task (the soft threshold at
1.5 sigma: D-AMP is then AMP, with the Monte-Carlo divergence), the second wraps PyPI `bm3d` (the
`bench` extra) for BM3D-AMP proper: `unroll.load("bm3d_amp")(A, bm3d_denoiser, M=..., h=..., w=...)`.
"""

from __future__ import annotations

import math

import torch

from . import Problem, register

H = W = 8
M = 32
TRAIN, TEST = 512, 128


def soft_denoiser(r: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The soft threshold at 1.5 sigma (AMP's denoiser): r [batch, h, w], sigma [batch]."""
    t = 1.5 * sigma.reshape(-1, *([1] * (r.dim() - 1)))
    return torch.sign(r) * torch.clamp(r.abs() - t, min=0)


def bm3d_denoiser(r: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """BM3D (PyPI `bm3d`, hard-thresholding stage) on each image of the batch at its noise level."""
    import bm3d
    import numpy as np

    out = [torch.from_numpy(np.asarray(bm3d.bm3d(img.numpy(), sigma_psd=max(float(s), 1e-6),
                                                 stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING), dtype=np.float64))
           for img, s in zip(r.detach().cpu().double(), sigma.detach().cpu().double())]
    return torch.stack(out).to(dtype=r.dtype, device=r.device)


def _bumps(gen, count: int) -> torch.Tensor:
    """Images [count, H, W]: two Gaussian bumps of random centres and heights in [0.5, 1.5]."""
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                            indexing="ij")
    out = torch.zeros(count, H, W, dtype=torch.float64)
    for _ in range(2):
        cy = torch.rand(count, 1, 1, generator=gen, dtype=torch.float64) * H
        cx = torch.rand(count, 1, 1, generator=gen, dtype=torch.float64) * W
        height = 0.5 + torch.rand(count, 1, 1, generator=gen, dtype=torch.float64)
        out += height * torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    return out


def _compressive_imaging(gen, dtype):
    A = torch.randn(M, H * W, generator=gen, dtype=torch.float64) / math.sqrt(M)

    def measure(images):
        clean = images.reshape(len(images), -1) @ A.T
        noise = torch.randn(clean.shape, generator=gen, dtype=torch.float64)
        scale = clean.norm(dim=1, keepdim=True) / noise.norm(dim=1, keepdim=True) * 10 ** (-40 / 20)
        return clean + scale * noise

    x_tr, x_te = _bumps(gen, TRAIN), _bumps(gen, TEST)
    y_tr, y_te = measure(x_tr), measure(x_te)
    A, x_tr, x_te, y_tr, y_te = (t.to(dtype) for t in (A, x_tr, x_te, y_tr, y_te))
    text = f"compressive imaging: {H}x{W} images of two smooth bumps, A {M}x{H * W} i.i.d. N(0, 1/M), SNR 40 dB"
    return A, (y_tr, x_tr), (y_te, x_te), text


@register("ldamp")
def ldamp(gen, dtype):
    A, (y_tr, x_tr), (y_te, x_te), text = _compressive_imaging(gen, dtype)
    return Problem(text, {"A": A, "M": M, "h": H, "w": W, "width": 8, "depth": 3}, {"y": y_tr}, x_tr, {"y": y_te},
                   x_te, output="x", state="x", layers=6, lr=3e-3, batch=32, steps=100,
                   note="D-AMP with the soft threshold and its exact divergence (= AMP)")


@register("ldit")
def ldit(gen, dtype):
    A, (y_tr, x_tr), (y_te, x_te), text = _compressive_imaging(gen, dtype)
    return Problem(text, {"A": A, "M": M, "h": H, "w": W, "width": 8, "depth": 3}, {"y": y_tr}, x_tr, {"y": y_te},
                   x_te, output="x", state="x", layers=6, lr=3e-3, batch=32, steps=100,
                   note="D-IT with the soft threshold (iterative soft thresholding, residual-based threshold)")


@register("bm3d_amp")
def bm3d_amp(gen, dtype):
    A, (y_tr, x_tr), (y_te, x_te), text = _compressive_imaging(gen, dtype)
    return Problem(text + "; the denoiser is the soft threshold (pass `bm3d_denoiser` for BM3D-AMP)",
                   {"A": A, "D": soft_denoiser, "M": M, "h": H, "w": W}, {"y": y_tr}, x_tr, {"y": y_te}, x_te,
                   output="x", layers=8, steps=0,  # no per-layer curve: trace() would draw other probes
                   note="D-AMP with the given denoiser and the Monte-Carlo divergence; nothing is trained")
