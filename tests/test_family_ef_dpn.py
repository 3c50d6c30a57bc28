"""Catalog family E: dpn_meanfield (E2, Deep Parsing Network's generalised mean-field step).

(a) lam = 0: the output is p;  (b) every pixel's output sums to 1;
equivalence: the step == a numpy loop written from [33]'s formula, neighbour by neighbour (sums over
j in N_i, v and z in N_j with zero outside the image), 1e-10, for two components and 3x3 contexts;
the min over components is a min (a mixture of label contexts);
robustness: probabilities with log-ratios ~10^3 stay finite;
training: learning the label contexts and lam on noisy segmentation beats the step with Potts
contexts at its best lam on a grid (same depth, held-out images).
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LABELS, SIDE = 3, 8


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def local(kernel, image, i, j):
    """sum_a kernel[a] image[i - a + c] (convolution, centre c = (s - 1) // 2, zero outside)."""
    s1, s2 = kernel.shape
    c1, c2 = (s1 - 1) // 2, (s2 - 1) // 2
    total = 0.0
    for a in range(s1):
        for b in range(s2):
            y, x = i - a + c1, j - b + c2
            if 0 <= y < image.shape[0] and 0 <= x < image.shape[1]:
                total += kernel[a, b] * image[y, x]
    return total


def numpy_dpn_step(p, q, d, ctx, lam):
    L, H, W = p.shape
    triple = np.array([[[q[v, y, x] * local(d, q[v], y, x) for x in range(W)] for y in range(H)] for v in range(L)])
    energy = np.array([[[[sum(local(ctx[k, u, v], triple[v], y, x) for v in range(L)) for x in range(W)]
                         for y in range(H)] for u in range(L)] for k in range(len(lam))])
    logits = np.log(p) - np.min(lam[:, None, None, None] * energy, axis=0)
    e = np.exp(logits - logits.max(0))
    return e / e.sum(0)


def potts_contexts(K, s=3):
    ctx = np.zeros((K, LABELS, LABELS, s, s))
    for k in range(K):
        ctx[k] = (1 - np.eye(LABELS))[:, :, None, None] * np.ones((s, s)) / s ** 2 * (1 + k)
    return ctx


GAUSS = np.exp(-np.array([[2, 1, 2], [1, 0, 1], [2, 1, 2]]) / 2.0)


def scenes(batch, seed, noise=1.5):
    rng = np.random.default_rng(seed)
    labels = np.zeros((batch, SIDE, SIDE), dtype=int)
    for b in range(batch):
        labels[b] = rng.integers(LABELS)
        r, c = rng.integers(0, 4, 2)
        labels[b, r:r + 4, c:c + 4] = rng.integers(LABELS)
    U = 1.5 * np.moveaxis(np.eye(LABELS)[labels], -1, 1) + noise * rng.standard_normal((batch, LABELS, SIDE, SIDE))
    p = np.exp(U - U.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), labels


def network(ctx, lam0, layers=1, d=GAUSS):
    return unroll.load("dpn_meanfield", layers=layers)(d=d, ctx0=ctx, lam0=lam0)


def test_the_step_equals_the_numpy_formula():
    p, _ = scenes(2, seed=0)
    rng = np.random.default_rng(1)
    ctx = rng.uniform(-0.5, 1.0, (2, LABELS, LABELS, 3, 3))
    net = network(ctx, 0.7)
    with torch.no_grad():
        net.lam.copy_(t64(np.array([0.7, 1.3]).reshape(2, 1, 1, 1)))
    q = net(t64(p))[0].detach().numpy()
    for b in range(2):
        assert rel(q[b], numpy_dpn_step(p[b], p[b], GAUSS, ctx, np.array([0.7, 1.3]))) < 1e-10
    # two layers: the step applied to its own output (p stays the unary term)
    q2 = network(ctx, 0.7, layers=2)(t64(p))[0].detach().numpy()
    first = numpy_dpn_step(p[0], p[0], GAUSS, ctx, np.array([0.7, 0.7]))
    assert rel(q2[0], numpy_dpn_step(p[0], first, GAUSS, ctx, np.array([0.7, 0.7]))) < 1e-10


def test_zero_lam_returns_p_and_the_output_is_a_distribution():
    p, _ = scenes(3, seed=2)
    assert rel(network(potts_contexts(2), 0.0)(t64(p))[0].detach().numpy(), p) < 1e-14
    q, Qpix = (v.detach().numpy() for v in network(potts_contexts(2), 2.0, layers=3)(t64(p)))
    assert (q > 0).all() and np.abs(q.sum(1) - 1).max() < 1e-14
    np.testing.assert_array_equal(Qpix, q.reshape(3, LABELS, -1).transpose(0, 2, 1))  # one row per pixel


def test_log_probabilities_a_thousand_apart_stay_finite():
    p, _ = scenes(1, seed=3, noise=400.0)  # log-ratios of p up to ~10^3
    q = network(potts_contexts(2), 1.0)(t64(p))[0].detach().numpy()
    assert np.all(np.isfinite(q)) and np.abs(q.sum(1) - 1).max() < 1e-14
    assert rel(q[0], numpy_dpn_step(p[0], p[0], GAUSS, potts_contexts(2), np.array([1.0, 1.0]))) < 1e-10


def nll(q, labels):
    return -np.mean(np.log(np.take_along_axis(q, labels[:, None], 1) + 1e-300))


def test_training_the_label_contexts_beats_potts_at_its_best_lam():
    torch.manual_seed(0)
    layers = 2
    p, labels = scenes(128, seed=10)
    p_te, labels_te = scenes(64, seed=11)

    def classical(lam):
        return nll(network(potts_contexts(2), lam, layers)(t64(p_te))[0].detach().numpy(), labels_te)

    best, lam, _ = best_on_grid(classical, [0.0, 1.0, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 8.0])
    net = network(potts_contexts(2), lam, layers)  # from the best classical step
    target = torch.from_numpy(labels)
    losses = adam(net.parameters(), lambda: torch.nn.functional.nll_loss(torch.log(net(t64(p))[0]), target),
                  steps=30, lr=0.01)
    assert losses[-1] < losses[0]
    trained = nll(net(t64(p_te))[0].detach().numpy(), labels_te)
    assert_beats_classical(trained, best, 0.95, "dpn_meanfield: held-out NLL of the labels")
