"""The abstract syntax tree of a spec, with source spans on every node."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .diagnostics import Span


# ---------------------------------------------------------------- dimensions
@dataclass(frozen=True)
class DimExpr:
    """A symbolic dimension: integer combination of dim names, e.g. `2*C + 1`.

    Stored canonically as sorted (name, coefficient) terms plus a constant, so
    equal dims compare equal.  A product of names is kept as a single term
    named by its sorted factors, "a*b*c".
    """

    terms: tuple[tuple[str, int], ...] = ()
    const: int = 0

    @staticmethod
    def of(value: int | str | DimExpr) -> DimExpr:
        if isinstance(value, DimExpr):
            return value
        if isinstance(value, int):
            return DimExpr((), value)
        return DimExpr(((value, 1),), 0)

    def __add__(self, other: DimExpr) -> DimExpr:
        acc = dict(self.terms)
        for name, coef in other.terms:
            acc[name] = acc.get(name, 0) + coef
        return DimExpr(tuple(sorted((k, v) for k, v in acc.items() if v)), self.const + other.const)

    def __mul__(self, other: DimExpr) -> DimExpr | None:
        if not self.terms:
            return DimExpr(tuple((k, v * self.const) for k, v in other.terms if v * self.const), self.const * other.const)
        if not other.terms:
            return other * self
        if len(self.terms) == 1 and len(other.terms) == 1 and not self.const and not other.const:
            (a, ca), (b, cb) = self.terms[0], other.terms[0]
            return DimExpr((("*".join(sorted(a.split("*") + b.split("*"))), ca * cb),), 0)  # canonical: k*m*n
        return None

    @property
    def is_int(self) -> bool:
        return not self.terms

    def names(self) -> set[str]:
        out: set[str] = set()
        for name, _ in self.terms:
            out.update(name.split("*"))
        return out

    def __str__(self) -> str:
        parts = []
        for name, coef in self.terms:
            parts.append(name if coef == 1 else f"{coef}*{name}")
        if self.const or not parts:
            parts.append(str(self.const))
        return _joined(parts)

    def python(self) -> str:
        """Python expression computing this dim from local variables of the same names."""
        parts = []
        for name, coef in self.terms:
            prod = " * ".join(name.split("*"))
            parts.append(prod if coef == 1 else f"{coef} * {prod}")
        if self.const or not parts:
            parts.append(str(self.const))
        return _joined(parts)


def _joined(parts: list[str]) -> str:
    """`n + -1` is written `n - 1`."""
    out = parts[0]
    for part in parts[1:]:
        out += f" - {part[1:]}" if part.startswith("-") else f" + {part}"
    return out


# ---------------------------------------------------------------- types (syntax)
@dataclass
class TypeSyntax:
    span: Span
    base: str  # real | complex | int | operator | function
    dims: list[DimExpr] | None = None  # None: scalar
    dim_spans: list[Span] = field(default_factory=list)
    out_dims: list[DimExpr] | None = None  # operator[out <- in]
    args: list[TypeSyntax] | None = None  # function(args) -> result: the argument types
    result: TypeSyntax | None = None  # ... and the result type (its dims are `dims`)


# ---------------------------------------------------------------- expressions
@dataclass
class Expr:
    span: Span


@dataclass
class Number(Expr):
    value: float | int
    text: str


@dataclass
class String(Expr):
    value: str


@dataclass
class Name(Expr):
    name: str


@dataclass
class Unary(Expr):
    op: str  # "-"
    operand: Expr


@dataclass
class Binary(Expr):
    op: str  # + - * / @ ^ < > <= >= == !=
    left: Expr
    right: Expr


@dataclass
class Attribute(Expr):
    value: Expr
    attr: str  # T | H
    attr_span: Span


@dataclass
class Index(Expr):
    value: Expr
    index: Expr


@dataclass
class Range(Expr):
    """`start:stop` inside brackets (either may be absent): one axis of a slice."""

    start: Expr | None
    stop: Expr | None


@dataclass
class Slice(Expr):
    """`x[1:]`, `X[:, 1:]`, `X[0, 1:]`: per axis, from the first, a `Range` or an integer index."""

    value: Expr
    items: list[Expr]


@dataclass
class Keyword:
    name: str
    value: Expr
    span: Span


@dataclass
class Call(Expr):
    func: Expr  # Name, or Attribute (K.H)
    args: list[Expr]
    kwargs: list[Keyword]


@dataclass
class ListExpr(Expr):
    items: list[Expr]


@dataclass
class Inlined(Expr):
    """A call of an expression function (`fn`), inlined: `body` is the function's body with its parameters
    replaced by the call's arguments (None when the call itself was wrong: already reported).  `span` is the
    call's; the body's nodes keep the spans of the `fn` line, the arguments theirs (compiler/functions.py)."""

    name: str
    body: Expr | None
    fn_span: Span  # the whole `fn` declaration


def unwrap_inlined(e: Expr) -> Expr:
    """The expression an inlined call stands for (itself for any other node)."""
    while isinstance(e, Inlined) and e.body is not None:
        e = e.body
    return e


# ---------------------------------------------------------------- statements
@dataclass
class Assign:
    span: Span
    target: str
    target_span: Span
    value: Expr
    index: Expr | None = None  # `X[i] = value`: an indexed write (along the first axis)


@dataclass
class Local:
    span: Span
    target: str
    target_span: Span
    value: Expr


@dataclass
class Repeat:
    span: Span
    count: Expr
    body: list
    index: str | None = None  # `repeat N as j:` names the iteration index
    index_span: Span | None = None
    backward: bool = False  # `repeat N as j backward:` runs j = N-1 down to 0


# ---------------------------------------------------------------- declarations
@dataclass
class Annotation:
    name: str
    span: Span
    args: list[Expr] = field(default_factory=list)


@dataclass
class Decl:
    kind: str  # dim | data | hyper | input | let | state | param | net | require | noise
    name: str
    span: Span  # the name's span
    line_span: Span  # the whole declaration
    type: TypeSyntax | None = None
    value: Expr | None = None
    annotations: list[Annotation] = field(default_factory=list)
    net_kind: str | None = None  # net: cnn | mlp ...; noise: its distribution
    net_args: list = field(default_factory=list)
    message: str | None = None  # require: the text shown when the condition fails


@dataclass
class FnDecl:
    """`fn NAME(a, b) = EXPR`: a pure expression function, inlined at every call (compiler/functions.py)."""

    name: str
    span: Span  # the name's span
    line_span: Span  # the whole declaration
    params: list[tuple[str, Span]]
    body: Expr


@dataclass
class Spec:
    name: str | None = None
    name_span: Span | None = None
    title: str | None = None
    decls: list[Decl] = field(default_factory=list)
    layers: Expr | None = None
    layers_span: Span | None = None
    backward: str | None = None  # the `backward MODE` line: the default backward mode
    backward_span: Span | None = None
    step: list | None = None
    step_span: Span | None = None
    step_until: Expr | None = None  # `step until COND:` (per-sample adaptive depth)
    final: list | None = None
    outputs: list[tuple[str, Span]] = field(default_factory=list)
    output_span: Span | None = None
    comments: list[str] = field(default_factory=list)  # leading comment block (header)
    functions: list[FnDecl] = field(default_factory=list)  # `fn` declarations, in source order


def names_read(e, in_call: bool = False):
    """(Name node, whether it is called) for every name an expression reads; keyword names and attributes
    are not names."""
    if isinstance(e, Name):
        yield e, in_call
    elif isinstance(e, Call):
        yield from names_read(e.func, True)
        for a in e.args:
            yield from names_read(a)
        for k in e.kwargs:
            yield from names_read(k.value)
    elif isinstance(e, Attribute):
        yield from names_read(e.value)
    elif isinstance(e, list):
        for x in e:
            yield from names_read(x)
    elif isinstance(e, Expr):
        for f in fields(e):
            value = getattr(e, f.name)
            if isinstance(value, (list, Expr)):
                yield from names_read(value)
