"""The compiler's entry points: spec text (+ options) -> Python source."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from unroll import __version__

from .check import check
from .diagnostics import CompileError, Diagnostic, Source, Span, did_you_mean
from .emit_backward import BackwardMode, parse_mode
from .emit_head import usable_class_name
from .emitter import emit
from .parser import parse
from .schedule import Schedule, apply_schedule

SPEC_DIR = Path(__file__).resolve().parent.parent / "dsl_specs"
VERSION = __version__  # written once, in runtime/_top/__init__.py
CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")


def _spec_dir() -> Path:
    try:  # installed: unroll.dsl_specs is a package next to unroll.compiler
        from importlib import resources

        return Path(str(resources.files("unroll.dsl_specs")))
    except (ModuleNotFoundError, TypeError):
        return SPEC_DIR


def shipped_specs() -> dict[str, Path]:
    d = _spec_dir()
    if not d.is_dir():
        d = SPEC_DIR
    return {p.stem: p for p in sorted(d.glob("*.unroll"))}


def resolve_spec(spec: str) -> Path:
    """A path to a .unroll file, or the name of a shipped spec."""
    path = Path(spec)
    if path.suffix == ".unroll" or path.exists() or "/" in spec:
        if not path.is_file():
            raise CompileError([Diagnostic(f"no such spec file: {spec}")], Source("", spec))
        return path
    specs = shipped_specs()
    if spec in specs:
        return specs[spec]
    hint = did_you_mean(spec, specs) or "`unrollc list` shows the shipped specs"
    raise CompileError([Diagnostic(f"unknown spec `{spec}` (not a file, not a shipped spec)", hint=hint)],
                       Source("", "unrollc"))


@dataclass
class CompileOptions:
    layers: int | None = None
    tie: list[str] = field(default_factory=list)
    untie: list[str] = field(default_factory=list)
    learn: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    class_name: str | None = None
    backward: str | None = None  # compiler/emit_backward.py: unroll | checkpoint[:k] | implicit[:tol]

    def text(self) -> str:
        """Canonical command-line form (part of the output header and of the cache key)."""
        parts = []
        if self.layers is not None:
            parts.append(f"--layers {self.layers}")
        for opt in ("tie", "untie", "learn", "freeze"):
            values = getattr(self, opt)
            if values:
                parts.append(f"--{opt} {','.join(values)}")
        if self.class_name:
            parts.append(f"--class-name {self.class_name}")
        if self.backward is not None:
            parts.append(f"--backward {self.backward}")
        return " ".join(parts)

    def backward_mode(self) -> BackwardMode | None:
        """The `--backward` option parsed (None: the spec's default); a mistake is located in the option text."""
        if self.backward is None:
            return None
        text = self.text()
        start = text.find("--backward ") + len("--backward ") + 1
        return parse_mode(self.backward, Source(text, "<options>"), Span(1, start, 1, start + len(self.backward)))

    def schedule(self) -> Schedule:
        """The options as a schedule (compiler/schedule.py), with spans into their command-line text for
        diagnostics."""
        text = self.text()
        spans: dict = {}
        pos = 0
        for token in text.split(" "):
            col = pos + 1
            pos += len(token) + 1
            spans.setdefault(("__token__", col), token)
        # locate each option value inside the text
        for opt in ("tie", "untie", "learn", "freeze"):
            flag = f"--{opt} "
            start = text.find(flag)
            if start < 0:
                continue
            col = start + len(flag) + 1
            for value in getattr(self, opt):
                spans[(f"--{opt}", value)] = Span(1, col, 1, col + len(value))
                col += len(value) + 1
        if self.layers is not None:
            start = text.find("--layers ") + len("--layers ") + 1
            spans[("--layers", None)] = Span(1, start, 1, start + len(str(self.layers)))
        return Schedule(self.layers, list(self.tie), list(self.untie), list(self.learn), list(self.freeze),
                        Source(text, "<options>"), spans)


def _split(values) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        out.extend(x.strip() for x in str(v).split(",") if x.strip())
    return out


def make_options(layers=None, tie=None, untie=None, learn=None, freeze=None, class_name=None,
                 backward=None) -> CompileOptions:
    opts = CompileOptions(layers, _split(tie), _split(untie), _split(learn), _split(freeze), class_name,
                          None if backward is None else str(backward))
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int)):
        raise CompileError([Diagnostic(f"--layers takes a positive integer, got {layers!r}")], Source("", "<options>"))
    if class_name is not None and (not CLASS_NAME.match(class_name) or not usable_class_name(class_name)):
        src = Source(opts.text(), "<options>")
        start = src.text.find("--class-name ") + len("--class-name ") + 1
        raise CompileError([Diagnostic(f"--class-name: `{class_name}` is not a valid class name",
                                       Span(1, start, 1, start + len(class_name)),
                                       "use a Python identifier that starts with a capital letter and is not a "
                                       "Python builtin, e.g. `MyLista`")],
                           src)
    opts.backward_mode()  # validates the mode
    return opts


def compile_source(text: str, path: str = "<spec>", options: CompileOptions | None = None) -> str:
    """Compile spec text; raise CompileError with formatted diagnostics on any mistake."""
    options = options or CompileOptions()
    source = Source(text, path)
    try:
        program, spec_mode = _checked_program(source, options, with_mode=True)
        return emit(program, options.text(), VERSION, options.class_name, options.backward_mode() or spec_mode)
    except RecursionError:
        raise CompileError([_too_deep(source)], source) from None


def check_source(text: str, path: str = "<spec>", options: CompileOptions | None = None):
    """Parse and check only; returns the typed program."""
    options = options or CompileOptions()
    source = Source(text, path)
    try:
        return _checked_program(source, options, with_mode=True)[0]
    except RecursionError:
        raise CompileError([_too_deep(source)], source) from None


def _too_deep(source: Source) -> Diagnostic:
    """The diagnostic for an expression that exhausts the recursion limit, at the line with the deepest
    bracket nesting (the longest line if no line nests deeper than 3 brackets)."""
    best = (-1, -1, 1, 1, 1)  # (depth, length, line, column, width)
    depth = 0
    for number, line in enumerate(source.text.split("\n"), start=1):
        deepest, column = depth, 1
        for col, ch in enumerate(line, start=1):
            if ch in "([":
                depth += 1
                if depth > deepest:
                    deepest, column = depth, col
            elif ch in ")]":
                depth = max(depth - 1, 0)
        key = (deepest if deepest > 3 else 0, len(line))
        if key > best[:2]:
            width = 1 if deepest > 3 else max(len(line) - len(line.lstrip()), 0)
            start = column if deepest > 3 else width + 1
            best = (*key, number, start, 1 if deepest > 3 else max(len(line.strip()), 1))
    _, _, line, column, width = best
    return Diagnostic("an expression is too long or too deeply nested to compile", Span.point(line, column, width),
                      "split it into steps with `let` temporaries")


def _checked_program(source: Source, options: CompileOptions, with_mode: bool = False):
    """Parse, check (the spec as written, at the `--layers` depth if given), then apply the options.
    With `with_mode`: (program, the spec's `backward` line parsed, or None)."""
    schedule = options.schedule()
    tree = parse(source)
    program = apply_schedule(check(tree, source, schedule.layers), schedule)
    if not with_mode:
        return program
    mode = None if tree.backward is None else parse_mode(tree.backward, source, tree.backward_span)
    return program, mode


def read_spec(path: Path) -> str:
    """The text of a spec file (UTF-8); a file that is not UTF-8 is a located CompileError."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        before = data[:err.start].decode("utf-8", errors="replace")
        line = before.count("\n") + 1
        column = len(before) - (before.rfind("\n") + 1) + 1
        text = data.decode("utf-8", errors="replace")
        raise CompileError([Diagnostic(f"the spec file is not UTF-8 text: byte 0x{data[err.start]:02x} cannot be "
                                       "decoded", Span.point(line, column),
                                       "save the file as UTF-8 (spec files are UTF-8 text)")],
                           Source(text, _display_path(path))) from None


def compile_spec(spec: str, options: CompileOptions | None = None) -> tuple[str, Path]:
    path = resolve_spec(spec)
    text = read_spec(path)
    return compile_source(text, _display_path(path), options), path


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        if path.resolve().parent == _spec_dir().resolve() or path.resolve().parent == SPEC_DIR:
            return f"dsl_specs/{path.name}"
        return str(path)
