"""learned_primal_dual: sub-networks (`net`), user operators (`operator[...]`), `cat`, channel indexing.

Catalog B6 test (c): with Gamma and Lambda set to fixed linear channel maps that implement one
gradient step f <- f - tau K*(K f - g), the network equals gradient descent exactly. The maps keep the
primal channels f[0] = 2 f[1] apart and leave h[1] at zero, so a spec that applied K to f[0] or K* to h[1]
fails the test."""

import numpy as np
import torch
import unroll


def _set_linear(cnn, mix: torch.Tensor):
    """Make a 3-layer CNN compute out = mix @ in (per pixel): identity convs, PReLU slopes 1."""
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    prelus = [m for m in cnn.modules() if isinstance(m, torch.nn.PReLU)]
    n_in = convs[0].in_channels
    with torch.no_grad():
        for p in prelus:
            p.weight.fill_(1.0)
        for conv in convs:
            conv.weight.zero_()
            conv.bias.zero_()
        for j in range(n_in):
            convs[0].weight[j, j, 1, 1] = 1.0
            convs[1].weight[j, j, 1, 1] = 1.0
        convs[2].weight[:, :n_in, 1, 1] = mix


def test_learned_primal_dual_reduces_to_gradient_descent():
    rng = np.random.default_rng(0)
    hx = wx = 4
    na, nd = 3, 5
    Kmat = rng.standard_normal((na * nd, hx * wx)) / 4
    g = rng.standard_normal((2, na, nd))
    tau = 0.9 / np.linalg.norm(Kmat, 2) ** 2
    layers = 6
    Net = unroll.load("learned_primal_dual", layers=layers)
    net = Net(K=torch.from_numpy(Kmat), hx=hx, wx=wx, na=na, nd=nd).double()
    # Gamma(cat(h[5], K f1, g)) -> channel 0: -h0 + K f1 - g  (so h0 becomes the residual K f1 - g)
    gamma = torch.zeros(5, 7, dtype=torch.float64)
    gamma[0, 0], gamma[0, 5], gamma[0, 6] = -1.0, 1.0, -1.0
    # Lambda(cat(f[5], K* h0)) -> f1 += -tau K* h0, and f0 := 2 * (the new f1): the output f0 is twice the
    # gradient-descent iterate, while the iteration itself must read f1 (and h0; h1..h4 stay 0)
    lam = torch.zeros(5, 6, dtype=torch.float64)
    lam[1, 5] = -tau
    lam[0, 0], lam[0, 1], lam[0, 5] = -1.0, 2.0, -2.0 * tau
    for i in range(layers):
        _set_linear(net.Gamma[i], gamma)
        _set_linear(net.Lambda[i], lam)
    out = net(torch.from_numpy(g)).detach().numpy() / 2
    states = net.trace(torch.from_numpy(g))[-1]
    f, h = states["f"].detach().numpy(), states["h"].detach().numpy()
    assert np.abs(f[:, 0] - 2 * f[:, 1]).max() < 1e-12 and np.abs(f[:, 1]).max() > 0.1  # channels differ
    assert np.abs(h[:, 1:]).max() == 0 and np.abs(h[:, 0]).max() > 0.1
    for b in range(2):
        x = np.zeros(hx * wx)
        for _ in range(layers):
            x = x - tau * Kmat.T @ (Kmat @ x - g[b].reshape(-1))
        assert np.abs(out[b].reshape(-1) - x).max() / np.abs(x).max() < 1e-10


def test_learned_primal_dual_operator_object_and_training():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    hx = wx = 6
    na, nd = 4, 6
    Kmat = torch.tensor(rng.standard_normal((na * nd, hx * wx)) / 6, dtype=torch.float32)

    class Ray:  # an operator object with forward/adjoint on batches of images
        def forward(self, x):
            return (x.reshape(x.shape[0], -1) @ Kmat.T).reshape(x.shape[0], na, nd)

        def adjoint(self, y):
            return (y.reshape(y.shape[0], -1) @ Kmat).reshape(y.shape[0], hx, wx)

    from unroll.runtime import adjoint_test

    op = Ray()
    assert adjoint_test(op.forward, op.adjoint, torch.randn(1, hx, wx), torch.randn(1, na, nd)) < 1e-5
    Net = unroll.load("learned_primal_dual", layers=3)
    net = Net(K=op, hx=hx, wx=wx, na=na, nd=nd)
    assert len(net.Gamma) == 3 and len(net.Lambda) == 3  # per layer
    x_true = torch.zeros(16, hx, wx)
    x_true[:, 1:4, 2:5] = 1.0
    x_true = x_true * torch.rand(16, 1, 1)
    g = op.forward(x_true)
    assert torch.equal(net(g), torch.zeros(16, hx, wx))  # init=zero: the untrained network returns 0
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    first = None
    for _ in range(40):
        loss = (net(g) - x_true).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    single = net(g[0])
    assert single.shape == (hx, wx) and torch.allclose(single, net(g)[0], atol=1e-6)
