"""The stages of a training run: which layers each trains at which learning rate, and the CPU time by which
each ends (`budget_shares`).

e2e and deep: one stage at `lr`, then one per refinement factor, every layer trained.  stagewise (the
LISTA-CP/CPSS reference code): for k = 1..L, layer k alone at `lr`, then layers 1..k at lr·refine[i], layer l
of them at refine_decay^(k-l) of that (1: all at the same rate), the layers before k-refine_window+1 frozen.  A stage's `rates` are per-layer learning-rate
multipliers (a list, or {parameter: list} when `layer_lr` is given per parameter); 0 freezes a layer
(unroll.train.layers.LayerRates).  Each stage of a group may have its own batch size."""

from __future__ import annotations

from dataclasses import dataclass

from .layers import layer_parameters


@dataclass
class Stage:
    name: str
    depth: int | None  # run only the first `depth` layers (stage-wise); None: all
    rates: list | dict | None
    lr: float
    batch_size: int


def plan_stages(cfg, net) -> list[Stage]:
    batch = group_batch_sizes(cfg)  # the stage at lr, then each refinement
    if cfg.protocol != "stagewise":  # then the same refinement at decayed learning rates
        rates = layer_multipliers(cfg, net) if isinstance(cfg.layer_lr, dict) else cfg.layer_lr
        return [Stage(cfg.protocol, None, rates, cfg.lr, batch[0])] + [
            Stage(f"{cfg.protocol} x{f:g}", None, rates, cfg.lr * f, b) for f, b in zip(cfg.refine, batch[1:])]
    layers = type(net).num_layers
    base = layer_multipliers(cfg, net)  # {parameter: per-layer multipliers}, None: one list for all

    def scaled(scale):  # the per-layer multipliers times scale(l) (0: frozen)
        if isinstance(base, dict):
            return {name: [r * scale(l) for l, r in enumerate(row)] for name, row in base.items()}
        row = cfg.layer_lr if isinstance(cfg.layer_lr, (list, tuple)) else [1.0] * layers
        return [float(row[l]) * scale(l) for l in range(layers)]

    decay = float(cfg.refine_decay)
    window = cfg.refine_window or layers
    out = []
    for k in range(1, layers + 1):
        out.append(Stage(f"layer {k}", k, scaled(lambda l, k=k: float(l == k - 1)), cfg.lr, batch[0]))
        # refining layers 1..k: layer l (1-based) at refine_decay^(k-l) (the reference code's decay_rate)
        first = max(1, k - window + 1)  # the first layer refined (1-based)
        out.extend(Stage(f"layers {first}-{k} x{f:g}", k,
                         scaled(lambda l, k=k, first=first: decay ** (k - 1 - l) if first - 1 <= l < k else 0.0),
                         cfg.lr * f, b) for f, b in zip(cfg.refine, batch[1:]))
    return out


def check_stage_options(cfg) -> None:
    """A ValueError for stage options that cannot work, when the trainer is built rather than when a stage
    starts."""
    group_batch_sizes(cfg)
    if not (isinstance(cfg.refine_decay, (int, float)) and 0 < cfg.refine_decay <= 1):
        raise ValueError(f"refine_decay: expected a number in (0, 1], got {cfg.refine_decay!r}")
    if cfg.refine_decay != 1 and cfg.protocol != "stagewise":
        raise ValueError(f"refine_decay applies to the stagewise protocol only (protocol {cfg.protocol!r})")
    if cfg.budget_rollover not in ("next", "spread"):
        raise ValueError(f"budget_rollover: expected 'next' or 'spread', got {cfg.budget_rollover!r}")
    window = cfg.refine_window
    if window is not None and (isinstance(window, bool) or not isinstance(window, int) or window < 1):
        raise ValueError(f"refine_window: expected a positive number of layers or None, got {window!r}")
    if window is not None and cfg.protocol != "stagewise":
        raise ValueError(f"refine_window applies to the stagewise protocol only (protocol {cfg.protocol!r})")


def group_batch_sizes(cfg) -> list[int]:
    """`batch_size` for each stage of a group (the stage at lr, then each refinement): one number for all, or
    one per stage (a refinement at a low rate averages its gradient over more samples per step)."""
    spec = cfg.batch_size
    sizes = list(spec) if isinstance(spec, (list, tuple)) else [spec] * (1 + len(cfg.refine))
    if len(sizes) != 1 + len(cfg.refine) or not all(isinstance(b, int) and not isinstance(b, bool) and b > 0
                                                     for b in sizes):
        raise ValueError(f"batch_size: expected a positive integer or {1 + len(cfg.refine)} of them (the stage at "
                         f"lr, then the refinements {tuple(cfg.refine)}), got {spec!r}")
    return sizes


def layer_multipliers(cfg, net) -> dict | None:
    """`layer_lr` given per parameter: {every per-layer parameter: L multipliers} (1 where not named)."""
    spec = cfg.layer_lr
    if not isinstance(spec, dict):
        return None
    layers = type(net).num_layers
    names = {name.split(".")[0] for name, _, _ in layer_parameters(net)}
    unknown = sorted(set(spec) - names)
    if unknown:
        raise ValueError(f"layer_lr: {', '.join(map(repr, unknown))} is not a per-layer trainable parameter of "
                         f"{type(net).__name__} (those are: {', '.join(sorted(names)) or 'none'})")
    out = {}
    for name in sorted(names):
        row = spec.get(name, 1.0)
        out[name] = [float(row)] * layers if isinstance(row, (int, float)) else [float(r) for r in row]
    return out


def stage_weights(cfg, stages: list[Stage]) -> list[float] | None:
    """Each stage's weight in the CPU budget, from `budget_shares` (None without them): the shares divide the
    budget between a group's stages (the stage at lr, then each refinement); stage-wise, layer k's group weighs
    k (a k-layer network costs k layers a step)."""
    if cfg.budget_shares is None:
        return None
    shares = [float(x) for x in cfg.budget_shares]
    if cfg.max_cpu_seconds is None:
        raise ValueError("budget_shares: give max_cpu_seconds too (the shares divide that budget)")
    if len(shares) != 1 + len(cfg.refine) or min(shares) < 0 or sum(shares) <= 0:
        raise ValueError(f"budget_shares: expected {1 + len(cfg.refine)} non-negative numbers (the stage at lr, "
                         f"then the refinements {tuple(cfg.refine)}), got {cfg.budget_shares!r}")
    group = len(shares)
    return [(st.depth or 1) * shares[i % group] for i, st in enumerate(stages)]


def stage_deadlines(cfg, stages: list[Stage]) -> list[float] | None:
    """The CPU time (s) by which each stage ends when none stops early (None without `budget_shares`)."""
    if cfg.budget_shares is None:
        return None
    return [stage_deadline(cfg, stages, index, None) for index in range(len(stages))]


def stage_deadline(cfg, stages: list[Stage], index: int, start_cpu: float | None) -> float | None:
    """The CPU time (s) by which stage `index`, started at `start_cpu`, ends (None without `budget_shares`).
    `budget_rollover="next"`: its cumulative deadline (`stage_deadlines`).  "spread": its weight's part of the
    budget still left: with no early stop that is the same time, and a stage that stops early (patience) leaves
    its unused time to all the stages after it, in proportion to their weights, instead of all of it to the next
    one.  (`start_cpu` None: a checkpoint written before the start was recorded; the cumulative deadline.)"""
    weights = stage_weights(cfg, stages)
    if weights is None:
        return None
    if cfg.budget_rollover == "next" or start_cpu is None:
        return cfg.max_cpu_seconds * sum(weights[:index + 1]) / sum(weights)
    rest = sum(weights[index:])
    left = max(cfg.max_cpu_seconds - start_cpu, 0.0)
    return start_cpu + (left * weights[index] / rest if rest > 0 else left)


def trains_one_layer(stage: Stage) -> bool:
    """Whether the stage trains exactly one layer (stage-wise `layer k`)."""
    rows = stage.rates.values() if isinstance(stage.rates, dict) else [stage.rates]
    active = {l for row in rows if isinstance(row, (list, tuple)) for l, r in enumerate(row) if r}
    return len(active) == 1
