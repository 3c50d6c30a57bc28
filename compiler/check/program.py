"""The checker's whole-spec pass: declarations in order, the `step:` and `final:` blocks, the outputs.
`Checker` gathers the parts (scope, expressions, special forms, declarations, statements); `check` runs it."""

from __future__ import annotations

import keyword

from .. import ast, ir
from ..diagnostics import DiagnosticSink, Source, did_you_mean
from ..types import BOOL, FUNCTION, INT, OPERATOR, Type
from .declarations import DeclarationMixin, net_size_names
from .diff_forms import DiffFormMixin, depth_symbol
from .expressions import ExpressionMixin
from .function_data import FunctionDataMixin
from .functional import FunctionalMixin
from .functions import FunctionCallMixin
from .indexing import IndexMixin
from .names import IDENTIFIER, Symbol, kind_noun, with_article
from .scope import ScopeMixin
from .slicing import SliceMixin
from .special_forms import SpecialFormMixin
from .statements import StatementMixin


class Checker(FunctionDataMixin, ScopeMixin, ExpressionMixin, SliceMixin, SpecialFormMixin, DeclarationMixin, StatementMixin,
              DiffFormMixin, IndexMixin, FunctionCallMixin, FunctionalMixin):
    """Checks one spec against its own annotations; `run()` returns the typed program."""

    def __init__(self, spec: ast.Spec, source: Source, layers: int | None = None):
        self.spec = spec
        self.source = source
        self.layers_option = layers  # `--layers`: the depth, if given (a non-positive one is ignored here)
        self.sink = DiagnosticSink(source)
        self.scope: dict[str, Symbol] = {}
        self.context = "top"
        self.allow_layer = False
        self.batched_states: set[str] = set()
        self.prev_used: list[str] = []
        self.history_used: list[str] = []
        self._depth_cache: int | None = None
        self.locals_types: dict[str, Type] = {}
        self.current: str | None = None  # the declaration being checked (for messages)
        self.reported: set[tuple[str, str]] = set()  # (kind, name) of unknown names already reported
        self.loop_indices: list[str] = []  # indices of `repeat N as j:` loops
        self.loop_counts: dict = {}  # loop index -> its loop's count (int or DimExpr) while inside the loop
        self.size_hypers: set[str] = set()  # `int` hyperparameters used as sizes in types
        self.layers_dim: str | None = None  # `layers T` with T a dim

    def run(self) -> ir.Program:
        from ..functions import expand_functions

        self.sink.items.extend(expand_functions(self.spec))  # `fn` calls inlined (compiler/functions.py)
        # states become batched when an update makes them so: iterate to a fixpoint.  Each pass but the last adds a
        # state (the set only grows), and a chain `x1 = x2`, `x2 = x3`, `x3 = y` needs one pass per link: a pass
        # limit below the number of states left `x1` typed unbatched where it is read (`sum(x1)` summed the batch)
        for _ in range(sum(d.kind == "state" for d in self.spec.decls) + 2):
            before = set(self.batched_states)
            program = self._run_once()
            if self.sink.items or self.batched_states == before:
                break
            self.sink = DiagnosticSink(self.source)
        if not self.sink.items:  # reported on the final pass only: a later pass may make the entry value per sample
            for name, span, now in self.loop_batch_changes:
                self.error(f"`{name}` is carried to the next pass of this `repeat` loop, and the loop makes it "
                           + ("per sample" if now else "the same for every sample")
                           + (" although it is the same for every sample when the loop starts" if now else
                              " although it is per sample when the loop starts"), span,
                           f"the next pass would read `{name}` with another shape; keep it per sample throughout "
                           f"(a `state`, which is broadcast to the batch, or a per-sample value before the loop)")
        self.sink.raise_if_any()
        return program

    def _run_once(self) -> ir.Program:
        spec = self.spec
        self.scope = {}
        self.loop_batch_changes: list = []  # (let, repeat span, batched at the end) whose batching a loop changes
        self.prev_used = []
        self.history_used = []
        self.locals_types = {}
        self.reported = set()
        self.dim_minimums: dict[str, tuple[int, str]] = {}  # dim -> (least size, the index that needs it)
        self.dim_relations: list[tuple] = []  # `size >= index + 1` of dim-valued indices (check/bounds.py)
        self.loop_indices = []
        self.loop_counts = {}
        data, hypers, inputs, lets, params, states, nets, noises = [], [], [], [], [], [], [], []
        requires: list[ir.Require] = []
        self._let_values: dict[str, ir.Node] = {}
        self._net_info: dict[str, ir.Net] = {}
        self.net_dims: dict[str, tuple[str, int]] = {}  # dim -> (functional net, weight group)
        data_dims: dict[str, tuple[str, int]] = {}
        input_dims: dict[str, tuple[str, int]] = {}
        dims: list[str] = []
        if spec.name is None:
            self.error("missing `spec NAME` line", self._code_line(first=True),
                       'start the file with `spec my_algorithm "Title"`')
        elif not IDENTIFIER.match(spec.name) or keyword.iskeyword(spec.name):
            self.error(f"invalid spec name `{spec.name}`", spec.name_span,
                       "a spec name starts with a letter and uses letters, digits and `_`, and is not a Python "
                       "keyword (it names the generated module)")
        mentioned: set[str] = set()  # dims used by data/input types that failed to check

        decls = spec.decls
        # dims a data declaration binds (known at construction); the others are bound per forward call
        # (and dims that parameter shapes use: the constructor takes those as keyword arguments)
        construction_dims = {dim.terms[0][0] for d in decls if d.kind == "data" and d.type is not None
                             for dim in (d.type.dims or [])
                             if len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const}
        construction_dims |= {n for d in decls if d.kind == "param" and d.type is not None
                              for dim in (d.type.dims or []) for n in dim.names()}
        construction_dims |= {n for d in decls if d.kind == "net" for n in net_size_names(d)}  # sub-network sizes
        construction_dims |= {n for d in decls if d.kind == "data" and d.type is not None and d.type.base == FUNCTION
                              for a in d.type.args or [] for dim in a.dims or [] for n in dim.names()}
        # dims first (they may be used by any type)
        for d in decls:
            if d.kind == "dim" and self._declare(Symbol(d.name, "dim", Type(INT), ir.CONST, d.span)):
                dims.append(d.name)
        for d in decls:
            line = d.line_span.line
            if d.kind == "dim":
                continue
            self.current = d.name
            if d.kind == "data":
                if d.type.base == FUNCTION:  # function data (check/function_data.py)
                    t = self._function_type(d.type, d.annotations)
                else:
                    t = self._type(d.type, "data operator", allow_operator=True, allow_int=True)
                    for a in d.annotations[:1]:
                        self.error(f"data `{d.name}` cannot be `{a.name}`: only function data takes an annotation",
                                   a.span, "remove it (`nondifferentiable` is for `data D : function(...) -> ...`)")
                        t = None
                if t is None:
                    self._poison(d.name, "data", d.span)
                    mentioned.update(n for dim in d.type.dims or [] for n in dim.names())
                    continue
                if self._declare(Symbol(d.name, "data", t, ir.CONST, d.span)):
                    data.append(ir.Data(d.name, t, d.span, line))
                    for axis, dim in enumerate(t.shape if t.dtype not in (OPERATOR, FUNCTION) else ()):
                        if len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const and "*" not in dim.terms[0][0] \
                                and dim.terms[0][0] not in self.size_hypers:
                            data_dims.setdefault(dim.terms[0][0], (d.name, axis))
            elif d.kind == "hyper":
                h = self._hyper(d)
                if h is not None:
                    hypers.append(h)
                else:
                    self._poison(d.name, "hyper", d.span)
            elif d.kind == "input":
                t = self._type(d.type, "input", allow_int=True)
                if t is None:
                    self._poison(d.name, "input", d.span)
                    mentioned.update(n for dim in d.type.dims or [] for n in dim.names())
                    continue
                t = t.with_(batched=True)
                if self._declare(Symbol(d.name, "input", t, ir.FORWARD, d.span)):
                    inputs.append(ir.Input(d.name, t, d.span, line))
                    for axis, dim in enumerate(t.shape):
                        if len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const and "*" not in dim.terms[0][0] \
                                and dim.terms[0][0] not in self.size_hypers:
                            input_dims.setdefault(dim.terms[0][0], (d.name, axis))
                            sym = self.scope.get(dim.terms[0][0])
                            if dim.terms[0][0] not in construction_dims and sym is not None and sym.kind == "dim":
                                sym.level = ir.FORWARD  # known per forward call: expressions using it are too
            elif d.kind == "let":
                self.context = "let"
                node = self.expr(d.value)
                self.context = "top"
                if node is None:
                    self._poison(d.name, "let", d.span)
                    continue
                if node.type.dtype == BOOL:
                    self.error("a `let` cannot hold a comparison", d.value.span,
                               "use the comparison inside `where(cond, a, b)`")
                    self._poison(d.name, "let", d.span)
                    continue
                if self._declare(Symbol(d.name, "let", node.type, node.level, d.span, py=node.py, static=node.static)):
                    lets.append(ir.Let(d.name, node, d.span, line))
                    self._let_values[d.name] = node
            elif d.kind == "param":
                p = self._param(d)
                if p is not None:
                    params.append(p)
                else:
                    self._poison(d.name, "param", d.span)
            elif d.kind == "state":
                s = self._state(d)
                if s is not None:
                    states.append(s)
                else:
                    self._poison(d.name, "state", d.span)
            elif d.kind == "require":
                req = self._require(d)
                if req is not None:
                    requires.append(req)
                continue
            elif d.kind == "noise":
                noise = self._noise(d)
                if noise is not None:
                    noises.append(noise)
                else:
                    self._poison(d.name, "noise", d.span)
            elif d.kind == "net":
                net = self._net(d)
                if net is not None:
                    nets.append(net)
                else:
                    self._poison(d.name, "net", d.span)
        self.current = None

        # dims must be bound by data or inputs (or by a functional network's weight count)
        functional_names = {arg.name for d in decls if d.kind == "net" for a in d.annotations
                            if a.name == "functional" for arg in a.args if isinstance(arg, ast.Name)}
        for name in dims:
            operator_dims = {n for x in data if x.type.dtype == OPERATOR
                             for dim in tuple(x.type.shape) + tuple(x.type.out_shape or ()) for n in dim.names()}
            operator_dims |= {n for x in data if x.type.dtype == FUNCTION for t in x.type.signature[0]
                              for dim in t.shape for n in dim.names()}
            noise_dims = {n for x in noises for dim in x.type.shape for n in dim.names()}  # constructor arguments
            if name in functional_names and name not in self.net_dims:  # its `functional(...)` was reported
                continue
            if name in self.net_dims:  # bound at construction to a functional network's weight count
                if name in data_dims:
                    self.error(f"the dim `{name}` is bound both by the data `{data_dims[name][0]}` and by "
                               f"`functional` (the weights of `{self.net_dims[name][0]}`)", self.scope[name].span,
                               "use another dim for the data axis")
                continue
            if name not in data_dims and name not in input_dims and name not in mentioned \
                    and name not in operator_dims and name not in noise_dims:
                sym = self.scope[name]
                self.error(f"dimension `{name}` is not the size of any data or input axis", sym.span,
                           "give a data operator or an input a type that uses it, e.g. `input y : real[" + name + "]`")
        # dims bound only by inputs: known per forward call
        for name in input_dims:
            if name not in data_dims and name in self.scope:
                self.scope[name].level = ir.FORWARD

        layers = self._layers()

        # step
        step: list = []
        until = None
        if spec.step is None:
            if spec.outputs:
                self.error("missing `step:` block", self._code_line(spec.output_span.line),
                           "write the update equations of one layer in an indented `step:` block before `output`")
            else:
                self.error("missing `step:` block", self._code_line(),
                           "write the update equations of one layer in an indented `step:` block")
        else:
            self.context = "step"
            self.allow_layer = True
            saved = {n: (s.version, s.level) for n, s in self.scope.items()}
            assigned = self._assigned_names(spec.step)
            for name in assigned:
                sym = self.scope.get(name)
                if sym is not None and sym.kind == "state":
                    sym.level = ir.LAYER
                    sym.version += 1
            step = self._block(spec.step, ir.LAYER, states)
            if spec.step_until is not None:
                until = self._until(spec.step_until)
                # every state freezes per sample: all are batched
                self.batched_states.update(s.name for s in states)
            # after the loop, states hold their final values (level FORWARD for the final stage)
            for name in list(self.scope):
                sym = self.scope[name]
                if sym.kind in ("local", "index"):
                    del self.scope[name]
                elif sym.kind == "state":
                    sym.level = max(saved.get(name, (0, sym.level))[1], ir.FORWARD)
                    sym.version += 1
            self.allow_layer = False
        # final stage
        final: list = []
        if spec.final is not None:
            self.context = "final"
            final = self._block(spec.final, ir.FORWARD, states)
        self.context = "top"

        if spec.step_until is not None and "depth" in self.scope:
            self.error("`depth` is the built-in output of `step until` (the layers each sample ran)",
                       self.scope["depth"].span, "rename this declaration")
        elif spec.step_until is not None:
            self.scope["depth"] = depth_symbol(spec.step_span)  # the layers each sample ran
        outputs = []
        returnable = [n for kind in ("state", "local", "let", "input") for n, x in self.scope.items()
                      if x.kind == kind and not x.broken]
        listing = ", ".join(f"`{n}`" for n in returnable)
        if not spec.outputs:
            example = next((n for n, x in self.scope.items() if x.kind == "state"), "x")
            self.error("missing `output` line", self._code_line(),
                       f"end the spec with the value(s) the network returns, e.g. `output {example}`")
        for name, span in spec.outputs:
            sym = self.scope.get(name)
            if sym is not None and sym.broken:
                continue
            if sym is None:
                later = self._declared_later(name)
                hint = did_you_mean(name, returnable) or (f"the values that can be returned: {listing}" if listing
                                                          else "declare a `state` and update it in `step:`")
                if later is not None and later[2] == "step":
                    hint = (f"`{name}` is a temporary of a block and is gone after it; declare it a `state`, or "
                            "compute it in the `final:` block")
                self.error(f"output `{name}` is not defined", span, hint)
            elif sym.kind not in ("state", "local", "let", "input", "depth"):
                self.error(f"output `{name}` is {with_article(kind_noun(sym.kind))}; outputs are states, `let` "
                           "values or final-stage values", span,
                           f"to return it, copy it in a `final:` block: `let {name}_out = {name}`")
            else:
                outputs.append(name)
        for s in states:
            s.type = s.type.with_(batched=s.name in self.batched_states or s.type.batched)

        return ir.Program(
            name=spec.name or "spec", title=spec.title or (spec.name or "spec"), source_path=self.source.path,
            source_text=self.source.text, comments=spec.comments, dims=dims, data_dims=data_dims,
            input_dims=input_dims, data=data, hypers=hypers, inputs=inputs, lets=lets, params=params,
            states=states, layers=layers, step=step, final=final, outputs=outputs, prev_used=list(self.prev_used),
            history_used=list(self.history_used),
            locals_types=dict(self.locals_types), nets=nets, requires=requires, noises=noises, until=until,
            loop_indices=list(self.loop_indices), layers_dim=self.layers_dim, size_hypers=sorted(self.size_hypers),
            dim_minimums=dict(self.dim_minimums), dim_relations=list(self.dim_relations),
            functions=[(f.name, f.line_span.line) for f in spec.functions], net_dims=dict(self.net_dims))



def check(spec: ast.Spec, source: Source, layers: int | None = None) -> ir.Program:
    """Check `spec` (its annotations as written) and return its typed program, or raise CompileError with
    every diagnostic.  `layers` is the `--layers` depth, needed here because `num_layers` is substituted
    into shapes; the other compile-time options are applied afterwards by `schedule.apply_schedule`."""
    return Checker(spec, source, layers).run()
