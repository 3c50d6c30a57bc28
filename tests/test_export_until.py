"""ONNX export of a `step until` network (per-sample adaptive depth): the exporters trace every layer, so
`to_onnx` (and `to_pt2`) export in masked mode (`early_exit = False`: finished samples are frozen by `keep_active`
instead of the loop breaking on a tensor's value, which torch.export cannot trace) and restores the
module's setting afterwards.  `domke_lbfgs` on a quadratic stops each sample after as many layers as its
right-hand side has Krylov directions: here 1 and n = 4 of 5 layers, so the exported graph runs frozen
layers for every sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import export_cases
from test_export import eager_outputs, onnx_outputs, relative_error
from unroll.runtime.export import to_onnx, to_pt2

pytestmark = pytest.mark.export_sweep  # one dynamo export and one torch.export, ~15 s


def test_step_until_exports_masked_and_agrees_with_eager_where_samples_stop_at_different_depths(one_torch_thread):
    case = export_cases.build("domke_lbfgs", layers=5)
    net = case.net
    A = net.A.numpy()
    eigenvector = np.linalg.eigh(A)[1][:, 0]  # L-BFGS solves A x = b in one step for an eigenvector b
    (b,) = case.other
    b = torch.cat([b, torch.from_numpy(eigenvector)[None]])
    with torch.no_grad():
        x, depth = net(b)
    assert depth.tolist() == [4] * (len(b) - 1) + [1]  # all stop before the last layer, at two depths
    np.testing.assert_allclose(x.numpy() @ A, b.numpy(), rtol=0, atol=1e-9 * float(b.abs().max()))
    assert net.early_exit
    model = to_onnx(net, case.inputs, dynamo=True)
    assert net.early_exit  # restored
    got = onnx_outputs(model, net.input_names, (b,))
    assert got[1].tolist() == depth.tolist()
    error = relative_error(got, eager_outputs(net, (b,)))
    assert error <= 1e-12, f"onnxruntime differs from eager by {error:.2e}"
    program = to_pt2(net, case.inputs)  # torch.export: the same masked trace
    assert net.early_exit
    with torch.no_grad():
        x2, depth2 = program.module()(b)
    assert depth2.tolist() == depth.tolist()
    torch.testing.assert_close(x2, x, rtol=1e-12, atol=0)
