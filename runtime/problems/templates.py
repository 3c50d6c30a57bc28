"""Generic templates: conventional networks read as iterations (catalog family J)."""

from __future__ import annotations

import torch

from . import Problem, register
from .images import rand, randn
from .sparse import add_noise, bernoulli_gaussian, unit_columns

TRAIN, TEST = 1000, 300


def _cast(dtype, *tensors):
    return [t.to(dtype) for t in tensors]


# ---------------------------------------------------------------- J1 generic_unroll
@register("generic_unroll")
def generic_unroll(gen, dtype):
    """Nonnegative sparse coding: y = A z + w with A 20x40 Gaussian (unit columns), codes
    Bernoulli(0.1)·|N(0, 1)|, SNR 30 dB; the untrained network is projected (nonnegative) ISTA."""
    n, m = 20, 40
    A = unit_columns(gen, n, m)
    z_tr, z_te = bernoulli_gaussian(gen, TRAIN, m).abs(), bernoulli_gaussian(gen, TEST, m).abs()
    y_tr, y_te = add_noise(gen, z_tr @ A.T, 30.0), add_noise(gen, z_te @ A.T, 30.0)
    A, z_tr, z_te, y_tr, y_te = _cast(dtype, A, z_tr, z_te, y_tr, y_te)
    return Problem(f"nonnegative sparse coding: A {n}x{m} Gaussian with unit columns, Bernoulli(0.1)·|N(0,1)| "
                   "codes, SNR 30 dB", {"A": A, "lam": 0.05}, {"y": y_tr}, z_tr, {"y": y_te}, z_te,
                   output="z", state="z", layers=8, lr=1e-3, steps=800,
                   note="projected (nonnegative) ISTA, theta^l = (I - A^T A / L, A^T / L, -lam / L) in every layer")


# ---------------------------------------------------------------- J2 plugin_step
@register("plugin_step")
def plugin_step(gen, dtype):
    """Sparse coding, A 20x40 (unit columns), Bernoulli(0.1)·N(0, 1) codes, SNR 30 dB; the network step
    learns to denoise the gradient step's output."""
    n, m = 20, 40
    A = unit_columns(gen, n, m)
    x_tr, x_te = bernoulli_gaussian(gen, TRAIN, m), bernoulli_gaussian(gen, TEST, m)
    d_tr, d_te = add_noise(gen, x_tr @ A.T, 30.0), add_noise(gen, x_te @ A.T, 30.0)
    A, x_tr, x_te, d_tr, d_te = _cast(dtype, A, x_tr, x_te, d_tr, d_te)
    return Problem(f"sparse coding: A {n}x{m} Gaussian with unit columns, Bernoulli(0.1)·N(0,1) codes, SNR 30 dB",
                   {"A": A, "lam": 0.05, "width": 64}, {"d": d_tr}, x_tr, {"d": d_te}, x_te,
                   output="x", state="x", layers=8, lr=3e-3, steps=800,
                   note="ISTA (the network step D starts at zero)")


# ---------------------------------------------------------------- J3 mlp_as_iteration
@register("mlp_as_iteration")
def mlp_as_iteration(gen, dtype):
    """Regression onto a teacher: a fixed random 4-layer ReLU network of width 8 gives the targets; the
    student (the spec) starts from other random weights (He initialisation, zero biases)."""
    n, layers = 8, 4

    def he(count):
        return randn(gen, count, n, n) * (2.0 / n) ** 0.5

    teacher_W, teacher_b = he(layers), 0.1 * randn(gen, layers, n)

    def teacher(x):
        for W, b in zip(teacher_W, teacher_b):
            x = torch.relu(x @ W.T + b)
        return x

    x_tr, x_te = randn(gen, TRAIN, n), randn(gen, TEST, n)
    W0, b0 = he(layers), torch.zeros(layers, n, dtype=torch.float64)
    W0, b0, x_tr, x_te, t_tr, t_te = _cast(dtype, W0, b0, x_tr, x_te, teacher(x_tr), teacher(x_te))
    return Problem(f"regression onto a random 4-layer ReLU teacher network of width {n} (inputs N(0, I))",
                   {"W0": W0, "b0": b0}, {"x0": x_tr}, t_tr, {"x0": x_te}, t_te, output="x", state="x",
                   layers=layers, lr=3e-3, steps=800, note="a randomly initialised MLP (He initialisation)")


# ---------------------------------------------------------------- J4 rnn_elman
@register("rnn_elman")
def rnn_elman(gen, dtype):
    """Sequence filtering: the output at every step is a stable linear system driven by the inputs,
    o_t = C s_t, s_t = F s_{t-1} + G x_t (F a damped rotation), observed from T = 20 scalar inputs."""
    T, p, h, q = 20, 1, 16, 1
    F = 0.8 * torch.tensor([[0.9, -0.4], [0.4, 0.9]], dtype=torch.float64) / 0.985  # spectral radius 0.8
    G = torch.tensor([[1.0], [0.5]], dtype=torch.float64)
    C = torch.tensor([[1.0, -0.5]], dtype=torch.float64)

    def system(xs):
        s, out = torch.zeros(xs.shape[0], 2, dtype=torch.float64), []
        for t in range(xs.shape[1]):
            s = s @ F.T + xs[:, t] @ G.T
            out.append(s @ C.T)
        return torch.stack(out, 1)

    xs_tr, xs_te = randn(gen, TRAIN, T, p), randn(gen, TEST, T, p)
    scale = h ** -0.5  # torch.nn.RNN's initialisation range U(-1/sqrt(h), 1/sqrt(h))
    data = {"W0": scale * (2 * rand(gen, h, h) - 1), "U0": scale * (2 * rand(gen, h, p) - 1),
            "b0": torch.zeros(h, dtype=torch.float64), "V0": scale * (2 * rand(gen, q, h) - 1),
            "c0": torch.zeros(q, dtype=torch.float64)}
    data = {k: v.to(dtype) for k, v in data.items()}
    xs_tr, xs_te, o_tr, o_te = _cast(dtype, xs_tr, xs_te, system(xs_tr), system(xs_te))
    return Problem(f"sequence filtering: T = {T} scalar inputs N(0, 1), targets o_t of a stable 2-state linear "
                   "system at every step", data, {"xs": xs_tr}, o_tr, {"xs": xs_te}, o_te, output="o",
                   layers=T, lr=1e-2, steps=600, note="a randomly initialised Elman RNN (torch.nn.RNN's init)")
