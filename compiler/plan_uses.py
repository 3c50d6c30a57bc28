"""Uses of every value of a plan: which names forward code reads, which statements are dead.

A statement that defines a temporary (`let` of the step, hoisted value, layer-table
lookup) nobody reads is removed; the emitter binds in `forward` only the names
that are read, and registers as buffers only the constants `forward` reads.
"""

from __future__ import annotations

from collections import Counter

from . import ir
from .planner import Constant, Loop, Plan, Stmt


def node_reads(node: ir.Node, out: Counter) -> None:
    """Names `node` reads when rendered: variables, refs, sub-networks, operators, dims."""
    for n in node.walk():
        if n.op in ("var", "ref"):
            if n.attrs.get("kind") != "layer":
                out[n.attrs["name"]] += 1
        elif n.op in ("net_call", "op_apply", "net_init"):
            out[n.attrs["name"]] += 1
        elif n.op == "choose":
            out[n.attrs["flag"]] += 1
        for static in tuple(n.attrs.get("statics", ())) + ((n.static,) if n.op == "list" else ()):
            for d in (static if isinstance(static, tuple) else (static,)):
                if hasattr(d, "names"):
                    for name in d.names():
                        out[name] += 1


def _block_reads(block: list, out: Counter, plan: Plan) -> None:
    for item in block:
        if isinstance(item, Loop):
            node_reads(item.count, out)
            _block_reads(item.before, out, plan)
            _block_reads(item.body, out, plan)
        else:
            node_reads(item.value, out)
            if item.kind == "state" and item.state is not None:
                for d in item.state.type.shape:
                    for name in d.names():
                        out[name] += 1


def count_uses(plan: Plan) -> None:
    """Fill plan.uses / plan.init_uses and remove dead temporaries, to a fixpoint."""
    p = plan.program
    while True:
        uses: Counter = Counter()
        for block in (plan.prologue, plan.state_inits, plan.invariants, plan.peeled or [], plan.step, plan.final):
            _block_reads(block, uses, plan)
        for name in p.outputs:
            uses[name] += 1
        if plan.until is not None:  # the stopping condition of `step until`, read after every layer
            node_reads(plan.until, uses)
        for s in p.states:  # the per-layer record and the states' shapes
            uses[s.name] += 1
            for d in s.type.shape:
                for name in d.names():
                    uses[name] += 1
        for n in p.history_used:
            uses[plan.history_names[n]] += 1
        for node in _history_nodes(plan):
            uses[plan.history_names[node.attrs["name"]]] += 1
        if not _remove_dead(plan, uses):
            break
    plan.uses = uses
    for c in plan.constants:
        c.read_by_forward = uses[c.name] > 0
    # what the constructor must compute: constants forward reads, and everything constructor code reads
    base = Counter()
    for req in p.requires:
        node_reads(req.condition, base)
    for x in p.params:
        node_reads(x.init, base)
    if plan.table is not None:
        for st in plan.table.statements:
            node_reads(st[2] if isinstance(st, tuple) else st.value, base)
        for s in plan.table.inits:
            node_reads(s.init, base)
    # constants only read earlier constants: one pass from the last decides which are needed
    reads = Counter(base)
    for c in reversed(plan.constants):
        if c.read_by_forward or reads[c.name] or c.name in p.outputs:
            node_reads(c.value, reads)
    plan.init_uses = reads


def _history_nodes(plan: Plan):
    for st in plan.all_stmts():
        for n in st.value.walk():
            if n.op == "history_sum":
                yield n


def _remove_dead(plan: Plan, uses: Counter) -> bool:
    outputs = set(plan.program.outputs)
    changed = False

    def prune(block: list) -> list:
        nonlocal changed
        out = []
        for item in block:
            if isinstance(item, Loop):
                item.before = prune(item.before)
                item.body = prune(item.body)
                out.append(item)
                continue
            if item.kind in ("temp", "local", "table") and item.state is None and uses[item.target] == 0 \
                    and item.target not in outputs:
                changed = True
                continue
            out.append(item)
        return out

    plan.prologue = prune(plan.prologue)
    plan.invariants = prune(plan.invariants)
    if plan.peeled is not None:
        plan.peeled = prune(plan.peeled)
    plan.step = prune(plan.step)
    plan.final = prune(plan.final)
    return changed


def trace_only_inits(plan: Plan) -> list[str]:
    """States whose initial value only the trace reads: the peeled layer 0 (which always runs) assigns the
    state before any use, so forward computes it only when `record` asks for the states (ISTA's x⁰ = 0
    allocates nothing; ADMM-CSNet's zero-filled x⁰ costs no inverse FFT).  Without a peeled layer, a network
    run with zero layers (`num_layers = 0`: the final stage on the initial states) reads them.  A state only the
    trace reads (`mark_trace_only`) is computed only when it records in any case."""
    p = plan.program
    only_traced = set(plan.trace_only_states)
    if plan.peeled is None:
        return [s.name for s in p.states if s.name in only_traced]
    first_layer = plan.peeled
    candidates = {s.name for s in p.states} - set(p.prev_used) - set(p.history_used)
    read: Counter = Counter()
    for block in (plan.state_inits, plan.invariants):
        _block_reads(block, read, plan)
    candidates -= set(read)
    assigned: set[str] = set()
    for item in first_layer:
        if getattr(item, "trace_only", False):  # runs only when the trace records, after the recorded inits
            continue
        reads: Counter = Counter()
        _block_reads([item], reads, plan)
        candidates -= {name for name in reads if name not in assigned}
        if isinstance(item, Stmt) and item.kind == "state" and item.condition is None:
            assigned.add(item.target)
    return [s.name for s in p.states if s.name in only_traced or (s.name in candidates and s.name in assigned)]


def mark_trace_only(plan: Plan) -> list[str]:
    """States that nothing but the per-layer trace reads (FISTA's t once its momentum weights are a layer
    table: no output, no later value, no stopping condition depends on it): forward assigns them, and computes
    what only they read, only when `record` asks for the states.  Marks those statements of the layer
    (`Stmt.trace_only`) and returns the states.  A statement that calls a sub-network (which may keep running
    statistics) and everything it reads stay unconditional; so does every state of a `step until` spec (its
    freezing step reads them all)."""
    p = plan.program
    if p.until is not None:
        return []
    candidates = {s.name for s in p.states} - set(p.outputs) - set(p.prev_used) - set(p.history_used)
    layer_items = [item for block in (plan.peeled or [], plan.step) for item in block]
    stmts = [item for item in layer_items if isinstance(item, Stmt)]
    needed: Counter = Counter()
    _block_reads(plan.prologue + plan.state_inits + plan.invariants + plan.final, needed, plan)
    _block_reads([item for item in layer_items if isinstance(item, Loop)], needed, plan)  # nested loops stay
    for loop in (item for item in layer_items if isinstance(item, Loop)):
        needed.update(st.target for st in loop.statements())
    needed.update(s.name for s in p.states if s.name not in candidates)  # however assigned (a table lookup too)
    needed.update(p.outputs)
    for st in stmts:
        if any(n.op == "net_call" for n in st.value.walk()):
            needed[st.target] += 1
    counted: set[int] = set()  # statements whose reads are in `needed`
    while True:
        fresh = [i for i, st in enumerate(stmts) if st.target in needed and i not in counted]
        if not fresh:
            break
        for i in fresh:
            counted.add(i)
            _block_reads([stmts[i]], needed, plan)
    trace_only = {name for name in candidates if name not in needed}
    if not trace_only:
        return []
    for st in stmts:
        st.trace_only = st.target not in needed
    return [s.name for s in p.states if s.name in trace_only]


def stored_transposed(plan: Plan) -> dict[str, str]:
    """Real constant matrices that forward reads only as the matrix of a product with a batch of vectors
    (`M @ x` prints `x @ Mᵀ`, `addmm(b, x, Mᵀ)`): stored transposed and contiguous, so that the GEMM reads
    its operand in memory order (a transposed view costs 1-2 % at 2 threads here).  {constant: buffer}"""
    p = plan.program
    candidates = {c.name for c in plan.constants if c.read_by_forward and not c.python and c.value.type.rank == 2
                  and not c.value.type.batched and c.value.type.dtype == "real" and c.name not in p.outputs}
    good: set[str] = set()
    bad: set[str] = set()

    def as_matrix_of_a_batch(parent: ir.Node, index: int) -> bool:
        if parent.op == "addmm":
            return index == 1
        return parent.op == "matmul" and index == 0 and parent.args[1].type.rank == 1 \
            and parent.args[1].type.batched

    def visit(node: ir.Node) -> None:
        for index, arg in enumerate(node.args):
            if arg.op in ("ref", "var") and arg.attrs.get("name") in candidates and not arg.attrs.get("table"):
                (good if as_matrix_of_a_batch(node, index) else bad).add(arg.attrs["name"])
            else:
                visit(arg)

    roots = [st.value for st in plan.all_stmts()] + [loop.count for loop in _loops(plan)]
    if plan.until is not None:
        roots.append(plan.until)
    for root in roots:
        if root.op in ("ref", "var") and root.attrs.get("name") in candidates:
            bad.add(root.attrs["name"])
        visit(root)
    return {name: plan.names.fresh(f"{name}_t") for name in sorted(good - bad)}


def _loops(plan: Plan):
    def walk(block):
        for item in block:
            if isinstance(item, Loop):
                yield item
                yield from walk(item.body)
    for block in (plan.peeled or [], plan.step, plan.final):
        yield from walk(block)


def constant_needed(plan: Plan, c: Constant) -> bool:
    """Whether the constructor must compute `c` at all (forward or other constructor code reads it)."""
    return c.read_by_forward or plan.init_uses[c.name] > 0 or c.name in plan.program.outputs


__all__ = ["Stmt", "constant_needed", "count_uses", "mark_trace_only", "node_reads", "stored_transposed",
           "trace_only_inits"]
