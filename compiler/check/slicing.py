"""Slices: `x[1:]`, `x[:-1]`, `X[:, 1:]`, `X[0, 1:]` (a part of `Checker`).  A slice is lowered to the
registry's syntax entries `slice_axis(v, axis, start[, stop])` (one per axis with bounds) and
`pick(v, i, axis)` (one per integer item), so the planner, the emitter and `explain` treat it like any
other operator (compiler/operators/arrays.py)."""

from __future__ import annotations

from .. import ast, ir
from ..ast import DimExpr
from ..types import INT, Type


class SliceMixin:
    def _e_Slice(self, e: ast.Slice):
        value = self.expr(e.value)
        if value is None:
            return None
        rank = value.type.rank
        if len(e.items) > rank:
            self.error(f"{len(e.items)} subscripts for {value.type}, which has {rank} ax{'i' if rank == 1 else 'e'}s",
                       e.span, f"`{self._text(e.value.span)}` takes at most {rank} subscript{'s' if rank != 1 else ''}"
                       if rank else "a scalar has no axes")
            return None
        picks = []
        for axis, item in enumerate(e.items):
            if isinstance(item, ast.Range):
                if item.start is None and item.stop is None:
                    continue  # `:`: the whole axis
                bounds = [self._bound(item.start, 0, item.span), self._bound(item.stop, None, item.span)]
                if any(b is False for b in bounds):
                    return None
                args = [value, self._literal(axis, item.span), bounds[0]] + ([bounds[1]] if bounds[1] else [])
                value = self._apply("slice_axis", args, e.span, [e.value.span, item.span, item.span, item.span],
                                    call=True)
                if value is None:
                    return None
            else:
                index = self.expr(item)
                if index is None:
                    return None
                picks.append((axis, index, item.span))
        for axis, index, span in reversed(picks):  # the last axis first: the axis numbers before it stay valid
            value = self._apply("pick", [value, index, self._literal(axis, span)], e.span,
                                [e.value.span, span, span], call=True)
            if value is None:
                return None
        return value

    def _bound(self, expr: ast.Expr | None, default, span):
        """A slice bound as a node: an integer literal (negative: from the end) or a dim expression (`m`,
        `n - 1`); `default` when absent (None: no node); False after an error."""
        if expr is None:
            return None if default is None else self._literal(default, span)
        node = expr.operand if isinstance(expr, ast.Unary) and expr.op == "-" else expr
        if isinstance(node, ast.Number) and isinstance(node.value, int):
            return self._literal(-node.value if node is not expr else node.value, expr.span)
        value = self.expr(expr)
        if value is None:
            return False
        if isinstance(value.static, DimExpr):
            return value
        self.error("a slice bound must be an integer literal or a dimension", expr.span,
                   "write the bounds as numbers or dims, from the start (`x[1:]`, `W[m:]`) or from the end (`x[:-1]`)")
        return False

    @staticmethod
    def _literal(value: int, span) -> ir.Node:
        return ir.Node("number", [], Type(INT), span, ir.CONST, {"value": value}, py=True, static=value)
