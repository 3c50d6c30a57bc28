"""Validate the numpy references in tests/reference.py against independent facts.

These tests check the ground truth itself (optimality conditions, external
solvers, known algebraic identities), so that the network-vs-reference tests
elsewhere compare against something trustworthy.  numpy only, float64.
"""

import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference as ref

LAM = 0.05  # catalog A1 test value


@pytest.fixture(scope="module")
def lasso():
    """Catalog A1 data (n=20, m=50, 4-sparse, noise 0.01) and a long ISTA run."""
    A, x_star, y = ref.lasso_problem(n=20, m=50, k=4, noise=0.01, batch=8, seed=0)
    xs = ref.ista(A, y, LAM, 5000)
    return A, x_star, y, xs


# ----------------------------------------------------------------------------
# Operators
# ----------------------------------------------------------------------------

def test_soft_real_and_complex():
    v = np.array([-3.0, -0.5, 0.0, 0.2, 2.0])
    np.testing.assert_array_equal(ref.soft(v, 1.0), [-2.0, 0.0, 0.0, 0.0, 1.0])
    # per-entry threshold
    np.testing.assert_array_equal(ref.soft(v, np.array([0, 0, 1, 0.1, 3])), [-3.0, -0.5, 0.0, 0.1, 0.0])
    # complex: magnitude shrinks by theta, phase is kept, zero stays zero
    vc = np.array([3 + 4j, 0.3 - 0.4j, 0j, -2j])
    out = ref.soft(vc, 1.0)
    np.testing.assert_allclose(np.abs(out), [4.0, 0.0, 0.0, 1.0], atol=1e-15)
    np.testing.assert_allclose(out[[0, 3]], [(3 + 4j) * 0.8, -1j], atol=1e-15)
    assert np.all(np.isfinite(out))


def test_soft_is_prox_of_l1():
    """soft(v, t) minimises t|z| + (z - v)^2 / 2 (checked on a dense grid)."""
    grid = np.linspace(-5, 5, 200001)
    for v in [-2.3, -0.4, 0.0, 0.7, 3.1]:
        z = grid[np.argmin(0.8 * np.abs(grid) + 0.5 * (grid - v) ** 2)]
        assert abs(ref.soft(v, 0.8) - z) < 1e-4


def test_soft_nonneg_and_hard():
    v = np.array([-2.0, 0.5, 1.0, 1.5])
    np.testing.assert_array_equal(ref.soft_nonneg(v, 1.0), [0.0, 0.0, 0.0, 0.5])
    np.testing.assert_array_equal(ref.hard(v, 1.0), [-2.0, 0.0, 0.0, 1.5])


def test_hard_topk_keeps_exactly_k():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((16, 40))
    for k in [0, 1, 5, 40]:
        out = ref.hard_topk(v, k)
        assert np.all(np.count_nonzero(out, axis=1) == k)
        # kept entries are unchanged and dominate every dropped entry
        kept = out != 0
        np.testing.assert_array_equal(out[kept], v[kept])
        if 0 < k < 40:
            assert np.all(np.abs(np.where(kept, v, np.inf)).min(axis=1)
                          >= np.abs(np.where(kept, 0, v)).max(axis=1))
    # ties: lowest index wins, regardless of sign
    tie = np.array([[1.0, -2.0, 2.0, -2.0, 0.5]])
    np.testing.assert_array_equal(ref.hard_topk(tie, 2), [[0.0, -2.0, 2.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ref.hard_topk(np.ones(6), 3), [1, 1, 1, 0, 0, 0])


def test_ss_soft_p0_is_soft_and_hand_example():
    rng = np.random.default_rng(2)
    v = rng.standard_normal((10, 30))
    theta = rng.random(30) * 0.5
    np.testing.assert_array_equal(ref.ss_soft(v, theta, 0.0), ref.soft(v, theta))
    # p = 1 selects every entry: ss_soft reduces to hard(v, theta)
    np.testing.assert_array_equal(ref.ss_soft(v, theta, 1.0), ref.hard(v, theta))
    # Hand example, m = 6, p = 0.3 -> ceil(1.8) = 2 selected; |v| ties at 3 -> indices 1, 2.
    v = np.array([[1.0, -3.0, 3.0, 0.4, -3.0, 2.0]])
    expected = [[0.5, -3.0, 3.0, 0.0, -2.5, 1.5]]
    np.testing.assert_array_equal(ref.ss_soft(v, 0.5, 0.3), expected)
    # a selected entry below the threshold is still zeroed
    np.testing.assert_array_equal(ref.ss_soft(np.array([0.2, 0.1]), 0.5, 1.0), [0.0, 0.0])
    # the count is plain ceil(p*m) in float arithmetic (documented rounding quirk)
    assert ref.ss_count(0.3, 6) == 2
    assert ref.ss_count(ref.cpss_schedule(0.012, 0.13, 3)[2], 500) == 18  # robust to float64 rounding
    assert ref.ss_count(float(np.float32(0.012)), 500) == 6  # and to float32 rounding


# ----------------------------------------------------------------------------
# ISTA / FISTA against optimality conditions and scikit-learn
# ----------------------------------------------------------------------------

def test_ista_kkt_after_5000(lasso):
    A, _, y, xs = lasso
    on, off = ref.lasso_kkt_residual(A, y, xs[-1], LAM)
    assert on < 1e-8 and off < 1e-8
    assert np.all(np.count_nonzero(xs[-1], axis=1) > 0)  # non-trivial solution


def test_ista_objective_non_increasing(lasso):
    A, _, y, xs = lasso
    F = np.array([ref.lasso_objective(A, y, x, LAM) for x in xs])   # [L+1, B]
    assert np.all(np.diff(F, axis=0) <= 1e-12 * F[:-1])
    assert np.all(F[-1] < F[0])


def test_ista_fista_match_sklearn(lasso):
    sklearn_lm = pytest.importorskip("sklearn.linear_model")
    A, _, y, xs = lasso
    n = A.shape[0]
    x_sk = np.stack([
        sklearn_lm.Lasso(alpha=LAM / n, fit_intercept=False, tol=1e-12, max_iter=10**6).fit(A, yb).coef_
        for yb in y
    ])
    x_fista = ref.fista(A, y, LAM, 5000)[-1]
    assert np.abs(xs[-1] - x_sk).max() < 1e-6
    assert np.abs(x_fista - x_sk).max() < 1e-6


def test_fista_ahead_of_ista(lasso):
    """Batch error of FISTA <= ISTA for 20 <= l <= 200.

    FISTA is not monotone; once ISTA has identified the support it converges
    linearly and may overtake FISTA's oscillations near machine precision, so the
    comparison is made in the pre-asymptotic range only (here ISTA is still far
    from converged: its batch l2 error at l = 200 is ~1).
    """
    A, _, y, xs = lasso
    x_opt = xs[-1]
    xf = ref.fista(A, y, LAM, 200)
    err_i = np.array([np.sum((x - x_opt) ** 2) for x in xs[:201]])
    err_f = np.array([np.sum((x - x_opt) ** 2) for x in xf])
    assert np.all(err_f[20:] <= err_i[20:])
    assert err_f[200] < 1e-3 * err_i[200]


def test_fista_rate_bound(lasso):
    """Beck-Teboulle: F(x^l) - F* <= 2 mu ||x^0 - x*||^2 / (l + 1)^2."""
    A, _, y, xs = lasso
    mu = np.linalg.norm(A, 2) ** 2
    F_star = ref.lasso_objective(A, y, xs[-1], LAM)
    dist0 = np.sum(xs[-1] ** 2, axis=1)
    for l, x in enumerate(ref.fista(A, y, LAM, 300)):
        gap = ref.lasso_objective(A, y, x, LAM) - F_star
        assert np.all(gap <= 2 * mu * dist0 / (l + 1) ** 2 + 1e-12)


# ----------------------------------------------------------------------------
# Coordinate descent, IHT, ALISTA weight, AMP
# ----------------------------------------------------------------------------

def test_cod_converges_to_ista_fixed_point(lasso):
    A, _, y, xs = lasso
    out = ref.cod(A, y, LAM, 3000)
    assert np.abs(out["x"] - xs[-1]).max() < 1e-8
    assert np.abs(out["z"][-1] - xs[-1]).max() < 1e-8
    # B tracks A^T y + S z exactly (invariant of the algorithm)
    S = np.eye(A.shape[1]) - A.T @ A
    np.testing.assert_allclose(out["B"][-1], y @ A + out["z"][-1] @ S, atol=1e-10)
    # each step changes exactly one coordinate per sample (or none at convergence)
    assert np.all(np.count_nonzero(out["z"][1] - out["z"][0], axis=1) <= 1)


def test_iht_recovery_and_fixed_points():
    """IHT (n=30, m=60, k=3, noiseless, mu = ||A||^2).

    With the conservative step 1/||A||^2 (~1/5 here) IHT is a majorise-minimise
    scheme: the residual never increases and every sample ends at a fixed point
    that is the least-squares fit on its support.  It does NOT recover every
    sample: at this size some samples stall at a wrong-support fixed point (this
    is a property of IHT, not of the reference), so recovery is asserted for
    the samples whose residual vanishes, and for a majority of the batch.
    """
    A, x_star, y = ref.lasso_problem(n=30, m=60, k=3, noise=0.0, batch=64, seed=0)
    xs = ref.iht(A, y, 3, 3000)
    x = xs[-1]
    res = np.array([np.sum((y - z @ A.T) ** 2, axis=1) for z in xs])   # [L+1, B]
    assert np.all(np.diff(res, axis=0) <= 1e-12 * res[0])
    # converged: a fixed point of the iteration, k-sparse and least-squares on its support
    assert np.abs(xs[-1] - xs[-2]).max() < 1e-12
    for b in range(len(y)):
        supp = np.flatnonzero(x[b])
        assert len(supp) == 3
        ls = np.linalg.lstsq(A[:, supp], y[b], rcond=None)[0]
        np.testing.assert_allclose(x[b, supp], ls, atol=1e-10)
    # zero residual <=> exact recovery (spark(A) > 2k for Gaussian A)
    recovered = res[-1] < 1e-20
    assert np.abs(x[recovered] - x_star[recovered]).max() < 1e-10
    assert np.all(np.abs(x[~recovered] - x_star[~recovered]).max(axis=1) > 1e-3)
    assert recovered.mean() >= 0.6


def test_alista_weight():
    rng = np.random.default_rng(3)
    A = rng.standard_normal((20, 50))
    A /= np.linalg.norm(A, axis=0)
    W = ref.alista_weight(A)
    assert W.shape == A.shape
    np.testing.assert_allclose(np.diag(W.T @ A), 1.0, atol=1e-12)
    # optimality of min w^T G w s.t. w^T a_i = 1: G w_i is parallel to a_i
    GW = (A @ A.T) @ W
    nu = np.einsum("ij,ij->j", GW, A) / np.sum(A * A, axis=0)
    np.testing.assert_allclose(GW, A * nu, atol=1e-10)
    # generalized coherence is no worse than the mutual coherence of A (catalog A8 (b))
    off = ~np.eye(50, dtype=bool)
    assert np.abs(W.T @ A)[off].max() <= np.abs(A.T @ A)[off].max() + 1e-12


def test_amp_fixed_point_is_lasso():
    """AMP calibration (A15): the fixed point solves the lasso with lam = theta (1 - ||x||_0 / M)."""
    A, x, y = ref.bernoulli_gaussian_problem(n=250, m=500, pnz=0.1, batch=4, snr_db=40, seed=0,
                                             normalize_columns=False)
    out = ref.amp(A, y, 1.75, 1000)
    x_hat, theta = out["x"][-1], out["theta"][-1]
    assert ref.nmse_db(x_hat, x) < -10  # sanity: the signal is recovered
    for b in range(len(y)):
        lam = theta[b] * (1 - np.count_nonzero(x_hat[b]) / A.shape[0])
        on, off = ref.lasso_kkt_residual(A, y[b], x_hat[b], lam)
        assert on < 1e-8 * lam and off < 1e-8 * lam


# ----------------------------------------------------------------------------
# Consistency of the unrolled forms at their untrained defaults (catalog A3, A5-A8 (a))
# ----------------------------------------------------------------------------

def test_unrolled_defaults_reproduce_classical(lasso):
    A, _, y, _ = lasso
    L, m = 30, A.shape[1]
    mu = np.linalg.norm(A, 2) ** 2
    We, Wt = A.T / mu, np.eye(m) - A.T @ A / mu
    base = ref.ista(A, y, LAM, L)

    def close(xs):
        return max(np.abs(a - b).max() for a, b in zip(xs, base)) < 1e-12

    assert close(ref.lista(We, Wt, LAM / mu, y, L))
    assert close(ref.lista(np.stack([We] * L), np.stack([Wt] * L), np.full((L, m), LAM / mu), y, L))
    assert close(ref.lista_cp(A, We, np.full(L, LAM / mu), y, L))
    assert close(ref.lista_cpss(A, We, LAM / mu, [0.0] * L, y, L))
    assert close(ref.alista(A, A, 1 / mu, LAM / mu, 0.0, y, L))   # W~ replaced by A, p = 0
    # unrolled IHT at its defaults is classical IHT
    it = ref.iht(A, y, 4, L)
    lit = ref.lista_iht(We, Wt, 4, y, L)
    assert max(np.abs(a - b).max() for a, b in zip(it, lit)) < 1e-12


def test_cpss_schedule_and_nmse():
    assert ref.cpss_schedule(0.012, 0.13, 12)[:2] == [0.012, 0.024]
    assert ref.cpss_schedule(0.012, 0.13, 12)[-1] == 0.13
    x = np.ones((2, 4))
    assert ref.nmse_db(x * 1.1, x) == pytest.approx(-20.0)
