"""Range checks of integer index data: every `take(v, idx)` / `segment_sum(v, idx, n)` whose index is a
`data ... : int[...]` declaration makes the generated module check, once the indexed size is known
(at construction when data fix it, else at the start of each forward call), that the indices are
in range, raising a ValueError that names the data."""

from __future__ import annotations

from . import ir
from .ast import DimExpr


def _nodes(program: ir.Program):
    def block(stmts):
        for st in stmts:
            if isinstance(st, ir.Repeat):
                yield from st.count.walk()
                yield from block(st.body)
            else:
                yield from st.value.walk()
    yield from block(program.step)
    yield from block(program.final)
    for x in program.lets:
        yield from x.value.walk()
    for s in program.states:
        yield from s.init.walk()
    for x in program.params:
        yield from x.init.walk()


def index_data_checks(program: ir.Program) -> list[tuple[str, DimExpr, str, bool]]:
    """(data name, size it indexes, what it indexes, whether the size is known at construction)."""
    out: dict[tuple[str, str], tuple[str, DimExpr, str, bool]] = {}
    for node in _nodes(program):
        if node.op not in ("take", "segment_sum"):
            continue
        index = node.args[1]
        if index.op != "var" or index.attrs.get("kind") != "data":
            continue
        if node.op == "take":
            values = node.args[0]
            size = values.type.shape[0]
            what = f"the first axis of `{values.attrs['name']}`" if values.op == "var" else "the gathered rows"
        else:
            size = node.type.shape[0]
            what = f"the {size} segments of `segment_sum`"
        known = all(n in program.data_dims for n in size.names())
        out.setdefault((index.attrs["name"], str(size)), (index.attrs["name"], size, what, known))
    return list(out.values())


def size_code(dim: DimExpr) -> str:
    """Python code of a size from the `dims` dict of the generated code."""
    parts = [(f"{c} * " if c != 1 else "") + " * ".join(f"dims[{n!r}]" for n in t.split("*")) for t, c in dim.terms]
    if dim.const or not parts:
        parts.append(str(dim.const))
    return " + ".join(parts)


def check_lines(program: ir.Program, at_construction: bool) -> list[str]:
    return [f"rt.check_index_data({name!r}, {name if at_construction else 'self.' + name}, {size_code(size)}, "
            f"{what!r})" for name, size, what, known in index_data_checks(program) if known == at_construction]
