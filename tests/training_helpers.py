"""Shared by the training tests: a trained network is compared with the classical algorithm it unrolls, at
the same depth, on held-out data, with the classical algorithm at its best hyperparameter on a small grid
evaluated on that same held-out set.  (The untrained network is the classical algorithm at one
hyperparameter; beating it alone says little when that value is poor.)"""

from __future__ import annotations

import math

import torch


def best_on_grid(held_out_error, grid):
    """The classical algorithm's held-out error at every grid value (a number or a tuple of numbers).

    Returns (best error, best value, {value: error}).  `held_out_error(value)` runs the classical
    algorithm with that hyperparameter and returns its error on the held-out set (lower is better)."""
    errors = {value: float(held_out_error(value)) for value in grid}
    assert all(math.isfinite(e) for e in errors.values()), errors
    best = min(errors, key=errors.get)
    return errors[best], best, errors


def assert_beats_classical(trained: float, classical: float, factor: float, what: str) -> None:
    """The trained network's held-out error is below `factor` (< 1: the margin) times the classical
    algorithm's best held-out error."""
    message = (f"{what}: trained {trained:.4g} vs classical (best on the grid) {classical:.4g}; "
               f"required ratio < {factor}, got {trained / classical:.3f}")
    assert math.isfinite(trained) and trained < factor * classical, message


def adam(parameters, loss_fn, steps: int, lr: float) -> list[float]:
    """`steps` Adam steps on `loss_fn()`; returns the training losses (before each step)."""
    opt = torch.optim.Adam(parameters, lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def small(task, layers=3, spec="lista_cp", **options):
    """A small generated network on `task` (the unit tests of unroll.train)."""
    from unroll.train import build_net

    return build_net(spec, task, layers=layers, **options)


def quick(**kw):
    """A TrainConfig of a few steps (the unit tests of unroll.train)."""
    from unroll.train import TrainConfig

    base = {"epochs": 2, "steps_per_epoch": 10, "lr": 5e-3, "refine": (), "batch_size": 32}
    base.update(kw)
    return TrainConfig(**base)
