"""Differential test of the emitter: random expressions, compiled and run, against numpy.

`expression_program(seed)` (tests/specgen.py) puts about a dozen random well-typed expressions
over the operator registry into one small spec (as top-level `let`s and as step assignments to
output states, some through a step `let`): scalars, vectors, matrices and stacks with the
symbolic dims n, m, k (sizes 4, 5, 2), real and complex values, batched (inputs) or not (data,
parameters, states initialised from data), nested `@`, `.T`, `.H`, unary minus, `^` powers,
divisions, indexing (by literals, `int` hyperparameters and `layer`), reductions, thresholds,
comparisons inside `where`, FFTs, convolutions, patches, resampling, `solve`, user operators
given as matrices, zero-initialised sub-networks, and so on.  Each spec is compiled through the
public API (`compile_source`), built on random float64 data of the declared shapes, run on a
batch of 3 and on one unbatched sample, and every output is compared (shape, dtype, values to
1e-8 relative) with the numpy evaluation of the same expression trees: numpy's own semantics for
the syntax (`+ - * / ^ @ .T .H [i]`) and the registry's `reference` functions (one unbatched
sample) for the named operators.  Values that depend on rounding (a sign at 0, a comparison of
nearly equal values, ...) are not compared; the test checks that almost all are.

Known compiler bugs: the generator never produces the constructs listed in
`specgen.KNOWN_BUG_CONSTRUCTS` (so that this test passes on main); each has a minimal spec run as a
strict xfail in tests/test_generated_specs.py.  Once a bug is fixed, delete its name from that list
and this test covers the construct.  benchmarks/fuzz.py runs the same generator without limit.
"""

from __future__ import annotations

import pytest
from specgen import expression_program
from specgen_check import check, shrink
from specgen_program import Program
from unroll.compiler.operators import OPERATORS

EXPRESSION_SEEDS = range(250)
CHUNK = 25
SYNTAX_FORMS = {"add", "sub", "mul", "div", "pow", "neg", "matmul", "T", "H", "index", "lt", "gt", "le", "ge",
                "eq", "ne", "apply", "netcall"}


def _report(failures) -> str:
    """The first failure shrunk (and as generated), then one line per other failure."""
    seed, prog, outcome = failures[0]
    small = shrink(prog, seed, outcome, budget=100)
    lines = [f"{len(failures)} generated spec(s) disagree with numpy.",
             f"--- seed {seed}: {outcome.stage}: {outcome.message[:500]}", "--- shrunk:", small.render(),
             "--- as generated:", prog.render()]
    lines += [f"--- seed {s}: {o.stage}: {o.message[:200]}" for s, _, o in failures[1:]]
    return "\n".join(lines)


@pytest.mark.parametrize("start", range(EXPRESSION_SEEDS.start, EXPRESSION_SEEDS.stop, CHUNK))
def test_generated_expressions_match_numpy(start, one_torch_thread):
    failures, compared, skipped = [], 0, 0
    for seed in range(start, start + CHUNK):
        prog = expression_program(seed)
        # minimal parentheses for even seeds, every compound operand parenthesised for odd ones
        outcome = check(prog, seed, backward=False, minimal=seed % 2 == 0)
        compared, skipped = compared + outcome.compared, skipped + outcome.skipped
        if not outcome.ok:
            failures.append((seed, prog, outcome))
    assert not failures, _report(failures)
    assert compared >= 0.9 * (compared + skipped) and compared > 20 * CHUNK


def _operators(progs: list[Program]) -> set[str]:
    return {x.op for prog in progs for e in prog.all_exprs() for x in e.walk()}


def test_generator_covers_the_registry_and_the_syntax():
    """Every registry operator and every syntactic form appears in the generated specs; a new
    operator needs a production in tests/specgen_ops.py."""
    from specgen import statement_program

    progs = [expression_program(s) for s in EXPRESSION_SEEDS] + [statement_program(s) for s in range(500)]
    seen = _operators(progs)
    assert set(OPERATORS) - seen == set()
    assert SYNTAX_FORMS - seen == set()
    assert {"layer", "prev", "eye", "zeros", "ones"} <= seen


def test_both_renderings_of_a_spec_agree_with_numpy(one_torch_thread):
    """Minimal parentheses (the language's precedence at work) and fully parenthesised operands
    parse to the same program: both match numpy."""
    differing = 0
    for seed in range(10):
        prog = expression_program(seed)
        differing += prog.render(minimal=True) != prog.render(minimal=False)
        for minimal in (True, False):
            outcome = check(prog, seed, backward=False, minimal=minimal)
            assert outcome.ok, f"{outcome.stage}: {outcome.message}\n{prog.render(minimal)}"
    assert differing >= 7  # most seeds: 7 of 10 since where/reshape/istft constructs are generated again


def test_generator_is_deterministic():
    assert expression_program(5).render() == expression_program(5).render()
    assert expression_program(5).render() != expression_program(6).render()
