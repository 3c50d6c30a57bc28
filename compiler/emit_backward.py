"""Backward modes (`unrollc compile --backward MODE`, `unroll.load(spec, backward=MODE)`, or a spec's
`backward MODE` line): how the layer loop is differentiated.

* `unroll` (the default): the layer loop as written; autograd keeps every layer's intermediate values.
* `checkpoint[:k]`: the layers run in segments of k (default 1) inside one autograd node
  (`rt.checkpoint_layers`); the forward pass keeps only the states at segment boundaries, the
  backward pass recomputes each segment.  Each segment reads only its slice of the stacked per-layer
  parameters.
* `implicit[:tol]`: for specs whose layers are all alike (shared parameters, no use of the layer
  index): the forward pass iterates one layer to a fixed point (relative change <= tol, default
  1e-6; at most `layers` iterations), the backward pass differentiates the fixed point implicitly
  (`rt.implicit_layers`).

This module parses and validates a mode (diagnostics located in the option text or in the spec) and
prints the mode-specific part of `forward`: the call of the runtime helper and the method it calls
(`_layers` or `_layer_map`).  The rest of the module is printed by emitter.py as in `unroll` mode.
"""

from __future__ import annotations

import ast
import builtins
from dataclasses import dataclass

from . import ir
from .diagnostics import CompileError, Diagnostic, DiagnosticSink, Source, Span
from .emit_head import Lines

MODES = ("unroll", "checkpoint", "implicit")
DEFAULT_SEGMENT = 1
DEFAULT_TOLERANCE = 1e-6
_SYNTAX = "`unroll`, `checkpoint`, `checkpoint:K` (K layers per segment), `implicit` or `implicit:TOL`"
# names the mode methods bind themselves, or that are not values of `_unrolled`
_OWN_NAMES = {"self", "torch", "rt", "layer", "record", "first", "last", "_"} | set(dir(builtins))


@dataclass(frozen=True)
class BackwardMode:
    kind: str = "unroll"
    segment: int = DEFAULT_SEGMENT  # checkpoint: layers per segment
    tolerance: float = DEFAULT_TOLERANCE  # implicit: relative change at which the forward iteration stops

    def text(self) -> str:
        if self.kind == "checkpoint":
            return f"checkpoint:{self.segment}"
        if self.kind == "implicit":
            return f"implicit:{self.tolerance!r}"
        return "unroll"


def parse_mode(text: str, source: Source | None = None, span: Span | None = None) -> BackwardMode:
    """`unroll`, `checkpoint[:k]` or `implicit[:tol]`; a mistake raises CompileError located at `span`
    of `source` (the option text, or the spec's `backward` line)."""
    source = source or Source(text, "<options>")
    kind, _, arg = str(text).strip().partition(":")

    def fail(message: str, hint: str):
        raise CompileError([Diagnostic(message, span, hint)], source)

    if kind not in MODES:
        fail(f"unknown backward mode `{text}`", f"the modes are {_SYNTAX}")
    if kind == "unroll":
        if arg:
            fail("`unroll` takes no argument", "write `unroll`")
        return BackwardMode()
    if kind == "checkpoint":
        if not arg:
            return BackwardMode("checkpoint")
        if not arg.isdigit() or int(arg) <= 0:
            fail(f"`checkpoint:{arg}`: the segment length must be a positive integer",
                 "e.g. `checkpoint:16` recomputes 16 layers at a time in the backward pass")
        return BackwardMode("checkpoint", segment=int(arg))
    if not arg:
        return BackwardMode("implicit")
    try:
        tol = float(arg)
    except ValueError:
        tol = -1.0
    if not 0 < tol < 1:
        fail(f"`implicit:{arg}`: the tolerance must be a number between 0 and 1",
             "e.g. `implicit:1e-8` iterates until the states change by less than 1e-8 (relative)")
    return BackwardMode("implicit", tolerance=tol)


# ---------------------------------------------------------------- where a mode applies
def check_mode(program: ir.Program, mode: BackwardMode, static_states=()) -> None:
    """Raise CompileError, located in the spec, where `mode` cannot run this program: `checkpoint`
    and `implicit` cannot recompute `history_sum` (it reads every earlier layer); `implicit` needs
    layers that are all alike -- no per-layer parameter or sub-network, no use of `layer`, no state
    whose update follows a schedule (`static_states`, e.g. FISTA's t_k): without them there is no
    single map whose fixed point the layers approach."""
    if mode.kind == "unroll":
        return
    sink = DiagnosticSink(Source(program.source_text, program.source_path))
    option = f"--backward {mode.kind}"
    until = getattr(program, "until", None)
    if until is not None:
        sink.error(f"`{option}` cannot run `step until`: each sample stops at its own layer", until.span,
                   "compile this spec with `--backward unroll`")
    for node in _step_nodes(program.step):
        if node.op == "history_sum":
            sink.error(f"`{option}` cannot recompute `history_sum`: it reads the states of every earlier layer",
                       node.span, "compile this spec with `--backward unroll`")
            break
    if mode.kind == "implicit":
        why = "`implicit` differentiates the fixed point of one layer map shared by all layers"
        hint = f"compile with `--backward checkpoint` instead; {why}"
        for node in _step_nodes(program.step):
            name = node.attrs.get("name")
            if node.op == "var" and node.attrs.get("kind") == "param" and node.attrs.get("per_layer"):
                sink.error(f"`{option}` needs parameters shared by all layers; `{name}` is per-layer", node.span,
                           f"tie it with `--tie {name}`, or compile with `--backward checkpoint`; {why}")
            elif node.op == "net_call" and node.attrs.get("per_layer"):
                sink.error(f"`{option}` needs sub-networks shared by all layers; `{name}` is per-layer", node.span,
                           f"tie it with `--tie {name}`, or compile with `--backward checkpoint`; {why}")
            elif node.op == "var" and node.attrs.get("kind") == "layer":
                sink.error(f"`{option}` needs layers that are all alike; this update reads the layer index",
                           node.span, hint)
        reported = set()
        for st in _step_statements(program.step):
            if st.kind == "state" and st.target in static_states and st.target not in reported:
                reported.add(st.target)
                sink.error(f"`{option}`: the update of `{st.target}` depends only on the layer index (a "
                           "schedule), so the layers have no common fixed point", st.span, hint)
    sink.raise_if_any()


def _step_statements(block):
    for st in block:
        if isinstance(st, ir.Repeat):
            yield from _step_statements(st.body)
        else:
            yield st


def _step_nodes(block):
    for st in block:
        if isinstance(st, ir.Repeat):
            yield from st.count.walk()
            yield from _step_nodes(st.body)
        else:
            yield from st.value.walk()


# ---------------------------------------------------------------- printing
def _free_names(lines: list[str]) -> set[str]:
    """Names that printed code (a function body) reads before or without assigning them."""
    tree = ast.parse("def _f():\n" + "\n".join(lines) + "\n")
    loaded, stored = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (stored if isinstance(node.ctx, ast.Store) else loaded).add(node.id)
    return loaded - stored


def emit_mode(printer, mode: BackwardMode) -> tuple[Lines, Lines]:
    """(lines of `_unrolled` that replace the layer loop, the method they call).  `printer` is the
    emitter's ModulePrinter (its `_layer_body` prints one layer as in `unroll` mode)."""
    p, plan = printer.p, printer.plan
    states = [s.name for s in p.states]
    method = Lines()
    if mode.kind == "checkpoint":
        name = "_layers"
        body = Lines()
        if plan.peeled is not None:
            body.add("if first == 0:", 2)
            body.add(f"# {plan.peel_note}", 3)
            body.extend(printer._layer_body(plan.peeled, printer.fwd.at("0"), 3))
            body.add("first = 1", 3)
        body.add("for layer in range(first, last):", 2)
        body.extend(printer._layer_body(plan.step, printer.fwd, 3))
        doc = ("Layers first .. last-1 (backward mode `checkpoint`: the backward pass recomputes them one segment "
               "at a time).")
        head_args = "first, last, record"
    else:
        name = "_layer_map"
        body = printer._layer_body(plan.step, printer.fwd.at("0"), 2)
        doc = "One layer, the same for all layers: the map whose fixed point backward mode `implicit` solves."
        head_args = "record"
    body.add(f"return ({', '.join(states)},)", 2)
    per_layer_names = {x.name for x in p.params if x.per_layer}
    context = sorted(_free_names(body.lines) - set(states) - _OWN_NAMES)
    shared = [n for n in context if n not in per_layer_names]
    per_layer = [n for n in context if n in per_layer_names] if mode.kind == "checkpoint" else []
    shared = shared if mode.kind == "checkpoint" else shared + [n for n in context if n in per_layer_names]
    args = ", ".join([head_args] + states + shared + per_layer)
    method.add(f"def {name}(self, {args}):", 1)
    method.add(f'"""{doc}"""', 2)
    method.extend(body)

    call = Lines()
    targets = _tuple(states)
    if mode.kind == "checkpoint":
        call.add(f"# the layers in checkpointed segments of {mode.segment} (backward mode `{mode.text()}`): the "
                 "forward pass keeps", 2)
        call.add("# only the states between segments, the backward pass recomputes one segment at a time", 2)
        _call(call, targets, "rt.checkpoint_layers", ["self._layers", f"segment={mode.segment}", "first=0",
                                                      f"last={printer._depth()}", f"states={_tuple(states)}",
                                                      f"shared={_tuple(shared)}", f"per_layer={_tuple(per_layer)}",
                                                      "record=record"])
    else:
        call.add(f"# the fixed point of the layer map, iterated to a relative change of {mode.tolerance!r} (at "
                 "most num_layers", 2)
        call.add(f"# times) and differentiated implicitly (backward mode `{mode.text()}`)", 2)
        _call(call, targets, "rt.implicit_layers", ["self", "self._layer_map", f"tolerance={mode.tolerance!r}",
                                                    f"max_layers={printer._depth()}", f"states={_tuple(states)}",
                                                    f"shared={_tuple(shared)}", "record=record"])
    return call, method


def _tuple(names: list[str]) -> str:
    return f"({names[0]},)" if len(names) == 1 else f"({', '.join(names)})"


def _call(out: Lines, targets: str, function: str, args: list[str], width: int = 110) -> None:
    """`targets = function(args)`, broken after the parenthesis and between arguments when long."""
    line = f"{targets} = {function}({', '.join(args)})"
    if len(line) + 8 <= width:
        out.add(line, 2)
        return
    out.add(f"{targets} = {function}(", 2)
    current = ""
    for arg in args:
        piece = f"{current}, {arg}" if current else arg
        if current and len(piece) + 12 > width:
            out.add(current + ",", 3)
            piece = arg
        current = piece
    out.add(current + ")", 3)
