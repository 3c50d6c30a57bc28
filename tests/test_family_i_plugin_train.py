"""Family I plug-in hybrids train (issue 9): after a few Adam steps on the catalog task
(runtime/problems/plugin.py, scaled down further), the held-out PSNR beats the untrained network, which
is the classical algorithm at the same depth (gradient descent / proximal point / PDHG / relaxed GD on
the data term). pnp_fbs and pnp_admm train with the Lipschitz-bounded DnCNN (eps = 0.9)."""

import pytest
import torch
import unroll
from unroll.runtime.problems import problem_for

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPECS = ["pnp_fbs", "pnp_admm", "diamond_odp", "meinhardt_learned_prox", "gupta_rpgd"]


def psnr(estimate, truth):
    mse = ((estimate - truth) ** 2).mean(dim=(-2, -1))
    return float((10 * torch.log10(1.0 / mse)).mean())


@pytest.mark.parametrize("name", SPECS)
def test_training_beats_the_classical_algorithm_at_the_same_depth(name):
    torch.manual_seed(0)
    problem = problem_for(name, seed=0, dtype=torch.float32)
    data = dict(problem.data, width=8, depth=3)
    net = unroll.load(name, layers=4)(**data)
    (input_name,) = problem.train_inputs
    train_in, train_truth = problem.train_inputs[input_name][:48], problem.train_truth[:48]
    test_in, test_truth = problem.test_inputs[input_name], problem.test_truth

    def held_out():
        net.eval()
        with torch.no_grad():
            out = net(**{input_name: test_in})
        net.train()
        return psnr(out[0] if isinstance(out, tuple) else out, test_truth)

    classical = held_out()
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(1)
    for _ in range(40):
        idx = torch.randint(0, len(train_in), (16,), generator=generator)
        out = net(**{input_name: train_in[idx]})
        loss = ((out[0] if isinstance(out, tuple) else out) - train_truth[idx]).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = held_out()
    print(f"{name}: held-out PSNR classical {classical:.2f} dB, trained {trained:.2f} dB")
    assert trained > classical + 0.5, (classical, trained)
