"""Independent numpy (float64) reference implementations of the Family A algorithms.

This module is the ground truth that the generated PyTorch networks are compared
against (relative error 1e-10).  It deliberately imports no torch and shares no
code with ``compiler/`` or ``runtime/``.  Equations follow /work/shared/ALGORITHMS.md
(§1 conventions, §2 errata, entries A1-A8 and A15).

Layout conventions used throughout
----------------------------------
* Batches are row-major: ``y`` has shape [B, n] and every iterate ``x`` has shape
  [B, m]; each row is one sample.  (The catalog writes column vectors, so the
  catalog's ``A x`` is ``x @ A.T`` here and ``A^T r`` is ``r @ A``.)
* ``A`` is the dictionary / measurement matrix of shape [n, m] (the catalog's W or D).
* Iterative algorithms return the full list of iterates ``[x^0, x^1, ..., x^L]``
  so that tests can compare every layer; ``x^0`` is always zero.
* Per-layer parameters: a matrix given with one extra leading axis of length L
  (e.g. We of shape [L, m, n]) is indexed by layer; a threshold / step is per
  layer when it is 1-D of length L (see ``_layer_vec``).
"""

from __future__ import annotations

import math

import numpy as np

# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def _as_batch(y):
    """Return y as a float/complex 2-D array [B, n] (a 1-D y becomes one row)."""
    y = np.asarray(y)
    if not np.iscomplexobj(y):
        y = y.astype(np.float64)
    return y[None, :] if y.ndim == 1 else y


def _layer_mat(W, l, base_ndim=2):
    """Layer-l slice of a matrix parameter: shared if W.ndim == base_ndim, else W[l]."""
    W = np.asarray(W)
    if W.ndim == base_ndim:
        return W
    if W.ndim == base_ndim + 1:
        return W[l]
    raise ValueError(f"expected a {base_ndim}-D (shared) or {base_ndim + 1}-D (per-layer) array, "
                     f"got shape {W.shape}")


def _layer_vec(p, l, L, m):
    """Layer-l value of a threshold-like parameter.

    Accepted shapes: scalar (shared), [m] (shared per-coordinate), [L] (per-layer
    scalar), [L, m] (per-layer per-coordinate).  A 1-D array whose length equals
    both L and m is ambiguous and is rejected: pass it as [1, m]-tiled [L, m] or
    [L, 1] instead.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        return p
    if p.ndim == 1:
        if len(p) == L and len(p) == m:
            raise ValueError("1-D parameter of length L == m is ambiguous; use shape [L, 1] "
                             "(per-layer scalar) or [L, m] (per-layer vector)")
        if len(p) == L:
            return p[l]
        if len(p) == m:
            return p
        raise ValueError(f"1-D parameter of length {len(p)} matches neither L={L} nor m={m}")
    if p.ndim == 2 and p.shape[0] == L:
        return p[l]  # [L, m] or [L, 1]; broadcasts against [B, m]
    raise ValueError(f"bad parameter shape {p.shape}")


def _layer_scalar(p, l, L):
    """Layer-l value of a scalar-per-layer parameter: scalar (shared) or a length-L sequence."""
    p = np.asarray(p, dtype=np.float64)
    if p.ndim == 0:
        return float(p)
    if p.shape == (L,):
        return float(p[l])
    raise ValueError(f"expected a scalar or a length-{L} sequence, got shape {p.shape}")


def _spectral_sq(A):
    """Squared spectral norm ||A||_2^2 (default step constant mu)."""
    return float(np.linalg.norm(A, 2) ** 2)


# ----------------------------------------------------------------------------
# Thresholding operators (catalog §1, A5, A7)
# ----------------------------------------------------------------------------

def soft(v, theta):
    """Soft threshold S_theta(v), elementwise; theta is a scalar or broadcastable array.

    Real v:    sign(v) * max(|v| - theta, 0).
    Complex v: v/|v| * max(|v| - theta, 0), and 0 where v == 0.
    """
    v = np.asarray(v)
    theta = np.asarray(theta, dtype=np.float64)
    if np.iscomplexobj(v):
        mag = np.abs(v)
        shrunk = np.maximum(mag - theta, 0.0)
        safe = np.where(mag > 0, mag, 1.0)  # avoid 0/0; the result is 0 there anyway
        return np.where(mag > 0, v / safe * shrunk, 0.0 + 0.0j)
    return np.sign(v) * np.maximum(np.abs(v) - theta, 0.0)


def soft_nonneg(v, theta):
    """One-sided soft threshold S+_theta(v) = max(v - theta, 0) = ReLU(v - theta)."""
    return np.maximum(np.asarray(v, dtype=np.float64) - theta, 0.0)


def hard(v, theta):
    """Hard threshold by value: keep v_i where |v_i| > theta, zero elsewhere."""
    v = np.asarray(v)
    return np.where(np.abs(v) > theta, v, np.zeros_like(v))


def _topk_mask(v, k):
    """Boolean mask [B, m] of the k largest |v| per row; ties broken by lowest index.

    A stable argsort of -|v| lists equal magnitudes in increasing index order, so
    the first k positions are exactly the catalog's 'ties broken by index' set.
    """
    v2 = _as_batch(v)
    B, m = v2.shape
    k = int(min(max(k, 0), m))
    order = np.argsort(-np.abs(v2), axis=1, kind="stable")
    mask = np.zeros((B, m), dtype=bool)
    np.put_along_axis(mask, order[:, :k], True, axis=1)
    return mask.reshape(np.shape(v))


def hard_topk(v, k):
    """H_k(v): per row of [B, m] (or for a 1-D v), keep the k largest |v_i|, zero the rest.

    Ties are broken by lowest index (stable argsort on -|v|).  k is clamped to [0, m].
    """
    v = np.asarray(v)
    return np.where(_topk_mask(v, k), v, np.zeros_like(v))


def ss_count(p, m):
    """Size of the LISTA-CPSS support-selection set: ceil(p*m), clamped to [0, m].

    The product is rounded up with a relative tolerance of 1e-6: ``ceil(p*m*(1 - 1e-6))``.
    Without it the count depends on rounding: 0.012 * 3 is 0.036000000000000004 in
    float64 (count 19 instead of 18 for m = 500), and float32(0.012) * 500 is
    6.00000005 (count 7 instead of 6).  The runtime uses the same rule, so float32
    and float64 networks select the same support.
    """
    return int(min(max(math.ceil(p * m * (1 - 1e-6)), 0), m))


def ss_soft(v, theta, p):
    """Support-selection threshold eta^ss_{theta,p} of LISTA-CPSS (catalog A7).

    Per row, let S be the ceil(p*m) entries of largest |v| (ties: lowest index).
      i in S and |v_i| > theta      -> v_i            (passes unchanged)
      i not in S and |v_i| > theta  -> soft(v_i, theta)
      |v_i| <= theta                -> 0
    theta is a scalar or broadcastable array (e.g. [m]).  With p = 0 this is soft().
    """
    v = np.asarray(v, dtype=np.float64)
    in_top = _topk_mask(v, ss_count(p, v.shape[-1]))
    keep = in_top & (np.abs(v) > theta)
    return np.where(keep, v, soft(v, theta))


# ----------------------------------------------------------------------------
# Classical algorithms and their unrolled (untrained-default) forms
# ----------------------------------------------------------------------------

def ista(A, y, lam, L, mu=None):
    """ISTA (A1, threshold lam/mu per §2.1): x^{l+1} = soft(x^l - A^T(A x^l - y)/mu, lam/mu)."""
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    mu = _spectral_sq(A) if mu is None else float(mu)
    x = np.zeros((y.shape[0], A.shape[1]))
    xs = [x]
    for _ in range(L):
        grad = (x @ A.T - y) @ A          # A^T (A x - y), row-wise
        x = soft(x - grad / mu, lam / mu)
        xs.append(x)
    return xs


def fista(A, y, lam, L, mu=None):
    """FISTA (A2): x^{l+1} = soft(v^l - A^T(A v^l - y)/mu, lam/mu),
    t_{l+1} = (1 + sqrt(1 + 4 t_l^2))/2, v^{l+1} = x^{l+1} + (t_l - 1)/t_{l+1} (x^{l+1} - x^l),
    with t_0 = 1 and v^0 = x^0 = 0.  Returns [x^0, ..., x^L].
    """
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    mu = _spectral_sq(A) if mu is None else float(mu)
    x = np.zeros((y.shape[0], A.shape[1]))
    v = x
    t = 1.0
    xs = [x]
    for _ in range(L):
        x_new = soft(v - (v @ A.T - y) @ A / mu, lam / mu)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        v = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
        xs.append(x)
    return xs


def lista(We, Wt, theta, y, L):
    """LISTA (A3): x^{l+1} = soft(Wt^l x^l + We^l y, theta^l), x^0 = 0.

    We: [m, n] shared or [L, m, n] per layer.  Wt: [m, m] or [L, m, m].
    theta: scalar, [m], [L] or [L, m] (see _layer_vec).
    """
    y = _as_batch(y)
    m = np.asarray(We).shape[-2]
    x = np.zeros((y.shape[0], m))
    xs = [x]
    for l in range(L):
        We_l, Wt_l = _layer_mat(We, l), _layer_mat(Wt, l)
        x = soft(x @ Wt_l.T + y @ We_l.T, _layer_vec(theta, l, L, m))
        xs.append(x)
    return xs


def lista_cp(A, We, theta, y, L):
    """LISTA-CP (A6): x^{l+1} = soft(x^l + We^l (y - A x^l), theta^l), x^0 = 0.

    We: [m, n] shared or [L, m, n].  theta: scalar, [m], [L] or [L, m].
    """
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    m = A.shape[1]
    x = np.zeros((y.shape[0], m))
    xs = [x]
    for l in range(L):
        We_l = _layer_mat(We, l)
        x = soft(x + (y - x @ A.T) @ We_l.T, _layer_vec(theta, l, L, m))
        xs.append(x)
    return xs


def cpss_schedule(p, pmax, L):
    """Support-selection schedule of [24]: p^l = min(p*(l+1), pmax), l = 0..L-1 (Python floats)."""
    return [min(p * (l + 1), pmax) for l in range(L)]


def lista_cpss(A, We, theta, p_schedule, y, L):
    """LISTA-CPSS (A7): x^{l+1} = ss_soft(x^l + We^l (y - A x^l), theta^l, p^l), x^0 = 0.

    p_schedule: a scalar (same p every layer) or a length-L sequence (e.g. cpss_schedule).
    """
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    m = A.shape[1]
    x = np.zeros((y.shape[0], m))
    xs = [x]
    for l in range(L):
        We_l = _layer_mat(We, l)
        v = x + (y - x @ A.T) @ We_l.T
        x = ss_soft(v, _layer_vec(theta, l, L, m), _layer_scalar(p_schedule, l, L))
        xs.append(x)
    return xs


def alista_weight(A):
    """Analytic ALISTA weight W~ (A8), shape [n, m]: w_i = G^{-1} a_i / (a_i^T G^{-1} a_i), G = A A^T.

    Requires A (n x m) to have full row rank.
    """
    A = np.asarray(A, dtype=np.float64)
    GinvA = np.linalg.solve(A @ A.T, A)          # columns G^{-1} a_i
    denom = np.einsum("ij,ij->j", A, GinvA)       # a_i^T G^{-1} a_i
    return GinvA / denom[None, :]


def alista(A, Wa, gamma, theta, p_schedule, y, L):
    """ALISTA (A8): x^{l+1} = ss_soft(x^l - gamma^l Wa^T (A x^l - y), theta^l, p^l), x^0 = 0.

    Wa: [n, m] (e.g. alista_weight(A)).  gamma: scalar or [L].  theta: scalar, [m], [L]
    or [L, m].  p_schedule: scalar or length-L sequence.
    """
    A = np.asarray(A, dtype=np.float64)
    Wa = np.asarray(Wa, dtype=np.float64)
    y = _as_batch(y)
    m = A.shape[1]
    x = np.zeros((y.shape[0], m))
    xs = [x]
    for l in range(L):
        v = x - _layer_scalar(gamma, l, L) * ((x @ A.T - y) @ Wa)   # Wa^T r, row-wise
        x = ss_soft(v, _layer_vec(theta, l, L, m), _layer_scalar(p_schedule, l, L))
        xs.append(x)
    return xs


def iht(A, y, k, L, mu=None):
    """Classical IHT (A5): x^{l+1} = H_k(x^l + A^T (y - A x^l)/mu), x^0 = 0, mu default ||A||_2^2."""
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    mu = _spectral_sq(A) if mu is None else float(mu)
    x = np.zeros((y.shape[0], A.shape[1]))
    xs = [x]
    for _ in range(L):
        x = hard_topk(x + (y - x @ A.T) @ A / mu, k)
        xs.append(x)
    return xs


def lista_iht(We, Wt, k, y, L):
    """Unrolled IHT (A5, eq. 32): x^{l+1} = H_k(Wt^l x^l + We^l y), x^0 = 0; We/Wt shared or per layer."""
    y = _as_batch(y)
    m = np.asarray(We).shape[-2]
    x = np.zeros((y.shape[0], m))
    xs = [x]
    for l in range(L):
        x = hard_topk(x @ _layer_mat(Wt, l).T + y @ _layer_mat(We, l).T, k)
        xs.append(x)
    return xs


def cod(A, y, lam, L):
    """Gregor-LeCun coordinate descent (A4); A should have unit-norm columns.

    S = I - A^T A, B^0 = A^T y, z^0 = 0.  Per sample and step:
      zbar = soft(B, lam); k = argmax_j |zbar_j - z_j| (np.argmax: lowest index on ties);
      B += S[:, k] (zbar_k - z_k); z_k = zbar_k.
    Returns a dict:
      'z': [z^0, ..., z^L]   each [B, m]
      'B': [B^0, ..., B^L]   each [B, m]
      'k': [k^0, ..., k^{L-1}] selected coordinate per sample, each int array [B]
      'x': soft(B^L, lam), the final output, [B, m]
    """
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    m = A.shape[1]
    S = np.eye(m) - A.T @ A
    rows = np.arange(y.shape[0])
    Bv = y @ A
    z = np.zeros((y.shape[0], m))
    zs, Bs, ks = [z], [Bv], []
    for _ in range(L):
        zbar = soft(Bv, lam)
        k = np.argmax(np.abs(zbar - z), axis=1)
        delta = zbar[rows, k] - z[rows, k]             # [B]
        Bv = Bv + S[:, k].T * delta[:, None]           # S[:, k_b] for each sample b
        z = z.copy()
        z[rows, k] = zbar[rows, k]
        zs.append(z)
        Bs.append(Bv)
        ks.append(k)
    return {"z": zs, "B": Bs, "k": ks, "x": soft(Bv, lam)}


def amp(A, y, alpha, L):
    """Approximate message passing for the lasso (A15), with A of shape [rows, cols].

    With M = A.shape[0] (the catalog's m), x^0 = 0 and z^{-1} = 0, for t = 0..L-1:
      z^t     = y - A x^t + z^{t-1} * ||x^t||_0 / M
      x^{t+1} = soft(x^t + A^T z^t, alpha * ||z^t||_2 / sqrt(M))
    ||.||_0 and ||.||_2 are per sample (per row).  Returns a dict
      'x': [x^0, ..., x^L]      each [B, cols]
      'z': [z^0, ..., z^{L-1}]  each [B, rows]
      'theta': [theta_0, ..., theta_{L-1}] per-sample thresholds, each [B]
    """
    A = np.asarray(A, dtype=np.float64)
    y = _as_batch(y)
    M = A.shape[0]
    x = np.zeros((y.shape[0], A.shape[1]))
    z = np.zeros_like(y)                                  # z^{-1}
    xs, zs, thetas = [x], [], []
    for _ in range(L):
        l0 = np.count_nonzero(x, axis=1).astype(np.float64)   # ||x^t||_0 per sample
        z = y - x @ A.T + z * (l0 / M)[:, None]
        theta = alpha * np.linalg.norm(z, axis=1) / math.sqrt(M)
        x = soft(x + z @ A, theta[:, None])
        zs.append(z)
        thetas.append(theta)
        xs.append(x)
    return {"x": xs, "z": zs, "theta": thetas}


# ----------------------------------------------------------------------------
# Objectives and diagnostics
# ----------------------------------------------------------------------------

def lasso_objective(A, y, x, lam):
    """Per-sample lasso objective 0.5 ||y - A x||^2 + lam ||x||_1, shape [B]."""
    y, x = _as_batch(y), _as_batch(x)
    r = y - x @ np.asarray(A).T
    return 0.5 * np.sum(r * r, axis=1) + lam * np.sum(np.abs(x), axis=1)


def lasso_kkt_residual(A, y, x, lam):
    """Lasso optimality violations over the whole batch, as a pair of floats.

    g = A^T (y - A x).  Returns
      (max over x_i != 0 of |g_i - lam sign(x_i)|,   # on-support stationarity
       max over x_i == 0 of max(|g_i| - lam, 0))     # off-support subgradient bound
    An empty set contributes 0.
    """
    y, x = _as_batch(y), _as_batch(x)
    g = (y - x @ np.asarray(A).T) @ np.asarray(A)
    on = x != 0
    on_viol = np.abs(g - lam * np.sign(x))[on]
    off_viol = np.maximum(np.abs(g) - lam, 0.0)[~on]
    return (float(on_viol.max(initial=0.0)), float(off_viol.max(initial=0.0)))


def nmse_db(x_hat, x):
    """NMSE in dB over the whole batch: 10 log10( sum ||x_hat - x||^2 / sum ||x||^2 )."""
    x_hat, x = np.asarray(x_hat), np.asarray(x)
    return float(10.0 * np.log10(np.sum(np.abs(x_hat - x) ** 2) / np.sum(np.abs(x) ** 2)))


# ----------------------------------------------------------------------------
# Synthetic data
# ----------------------------------------------------------------------------

def lasso_problem(n=20, m=50, k=4, noise=0.01, batch=8, seed=0):
    """Small lasso test problem (catalog A1 test data).

    Draw order from np.random.default_rng(seed): A = randn(n, m) (columns then scaled
    to unit norm); for each sample a random k-subset support (rng.choice without
    replacement) and N(0,1) values; finally noise * randn(batch, n).
    Returns (A [n, m], x_star [batch, m], y [batch, n]) with y = x_star A^T + noise.
    """
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, m))
    A /= np.linalg.norm(A, axis=0, keepdims=True)
    x_star = np.zeros((batch, m))
    for b in range(batch):
        support = rng.choice(m, size=k, replace=False)
        x_star[b, support] = rng.standard_normal(k)
    y = x_star @ A.T + noise * rng.standard_normal((batch, n))
    return A, x_star, y


def bernoulli_gaussian_problem(n=250, m=500, pnz=0.1, batch=1000, snr_db=None, seed=0,
                               normalize_columns=True):
    """Compressed-sensing data with Bernoulli-Gaussian codes.

    Draw order from np.random.default_rng(seed): A_ij ~ N(0, 1/n) of shape [n, m]
    (columns optionally rescaled to unit norm); support mask ~ Bernoulli(pnz) and
    values ~ N(0,1), both [batch, m]; x = mask * values; y = x A^T.  If snr_db is
    given, white Gaussian noise is added with variance
        sigma^2 = mean(|A x|^2) / 10^(snr_db/10)
    where the mean runs over the whole batch (a batch-level, not per-sample, SNR).
    Returns (A [n, m], x [batch, m], y [batch, n]).
    """
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((n, m)) / math.sqrt(n)
    if normalize_columns:
        A /= np.linalg.norm(A, axis=0, keepdims=True)
    mask = rng.random((batch, m)) < pnz
    x = mask * rng.standard_normal((batch, m))
    y = x @ A.T
    if snr_db is not None:
        sigma = math.sqrt(np.mean(y ** 2) / 10.0 ** (snr_db / 10.0))
        y = y + sigma * rng.standard_normal(y.shape)
    return A, x, y


# ---------------------------------------------------------------- helpers shared by the issue-3 tests
def rel(a, b):
    """Largest absolute difference relative to the largest entry of the reference b."""
    a, b = np.asarray(a), np.asarray(b)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


def svt(X, tau):
    """Singular value thresholding U max(s - tau, 0) V^H (prox of tau ||.||_*)."""
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return (U * np.maximum(s - tau, 0)) @ Vh


def row_shrink(X, tau):
    """Row-wise l2 shrinkage (prox of tau ||.||_{1,2}); zero rows stay zero."""
    n = np.linalg.norm(X, axis=1, keepdims=True)
    return X * np.maximum(0, 1 - tau / np.where(n == 0, 1, n)) * (n > 0)
