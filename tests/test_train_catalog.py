"""`unrollc train SPEC` without --task: the shipped spec's own catalog problem (runtime/problems) as a
training task (unroll.train.catalog_task)."""

import json

import pytest

torch = pytest.importorskip("torch")
from unroll.compiler.cli import main
from unroll.compiler.driver import shipped_specs
from unroll.runtime import problems
from unroll.train import TrainConfig, Trainer, build_net, catalog_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# catalog problems that train with a loss of their own or report a metric the trainer does not have
REFUSED = {"crf_rnn", "detnet", "dpn_meanfield", "em_gmm", "neural_em", "rnn_em", "viterbi", "viterbinet"}


def test_every_shipped_spec_has_a_catalog_training_task_or_a_reason():
    for spec in shipped_specs():
        if spec in REFUSED:
            with pytest.raises(ValueError, match=rf"`{spec}`.*unrollc demo {spec} --steps N"):
                catalog_task(spec)
        else:
            task = catalog_task(spec)
            problem = problems.problem_for(spec)
            assert task.spec == spec and task.targets == [problem.output]
            assert task.info["layers"] == problem.layers
            # the problem's held-out set is the test set; validation is held out of its training set
            count = problem.train_truth.shape[0]
            assert task.train_set[1][problem.output].shape[0] + task.validation[1][problem.output].shape[0] == count
            assert torch.equal(task.test[1][problem.output], problem.test_truth)


def test_catalog_task_trains_past_the_classical_algorithm_at_the_same_depth():
    task = catalog_task("lista")
    net = build_net("lista", task, layers=4)
    config = TrainConfig(epochs=2, steps_per_epoch=30, lr=5e-3, patience=5)
    trainer = Trainer(net, task, config, progress=False)
    classical = trainer.per_layer(task.test)  # the untrained network: ISTA, layer by layer
    assert len(classical) == 5 and classical[-1] < classical[1] < classical[0]
    result = trainer.fit()
    assert result["per_layer"]["classical"] == pytest.approx(classical)
    assert result["test_metric"] < classical[-1] - 0.3  # dB better than ISTA at the same depth


def test_cli_trains_a_shipped_spec_on_its_catalog_task(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "lista", "-o", str(out), "--layers", "3", "--epochs", "1", "--steps-per-epoch", "5",
                 "--no-progress"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "best.pt").exists() and (out / "layers.png").stat().st_size > 0
    assert len(summary["per_layer"]["trained"]) == 4  # the initial state and 3 layers
    printed = capsys.readouterr()
    assert "untrained = classical" in printed.out
    assert main(["train", "viterbinet", "-o", str(tmp_path / "v")]) == 1
    assert "unrollc demo viterbinet --steps N" in capsys.readouterr().err
    assert main(["train", "dsl_specs/lista.unroll", "-o", str(tmp_path / "f")]) == 1
    assert "give a --task" in capsys.readouterr().err
