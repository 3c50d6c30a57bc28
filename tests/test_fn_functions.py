"""Expression functions (`fn`, docs/language.md §6b): inlined at every call, typed per call, transparent to
`grad`'s symbolic path, absent from the generated code.  References: numpy (the energy, its gradient and
the line search written out by hand), float64."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from unroll.compiler import CompileError
from unroll.compiler.driver import check_source, compile_source
from unroll.compiler.explain import explain
from unroll.runtime.loader import load_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """spec fn_energy "Gradient steps with a two-point line search on one energy"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
let   L = opnorm(A)^2 + lam
fn E(u) = 0.5 * norm(A @ u - y)^2 + lam / 2 * norm(u)^2
fn G(u) = grad(E(u), u)
state x : real[m] = 0
state energy : real = 0
layers 6
step:
    let d = -G(x)
    let t = where(E(x + d / L) < E(x), 1 / L, 0.5 / L)
    x = x + t * d
    energy = E(x)
output x, energy
"""


def _reference(A, y, lam, layers):
    L = np.linalg.norm(A, 2) ** 2 + lam
    def E(u):
        return 0.5 * np.sum((A @ u - y) ** 2) + lam / 2 * np.sum(u ** 2)

    x = np.zeros(A.shape[1])
    for _ in range(layers):
        d = -(A.T @ (A @ x - y) + lam * x)
        t = 1 / L if E(x + d / L) < E(x) else 0.5 / L
        x = x + t * d
    return x, E(x)


def test_an_inlined_energy_equals_the_hand_written_iteration():
    rng = np.random.default_rng(0)
    A, Y = rng.standard_normal((7, 5)), rng.standard_normal((3, 7))
    net = load_text(SPEC, "fn_energy")(A=A, lam=0.1)
    x, energy = net(torch.tensor(Y))
    for b in range(3):
        ref_x, ref_e = _reference(A, Y[b], 0.1, 6)
        np.testing.assert_allclose(x[b].numpy(), ref_x, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(energy[b].item(), ref_e, rtol=1e-12)


def test_grad_through_a_function_keeps_the_symbolic_path_and_the_code_has_no_trace_of_it():
    program = check_source(SPEC, "fn_energy.unroll")
    text = explain(program)
    assert "symbolic (sympy)" in text and "autograd" not in text
    assert "Functions (inlined" in text and "fn E(u) = 0.5 * norm(A @ u - y)^2" in text
    code = compile_source(SPEC, "fn_energy.unroll")
    code = re.sub(r'"""(.*?)"""', "", code, flags=re.DOTALL)  # docstrings quote the spec
    body = "\n".join(line for line in code.split("\n") if not line.strip().startswith("#"))
    assert "E(" not in body and "G(" not in body and "autograd" not in body


def test_one_function_types_at_calls_of_different_shapes():
    spec = """spec fn_shapes "A function used on a vector and on a scalar"
dims n
input y : real[n]
fn sq(u) = u * u + 1
state x : real[n] = 0
state s : real = 0
layers 2
step:
    x = sq(y)
    s = sq(2.0) + sum(x)
output x, s
"""
    y = torch.tensor([[1.0, 2.0, -3.0]], dtype=torch.float64)
    x, s = load_text(spec, "fn_shapes")()(y)
    assert x.tolist() == [[2.0, 5.0, 10.0]] and s.tolist() == [5.0 + 17.0]


def test_functions_call_the_functions_above_and_read_constants_above():
    spec = """spec fn_chain "Functions calling functions"
dims n
hyper c = 3.0
input y : real[n]
let   k = 2 * c
fn f(u) = c * u
fn g(u, v) = f(u) - f(v) + k
state x : real[n] = 0
layers 1
step:
    x = g(y, 2 * y)
output x
"""
    y = torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    x = load_text(spec, "fn_chain")()(y)
    assert x.tolist() == [[3.0 - 6.0 + 6.0, -3.0 + 6.0 + 6.0]]


def test_an_autograd_energy_through_a_function_equals_its_gradient():
    spec = """spec fn_auto "A non-quadratic energy through autograd"
dims n
input y : real[n]
fn E(u) = sum(log(1 + (u - y)^2))
state x : real[n] = 0
layers 1
step:
    x = grad(E(x), x)
output x
"""
    y = np.array([0.5, -2.0, 1.0])
    x = load_text(spec, "fn_auto")()(torch.tensor(y))
    np.testing.assert_allclose(x.detach().numpy(), 2 * (0 - y) / (1 + y ** 2), rtol=1e-13)


@pytest.mark.parametrize("fn_line, step, message", [
    ("fn E(u) = u", "E(x, y)", "function `E` takes 1 argument, got 2"),
    ("fn E(u) = u", "E(u=x)", "function `E` takes its arguments by position"),
    ("fn E(u) = u", "Ee(x)", "unknown function `Ee`"),
    ("fn E(u) = E(u)", "E(x)", "function `E` calls itself"),
    ("fn E(u) = F(u)\nfn F(u) = u", "E(x)", "function `F` is used before its declaration"),
    ("fn E(c) = c", "E(x)", "parameter `c` of `E` shadows the hyperparameter `c`"),
    ("fn E(u) = u + layer", "E(x)", "a function cannot read `layer`"),
    ("fn E(u, u) = u", "E(x, x)", "parameter `u` of `E` is named twice"),
    ("fn c(u) = u", "x", "`c` is already declared (as a hyperparameter)"),
    ("fn E(u) = u\nfn E(u) = u", "E(x)", "function `E` is declared twice"),
    ("fn soft(u) = u", "x", "`soft` is an operator of the language and cannot name a function"),
    ("fn E(rt) = rt", "E(x)", "`rt` is reserved and cannot name a function parameter"),
])
def test_misused_functions_are_located_diagnostics(fn_line, step, message):
    spec = f"spec d\ndims n\nhyper c = 2.0\ninput y : real[n]\n{fn_line}\nstate x : real[n] = 0\nlayers 2\n" \
           f"step:\n    x = {step}\noutput x\n"
    with pytest.raises(CompileError) as err:
        compile_source(spec, "d.unroll")
    report = str(err.value)
    assert message in report and "d.unroll:" in report and "^" in report


def test_a_parameter_named_like_a_state_is_not_ambiguous():
    spec = "spec d\ndims n\ninput y : real[n]\nfn E(x) = 0.5 * norm(x - y)^2\nstate x : real[n] = 0\nlayers 3\n" \
           "step:\n    x = x - 0.5 * grad(E(x), x)\noutput x\n"
    y = torch.tensor([[4.0, -8.0]], dtype=torch.float64)
    x = load_text(spec, "fn_state_name")()(y)
    np.testing.assert_allclose(x.numpy(), [[3.5, -7.0]])
