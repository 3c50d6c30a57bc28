"""Optimisation passes of the planner: no work the math does not need (the algebraic rewrites are
in `plan_algebra`).

* `find_layer_table`   values that depend only on the layer index and constants
                       (FISTA's t_k sequence) are computed for all layers at
                       construction and looked up in forward;
* `peel_first_layer`   states whose initial value is zero make terms of the first
                       layer vanish (`Wt @ x` with x⁰ = 0): the first layer is
                       emitted separately with those terms removed;
* `split_per_layer_params`  a stacked per-layer parameter is split once per
                       forward (`unbind`), so that autograd does not allocate and
                       zero the whole [L, ...] gradient once per layer.

Each pass only rewrites IR trees; a value whose simplification is not exact is
left as it was.
"""

from __future__ import annotations

import dataclasses

from . import ir
from .planner import LayerTable, is_trivial, real_scalar, real_scalar_type

EXPENSIVE_OPS = {"matmul", "dot", "outer", "solve", "conv2", "conv2_adj", "conv2z", "conv2z_adj", "chanmix", "fft",
                 "ifft", "fft2", "ifft2", "svt", "row_shrink", "patches", "unpatch", "patch_average", "stft", "istft"}


def _rebuild(node: ir.Node, args: list[ir.Node], **changes) -> ir.Node:
    if not changes and all(a is b for a, b in zip(args, node.args)):
        return node
    fields = {"op": node.op, "args": args, "type": node.type, "span": node.span, "level": node.level,
              "attrs": dict(node.attrs), "py": node.py, "static": node.static}
    fields.update(changes)
    return ir.Node(**fields)


def map_nodes(program: ir.Program, fn) -> ir.Program:
    """A copy of `program` with every expression tree of the step, final stage, lets and initial states
    rewritten bottom-up by `fn(node, new_args) -> node`."""
    def tree(node: ir.Node) -> ir.Node:
        return fn(node, [tree(a) for a in node.args])

    def block(stmts):
        out = []
        for st in stmts:
            if isinstance(st, ir.Repeat):
                out.append(dataclasses.replace(st, count=tree(st.count), body=block(st.body)))
            else:
                out.append(dataclasses.replace(st, value=tree(st.value)))
        return out

    return dataclasses.replace(
        program, step=block(program.step), final=block(program.final),
        lets=[dataclasses.replace(x, value=tree(x.value)) for x in program.lets],
        states=[dataclasses.replace(s, init=tree(s.init)) for s in program.states])


def _all_nodes(program: ir.Program):
    def block(stmts):
        for st in stmts:
            if isinstance(st, ir.Repeat):
                yield from st.count.walk()
                yield from block(st.body)
            else:
                yield from st.value.walk()
    yield from block(program.step)
    yield from block(program.final)
    for x in program.lets:
        yield from x.value.walk()
    for s in program.states:
        yield from s.init.walk()


# ---------------------------------------------------------------- per-layer parameters
def split_per_layer_params(program: ir.Program) -> list[str]:
    return [x.name for x in program.params if x.per_layer]


# ---------------------------------------------------------------- layer tables
def find_layer_table(program: ir.Program, builder) -> LayerTable | None:
    """States (and step `let`s) whose values depend only on the layer index and constants, and the
    largest expressions of the other statements made only of them: computed at construction."""
    step = program.step
    top = [st for st in step if isinstance(st, ir.Assign)]
    in_repeat: set[str] = set()

    def nested(block):
        for st in block:
            if isinstance(st, ir.Repeat):
                for inner in st.body:
                    if isinstance(inner, ir.Assign):
                        in_repeat.add(inner.target)
                nested(st.body)
    nested(step)
    assigned = {st.target for st in top if st.kind == "state"}
    counts: dict[str, int] = {}
    for st in top:
        counts[st.target] = counts.get(st.target, 0) + 1
    static_states = {s.name for s in program.states
                     if s.name in assigned and counts[s.name] == 1 and s.init.level == ir.CONST
                     and not s.type.batched and s.name not in in_repeat and s.name not in program.prev_used
                     and s.name not in program.history_used}
    while True:
        static_locals: set[str] = set()
        for st in top:
            if st.kind == "local" and counts[st.target] == 1 and st.target not in in_repeat \
                    and _static(st.value, static_states, static_locals):
                static_locals.add(st.target)
        keep = {s for s in static_states
                if all(_static(st.value, static_states, static_locals) for st in top if st.target == s)}
        if keep == static_states:
            break
        static_states = keep
    if not static_states:
        return None
    static_targets = static_states | static_locals

    # the largest static, non-trivial, per-layer sub-expressions of the other statements
    columns: dict[tuple, tuple[str, ir.Node]] = {}
    positions: dict[tuple, int] = {}

    def collect(node: ir.Node, position: int):
        if node.level >= ir.LAYER and not is_trivial(node) and _static(node, static_states, static_locals):
            if node.key not in columns:
                name = builder.names.fresh(_table_hint(node))
                columns[node.key] = (name, node)
                positions[node.key] = position
            return
        for a in node.args:
            collect(a, position)

    def walk(block, position: int | None):
        for i, st in enumerate(block):
            here = i if position is None else position
            if isinstance(st, ir.Repeat):
                walk(st.body, here)
            elif not (position is None and st.target in static_targets):
                collect(st.value, here)

    walk(step, None)
    statements: list = []
    for i, st in enumerate(step):
        for key, (name, node) in columns.items():
            if positions[key] == i:
                statements.append(("append", name, node))
        if isinstance(st, ir.Assign) and st.target in static_targets:
            statements.append(st)
    inits = [s for s in program.states if s.name in static_states]
    for key, (name, _node) in columns.items():
        builder.table_refs[key] = name
    rows = {t: builder.names.fresh(f"{t}_table") for t in sorted(static_targets)}
    builder.table_rows = {t: (name, 1 if t in static_states else 0) for t, name in rows.items()}
    lines = sorted({st.span.line for st in step if isinstance(st, ir.Assign) and st.target in static_targets}
                   | {s.line for s in inits})
    python = frozenset(name for name, node in columns.values() if real_scalar(node))
    return LayerTable(statements, inits, [c for c in columns.values()], sorted(static_states), lines, rows, python)


def _table_hint(node: ir.Node) -> str:
    names = [n.attrs["name"] for n in node.walk() if n.op == "var" and n.attrs.get("kind") != "dim"]
    return ("_".join(dict.fromkeys(names)) or "layer") + "_table"


def _static(node: ir.Node, states: set[str], locals_: set[str]) -> bool:
    if node.op == "number":
        return True
    if node.op == "var":
        kind = node.attrs.get("kind")
        if kind == "layer":
            return True
        if kind == "state":
            return node.attrs["name"] in states and not node.attrs.get("prev")
        if kind == "local":
            return node.attrs["name"] in locals_
        return node.level == ir.CONST
    if node.op in ("ref", "net_call", "op_apply", "history_sum", "net_init"):
        return False
    return all(_static(a, states, locals_) for a in node.args)


# ---------------------------------------------------------------- first-layer peeling
def peel_first_layer(program: ir.Program, builder) -> tuple[list | None, str]:
    """The step of layer 0 with the zero initial values of states propagated, when that removes work.
    A real scalar state with a literal initial value (FISTA's t = 1) is propagated too, as far as it makes
    a factor zero ((t - 1)/t_new · (x_new - x) vanishes in layer 0)."""
    assigned = {st.target for st in _assignments(program.step)}  # a state the step never assigns is hoisted
    zero_states = {s.name for s in program.states if _is_zero(s.init)} & assigned
    numbers = {s.name: s.init.attrs["value"] for s in program.states
               if s.name in assigned and s.init.op == "number" and real_scalar_type(s.type)}
    if not zero_states and not numbers:
        return None, ""
    initial = set(zero_states) | set(numbers)  # states not assigned yet in layer 0: they hold their initial value
    zero_defs: set[tuple[str, int]] = set()  # (name, version) of assignments whose value is zero
    dropped: list[ir.Node] = []
    used_numbers: set[str] = set()

    def is_zero_var(node: ir.Node) -> bool:
        name = node.attrs["name"]
        if node.attrs.get("kind") == "state" and name in zero_states and (node.attrs.get("prev") or name in initial):
            return True  # prev(x) in layer 0 is the initial value too
        return (name, node.attrs.get("version")) in zero_defs

    def known_number(node: ir.Node):
        """The value of a real scalar at layer 0 when it is a literal or a state's literal initial value."""
        if node.op == "number" and node.type.dtype in ("real", "int") and tuple(node.type.shape) == ():
            return node.attrs["value"]
        name = node.attrs.get("name")
        if node.op == "var" and node.attrs.get("kind") == "state" and name in numbers \
                and (node.attrs.get("prev") or name in initial):
            return numbers[name]
        return None

    def note_numbers(node: ir.Node) -> None:
        """The literal states whose values made `node` known (for the note)."""
        used_numbers.update(n.attrs["name"] for n in node.walk() if n.op == "var" and known_number(n) is not None
                            and n.attrs.get("kind") == "state")

    def known_value(node: ir.Node):
        """The value at layer 0 of a real scalar expression of literals and such states, else None."""
        value = known_number(node)
        if value is not None or node.op not in ("add", "sub", "mul", "div", "neg") or node.type.dtype not in (
                "real", "int") or tuple(node.type.shape) != () or node.type.batched:
            return value
        values = [known_value(a) for a in node.args]
        if node.op in ("mul", "div") and values[0] == 0 and not (node.op == "div" and values[1] == 0):
            return 0  # 0 · s, 0 / s: exact for finite s and a nonzero divisor, as everywhere in this pass
        if node.op == "mul" and values[1] == 0:
            return 0
        if any(v is None for v in values):
            return None
        if node.op == "neg":
            return -values[0]
        if node.op == "div":
            return values[0] / values[1] if values[1] != 0 else None
        a, b = values
        return a + b if node.op == "add" else a - b if node.op == "sub" else a * b

    def simplify(node: ir.Node) -> tuple[ir.Node, bool]:
        """(an exact computation of node at layer 0, whether its value is known to be zero)."""
        if node.op == "var":
            return node, is_zero_var(node)
        if node.op == "autodiff":
            return node, False  # its variable is a function argument, never the zero initial value
        if not node.args:
            return node, False
        if known_value(node) == 0:  # t - 1 with t = 1 in layer 0
            note_numbers(node)
            return node, True
        parts = [simplify(a) for a in node.args]
        args = [p[0] for p in parts]
        zeros = [p[1] for p in parts]
        op = node.op
        if op == "lerp" and known_value(node.args[2]) == 1 and _same_type(args[1], node):
            note_numbers(node.args[2])
            dropped.append(node)  # lerp(b, a, 1) = a: FISTA's first momentum step, (t - 1)/t_new = 0
            return args[1], False
        if op in ("matmul", "mul", "div") and sum(a.op == "neg" for a in args) == 1 and not any(zeros) \
                and any(a.op == "neg" and a is not b for a, b in zip(args, node.args)):
            # a negation this pass introduced moves outwards (exact), where a subtraction can absorb it
            inner = [a.args[0] if a.op == "neg" else a for a in args]
            return ir.Node("neg", [_rebuild(node, inner)], node.type, node.span, node.level), False
        if op == "neg" and args[0].op == "neg" and args[0] is not node.args[0]:
            return args[0].args[0], False
        if op in ("matmul", "mul") and any(zeros):
            dropped.append(node)
            return node, True
        if op in ("neg", "transpose", "adjoint", "conj") and zeros[0]:
            return node, True
        if op in ("add", "sub") and all(zeros):
            dropped.append(node)
            return node, True
        if op == "add":
            for z, other in ((0, 1), (1, 0)):
                if zeros[z] and _same_type(args[other], node):
                    dropped.append(node)
                    return args[other], False
        if op == "sub":
            if zeros[1] and _same_type(args[0], node):
                dropped.append(node)
                return args[0], False
            if zeros[0] and _same_type(args[1], node):
                dropped.append(node)
                if args[1].op == "neg" and args[1] is not node.args[1]:
                    return args[1].args[0], False
                return ir.Node("neg", [args[1]], node.type, node.span, node.level), False
        return _rebuild(node, args), False

    stmts = []
    for st in program.step:
        if isinstance(st, ir.Repeat):
            stmts.append(st)  # inside a nested loop nothing is known: keep it as it is
            inside = {x.target for x in _assignments([st])}
            initial.difference_update(inside)
            zero_defs.difference_update({d for d in zero_defs if d[0] in inside})
            continue
        value, zero = simplify(st.value)
        initial.discard(st.target)
        if zero:
            zero_defs.add((st.target, st.version))
        stmts.append(dataclasses.replace(st, value=value))
    if not any(n.op in EXPENSIVE_OPS or n.op in ("add", "sub", "mul") for n in dropped):
        return None, ""
    removed = [builder.span_text(n).split(": ", 1)[-1] for n in dropped if n.op in EXPENSIVE_OPS]
    known = ([f"{', '.join(sorted(zero_states))} = 0"] if zero_states else []) + [
        f"{n} = {_number_text(numbers[n])}" for n in sorted(used_numbers)]
    vanished = list(dict.fromkeys(removed))
    note = f"layer 0 with {'; '.join(known)}" + (
        f" ({'; '.join(vanished)} {'vanishes' if len(vanished) == 1 else 'vanish'})" if vanished else "")
    return builder.block(stmts, ir.LAYER), note


def _assignments(block):
    for st in block:
        if isinstance(st, ir.Repeat):
            yield from _assignments(st.body)
        else:
            yield st


def _is_zero(node: ir.Node) -> bool:
    if node.op == "number":
        return node.attrs["value"] == 0
    return node.op == "zeros"


def _number_text(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _same_type(a: ir.Node, b: ir.Node) -> bool:
    return (a.type.dtype == b.type.dtype and tuple(a.type.shape) == tuple(b.type.shape)
            and a.type.batched == b.type.batched and not a.py)


__all__ = ["find_layer_table", "mark_dead_after_last_layer", "peel_first_layer", "split_per_layer_params"]


def mark_dead_after_last_layer(step: list, program: ir.Program) -> None:
    """Statements of the layer loop whose values nothing reads after the last layer (FISTA's momentum
    step, ADMM's z and α updates): the emitter skips them in the last layer unless the trace records
    the states."""
    from collections import Counter

    from .plan_uses import node_reads

    live = set(program.outputs)
    final_reads: Counter = Counter()
    for st in _assignments(program.final):
        node_reads(st.value, final_reads)
    live |= set(final_reads)
    live |= {program_name for program_name in program.history_used}
    for item in reversed(step):
        if not hasattr(item, "target"):  # a nested loop: everything in it stays, with all it reads
            reads: Counter = Counter()
            for st in item.statements():
                node_reads(st.value, reads)
                live.add(st.target)
            node_reads(item.count, reads)
            live |= set(reads)
            continue
        if item.target in live:
            live.discard(item.target)
            reads = Counter()
            node_reads(item.value, reads)
            live |= set(reads)
        else:
            item.skip_last = True
