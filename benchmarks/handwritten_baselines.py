"""The best hand-written PyTorch modules for the specs that `bench_handwritten.py` times.

Each class computes the same function as the generated module of the same spec (same defaults,
same layer count) but is written the way a demanding user writes it by hand:

- one `nn.Parameter` per layer (an `nn.ParameterList`), never a stacked `[L, ...]` tensor indexed
  per layer (indexing a stacked parameter costs a full-size zero-filled gradient per layer in
  backward);
- no work the mathematics does not need: the first layer is written out with x⁰ = 0 substituted,
  matrices that do not change are combined (or factorised/inverted) once at construction,
  constant scalar sequences (FISTA's t_k) are Python floats, the last layer computes only what
  the output needs, no unused buffers;
- `F.softshrink` (one fused kernel) for constant thresholds; for learned thresholds a small
  `torch.autograd.Function` (`FusedSoftThreshold`, the default): forward one fused `F.softshrink` kernel with
  the threshold read as a Python number (on the CPU that costs a microsecond), saving only the output;
  backward one fused `softshrink_backward` of the output at 0 (the support mask) and `−⟨g, sign(out)⟩` as one
  dot product.  Measured here (1 thread, [1000, 500]) the forward is 2.9× and the backward 2.7× faster than the
  previous best form, `SoftThreshold` (forward in place on one fresh tensor: `|v|`, `− θ`, `relu`,
  `copysign`; backward `g·1{out ≠ 0}` and `−Σ g·sign(out)`), which was itself 5 % (forward) and 16-18 %
  (forward+backward) faster than the in-place `copysign` form with torch's autograd.  `use_soft("function")`
  and `use_soft("copysign")` switch the baselines to those forms.

Learned scalars (thresholds, step sizes) are plain parameters: the baseline does not pay for the
generated `positive` reparametrisation (`θ = θ₀·exp(s)`), as in the published LISTA-CP code.
Batch-first: `y` is `[batch, n]`, the output `[batch, m]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SoftThreshold(torch.autograd.Function):
    """sign(v)·max(|v| − θ, 0) for a real v and a tensor θ that broadcasts to v (not larger)."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        out = v.abs().sub_(theta).relu_().copysign_(v)
        ctx.save_for_backward(out)
        ctx.theta_shape = theta.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        grad_v = grad * (out != 0) if ctx.needs_input_grad[0] else None
        grad_theta = -(grad * out.sign()).sum_to_size(ctx.theta_shape) if ctx.needs_input_grad[1] else None
        return grad_v, grad_theta


def _soft_copysign(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """The form of `unroll.runtime.soft` (built-in autograd)."""
    return torch.copysign(v.abs().sub_(theta).relu_(), v)


class FusedSoftThreshold(torch.autograd.Function):
    """sign(v)·max(|v| − θ, 0) for a real CPU v and one threshold θ ≥ 0: fused kernels forward and backward."""

    @staticmethod
    def forward(ctx, v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        out = F.softshrink(v, float(theta))
        ctx.save_for_backward(out)
        ctx.theta_shape = theta.shape
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        grad_v = torch.ops.aten.softshrink_backward(grad, out, 0.0) if ctx.needs_input_grad[0] else None
        grad_theta = None
        if ctx.needs_input_grad[1]:
            grad_theta = -torch.dot(grad.reshape(-1), out.sign().reshape(-1)).reshape(ctx.theta_shape)
        return grad_v, grad_theta


SOFT_FORMS = {"fused": FusedSoftThreshold.apply, "function": SoftThreshold.apply, "copysign": _soft_copysign}
_soft = SOFT_FORMS["fused"]


def use_soft(form: str) -> None:
    """Choose the learned-threshold soft threshold of every baseline: "fused" (default), "function" or
    "copysign"."""
    global _soft
    _soft = SOFT_FORMS[form]


def soft(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Soft threshold with a learned (tensor) threshold: sign(v)·max(|v| − θ, 0)."""
    return _soft(v, theta)


def lipschitz(A: torch.Tensor) -> torch.Tensor:
    """‖A‖₂², the Lipschitz constant of the gradient of ½‖Ax − y‖²."""
    return torch.linalg.matrix_norm(A, ord=2) ** 2


def _scalar_parameters(values, dtype: torch.dtype) -> nn.ParameterList:
    """One 0-d parameter per value (Python numbers or 0-d tensors), in `dtype`."""
    return nn.ParameterList(nn.Parameter(torch.as_tensor(v, dtype=dtype).detach().clone()) for v in values)


def _matrix_parameters(value: torch.Tensor, count: int) -> nn.ParameterList:
    """`count` independent copies of `value`, each contiguous (row-major)."""
    return nn.ParameterList(nn.Parameter(value.clone(memory_format=torch.contiguous_format)) for _ in range(count))


class HandListaUntied(nn.Module):
    """x¹ = soft(We⁰ y, θ⁰); x^{l+1} = soft(Wt^l x^l + We^l y, θ^l).

    Wt⁰ multiplies x⁰ = 0: it has no effect on the output and is not allocated (Wt holds layers
    1 .. L-1)."""

    def __init__(self, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        m = A.shape[1]
        L = lipschitz(A)
        We = A.mT / L
        Wt = torch.eye(m, dtype=A.dtype) - A.mT @ A / L
        self.layers = layers
        self.We = _matrix_parameters(We, layers)
        self.Wt = _matrix_parameters(Wt, layers - 1)  # Wt[l - 1] is layer l's
        self.theta = _scalar_parameters([lam / L] * layers, A.dtype)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = soft(y @ self.We[0].mT, self.theta[0])
        for layer in range(1, self.layers):
            # the second GEMM accumulates into the first one's fresh output (no copy, no separate add)
            v = (y @ self.We[layer].mT).addmm_(x, self.Wt[layer - 1].mT)
            x = soft(v, self.theta[layer])
        return x


class HandListaCp(nn.Module):
    """x¹ = soft(We⁰ y, θ⁰); x^{l+1} = soft(x^l + We^l (y − A x^l), θ^l)."""

    def __init__(self, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        L = lipschitz(A)
        self.register_buffer("At", A.mT.contiguous())
        self.layers = layers
        self.We = _matrix_parameters(A.mT / L, layers)
        self.theta = _scalar_parameters([lam / L] * layers, A.dtype)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = soft(y @ self.We[0].mT, self.theta[0])
        for layer in range(1, self.layers):
            residual = torch.addmm(y, x, self.At, alpha=-1)  # y − A x
            x = soft(torch.addmm(x, residual, self.We[layer].mT), self.theta[layer])
        return x


class HandIsta(nn.Module):
    """x^{l+1} = S_{λ/L}(x^l − Aᵀ(A x^l − y)/L) written as S_{λ/L}(G x^l + b), G = I − AᵀA/L
    (construction), b = Aᵀy/L (once per call); x¹ = S(b) since x⁰ = 0."""

    def __init__(self, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        m = A.shape[1]
        L = lipschitz(A)
        self.layers = layers
        self.threshold = float(lam / L)
        self.register_buffer("C", A / L)  # b = y @ C = (Aᵀy / L)ᵀ
        self.register_buffer("G", torch.eye(m, dtype=A.dtype) - A.mT @ A / L)  # symmetric

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b = y @ self.C
        x = F.softshrink(b, self.threshold)
        for _ in range(1, self.layers):
            x = F.softshrink(torch.addmm(b, x, self.G), self.threshold)
        return x


def fista_momentum(layers: int) -> list[float]:
    """(t_k − 1) / t_{k+1} for k = 0 .. layers-1, t_0 = 1, t_{k+1} = (1 + √(1 + 4 t_k²)) / 2."""
    t, out = 1.0, []
    for _ in range(layers):
        t_next = (1 + (1 + 4 * t * t) ** 0.5) / 2
        out.append((t - 1) / t_next)
        t = t_next
    return out


class HandFista(nn.Module):
    """FISTA from x⁰ = v⁰ = 0, t⁰ = 1, with the momentum coefficients precomputed as floats:
    x^{k+1} = S(G v^k + b), v^{k+1} = x^{k+1} + c_k (x^{k+1} − x^k) = lerp(x^k, x^{k+1}, 1 + c_k).
    c_0 = 0 (so v¹ = x¹), and the last layer does not compute v (the output is x)."""

    def __init__(self, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        m = A.shape[1]
        L = lipschitz(A)
        self.threshold = float(lam / L)
        self.momentum = fista_momentum(layers)
        self.register_buffer("C", A / L)
        self.register_buffer("G", torch.eye(m, dtype=A.dtype) - A.mT @ A / L)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b = y @ self.C
        x = F.softshrink(b, self.threshold)
        v = x
        last = len(self.momentum) - 1
        for k in range(1, last + 1):
            x_new = F.softshrink(torch.addmm(b, v, self.G), self.threshold)
            if k < last:
                v = torch.lerp(x, x_new, 1.0 + self.momentum[k])
            x = x_new
        return x


class HandAdmmLasso(nn.Module):
    """Scaled ADMM for the lasso from z⁰ = α⁰ = 0 with M = AᵀA + ρI inverted once at construction:
    x^{l+1} = M⁻¹(Aᵀy + ρ(z^l − α^l)) = P + (z^l − α^l) W with P = y A M⁻¹ (once per call) and
    W = ρM⁻¹ (construction); z^{l+1} = S_{λ/ρ}(x^{l+1} + α^l); α^{l+1} = α^l + η(x^{l+1} − z^{l+1}).
    x¹ = P; the last layer computes only x (z and α after it are not part of the output)."""

    def __init__(self, A: torch.Tensor, lam: float = 0.05, rho: float = 1.0, eta: float = 1.0, layers: int = 16):
        super().__init__()
        m = A.shape[1]
        M_inv = torch.linalg.inv(A.mT @ A + rho * torch.eye(m, dtype=A.dtype))
        self.layers = layers
        self.threshold = float(lam / rho)
        self.eta = float(eta)
        self.register_buffer("C", A @ M_inv)  # P = y @ C
        self.register_buffer("W", rho * M_inv)  # symmetric

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        x = y @ self.C
        if self.layers == 1:
            return x
        P = x
        z = F.softshrink(x, self.threshold)
        alpha = (x - z) * self.eta
        for layer in range(1, self.layers):
            x = torch.addmm(P, z - alpha, self.W)
            if layer < self.layers - 1:
                z = F.softshrink(x + alpha, self.threshold)
                alpha = torch.add(alpha, x - z, alpha=self.eta)
        return x


class HandPgdUnfolded(nn.Module):
    """Unfolded PGD from x⁰ = Aᵀy with a trainable step s_k and weight λ_k per layer:
    x^{k+1} = soft(x^k − s_k (G x^k − b), s_k λ_k), G = AᵀA (construction), b = Aᵀy = x⁰."""

    def __init__(self, A: torch.Tensor, lam: float = 0.1, layers: int = 16):
        super().__init__()
        L = lipschitz(A)
        self.register_buffer("A", A)
        self.register_buffer("G", A.mT @ A)
        self.step = _scalar_parameters([1 / L] * layers, A.dtype)
        self.lambda_ = _scalar_parameters([lam] * layers, A.dtype)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        b = y @ self.A
        x = b
        for step, lam in zip(self.step, self.lambda_):  # iterating a ParameterList makes no copy
            gradient = torch.addmm(b, x, self.G, beta=-1)  # AᵀA x − Aᵀy
            x = soft(torch.addcmul(x, step, gradient, value=-1), step * lam)
        return x


BASELINES = {
    "lista_untied": HandListaUntied,
    "lista_cp": HandListaCp,
    "ista": HandIsta,
    "fista": HandFista,
    "admm_lasso": HandAdmmLasso,
    "pgd_unfolded": HandPgdUnfolded,
}
