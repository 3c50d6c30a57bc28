"""The schedule pass (compiler/schedule.py): compile-time options applied to a checked program.

The checker checks a spec with its own annotations; `apply_schedule` then re-ties / re-trains
parameters and recomputes every node's level.  The main property: compiling with an option gives
the same program, byte for byte, as editing the spec's annotation (apart from the lines that quote
the edited spec line, the spec's hash and the `# options:` line).  Option diagnostics are pinned by
tests/golden/options/ (tests/test_diagnostics.py).
"""

from __future__ import annotations

import copy
import re

import pytest
from unroll.compiler import ir
from unroll.compiler.check import check
from unroll.compiler.diagnostics import CompileError, Source
from unroll.compiler.driver import check_source, compile_source, make_options, shipped_specs
from unroll.compiler.parser import parse
from unroll.compiler.schedule import Schedule, apply_schedule, relevel

SHIPPED = shipped_specs()

# option -> the annotation it overrides, and the annotation it amounts to
EDITS = {"tie": ("per_layer", "shared"), "untie": ("shared", "per_layer"),
         "learn": ("fixed", "learned"), "freeze": ("learned", "fixed")}


def node_levels(program: ir.Program) -> list[tuple]:
    """(where, op, name, level, per_layer) of every node of the program, in a fixed order."""
    out = []

    def visit(where, node):
        out.extend((where, n.op, n.attrs.get("name"), n.level, n.attrs.get("per_layer")) for n in node.walk())

    def block(where, statements):
        for st in statements:
            if isinstance(st, ir.Repeat):
                visit(where + ":repeat", st.count)
                block(where + ":repeat", st.body)
            else:
                visit(f"{where}:{st.target}", st.value)

    for x in program.lets:
        visit("let " + x.name, x.value)
    for x in program.params:
        visit("param " + x.name, x.init)
    for x in program.states:
        visit("state " + x.name, x.init)
    for x in program.requires:
        visit("require", x.condition)
    block("step", program.step)
    block("final", program.final)
    return out


def flags(program: ir.Program) -> dict[str, tuple[bool, bool]]:
    return {x.name: (x.per_layer, x.learned) for x in program.params + program.nets}


def edit_annotations(text: str, options: dict[str, str]) -> tuple[str, dict[str, str]]:
    """The spec text with each option written as an annotation instead, and {edited line: original}."""
    lines = text.split("\n")
    changed = {}
    for option, names in options.items():
        old, new = EDITS[option]
        for name in names.split(","):
            i = next(i for i, line in enumerate(lines) if re.match(rf"\s*(param|net)\s+{name}\b", line))
            code, hash_, comment = lines[i].partition("#")
            assert len(re.findall(rf"\b{old}\b", code)) == 1, f"line {i + 1} has no single `{old}`: {lines[i]}"
            edited = re.sub(rf"\b{old}\b", new, code) + hash_ + comment
            changed[edited.strip()] = changed.pop(lines[i].strip(), lines[i].strip())
            lines[i] = edited
    return "\n".join(lines), changed


def normalised(source: str, quoted: dict[str, str]) -> str:
    """Generated source without the lines that differ by construction: the spec's hash, the options, and
    the edited spec lines quoted in comments (put back to their original text)."""
    for edited, original in quoted.items():
        source = source.replace(edited, original)
    source = re.sub(r"(?m)^# spec sha256: .*$", "# spec sha256: -", source)
    source = re.sub(r"(?m)^    spec_sha256 = .*$", "    spec_sha256 = -", source)
    return re.sub(r"(?m)^# options: .*$", "# options: -", source)


OPTION_CASES = [
    ("lista_untied", {"tie": "We"}),
    ("lista_untied", {"tie": "We,Wt,theta"}),
    ("lista", {"untie": "Wt"}),
    ("lista", {"untie": "We,Wt,theta"}),
    ("lista", {"untie": "We", "freeze": "Wt"}),
    ("alista", {"learn": "Wa", "freeze": "gamma"}),  # (ista and fista have no parameters to freeze)
    ("lista_cpss", {"learn": "p_l"}),
    ("prox_linear_psse", {"tie": "mu,gamma"}),  # tied values inside a `repeat` block of the step
    ("ml_csc_layered", {"tie": "beta"}),
    ("dublid", {"tie": "f"}),
    ("lohit_pgd_fusion", {"tie": "P"}),  # a sub-network
    ("learned_pdhg", {"tie": "Gamma,Lambda"}),
]


@pytest.mark.parametrize("spec, options", OPTION_CASES, ids=[f"{s}-{o}" for s, o in OPTION_CASES])
def test_an_option_gives_the_program_of_the_edited_annotation(spec, options):
    text = SHIPPED[spec].read_text()
    edited, quoted = edit_annotations(text, options)
    path = f"dsl_specs/{spec}.unroll"
    with_option = compile_source(text, path, make_options(**options))
    with_annotation = compile_source(edited, path)
    assert with_option != compile_source(text, path), "the option changed nothing: not a test"
    assert normalised(with_option, {}) == normalised(with_annotation, quoted)
    by_option = check_source(text, path, make_options(**options))
    by_annotation = check_source(edited, path)
    assert node_levels(by_option) == node_levels(by_annotation)
    assert flags(by_option) == flags(by_annotation)


# The flow rules of levels that the shipped specs do not all exercise: a state initialised from another
# state, a reassigned temporary, names declared and assigned inside `repeat` blocks, the `final:` block,
# a user operator applied to a constant, `history_sum` with shared weights.
FLOW = """spec flow "levels of states, temporaries and repeat blocks"
dims n
data A : real[n, n]
data P : operator[n <- n]
hyper K : int = 2
input y : real[n]
let   p = P(A[0])
param W : real[n, n] = A          learned shared
param g : real = 1                learned shared
param s : real = 0.5              learned per_layer
param h : real[num_layers] = 1    learned shared
state a : real[n] = 0
state b : real[n] = a + 1
state c : real[n] = g * y
layers 3
step:
    let t = s * y
    t = A @ y
    let u = c + t
    repeat K:
        let r = s * (a - u)
        a = a + r
        t = t + W @ r
        r = r * 2
    b = b + t + history_sum(h, a) + p
final:
    let v = g * a
    v = v + c
    repeat K:
        v = v * 2
output v, b
"""


@pytest.mark.parametrize("spec", sorted(SHIPPED) + ["flow"])
def test_relevel_reproduces_the_levels_the_checker_gives(spec):
    """`relevel` follows the checker's rules: on a checked program it changes nothing."""
    text = FLOW if spec == "flow" else SHIPPED[spec].read_text()
    program = check_source(text, f"{spec}.unroll")
    again = copy.deepcopy(program)
    relevel(again)
    assert node_levels(again) == node_levels(program)


@pytest.mark.parametrize("options", [{"tie": "s"}, {"untie": "W"}, {"tie": "s", "untie": "W,h"}])
def test_options_give_the_levels_of_the_edited_annotations_in_every_block(options):
    edited, _ = edit_annotations(FLOW, options)
    by_option, by_annotation = check_source(FLOW, "flow.unroll", make_options(**options)), check_source(edited, "e")
    assert node_levels(by_option) != node_levels(check_source(FLOW, "flow.unroll")), "not a test"
    assert node_levels(by_option) == node_levels(by_annotation)
    assert flags(by_option) == flags(by_annotation)


def test_apply_schedule_returns_a_new_program_and_keeps_its_input():
    text = SHIPPED["lista"].read_text()
    source = Source(text, "lista.unroll")
    program = check(parse(source), source)
    before, key = node_levels(program), program.step[0].value.key
    untied = apply_schedule(program, Schedule(untie=["We"]))
    assert node_levels(program) == before and flags(program)["We"] == (False, True)
    assert flags(untied)["We"] == (True, True)
    # `We @ y` (in the step's first update) is computed per forward call when tied, per layer when not
    assert program.step[0].value.args[0].args[1].level == ir.FORWARD
    assert untied.step[0].value.args[0].args[1].level == ir.LAYER
    # the structural keys (used for CSE) follow the new tying
    assert untied.step[0].value.key != key == program.step[0].value.key


def test_the_checker_takes_only_the_depth():
    text = SHIPPED["lista_cpss"].read_text()
    source = Source(text, "lista_cpss.unroll")
    program = check(parse(source), source, layers=5)
    assert program.layers == 5
    schedule = next(p for p in program.params if p.name == "p_l")
    assert schedule.per_layer and schedule.uses_layer  # as annotated: the schedule was not applied


def check_text(text: str, **options) -> ir.Program:
    return check_source(text, "t.unroll", make_options(**options))


SPEC = """spec t "uses of re-tied parameters"
dims n
data  A : real[n, n]
input y : real[n]
param W : real[n, n] = 0          learned shared
param c : real = 1                learned shared
param d : real = 0.1 * layer      learned per_layer
net   N : mlp(in=n, out=n)        learned shared
let   b = W @ y + N(y)
state x : real[n] = c * y
layers 3
step:
    x = x + d * (W @ x - b)
final:
    let out = c * x
output out
"""


def test_untied_values_outside_the_step_are_located_in_the_spec():
    with pytest.raises(CompileError) as info:
        check_text(SPEC, untie="W,c,N")
    report = info.value.report()
    found = re.findall(r"t\.unroll:(\d+):(\d+): error: (.*)", report)
    assert found == [
        ("9", "11", "the per-layer parameter `W` cannot be used in a top-level `let`"),
        ("9", "19", "the per-layer sub-network `N` can only be used inside `step:`"),
        ("10", "21", "the per-layer parameter `c` cannot be used in the initial value of a state"),
        ("15", "15", "the per-layer parameter `c` cannot be used in the `final:` block"),
    ], report


def test_a_tied_default_may_not_use_layer():
    with pytest.raises(CompileError) as info:
        check_text(SPEC, tie="d")
    assert "t.unroll:7:24: error: `--tie d` cannot share `d`: its default depends on `layer`" in info.value.report()


def test_the_spec_must_be_valid_as_written():
    """Options apply to a checked program: they cannot make an invalid spec valid."""
    text = SPEC.replace("0.1 * layer      learned per_layer", "0.1 * layer      learned shared   ")
    with pytest.raises(CompileError) as info:
        check_text(text, untie="d")
    assert "the shared parameter `d` cannot depend on `layer`" in info.value.report()
