"""Sparse coding and the other vector problems (catalog families A and B, MIMO, power systems)."""

from __future__ import annotations

import math

import torch

from . import Problem, register

TRAIN, TEST = 2000, 500


def _randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def unit_columns(gen, n, m):
    A = _randn(gen, n, m)
    return A / torch.linalg.vector_norm(A, dim=0, keepdim=True)


def bernoulli_gaussian(gen, batch, m, p=0.1):
    """Codes with entries Bernoulli(p) * N(0, 1), as in Chen et al. (2018)."""
    support = torch.rand(batch, m, generator=gen, dtype=torch.float64) < p
    return support * _randn(gen, batch, m)


def add_noise(gen, clean, snr_db):
    """White Gaussian noise at the given SNR (per batch: signal power over noise power)."""
    if snr_db is None:
        return clean
    sigma = math.sqrt(float(clean.square().mean()) / 10 ** (snr_db / 10))
    return clean + sigma * _randn(gen, *clean.shape)


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


def sparse_coding(gen, dtype, n=64, m=128, p=0.1, snr_db=40.0):
    """y = A x + w: the Chen et al. setting (A Gaussian with unit columns, Bernoulli(0.1)·N(0, 1) codes,
    SNR 40 dB) at n = 64, m = 128 instead of 250 x 500, so that the demo runs in seconds."""
    A = unit_columns(gen, n, m)
    x_train, x_test = bernoulli_gaussian(gen, TRAIN, m, p), bernoulli_gaussian(gen, TEST, m, p)
    y_train, y_test = add_noise(gen, x_train @ A.T, snr_db), add_noise(gen, x_test @ A.T, snr_db)
    A, x_train, x_test, y_train, y_test = _cast(dtype, A, x_train, x_test, y_train, y_test)
    text = (f"sparse coding (Chen et al. setting, scaled down): A {n}x{m} Gaussian with unit columns, "
            f"Bernoulli({p})·N(0,1) codes, SNR {snr_db:g} dB")
    return A, (y_train, x_train), (y_test, x_test), text


def _lasso_problem(spec_inputs, hypers, layers, note, A_name="A", y_name="y", lr=1e-3):
    def build(gen, dtype):
        A, (y_tr, x_tr), (y_te, x_te), text = sparse_coding(gen, dtype)
        return Problem(text, {A_name: A, **hypers}, {y_name: y_tr}, x_tr, {y_name: y_te}, x_te,
                       output="x", state="x", layers=layers, lr=lr, steps=1500, note=note)
    return build


# the lasso weight: about the noise level times sqrt(2 log m), the classical choice for SNR 40 dB codes
LAM = 0.05

register("ista")(_lasso_problem("y", {"lam": LAM}, 16, "ISTA on the lasso"))
register("fista")(_lasso_problem("y", {"lam": LAM}, 16, "FISTA on the lasso"))
# a full m x m matrix per layer moves fast under Adam: LISTA needs a smaller step than LISTA-CP
for _name in ("lista", "lista_untied"):
    register(_name)(_lasso_problem("y", {"lam": LAM}, 16, "ISTA on the lasso (LISTA's initialisation)", lr=2e-4))
register("lista_cp")(_lasso_problem("y", {"lam": LAM}, 16, "ISTA on the lasso (LISTA-CP's initialisation)"))
for _name in ("lista_cpss", "alista"):
    register(_name)(_lasso_problem("y", {"lam": LAM}, 16, "ISTA with support selection (the untrained network)"))
register("lcod")(_lasso_problem("y", {"lam": LAM}, 16, "coordinate descent on the lasso"))
register("hqs_generic")(_lasso_problem("y", {"lam": LAM}, 16, "half-quadratic splitting on the lasso"))
register("admm_lasso")(_lasso_problem("y", {"lam": LAM}, 16, "ADMM on the lasso"))
register("pdhg")(_lasso_problem("g", {"lam": LAM}, 16, "Chambolle-Pock on the lasso", A_name="K", y_name="g"))
for _name in ("iht", "lista_iht"):
    register(_name)(_lasso_problem("y", {"k": 13}, 16, "iterative hard thresholding keeping k = 13 entries"))


@register("amp")
def amp(gen, dtype):
    """AMP's setting: A with i.i.d. N(0, 1/M) entries (not normalised columns), sparse codes, SNR 40 dB."""
    M, N = 64, 128
    A = _randn(gen, M, N) / math.sqrt(M)
    x_tr, x_te = bernoulli_gaussian(gen, TRAIN, N), bernoulli_gaussian(gen, TEST, N)
    y_tr, y_te = add_noise(gen, x_tr @ A.T, 40.0), add_noise(gen, x_te @ A.T, 40.0)
    A, x_tr, x_te, y_tr, y_te = _cast(dtype, A, x_tr, x_te, y_tr, y_te)
    return Problem(f"compressed sensing: A {M}x{N} i.i.d. N(0, 1/M), Bernoulli(0.1)·N(0,1) codes, SNR 40 dB",
                   {"A": A}, {"y": y_tr}, x_tr, {"y": y_te}, x_te, output="x", state="x", layers=16,
                   note="approximate message passing with the soft threshold")


@register("sprechmann_encoder")
def sprechmann(gen, dtype):
    A, (y_tr, x_tr), (y_te, x_te), text = sparse_coding(gen, dtype)
    return Problem(text + "; the encoder predicts the code", {"D0": A, "lam": LAM}, {"x": y_tr}, x_tr,
                   {"x": y_te}, x_te, output="z", state="z", layers=8, note="ISTA on the lasso with D0")


@register("task_driven_dl")
def task_driven(gen, dtype):
    n, m, q = 32, 64, 4
    D = unit_columns(gen, n, m)
    W_true = _randn(gen, q, m) / math.sqrt(m)
    codes_tr, codes_te = bernoulli_gaussian(gen, TRAIN, m), bernoulli_gaussian(gen, TEST, m)
    x_tr, x_te = add_noise(gen, codes_tr @ D.T, 30.0), add_noise(gen, codes_te @ D.T, 30.0)
    t_tr, t_te = codes_tr @ W_true.T, codes_te @ W_true.T
    W0 = 0.1 * _randn(gen, q, m)
    D, W0, x_tr, x_te, t_tr, t_te = _cast(dtype, D, W0, x_tr, x_te, t_tr, t_te)
    return Problem(f"regression from sparse codes: signals = D x + noise (D {n}x{m}), targets W x ({q} outputs)",
                   {"D0": D, "W0": W0}, {"x": x_tr}, t_tr, {"x": x_te}, t_te, output="yhat", layers=20,
                   lr=1e-2, note="elastic-net ISTA with the initial dictionary and a random linear head")


@register("ml_ista")
def ml_ista(gen, dtype):
    n, m1, m2 = 32, 64, 96
    D1, D2 = unit_columns(gen, n, m1), unit_columns(gen, m1, m2)
    g_tr, g_te = bernoulli_gaussian(gen, TRAIN, m2, 0.05), bernoulli_gaussian(gen, TEST, m2, 0.05)
    x_tr, x_te = add_noise(gen, g_tr @ (D1 @ D2).T, 40.0), add_noise(gen, g_te @ (D1 @ D2).T, 40.0)
    D1, D2, g_tr, g_te, x_tr, x_te = _cast(dtype, D1, D2, g_tr, g_te, x_tr, x_te)
    return Problem(f"two-layer sparse coding x = D1 D2 g2 (D1 {n}x{m1}, D2 {m1}x{m2}, 5 % nonzeros, SNR 40 dB)",
                   {"D1": D1, "D2": D2, "lam1": 0.02, "lam2": 0.02}, {"x": x_tr}, g_tr, {"x": x_te}, g_te,
                   output="g2", state="g2", layers=16, note="ML-ISTA")


@register("detnet")
def detnet(gen, dtype):
    """MIMO detection as in Samuel et al.: random Gaussian channels N(0, 1/N), BPSK, SNR 10 dB."""
    N, K = 16, 8

    def draw(batch):
        H = _randn(gen, batch, N, K) / math.sqrt(N)
        x = 1 - 2 * (torch.rand(batch, K, generator=gen, dtype=torch.float64) < 0.5).double()
        sigma2 = torch.einsum("bnk,bnk->b", H, H) / K / 10 ** (10 / 10)
        y = torch.einsum("bnk,bk->bn", H, x) + sigma2.sqrt()[:, None] * _randn(gen, batch, N)
        return _cast(dtype, H, x, y)

    H_tr, x_tr, y_tr = draw(TRAIN)
    H_te, x_te, y_te = draw(TEST)
    return Problem(f"MIMO detection: {N}x{K} Gaussian channels, BPSK, SNR 10 dB", {"K": K, "dtype": dtype},
                   {"H": H_tr, "y": y_tr}, x_tr, {"H": H_te, "y": y_te}, x_te, output="x", state="x",
                   metric="ser", layers=10, lr=1e-3, note="projected gradient on the box-relaxed least squares")


@register("prox_linear_psse")
def psse(gen, dtype):
    """Power-system state estimation (catalog B8): quadratic measurements v^T H_m v with 10 % gross outliers."""
    n, M = 10, 40
    G = _randn(gen, M, n, n) / math.sqrt(n)
    Hs = (G + G.transpose(1, 2)) / 2

    def draw(batch):
        v = torch.cat([1 + 0.1 * _randn(gen, batch, 5), 0.2 * _randn(gen, batch, 5)], 1)
        z = torch.einsum("bi,mij,bj->bm", v, Hs, v) + 0.01 * _randn(gen, batch, M)
        outlier = torch.rand(batch, M, generator=gen, dtype=torch.float64) < 0.1
        z = z + outlier * (5 + 5 * torch.rand(batch, M, generator=gen, dtype=torch.float64))
        v0 = v + 0.3 * _randn(gen, batch, n) * v.abs().mean()
        return _cast(dtype, z, v0, v)

    z_tr, v0_tr, v_tr = draw(TRAIN // 4)
    z_te, v0_te, v_te = draw(TEST // 4)
    return Problem(f"state estimation: {M} quadratic measurements of {n} states, 10 % gross outliers",
                   {"Hs": Hs.to(dtype), "inner": 20}, {"z": z_tr, "v0": v0_tr}, v_tr, {"z": z_te, "v0": v0_te},
                   v_te, output="v", state="v", layers=6, lr=2e-2, batch=16,
                   note="the prox-linear double loop (robust l1 loss)")
