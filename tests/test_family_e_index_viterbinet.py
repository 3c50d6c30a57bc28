"""Catalog E6 (c): `viterbinet`, Viterbi with learned likelihoods.

* every layer's path metrics and the traceback equal an independent numpy loop that evaluates the
  same MLP (its weights read from the module), the mixture density and the min-sum recursion;
* the MLP trained as in [100] (a state classifier on 5,000 pilots, cross-entropy) with the mixture
  density fitted by EM (sklearn GaussianMixture) approaches the symbol error rate of the Viterbi
  algorithm that knows the channel, and beats the untrained network and a Viterbi algorithm with a
  mismatched channel estimate at the same depth, on held-out blocks.
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

M, LC = 2, 3
S = M ** LC
H_CH = np.array([1.0, 0.6, 0.3])
SIGMA2 = 0.25


def value(index):
    return 2.0 * np.asarray(index) - 1.0


def trellis(h=H_CH):
    digits = np.array([[(i // M ** (LC - 1 - k)) % M for k in range(LC)] for i in range(S)])
    mu = value(digits) @ h
    pred = np.array([[(i % M ** (LC - 1)) * M + j for j in range(M)] for i in range(S)])
    return mu, pred, digits[:, 0], digits


def blocks(rng, batch, T):
    """Sent symbol indices, trellis states and channel outputs of `batch` blocks of length T."""
    symbols = rng.integers(0, M, size=(batch, T + LC - 1))
    states = sum(symbols[:, LC - 1 - k: LC - 1 - k + T] * M ** (LC - 1 - k) for k in range(LC))
    x = value(symbols)
    clean = np.stack([sum(H_CH[k] * x[:, LC - 1 + t - k] for k in range(LC)) for t in range(T)], axis=1)
    return symbols[:, LC - 1:], states, clean + np.sqrt(SIGMA2) * rng.standard_normal((batch, T))


def mlp_numpy(net_f, y):
    """The module's MLP evaluated in numpy from its weights (Linear, ReLU between)."""
    h = y
    linears = [m for m in net_f.body if isinstance(m, torch.nn.Linear)]
    for i, lin in enumerate(linears):
        h = h @ lin.weight.detach().numpy().T + lin.bias.detach().numpy()
        if i < len(linears) - 1:
            h = np.maximum(h, 0)
    return h


def numpy_viterbinet(y, logits_fn, mix, pred):
    w, m, v = mix
    lam = np.zeros(S)
    metrics, ptrs = [lam], []
    for t in range(len(y)):
        logits = logits_fn(np.array([[y[t]]]))[0]
        log_post = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        comps = np.log(w) - 0.5 * np.log(2 * np.pi * v) - (y[t] - m) ** 2 / (2 * v)
        log_py = comps.max() + np.log(np.exp(comps - comps.max()).sum())
        cost = -(log_post + log_py + np.log(S))
        cand = lam[pred]
        ptrs.append(cand.argmin(1))
        lam = cost + cand.min(1)
        metrics.append(lam)
    s, path = int(lam.argmin()), []
    for t in reversed(range(len(y))):
        path.append(s)
        s = pred[s, ptrs[t][s]]
    return metrics, path[::-1]


def fitted_mixture(y_train):
    from sklearn.mixture import GaussianMixture

    gm = GaussianMixture(n_components=S, covariance_type="spherical", random_state=0).fit(y_train.reshape(-1, 1))
    return gm.weights_, gm.means_[:, 0], gm.covariances_


def test_every_layer_equals_a_numpy_loop_with_the_same_mlp():
    torch.manual_seed(0)
    _mu, pred, newest, _ = trellis()
    mix = (np.full(3, 1 / 3), np.array([-1.0, 0.0, 1.5]), np.array([0.5, 0.3, 0.8]))
    net = unroll.load("viterbinet")(pred, newest, *mix)
    _, _, y = blocks(np.random.default_rng(0), 3, 7)
    with torch.no_grad():
        trace = net.trace(torch.tensor(y[..., None]))
        s_hat, path, _lam, post = net(torch.tensor(y[..., None]))
    for b in range(3):
        metrics, ref_path = numpy_viterbinet(y[b], lambda v: mlp_numpy(net.f, v), mix, pred)
        assert max(rel(t["Lam"][b].numpy(), m) for t, m in zip(trace[1:], metrics[1:])) < 1e-10
        assert path[b].tolist() == ref_path and s_hat[b].tolist() == newest[ref_path].tolist()
        logits = mlp_numpy(net.f, y[b][:, None])
        probs = np.exp(logits - logits.max(1, keepdims=True))
        assert rel(post[b].numpy(), probs / probs.sum(1, keepdims=True)) < 1e-10


def test_training_approaches_viterbi_and_beats_the_untrained_and_mismatched_baselines():
    pytest.importorskip("sklearn")
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    mu, pred, newest, _ = trellis()
    _, pilot_states, pilot_y = blocks(rng, 1, 5000)  # 5,000 pilots, as in the catalog
    mix = fitted_mixture(pilot_y[0])
    net = unroll.load("viterbinet")(pred, newest, *mix)
    sent, _, y_test = blocks(rng, 40, 50)
    y_test_t = torch.tensor(y_test[..., None])

    def ser(detected):
        return float((np.asarray(detected) != sent).mean())

    with torch.no_grad():
        untrained = ser(net(y_test_t)[0])
    features = torch.tensor(pilot_y[0][:, None])
    labels = torch.tensor(pilot_states[0])
    opt = torch.optim.Adam(net.f.parameters(), lr=0.01)
    for _ in range(150):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net.f(features), labels).backward()
        opt.step()
    with torch.no_grad():
        trained = ser(net(y_test_t)[0])
    viterbi = unroll.load("viterbi")
    exact = ser(viterbi(mu, pred, newest, sigma2=SIGMA2)(torch.tensor(y_test))[0])
    h_wrong = np.array([1.0, -0.2, 0.5])  # a poor channel estimate
    mismatched = ser(viterbi(trellis(h_wrong)[0], pred, newest, sigma2=SIGMA2)(torch.tensor(y_test))[0])
    assert exact < 0.08, exact  # the channel is detectable
    assert trained <= exact + 0.01, (trained, exact)  # approaches Viterbi with full channel knowledge
    assert trained < 0.5 * untrained, (trained, untrained)
    assert trained < 0.5 * mismatched, (trained, mismatched)
