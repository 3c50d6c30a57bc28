"""Catalog family F: sinkhorn_autoencoder (F1, Patrini et al.).

untrained  codes and reconstructions == numpy; the plan == POT's ot.sinkhorn(1/n, 1/m, C, eps, L,
           stopThr=0) on the numpy cost; W == <P, C>; the loss == reconstruction + beta W.
training   from the PCA encoder/decoder (the classical linear autoencoder), training We, Wd on
           reconstruction + beta * W (backprop through the L Sinkhorn layers) lowers the held-out
           objective well below PCA's, at the same depth; the gradient of W through the unrolled
           layers matches central finite differences.
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from training_helpers import adam, assert_beats_classical

ot = pytest.importorskip("ot")
pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.filterwarnings("ignore:Sinkhorn did not converge")]

D, H, N, M = 6, 2, 24, 24


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def data(batch, seed):
    """Points near a 2-D subspace of R^6 with unequal spread; prior samples N(0, I_2)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(np.random.default_rng(99).standard_normal((D, H)))[0]
    codes = rng.standard_normal((batch, N, H)) * np.array([3.0, 0.5])
    X = codes @ basis.T + 0.05 * rng.standard_normal((batch, N, D))
    return X, rng.standard_normal((batch, M, H))


def pca(X):
    _, _, Vt = np.linalg.svd(X.reshape(-1, D) - 0, full_matrices=False)
    return Vt[:H], Vt[:H].T  # encoder [h, D], decoder [D, h]


def test_untrained_network_equals_numpy_and_pot():
    X, Zp = data(2, seed=0)
    E0, G0 = pca(X)
    eps, layers = 0.5, 20
    Z, Xhat, P, W, loss = (v.detach().numpy() for v in unroll.load("sinkhorn_autoencoder", layers=layers)(
        E0=E0, G0=G0, eps=eps, beta=0.3)(t64(X), t64(Zp)))
    for s in range(2):
        z = X[s] @ E0.T
        C = ((z[:, None, :] - Zp[s][None, :, :]) ** 2).sum(-1)
        plan = ot.sinkhorn(np.full(N, 1 / N), np.full(M, 1 / M), C, reg=eps, numItermax=layers, stopThr=0)
        assert rel(Z[s], z) < 1e-13 and rel(Xhat[s], z @ G0.T) < 1e-13
        assert rel(P[s], plan) < 1e-10
        assert abs(W[s] - (plan * C).sum()) < 1e-10 * abs(W[s])
        recon = ((X[s] - z @ G0.T) ** 2).sum() / N
        assert abs(loss[s] - (recon + 0.3 * (plan * C).sum())) < 1e-10 * loss[s]


def test_the_gradient_through_the_sinkhorn_layers_matches_finite_differences():
    X, Zp = data(1, seed=1)
    E0, G0 = pca(X)
    net = unroll.load("sinkhorn_autoencoder", layers=15)(E0=E0, G0=G0, eps=0.5, beta=1.0)
    W = net(t64(X), t64(Zp))[3].sum()
    (grad,) = torch.autograd.grad(W, net.We)
    direction = np.random.default_rng(2).standard_normal((H, D))
    h = 1e-6

    def value(E):
        with torch.no_grad():
            net.We.copy_(t64(E))
            return float(net(t64(X), t64(Zp))[3].sum())

    numeric = (value(E0 + h * direction) - value(E0 - h * direction)) / (2 * h)
    assert abs(numeric - float((grad.numpy() * direction).sum())) < 1e-6 * (1 + abs(numeric))


def test_training_beats_the_pca_autoencoder_on_held_out_data():
    torch.manual_seed(0)
    X, Zp = data(16, seed=3)
    X_te, Zp_te = data(16, seed=4)
    E0, G0 = pca(X)
    net = unroll.load("sinkhorn_autoencoder", layers=20)(E0=E0, G0=G0, eps=0.5, beta=1.0)
    pca_loss = float(net(t64(X_te), t64(Zp_te))[4].mean().detach())
    losses = adam(net.parameters(), lambda: net(t64(X), t64(Zp))[4].mean(), steps=80, lr=0.02)
    assert losses[-1] < losses[0]
    trained = float(net(t64(X_te), t64(Zp_te))[4].mean().detach())
    assert_beats_classical(trained, pca_loss, 0.6, "sinkhorn_autoencoder: held-out reconstruction + beta W")
