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


@dataclass(frozen=True)
class Span:
    """A region of one source line range: 1-based line/column, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int

    @staticmethod
    def point(line: int, column: int, width: int = 1) -> "Span":
        return Span(line, column, line, column + max(width, 1))


@dataclass
class Source:
    """The text of a spec (or of a command line) and the name to report it under."""

    text: str
    path: str = "<spec>"

    def line_text(self, line: int) -> str:
        lines = self.text.split("\n")
        if 1 <= line <= len(lines):
            return lines[line - 1]
        return ""


def _printable(text: str) -> str:
    """Make a source line safe to echo on a terminal (no control characters)."""
    return "".join(ch if (ch.isprintable() or ch == " ") else "?" for ch in text.replace("\t", " "))


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
    caret = " " * (start - 1) + "^" * width
    return [f" {number} | {text}", f" {gutter} | {caret}"]


class CompileError(Exception):
    """One or more diagnostics; `str()` is the formatted report."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source | None = None):
        self.diagnostics = diagnostics
        self.source = source
        super().__init__(self.report())

    def report(self) -> str:
        return "\n".join(d.format(self.source) for d in self.diagnostics)


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


def did_you_mean(name: str, candidates) -> str | None:
    """A 'did you mean' hint from the closest candidate names, if any is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    if matches:
        return f"did you mean `{matches[0]}`?"
    return None
