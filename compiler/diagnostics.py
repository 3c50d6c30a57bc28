"""Source positions and compiler-style diagnostics.

Every error the compiler reports is a `Diagnostic`: a location (file, line,
column, span), a message, and an optional hint.  `format()` renders it the way
a good compiler does:

    lista.unroll:12:31: error: unknown name `thta`
       12 |     x = soft(Wt @ x + We @ y, thta)
          |                               ^^^^
    hint: did you mean `theta`?
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from functools import cached_property

MAX_REPORTED = 20  # a report shows the first diagnostics and counts the rest
EXCERPT_WIDTH = 120  # a longer source line is echoed as a window around the caret


@dataclass(frozen=True)
class Span:
    """A region of one source line range: 1-based line/column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def point(line: int, column: int, width: int = 1) -> Span:
        return Span(line, column, line, column + max(width, 1))


@dataclass
class Source:
    """The text of a spec (or of a command line) and the name to report it under."""

    text: str
    path: str = "<spec>"

    @cached_property
    def _lines(self) -> list[str]:
        return self.text.split("\n")

    def line_text(self, line: int) -> str:
        lines = self._lines
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""


def _printable(text: str) -> str:
    """Make a source line safe to echo on a terminal (no control characters).  Every character stays
    one column wide, so carets still line up (a tab or a byte-order mark shows as a space)."""
    text = text.replace("\t", " ").replace("\ufeff", " ").replace("\r", " ")
    return "".join(ch if (ch.isprintable() or ch == " ") else "?" for ch in text)


@dataclass
class Diagnostic:
    message: str
    span: Span | None = None
    hint: str | None = None
    severity: str = "error"
    notes: list[tuple[str, Span | None]] = field(default_factory=list)

    def format(self, source: Source | None) -> str:
        path = source.path if source else "<spec>"
        if self.span is None:
            head = f"{path}: {self.severity}: {self.message}"
            out = [head]
        else:
            out = [f"{path}:{self.span.line}:{self.span.column}: {self.severity}: {self.message}"]
            if source is not None:
                out.extend(_excerpt(source, self.span))
        for note, span in self.notes:
            if span is not None and source is not None:
                out.append(f"{path}:{span.line}:{span.column}: note: {note}")
                out.extend(_excerpt(source, span))
            else:
                out.append(f"note: {note}")
        if self.hint:
            out.append(f"hint: {self.hint}")
        return "\n".join(out)


def _excerpt(source: Source, span: Span) -> list[str]:
    text = _printable(source.line_text(span.line))
    number = str(span.line)
    gutter = " " * len(number)
    start = max(span.column, 1)
    if span.end_line == span.line:
        width = max(span.end_column - span.column, 1)
    else:
        width = max(len(text) - start + 1, 1)
    width = min(width, max(len(text) - start + 1, 1))
    if len(text) > EXCERPT_WIDTH:  # a window around the caret, `...` where text is left out
        left = max(0, start - 1 - EXCERPT_WIDTH // 3)
        right = min(len(text), left + EXCERPT_WIDTH)
        text = ("..." if left else "") + text[left:right] + ("..." if right < len(text) else "")
        start = start - left + (3 if left else 0)
        width = max(1, min(width, len(text) - start + 1))
    caret = " " * (start - 1) + "^" * width
    return [f" {number} | {text}", f" {gutter} | {caret}"]


class CompileError(Exception):
    """One or more diagnostics; `str()` is the formatted report."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source | None = None):
        self.diagnostics = diagnostics
        self.source = source
        super().__init__(self.report())

    def report(self) -> str:
        shown = [d.format(self.source) for d in self.diagnostics[:MAX_REPORTED]]
        if len(self.diagnostics) > MAX_REPORTED:
            more = len(self.diagnostics) - MAX_REPORTED
            shown.append(f"... and {more} more error{'s' if more > 1 else ''} ({len(self.diagnostics)} in all); "
                         "fix the first ones and check again")
        return "\n".join(shown)


class DiagnosticSink:
    """Collects diagnostics during a pass; raises them together at the end."""

    def __init__(self, source: Source):
        self.source = source
        self.items: list[Diagnostic] = []

    def error(self, message: str, span: Span | None = None, hint: str | None = None) -> Diagnostic:
        diag = Diagnostic(message, span, hint)
        self.items.append(diag)
        return diag

    def raise_if_any(self) -> None:
        if self.items:
            raise CompileError(self.items, self.source)


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of neighbours."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


def closest(name: str, candidates) -> str | None:
    """The candidate a typo of `name` most likely meant, or None if none is close.

    Ranked by edit distance (a swap of two neighbouring letters counts once), then by
    whether the first letter agrees, then by difflib's similarity ratio.
    """
    pool = sorted({c for c in candidates if c and c != name})
    if not pool:
        return None
    limit = 0 if len(name) <= 1 else max(1, len(name) // 3)
    scored = []
    for c in pool:
        d = _edit_distance(name.lower(), c.lower())
        if d <= limit:
            ratio = difflib.SequenceMatcher(None, name, c).ratio()
            scored.append((d, c[0].lower() != name[0].lower(), -ratio, c))
    if scored:
        return min(scored)[3]
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=0.75)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates) -> str | None:
    """A 'did you mean' hint from the closest candidate names, if any is close."""
    match = closest(name, candidates)
    if match is not None:
        return f"did you mean `{match}`?"
    return None
