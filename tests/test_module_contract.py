"""The generated-module contract (README, "The generated module contract"):
nn.Module subclass, constructor arguments, dims, forward/trace, parameter shapes,
constraints, exact defaults, dtypes and state_dict (compile options, the load cache, reports and messages:
tests/test_module_load.py)."""

from __future__ import annotations

import inspect
import io

import numpy as np
import pytest
import torch
from module_contract_helpers import F32, F64, SHIPPED, M, N, _private_cache, data, klass, np_soft  # noqa: F401
from unroll.compiler.driver import check_source
from unroll.runtime import UnrolledModule


# --------------------------------------------------------------------------- class and constructor
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_constructor_takes_data_and_hypers_by_name(name):
    cls = klass(name)
    assert issubclass(cls, torch.nn.Module) and issubclass(cls, UnrolledModule)
    program = check_source(SHIPPED[name].read_text(), f"{name}.unroll")
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    expected = [d.name for d in program.data] + [h.name for h in program.hypers]
    names = [p.name for p in params]
    assert names[: len(expected)] == expected
    for p in params:
        if p.name in [d.name for d in program.data]:
            assert p.default is inspect.Parameter.empty
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    for h in program.hypers:
        assert defaults[h.name] == h.default and type(defaults[h.name]) is type(h.default)
    # any further arguments are dims not bound by data (optional)
    assert all(defaults[n] is None for n in names[len(expected) :])
    assert cls.num_layers == program.layers
    assert cls.input_names == tuple(i.name for i in program.inputs)
    assert cls.output_names == tuple(program.outputs)


def test_lista_signature_and_hyper_defaults():
    cls = klass("lista")
    assert str(inspect.signature(cls.__init__)) == "(self, A, lam=0.1)"
    assert str(inspect.signature(klass("alista").__init__)) == "(self, A, lam=0.1, p=0.012, pmax=0.13)"
    assert str(inspect.signature(klass("iht").__init__)) == "(self, A, k=3)"
    A, _y = data()
    net = cls(A)
    assert net.lam == 0.1
    L = torch.linalg.matrix_norm(A, ord=2) ** 2
    torch.testing.assert_close(net.parameter_values()["theta"], 0.1 / L, rtol=1e-14, atol=0)
    net2 = cls(A=A, lam=0.3)
    torch.testing.assert_close(net2.parameter_values()["theta"], 0.3 / L, rtol=1e-14, atol=0)
    with pytest.raises(TypeError):
        cls()  # data is required
    with pytest.raises(TypeError):
        cls(A, lam="big")


def test_dims_are_bound_from_data_shapes():
    A, y = data(n=7, m=9)
    net = klass("lista")(A)
    assert net.dims == {"n": 7, "m": 9}
    assert net.We.shape == (9, 7) and net.Wt.shape == (9, 9)
    assert net(y).shape == (5, 9)
    with pytest.raises(ValueError, match="y"):
        net(torch.randn(5, 8, dtype=F64))
    with pytest.raises(ValueError):
        net(torch.randn(2, 3, 7, dtype=F64))
    with pytest.raises(ValueError):
        klass("lista")(torch.randn(7, dtype=F64))  # rank mismatch of the data


def test_numpy_data_gives_a_float64_module():
    A, y = data()
    net = klass("lista")(A.numpy())
    assert net.We.dtype == F64
    torch.testing.assert_close(net(y), klass("lista")(A)(y), rtol=0, atol=0)


# --------------------------------------------------------------------------- forward and trace
def test_forward_by_name_or_position():
    A, y = data()
    net = klass("lista")(A)
    out = net(y)
    assert torch.equal(net(y=y), out)
    assert torch.equal(net.forward(y), out)
    with pytest.raises(TypeError):
        net.trace(y, y=y)
    with pytest.raises(TypeError):
        net.trace(z=y)


def test_unbatched_sample():
    A, y = data()
    for name in ("lista", "fista", "lcod", "alista"):
        net = klass(name)(A)
        batched = net(y)
        single = net(y[2])
        assert single.shape == (M,)
        torch.testing.assert_close(single, batched[2], rtol=1e-12, atol=1e-12)


def test_trace_returns_layers_plus_one_dicts():
    A, y = data()
    net = klass("lista", layers=6)(A)
    tr = net.trace(y)
    assert len(tr) == net.num_layers + 1 == 7
    assert all(set(step) == {"x"} for step in tr)
    assert torch.equal(tr[0]["x"], torch.zeros(5, M, dtype=F64))
    assert torch.equal(tr[-1]["x"], net(y))
    single = net.trace(y[0])
    assert len(single) == 7 and single[-1]["x"].shape == (M,)
    torch.testing.assert_close(single[-1]["x"], tr[-1]["x"][0], rtol=1e-12, atol=1e-12)


def test_trace_entry_k_is_the_output_of_k_layers():
    A, y = data()
    tr = klass("ista", layers=5)(A).trace(y)
    for k in (1, 3):
        torch.testing.assert_close(tr[k]["x"], klass("ista", layers=k)(A)(y), rtol=1e-13, atol=1e-13)


def test_trace_of_fista_keeps_the_scalar_state_unbatched():
    A, y = data()
    tr = klass("fista", layers=3)(A).trace(y)
    assert tr[-1]["x"].shape == (5, M) and tr[-1]["t"].shape == ()
    t = 1.0
    for step in tr[1:]:
        t = (1 + np.sqrt(1 + 4 * t * t)) / 2
        assert step["t"].item() == pytest.approx(t, rel=1e-15)


def test_trace_keeps_the_autograd_graph():
    A, y = data()
    net = klass("lista", layers=3)(A)
    tr = net.trace(y)
    sum(step["x"].pow(2).sum() for step in tr[1:]).backward()
    assert net.We.grad is not None and net.We.grad.abs().sum() > 0


# --------------------------------------------------------------------------- parameters
def test_per_layer_parameters_are_stacked():
    A, _y = data()
    net = klass("lista_untied")(A)
    assert net.num_layers == 16
    values = net.parameter_values()
    assert values["We"].shape == (16, M, N)
    assert values["Wt"].shape == (16, M, M)
    assert values["theta"].shape == (16,)
    shapes = {k: tuple(v.shape) for k, v in net.named_parameters()}
    assert shapes == {"We": (16, M, N), "Wt": (16, M, M), "theta.log_scale": (16,)}
    short = klass("lista_untied", layers=4)(A)
    assert short.num_layers == 4 and short.parameter_values()["We"].shape == (4, M, N)
    shared = klass("lista")(A).parameter_values()
    assert shared["We"].shape == (M, N) and shared["theta"].shape == ()


def test_every_learned_parameter_gets_a_gradient():
    A, y = data()
    for name in ("lista", "lista_untied", "lista_cpss", "alista", "lcod", "lista_iht"):
        net = klass(name, layers=4)(A)
        net(y).pow(2).sum().backward()
        for pname, p in net.named_parameters():
            assert p.grad is not None, (name, pname)


def test_defaults_reproduce_the_init_expressions_exactly():
    A, _ = data(seed=3)
    An = A.numpy()
    L = np.linalg.norm(An, 2) ** 2
    Lt = torch.linalg.matrix_norm(A, ord=2) ** 2
    v = klass("lista")(A, lam=0.07).parameter_values()
    np.testing.assert_allclose(v["We"].detach().numpy(), An.T / L, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(v["Wt"].detach().numpy(), np.eye(M) - An.T @ An / L, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(v["theta"].item(), 0.07 / L, rtol=1e-13)
    # bit-exact against the same computation (L is kept as a Python number; torch's `0.07 / Lt` would
    # multiply by a reciprocal): the reparametrisation adds no rounding
    assert v["theta"].item() == 0.07 / float(Lt)
    assert torch.equal(v["We"].detach(), A.T / Lt)
    # lcod: plain copies of the data and the hyperparameter
    v = klass("lcod")(A, lam=0.2).parameter_values()
    assert torch.equal(v["We"].detach(), A.T)
    assert v["theta"].item() == 0.2
    assert torch.equal(v["S"].detach(), torch.eye(M, dtype=F64) - A.T @ A)
    # per-layer schedules that use the layer index
    v = klass("lista_cpss")(A).parameter_values()
    assert v["p_l"].tolist() == [min(0.012 * (layer + 1), 0.13) for layer in range(16)]
    np.testing.assert_allclose(v["theta"].detach().numpy(), np.full(16, 0.1 / L), rtol=1e-13)
    # alista: the analytic weight
    v = klass("alista")(A).parameter_values()
    GiA = np.linalg.solve(An @ An.T, An)
    np.testing.assert_allclose(v["Wa"].numpy(), GiA / np.sum(An * GiA, 0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(v["gamma"].detach().numpy(), np.full(16, 1 / L), rtol=1e-13)


def test_untrained_lista_equals_ista():
    A, y = data(seed=4)
    a = klass("lista", layers=7)(A)(y)
    b = klass("ista", layers=7)(A)(y)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # and ISTA equals a numpy loop
    An, yn = A.numpy(), y.numpy()
    L = np.linalg.norm(An, 2) ** 2
    x = np.zeros((5, M))
    for _ in range(7):
        x = np_soft(x - (x @ An.T - yn) @ An / L, 0.1 / L)
    np.testing.assert_allclose(b.numpy(), x, rtol=1e-10, atol=1e-12)


CONS = """spec cons "constraints"
dims n, m
data A : real[n, m]
hyper lam = 0.1
input y : real[n]
let L = opnorm(A)^2
param D     : real[n, m] = A                 learned shared unit_columns
param step  : real       = 1 / L             learned per_layer range(0, 2)
param theta : real[m]    = lam / L           learned shared positive
param b     : real[m]    = 0                 learned shared nonnegative
param c     : real       = 0.5               fixed shared range(0, 1)
state x : real[m] = 0
layers 3
step:
    x = soft(x - step * (D.T @ (D @ x - y)), theta) + b * c
output x
"""


def test_constrained_parameters_default_values():
    A, _ = data(seed=5)
    net = klass("cons", CONS)(A)
    v = net.parameter_values()
    L = torch.linalg.matrix_norm(A, ord=2) ** 2
    torch.testing.assert_close(v["D"].detach(), A, rtol=1e-15, atol=1e-15)  # columns already unit
    assert torch.equal(v["step"].detach(), torch.full((3,), 1.0, dtype=F64) / L)
    assert torch.equal(v["theta"].detach(), torch.full((M,), 0.1 / float(L), dtype=F64))  # L: a Python number
    assert torch.equal(v["b"].detach(), torch.zeros(M, dtype=F64))
    assert v["c"].item() == 0.5
    assert dict(net.named_buffers())["c"].item() == 0.5
    assert "c" not in dict(net.named_parameters())


def test_projected_constraints_hold_after_a_huge_step():
    A, y = data(seed=6)
    net = klass("cons", CONS)(A)
    opt = torch.optim.SGD(net.parameters(), lr=1e6)
    v = net.parameter_values()
    # drive b and step down (towards negative values) and D anywhere
    loss = net(y).pow(2).sum() + v["b"].sum() + v["step"].sum() + (v["D"] * torch.randn_like(v["D"])).sum()
    loss.backward()
    opt.step()
    assert net.b.raw.min() < 0 and net.step.raw.min() < 0  # the raw values left the feasible set
    v = net.parameter_values()
    assert bool((v["b"] >= 0).all())
    assert bool((v["step"] >= 0).all()) and bool((v["step"] <= 2).all())
    torch.testing.assert_close(torch.linalg.vector_norm(v["D"], dim=0), torch.ones(M, dtype=F64))
    assert torch.isfinite(net(y)).all()


def test_positive_constraint_holds_after_a_step_that_would_make_it_negative():
    A, _y = data(seed=7)
    net = klass("cons", CONS)(A)
    theta0 = net.parameter_values()["theta"].detach().clone()
    lr = 10.0 / theta0.min().item() ** 2
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    net.parameter_values()["theta"].sum().backward()
    # a plain parameter would move by -lr * 1: far below zero
    assert (theta0 - lr).max() < 0
    opt.step()
    theta = net.parameter_values()["theta"]
    assert bool((theta > 0).all()) and bool(torch.isfinite(theta).all())
    assert bool((theta < theta0).all())


def test_positive_constraint_survives_an_extreme_step():
    A, _y = data(seed=7)
    net = klass("lista", layers=2)(A)
    opt = torch.optim.SGD(net.parameters(), lr=1e6)
    net.parameter_values()["theta"].backward()
    opt.step()
    assert net.parameter_values()["theta"].item() > 0


# --------------------------------------------------------------------------- dtypes and devices
def test_float32_and_float64():
    A, y = data(seed=8)
    net64 = klass("lista")(A)
    net32 = klass("lista")(A.float())
    assert net32.We.dtype == F32 and net32.theta.log_scale.dtype == F32
    out32 = net32(y.float())
    assert out32.dtype == F32
    torch.testing.assert_close(out32.double(), net64(y), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError):
        net32(y)  # a float64 input to a float32 module


def test_converting_a_float64_module_to_float32():
    A, y = data(seed=9)
    for name in ("lista", "ista", "alista", "lcod", "fista", "lista_cpss"):
        net = klass(name)(A)
        ref = net(y)
        net = net.to(F32)
        out = net(y.float())
        assert out.dtype == F32, name
        torch.testing.assert_close(out.double(), ref, rtol=1e-3, atol=1e-4, msg=name)


# --------------------------------------------------------------------------- state_dict
@pytest.mark.parametrize("name", ["lista", "lista_untied", "alista", "lcod", "lista_cpss", "ista"])
def test_state_dict_round_trip(name):
    A, y = data(seed=10)
    cls = klass(name, layers=4)
    net = cls(A)
    if list(net.parameters()):
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        for _ in range(2):
            opt.zero_grad()
            net(y).pow(2).sum().backward()
            opt.step()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    fresh = cls(A)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    assert torch.equal(fresh(y), net(y))
    assert set(fresh.state_dict()) == set(net.state_dict())


def test_state_dict_defines_the_network():
    A1, y = data(seed=11)
    A2, _ = data(seed=12)
    cls = klass("ista", layers=4)
    net, other = cls(A1), cls(A2)
    other.load_state_dict(net.state_dict())
    torch.testing.assert_close(other(y), net(y))
