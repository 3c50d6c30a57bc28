"""Statements of the `step:` and `final:` blocks: `let` temporaries, assignments to states and
temporaries, `repeat N:` blocks.  Assigned names get the level of the block they are assigned in."""

from __future__ import annotations

from .. import ast, ir
from ..diagnostics import Diagnostic, did_you_mean
from ..types import BOOL, COMPLEX, broadcast, shape_str
from .expressions import constant_value
from .literals import MAX_COUNT
from .names import Symbol, kind_noun


class StatementMixin:
    """Checking statements (a part of `Checker`)."""

    def _assigned_names(self, body) -> list[str]:
        out: list[str] = []
        for s in body:
            if isinstance(s, ast.Assign) and s.target not in out:
                out.append(s.target)
            elif isinstance(s, ast.Repeat):
                for n in self._assigned_names(s.body):
                    if n not in out:
                        out.append(n)
        return out

    @staticmethod
    def _read_before_written(body, name: str) -> bool:
        """Whether a pass of `body` can read `name` before writing it (so it reads the previous pass's value)."""
        def walk(stmts) -> str | None:  # "read", "written" or None (neither) in program order
            for st in stmts:
                if isinstance(st, ast.Repeat):
                    if any(n.name == name for n, _ in ast.names_read(st.count)):
                        return "read"
                    inner = walk(st.body)
                    if inner is not None:  # a write inside an inner loop is a write (a repeat runs at least once)
                        return inner
                    continue
                value, index = getattr(st, "value", None), getattr(st, "index", None)
                if any(n.name == name for n, _ in ast.names_read([x for x in (value, index) if x is not None])):
                    return "read"
                if getattr(st, "target", None) == name:
                    return "read" if index is not None else "written"  # X[i] = v keeps the other entries
            return None

        return walk(body) == "read"

    def _block(self, body, depth: int, states: list[ir.State]) -> list:
        out = []
        for s in body:
            if isinstance(s, ast.Local):
                node = self.expr(s.value)
                if node is None:
                    self._poison(s.target, "local", s.target_span)
                    continue
                if s.target in self.scope and self.scope[s.target].kind == "local":
                    sym = self.scope[s.target]
                    if not sym.broken:
                        diag = Diagnostic(f"`{s.target}` is already a `let` value of this block", s.target_span,
                                          f"to give it a new value write `{s.target} = ...` without `let`")
                        diag.notes.append(("first defined here", sym.span))
                        self.sink.items.append(diag)
                    # go on with the new value, as the author meant, so later lines report no follow-on errors
                    sym.type, sym.level, sym.py, sym.static, sym.broken = node.type, node.level, node.py, \
                        node.static, False
                    continue
                if node.type.dtype == BOOL:
                    self.error("a `let` cannot hold a comparison", s.value.span,
                               "use the comparison inside `where(cond, a, b)`")
                    self._poison(s.target, "local", s.target_span)
                    continue
                if self._declare(Symbol(s.target, "local", node.type, node.level, s.target_span, version=1,
                                        py=node.py, static=node.static)):
                    self.locals_types[s.target] = node.type
                    out.append(ir.Assign(s.target, "local", node, s.span, depth, version=1))
            elif isinstance(s, ast.Assign):
                node = self._index_assign(s, depth) if s.index is not None else self._assign(s, depth)
                if isinstance(node, str):  # an unknown target: reported as for a plain assignment
                    node = self._assign(s, depth)
                if node is not None:
                    out.append(node)
            elif isinstance(s, ast.Repeat):
                out.append(self._repeat(s, depth, states))
        return out

    def _assign(self, s: ast.Assign, depth: int):
        sym = self.scope.get(s.target)
        if sym is None:
            hint = did_you_mean(s.target, [n for n, x in self.scope.items() if x.kind in ("state", "local")])
            later = self._declared_later(s.target)
            if later is not None and later[2] != "top" and later[0].line > s.target_span.line:
                hint = f"`{s.target}` gets its `let` further down; introduce it here with `let {s.target} = ...`"
            self.error(f"assignment to undeclared `{s.target}`", s.target_span,
                       hint or f"declare it as a state (`state {s.target} : real[...] = 0`) or introduce a "
                               f"temporary with `let {s.target} = ...`")
            self.expr(s.value)
            return None
        if sym.broken:
            self.expr(s.value)
            return None
        if sym.kind not in ("state", "local"):
            why = {"param": "a parameter changes only by training",
                   "data": "data is fixed when the module is constructed",
                   "hyper": "a hyperparameter is fixed when the module is constructed",
                   "let": "a top-level `let` is a constant, computed once",
                   "input": "an input is fixed for the whole forward call",
                   "dim": "a dimension is a size"}.get(sym.kind, "it is not a state")
            self.error(f"cannot assign to the {kind_noun(sym.kind)} `{s.target}`; only states and "
                       "`let` values change", s.target_span,
                       f"{why}; for a value updated every layer declare a state: `state {s.target}_k : "
                       f"{sym.type if sym.type is not None and sym.kind != 'dim' else 'real'} = {s.target}`"
                       if sym.kind not in ("dim",) else why)
            self.expr(s.value)
            return None
        node = self.expr(s.value)
        if node is None:
            return None
        target_t = sym.type
        if node.type.dtype == BOOL:
            self.error("cannot assign a comparison", s.value.span,
                       "to choose between values use `where(cond, a, b)`")
            return None
        if node.type.shape != target_t.shape:
            if broadcast(target_t.shape, node.type.shape) == target_t.shape and sym.kind == "state":
                pass  # a broadcastable value (e.g. a scalar) fills the state
            else:
                self.error(f"`{s.target}` is {target_t} but the value has shape {shape_str(node.type.shape)}",
                           s.value.span, f"an update must keep the declared shape {shape_str(target_t.shape)}"
                           if sym.kind == "state" else
                           "a `let` value keeps its shape; introduce a new name for a value of another shape")
                return None
        if node.type.dtype == COMPLEX and target_t.dtype != COMPLEX:
            self.error(f"complex value assigned to the real {sym.kind} `{s.target}`", s.value.span,
                       "a real value is required: take `real(...)`, `abs(...)` or `abs2(...)`, or declare the state "
                       "`complex[...]`" if sym.kind == "state" else
                       "a `let` keeps the dtype of its first value: take `real(...)`, `abs(...)` or `abs2(...)` "
                       "here, or give the `let` a complex first value")
            return None
        if sym.kind == "state" and not self._assign_dtype_ok(s, target_t, node, sym.kind):
            return None
        if sym.kind == "state" and node.type.batched and s.target not in self.batched_states:
            self.batched_states.add(s.target)
        if sym.kind == "local":
            sym.type = node.type
            sym.level = max(node.level, depth if sym.level >= depth else node.level)
            self.locals_types[s.target] = node.type
            sym.py = node.py
        sym.version += 1
        return ir.Assign(s.target, sym.kind, node, s.span, depth, version=sym.version)

    def _repeat(self, s: ast.Repeat, depth: int, states):
        count = self.expr(s.count)
        value = None if count is None else constant_value(count)
        if count is not None and not self._repeat_count_ok(count, s):
            pass
        elif isinstance(value, int) and value <= 0:
            self.error(f"`repeat` count must be positive, got {value}", s.count.span,
                       "a `repeat` block runs its statements at least once; remove the block to skip them")
        elif isinstance(value, int) and value > MAX_COUNT:
            self.error(f"`repeat` count is at most {MAX_COUNT:,}, got {value:.3g}", s.count.span,
                       "an inner loop of more iterations than this is not unrolled; use a smaller count")
        elif count is not None and count.op == "var" and count.attrs.get("kind") == "hyper" \
                and isinstance(count.static, int) and count.static > MAX_COUNT:  # the default of an `int` hyperparameter: the same bound
            self.error(f"`repeat` count is at most {MAX_COUNT:,}, got `{count.attrs['name']}` = {count.static:.3g} "
                       "(its default)", s.count.span, "give the hyperparameter a smaller default")
        inner = depth + 1
        has_index = self._loop_index(s, inner)
        if has_index:  # the index's range, for bound checks of the indices that read it (check/bounds.py)
            static = None if count is None else count.static
            self.loop_counts[s.index] = static if isinstance(static, (int, ast.DimExpr)) and not isinstance(
                static, bool) else value if isinstance(value, int) else None
        carried = self._assigned_names(s.body)
        for name in carried:
            sym = self.scope.get(name)
            if sym is not None and sym.kind in ("state", "local"):
                sym.level = inner
                sym.version += 1
        entry = {name: self.scope[name].type.batched for name in carried
                 if name in self.scope and self.scope[name].kind == "local" and self.scope[name].type is not None}
        body = self._block(s.body, inner, states)
        for name, was in entry.items():  # the next pass reads the value the loop leaves: same batching required
            sym = self.scope.get(name)
            if sym is not None and sym.kind == "local" and sym.type is not None and sym.type.batched != was \
                    and value != 1 and self._read_before_written(s.body, name):  # `repeat 1`: no next pass
                self.loop_batch_changes.append((name, s.span, sym.type.batched))
        for name in carried:
            sym = self.scope.get(name)
            if sym is not None and sym.kind in ("state", "local"):
                sym.level = depth if sym.kind == "state" or sym.level > depth else sym.level
                sym.level = max(sym.level, depth) if sym.kind == "local" else sym.level
                sym.version += 1
        if has_index:
            del self.scope[s.index]  # the index exists only inside its loop
            self.loop_counts.pop(s.index, None)
        return ir.Repeat(count, body, s.span, inner, carried, s.index if has_index else None, s.backward)
