"""Catalog E3: `nlr_mrf_gd`, gradient descent on a non-local range MRF energy (gather -> 3-D filter ->
scatter-add over block-matched patch groups).

* every layer equals an independent numpy loop written from the energy (patch stacks gathered with
  fancy indexing, the adjoint scattered with np.add.at), default and random parameters;
* the gradient the network steps along equals torch.autograd.grad of the energy E written out
  directly (a python sum over groups and filters, no take/segment_sum);
* E decreases monotonically for a small step (inpainting mask);
* in the convex regime (small alpha) many steps drive ||grad E|| to 0 and reach the minimiser that
  scipy.optimize.minimize(method='L-BFGS-B') finds from y.
"""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import rel
from scipy.optimize import minimize

pytestmark = pytest.mark.usefixtures("one_torch_thread")

H = W = 8
PS = 2  # patch side


def block_matching(y_img, K, stride=2):
    """Groups of the K patches most similar to each reference patch (itself first), as pixel indices."""
    positions = [(i, j) for i in range(H - PS + 1) for j in range(W - PS + 1)]
    pix = np.array([[(i + a) * W + (j + b) for a in range(PS) for b in range(PS)] for i, j in positions])
    patches = y_img.reshape(-1)[pix]
    refs = [k for k, (i, j) in enumerate(positions) if i % stride == 0 and j % stride == 0]
    groups = []
    for r in refs:
        d = ((patches - patches[r]) ** 2).sum(1)
        d[r] = -1.0
        groups.append(pix[np.argsort(d, kind="stable")[:K]])
    return np.array(groups)  # [G, K, P]


def problem(seed=0, K=3, nf=4, inpaint=True):
    rng = np.random.default_rng(seed)
    clean = np.add.outer(np.linspace(0, 1, H), np.linspace(0, 1, W)) + (np.arange(H * W).reshape(H, W) % 3 == 0)
    y = clean + 0.1 * rng.standard_normal((H, W))
    mask = (rng.random(H * W) > 0.3).astype(float) if inpaint else np.ones(H * W)
    grp = block_matching(y, K)
    F0 = rng.standard_normal((nf, K * PS * PS)) / np.sqrt(K * PS * PS)
    return y.reshape(-1), mask, grp, F0


def numpy_gd(y, mask, grp, F, alpha, s2, etas):
    """x^{k+1} = x^k - eta_k grad E(x^k), the gradient written from the energy."""
    G, K, P = grp.shape
    xs = [y.copy()]
    x = y.copy()
    for eta in etas:
        Z = x[grp].reshape(G, K * P) @ F.T
        dZ = alpha * Z / (1 + Z ** 2 / 2)
        back = np.zeros_like(x)
        np.add.at(back, grp, (dZ @ F).reshape(G, K, P))
        x = x - eta * (mask * (x - y) / s2 + back)
        xs.append(x)
    return xs


def energy_torch(x, y, mask, grp, F, alpha, s2):
    """E(x; y) written out: data term plus the Student-t experts of every group and filter."""
    E = 0.5 / s2 * torch.sum((mask * (x - y)) ** 2)
    for g in range(grp.shape[0]):
        stack = torch.stack([x[int(p)] for p in grp[g].reshape(-1)])
        for i in range(F.shape[0]):
            z = torch.dot(F[i], stack)
            E = E + alpha[i] * torch.log(1 + z ** 2 / 2)
    return E


def net_for(mask, grp, F0, layers, **hyper):
    return unroll.load("nlr_mrf_gd", layers=layers)(mask, grp, F0, **hyper)


def test_every_layer_equals_a_numpy_loop():
    y, mask, grp, F0 = problem()
    L = 6
    net = net_for(mask, grp, F0, L, alpha0=0.7, s20=0.05, eta0=0.01)
    trace = net.trace(torch.tensor(y))
    ref = numpy_gd(y, mask, grp, F0, 0.7, 0.05, [0.01] * L)
    errors = [rel(t["x"].detach().numpy(), r) for t, r in zip(trace, ref)]
    assert len(trace) == L + 1 and max(errors) < 1e-10, errors
    # random (trained-looking) parameters: filters, per-filter alpha, per-layer steps
    rng = np.random.default_rng(3)
    F, alpha, etas = rng.standard_normal(F0.shape), rng.uniform(0.2, 2, F0.shape[0]), rng.uniform(0.001, 0.02, L)
    with torch.no_grad():
        net.F.copy_(torch.tensor(F))
        net.alpha.log_scale.copy_(torch.log(torch.tensor(alpha) / 0.7))
        net.eta.log_scale.copy_(torch.log(torch.tensor(etas) / 0.01))
    batch = np.stack([y, y[::-1].copy()])
    out = net(torch.tensor(batch)).detach().numpy()
    for b in range(2):
        ref = numpy_gd(batch[b], mask, grp, F, alpha, 0.05, etas)[-1]
        assert rel(out[b], ref) < 1e-10


def test_the_step_is_minus_the_autograd_gradient_of_the_energy():
    y, mask, grp, F0 = problem(seed=1)
    eta, alpha, s2 = 0.02, 0.9, 0.04
    net = net_for(mask, grp, F0, 2, alpha0=alpha, s20=s2, eta0=eta)
    trace = net.trace(torch.tensor(y))
    tm, tF, ta = torch.tensor(mask), torch.tensor(F0), torch.full((F0.shape[0],), alpha, dtype=torch.float64)
    for k in (0, 1):  # x^0 = y (data term zero), x^1 (both terms)
        x = trace[k]["x"].detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(energy_torch(x, torch.tensor(y), tm, grp, tF, ta, s2), x)
        step = (trace[k]["x"] - trace[k + 1]["x"]).detach() / eta
        assert rel(step.numpy(), grad.numpy()) < 1e-10, k
    x1 = trace[1]["x"].detach()
    Z = x1[torch.tensor(grp)].reshape(grp.shape[0], -1) @ tF.T
    assert Z.abs().max() > 1.5 and (mask * (x1 - torch.tensor(y)).numpy()).any()  # nonlinear range, data term on


def test_the_energy_decreases_monotonically_for_a_small_step():
    y, mask, grp, F0 = problem(seed=2)
    net = net_for(mask, grp, F0, 40, alpha0=1.0, s20=0.05, eta0=0.01)
    with torch.no_grad():
        trace = net.trace(torch.tensor(y))
    tm, tF = torch.tensor(mask), torch.tensor(F0)
    energies = [float(energy_torch(t["x"], torch.tensor(y), tm, grp, tF, torch.ones(F0.shape[0], dtype=torch.float64), 0.05))
                for t in trace]
    assert all(b < a for a, b in itertools.pairwise(energies)), energies
    assert energies[-1] < 0.95 * energies[0]  # and not by rounding only


def test_many_steps_reach_the_l_bfgs_b_minimiser_in_the_convex_regime():
    y, _mask, grp, F0 = problem(seed=4, inpaint=False)
    alpha, s2 = 0.05, 0.1  # Hessian >= I/s2 - alpha/8 ||F||^2 K: strictly convex, one minimiser
    G, K, P = grp.shape

    def fun(x):
        Z = x[grp].reshape(G, K * P) @ F0.T
        dZ = alpha * Z / (1 + Z ** 2 / 2)
        back = np.zeros_like(x)
        np.add.at(back, grp, (dZ @ F0).reshape(G, K, P))
        return 0.5 / s2 * np.sum((x - y) ** 2) + alpha * np.log(1 + Z ** 2 / 2).sum(), (x - y) / s2 + back

    res = minimize(fun, y, jac=True, method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 2000})
    net = net_for(np.ones(H * W), grp, F0, 300, alpha0=alpha, s20=s2, eta0=0.05)
    x = net(torch.tensor(y)).detach().numpy()
    assert np.linalg.norm(fun(x)[1]) < 1e-8 * np.linalg.norm(fun(y)[1])
    assert rel(x, res.x) < 1e-6
    assert np.linalg.norm(x - y) > 1e-3  # the experts moved the estimate


def test_index_data_are_validated_at_construction():
    _y, mask, grp, F0 = problem()
    with pytest.raises(ValueError, match="grp: expected an integer"):
        net_for(mask, grp.astype(float), F0, 2)
    bad = grp.copy()
    bad[0, 0, 0] = H * W
    with pytest.raises(ValueError, match=r"grp: index 64 is out of range.*0\.\.63"):
        net_for(mask, bad, F0, 2)  # N is bound by `mask`: checked at construction
