"""The backward pass of singular value thresholding, Y = U·max(σ − τ, 0)·Vᴴ, in closed form.

torch's SVD backward divides by σᵢ² − σⱼ², so it gives NaN (real) or raises (complex: "the singular vectors
... are specified up to multiplication by e^{iφ}") as soon as two singular values are equal -- which every
rank-deficient matrix has (its zeros), e.g. the zero matrix a thresholded layer hands to the next one.  SVT
itself is a spectral function and differentiable wherever no singular value equals τ; its differential
(Candès, Sing-Long, Trzasko, "Unbiased risk estimates for singular value thresholding", IEEE TSP 2013, §IV),
with full SVD X = U Σ Vᴴ, Ω = Uᴴ dX V, f(σ) = max(σ − τ, 0) and σ, f extended by zeros, is

    Uᴴ dY V = C₁ ∘ Ω + C₂ ∘ conj(Ωᵀ)   (C₂ on the leading r × r block, r = min(m, n))

with C₁ = (Δ + S)/2, C₂ = (Δ − S)/2, Δᵢⱼ = (fᵢ − fⱼ)/(σᵢ − σⱼ) (f′(σᵢ) where σᵢ = σⱼ) and
Sᵢⱼ = (fᵢ + fⱼ)/(σᵢ + σⱼ) (0 where σᵢ = σⱼ = 0).  Both are bounded (0 ≤ Δ ≤ 1, 0 ≤ S ≤ 1), so equal singular
values need no special care.  The map is self-adjoint for Re tr(AᴴB), so the gradient is U (C₁ ∘ G̃ + C₂ ∘
conj(G̃ᵀ)) Vᴴ with G̃ = Uᴴ G V; the threshold's gradient is −Σ over the kept σᵢ of Re G̃ᵢᵢ.
"""

from __future__ import annotations

import torch


def _coefficients(s: torch.Tensor, f: torch.Tensor, slope: torch.Tensor, rows: int, cols: int):
    """C₁ [..., m, n] and C₂ [..., r, r] from the singular values s and f(s), f′(s) [..., r]."""
    s = s.expand_as(f)  # one threshold per sample on unbatched X: σ [r], f(σ) [batch, r]
    r = s.shape[-1]
    size = max(rows, cols)
    pad = [0, size - r]
    s_, f_, d_ = (torch.nn.functional.pad(t, pad) for t in (s, f, slope))  # σ, f, f′ extended by zeros
    si, sj = s_.unsqueeze(-1), s_.unsqueeze(-2)
    fi, fj = f_.unsqueeze(-1), f_.unsqueeze(-2)
    diff, total = si - sj, si + sj
    same = diff == 0
    delta = torch.where(same, d_.unsqueeze(-1).expand_as(diff), (fi - fj) / torch.where(same, 1.0, diff))
    zero = total == 0
    ratio = torch.where(zero, 0.0, (fi + fj) / torch.where(zero, 1.0, total))
    c1 = ((delta + ratio) / 2)[..., :rows, :cols]
    c2 = ((delta - ratio) / 2)[..., :r, :r]
    return c1, c2


def _sum_to(grad: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`grad` summed over the axes that broadcasting added or expanded to reach its shape from `shape`."""
    while grad.dim() > len(shape):
        grad = grad.sum(0)
    for axis, size in enumerate(shape):
        if size == 1 and grad.shape[axis] != 1:
            grad = grad.sum(axis, keepdim=True)
    return grad


class SingularValueThreshold(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, tau):
        U, s, Vh = torch.linalg.svd(X, full_matrices=True)
        r = s.shape[-1]
        kept = s - tau
        f = torch.relu(kept)
        ctx.save_for_backward(U, s, Vh, f, (kept > 0).to(s.dtype), tau)
        return (U[..., :r] * f.unsqueeze(-2).to(U.dtype)) @ Vh[..., :r, :]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, G):
        U, s, Vh, f, slope, tau = ctx.saved_tensors
        rows, cols, r = U.shape[-1], Vh.shape[-1], s.shape[-1]
        c1, c2 = _coefficients(s, f, slope, rows, cols)
        Gt = U.mH @ G @ Vh.mH  # Uᴴ G V
        H = c1.to(Gt.dtype) * Gt
        square = Gt[..., :r, :r]
        H[..., :r, :r] += c2.to(Gt.dtype) * square.mT.conj()
        grad_X = _sum_to(U @ H @ Vh, U.shape[:-2] + (rows, cols)) if ctx.needs_input_grad[0] else None
        grad_tau = None
        if ctx.needs_input_grad[1]:
            diagonal = torch.diagonal(square, dim1=-2, dim2=-1).real
            grad_tau = _sum_to(-(slope * diagonal), tau.shape)
        return grad_X, grad_tau


def svt_differentiable(X: torch.Tensor, tau) -> torch.Tensor:
    """SVT with the closed-form backward above (τ a number or a tensor broadcasting against σ [..., r])."""
    if not torch.is_tensor(tau):
        tau = torch.tensor(tau, dtype=X.real.dtype if X.is_complex() else X.dtype, device=X.device)
    return SingularValueThreshold.apply(X, tau)
