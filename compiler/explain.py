"""`unrollc explain`: what a spec computes, in words a reader can check.

Prints the update equations (spec text and LaTeX rendered from the operator
registry), the parameter table (shape, tying, trainability, constraint,
default), and the execution plan: which values are constants (computed once at
construction), layer-invariant (hoisted out of the loop) or per layer.
"""

from __future__ import annotations

from . import ir
from .ast import DimExpr
from .operators import OPERATORS
from .planner import plan, summary

GREEK = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "mu",
         "nu", "xi", "pi", "rho", "sigma", "tau", "upsilon", "phi", "chi", "psi", "omega", "Gamma", "Delta",
         "Theta", "Lambda", "Xi", "Pi", "Sigma", "Phi", "Psi", "Omega"}
ALIASES = {"lam": "\\lambda", "eps": "\\epsilon"}

PREC = {"add": 1, "sub": 1, "mul": 2, "div": 3, "matmul": 2, "neg": 2, "pow": 4}


def latex_name(name: str) -> str:
    if name in ALIASES:
        return ALIASES[name]
    base, _, sub = name.partition("_")
    head = f"\\{base}" if base in GREEK else (base if len(base) == 1 else f"\\mathrm{{{base}}}")
    return f"{head}_{{\\mathrm{{{sub}}}}}" if sub else head


class LatexPrinter:
    def __init__(self, program: ir.Program):
        self.p = program
        self.params = {x.name: x for x in program.params}
        self.updated: set[str] = set()
        self.after_loop = False

    def node(self, n: ir.Node) -> str:
        if n.op == "number":
            v = n.attrs["value"]
            return repr(v) if not isinstance(v, float) or not v.is_integer() else str(int(v))
        if n.op == "var":
            name = n.attrs["name"]
            kind = n.attrs.get("kind")
            if kind == "layer":
                return "l"
            tex = latex_name(name)
            if n.attrs.get("prev"):
                return f"{tex}^{{(l)}}"
            if kind == "state" and self.after_loop:
                return f"{tex}^{{(L)}}"
            if kind == "state":
                return f"{tex}^{{(l+1)}}" if name in self.updated else f"{tex}^{{(l)}}"
            if kind == "param" and self.params[name].per_layer:
                return f"{tex}^{{(l)}}"
            return tex
        if n.op == "list":
            return "(" + ", ".join(str(d) for d in n.static) + ")"
        if n.op in ("net_call", "op_apply"):
            name = latex_name(n.attrs["name"])
            if n.attrs.get("adjoint"):
                name += "^{*}"
            elif n.attrs.get("per_layer"):
                name += "^{(l)}"
            return f"{name}\\left({', '.join(self.node(a) for a in n.args)}\\right)"
        if n.op == "autodiff":  # grad by autograd, vjp, jvp, jacobian
            f, x = self.node(n.args[0]), self.node(n.args[1])
            kind = n.attrs["kind"]
            if kind == "grad":
                return f"\\nabla_{{{x}}}\\left[{f}\\right]"
            if kind == "jacobian":
                return f"\\frac{{\\partial \\left({f}\\right)}}{{\\partial {x}}}"
            v = self.node(n.args[2])
            if n.args[2].op not in ("var", "number", "index"):
                v = f"\\left({v}\\right)"
            if kind == "vjp":
                return f"{v}^{{\\top}} \\frac{{\\partial \\left({f}\\right)}}{{\\partial {x}}}"
            return f"\\frac{{\\partial \\left({f}\\right)}}{{\\partial {x}}} {v}"
        if n.op == "history_sum":
            beta = self.node(n.args[0])
            return f"\\sum_{{j=0}}^{{l}} {beta}_{{j}}\\, {latex_name(n.attrs['name'])}^{{(j)}}"
        if n.op == "index":
            return f"{self.node(n.args[0])}_{{[{self.node(n.args[1])}]}}"
        args = []
        mine = PREC.get(n.op, 9)
        for i, a in enumerate(n.args):
            text = self.node(a)
            child = PREC.get(a.op, 9)
            if n.op in PREC and n.op != "div" and (
                    child < mine or (n.op in ("sub", "matmul") and i == 1 and child == mine)):
                text = f"\\left({text}\\right)"
            if n.op == "pow" and i == 0 and a.op not in ("var", "number"):
                text = f"\\left({text}\\right)"
            if n.op in ("transpose", "solve") and i == 0 and a.op not in ("var", "number", "net_call"):
                text = f"\\left({text}\\right)"  # a compound operand of ^{T} or ^{-1}
            args.append(text)
        return OPERATORS[n.op].latex(args)

    def block(self, stmts, target_suffix: bool = True) -> list[str]:
        out = []
        for st in stmts:
            if isinstance(st, ir.Repeat):
                if st.index is not None:  # `repeat N as j [backward]:`
                    n = self.node(st.count)
                    span = f"{n} - 1, \\dots, 0" if st.backward else f"0, \\dots, {n} - 1"
                    out.append(f"\\text{{for }} {latex_name(st.index)} = {span}:")
                else:
                    out.append(f"\\text{{repeat }} {self.node(st.count)} \\text{{ times:}}")
                out.extend("\\quad " + line for line in self.block(st.body))
                continue
            if st.value.op == "set_index":  # `X[i] = v`
                _target, index, value = st.value.args
                out.append(f"{latex_name(st.target)}_{{[{self.node(index)}]}} &= {self.node(value)}")
                continue
            rhs = self.node(st.value)
            if st.kind == "state":
                lhs = f"{latex_name(st.target)}^{{(l+1)}}" if target_suffix else latex_name(st.target)
                self.updated.add(st.target)
            else:
                lhs = latex_name(st.target)
            out.append(f"{lhs} &= {rhs}")
        return out


def latex_equations(program: ir.Program) -> str:
    printer = LatexPrinter(program)
    lines = printer.block(program.step)
    body = " \\\\\n".join(lines)
    text = f"\\begin{{aligned}}\n{body}\n\\end{{aligned}}"
    if program.final:
        printer.updated = set()
        printer.after_loop = True  # states hold their value after the last layer
        final = " \\\\\n".join(printer.block(program.final, target_suffix=False))
        text += f"\n% final stage (after layer L)\n\\begin{{aligned}}\n{final}\n\\end{{aligned}}"
    return text


def explain(program: ir.Program, latex_only: bool = False) -> str:
    if latex_only:
        return latex_equations(program)
    p = program
    out = [f"{p.name}: {p.title}", (f"  {p.layers_dim or p.layers} layers; inputs: {', '.join(i.name for i in p.inputs) or '-'}; "
           f"outputs: {', '.join(p.outputs)}"), ""]
    if p.functions:
        out.append("Functions (inlined at every call; the LaTeX below shows them inlined):")
        for _name, line in p.functions:
            out.append(f"  {line:>4} | {p.line(line)}")
        out.append("")
    out.append("Update equations (one layer, l = 0 .. L-1):")
    for line, _level, text in summary(p):
        out.append(f"  {line:>4} | {text}")
    if p.final:
        out.append("Final stage:")
        for st in p.final:
            if isinstance(st, ir.Assign):
                out.append(f"  {st.span.line:>4} | {p.line(st.span.line)}")
    out.append("")
    out.append("LaTeX:")
    out.extend("  " + line for line in latex_equations(p).split("\n"))
    out.append("")
    out.append("Parameters:")
    if not p.params and not p.nets:
        out.append("  (none: the classical algorithm)")
    rows = [("name", "shape", "tying", "trainable", "constraint", "default")]
    for x in p.params:
        rows.append((x.name, str(x.type), "per-layer" if x.per_layer else "shared",
                     "learned" if x.learned else "fixed", x.constraint or "-", _text(p, x.init.span)))
    if p.params:
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            out.append("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if p.nets:
        out.append("Sub-networks:")
        for net in p.nets:
            opts = ", ".join(f"{k}={v.python() if isinstance(v, DimExpr) else repr(v)}"
                             for k, v in net.options.items())
            if net.functional:  # its weights are a value of the algorithm (check/functional.py)
                out.append(f"  {net.name}: {net.kind}({opts}), functional: its weights are a value of "
                           f"{' + '.join(net.functional)} entries (`init({net.name})`, `{net.name}(x, weights=...)`)")
                continue
            out.append(f"  {net.name}: {net.kind}({opts}), {'one per layer' if net.per_layer else 'shared'}, "
                       f"{'learned' if net.learned else 'fixed'}")
    out.append("")
    from .emit_diff import explain_lines

    out.extend(explain_lines(p))
    out.append("")
    out.extend(plan_text(plan(p)))
    return "\n".join(out)


def plan_text(pl) -> list[str]:
    """The execution plan, as the emitter prints it: what is computed where, under which name."""
    from .plan_uses import constant_needed

    p = pl.program
    out = ["Execution plan:"]
    needed = [c for c in pl.constants if constant_needed(pl, c)]
    if needed:
        out.append("  constructor (once):")
        for c in needed:
            where = "buffer read by forward" if c.read_by_forward and not c.python else (
                "Python number" if c.python else "initialises parameters only")
            if c.value.op == "inverse":
                where = "inverse, computed once: each solve with this matrix is a product; " + where
            out.append(f"    {c.name:<14} {c.comment}   [{where}]")
    if pl.table is not None:
        names = [n for n, _ in pl.table.columns if pl.uses[n]] + [n for n in pl.table.rows.values() if pl.uses[n]]
        if names:
            out.append(f"    {', '.join(names)}: values that depend only on the layer index, computed for every "
                       f"layer (lines {', '.join(map(str, pl.table.lines))})")
    unread = [d.name for d in p.data if d.type.dtype != "operator" and not pl.uses[d.name]]
    if unread:
        out.append(f"    data not kept as buffers (forward never reads them): {', '.join(unread)}")
    if pl.prologue or pl.invariants or pl.split_params:
        out.append("  once per forward call:")
        for name in pl.split_params:
            out.append(f"    {name:<14} split into one tensor per layer (one gradient per layer, stacked once)")
        for st in pl.prologue + pl.invariants:
            note = "   [inverse, computed once per call]" if st.value.op == "inverse" else ""
            out.append(f"    {st.target:<14} {st.comment}{note}")
    if pl.peeled is not None:
        out.append(f"  {pl.peel_note}:")
        out.extend(_block_text(pl.peeled, 4))
    last = f"{p.layers_dim} - 1" if p.layers_dim else p.layers - 1
    out.append(f"  layer loop ({'layers 1' if pl.peeled is not None else 'layers 0'} .. {last}):")
    out.extend(_block_text(pl.step, 4))
    if pl.final:
        out.append("  final stage:")
        out.extend(_block_text(pl.final, 4))
    out.append(f"  returns {', '.join(name for name, _ in pl.outputs)}")
    return out


def _block_text(block, indent: int) -> list[str]:
    from .planner import Loop

    pad = " " * indent
    out = []
    for item in block:
        if isinstance(item, Loop):
            for st in item.before:
                out.append(f"{pad}{st.target:<14} {st.comment}   [before the loop]")
            out.append(f"{pad}{item.comment}")
            out.extend(_block_text(item.body, indent + 4))
        else:
            notes = {"temp": ["computed once, used twice or more"], "table": ["looked up: computed at construction"]
                     }.get(item.kind, [])
            if item.trace_only:
                notes.append("only when the trace records: nothing else reads it")
            elif item.skip_last:
                notes.append("not after the last layer")
            note = f"   [{'; '.join(notes)}]" if notes else ""
            out.append(f"{pad}{item.target:<14} {item.comment}{note}")
    return out


def _text(p: ir.Program, span) -> str:
    line = p.source_text.split("\n")[span.line - 1]
    if span.line == span.end_line:
        return line[span.column - 1: span.end_column - 1].strip()
    return line[span.column - 1:].strip()
