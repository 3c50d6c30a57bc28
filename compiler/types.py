"""Value types of the spec language: dtype + logical shape + batched flag.

The logical shape never includes the batch axis.  A *batched* value (one that
depends on an input) carries one extra leading batch axis at run time; the
emitter inserts the axis bookkeeping, the spec never mentions it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .ast import DimExpr

REAL, COMPLEX, INT, BOOL = "real", "complex", "int", "bool"
OPERATOR, NET, STRING = "operator", "net", "string"
FUNCTION = "function"  # function data: shape is the result's, signature the argument types
NUMERIC = (REAL, COMPLEX, INT, BOOL)


@dataclass(frozen=True)
class Type:
    dtype: str
    shape: tuple[DimExpr, ...] = ()
    batched: bool = False
    # operator[out <- in]: shape is the input shape, out_shape the output
    out_shape: tuple[DimExpr, ...] | None = None
    # function(args) -> result: (argument types, result type, differentiable)
    signature: tuple | None = None

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_scalar(self) -> bool:
        return not self.shape

    @property
    def numeric(self) -> bool:
        return self.dtype in NUMERIC

    def with_(self, **changes) -> Type:
        return replace(self, **changes)

    def __str__(self) -> str:
        if self.dtype == OPERATOR:
            return f"operator[{_dims(self.out_shape or ())} <- {_dims(self.shape)}]"
        if self.dtype == FUNCTION and self.signature is not None:
            args, result, _ = self.signature
            return f"function({', '.join(str(a) for a in args)}) -> {result}"
        base = self.dtype if not self.shape else f"{self.dtype}[{_dims(self.shape)}]"
        return base


def _dims(shape) -> str:
    return ", ".join(str(d) for d in shape)


def promote(*dtypes: str) -> str:
    """Result dtype of elementwise arithmetic: bool < int < real < complex."""
    order = [BOOL, INT, REAL, COMPLEX]
    return max(dtypes, key=order.index)


class ShapeError(Exception):
    """Raised by shape rules; the checker turns it into a located diagnostic.

    `arg` is the index of the offending argument (to point the caret at it),
    or None for the whole call.
    """

    def __init__(self, message: str, arg: int | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.arg = arg
        self.hint = hint


def broadcast(a: tuple[DimExpr, ...], b: tuple[DimExpr, ...]) -> tuple[DimExpr, ...] | None:
    """numpy broadcasting of two logical shapes (trailing alignment); None if incompatible."""
    out = []
    one = DimExpr.of(1)
    for i in range(1, max(len(a), len(b)) + 1):
        da = a[-i] if i <= len(a) else one
        db = b[-i] if i <= len(b) else one
        if da == db or db == one:
            out.append(da)
        elif da == one:
            out.append(db)
        else:
            return None
    return tuple(reversed(out))


def shape_str(shape) -> str:
    return "scalar" if not shape else f"[{_dims(shape)}]"
