"""`unrollc demo SPEC` on every shipped spec: each has a catalog task (runtime/problems), the untrained
network's quality is the classical algorithm's, and the demo prints it layer by layer.

The per-spec equivalence with the classical algorithm is tested elsewhere against independent references;
here: every shipped spec has a task whose data build the network, the untrained network's result is
what the demo reports as classical, a few training steps run and change a trainable spec, and the task
is meaningful (the classical algorithm at the task's depth does better than a trivial estimate)."""

from __future__ import annotations

import math

import pytest
import torch
from unroll.compiler.driver import shipped_specs
from unroll.runtime import demo, problems

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SHIPPED = shipped_specs()


def test_every_shipped_spec_has_a_catalog_task():
    assert sorted(problems.known_specs()) == sorted(SHIPPED)


def test_an_unknown_spec_is_a_value_error_listing_the_tasks():
    with pytest.raises(ValueError, match="no catalog task for `nope`.*lista"):
        problems.problem_for("nope")


@pytest.mark.parametrize("name", SHIPPED)
def test_demo_runs_every_shipped_spec(name):
    lines = []
    result = demo.run(name, layers=2, steps=2, progress=False, out=lines.append)
    text = "\n".join(lines)
    assert "untrained network = the classical algorithm" in text and "held-out" in text
    assert math.isfinite(result["classical"])
    if result["trained"] is not None:
        assert math.isfinite(result["trained"])
    if result["classical_layers"] is not None:
        assert len(result["classical_layers"]) == 2
        assert result["classical_layers"][-1] == pytest.approx(result["classical"])


def trivial_quality(problem):
    """The metric of the best constant-free trivial estimate: all zeros (NMSE 0 dB / PSNR of zeros)."""
    return demo.quality(problem.metric, torch.zeros_like(problem.test_truth), problem.test_truth)


@pytest.mark.parametrize("name", ["ista", "admm_csnet", "deep_nmf", "misi", "prox_linear_psse", "sparcom"])
def test_the_classical_algorithm_beats_the_trivial_estimate(name):
    problem = problems.problem_for(name)
    from unroll.runtime.loader import load

    net = load(name, layers=problem.layers)(**problem.data)
    classical = demo.final(net, problem)
    trivial = trivial_quality(problem)
    better = classical > trivial + 3 if problem.metric == "psnr" else classical < trivial - 3
    assert better, (name, classical, trivial)


def test_metrics_against_their_formulas():
    truth = torch.tensor([[1.0, -1.0, 2.0]])
    est = torch.tensor([[1.0, 0.0, 2.0]])
    assert demo.quality("nmse", est, truth) == pytest.approx(10 * math.log10(1 / 6))
    assert demo.quality("psnr", est, truth) == pytest.approx(10 * math.log10(3.0))
    assert demo.quality("ser", torch.tensor([[0.3, -0.2, -1.0]]), torch.tensor([[1.0, -1.0, 1.0]])) == \
        pytest.approx(1 / 3)
    probabilities = torch.tensor([[[0.7, 0.3], [0.4, 0.6], [0.9, 0.1]]])
    labels = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [1.0, 0.0]]])
    assert demo.quality("label_error", probabilities, labels) == pytest.approx(1 / 3)
    means = torch.tensor([[[0.0, 0.0], [5.0, 5.0]]])
    swapped = torch.tensor([[[5.0, 5.5], [0.0, 0.0]]])  # the same components in the other order
    assert demo.quality("nmse_matched", swapped, means) == pytest.approx(10 * math.log10(0.25 / 50))


def test_training_improves_lista_cp_over_ista_at_the_same_depth():
    problem = problems.problem_for("lista_cp")
    from unroll.runtime.loader import load

    net = load("lista_cp", layers=problem.layers)(**problem.data)
    ista = demo.final(net, problem)
    demo.train(net, problem, steps=400, seed=0, progress=False)
    assert demo.final(net, problem) < ista - 0.3  # held-out NMSE (dB) of ISTA at the same depth
