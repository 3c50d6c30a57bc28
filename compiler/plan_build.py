"""Building a `Plan` from a checked program: where each value is computed.

* level CONST sub-expressions of the step become constants (computed in the
  constructor);
* level FORWARD sub-expressions (inputs and shared parameters only) are hoisted
  out of the layer loop and computed once per forward call;
* inside a `repeat` loop, values that do not change across its iterations are
  computed once before it;
* a non-trivial sub-expression that occurs twice in one block is computed once
  (keys include variable versions, so `x` before and after an update never merge);
* a step `let` that does not depend on the loop is computed once, outside it.

The optimisation passes of `plan_passes` run on the program before lowering
(factor-once solves, layer tables) and on the lowered step (first-layer peeling).
"""

from __future__ import annotations

from . import ir
from .plan_algebra import (
    associate_invariant_products,
    distribute_products,
    factor_solves,
    fold_scalars,
    fuse_addmm,
    fuse_lerp,
    gram_choice,
    python_scalar_lets,
    squared_norms,
)
from .plan_passes import (
    find_layer_table,
    mark_dead_after_last_layer,
    peel_first_layer,
    split_per_layer_params,
)
from .planner import Constant, Loop, Names, Plan, Stmt, describe, is_trivial, real_scalar, ref


def comment_text(text: str) -> str:
    """Spec text made safe for a single-line Python comment."""
    return "".join(ch if ch.isprintable() else "?" for ch in text).strip()


class Builder:
    def __init__(self, program: ir.Program, class_name: str):
        self.p = program
        self.plan = Plan(program, class_name, Names.for_program(program))
        self.names = self.plan.names
        self.constant_keys: dict[tuple, str] = {}
        self.hoisted: dict[int, list[Stmt]] = {ir.FORWARD: []}
        self.hoist_keys: dict[int, dict[tuple, str]] = {ir.FORWARD: {}}
        self.cse_stack: list[tuple[set, dict, list, int]] = []
        self.table_refs: dict[tuple, str] = {}  # key of a layer-table expression -> its column name
        self.lifted_done: set[tuple[str, int]] = set()
        self.condition: tuple | None = None  # (flag, branch) while lowering one form of a `choose`
        self.choice_flags: dict[tuple, str] = {}
        self.assignment_counts = {**assignment_counts(program.step), **assignment_counts(program.final)}
        self.table_rows: dict[str, tuple[str, int]] = {}  # static target -> (rows table, row offset)
        self.protected: list[tuple] = []  # (name, version) of the variables of the differentiations being lowered

    # ------------------------------------------------------------ expressions
    def lower(self, node: ir.Node, depth: int) -> ir.Node:
        """`node` evaluated in a block at `depth`, with values computed elsewhere replaced by refs."""
        if node.op in ("var", "number", "list", "ref"):
            return node
        if node.op == "choose":
            return self.lower_choice(node, depth)
        if self.protected and self.reads_protected(node):
            return self.lower_args(node, depth)  # no hoisting or merging across a differentiation boundary
        if node.key in self.table_refs and depth >= ir.LAYER:
            lookup = ref(self.table_refs[node.key], node)
            lookup.attrs.update(table=True, offset=0)
            lookup.py = real_scalar(node)  # a column of Python numbers (find_layer_table)
            return lookup
        if node.key in self.constant_keys and not node.py:
            self._widen(self.plan.constants, self.constant_keys[node.key])
            out = ref(self.constant_keys[node.key], node)  # computed at construction already
            out.py = real_scalar(node)
            return out
        if node.op == "inverse" and node.level == ir.CONST and depth == ir.CONST:
            return self.hoist(node)  # an inverse is computed once, however many constants use it
        if node.op in ("transpose", "adjoint") and node.level < depth:
            return self.lower_args(node, depth)  # hoist the matrix; the transpose is a free view
        if not is_trivial(node):
            if node.level < depth and self.bound_outside(node):
                return self.hoist(node)
            for repeated, names, pre, block_depth in reversed(self.cse_stack):
                if block_depth == depth and node.key in repeated:
                    name = names.get(node.key)
                    if name is None:
                        value = self.lower_args(node, depth)
                        name = self.names.fresh(describe(node))
                        pre.append(Stmt(name, value, self.span_text(node), "temp", node.span.line,
                                        read_py=node.py))
                        names[node.key] = name
                    return ref(name, node)
                break
        return self.lower_args(node, depth)

    def lower_choice(self, node: ir.Node, depth: int) -> ir.Node:
        """Both forms of a `choose` node; values hoisted for one form only are computed only when the
        constructor picked that form."""
        flag = self.choice_flags.get(node.attrs["id"])
        if flag is None:
            flag = self.names.fresh("gram_form")
            self.choice_flags[node.attrs["id"]] = flag
            self.plan.choices[flag] = node.attrs["sizes"]
        branches = []
        for branch, arg in enumerate(node.args):
            saved = self.condition
            self.condition = (flag, branch) if saved is None else saved
            branches.append(self.lower(arg, depth))
            self.condition = saved
        if branches[0].key == branches[1].key:  # both forms became the same (the peeled first layer)
            return branches[0]
        return ir.Node("choose", branches, node.type, node.span, node.level, {"flag": flag})

    def bound_outside(self, node: ir.Node) -> bool:
        """Whether every step `let` the value reads is bound outside the loop (lifted): a `let` assigned
        twice in the step is bound inside it even when its value is layer-invariant."""
        return all((n.attrs["name"], n.attrs.get("version")) in self.lifted_done
                   for n in node.walk() if n.op == "var" and n.attrs.get("kind") == "local")

    def reads_protected(self, node: ir.Node) -> bool:
        return any(n.op == "var" and (n.attrs["name"], n.attrs.get("version")) in self.protected for n in node.walk())

    def lower_autodiff(self, node: ir.Node, depth: int) -> ir.Node:
        """`grad`/`vjp`/`jvp`/`jacobian` by autograd: the differentiated expression is re-evaluated as a
        function of its variable, so what depends on the variable stays inside it (never a ref)."""
        rest = [self.lower(a, depth) for a in node.args[1:]]
        wrt = node.args[1]
        self.protected.append((wrt.attrs["name"], wrt.attrs.get("version")))
        body = self.lower(node.args[0], depth)
        self.protected.pop()
        return ir.Node(node.op, [body] + rest, node.type, node.span, node.level, dict(node.attrs), node.py,
                       node.static)

    def lower_args(self, node: ir.Node, depth: int) -> ir.Node:
        if node.op == "autodiff":
            return self.lower_autodiff(node, depth)
        args = [self.lower(a, depth) for a in node.args]
        if all(a is b for a, b in zip(args, node.args)):
            return node
        return ir.Node(node.op, args, node.type, node.span, node.level, dict(node.attrs), node.py, node.static)

    def hoist(self, node: ir.Node) -> ir.Node:
        level = node.level
        if level == ir.CONST:
            name = self.constant_keys.get(node.key)
            if name is None:
                value = self.lower_args(node, ir.CONST)
                name = self.names.fresh(describe(node.args[0]) + "_inv" if node.op == "inverse" else
                                        describe(node) + "_c")
                python = node.py or real_scalar(node)
                self.plan.constants.append(Constant(name, value, self.span_text(node), "hoisted", python,
                                                    node.span.line, condition=self.condition))
                self.constant_keys[node.key] = name
            else:
                self._widen(self.plan.constants, name)
            out = ref(name, node)
            out.py = out.py or real_scalar(node)
            return out
        keys = self.hoist_keys.setdefault(level, {})
        name = keys.get(node.key)
        if name is None:
            value = self.lower(node, level)
            name = self.names.fresh(describe(node.args[0]) + "_inv" if node.op == "inverse" else describe(node))
            self.hoisted.setdefault(level, []).append(Stmt(name, value, self.span_text(node), "temp",
                                                           node.span.line, condition=self.condition,
                                                           read_py=node.py))
            keys[node.key] = name
        else:
            self._widen(self.hoisted.get(level, []), name)
        return ref(name, node)

    def _widen(self, items: list, name: str) -> None:
        """A hoisted value reused under another condition (or none) is computed unconditionally."""
        for item in items:
            if getattr(item, "name", getattr(item, "target", None)) == name and item.condition != self.condition:
                item.condition = None

    def span_text(self, node: ir.Node) -> str:
        s = node.span
        if s.line == s.end_line:
            text = self.p.source_text.split("\n")[s.line - 1][s.column - 1: s.end_column - 1]
        else:
            text = self.p.line(s.line)
        return comment_text(f"line {s.line}: {text.strip()}")

    def line_text(self, line: int) -> str:
        return comment_text(f"line {line}: {self.p.line(line)}")

    def stmt_text(self, st: ir.Assign) -> str:
        first, last = st.span.line, max(st.span.line, st.value.span.end_line)
        if last > first:
            return comment_text(f"lines {first}-{last}: " + " ".join(self.p.line(i) for i in range(first, last + 1)))
        return self.line_text(first)

    # ------------------------------------------------------------ statements
    def block(self, stmts: list, depth: int) -> list:
        out: list = []
        repeated = repeated_keys(stmts, depth)
        pre_names: dict = {}
        lifted = hoistable_locals(stmts, depth, self.assignment_counts) if depth >= ir.LAYER else set()
        for st in stmts:
            if isinstance(st, ir.Repeat):
                # values that do not change inside the repeat loop are computed once before it
                self.hoisted[depth] = []
                self.hoist_keys[depth] = {}
                body = self.block(st.body, st.depth)
                before = self.hoisted.pop(depth)
                self.hoist_keys.pop(depth)
                if not body:
                    out.extend(before)  # only loop-invariant values: nothing is left to repeat
                    continue
                out.append(Loop(self.lower(st.count, depth), before, body, self.line_text(st.span.line),
                                st.span.line, st.index, st.backward))
                continue
            if st.target in lifted and self.bound_outside(st.value):
                # a temporary that does not depend on the loop: computed once, outside it (not when it
                # reads a `let` bound inside the loop, one assigned twice: fuzz finding dpn_meanfield~404)
                if (st.target, st.version) in self.lifted_done:
                    continue  # already lifted (the peeled first layer lowers the step again)
                self.lifted_done.add((st.target, st.version))
                value = self.lower(st.value, st.value.level)
                if st.value.level > ir.CONST:
                    self.hoisted.setdefault(st.value.level, []).append(
                        Stmt(st.target, value, self.line_text(st.span.line), "local", st.span.line,
                             read_py=st.value.py))
                else:
                    self.plan.constants.append(Constant(st.target, value, self.line_text(st.span.line), "local",
                                                        st.value.py, st.span.line))
                continue
            if depth == ir.LAYER and st.target in self.table_rows:
                # computed for every layer at construction: look its value up
                table, offset = self.table_rows[st.target]
                lookup = ir.Node("ref", [], st.value.type, st.span, ir.LAYER,
                                 {"name": table, "table": True, "offset": offset})
                state = next((s for s in self.p.states if s.name == st.target), None)
                out.append(Stmt(st.target, lookup, self.stmt_text(st), "table", st.span.line, state))
                continue
            pre: list[Stmt] = []
            self.cse_stack.append((repeated, pre_names, pre, depth))
            value = self.lower(st.value, depth)
            self.cse_stack.pop()
            out.extend(pre)
            state = next((s for s in self.p.states if s.name == st.target), None) if st.kind == "state" else None
            # the readers of a `let` take it as the checker typed its latest assignment (check/statements.py)
            out.append(Stmt(st.target, value, self.stmt_text(st), st.kind, st.span.line, state,
                            read_py=st.value.py))
        return out


def repeated_keys(stmts: list, depth: int) -> set:
    """Keys of the non-trivial sub-expressions that occur at least twice in one block."""
    seen: dict[tuple, int] = {}

    def visit(node: ir.Node):
        if is_trivial(node) or node.level < depth:
            return  # trivial, or hoisted anyway
        k = node.key
        if k in seen:
            seen[k] += 1
            return
        seen[k] = 1
        for a in node.args:
            visit(a)

    for st in stmts:
        if isinstance(st, ir.Assign):
            visit(st.value)
    return {k for k, c in seen.items() if c > 1}


def assignment_counts(stmts: list) -> dict[str, int]:
    """How often each name is assigned in a block, nested loops included."""
    counts: dict[str, int] = {}

    def count(block):
        for st in block:
            if isinstance(st, ir.Assign):
                counts[st.target] = counts.get(st.target, 0) + 1
            elif isinstance(st, ir.Repeat):
                count(st.body)

    count(stmts)
    return counts


def hoistable_locals(stmts: list, depth: int, step_counts: dict[str, int] | None = None) -> set[str]:
    """Locals assigned once -- in the block and in the whole step (`step_counts`) -- whose value does not
    depend on the loop."""
    counts = assignment_counts(stmts)
    if step_counts is not None:
        counts = {name: max(c, step_counts.get(name, 0)) for name, c in counts.items()}
    return {st.target for st in stmts if isinstance(st, ir.Assign) and st.kind == "local"
            and st.value.level < depth and counts[st.target] == 1}


def build(program: ir.Program, class_name: str) -> Plan:
    from .plan_uses import count_uses, mark_trace_only, stored_transposed, trace_only_inits

    program = factor_solves(program)
    program = associate_invariant_products(distribute_products(fold_scalars(program)))
    program = python_scalar_lets(fuse_lerp(gram_choice(squared_norms(program))))
    b = Builder(program, class_name)
    p, plan = program, b.plan
    plan.prev_names = {name: b.names.fresh(f"{name}_prev") for name in p.prev_used}
    plan.history_names = {name: b.names.fresh(f"{name}_history") for name in p.history_used}
    plan.noise_names = {n.name: b.names.fresh(f"{n.name}_layers") for n in p.noises if n.per_layer}
    if p.until is not None:  # `step until`: each sample's states freeze once its condition holds
        b.names.taken.add("depth")
        plan.until_names = {"active": b.names.fresh("active"), "stop": b.names.fresh("stop"),
                            **{s.name: b.names.fresh(f"{s.name}_start") for s in p.states}}
    # constant `let`s first: hoisted constants of the step may read them
    for let in p.lets:
        if let.level == ir.CONST:
            plan.constants.append(Constant(let.name, b.lower(let.value, ir.CONST), b.line_text(let.line), "let",
                                           let.value.py or let.name in p.python_lets, let.line))
    # a depth known only per call (`layers T`) leaves no layer count to tabulate at construction
    plan.table = find_layer_table(program, b) if p.layers_dim is None else None
    step = b.block(p.step, ir.LAYER)
    peeled, note = peel_first_layer(program, b) if p.until is None else (None, "")
    plan.step = step
    plan.peeled, plan.peel_note = peeled, note
    plan.final = b.block(p.final, ir.FORWARD) if p.final else []
    for let in p.lets:
        if let.level >= ir.FORWARD:
            plan.prologue.append(Stmt(let.name, b.lower(let.value, ir.FORWARD), b.line_text(let.line), "local",
                                      let.line))
    for s in p.states:
        plan.state_inits.append(Stmt(s.name, b.lower(s.init, ir.FORWARD), b.line_text(s.line), "state", s.line, s))
    plan.invariants = b.hoisted.get(ir.FORWARD, [])
    share_initial_values(plan, b)
    widen_conditions(plan)
    fuse_block_addmm(plan)
    if p.until is None:  # the stopping condition may read any state after the last layer too
        mark_dead_after_last_layer(plan.step, program)
    else:
        plan.until = b.lower(p.until, ir.LAYER)
    plan.split_params = split_per_layer_params(program)
    plan.outputs = [(name, output_batched(program, name)) for name in p.outputs]
    count_uses(plan)
    plan.trace_only_states = mark_trace_only(plan)
    plan.trace_only_inits = trace_only_inits(plan)
    plan.transposed = stored_transposed(plan)
    return plan


def share_initial_values(plan, b) -> None:
    """A state whose initial value the step also uses as a loop-invariant term (unfolded PGD's x⁰ = Aᵀy and
    its gradient's Aᵀy): the term is computed once, before the states, and the state starts from it."""
    from collections import Counter

    from .plan_uses import node_reads

    hoisted = b.hoist_keys.get(ir.FORWARD, {})
    states = {s.name for s in plan.program.states}
    for st, s in zip(plan.state_inits, plan.program.states):
        name = hoisted.get(s.init.key)
        item = next((x for x in plan.invariants if x.target == name), None) if name else None
        if item is None:
            continue
        reads: Counter = Counter()
        node_reads(item.value, reads)
        if states & set(reads):
            continue  # it reads a state: it stays after the initial values
        plan.invariants.remove(item)
        item.condition = None  # the state needs it whichever form the constructor chose
        plan.prologue.append(item)
        st.value = ref(name, s.init)


def widen_conditions(plan) -> None:
    """A value computed only for one form of a choice must be computed whenever anything else reads it."""
    conditional = {c.name: c for c in plan.constants if c.condition is not None}
    conditional.update({st.target: st for st in plan.invariants if st.condition is not None})
    if not conditional:
        return

    def reads(node: ir.Node, context, out: list) -> None:
        if node.op == "choose":
            for branch, arg in enumerate(node.args):
                reads(arg, context if context is not None else (node.attrs["flag"], branch), out)
            return
        if node.op == "ref":
            out.append((node.attrs["name"], context))
        for a in node.args:
            reads(a, context, out)

    def items():
        for c in plan.constants:
            yield c.value, c.condition
        yield from ((st.value, getattr(st, "condition", None)) for st in plan.all_stmts())

    changed = True
    while changed:
        changed = False
        for value, context in items():
            found: list = []
            reads(value, context, found)
            for name, ctx in found:
                item = conditional.get(name)
                if item is not None and item.condition is not None and item.condition != ctx:
                    item.condition = None
                    changed = True


def fuse_block_addmm(plan) -> None:
    def block(items):
        for item in items:
            if isinstance(item, Loop):
                item.count = fuse_addmm(item.count)
                block(item.before)
                block(item.body)
            else:
                item.value = fuse_addmm(item.value)
    for items in (plan.prologue, plan.state_inits, plan.invariants, plan.peeled or [], plan.step, plan.final):
        block(items)


def output_batched(p: ir.Program, name: str) -> bool:
    if name == "depth" and p.until is not None and not any(s.name == "depth" for s in p.states):
        return True  # the built-in output of `step until`
    for s in p.states:
        if s.name == name:
            return s.type.batched
    for i in p.inputs:
        if i.name == name:
            return True
    for let in p.lets:
        if let.name == name:
            return let.value.type.batched
    t = p.locals_types.get(name)
    return bool(t is not None and t.batched)
