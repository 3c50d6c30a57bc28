"""Reductions over each sample or along one axis (`sum`, `norm`, `max`, `dot`, ...) and selection
(`onehot`, `where`; `argmax`/`argmin` are in indexing.py)."""

from __future__ import annotations

from ..ast import DimExpr
from ..types import BOOL, COMPLEX, INT, REAL, ShapeError, Type, promote, shape_str
from .core import (
    P_ATOM,
    P_MUL,
    EmitContext,
    Emitted,
    Operator,
    all_axes,
    at_least_real,
    axis_code,
    elementwise,
    numeric,
    numpy,
    real,
    register,
    tensor,
    wrap,
)


def _axis_arg(args, i):
    a = args[i] if i < len(args) else None
    if a is None:
        return None
    if not isinstance(a.static, int) or isinstance(a.static, bool):
        raise ShapeError("the axis must be an integer literal", i)
    return a.static


def _reduce_infer(real_out=False):
    def infer(types, args):
        t = types[0]
        numeric(t, 0)
        axis = _axis_arg(args, 1) if len(types) > 1 else None
        dtype = REAL if real_out else at_least_real(t.dtype)
        if axis is None:
            return Type(dtype, (), t.batched)
        if not -t.rank <= axis < t.rank:
            raise ShapeError(f"axis {axis} is out of range for {t} (rank {t.rank})", 1)
        shape = list(t.shape)
        del shape[axis]
        return Type(dtype, tuple(shape), t.batched)
    return infer


def _reduce_emit(method: str):
    def emit(args, out):
        a = args[0]
        if len(args) > 1:
            return Emitted(f"{wrap(a, P_ATOM)}.{method}(dim={axis_code(a.type, args[1].static)})")
        if a.type.rank == 0:
            return Emitted(a.code, a.prec)
        axes = all_axes(a.type)
        return Emitted(f"{wrap(a, P_ATOM)}.{method}()" if axes is None else f"{wrap(a, P_ATOM)}.{method}(dim={axes})")
    return emit


register(Operator("sum", 1, 2, _reduce_infer(), _reduce_emit("sum"), lambda a: f"\\sum {a[0]}",
                  "sum of all entries of each sample, or along one axis: `sum(X, 0)`", static_args=(1,), kwargs=("axis",),
                  reference=lambda v, axis=None: numpy().sum(v, axis=axis), category="reduction",
                  usage=("sum(v)", "sum(v, axis)"), dtype="of v (int → real)", example="sum(d, 0)",
                  shape="all entries of a sample → scalar; or removes one axis (integer literal, negative counts "
                        "from the end)", result="real[3, 3]"))
register(Operator("mean", 1, 2, _reduce_infer(), _reduce_emit("mean"), lambda a: f"\\operatorname{{mean}} {a[0]}",
                  "mean of all entries of each sample, or along one axis", static_args=(1,), kwargs=("axis",),
                  reference=lambda v, axis=None: numpy().mean(v, axis=axis), category="reduction",
                  usage=("mean(v)", "mean(v, axis)"), shape="as `sum`", dtype="of v (int → real)",
                  example="mean(x)", result="real"))


def _norm_emit(args, out):
    a = args[0]
    if len(args) > 1:
        return Emitted(f"torch.linalg.vector_norm({a.code}, dim={axis_code(a.type, args[1].static)})")
    if a.type.rank == 0:
        return Emitted(f"torch.abs({tensor(a)})")
    axes = all_axes(a.type)
    if axes is None:
        return Emitted(f"torch.linalg.vector_norm({a.code})")
    return Emitted(f"torch.linalg.vector_norm({a.code}, dim={axes})")


def _ref_norm(v, axis=None):
    np = numpy()
    return np.linalg.norm(v, axis=axis) if axis is not None else np.linalg.norm(v.reshape(-1))


register(Operator("norm", 1, 2, _reduce_infer(real_out=True), _norm_emit, lambda a: f"\\left\\|{a[0]}\\right\\|_2",
                  "Euclidean (Frobenius) norm of each sample, or along one axis: `norm(X, 1)` (row norms)",
                  static_args=(1,), kwargs=("axis",), reference=_ref_norm, category="reduction", usage=("norm(v)", "norm(v, axis)"),
                  shape="as `sum` (`norm(X, 1)`: row norms)", dtype="real result", example="norm(A @ x - y)",
                  result="real"))


def _nnz_emit(args, out):
    a = args[0]
    axes = all_axes(a.type)
    base = f"({wrap(a, P_ATOM)} != 0).to({EmitContext.dtype})"
    if a.type.rank == 0:
        return Emitted(base)
    return Emitted(f"{base}.sum()" if axes is None else f"{base}.sum(dim={axes})")


register(Operator("nnz", 1, 1, _reduce_infer(real_out=True), _nnz_emit, lambda a: f"\\|{a[0]}\\|_0",
                  "number of nonzero entries of each sample (‖v‖₀), as a real number; no gradient",
                  reference=lambda v: float(numpy().count_nonzero(v)), differentiable=False, category="reduction",
                  usage="nnz(v)", shape="→ scalar per sample", dtype="real result", example="nnz(x) / m",
                  result="real"))


def _minmax(name: str, fn: str, red: str, *, shape: str, example: str, result: str):
    def infer(types, args):
        for i, t in enumerate(types):
            real(t, i, name)
        if len(types) == 2 and types[0].rank >= 2 and args[1] is not None and type(args[1].static) is int \
                and args[1].py:
            k = args[1].static  # `max(X, 0)` reads like `sum(X, 0)` but is elementwise: say which one is meant
            raise ShapeError(f"`{name}(v, {k})` of {types[0]} is the elementwise {name}imum with the number {k}, "
                             f"not the {name}imum along axis {k}", 1,
                             f"for the {name}imum along an axis write `{name}(v, axis={k})`; for the elementwise "
                             f"{name}imum write the number as a real: `{name}(v, {k}.0)`")
        if len(types) == 1:
            return Type(REAL, (), types[0].batched)
        dtypes = [t.dtype for t in types]
        return elementwise(*types).with_(dtype=promote(REAL, *dtypes) if REAL in dtypes else INT)

    def emit(args, out):
        if len(args) == 1:  # over all entries of each sample
            a = args[0]
            if a.type.rank == 0:
                return Emitted(a.code, a.prec)
            axes = all_axes(a.type)
            return Emitted(f"{wrap(a, P_ATOM)}.{red}()" if axes is None else f"{wrap(a, P_ATOM)}.{red}(dim={axes})")
        a, b = args
        if a.py and b.py:
            return Emitted(f"{name}({a.code}, {b.code})")
        if a.py or b.py:
            t, s = (b, a) if a.py else (a, b)
            return Emitted(f"torch.clamp_{'min' if name == 'max' else 'max'}({t.code}, {s.code})")
        return Emitted(f"torch.{fn}({a.code}, {b.code})")

    register(Operator(name, 1, 2, infer, emit, lambda a: f"\\{name}\\left({', '.join(a)}\\right)",
                      f"`{name}(a, b)`: elementwise {name}imum; `{name}(v)`: {name}imum over each sample; "
                      f"`{name}(v, axis=k)`: along one axis (the keyword is required: `{name}(X, 0)` of a matrix is "
                      "an error)",
                      reference=lambda *v: getattr(numpy(), fn)(*v) if len(v) == 2 else getattr(numpy(), red)(v[0]),
                      category="reduction", usage=(f"{name}(v)", f"{name}(a, b)", f"{name}(v, axis=k)"), shape=shape,
                      dtype="real only", example=example, result=result, extra={"keyword_form": f"{name}_axis"}))


_minmax("max", "maximum", "amax", shape="one argument: → scalar per sample; two: elementwise, broadcasting; "
                                         "`axis=k`: removes axis k",
        example="max(x, 0)", result="real[m]")
_minmax("min", "minimum", "amin", shape="as `max`", example="min(x)", result="real")


def _dot_infer(types, args):
    a, b = types
    if a.shape != b.shape:
        raise ShapeError(f"`dot` needs equal shapes, got {shape_str(a.shape)} and {shape_str(b.shape)}", 1)
    return Type(promote(a.dtype, b.dtype), (), a.batched or b.batched)


def _dot_emit(args, out):
    a, b = args
    left = f"torch.conj({a.code})" if a.type.dtype == COMPLEX else wrap(a, P_MUL)
    product = f"{left} * {wrap(b, P_MUL + 1)}"
    if a.type.rank == 0:
        return Emitted(product, P_MUL)
    axes = all_axes(Type(out.dtype, a.type.shape, out.batched))
    return Emitted(f"({product}).sum()" if axes is None else f"({product}).sum(dim={axes})")


register(Operator("dot", 2, 2, _dot_infer, _dot_emit, lambda a: f"\\langle {a[0]}, {a[1]} \\rangle",
                  "inner product ⟨a, b⟩ = Σ conj(a)·b of each sample", category="reduction",
                  reference=lambda a, b: numpy().vdot(a, b), usage="dot(a, b)",
                  shape="equal shapes → scalar; Σ conj(a)·b", dtype="promoted", example="dot(z, z)",
                  result="complex"))


# ---------------------------------------------------------------- selection (no gradient through the choice)
def _onehot_infer(types, args):
    if types[0].dtype != INT or types[0].rank != 0:
        raise ShapeError(f"`onehot` needs an integer index, got {types[0]}", 0)
    if args[1] is None or not isinstance(args[1].static, DimExpr):
        raise ShapeError("the length must be a dimension", 1)
    return Type(REAL, (args[1].static,), types[0].batched)


register(Operator("onehot", 2, 2, _onehot_infer,
                  lambda a, o: Emitted(f"rt.onehot({a[0].code}, {a[1].code}, dtype={EmitContext.dtype}, "
                                       f"device={EmitContext.device})"),
                  lambda a: f"e_{{{a[0]}}}", "unit vector e_k of the given length (per sample for a batched k)",
                  reference=lambda k, n: numpy().eye(n)[k], differentiable=False, category="selection",
                  runtime="onehot", extra={"dim_args": (1,)}, lift_batched=False, usage="onehot(i, n)",
                  shape="int scalar i, dim n → [n]", dtype="real", gradient="none (a constant)",
                  example="onehot(argmax(abs(x)), m)", result="real[m]"))


def _where_infer(types, args):
    c, a, b = types
    if c.dtype != BOOL:
        raise ShapeError(f"the condition of `where` must be a comparison, got {c}", 0)
    return elementwise(c.with_(dtype=INT), a, b).with_(dtype=promote(a.dtype, b.dtype, REAL))


def _where_emit(args, out):
    c, a, b = args
    # a Python bool (e.g. `layer == 0`) becomes a boolean tensor
    cond = f"torch.tensor({c.code}, device={EmitContext.device})" if c.py else c.code
    return Emitted(f"torch.where({cond}, {tensor(a)}, {tensor(b)})")


register(Operator("where", 3, 3, _where_infer, _where_emit,
                  lambda a: f"\\begin{{cases}}{a[1]} & {a[0]}\\\\ {a[2]} & \\text{{otherwise}}\\end{{cases}}",
                  "elementwise choice: `where(cond, a, b)`", category="selection",
                  reference=lambda c, a, b: numpy().where(c, a, b), usage="where(c, a, b)",
                  shape="c a comparison; elementwise, broadcasting", dtype="promoted, at least real",
                  gradient="yes (through the chosen branch)", example="where(x > 0, x, 0)", result="real[m]"))
