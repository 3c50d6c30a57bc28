"""misi, misi_unfolded (catalog C2) and schuler_deblur (catalog C1).

Every spec is checked against an independent numpy loop (float64, <= 1e-10 relative, every layer)
plus the catalog's property tests. The STFT/iSTFT of the numpy loops are the registry's numpy
references (`OPERATORS["stft"].reference`: numpy rfft of reflect-padded Hann frames, and the
least-squares overlap-add inverse), not torch.stft. librosa is not installed: its `griffinlim`
(catalog C2(b)) is replaced by the numpy Griffin-Lim loop below with the same conventions
(momentum 0, periodic Hann window, centred frames), started from the mixture phase instead of zero
phase (see the test). The training tests compare the trained networks, on held-out data, with the
classical loops (numpy) at the same depth and their best hyperparameters on a small grid."""

from contextlib import contextmanager
from itertools import pairwise, product
from pathlib import Path

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from training_helpers import adam, assert_beats_classical, best_on_grid
from unroll.compiler import resolve_spec
from unroll.compiler.operators import OPERATORS

np_stft = OPERATORS["stft"].reference  # (x, F, N, hop) -> complex [..., F, N]
np_istft = OPERATORS["istft"].reference  # (X, T, hop) -> real [..., T]

HOP, NFFT = 64, 256
F = NFFT // 2 + 1


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


@contextmanager
def float64():
    """Build a module without data in float64 (its hyper-derived parameters would otherwise be
    rounded to float32 at construction and `.double()` would keep the rounding)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def frames(T):
    return 1 + T // HOP


def colored_noise(rng, T, taps):
    """A random signal with a random (overlapping) spectral envelope: every STFT bin is generic."""
    return np.convolve(rng.standard_normal(T + len(taps) - 1), taps, mode="valid")


def sdr(est, ref):
    return 10 * np.log10(np.sum(ref ** 2) / np.sum((est - ref) ** 2))


# ------------------------------------------------------------------ numpy MISI / Griffin-Lim
def np_misi(x, A, K, kappa=1.0):
    """Gunawan & Sen's MISI for one mixture x [T] and magnitudes A [C, F, N]; returns (theta, s) per
    iteration: s^i = iSTFT(A e^{j theta^i}), theta^{i+1} = angle STFT(s^i + kappa (x - sum s^i) / C)."""
    C, F_, N = A.shape
    T = x.shape[-1]
    theta = np.broadcast_to(np.angle(np_stft(x, F_, N, HOP)), A.shape)
    s = np_istft(A * np.exp(1j * theta), T, HOP)
    out = [(theta, s)]
    for _ in range(K):
        d = x - s.sum(axis=0)
        theta = np.angle(np_stft(s + kappa * d / C, F_, N, HOP))
        s = np_istft(A * np.exp(1j * theta), T, HOP)
        out.append((theta, s))
    return out


def np_griffin_lim(a, theta0, T, K):
    """Griffin-Lim for one magnitude a [F, N] from the initial phase theta0 (librosa.griffinlim with
    momentum=0); returns the spectrogram estimates Y^i = a e^{j theta^i}, i = 0..K."""
    Y = a * np.exp(1j * theta0)
    out = [Y]
    for _ in range(K):
        Y = a * np.exp(1j * np.angle(np_stft(np_istft(Y, T, HOP), a.shape[0], a.shape[1], HOP)))
        out.append(Y)
    return out


def misi_check(trace, x, A, K, kappa=1.0):
    """Max relative error of the traced s and spectrogram estimates A e^{j theta} against np_misi."""
    err = 0.0
    for b in range(x.shape[0]):
        ref = np_misi(x[b], A[b], K, kappa)
        for layer in range(K + 1):
            theta = trace[layer]["theta"][b].numpy()
            err = max(err, rel(trace[layer]["s"][b].numpy(), ref[layer][1]),
                      rel(A[b] * np.exp(1j * theta), A[b] * np.exp(1j * ref[layer][0])))
    return err


def test_misi_equals_numpy_every_layer():
    rng = np.random.default_rng(0)
    T, K = 1024, 6
    Net = unroll.load("misi", layers=K)
    net = Net(hop=HOP)
    for C in (2, 3):  # C is bound per call by A
        S = np.stack([[colored_noise(rng, T, rng.standard_normal(12)) for _ in range(C)] for _ in range(2)])
        x = S.sum(axis=1)
        A = np.abs(np_stft(S, F, frames(T), HOP)) * rng.uniform(0.7, 1.3, (2, C, F, frames(T)))
        trace = net.trace(torch.from_numpy(x), torch.from_numpy(A))
        assert len(trace) == K + 1 and trace[K]["s"].shape == (2, C, T)
        assert misi_check(trace, x, A, K) < 1e-10


def test_misi_single_source_is_a_fixed_point_after_one_step():
    # C2(a): with C = 1, s + delta = x, so theta^1 = angle(X) = theta^0 whatever the magnitude A
    rng = np.random.default_rng(1)
    T = 1024
    x = colored_noise(rng, T, rng.standard_normal(8))
    X = np_stft(x, F, frames(T), HOP)
    A = np.abs(X)[None] * rng.uniform(0.5, 1.5, (1, F, frames(T)))  # any magnitude, not |X|
    trace = unroll.load("misi", layers=4)(hop=HOP).trace(torch.from_numpy(x), torch.from_numpy(A))
    spec = [A * np.exp(1j * s["theta"].numpy()) for s in trace]
    assert rel(spec[0], A * np.exp(1j * np.angle(X))) < 1e-12
    for layer in range(1, 5):
        assert rel(spec[layer], spec[0]) < 1e-10
        assert rel(trace[layer]["s"].numpy(), trace[0]["s"].numpy()) < 1e-10
    assert rel(trace[0]["s"].numpy()[0], np_istft(A[0] * np.exp(1j * np.angle(X)), T, HOP)) < 1e-12


def test_misi_without_error_distribution_is_griffin_lim():
    # C2(b): kappa = 0 removes delta, and every source runs Griffin-Lim from the mixture phase.
    # (librosa's init=None, zero initial phase, is not reachable through x = 0: the STFT of zeros has
    # signed zeros and angle(-0.0 + 0j) = pi; the reference loop starts from the same phase instead.)
    rng = np.random.default_rng(2)
    T, K, C = 1024, 12, 2
    S = np.stack([colored_noise(rng, T, rng.standard_normal(10)) for _ in range(C)])
    x = S.sum(axis=0)
    A = np.abs(np_stft(S, F, frames(T), HOP))
    theta0 = np.angle(np_stft(x, F, frames(T), HOP))
    trace = unroll.load("misi", layers=K)(hop=HOP, kappa=0.0).trace(torch.from_numpy(x), torch.from_numpy(A))
    for c in range(C):
        ref = np_griffin_lim(A[c], theta0, T, K)
        est = [A[c] * np.exp(1j * s["theta"][c].numpy()) for s in trace]
        assert max(rel(e, r) for e, r in zip(est, ref)) < 1e-10
        assert max(rel(s["s"][c].numpy(), np_istft(r, T, HOP)) for s, r in zip(trace, ref)) < 1e-10
        # spectral inconsistency ||STFT(iSTFT(Y)) - Y|| is non-increasing (Griffin & Lim 1984)
        inc = [np.linalg.norm(np_stft(np_istft(Y, T, HOP), F, frames(T), HOP) - Y) for Y in est]
        assert all(b <= a * (1 + 1e-12) for a, b in pairwise(inc))
        assert inc[-1] < 0.7 * inc[0]


def test_misi_oracle_magnitudes_improve_sdr_and_keep_mixture_consistency():
    # C2(c): two overlapping sources with oracle magnitudes; MISI starts from the mixture phase
    rng = np.random.default_rng(3)
    T, K = 2048, 20
    S = np.stack([colored_noise(rng, T, np.hanning(9) * np.cos(0.6 * np.arange(9))),
                  colored_noise(rng, T, np.hanning(7) * np.cos(1.4 * np.arange(7)))])
    x = S.sum(axis=0)
    A = np.abs(np_stft(S, F, frames(T), HOP))
    trace = unroll.load("misi", layers=K)(hop=HOP).trace(torch.from_numpy(x), torch.from_numpy(A))
    sdrs = [[sdr(s["s"][c].numpy(), S[c]) for c in range(2)] for s in trace]
    for c in range(2):  # layer 0 is the mixture-phase baseline iSTFT(A_c e^{j angle X})
        assert sdrs[K][c] > sdrs[0][c] + 3.0
    assert np.mean(sdrs[K]) > np.mean(sdrs[K // 2]) > np.mean(sdrs[0])
    for state in trace:  # mixture consistency of the pre-STFT signals: sum_c (s_c + delta / C) = x
        s = state["s"].numpy()
        pre = s + (x - s.sum(axis=0)) / 2
        assert rel(pre.sum(axis=0), x) < 1e-14
    assert misi_check([{k: v[None] for k, v in s.items()} for s in trace], x[None], A[None], K) < 1e-10


# ------------------------------------------------------------------ misi_unfolded
def two_source_task(rng, B, T):
    """Source 1: three stationary low-frequency tones; source 2: two amplitude-modulated higher tones."""
    t = np.arange(T)
    S = np.zeros((B, 2, T))
    for b in range(B):
        for _ in range(3):
            S[b, 0] += rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(0.01, 0.06) * t + rng.uniform(0, 7))
        for _ in range(2):
            am = 1 + 0.9 * np.sin(2 * np.pi * rng.uniform(1 / 600, 1 / 200) * t)
            S[b, 1] += rng.uniform(0.3, 1) * np.sin(2 * np.pi * rng.uniform(0.12, 0.3) * t + rng.uniform(0, 7)) * am
    return S


def features(x):
    return np.log1p(np.abs(np_stft(x, F, frames(x.shape[-1]), HOP)))


def test_misi_unfolded_untrained_and_perturbed_mask_net_equal_numpy_misi():
    rng = np.random.default_rng(4)
    T, K = 1024, 4
    S = np.stack([[colored_noise(rng, T, rng.standard_normal(10)) for _ in range(2)] for _ in range(2)])
    x = S.sum(axis=1)
    X = np_stft(x, F, frames(T), HOP)
    torch.manual_seed(0)
    with float64():
        net = unroll.load("misi_unfolded", layers=K)(hop=HOP)
    xt, ft = torch.from_numpy(x), torch.from_numpy(features(x))
    # untrained: the zero-initialised mask net gives masks 2 sigmoid(0) = 1, i.e. A_c = |X| for both
    with torch.no_grad():
        s, Ahat = net(xt, ft)
        trace = net.trace(xt, ft)
    assert rel(Ahat.numpy(), np.abs(X)[:, None].repeat(2, axis=1)) < 1e-14
    assert misi_check(trace, x, Ahat.numpy(), K) < 1e-10
    assert rel(s.numpy(), x[:, None].repeat(2, axis=1)) < 1e-10  # degenerate fixed point: s_c = x
    # perturbed mask net: numpy MISI with the network's magnitudes, every layer
    with torch.no_grad():
        last = [m for m in net.Mask.modules() if isinstance(m, torch.nn.Conv2d)][-1]
        last.weight.normal_(0, 0.3)
        last.bias.copy_(torch.tensor([0.4, -0.4]))
        s, Ahat = net(xt, ft)
        trace = net.trace(xt, ft)
    masks = Ahat.numpy() / np.abs(X)[:, None]
    assert masks.max() > 1.2 and masks.min() > 0 and masks.max() < 2  # masks may exceed 1
    assert misi_check(trace, x, Ahat.numpy(), K) < 1e-10
    assert rel(s.numpy(), trace[K]["s"].numpy()) == 0


def test_misi_unfolded_training_beats_misi_with_constant_masks():
    # classical: MISI (numpy) at the same depth from magnitudes A_c = m_c |X| with constant masks
    # (m, 1 - m), the best m of a grid on the held-out mixtures (the untrained mask net is the constant
    # mask 1); measured held-out waveform L1: best constant split 0.459 (m = 0.6), trained 0.375
    rng = np.random.default_rng(5)
    T, B, K = 1024, 4, 3
    S = torch.tensor(two_source_task(rng, B, T), dtype=torch.float32)
    S_te = two_source_task(rng, 8, T)
    x = S.sum(dim=1)
    x_te = S_te.sum(axis=1)
    feat = torch.tensor(features(x.numpy().astype(np.float64)), dtype=torch.float32)
    X_te = np_stft(x_te, F, frames(T), HOP)

    def misi_l1(m):
        A = np.abs(X_te)[:, None] * np.array([m, 1 - m])[None, :, None, None]
        s = np.stack([np_misi(x_te[b], A[b], K)[-1][1] for b in range(8)])
        return np.mean(np.abs(s - S_te))

    classical, m, _ = best_on_grid(misi_l1, (0.3, 0.4, 0.5, 0.6, 0.7))
    torch.manual_seed(0)
    net = unroll.load("misi_unfolded", layers=K)(hop=HOP)

    def loss():
        s, _ = net(x, feat)
        return (s - S).abs().mean()  # waveform L1 (sum over sources and samples, up to a constant)

    losses = adam(net.parameters(), loss, 50, 1e-2)
    with torch.no_grad():
        s_te, _ = net(torch.tensor(x_te, dtype=torch.float32),
                      torch.tensor(features(x_te), dtype=torch.float32))
    learned = np.mean(np.abs(s_te.numpy() - S_te))
    print(f"\nmisi_unfolded: train L1 {losses[0]:.3f} -> {losses[-1]:.3f}; held-out L1: MISI with constant "
          f"masks ({m}, {1 - m:.1f}) {classical:.3f}, trained {learned:.3f}")
    assert np.isfinite(losses).all()
    assert_beats_classical(learned, classical, 0.9, "misi_unfolded, held-out waveform L1")


# ------------------------------------------------------------------ schuler_deblur
KS = 15  # the spec's kernel support (support(k, 15))


def support_mask(h, w, s=KS):
    def near(n):  # circular distance to the origin within the s x s window
        return np.minimum(np.arange(n), n - np.arange(n)) <= (s - 1) // 2

    return near(h)[:, None] & near(w)[None, :]


def circulant(img):
    """Dense matrix M with M @ k.ravel() = (k (*) img).ravel(): (k (*) img)[i, j] = sum k[a, b] img[i-a, j-b]."""
    h, w = img.shape
    i, j = np.divmod(np.arange(h * w), w)
    return img[(i[:, None] - i[None, :]) % h, (j[:, None] - j[None, :]) % w]


def np_schuler(y, beta_k, beta_x, L):
    """The classical loop with identity features (the untrained spec): Fourier closed forms."""
    x, k = y.copy(), np.zeros_like(y)
    out = [(x, k)]
    Y = np.fft.fft2(y)
    for _ in range(L):
        Xf = np.fft.fft2(x)
        khat = np.conj(Xf) * Y / (np.abs(Xf) ** 2 + beta_k)
        k = np.real(np.fft.ifft2(khat)) * support_mask(*y.shape)
        k = k / k.sum()
        K = np.fft.fft2(k)
        x = np.real(np.fft.ifft2(np.conj(K) * Y / (np.abs(K) ** 2 + beta_x)))
        out.append((x, k))
    return out


def blur_task(rng, B, n):
    """Sharp piecewise-constant images and random Gaussian kernels (<= 9 x 9), circular blur + noise."""
    xs = np.zeros((B, n, n))
    ks = np.zeros((B, n, n))
    for b in range(B):
        for _ in range(6):
            r, c = rng.integers(0, n - 4, 2)
            xs[b, r:r + rng.integers(3, n // 2), c:c + rng.integers(3, n // 2)] += rng.uniform(-1, 1)
        sx, sy = rng.uniform(0.6, 2.0, 2)
        g = np.arange(-4, 5)
        kern = np.exp(-(g[:, None] / sy) ** 2 / 2 - (g[None, :] / sx) ** 2 / 2)
        ks[b] = np.roll(np.pad(kern / kern.sum(), ((0, n - 9), (0, n - 9))), (-4, -4), axis=(0, 1))
    ys = np.real(np.fft.ifft2(np.fft.fft2(ks) * np.fft.fft2(xs))) + 0.01 * rng.standard_normal((B, n, n))
    return xs, ys, ks


def test_schuler_untrained_equals_numpy_loop():
    rng = np.random.default_rng(6)
    _, ys, _ = blur_task(rng, 2, 24)
    L = 3
    with float64():
        net = unroll.load("schuler_deblur", layers=L)(beta_k0=0.5, beta_x0=0.02)
    trace = net.trace(torch.from_numpy(ys))
    for b in range(2):
        ref = np_schuler(ys[b], 0.5, 0.02, L)
        for layer in range(1, L + 1):
            assert rel(trace[layer]["x"][b].detach().numpy(), ref[layer][0]) < 1e-10
            assert rel(trace[layer]["k"][b].detach().numpy(), ref[layer][1]) < 1e-10


def test_schuler_closed_forms_equal_dense_circulant_solves():
    # C1(a), with learned (random) feature channels so that the kernel step sums over J = 4 features
    rng = np.random.default_rng(7)
    n = 20
    _, ys, _ = blur_task(rng, 1, n)
    torch.manual_seed(1)
    with float64():
        net = unroll.load("schuler_deblur", layers=2)(beta_k0=0.3, beta_x0=0.05)
    with torch.no_grad():
        for p in net.phi.parameters():
            p.normal_(0, 0.2)
    y = torch.from_numpy(ys)
    with torch.no_grad():
        trace = net.trace(y)
    mask = support_mask(n, n).ravel()
    for layer in (1, 2):
        x_prev = trace[layer - 1]["x"]
        with torch.no_grad():
            fx = torch.cat([x_prev[:, None], net.phi[layer - 1](x_prev[:, None])], 1)[0].numpy()
            fy = torch.cat([y[:, None], net.phi[layer - 1](y[:, None])], 1)[0].numpy()
        # kernel: argmin_k sum_j ||k (*) fx_j - fy_j||^2 + beta_k ||k||^2, then support and unit sum
        G = sum(circulant(f).T @ circulant(f) for f in fx) + 0.3 * np.eye(n * n)
        k = np.linalg.solve(G, sum(circulant(f).T @ g.ravel() for f, g in zip(fx, fy))) * mask
        k = (k / k.sum()).reshape(n, n)
        assert rel(trace[layer]["k"][0].numpy(), k) < 1e-10
        # image: argmin_x ||k (*) x - y||^2 + beta_x ||x||^2 with the traced kernel
        Kd = circulant(trace[layer]["k"][0].numpy())  # k (*) x = x (*) k: the circulant of k acts on x
        x = np.linalg.solve(Kd.T @ Kd + 0.05 * np.eye(n * n), Kd.T @ ys[0].ravel()).reshape(n, n)
        assert rel(trace[layer]["x"][0].numpy(), x) < 1e-10


def test_schuler_kernel_step_recovers_the_true_kernel(tmp_path: Path):
    # C1(b): identity features, x^{s-1} = the true sharp image (full spectrum, noise-free circular
    # blur) and beta_k = 1e-10. The shipped spec starts from x^0 = y, so this test compiles a copy
    # whose initial image is a second input (the step equations are the shipped ones, unchanged).
    text = resolve_spec("schuler_deblur").read_text()
    assert text.count("state x : real[h, w] = y") == 1 and text.count("input y : real[h, w]") == 1
    text = text.replace("state x : real[h, w] = y", "state x : real[h, w] = x0")
    text = text.replace("input y : real[h, w]", "input y : real[h, w]\ninput x0 : real[h, w]")
    variant = tmp_path / "schuler_x0.unroll"
    variant.write_text(text)
    rng = np.random.default_rng(8)
    n = 32
    sharp = rng.standard_normal((2, n, n))
    kern = rng.uniform(0.1, 1.0, (2, 7, 7))
    kern /= kern.sum(axis=(1, 2), keepdims=True)
    k_true = np.roll(np.pad(kern, ((0, 0), (0, n - 7), (0, n - 7))), (-3, -3), axis=(1, 2))
    y = np.real(np.fft.ifft2(np.fft.fft2(k_true) * np.fft.fft2(sharp)))
    with float64():
        net = unroll.load(variant, layers=1)(beta_k0=1e-10)
    trace = net.trace(torch.from_numpy(y), torch.from_numpy(sharp))
    k = trace[1]["k"].detach().numpy()
    assert np.abs(k - k_true).max() < 1e-6 * np.abs(k_true).max()


def test_schuler_training_beats_the_classical_loop():
    # classical: the loop with identity features (numpy, the untrained spec) at the same depth with the
    # best (beta_k, beta_x) of a grid on held-out images. measured MSE: blurred 0.0233, classical 0.0186
    # (beta_k 5, beta_x 0.01), trained 0.0180: on this toy task (2 stages, 24x24) the learned features
    # gain only ~3.5 % over the tuned classical loop (longer training does not improve it), hence the
    # 2 % margin
    rng = np.random.default_rng(9)
    L = 2
    xs, ys, _ = blur_task(rng, 16, 24)
    xv, yv, _ = blur_task(rng, 8, 24)
    x_true, y, y_val = (torch.tensor(a, dtype=torch.float32) for a in (xs, ys, yv))

    def classical_mse(betas):
        out = np.stack([np_schuler(yb, *betas, L)[-1][0] for yb in yv])
        return np.mean((out - xv) ** 2)

    grid = product((1.0, 5.0, 20.0, 50.0), (0.003, 0.01, 0.05))
    classical, (beta_k, beta_x), _ = best_on_grid(classical_mse, grid)
    torch.manual_seed(0)
    net = unroll.load("schuler_deblur", layers=L)(beta_k0=5.0, beta_x0=0.05)
    with torch.no_grad():  # untrained: the classical loop at (5, 0.05) (float32 module)
        untrained = np.mean((net(y_val)[0].numpy() - xv) ** 2)
    assert abs(untrained - classical_mse((5.0, 0.05))) < 1e-4 * untrained
    losses = adam(net.parameters(), lambda: (net(y)[0] - x_true).square().mean(), 60, 5e-2)
    with torch.no_grad():
        learned = np.mean((net(y_val)[0].numpy() - xv) ** 2)
    print(f"\nschuler_deblur: train {losses[0]:.4f} -> {losses[-1]:.4f}; held-out MSE: blurred "
          f"{np.mean((yv - xv) ** 2):.4f}, classical (beta_k {beta_k}, beta_x {beta_x}) {classical:.4f}, "
          f"trained {learned:.4f}")
    assert np.isfinite(losses).all()
    assert_beats_classical(learned, classical, 0.98, "schuler_deblur, held-out MSE")
