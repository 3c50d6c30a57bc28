"""Compile-time ranges of integer index expressions, so that an index past the end of an axis is a located
error (`c[5]`, `c[-1]`, `c[layer + 3]` with `c : real[3]`; `onehot(n, n)`) instead of an `IndexError` when
the module runs.  Where the axis size is a dim known only when the module runs (`ys[layer]` with
`input ys : real[T, n]`), the checker records the least size the dim needs (`Program.dim_minimums`) and the
generated module checks it when the dim is bound, naming the argument.
"""

from __future__ import annotations

from .. import ir
from ..ast import DimExpr
from ..types import INT


def _neg(v):
    return DimExpr.of(-1) * v if isinstance(v, DimExpr) else -v


def _interval(node: ir.Node, leaf, lift, products: bool):
    """(lowest, highest) of an integer expression of `+`, `-`, unary `-` (and `*` where `products`) over
    literals, compile-time values (`node.static`, made a bound by `lift`) and the leaves `leaf` bounds; None
    where some part is not bounded.  The one walk of int_bounds (numbers) and loop_index_range (DimExprs)."""
    found = leaf(node)
    if found is not None:
        return found
    if node.op == "number" and isinstance(node.attrs.get("value"), int):
        v = lift(node.attrs["value"])
        return v, v
    if isinstance(node.static, (int, DimExpr)) and not isinstance(node.static, bool):
        v = lift(node.static)
        return None if v is None else (v, v)
    if node.op == "neg" and len(node.args) == 1:
        b = _interval(node.args[0], leaf, lift, products)
        return None if b is None else (_neg(b[1]), _neg(b[0]))
    if node.op in ("add", "sub", "mul") and len(node.args) == 2 and (products or node.op != "mul"):
        a, b = (_interval(x, leaf, lift, products) for x in node.args)
        if a is None or b is None:
            return None
        if node.op == "add":
            return a[0] + b[0], a[1] + b[1]
        if node.op == "sub":
            return a[0] + _neg(b[1]), a[1] + _neg(b[0])
        values = [x * y for x in a for y in b]
        return min(values), max(values)
    return None


def int_bounds(node: ir.Node, depth) -> tuple[int, int] | None:
    """(lowest, highest) value of an integer expression over every layer (`layer` is 0 .. depth - 1), or
    None where it is not known at compile time (hyperparameters, sizes, per-sample values).  `depth` is the
    number of layers or a function giving it, called only if the expression uses `layer` (the `layers`
    line itself is checked before the depth is known)."""
    def layer(n: ir.Node):
        if n.op == "var" and n.attrs.get("kind") == "layer":
            return 0, (depth() if callable(depth) else depth) - 1
        return None

    return _interval(node, layer, lambda v: v if isinstance(v, int) else None, products=True)


def single_dim(size) -> str | None:
    """The dim name when an axis size is exactly one dim (`T`), else None."""
    if isinstance(size, DimExpr) and len(size.terms) == 1 and size.const == 0 and size.terms[0][1] == 1 \
            and "*" not in size.terms[0][0]:
        return size.terms[0][0]
    return None


def symbolic_index_problem(index: ir.Node, size, text: str) -> tuple[str, str] | None:
    """(message, hint) when a dim-valued index is never below the axis size (`c[n]`, `c[n + 1]` with
    `c : real[n]`)."""
    if isinstance(index.static, DimExpr) and isinstance(size, DimExpr) and not index.static.is_int:
        gap = size + DimExpr.of(-1) * index.static  # size - index
        if gap.is_int and gap.const <= 0:
            return (f"index `{text}` is out of range for axis of size {size}",
                    f"indices start at 0 and go up to {size} - 1")
    return None


def loop_index_range(node: ir.Node, loop_counts: dict) -> tuple | None:
    """(lowest, highest) value, as DimExprs, of an integer expression that reads the index of an enclosing
    `repeat N as j:` loop (j runs from 0 to N - 1; N a literal or a dim expression), over the loop's passes;
    None where the expression reads no such index or its range is not a sum of dims and integers."""
    found = False

    def index(n: ir.Node):
        nonlocal found
        if n.op == "var" and n.attrs.get("kind") == "index":
            count = loop_counts.get(n.attrs.get("name"))
            if count is None:
                return None  # an index of unknown range: not bounded (a var has no other bound below)
            found = True
            return DimExpr.of(0), DimExpr.of(count) + DimExpr.of(-1)
        return None

    bounds = _interval(node, index, DimExpr.of, products=False)
    return bounds if found else None


def loop_index_problem(bounds: tuple, size, text: str) -> tuple[str, str] | None:
    """(message, hint) when an index reading a loop index falls outside its axis on some pass of the loop
    (`X[t + 2]` with `repeat T as t` and `X : real[T + 1, ...]`; `X[t - 1]` at t = 0 would wrap around)."""
    lo, hi = bounds
    if lo.is_int and lo.const < 0:
        return (f"index `{text}` is {lo.const} on the first pass of its `repeat` loop: negative",
                "indices start at 0; start the loop later or shift the index (e.g. `X[t]` with the loop over T - 1)")
    if isinstance(size, DimExpr):
        gap = size + DimExpr.of(-1) * hi  # size - highest index
        if gap.is_int and gap.const <= 0:
            return ((f"index `{text}` reaches {hi} on the last pass of its `repeat` loop, out of range for an "
                    f"axis of size {size}"), f"indices go up to {size + DimExpr.of(-1)}")
    return None


def dim_relation(index: ir.Node, size, why: str) -> tuple | None:
    """For a dim-valued index of an axis whose size is other dims (`ys[n]` with `ys : real[T, k]`), the
    relation the sizes must satisfy, `size >= index + 1`, as (size terms, size const, index terms, index
    const, why) for the generated module to check once the dims are bound; None where it always holds
    or the index is not a dim expression."""
    static = DimExpr.of(index.static) if isinstance(index.static, int) and not isinstance(index.static, bool) \
        else index.static
    if not (isinstance(static, DimExpr) and isinstance(size, DimExpr)) or (static.is_int and size.is_int):
        return None  # two numbers: check/bounds.py index_problem decides at compile time
    if static.is_int and static.const < 0:
        return None  # negative: a located error elsewhere
    gap = size + DimExpr.of(-1) * static  # size - index: a positive number always holds
    if gap.is_int and gap.const > 0:
        return None
    return (tuple(size.terms), size.const, tuple(static.terms), static.const, why)


def int_power_problem(base: ir.Node, exponent: ir.Node) -> tuple[str, str] | None:
    """(message, hint) for an integer base that is not a literal (a dim, an `int` hyperparameter, `layer`) raised
    to a literal integer power of 63 or more: the power stays an integer, and a 64-bit one overflows for every
    base but 0 and ±1 (literal bases are folded and bounded by check/literals)."""
    k = exponent.attrs.get("value") if exponent.op == "number" else None
    if base.type.dtype != INT or base.op == "number" or not isinstance(k, int) or k < 63:
        return None
    return (f"an integer to the power {k} overflows 64-bit integers (2^63 already does)",
            f"for a real power write the exponent as a real: `^ {k}.0`")


def index_problem(bounds: tuple[int, int], size, text: str) -> tuple[str, str] | None:
    """(message, hint) when an index with these bounds can fall outside an axis of literal size `size`."""
    lo, hi = bounds
    what = f"index {lo}" if lo == hi else f"index `{text}` (from {lo} to {hi} over the layers)"
    if lo < 0:
        return f"{what} is negative", "indices start at 0"
    if isinstance(size, DimExpr) and size.is_int and hi >= size.const:
        return (f"{what} is out of range for axis of size {size}", f"indices start at 0 and go up to {size.const - 1}")
    return None


def onehot_problem(index: ir.Node, length, depth) -> tuple[str, str] | None:
    """(message, hint) when `onehot(index, length)` is out of range for some layer or sample."""
    if isinstance(index.static, DimExpr) and isinstance(length, DimExpr) and index.static == length:
        return (f"`onehot` index `{length}` is always out of range for length {length}",
                f"indices go from 0 to {length} - 1; for the last entry write `onehot({length} - 1, {length})`")
    bounds = int_bounds(index, depth)
    if bounds is not None:
        lo, hi = bounds
        if lo < 0 or (isinstance(length, DimExpr) and length.is_int and hi >= length.const):
            what = f"{lo}" if lo == hi else f"from {lo} to {hi} over the layers"
            return f"`onehot` index ({what}) is out of range for length {length}", "indices go from 0 to length - 1"
    if index.op == "argmax" and index.args and index.args[0].type.rank >= 1:
        size = index.args[0].type.shape[-1]
        if size != length:
            message = (f"`onehot(argmax(v), {length})`: `v` has {size} entries, so the index can reach {size} - 1, "
                       f"but the length is {length}")
            return message, f"give the length of `v`: `onehot(argmax(v), {size})`"
    return None


def _int_at(node: ir.Node, layer: int) -> int | None:
    if node.op == "var" and node.attrs.get("kind") == "layer":
        return layer
    if isinstance(node.static, int):
        return node.static
    if node.op == "number" and isinstance(node.attrs.get("value"), int):
        return node.attrs["value"]
    if node.op == "neg" and len(node.args) == 1:
        v = _int_at(node.args[0], layer)
        return None if v is None else -v
    if node.op in ("add", "sub", "mul") and len(node.args) == 2:
        a, b = (_int_at(x, layer) for x in node.args)
        if a is None or b is None:
            return None
        return a + b if node.op == "add" else a - b if node.op == "sub" else a * b
    return None


def zero_layer(node: ir.Node, depth) -> int | None:
    """The first layer at which an integer expression of `layer` and literals is 0 (`1 / layer` divides by
    zero at layer 0), or None (never zero, or not such an expression)."""
    if node.op == "neg" and len(node.args) == 1:
        return zero_layer(node.args[0], depth)
    if node.op == "mul" and len(node.args) == 2 and int_bounds(node, depth) is None:  # `L * (layer - 1)`
        zeros = [z for z in (zero_layer(a, depth) for a in node.args) if z is not None]
        return min(zeros) if zeros else None
    if not any(n.op == "var" and n.attrs.get("kind") == "layer" for n in node.walk()):
        return None
    if int_bounds(node, depth) is None:
        return None
    for layer in range(min(depth() if callable(depth) else depth, 100_000)):
        value = _int_at(node, layer)
        if value is None:
            return None
        if value == 0:
            return layer
    return None
