"""The dataflow graph (networkx) of a checked program.

One node per distinct value (common subexpressions share a node), edges from
operands to their uses, plus one node per declaration and per assignment.
Node attributes: `label` (the operator or name), `level` (constant /
layer-invariant / per-layer / nested), `type`, `line`, and `stage`
(prologue / layer / final).  The planner reads levels and use counts from
here; `unrollc graph` prints it as Graphviz DOT.
"""

from __future__ import annotations

import networkx as nx

from . import ir

STAGE_OF_DEPTH = {ir.FORWARD: "prologue", ir.LAYER: "layer"}


def _label(node: ir.Node) -> str:
    if node.op == "var":
        name = node.attrs["name"]
        return f"prev({name})" if node.attrs.get("prev") else name
    if node.op == "number":
        return repr(node.attrs["value"])
    return {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "^", "neg": "−", "matmul": "@",
            "transpose": "ᵀ", "adjoint": "ᴴ"}.get(node.op, node.op)


def build_graph(program: ir.Program) -> nx.DiGraph:
    g = nx.DiGraph(name=program.name)
    ids: dict[tuple, str] = {}
    defs: dict[tuple, str] = {}  # (name, version) of assignments -> graph node

    def value(node: ir.Node, stage: str) -> str:
        key = node.key
        if key in ids:
            return ids[key]
        if node.op == "var":
            name = node.attrs["name"]
            vid = defs.get((name, node.attrs.get("version"), bool(node.attrs.get("prev"))))
            if vid is None:
                vid = f"{node.attrs.get('kind', 'var')}:{name}"
                if vid not in g:
                    g.add_node(vid, label=name, kind=node.attrs.get("kind"), level=node.level, type=str(node.type),
                               line=node.span.line, stage="declaration")
            ids[key] = vid
            return vid
        nid = f"v{len(ids)}"
        ids[key] = nid
        g.add_node(nid, label=_label(node), kind="op", level=node.level, type=str(node.type), line=node.span.line,
                   stage=stage)
        for arg in node.args:
            g.add_edge(value(arg, stage), nid)
        return nid

    for let in program.lets:
        vid = f"let:{let.name}"
        g.add_node(vid, label=let.name, kind="let", level=let.level, type=str(let.value.type), line=let.line,
                   stage="prologue")
        g.add_edge(value(let.value, "prologue"), vid)
    for p in program.params:
        vid = f"param:{p.name}"
        g.add_node(vid, label=p.name, kind="param", level=ir.LAYER if p.per_layer else ir.FORWARD,
                   type=str(p.type), line=p.line, stage="declaration", learned=p.learned, per_layer=p.per_layer)
        g.add_edge(value(p.init, "construction"), vid, role="default")
    for s in program.states:
        vid = f"state:{s.name}"
        g.add_node(vid, label=s.name, kind="state", level=ir.LAYER, type=str(s.type), line=s.line, stage="declaration")
        g.add_edge(value(s.init, "prologue"), vid, role="initial value")

    counter = [0]

    def block(stmts, stage: str):
        for st in stmts:
            if isinstance(st, ir.Repeat):
                block(st.body, stage)
                continue
            counter[0] += 1
            vid = f"{st.kind}:{st.target}#{counter[0]}"
            g.add_node(vid, label=f"{st.target} =", kind="assign", level=st.value.level, type=str(st.value.type),
                       line=st.span.line, stage=stage)
            g.add_edge(value(st.value, stage), vid)
            defs[(st.target, st.version, False)] = vid  # later reads of this version depend on it

    block(program.step, "layer")
    block(program.final, "final")
    return g


def to_dot(g: nx.DiGraph) -> str:
    """Graphviz DOT text, colouring nodes by level (no graphviz dependency)."""
    colours = {ir.CONST: "#d9ead3", ir.FORWARD: "#cfe2f3", ir.LAYER: "#fce5cd"}
    out = [f'digraph "{g.graph.get("name", "spec")}" {{', "  rankdir=LR;", '  node [shape=box, style=filled, fontname="Helvetica"];']
    for n, attrs in sorted(g.nodes(data=True)):
        label = str(attrs.get("label", n)).replace("\\", "\\\\").replace('"', '\\"')
        colour = colours.get(attrs.get("level"), "#f4cccc")
        out.append(f'  "{n}" [label="{label}\\n{attrs.get("type", "")}", fillcolor="{colour}"];')
    for a, b in sorted(g.edges()):
        out.append(f'  "{a}" -> "{b}";')
    out.append("}")
    return "\n".join(out) + "\n"
