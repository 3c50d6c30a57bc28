"""Differentiation inside the forward pass (`grad` by autograd, `vjp`, `jvp`, `jacobian`) and the
per-sample freezing of `step until`.

Each differentiation receives the differentiated expression as a function of its variable and the
value to evaluate it at.  The variable is a fresh node of the autograd graph: a view of the value
when the outer computation is being differentiated (so the derivative stays differentiable,
`create_graph`), a detached leaf otherwise (under `torch.no_grad()` evaluation too).  Only the
function's own uses of the variable are differentiated, never the values computed from it before.
Samples never mix in a spec's expressions, so the gradient of the sum over the batch is the
per-sample gradient.
"""

from __future__ import annotations

import torch

__all__ = ["autograd_grad", "autograd_jacobian", "autograd_jvp", "autograd_vjp", "keep_active", "stop_mask"]


def _variable(x: torch.Tensor, outer: bool) -> torch.Tensor:
    if not (x.is_floating_point() or x.is_complex()):
        x = x.to(torch.get_default_dtype())
    if outer and x.requires_grad:
        return x.view_as(x)  # still in the outer graph: second-order terms reach what x depends on
    return x.detach().requires_grad_(True)


def _derivative(outputs, inputs, grad_outputs, outer: bool, retain: bool = False):
    (g,) = torch.autograd.grad(outputs, inputs, grad_outputs=grad_outputs, create_graph=outer,
                               retain_graph=outer or retain, allow_unused=True)
    return torch.zeros_like(inputs) if g is None else g


def autograd_grad(fn, x: torch.Tensor) -> torch.Tensor:
    """∇ₓ fn(x) per sample (fn gives one scalar per sample)."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        xv = _variable(x, outer)
        y = fn(xv)
        if not (torch.is_tensor(y) and y.requires_grad):
            return torch.zeros_like(xv).detach() if not outer else torch.zeros_like(xv)
        g = _derivative(y.sum(), xv, None, outer)
    return g if outer else g.detach()


def autograd_vjp(fn, x: torch.Tensor, v) -> torch.Tensor:
    """vᵀ ∂fn/∂x per sample."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        xv = _variable(x, outer)
        y = fn(xv)
        if not (torch.is_tensor(y) and y.requires_grad):
            return torch.zeros_like(xv).detach()
        v = torch.as_tensor(v, dtype=y.dtype, device=y.device).expand_as(y)
        g = _derivative(y, xv, v, outer)
    return g if outer else g.detach()


def autograd_jvp(fn, x: torch.Tensor, v) -> torch.Tensor:
    """∂fn/∂x · v per sample (two reverse passes: the vjp is linear in its vector u)."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        xv = _variable(x, outer)
        y = fn(xv)
        if not (torch.is_tensor(y) and y.requires_grad):
            return torch.zeros_like(y).detach() if torch.is_tensor(y) else torch.zeros(())
        u = torch.zeros_like(y, requires_grad=True)
        (g,) = torch.autograd.grad(y, xv, grad_outputs=u, create_graph=True, allow_unused=True)
        if g is None:
            return torch.zeros_like(y).detach()
        v = torch.as_tensor(v, dtype=g.dtype, device=g.device).expand_as(g)
        out = _derivative(g, u, v, outer)
    return out if outer else out.detach()


def autograd_jacobian(fn, x: torch.Tensor, batched: bool) -> torch.Tensor:
    """∂fn/∂x per sample: shape [batch, *y, *x] (batched) or [*y, *x]; one reverse pass per entry of y."""
    outer = torch.is_grad_enabled()
    with torch.enable_grad():
        xv = _variable(x, outer)
        y = fn(xv)
        lead = 1 if batched else 0
        y_shape = tuple(y.shape[lead:])
        x_shape = tuple(xv.shape[lead:])
        if not y.requires_grad:
            out = torch.zeros(tuple(y.shape[:lead]) + y_shape + x_shape, dtype=xv.dtype, device=xv.device)
            return out
        flat = y.reshape(tuple(y.shape[:lead]) + (-1,))
        rows = []
        count = flat.shape[-1]
        for i in range(count):
            rows.append(_derivative(flat[..., i].sum(), xv, None, outer, retain=i < count - 1))
        jac = torch.stack(rows, dim=lead).reshape(tuple(y.shape[:lead]) + y_shape + x_shape)
    return jac if outer else jac.detach()


def stop_mask(condition, batch: int, device) -> torch.Tensor:
    """The stopping condition of `step until` as a boolean per sample."""
    cond = torch.as_tensor(condition, device=device)
    return cond.to(torch.bool).reshape(-1).expand(batch) if cond.numel() == 1 else cond.to(torch.bool)


def keep_active(active: torch.Tensor, new, old):
    """`new` for the samples still running, `old` (their frozen value) for the others."""
    new = torch.as_tensor(new, device=active.device)
    mask = active.reshape((-1,) + (1,) * (max(new.dim(), torch.as_tensor(old).dim()) - 1))
    return torch.where(mask, new, old)
