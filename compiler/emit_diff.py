"""Printing the parts of a plan for noise declarations, `step until` and differentiation by autograd
(language issue 8); emitter.py calls these at fixed places.  Nothing is decided here."""

from __future__ import annotations

from . import ir
from .emit_head import Lines
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
    return ["seed=0"] if p.noises else []


def init_lines(p: ir.Program, out: Lines) -> None:
    if p.noises:
        out.add("self._seed_noise(seed)  # the generator the noise is drawn from when not given to forward", 2)


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
        body.add(f"# line {n.line}: noise ~ {n.distribution}, {what} (or given to forward)", 2)
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
    out.add(f"# line {p.until.span.line}: {comment_of(p)}: a sample whose condition holds keeps this layer's "
            "update, then stops", indent)
    out.add(f"{stop} = rt.stop_mask({printer.code(plan.until)}, batch, device)", indent)
    for s in p.states:
        out.add(f"{s.name} = rt.keep_active({active}, {s.name}, {names[s.name]})", indent)
    out.add(f"depth = depth + {active}.long()", indent)
    out.add(f"{active} = {active} & ~{stop}", indent)


def loop_exit(p: ir.Program, plan, out: Lines, indent: int) -> None:
    if p.until is not None:
        out.add(f"if self.early_exit and record is None and not bool({plan.until_names['active']}.any()):", indent)
        out.add("break  # no sample is active (early_exit = False: masked, no data-dependent break)", indent + 1)


def comment_of(p: ir.Program) -> str:
    from .emit_head import comment

    return comment(p.line(p.until.span.line).rstrip(":"))
