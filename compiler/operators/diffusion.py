"""Diffusion (issue 8, family G): the symmetric-boundary convolution `conv2s` / `conv2s_adj` (TNRD's
boundary), PDE-Net's moment-constrained filters `moment_filter`, and the learned influence functions `rbf` (Gaussian RBF mixture) and `pwl` (piecewise
linear).  Kernels in runtime/ops_diffusion.py."""

from __future__ import annotations

import math

from ..types import ShapeError, Type
from .core import Operator, numpy, real, register
from .fourier import conv_infer


def _mirror(i: int, n: int) -> int:
    """Source index of position i of the half-sample symmetric extension of n samples."""
    i %= 2 * n
    return i if i < n else 2 * n - 1 - i


def _ref_symmetric(adjoint: bool):
    """conv2s (or its adjoint) written as the defining loops over pixels and taps."""
    def ref(k, x):
        np = numpy()
        s1, s2 = k.shape[-2:]
        h, w = x.shape[-2:]
        c1, c2 = (s1 - 1) // 2, (s2 - 1) // 2
        kk = np.conj(k) if adjoint else k
        lead = np.broadcast_shapes(k.shape[:-2], x.shape[:-2])
        out = np.zeros(lead + (h, w), dtype=np.result_type(k, x))
        for i in range(h):
            for j in range(w):
                for a in range(s1):
                    for b in range(s2):
                        r, c = _mirror(i - a + c1, h), _mirror(j - b + c2, w)
                        if adjoint:  # out = K^T y: pixel (i, j) of y sends k[a, b] y[i, j] to the source (r, c)
                            out[..., r, c] += kk[..., a, b] * x[..., i, j]
                        else:
                            out[..., i, j] += kk[..., a, b] * x[..., r, c]
        return out
    return ref


register(Operator("conv2s", 2, 2, conv_infer("conv2s"), None, lambda a: f"{a[0]} *_s {a[1]}",
                  "'same'-size 2-D convolution with a **symmetric** boundary (the image mirrored about its edges, "
                  "edge pixels repeated: MATLAB's 'symmetric'; TNRD's boundary), kernel centre at index (s−1)//2 "
                  "as `conv2z`; TNRD's correlation with a filter k is `conv2s` with k rotated by 180°",
                  reference=_ref_symmetric(False), category="convolution", runtime="conv2s", usage="conv2s(k, v)",
                  shape="as `conv2`", dtype="as `conv2`", example="conv2s(d, img)", result="real[C, h, w]"))
register(Operator("conv2s_adj", 2, 2, conv_infer("conv2s_adj"), None, lambda a: f"\\tilde{{{a[0]}}} *_s {a[1]}",
                  "exact adjoint of `conv2s`: correlation with the (conjugated) kernel onto the mirrored extension, "
                  "mirrored values added back onto their source pixels; sum over a bank with "
                  "`sum(conv2s_adj(d, z), 0)`", reference=_ref_symmetric(True), category="convolution",
                  runtime="conv2s_adj", usage="conv2s_adj(k, v)", shape="as `conv2`", dtype="as `conv2`",
                  example="sum(conv2s_adj(d, conv2s(d, img)), 0)", result="real[h, w]"))


def _moment_infer(types, args):
    m = types[0]
    real(m, 0, "moment_filter")
    if m.rank < 2:
        raise ShapeError(f"`moment_filter` needs moments [s, s] (or a stack [P, s, s]), got {m}", 0)
    if m.batched:
        raise ShapeError("the moments of `moment_filter` cannot depend on the input", 0,
                         "build them from parameters and data")
    return m


def _ref_moment_filter(m):
    """Solve the moment equations sum_k (-(k1 - c1))^a (-(k2 - c2))^b / (a! b!) q[k1, k2] = m[a, b] densely."""
    np = numpy()
    s1, s2 = m.shape[-2:]
    rows = []
    for a in range(s1):
        for b in range(s2):
            rows.append([(-(k1 - (s1 - 1) // 2)) ** a * (-(k2 - (s2 - 1) // 2)) ** b / (math.factorial(a) *
                         math.factorial(b)) for k1 in range(s1) for k2 in range(s2)])
    flat = np.asarray(m, dtype=float).reshape(m.shape[:-2] + (s1 * s2,))
    q = np.linalg.solve(np.array(rows), flat[..., None])[..., 0] if flat.ndim == 1 else \
        np.linalg.solve(np.array(rows), flat.T).T
    return q.reshape(m.shape)


register(Operator("moment_filter", 1, 1, _moment_infer, None, lambda a: f"M^{{-1}}\\left({a[0]}\\right)",
                  "the s×s convolution kernel q with the Taylor moments m: `conv2(q, u)` = Σ_ab m[a, b] ∂ᵃ_i ∂ᵇ_j u "
                  "+ higher orders (grid units; kernel centre (s−1)//2): PDE-Net's moment-constrained filters "
                  "(fix the low moments, learn the others); linear in m", reference=_ref_moment_filter,
                  category="convolution", runtime="moment_filter", usage="moment_filter(m)",
                  shape="[..., s1, s2] → same", dtype="real", example="moment_filter(d)", result="real[C, 3, 3]"))


def _weights_rule(name: str, what: str):
    """The shared shape rule of `rbf` and `pwl`: z any real value; the function's table (weights or
    values) [J] (one function) or [F, J] with F = z's first axis (function f acts on z[f]); the points
    (centres or knots) a vector [J]; none of them per sample."""
    def check(z: Type, table: Type, points: Type, table_i: int, points_i: int) -> Type:
        real(z, 0, name)
        real(table, table_i, name)
        real(points, points_i, name)
        for t, i in ((table, table_i), (points, points_i)):
            if t.batched:
                raise ShapeError(f"the {what} of `{name}` cannot depend on the input (one function per sample)", i,
                                 "make them parameters, data or constants")
        if points.rank != 1:
            raise ShapeError(f"`{name}` needs a vector of points [J], got {points}", points_i)
        if table.rank not in (1, 2) or table.shape[-1] != points.shape[0]:
            count = points.shape[0]
            raise ShapeError(f"`{name}` needs {what} with one entry per point ({count}): [{count}] or [F, {count}], "
                             f"got {table}", table_i, "one row per filter: `real[F, J]` for z of shape [F, h, w]")
        if table.rank == 2 and (z.rank < 1 or z.shape[0] != table.shape[0]):
            raise ShapeError(f"`{name}` with {table.shape[0]} functions needs values whose first axis has "
                             f"{table.shape[0]} entries (function f acts on z[f]), got {z}", 0,
                             "filter responses of a bank: `conv2s(k, u)` with k [F, s, s]")
        return Type(z.dtype, z.shape, z.batched)
    return check


_rbf_check = _weights_rule("rbf", "weights")
_pwl_check = _weights_rule("pwl", "values")


def _rbf_infer(types, args):
    z, w, centers, gamma = types
    out = _rbf_check(z, w, centers, 1, 2)
    real(gamma, 3, "rbf")
    if gamma.rank != 0 or gamma.batched:
        raise ShapeError(f"the width of `rbf` is one number, got {gamma}", 3)
    return out


def _pwl_infer(types, args):
    z, knots, values = types
    return _pwl_check(z, values, knots, 2, 1)


def _ref_rbf(z, w, centers, gamma):
    np = numpy()
    w = np.asarray(w, dtype=float)
    out = np.zeros(np.shape(z))
    for j, mu in enumerate(np.asarray(centers, dtype=float)):
        weight = w[j] if w.ndim == 1 else w[:, j].reshape((-1,) + (1,) * (np.ndim(z) - 1))
        out = out + weight * np.exp(-(z - mu) ** 2 / (2 * gamma**2))
    return out


def _ref_pwl(z, knots, values):
    np = numpy()
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return np.interp(z, knots, values)
    return np.stack([np.interp(z[f], knots, values[f]) for f in range(values.shape[0])])


register(Operator("rbf", 4, 4, _rbf_infer, None,
                  lambda a: f"\\sum_j {a[1]}_j\\, e^{{-({a[0]} - {a[2]}_j)^2 / 2{a[3]}^2}}",
                  "Gaussian RBF mixture φ(z) = Σ_j w_j exp(−(z − μ_j)²/(2γ²)) applied elementwise (TNRD's learned "
                  "influence functions); with w [F, J], function f acts on z[f]; computed one centre at a time "
                  "(no [F, J, h, w] tensor), derivatives written out", reference=_ref_rbf, category="influence",
                  runtime="rbf", per_sample=True, usage="rbf(z, w, centers, gamma)",
                  shape="z any real [F, ...]; w [J] or [F, J]; centers [J]; gamma a scalar → shape of z",
                  dtype="real", gradient="yes (in z, w, centers, gamma; first order only)",
                  example="rbf(conv2s(d, img), W, W[0], lam)", result="real[C, h, w]"))
register(Operator("pwl", 3, 3, _pwl_infer, None, lambda a: f"\\operatorname{{pwl}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "piecewise-linear function through the points (knots_j, values_j) applied elementwise, constant "
                  "beyond the first and last knot (numpy `interp`); with values [F, J], function f acts on z[f]",
                  reference=_ref_pwl, category="influence", runtime="pwl", per_sample=True,
                  usage="pwl(z, knots, values)",
                  shape="z any real [F, ...]; knots [J] increasing, J ≥ 2; values [J] or [F, J] → shape of z",
                  dtype="real", gradient="yes (in z, the knots and the values)", example="pwl(conv2s(d, img), W[0], W)",
                  result="real[C, h, w]"))
