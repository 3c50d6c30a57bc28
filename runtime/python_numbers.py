"""Construction-time arithmetic of Python numbers (hyperparameters, constants of the data kept as Python
floats, parameter defaults) fails with Python's own exceptions -- `1e300 ** 2` raises OverflowError,
`lam / 0.0` ZeroDivisionError -- where a tensor would give inf.  `guard_constructor` turns them into a
ValueError that names the spec statement being computed and the hyperparameter values; so does a
linear-algebra failure on constants of the data (an SVD of non-finite values, `solve` of a singular matrix).
`check_dim_relations` checks, when an argument binds a dim, that an axis indexed by other dims is larger
than the index (`ys[n]` with `ys : real[T, k]` needs T > n): a ValueError naming the argument, not an
IndexError in forward."""

from __future__ import annotations

import functools
import linecache
import math
import re

import torch

_SPEC_LINE = re.compile(r"#\s*(line \d+: .*)$")
_DEFINED = re.compile(r"line \d+:\s*(?:let|param|require|state)?\s*([A-Za-z_][A-Za-z0-9_]*)")


def _statement(error: BaseException, filename: str) -> tuple[str | None, str | None]:
    """The spec statement (`line N: ...`, from the generated code's comments) whose computation raised, and
    the name it defines; (None, None) when the generated source cannot be read."""
    tb, lineno = error.__traceback__, None
    while tb is not None:  # the innermost frame in the generated module
        if tb.tb_frame.f_code.co_filename == filename:
            lineno = tb.tb_lineno
        tb = tb.tb_next
    if lineno is None:
        return None, None
    for n in range(lineno, max(lineno - 40, 0), -1):  # the statement's own comment, or the nearest above it
        match = _SPEC_LINE.search(linecache.getline(filename, n))
        if match:
            statement = match.group(1).strip()
            name = _DEFINED.match(statement)
            return statement, name.group(1) if name else None
    return None, None


def guard_constructor(cls) -> None:
    """Wrap the `__init__` that `cls` defines itself, if `cls` is a generated module (it sets `spec_name`)."""
    init = cls.__dict__.get("__init__")
    if init is None or "spec_name" not in cls.__dict__ or getattr(init, "_python_number_guard", False):
        return

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except (OverflowError, ZeroDivisionError) as err:
            statement, name = _statement(err, init.__code__.co_filename)
            hypers = ", ".join(f"{h}={getattr(self, h)!r}" for h, _ in getattr(cls, "hyper_defaults", ())
                               if h in self.__dict__)
            what = "overflowed" if isinstance(err, OverflowError) else "divided by zero"
            where = f"computing `{statement}`" if statement else "computing the constants"
            raise ValueError(f"{name or cls.__name__}: {where}, Python-number arithmetic {what} ({err})"
                             + (f" with the hyperparameters {hypers}" if hypers else "")
                             + ": choose values whose arithmetic stays finite and nonzero") from err
        except torch.linalg.LinAlgError as err:  # LAPACK on a constant of the data (`opnorm`, `solve`, ...)
            statement, name = _statement(err, init.__code__.co_filename)
            where = f"computing `{statement}`" if statement else "computing the constants"
            text = str(err)
            why = ("the matrix has NaN or infinite entries (arithmetic on the data overflowed)" if "non-finite" in text
                   else "the matrix is singular" if "singular" in text else text.splitlines()[0])
            raise ValueError(f"{name or cls.__name__}: {where}, a linear-algebra routine failed: {why}; "
                             "check the data and the hyperparameters") from err

    __init__._python_number_guard = True
    cls.__init__ = __init__


def dim_size(terms, const, dims: dict) -> int | None:
    """The size of a composite dim (`2*n + 1`, as DimExpr terms and constant) from bound dims; None if unbound."""
    total = const
    for name, coef in terms:
        factors = name.split("*")
        if any(f not in dims for f in factors):
            return None
        total += coef * math.prod(dims[f] for f in factors)
    return total


def _text(terms, const) -> str:
    parts = [name.replace("*", " * ") if coef == 1 else f"{coef} * {name}" for name, coef in terms]
    return " + ".join(parts + ([str(const)] if const else [])) or "0"


def check_dim_relations(relations, dims: dict, name: str, dim_names: tuple, given) -> None:
    """An index that is a dim expression (`ys[n]` with `ys : real[T, k]`) needs the axis larger than it:
    checked once every dim involved is bound, when the argument `name` binds one of them."""
    for size_terms, size_const, index_terms, index_const, why in relations:
        involved = {f for n, _ in size_terms + index_terms for f in n.split("*")}
        if not involved & {d for d in dim_names if isinstance(d, str)}:
            continue
        size, index = dim_size(size_terms, size_const, dims), dim_size(index_terms, index_const, dims)
        if size is not None and index is not None and size <= index:
            bound = ", ".join(f"`{d}` = {dims[d]}" for d in sorted(involved))
            raise ValueError(f"{name}: the spec needs `{_text(size_terms, size_const)}` > "
                             f"`{_text(index_terms, index_const)}` for {why}, got {bound} (shape {given})")
