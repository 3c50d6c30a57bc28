"""Checker: AST -> typed IR.  Resolves names, infers shapes and dtypes with
symbolic dims, validates annotations and options, and records for every
expression the level at which it can be computed (see ir.py)."""

from __future__ import annotations

import builtins
import keyword
import math
import re
from dataclasses import dataclass, field

from . import ast, ir
from .ast import DimExpr
from .diagnostics import CompileError, Diagnostic, DiagnosticSink, Source, Span, did_you_mean
from .operators import INTERNAL_OPERATORS, OPERATORS, SPECIAL_FORMS, Arg, function_names

USER_OPERATORS = {name for name in OPERATORS if name not in INTERNAL_OPERATORS}
from .types import BOOL, COMPLEX, INT, OPERATOR, REAL, ShapeError, Type, broadcast, shape_str

# Names the generated Python uses itself; a spec may not declare them.
GENERATED_NAMES = {"self", "torch", "rt", "layer", "dtype", "cdtype", "device", "batch", "record", "states",
                   "unbatched", "batch_info", "dims"}
# Python builtins the generated code calls: a spec name may not shadow them (other builtins are fine)
USED_BUILTINS = {"range", "int", "float", "dict", "super", "min", "max", "len", "isinstance", "tuple", "list",
                 "type", "object", "print", "None", "True", "False"}
# Attributes of the generated module (torch.nn.Module and runtime.UnrolledModule, plus the class attributes
# the emitter writes): data, hyperparameters, constants and parameters become `self.<name>`, so a spec
# name may not shadow them.  Kept as a literal list: the compiler does not import torch.
MODULE_ATTRIBUTES = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "input_names", "ipu", "load_state_dict", "modules", "mtia",
    "monitor", "named_buffers", "named_children", "named_modules", "named_parameters", "num_layers", "output_names",
    "parameter_table", "parameter_values", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "report", "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "spec_name", "state_dict",
    "state_names", "to", "to_empty", "trace", "train", "training", "type", "xpu", "zero_grad",
    "spec_sha256", "compiler_version", "hyper_defaults",
}
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# How each kind of symbol is named in messages.
KIND_NOUN = {"dim": "dimension", "data": "data operator", "hyper": "hyperparameter", "input": "input",
             "let": "`let` constant", "param": "parameter", "state": "state", "local": "`let` value",
             "net": "sub-network"}


def _a(noun: str) -> str:
    """`noun` with its indefinite article."""
    return ("an " if noun.lstrip("`")[:1] in "aeiou" else "a ") + noun

BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow",
              "<": "lt", ">": "gt", "<=": "le", ">=": "ge", "==": "eq", "!=": "ne"}
PY_OPS = {"add", "sub", "mul", "div", "pow", "neg", "lt", "gt", "le", "ge", "eq", "ne"}

FLAGS_TRAIN = ("learned", "fixed")
FLAGS_TYING = ("shared", "per_layer")
FLAGS_CONSTRAINT = ("positive", "nonnegative", "range", "unit_columns")
ALL_FLAGS = FLAGS_TRAIN + FLAGS_TYING + FLAGS_CONSTRAINT


@dataclass
class Schedule:
    """Compile-time choices that override the spec's annotations (`unrollc compile` options)."""

    layers: int | None = None
    tie: list[str] = field(default_factory=list)
    untie: list[str] = field(default_factory=list)
    learn: list[str] = field(default_factory=list)
    freeze: list[str] = field(default_factory=list)
    # where each option value sits in the (reconstructed) command line, for diagnostics
    option_source: Source | None = None
    option_spans: dict = field(default_factory=dict)  # (option, name) -> Span


@dataclass
class Symbol:
    name: str
    kind: str  # dim | data | hyper | input | let | param | state | local | net
    type: Type
    level: int
    span: Span
    version: int = 0
    py: bool = False
    per_layer: bool = False
    static: object = None
    broken: bool = False  # its declaration had an error (already reported): uses stay silent


class Checker:
    def __init__(self, spec: ast.Spec, source: Source, schedule: Schedule | None = None):
        self.spec = spec
        self.source = source
        self.schedule = schedule or Schedule()
        self.sink = DiagnosticSink(source)
        self.scope: dict[str, Symbol] = {}
        self.depth = ir.FORWARD
        self.context = "top"
        self.allow_layer = False
        self.batched_states: set[str] = set()
        self.prev_used: list[str] = []
        self.history_used: list[str] = []
        self._depth_cache: int | None = None
        self.locals_types: dict[str, Type] = {}
        self.current: str | None = None  # the declaration being checked (for messages)
        self.reported: set[tuple[str, str]] = set()  # (kind, name) of unknown names already reported

    # ------------------------------------------------------------ helpers
    def error(self, message: str, span: Span | None, hint: str | None = None) -> None:
        self.sink.error(message, span, hint)

    def _declare(self, sym: Symbol) -> bool:
        name = sym.name
        problem = self._name_problem(name, sym.kind)
        if problem is not None:
            self.error(problem[0], sym.span, problem[1])
            self._poison(name, sym.kind, sym.span)
            return False
        if name in self.scope:
            prev = self.scope[name]
            diag = Diagnostic(f"`{name}` is already defined (as {_a(KIND_NOUN.get(prev.kind, prev.kind))})",
                              sym.span, "every name is declared once; rename one of them")
            diag.notes.append(("first defined here", prev.span))
            self.sink.items.append(diag)
            return False
        self.scope[name] = sym
        return True

    @staticmethod
    def _name_problem(name: str, kind: str) -> tuple[str, str] | None:
        """Why `name` cannot name a spec symbol (message, hint), or None if it can."""
        what = KIND_NOUN.get(kind, kind)
        fix = f"rename it, e.g. `{name.strip('_') or 'v'}_`"
        if name.startswith("__") and name.endswith("__") and len(name) > 4:
            return (f"`{name}` cannot name {_a(what)}: dunder names are reserved for Python",
                    f"names start with a letter; {fix}")
        if not IDENTIFIER.match(name):
            return (f"invalid name `{name}`: names start with a letter",
                    f"a leading `_` is reserved for the generated code; {fix}")
        if keyword.iskeyword(name) or keyword.issoftkeyword(name):
            return f"`{name}` is a Python keyword and cannot name {_a(what)}", fix
        if name in USER_OPERATORS or name in SPECIAL_FORMS:
            return f"`{name}` is an operator of the language and cannot name {_a(what)}", fix
        if name in GENERATED_NAMES:
            return (f"`{name}` is reserved and cannot name {_a(what)}",
                    f"the generated PyTorch code uses `{name}` itself; {fix}")
        if name in USED_BUILTINS or (name.startswith("__") and hasattr(builtins, name)):
            return (f"`{name}` is reserved and cannot name {_a(what)}",
                    f"the generated code calls the Python builtin `{name}`; {fix}")
        if name in MODULE_ATTRIBUTES:
            return (f"`{name}` is reserved and cannot name {_a(what)}",
                    f"the generated torch module has its own attribute `{name}`; {fix}")
        return None

    def _poison(self, name: str, kind: str, span: Span) -> None:
        """Enter a name whose declaration failed, so that its uses do not report follow-on errors."""
        if name not in self.scope:
            self.scope[name] = Symbol(name, kind, None, ir.CONST, span, broken=True)  # type: ignore[arg-type]

    def _declared_later(self, name: str):
        """(span, noun, block) of a declaration of `name` anywhere in the spec (top level, or a `let` of the
        `step:` or `final:` block), if any."""
        for d in self.spec.decls:
            if d.name == name:
                return d.span, KIND_NOUN.get(d.kind, d.kind), "top"

        def walk(body):
            for s in body or []:
                if isinstance(s, ast.Local) and s.target == name:
                    return s.target_span
                if isinstance(s, ast.Repeat):
                    found = walk(s.body)
                    if found:
                        return found
            return None

        for block, body in (("step", self.spec.step), ("final", self.spec.final)):
            found = walk(body)
            if found is not None:
                return found, "`let` value", block
        return None

    def _type(self, ts: ast.TypeSyntax, what: str, allow_int=False, allow_operator=False) -> Type | None:
        base_span = Span(ts.span.line, ts.span.column, ts.span.line, ts.span.column + len(ts.base))
        if ts.base == OPERATOR:
            if not allow_operator:
                self.error(f"{_a(what)} cannot have an operator type", ts.span,
                           "only data can be an operator; declare it `real[...]` or `complex[...]`")
                return None
            dims = self._dims(ts.dims or [], ts.dim_spans)
            out = self._dims(ts.out_dims or [], ts.dim_spans)
            if dims is None or out is None:
                return None
            return Type(OPERATOR, tuple(dims), False, tuple(out))
        if ts.base not in (REAL, COMPLEX, INT):
            hint = did_you_mean(ts.base, (REAL, COMPLEX, INT)) or "types are `real`, `complex`, `int` (hypers only)"
            self.error(f"unknown type `{ts.base}`", base_span, hint)
            return None
        if ts.base == INT and not allow_int:
            self.error(f"{_a(what)} cannot be `int`", base_span, "use `real` (integers are for hyperparameters)")
            return None
        dims = self._dims(ts.dims or [], ts.dim_spans)
        if dims is None:
            return None
        return Type(ts.base, tuple(dims))

    def _dims(self, dims: list[DimExpr], spans: list[Span]) -> list[DimExpr] | None:
        ok = True
        declared = [s.name for s in self.scope.values() if s.kind == "dim"]
        for i, d in enumerate(dims):
            span = spans[i] if i < len(spans) else None
            for name in sorted(d.names()):
                if name == "num_layers" and "*" not in "".join(n for n, _ in d.terms):
                    continue  # the depth: a compile-time constant, substituted below
                sym = self.scope.get(name)
                if sym is None or sym.kind != "dim":
                    ok = False
                    if ("dim", name) in self.reported:
                        continue  # one report per unknown dimension
                    self.reported.add(("dim", name))
                    hint = did_you_mean(name, declared)
                    if sym is not None:
                        self.error(f"`{name}` is {_a(KIND_NOUN.get(sym.kind, sym.kind))}, not a dimension", span,
                                   hint or "sizes in a type are names declared with `dims` or integers")
                    else:
                        self.error(f"unknown dimension `{name}`", span,
                                   hint or f"declare it with the others: `dims {', '.join(declared + [name])}`")
            if d.is_int and d.const <= 0:
                ok = False
                self.error(f"a dimension must be positive, got {d.const}", span,
                           "a scalar has no brackets: write `real`, not `real[0]`" if d.const == 0 else None)
        if not ok:
            return None
        return [self._substitute_depth(d) for d in dims]

    def _depth(self) -> int:
        """The number of layers (`layers N` or `--layers`), known at compile time; 1 if invalid
        (`_layers` reports why)."""
        if self._depth_cache is None:
            depth = self.schedule.layers
            if depth is None and self.spec.layers is not None:
                # evaluate `layers N` quietly: `_layers` reports any problem with that line, once
                errors, reported = len(self.sink.items), set(self.reported)
                node = self.expr(self.spec.layers)
                del self.sink.items[errors:]
                self.reported = reported
                depth = _constant_value(node) if node is not None else None
            self._depth_cache = depth if isinstance(depth, int) and depth > 0 else 1
        return self._depth_cache

    def _substitute_depth(self, d: DimExpr) -> DimExpr:
        if "num_layers" not in dict(d.terms):
            return d
        coef = dict(d.terms)["num_layers"]
        return DimExpr(tuple(t for t in d.terms if t[0] != "num_layers"), d.const + coef * self._depth())

    # ------------------------------------------------------------ expressions
    def expr(self, e: ast.Expr) -> ir.Node | None:
        method = getattr(self, "_e_" + type(e).__name__)
        return method(e)

    def _e_Number(self, e: ast.Number):
        is_int = isinstance(e.value, int)
        if not is_int and not math.isfinite(e.value):
            self.error(f"the number `{e.text}` is too large (it overflows to infinity)", e.span,
                       "numbers must be finite double-precision values (below about 1.8e308)")
            return None
        return ir.Node("number", [], Type(INT if is_int else REAL), e.span, ir.CONST, {"value": e.value},
                       py=True, static=e.value if is_int else None)

    def _e_String(self, e: ast.String):
        sym = self.scope.get(e.value)
        hint = (f"to use `{e.value}`, write it without quotes" if sym is not None or e.value == "layer" else
                "a string is only the title on the `spec` line")
        self.error("a string cannot be used as a value", e.span, hint)
        return None

    def _e_ListExpr(self, e: ast.ListExpr):
        items = [self.expr(i) for i in e.items]
        if any(i is None for i in items):
            return None
        dims = []
        for node in items:
            if isinstance(node.static, DimExpr):
                dims.append(node.static)
            elif isinstance(node.static, int):
                dims.append(DimExpr.of(node.static))
            else:
                self.error("a list holds dimensions (dim names or integers)", node.span)
                return None
        return ir.Node("list", items, Type(INT, (DimExpr.of(len(dims)),)), e.span, ir.CONST, py=True,
                       static=tuple(dims))

    def _e_Name(self, e: ast.Name):
        name = e.name
        if name == "num_layers":
            depth = self._depth()
            return ir.Node("number", [], Type(INT), e.span, ir.CONST, {"value": depth}, py=True, static=depth)
        if name == "layer":
            if not self.allow_layer:
                if self.context == "param" and self.current in self.schedule.tie:
                    self.error(f"`--tie {self.current}` cannot share `{self.current}`: its default depends on `layer`",
                               e.span, "a shared parameter has one value for all layers; drop "
                               f"`{self.current}` from `--tie`")
                elif self.context == "param":
                    self.error(f"the shared parameter `{self.current}` cannot depend on `layer`", e.span,
                               "a shared parameter has one value for all layers; mark it `per_layer` to give each "
                               "layer its own default")
                else:
                    where = {"let": "in a top-level `let` (computed once, before the layers)",
                             "hyper": "in a hyperparameter", "state": "in the initial value of a state",
                             "require": "in a `require` condition (checked at construction)",
                             "final": "in the `final:` block (after the layers)",
                             "top": "here"}.get(self.context, "here")
                    self.error(f"`layer` is not available {where}", e.span,
                               "`layer` is the layer index: use it in the `step:` block or in the default of a "
                               "`per_layer` parameter")
                return None
            return ir.Node("var", [], Type(INT), e.span, ir.LAYER, {"name": "layer", "kind": "layer"}, py=True)
        sym = self.scope.get(name)
        if sym is None:
            if name in USER_OPERATORS or name in SPECIAL_FORMS:
                self.error(f"`{name}` is an operator; call it: `{name}(...)`", e.span)
                return None
            later = self._declared_later(name)
            if later is not None and later[0].line > e.span.line:
                diag = Diagnostic(f"`{name}` is used before it is declared", e.span,
                                  f"move the declaration of `{name}` above this line; a spec is read top to bottom")
                diag.notes.append((f"`{name}` is declared here, as {_a(later[1])}", later[0]))
                self.sink.items.append(diag)
                return None
            if later is not None and later[0].line == e.span.line:
                self.error(f"`{name}` is used in its own definition", e.span,
                           "a definition can only use names declared above it")
                return None
            if later is not None and later[2] == "step" and self.context != "step":
                self.error(f"`{name}` is a temporary of the `step:` block and does not exist here", e.span,
                           f"to use its value after the loop, declare a state (`state {name} : ... = 0`) and "
                           "assign it in the step")
                return None
            if ("name", name) in self.reported:
                return None  # one report per unknown name
            self.reported.add(("name", name))
            candidates = [n for n, x in self.scope.items() if not x.broken] + (["layer"] if self.allow_layer else [])
            hint = did_you_mean(name, candidates) or "declare it first (`hyper`, `param`, `let`, `state`, `data` or " \
                                                      "`input`)"
            self.error(f"unknown name `{name}`", e.span, hint)
            return None
        if sym.broken:
            return None
        if not self._visible(sym, e.span):
            return None
        if sym.kind == "dim":
            return ir.Node("var", [], Type(INT), e.span, sym.level, {"name": name, "kind": "dim"}, py=True,
                           static=DimExpr.of(name))
        if sym.kind == "net":
            self.error(f"`{name}` is a sub-network; call it: `{name}(...)`", e.span)
            return None
        typ = sym.type
        if sym.kind == "state" and name in self.batched_states:
            typ = typ.with_(batched=True)
        return ir.Node("var", [], typ, e.span, sym.level,
                       {"name": name, "kind": sym.kind, "version": sym.version, "per_layer": sym.per_layer},
                       py=sym.py, static=sym.static)

    def _visible(self, sym: Symbol, span: Span) -> bool:
        ctx = self.context
        if sym.kind == "param" and sym.per_layer and ctx in ("let", "state", "final"):
            where = {"let": "a top-level `let`", "state": "the initial value of a state",
                     "final": "the `final:` block"}[ctx]
            self.error(f"the per-layer parameter `{sym.name}` cannot be used in {where}", span,
                       "it has one value per layer and there is no layer here; use it inside `step:`, or make it "
                       "`shared`")
            return False
        if ctx == "require" and sym.kind not in ("dim", "data", "hyper", "let"):
            self.error(f"a `require` condition cannot use the {KIND_NOUN.get(sym.kind, sym.kind)} `{sym.name}`", span,
                       "requirements are checked once at construction, on data, hyperparameters and constants")
            return False
        if ctx in ("param", "hyper") and sym.kind in ("input", "state", "local"):
            what = "parameter default" if ctx == "param" else "hyperparameter default"
            self.error(f"a {what} cannot use the {KIND_NOUN[sym.kind]} `{sym.name}`", span,
                       "defaults are computed once at construction, from data, hyperparameters and constants")
            return False
        if ctx in ("param", "hyper") and sym.kind == "let" and sym.level > ir.CONST:
            self.error(f"`{sym.name}` depends on inputs or parameters and cannot be used in a parameter default", span,
                       "defaults are computed once at construction, from data, hyperparameters and constants")
            return False
        if ctx == "let" and sym.kind == "state":
            self.error(f"`let` at the top level cannot use the state `{sym.name}`", span,
                       "move the computation into the `step:` block (`let` there is a per-layer temporary)")
            return False
        return True

    def _e_Unary(self, e: ast.Unary):
        operand = self.expr(e.operand)
        if operand is None:
            return None
        return self._apply("neg", [operand], e.span, [e.operand.span])

    def _e_Binary(self, e: ast.Binary):
        left, right = self.expr(e.left), self.expr(e.right)
        if left is None or right is None:
            return None
        return self._apply(BINARY_OPS[e.op], [left, right], e.span, [e.left.span, e.right.span], symbol=e.op)

    def _e_Attribute(self, e: ast.Attribute):
        value = self.expr(e.value)
        if value is None:
            return None
        if e.attr in ("T", "H"):
            return self._apply("transpose" if e.attr == "T" else "adjoint", [value], e.span, [e.value.span],
                               symbol="." + e.attr)
        self.error(f"unknown attribute `.{e.attr}`", e.attr_span,
                   did_you_mean(e.attr, ["T", "H"]) or "the attributes are `.T` (transpose) and `.H` (conjugate transpose)")
        return None

    def _e_Index(self, e: ast.Index):
        value, index = self.expr(e.value), self.expr(e.index)
        if value is None or index is None:
            return None
        if value.type.rank == 0:
            self.error(f"cannot index a scalar ({value.type})", e.span,
                       f"`{self._text(e.value.span)}` has no axes; use it without `[...]`")
            return None
        if index.type.dtype != INT or index.type.rank != 0 or index.type.batched:
            self.error(f"an index must be an integer, got {index.type}", e.index.span,
                       "index with an integer literal, an `int` hyperparameter or `layer`")
            return None
        if isinstance(index.static, int) and isinstance(value.type.shape[0], DimExpr) and value.type.shape[0].is_int:
            if not 0 <= index.static < value.type.shape[0].const:
                self.error(f"index {index.static} is out of range for axis of size {value.type.shape[0]}", e.index.span,
                           f"indices start at 0 and go up to {value.type.shape[0].const - 1}")
                return None
        typ = value.type.with_(shape=value.type.shape[1:])
        return ir.Node("index", [value, index], typ, e.span, max(value.level, index.level))

    def _e_Call(self, e: ast.Call):
        if isinstance(e.func, ast.Name):
            name = e.func.name
            if name == "prev":
                return self._prev(e)
            if name == "history_sum":
                return self._history_sum(e)
            if name == "grad":
                return self._grad(e)
            target = self.scope.get(name)
            if target is not None and not target.broken and target.kind == "net":
                return self._net_call(e, target)
            if target is not None and not target.broken and target.type is not None \
                    and target.type.dtype == OPERATOR:
                return self._op_apply(e, target, adjoint=False)
            op = OPERATORS.get(name)
            if op is None or name in INTERNAL_OPERATORS:
                sym = self.scope.get(name)
                if sym is not None and sym.broken:
                    return None
                if sym is not None and sym.type is not None and sym.type.dtype != OPERATOR and sym.kind != "dim":
                    arg = self._text(e.args[0].span) if len(e.args) == 1 else "x"
                    noun = KIND_NOUN.get(sym.kind, sym.kind)
                    self.error(f"`{name}` is {_a(noun)} of type {sym.type}, not a function: it cannot be called",
                               e.func.span, f"apply a matrix with `@`: `{name} @ {arg}`" if sym.type.rank == 2
                               else f"for a product write `{name} * {arg}`")
                    return None
                hint = did_you_mean(name, function_names()) or "`unrollc ops` lists the operators"
                self.error(f"unknown operator `{name}`", e.func.span, hint)
                return None
            if e.kwargs:
                kw = e.kwargs[0]
                self.error(f"`{name}` takes no keyword arguments", kw.span,
                           f"pass the value by position: drop `{kw.name}=`")
                return None
            n = len(e.args)
            if not op.min_args <= n <= op.max_args:
                want = (str(op.min_args) if op.min_args == op.max_args else f"{op.min_args} to {op.max_args}")
                hint = f"`{name}`: {op.doc}" + (f"; for example `{op.example}`" if op.example else "")
                self.error(f"`{name}` takes {want} argument{'s' if want != '1' else ''}, got {n}", e.span, hint)
                return None
            args = [self.expr(a) for a in e.args]
            if any(a is None for a in args):
                return None
            for i in op.static_args:
                if i < len(args) and not isinstance(args[i].static, int):
                    self.error(f"argument {i + 1} of `{name}` must be an integer literal", e.args[i].span)
                    return None
            return self._apply(name, args, e.span, [a.span for a in e.args], call=True)
        if isinstance(e.func, ast.Attribute) and isinstance(e.func.value, ast.Name) and e.func.attr in ("H", "T"):
            target = self.scope.get(e.func.value.name)
            if target is not None and target.type is not None and target.type.dtype == OPERATOR:
                return self._op_apply(e, target, adjoint=True)
        self.error("only named operators can be called", e.func.span,
                   "to multiply by a parenthesised expression, write `*` before the `(`")
        return None

    def _apply(self, opname: str, args: list[ir.Node], span: Span, arg_spans: list[Span], symbol=None,
               call=False) -> ir.Node | None:
        op = OPERATORS[opname]
        dim_args = op.extra.get("dim_args")
        emit_args = []
        for i, a in enumerate(args):
            static = a.static
            if dim_args and (dim_args is True or i in dim_args) and isinstance(static, int):
                static = DimExpr.of(static)
            emit_args.append(Arg("", a.type, py=a.py, static=static))
        try:
            out = op.infer([a.type for a in args], emit_args)
        except ShapeError as err:
            where = arg_spans[err.arg] if err.arg is not None and err.arg < len(arg_spans) else span
            if symbol in BINARY_OPS and "broadcast" in err.message:
                where = span  # a mismatch between both operands: point at the whole `a + b`
            if symbol is not None and symbol.startswith("."):
                where = span  # `.T` of the wrong thing: point at the whole `x.T`
            label = symbol or opname
            msg = err.message
            hint = err.hint
            bad = args[err.arg] if err.arg is not None and err.arg < len(args) else None
            if hint is None and bad is not None and "integer" in msg and bad.type.dtype == REAL and bad.type.rank == 0:
                if bad.op == "var" and bad.attrs.get("kind") == "hyper":
                    hint = f"`{bad.attrs['name']}` is a real hyperparameter; use an integer one, e.g. " \
                           f"`hyper k : int = 3`"
                else:
                    hint = "write an integer literal or an `int` hyperparameter, e.g. `hyper k : int = 3`"
            if not call and symbol is not None and f"`{label}`" not in msg:
                msg = f"in `{label}`: {msg}"
            self.error(msg, where, hint)
            return None
        level = max([a.level for a in args], default=ir.CONST)
        py = opname in PY_OPS and all(a.py for a in args)
        if opname in ("max", "min") and len(args) == 2 and all(a.py for a in args):
            py = True
        static = None
        if py and opname in ("add", "sub", "mul") and all(isinstance(a.static, int) for a in args):
            static = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}[opname](
                args[0].static, args[1].static)
        elif opname in ("add", "mul") and all(isinstance(a.static, (int, DimExpr)) for a in args) \
                and any(isinstance(a.static, DimExpr) for a in args):
            # dimension arithmetic (`nx*nz`, `2*h + 1`): stays symbolic for shape rules like `reshape`
            x, y = (DimExpr.of(a.static) for a in args)
            static = x + y if opname == "add" else x * y
        return ir.Node(opname, args, out, span, level, {"statics": tuple(a.static for a in emit_args)}, py=py,
                       static=static)

    def _prev(self, e: ast.Call):
        states = [s.name for s in self.scope.values() if s.kind == "state" and not s.broken]
        if self.context != "step":
            where = {"final": "in the `final:` block"}.get(self.context, "outside the `step:` block")
            hint = ("after the loop, a state already holds its value from the last layer: use it directly"
                    if self.context == "final" else
                    "`prev(x)` is the value of the state `x` at the start of the current layer")
            self.error(f"`prev(...)` is only available in the `step:` block, not {where}", e.span, hint)
            return None
        if len(e.args) != 1 or not isinstance(e.args[0], ast.Name):
            self.error("`prev` takes one state name: `prev(x)`", e.span,
                       "to use an expression of the previous values, apply `prev` to each state in it")
            return None
        name = e.args[0].name
        sym = self.scope.get(name)
        if sym is not None and sym.broken:
            return None
        if sym is None or sym.kind != "state":
            what = "not defined" if sym is None else _a(KIND_NOUN.get(sym.kind, sym.kind))
            hint = did_you_mean(name, states) or (
                "`prev` is the value of a state at the start of the layer; the states are "
                + ", ".join(f"`{x}`" for x in states) if states else "this spec declares no states")
            if sym is not None and sym.kind != "local":
                hint += f"; `{name}` does not change across layers, use it directly"
            self.error(f"`prev` needs a state, but `{name}` is {what}", e.args[0].span, hint)
            return None
        if name not in self.prev_used:
            self.prev_used.append(name)
        typ = sym.type.with_(batched=name in self.batched_states)
        return ir.Node("var", [], typ, e.span, ir.LAYER, {"name": name, "kind": "state", "prev": True, "version": -1})

    def _history_sum(self, e: ast.Call):
        """`history_sum(beta, x)`: sum_j beta[j] * x^(j), j = 0..layer, over the values the state x had at
        the start of each layer so far (x^(0) its initial value)."""
        if self.context != "step":
            self.error("`history_sum(...)` is only available in the `step:` block", e.span,
                       "it combines the values a state had at the start of the layers run so far")
            return None
        if len(e.args) != 2 or e.kwargs or not isinstance(e.args[1], ast.Name):
            self.error("`history_sum` takes a weight vector and a state name: `history_sum(beta, x)`", e.span)
            return None
        name = e.args[1].name
        sym = self.scope.get(name)
        if sym is not None and sym.broken:
            return None
        if sym is None or sym.kind != "state":
            states = [s.name for s in self.scope.values() if s.kind == "state" and not s.broken]
            self.error(f"`history_sum` needs a state, but `{name}` is not one", e.args[1].span,
                       did_you_mean(name, states) or "the history is kept for states only")
            return None
        beta = self.expr(e.args[0])
        if beta is None:
            return None
        depth = self._depth()
        if beta.type.dtype not in (REAL, INT) or beta.type.rank != 1 or beta.type.shape[0] != DimExpr.of(depth) \
                or beta.type.batched:
            self.error(f"the weights of `history_sum` are a real vector [num_layers] (here [{depth}]), got {beta.type}",
                       e.args[0].span, "declare them per layer: `param beta : real[num_layers] = onehot(layer, "
                       "num_layers) learned per_layer` (layer l uses beta[0..l])")
            return None
        if name not in self.history_used:
            self.history_used.append(name)
        typ = sym.type.with_(batched=name in self.batched_states)
        return ir.Node("history_sum", [beta], typ, e.span, ir.LAYER, {"name": name})

    def _grad(self, e: ast.Call):
        from .grad import GradError, gradient_ast

        if len(e.args) != 2 or not isinstance(e.args[1], ast.Name):
            self.error("`grad` takes an expression and a variable: `grad(0.5 * norm(A @ x - y)^2, x)`", e.span)
            return None
        f = self.expr(e.args[0])
        if f is None:
            return None
        if f.type.rank != 0:
            self.error(f"`grad` needs a scalar function, got {f.type}", e.args[0].span,
                       "wrap the expression in `norm(...)^2`, `sum(...)` or `dot(...)`")
            return None
        wrt = e.args[1].name
        sym = self.scope.get(wrt)
        if sym is None:
            self.error(f"unknown name `{wrt}`", e.args[1].span, did_you_mean(wrt, list(self.scope)))
            return None
        if any(n.type.dtype == COMPLEX for n in f.walk()):
            self.error("`grad` handles real expressions only", e.args[0].span,
                       "for complex data write the gradient by hand, e.g. `A.H @ (A @ x - y)`")
            return None
        try:
            expr = gradient_ast(e.args[0], wrt, self._symbol_shapes(), e.span)
        except GradError as err:
            self.error(f"cannot differentiate: {err}", e.args[0].span,
                       "grad supports sums, scalar multiples, `@`, `.T`, `norm(.)^2`, `dot`, `sum`, and elementwise "
                       "`*` with constants")
            return None
        node = self.expr(expr)
        if node is not None and node.type.shape != sym.type.shape:
            self.error(f"internal: gradient has shape {shape_str(node.type.shape)}, expected "
                       f"{shape_str(sym.type.shape)}", e.span)
            return None
        if node is not None:
            node.attrs["grad_of"] = self._text(e.args[0].span)
        return node

    def _symbol_shapes(self) -> dict[str, tuple]:
        return {n: (s.kind, s.type.shape if s.type else ()) for n, s in self.scope.items()}

    def _text(self, span: Span) -> str:
        if span.line != span.end_line:
            return self.source.line_text(span.line)[span.column - 1:].strip()
        return self.source.line_text(span.line)[span.column - 1: span.end_column - 1]

    # ------------------------------------------------------------ declarations
    def run(self) -> ir.Program:
        for _ in range(3):  # states become batched when an update makes them so: iterate to a fixpoint
            before = set(self.batched_states)
            program = self._run_once()
            if self.sink.items or self.batched_states == before:
                break
            self.sink = DiagnosticSink(self.source)
        self.sink.raise_if_any()
        return program

    def _run_once(self) -> ir.Program:
        spec = self.spec
        self.scope = {}
        self.prev_used = []
        self.history_used = []
        self.locals_types = {}
        self.reported = set()
        data, hypers, inputs, lets, params, states, nets = [], [], [], [], [], [], []
        requires: list[ir.Require] = []
        self._let_values: dict[str, ir.Node] = {}
        self._net_info: dict[str, ir.Net] = {}
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
        # dims first (they may be used by any type)
        for d in decls:
            if d.kind == "dim":
                if self._declare(Symbol(d.name, "dim", Type(INT), ir.CONST, d.span)):
                    dims.append(d.name)
        for d in decls:
            line = d.line_span.line
            if d.kind == "dim":
                continue
            self.current = d.name
            if d.kind == "data":
                t = self._type(d.type, "data operator", allow_operator=True)
                if t is None:
                    self._poison(d.name, "data", d.span)
                    mentioned.update(n for dim in d.type.dims or [] for n in dim.names())
                    continue
                if self._declare(Symbol(d.name, "data", t, ir.CONST, d.span)):
                    data.append(ir.Data(d.name, t, d.span, line))
                    for axis, dim in enumerate(t.shape if t.dtype != OPERATOR else ()):
                        if len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const and "*" not in dim.terms[0][0]:
                            data_dims.setdefault(dim.terms[0][0], (d.name, axis))
            elif d.kind == "hyper":
                h = self._hyper(d)
                if h is not None:
                    hypers.append(h)
                else:
                    self._poison(d.name, "hyper", d.span)
            elif d.kind == "input":
                t = self._type(d.type, "input")
                if t is None:
                    self._poison(d.name, "input", d.span)
                    mentioned.update(n for dim in d.type.dims or [] for n in dim.names())
                    continue
                t = t.with_(batched=True)
                if self._declare(Symbol(d.name, "input", t, ir.FORWARD, d.span)):
                    inputs.append(ir.Input(d.name, t, d.span, line))
                    for axis, dim in enumerate(t.shape):
                        if len(dim.terms) == 1 and dim.terms[0][1] == 1 and not dim.const and "*" not in dim.terms[0][0]:
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
            elif d.kind == "net":
                net = self._net(d, data_dims)
                if net is not None:
                    nets.append(net)
                else:
                    self._poison(d.name, "net", d.span)
        self.current = None

        # dims must be bound by data or inputs
        for name in dims:
            operator_dims = {n for x in data if x.type.dtype == OPERATOR
                             for dim in tuple(x.type.shape) + tuple(x.type.out_shape or ()) for n in dim.names()}
            if name not in data_dims and name not in input_dims and name not in mentioned \
                    and name not in operator_dims:
                sym = self.scope[name]
                self.error(f"dimension `{name}` is not the size of any data or input axis", sym.span,
                           "give a data operator or an input a type that uses it, e.g. `input y : real[" + name + "]`")
        # dims bound only by inputs: known per forward call
        for name in input_dims:
            if name not in data_dims and name in self.scope:
                self.scope[name].level = ir.FORWARD

        self._check_options(params)
        layers = self._layers()

        # step
        step: list = []
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
            # after the loop, states hold their final values (level FORWARD for the final stage)
            for name in list(self.scope):
                sym = self.scope[name]
                if sym.kind == "local":
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
            elif sym.kind not in ("state", "local", "let", "input"):
                self.error(f"output `{name}` is {_a(KIND_NOUN.get(sym.kind, sym.kind))}; outputs are states, `let` "
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
            locals_types=dict(self.locals_types), nets=nets, requires=requires)

    def _require(self, d: ast.Decl) -> ir.Require | None:
        """`require COND, "message"`: a condition on data and hyperparameters, checked at construction."""
        self.context = "require"
        node = self.expr(d.value)
        self.context = "top"
        if node is None:
            return None
        if node.type.dtype != BOOL:
            self.error("a `require` condition must be a comparison", d.value.span,
                       "compare a value with a bound, e.g. `require max(abs(A)) < 10, \"entries of A are bounded\"`")
            return None
        if node.level > ir.CONST:
            self.error("a `require` condition must be known at construction", d.value.span,
                       "use only data, hyperparameters, dims and top-level `let` constants that depend on them")
            return None
        names: list[str] = []

        def collect(n: ir.Node):  # the data and hyperparameters read, through constant `let`s
            for m in n.walk():
                if m.op != "var" or m.attrs["name"] in names:
                    continue
                if m.attrs.get("kind") in ("data", "hyper"):
                    names.append(m.attrs["name"])
                elif m.attrs.get("kind") == "let" and m.attrs["name"] in self._let_values:
                    collect(self._let_values[m.attrs["name"]])

        collect(node)
        message = d.message if d.message is not None else f"requirement `{self._text(d.value.span)}` does not hold"
        return ir.Require(node, message, names, d.line_span, d.line_span.line)

    def _code_line(self, line: int | None = None, first: bool = False) -> Span:
        """A span on the first token of a line of code: `line`, else the first or the last code line."""
        rows = self.source.text.split("\n")
        if line is None:
            order = range(1, len(rows) + 1) if first else range(len(rows), 0, -1)
            line = next((i for i in order if rows[i - 1].strip() and not rows[i - 1].strip().startswith("#")),
                        1 if first or not rows else max(1, len(self.source.text.rstrip("\n").split("\n"))))
        text = self.source.line_text(line)
        col = len(text) - len(text.lstrip()) + 1
        word = text.strip().split(" ")[0].split("(")[0] if text.strip() else ""
        return Span.point(line, col, len(word))

    def _hyper(self, d: ast.Decl):
        dtype = REAL
        if d.type is not None:
            if d.type.base not in (REAL, INT) or d.type.dims:
                self.error("a hyperparameter is a `real` or `int` scalar", d.type.span,
                           "for a tensor that is not trained, declare a parameter with `fixed`, e.g. "
                           f"`param {d.name} : {d.type.base}[...] = ... fixed`" if d.type.dims else
                           "write `hyper NAME = 0.1` (real) or `hyper NAME : int = 3`")
                return None
            dtype = d.type.base
        self.context = "hyper"
        node = self.expr(d.value)
        self.context = "top"
        if node is None:
            return None
        value = _constant_value(node)
        if value is None:
            self.error("a hyperparameter default must be a number", d.value.span,
                       f"hyperparameters are plain numbers given to the constructor (`hyper {d.name} = 0.1`); "
                       f"for a value computed from data write `let {d.name} = {self._text(d.value.span)}`")
            return None
        if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
            self.error(f"the default of `{d.name}` is not a finite number ({value})", d.value.span,
                       "give a finite real number")
            return None
        if d.type is None and isinstance(value, int) and not isinstance(value, bool):
            dtype = INT
        if dtype == INT and not float(value).is_integer():
            self.error(f"`{d.name}` is an `int` hyperparameter but its default is {value}", d.value.span,
                       f"give a whole number (`hyper {d.name} : int = {int(value)}`) or declare it `real`")
            return None
        value = int(value) if dtype == INT else float(value)
        t = Type(dtype)
        if self._declare(Symbol(d.name, "hyper", t, ir.CONST, d.span, py=True,
                                static=value if dtype == INT else None)):
            return ir.Hyper(d.name, dtype, value, d.span, d.line_span.line)
        return None

    def _param(self, d: ast.Decl):
        t = self._type(d.type, "parameter")
        if t is None:
            return None
        learned, per_layer, constraint, cargs = True, False, None, ()
        seen: dict[str, ast.Annotation] = {}
        ok = True
        for a in d.annotations:
            if a.name not in ALL_FLAGS:
                self.error(f"unknown annotation `{a.name}`", a.span,
                           did_you_mean(a.name, ALL_FLAGS) or "annotations: " + ", ".join(ALL_FLAGS))
                ok = False
                continue
            group = next(g for g in (FLAGS_TRAIN, FLAGS_TYING, FLAGS_CONSTRAINT) if a.name in g)
            clash = next((seen[n] for n in group if n in seen), None)
            if clash is not None:
                hint = (f"keep one: a parameter is either {' or '.join(f'`{g}`' for g in group)}"
                        if group is not FLAGS_CONSTRAINT else "a parameter has at most one constraint; keep one")
                if clash.name == a.name:
                    hint = f"`{a.name}` is given twice; remove one"
                diag = Diagnostic(f"conflicting annotations `{clash.name}` and `{a.name}`", a.span, hint)
                diag.notes.append((f"`{clash.name}` given here", clash.span))
                self.sink.items.append(diag)
                ok = False
                continue
            seen[a.name] = a
            if a.name == "range":
                vals = [_constant_value(n) for n in (self._const_arg(x) for x in a.args)]
                if len(a.args) != 2 or any(v is None for v in vals):
                    self.error("`range` takes two numbers: `range(lo, hi)`", a.span,
                               "the bounds are numbers or arithmetic on numbers, e.g. `range(0, 1)`")
                    ok = False
                    continue
                if not vals[0] < vals[1]:
                    self.error(f"empty range: the lower bound {vals[0]} is not below the upper bound {vals[1]}",
                               a.span, f"write the lower bound first: `range({vals[1]}, {vals[0]})`"
                               if vals[0] > vals[1] else "the bounds must differ")
                    ok = False
                    continue
                constraint, cargs = "range", (float(vals[0]), float(vals[1]))
            elif a.args:
                self.error(f"`{a.name}` takes no arguments", a.span, f"write `{a.name}` without parentheses")
                ok = False
            elif a.name in FLAGS_CONSTRAINT:
                constraint = a.name
            elif a.name == "fixed":
                learned = False
            elif a.name == "per_layer":
                per_layer = True
        # compile-time options override the spec
        sch = self.schedule
        if d.name in sch.tie:
            per_layer = False
        if d.name in sch.untie:
            per_layer = True
        if d.name in sch.learn:
            learned = True
        if d.name in sch.freeze:
            learned = False
        if constraint is not None and t.dtype == COMPLEX:
            self.error(f"the constraint `{constraint}` needs a real parameter", d.type.span,
                       "declare the parameter `real[...]`, or drop the constraint")
            ok = False
        if constraint == "unit_columns" and t.rank != 2:
            self.error(f"`unit_columns` needs a matrix parameter, but `{d.name}` is {t}", d.type.span,
                       "it normalises each column to unit norm: declare a `real[p, q]` matrix, or drop it")
            ok = False
        self.context = "param"
        self.allow_layer = per_layer
        init = self.expr(d.value)
        self.allow_layer = False
        self.context = "top"
        if init is None:
            return None
        uses_layer = any(n.op == "var" and n.attrs.get("kind") == "layer" for n in init.walk())
        if broadcast(t.shape, init.type.shape) != t.shape:
            hint = "the default must have the declared shape (or broadcast to it)"
            if t.rank == 2 and init.type.shape == tuple(reversed(t.shape)):
                hint = f"the default is the transpose of the declared shape: take `({self._text(d.value.span)}).T`"
            self.error(f"default value of `{d.name}` has shape {shape_str(init.type.shape)}, but the parameter is "
                       f"{t}", d.value.span, hint)
            ok = False
        if init.type.dtype == COMPLEX and t.dtype == REAL:
            self.error(f"complex default for the real parameter `{d.name}`", d.value.span,
                       "declare it `complex[...]` or take `real(...)`")
            ok = False
        if init.type.dtype == BOOL:
            self.error("a parameter default cannot be a comparison", d.value.span,
                       "use the comparison inside `where(cond, a, b)`")
            ok = False
        if not ok:
            return None
        level = ir.LAYER if per_layer else ir.FORWARD
        if self._declare(Symbol(d.name, "param", t, level, d.span, per_layer=per_layer)):
            text = " ".join(a.name if not a.args else self._text(a.span) for a in d.annotations)
            return ir.Param(d.name, t, init, learned, per_layer, constraint, cargs, d.span, d.line_span.line,
                            uses_layer, text)
        return None

    NET_OPTIONS = {"cnn": {"in": "in_channels", "out": "out_channels", "width": "width", "depth": "depth",
                           "kernel": "kernel", "init": "init"},
                   "mlp": {"in": "in_features", "out": "out_features", "width": "width", "depth": "depth",
                           "init": "init"}}

    def _net(self, d: ast.Decl, data_dims: dict):
        """`net NAME : cnn(in=.., out=.., width=32, depth=3, kernel=3, init=zero) learned per_layer`."""
        kinds = self.NET_OPTIONS
        if d.net_kind not in kinds:
            self.error(f"unknown sub-network kind `{d.net_kind}`", d.value.span,
                       did_you_mean(d.net_kind, kinds) or "kinds: " + ", ".join(f"`{k}`" for k in kinds))
            return None
        allowed = kinds[d.net_kind]
        options: dict[str, str] = {}
        sizes: dict[str, DimExpr] = {}
        for arg in d.net_args:
            if not isinstance(arg, ast.Keyword):
                self.error("sub-network options are given by name, e.g. `cnn(in=3, out=5, width=32, depth=3)`",
                           arg.span)
                return None
            if arg.name not in allowed:
                self.error(f"`{d.net_kind}` has no option `{arg.name}`", arg.span,
                           did_you_mean(arg.name, allowed) or "options: " + ", ".join(f"`{k}`" for k in allowed))
                return None
            if arg.name == "init":
                if not (isinstance(arg.value, ast.Name) and arg.value.name in ("zero", "default")):
                    self.error("`init` is `zero` (the sub-network starts as the zero map) or `default`",
                               arg.value.span)
                    return None
                options["init"] = repr(arg.value.name)
                continue
            value = arg.value
            if isinstance(value, ast.Number) and isinstance(value.value, int) and value.value > 0:
                dim = DimExpr.of(value.value)
            elif isinstance(value, ast.Name) and value.name in self.scope and self.scope[value.name].kind == "dim":
                if value.name not in data_dims:
                    self.error(f"the size `{value.name}` of a sub-network must be known at construction", value.span,
                               "use an integer or a dimension bound by a data operator")
                    return None
                dim = DimExpr.of(value.name)
            elif isinstance(value, ast.Binary) and value.op in ("+", "*"):
                # a size expression of data-bound dims and integers, e.g. `in=C+1`
                names = self._ast_names(value)
                late = [n for n in names if n not in data_dims]
                if late:
                    self.error(f"the sizes of a sub-network must be known at construction: `{late[0]}` is not bound "
                               "by a data operator", value.span, "use integers or dims bound by data declarations")
                    return None
                node = self.expr(value)
                if node is None:
                    return None
                if not isinstance(node.static, (int, DimExpr)) or isinstance(node.static, bool):
                    self.error(f"`{arg.name}` must be a positive integer, a dimension or a sum/product of them",
                               value.span)
                    return None
                dim = DimExpr.of(node.static)
            else:
                self.error(f"`{arg.name}` must be a positive integer or a dimension", value.span,
                           "sizes may be sums and products of dims and integers, e.g. `in=C+1`")
                return None
            sizes[arg.name] = dim
            options[allowed[arg.name]] = dim.python()
        for required in ("in", "out"):
            if required not in sizes:
                self.error(f"`{d.net_kind}` needs `{required}=`", d.value.span,
                           f"for example `{d.net_kind}(in=3, out=5)`")
                return None
        learned, per_layer = True, False
        for a in d.annotations:
            if a.name in ("learned", "fixed"):
                learned = a.name == "learned"
            elif a.name in ("shared", "per_layer"):
                per_layer = a.name == "per_layer"
            else:
                self.error(f"a sub-network takes `learned`/`fixed` and `shared`/`per_layer`, not `{a.name}`", a.span)
                return None
        sch = self.schedule
        per_layer = (per_layer or d.name in sch.untie) and d.name not in sch.tie
        learned = (learned or d.name in sch.learn) and d.name not in sch.freeze
        level = ir.LAYER if per_layer else ir.FORWARD
        if self._declare(Symbol(d.name, "net", Type("net"), level, d.span, per_layer=per_layer)):
            net = ir.Net(d.name, d.net_kind, options, sizes["in"], sizes["out"], per_layer, learned, d.span,
                         d.line_span.line)
            self._net_info[d.name] = net
            return net
        return None

    @staticmethod
    def _ast_names(e) -> list[str]:
        if isinstance(e, ast.Name):
            return [e.name]
        if isinstance(e, ast.Binary):
            return Checker._ast_names(e.left) + Checker._ast_names(e.right)
        if isinstance(e, ast.Unary):
            return Checker._ast_names(e.operand)
        return []

    def _net_call(self, e: ast.Call, sym: Symbol):
        if len(e.args) != 1 or e.kwargs:
            self.error(f"the sub-network `{sym.name}` takes one argument", e.span)
            return None
        if self.context not in ("step", "final", "let", "state"):
            self.error(f"the sub-network `{sym.name}` cannot be used here", e.span)
            return None
        if sym.per_layer and self.context != "step":
            self.error(f"the per-layer sub-network `{sym.name}` can only be used inside `step:`", e.span,
                       "it has one copy per layer; outside the loop there is no layer to choose")
            return None
        arg = self.expr(e.args[0])
        if arg is None:
            return None
        info = self._net_info[sym.name]
        kind, size_in, size_out = info.kind, info.in_size, info.out_size
        t = arg.type
        if t.dtype == COMPLEX:
            self.error(f"the sub-network `{sym.name}` needs a real input, got {t}", e.args[0].span,
                       "split a complex value into channels: `cat(real(v), imag(v))`")
            return None
        if kind == "cnn" and (t.rank != 3 or t.shape[0] != size_in):
            self.error(f"the CNN `{sym.name}` takes images [{size_in}, h, w] (channels first), got {t}",
                       e.args[0].span, "stack channels with `cat(a, b, ...)` (an image [h, w] counts as one "
                                       "channel), or give the state a channel axis: `real[1, h, w]`")
            return None
        if kind == "mlp" and (t.rank != 1 or t.shape[0] != size_in):
            self.error(f"the MLP `{sym.name}` takes vectors of length {size_in}, got {t}", e.args[0].span)
            return None
        shape = (size_out,) + t.shape[1:]
        level = max(arg.level, ir.LAYER if sym.per_layer else ir.FORWARD)
        return ir.Node("net_call", [arg], Type(REAL, shape, t.batched), e.span, level,
                       {"name": sym.name, "per_layer": sym.per_layer})

    def _op_apply(self, e: ast.Call, sym: Symbol, adjoint: bool):
        op_t = sym.type
        if len(e.args) != 1 or e.kwargs:
            self.error(f"the operator `{sym.name}` takes one argument", e.span)
            return None
        arg = self.expr(e.args[0])
        if arg is None:
            return None
        want_in = op_t.out_shape if adjoint else op_t.shape
        out = op_t.shape if adjoint else op_t.out_shape
        if arg.type.shape != tuple(want_in):
            label = f"{sym.name}.H" if adjoint else sym.name
            self.error(f"`{label}` maps {shape_str(want_in)} -> {shape_str(out)}, got {shape_str(arg.type.shape)}",
                       e.args[0].span, f"`{sym.name}` is declared `{op_t}`")
            return None
        dtype = arg.type.dtype
        return ir.Node("op_apply", [arg], Type(dtype if dtype != INT else REAL, tuple(out), arg.type.batched),
                       e.span, max(arg.level, ir.FORWARD), {"name": sym.name, "adjoint": adjoint})

    def _const_arg(self, e: ast.Expr):
        saved = self.context
        self.context = "hyper"
        node = self.expr(e)
        self.context = saved
        return node

    def _state(self, d: ast.Decl):
        t = self._type(d.type, "state")
        if t is None:
            return None
        self.context = "state"
        init = self.expr(d.value)
        self.context = "top"
        if init is None:
            return None
        if broadcast(t.shape, init.type.shape) != t.shape:
            self.error(f"initial value of `{d.name}` has shape {shape_str(init.type.shape)}, but the state is {t}",
                       d.value.span, "the initial value must have the state's shape (or broadcast to it, like `0`)")
            return None
        if init.type.dtype == COMPLEX and t.dtype == REAL:
            self.error(f"complex initial value for the real state `{d.name}`", d.value.span,
                       "declare the state `complex[...]`, or take `real(...)`/`abs(...)`")
            return None
        if init.type.batched:
            self.batched_states.add(d.name)
        if self._declare(Symbol(d.name, "state", t, max(init.level, ir.FORWARD), d.span)):
            return ir.State(d.name, t, init, d.span, d.line_span.line)
        return None

    def _layers(self) -> int:
        spec = self.spec
        if self.schedule.layers is not None:
            if self.schedule.layers <= 0:
                src = self.schedule.option_source
                self.sink.items.append(Diagnostic(f"--layers must be positive, got {self.schedule.layers}",
                                                  self.schedule.option_spans.get(("--layers", None)),
                                                  "an unrolled network has at least one layer, e.g. `--layers 16`"))
                if src is not None:
                    raise CompileError(self.sink.items[-1:], src)
                return 1
            return self.schedule.layers
        if spec.layers is None:
            if spec.step is not None:
                where = self._code_line(spec.step_span.line)
                hint = "add the default depth on a line before `step:`, e.g. `layers 10` (`--layers N` overrides it)"
            else:
                where = self._code_line()
                hint = "give the default depth, e.g. `layers 10` (`--layers N` overrides it)"
            self.error("missing `layers N` line", where, hint)
            return 1
        node = self.expr(spec.layers)
        if node is None:
            return 1
        value = _constant_value(node)
        if value is None or isinstance(value, bool) or not isinstance(value, int):
            got = f", got {value}" if value is not None else ""
            self.error(f"`layers` needs a positive integer{got}", spec.layers.span,
                       "the number of layers is a whole number written in the spec, e.g. `layers 10`; "
                       "`--layers N` overrides it when compiling")
            return 1
        if value <= 0:
            self.error(f"`layers` must be positive, got {value}", spec.layers.span,
                       "an unrolled network has at least one layer, e.g. `layers 10`")
            return 1
        return value

    def _check_options(self, params: list[ir.Param]) -> None:
        sch = self.schedule
        # every declared parameter counts, also one whose declaration has an error (reported on its own)
        names = [d.name for d in self.spec.decls if d.kind in ("param", "net")]
        for option in ("--tie", "--untie", "--learn", "--freeze"):
            values = getattr(sch, option[2:])
            for v in values:
                if v not in names:
                    span = sch.option_spans.get((option, v))
                    other = self.scope.get(v)
                    listing = ("the parameters are " + ", ".join(f"`{n}`" for n in names) if names
                               else "this spec declares no parameters")
                    if other is not None:
                        message = (f"{option}: `{v}` is {_a(KIND_NOUN.get(other.kind, other.kind))}, "
                                   "not a parameter of this spec")
                        hint = f"only `param` declarations can be tied, untied, learned or frozen; {listing}"
                    else:
                        message = f"{option}: `{v}` is not a parameter of this spec"
                        hint = did_you_mean(v, names) or listing
                    diag = Diagnostic(message, span, hint)
                    if sch.option_source is not None:
                        raise CompileError([diag], sch.option_source)
                    self.sink.items.append(diag)
        for a, b in (("tie", "untie"), ("learn", "freeze")):
            both = set(getattr(sch, a)) & set(getattr(sch, b))
            for v in sorted(both):
                diag = Diagnostic(f"`{v}` is given to both --{a} and --{b}", sch.option_spans.get((f"--{b}", v)),
                                  f"the two options contradict each other; keep one of them for `{v}`")
                if sch.option_source is not None:
                    raise CompileError([diag], sch.option_source)
                self.sink.items.append(diag)

    # ------------------------------------------------------------ statements
    def _assigned_names(self, body) -> list[str]:
        out: list[str] = []
        for s in body:
            if isinstance(s, ast.Assign) and s.target not in out:
                out.append(s.target)
            elif isinstance(s, ast.Repeat):
                for n in self._assigned_names(s.body):
                    if n not in out:
                        out.append(n)
        return out

    def _block(self, body, depth: int, states: list[ir.State]) -> list:
        out = []
        for s in body:
            if isinstance(s, ast.Local):
                node = self.expr(s.value)
                if node is None:
                    self._poison(s.target, "local", s.target_span)
                    continue
                if s.target in self.scope and self.scope[s.target].kind == "local":
                    sym = self.scope[s.target]
                    if not sym.broken:
                        diag = Diagnostic(f"`{s.target}` is already a `let` value of this block", s.target_span,
                                          f"to give it a new value write `{s.target} = ...` without `let`")
                        diag.notes.append(("first defined here", sym.span))
                        self.sink.items.append(diag)
                    # go on with the new value, as the author meant, so later lines report no follow-on errors
                    sym.type, sym.level, sym.py, sym.static, sym.broken = node.type, node.level, node.py, \
                        node.static, False
                    continue
                if node.type.dtype == BOOL:
                    self.error("a `let` cannot hold a comparison", s.value.span,
                               "use the comparison inside `where(cond, a, b)`")
                    self._poison(s.target, "local", s.target_span)
                    continue
                if self._declare(Symbol(s.target, "local", node.type, node.level, s.target_span, version=1,
                                        py=node.py, static=node.static)):
                    self.locals_types[s.target] = node.type
                    out.append(ir.Assign(s.target, "local", node, s.span, depth, version=1))
            elif isinstance(s, ast.Assign):
                node = self._assign(s, depth)
                if node is not None:
                    out.append(node)
            elif isinstance(s, ast.Repeat):
                out.append(self._repeat(s, depth, states))
        return out

    def _assign(self, s: ast.Assign, depth: int):
        sym = self.scope.get(s.target)
        if sym is None:
            hint = did_you_mean(s.target, [n for n, x in self.scope.items() if x.kind in ("state", "local")])
            later = self._declared_later(s.target)
            if later is not None and later[2] != "top" and later[0].line > s.target_span.line:
                hint = f"`{s.target}` gets its `let` further down; introduce it here with `let {s.target} = ...`"
            self.error(f"assignment to undeclared `{s.target}`", s.target_span,
                       hint or f"declare it as a state (`state {s.target} : real[...] = 0`) or introduce a "
                               f"temporary with `let {s.target} = ...`")
            self.expr(s.value)
            return None
        if sym.broken:
            self.expr(s.value)
            return None
        if sym.kind not in ("state", "local"):
            why = {"param": "a parameter changes only by training",
                   "data": "data is fixed when the module is constructed",
                   "hyper": "a hyperparameter is fixed when the module is constructed",
                   "let": "a top-level `let` is a constant, computed once",
                   "input": "an input is fixed for the whole forward call",
                   "dim": "a dimension is a size"}.get(sym.kind, "it is not a state")
            self.error(f"cannot assign to the {KIND_NOUN.get(sym.kind, sym.kind)} `{s.target}`; only states and "
                       "`let` values change", s.target_span,
                       f"{why}; for a value updated every layer declare a state: `state {s.target}_k : "
                       f"{sym.type if sym.type is not None and sym.kind != 'dim' else 'real'} = {s.target}`"
                       if sym.kind not in ("dim",) else why)
            self.expr(s.value)
            return None
        node = self.expr(s.value)
        if node is None:
            return None
        target_t = sym.type
        if node.type.dtype == BOOL:
            self.error("cannot assign a comparison", s.value.span,
                       "to choose between values use `where(cond, a, b)`")
            return None
        if node.type.shape != target_t.shape:
            if broadcast(target_t.shape, node.type.shape) == target_t.shape and sym.kind == "state":
                pass  # a broadcastable value (e.g. a scalar) fills the state
            else:
                self.error(f"`{s.target}` is {target_t} but the value has shape {shape_str(node.type.shape)}",
                           s.value.span, f"an update must keep the declared shape {shape_str(target_t.shape)}"
                           if sym.kind == "state" else
                           "a `let` value keeps its shape; introduce a new name for a value of another shape")
                return None
        if node.type.dtype == COMPLEX and target_t.dtype != COMPLEX:
            self.error(f"complex value assigned to the real {sym.kind} `{s.target}`", s.value.span,
                       "a real value is required: take `real(...)`, `abs(...)` or `abs2(...)`, or declare the state "
                       "`complex[...]`")
            return None
        if sym.kind == "state" and node.type.batched and s.target not in self.batched_states:
            self.batched_states.add(s.target)
        if sym.kind == "local":
            sym.type = node.type
            sym.level = max(node.level, depth if sym.level >= depth else node.level)
            self.locals_types[s.target] = node.type
            sym.py = node.py
        sym.version += 1
        return ir.Assign(s.target, sym.kind, node, s.span, depth, version=sym.version)

    def _repeat(self, s: ast.Repeat, depth: int, states):
        count = self.expr(s.count)
        value = None if count is None else _constant_value(count)
        if count is not None and not (count.type.dtype == INT and count.level == ir.CONST and count.type.rank == 0):
            self.error(f"a `repeat` count must be an integer literal or `int` hyperparameter, got {count.type}",
                       s.count.span, "e.g. `repeat 3:`, or `hyper K : int = 3` and `repeat K:`")
        elif isinstance(value, int) and value <= 0:
            self.error(f"`repeat` count must be positive, got {value}", s.count.span,
                       "a `repeat` block runs its statements at least once; remove the block to skip them")
        inner = depth + 1
        carried = self._assigned_names(s.body)
        for name in carried:
            sym = self.scope.get(name)
            if sym is not None and sym.kind in ("state", "local"):
                sym.level = inner
                sym.version += 1
        body = self._block(s.body, inner, states)
        for name in carried:
            sym = self.scope.get(name)
            if sym is not None and sym.kind in ("state", "local"):
                sym.level = depth if sym.kind == "state" or sym.level > depth else sym.level
                sym.level = max(sym.level, depth) if sym.kind == "local" else sym.level
                sym.version += 1
        return ir.Repeat(count, body, s.span, inner, carried)


def _constant_value(node: ir.Node):
    """Evaluate a compile-time numeric constant (literals and arithmetic on them)."""
    if node.op == "number":
        return node.attrs["value"]
    if node.op == "var" and node.attrs.get("kind") == "hyper":
        return None
    if node.op == "neg":
        v = _constant_value(node.args[0])
        return None if v is None else -v
    if node.op in ("add", "sub", "mul", "div", "pow") and len(node.args) == 2:
        a, b = (_constant_value(x) for x in node.args)
        if a is None or b is None:
            return None
        try:
            return {"add": a + b, "sub": a - b, "mul": a * b}.get(node.op) if node.op in ("add", "sub", "mul") else (
                a / b if node.op == "div" else a ** b)
        except (ZeroDivisionError, OverflowError):
            return None
    return None


def check(spec: ast.Spec, source: Source, schedule: Schedule | None = None) -> ir.Program:
    return Checker(spec, source, schedule).run()
