"""neural_em and rnn_em (catalog E5): EM unrolled with a softmax E-step; N-EM's M-step is a vjp through
the decoder in the forward pass, RNN-EM's a recurrent cell.  References written from the paper in
numpy (scipy.special.softmax / expit for the E-step and the cell), the explicit Jᵀ formula of the
affine decoder, the monotonicity of (generalised) EM; float64."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical

special = pytest.importorskip("scipy.special")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D, K, HD, SIGMA = 8, 2, 3, 0.5


def _mixture_images(count, seed):
    """Images whose pixels come from one of K=2 affine 'objects' B* theta*_k (plus noise sigma)."""
    rng = np.random.default_rng(seed)
    B_true = rng.standard_normal((D, HD))
    images = np.empty((count, D))
    for i in range(count):
        latents = rng.standard_normal((K, HD))
        owner = rng.integers(0, K, size=D)
        images[i] = (latents @ B_true.T)[owner, np.arange(D)] + SIGMA * 0.3 * rng.standard_normal(D)
    return images


def _log_normal(x, psi, sigma):
    return -(x - psi) ** 2 / (2 * sigma ** 2) - 0.5 * np.log(2 * np.pi * sigma ** 2)


def _nem_reference(x, theta, B, c, sigma, eta, layers):
    """N-EM from the paper: softmax E-step, one gradient step θ_k += η J_kᵀ(γ_k ⊙ (x − ψ_k))/σ², J_k = B."""
    thetas, gammas = [theta], []
    for _ in range(layers):
        psi = theta @ B.T + c
        gamma = special.softmax(-(x - psi) ** 2 / (2 * sigma ** 2), axis=0)
        theta = theta + eta * (gamma * (x - psi)) @ B / sigma ** 2
        thetas.append(theta)
        gammas.append(gamma)
    return thetas, gammas


def test_neural_em_equals_the_explicit_M_step_and_gamma_sums_to_one():
    rng = np.random.default_rng(0)
    B0, x = rng.standard_normal((D, HD)), _mixture_images(4, 1)
    theta0 = rng.standard_normal((4, K, HD))
    net = unroll.load("neural_em", layers=6)(B0=B0, K=K, sigma=SIGMA, eta=0.05)
    with torch.no_grad():
        trace = net.trace(torch.tensor(x), theta0=torch.tensor(theta0))
    for b in range(4):
        thetas, gammas = _nem_reference(x[b], theta0[b], B0, np.zeros(D), SIGMA, 0.05, 6)
        for layer in range(6):
            assert np.allclose(trace[layer + 1]["theta"][b].numpy(), thetas[layer + 1], rtol=1e-12, atol=1e-13)
            assert np.allclose(trace[layer + 1]["gamma"][b].numpy(), gammas[layer], rtol=1e-12, atol=1e-14)
            assert np.allclose(trace[layer + 1]["gamma"][b].sum(0).numpy(), 1.0, rtol=0, atol=1e-14)


def test_neural_em_increases_the_expected_complete_log_likelihood_at_every_step():
    rng = np.random.default_rng(2)
    B0, x = rng.standard_normal((D, HD)), _mixture_images(3, 3)
    net = unroll.load("neural_em", layers=8)(B0=B0, K=K, sigma=SIGMA, eta=0.01)
    with torch.no_grad():
        trace = net.trace(torch.tensor(x), theta0=torch.tensor(rng.standard_normal((3, K, HD))))
    for b in range(3):
        previous_loglik = -np.inf
        for layer in range(8):
            gamma = trace[layer + 1]["gamma"][b].numpy()  # E-step from theta^layer
            before, after = (trace[t]["theta"][b].numpy() @ B0.T for t in (layer, layer + 1))
            q_before = (gamma * _log_normal(x[b], before, SIGMA)).sum()
            q_after = (gamma * _log_normal(x[b], after, SIGMA)).sum()
            assert q_after > q_before  # the M-step's gradient step increases Q
            # generalised EM: the marginal log-likelihood (pi uniform) does not decrease
            loglik = special.logsumexp(_log_normal(x[b], before, SIGMA) - np.log(K), axis=0).sum()
            assert loglik >= previous_loglik - 1e-12
            previous_loglik = loglik


def test_neural_em_is_finite_for_logits_a_thousand_apart():
    B0 = np.eye(D, HD)
    theta0 = np.zeros((1, K, HD))
    theta0[0, 1] = 40.0  # component 1 far away: logits differ by about 10^3..10^4
    x = np.zeros((1, D))
    net = unroll.load("neural_em", layers=3)(B0=B0, K=K, sigma=0.5, eta=0.01)
    theta, gamma, _, _ = net(torch.tensor(x), theta0=torch.tensor(theta0))
    assert torch.isfinite(theta).all() and torch.isfinite(gamma).all()
    assert torch.allclose(gamma.sum(1), torch.ones(1, D, dtype=torch.float64), rtol=0, atol=1e-15)
    assert torch.equal(gamma[0, 0, :HD], torch.ones(HD, dtype=torch.float64))
    theta.sum().backward()
    assert torch.isfinite(net.B.grad).all()


def test_neural_em_gradcheck_through_the_vjp(tmp_path):
    # without the stop-gradient on gamma (whose backward differs from finite differences by design), the
    # module's derivative is the derivative of its values: second order through the vjp (create_graph)
    rng = np.random.default_rng(4)
    source = (Path(__file__).resolve().parents[1] / "dsl_specs" / "neural_em.unroll").read_text()
    assert "gamma = stop_grad(" in source
    path = tmp_path / "neural_em_nostop.unroll"
    path.write_text(source.replace("spec neural_em ", "spec neural_em_nostop ").replace("gamma = stop_grad(",
                                                                                         "gamma = ("))
    net = unroll.load(str(path), layers=2)(B0=rng.standard_normal((D, HD)), K=K, sigma=SIGMA, eta=0.05)
    x, theta0 = torch.tensor(_mixture_images(2, 5)), torch.tensor(rng.standard_normal((2, K, HD)))
    B = torch.tensor(rng.standard_normal((D, HD)), requires_grad=True)

    def run(B_value):
        saved = net.B
        del net.B
        net.B = B_value
        try:
            return torch.cat([v.reshape(-1) for v in net(x, theta0=theta0)])
        finally:
            del net.B
            net.B = saved

    assert torch.autograd.gradcheck(run, (B,))


def _rnn_reference(x, theta, Wx, Wh, Wy, b, sigma, layers):
    thetas, gammas = [theta], []
    for _ in range(layers):
        psi = special.expit(theta @ Wy.T)
        gamma = special.softmax(-(x - psi) ** 2 / (2 * sigma ** 2), axis=0)
        theta = special.expit((gamma * (psi - x)) @ Wx.T + theta @ Wh.T + b)
        thetas.append(theta)
        gammas.append(gamma)
    return thetas, gammas, special.expit(theta @ Wy.T)


def _rnn_weights(seed):
    rng = np.random.default_rng(seed)
    return {"Wx0": rng.standard_normal((HD, D)), "Wh0": rng.standard_normal((HD, HD)) * 0.5,
            "Wy0": rng.standard_normal((D, HD))}


def test_rnn_em_equals_a_numpy_loop():
    weights = _rnn_weights(6)
    x = special.expit(_mixture_images(3, 7))
    theta0 = np.random.default_rng(8).standard_normal((3, K, HD))
    net = unroll.load("rnn_em", layers=5)(**weights, K=K, sigma=SIGMA)
    with torch.no_grad():
        trace = net.trace(torch.tensor(x), theta0=torch.tensor(theta0))
        _, _, psi, _ = net(torch.tensor(x), theta0=torch.tensor(theta0))
    for b in range(3):
        thetas, gammas, psi_ref = _rnn_reference(x[b], theta0[b], weights["Wx0"], weights["Wh0"], weights["Wy0"],
                                                 np.zeros(HD), SIGMA, 5)
        for layer in range(5):
            assert np.allclose(trace[layer + 1]["theta"][b].numpy(), thetas[layer + 1], rtol=1e-12, atol=1e-14)
            assert np.allclose(trace[layer + 1]["gamma"][b].numpy(), gammas[layer], rtol=1e-12, atol=1e-14)
            assert np.allclose(trace[layer + 1]["gamma"][b].sum(0).numpy(), 1.0, rtol=0, atol=1e-14)
        assert np.allclose(psi[b].numpy(), psi_ref, rtol=1e-12, atol=1e-14)


def _expected_reconstruction(net, x, theta0):
    _, gamma, psi, xhat = net(x, theta0=theta0)
    assert torch.allclose(xhat, (gamma * psi).sum(1), rtol=1e-14, atol=0)
    return (xhat - x).pow(2).mean()


@pytest.mark.parametrize("name", ["neural_em", "rnn_em"])
def test_training_beats_the_untrained_network_on_held_out_images(name):
    torch.manual_seed(0)
    rng = np.random.default_rng(9)
    squash = special.expit if name == "rnn_em" else (lambda v: v)
    x_tr, x_te = (torch.tensor(squash(_mixture_images(n, s))) for n, s in ((64, 10), (64, 11)))
    th_tr, th_te = (torch.tensor(rng.standard_normal((64, K, HD)) * 0.5) for _ in range(2))
    if name == "neural_em":
        net = unroll.load(name, layers=4)(B0=rng.standard_normal((D, HD)), K=K, sigma=SIGMA, eta=0.05)
    else:
        net = unroll.load(name, layers=4)(**_rnn_weights(12), K=K, sigma=SIGMA)
    with torch.no_grad():
        untrained = _expected_reconstruction(net, x_te, th_te).item()
    adam(net.parameters(), lambda: _expected_reconstruction(net, x_tr, th_tr), steps=60, lr=0.03)
    with torch.no_grad():
        trained = _expected_reconstruction(net, x_te, th_te).item()
    assert_beats_classical(trained, untrained, 0.7, f"{name} reconstruction (untrained network at the same depth)")


def test_neural_em_M_step_through_a_nonlinear_decoder_equals_finite_differences():
    """With the MLP part of the decoder non-zero, one M-step θ + η Jᵀ(γ ⊙ (x − ψ))/σ² against Jᵀ from central
    differences of the decoder ψ(θ) = θBᵀ + c + G(θ) evaluated without autograd."""
    torch.manual_seed(3)
    rng = np.random.default_rng(13)
    net = unroll.load("neural_em", layers=1)(B0=rng.standard_normal((D, HD)), K=K, sigma=SIGMA, eta=0.05)
    with torch.no_grad():
        for p in net.G.parameters():
            p.normal_(0, 0.5)
    x = torch.tensor(_mixture_images(1, 14))[0]
    theta0 = torch.tensor(rng.standard_normal((K, HD)))
    with torch.no_grad():
        theta1, gamma, _, _ = net(x, theta0=theta0)

        def decoder(theta):
            return theta @ net.B.T + net.c + net.G(theta)

        psi = decoder(theta0)
        r = gamma * (x - psi)  # [K, D]
        step = 1e-6
        jtr = torch.zeros(K, HD, dtype=torch.float64)
        for k in range(K):
            for j in range(HD):
                e = torch.zeros(K, HD, dtype=torch.float64)
                e[k, j] = step
                jtr[k, j] = ((decoder(theta0 + e) - decoder(theta0 - e)) / (2 * step) * r).sum()
    assert torch.allclose(theta1, theta0 + 0.05 * jtr / SIGMA ** 2, rtol=1e-7, atol=1e-8)
    assert not torch.allclose(theta1, theta0 + 0.05 * (r @ net.B) / SIGMA ** 2, rtol=1e-3)  # G matters here
