"""Printing the generated module's constructor from a `Plan`: argument checks, dims, hyperparameters,
data buffers, sub-networks, constants (buffers, Python numbers, conditional forms), `require` checks,
parameters with their constraints, and the layer tables.  Mixed into `emitter.ModulePrinter`."""

from __future__ import annotations

from . import emit_diff, ir
from .ast import DimExpr
from .check.literals import MAX_COUNT
from .emit_head import Lines, comment, referenced_names
from .emit_index import check_lines
from .plan_uses import constant_needed
from .types import COMPLEX, INT


def count_hypers(block: list) -> set[str]:
    """The `int` hyperparameters that are `repeat` counts in `block` (nested blocks included)."""
    names = set()
    for st in block:
        if isinstance(st, ir.Repeat):
            if st.count.op == "var" and st.count.attrs.get("kind") == "hyper":
                names.add(st.count.attrs["name"])
            names |= count_hypers(st.body)
    return names


def pending_data_axes(p: ir.Program) -> dict:
    """Composite data axes (`c : real[2*n]`) with a dim that no data binds (an input, or the constructor, binds
    it): {(data name, axis): dim}, checked by the constructor when it knows the dims, else in forward."""
    bound = set(p.data_dims) | set(p.size_hypers)
    return {(d.name, axis): dim for d in p.data if d.type.dtype != "operator" for axis, dim in enumerate(d.type.shape)
            if ConstructorPrinter._dim_key(dim) is None and not dim.names() <= bound}


class ConstructorPrinter:
    def _extra_state(self) -> Lines:
        """Constants computed from data and kept as Python numbers travel in state_dict as extra state."""
        out = Lines()
        names = tuple(c.name for c in self.plan.constants
                      if c.python and not c.value.py and c.read_by_forward and constant_needed(self.plan, c))
        transposed = tuple((c.name, self.plan.transposed[c.name]) for c in self.plan.constants
                           if c.name in self.plan.transposed and c.read_by_forward)
        if transposed:  # state_dict keeps each under its own name and orientation (UnrolledModule)
            out.add(f"transposed_buffers = {transposed!r}  # (constant, the buffer holding its transpose)", 1)
            if not names:
                out.add()
        if names:
            out.add(f"python_constants = {names!r}  # constants of the data kept as Python numbers", 1)
            out.add()
            out.add("def get_extra_state(self):", 1)
            out.add("return self._python_constants()", 2)
            out.add()
            out.add("def set_extra_state(self, state):", 1)
            out.add("self._load_python_constants(state)", 2)
            out.add()
        return out

    def _ctor_args(self) -> list[str]:
        args = [d.name for d in self.p.data]
        args += [f"{h.name}={h.default!r}" for h in self.p.hypers]
        args += [f"{d}=None" for d in self._free_dims()]
        if not self._real_data():
            args += ["dtype=None", "device=None"]  # no data tensor to take them from
        return args + emit_diff.ctor_args(self.p)

    def _real_data(self) -> list[ir.Data]:
        """Data tensors that fix the module's dtype and device (integer index data do not)."""
        return [d for d in self._data_tensors() if d.type.dtype != INT]

    def _data_tensors(self) -> list[ir.Data]:
        return [d for d in self.p.data if d.type.dtype not in ("operator", "function")]

    def _free_dims(self) -> list[str]:
        """Dims bound by no data: optional constructor arguments, else bound by inputs."""
        return [d for d in self.p.dims if d not in self.p.data_dims and d not in self.p.net_dims]

    def _construction_dims(self) -> dict[str, str]:
        """Dims not bound by data that the constructor needs (parameter shapes), with who needs them."""
        out: dict[str, str] = {}
        for d in self.p.data:
            if d.type.dtype == "operator":
                for dim in tuple(d.type.shape) + tuple(d.type.out_shape or ()):
                    for name in dim.names():
                        out.setdefault(name, f"operator `{d.name}`")
            if d.type.dtype == "function":  # function data checks its arguments' and result's shapes
                for t in tuple(d.type.signature[0]) + (d.type.signature[1],):
                    for dim in t.shape:
                        for name in dim.names():
                            out.setdefault(name, f"function `{d.name}`")
        for x in self.p.params:
            for d in x.type.shape:
                for name in d.names():
                    out.setdefault(name, f"parameter `{x.name}`")
        for net in self.p.nets:
            for size in (net.in_size, net.out_size):
                for name in size.names():
                    out.setdefault(name, f"sub-network `{net.name}`")
        for n in self.p.noises:
            for d in n.type.shape:
                for name in d.names():
                    if name not in self.p.input_dims:
                        out.setdefault(name, f"noise `{n.name}`")
        return out

    @staticmethod
    def _dim_key(d):
        if d.is_int:
            return d.const
        if len(d.terms) == 1 and d.terms[0][1] == 1 and "*" not in d.terms[0][0] and not d.const:
            return d.terms[0][0]
        return None

    @staticmethod
    def _dim_value(dim) -> str:
        return " + ".join(f"{c} * " + " * ".join(f"dims[{n!r}]" for n in t.split("*")) for t, c in dim.terms) + (
            f" + {dim.const}" if dim.const else "")

    def _init(self) -> Lines:
        p, plan = self.p, self.plan
        pre, out = Lines(), Lines()
        pre.add(f"def __init__(self, {', '.join(self._ctor_args())}):", 1)
        pre.add("super().__init__()", 2)
        pre.add("dims = {}", 2)
        for name in p.size_hypers:  # `int` hyperparameters used as sizes: data and inputs are checked against them
            pre.add(f"dims[{name!r}] = self._size_arg({name!r}, {name})", 2)
        tensors = self._data_tensors()
        real_data = self._real_data()
        first = real_data[0].name if real_data else None
        for d in p.data:
            if d.type.dtype == "operator":
                pre.add(f"if {d.name} is None:", 2)
                pre.add(f"raise TypeError({self.class_name + ': missing operator ' + repr(d.name)!r})", 3)
                continue
            if d.type.dtype == "function":
                pre.add(f"if {d.name} is None:", 2)
                pre.add(f"raise TypeError({self.class_name + ': missing function ' + repr(d.name)!r})", 3)
                continue
            dims = tuple(self._dim_key(x) for x in d.type.shape)
            kind = "complex" if d.type.dtype == COMPLEX else "int" if d.type.dtype == INT else "real"
            # later data take the first data's real dtype (complex data its complex counterpart) and device
            extra = "" if d.name == first or kind == "int" else \
                f", dtype=rt.real_dtype({first}.dtype), device={first}.device"
            pre.add(f"{d.name} = self._data_arg({d.name!r}, {d.name}, dims, {dims!r}, {kind!r}{extra})", 2)
        for d in tensors:
            if d.type.dtype == INT and first is not None:  # index data live on the module's device
                pre.add(f"{d.name} = {d.name}.to({first}.device)", 2)
        for line in check_lines(p, at_construction=True):  # integer index data are in range
            pre.add(line, 2)
        later = pending_data_axes(p)
        for d in tensors:
            for axis, dim in enumerate(d.type.shape):
                if self._dim_key(dim) is None and (d.name, axis) not in later:
                    pre.add(f"self._expect_dim({d.name!r}, {axis}, {d.name}.shape[{axis}], {self._dim_value(dim)}, "
                            f"{str(dim)!r})", 2)
        needed = self._construction_dims()
        for dname in self._free_dims():
            pre.add(f"if {dname} is not None:", 2)
            pre.add(f"dims[{dname!r}] = int({dname})", 3)
            if dname in needed:
                pre.add("else:", 2)
                message = (f"{self.class_name}: pass {dname}=... (the size {dname!r} is needed at construction by "
                           f"{needed[dname]})")
                pre.add(f"raise TypeError({message!r})", 3)
        pre.add("self.dims = dims", 2)
        for (name, axis), dim in later.items():  # checked here if the constructor was given the dims, else in forward
            pre.add(f"self._composite_axis({name!r}, {axis}, {name}.shape[{axis}], {tuple(dim.terms)!r}, {dim.const}, "
                    f"{str(dim)!r})", 2)
        emit_diff.init_lines(p, pre)
        # everything after the argument checks; the dtype/device/dims lines it reads are bound before it
        counts = count_hypers(p.step + p.final)
        for h in p.hypers:
            bound = f", most={MAX_COUNT}" if h.name in counts else ""  # a `repeat` count: bounded like a literal one
            out.add(f"self.{h.name} = {h.name} = self._hyper_arg({h.name!r}, {h.name}, {h.dtype!r}{bound})", 2)
        for d in p.data:
            if d.type.dtype == "operator":
                ins = "(" + "".join(f"{x.python()}, " for x in d.type.shape).rstrip(" ") + ")"
                outs = "(" + "".join(f"{x.python()}, " for x in d.type.out_shape).rstrip(" ") + ")"
                out.add(f"self.{d.name} = rt.LinearOperator({d.name!r}, {d.name}, dtype, device, "
                        f"in_shape={ins}, out_shape={outs})", 2)
            elif d.type.dtype == "function":  # runtime/function_data.py
                arg_types, result, differentiable = d.type.signature
                shapes = "(" + "".join(_shape_code(t.shape) + ", " for t in arg_types).rstrip(" ") + ")"
                out.add(f"self.{d.name} = rt.FunctionData({d.name!r}, {d.name}, {shapes}, {_shape_code(result.shape)}, "
                        f"differentiable={differentiable!r}, complex_out={result.dtype == COMPLEX!r})", 2)
            elif plan.uses[d.name]:
                out.add(f"self.register_buffer({d.name!r}, {d.name})", 2)
        for net in p.nets:
            opts = "".join(f", {k}={v.python() if isinstance(v, DimExpr) else repr(v)}"
                           for k, v in net.options.items())
            out.add(f"# line {net.line}: {comment(p.line(net.line))}", 2)
            if net.functional:  # weights as a value; its weight counts bind dims (runtime/nets_functional.py)
                out.add(f"self.{net.name} = rt.make_functional_net({net.kind!r}, seed, dtype, device{opts})", 2)
                for group, dim in enumerate(net.functional):
                    count = "size" if len(net.functional) == 1 else f"layer_sizes[{group}]"
                    out.add(f"{dim} = dims[{dim!r}] = self.{net.name}.{count}", 2)
                continue
            out.add(f"self.{net.name} = rt.make_net({net.kind!r}, {net.per_layer!r}, self.num_layers, "
                    f"{net.learned!r}, dtype, device{opts})", 2)
        lets = [c for c in plan.constants if c.kind == "let"]
        others = [c for c in plan.constants if c.kind != "let"]
        for c in lets:
            self._constant(out, c, f"# {c.comment}")
        for req in p.requires:
            out.add(f"# line {req.line}: {comment(p.line(req.line))}", 2)
            out.add(f"self._require({self.init.code(req.condition)}, {tuple(req.names)!r}, {comment(req.message)!r}, "
                    f"{'line ' + str(req.line) + ': ' + comment(p.line(req.line))!r})", 2)
        for x in p.params:
            self._param(out, x)
        for flag, (p_, q_, r_) in plan.choices.items():
            out.add(f"# (I - P N) x + P c is one {p_}x{p_} product per sample, P (N x - c) two thin ones: the "
                    "cheaper form", 2)
            local = f" = {flag}" if any(c.condition and c.condition[0] == flag and constant_needed(plan, c)
                                        for c in plan.constants) else ""
            out.add(f"self.{flag}{local} = {p_.python()} * {r_.python()} <= {q_.python()} * "
                    f"({p_.python()} + {r_.python()})", 2)
        needed = [c for c in others if constant_needed(plan, c)]
        if needed:
            out.add("# constants of the step, computed once", 2)
            for c in needed:
                self._constant(out, c, None)
        if plan.table is not None:
            self._layer_table(out)
        if not p.inputs:
            # forward takes its dtype/device from the module, and no kept data tensor may carry them: an
            # empty buffer does (it follows `.to()`)
            out.add("self.register_buffer('_dtype_anchor', torch.empty(0, dtype=dtype, device=device), "
                    "persistent=False)", 2)
        used = referenced_names(out.lines)
        if "dtype" in used or "cdtype" in used or "device" in used:
            if first is not None:
                pre.add(f"dtype = rt.real_dtype({first}.dtype)", 2)
                pre.add(f"device = {first}.device", 2)
            else:
                ops = ", ".join(d.name for d in p.data if d.type.dtype == "operator")  # function data: no dtype
                sep = ", " if ops else ""
                if "dtype" in used or "cdtype" in used:
                    pre.add(f"dtype = rt.default_dtype_device({ops}{sep}dtype=dtype)[0]", 2)
                if "device" in used:
                    pre.add(f"device = rt.default_dtype_device({ops}{sep}device=device)[1]", 2)
        if "cdtype" in used:
            pre.add("cdtype = rt.complex_dtype(dtype)", 2)
        for dname in p.dims:
            if dname in used and (dname in p.data_dims or dname in self._construction_dims()):
                pre.add(f"{dname} = dims[{dname!r}]", 2)
        pre.extend(out)
        return pre

    def _constant(self, out: Lines, c, header: str | None) -> None:
        plan = self.plan
        if not constant_needed(plan, c):
            return
        rendered = self.init.render(c.value)
        code = rendered.code
        if not c.python and rendered.py and c.value.type.dtype != "complex":
            # a tensor constant whose printed value is a Python number or bool (a comparison of constants kept as
            # Python numbers, `clamp(k, 0, 0.75) >= 0.5`): a 0-d tensor, so that it can be a buffer
            dtype = ", dtype=dtype" if c.value.type.dtype == "real" else ""
            code = f"torch.tensor({code}{dtype}, device=device)"
        tail = "" if header else f"  # {c.comment}"
        if header:
            out.add(header, 2)
        if c.python:
            if not c.value.py:
                code = f"float({code})"  # a real scalar computed from data: kept as a Python number
            local = f" = {c.name}" if plan.init_uses[c.name] else ""  # constructor code reads it too
            out.add(f"self.{c.name}{local} = {code}{tail}", 2)  # a Python number: an attribute
        else:
            if c.condition is not None:
                flag, branch = c.condition
                code = f"({code}) if {'' if branch == 0 else 'not '}{flag} else None"
            out.add(f"{c.name} = {code}{tail}", 2)
            stored = plan.transposed.get(c.name)
            if c.read_by_forward and stored is not None:  # forward reads it only as x @ Mᵀ: keep Mᵀ contiguous
                value = f"{c.name}.transpose(-2, -1).contiguous()"
                value = value if c.condition is None else f"{value} if {c.name} is not None else None"
                out.add(f"self.register_buffer({stored!r}, {value})", 2)
            elif c.read_by_forward:
                out.add(f"self.register_buffer({c.name!r}, {c.name})", 2)

    def _param(self, out: Lines, x: ir.Param) -> None:
        out.add(f"# line {x.line}: {comment(self.p.line(x.line))}", 2)
        shape = "(" + "".join(f"{d.python()}, " for d in x.type.shape).rstrip(" ") + ")"
        dt = "cdtype" if x.type.dtype == COMPLEX else "dtype"
        code = self.init.code(x.init)
        if x.per_layer:
            if x.uses_layer:
                value = (f"rt.per_layer_default(lambda layer: {code}, self.num_layers, {shape}, {dt}, device, "
                         f"{x.name!r})")
            else:
                value = f"rt.layer_stack([{code}] * self.num_layers, {shape}, {dt}, device)"
        else:
            value = f"rt.full_param({code}, {shape}, {dt}, device)"
        if not x.learned:
            if x.constraint:
                value = f"rt.check_constraint({value}, {x.constraint!r}, {x.constraint_args!r}, {x.name!r})"
            out.add(f"self.register_buffer({x.name!r}, {value})", 2)
        elif x.constraint is None:
            out.add(f"self.{x.name} = torch.nn.Parameter({value})", 2)
        else:
            cls = {"positive": "Positive", "nonnegative": "NonNegative", "range": "Range",
                   "unit_columns": "UnitColumns", "zero_mean": "ZeroMean", "unit_norm": "UnitNorm",
                   "zero_mean unit_norm": "ZeroMeanUnitNorm"}[x.constraint]
            extra = "".join(f", {a!r}" for a in x.constraint_args)
            out.add(f"self.{x.name} = rt.{cls}({value}{extra}, name={x.name!r})", 2)

    def _layer_table(self, out: Lines) -> None:
        """Values that depend only on the layer index: the part of the step computing them, run for all
        layers at construction (only the tables forward reads are kept)."""
        plan, table = self.plan, self.plan.table
        columns = [name for name, _node in table.columns if plan.uses[name]]
        rows = {t: name for t, name in table.rows.items() if plan.uses[name]}
        if not columns and not rows:
            return
        lines = ", ".join(str(n) for n in table.lines)
        out.add(f"# values that depend only on the layer index (lines {lines}), for every layer", 2)
        for s in table.inits:
            out.add(f"{s.name} = {self._fit_state(s, self.init.render(s.init), s.init)}", 2)
        lists = [f"{name}_rows" for name in columns] + [f"{rows[t]}_rows" for t in sorted(rows)]
        starts = ["[]" for _ in columns] + [f"[{t}]" if t in table.states else "[]" for t in sorted(rows)]
        out.add(f"{', '.join(lists)} = {', '.join(starts)}" if len(lists) > 1 else f"{lists[0]} = {starts[0]}", 2)
        out.add("for layer in range(self.num_layers):", 2)
        for item in table.statements:
            if isinstance(item, tuple):
                _tag, name, node = item
                if name in columns:
                    out.add(f"{name}_rows.append({self.init.code(node)})", 3)
                continue
            value = self.init.render(item.value)
            state = next((s for s in table.inits if s.name == item.target), None)
            code = self._fit_state(state, value, item.value) if state is not None else value.code
            out.add(f"{item.target} = {code}  # {comment('line ' + str(item.span.line) + ': ' + self.p.line(item.span.line))}", 3)
            if item.target in rows:
                out.add(f"{rows[item.target]}_rows.append({item.target})", 3)
        for name in columns + [rows[t] for t in sorted(rows)]:
            if name in table.python_columns:  # real scalars: Python numbers, operands that cost no tensor op
                out.add(f"self.{name} = rt.python_table({name}_rows)", 2)
            else:
                out.add(f"self.register_buffer({name!r}, rt.layer_table({name}_rows, dtype, device), persistent=False)", 2)


def _shape_code(shape) -> str:
    """A shape of dims as Python code: `(h, w)`, `(n,)`, `()`."""
    return "(" + "".join(f"{x.python()}, " for x in shape).rstrip(" ") + ")"
