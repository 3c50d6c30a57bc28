"""Printing one expression of a plan as PyTorch code (the registry gives each operator's emission).

Nothing is decided here: which value is computed where and under which name is
in the plan (`ref` nodes name values computed elsewhere).  The printer knows
the context it prints for -- the constructor (a per-layer parameter is its
whole stack) or forward, and which layer index expression is current (`layer`,
or `0` in a peeled first layer).
"""

from __future__ import annotations

from . import ir
from .check.literals import INT64_MAX
from .ir import IMAGE_NETS
from .operators import INTERNAL_OPERATORS, OPERATORS, P_ATOM, P_MUL, Arg, tensor, wrap
from .operators.core import all_axes, axis_code
from .operators.linalg import TRANSPOSE

# operators whose first operand may be a Python number as it is (Python arithmetic, or handled by the entry)
PYTHON_OPERAND_OPS = INTERNAL_OPERATORS | {"where", "eye", "zeros", "ones", "onehot", "complex", "clamp", "max", "min"}
# operators whose result is a Python number when every operand is one (they print as Python's `+`, `min`, ...);
# a comparison of Python numbers (`layer <= L`, L a constant of the data) is a Python bool
PYTHON_ARITHMETIC = frozenset({"add", "sub", "mul", "div", "pow", "neg", "max", "min",
                               "lt", "gt", "le", "ge", "eq", "ne"})


class ExprPrinter:
    def __init__(self, plan, in_init: bool = False, layer: str = "layer"):
        self.plan = plan
        self.in_init = in_init
        self.layer = layer
        self.per_layer = {x.name for x in plan.program.params if x.per_layer}
        # constants of the data kept as Python numbers (`let L = opnorm(A)^2`): a Python number wherever read
        self.python_constants = {c.name for c in plan.constants if c.python}
        self.transposed = {} if in_init else dict(plan.transposed)  # forward reads M as its stored Mᵀ, transposed

    def at(self, layer: str) -> ExprPrinter:
        return ExprPrinter(self.plan, self.in_init, layer)

    def code(self, node: ir.Node) -> str:
        return self.render(node).code

    def render(self, node: ir.Node) -> Arg:
        op = node.op
        value = node.attrs.get("value") if op == "number" else node.attrs.get("literal")
        if isinstance(value, int) and abs(value) > INT64_MAX:
            # integer literal arithmetic beyond 64 bits (`10^30`): torch cannot convert such a Python int, a
            # double holds it (the checker bounds literals by the largest double)
            return Arg(repr(float(value)), node.type, P_ATOM if value >= 0 else P_MUL, py=True, static=node.static)
        if op == "var":
            return self._var(node)
        if op == "ref":
            if node.attrs.get("table"):
                offset = node.attrs.get("offset", 0)
                index = self.layer if not offset else (
                    str(int(self.layer) + offset) if self.layer.isdigit() else f"{self.layer} + {offset}")
                return Arg(f"{node.attrs['name']}[{index}]", node.type, P_ATOM, py=node.py, static=node.static)
            name = node.attrs["name"]
            if name in self.transposed:
                return Arg(f"{self.transposed[name]}{TRANSPOSE}", node.type, P_ATOM, static=node.static)
            return Arg(name, node.type, P_ATOM, py=node.py or name in self.python_constants, static=node.static)
        if op == "number":
            v = node.attrs["value"]
            return Arg(repr(v), node.type, P_ATOM if v >= 0 else P_MUL, py=True, static=node.static)
        if op == "list":
            return Arg("(" + ", ".join(d.python() for d in node.static) + ",)", node.type, py=True, static=node.static)
        if op == "addmm":
            other, matrix, vectors = node.args
            if matrix.op in ("transpose", "adjoint"):
                mat2 = wrap(self.render(matrix.args[0]), P_ATOM) + (".conj()" if matrix.op == "adjoint" else "")
            else:
                rendered = self.render(matrix)
                stored = rendered.code[:-len(TRANSPOSE)] if matrix.op == "ref" and rendered.code.endswith(
                    TRANSPOSE) and matrix.attrs.get("name") in self.transposed else None
                mat2 = stored if stored is not None else f"{wrap(rendered, P_ATOM)}{TRANSPOSE}"
            extra = "".join(f", {k}={v}" for k, v in sorted(node.attrs.items()) if k in ("alpha", "beta"))
            if other.op == "matmul" and not other.py and other.type == node.type and other.args[0].type.rank == 2 \
                    and not other.args[0].type.batched and other.args[1].type.rank == 1 and other.args[1].type.batched:
                # the other term is a fresh product (its output is not saved for backward): accumulate into it
                return Arg(f"{wrap(self.render(other), P_ATOM)}.addmm_({self.code(vectors)}, {mat2}{extra})",
                           node.type)
            return Arg(f"torch.addmm({self.code(other)}, {self.code(vectors)}, {mat2}{extra})", node.type)
        if op == "add_scaled":
            base, scale, value = (self.render(a) for a in node.args)
            alpha = f"-{wrap(scale, P_ATOM)}" if node.attrs.get("negate") else scale.code
            return Arg(f"torch.add({base.code}, {value.code}, alpha={alpha})", node.type)
        if op == "choose":  # two forms of one value; the constructor picked one by the actual sizes
            gram, split = (self.render(a) for a in node.args)
            return Arg(f"({gram.code} if {node.attrs['flag']} else {split.code})", node.type)
        if op == "sumsq":  # norm(v)^2 of a real v (plan_algebra.squared_norms)
            v = self.render(node.args[0])
            square = f"torch.square({tensor(v)})"
            if len(node.args) > 1:
                return Arg(f"{square}.sum(dim={axis_code(v.type, node.args[1].static)})", node.type)
            if v.type.rank == 0:
                return Arg(square, node.type)
            axes = all_axes(v.type)
            return Arg(f"{square}.sum()" if axes is None else f"{square}.sum(dim={axes})", node.type)
        if op == "eye_minus":
            (k,) = (self.render(a) for a in node.args)
            return Arg(f"rt.identity_minus({k.code})", node.type)
        if op == "addcmul":
            base, scale, value = (self.render(a) for a in node.args)
            extra = ", value=-1" if node.attrs.get("value") == -1 else ""
            return Arg(f"torch.addcmul({base.code}, {scale.code}, {value.code}{extra})", node.type)
        if op == "lerp":
            start, end, weight = (self.render(a) for a in node.args)
            return Arg(f"torch.lerp({start.code}, {end.code}, {weight.code})", node.type)
        if op == "inverse":
            (matrix,) = (self.render(a) for a in node.args)
            return Arg(f"torch.linalg.inv({matrix.code})", node.type)
        if op == "autodiff":  # grad by autograd, vjp, jvp, jacobian (compiler/emit_diff.py)
            from .emit_diff import render_autodiff

            return render_autodiff(self, node)
        if op == "net_call" and node.attrs.get("functional"):  # weights as a value (runtime/nets_functional.py)
            x, w = (self.render(a) for a in node.args)
            return Arg(f"{node.attrs['name']}({x.code}, {w.code}, {node.args[0].type.batched}, "
                       f"{node.args[1].type.batched})", node.type)
        if op == "net_init":  # a functional network's initial weights, a buffer of the module
            return Arg(f"{node.attrs['name']}.initial", node.type)
        if op == "net_call" and node.attrs.get("kind") == "convgru":  # input and hidden state
            x, h = (self.render(a) for a in node.args)
            fn = f"{node.attrs['name']}[{self.layer}]" if node.attrs.get("per_layer") else node.attrs["name"]
            if node.args[0].type.batched and node.args[1].type.batched:
                return Arg(f"{fn}({x.code}, {h.code})", node.type)
            return Arg(f"rt.apply_net({fn}, {x.code}, False, {h.code})", node.type)
        if op == "net_call" and node.attrs.get("conditioned"):  # a denoiser given the noise level
            x, sigma = (self.render(a) for a in node.args)
            fn = f"{node.attrs['name']}[{self.layer}]" if node.attrs.get("per_layer") else node.attrs["name"]
            return Arg(f"rt.apply_conditioned({fn}, {x.code}, {sigma.code}, {node.args[0].type.batched!r}, "
                       f"{node.args[1].type.batched!r})", node.type)
        if op == "net_call" and _net_rows(node):
            # a sub-network mapping rows over leading axes, or an MLP with extra inputs (the time)
            return Arg(_rows_call(node, [self.render(a) for a in node.args], self.layer), node.type)
        if op == "op_apply" and node.attrs.get("function"):  # function data (runtime/function_data.py)
            # a Python number (the layer index, a literal) becomes a tensor of the network's dtype and device
            args = ", ".join(f"torch.tensor({self.render(a).code}, dtype=dtype, device=device)" if a.py
                             else self.render(a).code for a in node.args)
            name = node.attrs["name"]
            if all(node.attrs["batched"]):
                return Arg(f"{name}({args})", node.type)
            return Arg(f"{name}.call({node.attrs['batched']!r}, {args})", node.type)
        if op in ("net_call", "op_apply"):
            # a sub-network (one per layer if untied) or a user operator / its adjoint, applied to one argument
            (arg,) = (self.render(a) for a in node.args)
            name = node.attrs["name"]
            if op == "net_call":
                fn = f"{name}[{self.layer}]" if node.attrs.get("per_layer") else name
            else:
                fn = f"{name}.adjoint" if node.attrs.get("adjoint") else name
            if node.args[0].type.batched:
                return Arg(f"{fn}({arg.code})", node.type)
            return Arg(f"rt.apply_net({fn}, {arg.code}, batched=False)", node.type)
        if op == "history_sum":
            (beta,) = (self.render(a) for a in node.args)
            return Arg(f"rt.history_sum({beta.code}, {self.plan.history_names[node.attrs['name']]})", node.type)
        if op == "set_index":  # `X[i] = v`, out of place
            target, index, value = (self.render(a) for a in node.args)
            return Arg(f"rt.set_index({target.code}, {index.code}, {value.code}, {node.args[0].type.batched}, "
                       f"{node.args[2].type.batched})", node.type)
        if op == "index":
            value, index = (self.render(a) for a in node.args)
            if node.args[0].type.batched:
                return Arg(f"{wrap(value, P_ATOM)}[:, {index.code}]", node.type)
            return Arg(f"{wrap(value, P_ATOM)}[{index.code}]", node.type)
        operator = OPERATORS[op]
        args = []
        statics = node.attrs.get("statics", ())
        for i, a in enumerate(node.args):
            arg = self.render(a)
            if i == 0 and arg.py and op not in PYTHON_OPERAND_OPS and 0 not in operator.static_args:
                # the operand an operator works on is a tensor, even when its value is a Python number
                arg = Arg(tensor(arg), arg.type, P_ATOM)
            if i < len(statics) and statics[i] is not None and arg.static is None:
                arg.static = statics[i]
            if op in ("eye", "zeros", "ones") or (op == "onehot" and i == 1):
                arg = Arg(statics[i].python() if hasattr(statics[i], "python") else arg.code, a.type, P_ATOM,
                          py=True, static=statics[i])
            args.append(arg)
        out = operator.emit(args, node.type)
        # Python arithmetic (and min/max) of Python numbers is a Python number
        py = node.py or (op in PYTHON_ARITHMETIC and all(a.py for a in args))
        return Arg(out.code, node.type, out.prec, py=py, static=node.static)

    def _var(self, node: ir.Node) -> Arg:
        name = node.attrs["name"]
        kind = node.attrs.get("kind")
        if kind == "layer":
            return Arg(self.layer, node.type, P_ATOM, py=True)
        if node.attrs.get("prev"):
            return Arg(self.plan.prev_names[name], node.type, P_ATOM)
        if kind == "param" and name in self.per_layer and not self.in_init:
            return Arg(f"{name}[{self.layer}]", node.type, P_ATOM)
        if name in self.transposed:
            return Arg(f"{self.transposed[name]}{TRANSPOSE}", node.type, P_ATOM, static=node.static)
        return Arg(name, node.type, P_ATOM, py=node.py or name in self.python_constants, static=node.static)


def _net_rows(node) -> bool:
    """A sub-network call beyond one image / one vector: rows over leading axes, or several MLP inputs."""
    base = 3 if node.attrs.get("kind") in IMAGE_NETS else 1
    return len(node.args) > 1 or node.args[0].type.rank > base


def _rows_call(node, args: list, layer: str) -> str:
    name = node.attrs["name"]
    fn = f"{name}[{layer}]" if node.attrs.get("per_layer") else name
    batched = tuple(a.type.batched for a in node.args)
    if node.attrs.get("kind") in IMAGE_NETS:
        return f"rt.apply_cnn_rows({fn}, {args[0].code}, batched={batched[0]!r})"
    pieces = "(" + ", ".join(a.code for a in args) + ("," if len(args) == 1 else "") + ")"
    ranks = tuple(a.type.rank for a in node.args)
    return f"rt.apply_mlp_rows({fn}, {pieces}, batched={batched!r}, ranks={ranks!r})"
