"""Algebra of the planner: rewrites that save work per layer, each exact up to the rounding of a
reassociation (tested on the Plan in tests/test_graph_planner.py and against numpy references).

* `factor_solves`       `solve(M, b)` with M invariant where the solve runs is `inverse(M) @ b`, the
                        inverse computed once where M is known: one GEMM per layer;
* `fold_scalars`        `(M @ X) / s`, `s * (M @ X)` with M, s invariant -> `(M / s) @ X`;
* `distribute_products` `M @ (a ± b)` with a invariant -> `M @ a ± M @ b`; `M @ (s * d)` -> `(s * M) @ d`;
* `associate_invariant_products`  `M @ (N @ v)` -> `(M @ N) @ v` when that is never more work;
* `fuse_lerp`           `a + s * (a - b)` -> `lerp(b, a, 1 + s)`;
* `fuse_addmm`          `a ± M @ x` (a matrix times a batch of vectors) -> one `torch.addmm`, and
                        `a ± s * b` with a scalar tensor s -> one `torch.addcmul`;
* `python_scalar_lets`  constant real scalar `let`s are Python numbers.
"""

from __future__ import annotations

import dataclasses

from . import ir
from .plan_passes import _all_nodes, _rebuild, map_nodes
from .types import REAL


def factor_solves(program: ir.Program) -> ir.Program:
    """`solve(M, b)` where `M` does not change where the solve runs -> `inverse(M) @ b`."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        if node.op == "solve" and args[0].level < node.level:
            matrix = args[0]
            inverse = ir.Node("inverse", [matrix], matrix.type, matrix.span, matrix.level)
            return ir.Node("matmul", [inverse, args[1]], node.type, node.span, node.level, {}, node.py, node.static)
        return _rebuild(node, args)

    if not any(n.op == "solve" for n in _all_nodes(program)):
        return program
    return map_nodes(program, rewrite)


def _scalar(node: ir.Node) -> bool:
    return node.type.rank == 0 and not node.type.batched and node.type.dtype == REAL


def fold_scalars(program: ir.Program) -> ir.Program:
    """`(M @ X) / s` and `s * (M @ X)`, with M and s invariant where X changes, become `(M / s) @ X`:
    the scaled matrix is computed once (construction or once per call) instead of scaling the product
    on every layer.  Either side of the product may be the invariant one."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.py or node.op not in ("div", "mul"):
            return node
        a, b = node.args
        if node.op == "div":
            product, scale, op = a, b, "div"
        elif a.op == "matmul" and _scalar(b):
            product, scale, op = a, b, "mul"
        elif b.op == "matmul" and _scalar(a):
            product, scale, op = b, a, "mul"
        else:
            return node
        if product.op != "matmul" or not _scalar(scale) or product.type != node.type:
            return node
        for side in (0, 1):
            matrix, other = product.args[side], product.args[1 - side]
            if matrix.py or matrix.type.rank != 2 or matrix.type.batched:
                continue
            if max(matrix.level, scale.level) < other.level:
                level = max(matrix.level, scale.level)
                if matrix.op in ("transpose", "adjoint"):  # scale the matrix itself: (A / s).T
                    inner = matrix.args[0]
                    scaled = _rebuild(matrix, [ir.Node(op, [inner, scale], inner.type, inner.span, level)],
                                      level=level)
                else:
                    scaled = ir.Node(op, [matrix, scale], matrix.type, matrix.span, level)
                new_args = [scaled, other] if side == 0 else [other, scaled]
                return _rebuild(product, new_args, type=node.type, span=node.span, level=node.level)
        return node

    return map_nodes(program, rewrite)


def fuse_lerp(program: ir.Program) -> ir.Program:
    """`a + s * (a - b)` (an extrapolation step, e.g. FISTA's momentum) is `lerp(b, a, 1 + s)`: one pass
    over the batch instead of three; the weight `1 + s` is computed where `s` is."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.op != "add" or node.type.dtype != REAL or node.py:
            return node
        for a, m in ((node.args[0], node.args[1]), (node.args[1], node.args[0])):
            if m.op != "mul":
                continue
            for s, d in ((m.args[0], m.args[1]), (m.args[1], m.args[0])):
                if not _scalar(s) or d.op != "sub" or d.args[0].key != a.key:
                    continue
                b = d.args[1]
                if a.type != node.type or b.type != node.type:
                    continue
                one = ir.Node("number", [], ir_type_int(), s.span, ir.CONST, {"value": 1}, py=True, static=1)
                weight = ir.Node("add", [one, s], s.type, s.span, s.level, py=s.py)
                return ir.Node("lerp", [b, a, weight], node.type, node.span, node.level)
        return node

    return map_nodes(program, rewrite)


def squared_norms(program: ir.Program) -> ir.Program:
    """`norm(v)^2` of a real v is the sum of squares `sum(v * v)`: the same value without the square root,
    and smooth at v = 0 (the norm's gradient is 0/0 there, so a second derivative through `grad`, `vjp`
    or a `create_graph` backward would be NaN)."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.op != "pow" or node.args[0].op != "norm" or node.args[1].static != 2:
            return node
        norm = node.args[0]
        if norm.args[0].type.dtype != REAL:
            return node
        return ir.Node("sumsq", list(norm.args), node.type, node.span, node.level, py=node.py)

    return map_nodes(program, rewrite)


def ir_type_int():
    from .types import INT, Type

    return Type(INT)


def _fuse_addcmul(node: ir.Node) -> ir.Node:
    """`a ± s * b` with a scalar tensor s (a per-layer step) is one `torch.addcmul` pass."""
    if node.op not in ("add", "sub") or node.py or node.type.dtype != REAL:
        return node
    for side in ((1,) if node.op == "sub" else (1, 0)):
        product, other = node.args[side], node.args[1 - side]
        if product.op != "mul" or other.py or other.type != node.type:
            continue
        for s, b in ((product.args[0], product.args[1]), (product.args[1], product.args[0])):
            if _scalar(s) and b.type == node.type and not b.py:
                if s.py:  # a Python number: torch.add(a, b, alpha=±s)
                    return ir.Node("add_scaled", [other, s, b], node.type, node.span, node.level,
                                   {"negate": node.op == "sub"})
                attrs = {"value": -1} if node.op == "sub" else {}
                return ir.Node("addcmul", [other, s, b], node.type, node.span, node.level, attrs)
    return node


def fuse_addmm(node: ir.Node) -> ir.Node:
    """`a ± M @ x` with an unbatched matrix M and a batch of vectors x (one GEMM each) is one
    `torch.addmm`: the sum is accumulated into the product's output instead of a separate pass."""
    args = [fuse_addmm(a) for a in node.args]
    node = _rebuild(node, args)
    if node.op not in ("add", "sub") or node.py:
        return node
    fused = _fuse_addcmul(node)
    if fused is not node:
        return fused
    for side in (1, 0):
        product, other = node.args[side], node.args[1 - side]
        if product.op != "matmul" or other.py:
            continue
        matrix, vectors = product.args
        dtypes = {matrix.type.dtype, vectors.type.dtype, other.type.dtype, node.type.dtype}
        if not (matrix.type.rank == 2 and not matrix.type.batched and vectors.type.rank == 1
                and vectors.type.batched and len(dtypes) == 1 and not matrix.py and not vectors.py):
            continue
        if other.type.rank > 1 or (other.type.batched and other.type.shape != node.type.shape):
            continue
        if other.type.rank == 0 and other.type.batched:
            continue
        attrs = {}
        if node.op == "sub":
            attrs = {"alpha": -1} if side == 1 else {"beta": -1}
        return ir.Node("addmm", [other, matrix, vectors], node.type, node.span, node.level, attrs)
    return node


def python_scalar_lets(program: ir.Program) -> ir.Program:
    """Constant `let`s that are real scalars (a Lipschitz constant, a step) become Python numbers:
    every use of them is then plain Python arithmetic or a scalar argument, never a 0-d tensor op."""
    names = {x.name for x in program.lets if x.level == ir.CONST and _scalar(x.value) and not x.value.py
             and x.name not in program.outputs}
    if not names:
        return program

    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        if node.op == "var" and node.attrs.get("kind") == "let" and node.attrs["name"] in names:
            return _rebuild(node, args, py=True)
        return _rebuild(node, args)

    out = map_nodes(program, rewrite)
    out.params = [dataclasses.replace(x, init=_map_tree(x.init, rewrite)) for x in out.params]
    out.requires = [dataclasses.replace(r, condition=_map_tree(r.condition, rewrite)) for r in out.requires]
    out.python_lets = names
    return out


def _map_tree(node: ir.Node, fn) -> ir.Node:
    return fn(node, [_map_tree(a, fn) for a in node.args])


def _matmul(a: ir.Node, b: ir.Node, span, level: int) -> ir.Node:
    from .operators import OPERATORS

    typ = OPERATORS["matmul"].infer([a.type, b.type], [None, None])
    return ir.Node("matmul", [a, b], typ, span, level)


def distribute_products(program: ir.Program) -> ir.Program:
    """`M @ (a ± b)` with M and a invariant where b changes is `M @ a ± M @ b`: `M @ a` is computed once
    and the sum accumulates into the per-layer GEMM (see `fuse_addmm`); `M @ (s * d)` with M and s
    invariant is `(s * M) @ d`, the scaled matrix computed once."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.op != "matmul" or node.py:
            return node
        matrix, v = node.args
        if matrix.py or matrix.type.rank != 2 or matrix.type.batched or matrix.level >= node.level:
            return node
        if v.op in ("add", "sub") and v.args[0].type == v.type and v.args[1].type == v.type and not v.py:
            a, b = v.args
            varying = b if a.level < node.level else a
            # (a varying product already fuses with the invariant term: `M @ (N @ x - c)` stays)
            if (a.level < node.level) != (b.level < node.level) and not a.py and not b.py \
                    and varying.op != "matmul":
                left = rewrite(_matmul(matrix, a, node.span, max(matrix.level, a.level)), [matrix, a])
                right = rewrite(_matmul(matrix, b, node.span, max(matrix.level, b.level)), [matrix, b])
                return ir.Node(v.op, [left, right], node.type, node.span, node.level)
        if v.op == "mul":
            for s, d in ((v.args[0], v.args[1]), (v.args[1], v.args[0])):
                if _scalar(s) and s.level < node.level and d.type == v.type and not d.py:
                    scaled = ir.Node("mul", [s, matrix], matrix.type, matrix.span, max(s.level, matrix.level))
                    return _matmul(scaled, d, node.span, node.level)
        return node

    return map_nodes(program, rewrite)


def associate_invariant_products(program: ir.Program) -> ir.Program:
    """`M @ (N @ v)` with M, N invariant where v changes is `(M @ N) @ v` (the product computed once)
    when that is never more work per sample: M is p×q, N is q×r, and the inner size q equals p or r
    (then p·r ≤ q·(p + r) for any sizes).  ADMM's M⁻¹ (Aᵀ y) becomes (M⁻¹ Aᵀ) y."""
    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.op != "matmul" or node.py:
            return node
        left, inner = node.args
        if inner.op != "matmul" or left.py or inner.py:
            return node
        right, v = inner.args
        if any(m.type.rank != 2 or m.type.batched or m.py for m in (left, right)):
            return node
        if max(left.level, right.level) >= v.level:
            return node
        p, q = left.type.shape
        q2, r = right.type.shape
        if q != q2 or (q != p and q != r):
            return node
        product = _matmul(left, right, node.span, max(left.level, right.level))
        return _matmul(product, v, node.span, node.level)

    return map_nodes(program, rewrite)


def gram_choice(program: ir.Program) -> ir.Program:
    """A gradient step on a least-squares term, `x - P @ (N @ x - c)` with P (p×q), N (q×r) and c
    invariant, is also `(I - P @ N) @ x + P @ c`: one p×p GEMM per sample instead of two thin ones.
    Which is less work (p·r against q·(p + r) per sample) depends on sizes known at construction, so
    the plan keeps both (a `choose` node) and the constructor picks by the actual sizes."""
    def gradient(node: ir.Node) -> ir.Node:
        """`P @ (N @ x - c)` alone (a scaled step `x - s * gradient`): `P N x - P c` or as written."""
        if node.op != "matmul" or node.py or node.type.dtype != REAL or node.type.rank != 1 \
                or not node.type.batched:
            return node
        P, residual = node.args
        if residual.op != "sub" or P.py or P.type.rank != 2 or P.type.batched or P.type.dtype != REAL:
            return node
        product, c = residual.args
        if product.op != "matmul" or c.py:
            return node
        N, x = product.args
        if N.py or N.type.rank != 2 or N.type.batched or N.type.dtype != REAL or x.type != node.type:
            return node
        if max(P.level, N.level, c.level) >= x.level:
            return node
        (p, q), (q2, r) = P.type.shape, N.type.shape
        if q != q2 or p != r or q == p:
            return node
        gram = _matmul(P, N, node.span, max(P.level, N.level))
        drift = _matmul(P, c, node.span, max(P.level, c.level))
        gram_form = ir.Node("sub", [_matmul(gram, x, node.span, node.level), drift], node.type, node.span,
                            node.level)
        where = (node.span.line, node.span.column, node.span.end_line, node.span.end_column)
        return ir.Node("choose", [gram_form, node], node.type, node.span, node.level,
                       {"sizes": (p, q, r), "id": where})

    def rewrite(node: ir.Node, args: list[ir.Node]) -> ir.Node:
        node = _rebuild(node, args)
        if node.op == "matmul":
            return gradient(node)
        if node.op != "sub" or node.py or node.type.dtype != REAL:
            return node
        x, step = node.args
        if step.op == "choose":  # the gradient alone was rewritten: try the whole step on its original
            node = _rebuild(node, [x, step.args[1]])
            full = rewrite_step(node, x, step.args[1])
            return full if full is not None else _rebuild(node, [x, step])
        return rewrite_step(node, x, step) or node

    def rewrite_step(node: ir.Node, x: ir.Node, step: ir.Node) -> ir.Node | None:
        if step.op != "matmul" or x.type != node.type or not x.type.batched or x.type.rank != 1:
            return None
        P, residual = step.args
        if residual.op != "sub" or P.py or P.type.rank != 2 or P.type.batched:
            return None
        product, c = residual.args
        if product.op != "matmul" or product.args[1].key != x.key:
            return None
        N = product.args[0]
        if N.py or N.type.rank != 2 or N.type.batched or c.py:
            return None
        if max(P.level, N.level, c.level) >= x.level:
            return None
        (p, q), (q2, r) = P.type.shape, N.type.shape
        if q != q2 or p != r or q == p or P.type.dtype != REAL or N.type.dtype != REAL:
            return None
        gram = _matmul(P, N, node.span, max(P.level, N.level))
        identity_minus = ir.Node("eye_minus", [gram], gram.type, node.span, gram.level)
        drift = _matmul(P, c, node.span, max(P.level, c.level))
        gram_form = ir.Node("add", [_matmul(identity_minus, x, node.span, node.level), drift], node.type,
                            node.span, node.level)
        where = (node.span.line, node.span.column, node.span.end_line, node.span.end_column)
        return ir.Node("choose", [gram_form, node], node.type, node.span, node.level,
                       {"sizes": (p, q, r), "id": where})

    return map_nodes(program, rewrite)
