"""`unrollc draw SPEC`: a picture of the unrolled network, in the manner of the review's figures
(Monga, Li, Eldar, Figs. 5, 7, 10, 12): the layers as repeated blocks, data flowing left to right.

* each block is one layer: its update equations (the spec's lines), and the per-layer parameters
  and sub-networks it owns, numbered by layer (`We¹`, `We²`, ...);
* learned parameters shared by all layers sit once in a band above the blocks, marked `shared`,
  with an arrow into every block that reads them;
* fixed data, operators, hyperparameters, constants (computed once, from the plan) and frozen
  parameters sit in a band below, with arrows into the blocks that read them;
* inputs run along a bus above the blocks and drop into each block that reads them; the initial
  states enter on the left; the states flow between blocks (`x¹`, `x²`, ...); the final stage and
  the outputs close the picture on the right.

`scene(plan)` builds the picture as a list of `Shape`s (tested structurally); `to_svg` writes them as
SVG directly, `render_png` draws them with matplotlib (imported only then).  The compiler never
imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ir
from .draw_render import render_png, to_svg
from .planner import Plan

SUPERSCRIPT = str.maketrans("0123456789LTNKn-", "⁰¹²³⁴⁵⁶⁷⁸⁹ᴸᵀᴺᴷⁿ⁻")
CHAR = 0.074  # width of one monospace character at 9 pt, inches
ROW = 0.27  # height of one equation row
GAP = 1.0  # between two blocks (room for the state labels)
MAX_TEXT = 58  # longest equation shown in full
MAX_BLOCKS = 3  # deeper networks show the first layers, an ellipsis and the last layer


@dataclass
class Shape:
    """One element of the picture: a box (x, y = lower left, w, h), a text (x, y = anchor) or an
    arrow (x, y -> x2, y2).  `role` says what it shows; `layer` the layer a per-layer item belongs to."""

    kind: str  # box | text | arrow
    role: str
    x: float
    y: float
    w: float = 0.0
    h: float = 0.0
    text: str = ""
    layer: int | None = None
    x2: float = 0.0
    y2: float = 0.0
    style: dict = field(default_factory=dict)


def sup(name: str, layer) -> str:
    """`name` with the layer index as a superscript (`We¹⁶`, `xᵀ⁻¹`); `name^index` where Unicode has no
    superscript for a character."""
    index = str(layer)
    if all(ord(c) in SUPERSCRIPT for c in index):
        return name + index.translate(SUPERSCRIPT)
    return f"{name}^{index}"


def _short(text: str, limit: int = MAX_TEXT) -> str:
    text = " ".join(text.split("#", 1)[0].split())  # a spec line without its comment
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _rows(program: ir.Program, block: list, indent: str = "") -> list[tuple[str, object]]:
    """(text, statement) for each statement of a block, `repeat` bodies indented."""
    out = []
    for st in block:
        if isinstance(st, ir.Repeat):
            out.append((indent + _short(program.line(st.span.line)), st))
            out.extend(_rows(program, st.body, indent + "  "))
        else:
            out.append((indent + _short(program.line(st.span.line), MAX_TEXT - len(indent)), st))
    return out


def _reads(block: list) -> dict[str, set[str]]:
    """Names a block reads, by kind: param, net, data (operators included), hyper, input, let."""
    out: dict[str, set[str]] = {k: set() for k in ("param", "net", "data", "hyper", "input", "let")}

    def visit(node: ir.Node) -> None:
        for n in node.walk():
            kind = n.attrs.get("kind")
            if n.op == "var" and kind in out:
                out[kind].add(n.attrs["name"])
            elif n.op == "net_call":
                out["net"].add(n.attrs["name"])
            elif n.op == "op_apply":
                out["data"].add(n.attrs["name"])

    for st in block:
        if isinstance(st, ir.Repeat):
            visit(st.count)
            for kind, names in _reads(st.body).items():
                out[kind] |= names
        else:
            visit(st.value)
    return out


class _Builder:
    def __init__(self, plan: Plan, max_blocks: int):
        self.plan, self.p = plan, plan.program
        self.shapes: list[Shape] = []
        self.max_blocks = max_blocks
        self.params = {x.name: x for x in self.p.params}
        self.nets = {x.name: x for x in self.p.nets}
        # top-level `let`s computed per forward call (they read inputs or parameters): drawn like inputs
        self.per_call = {st.target for st in plan.prologue}

    def box(self, role, x, y, w, h, text="", layer=None, **style):
        self.shapes.append(Shape("box", role, x, y, w, h, text, layer, style=style))

    def text(self, role, x, y, text, **style):
        self.shapes.append(Shape("text", role, x, y, text=text, style=style))

    def arrow(self, role, x, y, x2, y2, text="", **style):
        self.shapes.append(Shape("arrow", role, x, y, text=text, x2=x2, y2=y2, style=style))

    # ------------------------------------------------------------ what the layers read
    def layer_items(self, reads) -> list[tuple[str, str]]:
        """(role, name) of the per-layer parameters and sub-networks a layer owns."""
        items = [("param_layer" if self.params[n].learned else "param_fixed_layer", n)
                 for n in sorted(reads["param"], key=self._order) if self.params[n].per_layer]
        items += [("net_layer", n) for n in sorted(reads["net"], key=self._order)
                  if n in self.nets and self.nets[n].per_layer]
        return items

    def shared_items(self, reads) -> list[tuple[str, str]]:
        items = [("param_shared", n) for n in sorted(reads["param"], key=self._order)
                 if not self.params[n].per_layer and self.params[n].learned]
        items += [("net_shared", n) for n in sorted(reads["net"], key=self._order)
                  if n in self.nets and not self.nets[n].per_layer]
        return items

    def fixed_items(self, reads) -> list[str]:
        fixed = [n for n in reads["param"] if not self.params[n].per_layer and not self.params[n].learned]
        constants = {x.name for x in self.p.lets} - self.per_call
        return sorted(set(fixed) | reads["data"] | reads["hyper"] | (reads["let"] & constants), key=self._order)

    def _order(self, name: str) -> int:
        for items in (self.p.data, self.p.hypers, self.p.lets, self.p.params, self.p.nets):
            for x in items:
                if x.name == name:
                    return x.line
        return 0

    def fixed_label(self, name: str) -> str:
        for d in self.p.data:
            if d.name == name:
                kind = "operator" if "operator" in str(d.type) or d.type.__class__.__name__ != "Type" else "data"
                return f"{name} ({kind})"
        for h in self.p.hypers:
            if h.name == name:
                return f"{name} = {h.default}"
        for let in self.p.lets:
            if let.name == name:
                return _short(self.p.line(let.line).removeprefix("let").strip(), 30)
        if name in self.params:
            return f"{name} (fixed)"
        return name

    # ------------------------------------------------------------ layout
    def build(self) -> list[Shape]:
        p = self.p
        L = p.layers
        depth_dim = getattr(p, "layers_dim", None)  # `layers T`: the depth is a size known per call
        if depth_dim:
            L = depth_dim
            shown = [*range(1, self.max_blocks), depth_dim]
        else:
            shown = list(range(1, L + 1)) if L <= self.max_blocks else list(range(1, self.max_blocks)) + [L]
        rows = _rows(p, p.step)
        reads = _reads(p.step)
        final_rows = _rows(p, p.final)
        final_reads = _reads(p.final)
        own = self.layer_items(reads)
        shared = self.shared_items(reads)
        shared_final = self.shared_items(final_reads)
        fixed_step, fixed_final = self.fixed_items(reads), self.fixed_items(final_reads)

        width = max([len(t) for t, _ in rows] + [18]) * CHAR + 0.3
        tag_w = [max(len(sup(n, L)) + (4 if role.startswith("net") else 0), 3) * CHAR + 0.2 for role, n in own]
        tag_rows, line_w = 0, 0.0
        for w in tag_w:  # tags wrap inside the block
            if line_w == 0 or line_w + w > width - 0.2:
                tag_rows, line_w = tag_rows + 1, 0.0
            line_w += w + 0.1
        height = 0.42 + ROW * len(rows) + 0.36 * tag_rows + 0.1
        final_w = max([len(t) for t, _ in final_rows] + [12]) * CHAR + 0.3 if final_rows else 0.0
        final_h = 0.42 + ROW * len(final_rows) + 0.1 if final_rows else 0.0

        for r in (reads, final_reads):
            r["input"] |= r["let"] & self.per_call
        prologue_reads = _reads([ir.Assign(x.name, "local", x.value, x.span, 0) for x in p.lets
                                 if x.name in self.per_call])
        shared += [x for x in self.shared_items(prologue_reads) if x not in shared]
        bus_names = [i.name for i in p.inputs] + [x.name for x in p.lets if x.name in self.per_call]
        inputs_step = [n for n in bus_names if n in reads["input"]]
        inputs_final = [n for n in bus_names if n in final_reads["input"] and n not in inputs_step]
        buses = inputs_step + inputs_final
        bus_labels = {n: f"{n} (input)" for n in buses}
        for x in p.lets:
            if x.name in bus_labels:
                bus_labels[x.name] = _short(self.p.line(x.line).removeprefix("let").strip(), 34)
        left = 0.25
        init_lines = [f"{sup(s.name, 0)} = {_short(self._init_text(s), 22)}" for s in p.states]
        left_w = max([len(x) for x in init_lines + list(bus_labels.values()) + ["initial states"]]) * CHAR + 0.3
        x = left + left_w + GAP
        fixed_band_h = 0.62 if (fixed_step or fixed_final) else 0.0
        legend_h = 0.45
        y0 = 0.3 + legend_h + fixed_band_h + (0.45 if fixed_band_h else 0.2)
        top = y0 + max(height, final_h)
        bus_y = [top + 0.35 + 0.28 * k for k in range(len(buses))]
        shared_band_y = (bus_y[-1] if bus_y else top) + 0.45
        shared_band_h = 0.62 if (shared or shared_final) else 0.0

        # the initial states
        init_h = 0.34 + ROW * len(init_lines)
        iy = y0 + height / 2 - init_h / 2
        self.box("state", left, iy, left_w, init_h, "initial states")
        for k, line in enumerate(init_lines):
            self.text("state_text", left + 0.12, iy + init_h - 0.5 - ROW * k, line, mono=True)
        # the input buses
        for k, name in enumerate(buses):
            self.box("input", left, bus_y[k] - 0.12, left_w, 0.24, bus_labels[name])

        blocks = []
        previous = (left + left_w, y0 + height / 2)
        for i, layer in enumerate(shown):
            if i > 0 and layer != shown[i - 1] + 1 if isinstance(layer, int) else i > 0:  # an ellipsis: layers not drawn
                self.arrow("state_flow", previous[0], previous[1], x - 0.05, previous[1])
                self.text("ellipsis", x + 0.25, previous[1], "⋯", size=20)
                before = layer - 1 if isinstance(layer, int) else f"{layer}-1"
                self.text("ellipsis_note", x + 0.25, previous[1] - 0.35, f"layers {shown[i - 1] + 1}–{before}",
                          size=7)
                previous = (x + 0.5, previous[1])
                x += 0.5 + GAP
            self.state_arrow(previous, (x, y0 + height / 2), layer - 1 if isinstance(layer, int) else f"{layer}-1")
            self.layer_block(x, y0, width, height, layer, rows, own)
            blocks.append((x, layer))
            previous = (x + width, y0 + height / 2)
            x += width + GAP
        last_x = x - GAP
        if final_rows:
            self.state_arrow(previous, (x, y0 + height / 2), L)
            self.box("final", x, y0 + height / 2 - final_h / 2, final_w, final_h, "final stage")
            fy = y0 + height / 2 + final_h / 2
            for k, (text, _st) in enumerate(final_rows):
                self.text("stmt", x + 0.12, fy - 0.5 - ROW * k, text, mono=True)
            final_x = x
            previous = (x + final_w, y0 + height / 2)
            x += final_w + GAP
        out_text = ", ".join(p.outputs)
        out_w = max(len(out_text) + 9, 10) * CHAR + 0.2
        self.arrow("output_flow", previous[0], previous[1], x, previous[1],
                   "" if final_rows else ", ".join(sup(s, L) for s in p.outputs))
        self.box("output", x, previous[1] - 0.17, out_w, 0.34, f"output: {out_text}")
        right = x + out_w + 0.25

        # input taps
        targets = [(bx, width, inputs_step) for bx, _ in blocks]
        if final_rows:
            targets.append((final_x, final_w, [b for b in buses if b in final_reads["input"]]))
        for k, name in enumerate(buses):
            ends = [bx + 0.25 + 0.18 * k for bx, _w, names in targets if name in names]
            if not ends:
                continue
            self.arrow("input_bus", left + left_w, bus_y[k], max(ends), bus_y[k], head=False)
            for ex in ends:
                block_top = y0 + height if ex < last_x + 0.5 else y0 + height / 2 + final_h / 2
                self.arrow("input_tap", ex, bus_y[k], ex, block_top)
        # shared parameters: one band above, an arrow into every block (and the final stage) that reads them
        if shared_band_h:
            items = shared + [s for s in shared_final if s not in shared]
            bx0 = blocks[0][0]
            self.box("band_shared", bx0, shared_band_y, (final_x + final_w if final_rows else last_x) - bx0,
                     shared_band_h, "learned, shared by all layers")
            tx = bx0 + 0.15
            for role, name in items:
                label = f"{name} ({self.nets[name].kind})" if role == "net_shared" else name
                w = max(len(label), 3) * CHAR + 0.2
                self.box(role, tx, shared_band_y + 0.08, w, 0.28, label)
                tx += w + 0.12
            if shared:
                for bx, _layer in blocks:
                    self.arrow("shared_tap", bx + width - 0.3, shared_band_y, bx + width - 0.3, y0 + height,
                               dashed=True)
            if shared_final and final_rows:
                self.arrow("shared_tap", final_x + final_w - 0.3, shared_band_y, final_x + final_w - 0.3,
                           y0 + height / 2 + final_h / 2, dashed=True)
        # fixed data, operators, hyperparameters and constants: one band below
        if fixed_band_h:
            fy = y0 - 0.45 - fixed_band_h
            names = fixed_step + [n for n in fixed_final if n not in fixed_step]
            bx0 = blocks[0][0]
            band_right = max(final_x + final_w if final_rows else last_x, bx0 + 2.0)
            self.box("band_fixed", bx0, fy, band_right - bx0, fixed_band_h, "fixed: data, operators, constants")
            tx = bx0 + 0.15
            for name in names:
                label = self.fixed_label(name)
                w = max(len(label), 3) * CHAR + 0.2
                self.box("fixed", tx, fy + 0.08, w, 0.28, label)
                tx += w + 0.12
            right = max(right, tx + 0.25)
            if fixed_step:
                for bx, _layer in blocks:
                    self.arrow("fixed_tap", bx + 0.3, fy + fixed_band_h, bx + 0.3, y0, dashed=True)
            if fixed_final and final_rows:
                self.arrow("fixed_tap", final_x + 0.3, fy + fixed_band_h, final_x + 0.3, y0 + height / 2 - final_h / 2,
                           dashed=True)
        self.legend(left, 0.25)
        height_total = (shared_band_y + shared_band_h if shared_band_h else shared_band_y) + 0.55
        constants = [c.name for c in self.plan.constants if c.kind == "let"]
        subtitle = f"{p.name}: {L} layers" + (f"; computed once at construction: {', '.join(constants)}"
                                             if constants else "")
        self.text("title", left, height_total - 0.22, f"{p.title}", size=12, bold=True)
        self.text("subtitle", left, height_total - 0.45, _short(subtitle, 110), size=8)
        self.size = (max(right, left + 9.0 * CHAR * 10), height_total)
        return self.shapes

    def _init_text(self, state: ir.State) -> str:
        s = state.init.span
        line = self.p.source_text.split("\n")[s.line - 1]
        return line[s.column - 1: s.end_column - 1] if s.line == s.end_line else line[s.column - 1:]

    def state_arrow(self, start, end, index: int) -> None:
        label = ", ".join(sup(s.name, index) for s in self.p.states)
        self.arrow("state_flow", start[0], start[1], end[0], end[1], _short(label, 16))

    def layer_block(self, x, y, w, h, layer, rows, own) -> None:
        self.box("block", x, y, w, h, f"layer {layer}", layer)
        for k, (text, _st) in enumerate(rows):
            self.text("stmt", x + 0.12, y + h - 0.5 - ROW * k, text, mono=True)
        tx, ty = x + 0.12, y + 0.1
        for role, name in own:
            label = sup(name, layer) + (f" {self.nets[name].kind}" if role == "net_layer" else "")
            tw = max(len(label), 3) * CHAR + 0.2
            if tx + tw > x + w - 0.1 and tx > x + 0.12:
                tx, ty = x + 0.12, ty + 0.36
            self.box(role, tx, ty, tw, 0.28, label, layer)
            tx += tw + 0.1

    def legend(self, x, y) -> None:
        entries = [("param_layer", "learned, one per layer"), ("param_shared", "learned, shared"),
                   ("net_layer", "sub-network"), ("fixed", "fixed data / operator / constant"),
                   ("input", "input / state / output")]
        for role, label in entries:
            self.box("legend_" + role, x, y, 0.3, 0.2, "", swatch=role)
            self.text("legend", x + 0.38, y + 0.1, label, size=7.5)
            x += 0.38 + len(label) * 0.062 + 0.35


def scene(plan: Plan, max_blocks: int = MAX_BLOCKS) -> tuple[list[Shape], tuple[float, float]]:
    """The picture of `plan`'s network: its shapes and its size in inches."""
    builder = _Builder(plan, max_blocks)
    shapes = builder.build()
    return shapes, builder.size


def draw(plan: Plan, path: str, max_blocks: int = MAX_BLOCKS) -> list[Shape]:
    """Write the picture of `plan` to `path`: SVG (written directly) or PNG (matplotlib)."""
    shapes, size = scene(plan, max_blocks)
    if path.endswith(".png"):
        render_png(shapes, size, path)
    else:
        with open(path, "w", encoding="utf-8") as f:
            f.write(to_svg(shapes, size))
    return shapes


__all__ = ["Shape", "draw", "render_png", "scene", "to_svg"]
