"""docs/language.md is checked: every complete spec in it compiles (or, marked
`<!-- expect-error -->`, fails with the diagnostic printed after it), every operator of the
registry is documented, and every example of the operator tables has the result type the table
states."""

import re
from pathlib import Path

import pytest
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import check_source, compile_source
from unroll.compiler.operators import INTERNAL_OPERATORS, OPERATORS, SPECIAL_FORMS

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")


def _blocks():
    out = []
    for match in re.finditer(r"(<!-- expect-error -->\n)?```unroll\n(.*?)```", TEXT, re.S):
        line = TEXT[:match.start(2)].count("\n") + 1
        after = TEXT[match.end():match.end() + 600]
        expected = re.match(r"\s*```text\n[^\n]*?:\d+:\d+: error: ([^\n]*)", after)
        out.append(pytest.param(match.group(2), bool(match.group(1)), expected and expected.group(1),
                                id=f"line{line}"))
    return out


BLOCKS = [b for b in _blocks() if re.search(r"^spec ", b.values[0], re.M)]


def test_the_manual_has_examples():
    assert len(BLOCKS) >= 25


@pytest.mark.parametrize("source,expect_error,message", BLOCKS)
def test_every_spec_in_the_manual_compiles_or_fails_as_shown(source, expect_error, message):
    if not expect_error:
        compile_source(source, "docs.unroll")
        return
    with pytest.raises(CompileError) as err:
        compile_source(source, "docs.unroll")
    if message:
        assert message in str(err.value)


def test_every_operator_is_documented():
    names = [n for n in OPERATORS if n not in INTERNAL_OPERATORS] + list(SPECIAL_FORMS)
    missing = [n for n in names if f"`{n}(" not in TEXT]
    assert not missing, f"operators missing from docs/language.md: {missing}"


ENV = """spec examples "the environment of the operator tables"
dims n, m, h, w, C, T, F, N
data A : real[n, m]
data Ac : complex[n, m]
data B : real[m, m]
data d : real[C, 3, 3]
data W : real[C, 9]
hyper lam = 0.1
hyper p = 0.5
hyper k : int = 3
input y : real[n]
input img : real[h, w]
input fine : real[2*h, 2*w]
input sig : real[T]
input S : complex[F, N]
param beta : real[num_layers] = onehot(layer, num_layers)  learned per_layer
state x : real[m] = 0
state z : complex[m] = 0
layers 2
step:
    let e = {}
    x = x
output x
"""


def _table_examples():
    start, end = TEXT.index("<!-- BEGIN GENERATED OPERATOR TABLES -->"), TEXT.index("<!-- END GENERATED OPERATOR TABLES -->")
    rows = []
    for line in TEXT[start:end].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) < 6 or cells[0] in ("operator", "syntax", "form") or set(cells[0]) <= {"-"}:
            continue
        example, result = cells[-2], cells[-1]
        if example.startswith("`") and result.startswith("`"):
            rows.append(pytest.param(example.strip("`"), result.strip("`"), id=cells[0].strip("`")[:30]))
    return rows


EXAMPLES = _table_examples()


def test_the_tables_have_examples():
    assert len(EXAMPLES) >= 70


@pytest.mark.parametrize("example,result", EXAMPLES)
def test_operator_table_examples_have_the_stated_type(example, result):
    program = check_source(ENV.format(example), "examples.unroll")
    assert str(program.step[0].value.type) == result
