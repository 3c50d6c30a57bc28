"""Differentiation inside the forward pass, randomness and adaptive depth (language issue 8):

* `vjp(y, x, v)`, `jvp(y, x, v)`, `jacobian(y, x)` and the autograd fallback of `grad(f, x)`: one
  `autodiff` IR node whose first argument is the differentiated expression (its occurrences of the
  name `x` are the variable), the second the value of `x` it is evaluated at, the third the vector;
  the planner never hoists or merges what depends on the variable out of it;
* `noise NAME : real[...] ~ normal | uniform | rademacher [per_layer]` declarations;
* `step until COND:`, the per-sample stopping condition, and the built-in output `depth`;
* calls of the two-argument `convgru` sub-network.
"""

from __future__ import annotations

from .. import ast, ir
from ..diagnostics import did_you_mean
from ..types import BOOL, COMPLEX, INT, REAL, Type, shape_str
from .names import Symbol, kind_noun, with_article

DISTRIBUTIONS = ("normal", "uniform", "rademacher")
AUTODIFF_FORMS = ("vjp", "jvp", "jacobian")
USAGE = {"grad": "grad(f, x)", "vjp": "vjp(y, x, v)", "jvp": "jvp(y, x, v)", "jacobian": "jacobian(y, x)"}
# kinds of names whose value is the same for every sample of a batch
SHARED_KINDS = ("param", "data", "hyper", "dim")


class DiffFormMixin:
    """Checking the forms of differentiation, noise declarations and `step until` (a part of `Checker`)."""

    # ------------------------------------------------------------ differentiation
    def _autodiff(self, e: ast.Call, form: str, f: ir.Node | None = None):
        """`vjp`, `jvp`, `jacobian`, or `grad` through autograd (`f` already checked)."""
        arity = 3 if form in ("vjp", "jvp") else 2
        if len(e.args) != arity or e.kwargs or not isinstance(e.args[1], ast.Name):
            self.error(f"`{form}` takes {'an expression, a name and a vector' if arity == 3 else 'an expression and a name'}"
                       f": `{USAGE[form]}`", e.span, f"the second argument names the variable `{form}` differentiates "
                       "with respect to")
            return None
        y = f if f is not None else self.expr(e.args[0])
        if y is None:
            return None
        wrt = self._wrt(e, form, y)
        if wrt is None:
            return None
        args = [y, wrt]
        if form == "grad":
            typ = wrt.type.with_(batched=wrt.type.batched or y.type.batched)
        elif form == "jacobian":
            typ = Type(REAL, tuple(y.type.shape) + tuple(wrt.type.shape), y.type.batched or wrt.type.batched)
        else:
            v = self.expr(e.args[2])
            if v is None:
                return None
            want = y if form == "vjp" else wrt
            if v.type.dtype not in (REAL, INT) or tuple(v.type.shape) != tuple(want.type.shape):
                what = "`y`" if form == "vjp" else "`x`"
                self.error(f"the vector of `{form}` must have the shape of {what}, {shape_str(want.type.shape)}, "
                           f"got {v.type}", e.args[2].span,
                           f"`{USAGE[form]}` is " + ("vᵀ ∂y/∂x: v has y's shape, the result x's" if form == "vjp"
                                                     else "∂y/∂x · v: v has x's shape, the result y's"))
                return None
            args.append(v)
            out = wrt if form == "vjp" else y
            typ = Type(REAL, tuple(out.type.shape), y.type.batched or wrt.type.batched or v.type.batched)
        level = max(a.level for a in args)
        return ir.Node("autodiff", args, typ, e.span, level,
                       {"kind": form, "wrt": wrt.attrs["name"], "of": self._text(e.args[0].span)})

    def _wrt(self, e: ast.Call, form: str, y: ir.Node) -> ir.Node | None:
        """The variable of a differentiation: a per-sample real name."""
        name_arg = e.args[1]
        sym = self.scope.get(name_arg.name)
        if sym is None:
            self.error(f"unknown name `{name_arg.name}`", name_arg.span, did_you_mean(name_arg.name, list(self.scope)))
            return None
        if sym.broken:
            return None
        if any(n.type.dtype == COMPLEX for n in y.walk()):
            self.error(f"`{form}` differentiates real expressions only", e.args[0].span,
                       "split complex values into real and imaginary parts, or write the derivative by hand")
            return None
        if y.type.dtype != REAL:
            self.error(f"`{form}` needs a real expression, got {y.type}", e.args[0].span)
            return None
        if sym.kind in SHARED_KINDS or sym.kind == "net":
            self.error(f"`{form}` with respect to `{sym.name}`, {with_article(kind_noun(sym.kind))} shared by every "
                       "sample, would add up the gradients of all the samples of a batch", name_arg.span,
                       "differentiate with respect to a per-sample value: a state, a step `let`, an input or a "
                       "noise (a parameter's gradient is what training computes)")
            return None
        node = self.expr(name_arg)
        if node is None:
            return None
        if node.level == ir.CONST:
            self.error(f"`{form}` with respect to `{sym.name}`, a constant computed at construction, is not a "
                       "per-sample derivative", name_arg.span,
                       "differentiate with respect to a per-sample value: a state, a step `let`, an input or a noise")
            return None
        if node.type.dtype != REAL:
            self.error(f"`{form}` differentiates with respect to a real value, `{sym.name}` is {node.type}",
                       name_arg.span)
            return None
        if y.type.batched and not node.type.batched and sym.kind == "state":
            self.batched_states.add(sym.name)  # differentiated per sample: the state is per sample (fixpoint)
        elif y.type.batched and not node.type.batched:
            self.error(f"`{form}` with respect to `{sym.name}`, which is the same for every sample, would add up the "
                       "gradients of all the samples of a batch", name_arg.span,
                       f"`{sym.name}` does not depend on an input; differentiate with respect to a per-sample value")
            return None
        if not any(n.op == "var" and n.attrs.get("name") == sym.name and not n.attrs.get("prev") for n in y.walk()):
            used = sorted({n.attrs["name"] for n in y.walk() if n.op == "var" and not n.attrs.get("prev")
                           and n.attrs.get("kind") in ("state", "local", "input", "noise", "let")})
            self.error(f"the expression does not depend on `{sym.name}`: its derivative is zero", name_arg.span,
                       "differentiate with respect to a name the expression uses" +
                       (": " + ", ".join(f"`{n}`" for n in used) if used else ""))
            return None
        for n in y.walk():  # a nondifferentiable function of the variable (function data, check/function_data.py)
            if n.op == "op_apply" and n.attrs.get("function") and not n.attrs.get("differentiable") and any(
                    m.op == "var" and m.attrs.get("name") == sym.name and not m.attrs.get("prev")
                    for a in n.args for m in a.walk()):
                self.error(f"`{form}` through `{n.attrs['name']}`, a function declared `nondifferentiable`: its "
                           f"value does not follow `{sym.name}` (it is a constant for differentiation)", n.span,
                           "estimate the derivative by differences (the Monte-Carlo divergence of D-AMP, "
                           "`dsl_specs/bm3d_amp.unroll`), or drop `nondifferentiable` if the function is torch code")
                return None
        return node

    # ------------------------------------------------------------ noise
    def _noise(self, d: ast.Decl) -> ir.Noise | None:
        if d.net_kind not in DISTRIBUTIONS:
            self.error(f"unknown distribution `{d.net_kind}`", d.value.span,
                       did_you_mean(d.net_kind, DISTRIBUTIONS) or "distributions: " + ", ".join(
                           f"`{k}`" for k in DISTRIBUTIONS))
            return None
        per_layer = False
        for a in d.annotations:
            if a.name == "per_layer" and not a.args:
                per_layer = True
            elif a.name == "per_call" and not a.args:
                per_layer = False
            else:
                self.error(f"a noise takes `per_call` (the default: one draw per forward call) or `per_layer` "
                           f"(a fresh draw in every layer), not `{a.name}`", a.span)
                return None
        t = self._type(d.type, "noise")
        if t is None:
            return None
        if t.dtype != REAL:
            self.error(f"a noise is real, got `{t.dtype}`", d.type.span, "declare it `real[...]`")
            return None
        if "seed" in self.scope and self.scope["seed"].kind != "noise":
            self.error("a spec with a `noise` cannot name anything `seed`", self.scope["seed"].span,
                       "the constructor of a module with noise takes `seed=` (the seed of its generator)")
            return None
        t = t.with_(batched=True)  # one draw per sample
        if self._declare(Symbol(d.name, "noise", t, ir.LAYER if per_layer else ir.FORWARD, d.span,
                                per_layer=per_layer)):
            return ir.Noise(d.name, t, d.net_kind, per_layer, d.span, d.line_span.line)
        return None

    # ------------------------------------------------------------ adaptive depth
    def _until(self, cond: ast.Expr) -> ir.Node | None:
        """The stopping condition of `step until COND:`, checked after the step's statements."""
        node = self.expr(cond)
        if node is None:
            return None
        if node.type.dtype != BOOL or node.type.rank != 0:
            self.error(f"the condition of `step until` is a comparison per sample, got {node.type}", cond.span,
                       "stop a sample when a scalar comparison holds, e.g. `step until norm(x - prev(x)) < tol * "
                       "norm(prev(x)):`")
            return None
        return node

    # ------------------------------------------------------------ convgru
    def _convgru_call(self, e: ast.Call, sym: Symbol):
        info = self._net_info[sym.name]
        if len(e.args) != 2 or e.kwargs:
            self.error(f"the convolutional GRU `{sym.name}` takes an input and a hidden state: `{sym.name}(x, h)`",
                       e.span, f"`h` is a state [{info.out_size}, h, w]; the call gives its new value")
            return None
        if self.context not in ("step", "final", "let", "state"):
            self.error(f"the sub-network `{sym.name}` cannot be used here", e.span)
            return None
        if sym.per_layer and self.context != "step":
            self.error(f"the per-layer sub-network `{sym.name}` can only be used inside `step:`", e.span)
            return None
        x, h = self.expr(e.args[0]), self.expr(e.args[1])
        if x is None or h is None:
            return None
        for value, arg, size, what in ((x, e.args[0], info.in_size, "input"), (h, e.args[1], info.out_size,
                                                                                "hidden state")):
            if value.type.dtype not in (REAL, INT) or value.type.rank != 3 or value.type.shape[0] != size:
                self.error(f"the {what} of the convolutional GRU `{sym.name}` is an image [{size}, h, w], got "
                           f"{value.type}", arg.span, "images are channels first; give a one-channel state the type "
                                                      "`real[1, h, w]`")
                return None
        if tuple(x.type.shape[1:]) != tuple(h.type.shape[1:]):
            self.error(f"the input and the hidden state of `{sym.name}` must have the same image size, got "
                       f"{shape_str(x.type.shape)} and {shape_str(h.type.shape)}", e.span)
            return None
        level = max(x.level, h.level, ir.LAYER if sym.per_layer else ir.FORWARD)
        return ir.Node("net_call", [x, h], Type(REAL, tuple(h.type.shape), x.type.batched or h.type.batched),
                       e.span, level, {"name": sym.name, "per_layer": sym.per_layer, "kind": "convgru"})


def depth_symbol(span) -> Symbol:
    """The built-in output of `step until`: the number of layers each sample ran."""
    return Symbol("depth", "depth", Type(INT, (), True), ir.FORWARD, span)


__all__ = ["AUTODIFF_FORMS", "DISTRIBUTIONS", "DiffFormMixin", "depth_symbol", "kind_noun"]
