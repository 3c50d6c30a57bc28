"""unroll.train: protocols, per-layer rates, stage-wise freezing, checkpoints, tasks, plots, CLI.

Tiny problems (sparse coding 20x50, 3-4 layers) so that the file runs in seconds."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import unroll
from training_helpers import quick, small
from unroll.train import (
    CheckpointMismatch,
    TrainConfig,
    Trainer,
    build_net,
    depth,
    from_tensors,
    load_checkpoint,
    sparse_coding,
)
from unroll.train.checkpoint import read_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return sparse_coding(n=20, m=50, validation=200, test=200, seed=3)


# ------------------------------------------------------------------ protocols
@pytest.mark.parametrize("protocol", ["e2e", "deep", "stagewise"])
def test_each_protocol_lowers_the_validation_error(task, protocol):
    net = small(task)
    trainer = Trainer(net, task, quick(protocol=protocol, epochs=3), progress=False)
    before = trainer.validate(task.validation)[1]
    result = trainer.fit()
    after = trainer.validate(task.validation)[1]
    assert after < before - 0.5, (protocol, before, after)
    assert result["per_layer"]["trained"][-1] == pytest.approx(result["test_metric"])
    assert len(result["per_layer"]["classical"]) == 4  # initial state + 3 layers


def test_deep_supervision_weights_enter_the_loss(task):
    """The deep loss is the weighted mean of the per-layer losses (checked against a hand sum)."""
    net = small(task)
    inputs, targets = task.validation
    inputs = {"y": inputs["y"][:16].float()}
    targets = {"x": targets["x"][:16].float()}
    trainer = Trainer(net, task, quick(protocol="deep", layer_weights=[1.0, 0.0, 3.0]), progress=False)
    states = net.trace(**inputs)
    hand = (1.0 * (states[1]["x"] - targets["x"]).square().sum(1).mean()
            + 3.0 * (states[3]["x"] - targets["x"]).square().sum(1).mean()) / 4.0
    assert trainer.loss(inputs, targets).item() == pytest.approx(hand.item(), rel=1e-6)
    with pytest.raises(ValueError, match="2 weights for 3 layers"):
        Trainer(net, task, quick(protocol="deep", layer_weights=[1, 2]), progress=False).loss(inputs, targets)


def test_depth_runs_the_first_layers_only(task):
    net = small(task, layers=4)
    y = task.validation[0]["y"][:5].float()
    states = net.trace(y)
    with depth(net, 2):
        assert torch.equal(net(y), states[2]["x"])
    assert torch.equal(net(y), states[4]["x"])  # restored
    with pytest.raises(ValueError, match="5 layers requested, the network has 4"), depth(net, 5):
        pass


# ------------------------------------------------------------------ quality against the classical algorithm
def _ista_numpy(A, y, lam, iterations):
    L = np.linalg.norm(A, 2) ** 2
    x = np.zeros((y.shape[0], A.shape[1]))
    for _ in range(iterations):
        v = x - (x @ A.T - y) @ A / L
        x = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)
    return x


def test_trained_lista_cp_beats_ista_at_the_same_depth(task):
    """Held-out NMSE of 4-layer LISTA-CP trained briefly vs ISTA with 4 iterations at its best lasso weight
    on a grid (a numpy loop): the trained network's error is below a third of ISTA's."""
    from training_helpers import assert_beats_classical, best_on_grid

    A = task.arguments["A"].numpy()
    y, x = task.test[0]["y"].numpy(), task.test[1]["x"].numpy()

    def ista_error(lam):
        return ((_ista_numpy(A, y, lam, 4) - x) ** 2).sum() / (x ** 2).sum()

    classical, _, _ = best_on_grid(ista_error, [0.02, 0.05, 0.1, 0.2, 0.4, 0.8])
    net = small(task, layers=4)
    result = Trainer(net, task, quick(epochs=8, steps_per_epoch=50, refine=(0.2,)), progress=False).fit()
    trained = 10 ** (result["test_metric"] / 10)
    assert_beats_classical(trained, classical, 1 / 3, "lista_cp 4 layers vs ISTA 4 iterations")


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_rebuilds_the_exact_network_without_the_spec_file(task, tmp_path):
    spec = tmp_path / "my_lista_cp.unroll"
    shutil.copy(unroll.compiler.driver.resolve_spec("lista_cp"), spec)
    net = build_net(str(spec), task, layers=3)
    Trainer(net, task, quick(epochs=1), out_dir=tmp_path / "run", progress=False).fit()
    spec.unlink()
    again = load_checkpoint(tmp_path / "run" / "final.pt")
    y = task.test[0]["y"][:7].float()
    assert type(again).__name__ == type(net).__name__ and again.num_layers == 3
    assert torch.equal(again(y), net(y))
    assert again.recipe.spec_sha256 == type(net).spec_sha256


def test_checkpoint_mismatch_says_what_differs(task, tmp_path):
    net = small(task)
    Trainer(net, task, quick(epochs=1), out_dir=tmp_path, progress=False).fit()
    path = tmp_path / "final.pt"
    with pytest.raises(CheckpointMismatch, match=r"compile options: checkpoint `--layers 3`, given `--layers 5`"):
        load_checkpoint(path, spec="lista_cp", layers=5)
    with pytest.raises(CheckpointMismatch, match=r"spec text: checkpoint `lista_cp` sha256 .*given `lista`"):
        load_checkpoint(path, spec="lista", layers=3)
    with pytest.raises(CheckpointMismatch, match=r"layers: checkpoint 3, network 4"):
        load_checkpoint(path, net=small(task, layers=4))
    assert load_checkpoint(path, spec="lista_cp", layers=3).num_layers == 3


def test_resume_continues_exactly_where_training_stopped(task, tmp_path):
    """Two epochs in one run equal one epoch, a new process-like restart from last.pt, and one more."""
    config = {"epochs": 2, "refine": (0.2,), "patience": 10}
    full = small(task)
    Trainer(full, task, quick(**config), progress=False).fit()
    part = small(task)
    first = Trainer(part, task, quick(**config), out_dir=tmp_path, progress=False)
    assert first.fit(epochs=1).get("paused")
    resumed = small(task)
    Trainer(resumed, task, quick(**config), out_dir=tmp_path, progress=False).resume(tmp_path / "last.pt").fit()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


# ------------------------------------------------------------------ tasks
def test_sparse_coding_matches_the_chen_setting():
    t = sparse_coding(validation=1000, test=10)
    A = t.arguments["A"]
    assert A.shape == (250, 500)
    assert torch.allclose(torch.linalg.vector_norm(A, dim=0), torch.ones(500, dtype=A.dtype))
    x = t.validation[1]["x"]
    assert abs(float((x != 0).double().mean()) - 0.1) < 0.005
    assert torch.allclose(t.validation[0]["y"], x @ A.T)
    noisy = sparse_coding(snr_db=40.0, validation=1000, test=10)
    clean = noisy.validation[1]["x"] @ noisy.arguments["A"].T
    snr = 10 * torch.log10(clean.square().sum() / (noisy.validation[0]["y"] - clean).square().sum())
    assert abs(float(snr) - 40) < 0.1


@pytest.mark.parametrize("name,spec,layers", [("compressive_mri", "admm_csnet", 2), ("blind_deblur", "dublid", 2),
                                              ("nmf_separation", "deep_nmf", 3)])
def test_catalog_tasks_train_their_spec(name, spec, layers):
    task = unroll.train.get_task(name)
    task.validation = tuple({k: v[:8] for k, v in part.items()} for part in task.validation)
    task.test = task.validation
    net = build_net(spec, task, layers=layers)
    trainer = Trainer(net, task, TrainConfig(epochs=2, steps_per_epoch=4, batch_size=8, lr=1e-3, refine=()),
                      progress=False)
    before = trainer.validate(task.validation)[0]
    trainer.fit()
    after = trainer.validate(task.validation)[0]
    assert np.isfinite(after) and after < before, (name, before, after)


def test_catalog_task_data_follow_their_models():
    from unroll.runtime.ops import pad_kernel

    mri = unroll.train.compressive_mri()
    y, x = mri.validation[0]["y"][:3], mri.validation[1]["x"][:3]
    assert torch.allclose(y, mri.arguments["mask"] * torch.fft.fft2(x.to(torch.complex128), norm="ortho"))
    assert torch.all(y[:, mri.arguments["mask"] == 0] == 0) and mri.arguments["mask"][0, 0] == 1
    blur = unroll.train.blind_deblur(noise=0.0)
    (inp, tgt) = blur.validation
    k = tgt["ks"][:2]
    assert torch.allclose(k.sum((-2, -1)), torch.ones(2, dtype=k.dtype)) and bool((k >= 0).all())
    direct = torch.stack([sum(k[b, i, j] * torch.roll(tgt["x"][b], (i - 2, j - 2), (0, 1)) for i in range(5)
                              for j in range(5)) for b in range(2)])
    assert torch.allclose(inp["y"][:2], direct, atol=1e-12)  # circular convolution, kernel centre at the origin
    del pad_kernel
    nmf = unroll.train.nmf_separation()
    W = nmf.info["true_bases"]
    assert torch.allclose(nmf.validation[0]["M"], W @ nmf.validation[1]["H"] + 1e-3)


def test_training_on_user_tensors(task):
    inputs, targets = task.sampler(300, torch.Generator().manual_seed(9))
    user = from_tensors(inputs, targets, task.arguments)
    assert user.validation[0]["y"].shape[0] == 30 and user.epoch_steps(32) == 270 // 32
    net = small(task)
    trainer = Trainer(net, user, quick(epochs=2), progress=False)
    before = trainer.validate(user.validation)[1]
    trainer.fit()
    assert trainer.validate(user.validation)[1] < before


def test_task_that_does_not_fit_the_spec_is_named(task):
    with pytest.raises(ValueError, match="does not fit spec `deep_nmf`: the network needs W"):
        build_net("deep_nmf", task, layers=2)


# ------------------------------------------------------------------ plots and the command line
def test_plots_write_nonempty_png_and_svg(task, tmp_path):
    from unroll.train.plots import plot_all, plot_layers

    net = small(task)
    result = Trainer(net, task, quick(epochs=1), out_dir=tmp_path, progress=False).fit()
    paths = plot_all(net, result, tmp_path)
    assert [p.name for p in paths] == ["layers.png", "curves.png", "parameters.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    svg = plot_layers([0, -3, -6], [0, -1, -2], tmp_path / "l.svg")
    assert "<svg" in svg.read_text()[:500]


def test_cli_train_end_to_end(tmp_path, capsys):
    from unroll.compiler.cli import main

    out = tmp_path / "run"
    rc = main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "3", "--epochs", "1",
               "--steps-per-epoch", "5", "--refine", "", "-o", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "untrained = classical" in captured.out
    for name in ("best.pt", "final.pt", "last.pt", "log.jsonl", "summary.json", "layers.png", "curves.png",
                 "parameters.png"):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["per_layer"]["trained"]) == 4
    assert load_checkpoint(out / "final.pt").num_layers == 3
    assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "3", "--epochs", "1",
                 "--steps-per-epoch", "5", "-o", str(out), "--no-progress", "--resume", str(out / "last.pt")]) == 0
    assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "3", "--epochs", "1",
                 "--steps-per-epoch", "2", "--layer-lr", "1,0", "-o", str(tmp_path / "x"), "--no-progress"]) == 1
    assert "2 rates given" in capsys.readouterr().err
    stagewise = tmp_path / "stagewise"
    assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "2", "--epochs", "1",
                 "--steps-per-epoch", "2", "--protocol", "stagewise", "--stage-init", "previous", "--layer-lr",
                 "theta=10", "--batch-size", "8,16,32", "--refine-decay", "0.3", "--refine-window", "1", "-o", str(stagewise),
                 "--max-cpu-seconds", "600", "--budget-shares", "1,1,1", "--budget-rollover", "spread",
                 "--no-progress"]) == 0
    logged = [json.loads(line) for line in (stagewise / "log.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in logged if r["event"] == "stage_end"] == [
        "layer 1", "layers 1-1 x0.2", "layers 1-1 x0.02", "layer 2", "layers 2-2 x0.2", "layers 2-2 x0.02"]
    config = read_checkpoint(stagewise / "last.pt")["config"]
    assert config["batch_size"] in ((8, 16, 32), [8, 16, 32]) and config["refine_decay"] == 0.3
    assert config["refine_window"] == 1
    assert config["budget_rollover"] == "spread" and tuple(config["budget_shares"]) == (1.0, 1.0, 1.0)
    for bad, message in (("8,x", "--batch-size: expected a positive integer or a comma-separated list of them"),
                         ("8,16", "batch_size: expected a positive integer or 3 of them")):
        assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "2", "--epochs", "1",
                     "--batch-size", bad, "-o", str(tmp_path / "z"), "--no-progress"]) == 1
        assert message in capsys.readouterr().err
    assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "2", "--epochs", "1",
                 "--layer-lr", "theta=x", "-o", str(tmp_path / "y"), "--no-progress"]) == 1
    assert "--layer-lr: expected numbers (one per layer) or NAME=NUMBER items, got 'theta=x'" in capsys.readouterr().err
    for option, bad in (("--refine", "0.5,x"), ("--budget-shares", "1,,a")):
        assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "2", "--epochs", "1",
                     option, bad, "--max-cpu-seconds", "60", "-o", str(tmp_path / "w"), "--no-progress"]) == 1
        assert f"{option}: expected comma-separated numbers, got {bad!r}" in capsys.readouterr().err
    assert main(["train", "lista_cp", "--task", "nope", "-o", str(out)]) == 1
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert main(["train", "lista_cp", "--task", "sparse_coding_small", "--layers", "4", "-o", str(out),
                 "--resume", str(out / "last.pt")]) == 1
    assert "layers: checkpoint 3, network 4" in capsys.readouterr().err


def test_import_unroll_stays_light():
    import subprocess
    import sys

    code = "import sys, unroll; assert 'torch' not in sys.modules; unroll.train; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ composed networks
def test_individual_then_joint_fine_tuning_of_a_chain(task):
    """A reconstruction network followed by a detector (Wu et al.'s pattern): each part is first trained
    alone on its own target with the other frozen, then both jointly."""
    from unroll.train import Chain, train_composed

    recon = small(task)
    detect = torch.nn.Linear(50, 1)
    chain = Chain([("recon", recon, {"y": "y"}), ("detect", detect, {"input": "recon.x"})])
    inputs, targets = task.sampler(400, torch.Generator().manual_seed(4))
    x = targets["x"]
    data = from_tensors({"y": inputs["y"].float()}, {"recon.x": x.float(), "detect.out": x.abs().sum(1, keepdim=True).float()},
                        {}, losses={"recon.x": "sq_error", "detect.out": "mse"})
    snapshots = []
    from unroll.train import composed

    real_trainer = composed.Trainer

    class Spy(real_trainer):
        def fit(self, epochs=None):
            before = {k: v.clone() for k, v in chain.state_dict().items()}
            result = super().fit(epochs)
            snapshots.append((before, {k: v.clone() for k, v in chain.state_dict().items()}))
            return result

    composed.Trainer = Spy
    try:
        results = train_composed(chain, data, {"recon": "recon.x", "detect": "detect.out"}, individual_epochs=2,
                                 joint_epochs=2, progress=False, steps_per_epoch=10, lr=5e-3, refine=(),
                                 batch_size=32)
    finally:
        composed.Trainer = real_trainer
    assert len(results) == 3
    changed = [{part: any(not torch.equal(b[k], a[k]) for k in b if k.startswith(f"parts.{part}."))
                for part in ("recon", "detect")} for b, a in snapshots]
    assert changed == [{"recon": True, "detect": False}, {"recon": False, "detect": True},
                       {"recon": True, "detect": True}]
    assert all(p.requires_grad for p in chain.parameters())  # trainability restored


def test_training_on_a_user_dataloader(task):
    from torch.utils.data import DataLoader, TensorDataset
    from unroll.train import from_loader

    inputs, targets = task.sampler(256, torch.Generator().manual_seed(8))
    loader = DataLoader(TensorDataset(inputs["y"].float(), targets["x"].float()), batch_size=32, shuffle=True)
    user = from_loader(loader, task.validation, task.arguments, input_name="y", target_name="x")
    assert user.epoch_steps(32) == 8
    net = small(task)
    trainer = Trainer(net, user, quick(epochs=2), progress=False)
    before = trainer.validate(user.validation)[1]
    result = trainer.fit()
    assert result["progress"]["step"] == 16 and trainer.validate(user.validation)[1] < before
