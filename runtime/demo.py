"""`unrollc demo SPEC`: compile a shipped spec, run it on synthetic sparse-coding
data, train it briefly if it has trainable parameters, and print the per-layer
NMSE of the untrained network (= the classical algorithm) next to the trained one.

Works for specs with a dictionary `A : real[n, m]` as data and a measurement
`y : real[n]` as input (the sparse-coding family).
"""

from __future__ import annotations

import math
import time

import torch

from .loader import load


def _problem(n, m, k, batch, generator, dtype):
    A = torch.randn(n, m, generator=generator, dtype=torch.float64)
    A = A / torch.linalg.vector_norm(A, dim=0, keepdim=True)
    x = torch.zeros(batch, m, dtype=torch.float64)
    for i in range(batch):
        support = torch.randperm(m, generator=generator)[:k]
        x[i, support] = torch.randn(k, generator=generator, dtype=torch.float64)
    y = x @ A.T + 0.01 * torch.randn(batch, n, generator=generator, dtype=torch.float64)
    return A.to(dtype), x.to(dtype), y.to(dtype)


def nmse_db(x_hat: torch.Tensor, x: torch.Tensor) -> float:
    return 10 * math.log10(float((x_hat - x).square().sum() / x.square().sum()))


def run(spec: str, layers: int = 8, steps: int = 2000, seed: int = 0, out=print) -> dict:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    Net = load(spec, layers=layers)
    out(f"compiled `{spec}` with {layers} layers in {time.perf_counter() - start:.2f} s -> {Net.__name__} "
        f"(generated source: `unrollc compile {spec} --layers {layers} -o -`)")
    import inspect

    if "y" not in Net.input_names or "A" not in inspect.signature(Net.__init__).parameters:
        raise SystemExit(f"unrollc demo: `{spec}` does not take a measurement `y`; the demo covers the "
                         "sparse-coding specs (data A, input y)")
    n, m, k = 20, 50, 4
    A, x_train, y_train = _problem(n, m, k, 2000, gen, torch.float32)
    _, x_test, y_test = _problem(n, m, k, 500, gen, torch.float32)
    # same dictionary for train and test
    y_train = x_train @ A.T + 0.01 * torch.randn(y_train.shape, generator=gen)
    y_test = x_test @ A.T + 0.01 * torch.randn(y_test.shape, generator=gen)
    hypers = dict(Net.hyper_defaults)
    kwargs = {}
    if "lam" in hypers:
        kwargs["lam"] = 0.05
    if "k" in hypers:
        kwargs["k"] = k
    net = Net(A=A, **kwargs)
    out(f"data: A {n}x{m} with unit-norm columns, {k}-sparse codes, noise 0.01; "
        f"hyperparameters {kwargs or 'defaults'}")
    with torch.no_grad():
        classical = [nmse_db(s[Net.state_names[0]], x_test) for s in net.trace(y_test)[1:]]
    trainable = [p for p in net.parameters() if p.requires_grad]
    trained = None
    if trainable and steps > 0:
        opt = torch.optim.Adam(trainable, lr=5e-3)
        start = time.perf_counter()
        for step in range(steps):
            idx = torch.randint(0, y_train.shape[0], (64,), generator=gen)
            loss = (net(y_train[idx]) - x_train[idx]).square().sum(-1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        out(f"trained {sum(p.numel() for p in trainable)} parameters for {steps} Adam steps "
            f"in {time.perf_counter() - start:.1f} s")
        with torch.no_grad():
            trained = [nmse_db(s[Net.state_names[0]], x_test) for s in net.trace(y_test)[1:]]
    out("")
    out("layer   untrained = classical (dB)" + ("   trained (dB)" if trained else ""))
    for layer, value in enumerate(classical, start=1):
        extra = f"   {trained[layer - 1]:12.2f}" if trained else ""
        out(f"{layer:5d}   {value:28.2f}{extra}")
    return {"classical": classical, "trained": trained}
