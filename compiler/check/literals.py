"""Arithmetic on literals, evaluated at compile time with bounds (hostile specs: `layers 2^2^40`).

Every `+ - * / ^` and unary `-` whose operands are all literals (numbers, `num_layers`, or such arithmetic)
is evaluated by the checker as it is checked.  The result must be a finite real number of double
precision (|x| ≤ 1.8e308): a larger result, a division by zero, `0^-1` or a non-real power such as
`(-1)^0.5` is a located error where it is written, instead of a hang, an `OverflowError` in the
checker, or a failure when the generated module runs.  No evaluation step does unbounded work: an
integer power whose result would pass the bound is refused before it is computed.
"""

from __future__ import annotations

import math
import sys

MAX_MAGNITUDE = sys.float_info.max
MAX_INT = int(MAX_MAGNITUDE)  # the largest integer a double holds
INT64_MAX = 2**63 - 1  # torch's integers (sizes, indices, `int` hyperparameters) are 64-bit
MAX_COUNT = 1_000_000  # `layers N`, `--layers N` and `repeat N` at most this
LITERAL_OPS = ("add", "sub", "mul", "div", "pow", "neg")
_SYMBOLS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "pow": "^"}


class LiteralError(Exception):
    def __init__(self, message: str, hint: str):
        super().__init__(message)
        self.message, self.hint = message, hint


def _too_large(what: str) -> LiteralError:
    return LiteralError(f"{what} is too large: literal arithmetic must stay below about 1.8e308",
                        "numbers are double-precision values; compute with smaller numbers")


def check_magnitude(value, what: str = "the result"):
    """`value` if it is a finite real number a double can hold, else a LiteralError."""
    if isinstance(value, complex):
        raise LiteralError(f"{what} is not a real number ({value})",
                           "a real power of a negative number is complex; use `complex(...)` or `expj(...)` "
                           "for complex values, or a nonnegative base")
    if isinstance(value, int):
        if abs(value) > MAX_INT:
            raise _too_large(what)
        return value
    if not math.isfinite(value):
        raise _too_large(what)
    return value


def fold(op: str, values: list):
    """The value of `op` on literal `values`, bounded; raises LiteralError with a message and a hint."""
    if op == "neg":
        return check_magnitude(-values[0])
    a, b = values
    symbol = _SYMBOLS[op]
    if isinstance(a, complex) or isinstance(b, complex):
        raise LiteralError(f"`{symbol}` of a non-real literal", "literal arithmetic is on real numbers")
    if op == "add":
        return check_magnitude(a + b, "the sum")
    if op == "sub":
        return check_magnitude(a - b, "the difference")
    if op == "mul":
        return check_magnitude(a * b, "the product")
    if op == "div":
        if b == 0:
            raise LiteralError("division by zero", "the divisor is the literal 0 (or arithmetic giving 0)")
        try:
            return check_magnitude(a / b, "the quotient")
        except OverflowError:
            raise _too_large("the quotient") from None
    # pow
    if a == 0 and b < 0:
        raise LiteralError(f"0 raised to the negative power {b} (division by zero)",
                           "a negative power of zero is infinite; use a nonzero base")
    if a < 0 and isinstance(b, float) and not b.is_integer():
        raise LiteralError(f"({a})^{b} is not a real number",
                           "a fractional power of a negative number is complex; use a nonnegative base, or "
                           "`expj`/`complex(...)` for complex values")
    if abs(a) > 1 and b > 0 and b * math.log2(abs(a)) > 1025:
        raise _too_large("the power")
    try:
        return check_magnitude(a ** b, "the power")
    except OverflowError:
        raise _too_large("the power") from None
    except ZeroDivisionError:
        raise LiteralError("0 raised to a negative power (division by zero)", "use a nonzero base") from None
