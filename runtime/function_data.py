"""Function data: `data D : function(real[n], real) -> real[n] [nondifferentiable]` (docs/language.md §3.3a).

A nonlinear callable given to the constructor (an external denoiser such as BM3D, a pretrained network)
is wrapped in a `FunctionData` module. The wrapper

- registers a `torch.nn.Module` given as the function as its submodule `module` (its weights are in the
  network's `state_dict`, are returned by `.parameters()` and follow `.to()`);
- calls the function on a batch: every argument with the leading batch axis (`[batch, *shape]`; an
  argument that is the same for every sample is expanded over the batch), and checks that it returns a
  tensor `[batch, *result shape]` of the network's dtype and device (a `ValueError` naming the data and
  the shapes expected and got);
- runs it under `torch.no_grad()` and detaches the result when the spec declares it `nondifferentiable`
  (training then treats its value as a constant, as a straight-through estimator would).

Pickling (`torch.save(net)`): a module pickles with its weights; a plain function pickles by reference
(its module and name), so it must be importable where the network is loaded. A lambda or a function
defined inside another function cannot be pickled at all: saving raises a `TypeError` naming the data
(`state_dict` still saves: function data holds no tensors of its own).
"""

from __future__ import annotations

import torch
from torch import nn


class FunctionData(nn.Module):
    """A user-supplied nonlinear function `name : function(arg_shapes...) -> out_shape`."""

    def __init__(self, name: str, function, arg_shapes, out_shape, differentiable: bool = True,
                 complex_out: bool = False):
        super().__init__()
        if function is None:
            raise TypeError(f"{name}: missing function (the spec declares `{name}` as function data)")
        if not callable(function) or torch.is_tensor(function):
            raise TypeError(f"{name}: expected a callable (a function or a torch.nn.Module) for function data, "
                            f"got {type(function).__name__}")
        self.name = name
        self.arg_shapes = tuple(tuple(int(d) for d in s) for s in arg_shapes)
        self.out_shape = tuple(int(d) for d in out_shape)
        self.differentiable = bool(differentiable)
        self.complex_out = bool(complex_out)
        if isinstance(function, nn.Module):
            self.module = function
            self._function = None
        else:
            owner = getattr(function, "__self__", None)  # a bound method of a module: register the module
            if isinstance(owner, nn.Module):
                self.module = owner
            self._function = function

    def _callable(self):
        return self._function if self._function is not None else self.module

    def forward(self, *args):
        """All arguments batched: `[batch, *shape]` each."""
        return self.call((True,) * len(args), *args)

    def call(self, batched, *args):
        """Arguments of which `batched[i]` says whether they carry the batch axis; unbatched ones are expanded
        over the batch (a call with no batched argument is a batch of one, and its result has no batch axis)."""
        batch = next((a.shape[0] for a, b in zip(args, batched) if b), None)
        size = 1 if batch is None else batch
        full = [a if b else a.unsqueeze(0).expand((size,) + tuple(a.shape)) for a, b in zip(args, batched)]
        reference = full[0]
        if self.differentiable:
            out = self._callable()(*full)
        else:
            with torch.no_grad():
                out = self._callable()(*full)
        out = self._checked(out, size, reference)
        if not self.differentiable:
            out = out.detach()
        return out if batch is not None else out[0]

    def _checked(self, out, size: int, reference: torch.Tensor) -> torch.Tensor:
        want = [size, *self.out_shape]
        if not torch.is_tensor(out):
            raise ValueError(f"{self.name}: the function must return a tensor of shape {want} ([batch, "
                             f"*{list(self.out_shape)}]), got {type(out).__name__}")
        if list(out.shape) != want:
            raise ValueError(f"{self.name}: the function must return shape {want} ([batch, *{list(self.out_shape)}]"
                             f"), got {list(out.shape)}")
        if out.device != reference.device:
            raise ValueError(f"{self.name}: the function returned a tensor on {out.device}, the network computes "
                             f"on {reference.device}")
        if out.is_complex() and not self.complex_out:
            raise ValueError(f"{self.name}: the function must return a real tensor, got {out.dtype}")
        real = reference.real.dtype if reference.is_complex() else reference.dtype
        if not out.is_floating_point() and not out.is_complex():
            raise ValueError(f"{self.name}: the function must return a floating point tensor, got {out.dtype}")
        if (out.real.dtype if out.is_complex() else out.dtype) != real:
            raise ValueError(f"{self.name}: the function returned {out.dtype}, the network computes in {real}")
        return out

    def __getstate__(self):
        function = self._function
        if function is not None:
            qualname = getattr(function, "__qualname__", "")
            if "<lambda>" in qualname or "<locals>" in qualname:
                raise TypeError(f"{self.name}: the function data {qualname} cannot be pickled (a lambda or a "
                                "function defined inside another function); give a function defined at the top "
                                "level of an importable module, or a torch.nn.Module, to save the whole network "
                                "(state_dict() saves in any case)")
        return super().__getstate__()

    def extra_repr(self) -> str:
        shapes = ", ".join(str(list(s)) for s in self.arg_shapes)
        what = "" if self.differentiable else ", nondifferentiable"
        return f"{self.name}: function({shapes}) -> {list(self.out_shape)}{what}"


__all__ = ["FunctionData"]
