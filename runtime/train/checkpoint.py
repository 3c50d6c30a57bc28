"""Checkpoints that rebuild the exact network without the spec file.

A network built by `build_net` carries a `Recipe`: the spec text, its sha256, the compile options, the
compiler version and the constructor arguments.  A checkpoint stores the recipe with the state_dict (and,
for resuming, the optimiser state and the trainer's progress).  `load_checkpoint(path)` recompiles the
stored spec text with the stored options (through the on-disk cache of unroll.load), constructs the
network with the stored arguments and loads the weights.  Given a spec and/or options to check against,
or a network to load into, a load that does not match fails with a message naming what differs.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from unroll.compiler.driver import VERSION, make_options, resolve_spec
from unroll.runtime.loader import load_text

FORMAT = "unroll-checkpoint-1"
OPTION_NAMES = ("layers", "tie", "untie", "learn", "freeze", "class_name", "backward")


class CheckpointMismatch(ValueError):
    """A checkpoint does not match the network, spec or options it is loaded against."""


@dataclass
class Recipe:
    spec_name: str
    spec_text: str
    spec_sha256: str
    options: dict  # layers, tie, untie, learn, freeze, class_name, backward (a memory mode; absent: unroll)
    compiler_version: str = VERSION
    arguments: dict = field(default_factory=dict)  # constructor arguments (tensors and numbers)

    def options_text(self) -> str:
        return make_options(**self.options).text()


def recipe(spec, **options) -> Recipe:
    """The recipe of SPEC (a path or a shipped name) compiled with the options of unroll.load."""
    unknown = sorted(set(options) - set(OPTION_NAMES))
    if unknown:
        raise TypeError(f"unknown compile option {', '.join(map(repr, unknown))} (the options of unroll.load: "
                        f"{', '.join(OPTION_NAMES)})")
    made = make_options(**options)
    path = resolve_spec(str(spec))
    text = path.read_text()
    compiled = {"layers": made.layers, "tie": made.tie, "untie": made.untie, "learn": made.learn,
                "freeze": made.freeze, "class_name": made.class_name}
    if made.backward is not None:  # (absent from the recipes of checkpoints written before memory modes)
        compiled["backward"] = made.backward
    return Recipe(path.stem, text, hashlib.sha256(text.encode()).hexdigest(), compiled)


def compile_recipe(rec: Recipe):
    """The generated class of a recipe (from the spec text itself; cached on disk like unroll.load)."""
    return load_text(rec.spec_text, rec.spec_name, f"{rec.spec_name}.unroll", **rec.options)


def build_net(spec, task=None, arguments: dict | None = None, dtype=torch.float32, device="cpu", **options):
    """Compile SPEC with `options` (those of unroll.load) and construct the network for `task` (or with
    `arguments`); the network carries its recipe (`net.recipe`) for checkpoints."""
    rec = recipe(spec, **options)
    Net = compile_recipe(rec)
    if task is not None:
        net, kwargs = task.build(Net, dtype=dtype, device=device, **(arguments or {}))
    else:
        kwargs = dict(arguments or {})
        net = Net(**kwargs)
    rec.arguments = {k: v.detach().cpu() if torch.is_tensor(v) else v for k, v in kwargs.items()}
    net.recipe = rec
    return net


def save_checkpoint(path, net, extra: dict | None = None) -> None:
    """Write `net` (built by build_net, or given a `recipe` attribute) and `extra` (optimiser and trainer
    state) to PATH atomically."""
    rec = getattr(net, "recipe", None)
    if rec is None:
        raise ValueError("save_checkpoint: the network has no recipe (spec text, options, constructor arguments); "
                         "build it with unroll.train.build_net, or set `net.recipe = unroll.train.recipe(spec, "
                         "layers=...)` and `net.recipe.arguments = {...}`")
    state = {"format": FORMAT, "recipe": asdict(rec), "class_name": type(net).__name__,
             "state_dict": net.state_dict(), **(extra or {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def read_checkpoint(path) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path}: not an unroll checkpoint (expected format {FORMAT!r})")
    return state


def _differences(stored: Recipe, spec=None, options: dict | None = None, net=None) -> list[str]:
    out = []
    if stored.compiler_version != VERSION:
        out.append(f"compiler version: checkpoint {stored.compiler_version}, this unrollc {VERSION}")
    if spec is not None:
        given = recipe(spec, **(options or stored.options))
        if given.spec_sha256 != stored.spec_sha256:
            out.append(f"spec text: checkpoint `{stored.spec_name}` sha256 {stored.spec_sha256[:12]}…, given "
                       f"`{given.spec_name}` sha256 {given.spec_sha256[:12]}…")
    if options is not None:
        want = make_options(**{k: options.get(k) for k in OPTION_NAMES}).text()
        if want != stored.options_text():
            out.append(f"compile options: checkpoint `{stored.options_text() or '(none)'}`, given `{want or '(none)'}`")
    if net is not None:
        if getattr(type(net), "spec_sha256", None) != stored.spec_sha256:
            out.append(f"spec text: checkpoint `{stored.spec_name}` sha256 {stored.spec_sha256[:12]}…, network "
                       f"`{type(net).spec_name}` sha256 {str(getattr(type(net), 'spec_sha256', '?'))[:12]}…")
        if stored.options.get("layers") is not None and type(net).num_layers != stored.options["layers"]:
            out.append(f"layers: checkpoint {stored.options['layers']}, network {type(net).num_layers}")
    return out


def _load_state(net, state_dict, where) -> None:
    own = net.state_dict()
    problems = [f"{k}: checkpoint shape {list(v.shape)}, network {list(own[k].shape)}"
                for k, v in state_dict.items() if torch.is_tensor(v) and k in own and torch.is_tensor(own[k])
                and v.shape != own[k].shape]
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing:
        problems.append(f"missing in the checkpoint: {', '.join(missing)}")
    if unexpected:
        problems.append(f"not in the network: {', '.join(unexpected)}")
    if problems:
        raise CheckpointMismatch(f"{where}: the checkpoint's weights do not fit the network:\n  " + "\n  ".join(problems))
    net.load_state_dict(state_dict)


def load_checkpoint(path, spec=None, net=None, dtype=None, device="cpu", strict_version: bool = True, **options):
    """Rebuild the network of checkpoint PATH (no spec file needed) and load its weights; returns the network.

    spec/options: check the checkpoint against them (a mismatch raises CheckpointMismatch naming what
    differs).  net: load into this network instead of building one (checked the same way)."""
    state = read_checkpoint(path)
    stored = Recipe(**state["recipe"])
    given_options = {k: options.get(k) for k in OPTION_NAMES} if options else None
    diffs = _differences(stored, spec, given_options, net)
    if not strict_version:
        diffs = [d for d in diffs if not d.startswith("compiler version")]
    if diffs:
        raise CheckpointMismatch(f"{path}: checkpoint does not match:\n  " + "\n  ".join(diffs))
    if net is None:
        Net = compile_recipe(stored)
        args = dict(stored.arguments)
        net = Net(**args)
        net.recipe = stored
    if dtype is not None:
        net = net.to(dtype)
    _load_state(net, state["state_dict"], str(path))
    return net.to(device)


__all__ = [
    "CheckpointMismatch",
    "Recipe",
    "build_net",
    "compile_recipe",
    "load_checkpoint",
    "read_checkpoint",
    "recipe",
    "save_checkpoint",
]
