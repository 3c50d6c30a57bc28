"""Catalog E6 (a, b): `viterbi`, min-sum recursion with backpointers and a traceback sweep.

BPSK (M = 2), channel memory Lc = 3 (S = 8 trellis states), T = 8 symbols, exact Gaussian
likelihood with known h and sigma^2:
* every layer's path metrics equal an independent numpy Viterbi loop;
* the detected sequence equals brute-force maximum-likelihood detection over all 2^(T + Lc - 1)
  sequences (the Lc - 1 symbols before t = 0 free, as the uniform initial metric says);
* the state path equals hmmlearn's GaussianHMM.decode(algorithm='viterbi') on the equivalent HMM
  (deterministic shift transitions of probability 1/M, means h^T sigma, spherical variance sigma^2);
* the depth is the length of the received sequence (`layers T`): one module decodes any length.
"""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

M, LC = 2, 3
S = M ** LC
H_CH = np.array([1.0, 0.6, 0.3])
SIGMA2 = 0.4


def value(index):
    return 2.0 * np.asarray(index) - 1.0  # BPSK: symbol index 0 -> -1, 1 -> +1


def trellis():
    """State i <-> (s_t, s_{t-1}, s_{t-2}) with s_t the most significant base-M digit."""
    digits = np.array([[(i // M ** (LC - 1 - k)) % M for k in range(LC)] for i in range(S)])  # [S, LC]
    mu = value(digits) @ H_CH
    pred = np.array([[(i % M ** (LC - 1)) * M + j for j in range(M)] for i in range(S)])
    newest = digits[:, 0]
    return mu, pred, newest


def channel(rng, batch, T):
    symbols = rng.integers(0, M, size=(batch, T + LC - 1))  # the first Lc - 1 precede t = 0
    x = value(symbols)
    clean = np.stack([sum(H_CH[k] * x[:, LC - 1 + t - k] for k in range(LC)) for t in range(T)], axis=1)
    return symbols[:, LC - 1:], clean + np.sqrt(SIGMA2) * rng.standard_normal((batch, T))


def numpy_viterbi(y, mu, pred):
    """Metrics after every step and the traceback, written from the recursion."""
    lam = np.zeros(S)
    metrics, ptrs = [lam], []
    for t in range(len(y)):
        cand = lam[pred]
        ptrs.append(np.argmin(cand, axis=1))
        lam = (y[t] - mu) ** 2 / (2 * SIGMA2) + cand.min(axis=1)
        metrics.append(lam)
    s = int(np.argmin(lam))
    path = []
    for t in reversed(range(len(y))):
        path.append(s)
        s = pred[s, ptrs[t][s]]
    return metrics, path[::-1]


def brute_force(y):
    """The ML sequence over all symbol sequences (initial memory included) and its cost."""
    T = len(y)
    seqs = np.array(list(itertools.product(range(M), repeat=T + LC - 1)))
    x = value(seqs)
    clean = np.stack([sum(H_CH[k] * x[:, LC - 1 + t - k] for k in range(LC)) for t in range(T)], axis=1)
    costs = ((y - clean) ** 2).sum(axis=1)
    best = int(np.argmin(costs))
    return seqs[best, LC - 1:], costs[best] / (2 * SIGMA2)


@pytest.fixture(scope="module")
def net():
    mu, pred, newest = trellis()
    return unroll.load("viterbi")(mu, pred, newest, sigma2=SIGMA2)


def test_every_layer_equals_a_numpy_viterbi_loop(net):
    mu, pred, _ = trellis()
    rng = np.random.default_rng(0)
    _, y = channel(rng, 4, 8)
    trace = net.trace(torch.tensor(y))
    assert len(trace) == 9  # the depth is T
    for b in range(4):
        metrics, path = numpy_viterbi(y[b], mu, pred)
        assert max(rel(t["Lam"][b].numpy(), m) for t, m in zip(trace[1:], metrics[1:])) < 1e-10
    _s_hat, path, _lam = net(torch.tensor(y))
    for b in range(4):
        assert path[b].tolist() == numpy_viterbi(y[b], mu, pred)[1]


def test_the_detection_is_the_brute_force_maximum_likelihood_sequence(net):
    rng = np.random.default_rng(1)
    sent, y = channel(rng, 12, 8)
    s_hat, _path, lam = net(torch.tensor(y))
    assert s_hat.dtype == torch.long and s_hat.shape == (12, 8)
    errors = 0
    for b in range(12):
        ml, cost = brute_force(y[b])
        assert s_hat[b].tolist() == ml.tolist()
        assert abs(float(lam[b].min()) - cost) < 1e-10 * cost
        errors += int((ml != sent[b]).sum())
    assert errors < 12 * 8 * 0.3  # the channel is not hopeless: the ML sequence is mostly the sent one


def test_the_state_path_equals_hmmlearn_viterbi_decoding(net):
    hmm = pytest.importorskip("hmmlearn.hmm")
    mu, pred, _ = trellis()
    model = hmm.GaussianHMM(n_components=S, covariance_type="spherical", params="", init_params="")
    model.startprob_ = np.full(S, 1.0 / S)
    trans = np.zeros((S, S))
    for i in range(S):
        for j in range(M):
            trans[pred[i, j], i] = 1.0 / M
    model.transmat_ = trans
    model.means_ = mu[:, None]
    model.covars_ = np.full(S, SIGMA2)
    rng = np.random.default_rng(2)
    _, y = channel(rng, 6, 10)
    _s_hat, path, lam = net(torch.tensor(y))
    for b in range(6):
        logprob, states = model.decode(y[b][:, None], algorithm="viterbi")
        assert path[b].tolist() == states.tolist()
        # -log of the best path's probability = min metric + constants (Gaussian normaliser, 1/S, 1/M)
        const = 10 * 0.5 * np.log(2 * np.pi * SIGMA2) + np.log(S) + 9 * np.log(M)
        assert abs(-logprob - (float(lam[b].min()) + const)) < 1e-9 * abs(logprob)


def test_one_module_decodes_sequences_of_any_length(net):
    rng = np.random.default_rng(3)
    for T in (1, 3, 5):
        _, y = channel(rng, 2, T)
        s_hat, _path, _ = net(torch.tensor(y))
        assert s_hat.shape == (2, T)
        for b in range(2):
            assert s_hat[b].tolist() == brute_force(y[b])[0].tolist()
    one = net(torch.tensor(y[0]))[0]  # a single sample (no batch axis)
    assert one.shape == (5,)
