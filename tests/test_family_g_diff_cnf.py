"""cnf_euler (catalog G2): the Euler-discretised continuous normalizing flow, whose log-density
needs the trace of a Jacobian taken inside the forward pass (`jacobian`, `vjp` by autograd) and
Hutchinson's estimator with a Rademacher `noise`.  References: scipy.linalg.expm and
scipy.stats.multivariate_normal for the exact linear flow; a numpy Euler loop; float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll
from training_helpers import adam, assert_beats_classical

scipy_linalg = pytest.importorskip("scipy.linalg")
scipy_stats = pytest.importorskip("scipy.stats")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
D, K, T = 3, 4, 1.3


def _data(seed=0):
    rng = np.random.default_rng(seed)
    A0 = rng.standard_normal((D, D)) * 0.5
    W0 = rng.standard_normal((K, D))
    z0 = rng.standard_normal((5, D))
    return A0, W0, z0


@pytest.mark.parametrize("layers", [1, 3, 10])
def test_linear_flow_log_density_change_is_minus_T_trace_A_for_every_depth(layers):
    A0, W0, z0 = _data()
    net = unroll.load("cnf_euler", layers=layers)(A0=A0, W0=W0, T=T)
    with torch.no_grad():
        z, logp, _ = net(torch.tensor(z0))
    logp0 = -0.5 * (z0 ** 2).sum(1) - 0.5 * D * np.log(2 * np.pi)
    ell = logp.numpy() - logp0
    assert np.allclose(ell, -T * np.trace(A0), rtol=1e-13, atol=1e-13)
    # z^L: the Euler iteration z <- (I + hA) z, a numpy loop
    h, ref = T / layers, z0.T.copy()
    for _ in range(layers):
        ref = ref + h * (A0 @ ref)
    assert np.allclose(z.numpy(), ref.T, rtol=1e-13, atol=1e-13)


def test_log_density_equals_the_exact_linear_flow_density_from_scipy():
    A0, W0, z0 = _data(1)
    net = unroll.load("cnf_euler", layers=7)(A0=A0, W0=W0, T=T)
    _, logp, _ = (v.detach() for v in net(torch.tensor(z0)))  # evaluated with gradients enabled
    M = scipy_linalg.expm(A0 * T)
    for b in range(len(z0)):
        zT = M @ z0[b]
        ref = scipy_stats.multivariate_normal.logpdf(zT, mean=np.zeros(D), cov=M @ M.T)
        assert abs(logp[b].item() - ref) <= 1e-10 * abs(ref)


def test_euler_endpoint_converges_to_the_matrix_exponential():
    A0, W0, z0 = _data(2)
    M = scipy_linalg.expm(A0 * T)
    errors = []
    for layers in (10, 100):
        z, _, _ = unroll.load("cnf_euler", layers=layers)(A0=A0, W0=W0, T=T)(torch.tensor(z0))
        errors.append(np.abs(z.detach().numpy() - z0 @ M.T).max())
    assert errors[1] < errors[0] / 5  # first order in h


def test_hutchinson_estimate_is_unbiased_for_a_nonlinear_field():
    A0, W0, z0 = _data(3)
    net = unroll.load("cnf_euler", layers=4)(A0=A0, W0=W0, T=T, seed=11)
    with torch.no_grad():
        net.U.copy_(torch.tensor(np.random.default_rng(4).standard_normal((D, K))))
        net.c.copy_(torch.ones(K, dtype=torch.float64))
        draws = 10_000
        batch = torch.tensor(z0[0]).expand(draws, D).contiguous()
        _, logp, logp_hutch = net(batch)
    exact = logp[0].item()
    assert torch.allclose(logp, logp[0].expand(draws), rtol=0, atol=1e-12)  # the exact trace needs no noise
    mean, se = logp_hutch.mean().item(), logp_hutch.std().item() / draws ** 0.5
    assert se > 0 and abs(mean - exact) < 3 * se, (mean, exact, se)


def test_noise_is_seeded_overridable_and_outside_the_state_dict():
    A0, W0, z0 = _data()
    Net = unroll.load("cnf_euler", layers=3)
    a, b = Net(A0=A0, W0=W0, seed=5), Net(A0=A0, W0=W0, seed=5)
    with torch.no_grad():
        for net in (a, b):
            net.U.fill_(0.3)
        out_a, out_b = a(torch.tensor(z0))[2], b(torch.tensor(z0))[2]
        assert torch.equal(out_a, out_b)  # same seed, same draws
        assert not torch.equal(a(torch.tensor(z0))[2], out_a)  # the generator moves on
        eps = torch.ones(len(z0), 3, D, dtype=torch.float64)
        assert torch.equal(a(torch.tensor(z0), eps=eps)[2], b(torch.tensor(z0), eps=eps)[2])
        one = a(torch.tensor(z0[0]), eps=eps[0])[2]  # one unbatched sample with its noise [layers, d]
        assert one.shape == () and torch.allclose(one, a(torch.tensor(z0), eps=eps)[2][0], rtol=1e-14)
    keys = set(a.state_dict())
    assert {"A", "W", "U", "c"} <= keys and not any("eps" in k or "gen" in k or "seed" in k for k in keys)
    assert "seed" not in repr(a) and "Generator" not in repr(a)
    with pytest.raises(ValueError, match="eps: expected the noise of shape"):
        a(torch.tensor(z0), eps=torch.ones(len(z0), D, dtype=torch.float64))
    with pytest.raises(TypeError, match="seed"):
        Net(A0=A0, W0=W0, seed=1.5)
    a32 = Net(A0=A0.astype(np.float32), W0=W0.astype(np.float32), seed=5)
    assert a32(torch.tensor(z0, dtype=torch.float32))[2].dtype == torch.float32


def test_gradcheck_through_the_jacobian_trace_and_the_vjp():
    A0, W0, z0 = _data(5)
    net = unroll.load("cnf_euler", layers=2)(A0=A0, W0=W0, T=T)
    eps = torch.tensor(np.random.default_rng(6).choice([-1.0, 1.0], size=(2, 2, D)))
    z = torch.tensor(z0[:2])

    def rt_call(A, U, c):
        saved = (net.A, net.U, net.c)
        del net.A, net.U, net.c
        net.A, net.U, net.c = A, U, c
        try:
            return torch.cat([v.reshape(-1) for v in net(z, eps=eps)])
        finally:
            del net.A, net.U, net.c
            net.A, net.U, net.c = saved

    rng = np.random.default_rng(7)
    A = torch.tensor(A0, requires_grad=True)
    U = torch.tensor(rng.standard_normal((D, K)) * 0.5, requires_grad=True)
    c = torch.tensor(rng.standard_normal(K), requires_grad=True)
    assert torch.autograd.gradcheck(rt_call, (A, U, c))
    # and the same computation evaluated under no_grad gives the same values
    with torch.no_grad():
        values = rt_call(A.detach(), U.detach(), c.detach())
    assert torch.allclose(values, rt_call(A, U, c).detach(), rtol=0, atol=0)


def test_training_beats_the_untrained_flow_on_held_out_samples():
    """Reverse-KL training towards a target Gaussian N(0, S): the loss E[log p(z^L) - log q(z^L)] over
    base samples, the untrained flow (A = A0 = 0: the identity map) against the trained one."""
    torch.manual_seed(0)
    S = np.array([[2.0, 0.6, 0.0], [0.6, 1.0, 0.3], [0.0, 0.3, 0.5]])
    q = torch.distributions.MultivariateNormal(torch.zeros(D, dtype=torch.float64), torch.tensor(S))
    _, W0, _ = _data(8)
    net = unroll.load("cnf_euler", layers=4)(A0=np.zeros((D, D)), W0=W0, T=T)
    train = torch.randn(256, D, dtype=torch.float64)
    held_out = torch.randn(2048, D, dtype=torch.float64)

    def kl(batch):
        z, logp, _ = net(batch)
        return (logp - q.log_prob(z)).mean()

    with torch.no_grad():
        untrained = kl(held_out).item()
    losses = adam(net.parameters(), lambda: kl(train), steps=60, lr=0.05)
    with torch.no_grad():
        trained = kl(held_out).item()
    assert losses[-1] < losses[0]
    assert_beats_classical(trained, untrained, 0.5, "cnf_euler reverse KL")
