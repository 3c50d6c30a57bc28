"""Planner: decides where every value of the step is computed.

* level CONST   sub-expressions of the step are computed at construction and
                kept as buffers (saved in state_dict with the data they derive from);
* level FORWARD sub-expressions (depend on inputs / shared parameters only) are
                hoisted out of the layer loop, computed once per forward call;
* inside a `repeat` loop, values that do not change across its iterations are
                computed once before it;
* a non-trivial sub-expression that occurs twice in one block is computed once
                (common-subexpression elimination; keys include variable
                versions, so `x` before and after an update never merge).

Tying and trainability options were applied by the checker (they change
levels).  The plan also allocates readable, collision-free Python names.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field

from . import ir

TRIVIAL_OPS = {"var", "number", "list"}


def is_trivial(node: ir.Node) -> bool:
    """Values that are as cheap to recompute as to name."""
    if node.op in TRIVIAL_OPS:
        return True
    if node.op in ("transpose", "adjoint", "neg") and node.args[0].op in TRIVIAL_OPS:
        return True
    if node.py:
        return True  # plain Python arithmetic on hyperparameters / dims
    return False


class Names:
    """Allocates Python identifiers that cannot collide with spec names or each other."""

    def __init__(self, taken):
        self.taken = set(taken)

    def fresh(self, hint: str) -> str:
        base = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in hint).strip("_") or "t"
        if base[0].isdigit():
            base = "t_" + base
        base = base[:24]
        name, i = base, 2
        while name in self.taken or keyword.iskeyword(name):
            name = f"{base}_{i}"
            i += 1
        self.taken.add(name)
        return name


def describe(node: ir.Node) -> str:
    """A short readable name for a hoisted value, from the names it combines."""
    names: list[str] = []
    for n in node.walk():
        if n.op == "var" and n.attrs["name"] not in names and n.attrs.get("kind") not in ("dim", "layer"):
            names.append(n.attrs["name"])
    if names:
        return "_".join(names[:3])
    ops = [n.op for n in node.walk() if n.op not in ("var", "number")]
    dims = [n.attrs["name"] for n in node.walk() if n.op == "var"]
    return "_".join((ops[:1] + dims[:2])) or "c"


@dataclass
class BlockPlan:
    """Common subexpressions of one block (keys seen at least twice)."""

    repeated: set = field(default_factory=set)


def plan_block(stmts: list, depth: int) -> BlockPlan:
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
    return BlockPlan({k for k, c in seen.items() if c > 1})


def hoistable_locals(stmts: list, depth: int) -> set[str]:
    """Locals assigned once in the block whose value does not depend on the loop."""
    counts: dict[str, int] = {}

    def count(block):
        for st in block:
            if isinstance(st, ir.Assign):
                counts[st.target] = counts.get(st.target, 0) + 1
            elif isinstance(st, ir.Repeat):
                count(st.body)

    count(stmts)
    return {st.target for st in stmts if isinstance(st, ir.Assign) and st.kind == "local"
            and st.value.level < depth and counts[st.target] == 1}


def summary(program: ir.Program) -> list[tuple[int, str, str]]:
    """(line, level name, text) for every step statement: what `unrollc explain` prints."""
    out = []

    def walk(block):
        for st in block:
            if isinstance(st, ir.Repeat):
                out.append((st.span.line, f"repeat x{st.count.attrs.get('value', '?')}", program.line(st.span.line)))
                walk(st.body)
            else:
                level = ir.LEVEL_NAMES.get(st.value.level, f"nested({st.value.level - ir.LAYER})")
                out.append((st.span.line, level, program.line(st.span.line)))

    walk(program.step)
    return out
