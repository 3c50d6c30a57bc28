"""Kernels of the array operators (compiler/operators/arrays.py): pairwise squared distances and the
adjoint of the forward difference.  Exported by unroll.runtime like the kernels of ops.py."""

from __future__ import annotations

import torch

__all__ = ["diff_adj", "sqdist"]


def sqdist(X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Pairwise squared distances ‖x_i − y_j‖² of the rows of X [..., n, d] and Y [..., m, d] → [..., n, m],
    as ‖x_i‖² + ‖y_j‖² − 2 x_iᵀy_j (one matrix product), clamped at 0 (rounding can make the expansion
    slightly negative for coincident points)."""
    squares = (X * X).sum(-1).unsqueeze(-1) + (Y * Y).sum(-1).unsqueeze(-2)
    return torch.clamp_min(squares - 2 * (X @ Y.mT), 0)


def diff_adj(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The exact adjoint of the forward difference `torch.diff(v, dim=dim)` ([..., s - 1, ...] → [..., s, ...]):
    (Dᵀw)_i = w_{i-1} − w_i with w_{-1} = w_{s-1} = 0."""
    moved = w.movedim(dim, -1)
    padded = torch.nn.functional.pad(moved, (1, 1))
    return (padded[..., :-1] - padded[..., 1:]).movedim(-1, dim)
