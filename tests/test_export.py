"""Export of generated networks (issue 11 §1): ONNX with both exporters checked with onnxruntime against
eager on another batch size (the batch axis is dynamic), torch.export (.pt2) with a dynamic batch axis,
torch.jit.trace's batched path, `unrollc export`, and errors that name the operator an export lacks.

The every-spec sweep is tests/test_export_sweep.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import export_cases
from unroll.compiler.cli import main as unrollc
from unroll.runtime.export import ExportError, example_noise, to_onnx, to_pt2


def onnx_outputs(model: bytes, names, inputs) -> list:
    """Run an exported model in onnxruntime; complex inputs go in (and come out) as [..., 2] real pairs."""
    session = ort.InferenceSession(model)
    feeds = {n: (torch.view_as_real(v) if v.is_complex() else v).numpy() for n, v in zip(names, inputs)}
    return session.run(None, feeds)


def eager_outputs(net, inputs, noise: tuple = ()) -> list:
    """The eager module's outputs; `noise`: draws of its `noise` declarations, in the order of `net.noise_names`
    (an exported model takes them as inputs after the spec's)."""
    with torch.no_grad():
        out = net(*inputs, **dict(zip(net.noise_names, noise)))
    outs = out if isinstance(out, tuple) else (out,)
    return [(torch.view_as_real(o.resolve_conj()) if o.is_complex() else o).numpy() for o in outs]


def relative_error(got: list, want: list) -> float:
    assert len(got) == len(want)
    errors = []
    for g, w in zip(got, want):
        assert g.shape == w.shape, (g.shape, w.shape)
        g, w = g.astype(np.float64), w.astype(np.float64)
        errors.append(float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-300)))
    return max(errors)


def check_onnx(name: str, dynamo: bool, dtype=torch.float64, tolerance=1e-12) -> float:
    case = export_cases.build(name)
    net = case.net.to(dtype)
    inputs = tuple(v.to(dtype) if not v.is_complex() else v for v in case.inputs)
    other = tuple(v.to(dtype) if not v.is_complex() else v for v in case.other)
    model = to_onnx(net, inputs, dynamo=dynamo)
    error = relative_error(onnx_outputs(model, net.input_names, other), eager_outputs(net, other))
    assert error <= tolerance, f"{name}: onnxruntime differs from eager by {error:.2e} (relative)"
    return error


# ---------------------------------------------------------------- ONNX, TorchScript-based exporter
@pytest.mark.parametrize("name", [
    "lista",  # learned shared weights, positive threshold (soft without copysign)
    "fista",  # constants kept as Python numbers (the state_dict's extra state), a constant threshold
    "iht",  # hard top-k (ONNX TopK instead of a stable sort)
    "detnet",  # no data, per-sample channel input, sign
    "admm_lasso",  # the solve with a construction-time matrix: one product per layer
])
def test_onnx_legacy_exporter_matches_eager(name, one_torch_thread):
    check_onnx(name, dynamo=False)


def test_onnx_of_a_cnn_spec_in_float32(one_torch_thread):
    """onnxruntime's CPU convolution is float32 only: a network with CNNs is exported in float32."""
    check_onnx("srcnn_sc", dynamo=False, dtype=torch.float32, tolerance=1e-5)


# ---------------------------------------------------------------- ONNX, dynamo exporter
def test_onnx_dynamo_exporter_matches_eager(one_torch_thread):
    check_onnx("lista", dynamo=True)


def test_onnx_dynamo_exports_ffts_and_complex_inputs_as_real_pairs(one_torch_thread):
    """admm_csnet: complex k-space input, FFTs inside; the ONNX model takes and returns [..., 2] pairs."""
    case = export_cases.build("admm_csnet")
    assert case.complex_values
    model = to_onnx(case.net, case.inputs, dynamo=True)
    session = ort.InferenceSession(model)
    (first,) = session.get_inputs()
    assert first.shape[-1] == 2 and first.type == "tensor(double)"
    error = relative_error(onnx_outputs(model, case.net.input_names, case.other), eager_outputs(case.net, case.other))
    assert error <= 1e-12, error


def test_complex_shape_operators_with_negative_axes(one_torch_thread):
    """runtime/export_complex.py: unsqueeze, unbind, select, new_zeros, copy and slice_scatter of complex
    tensors, negative axes included (the real form has one more, trailing, axis)."""
    from unroll.runtime import export_complex  # noqa: F401 - registers the complex operators

    class ComplexShapes(torch.nn.Module):
        def forward(self, x):
            z = torch.view_as_complex(x)
            outer = z.unsqueeze(-1) * z.unsqueeze(-2).conj()  # [B, n, n]
            rows = outer.unbind(-1)
            mixed = outer.select(-1, 0) + 2 * rows[1] + outer.select(1, 2)
            out = z.new_zeros(z.shape)
            out[..., :2] = mixed[..., 1:3]  # copy + slice_scatter
            return torch.view_as_real(out + mixed)

    x = torch.randn(2, 4, 2, dtype=torch.float64)
    other = torch.randn(3, 4, 2, dtype=torch.float64)
    module = ComplexShapes()
    with torch.no_grad():
        program = torch.onnx.export(module, (x,), dynamo=True, input_names=["x"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    got = onnx_outputs(program.model_proto.SerializeToString(), ["x"], (other,))
    assert relative_error(got, [module(other).numpy()]) <= 1e-12


@pytest.mark.parametrize("n_freq,hop,length", [(5, 2, 16), (5, 2, 15), (9, 4, 16), (5, 3, 17), (9, 5, 20)])
def test_the_onnx_form_of_istft_equals_torch_istft(n_freq, hop, length):
    """rt.istft under ONNX export (torch.istft exports an int32 ScatterND): irfft, window, overlap-add by
    blocks (n_fft a multiple of hop) or frame by frame, against torch.istft."""
    from unroll.runtime import ops

    x = torch.randn(3, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(n_freq * hop))
    X = ops.stft(x, n_freq, 1 + 16 // hop, hop)
    n_fft = 2 * (n_freq - 1)
    window = torch.hann_window(n_fft, dtype=torch.float64)
    want = torch.istft(X, n_fft, hop_length=hop, window=window, center=True, length=length)
    torch.testing.assert_close(ops._istft_overlap_add(X, n_fft, hop, window, length), want, rtol=0, atol=1e-14)


def test_the_legacy_exporter_refuses_complex_values_with_a_message(one_torch_thread):
    case = export_cases.build("admm_csnet")
    with pytest.raises(ExportError, match="admm_csnet.*TorchScript-based"):
        to_onnx(case.net, case.inputs, dynamo=False)


# ---------------------------------------------------------------- what cannot export: the operator is named
def test_a_solve_whose_matrix_changes_every_layer_is_named(one_torch_thread):
    case = export_cases.build("hqs_generic")
    with pytest.raises(ExportError) as err:
        to_onnx(case.net, case.inputs, dynamo=False)
    message = str(err.value)
    assert "`hqs_generic`" in message and "linalg_solve" in message and "the spec's `solve`" in message
    assert "changes every layer" in message
    assert "Torch IR graph" not in message and len(message) < 600


def test_a_size_computed_from_a_buffer_names_the_kernel_and_the_spec_line(one_torch_thread):
    case = export_cases.build("alista")
    with pytest.raises(ExportError) as err:
        to_pt2(case.net, case.inputs)
    message = str(err.value)
    assert "rt.ss_soft" in message and "line 25: x = ss_soft(" in message, message


def test_a_graph_that_onnx_rejects_is_an_export_error():
    """An exporter bug (torch.onnx 2.13 wrote int32 ScatterND indices for torch.istft) is caught by ONNX's
    checker when exporting, not by onnxruntime when loading."""
    import onnx
    from onnx import TensorProto, helper
    from unroll.runtime.export import _check_graph

    node = helper.make_node("ScatterND", ["data", "indices", "updates"], ["out"])
    graph = helper.make_graph(
        [node], "scatter",
        [helper.make_tensor_value_info("data", TensorProto.DOUBLE, [4]),
         helper.make_tensor_value_info("indices", TensorProto.INT32, [1, 1]),
         helper.make_tensor_value_info("updates", TensorProto.DOUBLE, [1])],
        [helper.make_tensor_value_info("out", TensorProto.DOUBLE, [4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    net = export_cases.build("lista").net
    with pytest.raises(ExportError, match="`lista`.*checker rejects.*ScatterND"):
        _check_graph(net, model.SerializeToString())
    node.input[1] = "indices"
    graph.input[1].type.tensor_type.elem_type = TensorProto.INT64
    _check_graph(net, onnx.helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]).SerializeToString())


def test_export_takes_a_batch(one_torch_thread):
    case = export_cases.build("lista")
    with pytest.raises(ValueError, match="leading batch axis"):
        to_onnx(case.net, (case.inputs[0][0],))
    with pytest.raises(TypeError, match="takes 1 input"):
        to_onnx(case.net, case.inputs + case.inputs)


# ---------------------------------------------------------------- specs with `noise`
def test_a_noise_spec_exports_with_its_noise_as_inputs(one_torch_thread):
    """rnn_em draws theta0 ~ normal: the ONNX model takes the draw after the spec's input, with a dynamic batch
    axis, and agrees with the eager module given the same draw (a different draw gives other outputs)."""
    case = export_cases.build("rnn_em")
    net = case.net
    assert net.noise_names == ("theta0",)
    model = to_onnx(net, case.inputs, dynamo=False)  # example noise drawn from the module's generator
    names = [i.name for i in ort.InferenceSession(model).get_inputs()]
    assert names == ["x", "theta0"]
    noise = example_noise(net, case.other)
    assert noise[0].shape[0] == case.other[0].shape[0] == 3  # [batch, ...] for the other batch size
    want = eager_outputs(net, case.other, noise)
    assert relative_error(onnx_outputs(model, names, case.other + noise), want) <= 1e-12
    other_draw = example_noise(net, case.other)
    assert relative_error(onnx_outputs(model, names, case.other + other_draw), want) > 1e-3


def test_a_noise_spec_takes_given_example_noise_and_exports_to_pt2(one_torch_thread):
    case = export_cases.build("rnn_em")
    net = case.net
    noise = example_noise(net, case.inputs)
    program = to_pt2(net, case.inputs + noise)  # the example noise given explicitly
    other_noise = example_noise(net, case.other)
    with torch.no_grad():
        want = net(*case.other, theta0=other_noise[0])
        got = program.module()(*case.other, *other_noise)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-14)


def test_per_layer_noise_examples_have_a_layer_axis():
    case = export_cases.build("cnf_euler")  # noise eps : real[d] ~ rademacher per_layer
    (eps,) = example_noise(case.net, case.inputs)
    assert eps.shape == (2, case.net.num_layers, case.inputs[0].shape[1])
    assert set(eps.unique().tolist()) <= {-1.0, 1.0}


def test_export_of_a_noise_spec_counts_the_noise_among_its_inputs(one_torch_thread):
    case = export_cases.build("rnn_em")
    with pytest.raises(TypeError, match=r"takes 1 input\(s\) \('x',\), or these and its noise \('theta0',\)"):
        to_onnx(case.net, case.inputs + case.inputs + case.inputs)


# ---------------------------------------------------------------- torch.export / AOTInductor
def test_pt2_has_a_dynamic_batch_axis_and_round_trips(tmp_path, one_torch_thread):
    case = export_cases.build("lista")
    net = case.net
    program = to_pt2(net, case.inputs, tmp_path / "lista.pt2")
    loaded = torch.export.load(tmp_path / "lista.pt2").module()
    for batch in (case.other[0], torch.randn(7, 4, dtype=torch.float64)):
        with torch.no_grad():
            want = net(batch)
        torch.testing.assert_close(program.module()(batch), want, rtol=0, atol=0)
        torch.testing.assert_close(loaded(batch), want, rtol=0, atol=0)
    with pytest.raises((IndexError, RuntimeError, ValueError)):  # the batched path only: a sample is refused
        loaded(case.other[0][0])


@pytest.mark.export_sweep  # a C++ compile: ~40 s of CPU
def test_aot_inductor_package_runs_with_a_dynamic_batch(tmp_path, one_torch_thread):
    import shutil

    if shutil.which("c++") is None and shutil.which("g++") is None:
        pytest.skip("AOTInductor needs a C++ compiler")
    case = export_cases.build("lista")
    program = to_pt2(case.net, case.inputs)
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "lista_aoti.pt2"))
    compiled = torch._inductor.aoti_load_package(path)
    for batch in (case.other[0], torch.randn(9, 4, dtype=torch.float64)):
        with torch.no_grad():
            torch.testing.assert_close(compiled(batch), case.net(batch), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------- torch.jit.trace: the batched path only
@pytest.mark.parametrize("name", ["fista", "pdhg"])  # without the guard: [4] in, [4, 4] out, no error
def test_a_traced_module_refuses_an_unbatched_call(name, one_torch_thread):
    case = export_cases.build(name)
    net = case.net
    with pytest.warns(torch.jit.TracerWarning):
        traced = torch.jit.trace(net, case.inputs)
    torch.testing.assert_close(traced(*case.other), net(*case.other))  # another batch size: dynamic
    with pytest.raises(RuntimeError):
        traced(case.other[0][0])  # untraced path: an error, not a wrong shape


# ---------------------------------------------------------------- unrollc export
def test_unrollc_export_onnx_and_pt2_from_an_npz(tmp_path, capsys, one_torch_thread):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((5, 8))
    y = rng.standard_normal((2, 5))
    np.savez(tmp_path / "lista.npz", A=A, lam=0.2, y=y)
    onnx_file, pt2_file = tmp_path / "l.onnx", tmp_path / "l.pt2"
    assert unrollc(["export", "lista", "--layers", "4", "--data", str(tmp_path / "lista.npz"),
                    "-o", str(onnx_file), "--legacy"]) == 0
    assert unrollc(["export", "lista", "--layers", "4", "--data", str(tmp_path / "lista.npz"),
                    "--format", "pt2", "-o", str(pt2_file)]) == 0
    import unroll

    net = unroll.load("lista", layers=4)(A=A, lam=0.2)
    batch = torch.as_tensor(rng.standard_normal((3, 5)))
    want = eager_outputs(net, (batch,))
    assert relative_error(onnx_outputs(onnx_file.read_bytes(), ("y",), (batch,)), want) <= 1e-12
    torch.testing.assert_close(torch.export.load(pt2_file).module()(batch), torch.as_tensor(want[0]))
    assert "wrote" in capsys.readouterr().err


def test_unrollc_export_from_a_checkpoint(tmp_path, one_torch_thread):
    import unroll

    case = export_cases.build("lista")
    net = unroll.load("lista", layers=export_cases.LAYERS)(**case.arguments)
    net.load_state_dict(case.net.state_dict())
    torch.save(net, tmp_path / "net.pt")  # a whole module, pickled by recipe
    np.savez(tmp_path / "inputs.npz", y=case.inputs[0].numpy())
    out = tmp_path / "net.onnx"
    assert unrollc(["export", "lista", "--checkpoint", str(tmp_path / "net.pt"), "--data",
                    str(tmp_path / "inputs.npz"), "-o", str(out), "--legacy"]) == 0
    assert relative_error(onnx_outputs(out.read_bytes(), ("y",), case.other), eager_outputs(net, case.other)) \
        <= 1e-12


def test_unrollc_export_errors(tmp_path, capsys):
    np.savez(tmp_path / "a.npz", A=np.ones((5, 8)))
    assert unrollc(["export", "lista"]) == 1
    assert "--data" in capsys.readouterr().err
    assert unrollc(["export", "lista", "--data", str(tmp_path / "a.npz"), "--tie", "nope"]) == 1
    assert unrollc(["export", "hqs_generic", "--data", str(tmp_path / "a.npz"), "--legacy",
                    "-o", str(tmp_path / "h.onnx")]) == 1
    err = capsys.readouterr().err
    assert "the spec's `solve`" in err and "Traceback" not in err and "Torch IR" not in err
    np.savez(tmp_path / "bad.npz", A=np.ones((5, 8, 2)))
    assert unrollc(["export", "lista", "--data", str(tmp_path / "bad.npz")]) == 1
    assert "A: expected shape" in capsys.readouterr().err
