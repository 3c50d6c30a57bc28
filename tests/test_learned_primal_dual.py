"""learned_primal_dual: sub-networks (`net`), user operators (`operator[...]`), `cat`, channel indexing.

Catalog B6 test (c): with Gamma and Lambda set to fixed linear channel maps that implement one
gradient step f <- f - tau K*(K f - g), the network equals gradient descent exactly. The maps keep the
primal channels f[0] = 2 f[1] apart and leave h[1] at zero, so a spec that applied K to f[0] or K* to h[1]
fails the test.
Both learned_primal_dual and lpd_nodule_detection (reconstruction and detection head) are also compared,
with random weights in every CNN, with a numpy loop written from the equations of [37] (float64, every
layer), so an error shared by the two specs is caught."""

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


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
    na, nd, layers = 4, 6, 3
    K64 = rng.standard_normal((na * nd, hx * wx)) / 6
    Kmat = torch.tensor(K64, dtype=torch.float32)

    class Ray:  # an operator object with forward/adjoint on batches of images
        def forward(self, x):
            return (x.reshape(x.shape[0], -1) @ Kmat.T).reshape(x.shape[0], na, nd)

        def adjoint(self, y):
            return (y.reshape(y.shape[0], -1) @ Kmat).reshape(y.shape[0], hx, wx)

    from unroll.runtime import adjoint_test

    op = Ray()
    assert adjoint_test(op.forward, op.adjoint, torch.randn(1, hx, wx), torch.randn(1, na, nd)) < 1e-5
    Net = unroll.load("learned_primal_dual", layers=layers)
    net = Net(K=op, hx=hx, wx=wx, na=na, nd=nd)
    assert len(net.Gamma) == layers and len(net.Lambda) == layers  # per layer

    def phantoms(n):
        x = torch.zeros(n, hx, wx)
        x[:, 1:4, 2:5] = 1.0
        return x * torch.rand(n, 1, 1)

    x_true, x_test = phantoms(16), phantoms(64)
    g, g_test = op.forward(x_true), op.forward(x_test)
    assert torch.equal(net(g), torch.zeros(16, hx, wx))  # init=zero: the untrained network returns 0
    adam(net.parameters(), lambda: (net(g) - x_true).square().mean(), 40, 3e-3)
    with torch.no_grad():
        learned = (net(g_test) - x_test).square().mean().item()
    # classical at the same depth: `layers` gradient-descent steps on 1/2||K x - g||^2 from 0 (what the
    # network reduces to, see above), numpy float64, best step of a grid on the held-out set
    gt, xt = g_test.double().numpy().reshape(64, -1), x_test.double().numpy().reshape(64, -1)

    def gd_mse(c):
        x = np.zeros_like(xt)
        for _ in range(layers):
            x = x - c / np.linalg.norm(K64, 2) ** 2 * (x @ K64.T - gt) @ K64
        return np.mean((x - xt) ** 2)

    classical, c, _ = best_on_grid(gd_mse, (0.5, 1.0, 1.9, 3.0, 5.0))
    print(f"\nlearned_primal_dual: held-out MSE gradient descent (step {c}/||K||^2) {classical:.4f}, "
          f"trained {learned:.4f}")
    assert_beats_classical(learned, classical, 0.2, "learned_primal_dual, held-out MSE")
    single = net(g[0])
    assert single.shape == (hx, wx) and torch.allclose(single, net(g)[0], atol=1e-6)


# ------------------------------------------------------------------ an independent numpy LPD loop
def np_conv3x3(x, w, b):
    """Cross-correlation with zero padding 1 ('same' size), as a CNN layer: x [c_in, h, w],
    w [c_out, c_in, 3, 3], b [c_out] -> [c_out, h, w]."""
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    h, wd = x.shape[1:]
    out = np.zeros((w.shape[0], h, wd)) + b[:, None, None]
    for di in range(3):
        for dj in range(3):
            out += np.einsum("oc,chw->ohw", w[:, :, di, dj], xp[:, di:di + h, dj:dj + wd])
    return out


def np_cnn(layers, x):
    """3x3 convolutions with a per-channel PReLU between them: layers = [("conv", w, b), ("prelu", a), ...]."""
    for layer in layers:
        if layer[0] == "conv":
            x = np_conv3x3(x, layer[1], layer[2])
        else:
            x = np.where(x >= 0, x, layer[1][:, None, None] * x)
    return x


def set_random_cnn(cnn, rng):
    """Give a CNN block random weights (drawn here, in numpy) and return them for np_cnn."""
    layers = []
    with torch.no_grad():
        for m in cnn.body:
            if isinstance(m, torch.nn.Conv2d):
                w = rng.standard_normal(m.weight.shape) / np.sqrt(9 * m.in_channels)
                b = 0.1 * rng.standard_normal(m.bias.shape)
                m.weight.copy_(torch.from_numpy(w))
                m.bias.copy_(torch.from_numpy(b))
                layers.append(("conv", w, b))
            else:
                a = rng.uniform(0.1, 0.5, m.weight.shape)
                m.weight.copy_(torch.from_numpy(a))
                layers.append(("prelu", a))
    return layers


def np_learned_primal_dual(Kmat, g, gammas, lambdas, hx, wx):
    """Adler & Oktem [37], 5 memory channels each, h^0 = f^0 = 0, 0-based channels:
    h^i = h^{i-1} + Gamma_i([h^{i-1}, K f^{i-1}_1, g]),  f^i = f^{i-1} + Lambda_i([f^{i-1}, K^T h^i_0]).
    Returns [(h^i, f^i) for i = 0..I] for one sample g [na, nd]."""
    na, nd = g.shape
    h, f = np.zeros((5, na, nd)), np.zeros((5, hx, wx))
    out = [(h, f)]
    for gamma, lam in zip(gammas, lambdas):
        Kf1 = (Kmat @ f[1].ravel()).reshape(na, nd)
        h = h + np_cnn(gamma, np.concatenate([h, Kf1[None], g[None]]))
        KTh0 = (Kmat.T @ h[0].ravel()).reshape(hx, wx)
        f = f + np_cnn(lam, np.concatenate([f, KTh0[None]]))
        out.append((h, f))
    return out


def test_learned_primal_dual_and_nodule_detection_equal_a_numpy_lpd_loop():
    # random weights everywhere (the memory channels all differ), float64, every layer; the detection head
    # of lpd_nodule_detection is the numpy CNN applied to the reconstruction f^I_0
    rng = np.random.default_rng(3)
    hx, wx, na, nd, layers = 6, 5, 4, 7, 3
    Kmat = rng.standard_normal((na * nd, hx * wx)) / np.sqrt(hx * wx)
    g = rng.standard_normal((2, na, nd))
    dims = {"hx": hx, "wx": wx, "na": na, "nd": nd}
    for spec in ("learned_primal_dual", "lpd_nodule_detection"):
        net = unroll.load(spec, layers=layers)(K=torch.from_numpy(Kmat), **dims).double()
        gammas = [set_random_cnn(net.Gamma[i], rng) for i in range(layers)]
        lambdas = [set_random_cnn(net.Lambda[i], rng) for i in range(layers)]
        head = set_random_cnn(net.D, rng) if spec == "lpd_nodule_detection" else None
        with torch.no_grad():
            trace = net.trace(torch.from_numpy(g))
            out = net(torch.from_numpy(g))
        x = (out[0] if head else out).numpy()
        for b in range(2):
            ref = np_learned_primal_dual(Kmat, g[b], gammas, lambdas, hx, wx)
            f_last = ref[-1][1]
            assert np.abs(f_last[0] - f_last[1]).max() > 0.1 and np.abs(ref[-1][0][1]).max() > 0.1  # not vacuous
            for layer in range(1, layers + 1):
                assert rel(trace[layer]["h"][b].numpy(), ref[layer][0]) < 1e-10, (spec, b, layer)
                assert rel(trace[layer]["f"][b].numpy(), ref[layer][1]) < 1e-10, (spec, b, layer)
            assert rel(x[b], f_last[0]) < 1e-10
            if head:
                assert rel(out[1][b].numpy(), np_cnn(head, f_last[0][None])[0]) < 1e-10
