"""Functional sub-networks (`net h : mlp(...) functional(nw)`): a network whose weights are a value of
the algorithm (a state it updates: EKF training, MSA), not parameters of the module.

`FunctionalMLP` holds no trainable parameters: it knows the architecture of `runtime.nets.MLP`
(`depth` linear layers, ReLU between them) and the layout of its weights flattened in
`parameters()` order (per layer: the weight [out, in] row-major, then the bias [out]), so
`torch.nn.utils.parameters_to_vector(MLP(...).parameters())` is a valid weight vector.  `initial` is a
buffer: PyTorch's default `nn.Linear` initialisation (weights and biases uniform in
±1/sqrt(fan_in)) drawn from a generator seeded by the module's `seed`, on the CPU in float64, so a
seed gives the same numbers everywhere.  A call takes its weights as an argument, one vector for all
samples or one per sample (then each sample's rows go through its own network: batched matrix
products, no `vmap` needed), and is differentiable in them (`jacobian(h(x, weights=w), w)`)."""

from __future__ import annotations

import math

import torch
from torch import nn


class FunctionalMLP(nn.Module):
    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 2,
                 init: str = "default", seed: int = 0, dtype=None, device=None):
        super().__init__()
        for option, size in (("in", in_features), ("out", out_features), ("width", width), ("depth", depth)):
            if isinstance(size, bool) or not isinstance(size, int) or size < 1:
                raise ValueError(f"mlp: the size `{option}` must be a positive integer, got {size!r}")
        features = [in_features] + [width] * (depth - 1) + [out_features]
        self.shapes = [(features[i + 1], features[i]) for i in range(depth)]  # (out, in) of each linear layer
        self.layer_sizes = [o * i + o for o, i in self.shapes]
        self.size = sum(self.layer_sizes)
        self.in_features, self.out_features = in_features, out_features
        generator = torch.Generator().manual_seed(int(seed))
        pieces = []
        for k, (o, i) in enumerate(self.shapes):
            bound = 1.0 / math.sqrt(i)
            for n in (o * i, o):
                piece = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * bound
                pieces.append(piece * 0 if init == "zero" and k == depth - 1 else piece)
        self.register_buffer("initial", torch.cat(pieces).to(dtype=dtype, device=device))

    def extra_repr(self) -> str:
        return (f"in={self.in_features}, out={self.out_features}, layers={self.shapes}, "
                f"weights={self.size} (a value of the algorithm)")

    def forward(self, x: torch.Tensor, weights: torch.Tensor, x_batched: bool, w_batched: bool) -> torch.Tensor:
        """x: [(batch,) ..., in]; weights: [(batch,) size] -> [(batch,) ..., out]."""
        if weights.shape[-1] != self.size:
            raise ValueError(f"functional mlp: weights of length {self.size} expected, got {weights.shape[-1]}")
        if w_batched and not x_batched:
            x = x.unsqueeze(0).expand((weights.shape[0],) + tuple(x.shape))
        lead = tuple(x.shape[:-1])
        if w_batched:  # one network per sample: [batch, rows, in]
            h = x.reshape(x.shape[0], -1, x.shape[-1])
        else:
            h = x.reshape(-1, x.shape[-1])
        start = 0
        for k, (o, i) in enumerate(self.shapes):
            weight = weights[..., start:start + o * i].reshape(weights.shape[:-1] + (o, i))
            bias = weights[..., start + o * i:start + o * i + o]
            start += o * i + o
            h = h @ weight.transpose(-1, -2) + (bias.unsqueeze(-2) if w_batched else bias)
            if k < len(self.shapes) - 1:
                h = torch.relu(h)
        return h.reshape(lead + (self.out_features,))


def make_functional_net(kind: str, seed, dtype, device, **kwargs) -> FunctionalMLP:
    if kind != "mlp":
        raise ValueError(f"functional sub-networks are MLPs, not {kind!r}")
    return FunctionalMLP(**kwargs, seed=0 if seed is None else seed, dtype=dtype, device=device)
