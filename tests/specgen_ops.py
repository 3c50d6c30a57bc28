"""Random well-typed expressions over the operator registry (tests/specgen.py).

`ExprGen.gen(shape, dtype, depth)` returns an expression of exactly that logical shape and dtype.
Each production (`p_*`) builds one family of operators from operands generated recursively for the
shapes and dtypes the operator's shape rule needs; leaves come from a pool
(tests/specgen_program.py `Pool`) that declares data, inputs, parameters, states and
hyperparameters on demand.  Constructs named in `banned` (specgen.KNOWN_BUG_CONSTRUCTS) are not
generated.
"""

from __future__ import annotations

import random

from specgen_exprs import IMAGE_DIMS, MUL_LEVEL, Expr, Ty, make, num, python_number_argument, text

SIGNAL_SHAPES = (("F", "N"), ("T",), ("2*n", "2*m"), (9, "n", "m"), (3, 3), (2, "n", "m"))
REAL_LITERALS = ("0.5", ".5", "2.", "1.5", "2.5e-1", "1e0", "0.75", "3.")
POW_EXPONENTS = (("2", 2), ("3", 3))
REAL_EXPONENTS = (("0.5", 0.5), ("-1", -1), ("-0.5", -0.5), ("1.5", 1.5))


class ExprGen:
    """Random well-typed expressions.  `pool.leaf(shape, dtype, level, kind)` supplies declared names;
    `max_level` bounds the level (0 for parameter defaults, 1 outside `step:`), `banned` lists the
    KNOWN_BUG_CONSTRUCTS to avoid."""

    def __init__(self, rng, pool, banned=frozenset(), max_level=2, images=True):
        self.rng, self.pool, self.banned, self.max_level, self.images = rng, pool, set(banned), max_level, images
        self.side_rng = random.Random(hash(rng.getstate()[1]))  # for productions added later (p_probability)
        self.index_rng = random.Random(hash(rng.getstate()[1]) + 1)  # p_indexing: a stream of its own too

    # ------------------------------------------------------------------ helpers
    @property
    def in_step(self) -> bool:
        """`layer` is available (inside `step:`)."""
        return self.max_level >= 2 and self.pool.context == "step"

    def layer(self) -> Expr:
        return Expr("layer", Ty((), "int"), static=("layer",), level=2, py=True)

    def choice(self, seq):
        return seq[self.rng.randrange(len(seq))]

    def leaf(self, shape, dtype, kind=None) -> Expr:
        return self.pool.leaf(tuple(shape), dtype, self.max_level, kind)

    def dim(self, image=False):
        return self.choice(IMAGE_DIMS if image else ("n", "m", "k"))

    def suffix(self, shape):
        """A shape that broadcasts to `shape` (a trailing part of it)."""
        return tuple(shape[self.rng.randrange(len(shape) + 1):])

    def some_shape(self, max_rank=2):
        return tuple(self.dim() for _ in range(self.rng.randrange(max_rank + 1)))

    def sub_dtype(self, dtype):
        return dtype if dtype == "real" or self.rng.random() < 0.5 else "real"

    def pair_dtypes(self, dtype, mixed_ok=True):
        if dtype == "real":
            return "real", "real"
        if not mixed_ok or self.rng.random() < 0.4:
            return "complex", "complex"
        return self.choice((("complex", "real"), ("real", "complex")))

    def scalar_number(self) -> Expr:
        r = self.rng.random()
        if r < 0.3:
            t = self.choice(REAL_LITERALS)
            return num(t, float(t))
        if r < 0.45:
            i = self.rng.randrange(1, 4)
            return num(str(i), i)
        if r < 0.7:
            return self.leaf((), "real", "hyper")
        if r < 0.8:
            return self.leaf((), "int", "hyper")
        if self.in_step:
            return make("add", (self.layer(), num("1", 1)), Ty((), "int")) if self.rng.random() < 0.5 else self.layer()
        return num("2", 2)

    def index_expr(self) -> Expr:
        r = self.rng.random()
        if r < 0.5:
            i = self.rng.randrange(2)
            return num(str(i), i)
        if r < 0.75 or not self.in_step:
            return self.leaf((), "int", "hyper")  # int hyperparameters are 1
        return self.layer()

    def positive(self, shape, depth) -> Expr:
        """A real expression of `shape` whose entries are >= 0.5."""
        r = self.rng.random()
        if depth <= 0 or r < 0.35:
            if not shape and self.rng.random() < 0.4:
                t = self.choice(("0.5", "2.", "1.5", "3"))
                return num(t, float(t) if "." in t else int(t))
            return self.leaf(shape, "real", "positive")
        inner = self.gen(shape, self.sub_dtype("complex"), depth - 1)
        one = num("1", 1)
        if r < 0.55:
            return make("add", (one, make("abs2", (inner,), Ty(shape, "real", inner.ty.batched))),
                        Ty(shape, "real", inner.ty.batched))
        if r < 0.7:
            return make("add", (num("0.5", 0.5), make("abs", (inner,), Ty(shape, "real", inner.ty.batched))),
                        Ty(shape, "real", inner.ty.batched))
        if r < 0.85:
            real = self.gen(shape, "real", depth - 1)
            return make("exp", (make("tanh", (real,), real.ty),), real.ty)
        a, b = self.positive(shape, depth - 1), self.positive(self.suffix(shape), depth - 1)
        return make(self.choice(("add", "mul")), (a, b), Ty(shape, "real", a.ty.batched or b.ty.batched))

    def kernel(self, dtype, depth) -> Expr:
        """A 3 x 3 kernel: usually data, sometimes computed (possibly per sample)."""
        if self.rng.random() < 0.7:
            return self.pool.leaf((3, 3), dtype, self.max_level, "data")
        return self.gen((3, 3), dtype, depth)

    # ------------------------------------------------------------------ the productions
    def gen(self, shape, dtype, depth) -> Expr:
        shape = tuple(shape)
        reuse = [e for e in self.pool.recent if e.ty.shape == shape and e.ty.dtype == dtype and e.level <= self.max_level]
        if reuse and depth > 0 and self.max_level and self.rng.random() < 0.1:  # repeated: CSE, versions
            return self.choice(reuse)
        e = self._gen(shape, dtype, depth)
        if self.pool.context == "step" and e.op not in ("leaf", "num", "layer", "prev") and not e.py:
            self.pool.recent.append(e)
        return e

    def _gen(self, shape, dtype, depth) -> Expr:
        if depth <= 0 or self.rng.random() < 0.15:
            if not shape and dtype == "real" and self.rng.random() < 0.3:
                return self.scalar_number()
            if len(shape) == 2 and shape[0] == shape[1] and dtype == "real" and self.rng.random() < 0.15:
                return Expr("eye", Ty(shape, "real"), static=shape[:1])
            return self.leaf(shape, dtype)
        side = self.side_rng.random()  # (a stream of its own: the other productions' draws stay as they were)
        if dtype == "real" and len(shape) <= 2 and side < 0.04:
            return self.p_probability(shape, dtype, depth - 1)
        if len(shape) <= 2 and 0.04 <= side < 0.07:
            e = self.p_arrays(shape, dtype, depth - 1)
            if e is not None:
                return e
        if dtype == "real" and shape and isinstance(shape[0], str) and self.index_rng.random() < 0.04:
            return self.p_indexing(shape, depth - 1)  # (a stream of its own too)
        productions = self.productions(shape, dtype)
        while True:
            name, fn = self.choice(productions)
            e = fn(shape, dtype, depth - 1)
            numbers, constants = "operator_of_python_number" in self.banned, "operator_of_constant_scalar" in self.banned
            if e is not None and (numbers or constants) and \
                    any(python_number_argument(x, numbers, constants) for x in e.walk()):
                continue
            if e is not None:
                assert e.ty.shape == shape and e.ty.dtype in ((dtype,) if dtype == "complex" else ("real", "int")), \
                    (name, e.ty, shape, dtype)
                return e

    def productions(self, shape, dtype):
        p = [("arith", self.p_arith), ("arith", self.p_arith), ("div", self.p_div), ("neg", self.p_neg),
             ("pow", self.p_pow), ("matmul", self.p_matmul), ("matmul", self.p_matmul), ("index", self.p_index),
             ("unary", self.p_unary), ("thresh", self.p_thresh), ("where", self.p_where),
             ("reduce", self.p_reduce), ("structure", self.p_structure), ("signal", self.p_signal),
             ("linalg", self.p_linalg)]
        if dtype == "real" and len(shape) == 1:
            p.append(("grad", lambda shape, dtype, d: self.gradient(shape)))
        if dtype == "real" and len(shape) >= 2:  # (filter responses: images, stacks)
            p.append(("influence", self.p_influence))
        if self.images and (shape in SIGNAL_SHAPES or shape[-2:] in (("n", "m"), ("m", "n"))):
            p += [("signal", self.p_signal)] * (8 if shape in SIGNAL_SHAPES else 2)
        return p

    def p_arith(self, shape, dtype, d):
        op = self.choice(("add", "sub", "mul"))
        da, db = self.pair_dtypes(dtype)
        a, b = self.gen(shape, da, d), self.gen(self.suffix(shape), db, d)
        if self.rng.random() < 0.5:
            a, b = b, a
        return make(op, (a, b), Ty(shape, dtype, a.ty.batched or b.ty.batched))

    def p_div(self, shape, dtype, d):
        if self.rng.random() < 0.8:
            a, b = self.gen(shape, dtype, d), self.positive(self.suffix(shape), d)
        else:
            a, b = self.gen(self.suffix(shape), dtype, d), self.positive(shape, d)
        return make("div", (a, b), Ty(shape, dtype, a.ty.batched or b.ty.batched))

    def p_neg(self, shape, dtype, d):
        a = self.gen(shape, dtype, d)
        return make("neg", (a,), a.ty)

    def p_pow(self, shape, dtype, d):
        if dtype == "complex" or self.rng.random() < 0.5:
            base = self.gen(shape, dtype, d)
            t, v = self.choice(POW_EXPONENTS)
        else:
            base = self.positive(shape, d)
            t, v = self.choice(REAL_EXPONENTS)
        exponent = num(t, v) if v >= 0 else Expr("neg", Ty((), num(t[1:], -v).ty.dtype), (num(t[1:], -v),), py=True)
        return make("pow", (base, exponent), Ty(shape, base.ty.dtype, base.ty.batched), (self.choice(("^", "**")),))

    def p_matmul(self, shape, dtype, d):
        mixed = "mixed_dtype_matmul_solve" not in self.banned
        da, db = self.pair_dtypes(dtype, mixed)
        q = self.dim()
        if len(shape) == 0:
            a, b = self.gen((q,), da, d), self.gen((q,), db, d)
            if b.op in MUL_LEVEL + ("grad",) and "matmul_right_of_vector_product" in self.banned:
                return None
        elif len(shape) == 1:
            if self.rng.random() < 0.3:  # A.T @ x, A.H @ x: the emitter has its own path for them
                op = "T" if da == "real" or self.rng.random() < 0.3 else "H"
                inner = self.gen((q, shape[0]), da, d)
                a, b = make(op, (inner,), Ty((shape[0], q), da, inner.ty.batched)), self.gen((q,), db, d)
            elif self.rng.random() < 0.6:
                a, b = self.gen((shape[0], q), da, d), self.gen((q,), db, d)
            else:
                a, b = self.gen((q,), da, d), self.gen((q, shape[0]), db, d)
        elif len(shape) == 2:
            if self.rng.random() < 0.3:  # stacked matrices times a vector
                a, b = self.gen((shape[0], shape[1], q), da, d), self.gen((q,), db, d)
            else:
                a, b = self.gen((shape[0], q), da, d), self.gen((q, shape[1]), db, d)
        else:
            return None
        return make("matmul", (a, b), Ty(shape, dtype, a.ty.batched or b.ty.batched))

    def p_index(self, shape, dtype, d):
        if len(shape) > 2:
            return None
        index = self.index_expr()
        a = self.gen((self.dim(image=index.op == "layer"),) + shape, dtype, d)  # layer < 3 <= n, m
        return make("index", (a, index), Ty(shape, dtype, a.ty.batched))

    def p_unary(self, shape, dtype, d):
        if dtype == "complex":
            r = self.rng.random()
            if r < 0.3:
                a = self.gen(shape, "real", d)
                return make("expj", (a,), Ty(shape, "complex", a.ty.batched))
            if r < 0.55:
                a, b = self.gen(shape, "real", d), self.gen(self.suffix(shape), "real", d)
                a, b = (a, b) if self.rng.random() < 0.5 else (b, a)
                return make("complex", (a, b), Ty(shape, "complex", a.ty.batched or b.ty.batched))
            a = self.gen(shape, "complex", d)
            return make(self.choice(("conj", "sign")), (a,), a.ty)
        diff_rng = self.__dict__.setdefault("diff_rng", random.Random(hash(self.rng.getstate()[1]) + 8))
        if dtype == "real" and diff_rng.random() < 0.05:  # stop_grad (a stream of its own: the others' draws stay)
            a = self.gen(shape, "real", d)
            return make("stop_grad", (a,), a.ty)
        op = self.choice(("abs", "abs2", "real", "imag", "angle", "relu", "tanh", "sigmoid", "sign", "sqrt",
                          "log", "exp", "conj", "clamp", "max2"))
        if op in ("abs", "abs2", "real", "imag", "angle"):
            a = self.gen(shape, "complex" if op in ("imag", "angle") or self.rng.random() < 0.5 else "real", d)
            return make(op, (a,), Ty(shape, "real", a.ty.batched))
        if op in ("sqrt", "log"):
            a = self.positive(shape, d)
            return make(op, (a,), a.ty)
        if op == "exp":
            a = self.gen(shape, "real", d)
            return make("exp", (make("tanh", (a,), a.ty),), a.ty) if self.rng.random() < 0.5 else \
                make("exp", (make("neg", (make("abs", (a,), a.ty),), a.ty),), a.ty)
        if op == "clamp":
            a, lo = self.gen(shape, "real", d), self.choice((("-0.5", -0.5), ("0", 0), ("-1", -1)))
            low = Expr("neg", Ty((), "real"), (num(lo[0][1:], -lo[1]),), py=True) if lo[0].startswith("-") \
                else num(*lo)
            return make("clamp", (a, low, num("0.75", 0.75)), Ty(shape, "real", a.ty.batched))
        if op == "max2":
            a, b = self.gen(shape, "real", d), self.gen(self.suffix(shape), "real", d)
            a, b = (a, b) if self.rng.random() < 0.5 else (b, a)
            if len(shape) >= 2 and b.py and b.ty.dtype == "int":  # `max(X, 0)` reads as an axis: the checker asks
                a, b = b, a  # for `max(X, 0.0)`; `max(0, X)` is the same elementwise maximum
            return make(self.choice(("max", "min")), (a, b), Ty(shape, "real", a.ty.batched or b.ty.batched))
        a = self.gen(shape, "real", d)
        return make(op, (a,), Ty(shape, "real", a.ty.batched))

    def p_thresh(self, shape, dtype, d):
        op = self.choice(("soft", "soft", "hard", "soft_nonneg", "hard_topk", "ss_soft", "svt", "row_shrink",
                          "norm_sum", "normalize_columns"))
        if op in ("soft_nonneg", "ss_soft", "norm_sum") and dtype == "complex":
            op = "soft"
        if op in ("svt", "row_shrink", "normalize_columns") and len(shape) != 2:
            op = "hard"
        if op == "svt" and dtype == "complex" and "complex_svt_backward" in self.banned:
            op = "row_shrink"
        if op in ("hard_topk", "ss_soft", "norm_sum") and not shape:
            op = "soft"
        if op == "norm_sum":
            a = self.positive(shape, d)
            return make(op, (a,), a.ty)
        v = self.gen(shape, dtype, d)
        if op == "normalize_columns":
            return make(op, (v,), v.ty)
        if op == "hard_topk":
            k = num("1", 1) if self.rng.random() < 0.5 else self.leaf((), "int", "hyper")
            return make(op, (v, k), v.ty)
        scalar = op in ("svt", "row_shrink", "ss_soft") or self.rng.random() < 0.6
        th = self.positive(() if scalar else self.suffix(shape), d - 1)
        if op in ("svt", "row_shrink") and th.ty.batched and "matrix_threshold_batched_tau" in self.banned:
            return None
        args = (v, th) if op != "ss_soft" else (v, th, num("0.5", 0.5))
        return make(op, args, Ty(shape, dtype, v.ty.batched or th.ty.batched))

    def p_where(self, shape, dtype, d):
        da, db = self.pair_dtypes(dtype, "where_real_and_complex_branches" not in self.banned)
        a, b = self.gen(shape, da, d), self.gen(self.suffix(shape), db, d)
        a, b = (a, b) if self.rng.random() < 0.5 else (b, a)
        if self.rng.random() < 0.2:  # an integer condition (the first layer, a hyperparameter switch)
            x, y = self.layer() if self.in_step else self.leaf((), "int", "hyper"), num("1", 1)
            op = self.choice(("eq", "ne"))
        else:
            x, y = self.gen(self.suffix(shape), "real", d), self.gen(self.suffix(shape), "real", d)
            op = self.choice(("lt", "gt", "le", "ge"))
        cond = make(op, (x, y), Ty(max(x.ty.shape, y.ty.shape, key=len), "bool", x.ty.batched or y.ty.batched))
        return make("where", (cond, a, b), Ty(shape, dtype, any(t.ty.batched for t in (cond, a, b))))

    def p_reduce(self, shape, dtype, d):
        if len(shape) >= 3:
            return None
        op = self.choice(("sum", "mean", "norm", "dot", "dot", "max1", "nnz", "opnorm") if not shape
                         else ("sum", "mean", "norm"))
        if op in ("norm", "nnz", "max1", "opnorm") and dtype == "complex":
            op = "sum"
        if not shape and op in ("sum", "mean", "norm") or op == "nnz":
            a = self.gen(self.some_shape(), dtype if op in ("sum", "mean") else self.choice(("real", "complex")), d)
            return make(op, (a,), Ty((), "real" if op in ("norm", "nnz") else dtype, a.ty.batched))
        if op in ("sum", "mean", "norm"):
            axis = self.rng.randrange(len(shape) + 1)
            inner = shape[:axis] + (self.dim(),) + shape[axis:]
            a = self.gen(inner, dtype if op != "norm" else self.choice(("real", "complex")), d)
            return make(op, (a,), Ty(shape, dtype, a.ty.batched), (axis,))
        if op == "dot":
            banned = "matmul_right_of_vector_product" in self.banned
            inner = self.some_shape()
            if not inner and "dot_of_scalars" in self.banned:
                inner = (self.dim(),)
            da, db = self.pair_dtypes(dtype)
            a, b = self.gen(inner, da, d), self.gen(inner, db, d)
            if banned and b.op in MUL_LEVEL + ("grad",):  # (a gradient is often a product)
                return None
            if a.ty.dtype == b.ty.dtype == "int":  # `dot(2, 3)` is an integer: `A - dot(2, 3)` is refused
                return None
            return make("dot", (a, b), Ty((), dtype, a.ty.batched or b.ty.batched))
        if op == "max1":
            a = self.gen((self.dim(),) + self.some_shape(1), "real", d)
            return make(self.choice(("max", "min")), (a,), Ty((), "real", a.ty.batched))
        a = self.gen((self.dim(), self.dim()), self.choice(("real", "complex")), d)
        return make("opnorm", (a,), Ty((), "real", a.ty.batched))

    def p_probability(self, shape, dtype, d):
        """softmax / logsoftmax along an axis (same shape); logsumexp, max(v, axis=k), min(v, axis=k) removing one."""
        if dtype != "real":
            return None
        op = self.choice(("softmax", "logsoftmax", "logsumexp", "max_axis", "min_axis") if shape
                         else ("logsumexp", "max_axis", "min_axis"))
        if op in ("softmax", "logsoftmax"):
            a = self.gen(shape, "real", d)
            if len(shape) == 1 and self.rng.random() < 0.3:
                return make(op, (a,), Ty(shape, "real", a.ty.batched))
            axis = self.rng.randrange(len(shape))
            return make(op, (a,), Ty(shape, "real", a.ty.batched), (self.choice((axis, axis - len(shape))),))
        if op == "logsumexp" and not shape and self.rng.random() < 0.3:
            a = self.gen(self.some_shape(), "real", d)
            return make(op, (a,), Ty((), "real", a.ty.batched))
        axis = self.rng.randrange(len(shape) + 1)
        a = self.gen(shape[:axis] + (self.dim(),) + shape[axis:], "real", d)
        return make(op, (a,), Ty(shape, "real", a.ty.batched), (axis,))

    def p_indexing(self, shape, d):
        """Gather / scatter-add with indices from argmax / argmin / topk_indices along an axis, and integer
        `%` / `//` cast back with as_real (a real value of `shape`, whose first axis is a dim)."""
        first, rest, other = shape[0], tuple(shape[1:]), self.dim()
        r, sel = self.index_rng.random(), self.index_rng.choice(("argmax", "argmin"))
        if r < 0.35:  # take(v, argmax(A, axis=1)): one row of v per entry of the first axis
            A = self.gen((first, other), "real", d)
            idx = make(sel, (A,), Ty((first,), "int", A.ty.batched), (1,))
            v = self.gen((other,) + rest, "real", d)
            return make("take", (v, idx), Ty(shape, "real", v.ty.batched or idx.ty.batched))
        if r < 0.65:  # segment_sum(w, argmin(B, axis=1), first): rows of w added into `first` segments
            B = self.gen((other, first), "real", d)
            idx = make(sel, (B,), Ty((other,), "int", B.ty.batched), (1,))
            w = self.gen((other,) + rest, "real", d)
            return make("segment_sum", (w, idx), Ty(shape, "real", w.ty.batched or idx.ty.batched), (first,))
        if r < 0.85 and not rest:  # as_real(argmax(A, axis=1) % 2), `//` likewise
            A = self.gen((first, other), "real", d)
            idx = make(sel, (A,), Ty((first,), "int", A.ty.batched), (1,))
            ints = make(self.index_rng.choice(("mod", "floordiv")), (idx, num("2", 2)), Ty((first,), "int", idx.ty.batched))
            return make("as_real", (ints,), Ty(shape, "real", ints.ty.batched))
        u = self.gen((first,), "real", d)  # take(v, topk_indices(u, first)): the rows of v sorted by u
        idx = make("topk_indices", (u,), Ty((first,), "int", u.ty.batched), (first,))
        v = self.gen(shape, "real", d)
        return make("take", (v, idx), Ty(shape, "real", v.ty.batched or idx.ty.batched))

    def p_arrays(self, shape, dtype, d):
        """sqdist, diag (both ways), trace, shift, and diff_adj(diff(v, axis), axis) (the same shape)."""
        r = self.rng.random()
        if len(shape) == 2 and dtype == "real" and r < 0.25:
            features = self.some_shape(1)
            a = self.gen((shape[0],) + features, "real", d)
            b = self.gen((shape[1],) + features, "real", d)
            return make("sqdist", (a, b), Ty(shape, "real", a.ty.batched or b.ty.batched))
        if len(shape) == 2 and shape[0] == shape[1] and r < 0.4:
            a = self.gen(shape[:1], dtype, d)
            return make("diag", (a,), Ty(shape, dtype, a.ty.batched))
        if len(shape) == 1 and r < 0.4:
            a = self.gen(shape + shape, dtype, d)
            return make("diag", (a,), Ty(shape, dtype, a.ty.batched))
        if r < 0.55:
            k = self.dim()
            a = self.gen(shape + (k, k), dtype, d)
            return make("trace", (a,), Ty(shape, dtype, a.ty.batched))
        if not shape:
            return None
        axis = self.rng.randrange(len(shape))
        if r < 0.62:  # a slice `x[..., a:b]` (an integer axis from a longer one; a symbolic one as `0:`)
            size = shape[axis]
            start, stop, longer = ((1, -1, size + 2) if self.rng.random() < 0.5 else (2, None, size + 2)) \
                if isinstance(size, int) else (0, None, size)
            a = self.gen(shape[:axis] + (longer,) + shape[axis + 1:], dtype, d)
            return make("slice_axis", (a,), Ty(shape, dtype, a.ty.batched), (axis, start, stop))
        if r < 0.68:  # `X[:, 0]`: entry 0 along an inserted axis
            a = self.gen(shape[:axis] + (self.dim(),) + shape[axis:], dtype, d)
            return make("pick", (a, num("0", 0)), Ty(shape, dtype, a.ty.batched), (axis,))
        a = self.gen(shape, dtype, d)
        if r < 0.8 or shape[axis] == 1:  # (`diff` along an axis of size 1 is refused: it has no differences)
            return make("shift", (a,), Ty(shape, dtype, a.ty.batched), (self.choice((1, -1, 2)), axis))
        inner = make("diff", (a,), Ty(shape, dtype, a.ty.batched), (axis,))  # (its type: only its dtype is read)
        return make("diff_adj", (inner,), Ty(shape, dtype, a.ty.batched), (axis,))

    def p_structure(self, shape, dtype, d):
        r = self.rng.random()
        if len(shape) == 2 and r < 0.3:
            a = self.gen((shape[1], shape[0]), dtype, d)
            op = "T" if dtype == "real" or self.rng.random() < 0.5 else "H"
            if self.rng.random() < 0.3:
                op = {"T": "transpose", "H": "adjoint"}[op]
            return make(op, (a,), Ty(shape, dtype, a.ty.batched))
        if len(shape) == 2 and r < 0.45:
            da, db = self.pair_dtypes(dtype)
            a, b = self.gen(shape[:1], da, d), self.gen(shape[1:], db, d)
            return make("outer", (a, b), Ty(shape, dtype, a.ty.batched or b.ty.batched))
        if shape and shape[0] == 2 and r < 0.7:
            da, db = self.pair_dtypes(dtype)
            a, b = self.gen(shape[1:], da, d), self.gen(shape[1:], db, d)
            op = self.choice(("stack", "cat"))
            if op == "cat":  # at least one piece has the full rank; a piece one axis short is one channel
                a = self.gen((1,) + shape[1:], da, d)
                if self.rng.random() < 0.5:
                    b = self.gen((1,) + shape[1:], db, d)
                a, b = (a, b) if self.rng.random() < 0.5 else (b, a)
            return make(op, (a, b), Ty(shape, dtype, a.ty.batched or b.ty.batched))
        if len(shape) >= 2 and r < 0.8:
            perm = list(shape)
            self.rng.shuffle(perm)
            if "reshape_three_dims" in self.banned and len({s for s in shape if isinstance(s, str)}) >= 3:
                return None
            a = self.gen(tuple(perm), dtype, d)
            return make("reshape", (a,), Ty(shape, dtype, a.ty.batched), shape)
        if dtype == "real" and r < 0.9 and len(shape) == 2 and shape[0] == shape[1]:
            return Expr("eye", Ty(shape, "real"), static=shape[:1])
        if dtype == "real" and shape and r < 0.95:
            return Expr(self.choice(("zeros", "ones")), Ty(shape, "real"), static=shape)
        if len(shape) == 1 and dtype == "real":
            a = self.gen(shape, "real", d)
            return make("onehot", (make("argmax", (a,), Ty((), "int", a.ty.batched)),),
                        Ty(shape, "real", a.ty.batched), shape)
        return None

    def p_linalg(self, shape, dtype, d):
        r = self.rng.random()
        if len(shape) in (1, 2) and r < 0.5:  # a well-conditioned square data matrix (or its transpose) solves
            mixed = "mixed_dtype_matmul_solve" not in self.banned
            dm, db = self.pair_dtypes(dtype, mixed)
            M = self.pool.leaf((shape[0], shape[0]), dm, self.max_level, "wellcond")
            if self.rng.random() < 0.3:
                M = make("T", (M,), M.ty)
            b = self.gen(shape, db, d)
            return make("solve", (M, b), Ty(shape, dtype, b.ty.batched))
        if self.max_level == 0:
            return None
        if len(shape) in (1, 2) and r < 0.8:  # a user operator given as a matrix
            return self.pool.apply_operator(self, shape, dtype, d)
        if dtype == "real" and len(shape) in (1, 3):  # a zero-initialised sub-network
            return self.pool.net_call(self, shape, d)
        return None

    def gradient(self, shape) -> Expr | None:
        """grad(f, x) of a random objective at most quadratic in the name x: weighted sums of
        norm(M @ x - v)^2, norm(x)^2, dot(c, x) and sum(x)."""
        if any(isinstance(s, int) or "*" in s for s in shape):  # (grad rejects [1] and [2*n] vectors)
            return None
        x = self.leaf(shape, "real")
        if x.op != "leaf" or x.py:
            return None
        terms, seen = [], set()
        for _ in range(self.rng.randint(1, 3)):
            r = self.rng.random()
            if r < 0.4:
                p = self.dim()
                M, v = self.name_leaf((p,) + shape), self.name_leaf((p,))
                residual = make("sub", (make("matmul", (M, x), Ty((p,), "real")), v), Ty((p,), "real"))
                term = make("pow", (make("norm", (residual,), Ty((), "real")), num("2", 2)), Ty((), "real"), ("^",))
            elif r < 0.6:
                term = make("pow", (make("norm", (x,), Ty((), "real")), num("2", 2)), Ty((), "real"), ("^",))
            elif r < 0.85:
                term = make("dot", (self.name_leaf(shape), x), Ty((), "real"))  # (c may be x itself)
            else:
                term = make("sum", (x,), Ty((), "real"))
            square = term.op == "dot" and term.args[0].static == x.static or text(term) == f"norm({text(x)})^2"
            key = "norm(x)^2" if square else text(term)
            if key in seen:  # (sympy would cancel `t - t`; dot(x, x) is norm(x)^2)
                continue
            seen.add(key)
            r = self.rng.random()
            coefficient = num("0.5", 0.5) if r < 0.4 else self.leaf((), "real", "hyper") if r < 0.7 \
                else self.name_leaf(())
            terms.append(make("mul", (coefficient, term), Ty((), "real")))
        f = terms[0]
        for t in terms[1:]:
            f = make(self.choice(("add", "sub")), (f, t), Ty((), "real"))
        return Expr("grad", Ty(shape, "real", x.ty.batched), (f,), (x.static[0],), max(f.level, x.level))

    def name_leaf(self, shape) -> Expr:
        """A declared real name of this shape (not `prev(...)`, not a number)."""
        e = self.leaf(shape, "real")
        return e if e.op == "leaf" and not e.py else self.pool.leaf(shape, "real", self.max_level, "data")

    def p_influence(self, shape, dtype, d):
        """`rbf` / `pwl` of any real value: one function, or one per entry of the first axis (constant tables)."""
        z = self.gen(shape, "real", d)
        points = self.dim()
        table = (shape[0], points) if shape and self.rng.random() < 0.5 else (points,)
        if self.rng.random() < 0.5:
            knots = self.pool.leaf((points,), "real", 0, "increasing")
            values = self.pool.leaf(table, "real", 0, "data")
            return make("pwl", (z, knots, values), Ty(shape, "real", z.ty.batched))
        weights, centers = self.pool.leaf(table, "real", 0, "data"), self.pool.leaf((points,), "real", 0, "data")
        gamma = num("0.75", 0.75) if self.rng.random() < 0.5 else self.leaf((), "real", "hyper")
        return make("rbf", (z, weights, centers, gamma), Ty(shape, "real", z.ty.batched))

    def p_signal(self, shape, dtype, d):
        if not self.images:
            return None
        r = self.rng.random()
        if dtype == "complex" and shape and r < 0.5:
            op = self.choice(("fft", "ifft") + (("fft2", "ifft2", "fft2u", "ifft2u") if len(shape) > 1 else ()))
            a = self.gen(shape, self.sub_dtype("complex"), d)
            return make(op, (a,), Ty(shape, "complex", a.ty.batched))
        image = len(shape) >= 2 and all(s in IMAGE_DIMS for s in shape[-2:])
        if shape == (3, 3) and dtype == "real" and r < 0.3:  # a filter from its moments (constant moments)
            return make("moment_filter", (self.pool.leaf(shape, "real", 0, "data"),), Ty(shape, "real"))
        if shape == (3, 3):  # the centred kernel of an image-sized one
            a = self.gen((self.dim(image=True), self.dim(image=True)), dtype, d)
            return make("crop_kernel", (a,), Ty(shape, dtype, a.ty.batched), (3,))
        if shape == ("F", "N") and dtype == "complex":
            a = self.gen(("T",), "real", d)
            return make("stft", (a,), Ty(shape, dtype, a.ty.batched), ("F", "N", 2))
        if shape == ("T",) and dtype == "real":
            a = self.gen(("F", "N"), "complex" if "istft_of_real" in self.banned else self.sub_dtype("complex"), d)
            return make("istft", (a,), Ty(shape, dtype, a.ty.batched), ("T", 2))
        if shape == ("2*n", "2*m"):
            op = "bicubic" if dtype == "real" and r < 0.5 else "up"
            a = self.gen(("n", "m"), dtype, d)
            return make(op, (a,), Ty(shape, dtype, a.ty.batched), (2,))
        if shape == ("n", "m") and r < 0.15:
            a = self.gen(("2*n", "2*m"), dtype, d)
            return make("down", (a,), Ty(shape, dtype, a.ty.batched), (2,))
        if len(shape) == 2 and image and r < 0.75:
            k = self.rng.random()
            if dtype == "complex" and k < 0.4:
                kern = self.kernel(self.sub_dtype("complex"), d)
                return make("otf", (kern,), Ty(shape, "complex", kern.ty.batched), shape)
            if k < 0.7:
                kern = self.kernel(dtype, d)
                return make("pad_kernel", (kern,), Ty(shape, dtype, kern.ty.batched), shape)
            a = self.gen(shape, dtype, d)
            return make("support", (a,), Ty(shape, dtype, a.ty.batched), (3,))
        if len(shape) == 3 and shape[0] == 2 and image and r < 0.6:
            a = self.gen(shape[1:], dtype, d)
            return make("grad2", (a,), Ty(shape, dtype, a.ty.batched))
        if len(shape) == 2 and image:
            k = self.rng.random()
            if k < 0.2:
                a = self.gen((2,) + shape, dtype, d)
                return make("div2", (a,), Ty(shape, dtype, a.ty.batched))
            if k < 0.4:
                a = self.gen((9,) + shape, dtype, d)
                return make(self.choice(("unpatch", "patch_average")), (a,), Ty(shape, dtype, a.ty.batched), (3,))
            op = self.choice(("conv2", "conv2_adj", "conv2z", "conv2z_adj", "conv2s", "conv2s_adj"))
            dk, dx = self.pair_dtypes(dtype)
            kern = self.kernel(dk, d)
            a = self.gen(shape, dx, d)
            return make(op, (kern, a), Ty(shape, dtype, a.ty.batched or kern.ty.batched))
        if len(shape) == 3 and shape[0] == 9 and image:
            a = self.gen(shape[1:], dtype, d)
            return make("patches", (a,), Ty(shape, dtype, a.ty.batched), (3,))
        if len(shape) == 3 and image and shape[0] in ("n", "m", "k"):
            c = self.dim()
            dw, dx = self.pair_dtypes(dtype, "mixed_dtype_chanmix" not in self.banned)
            W = self.gen((shape[0], c), dw, d)
            a = self.gen((c,) + shape[1:], dx, d)
            return make("chanmix", (W, a), Ty(shape, dtype, W.ty.batched or a.ty.batched))
        return None
