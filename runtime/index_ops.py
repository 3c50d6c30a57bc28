"""Kernels of the integer-index operators: gather (`take`), its adjoint scatter-add (`segment_sum`) and
the out-of-place indexed write (`X[i] = v`).  Every function takes whether each operand carries the
batch axis (the generated code knows it), so one kernel serves batched and unbatched operands."""

from __future__ import annotations

import torch

__all__ = ["check_index_data", "segment_sum", "set_index", "take"]


def take(values: torch.Tensor, index: torch.Tensor, values_batched: bool, index_batched: bool) -> torch.Tensor:
    """values[index] along the first logical axis: shape index.shape + values.shape[1:] (per sample)."""
    if not isinstance(index, torch.Tensor):
        index = torch.as_tensor(index, device=values.device)
    if not values_batched:
        return values[index]  # a batched index gives a batched result by itself
    if not index_batched:
        return values[:, index]
    batch = values.shape[0]
    rows = torch.arange(batch, device=values.device).reshape((batch,) + (1,) * (index.dim() - 1))
    return values[rows, index]


def segment_sum(values: torch.Tensor, index: torch.Tensor, size: int, values_batched: bool,
                index_batched: bool) -> torch.Tensor:
    """out[i, ...] = sum of values[e, ...] over the e with index[e] == i (per sample), out of shape
    [size, *values.shape[index.ndim:]]: the adjoint of `take(., index)`."""
    if not isinstance(index, torch.Tensor):
        index = torch.as_tensor(index, device=values.device)
    rank = index.dim() - (1 if index_batched else 0)
    if not values_batched and not index_batched:
        flat_index = index.reshape(-1)
        rest = values.shape[rank:]
        out = values.new_zeros((size,) + tuple(rest))
        return out.index_add(0, flat_index, values.reshape((-1,) + tuple(rest)))
    if not values_batched:
        values = values.unsqueeze(0).expand((index.shape[0],) + tuple(values.shape))
    batch = values.shape[0]
    rest = tuple(values.shape[1 + rank:])
    flat = values.reshape((batch, -1) + rest)
    if index_batched:
        flat_index = index.reshape(batch, -1)
    else:
        flat_index = index.reshape(1, -1).expand(batch, -1)
    scatter_index = flat_index.reshape(flat_index.shape + (1,) * len(rest)).expand(flat.shape)
    out = flat.new_zeros((batch, size) + rest)
    return out.scatter_add(1, scatter_index, flat)


def set_index(target: torch.Tensor, index: int, value, target_batched: bool, value_batched: bool) -> torch.Tensor:
    """A copy of `target` with entry `index` of its first logical axis replaced by `value` (broadcast to
    the entry's shape); out of place, so that autograd sees an ordinary differentiable operation."""
    if value_batched and not target_batched:
        target = target.unsqueeze(0).expand((value.shape[0],) + tuple(target.shape))
        target_batched = True
    axis = 1 if target_batched else 0
    entry = tuple(target.shape[:axis]) + tuple(target.shape[axis + 1:])
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=target.dtype, device=target.device)
    elif value_batched:
        missing = len(entry) - value.dim()
        value = value.reshape((value.shape[0],) + (1,) * missing + tuple(value.shape[1:]))
    value = value.to(target.dtype).expand(entry)
    return torch.select_scatter(target, value, axis, index)


def check_index_data(name: str, value: torch.Tensor, size: int, what: str) -> None:
    """An index array given as data must index an axis of `size` entries: 0 <= value < size."""
    if value.numel() and (int(value.min()) < 0 or int(value.max()) >= size):
        bad = value[(value < 0) | (value >= size)].reshape(-1)[0]
        raise ValueError(f"{name}: index {int(bad)} is out of range: {name} indexes {what} of size {size}, "
                         f"so its entries must be in 0..{size - 1}")
