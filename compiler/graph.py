"""The plan as a dataflow graph (networkx), and its Graphviz DOT text (`unrollc graph`).

The graph is drawn from the same `Plan` the emitter prints: one node per
operation of the planned expressions, per declaration and per assignment;
edges from operands to their uses (the operand position is kept for
non-commutative operators); every node has a `stage` -- construction,
per call, layer 0 (when the first layer is peeled), layer loop, a nested
`repeat` loop, final -- drawn as clusters.  The layer loop is a loop: a state
read at the start of a layer is a node `x⁽ˡ⁾` fed by its initial value and, by a
dashed `next layer` edge, by its last assignment in the loop.  Parameters are
marked learned or fixed, shared or per layer; sub-networks and operators are
named.  Node attributes: label, kind, level, type, line, stage.
"""

from __future__ import annotations

import networkx as nx

from . import ir
from .planner import Loop, Plan
from .planner import plan as make_plan

SYMBOLS = {"add": "+", "sub": "−", "mul": "×", "div": "÷", "pow": "^", "neg": "−", "matmul": "@", "transpose": "ᵀ",
           "adjoint": "ᴴ", "lt": "<", "gt": ">", "le": "≤", "ge": "≥", "eq": "=", "ne": "≠", "inverse": "inverse"}
COMMUTATIVE = {"add", "mul", "eq", "ne", "dot", "outer", "max", "min"}
STAGES = {"declaration": "declarations", "construction": "constructor (once)", "call": "per forward call",
          "peeled": "layer 0 (first layer, peeled)", "layer": "layer loop (l = {start} .. L-1)", "final": "final stage"}


class PlanGraph:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.p = plan.program
        self.g = nx.DiGraph(name=self.p.name)
        self.defs: dict[str, str] = {}  # name -> node holding its current value
        self.counter = 0
        self.params = {x.name: x for x in self.p.params}

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # ------------------------------------------------------------ declarations
    def declarations(self) -> None:
        p, g = self.p, self.g
        for i in p.inputs:
            self._decl(f"input:{i.name}", i.name, "input", ir.FORWARD, str(i.type), i.line)
        for d in p.data:
            kind = "operator" if d.type.dtype == "operator" else "data"
            self._decl(f"data:{d.name}", d.name, kind, ir.CONST, str(d.type), d.line)
        for h in p.hypers:
            self._decl(f"hyper:{h.name}", h.name, "hyper", ir.CONST, h.dtype, h.line)
        for x in p.params:
            self._decl(f"param:{x.name}", x.name, "param", ir.LAYER if x.per_layer else ir.FORWARD, str(x.type),
                       x.line, learned=x.learned, per_layer=x.per_layer)
            g.nodes[f"param:{x.name}"]["label"] = (f"{x.name}\n{'per layer' if x.per_layer else 'shared'}, "
                                                   f"{'learned' if x.learned else 'fixed'}")
        for n in p.nets:
            self._decl(f"net:{n.name}", f"{n.name}: {n.kind}", "net", ir.LAYER if n.per_layer else ir.FORWARD, n.kind,
                       n.line, learned=n.learned, per_layer=n.per_layer)

    def _decl(self, nid: str, label: str, kind: str, level: int, typ: str, line: int, **extra) -> None:
        self.g.add_node(nid, label=label, kind=kind, level=level, type=typ, line=line, stage="declaration", **extra)
        self.defs[nid.split(":", 1)[1]] = nid

    # ------------------------------------------------------------ expressions
    def value(self, node: ir.Node, stage: str) -> str:
        g = self.g
        if node.op in ("var", "ref"):
            name = node.attrs["name"]
            if node.attrs.get("kind") == "layer":
                nid = "layer:index"
                if nid not in g:
                    g.add_node(nid, label="layer l", kind="layer", level=ir.LAYER, type="int", line=0, stage="layer")
                return nid
            if node.attrs.get("prev"):
                name = self.plan.prev_names.get(name, name)
            nid = self.defs.get(name)
            if nid is None:  # a dim or a name bound outside the graph
                nid = f"dim:{name}"
                if nid not in g:
                    g.add_node(nid, label=name, kind="dim", level=ir.CONST, type="int", line=0, stage="declaration")
                self.defs[name] = nid
            return nid
        nid = self.fresh("v")
        label = SYMBOLS.get(node.op, node.op)
        if node.op == "number":
            label = repr(node.attrs["value"])
        elif node.op in ("net_call", "op_apply"):
            label = node.attrs["name"] + ("ᴴ" if node.attrs.get("adjoint") else "")
        g.add_node(nid, label=label, kind="op", level=node.level, type=str(node.type), line=node.span.line,
                   stage=stage)
        if node.op in ("net_call", "op_apply"):
            g.add_edge(self.defs.get(node.attrs["name"], f"net:{node.attrs['name']}"), nid, role="applies")
        for i, a in enumerate(node.args):
            src = self.value(a, stage)
            attrs = {} if node.op in COMMUTATIVE or len(node.args) == 1 else {"operand": i + 1}
            g.add_edge(src, nid, **attrs)
        return nid

    def _edges_from(self, node: ir.Node, target: str, stage: str, **attrs) -> None:
        self.g.add_edge(self.value(node, stage), target, **attrs)

    def assign(self, target: str, node: ir.Node, stage: str, line: int, kind: str, typ=None) -> None:
        nid = self.fresh(f"{kind}:{target}#")
        self.g.add_node(nid, label=f"{target} =", kind="assign", level=node.level, type=str(typ or node.type),
                        line=line, stage=stage)
        self._edges_from(node, nid, stage)
        self.defs[target] = nid

    # ------------------------------------------------------------ the plan's stages
    def block(self, block: list, stage: str) -> None:
        for item in block:
            if isinstance(item, Loop):
                inner = f"{stage}/repeat@{item.line}"
                self.block(item.before, stage)
                self.loop(item.body, inner, [st.target for st in _assigned(item.body)],
                          f"repeat (line {item.line})")
                continue
            self.assign(item.target, item.value, stage, item.line, "state" if item.state else "let",
                        item.state.type if item.state else None)

    def loop(self, body: list, stage: str, carried: list[str], label: str) -> None:
        """A loop: each carried value enters through a node fed by the value before the loop and, by a
        dashed `next` edge, by its value at the end of the body."""
        g = self.g
        entries = {}
        for name in dict.fromkeys(carried):
            nid = self.fresh(f"carried:{name}#")
            g.add_node(nid, label=f"{name}⁽ˡ⁾" if stage == "layer" else name, kind="carried", level=ir.LAYER,
                       type="", line=0, stage=stage)
            if name in self.defs:
                g.add_edge(self.defs[name], nid, role="initial")
            self.defs[name] = nid
            entries[name] = nid
        g.graph.setdefault("loops", {})[stage] = label
        self.block(body, stage)
        for name, nid in entries.items():
            if self.defs[name] != nid:
                g.add_edge(self.defs[name], nid, role="next")

    def build(self) -> nx.DiGraph:
        plan, p = self.plan, self.p
        self.declarations()
        for c in plan.constants:
            self.assign(c.name, c.value, "construction", c.line, "const")
        if plan.table is not None:
            for name in [n for n, _ in plan.table.columns] + list(plan.table.rows.values()):
                self.g.add_node(f"table:{name}", label=f"{name}\n(one value per layer)", kind="assign",
                                level=ir.CONST, type="", line=0, stage="construction")
                self.defs[name] = f"table:{name}"
        for x in p.params:  # defaults, computed at construction from data and constants
            self._edges_from(x.init, f"param:{x.name}", "construction", role="default")
        for st in plan.prologue + plan.state_inits + plan.invariants:
            self.assign(st.target, st.value, "call", st.line, "state" if st.state else "let",
                        st.state.type if st.state else None)
        for name, prev in plan.prev_names.items():
            self.defs[prev] = self.defs.get(name, f"state:{name}")
        states = [s.name for s in p.states]
        if plan.peeled is not None:
            self.block(plan.peeled, "peeled")
        self.g.graph["layer_start"] = 1 if plan.peeled is not None else 0
        self.loop(plan.step, "layer", [st.target for st in _assigned(plan.step) if st.target in states],
                  "layer loop")
        self.block(plan.final, "final")
        if p.until is not None and "depth" not in self.defs:  # `step until`: the layers each sample ran
            self.g.add_node("until:depth", label="depth\n(layers run per sample)", kind="assign", level=ir.LAYER,
                            type="int", line=p.until.span.line, stage="layer loop")
            self.defs["depth"] = "until:depth"
        for name in p.outputs:
            nid = f"output:{name}"
            self.g.add_node(nid, label=f"output {name}", kind="output", level=ir.FORWARD, type="", line=0,
                            stage="final")
            self.g.add_edge(self.defs.get(name, name), nid)
        return self.g


def _assigned(block: list):
    for item in block:
        if isinstance(item, Loop):
            yield from item.before
            yield from _assigned(item.body)
        else:
            yield item


def plan_graph(plan: Plan) -> nx.DiGraph:
    return PlanGraph(plan).build()


def build_graph(program: ir.Program) -> nx.DiGraph:
    """The graph of the plan of `program`."""
    return plan_graph(make_plan(program))


# ---------------------------------------------------------------- DOT
STYLE = {
    "input": 'shape=invhouse, fillcolor="#cfe2f3"',
    "data": 'shape=folder, fillcolor="#eeeeee"',
    "operator": 'shape=component, fillcolor="#eeeeee"',
    "hyper": 'shape=note, fillcolor="#eeeeee"',
    "dim": 'shape=plaintext, fillcolor="#ffffff"',
    "net": 'shape=box3d, fillcolor="#f4cccc"',
    "op": 'shape=ellipse, fillcolor="#ffffff"',
    "assign": 'shape=box, fillcolor="#fff2cc"',
    "carried": 'shape=box, peripheries=2, style="filled,rounded", fillcolor="#fce5cd"',
    "output": 'shape=house, fillcolor="#d9ead3"',
    "layer": 'shape=plaintext, fillcolor="#ffffff"',
}


def _param_style(attrs: dict) -> str:
    fill = "#f4cccc" if attrs.get("learned") else "#eeeeee"
    shape = "box3d" if attrs.get("per_layer") else "box"
    pen = "penwidth=2" if attrs.get("learned") else "style=\"filled,dashed\""
    return f'shape={shape}, fillcolor="{fill}", {pen}'


def _quote(text: str) -> str:
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(g: nx.DiGraph) -> str:
    """Graphviz DOT text: stages as clusters, the layer loop's back edges dashed, a legend."""
    out = [f"digraph {_quote(g.graph.get('name', 'spec'))} {{", "  rankdir=LR;", "  compound=true;",
           '  node [style=filled, fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=8];']
    by_stage: dict[str, list] = {}
    for n, attrs in sorted(g.nodes(data=True)):
        by_stage.setdefault(attrs.get("stage", "declaration"), []).append((n, attrs))
    loops = g.graph.get("loops", {})
    start = g.graph.get("layer_start", 0)

    def node_line(n, attrs, indent):
        style = _param_style(attrs) if attrs.get("kind") == "param" else STYLE.get(attrs.get("kind"), STYLE["op"])
        typ = attrs.get("type", "")
        label = attrs.get("label", n) + (f"\n{typ}" if typ and attrs.get("kind") in ("assign", "input", "data") else "")
        return f"{indent}{_quote(n)} [label={_quote(label)}, {style}];"

    for i, stage in enumerate(sorted(by_stage, key=_stage_order)):
        nodes = by_stage[stage]
        if stage == "declaration":
            out.extend(node_line(n, a, "  ") for n, a in nodes)
            continue
        title = STAGES.get(stage.split("/")[0], stage).format(start=start)
        if "/" in stage:
            title = loops.get(stage, "repeat")
        out.append(f"  subgraph cluster_{i} {{")
        out.append(f"    label={_quote(title)}; style=rounded; color=\"#888888\";")
        out.extend(node_line(n, a, "    ") for n, a in nodes)
        out.append("  }")
    for a, b, attrs in sorted(g.edges(data=True)):
        extra = []
        if attrs.get("role") == "next":
            extra.append('style=dashed, label="next layer", constraint=false')
        elif attrs.get("role") == "initial":
            extra.append('label="initial"')
        elif attrs.get("role") == "default":
            extra.append('style=dotted, label="default"')
        if "operand" in attrs:
            extra.append(f'taillabel="{attrs["operand"]}"')
        out.append(f"  {_quote(a)} -> {_quote(b)}" + (f" [{', '.join(extra)}]" if extra else "") + ";")
    out.extend(_legend())
    out.append("}")
    return "\n".join(out) + "\n"


def _stage_order(stage: str) -> tuple:
    order = ["declaration", "construction", "call", "peeled", "layer", "final"]
    base = stage.split("/")[0]
    return (order.index(base) if base in order else len(order), stage)


def _legend() -> list[str]:
    rows = [("legend_learned", "learned, shared", _param_style({"learned": True})),
            ("legend_per_layer", "learned, one per layer", _param_style({"learned": True, "per_layer": True})),
            ("legend_fixed", "fixed", _param_style({})),
            ("legend_data", "data", STYLE["data"]), ("legend_input", "input", STYLE["input"]),
            ("legend_net", "sub-network", STYLE["net"]), ("legend_carried", "value at the start of a layer",
                                                          STYLE["carried"]),
            ("legend_op", "operation (edge labels: operand order)", STYLE["op"])]
    out = ["  subgraph cluster_legend {", '    label="legend"; style=rounded; color="#bbbbbb";']
    out.extend(f"    {name} [label={_quote(text)}, {style}];" for name, text, style in rows)
    out.append("  }")
    return out
