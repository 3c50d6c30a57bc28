"""Every shipped spec's catalog problem (runtime/problems, the one `unrollc demo` runs) as a training
`Task`, so that `unrollc train SPEC -o DIR` works without `--task` for any shipped spec whose problem
is trained on the error of one output or state.

The problem's training samples are split: the last 10 % are held out for validation (early stopping,
best checkpoint); its held-out set is the test set.  The headline metric is the problem's (NMSE in dB
or PSNR).  Problems that train with a loss of their own (e.g. ViterbiNet's classifier on pilots) or
report a metric the trainer does not have (symbol or labelling error rates) are refused with a
`ValueError` that says to use `unrollc demo SPEC --steps N` instead.
"""

from __future__ import annotations

import torch
from unroll.runtime.problems import problem_for

from .tasks import Task, from_tensors

# the demo metric -> the trainer's headline metric of the same quantity
METRIC_NAMES = {"nmse": "nmse_db", "psnr": "psnr"}


def catalog_task(spec: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> Task:
    """The catalog problem of the shipped spec `spec` as a training task (see the module docstring)."""
    problem = problem_for(spec, seed=seed, dtype=dtype)
    advice = f"train it with `unrollc demo {spec} --steps N`, or give a --task"
    if problem.loss is not None or problem.estimate is not None:
        raise ValueError(f"the catalog problem of `{spec}` trains with a loss of its own "
                         f"({problem.description}); {advice}")
    if problem.metric not in METRIC_NAMES:
        raise ValueError(f"the catalog problem of `{spec}` is measured by {problem.metric!r}, which the trainer "
                         f"does not report (it has {', '.join(METRIC_NAMES.values())}); {advice}")
    count = problem.train_truth.shape[0]
    if count < 2:
        raise ValueError(f"the catalog problem of `{spec}` has {count} training sample(s): too few to hold "
                         f"out a validation set; {advice}")
    target = problem.output
    task = from_tensors(problem.train_inputs, {target: problem.train_truth}, problem.data,
                        test=(problem.test_inputs, {target: problem.test_truth}),
                        metric=METRIC_NAMES[problem.metric], spec=spec, name=f"catalog:{spec}")
    task.description = problem.description
    task.info = {"layers": problem.layers, "lr": problem.lr, "batch": problem.batch, "note": problem.note}
    return task


__all__ = ["METRIC_NAMES", "catalog_task"]
