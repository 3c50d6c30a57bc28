"""Deployment of a generated network: ONNX (for onnxruntime and other ONNX runtimes) and torch.export
(`.pt2`, loadable with `torch.export.load`, compilable ahead of time with AOTInductor).

    from unroll.runtime.export import to_onnx, to_pt2
    to_onnx(net, (y,), "lista.onnx")            # the batch axis of every input is dynamic
    to_pt2(net, (y,), "lista.pt2")

Both trace the batched path (every input with its leading batch axis).  Complex inputs and outputs
travel as real tensors with a trailing axis of 2 (real, imaginary: `torch.view_as_real`) in ONNX, which
has no complex tensors.  A network that uses an operator the target lacks raises `ExportError`, which
names the operator and says why.  See docs/deployment.md.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import torch
from torch import nn

from .module import UnrolledModule, _Trace

# torch operators an ONNX exporter may refuse, with the spec operator behind each and why
_ONNX_GAPS = {
    "linalg_solve": ("solve", ("ONNX has no linear solve: the planner factors a solve whose matrix is known at "
                              "construction; this one changes every layer or call (e.g. a learned or per-layer "
                              "parameter in the matrix)")),
    "_linalg_solve_ex": ("solve", ("ONNX has no linear solve: the planner factors a solve whose matrix is known at "
                                  "construction; this one changes every layer or call")),
    "linalg_inv": ("solve", "ONNX has no matrix inverse"),
    "matrix_norm": ("opnorm", ("ONNX has no singular value decomposition (the spectral norm of a value computed "
                              "per call)")),
    "linalg_svd": ("opnorm / svt", "ONNX has no singular value decomposition"),
    "_linalg_svd": ("opnorm / svt", "ONNX has no singular value decomposition"),
    "linalg_eigh": ("eigen-decomposition", "ONNX has no eigen-decomposition"),
    "fft_fft2": ("fft2 / conv2", "the TorchScript-based exporter has no FFT: use the dynamo exporter"),
    "fft_ifft2": ("ifft2 / conv2", "the TorchScript-based exporter has no FFT: use the dynamo exporter"),
    "stft": ("stft", "ONNX's STFT takes no complex values"),
    "istft": ("istft", "ONNX has no inverse STFT"),
    "sort": ("top-k selection", "ONNX has no stable sort"),
    "mT": ("`.T`", ("the TorchScript-based exporter has no aten::mT (generated code writes `.transpose(-2, -1)`; a "
                   "kernel that uses `.mT` needs the same)")),
    "sgn": ("sign", "the exporters have no aten::sgn for real values (generated code writes torch.sign)"),
}


class ExportError(ValueError):
    """The network cannot be exported to the requested format; the message names the operator."""


# ------------------------------------------------------------------ complex values as real pairs
class RealPairs(nn.Module):
    """`net` with complex inputs and outputs carried as real tensors [..., 2] (real, imaginary)."""

    def __init__(self, net: UnrolledModule, complex_inputs: tuple):
        super().__init__()
        self.net = net
        self.complex_inputs = tuple(complex_inputs)

    def forward(self, *inputs):
        values = [torch.view_as_complex(v) if c else v for v, c in zip(inputs, self.complex_inputs)]
        out = self.net(*values)
        outs = out if isinstance(out, tuple) else (out,)
        outs = tuple(torch.view_as_real(o.resolve_conj()) if o.is_complex() else o for o in outs)
        return outs if isinstance(out, tuple) else outs[0]


def _as_pairs(net: UnrolledModule, inputs: tuple):
    """The module and inputs to trace: complex inputs or outputs turn the module into RealPairs."""
    inputs = tuple(torch.as_tensor(v) for v in inputs)
    flags = tuple(v.is_complex() for v in inputs)
    with torch.no_grad():
        out = net(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    if not any(flags) and not any(o.is_complex() for o in outs):
        return net, inputs
    pairs = tuple(torch.view_as_real(v.resolve_conj()) if c else v for v, c in zip(inputs, flags))
    return RealPairs(net, flags), pairs


def _check_batched(net: UnrolledModule, inputs: tuple):
    if not isinstance(net, UnrolledModule):
        raise TypeError(f"net: expected a generated network (unroll.runtime.UnrolledModule), got {type(net).__name__}")
    names, noise = tuple(net.input_names), tuple(net.noise_names)
    if len(inputs) not in (len(names), len(names) + len(noise)):
        also = f", or these and its noise {noise} ([batch, (layers,) ...] each)" if noise else ""
        raise TypeError(f"inputs: {type(net).__name__} takes {len(names)} input(s) {names}{also}, "
                        f"got {len(inputs)}")
    args = net._bind_inputs(tuple(inputs[:len(names)]), dict(zip(noise, inputs[len(names):])))
    record = _Trace()  # the call's batch information (no flag on the module: thread-safe)
    with torch.no_grad():
        net._unrolled(*args, record=record)
    if record.batch_info and record.batch_info[0][2]:
        raise ValueError("inputs: give example inputs with a leading batch axis (the exported batch axis is "
                         "dynamic; an unbatched sample is the batch of one: `y.unsqueeze(0)`)")


def _gap(err: Exception) -> str:
    """The operator an exporter refused, named with the spec operator behind it, and where."""
    root = err
    while root.__cause__ is not None:
        root = root.__cause__
    text = str(err) + "\n" + str(root)
    where = _where(root)
    for pattern in (r"aten::(\w+)", r"op='aten\.(\w+)'", r"aten\.(\w+)\.", r"operator (?:linalg\.)?(\w+)"):
        for name in re.findall(pattern, text):
            if name in _ONNX_GAPS:
                spec_op, why = _ONNX_GAPS[name]
                return f"torch operator `{name}` (the spec's `{spec_op}`){where}: {why}"
    complex_op = re.search(r"op='aten\.(\w+)'.*complex-valued", text, re.DOTALL)
    if complex_op:
        return (f"torch operator `{complex_op.group(1)}` on complex values{where}: the ONNX exporter has no "
                f"complex version of it")
    if "data-dependent" in text:
        return (f"a size computed from a tensor's value{where} (torch.export needs every size at trace time, "
                f"e.g. a top-k count from a schedule kept as a buffer)")
    first = next((line.strip() for line in str(root).splitlines() if line.strip()), type(root).__name__)
    return f"{type(root).__name__}{where}: {first[:300]}"


def _where(err: Exception) -> str:
    """` in rt.<kernel>, at <generated line>`: the runtime kernel and the spec line the traceback passes
    through (the generated code's comments name the spec lines)."""
    import linecache
    import traceback

    kernel = line = None
    for frame in traceback.extract_tb(err.__traceback__):
        if frame.filename.endswith(("runtime/ops.py", "runtime/nets.py")):
            kernel = kernel or frame.name
        elif frame.name in ("_unrolled", "__init__"):  # generated code: its comments name the spec lines
            source = linecache.getline(frame.filename, frame.lineno).strip() or (frame.line or "")
            above = linecache.getline(frame.filename, frame.lineno - 1).strip()
            if "  # line " in source:
                line = source.split("  # ")[-1]
            elif above.startswith("# line "):
                line = above[2:]
    parts = ([f"in rt.{kernel}"] if kernel else []) + ([f"at `{line[:120]}`"] if line else [])
    return (" " + ", ".join(parts)) if parts else ""


@contextlib.contextmanager
def _quiet():
    """The exporters print progress, warnings and (the TorchScript-based one, from C++, on failure) whole
    graphs: keep them off the user's terminal; what matters is raised as ExportError."""
    import logging
    import os
    import sys
    import tempfile

    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch.fx", "torch._dynamo")]
    levels = [logger.level for logger in loggers]
    sys.stdout.flush()
    sys.stderr.flush()
    saved_fds = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)  # the C++ side writes to the file descriptors themselves
        os.dup2(sink.fileno(), 2)
        try:
            for logger in loggers:
                logger.setLevel(logging.ERROR)
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
                    contextlib.redirect_stderr(io.StringIO()):
                warnings.simplefilter("ignore")
                yield
        finally:
            for fd, saved in zip((1, 2), saved_fds):
                os.dup2(saved, fd)
                os.close(saved)
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


@contextlib.contextmanager
def _resolved_conjugates(net: nn.Module):
    """Buffers that are lazy conjugate views (`x.conj()`) become plain tensors while exporting: the dynamo
    exporter writes initializers with `view_as_real`, which refuses such views."""
    swapped = []
    for module in net.modules():
        for name, buffer in module._buffers.items():
            if buffer is not None and buffer.is_conj():
                swapped.append((module, name, buffer))
                module._buffers[name] = buffer.resolve_conj()
    try:
        yield
    finally:
        for module, name, buffer in swapped:
            module._buffers[name] = buffer


@contextlib.contextmanager
def _masked(net: UnrolledModule):
    """`step until` networks are traced in masked mode (`early_exit = False`: every layer runs, finished
    samples frozen), the same outputs without the early break, which tests a tensor's value."""
    early_exit = net.early_exit
    net.early_exit = False
    try:
        yield
    finally:
        net.early_exit = early_exit


@contextlib.contextmanager
def _default_dtype(dtype):
    """The TorchScript-based exporter types 0-d tensors with the default dtype: a float64 network exported
    under float32 defaults would round its scalar parameters to float32."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


def _real_dtype(net: UnrolledModule):
    dtype, _ = net._default_dtype_device()
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


# ------------------------------------------------------------------ ONNX
def to_onnx(net: UnrolledModule, inputs: tuple, path=None, *, dynamo: bool = True, opset: int | None = None) -> bytes:
    """Export `net`, traced on the batched example `inputs`, to ONNX; returns the model's bytes (and writes
    them to `path` if given).  The leading batch axis of every input is dynamic.  `dynamo=True` uses
    torch.export (`torch.onnx.export(..., dynamo=True)`), `dynamo=False` the TorchScript-based exporter."""
    inputs = tuple(inputs)
    _check_batched(net, inputs)
    was_training = net.training
    net.eval()
    plain, inputs, names = _with_noise(net, inputs)
    module, traced_inputs = _as_pairs(plain, inputs)
    outputs = list(net.output_names)
    try:
        with _quiet(), _default_dtype(_real_dtype(net)), torch.no_grad(), _resolved_conjugates(net), _masked(net):
            if dynamo:
                from . import export_complex  # noqa: F401 - registers complex shape operators for the exporter

                batch = torch.export.Dim("batch")
                shapes = tuple({0: batch} for _ in names)
                program = torch.onnx.export(module, traced_inputs, dynamo=True, input_names=names,
                                            output_names=outputs, opset_version=opset,
                                            dynamic_shapes=(shapes,) if module is not net else shapes)
                model = program.model_proto.SerializeToString()
            else:
                buffer = io.BytesIO()
                torch.onnx.export(module, traced_inputs, buffer, dynamo=False, input_names=names,
                                  output_names=outputs, opset_version=opset or 17,
                                  dynamic_axes={n: {0: "batch"} for n in names + outputs})
                model = buffer.getvalue()
    except Exception as err:
        exporter = "torch.onnx (dynamo)" if dynamo else "torch.onnx (TorchScript-based)"
        raise ExportError(f"cannot export `{net.spec_name}` to ONNX with {exporter}: {_gap(err)}") from err
    finally:
        net.train(was_training)
    _check_graph(net, model)
    if path is not None:
        with open(path, "wb") as f:
            f.write(model)
    return model


def _check_graph(net: UnrolledModule, model: bytes) -> None:
    """ONNX's checker with shape and type inference: an exporter bug (an operator given a type ONNX does
    not allow) is an ExportError here, not a model that onnxruntime refuses to load."""
    import onnx

    try:
        onnx.checker.check_model(onnx.load_from_string(model), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
        raise ExportError(f"cannot export `{net.spec_name}` to ONNX: the exporter wrote a graph that ONNX's "
                          f"checker rejects ({first[:300]})") from err


# ------------------------------------------------------------------ noise as inputs
class NoiseInputs(nn.Module):
    """`net` with the draws of its `noise` declarations as inputs after the spec's inputs, in the order of
    `net.noise_names`, each [batch, (layers,) ...] as `forward(..., NAME=...)` takes it.  An exported model
    takes its noise from the caller: the target's random operators would not reproduce torch's draws, and a
    deployment that fixes its noise (or draws it its own way) needs it as an input anyway."""

    def __init__(self, net: UnrolledModule):
        super().__init__()
        self.net = net
        self.count = len(net.input_names)

    def forward(self, *inputs):
        return self.net(*inputs[:self.count], **dict(zip(self.net.noise_names, inputs[self.count:])))


def example_noise(net: UnrolledModule, inputs: tuple) -> tuple:
    """Draws of `net`'s noise for the batch of `inputs` (the spec's inputs only), from the module's own
    generator, in the order of `net.noise_names`: example noise inputs for an export, or noise to give both
    an exported model and the eager module."""
    names = tuple(net.noise_names)
    if not names:
        return ()
    drawn = {}
    draw = net._noise_arg

    def capture(name, value, *args, **kwargs):
        drawn[name] = out = draw(name, value, *args, **kwargs)
        return out

    net.__dict__["_noise_arg"] = capture  # this instance only, for one call
    try:
        with torch.no_grad():
            net(*inputs)
    finally:
        del net.__dict__["_noise_arg"]
    return tuple(drawn[n] for n in names)


def _with_noise(net: UnrolledModule, inputs: tuple):
    """The module to trace, its example inputs and their names: for a spec with `noise`, the noise is an input
    after the spec's inputs (drawn from the module's generator when `inputs` has only the spec's inputs)."""
    names = list(net.input_names)
    if not net.noise_names:
        return net, inputs, names
    if len(inputs) == len(names):
        inputs = inputs + example_noise(net, inputs)
    return NoiseInputs(net), inputs, names + list(net.noise_names)


# ------------------------------------------------------------------ torch.export / AOTInductor
def to_pt2(net: UnrolledModule, inputs: tuple, path=None):
    """`torch.export.export` of `net` traced on the batched example `inputs`, the leading batch axis dynamic
    (a single sample is a batch of one).  Returns the
    ExportedProgram (saved to `path` with `torch.export.save` if given); `torch.export.load(path).module()`
    runs it, `torch._inductor.aoti_compile_and_package(program)` compiles it ahead of time."""
    inputs = tuple(inputs)
    _check_batched(net, inputs)
    module, inputs, names = _with_noise(net, inputs)
    batch = torch.export.Dim("batch")
    shapes = {n: {0: batch} for n in names} if module is net else (tuple({0: batch} for _ in names),)
    try:
        with _quiet(), _masked(net):
            program = torch.export.export(module, inputs, dynamic_shapes=shapes)
    except Exception as err:
        raise ExportError(f"cannot export `{net.spec_name}` with torch.export: {_gap(err)}") from err
    if path is not None:
        torch.export.save(program, path)
    return program


__all__ = ["ExportError", "NoiseInputs", "RealPairs", "example_noise", "to_onnx", "to_pt2"]
