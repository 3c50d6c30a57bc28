"""The checker's scope: declaring names (once, legal ones), finding where a name is declared, and
checking types and dimensions (with `num_layers` substituted by the depth)."""

from __future__ import annotations

from .. import ast, ir
from ..ast import DimExpr
from ..diagnostics import Diagnostic, Span, did_you_mean
from ..types import COMPLEX, INT, OPERATOR, REAL, Type
from .expressions import constant_value
from .literals import MAX_COUNT
from .names import Symbol, kind_noun, name_problem, with_article


class ScopeMixin:
    """Names, types and dims (a part of `Checker`)."""

    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.sink.error(message, span, hint)

    def _declare(self, sym: Symbol) -> bool:
        name = sym.name
        problem = name_problem(name, sym.kind)
        if problem is not None:
            self.error(problem[0], sym.span, problem[1])
            self._poison(name, sym.kind, sym.span)
            return False
        if name in self.scope:
            prev = self.scope[name]
            diag = Diagnostic(f"`{name}` is already defined (as {with_article(kind_noun(prev.kind))})",
                              sym.span, "every name is declared once; rename one of them")
            diag.notes.append(("first defined here", prev.span))
            self.sink.items.append(diag)
            return False
        self.scope[name] = sym
        return True

    def _poison(self, name: str, kind: str, span: Span) -> None:
        """Enter a name whose declaration failed, so that its uses do not report follow-on errors."""
        if name not in self.scope:
            self.scope[name] = Symbol(name, kind, None, ir.CONST, span, broken=True)  # type: ignore[arg-type]

    def _declared_later(self, name: str):
        """(span, noun, block) of a declaration of `name` anywhere in the spec (top level, or a `let` of the
        `step:` or `final:` block), if any."""
        for d in self.spec.decls:
            if d.name == name:
                return d.span, kind_noun(d.kind), "top"

        def walk(body):
            for s in body or []:
                if isinstance(s, ast.Local) and s.target == name:
                    return s.target_span
                if isinstance(s, ast.Repeat):
                    found = walk(s.body)
                    if found:
                        return found
            return None

        for block, body in (("step", self.spec.step), ("final", self.spec.final)):
            found = walk(body)
            if found is not None:
                return found, "`let` value", block
        return None

    def _type(self, ts: ast.TypeSyntax, what: str, allow_int=False, allow_operator=False) -> Type | None:
        base_span = Span(ts.span.line, ts.span.column, ts.span.line, ts.span.column + len(ts.base))
        if ts.base == "function":
            self.error(f"{with_article(what)} cannot be a function", ts.span,
                       "only data can be a function: `data D : function(real[n], real) -> real[n]`")
            return None
        if ts.base == OPERATOR:
            if not allow_operator:
                self.error(f"{with_article(what)} cannot have an operator type", ts.span,
                           "only data can be an operator; declare it `real[...]` or `complex[...]`")
                return None
            dims = self._dims(ts.dims or [], ts.dim_spans)
            out = self._dims(ts.out_dims or [], ts.dim_spans)
            if dims is None or out is None:
                return None
            return Type(OPERATOR, tuple(dims), False, tuple(out))
        if ts.base not in (REAL, COMPLEX, INT):
            hint = did_you_mean(ts.base, (REAL, COMPLEX, INT)) or "types are `real`, `complex`, `int` (hypers only)"
            self.error(f"unknown type `{ts.base}`", base_span, hint)
            return None
        if ts.base == INT and not allow_int:
            self.error(f"{with_article(what)} cannot be `int`", base_span,
                       "use `real`: integers (indices) are data, inputs, states and hyperparameters, never trained")
            return None
        dims = self._dims(ts.dims or [], ts.dim_spans)
        if dims is None:
            return None
        return Type(ts.base, tuple(dims))

    def _dims(self, dims: list[DimExpr], spans: list[Span]) -> list[DimExpr] | None:
        ok = True
        declared = [s.name for s in self.scope.values() if s.kind == "dim"]
        for i, d in enumerate(dims):
            span = spans[i] if i < len(spans) else None
            for name in sorted(d.names()):
                if name == "num_layers" and "*" not in "".join(n for n, _ in d.terms):
                    continue  # the depth: a compile-time constant, substituted below
                sym = self.scope.get(name)
                if sym is not None and sym.kind == "hyper" and sym.type is not None and sym.type.dtype == INT:
                    self.size_hypers.add(name)  # an `int` hyperparameter used as a size (`real[m, n]`)
                    continue
                if sym is None or sym.kind != "dim":
                    ok = False
                    if ("dim", name) in self.reported or (sym is not None and sym.broken):
                        continue  # one report per unknown dimension; none for a declaration already reported
                    self.reported.add(("dim", name))
                    hint = did_you_mean(name, declared)
                    if sym is not None:
                        self.error(f"`{name}` is {with_article(kind_noun(sym.kind))}, not a dimension", span,
                                   hint or "sizes in a type are names declared with `dims` or integers")
                    else:
                        self.error(f"unknown dimension `{name}`", span,
                                   hint or f"declare it with the others: `dims {', '.join(declared + [name])}`")
            if d.is_int and d.const <= 0:
                ok = False
                self.error(f"a dimension must be positive, got {d.const}", span,
                           "a scalar has no brackets: write `real`, not `real[0]`" if d.const == 0 else None)
        if not ok:
            return None
        return [self._substitute_depth(d) for d in dims]

    def _depth(self) -> int:
        """The number of layers (`--layers`, else `layers N`), known at compile time; 1 if invalid
        (`_layers` reports why)."""
        if self._depth_cache is None and self.__dict__.get("_depth_busy"):
            return 1  # `layers num_layers`: the depth is being computed (`_layers` reports the circularity)
        if self._depth_cache is None:
            self._depth_busy = True
            depth = self._layers_option()
            if depth is None and self.spec.layers is not None:
                # evaluate `layers N` quietly: `_layers` reports any problem with that line, once
                errors, reported = len(self.sink.items), set(self.reported)
                node = self.expr(self.spec.layers)
                del self.sink.items[errors:]
                self.reported = reported
                depth = constant_value(node) if node is not None else None
            self._depth_cache = depth if isinstance(depth, int) and 0 < depth <= MAX_COUNT else 1
            self._depth_busy = False
        return self._depth_cache

    def _layers_option(self) -> int | None:
        """The `--layers` depth, if one was given and is positive (the schedule pass reports a bad one)."""
        depth = self.layers_option
        return depth if isinstance(depth, int) and not isinstance(depth, bool) and 0 < depth <= MAX_COUNT else None

    def _substitute_depth(self, d: DimExpr) -> DimExpr:
        if "num_layers" not in dict(d.terms):
            return d
        coef = dict(d.terms)["num_layers"]
        return DimExpr(tuple(t for t in d.terms if t[0] != "num_layers"), d.const + coef * self._depth())

    def _text(self, span: Span) -> str:
        if span.line != span.end_line:
            return self.source.line_text(span.line)[span.column - 1:].strip()
        return self.source.line_text(span.line)[span.column - 1: span.end_column - 1]

    def _code_line(self, line: int | None = None, first: bool = False) -> Span:
        """A span on the first token of a line of code: `line`, else the first or the last code line."""
        rows = self.source.text.split("\n")
        if line is None:
            order = range(1, len(rows) + 1) if first else range(len(rows), 0, -1)
            line = next((i for i in order if rows[i - 1].strip() and not rows[i - 1].strip().startswith("#")),
                        1 if first or not rows else max(1, len(self.source.text.rstrip("\n").split("\n"))))
        text = self.source.line_text(line)
        col = len(text) - len(text.lstrip()) + 1
        word = text.strip().split(" ")[0].split("(")[0] if text.strip() else ""
        return Span.point(line, col, len(word))

