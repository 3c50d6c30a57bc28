"""Slices (`x[1:]`, `x[:-1]`, `X[:, 1:]`, `X[0, 1:]`), dim arithmetic in types (`real[n - 1]`,
`real[2*n]`) and the hints for what new users reach for: values against numpy's slicing, on a batch and
on single samples, a composite data axis checked at construction, gradients, located errors."""

import types

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck
from unroll import runtime as rt
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import compile_source, make_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """spec slices "slices, differences and dims"
dims n, m
hyper j : int = 2
data W : real[n - 1, 2*m]
data Z : real[n, m]
input y : real[n]
input X : real[n, m]
state x : real[n - 1] = 0
state c : real[n] = 0
layers 2
step:
    x = x + y[1:] - y[:-1]
    c = c + X[:, 1:] @ ones(m - 1) + X[:, 0] * layer
final:
    let a = X[1:-1, 2:]
    let b = X[0, 1:] + X[-1, :-1]
    let e = X[j, :]
    let f = y[-2:]
    let g = W[:, m:] @ X[0]
    let h = X[1:][:, 1:] + Z[:-1, 1:m]
output x, c, a, b, e, f, g, h
"""
N, M, BATCH = 6, 4, 3


def _module(source):
    code = compile_source(source, "slices.unroll", make_options())
    namespace = types.ModuleType("unroll_slices_generated")
    exec(compile(code, "<generated>", "exec"), namespace.__dict__)  # noqa: S102 - importing compiler output
    (cls,) = [v for v in vars(namespace).values()
              if isinstance(v, type) and issubclass(v, rt.UnrolledModule) and v is not rt.UnrolledModule]
    return cls


NET = _module(SPEC)


def numpy_values(W, Z, y, X, layers=2):
    x, c = np.zeros(N - 1), np.zeros(N)
    for layer in range(layers):
        x = x + y[1:] - y[:-1]
        c = c + X[:, 1:].sum(1) + X[:, 0] * layer
    return [x, c, X[1:-1, 2:], X[0, 1:] + X[-1, :-1], X[2], y[-2:], W[:, M:] @ X[0], X[1:, 1:] + Z[:-1, 1:]]


def test_slices_match_numpy_on_a_batch_and_on_one_sample():
    rng = np.random.default_rng(0)
    W, y, X = rng.standard_normal((N - 1, 2 * M)), rng.standard_normal((BATCH, N)), rng.standard_normal((BATCH, N, M))
    Z = rng.standard_normal((N, M))
    net = NET(W=torch.tensor(W), Z=torch.tensor(Z))
    together = [o.numpy() for o in net(torch.tensor(y), torch.tensor(X))]
    for b in range(BATCH):
        alone = [o.numpy() for o in net(torch.tensor(y[b]), torch.tensor(X[b]))]
        for got_b, got_alone, want in zip(together, alone, numpy_values(W, Z, y[b], X[b])):
            np.testing.assert_allclose(got_b[b], want, rtol=1e-14, atol=1e-15)
            np.testing.assert_allclose(got_alone, want, rtol=1e-14, atol=1e-15)


def test_a_composite_data_axis_is_checked_at_construction():
    with pytest.raises(ValueError, match="W"):
        NET(W=torch.zeros(N, 2 * M), Z=torch.zeros(N, M))


def test_slices_are_differentiable():
    rng = np.random.default_rng(1)
    net = NET(W=torch.tensor(rng.standard_normal((N - 1, 2 * M))), Z=torch.tensor(rng.standard_normal((N, M))))
    y = torch.tensor(rng.standard_normal((2, N)), requires_grad=True)
    X = torch.tensor(rng.standard_normal((2, N, M)), requires_grad=True)
    assert gradcheck(lambda y, X: sum(o.sum() * (i + 1) for i, o in enumerate(net(y, X))), (y, X))


def _error(line: str) -> str:
    source = f"""spec bad
dims n, m
input y : real[n]
input X : real[n, m]
state x : real[n - 1] = 0
layers 1
step:
    {line}
output x
"""
    with pytest.raises(CompileError) as err:
        compile_source(source, "bad.unroll")
    return str(err.value)


@pytest.mark.parametrize("line, message, hint", [
    ("x = x + y[::2]", "unexpected `:`", "a step (`::2`) is not supported"),
    ("x = x + y[1:layer]", "a slice bound must be an integer literal or a dimension", "from the end (`x[:-1]`)"),
    ("x = x + y[1:n]", None, None),
    ("x = x + y[1:, 0]", "2 subscripts for real[n], which has 1 axis", "at most 1 subscript"),
    ("x = x + y[-3:5]", "mixes a bound from the end with one from the start", "both bounds from the start"),
    ("x = x + y[1:]", None, None),
    ("x = x + y", "shapes [n - 1] and [n] do not broadcast", None),
    ("x = x + roll(y, 1)[1:]", "unknown operator `roll`", "shift(v, k, axis)"),
    ("x = x + diag(X)[1:]", "`diag` takes a vector (→ a diagonal matrix) or square matrices", None),
    ("x = x + lse(X)", "unknown operator `lse`", "logsumexp(v, axis)"),
    ("x = x + dif(y)", "unknown operator `dif`", "did you mean `diff`?"),
])
def test_misuse_is_a_located_error_with_a_right_hint(line, message, hint):
    if message is None:
        source = f"spec ok\ndims n\ninput y : real[n]\nstate x : real[n - 1] = 0\nlayers 1\nstep:\n    {line}\noutput x\n"
        compile_source(source, "ok.unroll")
        return
    text = _error(line)
    assert "bad.unroll:8:" in text and message in text, text
    if hint:
        assert hint in text.split("hint:", 1)[1], text
