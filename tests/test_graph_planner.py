"""Graph and planner stages (compiler/graph.py, compiler/planner.py) and the plan as
it shows in the generated code: hoisting out of the layer loop, construction-time
constants, common subexpressions computed once."""

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
from unroll.compiler.planner import Names, describe, hoistable_locals, is_trivial, plan_block, summary

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


# --------------------------------------------------------------------------- graph
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_graph_is_a_well_formed_dag(name):
    g = build_graph(program_of(name))
    assert isinstance(g, nx.DiGraph)
    assert g.graph["name"] == name
    assert nx.is_directed_acyclic_graph(g)
    for node, attrs in g.nodes(data=True):
        assert {"label", "level", "type", "line", "stage"} <= set(attrs), node
        assert attrs["level"] >= ir.CONST
    # one node per parameter and state declaration, one per assignment of the step
    program = program_of(name)
    for p in program.params:
        assert g.nodes[f"param:{p.name}"]["per_layer"] == p.per_layer
    for s in program.states:
        assert f"state:{s.name}" in g
    assigns = [n for n, a in g.nodes(data=True) if a.get("kind") == "assign"]
    assert len(assigns) >= len(program.step)


def test_lista_graph_dependencies():
    g = build_graph(program_of("lista"))
    (assign,) = [n for n, a in g.nodes(data=True) if a.get("kind") == "assign"]
    assert g.nodes[assign]["stage"] == "layer"
    # every operand of the update reaches it
    for src in ("input:y", "param:We", "param:Wt", "param:theta", "state:x"):
        assert nx.has_path(g, src, assign), src
    # defaults: A and L feed the parameters, lam feeds theta
    assert nx.has_path(g, "data:A", "let:L")
    for p in ("param:We", "param:Wt", "param:theta"):
        assert nx.has_path(g, "let:L", p)
    assert nx.has_path(g, "hyper:lam", "param:theta")
    assert not nx.has_path(g, "hyper:lam", "param:Wt")
    # the soft-threshold node takes the sum and the threshold
    soft = next(n for n, a in g.nodes(data=True) if a["label"] == "soft")
    assert g.has_edge(soft, assign)
    preds = {g.nodes[p]["label"] for p in g.predecessors(soft)}
    assert preds == {"+", "theta"}
    # levels recorded on the nodes
    we_y = next(
        n
        for n in g.predecessors(next(p for p in g.predecessors(soft) if g.nodes[p]["label"] == "+"))
        if "param:We" in g.predecessors(n)
    )
    assert g.nodes[we_y]["level"] == ir.FORWARD
    assert g.nodes[soft]["level"] == ir.LAYER


def test_graph_edges_connect_operands_to_their_uses():
    for name in SHIPPED:
        g = build_graph(program_of(name))
        for node, attrs in g.nodes(data=True):
            if (
                attrs.get("kind") == "op"
                and attrs["label"] not in ("0", "1")
                and not re.fullmatch(r"[\d.e+-]+", attrs["label"])
            ):
                # an operator node has operands and is used somewhere
                assert g.in_degree(node) >= 1, (name, node, attrs)
            if attrs.get("kind") in ("op",):
                assert g.out_degree(node) >= 1, (name, node, attrs)


def test_cse_shares_nodes():
    g = build_graph(program_of("lcod"))
    # `zbar - z` occurs twice in the step (argmax and dot): one node, two uses
    diffs = [n for n, a in g.nodes(data=True) if a["label"] == "−" and a["stage"] == "layer"]
    assert len(diffs) == 1
    uses = {g.nodes[s]["label"] for s in g.successors(diffs[0])}
    assert uses == {"abs", "dot"}
    # `A.T` is shared by the defaults of S and We
    at = [n for n, a in g.nodes(data=True) if a["label"] == "ᵀ"]
    assert len(at) == 1 and g.out_degree(at[0]) == 2


def test_graph_levels_lista_untied():
    g = build_graph(program_of("lista_untied"))
    matmuls = [n for n, a in g.nodes(data=True) if a["label"] == "@" and a["stage"] == "layer"]
    assert len(matmuls) == 2
    assert all(g.nodes[n]["level"] == ir.LAYER for n in matmuls)


def test_graph_dataflow_through_step_temporaries():
    g = build_graph(program_of("lcod"))
    zbar_def = next(n for n, a in g.nodes(data=True) if a["label"] == "zbar =")
    e_def = next(n for n, a in g.nodes(data=True) if a["label"] == "e =")
    assert nx.has_path(g, zbar_def, e_def)


DOT_NODE = re.compile(r'^  "([^"]+)" \[label="((?:[^"\\]|\\.)*)", fillcolor="#[0-9a-f]{6}"\];$')
DOT_EDGE = re.compile(r'^  "([^"]+)" -> "([^"]+)";$')


def parse_dot(text: str) -> tuple[str, set, set]:
    lines = text.rstrip("\n").split("\n")
    m = re.fullmatch(r'digraph "([A-Za-z0-9_]+)" \{', lines[0])
    assert m, lines[0]
    assert lines[-1] == "}"
    nodes, edges = set(), set()
    for line in lines[1:-1]:
        if line.strip() in ("rankdir=LR;",) or line.strip().startswith("node ["):
            continue
        if mn := DOT_NODE.match(line):
            nodes.add(mn.group(1))
        elif me := DOT_EDGE.match(line):
            edges.add((me.group(1), me.group(2)))
        else:
            raise AssertionError(f"not DOT: {line!r}")
    assert text.count("{") == text.count("}")
    return m.group(1), nodes, edges


@pytest.mark.parametrize("name", ["lista", "lcod", "fista", "alista"])
def test_dot_output_is_dot(name):
    g = build_graph(program_of(name))
    text = to_dot(g)
    graph_name, nodes, edges = parse_dot(text)
    assert graph_name == name
    assert nodes == set(g.nodes)
    assert edges == set(g.edges)
    assert all(a in nodes and b in nodes for a, b in edges)
    assert to_dot(build_graph(program_of(name))) == text  # deterministic


def test_unrollc_graph_prints_the_same_dot():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_main(["graph", "lista"]) == 0
    assert out.getvalue() == to_dot(build_graph(program_of("lista")))
    parse_dot(out.getvalue())


# --------------------------------------------------------------------------- planner: hoisting
def test_tied_lista_hoists_we_y_out_of_the_loop():
    _init, prologue, loop = split_forward(source_of("lista"))
    hoisted = re.search(r"^\s+(\w+) = y @ We\.mT  # line 19: We @ y$", prologue, re.MULTILINE)
    assert hoisted, prologue
    name = hoisted.group(1)
    assert "y @ We" not in loop
    assert re.search(rf"rt\.soft\(x @ Wt\.mT \+ {name}, theta\)", loop)
    assert "theta = self.theta()" in prologue  # the reparametrised value is computed once too


def test_untied_lista_computes_we_y_in_the_loop():
    _init, prologue, loop = split_forward(source_of("lista_untied"))
    assert "We" not in prologue.split("We = self.We")[1] if "We = self.We" in prologue else True
    assert "y @ We[layer].mT" in loop
    assert "theta[layer]" in loop
    assert "# layer-invariant terms" not in prologue


def test_untie_option_moves_the_term_into_the_loop():
    _, prologue, loop = split_forward(source_of("lista", untie="We"))
    assert "y @ We[layer].mT" in loop
    assert "y @ We" not in prologue


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


def construction_buffer(init: str, expr: str) -> str | None:
    """Name of the buffer that __init__ computes as `expr` (inline or via a local)."""
    e = re.escape(expr)
    m = re.search(rf"self\.register_buffer\('(\w+)', {e}\)", init)
    if m:
        return m.group(1)
    m = re.search(rf"^\s+(\w+) = {e}(  # .*)?$", init, re.MULTILINE)
    if m and re.search(rf"self\.register_buffer\('{m.group(1)}', {m.group(1)}\)", init):
        return m.group(1)
    return None


def test_constant_step_subexpression_becomes_a_buffer():
    src = compile_source(CONST_STEP, "cs.unroll")
    init, prologue, loop = split_forward(src)
    name = construction_buffer(init, "torch.eye(m, dtype=dtype, device=device) - A.mT @ A / L")
    assert name, init
    assert "line 10: eye(m) - A.T @ A / L" in init
    assert "torch.eye" not in prologue + loop
    assert f"{name} = self.{name}" in prologue
    assert re.search(rf"x @ {name}\.mT", loop)
    # `lam / L` too; `A.T @ y / L` depends on the input: once per forward call
    assert construction_buffer(init, "lam / L")
    assert re.search(r"^\s+\w+ = y @ A / L  # line 10: A\.T @ y / L$", prologue, re.MULTILINE)


def test_shipped_ista_threshold_is_a_construction_constant():
    init, _prologue, loop = split_forward(source_of("ista"))
    name = construction_buffer(init, "lam / L")
    assert name, init
    code = "\n".join(line.split("#")[0] for line in loop.split("\n"))
    assert "lam / L" not in code and name in code


def test_common_subexpression_computed_once_in_lcod():
    _, _, loop = split_forward(source_of("lcod"))
    body = "\n".join(ln for ln in loop.split("\n") if not ln.strip().startswith("#"))
    m = re.search(r"^\s+(\w+) = zbar - z$", body, re.MULTILINE)
    assert m, body
    name = m.group(1)
    assert body.count("zbar - z") == 1
    assert len(re.findall(rf"\b{name}\b", body)) == 3  # defined once, used twice


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
    src = compile_source(REPEAT, "rh.unroll")
    _, prologue, loop = split_forward(src)
    # `let b` does not depend on the layer: computed once per forward call
    assert re.search(r"^\s+b = y @ A / L  # line 13", prologue, re.MULTILINE)
    # `W @ y` depends on the layer but not on the repeat loop: computed before it
    before, after = loop.split("for _ in range(K):")
    assert re.search(r"^\s+(\w+) = y @ W\[layer\]\.mT", before, re.MULTILINE)
    assert "W[layer]" not in after


def test_planner_summary_levels():
    assert summary(program_of("lista")) == [(19, "per-layer", "x = soft(Wt @ x + We @ y, theta)")]
    lines = summary(program_of("fista"))
    assert [line for line, _, _ in lines] == [16, 17, 18, 19, 20]
    assert all(level == "per-layer" for _, level, _ in lines)
    rep = summary(check_source(REPEAT, "rh.unroll"))
    assert rep[0][1] == "layer-invariant"  # let b = A.T @ y / L
    assert rep[1][1] == "repeat x?" or rep[1][1].startswith("repeat")
    assert rep[2][1] == "nested(1)"


def test_plan_block_finds_repeated_subexpressions():
    program = program_of("lcod")
    plan = plan_block(program.step, ir.LAYER)
    diff = program.step[1].value.args[0].args[0].args[0]  # onehot(argmax(abs(zbar - z)))
    assert diff.op == "sub"
    assert diff.key in plan.repeated
    lista = program_of("lista")
    assert plan_block(lista.step, ir.LAYER).repeated == set()


def test_hoistable_locals():
    program = check_source(REPEAT, "rh.unroll")
    assert hoistable_locals(program.step, ir.LAYER) == {"b"}
    assert hoistable_locals(program_of("fista").step, ir.LAYER) == set()


def test_is_trivial():
    program = program_of("lista")
    soft = program.step[0].value
    assert not is_trivial(soft)
    x = soft.args[0].args[0].args[1]
    assert x.op == "var" and is_trivial(x)
    wt_default = next(p for p in program.params if p.name == "Wt").init
    at = wt_default.args[1].args[0].args[0]
    assert at.op in ("transpose", "T") and is_trivial(at)


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


def test_describe_names_hoisted_values_after_their_operands():
    program = program_of("lista")
    we_y = program.step[0].value.args[0].args[1]
    assert describe(we_y) == "We_y"
