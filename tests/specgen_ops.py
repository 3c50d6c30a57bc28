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

from specgen_exprs import IMAGE_DIMS, MUL_LEVEL, Expr, Ty, make, num, python_number_argument
from specgen_structured import SIGNAL_SHAPES, StructuredProductions

REAL_LITERALS = ("0.5", ".5", "2.", "1.5", "2.5e-1", "1e0", "0.75", "3.")
POW_EXPONENTS = (("2", 2), ("3", 3))
REAL_EXPONENTS = (("0.5", 0.5), ("-1", -1), ("-0.5", -0.5), ("1.5", 1.5))


class ExprGen(StructuredProductions):
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
