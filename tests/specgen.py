"""Seeded generator of well-typed .unroll specs, with their numpy meaning (tests and benchmarks/fuzz.py).

Two generators, both deterministic in their seed:

* `expression_program(seed)`: many random expressions over the operator registry
  (tests/specgen_exprs.py) in one small spec, as top-level `let`s and as step assignments to
  output states, so that one compile checks many expressions (tests/test_differential_emitter.py);
* `statement_program(seed)`: statement-level variety (states with initial values, shared and
  per-layer learned parameters with constraints, nested `repeat` blocks, `final:` blocks, step
  `let`s, `prev`, sub-networks, user operators, several outputs; tests/test_generated_specs.py).

A `Program` renders to spec text (`render`) and evaluates itself in numpy, one sample at a time
(`reference`), independently of the compiler.  tests/specgen_check.py compiles, runs and compares.

KNOWN_BUG_CONSTRUCTS names the constructs that trigger compiler bugs known on main
(tests/fuzz_known_bugs.md).  The generators avoid every construct in the `banned` set they are
given, by default all of KNOWN_BUG_CONSTRUCTS; when a bug is fixed, delete its name here and the
random tests start covering the construct.
"""

from __future__ import annotations

import random

from specgen_exprs import Expr, Ty, dependencies, make, num, value_level
from specgen_ops import ExprGen
from specgen_program import Decl, Pool, Program, Stmt, assignments, flow_batched

KNOWN_BUG_CONSTRUCTS = (
    # the bugs of tests/fuzz_known_bugs.md that main (61495b0) still has; the fixed ones were deleted:
    # matmul_right_of_vector_product, operator_matrix_multiaxis, net_named_like_temporary,
    # repeat_of_invariant_lets, reassigned_invariant_local, unused_constant_let_output, step_let_python_number,
    # complex_data_before_real, mixed_dtype_matmul_solve, mixed_dtype_chanmix, python_number_output,
    # dot_of_scalars, dtype_without_tensors, matrix_threshold_batched_tau; and after it:
    # operator_of_python_number, operator_of_constant_scalar, dtype_of_pruned_data,
    # invariant_reassignment_in_repeat; and in lang-index: reshape_three_dims (products of dims in one order);
    # and on branch robust: istft_of_real, where_real_and_complex_branches; and on branch fuzz2:
    # composite_data_axis_bound_by_input, complex_svt_backward
)

SHAPES = ((), (), ("n",), ("m",), ("k",), ("n", "m"), ("m", "n"), ("n", "n"), ("k", "m"), (2, "n"), (2, "n", "m"),
          ("k", "n", "m"), (9, "n", "m"), ("2*n", "2*m"), ("F", "N"), ("T",), (3, 3))


def expression_program(seed: int, banned=KNOWN_BUG_CONSTRUCTS, n_exprs: int = 12, max_depth: int = 3) -> Program:
    """Many random expressions in one spec: top-level `let` outputs and step assignments to output states
    (optionally through a step `let`), two layers, states that keep their initial values."""
    rng = random.Random(seed)
    pool = Pool(rng, banned)
    prog = Program(pool, step=[], name=f"diff{seed}")
    for _ in range(n_exprs):
        shape = rng.choice(SHAPES)
        dtype = "complex" if rng.random() < 0.3 else "real"
        top = rng.random() < 0.4
        pool.context = "top" if top else "step"
        e = ExprGen(rng, pool, banned, max_level=1 if top else 2).gen(shape, dtype, rng.randint(1, max_depth))
        if top and not ((value_level(e) == 0 or e.py) and "unused_constant_let_output" in banned):
            prog.outputs.append(pool.let(e).static[0])
            continue
        if rng.random() < 0.3 and not (e.py and "step_let_python_number" in banned):
            local = pool.local(e)
            prog.step.append(Stmt("let", local.static[0], e))
            e = local
        out = pool.add(Decl(pool.fresh("o"), "state", Ty(shape, e.ty.dtype if e.ty.dtype == "complex" else "real"),
                            2, init=num("0", 0), assigned=True))
        prog.step.append(Stmt("assign", out.static[0], e))
        prog.outputs.append(out.static[0])
    return _finish(prog)


def _finish(prog: Program) -> Program:
    """Every program has a step statement, and (unless the bug is to be shown) an input."""
    pool = prog.pool
    pool.context = "top"
    if "reassigned_invariant_local" in pool.banned:
        prog.step = _without_invariant_reassignments(prog)
    _without_batch_changing_loops(prog)
    if not prog.step:
        counter = pool.add(Decl(pool.fresh("c"), "state", Ty((), "real"), 2, init=num("0", 0), assigned=True))
        prog.step.append(Stmt("assign", counter.static[0], make("add", (counter, num("1", 1)), counter.ty)))
    if "dtype_of_pruned_data" in pool.banned and not any(d.kind == "input" for d in prog.used_decls()):
        y = pool.add(Decl(pool.fresh("y"), "input", Ty(("n",), "real", True), 1))
        prog.outputs.append(pool.let(y).static[0])
    return prog


def statement_program(seed: int, banned=KNOWN_BUG_CONSTRUCTS, max_depth: int = 2) -> Program:
    """Statement-level variety: evolving states, step lets (literal, loop-invariant, per layer), nested
    `repeat` blocks, `prev`, a `final:` block, top-level lets, several outputs."""
    rng = random.Random(seed)
    pool = Pool(rng, banned)
    prog = Program(pool, step=[], name=f"prog{seed}", layers=rng.randint(1, 3))
    pool.layers = prog.layers
    gen = ExprGen(rng, pool, banned, max_level=2, images=rng.random() < 0.3)
    states = []
    for _ in range(rng.randint(1, 3)):
        shape, dtype = rng.choice(SHAPES), "complex" if rng.random() < 0.25 else "real"
        init = ExprGen(rng, pool, banned, max_level=1, images=False).gen(shape, dtype, rng.randint(0, 1)) \
            if rng.random() < 0.6 else num("0", 0)
        states.append(pool.add(Decl(pool.fresh("x"), "state", Ty(shape, dtype), 2, init=init, assigned=True)))
    pool.context = "step"
    prog.step = _statements(rng, pool, gen, states, max_depth, depth=0)
    lets_top = []
    if rng.random() < 0.4:  # a pre-stage let of inputs / parameters, as an output
        pool.context = "top"
        e = ExprGen(rng, pool, banned, max_level=1).gen(rng.choice(SHAPES[:6]), "real", 2)
        if not ((value_level(e) == 0 or e.py) and "unused_constant_let_output" in banned):
            lets_top.append(pool.let(e).static[0])
    pool.context, pool.locals, pool.recent = "final", {}, []
    if rng.random() < 0.5:
        x = rng.choice(states)
        e = gen.gen(x.ty.shape, x.ty.dtype, max_depth)
        if e.py and "python_number_output" in banned:
            e = make("mul", (e, x), x.ty)
        local = pool.local(e, pool.fresh("f"))
        prog.final.append(Stmt("let", local.static[0], e))
        lets_top.append(local.static[0])
    pool.context = "top"
    outputs = [x.static[0] for x in states if rng.random() < 0.7] + lets_top
    prog.outputs = outputs or [states[0].static[0]]
    _name_capture(rng, pool, prog, states)
    return _finish(prog)


def _statements(rng, pool: Pool, gen: ExprGen, states, max_depth, depth) -> list:
    saved, recent = dict(pool.locals), list(pool.recent)
    out = []
    for _ in range(rng.randint(1, 3)):
        r = rng.random()
        if r < 0.2 and depth < 2:
            body = _statements(rng, pool, gen, states, max_depth, depth + 1)
            names = {x.static[0] for x in states}
            if not body or "repeat_of_invariant_lets" in pool.banned and not any(
                    target in names for target, _ in assignments(body)):  # (every state update stays in the loop)
                body.append(_update(rng, gen, states, max_depth))
            count = rng.randint(1, 2)
            out.append(Stmt("repeat", body=body, count=count))
        elif r < 0.4:  # a temporary: a number, loop-invariant, or computed from a state
            kind = rng.random()
            if kind < 0.25 and "step_let_python_number" not in pool.banned:
                e = gen.scalar_number()
            elif kind < 0.5:
                e = ExprGen(rng, pool, pool.banned, max_level=1, images=gen.images).gen(
                    rng.choice(SHAPES[:9]), "real" if rng.random() < 0.8 else "complex", max_depth)
            else:
                x = rng.choice(states)
                e = gen.gen(x.ty.shape, x.ty.dtype, max_depth)
            if e.py and "step_let_python_number" in pool.banned:
                continue
            local = pool.local(e)
            out.append(Stmt("let", local.static[0], e))
            pool.locals[local.static[0]].assigned = depth == 0 and any(
                x.op in ("leaf", "prev") and x.static[0] in {v.static[0] for v in states} for x in e.walk())
        elif r < 0.5 and _reassignable(pool) and not (depth and "invariant_reassignment_in_repeat" in pool.banned):
            # a temporary gets a new value
            u = rng.choice(_reassignable(pool))
            out.append(Stmt("assign", u.name, gen.gen(u.ty.shape, u.ty.dtype, max_depth)))
        else:
            out.append(_update(rng, gen, states, max_depth))
    pool.locals, pool.recent = saved, recent
    return out


def _without_batch_changing_loops(prog: Program) -> None:
    """Drop the reassignments that make a `repeat` loop change whether a `let` it carries to its next pass is per
    sample: the checker refuses such a loop (the next pass would read the `let` with another shape;
    check/statements.py), which the generator's specs must not contain (fuzz statements 1006328)."""
    for _ in range(100):
        found = _loop_batch_change(prog)
        if found is None:
            break
        loop, name = found
        loop.body = _without_assignments(loop.body, name)
        prog.step = _without_empty_loops(prog.step)


def _without_empty_loops(stmts: list) -> list:
    out = []
    for s in stmts:
        if s.kind == "repeat":
            s.body = _without_empty_loops(s.body)
            if not s.body:
                continue
        out.append(s)
    return out


def _loop_batch_change(prog: Program):
    """The first (repeat statement, let name) whose per-sample-ness the loop changes while a pass reads it first."""
    decls = prog.used_decls()
    states = {d.name for d in decls if d.kind == "state"}
    batched = prog.batched_names() & {d.name for d in decls if d.kind in ("input", "state", "let")}
    current = set(batched)

    def walk(stmts):
        for s in stmts:
            if s.kind != "repeat":
                flow_batched([s], current, batched, states)
                continue
            entry = set(current)
            found = walk(s.body)
            if found is not None:
                return found
            if s.count != 1:
                for name in sorted({t for t, _ in assignments(s.body)} - states):
                    if (name in entry) != (name in current) and _read_first(s.body, name):
                        return s, name
            for _ in range(min(s.count, 8) - 1):
                flow_batched(s.body, current, batched, states)
        return None

    return walk(prog.step)


def _read_first(body: list, name: str) -> bool:
    """Whether a pass of `body` reads `name` before it assigns it (as check/statements.py decides)."""
    def walk(stmts):
        for s in stmts:
            if s.kind == "repeat":
                inner = walk(s.body)
                if inner is not None:
                    return inner
                continue
            if any(x.op in ("leaf", "prev", "history_sum") and x.static[0] == name for x in s.expr.walk()):
                return "read"
            if s.target == name:
                return "written"
        return None
    return walk(body) == "read"


def _without_assignments(stmts: list, name: str) -> list:
    out = []
    for s in stmts:
        if s.kind == "repeat":
            s.body = _without_assignments(s.body, name)
            out.append(s)
        elif not (s.kind == "assign" and s.target == name):
            out.append(s)
    return out


def _without_invariant_reassignments(prog: Program) -> list:
    """The step without the reassignments of temporaries whose first value is loop-invariant (while that
    bug is known): a temporary is invariant unless it depends on a state the step updates."""
    updated = {t for t, _ in assignments(prog.step) if t in prog.pool.decls}
    first = {}
    for target, e in assignments(prog.step):
        first.setdefault(target, e)

    def keep(s: Stmt) -> bool:
        if s.kind != "assign" or s.target not in prog.pool.local_types:
            return True
        return bool(dependencies(first[s.target]) & updated)

    def block(stmts):
        out = []
        for s in stmts:
            if s.kind == "repeat":
                body = block(s.body)
                if body:
                    out.append(Stmt("repeat", body=body, count=s.count))
            elif keep(s):
                out.append(s)
        return out

    return block(prog.step)


def _reassignable(pool: Pool) -> list[Decl]:
    """Temporaries that may get a new value (while the bug is known: those computed from a state at the
    top of the step, which the planner never hoists).  Not an integer one: the expression generator makes real
    and complex values (an `int` request may give complex pieces; statements 1091984)."""
    return [d for d in pool.locals.values() if not d.py and d.ty.dtype in ("real", "complex") and
            (d.assigned or "reassigned_invariant_local" not in pool.banned)]


def _update(rng, gen: ExprGen, states, max_depth) -> Stmt:
    x = rng.choice(states)
    return Stmt("assign", x.static[0], gen.gen(x.ty.shape, x.ty.dtype, max_depth))


def _name_capture(rng, pool: Pool, prog: Program, states) -> None:
    """A name the planner might also choose for a hoisted temporary: `A_y` next to `A @ y` in the step."""
    if "net_named_like_temporary" in pool.banned or rng.random() < 0.7:
        return
    shape = ("n",)
    A = pool.data(("n", "m"), "real", "normal")
    y = pool.add(Decl(pool.fresh("y"), "input", Ty(("m",), "real", True), 1))
    x = pool.add(Decl(pool.fresh("x"), "state", Ty(shape, "real"), 2, init=num("0", 0), assigned=True))
    name = f"{A.static[0]}_{y.static[0]}"
    pool.decls[name] = Decl(name, "net", Ty(shape, "real"), 1, annotations="learned shared",
                            spec_type="mlp(in=n, out=n, width=3, depth=2, init=zero)")
    call = Expr("netcall", Ty(shape, "real", True), (x,), (name,), 2)
    prog.step.append(Stmt("assign", x.static[0], make("add", (call, make("matmul", (A, y), Ty(shape, "real", True))),
                                                      Ty(shape, "real", True))))
    prog.outputs.append(x.static[0])
