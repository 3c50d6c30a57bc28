"""Expressions: names, numbers, lists, operators (through the registry), indexing and calls.  Every
expression becomes an `ir.Node` with its type and its level (the max of its operands'; see ir.py)."""

from __future__ import annotations

import math

from .. import ast, ir
from ..ast import DimExpr
from ..diagnostics import Diagnostic, Span, did_you_mean
from ..operators import INTERNAL_OPERATORS, OPERATORS, SPECIAL_FORMS, SYNONYMS, Arg, function_names
from ..types import BOOL, INT, OPERATOR, REAL, ShapeError, Type
from .bounds import (
    dim_relation,
    index_problem,
    int_bounds,
    int_power_problem,
    loop_index_problem,
    loop_index_range,
    onehot_problem,
    single_dim,
    symbolic_index_problem,
    zero_layer,
)
from .diff_forms import AUTODIFF_FORMS
from .literals import LITERAL_OPS, MAX_INT, LiteralError, fold
from .names import BINARY_OPS, PY_OPS, USER_OPERATORS, Symbol, kind_noun, with_article

# operator families whose kernels take numbers only: a comparison's mask is refused where it is written
NUMBERS_ONLY = {"linear algebra", "fourier", "kernels", "convolution", "influence", "complex", "patches", "resampling",
                "differences", "probability", "proximal", "normalisation"}


class ExpressionMixin:
    """Checking expressions (a part of `Checker`)."""

    def expr(self, e: ast.Expr) -> ir.Node | None:
        method = getattr(self, "_e_" + type(e).__name__)
        return method(e)

    def _e_Number(self, e: ast.Number):
        is_int = isinstance(e.value, int)
        if (not is_int and not math.isfinite(e.value)) or (is_int and e.value > MAX_INT):
            text = f"`{e.text}`" if len(e.text) <= 40 else f"`{e.text[:12]}...` ({len(e.text)} characters)"
            self.error(f"the number {text} is too large (it overflows to infinity)", e.span,
                       "numbers must be finite double-precision values (below about 1.8e308)")
            return None
        return ir.Node("number", [], Type(INT if is_int else REAL), e.span, ir.CONST, {"value": e.value},
                       py=True, static=e.value if is_int else None)

    def _e_String(self, e: ast.String):
        sym = self.scope.get(e.value)
        hint = (f"to use `{e.value}`, write it without quotes" if sym is not None or e.value == "layer" else
                "a string is only the title on the `spec` line")
        self.error("a string cannot be used as a value", e.span, hint)

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
                if self.context == "param":
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
                diag.notes.append((f"`{name}` is declared here, as {with_article(later[1])}", later[0]))
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
        if sym.type is not None and sym.type.dtype in (OPERATOR, "function"):  # not a value (check/function_data.py)
            what = "function data" if sym.type.dtype == "function" else "a linear operator"
            self.error(f"`{name}` is {what} ({sym.type}), not a value; call it: `{name}(...)`", e.span,
                       f"`{name}` maps its arguments to a result; for a matrix declare the data `real[...]`")
            return None
        typ = sym.type
        if sym.kind == "state" and name in self.batched_states:
            typ = typ.with_(batched=True)
        return ir.Node("var", [], typ, e.span, sym.level,
                       {"name": name, "kind": sym.kind, "version": sym.version, "per_layer": sym.per_layer},
                       py=sym.py, static=sym.static)

    def _visible(self, sym: Symbol, span: Span) -> bool:
        ctx = self.context
        if sym.kind == "noise" and sym.per_layer and ctx in ("let", "state", "final"):
            self.error(f"the per-layer noise `{sym.name}` cannot be used outside `step:`", span,
                       "it is drawn afresh in every layer; declare it without `per_layer` for one draw per call")
            return False
        if sym.kind == "param" and sym.per_layer and ctx in ("let", "state", "final"):
            where = {"let": "a top-level `let`", "state": "the initial value of a state",
                     "final": "the `final:` block"}[ctx]
            self.error(f"the per-layer parameter `{sym.name}` cannot be used in {where}", span,
                       "it has one value per layer and there is no layer here; use it inside `step:`, or make it "
                       "`shared`")
            return False
        if ctx == "require" and sym.kind not in ("dim", "data", "hyper", "let"):
            self.error(f"a `require` condition cannot use the {kind_noun(sym.kind)} `{sym.name}`", span,
                       "requirements are checked once at construction, on data, hyperparameters and constants")
            return False
        if ctx in ("param", "hyper") and sym.kind in ("input", "state", "local", "noise"):
            what = "parameter default" if ctx == "param" else "hyperparameter default"
            self.error(f"a {what} cannot use the {kind_noun(sym.kind)} `{sym.name}`", span,
                       "defaults are computed once at construction, from data, hyperparameters and constants")
            return False
        if ctx in ("param", "hyper") and sym.kind == "param":  # (the module had no such value: NameError)
            what = "parameter default" if ctx == "param" else "hyperparameter default"
            self.error(f"a {what} cannot use the parameter `{sym.name}`", span,
                       "defaults are computed once at construction, from data, hyperparameters and constants; to "
                       f"start from `{sym.name}`'s default, name that expression with a `let` and use it in both")
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

    def _index_in_range(self, index: ir.Node, size, index_span, span) -> bool:
        """Bound checks of an index into an axis of `size` (reads `X[i]` and writes `X[i] = v`): located errors
        where it is out of range for a literal, `layer` or loop-index expression; relations between dims for
        the module to check once they are bound (compiler/check/bounds.py)."""
        problem = symbolic_index_problem(index, size, self._text(index_span))
        if problem is not None:
            self.error(problem[0], index_span, problem[1])
            return False
        relation = dim_relation(index, size, f"`{self._text(span)}` at line {span.line}")
        if relation is not None and relation not in self.dim_relations:
            self.dim_relations.append(relation)
        reach = loop_index_range(index, self.loop_counts)
        if reach is not None:
            problem = loop_index_problem(reach, size, self._text(index_span))
            if problem is not None:
                self.error(problem[0], index_span, problem[1])
                return False
        bounds = int_bounds(index, self._depth)
        if bounds is not None:  # compiler/check/bounds.py
            problem = index_problem(bounds, size, self._text(index_span))
            if problem is not None:
                self.error(problem[0], index_span, problem[1])
                return False
            dim = single_dim(size)
            if dim is not None and bounds[1] >= self.dim_minimums.get(dim, (0, ""))[0]:
                self.dim_minimums[dim] = (bounds[1] + 1, f"`{self._text(span)}` at line {span.line}")
        return True

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
        if not self._index_in_range(index, value.type.shape[0], e.index.span, e.span):
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
            if name in AUTODIFF_FORMS:
                return self._autodiff(e, name)
            target = self.scope.get(name)
            if name == "init" and target is None:  # a functional network's initial weights (check/functional.py)
                return self._net_init(e)
            if target is not None and not target.broken and target.kind == "net":
                if self._net_info[name].kind == "convgru":
                    return self._convgru_call(e, target)
                if self._net_info[name].functional:
                    return self._functional_call(e, target, self._net_info[name])
                return self._net_call(e, target)
            if target is not None and not target.broken and target.type is not None \
                    and target.type.dtype == OPERATOR:
                return self._op_apply(e, target, adjoint=False)
            if target is not None and not target.broken and target.type is not None \
                    and target.type.dtype == "function":
                return self._function_call(e, target)  # function data (check/function_data.py)
            op = OPERATORS.get(name)
            if op is None or name in INTERNAL_OPERATORS:
                sym = self.scope.get(name)
                if sym is not None and sym.broken:
                    return None
                if sym is not None and sym.type is not None and sym.type.dtype not in (OPERATOR, "function") \
                        and sym.kind != "dim":
                    arg = self._text(e.args[0].span) if len(e.args) == 1 else "x"
                    noun = kind_noun(sym.kind)
                    self.error(f"`{name}` is {with_article(noun)} of type {sym.type}, not a function: it cannot be called",
                               e.func.span, f"apply a matrix with `@`: `{name} @ {arg}`" if sym.type.rank == 2
                               else f"for a product write `{name} * {arg}`")
                    return None
                hint = (f"the language writes it `{SYNONYMS[name]}`" if name in SYNONYMS else
                        did_you_mean(name, function_names()) or "`unrollc ops` lists the operators")
                self.error(f"unknown operator `{name}`", e.func.span, hint)
                return None
            arg_exprs = list(e.args)
            if e.kwargs:
                if op.extra.get("keyword_form"):  # `max(v, axis=k)` is another entry than `max(a, b)`
                    name = op.extra["keyword_form"]
                    op = OPERATORS[name]
                arg_exprs = self._with_keywords(e, op)
                if arg_exprs is None:
                    return None
            shown = op.extra.get("keyword_form_of", name)  # the name the user wrote
            n = len(arg_exprs)
            if not op.min_args <= n <= op.max_args:
                want = (str(op.min_args) if op.min_args == op.max_args else f"{op.min_args} to {op.max_args}")
                hint = f"`{shown}`: {op.doc}" + (f"; for example `{op.example}`" if op.example else "")
                self.error(f"`{shown}` takes {want} argument{'s' if want != '1' else ''}, got {n}", e.span, hint)
                return None
            args = [self.expr(a) for a in arg_exprs]
            if any(a is None for a in args):
                return None
            for i in op.static_args:
                if i < len(args) and args[i].op == "neg" and type(args[i].args[0].static) is int:
                    value = -args[i].args[0].static  # a negative literal (`axis=-1`)
                    args[i] = ir.Node("number", [], args[i].type, args[i].span, ir.CONST, {"value": value}, py=True,
                                      static=value)
                if i < len(args) and not isinstance(args[i].static, int):
                    what = next((f"`{k.name}`" for k in e.kwargs if k.value is arg_exprs[i]), f"argument {i + 1}")
                    self.error(f"{what} of `{shown}` must be an integer literal", arg_exprs[i].span,
                               "an axis is a number written in the spec, such as `1` or `-1` (from the end)")
                    return None
            return self._apply(name, args, e.span, [a.span for a in arg_exprs], call=True)
        if isinstance(e.func, ast.Attribute) and isinstance(e.func.value, ast.Name) and e.func.attr in ("H", "T"):
            target = self.scope.get(e.func.value.name)
            if target is not None and target.type is not None and target.type.dtype == OPERATOR:
                return self._op_apply(e, target, adjoint=True)
        self.error("only named operators can be called", e.func.span,
                   "to multiply by a parenthesised expression, write `*` before the `(`")
        return None

    def _with_keywords(self, e: ast.Call, op) -> list[ast.Expr] | None:
        """The arguments of a call with keywords, in positional order: the keyword `op.kwargs[j]` names the
        argument at position `op.max_args - len(op.kwargs) + j` (`softmax(U, axis=1)` = `softmax(U, 1)`)."""
        shown = op.extra.get("keyword_form_of", op.name)
        args: list[ast.Expr | None] = list(e.args)
        for kw in e.kwargs:
            if kw.name not in op.kwargs:
                if op.kwargs:
                    hint = "its keyword arguments are " + ", ".join(f"`{k}=`" for k in op.kwargs)
                else:
                    hint = f"pass the value by position: drop `{kw.name}=`"
                if not op.kwargs:
                    self.error(f"`{shown}` takes no keyword arguments", kw.span, hint)
                else:
                    self.error(f"`{shown}` has no keyword argument `{kw.name}`", kw.span, hint)
                return None
            position = op.max_args - len(op.kwargs) + op.kwargs.index(kw.name)
            while len(args) <= position:
                args.append(None)
            if args[position] is not None:
                self.error(f"`{kw.name}` of `{shown}` is given twice", kw.span,
                           f"give it by position or as `{kw.name}=`, not both")
                return None
            args[position] = kw.value
        if any(a is None for a in args):
            missing = args.index(None) + 1
            self.error(f"argument {missing} of `{shown}` is missing", e.span,
                       f"`{shown}`: {op.doc}" + (f"; for example `{op.example}`" if op.example else ""))
            return None
        return args

    def _apply(self, opname: str, args: list[ir.Node], span: Span, arg_spans: list[Span], symbol=None,
               call=False) -> ir.Node | None:
        op = OPERATORS[opname]
        if not self._integer_mixing(opname, args, arg_spans, span, symbol):
            return None
        problem = int_power_problem(*args) if opname == "pow" and len(args) == 2 else None
        if problem is not None:  # check/bounds.py
            self.error(f"in `^`: {problem[0]}", arg_spans[1], problem[1])
            return None
        dim_args = op.extra.get("dim_args")
        emit_args = []
        for i, a in enumerate(args):
            static = a.static
            if dim_args and (dim_args is True or i in dim_args) and a.op == "var" and a.attrs.get("kind") == "hyper" \
                    and a.type.dtype == INT:
                # a size hyperparameter stays symbolic, `zeros(m)` is [m], and the constructor's `m` is the size
                # (not the default): it is a size of the spec like one in a type (`real[m]`)
                self.size_hypers.add(a.attrs["name"])
                static = DimExpr.of(a.attrs["name"])
            elif dim_args and (dim_args is True or i in dim_args) and isinstance(static, int):
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
        if op.category in NUMBERS_ONLY and any(a.type.dtype == BOOL for a in args):  # `A.T @ (A @ x < y)`
            i = next(i for i, a in enumerate(args) if a.type.dtype == BOOL)
            self.error(f"`{symbol or opname}` needs numbers, got a comparison ({args[i].type})", arg_spans[i],
                       "a comparison gives a mask for `where(c, a, b)`; for 0/1 values write `where(c, 1, 0)`")
            return None
        if opname == "div" and literal_value(args[1]) == 0:  # `lam / 0`: a Python number divided by zero
            self.error("division by zero", arg_spans[1], "the divisor is the literal 0 (or arithmetic giving 0)")
            return None
        zero_at = zero_layer(args[1], self._depth) if opname == "div" else None
        if opname == "pow" and (int_bounds(args[1], self._depth) or (0, 0))[1] < 0:
            zero_at = zero_layer(args[0], self._depth)  # `layer^-1`: 0 to a negative power
        if zero_at is not None:
            where = arg_spans[1] if opname == "div" else arg_spans[0]
            self.error(f"division by zero at layer {zero_at}: `{self._text(where)}` is 0 there", where,
                       "`layer` counts from 0; divide by `layer + 1` for a count from 1")
            return None
        if opname == "onehot":
            problem = onehot_problem(args[0], out.shape[0], self._depth)
            if problem is not None:
                self.error(problem[0], arg_spans[0], problem[1])
                return None
        level = max([a.level for a in args], default=ir.CONST)
        py = opname in PY_OPS and all(a.py for a in args)
        if opname in ("max", "min") and len(args) == 2 and all(a.py for a in args):
            py = True
        static = None
        if py and opname in ("add", "sub", "mul") and all(isinstance(a.static, int) for a in args):
            static = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}[opname](
                args[0].static, args[1].static)
        elif opname in ("add", "sub", "mul") and all(isinstance(a.static, (int, DimExpr)) for a in args) \
                and any(isinstance(a.static, DimExpr) for a in args):
            # dimension arithmetic (`nx*nz`, `2*h + 1`, `n - 1`): stays symbolic for shape rules like `reshape`
            x, y = (DimExpr.of(a.static) for a in args)
            static = x + y if opname == "add" else x + DimExpr.of(-1) * y if opname == "sub" else x * y
        node = ir.Node(opname, args, out, span, level, {"statics": tuple(a.static for a in emit_args)}, py=py,
                       static=static)
        if opname in LITERAL_OPS and all(literal_value(a) is not None for a in args):
            try:  # literal arithmetic: evaluated now, bounded (compiler/check/literals.py)
                node.attrs["literal"] = fold(opname, [literal_value(a) for a in args])
            except LiteralError as err:
                self.error(err.message, span, err.hint)
                return None
        return node


def literal_value(node: ir.Node):
    """The value of a literal or of checked literal arithmetic (see `_apply`), else None."""
    if node.op == "number":
        return node.attrs["value"]
    return node.attrs.get("literal")


def constant_value(node: ir.Node):
    """Evaluate a compile-time numeric constant (literals and arithmetic on them)."""
    if node.op == "number":
        return node.attrs["value"]
    if "literal" in node.attrs:
        return node.attrs["literal"]
    if node.op == "var" and node.attrs.get("kind") == "hyper":
        return None
    if node.op == "neg":
        v = constant_value(node.args[0])
        return None if v is None else -v
    if node.op in ("add", "sub", "mul", "div", "pow") and len(node.args) == 2:
        a, b = (constant_value(x) for x in node.args)
        if a is None or b is None:
            return None
        try:
            return fold(node.op, [a, b])
        except LiteralError:
            return None
    return None

