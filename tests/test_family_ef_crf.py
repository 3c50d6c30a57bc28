"""Catalog family E: crf_rnn (E1), mean-field inference of a dense CRF unrolled as an RNN.

(c) every layer == a dense numpy mean-field loop written from the equations (pixel by pixel, the
    kernels from the colour and position distances), on an 8x8x3 image with 3 labels, 1e-10;
(a) Q > 0 and every pixel's Q sums to 1;  (b) with w = 0, Q = softmax(U) at every depth;
(d) fixed point: with small weights (a contraction) 60 layers give Q = softmax(U - mu sum_m w_m K_m Q);
robustness: unaries 10^3 apart stay finite and exact;
training: learning w1, w2 and mu on noisy segmentation beats mean field with the Potts model at its
best weight on a grid (same depth, held-out images).
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIDE, LABELS = 8, 3
POS = np.array([[i, j] for i in range(SIDE) for j in range(SIDE)], dtype=float)
HYPERS = dict(theta_a=8.0, theta_b=0.2, theta_g=3.0)


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def scenes(batch, seed, noise=1.2, colour_noise=0.05):
    """Piecewise-constant label maps (a rectangle of one label on another, a stripe of a third), the
    image a colour per label plus noise, the unaries one-hot evidence drowned in noise."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, SIDE, SIDE), dtype=int)
    for s in range(batch):
        labels[s] = rng.integers(LABELS)
        r0, c0 = rng.integers(0, 4, 2)
        labels[s, r0:r0 + 4, c0:c0 + 4] = rng.integers(LABELS)
        labels[s, :, rng.integers(SIDE)] = rng.integers(LABELS)
    labels = labels.reshape(batch, -1)
    colours = np.array([[0.9, 0.1, 0.1], [0.1, 0.8, 0.2], [0.2, 0.2, 0.9]])
    img = colours[labels] + colour_noise * rng.standard_normal((batch, SIDE * SIDE, 3))
    U = 1.0 * np.eye(LABELS)[labels] + noise * rng.standard_normal((batch, SIDE * SIDE, LABELS))
    return img, U, labels


def kernels(img):
    """k1, k2 of one image, pixel pair by pixel pair (q != p)."""
    N = len(POS)
    K1, K2 = np.zeros((N, N)), np.zeros((N, N))
    for p in range(N):
        for q in range(N):
            if p != q:
                dp, di = np.sum((POS[p] - POS[q]) ** 2), np.sum((img[p] - img[q]) ** 2)
                K1[p, q] = np.exp(-dp / (2 * HYPERS["theta_a"] ** 2) - di / (2 * HYPERS["theta_b"] ** 2))
                K2[p, q] = np.exp(-dp / (2 * HYPERS["theta_g"] ** 2))
    return K1, K2


def softmax_rows(V):
    V = V - V.max(1, keepdims=True)
    E = np.exp(V)
    return E / E.sum(1, keepdims=True)


def numpy_mean_field(img, U, w1, w2, mu, layers):
    """Zheng et al.'s steps: message passing, weighting, compatibility transform, unary addition, normalisation."""
    K1, K2 = kernels(img)
    Q = softmax_rows(U)
    out = [Q]
    for _ in range(layers):
        Qt1, Qt2 = K1 @ Q, K2 @ Q  # sum over q != p of k(f_p, f_q) Q_q(l)
        Qc = w1[None, :] * Qt1 + w2[None, :] * Qt2
        Qh = np.array([[sum(mu[l, lp] * Qc[p, lp] for lp in range(LABELS)) for l in range(LABELS)]
                       for p in range(len(POS))])
        Q = softmax_rows(U - Qh)
        out.append(Q)
    return out


def network(layers, w1=None, w2=None, mu=None):
    net = unroll.load("crf_rnn", layers=layers)(pos=POS, L=LABELS, **HYPERS)
    with torch.no_grad():
        for name, value in (("w1", w1), ("w2", w2), ("mu", mu)):
            if value is not None:
                getattr(net, name).copy_(t64(np.asarray(value, dtype=float)))
    return net


def test_every_layer_equals_the_numpy_mean_field_loop():
    img, U, _ = scenes(2, seed=0)
    rng = np.random.default_rng(1)
    w1, w2, mu = rng.uniform(0.1, 0.6, LABELS), rng.uniform(0.1, 0.6, LABELS), rng.uniform(0, 1, (LABELS, LABELS))
    trace = network(6, w1, w2, mu).trace(t64(img), t64(U))
    for s in range(2):
        for l, Q in enumerate(numpy_mean_field(img[s], U[s], w1, w2, mu, 6)):
            assert rel(trace[l]["Q"][s].detach().numpy(), Q) < 1e-10, (s, l)
    # the default parameters: Potts compatibility, unit weights
    Q = network(5)(t64(img), t64(U)).detach().numpy()
    want = numpy_mean_field(img[0], U[0], np.ones(LABELS), np.ones(LABELS), 1 - np.eye(LABELS), 5)[-1]
    assert rel(Q[0], want) < 1e-10


def test_q_is_a_distribution_and_zero_weights_give_softmax_of_the_unaries():
    img, U, _ = scenes(3, seed=2)
    for Q in network(7).trace(t64(img), t64(U)):
        Q = Q["Q"].detach().numpy()
        assert (Q > 0).all() and np.abs(Q.sum(-1) - 1).max() < 1e-14
    for layers in (1, 4):
        Q = network(layers, w1=np.zeros(LABELS), w2=np.zeros(LABELS))(t64(img), t64(U)).detach().numpy()
        for s in range(3):
            assert rel(Q[s], softmax_rows(U[s])) < 1e-14


def test_small_weights_reach_the_mean_field_fixed_point():
    img, U, _ = scenes(2, seed=3)
    w = np.full(LABELS, 0.02)
    mu = 1 - np.eye(LABELS)
    Q = network(60, w1=w, w2=w)(t64(img), t64(U)).detach().numpy()
    for s in range(2):
        K1, K2 = kernels(img[s])
        fixed = softmax_rows(U[s] - (w * (K1 @ Q[s]) + w * (K2 @ Q[s])) @ mu.T)
        assert np.abs(fixed - Q[s]).max() < 1e-12


def test_unaries_a_thousand_apart_stay_finite_and_exact():
    img, U, _ = scenes(1, seed=4)
    U = U * 1e3  # logit gaps ~10^3: exp overflows without the shift
    Q = network(5)(t64(img), t64(U)).detach().numpy()
    assert np.all(np.isfinite(Q))
    want = numpy_mean_field(img[0], U[0], np.ones(LABELS), np.ones(LABELS), 1 - np.eye(LABELS), 5)[-1]
    assert np.abs(Q[0] - want).max() < 1e-12


def nll(Q, labels):
    return -np.mean(np.log(np.take_along_axis(Q, labels[..., None], -1) + 1e-300))


def test_training_w_and_mu_beats_potts_mean_field_at_its_best_weight():
    torch.manual_seed(0)
    layers = 5
    img, U, labels = scenes(64, seed=10)
    img_te, U_te, labels_te = scenes(64, seed=11)

    def classical(c):  # Potts model, both kernels weighted c
        Q = network(layers, w1=np.full(LABELS, c), w2=np.full(LABELS, c))(t64(img_te), t64(U_te))
        return nll(Q.detach().numpy(), labels_te)

    best, c, _ = best_on_grid(classical, [0.0, 0.02, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 1.0])
    net = network(layers, w1=np.full(LABELS, c), w2=np.full(LABELS, c))  # start from the best classical model
    target = torch.from_numpy(labels)
    losses = adam(net.parameters(), lambda: torch.nn.functional.nll_loss(
        torch.log(net(t64(img), t64(U))).reshape(-1, LABELS), target.reshape(-1)), steps=60, lr=0.02)
    assert losses[-1] < losses[0]
    trained = nll(net(t64(img_te), t64(U_te)).detach().numpy(), labels_te)
    assert_beats_classical(trained, best, 0.5, "crf_rnn: held-out NLL of the labels")
