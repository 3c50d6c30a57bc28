"""Catalog family A: scn (A9) and lohit_pgd_fusion (A18).

scn               defaults == bicubic, identity patch extraction, K ISTA steps per pixel on the LR
                  dictionary, HR patches, patch averaging (independent numpy loop, every layer);
                  (a) with identity patches, theta -> 0, W_t = 0, W_e = I and D = I the network returns
                  the bicubic upsampling of its input (torch interpolate) exactly; [26]'s threshold
                  neuron diag(theta) S_1(diag(1/theta) v) == soft(v, theta);
                  (b) patches / unpatch / patch_average == torch unfold / fold, also inside the network;
                  (c) toy x2 SR on smooth 32x32 images: the trained network beats bicubic and
                  sparse-coding SR at its best lam (numpy) on held-out images.
lohit_pgd_fusion  (a) adjoint test <A x, u> = <x, A^T u> (a tiny spec with the same expressions, and the
                  runtime kernels); defaults (P = identity, zero-initialised CNNs) == gradient descent
                  with step 1/||A||^2 from the bicubic start (numpy, explicit operator, every layer);
                  (b) PGD converges to the least-squares solution set: from x^0 = 0 to the minimum-norm
                  solution (scipy lsqr), from the spec's bicubic x^0 to x_mn + (I - A^+ A) x^0;
                  a short training run on synthetic scenes beats PGD at the same depth (numpy, best step
                  of a grid) on held-out scenes.
"""

import numpy as np
import pytest
import torch
import unroll
from reference import rel, soft
from training_helpers import adam, assert_beats_classical, best_on_grid
from unroll.runtime import ops as rt


def t64(a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


# ------------------------------------------------------------------ numpy references
def np_bicubic(x, r):
    """Keys cubic convolution (a = -0.75), half-pixel centres, border indices clamped (torch's
    bicubic with align_corners=False), written as two interpolation matrices."""

    def kernel(d):
        d = abs(d)
        if d <= 1:
            return 1.25 * d**3 - 2.25 * d**2 + 1
        return -0.75 * d**3 + 3.75 * d**2 - 6 * d + 3 if d < 2 else 0.0

    def matrix(n):
        M = np.zeros((r * n, n))
        for i in range(r * n):
            pos = (i + 0.5) / r - 0.5
            j0 = int(np.floor(pos))
            for j in range(j0 - 1, j0 + 3):
                M[i, min(max(j, 0), n - 1)] += kernel(pos - j)
        return M

    return matrix(x.shape[-2]) @ x @ matrix(x.shape[-1]).T


def np_patches(x, s):
    """[..., H, W] -> [..., s*s, H, W]; channel a*s+b at pixel p = x[p + (a, b) - c], zero outside."""
    c = (s - 1) // 2
    H, W = x.shape[-2:]
    xp = np.zeros(x.shape[:-2] + (H + s - 1, W + s - 1))
    xp[..., c:c + H, c:c + W] = x
    return np.stack([xp[..., a:a + H, b:b + W] for a in range(s) for b in range(s)], axis=-3)


def np_patch_average(z, t):
    """Overlap-add of the t x t patches z [..., t*t, H, W] (patch at p covers p + (a, b) - c), divided
    by the number of patches covering each pixel."""
    c = (t - 1) // 2
    H, W = z.shape[-2:]
    acc = np.zeros(z.shape[:-3] + (H + t - 1, W + t - 1))
    cnt = np.zeros((H + t - 1, W + t - 1))
    for a in range(t):
        for b in range(t):
            acc[..., a:a + H, b:b + W] += z[..., a * t + b, :, :]
            cnt[a:a + H, b:b + W] += 1
    return acc[..., c:c + H, c:c + W] / cnt[c:c + H, c:c + W]


# ================================================================== A9: SCN
def np_scn(Dl, Dh, lam, y, K):
    """Sparse-coding SR with K ISTA steps per pixel: bicubic, patches, ISTA on the LR dictionary,
    HR patches from the HR dictionary, averaging. Returns the codes after every step and the image."""
    n, s, t = Dl.shape[0], Dl.shape[1], Dh.shape[1]
    A = Dl.reshape(n, s * s).T
    L = np.linalg.norm(A, 2) ** 2
    yt = np_bicubic(y, 2)
    U = np_patches(yt, s)                                   # [B, s*s, H, W]
    alpha = np.zeros((y.shape[0], n) + yt.shape[-2:])
    codes = [alpha]
    for _ in range(K):
        resid = np.einsum("pk,bkij->bpij", A, alpha) - U
        alpha = soft(alpha - np.einsum("pk,bpij->bkij", A, resid) / L, lam / L)
        codes.append(alpha)
    Z = np.einsum("qk,bkij->bqij", Dh.reshape(n, t * t).T, alpha)
    return codes, np_patch_average(Z, t)


def unit_atoms(n, s, rng):
    D = rng.standard_normal((n, s, s))
    return D / np.linalg.norm(D.reshape(n, -1), axis=1)[:, None, None]


@pytest.mark.parametrize("s, t, lam, K", [(5, 3, 0.3, 4), (3, 3, 0.1, 2), (3, 5, 0.5, 3)])
def test_scn_equals_sparse_coding_sr(s, t, lam, K):
    rng = np.random.default_rng(s * 10 + t)
    n = 16
    Dl, Dh = unit_atoms(n, s, rng), unit_atoms(n, t, rng)
    y = rng.standard_normal((2, 5, 6))                     # LR images, h != w
    net = unroll.load("scn", layers=K)(Dl=t64(Dl), Dh=t64(Dh), lam=lam)
    trace = net.trace(t64(y))
    codes, x_ref = np_scn(Dl, Dh, lam, y, K)
    assert len(trace) == K + 1
    for layer in range(K + 1):
        assert rel(trace[layer]["alpha"].detach().numpy(), codes[layer]) < 1e-10, layer
    frac = np.mean(codes[-1] != 0)
    assert 0.05 < frac < 0.95, frac                        # the threshold is active, but not everywhere
    x = net(t64(y)).detach().numpy()
    assert x.shape == (2, 10, 12) and rel(x, x_ref) < 1e-10
    assert rel(net(t64(y[0])).detach().numpy(), x_ref[0]) < 1e-10      # unbatched sample


def _bypass(net, n):
    """theta -> 0 (the positive reparametrisation bottoms out at theta0 * exp(-60)), W_t = 0, W_e = I."""
    with torch.no_grad():
        net.theta.log_scale.fill_(-1e4)
        net.We.copy_(torch.eye(n, dtype=torch.float64))
        net.Wt.zero_()
    assert net.parameter_values()["theta"].max() < 1e-25


def test_scn_recombination_reproduces_bicubic_input():
    # catalog A9 (a): identity patch extraction (the default H), LISTA bypassed, D = I -> bicubic(y)
    rng = np.random.default_rng(3)
    y = t64(rng.uniform(0, 1, (3, 7, 5)))
    bic = torch.nn.functional.interpolate(y[:, None], scale_factor=2, mode="bicubic", align_corners=False)[:, 0]
    Net = unroll.load("scn", layers=2)
    # identity dictionaries (n = s*s = t*t = 9): the defaults are W_e = I, W_t = 0, D = I already
    eye_atoms = np.eye(9).reshape(9, 3, 3)
    net = Net(Dl=t64(eye_atoms), Dh=t64(eye_atoms), lam=0.1)
    assert torch.equal(net.We.detach(), torch.eye(9, dtype=torch.float64)) and not net.Wt.detach().any()
    _bypass(net, 9)
    out = net(y).detach()
    assert (out - bic).abs().max() < 1e-14
    # random dictionaries, parameters set by hand: the same
    net = Net(Dl=t64(unit_atoms(9, 3, rng)), Dh=t64(unit_atoms(9, 3, rng)), lam=0.1)
    _bypass(net, 9)
    with torch.no_grad():
        net.D.copy_(torch.eye(9, dtype=torch.float64))
    assert (net(y).detach() - bic).abs().max() < 1e-14


def test_scn_threshold_neuron_of_26_is_the_soft_threshold():
    # [26]: diag(theta) S_1(diag(1/theta) v) with a per-entry positive theta == soft(v, theta)
    rng = np.random.default_rng(4)
    v = t64(rng.standard_normal((2, 6, 4, 5)))
    theta = t64(rng.uniform(0.1, 2.0, (6, 1, 1)))
    assert (theta * rt.soft(v / theta, 1.0) - rt.soft(v, theta)).abs().max() < 1e-15


@pytest.mark.parametrize("s", [3, 5])
def test_patches_unpatch_match_torch_unfold_fold(s):
    # catalog A9 (b): the runtime kernels
    F = torch.nn.functional
    rng = np.random.default_rng(s)
    H, W, c = 7, 9, (s - 1) // 2
    x = t64(rng.standard_normal((2, H, W)))
    z = t64(rng.standard_normal((2, s * s, H, W)))
    ref_p = F.unfold(x[:, None], s, padding=c).reshape(2, s * s, H, W)
    ref_u = F.fold(z.reshape(2, s * s, H * W), (H, W), s, padding=c)[:, 0]
    ones = F.fold(torch.ones(1, s * s, H * W, dtype=torch.float64), (H, W), s, padding=c)[:, 0]
    assert (rt.patches(x, s) - ref_p).abs().max() < 1e-14
    assert (rt.unpatch(z, s) - ref_u).abs().max() < 1e-13
    assert (rt.patch_average(z, s) - ref_u / ones).abs().max() < 1e-13
    assert np.abs(np_patches(x.numpy(), s) - ref_p.numpy()).max() < 1e-14           # the test's references
    assert np.abs(np_patch_average(z.numpy(), s) - (ref_u / ones).numpy()).max() < 1e-13
    # adjointness <patches(x), z> = <x, unpatch(z)>
    lhs, rhs = (rt.patches(x, s) * z).sum(), (x * rt.unpatch(z, s)).sum()
    assert abs(lhs - rhs) < 1e-12 * abs(lhs)


def test_scn_pipeline_matches_unfold_fold():
    # catalog A9 (b) inside the network: default H (= unfold of the bicubic image, 5 x 5), codes = the
    # features (bypass), a random HR patch matrix D [3*3, 25], recombination = fold(z) / fold(1)
    F = torch.nn.functional
    rng = np.random.default_rng(5)
    net = unroll.load("scn", layers=1)(Dl=t64(unit_atoms(25, 5, rng)), Dh=t64(unit_atoms(25, 3, rng)))
    _bypass(net, 25)
    y = t64(rng.standard_normal((2, 6, 8)))
    yt = F.interpolate(y[:, None], scale_factor=2, mode="bicubic", align_corners=False)
    U = F.unfold(yt, 5, padding=2)                                   # [2, 25, 12*16]
    Z = net.D.detach() @ U                                           # [2, 9, 12*16]
    ref = F.fold(Z, (12, 16), 3, padding=1) / F.fold(torch.ones_like(Z), (12, 16), 3, padding=1)
    assert rel(net(y).detach().numpy(), ref[:, 0].numpy()) < 1e-12


# ------------------------------------------------------------------ A9 (c): toy super-resolution
def dct_atoms(s):
    k = np.arange(s)
    C = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * s))
    C[0] /= np.sqrt(2)
    C *= np.sqrt(2 / s)
    return np.einsum("ai,bj->abij", C, C).reshape(s * s, s, s)      # orthonormal 2-D DCT atoms


def smooth_images(B, N, rng):
    yy, xx = np.mgrid[0:N, 0:N] / N
    X = np.zeros((B, N, N))
    for i in range(B):
        for _ in range(6):
            fx, fy = rng.uniform(-4, 4, 2)
            X[i] += rng.uniform(0.2, 1) * np.cos(2 * np.pi * (fx * xx + fy * yy) + rng.uniform(0, 2 * np.pi))
    return X


def area_down(X):
    return 0.25 * (X[:, ::2, ::2] + X[:, 1::2, ::2] + X[:, ::2, 1::2] + X[:, 1::2, 1::2])


def psnr(a, b, peak):
    return 10 * np.log10(peak**2 / np.mean((np.asarray(a) - b) ** 2))


def test_scn_toy_super_resolution_beats_bicubic_and_sparse_coding():
    # catalog A9 (c): x2 SR of 32x32 smooth images (LR = 2x2 averages). Init: 5x5 DCT dictionary for the
    # LR patches, its central 3x3 part for the HR patches (the untrained network is close to bicubic).
    # Classical: sparse-coding SR (numpy) at the same depth with the best lam of a grid, and bicubic;
    # measured held-out MSE: bicubic 0.0093, sparse coding 0.0093 (best lam 0: no shrinkage), trained 0.0052
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    Xtr, Xte = smooth_images(12, 32, rng), smooth_images(16, 32, rng)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)
    ytr, yte, xtr = f32(area_down(Xtr)), f32(area_down(Xte)), f32(Xtr)
    Dl = dct_atoms(5)
    Dh = Dl[:, 1:4, 1:4]
    classical, lam, _ = best_on_grid(lambda lam: np.mean((np_scn(Dl, Dh, lam, area_down(Xte), 2)[1] - Xte) ** 2),
                                     (0.0, 0.001, 0.003, 0.01, 0.03, 0.1))
    net = unroll.load("scn", layers=2)(Dl=f32(Dl), Dh=f32(Dh), lam=0.01)
    bic = torch.nn.functional.interpolate(yte[:, None], scale_factor=2, mode="bicubic", align_corners=False)[:, 0]
    bicubic = np.mean((bic.numpy() - Xte) ** 2)
    with torch.no_grad():  # untrained: sparse-coding SR at lam = 0.01 (float32 module)
        untrained = np.mean((net(yte).numpy() - Xte) ** 2)
    assert abs(untrained - np.mean((np_scn(Dl, Dh, 0.01, area_down(Xte), 2)[1] - Xte) ** 2)) < 1e-4 * untrained
    losses = adam(net.parameters(), lambda: (net(ytr) - xtr).square().mean(), 25, 3e-3)
    with torch.no_grad():
        trained = np.mean((net(yte).numpy() - Xte) ** 2)
    print(f"\nscn: train {losses[0]:.4f} -> {losses[-1]:.4f}; held-out MSE: bicubic {bicubic:.4f}, sparse-coding "
          f"SR (lam {lam}) {classical:.4f}, trained {trained:.4f}")
    assert_beats_classical(trained, classical, 0.7, "scn vs sparse-coding SR, held-out MSE")
    assert_beats_classical(trained, bicubic, 0.7, "scn vs bicubic, held-out MSE")  # about +1.5 dB PSNR


# ================================================================== A18: lohit_pgd_fusion
R = 4  # the spec's resampling factor


def gauss(s, sig):
    k = np.arange(s) - (s - 1) / 2
    g = np.exp(-k**2 / (2 * sig**2))
    g = np.outer(g, g)
    return g / g.sum()


def blur_matrix(k, H, W):
    """Circular convolution with k (centre (s-1)//2, conv2's convention) on an H x W grid, as a matrix."""
    s, c = k.shape[0], (k.shape[0] - 1) // 2
    M = np.zeros((H * W, H * W))
    for i in range(H):
        for j in range(W):
            for a in range(s):
                for b in range(s):
                    M[i * W + j, ((i - a + c) % H) * W + (j - b + c) % W] += k[a, b]
    return M


def fusion_matrix(b, H, W):
    """A = S B, block diagonal over the bands: [C*(H/R)*(W/R), C*H*W]."""
    keep = [i * W + j for i in range(0, H, R) for j in range(0, W, R)]
    blocks = [blur_matrix(bc, H, W)[keep] for bc in b]
    A = np.zeros((sum(B.shape[0] for B in blocks), sum(B.shape[1] for B in blocks)))
    for c, B in enumerate(blocks):
        A[c * B.shape[0]:(c + 1) * B.shape[0], c * B.shape[1]:(c + 1) * B.shape[1]] = B
    return A


def fusion_data(H, W, batch, seed):
    rng = np.random.default_rng(seed)
    b = np.stack([gauss(5, sg) for sg in (0.7, 0.9, 1.1)])
    y = rng.standard_normal((batch, 3, H // R, W // R))
    pan = rng.standard_normal((batch, H, W))
    return b, y, pan


def np_pgd(Amat, x0, y, eta, layers):
    xs = [x0]
    for _ in range(layers):
        xs.append(xs[-1] - eta * Amat.T @ (Amat @ xs[-1] - y))
    return xs


def test_fusion_adjoint():
    # catalog A18 (a): <A x, u> = <x, A^T u> for the spec's expressions, compiled from a tiny spec, and for
    # the runtime kernels; A also equals the explicit matrix used below
    import os
    import tempfile
    spec = """spec fusion_ops
dims  s, h, w
data  b : real[3, s, s]
input u : real[3, h, w]
input x : real[3, 4*h, 4*w]
let   Ax = down(conv2(b, x), 4)
let   ATu = conv2_adj(b, up(u, 4))
state z : real[3, h, w] = 0
layers 1
step:
    z = z + u
output Ax, ATu
"""
    rng = np.random.default_rng(7)
    b = rng.standard_normal((3, 5, 5))
    x, u = rng.standard_normal((2, 3, 16, 12)), rng.standard_normal((2, 3, 4, 3))
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "fusion_ops.unroll")
        with open(path, "w") as f:
            f.write(spec)
        Ax, ATu = (v.numpy() for v in unroll.load(path)(b=t64(b))(t64(u), t64(x)))
    for i in range(2):
        lhs, rhs = np.sum(Ax[i] * u[i]), np.sum(x[i] * ATu[i])
        assert abs(lhs - rhs) <= 1e-12 * abs(lhs)
    Amat = fusion_matrix(b, 16, 12)
    assert rel(Ax.reshape(2, -1), x.reshape(2, -1) @ Amat.T) < 1e-12
    assert rel(ATu.reshape(2, -1), u.reshape(2, -1) @ Amat) < 1e-12
    fwd = lambda v: rt.down(rt.conv2(t64(b), v), 4)
    adj = lambda v: rt.conv2_adj(t64(b), rt.up(v, 4))
    assert rt.adjoint_test(fwd, adj, t64(x), t64(u)) < 1e-12


@pytest.mark.parametrize("H, W, layers", [(16, 12, 6), (8, 8, 3)])
def test_fusion_default_equals_gradient_descent(H, W, layers):
    b, y, pan = fusion_data(H, W, 2, seed=H + W)
    net = unroll.load("lohit_pgd_fusion", layers=layers)(b0=t64(b))
    trace = net.trace(t64(y), t64(pan))
    Amat = fusion_matrix(b, H, W)
    eta = 1 / np.linalg.norm(Amat, 2) ** 2
    for i in range(2):
        xs = np_pgd(Amat, np_bicubic(y[i], R).reshape(-1), y[i].reshape(-1), eta, layers)
        for layer in range(layers + 1):
            assert rel(trace[layer]["x"][i].detach().numpy().reshape(-1), xs[layer]) < 1e-10, (i, layer)
    out = net(t64(y), t64(pan)).detach().numpy()
    assert rel(out, trace[-1]["x"].detach().numpy()) < 1e-14


def test_fusion_pgd_converges_to_least_squares():
    # catalog A18 (b), 16x16x3 (LR 4x4x3, 48 equations, 768 unknowns), P = identity (untrained), step
    # 1/||A||^2 < 2/||A||^2. PGD keeps the null-space part of its start: from x^0 = 0 it converges to
    # the minimum-norm LS solution, from the spec's x^0 = bicubic(y) to x_mn + (I - A^+ A) x^0.
    lsqr = pytest.importorskip("scipy.sparse.linalg").lsqr
    b, y, pan = fusion_data(16, 16, 1, seed=11)
    Amat = fusion_matrix(b, 16, 16)
    yv = y[0].reshape(-1)
    x_mn = lsqr(Amat, yv, atol=1e-15, btol=1e-15, iter_lim=5000)[0]
    x0 = np_bicubic(y[0], R).reshape(-1)
    x_lim = x_mn + x0 - lsqr(Amat, Amat @ x0, atol=1e-15, btol=1e-15, iter_lim=5000)[0]
    layers = 60                                 # measured: rel. error 2e-5 at 20 layers, 3e-14 at 60
    out = unroll.load("lohit_pgd_fusion", layers=layers)(b0=t64(b))(t64(y), t64(pan)).detach().numpy()
    out = out.reshape(-1)
    assert rel(out, x_lim) < 1e-11
    assert np.linalg.norm(Amat.T @ (Amat @ out - yv)) < 1e-11 * np.linalg.norm(Amat.T @ yv)  # normal equations
    assert np.linalg.norm(x0 - x_lim) > 0.1 * np.linalg.norm(x_lim)     # the start's null part matters
    # the classical statement, x^0 = 0 (numpy loop with the same step; the spec starts at bicubic)
    eta = 1 / np.linalg.norm(Amat, 2) ** 2
    assert rel(np_pgd(Amat, 0 * x0, yv, eta, layers)[-1], x_mn) < 1e-11


def test_fusion_learn_b_option():
    # "b may be learned": --learn b makes it a parameter; with its default the network is unchanged
    b, y, pan = fusion_data(8, 8, 2, seed=2)
    fixed = unroll.load("lohit_pgd_fusion", layers=2)(b0=t64(b))
    learned = unroll.load("lohit_pgd_fusion", layers=2, learn="b")(b0=t64(b))
    assert isinstance(learned.b, torch.nn.Parameter) and not isinstance(fixed.b, torch.nn.Parameter)
    out = learned(t64(y), t64(pan))
    assert rel(out.detach().numpy(), fixed(t64(y), t64(pan)).detach().numpy()) < 1e-14
    out.square().sum().backward()
    assert learned.b.grad is not None and learned.b.grad.abs().max() > 0


def scenes(B, N, rng):
    """Piecewise-constant multispectral scenes: random rectangles with random band intensities."""
    X = np.zeros((B, 3, N, N))
    yy, xx = np.mgrid[0:N, 0:N]
    for i in range(B):
        for _ in range(4):
            r0, c0 = rng.integers(0, N - 4, 2)
            hh, ww = rng.integers(3, N // 2, 2)
            m = ((yy >= r0) & (yy < r0 + hh) & (xx >= c0) & (xx < c0 + ww)).astype(float)
            X[i] += m[None] * rng.uniform(0, 1, 3)[:, None, None]
    return X


def test_fusion_training_beats_pgd():
    # classical: PGD (numpy, explicit operator) from the bicubic start at the same depth with the best
    # step c / ||A||^2 of a grid on the held-out scenes; measured MSE PGD 0.081, trained 0.015
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    b = np.stack([gauss(5, sg) for sg in (0.8, 1.0, 1.2)])
    N, layers = 16, 3
    Amat = fusion_matrix(b, N, N)
    Xtr, Xte = scenes(8, N, rng), scenes(8, N, rng)
    lr_obs = lambda X: (X.reshape(len(X), -1) @ Amat.T).reshape(len(X), 3, N // R, N // R)
    f32 = lambda a: torch.tensor(a, dtype=torch.float32)
    ytr, yte, ptr, pte = f32(lr_obs(Xtr)), f32(lr_obs(Xte)), f32(Xtr.mean(1)), f32(Xte.mean(1))
    xtr = f32(Xtr)
    Y = lr_obs(Xte)
    norm2 = np.linalg.norm(Amat, 2) ** 2

    def pgd_mse(c):
        out = [np_pgd(Amat, np_bicubic(Y[i], R).reshape(-1), Y[i].reshape(-1), c / norm2, layers)[-1]
               for i in range(len(Y))]
        return np.mean((np.stack(out) - Xte.reshape(len(Y), -1)) ** 2)

    classical, c, _ = best_on_grid(pgd_mse, (0.5, 1.0, 1.5, 1.9, 2.5))
    net = unroll.load("lohit_pgd_fusion", layers=layers)(b0=f32(b))
    with torch.no_grad():  # untrained: PGD with step 1 / ||A||^2 (float32 module)
        untrained = np.mean((net(yte, pte).numpy() - Xte) ** 2)
    assert abs(untrained - pgd_mse(1.0)) < 1e-4 * untrained
    losses = adam(net.parameters(), lambda: (net(ytr, ptr) - xtr).square().mean(), 25, 2e-3)
    with torch.no_grad():
        mse = np.mean((net(yte, pte).numpy() - Xte) ** 2)
    print(f"\nfusion: train {losses[0]:.4f} -> {losses[-1]:.4f}; held-out MSE PGD (step {c}/||A||^2) "
          f"{classical:.4f}, trained {mse:.4f}")
    assert_beats_classical(mse, classical, 0.5, "lohit_pgd_fusion, held-out MSE")
