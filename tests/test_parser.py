"""Parser stage: spec text -> AST (compiler/grammar.lark + compiler/parser.py).

Positive cases: every shipped spec, multi-line expressions, comments, `repeat N:`
and `final:` blocks, operator precedence, spans.  Negative cases: syntax errors
raise CompileError located at the right line and column.
"""

from __future__ import annotations

import dataclasses

import pytest
from unroll.compiler import ast
from unroll.compiler.diagnostics import CompileError, Source, Span
from unroll.compiler.driver import shipped_specs
from unroll.compiler.parser import parse

SHIPPED = shipped_specs()


def parse_text(text: str, path: str = "p.unroll") -> ast.Spec:
    return parse(Source(text, path))


def let_value(expr: str) -> ast.Expr:
    """The AST of one expression (a top-level `let`; the parser does not resolve names)."""
    spec = parse_text(f"spec a\nlet q = {expr}\n")
    (decl,) = spec.decls
    return decl.value


def shape(node):
    """A span-free nested tuple view of an AST node, for structural comparison."""
    if isinstance(node, list):
        return [shape(x) for x in node]
    if isinstance(node, tuple):
        return tuple(shape(x) for x in node)
    if isinstance(node, Span):
        return None
    if dataclasses.is_dataclass(node) and not isinstance(node, ast.DimExpr):
        fields = {
            f.name: shape(getattr(node, f.name))
            for f in dataclasses.fields(node)
            if "span" not in f.name and f.name != "comments"
        }
        return (type(node).__name__, tuple(sorted(fields.items(), key=lambda kv: kv[0])))
    return node


def sexp(node) -> str:
    """Compact prefix form of an expression: (op left right)."""
    if isinstance(node, ast.Name):
        return node.name
    if isinstance(node, ast.Number):
        return node.text
    if isinstance(node, ast.Unary):
        return f"({node.op} {sexp(node.operand)})"
    if isinstance(node, ast.Binary):
        return f"({node.op} {sexp(node.left)} {sexp(node.right)})"
    if isinstance(node, ast.Attribute):
        return f"(.{node.attr} {sexp(node.value)})"
    if isinstance(node, ast.Index):
        return f"([] {sexp(node.value)} {sexp(node.index)})"
    if isinstance(node, ast.Call):
        return f"(call {sexp(node.func)} {' '.join(sexp(a) for a in node.args)})"
    if isinstance(node, ast.ListExpr):
        return f"[{' '.join(sexp(a) for a in node.items)}]"
    raise AssertionError(type(node))


# --------------------------------------------------------------------------- shipped specs
def test_the_shipped_specs_are_found():
    assert {"ista", "lista", "lista_untied", "fista", "lcod", "alista", "amp"} <= set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_every_shipped_spec_parses(name):
    text = SHIPPED[name].read_text()
    spec = parse_text(text, f"{name}.unroll")
    assert spec.name == name
    assert spec.title and '"' not in spec.title
    assert spec.step, "a shipped spec has update equations"
    assert spec.outputs
    assert spec.layers is not None
    # the header comment (paper reference) is captured for the generated docstring
    assert spec.comments and all(not c.startswith("#") for c in spec.comments)
    kinds = {d.kind for d in spec.decls}
    assert {"dim", "input", "state"} <= kinds


def test_lista_ast_details():
    spec = parse_text(SHIPPED["lista"].read_text())
    by_name = {d.name: d for d in spec.decls}
    assert [d.name for d in spec.decls if d.kind == "dim"] == ["n", "m"]
    theta = by_name["theta"]
    assert theta.kind == "param"
    assert [a.name for a in theta.annotations] == ["learned", "shared", "positive"]
    assert theta.type.base == "real" and theta.type.dims is None
    wt = by_name["Wt"]
    assert [str(d) for d in wt.type.dims] == ["m", "m"]
    assert sexp(wt.value) == "(- (call eye m) (/ (@ (.T A) A) L))"
    (stmt,) = spec.step
    assert isinstance(stmt, ast.Assign) and stmt.target == "x"
    assert sexp(stmt.value) == "(call soft (+ (@ Wt x) (@ We y)) theta)"
    assert spec.outputs[0][0] == "x"


def test_spans_point_at_the_source():
    text = SHIPPED["lista"].read_text()
    spec = parse_text(text)
    (stmt,) = spec.step
    lines = text.split("\n")
    # target span
    s = stmt.target_span
    assert lines[s.line - 1][s.column - 1 : s.end_column - 1] == "x"
    # the `theta` argument of soft(...)
    arg = stmt.value.args[1]
    s = arg.span
    assert lines[s.line - 1][s.column - 1 : s.end_column - 1] == "theta"
    # declaration name spans
    for d in spec.decls:
        s = d.span
        assert lines[s.line - 1][s.column - 1 : s.end_column - 1] == d.name


# --------------------------------------------------------------------------- layout
MULTILINE = """spec ml "multi-line"
dims n, m
data A : real[n,
              m]
hyper lam = 0.1
input y : real[n]
state x : real[m] = 0
layers 3
step:
    x = soft(x - A.T @ (A @ x
                        - y),
             lam)
    x = x + \\
        0
output x
"""


def test_multiline_expressions_inside_brackets():
    spec = parse_text(MULTILINE)
    assert [str(d) for d in next(d for d in spec.decls if d.name == "A").type.dims] == ["n", "m"]
    first, second = spec.step
    assert sexp(first.value) == "(call soft (- x (@ (.T A) (- (@ A x) y))) lam)"
    assert first.span.line == 10 and first.value.span.end_line == 12
    # backslash continuation
    assert sexp(second.value) == "(+ x 0)"
    assert second.span.line == 13


def test_multiline_list_expression():
    value = let_value("[n,\n    2 * m,\n    1]")
    assert sexp(value) == "[n (* 2 m) 1]"


def test_comments_are_ignored_everywhere():
    plain = SHIPPED["lista"].read_text()
    body = [ln for ln in plain.split("\n") if not ln.lstrip().startswith("#")]
    body = [ln.split("#")[0].rstrip() if not ln.lstrip().startswith("spec") else ln for ln in body]
    stripped = "\n".join(body)
    commented = stripped.replace(
        "step:\n",
        "step:   # the layer\n    # a comment line inside the block\n"
        "        # deeper comment\n# column-0 comment inside the block\n",
    )
    commented = "# leading\n\n" + commented + "\n# trailing comment without newline"
    a, b = parse_text(stripped), parse_text(commented)
    assert shape(a.decls) == shape(b.decls)
    assert shape(a.step) == shape(b.step)
    assert a.outputs[0][0] == b.outputs[0][0] == "x"
    assert b.comments == ["leading"]


def test_comment_with_quotes_and_backslashes_is_a_comment():
    spec = parse_text('spec a "t"  # a """ docstring \\ and a \' quote\nlet q = 1  # "\n')
    assert spec.title == "t"
    assert sexp(spec.decls[0].value) == "1"


def test_leading_comment_block_is_captured():
    spec = parse_text("# first line\n#   second line\n\n# not part of it\nspec a\n")
    assert spec.comments == ["first line", "second line"]


def test_crlf_line_endings():
    spec = parse_text(SHIPPED["ista"].read_text().replace("\n", "\r\n"))
    assert spec.name == "ista" and len(spec.step) == 1


REPEAT = """spec r "repeat"
dims n
hyper K : int = 3
input y : real[n]
state x : real[n] = 0
state z : real[n] = 0
layers 2
step:
    let g = y
    repeat K:
        z = z + g
        repeat 2:
            x = x + z
    x = x / 2
final:
    let out = x + z
    out = out * 2
output out
"""


def test_repeat_blocks_nest():
    spec = parse_text(REPEAT)
    local, rep, last = spec.step
    assert isinstance(local, ast.Local) and local.target == "g"
    assert isinstance(rep, ast.Repeat) and sexp(rep.count) == "K"
    inner_assign, inner_rep = rep.body
    assert isinstance(inner_assign, ast.Assign) and inner_assign.target == "z"
    assert isinstance(inner_rep, ast.Repeat) and sexp(inner_rep.count) == "2"
    assert [s.target for s in inner_rep.body] == ["x"]
    assert isinstance(last, ast.Assign) and last.target == "x"
    assert rep.span.line == 10


def test_final_block():
    spec = parse_text(REPEAT)
    assert [type(s).__name__ for s in spec.final] == ["Local", "Assign"]
    assert [s.target for s in spec.final] == ["out", "out"]
    assert spec.outputs[0][0] == "out"
    lcod = parse_text(SHIPPED["lcod"].read_text())
    assert [s.target for s in lcod.final] == ["x"]


def test_multiple_names_in_state_and_dims():
    spec = parse_text(SHIPPED["fista"].read_text())
    states = [d.name for d in spec.decls if d.kind == "state"]
    assert states == ["x", "v", "t"]


# --------------------------------------------------------------------------- precedence
@pytest.mark.parametrize(
    "expr, expected",
    [
        ("-x^2", "(- (^ x 2))"),  # power binds tighter than unary minus
        ("(-x)^2", "(^ (- x) 2)"),
        ("x^-2", "(^ x (- 2))"),
        ("2^3^2", "(^ 2 (^ 3 2))"),  # right associative
        ("x**2", "(^ x 2)"),
        ("a @ b * c", "(* (@ a b) c)"),  # @ and * share a level, left associative
        ("a * b @ c", "(@ (* a b) c)"),
        ("A.T @ x", "(@ (.T A) x)"),  # postfix binds tightest
        ("A.H @ x", "(@ (.H A) x)"),
        ("A.T.T", "(.T (.T A))"),
        ("a - b - c", "(- (- a b) c)"),
        ("a / b / c", "(/ (/ a b) c)"),
        ("a + b * c", "(+ a (* b c))"),
        ("-a * b", "(* (- a) b)"),
        ("a - -b", "(- a (- b))"),
        ("a + 1 < b", "(< (+ a 1) b)"),
        ("f(a)[0].T", "(.T ([] (call f a) 0))"),
        ("soft(x, t)^2", "(^ (call soft x t) 2)"),
        ("A.T @ (A @ x - y) / L", "(/ (@ (.T A) (- (@ A x) y)) L)"),
    ],
)
def test_operator_precedence(expr, expected):
    assert sexp(let_value(expr)) == expected


@pytest.mark.parametrize(
    "text, value, kind",
    [
        ("3", 3, int),
        ("0.5", 0.5, float),
        (".5", 0.5, float),
        ("3.", 3.0, float),
        ("1e-3", 1e-3, float),
        ("2E+2", 200.0, float),
        ("007", 7, int),
    ],
)
def test_number_literals(text, value, kind):
    node = let_value(text)
    assert isinstance(node, ast.Number)
    assert node.value == value and type(node.value) is kind and node.text == text


def test_keyword_arguments_and_annotation_calls_parse():
    spec = parse_text("spec a\nparam w : real = 1 learned range(0, 2)\nlet q = f(a, b=2)\n")
    w, q = spec.decls
    assert [a.name for a in w.annotations] == ["learned", "range"]
    assert [sexp(x) for x in w.annotations[1].args] == ["0", "2"]
    assert [k.name for k in q.value.kwargs] == ["b"]


def test_dimension_arithmetic_in_types():
    spec = parse_text("spec a\ndims n, C\ndata D : real[2*C + 1, n, 3]\n")
    data = spec.decls[-1]
    assert [str(d) for d in data.type.dims] == ["2*C + 1", "n", "3"]


def test_operator_type():
    spec = parse_text("spec a\ndims n, k\ndata K : operator[k <- n]\n")
    t = spec.decls[-1].type
    assert t.base == "operator"
    assert [str(d) for d in t.dims] == ["n"] and [str(d) for d in t.out_dims] == ["k"]


# --------------------------------------------------------------------------- syntax errors
# Only the location and the error format are checked here: the wording of the messages
# is pinned by the golden files of tests/test_diagnostics.py.
HEAD = 'spec a "t"\ndims n\ninput y : real[n]\nstate x : real[n] = 0\nlayers 2\n'


@pytest.mark.parametrize(
    "text, line, col",
    [
        (HEAD + "step:\n    x = x + * y\noutput x\n", 7, 13),  # the unexpected token
        (HEAD + "step:\n    x = 'y'\noutput x\n", 7, 9),  # single quotes
        (HEAD + "step:\n    x = {y}\noutput x\n", 7, 9),  # braces
        (HEAD + "x = y\noutput x\n", 6, 1),  # assignment outside a block
        (HEAD + "step\n    x = y\noutput x\n", 6, 5),  # missing colon: end of line
        (HEAD + "step:\n\tx = y\noutput x\n", 7, 1),  # tab
        (HEAD + "step:\n    x = y\nspec b\n", 8, 6),  # second spec line
        (HEAD + "layers 3\nstep:\n    x = y\noutput x\n", 6, 1),  # layers twice
        (HEAD + "step:\n    x = y z\noutput x\n", 7, 11),  # two expressions in a row
        (HEAD + "step:\n    x = y\noutput x\noutput y\n", 9, 1),  # output twice
        ('spec a "unterminated\n', 1, 8),  # string not closed
        (HEAD + "step:\n    repeat 3:\n    x = y\noutput x\n", 8, 5),  # empty repeat block
    ],
)
def test_syntax_errors_are_located(text, line, col):
    with pytest.raises(CompileError) as info:
        parse_text(text, "bad.unroll")
    err = info.value
    diag = err.diagnostics[0]
    assert diag.span is not None
    assert (diag.span.line, diag.span.column) == (line, col), err.report()
    assert err.report().startswith(f"bad.unroll:{line}:{col}: error: ")


def test_unclosed_bracket_is_reported_on_its_line():
    with pytest.raises(CompileError) as info:
        parse_text(HEAD + "step:\n    x = soft(y,\n", "bad.unroll")
    diag = info.value.diagnostics[0]
    # either the bracket that is never closed (7:13) or the end of the text after it (7:16)
    assert diag.span.line == 7 and diag.span.column in (13, 16), info.value.report()


def test_syntax_error_excerpt_has_a_caret_under_the_column():
    with pytest.raises(CompileError) as info:
        parse_text(HEAD + "step:\n    x = x + * y\noutput x\n", "bad.unroll")
    lines = info.value.report().split("\n")
    assert lines[1].endswith("|     x = x + * y")
    caret_line = lines[2]
    assert caret_line.index("^") - caret_line.index("|") - 2 == 12  # column 13, 1-based


def test_stray_indentation_is_reported_on_its_own_line():
    with pytest.raises(CompileError) as info:
        parse_text("spec a\n  let q = 1\n", "bad.unroll")
    diag = info.value.diagnostics[0]
    assert diag.span.line == 2, info.value.report()
    assert "unexpected unexpected" not in diag.message


def test_inconsistent_dedent_is_a_compile_error():
    with pytest.raises(CompileError) as info:
        parse_text(HEAD + "step:\n    x = x + y\n  x = x\noutput x\n", "bad.unroll")
    assert info.value.diagnostics[0].span.line == 8


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "spec a"])
def test_degenerate_files_parse_or_fail_cleanly(text):
    try:
        spec = parse_text(text)
    except CompileError as err:
        assert err.diagnostics
    else:
        assert isinstance(spec, ast.Spec)
