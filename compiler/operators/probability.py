"""Probabilistic operators along one axis: `softmax`, `logsoftmax`, `logsumexp`, and the axis reductions
`max(v, axis=k)` / `min(v, axis=k)`.

All are numerically stable: they are emitted as torch's own kernels, which shift every slice by its
maximum before exponentiating (`torch.softmax`, `torch.log_softmax`, `torch.logsumexp`), so logits that
differ by 10³ or more give exact, finite results, and −inf entries are zero-probability entries (a slice
that is −inf everywhere has logsumexp −inf).

The axis is a keyword or positional argument (`softmax(U, 1)` = `softmax(U, axis=1)`).  The axis
reductions are only spelt with the keyword: `max(X, 0)` is the elementwise maximum of X and 0, and the
checker rejects it for a matrix X with a hint (see reductions.py), so that `max(X, axis=0)` and
`sum(X, 0)` cannot be confused.  `max(v, axis=k)` is the entry `max_axis` (the keyword form of `max`,
`extra["keyword_form_of"]`), documented in the row of `max`.
"""

from __future__ import annotations

from ..types import BOOL, REAL, ShapeError, Type
from .core import P_ATOM, Emitted, Operator, all_axes, axis_code, numpy, register, wrap
from .core import real as real_operand


def real(t: Type, i: int, opname: str) -> None:
    """A real (or integer) operand; a comparison is an error too."""
    real_operand(t, i, opname)
    if t.dtype == BOOL:
        raise ShapeError(f"`{opname}` needs real numbers, got a comparison ({t})", i,
                         "a comparison gives a mask for `where`; pass the values themselves")


def _axis(args, types, opname: str) -> int | None:
    """The axis argument (a static integer), checked against the rank; None when absent."""
    if len(types) < 2:
        return None
    a = args[1]
    if a is None or not isinstance(a.static, int) or isinstance(a.static, bool):
        raise ShapeError(f"the axis of `{opname}` must be an integer literal", 1,
                         f"write the axis as a number: `{opname}(v, axis=1)`")
    t = types[0]
    if not -t.rank <= a.static < t.rank:
        raise ShapeError(f"axis {a.static} is out of range for {t} (rank {t.rank})", 1,
                         f"the axes of a rank-{t.rank} value are 0 to {t.rank - 1} (negative axes count from the end)"
                         if t.rank else "a scalar has no axes")
    return a.static


# ---------------------------------------------------------------- softmax, logsoftmax: same shape
def _normalise_infer(opname: str):
    def infer(types, args):
        t = types[0]
        real(t, 0, opname)
        axis = _axis(args, types, opname)
        if axis is None and t.rank != 1:
            if t.rank == 0:
                raise ShapeError(f"`{opname}` needs a vector or an array, got the scalar {t}", 0)
            raise ShapeError(f"`{opname}` of {t} needs an axis", None,
                             f"name the axis that sums to one: `{opname}(v, 1)` normalises each row, "
                             f"`{opname}(v, 0)` each column")
        return t.with_(dtype=REAL)
    return infer


def _normalise_emit(fn: str):
    def emit(args, out):
        a = args[0]
        axis = args[1].static if len(args) > 1 else -1
        return Emitted(f"torch.{fn}({a.code}, dim={axis_code(a.type, axis)})")
    return emit


def _ref_logsumexp(v, axis=None):
    np = numpy()
    v = np.asarray(v, dtype=float)
    if axis is None:
        v, axis = v.reshape(-1), 0
    top = np.max(v, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)  # a slice of -inf only: exp(-inf - 0) = 0, log 0 = -inf
    with np.errstate(divide="ignore"):
        return np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(v - top), axis=axis))


def _ref_logsoftmax(v, axis=-1):
    np = numpy()
    return np.asarray(v, dtype=float) - np.expand_dims(_ref_logsumexp(v, axis), axis)


def _ref_softmax(v, axis=-1):
    return numpy().exp(_ref_logsoftmax(v, axis))


register(Operator("softmax", 1, 2, _normalise_infer("softmax"), _normalise_emit("softmax"),
                  lambda a: f"\\operatorname{{softmax}}_{{{a[1] if len(a) > 1 else ''}}}\\left({a[0]}\\right)",
                  "exp(v) normalised to sum to one along the axis (each slice shifted by its maximum: exact for "
                  "logits far apart; −inf entries get probability 0)", kwargs=("axis",), static_args=(1,),
                  reference=_ref_softmax, category="probability", usage=("softmax(v, axis)", "softmax(v)"),
                  shape="same shape; the axis (integer literal, keyword `axis=` allowed) may be omitted for a "
                        "vector", dtype="real only", example="softmax(B, 1)", result="real[m, m]"))
register(Operator("logsoftmax", 1, 2, _normalise_infer("logsoftmax"), _normalise_emit("log_softmax"),
                  lambda a: f"\\log\\operatorname{{softmax}}_{{{a[1] if len(a) > 1 else ''}}}\\left({a[0]}\\right)",
                  "v − logsumexp(v) along the axis: the log of `softmax`, computed without forming it (−inf stays "
                  "−inf)", kwargs=("axis",), static_args=(1,), reference=_ref_logsoftmax, category="probability",
                  usage=("logsoftmax(v, axis)", "logsoftmax(v)"), shape="as `softmax`", dtype="real only",
                  example="logsoftmax(x)", result="real[m]"))


# ---------------------------------------------------------------- logsumexp, max, min along an axis: remove it
def _reduce_infer(opname: str, need_axis: bool):
    def infer(types, args):
        t = types[0]
        real(t, 0, opname)
        axis = _axis(args, types, opname)
        if axis is None:
            if need_axis:
                raise ShapeError(f"`{opname}` needs an axis", None, f"`{opname}(v)` reduces all entries")
            return Type(REAL, (), t.batched)
        shape = list(t.shape)
        del shape[axis]
        return Type(REAL, tuple(shape), t.batched)
    return infer


def _logsumexp_emit(args, out):
    a = args[0]
    if len(args) > 1:
        return Emitted(f"torch.logsumexp({a.code}, dim={axis_code(a.type, args[1].static)})")
    if a.type.rank == 0:
        return Emitted(a.code, a.prec)
    axes = all_axes(a.type) or "(" + ", ".join(str(i) for i in range(a.type.rank)) + ",)"
    return Emitted(f"torch.logsumexp({a.code}, dim={axes})")


register(Operator("logsumexp", 1, 2, _reduce_infer("logsumexp", need_axis=False), _logsumexp_emit,
                  lambda a: f"\\operatorname{{lse}}_{{{a[1] if len(a) > 1 else ''}}}\\left({a[0]}\\right)",
                  "log Σ exp(v) along the axis, or over all entries of each sample (shifted by the maximum: exact "
                  "for logits far apart; a slice of −inf gives −inf)", kwargs=("axis",), static_args=(1,),
                  reference=_ref_logsumexp, category="probability", usage=("logsumexp(v, axis)", "logsumexp(v)"),
                  shape="removes the axis (integer literal, keyword `axis=` allowed); without an axis: all entries "
                        "of a sample → scalar", dtype="real only", example="logsumexp(B, axis=0)", result="real[m]"))


def _extremum(name: str, method: str, example: str):
    register(Operator(f"{name}_axis", 1, 2, _reduce_infer(name, need_axis=True),
                      lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.{method}(dim={axis_code(a[0].type, a[1].static)})"),
                      lambda a: f"\\{name}_{{{a[1] if len(a) > 1 else ''}}}\\left({a[0]}\\right)",
                      f"{name}imum along one axis: `{name}(v, axis=k)` (the keyword form of `{name}`)",
                      kwargs=("axis",), static_args=(1,),
                      reference=lambda v, axis: getattr(numpy(), method)(v, axis=axis), category="reduction",
                      usage=f"{name}(v, axis=k)", shape="removes the axis", dtype="real only",
                      gradient="yes (shared equally by tied extrema)", example=example, result="real[m]",
                      extra={"keyword_form_of": name}))


_extremum("max", "amax", "max(B, axis=1)")
_extremum("min", "amin", "min(B, axis=0)")
