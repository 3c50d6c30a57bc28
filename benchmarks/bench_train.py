"""Benchmarks of the trainer (unroll.train).  Run ONLY niced, one torch thread:

    nice -n 15 python benchmarks/bench_train.py e2e        # LISTA-CP 16 layers, 15 CPU-minutes, end to end
    nice -n 15 python benchmarks/bench_train.py stagewise  # the same, stage-wise, 60 CPU-minutes
    nice -n 15 python benchmarks/bench_train.py classical  # ISTA / FISTA iterations to reach each NMSE
    nice -n 15 python benchmarks/bench_train.py steptime   # trainer step vs a bare loop (interleaved)

Setting: Chen et al. (NeurIPS 2018), noiseless: A 250x500 Gaussian with unit columns, codes
Bernoulli(0.1)·N(0,1), fresh training batches of 64, validation and test sets of 1000 samples; Adam,
lr 5e-4 with refinement at 0.2 and 0.02 of it (their code).  CPU time is time.process_time().
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


def trained_run(protocol: str, budget: float, epochs: int, patience: int) -> dict:
    T = unroll.train
    task = T.sparse_coding()
    net = T.build_net("lista_cp", task, layers=16)
    out = RESULTS / protocol
    result = T.train(net, task, out_dir=out, protocol=protocol, lr=5e-4, batch_size=64, steps_per_epoch=100,
                     epochs=epochs, patience=patience, max_cpu_seconds=budget, progress=True)
    T.plots.plot_all(net, result, out)
    summary = {"protocol": protocol, "cpu_budget_s": budget, "cpu_s": result["progress"]["cpu_seconds"],
               "steps": result["progress"]["step"], "stages_done": result["progress"]["stage"],
               "test_nmse_db": result["test_metric"], "per_layer_trained": result["per_layer"]["trained"],
               "per_layer_classical": result["per_layer"]["classical"]}
    (RESULTS / f"train_{protocol}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return summary


def classical(samples: int = 100, iterations: int = 1000) -> dict:
    """NMSE (dB) after each ISTA / FISTA iteration on the first `samples` test samples, float64, for a
    grid of lasso weights; stored so that the iterations to reach any NMSE can be read off."""
    T = unroll.train
    task = T.sparse_coding()
    y = task.test[0]["y"][:samples]
    x = task.test[1]["x"][:samples]
    out = {}
    for spec in ("ista", "fista"):
        Net = unroll.load(spec, layers=iterations)
        for lam in (0.1, 0.03, 0.01):
            net = Net(A=task.arguments["A"], lam=lam)
            curve = []
            t = time.process_time()
            with torch.no_grad():
                net.monitor(y, on_layer=lambda i, s: curve.append(float(T.nmse_db(s["x"], x))))
            out[f"{spec} lam={lam:g}"] = curve
            print(f"{spec} lam={lam:g}: best {min(curve[1:]):.2f} dB, cpu {time.process_time() - t:.0f} s", flush=True)
    (RESULTS / "train_classical.json").write_text(json.dumps(out))
    return out


def steptime(rounds: int = 7, steps: int = 40) -> dict:
    """CPU time per training step: one epoch of the trainer (progress bar on, its validation on 64
    samples included) vs a bare hand-written loop (randperm, index, forward, loss, backward, Adam step)
    on the same generated module and the same tensors; fresh Adam each round; interleaved rounds,
    medians."""
    T = unroll.train
    task = T.sparse_coding()
    gen = torch.Generator().manual_seed(5)
    inputs, targets = task.sampler(64 * steps, gen)
    val = task.sampler(64, gen)
    data = T.from_tensors(inputs, targets, task.arguments, validation=val)
    data.test = None
    net_t = T.build_net("lista_cp", task, layers=16)
    net_b = T.build_net("lista_cp", task, layers=16)
    y, x = inputs["y"].float(), targets["x"].float()

    def bare():
        opt = torch.optim.Adam(net_b.parameters(), lr=5e-4)
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


if __name__ == "__main__":
    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "e2e"
    if mode == "e2e":
        trained_run("e2e", 15 * 60, epochs=70, patience=4)
    elif mode == "stagewise":
        trained_run("stagewise", 60 * 60, epochs=16, patience=4)
    elif mode == "classical":
        classical()
    elif mode == "steptime":
        steptime()
    else:
        raise SystemExit(f"unknown mode {mode!r}: e2e, stagewise, classical or steptime")
