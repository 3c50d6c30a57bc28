"""The generated-module contract (README, "The generated module contract"):
nn.Module subclass, constructor arguments, dims, forward/trace, parameter shapes,
constraints, exact defaults, dtypes, state_dict, compile options and the load cache."""

from __future__ import annotations

import inspect
import io
import os
import types

import numpy as np
import pytest
import torch
import unroll
from unroll.compiler.driver import check_source, compile_source, make_options, shipped_specs
from unroll.runtime import UnrolledModule
from unroll.runtime import loader as loader_module

F64, F32 = torch.float64, torch.float32
SHIPPED = shipped_specs()
N, M = 8, 12


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory):
    """unroll.load in this module never touches ~/.cache/unroll."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNROLL_CACHE", str(tmp_path_factory.mktemp("contract_cache")))
        yield


_CLASSES: dict = {}


def klass(spec: str, text: str | None = None, **options):
    """The generated class for a shipped spec (or spec text), compiled and imported in memory."""
    key = (spec, text, tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _CLASSES:
        text = text if text is not None else SHIPPED[spec].read_text()
        src = compile_source(text, f"{spec}.unroll", make_options(**options))
        module = types.ModuleType(f"contract_{spec}_{len(_CLASSES)}")
        exec(compile(src, f"<{spec}>", "exec"), module.__dict__)  # noqa: S102 - importing compiler output
        (cls,) = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule
        ]
        _CLASSES[key] = cls
    return _CLASSES[key]


def data(seed=0, n=N, m=M, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=F64)
    A = A / torch.linalg.vector_norm(A, dim=0, keepdim=True)
    y = torch.randn(5, n, generator=g, dtype=F64)
    return A.to(dtype), y.to(dtype)


def np_soft(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0)


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


# --------------------------------------------------------------------------- compile options via unroll.load
def test_load_options_change_shapes_and_trainability():
    A, y = data(seed=13)
    net = unroll.load("lista", layers=5, untie="Wt")(A)
    assert net.Wt.shape == (5, M, M) and net.We.shape == (M, N)
    net = unroll.load("lista_untied", tie="We,theta")(A)
    assert net.We.shape == (M, N) and net.theta.log_scale.shape == ()
    assert net.Wt.shape == (16, M, M)
    net = unroll.load("lista", freeze=["theta", "Wt"])(A)
    params = dict(net.named_parameters())
    buffers = dict(net.named_buffers())
    assert set(params) == {"We"}
    assert "theta" in buffers and "Wt" in buffers
    assert not buffers["Wt"].requires_grad
    assert "Wt" in net.state_dict()
    net = unroll.load("alista", learn="Wa")(A)
    assert isinstance(net.Wa, torch.nn.Parameter) and net.Wa.requires_grad
    assert "Wa" not in dict(net.named_buffers())
    net = unroll.load("alista")(A)
    assert "Wa" in dict(net.named_buffers()) and "Wa" not in dict(net.named_parameters())
    # frozen or not, the untrained output is the same
    torch.testing.assert_close(
        unroll.load("lista", freeze="theta")(A)(y), unroll.load("lista")(A)(y), rtol=0, atol=0
    )


def test_load_caches_on_disk(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("UNROLL_CACHE", str(cache))
    calls = []
    real = loader_module.compile_source

    def counting(*args, **kwargs):
        calls.append(args[1] if len(args) > 1 else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader_module, "compile_source", counting)
    cls1 = unroll.load("ista", layers=3)
    files = sorted(cache.glob("*.py"))
    assert len(calls) == 1 and len(files) == 1
    assert files[0].read_text() == compile_source(
        SHIPPED["ista"].read_text(), str(SHIPPED["ista"]), make_options(layers=3)
    )
    mtime = files[0].stat().st_mtime_ns
    cls2 = unroll.load("ista", layers=3)
    assert len(calls) == 1  # not recompiled
    assert sorted(cache.glob("*.py")) == files and files[0].stat().st_mtime_ns == mtime
    assert cls2 is cls1
    unroll.load("ista", layers=4)
    assert len(calls) == 2 and len(list(cache.glob("*.py"))) == 2
    assert not list(cache.glob("*.tmp"))


def test_load_by_path(tmp_path, monkeypatch):
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "cache"))
    spec = tmp_path / "my_ista.unroll"
    spec.write_text(SHIPPED["ista"].read_text().replace("spec ista", "spec my_ista"))
    cls = unroll.load(str(spec), layers=2, class_name="MyIsta")
    assert cls.__name__ == "MyIsta" and cls.num_layers == 2
    A, y = data(seed=14)
    torch.testing.assert_close(cls(A)(y), klass("ista", layers=2)(A)(y), rtol=0, atol=0)


def test_load_reports_mistakes_as_compile_errors():
    from unroll.compiler import CompileError

    with pytest.raises(CompileError):
        unroll.load("lista", tie="nope")
    with pytest.raises(CompileError):
        unroll.load("no_such_spec_name")
    with pytest.raises(CompileError):
        unroll.load("lista", layers="3")


# --------------------------------------------------------------------------- report and messages
def test_report_lists_every_parameter():
    A, _ = data()
    text = klass("lista_untied")(A).report()
    for name in ("We", "Wt", "theta"):
        assert name in text
    assert f"trainable parameters: {16 * (M * N + M * M + 1)}" in text


def test_shape_error_names_this_modules_argument():
    A, _y = data()
    # dims with names no other test uses, so the first binding below is the first ever
    text = SHIPPED["ista"].read_text().replace("dims  n, m", "dims  nq, mq").replace("[n, m]", "[nq, mq]")
    text = text.replace("[n]", "[nq]").replace("[m]", "[mq]")
    first = text.replace("spec ista", "spec first").replace("A", "Dict")
    second = text.replace("spec ista", "spec second")
    klass("first", first)(A)  # binds nq, mq through `Dict`
    net = klass("second", second)(A)  # binds them through `A`
    with pytest.raises(ValueError) as info:
        net(torch.randn(2, N + 1, dtype=F64))
    assert "`A`" in str(info.value) and "Dict" not in str(info.value)


def test_generated_file_runs_standalone(tmp_path):
    """The written file is importable on its own (torch + unroll.runtime) in a fresh process, with no
    cache, loader or compiler call involved."""
    import subprocess
    import sys

    path = tmp_path / "lista_net.py"
    path.write_text(compile_source(SHIPPED["lista"].read_text(), "lista.unroll", make_options(layers=2)))
    code = (
        f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import torch; from lista_net import Lista; "
        "net = Lista(torch.randn(4, 6, dtype=torch.float64)); print(tuple(net(torch.randn(4, "
        "dtype=torch.float64)).shape)); print(type(net).__module__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(6,)", "lista_net"]


UNBATCHED_STATE = """spec ub "unbatched state"
dims n, q
data A : real[n, q]
input y : real[n]
state x : real[n] = 0
state t : real[q] = 1
layers 2
step:
    x = x + y
    t = t * 2
output x, t
"""


def test_unbatched_states_keep_their_shape():
    """A state that does not depend on the inputs has no batch axis, even when its first dim is 1."""
    net = klass("ub", UNBATCHED_STATE)(torch.randn(3, 1, dtype=F64))
    x, t = net(torch.randn(3, dtype=F64))
    assert x.shape == (3,) and t.shape == (1,) and t.item() == 4.0
    x, t = net(torch.randn(5, 3, dtype=F64))
    assert x.shape == (5, 3) and t.shape == (1,)
    assert net.trace(torch.randn(3, dtype=F64))[-1]["t"].shape == (1,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_module_on_cuda_matches_cpu():
    A, y = data(seed=15)
    for name in ("lista", "lista_untied", "alista", "lcod", "lista_cpss"):
        net = klass(name, layers=4)(A)
        ref = net(y)
        gpu = net.to("cuda")
        out = gpu(y.to("cuda"))
        assert out.device.type == "cuda"
        torch.testing.assert_close(out.cpu(), ref, rtol=1e-10, atol=1e-12)
        gpu(y.to("cuda")).pow(2).sum().backward()
        assert all(p.grad is not None and p.grad.device.type == "cuda" for p in gpu.parameters())


def test_dtype_conversion_keeps_complex_data_complex():
    import numpy as np

    net = unroll.load("hosseini_dense_pgd", layers=2)(smaps=np.ones((1, 4, 4)) * (1 + 1j) / np.sqrt(2),
                                                        mask=np.ones((4, 4)))
    y = torch.randn(2, 1, 4, 4, dtype=torch.complex128)
    want = net(y)
    net32 = net.to(torch.float32)
    assert net32.smaps.dtype == torch.complex64 and net32.smaps.imag.abs().max() > 0.7
    assert all(p.dtype == torch.float32 for p in net32.parameters())
    torch.testing.assert_close(net32(y.to(torch.complex64)), want.to(torch.complex64), rtol=1e-4, atol=1e-5)
    net64 = net32.double()
    assert net64.smaps.dtype == torch.complex128


def test_specs_without_data_take_dtype_and_device_keywords():
    Net = unroll.load("detnet", layers=2)
    net = Net(K=3, delta0=0.15, dtype=torch.float64, device="cpu")
    assert {p.dtype for p in net.parameters()} == {torch.float64}
    assert net.parameter_values()["delta1"][0].item() == 0.15  # no float32 rounding
    assert {p.dtype for p in Net(K=3).parameters()} == {torch.get_default_dtype()}
    with pytest.raises(TypeError, match="floating point"):
        Net(K=3, dtype=torch.int64)


def test_monitor_calls_back_at_every_layer_boundary_without_keeping_states():
    import numpy as np

    A = np.random.default_rng(0).standard_normal((10, 20))
    net = unroll.load("ista", layers=5)(A=A)
    y = torch.randn(3, 10, dtype=torch.float64)
    seen = []
    out = net.monitor(y, on_layer=lambda index, states: seen.append((index, states["x"].norm().item())))
    trace = net.trace(y)
    assert [i for i, _ in seen] == list(range(6))
    assert [v for _, v in seen] == [s["x"].norm().item() for s in trace]
    torch.testing.assert_close(out, trace[-1]["x"])
