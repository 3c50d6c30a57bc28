"""Helpers of bench_issue3.py: training, quality curves, grid search, timing pairs, verdicts, small images."""

from __future__ import annotations

import math
import statistics
import time

import numpy as np
import torch
from _common import alternate

F32, C64 = torch.float32, torch.complex64


def curve(net, inputs, metric):
    """metric(states) after every layer (index 0: the initial states), via the module's public
    `monitor` hook, which does not keep the iterates."""
    values = []
    with torch.no_grad():
        net.monitor(*inputs, on_layer=lambda index, states: values.append(metric(states)))
    return values


def first_reaching(values, target, higher_is_better):
    for i, v in enumerate(values):
        if (v >= target) if higher_is_better else (v <= target):
            return i
    return None


def train(net, loss_fn, n_train, steps, lr, batch, seed, cosine=True):
    """Adam on random mini-batches, cosine decay of the learning rate to 0.  A step whose loss is not finite
    is skipped (counted).  Returns (mean of the first losses, mean of the last, seconds, skipped steps)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    losses = []
    skipped = 0
    t0 = time.perf_counter()
    for step in range(steps):
        if cosine:
            for group in opt.param_groups:
                group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        idx = torch.randint(0, n_train, (min(batch, n_train),), generator=g)
        loss = loss_fn(net, idx)
        if not torch.isfinite(loss):
            skipped += 1
            continue
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    k = max(1, min(10, len(losses) // 5))
    first, last = (statistics.mean(losses[:k]), statistics.mean(losses[-k:])) if losses else (math.nan, math.nan)
    return first, last, time.perf_counter() - t0, skipped


def psnr(xh, x, peak=1.0):
    """Mean over the batch of the per-image PSNR (dB)."""
    mse = (xh - x).square().mean((-2, -1))
    return (10 * torch.log10(peak ** 2 / mse)).mean().item()


def min_over_shifts(err_fn, a, b, shift):
    """Elementwise (per sample) minimum of err_fn(roll(a, s), b) over circular shifts |s| <= shift."""
    best = None
    for i in range(-shift, shift + 1):
        for j in range(-shift, shift + 1):
            e = err_fn(torch.roll(a, (i, j), (-2, -1)), b)
            best = e if best is None else torch.minimum(best, e)
    return best


def psnr_shift(xh, x, shift=2):
    mse = min_over_shifts(lambda u, v: (u - v).square().mean((-2, -1)), xh, x, shift)
    return (10 * torch.log10(1.0 / mse)).mean().item()


def kernel_error_shift(k, kt, shift=2):
    """Mean relative error ||k - kt|| / ||kt|| of image-sized kernels (origin at [0, 0])."""
    err = min_over_shifts(lambda u, v: (u - v).flatten(-2).norm(dim=-1), k, kt, shift)
    return (err / kt.flatten(-2).norm(dim=-1)).mean().item()


def pad_kernel(k, h, w):
    """s x s kernels [..., s, s] (centre (s-1)//2) -> image-sized, centre at the origin (psf2otf)."""
    s1, s2 = k.shape[-2:]
    out = k.new_zeros(k.shape[:-2] + (h, w))
    out[..., :s1, :s2] = k
    return torch.roll(out, (-((s1 - 1) // 2), -((s2 - 1) // 2)), (-2, -1))


def image_kernel(k, h, w):
    """A kernel output as image-sized (origin at [0, 0]), whether it is s x s (centred) or already h x w."""
    return k if tuple(k.shape[-2:]) == (h, w) else pad_kernel(k, h, w)


def derivative_filters():
    d = np.zeros((2, 3, 3))
    d[0, 1, 1], d[0, 1, 2] = -1.0, 1.0  # horizontal forward difference (centre [1, 1])
    d[1, 1, 1], d[1, 2, 1] = -1.0, 1.0  # vertical forward difference
    return d


def dirac(s):
    k = np.zeros((s, s))
    k[(s - 1) // 2, (s - 1) // 2] = 1.0
    return k


def real_param_count(net):
    """Trainable real numbers: complex parameters count twice (sum(p.numel()) counts them once)."""
    ps = [p for p in net.parameters() if p.requires_grad]
    return sum(p.numel() for p in ps), sum(2 * p.numel() if p.is_complex() else p.numel() for p in ps)


def md_table(rows, header):
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def grid_search(make_net, grid, inputs, metric, target, higher_is_better, label, max_iters, extend_iters=0):
    """Run every grid point for `max_iters` iterations; choose the one that reaches `target` first, else the
    one with the best value, and when none reaches it and extend_iters > max_iters, run that one again for
    extend_iters iterations.  Returns (choice, {point: (reached_at, best, best_at, values)}, iterations run)."""
    found = {}

    def run(point, iters):
        values = curve(make_net(point, iters), inputs, metric)
        q = [v[0] if isinstance(v, tuple) else v for v in values]
        q = [v if math.isfinite(v) else (-math.inf if higher_is_better else math.inf) for v in q]
        reach = first_reaching(q, target, higher_is_better)
        best_at = int(np.argmax(q) if higher_is_better else np.argmin(q))
        found[point] = (reach, q[best_at], best_at, values)
        print(f"  [{label}] grid {point}, {iters} iterations: reaches the target at "
              f"{reach if reach is not None else '-'}; best {q[best_at]:.2f} at iteration {best_at}", flush=True)

    for point in grid:
        run(point, max_iters)

    def key(point):
        reach, best, _, _ = found[point]
        return (0, reach, 0.0) if reach is not None else (1, 0, -best if higher_is_better else best)

    choice = min(grid, key=key)
    if found[choice][0] is None and extend_iters > max_iters:
        run(choice, extend_iters)
        max_iters = extend_iters
    return choice, found, max_iters


def time_pair(fns, args, stats):
    """{name: fn} timed with alternate(); returns {name: median s}, {name: [s]}."""
    t = alternate(fns, args.reps, args.warmup, max_other_cpu=args.max_other_cpu, stats=stats, budget_s=args.budget)
    return {k: statistics.median(v) for k, v in t.items()}, t


def verdict(ratio, lower_bound, claims):
    out = []
    for label, value in claims:
        if lower_bound:
            state = ("reproduced (lower bound already exceeds it)" if ratio >= value
                     else "inconclusive (the lower bound is below it)")
        elif ratio >= 0.5 * value:
            state = "reproduced" if ratio <= 2 * value else f"exceeded ({ratio / value:.1f}x the claim)"
        else:
            state = f"not reproduced ({value / ratio:.0f}x smaller)" if value / ratio >= 2 else "not reproduced"
        out.append(f"{label.split(':')[0]} ({value:.1f}x): {state}")
    return "; ".join(out)


def classical_timing(make_net, point, n_iters, args):
    """The classical net to time: n_iters layers, or --max-timed-iters and a linear scale factor."""
    n_time = min(n_iters, args.max_timed_iters)
    return make_net(point, n_time), n_iters / n_time


# ============================================================ 1. ADMM-CSNet vs ADMM
