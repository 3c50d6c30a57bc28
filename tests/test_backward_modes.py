"""Backward modes (`--backward unroll | checkpoint[:k] | implicit[:tol]`, compiler/emit_backward.py,
runtime/backward.py).

checkpoint  outputs and gradients (inputs, shared and per-layer parameters, constrained ones, sub-network
            weights) equal those of `unroll` mode: bit for bit, or to 1e-14 relative where the sum over
            segments reorders an accumulation; segments that do not divide the depth; a segment reads only
            its slice of a stacked per-layer parameter; a trace in checkpoint mode is the unrolled trace.
implicit    the output is the fixed point (equal to a long unrolled run) and the gradients equal those of
            the long unrolled run to the fixed-point tolerance (float64); specs where it does not apply
            (per-layer parameters, a layer-index schedule) get a located error.
options     a malformed mode is a located error in the option text; the mode is part of the header.
"""

import numpy as np
import pytest
import torch
import unroll
from unroll.compiler import CompileError
from unroll.compiler.driver import compile_source, make_options, resolve_spec


def _problem(n=12, m=20, batch=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0)
    y = torch.randn(batch, n, generator=g, dtype=torch.float64)
    return A, y


def _perturb(net, seed=1):
    """Move every trainable tensor off its default (so that per-layer values differ)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _run(spec, mode, layers, make):
    Net = unroll.load(spec, layers=layers, backward=mode)
    torch.manual_seed(0)  # sub-networks are initialised at random
    net, inputs = make(Net)
    _perturb(net)
    inputs = [x.clone().requires_grad_(True) for x in inputs]
    out = net(*inputs)
    out = out if isinstance(out, tuple) else (out,)
    loss = sum((o ** 3).sum() + o.sum() for o in out)
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss, inputs + params)
    return [o.detach() for o in out], grads, [name for name, p in net.named_parameters() if p.requires_grad]


def _lasso(Net, lam=0.05):
    A, y = _problem()
    return Net(A=A, lam=lam), [y]


def _learned_pdhg(Net):
    rng = np.random.default_rng(0)
    hx, wx, na, nd = 5, 4, 3, 5
    K = torch.from_numpy(rng.standard_normal((na * nd, hx * wx)) / np.sqrt(na * nd))
    g = torch.from_numpy(rng.standard_normal((2, na, nd)))
    return Net(K=K, Kn=float(np.linalg.norm(K.numpy(), 2)), hx=hx, wx=wx, na=na, nd=nd), [g]


CHECKPOINT_CASES = [
    ("lista_cp", 7, _lasso),      # per-layer We (matrices) and positive theta; a peeled first layer
    ("ista", 9, _lasso),          # no parameters: the gradient with respect to the input
    ("admm_lasso", 8, _lasso),    # three states, a factor-once solve, statements skipped after the last layer
    ("lista_untied", 5, _lasso),  # three per-layer parameters
    ("fista", 7, _lasso),         # a layer-index table (t_k), statements skipped after the last layer
    ("learned_pdhg", 5, _learned_pdhg),  # per-layer CNN sub-networks, a user operator, prev(x)
]


@pytest.mark.parametrize("spec,layers,make", CHECKPOINT_CASES, ids=[c[0] for c in CHECKPOINT_CASES])
@pytest.mark.parametrize("segment", [1, 3, 100])
def test_checkpoint_gradients_equal_unroll(one_torch_thread, spec, layers, make, segment):
    ref_out, ref_grads, names = _run(spec, None, layers, make)
    out, grads, names2 = _run(spec, f"checkpoint:{segment}", layers, make)
    assert names == names2
    for a, b in zip(ref_out, out):
        assert torch.equal(a, b)
    for name, a, b in zip(["input"] + names, ref_grads, grads):
        scale = max(a.abs().max().item(), 1e-300)
        assert (a - b).abs().max().item() <= 1e-14 * scale, (spec, segment, name)
        assert a.abs().max().item() > 0, (spec, name)  # the gradient is not trivially zero


def test_checkpoint_segments_read_only_their_slice(one_torch_thread):
    Net = unroll.load("lista_cp", layers=10, backward="checkpoint:4")
    net, (y,) = _lasso(Net)
    seen = []
    layers = net._layers

    def spy(first, last, record, x, A, y, We, theta):
        seen.append((first, last, We.first, len(We.values), tuple(We.values[0].shape), len(theta.values)))
        return layers(first, last, record, x, A, y, We, theta)

    net._layers = spy
    net(y).sum().backward()
    m, n = net.We.shape[1:]
    forward = [(0, 4), (4, 8), (8, 10)]
    expected = [(a, b, a, b - a, (m, n), b - a) for a, b in forward]
    assert seen == expected + expected[::-1]  # forward, then the backward pass recomputes last segment first
    assert net.We.grad.shape == net.We.shape


def test_checkpoint_trace_is_the_unrolled_trace(one_torch_thread):
    A, y = _problem()
    ref = unroll.load("lista_cp", layers=6)(A=A)
    net = unroll.load("lista_cp", layers=6, backward="checkpoint:4")(A=A)
    net.load_state_dict(ref.state_dict())
    t1, t2 = ref.trace(y), net.trace(y)
    assert len(t1) == len(t2) == 7
    assert all(torch.equal(a["x"], b["x"]) for a, b in zip(t1, t2))
    assert t2[-1]["x"].requires_grad  # deep supervision: the trace keeps the graph


def test_checkpoint_without_autograd_is_the_plain_loop(one_torch_thread):
    A, y = _problem()
    net = unroll.load("admm_lasso", layers=7, backward="checkpoint:2")(A=A)
    ref = unroll.load("admm_lasso", layers=7)(A=A)
    with torch.no_grad():
        assert torch.equal(net(y), ref(y))


# ---------------------------------------------------------------- implicit
def _well_posed(n=20, m=12, batch=3, seed=0):
    """An overdetermined lasso: ISTA and ADMM converge linearly, so a fixed point is reached."""
    return _problem(n, m, batch, seed)


IMPLICIT_CASES = ["ista", "lista", "admm_lasso"]


@pytest.mark.parametrize("spec", IMPLICIT_CASES)
def test_implicit_matches_long_unrolled_run(one_torch_thread, spec):
    A, y = _well_posed()
    tol = 1e-12
    ref = unroll.load(spec, layers=600)(A=A, lam=0.3)
    net = unroll.load(spec, layers=600, backward=f"implicit:{tol}")(A=A, lam=0.3)
    yr, yi = y.clone().requires_grad_(True), y.clone().requires_grad_(True)
    out_ref, out = ref(yr), net(yi)
    assert net.fixed_point_residual <= tol and net.fixed_point_iterations < 600
    assert (out - out_ref).abs().max().item() <= 1e-9 * out_ref.abs().max().item()
    g_ref = torch.autograd.grad((out_ref ** 2).sum(), [yr] + list(ref.parameters()))
    g = torch.autograd.grad((out ** 2).sum(), [yi] + list(net.parameters()))
    assert len(g) == len(g_ref)
    for a, b in zip(g_ref, g):
        assert (a - b).norm().item() <= 1e-8 * a.norm().item()
        assert a.norm().item() > 0


def test_implicit_gradient_is_not_the_one_step_gradient(one_torch_thread):
    """The implicit gradient differs from differentiating only the last application of the layer map
    (what a missing adjoint solve would give): the test above can fail."""
    A, y = _well_posed()
    net = unroll.load("lista", layers=600, backward="implicit:1e-12")(A=A, lam=0.3)
    out = net(y)
    (g,) = torch.autograd.grad(out.sum(), [net.We])
    x = out.detach()
    one_step = torch.autograd.grad(unroll.runtime.soft(x @ net.Wt.mT + y @ net.We.mT, net.theta()).sum(),
                                   [net.We])[0]
    assert (g - one_step).norm() > 0.1 * g.norm()


@pytest.mark.parametrize("spec,needle,column_text", [
    ("lista_cp", "`--backward implicit` needs parameters shared by all layers; `We` is per-layer", "We @"),
    ("fista", "the update of `t` depends only on the layer index", "t = "),
    ("hosseini_dense_pgd", "cannot recompute `history_sum`", "history_sum("),
])
def test_implicit_where_it_does_not_apply_is_located(spec, needle, column_text):
    path = resolve_spec(spec)
    text = path.read_text()
    with pytest.raises(CompileError) as err:
        compile_source(text, f"dsl_specs/{path.name}", make_options(backward="implicit"))
    report = err.value.report()
    assert needle in report, report
    head = next(line for line in report.split("\n") if ": error: " in line and needle[:20] in line)
    _, line, col = head.split(":")[:3]
    assert text.split("\n")[int(line) - 1][int(col) - 1:].startswith(column_text), report
    assert "hint: " in report


def test_checkpoint_rejects_history_sum_located():
    path = resolve_spec("hosseini_dense_pgd")
    with pytest.raises(CompileError) as err:
        compile_source(path.read_text(), "dsl_specs/hosseini_dense_pgd.unroll", make_options(backward="checkpoint:2"))
    assert "`--backward checkpoint` cannot recompute `history_sum`" in err.value.report()


@pytest.mark.parametrize("mode,needle", [
    ("checkpoint:0", "the segment length must be a positive integer"),
    ("checkpoint:x", "the segment length must be a positive integer"),
    ("implicit:2", "the tolerance must be a number between 0 and 1"),
    ("unrol", "unknown backward mode `unrol`"),
    ("unroll:3", "`unroll` takes no argument"),
])
def test_bad_mode_is_located_in_the_options(mode, needle):
    with pytest.raises(CompileError) as err:
        make_options(layers=4, backward=mode)
    report = err.value.report()
    assert f"<options>:1:{len('--layers 4 --backward ') + 1}: error: " in report and needle in report, report


def test_mode_in_header_and_deterministic():
    text = resolve_spec("lista_cp").read_text()
    a = compile_source(text, "lista_cp.unroll", make_options(backward="checkpoint:4"))
    b = compile_source(text, "lista_cp.unroll", make_options(backward="checkpoint:4"))
    assert a == b and "# options: --backward checkpoint:4" in a
    assert "rt.checkpoint_layers(" in a and "def _layers(self, first, last, record, x, A, y, We, theta):" in a
    plain = compile_source(text, "lista_cp.unroll", make_options())
    assert "checkpoint" not in plain and "def _layers" not in plain


# ---------------------------------------------------------------- the spec's default: a `backward MODE` line
SPEC_WITH_MODE = """spec gd "gradient descent"
dims n, m
data A : real[n, m]
hyper backward = 0.5
input y : real[n]
state x : real[m] = 0
layers 5
backward {mode}
step:
    x = x - backward * A.T @ (A @ x - y)
output x
"""


def test_spec_default_mode_and_override():
    text = SPEC_WITH_MODE.format(mode="checkpoint:2")  # `backward` stays usable as a name
    assert "segment=2" in compile_source(text, "gd.unroll")
    assert "rt.implicit_layers(" in compile_source(text, "gd.unroll", make_options(backward="implicit"))
    plain = compile_source(text, "gd.unroll", make_options(backward="unroll"))
    assert "rt.checkpoint_layers(" not in plain and "for layer in range(" in plain


def test_spec_default_mode_checked_and_located():
    with pytest.raises(CompileError) as err:
        compile_source(SPEC_WITH_MODE.format(mode="checkpoint:0"), "gd.unroll")
    assert "gd.unroll:8:10: error: `checkpoint:0`: the segment length must be a positive integer" in err.value.report()
    twice = SPEC_WITH_MODE.format(mode="unroll").replace("layers 5\n", "layers 5\nbackward implicit\n")
    with pytest.raises(CompileError) as err:
        compile_source(twice, "gd.unroll")
    assert "`backward` is given twice" in err.value.report()


def test_spec_default_mode_runs(one_torch_thread):
    A, y = _problem()
    from unroll.runtime.loader import cache_dir

    path = cache_dir() / "gd_mode.unroll"
    results = []
    for mode in ("unroll", "checkpoint:2"):
        path.write_text(SPEC_WITH_MODE.format(mode=mode))
        net = unroll.load(str(path))(A=A)
        yy = y.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(net(yy).square().sum(), [yy])
        results.append(g)
    assert (results[0] - results[1]).abs().max() <= 1e-14 * results[0].abs().max()
