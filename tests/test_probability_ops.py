"""softmax, logsoftmax, logsumexp and the axis reductions max(v, axis=k), min(v, axis=k), as compiled
(the emitted code on a batch, every axis), against independent references (scipy.special and numpy
written from the definitions), exact and finite on logits 10³ apart and with −inf entries, gradients
checked in float64 (torch.autograd.gradcheck), and the keyword syntax (`axis=`), including the
elementwise `max(X, 0)` that must not be read as an axis reduction."""

import types

import numpy as np
import pytest
import torch
from scipy import special
from torch.autograd import gradcheck
from unroll import runtime as rt
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import compile_source, make_options
from unroll.compiler.operators import OPERATORS

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ALL_FORMS = """spec forms "every form along every axis"
dims n, K
input U : real[n, K]
state s : real = 0
layers 1
step:
    s = s
final:
    let sm0 = softmax(U, 0)
    let sm1 = softmax(U, axis=1)
    let smneg = softmax(U, -1)
    let ls0 = logsoftmax(U, axis=0)
    let ls1 = logsoftmax(U, 1)
    let lse0 = logsumexp(U, 0)
    let lse1 = logsumexp(U, axis=-1)
    let lseall = logsumexp(U)
    let mx0 = max(U, axis=0)
    let mx1 = max(U, axis=1)
    let mn0 = min(U, axis=0)
    let mn1 = min(U, axis=-1)
    let smv = softmax(U[0])
    let lsv = logsoftmax(U[1])
output sm0, sm1, smneg, ls0, ls1, lse0, lse1, lseall, mx0, mx1, mn0, mn1, smv, lsv
"""
NAMES = ["sm0", "sm1", "smneg", "ls0", "ls1", "lse0", "lse1", "lseall", "mx0", "mx1", "mn0", "mn1", "smv", "lsv"]


def _module(source):
    code = compile_source(source, "forms.unroll", make_options())
    namespace = types.ModuleType("unroll_probability_generated")
    exec(compile(code, "<generated>", "exec"), namespace.__dict__)  # noqa: S102 - importing compiler output
    (cls,) = [v for v in vars(namespace).values()
              if isinstance(v, type) and issubclass(v, rt.UnrolledModule) and v is not rt.UnrolledModule]
    return cls


FORMS = _module(ALL_FORMS)


def scipy_forms(U):
    """The same values for one sample U [n, K], from scipy.special (an independent implementation)."""
    return [special.softmax(U, 0), special.softmax(U, 1), special.softmax(U, -1), special.log_softmax(U, 0),
            special.log_softmax(U, 1), special.logsumexp(U, 0), special.logsumexp(U, -1), special.logsumexp(U),
            U.max(0), U.max(1), U.min(0), U.min(-1), special.softmax(U[0]), special.log_softmax(U[1])]


def _run(U):
    return [o.numpy() for o in FORMS(dtype=torch.float64)(torch.tensor(U))]


@pytest.mark.parametrize("seed", [0, 1])
def test_every_form_matches_scipy_on_a_batch(seed):
    U = np.random.default_rng(seed).standard_normal((3, 4, 5)) * 3
    outs = _run(U)
    for b in range(U.shape[0]):
        for name, got, want in zip(NAMES, outs, scipy_forms(U[b])):
            np.testing.assert_allclose(got[b], want, rtol=1e-13, atol=1e-14, err_msg=name)


def test_the_registry_references_agree_with_scipy():
    U = np.random.default_rng(2).standard_normal((4, 5))
    np.testing.assert_allclose(OPERATORS["softmax"].reference(U, 1), special.softmax(U, 1), rtol=1e-14)
    np.testing.assert_allclose(OPERATORS["logsoftmax"].reference(U, 0), special.log_softmax(U, 0), rtol=1e-14)
    np.testing.assert_allclose(OPERATORS["logsumexp"].reference(U, 1), special.logsumexp(U, 1), rtol=1e-14)
    np.testing.assert_allclose(OPERATORS["logsumexp"].reference(U), special.logsumexp(U), rtol=1e-14)
    np.testing.assert_allclose(OPERATORS["max_axis"].reference(U, 0), U.max(0))
    np.testing.assert_allclose(OPERATORS["min_axis"].reference(U, 1), U.min(1))


def test_logits_a_thousand_apart_are_exact_and_finite():
    # one row: 0, 1000, -1000, 999; softmax = (e^-1000, 1/(1+e^-1), ~0, e^-1/(1+e^-1)) (exact in float64)
    row = np.array([0.0, 1000.0, -1000.0, 999.0, 1e4])
    U = np.stack([row, row - 5e3, -row])[None]  # [1, 3, 5]
    outs = dict(zip(NAMES, _run(U)))
    for name, value in outs.items():
        assert np.all(np.isfinite(value)), name
    # logsumexp of each row: its max + log(sum exp(v - max)): 1e4 exactly (the rest underflows against it)
    np.testing.assert_allclose(outs["lse1"][0], [1e4, 1e4 - 5e3, 1000.0 + np.log1p(np.exp(-1000.0 - 999.0 + 999))],
                               rtol=1e-15)
    assert outs["sm1"][0][0, 4] == 1.0 and outs["sm1"][0][0, 0] == 0.0
    np.testing.assert_allclose(outs["sm1"][0].sum(-1), 1.0, rtol=1e-15)
    np.testing.assert_allclose(outs["ls1"][0][0], row - 1e4, rtol=1e-15)  # log-probabilities, not -inf
    # the third row -row: its max 1000 is entry 2, the next 0 (1000 below): log-probability -1000 exactly
    np.testing.assert_allclose(outs["ls1"][0][2, 0], -1000.0, rtol=1e-15)


def test_minus_infinity_entries_have_probability_zero():
    U = np.array([[[-np.inf, 0.0, 0.0], [-np.inf, -np.inf, -np.inf], [1.0, -np.inf, 1.0]]])
    outs = dict(zip(NAMES, _run(U)))
    np.testing.assert_array_equal(outs["sm1"][0][0], [0.0, 0.5, 0.5])
    np.testing.assert_array_equal(outs["sm1"][0][2], [0.5, 0.0, 0.5])
    np.testing.assert_allclose(outs["ls1"][0][0], [-np.inf, -np.log(2), -np.log(2)])
    np.testing.assert_allclose(outs["lse1"][0], [np.log(2), -np.inf, 1 + np.log(2)])  # an empty row: -inf
    np.testing.assert_allclose(outs["lse0"][0], [np.log(np.e), 0.0, special.logsumexp([0.0, 1.0])])


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_gradients_in_float64(index):
    net = FORMS(dtype=torch.float64)
    U = torch.tensor(np.random.default_rng(3).standard_normal((2, 3, 4)), requires_grad=True)
    assert gradcheck(lambda u: net(u)[index], (U,))


def test_softmax_gradient_with_logits_far_apart_is_finite():
    net = FORMS(dtype=torch.float64)
    U = torch.tensor([[[0.0, 1000.0, -1000.0], [5.0, -3e3, 2e3]]], dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(sum(o.sum() for o in net(U)[:9]), U)
    assert torch.isfinite(g).all()


def _compile_error(step_line: str) -> str:
    source = f"""spec bad
dims n, K
input U : real[n, K]
state Q : real[n, K] = 0
layers 2
step:
    {step_line}
output Q
"""
    with pytest.raises(CompileError) as err:
        compile_source(source, "bad.unroll")
    return str(err.value)


def test_max_of_a_matrix_and_an_integer_is_an_error_with_both_readings():
    message = _compile_error("Q = max(Q, 0)")
    assert "bad.unroll:7:16: error" in message and "not the maximum along axis 0" in message
    assert "max(v, axis=0)" in message and "max(v, 0.0)" in message
    assert "minimum along axis 1" in _compile_error("Q = min(U, 1)")


def test_the_elementwise_forms_are_unchanged():
    cls = _module(ALL_FORMS.replace("let sm0 = softmax(U, 0)", "let sm0 = max(U, 0.0) + min(U[0], 0) + max(2, U)"))
    U = np.random.default_rng(4).standard_normal((2, 3, 4))
    got = cls(dtype=torch.float64)(torch.tensor(U))[0].numpy()
    np.testing.assert_allclose(got, np.maximum(U, 0) + np.minimum(U[:, :1], 0) + np.maximum(2, U))


@pytest.mark.parametrize("line, message", [
    ("Q = softmax(U)", "`softmax` of real[n, K] needs an axis"),
    ("Q = softmax(U, dim=1)", "`softmax` has no keyword argument `dim`"),
    ("Q = softmax(U, 1, axis=1)", "`axis` of `softmax` is given twice"),
    ("Q = Q + logsumexp(U, axis=2)", "axis 2 is out of range for real[n, K]"),
    ("Q = logsoftmax(U, axis=K)", "`axis` of `logsoftmax` must be an integer literal"),
    ("Q = Q + max(U, axis=0, axis=1)", "`axis` of `max` is given twice"),
    ("Q = soft(U, 0.1, axis=1)", "`soft` takes no keyword arguments"),
    ("Q = Q + max(U, axis=1.5)", "`axis` of `max` must be an integer literal"),
    ("Q = softmax(complex(U, U), 1)", "`softmax` needs a real value"),
    ("Q = logsumexp(U > 0) + Q", "`logsumexp` needs real numbers, got a comparison"),
])
def test_misuse_is_a_located_error(line, message):
    text = _compile_error(line)
    assert "bad.unroll:7:" in text and message in text, text
