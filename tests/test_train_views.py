"""unroll.train: training through per-layer views (runtime/layer_views.py, unroll.train.optim).

A trained layer of a stacked per-layer parameter is its own leaf tensor (sharing the stack's storage) in an
optimiser group at its rate; a frozen layer is a constant for autograd.  The numbers must be those of update
scaling (layer_views=False), and a frozen layer must cost no backward."""

import pytest

torch = pytest.importorskip("torch")
from training_helpers import quick, small
from unroll.runtime.layer_views import installed, make_views
from unroll.runtime.loader import load_text
from unroll.train import Trainer, sparse_coding

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CONSTRAINED = """spec views_demo "every constraint, per layer"
dims  n
data  D0 : real[n, n]
data  y0 : real[n]
input y : real[n]
param a : real       = 0.5       learned per_layer positive
param b : real[n]    = 0.1       learned per_layer nonnegative
param c : real       = 0.3       learned per_layer range(0, 1)
param D : real[n, n] = D0        learned per_layer unit_columns
param k : real[n]    = y0        learned per_layer zero_mean unit_norm
param w : real[n]    = 0.2       learned per_layer
state x : real[n] = 0
layers 4
step:
    x = a * x + b + c * (D @ y) + dot(k, x) * w
output x
"""


@pytest.fixture(scope="module")
def task():
    return sparse_coding(n=20, m=50, validation=200, test=200, seed=3)


def constrained_net():
    Net = load_text(CONSTRAINED, "views_demo")
    gen = torch.Generator().manual_seed(0)
    return Net(D0=torch.randn(5, 5, generator=gen, dtype=torch.float64),
               y0=torch.randn(5, generator=gen, dtype=torch.float64))


def test_views_give_the_stacks_values_bit_for_bit_and_only_viewed_layers_need_gradients():
    """For every constraint: with views on layers 1 and 2, `_per_layer` returns the same values as the stack (bit
    for bit), layers 1 and 2 require gradients and the others do not; the outputs are identical and the
    gradient lands on the views only; a step on a view changes the stacked parameter."""
    net = constrained_net()
    names = ("a", "b", "c", "D", "k", "w")
    assert type(net).layer_split == names
    y = torch.randn(3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    plain = {name: net._per_layer(name) for name in names}
    out = net(y)
    views = {name: make_views(net, name, [1, 2]) for name in names}
    with installed(net, views):
        for name in names:
            viewed = net._per_layer(name)
            assert len(viewed) == 4
            for layer, (v, p) in enumerate(zip(viewed, plain[name])):
                assert torch.equal(v, p), (name, layer)
                assert v.requires_grad == (layer in (1, 2)), (name, layer)
        out_views = net(y)
    assert torch.equal(out, out_views)
    out_views.square().sum().backward()
    for name in names:
        raw = net.get_parameter(name) if name == "w" else getattr(net, name).get_parameter(getattr(net, name).raw_name)
        assert raw.grad is None, name
        assert all(views[name][l].grad is not None and views[name][l].grad.abs().sum() > 0 for l in (1, 2)), name
    before = net.w.detach().clone()
    with torch.no_grad():
        views["w"][2].add_(1.0)
    assert torch.equal(net.w[2], before[2] + 1.0) and torch.equal(net.w[:2], before[:2])


def test_views_are_refused_for_a_parameter_forward_does_not_read_per_layer(task):
    """A network compiled for a memory mode slices its stacks per segment: no `layer_split`, views refused, and
    the trainer falls back to update scaling (the frozen layers still stay bit for bit)."""
    net = small(task, backward="checkpoint:2")  # (build_net carries the memory mode in the network's recipe)
    assert type(net).layer_split == () and net.recipe.options["backward"] == "checkpoint:2"
    with pytest.raises(TypeError, match="unknown compile option 'bakward'"):
        small(task, bakward="checkpoint:2")
    with pytest.raises(ValueError, match=r"layer views: ListaCp does not read \['We'\] one layer at a time"), \
            installed(net, {"We": {}}):
        pass
    start = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = Trainer(net, task, quick(protocol="stagewise", epochs=1, refine=()), progress=False)
    trainer._end_stage = lambda stage: None  # stop after stage "layer 1" (no stage end, no next stage)
    trainer.config.epochs = 1
    stage = trainer.stages()[0]
    trainer._make_optimizer(stage)
    assert trainer._stage_opt.views == {} and trainer._stage_opt.rates is not None
    inputs, targets = task.sampler(16, torch.Generator().manual_seed(2))
    trainer.loss({"y": inputs["y"].float()}, {"x": targets["x"].float()}, stage.depth).backward()
    trainer._stage_opt.rates.before_step()
    trainer.optimizer.step()
    assert not torch.equal(net.We[0], start["We"][0])
    assert torch.equal(net.We[1:], start["We"][1:])


@pytest.mark.parametrize(("optimizer", "weight_decay"), [("adam", 0.0), ("sgd", 0.0), ("adamw", 0.01)])
def test_stagewise_through_views_equals_update_scaling(task, optimizer, weight_decay):
    """The same run (stage-wise, refine_decay, per-parameter rates, layer k starting as layer k-1) with views
    and with update scaling ends with the same weights, to rounding (float64)."""
    final = {}
    for views in (True, False):
        net = small(task, dtype=torch.float64)
        Trainer(net, task, quick(protocol="stagewise", epochs=2, steps_per_epoch=5, refine=(0.5, 0.05),
                                 refine_decay=0.5, layer_lr={"theta": 10}, stage_init="previous", dtype="float64",
                                 optimizer=optimizer, weight_decay=weight_decay, layer_views=views),
                progress=False).fit()
        final[views] = net.state_dict()
    start = small(task, dtype=torch.float64).state_dict()
    for key in ("We", "theta.log_scale"):
        assert not torch.equal(final[True][key], start[key]), key
        assert torch.allclose(final[True][key], final[False][key], rtol=1e-10, atol=1e-13), key


def test_a_stage_that_trains_layer_k_backpropagates_through_layer_k_only(task):
    """Stage `layer 3` of a 3-layer network: the optimiser holds layer 3's views only, the stacks get no
    gradient, and the autograd graph of the loss holds one matrix product, layer 3's by its We (its residual
    y - A x is a constant); with update scaling it holds all five of the three layers (layer 1 multiplies
    once, its input being 0)."""
    graphs = {}
    for views in (True, False):
        net = small(task)
        trainer = Trainer(net, task, quick(protocol="stagewise", refine=(), layer_views=views), progress=False)
        stage = trainer.stages()[2]
        assert stage.name == "layer 3"
        trainer._make_optimizer(stage)
        inputs, targets = task.sampler(16, torch.Generator().manual_seed(2))
        with trainer._views_installed():
            loss = trainer.loss({"y": inputs["y"].float()}, {"x": targets["x"].float()}, stage.depth)
        graphs[views] = _matrix_products(loss.grad_fn)
        loss.backward()
        if views:
            assert [p.shape for p in trainer._stage_opt.parameters()] == [torch.Size([50, 20]), torch.Size([])]
            assert net.We.grad is None and net.theta.log_scale.grad is None
            assert all(p.grad is not None for p in trainer._stage_opt.parameters())
    assert graphs == {True: 1, False: 5}, graphs


def test_resume_mid_stage_with_views_continues_exactly(task, tmp_path):
    """A stage-wise run through views, paused after one epoch and resumed from last.pt (optimiser groups of the
    views included), ends where the uninterrupted run ends."""
    config = {"protocol": "stagewise", "epochs": 2, "refine": (0.2,), "refine_decay": 0.5, "patience": 10}
    full = small(task)
    Trainer(full, task, quick(**config), progress=False).fit()
    part = small(task)
    assert Trainer(part, task, quick(**config), out_dir=tmp_path, progress=False).fit(epochs=3).get("paused")
    resumed = small(task)
    Trainer(resumed, task, quick(**config), out_dir=tmp_path, progress=False).resume(tmp_path / "last.pt").fit()
    for k, v in full.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def _matrix_products(fn) -> int:
    """The matrix products in the autograd graph of `fn`."""
    seen, stack = set(), [fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        stack.extend(next_fn for next_fn, _ in node.next_functions)
    return sum("mm" in type(node).__name__.lower() for node in seen)


def test_resume_with_another_layer_views_setting_says_so(task, tmp_path):
    config = {"protocol": "stagewise", "epochs": 2, "refine": (0.2,), "patience": 10}
    Trainer(small(task), task, quick(**config), out_dir=tmp_path, progress=False).fit(epochs=3)
    other = Trainer(small(task), task, quick(**config, layer_views=False), out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="it was written with layer_views=True, this trainer has layer_views=False"):
        other.resume(tmp_path / "last.pt")


def test_split_layers_for_a_loop_of_ones_own(task):
    """split_layers: an optimiser over the returned views trains the network exactly as one over the stacked
    parameters (float64, SGD), each layer's gradient its own tensor; join_layers restores the stacked forward."""
    from unroll.train import join_layers, split_layers

    inputs, targets = task.sampler(32, torch.Generator().manual_seed(4))
    nets = [small(task, dtype=torch.float64) for _ in range(2)]
    params = split_layers(nets[0])
    assert [tuple(p.shape) for p in params] == [(50, 20)] * 3 + [()] * 3
    optimisers = [torch.optim.SGD(params, lr=0.05, momentum=0.9), torch.optim.SGD(nets[1].parameters(), lr=0.05,
                                                                                    momentum=0.9)]
    for _ in range(3):
        for net, opt in zip(nets, optimisers):
            opt.zero_grad()
            (net(inputs["y"]) - targets["x"]).square().sum().backward()
            opt.step()
    assert nets[0].We.grad is None and all(p.grad is not None for p in params)
    join_layers(nets[0])
    for key, value in nets[1].state_dict().items():
        assert torch.allclose(nets[0].state_dict()[key], value, rtol=1e-12, atol=1e-15), key
    assert not torch.equal(nets[1].We, small(task, dtype=torch.float64).We)
