"""Every shipped spec through ONNX (issue 11 §1): the spec exports and onnxruntime agrees with eager on
another batch size, or the export fails with an ExportError that names the operator and why.

How each spec is exported (the fastest route that works: the TorchScript-based exporter takes ~0.5 s
a spec, the dynamo one ~5 s):
  legacy / dynamo     the exporter (dynamo: FFTs and complex values, which the TorchScript one lacks)
  ...32               in float32: onnxruntime's CPU Conv and Resize kernels have no float64 version
  an error            a regular expression the ExportError message must match

Tolerances: float64 legacy 1e-12 relative; dynamo 1e-6 (the dynamo exporter writes Python-number
constants of the graph as float32: lam / L rounded to 24 bits, 6e-8 relative each, see
docs/deployment.md; measured up to 2e-8); float32 1e-4.
A spec without a row (added since) takes any route that works, or must fail with an ExportError that
names it; give it a row once classified.
"""

from __future__ import annotations

import re

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import export_cases
from test_export import eager_outputs, onnx_outputs, relative_error
from unroll.runtime.export import ExportError, example_noise, to_onnx

SVD = r"`_linalg_svd` \(the spec's `opnorm / svt`\): ONNX has no singular value decomposition"
ROUTES = {
    "admm_csnet": "dynamo",
    "admm_lasso": "legacy",
    "alista": "legacy",
    "amp": "legacy",
    "corona": SVD,
    "deep_nmf": "legacy",
    "detnet": "legacy",
    "diamond_odp": "dynamo32",
    "ding_rain_admm": "dynamo",
    "domke_gd": "dynamo",  # the legacy exporter bakes the batch size into the autograd gradient
    "domke_heavy_ball": "dynamo",
    "domke_lbfgs": "dynamo",  # ring-buffer writes are select_scatter (no TorchScript export); `step until` masked
    "dublid": "dynamo",
    "fbpconvnet": "dynamo32",
    "fista": "legacy",
    "generic_unroll": "legacy",
    "gauss_newton_psse": r"jacobian\(h\(v\), v\).*requires grad as a constant",  # autograd Jacobian in forward
    "gupta_rpgd": "legacy32",
    "hosseini_dense_pgd": "dynamo32",
    "hqs_generic": r"`linalg_solve` \(the spec's `solve`\)",
    "iht": "legacy",
    "ista": "legacy",
    "lcod": "legacy",
    "ldit": "legacy32",
    # specs with `noise`: the exported model takes the draws as inputs after the spec's (runtime/export.py)
    "bm3d_amp": "legacy",
    "durr": "legacy32",
    "ldamp": "legacy32",
    "rnn_em": "legacy",
    "cnf_euler": r"line \d+: let trace_exact = trace\(jacobian\(",  # autograd in forward, as below
    "neural_em": r"line \d+: theta = theta \+ eta \* vjp\(",
    "learned_pdhg": "legacy32",
    "learned_primal_dual": "legacy32",
    "lista": "legacy",
    "lista_cp": "legacy",
    "lista_cpss": "legacy",
    "lista_iht": "legacy",
    "lista_untied": "legacy",
    "lohit_pgd_fusion": "dynamo32",
    "lpd_nodule_detection": "legacy32",
    "lsparcom": "dynamo",
    "meinhardt_learned_prox": "legacy32",
    "misi": "dynamo32",  # onnxruntime's Atan is float32 only
    "misi_unfolded": "dynamo32",
    "mlp_as_iteration": "legacy",
    "ml_csc_layered": "legacy",
    "ml_ista": "legacy",
    "nmf_mu": "legacy",
    "pdhg": "legacy",
    "plugin_step": "legacy",
    "perrone_tv_blind": "dynamo",
    "pnp_admm": "dynamo32",
    "pnp_fbs": "dynamo32",
    "prox_linear_psse": r"`matrix_norm` \(the spec's `opnorm`\)",
    "rnn_elman": "dynamo",  # `o[layer] = ...` is select_scatter (no TorchScript export); the graph has the export's T
    "rpca_ista": SVD,
    "schuler_deblur": "dynamo32",
    "scn": "legacy32",
    "sparcom": "legacy",
    "sprechmann_encoder": "legacy",
    "srcnn_sc": "legacy",
    "task_driven_dl": r"`matrix_norm` \(the spec's `opnorm`\)",
    "unrolled_adam": "legacy",
    # autograd in the forward pass (the Jacobian / vector-Jacobian product by torch.autograd.grad): the
    # TorchScript exporter cannot trace it, and the error names the spec line
    "ekf_training": r"line \d+: let H = jacobian\(",
    "dekf_training": r"line \d+: let H1 = jacobian\(",
    "msa_pmp": r"line \d+: p\[t\] = grad\(H\(",
}
# float32 routes whose outputs amplify rounding (onnxruntime's convolutions sum in another order than torch's):
# ldamp's Monte-Carlo divergence is a finite difference (D(x + eps b) - D(x)) / eps; durr's 3 CNN denoisers in a
# row on random (untrained) weights.  Measured: ldamp 3.8e-4, durr 2.0e-4 (float64 has no Conv in onnxruntime).
FLOAT32_TOLERANCE = {"ldamp": 1e-3, "durr": 1e-3}
ERROR_ROUTE = {name: "dynamo" if name in ("corona", "rpca_ista")
               else "legacy" for name, route in ROUTES.items() if route not in ("legacy", "dynamo", "legacy32",
                                                                                  "dynamo32")}


pytestmark = pytest.mark.export_sweep  # ~80 s of CPU for all specs: `-m "not export_sweep"` skips it locally


def test_the_routes_name_shipped_specs():
    assert set(ROUTES) <= set(export_cases.SHIPPED)


def _compare(name, route, net, inputs, other):
    dtype = torch.float32 if route.endswith("32") else torch.float64
    complex_dtype = torch.complex64 if dtype == torch.float32 else torch.complex128
    net = net.to(dtype)
    inputs, other = ([v.to(complex_dtype if v.is_complex() else dtype) for v in batch] for batch in (inputs, other))
    model = to_onnx(net, tuple(inputs), dynamo=route.startswith("dynamo"))
    noise = example_noise(net, tuple(other))  # a spec with `noise`: the model takes the draws as inputs
    want = eager_outputs(net, tuple(other), noise)
    assert any(abs(w).max() > 0 for w in want), f"{name}: the eager outputs are all zero (a vacuous comparison)"
    error = relative_error(onnx_outputs(model, net.input_names + net.noise_names, tuple(other) + noise), want)
    tolerance = FLOAT32_TOLERANCE.get(name, 1e-4) if dtype == torch.float32 else 1e-6 if route == "dynamo" else 1e-12
    assert error <= tolerance, f"{name} ({route}): onnxruntime differs from eager by {error:.2e}"


@pytest.mark.parametrize("name", sorted(export_cases.SHIPPED))
def test_spec_exports_to_onnx_or_names_the_operator(name, one_torch_thread):
    route = ROUTES.get(name)
    if route is None:  # a spec added since the table: any route that works, or an ExportError naming it
        case = export_cases.build_from_task(name)  # the catalog task's data: meaningful for every spec
        named, other_failures = [], []
        for attempt in ("legacy", "dynamo", "legacy32", "dynamo32"):
            try:
                _compare(name, attempt, export_cases.build_from_task(name).net, case.inputs, case.other)
                return  # one route works (e.g. the legacy exporter may bake a batch size that dynamo keeps)
            except ExportError as err:
                assert f"`{name}`" in str(err), str(err)
                named.append(str(err))
            except Exception as err:  # noqa: BLE001 - an onnxruntime failure on this route: try the next one
                other_failures.append(f"{attempt}: {type(err).__name__}: {str(err)[:300]}")
        assert named, f"{name}: no route exports and no ExportError names the cause: {other_failures}"
        return
    case = export_cases.build(name)
    if name in ERROR_ROUTE:
        with pytest.raises(ExportError) as err:
            to_onnx(case.net, case.inputs, dynamo=ERROR_ROUTE[name] == "dynamo")
        assert re.search(route, str(err.value)), str(err.value)
        assert f"`{name}`" in str(err.value) and len(str(err.value)) < 700
        return
    _compare(name, route, case.net, case.inputs, case.other)
