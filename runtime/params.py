"""Constrained parameters.  Each reparametrisation reproduces its default value
*exactly* at initialisation and keeps the constraint through training.

    positive      value = init · exp(s), s = 0 at start      (smooth, scale-free)
    nonnegative   value = max(raw, 0),   raw = init at start (projection)
    range(lo,hi)  value = clamp(raw, lo, hi)                 (projection)
    unit_columns  value = raw / ‖raw‖ per column              (default normalised once)
    zero_mean     value = raw − mean(raw) per filter p[i]      (default projected once)
    unit_norm     value = raw / ‖raw‖ per filter p[i]          (default normalised once)
    zero_mean unit_norm   both: (raw − mean) / ‖raw − mean‖    (TNRD's filters)

Generated code calls the module to get the value: `theta = self.theta()`.  Every module names its trainable
tensor (`raw_name`) and computes the value from any part of it with `transform(raw, layer)`: a constraint
acts on each layer of a per-layer stack alone, so a trainer may optimise one layer's slice as its own tensor
(runtime/layer_views.py).
"""

from __future__ import annotations

import torch
from torch import nn


class Reparametrised(nn.Module):
    """A constrained parameter: the trainable tensor `raw_name` and the value `transform(raw, layer)` makes of it."""

    raw_name = "raw"

    def forward(self) -> torch.Tensor:
        return self.transform(getattr(self, self.raw_name))

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        raise NotImplementedError


class Positive(Reparametrised):
    """Strictly positive parameter: init · exp(log_scale), log_scale starting at 0."""

    def __init__(self, init: torch.Tensor, name: str = "parameter"):
        super().__init__()
        if not bool((init > 0).all()):
            raise ValueError(f"{name}: a `positive` parameter needs a positive default, got min {init.min().item():g}")
        self.register_buffer("init", init.detach().clone())
        self.log_scale = nn.Parameter(torch.zeros_like(init))

    raw_name = "log_scale"

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        """The value for `raw` (all of log_scale, or layer `layer` of a per-layer stack)."""
        init = self.init if layer is None else self.init[layer]
        # the clamp keeps the value strictly positive even after a wild optimiser step (exp(-60) > 0 in float32)
        return init * torch.exp(raw.clamp(min=-60.0))


class NonNegative(Reparametrised):
    """Nonnegative parameter: the projection max(raw, 0)."""

    def __init__(self, init: torch.Tensor, name: str = "parameter"):
        super().__init__()
        if not bool((init >= 0).all()):
            raise ValueError(f"{name}: a `nonnegative` parameter needs a nonnegative default")
        self.raw = nn.Parameter(init.detach().clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return torch.clamp_min(raw, 0)


class Range(Reparametrised):
    """Parameter confined to [lo, hi] by projection."""

    def __init__(self, init: torch.Tensor, lo: float, hi: float, name: str = "parameter"):
        super().__init__()
        if not bool(((init >= lo) & (init <= hi)).all()):
            raise ValueError(f"{name}: default outside range({lo}, {hi})")
        self.lo, self.hi = float(lo), float(hi)
        self.raw = nn.Parameter(init.detach().clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return torch.clamp(raw, self.lo, self.hi)

    def extra_repr(self) -> str:
        return f"range=({self.lo}, {self.hi})"


class UnitColumns(Reparametrised):
    """Matrix (or per-layer stack of matrices) with unit-ℓ2-norm columns."""

    def __init__(self, init: torch.Tensor, name: str = "parameter"):
        super().__init__()
        norms = torch.linalg.vector_norm(init, dim=-2, keepdim=True)
        if not bool((norms > 0).all()):
            raise ValueError(f"{name}: `unit_columns` needs a default without zero columns")
        self.raw = nn.Parameter((init / norms).detach().clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return raw / torch.linalg.vector_norm(raw, dim=-2, keepdim=True)


def _filter_axes(value: torch.Tensor, axes: int) -> tuple[int, ...]:
    """The trailing `axes` axes: one filter p[i] of a bank (the whole of a vector)."""
    return tuple(range(value.dim() - axes, value.dim()))


def remove_mean(value: torch.Tensor, axes: int) -> torch.Tensor:
    """Each filter (the trailing `axes` axes) minus its mean."""
    return value - value.mean(dim=_filter_axes(value, axes), keepdim=True)


def normalise(value: torch.Tensor, axes: int, name: str = "parameter", what: str = "unit_norm") -> torch.Tensor:
    """Each filter (the trailing `axes` axes) divided by its ℓ2 norm; a zero filter is an error at construction."""
    norms = torch.linalg.vector_norm(value, dim=_filter_axes(value, axes), keepdim=True)
    if not bool((norms > 0).all()):
        raise ValueError(f"{name}: `{what}` needs a default without zero filters"
                         + (" (a constant filter has mean zero only when it is zero)" if "zero_mean" in what else ""))
    return value / norms


class ZeroMean(Reparametrised):
    """Filters with zero mean (each p[i] of a bank): raw minus its mean; the default is projected once."""

    def __init__(self, init: torch.Tensor, axes: int, name: str = "parameter"):
        super().__init__()
        self.axes = int(axes)
        self.raw = nn.Parameter(remove_mean(init.detach(), self.axes).clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return remove_mean(raw, self.axes)


class UnitNorm(Reparametrised):
    """Filters with unit ℓ2 norm (each p[i] of a bank): raw / ‖raw‖; the default is normalised once."""

    def __init__(self, init: torch.Tensor, axes: int, name: str = "parameter"):
        super().__init__()
        self.axes = int(axes)
        self.raw = nn.Parameter(normalise(init.detach(), self.axes, name).clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        return raw / torch.linalg.vector_norm(raw, dim=_filter_axes(raw, self.axes), keepdim=True)


class ZeroMeanUnitNorm(Reparametrised):
    """Filters with zero mean and unit ℓ2 norm (TNRD's filters): (raw − mean) / ‖raw − mean‖."""

    def __init__(self, init: torch.Tensor, axes: int, name: str = "parameter"):
        super().__init__()
        self.axes = int(axes)
        centred = remove_mean(init.detach(), self.axes)
        self.raw = nn.Parameter(normalise(centred, self.axes, name, "zero_mean unit_norm").clone())

    def transform(self, raw: torch.Tensor, layer: int | None = None) -> torch.Tensor:
        centred = remove_mean(raw, self.axes)
        return centred / torch.linalg.vector_norm(centred, dim=_filter_axes(centred, self.axes), keepdim=True)


def check_constraint(value: torch.Tensor, constraint: str | None, args=(), name: str = "parameter") -> torch.Tensor:
    """Validate a *fixed* parameter's default against its constraint (it stays a buffer)."""
    if constraint == "positive" and not bool((value > 0).all()):
        raise ValueError(f"{name}: a `positive` parameter needs a positive default")
    if constraint == "nonnegative" and not bool((value >= 0).all()):
        raise ValueError(f"{name}: a `nonnegative` parameter needs a nonnegative default")
    if constraint == "range" and not bool(((value >= args[0]) & (value <= args[1])).all()):
        raise ValueError(f"{name}: default outside range{tuple(args)}")
    if constraint == "unit_columns":
        value = value / torch.linalg.vector_norm(value, dim=-2, keepdim=True)
    if constraint in ("zero_mean", "zero_mean unit_norm"):
        value = remove_mean(value, args[0])
    if constraint in ("unit_norm", "zero_mean unit_norm"):
        value = normalise(value, args[0], name, constraint)
    return value
