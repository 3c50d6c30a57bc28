"""Generated specs as data: declarations, statements, spec text and numpy meaning (tests/specgen.py).

A `Program` is a spec the generator built: its declarations live in a `Pool` (which also declares
names on demand for the expression generator), its `step:` and `final:` blocks are lists of
`Stmt`.  `render()` gives the spec text (only the declarations the statements use), `values()`
random constructor data and inputs of the declared shapes, and `reference()` the outputs on one
sample by direct interpretation in numpy (sequential statements, `repeat`, `prev`, per-layer
parameters, the `final:` block), independently of the compiler.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from specgen_exprs import (
    AMBIGUOUS,
    PLAIN_DIMS,
    SIZES,
    Expr,
    Ty,
    dependencies,
    evaluate_or_mark,
    make,
    num,
    size,
    text,
)
from specgen_ops import ExprGen

KINDS_ORDER = ("data", "hyper", "input", "param", "net", "let", "state")


@dataclass
class Decl:
    name: str
    kind: str  # data, operator, hyper, input, param, net, let, state
    ty: Ty
    level: int
    values: str = "normal"  # data / input values: normal, positive, wellcond
    init: Expr | None = None  # a parameter's default, a state's initial value, a let's value
    annotations: str = ""  # a parameter's annotations
    spec_type: str = ""  # an operator's / a sub-network's type text
    per_layer: bool = False
    number: float | int | None = None  # a hyperparameter's default
    py: bool = False  # a local holding a Python number
    assigned: bool = False  # a state the statements update; a temporary that may be reassigned


@dataclass
class Stmt:
    kind: str  # assign, let, repeat
    target: str = ""
    expr: Expr | None = None
    body: list = field(default_factory=list)
    count: int = 1


class Pool:
    """Declares names on demand: `leaf(shape, dtype, max_level, kind)` returns a leaf expression of
    exactly that type, reusing a declared name or declaring a new one."""

    def __init__(self, rng: random.Random, banned=(), nets=True):
        self.rng, self.banned, self.nets = rng, set(banned), nets
        self.decls: dict[str, Decl] = {}
        self.locals: dict[str, Decl] = {}  # the `let` temporaries visible where the generator is
        self.local_types: dict[str, Ty] = {}
        self.recent: list[Expr] = []  # sub-expressions generated in the current step block, for reuse
        self.context = "top"  # top (declarations), step, final
        self.layers = 0  # the depth, where `history_sum` may be generated
        self.counter = 0

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def add(self, d: Decl) -> Expr:
        self.decls[d.name] = d
        return self.ref(d)

    def ref(self, d: Decl) -> Expr:
        return Expr("leaf", d.ty, static=(d.name,), level=d.level, py=d.kind == "hyper" or d.py)

    def local(self, expr: Expr, name: str | None = None) -> Expr:
        d = Decl(name or self.fresh("u"), "local", expr.ty, 2, init=expr, py=expr.py)
        self.locals[d.name] = d
        self.local_types[d.name] = expr.ty
        return self.ref(d)

    def candidates(self, shape, dtype, max_level, values=None):
        kinds = ("data", "input", "param", "state", "let") if max_level else ("data",)
        found = [d for d in self.decls.values() if d.kind in kinds and d.ty.shape == shape and d.ty.dtype == dtype
                 and d.level <= max_level and (values is None or d.values == values)
                 and not (d.per_layer and self.context != "step")]
        if max_level >= 2 and values is None:
            found += [d for d in self.locals.values() if d.ty.shape == shape and d.ty.dtype == dtype]
        return found

    def leaf(self, shape, dtype, max_level, kind=None) -> Expr:
        rng = self.rng
        if kind == "hyper" or dtype == "int":
            old = [d for d in self.decls.values() if d.kind == "hyper" and d.ty.dtype == dtype]
            if old and rng.random() < 0.7:
                return self.ref(rng.choice(old))
            value = 1 if dtype == "int" else rng.choice((0.5, 0.75, 1.25, 2.0))
            return self.add(Decl(self.fresh("i" if dtype == "int" else "h"), "hyper", Ty((), dtype), 0, number=value))
        if kind in ("positive", "wellcond", "data", "increasing"):
            values = {"data": "normal"}.get(kind, kind)
            old = self.candidates(shape, dtype, max_level if kind == "positive" else 0, values)
            if old and rng.random() < 0.6:
                return self.ref(rng.choice(old))
            if kind == "positive" and max_level >= 1 and rng.random() < 0.4:
                return self.input_or_param(shape, dtype, max_level, positive=True)
            return self.data(shape, dtype, values)
        states = [d for d in self.decls.values() if d.kind == "state" and d.ty.shape == shape
                  and d.ty.dtype == dtype and d.assigned] if max_level >= 2 and self.context != "top" else []
        if states and rng.random() < 0.4:  # the values the statements update
            state = rng.choice(states)
            if self.context == "step" and rng.random() < 0.25:
                return Expr("prev", Ty(shape, dtype), static=(state.name,), level=2)
            if self.context == "step" and self.layers and rng.random() < 0.15:  # all earlier values
                beta = self.param((self.layers,), "real", per_layer=True)
                return Expr("history_sum", state.ty, (beta,), (state.name,), level=2)
            return self.ref(state)
        old = self.candidates(shape, dtype, max_level)
        if old and rng.random() < 0.5:
            return self.ref(rng.choice(old))
        r = rng.random()
        if max_level == 0 or r < 0.35:
            return self.data(shape, dtype, "normal")
        if max_level == 1 or r < 0.75:
            return self.input_or_param(shape, dtype, max_level)
        return self.state(shape, dtype)

    def data(self, shape, dtype, values) -> Expr:
        prefix = {"positive": "pd", "wellcond": "W"}.get(values, "Z" if dtype == "complex" else "A")
        return self.add(Decl(self.fresh(prefix), "data", Ty(shape, dtype), 0, values))

    def input_or_param(self, shape, dtype, max_level, positive=False) -> Expr:
        rng = self.rng
        if rng.random() < 0.5:
            return self.add(Decl(self.fresh("w" if dtype == "complex" else "y"), "input", Ty(shape, dtype, True), 1,
                                 "positive" if positive else "normal"))
        per_layer = max_level >= 2 and self.context == "step" and rng.random() < 0.4
        return self.param(shape, dtype, per_layer, positive)

    def param(self, shape, dtype, per_layer, positive=False) -> Expr:
        rng = self.rng
        name = self.fresh("Q" if per_layer else "P")
        default_gen = ExprGen(rng, self, self.banned, max_level=0, images=False)
        context, self.context = self.context, "top"
        if positive:
            default = default_gen.positive(shape, 1)
        elif dtype == "complex" or rng.random() < 0.5:
            default = self.leaf(shape, dtype, 0, "data")
        else:
            default = default_gen.gen(shape, "real", 1) if shape else default_gen.scalar_number()
        if per_layer and dtype == "real":  # a default that depends on the layer
            layer = Expr("layer", Ty((), "int"), static=("layer",), level=2, py=True)
            step = make("add", (num("1", 1), layer), Ty((), "int"))
            default = make("mul", (default, step), Ty(shape, "real"))
        notes = [rng.choice(("learned", "learned", "fixed")), "per_layer" if per_layer else rng.choice(("shared", ""))]
        if positive and dtype == "real" and rng.random() < 0.6:
            notes.append(rng.choice(("positive", "nonnegative", "range(0, 1000000)")))
        self.context = context
        d = Decl(name, "param", Ty(shape, dtype), 2 if per_layer else 1, "positive" if positive else "normal",
                 init=default, annotations=" ".join(n for n in notes if n), per_layer=per_layer)
        return self.add(d)

    def state(self, shape, dtype) -> Expr:
        """A state that the program never assigns (its value is its initial value)."""
        gen = ExprGen(self.rng, self, self.banned, max_level=1, images=False)
        init = self.leaf(shape, dtype, 1) if self.rng.random() < 0.7 else gen.scalar_number()
        d = Decl(self.fresh("s"), "state", Ty(shape, dtype, init.ty.batched), 2, init=init)
        return self.add(d)

    def let(self, expr: Expr, name: str | None = None) -> Expr:
        d = Decl(name or self.fresh("t"), "let", expr.ty, expr.level, init=expr)
        return self.add(d)

    def apply_operator(self, gen: ExprGen, shape, dtype, depth):
        """K(x) / K.H(y) of a user operator `data K : operator[out <- in]` given as a matrix."""
        rng = self.rng
        multi = "operator_matrix_multiaxis" not in self.banned
        other = ("n", "m") if multi and rng.random() < 0.4 and len(shape) == 1 else (rng.choice(("n", "m", "k")),)
        if len(shape) == 2 and not multi:
            return None
        adjoint = rng.random() < 0.5
        out_shape, in_shape = (other, shape) if adjoint else (shape, other)
        key = f"operator[{', '.join(map(str, out_shape))} <- {', '.join(map(str, in_shape))}]"
        old = [d for d in self.decls.values() if d.kind == "operator" and d.spec_type == key]
        d = old[0] if old else Decl(self.fresh("K"), "operator", Ty(out_shape + in_shape, "real"), 0, spec_type=key)
        self.decls[d.name] = d
        if dtype == "complex" and "mixed_dtype_matmul_solve" in self.banned:  # a real matrix on complex values
            return None
        arg = gen.gen(other, dtype, depth)
        return Expr("apply", Ty(shape, arg.ty.dtype, arg.ty.batched), (arg,), (d.name, adjoint), max(1, arg.level))

    def net_call(self, gen: ExprGen, shape, depth):
        """A call of a zero-initialised sub-network (an MLP on vectors, a CNN on images [c, h, w])."""
        if not self.nets:
            return None
        rng = self.rng
        per_layer = gen.max_level >= 2 and self.context == "step" and rng.random() < 0.4
        if len(shape) == 1:
            arg = gen.gen((rng.choice(("n", "m", "k")),), "real", depth)
            spec = f"mlp(in={arg.ty.shape[0]}, out={shape[0]}, width=3, depth=2, init=zero)"
        elif len(shape) == 3 and shape[1:] in (("n", "m"), ("m", "n")) and shape[0] in ("k", 1, 2):
            arg = gen.gen((rng.choice(("k", 1, 2)),) + shape[1:], "real", depth)
            spec = f"cnn(in={arg.ty.shape[0]}, out={shape[0]}, width=2, depth=2, kernel=3, init=zero)"
        else:
            return None
        name = self.fresh("G")
        sizes = tuple(s for s in (arg.ty.shape[0], shape[0]) if isinstance(s, str))
        binder = self.data(sizes, "real", "normal")  # a sub-network's sizes must be known at construction
        self.decls[name] = Decl(name, "net", Ty(shape, "real"), 2 if per_layer else 1, spec_type=spec,
                                annotations="learned per_layer" if per_layer else "learned shared",
                                per_layer=per_layer, init=binder)
        level = max(arg.level, 2 if per_layer else 1)
        return Expr("netcall", Ty(shape, "real", arg.ty.batched), (arg,), (name,), level)


@dataclass
class Program:
    pool: Pool
    step: list
    final: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    layers: int = 2
    name: str = "gen"

    # ------------------------------------------------------------------ spec text
    def used_decls(self) -> list[Decl]:
        """Declarations reachable from the statements and outputs, in dependency-respecting order."""
        decls = self.pool.decls
        seen: set[str] = set()

        def visit_expr(e: Expr):
            for x in e.walk():
                if x.op in ("leaf", "apply", "netcall", "prev", "grad", "history_sum"):
                    visit_name(x.static[0])

        def visit_name(name):
            if name in seen or name not in decls:
                return
            seen.add(name)
            if decls[name].init is not None:
                visit_expr(decls[name].init)

        def visit_block(stmts):
            for s in stmts:
                if s.kind == "repeat":
                    visit_block(s.body)
                else:
                    visit_name(s.target)
                    visit_expr(s.expr)

        visit_block(self.step)
        visit_block(self.final)
        for o in self.outputs:
            visit_name(o)
        order = list(decls)
        used = [decls[n] for n in order if n in seen]
        data = [d for d in used if d.kind in ("data", "operator")]
        if "complex_data_before_real" in self.pool.banned:
            data.sort(key=lambda d: d.ty.dtype == "complex")
        rest = sorted((d for d in used if d.kind not in ("data", "operator")), key=lambda d: KINDS_ORDER.index(d.kind))
        return data + rest

    def dims(self) -> list[str]:
        found = set()
        for d in self.used_decls():
            found.update(s for s in d.ty.shape if isinstance(s, str))
        for e in self.all_exprs():
            for x in e.walk():
                found.update(v for v in x.ty.shape if isinstance(v, str))
                if x.op not in ("leaf", "apply", "netcall", "prev", "num", "layer", "grad", "history_sum"):
                    found.update(v for v in x.static if isinstance(v, str) and v in SIZES)
        found |= {s[-1] for s in found if "*" in s}  # 2*n uses n
        return [d for d in PLAIN_DIMS if d in found]

    def batched_names(self) -> set:
        """Names whose values carry a batch axis where the outputs are read: inputs and what depends on them,
        as the checker types them (docs/language.md, States).  A state is batched if its initial value or any
        update depends on a batched value (it carries over the layers: to a fixpoint); a `let` of the step or
        the final stage is batched from an assignment that depends on a batched value to the next one that does
        not (flow-sensitive: `let u = A` at the top of the step is shared by the batch even where a later
        `u = y` makes it per sample, fuzz statements 1061876)."""
        decls = self.used_decls()
        states = {d.name for d in decls if d.kind == "state"}
        batched = {d.name for d in decls if d.kind == "input"}
        while True:
            before = set(batched)
            for d in decls:
                if d.kind in ("let", "state") and d.init is not None and dependencies(d.init) & batched:
                    batched.add(d.name)
            current = set(batched)
            flow_batched(self.step, current, batched, states)
            flow_batched(self.final, current, batched, states)
            if batched == before:
                return current | batched

    def all_exprs(self):
        def block(stmts):
            for s in stmts:
                if s.kind == "repeat":
                    yield from block(s.body)
                else:
                    yield s.expr
        yield from block(self.step)
        yield from block(self.final)
        for d in self.used_decls():
            if d.init is not None:
                yield d.init

    def binders(self) -> list[str]:
        """Dims that need a data vector to bind them: every dim must be the size of some data or input
        axis, and (while the bug is known) the dims of a composite data axis such as [2*n] must be
        bound by data."""
        bound, by_data = self.bound_dims(), self.bound_dims(("data",))
        composite = {s[-1] for d in self.used_decls() if d.kind == "data" for s in d.ty.shape
                     if isinstance(s, str) and "*" in s}
        late = "composite_data_axis_bound_by_input" in self.pool.banned
        return [d for d in self.dims() if d not in bound or (late and d in composite and d not in by_data)]

    def bound_dims(self, kinds=("data", "input", "operator")) -> set:
        bound = set()
        for d in self.used_decls():
            if d.kind in kinds:
                bound.update(s for s in d.ty.shape if s in PLAIN_DIMS)  # 2*n binds nothing
        return bound

    def render(self, minimal: bool = True) -> str:
        lines = [f"spec {self.name}"]
        dims = self.dims()
        if dims:
            lines.append("dims " + ", ".join(dims))
        for d in self.used_decls():
            lines.append(_decl_text(d, minimal))
        for dim in self.binders():
            lines.insert(2, f"data dim_{dim} : real[{dim}]")
        lines.append(f"layers {self.layers}")
        lines.append("step:")
        lines += _block_text(self.step, 1, minimal)
        if self.final:
            lines.append("final:")
            lines += _block_text(self.final, 1, minimal)
        lines.append("output " + ", ".join(self.outputs))
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ numpy meaning
    def values(self, seed: int, batch: int) -> tuple[dict, dict, dict]:
        """Random constructor data, forward inputs [batch, ...] and constructor dims (numpy)."""
        rng = np.random.default_rng(seed)
        data, inputs = {}, {}
        for d in self.used_decls():
            if d.kind in ("data", "input"):
                shape = ((batch,) if d.kind == "input" else ()) + size(d.ty.shape)
                data_or_inputs = data if d.kind == "data" else inputs
                data_or_inputs[d.name] = _random(rng, shape, d.ty.dtype, d.values)
            elif d.kind == "operator":
                data[d.name] = rng.standard_normal((int(np.prod(size(d.ty.shape[:_out_rank(d)]))),
                                                    int(np.prod(size(d.ty.shape[_out_rank(d):])))))
        for dim in self.binders():
            data[f"dim_{dim}"] = rng.standard_normal(SIZES[dim])
        by_data = self.bound_dims(("data",)) | set(self.binders())
        extra_dims = {dim: SIZES[dim] for dim in self.bound_dims() if dim not in by_data}
        return data, inputs, extra_dims

    def reference(self, data: dict, sample: dict) -> list:
        """The outputs on one sample (numpy), by direct interpretation of the program."""
        with np.errstate(all="ignore"):  # inf / nan references are not compared
            return self._reference(data, sample)

    def _reference(self, data: dict, sample: dict) -> list:
        env = dict(data)
        per_layer = {}
        for d in self.used_decls():
            if d.kind == "hyper":
                env[d.name] = d.number
            elif d.kind == "input":
                env[d.name] = sample[d.name]
            elif d.kind == "param" and d.per_layer:
                per_layer[d.name] = [_fill(evaluate_or_mark(d.init, dict(env, layer=i)), d.ty)
                                     for i in range(self.layers)]
            elif d.kind in ("param", "state"):
                env[d.name] = _fill(evaluate_or_mark(d.init, env), d.ty)
            elif d.kind == "let":
                env[d.name] = evaluate_or_mark(d.init, env)
        states = [d.name for d in self.used_decls() if d.kind == "state"]
        for layer in range(self.layers):
            env["layer"] = layer
            env.update({name: values[layer] for name, values in per_layer.items()})
            env.update({"prev:" + s: env[s] for s in states})
            for s in states:
                env.setdefault("history:" + s, []).append(env[s])
            self._run(self.step, env)
        env.pop("layer")
        self._run(self.final, env)
        return [env[o] for o in self.outputs]

    def _run(self, stmts, env):
        for s in stmts:
            if s.kind == "repeat":
                for _ in range(s.count):
                    self._run(s.body, env)
            else:
                decl = self.pool.decls.get(s.target)
                ty = decl.ty if decl is not None else self.pool.local_types[s.target]
                env[s.target] = _fill(evaluate_or_mark(s.expr, env), ty)


def flow_batched(stmts, current: set, batched: set, states: set) -> None:
    """Walk `stmts` in order: `current` the names batched at this point, `batched` the states batched anywhere."""
    for s in stmts:
        if s.kind == "repeat":
            for _ in range(min(s.count, len(states) + 8)):  # each pass, until what is batched stops changing
                before = set(current)
                flow_batched(s.body, current, batched, states)
                if current == before:
                    break
            continue
        if dependencies(s.expr) & current or s.target in batched:
            current.add(s.target)
            if s.target in states:
                batched.add(s.target)
        else:
            current.discard(s.target)


def assignments(stmts):
    for s in stmts:
        if s.kind == "repeat":
            yield from assignments(s.body)
        else:
            yield s.target, s.expr


def _out_rank(d: Decl) -> int:
    return len(d.spec_type.split("<-")[0].split(","))


def _random(rng, shape, dtype, values):
    if values == "positive":
        return rng.uniform(0.5, 2.0, shape)
    if values == "increasing":  # knots of `pwl`: sorted, at least 0.1 apart
        return np.cumsum(rng.uniform(0.1, 1.0, shape), axis=-1) - 0.5 * shape[-1]
    if values == "wellcond":
        base = 3 * np.eye(shape[-1]) + 0.3 * rng.standard_normal(shape)
        return base + (0.3j * rng.standard_normal(shape) if dtype == "complex" else 0)
    x = rng.standard_normal(shape)
    return x + 1j * rng.standard_normal(shape) if dtype == "complex" else x


def _fill(value, ty: Ty):
    """A value assigned to a declared name: broadcast to its shape (a scalar fills a state)."""
    if value is AMBIGUOUS:
        return value
    out = np.broadcast_to(np.asarray(value), size(ty.shape))
    return out.astype(complex if ty.dtype == "complex" else float)


def _type_text(ty: Ty) -> str:
    dims = ", ".join(map(str, ty.shape))
    return f"{ty.dtype}[{dims}]" if ty.shape else ty.dtype


def _decl_text(d: Decl, minimal: bool) -> str:
    if d.kind == "data":
        return f"data {d.name} : {_type_text(d.ty)}"
    if d.kind == "operator":
        return f"data {d.name} : {d.spec_type}"
    if d.kind == "hyper":
        return f"hyper {d.name} : int = {d.number}" if d.ty.dtype == "int" else f"hyper {d.name} = {d.number}"
    if d.kind == "input":
        return f"input {d.name} : {_type_text(d.ty)}"
    if d.kind == "param":
        return f"param {d.name} : {_type_text(d.ty)} = {text(d.init, minimal)}  {d.annotations}".rstrip()
    if d.kind == "net":
        return f"net {d.name} : {d.spec_type}  {d.annotations}"
    if d.kind == "let":
        return f"let {d.name} = {text(d.init, minimal)}"
    return f"state {d.name} : {_type_text(d.ty)} = {text(d.init, minimal)}"


def _block_text(stmts, depth: int, minimal: bool) -> list[str]:
    pad = "    " * depth
    lines = []
    for s in stmts:
        if s.kind == "repeat":
            lines.append(f"{pad}repeat {s.count}:")
            lines += _block_text(s.body, depth + 1, minimal)
        else:
            lines.append(f"{pad}{'let ' if s.kind == 'let' else ''}{s.target} = {text(s.expr, minimal)}")
    return lines


