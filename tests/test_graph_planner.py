"""Graph and planner stages (compiler/graph.py, compiler/planner.py): the plan is a value, and
these tests assert on it -- hoisting out of the layer loop, construction-time constants, common
sub-expressions computed once, first-layer peeling, layer tables, factor-once solves."""

from __future__ import annotations

import contextlib
import io
import re

import networkx as nx
import pytest
from unroll.compiler import ir
from unroll.compiler.cli import main as cli_main
from unroll.compiler.driver import check_source, compile_source, make_options, shipped_specs
from unroll.compiler.graph import build_graph, to_dot
from unroll.compiler.plan_build import hoistable_locals, repeated_keys
from unroll.compiler.planner import Loop, Names, Plan, describe, is_trivial, plan, summary

SHIPPED = shipped_specs()


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


# --------------------------------------------------------------------------- graph (drawn from the plan)
def acyclic_part(g: nx.DiGraph) -> nx.DiGraph:
    """The graph without the loops' `next` edges (a value flowing into the next iteration)."""
    h = g.copy()
    h.remove_edges_from([(a, b) for a, b, r in g.edges(data="role") if r == "next"])
    return h


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_graph_is_the_plan_and_a_dag_but_for_its_loops(name):
    program = program_of(name)
    g = build_graph(program)
    assert isinstance(g, nx.DiGraph)
    assert g.graph["name"] == name
    assert nx.is_directed_acyclic_graph(acyclic_part(g))
    for node, attrs in g.nodes(data=True):
        assert {"label", "level", "type", "line", "stage", "kind"} <= set(attrs), node
    for p in program.params:
        assert g.nodes[f"param:{p.name}"]["per_layer"] == p.per_layer
        assert g.nodes[f"param:{p.name}"]["learned"] == p.learned
    # the layer loop is a loop: every state the step assigns enters it through a carried node with a
    # `next layer` edge from its last assignment in the loop
    assigned = {st.target for st in program.step if isinstance(st, ir.Assign) and st.kind == "state"}
    carried = {a["label"].rstrip("⁽ˡ⁾") for n, a in g.nodes(data=True) if a["kind"] == "carried"
               and a["stage"] == "layer"}
    assert assigned <= carried
    nexts = [(a, b) for a, b, r in g.edges(data="role") if r == "next"]
    assert len(nexts) >= len(assigned)
    for name_ in program.outputs:
        assert g.in_degree(f"output:{name_}") == 1


def test_lista_graph_dependencies():
    g = build_graph(program_of("lista"))
    assigns = [n for n, a in g.nodes(data=True) if a["kind"] == "assign" and a["label"] == "x ="]
    stages = sorted(g.nodes[n]["stage"] for n in assigns)
    assert stages == ["call", "layer", "peeled"]  # the initial value, the first layer (x = 0) and the loop
    assigns = [n for n in assigns if g.nodes[n]["stage"] != "call"]
    loop_x = next(n for n in assigns if g.nodes[n]["stage"] == "layer")
    for src in ("input:y", "param:We", "param:Wt", "param:theta"):
        assert nx.has_path(g, src, loop_x), src
    # We @ y is computed once per call, before the loop, and feeds both layers
    we_y = next(n for n, a in g.nodes(data=True) if a["kind"] == "assign" and a["stage"] == "call"
                and a["label"].startswith("We_y"))
    assert all(nx.has_path(g, we_y, n) for n in assigns)
    # defaults: A and L feed the parameters, lam feeds theta only
    for p in ("param:We", "param:Wt", "param:theta"):
        assert nx.has_path(g, "data:A", p)
    assert nx.has_path(g, "hyper:lam", "param:theta")
    assert not nx.has_path(g, "hyper:lam", "param:Wt")
    # the soft threshold of the loop takes the sum (operand 1) and the threshold (operand 2)
    soft = next(p for p in g.predecessors(loop_x) if g.nodes[p]["label"] == "soft")
    operands = {g.edges[p, soft]["operand"]: g.nodes[p]["label"] for p in g.predecessors(soft)}
    assert operands[1] == "addmm" and operands[2].startswith("theta")  # Wt @ x + We_y fused into one GEMM
    assert g.nodes[soft]["level"] == ir.LAYER
    assert nx.has_path(g, loop_x, "output:x")


def test_operand_order_of_non_commutative_operators():
    g = build_graph(program_of("lcod"))
    subs = [n for n, a in g.nodes(data=True) if a["label"] == "−" and a["stage"] == "layer"]
    assert subs
    for n in subs:
        assert sorted(g.edges[p, n]["operand"] for p in g.predecessors(n)) == [1, 2]
    g = build_graph(program_of("ista"))
    fused = [n for n, a in g.nodes(data=True) if a["label"] == "addmm" and a["stage"] == "layer"]
    assert len(fused) == 3  # the Gram form's one and the two of the split form
    for n in fused:
        assert sorted(g.edges[p, n]["operand"] for p in g.predecessors(n)) == [1, 2, 3]


def test_cse_shares_nodes():
    g = build_graph(program_of("lcod"))
    # `zbar - z` occurs twice in the step (argmax and dot): computed once, read twice
    (temp,) = [n for n, a in g.nodes(data=True) if a["kind"] == "assign" and a["stage"] == "layer"
               and a["label"].startswith("zbar_z")]
    assert g.out_degree(temp) == 2


def test_graph_dataflow_through_step_temporaries():
    g = build_graph(program_of("lcod"))
    zbar_def = next(n for n, a in g.nodes(data=True) if a["label"] == "zbar =" and a["stage"] == "layer")
    e_def = next(n for n, a in g.nodes(data=True) if a["label"] == "e =" and a["stage"] == "layer")
    assert nx.has_path(g, zbar_def, e_def)


def parse_dot(text: str) -> tuple[str, set, set, list]:
    """A small strict reader of the DOT we print: nodes, edges, and cluster labels."""
    lines = text.rstrip("\n").split("\n")
    m = re.fullmatch(r'digraph "([A-Za-z0-9_]+)" \{', lines[0])
    assert m, lines[0]
    assert lines[-1] == "}"
    nodes, edges, clusters = set(), set(), []
    node_re = re.compile(r'^\s+("(?:[^"\\]|\\.)*"|\w+) \[label=("(?:[^"\\]|\\.)*"), [^\]]*\];$')
    edge_re = re.compile(r'^\s+("(?:[^"\\]|\\.)*") -> ("(?:[^"\\]|\\.)*")( \[[^\]]*\])?;$')
    depth = 0
    for line in lines[1:-1]:
        stripped = line.strip()
        if stripped.startswith("subgraph cluster_"):
            depth += 1
            continue
        if stripped == "}":
            depth -= 1
            continue
        if stripped.startswith("label=") and depth:
            clusters.append(re.match(r'label="([^"]*)"', stripped).group(1))
            continue
        if stripped in ("rankdir=LR;", "compound=true;") or re.match(r"(node|edge) \[", stripped):
            continue
        if me := edge_re.match(line):
            edges.add((me.group(1)[1:-1], me.group(2)[1:-1]))
        elif mn := node_re.match(line):
            nodes.add(mn.group(1).strip('"'))
        else:
            raise AssertionError(f"not DOT: {line!r}")
    assert depth == 0
    return m.group(1), nodes, edges, clusters


@pytest.mark.parametrize("name", ["lista", "lcod", "fista", "alista", "prox_linear_psse"])
def test_dot_output_is_dot(name):
    g = build_graph(program_of(name))
    text = to_dot(g)
    graph_name, nodes, edges, clusters = parse_dot(text)
    assert graph_name == name
    assert set(g.nodes) <= nodes and all(n.startswith("legend_") for n in nodes - set(g.nodes))
    assert edges == set(g.edges)
    assert "legend" in clusters and any(c.startswith("layer loop") for c in clusters)
    assert to_dot(build_graph(program_of(name))) == text  # deterministic
    if name == "prox_linear_psse":
        assert "repeat (line 49)" in clusters
    if name == "lista":
        assert "layer 0 (first layer, peeled)" in clusters and "layer loop (l = 1 .. L-1)" in clusters
        assert 'label="next layer"' in text and "shape=box3d" not in text.split("cluster_legend")[0].split(
            '"param:We"')[0]


def test_unrollc_graph_prints_the_same_dot():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["graph", "lista"]) == 0
    assert out.getvalue() == to_dot(build_graph(program_of("lista")))
    parse_dot(out.getvalue())


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
    assert plan_of("fista").trace_only_inits == ["x", "v"]  # t is read: t_new and the t-table row
    assert "x" not in plan_of("domke_heavy_ball").trace_only_inits  # x - xp reads x0
    assert plan_of("dublid").trace_only_inits == []  # no peeled layer: zero layers read the initial states
    code = compile_source(SHIPPED["ista"].read_text(), "ista.unroll")
    record_block = code[code.index("        if record is not None:\n            # initial values"):]
    assert "x = torch.zeros((batch, m)" in record_block.split("record.append")[0]
    assert code.count("torch.zeros((batch, m)") == 1


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
