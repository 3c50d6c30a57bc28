"""docs/language.md is checked: every complete spec in it compiles (or, marked
`<!-- expect-error -->`, fails with the diagnostic printed after it), the operator tables are
exactly what compiler/opdocs.py generates from the registry, every operator of the registry is
documented, and every example of the operator tables has the result type the table states."""

import re
from pathlib import Path

import pytest
from unroll.compiler import opdocs
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import check_source, compile_source
from unroll.compiler.operators import INTERNAL_OPERATORS, OPERATORS, SPECIAL_FORMS

DOC = Path(__file__).resolve().parents[1] / "docs" / "language.md"
TEXT = DOC.read_text(encoding="utf-8")


def _blocks():
    out = []
    for match in re.finditer(r"(<!-- expect-error -->\n)?```unroll\n(.*?)```", TEXT, re.DOTALL):
        line = TEXT[:match.start(2)].count("\n") + 1
        after = TEXT[match.end():match.end() + 600]
        expected = re.match(r"\s*```text\n[^\n]*?:\d+:\d+: error: ([^\n]*)", after)
        out.append(pytest.param(match.group(2), bool(match.group(1)), expected and expected.group(1),
                                id=f"line{line}"))
    return out


BLOCKS = [b for b in _blocks() if re.search(r"^spec ", b.values[0], re.MULTILINE)]


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


def test_the_operator_tables_are_generated_from_the_registry():
    assert opdocs.replace_section(TEXT) == TEXT, (
        "the operator tables of docs/language.md differ from the registry: regenerate them with "
        "`python -m unroll.compiler.opdocs docs/language.md`")
    assert opdocs.main(["--check", str(DOC)]) == 0


def test_a_stale_table_is_detected_and_regenerated(tmp_path, capsys):
    stale = tmp_path / "language.md"
    stale.write_text(TEXT.replace("soft threshold sign(v)", "soft threshold of v"), encoding="utf-8")
    assert opdocs.main(["--check", str(stale)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert opdocs.main([str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == TEXT


def test_every_operator_has_a_row_of_its_own():
    start, end = TEXT.index(opdocs.BEGIN), TEXT.index(opdocs.END)
    first_cells = [line.split(" | ")[0] for line in TEXT[start:end].splitlines() if line.startswith("| `")]
    for name in [n for n in OPERATORS if n not in INTERNAL_OPERATORS] + list(SPECIAL_FORMS):
        assert sum(f"`{name}(" in cell for cell in first_cells) == 1, name


ENV = opdocs.EXAMPLE_ENV


def _table_examples():
    start, end = TEXT.index(opdocs.BEGIN), TEXT.index(opdocs.END)
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
