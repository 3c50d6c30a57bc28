"""Function data: `data D : function(real[n], real) -> real[n] [nondifferentiable]` (docs/language.md §3.3a).

The declaration's type (argument types, result type, the `nondifferentiable` annotation) and the calls
`D(a, b)`: one argument per declared type, each of exactly the declared shape. A call is an `op_apply`
node with `function: True` (applied per forward call, never folded, hoisted only with its arguments).
"""

from __future__ import annotations

from .. import ast, ir
from ..diagnostics import did_you_mean
from ..types import COMPLEX, FUNCTION, INT, REAL, Type, shape_str

FUNCTION_FLAGS = ("nondifferentiable",)


class FunctionDataMixin:
    def _function_type(self, ts: ast.TypeSyntax, annotations: list[ast.Annotation]) -> Type | None:
        """The type of function data; None (after a diagnostic) if it is malformed."""
        ok = True
        differentiable = True
        for a in annotations:
            if a.name == "nondifferentiable" and not a.args:
                if not differentiable:
                    self.error("`nondifferentiable` is given twice", a.span, "give it once")
                    ok = False
                differentiable = False
            else:
                self.error(f"unknown annotation `{a.name}` of function data", a.span,
                           did_you_mean(a.name, FUNCTION_FLAGS) or
                           "function data takes one annotation, `nondifferentiable` (its value is a constant for "
                           "training: the function is called under `torch.no_grad()`)")
                ok = False
        if not ts.args:
            self.error("function data takes at least one argument", ts.span,
                       "declare the argument types, e.g. `function(real[n], real) -> real[n]`")
            return None
        args = []
        for a in list(ts.args) + [ts.result]:
            if a.base in (FUNCTION, "operator"):
                self.error(f"an argument or result of function data cannot be {'a function' if a.base == FUNCTION else 'an operator'}",
                           a.span, "function data maps tensors to a tensor: `function(real[n], real) -> real[n]`")
                ok = False
                continue
            t = self._type(a, "argument of function data")
            if t is None:
                ok = False
                continue
            args.append(t)
        if not ok:
            return None
        *arg_types, result = args
        return Type(FUNCTION, result.shape, False, None, (tuple(arg_types), result, differentiable))

    def _function_call(self, e: ast.Call, sym) -> ir.Node | None:
        """`D(a, b, ...)`: the arguments have the declared types; the result is per sample if any argument is."""
        arg_types, result, differentiable = sym.type.signature
        if e.kwargs:
            self.error(f"the function `{sym.name}` takes its arguments by position", e.kwargs[0].span,
                       f"`{sym.name}` is declared `{sym.type}`")
            return None
        if len(e.args) != len(arg_types):
            n = len(arg_types)
            self.error(f"the function `{sym.name}` takes {n} argument{'s' if n != 1 else ''}, got {len(e.args)}",
                       e.span, f"`{sym.name}` is declared `{sym.type}`")
            return None
        args = [self.expr(a) for a in e.args]
        if any(a is None for a in args):
            return None
        for i, (node, want, a_ast) in enumerate(zip(args, arg_types, e.args)):
            complex_mismatch = (node.type.dtype == COMPLEX) != (want.dtype == COMPLEX)
            if node.type.shape != want.shape or complex_mismatch:
                self.error(f"argument {i + 1} of the function `{sym.name}` must be {want}, got "
                           f"{node.type.dtype if node.type.dtype != INT else REAL}{shape_str(node.type.shape) if node.type.shape else ''}",
                           a_ast.span, f"`{sym.name}` is declared `{sym.type}`")
                return None
        batched = any(a.type.batched for a in args)
        level = max([a.level for a in args] + [ir.FORWARD])
        return ir.Node("op_apply", args, Type(result.dtype, result.shape, batched), e.span, level,
                       {"name": sym.name, "function": True, "differentiable": differentiable,
                        "batched": tuple(a.type.batched for a in args)})
