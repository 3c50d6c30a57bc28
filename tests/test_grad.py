"""grad(f, x) is derived symbolically (sympy); check it against torch autograd of f."""

import textwrap

import numpy as np
import pytest
import torch
from unroll.compiler import CompileError, compile_source

SPEC = """
spec g "gradient step"
dims n, m
data A : real[n, m]
data W : real[n, n]
hyper lam = 0.3
hyper eta = 0.01
input y : real[n]
state x : real[m] = 0
layers 1
step:
    x = x - eta * grad({f}, x)
output x
"""


def _load(source, tmp_path, name="g_net"):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if isinstance(v, type) and v.__module__ == name)


OBJECTIVES = {
    # spec text -> the same function in torch (x: [m], y: [n])
    "0.5 * norm(A @ x - y)^2": lambda A, W, y, x, lam: 0.5 * (A @ x - y).square().sum(),
    "0.5 * norm(A @ x - y)^2 + lam / 2 * norm(x)^2": lambda A, W, y, x, lam: 0.5 * (A @ x - y).square().sum()
    + lam / 2 * x.square().sum(),
    "0.5 * (A @ x - y) @ (W @ (A @ x - y))": lambda A, W, y, x, lam: 0.5 * (A @ x - y) @ (W @ (A @ x - y)),
    "dot(y, A @ x) - 3 * sum(x)": lambda A, W, y, x, lam: y @ (A @ x) - 3 * x.sum(),
    "lam * norm(x)^2 / 2 - dot(x, A.T @ y)": lambda A, W, y, x, lam: lam * x.square().sum() / 2 - x @ (A.T @ y),
}


@pytest.mark.parametrize("objective", list(OBJECTIVES))
def test_grad_matches_autograd(objective, tmp_path):
    source = compile_source(textwrap.dedent(SPEC.format(f=objective)), "g.unroll")
    Net = _load(source, tmp_path)
    rng = np.random.default_rng(0)
    n, m = 6, 9
    A = torch.tensor(rng.standard_normal((n, m)))
    W = torch.tensor(rng.standard_normal((n, n)))
    net = Net(A=A, W=W)
    y = torch.tensor(rng.standard_normal((3, n)))
    # one step from x = 0 gives -eta * grad f(0): compare with autograd at x = 0 ...
    out = net(y)
    for b in range(3):
        x0 = torch.zeros(m, dtype=torch.float64, requires_grad=True)
        f = OBJECTIVES[objective](A, W, y[b], x0, 0.3)
        (g,) = torch.autograd.grad(f, x0)
        assert torch.allclose(out[b], -0.01 * g, rtol=1e-12, atol=1e-14)
    # ... and at a random point, through a state initialised there
    x_start = rng.standard_normal(m)
    spec2 = textwrap.dedent(SPEC.format(f=objective)).replace("state x : real[m] = 0", "state x : real[m] = x0") \
        .replace("input y : real[n]", "input y : real[n]\ninput x0 : real[m]")
    Net2 = _load(compile_source(spec2, "g2.unroll"), tmp_path, "g2_net")
    net2 = Net2(A=A, W=W)
    out2 = net2(y, torch.tensor(x_start).expand(3, m))
    for b in range(3):
        x0 = torch.tensor(x_start, requires_grad=True)
        (g,) = torch.autograd.grad(OBJECTIVES[objective](A, W, y[b], x0, 0.3), x0)
        assert torch.allclose(out2[b], x0.detach() - 0.01 * g, rtol=1e-12, atol=1e-13)


def test_grad_outside_the_symbolic_path_falls_back_to_autograd():
    # `soft` is outside sympy's matrix calculus: the gradient is taken by autograd in the forward pass
    code = compile_source(textwrap.dedent(SPEC.format(f="sum(soft(x, 1.0))")), "soft.unroll")
    assert "rt.autograd_grad(lambda x: " in code


def test_grad_with_respect_to_a_shared_parameter_is_a_located_error():
    bad = textwrap.dedent(SPEC.format(f="sum(soft(x, 1.0))")).replace("grad(sum(soft(x, 1.0)), x)",
                                                                       "grad(sum(soft(x, 1.0)), A)")
    with pytest.raises(CompileError) as err:
        compile_source(bad, "bad.unroll")
    text = str(err.value)
    assert "bad.unroll:12:" in text and "would add up the gradients" in text and "^" in text


def test_grad_of_non_scalar_is_an_error():
    bad = textwrap.dedent(SPEC.format(f="A @ x - y"))
    with pytest.raises(CompileError, match="needs a scalar function"):
        compile_source(bad, "bad.unroll")


def test_compiling_without_grad_does_not_import_sympy():
    import subprocess
    import sys

    code = ("import sys; from unroll.compiler import compile_spec; compile_spec('lista'); "
            "print('sympy' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
