"""Recurrent sub-networks: `convgru`, a convolutional GRU cell (DURR's stopping policy)."""

from __future__ import annotations

import torch
from torch import nn


class ConvGRU(nn.Module):
    """A convolutional GRU cell: input [batch, in, h, w], hidden state [batch, hidden, h, w] ->
    the new hidden state.  z = σ(conv([x, h])), r = σ(conv([x, h])), n = tanh(conv([x, r ⊙ h])),
    h' = (1 − z) ⊙ h + z ⊙ n (zero 'same' padding).  `init="zero"` zeroes the candidate convolution,
    so the hidden state starts as a decaying copy of itself: h' = (1 − z) ⊙ h."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3, init: str = "default"):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(in_channels + hidden_channels, 2 * hidden_channels, kernel, padding=kernel // 2)
        self.candidate = nn.Conv2d(in_channels + hidden_channels, hidden_channels, kernel, padding=kernel // 2)
        if init == "zero":
            nn.init.zeros_(self.candidate.weight)
            nn.init.zeros_(self.candidate.bias)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        z, r = torch.sigmoid(self.gates(torch.cat([x, h], dim=1))).chunk(2, dim=1)
        n = torch.tanh(self.candidate(torch.cat([x, r * h], dim=1)))
        return (1 - z) * h + z * n
