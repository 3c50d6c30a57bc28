"""Function data (`data D : function(real[n], real) -> real[n] [nondifferentiable]`, runtime/function_data.py):
shape checks at the call, the batch convention, no_grad for nondifferentiable functions, a torch module
as a submodule (state_dict, .to()), dtype/device, pickling, and the checker's diagnostics."""

from __future__ import annotations

import io
import pickle

import pytest
import torch
from torch import nn
from unroll.compiler.diagnostics import CompileError
from unroll.runtime.loader import load_text

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """
spec fdata "A gradient step, then a user-supplied denoiser of a level"
dims n
data A : real[n, n]
data D : function(real[n], real) -> real[n]{flag}
input y : real[n]
param eta : real = 0.5   learned shared
state x : real[n] = 0
layers 3
step:
    x = D(x - eta * A.T @ (A @ x - y), 0.1 * layer + 1)
output x
"""


def _net(function, flag="", **kw):
    return load_text(SPEC.format(flag=flag), "fdata")(torch.eye(4, dtype=torch.float64), function, **kw)


def shrink(v, s):
    """A top-level (picklable) function: shrinkage by s, v [batch, n], s [batch]."""
    return v / (1 + s[:, None])


class Scale(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.full((4,), 0.5, dtype=torch.float64))

    def forward(self, v, s):
        return self.weight * v / s[:, None]


def test_the_function_gets_batches_and_its_result_is_used():
    calls = []

    def f(v, s):
        calls.append((tuple(v.shape), tuple(s.shape)))
        return shrink(v, s)

    y = torch.randn(5, 4, dtype=torch.float64)
    out = _net(f)(y)
    x = torch.zeros(5, 4, dtype=torch.float64)
    for layer in range(3):  # the same three steps by hand
        x = shrink(x - 0.5 * (x - y), torch.full((5,), 0.1 * layer + 1, dtype=torch.float64))
    torch.testing.assert_close(out, x, rtol=1e-14, atol=1e-14)
    assert calls == [((5, 4), (5,))] * 3  # the layer's scalar is expanded over the batch
    one = _net(f)(y[0])  # one sample: a batch of one
    torch.testing.assert_close(one, x[0], rtol=1e-14, atol=1e-14)


def test_a_wrong_result_shape_names_the_data():
    with pytest.raises(ValueError, match=r"^D: the function must return shape \[2, 4\] .*got \[2, 3\]"):
        _net(lambda v, s: v[:, :3])(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^D: the function must return a tensor"):
        _net(lambda v, s: v.detach().numpy())(torch.randn(2, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^D: the function returned torch.float32, the network computes in torch.float64"):
        _net(lambda v, s: v.float())(torch.randn(2, 4, dtype=torch.float64))


def test_a_non_callable_or_missing_function_is_a_type_error():
    with pytest.raises(TypeError, match=r"^D: expected a callable .* got Tensor"):
        _net(torch.ones(4))
    with pytest.raises(TypeError, match=r"^D: expected a callable .* got int"):
        _net(3)
    with pytest.raises(TypeError, match=r"missing function 'D'"):
        _net(None)


def test_differentiable_and_nondifferentiable_functions():
    y = torch.randn(3, 4, dtype=torch.float64)
    net = _net(shrink)
    net(y).sum().backward()
    assert net.eta.grad is not None and net.eta.grad.abs().item() > 0  # gradient through the function
    seen = []

    def record(v, s):
        seen.append(torch.is_grad_enabled())
        return shrink(v, s)

    frozen = _net(record, flag="  nondifferentiable")
    out = frozen(y)
    assert seen == [False] * 3 and not out.requires_grad  # called under no_grad, the value is a constant
    leaf = _net(lambda v, s: v.clone().requires_grad_(), flag="  nondifferentiable")(y)
    assert not leaf.requires_grad  # a tensor that needs grad made by the function is detached too


def test_a_module_is_a_submodule_saved_moved_and_trained():
    scale = Scale()
    net = _net(scale)
    assert net.D.module is scale
    assert "D.module.weight" in net.state_dict()
    assert any(p is scale.weight for p in net.parameters())
    net(torch.randn(2, 4, dtype=torch.float64)).sum().backward()
    assert scale.weight.grad is not None
    net32 = net.to(torch.float32)
    assert scale.weight.dtype == torch.float32
    assert net32(torch.randn(2, 4)).dtype == torch.float32


def test_torch_save_with_a_module_and_with_a_top_level_function():
    y = torch.randn(2, 4, dtype=torch.float64)
    for function in (Scale(), shrink):
        net = _net(function)
        buffer = io.BytesIO()
        torch.save(net, buffer)
        buffer.seek(0)
        back = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(back(y), net(y), rtol=0, atol=0)


def test_torch_save_with_a_lambda_names_the_data():
    net = _net(lambda v, s: v)
    with pytest.raises(TypeError, match=r"^D: the function data .*<lambda> cannot be pickled"):
        torch.save(net, io.BytesIO())
    with pytest.raises(TypeError, match=r"^D: "):
        pickle.dumps(net)
    torch.save(net.state_dict(), io.BytesIO())  # the weights save in any case


def _errors(text: str) -> str:
    with pytest.raises(CompileError) as info:
        load_text(text, "bad")
    return str(info.value)


@pytest.mark.parametrize("line, message", [
    ("    x = D(x)", "the function `D` takes 2 arguments, got 1"),
    ("    x = D(y, x)", "argument 2 of the function `D` must be real, got real[n]"),
    ("    x = D(A, 1.0)", "argument 1 of the function `D` must be real[n], got real[n, n]"),
    ("    x = D(x, s=1.0)", "the function `D` takes its arguments by position"),
])
def test_call_diagnostics(line, message):
    text = SPEC.format(flag="").replace("    x = D(x - eta * A.T @ (A @ x - y), 0.1 * layer + 1)", line)
    assert message in _errors(text)


@pytest.mark.parametrize("old, new, message", [
    ("data D : function(real[n], real) -> real[n]", "data D : function(real[n], real) -> real[n] learned",
     "unknown annotation `learned` of function data"),
    ("data A : real[n, n]", "data A : real[n, n] nondifferentiable",
     "data `A` cannot be `nondifferentiable`: only function data takes an annotation"),
    ("input y : real[n]", "input y : function(real[n]) -> real[n]", "an input cannot be a function"),
    ("data D : function(real[n], real) -> real[n]", "data D : function() -> real[n]",
     "function data takes at least one argument"),
])
def test_declaration_diagnostics(old, new, message):
    assert message in _errors(SPEC.format(flag="").replace(old, new))


def test_the_manual_example_runs_as_described():
    """docs/language.md §3.3a: `denoised_gd` with a shrinkage equals the loop written out by hand."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "language.md").read_text(encoding="utf-8")
    spec = re.search(r"```unroll\n(spec denoised_gd .*?)```", text, re.DOTALL).group(1)
    generator = torch.Generator().manual_seed(0)
    A = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    y = torch.randn(3, 6, generator=generator, dtype=torch.float64)
    net = load_text(spec, "denoised_gd")(A, shrink)
    x = torch.zeros(3, 4, dtype=torch.float64)
    for _ in range(5):
        residual = x @ A.T - y
        x = shrink(x - 0.5 * residual @ A, residual.norm(dim=1) / 6 ** 0.5)
    torch.testing.assert_close(net(y), x, rtol=1e-12, atol=1e-12)
