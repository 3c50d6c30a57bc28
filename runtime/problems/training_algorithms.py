"""Training algorithms as networks (catalog family H): each sample is one small training run, and the
output compared with the truth is the trained model's prediction at held-out query points."""

from __future__ import annotations

import math

import torch

from . import Problem, register
from .images import rand, randn


# ---------------------------------------------------------------- H1 ekf_training, dekf_training
def _sine_regression(gen, dtype, name):
    """One random sine y = sin(a x + b) (+ noise 0.05) per sample, learned from N pairs by an MLP."""
    N, M = 64, 32

    def draw(batch):
        a = 0.5 + rand(gen, batch, 1, 1)
        b = math.pi * (2 * rand(gen, batch, 1, 1) - 1)
        xs = math.pi * (2 * rand(gen, batch, N, 1) - 1)
        xq = torch.linspace(-math.pi, math.pi, M, dtype=torch.float64).expand(batch, M)[..., None]
        ys = torch.sin(a * xs + b) + 0.05 * randn(gen, batch, N, 1)
        inputs = {"xs": xs.to(dtype), "ys": ys.to(dtype), "xq": xq.to(dtype)}
        return inputs, torch.sin(a * xq + b).to(dtype)

    train_inputs, train_truth = draw(32)
    test_inputs, test_truth = draw(64)
    kind = "the extended Kalman filter" if name == "ekf_training" else "the decoupled EKF (one block per layer)"
    return Problem(f"online regression: a random sine sin(a x + b) from {N} noisy pairs, one per layer, by a "
                   "one-hidden-layer MLP (width 10); held-out: 32 grid points",
                   {"nin": 1, "ny": 1, "width": 10, "r": 0.1, "p0": 10.0, "q": 1e-4}, train_inputs, train_truth,
                   test_inputs, test_truth, output="yq", layers=N,
                   note=f"{kind} training the MLP (no trainable parameters)")


@register("ekf_training")
def ekf_training(gen, dtype):
    return _sine_regression(gen, dtype, "ekf_training")


@register("dekf_training")
def dekf_training(gen, dtype):
    return _sine_regression(gen, dtype, "dekf_training")


# ---------------------------------------------------------------- H4 msa_pmp
@register("msa_pmp")
def msa_pmp(gen, dtype):
    """A 3-layer tanh network (d = 3) fitted to a random teacher of the same architecture by MSA."""
    T, S, M, d = 3, 32, 32, 3

    def draw(batch):
        teacher = randn(gen, batch, T, d, d) / math.sqrt(d) * 1.5
        x0, xq = randn(gen, batch, S, d), randn(gen, batch, M, d)

        def run(x):
            for t in range(T):
                x = torch.tanh(x @ teacher[:, t].transpose(-2, -1))
            return x

        W0 = 0.8 * torch.eye(d, dtype=torch.float64).expand(batch, T, d, d) + 0.1 * randn(gen, batch, T, d, d)
        inputs = {"x0": x0.to(dtype), "y": run(x0).to(dtype), "W0": W0.to(dtype), "xq": xq.to(dtype)}
        return inputs, run(xq).to(dtype)

    train_inputs, train_truth = draw(32)
    test_inputs, test_truth = draw(64)
    return Problem(f"fitting a random 3-layer tanh network (width {d}) from {S} samples; held-out: {M} new "
                   "inputs", {"alpha": 0.3, "rho": 4.0, "lam": 0.0, "inner": 20}, train_inputs, train_truth,
                   test_inputs, test_truth, output="yq", layers=10,
                   note="the method of successive approximations, extended by the forward penalty rho "
                        "(no trainable parameters)")
