"""Imaging: zero-boundary convolution, channel mixing, patches, resampling, finite differences."""

from __future__ import annotations

from ..ast import DimExpr
from ..types import ShapeError, Type, promote, shape_str
from .core import P_ATOM, Emitted, Operator, image, numeric, numpy, real, register, static_dim, wrap
from .fourier import conv_infer


def _ref_shift_sum(adjoint: bool):
    """Zero-boundary 'same' convolution (or its adjoint) written as the defining loops."""
    def ref(k, x):
        np = numpy()
        s1, s2 = k.shape[-2:]
        h, w = x.shape[-2:]
        c1, c2 = (s1 - 1) // 2, (s2 - 1) // 2
        k = np.conj(k) if adjoint else k  # correlation with the conjugate kernel: the exact adjoint
        lead = np.broadcast_shapes(k.shape[:-2], x.shape[:-2])
        out = np.zeros(lead + (h, w), dtype=np.result_type(k, x))
        for i in range(h):
            for j in range(w):
                for a in range(s1):
                    for b in range(s2):
                        r, c = (i + a - c1, j + b - c2) if adjoint else (i - a + c1, j - b + c2)
                        if 0 <= r < h and 0 <= c < w:
                            out[..., i, j] += k[..., a, b] * x[..., r, c]
        return out
    return ref


register(Operator("conv2z", 2, 2, conv_infer("conv2z"), None, lambda a: f"{a[0]} * {a[1]}",
                  "'same'-size 2-D convolution with **zero** boundary (kernel centre at index (s−1)//2): torch's "
                  "`conv2d` with the flipped kernel and padding s//2 (odd s); a bank [o, c, s, s] on images "
                  "[c, h, w] is a multi-channel convolution layer: `sum(conv2z(W, x), 1)`",
                  reference=_ref_shift_sum(False), category="convolution", runtime="conv2z", usage="conv2z(k, v)",
                  shape="as `conv2`", dtype="as `conv2`", example="conv2z(d, img)", result="real[C, h, w]"))
register(Operator("conv2z_adj", 2, 2, conv_infer("conv2z_adj"), None, lambda a: f"\\tilde{{{a[0]}}} * {a[1]}",
                  "exact adjoint of `conv2z`: zero-boundary correlation with the (conjugated) kernel, torch's "
                  "`conv2d` with padding s//2", reference=_ref_shift_sum(True), category="convolution",
                  runtime="conv2z_adj", usage="conv2z_adj(k, v)", shape="as `conv2`", dtype="as `conv2`",
                  example="conv2z_adj(d, conv2z(d, img))", result="real[C, h, w]"))


def _chanmix_infer(types, args):
    W, x = types
    numeric(W, 0)
    numeric(x, 1)
    if W.rank != 2:
        raise ShapeError(f"`chanmix` needs a matrix [o, c], got {W}", 0)
    if x.rank < 3:
        raise ShapeError(f"`chanmix` needs images with a channel axis [c, h, w], got {x}", 1)
    if W.shape[1] != x.shape[-3]:
        raise ShapeError(f"the matrix has {W.shape[1]} columns but the images have {x.shape[-3]} channels", 1,
                         "`chanmix(W, x)` applies W [o, c] to every pixel's channel vector")
    return Type(promote(W.dtype, x.dtype), x.shape[:-3] + (W.shape[0],) + x.shape[-2:], W.batched or x.batched)


def _chanmix_emit(args, out):
    W, x = args
    # a batched matrix [batch, o, c] against image stacks [batch, k, c, h, w]: one matrix per sample
    matrix = f"{wrap(W, P_ATOM)}[:, None]" if W.type.batched and x.type.rank > 3 else W.code
    return Emitted(f"rt.chanmix({matrix}, {x.code})")


register(Operator("chanmix", 2, 2, _chanmix_infer, _chanmix_emit, lambda a: f"{a[0]} \\cdot_c {a[1]}",
                  "1×1 convolution: the matrix W [o, c] applied to every pixel's channel vector",
                  reference=lambda W, x: numpy().einsum("oc,...chw->...ohw", W, x), category="convolution",
                  runtime="chanmix", lift_batched=False, usage="chanmix(W, v)",
                  shape="W [o, c], images [..., c, h, w] → [..., o, h, w]", dtype="promoted",
                  example="chanmix(W, patches(img, 3))", result="real[C, h, w]"))


# ---------------------------------------------------------------- patches
def _patches_infer(types, args):
    image(types[0], 0, "patches")
    s = static_dim(args, 1, "patches", "patch size")
    return types[0].with_(shape=types[0].shape[:-2] + (s * s,) + types[0].shape[-2:])


def _unpatch_infer(name: str):
    def infer(types, args):
        z = types[0]
        numeric(z, 0)
        s = static_dim(args, 1, name, "patch size")
        if z.rank < 3:
            raise ShapeError(f"`{name}` needs patch stacks [s*s, h, w], got {z}", 0)
        if z.shape[-3] != s * s:
            raise ShapeError(f"`{name}` with patch size {s} needs {s * s} patch channels, got {z.shape[-3]}", 0)
        return z.with_(shape=z.shape[:-3] + z.shape[-2:])
    return infer


def _unit_kernels(s):
    return numpy().eye(s * s).reshape(s * s, s, s)


def _ref_patches(x, s):
    return _ref_shift_sum(True)(_unit_kernels(s), x[..., None, :, :])


def _ref_unpatch(z, s):
    return _ref_shift_sum(False)(_unit_kernels(s), z).sum(axis=-3)


def _ref_patch_average(z, s):
    return _ref_unpatch(z, s) / _ref_unpatch(numpy().ones((s * s,) + z.shape[-2:]), s)


register(Operator("patches", 2, 2, _patches_infer, None,
                  lambda a: f"\\operatorname{{patches}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "every s×s patch of an image, one per pixel, zero boundary; channel a·s+b at pixel i holds "
                  "v[i + (a, b) − (s−1)//2] (torch `unfold` with padding (s−1)//2)", reference=_ref_patches,
                  category="patches", runtime="patches", extra={"dim_args": (1,)}, lift_batched=False,
                  usage="patches(v, s)", shape="images [..., h, w], s a dim or integer → [..., s*s, h, w]",
                  dtype="same", example="patches(img, 3)", result="real[9, h, w]"))
register(Operator("unpatch", 2, 2, _unpatch_infer("unpatch"), None,
                  lambda a: f"\\operatorname{{patches}}_{{{a[1]}}}^{{T}}\\left({a[0]}\\right)",
                  "overlap-add of patches, the exact adjoint of `patches` (torch `fold`)", reference=_ref_unpatch,
                  category="patches", runtime="unpatch", extra={"dim_args": (1,)}, usage="unpatch(z, s)",
                  shape="[..., s*s, h, w] → [..., h, w]", dtype="same", example="unpatch(patches(img, 3), 3)",
                  result="real[h, w]"))
register(Operator("patch_average", 2, 2, _unpatch_infer("patch_average"), None,
                  lambda a: f"\\operatorname{{avg}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "recombination of overlapping patches by averaging, unpatch(z) / unpatch(1) (SCN's last layer); "
                  "`patch_average(patches(v, s), s) == v`", reference=_ref_patch_average, category="patches",
                  runtime="patch_average", extra={"dim_args": (1,)}, usage="patch_average(z, s)",
                  shape="as `unpatch`", dtype="same", example="patch_average(patches(img, 3), 3)",
                  result="real[h, w]"))


# ---------------------------------------------------------------- resampling
def _divide_dim(d: DimExpr, r: int) -> DimExpr | None:
    if d.const % r or any(c % r for _, c in d.terms):
        return None
    return DimExpr(tuple((n, c // r) for n, c in d.terms), d.const // r)


def _factor(args, opname: str) -> int:
    r = args[1].static if args[1] is not None else None
    if not isinstance(r, int) or r < 1:
        raise ShapeError(f"the factor of `{opname}` must be a positive integer literal", 1)
    return r


def _down_infer(types, args):
    x = types[0]
    image(x, 0, "down")
    r = _factor(args, "down")
    new = [_divide_dim(d, r) for d in x.shape[-2:]]
    if None in new:
        raise ShapeError(f"`down` by {r} needs image sizes that are multiples of {r}, got "
                         f"{shape_str(x.shape[-2:])}", 0, f"declare the fine grid as `real[{r}*h, {r}*w]`")
    return x.with_(shape=x.shape[:-2] + tuple(new))


def _up_infer(name: str):
    def infer(types, args):
        x = types[0]
        image(x, 0, name)
        r = _factor(args, name)
        if name == "bicubic":
            real(x, 0, name)
        return x.with_(shape=x.shape[:-2] + tuple(DimExpr.of(r) * d for d in x.shape[-2:]))
    return infer


def _ref_up(x, r):
    out = numpy().zeros(x.shape[:-2] + (r * x.shape[-2], r * x.shape[-1]), dtype=x.dtype)
    out[..., ::r, ::r] = x
    return out


def _ref_bicubic(x, r):
    """Separable Keys cubic (a = -0.75), half-pixel centres, indices clamped at the border."""
    np = numpy()

    def weights(t):
        a = -0.75
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    def matrix(n):
        M = np.zeros((r * n, n))
        for i in range(r * n):
            src = (i + 0.5) / r - 0.5
            base = int(np.floor(src))
            for j in range(base - 1, base + 3):
                M[i, min(max(j, 0), n - 1)] += weights(src - j)
        return M

    return matrix(x.shape[-2]) @ x @ matrix(x.shape[-1]).T


register(Operator("down", 2, 2, _down_infer, None, lambda a: f"S_{{{a[1]}}}\\left({a[0]}\\right)",
                  "decimation: keep pixels (r·i, r·j)", reference=lambda x, r: x[..., ::r, ::r], category="resampling",
                  runtime="down", static_args=(1,), usage="down(v, r)",
                  shape="images [..., r*h, r*w] (declare the fine grid so: `real[2*h, 2*w]`), r an integer literal "
                        "→ [..., h, w]", dtype="same", example="down(fine, 2)", result="real[h, w]"))
register(Operator("up", 2, 2, _up_infer("up"), None, lambda a: f"S_{{{a[1]}}}^{{T}}\\left({a[0]}\\right)",
                  "zero-filling upsampling, the exact adjoint of `down`", reference=_ref_up, category="resampling",
                  runtime="up", static_args=(1,), usage="up(v, r)", shape="[..., h, w] → [..., r*h, r*w]",
                  dtype="same", example="up(img, 2)", result="real[2*h, 2*w]"))
register(Operator("bicubic", 2, 2, _up_infer("bicubic"), None,
                  lambda a: f"\\operatorname{{bicubic}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "bicubic interpolation by r (Keys a = −0.75, half-pixel centres, clamped border: torch "
                  "`interpolate(mode='bicubic', align_corners=False)`)", reference=_ref_bicubic,
                  category="resampling", runtime="bicubic", static_args=(1,), usage="bicubic(v, r)",
                  shape="[..., h, w] → [..., r*h, r*w]", dtype="real only", example="bicubic(img, 2)",
                  result="real[2*h, 2*w]"))


# ---------------------------------------------------------------- finite differences (TV)
def _grad2_infer(types, args):
    image(types[0], 0, "grad2")
    x = types[0]
    return x.with_(shape=x.shape[:-2] + (DimExpr.of(2),) + x.shape[-2:])


def _div2_infer(types, args):
    p = types[0]
    numeric(p, 0)
    if p.rank < 3 or p.shape[-3] != DimExpr.of(2):
        raise ShapeError(f"`div2` needs a vector field [2, h, w], got {p}", 0, "`div2(grad2(x))` is the Laplacian")
    return p.with_(shape=p.shape[:-3] + p.shape[-2:])


def _ref_grad2(x):
    np = numpy()
    return np.stack((np.roll(x, -1, axis=-2) - x, np.roll(x, -1, axis=-1) - x), axis=-3)


def _ref_div2(p):
    np = numpy()
    p0, p1 = p[..., 0, :, :], p[..., 1, :, :]
    return (p0 - np.roll(p0, 1, axis=-2)) + (p1 - np.roll(p1, 1, axis=-1))


register(Operator("grad2", 1, 1, _grad2_infer, None, lambda a: f"\\nabla {a[0]}",
                  "image gradient by forward differences, circular boundary (vertical, horizontal)",
                  reference=_ref_grad2, category="differences", runtime="grad2", lift_batched=False,
                  usage="grad2(v)", shape="[..., h, w] → [..., 2, h, w]", dtype="same", example="grad2(img)",
                  result="real[2, h, w]"))
register(Operator("div2", 1, 1, _div2_infer, None, lambda a: f"\\nabla \\cdot {a[0]}",
                  "divergence by backward differences, circular: `div2 = −grad2ᵀ`, so `div2(grad2(v))` is the "
                  "Laplacian and `div2(g / sqrt(sum(g * g, 0) + eps))` the TV term", reference=_ref_div2,
                  category="differences", runtime="div2", usage="div2(p)", shape="[..., 2, h, w] → [..., h, w]",
                  dtype="same", example="div2(grad2(img))", result="real[h, w]"))
