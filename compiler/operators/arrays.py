"""Array operators new users reach for: pairwise squared distances (`sqdist`), diagonals (`diag`), `trace`,
the forward difference along an axis (`diff`, numpy's convention: one entry shorter) and its exact
adjoint (`diff_adj`), and the circular shift along an axis (`shift`, torch.roll; its adjoint is the
opposite shift).  Linear ones are tested for adjointness (tests/test_array_ops.py)."""

from __future__ import annotations

from ..ast import DimExpr
from ..types import REAL, ShapeError, Type, shape_str
from .core import P_ATOM, Emitted, Operator, axis_code, numeric, numpy, real, register, wrap


def _axis(types, args, opname: str, position: int) -> int:
    """The axis argument at `position` (a static integer, checked against the rank), or the only axis of a
    vector when it is omitted."""
    t = types[0]
    if len(types) <= position:
        if t.rank != 1:
            raise ShapeError(f"`{opname}` of {t} needs an axis", None,
                             f"name the axis: `{opname}(..., axis=0)` works down the columns, `axis=1` along the rows")
        return 0
    a = args[position]
    if a is None or not isinstance(a.static, int) or isinstance(a.static, bool):
        raise ShapeError(f"the axis of `{opname}` must be an integer literal", position)
    if not -t.rank <= a.static < t.rank:
        raise ShapeError(f"axis {a.static} is out of range for {t} (rank {t.rank})", position,
                         f"the axes of a rank-{t.rank} value are 0 to {t.rank - 1} (negative axes count from the end)"
                         if t.rank else "a scalar has no axes")
    return a.static % t.rank


# ---------------------------------------------------------------- sqdist
def _sqdist_infer(types, args):
    x, y = types
    for i, t in enumerate(types):
        real(t, i, "sqdist")
        if t.rank not in (1, 2):
            raise ShapeError(f"`sqdist` takes point sets: a matrix [points, features] or a vector of scalars, got {t}",
                             i, "one point per row: `sqdist(X, Y)` with X [n, d], Y [m, d] gives [n, m]")
    if x.rank != y.rank or (x.rank == 2 and x.shape[1] != y.shape[1]):
        raise ShapeError(f"`sqdist` needs points of the same dimension, got {shape_str(x.shape)} and "
                         f"{shape_str(y.shape)}", 1, "X [n, d] and Y [m, d]: one point per row, the same d")
    return Type(REAL, (x.shape[0], y.shape[0]), x.batched or y.batched)


def _sqdist_emit(args, out):
    x, y = args
    if x.type.rank == 1:  # scalar points: a feature axis of size 1
        return Emitted(f"rt.sqdist({wrap(x, P_ATOM)}[..., None], {wrap(y, P_ATOM)}[..., None])")
    return Emitted(f"rt.sqdist({x.code}, {y.code})")


def _ref_sqdist(x, y):
    np = numpy()
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim == 1:
        x, y = x[:, None], y[:, None]
    return np.array([[float(np.sum((xi - yj) ** 2)) for yj in y] for xi in x])


register(Operator("sqdist", 2, 2, _sqdist_infer, _sqdist_emit,
                  lambda a: f"\\left\\|{a[0]}_i - {a[1]}_j\\right\\|^2",
                  "pairwise squared distances ‖x_i − y_j‖² of the rows of X and Y (‖x‖² + ‖y‖² − 2xᵀy, one matrix "
                  "product, clamped at 0: absolute error ~1e-16·‖x‖² for nearly equal points)",
                  reference=_ref_sqdist, category="linear algebra", runtime="sqdist", lift_batched=False,
                  usage="sqdist(X, Y)", shape="X [n, d], Y [m, d] → [n, m] (vectors [n], [m]: scalar points)",
                  dtype="real only", example="sqdist(outer(x, x), B)", result="real[m, m]"))


# ---------------------------------------------------------------- diag, trace
def _diag_infer(types, args):
    (t,) = types
    numeric(t, 0)
    if t.rank == 1:
        return t.with_(shape=(t.shape[0], t.shape[0]))
    if t.rank >= 2 and t.shape[-1] == t.shape[-2]:
        return t.with_(shape=t.shape[:-1])
    raise ShapeError(f"`diag` takes a vector (→ a diagonal matrix) or square matrices (→ their diagonals), got {t}", 0,
                     "a non-square matrix has no main diagonal of a declared length")


def _diag_emit(args, out):
    (v,) = args
    if v.type.rank == 1:
        return Emitted(f"torch.diag_embed({v.code})")
    return Emitted(f"torch.diagonal({v.code}, dim1=-2, dim2=-1)")


def _ref_diag(v):
    np = numpy()
    v = np.asarray(v)
    return np.diag(v) if v.ndim == 1 else np.diagonal(v, axis1=-2, axis2=-1)


register(Operator("diag", 1, 1, _diag_infer, _diag_emit, lambda a: f"\\operatorname{{diag}}\\left({a[0]}\\right)",
                  "a vector → the diagonal matrix with it on the diagonal; a square matrix → its diagonal (numpy's "
                  "`diag`); the two are each other's adjoint", reference=_ref_diag, category="linear algebra",
                  lift_batched=False, usage="diag(v)", shape="[n] → [n, n]; [..., n, n] → [..., n]", dtype="same",
                  example="diag(x) @ B", result="real[m, m]"))


def _trace_infer(types, args):
    (t,) = types
    numeric(t, 0)
    if t.rank < 2 or t.shape[-1] != t.shape[-2]:
        raise ShapeError(f"`trace` needs square matrices, got {t}", 0, "the trace sums the diagonal of [n, n]")
    return t.with_(shape=t.shape[:-2])


register(Operator("trace", 1, 1, _trace_infer,
                  lambda a, o: Emitted(f"torch.diagonal({a[0].code}, dim1=-2, dim2=-1).sum(-1)"),
                  lambda a: f"\\operatorname{{tr}}\\left({a[0]}\\right)", "sum of the diagonal of a square matrix",
                  reference=lambda M: numpy().trace(M, axis1=-2, axis2=-1), category="linear algebra",
                  lift_batched=False, usage="trace(M)", shape="[..., n, n] → [...]", dtype="same",
                  example="trace(B.T @ B)", result="real"))


# ---------------------------------------------------------------- differences and shifts along an axis
def _resize(t: Type, axis: int, delta: int) -> Type:
    shape = list(t.shape)
    shape[axis] = DimExpr.of(shape[axis]) + DimExpr.of(delta)
    return t.with_(shape=tuple(shape))


def _diff_infer(types, args):
    t = types[0]
    numeric(t, 0)
    axis = _axis(types, args, "diff", 1)
    size = DimExpr.of(t.shape[axis])
    if size.is_int and size.const < 2:
        raise ShapeError(f"`diff` along an axis of size {size} has no differences", 0)
    return _resize(t.with_(dtype=REAL if t.dtype == "int" else t.dtype), axis, -1)


def _diff_adj_infer(types, args):
    t = types[0]
    numeric(t, 0)
    axis = _axis(types, args, "diff_adj", 1)
    return _resize(t.with_(dtype=REAL if t.dtype == "int" else t.dtype), axis, 1)


def _axis_of(args) -> int:
    a = args[0]
    return axis_code(a.type, args[1].static % a.type.rank if len(args) > 1 else 0)


def _ref_diff_adj(w, axis=0):
    np = numpy()
    w = np.moveaxis(np.asarray(w), axis, -1)
    out = np.zeros(w.shape[:-1] + (w.shape[-1] + 1,), dtype=w.dtype)
    for i in range(w.shape[-1]):  # D^T w: column i of D is e_{i+1} - e_i
        out[..., i + 1] += w[..., i]
        out[..., i] -= w[..., i]
    return np.moveaxis(out, -1, axis)


register(Operator("diff", 1, 2, _diff_infer,
                  lambda a, o: Emitted(f"torch.diff({a[0].code}, dim={_axis_of(a)})"),
                  lambda a: f"\\Delta_{{{a[1] if len(a) > 1 else ''}}} {a[0]}",
                  "forward difference along an axis, v[i+1] − v[i] (numpy's `diff`: one entry shorter; the "
                  "exact adjoint is `diff_adj`)", kwargs=("axis",), static_args=(1,),
                  reference=lambda v, axis=0: numpy().diff(v, axis=axis), category="linear algebra",
                  lift_batched=False, usage=("diff(v, axis)", "diff(v)"),
                  shape="the axis of size s becomes s − 1 (axis optional for a vector)", dtype="of v",
                  example="diff(B, axis=1)", result="real[m, m - 1]"))
register(Operator("diff_adj", 1, 2, _diff_adj_infer,
                  lambda a, o: Emitted(f"rt.diff_adj({a[0].code}, {_axis_of(a)})"),
                  lambda a: f"\\Delta_{{{a[1] if len(a) > 1 else ''}}}^{{T}} {a[0]}",
                  "exact adjoint of `diff`: (Dᵀw)_i = w[i−1] − w[i] with w[−1] = w[s−1] = 0 (a negated backward "
                  "difference, zero boundary)", kwargs=("axis",), static_args=(1,), reference=_ref_diff_adj,
                  category="linear algebra", runtime="diff_adj", lift_batched=False,
                  usage=("diff_adj(w, axis)", "diff_adj(w)"), shape="the axis of size s becomes s + 1",
                  dtype="of w", example="diff_adj(diff(x))", result="real[m]"))


def _shift_infer(types, args):
    t = types[0]
    numeric(t, 0)
    if args[1] is None or type(args[1].static) is not int:
        raise ShapeError("the offset of `shift` must be an integer literal", 1, "e.g. `shift(v, 1)` or `shift(v, -1)`")
    _axis(types, args, "shift", 2)
    return t


def _shift_emit(args, out):
    a = args[0]
    axis = args[2].static % a.type.rank if len(args) > 2 else 0
    return Emitted(f"torch.roll({a.code}, {args[1].static}, dims={axis_code(a.type, axis)})")


register(Operator("shift", 2, 3, _shift_infer, _shift_emit,
                  lambda a: f"\\operatorname{{shift}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "circular shift along an axis: entry i of the result is v[(i − k) mod s] (torch.roll); "
                  "shift(v, −k) is its inverse and its adjoint", kwargs=("axis",), static_args=(1, 2),
                  reference=lambda v, k, axis=0: numpy().roll(v, k, axis=axis), category="linear algebra",
                  lift_batched=False, usage=("shift(v, k, axis)", "shift(v, k)"),
                  shape="same shape; k an integer literal (negative: the other way); axis optional for a vector",
                  dtype="of v", example="shift(x, 1) - x", result="real[m]"))


# ---------------------------------------------------------------- slices (syntax: `x[1:]`, `X[:, 1:]`, `X[0, 1:]`)
def _slice_infer(types, args):
    """slice_axis(v, axis, start[, stop]): the checker (check/slicing.py) builds it from `v[start:stop]`; a bound
    is an integer (negative: from the end) or a dim expression (`W[:, m:]`)."""
    t = types[0]
    axis, start = args[1].static, args[2].static
    stop = args[3].static if len(args) > 3 else None
    size = DimExpr.of(t.shape[axis])
    if size.is_int and isinstance(start, int) and (stop is None or isinstance(stop, int)):
        first, last, _ = slice(start, stop).indices(size.const)
        if last <= first:
            raise ShapeError(f"the slice {_bound_text(start, 0)}:{_bound_text(stop, None)} of an axis of size "
                             f"{size} is empty", 2)
        length = DimExpr.of(last - first)
    else:
        def position(b):
            return DimExpr.of(b) if not isinstance(b, int) or b >= 0 else size + DimExpr.of(b)
        length = (size if stop is None else position(stop)) + DimExpr.of(-1) * position(start)
        text = f"{_bound_text(start, 0)}:{_bound_text(stop, None)}"
        if length.is_int and length.const <= 0:
            raise ShapeError(f"the slice {text} of an axis of size {size} is empty", 2)
        if not length.is_int and any(c < 0 for _, c in length.terms):
            raise ShapeError(f"the slice {text} of an axis of size {size} mixes a bound from the end with one from "
                             "the start", 2, "write both bounds from the start or both from the end")
    shape = list(t.shape)
    shape[axis] = length
    return t.with_(shape=tuple(shape))


def _bound_text(b, absent) -> str:
    if b is None or b == absent:
        return ""
    return b.python() if isinstance(b, DimExpr) and not b.is_int else str(DimExpr.of(b).const)


def _slice_emit(args, out):
    a = args[0]
    start, stop = args[2].static, (args[3].static if len(args) > 3 else None)
    parts = [":"] * axis_code(a.type, args[1].static) + [f"{_bound_text(start, 0)}:{_bound_text(stop, None)}"]
    return Emitted(f"{wrap(a, P_ATOM)}[{', '.join(parts)}]")


register(Operator("slice_axis", 3, 4, _slice_infer, _slice_emit,
                  lambda a: f"{a[0]}_{{{a[2]}:{a[3] if len(a) > 3 else ''}}}",
                  "the entries start..stop−1 along an axis (Python's slice; negative bounds count from the end)",
                  static_args=(1, 2, 3), reference=lambda v, axis, start, stop=None: numpy().take(
                      v, range(*slice(start, stop).indices(numpy().shape(v)[axis])), axis=axis),
                  category="arithmetic", lift_batched=False, usage=("x[a:b]", "x[a:]", "x[:b]", "X[:, a:b]"),
                  shape="the axis of size s becomes b − a (`x[1:]`, `x[:-1]`: s − 1); bounds are integer literals or "
                        "dims (`W[m:]`)",
                  dtype="same", example="B[1:] - B[:-1]", result="real[m - 1, m]", extra={"syntax": True}))


def _pick_infer(types, args):
    t, i = types[0], types[1]
    if i.dtype != "int" or i.rank != 0 or i.batched:
        raise ShapeError(f"an index must be an integer, got {i}", 1,
                         "index with an integer literal, an `int` hyperparameter or `layer`")
    axis = args[2].static
    return t.with_(shape=t.shape[:axis] + t.shape[axis + 1:])


def _pick_emit(args, out):
    a, i = args[0], args[1]
    parts = [":"] * axis_code(a.type, args[2].static) + [i.code]
    return Emitted(f"{wrap(a, P_ATOM)}[{', '.join(parts)}]")


register(Operator("pick", 3, 3, _pick_infer, _pick_emit, lambda a: f"{a[0]}_{{{a[1]}}}",
                  "the entry i along an axis of a multi-axis subscript (`X[:, 0]` is column 0, `X[0, 1:]` part of "
                  "row 0)", static_args=(2,), reference=lambda v, i, axis: numpy().take(v, i, axis=axis),
                  category="arithmetic", lift_batched=False, usage=("X[:, i]", "X[i, j]"),
                  shape="removes the axis; i an int scalar (literal, `int` hyper, `layer`)", dtype="same",
                  example="B[:, 0]", result="real[m]", extra={"syntax": True}))
