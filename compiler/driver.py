"""The compiler's entry points: spec text (+ options) -> Python source."""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field
from pathlib import Path

from unroll import __version__

from .check import check
from .diagnostics import CompileError, Diagnostic, Source, Span, did_you_mean
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
        return " ".join(parts)

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


def make_options(layers=None, tie=None, untie=None, learn=None, freeze=None, class_name=None) -> CompileOptions:
    opts = CompileOptions(layers, _split(tie), _split(untie), _split(learn), _split(freeze), class_name)
    if layers is not None and (isinstance(layers, bool) or not isinstance(layers, int)):
        raise CompileError([Diagnostic(f"--layers takes a positive integer, got {layers!r}")], Source("", "<options>"))
    if class_name is not None and (not CLASS_NAME.match(class_name) or keyword.iskeyword(class_name)):
        src = Source(opts.text(), "<options>")
        start = src.text.find("--class-name ") + len("--class-name ") + 1
        raise CompileError([Diagnostic(f"--class-name: `{class_name}` is not a valid class name",
                                       Span(1, start, 1, start + len(class_name)),
                                       "use a Python identifier that starts with a capital letter, e.g. `MyLista`")],
                           src)
    return opts


def compile_source(text: str, path: str = "<spec>", options: CompileOptions | None = None) -> str:
    """Compile spec text; raise CompileError with formatted diagnostics on any mistake."""
    options = options or CompileOptions()
    source = Source(text, path)
    try:
        program = _checked_program(source, options)
        return emit(program, options.text(), VERSION, options.class_name)
    except RecursionError:
        raise CompileError([Diagnostic("an expression is too long or too deeply nested to compile",
                                       hint="split it into steps with `let` temporaries")], source) from None


def check_source(text: str, path: str = "<spec>", options: CompileOptions | None = None):
    """Parse and check only; returns the typed program."""
    options = options or CompileOptions()
    source = Source(text, path)
    try:
        return _checked_program(source, options)
    except RecursionError:
        raise CompileError([Diagnostic("an expression is too long or too deeply nested to compile",
                                       hint="split it into steps with `let` temporaries")], source) from None


def _checked_program(source: Source, options: CompileOptions):
    """Parse, check (the spec as written, at the `--layers` depth if given), then apply the options."""
    schedule = options.schedule()
    program = check(parse(source), source, schedule.layers)
    return apply_schedule(program, schedule)


def compile_spec(spec: str, options: CompileOptions | None = None) -> tuple[str, Path]:
    path = resolve_spec(spec)
    text = path.read_text()
    return compile_source(text, _display_path(path), options), path


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        if path.resolve().parent == _spec_dir().resolve() or path.resolve().parent == SPEC_DIR:
            return f"dsl_specs/{path.name}"
        return str(path)
