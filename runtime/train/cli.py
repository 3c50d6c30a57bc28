"""The run behind `unrollc train` (the parser: compiler/cli_train.py)."""

from __future__ import annotations

import sys

import torch

from .catalog import catalog_task
from .checkpoint import CheckpointMismatch, build_net
from .plots import plot_all
from .tasks import TASKS, get_task
from .trainer import DTYPES, TrainConfig, Trainer, init_distributed


def run(args) -> int:
    if args.task is not None and args.task not in TASKS:
        print(f"unrollc train: error: unknown task {args.task!r}; tasks: {', '.join(TASKS)}", file=sys.stderr)
        return 1
    torch.manual_seed(args.seed)
    try:
        task = get_task(args.task) if args.task is not None else _catalog(args.spec, args.seed)
    except ValueError as err:
        print(f"unrollc train: error: {err}", file=sys.stderr)
        return 1
    layers = args.layers or task.info.get("layers")
    started = torch.distributed.is_available() and not torch.distributed.is_initialized()
    device = init_distributed(args.device)  # under torchrun: one process per replica, DDP
    owns_group = started and torch.distributed.is_initialized()
    code = 1
    try:
        code = _train(args, task, layers, device)
        return code
    finally:
        if owns_group:  # every replica waits for the others (rank 0 writes the plots) before the group goes
            if code == 0:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def _train(args, task, layers, device) -> int:
    main = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    try:
        refine = _numbers(args.refine, "--refine")
        config = TrainConfig(protocol=args.protocol, epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
                             batch_size=_batch_size(args.batch_size), lr=args.lr, refine=refine,
                             refine_decay=args.refine_decay, refine_window=args.refine_window,
                             patience=args.patience,
                             max_cpu_seconds=args.max_cpu_seconds, dtype=args.dtype, seed=args.seed,
                             budget_shares=_numbers(args.budget_shares, "--budget-shares") or None,
                             budget_rollover=args.budget_rollover,
                             layer_weights=args.layer_weights, layer_lr=_layer_lr(args.layer_lr),
                             stage_init=args.stage_init)
        net = build_net(args.spec, task, dtype=DTYPES[args.dtype], device=device, layers=layers,
                        learn=args.learn, freeze=args.freeze, tie=args.tie, untie=args.untie)
        if main:
            print(f"unrollc train: {type(net).__name__} ({type(net).num_layers} layers) on {task.description}; "
                  f"protocol {args.protocol}; run directory {args.output}", file=sys.stderr)
        trainer = Trainer(net, task, config, out_dir=args.output, progress=not args.no_progress)
        if args.resume:
            trainer.resume(args.resume)
        result = trainer.fit()
    except (ValueError, TypeError, CheckpointMismatch) as err:
        print(f"unrollc train: error: {err}", file=sys.stderr)
        return 1
    if not main:
        return 0
    paths = plot_all(net, result, args.output, metric=task.metric)
    per_layer = result.get("per_layer", {})
    trained, classical = per_layer.get("trained") or [], per_layer.get("classical") or []
    print(f"\ntest {task.metric} per layer (index 0: the initial state)")
    print("layer   untrained = classical   trained")
    for layer, value in enumerate(trained):
        before = f"{classical[layer]:23.3f}" if layer < len(classical) else " " * 23
        print(f"{layer:5d}   {before}   {value:7.3f}")
    print(f"\nwrote {args.output}: best.pt final.pt last.pt log.jsonl summary.json "
          + " ".join(p.name for p in paths), file=sys.stderr)
    return 0


def _numbers(text: str | None, option: str) -> tuple[float, ...]:
    """`--refine 0.2,0.02`, `--budget-shares 0.6,0.25,0.15`: comma-separated numbers (none: empty)."""
    try:
        return tuple(float(x) for x in (text or "").split(",") if x.strip())
    except ValueError:
        raise ValueError(f"{option}: expected comma-separated numbers, got {text!r}") from None


def _batch_size(text: str):
    """`--batch-size 64` or `--batch-size 64,256,256` (the stage at --lr, then each refinement)."""
    try:
        sizes = tuple(int(x) for x in str(text).split(","))
    except ValueError:
        raise ValueError(f"--batch-size: expected a positive integer or a comma-separated list of them, got "
                         f"{text!r}") from None
    return sizes[0] if len(sizes) == 1 else sizes


def _layer_lr(text: str | None):
    """`--layer-lr 1,0.5,..` (one per layer) or `--layer-lr theta=10,We=0.5` (per parameter)."""
    if not text:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    try:
        if all("=" in x for x in items):
            return {name.strip(): float(value) for name, value in (x.split("=", 1) for x in items)}
        return [float(x) for x in items]
    except ValueError:
        raise ValueError(f"--layer-lr: expected numbers (one per layer) or NAME=NUMBER items, got {text!r}") from None


def _catalog(spec: str, seed: int):
    """The shipped spec's own catalog task (a ValueError naming the tasks when SPEC is a file)."""
    if spec.endswith(".unroll"):
        raise ValueError(f"{spec} is a spec file: give a --task ({', '.join(TASKS)}); a shipped spec name "
                         f"trains on its own catalog task without one")
    return catalog_task(spec, seed=seed)
