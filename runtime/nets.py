"""Learned sub-networks usable as operators in a spec (`net NAME : cnn(...)`), and
user-supplied linear operators (`data K : operator[k <- n]`)."""

from __future__ import annotations

import torch
from torch import nn

from .nets_denoisers import DnCNN, UNet
from .nets_recurrent import ConvGRU


class CNN(nn.Module):
    """A small CNN block: `depth` 3x3 convolutions (`width` channels, PReLU between them),
    channels-first images [batch, in, h, w] -> [batch, out, h, w].

    `init="zero"` zero-initialises the last convolution, so the block starts as the zero map
    (a residual update `f + Net(...)` then starts as the identity)."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32, depth: int = 3, kernel: int = 3,
                 init: str = "default"):
        super().__init__()
        if depth < 1:
            raise ValueError("cnn: depth must be at least 1")
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(depth):
            last = i == depth - 1
            conv = nn.Conv2d(channels, out_channels if last else width, kernel, padding=kernel // 2)
            layers.append(conv)
            if not last:
                layers.append(nn.PReLU(width))
            channels = width
        self.body = _sequential(layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MLP(nn.Module):
    """A small MLP: `depth` linear layers (`width` hidden units, ReLU between them), [batch, in] -> [batch, out]."""

    def __init__(self, in_features: int, out_features: int, width: int = 64, depth: int = 2, init: str = "default"):
        super().__init__()
        layers: list[nn.Module] = []
        features = in_features
        for i in range(depth):
            last = i == depth - 1
            lin = nn.Linear(features, out_features if last else width)
            layers.append(lin)
            if not last:
                layers.append(nn.ReLU())
            features = width
        self.body = _sequential(layers, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _sequential(layers: list, init: str) -> nn.Sequential:
    """The block's layers; `init="zero"` zeroes the last one so the block starts as the zero map."""
    if init == "zero":
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
    return nn.Sequential(*layers)


# The largest size option of a sub-network (channels, units, layers, kernel): beyond it torch cannot
# allocate the weights, and an integer hyperparameter such as `width : int = 1e300` is a mistake.
MAX_NET_SIZE = 1 << 24

NET_KINDS = {"cnn": CNN, "mlp": MLP, "convgru": ConvGRU, "dncnn": DnCNN, "unet": UNet}


def make_net(kind: str, per_layer: bool, layers: int, learned: bool, dtype, device, **kwargs) -> nn.Module:
    """One sub-network, or a ModuleList of `layers` independent ones (per_layer)."""
    for option, size in kwargs.items():
        if option not in ("init", "sigma", "lipschitz") and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
            raise ValueError(f"{kind}: the size `{option}` must be a positive integer, got {size!r}")
        if option not in ("init", "sigma", "lipschitz") and size > MAX_NET_SIZE:
            raise ValueError(f"{kind}: the size `{option}` = {size} is too large (at most {MAX_NET_SIZE})")
    def build():
        return NET_KINDS[kind](**kwargs).to(dtype=dtype, device=device)

    module = nn.ModuleList(build() for _ in range(layers)) if per_layer else build()
    if not learned:
        module.requires_grad_(False)
    return module


def apply_net(net: nn.Module, x: torch.Tensor, batched: bool, *more: torch.Tensor) -> torch.Tensor:
    """Apply a sub-network to a batched value, or to one unbatched value (a `convgru` also takes its
    hidden state, batched like x)."""
    if batched:
        return net(x, *more)
    return net(x.unsqueeze(0), *(m.unsqueeze(0) for m in more)).squeeze(0)


def apply_cnn_rows(net: nn.Module, x: torch.Tensor, batched: bool) -> torch.Tensor:
    """A CNN applied to every image of a stack [..., C, h, w] (leading axes, the batch axis included,
    are flattened into one batch and restored): [..., out, h, w]."""
    lead = x.shape[:-3]
    out = net(x.reshape((-1,) + tuple(x.shape[-3:])))
    return out.reshape(tuple(lead) + tuple(out.shape[-3:]))


def apply_mlp_rows(net: nn.Module, pieces, batched, ranks) -> torch.Tensor:
    """An MLP applied to every row of its features: the first piece's rows [..., k] with the other pieces
    (numbers or tensors of logical rank `ranks[i]`: a scalar, or rows of the same leading axes)
    concatenated along the last axis, scalars broadcast over the rows; [..., in] -> [..., out].

    `batched[i]` tells whether piece i has the leading batch axis; unbatched pieces are shared by the batch."""
    first = pieces[0]
    any_batched = any(batched)
    lead_rank = ranks[0] - 1 + (1 if any_batched else 0)
    columns = []
    for piece, is_batched, rank in zip(pieces, batched, ranks):
        if not torch.is_tensor(piece):
            piece = torch.tensor(piece, dtype=first.dtype, device=first.device)
        if rank == 0:
            piece = piece.unsqueeze(-1)  # one feature
        if is_batched and rank <= 1 and lead_rank > 1:
            # a batched scalar/vector against rows [batch, ..., k]: singleton row axes after the batch axis
            piece = piece.reshape((piece.shape[0],) + (1,) * (lead_rank - 1) + (piece.shape[-1],))
        columns.append(piece)
    lead = torch.broadcast_shapes(*(c.shape[:-1] for c in columns))
    features = torch.cat([c.expand(tuple(lead) + (c.shape[-1],)) for c in columns], dim=-1)
    return net(features.to(first.dtype))


class LinearOperator(nn.Module):
    """A user-supplied linear operator with its adjoint.

    Accepts a matrix (tensor/array, applied as `x @ K.T` to a batch of vectors), an object with
    `forward(x)` and `adjoint(y)` methods, or a pair of callables `(forward, adjoint)`. Functions
    receive a batch: [batch, *in_shape] -> [batch, *out_shape]."""

    def __init__(self, name: str, operator, dtype=None, device=None, in_shape=None, out_shape=None):
        super().__init__()
        self.name = name
        self.in_shape = tuple(in_shape) if in_shape is not None else None
        self.out_shape = tuple(out_shape) if out_shape is not None else None
        if isinstance(operator, tuple) and len(operator) == 2 and all(callable(f) for f in operator):
            self._forward, self._adjoint = operator
            self.matrix = None
            self._register_owners(operator)
        elif hasattr(operator, "forward") and hasattr(operator, "adjoint") and not torch.is_tensor(operator):
            self._forward, self._adjoint = operator.forward, operator.adjoint
            self.matrix = None
            self._register_owners((operator,))
        else:
            try:
                matrix = torch.as_tensor(operator)
            except Exception as err:
                raise TypeError(f"{name}: expected a matrix, an object with forward/adjoint, or a pair of "
                                f"callables, got {type(operator).__name__}") from err
            if matrix.dim() != 2:
                raise ValueError(f"{name}: a matrix operator must be 2-D, got shape {list(matrix.shape)}")
            if (matrix.is_floating_point() or matrix.is_complex()) and not bool(torch.isfinite(matrix).all()):
                raise ValueError(f"{name}: the matrix has NaN or infinite entries; an operator must be finite")
            if dtype is not None and not matrix.is_complex():
                matrix = matrix.to(dtype)
            self.register_buffer("matrix", matrix.to(device) if device is not None else matrix)
            self._forward = self._adjoint = None

    def _register_owners(self, parts) -> None:
        """A torch module given as the operator (or owning the functions given) is a submodule, so that
        `.to()`, `.parameters()` and `state_dict` of the network include it."""
        owners = []
        for part in parts:
            owner = part if isinstance(part, nn.Module) else getattr(part, "__self__", None)
            if isinstance(owner, nn.Module) and all(owner is not o for o in owners):
                owners.append(owner)
        for i, owner in enumerate(owners):
            self.add_module("module" if i == 0 else f"module{i + 1}", owner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.matrix is not None:
            return self._apply_matrix(x, self.matrix.transpose(-2, -1), self.in_shape, self.out_shape)
        return self._forward(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        if self.matrix is not None:
            return self._apply_matrix(y, self.matrix.conj(), self.out_shape, self.in_shape)
        return self._adjoint(y)

    @staticmethod
    def _apply_matrix(x, matrix_t, in_shape, out_shape):
        """A matrix acts on the flattened trailing (logical) axes `in_shape` of x and gives values of
        shape `out_shape` (images too, in both directions); a real matrix is promoted for complex x."""
        if x.is_complex() and not matrix_t.is_complex():
            matrix_t = matrix_t.to(x.dtype)
        if in_shape is None or out_shape is None:
            return x @ matrix_t
        lead = x.shape[: x.dim() - len(in_shape)]
        out = x.reshape(lead + (-1,)) @ matrix_t
        return out.reshape(lead + tuple(out_shape))


def cat(values, batched, batch: int) -> torch.Tensor:
    """Concatenate along the first logical axis; unbatched pieces are broadcast over the batch."""
    if any(batched):
        values = [v if b else v.unsqueeze(0).expand((batch,) + tuple(v.shape)) for v, b in zip(values, batched)]
        return torch.cat(values, dim=1)
    return torch.cat(values, dim=0)


def default_dtype_device(*operators, dtype=None, device=None):
    """dtype/device of a module without data tensors: those asked for (the generated constructor's
    `dtype=`/`device=`), else those of the first matrix operator, else torch's defaults."""
    if dtype is not None or device is not None:
        found_dtype, found_device = default_dtype_device(*operators)
        if dtype is not None:
            dtype = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)
            if not dtype.is_floating_point:
                raise TypeError(f"dtype must be a floating point (or complex) torch dtype, got {dtype}")
        return (dtype or found_dtype), (torch.device(device) if device is not None else found_device)
    for op in operators:
        if torch.is_tensor(op) and (op.is_floating_point() or op.is_complex()):
            dtype = {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(op.dtype, op.dtype)
            return dtype, op.device
        if hasattr(op, "__array__") and not hasattr(op, "forward"):
            t = torch.as_tensor(op)
            if t.is_floating_point():
                return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")
