"""Differentiable kernels behind the language's operators (see
compiler/operators.py for each operator's definition and emission).

Conventions: a *batched* tensor has one leading batch axis; `batched=True`
tells per-sample operators (top-k, support selection) to treat everything
after that axis as one sample.
"""

from __future__ import annotations

import math

import torch


def soft(v: torch.Tensor, theta) -> torch.Tensor:
    """Soft threshold S_θ(v) = sign(v)·max(|v| − θ, 0); for complex v, v/|v|·max(|v| − θ, 0)."""
    if v.is_complex():
        mag = v.abs()
        scale = torch.relu(mag - theta) / torch.where(mag > 0, mag, torch.ones_like(mag))
        return v * scale
    # |v| - θ and relu in place on a fresh tensor, then one copysign: two allocations, three
    # kernels, built-in autograd (in-place ops on the temporary are safe: nothing saved is overwritten)
    mag = v.abs()
    if torch.is_tensor(theta) and (theta.dim() > mag.dim() or any(
            t != 1 and t != m for t, m in zip(reversed(theta.shape), reversed(mag.shape)))):
        mag = mag - theta  # a batched threshold on an unbatched value: the result is larger than v
    else:
        mag = mag.sub_(theta)
    return torch.copysign(mag.relu_(), v)


def soft_nonneg(v: torch.Tensor, theta) -> torch.Tensor:
    """One-sided soft threshold max(v − θ, 0)."""
    return torch.relu(v - theta)


def hard(v: torch.Tensor, theta) -> torch.Tensor:
    """Hard threshold by value: v where |v| > θ, else 0 (gradient flows through kept entries)."""
    return v * (v.abs() > theta).to(v.dtype)


def _topk_mask(v: torch.Tensor, k: int, batched: bool) -> torch.Tensor:
    """Boolean mask of the k largest |v| of each sample; ties go to the lowest index."""
    flat = v.reshape(v.shape[0], -1) if batched else v.reshape(1, -1)
    size = flat.shape[1]
    k = max(0, min(int(k), size))
    mask = torch.zeros(flat.shape, dtype=torch.bool, device=v.device)
    if k > 0:
        # stable sort on -|v| gives the lowest index first among equal magnitudes
        order = torch.sort(-flat.detach().abs(), dim=1, stable=True).indices[:, :k]
        mask.scatter_(1, order, True)
    return mask.reshape(v.shape)


def hard_topk(v: torch.Tensor, k: int, batched: bool = True) -> torch.Tensor:
    """Keep the k entries of largest magnitude of each sample, zero the rest.

    The selected support is treated as a constant in the backward pass (the
    gradient flows to the kept entries only).
    """
    return v * _topk_mask(v, k, batched).to(v.dtype)


def ss_soft(v: torch.Tensor, theta, p, batched: bool = True) -> torch.Tensor:
    """Support-selection threshold (LISTA-CPSS): the ⌈p·m⌉ largest-magnitude
    entries of each sample bypass the shrinkage when above θ; the others are
    soft-thresholded."""
    p = float(p)
    size = v[0].numel() if batched else v.numel()
    # ceil(p*m) with a relative tolerance of 1e-6: float32 and float64 schedules give the same count
    k = min(max(math.ceil(p * size * (1 - 1e-6)), 0), size)
    shrunk = soft(v, theta)
    if k <= 0:
        return shrunk
    keep = _topk_mask(v, k, batched) & (v.abs() > theta)
    return torch.where(keep, v, shrunk)


def abs2(v) -> torch.Tensor:
    """|v|² (real for complex v)."""
    if torch.is_tensor(v) and v.is_complex():
        return v.real.square() + v.imag.square()
    return torch.square(v)


def onehot(index: torch.Tensor, length: int, dtype=None) -> torch.Tensor:
    """Unit vectors e_index of the given length (one per entry of `index`)."""
    out = torch.nn.functional.one_hot(index, length)
    return out.to(dtype if dtype is not None else torch.get_default_dtype())


def full_param(value, shape, dtype, device) -> torch.Tensor:
    """A parameter's default value as a fresh tensor of exactly `shape`."""
    if isinstance(value, complex):
        t = torch.tensor(value, dtype=complex_dtype(dtype), device=device)
    elif isinstance(value, (int, float)):
        t = torch.tensor(value, dtype=dtype, device=device)  # never through float32
    else:
        t = torch.as_tensor(value, device=device)
        t = t.to(dtype if not t.is_complex() else complex_dtype(dtype))
    return t.expand(tuple(shape)).clone()


def layer_stack(values, shape, dtype, device) -> torch.Tensor:
    """Stack one default value per layer into a [layers, *shape] tensor."""
    return torch.stack([full_param(v, shape, dtype, device) for v in values])


def adjoint_test(forward, adjoint, x: torch.Tensor, y: torch.Tensor) -> float:
    """Relative error of the dot-product test ⟨A x, y⟩ = ⟨x, Aᴴ y⟩ for a linear operator."""
    lhs = torch.vdot(forward(x).reshape(-1), y.reshape(-1))
    rhs = torch.vdot(x.reshape(-1), adjoint(y).reshape(-1))
    return float((lhs - rhs).abs() / max(lhs.abs().item(), rhs.abs().item(), 1e-300))


def real_dtype(dtype):
    """The real dtype underlying `dtype` (complex128 -> float64)."""
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def complex_dtype(dtype):
    """The complex dtype matching a real `dtype` (float64 -> complex128)."""
    return {torch.float32: torch.complex64, torch.float64: torch.complex128, torch.float16: torch.complex32,
            torch.bfloat16: torch.complex64}.get(dtype, dtype)


# ---------------------------------------------------------------- issue 3 kernels
def otf(kernel: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Frequency response of a kernel (or a stack [..., s1, s2]) at image size h x w:
    zero-pad, move the kernel centre ((s-1)//2) to the origin, fft2 (psf2otf)."""
    s1, s2 = kernel.shape[-2:]
    pad = kernel.new_zeros(kernel.shape[:-2] + (h, w))
    pad[..., :s1, :s2] = kernel
    pad = torch.roll(pad, shifts=(-((s1 - 1) // 2), -((s2 - 1) // 2)), dims=(-2, -1))
    return torch.fft.fft2(pad, dim=(-2, -1))


def _conv(kernel, x, adjoint: bool):
    h, w = x.shape[-2:]
    K = otf(kernel, h, w)
    if adjoint:
        K = K.conj()
    out = torch.fft.ifft2(K * torch.fft.fft2(x, dim=(-2, -1)), dim=(-2, -1))
    return out if (kernel.is_complex() or x.is_complex()) else out.real


def conv2(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Circular 2-D convolution (kernel centre at the origin), via the FFT."""
    return _conv(kernel, x, adjoint=False)


def conv2_adj(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of `conv2`: circular correlation with the kernel."""
    return _conv(kernel, x, adjoint=True)


def svt(X: torch.Tensor, tau) -> torch.Tensor:
    """Singular value thresholding U·max(σ − τ, 0)·Vᴴ over the last two axes."""
    U, s, Vh = torch.linalg.svd(X, full_matrices=False)
    s = torch.relu(s - tau)
    return (U * s.unsqueeze(-2).to(U.dtype)) @ Vh


def row_shrink(X: torch.Tensor, tau) -> torch.Tensor:
    """Row-wise ℓ2 shrinkage X_i·max(0, 1 − τ/‖X_i‖); zero rows stay zero."""
    norms = torch.linalg.vector_norm(X, dim=-1, keepdim=True)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    scale = torch.relu(1 - tau / safe) * (norms > 0)
    return X * scale.to(X.dtype)


def norm_sum(v: torch.Tensor, batched: bool = True) -> torch.Tensor:
    """Normalise each sample to unit sum."""
    dims = tuple(range(1, v.dim())) if batched else tuple(range(v.dim()))
    return v / v.sum(dim=dims, keepdim=True)


def normalize_columns(W: torch.Tensor) -> torch.Tensor:
    """Scale every column (axis -2) to unit ℓ2 norm."""
    return W / torch.linalg.vector_norm(W, dim=-2, keepdim=True)
