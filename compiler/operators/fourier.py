"""Fourier transforms, circular (FFT) convolution with kernels in both forms, and the STFT.

Blur kernels live in two forms: small [s, s] arrays with their centre at index (s-1)//2 (what `conv2`
and `otf` take), or image-sized arrays with their origin at [0, 0] (`pad_kernel`, `crop_kernel`,
`support` convert and restrict them)."""

from __future__ import annotations

from ..ast import DimExpr
from ..types import COMPLEX, INT, REAL, ShapeError, Type, broadcast, shape_str
from .core import Emitted, Operator, image, numeric, numpy, real, register, static_dim


def _fft_infer(ndim: int, name: str):
    def infer(types, args):
        t = types[0]
        numeric(t, 0)
        if t.rank < ndim:
            raise ShapeError(f"`{name}` needs at least {ndim} axis/axes per sample, got {t}", 0)
        return t.with_(dtype=COMPLEX)
    return infer


def _fft(name: str, fn: str, ndim: int, norm: str | None, tex: str, doc: str, ref, *, shape: str, example: str,
         result: str):
    dims = "(-2, -1)" if ndim == 2 else "-1"
    norm_code = f", norm={norm!r}" if norm else ""
    register(Operator(name, 1, 1, _fft_infer(ndim, name),
                      lambda a, o: Emitted(f"torch.fft.{fn}({a[0].code}, dim={dims}{norm_code})"),
                      lambda a: tex.format(a[0]), doc, reference=ref, category="fourier", usage=f"{name}(v)",
                      shape=shape, dtype="complex result", example=example, result=result))


_fft("fft", "fft", 1, None, "\\mathcal{{F}}\\left({}\\right)", "1-D DFT of the last axis (unnormalised, numpy convention)",
     lambda v: numpy().fft.fft(v, axis=-1), shape="rank ≥ 1; transforms the last axis", example="fft(z)",
     result="complex[m]")
_fft("ifft", "ifft", 1, None, "\\mathcal{{F}}^{{-1}}\\left({}\\right)", "inverse 1-D DFT of the last axis",
     lambda v: numpy().fft.ifft(v, axis=-1), shape="rank ≥ 1; last axis", example="ifft(fft(z))",
     result="complex[m]")
_fft("fft2", "fft2", 2, None, "\\mathcal{{F}}\\left({}\\right)", "2-D DFT of the last two axes (unnormalised)",
     lambda v: numpy().fft.fft2(v, axes=(-2, -1)), shape="rank ≥ 2; last two axes", example="fft2(img)",
     result="complex[h, w]")
_fft("ifft2", "ifft2", 2, None, "\\mathcal{{F}}^{{-1}}\\left({}\\right)", "inverse 2-D DFT of the last two axes",
     lambda v: numpy().fft.ifft2(v, axes=(-2, -1)), shape="rank ≥ 2; last two axes",
     example="real(ifft2(fft2(img)))", result="real[h, w]")
_fft("fft2u", "fft2", 2, "ortho", "F_u\\left({}\\right)", "unitary 2-D DFT (norm='ortho', MRI convention)",
     lambda v: numpy().fft.fft2(v, axes=(-2, -1), norm="ortho"), shape="rank ≥ 2; last two axes",
     example="fft2u(img)", result="complex[h, w]")
_fft("ifft2u", "ifft2", 2, "ortho", "F_u^{{H}}\\left({}\\right)", "inverse unitary 2-D DFT (norm='ortho')",
     lambda v: numpy().fft.ifft2(v, axes=(-2, -1), norm="ortho"), shape="rank ≥ 2; last two axes",
     example="ifft2u(fft2u(img))", result="complex[h, w]")


# ---------------------------------------------------------------- kernels: both forms
def ref_pad_kernel(k, h, w):
    np = numpy()
    s1, s2 = k.shape[-2:]
    pad = np.zeros(k.shape[:-2] + (h, w), dtype=k.dtype)
    pad[..., :s1, :s2] = k
    return np.roll(pad, (-((s1 - 1) // 2), -((s2 - 1) // 2)), axis=(-2, -1))


def _ref_otf(k, h, w):
    return numpy().fft.fft2(ref_pad_kernel(k, h, w), axes=(-2, -1))


def _otf_infer(types, args):
    k = types[0]
    numeric(k, 0)
    if k.rank < 2:
        raise ShapeError(f"`otf` needs a 2-D kernel or a stack of kernels, got {k}", 0)
    for i in (1, 2):
        if args[i] is None or not isinstance(args[i].static, DimExpr):
            raise ShapeError("the image size must be given by two dimensions: `otf(k, h, w)`", i)
    return Type(COMPLEX, k.shape[:-2] + (args[1].static, args[2].static), k.batched)


register(Operator("otf", 3, 3, _otf_infer, None, lambda a: f"\\hat{{{a[0]}}}",
                  "frequency response of a kernel (stack) at image size h x w (psf2otf: zero-pad, centre to the "
                  "origin, fft2)", reference=_ref_otf, category="fourier", runtime="otf", extra={"dim_args": (1, 2)},
                  usage="otf(k, h, w)", shape="kernel(s) [..., s1, s2], dims h, w → [..., h, w]",
                  dtype="complex result", example="otf(d, h, w)", result="complex[C, h, w]"))


def _support_infer(types, args):
    image(types[0], 0, "support")
    if not (types[1].dtype == INT and types[1].rank == 0):  # an `int` hyper works too: the shape does not depend on it
        static_dim(args, 1, "support", "support size")
    return types[0]


def _ref_support(k, s):
    np = numpy()
    h, w = k.shape[-2:]
    c = (s - 1) // 2
    mask = ((np.arange(h) + c) % h < s)[:, None] & ((np.arange(w) + c) % w < s)[None, :]
    return k * mask


def _pad_kernel_infer(types, args):
    image(types[0], 0, "pad_kernel")
    h = static_dim(args, 1, "pad_kernel", "image height")
    w = static_dim(args, 2, "pad_kernel", "image width")
    return types[0].with_(shape=types[0].shape[:-2] + (h, w))


def _crop_kernel_infer(types, args):
    image(types[0], 0, "crop_kernel")
    s = static_dim(args, 1, "crop_kernel", "kernel size")
    return types[0].with_(shape=types[0].shape[:-2] + (s, s))


def _ref_crop_kernel(K, s):
    c = (s - 1) // 2
    return numpy().roll(K, (c, c), axis=(-2, -1))[..., :s, :s]


register(Operator("support", 2, 2, _support_infer, None, lambda a: f"\\operatorname{{supp}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "zero an image-sized kernel outside the s×s window centred at the origin (circularly): "
                  "restrict a kernel estimate to its support", reference=_ref_support, category="kernels",
                  runtime="support", extra={"dim_args": (1,)}, usage="support(k, s)",
                  shape="[..., h, w], s a dim or integer → same", dtype="same", example="support(img, 5)",
                  result="real[h, w]"))
register(Operator("pad_kernel", 3, 3, _pad_kernel_infer, None, lambda a: f"\\operatorname{{pad}}\\left({a[0]}\\right)",
                  "an s×s kernel placed in an h×w image with its centre at the origin: "
                  "`fft2(pad_kernel(k, h, w)) == otf(k, h, w)`", reference=ref_pad_kernel, category="kernels",
                  runtime="pad_kernel", extra={"dim_args": (1, 2)}, usage="pad_kernel(k, h, w)",
                  shape="[..., s, s], dims h, w → [..., h, w]", dtype="same", example="pad_kernel(d, h, w)",
                  result="real[C, h, w]"))
register(Operator("crop_kernel", 2, 2, _crop_kernel_infer, None,
                  lambda a: f"\\operatorname{{crop}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "the s×s centred kernel of an image-sized one, inverse and adjoint of `pad_kernel`; the kernel "
                  "gradient of ½‖k ⊛ x − y‖² is `crop_kernel(real(ifft2(conj(fft2(x)) * fft2(r))), s)` with r the "
                  "residual", reference=_ref_crop_kernel, category="kernels", runtime="crop_kernel",
                  extra={"dim_args": (1,)}, usage="crop_kernel(K, s)", shape="[..., h, w] → [..., s, s]",
                  dtype="same", example="crop_kernel(img, 3)", result="real[3, 3]"))


# ---------------------------------------------------------------- circular convolution with filter banks
def conv_infer(name: str):
    """Kernel [s1, s2] or bank [..., s1, s2] against images [..., h, w]: leading axes broadcast."""
    def infer(types, args):
        k, x = types
        numeric(k, 0)
        numeric(x, 1)
        if k.rank < 2:
            raise ShapeError(f"`{name}` needs a 2-D kernel (or a stack [C, s, s] of kernels), got {k}", 0)
        if x.rank < 2:
            raise ShapeError(f"`{name}` needs an image (last two axes), got {x}", 1)
        lead = broadcast(k.shape[:-2], x.shape[:-2])
        if lead is None:
            raise ShapeError(f"kernel stack {shape_str(k.shape[:-2])} and image stack {shape_str(x.shape[:-2])} "
                             "do not broadcast", 1)
        dtype = COMPLEX if COMPLEX in (k.dtype, x.dtype) else REAL
        return Type(dtype, lead + x.shape[-2:], k.batched or x.batched)
    return infer


def _ref_conv(adjoint: bool):
    def ref(k, x):
        np = numpy()
        h, w = x.shape[-2:]
        K = _ref_otf(k, h, w)
        out = np.fft.ifft2((np.conj(K) if adjoint else K) * np.fft.fft2(x, axes=(-2, -1)), axes=(-2, -1))
        return out if (np.iscomplexobj(k) or np.iscomplexobj(x)) else out.real
    return ref


register(Operator("conv2", 2, 2, conv_infer("conv2"), None, lambda a: f"{a[0]} \\circledast {a[1]}",
                  "circular 2-D convolution of images [..., h, w] with a kernel [s, s] or a bank [C, s, s] "
                  "(kernel centre at the origin, psf2otf convention); real in, real out",
                  reference=_ref_conv(False), category="convolution", runtime="conv2", usage="conv2(k, v)",
                  shape="kernel [s1,s2] or bank [C,s1,s2]; image [..., h, w] → leading axes broadcast, + [h, w]",
                  dtype="complex if either is, else real", example="conv2(d, img)", result="real[C, h, w]"))
register(Operator("conv2_adj", 2, 2, conv_infer("conv2_adj"), None, lambda a: f"\\tilde{{{a[0]}}} \\circledast {a[1]}",
                  "exact adjoint of `conv2` (circular correlation with the kernel); sum over a bank with "
                  "`sum(conv2_adj(d, z), 0)`", reference=_ref_conv(True), category="convolution",
                  runtime="conv2_adj", usage="conv2_adj(k, v)", shape="as `conv2`", dtype="as `conv2`",
                  example="sum(conv2_adj(d, conv2(d, img)), 0)", result="real[h, w]"))


# ---------------------------------------------------------------- short-time Fourier transform
def _hop(types, i: int, opname: str) -> None:
    t = types[i]
    if t.dtype != INT or t.rank != 0:
        raise ShapeError(f"the hop of `{opname}` must be an integer (a literal or an `int` hyperparameter)", i)


def _stft_infer(types, args):
    x = types[0]
    real(x, 0, "stft")
    if x.rank < 1:
        raise ShapeError(f"`stft` needs signals [T], got {x}", 0)
    F = static_dim(args, 1, "stft", "number of frequencies")
    N = static_dim(args, 2, "stft", "number of frames")
    _hop(types, 3, "stft")
    return Type(COMPLEX, x.shape[:-1] + (F, N), x.batched)


def _istft_infer(types, args):
    X = types[0]
    numeric(X, 0)
    if X.rank < 2:
        raise ShapeError(f"`istft` needs spectrograms [F, N], got {X}", 0)
    T = static_dim(args, 1, "istft", "signal length")
    _hop(types, 2, "istft")
    return Type(REAL, X.shape[:-2] + (T,), X.batched)


def _hann(n):
    np = numpy()
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _ref_stft(x, F, N, hop):
    np = numpy()
    n_fft = 2 * (F - 1)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    frames = np.stack([xp[..., i * hop:i * hop + n_fft] * _hann(n_fft) for i in range(N)], axis=-1)
    return np.fft.rfft(frames, axis=-2)


def _ref_istft(X, T, hop):
    np = numpy()
    F, N = X.shape[-2:]
    n_fft = 2 * (F - 1)
    win = _hann(n_fft)
    frames = np.fft.irfft(X, n=n_fft, axis=-2) * win[:, None]
    total = n_fft + hop * (N - 1)
    y = np.zeros(X.shape[:-2] + (total,))
    wsum = np.zeros(total)
    for i in range(N):
        y[..., i * hop:i * hop + n_fft] += frames[..., i]
        wsum[i * hop:i * hop + n_fft] += win**2
    start = n_fft // 2
    return y[..., start:start + T] / wsum[start:start + T]


register(Operator("stft", 4, 4, _stft_infer, None, lambda a: f"\\operatorname{{STFT}}\\left({a[0]}\\right)",
                  "short-time Fourier transform: n_fft = 2(F−1), periodic Hann window, centred frames (reflect "
                  "padding), `hop` samples apart, one-sided, unnormalised (torch.stft conventions)",
                  reference=_ref_stft, category="fourier", runtime="stft", extra={"dim_args": (1, 2)},
                  lift_batched=False, usage="stft(x, F, N, hop)",
                  shape="real signals [..., T], dims F, N (N = 1 + T // hop, checked at run time), hop an int "
                        "literal or `int` hyper → [..., F, N]",
                  dtype="complex result", example="stft(sig, F, N, 64)", result="complex[F, N]"))
register(Operator("istft", 3, 3, _istft_infer, None, lambda a: f"\\operatorname{{iSTFT}}\\left({a[0]}\\right)",
                  "inverse STFT by least-squares windowed overlap-add; `istft(stft(x, F, N, hop), T, hop) == x` "
                  "(Hann windows with hop ≤ n_fft/2)", reference=_ref_istft, category="fourier", runtime="istft",
                  extra={"dim_args": (1,)}, usage="istft(X, T, hop)", shape="spectrograms [..., F, N], dim T → [..., T]",
                  dtype="real result", example="istft(S, T, 64)", result="real[T]"))
