"""One tensor per layer from a stacked per-layer parameter, and the per-layer views a trainer optimises.

A generated module keeps each per-layer parameter as ONE tensor `[layers, ...]` (a constrained one: its
module's raw tensor, runtime/params.py) and its forward takes one tensor per layer with
`self._per_layer(name)`: normally `value.unbind(0)`, which autograd differentiates by stacking the layers'
gradients into one `[layers, ...]` gradient.

A trainer that trains some layers only (stage-wise) or at per-layer learning rates installs *views*
(`installed(net, views)`): for some layers l, a leaf `nn.Parameter` that shares the storage of slice l of the
raw stacked tensor.  While they are installed, `self._per_layer(name)` gives, for a layer with a view, the value
computed from the view (its gradient lands on the view, which the optimiser updates in place, so the stacked
parameter changes with it) and, for every other layer, a slice that does not require a gradient: autograd
neither computes the gradient of a frozen layer nor backpropagates through the layers before the first
trained one, and each layer's learning rate is its own optimiser parameter group.  The values, and so the
outputs, are bit for bit those of the stacked parameter.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def raw_tensor(value) -> nn.Parameter:
    """The trainable tensor behind a spec parameter: the parameter itself, or its constraint module's raw one."""
    return getattr(value, value.raw_name) if isinstance(value, nn.Module) else value


def layer_values(net: nn.Module, name: str) -> tuple[torch.Tensor, ...]:
    """Per-layer parameter `name` of `net` (constraint applied) as one tensor per layer."""
    value = getattr(net, name)
    constrained = isinstance(value, nn.Module)
    views = net.__dict__.get("_layer_views")
    trained = views.get(name) if views is not None else None  # {}: every layer is a constant
    if trained is None:
        return (value() if constrained else value).unbind(0)
    with torch.no_grad():  # the layers without a view: constants for autograd (a view of a leaf made under
        fixed = (value() if constrained else value.detach()).unbind(0)  # no_grad still requires grad: detach)
    if constrained:
        return tuple(value.transform(trained[l], l) if l in trained else v for l, v in enumerate(fixed))
    return tuple(trained.get(l, v) for l, v in enumerate(fixed))


def viewable(net: nn.Module) -> tuple[str, ...]:
    """The per-layer parameters of `net` that may be viewed one layer at a time: those its forward reads with
    `self._per_layer` (a generated network's `layer_split`) whose stacked tensor is trainable."""
    return tuple(name for name in getattr(type(net), "layer_split", ())
                 if raw_tensor(getattr(net, name)).requires_grad)


def make_views(net: nn.Module, name: str, layers) -> dict[int, nn.Parameter]:
    """A leaf parameter for each of `layers` of per-layer parameter `name`, sharing the storage of its slice of
    the raw stacked tensor (an optimiser step on the view changes the stacked parameter)."""
    raw = raw_tensor(getattr(net, name))
    return {l: nn.Parameter(raw.data[l]) for l in layers}


@contextlib.contextmanager
def installed(net: nn.Module, views: dict[str, dict[int, nn.Parameter]]):
    """Inside the block, `net`'s forward reads the layers that have a view from the view (see the module's
    docstring); the generated class lists the parameters its forward reads with `_per_layer` in `layer_split`."""
    unknown = set(views) - set(getattr(type(net), "layer_split", ()))
    if unknown:
        raise ValueError(f"layer views: {type(net).__name__} does not read {sorted(unknown)} one layer at a time "
                         "(a network compiled for a memory mode slices its stacks per segment)")
    previous = net.__dict__.get("_layer_views")
    net.__dict__["_layer_views"] = views
    try:
        yield net
    finally:
        if previous is None:
            net.__dict__.pop("_layer_views", None)
        else:
            net.__dict__["_layer_views"] = previous


def split_layers(net: nn.Module) -> list[nn.Parameter]:
    """For a training loop of one's own: view every layer of every trainable per-layer parameter that `net`'s
    forward reads one layer at a time, for good (until `join_layers(net)`), and return what the optimiser
    should take: the views, then every other trainable parameter.  The backward pass then gives each layer its
    own gradient, as a hand-written `nn.ParameterList` does, instead of stacking them into one [layers, ...]
    gradient; `state_dict`, `parameter_values()` and checkpoints still see (and share storage with) the
    stacked parameters."""
    names = viewable(net)
    views = {name: make_views(net, name, range(type(net).num_layers)) for name in names}
    net.__dict__["_layer_views"] = views
    stacked = {id(raw_tensor(getattr(net, name))) for name in names}
    return [v for name in names for v in views[name].values()] + [
        p for p in net.parameters() if p.requires_grad and id(p) not in stacked]


def join_layers(net: nn.Module) -> None:
    """Undo `split_layers`: the forward reads the stacked parameters again (their values are the views')."""
    net.__dict__.pop("_layer_views", None)


__all__ = ["installed", "join_layers", "layer_values", "make_views", "raw_tensor", "split_layers", "viewable"]
