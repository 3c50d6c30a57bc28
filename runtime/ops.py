"""Differentiable kernels behind the language's operators (see compiler/operators/ for each
operator's definition and emission: a registry entry names its kernel, `runtime="soft"`).

Every public function defined here is exported by unroll.runtime (`__all__` is computed at the end
of this file), so adding a kernel needs no other edit.

Conventions: a *batched* tensor has one leading batch axis; `batched=True`
tells per-sample operators (top-k, support selection) to treat everything
after that axis as one sample.
"""

from __future__ import annotations

import math

import torch

from .soft_kernel import _SoftThreshold
from .svt_grad import svt_differentiable


def _exporting_onnx() -> bool:
    """True while torch.onnx exports (either exporter): kernels then use ONNX-friendly forms.  Eager calls
    pay two flag reads (torch.onnx.is_in_onnx_export imports modules: only asked while tracing)."""
    if torch.compiler.is_compiling():  # (dynamo folds these flags; it cannot trace torch._C._is_tracing)
        return torch.compiler.is_exporting() and torch.onnx.is_in_onnx_export()
    return (torch._C._is_tracing() or torch.compiler.is_exporting()) and torch.onnx.is_in_onnx_export()


def soft(v: torch.Tensor, theta) -> torch.Tensor:
    """Soft threshold S_θ(v) = sign(v)·max(|v| − θ, 0); for complex v, v/|v|·max(|v| − θ, 0)."""
    if v.is_complex():
        mag = v.abs()
        scale = torch.relu(mag - theta) / torch.where(mag > 0, mag, torch.ones_like(mag))
        return v * scale
    if _exporting_onnx():  # ONNX has no copysign: the same values from sign and relu
        return torch.relu(v.abs() - theta) * torch.sign(v)
    if torch.is_tensor(theta) and theta.dim() and (theta.dim() > v.dim() or any(
            t != 1 and t != m for t, m in zip(reversed(theta.shape), reversed(v.shape)))):
        # a batched threshold on an unbatched value: the result is larger than v
        return torch.copysign(torch.relu(v.abs() - theta), v)
    if not torch.is_tensor(theta) and theta >= 0:
        return torch.nn.functional.softshrink(v, theta)  # a constant threshold: one fused kernel
    if torch.is_tensor(theta) and theta.dtype != v.dtype:
        theta = theta.to(v.dtype)
    return _SoftThreshold.apply(v, theta)


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
    if k > 0 and _exporting_onnx():
        # ONNX's TopK also puts the lower index first among equal values (the exporters have no stable sort)
        order = torch.topk(flat.detach().abs(), k, dim=1).indices
        mask = mask.scatter(1, order, torch.ones(order.shape, dtype=torch.bool, device=v.device))
    elif k > 0:
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


def expj(theta: torch.Tensor) -> torch.Tensor:
    """The unit-modulus complex number e^{jθ} (θ real)."""
    return torch.polar(torch.ones_like(theta), theta)


def abs2(v) -> torch.Tensor:
    """|v|² (real for complex v)."""
    if torch.is_tensor(v) and v.is_complex():
        return v.real.square() + v.imag.square()
    return torch.square(v)


def onehot(index, length: int, dtype=None, device=None) -> torch.Tensor:
    """Unit vectors e_index of the given length (one per entry of `index`)."""
    if not isinstance(index, torch.Tensor):  # a Python int, e.g. the layer index in a parameter default
        index = torch.tensor(index, device=device)
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


def identity_minus(k: torch.Tensor) -> torch.Tensor:
    """I − K for a square matrix K (the planner's Gram form of a gradient step)."""
    return torch.eye(k.shape[-1], dtype=k.dtype, device=k.device) - k


def layer_table(rows, dtype, device) -> torch.Tensor:
    """Values that depend only on the layer index, one row per layer, as one [layers, ...] tensor (rows that
    are Python numbers take the module's real dtype; tensor rows keep theirs)."""
    return torch.stack([r if torch.is_tensor(r) else torch.tensor(r, dtype=dtype, device=device) for r in rows])


def python_table(rows) -> tuple[float, ...]:
    """Real scalars that depend only on the layer index, one per layer, as Python numbers (their values in the
    dtype they were computed in): an operand a kernel takes as a number, not a 0-d tensor to broadcast."""
    return tuple(float(r) for r in rows)


def per_layer_default(default, layers: int, shape, dtype, device, name: str) -> torch.Tensor:
    """The [layers, *shape] default of a per-layer parameter whose default depends on `layer`;
    a default that indexes data by the layer (`Dk[layer]`) must have an entry for every layer."""
    values = []
    for layer in range(layers):
        try:
            values.append(default(layer))
        except IndexError:
            raise ValueError(f"the default of the per-layer parameter {name!r} has no value for layer {layer} "
                             f"(the network has {layers} layers): give data with at least {layers} entries "
                             "or compile with fewer layers") from None
        except (OverflowError, ZeroDivisionError) as err:  # Python-number arithmetic of the hyperparameters
            what = "overflowed" if isinstance(err, OverflowError) else "divided by zero"
            raise ValueError(f"{name}: its per-layer default at layer {layer} {what} ({err}): choose hyperparameter values whose arithmetic stays finite") from err
    return layer_stack(values, shape, dtype, device)


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
    return torch.fft.fft2(pad_kernel(kernel, h, w), dim=(-2, -1))


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
    """Singular value thresholding U·max(σ − τ, 0)·Vᴴ over the last two axes.

    τ is a number or a tensor broadcasting against X (one threshold per sample: [batch, 1, 1]);
    it is applied to the singular values [..., r], so its last axis is dropped."""
    # LAPACK fails (or returns NaN) without saying where the values came from; the check reads a value, so
    # it is left out while tracing, compiling or exporting (a data-dependent branch there breaks the graph)
    tracing = torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.compiler.is_exporting()
    if not tracing and not bool(torch.isfinite(X).all()):
        raise ValueError("svt: the matrix has NaN or infinite entries (the iteration diverged, or the data is not "
                         "finite); check the step sizes and the data")
    if torch.is_tensor(tau) and tau.dim() >= 2:
        tau = tau.squeeze(-1)
    needs_grad = X.requires_grad or (torch.is_tensor(tau) and tau.requires_grad)
    if not tracing and torch.is_grad_enabled() and needs_grad:
        # a closed-form backward: torch's SVD backward fails at equal singular values (any rank-deficient X)
        return svt_differentiable(X, tau)
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


# ---------------------------------------------------------------- zero-boundary convolution, patches (issue 3)
def _same_pads(s: int) -> tuple[int, int]:
    """Zero padding (before, after) of a 'same'-size convolution whose kernel centre is (s-1)//2."""
    centre = (s - 1) // 2
    return s - 1 - centre, centre


def _shift_sum(kernel: torch.Tensor, x: torch.Tensor, adjoint: bool) -> torch.Tensor:
    """Sum over kernel taps of kernel[..., a, b] * (x shifted by the tap), zero boundary.

    Convolution:  out[i] = sum_a k[a] x[i - a + c];  adjoint (correlation): out[j] = sum_a k[a] x[j + a - c].
    Broadcasts kernel stacks against image stacks like `conv2`; works for complex values and
    any kernel size (cost s1*s2 image-sized products, fine for the small kernels of unrolled nets)."""
    s1, s2 = kernel.shape[-2:]
    h, w = x.shape[-2:]
    (b1, a1), (b2, a2) = _same_pads(s1), _same_pads(s2)
    if adjoint:
        a1, b1, a2, b2 = b1, a1, b2, a2
        kernel = kernel.conj() if kernel.is_complex() else kernel
    xp = torch.nn.functional.pad(x, (b2, a2, b1, a1))
    out = None
    for a in range(s1):
        for b in range(s2):
            # convolution reads x[i - a + c]: offset (s-1-a) into the padded image; correlation reads x[i + a - c]
            r0, c0 = (s1 - 1 - a, s2 - 1 - b) if not adjoint else (a, b)
            term = kernel[..., a, b, None, None] * xp[..., r0:r0 + h, c0:c0 + w]
            out = term if out is None else out + term
    return out


def conv2z(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """'Same'-size 2-D convolution with zero boundary (kernel centre (s-1)//2), i.e.
    `conv2d(x, flip(kernel), padding=s//2)` for odd s; kernel banks broadcast like `conv2`."""
    return _shift_sum(kernel, x, adjoint=False)


def conv2z_adj(kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact adjoint of `conv2z` (zero-boundary correlation with the kernel)."""
    return _shift_sum(kernel, x, adjoint=True)


def _tap_bank(s: int, like: torch.Tensor) -> torch.Tensor:
    """The s*s unit kernels e_ab (one per patch position), shape [s*s, s, s]."""
    return torch.eye(s * s, dtype=like.dtype, device=like.device).reshape(s * s, s, s)


def patches(x: torch.Tensor, s: int) -> torch.Tensor:
    """All s x s patches of an image, one per pixel (zero boundary): [..., h, w] -> [..., s*s, h, w];
    channel a*s+b at pixel i holds x[i + (a, b) - c] (c = (s-1)//2), like torch's `unfold`."""
    return conv2z_adj(_tap_bank(s, x), x.unsqueeze(-3))


def unpatch(z: torch.Tensor, s: int) -> torch.Tensor:
    """Adjoint of `patches` (overlap-add of patches, torch's `fold`): [..., s*s, h, w] -> [..., h, w]."""
    return conv2z(_tap_bank(s, z), z).sum(dim=-3)


def patch_average(z: torch.Tensor, s: int) -> torch.Tensor:
    """Recombine overlapping patches by averaging: unpatch(z) / unpatch(1)."""
    ones = torch.ones((s * s,) + z.shape[-2:], dtype=real_dtype(z.dtype), device=z.device)
    return unpatch(z, s) / unpatch(ones, s)


def chanmix(W: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """1x1 convolution: the matrix W [o, c] applied to the channel axis of images [..., c, h, w]."""
    h, w = x.shape[-2:]
    if W.dtype != x.dtype:  # a real matrix on complex images or the converse: matmul needs one dtype
        common = torch.promote_types(W.dtype, x.dtype)
        W, x = W.to(common), x.to(common)
    return (W @ x.flatten(-2)).unflatten(-1, (h, w))


# ---------------------------------------------------------------- resampling, kernel support, finite differences
def down(x: torch.Tensor, r: int) -> torch.Tensor:
    """Decimation by r in both image axes: keep pixels (r*i, r*j)."""
    return x[..., ::r, ::r]


def up(x: torch.Tensor, r: int) -> torch.Tensor:
    """Zero-filling upsampling by r (the adjoint of `down`)."""
    h, w = x.shape[-2:]
    out = x.new_zeros(x.shape[:-2] + (r * h, r * w))
    out[..., ::r, ::r] = x
    return out


def bicubic(x: torch.Tensor, r: int) -> torch.Tensor:
    """Bicubic upsampling by r (torch `interpolate(mode='bicubic', align_corners=False)`, a = -0.75)."""
    h, w = x.shape[-2:]
    flat = x.reshape((-1, 1, h, w))
    out = torch.nn.functional.interpolate(flat, scale_factor=r, mode="bicubic", align_corners=False)
    return out.reshape(x.shape[:-2] + (r * h, r * w))


def _support_mask(s: int, h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    c = (s - 1) // 2
    rows = (torch.arange(h, device=like.device) + c) % h < s
    cols = (torch.arange(w, device=like.device) + c) % w < s
    return (rows[:, None] & cols[None, :]).to(real_dtype(like.dtype))


def support(k: torch.Tensor, s: int) -> torch.Tensor:
    """Zero an image-sized kernel (origin at [0, 0]) outside the s x s window centred at the origin
    (circularly): the support an s x s kernel has after psf2otf's padding."""
    h, w = k.shape[-2:]
    return k * _support_mask(s, h, w, k)


def pad_kernel(k: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Place an s x s kernel in an h x w image with its centre at the origin (psf2otf before the FFT)."""
    s1, s2 = k.shape[-2:]
    if s1 > h or s2 > w:
        raise ValueError(f"pad_kernel: a {s1} x {s2} kernel does not fit in a {h} x {w} image; the images must be "
                         "at least as large as the kernels")
    pad = k.new_zeros(k.shape[:-2] + (h, w))
    pad[..., :s1, :s2] = k
    return torch.roll(pad, shifts=(-((s1 - 1) // 2), -((s2 - 1) // 2)), dims=(-2, -1))


def crop_kernel(K: torch.Tensor, s: int) -> torch.Tensor:
    """The s x s kernel of an image-sized kernel (inverse of `pad_kernel`; adjoint of it too)."""
    c = (s - 1) // 2
    return torch.roll(K, shifts=(c, c), dims=(-2, -1))[..., :s, :s]


def grad2(x: torch.Tensor) -> torch.Tensor:
    """Forward differences with circular boundary: [..., h, w] -> [..., 2, h, w] (vertical, horizontal)."""
    return torch.stack((torch.roll(x, -1, dims=-2) - x, torch.roll(x, -1, dims=-1) - x), dim=-3)


def div2(p: torch.Tensor) -> torch.Tensor:
    """Divergence (backward differences, circular): minus the adjoint of `grad2`, [..., 2, h, w] -> [..., h, w]."""
    p0, p1 = p.unbind(dim=-3)
    return (p0 - torch.roll(p0, 1, dims=-2)) + (p1 - torch.roll(p1, 1, dims=-1))


# ---------------------------------------------------------------- short-time Fourier transform
def _check_hop(name: str, hop) -> None:
    if not hop >= 1:
        raise ValueError(f"{name}: the hop length must be a positive integer, got {hop}")


def stft(x: torch.Tensor, n_freq: int, n_frames: int, hop: int) -> torch.Tensor:
    """STFT of signals [..., T] -> [..., F, N]: n_fft = 2(F-1), periodic Hann window, centred frames
    (reflect padding), unnormalised, one-sided (torch.stft's conventions)."""
    _check_hop("stft", hop)
    n_fft = 2 * (n_freq - 1)
    T = x.shape[-1]
    if n_frames != 1 + T // hop:
        raise ValueError(f"stft: a signal of length {T} with hop {hop} has {1 + T // hop} frames, "
                         f"the spec declares {n_frames}")
    window = torch.hann_window(n_fft, dtype=real_dtype(x.dtype), device=x.device)
    flat = x.reshape((-1, T))
    X = torch.stft(flat, n_fft, hop_length=hop, window=window, center=True, return_complex=True)
    return X.reshape(x.shape[:-1] + X.shape[-2:])


def istft(X: torch.Tensor, length: int, hop: int) -> torch.Tensor:
    """Inverse of `stft` (windowed overlap-add, least-squares): [..., F, N] -> [..., T]."""
    _check_hop("istft", hop)
    F, N = X.shape[-2:]
    if not X.is_complex():  # a real spectrogram is a complex one with zero imaginary part (torch.istft refuses it)
        X = X.to(complex_dtype(X.dtype))
    n_fft = 2 * (F - 1)
    window = torch.hann_window(n_fft, dtype=real_dtype(X.dtype), device=X.device)
    flat = X.reshape((-1, F, N))
    if _exporting_onnx():  # torch.istft exports an int32 ScatterND, which ONNX rejects
        x = _istft_overlap_add(flat, n_fft, hop, window, length)
    else:
        x = torch.istft(flat, n_fft, hop_length=hop, window=window, center=True, length=length)
    return x.reshape(X.shape[:-2] + (length,))


def _istft_overlap_add(X: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor, length: int) -> torch.Tensor:
    """torch.istft (centred, one-sided, unnormalised) written as irfft, window, overlap-add and division by
    the overlap-added squared window: the same values, in operators ONNX (and onnxruntime, float64) has."""
    N = X.shape[-1]
    frames = torch.fft.irfft(X, n=n_fft, dim=-2) * window[:, None]  # [B, n_fft, N]
    padded = n_fft + hop * (N - 1)

    def overlap_add(columns):  # [B, n_fft, N] -> [B, padded]; no fold: onnxruntime's Col2Im is float32 only
        batch = columns.shape[0]
        if n_fft % hop:  # frame by frame
            return sum(torch.nn.functional.pad(columns[:, :, j], (j * hop, padded - n_fft - j * hop))
                       for j in range(N))
        r = n_fft // hop  # each frame is r blocks of `hop` samples; block k of frame j lands on block j + k
        blocks = columns.reshape(batch, r, hop, N).transpose(-2, -1)  # [B, r, N, hop]
        total = sum(torch.nn.functional.pad(blocks[:, k], (0, 0, k, r - 1 - k)) for k in range(r))
        return total.reshape(batch, padded)

    signal = overlap_add(frames)
    envelope = overlap_add((window.square()[:, None]).expand(n_fft, N).unsqueeze(0))
    start = n_fft // 2
    out = signal[:, start:start + length] / envelope[:, start:start + length]
    if out.shape[-1] < length:
        out = torch.nn.functional.pad(out, (0, length - out.shape[-1]))
    return out


# ---------------------------------------------------------------- dense (history-cognizant) unrolling
def history_sum(beta: torch.Tensor, history: list) -> torch.Tensor:
    """sum_j beta[j] * history[j] over the values kept so far (j = 0..layer): beta [num_layers] is a
    per-layer weight row, of which layer l uses the first l+1 entries."""
    out = beta[0] * history[0]
    for j in range(1, len(history)):
        out = out + beta[j] * history[j]
    return out


# every public function defined in this module: what unroll.runtime exports as kernels
__all__ = [name for name, value in list(globals().items())
           if callable(value) and not name.startswith("_") and getattr(value, "__module__", None) == __name__]
