"""Calls of expression functions (`fn`), inlined by compiler/functions.py before the checker runs: the body
of every call is typed at the call.  A mistake inside the body is reported where it is written (the `fn`
line) with a note at the call that made it one, so a function that types at one call and not at another
says which call."""

from __future__ import annotations

import dataclasses

from .. import ast
from ..diagnostics import Span


def _inside(span: Span | None, outer: Span) -> bool:
    return span is not None and (outer.line, outer.column) <= (span.line, span.column) and \
        (span.end_line, span.end_column) <= (outer.end_line, outer.end_column)


class FunctionCallMixin:
    """Checking an inlined function call (a part of `Checker`)."""

    def _e_Inlined(self, e: ast.Inlined):
        if e.body is None:  # the call itself was wrong (reported by compiler/functions.py)
            return None
        before = len(self.sink.items)
        node = self.expr(e.body)
        for diag in self.sink.items[before:]:
            if any(_inside(span, e.fn_span) for span in [diag.span] + [s for _, s in diag.notes]):
                diag.notes.append((f"in this call of `{e.name}`", e.span))
        if node is None:
            return None
        return dataclasses.replace(node, span=e.span, attrs=dict(node.attrs))  # the value is located at the call
