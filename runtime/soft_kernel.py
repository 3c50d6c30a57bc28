"""The soft threshold with a learned threshold as a custom autograd Function (runtime/ops.py `soft` calls it):
two forward forms, one backward (docs/design.md, "Kernels with two forms")."""

from __future__ import annotations

import math

import torch


def _cpu_scalar_threshold(v: torch.Tensor, theta: torch.Tensor) -> float | None:
    """θ as a Python number where one fused `softshrink` kernel may apply it (one threshold for every entry, on
    the CPU, θ ≥ 0, eager): reading the number would sync a GPU, break a compiled graph and make a tracer warn
    that the value becomes a constant, so those keep the tensor form."""
    if torch.compiler.is_compiling() or torch._C._is_tracing():
        return None
    if theta.numel() != 1 or not v.is_cpu or not theta.is_cpu:  # (`is_cpu`: a flag; `.device.type` builds a device)
        return None
    value = float(theta)
    return value if 0 <= value < math.inf else None  # (softshrink refuses ∞; NaN: the tensor form propagates it)


class _SoftThreshold(torch.autograd.Function):
    """Real soft threshold with its derivative written out.  Forward: one fused `softshrink` kernel where θ is one
    non-negative number on the CPU, else one allocation (|v| − θ, relu and the sign applied in place): both
    give the same bits.  The backward reads only the output: out ≠ 0 is the support (one fused kernel,
    `softshrink_backward` of the output at 0) and ∂out/∂θ = −sign(out) (a dot product for one θ).  Second
    derivatives vanish almost everywhere, so the backward may itself be differentiated (create_graph)."""

    @staticmethod
    def forward(ctx, v, theta):
        learned = torch.is_tensor(theta)  # (else a negative Python number: no gradient)
        scalar = _cpu_scalar_threshold(v, theta) if learned else None
        if scalar is not None:
            out = torch.nn.functional.softshrink(v, scalar)
        else:
            out = v.abs().sub_(theta).relu_().copysign_(v)
        ctx.save_for_backward(out)
        ctx.theta_shape = theta.shape if learned else None
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        grad_v = torch.ops.aten.softshrink_backward(grad, out, 0.0) if ctx.needs_input_grad[0] else None
        grad_theta = None
        if ctx.theta_shape is not None and ctx.needs_input_grad[1]:
            if math.prod(ctx.theta_shape) == 1:
                grad_theta = -torch.dot(grad.reshape(-1), out.sign().reshape(-1)).reshape(ctx.theta_shape)
            else:
                grad_theta = -(grad * out.sign()).sum_to_size(ctx.theta_shape)
        return grad_v, grad_theta
