"""durr (catalog G5) and the language features it needs: `step until` (per-sample adaptive depth,
states frozen after the stopping layer, a masked mode without a data-dependent break), a per-layer
`noise` for the stochastic stopping policy, and the `convgru` sub-network.  References: a numpy loop
of heat diffusion with scipy's zero-boundary convolution and the stopping rule written from the
catalog; the GRU equations written out with scipy's correlation; float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical, best_on_grid

signal = pytest.importorskip("scipy.signal")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LAP = np.array([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])
H = W = 12


def _images(count, sigma, seed, size=H):
    """Piecewise-constant images on [0, 255] (two rectangles on a background) and their noisy versions."""
    rng = np.random.default_rng(seed)
    clean = np.full((count, 1, size, size), 60.0)
    for i in range(count):
        for _ in range(2):
            r, c = rng.integers(0, size - 4, size=2)
            clean[i, 0, r:r + rng.integers(3, 7), c:c + rng.integers(3, 7)] = rng.uniform(100, 220)
    return clean, clean + sigma * rng.standard_normal(clean.shape)


def _rule_reference(y, tau, tol, layers):
    """Heat diffusion x <- x + tau * lap * x (zero boundary), stopped after the first step whose relative
    change is below tol: returns (x at the stopping step, the number of steps run)."""
    x = y.copy()
    for t in range(layers):
        new = x + tau * signal.convolve2d(x, LAP, mode="same", boundary="fill")
        stop = np.linalg.norm(new - x) < tol * np.linalg.norm(x)
        x = new
        if stop:
            return x, t + 1
    return x, layers


def _net(layers=30, tau=0.2, tol=0.02, **kw):
    return unroll.load("durr", layers=layers)(lap=LAP, tau=tau, tol=tol, **kw)


def _policy_off(batch, layers):
    return torch.ones(batch, layers, dtype=torch.float64)  # u = 1 > P(stop): the rule alone decides


def test_untrained_network_is_heat_diffusion_with_the_deterministic_stopping_rule():
    torch.manual_seed(0)
    _, noisy = _images(6, 30.0, 1)
    net = _net(tol=0.04)
    with torch.no_grad():
        x, depth, _ = net(torch.tensor(noisy), u=_policy_off(6, 30))
    assert depth.max() < 30
    for b in range(6):
        ref, steps = _rule_reference(noisy[b, 0], 0.2, 0.04, 30)
        assert depth[b].item() == steps
        assert np.allclose(x[b, 0].numpy(), ref, rtol=1e-12, atol=1e-9)


def test_batched_masked_execution_equals_per_sample_execution_exactly():
    torch.manual_seed(0)
    _, noisy = _images(5, 25.0, 2)
    noisy = np.concatenate([noisy, _images(3, 60.0, 3)[1]])
    net = _net()
    u = torch.rand(8, 30, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        net.P.candidate.weight.normal_(0, 0.3)
        net.wp.fill_(1.0)
        net.bp.fill_(-3.0)  # the policy is active too: stops when u < P(stop)
        x, depth, p = net(torch.tensor(noisy), u=u)
        assert len(set(depth.tolist())) > 1
        for b in range(8):
            xb, db, pb = net(torch.tensor(noisy[b]), u=u[b])
            assert db.item() == depth[b].item()
            assert torch.equal(xb, x[b]) and torch.equal(pb, p[b])
        net.early_exit = False  # masked mode: all layers run, no data-dependent break
        xm, dm, pm = net(torch.tensor(noisy), u=u)
        assert torch.equal(xm, x) and torch.equal(dm, depth) and torch.equal(pm, p)
        trace = net.trace(torch.tensor(noisy), u=u)
    assert len(trace) == 31 and torch.equal(trace[-1]["x"], x)
    for b in range(8):  # frozen after its depth
        d = depth[b].item()
        assert all(torch.equal(trace[t]["x"][b], trace[d]["x"][b]) for t in range(d, 31))
        assert d == 30 or not torch.equal(trace[d]["x"][b], trace[d - 1]["x"][b])


def test_depths_differ_between_sigma_10_and_sigma_50_inputs():
    _, low = _images(4, 10.0, 5)
    _, high = _images(4, 50.0, 5)
    net = _net(tol=0.05)
    with torch.no_grad():
        _, d_low, _ = net(torch.tensor(low), u=_policy_off(4, 30))
        _, d_high, _ = net(torch.tensor(high), u=_policy_off(4, 30))
    # the same images: the noisier version runs longer (never shorter), by about one step on average here
    assert (d_high >= d_low).all() and d_high.double().mean() >= d_low.double().mean() + 0.75, (
        d_low.tolist(), d_high.tolist())
    assert d_high.max() < 30  # both stopped by the rule


def test_gradients_reach_only_the_executed_steps():
    _, noisy = _images(4, 10.0, 6)
    noisy[2:] = _images(2, 50.0, 7)[1]
    net = _net(tol=0.05)
    x, depth, _ = net(torch.tensor(noisy), u=_policy_off(4, 30))
    assert len(set(depth.tolist())) > 1
    for b in range(4):
        (g,) = torch.autograd.grad(x[b].sum(), net.eta, retain_graph=True)
        d = depth[b].item()
        assert torch.all(g[d:] == 0), (b, d)
        assert torch.all(g[:d] != 0), (b, d)


def test_the_stochastic_policy_and_its_thresholded_form():
    _, noisy = _images(64, 20.0, 8)
    net = _net(tol=0.0, seed=3)  # tol = 0: the rule never stops a sample
    with torch.no_grad():
        net.bp.fill_(0.0)  # P(stop) = 1/2 at every step
        _, depth, p = net(torch.tensor(noisy))  # u drawn per sample and layer: geometric depths
        assert torch.allclose(p, torch.full_like(p, 0.5))
        assert 1.5 < depth.double().mean().item() < 2.5 and depth.max() > 2
        _, d_thr, _ = net(torch.tensor(noisy), u=torch.full((64, 30), 0.49, dtype=torch.float64))
        assert torch.all(d_thr == 1)  # thresholded: P(stop) = 0.5 > 0.49 stops at once
    again = _net(tol=0.0, seed=3)
    with torch.no_grad():
        again.bp.fill_(0.0)
        assert torch.equal(again(torch.tensor(noisy))[1], depth)  # the same seed gives the same depths


def test_convgru_cell_matches_the_gru_equations_and_passes_gradcheck():
    from unroll.runtime import ConvGRU

    torch.manual_seed(1)
    cell = ConvGRU(2, 3, kernel=3).double()
    x, h = torch.randn(2, 2, 5, 6, dtype=torch.float64), torch.randn(2, 3, 5, 6, dtype=torch.float64)

    def conv(weight, bias, v):  # zero-padded 'same' cross-correlation, as torch's conv2d
        out = np.zeros((weight.shape[0],) + v.shape[1:])
        for o in range(weight.shape[0]):
            out[o] = bias[o] + sum(signal.correlate2d(v[c], weight[o, c], mode="same", boundary="fill")
                                   for c in range(v.shape[0]))
        return out

    sig = lambda v: 1 / (1 + np.exp(-v))
    gw, gb = cell.gates.weight.detach().numpy(), cell.gates.bias.detach().numpy()
    cw, cb = cell.candidate.weight.detach().numpy(), cell.candidate.bias.detach().numpy()
    out = cell(x, h).detach().numpy()
    for b in range(2):
        xh = np.concatenate([x[b].numpy(), h[b].numpy()])
        gates = sig(conv(gw, gb, xh))
        z, r = gates[:3], gates[3:]
        n = np.tanh(conv(cw, cb, np.concatenate([x[b].numpy(), r * h[b].numpy()])))
        assert np.allclose(out[b], (1 - z) * h[b].numpy() + z * n, rtol=1e-12, atol=1e-13)
    assert torch.autograd.gradcheck(cell, (x[:1].clone().requires_grad_(), h[:1].clone().requires_grad_()))
    zero = ConvGRU(1, 2, init="zero").double()
    h1 = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    z = torch.sigmoid(zero.gates(torch.cat([torch.zeros(1, 1, 4, 4, dtype=torch.float64), h1], 1)))[:, :2]
    assert torch.allclose(zero(torch.zeros(1, 1, 4, 4, dtype=torch.float64), h1), (1 - z) * h1)


def test_gradcheck_through_the_masked_layers():
    _, noisy = _images(2, 30.0, 9)
    net = _net(layers=4, tol=0.05)
    y = torch.tensor(noisy[:, :, :6, :6])
    u = _policy_off(2, 4)
    eta = net.eta.detach().clone().requires_grad_()

    def run(eta_value):
        saved = net.eta
        del net.eta
        net.eta = eta_value
        try:
            return net(y, u=u)[0]
        finally:
            del net.eta
            net.eta = saved

    assert torch.autograd.gradcheck(run, (eta,))


def test_training_the_restorer_beats_diffusion_at_the_same_depth():
    torch.manual_seed(0)
    layers = 4
    clean_tr, noisy_tr = _images(24, 25.0, 10, size=8)
    clean_te, noisy_te = _images(24, 25.0, 11, size=8)
    scale = 255.0
    y_tr, y_te = torch.tensor(noisy_tr / scale), torch.tensor(noisy_te / scale)
    c_tr, c_te = torch.tensor(clean_tr / scale), torch.tensor(clean_te / scale)

    def mse(net, y, clean):
        return ((net(y, u=_policy_off(len(y), layers))[0] - clean) ** 2).mean()

    def classical(tau):
        with torch.no_grad():
            return mse(_net(layers=layers, tau=tau, tol=0.0), y_te, c_te).item()

    best, tau, _ = best_on_grid(classical, [0.05, 0.1, 0.15, 0.2, 0.25])
    net = _net(layers=layers, tau=tau, tol=0.0)
    adam(list(net.R.parameters()) + [net.eta], lambda: mse(net, y_tr, c_tr), steps=40, lr=5e-3)
    with torch.no_grad():
        trained = mse(net, y_te, c_te).item()
    print(f"durr: trained {trained:.4g}, diffusion at tau={tau} {best:.4g}")
    assert_beats_classical(trained, best, 0.9, "durr restorer")
