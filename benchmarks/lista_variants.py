#!/usr/bin/env python
"""Where does the generated LISTA lose (or win) time?  Variants of the generated loop, timed
against the generated module itself (the investigation behind the suggestions in README.md).

    python benchmarks/lista_variants.py [--threads N] [--reps 20] [--modes fwd,grad,bwd]

Every variant runs on the generated module's own parameters (theta through its `positive`
reparametrisation), and is checked against it before timing.  Variants:

    generated      the generated module, unchanged (reference, ratio 1)
    inline         generated loop copied here (no argument checking: cost of _input_arg etc.)
    soft=sign      soft = sign(v) * relu(|v| - t)              instead of relu(v-t) - relu(-v-t)
    soft=clamp     soft = v - clamp(v, -t, t)
    soft=fn        soft as a torch.autograd.Function: forward v.abs().sub_(t).relu_().copysign_(v) (one
                   allocation), backward g * (out != 0) from the saved output
    soft=scaled    soft = t * softshrink(v / t, 1) (fused kernel; equal to rounding, not bitwise)
    layer0         first layer specialised: x = 0, so skip x @ Wt[0].T (constant folding of the zero state)
    addmm          v = torch.addmm(y @ We[l].T, x, Wt[l].T)   (the add fused into the GEMM)
    hoistWe        all y @ We[l].T of the L layers in one batched matmul before the loop
    theta_plain    theta read as a plain tensor (no init * exp(log_scale)): the reparametrisation's cost
    fn+layer0      layer0 + soft=fn (the two suggestions that pay, together)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unroll
from _common import Stats, alternate, machine, median_ratio, spread, table
from bench_lista import make_problem
from unroll import runtime as rt


def soft_sign(v, t):
    return torch.sign(v) * torch.relu(v.abs() - t)


def soft_clamp(v, t):
    return v - torch.clamp(v, -t, t)


class _Soft(torch.autograd.Function):
    """soft(v, t) = sign(v) * relu(|v| - t) computed in place on one fresh buffer (4 passes, 1 allocation);
    backward from the saved output only: dv = g * (out != 0), dt = -sum(g * sign(out))."""

    @staticmethod
    def forward(ctx, v, t):
        out = v.abs().sub_(t).relu_().copysign_(v)
        ctx.save_for_backward(out)
        ctx.t_shape = t.shape if torch.is_tensor(t) else None
        return out

    @staticmethod
    def backward(ctx, g):
        (out,) = ctx.saved_tensors
        gv = g * (out != 0) if ctx.needs_input_grad[0] else None
        gt = None
        if ctx.needs_input_grad[1]:
            gt = -(g * out.sign()).sum_to_size(ctx.t_shape)
        return gv, gt


def soft_fn(v, t):
    return _Soft.apply(v, t)


def soft_scaled(v, t):
    return t * torch.nn.functional.softshrink(v / t, 1.0)


def make_variant(net, soft=rt.soft, layer0=False, addmm=False, hoist_we=False, theta_plain=False):
    L = net.num_layers
    theta_value = net.theta().detach().clone().requires_grad_(True)

    def run(y):
        We, Wt = net.We, net.Wt
        theta = theta_value if theta_plain else net.theta()
        B = y.shape[0]
        m = Wt.shape[1]
        yWe = torch.matmul(y, We.mT) if hoist_we else None  # [L, B, m]
        x = torch.zeros((B, m), dtype=y.dtype, device=y.device)
        for layer in range(L):
            e = yWe[layer] if hoist_we else y @ We[layer].mT
            if layer == 0 and layer0:
                v = e
            elif addmm:
                v = torch.addmm(e, x, Wt[layer].mT)
            else:
                v = x @ Wt[layer].mT + e
            x = soft(v, theta[layer])
        return x

    params = [net.We, net.Wt, theta_value if theta_plain else net.theta.log_scale]
    return run, params


VARIANTS = {
    "inline": {},
    "soft=sign": {"soft": soft_sign},
    "soft=clamp": {"soft": soft_clamp},
    "soft=fn": {"soft": soft_fn},
    "soft=scaled": {"soft": soft_scaled},
    "layer0": {"layer0": True},
    "addmm": {"addmm": True},
    "hoistWe": {"hoist_we": True},
    "theta_plain": {"theta_plain": True},
    "fn+layer0": {"layer0": True, "soft": soft_fn},
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--modes", default="fwd,bwd", help="comma list of fwd (no_grad), grad (forward with grad), bwd")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma list of variants")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    # soft=fn is the current rt.soft, bit for bit, with correct gradients (v and a scalar or per-entry t)
    g = torch.Generator().manual_seed(1)
    v = torch.randn(64, 40, generator=g, dtype=torch.float64, requires_grad=True)
    for t in (torch.tensor(0.3, dtype=torch.float64), torch.rand(40, generator=g, dtype=torch.float64)):
        t.requires_grad_(True)
        assert torch.equal(soft_fn(v, t), rt.soft(v, t))
        assert torch.autograd.gradcheck(soft_fn, (v, t))
    A, y = make_problem(250, 500, 1000, torch.float32)
    net = unroll.load("lista_untied", layers=16)(A=A, lam=0.1)
    names = [v for v in args.variants.split(",") if v]
    runs = {"generated": (net, list(net.parameters()))}
    with torch.no_grad():
        ref = net(y)
    for name in names:
        fn, params = make_variant(net, **VARIANTS[name])
        with torch.no_grad():
            out = fn(y)
        assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5), f"{name}: max |diff| {(out - ref).abs().max():.3g}"
        # gradients of We agree with the generated module's
        for q in params + list(net.parameters()):
            q.grad = None
        fn(y).square().sum().backward()
        g_var = net.We.grad.clone()
        net.We.grad = None
        net(y).square().sum().backward()
        err = ((g_var - net.We.grad).norm() / net.We.grad.norm()).item()
        assert err < 1e-4, f"{name}: We gradient rel. error {err:.3g}"
        runs[name] = (fn, params)

    def make(mode, fn, params):
        if mode == "fwd":
            def f():
                with torch.no_grad():
                    fn(y)
        elif mode == "grad":
            def f():
                fn(y)
        else:
            def f():
                for q in params:
                    q.grad = None
                fn(y).square().sum().backward()
        return f

    print(machine())
    stats = Stats()
    for mode in args.modes.split(","):
        rows = []
        for name in names:  # each variant alternates with the generated module, pairwise
            pf: dict = {}
            t = alternate({"generated": make(mode, *runs["generated"]), name: make(mode, *runs[name])},
                          args.reps, args.warmup, stats=stats, budget_s=20, faults=pf)
            rows.append((name, f"{statistics.median(t['generated']) * 1e3:.1f}", f"{statistics.median(t[name]) * 1e3:.1f}",
                         f"{median_ratio(t[name], t['generated']):.3f}", f"{spread(t[name]) * 100:.0f}%",
                         f"{statistics.median(pf['generated']):.0f} / {statistics.median(pf[name]):.0f}"))
        print(f"\nmode {mode}: variant / generated (< 1: the variant is faster), {args.reps} reps")
        print(table(rows, ("variant", "generated ms", "variant ms", "median ratio", "IQR/median",
                           "page faults/call gen / variant")))
    print(f"noise control: {stats.kept} kept, {stats.discarded} discarded, {stats.contaminated_kept} kept although noisy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
