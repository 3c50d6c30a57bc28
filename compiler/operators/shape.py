"""Construction and shape operators: `eye`, `zeros`, `ones`, `cat`, `stack`, `reshape`."""

from __future__ import annotations

from ..ast import DimExpr
from ..types import REAL, ShapeError, Type, promote, shape_str
from .core import (
    P_ATOM,
    Arg,
    EmitContext,
    Emitted,
    Operator,
    numeric,
    numpy,
    register,
    static_dim,
    tensor,
    wrap,
)


def _eye_infer(types, args):
    if args[0] is None or not isinstance(args[0].static, DimExpr):
        raise ShapeError("`eye(n)` needs a dimension (a dim name or an integer)", 0)
    d = args[0].static
    return Type(REAL, (d, d), False)


def _constructor(call: str):
    """`torch.<call>(dims..., dtype=dtype, device=device)`."""
    return lambda a, o: Emitted(f"torch.{call}({', '.join(x.code for x in a)}, dtype={EmitContext.dtype}, "
                                f"device={EmitContext.device})")


register(Operator("eye", 1, 1, _eye_infer, _constructor("eye"), lambda a: f"I_{{{a[0]}}}", "identity matrix of size n",
                  category="construction", reference=lambda n: numpy().eye(n), extra={"dim_args": True},
                  usage="eye(n)", shape="dim → [n, n]", dtype="real", gradient="constant",
                  example="eye(m) - A.T @ A", result="real[m, m]"))


def _fill_infer(types, args):
    dims = []
    for i, a in enumerate(args):
        if a is None or not isinstance(a.static, DimExpr):
            raise ShapeError("expected a dimension (a dim name or an integer)", i)
        dims.append(a.static)
    return Type(REAL, tuple(dims), False)


register(Operator("zeros", 1, 8, _fill_infer, _constructor("zeros"), lambda a: "0",
                  "tensor of zeros with the given dims, e.g. `zeros(m, n)`", category="construction",
                  reference=lambda *dims: numpy().zeros(dims),
                  extra={"dim_args": True}, usage="zeros(d1, ..., dk)",
                  shape="dims → [d1, ..., dk] (1 to 8 dim names or integers)", dtype="real", gradient="constant",
                  example="zeros(m, n)", result="real[m, n]"))
register(Operator("ones", 1, 8, _fill_infer, _constructor("ones"), lambda a: "\\mathbf{1}",
                  "tensor of ones with the given dims, e.g. `ones(m, n)`", category="construction",
                  reference=lambda *dims: numpy().ones(dims),
                  extra={"dim_args": True}, usage="ones(d1, ..., dk)", shape="dims → [d1, ..., dk]", dtype="real",
                  gradient="constant", example="ones(m)", result="real[m]"))


def _cat_infer(types, args):
    rank = max(t.rank for t in types)
    if rank == 0:
        raise ShapeError("`cat` joins vectors or tensors along their first axis, got scalars", 0)
    trailing = next(t.shape[1:] for t in types if t.rank == rank)
    total = DimExpr.of(0)
    for i, t in enumerate(types):
        numeric(t, i)
        if t.rank == rank and t.shape[1:] == trailing:
            total = total + t.shape[0]
        elif t.rank == rank - 1 and t.shape == trailing:
            total = total + DimExpr.of(1)  # a single channel
        else:
            raise ShapeError(f"`cat` needs pieces of shape [c, {', '.join(map(str, trailing))}] (or single "
                             f"channels [{', '.join(map(str, trailing))}]), got {shape_str(t.shape)}", i)
    return Type(promote(*[t.dtype for t in types]), (total,) + trailing, any(t.batched for t in types))


def _cat_emit(args, out):
    flags = tuple(a.type.batched for a in args)
    parts = []
    for a in args:
        if a.py:  # a Python number (`stack(x, 0.5)`, a constant of the data) is a tensor piece
            a = Arg(tensor(a), a.type, P_ATOM)
        code = a.code
        if a.type.rank == out.rank - 1:  # a single channel: add the channel axis
            code = f"{wrap(a, P_ATOM)}.unsqueeze({1 if a.type.batched else 0})"
        parts.append(code)
    joined = ", ".join(parts)
    if not any(flags):
        return Emitted(f"torch.cat([{joined}], dim=0)")
    if all(flags):
        return Emitted(f"torch.cat([{joined}], dim=1)")
    return Emitted(f"rt.cat([{joined}], {flags!r}, {EmitContext.batch})")  # unbatched pieces repeated


register(Operator("cat", 2, 16, _cat_infer, _cat_emit, lambda a: "\\left[" + "; ".join(a) + "\\right]",
                  "concatenate along the first axis (channels); a piece one axis short is one channel: "
                  "`cat(h, K(f[1]), g)`", reference=lambda *v: numpy().concatenate(v, axis=0),
                  category="construction", runtime="cat", lift_batched=False, usage="cat(a, b, ...)",
                  shape="2 to 16 values with equal trailing shapes → first axes added: [p, ...] and [q, ...] → "
                        "[p + q, ...]; a piece one axis short ([...]) counts as one channel; unbatched pieces are "
                        "repeated over the batch",
                  dtype="promoted", example="cat(x, A.T @ y)", result="real[2*m]"))


def _stack_infer(types, args):
    first = types[0]
    for i, t in enumerate(types):
        numeric(t, i)
        if t.shape != first.shape:
            raise ShapeError(f"`stack` needs pieces of equal shape, got {shape_str(first.shape)} and "
                             f"{shape_str(t.shape)}", i, "`cat` joins pieces along an existing first axis")
    return Type(promote(*[t.dtype for t in types]), (DimExpr.of(len(types)),) + first.shape,
                any(t.batched for t in types))


# every piece is one axis short of the result: `cat`'s emission adds the axis and joins
register(Operator("stack", 2, 16, _stack_infer, _cat_emit, lambda a: "\\left[" + "; ".join(a) + "\\right]",
                  "stack pieces of equal shape along a new first axis (channels): a complex image as two real "
                  "channels `stack(real(z), imag(z))`", reference=lambda *v: numpy().stack(v, axis=0),
                  category="construction", runtime="cat", lift_batched=False, usage="stack(a, b, ...)",
                  shape="2 to 16 values of equal shape [...] → [k, ...]; unbatched pieces are repeated over the batch",
                  dtype="promoted", example="stack(x, A.T @ y)", result="real[2, m]"))


def _reshape_infer(types, args):
    x = types[0]
    numeric(x, 0)
    dims = [static_dim(args, i, "reshape", "new shape") for i in range(1, len(types))]

    def size(shape):
        total = DimExpr.of(1)
        for d in shape:
            total = total * d if total is not None else None
        return total

    before, after = size(x.shape), size(dims)
    if before is None or after is None:
        raise ShapeError("`reshape` can only check sizes that are products of dimension names and integers", 0)
    if before != after:
        raise ShapeError(f"`reshape` keeps the number of entries: {shape_str(x.shape)} has {before}, "
                         f"{shape_str(tuple(dims))} has {after}", 0)
    return x.with_(shape=tuple(dims))


def _reshape_emit(args, out):
    sizes = [a.code for a in args[1:]]
    lead = f"{EmitContext.batch}, " if args[0].type.batched else ""
    return Emitted(f"{wrap(args[0], P_ATOM)}.reshape({lead}{', '.join(sizes)})")


register(Operator("reshape", 2, 5, _reshape_infer, _reshape_emit, lambda a: a[0],
                  "the same entries in a new shape (row-major): a movie [T, nx, nz] as a Casorati matrix "
                  "`reshape(L, T, nx*nz).T`, an image as one channel `reshape(img, 1, h, w)`",
                  reference=lambda x, *shape: x.reshape(shape), category="construction", extra={"dim_args": True},
                  lift_batched=False, usage="reshape(v, d1, ..., dk)",
                  shape="dims (names, integers, products `nx*nz`) → [d1, ..., dk]; the entry counts must agree "
                        "symbolically", dtype="same", example="reshape(img, h*w)", result="real[h*w]"))
