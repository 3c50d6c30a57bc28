"""Golden tests of the compiler's diagnostics: every mistake in a spec or in the
options gives `path:line:col: error: message`, the source line, a caret under the
offending span, a hint where one helps, exit status 1, and no Python traceback.

Layout
    tests/golden/NN_short_name.unroll     one small spec with exactly one mistake
    tests/golden/NN_short_name.expected   the exact stderr of `unrollc check` on it
    tests/golden/options/NAME.expected    the exact stderr of a command line in OPTION_CASES

The specs are checked as `tests/golden/NN_short_name.unroll`, relative to the
repository root (the test chdirs there), so the paths in the messages are stable.

Updating the expected files
    UPDATE_GOLDEN=1 python -m pytest tests/test_diagnostics.py
rewrites every .expected file from the compiler's current output (and still
fails a case that exits 0 or prints a traceback).  Review the diff before
committing it: each message must say what is wrong in the user's terms, the
caret must sit under the offending token, and the hint must say how to fix it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from unroll.compiler import cli

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

SPEC_CASES = sorted(p.stem for p in GOLDEN.glob("*.unroll"))

# Mistakes in the command line: (case name, argv).  Expected stderr: tests/golden/options/<name>.expected.
OPTION_CASES = [
    ("01_learn_unknown_name", ["check", "dsl_specs/lista.unroll", "--learn", "thta"]),
    ("02_tie_unknown_name", ["check", "dsl_specs/lista.unroll", "--tie", "foo"]),
    ("03_layers_zero", ["check", "dsl_specs/lista.unroll", "--layers", "0"]),
    ("04_layers_negative", ["check", "dsl_specs/lista.unroll", "--layers", "-3"]),
    ("05_learn_and_freeze", ["check", "dsl_specs/lista.unroll", "--learn", "theta", "--freeze", "theta"]),
    ("06_tie_and_untie", ["check", "dsl_specs/lista.unroll", "--tie", "We", "--untie", "We"]),
    ("07_learn_a_hyperparameter", ["check", "dsl_specs/lista.unroll", "--learn", "lam"]),
    ("08_freeze_list_with_typo", ["check", "dsl_specs/lista.unroll", "--freeze", "We,Wtt"]),
    ("09_class_name_invalid", ["compile", "dsl_specs/lista.unroll", "--class-name", "9x", "-o", "-"]),
    ("10_tie_layer_dependent_default", ["check", "dsl_specs/lista_cpss.unroll", "--tie", "p_l"]),
    ("11_unknown_spec_name", ["check", "lsta"]),
    ("12_missing_spec_file", ["check", "tests/golden/no_such_spec.unroll"]),
]


def _run_main(argv, capsys) -> tuple[int, str]:
    code = cli.main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def _compare(expected_path: Path, code: int, stderr: str, argv) -> None:
    assert code == 1, f"`unrollc {' '.join(argv)}` exited {code}, expected 1; stderr:\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert stderr.strip(), "no diagnostic printed"
    first = stderr.split("\n", 1)[0]
    assert ": error: " in first, f"first line is not `path:line:col: error: message`: {first!r}"
    if UPDATE:
        expected_path.parent.mkdir(parents=True, exist_ok=True)
        expected_path.write_text(stderr)
        return
    assert expected_path.exists(), f"{expected_path} is missing; run with UPDATE_GOLDEN=1 to create it"
    assert stderr == expected_path.read_text(), (
        f"stderr of `unrollc {' '.join(argv)}` differs from {expected_path.relative_to(ROOT)} "
        "(UPDATE_GOLDEN=1 rewrites it)")


def test_there_are_enough_golden_cases():
    assert len(SPEC_CASES) >= 30
    assert len({name.split("_", 1)[1] for name in SPEC_CASES}) == len(SPEC_CASES), "duplicate case names"
    stray = {p.stem for p in GOLDEN.glob("*.expected")} - set(SPEC_CASES)
    assert not stray, f".expected files without a spec: {sorted(stray)}"


@pytest.mark.parametrize("name", SPEC_CASES)
def test_spec_mistake(name, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    rel = f"tests/golden/{name}.unroll"
    code, stderr = _run_main(["check", rel], capsys)
    _compare(GOLDEN / f"{name}.expected", code, stderr, ["check", rel])
    # the location is in the golden file itself and the caret line follows the source line
    lines = stderr.split("\n")
    assert lines[0].startswith(f"{rel}:"), lines[0]
    assert lines[1].lstrip().split(" | ")[0].isdigit() and "^" in lines[2], stderr


@pytest.mark.parametrize("name, argv", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_option_mistake(name, argv, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    code, stderr = _run_main(argv, capsys)
    _compare(GOLDEN / "options" / f"{name}.expected", code, stderr, argv)


def test_caret_sits_under_the_offending_token(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    _, stderr = _run_main(["check", "tests/golden/03_unknown_name.unroll"], capsys)
    head, source, caret = stderr.split("\n")[:3]
    _line, col = (int(v) for v in head.split(":")[1:3])
    text = source.split(" | ", 1)[1]
    marks = caret.split(" | ", 1)[1]
    start = marks.index("^")
    assert start == col - 1
    assert text[start: start + marks.count("^")] == "thta"
    assert "hint: did you mean `theta`?" in stderr


@pytest.mark.parametrize("argv", [
    ["check", "tests/golden/03_unknown_name.unroll"],
    ["check", "tests/golden/48_inconsistent_dedent.unroll"],
    ["compile", "dsl_specs/lista.unroll", "--learn", "thta", "-o", "-"],
])
def test_unrollc_process_exits_1_without_traceback(argv):
    """The installed entry point, in a fresh process: exit status 1, a diagnostic, no traceback."""
    proc = subprocess.run([sys.executable, "-m", "unroll.compiler.cli", *argv], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    if argv[1].startswith("tests/golden/"):
        expected = (GOLDEN / (Path(argv[1]).stem + ".expected")).read_text()
        assert proc.stderr == expected
    else:
        assert proc.stderr.startswith("<options>:1:9: error: --learn: `thta` is not a parameter")


def test_valid_specs_still_check(monkeypatch, capsys):
    """The diagnostics work must not reject a valid spec."""
    monkeypatch.chdir(ROOT)
    for path in sorted((ROOT / "dsl_specs").glob("*.unroll")):
        code, stderr = _run_main(["check", str(path.relative_to(ROOT))], capsys)
        assert code == 0, stderr


def test_reserved_names_cover_the_generated_module_attributes():
    """A spec name becomes `self.<name>` on the generated module: every public attribute of
    runtime.UnrolledModule (and so of torch.nn.Module) must be in the checker's reserved list."""
    from unroll.compiler.check import MODULE_ATTRIBUTES
    from unroll.runtime import UnrolledModule

    public = {n for n in dir(UnrolledModule) if not n.startswith("_")} | {"training"}
    missing = public - MODULE_ATTRIBUTES
    assert not missing, f"add these to check.names.MODULE_ATTRIBUTES: {sorted(missing)}"
