"""rpca_ista (catalog D1: complex, SVT, row shrink, simultaneous update) and admm_lasso (catalog B1:
factor-once linear solve), each against an independent numpy loop written from the catalog's equations
(float64 / complex128, <= 1e-10 relative, every layer) and certified at convergence:

rpca_ista   equals numpy generalized ISTA (non-identity H1); the objective (16) never increases, with
            identity operators and with a dense H1 and a circulant PSF H2; after 1500 layers the KKT
            conditions of (16) hold (nuclear-norm and l1,2 subdifferentials, computed in numpy);
            SVT is the prox of the nuclear norm.
admm_lasso  equals numpy scaled-form ADMM (x, z, alpha, every layer) for rho in {0.3, 1, 4} and
            eta in {0.5, 1, 1.7} (at rho = eta = 1 a misplaced rho cancels); converges to sklearn's
            Lasso (alpha = lam / n_rows) with the same support and the lasso KKT conditions.
"""

from itertools import pairwise

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from reference import row_shrink as np_row_shrink
from reference import svt as np_svt

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


# ------------------------------------------------------------------ numpy references
def np_rpca(H1, H2, D, lam1, lam2, L_layers):
    mu = np.linalg.norm(np.hstack([H1, H2]), 2) ** 2
    L = np.zeros_like(D)
    S = np.zeros_like(D)
    out = [(L, S)]
    for _ in range(L_layers):
        R = H1 @ L + H2 @ S - D
        L, S = np_svt(L - H1.conj().T @ R / mu, lam1 / mu), np_row_shrink(S - H2.conj().T @ R / mu, lam2 / mu)
        out.append((L, S))
    return out


def rpca_objective(H1, H2, D, L, S, lam1, lam2):
    return (0.5 * np.linalg.norm(D - H1 @ L - H2 @ S) ** 2 + lam1 * np.linalg.svd(L, compute_uv=False).sum()
            + lam2 * np.linalg.norm(S, axis=1).sum())


def rpca_data(m=64, n=20, seed=0, complex_=True):
    rng = np.random.default_rng(seed)
    c = (lambda *s: rng.standard_normal(s) + 1j * rng.standard_normal(s)) if complex_ else rng.standard_normal
    L0 = c(m, 2) @ c(2, n)
    S0 = np.zeros((m, n), dtype=L0.dtype)
    S0[rng.choice(m, 5, replace=False)] = 3 * c(5, n)
    D = L0 + S0 + 0.01 * c(m, n)
    return L0, S0, D


def test_rpca_ista_equals_numpy_complex():
    _, _, D = rpca_data()
    m = D.shape[0]
    H1 = np.eye(m) + 0.1 * (np.random.default_rng(1).standard_normal((m, m)) + 0j)
    H2 = np.eye(m, dtype=complex)
    Net = unroll.load("rpca_ista", layers=15)
    net = Net(H1=H1, H2=H2, lam1=2.0, lam2=0.5)
    trace = net.trace(torch.from_numpy(np.stack([D, 2 * D])))
    for b, scale in enumerate((1, 2)):
        ref = np_rpca(H1, H2, scale * D, 2.0, 0.5, 15)
        for layer in (1, 5, 15):
            assert rel(trace[layer]["L"][b].detach().numpy(), ref[layer][0]) < 1e-10
            assert rel(trace[layer]["S"][b].detach().numpy(), ref[layer][1]) < 1e-10


def rpca_operators(m, rng):
    """Non-identity operators: H1 a dense complex perturbation of I, H2 the circulant matrix of a random
    complex 3-tap PSF (circular convolution along the pixel axis)."""
    def c(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    psf = np.zeros(m, dtype=complex)
    psf[:3] = c(3)
    psf[0] += 2
    H2 = np.stack([np.roll(psf, k) for k in range(m)], axis=1)  # column k = the PSF shifted by k
    H1 = np.eye(m) + 0.3 * c(m, m) / np.sqrt(m)
    return H1, H2


@pytest.mark.parametrize("operators", ["identity", "dense and psf"])
def test_rpca_ista_objective_non_increasing(operators):
    _, _, D = rpca_data()
    m = D.shape[0]
    H1, H2 = (np.eye(m, dtype=complex),) * 2 if operators == "identity" else rpca_operators(m, np.random.default_rng(2))
    Net = unroll.load("rpca_ista", layers=40)
    trace = Net(H1=H1, H2=H2, lam1=2.0, lam2=0.5).trace(torch.from_numpy(D))
    f = [rpca_objective(H1, H2, D, s["L"].detach().numpy(), s["S"].detach().numpy(), 2.0, 0.5) for s in trace]
    assert all(b <= a + 1e-9 * abs(a) for a, b in pairwise(f))
    assert f[-1] < 0.2 * f[0]  # it does descend


def test_rpca_ista_converges_to_the_optimum_kkt_certificate():
    # optimality of (L, S) for (16), checked in numpy from the subdifferentials (not from the iteration):
    #   G_L = H1^H (D - H1 L - H2 S) in lam1 d||L||_*:   L = U_r s V_r^H,  U_r^H G_L V_r = lam1 I,
    #       U_r^H G_L (I - V_r V_r^H) = 0 = (I - U_r U_r^H) G_L V_r,  ||(I - U U^H) G_L (I - V V^H)||_2 <= lam1
    #   G_S = H2^H (D - H1 L - H2 S) in lam2 d||S||_{1,2}:  G_S[i] = lam2 S[i] / ||S[i]|| on nonzero rows,
    #       ||G_S[i]|| <= lam2 on zero rows
    # measured at 1500 layers: equalities ~1e-14 relative to lam; the inequalities hold with margin
    # (0.84 lam1, 0.87 lam2); the rank (2) and the row support (3 rows) are those of the data
    rng = np.random.default_rng(5)
    m, n, lam1, lam2 = 16, 8, 4.0, 6.0
    H1, H2 = rpca_operators(m, rng)
    def c(*shape):
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    L0 = c(m, 2) @ c(2, n)
    S0 = np.zeros((m, n), dtype=complex)
    rows = rng.choice(m, 3, replace=False)
    S0[rows] = 3 * c(3, n)
    D = H1 @ L0 + H2 @ S0 + 0.05 * c(m, n)
    net = unroll.load("rpca_ista", layers=1500)(H1=H1, H2=H2, lam1=lam1, lam2=lam2)
    with torch.no_grad():
        L, S = (v.numpy() for v in net(torch.from_numpy(D)))
    R = D - H1 @ L - H2 @ S
    GL, GS = H1.conj().T @ R, H2.conj().T @ R
    U, sv, Vh = np.linalg.svd(L)
    r = int((sv > 1e-9 * sv[0]).sum())
    assert r == 2
    Ur, Vr = U[:, :r], Vh[:r].conj().T
    PU, PV = np.eye(m) - Ur @ Ur.conj().T, np.eye(n) - Vr @ Vr.conj().T
    assert np.abs(Ur.conj().T @ GL @ Vr - lam1 * np.eye(r)).max() < 1e-9 * lam1
    assert max(np.abs(Ur.conj().T @ GL @ PV).max(), np.abs(PU @ GL @ Vr).max()) < 1e-9 * lam1
    assert np.linalg.norm(PU @ GL @ PV, 2) <= 0.95 * lam1
    norms = np.linalg.norm(S, axis=1)
    on = norms > 0
    assert sorted(np.flatnonzero(on)) == sorted(rows)
    assert np.abs(GS[on] - lam2 * S[on] / norms[on, None]).max() < 1e-9 * lam2
    assert np.linalg.norm(GS[~on], axis=1).max() <= 0.95 * lam2


def test_svt_is_the_nuclear_norm_prox():
    # optimality: X - svt(X) is a subgradient of tau ||.||_* at svt(X): U V^T + W with ||W|| <= 1
    rng = np.random.default_rng(3)
    X = rng.standard_normal((8, 5))
    tau = 1.0
    P = np_svt(X, tau)
    from unroll.runtime import svt

    assert rel(svt(torch.from_numpy(X), tau).numpy(), P) < 1e-12
    G = (X - P) / tau
    assert np.linalg.norm(G, 2) <= 1 + 1e-10
    U, s, Vh = np.linalg.svd(P)
    r = (s > 1e-10).sum()
    assert np.allclose(U[:, :r].T @ G @ Vh[:r].T, np.eye(r), atol=1e-8)


# ------------------------------------------------------------------ ADMM for the lasso
def np_admm(A, y, lam, rho, eta, L):
    """Scaled-form ADMM for min 1/2||A x - y||^2 + lam||z||_1 s.t. x = z (catalog B1), z^0 = alpha^0 = 0:
    x^l = (A^T A + rho I)^-1 (A^T y + rho (z^{l-1} - alpha^{l-1})), z^l = S_{lam/rho}(x^l + alpha^{l-1}),
    alpha^l = alpha^{l-1} + eta (x^l - z^l). Rows of y are samples; returns [(x, z, alpha)] for l = 0..L."""
    m = A.shape[1]
    x = z = a = np.zeros((y.shape[0], m))
    out = [(x, z, a)]
    for _ in range(L):
        x = np.linalg.solve(A.T @ A + rho * np.eye(m), (y @ A + rho * (z - a)).T).T
        z = np.sign(x + a) * np.maximum(np.abs(x + a) - lam / rho, 0)
        a = a + eta * (x - z)
        out.append((x, z, a))
    return out


def admm_problem():
    rng = np.random.default_rng(0)
    A = rng.standard_normal((30, 60))
    xs = np.zeros((4, 60))
    for i in range(4):
        xs[i, rng.choice(60, 5, replace=False)] = rng.standard_normal(5)
    return A, xs @ A.T + 0.01 * rng.standard_normal((4, 30))


@pytest.mark.parametrize("eta", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("rho", [0.3, 1.0, 4.0])
def test_admm_lasso_equals_numpy_admm(rho, eta):
    # rho and eta away from 1: a rho or eta in the wrong place no longer cancels
    A, y = admm_problem()
    trace = unroll.load("admm_lasso", layers=20)(A=A, lam=0.05, rho=rho, eta=eta).trace(torch.from_numpy(y))
    ref = np_admm(A, y, 0.05, rho, eta, 20)
    for layer in range(1, 21):
        for key, want in zip(("x", "z", "alpha"), ref[layer]):
            assert rel(trace[layer][key].detach().numpy(), want) < 1e-10, (key, layer)
    assert 0 < np.mean(ref[-1][1] == 0) < 1  # the threshold is active


@pytest.mark.parametrize("rho, eta", [(0.3, 1.5), (1.0, 1.0), (4.0, 0.5)])
def test_admm_lasso_converges_to_the_sklearn_lasso(rho, eta):
    # catalog B1: x = z at the fixed point, which is the lasso solution. sklearn minimises
    # 1/(2 n) ||y - A w||^2 + alpha ||w||_1 with n = 30 rows, so alpha = lam / 30.
    # measured (2000 layers): |x - z| <= 1e-8, |z - sklearn| <= 2e-8, objective gap <= 2e-15
    sk = pytest.importorskip("sklearn.linear_model")
    A, y = admm_problem()
    lam = 0.05
    with torch.no_grad():
        last = unroll.load("admm_lasso", layers=2000)(A=A, lam=lam, rho=rho, eta=eta).trace(torch.from_numpy(y))[-1]
    x, z = last["x"].numpy(), last["z"].numpy()
    assert np.abs(x - z).max() < 1e-7  # primal residual -> 0
    def obj(v, i):
        return 0.5 * np.sum((A @ v - y[i]) ** 2) + lam * np.abs(v).sum()

    for i in range(4):
        ref = sk.Lasso(alpha=lam / 30, fit_intercept=False, tol=1e-14, max_iter=10**6).fit(A, y[i]).coef_
        assert abs(obj(z[i], i) - obj(ref, i)) < 1e-9 * obj(ref, i)
        assert np.abs(z[i] - ref).max() < 1e-6
        assert np.array_equal(z[i] != 0, np.abs(ref) > 1e-9)  # the same support
        # optimality of z itself: A^T (y - A z) = lam sign(z) on the support, |.| <= lam off it
        g = A.T @ (y[i] - A @ z[i])
        on = z[i] != 0
        assert np.abs(g[on] - lam * np.sign(z[i][on])).max() < 1e-6 and np.abs(g[~on]).max() <= lam * (1 + 1e-6)
