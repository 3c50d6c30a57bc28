"""Catalog family F (optimal transport): sinkhorn and sinkhorn_log (F1).

sinkhorn      every layer == an independent numpy loop of Cuturi's iteration (v then u) to 1e-12;
              the plan == POT's ot.sinkhorn(a, b, C, reg=eps, numItermax=L, stopThr=0); after every
              layer the rows of P sum to a exactly and the column error decreases.
sinkhorn_log  every layer == the scaling iteration (f = eps log u, g = eps log v) where it does not
              underflow; at eps = 1e-3 (C / eps ~ 10^3: the scaling form underflows to 0 / NaN) it
              stays finite, its rows sum to a, and <P, C> approaches POT's exact ot.emd2 cost (and
              scipy's linear_sum_assignment for uniform weights); the dual objective increases
              monotonically; a zero weight gives a zero row of P, not NaN.
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel

ot = pytest.importorskip("ot")
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")]  # POT, with stopThr=0


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def problem(n, m, batch, seed, eps_scale=1.0):
    rng = np.random.default_rng(seed)
    xs, ys = rng.standard_normal((batch, n, 2)), rng.standard_normal((batch, m, 2)) + 0.5
    C = ((xs[:, :, None, :] - ys[:, None, :, :]) ** 2).sum(-1) * eps_scale
    a = rng.uniform(0.5, 1.5, (batch, n))
    b = rng.uniform(0.5, 1.5, (batch, m))
    return C, a / a.sum(1, keepdims=True), b / b.sum(1, keepdims=True)


def numpy_sinkhorn(C, a, b, eps, layers):
    """Cuturi's iteration written from the equations: u^0 = 1, v = b / K^T u, u = a / K v. Returns the
    (u, v) after every layer."""
    K = np.exp(-C / eps)
    u, v = np.ones_like(a), np.ones_like(b)
    out = [(u, v)]
    for _ in range(layers):
        v = b / (K.T @ u)
        u = a / (K @ v)
        out.append((u, v))
    return out


# ======================================================================== sinkhorn
def test_sinkhorn_every_layer_equals_the_numpy_iteration():
    C, a, b = problem(5, 7, 3, seed=0)
    eps, layers = 0.5, 12
    net = unroll.load("sinkhorn", layers=layers)(eps=eps).double()
    trace = net.trace(t64(C), t64(a), t64(b))
    for s in range(3):
        for l, (u, v) in enumerate(numpy_sinkhorn(C[s], a[s], b[s], eps, layers)):
            if l == 0:
                continue
            assert rel(trace[l]["u"][s].numpy(), u) < 1e-12 and rel(trace[l]["v"][s].numpy(), v) < 1e-12, (s, l)
    P = net(t64(C), t64(a), t64(b)).numpy()
    u, v = numpy_sinkhorn(C[0], a[0], b[0], eps, layers)[-1]
    assert rel(P[0], u[:, None] * np.exp(-C[0] / eps) * v[None, :]) < 1e-12


@pytest.mark.parametrize("layers", [1, 5, 40])
def test_sinkhorn_equals_pot(layers):
    C, a, b = problem(6, 4, 2, seed=1)
    eps = 0.3
    P = unroll.load("sinkhorn", layers=layers)(eps=eps).double()(t64(C), t64(a), t64(b)).numpy()
    for s in range(2):
        want = ot.sinkhorn(a[s], b[s], C[s], reg=eps, numItermax=layers, stopThr=0)
        assert rel(P[s], want) < 1e-12, layers


def test_sinkhorn_rows_sum_to_a_and_the_column_error_decreases():
    C, a, b = problem(8, 6, 2, seed=2)
    net = unroll.load("sinkhorn", layers=60)(eps=1.0).double()
    trace = net.trace(t64(C), t64(a), t64(b))
    K = np.exp(-C / 1.0)
    errors = []
    for l in range(1, 61):
        u, v = trace[l]["u"].numpy(), trace[l]["v"].numpy()
        P = u[:, :, None] * K * v[:, None, :]
        assert np.max(np.abs(P.sum(2) - a)) < 1e-15
        errors.append(np.abs(P.sum(1) - b).sum())
    assert all(e1 <= e0 * (1 + 1e-12) for e0, e1 in zip(errors, errors[1:])) and errors[-1] < 1e-3 * errors[0]


# ======================================================================== sinkhorn_log
def test_sinkhorn_log_every_layer_equals_the_scaling_iteration():
    C, a, b = problem(5, 6, 2, seed=3)
    eps, layers = 0.4, 15
    net = unroll.load("sinkhorn_log", layers=layers)(eps=eps).double()
    trace = net.trace(t64(C), t64(a), t64(b))
    for s in range(2):
        for l, (u, v) in enumerate(numpy_sinkhorn(C[s], a[s], b[s], eps, layers)):
            f, g = trace[l]["f"][s].numpy(), trace[l]["g"][s].numpy()
            assert rel(np.exp(f / eps), u) < 1e-11 and rel(np.exp(g / eps), v) < 1e-11, (s, l)
    P, f, g = net(t64(C), t64(a), t64(b))
    for s in range(2):
        assert rel(P[s].numpy(), ot.sinkhorn(a[s], b[s], C[s], reg=eps, numItermax=layers, stopThr=0)) < 1e-11


def dual(f, g, C, a, b, eps):
    return f @ a + g @ b - eps * np.exp((f[:, None] + g[None, :] - C) / eps).sum()


def test_sinkhorn_log_small_eps_reaches_the_exact_transport_cost():
    C, a, b = problem(6, 6, 2, seed=4)
    C = C / C.max()  # costs in [0, 1]: C / eps up to 10^3
    eps, layers = 1e-3, 3000
    P, f, g = (x.numpy() for x in unroll.load("sinkhorn_log", layers=layers)(eps=eps).double()(
        t64(C), t64(a), t64(b)))
    assert np.all(np.isfinite(P)) and np.all(np.isfinite(f)) and np.all(np.isfinite(g))
    # the plan does not change when every cost grows by 1; the scaling form then underflows (K = 0: NaN)
    P1 = unroll.load("sinkhorn_log", layers=layers)(eps=eps).double()(t64(C + 1), t64(a), t64(b))[0].numpy()
    assert rel(P1, P) < 1e-9
    with np.errstate(all="ignore"):
        assert not np.all(np.isfinite(numpy_sinkhorn(C[0] + 1, a[0], b[0], eps, 3)[-1][0]))
        assert not np.all(np.isfinite(unroll.load("sinkhorn", layers=3)(eps=eps).double()(
            t64(C + 1), t64(a), t64(b)).numpy()))
    for s in range(2):
        exact = ot.emd2(a[s], b[s], C[s])
        cost = float((P[s] * C[s]).sum())
        assert np.abs(P[s].sum(1) - a[s]).max() < 1e-12
        assert np.abs(P[s].sum(0) - b[s]).max() < 1e-6
        assert abs(cost - exact) < 1e-2 * exact, (cost, exact)  # the entropic bias is O(eps log n)
    # uniform weights, n = m: the assignment cost / n (scipy) is the same optimum
    from scipy.optimize import linear_sum_assignment

    u = np.full((1, 6), 1 / 6)
    P = unroll.load("sinkhorn_log", layers=layers)(eps=eps).double()(t64(C[:1]), t64(u), t64(u))[0].numpy()[0]
    rows, cols = linear_sum_assignment(C[0])
    assert abs((P * C[0]).sum() - C[0][rows, cols].sum() / 6) < 1e-2 * C[0][rows, cols].sum() / 6


def test_sinkhorn_log_dual_objective_increases_monotonically():
    C, a, b = problem(7, 5, 2, seed=5)
    eps = 0.05
    trace = unroll.load("sinkhorn_log", layers=40)(eps=eps).double().trace(t64(C), t64(a), t64(b))
    for s in range(2):
        values = [dual(t["f"][s].numpy(), t["g"][s].numpy(), C[s], a[s], b[s], eps) for t in trace]
        assert all(d1 >= d0 - 1e-12 * abs(d0) for d0, d1 in zip(values, values[1:])), values


def test_sinkhorn_log_zero_weight_gives_a_zero_row_not_nan():
    C, a, b = problem(4, 5, 1, seed=6)
    a = a.copy()
    a[0, 1] = 0.0
    a /= a.sum()
    P = unroll.load("sinkhorn_log", layers=20)(eps=0.1).double()(t64(C), t64(a), t64(b))[0].numpy()
    assert np.all(np.isfinite(P)) and np.all(P[0, 1] == 0)
    assert np.abs(P[0].sum(1) - a[0]).max() < 1e-15
