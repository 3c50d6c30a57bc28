"""Kernels of the diffusion operators (compiler/operators/diffusion.py): the symmetric-boundary
convolution `conv2s` and its exact adjoint, PDE-Net's moment-constrained filters `moment_filter`,
and the learned influence functions `rbf` (a Gaussian
RBF mixture, computed one centre at a time so that no [filters, centres, h, w] tensor exists, with
its derivatives written out) and `pwl` (piecewise linear through knots).

Every public function defined here is exported by unroll.runtime (`__all__` at the end)."""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch.autograd.function import once_differentiable


# ---------------------------------------------------------------- symmetric-boundary convolution
def _same_pads(s: int) -> tuple[int, int]:
    """Padding (before, after) of a 'same'-size convolution whose kernel centre is (s-1)//2."""
    centre = (s - 1) // 2
    return s - 1 - centre, centre


def _symmetric_index(n: int, before: int, after: int, device) -> torch.Tensor:
    """Source index of every position -before..n+after-1 of a half-sample symmetric extension
    (x[-1] = x[0], x[n] = x[n-1], MATLAB's 'symmetric'), valid for any padding width."""
    i = torch.remainder(torch.arange(-before, n + after, device=device), 2 * n)
    return torch.where(i < n, i, 2 * n - 1 - i)


def conv2s(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """'Same'-size 2-D convolution with a **symmetric** boundary (the image mirrored about its edges,
    edge pixels repeated), kernel centre (s-1)//2 as `conv2z`; kernel banks broadcast like `conv2`:
    out[i, j] = sum_ab k[a, b] x~[i - a + c1, j - b + c2], x~ the symmetric extension of x."""
    s1, s2 = kernel.shape[-2:]
    h, w = x.shape[-2:]
    rows = _symmetric_index(h, *_same_pads(s1), x.device)
    cols = _symmetric_index(w, *_same_pads(s2), x.device)
    padded = x.index_select(-2, rows).index_select(-1, cols)
    out = None
    for a in range(s1):
        for b in range(s2):
            term = kernel[..., a, b, None, None] * padded[..., s1 - 1 - a:s1 - 1 - a + h, s2 - 1 - b:s2 - 1 - b + w]
            out = term if out is None else out + term
    return out


def conv2s_adj(kernel: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of `conv2s`: the zero-boundary 'full' correlation with the (conjugated) kernel onto
    the extended grid, then the extension's adjoint (values that fell on mirrored positions are added
    back onto their source pixels)."""
    s1, s2 = kernel.shape[-2:]
    h, w = y.shape[-2:]
    if kernel.is_complex():
        kernel = kernel.conj()
    lead = torch.broadcast_shapes(kernel.shape[:-2], y.shape[:-2])
    dtype = torch.promote_types(kernel.dtype, y.dtype)
    extended = torch.zeros(lead + (h + s1 - 1, w + s2 - 1), dtype=dtype, device=y.device)
    for a in range(s1):
        for b in range(s2):  # pixel (i, j) of y reaches the extended position (i + s1-1-a, j + s2-1-b)
            extended[..., s1 - 1 - a:s1 - 1 - a + h, s2 - 1 - b:s2 - 1 - b + w] += kernel[..., a, b, None, None] * y
    rows = _symmetric_index(h, *_same_pads(s1), y.device)
    cols = _symmetric_index(w, *_same_pads(s2), y.device)
    folded = extended.new_zeros(extended.shape[:-2] + (h, extended.shape[-1])).index_add(-2, rows, extended)
    return folded.new_zeros(folded.shape[:-1] + (w,)).index_add(-1, cols, folded)


# ---------------------------------------------------------------- moment-constrained filters (PDE-Net)
@functools.lru_cache(maxsize=32)
def _taylor_inverse_values(s: int) -> tuple:
    """The inverse of T[n, a] = (-(a - c))^n / n!, c = (s-1)//2: the n-th Taylor moment of tap a of a convolution
    kernel (convolution reads u[i - (a - c)]).  It depends on the size only: computed once per size, in float64
    outside torch (a constant of the graph when a network is traced or exported: ONNX has no matrix inverse)."""
    c = (s - 1) // 2
    taylor = [[(-(a - c)) ** n / math.factorial(n) for a in range(s)] for n in range(s)]
    return tuple(map(tuple, np.linalg.inv(np.array(taylor, dtype=np.float64))))


def moment_filter(m: torch.Tensor) -> torch.Tensor:
    """The s1 x s2 convolution kernel whose Taylor moments are m [..., s1, s2]:
    conv2(q, u) = sum_ab m[a, b] d^a/di^a d^b/dj^b u + higher-order terms (grid units), i.e.
    m = T1 q T2^T with T the Taylor matrices, so q = T1^-1 m T2^-T (PDE-Net's moment parametrisation)."""
    s1, s2 = m.shape[-2:]
    t1_inv = torch.tensor(_taylor_inverse_values(int(s1)), dtype=m.dtype, device=m.device)
    t2_inv = torch.tensor(_taylor_inverse_values(int(s2)), dtype=m.dtype, device=m.device)
    return t1_inv @ m @ t2_inv.transpose(-2, -1)


# ---------------------------------------------------------------- influence functions
def _per_filter(w: torch.Tensor, j: int, rank: int) -> torch.Tensor:
    """Column j of the weights, shaped to broadcast against values of logical rank `rank`:
    w [J] gives a scalar; w [F, J] gives [F, 1, ..., 1] (filter f acts on z[f])."""
    column = w[..., j]
    return column if w.dim() == 1 else column.reshape(column.shape + (1,) * (rank - 1))


class _RBFMixture(torch.autograd.Function):
    """phi(z) = sum_j w_j exp(-(z - mu_j)^2 / (2 gamma^2)), one centre at a time (forward and backward),
    so memory stays that of a few values the size of z whatever the number of centres."""

    @staticmethod
    def forward(ctx, z, w, centers, gamma, rank):
        inv = 0.5 / (gamma * gamma)
        out = torch.zeros_like(z)
        for j in range(centers.shape[0]):
            out.addcmul_(_per_filter(w, j, rank), torch.exp((z - centers[j]).square_().mul_(-inv)))
        ctx.save_for_backward(z, w, centers, gamma)
        ctx.rank = rank
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        z, w, centers, gamma = ctx.saved_tensors
        rank = ctx.rank
        inv = 0.5 / (gamma * gamma)
        filter_axis = z.dim() - rank  # the axis of z that w's first axis indexes (after a batch axis)
        w_axes = [a for a in range(z.dim()) if w.dim() == 1 or a != filter_axis]
        grad_z = torch.zeros_like(z)
        grad_w = torch.zeros_like(w)
        grad_centers = torch.zeros_like(centers)
        grad_gamma = torch.zeros_like(gamma)
        for j in range(centers.shape[0]):
            d = z - centers[j]
            ge = torch.exp(d.square().mul_(-inv)).mul_(grad)  # grad * e_j
            grad_w[..., j] = ge.sum(dim=w_axes)
            t = ge.mul_(_per_filter(w, j, rank)).mul_(d)  # grad * w_j e_j d: d(w_j e_j)/dz = -t / gamma^2
            grad_z.add_(t)
            grad_centers[j] = t.sum()
            grad_gamma = grad_gamma + torch.vdot(t.reshape(-1), d.reshape(-1))
        square = gamma * gamma
        return -grad_z / square, grad_w, grad_centers / square, (grad_gamma / (square * gamma)).reshape(gamma.shape), \
            None


def rbf(z: torch.Tensor, w: torch.Tensor, centers: torch.Tensor, gamma, batched: bool = False) -> torch.Tensor:
    """Gaussian RBF mixture applied elementwise: w [J] (one function) or [F, J] (function f on z[f]),
    centres [J], width gamma > 0 (a number or a scalar tensor)."""
    gamma = torch.as_tensor(gamma, dtype=z.dtype, device=z.device)
    centers = torch.as_tensor(centers, dtype=z.dtype, device=z.device)
    return _RBFMixture.apply(z, w, centers, gamma, z.dim() - (1 if batched else 0))


def pwl(z: torch.Tensor, knots: torch.Tensor, values: torch.Tensor, batched: bool = False) -> torch.Tensor:
    """Piecewise-linear function through (knots[j], values[.., j]) applied elementwise, constant beyond
    the first and last knot (numpy's `interp`); values [J] (one function) or [F, J] (function f on z[f]);
    knots increasing [J], J >= 2.  Differentiable in z (the slope), the values and the knots."""
    rank = z.dim() - (1 if batched else 0)
    last = knots.shape[0] - 2
    segment = (torch.bucketize(z.detach().contiguous(), knots.detach().contiguous()) - 1).clamp(0, last)
    left, right = knots[segment], knots[segment + 1]
    t = ((z - left) / (right - left)).clamp(0, 1)
    if values.dim() == 1:
        v0, v1 = values[segment], values[segment + 1]
    else:
        rows = torch.arange(values.shape[0], device=z.device).reshape((-1,) + (1,) * (rank - 1))
        flat = values.reshape(-1)
        start = rows * values.shape[1] + segment
        v0, v1 = flat[start], flat[start + 1]
    return v0 + t * (v1 - v0)


# every public function defined in this module: what unroll.runtime exports as kernels
__all__ = [name for name, value in list(globals().items())
           if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == __name__]
