"""Family I plug-in hybrids (issue 9, catalog I2–I5): meinhardt_learned_prox, pnp_fbs, pnp_admm, gupta_rpgd,
diamond_odp. The denoiser of each is a `dncnn` given weights that realise the classical operator exactly
(a depth-1 DnCNN is a linear filter; two ReLU layers give a soft threshold or a box projection).

References are independent of the specs: dense matrices of the convolutions built from scipy.ndimage,
numpy loops written from the papers' equations, sklearn's Lasso, scipy.optimize.lsq_linear,
numpy.linalg.solve of the fixed-point or normal equations."""

import numpy as np
import pytest
import torch
import unroll

ndimage = pytest.importorskip("scipy.ndimage")

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = torch.float64


# ------------------------------------------------------------------ denoiser weights and dense matrices
def linear_filter(net, kernel):
    """A depth-1 DnCNN D(x) = x - k ⋆ x as the linear filter with correlation kernel `delta - kernel`."""
    (conv,) = net.convs
    with torch.no_grad():
        conv.conv.weight.zero_()
        conv.conv.weight[0, 0] = torch.as_tensor(kernel)
        conv.conv.bias.zero_()


def two_relu_layers(net, first_w, first_b, second_w, second_b):
    """A depth-2 DnCNN with kernel 3 whose convolutions use only the centre tap (pointwise maps)."""
    conv0, conv1 = (c.conv for c in net.convs)
    with torch.no_grad():
        for conv in (conv0, conv1):
            conv.weight.zero_()
            conv.bias.zero_()
        for ch, (wt, bs) in enumerate(zip(first_w, first_b)):
            conv0.weight[ch, 0, 1, 1] = wt
            conv0.bias[ch] = bs
        for ch, wt in enumerate(second_w):
            conv1.weight[0, ch, 1, 1] = wt
        conv1.bias[0] = second_b


def soft_threshold(net, theta):
    """D(v) = soft(v, θ) = v - R(v), R(v) = clamp(v, -θ, θ) = relu(v + θ) - relu(v - θ) - θ."""
    two_relu_layers(net, (1.0, 1.0), (theta, -theta), (1.0, -1.0), -theta)


def box_projection(net):
    """D(v) = clamp(v, 0, 1) = v - R(v), R(v) = relu(v - 1) - relu(-v)."""
    two_relu_layers(net, (1.0, -1.0), (-1.0, 0.0), (1.0, -1.0), 0.0)


def correlation_matrix(kernel, h, w):
    """Dense matrix of the zero-padded 'same' correlation with `kernel` on h x w images (scipy)."""
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1.0
        cols.append(ndimage.correlate(e.reshape(h, w), kernel, mode="constant").ravel())
    return np.stack(cols, axis=1)


def circulant_matrix(psf, h, w):
    """Dense matrix of the circular convolution with `psf` (centre (s-1)/2) on h x w images (scipy)."""
    cols = []
    for j in range(h * w):
        e = np.zeros(h * w)
        e[j] = 1.0
        cols.append(ndimage.convolve(e.reshape(h, w), psf, mode="wrap").ravel())
    return np.stack(cols, axis=1)


PSF = np.array([[0.0, 0.1, 0.0], [0.02, 0.8, 0.05], [0.0, 0.03, 0.0]])  # not symmetric; |transfer function| >= 0.6
A_SMOOTH = 0.15
SMOOTHER = np.outer([A_SMOOTH, 1 - 2 * A_SMOOTH, A_SMOOTH], [A_SMOOTH, 1 - 2 * A_SMOOTH, A_SMOOTH])
LAPLACIAN = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]])  # -Δ, 5 points


def blur_problem(seed=0, h=5, w=5, batch=3):
    rng = np.random.default_rng(seed)
    A = circulant_matrix(PSF, h, w)
    x = rng.uniform(0, 1, (batch, h * w))
    b = x @ A.T + 0.05 * rng.standard_normal((batch, h * w))
    return A, b


def delta():
    k = np.zeros((3, 3))
    k[1, 1] = 1.0
    return k


# ------------------------------------------------------------------ pnp_fbs, pnp_admm (catalog I3)
def pnp_module(name, layers, h=5, w=5, alpha=1.0, eps=0.9):
    net = unroll.load(name, layers=layers)(psf=torch.tensor(PSF), alpha=alpha, eps=eps, width=1, depth=1,
                                           h=h, w=w)
    linear_filter(net.H, delta() - SMOOTHER)  # H = W, the symmetric Gaussian smoother
    return net.eval()


def test_the_smoother_is_symmetric_with_eigenvalues_in_0_1():
    W = correlation_matrix(SMOOTHER, 5, 5)
    eig = np.linalg.eigvalsh(W)
    assert np.allclose(W, W.T) and eig.min() > 0 and eig.max() <= 1


@pytest.mark.parametrize("name", ["pnp_fbs", "pnp_admm"])
def test_untrained_pnp_is_the_classical_iteration(name):
    """H = I (init=zero): FBS is gradient descent; ADMM the proximal point method (numpy loops)."""
    h = w = 5
    A, b = blur_problem()
    layers, alpha = 6, 0.7
    net = unroll.load(name, layers=layers)(psf=torch.tensor(PSF), alpha=alpha, h=h, w=w)
    out = net(torch.tensor(b.reshape(-1, h, w))).detach().numpy().reshape(len(b), -1)
    for i in range(len(b)):
        if name == "pnp_fbs":
            x = b[i].copy()
            for _ in range(layers):
                x = x - alpha * A.T @ (A @ x - b[i])
        else:
            z, u = b[i].copy(), np.zeros(h * w)
            prox = np.linalg.inv(alpha * A.T @ A + np.eye(h * w))
            for _ in range(layers):
                x = z - u
                z = prox @ (alpha * A.T @ b[i] + x + u)
                u = u + x - z
        np.testing.assert_allclose(out[i], x, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("name", ["pnp_fbs", "pnp_admm"])
def test_pnp_with_a_linear_smoother_converges_linearly_to_the_fixed_point(name):
    """H = W: the fixed point x = W (x - alpha A^T (A x - b)) (both schemes), by numpy.linalg.solve."""
    h = w = 5
    A, b = blur_problem(seed=1)
    alpha = 1.0
    W = correlation_matrix(SMOOTHER, h, w)
    n = h * w
    fixed = np.linalg.solve(np.eye(n) - W @ (np.eye(n) - alpha * A.T @ A), alpha * W @ A.T @ b.T).T
    net = pnp_module(name, 60, alpha=alpha)
    states = net.trace(torch.tensor(b.reshape(-1, h, w)))
    errors = [np.abs(s["x"].detach().numpy().reshape(len(b), -1) - fixed).max() for s in states[1:]]
    assert errors[-1] < 1e-12 * np.abs(fixed).max() + 1e-13
    # linear: the error falls by a fixed factor per block of 10 layers (until rounding)
    assert errors[20] < 0.05 * errors[10] and errors[10] < 0.05 * errors[0]


@pytest.mark.parametrize("name", ["pnp_fbs", "pnp_admm"])
def test_pnp_power_iteration_norm_matches_the_dense_residual(name):
    h = w = 5
    net = pnp_module(name, 2)
    R = np.eye(h * w) - correlation_matrix(SMOOTHER, h, w)  # the residual I - W the layer computes
    reference = np.linalg.norm(R, 2)
    assert abs(net.H.convs[0].operator_norm(h, w, iterations=3000) - reference) <= 1e-9 * reference
    assert reference < 0.9  # below eps: the normalisation leaves W alone (the tests above use W exactly)
    # a bound below the norm scales R to it
    tight = pnp_module(name, 2, eps=0.5)
    tight(torch.zeros(1, h, w, dtype=F64))
    effective = tight.H.convs[0].effective_weight(h, w).detach().numpy()[0, 0]
    assert np.linalg.norm(correlation_matrix(effective, h, w), 2) == pytest.approx(0.5, rel=1e-6)


# ------------------------------------------------------------------ meinhardt_learned_prox (catalog I2)
def meinhardt_module(A, layers, tau, sigma, width=2, depth=2, h=1):
    m, n = A.shape
    return unroll.load("meinhardt_learned_prox", layers=layers)(
        A=torch.tensor(A), tau=tau, sigma=sigma, width=width, depth=depth, k1=1, k2=m, h=h, w=n // h,
        ).eval()


def pdhg_numpy(A, b, tau, sigma, prox, layers):
    """PDHG (Chambolle–Pock, theta = 1) for min 1/2 ||A x - b||^2 + r(x), prox_{tau r} = `prox`."""
    x = np.zeros(A.shape[1])
    xbar, p = x.copy(), np.zeros(A.shape[0])
    for _ in range(layers):
        p = (p + sigma * (A @ xbar - b)) / (1 + sigma)
        xn = prox(x - tau * A.T @ p)
        xbar, x = 2 * xn - x, xn
    return x


def lasso_problem(seed=2, m=20, n=8):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) / np.sqrt(m)
    x = rng.standard_normal(n) * (rng.uniform(size=n) < 0.5)
    b = np.stack([A @ x + 0.05 * rng.standard_normal(m) for _ in range(2)])
    return A, b


def test_meinhardt_untrained_is_pdhg_without_regulariser():
    A, b = lasso_problem()
    norm = np.linalg.norm(A, 2)
    tau = sigma = 0.9 / norm
    net = meinhardt_module(A, 12, tau, sigma)
    out = net(torch.tensor(b[:, None, :])).detach().numpy()[:, 0]
    for i in range(len(b)):
        np.testing.assert_allclose(out[i], pdhg_numpy(A, b[i], tau, sigma, lambda v: v, 12), rtol=1e-11,
                                   atol=1e-12)


def test_meinhardt_with_the_l1_prox_is_pdhg_for_the_lasso():
    linear_model = pytest.importorskip("sklearn.linear_model")
    A, b = lasso_problem()
    lam = 0.05
    norm = np.linalg.norm(A, 2)
    tau = sigma = 0.9 / norm

    def soft(v):
        return np.sign(v) * np.maximum(np.abs(v) - tau * lam, 0)

    short = meinhardt_module(A, 25, tau, sigma)
    soft_threshold(short.D, tau * lam)
    out = short(torch.tensor(b[:, None, :])).detach().numpy()[:, 0]
    for i in range(len(b)):
        np.testing.assert_allclose(out[i], pdhg_numpy(A, b[i], tau, sigma, soft, 25), rtol=1e-11, atol=1e-12)
    # at convergence: the Lasso solution (sklearn minimises 1/(2m) ||b - A x||^2 + a ||x||_1: a = lam / m)
    long = meinhardt_module(A, 1500, tau, sigma)
    soft_threshold(long.D, tau * lam)
    out = long(torch.tensor(b[:, None, :])).detach().numpy()[:, 0]
    for i in range(len(b)):
        lasso = linear_model.Lasso(alpha=lam / A.shape[0], fit_intercept=False, tol=1e-14, max_iter=100000)
        lasso.fit(A, b[i])
        np.testing.assert_allclose(out[i], lasso.coef_, rtol=0, atol=1e-9)


def test_meinhardt_with_a_linear_smoother_converges_to_the_linear_fixed_point():
    h = w = 4
    rng = np.random.default_rng(3)
    A = rng.standard_normal((24, h * w)) / np.sqrt(24)
    b = rng.standard_normal((2, 24))
    norm = np.linalg.norm(A, 2)
    tau = sigma = 0.9 / norm
    W = correlation_matrix(SMOOTHER, h, w)
    n = h * w
    fixed = np.linalg.solve(np.eye(n) - W @ (np.eye(n) - tau * A.T @ A), tau * W @ A.T @ b.T).T
    net = unroll.load("meinhardt_learned_prox", layers=600)(
        A=torch.tensor(A), tau=tau, sigma=sigma, width=1, depth=1, k1=1, k2=24, h=h, w=w).eval()
    linear_filter(net.D, delta() - SMOOTHER)
    out = net(torch.tensor(b[:, None, :])).detach().numpy().reshape(2, -1)
    np.testing.assert_allclose(out, fixed, rtol=0, atol=1e-10 * np.abs(fixed).max())


# ------------------------------------------------------------------ gupta_rpgd (catalog I4)
def box_problem(seed=4, m=14, n=8, batch=4):
    rng = np.random.default_rng(seed)
    H = rng.standard_normal((m, n)) / np.sqrt(m)
    x = rng.uniform(-0.5, 1.5, (batch, n))  # outside the box in places: active bounds
    y = x @ H.T + 0.05 * rng.standard_normal((batch, m))
    return H, y


def gupta_module(H, layers, gamma, c):
    m, n = H.shape
    net = unroll.load("gupta_rpgd", layers=layers)(Hop=torch.tensor(H), gamma=gamma, c=c, width=2, depth=2,
                                                   k1=1, k2=m, h=1, w=n).eval()
    box_projection(net.P)
    return net


def rpgd_numpy(H, y, gamma, c, layers):
    """Algorithm 1 of Gupta et al. (RPGD) for one sample, P = the projection onto [0, 1]^n."""
    x = np.zeros(H.shape[1])
    alpha, previous, alphas = 1.0, None, []
    for k in range(layers):
        z = np.clip(x - gamma * H.T @ (H @ x - y), 0, 1)
        d = np.linalg.norm(z - x)
        if k >= 1 and d > c * previous:
            alpha = c * previous / d * alpha
        x = (1 - alpha) * x + alpha * z
        previous = d
        alphas.append(alpha)
    return x, alphas


def test_gupta_with_the_box_projection_converges_to_lsq_linear():
    optimize = pytest.importorskip("scipy.optimize")
    H, y = box_problem()
    gamma = 1.0 / np.linalg.norm(H, 2) ** 2
    net = gupta_module(H, 400, gamma, 0.99)
    xhat, _alpha = net(torch.tensor(y[:, None, :]))
    xhat = xhat.detach().numpy()[:, 0]
    for i in range(len(y)):
        reference = optimize.lsq_linear(H, y[i], bounds=(0, 1), method="bvls", tol=1e-15).x
        np.testing.assert_allclose(xhat[i], reference, rtol=0, atol=1e-9)


def test_gupta_alpha_never_increases_and_matches_a_per_sample_loop():
    H, y = box_problem(seed=5)
    gamma, c, layers = 1.5 / np.linalg.norm(H, 2) ** 2, 0.6, 15
    net = gupta_module(H, layers, gamma, c)
    states = net.trace(torch.tensor(y[:, None, :]))
    alphas = np.stack([s["alpha"].detach().numpy() for s in states])  # [layers + 1, batch]
    assert (np.diff(alphas, axis=0) <= 0).all()
    assert (alphas[-1] < 1).any() and (alphas[-1] < alphas[1]).any()  # the rule fired
    x_last = states[-1]["x"].detach().numpy()[:, 0, 0]
    for i in range(len(y)):
        x_ref, alpha_ref = rpgd_numpy(H, y[i], gamma, c, layers)
        np.testing.assert_allclose(x_last[i], x_ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(alphas[1:, i], alpha_ref, rtol=1e-12, atol=0)
    # batched = one sample at a time
    for i in range(len(y)):
        single, _ = net(torch.tensor(y[i][None, :]))
        np.testing.assert_allclose(single.detach().numpy()[0], x_last[i], rtol=1e-12, atol=1e-13)


def test_gupta_rejects_c_outside_0_1():
    H, _ = box_problem()
    with pytest.raises(ValueError, match="c must be in"):
        unroll.load("gupta_rpgd", layers=2)(Hop=torch.tensor(H), c=1.5, k1=1, k2=14, h=1, w=8)


# ------------------------------------------------------------------ diamond_odp (catalog I5)
def diamond_module(layers, alpha0, depth=1, h=5, w=5):
    return unroll.load("diamond_odp", layers=layers)(psf=torch.tensor(PSF), alpha0=alpha0, width=1,
                                                     depth=depth, h=h, w=w).eval()


def test_diamond_untrained_is_the_proximal_point_method_and_reaches_least_squares():
    h = w = 5
    A, b = blur_problem(seed=6)
    n = h * w
    alpha = 2.0
    short = diamond_module(5, alpha, depth=3)
    out = short(torch.tensor(b.reshape(-1, h, w))).detach().numpy().reshape(len(b), -1)
    prox = np.linalg.inv(alpha * A.T @ A + np.eye(n))
    for i in range(len(b)):
        x = b[i].copy()
        for _ in range(5):
            x = prox @ (alpha * A.T @ b[i] + x)
        np.testing.assert_allclose(out[i], x, rtol=1e-11, atol=1e-12)
    long = diamond_module(80, alpha)
    out = long(torch.tensor(b.reshape(-1, h, w))).detach().numpy().reshape(len(b), -1)
    np.testing.assert_allclose(out, np.linalg.solve(A, b.T).T, rtol=0, atol=1e-10)


def test_diamond_with_a_laplacian_cnn_reaches_the_tikhonov_solution():
    h = w = 5
    A, b = blur_problem(seed=7)
    alpha, lam = 1.0, 0.1
    net = diamond_module(150, alpha)
    for layer_net in net.R:
        linear_filter(layer_net, alpha * lam * LAPLACIAN)  # x - CNN(x), CNN(x) = alpha lam (-Δ) x
    out = net(torch.tensor(b.reshape(-1, h, w))).detach().numpy().reshape(len(b), -1)
    L0 = correlation_matrix(LAPLACIAN, h, w)  # -Δ with zero boundary (the CNN's padding)
    tikhonov = np.linalg.solve(A.T @ A + lam * L0, A.T @ b.T).T
    np.testing.assert_allclose(out, tikhonov, rtol=0, atol=1e-10)
