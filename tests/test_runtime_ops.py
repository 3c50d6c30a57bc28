"""Runtime operators (runtime/ops.py) and parameter reparametrisations (runtime/params.py):
gradients checked in float64 with torch.autograd.gradcheck, values compared with the
numpy references registered in compiler/operators/, ties broken by lowest index."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck
from torch.func import functional_call
from unroll import runtime as rt
from unroll.compiler.operators import OPERATORS

F64 = torch.float64


def rng(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def away_from(v: torch.Tensor, points, margin: float = 1e-2) -> torch.Tensor:
    """Nudge entries of v away from the kinks `points` (|v| == point), so finite differences are valid."""
    v = v.clone()
    for p in points:
        close = (v.abs() - p).abs() < margin
        v[close] = torch.sign(v[close]) * (p + 3 * margin) + (v[close] == 0) * (p + 3 * margin)
    return v


def ref(name: str):
    op = OPERATORS[name]
    assert op.reference is not None, f"{name} has no numpy reference"
    return op.reference


# --------------------------------------------------------------------------- gradcheck: thresholds
def test_gradcheck_soft_real():
    v = away_from(torch.randn(3, 7, generator=rng(1), dtype=F64), [0.3, 0.0]).requires_grad_()
    theta = torch.tensor(0.3, dtype=F64, requires_grad=True)
    assert gradcheck(rt.soft, (v, theta))


def test_gradcheck_soft_per_entry_threshold():
    v = torch.randn(3, 5, generator=rng(2), dtype=F64)
    theta = torch.rand(5, generator=rng(3), dtype=F64) * 0.5 + 0.1
    keep = (v.abs() - theta).abs() > 0.05
    v = torch.where(keep, v, v + 0.2).requires_grad_()
    theta.requires_grad_()
    assert gradcheck(rt.soft, (v, theta))


def test_gradcheck_soft_complex():
    g = rng(4)
    v = torch.complex(torch.randn(4, 6, generator=g, dtype=F64), torch.randn(4, 6, generator=g, dtype=F64))
    mag = v.abs()
    v = torch.where((mag - 0.5).abs() < 0.05, v * 1.3, v).requires_grad_()
    theta = torch.tensor(0.5, dtype=F64, requires_grad=True)
    assert gradcheck(rt.soft, (v, theta))


def test_gradcheck_soft_nonneg():
    v = torch.randn(3, 7, generator=rng(5), dtype=F64)
    v = torch.where((v - 0.2).abs() < 0.02, v + 0.1, v).requires_grad_()
    theta = torch.tensor(0.2, dtype=F64, requires_grad=True)
    assert gradcheck(rt.soft_nonneg, (v, theta))


def test_gradcheck_hard_away_from_threshold():
    v = away_from(torch.randn(3, 7, generator=rng(6), dtype=F64), [0.4]).requires_grad_()
    assert gradcheck(lambda x: rt.hard(x, 0.4), (v,))


def test_gradcheck_hard_topk():
    v = torch.randn(4, 9, generator=rng(7), dtype=F64).requires_grad_()
    assert gradcheck(lambda x: rt.hard_topk(x, 3, batched=True), (v,))
    w = torch.randn(9, generator=rng(8), dtype=F64).requires_grad_()
    assert gradcheck(lambda x: rt.hard_topk(x, 4, batched=False), (w,))


def test_gradcheck_ss_soft_away_from_ties():
    v = away_from(torch.randn(4, 10, generator=rng(9), dtype=F64), [0.3, 0.0]).requires_grad_()
    theta = torch.tensor(0.3, dtype=F64, requires_grad=True)
    assert gradcheck(lambda x, t: rt.ss_soft(x, t, 0.25, batched=True), (v, theta))


def test_gradcheck_abs2():
    g = rng(10)
    v = torch.randn(3, 4, generator=g, dtype=F64, requires_grad=True)
    assert gradcheck(rt.abs2, (v,))
    z = torch.complex(torch.randn(3, 4, generator=g, dtype=F64), torch.randn(3, 4, generator=g, dtype=F64))
    z.requires_grad_()
    assert gradcheck(rt.abs2, (z,))
    torch.testing.assert_close(rt.abs2(z.detach()), z.detach().abs() ** 2)


def test_expj_matches_reference_and_gradcheck():
    theta = torch.randn(3, 5, generator=rng(11), dtype=F64)
    np.testing.assert_allclose(rt.expj(theta).numpy(), np.cos(theta.numpy()) + 1j * np.sin(theta.numpy()),
                               rtol=0, atol=1e-15)
    np.testing.assert_allclose(rt.expj(theta).numpy(), ref("expj")(theta.numpy()), rtol=0, atol=1e-15)
    assert gradcheck(lambda t: torch.view_as_real(rt.expj(t)), (theta.requires_grad_(),))


def test_hard_topk_gradient_flows_to_kept_entries_only():
    v = torch.tensor([[0.1, -3.0, 2.0, 0.5]], dtype=F64, requires_grad=True)
    rt.hard_topk(v, 2).sum().backward()
    assert v.grad.tolist() == [[0.0, 1.0, 1.0, 0.0]]


# --------------------------------------------------------------------------- gradcheck: parametrisations
def _param_fn(module, name):
    def f(raw):
        return functional_call(module, {name: raw}, ())

    return f


def test_gradcheck_positive():
    init = torch.rand(5, generator=rng(11), dtype=F64) + 0.1
    m = rt.Positive(init)
    s = (torch.randn(5, generator=rng(12), dtype=F64) * 0.3).requires_grad_()
    assert gradcheck(_param_fn(m, "log_scale"), (s,))


def test_gradcheck_nonnegative():
    m = rt.NonNegative(torch.rand(5, generator=rng(13), dtype=F64))
    raw = away_from(torch.randn(5, generator=rng(14), dtype=F64), [0.0]).requires_grad_()
    assert gradcheck(_param_fn(m, "raw"), (raw,))


def test_gradcheck_range():
    m = rt.Range(torch.full((6,), 0.5, dtype=F64), 0.0, 1.0)
    raw = torch.tensor([-0.5, 0.2, 0.4, 0.7, 1.3, 0.9], dtype=F64, requires_grad=True)
    assert gradcheck(_param_fn(m, "raw"), (raw,))


def test_gradcheck_unit_columns():
    m = rt.UnitColumns(torch.randn(4, 3, generator=rng(15), dtype=F64))
    raw = torch.randn(4, 3, generator=rng(16), dtype=F64, requires_grad=True)
    assert gradcheck(_param_fn(m, "raw"), (raw,))
    stacked = rt.UnitColumns(torch.randn(2, 4, 3, generator=rng(17), dtype=F64))
    raw = torch.randn(2, 4, 3, generator=rng(18), dtype=F64, requires_grad=True)
    assert gradcheck(_param_fn(stacked, "raw"), (raw,))


# --------------------------------------------------------------------------- parametrisation values
def test_parametrisations_reproduce_their_default_exactly():
    init = torch.rand(7, generator=rng(19), dtype=F64) + 1e-3
    assert torch.equal(rt.Positive(init)(), init)
    assert torch.equal(rt.NonNegative(init)(), init)
    assert torch.equal(rt.Range(init, 0.0, 2.0)(), init)
    cols = torch.randn(5, 3, generator=rng(20), dtype=F64)
    unit = cols / torch.linalg.vector_norm(cols, dim=0, keepdim=True)
    torch.testing.assert_close(rt.UnitColumns(cols)(), unit, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(
        torch.linalg.vector_norm(rt.UnitColumns(cols)(), dim=0),
        torch.ones(3, dtype=F64),
        rtol=1e-14,
        atol=1e-14,
    )


@pytest.mark.parametrize(
    "cls, args, bad",
    [
        (rt.Positive, (), torch.tensor([1.0, 0.0], dtype=F64)),
        (rt.NonNegative, (), torch.tensor([1.0, -1e-9], dtype=F64)),
        (rt.Range, (0.0, 1.0), torch.tensor([0.5, 1.5], dtype=F64)),
        (rt.UnitColumns, (), torch.zeros(3, 2, dtype=F64)),
    ],
)
def test_parametrisations_reject_infeasible_defaults(cls, args, bad):
    with pytest.raises(ValueError):
        cls(bad, *args)


def test_check_constraint_for_fixed_parameters():
    v = torch.tensor([0.5, 1.0], dtype=F64)
    assert torch.equal(rt.check_constraint(v, "positive"), v)
    assert torch.equal(rt.check_constraint(v, "range", (0.0, 1.0)), v)
    with pytest.raises(ValueError):
        rt.check_constraint(-v, "nonnegative")
    with pytest.raises(ValueError):
        rt.check_constraint(v, "range", (0.0, 0.9))
    m = torch.tensor([[3.0, 0.0], [4.0, 2.0]], dtype=F64)
    torch.testing.assert_close(
        rt.check_constraint(m, "unit_columns"), torch.tensor([[0.6, 0.0], [0.8, 1.0]], dtype=F64)
    )


# --------------------------------------------------------------------------- against the numpy references
def np_soft_real(v, t):
    """Soft threshold written here from its definition (catalog §1): sign(v) max(|v| - t, 0)."""
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def np_soft_complex(v, t):
    """Complex soft threshold from its definition: v/|v| max(|v| - t, 0), and 0 at v = 0."""
    mag = np.abs(v)
    return np.where(mag > t, v / np.where(mag > 0, mag, 1.0) * np.maximum(mag - t, 0.0), 0.0)


@pytest.mark.parametrize("seed", range(5))
def test_soft_matches_an_independent_definition(seed):
    g = np.random.default_rng(seed)
    v = g.normal(size=(6, 11))
    theta = float(g.uniform(0.05, 1.0))
    want = np_soft_real(v, theta)
    assert 0 < np.mean(want == 0) < 1  # both branches of the threshold occur
    np.testing.assert_allclose(rt.soft(torch.tensor(v), theta).numpy(), want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(rt.soft(torch.tensor(v), torch.tensor(theta, dtype=F64)).numpy(), want, rtol=0, atol=1e-15)
    # per-entry thresholds
    t = g.uniform(0.0, 1.0, size=11)
    np.testing.assert_allclose(rt.soft(torch.tensor(v), torch.tensor(t)).numpy(), np_soft_real(v, t), atol=1e-15)
    # complex, with an exact zero entry
    z = g.normal(size=(6, 11)) + 1j * g.normal(size=(6, 11))
    z[0, 0] = 0
    want_z = np_soft_complex(z, theta)
    assert 0 < np.mean(want_z == 0) < 1
    np.testing.assert_allclose(rt.soft(torch.tensor(z), theta).numpy(), want_z, rtol=0, atol=1e-15)
    # the registry's numpy reference (used by other tests) agrees with the definition as well
    np.testing.assert_allclose(ref("soft")(v, theta), want, rtol=0, atol=1e-15)
    np.testing.assert_allclose(ref("soft")(z, theta), want_z, rtol=0, atol=1e-15)


@pytest.mark.parametrize("seed", range(3))
def test_soft_gradients_match_the_definition(seed):
    """d soft / dv = 1{|v| > t} and d soft / dt = -sign(v) 1{|v| > t} (real, analytic); for complex v the
    gradient torch returns for a real loss, dL/dRe v + i dL/dIm v, and dL/dt equal central differences of
    the numpy definition."""
    g = np.random.default_rng(50 + seed)
    v = g.normal(size=(5, 9))
    t = 0.4
    v = np.where(np.abs(np.abs(v) - t) < 0.05, v * 1.5, v)  # away from the kinks
    c = g.normal(size=v.shape)  # loss L = sum(c * soft(v, t))
    vt = torch.tensor(v, requires_grad=True)
    tt = torch.tensor(t, dtype=F64, requires_grad=True)
    (torch.tensor(c) * rt.soft(vt, tt)).sum().backward()
    active = np.abs(v) > t
    assert 0 < active.mean() < 1
    np.testing.assert_allclose(vt.grad.numpy(), c * active, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tt.grad.item(), -np.sum(c * np.sign(v) * active), rtol=1e-13)
    # per-entry thresholds: d/dt_j = -sum_i c_ij sign(v_ij) 1{|v_ij| > t_j}
    tj = g.uniform(0.1, 0.6, size=9)
    v2 = np.where(np.abs(np.abs(v) - tj) < 0.05, v * 1.5 + 0.1, v)
    vt2 = torch.tensor(v2, requires_grad=True)
    tt2 = torch.tensor(tj, requires_grad=True)
    (torch.tensor(c) * rt.soft(vt2, tt2)).sum().backward()
    act2 = np.abs(v2) > tj
    np.testing.assert_allclose(vt2.grad.numpy(), c * act2, rtol=0, atol=1e-15)
    np.testing.assert_allclose(tt2.grad.numpy(), -np.sum(c * np.sign(v2) * act2, axis=0), rtol=1e-13, atol=1e-15)
    # complex: L = sum Re(conj(c) soft(z, t)), c complex
    t = 1.0
    z = g.normal(size=(4, 6)) + 1j * g.normal(size=(4, 6))
    z = np.where(np.abs(np.abs(z) - t) < 0.05, z * 1.2, z)
    cz = g.normal(size=z.shape) + 1j * g.normal(size=z.shape)

    def loss(zz, tau):
        return float(np.sum(np.real(np.conj(cz) * np_soft_complex(zz, tau))))

    zt = torch.tensor(z, requires_grad=True)
    tz = torch.tensor(t, dtype=F64, requires_grad=True)
    torch.real(torch.conj(torch.tensor(cz)) * rt.soft(zt, tz)).sum().backward()
    h = 1e-6
    fd = np.zeros_like(z)
    for idx in np.ndindex(z.shape):
        for unit in (1.0, 1j):
            e = np.zeros_like(z)
            e[idx] = h * unit
            fd[idx] += unit * (loss(z + e, t) - loss(z - e, t)) / (2 * h)
    fd_t = (loss(z, t + h) - loss(z, t - h)) / (2 * h)
    assert 0 < (np.abs(z) > t).mean() < 1  # some entries are zeroed, some kept
    np.testing.assert_allclose(zt.grad.numpy(), fd, rtol=0, atol=1e-8)
    np.testing.assert_allclose(tz.grad.item(), fd_t, rtol=1e-8)


@pytest.mark.parametrize("seed", range(3))
def test_soft_nonneg_hard_abs2_match_references(seed):
    g = np.random.default_rng(100 + seed)
    v = g.normal(size=(5, 9))
    np.testing.assert_array_equal(rt.soft_nonneg(torch.tensor(v), 0.3).numpy(), ref("soft_nonneg")(v, 0.3))
    np.testing.assert_array_equal(rt.hard(torch.tensor(v), 0.3).numpy(), ref("hard")(v, 0.3))
    np.testing.assert_allclose(rt.abs2(torch.tensor(v)).numpy(), ref("abs2")(v), rtol=1e-15)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [0, 1, 3, 9, 12])
def test_hard_topk_matches_reference(seed, k):
    g = np.random.default_rng(200 + seed)
    v = g.normal(size=(4, 9))
    got = rt.hard_topk(torch.tensor(v), k, batched=True).numpy()
    want = np.stack([ref("hard_topk")(row, k) for row in v])
    np.testing.assert_array_equal(got, want)
    # unbatched: the whole tensor is one sample
    got = rt.hard_topk(torch.tensor(v), k, batched=False).numpy()
    np.testing.assert_array_equal(got, ref("hard_topk")(v, k))


def test_hard_topk_ties_go_to_the_lowest_index():
    v = torch.tensor([[1.0, -1.0, 1.0, 0.5, -1.0], [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=F64)
    out = rt.hard_topk(v, 2)
    assert out.tolist() == [[1.0, -1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]]
    np.testing.assert_array_equal(out[0].numpy(), ref("hard_topk")(v[0].numpy(), 2))
    # a long run of ties
    w = torch.ones(1, 20, dtype=F64)
    kept = rt.hard_topk(w, 7)[0].nonzero().flatten().tolist()
    assert kept == list(range(7))
    assert (ref("hard_topk")(w[0].numpy(), 7) != 0).nonzero()[0].tolist() == list(range(7))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("p", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_ss_soft_matches_reference(seed, p):
    g = np.random.default_rng(300 + seed)
    v = g.normal(size=(4, 12))
    theta = 0.4
    got = rt.ss_soft(torch.tensor(v), theta, p, batched=True).numpy()
    want = np.stack([ref("ss_soft")(row, theta, p) for row in v])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)
    got = rt.ss_soft(torch.tensor(v[0]), theta, p, batched=False).numpy()
    np.testing.assert_allclose(got, ref("ss_soft")(v[0], theta, p), rtol=0, atol=1e-15)


def test_ss_soft_ties_go_to_the_lowest_index():
    v = torch.tensor([[2.0, -2.0, 2.0, 0.1]], dtype=F64)
    out = rt.ss_soft(v, 0.5, 0.25)  # ceil(0.25 * 4) = 1 entry bypasses the shrinkage
    assert out.tolist() == [[2.0, -1.5, 1.5, 0.0]]
    np.testing.assert_allclose(out[0].numpy(), ref("ss_soft")(v[0].numpy(), 0.5, 0.25))


def test_ss_soft_with_p_zero_is_soft():
    v = torch.randn(3, 8, generator=rng(21), dtype=F64)
    assert torch.equal(rt.ss_soft(v, 0.2, 0.0), rt.soft(v, 0.2))


def test_ss_soft_support_size_is_robust_to_rounding():
    p = min(0.012 * 3, 0.13)
    v = torch.randn(1, 250, generator=rng(22), dtype=F64)
    counts = []
    for dtype in (torch.float64, torch.float32):
        p_t = torch.tensor(p, dtype=dtype)
        x = v.to(dtype)
        counts.append(int((rt.ss_soft(x, 0.5, p_t) != rt.soft(x, 0.5)).sum()))
    assert counts == [9, 9]
    assert math.isclose(p * 250, 9.0)


# --------------------------------------------------------------------------- helpers used by generated code
def test_onehot_full_param_layer_stack():
    idx = torch.tensor([2, 0])
    assert rt.onehot(idx, 4, dtype=F64).tolist() == [[0, 0, 1, 0], [1, 0, 0, 0]]
    t = rt.full_param(0.1, (2, 3), F64, "cpu")
    assert t.shape == (2, 3) and t.dtype == F64 and bool((t == 0.1).all())
    t[0, 0] = 5.0  # a fresh tensor, not a broadcast view
    assert t[1, 1] == 0.1
    s = rt.layer_stack([0.1 * (i + 1) for i in range(4)], (3,), F64, "cpu")
    assert s.shape == (4, 3) and s[:, 0].tolist() == [0.1, 0.2, 0.1 * 3, 0.4]
    assert rt.real_dtype(torch.complex128) == F64 and rt.complex_dtype(F64) == torch.complex128


def test_full_param_keeps_float64_python_numbers_exact():
    t = rt.full_param(0.1, (), F64, "cpu")
    assert t.item() == 0.1


def test_adjoint_test_helper():
    A = torch.randn(5, 3, generator=rng(23), dtype=F64)
    x = torch.randn(3, generator=rng(24), dtype=F64)
    y = torch.randn(5, generator=rng(25), dtype=F64)
    assert rt.adjoint_test(lambda u: A @ u, lambda w: A.T @ w, x, y) < 1e-13
    assert rt.adjoint_test(lambda u: A @ u, lambda w: 2 * A.T @ w, x, y) > 1e-3
