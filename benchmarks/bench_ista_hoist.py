#!/usr/bin/env python
"""Generated classical ISTA (100 layers, nothing learned) vs hand-written loops.

    python benchmarks/bench_ista_hoist.py                  # float32 and float64
    python benchmarks/bench_ista_hoist.py --threads 1 --reps 20 --dtypes float32
    python benchmarks/bench_ista_hoist.py --variants       # also the emitter-suggestion variants

Setting: `ista`, 100 layers, A 250x500 (unit-norm columns), batch 1000, lam 0.1, inference
(torch.no_grad(): ISTA has no parameters).  Implementations, all batch-first x [batch, m]:

  generated      unroll.load("ista", layers=100)(A=A, lam=0.1)
  naive-resid    the equation as it reads, column-wise:
                     x = soft(x - (A.T @ (A @ x.T - y.T)).T / L, lam / L)
                 i.e. A^T(Ax - y) per layer (2 GEMMs, the same arithmetic as the generated code)
  naive-normal   the gradient written A^T A x - A^T y, as it reads, column-wise:
                     x = soft(x - (A.T @ A @ x.T - A.T @ y.T).T / L, lam / L)
                 (A.T @ A and A.T @ y recomputed every layer)
  hand-opt       the best a human writes: G = I - A^T A / L precomputed once, b = A^T y / L hoisted
                 out of the loop, first layer x = soft(b), then x = softshrink(addmm(b, x, G), lam/L)
                 (one GEMM with the add fused, one fused threshold kernel)

The naive loops use soft(v, t) = sign(v) * relu(|v| - t) with t a Python float.  All results are
checked against each other first.  Each repetition runs every implementation once, rotating
the order; the table gives median times and median per-repetition ratios generated / other.

With --variants, four more rows isolate where the time goes (see README.md):
  gen+softfn     the generated loop with the proposed rt.soft (an autograd.Function computing
                 v.abs().sub_(t).relu_().copysign_(v) in one buffer; see lista_variants.py)
  gen+softshrink the generated loop, threshold by F.softshrink(v, lam/L) (one fused kernel; the
                 threshold is a constant here) instead of rt.soft
  gen+fused      the generated loop with the linear combination fused into GEMMs:
                     r = addmm(y, x, A.T, beta=-1); x = rt.soft(addmm(x, r, A, alpha=-1/L), lam/L)
  hoisted+rtsoft hand-opt's GEMM with the generated code's soft (relu(v-t) - relu(-v-t), 0-d tensor t)
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import unroll
from _common import Stats, alternate, machine, median_ratio, spread, table
from bench_lista import make_problem
from lista_variants import soft_fn
from unroll import runtime as rt


def soft(v, t):
    return torch.sign(v) * torch.relu(v.abs() - t)


def make_impls(A, lam, layers, variants=False):
    Net = unroll.load("ista", layers=layers)
    gen = Net(A=A, lam=lam)
    L = torch.linalg.matrix_norm(A, ord=2).item() ** 2  # Python float
    thr = lam / L
    m = A.shape[1]

    def naive_resid(y):
        x = y.new_zeros(y.shape[0], m)
        for _ in range(layers):
            x = soft(x - (A.T @ (A @ x.T - y.T)).T / L, thr)
        return x

    def naive_normal(y):
        x = y.new_zeros(y.shape[0], m)
        for _ in range(layers):
            x = soft(x - (A.T @ A @ x.T - A.T @ y.T).T / L, thr)
        return x

    G = torch.eye(m, dtype=A.dtype) - A.T @ A / L  # once, at "construction" (A is fixed)

    def hand_opt(y):
        b = y @ A / L  # A^T y / L, once per forward
        x = F.softshrink(b, thr)
        for _ in range(layers - 1):
            x = F.softshrink(torch.addmm(b, x, G), thr)
        return x

    impls = {"generated": gen, "naive-resid": naive_resid, "naive-normal": naive_normal, "hand-opt": hand_opt}
    if variants:
        At = A.mT
        lam_L = gen.lam_L_c
        Lt = gen.L.item()

        def gen_fused(y):
            x = y.new_zeros(y.shape[0], m)
            for _ in range(layers):
                r = torch.addmm(y, x, At, beta=-1)
                x = rt.soft(torch.addmm(x, r, A, alpha=-1 / Lt), lam_L)
            return x

        def hoisted_rtsoft(y):
            b = y @ A / L
            x = rt.soft(b, lam_L)
            for _ in range(layers - 1):
                x = rt.soft(torch.addmm(b, x, G), lam_L)
            return x

        def gen_softshrink(y):
            x = y.new_zeros(y.shape[0], m)
            for _ in range(layers):
                x = F.softshrink(x - (x @ At - y) @ A / gen.L, thr)
            return x

        def gen_softfn(y):
            x = y.new_zeros(y.shape[0], m)
            for _ in range(layers):
                x = soft_fn(x - (x @ At - y) @ A / gen.L, lam_L)
            return x

        impls["gen+softfn"] = gen_softfn
        impls["gen+softshrink"] = gen_softshrink
        impls["gen+fused"] = gen_fused
        impls["hoisted+rtsoft"] = hoisted_rtsoft
    return impls


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N) (default: torch's default)")
    p.add_argument("--reps", type=int, default=15, help="timed repetitions (default 15)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--layers", type=int, default=100)
    p.add_argument("--dtypes", default="float32,float64")
    p.add_argument("--variants", action="store_true", help="also time the emitter-suggestion variants")
    p.add_argument("--max-other-cpu", type=float, default=None,
                   help="discard and re-run a repetition during which other processes used more than this many "
                        "CPUs (default: the cores left free by --threads + 0.1, or 0.25 when torch uses "
                        "them all)")
    p.add_argument("--budget", type=float, default=40.0,
                   help="seconds per dtype after which noisy repetitions are kept anyway (default 40)")
    args = p.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    print(machine())
    for dname in args.dtypes.split(","):
        dtype = getattr(torch, dname)
        A, y = make_problem(250, 500, 1000, dtype)
        impls = make_impls(A, 0.1, args.layers, args.variants)
        with torch.no_grad():
            outs = {name: f(y) for name, f in impls.items()}
        ref = outs["generated"]
        rel = {name: ((o - ref).norm() / ref.norm()).item() for name, o in outs.items()}
        bad = {k: v for k, v in rel.items() if v > (1e-4 if dtype == torch.float32 else 1e-10)}
        assert not bad, f"{dname}: implementations disagree with the generated ISTA: {bad}"

        def nograd(f, y=y):
            def g():
                with torch.no_grad():
                    f(y)
            return g

        stats = Stats()
        pf: dict = {}
        t = alternate({name: nograd(f) for name, f in impls.items()}, args.reps, args.warmup,
                      max_other_cpu=args.max_other_cpu, stats=stats, budget_s=args.budget, faults=pf)
        rows = []
        for name in impls:
            ratio = "1" if name == "generated" else f"{median_ratio(t['generated'], t[name]):.3f}"
            rows.append((name, f"{statistics.median(t[name]) * 1e3:.1f}", ratio, f"{spread(t[name]) * 100:.0f}%",
                         f"{statistics.median(pf[name]):.0f}", f"{rel[name]:.1e}"))
        print(f"\nISTA, {args.layers} layers, A 250x500, batch 1000, {dname}, no_grad; {args.reps} reps")
        print(table(rows, ("implementation", "median ms", "ratio generated/this", "IQR/median",
                           "page faults/call", "rel. diff vs generated")))
        print(f"noise control: {stats.kept} repetitions kept, {stats.discarded} discarded, "
              f"{stats.contaminated_kept} kept although noisy (budget exhausted)"
          + (f"; {stats.short} measurement(s) cut short by the deadline" if stats.short else ""))
    print("\nratio generated/this < 1: the generated code is faster than `this`.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
