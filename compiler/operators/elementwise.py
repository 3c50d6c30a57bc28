"""Elementwise functions (`relu`, `exp`, `abs`, ...) and the complex helpers (`angle`, `expj`, `complex`)."""

from __future__ import annotations

from collections.abc import Callable

from ..types import COMPLEX, REAL, ShapeError
from .core import (
    Emitted,
    Operator,
    at_least_real,
    elementwise,
    not_mask,
    numeric,
    numpy,
    real,
    register,
    tensor,
)


def _unary(name: str, fn: str, tex: Callable[[list[str]], str], doc: str, ref, *, dtype: str, example: str,
           result: str, real_only=False, real_out=False, differentiable=True, gradient="", category="elementwise",
           complex_fn: str | None = None):
    """An elementwise function of one argument; `fn` is a torch function or `rt.<kernel>` (`complex_fn`, if
    given, for a complex argument)."""

    def infer(types, args):
        (t,) = types
        numeric(t, 0)
        not_mask(t, 0, name)
        if real_only:
            real(t, 0, name)
        if name == "imag" and t.dtype != COMPLEX:
            raise ShapeError(f"`imag` of a real value ({t}) is always 0", 0,
                             "`imag` takes a complex value; for a real one drop the term (it is zero)")
        return t.with_(dtype=REAL if real_out else at_least_real(t.dtype))

    runtime = fn[len("rt."):] if fn.startswith("rt.") else None

    def emit(a, o):
        return Emitted(f"{complex_fn if complex_fn and a[0].type.dtype == COMPLEX else fn}({tensor(a[0])})")

    register(Operator(name, 1, 1, infer, emit, tex, doc, reference=ref,
                      differentiable=differentiable, category=category, runtime=runtime, usage=f"{name}(v)",
                      shape="same shape", dtype=dtype, gradient=gradient, example=example, result=result))


_unary("relu", "torch.relu", lambda a: f"\\left[{a[0]}\\right]_+", "max(v, 0)", lambda v: numpy().maximum(v, 0),
       real_only=True, dtype="real only", example="relu(x - lam)", result="real[m]")
# torch.sign for real values (ONNX's Sign; the exporters have no aten::sgn), torch.sgn for complex ones
_unary("sign", "torch.sign", lambda a: f"\\operatorname{{sign}}\\left({a[0]}\\right)",
       "sign (v/|v| for complex, 0 at 0)", lambda v: numpy().sign(v), complex_fn="torch.sgn", differentiable=False,
       dtype="of v", gradient="none (not differentiable)", example="sign(x)", result="real[m]")
_unary("abs", "torch.abs", lambda a: f"\\left|{a[0]}\\right|", "magnitude", lambda v: numpy().abs(v), real_out=True,
       dtype="real result", example="abs(z)", result="real[m]")
_unary("abs2", "rt.abs2", lambda a: f"\\left|{a[0]}\\right|^2", "squared magnitude |v|² (real for complex v)",
       lambda v: numpy().abs(v) ** 2, real_out=True, dtype="real result", example="abs2(z)", result="real[m]")
_unary("sqrt", "torch.sqrt", lambda a: f"\\sqrt{{{a[0]}}}", "square root", lambda v: numpy().sqrt(v),
       dtype="of v (int → real)", example="sqrt(1 + abs2(x))", result="real[m]")
_unary("exp", "torch.exp", lambda a: f"e^{{{a[0]}}}", "exponential", lambda v: numpy().exp(v),
       dtype="of v (int → real)", example="exp(-x)", result="real[m]")
_unary("log", "torch.log", lambda a: f"\\log\\left({a[0]}\\right)", "natural logarithm", lambda v: numpy().log(v),
       dtype="of v (int → real)", example="log(1 + abs(x))", result="real[m]")
_unary("tanh", "torch.tanh", lambda a: f"\\tanh\\left({a[0]}\\right)", "hyperbolic tangent", lambda v: numpy().tanh(v),
       real_only=True, dtype="real only", example="tanh(x)", result="real[m]")
_unary("sigmoid", "torch.sigmoid", lambda a: f"\\sigma\\left({a[0]}\\right)", "logistic sigmoid",
       lambda v: 1 / (1 + numpy().exp(-v)), real_only=True, dtype="real only", example="sigmoid(x)",
       result="real[m]")
_unary("conj", "torch.conj", lambda a: f"\\overline{{{a[0]}}}", "complex conjugate", lambda v: numpy().conj(v),
       dtype="same", example="conj(z)", result="complex[m]")
_unary("real", "torch.real", lambda a: f"\\operatorname{{Re}}\\left({a[0]}\\right)", "real part",
       lambda v: numpy().real(v), real_out=True, dtype="real result", example="real(z)", result="real[m]")
_unary("imag", "torch.imag", lambda a: f"\\operatorname{{Im}}\\left({a[0]}\\right)", "imaginary part",
       lambda v: numpy().imag(v), real_out=True, dtype="real result", example="imag(z)", result="real[m]")
_unary("angle", "torch.angle", lambda a: f"\\angle\\left({a[0]}\\right)", "phase of a complex value (radians)",
       lambda v: numpy().angle(v), real_out=True, category="complex", dtype="real result", example="angle(z)",
       result="real[m]")


def _expj_infer(types, args):
    real(types[0], 0, "expj")
    return types[0].with_(dtype=COMPLEX)


register(Operator("expj", 1, 1, _expj_infer, None, lambda a: f"e^{{j {a[0]}}}", "unit-modulus complex number e^{jθ}",
                  reference=lambda t: numpy().exp(1j * t), category="complex", runtime="expj", usage="expj(θ)",
                  shape="same shape", dtype="real in, complex out", example="abs(z) * expj(angle(z))",
                  result="complex[m]"))


def _complex_infer(types, args):
    for i, t in enumerate(types):
        real(t, i, "complex")
    return elementwise(*types).with_(dtype=COMPLEX)


register(Operator("complex", 2, 2, _complex_infer,
                  lambda a, o: Emitted(f"torch.complex({tensor(a[0])}, {tensor(a[1])})"),
                  lambda a: f"\\left({a[0]} + j {a[1]}\\right)", "complex number from real and imaginary parts",
                  reference=lambda re, im: re + 1j * im, category="complex", usage="complex(re, im)",
                  shape="elementwise, broadcasting", dtype="real in, complex out", example="complex(x, 0 * x)",
                  result="complex[m]"))
