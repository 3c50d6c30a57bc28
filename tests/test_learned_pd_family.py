"""Learned primal-dual family: learned_pdhg (B6), lpd_nodule_detection (B7) (conv-ISTA, fbpconvnet (A11):
tests/test_fbpconvnet.py).

learned_pdhg          the untrained network (zero-initialised residual CNNs) is PDHG for the lasso: it
                      equals an independent numpy PDHG loop at every layer (float64, <= 1e-10), for a matrix
                      operator and for the same operator given as an object; a short training run on a toy
                      CT task trains sigma, tau, theta and beats classical PDHG at the same depth (numpy,
                      best (lam, sigma/tau) of a grid) on held-out images.
lpd_nodule_detection  (a) with the detection loss weighted 0 the joint model's reconstruction is exactly the
                      learned_primal_dual module's (same weights copied across), before and after identical
                      training steps; (b) a detection loss alone sends nonzero gradients to every LPD weight
                      (checked against a finite difference); (c) joint fine-tuning (detection + gamma recon)
                      after separate pre-training beats the classical pipeline at the same depth on held-out
                      images (gradient descent at its best step; a threshold at its best value as detector).
"""

import contextlib
import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import soft
from training_helpers import adam, assert_beats_classical, best_on_grid

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: threads only add overhead


@contextlib.contextmanager
def float64_default():
    # a module built from an operator object has no data tensor to take its dtype from: it takes torch's
    # default dtype, and its derived parameter defaults (sigma, tau) are computed in that dtype
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def to_np(t):
    return t.detach().cpu().numpy()


class MatOp:
    """A matrix-free operator object: forward/adjoint on batches of images [batch, *in] <-> [batch, *out]."""

    def __init__(self, M, in_shape, out_shape):
        self.M, self.in_shape, self.out_shape = M, tuple(in_shape), tuple(out_shape)

    def forward(self, x):
        return (x.reshape(x.shape[0], -1) @ self.M.T).reshape(x.shape[0], *self.out_shape)

    def adjoint(self, y):
        return (y.reshape(y.shape[0], -1) @ self.M).reshape(y.shape[0], *self.in_shape)


def toy_ct(batch, hx, wx, rng, blob=False):
    """Piecewise-constant phantoms: a random rectangle of random intensity (plus, with blob=True, a small
    bright 2x2 'nodule' at a random place, whose mask is returned as the detection target)."""
    X = np.zeros((batch, hx, wx))
    T = np.zeros((batch, hx, wx))
    for i in range(batch):
        r0, c0 = rng.integers(0, hx // 2, 2)
        r1, c1 = r0 + rng.integers(2, hx // 2 + 1), c0 + rng.integers(2, wx // 2 + 1)
        X[i, r0:r1, c0:c1] = rng.uniform(0.5, 1.0)
        if blob:
            br, bc = rng.integers(0, hx - 1, 2)
            X[i, br:br + 2, bc:bc + 2] += 1.0
            T[i, br:br + 2, bc:bc + 2] = 1.0
    return X, T


# ====================================================================== B6: learned PDHG
def np_pdhg_images(Kmat, g, lam, sigma, tau, theta, layers):
    """Chambolle-Pock for min 1/2||K x - g||^2 + lam ||x||_1 on flattened images (K a dense matrix)."""
    b = g.shape[0]
    gf = g.reshape(b, -1)
    x = xbar = np.zeros((b, Kmat.shape[1]))
    u = np.zeros_like(gf)
    out = [(x, xbar, u)]
    for _ in range(layers):
        u = (u + sigma * xbar @ Kmat.T - sigma * gf) / (1 + sigma)  # prox of sigma F*
        x_new = soft(x - tau * u @ Kmat, tau * lam)  # prox of tau G
        xbar = x_new + theta * (x_new - x)
        x = x_new
        out.append((x, xbar, u))
    return out


@pytest.mark.parametrize("hypers", [{}, {"lam": 0.02, "rho": 0.9, "ratio": 3.0, "theta0": 0.7}])
def test_learned_pdhg_untrained_is_pdhg(hypers):
    rng = np.random.default_rng(0)
    hx, wx, na, nd, layers = 6, 5, 4, 6, 12
    Kmat = rng.standard_normal((na * nd, hx * wx)) / np.sqrt(na * nd)
    Kn = np.linalg.norm(Kmat, 2)
    X, _ = toy_ct(3, hx, wx, rng)
    g = (X.reshape(3, -1) @ Kmat.T).reshape(3, na, nd) + 0.01 * rng.standard_normal((3, na, nd))
    h = {"lam": 0.1, "rho": 0.99, "ratio": 1.0, "theta0": 1.0, **hypers}
    sigma, tau = h["rho"] * np.sqrt(h["ratio"]) / Kn, h["rho"] / (np.sqrt(h["ratio"]) * Kn)
    ref = np_pdhg_images(Kmat, g, h["lam"], sigma, tau, h["theta0"], layers)
    Net = unroll.load("learned_pdhg", layers=layers)
    dims = {"hx": hx, "wx": wx, "na": na, "nd": nd}
    net = Net(K=torch.from_numpy(Kmat), Kn=Kn, **hypers, **dims)
    vals = net.parameter_values()
    assert abs(vals["sigma"].item() - sigma) < 1e-15 * sigma and abs(vals["tau"].item() - tau) < 1e-15 * tau
    assert vals["theta"].item() == h["theta0"]
    assert len(net.Gamma) == layers and len(net.Lambda) == layers  # one CNN pair per iteration
    gt = torch.from_numpy(g)
    with torch.no_grad():
        trace = net.trace(gt)
    worst = 0.0
    for layer in range(layers + 1):
        x, xbar, u = (trace[layer][k][:, 0].reshape(3, -1).numpy() for k in ("x", "xbar", "u"))
        for mine, theirs in zip((x, xbar, u), ref[layer]):
            err = rel(mine, theirs) if np.abs(theirs).max() > 0 else float(np.abs(mine).max())
            worst = max(worst, err)
    assert worst < 1e-10, worst
    assert np.abs(ref[-1][0]).max() > 0.1  # the comparison is not between zeros
    # the same operator as an object with forward/adjoint gives the same network
    with float64_default():
        net_obj = Net(K=MatOp(torch.from_numpy(Kmat), (hx, wx), (na, nd)), Kn=Kn, **hypers, **dims)
    with torch.no_grad():
        assert rel(to_np(net_obj(gt)), to_np(net(gt))) < 1e-13


def test_learned_pdhg_training_beats_pdhg():
    # classical: PDHG for the lasso (numpy, float64) at the same depth with the best (lam, sigma/tau) of a
    # grid on the held-out images; the network starts from it
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    hx = wx = 8
    na, nd, layers = 6, 8, 5
    Kmat = rng.standard_normal((na * nd, hx * wx)) / np.sqrt(na * nd)
    Kn = float(np.linalg.norm(Kmat, 2))
    Kt = torch.tensor(Kmat, dtype=torch.float32)

    def data(batch):
        X, _ = toy_ct(batch, hx, wx, rng)
        X = torch.tensor(X, dtype=torch.float32)
        g = (X.reshape(batch, -1) @ Kt.T).reshape(batch, na, nd)
        return X, g + 0.01 * torch.randn_like(g)

    Xtr, gtr = data(16)
    Xte, gte = data(32)

    def pdhg_mse(hyper):
        lam, ratio = hyper
        sigma, tau = 0.99 * np.sqrt(ratio) / Kn, 0.99 / (np.sqrt(ratio) * Kn)
        x = np_pdhg_images(Kmat, gte.double().numpy(), lam, sigma, tau, 1.0, layers)[-1][0]
        return np.mean((x - Xte.double().numpy().reshape(32, -1)) ** 2)

    grid = itertools.product((0.001, 0.003, 0.01, 0.03, 0.1), (0.3, 1.0, 3.0))
    classical, (lam, ratio), _ = best_on_grid(pdhg_mse, grid)
    Net = unroll.load("learned_pdhg", layers=layers)
    net = Net(K=Kt, Kn=Kn, lam=lam, ratio=ratio, hx=hx, wx=wx, na=na, nd=nd)
    with torch.no_grad():  # untrained: that PDHG (float32 module)
        assert abs((net(gte) - Xte).square().mean().item() - classical) < 1e-5 * classical
    start = {k: v.item() for k, v in net.parameter_values().items()}
    losses = adam(net.parameters(), lambda: (net(gtr) - Xtr).square().mean(), 30, 2e-3)
    with torch.no_grad():
        learned = (net(gte) - Xte).square().mean().item()
    end = {k: v.item() for k, v in net.parameter_values().items()}
    print(f"\nlearned_pdhg: train loss {losses[0]:.4f} -> {losses[-1]:.4f}; held-out MSE PDHG({layers}) "
          f"(lam {lam}, sigma/tau {ratio}) {classical:.4f}, learned {learned:.4f}")
    assert_beats_classical(learned, classical, 0.3, "learned_pdhg, held-out MSE")  # measured 0.0205 -> 0.0027
    assert all(end[k] != start[k] for k in ("sigma", "tau", "theta"))  # the algorithm parameters train too
    assert end["sigma"] > 0 and end["tau"] > 0


# ====================================================================== B7: LPD + nodule detection
LPD_DIMS = {"hx": 6, "wx": 6, "na": 4, "nd": 6}


def _lpd_pair(layers, dtype, seed):
    """A learned_primal_dual module with random (non-zero) weights, and the joint model with its weights."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    d = LPD_DIMS
    Kmat = torch.tensor(rng.standard_normal((d["na"] * d["nd"], d["hx"] * d["wx"])) / 6, dtype=dtype)
    lpd = unroll.load("learned_primal_dual", layers=layers)(K=Kmat, **d)
    joint = unroll.load("lpd_nodule_detection", layers=layers)(K=Kmat, **d)
    with torch.no_grad():  # move away from the zero init so that every weight matters
        for p in lpd.parameters():
            p.copy_(0.1 * torch.randn_like(p))
    missing, unexpected = joint.load_state_dict(lpd.state_dict(), strict=False)
    assert not unexpected
    assert all(k.startswith(("D.", "zeros")) for k in missing), missing
    return lpd, joint, Kmat


def test_lpd_detection_weight_zero_gives_the_lpd_reconstruction():
    layers = 3
    lpd, joint, Kmat = _lpd_pair(layers, torch.float32, seed=0)
    rng = np.random.default_rng(5)
    X, T = toy_ct(8, LPD_DIMS["hx"], LPD_DIMS["wx"], rng, blob=True)
    X, T = torch.tensor(X, dtype=torch.float32), torch.tensor(T, dtype=torch.float32)
    g = MatOp(Kmat, X.shape[1:], (LPD_DIMS["na"], LPD_DIMS["nd"])).forward(X)
    x, det = joint(g)
    assert det.shape == x.shape == X.shape
    assert torch.equal(x, lpd(g)) and x.abs().max() > 0
    # identical training with the detection term weighted 0: the reconstructions stay bit-identical
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    opt_l = torch.optim.Adam(lpd.parameters(), lr=1e-3)
    opt_j = torch.optim.Adam(joint.parameters(), lr=1e-3)
    det_before = [p.detach().clone() for p in joint.D.parameters()]
    for _ in range(5):
        loss_l = (lpd(g) - X).square().mean()
        opt_l.zero_grad()
        loss_l.backward()
        opt_l.step()
        x, det = joint(g)
        loss_j = 0.0 * bce(det, T) + (x - X).square().mean()
        opt_j.zero_grad()
        loss_j.backward()
        opt_j.step()
        assert loss_j.item() == loss_l.item()
    x, _ = joint(g)
    assert torch.equal(x, lpd(g))
    assert all(torch.equal(a, b) for a, b in zip(det_before, joint.D.parameters()))  # the head did not move


def test_lpd_detection_gradients_reach_the_reconstruction():
    layers = 3
    _, joint, Kmat = _lpd_pair(layers, torch.float64, seed=1)
    rng = np.random.default_rng(6)
    X, T = toy_ct(4, LPD_DIMS["hx"], LPD_DIMS["wx"], rng, blob=True)
    X, T = torch.from_numpy(X), torch.from_numpy(T)
    g = MatOp(Kmat, X.shape[1:], (LPD_DIMS["na"], LPD_DIMS["nd"])).forward(X)
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def det_loss():
        return bce(joint(g)[1], T)

    joint.zero_grad()
    det_loss().backward()
    lpd_params = [(n, p) for n, p in joint.named_parameters() if not n.startswith("D.")]
    assert len(lpd_params) == 2 * layers * 8  # Gamma_i, Lambda_i: 3 convs (w, b) + 2 PReLUs each
    for name, p in lpd_params:
        assert p.grad is not None and p.grad.abs().max() > 0, name
    # the gradient is the true derivative: central finite difference along the gradient of Lambda_0
    p = joint.Lambda[0].body[0].weight
    direction = p.grad / p.grad.norm()
    eps = 1e-5
    with torch.no_grad():
        p.add_(eps * direction)
        up = det_loss().item()
        p.sub_(2 * eps * direction)
        down = det_loss().item()
        p.add_(eps * direction)
    fd = (up - down) / (2 * eps)
    assert abs(fd - p.grad.norm().item()) < 1e-6 * p.grad.norm().item()


def np_landweber(Kmat, g, step, iters):
    """Gradient descent on 1/2 ||K x - g||^2 from x = 0 (the classical iteration learned primal-dual
    reduces to), on flattened images: g [batch, na*nd] -> x [batch, hx*wx]."""
    x = np.zeros((g.shape[0], Kmat.shape[1]))
    for _ in range(iters):
        x = x - step * (x @ Kmat.T - g) @ Kmat
    return x


def test_lpd_detection_joint_fine_tuning():
    # held-out comparison with the classical pipeline at the same depth: `layers` gradient-descent steps
    # (best step of a grid) for the reconstruction, and a threshold on that reconstruction (best threshold
    # of a grid) as the detector. measured: reconstruction MSE 0.103 -> 0.031, pixel error 0.085 -> 0.051
    torch.manual_seed(0)
    rng = np.random.default_rng(7)
    d = LPD_DIMS
    layers = 3
    K64 = rng.standard_normal((d["na"] * d["nd"], d["hx"] * d["wx"])) / 6
    Kmat = torch.tensor(K64, dtype=torch.float32)
    op = MatOp(Kmat, (d["hx"], d["wx"]), (d["na"], d["nd"]))
    X, T = toy_ct(32, d["hx"], d["wx"], rng, blob=True)
    Xv, Tv = toy_ct(64, d["hx"], d["wx"], rng, blob=True)
    X, T = torch.tensor(X, dtype=torch.float32), torch.tensor(T, dtype=torch.float32)
    g, gv = op.forward(X), op.forward(torch.tensor(Xv, dtype=torch.float32))
    joint = unroll.load("lpd_nodule_detection", layers=layers)(K=op, **d)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    gamma = 10.0
    lpd_params = [p for n, p in joint.named_parameters() if not n.startswith("D.")]

    def joint_loss():
        x, det = joint(g)
        return bce(det, T) + gamma * (x - X).square().mean()

    # [38]: each network trained alone first (reconstruction; then the detector on the reconstruction) ...
    adam(lpd_params, lambda: (joint(g)[0] - X).square().mean(), 80, 3e-3)
    adam(joint.D.parameters(), lambda: bce(joint(g)[1], T), 80, 3e-3)
    # ... then fine-tuned jointly with loss = detection + gamma * reconstruction
    losses = adam(joint.parameters(), joint_loss, 40, 1e-3)
    with torch.no_grad():
        final = joint_loss().item()
        x, det = joint(gv)
    recon, det_error = np.mean((x.numpy() - Xv) ** 2), np.mean((det.numpy() > 0) != (Tv > 0.5))
    # the classical pipeline, numpy float64
    gv64 = gv.double().numpy().reshape(64, -1)
    steps = [c / np.linalg.norm(K64, 2) ** 2 for c in (0.5, 1.0, 1.5, 1.9)]
    gd_recon, step, _ = best_on_grid(lambda t: np.mean((np_landweber(K64, gv64, t, layers) - Xv.reshape(64, -1)) ** 2),
                                     steps)
    x_gd = np_landweber(K64, gv64, step, layers)
    gd_det, threshold, _ = best_on_grid(lambda t: np.mean((x_gd > t) != (Tv.reshape(64, -1) > 0.5)),
                                        (0.25, 0.5, 0.75, 1.0, 1.25, 1.5))
    print(f"\nlpd_nodule_detection: joint loss {losses[0]:.4f} -> {final:.4f}; held-out reconstruction MSE: "
          f"gradient descent {gd_recon:.4f}, trained {recon:.4f}; pixel detection error: thresholded gradient "
          f"descent (t = {threshold}) {gd_det:.4f}, trained {det_error:.4f}")
    assert final < 0.8 * losses[0]
    assert_beats_classical(recon, gd_recon, 0.5, "lpd_nodule_detection, held-out reconstruction MSE")
    assert_beats_classical(det_error, gd_det, 0.75, "lpd_nodule_detection, held-out pixel detection error")
