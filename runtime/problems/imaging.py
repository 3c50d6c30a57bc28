"""Imaging problems: MRI, deblurring, tomography, super-resolution, fusion, deraining, microscopy,
ultrasound (catalog families A–D). Cartoon images in [0, 1], 32 x 32 unless stated."""

from __future__ import annotations

import torch

from . import Problem, register
from .images import (
    cartoon_images,
    circular_blur,
    derivative_filters,
    dirac,
    gaussian_kernel,
    kspace_mask,
    motion_kernels,
    rand,
    randn,
    ray_transform,
)

H = W = 32
TRAIN, TEST = 256, 64


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


def _noisy(gen, clean, sigma):
    return clean + sigma * randn(gen, *clean.shape)


@register("admm_csnet")
def admm_csnet(gen, dtype):
    mask = kspace_mask(gen, H, W, 0.3)
    x_tr, x_te = cartoon_images(gen, TRAIN, H, W), cartoon_images(gen, TEST, H, W)

    def measure(x):
        y = mask * torch.fft.fft2(x, norm="ortho")
        return y + 0.01 * mask * torch.complex(randn(gen, *y.shape), randn(gen, *y.shape))

    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    y_tr, y_te = measure(x_tr).to(cdtype), measure(x_te).to(cdtype)
    mask, x_tr, x_te = _cast(dtype, mask, x_tr, x_te)
    return Problem(f"compressive MRI: {H}x{W} cartoon images, random k-space mask (30 %, low frequencies "
                   "kept), noise 0.01", {"mask": mask, "d0": derivative_filters().to(dtype), "lam0": 0.01},
                   {"y": y_tr}, x_tr, {"y": y_te}, x_te, output="x", state="x", metric="psnr", layers=8,
                   lr=2e-3, batch=16, note="ADMM for TV-like (derivative-filter) l1 regularised MRI")


@register("hosseini_dense_pgd")
def dense_pgd(gen, dtype):
    coils = 4
    yy = torch.linspace(-1, 1, H, dtype=torch.float64)[:, None]
    xx = torch.linspace(-1, 1, W, dtype=torch.float64)[None, :]
    centres = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    smaps = torch.stack([torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 2) * (1 + 0j) for cy, cx in centres])
    smaps = smaps / smaps.abs().square().sum(0).sqrt().max()
    mask = kspace_mask(gen, H, W, 0.35)
    x_tr, x_te = cartoon_images(gen, TRAIN, H, W), cartoon_images(gen, TEST, H, W)

    def measure(x):
        y = mask * torch.fft.fft2(smaps * x[:, None], norm="ortho")
        return y + 0.01 * mask * torch.complex(randn(gen, *y.shape), randn(gen, *y.shape))

    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    y_tr, y_te = measure(x_tr).to(cdtype), measure(x_te).to(cdtype)
    return Problem(f"multi-coil MRI: {coils} coils, {H}x{W} cartoon images, random mask (35 %)",
                   {"smaps": smaps.to(cdtype), "mask": mask.to(dtype), "lam": 0.005}, {"y": y_tr},
                   x_tr.to(cdtype), {"y": y_te}, x_te.to(cdtype), output="x", state="x", metric="psnr",
                   layers=6, lr=1e-3, batch=16, note="proximal gradient (ISTA) with the l1 prox")


def _blind_blur_data(gen, dtype, size=5):
    x_tr, x_te = cartoon_images(gen, TRAIN, H, W), cartoon_images(gen, TEST, H, W)
    k_tr, k_te = motion_kernels(gen, TRAIN, size), motion_kernels(gen, TEST, size)
    y_tr = _noisy(gen, circular_blur(x_tr, k_tr), 0.01)
    y_te = _noisy(gen, circular_blur(x_te, k_te), 0.01)
    return _cast(dtype, x_tr, x_te, y_tr, y_te)


BLIND = f"blind deblurring: {H}x{W} cartoon images, random 5x5 motion kernels, noise 0.01"


@register("dublid")
def dublid(gen, dtype):
    x_tr, x_te, y_tr, y_te = _blind_blur_data(gen, dtype)
    return Problem(BLIND, {"f0": derivative_filters().to(dtype), "k0": dirac(5).to(dtype)}, {"y": y_tr}, x_tr,
                   {"y": y_te}, x_te, output="x", metric="psnr", layers=6, lr=1e-3, batch=16,
                   note="half-quadratic splitting for TV blind deconvolution (DUBLID's initialisation)")


@register("perrone_tv_blind")
def perrone(gen, dtype):
    x_tr, x_te, y_tr, y_te = _blind_blur_data(gen, dtype)
    k0 = torch.full((5, 5), 1 / 25, dtype=dtype)
    return Problem(BLIND, {"k0": k0, "lam": 0.005}, {"y": y_tr[:64]}, x_tr[:64], {"y": y_te}, x_te, output="x",
                   state="x", metric="psnr", layers=30, note="projected alternating gradient descent on TV")


@register("schuler_deblur")
def schuler(gen, dtype):
    x_tr, x_te, y_tr, y_te = _blind_blur_data(gen, dtype)
    return Problem(BLIND, {"dtype": dtype}, {"y": y_tr}, x_tr, {"y": y_te}, x_te, output="x", metric="psnr",
                   layers=2, lr=1e-3, batch=16,
                   note="Schuler et al. with zero-initialised feature networks (no features yet)")


@register("fbpconvnet")
def fbpconvnet(gen, dtype):
    s = 9
    hk = torch.zeros(s, s, dtype=torch.float64)
    hk[2:7, 2:7] = gaussian_kernel(5, 1.0)  # zero-padded: h~ (*) h fits in the s x s window
    x_tr, x_te = cartoon_images(gen, TRAIN, H, W), cartoon_images(gen, TEST, H, W)
    y_tr, y_te = _noisy(gen, circular_blur(x_tr, hk), 0.01), _noisy(gen, circular_blur(x_te, hk), 0.01)
    kernel = hk.to(dtype)

    def forward(v):
        return circular_blur(v, kernel.to(v.dtype))

    def adjoint(v):
        return circular_blur(v, kernel.flip(-1, -2).to(v.dtype))

    x_tr, x_te, y_tr, y_te = _cast(dtype, x_tr, x_te, y_tr, y_te)
    return Problem(f"deconvolution: {H}x{W} cartoon images, 5x5 Gaussian blur (sigma 1), noise 0.01",
                   {"hk": kernel, "H": (forward, adjoint), "lam": 0.002, "k1": H, "k2": W, "h": H, "w": W},
                   {"y": y_tr}, x_tr, {"y": y_te}, x_te, output="xout", metric="psnr", layers=6, lr=1e-3,
                   batch=16, note="convolutional ISTA (FBPConvNet's reading of the U-Net)")


def _tomography(gen, dtype, size=16, angles=12, detectors=24):
    K = ray_transform(angles, detectors, size, size)
    x_tr, x_te = cartoon_images(gen, TRAIN, size, size), cartoon_images(gen, TEST, size, size)
    g_tr = _noisy(gen, (x_tr.reshape(TRAIN, -1) @ K.T).reshape(TRAIN, angles, detectors), 0.05)
    g_te = _noisy(gen, (x_te.reshape(TEST, -1) @ K.T).reshape(TEST, angles, detectors), 0.05)
    norm = torch.linalg.matrix_norm(K, ord=2).item()
    K, x_tr, x_te, g_tr, g_te = _cast(dtype, K, x_tr, x_te, g_tr, g_te)
    dims = {"na": angles, "nd": detectors, "hx": size, "wx": size}
    text = f"tomography: {size}x{size} cartoon images, {angles} angles x {detectors} bins, noise 0.05"
    return K, norm, dims, (g_tr, x_tr), (g_te, x_te), text


@register("learned_pdhg")
def learned_pdhg(gen, dtype):
    K, norm, dims, (g_tr, x_tr), (g_te, x_te), text = _tomography(gen, dtype)
    return Problem(text, {"K": K, "Kn": norm, "lam": 0.05, **dims}, {"g": g_tr}, x_tr, {"g": g_te}, x_te,
                   output="xhat", metric="psnr", layers=8, lr=1e-3, batch=16,
                   note="Chambolle-Pock for l1-regularised least squares")


for _name in ("learned_primal_dual", "lpd_nodule_detection"):
    @register(_name)
    def learned_primal_dual(gen, dtype):
        K, norm, dims, (g_tr, x_tr), (g_te, x_te), text = _tomography(gen, dtype)
        return Problem(text, {"K": K / norm, **dims}, {"g": g_tr / norm}, x_tr, {"g": g_te / norm}, x_te,
                       output="x", metric="psnr", layers=6, lr=1e-3, batch=16,
                       note="zero-initialised networks: the untrained network returns 0; training learns it all")


@register("rpca_ista")
def rpca(gen, dtype):
    m, n, rank = 64, 20, 2

    def draw(batch):
        L = torch.complex(randn(gen, batch, m, rank), randn(gen, batch, m, rank)) @ \
            torch.complex(randn(gen, batch, rank, n), randn(gen, batch, rank, n)) / n ** 0.5
        rows = rand(gen, batch, m, 1) < 0.1
        S = rows * torch.complex(randn(gen, batch, m, n), randn(gen, batch, m, n))
        return L + S, S

    cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    D_tr, S_tr = draw(256)
    D_te, S_te = draw(64)
    eye = torch.eye(m, dtype=cdtype)
    return Problem(f"robust PCA: {m}x{n} Casorati matrices, rank-{rank} tissue plus 10 % moving rows (blood)",
                   {"H1": eye, "H2": eye, "lam1": 1.0, "lam2": 1.0}, {"D": D_tr.to(cdtype)}, S_tr.to(cdtype),
                   {"D": D_te.to(cdtype)}, S_te.to(cdtype), output="S", state="S", layers=10, lr=2e-3,
                   batch=16, note="generalized ISTA for robust PCA (singular value and row shrinkage)")
