"""Expression functions: `fn NAME(a, b) = EXPR` at the top level, inlined at every call.

A function is pure: its body is one expression of its parameters and of the top-level names declared
above it (data, hyperparameters, inputs, lets, parameters, dims, sub-networks, noises; not states,
whose value changes, and not `layer`), and it may call the operators and the functions declared above
it, so recursion cannot be written.  This pass runs on the syntax tree before the checker: every call
`E(u, v)` becomes an `ast.Inlined` node whose body is a copy of E's body with the parameters replaced by
copies of the arguments.  The checker then types the body at each call (a function has no types of its
own: it is typed where it is used), `grad` sees the inlined expression and so keeps its symbolic path,
and the generated code has no trace of the function.  A body that does not type at a call is reported
at the body with a note at the call (compiler/check/functions.py).

The mistakes found here, located: a wrong number of arguments, keyword arguments, a call of an
unknown function, a call of a function before (or inside) its declaration, a function or parameter name
the naming policy refuses (check/names.py `name_problem`), a parameter that shadows a declaration, a
function named like a declaration or declared twice, a body reading a name it may not read.
"""

from __future__ import annotations

import copy
from dataclasses import fields, is_dataclass

from . import ast
from .check.names import kind_noun, name_problem, with_article
from .diagnostics import Diagnostic, Span, did_you_mean
from .operators import OPERATORS, SPECIAL_FORMS

MAX_INLINED_NODES = 200_000  # a chain of functions each calling the one above twice grows exponentially


class _TooBig(Exception):
    pass


def _before(a: Span, b: Span) -> bool:
    return (a.line, a.column) < (b.line, b.column)


class _Expander:
    def __init__(self, spec: ast.Spec):
        self.spec = spec
        self.diags: list[Diagnostic] = []
        self.fns: dict[str, ast.FnDecl] = {}
        self.decls = {d.name: d for d in spec.decls if d.name}
        self.broken: set[str] = set()  # functions whose declaration had an error
        self.size = 0

    def error(self, message: str, span: Span | None, hint: str | None = None,
              note: tuple[str, Span] | None = None) -> None:
        diag = Diagnostic(message, span, hint)
        if note is not None:
            diag.notes.append(note)
        self.diags.append(diag)

    # ------------------------------------------------------------ declarations
    def declare(self, fn: ast.FnDecl) -> bool:
        ok = True
        problem = name_problem(fn.name, "function")
        if problem is not None:
            self.error(problem[0], fn.span, problem[1])
            ok = False
        elif fn.name in self.fns:
            self.error(f"function `{fn.name}` is declared twice", fn.span, "every name is declared once; rename one "
                       "of them", ("first declared here", self.fns[fn.name].span))
            ok = False
        elif fn.name in self.decls:
            d = self.decls[fn.name]
            self.error(f"`{fn.name}` is already declared (as {with_article(_noun(d.kind))})", fn.span,
                       "every name is declared once; rename the function or the declaration",
                       ("declared here", d.span))
            ok = False
        seen: dict[str, Span] = {}
        for name, span in fn.params:
            problem = name_problem(name, "function parameter")
            if problem is not None:
                self.error(problem[0], span, problem[1])
                ok = False
            elif name in seen:
                self.error(f"parameter `{name}` of `{fn.name}` is named twice", span,
                           "give every parameter its own name", ("first named here", seen[name]))
                ok = False
            elif name in self.decls and self.decls[name].kind != "state" \
                    and _before(self.decls[name].line_span, fn.line_span):
                d = self.decls[name]  # a name the body could read: which one would `name` mean?
                self.error(f"parameter `{name}` of `{fn.name}` shadows the {_noun(d.kind)} `{name}`", span,
                           f"rename the parameter (the body reads the {_noun(d.kind)} `{name}` directly, without "
                           "passing it)", ("declared here", d.span))
                ok = False
            elif name in self.fns or name == fn.name:
                self.error(f"parameter `{name}` of `{fn.name}` shadows the function `{name}`", span,
                           "rename the parameter", ("declared here", self.fns.get(name, fn).span))
                ok = False
            seen.setdefault(name, span)
        if ok:
            ok = self.check_body(fn, set(seen))
        return ok

    def check_body(self, fn: ast.FnDecl, params: set[str]) -> bool:
        """The body reads only its parameters and the names declared above the function."""
        ok = True
        for node, in_call in ast.names_read(fn.body):
            name = node.name
            if in_call:
                if name == fn.name:
                    self.error(f"function `{name}` calls itself: recursion is not allowed", node.span,
                               "a function is inlined at every call, so its body can call only the functions "
                               "declared above it", ("declared here", fn.span))
                    ok = False
                    continue
                if name in self.fns or name in self.broken or name in OPERATORS or name in SPECIAL_FORMS:
                    continue
                later = next((f for f in self.spec.functions if f.name == name), None)
                if later is not None:
                    self.error(f"function `{name}` is used before its declaration", node.span,
                               f"declare `{name}` above `{fn.name}` (a function calls only the functions declared "
                               "above it, so recursion cannot be written)", ("declared here", later.span))
                    ok = False
                    continue
            if name in params or (in_call and name not in self.decls):
                continue  # an unknown operator is the checker's to report
            d = self.decls.get(name)
            if d is None:
                if name == "layer":
                    self.error("a function cannot read `layer`", node.span,
                               f"pass it as an argument: `fn {fn.name}(..., k) = ...` called as `{fn.name}(..., layer)`")
                    ok = False
                continue  # unknown: reported by the checker at each call, with the call
            if d.kind == "state":
                self.error(f"function `{fn.name}` reads the state `{name}`: a function depends only on its "
                           "arguments and on constants", node.span,
                           f"pass the state as an argument: `fn {fn.name}({', '.join([p for p, _ in fn.params] + [name])})"
                           " = ...`", ("declared here", d.span))
                ok = False
            elif _before(fn.line_span, d.line_span):
                self.error(f"`{name}` is declared below function `{fn.name}`", node.span,
                           f"declare `{name}` above the function (a function reads only the names declared above it)",
                           ("declared here", d.span))
                ok = False
        return ok

    # ------------------------------------------------------------ calls
    def expand(self, e, scope_end: Span | None):
        """`e` (any AST value) with every function call inlined.  `scope_end`: calls must come after the
        function's declaration when they are in a top-level declaration at that position (None: the step
        and final blocks, which see every function)."""
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name):
            fn = self.spec_fn(e.func.name)
            if fn is not None:
                return self.inline(e, fn, scope_end)
            hint = did_you_mean(e.func.name, [f.name for f in self.spec.functions])
            if e.func.name not in OPERATORS and e.func.name not in SPECIAL_FORMS and e.func.name not in self.decls \
                    and hint is not None:  # a misspelled function (other unknown calls: the checker's operator hints)
                self.error(f"unknown function `{e.func.name}`", e.func.span, hint)
                return ast.Inlined(e.span, e.func.name, None, e.span)
        if isinstance(e, list):
            return [self.expand(x, scope_end) for x in e]
        if is_dataclass(e) and not isinstance(e, (ast.Span, ast.DimExpr, ast.TypeSyntax)):
            for f in fields(e):
                value = getattr(e, f.name)
                if isinstance(value, (list, ast.Expr, ast.Keyword, ast.Annotation, ast.Assign, ast.Local, ast.Repeat)):
                    setattr(e, f.name, self.expand(value, scope_end))
        return e

    def spec_fn(self, name: str) -> ast.FnDecl | None:
        return next((f for f in self.spec.functions if f.name == name), None)

    def inline(self, call: ast.Call, fn: ast.FnDecl, scope_end: Span | None) -> ast.Inlined:
        broken = ast.Inlined(call.span, fn.name, None, fn.line_span)
        args = [self.expand(a, scope_end) for a in call.args]
        if scope_end is not None and _before(scope_end, fn.line_span):
            self.error(f"function `{fn.name}` is used before its declaration", call.func.span,
                       f"declare `{fn.name}` above this line", ("declared here", fn.span))
            return broken
        if fn.name not in self.fns:
            return broken  # its declaration has an error (reported)
        if call.kwargs:
            self.error(f"function `{fn.name}` takes its arguments by position", call.kwargs[0].span,
                       f"call it as `{fn.name}({', '.join(p for p, _ in fn.params)})`")
            return broken
        if len(args) != len(fn.params):
            n, want = len(args), len(fn.params)
            self.error(f"function `{fn.name}` takes {want} argument{'s' if want != 1 else ''}, got {n}", call.span,
                       f"it is declared `fn {fn.name}({', '.join(p for p, _ in fn.params)})`",
                       ("declared here", fn.span))
            return broken
        binding = dict(zip((p for p, _ in fn.params), args))
        body = self.substitute(fn.body, binding)
        return ast.Inlined(call.span, fn.name, body, fn.line_span)

    def substitute(self, e, binding: dict):
        self.size += 1
        if self.size > MAX_INLINED_NODES:
            raise _TooBig
        if isinstance(e, ast.Name) and e.name in binding:
            return copy.deepcopy(binding[e.name])
        if isinstance(e, ast.Call) and isinstance(e.func, ast.Name) and self.spec_fn(e.func.name) is not None:
            fn = self.spec_fn(e.func.name)  # a call of a function declared above, inside a body
            inner = ast.Call(e.span, e.func, [self.substitute(a, binding) for a in e.args], e.kwargs)
            return self.inline(inner, fn, None)
        if isinstance(e, list):
            return [self.substitute(x, binding) for x in e]
        if isinstance(e, (ast.Expr, ast.Keyword)):
            out = copy.copy(e)
            for f in fields(e):
                value = getattr(e, f.name)
                if isinstance(value, (list, ast.Expr, ast.Keyword)):
                    setattr(out, f.name, self.substitute(value, binding))
            return out
        return e


def _noun(kind: str) -> str:
    return kind_noun(kind)


def expand_functions(spec: ast.Spec) -> list[Diagnostic]:
    """Inline every call of a `fn` in `spec` (in place); the diagnostics of misused functions."""
    ex = _Expander(spec)
    try:
        for fn in spec.functions:  # in source order: a body calls only the functions above it
            if ex.declare(fn):
                ex.fns[fn.name] = fn
            else:
                ex.broken.add(fn.name)  # reported: its calls stay silent
        for d in spec.decls:
            for attr in ("value", "annotations", "net_args"):
                setattr(d, attr, ex.expand(getattr(d, attr), d.line_span))
        if spec.layers is not None:
            spec.layers = ex.expand(spec.layers, spec.layers_span)
        spec.step = ex.expand(spec.step, None)
        spec.step_until = ex.expand(spec.step_until, None)
        spec.final = ex.expand(spec.final, None)
    except _TooBig:
        first = next((f for f in spec.functions), None)
        ex.error("the functions inline into an expression too large to compile", first.span if first else None,
                 "a function that calls another several times doubles its size at every level; use `let` "
                 "temporaries in the step for shared values")
    unique: dict[tuple, Diagnostic] = {}  # a mistake inside a body inlined at several calls: reported once
    for diag in ex.diags:
        unique.setdefault((diag.message, diag.span), diag)
    return list(unique.values())
