"""The trainer: end-to-end, stage-wise (layer-wise) and deep-supervision training of a generated
network on a task, with validation, early stopping, the best weights kept, a JSON-lines log, tqdm
progress, checkpoints that resume, and DistributedDataParallel when torch.distributed is initialised.

Protocols (TrainConfig.protocol):
  e2e        all parameters, loss on the final outputs.
  deep       deep supervision: Σ_l w_l · loss(state after layer l), weights `layer_weights`
             ("uniform", "linear", "log" = DetNet's log(l), "last", or a list), normalised to sum 1.
  stagewise  as in the LISTA-CP/CPSS reference code (Chen et al. 2018): for k = 1..L, train layer k
             alone on the k-layer network (earlier layers frozen) at `lr`, then refine layers 1..k at
             lr·refine[0], lr·refine[1], ...; every stage stops early on the validation metric and
             ends with its best weights.
e2e and deep also continue at the refinement rates once the validation metric stops improving
(`refine=()` for one stage only).
Per-layer learning rates (`layer_lr`) and stage-wise freezing: per-layer views of the stacked parameters,
one optimiser parameter group per rate, frozen layers outside autograd (unroll.train.optim); update scaling
(unroll.train.layers) where views do not apply.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from unroll.runtime.layer_views import installed

from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from .forward import NetForward
from .layers import copy_layer
from .metrics import resolve_loss, resolve_metric
from .optim import StageOptimizer, stage_optimizer, zero_grad_keeps_params
from .stages import Stage, check_stage_options, plan_stages, stage_deadline, stage_deadlines, trains_one_layer
from .tasks import convert_batch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class TrainConfig:
    protocol: str = "e2e"  # e2e | stagewise | deep
    epochs: int = 20  # at most, per stage (early stopping: patience)
    steps_per_epoch: int = 100  # synthetic tasks (a dataset: one pass)
    batch_size: int | tuple = 64  # or one per stage of a group: the stage at lr, then each refinement
    lr: float = 1e-3
    optimizer: str = "adam"  # adam | adamw | sgd
    weight_decay: float = 0.0
    losses: dict | None = None  # target -> loss name; default: the task's
    loss_weights: dict | None = None  # target -> weight (default 1)
    layer_weights: object = "uniform"  # deep supervision
    # learning-rate multipliers: a list of L numbers (per layer), or {parameter: a number or L numbers} (per
    # parameter, e.g. {"theta": 10}); a parameter not named uses 1.  Stage-wise, they scale each stage's layers
    layer_lr: object = None
    refine: tuple = (0.2, 0.02)  # stagewise refinement learning-rate factors
    # stage-wise: refining layers 1..k, layer l learns at refine_decay^(k-l) of the stage's rate, so that the
    # refinement works mostly on the recent layers (the reference code's decay_rate = 0.3, which it applies to
    # the gradients before Adam, whose normalisation undoes it but near its epsilon; here it scales the update)
    refine_decay: float = 1.0
    # stage-wise: refine only the last `refine_window` layers k-W+1..k (None: all k); the older layers stay frozen,
    # so the backward pass stops at layer k-W+1 (with refine_decay their rates are small anyway: 0.5^6 < 2 %)
    refine_window: int | None = None
    patience: int = 5  # epochs without a better validation metric before a stage stops
    grad_clip: float | None = None
    seed: int = 0
    dtype: str = "float32"
    log_every: int = 10
    max_cpu_seconds: float | None = None  # stop (keeping the best weights) when this much CPU time is spent
    # with max_cpu_seconds: the share of the CPU budget of each stage of a group (the stage at lr, then each
    # refinement), e.g. (0.6, 0.25, 0.15); stage-wise, layer k's group gets a part of the budget proportional to
    # k (a k-layer network costs k layers a step).  A stage ends at its patience or when its share is spent, so
    # that every stage runs within the budget.  None: stages end at their patience or `epochs` only.
    budget_shares: tuple | None = None
    # where the unused time of a stage that stops early (patience) goes: "next": to the next stage (the shares
    # are cumulative deadlines); "spread": to all the stages after it, in proportion to their shares
    budget_rollover: str = "next"
    # stage-wise: how layer k starts its stage. "default": the spec's defaults (the reference code); "previous":
    # a copy of the trained layer k-1 (every per-layer parameter), so that the new layer starts as the step the
    # network has learned rather than the classical one
    stage_init: str = "default"
    # train each layer of a stacked per-layer parameter through its own view (one optimiser group per rate,
    # frozen layers outside autograd: unroll.train.optim); False: update scaling of the whole stacks (the same
    # numbers, slower).  Views apply to a generated network in one process
    layer_views: bool = True


@dataclass
class Progress:
    stage: int = 0
    epoch: int = 0  # epochs finished in this stage
    step: int = 0  # steps in all
    step_in_stage: int = 0
    best: float | None = None  # best validation metric of this stage
    stale: int = 0  # epochs since it improved
    cpu_seconds: float = 0.0
    stage_start_cpu: float | None = None  # CPU time (s) at which this stage started (its budget_shares deadline)
    classical: dict = field(default_factory=dict)  # per-layer test metric of the untrained network
    done: bool = False


class Trainer:
    def __init__(self, net, task, config: TrainConfig | None = None, out_dir=None, progress: bool = True, **overrides):
        self.config = config or TrainConfig()
        for key, value in overrides.items():
            if not hasattr(self.config, key):
                raise TypeError(f"Trainer: unknown option {key!r}")
            setattr(self.config, key, value)
        cfg = self.config
        if cfg.protocol not in ("e2e", "stagewise", "deep"):
            raise ValueError(f"protocol: expected e2e, stagewise or deep, got {cfg.protocol!r}")
        if cfg.stage_init not in ("default", "previous"):
            raise ValueError(f"stage_init: expected 'default' or 'previous', got {cfg.stage_init!r}")
        check_stage_options(cfg)
        self.net, self.task = net, task
        self.losses = {t: resolve_loss(l) for t, l in (cfg.losses or task.losses).items()}
        self.weights = {t: float((cfg.loss_weights or {}).get(t, 1.0)) for t in self.losses}
        self.metric_fn, self.higher_better = resolve_metric(task.metric)
        self.target = next(iter(self.losses))
        self.distributed = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.distributed else 0
        self.world = dist.get_world_size() if self.distributed else 1
        self.device = next((p.device for p in net.parameters()), torch.device("cpu"))
        self.dtype = DTYPES[cfg.dtype]
        self.forward = NetForward(net)
        if self.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DistributedDataParallel(self.forward, device_ids=ids,
                                                 find_unused_parameters=cfg.protocol == "stagewise")
        else:
            self.model = self.forward
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.main = self.rank == 0
        self.show = progress and self.main
        self.progress = Progress()
        self.history: list[dict] = []
        self.optimizer = None  # the stage's torch optimiser (self._stage_opt.optimizer)
        self._stage_opt: StageOptimizer | None = None
        self._stage_best_state = None
        self._log_file = None
        if self.out_dir is not None and self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._log_file = open(self.out_dir / "log.jsonl", "a")  # noqa: SIM115 - open for the run, closed by _finish

    # ------------------------------------------------------------------ plan (runtime/train/stages.py)
    def stage_deadlines(self, stages: list[Stage]) -> list[float] | None:
        """The CPU time (s) by which each stage ends, from `budget_shares` (None without them)."""
        return stage_deadlines(self.config, stages)

    def stages(self) -> list[Stage]:
        return plan_stages(self.config, self.net)

    def _make_optimizer(self, stage: Stage) -> torch.optim.Optimizer:
        """A fresh optimiser for `stage` (with its per-layer views and update scaling: unroll.train.optim)."""
        self._stage_opt = stage_optimizer(self.net, stage, self.config,
                                          use_views=self.config.layer_views and not self.distributed)
        self.optimizer = self._stage_opt.optimizer
        return self.optimizer

    def _zero_grad_keeps_params(self) -> bool:
        """Whether this stage's optimiser (created for it) leaves a slice whose gradient stays zero exactly as
        it is: Adam, AdamW and SGD (momentum) without weight decay (their moments of a zero gradient are 0)."""
        return zero_grad_keeps_params(self.config)

    # ------------------------------------------------------------------ losses and evaluation
    def _layer_weights(self, layers: int) -> list[float]:
        spec = self.config.layer_weights
        if isinstance(spec, str):
            table = {"uniform": [1.0] * layers, "linear": [float(l) for l in range(1, layers + 1)],
                     "log": [math.log(l) for l in range(1, layers + 1)], "last": [0.0] * (layers - 1) + [1.0]}
            if spec not in table:
                raise ValueError(f"layer_weights: expected uniform, linear, log, last or a list, got {spec!r}")
            w = table[spec]
        else:
            w = [float(v) for v in spec]
            if len(w) != layers:
                raise ValueError(f"layer_weights: {len(w)} weights for {layers} layers")
        total = sum(w)
        if total <= 0:
            raise ValueError("layer_weights: the weights must have a positive sum")
        return [v / total for v in w]

    def loss(self, inputs, targets, depth=None, model=None):
        model = model or self.model
        if self.config.protocol == "deep":
            _, record = model(inputs, mode="trace", depth=depth)
            weights = self._layer_weights(len(record) - 1)
            return _weighted([(w, self._target_loss(states, targets)) for w, states in zip(weights, record[1:]) if w])
        return self._target_loss(model(inputs, mode="output", depth=depth), targets)

    def _target_loss(self, values: dict, targets: dict):
        return _weighted([(self.weights[t], fn(values[t], targets[t])) for t, fn in self.losses.items()])

    @torch.no_grad()
    def validate(self, batch, depth=None) -> tuple[float, float]:
        inputs, targets = convert_batch(batch, self.dtype, self.device)
        outputs = self.forward(inputs, mode="output", depth=depth)
        loss = self._target_loss(outputs, targets)
        return float(loss), float(self.metric_fn(outputs[self.target], targets[self.target]))

    @torch.no_grad()
    def per_layer(self, batch, net=None) -> list[float]:
        """The headline metric after every layer (index 0: the initial state) on `batch`, when the
        target is a state; else only the final output's (one entry)."""
        net = net or self.net
        inputs, targets = convert_batch(batch, self.dtype, self.device)
        outputs, record = NetForward(net)(inputs, mode="trace")
        if self.target in type(net).state_names:
            return [float(self.metric_fn(s[self.target], targets[self.target])) for s in record]
        return [float(self.metric_fn(outputs[self.target], targets[self.target]))]

    def _better(self, value, best) -> bool:
        if best is None:
            return True
        return value > best if self.higher_better else value < best

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int | None = None) -> dict:
        """Train to the end of the plan, or for at most `epochs` epochs in this call (then `fit` again, or
        `resume` from last.pt in another process, continues where it stopped)."""
        cfg = self.config
        budget = epochs
        torch.manual_seed(cfg.seed)
        if not self.progress.classical and self.task.test is not None and hasattr(type(self.net), "num_layers"):
            self.progress.classical = {"per_layer": self.per_layer(self.task.test)}
        stages = self.stages()
        start_cpu = time.process_time() - self.progress.cpu_seconds
        start_wall = time.perf_counter()
        while self.progress.stage < len(stages) and not self.progress.done:
            stage = stages[self.progress.stage]
            if self.progress.epoch == 0 and self.progress.step_in_stage == 0:
                self.progress.stage_start_cpu = self.progress.cpu_seconds  # (as of the last epoch's end)
                self._start_stage(stage)
            deadline = stage_deadline(cfg, stages, self.progress.stage, self.progress.stage_start_cpu)
            if self.optimizer is None:
                self._make_optimizer(stage)
            rates, trained = self._stage_opt.rates, self._stage_opt.parameters()
            steps = self.task.epoch_steps(stage.batch_size, self.world) or cfg.steps_per_epoch
            spent = False  # this stage's share of the CPU budget (budget_shares)
            while self.progress.epoch < cfg.epochs:
                epoch_seed = cfg.seed * 100003 + self.progress.stage * 1009 + self.progress.epoch
                batches = self.task.batches(stage.batch_size, epoch_seed, self.rank, self.world)
                bar = _bar(steps, f"{stage.name} epoch {self.progress.epoch + 1}/{cfg.epochs}", self.show)
                for _ in range(steps):
                    inputs, targets = convert_batch(next(batches), self.dtype, self.device)
                    with self._views_installed():
                        loss = self.loss(inputs, targets, stage.depth)
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if rates is not None:
                        rates.before_step()
                    if cfg.grad_clip:
                        torch.nn.utils.clip_grad_norm_(trained, cfg.grad_clip)
                    self.optimizer.step()
                    if rates is not None:
                        rates.after_step()
                    self.progress.step += 1
                    self.progress.step_in_stage += 1
                    if self.progress.step % cfg.log_every == 0:
                        value = loss.item()
                        self._log(event="step", stage=stage.name, step=self.progress.step, loss=value,
                                  cpu_s=round(time.process_time() - start_cpu, 3))
                        if bar is not None:
                            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                    if bar is not None:
                        bar.update()
                if bar is not None:
                    bar.close()
                self.progress.epoch += 1
                self.progress.cpu_seconds = time.process_time() - start_cpu
                self._end_epoch(stage, time.perf_counter() - start_wall)
                if budget is not None:
                    budget -= 1
                spent = self._all_replicas_agree(deadline is not None and self.progress.cpu_seconds >= deadline)
                if self._out_of_time() or self.progress.stale >= cfg.patience or budget == 0 or spent:
                    break
            if budget == 0 and self.progress.epoch < cfg.epochs and self.progress.stale < cfg.patience \
                    and not self._out_of_time() and not spent:
                return self._pause()
            self._end_stage(stage)
            if budget == 0 and self.progress.stage < len(stages):
                return self._pause()
            if self._out_of_time():
                self.progress.done = True
        self.progress.done = True
        return self._finish()

    def _views_installed(self):
        """The stage's per-layer views in the network's forward (a no-op without views)."""
        views = self._stage_opt.views if self._stage_opt is not None else None
        return installed(self.net, views) if views else contextlib.nullcontext()

    def _start_stage(self, stage: Stage) -> None:
        """Before the first step of a stage: stage-wise with stage_init "previous", layer k (k > 1) becomes a
        copy of the trained layer k-1.  The starting weights are the stage's first best (validated here): a
        stage that only makes the network worse (a refinement whose rate overshoots) ends where it started."""
        if self.config.stage_init == "previous" and stage.depth and stage.depth > 1 and trains_one_layer(stage):
            copy_layer(self.net, stage.depth - 2, stage.depth - 1)
        _, metric = self.validate(self.task.validation, stage.depth)
        self.progress.best, self.progress.stale = metric, 0
        self._stage_best_state = copy.deepcopy(self.net.state_dict())
        self._log(event="stage_start", stage=stage.name, metric=metric, step=self.progress.step)

    def _pause(self) -> dict:
        if self._log_file is not None:
            self._log_file.flush()
        return {"progress": asdict(self.progress), "history": self.history, "paused": True}

    def _end_epoch(self, stage: Stage, wall: float) -> None:
        val_loss, val_metric = self.validate(self.task.validation, stage.depth)
        improved = self._better(val_metric, self.progress.best)
        if improved:
            self.progress.best, self.progress.stale = val_metric, 0
            self._stage_best_state = copy.deepcopy(self.net.state_dict())
        else:
            self.progress.stale += 1
        record = {"event": "validation", "stage": stage.name,
                  "depth": stage.depth or getattr(type(self.net), "num_layers", None), "epoch": self.progress.epoch,
                  "step": self.progress.step, "loss": val_loss, "metric": val_metric, "best": self.progress.best,
                  "cpu_s": round(self.progress.cpu_seconds, 3), "wall_s": round(wall, 3)}
        self.history.append(record)
        self._log(**record)
        if self.show:
            from tqdm import tqdm

            tqdm.write(f"{stage.name}: epoch {self.progress.epoch} validation {self.task.metric} {val_metric:.3f}"
                       f" (best {self.progress.best:.3f}) cpu {self.progress.cpu_seconds:.0f} s")
        if self.out_dir is not None and self.main and getattr(self.net, "recipe", None) is not None:
            save_checkpoint(self.out_dir / "last.pt", self.net, self._resume_state())
            if improved and stage.depth is None:
                save_checkpoint(self.out_dir / "best.pt", self.net, {"progress": asdict(self.progress)})

    def _end_stage(self, stage: Stage) -> None:
        if self._stage_best_state is not None:
            self.net.load_state_dict(self._stage_best_state)
        self._log(event="stage_end", stage=stage.name, best=self.progress.best, step=self.progress.step)
        if self.out_dir is not None and self.main and getattr(self.net, "recipe", None) is not None:
            save_checkpoint(self.out_dir / "best.pt", self.net, {"progress": asdict(self.progress)})
        self.progress.stage += 1
        self.progress.epoch, self.progress.best, self.progress.stale = 0, None, 0
        self.progress.step_in_stage = 0
        self._stage_best_state = None
        self.optimizer = self._stage_opt = None  # a fresh optimiser per stage, as in the reference code
        if self.out_dir is not None and self.main and getattr(self.net, "recipe", None) is not None:
            save_checkpoint(self.out_dir / "last.pt", self.net, self._resume_state())

    def _out_of_time(self) -> bool:
        limit = self.config.max_cpu_seconds
        return self._all_replicas_agree(limit is not None and self.progress.cpu_seconds >= limit)

    def _all_replicas_agree(self, flag: bool) -> bool:
        """A CPU-time test, true on every replica once it is true on one (each replica has its own clock, and
        they must end a stage or the run together)."""
        if not self.distributed:
            return flag
        value = torch.tensor([float(flag)], device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    def _finish(self) -> dict:
        result = {"progress": asdict(self.progress), "history": self.history}
        if self.task.test is not None and hasattr(type(self.net), "num_layers"):
            trained = self.per_layer(self.task.test)
            result["per_layer"] = {"trained": trained, "classical": self.progress.classical.get("per_layer")}
            result["test_metric"] = trained[-1]
            self._log(event="test", metric=self.task.metric, trained=trained,
                      classical=self.progress.classical.get("per_layer"))
        if self.out_dir is not None and self.main:
            (self.out_dir / "summary.json").write_text(json.dumps(
                {k: v for k, v in result.items() if k != "history"}, indent=1))
            if getattr(self.net, "recipe", None) is not None:
                save_checkpoint(self.out_dir / "final.pt", self.net, self._resume_state())
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return result

    # ------------------------------------------------------------------ checkpoints and log
    def _resume_state(self) -> dict:
        return {"progress": asdict(self.progress), "config": asdict(self.config), "history": self.history,
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "stage_best": self._stage_best_state}

    def resume(self, path) -> Trainer:
        """Continue from checkpoint PATH (last.pt): weights (checked against this network), optimiser,
        stage, epoch and validation history."""
        state = read_checkpoint(path)
        load_checkpoint(path, net=self.net)
        self.progress = Progress(**state["progress"])
        self.progress.done = False
        self.history = list(state.get("history") or [])
        self._stage_best_state = state.get("stage_best")
        if state.get("optimizer") is not None:
            stage = self.stages()[min(self.progress.stage, len(self.stages()) - 1)]
            self._make_optimizer(stage)
            problem = _optimizer_mismatch(self.optimizer, state["optimizer"])
            if problem:  # the optimiser groups of another layer_views setting (or trainer version)
                written = (state.get("config") or {}).get("layer_views", False)  # (before views: stacks only)
                why = (f"it was written with layer_views={written}, this trainer has layer_views="
                       f"{self.config.layer_views}" if written != self.config.layer_views else problem)
                raise ValueError(f"resume: the optimiser state in {path} does not fit this stage's optimiser: {why}; "
                                 "resume with the configuration of the run that wrote it")
            self.optimizer.load_state_dict(state["optimizer"])
        return self

    def _log(self, **record) -> None:
        if self._log_file is not None:
            self._log_file.write(json.dumps(record) + "\n")
            self._log_file.flush()


def _optimizer_mismatch(optimizer, saved: dict) -> str | None:
    """Why optimiser state `saved` does not fit `optimizer` (torch checks the group sizes only, not the
    shapes: a [16, m, n] moment would load onto a [m, n] view); None if it fits."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    sizes = [len(g["params"]) for g in saved["param_groups"]]
    own = [len(g["params"]) for g in optimizer.param_groups]
    if sizes != own:
        return f"parameter groups of {sizes} tensors, the optimiser's of {own}"
    ids = [i for g in saved["param_groups"] for i in g["params"]]
    for index, param in zip(ids, params):
        for name, value in saved["state"].get(index, {}).items():
            if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                return f"a saved {name} has shape {list(value.shape)}, its parameter {list(param.shape)}"
    return None


def _weighted(terms):
    """Σ w·loss without the no-op multiplications by 1 (one autograd node less per term)."""
    total = None
    for w, term in terms:
        term = term if w == 1 else w * term
        total = term if total is None else total + term
    return total


def _bar(total, desc, show):
    if not show:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True)


def init_distributed(device: str = "cpu") -> str:
    """Under `torchrun` (WORLD_SIZE > 1 in the environment) start the process group if the caller has not:
    NCCL for CUDA, gloo on CPU.  Returns the device of this process (cuda:LOCAL_RANK for "cuda")."""
    import os

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and dist.is_available() and not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    if world > 1 and str(device) == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        torch.cuda.set_device(device)
    return device


def train(net, task, out_dir=None, progress: bool = True, resume=None, **options) -> dict:
    """Train `net` on `task` (options: the fields of TrainConfig); returns the result dict (history,
    per-layer test metric of the trained and the untrained network, test metric).  With `out_dir`:
    log.jsonl, last.pt / best.pt / final.pt checkpoints and summary.json are written there."""
    trainer = Trainer(net, task, TrainConfig(**options), out_dir=out_dir, progress=progress)
    if resume is not None:
        trainer.resume(resume)
    return trainer.fit()


__all__ = ["TrainConfig", "Trainer", "init_distributed", "train"]

