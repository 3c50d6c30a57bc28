"""Typed expression trees of the .unroll language: spec text and numpy meaning (tests/specgen.py).

An `Expr` knows its logical type (shape of one sample, dtype, batched flag), its level (0 constant,
1 once per forward call, 2 per layer) and whether it is a Python number in the generated code.
tests/specgen_ops.py generates them, tests/specgen_program.py wraps them into specs.

The numpy meaning of a tree (`evaluate`) uses numpy's own semantics for the syntax (`+ - * / ^`,
`@`, `.T`, `.H`, indexing) and the registry's `reference` functions (one unbatched sample) for the
named operators, so it shares no code with the emitter or the runtime kernels.  Where the value of
a discontinuous operator (sign, hard thresholds, comparisons, argmax, top-k, nnz) depends on
rounding, `evaluate` raises `Ambiguous` and the caller skips that comparison.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from unroll.compiler.operators import OPERATORS

SIZES = {"n": 4, "m": 5, "k": 2,  # distinct, and distinct from the test batch size 3
         "T": 8, "F": 3, "N": 5,  # a signal and its STFT (n_fft = 2(F-1) = 4, hop 2: N = 1 + T // 2)
         "2*n": 8, "2*m": 10}  # a fine image grid (down / up / bicubic by 2)
PLAIN_DIMS = ("n", "m", "k", "T", "F", "N")
IMAGE_DIMS = ("n", "m")  # image axes (>= 3, the kernel size)
P_CMP, P_ADD, P_MUL, P_NEG, P_POW, P_POST, P_ATOM = range(1, 8)  # the spec's precedence levels (language.md §5.1)
DISCONTINUITY_TOL = 1e-9
MUL_LEVEL = ("matmul", "mul", "div")  # emitted at `*` precedence: a product's right operand needs parentheses


class Ambiguous(Exception):
    """The reference value depends on rounding (an argument sits on an operator's discontinuity)."""


class _AmbiguousValue:
    def __repr__(self):
        return "AMBIGUOUS"


AMBIGUOUS = _AmbiguousValue()  # the value of a name whose reference depends on rounding


def evaluate_or_mark(e: Expr, env: dict):
    try:
        return evaluate(e, env)
    except Ambiguous:
        return AMBIGUOUS


@dataclass(frozen=True)
class Ty:
    shape: tuple  # dim names ('n', 'm', 'k') and integers
    dtype: str  # 'real', 'complex', 'int', 'bool'
    batched: bool = False


def promote(*dtypes: str) -> str:
    order = ["bool", "int", "real", "complex"]
    return order[max(order.index(d) for d in dtypes)]


def size(shape: tuple) -> tuple:
    return tuple(SIZES[d] if isinstance(d, str) else d for d in shape)


@dataclass(frozen=True, eq=False)
class Expr:
    op: str  # 'leaf', 'num', 'layer', syntax ('add', 'matmul', 'T', 'index', ...) or a registry name
    ty: Ty
    args: tuple = ()
    static: tuple = ()  # trailing literal arguments (axis, counts, dims); the name of a leaf/operator/net
    level: int = 0  # 0 constant, 1 forward, 2 layer
    py: bool = False  # a Python number in the generated code (literals, hyperparameters, layer)

    def walk(self):
        yield self
        for a in self.args:
            yield from a.walk()


def make(op: str, args: tuple, ty: Ty, static: tuple = ()) -> Expr:
    return Expr(op, ty, tuple(args), tuple(static), max((a.level for a in args), default=0),
                bool(args) and all(a.py for a in args) and op in _PY_OPS)


_PY_OPS = {"add", "sub", "mul", "div", "pow", "neg", "lt", "gt", "le", "ge", "eq", "ne", "max", "min"}
_UNARY = ("relu", "sign", "abs", "abs2", "sqrt", "exp", "log", "tanh", "sigmoid", "conj", "real", "imag", "angle")
# argument positions where a Python number (literal, hyperparameter, `layer`) is emitted correctly
PY_ARG_OK = {"soft": {1}, "hard": {1}, "soft_nonneg": {1}, "ss_soft": {1, 2}, "clamp": {1, 2}, "hard_topk": {1},
             "max": {0, 1}, "min": {0, 1}, "where": {0, 1, 2}, "pick": {1}, **{name: {0} for name in _UNARY}}
SYNTAX = {"leaf", "num", "layer", "prev", "grad", "history_sum", "add", "sub", "mul", "div", "pow", "neg", "matmul",
          "T", "H", "index", "lt", "gt", "le", "ge", "eq", "ne", "apply", "netcall"}


def python_number_argument(e: Expr, numbers: bool = True, constants: bool = False) -> bool:
    """A registry operator applied, where its emission expects a tensor, to a Python number (`numbers`: a
    literal, a hyperparameter, `layer`) or to a real scalar constant (`constants`: `opnorm(A)`, `sum(a)`,
    which the compiler keeps as Python numbers)."""
    def python(a: Expr) -> bool:
        return numbers and a.py or constants and not a.py and not a.ty.shape and a.ty.dtype in ("real", "int") \
            and value_level(a) == 0
    return e.op not in SYNTAX and any(python(a) and i not in PY_ARG_OK.get(e.op, ()) for i, a in enumerate(e.args))
_BINARY = {"add": ("+", P_ADD), "sub": ("-", P_ADD), "mul": ("*", P_MUL), "div": ("/", P_MUL),
           "matmul": ("@", P_MUL), "lt": ("<", P_CMP), "gt": (">", P_CMP), "le": ("<=", P_CMP),
           "ge": (">=", P_CMP), "eq": ("==", P_CMP), "ne": ("!=", P_CMP)}


def dependencies(e: Expr) -> set[str]:
    """The declared names the value of `e` depends on (a gradient drops what differentiation removes:
    the gradient of dot(c, x) is c), for the batched analysis of tests/specgen_program.py."""
    if e.op == "grad":
        return gradient_dependencies(e.args[0], e.static[0])
    names = {e.static[0]} if e.op in ("leaf", "prev", "history_sum") else set()
    return names.union(*(dependencies(a) for a in e.args))


def value_level(e: Expr) -> int:
    """The level of the value of `e` (Expr.level is that of its text): a gradient is at the level of what
    it depends on, so `grad(c * sum(y), y)` is a constant."""
    if e.op == "grad":
        names = gradient_dependencies(e.args[0], e.static[0]) | {"layer"}
        return max((a.level for a in e.args[0].walk() if a.op in ("leaf", "layer") and a.static[0] in names),
                   default=0)
    if not e.args:
        return e.level
    return max(value_level(a) for a in e.args)


def gradient_dependencies(f: Expr, x: str) -> set[str]:
    if f.op in ("add", "sub"):
        return gradient_dependencies(f.args[0], x) | gradient_dependencies(f.args[1], x)
    if f.op != "mul" or f.args[1].op not in ("sum", "dot", "pow"):  # not built by ExprGen.gradient
        return dependencies(f) | {x}
    coefficient, term = f.args  # coefficient * term, as ExprGen.gradient builds it
    if term.op == "sum":
        inner = set()
    elif term.op == "dot":
        inner = dependencies(term.args[0])
    else:  # norm(x)^2 or norm(M @ x - v)^2
        inner = dependencies(term) | {x}
    return dependencies(coefficient) | inner


# ------------------------------------------------------------------------------------------- spec text
def text(e: Expr, minimal: bool = True) -> str:
    """Spec text of an expression: minimal parentheses by the language's precedence, or around every
    compound operand (both parse to the same tree)."""
    return _text(e, minimal)[0]


def _text(e: Expr, minimal: bool) -> tuple[str, int]:
    def sub(a: Expr, need: int) -> str:
        s, p = _text(a, minimal)
        return s if p >= need and (minimal or p == P_ATOM or p == P_POST) else f"({s})"

    if e.op in ("leaf", "num", "layer"):
        s = e.static[0]
        return s, (P_ATOM if not s.startswith("-") else P_NEG)
    if e.op in _BINARY:
        sym, p = _BINARY[e.op]
        return f"{sub(e.args[0], p)} {sym} {sub(e.args[1], p + 1)}", p
    if e.op == "neg":
        return f"-{sub(e.args[0], P_POW)}", P_NEG
    if e.op == "pow":
        return f"{sub(e.args[0], P_POST)}{e.static[0]}{sub(e.args[1], P_NEG)}", P_POW
    if e.op in ("T", "H"):
        return f"{sub(e.args[0], P_POST)}.{e.op}", P_POST
    if e.op == "index":
        return f"{sub(e.args[0], P_POST)}[{_text(e.args[1], minimal)[0]}]", P_POST
    if e.op == "apply":  # a user operator K(x) / K.H(y)
        name, adjoint = e.static
        return f"{name}{'.H' if adjoint else ''}({_text(e.args[0], minimal)[0]})", P_POST
    if e.op == "netcall":
        return f"{e.static[0]}({_text(e.args[0], minimal)[0]})", P_POST
    if e.op == "prev":
        return f"prev({e.static[0]})", P_POST
    if e.op == "grad":
        return f"grad({_text(e.args[0], minimal)[0]}, {e.static[0]})", P_POST
    if e.op in ("slice_axis", "pick"):  # `x[:, a:b]`, `X[:, i]`
        axis = e.static[0]
        if e.op == "slice_axis":
            start, stop = e.static[1], e.static[2]
            item = f"{start if start else ''}:{'' if stop is None else stop}"
        else:
            item = _text(e.args[1], minimal)[0]
        return f"{sub(e.args[0], P_POST)}[{', '.join([':'] * axis + [item])}]", P_POST
    if e.op in ("max_axis", "min_axis"):  # the keyword form of max / min
        return f"{e.op[:3]}({_text(e.args[0], minimal)[0]}, axis={e.static[0]})", P_POST
    parts = [_text(a, minimal)[0] for a in e.args] + [str(s) for s in e.static]
    return f"{e.op}({', '.join(parts)})", P_POST


# ------------------------------------------------------------------------------------------- numpy meaning
def _near(values, points, scale) -> bool:
    v = np.abs(np.asarray(values, dtype=complex) - points)
    return bool(np.any(v < DISCONTINUITY_TOL * (1 + scale)))


def _scale(*vals) -> float:
    return max(float(np.max(np.abs(v))) if np.size(v) else 0.0 for v in vals)


def _check_topk(v, k: int) -> None:
    mags = np.sort(np.abs(np.ravel(v)))[::-1]
    if 0 < k < mags.size and mags[k - 1] - mags[k] < DISCONTINUITY_TOL * (1 + mags[0]):
        raise Ambiguous("top-k tie")


def evaluate(e: Expr, env: dict):
    """The value of `e` on one sample; env maps declared names (and 'layer', 'prev:x') to values."""
    value = _evaluate(e, env)
    if e.ty.dtype in ("real", "complex") and not np.all(np.isfinite(value)):
        raise Ambiguous("a non-finite intermediate value")  # nan / inf propagate differently through thresholds
    if e.ty.dtype == "real" and isinstance(value, (np.ndarray, np.generic)) and np.issubdtype(value.dtype, np.integer):
        return value.astype(float)  # int arguments of real-valued operators (`abs2(i1)`)
    return value


def _evaluate(e: Expr, env: dict):
    op = e.op
    if op in ("leaf", "prev"):
        value = env[e.static[0] if op == "leaf" else "prev:" + e.static[0]]
        if value is AMBIGUOUS:
            raise Ambiguous(e.static[0])
        return value
    if op == "num":
        return e.static[1]
    if op == "layer":
        return env["layer"]
    if op == "history_sum":  # sum_j beta[j] x^(j) over the values x had at the start of layers 0..layer
        beta, history = _evaluate(e.args[0], env), env["history:" + e.static[0]][:env["layer"] + 1]
        if any(h is AMBIGUOUS for h in history):
            raise Ambiguous(e.static[0])
        return sum(beta[j] * h for j, h in enumerate(history))
    if op == "grad":
        return _gradient(e.args[0], e.static[0], env)
    if op == "eye":
        return np.eye(size(e.static)[0])
    if op in ("zeros", "ones"):
        return (np.zeros if op == "zeros" else np.ones)(size(e.static))
    a = [evaluate(x, env) for x in e.args]
    if op == "add":
        return a[0] + a[1]
    if op == "sub":
        return a[0] - a[1]
    if op == "mul":
        return a[0] * a[1]
    if op == "div":
        return a[0] / a[1]
    if op == "pow":
        return a[0] ** a[1]
    if op == "neg":
        return -a[0]
    if op == "matmul":
        return np.matmul(a[0], a[1])
    if op == "T":
        return np.swapaxes(a[0], -1, -2)
    if op == "H":
        return np.conj(np.swapaxes(a[0], -1, -2))
    if op == "index":
        return a[0][a[1]]
    if op in ("eq", "ne"):  # integers only
        return (a[0] == a[1]) if op == "eq" else (a[0] != a[1])
    if op in ("lt", "gt", "le", "ge"):
        if _near(np.asarray(a[0]) - a[1], 0, _scale(a[0], a[1])):
            raise Ambiguous("comparison of nearly equal values")
        return {"lt": np.less, "gt": np.greater, "le": np.less_equal, "ge": np.greater_equal}[op](a[0], a[1])
    if op == "apply":
        return _apply_operator(env[e.static[0]], a[0], e.static[1], e.ty.shape)
    if op == "netcall":  # sub-networks are declared init=zero: the zero map
        return np.zeros(size(e.ty.shape))
    if op == "cat":  # a piece one axis short of the result is one channel
        rank = len(e.ty.shape)
        return np.concatenate([np.asarray(v)[None] if np.ndim(v) == rank - 1 else v for v in a], axis=0)
    _check_discontinuity(op, a, e.static)
    args = [np.asarray(v) for v in a] + [SIZES.get(s, s) if isinstance(s, str) else s for s in e.static]
    return OPERATORS[op].reference(*args)


def _gradient(f: Expr, name: str, env: dict):
    """The gradient of the scalar `f` (at most quadratic in `name`, as the generator builds it) by central
    differences, exact for quadratics whatever the step; a step of the size of x keeps the rounding of f
    relative to the gradient."""
    if env[name] is AMBIGUOUS:
        raise Ambiguous(name)
    x = np.asarray(env[name], dtype=float)
    h = max(1.0, float(np.max(np.abs(x))))
    grad = np.zeros(x.shape)
    for i in np.ndindex(x.shape):
        step = np.zeros(x.shape)
        step[i] = h
        grad[i] = (evaluate(f, dict(env, **{name: x + step})) - evaluate(f, dict(env, **{name: x - step}))) / (2 * h)
    return grad


def _apply_operator(matrix, x, adjoint: bool, out_shape: tuple):
    matrix = np.conj(matrix.T) if adjoint else matrix
    return (matrix @ np.ravel(x)).reshape(size(out_shape))


def _check_discontinuity(op: str, a: list, static: tuple) -> None:
    if op == "sign" and _near(a[0], 0, _scale(a[0])):
        raise Ambiguous("sign near 0")
    if op == "hard" and _near(np.abs(a[0]), a[1], _scale(a[0], a[1])):
        raise Ambiguous("hard threshold at the threshold")
    if op == "nnz" and _near(a[0], 0, _scale(a[0])):
        raise Ambiguous("nnz of a near-zero entry")
    if op == "argmax":
        _check_topk(np.abs(np.asarray(a[0]) - np.min(a[0])) + 1, 1)  # top two values equal
    if op == "hard_topk":
        _check_topk(a[0], a[1])
    if op == "ss_soft":
        if _near(np.abs(a[0]), a[1], _scale(a[0], a[1])):
            raise Ambiguous("ss_soft at the threshold")
        import math

        _check_topk(a[0], math.ceil(float(a[2]) * np.size(a[0]) * (1 - 1e-6)))
    if op == "angle" and np.any((np.real(a[0]) <= DISCONTINUITY_TOL) & (np.abs(np.imag(a[0])) < DISCONTINUITY_TOL)):
        raise Ambiguous("angle on the branch cut")


def num(text_: str, value) -> Expr:
    return Expr("num", Ty((), "int" if isinstance(value, int) else "real"), static=(text_, value), py=True)
