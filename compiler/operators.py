"""The operator registry: every operator of the language is defined here, once.

An entry gives the operator's
  * signature   (positional arity, keyword names, which arguments are static ints),
  * shape rule  (`infer`: argument types -> result type, raising ShapeError),
  * emission    (`emit`: argument code -> PyTorch expression),
  * LaTeX       (`latex`: argument LaTeX -> LaTeX),
  * reference   (`reference`: a numpy implementation on one unbatched sample,
                 used by the test-suite to check the runtime kernels),
and a one-line doc used by `unrollc ops` and docs/language.md.

Adding an operator means adding one `register(...)` call below (plus, for a
new kernel, a function in runtime/ops.py).  This module imports no torch and
no numpy at import time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from .ast import DimExpr
from .types import BOOL, COMPLEX, INT, REAL, ShapeError, Type, broadcast, promote, shape_str

# Python operator precedences used to parenthesise emitted code minimally.
P_ATOM, P_POW, P_UNARY, P_MUL, P_ADD, P_CMP = 100, 90, 80, 70, 60, 50


@dataclass
class Arg:
    """One emitted argument: its code, its type, and how tightly the code binds."""

    code: str
    type: Type
    prec: int = P_ATOM
    py: bool = False  # a Python number (hyperparameter / literal arithmetic), not a tensor
    static: object = None  # compile-time value (int literal, keyword string)


@dataclass
class Emitted:
    code: str
    prec: int = P_ATOM


class EmitContext:
    """Names the generated code uses for the working dtype/device and batch size."""

    dtype = "dtype"
    device = "device"
    batch = "batch"


def wrap(arg: Arg | Emitted, prec: int) -> str:
    return arg.code if arg.prec >= prec else f"({arg.code})"


def tensor(arg: Arg) -> str:
    """Code for a tensor, converting a Python number where needed."""
    if arg.py:
        dt = "cdtype" if arg.type.dtype == COMPLEX else EmitContext.dtype
        return f"torch.tensor({arg.code}, dtype={dt}, device={EmitContext.device})"
    return arg.code


def lift(arg: Arg, rank: int) -> str:
    """Code of a batched argument with singleton axes inserted after the batch axis
    so that it broadcasts against a value of logical rank `rank`."""
    if arg.type.batched and arg.type.rank < rank:
        nones = ", ".join(["None"] * (rank - arg.type.rank))
        return f"{wrap(arg, P_ATOM)}[:, {nones}]"
    return arg.code if arg.prec >= P_ATOM else None  # type: ignore[return-value]


def lifted(arg: Arg, rank: int, prec: int) -> str:
    code = lift(arg, rank)
    return code if code is not None else wrap(arg, prec)


def axis_code(t: Type, axis: int) -> int:
    """Physical axis for a logical axis of a (possibly batched) value."""
    if axis < 0:
        return axis
    return axis + 1 if t.batched else axis


def all_axes(t: Type) -> str | None:
    """Physical axes of all logical axes (for full reductions), None if unbatched."""
    if not t.batched:
        return None
    axes = tuple(range(1, t.rank + 1))
    return str(axes[0]) if len(axes) == 1 else "(" + ", ".join(map(str, axes)) + ")"


# ---------------------------------------------------------------- the registry
@dataclass
class Operator:
    name: str
    min_args: int
    max_args: int
    infer: Callable[[list[Type], list[Arg | None]], Type]
    emit: Callable[[list[Arg], Type], Emitted]
    latex: Callable[[list[str]], str]
    doc: str
    kwargs: tuple[str, ...] = ()
    static_args: tuple[int, ...] = ()  # positions that must be compile-time integers
    reference: Callable | None = None
    differentiable: bool = True
    category: str = "elementwise"
    example: str = ""
    runtime: str | None = None  # runtime.ops function the emission calls
    extra: dict = field(default_factory=dict)


OPERATORS: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    assert op.name not in OPERATORS, op.name
    OPERATORS[op.name] = op
    return op


def _np():
    import numpy

    return numpy


# ---------------------------------------------------------------- shape-rule helpers
def _numeric(t: Type, i: int, what: str = "a number or tensor") -> None:
    if not t.numeric:
        raise ShapeError(f"expected {what}, got {t}", i)


def _real(t: Type, i: int, opname: str) -> None:
    _numeric(t, i)
    if t.dtype == COMPLEX:
        raise ShapeError(f"`{opname}` needs a real value, got {t}", i,
                         "take `real(...)`, `abs(...)` or `abs2(...)` of the complex value first")


def _elementwise(*ts: Type) -> Type:
    shape = ts[0].shape
    for i, t in enumerate(ts[1:], start=1):
        out = broadcast(shape, t.shape)
        if out is None:
            raise ShapeError(f"shapes {shape_str(shape)} and {shape_str(t.shape)} do not broadcast", i,
                             "elementwise operands must have equal trailing dims (or 1)")
        shape = out
    return Type(promote(*[t.dtype for t in ts]), shape, any(t.batched for t in ts))


def _same_as_first(types, args):
    _numeric(types[0], 0)
    return types[0].with_(dtype=REAL if types[0].dtype in (INT, BOOL) else types[0].dtype)


def _real_scalar_or_broadcast(types, i, opname):
    _real(types[i], i, opname)
    if broadcast(types[0].shape, types[i].shape) != types[0].shape:
        raise ShapeError(f"threshold of shape {shape_str(types[i].shape)} does not broadcast to "
                         f"the value's shape {shape_str(types[0].shape)}", i,
                         "a threshold is a scalar or has the value's trailing shape")


# ---------------------------------------------------------------- arithmetic
def _arith(symbol: str, prec: int, latex: Callable[[list[str]], str], ref, name: str, doc: str):
    def infer(types, args):
        for i, t in enumerate(types):
            _numeric(t, i)
        out = _elementwise(*types)
        if symbol == "/" and out.dtype in (INT, BOOL):
            out = out.with_(dtype=REAL)
        return out

    def emit(args, out):
        a, b = args
        right_prec = prec + 1  # left-associative
        if a.py and b.py:
            return Emitted(f"{wrap(a, prec)} {symbol} {wrap(b, right_prec)}", prec)
        return Emitted(f"{lifted(a, out.rank, prec)} {symbol} {lifted(b, out.rank, right_prec)}", prec)

    return register(Operator(name, 2, 2, infer, emit, latex, doc, reference=ref, category="arithmetic"))


_arith("+", P_ADD, lambda a: f"{a[0]} + {a[1]}", lambda a, b: a + b, "add", "elementwise sum (broadcasting)")
_arith("-", P_ADD, lambda a: f"{a[0]} - {a[1]}", lambda a, b: a - b, "sub", "elementwise difference")
_arith("*", P_MUL, lambda a: f"{a[0]} {a[1]}", lambda a, b: a * b, "mul", "elementwise product")
_arith("/", P_MUL, lambda a: f"\\frac{{{a[0]}}}{{{a[1]}}}", lambda a, b: a / b, "div", "elementwise quotient")


def _pow_infer(types, args):
    _numeric(types[0], 0)
    _real(types[1], 1, "^ (exponent)")
    out = _elementwise(*types)
    return out.with_(dtype=REAL) if out.dtype in (INT, BOOL) and not (args[1] and isinstance(args[1].static, int)) else out


def _pow_emit(args, out):
    a, b = args
    if a.py and b.py:
        return Emitted(f"{wrap(a, P_POW + 1)} ** {wrap(b, P_POW)}", P_POW)
    if b.static == 2 and not a.py and a.type.dtype != COMPLEX:
        return Emitted(f"torch.square({lifted(a, out.rank, P_ATOM) if a.type.batched else a.code})", P_ATOM)
    return Emitted(f"{lifted(a, out.rank, P_POW + 1)} ** {lifted(b, out.rank, P_POW)}", P_POW)


register(Operator("pow", 2, 2, _pow_infer, _pow_emit, lambda a: f"{{{a[0]}}}^{{{a[1]}}}",
                  "elementwise power; real, also negative, exponents (`x^2`, `x**-0.5`)",
                  reference=lambda a, b: a ** b, category="arithmetic"))


def _neg_emit(args, out):
    (a,) = args
    return Emitted(f"-{wrap(a, P_UNARY)}", P_UNARY)


register(Operator("neg", 1, 1, lambda t, a: (_numeric(t[0], 0), t[0])[1], _neg_emit, lambda a: f"-{a[0]}",
                  "unary minus", reference=lambda a: -a, category="arithmetic"))


def _compare(symbol: str, name: str, tex: str):
    def infer(types, args):
        for i, t in enumerate(types):
            _real(t, i, symbol)
        return _elementwise(*types).with_(dtype=BOOL)

    def emit(args, out):
        a, b = args
        if a.py and b.py:
            return Emitted(f"{wrap(a, P_ADD)} {symbol} {wrap(b, P_ADD)}", P_CMP)
        return Emitted(f"{lifted(a, out.rank, P_ADD)} {symbol} {lifted(b, out.rank, P_ADD)}", P_CMP)

    register(Operator(name, 2, 2, infer, emit, lambda a: f"{a[0]} {tex} {a[1]}",
                      f"elementwise comparison `{symbol}` (a boolean mask, for `where`)",
                      differentiable=False, category="arithmetic"))


for _sym, _name, _tex in (("<", "lt", "<"), (">", "gt", ">"), ("<=", "le", "\\le"), (">=", "ge", "\\ge"),
                          ("==", "eq", "="), ("!=", "ne", "\\ne")):
    _compare(_sym, _name, _tex)


# ---------------------------------------------------------------- linear algebra
def _matmul_infer(types, args):
    a, b = types
    for i, t in enumerate(types):
        _numeric(t, i, "a matrix or vector")
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("`@` needs a vector or matrix on both sides; use `*` to scale", 0 if a.rank == 0 else 1)
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ShapeError(f"inner dimensions do not match: {shape_str(a.shape)} @ {shape_str(b.shape)} "
                         f"({inner_a} vs {inner_b})", None,
                         "a matrix of shape [p, q] multiplies a vector of length q; check the order or use `.T`")
    if a.rank == 1 and b.rank == 1:
        shape = ()
    elif a.rank == 1:
        shape = b.shape[:-2] + b.shape[-1:]
    elif b.rank == 1:
        shape = a.shape[:-1]
    else:
        batch = broadcast(a.shape[:-2], b.shape[:-2])
        if batch is None:
            raise ShapeError(f"stacked matrices {shape_str(a.shape)} and {shape_str(b.shape)} do not broadcast")
        shape = batch + (a.shape[-2], b.shape[-1])
    return Type(promote(a.dtype, b.dtype), shape, a.batched or b.batched)


def _matmul_emit(args, out):
    a, b = args
    A, B = a.type, b.type
    if A.rank >= 2 and B.rank == 1:
        if not B.batched:
            return Emitted(f"{wrap(a, P_MUL)} @ {wrap(b, P_MUL + 1)}", P_MUL)
        if not A.batched and A.rank == 2:
            # matrix times a batch of vectors: one GEMM, x @ A^T (and x @ A for A.T, x @ conj(A) for A.H)
            if a.prec >= P_ATOM and a.code.endswith(".mT"):
                return Emitted(f"{wrap(b, P_MUL)} @ {a.code[:-3]}", P_MUL)
            if a.prec >= P_ATOM and a.code.endswith(".mH"):
                return Emitted(f"{wrap(b, P_MUL)} @ {a.code[:-3]}.conj()", P_MUL)
            return Emitted(f"{wrap(b, P_MUL)} @ {wrap(a, P_ATOM)}.mT", P_MUL)
        # a batch of vectors against stacked matrices [..., p, q]: lift the vector over the stack axes
        vec = lift(b, A.rank - 1) if A.rank > 2 else wrap(b, P_ATOM)
        return Emitted(f"({wrap(a, P_MUL)} @ {vec}.unsqueeze(-1)).squeeze(-1)", P_ATOM)
    if A.rank == 1 and B.rank >= 2:
        if not A.batched or (not B.batched and B.rank == 2):
            return Emitted(f"{wrap(a, P_MUL)} @ {wrap(b, P_MUL + 1)}", P_MUL)
        vec = lift(a, B.rank - 1) if B.rank > 2 else wrap(a, P_ATOM)
        return Emitted(f"({vec}.unsqueeze(-2) @ {wrap(b, P_MUL + 1)}).squeeze(-2)", P_ATOM)
    if A.rank == 1 and B.rank == 1:
        return Emitted(f"({lifted(a, 1, P_MUL)} * {lifted(b, 1, P_MUL)}).sum(-1)", P_ATOM)
    # matrix @ matrix: torch.matmul broadcasts leading axes; lift batched lower-rank sides
    rank = max(A.rank, B.rank)
    return Emitted(f"{lifted(a, rank, P_MUL)} @ {lifted(b, rank, P_MUL + 1)}", P_MUL)


register(Operator("matmul", 2, 2, _matmul_infer, _matmul_emit, lambda a: f"{a[0]} {a[1]}",
                  "matrix product; matrix @ vector, vector @ vector (dot), stacked matrices broadcast",
                  reference=lambda a, b: a @ b, category="linear algebra"))


def _transpose_infer(types, args):
    (t,) = types
    _numeric(t, 0)
    if t.rank < 2:
        raise ShapeError(f"`.T` needs a matrix, got {t}", 0, "vectors have no orientation here: `A.T @ x` and `x @ A` agree")
    return t.with_(shape=t.shape[:-2] + (t.shape[-1], t.shape[-2]))


register(Operator("transpose", 1, 1, _transpose_infer, lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.mT"),
                  lambda a: f"{a[0]}^{{T}}", "transpose of the last two axes (`A.T`, or `transpose(A)`)",
                  reference=lambda a: _np().swapaxes(a, -1, -2), category="linear algebra"))
register(Operator("adjoint", 1, 1, _transpose_infer, lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.mH"),
                  lambda a: f"{a[0]}^{{H}}", "conjugate transpose (`A.H`, or `adjoint(A)`); equals `.T` for real values",
                  reference=lambda a: _np().conj(_np().swapaxes(a, -1, -2)), category="linear algebra"))


def _square_matrix(t: Type, i: int, opname: str) -> None:
    if t.rank != 2 or t.shape[0] != t.shape[1]:
        raise ShapeError(f"`{opname}` needs a square matrix, got {t}", i)


def _opnorm_infer(types, args):
    (t,) = types
    _numeric(t, 0)
    if t.rank != 2:
        raise ShapeError(f"`opnorm` needs a matrix, got {t}", 0)
    return Type(REAL, (), t.batched)


register(Operator("opnorm", 1, 1, _opnorm_infer,
                  lambda a, o: Emitted(f"torch.linalg.matrix_norm({a[0].code}, ord=2)"),
                  lambda a: f"\\|{a[0]}\\|_2", "spectral norm (largest singular value) of a matrix",
                  reference=lambda a: _np().linalg.norm(a, 2), category="linear algebra"))


def _solve_infer(types, args):
    a, b = types
    _numeric(a, 0)
    _numeric(b, 1)
    _square_matrix(a, 0, "solve")
    rows = b.shape[0] if b.rank >= 1 else None
    if b.rank == 0 or (b.rank == 1 and b.shape[0] != a.shape[0]) or (b.rank == 2 and b.shape[0] != a.shape[0]):
        raise ShapeError(f"`solve(M, B)` needs B with {a.shape[0]} rows, got {shape_str(b.shape)} ({rows})", 1)
    return Type(promote(a.dtype, b.dtype), b.shape, a.batched or b.batched)


def _solve_emit(args, out):
    a, b = args
    if b.type.rank == 1 and b.type.batched and not a.type.batched:
        # batch of right-hand sides: solve once for all (columns of B^T)
        return Emitted(f"torch.linalg.solve({a[0].code if False else a.code}, {wrap(b, P_ATOM)}.mT).mT", P_ATOM)
    if b.type.rank == 1:
        return Emitted(f"torch.linalg.solve({a.code}, {wrap(b, P_ATOM)}.unsqueeze(-1)).squeeze(-1)", P_ATOM)
    return Emitted(f"torch.linalg.solve({a.code}, {b.code})")


register(Operator("solve", 2, 2, _solve_infer, _solve_emit, lambda a: f"{a[0]}^{{-1}} {a[1]}",
                  "M^{-1} B for a square matrix M (a linear solve, never an explicit inverse)",
                  reference=lambda a, b: _np().linalg.solve(a, b), category="linear algebra"))


def _eye_infer(types, args):
    if args[0] is None or not isinstance(args[0].static, DimExpr):
        raise ShapeError("`eye(n)` needs a dimension (a dim name or an integer)", 0)
    d = args[0].static
    return Type(REAL, (d, d), False)


register(Operator("eye", 1, 1, _eye_infer,
                  lambda a, o: Emitted(f"torch.eye({a[0].code}, dtype={EmitContext.dtype}, device={EmitContext.device})"),
                  lambda a: f"I_{{{a[0]}}}", "identity matrix of size n", category="construction",
                  reference=lambda n: _np().eye(n), extra={"dim_args": True}))


def _fill_infer(types, args):
    dims = []
    for i, a in enumerate(args):
        if a is None or not isinstance(a.static, DimExpr):
            raise ShapeError("expected a dimension (a dim name or an integer)", i)
        dims.append(a.static)
    return Type(REAL, tuple(dims), False)


def _fill(name: str, fn: str, tex: str):
    register(Operator(name, 1, 8, _fill_infer,
                      lambda a, o: Emitted(f"torch.{fn}({', '.join(x.code for x in a)}, dtype={EmitContext.dtype}, "
                                           f"device={EmitContext.device})"),
                      lambda a: tex, f"tensor of {fn} with the given dims, e.g. `{name}(m, n)`",
                      category="construction", extra={"dim_args": True}))


_fill("zeros", "zeros", "0")
_fill("ones", "ones", "\\mathbf{1}")


# ---------------------------------------------------------------- thresholds and proximal maps
def _soft_infer(types, args):
    _numeric(types[0], 0)
    _real_scalar_or_broadcast(types, 1, "soft (threshold)")
    return types[0].with_(dtype=REAL if types[0].dtype in (INT, BOOL) else types[0].dtype,
                          batched=types[0].batched or types[1].batched)


def _thresh_emit(fn):
    def emit(args, out):
        v, th = args
        return Emitted(f"rt.{fn}({v.code}, {lifted(th, out.rank, P_ADD) if th.type.batched else th.code})")
    return emit


def _ref_soft(v, t):
    np = _np()
    if np.iscomplexobj(v):
        mag = np.abs(v)
        return np.where(mag > t, v / np.where(mag == 0, 1, mag) * np.maximum(mag - t, 0), 0)
    return np.sign(v) * np.maximum(np.abs(v) - t, 0)


register(Operator("soft", 2, 2, _soft_infer, _thresh_emit("soft"),
                  lambda a: f"\\mathcal{{S}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "soft threshold sign(v)·max(|v|−θ, 0); complex v: v/|v|·max(|v|−θ, 0); θ scalar or per-entry",
                  reference=_ref_soft, category="proximal", runtime="soft", example="soft(Wt @ x + We @ y, theta)"))


def _soft_nonneg_infer(types, args):
    _real(types[0], 0, "soft_nonneg")
    return _soft_infer(types, args)


register(Operator("soft_nonneg", 2, 2, _soft_nonneg_infer, _thresh_emit("soft_nonneg"),
                  lambda a: f"\\mathcal{{S}}^{{+}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "one-sided soft threshold max(v−θ, 0) = relu(v − θ)",
                  reference=lambda v, t: _np().maximum(v - t, 0), category="proximal", runtime="soft_nonneg"))


def _hard_infer(types, args):
    return _soft_infer(types, args)


register(Operator("hard", 2, 2, _hard_infer, _thresh_emit("hard"),
                  lambda a: f"\\mathcal{{H}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "hard threshold by value: v where |v| > θ, else 0",
                  reference=lambda v, t: _np().where(_np().abs(v) > t, v, 0), category="proximal", runtime="hard"))


def _topk_infer(types, args):
    _numeric(types[0], 0)
    if types[0].rank == 0:
        raise ShapeError("`hard_topk` needs a vector (or tensor) per sample", 0)
    if types[1].dtype != INT or types[1].rank != 0 or types[1].batched:
        raise ShapeError(f"the count k must be an integer hyperparameter or literal, got {types[1]}", 1)
    return types[0]


def _ref_topk(v, k):
    np = _np()
    flat = v.reshape(-1)
    order = np.argsort(-np.abs(flat), kind="stable")[:k]
    out = np.zeros_like(flat)
    out[order] = flat[order]
    return out.reshape(v.shape)


register(Operator("hard_topk", 2, 2, _topk_infer,
                  lambda a, o: Emitted(f"rt.hard_topk({a[0].code}, {a[1].code}, batched={a[0].type.batched})"),
                  lambda a: f"\\mathcal{{H}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "keep the k entries of largest magnitude of each sample (ties: lowest index), zero the rest",
                  reference=_ref_topk, category="proximal", runtime="hard_topk"))


def _ss_infer(types, args):
    out = _soft_infer(types[:2], args[:2])
    if types[0].dtype == COMPLEX:
        raise ShapeError("`ss_soft` needs a real value", 0)
    _real(types[2], 2, "ss_soft (fraction p)")
    if types[2].rank != 0 or types[2].batched:
        raise ShapeError("the support fraction p must be a scalar (per layer at most)", 2)
    return out


def _ref_ss(v, t, p):
    import math

    np = _np()
    flat = v.reshape(-1)
    k = math.ceil(float(p) * flat.size * (1 - 1e-6))  # same tolerance as runtime.ops.ss_soft
    order = np.argsort(-np.abs(flat), kind="stable")[:k]
    keep = np.zeros(flat.shape, bool)
    keep[order] = True
    soft = np.sign(flat) * np.maximum(np.abs(flat) - t, 0)
    out = np.where(keep & (np.abs(flat) > t), flat, soft)
    return out.reshape(v.shape)


register(Operator("ss_soft", 3, 3, _ss_infer,
                  lambda a, o: Emitted(f"rt.ss_soft({a[0].code}, "
                                       f"{lifted(a[1], o.rank, P_ADD) if a[1].type.batched else a[1].code}, "
                                       f"{a[2].code}, batched={a[0].type.batched})"),
                  lambda a: f"\\eta^{{ss}}_{{{a[1]},{a[2]}}}\\left({a[0]}\\right)",
                  "support-selection threshold of LISTA-CPSS: the ⌈p·m⌉ largest-magnitude entries above θ pass "
                  "unchanged, the rest are soft-thresholded", reference=_ref_ss, category="proximal", runtime="ss_soft"))


def _clamp_infer(types, args):
    for i, t in enumerate(types):
        _real(t, i, "clamp")
    return _elementwise(*types).with_(dtype=REAL)


def _clamp_emit(args, out):
    v, lo, hi = args
    parts = [lifted(x, out.rank, P_ADD) if x.type.batched else tensor(x) if not x.py else x.code for x in (v, lo, hi)]
    if lo.py and hi.py:
        return Emitted(f"torch.clamp({parts[0]}, {lo.code}, {hi.code})")
    return Emitted(f"torch.clamp({parts[0]}, {parts[1]}, {parts[2]})")


register(Operator("clamp", 3, 3, _clamp_infer, _clamp_emit,
                  lambda a: f"\\Pi_{{[{a[1]},{a[2]}]}}\\left({a[0]}\\right)",
                  "projection onto the box [lo, hi] (elementwise clamp)",
                  reference=lambda v, lo, hi: _np().clip(v, lo, hi), category="proximal"))


# ---------------------------------------------------------------- elementwise functions
def _unary(name: str, torch_fn: str, tex: Callable[[list[str]], str], doc: str, ref, *, real_only=False,
           out_real=False, differentiable=True, complex_ok=True):
    def infer(types, args):
        (t,) = types
        _numeric(t, 0)
        if real_only:
            _real(t, 0, name)
        dtype = REAL if (out_real or t.dtype in (INT, BOOL)) else t.dtype
        return t.with_(dtype=dtype)

    def emit(args, out):
        (a,) = args
        return Emitted(f"{torch_fn}({tensor(a)})")

    register(Operator(name, 1, 1, infer, emit, tex, doc, reference=ref, differentiable=differentiable))


_unary("relu", "torch.relu", lambda a: f"\\left[{a[0]}\\right]_+", "max(v, 0)", lambda v: _np().maximum(v, 0), real_only=True)
_unary("sign", "torch.sgn", lambda a: f"\\operatorname{{sign}}\\left({a[0]}\\right)", "sign (v/|v| for complex, 0 at 0)",
       lambda v: _np().sign(v), differentiable=False)
_unary("abs", "torch.abs", lambda a: f"\\left|{a[0]}\\right|", "magnitude", lambda v: _np().abs(v), out_real=True)
_unary("abs2", "rt.abs2", lambda a: f"\\left|{a[0]}\\right|^2", "squared magnitude |v|² (real for complex v)",
       lambda v: _np().abs(v) ** 2, out_real=True)
_unary("sqrt", "torch.sqrt", lambda a: f"\\sqrt{{{a[0]}}}", "square root", lambda v: _np().sqrt(v))
_unary("exp", "torch.exp", lambda a: f"e^{{{a[0]}}}", "exponential", lambda v: _np().exp(v))
_unary("log", "torch.log", lambda a: f"\\log {a[0]}", "natural logarithm", lambda v: _np().log(v))
_unary("tanh", "torch.tanh", lambda a: f"\\tanh {a[0]}", "hyperbolic tangent", lambda v: _np().tanh(v), real_only=True)
_unary("sigmoid", "torch.sigmoid", lambda a: f"\\sigma\\left({a[0]}\\right)", "logistic sigmoid",
       lambda v: 1 / (1 + _np().exp(-v)), real_only=True)
_unary("conj", "torch.conj", lambda a: f"\\overline{{{a[0]}}}", "complex conjugate", lambda v: _np().conj(v))
_unary("real", "torch.real", lambda a: f"\\operatorname{{Re}}\\left({a[0]}\\right)", "real part",
       lambda v: _np().real(v), out_real=True)
_unary("imag", "torch.imag", lambda a: f"\\operatorname{{Im}}\\left({a[0]}\\right)", "imaginary part",
       lambda v: _np().imag(v), out_real=True)


# ---------------------------------------------------------------- reductions
def _axis_arg(args, i):
    a = args[i] if i < len(args) else None
    if a is None:
        return None
    if not isinstance(a.static, int) or isinstance(a.static, bool):
        raise ShapeError("the axis must be an integer literal", i)
    return a.static


def _reduce_infer(real_out=False, complex_ok=True, name=""):
    def infer(types, args):
        t = types[0]
        _numeric(t, 0)
        if not complex_ok:
            _real(t, 0, name)
        axis = _axis_arg(args, 1) if len(types) > 1 else None
        dtype = REAL if (real_out or t.dtype in (INT, BOOL)) else t.dtype
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
        axes = all_axes(a.type)
        if a.type.rank == 0:
            return Emitted(a.code, a.prec)
        if axes is None:
            return Emitted(f"{wrap(a, P_ATOM)}.{method}()")
        return Emitted(f"{wrap(a, P_ATOM)}.{method}(dim={axes})")
    return emit


register(Operator("sum", 1, 2, _reduce_infer(), _reduce_emit("sum"),
                  lambda a: f"\\sum {a[0]}", "sum of all entries of each sample, or along one axis: `sum(X, 0)`",
                  static_args=(1,), reference=lambda v, axis=None: _np().sum(v, axis=axis), category="reduction"))
register(Operator("mean", 1, 2, _reduce_infer(), _reduce_emit("mean"),
                  lambda a: f"\\operatorname{{mean}} {a[0]}", "mean of all entries of each sample, or along one axis",
                  static_args=(1,), reference=lambda v, axis=None: _np().mean(v, axis=axis), category="reduction"))


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


register(Operator("norm", 1, 2, _reduce_infer(real_out=True), _norm_emit,
                  lambda a: f"\\left\\|{a[0]}\\right\\|_2",
                  "Euclidean (Frobenius) norm of each sample, or along one axis: `norm(X, 1)` (row norms)",
                  static_args=(1,), reference=lambda v, axis=None: _np().linalg.norm(v, axis=axis) if axis is not None
                  else _np().linalg.norm(v.reshape(-1)), category="reduction"))


def _nnz_emit(args, out):
    a = args[0]
    axes = all_axes(a.type)
    base = f"({wrap(a, P_ATOM)} != 0).to({EmitContext.dtype})"
    if a.type.rank == 0:
        return Emitted(base)
    return Emitted(f"{base}.sum()" if axes is None else f"{base}.sum(dim={axes})")


register(Operator("nnz", 1, 1, _reduce_infer(real_out=True), _nnz_emit, lambda a: f"\\|{a[0]}\\|_0",
                  "number of nonzero entries of each sample (‖v‖₀), as a real number; no gradient",
                  reference=lambda v: float(_np().count_nonzero(v)), differentiable=False, category="reduction"))


def _minmax(name: str, fn: str, red: str, tex: str):
    def infer(types, args):
        for i, t in enumerate(types):
            _real(t, i, name)
        if len(types) == 1:
            return Type(REAL, (), types[0].batched)
        return _elementwise(*types).with_(dtype=promote(REAL, *[t.dtype for t in types]) if any(
            t.dtype == REAL for t in types) else INT)

    def emit(args, out):
        if len(args) == 1:
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
        return Emitted(f"torch.{fn}({lifted(a, out.rank, P_ADD)}, {lifted(b, out.rank, P_ADD)})")

    register(Operator(name, 1, 2, infer, emit, lambda a: f"\\{tex}\\left({', '.join(a)}\\right)",
                      f"`{name}(a, b)`: elementwise {name}imum; `{name}(v)`: {name}imum over each sample",
                      reference=lambda *v: getattr(_np(), fn)(*v) if len(v) == 2 else getattr(_np(), red)(v[0]),
                      category="reduction"))


_minmax("max", "maximum", "amax", "max")
_minmax("min", "minimum", "amin", "min")


# ---------------------------------------------------------------- selection (no gradient through the choice)
def _argmax_infer(types, args):
    t = types[0]
    _real(t, 0, "argmax")
    if t.rank != 1:
        raise ShapeError(f"`argmax` needs a vector per sample, got {t}", 0)
    return Type(INT, (), t.batched)


register(Operator("argmax", 1, 1, _argmax_infer, lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.argmax(dim=-1)"),
                  lambda a: f"\\arg\\max {a[0]}", "index of the largest entry of each sample (first on ties)",
                  reference=lambda v: int(_np().argmax(v)), differentiable=False, category="selection"))


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
                  reference=lambda k, n: _np().eye(n)[k], differentiable=False, category="selection",
                  extra={"dim_args": (1,)}))


def _where_infer(types, args):
    c, a, b = types
    if c.dtype != BOOL:
        raise ShapeError(f"the condition of `where` must be a comparison, got {c}", 0)
    return _elementwise(c.with_(dtype=INT), a, b).with_(dtype=promote(a.dtype, b.dtype, REAL))


def _where_emit(args, out):
    c, a, b = args
    parts = [lifted(x, out.rank, P_ADD) if x.type.batched else (tensor(x) if x.py else x.code) for x in (c, a, b)]
    if c.py:  # a Python bool (e.g. `layer == 0`) as a boolean tensor
        parts[0] = f"torch.tensor({c.code}, device={EmitContext.device})"
    return Emitted(f"torch.where({parts[0]}, {parts[1]}, {parts[2]})")


register(Operator("where", 3, 3, _where_infer, _where_emit,
                  lambda a: f"\\begin{{cases}}{a[1]} & {a[0]}\\\\ {a[2]} & \\text{{otherwise}}\\end{{cases}}",
                  "elementwise choice: `where(cond, a, b)`", category="selection",
                  reference=lambda c, a, b: _np().where(c, a, b)))


def _dot_infer(types, args):
    a, b = types
    if a.rank != b.rank or a.shape != b.shape:
        raise ShapeError(f"`dot` needs equal shapes, got {shape_str(a.shape)} and {shape_str(b.shape)}", 1)
    return Type(promote(a.dtype, b.dtype), (), a.batched or b.batched)


def _dot_emit(args, out):
    a, b = args
    prod = f"{lifted(a, a.type.rank, P_MUL)} * {lifted(b, b.type.rank, P_MUL)}"
    if a.type.dtype == COMPLEX:
        prod = f"torch.conj({a.code}) * {lifted(b, b.type.rank, P_MUL)}"
    axes = all_axes(out.with_(shape=a.type.shape, batched=a.type.batched or b.type.batched))
    return Emitted(f"({prod}).sum()" if axes is None else f"({prod}).sum(dim={axes})")


register(Operator("dot", 2, 2, _dot_infer, _dot_emit, lambda a: f"\\langle {a[0]}, {a[1]} \\rangle",
                  "inner product ⟨a, b⟩ = Σ conj(a)·b of each sample", category="reduction",
                  reference=lambda a, b: _np().vdot(a, b)))


# ---------------------------------------------------------------- special forms (checked by the checker itself)
SPECIAL_FORMS = {
    "prev": "prev(x): the value of state x at the start of the current layer (Jacobi / simultaneous updates)",
    "grad": "grad(f, x): gradient of the smooth scalar expression f with respect to x, derived symbolically",
    "history_sum": "history_sum(beta, x): sum_j beta[j] x^(j) over the values x^(0..l) state x had at the start of "
                   "layers 0..l (dense / history-cognizant unrolling); beta is a vector [num_layers]",
}


# registry entries reached through syntax (`a + b`, `-a`, `a @ b`, `a < b`), not by name
INTERNAL_OPERATORS = frozenset({"add", "sub", "mul", "div", "pow", "neg", "matmul", "lt", "gt", "le", "ge", "eq", "ne"})


def lookup(name: str) -> Operator | None:
    return OPERATORS.get(name)


def function_names() -> list[str]:
    internal = INTERNAL_OPERATORS
    return sorted([n for n in OPERATORS if n not in internal] + list(SPECIAL_FORMS))


# ---------------------------------------------------------------- Fourier transforms (issue 3)
def _fft_infer(ndim: int, name: str):
    def infer(types, args):
        t = types[0]
        _numeric(t, 0)
        if t.rank < ndim:
            raise ShapeError(f"`{name}` needs at least {ndim} axis/axes per sample, got {t}", 0)
        return t.with_(dtype=COMPLEX)
    return infer


def _fft(name: str, fn: str, ndim: int, norm: str | None, tex: str, doc: str, ref):
    dims = "(-2, -1)" if ndim == 2 else "-1"
    kw = "dim" if ndim == 1 else "dim"
    norm_code = f", norm={norm!r}" if norm else ""
    register(Operator(name, 1, 1, _fft_infer(ndim, name),
                      lambda a, o: Emitted(f"torch.fft.{fn}({a[0].code}, {kw}={dims}{norm_code})"),
                      lambda a: tex.format(a[0]), doc, reference=ref, category="fourier"))


_fft("fft", "fft", 1, None, "\\mathcal{{F}}\\left({}\\right)", "1-D DFT of the last axis (unnormalised, numpy convention)",
     lambda v: _np().fft.fft(v, axis=-1))
_fft("ifft", "ifft", 1, None, "\\mathcal{{F}}^{{-1}}\\left({}\\right)", "inverse 1-D DFT of the last axis",
     lambda v: _np().fft.ifft(v, axis=-1))
_fft("fft2", "fft2", 2, None, "\\mathcal{{F}}\\left({}\\right)", "2-D DFT of the last two axes (unnormalised)",
     lambda v: _np().fft.fft2(v, axes=(-2, -1)))
_fft("ifft2", "ifft2", 2, None, "\\mathcal{{F}}^{{-1}}\\left({}\\right)", "inverse 2-D DFT of the last two axes",
     lambda v: _np().fft.ifft2(v, axes=(-2, -1)))
_fft("fft2u", "fft2", 2, "ortho", "F_u\\left({}\\right)", "unitary 2-D DFT (norm='ortho', MRI convention)",
     lambda v: _np().fft.fft2(v, axes=(-2, -1), norm="ortho"))
_fft("ifft2u", "ifft2", 2, "ortho", "F_u^{{H}}\\left({}\\right)", "inverse unitary 2-D DFT (norm='ortho')",
     lambda v: _np().fft.ifft2(v, axes=(-2, -1), norm="ortho"))


# ---------------------------------------------------------------- circular convolution with filter banks (issue 3)
def _conv_infer(name: str):
    def infer(types, args):
        k, x = types
        _numeric(k, 0)
        _numeric(x, 1)
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


def _conv_emit(fn: str):
    def emit(args, out):
        k, x = args
        kcode = lifted(k, out.rank, P_ADD) if k.type.batched and k.type.rank < out.rank else k.code
        xcode = lifted(x, out.rank, P_ADD) if x.type.batched and x.type.rank < out.rank else x.code
        return Emitted(f"rt.{fn}({kcode}, {xcode})")
    return emit


def _ref_conv(adjoint: bool):
    def ref(k, x):
        np = _np()
        h, w = x.shape[-2:]
        K = _ref_otf(k, h, w)
        X = np.fft.fft2(x, axes=(-2, -1))
        out = np.fft.ifft2((np.conj(K) if adjoint else K) * X, axes=(-2, -1))
        return out if (np.iscomplexobj(k) or np.iscomplexobj(x)) else out.real
    return ref


def _ref_pad_kernel(k, h, w):
    np = _np()
    s1, s2 = k.shape[-2:]
    pad = np.zeros(k.shape[:-2] + (h, w), dtype=k.dtype)
    pad[..., :s1, :s2] = k
    return np.roll(pad, (-((s1 - 1) // 2), -((s2 - 1) // 2)), axis=(-2, -1))


def _ref_otf(k, h, w):
    return _np().fft.fft2(_ref_pad_kernel(k, h, w), axes=(-2, -1))


register(Operator("conv2", 2, 2, _conv_infer("conv2"), _conv_emit("conv2"),
                  lambda a: f"{a[0]} \\circledast {a[1]}",
                  "circular 2-D convolution of images [..., h, w] with a kernel [s, s] or a bank [C, s, s] "
                  "(kernel centre at the origin, psf2otf convention); real in, real out",
                  reference=_ref_conv(False), category="convolution", runtime="conv2"))
register(Operator("conv2_adj", 2, 2, _conv_infer("conv2_adj"), _conv_emit("conv2_adj"),
                  lambda a: f"\\tilde{{{a[0]}}} \\circledast {a[1]}",
                  "exact adjoint of `conv2` (circular correlation with the kernel); sum over a bank with "
                  "`sum(conv2_adj(d, z), 0)`", reference=_ref_conv(True), category="convolution",
                  runtime="conv2_adj"))


def _otf_infer(types, args):
    k = types[0]
    _numeric(k, 0)
    if k.rank < 2:
        raise ShapeError(f"`otf` needs a 2-D kernel or a stack of kernels, got {k}", 0)
    for i in (1, 2):
        if args[i] is None or not isinstance(args[i].static, DimExpr):
            raise ShapeError("the image size must be given by two dimensions: `otf(k, h, w)`", i)
    return Type(COMPLEX, k.shape[:-2] + (args[1].static, args[2].static), k.batched)


register(Operator("otf", 3, 3, _otf_infer,
                  lambda a, o: Emitted(f"rt.otf({a[0].code}, {a[1].code}, {a[2].code})"),
                  lambda a: f"\\hat{{{a[0]}}}", "frequency response of a kernel (stack) at image size h x w "
                  "(psf2otf: zero-pad, centre to the origin, fft2)", reference=_ref_otf, category="fourier",
                  runtime="otf", extra={"dim_args": (1, 2)}))


# ---------------------------------------------------------------- matrix proximal maps and normalisations (issue 3)
def _matrix_thresh_infer(name: str):
    def infer(types, args):
        X, tau = types
        _numeric(X, 0)
        if X.rank < 2:
            raise ShapeError(f"`{name}` needs a matrix per sample, got {X}", 0)
        _real(tau, 1, f"{name} (threshold)")
        if tau.rank != 0:
            raise ShapeError(f"the threshold of `{name}` is a scalar, got {tau}", 1)
        return X.with_(batched=X.batched or tau.batched)
    return infer


def _ref_svt(X, tau):
    np = _np()
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return (U * np.maximum(s - tau, 0)) @ Vh


def _ref_row_shrink(X, tau):
    np = _np()
    norms = np.linalg.norm(X, axis=-1, keepdims=True)
    return X * np.maximum(0, 1 - tau / np.where(norms == 0, 1, norms)) * (norms > 0)


def _matrix_thresh_emit(fn):
    def emit(args, out):
        X, tau = args
        t = f"{wrap(tau, P_ATOM)}[:, None, None]" if tau.type.batched else tau.code
        return Emitted(f"rt.{fn}({X.code}, {t})")
    return emit


register(Operator("svt", 2, 2, _matrix_thresh_infer("svt"), _matrix_thresh_emit("svt"),
                  lambda a: f"\\mathcal{{T}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "singular value thresholding U·max(Σ−τ, 0)·Vᴴ (prox of τ‖·‖_*; complex capable)",
                  reference=_ref_svt, category="proximal", runtime="svt"))
register(Operator("row_shrink", 2, 2, _matrix_thresh_infer("row_shrink"), _matrix_thresh_emit("row_shrink"),
                  lambda a: f"\\mathcal{{S}}^{{1,2}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "row-wise ℓ2 shrinkage X_i·max(0, 1 − τ/‖X_i‖) (prox of τ‖·‖_{1,2}; zero rows stay zero)",
                  reference=_ref_row_shrink, category="proximal", runtime="row_shrink"))


def _norm_sum_infer(types, args):
    _real(types[0], 0, "norm_sum")
    if types[0].rank == 0:
        raise ShapeError("`norm_sum` needs a vector or tensor per sample", 0)
    return types[0]


register(Operator("norm_sum", 1, 1, _norm_sum_infer,
                  lambda a, o: Emitted(f"rt.norm_sum({a[0].code}, batched={a[0].type.batched})"),
                  lambda a: f"N_1\\left({a[0]}\\right)", "normalise each sample to unit sum (N₁ of DUBLID)",
                  reference=lambda v: v / v.sum(), category="normalisation", runtime="norm_sum"))


def _normcols_infer(types, args):
    _numeric(types[0], 0)
    if types[0].rank < 2:
        raise ShapeError("`normalize_columns` needs a matrix", 0)
    return types[0]


register(Operator("normalize_columns", 1, 1, _normcols_infer,
                  lambda a, o: Emitted(f"rt.normalize_columns({a[0].code})"),
                  lambda a: f"\\operatorname{{ncol}}\\left({a[0]}\\right)", "scale every column to unit ℓ2 norm",
                  reference=lambda W: W / _np().linalg.norm(W, axis=-2, keepdims=True), category="normalisation",
                  runtime="normalize_columns"))


def _angle_infer(types, args):
    _numeric(types[0], 0)
    return types[0].with_(dtype=REAL)


register(Operator("angle", 1, 1, _angle_infer, lambda a, o: Emitted(f"torch.angle({tensor(a[0])})"),
                  lambda a: f"\\angle {a[0]}", "phase of a complex value (radians)",
                  reference=lambda v: _np().angle(v), differentiable=True, category="complex"))


def _expj_infer(types, args):
    _real(types[0], 0, "expj")
    return types[0].with_(dtype=COMPLEX)


register(Operator("expj", 1, 1, _expj_infer, lambda a, o: Emitted(f"torch.polar(torch.ones_like({a[0].code}), "
                                                                    f"{a[0].code})"),
                  lambda a: f"e^{{j {a[0]}}}", "unit-modulus complex number e^{jθ}",
                  reference=lambda t: _np().exp(1j * t), category="complex"))


def _complex_infer(types, args):
    for i, t in enumerate(types):
        _real(t, i, "complex")
    return _elementwise(*types).with_(dtype=COMPLEX)


register(Operator("complex", 2, 2, _complex_infer,
                  lambda a, o: Emitted(f"torch.complex({lifted(a[0], o.rank, P_ADD)}, {lifted(a[1], o.rank, P_ADD)})"),
                  lambda a: f"\\left({a[0]} + j {a[1]}\\right)", "complex number from real and imaginary parts",
                  reference=lambda re, im: re + 1j * im, category="complex"))


def _outer_infer(types, args):
    u, v = types
    for i, t in enumerate(types):
        _numeric(t, i)
        if t.rank != 1:
            raise ShapeError(f"`outer` needs two vectors, got {t}", i)
    return Type(promote(u.dtype, v.dtype), (u.shape[0], v.shape[0]), u.batched or v.batched)


register(Operator("outer", 2, 2, _outer_infer,
                  lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.unsqueeze(-1) * {wrap(a[1], P_ATOM)}.unsqueeze(-2)",
                                       P_MUL),
                  lambda a: f"{a[0]} {a[1]}^{{T}}", "outer product u vᵀ of two vectors (e.g. to scale rows: "
                  "`H * outer(c, ones(T))`)", reference=lambda u, v: _np().outer(u, v), category="linear algebra"))


def _cat_infer(types, args):
    rank = max(t.rank for t in types)
    if rank == 0:
        raise ShapeError("`cat` joins vectors or tensors along their first axis, got scalars", 0)
    trailing = next(t.shape[1:] for t in types if t.rank == rank)
    total = DimExpr.of(0)
    for i, t in enumerate(types):
        _numeric(t, i)
        if t.rank == rank and t.shape[1:] == trailing:
            total = total + t.shape[0]
        elif t.rank == rank - 1 and t.shape == trailing:
            total = total + DimExpr.of(1)  # a single channel
        else:
            raise ShapeError(f"`cat` needs pieces of shape [c, {', '.join(map(str, trailing))}] (or single "
                             f"channels [{', '.join(map(str, trailing))}]), got {shape_str(t.shape)}", i)
    return Type(promote(*[t.dtype for t in types]), (total,) + trailing, any(t.batched for t in types))


def _cat_emit(args, out):
    flags = tuple(a.type.batched for a in args)
    parts = []
    for a in args:
        code = a.code
        if a.type.rank == out.rank - 1:  # a single channel: add the channel axis
            code = f"{wrap(a, P_ATOM)}.unsqueeze({1 if a.type.batched else 0})"
        parts.append(code)
    joined = ", ".join(parts)
    if not any(flags):
        return Emitted(f"torch.cat([{joined}], dim=0)")
    if all(flags):
        return Emitted(f"torch.cat([{joined}], dim=1)")
    return Emitted(f"rt.cat([{joined}], {flags!r}, {EmitContext.batch})")


register(Operator("cat", 2, 16, _cat_infer, _cat_emit, lambda a: "\\left[" + "; ".join(a) + "\\right]",
                  "concatenate along the first axis (channels); a piece one axis short is one channel: `cat(h, K(f[1]), g)`",
                  reference=lambda *v: _np().concatenate(v, axis=0), category="construction", runtime="cat"))


# ---------------------------------------------------------------- zero-boundary convolution and patches (issue 3)
def _ref_shift_sum(adjoint: bool):
    def ref(k, x):
        np = _np()
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


register(Operator("conv2z", 2, 2, _conv_infer("conv2z"), _conv_emit("conv2z"),
                  lambda a: f"{a[0]} * {a[1]}",
                  "'same'-size 2-D convolution with zero boundary (kernel centre (s-1)//2); banks broadcast like "
                  "`conv2`; a bank [o, c, s, s] on images [c, h, w] mixes channels with `sum(conv2z(W, x), 1)`",
                  reference=_ref_shift_sum(False), category="convolution", runtime="conv2z",
                  example="sum(conv2z(W, x), 1)"))
register(Operator("conv2z_adj", 2, 2, _conv_infer("conv2z_adj"), _conv_emit("conv2z_adj"),
                  lambda a: f"\\tilde{{{a[0]}}} * {a[1]}",
                  "exact adjoint of `conv2z` (zero-boundary correlation with the (conjugate) kernel)",
                  reference=_ref_shift_sum(True), category="convolution", runtime="conv2z_adj"))


def _static_size(args, i: int, opname: str, what: str) -> DimExpr:
    a = args[i]
    if a is None or not isinstance(a.static, DimExpr):
        raise ShapeError(f"the {what} of `{opname}` must be a dimension or an integer literal", i,
                         "write a declared dim (`s`) or an integer literal (`5`)")
    return a.static


def _image(t: Type, i: int, opname: str) -> None:
    _numeric(t, i)
    if t.rank < 2:
        raise ShapeError(f"`{opname}` needs images (the last two axes), got {t}", i)


def _patches_infer(types, args):
    _image(types[0], 0, "patches")
    s = _static_size(args, 1, "patches", "patch size")
    return types[0].with_(shape=types[0].shape[:-2] + (s * s,) + types[0].shape[-2:])


def _unpatch_infer(name: str):
    def infer(types, args):
        z = types[0]
        _numeric(z, 0)
        s = _static_size(args, 1, name, "patch size")
        if z.rank < 3:
            raise ShapeError(f"`{name}` needs patch stacks [s*s, h, w], got {z}", 0)
        if z.shape[-3] != s * s:
            raise ShapeError(f"`{name}` with patch size {s} needs {s * s} patch channels, got {z.shape[-3]}", 0)
        return z.with_(shape=z.shape[:-3] + z.shape[-2:])
    return infer


def _ref_patches(x, s):
    np = _np()
    k = np.eye(s * s).reshape(s * s, s, s)
    return _ref_shift_sum(True)(k, x[..., None, :, :])


def _ref_unpatch(z, s):
    np = _np()
    k = np.eye(s * s).reshape(s * s, s, s)
    return _ref_shift_sum(False)(k, z).sum(axis=-3)


def _ref_patch_average(z, s):
    np = _np()
    return _ref_unpatch(z, s) / _ref_unpatch(np.ones((s * s,) + z.shape[-2:]), s)


register(Operator("patches", 2, 2, _patches_infer, lambda a, o: Emitted(f"rt.patches({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{patches}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "every s x s patch of an image, one per pixel (zero boundary): [h, w] -> [s*s, h, w] "
                  "(torch `unfold` with padding (s-1)//2)", reference=_ref_patches, category="patches",
                  runtime="patches", extra={"dim_args": (1,)}, example="patches(y, 5)"))
register(Operator("unpatch", 2, 2, _unpatch_infer("unpatch"),
                  lambda a, o: Emitted(f"rt.unpatch({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{patches}}_{{{a[1]}}}^{{T}}\\left({a[0]}\\right)",
                  "overlap-add of patches, the exact adjoint of `patches` (torch `fold`): [s*s, h, w] -> [h, w]",
                  reference=_ref_unpatch, category="patches", runtime="unpatch", extra={"dim_args": (1,)}))
register(Operator("patch_average", 2, 2, _unpatch_infer("patch_average"),
                  lambda a, o: Emitted(f"rt.patch_average({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{avg}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "recombine overlapping patches by averaging: unpatch(z) / unpatch(1) (SCN's last layer)",
                  reference=_ref_patch_average, category="patches", runtime="patch_average",
                  extra={"dim_args": (1,)}))


def _chanmix_infer(types, args):
    W, x = types
    _numeric(W, 0)
    _numeric(x, 1)
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
    wcode = f"{wrap(W, P_ATOM)}[:, None]" if W.type.batched and x.type.rank > 3 else W.code
    return Emitted(f"rt.chanmix({wcode}, {x.code})")


register(Operator("chanmix", 2, 2, _chanmix_infer, _chanmix_emit, lambda a: f"{a[0]} \\cdot_c {a[1]}",
                  "1x1 convolution: a matrix [o, c] applied to the channel vector of every pixel, "
                  "[c, h, w] -> [o, h, w]", reference=lambda W, x: _np().einsum("oc,...chw->...ohw", W, x),
                  category="convolution", runtime="chanmix", example="chanmix(We, patches(y, 5))"))


# ---------------------------------------------------------------- resampling
def _div_dim(d: DimExpr, r: int) -> DimExpr | None:
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
    _image(x, 0, "down")
    r = _factor(args, "down")
    new = [_div_dim(d, r) for d in x.shape[-2:]]
    if None in new:
        raise ShapeError(f"`down` by {r} needs image sizes that are multiples of {r}, got "
                         f"{shape_str(x.shape[-2:])}", 0, f"declare the fine grid as `real[{r}*h, {r}*w]`")
    return x.with_(shape=x.shape[:-2] + tuple(new))


def _up_infer(name: str):
    def infer(types, args):
        x = types[0]
        _image(x, 0, name)
        r = _factor(args, name)
        if name == "bicubic":
            _real(x, 0, name)
        return x.with_(shape=x.shape[:-2] + tuple(DimExpr.of(r) * d for d in x.shape[-2:]))
    return infer


def _ref_up(x, r):
    np = _np()
    out = np.zeros(x.shape[:-2] + (r * x.shape[-2], r * x.shape[-1]), dtype=x.dtype)
    out[..., ::r, ::r] = x
    return out


def _ref_bicubic(x, r):
    """Separable Keys cubic (a = -0.75), half-pixel centres, indices clamped at the border."""
    np = _np()

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


register(Operator("down", 2, 2, _down_infer, lambda a, o: Emitted(f"rt.down({a[0].code}, {a[1].code})"),
                  lambda a: f"S_{{{a[1]}}}\\left({a[0]}\\right)", "decimation by r: keep pixels (r i, r j); "
                  "[r*h, r*w] -> [h, w]", reference=lambda x, r: x[..., ::r, ::r], category="resampling",
                  runtime="down", static_args=(1,), example="down(conv2(b, x), 2)"))
register(Operator("up", 2, 2, _up_infer("up"), lambda a, o: Emitted(f"rt.up({a[0].code}, {a[1].code})"),
                  lambda a: f"S_{{{a[1]}}}^{{T}}\\left({a[0]}\\right)",
                  "zero-filling upsampling by r, the exact adjoint of `down`: [h, w] -> [r*h, r*w]",
                  reference=_ref_up, category="resampling", runtime="up", static_args=(1,)))
register(Operator("bicubic", 2, 2, _up_infer("bicubic"), lambda a, o: Emitted(f"rt.bicubic({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{bicubic}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "bicubic upsampling by r (torch `interpolate`, align_corners=False): [h, w] -> [r*h, r*w]",
                  reference=_ref_bicubic, category="resampling", runtime="bicubic", static_args=(1,)))


# ---------------------------------------------------------------- kernel support, kernel padding and cropping
def _support_infer(types, args):
    _image(types[0], 0, "support")
    if not (types[1].dtype == INT and types[1].rank == 0):  # an `int` hyper works too: the shape does not depend on it
        _static_size(args, 1, "support", "support size")
    return types[0]


def _ref_support(k, s):
    np = _np()
    h, w = k.shape[-2:]
    c = (s - 1) // 2
    mask = ((np.arange(h) + c) % h < s)[:, None] & ((np.arange(w) + c) % w < s)[None, :]
    return k * mask


def _pad_kernel_infer(types, args):
    _image(types[0], 0, "pad_kernel")
    h = _static_size(args, 1, "pad_kernel", "image height")
    w = _static_size(args, 2, "pad_kernel", "image width")
    return types[0].with_(shape=types[0].shape[:-2] + (h, w))


def _crop_kernel_infer(types, args):
    _image(types[0], 0, "crop_kernel")
    s = _static_size(args, 1, "crop_kernel", "kernel size")
    return types[0].with_(shape=types[0].shape[:-2] + (s, s))


def _ref_crop_kernel(K, s):
    np = _np()
    c = (s - 1) // 2
    return np.roll(K, (c, c), axis=(-2, -1))[..., :s, :s]


register(Operator("support", 2, 2, _support_infer, lambda a, o: Emitted(f"rt.support({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{supp}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "zero an image-sized kernel (origin at [0, 0]) outside the s x s window centred at the origin "
                  "(circularly): restrict a kernel estimate to its support", reference=_ref_support,
                  category="kernels", runtime="support", extra={"dim_args": (1,)}, example="support(k, s)"))
register(Operator("pad_kernel", 3, 3, _pad_kernel_infer,
                  lambda a, o: Emitted(f"rt.pad_kernel({a[0].code}, {a[1].code}, {a[2].code})"),
                  lambda a: f"\\operatorname{{pad}}\\left({a[0]}\\right)",
                  "an s x s kernel placed in an h x w image with its centre at the origin (so that "
                  "`fft2(pad_kernel(k, h, w)) == otf(k, h, w)`)", reference=_ref_pad_kernel, category="kernels",
                  runtime="pad_kernel", extra={"dim_args": (1, 2)}))
register(Operator("crop_kernel", 2, 2, _crop_kernel_infer,
                  lambda a, o: Emitted(f"rt.crop_kernel({a[0].code}, {a[1].code})"),
                  lambda a: f"\\operatorname{{crop}}_{{{a[1]}}}\\left({a[0]}\\right)",
                  "the s x s centred kernel of an image-sized kernel (inverse and adjoint of `pad_kernel`)",
                  reference=_ref_crop_kernel, category="kernels", runtime="crop_kernel", extra={"dim_args": (1,)}))


# ---------------------------------------------------------------- finite differences (TV)
def _grad2_infer(types, args):
    _image(types[0], 0, "grad2")
    x = types[0]
    return x.with_(shape=x.shape[:-2] + (DimExpr.of(2),) + x.shape[-2:])


def _div2_infer(types, args):
    p = types[0]
    _numeric(p, 0)
    if p.rank < 3 or p.shape[-3] != DimExpr.of(2):
        raise ShapeError(f"`div2` needs a vector field [2, h, w], got {p}", 0, "`div2(grad2(x))` is the Laplacian")
    return p.with_(shape=p.shape[:-3] + p.shape[-2:])


def _ref_grad2(x):
    np = _np()
    return np.stack((np.roll(x, -1, axis=-2) - x, np.roll(x, -1, axis=-1) - x), axis=-3)


def _ref_div2(p):
    np = _np()
    p0, p1 = p[..., 0, :, :], p[..., 1, :, :]
    return (p0 - np.roll(p0, 1, axis=-2)) + (p1 - np.roll(p1, 1, axis=-1))


register(Operator("grad2", 1, 1, _grad2_infer, lambda a, o: Emitted(f"rt.grad2({a[0].code})"),
                  lambda a: f"\\nabla {a[0]}", "image gradient by forward differences, circular boundary: "
                  "[h, w] -> [2, h, w] (vertical, horizontal)", reference=_ref_grad2, category="differences",
                  runtime="grad2"))
register(Operator("div2", 1, 1, _div2_infer, lambda a, o: Emitted(f"rt.div2({a[0].code})"),
                  lambda a: f"\\nabla \\cdot {a[0]}", "divergence of a vector field [2, h, w] (backward differences, "
                  "circular): div2 = -grad2ᵀ", reference=_ref_div2, category="differences", runtime="div2"))


# ---------------------------------------------------------------- short-time Fourier transform
def _hop(types, args, i: int, opname: str) -> None:
    t = types[i]
    if t.dtype != INT or t.rank != 0:
        raise ShapeError(f"the hop of `{opname}` must be an integer (a literal or an `int` hyperparameter)", i)


def _stft_infer(types, args):
    x = types[0]
    _real(x, 0, "stft")
    if x.rank < 1:
        raise ShapeError(f"`stft` needs signals [T], got {x}", 0)
    F = _static_size(args, 1, "stft", "number of frequencies")
    N = _static_size(args, 2, "stft", "number of frames")
    _hop(types, args, 3, "stft")
    return Type(COMPLEX, x.shape[:-1] + (F, N), x.batched)


def _istft_infer(types, args):
    X = types[0]
    _numeric(X, 0)
    if X.rank < 2:
        raise ShapeError(f"`istft` needs spectrograms [F, N], got {X}", 0)
    T = _static_size(args, 1, "istft", "signal length")
    _hop(types, args, 2, "istft")
    return Type(REAL, X.shape[:-2] + (T,), X.batched)


def _hann(n):
    np = _np()
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n)


def _ref_stft(x, F, N, hop):
    np = _np()
    n_fft = 2 * (F - 1)
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    frames = np.stack([xp[..., i * hop:i * hop + n_fft] * _hann(n_fft) for i in range(N)], axis=-1)
    return np.fft.rfft(frames, axis=-2)


def _ref_istft(X, T, hop):
    np = _np()
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


register(Operator("stft", 4, 4, _stft_infer,
                  lambda a, o: Emitted(f"rt.stft({a[0].code}, {a[1].code}, {a[2].code}, {a[3].code})"),
                  lambda a: f"\\operatorname{{STFT}}\\left({a[0]}\\right)",
                  "short-time Fourier transform of signals [T] -> complex [F, N]: n_fft = 2(F-1), periodic Hann "
                  "window, hop samples between centred frames (N = 1 + T // hop), torch.stft conventions",
                  reference=_ref_stft, category="fourier", runtime="stft", extra={"dim_args": (1, 2)},
                  example="stft(x, F, N, 64)"))
register(Operator("istft", 3, 3, _istft_infer,
                  lambda a, o: Emitted(f"rt.istft({a[0].code}, {a[1].code}, {a[2].code})"),
                  lambda a: f"\\operatorname{{iSTFT}}\\left({a[0]}\\right)",
                  "inverse STFT (windowed overlap-add, least squares) of spectrograms [F, N] -> signals [T]; "
                  "istft(stft(x)) == x", reference=_ref_istft, category="fourier", runtime="istft",
                  extra={"dim_args": (1,)}, example="istft(A * expj(theta), T, 64)"))


# ---------------------------------------------------------------- reshaping
def _reshape_infer(types, args):
    x = types[0]
    _numeric(x, 0)
    dims = [_static_size(args, i, "reshape", "new shape") for i in range(1, len(types))]

    def size(shape):
        total = DimExpr.of(1)
        for d in shape:
            total = total * d if total is not None else None
        return total

    before, after = size(x.shape), size(dims)
    if before is None or after is None:
        raise ShapeError("`reshape` can only check sizes that are products of at most two dimension names", 0)
    if before != after:
        raise ShapeError(f"`reshape` keeps the number of entries: {shape_str(x.shape)} has {before}, "
                         f"{shape_str(tuple(dims))} has {after}", 0)
    return x.with_(shape=tuple(dims))


def _reshape_emit(args, out):
    sizes = [a.code for a in args[1:]]
    lead = f"{EmitContext.batch}, " if args[0].type.batched else ""
    return Emitted(f"{wrap(args[0], P_ATOM)}.reshape({lead}{', '.join(sizes)})")


register(Operator("reshape", 2, 5, _reshape_infer, _reshape_emit, lambda a: a[0],
                  "the same entries in a new shape (row-major), e.g. a movie [T, nx, nz] as T frames of "
                  "nx*nz pixels: `reshape(L, T, nx*nz)`", reference=lambda x, *shape: x.reshape(shape),
                  category="construction", extra={"dim_args": True}, example="reshape(L, T, nx*nz)"))


# ---------------------------------------------------------------- stacking
def _stack_infer(types, args):
    first = types[0]
    for i, t in enumerate(types):
        _numeric(t, i)
        if t.shape != first.shape:
            raise ShapeError(f"`stack` needs pieces of equal shape, got {shape_str(first.shape)} and "
                             f"{shape_str(t.shape)}", i, "`cat` joins pieces along an existing first axis")
    return Type(promote(*[t.dtype for t in types]), (DimExpr.of(len(types)),) + first.shape,
                any(t.batched for t in types))


# every piece is one axis short of the result: `cat`'s emission adds the axis and joins
register(Operator("stack", 2, 16, _stack_infer, _cat_emit, lambda a: "\\left[" + "; ".join(a) + "\\right]",
                  "stack pieces of equal shape along a new first axis (channels): a complex image as two real "
                  "channels `stack(real(z), imag(z))`", reference=lambda *v: _np().stack(v, axis=0),
                  category="construction", runtime="cat", example="stack(real(z), imag(z))"))
