"""Persistence of generated networks (issue 11 §2): a pickled module (torch.save(net), multiprocessing)
loads in a fresh process, with another cache directory and another compiler version; checkpoints saved by
an earlier version (tests/data/checkpoints/, written by tests/data/make_checkpoints.py) still load."""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import unroll

CHECKPOINTS = Path(__file__).resolve().parent / "data" / "checkpoints"
SAVED_SPECS = ("lista", "fista", "lista_untied", "deep_nmf", "rpca_ista", "misi_unfolded")

# a fresh interpreter that loads a pickled network under a different cache and a "newer" compiler
# (another VERSION and sources fingerprint: the generated module gets another name)
FRESH_LOADER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    import unroll.compiler.driver as driver
    import unroll.runtime.loader as loader
    if sys.argv[3] == "upgrade":
        driver.VERSION = loader.VERSION = "99.0.0"
        loader.compiler_fingerprint = lambda: "a-later-compiler"
    net = torch.load(sys.argv[1], weights_only=False)
    io = torch.load(sys.argv[2], weights_only=True)
    out = net(io["y"])
    assert torch.equal(out, io["out"]), (out - io["out"]).abs().max()
    if sys.argv[3] == "upgrade":  # the class was compiled again, by the "newer" compiler
        assert type(net).__module__ != io["module"], type(net).__module__
    print("loaded", type(net).__name__, type(net).__module__)
""")


def _run_fresh(tmp_path, net_file, io_file, mode):
    env = dict(os.environ, UNROLL_CACHE=str(tmp_path / f"cache_{mode}"), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", FRESH_LOADER, str(net_file), str(io_file), mode],
                          capture_output=True, text=True, env=env, timeout=120, check=False)


def _lista(layers=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(5, 8, generator=g, dtype=torch.float64)
    net = unroll.load("lista", layers=layers)(A=A / A.norm(dim=0))
    with torch.no_grad():
        net.Wt.add_(0.01 * torch.randn(8, 8, generator=g, dtype=torch.float64))  # not the defaults
    return net, torch.randn(3, 5, generator=g, dtype=torch.float64)


def test_a_pickled_module_loads_in_a_fresh_process_under_a_newer_compiler(tmp_path, one_torch_thread):
    net, y = _lista()
    torch.save(net, tmp_path / "net.pt")
    torch.save({"y": y, "out": net(y).detach(), "module": type(net).__module__}, tmp_path / "io.pt")
    done = _run_fresh(tmp_path, tmp_path / "net.pt", tmp_path / "io.pt", "upgrade")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "loaded Lista unroll_generated_lista_" in done.stdout


def test_pickle_copy_and_deepcopy_keep_the_values(one_torch_thread):
    net, y = _lista()
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert type(clone) is type(net)
        assert torch.equal(clone(y), net(y))
        assert clone.Wt is not net.Wt
        assert set(clone.state_dict()) == set(net.state_dict())
    # the rebuilt module trains: its parameters are leaves with gradients
    clone = pickle.loads(pickle.dumps(net))
    clone(y).sum().backward()
    assert clone.Wt.grad is not None and net.Wt.grad is None


def test_the_pickle_carries_the_spec_not_the_generated_module_name():
    net, _ = _lista()
    data = pickle.dumps(net)
    assert b"unroll.runtime.persist" in data and b"rebuild" in data
    assert type(net).__module__.encode() not in data  # unroll_generated_lista_<hash> is never imported


def test_a_spec_file_that_is_gone_still_unpickles(tmp_path, monkeypatch, one_torch_thread):
    spec = tmp_path / "my_ista.unroll"
    spec.write_text(_shipped_text("ista").replace("spec ista", "spec my_ista"))
    Net = unroll.load(str(spec), layers=3)
    A = torch.randn(4, 6, dtype=torch.float64)
    net, y = Net(A=A), torch.randn(2, 4, dtype=torch.float64)
    data = pickle.dumps(net)
    spec.unlink()
    monkeypatch.setenv("UNROLL_CACHE", str(tmp_path / "other_cache"))
    assert torch.equal(pickle.loads(data)(y), net(y))


def _shipped_text(name):
    from unroll.compiler.driver import shipped_specs

    return shipped_specs()[name].read_text()


def _spawn_worker(rank, net, y, out_file):
    torch.set_num_threads(1)
    torch.save(net(y).detach(), out_file)


def test_multiprocessing_spawn_workers_receive_the_module(tmp_path, one_torch_thread):
    net, y = _lista()
    out_file = tmp_path / "out.pt"
    torch.multiprocessing.spawn(_spawn_worker, args=(net, y, str(out_file)), nprocs=1, join=True)
    assert torch.equal(torch.load(out_file, weights_only=True), net(y).detach())


# ---------------------------------------------------------------- checkpoints of an earlier version
@pytest.mark.parametrize("name", SAVED_SPECS)
def test_a_state_dict_saved_by_an_earlier_version_loads(name, one_torch_thread):
    saved = torch.load(CHECKPOINTS / f"{name}.pt", weights_only=True)
    Net = unroll.load(name, layers=saved["layers"])
    arguments = dict(saved["arguments"])
    if not any(torch.is_tensor(v) for v in arguments.values()):  # a spec without data: dims and dtype
        arguments["dtype"] = getattr(torch, saved["dtype"].removeprefix("torch."))
    net = Net(**arguments)
    assert set(net.state_dict()) == set(saved["state_dict"]), "state_dict keys changed"
    net.load_state_dict(saved["state_dict"])  # strict: same keys, same shapes
    with torch.no_grad():
        out = net(*saved["inputs"])
    outs = out if isinstance(out, tuple) else (out,)
    for got, want in zip(outs, saved["outputs"]):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_a_module_pickled_by_an_earlier_version_loads(one_torch_thread):
    net = torch.load(CHECKPOINTS / "lista_module.pt", weights_only=False)
    saved = torch.load(CHECKPOINTS / "lista.pt", weights_only=True)
    with torch.no_grad():
        torch.testing.assert_close(net(*saved["inputs"]), saved["outputs"][0], rtol=1e-12, atol=1e-12)


def test_the_old_dict_form_of_the_python_constants_still_loads(one_torch_thread):
    """Checkpoints saved before the constants became a tensor hold a dict {name: value}."""
    saved = torch.load(CHECKPOINTS / "fista.pt", weights_only=True)
    # other data: the loaded state (buffers and the constants kept as Python numbers) must define the network
    net = unroll.load("fista", layers=saved["layers"])(A=2 * saved["arguments"]["A"])
    state = dict(saved["state_dict"])
    names = sorted(type(net).python_constants)
    assert names, "fista keeps constants as Python numbers"
    state["_extra_state"] = dict(zip(names, state["_extra_state"].tolist()))
    net.load_state_dict(state)
    with torch.no_grad():
        torch.testing.assert_close(net(*saved["inputs"]), saved["outputs"][0], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="extra state"):
        net.load_state_dict(dict(state, _extra_state=torch.zeros(len(names) + 1, dtype=torch.float64)))
