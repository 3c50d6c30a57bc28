"""Every shipped spec built on small random data, for the export tests (tests/test_export*.py).

`build(name)` compiles a shipped spec with few layers, draws data and inputs of the shapes the checked
program declares (sizes from SIZES, else 4), fixes up what a spec's `require` lines ask for (unit
columns, a compact PSF), and returns the module with two batches of inputs: one to export with and one
of another batch size to compare on (the exported batch axis is dynamic).
"""

from __future__ import annotations

import linecache
import types
from dataclasses import dataclass

import numpy as np
import torch
from unroll import runtime as rt
from unroll.compiler.driver import check_source, compile_source, make_options, shipped_specs
from unroll.runtime import UnrolledModule

SHIPPED = shipped_specs()
LAYERS = 3

# dims whose sizes matter to a spec (an STFT needs frames = 1 + T // hop; a PSF a window)
SIZES = {
    "misi": {"C": 2, "F": 5, "N": 9, "T": 16},
    "misi_unfolded": {"F": 5, "N": 9, "T": 16},
    "corona": {"s": 3, "T": 3, "nx": 6, "nz": 6},
    "fbpconvnet": {"s": 3, "k1": 6, "k2": 6, "h": 6, "w": 6},
}
HYPERS = {"misi": {"hop": 2}, "misi_unfolded": {"hop": 2}}
COMPACT_PSF = {"corona": "h", "fbpconvnet": "hk"}  # data whose support must be the central (s+1)/2 window
UNIT_COLUMNS = {"lcod": "A"}
SPD = {"domke_gd": "A", "domke_heavy_ball": "A", "domke_lbfgs": "A"}  # data that must be symmetric positive definite
POSITIVE = {"nmf_mu", "deep_nmf", "admm_csnet"}  # the other specs get signed data and inputs


@dataclass
class Case:
    name: str
    net: UnrolledModule
    inputs: tuple  # batch of 2
    other: tuple  # batch of 3: the same module on another batch size
    complex_values: bool  # the spec's data or inputs are complex
    arguments: dict  # the constructor's keyword arguments


def dim_value(dim, sizes: dict) -> int:
    value = dim.const
    for name, coef in dim.terms:
        product = 1
        for factor in name.split("*"):
            product *= sizes[factor]
        value += coef * product
    return value


def generated_class(text: str, name: str, layers: int = LAYERS):
    src = compile_source(text, f"{name}.unroll", make_options(layers=layers))
    module = types.ModuleType(f"export_case_{name}")
    filename = f"<export_case {name} {layers}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)  # tracebacks show the lines
    exec(compile(src, filename, "exec"), module.__dict__)  # noqa: S102 - importing compiler output
    (cls,) = [v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule]
    return cls


def shrink_first(value, *others):
    """Function data of the export cases (`data D : function(real[...], ...) -> real[...]`, the result shaped
    like the first argument): a smooth shrinkage of the first argument."""
    return value * torch.tanh(value ** 2)


def _array(rng, shape, dtype: str, positive: bool = False):
    value = rng.standard_normal(shape)
    if positive:  # NMF-type specs: nonnegative data, positive inputs
        value = np.abs(value) + 0.1
    if dtype == "complex":
        value = value + 1j * rng.standard_normal(shape)
    return value


def build(name: str, seed: int = 0, layers: int = LAYERS) -> Case:
    text = SHIPPED[name].read_text()
    program = check_source(text, f"{name}.unroll")
    sizes = {d: 4 for d in program.dims} | SIZES.get(name, {})
    rng = np.random.default_rng(seed)
    cls = generated_class(text, name, layers)
    kwargs: dict = dict(HYPERS.get(name, {}))
    for d in program.data:
        if d.type.dtype == "function":  # function data: a smooth shrinkage of the first argument
            kwargs[d.name] = shrink_first
            continue
        if d.type.dtype == "operator":  # a matrix operator [out <- in]
            rows = int(np.prod([dim_value(x, sizes) for x in d.type.out_shape]))
            cols = int(np.prod([dim_value(x, sizes) for x in d.type.shape]))
            kwargs[d.name] = rng.standard_normal((rows, cols)) / np.sqrt(cols)
            continue
        kwargs[d.name] = _array(rng, tuple(dim_value(x, sizes) for x in d.type.shape), d.type.dtype,
                                name in POSITIVE)
    if name in UNIT_COLUMNS:
        a = kwargs[UNIT_COLUMNS[name]]
        kwargs[UNIT_COLUMNS[name]] = a / np.linalg.norm(a, axis=0)
    if name in SPD:
        a = kwargs[SPD[name]]
        kwargs[SPD[name]] = a @ a.T + a.shape[0] * np.eye(a.shape[0])
    if name in COMPACT_PSF:
        psf = kwargs[COMPACT_PSF[name]]
        s = psf.shape[0]
        keep = np.zeros((s, s))
        lo, hi = (s - 1) // 2 - (s - 1) // 4, (s - 1) // 2 + (s - 1) // 4 + 1
        keep[lo:hi, lo:hi] = 1
        kwargs[COMPACT_PSF[name]] = psf * keep
    if not program.data:
        kwargs["dtype"] = torch.float64
    for dim in program.dims:  # dims that no data binds are constructor keywords (not a functional net's)
        if dim not in program.data_dims and dim not in program.net_dims:
            kwargs[dim] = sizes[dim]
    net = cls(**kwargs)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # sub-networks start at zero (a residual CNN adds nothing): give them weights
        for module in net.modules():
            if isinstance(module, (rt.CNN, rt.MLP)):
                for p in module.parameters():
                    p.add_(0.1 * torch.randn(p.shape, generator=generator, dtype=p.dtype))

    def batch(size):
        values = []
        for i in program.inputs:
            shape = (size,) + tuple(dim_value(x, sizes) for x in i.type.shape)
            values.append(torch.as_tensor(_array(rng, shape, i.type.dtype, name in POSITIVE)))
        return tuple(values)

    complex_values = any(x.type.dtype == "complex" for x in list(program.data) + list(program.inputs))
    return Case(name, net, batch(2), batch(3), complex_values, kwargs)


def build_from_task(name: str, layers: int = LAYERS) -> Case:
    """The spec on its catalog task (runtime/problems: meaningful data, e.g. probabilities where the spec
    takes probabilities), float64, with inputs from the held-out set."""
    from unroll.runtime.problems import problem_for

    problem = problem_for(name, dtype=torch.float64)
    cls = generated_class(SHIPPED[name].read_text(), name, layers)
    net = cls(**problem.data)
    ordered = [problem.test_inputs[i] for i in cls.input_names if i in problem.test_inputs]

    def batch(start, size):
        return tuple(v[start:start + size] for v in ordered)

    complex_values = any(torch.is_tensor(v) and v.is_complex() for v in list(problem.data.values()) + ordered)
    return Case(name, net, batch(0, 2), batch(2, 3), complex_values, dict(problem.data))
