"""Emitter: prints a `Plan` as a readable, standalone PyTorch module.

Every decision (what is computed where, under which name, what forward reads)
is in the plan; this module only prints it.  The output imports only torch and
unroll.runtime, is deterministic (same spec and options give the same bytes),
and carries comments pointing back to the spec lines.  Nothing from the spec is
pasted into code except validated identifiers, numbers printed by repr(), and
text inside comments/docstrings after sanitising.
"""

from __future__ import annotations

import io
import tokenize

from . import ir
from .ast import DimExpr
from .emit_expr import ExprPrinter
from .emit_head import Lines, class_name_of, comment, head
from .operators import P_ATOM, Arg, wrap
from .plan_uses import constant_needed
from .planner import Loop, Plan, Stmt
from .planner import plan as make_plan
from .types import COMPLEX, REAL

CONTEXT_NAMES = ("dtype", "cdtype", "device", "batch", "unbatched")


def referenced_names(lines: list[str]) -> set[str]:
    """Identifiers that printed code reads (tokens, so names inside strings and comments do not count)."""
    out: set[str] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO("\n".join(x.strip() for x in lines) + "\n").readline):
            if tok.type == tokenize.NAME:
                out.add(tok.string)
    except (tokenize.TokenError, IndentationError):
        pass
    return out


class ModulePrinter:
    def __init__(self, plan: Plan, options_text: str, version: str):
        self.plan = plan
        self.p = plan.program
        self.options_text = options_text
        self.version = version
        self.class_name = plan.class_name
        self.fwd = ExprPrinter(plan)
        self.init = ExprPrinter(plan, in_init=True)

    def emit(self) -> str:
        body = Lines()
        body.extend(head(self.plan, self.options_text, self.version, self._ctor_args()))
        body.extend(self._extra_state())
        body.extend(self._init())
        body.add()
        body.extend(self._forward())
        text = "\n".join(body.lines).rstrip() + "\n"
        if "torch." not in text.replace("import torch\n", ""):
            text = text.replace("import torch\n", "", 1)  # a spec with no tensor code of its own
        return text

    # ------------------------------------------------------------ constructor
    def _extra_state(self) -> Lines:
        """Constants computed from data and kept as Python numbers travel in state_dict as extra state."""
        out = Lines()
        names = tuple(c.name for c in self.plan.constants
                      if c.python and not c.value.py and c.read_by_forward and constant_needed(self.plan, c))
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
        if not self._data_tensors():
            args += ["dtype=None", "device=None"]  # no data tensor to take them from
        return args

    def _data_tensors(self) -> list[ir.Data]:
        return [d for d in self.p.data if d.type.dtype != "operator"]

    def _free_dims(self) -> list[str]:
        """Dims bound by no data: optional constructor arguments, else bound by inputs."""
        return [d for d in self.p.dims if d not in self.p.data_dims]

    def _construction_dims(self) -> dict[str, str]:
        """Dims not bound by data that the constructor needs (parameter shapes), with who needs them."""
        out: dict[str, str] = {}
        for d in self.p.data:
            if d.type.dtype == "operator":
                for dim in tuple(d.type.shape) + tuple(d.type.out_shape or ()):
                    for name in dim.names():
                        out.setdefault(name, f"operator `{d.name}`")
        for x in self.p.params:
            for d in x.type.shape:
                for name in d.names():
                    out.setdefault(name, f"parameter `{x.name}`")
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
        tensors = self._data_tensors()
        first = tensors[0].name if tensors else None
        for d in p.data:
            if d.type.dtype == "operator":
                pre.add(f"if {d.name} is None:", 2)
                pre.add(f"raise TypeError({self.class_name + ': missing operator ' + repr(d.name)!r})", 3)
                continue
            dims = tuple(self._dim_key(x) for x in d.type.shape)
            kind = "complex" if d.type.dtype == COMPLEX else "real"
            # later data take the first data's real dtype (complex data its complex counterpart) and device
            extra = "" if d.name == first else f", dtype=rt.real_dtype({first}.dtype), device={first}.device"
            pre.add(f"{d.name} = self._data_arg({d.name!r}, {d.name}, dims, {dims!r}, {kind!r}{extra})", 2)
        for d in tensors:
            for axis, dim in enumerate(d.type.shape):
                if self._dim_key(dim) is None:
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
        # everything after the argument checks; the dtype/device/dims lines it reads are bound before it
        for h in p.hypers:
            out.add(f"self.{h.name} = {h.name} = self._hyper_arg({h.name!r}, {h.name}, {h.dtype!r})", 2)
        for d in p.data:
            if d.type.dtype == "operator":
                ins = "(" + "".join(f"{x.python()}, " for x in d.type.shape).rstrip(" ") + ")"
                outs = "(" + "".join(f"{x.python()}, " for x in d.type.out_shape).rstrip(" ") + ")"
                out.add(f"self.{d.name} = rt.LinearOperator({d.name!r}, {d.name}, dtype, device, "
                        f"in_shape={ins}, out_shape={outs})", 2)
            elif plan.uses[d.name]:
                out.add(f"self.register_buffer({d.name!r}, {d.name})", 2)
        for net in p.nets:
            opts = "".join(f", {k}={v.python() if isinstance(v, DimExpr) else repr(v)}"
                           for k, v in net.options.items())
            out.add(f"# line {net.line}: {comment(p.line(net.line))}", 2)
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
                ops = ", ".join(d.name for d in p.data if d.type.dtype == "operator")
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
        code = self.init.code(c.value)
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
            if c.read_by_forward:
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
                   "unit_columns": "UnitColumns"}[x.constraint]
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
            out.add(f"self.register_buffer({name!r}, rt.layer_table({name}_rows, dtype, device), persistent=False)", 2)

    # ------------------------------------------------------------ states
    def _fit_state(self, state: ir.State, code: Arg, node: ir.Node) -> str:
        """A state keeps its declared shape: broadcast a smaller value (e.g. a scalar) to it.  States are
        never changed in place, so a broadcast view needs no copy."""
        dt = "cdtype" if state.type.dtype == COMPLEX else "dtype"
        if code.py:
            if code.code in ("0", "0.0"):
                return f"torch.zeros({self._shape(state)}, dtype={dt}, device=device)"
            return f"torch.full({self._shape(state)}, {code.code}, dtype={dt}, device=device)"
        value = code.code
        convert = (state.type.dtype == COMPLEX and node.type.dtype != COMPLEX) or (
            state.type.dtype != COMPLEX and node.type.dtype not in (REAL, COMPLEX))
        if convert:
            value = f"{wrap(code, P_ATOM)}.to({dt})"
        if tuple(node.type.shape) == tuple(state.type.shape) and node.type.batched == state.type.batched:
            return value
        atom = value if convert or code.prec >= P_ATOM else f"({value})"
        if node.type.batched and node.type.rank < state.type.rank:
            atom += "[:, " + ", ".join(["None"] * (state.type.rank - node.type.rank)) + "]"
        return f"{atom}.expand({self._shape(state)})"

    @staticmethod
    def _shape(state: ir.State) -> str:
        dims = ", ".join(d.python() for d in state.type.shape)
        if state.type.batched:
            return f"(batch, {dims})" if dims else "(batch,)"
        return f"({dims},)" if dims else "()"

    # ------------------------------------------------------------ forward
    def _stmt_lines(self, out: Lines, block: list, indent: int, printer: ExprPrinter) -> None:
        i = 0
        while i < len(block):
            if getattr(block[i], "skip_last", False) and printer.layer == "layer":
                run = []
                while i < len(block) and getattr(block[i], "skip_last", False):
                    run.append(block[i])
                    i += 1
                out.add("if layer < self.num_layers - 1 or record is not None:  # not needed after the last layer",
                        indent)
                self._nested(out, indent + 1, lambda body: self._stmt_items(body, run, indent + 1, printer))
                continue
            self._stmt_items(out, [block[i]], indent, printer)
            i += 1

    @staticmethod
    def _nested(out: Lines, indent: int, fill) -> None:
        """An indented block (a loop body, a guarded run): `pass` if it holds no statement (a body whose
        only statements leave their targets unchanged)."""
        body = Lines()
        fill(body)
        out.extend(body)
        if not any(line.strip() and not line.strip().startswith("#") for line in body.lines):
            out.add("pass", indent)

    def _stmt_items(self, out: Lines, block: list, indent: int, printer: ExprPrinter) -> None:
        for item in block:
            if isinstance(item, Loop):
                for st in item.before:
                    out.add(f"{st.target} = {printer.code(st.value)}  # {st.comment}", indent)
                out.add(f"for _ in range({printer.code(item.count)}):  # {item.comment}", indent)
                self._nested(out, indent + 1, lambda body, item=item: self._stmt_lines(body, item.body, indent + 1,
                                                                                       printer))
                continue
            value = printer.render(item.value)
            if item.kind == "temp" and item.state is None:
                out.add(f"{item.target} = {value.code}", indent)
                continue
            out.add(f"# {item.comment}", indent)
            if item.value.op == "var" and item.value.attrs["name"] == item.target and not item.value.attrs.get("prev"):
                out.add(f"# ({item.target} is unchanged here)", indent)
                continue
            code = self._fit_state(item.state, value, item.value) if item.state is not None and item.kind == "state" \
                else value.code
            out.add(f"{item.target} = {code}", indent)

    def _hoisted_lines(self, out: Lines, block: list, indent: int) -> None:
        for st in block:
            code = self.fwd.code(st.value)
            if st.condition is not None:
                flag, branch = st.condition
                code = f"({code}) if {'' if branch == 0 else 'not '}{flag} else None"
            out.add(f"{st.target} = {code}  # {st.comment}", indent)

    def _layer_body(self, block: list, printer: ExprPrinter, indent: int) -> Lines:
        p, plan = self.p, self.plan
        out = Lines()
        for name in p.prev_used:
            out.add(f"{plan.prev_names[name]} = {name}", indent)
        self._stmt_lines(out, block, indent, printer)
        for name in p.history_used:
            out.add(f"{plan.history_names[name]}.append({name})", indent)
        out.add("if record is not None:", indent)
        out.add(f"record.append({self._record()})", indent + 1)
        return out

    def _record(self) -> str:
        return "{" + ", ".join(f"{s.name!r}: {s.name}" for s in self.p.states) + "}"

    def _forward(self) -> Lines:
        p, plan = self.p, self.plan
        ins = [i.name for i in p.inputs]
        body = Lines()
        # prologue values, states, hoisted invariants, the layer loop and the final stage
        for st in plan.prologue:
            body.add(f"# {st.comment}", 2)
            body.add(f"{st.target} = {self.fwd.code(st.value)}", 2)
        for st in plan.state_inits:
            body.add(f"# {st.comment}", 2)
            body.add(f"{st.target} = {self._fit_state(st.state, self.fwd.render(st.value), st.value)}", 2)
        for name in p.history_used:
            body.add(f"{plan.history_names[name]} = [{name}]  # values at the start of each layer", 2)
        if plan.invariants:
            body.add("# layer-invariant terms, hoisted out of the loop", 2)
            self._hoisted_lines(body, plan.invariants, 2)
        body.add("if record is not None:", 2)
        body.add(f"record.append({self._record()})", 3)
        start = 0
        if plan.peeled is not None:
            body.add(f"# {plan.peel_note}", 2)
            body.extend(self._layer_body(plan.peeled, self.fwd.at("0"), 2))
            start = 1
        loop_range = "range(self.num_layers)" if start == 0 else "range(1, self.num_layers)"
        body.add(f"for layer in {loop_range}:", 2)
        body.extend(self._layer_body(plan.step, self.fwd, 3))
        if plan.final:
            body.add("# final stage", 2)
            self._stmt_lines(body, plan.final, 2, self.fwd)
        # an output that is a Python number (a constant kept as one) is returned as a tensor
        python = {c.name for c in plan.constants if c.python} | {
            st.target for st in plan.prologue + plan.final if isinstance(st, Stmt) and st.value.py}
        outs = ", ".join(f"torch.as_tensor({name}, dtype=dtype, device=device)" if name in python else name
                         for name in p.outputs) + ("," if len(p.outputs) == 1 else "")
        flags = tuple(batched for _name, batched in plan.outputs)
        body.add(f"return self._outputs(({outs}), unbatched, {flags!r})", 2)

        used = referenced_names(body.lines)
        pre = Lines()
        pre.add("batch_info = []", 2)
        pre.add("dims = dict(self.dims)", 2)
        composite = []  # axes like `2*h`: checked once every input has bound its dims
        for i in p.inputs:
            dims = tuple(self._dim_key(x) for x in i.type.shape)
            kind = "complex" if i.type.dtype == COMPLEX else "real"
            pre.add(f"{i.name} = self._input_arg({i.name!r}, {i.name}, dims, {dims!r}, {kind!r}, batch_info)", 2)
            for axis, dim in enumerate(i.type.shape):
                if self._dim_key(dim) is None and all(n in p.data_dims or n in p.input_dims for n in dim.names()):
                    composite.append(f"self._expect_dim({i.name!r}, {axis}, {i.name}.shape[{axis + 1}], "
                                     f"{self._dim_value(dim)}, {str(dim)!r})")
        for line in composite:
            pre.add(line, 2)
        context = []
        if ins:
            context += [("batch", f"batch = {ins[0]}.shape[0]"), ("unbatched", "unbatched = batch_info[0][2]"),
                        ("dtype", f"dtype = rt.real_dtype({ins[0]}.dtype)"), ("device", f"device = {ins[0]}.device")]
        else:
            context += [("batch", "batch = 1"), ("unbatched", "unbatched = True"),
                        ("dtype", "dtype = self._default_dtype_device()[0]"),
                        ("device", "device = self._default_dtype_device()[1]")]
        needs = set(used)
        if "cdtype" in needs:
            needs.add("dtype")
        for name, line in context:
            if name in needs:
                pre.add(line, 2)
        if "cdtype" in needs:
            pre.add("cdtype = rt.complex_dtype(dtype)", 2)
        for dname in p.dims:
            if dname in used:
                pre.add(f"{dname} = dims[{dname!r}]", 2)
        for h in p.hypers:
            if h.name in used:
                pre.add(f"{h.name} = self.{h.name}", 2)
        for d in p.data:
            if d.name in used:
                pre.add(f"{d.name} = self.{d.name}", 2)
        for c in plan.constants:
            if c.read_by_forward and c.name in used:
                pre.add(f"{c.name} = self.{c.name}", 2)
        if plan.table is not None:
            for name in [n for n, _ in plan.table.columns] + list(plan.table.rows.values()):
                if name in used:
                    pre.add(f"{name} = self.{name}", 2)
        for flag in plan.choices:
            if flag in used:
                pre.add(f"{flag} = self.{flag}", 2)
        for net in p.nets:
            if net.name in used:
                pre.add(f"{net.name} = self.{net.name}", 2)
        for x in p.params:
            if x.name not in used:
                continue
            value = f"self.{x.name}()" if x.learned and x.constraint else f"self.{x.name}"
            note = f"  # {x.constraint} reparametrisation" if x.learned and x.constraint else ""
            if x.name in plan.split_params:
                value += ".unbind(0)"
                note = "  # one tensor per layer" + (f" ({x.constraint} reparametrisation)" if note else "")
            pre.add(f"{x.name} = {value}{note}", 2)
        pre.extend(body)

        out = Lines()
        args = ", ".join(ins)
        out.add(f"def forward(self, {args}):" if ins else "def forward(self):", 1)
        out.add(f'"""Run the {p.layers} layers; returns {", ".join(p.outputs)}."""', 2)
        out.add(f"return self._unrolled({args}{', ' if ins else ''}record=None)", 2)
        out.add()
        out.add(f"def _unrolled(self, {args}{', ' if ins else ''}record):", 1)
        out.extend(pre)
        return out


def emit_plan(plan: Plan, options_text: str, version: str) -> str:
    return ModulePrinter(plan, options_text, version).emit()


def emit(program: ir.Program, options_text: str, version: str, class_name: str | None = None) -> str:
    return emit_plan(make_plan(program, class_name=class_name or class_name_of(program.name)), options_text, version)


__all__ = ["Stmt", "emit", "emit_plan"]
