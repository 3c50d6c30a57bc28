"""Catalog A16 `lsparcom` (learned SPARCOM) and B3 `ding_rain_admm` (unrolled ADMM for rain removal,
template only).

lsparcom        shift-invariant 2-D model without decimation (A = circular convolution with a PSF):
                the untrained network equals a numpy SPARCOM loop built on dense matrices
                (M = (A^T A)^{o2}, L = ||M||_2, v = diag(A^T J A)) at every layer, and the shipped
                dense `sparcom` spec; trained briefly it beats SPARCOM (lam tuned) at equal depth.
ding_rain_admm  equals a numpy ADMM loop (Gauss-Seidel B then R) at every layer; its FFT-diagonal
                B and R solves equal dense circulant solves (8x8); with fixed finite-difference
                filters it reaches the optimum of the objective, certified by an independent
                Condat-Vu primal-dual solver written with np.roll differences (cvxpy is not
                available) and by the KKT conditions; a short training run on the 24x24
                synthetic rain task lowers the loss and beats the classical ADMM at equal depth.
"""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import rel, soft
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


def roll_conv(k, x, adjoint=False):
    """Circular 2-D convolution by shifts, independent of the FFT: kernel [..., s1, s2] with its
    centre at ((s1-1)//2, (s2-1)//2) (the conv2 convention), out[i] = sum_o k[c + o] x[i - o];
    adjoint=True gives the correlation sum_o k[c + o] x[i + o]."""
    s1, s2 = k.shape[-2:]
    c1, c2 = (s1 - 1) // 2, (s2 - 1) // 2
    out = 0
    for a in range(s1):
        for b in range(s2):
            if not np.any(k[..., a, b]):
                continue  # a zero tap (zero-padded PSF windows)
            shift = (a - c1, b - c2) if not adjoint else (c1 - a, c2 - b)
            out = out + k[..., a, b, None, None] * np.roll(x, shift, axis=(-2, -1))
    return out


def dense(op, h, w):
    """The matrix of a linear map of h x w images (columns: images of the unit vectors)."""
    eye = np.eye(h * w)
    return np.stack([op(e.reshape(h, w)).reshape(-1) for e in eye], axis=1)


# ====================================================================== A16: lsparcom
def psf_window(s=9, sigma=(1.0, 0.7), skew=0.3):
    """An asymmetric PSF (tilted elliptical Gaussian plus a side lobe) on an s x s window, zero
    outside its central 5 x 5 part, so the M kernel (support 9 x 9) fits the window."""
    c = (s - 1) // 2
    yy, xx = np.mgrid[:s, :s] - c
    p = np.exp(-0.5 * ((xx + skew * yy) ** 2 / sigma[0] ** 2 + yy**2 / sigma[1] ** 2))
    p += 0.2 * np.exp(-0.5 * ((xx - 1) ** 2 + (yy + 1) ** 2))
    p[(np.abs(xx) > 2) | (np.abs(yy) > 2)] = 0
    return p / p.sum()


def lsparcom_movie(rng, psf, h, w, T, k, noise):
    """T frames of k emitters with i.i.d. exponential intensities, imaged by A = psf (*) . (circular)."""
    S = np.zeros((T, h, w))
    pos = rng.choice(h * w, k, replace=False)
    S.reshape(T, -1)[:, pos] = rng.exponential(1.0, (T, k))
    return roll_conv(psf, S) + noise * rng.standard_normal((T, h, w))


def np_sparcom_dense(A, f, lam, layers, M_and_L=None):
    """SPARCOM (catalog A16) with dense matrices: J the population covariance of the frames,
    M = (A^T A)^{o2}, v_i = a_i^T J a_i, L = ||M||_2, x <- S^+_{lam/L}(x - (M x - v) / L).
    (M, L) depend on A only: pass them to reuse them across movies."""
    F = f.reshape(f.shape[0], -1)
    Fc = F - F.mean(axis=0)
    J = Fc.T @ Fc / F.shape[0]
    M = (A.T @ A) ** 2 if M_and_L is None else M_and_L[0]
    v = np.einsum("pi,pq,qi->i", A, J, A)
    L = np.linalg.norm(M, 2) if M_and_L is None else M_and_L[1]
    x = np.zeros(A.shape[1])
    out = [x]
    for _ in range(layers):
        x = np.maximum(x - (M @ x - v) / L - lam / L, 0)
        out.append(x)
    return out, M, L, v


def test_lsparcom_defaults_equal_sparcom_every_layer():
    rng = np.random.default_rng(0)
    h, w, T = 12, 10, 80
    psf = psf_window()
    A = dense(lambda e: roll_conv(psf, e), h, w)
    f = lsparcom_movie(rng, psf, h, w, T, 5, 0.01)
    background = np.linspace(0.5, 1.5, h * w).reshape(h, w)  # constant in time: removed by the centring
    movies = np.stack([f, 2 * f, f + background])
    lam = 0.05 * np_sparcom_dense(A, f, 0.0, 0)[3].max()  # 5% of max(v)
    net = unroll.load("lsparcom", layers=10)(psf=psf, lam=lam)
    trace = net.trace(torch.from_numpy(movies))
    for b, movie in enumerate(movies):
        ref, M, L, _ = np_sparcom_dense(A, movie, lam, 10)
        for layer in range(11):
            assert rel(trace[layer]["x"][b].detach().numpy().reshape(-1), ref[layer]) < 1e-10, (b, layer)
    assert (ref[-1] > 0).sum() > 3  # a non-trivial support
    # the defaults are the classical operators: conv2(P1, x) = x - M x / L, conv2(P0, v) = v / L
    # (L itself only initialises parameters, so the module keeps no buffer of it)
    assert "L" not in dict(net.named_buffers())
    P = net.parameter_values()
    x = rng.standard_normal((h, w))
    for layer in (0, 9):
        P1x = roll_conv(P["P1"][layer].detach().numpy(), x).reshape(-1)
        assert rel(P1x, x.reshape(-1) - M @ x.reshape(-1) / L) < 1e-12
        assert rel(P["P0"][layer].detach().numpy().sum(), 1 / L) < 1e-12
        assert abs(P["theta"][layer].item() - lam / L) < 1e-12 * lam / L
    # ... and the shipped dense `sparcom` spec gives the same iterates on the flattened movie
    x_dense = unroll.load("sparcom", layers=10)(A=A, lam=lam)(torch.from_numpy(f.reshape(T, -1)))
    assert rel(trace[10]["x"][0].detach().numpy().reshape(-1), x_dense.numpy()) < 1e-10


def test_lsparcom_is_shift_equivariant():
    # circular model: shifting the movie shifts the reconstruction (for any filters: every layer is a
    # convolution followed by a pointwise threshold); here with perturbed filters
    rng = np.random.default_rng(1)
    psf = psf_window()
    f = lsparcom_movie(rng, psf, 12, 12, 50, 4, 0.01)
    net = unroll.load("lsparcom", layers=6)(psf=psf, lam=1e-3)
    with torch.no_grad():
        for p in (net.P0, net.P1):
            p.add_(1e-3 * torch.randn(p.shape, generator=torch.Generator().manual_seed(0), dtype=p.dtype))
        x = net(torch.from_numpy(f)).numpy()
        xs = net(torch.from_numpy(np.roll(f, (3, -5), axis=(1, 2)))).numpy()
    assert rel(xs, np.roll(x, (3, -5), axis=(0, 1))) < 1e-10


def lsparcom_task(rng, n, h, w, T, psf, noise=0.01):
    """Movies of 3-5 random emitters (exponential intensities, variance 1); target: the variance image."""
    fs, xs = [], []
    for _ in range(n):
        k = int(rng.integers(3, 6))
        S = np.zeros((T, h * w))
        pos = rng.choice(h * w, k, replace=False)
        S[:, pos] = rng.exponential(1.0, (T, k))
        x = np.zeros(h * w)
        x[pos] = 1.0
        fs.append(S.reshape(T, h, w))
        xs.append(x.reshape(h, w))
    S = np.stack(fs)
    f = roll_conv(psf, S) + noise * rng.standard_normal(S.shape)
    return torch.from_numpy(f), torch.from_numpy(np.stack(xs))


def test_lsparcom_training_beats_sparcom_at_equal_depth():
    # measured: training loss (mean of 5 steps) 0.0153 -> 0.0075; held-out MSE of the trained 5-layer
    # net 0.0057 vs 0.0153 for 5 SPARCOM iterations with the best lam of the grid (0.005-0.008 over
    # three other seeds)
    rng = np.random.default_rng(0)
    h = w = 12
    T, depth = 40, 5
    psf = psf_window(sigma=(1.0, 1.0), skew=0.0)
    Fv, Xv = lsparcom_task(rng, 16, h, w, T, psf)
    A = dense(lambda e: roll_conv(psf, e), h, w)
    M_and_L = np_sparcom_dense(A, Fv[0].numpy(), 0.0, 0)[1:3]

    def sparcom_mse(lam):  # the classical SPARCOM (numpy, dense matrices) at the same depth
        out = np.stack([np_sparcom_dense(A, f, lam, depth, M_and_L)[0][-1] for f in Fv.numpy()])
        return np.mean((out - Xv.numpy().reshape(16, -1)) ** 2)

    best_sparcom, best_lam, _ = best_on_grid(sparcom_mse, (1e-4, 3e-4, 1e-3, 2e-3, 5e-3))
    net = unroll.load("lsparcom", layers=depth)(psf=psf, lam=1e-3)
    with torch.no_grad():  # untrained: SPARCOM at lam = 1e-3
        assert rel((net(Fv) - Xv).square().mean().item(), sparcom_mse(1e-3)) < 1e-10

    def loss():
        F, X = lsparcom_task(rng, 8, h, w, T, psf)  # a fresh batch every step
        return (net(F) - X).square().mean()

    losses = adam(net.parameters(), loss, 40, 1e-2)
    with torch.no_grad():
        val = (net(Fv) - Xv).square().mean().item()
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert_beats_classical(val, best_sparcom, 0.7, f"lsparcom, held-out MSE (SPARCOM best lam {best_lam})")
    assert (net.parameter_values()["theta"] > 0).all()


# ====================================================================== B3: ding_rain_admm
def fd_filters():
    """D = {forward x-difference, forward y-difference}; E = {y-difference along the (vertical)
    streaks, identity (sparsity of R)}; 3 x 3 kernels with their centre at [1, 1]."""
    d = np.zeros((2, 3, 3))
    d[0, 1, 1], d[0, 1, 2] = -1.0, 1.0
    d[1, 1, 1], d[1, 2, 1] = -1.0, 1.0
    e = np.zeros((2, 3, 3))
    e[0, 1, 1], e[0, 2, 1] = -1.0, 1.0
    e[1, 1, 1] = 1.0
    return d, e


def np_otf(k, h, w):
    s1, s2 = k.shape[-2:]
    pad = np.zeros(k.shape[:-2] + (h, w))
    pad[..., :s1, :s2] = k
    return np.fft.fft2(np.roll(pad, (-((s1 - 1) // 2), -((s2 - 1) // 2)), axis=(-2, -1)))


def np_conv(k, x, adjoint=False):
    K = np_otf(k, *x.shape[-2:])
    return np.fft.ifft2((K.conj() if adjoint else K) * np.fft.fft2(x)).real


def np_rain_admm(O, d, e, lam1, lam2, rho1, rho2, eta1, eta2, layers):
    """Scaled-form ADMM for min 1/2||O-B-R||^2 + lam1 sum||D_i B||_1 + lam2 sum||E_j R||_1 with
    p = D B, q = E R: Gauss-Seidel FFT solves for B then R, soft thresholds, multiplier steps."""
    h, w = O.shape
    B, R = O.copy(), np.zeros_like(O)
    p = a = np.zeros((d.shape[0], h, w))
    q = b = np.zeros((e.shape[0], h, w))
    den1 = 1 + rho1 * (np.abs(np_otf(d, h, w)) ** 2).sum(0)
    den2 = 1 + rho2 * (np.abs(np_otf(e, h, w)) ** 2).sum(0)
    out = [{"B": B, "R": R, "p": p, "alpha": a, "q": q, "beta": b}]
    for _ in range(layers):
        B = np.fft.ifft2(np.fft.fft2(O - R + rho1 * np_conv(d, p - a, adjoint=True).sum(0)) / den1).real
        R = np.fft.ifft2(np.fft.fft2(O - B + rho2 * np_conv(e, q - b, adjoint=True).sum(0)) / den2).real
        DB, ER = np_conv(d, B[None]), np_conv(e, R[None])
        p, q = soft(DB + a, lam1 / rho1), soft(ER + b, lam2 / rho2)
        a, b = a + eta1 * (DB - p), b + eta2 * (ER - q)
        out.append({"B": B, "R": R, "p": p, "alpha": a, "q": q, "beta": b})
    return out


def rain_image(rng, h=24, w=24):
    """Catalog B3 data: smooth background plus sparse vertical streaks (random segments, blurred
    along the streak direction)."""
    yy, xx = np.mgrid[:h, :w] / h
    bg = (0.5 + 0.2 * np.sin(2 * np.pi * (rng.random() * xx + rng.random() * yy) + 6 * rng.random())
          + 0.2 * np.cos(2 * np.pi * (rng.random() * xx - rng.random() * yy)))
    rain = np.zeros((h, w))
    for _ in range(int(rng.integers(6, 10))):
        r, c, length = rng.integers(0, h), rng.integers(0, w), rng.integers(5, 12)
        rain[(r + np.arange(length)) % h, c] += rng.uniform(0.3, 0.8)
    rain = 0.25 * np.roll(rain, -1, axis=0) + 0.5 * rain + 0.25 * np.roll(rain, 1, axis=0)
    return bg, rain


@pytest.mark.parametrize("random_filters", [False, True])
def test_ding_rain_admm_equals_numpy_admm(random_filters):
    rng = np.random.default_rng(2)
    bg, rain = rain_image(rng)
    O = bg + rain
    d, e = fd_filters()
    if random_filters:  # filters as after training: any 3 x 3 / 5 x 5 kernels
        d, e = rng.standard_normal((3, 3, 3)), rng.standard_normal((2, 5, 5))
    hyp = {"lam10": 0.05, "lam20": 0.1, "rho10": 0.7, "rho20": 1.3}
    net = unroll.load("ding_rain_admm", layers=12)(d0=d, e0=e, **hyp)
    trace = net.trace(torch.from_numpy(np.stack([O, 0.5 * O])))
    for b, scale in enumerate((1.0, 0.5)):
        ref = np_rain_admm(scale * O, d, e, 0.05, 0.1, 0.7, 1.3, 1.0, 1.0, 12)
        for layer in range(13):
            for name, r in ref[layer].items():
                assert rel(trace[layer][name][b].detach().numpy(), r) < 1e-10, (b, layer, name)


def test_ding_rain_admm_fft_solves_equal_dense_circulant_solves():
    # B = (I + rho1 sum D_i^T D_i)^-1 (O - R + rho1 sum D_i^T (p_i - alpha_i)), and R likewise with the
    # new B; checked at layer 2 (non-zero R, p, alpha, q, beta) with random filters, on an 8 x 8 image
    rng = np.random.default_rng(3)
    h = w = 8
    O = rng.standard_normal((h, w))
    d, e = rng.standard_normal((2, 3, 3)), rng.standard_normal((3, 3, 3))
    rho1, rho2 = 0.6, 1.7
    net = unroll.load("ding_rain_admm", layers=2)(d0=d, e0=e, rho10=rho1, rho20=rho2, lam10=0.1, lam20=0.2)
    tr = net.trace(torch.from_numpy(O))
    s1, s2 = ({k: v.detach().numpy() for k, v in t.items()} for t in tr[1:])
    D = [dense(lambda x, k=k: roll_conv(k, x), h, w) for k in d]
    E = [dense(lambda x, k=k: roll_conv(k, x), h, w) for k in e]
    n = h * w
    SB = np.eye(n) + rho1 * sum(Di.T @ Di for Di in D)
    SR = np.eye(n) + rho2 * sum(Ej.T @ Ej for Ej in E)
    rhs_B = O.reshape(-1) - s1["R"].reshape(-1) + rho1 * sum(
        Di.T @ (s1["p"][i] - s1["alpha"][i]).reshape(-1) for i, Di in enumerate(D))
    B = np.linalg.solve(SB, rhs_B)
    rhs_R = O.reshape(-1) - B + rho2 * sum(
        Ej.T @ (s1["q"][j] - s1["beta"][j]).reshape(-1) for j, Ej in enumerate(E))
    R = np.linalg.solve(SR, rhs_R)
    assert np.abs(s1["p"]).max() > 0 and np.abs(s1["alpha"]).max() > 0 and np.abs(s1["R"]).max() > 0
    assert rel(s2["B"].reshape(-1), B) < 1e-10
    assert rel(s2["R"].reshape(-1), R) < 1e-10
    # layer 1 from zeros: B = SB^-1 O
    assert rel(s1["B"].reshape(-1), np.linalg.solve(SB, O.reshape(-1))) < 1e-10


def condat_vu(O, lam1, lam2, iters, tau=0.25):
    """Independent solver (Condat-Vu primal-dual splitting, np.roll finite differences, no FFT) for
    min 1/2||O-B-R||^2 + lam1(||dx B||_1 + ||dy B||_1) + lam2(||dy R||_1 + ||R||_1).
    Step rule 1/tau - sigma ||K||^2 >= L_f / 2 with ||K||^2 <= 8 and L_f = 2."""
    sigma = 0.99 * (1 / tau - 1) / 8

    def K(B, R):
        return (np.roll(B, -1, 1) - B, np.roll(B, -1, 0) - B, np.roll(R, -1, 0) - R, R)

    def KT(y):
        return (np.roll(y[0], 1, 1) - y[0] + np.roll(y[1], 1, 0) - y[1], np.roll(y[2], 1, 0) - y[2] + y[3])

    B, R = O.copy(), np.zeros_like(O)
    y = [np.zeros_like(O) for _ in range(4)]
    bounds = (lam1, lam1, lam2, lam2)
    for _ in range(iters):
        r = O - B - R
        gB, gR = KT(y)
        Bn, Rn = B - tau * (gB - r), R - tau * (gR - r)
        y = [np.clip(yi + sigma * ki, -t, t) for yi, ki, t in zip(y, K(2 * Bn - B, 2 * Rn - R), bounds)]
        B, R = Bn, Rn
    return B, R


def rain_objective(O, B, R, lam1, lam2):
    d, e = fd_filters()
    return (0.5 * np.sum((O - B - R) ** 2) + lam1 * np.abs(roll_conv(d, B)).sum()
            + lam2 * np.abs(roll_conv(e, R)).sum())


def test_ding_rain_admm_converges_to_the_optimum():
    # cvxpy is not available: the reference optimum comes from a long run of an independent solver
    # (condat_vu, converged to rounding by 3000 iterations); measured: ADMM (1500 layers, rho = 1)
    # matches its objective to 9e-16 relative (3.7e-8 after 300 layers, 3.7e-12 after 600).
    # The minimiser need not be unique (B and R can trade mass on a few pixels: |B - Bcv| is 2e-5
    # here, 0.01 on another image), but B + R is (the data term is strictly convex in B + R).
    rng = np.random.default_rng(4)
    bg, rain = rain_image(rng)
    O = bg + rain
    lam1 = lam2 = 0.05
    rho = 1.0
    d, e = fd_filters()
    Bc, Rc = condat_vu(O, lam1, lam2, 3000)
    with torch.no_grad():
        last = unroll.load("ding_rain_admm", layers=1500)(d0=d, e0=e, lam10=lam1, lam20=lam2, rho10=rho,
                                                         rho20=rho).trace(torch.from_numpy(O))[-1]
    s = {k: v.numpy() for k, v in last.items()}
    B, R = s["B"], s["R"]
    F_admm, F_cv = rain_objective(O, B, R, lam1, lam2), rain_objective(O, Bc, Rc, lam1, lam2)
    assert abs(F_admm - F_cv) <= 1e-10 * F_cv
    assert rain_objective(O, O, 0 * O, lam1, lam2) > 1.1 * F_cv  # the optimum is not the trivial split
    assert np.abs((B + R) - (Bc + Rc)).max() < 1e-8
    # KKT certificate from ADMM's own variables: y_p = rho alpha, y_q = rho beta satisfy
    #   D^T y_p = O - B - R = E^T y_q,  |y| <= lam,  y = lam sign(.) on the support,  D B = p,  E R = q
    r = O - B - R
    yp, yq = rho * s["alpha"], rho * s["beta"]
    assert np.abs(roll_conv(d, yp, adjoint=True).sum(0) - r).max() < 1e-10
    assert np.abs(roll_conv(e, yq, adjoint=True).sum(0) - r).max() < 1e-10
    assert np.abs(roll_conv(d, B) - s["p"]).max() < 1e-10 and np.abs(roll_conv(e, R) - s["q"]).max() < 1e-10
    for y, z, lam in ((yp, s["p"], lam1), (yq, s["q"], lam2)):
        assert np.abs(y).max() <= lam * (1 + 1e-10)
        on = z != 0
        assert on.sum() > 0 and np.abs(y[on] - lam * np.sign(z[on])).max() < 1e-10


def test_ding_rain_admm_trains_on_synthetic_rain():
    # measured: training loss 0.0181 -> 0.0044 in 30 steps; held-out background MSE 0.0032 vs 0.0074
    # for the classical ADMM (numpy) at the same depth with the best (lam1, lam2) of the grid
    rng = np.random.default_rng(5)

    def batch(n):
        pairs = [rain_image(rng) for _ in range(n)]
        bg, rain = np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
        return torch.from_numpy(bg + rain), torch.from_numpy(bg), torch.from_numpy(rain)

    d, e = fd_filters()
    layers = 4
    Ov, Bv, _ = batch(8)

    def admm_mse(lams):
        B = np.stack([np_rain_admm(O, d, e, *lams, 1.0, 1.0, 1.0, 1.0, layers)[-1]["B"] for O in Ov.numpy()])
        return np.mean((B - Bv.numpy()) ** 2)

    classical, best, _ = best_on_grid(admm_mse, itertools.product((0.02, 0.05, 0.1), (0.02, 0.05, 0.1)))
    net = unroll.load("ding_rain_admm", layers=layers)(d0=d, e0=e)
    with torch.no_grad():  # untrained: the ADMM at lam1 = lam2 = 0.05, rho = eta = 1
        assert rel((net(Ov)[0] - Bv).square().mean().item(), admm_mse((0.05, 0.05))) < 1e-10
    O, Bt, Rt = batch(6)

    def loss():
        B, R = net(O)
        return (B - Bt).square().mean() + (R - Rt).square().mean()

    losses = adam(net.parameters(), loss, 30, 1e-2)
    with torch.no_grad():
        val = (net(Ov)[0] - Bv).square().mean().item()
    assert losses[-1] < 0.5 * losses[0]
    assert_beats_classical(val, classical, 0.6, f"ding_rain_admm, held-out background MSE (ADMM best {best})")
    pv = net.parameter_values()
    assert all((pv[k] > 0).all() for k in ("lam1", "lam2", "rho1", "rho2"))
