"""Composed networks and individual-then-joint fine-tuning (Wu et al.: a reconstruction network
followed by a detector, each trained alone, then jointly).

    chain = Chain([("recon", recon_net, {"y": "y"}),            # network input y <- the chain's input y
                   ("refine", refine_net, {"y": "recon.x"})])   # its input y <- recon's output x
    train_composed(chain, task, targets={"recon": "recon.x", "refine": "refine.x"})

The chain's outputs are named "<part>.<output>"; a task's targets use those names.
"""

from __future__ import annotations

from torch import nn

from .trainer import TrainConfig, Trainer


class Chain(nn.Module):
    def __init__(self, parts):
        super().__init__()
        self.names = []
        self.wiring = []
        self.parts = nn.ModuleDict()
        for name, net, wiring in parts:
            if name in self.parts:
                raise ValueError(f"Chain: two parts named {name!r}")
            self.parts[name] = net
            self.names.append(name)
            self.wiring.append(dict(wiring))

    def forward(self, inputs: dict) -> dict:
        values = dict(inputs)
        for name, wiring in zip(self.names, self.wiring):
            net = self.parts[name]
            missing = [source for source in wiring.values() if source not in values]
            if missing:
                raise ValueError(f"Chain part {name!r}: no value {missing[0]!r} (available: {', '.join(values)})")
            out = net(**{arg: values[source] for arg, source in wiring.items()})
            out = out if isinstance(out, tuple) else (out,)
            values.update({f"{name}.{o}": v for o, v in zip(getattr(net, "output_names", ("out",)), out)})
        return values


def train_composed(chain: Chain, task, targets: dict, individual_epochs: int = 5, joint_epochs: int = 5,
                   joint_lr_factor: float = 0.1, progress: bool = True, **options) -> list[dict]:
    """Train each part alone on its own target (the other parts frozen; targets: {part: chain output name
    compared with the task target of the same name}), in order, then all parts jointly on the sum of the
    losses at lr·joint_lr_factor.  Returns the results of every phase."""
    base = TrainConfig(**options)
    results = []
    trainable = {id(p): p.requires_grad for p in chain.parameters()}
    losses = task.losses
    for name in chain.names:
        for other in chain.names:
            for p in chain.parts[other].parameters():
                p.requires_grad_(trainable[id(p)] and other == name)
        target = targets[name]
        config = TrainConfig(**{**base.__dict__, "epochs": individual_epochs, "losses": {target: losses[target]}})
        results.append(Trainer(chain, task, config, progress=progress).fit())
    for p in chain.parameters():
        p.requires_grad_(trainable[id(p)])
    config = TrainConfig(**{**base.__dict__, "epochs": joint_epochs, "lr": base.lr * joint_lr_factor,
                            "losses": {t: losses[t] for t in targets.values()}})
    results.append(Trainer(chain, task, config, progress=progress).fit())
    return results
