"""`unrollc demo SPEC`: build a shipped spec on its catalog task (runtime/problems), run the untrained
network — which is the classical algorithm — and, if the spec has trainable parameters, train it
briefly; print the held-out quality layer by layer (untrained = classical next to trained)."""

from __future__ import annotations

import math
import time

import torch

from .loader import load
from .problems import Problem, problem_for

METRICS = {"nmse": ("NMSE (dB, lower is better)", "dB"), "psnr": ("PSNR (dB, higher is better)", "dB"),
           "ser": ("symbol error rate (lower is better)", ""),
           "label_error": ("pixel labelling error rate (lower is better)", ""),
           "nmse_matched": ("NMSE (dB, lower is better; components matched to the truth)", "dB"),
           "index_error": ("symbol error rate of the detected indices (lower is better)", "")}


def quality(metric: str, estimate: torch.Tensor, truth: torch.Tensor) -> float:
    """The problem's metric over a whole held-out set."""
    estimate, truth = estimate.detach(), truth.detach()
    if metric == "nmse":
        return 10 * math.log10(float((estimate - truth).abs().square().sum() / truth.abs().square().sum()))
    if metric == "psnr":  # images in [0, 1]
        mse = float((estimate - truth).abs().square().mean())
        return 10 * math.log10(1.0 / max(mse, 1e-30))
    if metric == "ser":
        return float((torch.sign(estimate) != truth).double().mean())
    if metric == "index_error":  # detected integer symbols against the sent ones
        return float((estimate != truth).double().mean())
    if metric == "label_error":  # probabilities / one-hot truths over the last axis
        return float((estimate.argmax(-1) != truth.argmax(-1)).double().mean())
    if metric == "nmse_matched":  # mixture components: each estimated row matched to its nearest true row
        nearest = torch.cdist(truth, estimate).argmin(-1)
        matched = torch.gather(estimate, -2, nearest[..., None].expand_as(truth))
        return quality("nmse", matched, truth)
    raise ValueError(f"unknown metric `{metric}`")


def select(net, outputs, problem: Problem):
    """The estimate compared with the truth: the output `problem.output`, or `problem.estimate` of all."""
    named = dict(zip(net.output_names, (outputs,) if len(net.output_names) == 1 else outputs))
    return problem.estimate(named) if problem.estimate is not None else named[problem.output]


def per_layer(net, problem: Problem) -> list[float] | None:
    """The metric after every layer, from the traced state (None when the output is not a state)."""
    if problem.state is None or problem.state not in net.state_names:
        return None
    with torch.no_grad():
        trace = net.trace(**problem.test_inputs)
    return [quality(problem.metric, states[problem.state], problem.test_truth) for states in trace[1:]]


def final(net, problem: Problem) -> float:
    with torch.no_grad():
        return quality(problem.metric, select(net, net(**problem.test_inputs), problem), problem.test_truth)


def train(net, problem: Problem, steps: int, seed: int, progress: bool = True, out=print) -> None:
    """Adam on the mean squared error of the compared output, with a progress bar."""
    from tqdm import tqdm

    trainable = [p for p in net.parameters() if p.requires_grad]
    optimiser = torch.optim.Adam(trainable, lr=problem.lr)
    gen = torch.Generator().manual_seed(seed + 1)
    size = problem.train_truth.shape[0]
    bar = tqdm(range(steps), desc="training", unit="step", disable=not progress, leave=False)
    for _ in bar:
        idx = torch.randint(0, size, (min(problem.batch, size),), generator=gen)
        if problem.loss is not None:
            loss = problem.loss(net, idx)
        else:
            batch = {name: value[idx] for name, value in problem.train_inputs.items()}
            estimate = select(net, net(**batch), problem)
            loss = (estimate - problem.train_truth[idx]).abs().square().mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        bar.set_postfix(loss=f"{loss.item():.3g}", refresh=False)  # redrawn at tqdm's interval, not every step
    bar.close()


def run(spec: str, layers: int | None = None, steps: int | None = None, seed: int = 0, out=print,
        progress: bool = True) -> dict:
    torch.manual_seed(seed)
    problem = problem_for(spec, seed=seed)
    layers = layers or problem.layers
    steps = problem.steps if steps is None else steps
    start = time.perf_counter()
    Net = load(spec, layers=layers)
    out(f"compiled `{spec}` with {layers} layers in {time.perf_counter() - start:.2f} s -> {Net.__name__} "
        f"(source: `unrollc compile {spec} --layers {layers} -o -`)")
    out(f"task: {problem.description}")
    net = Net(**problem.data)
    label = METRICS[problem.metric][0]
    classical_layers = per_layer(net, problem)
    classical = final(net, problem)
    out(f"untrained network = the classical algorithm: {problem.note}")
    trainable = [p for p in net.parameters() if p.requires_grad]
    trained_layers = trained = None
    if not trainable:
        out("no trainable parameters: the network is the classical algorithm")
    elif steps > 0:
        count = sum(p.numel() for p in trainable)
        start = time.perf_counter()
        train(net, problem, steps, seed, progress)
        out(f"trained {count} parameters for {steps} Adam steps (batch {problem.batch}, lr {problem.lr:g}) "
            f"in {time.perf_counter() - start:.1f} s")
        trained_layers = per_layer(net, problem)
        trained = final(net, problem)
    out("")
    out(f"held-out {label}, {problem.test_truth.shape[0]} samples, output `{problem.output}`")
    header = "layer   untrained = classical" + ("   trained" if trained is not None else "")
    out(header)
    if classical_layers is not None:
        for layer, value in enumerate(classical_layers, start=1):
            extra = f"   {trained_layers[layer - 1]:9.3f}" if trained_layers else ""
            out(f"{layer:5d}   {value:21.3f}{extra}")
    out(f"{'out':>5s}   {classical:21.3f}" + (f"   {trained:9.3f}" if trained is not None else ""))
    return {"classical": classical, "trained": trained, "classical_layers": classical_layers,
            "trained_layers": trained_layers, "metric": problem.metric}
