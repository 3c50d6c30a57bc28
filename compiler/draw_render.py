"""Rendering the scene of `unrollc draw` (compiler/draw.py builds it as a list of `Shape`s): `to_svg`
writes SVG directly; `render_png` draws with matplotlib, imported only when a PNG is asked for."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .draw import Shape

COLOURS = {
    "block": ("#f4f6fb", "#4a5a7a"), "final": ("#eef7ee", "#3c7a3c"), "param_layer": ("#fbd9a8", "#c06a00"),
    "param_shared": ("#fdebd0", "#c06a00"), "param_fixed_layer": ("#e6e6e6", "#777777"),
    "net_layer": ("#cfe0fb", "#2f5fb3"), "net_shared": ("#e3edfc", "#2f5fb3"), "fixed": ("#eeeeee", "#777777"),
    "input": ("#dff2df", "#3c7a3c"), "output": ("#dff2df", "#3c7a3c"), "state": ("#dff2df", "#3c7a3c"),
    "band_shared": ("#fffaf2", "#c06a00"), "band_fixed": ("#fafafa", "#999999"),
}

ARROW_COLOURS = {"state_flow": "#3c7a3c", "output_flow": "#3c7a3c", "input_bus": "#3c7a3c", "input_tap": "#3c7a3c",
                 "shared_tap": "#c06a00", "fixed_tap": "#888888"}
BIG = ("block", "final", "band_shared", "band_fixed", "state")
DASHED = ("param_shared", "net_shared", "band_shared")
MONO = ("param", "net", "fixed")


def _box_style(s: Shape) -> tuple[str, str, float, bool, bool]:
    """(face, edge, line width, dashed, big) of a box."""
    face, edge = COLOURS.get(s.style.get("swatch", s.role), ("#ffffff", "#333333"))
    big = s.role in BIG
    return face, edge, 1.4 if big else 1.0, s.role in DASHED, big


def to_svg(shapes: list[Shape], size: tuple[float, float]) -> str:
    """The picture as SVG text (written directly: 100 user units per inch, text as text)."""
    from xml.sax.saxutils import escape

    w, h = size
    U = 100.0

    def X(v):
        return f"{v * U:.1f}"

    def Y(v):
        return f"{(h - v) * U:.1f}"

    def pt(size_pt):
        return f"{size_pt * U / 72:.1f}"

    colours = sorted(set(ARROW_COLOURS.values()))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.2f}in" height="{h:.2f}in" '
           f'viewBox="0 0 {X(w)} {X(h)}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">')
    out = [svg, "<defs>"]
    for i, c in enumerate(colours):
        out.append(f'<marker id="head{i}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
                   f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{c}"/></marker>')
    out.append("</defs>")
    out.append(f'<rect x="0" y="0" width="{X(w)}" height="{X(h)}" fill="#ffffff"/>')
    mono = 'font-family="DejaVu Sans Mono, Menlo, Consolas, monospace"'
    for layer in (0, 1, 2):  # big boxes, then arrows, then small boxes and text
        for s in shapes:
            if s.kind == "box":
                face, edge, lw, dashed, big = _box_style(s)
                if (0 if big else 2) != layer:
                    continue
                dash = ' stroke-dasharray="5,3"' if dashed else ""
                out.append(f'<rect class="{s.role}" x="{X(s.x)}" y="{Y(s.y + s.h)}" width="{X(s.w)}" '
                           f'height="{X(s.h)}" rx="6" fill="{face}" stroke="{edge}" stroke-width="{lw}"{dash}/>')
                if not s.text:
                    continue
                if big:
                    out.append(f'<text x="{X(s.x + 0.1)}" y="{Y(s.y + s.h - 0.2)}" font-size="{pt(8.5)}" '
                               f'font-weight="bold" fill="{edge}">{escape(s.text)}</text>')
                else:
                    family = mono if s.role.startswith(MONO) else ""
                    out.append(f'<text x="{X(s.x + s.w / 2)}" y="{Y(s.y + s.h / 2 - 0.04)}" font-size="{pt(8.5)}" '
                               f'text-anchor="middle" {family}>{escape(s.text)}</text>')
            elif s.kind == "text" and layer == 2:
                anchor = ' text-anchor="middle"' if s.role.startswith("ellipsis") else ""
                family = f" {mono}" if s.style.get("mono") else ""
                bold = ' font-weight="bold"' if s.style.get("bold") else ""
                out.append(f'<text class="{s.role}" x="{X(s.x)}" y="{Y(s.y - 0.04)}" '
                           f'font-size="{pt(s.style.get("size", 9))}"{anchor}{family}{bold}>{escape(s.text)}</text>')
            elif s.kind == "arrow" and layer == 1:
                c = ARROW_COLOURS.get(s.role, "#333333")
                head = "" if s.style.get("head") is False else f' marker-end="url(#head{colours.index(c)})"'
                dash = ' stroke-dasharray="5,3"' if s.style.get("dashed") else ""
                lw = 1.6 if s.role == "state_flow" else 1.0
                out.append(f'<line class="{s.role}" x1="{X(s.x)}" y1="{Y(s.y)}" x2="{X(s.x2)}" y2="{Y(s.y2)}" '
                           f'stroke="{c}" stroke-width="{lw}"{dash}{head}/>')
                if s.text:
                    out.append(f'<text x="{X((s.x + s.x2) / 2)}" y="{Y(s.y + 0.1)}" font-size="{pt(8.5)}" '
                               f'text-anchor="middle" fill="{c}">{escape(s.text)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def render_png(shapes: list[Shape], size: tuple[float, float], path: str, dpi: int = 110) -> None:
    """Draw `shapes` into a PNG file with matplotlib (a dependency of the package; imported only here)."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.patches import FancyArrowPatch, FancyBboxPatch
    except ImportError:
        raise ImportError("PNG output needs matplotlib (pip install matplotlib); SVG output does not") from None

    w, h = size
    fig = Figure(figsize=(w, h))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.axis("off")
    for s in shapes:
        if s.kind == "box":
            face, edge, lw, dashed, big = _box_style(s)
            ax.add_patch(FancyBboxPatch((s.x, s.y), s.w, s.h, boxstyle="round,pad=0,rounding_size=0.06",
                                        facecolor=face, edgecolor=edge, linewidth=lw,
                                        linestyle="--" if dashed else "-", zorder=1 if big else 3))
            if not s.text:
                continue
            if big:  # a title in the upper left corner
                ax.text(s.x + 0.1, s.y + s.h - 0.08, s.text, ha="left", va="top", fontsize=8.5, fontweight="bold",
                        color=edge, zorder=4)
            else:
                ax.text(s.x + s.w / 2, s.y + s.h / 2, s.text, ha="center", va="center", fontsize=8.5,
                        family="monospace" if s.role.startswith(MONO) else "sans-serif", zorder=4)
        elif s.kind == "text":
            ax.text(s.x, s.y, s.text, ha="center" if s.role.startswith("ellipsis") else "left", va="center",
                    fontsize=s.style.get("size", 9), family="monospace" if s.style.get("mono") else "sans-serif",
                    fontweight="bold" if s.style.get("bold") else "normal", zorder=4)
        elif s.kind == "arrow":
            colour = ARROW_COLOURS.get(s.role, "#333333")
            style = "-" if s.style.get("head") is False else "-|>"
            ax.add_patch(FancyArrowPatch((s.x, s.y), (s.x2, s.y2), arrowstyle=style, mutation_scale=11,
                                         color=colour, linewidth=1.6 if s.role == "state_flow" else 1.0,
                                         linestyle="--" if s.style.get("dashed") else "-", zorder=2,
                                         shrinkA=0, shrinkB=0))
            if s.text:
                ax.text((s.x + s.x2) / 2, s.y + 0.1, s.text, ha="center", va="bottom", fontsize=8.5, color=colour,
                        zorder=4)
    fig.savefig(path, dpi=dpi, metadata={"Software": "unrollc draw"})
