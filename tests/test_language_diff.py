"""The language's differentiation in the forward pass (`grad` by autograd, `vjp`, `jvp`, `jacobian`,
`stop_grad`), noise declarations and `step until`, on small specs, float64: values against derivatives
written by hand, gradcheck through the generated modules (second order: create_graph), evaluation under
torch.no_grad(), and the planner's boundary (nothing hoisted or merged across a differentiation)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap

import numpy as np
import pytest
import torch
from unroll.compiler.driver import compile_source

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(source, tmp_path, name):
    path = tmp_path / f"{name}.py"
    path.write_text(compile_source(textwrap.dedent(source), f"{name}.unroll"))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as `import` does (torch.compile resolves the generated functions' module)
    spec.loader.exec_module(module)
    return next(v for v in vars(module).values() if isinstance(v, type) and v.__module__ == name)


FORMS = """
spec forms "differentiation forms"
dims n, m
data A : real[n, m]
input y : real[n]
input v : real[m]
param eta : real = 0.1   learned shared
state x : real[m] = 0.5 * A.T @ y
layers 2
step:
    let g = grad(sum(log(1 + (A @ tanh(x))^2)), x)
    let J = jacobian(A @ tanh(x), x)
    let p = vjp(A @ tanh(x), x, y)
    let q = jvp(A @ tanh(x), x, v)
    let s = x + stop_grad(soft(x, 0.3) - x)
    x = x - eta * (g + J.T @ y + p + A.T @ q + s)
final:
    let gf = grad(sum(log(1 + (A @ tanh(x))^2)), x)
    let Jf = jacobian(A @ tanh(x), x)
    let pf = vjp(A @ tanh(x), x, y)
    let qf = jvp(A @ tanh(x), x, v)
output x, gf, Jf, pf, qf
"""


def _analytic(A, x, y, v):
    t = np.tanh(x)
    J = A * (1 - t ** 2)[None, :]  # d(A tanh x)/dx
    u = A @ t
    g = J.T @ (2 * u / (1 + u ** 2))
    return g, J, J.T @ y, J @ v


def test_forms_equal_the_derivatives_written_by_hand(tmp_path):
    rng = np.random.default_rng(0)
    A, y, v = rng.standard_normal((4, 3)), rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    net = _load(FORMS, tmp_path, "forms")(A=A)
    for grad_mode in (True, False):
        with torch.set_grad_enabled(grad_mode):
            x, g, J, p, q = (t.detach().numpy() for t in net(torch.tensor(y), torch.tensor(v)))
        for b in range(5):
            ga, Ja, pa, qa = _analytic(A, x[b], y[b], v[b])
            assert np.allclose(g[b], ga, rtol=1e-12, atol=1e-13)
            assert np.allclose(J[b], Ja, rtol=1e-12, atol=1e-13)
            assert np.allclose(p[b], pa, rtol=1e-12, atol=1e-13)
            assert np.allclose(q[b], qa, rtol=1e-12, atol=1e-13)
    # one unbatched sample gives the same values
    one = net(torch.tensor(y[1]), torch.tensor(v[1]))
    assert np.allclose(one[2].detach().numpy(), J[1], rtol=1e-13)


def test_gradcheck_of_the_whole_module_is_second_order(tmp_path):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((4, 3))
    net = _load(FORMS.replace("+ s)", ")"), tmp_path, "forms2")(A=A)
    y = torch.tensor(rng.standard_normal((2, 4)), requires_grad=True)
    v = torch.tensor(rng.standard_normal((2, 3)), requires_grad=True)

    def outputs(y, v):
        return torch.cat([t.reshape(-1) for t in net(y, v)])

    assert torch.autograd.gradcheck(outputs, (y, v))
    eta_grad = torch.autograd.grad(outputs(y, v).sum(), net.eta)[0]
    assert torch.isfinite(eta_grad) and eta_grad != 0


def test_straight_through_estimator_has_the_identity_gradient(tmp_path):
    source = """
    spec ste "straight-through soft threshold"
    dims m
    input x0 : real[m]
    state x : real[m] = x0
    layers 1
    step:
        x = x + stop_grad(soft(x, 0.5) - x)
    output x
    """
    net = _load(source, tmp_path, "ste")(dtype=torch.float64)
    x0 = torch.tensor([[-1.0, 0.2, 0.9]], dtype=torch.float64, requires_grad=True)
    out = net(x0)
    assert torch.allclose(out, torch.tensor([[-0.5, 0.0, 0.4]], dtype=torch.float64))
    (g,) = torch.autograd.grad(out.sum(), x0)
    assert torch.equal(g, torch.ones_like(g))


DOMKE = """
spec domke "unrolled gradient descent on a non-quadratic energy (autograd grad)"
dims n
hyper alpha = 0.2
input y : real[n]
param eta : real = 0.3    learned per_layer
param w : real = 1.0      learned shared
state x : real[n] = 0
layers 3
step:
    x = x - eta * grad(0.5 * norm(x - y)^2 + w * sum(log(1 + (x - alpha)^2)), x)
output x
"""


def test_autograd_grad_matches_the_hand_gradient_and_trains_through_create_graph(tmp_path):
    net = _load(DOMKE, tmp_path, "domke")(dtype=torch.float64)
    rng = np.random.default_rng(2)
    y = rng.standard_normal((4, 6))
    x = np.zeros_like(y)  # (not x = y: the second derivative of norm(x - y)^2 as emitted is NaN at 0)
    for _ in range(3):
        x = x - 0.3 * ((x - y) + 1.0 * 2 * (x - 0.2) / (1 + (x - 0.2) ** 2))
    out = net(torch.tensor(y))
    assert np.allclose(out.detach().numpy(), x, rtol=1e-13, atol=1e-14)
    assert "rt.autograd_grad(lambda x: " in compile_source(textwrap.dedent(DOMKE), "domke.unroll")
    # d out / d w exists only through the derivative of the energy (second order)
    (gw,) = torch.autograd.grad(out.sum(), net.w)
    eps = 1e-6
    with torch.no_grad():
        net.w.add_(eps)
        plus = net(torch.tensor(y)).sum()
        net.w.sub_(2 * eps)
        minus = net(torch.tensor(y)).sum()
        net.w.add_(eps)
    assert abs(gw.item() - (plus - minus).item() / (2 * eps)) < 1e-7
    assert torch.autograd.gradcheck(lambda yy: net(yy), (torch.tensor(y[:2], requires_grad=True),))


def test_nothing_is_hoisted_or_merged_across_the_differentiation_boundary(tmp_path):
    # `A @ tanh(x)` occurs outside and inside the differentiated expression; the input-only term `A.T @ y`
    # inside `grad(..., y)` is hoisted out of the layer loop as a whole, never split
    source = """
    spec boundary "shared sub-expressions across the boundary"
    dims n, m
    data A : real[n, m]
    input y : real[n]
    state x : real[m] = 0
    state r : real[n] = 0
    layers 2
    step:
        r = A @ tanh(x) - y
        x = x - 0.1 * grad(0.5 * norm(A @ tanh(x) - y)^2, x) + 0.01 * grad(sum(tanh(A.T @ y)), y)[0]
    output x, r
    """
    code = compile_source(textwrap.dedent(source), "boundary.unroll")
    assert "lambda x: " in code and "lambda y: " in code
    lambda_x = code[code.index("lambda x: "):]
    assert "torch.tanh(x)" in lambda_x.split(", x)")[0]
    net = _load(source, tmp_path, "boundary")(A=np.eye(3, 2))
    rng = np.random.default_rng(3)
    A, y = np.eye(3, 2), rng.standard_normal((2, 3))
    x = np.zeros((2, 2))
    for _ in range(2):
        u = np.tanh(x) @ A.T - y
        g = (u @ A) * (1 - np.tanh(x) ** 2)
        gy = (A @ (1 - np.tanh(y @ A) ** 2).T).T
        x = x - 0.1 * g + 0.01 * gy[:, :1]
    out, _ = net(torch.tensor(y))
    assert np.allclose(out.detach().numpy(), x, rtol=1e-13, atol=1e-14)


UNTIL = """
spec until_demo "per-sample stopping"
dims n
hyper tol = 0.1
input y : real[n]
param eta : real = 0.5     learned per_layer
state x : real[n] = y
layers 6
step until norm(x - prev(x)) < tol:
    x = x - eta * x
output x, depth
"""


def test_until_freezes_each_sample_after_its_stopping_layer(tmp_path):
    net = _load(UNTIL, tmp_path, "until_demo")(dtype=torch.float64)
    y = torch.tensor([[0.1, 0.0], [1.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    x, depth = net(y)
    # x halves each layer; the change is |x| / 2 after the update: stops when it is below 0.1
    assert depth.tolist() == [1, 4, 6]
    assert torch.allclose(x[:, 0], torch.tensor([0.05, 1 / 16, 4 / 64], dtype=torch.float64), rtol=1e-14)
    for b in range(3):
        (g,) = torch.autograd.grad(x[b].sum(), net.eta, retain_graph=True)
        assert torch.all(g[depth[b]:] == 0) and torch.all(g[:depth[b]] != 0)
    x1, d1 = net(y[1])
    assert d1.shape == () and d1.item() == 4 and torch.equal(x1, x[1])


def test_masked_until_compiles_without_graph_breaks(tmp_path):
    dynamo = pytest.importorskip("torch._dynamo")
    net = _load(UNTIL, tmp_path, "until_compile")(dtype=torch.float64)
    net.early_exit = False
    y = torch.tensor([[0.1, 0.0], [1.0, 0.0], [4.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        expected = net(y)
        compiled = torch.compile(net, backend="eager", fullgraph=True)
        got = compiled(y)
    dynamo.reset()
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


NOISE = """
spec noise_demo "noise declarations"
dims n
input y : real[n]
noise g : real[n] ~ normal
noise r : real[n] ~ rademacher
noise u : real[n] ~ uniform per_layer
state x : real[n] = y + g
state s : real[n] = 0
layers 3
step:
    s = s + u * r
final:
    let total = x - y
output total, s
"""


def test_noise_distributions_per_call_and_per_layer(tmp_path):
    net = _load(NOISE, tmp_path, "noise_demo")(seed=7, dtype=torch.float64)
    y = torch.zeros(20000, 2, dtype=torch.float64)
    g, _ = net(y)
    assert abs(g.mean().item()) < 0.03 and abs(g.std().item() - 1) < 0.03
    trace = net.trace(y)
    steps = torch.stack([trace[t + 1]["s"] - trace[t]["s"] for t in range(3)])  # u * r per layer
    assert set(torch.sign(steps).unique().tolist()) <= {-1.0, 1.0}
    assert abs(steps.abs().mean().item() - 0.5) < 0.02  # |u| uniform on [0, 1)
    assert not torch.equal(steps[0], steps[1])  # per layer: fresh draws
    r = torch.sign(steps[0])
    assert torch.equal(r, torch.sign(steps[1]))  # per call: the same Rademacher vector in every layer
    given = net(torch.zeros(2, 2, dtype=torch.float64), g=torch.ones(2, 2, dtype=torch.float64),
                r=torch.ones(2, 2, dtype=torch.float64), u=torch.full((2, 3, 2), 0.25, dtype=torch.float64))
    assert torch.equal(given[0], torch.ones(2, 2, dtype=torch.float64))
    assert torch.equal(given[1], torch.full((2, 2), 0.75, dtype=torch.float64))
    with pytest.raises(TypeError, match="noise"):
        net(y, noise=1)


def test_early_exit_stops_the_loop_and_masked_mode_runs_every_layer(tmp_path, monkeypatch):
    import unroll.runtime as rt

    net = _load(UNTIL, tmp_path, "until_count")(dtype=torch.float64)
    calls = []
    original = rt.keep_active
    monkeypatch.setattr(rt, "keep_active", lambda *a: calls.append(1) or original(*a))
    y = torch.tensor([[0.1, 0.0], [1.0, 0.0]], dtype=torch.float64)  # depths 1 and 4
    with torch.no_grad():
        first = net(y)
        assert len(calls) == 4  # one state, four layers: the loop ended when the last sample stopped
        calls.clear()
        net.early_exit = False
        second = net(y)
    assert len(calls) == 6 and torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_explain_says_which_path_each_differentiation_took():
    from unroll.compiler.driver import check_source
    from unroll.compiler.explain import explain

    text = explain(check_source(textwrap.dedent(FORMS), "forms.unroll"))
    assert "grad(sum(log(1 + (A @ tanh(x))^2)), x): autograd (" in text
    assert "jacobian(A @ tanh(x), x): autograd" in text and "vjp(A @ tanh(x), x): autograd" in text
    symbolic = explain(check_source(textwrap.dedent(FORMS).replace(
        "let g = grad(sum(log(1 + (A @ tanh(x))^2)), x)", "let g = grad(0.5 * norm(A @ x - y)^2, x)"), "f.unroll"))
    assert "grad(0.5 * norm(A @ x - y)^2): symbolic (sympy)" in symbolic
    until = explain(check_source(textwrap.dedent(UNTIL), "u.unroll"))
    assert "Adaptive depth" in until and "output `depth`" in until
    noise = explain(check_source(textwrap.dedent(NOISE), "n.unroll"))
    assert "u ~ uniform, per layer" in noise and "g ~ normal, per call" in noise


def test_a_scaled_noise_stays_differentiable_in_its_scale(tmp_path):
    source = """
    spec reparam "reparametrised sample"
    dims n
    input mu : real[n]
    input sigma : real[n]
    noise e : real[n] ~ normal
    state z : real[n] = mu + sigma * e
    layers 1
    step:
        z = tanh(z)
    output z
    """
    net = _load(source, tmp_path, "reparam")(dtype=torch.float64, seed=2)
    mu = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    sigma = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    e = torch.randn(3, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, s: net(m, s, e=e), (mu, sigma))
    assert torch.allclose(net(mu, sigma, e=e), torch.tanh(mu + sigma * e), rtol=1e-15)


def test_runtime_jacobian_shapes_and_values():
    from unroll.runtime import autograd_jacobian, autograd_jvp, autograd_vjp

    x = torch.randn(3, dtype=torch.float64)
    assert torch.allclose(autograd_jacobian(lambda v: (v ** 2).sum(), x, batched=False), 2 * x)  # scalar y: [3]
    xb = torch.randn(2, 3, dtype=torch.float64)
    assert autograd_jacobian(lambda v: (v ** 2).sum(1), xb, batched=True).shape == (2, 3)
    J = autograd_jacobian(lambda v: torch.sin(v), xb, batched=True)
    assert torch.allclose(J, torch.diag_embed(torch.cos(xb)))
    u = torch.randn(2, 3, dtype=torch.float64)
    assert torch.allclose(autograd_vjp(torch.sin, xb, u), torch.cos(xb) * u)
    assert torch.allclose(autograd_jvp(torch.sin, xb, u), torch.cos(xb) * u)
    const = autograd_vjp(lambda v: torch.ones(2, 3, dtype=torch.float64), xb, u)  # y does not depend on x
    assert torch.equal(const, torch.zeros_like(xb))
