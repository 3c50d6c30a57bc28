"""Integer index values and indexed loops (a part of `Checker`):

* integer tensors never mix with reals silently (`as_real(i)` converts);
* `repeat N as j:` / `repeat N as j backward:` -- the loop index `j` is a Python integer whose level is
  the loop's own, so that nothing reading it is hoisted out of the loop;
* indexed writes `X[i] = v` of a state or `let` value, lowered to `X = set_index(X, i, v)` (out of place);
* the depth taken from a dim (`layers T`).
"""

from __future__ import annotations

from .. import ast, ir
from ..diagnostics import Span
from ..types import BOOL, COMPLEX, INT, REAL, Type, broadcast, shape_str
from .names import Symbol, kind_noun, with_article

# operators an integer tensor may enter: integer arithmetic and comparison, the index operand of
# gather/scatter/indexing, the cast, and the operators whose result stays integer
INTEGER_OPS = {"add", "sub", "mul", "neg", "mod", "floordiv", "lt", "gt", "le", "ge", "eq", "ne", "as_real",
               "take", "segment_sum", "max", "min", "where", "onehot", "reshape", "cat", "stack", "sum", "transpose"}


def integer_tensor(node: ir.Node) -> bool:
    """An integer value that is a tensor (int data, inputs, states, argmax...), not a Python int."""
    return node.type.dtype == INT and not node.py


class IndexMixin:
    """Checking integer values and indexed loops (a part of `Checker`)."""

    def _integer_mixing(self, opname: str, args: list[ir.Node], arg_spans, span, symbol) -> bool:
        """False (after reporting) when an integer tensor meets real values without a cast."""
        ints = [i for i, a in enumerate(args) if integer_tensor(a)]
        if not ints:
            return True
        label = f"`{symbol}`" if symbol else f"`{opname}`"
        if opname == "div":
            self.error(f"{label} of integer values: `/` is true division and integers do not become reals silently",
                       span, "for integer division write `//`; for a real quotient convert first: `as_real(i) / n`")
            return False
        if opname not in INTEGER_OPS:
            i = ints[0]
            self.error(f"{label} needs real values, but `{self._text(arg_spans[i])}` is an integer index value "
                       f"({args[i].type})", arg_spans[i],
                       f"integers do not become reals silently; convert it: `as_real({self._text(arg_spans[i])})`")
            return False
        if opname in ("add", "sub", "mul", "max", "min", "mod", "floordiv", "lt", "gt", "le", "ge", "eq", "ne"):
            for i, a in enumerate(args):
                if a.type.dtype not in (INT, BOOL):
                    j = ints[0]
                    self.error(f"{label} mixes the integer value `{self._text(arg_spans[j])}` ({args[j].type}) with "
                               f"the {a.type.dtype} value `{self._text(arg_spans[i])}`", span,
                               f"integers do not become reals silently; convert it: "
                               f"`as_real({self._text(arg_spans[j])})`")
                    return False
        return True

    def _loop_index(self, s: ast.Repeat, inner: int) -> bool:
        """Declare the index of `repeat N as j:` for the loop body (a Python int at the loop's level)."""
        if s.index is None:
            return False
        if s.index in self.scope and not self.scope[s.index].broken:
            prev = self.scope[s.index]
            self.error(f"the loop index `{s.index}` is already defined (as {with_article(kind_noun(prev.kind))})",
                       s.index_span, "name the index after something not declared yet, e.g. `j`, `k`, `t`")
            return False
        if self._declare(Symbol(s.index, "index", Type(INT), inner, s.index_span, py=True)):
            if s.index not in self.loop_indices:
                self.loop_indices.append(s.index)
            return True
        return False

    def _repeat_count_ok(self, count: ir.Node, s: ast.Repeat) -> bool:
        t = count.type
        if t.dtype == INT and t.rank == 0 and count.py and not t.batched:
            return True
        what = "a per-sample value" if t.batched else "an integer tensor" if t.dtype == INT else str(t)
        self.error(f"a `repeat` count must be a Python integer known before the loop, got {what}", s.count.span,
                   "an integer literal, an `int` hyperparameter, a dim, `layer`, or integer arithmetic on them "
                   "(`min(layer, m)`, `T - 1`)")
        return False

    def _index_assign(self, s: ast.Assign, depth: int):
        """`X[i] = v`: X becomes a copy of itself with entry i (of its first axis) replaced by v."""
        sym = self.scope.get(s.target)
        if sym is None or sym.broken or sym.kind not in ("state", "local"):
            if sym is None or sym.broken:
                return "plain"  # the plain assignment reports the unknown name
            self.error(f"cannot write into the {kind_noun(sym.kind)} `{s.target}`; only states and `let` values "
                       "change", s.target_span,
                       "indexed writes `X[i] = v` replace one entry of a state (declare X with `state`)")
            self.expr(s.index)
            self.expr(s.value)
            return None
        index, value = self.expr(s.index), self.expr(s.value)
        if index is None or value is None:
            return None
        target_t = sym.type
        if target_t.rank == 0:
            self.error(f"cannot index the scalar {kind_noun(sym.kind)} `{s.target}`", s.index.span,
                       f"assign it whole: `{s.target} = ...`")
            return None
        if not (index.type.dtype == INT and index.type.rank == 0 and index.py and not index.type.batched):
            self.error(f"the index of an indexed write must be a Python integer, got {index.type}"
                       + (" per sample" if index.type.batched else ""), s.index.span,
                       "`layer`, a loop index, an `int` hyperparameter, a dim, or integer arithmetic on them")
            return None
        if not self._index_in_range(index, target_t.shape[0], s.index.span, s.span):
            return None
        entry = tuple(target_t.shape[1:])
        if broadcast(entry, value.type.shape) != entry:
            self.error(f"`{s.target}[...]` is {shape_str(entry)} but the value has shape "
                       f"{shape_str(value.type.shape)}", s.value.span,
                       f"an entry of `{s.target}` ({target_t}) is {shape_str(entry)}")
            return None
        if target_t.dtype != INT and integer_tensor(value):
            self.error(f"integer value written into the {target_t.dtype} {kind_noun(sym.kind)} `{s.target}`",
                       s.value.span, f"convert it: `as_real({self._text(s.value.span)})`, or declare "
                       f"`{s.target}` as `int[...]`")
            return None
        if target_t.dtype == INT and value.type.dtype != INT:
            self.error(f"{value.type.dtype} value written into the integer {kind_noun(sym.kind)} `{s.target}`",
                       s.value.span, "integer states hold indices: `argmax`, `argmin`, integer arithmetic")
            return None
        if value.type.dtype == COMPLEX and target_t.dtype != COMPLEX:
            self.error(f"complex value written into the real {kind_noun(sym.kind)} `{s.target}`", s.value.span,
                       "take `real(...)`, `abs(...)` or `abs2(...)`")
            return None
        current = ir.Node("var", [], target_t.with_(batched=target_t.batched or s.target in self.batched_states),
                          s.target_span, sym.level,
                          {"name": s.target, "kind": sym.kind, "version": sym.version}, py=False)
        out_t = current.type.with_(batched=current.type.batched or value.type.batched)
        span = Span(s.span.line, s.span.column, s.value.span.end_line, s.value.span.end_column)
        node = ir.Node("set_index", [current, index, value], out_t, span,
                       max(current.level, index.level, value.level, depth))
        if sym.kind == "state" and out_t.batched:
            self.batched_states.add(s.target)
        if sym.kind == "local":
            sym.type = out_t
            self.locals_types[s.target] = out_t
        sym.version += 1
        return ir.Assign(s.target, sym.kind, node, s.span, depth, version=sym.version)

    def _assign_dtype_ok(self, s: ast.Assign, target_t: Type, node: ir.Node, kind: str) -> bool:
        """Integer and real values do not convert into each other on assignment."""
        if target_t.dtype in (REAL, COMPLEX) and integer_tensor(node):
            self.error(f"integer value assigned to the {target_t.dtype} {kind_noun(kind)} `{s.target}`", s.value.span,
                       f"convert it: `as_real({self._text(s.value.span)})`, or declare `{s.target}` as `int[...]`")
            return False
        if target_t.dtype == INT and kind == "state" and node.type.dtype != INT:
            self.error(f"{node.type.dtype} value assigned to the integer state `{s.target}`", s.value.span,
                       "integer states hold indices: `argmax`, `argmin`, integer arithmetic")
            return False
        return True

    def _layers_from_dim(self, node: ir.Node, span) -> str | None:
        """`layers T` with T a dim: the depth is that size, known per call."""
        if node.op != "var" or node.attrs.get("kind") != "dim":
            return None
        name = node.attrs["name"]
        per_layer = [p for p in self.scope.values() if p.kind in ("param", "net") and p.per_layer]
        if per_layer:
            self.error(f"the depth `{name}` is a size known only when the module runs, but "
                       f"`{per_layer[0].name}` is per layer", span,
                       "give a number of layers (`layers 10`), or make the parameter `shared`")
        return name
