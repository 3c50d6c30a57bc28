"""Conv-ISTA: fbpconvnet (A11).

fbpconvnet            (a) matrix-form ISTA with the dense circulant blur matrix equals the conv-form network
                      at every layer (float64, <= 1e-10), the default filter is delta - (h~ * h) / mu;
                      the ISTA objective never increases; the FBPConvNet read-out starts as b = H^T y / mu;
                      trained, both read-outs beat ISTA at depth L (numpy, best lam of a grid) on held-out
                      images.
                      (b) of the catalog (FBP vs skimage.transform.iradon) is not done: scikit-image is not
                      available and the spec has no FBP stage (its pre-stage is H^T y / mu).
"""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import soft
from test_learned_pd_family import rel, to_np
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


# ====================================================================== A11: conv-ISTA / FBPConvNet
def np_circ_conv(hk, x):
    """Circular convolution of images [..., h, w] with a kernel whose centre is at ((s-1)/2, (s-1)/2)."""
    c = (hk.shape[0] - 1) // 2
    out = np.zeros_like(x)
    for a in range(hk.shape[0]):
        for b in range(hk.shape[1]):
            out = out + hk[a, b] * np.roll(x, (a - c, b - c), axis=(-2, -1))
    return out


def circulant_matrix(hk, h, w):
    eye = np.eye(h * w).reshape(h * w, h, w)
    return np_circ_conv(hk, eye).reshape(h * w, h * w).T  # column j = H e_j


def blur_kernel(s, seed, signed=False):
    """A 3x3 PSF zero-padded to s x s (s >= 5 so that its autocorrelation fits)."""
    rng = np.random.default_rng(seed)
    k = rng.standard_normal((3, 3)) if signed else rng.uniform(0.2, 1.0, (3, 3))
    k /= np.abs(k).sum()
    hk = np.zeros((s, s))
    c = (s - 1) // 2
    hk[c - 1:c + 2, c - 1:c + 2] = k
    return hk


def np_ista(Hmat, y, lam, mu, layers):
    x = np.zeros((y.shape[0], Hmat.shape[1]))
    out = [x]
    for _ in range(layers):
        x = soft(x - (x @ Hmat.T - y) @ Hmat / mu, lam / mu)
        out.append(x)
    return out


def sparse_images(batch, h, w, rng, k=4):
    X = np.zeros((batch, h * w))
    for i in range(batch):
        X[i, rng.choice(h * w, k, replace=False)] = rng.uniform(0.5, 1.5, k) * rng.choice([-1, 1], k)
    return X.reshape(batch, h, w)


@pytest.mark.parametrize("s, signed, lam", [(5, False, 0.05), (7, True, 0.02)])
def test_fbpconvnet_conv_ista_equals_matrix_ista(s, signed, lam):
    rng = np.random.default_rng(2)
    h, w, layers = 10, 9, 15
    hk = blur_kernel(s, seed=s, signed=signed)
    Hmat = circulant_matrix(hk, h, w)
    X = sparse_images(3, h, w, rng)
    y = (X.reshape(3, -1) @ Hmat.T).reshape(3, h, w) + 0.01 * rng.standard_normal((3, h, w))
    mu = np.abs(hk).sum() ** 2
    assert mu >= np.linalg.norm(Hmat, 2) ** 2 * (1 - 1e-12)  # a valid ISTA step 1/mu
    if not signed:
        assert abs(mu - np.linalg.norm(Hmat, 2) ** 2) < 1e-12  # equal for a nonnegative kernel
    Net = unroll.load("fbpconvnet", layers=layers)
    net = Net(hk=hk, H=torch.from_numpy(Hmat), lam=lam, k1=h, k2=w, h=h, w=w)
    # default filter: delta - (h~ * h) / mu, centred, with h~ * h the autocorrelation of the PSF
    c = (s - 1) // 2
    auto = np.zeros((s, s))
    for a in range(-c, c + 1):
        for b in range(-c, c + 1):
            auto[c + a, c + b] = np.sum(hk * np.roll(hk, (-a, -b), axis=(0, 1)))
    delta = np.zeros((s, s))
    delta[c, c] = 1
    wf = to_np(net.parameter_values()["wf"])
    assert wf.shape == (layers, s, s) and np.abs(wf - (delta - auto / mu)).max() < 1e-14
    with torch.no_grad():
        trace = net.trace(torch.from_numpy(y))
        xout, xnet = net(torch.from_numpy(y))
    ref = np_ista(Hmat, y.reshape(3, -1), lam, mu, layers)
    errs = [rel(trace[layer]["x"][:, 0].reshape(3, -1).numpy(), ref[layer]) for layer in range(1, layers + 1)]
    assert max(errs) < 1e-10, errs
    assert np.abs(trace[0]["x"].numpy()).max() == 0
    assert rel(xout.numpy().reshape(3, -1), ref[-1]) < 1e-10
    # the FBPConvNet read-out starts as its pre-stage b = H^T y / mu (zero-initialised residual CNN)
    assert rel(xnet.numpy().reshape(3, -1), y.reshape(3, -1) @ Hmat / mu) < 1e-14
    # the objective 1/2||y - Hx||^2 + lam||x||_1 never increases (ISTA with step 1/mu <= 1/||H||^2)
    f = [0.5 * np.sum((x @ Hmat.T - y.reshape(3, -1)) ** 2) + lam * np.abs(x).sum() for x in ref]
    fnet = [0.5 * np.sum((st["x"][:, 0].reshape(3, -1).numpy() @ Hmat.T - y.reshape(3, -1)) ** 2)
            + lam * np.abs(st["x"].numpy()).sum() for st in trace]
    assert all(b <= a + 1e-12 * abs(a) for a, b in itertools.pairwise(fnet))
    assert rel(fnet, f) < 1e-10


def psf_in_window(s, top, left, size, seed=9):
    """A nonnegative size x size PSF placed at (top, left) of an s x s window (not necessarily centred)."""
    k = np.random.default_rng(seed).uniform(0.2, 1.0, (size, size))
    hk = np.zeros((s, s))
    hk[top:top + size, left:left + size] = k / k.sum()
    return hk


@pytest.mark.parametrize("s, top, left, size", [(5, 0, 0, 3), (7, 2, 3, 4), (9, 2, 2, 5)])
def test_fbpconvnet_psf_that_fits_builds_and_equals_ista(s, top, left, size):
    # the precondition is the width of the PSF's support (at most (s+1)/2), not its place in the window
    rng = np.random.default_rng(2)
    h, w, layers = 10, 10, 15
    hk = psf_in_window(s, top, left, size)
    Hmat = circulant_matrix(hk, h, w)
    X = sparse_images(3, h, w, rng)
    y = (X.reshape(3, -1) @ Hmat.T).reshape(3, h, w)
    net = unroll.load("fbpconvnet", layers=layers)(hk=hk, H=torch.from_numpy(Hmat), lam=0.05, k1=h, k2=w, h=h, w=w)
    with torch.no_grad():
        xout, _ = net(torch.from_numpy(y))
    ref = np_ista(Hmat, y.reshape(3, -1), 0.05, np.abs(hk).sum() ** 2, layers)
    assert rel(xout.numpy().reshape(3, -1), ref[-1]) < 1e-10
    f32 = {"dtype": torch.float32}
    unroll.load("fbpconvnet", layers=2)(hk=torch.tensor(hk, **f32), H=torch.tensor(Hmat, **f32),
                                        k1=h, k2=w, h=h, w=w)  # float32 rounding does not trip the check


@pytest.mark.parametrize("s, size", [(5, 4), (5, 5), (7, 5)])
def test_fbpconvnet_requires_the_psf_autocorrelation_to_fit(s, size):
    # a PSF wider than (s+1)/2: h~ * h wraps around the s x s window, the default filter is not H^T H and
    # the untrained network is not ISTA (7-38 % off after 15 layers); construction refuses it
    hk = psf_in_window(s, 0, 0, size)
    Hmat = circulant_matrix(hk, 10, 10)
    with pytest.raises(ValueError, match="`hk`.*must fit in the s x s window"):
        unroll.load("fbpconvnet", layers=2)(hk=hk, H=torch.from_numpy(Hmat), k1=10, k2=10, h=10, w=10)


def test_fbpconvnet_operator_as_callables():
    # H given matrix-free, as a pair of callables (a roll-based circular convolution and its adjoint)
    hk = blur_kernel(5, seed=1)
    h, w = 8, 8
    hk_t = torch.from_numpy(hk)
    c = 2

    taps = [(a, b) for a in range(5) for b in range(5)]

    def fwd(x):
        return sum(hk_t[a, b] * torch.roll(x, (a - c, b - c), dims=(-2, -1)) for a, b in taps)

    def adj(x):
        return sum(hk_t[a, b] * torch.roll(x, (c - a, c - b), dims=(-2, -1)) for a, b in taps)

    Net = unroll.load("fbpconvnet", layers=6)
    y = torch.from_numpy(np.random.default_rng(3).standard_normal((2, h, w)))
    a = Net(hk=hk, H=(fwd, adj), k1=h, k2=w, h=h, w=w)(y)
    b = Net(hk=hk, H=torch.from_numpy(circulant_matrix(hk, h, w)), k1=h, k2=w, h=h, w=w)(y)
    assert all(rel(to_np(u), to_np(v)) < 1e-13 for u, v in zip(a, b))


def test_fbpconvnet_training():
    # classical: ISTA (numpy, dense circulant H) at the same depth with the best lam of a grid on the
    # held-out images, for both read-outs (conv-ISTA x and FBPConvNet b + U(b)); the network starts from it
    # measured: ISTA 0.0245 (lam 0.02), conv-ISTA 0.0140, FBPConvNet 0.0133
    torch.manual_seed(0)
    rng = np.random.default_rng(4)
    h = w = 10
    layers = 5
    hk = blur_kernel(5, seed=9)
    Hmat64 = circulant_matrix(hk, h, w)
    Hmat = torch.tensor(Hmat64, dtype=torch.float32)
    mu = np.abs(hk).sum() ** 2

    def data(batch):
        X = torch.tensor(sparse_images(batch, h, w, rng), dtype=torch.float32)
        y = (X.reshape(batch, -1) @ Hmat.T).reshape(batch, h, w)
        return X, y + 0.01 * torch.randn_like(y)

    Xtr, ytr = data(64)
    Xte, yte = data(64)
    Xte64, yte64 = Xte.double().numpy().reshape(64, -1), yte.double().numpy().reshape(64, -1)

    def ista_mse(lam):
        return np.mean((np_ista(Hmat64, yte64, lam, mu, layers)[-1] - Xte64) ** 2)

    classical, lam, _ = best_on_grid(ista_mse, (0.005, 0.01, 0.02, 0.05, 0.1, 0.2))
    net = unroll.load("fbpconvnet", layers=layers)(hk=torch.tensor(hk, dtype=torch.float32), H=Hmat, lam=lam,
                                                  k1=h, k2=w, h=h, w=w)
    with torch.no_grad():  # untrained: that ISTA (float32 module)
        assert abs((net(yte)[0] - Xte).square().mean().item() - classical) < 1e-5 * classical

    def loss():
        xo, xn = net(ytr)
        return (xo - Xtr).square().mean() + (xn - Xtr).square().mean()

    losses = adam(net.parameters(), loss, 60, 3e-3)
    with torch.no_grad():
        xo, xn = net(yte)
        ista_mse_t, fbp_mse_t = (xo - Xte).square().mean().item(), (xn - Xte).square().mean().item()
    print(f"\nfbpconvnet: train loss {losses[0]:.4f} -> {losses[-1]:.4f}; held-out MSE ISTA({layers}) (lam {lam}) "
          f"{classical:.4f}, conv-ISTA {ista_mse_t:.4f}, FBPConvNet {fbp_mse_t:.4f}")
    assert_beats_classical(ista_mse_t, classical, 0.7, "fbpconvnet conv-ISTA read-out, held-out MSE")
    assert_beats_classical(fbp_mse_t, classical, 0.7, "fbpconvnet FBPConvNet read-out, held-out MSE")
    assert not torch.equal(net.wf[0], net.wf[1])  # per-layer filters trained apart
