"""Inference over index structures (catalog family E): trellis detection (viterbi, viterbinet), belief
propagation on a loopy grid (loopy_bp), non-local MRF denoising (nlr_mrf_gd)."""

from __future__ import annotations

import itertools
import math

import torch

from . import Problem, register
from .images import cartoon_images, randn

# ---------------------------------------------------------------- ISI channel, BPSK (catalog E6)
M, LC = 2, 3
S = M ** LC
H_CH = torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)
SIGMA2 = 0.25


def _trellis():
    """State i <-> (s_t, ..., s_{t-Lc+1}), s_t the most significant base-M digit."""
    digits = torch.tensor([[(i // M ** (LC - 1 - k)) % M for k in range(LC)] for i in range(S)])
    mu = (2.0 * digits - 1.0).to(torch.float64) @ H_CH
    pred = torch.tensor([[(i % M ** (LC - 1)) * M + j for j in range(M)] for i in range(S)])
    return mu, pred, digits[:, 0]


def _blocks(gen, batch, T):
    """Sent symbol indices, trellis states and outputs of `batch` blocks of T symbols."""
    symbols = torch.randint(0, M, (batch, T + LC - 1), generator=gen)
    states = sum(symbols[:, LC - 1 - k: LC - 1 - k + T] * M ** (LC - 1 - k) for k in range(LC))
    x = 2.0 * symbols.to(torch.float64) - 1.0
    clean = torch.stack([sum(H_CH[k] * x[:, LC - 1 + t - k] for k in range(LC)) for t in range(T)], dim=1)
    return symbols[:, LC - 1:], states, clean + math.sqrt(SIGMA2) * randn(gen, batch, T)


@register("viterbi")
def viterbi(gen, dtype):
    mu, pred, newest = _trellis()
    sent_tr, _, y_tr = _blocks(gen, 64, 32)
    sent_te, _, y_te = _blocks(gen, 64, 32)
    return Problem(f"BPSK over an ISI channel h = {H_CH.tolist()}, sigma^2 = {SIGMA2}: blocks of 32 symbols; the "
                   "symbol error rate of the detected sequence", {"mu": mu.to(dtype), "pred": pred, "newest": newest,
                                                                 "sigma2": SIGMA2},
                   {"ys": y_tr.to(dtype)}, sent_tr.to(dtype), {"ys": y_te.to(dtype)}, sent_te.to(dtype),
                   output="s_hat", metric="index_error", layers=32,
                   note="the Viterbi algorithm (exact Gaussian likelihood, known channel); one layer per symbol")


@register("viterbinet")
def viterbinet(gen, dtype):
    _, pred, newest = _trellis()
    _, states_tr, y_tr = _blocks(gen, 128, 32)
    sent_te, _states_te, y_te = _blocks(gen, 64, 32)
    # p(y): a mixture of S Gaussians fitted to the training outputs (moment estimates per true state, as
    # EM's fixed point would give them with the states known)
    flat_y, flat_s = y_tr.reshape(-1), states_tr.reshape(-1)
    w = torch.stack([(flat_s == s).double().mean() for s in range(S)])
    m = torch.stack([flat_y[flat_s == s].mean() for s in range(S)])
    v = torch.stack([flat_y[flat_s == s].var() for s in range(S)])
    pilots_y, pilots_state = y_tr[..., None].to(dtype), states_tr

    def classifier_loss(net, idx):  # as in [100]: the MLP is a state classifier trained on pilots
        logits = net.f(pilots_y[idx].reshape(-1, 1))
        return torch.nn.functional.cross_entropy(logits, pilots_state[idx].reshape(-1))

    return Problem("BPSK over an ISI channel h = [1, 0.6, 0.3], sigma^2 = 0.25, ViterbiNet: an MLP state classifier "
                   "and a mixture density give the likelihoods of the Viterbi recursion; symbol error rate",
                   {"pred": pred, "newest": newest, "mix_w": w.to(dtype), "mix_m": m.to(dtype), "mix_v": v.to(dtype)},
                   {"ys": pilots_y}, states_tr.to(dtype), {"ys": y_te[..., None].to(dtype)}, sent_te.to(dtype),
                   output="s_hat", metric="index_error", layers=32, lr=1e-2, steps=150, loss=classifier_loss,
                   note="an untrained (random) state classifier inside the Viterbi algorithm")


# ---------------------------------------------------------------- loopy BP on a 3x3 grid (catalog E4)
GRID = [(r * 3 + c, r * 3 + c + 1) for r in range(3) for c in range(2)] + \
       [(r * 3 + c, (r + 1) * 3 + c) for r in range(2) for c in range(3)]


def _marginals(logphi, psi):
    """Exact marginals of a binary 3x3 grid by enumeration (512 states), for each sample."""
    states = torch.tensor(list(itertools.product(range(2), repeat=9)))
    logp = logphi[:, torch.arange(9), states].sum(-1)  # [batch, 512]
    for e, (i, j) in enumerate(GRID):
        logp = logp + psi[e][states[:, i], states[:, j]]
    prob = torch.softmax(logp, dim=-1)
    return torch.stack([torch.stack([prob[:, states[:, i] == s].sum(-1) for s in range(2)], -1) for i in range(9)], 1)


@register("loopy_bp")
def loopy_bp(gen, dtype):
    psi = [0.8 * randn(gen, 2, 2) for _ in GRID]
    logpsi = torch.stack(psi + [p.T for p in psi])
    n = len(GRID)
    src = torch.tensor([i for i, j in GRID] + [j for i, j in GRID])
    dst = torch.tensor([j for i, j in GRID] + [i for i, j in GRID])
    rev = torch.cat([torch.arange(n, 2 * n), torch.arange(n)])
    u_tr, u_te = randn(gen, 256, 9, 2), randn(gen, 64, 9, 2)
    # the data's true couplings are 1.5 x the given ones: the trained scale w can correct the model
    true = [1.5 * p for p in psi]
    return Problem("marginals of a binary 3x3 grid MRF (loopy), per-sample unaries; exact marginals by enumeration",
                   {"src": src, "dst": dst, "rev": rev, "logpsi": logpsi.to(dtype)}, {"logphi": u_tr.to(dtype)},
                   _marginals(u_tr, true).to(dtype), {"logphi": u_te.to(dtype)}, _marginals(u_te, true).to(dtype),
                   output="belief", layers=5, lr=2e-2, steps=200,
                   note="5 parallel sum-product iterations with the given (mis-scaled) couplings")


# ---------------------------------------------------------------- non-local MRF denoising (catalog E3)
def _groups(h, w, ps, K):
    """Fixed groups of K patches: each reference patch with its K-1 right/down neighbours (a stand-in
    for block matching, which would be per image; the data are shared by the batch)."""
    groups = []
    for i in range(0, h - ps + 1, 2):
        for j in range(0, w - ps + 1, 2):
            members = [(i, j)] + [((i + d) % (h - ps + 1), (j + 2 * d) % (w - ps + 1)) for d in range(1, K)]
            groups.append([[(a + di) * w + (b + dj) for di in range(ps) for dj in range(ps)] for a, b in members])
    return torch.tensor(groups)


@register("nlr_mrf_gd")
def nlr_mrf_gd(gen, dtype):
    h = w = 16
    ps, K, nf = 3, 3, 6
    clean_tr = cartoon_images(gen, 128, h, w).reshape(128, -1)
    clean_te = cartoon_images(gen, 32, h, w).reshape(32, -1)
    y_tr = clean_tr + 0.1 * randn(gen, *clean_tr.shape)
    y_te = clean_te + 0.1 * randn(gen, *clean_te.shape)
    grp = _groups(h, w, ps, K)
    F0 = randn(gen, nf, K * ps * ps) / math.sqrt(K * ps * ps)
    return Problem(f"denoising {h}x{w} cartoon images (sigma 0.1) with a non-local MRF over {grp.shape[0]} groups "
                   f"of {K} patches", {"mask": torch.ones(h * w, dtype=dtype), "grp": grp, "F0": F0.to(dtype),
                                      "s20": 0.01, "alpha0": 0.01, "eta0": 0.003},
                   {"y": y_tr.to(dtype)}, clean_tr.to(dtype), {"y": y_te.to(dtype)}, clean_te.to(dtype),
                   output="x", state="x", metric="nmse", layers=6, lr=5e-3, steps=200,
                   note="gradient descent on the MRF energy with random filters")
