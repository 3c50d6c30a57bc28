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
import io
import re
import tokenize
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from unroll.compiler import CompileError
from unroll.compiler import driver as driver_module
from unroll.compiler.driver import compile_source, make_options, shipped_specs
from unroll.runtime import UnrolledModule

COMPILER_DIR = Path(driver_module.__file__).resolve().parent
RUNTIME_DIR = Path(__import__("unroll.runtime", fromlist=["x"]).__file__).resolve().parent
SHIPPED = shipped_specs()

# builtins the generated code may call by name; everything else it calls is an attribute
# (torch.*, rt.*, self.*, tensor methods)
ALLOWED_NAME_CALLS = {
    "super",
    "range",
    "dict",
    "int",
    "float",
    "min",
    "max",
    "len",
    "isinstance",
    "tuple",
    "list",
}
ALLOWED_DUNDERS = {"__init__"}
EXPECTED_IMPORTS = [("import", "torch", None), ("from", "unroll", "runtime", "rt")]


def audit(src: str) -> pyast.Module:
    """Parse generated source and assert it only does what generated code does."""
    tree = pyast.parse(src)
    imports = []
    for node in pyast.walk(tree):
        if isinstance(node, pyast.Import):
            imports += [("import", a.name, a.asname) for a in node.names]
        elif isinstance(node, pyast.ImportFrom):
            imports += [("from", node.module, a.name, a.asname) for a in node.names]
        elif isinstance(node, pyast.Call) and isinstance(node.func, pyast.Name):
            assert node.func.id in ALLOWED_NAME_CALLS, f"unexpected call {node.func.id}(...)"
        elif isinstance(node, pyast.Attribute):
            assert not node.attr.startswith("__") or node.attr in ALLOWED_DUNDERS, node.attr
        elif isinstance(node, pyast.Name):
            assert not node.id.startswith("__"), node.id
        elif isinstance(
            node,
            (
                pyast.Global,
                pyast.Nonlocal,
                pyast.Lambda,
                pyast.Delete,
                pyast.With,
                pyast.AsyncFunctionDef,
                pyast.Await,
                pyast.Try,
            ),
        ):
            pytest.fail(f"unexpected {type(node).__name__} in generated code")
    assert imports == EXPECTED_IMPORTS
    # top level: docstring, two imports, one class
    assert [type(n).__name__ for n in tree.body] == ["Expr", "Import", "ImportFrom", "ClassDef"]
    cls = tree.body[3]
    for item in cls.body:
        assert isinstance(item, (pyast.Expr, pyast.Assign, pyast.FunctionDef)), type(item).__name__
        if isinstance(item, pyast.FunctionDef):
            assert item.name in ("__init__", "forward", "_unrolled", "get_extra_state", "set_extra_state")
            assert not item.decorator_list
    assert not cls.decorator_list and not cls.keywords
    return tree


def docstrings(tree: pyast.Module) -> list[str]:
    cls = tree.body[3]
    return [pyast.get_docstring(tree, clean=False), pyast.get_docstring(cls, clean=False)]


def string_constants(tree: pyast.Module) -> list[str]:
    return [n.value for n in pyast.walk(tree) if isinstance(n, pyast.Constant) and isinstance(n.value, str)]


def comments(src: str) -> list[str]:
    return [
        t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.COMMENT
    ]


def code_names(src: str) -> list[str]:
    """The NAME tokens of the code (keywords included), outside strings and comments."""
    return [t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.NAME]


def load(src: str):
    module = types.ModuleType("unroll_safety_generated")
    exec(compile(src, "<generated>", "exec"), module.__dict__)  # noqa: S102 - the audited compiler output
    (cls,) = [
        v
        for v in vars(module).values()
        if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule
    ]
    return cls


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
TEMPLATE = """spec {SPEC} "t"
dims {DIM}, m
data {D} : real[{DIM}, m]
hyper {H} = 0.1
input {Y} : real[{DIM}]
let {L} = opnorm({D})^2
param {P} : real = {H} / {L}   learned shared positive
state {X} : real[m] = 0
layers 3
step:
    let {T} = {X} - {D}.T @ ({D} @ {X} - {Y}) / {L}
    {X} = soft({T}, {P})
output {X}
"""
ROLES = {
    "SPEC": "hostile",
    "DIM": "n",
    "D": "A",
    "H": "lam",
    "Y": "y",
    "L": "Lc",
    "P": "theta",
    "X": "x",
    "T": "t",
}
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
        ("y[0:2]", 12, 12, "syntax error: unexpected `:`"),
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


# --------------------------------------------------------------------------- text that reaches the output
NASTY = [
    '"""',
    "'''",
    '"',
    "\\",
    "\\n import os",
    "\\x00",
    "{}",
    "%s",
    "\\N{BULLET}",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0c",
    "\x1b[31m",
    "\x00",
    "\r",
    "\ud7ff",
    "\u202e",
    "\t",
]


def _spec_with_title(title: str) -> str:
    return (
        SHIPPED["ista"]
        .read_text()
        .replace('spec ista "ISTA (iterative shrinkage-thresholding)"', f'spec ista "{title}"')
    )


@pytest.mark.parametrize(
    "title",
    [
        "plain title",
        "it's 'quoted'",
        "back\\slash",
        "ends with a backslash \\",
        "\\N{BULLET} \\x41 \\u0041",
        "{0} {self} %s %(x)s",
        "'''",
        "tab\there",
        "line\u2028separator",
        "para\u2029graph",
        "next\x85line",
        "form\x0cfeed",
        "nul\x00byte",
        "esc\x1b[31m",
        "rtl\u202eoverride",
        "import os",
        "__import__('os')",
    ],
)
def test_titles_stay_inside_docstrings(title):
    src = compile_source(_spec_with_title(title), "ista.unroll")  # accepted: only the string's own quote ends it
    tree = audit(src)
    module_doc, class_doc = docstrings(tree)
    shown = "".join(ch if ch.isprintable() else "?" for ch in title)
    assert module_doc.startswith(shown + " -- `ista` unrolled into 100 layers.")
    assert class_doc.startswith(shown + " (100 layers).")
    assert pyast.get_docstring(tree.body[3]).startswith(shown + " (100 layers)")
    for ch in "\u2028\u2029\x85\x0c\x00\x1b\r\u202e":
        assert ch not in src
    # nowhere else: not in any other string constant, comment, or code
    others = [s for s in string_constants(tree) if s not in docstrings(tree)]
    if len(shown) > 3:
        assert not any(shown in s for s in others)
        assert not any(shown in c for c in comments(src))


@pytest.mark.parametrize(
    "title, column, message, hint",
    [
        ('has """ inside', 17, 'syntax error: unexpected `""`', "expected end of line"),
        ('a "quote', 15, "syntax error: unexpected `quote`", "expected end of line"),
        ("new\nline import os", 11, "unterminated string", 'close the string with `"` on the same line'),
    ],
)
def test_titles_that_would_close_the_string_are_rejected(title, column, message, hint):
    with pytest.raises(CompileError) as info:
        compile_source(_spec_with_title(title), "ista.unroll")
    (diag,) = info.value.diagnostics
    assert (diag.message, diag.hint, diag.span.line, diag.span.column) == (message, hint, 8, column)
    assert info.value.report().startswith(f"ista.unroll:8:{column}: error: {message}")


@pytest.mark.parametrize("nasty", NASTY)
def test_comments_cannot_inject_code(nasty):
    text = original = SHIPPED["lista"].read_text()
    # in the leading comment block (it becomes the module docstring)
    text = text.replace("# LISTA: learned ISTA", f"# LISTA{nasty}: learned{nasty}ISTA {nasty}", 1)
    text = f"# {nasty}\n# {nasty}import os{nasty}\n" + text
    # on a declaration line and on the step line (they become comments and docstring lines)
    text = text.replace(
        "param theta : real       = lam / L                 learned shared positive",
        f"param theta : real = lam / L learned shared positive  # {nasty}import os {nasty}",
    )
    text = text.replace(
        "    x = soft(Wt @ x + We @ y, theta)", f"    x = soft(Wt @ x + We @ y, theta)  # {nasty}\\"
    )
    assert text.count(nasty) >= original.count(nasty) + 9  # every insertion happened
    src = compile_source(text, "lista.unroll")  # comments may contain anything: always accepted
    audit(src)
    for ch in "\u2028\u2029\x85\x0c\x00\x1b\r\u202e":
        assert ch not in src
    assert code_names(src).count("import") == 2  # `import torch`, `from unroll import runtime`
    assert "os" not in code_names(src)
    A = torch.randn(5, 7, dtype=torch.float64)
    out = load(src)(A)(torch.randn(3, 5, dtype=torch.float64))
    assert out.shape == (3, 7)


@pytest.mark.parametrize(
    "path",
    [
        "evil\nimport os\n.unroll",
        'q"""uote.unroll',
        "nul\x00.unroll",
        "line\u2028sep.unroll",
        "dir/with\r/cr.unroll",
    ],
)
def test_file_names_cannot_inject_code(path):
    src = compile_source(SHIPPED["ista"].read_text(), path)
    audit(src)
    first = src.split("\n")[0]
    assert first.startswith("# Generated by unrollc ")
    for ch in "\n\r\x00\u2028":
        assert ch not in first
    assert code_names(src).count("import") == 2
    assert "os" not in code_names(src)


@pytest.mark.parametrize(
    "options",
    [
        {"class_name": "X(rt.UnrolledModule):\n    import os"},
        {"class_name": "X; import os"},
        {"class_name": "__import__"},
        {"class_name": "os.system"},
        {"tie": "We; import os"},
        {"untie": "__class__"},
        {"learn": "We\nimport os"},
        {"layers": "3; import os"},
        {"layers": 2.5},
        {"layers": True},
    ],
)
def test_hostile_options_are_rejected(options):
    with pytest.raises(CompileError):
        compile_source(SHIPPED["lista"].read_text(), "lista.unroll", make_options(**options))


# --------------------------------------------------------------------------- numbers
def test_numbers_are_emitted_with_repr():
    text = TEMPLATE.format(**ROLES).replace(
        "{H} / {L}".format(H="lam", L="Lc"), "lam / Lc * 1.0000000000000002 * 000001 * 1e-0 * 2.50e1 / 25"
    )
    src = compile_source(text, "n.unroll")
    tree = audit(src)
    numbers = [
        n.value for n in pyast.walk(tree) if isinstance(n, pyast.Constant) and type(n.value) in (int, float)
    ]
    assert 1.0000000000000002 in numbers and 25.0 in numbers and 1 in numbers
    code_numbers = {
        t.string for t in tokenize.generate_tokens(io.StringIO(src).readline) if t.type == tokenize.NUMBER
    }
    assert "1.0000000000000002" in code_numbers and "25.0" in code_numbers and "000001" not in code_numbers
    assert "2.50e1" not in code_numbers and "1e-0" not in code_numbers


def test_huge_integers_are_exact():
    text = (
        TEMPLATE.format(**ROLES)
        .replace("layers 3", "layers 3")
        .replace(
            "{H} / {L}".format(H="lam", L="Lc"),
            "lam / Lc * (123456789012345678901234567890 / 123456789012345678901234567890)",
        )
    )
    src = compile_source(text, "n.unroll")
    audit(src)
    assert "123456789012345678901234567890" in src
    load(src)


@pytest.mark.parametrize("where, line, column", [("param", 7, 37), ("step", 12, 30)])
def test_overflowing_literals_are_rejected(where, line, column):
    text = TEMPLATE.format(**ROLES)
    if where == "param":
        text = text.replace("lam / Lc   learned", "lam / Lc + 0 * 1e999   learned")
    else:
        text = text.replace("soft(t, theta)", "soft(t, theta) + 0 * 1e999")
    assert text.count("1e999") == 1
    with pytest.raises(CompileError) as info:
        compile_source(text, "n.unroll")
    (diag,) = info.value.diagnostics
    assert diag.message == "the number `1e999` is too large (it overflows to infinity)"
    assert (diag.span.line, diag.span.column, diag.span.end_column) == (line, column, column + 5)
    assert "finite double-precision" in diag.hint


# --------------------------------------------------------------------------- pathological sizes
@pytest.mark.parametrize("expr", [" + ".join(["y"] * 1000), "-" * 1000 + "y"], ids=["long-sum", "deep-minus"])
def test_pathologically_long_expressions_fail_cleanly(expr):
    text = (
        'spec a "x"\ndims n\ninput y : real[n]\nstate x : real[n] = 0\nlayers 2\nstep:\n    x = '
        + expr
        + "\noutput x\n"
    )
    with pytest.raises(CompileError) as info:
        compile_source(text, "long.unroll")
    (diag,) = info.value.diagnostics
    assert diag.severity == "error"
    assert diag.message == "an expression is too long or too deeply nested to compile"
    assert diag.hint == "split it into steps with `let` temporaries"
    assert "Traceback" not in info.value.report()
    # (the diagnostic carries no location yet: reported to the compiler's owner, not asserted here)


def test_moderately_long_expressions_compile():
    text = (
        'spec a "x"\ndims n\ninput y : real[n]\nstate x : real[n] = 0\nlayers 2\nstep:\n    x = '
        + " + ".join(["y"] * 200)
        + "\noutput x\n"
    )
    src = compile_source(text, "long.unroll")
    audit(src)
    out = load(src)()(torch.ones(3, dtype=torch.float64))
    assert out.tolist() == [200.0, 200.0, 200.0]
