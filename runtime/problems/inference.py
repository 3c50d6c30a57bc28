"""Inference, transport and filtering problems (catalog families E and F)."""

from __future__ import annotations

import math

import torch

from . import Problem, register
from .images import rand, randn


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


# ---------------------------------------------------------------- E1 crf_rnn: dense-CRF mean field
SIDE, LABELS = 8, 3


def _scenes(gen, batch, noise=1.2, colour_noise=0.05):
    """Piecewise-constant label maps (a square of one label on another, a stripe of a third), an image
    with one colour per label plus noise, and unaries: one-hot evidence drowned in noise."""
    labels = torch.zeros(batch, SIDE, SIDE, dtype=torch.long)
    for s in range(batch):
        pick = lambda: int(torch.randint(LABELS, (1,), generator=gen))
        labels[s] = pick()
        r0, c0 = (int(v) for v in torch.randint(0, 4, (2,), generator=gen))
        labels[s, r0:r0 + 4, c0:c0 + 4] = pick()
        labels[s, :, int(torch.randint(SIDE, (1,), generator=gen))] = pick()
    labels = labels.reshape(batch, -1)
    colours = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]], dtype=torch.float64)
    img = colours[labels] + colour_noise * randn(gen, batch, SIDE * SIDE, 3)
    onehot = torch.nn.functional.one_hot(labels, LABELS).double()
    U = onehot + noise * randn(gen, batch, SIDE * SIDE, LABELS)
    return img, U, onehot


@register("crf_rnn")
def crf_rnn(gen, dtype):
    yy, xx = torch.meshgrid(torch.arange(SIDE), torch.arange(SIDE), indexing="ij")
    pos = torch.stack([yy.reshape(-1), xx.reshape(-1)], 1).double()
    img_tr, U_tr, t_tr = _scenes(gen, 256)
    img_te, U_te, t_te = _scenes(gen, 64)
    img_tr, U_tr, t_tr, img_te, U_te, t_te = _cast(dtype, img_tr, U_tr, t_tr, img_te, U_te, t_te)
    return Problem(f"semantic labelling: {SIDE}x{SIDE} scenes with {LABELS} labels, noisy unaries (sigma 1.2) "
                   "and colour image", {"pos": pos.to(dtype), "L": LABELS}, {"img": img_tr, "U": U_tr}, t_tr,
                   {"img": img_te, "U": U_te}, t_te, output="Q", state="Q", metric="label_error", layers=5,
                   lr=5e-3, batch=32, note="mean-field inference of the dense CRF with Potts compatibility")


# ---------------------------------------------------------------- E5 em_gmm
@register("em_gmm")
def em_gmm(gen, dtype):
    N, D, K = 60, 2, 3

    centres = 3 * randn(gen, K, D)  # the task's mixture layout; each sample moves its means around it

    def draw(batch):
        means = centres + 0.7 * randn(gen, batch, K, D)
        z = torch.randint(K, (batch, N), generator=gen)
        X = torch.gather(means, 1, z[..., None].expand(batch, N, D)) + randn(gen, batch, N, D)
        return X, means

    X_tr, m_tr = draw(32)
    X_te, m_te = draw(32)
    mu0 = centres  # EM starts from the layout's centres
    data = {"w0": torch.full((K,), 1 / K, dtype=dtype), "mu0": mu0.to(dtype), "s20": torch.ones(K, dtype=dtype)}
    return Problem(f"Gaussian mixture: {N} points in {D}-D from {K} unit-variance components; the means of "
                   "each sample's mixture (moved by 0.7 around a common layout) are estimated", data, {"X": X_tr.to(dtype)}, m_tr.to(dtype),
                   {"X": X_te.to(dtype)}, m_te.to(dtype), output="mu", metric="nmse_matched", layers=20,
                   note="expectation-maximisation (no trainable parameters)")


# ---------------------------------------------------------------- E7 kalman_filter
@register("kalman_filter")
def kalman(gen, dtype):
    T, dt, q, r = 50, 1.0, 0.01, 1.0
    Fm = torch.tensor([[1, 0, dt, 0], [0, 1, 0, dt], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=torch.float64)
    Hm = torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0]], dtype=torch.float64)
    Q, R = q * torch.eye(4, dtype=torch.float64), r * torch.eye(2, dtype=torch.float64)

    def draw(batch):
        x = torch.cat([randn(gen, batch, 2), 0.5 * randn(gen, batch, 2)], 1)
        ys = []
        for _ in range(T):
            x = x @ Fm.T + math.sqrt(q) * randn(gen, batch, 4)
            ys.append(x @ Hm.T + math.sqrt(r) * randn(gen, batch, 2))
        return torch.stack(ys, 1), x

    ys_tr, x_tr = draw(64)
    ys_te, x_te = draw(256)
    zero = lambda b: torch.zeros(b, 4, dtype=dtype)
    data = {"F": Fm, "H": Hm, "Q": Q, "R": R, "P0": 10 * torch.eye(4, dtype=torch.float64)}
    return Problem(f"tracking: constant-velocity target in 2-D, {T} noisy position measurements (sigma 1)",
                   {k: v.to(dtype) for k, v in data.items()}, {"ys": ys_tr.to(dtype), "x0": zero(64)},
                   x_tr.to(dtype), {"ys": ys_te.to(dtype), "x0": zero(256)}, x_te.to(dtype), output="x",
                   layers=T, note="the Kalman filter (no trainable parameters)")


# ---------------------------------------------------------------- F1 sinkhorn, sinkhorn_log
def _point_clouds(gen, batch, n, m):
    x = randn(gen, batch, n, 2)
    y = randn(gen, batch, m, 2) + torch.tensor([1.0, 0.0], dtype=torch.float64)
    C = torch.cdist(x, y) ** 2
    return C / C.amax(dim=(1, 2), keepdim=True)


def _entropic_plan(C, a, b, eps, iterations=5000):
    """The converged entropic plan, by log-domain Sinkhorn in float64 (the target the layers approach)."""
    f = torch.zeros_like(a)
    g = torch.zeros_like(b)
    for _ in range(iterations):
        g = eps * torch.log(b) - eps * torch.logsumexp((f[..., :, None] - C) / eps, dim=-2)
        f = eps * torch.log(a) - eps * torch.logsumexp((g[..., None, :] - C) / eps, dim=-1)
    return torch.exp((f[..., :, None] + g[..., None, :] - C) / eps)


def _transport(name, eps, layers):
    @register(name)
    def build(gen, dtype):
        n, m = 16, 12
        inputs = []
        for batch in (16, 16):
            C = _point_clouds(gen, batch, n, m)
            a = torch.full((batch, n), 1 / n, dtype=torch.float64)
            b = torch.full((batch, m), 1 / m, dtype=torch.float64)
            inputs.append(({"C": C.to(dtype), "a": a.to(dtype), "b": b.to(dtype)}, _entropic_plan(C, a, b, eps)))
        (tr, P_tr), (te, P_te) = inputs
        return Problem(f"entropic optimal transport between {n} and {m} points in 2-D (uniform weights, squared "
                       f"distance cost scaled to [0, 1], eps = {eps:g}); target: the converged plan",
                       {"eps": eps}, tr, P_tr.to(dtype), te, P_te.to(dtype), output="P", layers=layers,
                       note="Sinkhorn's iterations (no trainable parameters)")
    return build


_transport("sinkhorn", 0.05, 10)
_transport("sinkhorn_log", 0.01, 50)


@register("sinkhorn_autoencoder")
def sinkhorn_autoencoder(gen, dtype):
    n = m = 32
    D, h = 8, 2
    basis = torch.linalg.qr(randn(gen, D, h))[0]

    def draw(batch):
        Z = randn(gen, batch, n, h)
        X = Z @ basis.T + 0.05 * randn(gen, batch, n, D)
        return X, randn(gen, batch, m, h)

    X_tr, Zp_tr = draw(128)
    X_te, Zp_te = draw(32)
    E0, G0 = 0.3 * randn(gen, h, D), 0.3 * randn(gen, D, h)
    return Problem(f"autoencoding: batches of {n} points on a {h}-D subspace of R^{D}, Gaussian prior, Sinkhorn "
                   "loss to prior samples", {"E0": E0.to(dtype), "G0": G0.to(dtype)}, {"X": X_tr.to(dtype),
                   "Zp": Zp_tr.to(dtype)}, X_tr.to(dtype), {"X": X_te.to(dtype), "Zp": Zp_te.to(dtype)},
                   X_te.to(dtype), output="Xhat", layers=30, lr=1e-2, steps=300,
                   note="random linear encoder and decoder")


# ---------------------------------------------------------------- E5 neural_em, rnn_em
def _object_images(gen, batch, D, K, hd, B_true, sigma):
    """Images whose pixels each come from one of K 'objects' B* theta_k, plus noise (Greff et al.'s model)."""
    latents = randn(gen, batch, K, hd)
    owner = torch.randint(K, (batch, D), generator=gen)
    objects = latents @ B_true.T  # [batch, K, D]
    clean = torch.gather(objects, 1, owner[:, None, :]).squeeze(1)
    return clean + sigma * randn(gen, batch, D), clean


def _mixture_reconstruction(outputs):
    """The image the mixture explains: sum_k gamma_k * psi_k (pixel by pixel)."""
    return (outputs["gamma"] * outputs["psi_out"]).sum(-2)


def _em_problem(gen, dtype, name):
    D, K, hd, sigma = 16, 2, 3, 0.25
    B_true = randn(gen, D, hd)
    x_tr, c_tr = _object_images(gen, 512, D, K, hd, B_true, 0.3 * sigma)
    x_te, c_te = _object_images(gen, 128, D, K, hd, B_true, 0.3 * sigma)
    noise = lambda b: randn(gen, b, K, hd).to(dtype)
    if name == "neural_em":
        data = {"B0": randn(gen, D, hd).to(dtype), "K": K, "sigma": sigma, "eta": 0.003}  # eta ||B||^2 / sigma^2 < 2
        note = "N-EM with a random linear decoder (one gradient M-step per layer)"
    else:
        squash = torch.sigmoid
        x_tr, c_tr, x_te, c_te = squash(x_tr), squash(c_tr), squash(x_te), squash(c_te)
        data = {"Wx0": randn(gen, hd, D).to(dtype), "Wh0": (0.5 * randn(gen, hd, hd)).to(dtype),
                "Wy0": randn(gen, D, hd).to(dtype), "K": K, "sigma": sigma}
        note = "RNN-EM with random weights"
    return Problem(f"perceptual grouping: {D}-pixel images whose pixels belong to one of {K} objects; target: the "
                   "clean image as the mixture explains it (sum_k gamma_k psi_k)", data,
                   {"x": x_tr.to(dtype), "theta0": noise(512)}, c_tr.to(dtype),
                   {"x": x_te.to(dtype), "theta0": noise(128)}, c_te.to(dtype), output="psi_out", layers=5,
                   lr=1e-2, batch=64, steps=300, note=note, estimate=_mixture_reconstruction)


@register("neural_em")
def neural_em(gen, dtype):
    return _em_problem(gen, dtype, "neural_em")


@register("rnn_em")
def rnn_em(gen, dtype):
    return _em_problem(gen, dtype, "rnn_em")
