"""Complex versions of a few shape operators the dynamo ONNX exporter lacks (onnxscript's torch_lib has
complex `squeeze`, `slice`, `transpose`, ... but not `unsqueeze`, `unbind`, `select`).

ONNX has no complex tensors: the exporter carries a complex tensor as a real one with a trailing axis of
2 (real, imaginary), and a complex version of an operator works on that form.  For these shape
operators it is the real operator with negative axes shifted past the trailing axis.  Registered in
onnxscript's torch_lib registry when runtime/export.py exports with dynamo=True (imported only then:
onnxscript is an optional dependency, the `export` extra).
"""

from __future__ import annotations

from onnxscript.function_libs.torch_lib.ops import core
from onnxscript.function_libs.torch_lib.registration import torch_op


def _axis(dim: int) -> int:
    """A torch axis of the complex tensor as an axis of its [..., 2] real form."""
    return dim - 1 if dim < 0 else dim


@torch_op("aten::unsqueeze", complex=True, trace_only=True)
def aten_unsqueeze_complex(self, dim: int):
    """unsqueeze of a complex tensor."""
    return core.aten_unsqueeze(self, _axis(dim))


@torch_op("aten::unbind.int", complex=True, trace_only=True)
def aten_unbind_complex(self, dim: int = 0):
    """unbind of a complex tensor."""
    return core.aten_unbind(self, _axis(dim))


@torch_op("aten::select.int", complex=True, trace_only=True)
def aten_select_complex(self, dim: int, index: int):
    """select of a complex tensor."""
    return core.aten_select(self, _axis(dim), index)


@torch_op("aten::new_zeros", complex=True, trace_only=True)
def aten_new_zeros_complex(self, size, dtype: int = -1, layout: str = "", device: str = "", pin_memory: bool = False):
    """new_zeros of a complex tensor: zeros of shape [*size, 2] in its real form."""
    if isinstance(size, (list, tuple)):
        shape = [*size, 2]
    else:
        shape = core.op.Concat(size, core.op.Constant(value_ints=[2]), axis=0)
    return core.op.CastLike(core.op.ConstantOfShape(shape), self)


@torch_op("aten::copy", complex=True, trace_only=True)
def aten_copy_complex(self, src, non_blocking: bool = False):
    """copy into a complex tensor: the real forms have the same layout."""
    return core.aten_copy(self, src, non_blocking)


@torch_op("aten::slice_scatter", complex=True, trace_only=True)
def aten_slice_scatter_complex(self, src, dim: int = 0, start=None, end=None, step=1):
    """slice_scatter into a complex tensor (`x[..., :s] = y`)."""
    return core.aten_slice_scatter(self, src, _axis(dim), start, end, step)
