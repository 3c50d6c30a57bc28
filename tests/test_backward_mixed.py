"""Backward modes on specs that mix per-layer and shared parameters, and on specs with sub-networks
(runtime/backward.py, compiler/emit_backward.py).

checkpoint  gradients (input, shared and per-layer parameters, a shared and a per-layer MLP) equal
            those of `unroll` mode to 1e-14 relative, for segments of 1, 4 (not dividing the depth) and
            more than the depth; shipped specs with shared and per-layer parameters (`alista`,
            `ml_csc_layered`: convolutions, a `repeat`) likewise.
implicit    per-layer parameters or sub-networks are located errors; with them tied (`tie=`), the
            output is the fixed point and the gradients of every parameter, the shared sub-network's
            included, equal those of a long unrolled run to the fixed-point tolerance (float64).
"""

import pytest
import torch
import unroll
from unroll.compiler import CompileError
from unroll.runtime.loader import load_text

MIXED = """spec gd_mixed "gradient descent with learned corrections"
dims n, m
data A : real[n, m]
hyper s0 = 0.8
input y : real[n]
param s : real = s0                 learned shared positive
param b : real[m] = 0 * ones(m)     learned per_layer
net   R : mlp(in=m, out=m, width=8, depth=2, init=zero)  learned shared
net   Q : mlp(in=m, out=m, width=4, depth=2, init=zero)  learned per_layer
state x : real[m] = A.T @ y
layers 6
step:
    x = x - s * A.T @ (A @ x - y) + b + R(x) + Q(x)
output x
"""


def _problem(n=80, m=12, batch=3, seed=0):
    """Overdetermined: gradient descent contracts, so the layers have a fixed point."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0)
    return A, torch.randn(batch, n, generator=g, dtype=torch.float64)


def _perturb(net, scale=0.05, seed=1):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def _mixed(mode=None, layers=6, tie=None):
    Net = load_text(MIXED, "gd_mixed_modes", "gd_mixed.unroll", layers=layers, backward=mode, tie=tie)
    torch.manual_seed(0)
    A, y = _problem()
    net = Net(A=A).double()
    _perturb(net)
    return net, y


def _gradients(net, y):
    y = y.clone().requires_grad_(True)
    out = net(y)
    params = [p for p in net.parameters() if p.requires_grad]
    grads = torch.autograd.grad((out ** 3).sum() + out.sum(), [y] + params)
    return out.detach(), grads, ["y"] + [name for name, p in net.named_parameters() if p.requires_grad]


@pytest.mark.parametrize("segment", [1, 4, 100])
def test_checkpoint_mixed_shared_and_per_layer_equals_unroll(one_torch_thread, segment):
    ref_out, ref, names = _gradients(*_mixed())
    out, grads, names2 = _gradients(*_mixed(f"checkpoint:{segment}"))
    assert names == names2 and {"s", "b"} <= {n.split(".")[0] for n in names}
    assert any(n.startswith("R.") for n in names) and any(n.startswith("Q.") for n in names)
    assert torch.equal(ref_out, out)
    for name, a, c in zip(names, ref, grads):
        assert a.abs().max() > 0, name
        assert (a - c).abs().max() <= 1e-14 * a.abs().max(), (segment, name)


def _alista(Net):
    A, y = _problem(n=12, m=20)
    return Net(A=A, lam=0.05), y


def _ml_csc(Net):
    g = torch.Generator().manual_seed(0)
    D1 = 0.3 * torch.randn(3, 1, 3, 3, generator=g, dtype=torch.float64)
    Dk = 0.3 * torch.randn(4, 3, 3, 3, 3, generator=g, dtype=torch.float64)
    return Net(D1=D1, Dk=Dk, beta0=0.05, K=2, eta=0.5, h=6, w=6), torch.randn(2, 1, 6, 6, generator=g,
                                                                             dtype=torch.float64)


@pytest.mark.parametrize("spec,layers,make", [("alista", 7, _alista), ("ml_csc_layered", 4, _ml_csc)],
                         ids=["alista", "ml_csc_layered"])
@pytest.mark.parametrize("segment", [1, 3])
def test_checkpoint_shipped_mixed_specs_equal_unroll(one_torch_thread, spec, layers, make, segment):
    results = []
    for mode in (None, f"checkpoint:{segment}"):
        torch.manual_seed(0)
        net, y = make(unroll.load(spec, layers=layers, backward=mode))
        _perturb(net, 0.02)
        results.append(_gradients(net, y))
    (ref_out, ref, names), (out, grads, names2) = results
    assert names == names2 and len(names) >= 3
    assert torch.equal(ref_out, out)
    for name, a, c in zip(names, ref, grads):
        assert a.abs().max() > 0, name
        assert (a - c).abs().max() <= 1e-14 * a.abs().max(), (spec, segment, name)


def test_implicit_rejects_per_layer_parameter_and_network_located():
    with pytest.raises(CompileError) as err:
        _mixed("implicit")
    report = err.value.report()
    assert "needs parameters shared by all layers; `b` is per-layer" in report, report
    assert "needs sub-networks shared by all layers; `Q` is per-layer" in report, report
    lines = MIXED.split("\n")
    for needle, column_text in [("`b` is per-layer", "b + R"), ("`Q` is per-layer", "Q(x)")]:
        head = next(line for line in report.split("\n") if needle in line)
        _, line, col = head.split(":")[:3]
        assert lines[int(line) - 1][int(col) - 1:].startswith(column_text), report


def test_implicit_mixed_tied_matches_long_unrolled_run(one_torch_thread):
    tol = 1e-12
    ref, y = _mixed(None, layers=400, tie="b,Q")
    net, _ = _mixed(f"implicit:{tol}", layers=400, tie="b,Q")
    ref_out, g_ref, names = _gradients(ref, y)
    out, g, names2 = _gradients(net, y)
    assert net.fixed_point_residual <= tol and net.fixed_point_iterations < 400
    assert names == names2 and any(n.startswith("R.") for n in names) and any(n.startswith("Q.") for n in names)
    assert (out - ref_out).abs().max() <= 1e-9 * ref_out.abs().max()
    for name, a, c in zip(names, g_ref, g):
        assert a.norm() > 0, name
        assert (a - c).norm() <= 1e-8 * a.norm(), name
