"""Catalog family E: kalman_filter (E7), em_gmm (E5).

kalman_filter  50 steps of a constant-velocity model == filterpy's KalmanFilter predict()/update()
               (mean and covariance after every measurement, 1e-12), and == a numpy loop.
em_gmm         every layer == a numpy EM loop written from the equations (scipy's logsumexp for the
               E-step), 1e-10; == sklearn's GaussianMixture(covariance_type='spherical', reg_covar=0,
               tol=0, max_iter=L) started from the same parameters; the log-likelihood never
               decreases; the responsibilities sum to 1; points 10^3 standard deviations from a
               component (logits ~10^6 apart) stay finite and exact.
"""

import warnings

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from scipy.special import logsumexp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# ======================================================================== E7: kalman_filter
def constant_velocity(dt=0.1, q=0.05, r=0.5):
    F = np.array([[1, dt, 0, 0], [0, 1, 0, 0], [0, 0, 1, dt], [0, 0, 0, 1.0]])
    H = np.array([[1.0, 0, 0, 0], [0, 0, 1.0, 0]])
    G = np.array([[dt ** 2 / 2, 0], [dt, 0], [0, dt ** 2 / 2], [0, dt]])
    return F, H, q * G @ G.T + 1e-4 * np.eye(4), r * np.eye(2), np.diag([1.0, 2.0, 1.0, 2.0])


def test_kalman_filter_equals_filterpy_for_50_steps():
    filterpy = pytest.importorskip("filterpy.kalman")
    F, H, Q, R, P0 = constant_velocity()
    rng = np.random.default_rng(0)
    batch, T = 3, 50
    truth = np.zeros((batch, T, 4))
    state = rng.standard_normal((batch, 4))
    for t in range(T):
        state = state @ F.T + rng.multivariate_normal(np.zeros(4), Q, batch)
        truth[:, t] = state
    ys = truth @ H.T + rng.standard_normal((batch, T, 2)) * np.sqrt(R[0, 0])
    x0 = rng.standard_normal((batch, 4))
    net = unroll.load("kalman_filter", layers=T)(F=F, H=H, Q=Q, R=R, P0=P0)
    trace = net.trace(t64(ys), t64(x0))
    for s in range(batch):
        kf = filterpy.KalmanFilter(dim_x=4, dim_z=2)
        kf.F, kf.H, kf.Q, kf.R, kf.P, kf.x = F, H, Q, R, P0.copy(), x0[s].copy()
        for t in range(T):
            kf.predict()
            kf.update(ys[s, t])
            assert rel(trace[t + 1]["x"][s].numpy(), kf.x) < 1e-12, (s, t)
            assert rel(trace[t + 1]["P"].numpy(), kf.P) < 1e-12, (s, t)


def test_kalman_filter_equals_a_numpy_loop_and_filters():
    F, H, Q, R, P0 = constant_velocity(dt=0.2)
    rng = np.random.default_rng(1)
    ys, x0 = rng.standard_normal((2, 20, 2)), rng.standard_normal((2, 4))
    x, P = (v.numpy() for v in unroll.load("kalman_filter", layers=20)(F=F, H=H, Q=Q, R=R, P0=P0)(t64(ys), t64(x0)))
    for s in range(2):
        xs, Ps = x0[s], P0
        for t in range(20):
            xp, Pp = F @ xs, F @ Ps @ F.T + Q
            K = Pp @ H.T @ np.linalg.inv(H @ Pp @ H.T + R)
            xs, Ps = xp + K @ (ys[s, t] - H @ xp), (np.eye(4) - K @ H) @ Pp
        assert rel(x[s], xs) < 1e-12 and rel(P, Ps) < 1e-12
    assert np.all(np.linalg.eigvalsh((P + P.T) / 2) > 0) and np.trace(P) < np.trace(F @ P0 @ F.T + Q)


# ======================================================================== E5: em_gmm
def numpy_em(X, w, mu, s2, layers):
    """Textbook EM for a spherical GMM, from the equations; returns (w, mu, s2, gamma, ll) after every layer."""
    N, D = X.shape
    out = []
    for _ in range(layers):
        d2 = np.array([[np.sum((x - m) ** 2) for m in mu] for x in X])
        logp = np.log(w) - D / 2 * np.log(2 * np.pi * s2) - d2 / (2 * s2)
        ll = logsumexp(logp, axis=1)
        gamma = np.exp(logp - ll[:, None])
        Nk = gamma.sum(0)
        mu = gamma.T @ X / Nk[:, None]
        s2 = np.array([np.sum(gamma[:, k] * np.sum((X - mu[k]) ** 2, axis=1)) for k in range(len(w))]) / (D * Nk)
        w = Nk / N
        out.append((w, mu, s2, gamma, ll.sum()))
    return out


def mixture_data(batch, N, seed, spread=4.0):
    rng = np.random.default_rng(seed)
    centres = np.array([[-spread, 0.0], [spread, 1.0], [0.0, spread]])
    labels = rng.integers(0, 3, (batch, N))
    X = centres[labels] + rng.standard_normal((batch, N, 2)) * np.array([1.0, 0.7, 1.3])[labels][..., None]
    return X


INIT = dict(w0=np.array([0.3, 0.3, 0.4]), mu0=np.array([[-1.0, 0.5], [1.0, 0.0], [0.0, 1.0]]),
            s20=np.array([2.0, 1.0, 3.0]))


def test_em_every_layer_equals_the_numpy_loop():
    X = mixture_data(2, 40, seed=0)
    trace = unroll.load("em_gmm", layers=15)(**INIT).trace(t64(X))
    for s in range(2):
        for l, (w, mu, s2, gamma, ll) in enumerate(numpy_em(X[s], INIT["w0"], INIT["mu0"], INIT["s20"], 15), 1):
            got = trace[l]
            for name, want in (("w", w), ("mu", mu), ("s2", s2), ("gamma", gamma), ("ll", ll)):
                assert rel(got[name][s].numpy(), want) < 1e-10, (s, l, name)


def test_em_equals_sklearn_gaussian_mixture():
    mixture = pytest.importorskip("sklearn.mixture")
    from sklearn.exceptions import ConvergenceWarning

    X = mixture_data(2, 60, seed=1)
    for layers in (1, 4, 12):
        w, mu, s2, gamma, ll = unroll.load("em_gmm", layers=layers)(**INIT)(t64(X))
        for s in range(2):
            gm = mixture.GaussianMixture(3, covariance_type="spherical", reg_covar=0, tol=0, max_iter=layers,
                                         weights_init=INIT["w0"], means_init=INIT["mu0"],
                                         precisions_init=1 / INIT["s20"], init_params="random", random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                gm.fit(X[s])
            # sklearn adds 10 * float64 eps to every N_k: agreement to ~1e-13, not to the last bit
            assert rel(w[s].numpy(), gm.weights_) < 1e-10, layers
            assert rel(mu[s].numpy(), gm.means_) < 1e-10, layers
            assert rel(s2[s].numpy(), gm.covariances_) < 1e-10, layers


def test_em_log_likelihood_never_decreases_and_responsibilities_sum_to_one():
    X = mixture_data(3, 50, seed=2)
    trace = unroll.load("em_gmm", layers=25)(**INIT).trace(t64(X))
    lls = np.array([t["ll"].numpy() for t in trace[1:]])
    assert np.all(np.diff(lls, axis=0) >= -1e-9 * np.abs(lls[1:]))
    for t in trace[1:]:
        assert np.abs(t["gamma"].numpy().sum(-1) - 1).max() < 1e-14 and (t["gamma"] >= 0).all()


def test_em_logits_far_apart_stay_finite_and_exact():
    rng = np.random.default_rng(3)
    X = np.concatenate([rng.standard_normal((1, 30, 2)), 1e3 + rng.standard_normal((1, 10, 2))], axis=1)
    init = dict(w0=np.array([0.5, 0.25, 0.25]), mu0=np.array([[0.0, 0.0], [0.5, 0.5], [1e3, 1e3]]),
                s20=np.array([1.0, 1.0, 1.0]))  # a point at 1e3 is ~1e6 nats away from the first two components
    w, mu, s2, gamma, ll = (v.numpy() for v in unroll.load("em_gmm", layers=6)(**init)(t64(X)))
    assert all(np.all(np.isfinite(v)) for v in (w, mu, s2, gamma, ll))
    want = numpy_em(X[0], init["w0"], init["mu0"], init["s20"], 6)[-1]
    for got, ref in zip((w[0], mu[0], s2[0], gamma[0]), want):
        assert rel(got, ref) < 1e-10
    assert abs(ll[0] - want[4]) < 1e-10 * abs(want[4])
    assert np.all(gamma[0, 30:, 2] == 1.0) and np.all(gamma[0, :30, 2] == 0.0)
