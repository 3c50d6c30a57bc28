"""`unrollc export SPEC --format onnx|pt2`: build the network from given data (`--data file.npz`) or a
pickled module (`--checkpoint net.pt`), optionally load trained weights (`--state-dict`), and export it
with the example inputs of the npz file (or zeros of the input shapes the data determines)."""

from __future__ import annotations

import sys

import numpy as np
import torch
from unroll.compiler.diagnostics import CompileError, Diagnostic, Source
from unroll.compiler.driver import check_source, resolve_spec

from .export import ExportError, to_onnx, to_pt2
from .loader import load


def _fail(message: str, hint: str | None = None):
    raise CompileError([Diagnostic(message, hint=hint)], Source("", "unrollc export"))


def _read_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError) as err:
        _fail(f"--data {path}: cannot read it as an .npz file ({err})",
              "save the constructor arguments with numpy.savez(path, A=A, lam=0.1, y=example_batch)")


def _argument(value: np.ndarray):
    """An npz entry as a constructor argument: 0-d arrays are numbers (hypers, dims)."""
    if value.ndim == 0:
        item = value.item()
        return int(item) if isinstance(item, (bool, np.integer, int)) and not isinstance(item, bool) else item
    return value


def build(args, options: dict):
    """The network and its example inputs, from the command's arguments."""
    path = resolve_spec(args.spec)
    program = check_source(path.read_text(), str(path))
    entries = _read_npz(args.data) if args.data else {}
    if args.checkpoint:
        net = torch.load(args.checkpoint, weights_only=False)
        if getattr(net, "spec_name", None) != program.name:
            _fail(f"--checkpoint {args.checkpoint}: holds a `{getattr(net, 'spec_name', type(net).__name__)}` "
                  f"network, not `{program.name}`")
    elif args.data:
        Net = load(str(path), **options)
        inputs = {net_input.name for net_input in program.inputs}
        kwargs = {k: _argument(v) for k, v in entries.items() if k not in inputs}
        try:
            net = Net(**kwargs)
        except (TypeError, ValueError) as err:
            _fail(f"--data {args.data}: {err}")
    else:
        _fail("give the network's data (--data file.npz) or a pickled network (--checkpoint net.pt)")
    if args.state_dict:
        net.load_state_dict(torch.load(args.state_dict, weights_only=True))
    if args.dtype:
        net = net.to(getattr(torch, args.dtype))
    dtype, device = net._default_dtype_device()
    example = []
    for net_input in program.inputs:
        if net_input.name in entries:
            value = torch.as_tensor(entries[net_input.name])
            value = value.to(dtype if not value.is_complex() else (torch.complex64 if dtype == torch.float32
                                                                  else torch.complex128))
        else:
            shape = []
            for dim in net_input.type.shape:
                if not dim.is_int and any(name not in net.dims for name in dim.names()):
                    _fail(f"the size of input `{net_input.name}` is not known from the data",
                          f"put an example batch `{net_input.name}` in the --data file")
                shape.append(dim.const + sum(coef * _product(name, net.dims) for name, coef in dim.terms))
            kind = torch.complex128 if net_input.type.dtype == "complex" else dtype
            if kind.is_complex and dtype == torch.float32:
                kind = torch.complex64
            value = torch.ones((2, *shape), dtype=kind, device=device)
        example.append(value)
    return net, tuple(example)


def _product(name: str, dims: dict) -> int:
    out = 1
    for factor in name.split("*"):
        out *= dims[factor]
    return out


def run(args, options: dict) -> int:
    net, example = build(args, options)
    target = args.output or f"{net.spec_name}.{args.format}"
    try:
        if args.format == "onnx":
            to_onnx(net, example, target, dynamo=not args.legacy)
        else:
            to_pt2(net, example, target)
    except ExportError as err:
        print(f"unrollc: error: {err}", file=sys.stderr)
        return 1
    print(f"unrollc: wrote {target} ({net.spec_name}, {args.format}, batch axis dynamic)", file=sys.stderr)
    return 0
