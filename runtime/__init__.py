"""unroll.runtime: what generated modules import.

`ops` holds the differentiable kernels of the language's operators (every public function of
ops.py is exported here through its `__all__`: adding a kernel needs no edit in this file),
`nets` the sub-networks and user operators, `params` the constrained-parameter
reparametrisations, `module` the base class of every generated network (argument checking,
per-layer trace, parameter report).  Generated code does `from unroll import runtime as rt`
and calls `rt.soft(...)`, `rt.Positive(...)`, ...
"""

from . import array_ops, index_ops, ops, ops_diffusion
from .array_ops import *  # sqdist, diff_adj (listed in array_ops.__all__)
from .autodiff import *  # differentiation in the forward pass, `step until` masks
from .autodiff import __all__ as _autodiff_all
from .backward import LayerSlice, checkpoint_layers, implicit_layers
from .function_data import FunctionData  # function data (a user-supplied nonlinear callable)
from .index_ops import *  # gather, scatter-add, indexed writes (index_ops.__all__)
from .module import UnrolledModule
from .nets import (
    CNN,
    MLP,
    ConvGRU,
    LinearOperator,
    apply_cnn_rows,
    apply_mlp_rows,
    apply_net,
    cat,
    default_dtype_device,
    make_net,
)
from .nets_denoisers import DnCNN, UNet, apply_conditioned
from .nets_functional import FunctionalMLP, make_functional_net
from .ops import *  # the kernels, listed in ops.__all__
from .ops_diffusion import *  # conv2s, rbf, pwl (listed in ops_diffusion.__all__)
from .params import (
    NonNegative,
    Positive,
    Range,
    UnitColumns,
    UnitNorm,
    ZeroMean,
    ZeroMeanUnitNorm,
    check_constraint,
)

# (the kernels' lists are computed in their modules: ruff cannot read the sum)
__all__ = ops.__all__ + array_ops.__all__ + ops_diffusion.__all__ + _autodiff_all + index_ops.__all__ + [  # noqa: PLE0605
    "CNN",
    "ConvGRU",
    "LayerSlice",
    "checkpoint_layers",
    "implicit_layers",
    "MLP",
    "LinearOperator",
    "apply_net",
    "apply_cnn_rows",
    "apply_mlp_rows",
    "cat",
    "default_dtype_device",
    "make_net",
    "DnCNN",
    "UNet",
    "apply_conditioned",
    "FunctionalMLP",
    "make_functional_net",
    "NonNegative",
    "Positive",
    "Range",
    "UnitColumns",
    "UnitNorm",
    "ZeroMean",
    "ZeroMeanUnitNorm",
    "check_constraint",
    "UnrolledModule",
    "FunctionData",
]
