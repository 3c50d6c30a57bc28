"""The mutation fuzzer in CI (tests/fuzz_mutate.py; `python benchmarks/fuzz.py --kind mutations --cases N` runs
as many as asked): the hostile corpus and a block of mutants of the shipped specs and of the manual's
examples keep the rule -- a module or a located diagnostic, and an accepted spec builds and runs on random
data or refuses with an error naming the argument; never another exception or a hang.  The findings listed as
open in tests/fuzz_known_bugs.md (fuzz_mutate.KNOWN_OPEN) are not failures here."""

from __future__ import annotations

import collections
import warnings

import fuzz_mutate
import pytest
from fuzz_mutate import HOSTILE, Outcome, corpus_case, known_open, mutant, run_case, seeds

MUTANTS = 2000


def _report(findings) -> str:
    groups = collections.defaultdict(list)
    for label, text, outcome in findings:
        groups[outcome.signature].append((label, text, outcome))
    lines = [f"{len(findings)} finding(s) in {len(groups)} group(s)"]
    for signature, cases in groups.items():
        label, text, outcome = cases[0]
        lines += [f"=== {len(cases)} x {signature}", f"--- {label}:", text[:2000], "--- " + outcome.message[:500]]
    return "\n".join(lines)


def test_hostile_corpus(one_torch_thread):
    findings = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, text in HOSTILE.items():
            outcome = run_case(text, timeout=20)
            if outcome.finding:
                findings.append((name, text, outcome))
    assert not findings, _report(findings)


def test_mutants_of_shipped_specs_and_manual_examples(one_torch_thread):
    findings, stages = [], collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in range(MUTANTS):
            label, text = mutant(seed)
            outcome = run_case(text, seed)
            stages[outcome.stage] += 1
            if outcome.finding and not known_open(outcome):  # known open: tests/fuzz_known_bugs.md
                findings.append((label, text, outcome))
    assert not findings, _report(findings)
    assert stages["ok"] + stages["refused"] >= MUTANTS // 100, stages  # some mutants reach the module


def test_corpus_and_mutants_are_deterministic_and_cover_both_seed_sources():
    assert corpus_case(len(HOSTILE) + 5) == mutant(5) == mutant(5)
    assert mutant(5) != mutant(6)
    names = [name for name, _ in seeds()]
    assert any(n.startswith("language.md#") for n in names) and "lista" in names


def test_the_harness_reports_what_the_rule_forbids(monkeypatch):
    """The fuzzer can fail: a compiler exception, a hang, an unlocated diagnostic and a raw runtime error are
    findings; a located diagnostic and an error naming the argument are not."""
    assert run_case("spec s\nlayers 2^2^40\n").stage == "rejected"

    def crash(*_args, **_kw):
        raise KeyError("boom")

    with monkeypatch.context() as m:
        m.setattr(fuzz_mutate, "check_source", crash)
        assert run_case(HOSTILE["division_by_zero"]).stage == "crash"

    def hang(*_args, **_kw):
        while True:
            pass

    with monkeypatch.context() as m:
        m.setattr(fuzz_mutate, "check_source", hang)
        assert run_case(HOSTILE["division_by_zero"], timeout=1).stage == "hang"
    assert Outcome("unlocated").finding and Outcome("forward").finding and not Outcome("refused").finding
    # a module whose forward raises a raw torch error is a finding; one that refuses bad data by name is not
    import unroll.runtime as rt

    text = HOSTILE["division_by_zero"].replace("x + y * (1/0)", "soft(x + y, lam)")
    assert run_case(text).stage == "ok"
    with monkeypatch.context() as m:
        m.setattr(rt, "soft", lambda *a: (_ for _ in ()).throw(RuntimeError("expected scalar type Double")))
        assert run_case(text).stage == "forward"
    with monkeypatch.context() as m:
        m.setattr(fuzz_mutate, "SIZES", (0,))  # empty axes: refused by the module, naming the input
        assert run_case(text).stage == "refused"


@pytest.mark.parametrize("name", ["mask_soft", "index_layer_past", "reserved_typeerror"])
def test_hostile_cases_are_located_diagnostics(name):
    outcome = run_case(HOSTILE[name])
    assert outcome.stage == "rejected", outcome
    assert outcome.message.startswith("fuzz.unroll:")


def test_parallel_workers_give_the_serial_report():
    """`benchmarks/fuzz.py --workers 2` runs the same cases as one process and prints the same report (times aside)."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "fuzz.py"
    reports = []
    for workers in ("1", "2"):
        run = subprocess.run([sys.executable, str(script), "--cases", "6", "--seed", "70", "--kind", "all", "--no-shrink",
                              "--workers", workers], capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, run.stdout + run.stderr
        lines = run.stdout.splitlines()
        reports.append([lines[0].split(" in ")[0]] + lines[1:])  # the first line without its times
    assert reports[0] == reports[1]
    assert reports[0][0] == "6 cases (expressions, statements, mutations; seeds 70..75)"
