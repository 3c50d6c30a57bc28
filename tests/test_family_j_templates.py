"""Family J (catalog §5): conventional networks read as iterations — `generic_unroll` (Fig. 4),
`plugin_step` (Fig. 16), `mlp_as_iteration` (eq. (1), Fig. 13) and `rnn_elman` (§II-A, Fig. 2c).

References: numpy loops written from the paper's equations, scikit-learn's `Lasso` (positive or not) at
convergence, and PyTorch's own layers (`torch.nn.Sequential` of Linear/Conv2d + ReLU, `torch.nn.RNN`),
float64 throughout."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import unroll
from unroll.compiler.driver import shipped_specs

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _unit_columns(rng, n, m):
    A = rng.standard_normal((n, m))
    return A / np.linalg.norm(A, axis=0)


def _variant(tmp_path, name, old, new):
    """A shipped spec with one line changed (a variant the spec's header describes)."""
    text = shipped_specs()[name].read_text()
    assert text.count(old) == 1, old
    path = tmp_path / f"{name}_variant.unroll"
    path.write_text(text.replace(old, new))
    return path


def _nmse_db(estimate, truth):
    return 10 * np.log10(float(((estimate - truth) ** 2).sum() / (truth ** 2).sum()))


def _train(net, inputs, truth, steps, lr, batch=64, seed=0):
    """A plain Adam loop on the squared error of the (single) output."""
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(net.parameters(), lr=lr)
    count = truth.shape[0]
    for _ in range(steps):
        idx = torch.randint(count, (batch,), generator=generator)
        optimiser.zero_grad()
        loss = (net(inputs[idx]) - truth[idx]).square().mean()
        loss.backward()
        optimiser.step()
    return net


# ------------------------------------------------------------------ J1 generic_unroll
def _projected_ista(A, y, lam, layers):
    """Projected (nonnegative) ISTA from the math: z <- max(z - A^T (A z - y) / L - lam / L, 0)."""
    L = np.linalg.norm(A, 2) ** 2
    z = np.zeros((y.shape[0], A.shape[1]))
    for _ in range(layers):
        z = np.maximum(z - (z @ A.T - y) @ A / L - lam / L, 0.0)
    return z


def test_generic_unroll_untrained_is_projected_ista():
    rng = np.random.default_rng(0)
    A, y, lam = _unit_columns(rng, 12, 20), rng.standard_normal((5, 12)), 0.1
    net = unroll.load("generic_unroll", layers=7)(A=A, lam=lam)
    assert net.W.shape == (7, 20, 20) and net.U.shape == (7, 20, 12) and net.b.shape == (7, 20)  # theta^l
    out = net(torch.from_numpy(y)).detach().numpy()
    np.testing.assert_allclose(out, _projected_ista(A, y, lam, 7), rtol=1e-12, atol=1e-13)


def test_generic_unroll_converges_to_the_nonnegative_lasso():
    """Many layers reach the minimiser of 1/2 ||y - A z||^2 + lam sum(z), z >= 0 (sklearn, alpha = lam / n)."""
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(1)
    n, m, lam = 30, 10, 0.05  # overdetermined: strongly convex, linear convergence
    A, y = rng.standard_normal((n, m)) / np.sqrt(n), rng.standard_normal((3, n))
    net = unroll.load("generic_unroll", layers=600, tie="W,U,b")(A=A, lam=lam)  # tied: one theta, 600 layers
    out = net(torch.from_numpy(y)).detach().numpy()
    for i in range(3):
        ref = Lasso(alpha=lam / n, fit_intercept=False, positive=True, tol=1e-14, max_iter=100000).fit(A, y[i])
        np.testing.assert_allclose(out[i], ref.coef_, rtol=0, atol=1e-9)
        assert (out[i] == 0).any() and (out[i] >= 0).all()  # the constraint is active somewhere


def test_generic_unroll_tied_is_one_theta_for_all_layers():
    """Fig. 4's two cases: theta^l per layer (the spec) and theta shared (`--tie W,U,b`), equal untrained;
    the tied network's layers then move together, the untied ones apart."""
    rng = np.random.default_rng(2)
    A, y = _unit_columns(rng, 8, 16), torch.from_numpy(rng.standard_normal((4, 8)))
    untied = unroll.load("generic_unroll", layers=5)(A=A)
    tied = unroll.load("generic_unroll", layers=5, tie="W,U,b")(A=A)
    assert tied.W.shape == (16, 16) and tied.U.shape == (16, 8) and tied.b.shape == (16,)
    torch.testing.assert_close(tied(y), untied(y), rtol=1e-13, atol=1e-14)
    (untied(y).sum() + tied(y).sum()).backward()
    assert untied.W.grad.shape == (5, 16, 16) and untied.W.grad[-1].abs().sum() > 0
    assert not torch.allclose(untied.W.grad[0], untied.W.grad[-1])
    torch.testing.assert_close(tied.W.grad, untied.W.grad.sum(0), rtol=1e-12, atol=1e-14)


def test_generic_unroll_with_a_network_per_layer_is_a_numpy_residual_mlp(tmp_path):
    """theta^l as the weights of a per-layer network h^l (the other reading of Fig. 4)."""
    path = _variant(tmp_path, "generic_unroll", "    z = relu(W @ z + U @ y + b)\n",
                    "    z = relu(W @ z + U @ y + b) + h(z)\n")
    text = path.read_text().replace("state z : real[m] = 0\n",
                                    "net   h : mlp(in=m, out=m, width=6, depth=2)  learned per_layer\n"
                                    "state z : real[m] = 0\n")
    path.write_text(text)
    rng = np.random.default_rng(3)
    A, y, lam, layers = _unit_columns(rng, 6, 9), rng.standard_normal((4, 6)), 0.1, 3
    torch.manual_seed(0)
    net = unroll.load(path, layers=layers)(A=A, lam=lam)
    L = np.linalg.norm(A, 2) ** 2
    z = np.zeros((4, 9))
    for layer in range(layers):
        W1, b1, W2, b2 = (p.detach().numpy() for p in net.h[layer].parameters())
        z = np.maximum(z - (z @ A.T - y) @ A / L - lam / L, 0) + np.maximum(z @ W1.T + b1, 0) @ W2.T + b2
    np.testing.assert_allclose(net(torch.from_numpy(y)).detach().numpy(), z, rtol=1e-12, atol=1e-12)


def test_generic_unroll_trained_beats_projected_ista_at_the_same_depth():
    from unroll.runtime.problems import problem_for

    problem = problem_for("generic_unroll", dtype=torch.float64)
    net = unroll.load("generic_unroll", layers=problem.layers)(**problem.data)
    y_te, z_te = problem.test_inputs["y"], problem.test_truth
    classical = _nmse_db(net(y_te).detach(), z_te)
    np.testing.assert_allclose(net(y_te).detach().numpy(),
                               _projected_ista(problem.data["A"].numpy(), y_te.numpy(), problem.data["lam"],
                                               problem.layers), rtol=1e-12, atol=1e-13)
    _train(net, problem.train_inputs["y"], problem.train_truth, steps=300, lr=1e-3)
    trained = _nmse_db(net(y_te).detach(), z_te)
    assert trained < classical - 2.0, (classical, trained)


# ------------------------------------------------------------------ J2 plugin_step
def _ista(A, d, lam, layers):
    L = np.linalg.norm(A, 2) ** 2
    x = np.zeros((d.shape[0], A.shape[1]))
    for _ in range(layers):
        v = x - (x @ A.T - d) @ A / L
        x = np.sign(v) * np.maximum(np.abs(v) - lam / L, 0)
    return x


def test_plugin_step_untrained_is_ista():
    rng = np.random.default_rng(4)
    A, d, lam = _unit_columns(rng, 10, 18), rng.standard_normal((6, 10)), 0.08
    net = unroll.load("plugin_step", layers=9)(A=A, lam=lam, width=16)
    np.testing.assert_allclose(net(torch.from_numpy(d)).detach().numpy(), _ista(A, d, lam, 9),
                               rtol=1e-12, atol=1e-13)


def test_plugin_step_converges_to_the_lasso():
    from sklearn.linear_model import Lasso

    rng = np.random.default_rng(5)
    n, m, lam = 25, 10, 0.05
    A, d = rng.standard_normal((n, m)) / np.sqrt(n), rng.standard_normal((2, n))
    out = unroll.load("plugin_step", layers=600)(A=A, lam=lam, width=4)(torch.from_numpy(d)).detach().numpy()
    for i in range(2):
        ref = Lasso(alpha=lam / n, fit_intercept=False, tol=1e-14, max_iter=100000).fit(A, d[i])
        np.testing.assert_allclose(out[i], ref.coef_, rtol=0, atol=1e-9)


def test_plugin_step_runs_the_network_between_the_two_algorithm_steps():
    """With the network's weights non-zero: f (gradient step), then g = id + D, then h (soft threshold)."""
    rng = np.random.default_rng(6)
    A, d, lam, layers = _unit_columns(rng, 7, 11), rng.standard_normal((3, 7)), 0.1, 4
    net = unroll.load("plugin_step", layers=layers)(A=A, lam=lam, width=5)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.D.parameters():
            p.copy_(0.3 * torch.randn(p.shape, dtype=p.dtype))
    W1, b1, W2, b2 = (p.detach().numpy() for p in net.D.parameters())
    L = np.linalg.norm(A, 2) ** 2
    x = np.zeros((3, 11))
    for _ in range(layers):
        y = x - (x @ A.T - d) @ A / L
        z = y + np.maximum(y @ W1.T + b1, 0) @ W2.T + b2
        x = np.sign(z) * np.maximum(np.abs(z) - lam / L, 0)
    np.testing.assert_allclose(net(torch.from_numpy(d)).detach().numpy(), x, rtol=1e-12, atol=1e-13)


def test_plugin_step_trained_beats_ista_at_the_same_depth():
    from unroll.runtime.problems import problem_for

    problem = problem_for("plugin_step", dtype=torch.float64)
    net = unroll.load("plugin_step", layers=problem.layers)(**problem.data)
    d_te, x_te = problem.test_inputs["d"], problem.test_truth
    classical = _nmse_db(net(d_te).detach(), x_te)
    np.testing.assert_allclose(net(d_te).detach().numpy(),
                               _ista(problem.data["A"].numpy(), d_te.numpy(), problem.data["lam"], problem.layers),
                               rtol=1e-12, atol=1e-13)
    torch.manual_seed(0)
    _train(net, problem.train_inputs["d"], problem.train_truth, steps=300, lr=3e-3)
    trained = _nmse_db(net(d_te).detach(), x_te)
    assert trained < classical - 0.5, (classical, trained)  # measured: -3.27 dB -> -4.35 dB


def test_plugin_step_rejects_a_nonpositive_lam():
    A = _unit_columns(np.random.default_rng(7), 4, 6)
    with pytest.raises(ValueError, match="lam must be positive"):
        unroll.load("plugin_step", layers=2)(A=A, lam=0.0)


# ------------------------------------------------------------------ J3 mlp_as_iteration
def _sequential(widths, seed):
    torch.manual_seed(seed)
    layers = []
    for a, b in itertools.pairwise(widths):
        layers += [torch.nn.Linear(a, b, dtype=torch.float64), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers)


def _stacked(seq, n):
    """The Linear layers' weights and biases zero-padded to width n, stacked [K, n, n] and [K, n]."""
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    W0, b0 = torch.zeros(len(linears), n, n, dtype=torch.float64), torch.zeros(len(linears), n, dtype=torch.float64)
    for k, lin in enumerate(linears):
        W0[k, :lin.out_features, :lin.in_features] = lin.weight.detach()
        b0[k, :lin.out_features] = lin.bias.detach()
    return W0, b0


def test_mlp_as_iteration_equals_a_torch_sequential_with_its_gradients():
    n, layers = 6, 5
    seq = _sequential([n] * (layers + 1), seed=0)
    W0, b0 = _stacked(seq, n)
    net = unroll.load("mlp_as_iteration", layers=layers)(W0=W0, b0=b0)
    x0 = torch.randn(7, n, dtype=torch.float64, requires_grad=True)
    out, ref = net(x0), seq(x0)
    assert (out > 0).any() and (out == 0).any()  # the ReLU is active and inactive somewhere
    torch.testing.assert_close(out, ref, rtol=1e-14, atol=1e-15)
    weights = torch.randn(7, n, dtype=torch.float64)
    g_net = torch.autograd.grad((out * weights).sum(), [x0, net.W, net.b])
    linears = [m for m in seq if isinstance(m, torch.nn.Linear)]
    g_ref = torch.autograd.grad((ref * weights).sum(), [x0] + [m.weight for m in linears] + [m.bias for m in linears])
    torch.testing.assert_close(g_net[0], g_ref[0], rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(g_net[1], torch.stack(g_ref[1:layers + 1]), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(g_net[2], torch.stack(g_ref[layers + 1:]), rtol=1e-13, atol=1e-14)


def test_mlp_as_iteration_with_differing_widths_is_the_zero_padded_iteration():
    """Sequential(Linear(3, 5), ReLU, Linear(5, 4), ReLU, Linear(4, 2), ReLU) as the width-5 iteration."""
    seq = _sequential([3, 5, 4, 2], seed=1)
    W0, b0 = _stacked(seq, 5)
    net = unroll.load("mlp_as_iteration", layers=3)(W0=W0, b0=b0)
    x = torch.randn(4, 3, dtype=torch.float64)
    out = net(torch.cat([x, torch.zeros(4, 2, dtype=torch.float64)], 1))
    torch.testing.assert_close(out[:, :2], seq(x), rtol=1e-14, atol=1e-15)
    assert (out[:, 2:] == 0).all()


def test_mlp_as_iteration_needs_one_weight_slice_per_layer():
    W0, b0 = torch.zeros(2, 3, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="W0: axis 0 is `K` = 2, but the spec needs `K` >= 3"):
        unroll.load("mlp_as_iteration", layers=3)(W0=W0, b0=b0)
    # more slices than layers: the first ones are used
    seq = _sequential([3, 3, 3, 3], seed=2)
    W0, b0 = _stacked(seq, 3)
    net = unroll.load("mlp_as_iteration", layers=2)(W0=W0, b0=b0)
    x = torch.randn(2, 3, dtype=torch.float64)
    torch.testing.assert_close(net(x), seq[:4](x), rtol=1e-14, atol=1e-15)


def test_mlp_as_iteration_trains_on_its_catalog_task():
    """No classical counterpart (the untrained network is a random MLP): training must beat it clearly."""
    from unroll.runtime.problems import problem_for

    problem = problem_for("mlp_as_iteration", dtype=torch.float64)
    net = unroll.load("mlp_as_iteration", layers=problem.layers)(**problem.data)
    x_te, t_te = problem.test_inputs["x0"], problem.test_truth
    untrained = _nmse_db(net(x_te).detach(), t_te)
    torch.manual_seed(0)
    _train(net, problem.train_inputs["x0"], problem.train_truth, steps=300, lr=3e-3)
    trained = _nmse_db(net(x_te).detach(), t_te)
    # measured: 12.7 dB -> -1.3 dB (the zero estimate is 0 dB)
    assert trained < untrained - 10.0 and trained < -1.0, (untrained, trained)


def test_the_cnn_reading_equals_a_torch_sequential_of_conv2d(tmp_path):
    """Fig. 2b / §IV-A: convolutions replace W. `sum(conv2z(W, x), 1)` with a bank [C, C, s, s] is a
    multi-channel 'same' convolution layer (torch's conv2d with the kernel flipped)."""
    path = _variant(tmp_path, "mlp_as_iteration", "    x = relu(W @ x + b)\n", "    x = relu(sum(conv2z(W, x), 1) + b)\n")
    text = path.read_text()
    for old, new in (("dims  K, n\n", "dims  K, C, s, h, w\n"),
                     ("data  W0 : real[K, n, n]", "data  W0 : real[K, C, C, s, s]"),
                     ("data  b0 : real[K, n]  ", "data  b0 : real[K, C, 1, 1]"),
                     ("input x0 : real[n]  ", "input x0 : real[C, h, w]"),
                     ("param W : real[n, n] = W0[layer]", "param W : real[C, C, s, s] = W0[layer]"),
                     ("param b : real[n] = b0[layer]  ", "param b : real[C, 1, 1] = b0[layer]"),
                     ("state x : real[n] = x0", "state x : real[C, h, w] = x0")):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    path.write_text(text)
    torch.manual_seed(3)
    C, s, layers = 3, 3, 3
    convs = [torch.nn.Conv2d(C, C, s, padding=s // 2, dtype=torch.float64) for _ in range(layers)]
    seq = torch.nn.Sequential(*[m for conv in convs for m in (conv, torch.nn.ReLU())])
    W0 = torch.stack([conv.weight.detach().flip(-2, -1) for conv in convs])
    b0 = torch.stack([conv.bias.detach()[:, None, None] for conv in convs])
    net = unroll.load(path, layers=layers)(W0=W0, b0=b0)
    x = torch.randn(2, C, 7, 6, dtype=torch.float64)
    torch.testing.assert_close(net(x), seq(x), rtol=1e-13, atol=1e-14)


# ------------------------------------------------------------------ J4 rnn_elman
def _elman(T, p, h, q, seed):
    torch.manual_seed(seed)
    rnn = torch.nn.RNN(p, h, nonlinearity="tanh", batch_first=True, dtype=torch.float64)
    read_out = torch.nn.Linear(h, q, dtype=torch.float64)
    data = {"W0": rnn.weight_hh_l0.detach(), "U0": rnn.weight_ih_l0.detach(),
            "b0": (rnn.bias_ih_l0 + rnn.bias_hh_l0).detach(), "V0": read_out.weight.detach(),
            "c0": read_out.bias.detach()}
    return rnn, read_out, data


def test_rnn_elman_equals_torch_rnn_with_the_read_out_and_its_gradients():
    T, p, h, q = 9, 3, 5, 2
    rnn, read_out, data = _elman(T, p, h, q, seed=0)
    net = unroll.load("rnn_elman")(**data)
    xs = torch.randn(4, T, p, dtype=torch.float64, requires_grad=True)
    o, s = net(xs)
    states, last = rnn(xs)
    torch.testing.assert_close(o, read_out(states), rtol=1e-13, atol=1e-14)
    torch.testing.assert_close(s, last[0], rtol=1e-13, atol=1e-14)
    # gradients of a loss on every output with respect to the input and every weight
    wo, ws = torch.randn_like(o), torch.randn_like(s)
    ours = torch.autograd.grad((o * wo).sum() + (s * ws).sum(), [xs, net.W, net.U, net.b, net.V, net.c])
    theirs = torch.autograd.grad((read_out(states) * wo).sum() + (last[0] * ws).sum(),
                                 [xs, rnn.weight_hh_l0, rnn.weight_ih_l0, rnn.bias_ih_l0, rnn.bias_hh_l0,
                                  read_out.weight, read_out.bias])
    torch.testing.assert_close(ours[0], theirs[0], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours[1], theirs[1], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours[2], theirs[2], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours[3], theirs[3], rtol=1e-12, atol=1e-13)  # b = b_ih + b_hh: each gets it
    torch.testing.assert_close(ours[3], theirs[4], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours[4], theirs[5], rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(ours[5], theirs[6], rtol=1e-12, atol=1e-13)


def test_rnn_elman_runs_any_sequence_length_and_traces_every_step():
    rnn, read_out, data = _elman(0, 2, 4, 1, seed=1)
    net = unroll.load("rnn_elman")(**data)
    for T in (1, 3, 11):
        xs = torch.randn(2, T, 2, dtype=torch.float64)
        o, _s = net(xs)
        torch.testing.assert_close(o, read_out(rnn(xs)[0]), rtol=1e-13, atol=1e-14)
    trace = net.trace(xs)
    assert len(trace) == 12
    torch.testing.assert_close(torch.stack([t["s"] for t in trace[1:]], 1), rnn(xs)[0], rtol=1e-13, atol=1e-14)
    one, _ = net(xs[0])  # one unbatched sequence
    torch.testing.assert_close(one, o[0], rtol=1e-14, atol=1e-15)


def test_rnn_elman_explains_its_two_equations():
    from unroll.compiler.driver import check_source
    from unroll.compiler.explain import explain

    latex = explain(check_source(shipped_specs()["rnn_elman"].read_text(), "rnn_elman.unroll"), latex_only=True)
    assert "s^{(l+1)} &= \\tanh\\left(W s^{(l)} + U \\mathrm{xs}_{[l]} + b\\right)" in latex, latex
    assert "o_{[l]} &= V s^{(l+1)} + c" in latex, latex


def test_rnn_elman_trains_on_its_catalog_task():
    """No classical counterpart (the untrained network is a random RNN): training must beat it clearly."""
    from unroll.runtime.problems import problem_for

    problem = problem_for("rnn_elman", dtype=torch.float64)
    net = unroll.load("rnn_elman")(**problem.data)
    xs_te, o_te = problem.test_inputs["xs"], problem.test_truth
    untrained = _nmse_db(net(xs_te)[0].detach(), o_te)

    generator, optimiser = torch.Generator().manual_seed(0), torch.optim.Adam(net.parameters(), lr=1e-2)
    xs_tr, o_tr = problem.train_inputs["xs"], problem.train_truth
    for _ in range(150):
        idx = torch.randint(xs_tr.shape[0], (32,), generator=generator)
        optimiser.zero_grad()
        (net(xs_tr[idx])[0] - o_tr[idx]).square().mean().backward()
        optimiser.step()
    trained = _nmse_db(net(xs_te)[0].detach(), o_te)
    assert trained < min(untrained, 0.0) - 10.0, (untrained, trained)
