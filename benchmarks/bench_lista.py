#!/usr/bin/env python
"""Generated untied LISTA vs an idiomatic hand-written PyTorch LISTA.

    python benchmarks/bench_lista.py                 # torch's default thread count
    python benchmarks/bench_lista.py --threads 1     # torch.set_num_threads(1)
    python benchmarks/bench_lista.py --reps 40 --soft clamp

Setting (the issue's): `lista_untied`, 16 layers, A 250x500, batch 1000, float32.
Both networks get *identical* weights (the baseline copies the generated
network's initial We, Wt and theta values); the script first asserts they give
the same output and the same weight gradients, then times, alternating
generated / hand-written inside every repetition (the order rotates):

    forward, torch.no_grad()
    forward, grad enabled (builds the autograd graph, no backward)
    forward + backward, loss = output.square().sum()

and prints the median time of each and the median over repetitions of the
per-repetition ratio generated / hand-written (< 1: generated is faster).

The hand-written baseline is what a competent researcher writes: an nn.Module
with We [L,m,n], Wt [L,m,m], theta [L] as plain Parameters and the loop

    x = soft(x @ Wt[l].T + y @ We[l].T, theta[l])

with soft = sign(v) * relu(|v| - theta) (the textbook form; `--soft` picks
another: `relu2` = relu(v-t) - relu(-v-t), the generated code's form;
`clamp` = v - clamp(v, -t, t)).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unroll
from _common import Stats, alternate, machine, median_ratio, spread, table

SOFT = {
    "sign": lambda v, t: torch.sign(v) * torch.relu(v.abs() - t),
    "relu2": lambda v, t: torch.relu(v - t) - torch.relu(-v - t),
    "clamp": lambda v, t: v - torch.clamp(v, -t, t),
}


class HandLISTA(nn.Module):
    """Untied LISTA as one would write it by hand."""

    def __init__(self, We: torch.Tensor, Wt: torch.Tensor, theta: torch.Tensor, soft="sign"):
        super().__init__()
        self.We = nn.Parameter(We.detach().clone())        # [L, m, n]
        self.Wt = nn.Parameter(Wt.detach().clone())        # [L, m, m]
        self.theta = nn.Parameter(theta.detach().clone())  # [L]
        self.soft = SOFT[soft]

    def forward(self, y: torch.Tensor) -> torch.Tensor:  # y: [batch, n]
        x = y.new_zeros(y.shape[0], self.Wt.shape[1])
        for l in range(self.Wt.shape[0]):
            x = self.soft(x @ self.Wt[l].T + y @ self.We[l].T, self.theta[l])
        return x


def make_problem(n, m, batch, dtype, seed=0):
    """Synthetic sparse coding: unit-norm Gaussian dictionary, 10 % sparse codes, 1 % noise."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0, keepdim=True)
    x = torch.randn(batch, m, generator=g, dtype=torch.float64) * (torch.rand(batch, m, generator=g) < 0.1)
    y = x @ A.T + 0.01 * torch.randn(batch, n, generator=g, dtype=torch.float64)
    return A.to(dtype), y.to(dtype)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) (default: torch's default)")
    p.add_argument("--reps", type=int, default=30, help="timed repetitions per mode (default 30, at least 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up calls per implementation (default 3)")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--n", type=int, default=250)
    p.add_argument("--m", type=int, default=500)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--soft", choices=sorted(SOFT), default="sign", help="baseline's soft threshold (default sign)")
    p.add_argument("--float64", action="store_true", help="float64 instead of float32")
    p.add_argument("--max-other-cpu", type=float, default=None,
                   help="discard and re-run a repetition during which other processes used more than this many "
                        "CPUs (default: the cores left free by --threads + 0.1, or 0.25 when torch uses "
                        "them all; a large value keeps everything)")
    p.add_argument("--budget", type=float, default=25.0,
                   help="seconds per mode after which noisy repetitions are kept anyway (default 25)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    dtype = torch.float64 if args.float64 else torch.float32

    A, y = make_problem(args.n, args.m, args.batch, dtype)
    Net = unroll.load("lista_untied", layers=args.layers)
    gen = Net(A=A, lam=0.1)
    hand = HandLISTA(gen.We, gen.Wt, gen.theta(), soft=args.soft)

    # ---- same function, same weights: outputs and weight gradients agree
    tol = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    with torch.no_grad():
        out_g, out_h = gen(y), hand(y)
    assert out_g.shape == out_h.shape == (args.batch, args.m)
    assert torch.allclose(out_g, out_h, **tol), f"outputs differ: max |diff| {(out_g - out_h).abs().max():.3g}"
    for net in (gen, hand):
        net.zero_grad(set_to_none=True)
        net(y).square().sum().backward()
    for name in ("We", "Wt"):
        gg, gh = getattr(gen, name).grad, getattr(hand, name).grad
        err = ((gg - gh).norm() / gh.norm()).item()
        assert err < (1e-4 if dtype == torch.float32 else 1e-10), f"{name} gradients differ (rel. error {err:.3g})"
    # theta: the generated net learns log_scale (theta = init * exp(log_scale)), so d/dlog_scale = theta * d/dtheta
    want = gen.theta().detach() * hand.theta.grad
    err = ((gen.theta.log_scale.grad - want).norm() / want.norm()).item()
    assert err < (1e-3 if dtype == torch.float32 else 1e-9), f"theta gradients differ (rel. error {err:.3g})"
    print(f"check: outputs allclose (max |diff| {(out_g - out_h).abs().max().item():.2e}), "
          f"We/Wt/theta gradients agree")

    def fwd_nograd(net):
        def f():
            with torch.no_grad():
                net(y)
        return f

    def fwd_grad(net):
        def f():
            net(y)
        return f

    def fwd_bwd(net):
        def f():
            for q in net.parameters():
                q.grad = None
            net(y).square().sum().backward()
        return f

    modes = [("forward, no_grad", fwd_nograd), ("forward, grad enabled", fwd_grad), ("forward+backward", fwd_bwd)]
    rows = []
    stats = Stats()
    for label, make in modes:
        pf: dict = {}
        t = alternate({"generated": make(gen), "hand": make(hand)}, args.reps, args.warmup,
                      max_other_cpu=args.max_other_cpu, stats=stats, budget_s=args.budget, faults=pf)
        mg, mh = statistics.median(t["generated"]), statistics.median(t["hand"])
        rows.append((label, f"{mg * 1e3:.1f}", f"{mh * 1e3:.1f}", f"{median_ratio(t['generated'], t['hand']):.3f}",
                     f"{spread(t['generated']) * 100:.0f}% / {spread(t['hand']) * 100:.0f}%",
                     f"{statistics.median(pf['generated']):.0f} / {statistics.median(pf['hand']):.0f}"))

    print(f"\nLISTA untied: {args.layers} layers, A {args.n}x{args.m}, batch {args.batch}, {str(dtype)[6:]}; "
          f"baseline soft = {args.soft}; {args.reps} reps after {args.warmup} warm-up")
    print(machine())
    print(table(rows, ("mode", "generated ms", "hand ms", "median ratio gen/hand", "IQR/median gen / hand",
                       "page faults/call gen / hand")))
    print(f"noise control: {stats.kept} repetitions kept, {stats.discarded} discarded (other processes too busy), {stats.contaminated_kept} kept although noisy (budget exhausted)"
          + (f"; {stats.short} measurement(s) cut short by the deadline" if stats.short else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
