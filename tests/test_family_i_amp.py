"""Family I1 (catalog): `ldit`, `ldamp` (learned D-IT / D-AMP) and `bm3d_amp` (D-AMP with an external
denoiser given as function data; BM3D from PyPI `bm3d` as the benchmark baseline). float64 throughout.

References are numpy loops written from the papers (Metzler, Maleki, Baraniuk, "From denoising to
compressed sensing", IEEE T-IT 2016, eqs. (7)-(8) for D-AMP and D-IT; Donoho, Maleki, Montanari 2009
for AMP), the shipped `amp` network, and autograd's Jacobian for the divergence.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import unroll

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H = W = 8
N = H * W
M = 40
ALPHA = 1.5


def _problem(batch=6, k=6, noise=0.01, seed=0, m=M, h=H, w=W):
    """A with i.i.d. N(0, 1/m) entries, k-sparse images [h, w] with N(0, 9) nonzeros, y = A vec(x) + noise."""
    rng = np.random.default_rng(seed)
    n = h * w
    A = rng.standard_normal((m, n)) / math.sqrt(m)
    x = np.zeros((batch, n))
    for i in range(batch):
        x[i, rng.choice(n, k, replace=False)] = 3 * rng.standard_normal(k)
    y = x @ A.T + noise * rng.standard_normal((batch, m))
    return A, x, y


def _soft_np(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0.0)


def damp_mc_numpy(A, y, probes, alpha):
    """D-AMP with D = soft threshold at alpha * sigma_t and the Monte-Carlo divergence of D-AMP (Metzler et al.
    2016 §III-D; Ramani, Blu, Unser 2008): div = b^T (D(r + eps b) - D(r)) / eps, eps = max|r| / 1000 + machine
    epsilon, b = probes[sample, layer] (flattened)."""
    m = A.shape[0]
    xs = []
    for yi, bs in zip(np.atleast_2d(y), probes):
        x, z, div = np.zeros(A.shape[1]), np.zeros(m), 0.0
        for b in bs:
            b = b.reshape(-1)
            z = yi - A @ x + z * div / m
            sigma = np.linalg.norm(z) / math.sqrt(m)
            r = x + A.T @ z
            eps = np.max(np.abs(r)) / 1000 + np.finfo(np.float64).eps
            x = _soft_np(r, alpha * sigma)
            div = float(b @ (_soft_np(r + eps * b, alpha * sigma) - x)) / eps
        xs.append(x)
    return np.stack(xs)


def damp_numpy(A, y, layers, alpha, onsager=True):
    """D-AMP (onsager=True) / D-IT (False) with D = soft threshold at alpha * sigma_t and its exact divergence
    ||D(r)||_0, written from Metzler et al. 2016 eqs. (7)-(8): z^t = y - A x^t + z^{t-1} div^{t-1} / m,
    sigma_t = ||z^t|| / sqrt(m), x^{t+1} = D(x^t + A^T z^t), div^t = div D(x^t + A^T z^t). One sample per row."""
    m = A.shape[0]
    xs = []
    for yi in np.atleast_2d(y):
        x = np.zeros(A.shape[1])
        z = np.zeros(m)
        div = 0.0
        for _ in range(layers):
            z = yi - A @ x + (z * div / m if onsager else 0.0)
            sigma = np.linalg.norm(z) / math.sqrt(m)
            r = x + A.T @ z
            x = _soft_np(r, alpha * sigma)
            div = float(np.count_nonzero(x))
        xs.append(x)
    return np.stack(xs)


def _soft_torch(r, sigma):
    """The soft threshold at ALPHA * sigma as function data: r [batch, h, w], sigma [batch]."""
    t = ALPHA * sigma.reshape(-1, *([1] * (r.dim() - 1)))
    return torch.sign(r) * torch.clamp(r.abs() - t, min=0)


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


# ---------------------------------------------------------------- (a) exact divergence: = amp and the numpy loop
@pytest.mark.parametrize("layers", [1, 4, 10])
def test_ldamp_untrained_equals_amp_and_numpy_damp(layers):
    A, _, y = _problem()
    net = unroll.load("ldamp", layers=layers)(torch.tensor(A), M=M, h=H, w=W)
    got = net(torch.tensor(y)).reshape(len(y), -1).detach().numpy()
    want = damp_numpy(A, y, layers, ALPHA)
    amp = unroll.load("amp", layers=layers)(torch.tensor(A), alpha=ALPHA)(torch.tensor(y)).numpy()
    assert np.count_nonzero(want) > 0 and _rel(want, np.zeros_like(want)) > 0
    assert _rel(got, want) <= 1e-10, _rel(got, want)
    assert _rel(got, amp) <= 1e-10, _rel(got, amp)


def test_ldamp_uses_the_onsager_term():
    """D-AMP and D-IT differ (the reference loop is not the same for both: the test above can fail)."""
    A, _, y = _problem()
    assert _rel(damp_numpy(A, y, 6, ALPHA), damp_numpy(A, y, 6, ALPHA, onsager=False)) > 1e-3


@pytest.mark.parametrize("layers", [1, 5])
def test_ldit_untrained_equals_numpy_dit(layers):
    A, _, y = _problem(m=56)
    net = unroll.load("ldit", layers=layers)(torch.tensor(A), M=56, h=H, w=W)
    got = net(torch.tensor(y)).reshape(len(y), -1).detach().numpy()
    want = damp_numpy(A, y, layers, ALPHA, onsager=False)
    assert _rel(got, want) <= 1e-10, _rel(got, want)


# ---------------------------------------------------------------- (b) Monte-Carlo divergence: within its error
def test_bm3d_amp_with_given_probes_equals_numpy_damp_with_the_mc_divergence():
    """With the probes given to forward, bm3d_amp (D = soft threshold) equals the numpy D-AMP loop with the
    Monte-Carlo divergence written from the paper, sample by sample."""
    A, _, y = _problem()
    layers = 8
    probes = np.random.default_rng(7).standard_normal((len(y), layers, H, W))
    net = unroll.load("bm3d_amp", layers=layers)(torch.tensor(A), _soft_torch, M=M, h=H, w=W)
    got = net(torch.tensor(y), b=torch.tensor(probes)).reshape(len(y), -1).numpy()
    want = damp_mc_numpy(A, y, probes, ALPHA)
    assert _rel(got, want) <= 1e-10, _rel(got, want)
    assert _rel(want, damp_numpy(A, y, layers, ALPHA)) > 1e-3  # the estimate is not the exact divergence



def test_bm3d_amp_with_soft_threshold_mc_divergence_within_mc_error():
    """D-AMP with D = soft threshold as function data and the Monte-Carlo divergence. At the first layer the
    pseudo-data r = A^T y is the same as AMP's, and b^T (soft(r + eps b) - soft(r)) / eps = sum over the
    support of b_i^2 (no entry crosses the threshold): a chi-square with k = ||x^1||_0 degrees of freedom,
    mean k, variance 2k. Over many probes (a batch of copies of y) the mean is within 4 standard errors of
    the exact divergence; the reconstructions stay within a few per cent of AMP's."""
    A, x_true, y = _problem(batch=1, m=48)
    copies = 400
    net = unroll.load("bm3d_amp", layers=8)(torch.tensor(A), _soft_torch, M=48, h=H, w=W, seed=5)
    trace = net.trace(torch.tensor(y).repeat(copies, 1))
    k = np.count_nonzero(damp_numpy(A, y, 1, ALPHA))
    dv = trace[1]["dv"].numpy()
    assert abs(dv.mean() - k) <= 4 * math.sqrt(2 * k / copies), (dv.mean(), k)
    assert abs(dv.var() - 2 * k) <= 0.3 * 2 * k, (dv.var(), 2 * k)  # it is Monte-Carlo, not exact
    exact = damp_numpy(A, y, 8, ALPHA)
    got = trace[-1]["x"].reshape(copies, -1).numpy()
    err_exact = np.linalg.norm(exact - x_true) / np.linalg.norm(x_true)
    err_mc = np.linalg.norm(got - x_true, axis=1) / np.linalg.norm(x_true)
    assert abs(np.median(err_mc) - err_exact) <= 0.05, (np.median(err_mc), err_exact)


# ---------------------------------------------------------------- (c) Monte-Carlo divergence = Jacobian trace
def _smooth_denoiser(r, sigma):
    """A smooth, non-separable denoiser: a 3x3 blur, then a smooth shrinkage scaled by sigma."""
    kernel = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=r.dtype) / 16
    blurred = torch.nn.functional.conv2d(r.unsqueeze(1), kernel[None, None], padding=1)[:, 0]
    s = sigma.reshape(-1, 1, 1)
    return blurred * torch.tanh(blurred ** 2 / s ** 2)


def test_mc_divergence_matches_the_autograd_jacobian_trace():
    A, _, y = _problem(batch=1, m=48, h=12, w=12)
    copies = 300
    net = unroll.load("bm3d_amp", layers=2)(torch.tensor(A), _smooth_denoiser, M=48, h=12, w=12, seed=2)
    dv = net.trace(torch.tensor(y).repeat(copies, 1))[1]["dv"].numpy()
    yt = torch.tensor(y[0])
    r = (torch.tensor(A).T @ yt).reshape(12, 12)  # the first pseudo-data: x^0 = 0, z^0 = y
    sigma = torch.linalg.vector_norm(yt) / math.sqrt(48)
    J = torch.autograd.functional.jacobian(lambda v: _smooth_denoiser(v.reshape(1, 12, 12), sigma.reshape(1))
                                           .reshape(-1), r.reshape(-1))
    trace = float(torch.trace(J))
    assert trace > 5 and not torch.allclose(J, torch.diag(torch.diagonal(J)))  # non-separable, not tiny
    assert abs(dv.mean() - trace) <= 0.05 * abs(trace), (dv.mean(), trace)


def test_ldamp_divergence_is_exact_for_the_threshold_and_monte_carlo_for_the_cnn():
    """With nonzero CNN weights, ldamp's divergence at the first layer is ||soft(r)||_0 (exact) plus the
    Monte-Carlo estimate of the CNN's divergence, whose mean over probes is the autograd Jacobian trace."""
    A, _, y = _problem(batch=1, m=48)
    copies = 2000
    net = unroll.load("ldamp", layers=2)(torch.tensor(A), M=48, h=H, w=W, width=4, depth=2, seed=3)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in net.F.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    dv = net.trace(torch.tensor(y).repeat(copies, 1))[1]["dv"].detach().numpy()
    yt = torch.tensor(y[0])
    r = (torch.tensor(A).T @ yt).reshape(H, W)
    sigma = float(torch.linalg.vector_norm(yt)) / math.sqrt(48)
    cnn = net.F[0]

    def learned(v):
        return cnn(torch.stack([v.reshape(H, W), torch.full((H, W), sigma, dtype=v.dtype)])[None])[0, 0].reshape(-1)

    J = torch.autograd.functional.jacobian(learned, r.reshape(-1))
    threshold_part = np.count_nonzero(_soft_np(r.numpy(), ALPHA * sigma))
    exact = threshold_part + float(torch.trace(J))
    standard_error = dv.std() / math.sqrt(copies)
    assert abs(dv.mean() - exact) <= 4 * standard_error and abs(dv.mean() - exact) <= 0.05 * abs(exact), \
        (dv.mean(), exact, standard_error)
    assert abs(dv.mean() - threshold_part) > 4 * standard_error  # the CNN's part is measured, not negligible


# ---------------------------------------------------------------- BM3D-AMP with the real BM3D
def _bm3d_denoiser(r, sigma):
    """BM3D (PyPI `bm3d`, its hard-thresholding stage: BM3D-AMP's choice for speed) on each image of the batch
    at its noise level."""
    import bm3d

    out = [torch.from_numpy(np.asarray(bm3d.bm3d(img.numpy(), sigma_psd=max(float(s), 1e-6),
                                                 stage_arg=bm3d.BM3DStages.HARD_THRESHOLDING), dtype=np.float64))
           for img, s in zip(r.detach().cpu(), sigma.detach().cpu())]
    return torch.stack(out).to(r.dtype)


def test_bm3d_amp_runs_with_bm3d_and_recovers_a_smooth_image():
    """5 layers of BM3D-AMP recover a smooth 16x16 image from 128 measurements (measured relative error 0.106;
    AMP with the soft threshold: 0.898). `bm3d` is a benchmark-time dependency (the `bench` extra)."""
    pytest.importorskip("bm3d")
    rng = np.random.default_rng(0)
    h = w = 16
    n, m = h * w, 128
    yy, xx = np.mgrid[0:h, 0:w]
    image = 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    A = rng.standard_normal((m, n)) / math.sqrt(m)
    y = A @ image.reshape(-1) + 0.01 * rng.standard_normal(m)
    net = unroll.load("bm3d_amp", layers=5)(torch.tensor(A), _bm3d_denoiser, M=m, h=h, w=w)
    got = net(torch.tensor(y)).numpy()
    soft = unroll.load("amp", layers=5)(torch.tensor(A), alpha=ALPHA)(torch.tensor(y)).numpy().reshape(h, w)
    err = np.linalg.norm(got - image) / np.linalg.norm(image)
    err_soft = np.linalg.norm(soft - image) / np.linalg.norm(image)
    assert err < 0.2 and err < err_soft, (err, err_soft)


# ---------------------------------------------------------------- training: better than D-AMP (soft) at the same depth
def _blob_images(count, rng, h=H, w=W):
    """Images made of a few smooth bumps (not sparse in pixels: the learned denoiser has something to learn)."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.zeros((count, h, w))
    for i in range(count):
        for _ in range(2):
            cy, cx = rng.uniform(0, h), rng.uniform(0, w)
            out[i] += rng.uniform(0.5, 1.5) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 3.0)
    return out


@pytest.mark.parametrize("spec", ["ldamp", "ldit"])
def test_training_beats_the_soft_threshold_algorithm_on_held_out(spec):
    """Trained for 60 Adam steps, the learned network's held-out MSE is below half that of the untrained
    network, which is D-AMP (= AMP) / D-IT with the soft threshold at the same depth (measured: 0.091 ->
    0.016 for ldamp, 0.132 -> 0.016 for ldit)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    m, layers = 32, 4
    A = rng.standard_normal((m, N)) / math.sqrt(m)
    train, test = _blob_images(256, rng), _blob_images(64, rng)

    def measure(images):
        x = torch.tensor(images)
        return x, x.reshape(len(x), -1) @ torch.tensor(A).T + 0.01 * torch.randn(len(x), m, dtype=torch.float64)

    (x_tr, y_tr), (x_te, y_te) = measure(train), measure(test)
    net = unroll.load(spec, layers=layers)(torch.tensor(A), M=m, h=H, w=W, width=8, depth=3)

    def mse(x, y):
        return float(((net(y) - x) ** 2).mean())

    with torch.no_grad():
        before = mse(x_te, y_te)  # D-AMP with the soft threshold (= AMP), the same depth
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(60):
        idx = torch.randint(0, len(x_tr), (32,))
        loss = ((net(y_tr[idx]) - x_tr[idx]) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = mse(x_te, y_te)
    assert math.isfinite(before) and after < 0.5 * before, (before, after)
