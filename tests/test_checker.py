"""Checker stage: AST -> typed IR (compiler/check/, compiler/schedule.py, ir.py, types.py).

Types and shapes of expressions (with the batched flag), the level of every
value (ir.CONST / FORWARD / LAYER), the effect of the tie/untie/learn/freeze
options, prev(), and the unbatched scalar state of FISTA.  The wording of error
messages is pinned by tests/test_diagnostics.py; here only that they are raised.
"""

from __future__ import annotations

import pytest
from unroll.compiler import ir
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import check_source, make_options, shipped_specs

SHIPPED = shipped_specs()


def check(text: str, **options) -> ir.Program:
    return check_source(text, "t.unroll", make_options(**options))


def check_spec(name: str, **options) -> ir.Program:
    return check_source(SHIPPED[name].read_text(), f"{name}.unroll", make_options(**options))


def walk_step(stmts):
    for st in stmts:
        if isinstance(st, ir.Repeat):
            yield from walk_step(st.body)
        else:
            yield st


def step_values(program: ir.Program) -> dict[str, ir.Node]:
    """target -> value node of the *last* assignment of each name in the step."""
    return {st.target: st.value for st in walk_step(program.step)}


TYPES = """spec t "types"
dims n, m
data A : real[n, m]
data Z : complex[n, m]
hyper lam = 0.1
hyper k : int = 2
input y : real[n]
let L = opnorm(A)^2
let G = A.T @ A
let Ay = A.T @ y
param W : real[m, n] = A.T / L   learned per_layer
param V : real[m, n] = A.T / L   learned shared
param th : real = lam            learned shared positive
param c : real = 1.0             fixed shared
state x : real[m] = 0
state t : real = 1
state u : complex[m] = 0
layers 3
step:
    let a = A.T @ y
    let b = W @ y
    let bb = V @ y
    let cc = eye(m) - G / L
    let d = norm(x)
    let e = Z.H @ y
    let f = t * 2
    let g = sum(A, 0)
    let h = abs2(u)
    let i = layer * lam
    let j = k + 1
    let q = -x^2
    let r = x @ x
    let s = A @ (x * c)
    let w = where(x > 0, x, 0)
    x = soft(a + b + cc @ x + f + g + h, th)
    u = u + e
    t = t + 1
output x
"""


@pytest.fixture(scope="module")
def typed():
    return check(TYPES)


# name: (dtype, shape, batched, level)
EXPECTED = {
    "a": ("real", "[m]", True, ir.FORWARD),  # data @ input: once per forward call
    "b": ("real", "[m]", True, ir.LAYER),  # per-layer parameter
    "bb": ("real", "[m]", True, ir.FORWARD),  # shared parameter @ input: hoistable
    "cc": ("real", "[m, m]", False, ir.CONST),  # data only: construction time
    "d": ("real", "", True, ir.LAYER),  # norm of a batched state: scalar per sample
    "e": ("complex", "[m]", True, ir.FORWARD),  # complex promotion, .H
    "f": ("real", "", False, ir.LAYER),  # unbatched scalar state
    "g": ("real", "[m]", False, ir.CONST),  # reduction along an axis
    "h": ("real", "[m]", True, ir.LAYER),  # abs2 of complex is real; u became batched
    "i": ("real", "", False, ir.LAYER),  # the layer index
    "j": ("int", "", False, ir.CONST),  # int hyper arithmetic stays int
    "q": ("real", "[m]", True, ir.LAYER),
    "r": ("real", "", True, ir.LAYER),  # vector @ vector: dot product
    "s": ("real", "[n]", True, ir.LAYER),
    "w": ("real", "[m]", True, ir.LAYER),
    "x": ("real", "[m]", True, ir.LAYER),
    "u": ("complex", "[m]", True, ir.LAYER),
    "t": ("real", "", False, ir.LAYER),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_expression_types_shapes_batched_and_levels(typed, name):
    node = step_values(typed)[name]
    dtype, shape, batched, level = EXPECTED[name]
    assert node.type.dtype == dtype
    assert str(node.type).removeprefix(dtype) == shape
    assert node.type.batched is batched
    assert node.level == level


def test_python_number_flags(typed):
    values = step_values(typed)
    assert values["i"].py and values["j"].py  # Python arithmetic in generated code
    assert not values["a"].py and not values["f"].py


def test_top_level_let_levels(typed):
    lets = {l.name: l for l in typed.lets}
    assert lets["L"].level == ir.CONST and str(lets["L"].value.type) == "real"
    assert lets["G"].level == ir.CONST and str(lets["G"].value.type) == "real[m, m]"
    assert lets["Ay"].level == ir.FORWARD and lets["Ay"].value.type.batched
    assert ir.LEVEL_NAMES[ir.CONST] == "constant"
    assert ir.LEVEL_NAMES[ir.FORWARD] == "layer-invariant"
    assert ir.LEVEL_NAMES[ir.LAYER] == "per-layer"


def test_declarations(typed):
    assert typed.dims == ["n", "m"]
    assert typed.data_dims == {"n": ("A", 0), "m": ("A", 1)}
    assert [(h.name, h.dtype, h.default) for h in typed.hypers] == [("lam", "real", 0.1), ("k", "int", 2)]
    assert [(i.name, str(i.type), i.type.batched) for i in typed.inputs] == [("y", "real[n]", True)]
    params = {p.name: p for p in typed.params}
    assert (params["W"].per_layer, params["W"].learned, params["W"].constraint) == (True, True, None)
    assert (params["V"].per_layer, params["V"].learned) == (False, True)
    assert params["th"].constraint == "positive"
    assert (params["c"].learned, params["c"].per_layer) == (False, False)
    states = {s.name: s for s in typed.states}
    assert states["x"].type.batched and states["u"].type.batched
    assert not states["t"].type.batched
    assert typed.layers == 3 and typed.outputs == ["x"]


def test_every_shipped_spec_checks():
    for name in SHIPPED:
        program = check_spec(name)
        assert program.name == name
        assert program.layers >= 1
        assert program.outputs


# --------------------------------------------------------------------------- shipped specs
def test_lista_levels():
    p = check_spec("lista")
    (st,) = p.step
    soft = st.value
    add = soft.args[0]
    wt_x, we_y = add.args
    assert we_y.op == "matmul" and we_y.level == ir.FORWARD  # tied: hoistable
    assert wt_x.level == ir.LAYER  # depends on the state
    assert soft.args[1].level == ir.FORWARD  # shared theta
    assert {l.name: l.level for l in p.lets} == {"L": ir.CONST}
    for prm in p.params:
        assert not prm.per_layer and prm.learned


def test_lista_untied_levels():
    p = check_spec("lista_untied")
    (st,) = p.step
    we_y = st.value.args[0].args[1]
    assert we_y.level == ir.LAYER  # per-layer weight
    assert st.value.args[1].level == ir.LAYER
    assert all(prm.per_layer for prm in p.params)


def test_fista_momentum_scalar_stays_unbatched():
    p = check_spec("fista")
    states = {s.name: s for s in p.states}
    assert not states["t"].type.batched and states["t"].type.shape == ()
    assert states["x"].type.batched and states["v"].type.batched
    values = step_values(p)
    assert not values["t_new"].type.batched and values["t_new"].type.shape == ()
    assert values["x_new"].type.batched
    assert not values["t"].type.batched


def test_lcod_selection_types():
    p = check_spec("lcod")
    values = step_values(p)
    assert str(values["e"].type) == "real[m]" and values["e"].type.batched
    assert values["dz"].type.shape == () and values["dz"].type.batched
    assert values["e"].args[0].op == "argmax" and values["e"].args[0].type.dtype == "int"
    # the state B starts from a layer-invariant value
    b = next(s for s in p.states if s.name == "B")
    assert b.init.level == ir.FORWARD and b.init.type.batched
    assert [st.target for st in p.final] == ["x"]


def test_per_layer_default_may_use_layer_index():
    p = check_spec("lista_cpss")
    p_l = next(x for x in p.params if x.name == "p_l")
    assert p_l.uses_layer and p_l.per_layer and not p_l.learned
    theta = next(x for x in p.params if x.name == "theta")
    assert not theta.uses_layer


# --------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "spec, options, name, per_layer, learned",
    [
        ("lista", {}, "Wt", False, True),
        ("lista", {"untie": "Wt"}, "Wt", True, True),
        ("lista", {"untie": "Wt,theta"}, "theta", True, True),
        ("lista", {"freeze": "We"}, "We", False, False),
        ("lista_untied", {}, "We", True, True),
        ("lista_untied", {"tie": "We"}, "We", False, True),
        ("lista_untied", {"tie": ["We", "theta"], "freeze": "theta"}, "theta", False, False),
        ("alista", {}, "Wa", False, False),
        ("alista", {"learn": "Wa"}, "Wa", False, True),
        ("alista", {"learn": "p_l"}, "p_l", True, True),
        ("lista_cpss", {"freeze": "We,theta"}, "theta", True, False),
    ],
)
def test_options_change_tying_and_trainability(spec, options, name, per_layer, learned):
    p = check_spec(spec, **options)
    prm = next(x for x in p.params if x.name == name)
    assert (prm.per_layer, prm.learned) == (per_layer, learned)
    others = {x.name: (x.per_layer, x.learned) for x in check_spec(spec).params}
    mentioned = {name}
    for v in options.values():
        mentioned.update(v.split(",") if isinstance(v, str) else v)
    for x in p.params:
        if x.name not in mentioned:
            assert (x.per_layer, x.learned) == others[x.name], "an option changed another parameter"


def test_tying_a_layer_dependent_default_names_the_real_problem():
    with pytest.raises(CompileError) as info:
        check_spec("lista_cpss", tie="p_l")
    report = info.value.report()
    assert "not a parameter" not in report, report
    assert "layer" in report


def test_untie_changes_levels_of_uses():
    tied = check_spec("lista")
    untied = check_spec("lista", untie="We")
    we_y_tied = tied.step[0].value.args[0].args[1]
    we_y_untied = untied.step[0].value.args[0].args[1]
    assert we_y_tied.level == ir.FORWARD and we_y_untied.level == ir.LAYER


def test_layers_option_overrides_the_spec():
    assert check_spec("lista").layers == 16
    assert check_spec("lista", layers=3).layers == 3


@pytest.mark.parametrize(
    "options",
    [
        {"tie": "nope"},
        {"untie": "W"},
        {"learn": "x"},
        {"freeze": "lam"},
        {"tie": "We", "untie": "We"},
        {"learn": "theta", "freeze": "theta"},
        {"layers": 0},
        {"layers": -2},
    ],
)
def test_bad_options_are_compile_errors(options):
    with pytest.raises(CompileError):
        check_spec("lista", **options)


# --------------------------------------------------------------------------- prev()
PREV = """spec jac "Jacobi"
dims n
input y : real[n]
state a : real[n] = 0
state b : real[n] = 1
layers 3
step:
    a = 0.5 * prev(b) + y
    b = 0.5 * prev(a) + a
output a, b
"""


def test_prev_refers_to_the_value_at_the_start_of_the_layer():
    p = check(PREV)
    assert p.prev_used == ["b", "a"]
    values = step_values(p)
    prev_b = values["a"].args[0].args[1]
    assert prev_b.op == "var" and prev_b.attrs["prev"] and prev_b.attrs["name"] == "b"
    prev_a = values["b"].args[0].args[1]
    plain_a = values["b"].args[1]
    assert prev_a.attrs.get("prev") and not plain_a.attrs.get("prev")
    assert prev_a.key != plain_a.key  # never merged by CSE
    assert prev_a.level == ir.LAYER
    assert prev_b.type.batched  # b becomes batched through a


@pytest.mark.parametrize(
    "bad",
    [
        PREV.replace("state b : real[n] = 1", "state b : real[n] = 1\nlet c = prev(b)"),  # outside the step
        PREV.replace("prev(b)", "prev(y)"),  # not a state
        PREV.replace("prev(b)", "prev(b + 1)"),  # not a name
        PREV.replace("prev(b)", "prev(zz)"),  # unknown
    ],
)
def test_prev_misuse_is_an_error(bad):
    with pytest.raises(CompileError):
        check(bad)


# --------------------------------------------------------------------------- repeat / final
REPEAT = """spec r "repeat"
dims n
hyper K : int = 3
input y : real[n]
state x : real[n] = 0
state z : real[n] = 0
layers 2
step:
    repeat K:
        z = z + y
    x = x + z
final:
    let out = x + 1
output out
"""


def test_repeat_and_final_levels():
    p = check(REPEAT)
    rep, assign = p.step
    assert isinstance(rep, ir.Repeat)
    assert rep.depth == ir.LAYER + 1 and rep.carried == ["z"]
    assert rep.count.op == "var" and rep.count.attrs["name"] == "K" and rep.count.level == ir.CONST
    (inner,) = rep.body
    assert inner.depth == ir.LAYER + 1 and inner.value.level == ir.LAYER + 1
    assert assign.value.level == ir.LAYER
    (fin,) = p.final
    assert fin.depth == ir.FORWARD and fin.value.level == ir.FORWARD
    assert p.outputs == ["out"]


@pytest.mark.parametrize(
    "bad",
    [
        REPEAT.replace("repeat K:", "repeat 0:"),
        REPEAT.replace("repeat K:", "repeat 2.5:"),
        REPEAT.replace("repeat K:", "repeat n + y:"),
    ],
)
def test_bad_repeat_counts(bad):
    with pytest.raises(CompileError):
        check(bad)


# --------------------------------------------------------------------------- errors are raised
BASE = """spec e "errors"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
param th : real = lam learned shared
state x : real[m] = 0
layers 2
step:
    x = soft(x + A.T @ y, th)
output x
"""


@pytest.mark.parametrize(
    "old, new",
    [
        ("A.T @ y", "A @ y"),  # inner dims do not match
        ("A.T @ y", "A.T @ x"),  # [m, n] @ [m]
        ("soft(x + A.T @ y, th)", "soft(x + A.T @ y, x @ A.T)"),  # threshold shape
        ("x = soft", "y = soft"),  # assignment to an input
        ("x = soft", "th = soft"),  # assignment to a parameter
        ("th)", "thta)"),  # unknown name
        ("param th : real = lam learned shared", "param th : real = lam learned shared per_layer"),
        ("param th : real = lam learned shared", "param th : real = layer learned shared"),
        ("param th : real = lam learned shared", "param th : real = y learned shared"),
        ("param th : real = lam learned shared", "param th : real[n] = A learned shared"),
        ("param th : real = lam learned shared", "param th : real = lam learnd shared"),
        ("state x : real[m] = 0", "state x : real[m] = y"),
        ("state x : real[m] = 0", "state x : real[m] = 0\nstate x : real[m] = 0"),
        ("hyper lam = 0.1", "hyper lam = A"),
        ("dims n, m", "dims n, m, k"),  # k bound by nothing
        ("x = soft(x + A.T @ y, th)", "x = soft(x + A.T @ y, th) + 1j"),
        ("output x", "output th"),
        ("output x", "output q"),
        ("x = soft(x + A.T @ y, th)", "x = frobnicate(x)"),
        ("x = soft(x + A.T @ y, th)", "x = soft(x)"),
        ("x = soft(x + A.T @ y, th)", "x = x.Q"),
        ("x = soft(x + A.T @ y, th)", "x = A(x)"),
        ("x = soft(x + A.T @ y, th)", "x = x > 0"),
    ],
)
def test_checker_errors_raise_compile_error(old, new):
    assert old in BASE
    with pytest.raises(CompileError) as info:
        check(BASE.replace(old, new, 1))
    assert info.value.diagnostics
    assert all(d.severity == "error" for d in info.value.diagnostics)


def test_base_spec_is_valid():
    p = check(BASE)
    assert p.name == "e"


def test_all_errors_of_a_pass_are_reported_together():
    bad = BASE.replace("th)", "thta)").replace("A.T @ y", "A @ y").replace("output x", "output q")
    with pytest.raises(CompileError) as info:
        check(bad)
    assert len(info.value.diagnostics) >= 2
