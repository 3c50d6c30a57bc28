"""Printing the parts of a plan for noise declarations, `step until` and differentiation by autograd
(language issue 8); emitter.py calls these at fixed places.  Nothing is decided here."""

from __future__ import annotations

from . import ir
from .emit_head import Lines, comment
from .operators import Arg

FORMS = {"grad": "rt.autograd_grad", "vjp": "rt.autograd_vjp", "jvp": "rt.autograd_jvp",
         "jacobian": "rt.autograd_jacobian"}


def render_autodiff(printer, node: ir.Node) -> Arg:
    """`rt.autograd_grad(lambda x: f, x)`: f is re-evaluated as a function of its variable (named as in the
    spec, so the lambda's argument shadows the value it is evaluated at)."""
    body, at = printer.render(node.args[0]), printer.render(node.args[1])
    fn = f"lambda {node.attrs['wrt']}: {body.code}"
    extra = ""
    if node.attrs["kind"] in ("vjp", "jvp"):
        extra = f", {printer.code(node.args[2])}"
    elif node.attrs["kind"] == "jacobian":
        extra = f", batched={node.args[1].type.batched!r}"
    return Arg(f"{FORMS[node.attrs['kind']]}({fn}, {at.code}{extra})", node.type)


def ctor_args(p: ir.Program) -> list[str]:
    functional = any(net.functional for net in p.nets)  # seeds their initial weights
    return ["seed=None"] if p.noises or functional else []


def init_lines(p: ir.Program, out: Lines) -> None:
    if p.noises:
        out.add("self._seed_noise(0 if seed is None else seed)  # the generator of the noise not given to forward",
                2)


def reads_autodiff(node: ir.Node) -> bool:
    return any(n.op == "autodiff" for n in node.walk())


def signature(p: ir.Program) -> tuple[str, str]:
    """The noise arguments of forward (keyword-only, optional) and of _unrolled."""
    if not p.noises:
        return "", ""
    names = [n.name for n in p.noises]
    return ", *, " + ", ".join(f"{n}=None" for n in names), ", ".join(names)


def noise_lines(p: ir.Program, plan, body: Lines) -> None:
    for n in p.noises:
        shape = "(" + "".join(f"{d.python()}, " for d in n.type.shape).rstrip(" ") + ")"
        target = plan.noise_names.get(n.name, n.name)
        layers = "self.num_layers" if n.per_layer else "None"
        what = "drawn for every layer" if n.per_layer else "one draw per call"
        body.add(f"# line {n.line}: {comment(p.line(n.line))}", 2)
        body.add(f"# ({what} from the module's generator, unless given to forward)", 2)
        body.add(f"{target} = self._noise_arg({n.name!r}, {n.name}, {shape}, {n.distribution!r}, {layers}, batch, "
                 f"unbatched, dtype, device)", 2)


def until_start(p: ir.Program, plan, body: Lines) -> None:
    if p.until is None:
        return
    names = plan.until_names
    body.add("# step until: every sample runs until its condition holds (active), then its states freeze", 2)
    body.add(f"{names['active']} = torch.ones(batch, dtype=torch.bool, device=device)", 2)
    body.add("depth = torch.zeros(batch, dtype=torch.long, device=device)  # the layers each sample ran", 2)


def layer_top(p: ir.Program, plan, out: Lines, indent: int, layer: str) -> None:
    for n in p.noises:
        if n.per_layer:
            out.add(f"{n.name} = {plan.noise_names[n.name]}[:, {layer}]", indent)
    if p.until is not None:
        for s in p.states:
            out.add(f"{plan.until_names[s.name]} = {s.name}", indent)


def layer_bottom(p: ir.Program, plan, out: Lines, indent: int, printer) -> None:
    if p.until is None:
        return
    names = plan.until_names
    active, stop = names["active"], names["stop"]
    out.add(f"# line {p.until.span.line}: {comment(p.line(p.until.span.line))}", indent)
    out.add("# (a sample whose condition holds keeps this layer's update, then stops)", indent)
    out.add(f"{stop} = rt.stop_mask({printer.code(plan.until)}, batch, device)", indent)
    for s in p.states:
        out.add(f"{s.name} = rt.keep_active({active}, {s.name}, {names[s.name]})", indent)
    out.add(f"depth = depth + {active}.long()", indent)
    out.add(f"{active} = {active} & ~{stop}", indent)


def loop_exit(p: ir.Program, plan, out: Lines, indent: int) -> None:
    if p.until is not None:
        out.add(f"if self.early_exit and record is None and not bool({plan.until_names['active']}.any()):", indent)
        out.add("break  # no sample is active (early_exit = False: masked, no data-dependent break)", indent + 1)


def explain_lines(p: ir.Program) -> list[str]:
    """`unrollc explain`: which path each differentiation took, the noise, the stopping condition."""
    out: list[str] = []

    def visit(node: ir.Node, line: int) -> None:
        if node.op == "autodiff":
            kind = node.attrs["kind"]
            how = node.attrs.get("grad_path", "autograd")
            out.append(f"  {line:>4} | {kind}({node.attrs['of']}, {node.attrs['wrt']}): {how}; re-evaluated under "
                       "enable_grad, create_graph when the outer computation is differentiated")
            visit_args = node.args[1:]
        else:
            if node.attrs.get("grad_path") == "symbolic":
                out.append(f"  {line:>4} | grad({node.attrs.get('grad_of', '?')}): symbolic (sympy), inlined")
            visit_args = node.args
        for a in visit_args:
            visit(a, line)

    def block(stmts) -> None:
        for st in stmts:
            if isinstance(st, ir.Repeat):
                block(st.body)
            else:
                visit(st.value, st.span.line)

    for let in p.lets:
        visit(let.value, let.line)
    for s in p.states:
        visit(s.init, s.line)
    block(p.step)
    block(p.final)
    lines = (["Differentiation in the forward pass:"] + out) if out else []
    if p.noises:
        lines.append("Noise (drawn from the module's generator, seed=, unless given to forward):")
        lines += [f"  {n.line:>4} | {n.name} ~ {n.distribution}{', per layer' if n.per_layer else ', per call'}, "
                  f"shape [batch{', layers' if n.per_layer else ''}, {', '.join(str(d) for d in n.type.shape)}]"
                  for n in p.noises]
    if p.until is not None:
        lines.append(f"Adaptive depth: each sample stops after the layer where `{comment(p.line(p.until.span.line))}`"
                     " holds; output `depth`; early_exit=False runs all layers masked")
    return lines + [""] if lines else []
