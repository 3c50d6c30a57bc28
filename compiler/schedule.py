"""The schedule pass: the compile-time options applied to a checked program.

`unrollc compile --tie/--untie/--learn/--freeze NAME` re-ties or re-trains parameters and sub-networks
without editing the spec.  The checker (compiler/check/) checks the spec with its own annotations and
produces an `ir.Program`; this pass then

  1. validates the options against that program (diagnostics located in the option text);
  2. sets `per_layer` / `learned` of the named parameters and sub-networks;
  3. checks that re-tied ones are still used legally: a shared parameter's default cannot use `layer`,
     a per-layer parameter or sub-network has no value outside the `step:` block (diagnostics located
     in the spec);
  4. recomputes the level of every node (`relevel`): a shared parameter is known once per forward call,
     a per-layer one only inside the layer loop, and so is everything computed from it (see ir.py).

So compiling with `--tie p` gives the same program as writing `shared` on p's line (tests/test_schedule.py).
`--layers` is the exception: the depth is substituted into shapes (`num_layers`), so the driver passes it
to the checker; this pass only validates it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

from . import ir
from .check.literals import MAX_COUNT
from .check.names import kind_noun, with_article
from .diagnostics import CompileError, Diagnostic, DiagnosticSink, Source, did_you_mean
from .ir import CONST, FORWARD, LAYER

OPTIONS = ("tie", "untie", "learn", "freeze")


@dataclass
class Schedule:
    """Compile-time choices that override the spec's annotations (`unrollc compile` options)."""

    layers: int | None = None
    tie: list[str] = field(default_factory=list)
    untie: list[str] = field(default_factory=list)
    learn: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    # where each option value sits in the (reconstructed) command line, for diagnostics
    option_source: Source | None = None
    option_spans: dict = field(default_factory=dict)  # (option, name) -> Span


def apply_schedule(program: ir.Program, schedule: Schedule) -> ir.Program:
    """The program with the options applied (a new program: `program` itself is not changed).
    Raises CompileError for a bad option or a re-tying that the spec's uses do not allow."""
    validate_options(program, schedule)
    if not any(getattr(schedule, option) for option in OPTIONS):
        return program
    program = copy.deepcopy(program)
    for x in program.params + program.nets:
        if x.name in schedule.tie:
            x.per_layer = False
        if x.name in schedule.untie:
            x.per_layer = True
        if x.name in schedule.learn:
            x.learned = True
        if x.name in schedule.freeze:
            x.learned = False
    check_tying(program)
    relevel(program)
    return program


# ---------------------------------------------------------------- 1. the options themselves
def validate_options(program: ir.Program, schedule: Schedule) -> None:
    """Every option names a parameter or sub-network, no two options contradict each other, the depth is
    positive; the first mistake raises CompileError located in the option text."""
    source = schedule.option_source or Source("", "<options>")

    def fail(message: str, span, hint: str) -> None:
        raise CompileError([Diagnostic(message, span, hint)], source)

    names = [x.name for x in sorted(program.params + program.nets, key=lambda x: x.line)]
    others = _other_names(program)
    listing = ("the parameters are " + ", ".join(f"`{n}`" for n in names) if names
               else "this spec declares no parameters")
    for option in OPTIONS:
        for value in getattr(schedule, option):
            if value in names:
                continue
            span = schedule.option_spans.get((f"--{option}", value))
            if value in others:
                fail(f"--{option}: `{value}` is {with_article(kind_noun(others[value]))}, not a parameter of this "
                     "spec", span,
                     f"only `param` declarations can be tied, untied, learned or frozen; {listing}")
            fail(f"--{option}: `{value}` is not a parameter of this spec", span, did_you_mean(value, names) or listing)
    for a, b in (("tie", "untie"), ("learn", "freeze")):
        for value in sorted(set(getattr(schedule, a)) & set(getattr(schedule, b))):
            fail(f"`{value}` is given to both --{a} and --{b}", schedule.option_spans.get((f"--{b}", value)),
                 f"the two options contradict each other; keep one of them for `{value}`")
    if schedule.layers is not None and schedule.layers <= 0:
        fail(f"--layers must be positive, got {schedule.layers}", schedule.option_spans.get(("--layers", None)),
             "an unrolled network has at least one layer, e.g. `--layers 16`")
    if schedule.layers is not None and schedule.layers > MAX_COUNT:
        fail(f"--layers is at most {MAX_COUNT:,}, got {schedule.layers}", schedule.option_spans.get(("--layers", None)),
             "for more iterations run the network on its own output (or `monitor` a long run)")


def _other_names(program: ir.Program) -> dict[str, str]:
    """The kind of each top-level name that is not a parameter or sub-network."""
    out = {name: "dim" for name in program.dims}
    for items, kind in ((program.data, "data"), (program.hypers, "hyper"), (program.inputs, "input"),
                        (program.lets, "let"), (program.states, "state")):
        out.update((x.name, kind) for x in items)
    return out


# ---------------------------------------------------------------- 3. uses of re-tied parameters
# where a value is computed outside the layer loop, as messages say it
OUTSIDE_STEP = {"let": "a top-level `let`", "state": "the initial value of a state", "final": "the `final:` block"}


def check_tying(program: ir.Program) -> None:
    """Raise CompileError (located in the spec) for each use that the tying no longer allows: `layer` in
    the default of a parameter tied by `--tie`, a per-layer parameter or sub-network used outside `step:`.
    Reported in the order of the spec, like the checker's own diagnostics."""
    sink = DiagnosticSink(Source(program.source_text, program.source_path))
    params = {p.name for p in program.params if p.per_layer}
    nets = {n.name for n in program.nets if n.per_layer}
    declarations = sorted([(x.line, "let", x.value) for x in program.lets] + [(x.line, "param", x) for x in program.params]
                          + [(x.line, "state", x.init) for x in program.states], key=lambda item: item[0])
    for _line, where, item in declarations:
        if where != "param":
            _per_layer_uses(item, where, params, nets, sink)
        elif not item.per_layer and item.uses_layer:
            for node in item.init.walk():
                if node.op == "var" and node.attrs.get("kind") == "layer":
                    sink.error(f"`--tie {item.name}` cannot share `{item.name}`: its default depends on `layer`",
                               node.span, f"a shared parameter has one value for all layers; drop `{item.name}` "
                                          "from `--tie`")
    for node in _block_nodes(program.final):
        _per_layer_uses(node, "final", params, nets, sink)
    sink.raise_if_any()


def _per_layer_uses(node: ir.Node, where: str, params: set[str], nets: set[str], sink: DiagnosticSink) -> None:
    if node.op == "net_call" and node.attrs["name"] in nets:
        sink.error(f"the per-layer sub-network `{node.attrs['name']}` can only be used inside `step:`", node.span,
                   "it has one copy per layer; outside the loop there is no layer to choose")
        return  # its argument is not looked at (nor is it by the checker)
    if node.op == "var" and node.attrs.get("kind") == "param" and node.attrs["name"] in params:
        sink.error(f"the per-layer parameter `{node.attrs['name']}` cannot be used in {OUTSIDE_STEP[where]}",
                   node.span, "it has one value per layer and there is no layer here; use it inside `step:`, or "
                              "make it `shared`")
    for arg in node.args:
        _per_layer_uses(arg, where, params, nets, sink)


def _block_nodes(statements: list):
    """The expressions of a block, in order (repeat counts and bodies included)."""
    for st in statements:
        if isinstance(st, ir.Repeat):
            yield st.count
            yield from _block_nodes(st.body)
        else:
            yield st.value


# ---------------------------------------------------------------- 4. levels
def relevel(program: ir.Program) -> None:
    """Recompute the level of every node of `program` in place, from the tying of its parameters and
    sub-networks, by the checker's rules: a parameter is LAYER if per-layer, else FORWARD; a `let`
    constant, state or block temporary has the level it has at that point of the spec (states are LAYER
    in the step, temporaries that of their value, names assigned in a `repeat` body one more inside it);
    every other node is the max of its operands' and of its own minimum (`_own_level`)."""
    tying = {x.name: x.per_layer for x in program.params + program.nets}
    levels: dict[str, int] = {}  # the current level of each `let` constant, state and block temporary

    def visit(node: ir.Node) -> int:
        operands = [visit(a) for a in node.args]
        node.__dict__.pop("_key", None)  # the cached structural key includes `per_layer` flags
        if node.op == "var":
            name, kind = node.attrs["name"], node.attrs.get("kind")
            if kind == "param":
                node.attrs["per_layer"] = tying[name]
                node.level = LAYER if tying[name] else FORWARD
            elif kind in ("let", "state", "local") and not node.attrs.get("prev"):
                node.level = levels[name]
            # dims, data, hyperparameters, inputs, `layer`, `prev(x)`: their level does not depend on tying
        elif node.op == "list":  # a list of sizes: a constant
            node.level = CONST
        elif node.op == "history_sum":  # reads the values of the layers run so far: always in the loop
            node.level = LAYER
        else:
            if node.op == "net_call":
                node.attrs["per_layer"] = tying[node.attrs["name"]]
            node.level = max(operands + [_own_level(node, tying)])
        return node.level

    def block(statements: list, depth: int) -> None:
        for st in statements:
            if isinstance(st, ir.Repeat):
                visit(st.count)
                for name in st.carried:
                    if name in levels:
                        levels[name] = st.depth
                block(st.body, st.depth)
                for name in st.carried:
                    if name in levels:
                        levels[name] = depth
                continue
            level = visit(st.value)
            if st.kind == "local" and st.version == 1:  # `let t = ...`: a new temporary
                levels[st.target] = level
            elif st.kind == "local":
                levels[st.target] = max(level, depth) if levels[st.target] >= depth else level

    for let in program.lets:
        levels[let.name] = visit(let.value)
    for p in program.params:
        visit(p.init)
    for s in program.states:
        levels[s.name] = max(visit(s.init), FORWARD)
    for req in program.requires:
        visit(req.condition)
    declared = dict(levels)
    for name in _assigned_states(program.step):
        levels[name] = LAYER
    block(program.step, LAYER)
    for s in program.states:  # after the loop, states hold their final values
        levels[s.name] = max(declared[s.name], FORWARD)
    block(program.final, FORWARD)


def _own_level(node: ir.Node, tying: dict[str, bool]) -> int:
    """The lowest level a node has whatever its operands'."""
    if node.op == "net_call":  # a sub-network: one per layer, or one for all
        return LAYER if tying[node.attrs["name"]] else FORWARD
    if node.op in ("op_apply", "net_init"):  # a user operator; a functional network's initial weights (a buffer)
        return FORWARD
    return CONST


def _assigned_states(statements: list) -> list[str]:
    out: list[str] = []
    for st in statements:
        if isinstance(st, ir.Repeat):
            out += _assigned_states(st.body)
        elif st.kind == "state":
            out.append(st.target)
    return out
