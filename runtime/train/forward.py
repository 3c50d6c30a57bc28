"""The module the optimiser (and DistributedDataParallel) sees: one forward that returns either the
network's outputs or its outputs together with the per-layer states (deep supervision).

Routing the per-layer states through this forward matters under DDP: a loss computed from
`ddp.module.trace(y)` bypasses DDP's forward, so DDP never prepares the gradient all-reduce and the
replicas silently drift apart.  Here `DDP(NetForward(net))(inputs, mode="trace")` runs the traced
network inside DDP's forward."""

from __future__ import annotations

from torch import nn
from unroll.runtime.module import UnrolledModule

from .layers import depth as run_depth


class NetForward(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, inputs: dict, mode: str = "output", depth: int | None = None):
        """mode "output": {output name: tensor}; mode "trace": ({output name: tensor}, [states per layer
        boundary]); depth: run only the first `depth` layers."""
        net = self.net
        if not isinstance(net, UnrolledModule):  # a composition (unroll.train.Chain): a dict of outputs
            if mode != "output" or depth is not None:
                raise ValueError("per-layer training (stage-wise, deep supervision) needs a generated network, "
                                 f"not a {type(net).__name__}")
            return net(inputs)
        with run_depth(net, depth):
            args = net._bind_inputs((), inputs)
            record = [] if mode == "trace" else None
            values = net._unrolled(*args, record=record)
        outputs = dict(zip(net.output_names, values if isinstance(values, tuple) else (values,)))
        return (outputs, record) if mode == "trace" else outputs
