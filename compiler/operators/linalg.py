"""Linear algebra: `@`, transposes, spectral norm, linear solves, outer products.

The binary operators promote a real operand when the other one is complex (`as_complex`): torch's
matmul and solve refuse mixed real/complex operands, the checker types the result complex."""

from __future__ import annotations

from ..types import REAL, ShapeError, Type, broadcast, promote, shape_str
from .core import P_ATOM, P_MUL, Arg, Emitted, Operator, as_complex, lift, numeric, numpy, register, wrap

# the transpose of the last two axes in generated code: `.transpose(-2, -1)`, not `.mT`, which the
# TorchScript-based ONNX exporter rejects (aten::mT); the same view, so the same speed
TRANSPOSE = ".transpose(-2, -1)"


def _matmul_infer(types, args):
    a, b = types
    for i, t in enumerate(types):
        numeric(t, i, "a matrix or vector")
    if a.rank == 0 or b.rank == 0:
        raise ShapeError("`@` needs a vector or matrix on both sides; use `*` to scale", 0 if a.rank == 0 else 1)
    inner_a = a.shape[-1]
    inner_b = b.shape[0] if b.rank == 1 else b.shape[-2]
    if inner_a != inner_b:
        raise ShapeError(f"inner dimensions do not match: {shape_str(a.shape)} @ {shape_str(b.shape)} "
                         f"({inner_a} vs {inner_b})", None,
                         "a matrix of shape [p, q] multiplies a vector of length q; check the order or use `.T`")
    if a.rank == 1 and b.rank == 1:
        shape = ()
    elif a.rank == 1:
        shape = b.shape[:-2] + b.shape[-1:]
    elif b.rank == 1:
        shape = a.shape[:-1]
    else:
        batch = broadcast(a.shape[:-2], b.shape[:-2])
        if batch is None:
            raise ShapeError(f"stacked matrices {shape_str(a.shape)} and {shape_str(b.shape)} do not broadcast")
        shape = batch + (a.shape[-2], b.shape[-1])
    return Type(promote(a.dtype, b.dtype), shape, a.batched or b.batched)


def _matrix_times_batch(a: Arg, b: Arg, out: Type) -> Emitted:
    """An unbatched matrix times a batch of vectors: one GEMM, x @ A^T (x @ A for A.T, x @ conj(A) for A.H)."""
    if a.prec >= P_ATOM and a.code.endswith((TRANSPOSE, ".mH")):
        suffix = ".mH" if a.code.endswith(".mH") else TRANSPOSE
        base = wrap(as_complex(Arg(a.code[:-len(suffix)], a.type, P_ATOM), out), P_ATOM)
        matrix = base + (".conj()" if suffix == ".mH" else "")
    else:
        matrix = f"{wrap(as_complex(a, out), P_ATOM)}{TRANSPOSE}"
    return Emitted(f"{wrap(as_complex(b, out), P_MUL)} @ {matrix}", P_MUL)


def _matmul_emit(args, out):
    a, b = args
    A, B = a.type, b.type
    if A.rank == 1 and B.rank == 1:  # dot product without conjugation: mixed dtypes multiply fine
        return Emitted(f"({wrap(a, P_MUL)} * {wrap(b, P_MUL + 1)}).sum(-1)", P_ATOM)
    if A.rank == 2 and not A.batched and B.rank == 1 and B.batched:
        return _matrix_times_batch(a, b, out)
    a, b = as_complex(a, out), as_complex(b, out)
    if A.rank >= 2 and B.rank == 1:
        if not B.batched:
            return Emitted(f"{wrap(a, P_MUL)} @ {wrap(b, P_MUL + 1)}", P_MUL)
        # a batch of vectors against batched or stacked matrices [..., p, q]: lift over the stack axes
        vec = lift(b, A.rank - 1) if A.rank > 2 else wrap(b, P_ATOM)
        return Emitted(f"({wrap(a, P_MUL)} @ {vec}.unsqueeze(-1)).squeeze(-1)", P_ATOM)
    if A.rank == 1:
        if not A.batched or (not B.batched and B.rank == 2):
            return Emitted(f"{wrap(a, P_MUL)} @ {wrap(b, P_MUL + 1)}", P_MUL)
        vec = lift(a, B.rank - 1) if B.rank > 2 else wrap(a, P_ATOM)
        return Emitted(f"({vec}.unsqueeze(-2) @ {wrap(b, P_MUL + 1)}).squeeze(-2)", P_ATOM)
    # matrix @ matrix: torch.matmul broadcasts leading axes; lift batched lower-rank sides
    rank = max(A.rank, B.rank)
    left, right = lift(a, rank) or wrap(a, P_MUL), lift(b, rank) or wrap(b, P_MUL + 1)
    return Emitted(f"{left} @ {right}", P_MUL)


register(Operator("matmul", 2, 2, _matmul_infer, _matmul_emit, lambda a: f"{a[0]} {a[1]}",
                  "matrix product; matrix @ vector, vector @ vector (dot), stacked matrices broadcast",
                  reference=lambda a, b: a @ b, category="linear algebra", lift_batched=False, usage="a @ b",
                  shape="see §4.4: [p,q]@[q] → [p]; [q]@[q,r] → [r]; [q]@[q] → scalar (dot, no conjugation); "
                        "[...,p,q]@[...,q,r] → [...,p,r] (leading axes broadcast)",
                  dtype="promoted", example="A @ x", result="real[n]"))


def _transpose_infer(types, args):
    (t,) = types
    numeric(t, 0)
    if t.rank < 2:
        raise ShapeError(f"`.T` needs a matrix, got {t}", 0, "vectors have no orientation here: `A.T @ x` and `x @ A` agree")
    return t.with_(shape=t.shape[:-2] + (t.shape[-1], t.shape[-2]))


register(Operator("transpose", 1, 1, _transpose_infer, lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}{TRANSPOSE}"),
                  lambda a: f"{a[0]}^{{T}}", "transpose of the last two axes (`A.T`, or `transpose(A)`)",
                  reference=lambda a: numpy().swapaxes(a, -1, -2), category="linear algebra",
                  usage=("a.T", "transpose(a)"), shape="swaps the last two axes; needs rank ≥ 2", dtype="same",
                  example="A.T", result="real[m, n]"))
register(Operator("adjoint", 1, 1, _transpose_infer, lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.mH"),
                  lambda a: f"{a[0]}^{{H}}", "conjugate transpose (`A.H`, or `adjoint(A)`); equals `.T` for real values",
                  reference=lambda a: numpy().conj(numpy().swapaxes(a, -1, -2)), category="linear algebra",
                  usage=("a.H", "adjoint(a)"), shape="swaps the last two axes and conjugates; needs rank ≥ 2",
                  dtype="same", example="Ac.H @ (Ac @ z)", result="complex[m]"))


def _opnorm_infer(types, args):
    (t,) = types
    numeric(t, 0)
    if t.rank != 2:
        raise ShapeError(f"`opnorm` needs a matrix, got {t}", 0)
    return Type(REAL, (), t.batched)


register(Operator("opnorm", 1, 1, _opnorm_infer,
                  lambda a, o: Emitted(f"torch.linalg.matrix_norm({a[0].code}, ord=2)"),
                  lambda a: f"\\|{a[0]}\\|_2", "spectral norm (largest singular value) of a matrix",
                  reference=lambda a: numpy().linalg.norm(a, 2), category="linear algebra", usage="opnorm(M)",
                  shape="matrix → scalar (largest singular value)", dtype="real", gradient="yes (through the SVD)",
                  example="opnorm(A)^2", result="real"))


def _solve_infer(types, args):
    a, b = types
    numeric(a, 0)
    numeric(b, 1)
    if a.rank != 2 or a.shape[0] != a.shape[1]:
        raise ShapeError(f"`solve` needs a square matrix, got {a}", 0)
    rows = b.shape[0] if b.rank >= 1 else None
    if b.rank == 0 or (b.rank == 1 and b.shape[0] != a.shape[0]) or (b.rank == 2 and b.shape[0] != a.shape[0]):
        raise ShapeError(f"`solve(M, B)` needs B with {a.shape[0]} rows, got {shape_str(b.shape)} ({rows})", 1)
    return Type(promote(a.dtype, b.dtype), b.shape, a.batched or b.batched)


def _solve_emit(args, out):
    a, b = (as_complex(x, out) for x in args)
    if b.type.rank == 1 and b.type.batched and not a.type.batched:
        # a batch of right-hand sides: solve once for all (the columns of B^T)
        return Emitted(f"torch.linalg.solve({a.code}, {wrap(b, P_ATOM)}{TRANSPOSE}){TRANSPOSE}")
    if b.type.rank == 1:
        return Emitted(f"torch.linalg.solve({a.code}, {wrap(b, P_ATOM)}.unsqueeze(-1)).squeeze(-1)")
    return Emitted(f"torch.linalg.solve({a.code}, {b.code})")


register(Operator("solve", 2, 2, _solve_infer, _solve_emit, lambda a: f"{a[0]}^{{-1}} {a[1]}",
                  "M^{-1} B for a square matrix M (a linear solve, never an explicit inverse)",
                  reference=lambda a, b: numpy().linalg.solve(a, b), category="linear algebra",
                  usage="solve(M, b)", shape="M square [q,q]; b [q] or [q,r] → shape of b", dtype="promoted",
                  example="solve(B.T @ B + eye(m), x)", result="real[m]"))


def _outer_infer(types, args):
    u, v = types
    for i, t in enumerate(types):
        numeric(t, i)
        if t.rank != 1:
            raise ShapeError(f"`outer` needs two vectors, got {t}", i)
    return Type(promote(u.dtype, v.dtype), (u.shape[0], v.shape[0]), u.batched or v.batched)


register(Operator("outer", 2, 2, _outer_infer,
                  lambda a, o: Emitted(f"{wrap(a[0], P_ATOM)}.unsqueeze(-1) * {wrap(a[1], P_ATOM)}.unsqueeze(-2)",
                                       P_MUL),
                  lambda a: f"{a[0]} {a[1]}^{{T}}", "outer product u vᵀ of two vectors (e.g. to scale rows: "
                  "`H * outer(c, ones(T))`)", reference=lambda u, v: numpy().outer(u, v), category="linear algebra",
                  lift_batched=False, usage="outer(u, v)", shape="vectors [p], [q] → [p, q]", dtype="promoted",
                  example="outer(y, x)", result="real[n, m]"))
