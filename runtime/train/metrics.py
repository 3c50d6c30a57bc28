"""Losses and quality metrics of catalog §6.12 (ALGORITHMS.md): NMSE in dB, PSNR, normalised RMSE,
β-divergence, translation-invariant MSE, plus plain squared errors.

Every function takes batched tensors `[batch, ...]` (prediction first, target second) and returns a
0-d tensor, differentiable where that makes sense, so that each one can serve as a loss or as a metric.
Conventions (checked against numpy formulas in tests/test_train_metrics.py):

    sq_error(x̂, x)       mean over the batch of ‖x̂ − x‖²                 (the LISTA training loss)
    mse(x̂, x)            mean over all entries of |x̂ − x|²
    nmse_db(x̂, x)        10 log10( Σ‖x̂ − x‖² / Σ‖x‖² )   (sums over the whole batch: Chen et al.)
    psnr(x̂, x, peak)     mean over the batch of 10 log10(peak² / mean|x̂ − x|²); peak: the data range
                          (default: each target's max |x|)
    nrmse(x̂, x)          mean over the batch of ‖x̂ − x‖ / ‖x‖   (ADMM-CSNet)
    beta_divergence(a, b, beta)   mean over the batch of Σ d_β(a | b)  (target a, model b ≥ 0)
    ti_mse(x̂, x, shift)  mean over the batch of min over circular integer shifts |s| ≤ shift of
                          mean|shift_s(x̂) − x|² on the last two axes (DUBLID)
"""

from __future__ import annotations

import math

import torch


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(1, -1)


def _abs2(t: torch.Tensor) -> torch.Tensor:
    return t.real.square() + t.imag.square() if t.is_complex() else t.square()


def sq_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _abs2(_flat(pred - target)).sum(1).mean()


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _abs2(pred - target).mean()


def nmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return _abs2(pred - target).sum() / _abs2(target).sum()


def nmse_db(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(nmse(pred, target))


def psnr(pred: torch.Tensor, target: torch.Tensor, peak: float | None = None) -> torch.Tensor:
    err = _abs2(_flat(pred - target)).mean(1)
    if peak is None:
        top = _flat(target).abs().amax(1)
    else:
        top = torch.full_like(err, float(peak))
    return (10 * torch.log10(top.square() / err)).mean()


def nrmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (_abs2(_flat(pred - target)).sum(1).sqrt() / _abs2(_flat(target)).sum(1).sqrt()).mean()


def beta_divergence(target: torch.Tensor, model: torch.Tensor, beta: float = 1.0, eps: float = 1e-12) -> torch.Tensor:
    """Σ d_β(a | b) per sample, averaged over the batch; a = target (data), b = model (estimate).
    β = 1: a log(a/b) − a + b (KL); β = 0: a/b − log(a/b) − 1 (Itakura–Saito); else the general formula.
    `eps` keeps logarithms and negative powers finite at zeros."""
    a = target + eps
    b = model + eps
    if beta == 1:
        d = a * torch.log(a / b) - a + b
    elif beta == 0:
        d = a / b - torch.log(a / b) - 1
    else:
        d = (a ** beta + (beta - 1) * b ** beta - beta * a * b ** (beta - 1)) / (beta * (beta - 1))
    return _flat(d).sum(1).mean()


def ti_mse(pred: torch.Tensor, target: torch.Tensor, shift: int = 2) -> torch.Tensor:
    """Translation-invariant MSE: the best circular integer shift (|s_i| ≤ shift on the last two axes)
    of the prediction, per sample."""
    errors = []
    for dy in range(-shift, shift + 1):
        for dx in range(-shift, shift + 1):
            moved = torch.roll(pred, shifts=(dy, dx), dims=(-2, -1))
            errors.append(_abs2(_flat(moved - target)).mean(1))
    return torch.stack(errors).amin(0).mean()


LOSSES = {"sq_error": sq_error, "mse": mse, "nmse": nmse, "nmse_db": nmse_db, "nrmse": nrmse, "ti_mse": ti_mse,
          "kl": lambda p, t: beta_divergence(t, p, 1.0), "is": lambda p, t: beta_divergence(t, p, 0.0),
          "psnr": lambda p, t: -psnr(p, t)}
# metric name -> (function, higher is better)
METRICS = {"nmse_db": (nmse_db, False), "psnr": (psnr, True), "nrmse": (nrmse, False), "mse": (mse, False),
           "ti_mse": (ti_mse, False), "sq_error": (sq_error, False),
           "kl": (lambda p, t: beta_divergence(t, p, 1.0), False)}


def resolve_loss(loss):
    """A loss given by name (see LOSSES) or as a callable `(pred, target) -> 0-d tensor`."""
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise ValueError(f"loss: unknown loss {loss!r}; known losses: {', '.join(sorted(LOSSES))}, or a callable "
                         "(pred, target) -> tensor")
    return LOSSES[loss]


def resolve_metric(metric):
    """(function, higher_is_better) of a metric given by name or as a (callable, higher_is_better) pair."""
    if isinstance(metric, tuple):
        return metric
    if callable(metric):
        return metric, False
    if metric not in METRICS:
        raise ValueError(f"metric: unknown metric {metric!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[metric]


def db(value: float) -> float:
    return 10 * math.log10(value)


__all__ = [
    "LOSSES",
    "METRICS",
    "beta_divergence",
    "mse",
    "nmse",
    "nmse_db",
    "nrmse",
    "psnr",
    "resolve_loss",
    "resolve_metric",
    "sq_error",
    "ti_mse",
]
