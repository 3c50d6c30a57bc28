"""The plan: which value is computed where, under which name -- as a value.

`plan(program, options) -> Plan` decides everything the generated module does;
the emitter only prints a `Plan`, and `unrollc explain` / `unrollc graph` show the
same `Plan`.  The plan holds

* `constants`   values computed once at construction (constant `let`s, hoisted
                constant sub-expressions of the step, tables of values that depend
                only on the layer index), each with whether `forward` reads it;
* `prologue`    per-call values (top-level `let`s that read inputs or parameters);
* `state_inits` the states' initial values;
* `invariants`  layer-invariant sub-expressions hoisted out of the layer loop;
* `peeled`      the first layer with the states' known initial values propagated
                (zero terms removed), when that removes work; the loop then runs
                from layer 1;
* `step`        the layer loop's body (statements and nested `repeat` loops, each
                loop with the values computed once before it);
* `final`       the final stage;
* `names`       one namespace, seeded with every symbol of the spec;
* `uses`        how often forward code reads each name (nothing unused is bound).

Expressions in a plan are IR trees in which every value computed elsewhere is a
`ref` node naming it.  The decisions are made in `plan_build` (hoisting, common
sub-expressions, loop-invariant `let`s) and `plan_passes` (first-layer peeling,
layer-index tables, factor-once solves, per-layer parameter splitting).
"""

from __future__ import annotations

import keyword
from collections import Counter
from dataclasses import dataclass, field

from . import ir
from .types import REAL

TRIVIAL_OPS = {"var", "number", "list", "ref"}

# Names the generated module uses for itself: no spec symbol or temporary may take them.
GENERATED_NAMES = ("self", "torch", "rt", "layer", "dtype", "cdtype", "device", "batch", "record", "unbatched",
                   "batch_info", "dims", "states")


def real_scalar(node: ir.Node) -> bool:
    """A real scalar: where its value is a constant (or a layer-table entry), kept as a Python number, so that
    thresholds, steps and momentum weights cost no tensor op (and no 0-d tensor operand in a kernel)."""
    return real_scalar_type(node.type)


def real_scalar_type(t) -> bool:
    """A real, unbatched rank-0 type."""
    return t.rank == 0 and not t.batched and t.dtype == REAL


def is_trivial(node: ir.Node) -> bool:
    """Values that are as cheap to recompute as to name."""
    if node.op in TRIVIAL_OPS:
        return True
    if node.op in ("transpose", "adjoint", "neg") and node.args[0].op in TRIVIAL_OPS:
        return True
    return node.py  # plain Python arithmetic on hyperparameters / dims


class Names:
    """The one naming policy: allocates Python identifiers that cannot collide with any symbol of the
    spec (data, hyperparameters, dims, lets, parameters, states, temporaries, sub-networks, operators),
    with the names the generated code uses itself, with Python keywords, or with each other."""

    def __init__(self, taken):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in hint).strip("_") or "t"
        if base[0].isdigit():
            base = "t_" + base
        base = base[:24]
        name, i = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name

    @classmethod
    def for_program(cls, program: ir.Program) -> Names:
        symbols = [d.name for d in program.data] + [h.name for h in program.hypers] + [
            i.name for i in program.inputs] + [x.name for x in program.lets] + [x.name for x in program.params] + [
            s.name for s in program.states] + list(program.dims) + list(program.locals_types) + [
            n.name for n in program.nets] + list(program.loop_indices)
        return cls(symbols + list(GENERATED_NAMES))


def describe(node: ir.Node) -> str:
    """A short readable name for a hoisted value, from the names it combines."""
    names: list[str] = []
    for n in node.walk():
        if n.op in ("var", "ref") and n.attrs["name"] not in names and n.attrs.get("kind") not in ("dim", "layer"):
            names.append(n.attrs["name"])
    if names:
        return "_".join(names[:3])
    ops = [n.op for n in node.walk() if n.op not in ("var", "number")]
    return "_".join(ops[:1]) or "c"


def ref(name: str, node: ir.Node) -> ir.Node:
    """A reference to a value the plan computes elsewhere under `name`."""
    return ir.Node("ref", [], node.type, node.span, node.level, {"name": name}, py=node.py, static=node.static)


# ---------------------------------------------------------------- the plan
@dataclass
class Stmt:
    """`target = value` (value lowered: values computed elsewhere are `ref` nodes)."""

    target: str
    value: ir.Node
    comment: str  # "line N: spec text"
    kind: str  # state | local | temp (hoisted or common sub-expression) | table (a layer-table lookup)
    line: int = 0
    state: ir.State | None = None  # for kind == "state": the declaration (shape the value is fitted to)
    skip_last: bool = False  # not needed after the last layer: skipped there unless the trace records states
    trace_only: bool = False  # only the trace reads what it computes: run only when forward records the states
    condition: tuple | None = None  # (flag, branch): computed only when the constructor chose that branch
    # whether the readers of `target` take it for a Python number (the checker's typing of the assigned value,
    # or of the `ref`s to a temporary); None: as `value` is.  A value printed as a Python number that its readers take
    # for a tensor is made one (emitter.py `_tensor_where_read_as_one`)
    read_py: bool | None = None


@dataclass
class Loop:
    """A `repeat N:` loop of the step."""

    count: ir.Node
    before: list[Stmt]  # values that do not change across its iterations, computed once before it
    body: list  # Stmt | Loop
    comment: str
    line: int
    index: str | None = None  # `repeat N as j:` the loop variable (else the loop prints `for _ in ...`)
    backward: bool = False  # `repeat N as j backward:` counts down from N - 1

    def statements(self):
        """Every statement of the loop, nested loops included (the values before each loop first)."""
        yield from self.before
        for item in self.body:
            if isinstance(item, Loop):
                yield from item.statements()
            else:
                yield item


@dataclass
class Constant:
    """A value computed once, in the constructor."""

    name: str
    value: ir.Node
    comment: str
    kind: str  # let | hoisted | local | require
    python: bool  # a Python number (kept as an attribute), not a tensor (kept as a buffer)
    line: int = 0
    read_by_forward: bool = False
    condition: tuple | None = None  # (flag, branch): computed only when the constructor chose that branch


@dataclass
class LayerTable:
    """Values that depend only on the layer index (and constants): computed for every layer at
    construction by running the part of the step that computes them (`statements`), and looked up
    in forward.  `columns` are (table name, expression) pairs appended after statement `position`."""

    statements: list  # Stmt, in step order, with ("append", name, node, position) markers
    inits: list[Stmt]  # the static states' initial values
    columns: list[tuple[str, ir.Node]]
    states: list[str]  # static states
    lines: list[int]
    rows: dict[str, str]  # static state or step `let` -> the table of its values (states: L + 1 rows)
    # the columns that are real scalars: a tuple of Python numbers (FISTA's momentum weights), not a tensor
    python_columns: frozenset = frozenset()


@dataclass
class Plan:
    program: ir.Program
    class_name: str
    names: Names
    constants: list[Constant] = field(default_factory=list)
    prologue: list[Stmt] = field(default_factory=list)
    state_inits: list[Stmt] = field(default_factory=list)
    invariants: list[Stmt] = field(default_factory=list)
    peeled: list | None = None
    peel_note: str = ""
    step: list = field(default_factory=list)
    final: list = field(default_factory=list)
    prev_names: dict[str, str] = field(default_factory=dict)
    history_names: dict[str, str] = field(default_factory=dict)
    split_params: list[str] = field(default_factory=list)  # per-layer parameters split once per forward
    table: LayerTable | None = None
    outputs: list[tuple[str, bool]] = field(default_factory=list)  # (name, batched)
    uses: Counter = field(default_factory=Counter)  # reads by forward code
    init_uses: Counter = field(default_factory=Counter)  # reads by constructor code
    choices: dict = field(default_factory=dict)  # flag -> (p, q, r): the Gram form when p·r <= q·(p + r)
    noise_names: dict[str, str] = field(default_factory=dict)  # per-layer noise -> its draws for every layer
    until_names: dict[str, str] = field(default_factory=dict)  # `step until`: active mask, stop flag, start values
    until: object = None  # the lowered stopping condition (an ir.Node), evaluated after each layer
    # states whose initial value only the trace reads (the first layer peeled): computed only when it records
    trace_only_inits: list[str] = field(default_factory=list)
    # states only the trace reads (their statements are marked `trace_only`): assigned only when it records
    trace_only_states: list[str] = field(default_factory=list)
    # constant matrices forward reads only as the matrix of a batched product (x @ Mᵀ): kept as a contiguous Mᵀ
    # under the second name, so that every GEMM reads its operand in memory order (constant -> buffer name)
    transposed: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ queries
    def all_stmts(self, include_peeled: bool = True):
        """Every forward statement (prologue, initial states, invariants, loops, final), in order."""
        def walk(block):
            for item in block:
                if isinstance(item, Loop):
                    yield from item.statements()
                else:
                    yield item
        yield from self.prologue
        yield from self.state_inits
        yield from self.invariants
        if include_peeled and self.peeled is not None:
            yield from walk(self.peeled)
        yield from walk(self.step)
        yield from walk(self.final)


def plan(program: ir.Program, options=None, class_name: str | None = None) -> Plan:
    """Decide where every value of `program` is computed and under which name.  `options` are accepted
    for symmetry with the driver; the schedule pass has already applied them to `program`."""
    from .plan_build import build

    return build(program, class_name)


def summary(program: ir.Program) -> list[tuple[int, str, str]]:
    """(line, level name, text) for every step statement: the levels `unrollc explain` prints."""
    out = []

    def walk(block):
        for st in block:
            if isinstance(st, ir.Repeat):
                out.append((st.span.line, f"repeat x{st.count.attrs.get('value', '?')}", program.line(st.span.line)))
                walk(st.body)
            else:
                level = ir.LEVEL_NAMES.get(st.value.level, f"nested({st.value.level - ir.LAYER})")
                out.append((st.span.line, level, program.line(st.span.line)))

    walk(program.step)
    return out
