"""The generated-module contract, continued (tests/test_module_contract.py): compile options through unroll.load,
its cache, loading by path, reports and messages, standalone generated files, devices, dtypes, monitoring."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import unroll
from module_contract_helpers import F32, F64, SHIPPED, M, N, _private_cache, data, klass, np_soft  # noqa: F401
from unroll.compiler.driver import compile_source, make_options
from unroll.runtime import loader as loader_module


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

    A = np.random.default_rng(0).standard_normal((10, 20))
    net = unroll.load("ista", layers=5)(A=A)
    y = torch.randn(3, 10, dtype=torch.float64)
    seen = []
    out = net.monitor(y, on_layer=lambda index, states: seen.append((index, states["x"].norm().item())))
    trace = net.trace(y)
    assert [i for i, _ in seen] == list(range(6))
    assert [v for _, v in seen] == [s["x"].norm().item() for s in trace]
    torch.testing.assert_close(out, trace[-1]["x"])
