"""Functional sub-networks: `net h : mlp(...) functional(nw)` binds the dim `nw` to the number of the
network's weights (`functional(n1, n2)`: one dim per linear layer, the weight groups of a decoupled
EKF); `init(h)` is its seeded initial weight vector; `h(x, weights=w)` calls it with the weights `w`, a
value of the algorithm (a state it updates).  A part of `Checker` (docs/language.md §3.9a)."""

from __future__ import annotations

from .. import ast, ir
from ..ast import DimExpr
from ..types import COMPLEX, REAL, Type


class FunctionalMixin:
    def _functional_dims(self, d: ast.Decl, a: ast.Annotation, sizes: dict, per_layer: bool):
        """The dims of `functional(...)` (a tuple), or None after an error."""
        if d.net_kind != "mlp":
            self.error(f"only an `mlp` can be functional, not a `{d.net_kind}`", a.span,
                       "write the network as `mlp(in=.., out=.., width=.., depth=..) functional(nw)`")
            return None
        if per_layer:
            self.error("a functional sub-network has no per-layer copies: its weights are a value", a.span,
                       "drop `per_layer`; keep one weight vector per layer in a state if the algorithm needs it")
            return None
        names = []
        for arg in a.args:
            if not isinstance(arg, ast.Name):
                self.error("`functional(...)` names the dims bound to the number of weights, e.g. `functional(nw)`",
                           arg.span, "declare the dim first: `dims nw`")
                return None
            sym = self.scope.get(arg.name)
            if sym is None or sym.kind != "dim":
                self.error(f"`{arg.name}` is not a declared dim", arg.span,
                           f"declare it on the `dims` line (`dims ..., {arg.name}`); `functional` binds it to the "
                           "number of weights")
                return None
            if arg.name in self.net_dims or arg.name in names:
                self.error(f"the dim `{arg.name}` is already bound", arg.span,
                           "give each weight count its own dim")
                return None
            names.append(arg.name)
        depth = sizes.get("depth", DimExpr.of(2))
        if not names or (len(names) > 1 and not (depth.is_int and depth.const == len(names))):
            self.error(f"`functional` takes one dim (all the weights) or one per linear layer "
                       f"({depth} here), got {len(names)}", a.span,
                       "e.g. `functional(nw)`, or `functional(n1, n2)` with `depth=2` (the weight groups of a "
                       "decoupled EKF)")
            return None
        return tuple(names)

    def _functional_weights_size(self, info: ir.Net) -> DimExpr:
        total = DimExpr.of(info.functional[0])
        for name in info.functional[1:]:
            total = total + DimExpr.of(name)
        return total

    def _functional_call(self, e: ast.Call, sym, info: ir.Net):
        """`h(x, weights=w)`: x real[..., in] (rows), w real[nw] (or the sum of the group dims)."""
        size = self._functional_weights_size(info)
        weights = [k for k in e.kwargs if k.name == "weights"]
        others = [k for k in e.kwargs if k.name != "weights"]
        if others:
            self.error(f"a functional sub-network takes `weights=` only, not `{others[0].name}=`", others[0].span)
            return None
        if not weights:
            self.error(f"the functional sub-network `{sym.name}` needs its weights", e.span,
                       f"pass them: `{sym.name}(x, weights=w)` with `w : real[{size}]` (e.g. a state "
                       f"initialised with `init({sym.name})`)")
            return None
        if len(e.args) != 1:
            self.error(f"the functional sub-network `{sym.name}` takes one input (and `weights=`)", e.span,
                       "concatenate several inputs into one vector with `cat(a, b)`")
            return None
        if self.context not in ("step", "final", "let", "state"):
            self.error(f"the sub-network `{sym.name}` cannot be used here", e.span)
            return None
        x, w = self.expr(e.args[0]), self.expr(weights[0].value)
        if x is None or w is None:
            return None
        for node, src in ((x, e.args[0]), (w, weights[0].value)):
            if node.type.dtype == COMPLEX:
                self.error(f"the sub-network `{sym.name}` needs real values, got {node.type}", src.span)
                return None
        if w.type.shape != (size,):
            self.error(f"the weights of `{sym.name}` are real[{size}], got {w.type}", weights[0].value.span,
                       f"`functional({', '.join(info.functional)})` binds the number of weights; "
                       f"`init({sym.name})` has the right size")
            return None
        shape = self._mlp_features(sym.name, [x], [e.args[0]], info.in_size, info.out_size)
        if shape is None:
            return None
        level = max(x.level, w.level, ir.FORWARD)
        return ir.Node("net_call", [x, w], Type(REAL, shape, x.type.batched or w.type.batched), e.span, level,
                       {"name": sym.name, "per_layer": False, "kind": info.kind, "functional": True})

    def _net_init(self, e: ast.Call):
        """`init(h)`: the functional network's initial weights, real[nw] (the same for every sample)."""
        arg = e.args[0] if len(e.args) == 1 and not e.kwargs else None
        sym = self.scope.get(arg.name) if isinstance(arg, ast.Name) else None
        if sym is not None and sym.broken:  # its declaration was reported
            return None
        if sym is None or sym.kind != "net":
            self.error("`init` takes the name of a functional sub-network: `init(h)`", e.span,
                       "declare it `net h : mlp(in=.., out=..) functional(nw)`")
            return None
        info = self._net_info[sym.name]
        if not info.functional:
            self.error(f"`{sym.name}` is not functional: its weights are parameters of the module, not a value",
                       arg.span, "add `functional(nw)` to its declaration (and `nw` to `dims`) to update its "
                                 "weights in the algorithm")
            return None
        if self.context not in ("step", "final", "let", "state"):
            self.error("`init(...)` cannot be used here", e.span)
            return None
        size = self._functional_weights_size(info)
        return ir.Node("net_init", [], Type(REAL, (size,), False), e.span, ir.FORWARD, {"name": sym.name})
