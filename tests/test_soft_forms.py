"""The soft threshold's two forward forms (runtime/soft_kernel.py `_SoftThreshold`): one fused `softshrink` kernel where
θ is one non-negative number on the CPU in eager mode, else the tensor form (|v| − θ, relu, copysign).  Both must
give the same values and the same gradients, the fused form must be the one eager CPU calls take, and a traced or
compiled graph must keep θ an input (reading it as a number would bake it into the graph)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from unroll import runtime as rt
from unroll.runtime import soft_kernel

F64 = torch.float64


def np_soft(v, t):
    """Soft threshold from its definition, sign(v)·max(|v| − t, 0), t ≥ 0."""
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def run(v, theta, forced_tensor_form: bool, monkeypatch):
    """Output and gradients (v, θ) of loss = Σ c·soft(v, θ), in one form."""
    with monkeypatch.context() as mp:
        if forced_tensor_form:
            mp.setattr(soft_kernel, "_cpu_scalar_threshold", lambda v, theta: None)
        vt = v.clone().requires_grad_()
        tt = theta.clone().requires_grad_()
        out = rt.soft(vt, tt)
        c = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).reshape(out.shape)
        (c * out).sum().backward()
    return out.detach(), vt.grad, tt.grad


@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
@pytest.mark.parametrize("value", [0.3, 0.0, -0.2])
@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_the_fused_and_the_tensor_form_agree(shape, value, dtype, monkeypatch):
    g = torch.Generator().manual_seed(7)
    v = torch.randn(9, 13, generator=g, dtype=dtype)
    v[0, :3] = torch.tensor([value, -value, 0.0], dtype=dtype)  # at the kink and at 0
    theta = torch.full(shape, value, dtype=dtype)
    fused = run(v, theta, False, monkeypatch)
    tensor = run(v, theta, True, monkeypatch)
    torch.testing.assert_close(fused[0], tensor[0], rtol=0, atol=0)  # same values (a zero's sign may differ)
    torch.testing.assert_close(fused[1], tensor[1], rtol=0, atol=0)
    torch.testing.assert_close(fused[2], tensor[2], rtol=1e-6 if dtype == torch.float32 else 1e-13, atol=0)
    assert fused[2].shape == theta.shape
    if value >= 0:  # (a negative θ is outside the operator's domain: both forms expand, sign(+0) = +1)
        t = float(theta.double().reshape(-1)[0])
        want = np_soft(v.double().numpy(), t)
        np.testing.assert_allclose(fused[0].double().numpy(), want, rtol=0, atol=1e-6 if dtype == torch.float32 else 0)
        c = torch.linspace(-1.0, 2.0, v.numel(), dtype=F64).reshape(v.shape)
        want_theta = -(c * torch.sign(v.double()) * (v.double().abs() > t)).sum()  # ∂/∂θ, analytic
        tol = 1e-5 if dtype == torch.float32 else 1e-13
        torch.testing.assert_close(fused[2].double().reshape(()), want_theta, rtol=tol, atol=tol)


def test_nan_and_infinite_entries_propagate_in_both_forms(monkeypatch):
    v = torch.tensor([[float("nan"), float("inf"), -float("inf"), 0.1, 2.0]], dtype=F64)
    for theta in (torch.tensor(0.5, dtype=F64), torch.tensor(float("nan"), dtype=F64)):
        fused, tensor = run(v, theta, False, monkeypatch)[0], run(v, theta, True, monkeypatch)[0]
        torch.testing.assert_close(fused, tensor, rtol=0, atol=0, equal_nan=True)
    assert torch.isnan(run(v, torch.tensor(0.5, dtype=F64), False, monkeypatch)[0][0, 0])
    # an infinite threshold (a diverging training run) zeroes every finite entry, as the tensor form does
    out = rt.soft(torch.tensor([[-3.0, 0.0, 2.0]]), torch.tensor(float("inf")))
    torch.testing.assert_close(out, torch.zeros(1, 3), rtol=0, atol=0)


def test_eager_cpu_calls_take_one_fused_kernel(monkeypatch):
    calls = []
    real = torch.nn.functional.softshrink
    monkeypatch.setattr(torch.nn.functional, "softshrink", lambda v, lam: calls.append(lam) or real(v, lam))
    v = torch.randn(4, 6, dtype=F64)
    rt.soft(v, torch.tensor(0.25, dtype=F64, requires_grad=True))
    assert calls == [0.25]
    rt.soft(v, torch.full((6,), 0.25, dtype=F64))  # one threshold per entry: the tensor form
    rt.soft(v, torch.tensor(-0.25, dtype=F64))  # a negative threshold (softshrink refuses it): the tensor form
    assert calls == [0.25]


def test_a_traced_graph_keeps_the_threshold_an_input():
    v = torch.randn(3, 5, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", torch.jit.TracerWarning)  # no value read as a Python number
        warnings.simplefilter("ignore", DeprecationWarning)  # (torch.jit.trace itself is deprecated)
        traced = torch.jit.trace(lambda v, t: rt.soft(v, t), (v, torch.tensor(0.2, dtype=F64)))
    for t in (0.2, 0.9):
        torch.testing.assert_close(traced(v, torch.tensor(t, dtype=F64)), rt.soft(v, t), rtol=0, atol=0)


def test_a_compiled_graph_keeps_the_threshold_an_input_without_graph_breaks():
    """fullgraph=True: a `float(θ)` or a `torch._C._is_tracing()` call inside the kernel breaks the graph."""
    f = torch.compile(lambda v, t: rt.soft(v, t), backend="eager", fullgraph=True)
    v = torch.randn(3, 5, dtype=F64, requires_grad=True)
    for t in (0.2, 0.9):
        theta = torch.tensor(t, dtype=F64, requires_grad=True)
        out = f(v, theta)
        torch.testing.assert_close(out, rt.soft(v.detach(), t), rtol=0, atol=0)
        out.sum().backward()
        assert theta.grad is not None and v.grad is not None


def test_double_backward_through_both_forms(monkeypatch):
    """create_graph: the backward is itself differentiable (d²/dv² = 0 a.e., and the v-gradient's derivative
    with respect to the incoming gradient is the support mask)."""
    for forced in (False, True):
        with monkeypatch.context() as mp:
            if forced:
                mp.setattr(soft_kernel, "_cpu_scalar_threshold", lambda v, theta: None)
            v = torch.tensor([[-2.0, -0.1, 0.05, 1.5]], dtype=F64, requires_grad=True)
            theta = torch.tensor(0.3, dtype=F64, requires_grad=True)
            (gv,) = torch.autograd.grad(rt.soft(v, theta).square().sum(), v, create_graph=True)
            torch.testing.assert_close(gv, torch.tensor([[-3.4, 0.0, 0.0, 2.4]], dtype=F64))
            (hv,) = torch.autograd.grad(gv.sum(), v)
            torch.testing.assert_close(hv, torch.tensor([[2.0, 0.0, 0.0, 2.0]], dtype=F64))
