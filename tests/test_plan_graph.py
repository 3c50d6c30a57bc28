"""`unrollc graph` (compiler/graph.py) draws the Plan: a DAG but for its loops, stages as clusters, operand
order of non-commutative operators, common sub-expressions shared, and valid DOT."""

from __future__ import annotations

import contextlib
import io
import re

import networkx as nx
import pytest
from unroll.compiler import ir
from unroll.compiler.cli import main as cli_main
from unroll.compiler.driver import check_source, make_options, shipped_specs
from unroll.compiler.graph import build_graph, to_dot

SHIPPED = shipped_specs()


def program_of(name: str, **options) -> ir.Program:
    return check_source(SHIPPED[name].read_text(), f"{name}.unroll", make_options(**options))


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
