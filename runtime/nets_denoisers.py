"""Denoiser sub-networks for plug-in hybrids: `dncnn` (a residual CNN, x − R(x), optionally conditioned
on the noise level, optionally with a Lipschitz bound on R) and `unet` (an encoder-decoder with skips).

The Lipschitz bound normalises each convolution by its norm *as an operator on images* (the zero-padded
'same' convolution x ↦ W ∗ x), estimated by power iteration on x ↦ Wᵀ ∗ (W ∗ x) with a persistent
vector kept as a buffer. It is not torch's `spectral_norm`, which normalises the weight reshaped to a
[out, in·k·k] matrix: that matrix's norm is neither an upper nor a lower bound of the operator's."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

# power iterations run when the persistent vector is (re)initialised, for a new image size
WARMUP_ITERATIONS = 300


class SpectralConv2d(nn.Module):
    """A 2-D convolution with zero 'same' padding (odd kernel). With `bound=c`, the weight used is
    W / max(1, σ / c), σ the power-iteration estimate of the operator norm of x ↦ W ∗ x on the images of
    the current size, so the layer's Lipschitz constant is at most c (up to the estimate's accuracy).

    The persistent vector `u` [1, in, h, w] is a buffer: it is (re)initialised, deterministically, for
    each new image size and refined by one power iteration in training mode whenever the weight has
    changed since the last refinement (once per optimiser step, however often the layer is called: a
    checkpointed backward that recomputes the forward sees the same normalisation)."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, bound: float | None = None):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2)
        self.bound = bound
        self.register_buffer("u", torch.empty(0) if bound is not None else None)
        self._refined_version = None  # the weight's version when u was last refined

    @property
    def weight(self) -> torch.Tensor:
        return self.conv.weight

    @property
    def bias(self) -> torch.Tensor:
        return self.conv.bias

    def _apply_operator(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weight, padding=self.conv.padding)

    def _apply_adjoint(self, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y, weight, padding=self.conv.padding)

    def _power_steps(self, u: torch.Tensor, iterations: int) -> torch.Tensor:
        """`iterations` steps u ← AᵀA u / ‖AᵀA u‖ (A the convolution operator), without gradients."""
        weight = self.conv.weight.detach()
        with torch.no_grad():
            for _ in range(iterations):
                v = self._apply_adjoint(self._apply_operator(u, weight), weight)
                norm = torch.linalg.vector_norm(v)
                if norm == 0:  # a zero weight: any unit vector is a singular vector
                    break
                u = v / norm
        return u

    def _start_vector(self, channels: int, height: int, width: int) -> torch.Tensor:
        """A deterministic random unit vector [1, channels, height, width] (seeded by the image size)."""
        generator = torch.Generator().manual_seed(1000003 * height + width)
        u = torch.randn((1, channels, height, width), generator=generator, dtype=torch.float64)
        u = u / torch.linalg.vector_norm(u)
        return u.to(dtype=self.conv.weight.dtype, device=self.conv.weight.device)

    def operator_norm(self, height: int, width: int, iterations: int = 500) -> float:
        """The operator norm of x ↦ W ∗ x (the raw weight) on images height × width, by `iterations`
        power iterations from a fresh vector (for checks; the forward pass uses the persistent one)."""
        u = self._power_steps(self._start_vector(self.conv.in_channels, height, width), iterations)
        return float(torch.linalg.vector_norm(self._apply_operator(u, self.conv.weight.detach())))

    def effective_weight(self, height: int, width: int) -> torch.Tensor:
        """The weight the layer uses on images height × width (normalised when a bound is set)."""
        weight = self.conv.weight
        if self.bound is None:
            return weight
        shape = (1, self.conv.in_channels, height, width)
        if tuple(self.u.shape) != shape or self.u.dtype != weight.dtype or self.u.device != weight.device:
            self.u = self._power_steps(self._start_vector(*shape[1:]), WARMUP_ITERATIONS)
            self._refined_version = weight._version
        elif self.training and torch.is_grad_enabled() and weight._version != self._refined_version:
            self.u = self._power_steps(self.u, 1)
            self._refined_version = weight._version
        sigma = torch.linalg.vector_norm(self._apply_operator(self.u, weight))
        return weight / torch.clamp(sigma / self.bound, min=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.effective_weight(x.shape[-2], x.shape[-1])
        return F.conv2d(x, weight, self.conv.bias, padding=self.conv.padding)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # the persistent vector's shape is that of the last image size: take the saved one's
        saved = state_dict.get(prefix + "u")
        if saved is not None and self.u is not None and saved.shape != self.u.shape:
            self.u = torch.empty_like(saved, dtype=self.conv.weight.dtype, device=self.conv.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DnCNN(nn.Module):
    """A residual denoiser D(x) = x − R(x) (Zhang et al. 2017, without batch normalisation): R is
    `depth` convolutions `kernel`×`kernel` (zero 'same' padding), `width` channels, ReLU between them.
    [batch, in, h, w] -> [batch, in, h, w].

    `sigma="input"`: R also sees the noise level σ as a constant extra channel (`forward(x, sigma)`).
    `lipschitz=L`: each convolution is normalised to operator norm ≤ L^(1/depth), so Lip(R) ≤ L.
    `init="zero"` zeroes R's last convolution: D starts as the identity."""

    def __init__(self, in_channels: int, out_channels: int | None = None, width: int = 64, depth: int = 17,
                 kernel: int = 3, init: str = "default", lipschitz: float | None = None, sigma: str | None = None):
        super().__init__()
        if out_channels is not None and out_channels != in_channels:
            raise ValueError(f"dncnn: out ({out_channels}) must equal in ({in_channels}): D(x) = x - R(x)")
        if depth < 1:
            raise ValueError("dncnn: depth must be at least 1")
        if torch.is_tensor(lipschitz) and lipschitz.numel() == 1:
            lipschitz = float(lipschitz)
        if lipschitz is not None and (isinstance(lipschitz, bool) or not isinstance(lipschitz, (int, float))
                                      or not math.isfinite(lipschitz) or lipschitz <= 0):
            raise ValueError(f"dncnn: lipschitz must be a positive number, got {lipschitz!r}")
        self.conditioned = sigma == "input"
        self.lipschitz = None if lipschitz is None else float(lipschitz)
        bound = None if lipschitz is None else float(lipschitz) ** (1.0 / depth)
        convs = []
        channels = in_channels + (1 if self.conditioned else 0)
        for i in range(depth):
            last = i == depth - 1
            convs.append(SpectralConv2d(channels, in_channels if last else width, kernel, bound))
            channels = width
        self.convs = nn.ModuleList(convs)
        if init == "zero":
            nn.init.zeros_(convs[-1].conv.weight)
            nn.init.zeros_(convs[-1].conv.bias)

    def residual(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        """R(x) (the predicted noise)."""
        h = x
        if self.conditioned:
            if sigma is None:
                raise TypeError("dncnn: this denoiser is conditioned on the noise level: call it as D(x, sigma)")
            level = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
            level = level.reshape(level.shape + (1,) * (4 - level.dim())) if level.dim() <= 1 else level
            h = torch.cat([x, level.expand(x.shape[0], 1, x.shape[2], x.shape[3])], dim=1)
        for i, conv in enumerate(self.convs):
            h = conv(h)
            if i < len(self.convs) - 1:
                h = torch.relu(h)
        return h

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
        return x - self.residual(x, sigma)

    def lipschitz_bound(self, height: int, width: int, iterations: int = 500) -> float:
        """An upper bound of Lip(R) on images height × width: the product of the effective
        convolutions' operator norms (ReLU is 1-Lipschitz), each by `iterations` power iterations."""
        bound = 1.0
        for conv in self.convs:
            weight = conv.effective_weight(height, width).detach()
            probe = SpectralConv2d(conv.conv.in_channels, conv.conv.out_channels, conv.conv.kernel_size[0])
            probe = probe.to(dtype=weight.dtype, device=weight.device)
            with torch.no_grad():
                probe.conv.weight.copy_(weight)
            bound *= probe.operator_norm(height, width, iterations)
        return bound


class UNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015): `levels` resolutions, two convolutions `kernel`×`kernel` with
    ReLU per level (`width`·2^l channels at level l), 2×2 max pooling down, 2×2 transposed convolutions
    up, skip connections by concatenation, a final 1×1 convolution to `out` channels.
    [batch, in, h, w] -> [batch, out, h, w]; images are zero-padded to a multiple of 2^(levels-1) and
    the result cropped back. `init="zero"` zeroes the final convolution (the net starts as zero)."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, levels: int = 3, kernel: int = 3,
                 init: str = "default"):
        super().__init__()
        pad = kernel // 2

        def double(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=pad), nn.ReLU(),
                                 nn.Conv2d(cout, cout, kernel, padding=pad), nn.ReLU())

        self.levels = levels
        self.down = nn.ModuleList()
        channels = in_channels
        for level in range(levels):
            self.down.append(double(channels, width * 2 ** level))
            channels = width * 2 ** level
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for level in range(levels - 1, 0, -1):
            self.upsample.append(nn.ConvTranspose2d(width * 2 ** level, width * 2 ** (level - 1), 2, stride=2))
            self.up.append(double(width * 2 ** level, width * 2 ** (level - 1)))
        self.head = nn.Conv2d(width, out_channels, 1)
        if init == "zero":
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        multiple = 2 ** (self.levels - 1)
        h = F.pad(x, (0, (-width) % multiple, 0, (-height) % multiple))
        skips = []
        for level, block in enumerate(self.down):
            if level > 0:
                h = F.max_pool2d(h, 2)
            h = block(h)
            skips.append(h)
        for upsample, block, skip in zip(self.upsample, self.up, reversed(skips[:-1])):
            h = block(torch.cat([skip, upsample(h)], dim=1))
        return self.head(h)[..., :height, :width]


def apply_conditioned(net: nn.Module, x: torch.Tensor, sigma, x_batched: bool, sigma_batched: bool) -> torch.Tensor:
    """A noise-level conditioned denoiser `D(x, sigma)`: x [..., C, h, w] (leading axes, the batch axis
    included, are images of their own), sigma a number, shared or one per sample."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    if not x_batched:
        x = x.unsqueeze(0)
    if sigma_batched and not x_batched:
        x = x.expand((sigma.shape[0],) + tuple(x.shape[1:]))
    lead = x.shape[:-3]
    level = sigma.reshape(sigma.shape + (1,) * (len(lead) - sigma.dim())).expand(lead)
    out = net(x.reshape((-1,) + tuple(x.shape[-3:])), level.reshape(-1))
    out = out.reshape(tuple(lead) + tuple(out.shape[-3:]))
    return out if (x_batched or sigma_batched) else out.squeeze(0)
