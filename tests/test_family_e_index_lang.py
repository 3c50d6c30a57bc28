"""Integer index values and indexed loops (LANGUAGE-NEXT X2, X3).

* kernels: `take` and `segment_sum` equal their numpy references for every batched/unbatched
  combination, are differentiable in the values (gradcheck, float64), and are each other's adjoint
  (dot-product test); `set_index` is an out-of-place write (gradcheck through target and value);
* operators in generated code: argmax/argmin over `axis=`, topk_indices, `%` and `//` (Python's
  floor semantics, negative operands included), as_real;
* loops: `repeat N as j` runs j = 0..N-1, `backward` N-1..0; counts from dims, `int` hypers and
  integer expressions (`min(layer, m)`, zero iterations allowed); `layers T` takes the depth from an
  input; indexed writes keep autograd valid (gradient equals the hand-derived one);
* the planner keeps what reads the loop index inside the loop and hoists the rest before it;
* int inputs, states and data (dtype and range validation, ValueError naming the data).
"""

import numpy as np
import pytest
import torch
from unroll import runtime as rt
from unroll.compiler.driver import check_source, compile_source, make_options
from unroll.compiler.operators import OPERATORS
from unroll.compiler.planner import Loop, plan

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(source: str):
    namespace: dict = {}
    exec(compile(compile_source(source, "t.unroll", make_options()), "<generated>", "exec"), namespace)  # noqa: S102
    (cls,) = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, rt.UnrolledModule)
              and v is not rt.UnrolledModule]
    return cls


# ------------------------------------------------------------------------------------------- kernels
RNG = np.random.default_rng(0)
V_ROWS, E, B = 5, 7, 3


@pytest.mark.parametrize("vb,ib", [(False, False), (True, False), (False, True), (True, True)])
def test_take_and_segment_sum_equal_their_references_per_sample(vb, ib):
    v = RNG.standard_normal((B, V_ROWS, 2) if vb else (V_ROWS, 2))
    idx = RNG.integers(0, V_ROWS, size=(B, E) if ib else (E,))
    got = rt.take(torch.tensor(v), torch.tensor(idx), vb, ib).numpy()
    w = RNG.standard_normal((B, E, 2) if vb or ib else (E, 2))
    got_s = rt.segment_sum(torch.tensor(w), torch.tensor(idx), V_ROWS, vb or ib, ib).numpy()
    take_ref, seg_ref = OPERATORS["take"].reference, OPERATORS["segment_sum"].reference
    for b in range(B if vb or ib else 1):
        vs = v[b] if vb else v
        ids = idx[b] if ib else idx
        expected = take_ref(vs, ids)
        assert np.array_equal(got[b] if vb or ib else got, expected)
        ws = w[b] if vb or ib else w
        assert np.allclose(got_s[b] if vb or ib else got_s, seg_ref(ws, ids, V_ROWS), rtol=1e-14, atol=1e-14)


def test_segment_sum_is_the_adjoint_of_take_and_both_are_differentiable():
    for idx_shape in [(E,), (3, 4)]:
        idx = torch.tensor(RNG.integers(0, V_ROWS, size=idx_shape))
        v = torch.tensor(RNG.standard_normal((B, V_ROWS, 2)))
        w = torch.tensor(RNG.standard_normal((B,) + idx_shape + (2,)))
        lhs = (rt.take(v, idx, True, False) * w).sum()
        rhs = (v * rt.segment_sum(w, idx, V_ROWS, True, False)).sum()
        assert abs(float(lhs - rhs)) < 1e-12 * abs(float(lhs))
    v = torch.tensor(RNG.standard_normal((2, V_ROWS, 3)), requires_grad=True)
    bidx = torch.tensor(RNG.integers(0, V_ROWS, size=(2, E)))
    assert torch.autograd.gradcheck(lambda t: rt.take(t, bidx, True, True), (v,))
    w = torch.tensor(RNG.standard_normal((2, E, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: rt.segment_sum(t, bidx, V_ROWS, True, True), (w,))


def test_set_index_writes_out_of_place_and_is_differentiable():
    x = torch.tensor(RNG.standard_normal((2, 4, 3)), requires_grad=True)
    v = torch.tensor(RNG.standard_normal((2, 3)), requires_grad=True)
    out = rt.set_index(x, 1, v, True, True)
    expected = x.detach().clone()
    expected[:, 1] = v.detach()
    assert torch.equal(out.detach(), expected) and not torch.equal(x.detach(), expected)
    assert torch.autograd.gradcheck(lambda a, b: rt.set_index(a, 2, b, True, True), (x, v))
    # an unbatched target written with a batched value, and a scalar broadcast into a row
    grid = rt.set_index(torch.zeros(4, 3, dtype=torch.float64), 0, v, False, True)
    assert grid.shape == (2, 4, 3) and torch.equal(grid[:, 0], v.detach())
    assert torch.equal(rt.set_index(torch.zeros(4, 3), 3, 2.0, False, False)[3], torch.full((3,), 2.0))


# ------------------------------------------------------------------------------------- operators
OPS_SPEC = """spec ops
dims n, m
data A : real[n, m]
input y : real[m]
hyper k : int = 3
state s : real = 0
layers 1
step:
    s = s
final:
    let rows = argmax(A, axis=1)
    let cols = argmin(A, axis=0)
    let top = topk_indices(abs(y), 2)
    let mods = rows % k - (rows - 7) // k
    let g = take(y, rows) + as_real(rows // 2)
output rows, cols, top, mods, g
"""


def test_selection_and_integer_arithmetic_in_generated_code():
    A = RNG.standard_normal((4, 6))
    y = RNG.standard_normal((2, 6))
    rows, cols, top, mods, g = build(OPS_SPEC)(A)(torch.tensor(y))
    assert rows.dtype == torch.long and rows.shape == (4,) and rows.tolist() == np.argmax(A, 1).tolist()
    assert cols.tolist() == np.argmin(A, 0).tolist()
    for b in range(2):
        assert top[b].tolist() == OPERATORS["topk_indices"].reference(np.abs(y[b]), 2).tolist()
        assert np.allclose(g[b].numpy(), y[b][np.argmax(A, 1)] + np.argmax(A, 1) // 2, rtol=1e-15)
    r = np.argmax(A, 1)
    assert mods.tolist() == (r % 3 - (r - 7) // 3).tolist()  # Python's floor semantics for negatives


# ------------------------------------------------------------------------------------------ loops
def test_repeat_as_j_forward_backward_and_counts_from_dims_and_integer_expressions():
    Net = build("""spec loops
dims T, n
input ys : real[T, n]
hyper m : int = 2
state F : real[T] = 0
state Bk : real[T] = 0
state c : real = 0
state order : int[T] = 0
layers 3
step:
    repeat T as j:
        F[j] = F[j] + as_real(j) * 10 ^ as_real(layer)
    repeat min(layer, m) as j:
        c = c + 1
final:
    let r = 0
    repeat T as t backward:
        order[t] = r
        r = r + 1
output F, c, order
""")
    net = Net()
    F, c, order = net(torch.zeros(5, 2))
    assert F.tolist() == [j * 111.0 for j in range(5)]
    assert float(c) == 0 + 1 + 2  # layer 0 runs the inner loop zero times
    assert order.tolist() == [4, 3, 2, 1, 0]  # t = 4 first


def test_layers_from_an_input_dim_and_int_inputs():
    Net = build("""spec running
dims T, n
input ys : real[T, n]
input which : int[T]
state acc : real[n] = 0
state picks : int[T] = 0
layers T
step:
    acc = acc + ys[layer]
    picks[layer] = take(which, argmax(ys[layer]) % T) + layer
output acc, picks
""")
    net = Net()
    for T in (2, 6):
        ys = torch.tensor(RNG.standard_normal((3, T, 4)))
        which = torch.tensor(RNG.integers(0, 5, size=(3, T)))
        acc, picks = net(ys, which)
        assert torch.allclose(acc, ys.sum(1), rtol=1e-14)
        expected = [[int(which[b, int(ys[b, t].argmax()) % T]) + t for t in range(T)] for b in range(3)]
        assert picks.tolist() == expected
        assert len(net.trace(ys, which)) == T + 1
    with pytest.raises(TypeError, match="which: expected an integer"):
        net(ys, which.double())


def test_indexed_writes_keep_autograd_valid():
    Net = build("""spec writes
dims T, n
data A : real[n, n]
data w0 : real[T]
input y : real[n]
param w : real[T] = w0   learned shared
state X : real[T, n] = 0
state x : real[n] = 0
layers T
step:
    x = w[layer] * (A @ x) + y
    X[layer] = x
output X
""")
    A = RNG.standard_normal((3, 3)) / 3
    net = Net(A, np.ones(4))
    y = torch.tensor(RNG.standard_normal((2, 3)))
    X = net(y)
    loss = (X ** 2).sum()
    loss.backward()
    # the same recursion written directly, differentiated by torch
    w = torch.ones(4, dtype=torch.float64, requires_grad=True)
    x, rows = torch.zeros(2, 3, dtype=torch.float64), []
    for t in range(4):
        x = w[t] * (x @ torch.tensor(A).T) + y
        rows.append(x)
    ref = torch.stack(rows, 1)
    (ref ** 2).sum().backward()
    assert torch.allclose(X, ref, rtol=1e-14) and torch.allclose(net.w.grad, w.grad, rtol=1e-12)


def test_the_planner_keeps_loop_index_reads_inside_the_loop():
    program = check_source("""spec hoist
dims T, n
data A : real[n, n]
input ys : real[T, n]
state x : real[n] = 0
layers 2
step:
    repeat T as j:
        x = x + A @ ys[j] + A @ ys[0]
output x
""", "t.unroll")
    p = plan(program, class_name="Hoist")
    (loop,) = [item for item in p.step if isinstance(item, Loop)]
    inside = " ".join(str(st.value.key) for st in loop.body)
    assert loop.index == "j" and "'j'" in inside  # A @ ys[j] depends on j: computed in every iteration
    hoisted = " ".join(str(st.value.key) for st in p.invariants + loop.before)
    assert "'j'" not in hoisted and "ys" in hoisted  # A @ ys[0] does not: computed before the loops


def test_index_data_are_validated():
    Net = build("""spec edges
dims V, E
data src : int[E]
data phi : real[V]
input y : real[V]
state b : real[V] = 0
layers 1
step:
    b = b + segment_sum(take(y * phi, src), src, V)
output b
""")
    assert Net([0, 2, 2], [1.0, 2.0, 3.0])(torch.ones(3)).tolist() == [1.0, 0.0, 6.0]
    with pytest.raises(ValueError, match=r"src: index 3 is out of range.*0\.\.2"):
        Net([0, 3], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"src: index -1 is out of range"):
        Net([0, -1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="src: expected an integer"):
        Net(np.array([0.0, 1.0]), [1.0, 2.0, 3.0])
    net = Net(np.array([0, 1], dtype=np.int32), np.array([1.0, 2.0, 3.0]))
    assert net.src.dtype == torch.long and net.phi.dtype == torch.float64
    assert net.to(torch.float32).src.dtype == torch.long  # index data keep their integer dtype


def test_int_hyperparameters_are_sizes_checked_against_data():
    Net = build("""spec ring
dims n
hyper m : int = 3
data A : real[m, n]
input y : real[n]
state S : real[m, n] = zeros(m, n)
state x : real[n] = 0
layers 5
step:
    S[layer % m] = y - x
    x = x + 0.1 * sum(S, 0) + A.T @ ones(m)
output x, S
""")
    A = RNG.standard_normal((5, 4))
    y = torch.tensor(RNG.standard_normal((2, 4)))
    x, S = Net(A, m=5)(y)
    assert S.shape == (2, 5, 4)
    xs, ring = np.zeros((2, 4)), np.zeros((2, 5, 4))  # the ring buffer written out
    for layer in range(5):
        ring[:, layer % 5] = y.numpy() - xs
        xs = xs + 0.1 * ring.sum(1) + A.sum(0)
    assert np.allclose(x.numpy(), xs, rtol=1e-13)
    with pytest.raises(ValueError, match=r"A: expected shape \[m, n\] = \[3, n\], got \[5, 4\]"):
        Net(A)
    with pytest.raises(ValueError, match="m: a size must be a positive integer, got 0"):
        Net(A, m=0)


def test_products_of_any_number_of_dims_are_sizes():
    program = check_source("""spec products
dims a, b, c
data X : real[a, b, c]
data W : real[c*b*a, 2]
state s : real[2] = 0
layers 1
step:
    s = reshape(X, b*a*c) @ W
output s
""", "t.unroll")
    (w,) = [d for d in program.data if d.name == "W"]
    assert str(w.type.shape[0]) == "a*b*c"  # one canonical order of the factors
    X, W = RNG.standard_normal((2, 3, 4)), RNG.standard_normal((24, 2))
    Net = build("""spec products
dims a, b, c
data X : real[a, b, c]
data W : real[c*b*a, 2]
state s : real[2] = 0
layers 1
step:
    s = reshape(X, b*a*c) @ W
output s
""")
    assert np.allclose(Net(X, W)().numpy(), X.reshape(-1) @ W, rtol=1e-14)
    with pytest.raises(ValueError, match="W: axis 0 must have size a\\*b\\*c = 24, got 25"):
        Net(X, RNG.standard_normal((25, 2)))
