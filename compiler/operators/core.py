"""The registry's building blocks: the `Operator` entry, emission helpers and shared shape rules.

An entry gives the operator's
  * signature   (arity, which arguments are static ints, keyword names),
  * shape rule  (`infer(types, args) -> Type`, raising ShapeError),
  * emission    (`emit(args, out_type) -> Emitted`; or none: the kernel `rt.<runtime>(...)` is called),
  * LaTeX       (`latex(argument LaTeX) -> LaTeX`),
  * reference   (a numpy implementation on one unbatched sample, used by the tests),
  * documentation (`doc`, `usage`, `shape`, `dtype`, `gradient`, `example`, `result`): the operator
    tables of docs/language.md are generated from it (compiler/opdocs.py).

Batching follows one default rule: before an entry's emission sees its arguments, every batched
argument of lower logical rank than the result is lifted (`v[:, None]`) so that it broadcasts like
numpy (elementwise operators, thresholds, convolutions).  Entries whose arguments do not broadcast
against the result (matmul, outer, cat, patches, ...) set `lift_batched=False` and handle the batch
axis themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..ast import DimExpr
from ..types import BOOL, COMPLEX, INT, REAL, ShapeError, Type, broadcast, promote, shape_str

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
    cdtype = "cdtype"
    device = "device"
    batch = "batch"


def wrap(arg: Arg | Emitted, prec: int) -> str:
    """The code of `arg`, parenthesised unless it binds at least as tightly as `prec`.
    Every operand pasted next to a Python operator goes through this (the right operand of a
    left-associative operator with `prec + 1`)."""
    return arg.code if arg.prec >= prec else f"({arg.code})"


def tensor(arg: Arg) -> str:
    """Code for a tensor, converting a Python number where needed."""
    if arg.py:
        dt = EmitContext.cdtype if arg.type.dtype == COMPLEX else EmitContext.dtype
        return f"torch.tensor({arg.code}, dtype={dt}, device={EmitContext.device})"
    return arg.code


def lift(arg: Arg, rank: int) -> str | None:
    """Code of a batched argument with singleton axes inserted after the batch axis so that it
    broadcasts against a value of logical rank `rank`; None when no axis is needed."""
    if arg.type.batched and arg.type.rank < rank:
        nones = ", ".join(["None"] * (rank - arg.type.rank))
        return f"{wrap(arg, P_ATOM)}[:, {nones}]"
    return None


def lifted(arg: Arg, rank: int, prec: int) -> str:
    """`lift(arg, rank)` if an axis is needed, else the code wrapped for precedence `prec`."""
    code = lift(arg, rank)
    return code if code is not None else wrap(arg, prec)


def lift_arg(arg: Arg, rank: int) -> Arg:
    """The default batching rule applied to one argument (see the module docstring)."""
    code = lift(arg, rank)
    return arg if code is None else Arg(code, arg.type, P_ATOM, py=arg.py, static=arg.static)


def as_complex(arg: Arg, out: Type) -> Arg:
    """A real tensor operand of an operation whose result is complex, promoted (torch's matmul and
    solve refuse mixed real/complex operands); unchanged when the dtypes already agree."""
    if out.dtype != COMPLEX or arg.type.dtype == COMPLEX or arg.py:
        return arg
    return Arg(f"{wrap(arg, P_ATOM)}.to({EmitContext.cdtype})", arg.type.with_(dtype=COMPLEX), P_ATOM,
               static=arg.static)


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
    emit: Callable[[list[Arg], Type], Emitted] | None  # None: `rt.<runtime>(arguments)`
    latex: Callable[[list[str]], str]
    doc: str
    kwargs: tuple[str, ...] = ()
    static_args: tuple[int, ...] = ()  # positions that must be compile-time integers
    reference: Callable | None = None
    differentiable: bool = True
    category: str = "elementwise"
    example: str = ""  # a use in the docs' example environment (compiler/opdocs.py), also shown in hints
    runtime: str | None = None  # the unroll.runtime kernel the emission calls (`rt.<runtime>`)
    extra: dict = field(default_factory=dict)
    # documentation, for the generated tables of docs/language.md
    usage: str | tuple[str, ...] = ""  # how it is written: "soft(v, θ)", or several forms
    shape: str = ""  # the shape rule in words
    dtype: str = ""  # the dtype rule in words
    gradient: str = ""  # default: "yes", or "none" when not differentiable
    result: str = ""  # the type the checker gives `example`
    # batching
    lift_batched: bool = True  # the default rule; False: the emission handles the batch axis itself
    per_sample: bool = False  # the default kernel call passes `batched=` (whether argument 0 is batched)

    def __post_init__(self):
        if isinstance(self.usage, str):
            self.usage = (self.usage,) if self.usage else (f"{self.name}(...)",)
        if not self.gradient:
            self.gradient = "yes" if self.differentiable else "none"
        if self.emit is None and self.runtime is None:
            raise ValueError(f"operator {self.name!r}: give an emission or a runtime kernel")
        entry_emit = self.emit if self.emit is not None else self._call_kernel
        lift_batched = self.lift_batched

        def emit(args: list[Arg], out: Type) -> Emitted:
            if lift_batched:
                args = [lift_arg(a, out.rank) for a in args]
            return entry_emit(args, out)

        self.emit = emit

    def _call_kernel(self, args: list[Arg], out: Type) -> Emitted:
        codes = [a.code for a in args]
        if self.per_sample:
            codes.append(f"batched={args[0].type.batched}")
        return Emitted(f"rt.{self.runtime}({', '.join(codes)})")


OPERATORS: dict[str, Operator] = {}


def register(op: Operator) -> Operator:
    assert op.name not in OPERATORS, op.name
    OPERATORS[op.name] = op
    return op


def numpy():
    """numpy, imported only when a reference implementation runs."""
    import numpy

    return numpy


# ---------------------------------------------------------------- shape-rule helpers
def numeric(t: Type, i: int, what: str = "a number or tensor") -> None:
    if not t.numeric:
        raise ShapeError(f"expected {what}, got {t}", i)


def not_mask(t: Type, i: int, opname: str) -> None:
    """A comparison's boolean mask is only for `where`: refuse it where numbers are needed."""
    if t.dtype == BOOL:
        raise ShapeError(f"`{opname}` needs numbers, got a comparison ({t})", i,
                         "a comparison gives a mask for `where(c, a, b)`; for 0/1 values write `where(c, 1, 0)`")


def real(t: Type, i: int, opname: str) -> None:
    numeric(t, i)
    if t.dtype == BOOL:
        raise ShapeError(f"`{opname.split(' ')[0]}` needs real numbers, got a comparison ({t})", i,
                         "a comparison gives a mask for `where(c, a, b)`; for 0/1 values write `where(c, 1, 0)`")
    if t.dtype == COMPLEX:
        raise ShapeError(f"`{opname}` needs a real value, got {t}", i,
                         "take `real(...)`, `abs(...)` or `abs2(...)` of the complex value first")


def elementwise(*ts: Type) -> Type:
    """Result type of broadcasting the operands (numpy rules, trailing alignment); dtype promoted."""
    shape = ts[0].shape
    for i, t in enumerate(ts[1:], start=1):
        out = broadcast(shape, t.shape)
        if out is None:
            raise ShapeError(f"shapes {shape_str(shape)} and {shape_str(t.shape)} do not broadcast", i,
                             "elementwise operands must have equal trailing dims (or 1)")
        shape = out
    return Type(promote(*[t.dtype for t in ts]), shape, any(t.batched for t in ts))


def at_least_real(dtype: str) -> str:
    return REAL if dtype in (INT, BOOL) else dtype


def static_dim(args, i: int, opname: str, what: str) -> DimExpr:
    """A compile-time size argument (a dim name or an integer literal)."""
    a = args[i]
    if a is None or not isinstance(a.static, DimExpr):
        raise ShapeError(f"the {what} of `{opname}` must be a dimension or an integer literal", i,
                         "write a declared dim (`s`) or an integer literal (`5`)")
    return a.static


def image(t: Type, i: int, opname: str) -> None:
    numeric(t, i)
    if t.rank < 2:
        raise ShapeError(f"`{opname}` needs images (the last two axes), got {t}", i)
