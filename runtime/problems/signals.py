"""Audio, NMF, ultrasound, microscopy, super-resolution, fusion and deraining problems."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import Problem, register
from .images import cartoon_images, circular_blur, gaussian_kernel, rand, randn


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


def _complex(dtype):
    return torch.complex64 if dtype == torch.float32 else torch.complex128


# ---------------------------------------------------------------- NMF source separation (catalog D3)
def _nmf_data(gen, batch, F_, T, K):
    """Spectrogram-like nonnegative data M = W H with sparse activations (K sources), plus |noise|."""
    W = rand(gen, F_, K) ** 3
    W = W / W.norm(dim=0, keepdim=True)  # unit-norm bases: deep_nmf's normalisation leaves them unchanged
    Hs = rand(gen, batch, K, T) * (rand(gen, batch, K, T) < 0.3)
    M = W @ Hs + 0.01 * rand(gen, batch, F_, T)
    return W, Hs, M


def _nmf_problem(gen, dtype, bases_name):
    F_, T, K = 32, 20, 6
    W, H_tr, M_tr = _nmf_data(gen, 256, F_, T, K)
    H_te, M_te = _nmf_data_same(gen, W, 64, T)
    W0 = W  # supervised NMF: the bases were learned beforehand on isolated sources
    W0, M_tr, M_te, H_tr, H_te = _cast(dtype, W0, M_tr, M_te, H_tr, H_te)
    return Problem(f"NMF source separation (KL): {F_}x{T} spectrograms of {K} sources with sparse activations; "
                   "bases known (supervised NMF)", {bases_name: W0, "beta": 1.0}, {"M": M_tr}, H_tr, {"M": M_te},
                   H_te, output="H", state="H", layers=20, lr=1e-2, batch=16,
                   note="multiplicative updates for KL-NMF")


@register("nmf_mu")
def nmf_mu(gen, dtype):
    return _nmf_problem(gen, dtype, "W0")


@register("deep_nmf")
def deep_nmf(gen, dtype):
    return _nmf_problem(gen, dtype, "W")


def _nmf_data_same(gen, W, batch, T):
    K = W.shape[1]
    Hs = rand(gen, batch, K, T) * (rand(gen, batch, K, T) < 0.3)
    return Hs, W @ Hs + 0.01 * rand(gen, batch, W.shape[0], T)


# ---------------------------------------------------------------- audio: MISI (catalog C2)
HOP, NFFT = 16, 64


def _two_sources(gen, batch, T):
    t = torch.arange(T, dtype=torch.float64)
    S = torch.zeros(batch, 2, T, dtype=torch.float64)
    for _ in range(3):
        S[:, 0] += (0.3 + 0.7 * rand(gen, batch, 1)) * torch.sin(
            2 * math.pi * (0.01 + 0.05 * rand(gen, batch, 1)) * t + 7 * rand(gen, batch, 1))
    for _ in range(2):
        am = 1 + 0.9 * torch.sin(2 * math.pi * (1 / 600 + (1 / 200 - 1 / 600) * rand(gen, batch, 1)) * t)
        S[:, 1] += (0.3 + 0.7 * rand(gen, batch, 1)) * torch.sin(
            2 * math.pi * (0.12 + 0.18 * rand(gen, batch, 1)) * t + 7 * rand(gen, batch, 1)) * am
    return S


def _stft_mag(x):
    window = torch.hann_window(NFFT, dtype=x.dtype) ** 0.5
    X = torch.stft(x.reshape(-1, x.shape[-1]), NFFT, HOP, window=window, center=True, return_complex=True)
    return X.abs().reshape(*x.shape[:-1], *X.shape[-2:])


@register("misi")
def misi(gen, dtype):
    T = 512
    S_tr, S_te = _two_sources(gen, 64, T), _two_sources(gen, 32, T)

    def inputs(S):
        A = _stft_mag(S) * (1 + 0.2 * randn(gen, *_stft_mag(S).shape)).abs()  # noisy magnitude estimates
        return {"x": S.sum(1).to(dtype), "A": A.to(dtype)}

    return Problem("source separation: 2 synthetic sources (tones / modulated tones), 512 samples, magnitude "
                   "estimates with 20 % multiplicative error", {"hop": HOP}, inputs(S_tr), S_tr.to(dtype),
                   inputs(S_te), S_te.to(dtype), output="s", state="s", layers=10,
                   note="MISI phase retrieval (no trainable parameters)")


@register("misi_unfolded")
def misi_unfolded(gen, dtype):
    T = 512
    S_tr, S_te = _two_sources(gen, 128, T), _two_sources(gen, 32, T)

    def inputs(S):
        x = S.sum(1)
        return {"x": x.to(dtype), "feat": torch.log1p(_stft_mag(x)).to(dtype)}

    return Problem("source separation: 2 synthetic sources from their mixture, 512 samples", {"hop": HOP},
                   inputs(S_tr), S_tr.to(dtype), inputs(S_te), S_te.to(dtype), output="s", state="s", layers=3,
                   lr=3e-3, batch=16, note="MISI with constant masks 1/2 (zero-initialised mask network)")


# ---------------------------------------------------------------- ultrasound: CORONA (catalog D2)
@register("corona")
def corona(gen, dtype):
    T, nx, nz, s, rank, rows = 8, 8, 8, 5, 2, 4
    i = torch.arange(s, dtype=torch.float64) - (s - 1) // 2
    g = torch.exp(-(i[:, None] ** 2 + i[None, :] ** 2) / (2 * 0.8 ** 2))
    g[i.abs() > 1, :] = 0
    g[:, i.abs() > 1] = 0
    h = (g / g.sum()) * (1 + 0j)

    def draw(batch):
        c = lambda *shape: torch.complex(randn(gen, *shape), randn(gen, *shape))
        m = nx * nz
        L0 = c(batch, m, rank) @ c(batch, rank, T) / math.sqrt(2)
        S0 = torch.zeros(batch, m, T, dtype=torch.complex128)
        for b in range(batch):
            S0[b, torch.randperm(m, generator=gen)[:rows]] = 2 * c(rows, T)
        movie = lambda X: X.transpose(-1, -2).reshape(batch, T, nx, nz)
        blurred = torch.fft.ifft2(torch.fft.fft2(movie(L0 + S0)) * torch.fft.fft2(_otf(h, nx, nz)))
        return blurred + 0.02 * c(batch, T, nx, nz), movie(S0)

    cd = _complex(dtype)
    D_tr, S_tr = draw(128)
    D_te, S_te = draw(32)
    return Problem(f"ultrasound clutter suppression: {T} frames of {nx}x{nz}, rank-{rank} tissue, {rows} blood "
                   "pixels, 3x3 PSF", {"h": h.to(cd), "lam1": 1.0, "lam2": 1.0}, {"D": D_tr.to(cd)}, S_tr.to(cd),
                   {"D": D_te.to(cd)}, S_te.to(cd), output="S", state="S", layers=6, lr=2e-3, batch=16,
                   note="generalized ISTA for convolutional robust PCA")


def _otf(kernel, h, w):
    s = kernel.shape[-1]
    padded = torch.zeros(h, w, dtype=kernel.dtype)
    padded[:s, :s] = kernel
    return torch.roll(padded, shifts=(-((s - 1) // 2), -((s - 1) // 2)), dims=(0, 1))


# ---------------------------------------------------------------- microscopy: SPARCOM (catalog A16)
def _blinking_movie(gen, batch, T, n, emitters):
    """Emitters on an n x n fine grid, each blinking with an independent random intensity per frame:
    the truth is the variance image (SPARCOM's unknown)."""
    support = torch.zeros(batch, n * n, dtype=torch.float64)
    for b in range(batch):
        support[b, torch.randperm(n * n, generator=gen)[:emitters]] = 1.0
    intensity = rand(gen, batch, T, n * n) * support[:, None, :]
    variance = support / 12.0  # the variance of a uniform(0, 1) intensity
    return intensity, variance


@register("sparcom")
def sparcom(gen, dtype):
    n, coarse, T = 16, 8, 40
    psf = gaussian_kernel(5, 1.2)
    fine_to_coarse = torch.zeros(coarse * coarse, n * n, dtype=torch.float64)
    for j in range(n * n):
        img = torch.zeros(n, n, dtype=torch.float64)
        img.view(-1)[j] = 1.0
        fine_to_coarse[:, j] = F.avg_pool2d(circular_blur(img, psf)[None, None], 2).reshape(-1) * 4
    A = fine_to_coarse
    s_tr, x_tr = _blinking_movie(gen, 64, T, n, 6)
    s_te, x_te = _blinking_movie(gen, 16, T, n, 6)
    f_tr, f_te = s_tr @ A.T + 0.01 * randn(gen, 64, T, coarse ** 2), s_te @ A.T + 0.01 * randn(gen, 16, T, coarse ** 2)
    A, f_tr, f_te, x_tr, x_te = _cast(dtype, A, f_tr, f_te, x_tr, x_te)
    return Problem(f"super-resolution microscopy: {T} frames of {coarse}x{coarse} pixels, 6 blinking emitters "
                   f"on a {n}x{n} grid", {"A": A, "lam": 1e-3}, {"f": f_tr}, x_tr, {"f": f_te}, x_te, output="x",
                   state="x", layers=30, note="SPARCOM: ISTA on the covariance (no trainable parameters)")


@register("lsparcom")
def lsparcom(gen, dtype):
    n, T = 16, 40
    psf = torch.zeros(7, 7, dtype=torch.float64)
    psf[2:5, 2:5] = gaussian_kernel(3, 0.8)
    s_tr, x_tr = _blinking_movie(gen, 64, T, n, 6)
    s_te, x_te = _blinking_movie(gen, 16, T, n, 6)
    blur = lambda s: circular_blur(s.reshape(*s.shape[:-1], n, n), gaussian_kernel(3, 0.8))
    f_tr, f_te = _cast(dtype, blur(s_tr) + 0.01 * randn(gen, 64, T, n, n), blur(s_te) + 0.01 * randn(gen, 16, T, n, n))
    x_tr, x_te = _cast(dtype, x_tr.reshape(64, n, n), x_te.reshape(16, n, n))
    return Problem(f"super-resolution microscopy: {T} frames of {n}x{n}, 6 blinking emitters, 3x3 PSF",
                   {"psf": psf.to(dtype), "lam": 1e-4}, {"f": f_tr}, x_tr, {"f": f_te}, x_te, output="x", state="x",
                   layers=10, lr=1e-2, batch=16, note="SPARCOM's ISTA (LSPARCOM's initialisation)")


# ---------------------------------------------------------------- deraining (catalog B3)
@register("ding_rain_admm")
def rain(gen, dtype):
    h = w = 32

    def draw(batch):
        B = cartoon_images(gen, batch, h, w)
        streaks = (rand(gen, batch, h, w) < 0.03).double()
        kernel = torch.zeros(7, 7, dtype=torch.float64)
        kernel[torch.arange(7), torch.arange(7)] = 1.0  # diagonal rain streaks
        R = 0.5 * circular_blur(streaks, kernel)
        return B + R, B

    d = torch.zeros(2, 3, 3, dtype=torch.float64)
    d[0, 1, 1], d[0, 1, 2], d[1, 1, 1], d[1, 2, 1] = -1.0, 1.0, -1.0, 1.0
    e = torch.zeros(1, 3, 3, dtype=torch.float64)
    e[0, 0, 0], e[0, 2, 2] = 1.0, -1.0  # across the streak direction
    O_tr, B_tr = draw(128)
    O_te, B_te = draw(32)
    O_tr, O_te, B_tr, B_te = _cast(dtype, O_tr, O_te, B_tr, B_te)
    return Problem(f"rain removal: {h}x{w} cartoon backgrounds with diagonal rain streaks",
                   {"d0": d.to(dtype), "e0": e.to(dtype)}, {"O": O_tr}, B_tr, {"O": O_te}, B_te, output="B",
                   state="B", metric="psnr", layers=6, lr=2e-3, batch=16,
                   note="ADMM with derivative (background) and streak (rain) filters")


# ---------------------------------------------------------------- super-resolution and fusion (A9, A10, A18)
def _smooth(gen, batch, n):
    x = cartoon_images(gen, batch, n, n)
    return circular_blur(x, gaussian_kernel(5, 1.0))


def _patch_dictionaries(gen, lr_img, hr_img, atoms, s, t):
    """Example-based coupled dictionaries: LR s x s / HR t x t patches at the same random pixels."""
    B, n, _ = lr_img.shape
    r, q = s // 2, t // 2
    picks = [(int(torch.randint(B, (1,), generator=gen)), int(torch.randint(r, n - r, (1,), generator=gen)),
              int(torch.randint(r, n - r, (1,), generator=gen))) for _ in range(atoms)]
    Dl = torch.stack([lr_img[b, i - r:i + r + 1, j - r:j + r + 1] for b, i, j in picks])
    Dh = torch.stack([hr_img[b, i - q:i + q + 1, j - q:j + q + 1] for b, i, j in picks])
    scale = Dl.reshape(atoms, -1).norm(dim=1).clamp_min(1e-8)[:, None, None]
    return Dl / scale, Dh / scale


def _bicubic(x, factor):
    return F.interpolate(x[:, None], scale_factor=factor, mode="bicubic", align_corners=False)[:, 0]


@register("srcnn_sc")
def srcnn_sc(gen, dtype):
    n, c1 = 24, 16
    x_tr, x_te = _smooth(gen, 64, n), _smooth(gen, 16, n)
    y_tr, y_te = _bicubic(x_tr[:, ::2, ::2], 2), _bicubic(x_te[:, ::2, ::2], 2)
    Dl, Dh = _patch_dictionaries(gen, y_tr, x_tr, c1, 5, 3)
    x_tr, x_te, y_tr, y_te, Dl, Dh = _cast(dtype, x_tr, x_te, y_tr, y_te, Dl, Dh)
    return Problem(f"2x super-resolution: {n}x{n} smooth cartoon images, bicubic-interpolated input, coupled "
                   f"example dictionaries ({c1} atoms)", {"Dl": Dl, "Dh": Dh, "M": torch.eye(c1, dtype=dtype),
                                                          "lam": 0.05},
                   {"y": y_tr}, x_tr, {"y": y_te}, x_te, output="xhat", metric="psnr", layers=1, lr=1e-3,
                   batch=16, note="one ISTA step of patch sparse coding (SRCNN's reading)")


@register("scn")
def scn(gen, dtype):
    n, atoms = 24, 16
    x_tr, x_te = _smooth(gen, 64, n), _smooth(gen, 16, n)
    lr_tr, lr_te = x_tr[:, ::2, ::2], x_te[:, ::2, ::2]
    Dl, Dh = _patch_dictionaries(gen, _bicubic(lr_tr, 2), x_tr, atoms, 5, 5)
    x_tr, x_te, lr_tr, lr_te, Dl, Dh = _cast(dtype, x_tr, x_te, lr_tr, lr_te, Dl, Dh)
    return Problem(f"2x super-resolution: {n // 2}x{n // 2} -> {n}x{n} smooth cartoon images, coupled example "
                   f"dictionaries ({atoms} atoms)", {"Dl": Dl, "Dh": Dh, "lam": 0.05}, {"y": lr_tr}, x_tr,
                   {"y": lr_te}, x_te, output="x", metric="psnr", layers=3, lr=1e-3, batch=16,
                   note="LISTA-initialised patch sparse coding (SCN's initialisation)")


@register("lohit_pgd_fusion")
def fusion(gen, dtype):
    C, n = 3, 32
    b = torch.stack([gaussian_kernel(5, 0.8 + 0.3 * c) for c in range(C)])

    def draw(batch):
        base = cartoon_images(gen, batch, n, n)
        bands = torch.stack([base * (0.6 + 0.4 * rand(gen, batch, 1, 1)) for _ in range(C)], 1)
        pan = bands.mean(1)
        low = torch.stack([circular_blur(bands[:, c], b[c]) for c in range(C)], 1)[..., ::4, ::4]
        return low + 0.005 * randn(gen, *low.shape), pan, bands

    y_tr, p_tr, x_tr = draw(64)
    y_te, p_te, x_te = draw(16)
    y_tr, p_tr, x_tr, y_te, p_te, x_te = _cast(dtype, y_tr, p_tr, x_tr, y_te, p_te, x_te)
    return Problem(f"pan-sharpening: {C} bands at {n // 4}x{n // 4} plus a {n}x{n} panchromatic image",
                   {"b0": b.to(dtype)}, {"y": y_tr, "pan": p_tr}, x_tr, {"y": y_te, "pan": p_te}, x_te,
                   output="x", state="x", metric="psnr", layers=3, lr=1e-3, batch=16,
                   note="projected gradient with zero-initialised projector networks (the identity)")


# ---------------------------------------------------------------- ML-CSC (catalog A12)
@register("ml_csc_layered")
def ml_csc(gen, dtype):
    c0, c, s, n = 1, 8, 3, 4
    D1 = randn(gen, c, c0, s, s)
    D1 = D1 / D1.flatten(1).norm(dim=1)[:, None, None, None]
    Dk = randn(gen, n, c, c, s, s) / (c * s * s) ** 0.5
    x_tr, x_te = cartoon_images(gen, 48, 12, 12)[:, None], cartoon_images(gen, 16, 12, 12)[:, None]
    from unroll.runtime.loader import load

    Reference = load("ml_csc_layered", layers=2)
    reference = Reference(D1=D1, Dk=Dk, beta0=0.05, K=30, eta=0.2)
    with torch.no_grad():
        g_tr, g_te = reference(x_tr), reference(x_te)
    D1, Dk, x_tr, x_te, g_tr, g_te = _cast(dtype, D1, Dk, x_tr, x_te, g_tr, g_te)
    return Problem("multi-layer convolutional sparse coding: 12x12 cartoon images; the target is layered basis "
                   "pursuit's code (30 inner ISTA steps per layer), approximated by layered thresholding",
                   {"D1": D1, "Dk": Dk, "beta0": 0.05}, {"x": x_tr}, g_tr, {"x": x_te}, g_te, output="g",
                   layers=2, lr=1e-2, batch=16, note="layered thresholding (the CNN forward pass of ML-CSC)")
