"""Catalog coverage (issue 9): the shipped specs are exactly the ids of the algorithm catalog's index.

The index is `dsl_specs/catalog_ids.md`, a verbatim copy of ALGORITHMS.md §4 (the research notes are
not in the repository; where they are found beside it, the copy is checked against them). Expected specs:
the index's ids, minus `NOT_SPECS` (test references, not iterations), plus `EXTRAS` (compiler/catalog.py).

NOT_YET_SHIPPED lists the ids whose specs other branches of issue 9 bring: each is an xfail with
strict=True, so a spec that lands makes its case fail loudly until its id is removed from the list. The
lead empties the list when the last of them is merged.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from unroll.compiler import catalog
from unroll.compiler.cli import main
from unroll.compiler.driver import shipped_specs

NOT_YET_SHIPPED = [
    # every catalog id ships (issue 9); a new id of the catalog goes here until its spec lands
]

SHIPPED = shipped_specs()
EXPECTED = catalog.expected_specs()
README = Path(__file__).resolve().parent.parent / "README.md"


def _cases():
    for name in sorted(EXPECTED):
        marks = [pytest.mark.xfail(strict=True, reason=f"`{name}` is brought by another branch of issue 9; "
                                   "remove it from NOT_YET_SHIPPED when it lands")] if name in NOT_YET_SHIPPED else []
        yield pytest.param(name, marks=marks, id=name)


@pytest.mark.parametrize("name", _cases())
def test_catalog_id_ships_as_a_spec(name):
    assert name in SHIPPED, f"no dsl_specs/{name}.unroll"


def test_the_shipped_specs_are_the_catalog_ids():
    assert set(NOT_YET_SHIPPED) <= set(EXPECTED), sorted(set(NOT_YET_SHIPPED) - set(EXPECTED))
    assert len(set(NOT_YET_SHIPPED)) == len(NOT_YET_SHIPPED)
    outside = sorted(set(SHIPPED) - set(EXPECTED))
    assert not outside, (f"shipped specs that are not catalog ids: {outside}; add them to the catalog or to "
                         "EXTRAS in compiler/catalog.py with the reason they ship")
    landed = sorted(set(NOT_YET_SHIPPED) & set(SHIPPED))
    assert not landed, f"these specs have landed: remove them from NOT_YET_SHIPPED: {landed}"
    assert set(SHIPPED) == set(EXPECTED) - set(NOT_YET_SHIPPED)


def test_the_index_copy_is_the_catalog_table():
    entries = catalog.catalog_index()
    ids = [e.id for e in entries]
    assert len(ids) == 80 and len(set(ids)) == 80  # "the 80 ids of §4" (ALGORITHMS.md §6, §8)
    assert {e.family for e in entries} == set(catalog.FAMILIES)
    assert set(catalog.NOT_SPECS) <= set(ids) and not set(catalog.EXTRAS) & set(ids)
    by_id = {e.id: e for e in entries}
    assert by_id["ista"].family == "A" and by_id["rnn_elman"].family == "J" and by_id["hungarian"].family == "K"
    assert by_id["generic_unroll"].where == "Fig.4" and by_id["lista"].ref == "[13]"


def _shared_catalog() -> Path | None:
    """ALGORITHMS.md of the research notes, when a `shared/` folder sits beside an ancestor of the repo."""
    for folder in Path(__file__).resolve().parents:
        candidate = folder / "shared" / "ALGORITHMS.md"
        if candidate.is_file():
            return candidate
    return None


def test_the_index_copy_matches_the_research_notes_where_they_exist():
    source = _shared_catalog()
    if source is None:
        pytest.skip("the research notes (shared/ALGORITHMS.md) are not beside this checkout (a clean clone)")
    text = source.read_text(encoding="utf-8")
    section = text[text.index("## 4. Index of ids"):text.index("## 5. Catalog")]
    assert catalog.catalog_index(section) == catalog.catalog_index()


def test_a_malformed_index_row_is_an_error_naming_it():
    with pytest.raises(ValueError, match="expected 6"):
        catalog.catalog_index("| ista | ISTA | [29] | A |\n")
    with pytest.raises(ValueError, match="unknown family 'Z'"):
        catalog.catalog_index("| ista | ISTA | [29] | Z | Fig.3 | P |\n")


def test_unrollc_list_shows_each_specs_family(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().split("\n")
    assert [ln.split()[0] for ln in lines] == sorted(SHIPPED)
    for line in lines:
        name, family = line.split()[:2]
        assert family == EXPECTED[name], line
    assert any(re.match(r"^rnn_elman\s+J\s+Elman RNN", ln) for ln in lines)


def _readme_families() -> dict[str, str]:
    """id -> the family heading (### X. ...) of the README's spec table it is a row under."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Shipped specs"):]
    section = section[:section.index("\n## ", 1)]
    rows, family = {}, None
    for line in section.splitlines():
        heading = re.match(r"^### ([A-K])\. ", line)
        if heading:
            family = heading.group(1)
        row = re.match(r"^\| `([a-z0-9_]+)` \|", line)
        if row:
            assert family is not None and row.group(1) not in rows, line
            rows[row.group(1)] = family
    return rows


def test_readme_lists_every_catalog_id_under_its_family():
    rows = _readme_families()
    assert rows == EXPECTED, (sorted(set(EXPECTED) - set(rows)), sorted(set(rows) - set(EXPECTED)),
                              sorted(k for k in rows if k in EXPECTED and rows[k] != EXPECTED[k]))
    text = README.read_text(encoding="utf-8")
    headings = re.findall(r"^### ([A-K])\. ", text[text.index("## Shipped specs"):], re.MULTILINE)
    assert headings == sorted(catalog.FAMILIES)
