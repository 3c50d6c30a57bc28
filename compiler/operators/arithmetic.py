"""Arithmetic and comparison: the operators written as syntax (`a + b`, `-a`, `a ^ b`, `a < b`)."""

from __future__ import annotations

from collections.abc import Callable

from ..types import BOOL, COMPLEX, INT, REAL
from .core import (
    P_ADD,
    P_ATOM,
    P_CMP,
    P_MUL,
    P_POW,
    P_UNARY,
    Emitted,
    Operator,
    elementwise,
    numeric,
    real,
    register,
    wrap,
)


def _arith(name: str, symbol: str, prec: int, latex: Callable[[list[str]], str], ref, doc: str, *, dtype: str,
           example: str, result: str):
    def infer(types, args):
        for i, t in enumerate(types):
            numeric(t, i)
        out = elementwise(*types)
        if symbol == "/" and out.dtype in (INT, BOOL):
            out = out.with_(dtype=REAL)
        return out

    def emit(args, out):
        a, b = args
        # left-associative: the right operand binds tighter (`a - (b - c)`, `a / (b * c)`)
        return Emitted(f"{wrap(a, prec)} {symbol} {wrap(b, prec + 1)}", prec)

    register(Operator(name, 2, 2, infer, emit, latex, doc, reference=ref, category="arithmetic",
                      usage=f"a {symbol} b", shape="elementwise, broadcasting", dtype=dtype, example=example,
                      result=result))


_arith("add", "+", P_ADD, lambda a: f"{a[0]} + {a[1]}", lambda a, b: a + b, "elementwise sum (broadcasting)",
       dtype="promoted", example="x + 1", result="real[m]")
_arith("sub", "-", P_ADD, lambda a: f"{a[0]} - {a[1]}", lambda a, b: a - b, "elementwise difference",
       dtype="promoted", example="A @ x - y", result="real[n]")
_arith("mul", "*", P_MUL, lambda a: f"{a[0]} {a[1]}", lambda a, b: a * b, "elementwise product",
       dtype="promoted", example="lam * x", result="real[m]")
_arith("div", "/", P_MUL, lambda a: f"\\frac{{{a[0]}}}{{{a[1]}}}", lambda a, b: a / b, "elementwise quotient",
       dtype="promoted; int / int is real", example="x / (1 + abs(x))", result="real[m]")


def _pow_infer(types, args):
    numeric(types[0], 0)
    real(types[1], 1, "^ (exponent)")
    out = elementwise(*types)
    int_exponent = args[1] is not None and isinstance(args[1].static, int)
    return out.with_(dtype=REAL) if out.dtype in (INT, BOOL) and not int_exponent else out


def _pow_emit(args, out):
    a, b = args
    if b.static == 2 and not a.py and a.type.dtype != COMPLEX:
        return Emitted(f"torch.square({a.code})", P_ATOM)
    # right-associative: the base binds tighter (`(a ** b) ** c`), the exponent may be `a ** b ** c`
    return Emitted(f"{wrap(a, P_POW + 1)} ** {wrap(b, P_POW)}", P_POW)


register(Operator("pow", 2, 2, _pow_infer, _pow_emit, lambda a: f"{{{a[0]}}}^{{{a[1]}}}",
                  "elementwise power; real, also negative, exponents (`x^2`, `x**-0.5`)",
                  reference=lambda a, b: a ** b, category="arithmetic", usage=("a ^ b", "a ** b"),
                  shape="elementwise, broadcasting; b real (may be negative)",
                  dtype="promoted; int ^ int literal stays int", example="abs(x)^-0.5", result="real[m]"))


def _neg_infer(types, args):
    numeric(types[0], 0)
    return types[0]


register(Operator("neg", 1, 1, _neg_infer, lambda a, o: Emitted(f"-{wrap(a[0], P_UNARY)}", P_UNARY),
                  lambda a: f"-{a[0]}", "unary minus", reference=lambda a: -a, category="arithmetic",
                  usage="-a", shape="same", dtype="same", example="-x^2", result="real[m]"))


def _compare(name: str, symbol: str, tex: str, example: str, ref):
    def infer(types, args):
        for i, t in enumerate(types):
            real(t, i, symbol)
        return elementwise(*types).with_(dtype=BOOL)

    def emit(args, out):
        a, b = args
        return Emitted(f"{wrap(a, P_ADD)} {symbol} {wrap(b, P_ADD)}", P_CMP)

    register(Operator(name, 2, 2, infer, emit, lambda a: f"{a[0]} {tex} {a[1]}",
                      f"elementwise comparison `{symbol}` (a boolean mask, for `where`)", reference=ref,
                      differentiable=False, category="arithmetic", usage=f"a {symbol} b",
                      shape="elementwise, broadcasting; real operands", dtype="bool (only for `where`)",
                      gradient="none", example=example, result="real[m]"))


_compare("lt", "<", "<", "where(x < lam, 0 * x, x)", lambda a, b: a < b)
_compare("gt", ">", ">", "where(x > 0, x, 0)", lambda a, b: a > b)
_compare("le", "<=", "\\le", "where(abs(x) <= lam, 0 * x, x)", lambda a, b: a <= b)
_compare("ge", ">=", "\\ge", "where(x >= 0, x, -x)", lambda a, b: a >= b)
_compare("eq", "==", "=", "where(x == 0, 1, x)", lambda a, b: a == b)
_compare("ne", "!=", "\\ne", "where(x != 0, x / abs(x), 0)", lambda a, b: a != b)
