"""`stop_grad(v)`: the value of v, a constant for differentiation (straight-through estimators are
`v + stop_grad(h(v) - v)`).  The differentiation forms themselves (`grad`, `vjp`, `jvp`, `jacobian`)
are special forms checked by compiler/check/diff_forms.py."""

from __future__ import annotations

from .core import P_ATOM, Emitted, Operator, at_least_real, numeric, register, tensor, wrap


def _infer(types, args):
    (t,) = types
    numeric(t, 0)
    return t.with_(dtype=at_least_real(t.dtype))


def _emit(a, out):
    (v,) = a
    return Emitted(f"{tensor(v)}.detach()" if v.py else f"{wrap(v, P_ATOM)}.detach()")


register(Operator("stop_grad", 1, 1, _infer, _emit,
                  lambda a: f"\\operatorname{{sg}}\\left[{a[0]}\\right]",
                  "the value of v, a constant for differentiation (no gradient flows through it)",
                  reference=lambda v: v, category="elementwise", usage="stop_grad(v)", shape="same shape",
                  dtype="of v", gradient="zero (by definition)", example="x + stop_grad(soft(x, lam) - x)",
                  result="real[m]"))
