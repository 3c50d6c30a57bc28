"""The structured productions of the expression generator (tests/specgen_ops.py `ExprGen`): probabilities,
integer indexing, arrays, structure (reshape, stack, ...), linear algebra, gradients, influence functions and
signal operators.  A mixin: `self` is the ExprGen, with its pool, random streams and `gen`."""

from __future__ import annotations

from specgen_exprs import IMAGE_DIMS, Expr, Ty, make, num, text

SIGNAL_SHAPES = (("F", "N"), ("T",), ("2*n", "2*m"), (9, "n", "m"), (3, 3), (2, "n", "m"))


class StructuredProductions:
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
