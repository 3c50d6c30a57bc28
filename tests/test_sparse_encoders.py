"""Catalog family A: sprechmann_encoder (A14) and task_driven_dl (A13).

sprechmann_encoder  defaults (tied and untied) == K ISTA steps, every layer, decoder and objective
                    included; the group (row_shrink) and low-rank (svt) variants documented in the
                    spec header, built by the one-line edits, == K proximal-gradient steps; training
                    the encoder on the unsupervised loss (the model objective at the encoder output)
                    brings the depth-K Lasso objective below K-step ISTA, towards the sklearn optimum;
                    training the dictionary too keeps its columns unit-norm and lowers the loss.
task_driven_dl      defaults == K ISTA steps on the elastic net (columns inside and outside the unit
                    ball); the deep network reaches sklearn's ElasticNet; the implicit gradient of
                    Mairal et al. (numpy) == central finite differences of the outer loss; backprop
                    through K = 2000 generated layers approaches it (and W's gradient); a short
                    training run of D and W on a synthetic regression task lowers the task loss.
"""

import os

import numpy as np
import pytest
import torch
import unroll
from reference import rel, soft

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
def np_prox_grad(D, X, lam, layers, prox):
    """K proximal-gradient (ISTA) steps z <- prox_{lam/L}(z - D^T (D z - x) / L), z^0 = 0; X batched."""
    L = np.linalg.norm(D, 2) ** 2
    z = np.zeros((X.shape[0], D.shape[1]) + X.shape[2:])
    out = [z]
    for _ in range(layers):
        z = prox(z - np.einsum("nm,bn...->bm...", D, np.einsum("nm,bm...->bn...", D, z) - X) / L, lam / L)
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
    src = open(f"{SPEC_DIR}/sprechmann_encoder.unroll").read()
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
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = net(t64(Xtr))[2].mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        z = net(t64(Xte))[0].numpy()
    f_learned = lasso_obj(D, Xte, z, lam).mean()
    f_ista = lasso_obj(D, Xte, np_prox_grad(D, Xte, lam, K, soft)[-1], lam).mean()
    f_star = lasso_obj(D, Xte, np.array([sk_lasso(D, x, lam) for x in Xte]), lam).mean()
    print(f"\nsprechmann K={K}: train loss {losses[0]:.4f} -> {losses[-1]:.4f}; test objective: "
          f"ISTA_{K} {f_ista:.4f}, learned {f_learned:.4f}, optimum {f_star:.4f}")
    assert losses[-1] < 0.85 * losses[0]
    assert f_star <= f_learned  # no code beats the optimum (sanity of the reference)
    assert f_learned < f_ista
    assert f_learned - f_star < 0.6 * (f_ista - f_star)  # measured: ~65% of ISTA's gap closed


def test_sprechmann_dictionary_training_keeps_unit_atoms():
    rng = np.random.default_rng(3)
    D_true = unit_dict(16, 32, rng)
    _, X = sparse_signals(D_true, 200, 3, rng)
    D0 = unit_dict(16, 32, rng)  # a wrong initial dictionary
    net = unroll.load("sprechmann_encoder", layers=5)(D0=D0, lam=0.1)
    opt = torch.optim.Adam(net.parameters(), lr=5e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = net(t64(X))[2].mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    Dl = net.parameter_values()["D"].detach().numpy()
    print(f"\nsprechmann with D trained: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.7 * losses[0]
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
    alpha, yhat, Db = (v.detach().numpy() for v in net(t64(X)))
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


def test_task_driven_training_lowers_the_task_loss():
    rng = np.random.default_rng(7)
    n, m, q, N, nu = 10, 20, 2, 200, 1e-3
    D_true = unit_dict(n, m, rng)
    A, X = sparse_signals(D_true, N, 3, rng)
    Y = A @ rng.standard_normal((q, m)).T
    D0 = unit_dict(n, m, rng)
    net = unroll.load("task_driven_dl", layers=30)(D0=D0, W0=0.1 * rng.standard_normal((q, m)), lam1=0.05,
                                                   lam2=0.05)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss = 0.5 * ((t64(Y) - net(t64(X))[1]) ** 2).sum(1).mean() + nu / 2 * (net.W ** 2).sum()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    Db = net(t64(X[:1]))[2].detach().numpy()
    print(f"\ntask_driven_dl training: loss {losses[0]:.4f} -> {losses[-1]:.4f}")
    assert losses[-1] < 0.5 * losses[0]
    assert rel(Db, D0) > 1e-2  # the dictionary was trained ...
    assert np.linalg.norm(Db, axis=0).max() <= 1 + 1e-12  # ... and stays in the unit ball
