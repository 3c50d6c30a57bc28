"""Per-layer control of a generated network whose per-layer parameters are stacked.

A generated module keeps each per-layer parameter as ONE tensor `[layers, ...]` (a `positive`
parameter: its `log_scale`, a `nonnegative`/`range`/`unit_columns` one: its `raw`), and a per-layer
sub-network as a ModuleList of `layers` networks.  Optimisers see whole tensors, so per-layer learning
rates are implemented here by *update scaling*: after `optimizer.step()`, the change of slice l of a
per-layer tensor is multiplied by rate[l]:

    p[l] ← p_before[l] + rate[l] · (p_after[l] − p_before[l])

Every standard optimiser (SGD with or without momentum, Adam, AdamW, RMSprop, ...) makes a step that is
proportional to its learning rate, so this is exactly a learning rate lr · rate[l] for layer l.  A rate
of 0 freezes the layer bit for bit; its gradient is also zeroed so that optimiser statistics do not
accumulate for frozen slices.  Shared (tied) parameters have no layer: they use the base rate.

`depth(net, k)` runs a network with only its first k layers (stage-wise training): the generated
loop runs `range(self.num_layers)`, so an instance attribute shortens it; the final stage, if the spec
has one, runs after layer k.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn


def layer_parameters(net) -> list[tuple[str, nn.Parameter, int | None]]:
    """The trainable parameters that belong to layers: (qualified name, parameter, layer) with layer None
    for a stacked tensor whose leading axis is the layer, an index for one member of a per-layer
    sub-network list."""
    layers = type(net).num_layers
    out = []
    per_layer = {row[0] for row in type(net).parameter_table if row[2] == "per_layer"}
    for attr, child in list(net.named_children()) + [(n, p) for n, p in net.named_parameters(recurse=False)]:
        if attr not in per_layer and not (isinstance(child, nn.ModuleList) and len(child) == layers):
            continue
        if isinstance(child, nn.Parameter):
            if child.requires_grad and child.dim() > 0 and child.shape[0] == layers:
                out.append((attr, child, None))
        elif isinstance(child, nn.ModuleList) and len(child) == layers:
            for index, member in enumerate(child):
                out.extend((f"{attr}.{index}.{n}", p, index) for n, p in member.named_parameters() if p.requires_grad)
        else:
            out.extend((f"{attr}.{n}", p, None) for n, p in child.named_parameters()
                       if p.requires_grad and p.dim() > 0 and p.shape[0] == layers)
    return out


def shared_parameters(net) -> list[nn.Parameter]:
    """Trainable parameters that belong to no single layer."""
    ids = {id(p) for _, p, _ in layer_parameters(net)}
    return [p for p in net.parameters() if p.requires_grad and id(p) not in ids]


class LayerRates:
    """Per-layer learning-rate multipliers for one network: `rates` is a sequence of `layers` numbers
    (or a dict {parameter name: sequence} for different rates per parameter; a parameter not named uses
    1).  Call `before_step()` before `optimizer.step()` and `after_step()` after it.

    `zero_grad_keeps_params`: the caller guarantees that the optimiser leaves a slice whose gradient has
    been zero since the optimiser was created exactly as it is (Adam, AdamW and SGD with or without momentum,
    without weight decay: their moments stay 0, so the update is 0).  Then a tensor whose rates are all 0 or 1
    (stage-wise freezing) only has its frozen gradients zeroed: no copy of the parameters before the step and
    no rescaling after it (for LISTA-CP's 2M weights, ~5 ms of a ~30 ms step).  `skip`: ids of parameters
    the optimiser trains through per-layer views instead (unroll.train.optim)."""

    def __init__(self, net, rates, shared_rate: float = 1.0, zero_grad_keeps_params: bool = False, skip=()):
        self.layers = type(net).num_layers
        self.entries = []  # (param, rates) rescaled after the step
        self.masked = []  # (param, 0/1 rates) whose frozen slices only need a zero gradient (zero_grad_keeps_params)
        for name, param, layer in layer_parameters(net):
            if id(param) in skip:  # trained through per-layer views (unroll.train.optim)
                continue
            row = rates.get(name.split(".")[0], [1.0] * self.layers) if isinstance(rates, dict) else rates
            row = [float(r) for r in row]
            if len(row) != self.layers:
                raise ValueError(f"layer rates: {len(row)} rates given for {name!r}, the network has "
                                 f"{self.layers} layers")
            if any(r < 0 for r in row):
                raise ValueError(f"layer rates: negative rate for {name!r}: {row}")
            if layer is None:
                scale = torch.tensor(row, dtype=param.dtype if param.is_floating_point() else torch.float32,
                                     device=param.device).reshape((self.layers,) + (1,) * (param.dim() - 1))
            else:
                scale = row[layer]
            if _all_ones(scale):
                continue
            if zero_grad_keeps_params and _zeros_and_ones(scale):
                self.masked.append((param, scale))
            else:
                self.entries.append((param, scale))
        self.shared = [] if shared_rate == 1.0 else [(p, float(shared_rate)) for p in shared_parameters(net)]
        self._saved: list = []

    def _all(self):
        return self.entries + self.shared

    def before_step(self) -> None:
        """Zero the gradients of frozen slices and remember the parameters that will be rescaled."""
        for param, scale in self._all() + self.masked:
            if param.grad is not None:
                if torch.is_tensor(scale):
                    param.grad.mul_((scale != 0).to(param.grad.dtype))
                elif scale == 0:
                    param.grad.zero_()
        self._saved = [param.detach().clone() for param, _ in self._all()]

    @torch.no_grad()
    def after_step(self) -> None:
        for (param, scale), old in zip(self._all(), self._saved):
            param.copy_(old.lerp_(param, scale))  # rate 0: exactly the old value, rate 1 the new one (one pass)
        self._saved = []


@torch.no_grad()
def copy_layer(net, source: int, target: int) -> None:
    """Give layer `target` the values of every per-layer trainable parameter of layer `source` (stage-wise
    warm start).  Shared parameters are left alone."""
    for _, param, layer in layer_parameters(net):
        if layer is None:
            param[target].copy_(param[source])
    members = {}
    for name, param, layer in layer_parameters(net):
        if layer is not None:
            attr, _index, rest = name.split(".", 2)
            members.setdefault((attr, rest), {})[layer] = param
    for by_layer in members.values():
        if source in by_layer and target in by_layer:
            by_layer[target].copy_(by_layer[source])


def _zeros_and_ones(scale) -> bool:
    return bool(((scale == 0) | (scale == 1)).all()) if torch.is_tensor(scale) else scale in (0, 1)


def _all_ones(scale) -> bool:
    return bool((scale == 1).all()) if torch.is_tensor(scale) else scale == 1


@contextlib.contextmanager
def depth(net, layers: int | None):
    """Run `net` with only its first `layers` layers inside the block (None: all)."""
    full = type(net).num_layers
    if layers is None or layers == full:
        yield net
        return
    if not 1 <= layers <= full:
        raise ValueError(f"depth: {layers} layers requested, the network has {full}")
    net.num_layers = layers
    try:
        yield net
    finally:
        del net.num_layers


__all__ = ["LayerRates", "copy_layer", "depth", "layer_parameters", "shared_parameters"]
