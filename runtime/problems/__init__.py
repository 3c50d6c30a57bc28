"""Catalog tasks: for every shipped spec, a small synthetic problem of the kind the review uses it on.

`problem_for(spec)` returns a `Problem`: the data and hyperparameters the generated class is built
with, training and held-out inputs with their ground truth, which output (and which state, for
per-layer curves) is compared with the truth, and the metric. `unrollc demo SPEC` runs the untrained
network (= the classical algorithm) and a briefly trained one on it; the trainer can use it as a task.

The problems are small so that the demo runs in seconds on a CPU; each builder says which catalog
setting it scales down.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

Builder = Callable[[torch.Generator, torch.dtype], "Problem"]


@dataclass
class Problem:
    description: str                      # one line: the task and the data
    data: dict                            # constructor keywords: data, hyperparameters, dims
    train_inputs: dict                    # input name -> batched tensor
    train_truth: torch.Tensor             # ground truth of `output`, batched
    test_inputs: dict
    test_truth: torch.Tensor
    output: str                           # the output compared with the truth
    state: str | None = None              # the state traced layer by layer (None: no per-layer curve)
    metric: str = "nmse"                  # a name in unroll.runtime.demo.METRICS
    layers: int = 8
    lr: float = 5e-3
    batch: int = 32
    steps: int = 300                      # default training steps of the demo
    note: str = ""                        # what the untrained network is (the classical baseline)
    # the estimate compared with the truth, from the outputs by name (default: the output `output`)
    estimate: Callable[[dict], torch.Tensor] | None = None
    # the training loss when it is not the squared error of the estimate: loss(net, idx) for the batch of
    # training samples idx (e.g. ViterbiNet trains its classifier on pilots, not through the traceback)
    loss: Callable | None = None
    load_options: dict = field(default_factory=dict)


REGISTRY: dict[str, Builder] = {}


def register(*names: str):
    def wrap(builder: Builder) -> Builder:
        for name in names:
            if name in REGISTRY:
                raise ValueError(f"two problems registered for `{name}`")
            REGISTRY[name] = builder
        return builder
    return wrap


def problem_for(spec: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> Problem:
    """The demo/catalog problem of the shipped spec `spec` (a ValueError if it has none)."""
    _load_all()
    if spec not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        raise ValueError(f"no catalog task for `{spec}`; tasks exist for: {known}")
    return REGISTRY[spec](torch.Generator().manual_seed(seed), dtype)


def known_specs() -> list[str]:
    _load_all()
    return sorted(REGISTRY)


def _load_all() -> None:
    from . import (  # noqa: F401  (registering is their import side effect)
        denoising_amp,
        dynamics,
        imaging,
        inference,
        optimizers,
        plugin,
        signals,
        sparse,
        templates,
        training_algorithms,
        trellis_graphs,
    )
