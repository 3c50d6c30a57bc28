"""Emitter: prints a `Plan` as a readable, standalone PyTorch module.

Every decision (what is computed where, under which name, what forward reads)
is in the plan; this module only prints it.  The output imports only torch and
unroll.runtime, is deterministic (same spec and options give the same bytes),
and carries comments pointing back to the spec lines.  Nothing from the spec is
pasted into code except validated identifiers, numbers printed by repr(), and
text inside comments/docstrings after sanitising.
"""

from __future__ import annotations

import itertools

from . import emit_diff, ir
from .emit_backward import BackwardMode, check_mode, emit_mode
from .emit_expr import ExprPrinter
from .emit_head import Lines, class_name_of, head, referenced_names
from .emit_index import check_lines
from .emit_init import ConstructorPrinter, pending_data_axes
from .operators import P_ATOM, Arg, wrap
from .planner import Loop, Plan, Stmt
from .planner import plan as make_plan
from .types import BOOL, COMPLEX, INT, REAL


class ModulePrinter(ConstructorPrinter):
    def __init__(self, plan: Plan, options_text: str, version: str, backward: BackwardMode | None = None):
        self.plan = plan
        self.backward = backward or BackwardMode()
        # statements only the trace reads run only when it records (the other backward modes run the layers
        # through a runtime helper that passes every state on)
        self._guard_trace_only = self.backward.kind == "unroll"
        self.p = plan.program
        self.options_text = options_text
        self.version = version
        self.class_name = plan.class_name
        self.fwd = ExprPrinter(plan)
        self.init = ExprPrinter(plan, in_init=True)

    def emit(self) -> str:
        body = Lines()
        # the per-layer parameters forward reads with `self._per_layer` (a memory mode slices the stacks per segment)
        split = tuple(self.plan.split_params) if self.backward.kind == "unroll" else ()
        body.extend(head(self.plan, self.options_text, self.version, self._ctor_args(), split))
        body.extend(self._extra_state())
        body.extend(self._init())
        body.add()
        body.extend(self._forward())
        text = "\n".join(body.lines).rstrip() + "\n"
        if "torch." not in text.replace("import torch\n", ""):
            text = text.replace("import torch\n", "", 1)  # a spec with no tensor code of its own
        return text

    def _depth(self) -> str:
        """The number of layers: the class attribute, or the dim of `layers T` (bound per call)."""
        return self.p.layers_dim or "self.num_layers"

    # ------------------------------------------------------------ states
    def _fit_state(self, state: ir.State, code: Arg, node: ir.Node) -> str:
        """A state keeps its declared shape: broadcast a smaller value (e.g. a scalar) to it.  States are
        never changed in place, so a broadcast view needs no copy."""
        dt = "cdtype" if state.type.dtype == COMPLEX else "torch.long" if state.type.dtype == INT else "dtype"
        if code.py:
            if code.code in ("0", "0.0"):
                return f"torch.zeros({self._shape(state)}, dtype={dt}, device=device)"
            return f"torch.full({self._shape(state)}, {code.code}, dtype={dt}, device=device)"
        value = code.code
        convert = (state.type.dtype == COMPLEX and node.type.dtype != COMPLEX) or (
            state.type.dtype == REAL and node.type.dtype not in (REAL, COMPLEX))
        if convert:
            value = f"{wrap(code, P_ATOM)}.to({dt})"
        if tuple(node.type.shape) == tuple(state.type.shape) and node.type.batched == state.type.batched:
            return value
        atom = value if convert or code.prec >= P_ATOM else f"({value})"
        if node.type.batched and node.type.rank < state.type.rank:
            atom += "[:, " + ", ".join(["None"] * (state.type.rank - node.type.rank)) + "]"
        return f"{atom}.expand({self._shape(state)})"

    @staticmethod
    def _tensor_where_read_as_one(code: Arg, st: Stmt) -> Arg:
        """A value the printer computes as a Python number (a function of constants kept as Python numbers,
        `let u = c^1.5`) but that its readers take for a tensor (the checker typed it one: `tanh(u)`): a 0-d
        tensor of its dtype, so that every torch function it reaches receives a tensor (fuzz statements
        1064891).  States are fitted to their shape by `_fit_state`."""
        if not code.py or (st.value.py if st.read_py is None else st.read_py):
            return code
        dt = {COMPLEX: "cdtype", INT: "torch.long", BOOL: "torch.bool"}.get(st.value.type.dtype, "dtype")
        return Arg(f"torch.as_tensor({code.code}, dtype={dt}, device=device)", st.value.type, P_ATOM)

    @staticmethod
    def _shape(state: ir.State) -> str:
        dims = ", ".join(d.python() for d in state.type.shape)
        if state.type.batched:
            return f"(batch, {dims})" if dims else "(batch,)"
        return f"({dims},)" if dims else "()"

    # ------------------------------------------------------------ forward
    def _stmt_lines(self, out: Lines, block: list, indent: int, printer: ExprPrinter) -> None:
        """The statements of `block`, each consecutive run under the same guard printed under one `if`."""
        for guard, group in itertools.groupby(block, key=lambda item: self._guard(item, printer)):
            run = list(group)
            if guard is None:
                self._stmt_items(out, run, indent, printer)
                continue
            if guard == "trace":
                states = ", ".join(dict.fromkeys(st.target for st in run if st.target in self.plan.trace_only_states))
                out.add(f"if record is not None:  # only the trace reads {states}", indent)
            else:
                out.add(f"if layer < {self._depth()} - 1 or record is not None:  # not needed after the last layer",
                        indent)
            self._nested(out, indent + 1, lambda body, run=run: self._stmt_items(body, run, indent + 1, printer))

    def _guard(self, item, printer: ExprPrinter) -> str | None:
        """When a statement runs: "trace" (only when the trace records: nothing else reads it), "last" (not
        after the last layer, unless the trace records), None (always)."""
        if self._guard_trace_only and getattr(item, "trace_only", False):
            return "trace"
        if getattr(item, "skip_last", False) and printer.layer == "layer":
            return "last"
        return None

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
                    code = self._tensor_where_read_as_one(printer.render(st.value), st).code
                    out.add(f"{st.target} = {code}  # {st.comment}", indent)
                count = printer.code(item.count)
                counter = "range(" + (f"{count} - 1, -1, -1" if item.backward else count) + ")"
                out.add(f"for {item.index or '_'} in {counter}:  # {item.comment}", indent)
                self._nested(out, indent + 1, lambda body, item=item: self._stmt_lines(body, item.body, indent + 1,
                                                                                       printer))
                continue
            value = printer.render(item.value)
            fitted = item.state is not None and item.kind == "state"
            if not fitted:
                value = self._tensor_where_read_as_one(value, item)
            if item.kind == "temp" and item.state is None:
                noqa = "  # noqa: B023, RUF100 (called at once)" if emit_diff.reads_autodiff(item.value) else ""
                out.add(f"{item.target} = {value.code}{noqa}", indent)
                continue
            out.add(f"# {item.comment}", indent)
            if item.value.op == "var" and item.value.attrs["name"] == item.target and not item.value.attrs.get("prev"):
                out.add(f"# ({item.target} is unchanged here)", indent)
                continue
            code = self._fit_state(item.state, value, item.value) if fitted else value.code
            if emit_diff.reads_autodiff(item.value):
                code += "  # noqa: B023, RUF100 (called at once)"
            out.add(f"{item.target} = {code}", indent)

    def _hoisted_lines(self, out: Lines, block: list, indent: int) -> None:
        for st in block:
            code = self._tensor_where_read_as_one(self.fwd.render(st.value), st).code
            if st.condition is not None:
                flag, branch = st.condition
                code = f"({code}) if {'' if branch == 0 else 'not '}{flag} else None"
            out.add(f"{st.target} = {code}  # {st.comment}", indent)

    def _layer_body(self, block: list, printer: ExprPrinter, indent: int) -> Lines:
        p, plan = self.p, self.plan
        out = Lines()
        emit_diff.layer_top(p, plan, out, indent, printer.layer)
        for name in p.prev_used:
            out.add(f"{plan.prev_names[name]} = {name}", indent)
        self._stmt_lines(out, block, indent, printer)
        emit_diff.layer_bottom(p, plan, out, indent, printer)
        for name in p.history_used:
            out.add(f"{plan.history_names[name]}.append({name})", indent)
        out.add("if record is not None:", indent)
        out.add(f"record.append({self._record()})", indent + 1)
        emit_diff.loop_exit(p, plan, out, indent)
        return out

    def _record(self) -> str:
        return "{" + ", ".join(f"{s.name!r}: {s.name}" for s in self.p.states) + "}"

    def _forward(self) -> Lines:
        p, plan = self.p, self.plan
        ins = [i.name for i in p.inputs]
        body = Lines()
        emit_diff.noise_lines(p, plan, body)
        # prologue values, states, hoisted invariants, the layer loop and the final stage
        for st in plan.prologue:
            body.add(f"# {st.comment}", 2)
            body.add(f"{st.target} = {self.fwd.code(st.value)}", 2)
        mode_call, mode_method = emit_mode(self, self.backward) if self.backward.kind != "unroll" else (None, None)
        trace_only = set(plan.trace_only_inits) if mode_call is None else set()
        for st in plan.state_inits:
            if st.target not in trace_only:
                body.add(f"# {st.comment}", 2)
                body.add(f"{st.target} = {self._fit_state(st.state, self.fwd.render(st.value), st.value)}", 2)
        for name in p.history_used:
            body.add(f"{plan.history_names[name]} = [{name}]  # values at the start of each layer", 2)
        if plan.invariants:
            body.add("# layer-invariant terms, hoisted out of the loop", 2)
            self._hoisted_lines(body, plan.invariants, 2)
        emit_diff.until_start(p, plan, body)
        body.add("if record is not None:", 2)
        if trace_only:  # nothing else reads them: layer 0 is peeled and assigns them first
            body.add("# initial values only the trace reads (layer 0 assigns these states before any use)", 3)
        for st in plan.state_inits:
            if st.target in trace_only:
                body.add(f"# {st.comment}", 3)
                body.add(f"{st.target} = {self._fit_state(st.state, self.fwd.render(st.value), st.value)}", 3)
        body.add(f"record.append({self._record()})", 3)
        start = 0
        if mode_call is not None:  # compiler/emit_backward.py: the layers through a runtime helper
            body.extend(mode_call)
        elif plan.peeled is not None:
            body.add(f"# {plan.peel_note}", 2)
            body.extend(self._layer_body(plan.peeled, self.fwd.at("0"), 2))
            start = 1
        if mode_call is None:
            loop_range = f"range({self._depth()})" if start == 0 else f"range(1, {self._depth()})"
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
        pre.add("batch_info = self._batch_info(record)", 2)
        pre.add("dims = dict(self.dims)", 2)
        composite = []  # axes like `2*h`: checked once every input has bound its dims
        for i in p.inputs:
            dims = tuple(self._dim_key(x) for x in i.type.shape)
            kind = "complex" if i.type.dtype == COMPLEX else "int" if i.type.dtype == INT else "real"
            pre.add(f"{i.name} = self._input_arg({i.name!r}, {i.name}, dims, {dims!r}, {kind!r}, batch_info)", 2)
            for axis, dim in enumerate(i.type.shape):
                if self._dim_key(dim) is None and all(n in p.data_dims or n in p.input_dims for n in dim.names()):
                    composite.append(f"self._expect_dim({i.name!r}, {axis}, {i.name}.shape[{axis + 1}], "
                                     f"{self._dim_value(dim)}, {str(dim)!r})")
        if pending_data_axes(p):  # composite data axes whose dims the inputs bind (`c : real[2*n]`, `y : real[n]`)
            composite.append("self._check_composite_axes(dims)")
        for line in composite + check_lines(p, at_construction=False):  # index data against per-call sizes
            pre.add(line, 2)
        context = []
        real_ins = [i.name for i in p.inputs if i.type.dtype != INT]  # integer inputs do not give the dtype
        if ins:
            context += [("batch", f"batch = {ins[0]}.shape[0]"), ("unbatched", "unbatched = batch_info[0][2]"),
                        ("dtype", f"dtype = rt.real_dtype({real_ins[0]}.dtype)" if real_ins else
                         "dtype = self._default_dtype_device()[0]"), ("device", f"device = {ins[0]}.device")]
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
            name = plan.transposed.get(c.name, c.name)
            if c.read_by_forward and name in used:
                pre.add(f"{name} = self.{name}", 2)
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
            if x.name in plan.split_params and mode_call is None:  # other modes slice the stack per segment
                value = f"self._per_layer({x.name!r})"
                note = "  # one tensor per layer" + (f" ({x.constraint} reparametrisation)" if note else "")
            pre.add(f"{x.name} = {value}{note}", 2)
        pre.extend(body)

        out = Lines()
        args = ", ".join(ins)
        noise_sig, noise_args = emit_diff.signature(p)
        if noise_args:
            out.add(f"def forward(self{', ' if ins else ''}{args}{noise_sig}):", 1)
            args = f"{args}, {noise_args}" if ins else noise_args
        else:
            out.add(f"def forward(self, {args}):" if ins else "def forward(self):", 1)
        depth = p.layers if p.layers_dim is None else p.layers_dim
        out.add(f'"""Run the {depth} layers; returns {", ".join(p.outputs)}."""', 2)
        out.add(f"return self._unrolled({args}{', ' if args else ''}record=None)", 2)
        out.add()
        out.add(f"def _unrolled(self, {args}{', ' if args else ''}record):", 1)
        out.extend(pre)
        if mode_method is not None:
            out.add()
            out.extend(mode_method)
        return out


def emit_plan(plan: Plan, options_text: str, version: str, backward: BackwardMode | None = None) -> str:
    return ModulePrinter(plan, options_text, version, backward).emit()


def emit(program: ir.Program, options_text: str, version: str, class_name: str | None = None,
         backward: BackwardMode | None = None) -> str:
    plan = make_plan(program, class_name=class_name or class_name_of(program.name))
    if backward is not None and backward.kind != "unroll":
        check_mode(program, backward, plan.table.states if plan.table is not None else ())
    return emit_plan(plan, options_text, version, backward)


__all__ = ["Stmt", "emit", "emit_plan"]
