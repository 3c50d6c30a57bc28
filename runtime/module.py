"""Base class of every generated network: argument checking with clear errors,
per-layer traces, and a parameter report."""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from . import python_numbers
from .layer_views import layer_values
from .ops import complex_dtype
from .python_numbers import check_dim_relations, guard_constructor
from .randomness import NoiseMixin

_KINDS = {"real": "a real", "complex": "a complex", "int": "an integer"}


class UnrolledModule(NoiseMixin, nn.Module):
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
    python_constants: tuple = ()  # constants derived from data kept as Python numbers (state_dict extra state)
    dim_minimums: tuple = ()  # (dim, least size, the spec index that needs it), e.g. ('T', 16, '`ys[layer]` ...')
    # (size terms, size const, index terms, index const, the spec index): an axis indexed by a dim expression
    # (`ys[n]` with `ys : real[T, k]`) needs size > index, e.g. ((('T', 1),), 0, (('n', 1),), 0, '`ys[n]` ...')
    dim_relations: tuple = ()
    early_exit: bool = True  # `step until`: stop the layer loop once no sample is active (False: masked, no break)
    min_layers: int = 0  # 1 where layer 0 is emitted apart (specialised to the initial states): it always runs
    # (constant, buffer): a constant matrix forward only multiplies batches by is kept transposed (contiguous Mᵀ);
    # state_dict holds it under the constant's name in its own orientation, as before the buffer was transposed
    transposed_buffers: tuple = ()
    # the per-layer parameters forward reads one layer at a time with `self._per_layer(name)` (a memory mode's
    # forward slices the stacks per segment instead): where a trainer may install per-layer views
    layer_split: tuple = ()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, stored in type(self).transposed_buffers:
            if prefix + stored in destination:
                destination[prefix + name] = destination.pop(prefix + stored).transpose(-2, -1)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, stored in type(self).transposed_buffers:  # (load_state_dict hands a copy of the user's dict)
            if prefix + name in state_dict and prefix + stored not in state_dict:
                value = state_dict.pop(prefix + name)
                state_dict[prefix + stored] = value.transpose(-2, -1) if torch.is_tensor(value) else value
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def __setattr__(self, name, value):
        if name == "num_layers" and isinstance(value, int) and value < type(self).min_layers:
            raise ValueError(f"num_layers: {type(self).__name__} runs at least {type(self).min_layers} layer (its "
                             f"first layer is specialised to the initial states), got {value}")
        super().__setattr__(name, value)

    def _per_layer(self, name: str) -> tuple:
        """Per-layer parameter `name` (constraint applied) as one tensor per layer (runtime/layer_views.py)."""
        return layer_values(self, name)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        guard_constructor(cls)  # Python-number overflow at construction: a ValueError naming the statement

    # ------------------------------------------------------------ dtype conversion keeps complex values complex
    def to(self, *args, **kwargs):
        """`nn.Module.to`, except that a real floating dtype sends complex buffers and parameters to
        the matching complex dtype (`.to(torch.float32)`: complex128 -> complex64) instead of
        discarding their imaginary parts."""
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if dtype is None or dtype.is_complex or not dtype.is_floating_point:
            return super().to(*args, **kwargs)
        cdtype = complex_dtype(dtype)

        def convert(t):
            target = cdtype if t.is_complex() else dtype if t.is_floating_point() else None
            return t.to(device, target, non_blocking)

        return self._apply(convert)

    def double(self):
        return self.to(torch.float64)

    def half(self):
        """As `.to(torch.float16)`: complex buffers and parameters become complex32 (nn.Module.half would
        leave them complex128)."""
        return self.to(torch.float16)

    def float(self):
        return self.to(torch.float32)

    def _default_dtype_device(self):
        """dtype/device of a module without inputs: those of its first real tensor, else torch's defaults."""
        for t in list(self.parameters()) + list(self.buffers()):
            if t.is_floating_point():
                return t.dtype, t.device
            if t.is_complex():
                return t.real.dtype, t.device
        return torch.get_default_dtype(), torch.device("cpu")

    def __reduce_ex__(self, protocol):
        """Pickling (`torch.save(net)`, multiprocessing): a class compiled by `unroll.load` travels as its
        spec text and options, so that a fresh process or another compiler version rebuilds it
        (runtime/persist.py)."""
        from .persist import reduce_module

        return reduce_module(self, protocol)

    # ------------------------------------------------------------ public API
    def trace(self, *inputs, **named):
        """Run the network and return the states at every layer boundary:
        a list of `num_layers + 1` dicts (index 0: initial states, index L:
        after the last layer).  Unbatched inputs give unbatched states."""
        args = self._bind_inputs(inputs, named)
        record = _Trace()  # per call: concurrent calls (threads) never share what this one learns
        self._unrolled(*args, record=record)  # keeps the autograd graph: usable for deep supervision
        if record.batch_info and record.batch_info[0][2]:  # the inputs were one unbatched sample
            batched = dict(zip(self.state_names, getattr(self, "state_batched", (True,) * len(self.state_names))))
            return [{k: v.squeeze(0) if batched.get(k, True) else v for k, v in step.items()} for step in record]
        return list(record)

    def monitor(self, *inputs, on_layer, **named):
        """Run the network calling `on_layer(index, states)` at every layer boundary (index 0: the
        initial states, L: after the last layer) instead of keeping them, so that thousands of
        classical iterations can be followed (a metric per layer) without storing the iterates.
        Returns the network's outputs.  The states are batched even for an unbatched input."""
        args = self._bind_inputs(inputs, named)

        class _Calls:
            count = 0

            def append(self, states):
                on_layer(self.count, states)
                self.count += 1

        return self._unrolled(*args, record=_Calls())

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
        nets = sum(p.numel() for p in self.parameters() if p.requires_grad) - sum(
            p.numel() for name, p in self.named_parameters() if p.requires_grad and name.split(".")[0] in
            {row[0] for row in self.parameter_table})
        if nets:
            lines.append(f"sub-network weights: {nets}")
        lines.append(f"trainable parameters: {total + nets}")
        return "\n".join(lines)

    def extra_repr(self) -> str:
        """`repr(net)`: the spec, the depth, inputs and outputs, and every spec parameter with its shape,
        tying, trainability and constraint (sub-modules follow, as for any torch module)."""
        ins, outs = ", ".join(self.input_names) or "none", ", ".join(self.output_names)
        lines = [f"spec={self.spec_name!r}, layers={self.num_layers}, inputs=({ins}), outputs=({outs})"]
        dims = self.__dict__.get("dims")
        if dims:
            lines.append("dims: " + ", ".join(f"{k}={v}" for k, v in dims.items()))
        for name, shape, tying, trainable, constraint, default in self.parameter_table:
            value = getattr(self, name, None)
            try:
                value = value() if isinstance(value, nn.Module) else value
                size = f"{list(value.shape)} {str(value.dtype).replace('torch.', '')}"
            except Exception:  # noqa: BLE001 - a half-built module (an error in its constructor) still prints
                size = "[" + ", ".join(shape) + "]"
            lines.append(f"param {name}: {size}, {tying}, {trainable}" + (f", {constraint}" if constraint else "")
                         + f" (default {default})")
        return "\n".join(lines)

    # ------------------------------------------------------------ for generated code
    def _bind_inputs(self, inputs, named):
        names = self.input_names
        if len(inputs) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} input(s) {names}, got {len(inputs)}")
        values = dict(zip(names, inputs))
        noises = {k: named.pop(k) for k in list(named) if k in self.noise_names}  # optional, by name only
        for k, v in named.items():
            if k not in names:
                raise TypeError(f"{type(self).__name__}: unknown input `{k}`; inputs are {names}")
            if k in values:
                raise TypeError(f"{type(self).__name__}: input `{k}` given twice")
            values[k] = v
        missing = [n for n in names if n not in values]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing input(s) {tuple(missing)}")
        return [values[n] for n in names] + [noises.get(n) for n in self.noise_names]

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
        if (isinstance(value, (numbers.Number, list, tuple)) or hasattr(value, "__array__")) \
                and not torch.is_tensor(value):
            plain = not hasattr(value, "__array__")  # Python numbers and lists: double precision, as numpy
            try:
                value = torch.as_tensor(value)
            except Exception as err:  # noqa: BLE001 - report the conversion problem clearly
                raise TypeError(f"{name}: cannot convert {type(value).__name__} to a tensor ({err})") from None
            if plain and kind != "int":
                value = value.to(torch.complex128 if value.is_complex() else torch.float64)
        if not torch.is_tensor(value):
            raise TypeError(f"{name}: expected a tensor or array, got {type(value).__name__}")
        if kind == "int":
            return self._index_arg(name, value, dims, dim_names, device)
        if not (value.is_floating_point() or value.is_complex()):
            # integers, booleans, Python numbers and lists carry no precision: float64 as in numpy (the module's
            # dtype, when this is the first data), never torch's float32 default
            value = value.to(torch.float64 if dtype is None else dtype)
        if kind == "real" and value.is_complex():
            raise TypeError(f"{name}: expected {_KINDS[kind]} tensor, got dtype {value.dtype}")
        if value.numel() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(f"{name}: {bad} of {value.numel()} entries are NaN or infinite; the data must be "
                             "finite (replace or drop the missing values before building the network)")
        if kind == "complex" and not value.is_complex():
            value = value.to(_complex_of(value.dtype))
        self._check_shape(name, value, dims, dim_names, batched=False)
        if dtype is not None:
            value = value.to(dtype if not value.is_complex() else _complex_of(dtype))
        if device is not None:
            value = value.to(device)
        return value

    def _index_arg(self, name, value, dims: dict, dim_names: tuple, device=None):
        """Integer (index) data: integer dtype required (no silent rounding of reals), kept as int64."""
        if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
            raise ValueError(f"{name}: expected an integer (index) array, got dtype {value.dtype}; this spec declares "
                             f"`{name}` as `int[...]` (convert it with `.long()` if its values are whole numbers)")
        value = value.to(torch.long)
        self._check_shape(name, value, dims, dim_names, batched=False)
        return value if device is None else value.to(device)

    def _size_arg(self, name, value) -> int:
        """An `int` hyperparameter that is a size in the spec's types: a positive integer."""
        size = self._hyper_arg(name, value, "int")
        if size < 1:
            raise ValueError(f"{name}: a size must be a positive integer, got {size}")
        return size

    def _hyper_arg(self, name, value, kind: str, most: int | None = None):
        if torch.is_tensor(value) and value.numel() == 1:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
        if not math.isfinite(value):
            raise ValueError(f"{name}: expected a finite number, got {value}")
        if kind == "int":
            if float(value) != int(value):
                raise TypeError(f"{name}: expected an integer, got {value}")
            if abs(int(value)) > 2**63 - 1:  # a size, count or index: torch's integers are 64-bit
                raise ValueError(f"{name}: expected a 64-bit integer (at most 2^63 - 1 in magnitude), got {value:.3g}")
            if most is not None and int(value) > most:  # a `repeat` count
                raise ValueError(f"{name}: a `repeat` count is at most {most:,}, got {value:.3g}")
            return int(value)
        return float(value)

    def _input_arg(self, name, value, dims: dict, dim_names: tuple, kind: str, batch_info: list):
        """Validate a forward input: convert, check dtype and shape, add a batch axis if unbatched."""
        ref = self._reference_tensor()
        want = None if ref is None else _real_of(ref.dtype)
        if not torch.is_tensor(value):
            if value is None or not (hasattr(value, "__array__") or isinstance(value, (list, tuple, numbers.Number))):
                raise TypeError(f"{name}: expected a tensor of shape {_shape_text(dim_names, dims, True)}, "
                                f"got {type(value).__name__}")
            plain = not hasattr(value, "__array__")  # Python numbers and lists carry no dtype of their own
            try:
                value = torch.as_tensor(value)
            except Exception as err:  # noqa: BLE001 - report the conversion problem clearly
                raise TypeError(f"{name}: cannot convert {type(value).__name__} to a tensor ({err})") from None
            if plain and want is not None and not value.is_complex() and kind != "int":
                value = value.to(want)
        if kind == "int":  # an integer (index) input: integer dtype required, kept as int64
            if value.is_floating_point() or value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"{name}: expected an integer (index) tensor, got {value.dtype}; this spec declares "
                                f"`{name}` as `int[...]` (convert it with `{name}.long()`)")
            value, want = value.to(torch.long), None
        elif kind == "real" and value.is_complex():
            raise TypeError(f"{name}: expected a real tensor, got {value.dtype}; this spec declares `{name}` real "
                            f"(take `{name}.real` or `{name}.abs()`, or declare it `complex[...]` in the spec)")
        if not (value.is_floating_point() or value.is_complex()) and kind != "int":
            target = want or torch.get_default_dtype()
            raise TypeError(f"{name}: expected a floating-point tensor, got {value.dtype}; convert it with "
                            f"`{name}.to({target})`")
        if want is not None and _real_of(value.dtype) != want:
            target = _complex_of(want) if value.is_complex() else want  # never a hint that drops imaginary parts
            raise TypeError(f"{name}: dtype {value.dtype} does not match the module's {want}; "
                            f"convert the input (`{name}.to({target})`) or the module (`.to({_real_of(value.dtype)})`)")
        if ref is not None and value.device != ref.device:
            raise ValueError(f"{name}: tensor on {value.device}, but the module is on {ref.device}; move the input "
                             f"(`{name}.to('{ref.device}')`) or the module (`.to('{value.device}')`)")
        if kind == "complex" and not value.is_complex():
            value = value.to(_complex_of(value.dtype))
        rank = len(dim_names)
        if value.dim() == rank:
            unbatched = True
            value = value.unsqueeze(0)
        elif value.dim() == rank + 1:
            unbatched = False
        else:
            raise ValueError(f"{name}: expected shape {_shape_text(dim_names, dims, True)} (a batch) or "
                             f"{_shape_text(dim_names, dims, False)} (one sample), got {list(value.shape)}")
        self._check_shape(name, value, dims, dim_names, batched=True, unbatched=unbatched)
        if value.shape[0] == 0:
            raise ValueError(f"{name}: a batch of 0 samples (shape {list(value.shape)}); give at least one sample")
        if batch_info:
            first_name, first_batch, first_unbatched = batch_info[0]
            if unbatched != first_unbatched:
                if unbatched:
                    what = f"got one sample (shape {list(value.shape[1:])}), but `{first_name}` is a batch of {first_batch}"
                else:
                    what = f"got a batch of {value.shape[0]}, but `{first_name}` is one sample (no batch axis)"
                raise ValueError(f"{name}: {what}; give every input a leading batch axis, or none")
            if value.shape[0] != first_batch:
                raise ValueError(f"{name}: batch size {value.shape[0]} does not match the batch size {first_batch} "
                                 f"of `{first_name}`; the inputs of one call share the leading batch axis")
        else:
            batch_info.append((name, value.shape[0], unbatched))
        if torch.jit.is_tracing():
            value = _traced_shape_guard(value)
        return value

    def _check_shape(self, name, value, dims: dict, dim_names: tuple, batched: bool, unbatched: bool = False):
        """Check `value` against the spec's shape `dim_names`, binding the dims not yet known."""
        shape = tuple(value.shape[1:] if batched else value.shape)
        given = list(shape) if unbatched or not batched else list(value.shape)
        if len(shape) != len(dim_names):
            axes = len(dim_names)
            raise ValueError(f"{name}: expected shape {_shape_text(dim_names, dims, batched)} "
                             f"({axes + batched} ax{'is' if axes + batched == 1 else 'es'}), got {given}")
        offset = 1 if batched and not unbatched else 0
        for axis, (dim, size) in enumerate(zip(dim_names, shape)):
            if size == 0:
                raise ValueError(f"{name}: axis {axis + offset} (`{dim}`) has size 0 (shape {given}); "
                                 f"the spec's axes need at least one entry")
            for needed, least, why in type(self).dim_minimums:
                if needed == dim and size < least:
                    raise ValueError(f"{name}: axis {axis + offset} is `{dim}` = {size}, but the spec needs "
                                     f"`{dim}` >= {least} for {why}; got shape {given}")
            if isinstance(dim, int):
                if size != dim:
                    raise ValueError(f"{name}: expected shape {_shape_text(dim_names, dims, batched and not unbatched)}"
                                     f", got {given}: axis {axis + offset} must have size {dim}, not {size}")
            elif dim in dims:
                if dims[dim] != size:
                    raise ValueError(f"{name}: expected shape {_shape_text(dim_names, dims, batched and not unbatched)}"
                                     f", got {given}: axis {axis + offset} is `{dim}` = {dims[dim]} (set by "
                                     f"{self.__dict__.get('_dim_origins', {}).get(dim, 'an earlier argument')}), "
                                     f"not {size}")
            elif dim is not None:
                dims[dim] = size
                # per instance: which argument bound each dim (named in later shape errors)
                self.__dict__.setdefault("_dim_origins", {}).setdefault(dim, f"`{name}`")
        check_dim_relations(type(self).dim_relations, dims, name, dim_names, given)

    def _outputs(self, values: tuple, unbatched: bool, batched: tuple | None = None):
        if not all(torch.is_tensor(v) for v in values):  # a constant kept as a Python number: a 0-d tensor
            dtype, device = self._default_dtype_device()
            values = tuple(v if torch.is_tensor(v) else torch.tensor(v, dtype=dtype, device=device) for v in values)
        if unbatched:
            flags = batched if batched is not None else (True,) * len(values)
            values = tuple(v.squeeze(0) if b else v for v, b in zip(values, flags))
        return values[0] if len(values) == 1 else values

    def _python_constants(self) -> torch.Tensor:
        """Constants computed from the data and kept as Python numbers (the generated class lists them in
        `python_constants`): saved in state_dict as its extra state, so that a state_dict still defines
        the network.  A float64 tensor of the values in the sorted order of their names (a tensor, not a
        dict: torch.jit.trace and the TorchScript-based ONNX exporter take every state_dict entry for a
        tensor)."""
        names = sorted(type(self).python_constants)
        return torch.tensor([float(getattr(self, name)) for name in names], dtype=torch.float64)

    def _load_python_constants(self, state) -> None:
        names = sorted(type(self).python_constants)
        if torch.is_tensor(state) and state.dim() == 1 and len(state) == len(names):
            state = dict(zip(names, state.tolist()))
        elif not isinstance(state, dict):  # a dict: the format of checkpoints saved before the tensor
            raise ValueError(f"{type(self).__name__}: the state_dict's extra state is {type(state).__name__} "
                             f"{list(getattr(state, 'shape', ()))}, expected {len(names)} constants {names!r}")
        if set(state) != set(names):
            raise ValueError(f"{type(self).__name__}: the state_dict's extra state holds {sorted(state)!r}, "
                             f"expected the constants {names!r}")
        for name in names:
            setattr(self, name, float(state[name]))

    def _require(self, condition, names: tuple, message: str, where: str):
        """A spec's `require` line: every entry of `condition` must hold, else a ValueError naming the data."""
        holds = bool(condition.all()) if isinstance(condition, torch.Tensor) else bool(condition)
        if not holds:
            subject = ", ".join(f"`{n}`" for n in names) or "the arguments"
            raise ValueError(f"{type(self).__name__}: {subject}: {message} (spec {where})")

    def _expect_dim(self, name: str, axis: int, size: int, expected: int, text: str):
        """Check an axis whose size is a composite dim such as `n + 1` (bound by other axes)."""
        if size != expected:
            raise ValueError(f"{name}: axis {axis} must have size {text} = {expected}, got {size}")

    def _composite_axis(self, name: str, axis: int, size: int, terms: tuple, const: int, text: str):
        """A composite data axis (`c : real[2*n]`) whose dims may be bound only by inputs: checked now when they
        are bound (by data, or given to the constructor), else at each forward call (`_check_composite_axes`)."""
        expected = python_numbers.dim_size(terms, const, self.dims)
        if expected is None:
            self.__dict__.setdefault("_pending_axes", []).append((name, axis, size, terms, const, text))
        else:
            self._expect_dim(name, axis, size, expected, text)

    def _check_composite_axes(self, dims: dict):
        """The composite data axes left by the constructor, against the dims this call's inputs bound."""
        for name, axis, size, terms, const, text in self.__dict__.get("_pending_axes", ()):
            expected = python_numbers.dim_size(terms, const, dims)
            if expected is not None:
                self._expect_dim(name, axis, size, expected, text)

    @staticmethod
    def _batch_info(record) -> list:
        """The list `_input_arg` fills with (name, batch size, unbatched) for one call; `trace` keeps it on
        its record (no flag on the module: concurrent calls from several threads stay independent)."""
        return record.batch_info if isinstance(record, _Trace) else []


class _Trace(list):
    """The states `trace` records, one dict per layer boundary, and the call's batch information."""

    def __init__(self):
        super().__init__()
        self.batch_info: list = []


def _traced_shape_guard(value: torch.Tensor) -> torch.Tensor:
    """Under torch.jit.trace the checks above run once, at trace time, and the trace records one path (the
    batched one, or the unbatched one): a reshape to the traced sample shape keeps the batch axis dynamic but
    makes a call with the other number of axes fail in the traced module instead of returning a wrong shape.
    torch.export keeps real guards; docs/deployment.md says which path to use."""
    return value.reshape(value.size(0), *value.shape[1:]) if value.dim() > 1 else value.reshape(value.size(0))


def _shape_text(dim_names: tuple, dims: dict, batched: bool) -> str:
    """`[batch, n, m] = [batch, 4, 6]`: the spec's shape and, where the dims are known, its sizes."""
    names = (["batch"] if batched else []) + [str(d) for d in dim_names]
    text = "[" + ", ".join(names) + "]"
    sizes = (["batch"] if batched else []) + [str(dims.get(d, d)) if not isinstance(d, int) else str(d)
                                              for d in dim_names]
    if any(isinstance(d, str) and d in dims for d in dim_names):
        text += " = [" + ", ".join(sizes) + "]"
    return text


def _real_of(dtype):
    return {torch.complex64: torch.float32, torch.complex128: torch.float64}.get(dtype, dtype)


def _complex_of(dtype):
    if dtype.is_complex:
        return dtype
    return {torch.float32: torch.complex64, torch.float64: torch.complex128, torch.float16: torch.complex32}.get(
        dtype, torch.complex64)
