"""Benchmarks of the trainer (unroll.train).  Run ONLY niced, one torch thread:

    nice -n 15 python benchmarks/bench_train.py e2e        # LISTA-CP 16 layers, 15 CPU-minutes, end to end
    nice -n 15 python benchmarks/bench_train.py stagewise  # the same, stage-wise, 60 CPU-minutes
    nice -n 15 python benchmarks/bench_train.py classical  # ISTA / FISTA iterations to reach each NMSE
    nice -n 15 python benchmarks/bench_train.py steptime [ROUNDS]  # trainer step vs a bare loop (interleaved)
    nice -n 15 python benchmarks/bench_train.py partial e2e   # summary of an unfinished run (best.pt so far)
    python benchmarks/bench_train.py table                  # the per-layer table of benchmarks/README.md

Setting: Chen et al. (NeurIPS 2018), noiseless: A 250x500 Gaussian with unit columns, codes
Bernoulli(0.1)·N(0,1), fresh training batches of 64, validation and test sets of 1000 samples; Adam with
refinement at decayed learning rates (E2E, STAGEWISE below), each stage ending at its patience (epochs of 100
steps without a better validation NMSE) or when its share of the CPU budget is spent (E2E, STAGEWISE below;
stage-wise, layer k's three stages share a part of the budget proportional to k).  CPU time is
time.process_time().
Results (JSON) go to benchmarks/results/; the run directories (log.jsonl, checkpoints, plots) to
benchmarks/results/<mode>/.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import torch
import unroll

RESULTS = Path(__file__).resolve().parent / "results"


# the share of the CPU budget of the stage at lr, then of x0.2 and x0.02 (stage-wise: of each layer's part, ∝ k)
E2E = {"lr": 1e-3, "budget_shares": (0.4, 0.35, 0.25), "patience": 8}
# stage-wise: layer k starts as a copy of the trained layer k-1 (stage_init), the thresholds (learned on a log
# scale, `positive`) at 10x the rate, most of each layer's part of the budget goes to the refinement of layers
# 1..k at 0.5x and 0.05x (training layer k alone saturates within an epoch of its copy), and that refinement
# works mostly on the recent layers (layer l of 1..k at 0.7^(k-l): the reference code's decay_rate); every
# trained layer its own tensor, frozen layers outside autograd (the trainer's per-layer views, the default);
# benchmarks/README.md
STAGEWISE = {"lr": 1e-3, "budget_shares": (0.15, 0.6, 0.25), "patience": 4, "stage_init": "previous",
             "layer_lr": {"theta": 10}, "refine": (0.5, 0.05), "refine_decay": 0.7}


def trained_run(protocol: str, budget: float, epochs: int, lr: float, budget_shares: tuple, patience: int,
                batch_size: int | tuple = 64, **options) -> dict:
    T = unroll.train
    task = T.sparse_coding()
    net = T.build_net("lista_cp", task, layers=16)
    out = RESULTS / protocol
    result = T.train(net, task, out_dir=out, protocol=protocol, lr=lr, batch_size=batch_size, steps_per_epoch=100,
                     epochs=epochs, patience=patience, max_cpu_seconds=budget, budget_shares=budget_shares,
                     progress=True, **options)
    T.plots.plot_all(net, result, out)
    summary = {"protocol": protocol, "config": {"lr": lr, "batch_size": batch_size, "budget_shares": budget_shares, "patience": patience,
                                                **options}, "cpu_budget_s": budget, "cpu_s": result["progress"]["cpu_seconds"],
               "steps": result["progress"]["step"], "stages_done": result["progress"]["stage"],
               "test_nmse_db": result["test_metric"], "per_layer_trained": result["per_layer"]["trained"],
               "per_layer_classical": result["per_layer"]["classical"]}
    (RESULTS / f"train_{protocol}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


def classical(samples: int = 100, iterations: int = 3000) -> dict:
    """NMSE (dB) after each ISTA / FISTA iteration on the first `samples` test samples, float64, for a
    grid of lasso weights; stored so that the iterations to reach any NMSE can be read off."""
    T = unroll.train
    task = T.sparse_coding()
    y = task.test[0]["y"][:samples]
    x = task.test[1]["x"][:samples]
    out = {}
    for spec in ("ista", "fista"):
        Net = unroll.load(spec, layers=iterations)
        for lam in (0.1, 0.03, 0.01, 0.003):
            net = Net(A=task.arguments["A"], lam=lam)
            curve = []
            t = time.process_time()
            with torch.no_grad():
                net.monitor(y, on_layer=lambda i, s, curve=curve: curve.append(float(T.nmse_db(s["x"], x))))
            out[f"{spec} lam={lam:g}"] = [round(v, 3) for v in curve]
            print(f"{spec} lam={lam:g}: best {min(curve[1:]):.2f} dB, cpu {time.process_time() - t:.0f} s", flush=True)
    (RESULTS / "train_classical.json").write_text(json.dumps(out))
    return out


def steptime(rounds: int = 7, steps: int = 40) -> dict:
    """CPU time per training step: one epoch of the trainer (progress bar on, its validation on 64
    samples included) vs a bare hand-written loop (randperm, index, forward, loss, backward, fused Adam step)
    on the same generated module and the same tensors; fresh Adam each round; interleaved rounds,
    medians."""
    T = unroll.train
    task = T.sparse_coding()
    gen = torch.Generator().manual_seed(5)
    inputs, targets = task.sampler(64 * steps, gen)
    inputs, targets = {"y": inputs["y"].float()}, {"x": targets["x"].float()}  # the same float32 tensors for both
    val = task.sampler(64, gen)
    data = T.from_tensors(inputs, targets, task.arguments, validation=val)
    data.test = None
    net_t = T.build_net("lista_cp", task, layers=16)
    net_b = T.build_net("lista_cp", task, layers=16)
    y, x = inputs["y"], targets["x"]

    def bare():
        opt = torch.optim.Adam(net_b.parameters(), lr=5e-4, fused=True)  # as the trainer (and the best loop)
        order = torch.randperm(y.shape[0])
        for k in range(steps):
            idx = order[k * 64:(k + 1) * 64]
            loss = (net_b(y[idx]) - x[idx]).square().sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def trainer():
        T.Trainer(net_t, data, T.TrainConfig(lr=5e-4, epochs=1, refine=()), progress=True).fit()

    times = {"bare": [], "trainer": []}
    for r in range(rounds):
        order = (("bare", bare), ("trainer", trainer)) if r % 2 == 0 else (("trainer", trainer), ("bare", bare))
        for name, fn in order:
            t = time.process_time()
            fn()
            times[name].append((time.process_time() - t) / steps)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"per_step_s": med, "ratio": med["trainer"] / med["bare"], "rounds": rounds, "steps": steps,
              "all": times}
    (RESULTS / "train_steptime.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


def partial(protocol: str) -> dict:
    """Summary of a run that has not reached its CPU budget (stopped, or still running): the best
    checkpoint so far evaluated per layer on the test set, and the CPU time its log reached."""
    T = unroll.train
    out = RESULTS / protocol
    records = T.plots.read_log(out / "log.jsonl")
    vals = [r for r in records if r["event"] == "validation"]
    source = "best.pt" if (out / "best.pt").exists() else "last.pt"  # stage-wise: best.pt from the first stage's end
    net = T.load_checkpoint(out / source)
    task = T.sparse_coding()
    trainer = T.Trainer(net, task, T.TrainConfig(), progress=False)
    summary = {"protocol": protocol, "complete": False, "checkpoint": source, "cpu_s": vals[-1]["cpu_s"], "steps": vals[-1]["step"],
               "stage": vals[-1]["stage"], "best_validation_nmse_db": min(r["metric"] for r in vals),
               "per_layer_trained": trainer.per_layer(task.test),
               "per_layer_classical": trainer.per_layer(task.test, T.build_net("lista_cp", task, layers=16))}
    summary["test_nmse_db"] = summary["per_layer_trained"][-1]
    T.plots.plot_layers(summary["per_layer_trained"], summary["per_layer_classical"], out / "layers.png")
    T.plots.plot_curves(records, out / "curves.png")
    (RESULTS / f"train_{protocol}_partial.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


def iterations_to_reach(curves: dict, target_db: float, prefix: str):
    """Fewest iterations of ISTA/FISTA (over the lasso weights tried) whose NMSE is <= target_db."""
    best = None
    for name, curve in curves.items():
        if name.startswith(prefix + " "):
            hit = next((i for i, v in enumerate(curve) if v <= target_db), None)
            if hit is not None and (best is None or hit < best[0]):
                best = (hit, name.split("=")[1])
    return best


def table() -> str:
    """The markdown table of benchmarks/README.md from the JSON results."""
    curves = json.loads((RESULTS / "train_classical.json").read_text())
    runs = {}
    for protocol in ("e2e", "stagewise"):
        for suffix in ("_partial", ""):  # a complete run replaces its partial summary
            path = RESULTS / f"train_{protocol}{suffix}.json"
            if path.exists():
                runs[protocol] = json.loads(path.read_text())
    lines = ["| layer | untrained (= ISTA, λ=0.4) | " + " | ".join(
        f"{p} ({runs[p]['cpu_s'] / 60:.1f} CPU-min)" for p in runs) + " | ISTA iterations to reach e2e | "
        "FISTA iterations to reach e2e |", "|" + "---|" * (4 + len(runs))]
    some = next(iter(runs.values()))
    for layer in range(1, len(some["per_layer_trained"])):
        target = runs["e2e"]["per_layer_trained"][layer] if "e2e" in runs else some["per_layer_trained"][layer]
        ista = iterations_to_reach(curves, target, "ista")
        fista = iterations_to_reach(curves, target, "fista")
        cells = [f"{r['per_layer_trained'][layer]:.2f}" for r in runs.values()]
        fmt = lambda hit: f"{hit[0]} (λ={hit[1]})" if hit else "> 3000"
        lines.append(f"| {layer} | {some['per_layer_classical'][layer]:.2f} | " + " | ".join(cells)
                     + f" | {fmt(ista)} | {fmt(fista)} |")
    text = "\n".join(lines)
    print(text)
    return text


if __name__ == "__main__":
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "e2e"
    if mode == "e2e":
        trained_run("e2e", 15 * 60, epochs=10_000, **E2E)  # stages end by patience or their budget share
    elif mode == "stagewise":
        trained_run("stagewise", 60 * 60, epochs=10_000, **STAGEWISE)
    elif mode == "classical":
        classical()
    elif mode == "steptime":
        steptime(rounds=int(sys.argv[2]) if len(sys.argv) > 2 else 7)
    elif mode == "partial":
        partial(sys.argv[2])
    elif mode == "table":
        table()
    else:
        raise SystemExit(f"unknown mode {mode!r}: e2e, stagewise, classical or steptime")
