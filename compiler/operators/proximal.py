"""Thresholds, proximal maps, projections and normalisations (kernels in runtime/ops.py)."""

from __future__ import annotations

import math

from ..types import COMPLEX, INT, REAL, ShapeError, broadcast, shape_str
from .core import (
    Emitted,
    Operator,
    at_least_real,
    elementwise,
    not_mask,
    numeric,
    numpy,
    real,
    register,
    tensor,
)


def _threshold(types, i, opname):
    real(types[i], i, opname)
    if broadcast(types[0].shape, types[i].shape) != types[0].shape:
        raise ShapeError(f"threshold of shape {shape_str(types[i].shape)} does not broadcast to "
                         f"the value's shape {shape_str(types[0].shape)}", i,
                         "a threshold is a scalar or has the value's trailing shape")


def _threshold_infer(opname: str):
    def infer(types, args):
        numeric(types[0], 0)
        not_mask(types[0], 0, opname)
        _threshold(types, 1, f"{opname} (threshold)")
        return types[0].with_(dtype=at_least_real(types[0].dtype), batched=types[0].batched or types[1].batched)
    return infer


_soft_infer = _threshold_infer("soft")


def _ref_soft(v, t):
    np = numpy()
    if np.iscomplexobj(v):
        mag = np.abs(v)
        return np.where(mag > t, v / np.where(mag == 0, 1, mag) * np.maximum(mag - t, 0), 0)
    return np.sign(v) * np.maximum(np.abs(v) - t, 0)


register(Operator("soft", 2, 2, _soft_infer, None, lambda a: f"\\mathcal{{S}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "soft threshold sign(v)·max(|v|−θ, 0); complex v: v/|v|·max(|v|−θ, 0); θ scalar or per-entry",
                  reference=_ref_soft, category="proximal", runtime="soft", usage="soft(v, θ)",
                  shape="θ scalar or broadcasting to v → shape of v", dtype="of v (complex allowed)",
                  gradient="yes (0 inside the dead zone)", example="soft(x - A.T @ (A @ x - y), lam)",
                  result="real[m]"))


def _soft_nonneg_infer(types, args):
    real(types[0], 0, "soft_nonneg")
    return _threshold_infer("soft_nonneg")(types, args)


register(Operator("soft_nonneg", 2, 2, _soft_nonneg_infer, None,
                  lambda a: f"\\mathcal{{S}}^{{+}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "one-sided soft threshold max(v−θ, 0) = relu(v − θ)",
                  reference=lambda v, t: numpy().maximum(v - t, 0), category="proximal", runtime="soft_nonneg",
                  usage="soft_nonneg(v, θ)", shape="as `soft`", dtype="real", example="soft_nonneg(x, lam)",
                  result="real[m]"))
register(Operator("hard", 2, 2, _threshold_infer("hard"), None, lambda a: f"\\mathcal{{H}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "hard threshold by value: v where |v| > θ, else 0",
                  reference=lambda v, t: numpy().where(numpy().abs(v) > t, v, 0), category="proximal",
                  runtime="hard", usage="hard(v, θ)", shape="as `soft`", dtype="of v",
                  gradient="through the kept entries; the mask is constant", example="hard(x, lam)",
                  result="real[m]"))


def _topk_infer(types, args):
    numeric(types[0], 0)
    if types[0].rank == 0:
        raise ShapeError("`hard_topk` needs a vector (or tensor) per sample", 0)
    if types[1].dtype != INT or types[1].rank != 0 or types[1].batched:
        raise ShapeError(f"the count k must be an integer hyperparameter or literal, got {types[1]}", 1)
    return types[0]


def _ref_topk(v, k):
    np = numpy()
    flat = v.reshape(-1)
    order = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[order] = flat[order]
    return out.reshape(v.shape)


register(Operator("hard_topk", 2, 2, _topk_infer, None, lambda a: f"\\mathcal{{H}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "keep the k entries of largest magnitude of each sample (ties: lowest index), zero the rest",
                  reference=_ref_topk, category="proximal", runtime="hard_topk", per_sample=True,
                  usage="hard_topk(v, k)", shape="v rank ≥ 1 per sample; k an `int` hyper or literal → shape of v",
                  dtype="of v", gradient="through the kept entries; the support is constant",
                  example="hard_topk(x, k)", result="real[m]"))


def _ss_infer(types, args):
    out = _threshold_infer("ss_soft")(types[:2], args[:2])
    if types[0].dtype == COMPLEX:
        raise ShapeError("`ss_soft` needs a real value", 0)
    real(types[2], 2, "ss_soft (fraction p)")
    if types[2].rank != 0 or types[2].batched:
        raise ShapeError("the support fraction p must be a scalar (per layer at most)", 2)
    return out


def _ref_ss(v, t, p):
    np = numpy()
    flat = v.reshape(-1)
    k = math.ceil(float(p) * flat.size * (1 - 1e-6))  # same tolerance as runtime.ops.ss_soft
    order = np.argsort(-np.abs(flat), kind="stable")[:k]
    keep = np.zeros(flat.shape, bool)
    keep[order] = True
    soft = np.sign(flat) * np.maximum(np.abs(flat) - t, 0)
    out = np.where(keep & (np.abs(flat) > t), flat, soft)
    return out.reshape(v.shape)


register(Operator("ss_soft", 3, 3, _ss_infer, None, lambda a: f"\\eta^{{ss}}_{{{a[1]},{a[2]}}}\\left({a[0]}\\right)",
                  "support-selection threshold of LISTA-CPSS: the ⌈p·m⌉ largest-magnitude entries above θ pass "
                  "unchanged, the rest are soft-thresholded", reference=_ref_ss, category="proximal",
                  runtime="ss_soft", per_sample=True, usage="ss_soft(v, θ, p)",
                  shape="as `soft`; p a real scalar (per layer at most); the count is k = min(⌈p·m·(1 − 10⁻⁶)⌉, m), "
                        "m the entries per sample (the tolerance makes float32 and float64 agree)",
                  dtype="real", gradient="through the kept/shrunk entries; the support is constant",
                  example="ss_soft(x, lam, p)", result="real[m]"))


def _clamp_infer(types, args):
    for i, t in enumerate(types):
        real(t, i, "clamp")
    return elementwise(*types).with_(dtype=REAL)


def _clamp_emit(args, out):
    v, lo, hi = args
    if lo.py and hi.py:
        return Emitted(f"torch.clamp({tensor(v)}, {lo.code}, {hi.code})")
    return Emitted(f"torch.clamp({tensor(v)}, {tensor(lo)}, {tensor(hi)})")  # bounds all tensors, or all numbers


register(Operator("clamp", 3, 3, _clamp_infer, _clamp_emit, lambda a: f"\\Pi_{{[{a[1]},{a[2]}]}}\\left({a[0]}\\right)",
                  "projection onto the box [lo, hi] (elementwise clamp)",
                  reference=lambda v, lo, hi: numpy().clip(v, lo, hi), category="proximal", usage="clamp(v, lo, hi)",
                  shape="elementwise, broadcasting", dtype="real", gradient="yes (0 outside the box)",
                  example="clamp(x, 0, 1)", result="real[m]"))


# ---------------------------------------------------------------- matrix proximal maps
def _matrix_threshold_infer(name: str):
    def infer(types, args):
        X, tau = types
        numeric(X, 0)
        if X.rank < 2:
            raise ShapeError(f"`{name}` needs a matrix per sample, got {X}", 0)
        real(tau, 1, f"{name} (threshold)")
        if tau.rank != 0:
            raise ShapeError(f"the threshold of `{name}` is a scalar, got {tau}", 1)
        return X.with_(batched=X.batched or tau.batched)
    return infer


def _ref_svt(X, tau):
    np = numpy()
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return (U * np.maximum(s - tau, 0)) @ Vh


def _ref_row_shrink(X, tau):
    np = numpy()
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    return X * np.maximum(0, 1 - tau / np.where(norms == 0, 1, norms)) * (norms > 0)


register(Operator("svt", 2, 2, _matrix_threshold_infer("svt"), None,
                  lambda a: f"\\mathcal{{T}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "singular value thresholding U·max(Σ−τ, 0)·Vᴴ (prox of τ‖·‖_*; complex capable)",
                  reference=_ref_svt, category="proximal", runtime="svt", usage="svt(X, τ)",
                  shape="X a matrix (rank ≥ 2) per sample, τ a real scalar → shape of X",
                  dtype="of X (complex allowed)", gradient="yes (through the SVD)", example="svt(B, lam)",
                  result="real[m, m]"))
register(Operator("row_shrink", 2, 2, _matrix_threshold_infer("row_shrink"), None,
                  lambda a: f"\\mathcal{{S}}^{{1,2}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "row-wise ℓ2 shrinkage X_i·max(0, 1 − τ/‖X_i‖) (prox of τ‖·‖_{1,2}; zero rows stay zero)",
                  reference=_ref_row_shrink, category="proximal", runtime="row_shrink", usage="row_shrink(X, τ)",
                  shape="X rank ≥ 2, τ a real scalar → shape of X", dtype="of X", example="row_shrink(B, lam)",
                  result="real[m, m]"))


# ---------------------------------------------------------------- normalisations
def _norm_sum_infer(types, args):
    real(types[0], 0, "norm_sum")
    if types[0].rank == 0:
        raise ShapeError("`norm_sum` needs a vector or tensor per sample", 0)
    return types[0]


register(Operator("norm_sum", 1, 1, _norm_sum_infer, None, lambda a: f"N_1\\left({a[0]}\\right)",
                  "normalise each sample to unit sum (N₁ of DUBLID)", reference=lambda v: v / v.sum(),
                  category="normalisation", runtime="norm_sum", per_sample=True, usage="norm_sum(v)",
                  shape="rank ≥ 1 → same shape (each sample sums to 1)", dtype="real only",
                  example="norm_sum(abs(x))", result="real[m]"))


def _normalize_columns_infer(types, args):
    numeric(types[0], 0)
    if types[0].rank < 2:
        raise ShapeError("`normalize_columns` needs a matrix", 0)
    return types[0]


register(Operator("normalize_columns", 1, 1, _normalize_columns_infer, None,
                  lambda a: f"\\operatorname{{ncol}}\\left({a[0]}\\right)", "scale every column to unit ℓ2 norm",
                  reference=lambda W: W / numpy().linalg.norm(W, axis=-2, keepdims=True), category="normalisation",
                  runtime="normalize_columns", usage="normalize_columns(W)", shape="rank ≥ 2 → same shape",
                  dtype="of W", example="normalize_columns(A)", result="real[n, m]"))
