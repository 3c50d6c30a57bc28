"""The operator registry: every operator of the language is defined here, once.

One operator is one `register(Operator(...))` call in the module of its concern:

  arithmetic.py   `+ - * / ^`, unary minus, comparisons        (the syntax operators)
  linalg.py       `@`, `.T`, `.H`, opnorm, solve, outer
  shape.py        eye, zeros, ones, cat, stack, reshape
  proximal.py     soft, hard, ..., svt, row_shrink, clamp, normalisations
  elementwise.py  relu, exp, abs, ...; complex helpers (angle, expj, complex)
  reductions.py   sum, mean, norm, max, min, dot, nnz; argmax, onehot, where
  fourier.py      fft family, otf, conv2/conv2_adj, kernel padding/cropping/support, stft/istft
  imaging.py      conv2z, chanmix, patches, resampling, finite differences
  arrays.py       sqdist, diag, trace, diff / diff_adj, shift
  probability.py  softmax, logsoftmax, logsumexp; max/min along an axis (`max(v, axis=k)`)
  diffusion.py    conv2s/conv2s_adj (symmetric boundary), influence functions rbf, pwl

The entry carries the shape rule, the emission (or the name of its kernel in unroll.runtime), the
LaTeX, a numpy reference and the documentation from which `unrollc ops` and the operator tables of
docs/language.md are generated (compiler/opdocs.py).  core.py documents the fields and the default
batching rule.  Nothing here imports torch; numpy is imported only when a reference runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import (  # noqa: F401 (register)
    arithmetic,
    arrays,
    autodiff,
    diffusion,
    elementwise,
    fourier,
    imaging,
    linalg,
    probability,
    proximal,
    reductions,
    shape,
)
from .core import (
    OPERATORS,
    P_ADD,
    P_ATOM,
    P_CMP,
    P_MUL,
    P_POW,
    P_UNARY,
    Arg,
    EmitContext,
    Emitted,
    Operator,
    all_axes,
    as_complex,
    axis_code,
    lift,
    lift_arg,
    lifted,
    register,
    tensor,
    wrap,
)

__all__ = [
    "INTERNAL_OPERATORS",
    "OPERATORS",
    "P_ADD",
    "P_ATOM",
    "P_CMP",
    "P_MUL",
    "P_POW",
    "P_UNARY",
    "SPECIAL_FORMS",
    "SPECIAL_FORM_DOCS",
    "SYNONYMS",
    "Arg",
    "EmitContext",
    "Emitted",
    "Operator",
    "SpecialForm",
    "all_axes",
    "as_complex",
    "axis_code",
    "function_names",
    "lift",
    "lift_arg",
    "lifted",
    "lookup",
    "register",
    "tensor",
    "wrap",
]


# ---------------------------------------------------------------- special forms (checked by the checker itself)
@dataclass(frozen=True)
class SpecialForm:
    """A form the checker handles itself (not a registry entry), documented like an operator."""

    name: str
    doc: str
    usage: str
    shape: str
    dtype: str
    gradient: str
    example: str
    result: str


SPECIAL_FORM_DOCS = (
    SpecialForm("prev", "prev(x): the value of state x at the start of the current layer (Jacobi / simultaneous "
                "updates)", "prev(s)", "s a state → its type", "of s", "yes", "prev(x)", "real[m]"),
    SpecialForm("grad", "grad(f, x): gradient of the scalar expression f with respect to x, derived "
                "symbolically, else by autograd", "grad(f, v)", "f a scalar expression, v a name → shape of v",
                "of v",
                "yes (it is an expression)", "grad(0.5 * norm(A @ x - y)^2, x)", "real[m]"),
    SpecialForm("vjp", "vjp(y, x, v): the vector-Jacobian product vᵀ ∂y/∂x, by autograd in the forward pass (x a "
                "per-sample name)", "vjp(y, x, v)", "v of y's shape → shape of x", "real", "yes (create_graph when "
                "training)", "vjp(A @ tanh(x), x, A @ x)", "real[m]"),
    SpecialForm("jvp", "jvp(y, x, v): the Jacobian-vector product ∂y/∂x · v, by autograd in the forward pass",
                "jvp(y, x, v)", "v of x's shape → shape of y", "real", "yes (create_graph when training)",
                "jvp(A @ tanh(x), x, x)", "real[n]"),
    SpecialForm("jacobian", "jacobian(y, x): the Jacobian ∂y/∂x per sample, shape y.shape + x.shape, by autograd",
                "jacobian(y, x)", "→ y.shape + x.shape", "real", "yes (create_graph when training)",
                "jacobian(A @ tanh(x), x)", "real[n, m]"),
    SpecialForm("history_sum", "Σ_j b[j]·s^(j), j = 0..l: a combination of the values the state s had at the start "
                "of layers 0..l (s^(0) its initial value) — dense / history-cognizant unrolling; layer l uses the "
                "first l+1 weights", "history_sum(b, s)", "b a real vector [num_layers], s a state → type of s",
                "of s", "yes (entries of b above l get zero gradient)", "history_sum(beta, x)", "real[m]"),
)

# name -> one-line doc
SPECIAL_FORMS = {form.name: form.doc for form in SPECIAL_FORM_DOCS}

# registry entries reached through syntax (`a + b`, `-a`, `a @ b`, `a < b`), not by name
INTERNAL_OPERATORS = frozenset({"add", "sub", "mul", "div", "pow", "neg", "matmul", "lt", "gt", "le", "ge", "eq", "ne"})
# the keyword forms of an operator (`max(v, axis=k)` is the entry `max_axis`), documented with it
# ... and the syntax forms of other modules (slices `x[1:]`: arrays.py)
INTERNAL_OPERATORS |= frozenset(name for name, op in OPERATORS.items()
                                if "keyword_form_of" in op.extra or "syntax" in op.extra)


# names from numpy / torch that new users reach for, and how the language spells them (unknown-operator hints)
SYNONYMS = {
    "roll": "shift(v, k, axis)", "diagonal": "diag(M)", "diag_embed": "diag(v)", "tr": "trace(M)",
    "lse": "logsumexp(v, axis)", "log_softmax": "logsoftmax(v, axis)", "amax": "max(v, axis=k)",
    "amin": "min(v, axis=k)", "cdist": "sqdist(X, Y) (squared distances)", "pdist": "sqdist(X, X)",
    "gradient": "diff(v, axis)", "matmul": "A @ x",
}


def lookup(name: str) -> Operator | None:
    return OPERATORS.get(name)


def function_names() -> list[str]:
    """Every name a spec can call: the named operators and the special forms."""
    return sorted([n for n in OPERATORS if n not in INTERNAL_OPERATORS] + list(SPECIAL_FORMS))
