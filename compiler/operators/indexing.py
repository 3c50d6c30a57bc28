"""Integer index values: integer arithmetic (`i % n`, `i // n`), the cast `as_real`, selection of
indices (`argmax`, `argmin`, `topk_indices`), gather `take` and its adjoint scatter-add
`segment_sum`.

Integer values carry no gradient and never mix with real values silently: an integer tensor in
real arithmetic is a located error whose hint is `as_real(i)` (the checker enforces it, see
compiler/check/indexing.py).  Python integers (literals, `int` hyperparameters, dims, `layer`,
loop indices) are not integer tensors and combine with reals as before.
"""

from __future__ import annotations

from ..ast import DimExpr
from ..types import BOOL, INT, REAL, ShapeError, Type, shape_str
from .core import (
    P_ATOM,
    P_MUL,
    EmitContext,
    Emitted,
    Operator,
    axis_code,
    elementwise,
    numeric,
    numpy,
    real,
    register,
    static_dim,
    wrap,
)


def integer(t: Type, i: int, what: str) -> None:
    if t.dtype not in (INT, BOOL):
        raise ShapeError(f"{what} needs integers, got {t}", i,
                         "integer values are int data, inputs and states, `argmax`/`argmin`/`topk_indices`, "
                         "`int` hyperparameters, dims, `layer` and loop indices")


# ---------------------------------------------------------------- integer arithmetic (syntax)
def _int_arith(name: str, symbol: str, tex: str, doc: str, ref, example: str):
    def infer(types, args):
        for i, t in enumerate(types):
            integer(t, i, f"`{symbol}`")
        return elementwise(*types).with_(dtype=INT)

    def emit(args, out):
        a, b = args
        return Emitted(f"{wrap(a, P_MUL)} {symbol} {wrap(b, P_MUL + 1)}", P_MUL)

    register(Operator(name, 2, 2, infer, emit, lambda a: f"{a[0]} {tex} {a[1]}", doc, reference=ref,
                      differentiable=False, category="arithmetic", usage=f"a {symbol} b",
                      shape="elementwise, broadcasting; integer operands", dtype="int",
                      gradient="none (integers)", example=example, result="int"))


_int_arith("mod", "%", "\\bmod", "integer remainder, the sign of the divisor (Python's `%`): ring-buffer slots",
           lambda a, b: a % b, "(k + 5) % k")
_int_arith("floordiv", "//", "\\,\\mathrm{div}\\,", "integer division rounding down (Python's `//`)",
           lambda a, b: a // b, "(k + 5) // 2")


# ---------------------------------------------------------------- the cast
def _as_real_infer(types, args):
    t = types[0]
    integer(t, 0, "`as_real`")
    return t.with_(dtype=REAL)


def _as_real_emit(args, out):
    a = args[0]
    if a.py:
        return Emitted(f"torch.tensor({a.code}, dtype={EmitContext.dtype}, device={EmitContext.device})")
    return Emitted(f"{wrap(a, P_ATOM)}.to({EmitContext.dtype})")


register(Operator("as_real", 1, 1, _as_real_infer, _as_real_emit, lambda a: a[0],
                  "an integer value as a real one (integers never become reals silently)",
                  reference=lambda v: numpy().asarray(v, dtype=float), differentiable=False, category="selection",
                  usage="as_real(i)", shape="same", dtype="int → real", gradient="none (a constant)",
                  example="as_real(argmax(B, axis=1))", result="real[m]"))


# ---------------------------------------------------------------- argmax / argmin / topk_indices
def _axis(args, i: int, opname: str, t: Type) -> int | None:
    a = args[i] if i < len(args) else None
    if a is None:
        return None
    if not isinstance(a.static, int) or isinstance(a.static, bool):
        raise ShapeError(f"the axis of `{opname}` must be an integer literal", i, f"e.g. `{opname}(v, axis=1)`")
    if not -t.rank <= a.static < t.rank:
        raise ShapeError(f"axis {a.static} is out of range for {t} (rank {t.rank})", i,
                         f"axes count from 0 to {t.rank - 1} (negative ones from the end)")
    return a.static % t.rank


def _arg_select(name: str, fn: str):
    def infer(types, args):
        t = types[0]
        real(t, 0, name)
        if t.dtype == INT:
            raise ShapeError(f"`{name}` needs real values, got {t}", 0, "take `as_real(...)` first")
        axis = _axis(args, 1, name, t) if len(types) > 1 else None
        if axis is None:
            if t.rank != 1:
                raise ShapeError(f"`{name}` needs a vector per sample, got {t}", 0,
                                 f"for a matrix give the axis it runs over: `{name}(v, axis=1)`")
            return Type(INT, (), t.batched)
        return Type(INT, t.shape[:axis] + t.shape[axis + 1:], t.batched)

    def emit(args, out):
        a = args[0]
        dim = -1 if len(args) == 1 else axis_code(a.type, args[1].static % a.type.rank)
        return Emitted(f"{wrap(a, P_ATOM)}.{fn}(dim={dim})")

    np_fn = "argmax" if name == "argmax" else "argmin"
    register(Operator(name, 1, 2, infer, emit, lambda a: f"\\arg\\{name[3:]} {a[0]}",
                      f"index of the {'largest' if name == 'argmax' else 'smallest'} entry of each sample, or along "
                      f"one axis: `{name}(V, axis=1)` (first on ties)",
                      kwargs=("axis",), static_args=(1,),
                      reference=lambda v, axis=None: getattr(numpy(), np_fn)(v, axis=-1 if axis is None else axis),
                      differentiable=False, category="selection", usage=(f"{name}(v)", f"{name}(v, axis=k)"),
                      shape="vector per sample → int scalar; with `axis=k`: removes axis k", dtype="int",
                      gradient="none (an index)",
                      example=f"{name}(abs(x))" if name == "argmax" else "argmin(B, axis=1)",
                      result="int" if name == "argmax" else "int[m]"))


_arg_select("argmax", "argmax")
_arg_select("argmin", "argmin")


def _topk_infer(types, args):
    t, _k = types[0], types[1]
    real(t, 0, "topk_indices")
    k = static_dim(args, 1, "topk_indices", "count")
    axis = _axis(args, 2, "topk_indices", t) if len(types) > 2 else None
    if axis is None:
        if t.rank != 1:
            raise ShapeError(f"`topk_indices` of {t} needs the axis", 0, "e.g. `topk_indices(V, 3, axis=1)`")
        axis = 0
    size = t.shape[axis]
    if k.is_int and size.is_int and k.const > size.const:
        raise ShapeError(f"`topk_indices` asks for {k} of {size} entries", 1)
    shape = list(t.shape)
    shape[axis] = k
    return Type(INT, tuple(shape), t.batched)


def _topk_emit(args, out):
    v, k = args[0], args[1]
    axis = 0 if len(args) < 3 else args[2].static % v.type.rank
    return Emitted(f"torch.topk({v.code}, {k.code}, dim={axis_code(v.type, axis)}).indices")


def _topk_ref(v, k, axis=0):
    np = numpy()
    order = np.argsort(-v, axis=axis, kind="stable")
    return np.take(order, np.arange(k), axis=axis)


register(Operator("topk_indices", 2, 3, _topk_infer, _topk_emit, lambda a: f"\\operatorname{{top}}_{{{a[1]}}} {a[0]}",
                  "indices of the k largest entries of each sample, largest first (along `axis=` for arrays)",
                  kwargs=("axis",), static_args=(2,), reference=_topk_ref, differentiable=False,
                  category="selection", extra={"dim_args": (1,)},
                  usage=("topk_indices(v, k)", "topk_indices(v, k, axis=a)"),
                  shape="k an integer or a dim; axis a → k entries", dtype="int", gradient="none (indices)",
                  example="topk_indices(abs(x), 2)", result="int[2]"))


# ---------------------------------------------------------------- gather and scatter-add
def _take_infer(types, args):
    v, idx = types
    numeric(v, 0)
    if v.rank == 0:
        raise ShapeError(f"`take` gathers rows of an array, got {v}", 0)
    if idx.dtype != INT:
        raise ShapeError(f"the indices of `take` must be integers, got {idx}", 1,
                         "integer index values are int data/inputs/states or `argmax`/`argmin`/`topk_indices`")
    return Type(v.dtype, tuple(idx.shape) + tuple(v.shape[1:]), v.batched or idx.batched)


def _take_emit(args, out):
    v, idx = args
    return Emitted(f"rt.take({v.code}, {idx.code}, {v.type.batched}, {idx.type.batched})")


def _take_ref(v, idx):
    return numpy().asarray(v)[numpy().asarray(idx)]


register(Operator("take", 2, 2, _take_infer, _take_emit, lambda a: f"{a[0]}_{{[{a[1]}]}}",
                  "gather along the first axis: `take(v, idx)[e, ...] = v[idx[e], ...]` (graph edges, predecessor "
                  "tables, per-sample indices); its adjoint is `segment_sum`",
                  reference=_take_ref, category="selection", runtime="take", lift_batched=False,
                  usage="take(v, idx)", shape="v [N, ...], idx int[E...] → [E..., ...]", dtype="of v",
                  gradient="yes (with respect to v)", example="take(x, argmax(B, axis=1))", result="real[m]"))


def _segment_infer(types, args):
    v, idx, _n = types
    numeric(v, 0)
    if idx.dtype != INT:
        raise ShapeError(f"the indices of `segment_sum` must be integers, got {idx}", 1)
    r = idx.rank
    if r == 0 or tuple(v.shape[:r]) != tuple(idx.shape):
        raise ShapeError(f"`segment_sum` needs indices shaped like the leading axes of the values: "
                         f"{shape_str(v.shape)} and {shape_str(idx.shape)}", 1,
                         "one index per row: `segment_sum(v, idx, n)` with v [E, ...] and idx int[E]")
    n = static_dim(args, 2, "segment_sum", "number of segments")
    return Type(v.dtype, (n,) + tuple(v.shape[r:]), v.batched or idx.batched)


def _segment_emit(args, out):
    v, idx, n = args
    return Emitted(f"rt.segment_sum({v.code}, {idx.code}, {n.code}, {v.type.batched}, {idx.type.batched})")


def _segment_ref(v, idx, n):
    np = numpy()
    v, idx = np.asarray(v), np.asarray(idx)
    out = np.zeros((n,) + v.shape[idx.ndim:], dtype=v.dtype)
    np.add.at(out, idx, v)
    return out


register(Operator("segment_sum", 3, 3, _segment_infer, _segment_emit,
                  lambda a: f"\\sum_{{e:\\,{a[1]}_e = i}} {a[0]}_e",
                  "scatter-add into n rows: `segment_sum(v, idx, n)[i] = Σ_{e: idx[e] = i} v[e]` (the sum of a "
                  "node's incoming messages); the adjoint of `take(·, idx)`",
                  reference=_segment_ref, category="selection", runtime="segment_sum", lift_batched=False,
                  extra={"dim_args": (2,)}, usage="segment_sum(v, idx, n)",
                  shape="v [E, ...], idx int[E], n a dim → [n, ...]", dtype="of v",
                  gradient="yes (with respect to v)", example="segment_sum(x, argmax(B, axis=1), m)",
                  result="real[m]"))


def index_bound(node) -> tuple[object, DimExpr] | None:
    """(index argument, the size it indexes) of a `take` / `segment_sum` node, else None."""
    if node.op == "take":
        return node.args[1], node.args[0].type.shape[0]
    if node.op == "segment_sum":
        return node.args[1], node.type.shape[0]
    return None
