"""Family A (catalog A1-A8, A15): the shipped specs against the numpy references (training, float32 and
unbatched samples: tests/test_family_a_training.py).

* Equivalence: every default network equals its classical algorithm in
  tests/reference.py (float64, max relative error max|a-b|/max|b| <= 1e-10 at
  every layer of the trace), and the learned networks also equal their
  reference recursion at random (non-default) parameter values, which catches
  transposition / indexing mistakes that symmetric defaults would hide.
* Properties from /work/shared/ALGORITHMS.md: lasso optimality (ISTA, LCoD),
  monotone objective (ISTA), the FISTA rate bound, monotone IHT residual.
* Training: a few hundred Adam steps at L = 5 layers (float32) beat classical
  ISTA/FISTA with 5 iterations by a clear margin.
* float32 modules track float64 ones; an unbatched sample equals its batched row.
"""

# ruff: noqa: F811 - the fixtures imported from family_a_helpers are the arguments of the tests
from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref  # tests/ is on sys.path (conftest.py)
import torch
from family_a_helpers import (  # noqa: F401 (fixtures)
    K_SPARSE,
    LAM,
    TOL,
    assert_trace_matches,
    cs_problem,
    lasso,
    lasso_solution,
    make,
    net_class,
    rel,
    spectral_sq,
    to_np,
    trace_of,
)

# ----------------------------------------------------------------------------
# Equivalence of the default networks with the classical algorithms (float64)
# ----------------------------------------------------------------------------

def test_ista_equals_reference(lasso):
    A, _, y = lasso
    net = make("ista", A, lam=LAM)
    assert net.num_layers == 100  # the spec's default depth
    got = trace_of(net, y, "x")
    assert got[-1].dtype == np.float64
    assert_trace_matches(got, ref.ista(A, y, LAM, net.num_layers), what="ista")


def test_fista_equals_reference(lasso):
    A, _, y = lasso
    net = make("fista", A, lam=LAM)
    K = net.num_layers
    assert_trace_matches(trace_of(net, y, "x"), ref.fista(A, y, LAM, K), what="fista")
    # the momentum scalar t follows t_{l+1} = (1 + sqrt(1 + 4 t_l^2)) / 2, t_0 = 1
    ts = [1.0]
    for _ in range(K):
        ts.append((1.0 + math.sqrt(1.0 + 4.0 * ts[-1] ** 2)) / 2.0)
    got_t = [float(np.asarray(t).reshape(-1)[0]) for t in trace_of(net, y, "t")]
    np.testing.assert_allclose(got_t, ts, rtol=1e-14, atol=0)


def test_fista_momentum_weights_are_python_numbers(lasso):
    # v = x_new + c_k (x_new - x) is lerp(x, x_new, 1 + c_k), c_k = (t_k - 1) / t_{k+1}: the weights depend on
    # the layer only, so they are computed at construction, as Python numbers (a 0-d tensor weight doubles
    # the cost of torch's lerp backward); the module then still follows FISTA after a dtype conversion
    A, _, y = lasso
    net = make("fista", A, lam=LAM)
    ts = [1.0]
    for _ in range(net.num_layers):
        ts.append((1.0 + math.sqrt(1.0 + 4.0 * ts[-1] ** 2)) / 2.0)
    weights = net.t_t_new_table
    assert isinstance(weights, tuple) and all(type(w) is float for w in weights)
    np.testing.assert_allclose(weights, [1 + (ts[k] - 1) / ts[k + 1] for k in range(net.num_layers)],
                               rtol=1e-14, atol=0)
    single = net.float()
    got = to_np(single(torch.as_tensor(y, dtype=torch.float32)))
    want = ref.fista(A, y, LAM, net.num_layers)[-1]
    assert rel(got, want) <= 1e-4


def test_lista_default_equals_ista(lasso):
    A, _, y = lasso
    mu = spectral_sq(A)
    net = make("lista", A, lam=LAM)
    K = net.num_layers
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    assert rel(pv["We"], A.T / mu) <= 1e-14
    assert rel(pv["Wt"], np.eye(A.shape[1]) - A.T @ A / mu) <= 1e-14
    assert rel(pv["theta"], LAM / mu) <= 1e-14
    got = trace_of(net, y, "x")
    assert_trace_matches(got, ref.ista(A, y, LAM, K), what="lista vs ista")
    assert_trace_matches(got, ref.lista(pv["We"], pv["Wt"], pv["theta"], y, K), what="lista vs ref.lista")


def test_lista_untied_default_equals_ista(lasso):
    A, _, y = lasso
    mu = spectral_sq(A)
    n, m = A.shape
    net = make("lista_untied", A, lam=LAM)
    K = net.num_layers
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    assert pv["We"].shape == (K, m, n) and pv["Wt"].shape == (K, m, m) and pv["theta"].shape == (K,)
    for name in ("We", "Wt", "theta"):  # every layer initialised alike
        for layer in range(1, K):
            np.testing.assert_array_equal(pv[name][layer], pv[name][0])
    assert rel(pv["We"][0], A.T / mu) <= 1e-14
    assert rel(pv["Wt"][0], np.eye(m) - A.T @ A / mu) <= 1e-14
    assert rel(pv["theta"], np.full(K, LAM / mu)) <= 1e-14
    got = trace_of(net, y, "x")
    assert_trace_matches(got, ref.ista(A, y, LAM, K), what="lista_untied vs ista")
    assert_trace_matches(got, ref.lista(pv["We"], pv["Wt"], pv["theta"], y, K),
                         what="lista_untied vs ref.lista")


def test_lista_cp_default_equals_ista(lasso):
    A, _, y = lasso
    mu = spectral_sq(A)
    net = make("lista_cp", A, lam=LAM)
    K = net.num_layers
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    assert pv["We"].shape == (K,) + A.T.shape and pv["theta"].shape == (K,)
    assert rel(pv["We"], np.broadcast_to(A.T / mu, pv["We"].shape)) <= 1e-14
    got = trace_of(net, y, "x")
    assert_trace_matches(got, ref.ista(A, y, LAM, K), what="lista_cp vs ista")
    assert_trace_matches(got, ref.lista_cp(A, pv["We"], pv["theta"], y, K), what="lista_cp vs ref.lista_cp")


@pytest.mark.parametrize("problem", ["lasso", "cs_problem"])
def test_lista_cpss_default_schedule_equals_reference(problem, request):
    """Default schedule p^l = min(0.012 (l+1), 0.13).  At m = 500 the counts
    ceil(p^l m (1 - 1e-6)) include the float64 rounding case 0.036000000000000004 * 500 -> 18."""
    A, _, y = request.getfixturevalue(problem)
    mu = spectral_sq(A)
    net = make("lista_cpss", A, lam=LAM)
    K = net.num_layers
    schedule = ref.cpss_schedule(0.012, 0.13, K)
    p_l = [float(p) for p in to_np(net.parameter_values()["p_l"])]
    assert p_l == schedule  # bit-identical Python floats
    want = ref.lista_cpss(A, A.T / mu, LAM / mu, schedule, y, K)
    assert_trace_matches(trace_of(net, y, "x"), want, what=f"lista_cpss ({problem})")


def test_lista_cpss_p0_equals_ista(lasso):
    A, _, y = lasso
    net = make("lista_cpss", A, lam=LAM, p=0.0)
    assert not to_np(net.parameter_values()["p_l"]).any()
    assert_trace_matches(trace_of(net, y, "x"), ref.ista(A, y, LAM, net.num_layers), what="lista_cpss p=0")


def test_alista_analytic_weight(lasso):
    A, _, _ = lasso
    net = make("alista", A, lam=LAM)
    Wa = to_np(net.Wa)
    assert not isinstance(net.Wa, torch.nn.Parameter)  # fixed: a buffer
    assert rel(Wa, ref.alista_weight(A)) <= TOL
    # catalog A8 (a): diag(W~^T A) = 1;  (b): generalised coherence <= coherence of A
    G = Wa.T @ A
    np.testing.assert_allclose(np.diag(G), 1.0, rtol=0, atol=1e-12)
    off = ~np.eye(A.shape[1], dtype=bool)
    An = A / np.linalg.norm(A, axis=0)
    assert np.abs(G[off]).max() <= np.abs(An.T @ An)[off].max() + 1e-12


def test_alista_default_equals_reference(lasso):
    A, _, y = lasso
    mu = spectral_sq(A)
    net = make("alista", A, lam=LAM)
    K = net.num_layers
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    assert rel(pv["gamma"], np.full(K, 1 / mu)) <= 1e-14
    assert rel(pv["theta"], np.full(K, LAM / mu)) <= 1e-14
    schedule = ref.cpss_schedule(0.012, 0.13, K)
    want = ref.alista(A, ref.alista_weight(A), 1 / mu, LAM / mu, schedule, y, K)
    assert_trace_matches(trace_of(net, y, "x"), want, what="alista")


def test_alista_with_A_as_weight_and_p0_equals_ista(lasso):
    """Catalog A8 (d): W~ replaced by A, p = 0, gamma = 1/L (theta = lam gamma) is ISTA."""
    A, _, y = lasso
    mu = spectral_sq(A)
    net = make("alista", A, lam=LAM, p=0.0)
    with torch.no_grad():
        net.Wa.copy_(torch.from_numpy(A))
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    assert rel(pv["gamma"], np.full(net.num_layers, 1 / mu)) <= 1e-14
    assert rel(pv["theta"], LAM * pv["gamma"]) <= 1e-14
    assert not pv["p_l"].any()
    assert_trace_matches(trace_of(net, y, "x"), ref.ista(A, y, LAM, net.num_layers), what="alista(Wa=A, p=0)")


def test_iht_equals_reference(lasso):
    A, _, y = lasso
    net = make("iht", A, k=K_SPARSE)
    got = trace_of(net, y, "x")
    assert np.all(np.count_nonzero(got[-1], axis=1) == K_SPARSE)
    assert_trace_matches(got, ref.iht(A, y, K_SPARSE, net.num_layers), what="iht")


def test_lista_iht_default_equals_iht(lasso):
    A, _, y = lasso
    net = make("lista_iht", A, k=K_SPARSE)
    K = net.num_layers
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    got = trace_of(net, y, "x")
    assert_trace_matches(got, ref.iht(A, y, K_SPARSE, K), what="lista_iht vs iht")
    assert_trace_matches(got, ref.lista_iht(pv["We"], pv["Wt"], K_SPARSE, y, K), what="lista_iht vs ref")


def test_lcod_equals_coordinate_descent(lasso):
    A, _, y = lasso
    net = make("lcod", A, lam=LAM)
    K = net.num_layers
    want = ref.cod(A, y, LAM, K)
    assert_trace_matches(trace_of(net, y, "z"), want["z"], what="lcod z")
    got_B = trace_of(net, y, "B")
    assert max(rel(g, w) for g, w in zip(got_B, want["B"])) <= TOL
    # exactly one coordinate changes per layer, the one CoD selects
    zs = trace_of(net, y, "z")
    for layer in range(K):
        changed = zs[layer + 1] != zs[layer]
        assert np.all(changed.sum(axis=1) <= 1)
        rows = np.nonzero(changed.any(axis=1))[0]
        np.testing.assert_array_equal(np.argmax(changed[rows], axis=1), want["k"][layer][rows])
    with torch.no_grad():
        out = to_np(net(torch.from_numpy(y)))
    assert rel(out, want["x"]) <= TOL


def test_amp_equals_reference(cs_problem):
    A, x_true, y = cs_problem
    net = make("amp", A, alpha=1.5)
    K = net.num_layers
    want = ref.amp(A, y, 1.5, K)
    got_x = trace_of(net, y, "x")
    assert_trace_matches(got_x, want["x"], what="amp x")
    got_z = trace_of(net, y, "z")
    np.testing.assert_array_equal(got_z[0], 0.0)  # z^{-1} = 0
    assert max(rel(got_z[t + 1], want["z"][t]) for t in range(K)) <= TOL
    # and AMP does its job on this problem (sanity: about -26.7 dB after 30 layers)
    assert ref.nmse_db(got_x[-1], x_true) < -20.0


# ----------------------------------------------------------------------------
# Equivalence at random (non-default) parameters: the recursion itself
# ----------------------------------------------------------------------------

def _randomize(net, seed):
    """Perturb every learned parameter (and ALISTA's fixed Wa) reproducibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            noise = torch.randn(p.shape, generator=g, dtype=p.dtype)
            if name.endswith("log_scale"):       # positive parameters: value = init * exp(s)
                p.add_(0.3 * noise)
            else:
                p.add_(0.3 * p.abs().mean() * noise)
        if "Wa" in dict(net.named_buffers()):
            net.Wa.add_(0.1 * net.Wa.abs().mean() * torch.randn(net.Wa.shape, generator=g, dtype=net.Wa.dtype))


def _reference_with_params(spec, A, y, K, pv):
    if spec in ("lista", "lista_untied"):
        return ref.lista(pv["We"], pv["Wt"], pv["theta"], y, K)
    if spec == "lista_cp":
        return ref.lista_cp(A, pv["We"], pv["theta"], y, K)
    if spec == "lista_cpss":
        return ref.lista_cpss(A, pv["We"], pv["theta"], [float(p) for p in pv["p_l"]], y, K)
    if spec == "alista":
        return ref.alista(A, pv["Wa"], pv["gamma"], pv["theta"], [float(p) for p in pv["p_l"]], y, K)
    if spec == "lista_iht":
        return ref.lista_iht(pv["We"], pv["Wt"], K_SPARSE, y, K)
    raise AssertionError(spec)


@pytest.mark.parametrize("spec", ["lista", "lista_untied", "lista_cp", "lista_cpss", "alista", "lista_iht"])
def test_random_parameters_equal_reference(spec, lasso):
    A, _, y = lasso
    hyper = {"k": K_SPARSE} if spec == "lista_iht" else {"lam": LAM}
    net = make(spec, A, layers=8, **hyper)
    _randomize(net, seed=7)
    pv = {k: to_np(v) for k, v in net.parameter_values().items()}
    if spec == "alista":
        pv["Wa"] = to_np(net.Wa)
    want = _reference_with_params(spec, A, y, net.num_layers, pv)
    got = trace_of(net, y, "x")
    assert rel(got[-1], ref.ista(A, y, LAM, net.num_layers)[-1]) > 1e-3  # really not the defaults
    assert_trace_matches(got, want, what=f"{spec} at random parameters")


# ----------------------------------------------------------------------------
# Properties (catalog A1, A2, A4, A5)
# ----------------------------------------------------------------------------

def test_ista_objective_nonincreasing(lasso):
    A, _, y = lasso
    xs = trace_of(make("ista", A, layers=300, lam=LAM), y, "x")
    F = np.stack([ref.lasso_objective(A, y, x, LAM) for x in xs])  # [layers+1, batch]
    steps = np.diff(F, axis=0)
    assert np.all(steps <= 1e-12 * np.abs(F[:-1])), f"largest increase {steps.max():.3e}"
    assert np.all(F[-1] < F[0])


@pytest.fixture(scope="module")
def ista3000(lasso):
    A, _, y = lasso
    with torch.no_grad():
        return to_np(make("ista", A, layers=3000, lam=LAM)(torch.from_numpy(y)))


def test_ista_kkt_after_3000_layers(lasso, lasso_solution, ista3000):
    """After 3,000 layers the lasso KKT conditions hold to 1e-8 (measured: 7.8e-10)."""
    A, _, y = lasso
    x = ista3000
    on_support, off_support = ref.lasso_kkt_residual(A, y, x, LAM)
    assert on_support < 1e-8 and off_support < 1e-8, (on_support, off_support)
    assert np.abs(x - lasso_solution).max() < 1e-7
    F, F_star = ref.lasso_objective(A, y, x, LAM), ref.lasso_objective(A, y, lasso_solution, LAM)
    assert np.all(F - F_star <= 1e-12 * F_star)


def test_ista_solution_matches_sklearn(lasso, lasso_solution, ista3000):
    """External reference (catalog A1): sklearn Lasso with alpha = lam / n, no intercept."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    A, _, y = lasso
    n = A.shape[0]
    sk = np.stack([
        linear_model.Lasso(alpha=LAM / n, fit_intercept=False, tol=1e-12, max_iter=10**6).fit(A, yb).coef_
        for yb in y
    ])
    assert np.abs(ista3000 - sk).max() < 1e-7
    assert np.abs(lasso_solution - sk).max() < 1e-9


def test_fista_rate_bound_and_beats_ista(lasso, lasso_solution):
    """F(x^l) - F* <= 2 L ||x^0 - x*||^2 / (l+1)^2 for every layer (x^0 = 0), and at
    equal depth 20 <= l <= 100 FISTA's objective gap is at most ISTA's."""
    A, _, y = lasso
    K = 100
    mu = spectral_sq(A)
    F_star = ref.lasso_objective(A, y, lasso_solution, LAM)
    xs_f = trace_of(make("fista", A, lam=LAM), y, "x")
    xs_i = trace_of(make("ista", A, lam=LAM), y, "x")
    gap_f = np.stack([ref.lasso_objective(A, y, x, LAM) - F_star for x in xs_f])
    gap_i = np.stack([ref.lasso_objective(A, y, x, LAM) - F_star for x in xs_i])
    assert gap_f.shape == (K + 1, y.shape[0])
    ell = np.arange(K + 1)[:, None]
    bound = 2 * mu * np.sum(lasso_solution ** 2, axis=1)[None, :] / (ell + 1) ** 2
    assert np.all(gap_f[1:] <= bound[1:]), f"worst ratio {(gap_f[1:] / bound[1:]).max():.3f}"
    assert np.all(gap_f[20:] <= gap_i[20:] + 1e-12)


def test_lcod_converges_to_lasso_solution(lasso, lasso_solution):
    """Catalog A4 (b): after 3,000 coordinate steps CoD sits at the lasso minimiser."""
    A, _, y = lasso
    net = make("lcod", A, layers=3000, lam=LAM)
    with torch.no_grad():
        out = to_np(net(torch.from_numpy(y)))
    z = trace_of(net, y, "z")[-1]
    assert np.abs(out - lasso_solution).max() < 1e-10
    assert np.abs(z - lasso_solution).max() < 1e-10
    assert max(ref.lasso_kkt_residual(A, y, out, LAM)) < 1e-10


@pytest.mark.parametrize("scale", [1.5, 0.7])
def test_lcod_requires_unit_norm_columns(lasso, scale):
    # CoD's step is exact only for unit-norm columns: with norms 1.5 it diverges (|x| ~ 1e19 after 200
    # layers), with 0.7 it stalls 6 % from the lasso solution. Construction refuses both; unit-norm
    # columns rounded to float32 pass.
    A, _, _ = lasso
    with pytest.raises(ValueError, match="`A`.*unit l2 norm"):
        make("lcod", scale * A, lam=LAM)
    make("lcod", torch.tensor(A, dtype=torch.float32), lam=LAM)


def test_iht_residual_nonincreasing(lasso):
    """Catalog A5 (b): with ||A||_2 < 1 the IHT residual ||y - A x^l||^2 never increases;
    checked for the `iht` spec (step 1/||A||^2) and, through `lista_iht` with
    W_t = I - A^T A, W_e = A^T, for the catalog's step mu = 1."""
    A0, _, y0 = lasso
    scale = 0.99 / np.linalg.norm(A0, 2)
    A, y = A0 * scale, y0 * scale
    assert np.linalg.norm(A, 2) < 1
    K = 60
    runs = {"iht": trace_of(make("iht", A, layers=K, k=K_SPARSE), y, "x")}
    net = make("lista_iht", A, layers=K, k=K_SPARSE)
    with torch.no_grad():
        net.Wt.copy_(torch.from_numpy(np.eye(A.shape[1]) - A.T @ A).expand_as(net.Wt))
        net.We.copy_(torch.from_numpy(A.T.copy()).expand_as(net.We))
    runs["lista_iht mu=1"] = trace_of(net, y, "x")
    assert_trace_matches(runs["lista_iht mu=1"], ref.iht(A, y, K_SPARSE, K, mu=1.0), what="IHT mu=1")
    for name, xs in runs.items():
        r = np.stack([np.sum((y - x @ A.T) ** 2, axis=1) for x in xs])
        assert np.all(np.diff(r, axis=0) <= 1e-12 * r[:-1]), name
        assert np.all(r[-1] < r[0]), name
