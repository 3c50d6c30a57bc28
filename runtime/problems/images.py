"""Synthetic images, kernels and operators shared by the imaging problems."""

from __future__ import annotations

import math

import torch


def rand(gen, *shape):
    return torch.rand(*shape, generator=gen, dtype=torch.float64)


def randn(gen, *shape):
    return torch.randn(*shape, generator=gen, dtype=torch.float64)


def cartoon_images(gen, batch, h, w, shapes=4):
    """Piecewise-constant images in [0, 1]: a background level plus a few rectangles and discs (the
    cartoon model behind TV and sparse-gradient priors)."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    images = 0.2 * rand(gen, batch, 1, 1).expand(batch, h, w).clone()
    for _ in range(shapes):
        level = 0.2 + 0.8 * rand(gen, batch, 1, 1)
        cy, cx = rand(gen, batch, 1, 1) * h, rand(gen, batch, 1, 1) * w
        ry, rx = (0.1 + 0.25 * rand(gen, batch, 1, 1)) * h, (0.1 + 0.25 * rand(gen, batch, 1, 1)) * w
        disc = rand(gen, batch, 1, 1) < 0.5
        inside_disc = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        inside_box = ((yy - cy).abs() < ry) & ((xx - cx).abs() < rx)
        region = torch.where(disc, inside_disc, inside_box)
        images = torch.where(region, level, images)
    return images


def gaussian_kernel(size, sigma):
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-r ** 2 / (2 * sigma ** 2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def motion_kernels(gen, batch, size):
    """Random short motion-blur kernels (a random walk of 2·size steps), nonnegative, sum 1."""
    kernels = torch.zeros(batch, size, size, dtype=torch.float64)
    for b in range(batch):
        y = x = (size - 1) / 2
        for _ in range(2 * size):
            kernels[b, round(y), round(x)] += 1.0
            angle = float(rand(gen, 1)) * 2 * math.pi
            y = min(max(y + math.sin(angle), 0), size - 1)
            x = min(max(x + math.cos(angle), 0), size - 1)
    return kernels / kernels.sum(dim=(1, 2), keepdim=True)


def circular_blur(images, kernel):
    """Circular convolution with a centred kernel (centre at index (s-1)//2), batched over images and,
    when `kernel` has a batch axis, one kernel per image."""
    h, w = images.shape[-2:]
    s = kernel.shape[-1]
    padded = torch.zeros(*kernel.shape[:-2], h, w, dtype=kernel.dtype)
    padded[..., :s, :s] = kernel
    padded = torch.roll(padded, shifts=(-((s - 1) // 2), -((s - 1) // 2)), dims=(-2, -1))
    return torch.fft.ifft2(torch.fft.fft2(images) * torch.fft.fft2(padded)).real


def derivative_filters():
    """The horizontal and vertical first differences on a 3x3 support."""
    d = torch.zeros(2, 3, 3, dtype=torch.float64)
    d[0, 1, 1], d[0, 1, 2] = -1.0, 1.0
    d[1, 1, 1], d[1, 2, 1] = -1.0, 1.0
    return d


def dirac(size):
    k = torch.zeros(size, size, dtype=torch.float64)
    k[(size - 1) // 2, (size - 1) // 2] = 1.0
    return k


def kspace_mask(gen, h, w, fraction):
    """Random 0/1 k-space sampling (unshifted: DC at [0, 0]) with the low frequencies always sampled."""
    mask = (rand(gen, h, w) < fraction).double()
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            mask[dy % h, dx % w] = 1.0
    return mask


def ray_transform(angles, detectors, h, w):
    """A small parallel-beam ray transform as a dense matrix [angles*detectors, h*w]: each pixel centre
    is projected on the detector axis of each angle and its unit mass split linearly between the two
    nearest bins."""
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64) - (h - 1) / 2,
                            torch.arange(w, dtype=torch.float64) - (w - 1) / 2, indexing="ij")
    radius = math.hypot(h, w) / 2
    K = torch.zeros(angles, detectors, h * w, dtype=torch.float64)
    pixel = torch.arange(h * w)
    for a in range(angles):
        theta = math.pi * a / angles
        t = (xx * math.cos(theta) + yy * math.sin(theta)).reshape(-1)
        pos = (t + radius) / (2 * radius) * (detectors - 1)
        lo = pos.floor().long().clamp(0, detectors - 2)
        frac = (pos - lo).clamp(0, 1)
        K[a, lo, pixel] += 1 - frac
        K[a, lo + 1, pixel] += frac
    return K.reshape(angles * detectors, h * w)
