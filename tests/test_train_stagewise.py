"""unroll.train: per-layer and per-parameter learning rates, stage-wise freezing, the stage-wise warm start
and the CPU budget's division between stages.

Tiny problems (sparse coding 20x50, 3 layers) so that the file runs in seconds."""

import pytest

torch = pytest.importorskip("torch")
from training_helpers import quick, small
from unroll.train import LayerRates, Trainer, build_net, layer_parameters, sparse_coding
from unroll.train.optim import make_optimizer
from unroll.train.stages import Stage

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return sparse_coding(n=20, m=50, validation=200, test=200, seed=3)


# ------------------------------------------------------------------ per-layer rates and stage-wise freezing
def test_layer_parameters_of_stacked_and_reparametrised_parameters(task):
    names = {name: layer for name, _, layer in layer_parameters(small(task))}
    assert names == {"We": None, "theta.log_scale": None}


def one_step(trainer, rates, inputs, targets, lr, views):
    """One optimiser step of `trainer`'s network with per-layer `rates` (None: none) applied as the trainer does:
    through per-layer views and one parameter group per rate (views), or by update scaling (LayerRates)."""
    if views:
        trainer._make_optimizer(Stage("test", None, rates, lr, 32))
        assert trainer._stage_opt.rates is None and trainer._stage_opt.views
        with trainer._views_installed():
            loss = trainer.loss(inputs, targets)
        loss.backward()
        trainer.optimizer.step()
        return
    opt = make_optimizer([{"params": list(trainer.net.parameters()), "lr": lr}], trainer.config)
    scaler = LayerRates(trainer.net, rates) if rates else None
    trainer.loss(inputs, targets).backward()
    if scaler:
        scaler.before_step()
    opt.step()
    if scaler:
        scaler.after_step()


@pytest.mark.parametrize("views", [True, False])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_per_layer_learning_rates_scale_each_layers_step(task, optimizer, views):
    """One step with rates r equals r[l] times the step with rates 1, layer by layer; rate 0 is bit-exact."""
    rates = [1.0, 0.5, 0.0]
    inputs = {"y": task.validation[0]["y"][:32]}
    targets = {"x": task.validation[1]["x"][:32]}
    deltas = {}
    for label, r in (("ones", None), ("rated", rates)):
        net = build_net("lista_cp", task, layers=3, dtype=torch.float64)
        start = {k: v.clone() for k, v in net.state_dict().items()}
        trainer = Trainer(net, task, quick(optimizer=optimizer, dtype="float64"), progress=False)
        one_step(trainer, r, inputs, targets, lr=1e-2, views=views)
        deltas[label] = {k: net.state_dict()[k] - start[k] for k in ("We", "theta.log_scale")}
        if r:
            assert torch.equal(net.state_dict()["We"][2], start["We"][2])  # frozen: bit for bit
    for k in ("We", "theta.log_scale"):
        for layer, r in enumerate(rates):
            assert torch.allclose(deltas["rated"][k][layer], r * deltas["ones"][k][layer], rtol=1e-9, atol=1e-15), k
        assert deltas["ones"][k][2].abs().sum() > 0


@pytest.mark.parametrize("views", [True, False])
def test_per_parameter_learning_rates_in_every_protocol(task, views):
    """layer_lr={"theta": 10}: theta's step is 10x (SGD: exactly proportional), We's is 1x; stage-wise, the
    multipliers scale the layers each stage trains and leave the frozen ones at 0; an unknown name is refused."""
    net = small(task)
    e2e = Trainer(net, task, quick(layer_lr={"theta": 10}), progress=False)
    assert e2e.stages()[0].rates == {"We": [1.0] * 3, "theta": [10.0] * 3}
    stagewise = Trainer(net, task, quick(protocol="stagewise", refine=(0.2,), layer_lr={"theta": [10, 20, 30]}),
                        progress=False)
    stages = stagewise.stages()
    assert stages[2].name == "layer 2" and stages[2].rates == {"We": [0.0, 1.0, 0.0], "theta": [0.0, 20.0, 0.0]}
    assert stages[3].name == "layers 1-2 x0.2" and stages[3].rates == {"We": [1.0, 1.0, 0.0],
                                                                       "theta": [10.0, 20.0, 0.0]}
    with pytest.raises(ValueError, match="layer_lr: 'A' is not a per-layer trainable parameter of ListaCp"):
        Trainer(net, task, quick(layer_lr={"A": 2}), progress=False).stages()
    deltas = {}
    inputs, targets = {"y": task.validation[0]["y"][:32]}, {"x": task.validation[1]["x"][:32]}
    for label, spec in (("ones", None), ("theta x10", {"theta": 10})):
        net = build_net("lista_cp", task, layers=3, dtype=torch.float64)
        start = {k: v.clone() for k, v in net.state_dict().items()}
        trainer = Trainer(net, task, quick(optimizer="sgd", dtype="float64", layer_lr=spec), progress=False)
        one_step(trainer, trainer.stages()[0].rates, inputs, targets, lr=1e-3, views=views)
        deltas[label] = {k: net.state_dict()[k] - start[k] for k in ("We", "theta.log_scale")}
    assert torch.allclose(deltas["theta x10"]["We"], deltas["ones"]["We"], rtol=1e-12, atol=0)
    assert torch.allclose(deltas["theta x10"]["theta.log_scale"], 10 * deltas["ones"]["theta.log_scale"], rtol=1e-9)
    assert deltas["ones"]["theta.log_scale"].abs().min() > 0


def test_layer_rates_reject_wrong_lengths(task):
    with pytest.raises(ValueError, match=r"2 rates given for '(We|theta.log_scale)', the network has 3 layers"):
        LayerRates(small(task), [1.0, 2.0])


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", 0.0), ("adamw", 0.0), ("sgd", 0.0), ("adamw", 0.1)])
def test_stagewise_trains_layer_k_alone_then_refines_layers_up_to_k(task, optimizer, weight_decay):
    """Stage `layer k` changes only layer k; the refinements change only layers 1..k (all others stay
    bit for bit); the gradients of frozen layers are zeroed before the optimiser sees them.  Without weight
    decay the frozen slices are not copied and restored (their zero gradients leave them as they are); with
    it they are.  This is update scaling (layer_views=False); tests/test_train_views.py has the views."""
    net = small(task)
    trainer = Trainer(net, task, quick(protocol="stagewise", epochs=1, refine=(0.2,), optimizer=optimizer,
                                       weight_decay=weight_decay, layer_views=False), progress=False)
    assert trainer._zero_grad_keeps_params() == (weight_decay == 0)
    snapshots = [{k: v.clone() for k, v in net.state_dict().items()}]
    grads = []
    end_stage = trainer._end_stage

    def record(stage):
        end_stage(stage)
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})

    trainer._end_stage = record
    before_step = LayerRates.before_step

    def spy(self):
        before_step(self)
        grads.append({id(p): p.grad.clone() for p, _ in self.entries + self.masked})

    LayerRates.before_step = spy
    try:
        trainer.fit()
    finally:
        LayerRates.before_step = before_step
    names = [s.name for s in trainer.stages()]
    assert names == ["layer 1", "layers 1-1 x0.2", "layer 2", "layers 1-2 x0.2", "layer 3", "layers 1-3 x0.2"]
    for index, stage in enumerate(trainer.stages()):
        old, new = snapshots[index], snapshots[index + 1]
        for key in ("We", "theta.log_scale"):
            for layer in range(3):
                changed = not torch.equal(old[key][layer], new[key][layer])
                assert changed == (stage.rates[layer] > 0), (stage.name, key, layer)
    we = net.We
    for g in grads[20:30]:  # stage "layer 2": layer 1 feeds layer 2 but its gradient is zeroed
        assert g[id(we)][0].abs().sum() == 0 and g[id(we)][2].abs().sum() == 0 and g[id(we)][1].abs().sum() > 0


@pytest.mark.parametrize("stage_init", ["default", "previous"])
def test_stage_init_previous_starts_layer_k_as_the_trained_layer_k_minus_1(task, stage_init):
    """stage_init "previous": when stage `layer k` starts, every per-layer parameter of layer k is a copy of the
    trained layer k-1 (later layers untouched); "default": layer k starts at the spec's defaults."""
    net = small(task)
    default = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = Trainer(net, task, quick(protocol="stagewise", epochs=1, stage_init=stage_init), progress=False)
    starts = {}
    start_stage = trainer._start_stage

    def spy(stage):
        start_stage(stage)
        starts[stage.name] = {k: v.clone() for k, v in net.state_dict().items()}

    trainer._start_stage = spy
    trainer.fit()
    assert list(starts) == ["layer 1", "layer 2", "layer 3"]
    for k in (2, 3):
        at = starts[f"layer {k}"]
        for key in ("We", "theta.log_scale"):
            expected = at[key][k - 2] if stage_init == "previous" else default[key][k - 1]
            assert torch.equal(at[key][k - 1], expected), (k, key)
            assert not torch.equal(at[key][k - 2], default[key][k - 2]), (k, key)  # layer k-1 was trained
            if k < 3:
                assert torch.equal(at[key][k], default[key][k])
    with pytest.raises(ValueError, match="stage_init: expected 'default' or 'previous'"):
        Trainer(net, task, quick(stage_init="last"), progress=False)


def test_budget_shares_divide_the_cpu_budget_between_the_stages(task):
    net = small(task)
    e2e = Trainer(net, task, quick(refine=(0.2, 0.02), max_cpu_seconds=100, budget_shares=(0.6, 0.25, 0.15)),
                  progress=False)
    assert e2e.stage_deadlines(e2e.stages()) == pytest.approx([60, 85, 100])
    # stage-wise, layer k's stages weigh k (a k-layer network costs k layers a step): 0.75, 0.25, 1.5, 0.5, 2.25,
    # 0.75 of 6
    stagewise = Trainer(net, task, quick(protocol="stagewise", refine=(0.2,), max_cpu_seconds=120,
                                         budget_shares=(0.75, 0.25)), progress=False)
    assert stagewise.stage_deadlines(stagewise.stages()) == pytest.approx([15, 20, 50, 60, 105, 120])
    assert Trainer(net, task, quick(), progress=False).stage_deadlines(e2e.stages()) is None
    with pytest.raises(ValueError, match="budget_shares: expected 3 non-negative numbers"):
        Trainer(net, task, quick(refine=(0.2, 0.02), max_cpu_seconds=1, budget_shares=(1, 1))).fit()
    with pytest.raises(ValueError, match="give max_cpu_seconds too"):
        Trainer(net, task, quick(refine=(0.2,), budget_shares=(1, 1))).fit()


def one_cpu_second_per_reading(monkeypatch) -> None:
    """The trainer's CPU clock advances 1 s per reading (one per epoch with log_every above the step count)."""
    import unroll.train.trainer as trainer_module

    class Clock:
        now = 0.0

        def process_time(self):
            self.now += 1.0
            return self.now

        perf_counter = staticmethod(__import__("time").perf_counter)

    monkeypatch.setattr(trainer_module, "time", Clock())


def epochs_per_stage(trainer) -> dict:
    epochs = {}
    for record in trainer.history:
        epochs[record["stage"]] = max(epochs.get(record["stage"], 0), record["epoch"])
    return epochs


def test_budget_shares_end_a_stage_when_its_share_is_spent(task, monkeypatch):
    """A clock that advances 1 CPU-second per reading (one per epoch with log_every above the step count): with
    10 s and shares (0.6, 0.4), the stage at lr runs until 6 s and the refinement until 10 s, however many epochs
    they were allowed and although neither stops improving by patience."""
    one_cpu_second_per_reading(monkeypatch)
    net = small(task)
    config = quick(epochs=100, refine=(0.2,), patience=100, max_cpu_seconds=10, budget_shares=(0.6, 0.4),
                   log_every=10**9)
    trainer = Trainer(net, task, config, progress=False)
    trainer.fit()
    epochs = epochs_per_stage(trainer)
    assert epochs == {"e2e": 6, "e2e x0.2": 4}, epochs


@pytest.mark.parametrize("rollover, want", [("next", {"e2e": 2, "e2e x0.2": 8, "e2e x0.02": 10}),
                                             ("spread", {"e2e": 2, "e2e x0.2": 6, "e2e x0.02": 12})])
def test_where_a_stage_that_stops_early_leaves_its_time(task, monkeypatch, rollover, want):
    """The same clock (1 CPU-second an epoch), 20 s and shares (0.25, 0.25, 0.5): deadlines 5, 10, 20 s.  The
    stage at lr never improves and stops by patience after 2 epochs.  budget_rollover "next": its 3 unused
    seconds go to the next stage (which ends at 10 s: 8 epochs); "spread": to both refinements in proportion to
    their shares (the first ends at 2 + 18·0.25/0.75 = 8 s: 6 epochs, the second at 20 s)."""
    import itertools

    one_cpu_second_per_reading(monkeypatch)
    config = quick(epochs=100, refine=(0.2, 0.02), patience=2, max_cpu_seconds=20, budget_shares=(0.25, 0.25, 0.5),
                   budget_rollover=rollover, log_every=10**9)
    trainer = Trainer(small(task), task, config, progress=False)
    assert trainer.stage_deadlines(trainer.stages()) == [5, 10, 20]
    falling = itertools.count()
    # the stage at lr: always the same metric (never better); the refinements: better at every validation
    monkeypatch.setattr(trainer, "validate", lambda batch, depth=None: (
        0.0, 0.0 if trainer.progress.stage == 0 else -float(next(falling))))
    trainer.fit()
    epochs = epochs_per_stage(trainer)
    assert epochs == want, epochs
    assert trainer.progress.cpu_seconds == 20
    with pytest.raises(ValueError, match="budget_rollover: expected 'next' or 'spread'"):
        Trainer(small(task), task, quick(budget_rollover="all"), progress=False)


def test_a_stage_that_only_makes_things_worse_ends_where_it_started(task):
    """The starting weights are each stage's first best: at an absurd learning rate every epoch is worse than
    the start, so the run ends with the weights it started with (before: the best of the stage's own epochs,
    worse than its start)."""
    net = small(task)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = Trainer(net, task, quick(lr=100.0, epochs=3, patience=2), progress=False)
    trainer.fit()
    metrics = [r["metric"] for r in trainer.history]
    _, start_metric = trainer.validate(task.validation)
    assert not any(m <= start_metric for m in metrics), (start_metric, metrics)  # NMSE (lower is better) or NaN
    for key, value in start.items():
        assert torch.equal(net.state_dict()[key], value), key


def test_batch_size_per_stage_of_a_group(task, monkeypatch):
    """`batch_size` as one number per stage of a group (the stage at lr, then each refinement): every step of a
    stage draws batches of its size, in both protocols; a wrong count or a non-integer is a ValueError at
    construction."""
    drawn = []
    original = type(task).batches

    def batches(self, batch_size, seed, rank=0, world=1):
        for inputs, targets in original(self, batch_size, seed, rank, world):
            drawn.append(len(next(iter(inputs.values()))))
            yield inputs, targets

    monkeypatch.setattr(type(task), "batches", batches)
    for protocol, names in (("e2e", ["e2e", "e2e x0.2"]), ("stagewise", ["layer 1", "layers 1-1 x0.2"])):
        trainer = Trainer(small(task), task, quick(protocol=protocol, refine=(0.2,), batch_size=(8, 24), epochs=1,
                                                   steps_per_epoch=3, log_every=1), progress=False)
        assert [(s.name, s.batch_size) for s in trainer.stages()][:2] == list(zip(names, (8, 24)))
        drawn.clear()
        trainer.fit()
        stages = len(trainer.stages())
        assert drawn == [8, 8, 8, 24, 24, 24] * (stages // 2), drawn
    for bad in ((8,), (8, 0), 64.0, (8, True)):
        with pytest.raises(ValueError, match="batch_size: expected a positive integer or 2 of them"):
            Trainer(small(task), task, quick(refine=(0.2,), batch_size=bad), progress=False)


@pytest.mark.parametrize("views", [True, False])
def test_refine_decay_slows_the_earlier_layers_of_a_refinement(task, views):
    """refine_decay d: refining layers 1..k, layer l's multiplier is d^(k-l) times its own (the layer-k stage
    and the frozen layers are unchanged); only stage-wise, and only in (0, 1]."""
    net = small(task)
    trainer = Trainer(net, task, quick(protocol="stagewise", refine=(0.2,), refine_decay=0.5), progress=False)
    rates = {s.name: s.rates for s in trainer.stages()}
    assert rates["layer 3"] == [0.0, 0.0, 1.0]
    assert rates["layers 1-2 x0.2"] == [0.5, 1.0, 0.0]
    assert rates["layers 1-3 x0.2"] == [0.25, 0.5, 1.0]
    per_parameter = Trainer(net, task, quick(protocol="stagewise", refine=(0.2,), refine_decay=0.5,
                                             layer_lr={"theta": 10}), progress=False)
    assert {s.name: s.rates for s in per_parameter.stages()}["layers 1-3 x0.2"] == {
        "We": [0.25, 0.5, 1.0], "theta": [2.5, 5.0, 10.0]}
    # one refinement step at depth 3: each layer's change is its rate times the change at rate 1
    inputs, targets = task.sampler(32, torch.Generator().manual_seed(1))
    start = {k: v.clone() for k, v in net.state_dict().items()}
    moved = []
    for stage_rates in ([1.0, 1.0, 1.0], rates["layers 1-3 x0.2"]):
        net.load_state_dict(start)
        one_step(trainer, stage_rates, *[{k: v.float() for k, v in d.items()} for d in (inputs, targets)], 1e-3,
                 views)
        moved.append((net.We.detach() - start["We"]).flatten(1).norm(dim=1))
    assert torch.allclose(moved[1], moved[0] * torch.tensor([0.25, 0.5, 1.0]), rtol=1e-4, atol=0), moved
    for bad in (0, 1.5, "0.3"):
        with pytest.raises(ValueError, match="refine_decay: expected a number in"):
            Trainer(net, task, quick(protocol="stagewise", refine_decay=bad), progress=False)
    with pytest.raises(ValueError, match="refine_decay applies to the stagewise protocol only"):
        Trainer(net, task, quick(refine_decay=0.3), progress=False)


def test_refine_window_refines_the_last_layers_only(task):
    """refine_window W: refining at depth k trains layers k-W+1..k only (with refine_decay, at their decayed
    rates), the older ones frozen; the stage is named by the layers it trains; only stage-wise, a positive
    integer."""
    net = small(task, layers=4)
    trainer = Trainer(net, task, quick(protocol="stagewise", refine=(0.2,), refine_decay=0.5, refine_window=2),
                      progress=False)
    stages = {s.name: s.rates for s in trainer.stages()}
    assert list(stages) == ["layer 1", "layers 1-1 x0.2", "layer 2", "layers 1-2 x0.2", "layer 3",
                            "layers 2-3 x0.2", "layer 4", "layers 3-4 x0.2"]
    assert stages["layers 2-3 x0.2"] == [0.0, 0.5, 1.0, 0.0]
    assert stages["layers 3-4 x0.2"] == [0.0, 0.0, 0.5, 1.0]
    snapshots = [{k: v.clone() for k, v in net.state_dict().items()}]
    end_stage = trainer._end_stage

    def record(stage):
        end_stage(stage)
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})

    trainer._end_stage = record
    trainer.fit()
    for index, (name, rates) in enumerate(stages.items()):  # each stage changes exactly the layers it trains
        for layer in range(4):
            changed = not torch.equal(snapshots[index]["We"][layer], snapshots[index + 1]["We"][layer])
            assert changed == (rates[layer] > 0), (name, layer)
    for bad in (0, 2.0, True):
        with pytest.raises(ValueError, match="refine_window: expected a positive number of layers"):
            Trainer(net, task, quick(protocol="stagewise", refine_window=bad), progress=False)
    with pytest.raises(ValueError, match="refine_window applies to the stagewise protocol only"):
        Trainer(net, task, quick(refine_window=2), progress=False)
