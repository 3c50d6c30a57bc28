"""Catalog E4: `loopy_bp`, truncated sum-product belief propagation over edge index arrays.

* every layer's messages equal an independent numpy BP loop (explicit neighbour lists, products of
  messages in the probability domain, normalised), with and without damping;
* on a 5-node tree (S = 3) the beliefs after diameter-many layers equal the exact marginals of
  brute-force enumeration (3^5 states), and pgmpy's exact BeliefPropagation (if installed);
* on a loopy 3x3 binary grid with weak coupling the beliefs are within 1e-2 of the exact marginals
  (2^9 states), and further from them than on a tree (the test is not vacuous);
* a short ERMA-style training run of the coupling scale through the truncated iterations lowers the
  held-out loss of the beliefs against the exact marginals.
"""

import itertools

import numpy as np
import pytest
import torch
import unroll
from reference import rel

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def directed(edges):
    """Both directions of every undirected edge, and the index of each reverse edge."""
    src = [i for i, j in edges] + [j for i, j in edges]
    dst = [j for i, j in edges] + [i for i, j in edges]
    n = len(edges)
    rev = list(range(n, 2 * n)) + list(range(n))
    return np.array(src), np.array(dst), np.array(rev)


def model(edges, V, S, seed, coupling=1.0):
    rng = np.random.default_rng(seed)
    logphi = rng.standard_normal((V, S))
    psi_und = [coupling * rng.standard_normal((S, S)) for _ in edges]  # log psi(x_i, x_j) per undirected edge
    logpsi = np.array(psi_und + [p.T for p in psi_und])  # the reverse edge sees the transpose
    return logphi, psi_und, logpsi


def exact_marginals(logphi, edges, psi_und):
    V, S = logphi.shape
    states = np.array(list(itertools.product(range(S), repeat=V)))
    logp = logphi[np.arange(V), states].sum(1)
    for (i, j), p in zip(edges, psi_und):
        logp = logp + p[states[:, i], states[:, j]]
    prob = np.exp(logp - logp.max())
    prob /= prob.sum()
    return np.array([[prob[states[:, i] == s].sum() for s in range(S)] for i in range(V)])


def numpy_bp(logphi, edges, psi_und, layers, damping=0.0):
    """Parallel sum-product BP in the probability domain with per-edge neighbour loops."""
    V, S = logphi.shape
    phi = np.exp(logphi)
    msgs = {}
    for (i, j), p in zip(edges, psi_und):
        msgs[(i, j)] = np.ones(S)
        msgs[(j, i)] = np.ones(S)
    psi = {}
    for (i, j), p in zip(edges, psi_und):
        psi[(i, j)] = np.exp(p)  # [x_i, x_j]
        psi[(j, i)] = np.exp(p).T
    history = [dict(msgs)]
    for _ in range(layers):
        new = {}
        for (i, j), old in msgs.items():
            prod = phi[i].copy()
            for (k, t), incoming in msgs.items():
                if t == i and k != j:
                    prod = prod * incoming
            m = psi[(i, j)].T @ prod  # sum over x_i
            m = m / m.sum()
            new[(i, j)] = np.exp((1 - damping) * np.log(m) + damping * np.log(old))
        msgs = new
        history.append(dict(msgs))
    beliefs = []
    for i in range(V):
        b = phi[i].copy()
        for (_k, t), incoming in msgs.items():
            if t == i:
                b = b * incoming
        beliefs.append(b / b.sum())
    return history, np.array(beliefs)


def net_for(edges, logpsi, layers, **hyper):
    src, dst, rev = directed(edges)
    return unroll.load("loopy_bp", layers=layers)(src, dst, rev, logpsi, **hyper)


TREE = [(0, 1), (1, 2), (1, 3), (3, 4)]  # diameter 3
GRID = [(r * 3 + c, r * 3 + c + 1) for r in range(3) for c in range(2)] + \
       [(r * 3 + c, (r + 1) * 3 + c) for r in range(2) for c in range(3)]


@pytest.mark.parametrize("damping", [0.0, 0.3])
def test_every_layer_equals_a_numpy_bp_loop(damping):
    logphi, psi_und, logpsi = model(GRID, 9, 2, seed=0, coupling=0.5)
    net = net_for(GRID, logpsi, 6, damping=damping)
    with torch.no_grad():
        trace = net.trace(torch.tensor(logphi))
        belief, _ = net(torch.tensor(logphi))
    history, beliefs = numpy_bp(logphi, GRID, psi_und, 6, damping)
    src, dst, _ = directed(GRID)
    for t in range(1, 7):
        ref = np.log(np.array([history[t][(int(i), int(j))] for i, j in zip(src, dst)]))
        assert rel(trace[t]["logm"].numpy(), ref) < 1e-10, t
    assert rel(belief.numpy(), beliefs) < 1e-10


def test_on_a_tree_the_beliefs_are_the_exact_marginals():
    logphi, psi_und, logpsi = model(TREE, 5, 3, seed=1)
    exact = exact_marginals(logphi, TREE, psi_und)
    net = net_for(TREE, logpsi, 3)  # the diameter
    with torch.no_grad():
        belief, _logb = net(torch.tensor(np.stack([logphi, logphi[::-1].copy()])))
    assert rel(belief[0].numpy(), exact) < 1e-10
    assert np.allclose(belief.sum(-1).numpy(), 1.0, atol=1e-14)
    flipped = exact_marginals(logphi[::-1].copy(), TREE, psi_und)
    assert rel(belief[1].numpy(), flipped) < 1e-10  # per-sample unaries
    assert rel(net_for(TREE, logpsi, 2)(torch.tensor(logphi))[0].detach().numpy(), exact) > 1e-4  # too shallow


def test_on_a_tree_the_beliefs_equal_pgmpy_exact_inference():
    pytest.importorskip("pgmpy")
    from pgmpy.factors.discrete import DiscreteFactor
    from pgmpy.inference import BeliefPropagation
    try:
        from pgmpy.models import DiscreteMarkovNetwork as MarkovNetwork  # pgmpy >= 1.0
    except ImportError:
        from pgmpy.models import MarkovNetwork

    logphi, psi_und, logpsi = model(TREE, 5, 3, seed=2)
    mn = MarkovNetwork([(f"x{i}", f"x{j}") for i, j in TREE])
    factors = [DiscreteFactor([f"x{i}"], [3], np.exp(logphi[i])) for i in range(5)]
    factors += [DiscreteFactor([f"x{i}", f"x{j}"], [3, 3], np.exp(p).reshape(-1)) for (i, j), p in zip(TREE, psi_und)]
    mn.add_factors(*factors)
    bp = BeliefPropagation(mn)
    ref = np.array([bp.query([f"x{i}"], show_progress=False).values for i in range(5)])
    belief, _ = net_for(TREE, logpsi, 3)(torch.tensor(logphi))
    assert rel(belief.detach().numpy(), ref) < 1e-10


def test_on_a_loopy_grid_with_weak_coupling_the_beliefs_are_close_to_exact():
    logphi, psi_und, logpsi = model(GRID, 9, 2, seed=3, coupling=0.3)
    exact = exact_marginals(logphi, GRID, psi_und)
    belief, _ = net_for(GRID, logpsi, 20)(torch.tensor(logphi))
    err = np.abs(belief.detach().numpy() - exact).max()
    assert err < 1e-2
    assert err > 1e-8  # loops: BP is approximate here, unlike on the tree


def test_training_the_coupling_through_the_truncated_iterations_lowers_the_held_out_loss():
    # the model's true coupling is 1.5 x the given potentials; 4 truncated layers on a loopy grid
    logphi_train = np.random.default_rng(10).standard_normal((32, 9, 2))
    logphi_test = np.random.default_rng(11).standard_normal((32, 9, 2))
    _, psi_und, logpsi = model(GRID, 9, 2, seed=4, coupling=0.4)
    scaled = [1.5 * p for p in psi_und]
    targets = [np.array([exact_marginals(u, GRID, scaled) for u in data]) for data in (logphi_train, logphi_test)]
    net = net_for(GRID, logpsi, 4)

    def loss(data, target):
        belief, _ = net(torch.tensor(data))
        return ((belief - torch.tensor(target)) ** 2).sum(-1).mean()

    with torch.no_grad():
        before = float(loss(logphi_test, targets[1]))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(60):
        opt.zero_grad()
        loss(logphi_train, targets[0]).backward()
        opt.step()
    with torch.no_grad():
        after = float(loss(logphi_test, targets[1]))
    assert after < 0.3 * before, (before, after)
    assert 1.2 < float(net.w) < 1.8  # the learned scale moved towards the true coupling
