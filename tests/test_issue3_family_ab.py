"""Issue 3, catalog families A/B: pdhg (B6), hqs_generic (B4), sparcom (A16), ml_ista (A12).

Each spec is checked against an independent numpy loop of the classical algorithm (float64,
<= 1e-10 relative, every layer) and against the catalog's property / reference tests:
  pdhg        converges to the lasso solution (sklearn) and its dual to K x* - g;
  hqs_generic each block step never increases the surrogate objective; with a fixed (or floored)
              zeta it converges to the surrogate minimiser, which is O(zeta) from the lasso solution;
              a summable geometric schedule freezes short of the lasso solution (documented limit);
  sparcom     the covariance-fit identity; ISTA reaches the scipy L-BFGS-B minimiser; centring;
  ml_ista     D1 = I, lam1 = 0 gives ISTA on g2; it converges to its certified fixed point (not the
              smoothed problem's minimiser); the ML-BP objective decreases towards a certified
              optimum, with an O(mu) bias of the fixed point.
"""

import warnings

import numpy as np
import pytest
import torch
import unroll
from reference import rel, soft

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


def lasso_data(k, n, batch, seed, s=5, noise=0.01):
    rng = np.random.default_rng(seed)
    K = rng.standard_normal((k, n)) / np.sqrt(k)
    X = np.zeros((batch, n))
    for i in range(batch):
        X[i, rng.choice(n, s, replace=False)] = rng.standard_normal(s)
    return K, X @ K.T + noise * rng.standard_normal((batch, k))


def sk_lasso(A, y, lam):
    sk = pytest.importorskip("sklearn.linear_model")
    return sk.Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14, max_iter=10**6).fit(A, y).coef_


# ================================================================== B6: PDHG
def np_pdhg(K, g, lam, rho, ratio, theta, layers):
    Kn = np.linalg.norm(K, 2)
    sigma, tau = rho * np.sqrt(ratio) / Kn, rho / (np.sqrt(ratio) * Kn)
    x = xbar = np.zeros((g.shape[0], K.shape[1]))
    u = np.zeros_like(g)
    out = [(x, xbar, u)]
    for _ in range(layers):
        u = (u + sigma * (xbar @ K.T) - sigma * g) / (1 + sigma)  # prox of sigma F*, F = 1/2||. - g||^2
        x_new = soft(x - tau * u @ K, tau * lam)
        xbar = x_new + theta * (x_new - x)
        x = x_new
        out.append((x, xbar, u))
    return out


@pytest.mark.parametrize("hypers", [{}, {"lam": 0.05, "rho": 0.9, "ratio": 3.0}, {"theta": 0.5, "ratio": 0.2}])
def test_pdhg_equals_numpy(hypers):
    K, g = lasso_data(20, 40, 3, seed=0)
    h = {"lam": 0.1, "rho": 0.99, "ratio": 1.0, "theta": 1.0, **hypers}
    trace = unroll.load("pdhg", layers=30)(K=K, **hypers).trace(torch.from_numpy(g))
    ref = np_pdhg(K, g, h["lam"], h["rho"], h["ratio"], h["theta"], 30)
    for layer in range(31):
        for name, r in zip(("x", "xbar", "u"), ref[layer]):
            assert rel(trace[layer][name].numpy(), r) < 1e-10, (layer, name)


def test_pdhg_step_sizes_satisfy_the_condition():
    # sigma and tau are derived from ||K||_2: read them off the first layer (x = xbar = u = 0, lam = 0):
    # u^1 = -sigma g / (1 + sigma) and x^1 = -tau K^T u^1
    K, g = lasso_data(20, 40, 1, seed=1)
    s = unroll.load("pdhg", layers=1)(K=K, lam=0.0, rho=0.95, ratio=4.0).trace(torch.from_numpy(g[0]))[1]
    u1, x1 = s["u"].numpy(), s["x"].numpy()
    c = -(u1 @ g[0]) / (g[0] @ g[0])
    sigma = c / (1 - c)
    w = -K.T @ u1
    tau = (x1 @ w) / (w @ w)
    assert rel(u1, -sigma * g[0] / (1 + sigma)) < 1e-12 and rel(x1, tau * w) < 1e-12
    assert abs(sigma * tau * np.linalg.norm(K, 2) ** 2 - 0.95**2) < 1e-12  # sigma tau ||K||^2 = rho^2 < 1
    assert abs(sigma / tau - 4.0) < 1e-10  # ratio = sigma / tau


def test_pdhg_converges_to_the_lasso_solution():
    K, g = lasso_data(20, 40, 3, seed=2)
    lam = 0.05
    with torch.no_grad():
        states = unroll.load("pdhg", layers=1500)(K=K, lam=lam).trace(torch.from_numpy(g))
    x, u = states[-1]["x"].numpy(), states[-1]["u"].numpy()
    for i in range(3):
        ref = sk_lasso(K, g[i], lam)
        assert np.abs(x[i] - ref).max() < 1e-8
        # dual optimality: u* = grad F(K x*) = K x* - g, and -K^T u* in lam d||x*||_1
        assert np.abs(u[i] - (K @ x[i] - g[i])).max() < 1e-8
        assert np.abs(K.T @ u[i]).max() <= lam * (1 + 1e-8)


# ================================================================== B4: HQS
def hqs_schedule(zeta0, decay, zeta_min, layers):
    return [max(zeta0 * decay**k, zeta_min) for k in range(layers)]


def np_hqs(A, y, lam, zetas):
    m = A.shape[1]
    x = z = np.zeros((y.shape[0], m))
    out = [(x, z)]
    for zeta in zetas:
        # x = argmin 1/2||Ax - y||^2 + 1/(2 zeta)||x - z||^2 (normal equations), z = prox_{zeta lam ||.||_1}(x)
        x = np.linalg.solve(A.T @ A + np.eye(m) / zeta, (y @ A + z / zeta).T).T
        z = soft(x, lam * zeta)
        out.append((x, z))
    return out


def hqs_surrogate(A, y, lam, zeta, x, z):
    return 0.5 * np.sum((A @ x - y) ** 2) + lam * np.abs(z).sum() + np.sum((x - z) ** 2) / (2 * zeta)


@pytest.mark.parametrize("hypers", [{}, {"lam": 0.05, "zeta0": 3.0, "decay": 0.8, "zeta_min": 0.05}])
def test_hqs_equals_numpy(hypers):
    A, y = lasso_data(30, 60, 3, seed=3)
    h = {"lam": 0.1, "zeta0": 1.0, "decay": 0.9, "zeta_min": 0.0, **hypers}
    net = unroll.load("hqs_generic", layers=25)(A=A, **hypers)
    zetas = hqs_schedule(h["zeta0"], h["decay"], h["zeta_min"], 25)
    assert rel(net.parameter_values()["zeta"].numpy(), zetas) < 1e-15  # the fixed per-layer schedule
    trace = net.trace(torch.from_numpy(y))
    ref = np_hqs(A, y, h["lam"], zetas)
    for layer in range(26):
        assert rel(trace[layer]["x"].numpy(), ref[layer][0]) < 1e-10
        assert rel(trace[layer]["z"].numpy(), ref[layer][1]) < 1e-10


@pytest.mark.parametrize("decay", [1.0, 0.85])
def test_hqs_block_steps_never_increase_the_surrogate(decay):
    # Phi_zeta(x, z) = f(x) + g(z) + 1/(2 zeta)||x - z||^2; the x step and the z step of layer k are
    # exact minimisations of Phi_{zeta_k} in one block: Phi(x_k, z_k) >= Phi(x_{k+1}, z_k) >= Phi(x_{k+1}, z_{k+1})
    A, y = lasso_data(30, 60, 1, seed=4)
    lam, zeta0 = 0.05, 0.5
    trace = unroll.load("hqs_generic", layers=40)(A=A, lam=lam, zeta0=zeta0, decay=decay).trace(torch.from_numpy(y[0]))
    xs = [s["x"].numpy() for s in trace]
    zs = [s["z"].numpy() for s in trace]
    for k in range(40):
        zeta = zeta0 * decay**k
        p0 = hqs_surrogate(A, y[0], lam, zeta, xs[k], zs[k])
        p1 = hqs_surrogate(A, y[0], lam, zeta, xs[k + 1], zs[k])
        p2 = hqs_surrogate(A, y[0], lam, zeta, xs[k + 1], zs[k + 1])
        assert p1 <= p0 + 1e-12 * abs(p0) and p2 <= p1 + 1e-12 * abs(p1), k


def test_hqs_with_a_floor_reaches_the_surrogate_minimiser_o_zeta_from_the_lasso():
    # HQS with fixed zeta converges to the minimiser of f + env_{zeta g} (f plus a Huber penalty), not to
    # the lasso solution: optimality is A^T(Ax - y) + clip(x / zeta, -lam, lam) = 0. The bias is O(zeta),
    # so a geometric schedule with a floor zeta_min (continuation) approaches the lasso as zeta_min -> 0.
    A, y = lasso_data(30, 60, 2, seed=0)
    lam = 0.05
    errs = {}
    for zeta_min, layers in ((0.1, 1200), (0.01, 8000)):
        with torch.no_grad():
            last = unroll.load("hqs_generic", layers=layers)(A=A, lam=lam, zeta0=1.0, decay=0.9,
                                                             zeta_min=zeta_min).trace(torch.from_numpy(y))[-1]
        x, z = last["x"].numpy(), last["z"].numpy()
        for i in range(2):
            grad = A.T @ (A @ x[i] - y[i]) + np.clip(x[i] / zeta_min, -lam, lam)
            assert np.abs(grad).max() < 1e-9  # the surrogate minimiser (the objective is convex and smooth)
            assert np.abs(x[i] - z[i]).max() <= lam * zeta_min * (1 + 1e-12)
        errs[zeta_min] = max(np.abs(z[i] - sk_lasso(A, y[i], lam)).max() for i in range(2))
    assert all(e < 0.3 * zeta_min for zeta_min, e in errs.items())  # O(zeta) bias (measured ~0.16 zeta) ...
    assert errs[0.01] < errs[0.1] / 5  # ... shrinking linearly with the floor


def test_hqs_summable_geometric_schedule_freezes_short_of_the_lasso():
    # documented limit: with zeta_k = zeta0 decay^k and no floor, sum zeta_k < inf; for small zeta the
    # x step is a gradient step of length ~zeta_k, so the iterates stop moving before they reach the lasso
    A, y = lasso_data(30, 60, 1, seed=0)
    lam = 0.05
    trace = unroll.load("hqs_generic", layers=120)(A=A, lam=lam, zeta0=1.0, decay=0.5).trace(torch.from_numpy(y[0]))
    x = [s["x"].numpy() for s in trace]
    ref = sk_lasso(A, y[0], lam)

    def obj(v):
        return 0.5 * np.sum((A @ v - y[0]) ** 2) + lam * np.abs(v).sum()

    assert np.abs(x[-1] - x[-21]).max() < 1e-12  # frozen
    assert obj(x[-1]) - obj(ref) > 1e-2 * obj(ref)  # far from optimal


# ================================================================== A16: SPARCOM
def sparcom_data(seed=0, T=500, noise=0.01):
    """1-D toy of the catalog: fine grid N = 64, P = 16 coarse pixels (x4 decimation), Gaussian PSF,
    3 emitters closer than the PSF width, T frames of i.i.d. random (exponential) intensities."""
    rng = np.random.default_rng(seed)
    N, P = 64, 16
    grid = np.arange(N)
    H = np.exp(-0.5 * ((grid[:, None] - grid[None, :]) / 1.5) ** 2)  # PSF on the fine grid (std 1.5)
    A = np.kron(np.eye(P), np.full((1, 4), 0.25)) @ H  # then average 4 fine pixels per coarse pixel
    A /= np.linalg.norm(A, 2)
    S = np.zeros((T, N))
    S[:, [28, 31, 34]] = rng.exponential(1.0, (T, 3))  # FWHM of the PSF ~3.5 fine pixels > spacing 3
    return A, S @ A.T + noise * rng.standard_normal((T, P))


def np_sparcom_prestage(A, f):
    fc = f - f.mean(axis=0)
    J = fc.T @ fc / f.shape[0]
    M = (A.T @ A) ** 2
    v = np.einsum("pi,pq,qi->i", A, J, A)  # a_i^T J a_i
    return J, M, v


def np_sparcom(A, f, lam, layers):
    _, M, v = np_sparcom_prestage(A, f)
    L = np.linalg.norm(M, 2)
    x = np.zeros(A.shape[1])
    out = [x]
    for _ in range(layers):
        x = np.maximum(x - (M @ x - v) / L - lam / L, 0)
        out.append(x)
    return out


def test_sparcom_covariance_identity():
    # 1/2||J - A diag(x) A^T||_F^2 = 1/2 x^T M x - v^T x + 1/2||J||_F^2 for any x (exact)
    A, f = sparcom_data()
    J, M, v = np_sparcom_prestage(A, f)
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = rng.standard_normal(A.shape[1])
        lhs = 0.5 * np.linalg.norm(J - A @ np.diag(x) @ A.T) ** 2
        rhs = 0.5 * x @ M @ x - v @ x + 0.5 * np.linalg.norm(J) ** 2
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)


def test_sparcom_equals_numpy_and_ignores_a_constant_background():
    A, f = sparcom_data()
    _, _, v = np_sparcom_prestage(A, f)
    lam = 0.03 * v.max()
    background = np.linspace(1.0, 3.0, 16)  # per-pixel constant offset: removed by the temporal centring
    movies = np.stack([f, 2 * f, f + background])
    trace = unroll.load("sparcom", layers=40)(A=A, lam=lam).trace(torch.from_numpy(movies))
    for b, movie in enumerate(movies):
        ref = np_sparcom(A, movie, lam, 40)
        for layer in range(41):
            assert rel(trace[layer]["x"][b].numpy(), ref[layer]) < 1e-10, (b, layer)
    assert rel(trace[40]["x"][2].numpy(), trace[40]["x"][0].numpy()) < 1e-10


def test_sparcom_converges_to_the_lbfgsb_minimiser():
    optimize = pytest.importorskip("scipy.optimize")
    A, f = sparcom_data()
    _, M, v = np_sparcom_prestage(A, f)
    lam = 0.03 * v.max()

    def F(x):
        return 0.5 * x @ M @ x - v @ x + lam * x.sum()

    ref = optimize.minimize(F, np.zeros(64), jac=lambda x: M @ x - v + lam, method="L-BFGS-B",
                            bounds=[(0, None)] * 64, options={"ftol": 1e-16, "gtol": 1e-14, "maxiter": 10**5})
    with torch.no_grad():
        x = unroll.load("sparcom", layers=20000)(A=A, lam=lam)(torch.from_numpy(f)).numpy()
    assert (x >= 0).all()
    assert F(x) - ref.fun <= 1e-10 * abs(ref.fun)  # ISTA is at least as good as L-BFGS-B ...
    assert np.abs(x - ref.x).max() < 1e-5 * ref.x.max()  # ... and reaches the same minimiser
    # KKT of min_{x >= 0}: gradient M x - v + lam is 0 on the support and >= 0 off it
    grad = M @ x - v + lam
    assert np.abs(grad[x > 0]).max() < 1e-7 * lam and grad.min() > -1e-7 * lam


# ================================================================== A12: ML-ISTA
def mlbp_data(seed=0, n=30, m1=40, m2=20, batch=2):
    rng = np.random.default_rng(seed)
    D1 = rng.standard_normal((n, m1)) / np.sqrt(n)
    D2 = rng.standard_normal((m1, m2)) / np.sqrt(m1)
    G = np.zeros((batch, m2))
    for i in range(batch):
        G[i, rng.choice(m2, 3, replace=False)] = rng.standard_normal(3)
    return D1, D2, G @ (D1 @ D2).T + 0.01 * rng.standard_normal((batch, n))


def np_ml_ista(D1, D2, X, lam1, lam2, mu, t, layers):
    g = np.zeros((X.shape[0], D2.shape[1]))
    out = [g]
    for _ in range(layers):
        D2g = g @ D2.T
        gamma1 = soft(D2g - mu * (D2g @ D1.T - X) @ D1, mu * lam1)
        g = soft(g - (t / mu) * (D2g - gamma1) @ D2, t * lam2)
        out.append(g)
    return out


def mlbp_objective(D1, D2, x, g, lam1, lam2):
    return 0.5 * np.sum((x - D1 @ D2 @ g) ** 2) + lam1 * np.abs(D2 @ g).sum() + lam2 * np.abs(g).sum()


def mlbp_optimum(D1, D2, x, lam1, lam2):
    """ML-BP optimum via its dual: min_g 1/2||x - B g||^2 + ||W g||_1 with B = D1 D2 (full column rank),
    W = [lam1 D2; lam2 I]; dual: min_{|s| <= 1} 1/2 r^T (B^T B)^-1 r, r = B^T x - W^T s (L-BFGS-B), then
    g = (B^T B)^-1 r. Returns g and the duality gap (a certificate of optimality)."""
    optimize = pytest.importorskip("scipy.optimize")
    B = D1 @ D2
    W = np.vstack([lam1 * D2, lam2 * np.eye(D2.shape[1])])
    Gi = np.linalg.inv(B.T @ B)

    def q(s):
        h = Gi @ (B.T @ x - W.T @ s)
        return 0.5 * (B.T @ x - W.T @ s) @ h, -W @ h

    res = optimize.minimize(q, np.zeros(W.shape[0]), jac=True, method="L-BFGS-B", bounds=[(-1, 1)] * W.shape[0],
                            options={"ftol": 1e-16, "gtol": 1e-14, "maxiter": 10**5, "maxcor": 50})
    g = Gi @ (B.T @ x - W.T @ res.x)
    return g, mlbp_objective(D1, D2, x, g, lam1, lam2) - (0.5 * x @ x - res.fun)


def ml_ista_fixed_point(D1, D2, x, lam1, lam2, mu, guess):
    """The exact solution of ML-ISTA's fixed-point conditions on the sign pattern of `guess`, certified.

    Conditions (no step t in them): with v = D2 g, w = v - mu D1^T (D1 v - x), gamma1 = S_{mu lam1}(w),
    e = (v - gamma1) / mu:  (D2^T e)_i = -lam2 sign(g_i) where g_i != 0, |D2^T e|_i <= lam2 elsewhere.
    On a fixed pattern (support and signs of gamma1 and g) they are linear in g: solve them densely, then
    check that the solution has that pattern and meets the inequalities. Returns (g, certified)."""
    m1 = D1.shape[1]
    A = np.eye(m1) - mu * D1.T @ D1  # w = A v + mu D1^T x
    w = A @ (D2 @ guess) + mu * D1.T @ x
    on1, sign1 = np.abs(w) > mu * lam1, np.sign(w)
    on2, sign2 = guess != 0, np.sign(guess)
    P1 = np.diag(on1.astype(float))
    E = np.eye(len(guess))[:, on2]
    # (1/mu) E^T D2^T [v - P1 (A v + mu D1^T x - mu lam1 sign1)] = -lam2 sign2 on the support, v = D2 E z
    lhs = E.T @ D2.T @ (np.eye(m1) - P1 @ A) @ D2 @ E / mu
    rhs = E.T @ D2.T @ P1 @ (D1.T @ x - lam1 * sign1) - lam2 * sign2[on2]
    g = E @ np.linalg.solve(lhs, rhs)
    v = D2 @ g
    w = A @ v + mu * D1.T @ x
    r = D2.T @ (v - soft(w, mu * lam1)) / mu
    certified = (np.array_equal(np.sign(g[on2]), sign2[on2]) and np.array_equal(np.sign(w[on1]), sign1[on1])
                 and (np.abs(w[on1]) > mu * lam1).all() and (np.abs(w[~on1]) <= mu * lam1).all()
                 and (np.abs(r[~on2]) <= lam2).all() and np.abs(r[on2] + lam2 * sign2[on2]).max() < 1e-12)
    return g, certified


def smoothed_problem_minimiser(D1, D2, x, lam1, lam2, mu):
    """argmin_g2 of M^mu_f(D2 g2) + lam2 ||g2||_1, f = 1/2 ||x - D1 .||^2 + lam1 ||.||_1: jointly over
    (gamma1, g2) a weighted lasso 1/2 ||x - D1 gamma1||^2 + 1/(2 mu) ||gamma1 - D2 g2||^2 + lam1 ||gamma1||_1
    + lam2 ||g2||_1, solved by sklearn's Lasso on columns rescaled by the weights."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    n, m1 = D1.shape
    m2 = D2.shape[1]
    stacked = np.block([[D1, np.zeros((n, m2))], [np.eye(m1) / np.sqrt(mu), -D2 / np.sqrt(mu)]])
    weights = np.concatenate([np.full(m1, lam1), np.full(m2, lam2)])
    target = np.concatenate([x, np.zeros(m1)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it stops at a duality gap ~1e-15 and still warns
        fit = linear_model.Lasso(alpha=1.0 / len(target), fit_intercept=False, tol=1e-15, max_iter=10**6)
        u = fit.fit(stacked / weights, target).coef_ / weights
    return u[m1:]


@pytest.mark.parametrize("t_s, layers", [(1.0, 5000), (1.9, 3000)])
def test_ml_ista_converges_to_its_certified_fixed_point(t_s, layers):
    # the header's claim: ML-ISTA converges to the solution of its fixed-point conditions (the ML-BP
    # condition with the first-layer subgradient at one ISTA step from D2 g2), for any step t; that point
    # is not the smoothed problem's minimiser (17 % apart on sample 0) and lies closer to the ML-BP optimum.
    D1, D2, X = mlbp_data()
    lam1 = lam2 = 0.02
    mu = 1.0 / np.linalg.norm(D1, 2) ** 2
    with torch.no_grad():
        g_net = unroll.load("ml_ista", layers=layers)(D1=D1, D2=D2, lam1=lam1, lam2=lam2, t_s=t_s)(
            torch.from_numpy(X))[0].numpy()
    for i, x in enumerate(X):
        g_fixed, certified = ml_ista_fixed_point(D1, D2, x, lam1, lam2, mu, g_net[i])
        assert certified
        assert rel(g_net[i], g_fixed) < 1e-10
        if t_s == 1.0:
            g_smooth = smoothed_problem_minimiser(D1, D2, x, lam1, lam2, mu)
            g_mlbp, gap = mlbp_optimum(D1, D2, x, lam1, lam2)
            assert gap < 1e-8
            assert rel(g_fixed, g_smooth) > (0.15 if i == 0 else 0.01)  # not the smoothed minimiser
            assert rel(g_fixed, g_mlbp) < 0.5 * rel(g_smooth, g_mlbp)


@pytest.mark.parametrize("hypers", [{}, {"lam1": 0.02, "lam2": 0.03, "mu_s": 0.5, "t_s": 0.8}])
def test_ml_ista_equals_numpy(hypers):
    D1, D2, X = mlbp_data(batch=3)
    h = {"lam1": 0.1, "lam2": 0.1, "mu_s": 1.0, "t_s": 1.0, **hypers}
    mu = h["mu_s"] / np.linalg.norm(D1, 2) ** 2
    t = h["t_s"] * mu / np.linalg.norm(D2, 2) ** 2
    net = unroll.load("ml_ista", layers=30)(D1=D1, D2=D2, **hypers)
    trace = net.trace(torch.from_numpy(X))
    ref = np_ml_ista(D1, D2, X, h["lam1"], h["lam2"], mu, t, 30)
    for layer in range(31):
        assert rel(trace[layer]["g2"].numpy(), ref[layer]) < 1e-10, layer
    g2, gamma1 = net(torch.from_numpy(X))
    assert rel(g2.numpy(), ref[30]) < 1e-10 and rel(gamma1.numpy(), ref[30] @ D2.T) < 1e-10  # final: D2 g2


@pytest.mark.parametrize("mu_s, t_s", [(1.0, 1.0), (0.5, 0.8)])
def test_ml_ista_reduces_to_ista_with_identity_first_layer(mu_s, t_s):
    # D1 = I, lam1 = 0: gamma1~ = D2 g2 - mu (D2 g2 - x), so (t/mu)(D2 g2 - gamma1~) = t (D2 g2 - x):
    # ISTA on g2 with dictionary D2, step t = t_s mu_s / ||D2||^2 (mu = mu_s / ||I||^2) and threshold t lam2
    _, D2, _ = mlbp_data()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((3, D2.shape[0]))
    lam2 = 0.05
    t = t_s * mu_s / np.linalg.norm(D2, 2) ** 2
    trace = unroll.load("ml_ista", layers=40)(D1=np.eye(D2.shape[0]), D2=D2, lam1=0.0, lam2=lam2, mu_s=mu_s,
                                              t_s=t_s).trace(torch.from_numpy(X))
    g = np.zeros((3, D2.shape[1]))
    for layer in range(1, 41):
        g = soft(g - t * (g @ D2.T - X) @ D2, t * lam2)
        assert rel(trace[layer]["g2"].numpy(), g) < 1e-10, layer
    if mu_s == t_s == 1.0:  # at the defaults it is exactly the shipped `ista` spec with A = D2, lam = lam2
        ista = unroll.load("ista", layers=40)(A=D2, lam=lam2).trace(torch.from_numpy(X))
        assert rel(trace[40]["g2"].numpy(), ista[40]["x"].numpy()) < 1e-10


def test_ml_ista_decreases_the_ml_bp_objective_towards_the_optimum():
    # ML-ISTA is proximal gradient on a Moreau-smoothed first layer with an approximate prox: it is not
    # a descent method for the ML-BP objective F and its fixed point is O(mu) from the ML-BP optimum.
    # Checked: F decreases (up to rises ~1e-7 F(0): late in the run F can creep up by ~1e-5 F* towards
    # the fixed point's value), the gap to the certified optimum shrinks, it ends within 0.5 % of F*
    # (defaults), and the bias shrinks roughly linearly with mu.
    D1, D2, X = mlbp_data()
    lam1 = lam2 = 0.02
    opt = []
    for x in X:
        g, gap = mlbp_optimum(D1, D2, x, lam1, lam2)
        fstar = mlbp_objective(D1, D2, x, g, lam1, lam2)
        # a certificate to 1e-7 of F* (the L-BFGS-B dual stops at 1e-10 .. 3e-8 of it, depending on the BLAS's
        # rounding, so on the machine): ample for the checks below, which compare with F* to 1e-3 .. 5e-3
        assert gap < 1e-7 * fstar
        opt.append(fstar)
    final = {}
    for mu_s, layers in ((1.0, 3000), (0.1, 20000)):
        with torch.no_grad():
            trace = unroll.load("ml_ista", layers=layers)(D1=D1, D2=D2, lam1=lam1, lam2=lam2,
                                                          mu_s=mu_s).trace(torch.from_numpy(X))
        G = torch.stack([s["g2"] for s in trace]).numpy()  # [layers + 1, batch, m2]
        for i, x in enumerate(X):
            g = G[:, i]
            F = (0.5 * np.sum((x - g @ (D1 @ D2).T) ** 2, axis=1) + lam1 * np.abs(g @ D2.T).sum(axis=1)
                 + lam2 * np.abs(g).sum(axis=1))
            assert np.diff(F).max() <= 1e-6 * F[0]
            gaps = (F[[1, 10, 100, layers]] - opt[i]) / opt[i]
            assert (np.diff(gaps) < 0).all() and gaps[-1] > -1e-7  # decreasing towards, never below, F* (to its certificate)
            assert abs(F[-1] - F[-100]) < 1e-8 * opt[i]  # converged (to the fixed point, not F*)
            final[mu_s, i] = gaps[-1]
    for i in range(len(X)):
        assert final[1.0, i] < 5e-3
        assert final[0.1, i] < 0.3 * final[1.0, i]  # O(mu) bias
