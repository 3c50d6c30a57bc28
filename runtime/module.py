"""Base class of every generated network: argument checking with clear errors,
per-layer traces, and a parameter report."""

from __future__ import annotations

import numbers

import torch
from torch import nn

_KINDS = {"real": "a real", "complex": "a complex"}


class UnrolledModule(nn.Module):
    """Shared behaviour of generated modules.

    Subclasses (generated) define the class attributes below, `__init__`, and
    `_unrolled(*inputs, record)`, which runs the layers and appends one dict of
    states per layer boundary to `record` when it is a list.
    """

    spec_name: str = ""
    num_layers: int = 0
    input_names: tuple = ()
    state_names: tuple = ()
    output_names: tuple = ()
    parameter_table: tuple = ()  # (name, shape, tying, trainable, constraint, default)

    # ------------------------------------------------------------ public API
    def trace(self, *inputs, **named):
        """Run the network and return the states at every layer boundary:
        a list of `num_layers + 1` dicts (index 0: initial states, index L:
        after the last layer).  Unbatched inputs give unbatched states."""
        args = self._bind_inputs(inputs, named)
        record: list = []
        self._unrolled(*args, record=record)  # keeps the autograd graph: usable for deep supervision
        if self._last_unbatched:
            record = [{k: _unbatch(v) for k, v in step.items()} for step in record]
        return record

    def parameter_values(self) -> dict:
        """Current value of every spec parameter, constraints applied (per-layer: [layers, ...])."""
        out = {}
        for row in self.parameter_table:
            name = row[0]
            obj = getattr(self, name)
            out[name] = obj() if isinstance(obj, nn.Module) else obj
        return out

    def report(self) -> str:
        """A table of the spec parameters: shape, tying, trainability, constraint, size."""
        rows = [("name", "shape", "tying", "trainable", "constraint", "numel")]
        total = 0
        for name, _shape, tying, trainable, constraint, _default in self.parameter_table:
            value = self.parameter_values()[name]
            n = value.numel()
            total += n if trainable == "learned" else 0
            rows.append((name, str(list(value.shape)), tying, trainable, constraint or "-", str(n)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines.append(f"trainable parameters: {total}")
        return "\n".join(lines)

    # ------------------------------------------------------------ for generated code
    def _bind_inputs(self, inputs, named):
        names = self.input_names
        if len(inputs) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} input(s) {names}, got {len(inputs)}")
        values = dict(zip(names, inputs))
        for k, v in named.items():
            if k not in names:
                raise TypeError(f"{type(self).__name__}: unknown input `{k}`; inputs are {names}")
            if k in values:
                raise TypeError(f"{type(self).__name__}: input `{k}` given twice")
            values[k] = v
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing input(s) {tuple(missing)}")
        return [values[n] for n in names]

    def _reference_tensor(self):
        for t in self.buffers():
            if t.is_floating_point() or t.is_complex():
                return t
        for t in self.parameters():
            return t
        return None

    def _data_arg(self, name, value, dims: dict, dim_names: tuple, kind: str, dtype=None, device=None):
        """Validate a constructor tensor and bind the dims it carries."""
        if value is None:
            raise TypeError(f"{type(self).__name__}: missing data `{name}` of shape [{', '.join(map(str, dim_names))}]")
        if isinstance(value, (numbers.Number, list, tuple)) or hasattr(value, "__array__"):
            if not torch.is_tensor(value):
                try:
                    value = torch.as_tensor(value)
                except Exception as err:  # noqa: BLE001 - report the conversion problem clearly
                    raise TypeError(f"{name}: cannot convert {type(value).__name__} to a tensor ({err})") from None
        if not torch.is_tensor(value):
            raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}")
        if not (value.is_floating_point() or value.is_complex()):
            value = value.to(torch.get_default_dtype() if dtype is None else dtype)
        if kind == "real" and value.is_complex():
            raise TypeError(f"{name}: expected {_KINDS[kind]} tensor, got dtype {value.dtype}")
        if kind == "complex" and not value.is_complex():
            value = value.to(_complex_of(value.dtype))
        self._check_shape(name, value, dims, dim_names, batched=False)
        if dtype is not None:
            value = value.to(dtype if not value.is_complex() else _complex_of(dtype))
        if device is not None:
            value = value.to(device)
        return value

    def _hyper_arg(self, name, value, kind: str):
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
        if kind == "int":
            if float(value) != int(value):
                raise TypeError(f"{name}: expected an integer, got {value}")
            return int(value)
        return float(value)

    def _input_arg(self, name, value, dims: dict, dim_names: tuple, kind: str, batch_info: list):
        """Validate a forward input: convert, check dtype and shape, add a batch axis if unbatched."""
        if not torch.is_tensor(value):
            if hasattr(value, "__array__") or isinstance(value, (list, tuple)):
                value = torch.as_tensor(value)
            else:
                raise TypeError(f"{name}: expected a tensor, got {type(value).__name__}")
        ref = self._reference_tensor()
        if kind == "real" and value.is_complex():
            raise TypeError(f"{name}: expected a real tensor, got {value.dtype}")
        if not (value.is_floating_point() or value.is_complex()):
            raise TypeError(f"{name}: expected a floating-point tensor, got {value.dtype}")
        if ref is not None:
            want = _real_of(ref.dtype)
            if _real_of(value.dtype) != want:
                raise TypeError(f"{name}: dtype {value.dtype} does not match the module's {want}; "
                                f"convert the input (`{name}.to({want})`) or the module (`.to({_real_of(value.dtype)})`)")
        if kind == "complex" and not value.is_complex():
            value = value.to(_complex_of(value.dtype))
        rank = len(dim_names)
        if value.dim() == rank:
            unbatched = True
            value = value.unsqueeze(0)
        elif value.dim() == rank + 1:
            unbatched = False
        else:
            raise ValueError(f"{name}: expected shape [batch, {', '.join(map(str, dim_names))}] or "
                             f"[{', '.join(map(str, dim_names))}], got {list(value.shape)}")
        self._check_shape(name, value, dims, dim_names, batched=True)
        if batch_info:
            first_name, first_batch, first_unbatched = batch_info[0]
            if unbatched != first_unbatched or value.shape[0] != first_batch:
                raise ValueError(f"{name}: batch of {value.shape[0]} ({'unbatched' if unbatched else 'batched'}) "
                                 f"does not match `{first_name}` ({first_batch})")
        else:
            batch_info.append((name, value.shape[0], unbatched))
        self._last_unbatched = unbatched
        return value

    def _check_shape(self, name, value, dims: dict, dim_names: tuple, batched: bool):
        shape = tuple(value.shape[1:] if batched else value.shape)
        pretty = "[" + ", ".join(map(str, dim_names)) + "]"
        if len(shape) != len(dim_names):
            raise ValueError(f"{name}: expected shape {('[batch] + ' if batched else '') + pretty}, "
                             f"got {list(value.shape)}")
        for axis, (dim, size) in enumerate(zip(dim_names, shape)):
            if isinstance(dim, int):
                if size != dim:
                    raise ValueError(f"{name}: axis {axis} must have size {dim}, got {size} (shape {list(value.shape)})")
            elif dim in dims:
                if dims[dim] != size:
                    raise ValueError(f"{name}: axis {axis} is `{dim}` = {dims[dim]} (bound by "
                                     f"{self._dim_origin.get(dim, 'an earlier argument')}), got {size}; expected shape "
                                     f"{pretty} = {[dims.get(d, d) if not isinstance(d, int) else d for d in dim_names]}")
            elif dim is not None:
                dims[dim] = size
                if not hasattr(self, "_dim_origin"):
                    object.__setattr__(self, "_dim_origin", {})
                self._dim_origin.setdefault(dim, f"`{name}`")

    def _outputs(self, values: tuple, unbatched: bool):
        if unbatched:
            values = tuple(_unbatch(v) for v in values)
        return values[0] if len(values) == 1 else values

    _last_unbatched = False
    _dim_origin: dict = {}


def _unbatch(v):
    return v.squeeze(0) if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == 1 else v


def _real_of(dtype):
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _complex_of(dtype):
    if dtype.is_complex:
        return dtype
    return {torch.float32: torch.complex64, torch.float64: torch.complex128, torch.float16: torch.complex32}.get(
        dtype, torch.complex64)
