"""Plots of a training run (matplotlib, Agg backend; PNG or SVG by the file suffix).

    plot_layers      per-layer quality of the trained network next to the classical algorithm's
                     per-iteration quality (the untrained network IS the classical algorithm)
    plot_curves      training loss and validation metric against the step (from log.jsonl or history)
    plot_parameters  the learned per-layer parameters across layers (scalars as values; tensors as
                     their mean absolute value)
    plot_all         the three, into a run directory
"""

from __future__ import annotations

import json
from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_layers(trained, classical, path, metric: str = "nmse_db", title: str = "") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    if classical:
        ax.plot(range(len(classical)), classical, "o-", color="0.5", label="untrained = classical algorithm")
    ax.plot(range(len(trained)), trained, "o-", color="C0", label="trained")
    ax.set_xlabel("layer (= iteration)")
    ax.set_ylabel({"nmse_db": "NMSE (dB)", "psnr": "PSNR (dB)"}.get(metric, metric))
    ax.set_title(title or "quality after each layer (test set)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def plot_curves(records, path, metric: str = "metric") -> Path:
    """`records`: the trainer's log (a path to log.jsonl, or its list of dicts)."""
    if not isinstance(records, list):
        records = read_log(records)
    plt = _pyplot()
    steps = [r for r in records if r.get("event") == "step"]
    vals = [r for r in records if r.get("event") == "validation"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    if steps:
        a1.semilogy([r["step"] for r in steps], [max(r["loss"], 1e-30) for r in steps], lw=0.8)
    a1.set_xlabel("step")
    a1.set_ylabel("training loss")
    a1.grid(alpha=0.3)
    if vals:
        a2.plot([r["step"] for r in vals], [r["metric"] for r in vals], ".-", ms=3, lw=0.8)
    a2.set_xlabel("step")
    a2.set_ylabel(f"validation {metric}")
    a2.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_parameters(net, path) -> Path:
    """Every per-layer spec parameter of `net` across its layers."""
    plt = _pyplot()
    values = net.parameter_values()
    rows = [(name, values[name]) for name, _s, tying, *_ in type(net).parameter_table if tying == "per_layer"]
    rows = rows or [(name, values[name]) for name, *_ in type(net).parameter_table]
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(3.2 * max(1, len(rows)), 3.0), squeeze=False)
    for ax, (name, value) in zip(axes[0], rows):
        v = value.detach().cpu()
        v = v.abs() if v.is_complex() else v
        if v.dim() == 0:
            ys, label = [float(v)], name
        elif v.dim() == 1:
            ys, label = v.double().tolist(), name
        else:
            ys, label = v.double().abs().reshape(v.shape[0], -1).mean(1).tolist(), f"mean |{name}|"
        ax.plot(range(1, len(ys) + 1), ys, "o-")
        ax.set_xlabel("layer")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def plot_all(net, result: dict, out_dir, metric: str = "nmse_db", fmt: str = "png") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    per_layer = result.get("per_layer") or {}
    if per_layer.get("trained"):
        paths.append(plot_layers(per_layer["trained"], per_layer.get("classical"), out / f"layers.{fmt}", metric))
    log = out / "log.jsonl"
    paths.append(plot_curves(str(log) if log.exists() else result.get("history", []), out / f"curves.{fmt}", metric))
    if hasattr(type(net), "parameter_table"):
        paths.append(plot_parameters(net, out / f"parameters.{fmt}"))
    return paths


__all__ = ["plot_all", "plot_curves", "plot_layers", "plot_parameters", "read_log"]
