"""Hostile specs cannot make the compiler, or the module it generates, run anything
beyond the spec's math.

* names such as `__import__`, `os`, `eval`, `open`, Python keywords, or attributes of
  torch.nn.Module are rejected, or harmless (the module still computes the spec);
* titles, comments, file names with quotes, backslashes, control characters or
  unicode line separators stay inside comments/docstrings;
* the compiler never calls eval/exec (statically: no such call in compiler/*.py;
  dynamically: compiling every shipped spec with eval/exec/compile spied on);
* numbers are emitted with repr().
"""

from __future__ import annotations

import ast as pyast
import builtins
import re
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from safety_helpers import (  # shared with test_safety_text
    COMPILER_DIR,
    ROLES,
    RUNTIME_DIR,
    SHIPPED,
    TEMPLATE,
    audit,
    load,
)
from unroll.compiler import CompileError
from unroll.compiler.check.names import SPECIAL_FORMS, USER_OPERATORS
from unroll.compiler.driver import compile_source, make_options


# --------------------------------------------------------------------------- the compiler itself
def _compiler_files():
    files = sorted(COMPILER_DIR.glob("*.py"))
    assert len(files) >= 8
    return files


def test_compiler_sources_never_call_eval_or_exec():
    pattern = re.compile(r"(?<![\w.])(eval|exec)\s*\(")
    for path in _compiler_files():
        text = path.read_text()
        assert not pattern.search(text), f"{path.name} calls eval/exec"
        for node in pyast.walk(pyast.parse(text)):
            if isinstance(node, pyast.Call):
                f = node.func
                name = (
                    f.id if isinstance(f, pyast.Name) else f.attr if isinstance(f, pyast.Attribute) else None
                )
                assert name not in (
                    "eval",
                    "exec",
                    "__import__",
                    "literal_eval",
                    "sympify",
                    "parse_expr",
                    "execfile",
                    "run_path",
                ), f"{path.name}:{node.lineno} calls {name}"
                if isinstance(f, pyast.Name):
                    assert f.id != "compile", f"{path.name}:{node.lineno} calls compile()"


def test_compiler_does_not_import_torch():
    for path in _compiler_files():
        tree = pyast.parse(path.read_text())
        for node in pyast.walk(tree):
            if isinstance(node, pyast.Import):
                assert not any(a.name.split(".")[0] == "torch" for a in node.names), path.name
            if isinstance(node, pyast.ImportFrom) and node.module:
                assert node.module.split(".")[0] != "torch", path.name


def test_runtime_has_no_eval_or_exec_on_text():
    pattern = re.compile(r"(?<![\w.])(eval|exec)\s*\(")
    for path in sorted(RUNTIME_DIR.glob("*.py")):
        assert not pattern.search(path.read_text()), path.name


GRAD_SPEC = """spec g "grad"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
let L = opnorm(A)^2
state x : real[m] = 0
layers 3
step:
    x = soft(x - grad(0.5 * norm(A @ x - y)^2 + 0.25 * norm(x)^2, x) / L, lam / L)
output x
"""


def test_compiling_never_calls_eval_exec_or_compile(monkeypatch):
    """Dynamic check: every shipped spec (and a spec using sympy through grad) compiles
    with builtins.eval/exec/compile spied on; none is called."""
    texts = {name: path.read_text() for name, path in SHIPPED.items()}
    compile_source(GRAD_SPEC, "g.unroll")  # warm up lazy imports (sympy, lark cache)
    for name, text in texts.items():
        compile_source(text, name)
    calls = []

    def is_module_import(name, args, kwargs):
        """Python's import machinery compiles and executes .py files found on disk: not spec text."""
        if name == "exec" and args and isinstance(args[0], types.CodeType):
            return args[0].co_filename.endswith(".py") and Path(args[0].co_filename).is_file()
        if name == "compile":
            filename = args[1] if len(args) > 1 else kwargs.get("filename", "")
            return str(filename).endswith(".py") and Path(str(filename)).is_file()
        return False

    def spy(name, real):
        def wrapper(*args, **kwargs):
            if not is_module_import(name, args, kwargs):
                calls.append((name, repr(args[0])[:80]))
            return real(*args, **kwargs)

        return wrapper

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, spy(name, getattr(builtins, name)))
    for name, text in texts.items():
        compile_source(text, f"{name}.unroll", make_options(layers=3))
    compile_source(GRAD_SPEC.replace("0.25", "0.125"), "g.unroll")
    compile_source(GRAD_SPEC.replace("0.25 * norm(x)^2", "lam * dot(x, x)"), "g.unroll")
    monkeypatch.undo()
    assert calls == []


# --------------------------------------------------------------------------- hostile names
HOSTILE = [
    "__import__",
    "__class__",
    "__builtins__",
    "__init__",
    "_private",
    "os",
    "sys",
    "subprocess",
    "eval",
    "exec",
    "open",
    "compile",
    "getattr",
    "globals",
    "breakpoint",
    "input",
    "print",
    "range",
    "super",
    "lambda",
    "import",
    "class",
    "def",
    "return",
    "None",
    "True",
    "match",
    "case",
    "self",
    "torch",
    "rt",
    "nn",
    "F",
    "math",
    "np",
    "layer",
    "batch",
    "dims",
    "dtype",
    "device",
    "record",
    "training",
    "forward",
    "num_layers",
    "state_dict",
    "parameters",
    "to",
    "cuda",
    "register_buffer",
    "trace",
    "x_prev",
    "A_c",
    "We_y",
]


def _reference(A: torch.Tensor, y: torch.Tensor, layers=3, lam=0.1):
    An, yn = A.numpy(), y.numpy()
    L = np.linalg.norm(An, 2) ** 2
    x = np.zeros((yn.shape[0], An.shape[1]))
    for _ in range(layers):
        t = x - (x @ An.T - yn) @ An / L
        x = np.sign(t) * np.maximum(np.abs(t) - lam / L, 0)
    return x


# The expected outcome of every hostile name: the checker's reason for rejecting it, or None (accepted,
# and the module must then compute the spec unchanged).
DUNDER = {"__import__", "__class__", "__builtins__", "__init__"}
LEADING_UNDERSCORE = {"_private"}
KEYWORDS = {"lambda", "import", "class", "def", "return", "None", "True"}
SOFT_KEYWORDS = {"match", "case"}  # Python keywords, but valid spec names (the class name is capitalised)
OPERATOR_NAMES = set(USER_OPERATORS) | set(SPECIAL_FORMS)
RESERVED = {  # used by the generated code (names, builtins it calls, attributes of the torch module)
    "eval", "compile", "print", "range", "super", "self", "torch", "rt", "layer", "batch", "dims", "dtype",
    "device", "record", "training", "forward", "num_layers", "state_dict", "parameters", "to", "cuda",
    "register_buffer", "trace",
}
HARMLESS = {"os", "sys", "subprocess", "exec", "open", "getattr", "globals", "breakpoint", "input", "nn", "F",
            "math", "np", "x_prev", "A_c", "We_y"}
# where each role's name is declared in TEMPLATE (line, column) and the noun the diagnostics use
DECLARED_AT = {"SPEC": (1, 6), "DIM": (2, 6), "D": (3, 6), "H": (4, 7), "Y": (5, 7), "L": (6, 5), "P": (7, 7),
               "X": (8, 7), "T": (11, 9)}
NOUN = {"DIM": "a dimension", "D": "a data operator", "H": "a hyperparameter", "Y": "an input",
        "L": "a `let` constant", "P": "a parameter", "X": "a state", "T": "a `let` value"}


def test_every_hostile_name_has_an_expected_outcome():
    groups = [DUNDER, LEADING_UNDERSCORE, KEYWORDS, SOFT_KEYWORDS, RESERVED, HARMLESS]
    assert set().union(*groups) == set(HOSTILE) and sum(map(len, groups)) == len(HOSTILE)


def expected_rejection(name: str, role: str) -> str | None:
    """The error message for `name` in `role`, or None when the name must be accepted."""
    if role == "SPEC":  # the spec name only has to be an identifier that is not a (hard) keyword
        return f"invalid spec name `{name}`" if name in DUNDER | LEADING_UNDERSCORE | KEYWORDS else None
    noun = NOUN[role]
    if name in DUNDER:
        return f"`{name}` cannot name {noun}: dunder names are reserved for Python"
    if name in LEADING_UNDERSCORE:
        return f"invalid name `{name}`: names start with a letter"
    if name in KEYWORDS | SOFT_KEYWORDS:
        return f"`{name}` is a Python keyword and cannot name {noun}"
    if name in OPERATOR_NAMES:  # an operator of the language (some, like `trace`, are also reserved)
        return f"`{name}` is an operator of the language and cannot name {noun}"
    if name in RESERVED:
        return f"`{name}` is reserved and cannot name {noun}"
    return None


@pytest.mark.parametrize("role", sorted(ROLES))
@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_rejected_or_harmless(name, role):
    names = dict(ROLES)
    if name in names.values():
        pytest.skip("the template already uses this name in another role")
    names[role] = name
    text = TEMPLATE.format(**names)
    message = expected_rejection(name, role)
    if message is not None:
        with pytest.raises(CompileError) as info:
            compile_source(text, "hostile.unroll")
        first = info.value.diagnostics[0]  # the declaration itself (uses may add follow-on errors)
        line, column = DECLARED_AT[role]
        assert first.severity == "error" and first.message == message
        assert (first.span.line, first.span.column, first.span.end_column) == (line, column, column + len(name))
        assert first.hint  # every rejection says how to fix it
        report = info.value.report()
        assert report.startswith(f"hostile.unroll:{line}:{column}: error: {message}")
        assert "Traceback" not in report
        return
    src = compile_source(text, "hostile.unroll")
    audit(src)
    cls = load(src)
    g = torch.Generator().manual_seed(0)
    A = torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = torch.randn(2, 4, generator=g, dtype=torch.float64)
    net = cls(A)
    assert net.num_layers == 3 and net.training is True
    out = net(y)
    np.testing.assert_allclose(out.detach().numpy(), _reference(A, y), rtol=1e-10, atol=1e-12)
    # the module's own machinery is intact
    assert len(net.trace(y)) == 4
    net.to(torch.float64).train(False)
    assert net.training is False
    assert set(net.state_dict()) >= {names["D"]}


@pytest.mark.parametrize(
    "expr, line, column, message",
    [
        ('__import__("os")', 12, 9, "unknown operator `__import__`"),
        ("A.__class__", 12, 11, "unknown attribute `.__class__`"),
        ("os.system(y)", 12, 9, "only named operators can be called"),
        ("eval(y)", 12, 9, "unknown operator `eval`"),
        ("exec(y)", 12, 9, "unknown operator `exec`"),
        ("open(y)", 12, 9, "unknown operator `open`"),
        ("y.__class__", 12, 11, "unknown attribute `.__class__`"),
        ("getattr(y, y)", 12, 9, "unknown operator `getattr`"),
        ("lambda: y", 12, 15, "syntax error: unexpected `:`"),
        ("[v for v in y]", 12, 12, "syntax error: unexpected `for`"),
        ("y if y else y", 12, 11, "syntax error: unexpected `if`"),
        ("y; import os", 12, 10, "unexpected character `;`"),
        ("y\nimport os", 13, 1, "syntax error: `import` does not start a declaration"),
        ("y \\\nimport os", 13, 1, "syntax error: `import` does not start a declaration"),
        ("y.T.__dict__", 12, 9, "`.T` needs a matrix, got real[n]"),
        ("soft(y, 0.1).mro()", 12, 9, "only named operators can be called"),
        ("A.T @ y @ A.data_ptr()", 12, 19, "only named operators can be called"),
        ("torch.zeros(m)", 12, 9, "only named operators can be called"),
        ("rt.soft(y, 0.1)", 12, 9, "only named operators can be called"),
        ("self.A", 12, 9, "unknown name `self`"),
        ("y[0:2:1]", 12, 14, "syntax error: unexpected `:`"),  # (a slice `y[0:2]` is valid; a step is not)
        ("{y}", 12, 9, "unexpected character `{`"),
        ("`y`", 12, 9, "unexpected character `"),
        ("y.real", 12, 11, "unknown attribute `.real`"),
        ("A.T.T.T.__len__()", 12, 9, "only named operators can be called"),
    ],
)
def test_hostile_expressions_are_rejected(expr, line, column, message):
    text = TEMPLATE.format(**ROLES).replace(
        "    {X} = soft".format(X="x"), f"    x = {expr}\n    x = soft", 1
    )
    with pytest.raises(CompileError) as info:
        compile_source(text, "hostile.unroll")
    (diag,) = info.value.diagnostics
    assert diag.severity == "error" and diag.message.startswith(message), diag.message
    assert (diag.span.line, diag.span.column) == (line, column)
    assert info.value.report().startswith(f"hostile.unroll:{line}:{column}: error: {message}")


def test_nothing_is_called_while_running_the_module(monkeypatch):
    src = compile_source(TEMPLATE.format(**ROLES), "t.unroll")
    cls = load(src)
    A = torch.randn(4, 6, dtype=torch.float64)
    y = torch.randn(2, 4, dtype=torch.float64)
    cls(A)(y)  # warm up
    calls = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls.append(name)
            return real(*args, **kwargs)

        return wrapper

    for name in ("eval", "exec", "compile", "open", "__import__"):
        monkeypatch.setattr(builtins, name, spy(name, getattr(builtins, name)))
    net = cls(A)
    net(y)
    net.trace(y)
    monkeypatch.undo()
    assert calls == []
