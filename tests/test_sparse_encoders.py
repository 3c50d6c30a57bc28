"""Catalog family A: sprechmann_encoder (A14) and task_driven_dl (A13).

sprechmann_encoder  defaults (tied and untied) == K ISTA steps, every layer, decoder and objective
                    included; the group (row_shrink) and low-rank (svt) variants documented in the
                    spec header, built by the one-line edits, == K proximal-gradient steps; training
                    the encoder on the unsupervised loss (the model objective at the encoder output)
                    brings the held-out depth-K Lasso objective well below K-step ISTA at its best step
                    size, towards the sklearn optimum; training the dictionary too keeps its columns
                    unit-norm and beats ISTA on the initial dictionary on held-out signals.
task_driven_dl      defaults == K ISTA steps on the elastic net (columns inside and outside the unit
                    ball); the deep network reaches sklearn's ElasticNet; the implicit gradient of
                    Mairal et al. (numpy) == central finite differences of the outer loss; backprop
                    through K = 2000 generated layers approaches it (and W's gradient); training D and
                    W end to end on a synthetic regression task beats the two-stage classical pipeline
                    (elastic-net codes at the best lam1 + a ridge-fitted head) on held-out data.
"""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import unroll
from reference import rel, soft
from training_helpers import adam, assert_beats_classical, best_on_grid

SPEC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "dsl_specs")


def unit_dict(n, m, rng, norm=1.0):
    D = rng.standard_normal((n, m))
    return norm * D / np.linalg.norm(D, axis=0)


def sparse_signals(D, batch, s, rng, noise=0.01):
    Z = np.zeros((batch, D.shape[1]))
    for i in range(batch):
        Z[i, rng.choice(D.shape[1], s, replace=False)] = rng.standard_normal(s)
    return Z, Z @ D.T + noise * rng.standard_normal((batch, D.shape[0]))


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


# ======================================================================== A14: sprechmann_encoder
def np_prox_grad(D, X, lam, layers, prox, step=1.0):
    """K proximal-gradient (ISTA) steps z <- prox_{lam s}(z - s D^T (D z - x)), s = step / L, z^0 = 0;
    X batched (step = 1: the classical 1/L)."""
    s = step / np.linalg.norm(D, 2) ** 2
    z = np.zeros((X.shape[0], D.shape[1]) + X.shape[2:])
    out = [z]
    for _ in range(layers):
        z = prox(z - s * np.einsum("nm,bn...->bm...", D, np.einsum("nm,bm...->bn...", D, z) - X), lam * s)
        out.append(z)
    return out


def lasso_obj(D, X, Z, lam):
    return 0.5 * np.sum((X - Z @ D.T) ** 2, axis=1) + lam * np.abs(Z).sum(axis=1)


@pytest.mark.parametrize("untie", [None, "Wt,We,theta"])
def test_sprechmann_defaults_equal_ista(untie):
    rng = np.random.default_rng(0)
    D = unit_dict(20, 50, rng)
    _, X = sparse_signals(D, 4, 4, rng)
    lam, K = 0.05, 12
    net = unroll.load("sprechmann_encoder", layers=K, untie=untie)(D0=D, lam=lam)
    trace = net.trace(t64(X))
    ref = np_prox_grad(D, X, lam, K, soft)
    for layer in range(K + 1):
        assert rel(trace[layer]["z"].detach().numpy(), ref[layer]) < 1e-10, layer
    z, xhat, obj = (v.detach().numpy() for v in net(t64(X)))
    assert rel(z, ref[-1]) < 1e-10
    assert rel(xhat, ref[-1] @ D.T) < 1e-10  # the decoder x^ = D z^K
    assert rel(obj, lasso_obj(D, X, ref[-1], lam)) < 1e-10  # the unsupervised loss per sample


def row_shrink(V, t):
    nrm = np.linalg.norm(V, axis=-1, keepdims=True)
    return V * np.maximum(0, 1 - t / np.maximum(nrm, 1e-300))


def svt(V, t):
    U, s, Vt = np.linalg.svd(V, full_matrices=False)
    return (U * np.maximum(s - t, 0)[..., None, :]) @ Vt


def variant_spec(tmp_path, prox):
    """The header's recipe: matrix codes z : real[m, T], a scalar threshold, and the prox swapped."""
    src = Path(f"{SPEC_DIR}/sprechmann_encoder.unroll").read_text()
    edits = [("dims  n, m\n", "dims  n, m, T\n"), ("input x : real[n] ", "input x : real[n, T]"),
             ("state z : real[m] = 0", "state z : real[m, T] = 0"),
             ("param theta : real[m]    =", "param theta : real       ="),
             ("z = soft(Wt @ z + We @ x, theta)", f"z = {prox}(Wt @ z + We @ x, theta)")]
    if prox == "row_shrink":
        edits.append(("lam * sum(abs(z))", "lam * sum(norm(z, 1))"))
    else:
        edits += [("    let obj = 0.5 * norm(x - xhat)^2 + lam * sum(abs(z))\n", ""),
                  ("output z, xhat, obj", "output z, xhat")]
    for old, new in edits:
        assert src.count(old) == 1, old  # the spec still has the lines the recipe edits
        src = src.replace(old, new)
    path = tmp_path / f"sprechmann_{prox}.unroll"
    path.write_text(src)
    return str(path)


@pytest.mark.parametrize("prox", ["row_shrink", "svt"])
def test_sprechmann_group_and_low_rank_variants_equal_proximal_gradient(tmp_path, prox):
    rng = np.random.default_rng(1)
    D = unit_dict(12, 24, rng)
    X = rng.standard_normal((3, 12, 5))  # T = 5 signals per sample
    lam, K = 2.0, 8
    net = unroll.load(variant_spec(tmp_path, prox), layers=K)(D0=D, lam=lam)
    trace = net.trace(t64(X))
    ref = np_prox_grad(D, X, lam, K, row_shrink if prox == "row_shrink" else svt)
    for layer in range(K + 1):
        assert rel(trace[layer]["z"].detach().numpy(), ref[layer]) < 1e-10, layer
    out = [v.detach().numpy() for v in net(t64(X))]
    assert rel(out[1], np.einsum("nm,bmt->bnt", D, ref[-1])) < 1e-10
    if prox == "row_shrink":  # joint (row) sparsity, and the group-norm objective
        nz_rows = [(np.linalg.norm(z, axis=-1) > 0).sum() for z in ref[-1]]
        assert min(nz_rows) > 0 and max(nz_rows) < 24
        obj = 0.5 * np.sum((X - np.einsum("nm,bmt->bnt", D, ref[-1])) ** 2, axis=(1, 2)) \
            + lam * np.linalg.norm(ref[-1], axis=-1).sum(axis=1)
        assert rel(out[2], obj) < 1e-10
    else:  # low rank: the codes have fewer than min(m, T) nonzero singular values
        ranks = [np.sum(np.linalg.svd(z, compute_uv=False) > 1e-12) for z in ref[-1]]
        assert max(ranks) < 5 and min(ranks) > 0


def sk_lasso(D, x, lam):
    sk = pytest.importorskip("sklearn.linear_model")
    return sk.Lasso(alpha=lam / D.shape[0], fit_intercept=False, tol=1e-12, max_iter=10**6).fit(D, x).coef_


def test_sprechmann_unsupervised_training_beats_ista_at_the_same_depth():
    rng = np.random.default_rng(2)
    n, m, K, lam = 20, 50, 5, 0.1
    D = unit_dict(n, m, rng)
    _, Xtr = sparse_signals(D, 1000, 4, rng)
    _, Xte = sparse_signals(D, 40, 4, rng)
    # the model (D) is given: train the encoder only, on the unsupervised loss
    net = unroll.load("sprechmann_encoder", layers=K, freeze="D")(D0=D, lam=lam)
    with torch.no_grad():  # untrained: K ISTA steps with step 1/L
        assert rel(net(t64(Xte))[0].numpy(), np_prox_grad(D, Xte, lam, K, soft)[-1]) < 1e-10
    losses = adam(net.parameters(), lambda: net(t64(Xtr))[2].mean(), 100, 1e-2)
    with torch.no_grad():
        z = net(t64(Xte))[0].numpy()
    f_star = lasso_obj(D, Xte, np.array([sk_lasso(D, x, lam) for x in Xte]), lam).mean()
    # held-out excess objective over the optimum; classical: K ISTA steps with the best step c / L
    f_learned = lasso_obj(D, Xte, z, lam).mean() - f_star
    f_ista, c, _ = best_on_grid(lambda c: lasso_obj(D, Xte, np_prox_grad(D, Xte, lam, K, soft, c)[-1], lam).mean()
                                - f_star, (0.5, 1.0, 1.5, 1.9, 2.2))
    print(f"\nsprechmann K={K}: train loss {losses[0]:.4f} -> {losses[-1]:.4f}; held-out excess objective: "
          f"ISTA_{K} (step {c}/L) {f_ista:.4f}, learned {f_learned:.4f}")
    assert f_learned >= 0  # no code beats the optimum (sanity of the reference)
    assert_beats_classical(f_learned, f_ista, 0.6, "sprechmann_encoder, excess lasso objective")


def test_sprechmann_dictionary_training_keeps_unit_atoms():
    rng = np.random.default_rng(3)
    D_true = unit_dict(16, 32, rng)
    _, X = sparse_signals(D_true, 200, 3, rng)
    _, Xte = sparse_signals(D_true, 100, 3, rng)
    D0 = unit_dict(16, 32, rng)  # a wrong initial dictionary
    lam, K = 0.1, 5
    net = unroll.load("sprechmann_encoder", layers=K)(D0=D0, lam=lam)
    with torch.no_grad():  # untrained: K ISTA steps on D0 with step 1/L
        assert rel(net(t64(Xte))[0].numpy(), np_prox_grad(D0, Xte, lam, K, soft)[-1]) < 1e-10
    losses = adam(net.parameters(), lambda: net(t64(X))[2].mean(), 40, 5e-3)
    Dl = net.parameter_values()["D"].detach().numpy()
    with torch.no_grad():
        learned = net(t64(Xte))[2].mean().item()
    # held-out model objective; classical: K ISTA steps on the initial dictionary with the best step
    ista, c, _ = best_on_grid(lambda c: lasso_obj(D0, Xte, np_prox_grad(D0, Xte, lam, K, soft, c)[-1], lam).mean(),
                              (0.5, 1.0, 1.5, 1.9, 2.2))
    print(f"\nsprechmann with D trained: loss {losses[0]:.4f} -> {losses[-1]:.4f}; held-out objective "
          f"ISTA_{K} (step {c}/L) {ista:.4f}, learned {learned:.4f}")
    assert_beats_classical(learned, ista, 0.8, "sprechmann_encoder with D trained, held-out objective")
    assert rel(Dl, D0) > 1e-3  # the dictionary moved ...
    assert np.abs(np.linalg.norm(Dl, axis=0) - 1).max() < 1e-12  # ... and its atoms stayed unit-norm


# ======================================================================== A13: task_driven_dl
def ball(D):
    return D / np.maximum(1, np.linalg.norm(D, axis=0))


def np_enet_ista(D, X, lam1, lam2, layers):
    Db = ball(D)
    L = np.linalg.norm(Db, 2) ** 2 + lam2
    a = np.zeros((X.shape[0], D.shape[1]))
    out = [a]
    for _ in range(layers):
        a = soft(a - ((a @ Db.T - X) @ Db + lam2 * a) / L, lam1 / L)
        out.append(a)
    return out


def enet_exact(D, x, lam1, lam2, a0=None, iters=3000):
    """alpha*(x, D): ISTA, then the exact active-set solve on its support; the KKT conditions are
    checked, so the result is the minimiser to rounding (independent of the generated module)."""
    m = D.shape[1]
    L = np.linalg.norm(D, 2) ** 2 + lam2
    a = np.zeros(m) if a0 is None else a0.copy()
    for _ in range(iters):
        a = soft(a - (D.T @ (D @ a - x) + lam2 * a) / L, lam1 / L)
    S, s = np.flatnonzero(a), np.sign(a)
    a = np.zeros(m)
    a[S] = np.linalg.solve(D[:, S].T @ D[:, S] + lam2 * np.eye(len(S)), D[:, S].T @ x - lam1 * s[S])
    g = D.T @ (x - D @ a) - lam2 * a  # KKT: g = lam1 sign(a) on the support, |g| <= lam1 off it
    assert np.all(np.sign(a[S]) == s[S])
    assert np.abs(g[S] - lam1 * s[S]).max() < 1e-12
    off = np.setdiff1d(np.arange(m), S)
    assert np.abs(g[off]).max() < lam1 * (1 - 1e-6)  # strict: the support is stable under small changes
    return a, S


def tdl_problem(seed, N=4, n=10, m=20, q=2, col_norm=0.9):
    """The catalog's setup: n = 10, m = 20, squared task loss; columns strictly inside the unit ball
    (so the ball reparametrisation is the identity near D and finite differences see D itself)."""
    rng = np.random.default_rng(seed)
    D = unit_dict(n, m, rng, col_norm)
    A, X = sparse_signals(D, N, 3, rng, noise=0.05)
    W = rng.standard_normal((q, m)) / np.sqrt(m)
    Y = A @ rng.standard_normal((q, m)).T + 0.05 * rng.standard_normal((N, q))
    return D, W, X, Y


@pytest.mark.parametrize("col_norm", [0.9, 1.5])  # inside the ball, and outside (then Db = D / ||d_j||)
def test_task_driven_defaults_equal_elastic_net_ista(col_norm):
    D, W, X, _ = tdl_problem(4, col_norm=col_norm)
    lam1, lam2, K = 0.1, 0.05, 25
    net = unroll.load("task_driven_dl", layers=K)(D0=D, W0=W, lam1=lam1, lam2=lam2)
    trace = net.trace(t64(X))
    ref = np_enet_ista(D, X, lam1, lam2, K)
    for layer in range(K + 1):
        assert rel(trace[layer]["alpha"].detach().numpy(), ref[layer]) < 1e-10, layer
    _alpha, yhat, Db = (v.detach().numpy() for v in net(t64(X)))
    assert rel(yhat, ref[-1] @ W.T) < 1e-10
    assert rel(Db, ball(D)) < 1e-14
    assert np.linalg.norm(Db, axis=0).max() <= 1 + 1e-12


def test_task_driven_deep_network_reaches_sklearn_elastic_net():
    sk = pytest.importorskip("sklearn.linear_model")
    D, W, X, _ = tdl_problem(5)
    lam1, lam2, n = 0.1, 0.05, D.shape[0]
    with torch.no_grad():
        net = unroll.load("task_driven_dl", layers=3000)(D0=D, W0=W, lam1=lam1, lam2=lam2)
        alpha = net(t64(X))[0].numpy()
    for i in range(X.shape[0]):
        # sklearn: 1/(2n)||x - D a||^2 + a r ||a||_1 + a (1 - r)/2 ||a||^2: a r = lam1/n, a (1 - r) = lam2/n
        ref = sk.ElasticNet(alpha=(lam1 + lam2) / n, l1_ratio=lam1 / (lam1 + lam2), fit_intercept=False,
                            tol=1e-14, max_iter=10**6).fit(D, X[i]).coef_
        assert np.abs(alpha[i] - ref).max() < 1e-9
        assert np.abs(alpha[i] - enet_exact(D, X[i], lam1, lam2)[0]).max() < 1e-10


def outer_loss(D, W, X, Y, lam1, lam2, A0=None):
    A = [enet_exact(D, x, lam1, lam2, None if A0 is None else A0[i], 20 if A0 is not None else 3000)[0]
         for i, x in enumerate(X)]
    return 0.5 * sum(np.sum((y - W @ a) ** 2) for y, a in zip(Y, A)), np.array(A)


def implicit_grads(D, W, X, Y, lam1, lam2):
    """Mairal et al. [68], Prop. 1 (catalog A13): beta_Lambda = (D_L^T D_L + lam2 I)^{-1} grad_a l_s,
    beta = 0 off the support; grad_D = -D beta a^T + (x - D a) beta^T; grad_W = -(y - W a) a^T."""
    gD, gW = np.zeros_like(D), np.zeros_like(W)
    for x, y in zip(X, Y):
        a, S = enet_exact(D, x, lam1, lam2)
        g_a = -W.T @ (y - W @ a)
        beta = np.zeros_like(a)
        beta[S] = np.linalg.solve(D[:, S].T @ D[:, S] + lam2 * np.eye(len(S)), g_a[S])
        gD += -np.outer(D @ beta, a) + np.outer(x - D @ a, beta)
        gW += -np.outer(y - W @ a, a)
    return gD, gW


def test_task_driven_implicit_gradient_matches_finite_differences():
    D, W, X, Y = tdl_problem(6)
    lam1, lam2, h = 0.2, 0.05, 1e-6
    gD, _ = implicit_grads(D, W, X, Y, lam1, lam2)
    _, A = outer_loss(D, W, X, Y, lam1, lam2)
    assert 0 < (A != 0).sum(axis=1).min() and (A != 0).sum(axis=1).max() < D.shape[0]  # proper supports
    fd = np.zeros_like(D)
    for i in range(D.shape[0]):
        for j in range(D.shape[1]):
            E = np.zeros_like(D)
            E[i, j] = h
            fd[i, j] = (outer_loss(D + E, W, X, Y, lam1, lam2, A)[0]
                        - outer_loss(D - E, W, X, Y, lam1, lam2, A)[0]) / (2 * h)
    err = np.linalg.norm(gD - fd) / np.linalg.norm(fd)
    print(f"\ntask_driven_dl: implicit grad_D vs central differences: rel err {err:.2e}")
    assert err < 1e-4


def test_task_driven_backprop_through_many_layers_approaches_the_implicit_gradient():
    D, W, X, Y = tdl_problem(6)
    lam1, lam2 = 0.2, 0.05
    gD, gW = implicit_grads(D, W, X, Y, lam1, lam2)
    errs = {}
    for K in (100, 2000):
        net = unroll.load("task_driven_dl", layers=K)(D0=D, W0=W, lam1=lam1, lam2=lam2)
        yhat = net(t64(X))[1]
        (0.5 * ((t64(Y) - yhat) ** 2).sum()).backward()
        errs[K] = (np.linalg.norm(net.D.grad.numpy() - gD) / np.linalg.norm(gD),
                   np.linalg.norm(net.W.grad.numpy() - gW) / np.linalg.norm(gW))
    print("\ntask_driven_dl: backprop vs implicit gradient, rel err (D, W): "
          + ", ".join(f"K={K}: {e[0]:.1e}, {e[1]:.1e}" for K, e in errs.items()))
    assert errs[2000][0] < 1e-8 and errs[2000][1] < 1e-8  # measured ~3e-15
    assert errs[2000][0] < errs[100][0]  # the unrolled gradient converges to the implicit one


def test_task_driven_training_beats_elastic_net_codes_with_a_fitted_head():
    # classical (two-stage) baseline at the same depth: K elastic-net ISTA steps on the initial dictionary,
    # then the task weights W fitted to the training codes by ridge regression (closed form, same nu),
    # with the best lam1 of the grid on the held-out set. The network starts from that baseline (its
    # lam1 and fitted W) and training D and W end to end must improve the held-out task loss.
    rng = np.random.default_rng(7)
    n, m, q, N, nu, K, lam2 = 10, 20, 2, 1000, 1e-3, 30, 0.05
    D_true = unit_dict(n, m, rng)
    B = rng.standard_normal((q, m))
    A, X = sparse_signals(D_true, N, 3, rng)
    Ate, Xte = sparse_signals(D_true, N, 3, rng)
    Y, Yte = A @ B.T, Ate @ B.T
    D0 = unit_dict(n, m, rng)

    def ridge_head(lam1):
        codes = np_enet_ista(D0, X, lam1, lam2, K)[-1]
        return np.linalg.solve(codes.T @ codes / N + nu * np.eye(m), codes.T @ Y / N).T

    def two_stage(lam1):
        return 0.5 * ((np_enet_ista(D0, Xte, lam1, lam2, K)[-1] @ ridge_head(lam1).T - Yte) ** 2).sum(1).mean()

    classical, lam1, _ = best_on_grid(two_stage, (0.01, 0.02, 0.05, 0.1, 0.2))
    net = unroll.load("task_driven_dl", layers=K)(D0=D0, W0=ridge_head(lam1), lam1=lam1, lam2=lam2)
    with torch.no_grad():  # untrained: the two-stage pipeline itself
        assert rel(0.5 * ((net(t64(Xte))[1].numpy() - Yte) ** 2).sum(1).mean(), classical) < 1e-10

    def task_loss():
        return 0.5 * ((t64(Y) - net(t64(X))[1]) ** 2).sum(1).mean() + nu / 2 * (net.W ** 2).sum()

    losses = adam(net.parameters(), task_loss, 40, 1e-2)
    Db = net(t64(X[:1]))[2].detach().numpy()
    with torch.no_grad():
        learned = 0.5 * ((net(t64(Xte))[1].numpy() - Yte) ** 2).sum(1).mean()
    print(f"\ntask_driven_dl training: loss {losses[0]:.4f} -> {losses[-1]:.4f}; held-out task loss: "
          f"elastic net + ridge head (lam1 {lam1}) {classical:.4f}, learned {learned:.4f}")
    assert_beats_classical(learned, classical, 0.8, "task_driven_dl, held-out task loss")
    assert rel(Db, D0) > 1e-2  # the dictionary was trained ...
    assert np.linalg.norm(Db, axis=0).max() <= 1 + 1e-12  # ... and stays in the unit ball
