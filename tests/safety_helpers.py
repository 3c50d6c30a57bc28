"""Helpers shared by tests/test_safety.py and tests/test_safety_text.py: static audits of generated
source and loading it into a module namespace."""

from __future__ import annotations

import ast as pyast
import io
import tokenize
import types
from pathlib import Path

import pytest
from unroll.compiler import driver as driver_module
from unroll.compiler.driver import shipped_specs
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


# the spec every hostile-name test fills in, and the role of each placeholder
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
