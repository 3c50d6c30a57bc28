"""Special forms and calls of declared things: `prev(x)`, `history_sum(beta, x)`, `grad(f, x)`,
sub-network calls (`net` declarations) and user operators (`operator` data) with their adjoints."""

from __future__ import annotations

from .. import ast, ir
from ..ast import DimExpr
from ..diagnostics import Span, did_you_mean
from ..types import COMPLEX, INT, REAL, Type, shape_str
from .names import Symbol, kind_noun, with_article


class SpecialFormMixin:
    """Checking special forms (a part of `Checker`)."""

    def _prev(self, e: ast.Call):
        states = [s.name for s in self.scope.values() if s.kind == "state" and not s.broken]
        if self.context != "step":
            where = {"final": "in the `final:` block"}.get(self.context, "outside the `step:` block")
            hint = ("after the loop, a state already holds its value from the last layer: use it directly"
                    if self.context == "final" else
                    "`prev(x)` is the value of the state `x` at the start of the current layer")
            self.error(f"`prev(...)` is only available in the `step:` block, not {where}", e.span, hint)
            return None
        if len(e.args) != 1 or not isinstance(e.args[0], ast.Name):
            self.error("`prev` takes one state name: `prev(x)`", e.span,
                       "to use an expression of the previous values, apply `prev` to each state in it")
            return None
        name = e.args[0].name
        sym = self.scope.get(name)
        if sym is not None and sym.broken:
            return None
        if sym is None or sym.kind != "state":
            what = "not defined" if sym is None else with_article(kind_noun(sym.kind))
            hint = did_you_mean(name, states) or (
                "`prev` is the value of a state at the start of the layer; the states are "
                + ", ".join(f"`{x}`" for x in states) if states else "this spec declares no states")
            if sym is not None and sym.kind != "local":
                hint += f"; `{name}` does not change across layers, use it directly"
            self.error(f"`prev` needs a state, but `{name}` is {what}", e.args[0].span, hint)
            return None
        if name not in self.prev_used:
            self.prev_used.append(name)
        typ = sym.type.with_(batched=name in self.batched_states)
        return ir.Node("var", [], typ, e.span, ir.LAYER, {"name": name, "kind": "state", "prev": True, "version": -1})

    def _history_sum(self, e: ast.Call):
        """`history_sum(beta, x)`: sum_j beta[j] * x^(j), j = 0..layer, over the values the state x had at
        the start of each layer so far (x^(0) its initial value)."""
        if self.context != "step":
            self.error("`history_sum(...)` is only available in the `step:` block", e.span,
                       "it combines the values a state had at the start of the layers run so far")
            return None
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[1], ast.Name):
            self.error("`history_sum` takes a weight vector and a state name: `history_sum(beta, x)`", e.span)
            return None
        name = e.args[1].name
        sym = self.scope.get(name)
        if sym is not None and sym.broken:
            return None
        if sym is None or sym.kind != "state":
            states = [s.name for s in self.scope.values() if s.kind == "state" and not s.broken]
            self.error(f"`history_sum` needs a state, but `{name}` is not one", e.args[1].span,
                       did_you_mean(name, states) or "the history is kept for states only")
            return None
        beta = self.expr(e.args[0])
        if beta is None:
            return None
        depth = self._depth()
        if beta.type.dtype not in (REAL, INT) or beta.type.rank != 1 or beta.type.shape[0] != DimExpr.of(depth) \
                or beta.type.batched:
            self.error(f"the weights of `history_sum` are a real vector [num_layers] (here [{depth}]), got {beta.type}",
                       e.args[0].span, "declare them per layer: `param beta : real[num_layers] = onehot(layer, "
                       "num_layers) learned per_layer` (layer l uses beta[0..l])")
            return None
        if name not in self.history_used:
            self.history_used.append(name)
        typ = sym.type.with_(batched=name in self.batched_states)
        return ir.Node("history_sum", [beta], typ, e.span, ir.LAYER, {"name": name})

    def _grad(self, e: ast.Call):
        from ..grad import GradError, gradient_ast

        if len(e.args) != 2 or not isinstance(e.args[1], ast.Name):
            self.error("`grad` takes an expression and a variable: `grad(0.5 * norm(A @ x - y)^2, x)`", e.span)
            return None
        f = self.expr(e.args[0])
        if f is None:
            return None
        if f.type.rank != 0:
            self.error(f"`grad` needs a scalar function, got {f.type}", e.args[0].span,
                       "wrap the expression in `norm(...)^2`, `sum(...)` or `dot(...)`")
            return None
        wrt = e.args[1].name
        sym = self.scope.get(wrt)
        if sym is None:
            self.error(f"unknown name `{wrt}`", e.args[1].span, did_you_mean(wrt, list(self.scope)))
            return None
        if any(n.type.dtype == COMPLEX for n in f.walk()):
            self.error("`grad` handles real expressions only", e.args[0].span,
                       "for complex data write the gradient by hand, e.g. `A.H @ (A @ x - y)`")
            return None
        try:
            expr = gradient_ast(e.args[0], wrt, self._symbol_shapes(), e.span)
        except RecursionError:
            raise
        except Exception as err:  # noqa: BLE001 - GradError, or sympy failing on a form it does not handle
            # outside the symbolic path: autograd, re-evaluating f in the forward pass (compiler/check/diff_forms.py)
            reason = err if isinstance(err, GradError) else f"sympy: {type(err).__name__}"
            node = self._autodiff(e, "grad", f)
            if node is not None:
                node.attrs["grad_path"] = f"autograd ({reason})"
            return node
        node = self.expr(expr)
        if node is not None and node.type.shape != sym.type.shape:
            self.error(f"internal: gradient has shape {shape_str(node.type.shape)}, expected "
                       f"{shape_str(sym.type.shape)}", e.span)
            return None
        if node is not None:
            node.attrs["grad_of"] = self._text(e.args[0].span)
            node.attrs["grad_path"] = "symbolic"
        return node

    def _symbol_shapes(self) -> dict[str, tuple]:
        return {n: (s.kind, s.type.shape if s.type else ()) for n, s in self.scope.items()}


    def _net_call(self, e: ast.Call, sym: Symbol):
        info = self._net_info[sym.name]
        if any(k.name == "weights" for k in e.kwargs):
            self.error(f"`{sym.name}` is not functional: its weights are parameters of the module", e.span,
                       "declare it `... functional(nw)` (with `nw` on the `dims` line) to pass `weights=`")
            return None
        if info.kind == "dncnn" and info.options.get("sigma") == "input":
            return self._conditioned_call(e, sym, info)
        if not e.args or e.kwargs or (len(e.args) > 1 and info.kind != "mlp"):
            extra = " (an MLP may take several: their features are concatenated)" if info.kind == "cnn" else ""
            self.error(f"the sub-network `{sym.name}` takes one argument{extra}", e.span,
                       f"stack the channels into one image: `{sym.name}(cat(a, b, ...))`" if info.kind == "cnn"
                       else None)
            return None
        if self.context not in ("step", "final", "let", "state"):
            self.error(f"the sub-network `{sym.name}` cannot be used here", e.span)
            return None
        if sym.per_layer and self.context != "step":
            self.error(f"the per-layer sub-network `{sym.name}` can only be used inside `step:`", e.span,
                       "it has one copy per layer; outside the loop there is no layer to choose")
            return None
        args = [self.expr(a) for a in e.args]
        if any(a is None for a in args):
            return None
        kind, size_in, size_out = info.kind, info.in_size, info.out_size
        for a, a_ast in zip(args, e.args):
            if a.type.dtype == COMPLEX:
                self.error(f"the sub-network `{sym.name}` needs a real input, got {a.type}", a_ast.span,
                           "split a complex value into channels: `cat(real(v), imag(v))`")
                return None
        t = args[0].type
        if kind in ir.IMAGE_NETS:
            if t.rank < 3 or t.shape[-3] != size_in:
                self.error(f"the {ir.IMAGE_NETS[kind]} `{sym.name}` takes images [{size_in}, h, w] (channels first), got {t}",
                           e.args[0].span, "stack channels with `cat(a, b, ...)` (an image [h, w] counts as one "
                                           "channel), or give the state a channel axis: `real[1, h, w]`")
                return None
            shape = t.shape[:-3] + (size_out,) + t.shape[-2:]
        else:
            shape = self._mlp_features(sym.name, args, e.args, size_in, size_out)
            if shape is None:
                return None
        level = max([a.level for a in args] + [ir.LAYER if sym.per_layer else ir.FORWARD])
        return ir.Node("net_call", args, Type(REAL, shape, any(a.type.batched for a in args)), e.span, level,
                       {"name": sym.name, "per_layer": sym.per_layer, "kind": kind})

    def _conditioned_call(self, e: ast.Call, sym: Symbol, info):
        """`D(x, sigma)` of a `dncnn(..., sigma=input)`: an image stack [..., in, h, w] and a real scalar
        noise level (shared or per sample) -> [..., in, h, w]."""
        if len(e.args) != 2 or e.kwargs:
            self.error(f"the denoiser `{sym.name}` is conditioned on the noise level: call it as "
                       f"`{sym.name}(x, sigma)`", e.span, "`sigma` is a real number (the noise standard "
                       "deviation), the same for every image of the sample")
            return None
        if self.context not in ("step", "final", "let", "state") or (sym.per_layer and self.context != "step"):
            self.error(f"the sub-network `{sym.name}` cannot be used here", e.span)
            return None
        x, sigma = (self.expr(a) for a in e.args)
        if x is None or sigma is None:
            return None
        if x.type.dtype == COMPLEX or x.type.rank < 3 or x.type.shape[-3] != info.in_size:
            self.error(f"the DnCNN `{sym.name}` takes real images [{info.in_size}, h, w] (channels first), "
                       f"got {x.type}", e.args[0].span, "give the state a channel axis: `real[1, h, w]`")
            return None
        if sigma.type.rank != 0 or sigma.type.dtype == COMPLEX:
            self.error(f"the noise level of `{sym.name}` must be a real scalar, got {sigma.type}", e.args[1].span,
                       "one number per sample: a `hyper`, an `input sigma : real` or an expression of them")
            return None
        level = max([x.level, sigma.level, ir.LAYER if sym.per_layer else ir.FORWARD])
        return ir.Node("net_call", [x, sigma], Type(REAL, tuple(x.type.shape), x.type.batched or sigma.type.batched),
                       e.span, level, {"name": sym.name, "per_layer": sym.per_layer, "kind": "dncnn",
                                       "conditioned": True})

    def _mlp_features(self, name: str, args: list, spans: list, size_in, size_out):
        """An MLP call `G(v, t, ...)`: the first argument's rows [..., k] (leading axes are rows, each mapped
        on its own), extra arguments (a scalar such as the time, or rows of the same leading axes)
        concatenated to its features; the features must number `in`.  The result shape, or None."""
        first = args[0].type
        if first.rank < 1:
            self.error(f"the MLP `{name}` takes vectors (or rows [..., {size_in}]), got {first}", spans[0].span)
            return None
        lead, total = first.shape[:-1], first.shape[-1]
        for a, a_ast in zip(args[1:], spans[1:]):
            t = a.type
            if t.rank == 0:
                total = total + DimExpr.of(1)
            elif t.shape[:-1] == lead:
                total = total + t.shape[-1]
            else:
                self.error(f"an extra input of the MLP `{name}` is a scalar or rows {shape_str(lead + ('k',))} "
                           f"like the first, got {t}", a_ast.span)
                return None
        if total != size_in:
            what = "vectors" if len(args) == 1 else "features (all arguments together)"
            self.error(f"the MLP `{name}` takes {what} of length {size_in}, got {total} ({first}"
                       + "".join(f", {a.type}" for a in args[1:]) + ")", spans[0].span if len(args) == 1 else
                       _joined(spans), "an extra scalar argument (the time) counts as one feature: `in=n+1`"
                       if len(args) > 1 else None)
            return None
        return lead + (size_out,)

    def _op_apply(self, e: ast.Call, sym: Symbol, adjoint: bool):
        op_t = sym.type
        if len(e.args) != 1 or e.kwargs:
            self.error(f"the operator `{sym.name}` takes one argument", e.span)
            return None
        arg = self.expr(e.args[0])
        if arg is None:
            return None
        want_in = op_t.out_shape if adjoint else op_t.shape
        out = op_t.shape if adjoint else op_t.out_shape
        if arg.type.shape != tuple(want_in):
            label = f"{sym.name}.H" if adjoint else sym.name
            self.error(f"`{label}` maps {shape_str(want_in)} -> {shape_str(out)}, got {shape_str(arg.type.shape)}",
                       e.args[0].span, f"`{sym.name}` is declared `{op_t}`")
            return None
        dtype = arg.type.dtype
        return ir.Node("op_apply", [arg], Type(dtype if dtype != INT else REAL, tuple(out), arg.type.batched),
                       e.span, max(arg.level, ir.FORWARD), {"name": sym.name, "adjoint": adjoint})


def _joined(exprs: list) -> Span:
    """The span from the first argument to the last."""
    first, last = exprs[0].span, exprs[-1].span
    return Span(first.line, first.column, last.end_line, last.end_column)
