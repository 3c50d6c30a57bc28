"""Issue 3 specs expressible today: nmf_mu (real negative powers, column normalisation), admm_csnet,
deep_nmf (rpca_ista and admm_lasso: tests/test_rpca_admm_lasso.py).
Each is checked against an independent numpy implementation of the classical algorithm
(float64 / complex128, <= 1e-10 relative) and the catalog's property tests."""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


# ------------------------------------------------------------------ beta-NMF
def np_nmf(W0, M, beta, mu, eps, L):
    W = np.broadcast_to(W0, (M.shape[0],) + W0.shape).copy()
    H = np.sqrt(M.mean(axis=(1, 2)) / W0.shape[1])[:, None, None] * np.ones((M.shape[0], W0.shape[1], M.shape[2]))
    out = [(W, H)]
    for _ in range(L):
        V = W @ H + eps
        H = H * (W.transpose(0, 2, 1) @ (M * V ** (beta - 2))) / (W.transpose(0, 2, 1) @ V ** (beta - 1) + mu)
        V = W @ H + eps
        Wn = W * ((M * V ** (beta - 2)) @ H.transpose(0, 2, 1)) / (V ** (beta - 1) @ H.transpose(0, 2, 1))
        c = np.linalg.norm(Wn, axis=1)  # [B, K]
        W = Wn / c[:, None, :]
        H = H * c[:, :, None]
        out.append((W, H))
    return out


def beta_div(M, V, beta):
    if beta == 1:
        return np.sum(M * np.log(M / V) - M + V)
    if beta == 0:
        return np.sum(M / V - np.log(M / V) - 1)
    return np.sum((M ** beta + (beta - 1) * V ** beta - beta * M * V ** (beta - 1)) / (beta * (beta - 1)))


@pytest.mark.parametrize("mu", [0.0, 0.3])
@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0])
def test_nmf_mu_equals_numpy_and_decreases_the_divergence(beta, mu):
    rng = np.random.default_rng(0)
    F, T, K = 12, 10, 3
    M = rng.random((2, F, T)) + 0.1
    W0 = rng.random((F, K)) + 0.1
    W0 /= np.linalg.norm(W0, axis=0)
    Net = unroll.load("nmf_mu", layers=25)
    trace = Net(W0=W0, beta=beta, mu=mu).trace(torch.from_numpy(M))
    ref = np_nmf(W0, M, beta, mu, 1e-12, 25)
    for layer in (1, 10, 25):
        assert rel(trace[layer]["H"].detach().numpy(), ref[layer][1]) < 1e-10
        assert rel(trace[layer]["W"].detach().numpy(), ref[layer][0]) < 1e-10
    for s in trace[1:]:
        W, H = s["W"].detach().numpy(), s["H"].detach().numpy()
        assert (H >= 0).all() and (W >= 0).all()
        assert np.allclose(np.linalg.norm(W, axis=1), 1.0)  # unit-norm columns after every layer
    if beta in (1.0, 2.0) and mu == 0.0:  # MM guarantee for beta in [1, 2]
        d = [beta_div(M, s["W"].detach().numpy() @ s["H"].detach().numpy(), beta) for s in trace]
        assert all(b <= a * (1 + 1e-10) for a, b in itertools.pairwise(d))


@pytest.mark.parametrize("beta, mu", [(1.0, 0.0), (2.0, 0.0), (1.5, 0.3), (2.0, 0.3)])
def test_deep_nmf_untrained_matches_sklearn_with_the_basis_fixed(beta, mu):
    # catalog D3 (c): deep_nmf with every W^l = W0 (unit columns) runs (24) with W0 fixed; sklearn's
    # multiplicative updates of the free factor of the transposed problem M^T ~ H^T W0^T (update_H=False,
    # solver='mu') are the same H updates for beta in [1, 2] (for beta < 1 sklearn raises its update to the
    # power 1/(2 - beta), a different algorithm). With update_H=False sklearn starts the free factor at
    # the constant sqrt(mean(M) / K), as the spec does. Its l1 penalty on that factor is F * alpha_W
    # (l1_ratio = 1), so alpha_W = mu / F; not at beta = 1 with alpha_W > 0, where scikit-learn 1.9.1's
    # update is itself wrong (75 % off this loop).
    decomposition = pytest.importorskip("sklearn.decomposition")
    rng = np.random.default_rng(1)
    F, T, K = 8, 6, 3
    M = rng.random((F, T)) + 0.1
    W0 = rng.random((F, K)) + 0.1
    W0 /= np.linalg.norm(W0, axis=0)
    steps = 30
    Ht, _, _ = decomposition.non_negative_factorization(
        M.T, H=W0.T.copy(), n_components=K, update_H=False, solver="mu", beta_loss=beta, max_iter=steps, tol=0,
        alpha_W=mu / F, alpha_H=0.0, l1_ratio=1.0)
    net = unroll.load("deep_nmf", layers=steps)(W=W0, beta=beta, mu=mu)
    H_net = net(torch.from_numpy(M)).detach().numpy()
    assert rel(H_net, Ht.T) < 1e-10


# ------------------------------------------------------------------ ADMM-CSNet
def _derivative_filters():
    d = np.zeros((2, 3, 3))
    d[0, 1, 1], d[0, 1, 2] = -1.0, 1.0  # horizontal forward difference (centre at [1, 1])
    d[1, 1, 1], d[1, 2, 1] = -1.0, 1.0  # vertical forward difference
    return d


def np_otf(k, h, w):
    s1, s2 = k.shape[-2:]
    pad = np.zeros(k.shape[:-2] + (h, w))
    pad[..., :s1, :s2] = k
    return np.fft.fft2(np.roll(pad, (-((s1 - 1) // 2), -((s2 - 1) // 2)), axis=(-2, -1)))


def np_conv(k, x, adjoint=False):
    K = np_otf(k, *x.shape[-2:])
    return np.fft.ifft2((K.conj() if adjoint else K) * np.fft.fft2(x)).real


def dense_mri_operators(mask, d):
    """Phi = M F_u (complex, [h*w, h*w]) and the circular convolutions D_c ([h*w, h*w] each) as dense
    matrices, built column by column from numpy's FFT and `np_conv` (row-major vectorised images)."""
    h, w = mask.shape
    eye = np.eye(h * w)
    Fu = np.stack([np.fft.fft2(e.reshape(h, w), norm="ortho").reshape(-1) for e in eye], axis=1)
    Phi = mask.reshape(-1)[:, None] * Fu
    Ds = [np.stack([np_conv(dc, e.reshape(h, w)).reshape(-1) for e in eye], axis=1) for dc in d]
    return Phi, Ds


def real_x_subproblem(Phi, Ds, rho):
    """The x-subproblem of ADMM for real x: min_x 1/2 ||Phi x - y||^2 + sum_c rho/2 ||D_c x - v_c||^2.
    Over the reals its normal matrix is Re(Phi^H Phi) + rho sum_c D_c^T D_c (built explicitly here);
    returns (normal matrix, y -> Re(Phi^H y))."""
    normal = (Phi.conj().T @ Phi).real + rho * sum(D.T @ D for D in Ds)
    return normal, lambda y: (Phi.conj().T @ y.reshape(-1)).real


def np_admm_csnet(mask, d, y, rho, lam, eta, L, multipliers=False):
    """ADMM (catalog B2 (15)) for min_{x real} 1/2 ||M F_u x - y||^2 + lam sum_c ||d_c * x||_1, with the
    x-update solved densely over the reals; x^0 is the zero-filled real(F_u^H y). Returns the iterates
    x^0..x^L (and, with multipliers=True, also the last scaled multipliers alpha_c, flattened)."""
    h, w = mask.shape
    Phi, Ds = dense_mri_operators(mask, d)
    normal, data_rhs = real_x_subproblem(Phi, Ds, rho)
    normal_inverse = np.linalg.inv(normal)  # small and well conditioned (DC sampled, rho > 0)
    x = np.fft.ifft2(y, norm="ortho").real
    z = np.zeros((len(Ds), h * w))
    a = np.zeros_like(z)
    xs = [x]
    for _ in range(L):
        rhs = data_rhs(y) + rho * sum(D.T @ (zc - ac) for D, zc, ac in zip(Ds, z, a))
        xv = normal_inverse @ rhs
        dx = np.stack([D @ xv for D in Ds])
        z = np.sign(dx + a) * np.maximum(np.abs(dx + a) - lam / rho, 0)
        a = a + eta * (dx - z)
        xs.append(xv.reshape(h, w))
    return (xs, a) if multipliers else xs


def _mri_problem(h=16, w=16, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2 < (h / 3) ** 2).astype(float) + 0.05 * rng.standard_normal((h, w))
    mask = (rng.random((h, w)) < 0.4).astype(float)
    mask[0, 0] = 1.0  # DC sampled: the reconstruction system is invertible
    y = mask * np.fft.fft2(img, norm="ortho")
    return img, mask, y


def _reflected(mask):
    """m[-k mod (h, w)]: the mask reflected through the origin of k-space."""
    return np.roll(mask[::-1, ::-1], 1, axis=(0, 1))


def test_admm_csnet_equals_numpy_admm():
    _, mask, y = _mri_problem()
    assert not np.array_equal(mask, _reflected(mask))  # a random mask: not conjugate-symmetric
    d = _derivative_filters()
    Net = unroll.load("admm_csnet", layers=8)
    net = Net(mask=mask, d0=d, lam0=0.02, rho0=0.5)
    trace = net.trace(torch.from_numpy(np.stack([y, 0.5 * y])))
    for b, scale in enumerate((1.0, 0.5)):
        ref = np_admm_csnet(mask, d, scale * y, 0.5, 0.02, 1.0, 8)
        assert max(rel(trace[l]["x"][b].detach().numpy(), ref[l]) for l in range(9)) < 1e-10


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_admm_csnet_x_update_is_the_real_subproblem_minimiser(seed):
    # catalog B2 (b) for a real image and a random (not conjugate-symmetric) mask: the FFT-form U1 equals
    # the dense solve of the real normal equations [Re(Phi^H Phi) + rho sum D^T D] x = Re(Phi^H y) +
    # rho sum D^T (z - alpha), at layer 1 (z = alpha = 0) and at layer 3 (z, alpha from layer 2).
    h = w = 8
    _, mask, y = _mri_problem(h, w, seed=seed)
    assert not np.array_equal(mask, _reflected(mask))
    d = _derivative_filters()
    rho = 0.7
    Phi, Ds = dense_mri_operators(mask, d)
    normal, data_rhs = real_x_subproblem(Phi, Ds, rho)
    trace = unroll.load("admm_csnet", layers=3)(mask=mask, d0=d, rho0=rho, lam0=0.05).trace(torch.from_numpy(y))
    states = [{k: v.detach().numpy() for k, v in s.items()} for s in trace]
    for layer in (1, 3):
        z, a = states[layer - 1]["z"].reshape(2, -1), states[layer - 1]["alpha"].reshape(2, -1)
        x_dense = np.linalg.solve(normal, data_rhs(y) + rho * sum(D.T @ (zc - ac) for D, zc, ac in zip(Ds, z, a)))
        assert rel(states[layer]["x"], x_dense.reshape(h, w)) < 1e-10, layer


def test_admm_csnet_converges_to_the_real_image_optimum():
    # Untrained ADMM-CSNet (constant rho, lam, eta = 1) converges to the minimiser over REAL x of
    # 1/2 ||M F_u x - y||^2 + lam sum_c ||d_c * x||_1, random non-symmetric mask. Reference: a long
    # dense numpy ADMM on the real formulation, certified optimal by the KKT conditions with its multiplier
    # s = rho alpha / lam: stationarity Re(Phi^H Phi) x - Re(Phi^H y) + lam D^T s = 0, |s| <= 1, and
    # s = sign(D x) where D x != 0.
    h = w = 8
    _, mask, y = _mri_problem(h, w, seed=3)
    assert not np.array_equal(mask, _reflected(mask))
    d = _derivative_filters()
    lam, rho = 0.02, 0.5
    Phi, Ds = dense_mri_operators(mask, d)
    W = np.vstack(Ds)
    Q, data_rhs = (Phi.conj().T @ Phi).real, real_x_subproblem(Phi, Ds, rho)[1]
    xs, alpha = np_admm_csnet(mask, d, y, rho, lam, 1.0, 1500, multipliers=True)
    x_ref, s = xs[-1].reshape(-1), rho * alpha.reshape(-1) / lam
    assert np.abs(Q @ x_ref - data_rhs(y) + lam * W.T @ s).max() < 1e-12  # stationarity
    assert np.abs(s).max() <= 1 + 1e-9
    on = np.abs(W @ x_ref) > 1e-9
    assert np.abs(s[on] - np.sign(W @ x_ref)[on]).max() < 1e-9
    def objective(v):
        return 0.5 * np.sum(np.abs(Phi @ v - y.reshape(-1)) ** 2) + lam * np.abs(W @ v).sum()

    with torch.no_grad():
        x_net = unroll.load("admm_csnet", layers=1000)(mask=mask, d0=d, lam0=lam, rho0=rho)(torch.from_numpy(y))
    x_net = x_net.numpy().reshape(-1)
    assert rel(x_net, x_ref) < 1e-10
    assert objective(x_net) - objective(x_ref) < 1e-12 * objective(x_ref)


def test_admm_csnet_requires_a_positive_denominator():
    # zero-mean filters and an unsampled DC coefficient leave the x-update without a solution
    _, mask, _ = _mri_problem(8, 8, seed=1)
    d = _derivative_filters()
    Net = unroll.load("admm_csnet", layers=2)
    Net(mask=mask, d0=d)  # DC sampled: builds
    no_dc = mask.copy()
    no_dc[0, 0] = 0.0
    with pytest.raises(ValueError, match="`mask`.*denominator"):
        Net(mask=no_dc, d0=d)
    with pytest.raises(ValueError, match="`mask`.*nonnegative"):
        Net(mask=mask - 0.5, d0=d)


def test_admm_csnet_conv_adjoint_dot_product():
    from unroll.runtime import adjoint_test, conv2, conv2_adj

    rng = np.random.default_rng(0)
    k = torch.from_numpy(rng.standard_normal((3, 3)))
    x = torch.from_numpy(rng.standard_normal((9, 7)))
    u = torch.from_numpy(rng.standard_normal((9, 7)))
    assert adjoint_test(lambda v: conv2(k, v), lambda v: conv2_adj(k, v), x, u) < 1e-12


def test_admm_csnet_trains():
    torch.manual_seed(0)
    _img, mask, _y = _mri_problem(seed=2)
    imgs, ys = [], []
    for s in range(8):
        im, _, _ = _mri_problem(seed=10 + s)
        imgs.append(im)
        ys.append(mask * np.fft.fft2(im, norm="ortho"))
    X = torch.tensor(np.stack(imgs), dtype=torch.float32)
    Y = torch.tensor(np.stack(ys), dtype=torch.complex64)
    Net = unroll.load("admm_csnet", layers=4)
    net = Net(mask=torch.tensor(mask, dtype=torch.float32), d0=torch.tensor(_derivative_filters(),
                                                                          dtype=torch.float32))
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        loss = (net(Y) - X).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert (net.parameter_values()["rho"] > 0).all()


# ------------------------------------------------------------------ deep NMF
def np_deep_nmf(Ws, M, beta, mu, eps=1e-12):
    """Deep NMF from the review's Box (eqs. (24), (26)) with one basis per layer: layer l normalises the
    columns of its basis W^l (26) and runs the multiplicative H update (24) with it. Ws: [L, F, K] (or
    one [F, K] basis repeated by the caller); M: [B, F, T]. Returns H^0..H^L, each [B, K, T]."""
    K = Ws[0].shape[1]
    H = np.sqrt(M.mean(axis=(1, 2)) / K)[:, None, None] * np.ones((M.shape[0], K, M.shape[2]))
    out = [H]
    for W in Ws:
        Wn = W / np.sqrt((W ** 2).sum(axis=0))  # (26): w_k / ||w_k||_2
        V = Wn @ H + eps
        H = H * (Wn.T @ (M * V ** (beta - 2))) / (Wn.T @ V ** (beta - 1) + mu)  # (24)
        out.append(H)
    return out


def nmf_data(seed, F=10, T=7, K=3, batch=3):
    rng = np.random.default_rng(seed)
    return rng.random((batch, F, T)) + 0.1, rng.random((F, K)) + 0.1


def test_deep_nmf_untrained_equals_classical_h_updates_with_unit_norm_bases():
    # catalog D3 (a) with unit-norm W: the (26) step is the identity and each layer is (24) with W
    M, W = nmf_data(0)
    W /= np.linalg.norm(W, axis=0)
    K = W.shape[1]
    for beta in (0.0, 1.0, 2.0):
        Net = unroll.load("deep_nmf", layers=12)
        trace = Net(W=W, beta=beta, mu=0.1).trace(torch.from_numpy(M))
        H = np.sqrt(M.mean(axis=(1, 2)) / K)[:, None, None] * np.ones((3, K, M.shape[2]))
        for layer in range(1, 13):
            V = W @ H + 1e-12
            H = H * (W.T @ (M * V ** (beta - 2))) / (W.T @ V ** (beta - 1) + 0.1)
            assert rel(trace[layer]["H"].detach().numpy(), H) < 1e-10
            assert (trace[layer]["H"].detach().numpy() >= 0).all()


@pytest.mark.parametrize("beta, mu", [(0.0, 0.1), (1.0, 0.0), (1.0, 0.2), (2.0, 0.1)])
def test_deep_nmf_normalises_each_layers_basis(beta, mu):
    # (26) in every layer, with bases far from unit norm: (i) untrained (W^l = W) against the numpy loop
    # of (24) + (26); (ii) a different nonnegative basis per layer with column norms from 0.2 to 5 (as
    # after training); (iii) the output depends on each W^l only through its column directions.
    M, W = nmf_data(1)
    W = W * np.array([0.3, 2.0, 4.5])  # column norms ~0.5 to ~8
    layers = 6
    net = unroll.load("deep_nmf", layers=layers)(W=W, beta=beta, mu=mu)
    ref = np_deep_nmf([W] * layers, M, beta, mu)
    trace = net.trace(torch.from_numpy(M))
    for layer in range(layers + 1):
        assert rel(trace[layer]["H"].detach().numpy(), ref[layer]) < 1e-10, layer
    rng = np.random.default_rng(2)
    Ws = rng.random((layers,) + W.shape) * rng.uniform(0.2, 5.0, size=(layers, 1, W.shape[1]))
    with torch.no_grad():
        net.Wl.raw.copy_(torch.from_numpy(Ws))
        H_net = net(torch.from_numpy(M)).numpy()
        assert rel(H_net, np_deep_nmf(Ws, M, beta, mu)[-1]) < 1e-10
        net.Wl.raw.mul_(torch.from_numpy(rng.uniform(0.1, 10.0, size=(layers, 1, W.shape[1]))))  # rescale columns
        assert rel(net(torch.from_numpy(M)).numpy(), H_net) < 1e-10


def test_deep_nmf_objective_non_increasing_with_fixed_bases():
    # catalog D3 (b): MM guarantee for beta in [1, 2]: D_beta(M | Wn H) + mu ||H||_1 never increases
    # layer by layer (bases fixed, Wn = W with unit columns), and H stays >= 0
    M, W = nmf_data(3)
    W = W * np.array([0.5, 3.0, 1.7])
    Wn = W / np.linalg.norm(W, axis=0)
    for beta in (1.0, 2.0):
        trace = unroll.load("deep_nmf", layers=30)(W=W, beta=beta, mu=0.05).trace(torch.from_numpy(M))
        f = [beta_div(M, Wn @ s["H"].detach().numpy(), beta) + 0.05 * s["H"].detach().numpy().sum() for s in trace]
        assert all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(f))
        assert f[-1] < 0.9 * f[0]
        assert all((s["H"].detach().numpy() >= 0).all() for s in trace)


def test_deep_nmf_requires_nonnegative_nonzero_bases():
    _, W = nmf_data(4)
    Net = unroll.load("deep_nmf", layers=2)
    Net(W=W)
    with pytest.raises(ValueError, match="`W`.*nonnegative"):
        Net(W=W - 0.5)
    W0 = W.copy()
    W0[:, 1] = 0.0
    with pytest.raises(ValueError, match="`W`.*nonzero"):
        Net(W=W0)


def test_deep_nmf_trains_and_keeps_w_nonnegative():
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    F, T, K = 12, 8, 3
    W_true = rng.random((F, K))
    H_true = rng.random((64, K, T))
    M = W_true @ H_true + 0.01
    W_init = rng.random((F, K)) + 0.1
    Net = unroll.load("deep_nmf", layers=5)
    net = Net(W=torch.tensor(W_init, dtype=torch.float32), beta=2.0)
    Mt, Ht = torch.tensor(M, dtype=torch.float32), torch.tensor(H_true, dtype=torch.float32)
    opt = torch.optim.Adam(net.parameters(), lr=2e-2)
    first = None
    for _ in range(150):
        loss = (net(Mt) - Ht).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first
    assert (net.parameter_values()["Wl"] >= 0).all()
