"""unroll.runtime: what generated modules import.

`ops` holds the differentiable kernels of the language's operators,
`params` the constrained-parameter reparametrisations, `module` the base
class of every generated network (argument checking, per-layer trace,
parameter report).  Generated code does `from unroll import runtime as rt`
and calls `rt.soft(...)`, `rt.Positive(...)`, ...
"""

from .module import UnrolledModule
from .ops import (
    conv2,
    conv2_adj,
    norm_sum,
    normalize_columns,
    otf,
    row_shrink,
    svt,
    abs2,
    adjoint_test,
    complex_dtype,
    full_param,
    hard,
    hard_topk,
    layer_stack,
    onehot,
    real_dtype,
    soft,
    soft_nonneg,
    ss_soft,
)
from .nets import CNN, MLP, LinearOperator, apply_net, cat, default_dtype_device, make_net
from .params import NonNegative, Positive, Range, UnitColumns, check_constraint

__all__ = [
    "CNN",
    "MLP",
    "LinearOperator",
    "apply_net",
    "cat",
    "default_dtype_device",
    "make_net",
    "conv2",
    "conv2_adj",
    "norm_sum",
    "normalize_columns",
    "otf",
    "row_shrink",
    "svt",
    "NonNegative",
    "Positive",
    "Range",
    "UnitColumns",
    "check_constraint",
    "complex_dtype",
    "real_dtype",
    "UnrolledModule",
    "abs2",
    "adjoint_test",
    "full_param",
    "hard",
    "hard_topk",
    "layer_stack",
    "onehot",
    "soft",
    "soft_nonneg",
    "ss_soft",
]
