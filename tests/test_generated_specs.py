"""Generated specs: a spec the checker accepts gives a module that imports, constructs, runs forward
and backward, and computes what the spec says.

* `statement_program(seed)` (tests/specgen.py) generates statement-level variety: states with
  initial values, shared and per-layer learned parameters with constraints, nested `repeat`
  blocks, step `let`s (loop-invariant, per layer, reassigned), `prev`, `final:` blocks, top-level
  lets, several outputs, real and complex values, `solve`, sub-networks and user operators.  Each
  spec is compiled (public API), built on random float64 data of the declared shapes, run on a
  batch of 3 and on one unbatched sample, compared with the program's own numpy interpretation
  (tests/specgen_program.py), and run backward (sum of the outputs' real parts).  Any exception
  is a failure, reported with the spec text and a shrunk spec.
* Known compiler bugs: the generators never produce the constructs listed in
  `specgen.KNOWN_BUG_CONSTRUCTS`, so that these tests pass on main.  Each construct has a minimal
  spec in tests/regression_specs.py, run here as `test_known_bug_regression[NAME]`, a strict xfail
  while NAME is in the list.  When a fix lands, that test XPASSes, which strict mode reports as a
  failure: delete NAME from KNOWN_BUG_CONSTRUCTS, and the regression test and the random
  generators then cover the construct for good.  tests/fuzz_known_bugs.md describes each bug.

benchmarks/fuzz.py runs the same generators for any number of cases.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from regression_specs import REGRESSIONS
from specgen import KNOWN_BUG_CONSTRUCTS, statement_program
from specgen_check import build_class, check, shrink

STATEMENT_SEEDS = range(500)
CHUNK = 50
FORMS = ("repeat", "final:", "prev(", "history_sum(", "grad(", " per_layer", " positive", "let ", "net ", "operator[",
         "complex[", "solve(")


def _failure_report(failures) -> str:
    """The first failure shrunk (and as generated), then one line per other failure."""
    seed, prog, outcome = failures[0]
    small = shrink(prog, seed, outcome, budget=100)
    lines = [f"{len(failures)} generated spec(s) failed.",
             f"--- seed {seed}: {outcome.stage}: {outcome.message[:500]}", "--- shrunk:", small.render(),
             "--- as generated:", prog.render()]
    lines += [f"--- seed {s}: {o.stage}: {o.message[:200]}" for s, _, o in failures[1:]]
    return "\n".join(lines)


@pytest.mark.parametrize("start", range(STATEMENT_SEEDS.start, STATEMENT_SEEDS.stop, CHUNK))
def test_generated_statement_specs_run_and_match_numpy(start, one_torch_thread):
    failures, compared = [], 0
    for seed in range(start, start + CHUNK):
        prog = statement_program(seed)
        outcome = check(prog, seed, minimal=seed % 2 == 0)
        compared += outcome.compared
        if not outcome.ok:
            failures.append((seed, prog, outcome))
    assert not failures, _failure_report(failures)
    assert compared >= 3 * CHUNK  # values were compared, not only run


def test_statement_generator_covers_the_statement_forms():
    """The generated programs contain every statement form this file is meant to exercise."""
    seen = set()
    for seed in STATEMENT_SEEDS:
        prog = statement_program(seed)
        text = prog.render()
        seen |= {form for form in FORMS if form in text}
        seen |= {"reassigned let" for s in prog.step if s.kind == "assign" and s.target in prog.pool.local_types}
        seen |= {"nested repeat" for s in prog.step if s.kind == "repeat" and any(b.kind == "repeat" for b in s.body)}
    assert seen == set(FORMS) | {"reassigned let", "nested repeat"}


def test_generator_is_deterministic():
    assert statement_program(11).render() == statement_program(11).render()
    assert statement_program(11).render() != statement_program(12).render()


# --------------------------------------------------------------------------- known bugs (strict xfail)
def run_regression(name: str) -> None:
    reg = REGRESSIONS[name]
    cls = build_class(reg.spec, name)
    options = {k: getattr(torch, v) if k == "dtype" else v for k, v in reg.options.items()}
    net = cls(**reg.data, **options)
    inputs = {k: torch.tensor(v).requires_grad_() for k, v in reg.inputs.items()}
    outs = net(**inputs)
    outs = outs if isinstance(outs, tuple) else (outs,)
    expected = reg.expected(reg.data, reg.inputs)
    assert len(outs) == len(expected)
    for got, want in zip(outs, expected):
        want = np.asarray(want)
        assert torch.is_tensor(got), f"output is a {type(got).__name__}, not a tensor"
        assert tuple(got.shape) == want.shape, f"output shape {list(got.shape)}, expected {list(want.shape)}"
        dtype = torch.complex128 if np.iscomplexobj(want) else torch.float64
        assert got.dtype == dtype, f"output dtype {got.dtype}, expected {dtype}"
        np.testing.assert_allclose(got.detach().resolve_conj().numpy(), want, rtol=1e-10, atol=1e-12)
    loss = sum(o.real.sum() for o in outs if o.requires_grad)
    if torch.is_tensor(loss):
        loss.backward()


def test_every_known_bug_construct_has_a_regression_spec():
    assert set(KNOWN_BUG_CONSTRUCTS) <= set(REGRESSIONS)


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=f"known compiler bug `{name}` "
                                                "(tests/fuzz_known_bugs.md); fixed? remove it from "
                                                "specgen.KNOWN_BUG_CONSTRUCTS"))
    if name in KNOWN_BUG_CONSTRUCTS else name
    for name in REGRESSIONS])
def test_known_bug_regression(name, one_torch_thread):
    run_regression(name)
