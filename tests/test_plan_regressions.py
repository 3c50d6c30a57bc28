"""Specs the checker accepts must give modules that import, construct and run forward and backward.

Each case was found by fuzzing (issue 7) and failed before the plan became a value: the emitter
decided names, scopes and dtypes while printing.  Each test builds the module on data of the
declared shapes and compares with numpy where the value is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll

F64 = torch.float64


def build(tmp_path, text: str):
    path = tmp_path / "case.unroll"
    path.write_text(text)
    return unroll.load(str(path))


def run_backward(out):
    outs = out if isinstance(out, tuple) else (out,)
    total = sum(o.real.sum() if torch.is_tensor(o) else torch.tensor(float(o)) for o in outs)
    if total.requires_grad:
        total.backward()


def test_a_net_named_like_a_hoisted_temporary(tmp_path):
    # `A.T @ y` is hoisted; its temporary used to be named `A_y`, shadowing the sub-network
    Net = build(tmp_path, """spec cap "capture"
dims n, m
data A : real[n, m]
input y : real[n]
net A_y : mlp(in=m, out=m, width=4, depth=2)    learned shared
state x : real[m] = 0
layers 2
step:
    x = A_y(A.T @ y) + x
output x
""")
    net = Net(A=np.random.default_rng(0).standard_normal((3, 5)))
    x = net(torch.randn(4, 3, dtype=F64))
    assert x.shape == (4, 5)
    run_backward(x)


def test_a_repeat_of_only_loop_invariant_lets(tmp_path):
    Net = build(tmp_path, """spec rep "repeat with nothing left to repeat"
dims n
input y : real[n]
state x : real[n] = 0
layers 3
step:
    x = x + y
    repeat 3:
        let t = x * 2
output x
""")
    y = torch.randn(2, 4, dtype=F64, requires_grad=True)
    x = Net()(y)
    assert torch.allclose(x, 3 * y)
    run_backward(x)


def test_an_output_that_is_a_constant_let_the_step_does_not_use(tmp_path):
    Net = build(tmp_path, """spec outl "output a constant"
dims n, m
data A : real[n, m]
input y : real[n]
let L = opnorm(A)^2
state x : real[m] = 0
layers 2
step:
    x = x + A.T @ y
output x, L
""")
    A = np.random.default_rng(1).standard_normal((3, 5))
    x, L = Net(A=A)(torch.randn(2, 3, dtype=F64))
    assert abs(float(L) - np.linalg.norm(A, 2) ** 2) < 1e-10
    run_backward(x)


def test_a_step_let_of_literal_arithmetic(tmp_path):
    Net = build(tmp_path, """spec lit "literal let"
dims n
input y : real[n]
state x : real[n] = 0
layers 3
step:
    let t = 2
    let u = 2 * 3 + 1
    x = x + t * y + u
output x
""")
    y = torch.randn(2, 4, dtype=F64)
    assert torch.allclose(Net()(y), 3 * (2 * y + 7))


@pytest.mark.parametrize("complex_first", [True, False])
def test_complex_data_declared_before_real_data(tmp_path, complex_first):
    decls = ["data Z : complex[n, n]", "data R : real[n, n]"]
    if not complex_first:
        decls.reverse()
    Net = build(tmp_path, f"""spec mix "complex and real data"
dims n
{decls[0]}
{decls[1]}
input y : complex[n]
state x : complex[n] = 0
layers 2
step:
    x = x + Z @ y + R @ y
output x
""")
    rng = np.random.default_rng(2)
    Z = rng.standard_normal((3, 3)) + 1j * rng.standard_normal((3, 3))
    R = rng.standard_normal((3, 3))
    net = Net(Z=Z, R=R)
    assert net.R.dtype == F64 and net.Z.dtype == torch.complex128
    y = rng.standard_normal((2, 3)) + 1j * rng.standard_normal((2, 3))
    x = net(torch.from_numpy(y))
    assert np.abs(x.numpy() - 2 * y @ (Z + R).T).max() < 1e-12


def test_peeled_first_layer_keeps_every_trace_and_gradient(tmp_path):
    """The first layer is emitted separately (x0 = 0 removes `W @ x`); its trace and gradients equal
    those of the layer loop run from layer 0."""
    spec = """spec pl "peel"
dims n, m
data A : real[n, m]
input y : real[n]
param W : real[m, m] = eye(m) - A.T @ A / 10    learned per_layer
param B : real[m, n] = A.T / 10                 learned per_layer
state x : real[m] = 0
layers 4
step:
    x = soft(W @ x + B @ y, 0.01)
output x
"""
    Net = build(tmp_path, spec)
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 5))
    net = Net(A=A)
    y = torch.from_numpy(rng.standard_normal((2, 3)))
    trace = net.trace(y)
    assert trace[0]["x"].shape == (2, 5) and not trace[0]["x"].any()  # x0 is computed for the trace only
    W, B = (v.detach().numpy() for v in (net.W, net.B))
    x = np.zeros((2, 5))
    for layer in range(4):
        v = x @ W[layer].T + y.numpy() @ B[layer].T
        x = np.sign(v) * np.maximum(np.abs(v) - 0.01, 0)
        assert np.abs(trace[layer + 1]["x"].detach().numpy() - x).max() < 1e-13
    out = net(y)
    out.pow(2).sum().backward()
    assert net.W.grad is not None and torch.count_nonzero(net.W.grad[0]) == 0  # W[0] only meets x0 = 0
    assert torch.count_nonzero(net.W.grad[1]) > 0 and torch.count_nonzero(net.B.grad[0]) > 0
    # layer 0 always runs: a depth of 0 layers is refused rather than silently running one
    with pytest.raises(ValueError, match="num_layers: Pl runs at least 1 layer"):
        net.num_layers = 0
    net.num_layers = 2
    assert np.abs(net(y).detach().numpy() - trace[2]["x"].detach().numpy()).max() < 1e-13


def test_a_reassigned_step_let_with_an_invariant_value(tmp_path):
    # `t` is bound inside the loop (assigned twice), although its values do not change across layers
    Net = build(tmp_path, """spec r1 "repro"
dims n
data A : real[n, n]
input y : real[n]
state x : real[n] = 0
layers 2
step:
    let t = A @ y
    t = 2 * t
    x = x + t
output x
""")
    A = np.random.default_rng(4).standard_normal((3, 3))
    y = np.random.default_rng(5).standard_normal((2, 3))
    x = Net(A=A)(torch.from_numpy(y))
    assert np.abs(x.numpy() - 4 * y @ A.T).max() < 1e-12


def test_an_invariant_let_reading_a_reassigned_let_stays_in_the_loop(tmp_path):
    # `e` is invariant and assigned once, but it reads `u`, which the step reassigns after it: lifting `e`
    # out of the loop read an unbound `u` (a fuzz mutant of dpn_meanfield: UnboundLocalError)
    Net = build(tmp_path, """spec r2 "repro"
dims n
input y : real[n]
state x : real[n] = y
state z : real[n] = 0
layers 2
step:
    let u = x * 2
    let e = exp(u)
    u = e * 3
    z = z + u
output x, z
""")
    y = np.random.default_rng(6).standard_normal((2, 3))
    _, z = Net()(torch.from_numpy(y))
    assert np.abs(z.numpy() - 2 * 3 * np.exp(2 * y)).max() < 1e-12


def test_a_final_let_of_literal_arithmetic(tmp_path):
    Net = build(tmp_path, """spec fl "final literal"
dims n
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = x + y
final:
    let t = 2
    let z = t * x + t * 3
output z
""")
    y = torch.randn(2, 4, dtype=F64)
    assert torch.allclose(Net()(y), 2 * (2 * y) + 6)


@pytest.mark.parametrize("n, m", [(6, 10), (3, 10)], ids=["gram-form", "split-form"])
def test_ista_gradient_step_in_either_association_equals_numpy(n, m):
    """`x - A.T @ (A @ x - y) / L` is planned in two forms: (I - A.T A / L) x + A.T y / L (one m x m
    product, chosen when m <= 2n) and the two thin products; the constructor picks by the sizes."""
    rng = np.random.default_rng(6)
    A = rng.standard_normal((n, m))
    net = unroll.load("ista", layers=7)(A=A, lam=0.05)
    assert net.gram_form == (m * m <= n * 2 * m)
    y = rng.standard_normal((3, n))
    L = np.linalg.norm(A, 2) ** 2
    x = np.zeros((3, m))
    trace = net.trace(torch.from_numpy(y))
    for layer in range(7):
        v = x - (x @ A.T - y) @ A / L
        x = np.sign(v) * np.maximum(np.abs(v) - 0.05 / L, 0)
        assert np.abs(trace[layer + 1]["x"].numpy() - x).max() < 1e-12 * max(1, np.abs(x).max())
    assert (net.A_L_c_t is None) == (not net.gram_form)  # the unchosen form's matrix is not computed (kept as its transpose)


def test_a_squared_norm_has_finite_second_derivatives_at_zero(tmp_path):
    # norm(v)^2 was emitted as square(vector_norm(v)): its gradient at v = 0 is 0/0, so a second derivative
    # (create_graph through grad / vjp / training through an inner gradient) was NaN. It is a sum of squares.
    Net = build(tmp_path, """spec sq "squared norms"
dims k
input Y : real[2, k]
state X : real[2, k] = Y
layers 1
step:
    X = X * norm(X)^2 + reshape(norm(X, 1)^2, 2, 1) * X
output X
""")
    net = Net(k=3, dtype=torch.float64)
    y = torch.zeros(4, 2, 3, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(net(y).sum(), y, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), y)
    assert torch.isfinite(first).all() and torch.isfinite(second).all()
    y = torch.randn(4, 2, 3, dtype=torch.float64)
    expected = y * (y * y).sum((1, 2), keepdim=True) + (y * y).sum(2, keepdim=True) * y
    assert torch.allclose(net(y), expected, rtol=1e-14)
    assert torch.autograd.gradcheck(lambda v: net(v), (y.requires_grad_(),))
    assert torch.autograd.gradgradcheck(lambda v: net(v), (y,))


def test_a_lifted_let_never_reads_a_let_bound_inside_the_loop(tmp_path):
    # `let e = t + 1` is layer-invariant, but `t` is assigned twice in the step (bound inside the loop):
    # lifting `e` out of the loop read `t` before it existed (UnboundLocalError; fuzz finding dpn_meanfield~404)
    Net = build(tmp_path, """spec lifted "a layer-invariant let reading a let the step reassigns"
dims n
input y : real[n]
state x : real[n] = y
state z : real[n] = 0
layers 3
step:
    let t = 2 * x
    let e = t + 1
    t = e * 3
    z = z + t
output x, z
""")
    y = torch.randn(2, 4, dtype=torch.float64)
    x, z = Net(n=4, dtype=torch.float64)(y)
    assert torch.equal(x, y)
    torch.testing.assert_close(z, 3 * 3 * (2 * y + 1), rtol=1e-15, atol=0)


def test_a_constant_kept_transposed_keeps_its_state_dict_form(tmp_path):
    """`let B = A @ A` is only the matrix of a batched product: forward reads a contiguous Bᵀ (buffer B_t), while
    state_dict still holds `B` in its own orientation (checkpoints of earlier versions load; a loaded `B` is
    what forward uses)."""
    Net = build(tmp_path, """spec tr "a constant kept transposed"
dims n
data A : real[n, n]
input y : real[n]
let B = A @ A
state x : real[n] = 0
layers 2
step:
    x = B @ x + y
output x
""")
    rng = np.random.default_rng(4)
    A = rng.standard_normal((4, 4))
    net = Net(A=A)
    assert net.transposed_buffers == (("B", "B_t"),) and net.B_t.is_contiguous()
    state = net.state_dict()
    assert "B_t" not in state and np.allclose(state["B"].numpy(), A @ A)
    y = rng.standard_normal((3, 4))
    assert np.allclose(net(torch.from_numpy(y)).numpy(), (y @ (A @ A).T) + y)  # x2 = B x1 + y, x1 = y
    other = rng.standard_normal((4, 4))
    net.load_state_dict({**state, "B": torch.from_numpy(other)})
    assert np.allclose(net(torch.from_numpy(y)).numpy(), (y @ other.T) + y)
