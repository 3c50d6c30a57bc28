#!/usr/bin/env python
"""Generated modules against the best hand-written PyTorch (and the unfolded PGD against DeepInverse).

    python benchmarks/bench_handwritten.py                       # the measurement: 2 threads
    python benchmarks/bench_handwritten.py --quick               # smoke run: 1 thread, small batch, 3 rounds
    python benchmarks/bench_handwritten.py --pairs ista,fista --threads 1
    python benchmarks/bench_handwritten.py --check-only          # correctness checks only, no timing

Pairs: lista_untied, lista_cp, ista, fista, admm_lasso, pgd_unfolded (benchmarks/specs/
pgd_unfolded.unroll) -- each the generated module `unroll.load(spec, layers=16)` against the
hand-written module of benchmarks/handwritten_baselines.py -- and `deepinv`: the generated
pgd_unfolded against DeepInverse's PGD(unfold=True, trainable_params=["stepsize", "lambda"]) with an
L1 prior on the same matrix (install with `pip install -e ".[bench]" -c constraints.txt`).

Before timing, every pair is checked in float64: the generated and the hand-written module, each
built from the same A and hyperparameters, give the same output (allclose, relative error <= 1e-10);
then the generated module's learned parameters are perturbed (differently in every layer), copied
into the other module, and outputs and gradients of loss = sum(output^2) with respect to every
learned parameter must agree again.  Specs with no learned parameter (ista, fista, admm_lasso) are
differentiated with respect to the input y instead (the solver used as a differentiable layer).

Timing: float32, A 250x500 (Gaussian, unit columns), batch 1000, 16 layers; modes forward (under
torch.no_grad) and forward+backward (gradients of every learned parameter, or of y).  The
implementations alternate inside every round (the order rotates; `_common.alternate`, with its
noise control), after warm-up calls; the result is the median over rounds of the per-round ratio
generated / hand-written (< 1: the generated module is faster).

A third implementation, "generated, split": the same generated module after `unroll.train.split_layers(net)`,
i.e. with every layer of its stacked per-layer parameters viewed as its own leaf tensor (what unroll.train's
trainer optimises, and what a training loop of one's own gets from split_layers): the backward pass then
gives each layer its own gradient, as the hand-written `nn.ParameterList` does, instead of stacking them into
one [layers, ...] gradient.  It is timed where the generated module has trainable per-layer parameters
(`--no-split` leaves it out).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import unroll
from _common import (
    Stats,
    alternate,
    machine,
    median_ratio,
    median_ratio_interval,
    sparse_coding_problem,
    spread,
    table,
)
from handwritten_baselines import BASELINES, SOFT_FORMS, lipschitz, use_soft
from unroll.runtime.layer_views import viewable
from unroll.train import split_layers

PAIRS = ("lista_untied", "lista_cp", "ista", "fista", "admm_lasso", "pgd_unfolded", "deepinv")
SPEC_PATHS = {"pgd_unfolded": HERE / "specs" / "pgd_unfolded.unroll"}  # the others are catalog ids
CHECK_RTOL = 1e-10


def load_generated(name: str, layers: int):
    return unroll.load(str(SPEC_PATHS.get(name, name)), layers=layers)


# ---------------------------------------------------------------- DeepInverse

_torchvision_schemas = None  # keeps the torch.library.Library alive


def import_deepinv():
    """Import deepinv.  Beside the CPU build of torch, the torchvision wheel that deepinv pulls in
    cannot load its C extension, and its Python side then fails on `operator torchvision::nms does
    not exist`.  deepinv never calls nms: when the extension does not load, define the two
    schemas torchvision registers meta kernels for, without kernels, and import again."""
    global _torchvision_schemas
    found = importlib.util.find_spec("torchvision")
    if found is not None and _torchvision_schemas is None:
        extension = next(Path(found.origin).parent.glob("_C*.so"), None)
        try:
            torch.ops.torchvision.nms  # noqa: B018  (registered already: nothing to do)
        except (AttributeError, RuntimeError):
            try:
                if extension is None:
                    raise OSError("no torchvision extension")
                torch.ops.load_library(str(extension))
            except OSError:
                _torchvision_schemas = torch.library.Library("torchvision", "DEF")
                _torchvision_schemas.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
                _torchvision_schemas.define("qnms(Tensor qdets, Tensor scores, float iou_threshold) -> Tensor")
    import deepinv

    return deepinv


class DeepinvPgd(nn.Module):
    """deepinv's unfolded PGD on LinearPhysics(A = x ↦ Ax, Aᵀ = y ↦ Aᵀy), data fidelity L2() =
    ½‖Ax − y‖², prior L1Prior(), one trainable stepsize and lambda per iteration.

    deepinv's iteration is x ← prox_{γλ‖·‖₁}(x − γ∇f(x)) = soft(x − γ(AᵀAx − Aᵀy), γλ) from
    x⁰ = Aᵀy (its default initialisation), with L1Prior.prox(x, gamma=γλ) = sign(x)·max(|x| − γλ, 0)
    (ths = 1).  So stepsize γ_k = step_k and lambda_k = lambda_k of pgd_unfolded, unchanged:
    stepsize = 1/L and lambda_reg = lam reproduce the spec's defaults.  L2's sigma must stay 1
    (it scales the gradient by 1/σ²).  Lists of `layers` values make the parameters per layer."""

    def __init__(self, deepinv, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        self.register_buffer("A", A)
        self.physics = deepinv.physics.LinearPhysics(
            A=lambda x, **kwargs: x @ self.A.mT, A_adjoint=lambda y, **kwargs: y @ self.A)
        step = float(1 / lipschitz(A))
        self.model = deepinv.optim.PGD(
            data_fidelity=deepinv.optim.L2(), prior=deepinv.optim.L1Prior(), stepsize=[step] * layers,
            lambda_reg=[float(lam)] * layers, max_iter=layers, unfold=True, trainable_params=["stepsize", "lambda"])

    @property
    def step(self) -> nn.ParameterList:
        return self.model.params_algo["stepsize"]

    @property
    def lambda_(self) -> nn.ParameterList:
        return self.model.params_algo["lambda"]

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.model(y, self.physics)


# ---------------------------------------------------------------- checks


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def assert_close(what: str, got: torch.Tensor, want: torch.Tensor, rtol: float) -> float:
    """allclose with a tolerance relative to the largest entry, and the same bound on the relative
    norm error; returns the relative error.  A zero reference is refused: it would check nothing."""
    assert got.shape == want.shape, f"{what}: shapes {tuple(got.shape)} and {tuple(want.shape)}"
    assert want.abs().max() > 0, f"{what}: the reference is all zeros, nothing would be checked"
    err = rel_error(got, want)
    close = torch.allclose(got, want, rtol=rtol, atol=rtol * want.abs().max().item())
    assert close and err <= rtol, f"{what} differ: relative error {err:.3g} (tolerance {rtol:g})"
    return err


def learned_names(gen) -> list[str]:
    return [row[0] for row in gen.parameter_table if row[3] == "learned"]


def generated_value_grads(gen) -> dict:
    """d loss / d value of every learned spec parameter, stacked [layers, ...].  A `positive`
    parameter is value = init·exp(s): d/ds = value · d/dvalue."""
    values = gen.parameter_values()
    out = {}
    for name, _shape, _tying, trainable, constraint, _default in gen.parameter_table:
        if trainable != "learned":
            continue
        obj = getattr(gen, name)
        if constraint is None:
            out[name] = obj.grad
        elif constraint == "positive":
            out[name] = obj.log_scale.grad / values[name].detach()
        else:
            raise NotImplementedError(f"{name}: constraint {constraint}")
    return out


def copy_into(gen, other, layers: int) -> None:
    """Copy the generated module's (per-layer) parameter values into `other`'s ParameterLists.  A
    list one shorter than the layer count holds layers 1 .. L-1 (layer 0's value has no effect)."""
    values = gen.parameter_values()
    with torch.no_grad():
        for name in learned_names(gen):
            target = getattr(other, name)
            offset = layers - len(target)
            for i, p in enumerate(target):
                p.copy_(values[name][i + offset])


def perturb(gen, seed: int = 1) -> None:
    """Move every learned parameter away from its default, differently in every layer (an
    implementation that used one layer's value everywhere, or the default, would fail the check)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in gen.parameters():
            if p.requires_grad:
                scale = p.abs().mean().item() or 1.0
                p.add_(0.1 * scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def check_pair(name: str, other_factory, layers: int, n: int, m: int, batch: int, label: str) -> str:
    """Float64 checks of the generated module against `other_factory(A, hypers)` (see the module
    docstring).  Returns a one-line summary."""
    A, y = sparse_coding_problem(n, m, batch, torch.float64, seed=2)
    Net = load_generated(name, layers)
    hypers = dict(Net.hyper_defaults)
    gen, other = Net(A=A, **hypers), other_factory(A, hypers)
    learned = learned_names(gen)
    if label == "deepinv":  # deepinv stores its parameters in float32: use the spec's exact values
        other = other.double()
        copy_into(gen, other, layers)
    with torch.no_grad():
        err0 = assert_close(f"{name}: outputs at the defaults", other(y), gen(y), CHECK_RTOL)
    if learned:
        perturb(gen)
        copy_into(gen, other, layers)
        outs = [net(y) for net in (gen, other)]
        err1 = assert_close(f"{name}: outputs after perturbation", outs[1], outs[0], CHECK_RTOL)
        for out in outs:
            out.square().sum().backward()
        want = generated_value_grads(gen)
        worst = 0.0
        for pname in learned:
            got = [p.grad for p in getattr(other, pname)]
            assert all(g is not None for g in got), f"{name}: {pname} of the {label} module got no gradient"
            skipped = layers - len(got)
            if skipped:  # layer 0's parameter multiplies a zero state: its gradient must be zero
                assert not want[pname][:skipped].any(), f"{name}: {pname}[0] has a nonzero gradient"
            worst = max(worst, assert_close(f"{name}: d loss / d {pname}", torch.stack(got),
                                            want[pname][skipped:], CHECK_RTOL))
        grads = f"gradients of {', '.join(learned)} agree (max rel. error {worst:.1e})"
        outputs = f"outputs agree (rel. error {err0:.1e} at the defaults, {err1:.1e} perturbed)"
    else:
        outputs = f"outputs agree (rel. error {err0:.1e})"
        grads_y = []
        for net in (gen, other):
            yy = y.clone().requires_grad_(True)
            net(yy).square().sum().backward()
            grads_y.append(yy.grad)
        worst = assert_close(f"{name}: d loss / d y", grads_y[1], grads_y[0], CHECK_RTOL)
        grads = f"gradient w.r.t. y agrees (rel. error {worst:.1e})"
    return f"check {name} vs {label} (float64): {outputs}, {grads}"


def check_deepinv_float32_defaults(deepinv, layers, n, m, batch) -> str:
    """deepinv's own float32 initialisation (stepsize=1/L, lambda_reg=lam) against the generated
    module's defaults: validates the parameter mapping without copying any value."""
    A, y = sparse_coding_problem(n, m, batch, torch.float32, seed=2)
    Net = load_generated("pgd_unfolded", layers)
    gen, dinv = Net(A=A), DeepinvPgd(deepinv, A, layers=layers)
    with torch.no_grad():
        err = rel_error(dinv(y), gen(y))
    assert err < 1e-4, f"deepinv's default reconstruction differs from pgd_unfolded's: rel. error {err:.3g}"
    return f"check pgd_unfolded vs deepinv (float32, deepinv's own defaults): rel. error {err:.1e}"


# ---------------------------------------------------------------- timing


class Split(nn.Module):
    """A generated module trained through per-layer views (`split_layers`): its parameters are the views."""

    def __init__(self, net):
        super().__init__()
        object.__setattr__(self, "inner", net)  # not a submodule: parameters() are the views (and the rest)
        self.trainable = nn.ParameterList(split_layers(net))

    def forward(self, y):
        return self.inner(y)



def forward_fn(net, y):
    def run():
        with torch.no_grad():
            net(y)
    return run


def forward_backward_fn(net, y):
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:  # a classical algorithm: differentiate with respect to the input
        y = y.clone().requires_grad_(True)
        params = [y]

    def run():
        for p in params:
            p.grad = None
        net(y).square().sum().backward()
    return run


def time_implementations(nets: dict, y, args, stats: Stats) -> list:
    """[(mode, {impl: [seconds per round]})] for the two modes, all implementations interleaved."""
    out = []
    for mode, make in (("forward", forward_fn), ("forward+backward", forward_backward_fn)):
        fns = {impl: make(net, y) for impl, net in nets.items()}
        out.append((mode, alternate(fns, args.reps, args.warmup, max_other_cpu=args.max_other_cpu,
                                    stats=stats, budget_s=args.budget)))
    return out


def rows_for(label: str, times: list, base: str) -> list:
    rows = []
    for mode, t in times:
        for impl in t:
            if impl == base:
                continue
            low, high = median_ratio_interval(t[impl], t[base])
            rows.append((f"{label}: {impl} / {base}", mode, f"{statistics.median(t[impl]) * 1e3:.1f}",
                         f"{statistics.median(t[base]) * 1e3:.1f}", f"{median_ratio(t[impl], t[base]):.3f}",
                         f"{low:.3f} – {high:.3f}", f"{spread(t[impl]) * 100:.0f}% / {spread(t[base]) * 100:.0f}%"))
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"comma-separated subset of {','.join(PAIRS)}")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: batch 100, 3 rounds after 1 warm-up, 1 thread (unless given)")
    p.add_argument("--soft", choices=sorted(SOFT_FORMS), default="fused",
                   help="the baselines' learned-threshold soft threshold (default: fused, a custom autograd "
                        "Function with fused softshrink kernels, as unroll.runtime.soft on the CPU; function: "
                        "the same Function with four in-place passes forward; copysign: torch's autograd)")
    p.add_argument("--check-only", action="store_true", help="run the float64 checks, no timing")
    p.add_argument("--no-split", action="store_true", help="do not time the generated modules after split_layers")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default 2; 1 with --quick)")
    p.add_argument("--reps", type=int, default=None, help="timed rounds per mode (default 30; 3 with --quick)")
    p.add_argument("--warmup", type=int, default=None, help="untimed calls per implementation (default 3; 1 quick)")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--n", type=int, default=250)
    p.add_argument("--m", type=int, default=500)
    p.add_argument("--batch", type=int, default=None, help="timing batch (default 1000; 100 with --quick)")
    p.add_argument("--check-batch", type=int, default=200, help="batch of the float64 checks (default 200)")
    p.add_argument("--max-other-cpu", type=float, default=None,
                   help="re-run a round during which other processes used more CPUs than this (see _common)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds per mode after which noisy rounds are kept (default 25; 5 with --quick)")
    args = p.parse_args(argv)
    pairs = [s.strip() for s in args.pairs.split(",") if s.strip()]
    unknown = [s for s in pairs if s not in PAIRS]
    if unknown:
        p.error(f"unknown pair(s) {', '.join(unknown)}; choose from {', '.join(PAIRS)}")
    quick = args.quick
    args.reps = args.reps or (3 if quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    args.batch = args.batch or (100 if quick else 1000)
    args.budget = args.budget or (5.0 if quick else 25.0)
    torch.set_num_threads(args.threads or (1 if quick else 2))
    use_soft(args.soft)
    deepinv = import_deepinv() if "deepinv" in pairs else None

    def other_factory(name):
        if name == "deepinv":
            return lambda A, hypers: DeepinvPgd(deepinv, A, layers=args.layers, **hypers)
        return lambda A, hypers: BASELINES[name](A, layers=args.layers, **hypers)

    for name in pairs:
        spec = "pgd_unfolded" if name == "deepinv" else name
        label = "deepinv" if name == "deepinv" else "hand-written"
        print(check_pair(spec, other_factory(name), args.layers, args.n, args.m, args.check_batch, label),
              flush=True)
        if name == "deepinv":
            print(check_deepinv_float32_defaults(deepinv, args.layers, args.n, args.m, args.check_batch), flush=True)
    if args.check_only:
        return 0

    A, y = sparse_coding_problem(args.n, args.m, args.batch, torch.float32)
    rows = []
    stats = Stats()
    for name in pairs:
        spec = "pgd_unfolded" if name == "deepinv" else name
        Net = load_generated(spec, args.layers)
        hypers = dict(Net.hyper_defaults)
        nets = {"generated": Net(A=A, **hypers),
                "hand-written": BASELINES[spec](A, layers=args.layers, **hypers)}
        if not args.no_split and name != "deepinv" and viewable(nets["generated"]):
            nets["generated, split"] = Split(Net(A=A, **hypers))
        if name == "deepinv":
            nets["deepinv"] = DeepinvPgd(deepinv, A, layers=args.layers, **hypers)
        times = time_implementations(nets, y, args, stats)
        if name == "deepinv":
            rows += rows_for(name, times, "deepinv")
        else:
            rows += rows_for(name, times, "hand-written")
        print(f"timed {name}", file=sys.stderr, flush=True)

    print(f"\n{args.layers} layers, A {args.n}x{args.m}, batch {args.batch}, float32; "
          f"{args.reps} rounds after {args.warmup} warm-up call(s); ratio = median over rounds of "
          f"(time of the first / time of the second); < 1: the first is faster")
    print(machine() + f"; baselines' soft threshold: {args.soft}")
    print(table(rows, ("pair", "mode", "first ms", "second ms", "median ratio", "95% interval",
                       "IQR/median first / second")))
    print(f"noise control: {stats.kept} rounds kept, {stats.discarded} discarded (other processes too busy), "
          f"{stats.contaminated_kept} kept although noisy (budget exhausted)"
          + (f"; {stats.short} measurement(s) cut short by the deadline" if stats.short else ""))
    if "deepinv" in pairs:
        ratio = next(r[4] for r in rows if r[0] == "deepinv: generated / deepinv" and r[1] == "forward+backward")
        print(f"deepinv target (generated / deepinv, forward+backward <= 0.55): {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
