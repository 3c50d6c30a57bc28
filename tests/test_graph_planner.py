"""The planner (compiler/planner.py and its passes): the plan is a value, and
these tests assert on it -- hoisting out of the layer loop, construction-time constants, common
sub-expressions computed once, first-layer peeling, layer tables, factor-once solves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from unroll.compiler import ir
from unroll.compiler.driver import check_source, compile_source, make_options, shipped_specs
from unroll.compiler.plan_build import hoistable_locals, repeated_keys
from unroll.compiler.planner import Loop, Names, Plan, describe, is_trivial, plan, summary

SHIPPED = shipped_specs()
ROOT = Path(__file__).resolve().parents[1]


def program_of(name: str, **options) -> ir.Program:
    return check_source(SHIPPED[name].read_text(), f"{name}.unroll", make_options(**options))


def source_of(name: str, **options) -> str:
    return compile_source(SHIPPED[name].read_text(), f"{name}.unroll", make_options(**options))


def split_forward(src: str) -> tuple[str, str, str]:
    """(__init__ body, forward prologue before the layer loop, the layer loop and after)."""
    init = src[src.index("    def __init__") : src.index("    def forward")]
    unrolled = src[src.index("    def _unrolled") :]
    cut = unrolled.index("for layer in range(self.num_layers):")
    return init, unrolled[:cut], unrolled[cut:]


# --------------------------------------------------------------------------- planner: the Plan value
def plan_of_source(text: str, name: str = "spec", **options) -> Plan:
    return plan(check_source(text, f"{name}.unroll", make_options(**options)))


def plan_of(name: str, **options) -> Plan:
    return plan_of_source(SHIPPED[name].read_text(), name, **options)


def var_names(node: ir.Node) -> set[str]:
    return {n.attrs["name"] for n in node.walk() if n.op in ("var", "ref")}


def ops(node: ir.Node) -> list[str]:
    return [n.op for n in node.walk()]


def refs(node: ir.Node) -> set[str]:
    return {n.attrs["name"] for n in node.walk() if n.op == "ref"}


def test_tied_lista_hoists_we_y_out_of_the_loop():
    p = plan_of("lista")
    (hoisted,) = p.invariants
    assert hoisted.value.op == "matmul" and var_names(hoisted.value) == {"We", "y"}
    assert hoisted.comment == "line 19: We @ y"
    (stmt,) = p.step
    assert stmt.target == "x" and hoisted.target in refs(stmt.value)
    assert "We" not in var_names(stmt.value)  # the loop reads the hoisted value, not We
    assert p.uses[hoisted.target] == 2  # in the peeled first layer and in the loop
    # x0 = 0: the first layer is peeled and `Wt @ x` vanishes there
    (first,) = p.peeled
    assert "Wt" not in var_names(first.value) and "x" not in var_names(first.value)
    assert p.peel_note == "layer 0 with x = 0 (Wt @ x vanishes)"


def test_untied_lista_computes_we_y_in_the_loop():
    p = plan_of("lista_untied")
    assert p.invariants == []
    (stmt,) = p.step
    assert {"We", "Wt", "theta", "x", "y"} <= var_names(stmt.value)
    assert p.split_params == ["We", "Wt", "theta"]  # split once per forward, not indexed as a stack
    # A only initialises the parameters: forward never reads it, so it is no buffer
    assert p.uses["A"] == 0
    assert all(not c.read_by_forward for c in p.constants)


def test_untie_option_moves_the_term_into_the_loop():
    p = plan_of("lista", untie="We")
    assert p.invariants == []
    assert "We" in var_names(p.step[0].value)
    assert p.split_params == ["We"]


CONST_STEP = """spec cs "constant inside the step"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
let L = opnorm(A)^2
state x : real[m] = 0
layers 3
step:
    x = soft((eye(m) - A.T @ A / L) @ x + A.T @ y / L, lam / L)
output x
"""


def test_constant_step_subexpression_becomes_a_constant():
    p = plan_of_source(CONST_STEP, "cs")
    hoisted = {c.comment: c for c in p.constants if c.kind == "hoisted"}
    # `A.T @ y / L` is `y @ (A / L)`: the scaling folds into the constant matrix
    assert set(hoisted) == {"line 10: eye(m) - A.T @ A / L", "line 10: lam / L", "line 10: A"}
    assert all(c.read_by_forward for c in hoisted.values())
    assert hoisted["line 10: lam / L"].python and not hoisted["line 10: A"].python  # a real scalar: a float
    assert ops(hoisted["line 10: A"].value) == ["div", "var", "var"]
    (fwd,) = p.invariants  # A.T @ y / L depends on the input: once per forward call
    assert fwd.comment == "line 10: A.T @ y / L" and refs(fwd.value) == {hoisted["line 10: A"].name}
    step_refs = refs(p.step[0].value)
    assert step_refs == {hoisted["line 10: eye(m) - A.T @ A / L"].name, hoisted["line 10: lam / L"].name,
                         fwd.target}
    assert "eye" not in ops(p.step[0].value)
    src = compile_source(CONST_STEP, "cs.unroll")
    assert "torch.eye" not in src[src.index("def _unrolled"):]


def test_shipped_ista_threshold_is_a_construction_constant():
    p = plan_of("ista")
    (threshold,) = [c for c in p.constants if c.comment.endswith("lam / L")]
    assert threshold.read_by_forward
    assert threshold.name in refs(p.step[0].value)


def test_common_subexpression_computed_once_in_lcod():
    p = plan_of("lcod")
    temps = [st for st in p.step if st.kind == "temp"]
    (diff,) = [st for st in temps if st.value.op == "sub" and var_names(st.value) == {"zbar", "z"}]
    assert p.uses[diff.target] == 2  # defined once, used twice
    body = compile_source(SHIPPED["lcod"].read_text(), "lcod.unroll")
    loop = body[body.index("for layer in range"):]
    assert "\n".join(x.split("#")[0] for x in loop.split("\n")).count("zbar - z") == 1


REPEAT = """spec rh "repeat hoist"
dims n, m
data A : real[n, m]
hyper lam = 0.1
hyper K : int = 3
input y : real[n]
let L = opnorm(A)^2
param W : real[m, n] = A.T / L    learned per_layer
state x : real[m] = 0
state z : real[m] = 0
layers 2
step:
    let b = A.T @ y / L
    repeat K:
        z = soft(z - A.T @ (A @ z) / L + W @ y + b, lam / L)
    x = x + z
output x
"""


def test_hoisting_out_of_repeat_and_of_step_locals():
    p = plan_of_source(REPEAT, "rh")
    # `let b` does not depend on the layer: computed once per forward call
    assert [(st.target, st.kind) for st in p.invariants if st.target == "b"] == [("b", "local")]
    # `W @ y` depends on the layer but not on the repeat loop: computed before it
    (loop,) = [item for item in p.step if isinstance(item, Loop)]
    (before,) = loop.before
    assert before.value.op == "matmul" and var_names(before.value) == {"W", "y"}
    assert all("W" not in var_names(st.value) for st in loop.body)
    assert before.target in refs(loop.body[0].value)


def test_planner_summary_levels():
    assert summary(program_of("lista")) == [(19, "per-layer", "x = soft(Wt @ x + We @ y, theta)")]
    lines = summary(program_of("fista"))
    assert [line for line, _, _ in lines] == [16, 17, 18, 19, 20]
    assert all(level == "per-layer" for _, level, _ in lines)
    rep = summary(check_source(REPEAT, "rh.unroll"))
    assert rep[0][1] == "layer-invariant"  # let b = A.T @ y / L
    assert rep[1][1] == "repeat x?"  # the count is the hyperparameter K, not a literal
    assert rep[2][1] == "nested(1)"


def test_repeated_keys_finds_repeated_subexpressions():
    program = program_of("lcod")
    repeated = repeated_keys(program.step, ir.LAYER)
    diff = program.step[1].value.args[0].args[0].args[0]  # onehot(argmax(abs(zbar - z)))
    assert diff.op == "sub"
    assert diff.key in repeated
    assert repeated_keys(program_of("lista").step, ir.LAYER) == set()


def test_hoistable_locals():
    program = check_source(REPEAT, "rh.unroll")
    assert hoistable_locals(program.step, ir.LAYER) == {"b"}
    assert hoistable_locals(program_of("fista").step, ir.LAYER) == set()


def test_fista_momentum_sequence_is_a_layer_table():
    p = plan_of("fista")
    assert p.table is not None and p.table.states == ["t"]
    (column, expr) = p.table.columns[0]
    assert var_names(expr) == {"t", "t_new"} and ops(expr)[:2] == ["add", "number"]  # 1 + (t - 1) / t_new
    v_update = next(st for st in p.step if st.target == "v")
    assert v_update.value.op == "lerp"  # x_new + c (x_new - x) = lerp(x, x_new, 1 + c): one pass
    v_update = next(st for st in p.step if st.target == "v")
    assert column in refs(v_update.value) and "t" not in var_names(v_update.value) - {column}
    # t_new is no longer computed in forward; t is looked up for the trace
    assert all(st.target != "t_new" for st in p.step)
    t_update = next(st for st in p.step if st.target == "t")
    assert t_update.kind == "table" and t_update.value.attrs["offset"] == 1
    # the momentum weights (a real scalar per layer) are Python numbers: the lerp takes its weight as a number
    # (a 0-d tensor weight costs torch's lerp twice the backward); t, a state the trace records, stays a tensor
    assert p.table.python_columns == {column}
    lookup = next(n for n in v_update.value.walk() if n.op == "ref" and n.attrs.get("table"))
    assert lookup.py


def test_layer_table_columns_of_matrices_stay_tensors():
    p = plan_of("kalman_filter")
    assert p.table is not None and p.table.python_columns == frozenset()


def test_admm_lasso_factors_its_matrix_once():
    p = plan_of("admm_lasso")
    (inverse,) = [c for c in p.constants if c.value.op == "inverse"]
    assert inverse.name == "M_inv"
    for st in p.all_stmts():
        assert "solve" not in ops(st.value) and "inverse" not in ops(st.value)
    # M^-1 (A.T y + rho (z - alpha)) = M^-1 A.T y + (rho M^-1) (z - alpha): the first term once per call,
    # the scaled inverse once at construction, and the sum accumulates into the per-layer GEMM
    (scaled,) = [c for c in p.constants if c.value.op == "mul" and inverse.name in refs(c.value)]
    (product,) = [c for c in p.constants if c.value.op == "matmul" and inverse.name in refs(c.value)]
    (per_call,) = [st for st in p.invariants if product.name in refs(st.value)]  # (M^-1 A.T) y
    x_update = next(st for st in p.step if st.target == "x")
    assert x_update.value.op == "addmm" and refs(x_update.value) == {scaled.name, per_call.target}
    # z and alpha are not needed after the last layer (the output is x)
    assert [st.target for st in p.step if st.skip_last] == ["z", "alpha"]


def test_a_solve_whose_matrix_changes_per_layer_is_not_factored():
    p = plan_of("hqs_generic")
    assert not any(c.value.op == "inverse" for c in p.constants)
    assert any("solve" in ops(st.value) for st in p.step)


def test_peeling_needs_a_zero_initial_state():
    assert plan_of("ista").peeled is not None
    assert plan_of("amp").peeled is None or "= 0" in plan_of("amp").peel_note
    p = plan_of("prox_linear_psse")  # u = 0 is reassigned before any product with it
    assert p.peeled is None


def test_a_literal_initial_scalar_state_is_propagated_into_the_first_layer():
    """FISTA's t = 1: (t - 1)/t_new is 0 in layer 0, so the momentum step is v = x_new there (no lerp with the
    zero x); the loop keeps the lerp."""
    p = plan_of("fista")
    assert p.peel_note.startswith("layer 0 with v, x = 0; t = 1")
    (v0,) = [st for st in p.peeled if getattr(st, "target", None) == "v"]
    assert "lerp" not in ops(v0.value) and var_names(v0.value) == {"x_new"}
    (v,) = [st for st in p.step if getattr(st, "target", None) == "v"]
    assert "lerp" in ops(v.value)
    # a state whose literal value does not make a factor zero is not propagated
    q = plan_of_source("""spec t2 "t = 2"
dims m
input y : real[m]
state x : real[m] = 0
state t : real = 2
layers 3
step:
    x = y + (t - 1) * (y - x)
    t = t + 1
output x
""")
    assert "t = 2" not in q.peel_note


def test_initial_values_only_the_trace_reads_are_computed_only_for_it():
    """The peeled layer 0 assigns these states before reading them: ISTA's x0 = 0, ADMM-CSNet's zero-filled
    x0 (an inverse FFT), ADMM-lasso's x; a state whose initial value layer 0 reads is computed as before."""
    assert plan_of("ista").trace_only_inits == ["x"]
    assert plan_of("admm_csnet").trace_only_inits == ["x"]
    assert plan_of("fista").trace_only_inits == ["x", "v", "t"]  # t: only the trace reads it at all (below)
    assert "x" not in plan_of("domke_heavy_ball").trace_only_inits  # x - xp reads x0
    assert plan_of("dublid").trace_only_inits == []  # no peeled layer: zero layers read the initial states
    code = compile_source(SHIPPED["ista"].read_text(), "ista.unroll")
    record_block = code[code.index("        if record is not None:\n            # initial values"):]
    assert "x = torch.zeros((batch, m)" in record_block.split("record.append")[0]
    assert code.count("torch.zeros((batch, m)") == 1


RUNNING_COST = """spec count "a running cost only the trace reads"
dims m
input y : real[m]
state x : real[m] = 0
state k : real = 0
layers 4
step:
    let r = sum(abs(x - y))
    x = 0.5 * (x + y)
    k = k + r * r
output x
"""


def test_states_only_the_trace_reads_are_computed_only_for_it():
    """FISTA's t: its momentum weights are a layer table, so no output, later value or condition reads t; forward
    assigns it (and computes what only it reads) only when the trace records.  A state an output, a later value
    or a sub-network call reads stays unconditional, and so does every state of a `step until` spec."""
    p = plan_of("fista")
    assert p.trace_only_states == ["t"]
    marked = [st.target for st in (p.peeled or []) + p.step if getattr(st, "trace_only", False)]
    assert marked == ["t", "t"]  # layer 0's and the loop's
    assert not any(getattr(st, "trace_only", False) for st in p.step if st.target in ("x", "v", "x_new"))
    counter = RUNNING_COST
    q = plan_of_source(counter)
    assert q.trace_only_states == ["k"] and "k" in q.trace_only_inits
    assert {st.target for st in q.step if getattr(st, "trace_only", False)} == {"k", "r"}  # and what only k reads
    read = plan_of_source(counter.replace("x = 0.5 * (x + y)", "x = 0.5 * (x + y) + k"))
    assert read.trace_only_states == [] and not any(getattr(st, "trace_only", False) for st in read.step)
    read = plan_of_source(counter.replace("x = 0.5 * (x + y)", "x = 0.5 * (x + y) + r"))  # r stays for x
    assert read.trace_only_states == ["k"]
    assert {st.target for st in read.step if getattr(st, "trace_only", False)} == {"k"}
    output = plan_of_source(counter.replace("output x", "output x, k"))
    assert output.trace_only_states == []
    assert plan_of("ista").trace_only_states == [] and plan_of("lista_cp").trace_only_states == []
    assert plan_of("dublid").trace_only_states == []
    net = plan_of_source(counter.replace("state k : real = 0", "state k : real = 0\nnet g : mlp(in=m, out=1, width=4, "
                                         "depth=2) learned shared").replace("k = k + r * r", "k = k + sum(g(x))"))
    assert net.trace_only_states == []  # a sub-network call may keep running statistics: it always runs
    # an output assigned by a layer-table lookup, beside a state only the trace reads (generated spec 103)
    lookup = plan_of_source("""spec lookup "an output looked up, a state only traced"
dims n, m
data v : real[m, n]
input w : real[n, n]
state x1 : real[m, n] = 0
state x4 : real[n, n] = 0
layers 1
step:
    x1 = v
    x4 = w
output x1
""")
    assert lookup.trace_only_states == ["x4"]
    assert [st.target for st in lookup.step if getattr(st, "trace_only", False)] == ["x4"]


def test_trace_only_states_are_exact_in_the_trace_and_in_every_backward_mode():
    """The guarded FISTA records the FISTA sequence t_k (computed here from its recursion) in its trace, its
    forward is the same with and without the trace, and the checkpointed network (whose layer helper passes every
    state on) computes t unconditionally and agrees."""
    import torch
    import unroll
    from unroll.runtime.loader import load_text

    torch.manual_seed(0)
    A = torch.randn(6, 9, dtype=torch.float64)
    y = torch.randn(3, 6, dtype=torch.float64)
    outputs = []
    for backward in ("unroll", "checkpoint:2"):
        net = unroll.load("fista", layers=5, backward=backward)(A=A)
        states = net.trace(y)
        t, expected = 1.0, [1.0]
        for _ in range(5):
            t = (1 + (1 + 4 * t * t) ** 0.5) / 2
            expected.append(t)
        assert [float(s["t"]) for s in states] == pytest.approx(expected, rel=1e-15)
        assert torch.equal(states[-1]["x"], net(y))
        outputs.append(net(y))
    assert torch.equal(outputs[0], outputs[1])
    # a running cost only the trace reads, against a numpy loop
    Net = load_text(RUNNING_COST, "cost")
    yn = y.numpy()
    x, k, ks = np.zeros_like(yn), 0.0, [0.0]
    for _ in range(4):
        r = np.abs(x - yn).sum(axis=1)
        x = 0.5 * (x + yn)
        k = k + r * r
        ks.append(k)
    states = Net().trace(y)
    for recorded, k in zip(states, ks):
        np.testing.assert_allclose(recorded["k"].numpy(), np.broadcast_to(k, (3,)), rtol=1e-14)
    np.testing.assert_allclose(Net()(y).numpy(), x, rtol=1e-14)
    # a state only the trace reads right after a statement skipped after the last layer (generated spec 702757):
    # each keeps its own guard
    Net = load_text("""spec adjacent "x4 skipped after the last layer, x5 only traced"
dims F, N
data v20 : real
data v22 : real
input y3 : real[F, N]
input v18 : real
state x4 : real[F, N] = y3
state x5 : real = 2.5e-1
layers 2
step:
    x4 = prev(x4) + 1
    x5 = where(v18 >= v20, v22, x5)
final:
    let f = 2 * v20
output f
""", "adjacent")
    net = Net(v20=0.0, v22=3.0)
    y3, v18 = torch.randn(3, 2, 4, dtype=torch.float64), torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64)
    assert float(net(y3, v18)) == 0.0  # (the last layer skips x4: nothing reads it after that layer)
    states = net.trace(y3, v18)
    assert [s["x5"].tolist() for s in states] == [[0.25] * 3, [0.25, 3.0, 3.0], [0.25, 3.0, 3.0]]


def test_constant_matrices_read_only_by_batched_products_are_stored_transposed():
    """ADMM's (AᵀA + ρI)⁻¹ pieces and ISTA's Gram matrix are only ever the matrix of a product with a batch
    (`x @ Mᵀ`): the constructor keeps Mᵀ contiguous under a second name and the GEMMs read it in memory order;
    a constant read any other way keeps its orientation."""
    p = plan_of("admm_lasso")
    assert p.transposed == {"M_A_c": "M_A_c_t", "rho_M_c": "rho_M_c_t"}
    code = compile_source(SHIPPED["admm_lasso"].read_text(), "admm_lasso.unroll")
    assert "self.register_buffer('rho_M_c_t', rho_M_c.transpose(-2, -1).contiguous())" in code
    forward = code[code.index("    def _unrolled"):]
    assert "torch.addmm(M_A_y, z - alpha, rho_M_c_t)" in forward and ".transpose" not in forward
    assert plan_of("ista").transposed == {"A_L_c": "A_L_c_t"}
    q = plan_of_source("""spec tr "one constant read as a matrix, one not"
dims n
data A : real[n, n]
input y : real[n]
let B = A @ A
let C = A @ A.T
state x : real[n] = 0
layers 2
step:
    x = B @ x + y + sum(C)
output x
""")
    assert q.transposed == {"B": "B_t"}


def test_an_initial_value_the_step_also_uses_is_computed_once():
    """Unfolded PGD starts from x0 = A.T @ y, and its gradient A.T @ (A @ x - y) has the loop-invariant term
    A.T @ y: one GEMM per call, before the states, and x starts from it (before: computed twice)."""
    text = (ROOT / "benchmarks" / "specs" / "pgd_unfolded.unroll").read_text()
    p = plan_of_source(text, "pgd_unfolded")
    (x0,) = p.state_inits
    assert x0.value.op == "ref" and [st.target for st in p.prologue] == [x0.value.attrs["name"]]
    assert p.prologue[0].condition is None  # needed in either association
    code = compile_source(text, "pgd_unfolded.unroll")
    assert code.count("y @ A") == 1, code


def test_is_trivial():
    program = program_of("lista")
    soft = program.step[0].value
    assert not is_trivial(soft)
    x = soft.args[0].args[0].args[1]
    assert x.op == "var" and is_trivial(x)
    wt_default = next(p for p in program.params if p.name == "Wt").init
    at = wt_default.args[1].args[0].args[0]
    assert at.op == "transpose" and is_trivial(at)


def test_names_are_fresh_and_valid():
    names = Names(["x", "We_y", "self"])
    assert names.fresh("We_y") == "We_y_2"
    assert names.fresh("We_y") == "We_y_3"
    assert names.fresh("lambda") == "lambda_2"  # keywords are never used
    assert names.fresh("2x") == "t_2x"
    assert names.fresh("a-b c") == "a_b_c"
    assert names.fresh("") == "t"
    long = names.fresh("v" * 100)
    assert len(long) <= 24 and long.isidentifier()
    assert names.fresh("self") == "self_2"


def test_namespace_knows_every_symbol_including_sub_networks():
    spec = """spec cap "a net named like a temporary"
dims n, m, h
data A : real[n, m]
input y : real[n]
net A_y : mlp(in=m, out=m, width=4, depth=2)    learned shared
state x : real[m] = 0
layers 2
step:
    x = A_y(A.T @ y) + x
output x
"""
    p = plan_of_source(spec.replace("dims n, m, h", "dims n, m"), "cap")
    assert "A_y" in p.names.taken
    assert all(st.target != "A_y" for st in p.all_stmts())


def test_describe_names_hoisted_values_after_their_operands():
    program = program_of("lista")
    we_y = program.step[0].value.args[0].args[1]
    assert describe(we_y) == "We_y"


def test_a_step_times_a_gradient_fuses_into_one_pass():
    p = plan_of_source(PGD, "pgd")
    (stmt,) = p.step
    inner = stmt.value.args[0]  # soft(x - step * gradient, ...)
    assert inner.op == "addcmul" and inner.attrs == {"value": -1}
    # the gradient in two forms, picked at construction: A.T A x - A.T y (one square GEMM) or as written
    choice = inner.args[2]
    assert choice.op == "choose" and p.choices == {choice.attrs["flag"]: choice_sizes(choice, p)}
    gram, split = choice.args
    assert gram.op == "addmm" and gram.attrs == {"beta": -1}
    assert split.op == "matmul" and split.args[1].op == "addmm"  # (A x - y) fused too


def choice_sizes(choice, p):
    return p.choices[choice.attrs["flag"]]


PGD = """spec pgd "unfolded PGD"
dims  n, m
data  A : real[n, m]
hyper lam = 0.1
input y : real[n]
let   L = opnorm(A)^2
param step : real = 1 / L            learned per_layer
param lambda_ : real = lam           learned per_layer
state x : real[m] = A.T @ y
layers 16
step:
    x = soft(x - step * (A.T @ (A @ x - y)), step * lambda_)
output x
"""


def test_invariant_products_associate_only_when_never_more_work():
    # ADMM: M^-1 (A.T y): M^-1 is m x m and A.T is m x n -> (M^-1 A.T) y, computed once at construction
    p = plan_of("admm_lasso")
    (per_call,) = [st for st in p.invariants if st.value.op == "matmul"]
    (product,) = refs(per_call.value)
    constant = next(c for c in p.constants if c.name == product)
    assert constant.value.op == "matmul" and var_names(per_call.value) == {"y", product}
    # ISTA: A.T (A x) with A n x m: A.T A is m x m, cheaper only when m <= 2n (unknown): not associated
    assert all(c.value.op != "matmul" for c in plan_of("ista").constants)
