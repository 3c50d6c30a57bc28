"""Backward modes of generated networks (`unrollc compile --backward MODE`): the layer loop run as
checkpointed segments, or as a fixed point differentiated implicitly.

A generated module in one of these modes has a method `_layers(first, last, record, *states,
*shared, *per_layer)` that runs layers `first .. last-1` and returns the new states; `shared` are
the values the layers read (inputs, shared parameters, hoisted invariants, data, sub-networks),
`per_layer` the stacked `[layers, ...]` per-layer parameters, which the layers index as
`p[layer]`.

* `checkpoint_layers`: the forward pass keeps only the states at segment boundaries; the backward
  pass recomputes one segment at a time and differentiates it.  Each segment reads only its slice of
  a per-layer parameter, and the gradient of a stacked parameter is written slice by slice into one
  `[layers, ...]` tensor, so that memory holds the parameters, their gradients, the boundary states and
  one segment's intermediate values -- not one gradient per layer plus their stack.
* `implicit_layers`: the layers share their parameters; the forward pass iterates the layer map
  `s -> f(s)` without a graph until the states stop changing (relative tolerance) or the maximum
  depth is reached; the backward pass solves the adjoint equation `u = g + J^T u` (J the Jacobian of
  f at the fixed point) by Anderson-accelerated iteration, and differentiates one application of f.
  Memory does not depend on the number of iterations.
"""

from __future__ import annotations

import itertools
import warnings

import torch
from torch import nn


class LayerSlice:
    """The layers `first .. first+len-1` of a stacked per-layer parameter, indexed by the absolute
    layer number (`p[layer]`), so a segment reads only its own slice."""

    def __init__(self, values, first: int):
        self.values = values
        self.first = first

    def __getitem__(self, layer):
        return self.values[layer - self.first]


def _wants_grad(values) -> bool:
    return any(torch.is_tensor(v) and v.requires_grad for v in values)


def _net_parameters(shared) -> list:
    """Trainable tensors inside sub-networks (and user operators) among the shared values."""
    out, seen = [], set()
    for value in shared:
        if isinstance(value, nn.Module):
            for p in value.parameters():
                if p.requires_grad and id(p) not in seen:
                    seen.add(id(p))
                    out.append(p)
    return out


def checkpoint_layers(fn, segment: int, first: int, last: int, states, shared, per_layer, record=None):
    """Run layers `first .. last-1` of `fn` in checkpointed segments of `segment` layers; returns
    the states after the last one.  With `record` (a trace) or without autograd the layers run as
    they are: a trace keeps every layer's states in the graph (deep supervision), so it gets no
    memory saving."""
    states, shared, per_layer = tuple(states), tuple(shared), tuple(per_layer)
    if record is not None or not torch.is_grad_enabled() or not (
            _wants_grad(states) or _wants_grad(shared) or _wants_grad(per_layer) or _net_parameters(shared)):
        slices = tuple(LayerSlice(p, 0) for p in per_layer)
        return tuple(fn(first, last, record, *states, *shared, *slices))
    nets = _net_parameters(shared)
    layout = (len(states), len(shared), len(per_layer), len(nets))
    return _Checkpointed.apply(fn, segment, first, last, layout, *states, *shared, *per_layer, *nets)


class _Checkpointed(torch.autograd.Function):
    """The layers as one autograd node: forward without a graph, keeping the boundary states;
    backward segment by segment, last segment first."""

    @staticmethod
    def forward(ctx, fn, segment, first, last, layout, *values):
        n_states, n_shared, n_per_layer, _n_nets = layout
        states = values[:n_states]
        shared = values[n_states:n_states + n_shared]
        per_layer = values[n_states + n_shared:n_states + n_shared + n_per_layer]
        bounds = list(range(first, last, segment)) + [last]
        boundaries = []
        for a, b in itertools.pairwise(bounds):
            boundaries.append(states)
            slices = tuple(LayerSlice(p[a:b], a) for p in per_layer)
            states = tuple(fn(a, b, None, *states, *shared, *slices))
        ctx.fn, ctx.bounds, ctx.layout = fn, bounds, layout
        ctx.boundaries = boundaries
        ctx.values = values
        # a state that a layer leaves unchanged may come back as the input object itself
        return tuple(s.clone() if any(s is v for v in values) else s for s in states)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grad_states):
        n_states, n_shared, n_per_layer, _n_nets = ctx.layout
        values = ctx.values
        shared = values[n_states:n_states + n_shared]
        per_layer = values[n_states + n_shared:n_states + n_shared + n_per_layer]
        nets = values[n_states + n_shared + n_per_layer:]
        grads = [None] * len(values)
        grad_states = list(grad_states)
        bounds = ctx.bounds
        for index in reversed(range(len(bounds) - 1)):
            a, b = bounds[index], bounds[index + 1]
            with torch.enable_grad():
                # states inside the loop depend on the layers before them: they need their gradients
                inputs = [_leaf(s, True if index > 0 else None) for s in ctx.boundaries[index]]
                shared_in = [_leaf(v) for v in shared]
                # one leaf per layer and parameter: the gradient of a layer's value is its own tensor (indexing
                # one [k, ...] leaf would give every layer a zero-filled [k, ...] gradient to add up)
                slices_in = [tuple(_leaf(v, p.requires_grad) for v in p[a:b].unbind(0)) for p in per_layer]
                outs = ctx.fn(a, b, None, *inputs, *shared_in, *(LayerSlice(s, a) for s in slices_in))
                pairs = [(o, g) for o, g in zip(outs, grad_states)
                         if torch.is_tensor(o) and o.requires_grad and g is not None]
                wrt = [t for t in inputs + shared_in + [v for s in slices_in for v in s] + list(nets)
                       if torch.is_tensor(t) and t.requires_grad]
                found = torch.autograd.grad([o for o, _ in pairs], wrt, [g for _, g in pairs],
                                            allow_unused=True) if pairs and wrt else [None] * len(wrt)
            del outs, pairs
            found = dict(zip(map(id, wrt), found))
            grad_states = [found.get(id(t)) if torch.is_tensor(t) else None for t in inputs]
            offset = n_states
            for i, t in enumerate(shared_in):
                _accumulate(grads, offset + i, found.get(id(t)) if torch.is_tensor(t) else None)
            offset += n_shared
            g = None
            for i, values in enumerate(slices_in):
                for layer, t in enumerate(values, start=a):
                    g = found.get(id(t))
                    if g is not None:  # row `layer` of the stack belongs to layer `layer`
                        if grads[offset + i] is None:
                            grads[offset + i] = torch.zeros_like(per_layer[i])
                        grads[offset + i][layer] = g
            offset += n_per_layer
            for i, t in enumerate(nets):
                _accumulate(grads, offset + i, found.get(id(t)))
            # release this segment before the next one is recomputed: its per-layer gradients (now rows of
            # the stack) and its boundary states would otherwise stay alive through the next segment's peak
            ctx.boundaries[index] = None
            del found, g, wrt, inputs, shared_in, slices_in
        for i in range(n_states):
            grads[i] = grad_states[i]
        ctx.boundaries = ctx.values = None
        return (None, None, None, None, None, *grads)


def _leaf(value, requires_grad=None):
    """A detached copy point for recomputation: tensors become leaves that require grad when the
    original did (or when asked)."""
    if not torch.is_tensor(value):
        return value
    want = value.requires_grad if requires_grad is None else requires_grad
    leaf = value.detach()
    if want and (leaf.is_floating_point() or leaf.is_complex()):
        leaf.requires_grad_(True)
    return leaf


def _accumulate(grads, index, g) -> None:
    if g is None:
        return
    grads[index] = g if grads[index] is None else grads[index] + g


# ---------------------------------------------------------------- implicit differentiation
def _flat(values) -> torch.Tensor:
    return torch.cat([v.reshape(-1) if not v.is_complex() else torch.view_as_real(v).reshape(-1) for v in values])


def _unflat(vector: torch.Tensor, like) -> list:
    out, pos = [], 0
    for v in like:
        if v.is_complex():
            n = v.numel() * 2
            out.append(torch.view_as_complex(vector[pos:pos + n].reshape(*v.shape, 2)))
        else:
            n = v.numel()
            out.append(vector[pos:pos + n].reshape(v.shape))
        pos += n
    return out


def anderson(g, x0: torch.Tensor, tol: float, max_iter: int, memory: int = 5, beta: float = 1.0,
             ridge: float = 1e-10):
    """Solve x = g(x) for a vector x by Anderson acceleration (type II, `memory` past residuals,
    mixing `beta`); stops when ||g(x) - x|| <= tol * ||g(x)||.  Returns (x, iterations, relative
    residual)."""
    xs, fs = [x0], []
    gx = g(x0)
    fs.append(gx - x0)
    x = gx
    residual = fs[0].norm() / gx.norm().clamp_min(torch.finfo(gx.dtype).tiny)
    if residual <= tol:
        return gx, 1, float(residual)
    for k in range(1, max_iter):
        xs.append(x)
        gx = g(x)
        fs.append(gx - x)
        residual = fs[-1].norm() / gx.norm().clamp_min(torch.finfo(gx.dtype).tiny)
        if residual <= tol:
            return gx, k + 1, float(residual)
        xs, fs = xs[-(memory + 1):], fs[-(memory + 1):]
        df = torch.stack([fs[i + 1] - fs[i] for i in range(len(fs) - 1)], dim=1)
        dx = torch.stack([xs[i + 1] - xs[i] for i in range(len(xs) - 1)], dim=1)
        gram = df.T @ df
        gram = gram + ridge * gram.diagonal().mean().clamp_min(torch.finfo(gram.dtype).tiny) * torch.eye(
            gram.shape[0], dtype=gram.dtype, device=gram.device)
        gamma = torch.linalg.solve(gram, df.T @ fs[-1])
        x = x + beta * fs[-1] - (dx + beta * df) @ gamma
    return x, max_iter, float(residual)


def implicit_layers(module, fn, tolerance: float, max_layers: int, states, shared, record=None):
    """The fixed point of the layer map s -> fn(s) (all layers alike), reached by iterating it at
    most `max_layers` times until ||f(s) - s|| <= tol ||f(s)||; its gradient by implicit
    differentiation.  Sets `module.fixed_point_iterations` and `module.fixed_point_residual`.  A
    trace (`record`) receives the states after every iteration (detached from the graph)."""
    states, shared, tol = tuple(states), tuple(shared), tolerance

    def step(values, rec=None):
        return tuple(fn(rec, *values, *shared))

    with torch.no_grad():
        current = states
        residual, iterations = float("inf"), 0
        for iterations in range(1, max_layers + 1):
            new = step(current, record)
            tensors = [(n, c) for n, c in zip(new, current) if torch.is_tensor(n)]
            diff = sum(float((n - c).abs().square().sum()) for n, c in tensors) ** 0.5
            size = sum(float(n.abs().square().sum()) for n, _ in tensors) ** 0.5
            residual = diff / size if size > 0 else (0.0 if diff == 0 else float("inf"))
            current = new
            if residual <= tol:
                break
    module.fixed_point_iterations, module.fixed_point_residual = iterations, residual
    if residual > tol:
        warnings.warn(f"{type(module).__name__}: fixed point not reached in {max_layers} layers "
                      f"(relative change {residual:.3g} > tolerance {tol:g}); raise the depth with --layers",
                      RuntimeWarning, stacklevel=3)
    if not torch.is_grad_enabled() or not (_wants_grad(states) or _wants_grad(shared) or _net_parameters(shared)):
        return current
    fixed = tuple(_leaf(s, False) for s in current)
    # one application of the layer map with autograd: connects the fixed point to the parameters
    attached = step(fixed)
    tensors = [i for i, s in enumerate(attached) if torch.is_tensor(s) and s.requires_grad]
    adjusted = _ImplicitAdjoint.apply(step, fixed, tol, max(2 * max_layers, 50), tuple(tensors),
                                      *(attached[i] for i in tensors))
    out = list(attached)
    for i, value in zip(tensors, adjusted):
        out[i] = value
    return tuple(out)


class _ImplicitAdjoint(torch.autograd.Function):
    """Identity in the forward pass; the backward pass replaces the incoming gradient g of the
    states by the solution u of u = g + J^T u (J = df/ds at the fixed point)."""

    @staticmethod
    def forward(ctx, step, fixed, tol, max_iter, indices, *values):
        ctx.step, ctx.fixed, ctx.tol, ctx.max_iter, ctx.indices = step, fixed, tol, max_iter, indices
        return tuple(v.view_as(v) for v in values)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        indices = ctx.indices
        grads = [torch.zeros_like(ctx.fixed[i]) if g is None else g for i, g in zip(indices, grads)]
        with torch.enable_grad():
            inputs = [_leaf(s, True) if i in indices else s for i, s in enumerate(ctx.fixed)]
            outs = ctx.step(inputs)
            outs = [outs[i] for i in indices]
            wrt = [inputs[i] for i in indices]
        rhs = _flat(grads)

        def adjoint_map(u):
            parts = _unflat(u, grads)
            pairs = [(o, p) for o, p in zip(outs, parts) if o.requires_grad]
            vjp = torch.autograd.grad([o for o, _ in pairs], wrt, [p for _, p in pairs], retain_graph=True,
                                      allow_unused=True)
            return rhs + _flat([torch.zeros_like(w) if v is None else v for v, w in zip(vjp, wrt)])

        solution, _iterations, residual = anderson(adjoint_map, rhs, ctx.tol, ctx.max_iter)
        if residual > ctx.tol:
            warnings.warn(f"implicit backward: the adjoint equation reached relative residual {residual:.3g} "
                          f"> tolerance {ctx.tol:g} in {ctx.max_iter} iterations", RuntimeWarning, stacklevel=2)
        ctx.fixed = ctx.step = None
        return (None, None, None, None, None, *_unflat(solution, grads))


__all__ = ["LayerSlice", "anderson", "checkpoint_layers", "implicit_layers"]
