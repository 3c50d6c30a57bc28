"""Typed intermediate representation produced by the checker.

Every expression becomes a `Node` carrying its type and its *level*, the
outermost place where its value can be computed:

    CONST   (0)  once, when the module is constructed (depends on data/hypers)
    FORWARD (1)  once per forward call, before the layer loop (inputs, shared params)
    LAYER   (2)  inside the layer loop (states, per-layer params, `layer`)
    LAYER+d      inside d nested `repeat` loops

The planner hoists every sub-expression to its level; the emitter prints it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .diagnostics import Span
from .types import Type

CONST, FORWARD, LAYER = 0, 1, 2
LEVEL_NAMES = {CONST: "constant", FORWARD: "layer-invariant", LAYER: "per-layer"}


# Node attributes that describe a value for messages and `explain` without changing what it computes: the only
# ones that common-subexpression elimination ignores.
DESCRIPTIVE_ATTRS = frozenset({"of", "grad_of", "grad_path"})


def _hashable(value):
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


@dataclass(eq=False)
class Node:
    op: str  # a registry operator name, or one of: var, number, dim, index, set_index, list
    args: list[Node]
    type: Type
    span: Span
    level: int
    attrs: dict = field(default_factory=dict)
    py: bool = False  # evaluates to a Python number in generated code
    static: object = None  # compile-time value: int literal or DimExpr

    @property
    def key(self) -> tuple:
        """Structural identity, used for common-subexpression elimination."""
        k = self.__dict__.get("_key")
        if k is None:
            # every attribute but the descriptive ones: `K(x)` and `K.H(x)` differ only in `adjoint`, and a
            # list of attributes that count let such a difference merge two values (fuzz expressions 1079809)
            attrs = tuple(sorted((a, _hashable(v)) for a, v in self.attrs.items() if a not in DESCRIPTIVE_ATTRS
                                 and not (a == "statics" and all(x is None for x in v))))  # (None, ...): none
            k = (self.op, attrs, tuple(a.key for a in self.args))
            self.__dict__["_key"] = k
        return k

    def walk(self):
        yield self
        for a in self.args:
            yield from a.walk()


@dataclass
class Assign:
    target: str
    kind: str  # state | local
    value: Node
    span: Span
    depth: int  # LAYER for the step body, more inside repeat blocks; FORWARD in final
    version: int = 0  # the version of `target` this assignment defines


@dataclass
class Repeat:
    count: Node
    body: list
    span: Span
    depth: int  # level of the statements inside
    carried: list[str] = field(default_factory=list)  # names assigned in the body
    index: str | None = None  # `repeat N as j:` the iteration index (a Python int at level `depth`)
    backward: bool = False  # `repeat N as j backward:` runs j = N-1 down to 0


@dataclass
class Param:
    name: str
    type: Type  # one layer's shape
    init: Node
    learned: bool
    per_layer: bool
    constraint: str | None  # positive | nonnegative | range | unit_columns | zero_mean | unit_norm | "zero_mean unit_norm"
    constraint_args: tuple = ()
    span: Span = None  # type: ignore[assignment]
    line: int = 0
    uses_layer: bool = False
    annotation_text: str = ""


@dataclass
class State:
    name: str
    type: Type
    init: Node
    span: Span
    line: int
    assigned: bool = False


@dataclass
class Let:
    name: str
    value: Node
    span: Span
    line: int

    @property
    def level(self) -> int:
        return self.value.level


@dataclass
class Hyper:
    name: str
    dtype: str
    default: float | int
    span: Span
    line: int


@dataclass
class Data:
    name: str
    type: Type
    span: Span
    line: int


@dataclass
class Input:
    name: str
    type: Type
    span: Span
    line: int


@dataclass
class Net:
    """A learned sub-network declared with `net NAME : kind(k=v, ...)`."""

    name: str
    kind: str  # cnn | mlp | convgru | dncnn | unet
    options: dict  # constructor keyword -> a size (DimExpr) or, for `init`, the mode ("zero" | "default")
    in_size: object  # DimExpr: channels (cnn) or features (mlp)
    out_size: object
    per_layer: bool
    learned: bool
    span: Span
    line: int
    functional: tuple = ()  # `functional(nw)` / `functional(n1, n2)`: the dims bound to its weight counts


# Sub-network kinds that map images [in, h, w] (channels first), with the noun used in messages
IMAGE_NETS = {"cnn": "CNN", "dncnn": "DnCNN", "unet": "U-Net"}


@dataclass
class Noise:
    """`noise NAME : real[...] ~ normal | uniform | rademacher [per_layer]`: drawn per sample, once per
    forward call or afresh in every layer, from the module's generator unless given to forward."""

    name: str
    type: Type  # one draw's shape (batched)
    distribution: str
    per_layer: bool
    span: Span
    line: int


@dataclass
class Require:
    """`require COND, "message"`: checked when the module is constructed (COND is a constant)."""

    condition: Node
    message: str
    names: list[str]  # the data and hyperparameters the condition reads (named in the error)
    span: Span
    line: int


@dataclass
class Program:
    name: str
    title: str
    source_path: str
    source_text: str
    comments: list[str]
    dims: list[str]
    data_dims: dict[str, tuple[str, int]]  # dim -> (data name, axis) that binds it
    input_dims: dict[str, tuple[str, int]]  # dim -> (input name, logical axis)
    data: list[Data]
    hypers: list[Hyper]
    inputs: list[Input]
    lets: list[Let]
    params: list[Param]
    states: list[State]
    layers: int
    step: list
    final: list
    outputs: list[str]
    prev_used: list[str] = field(default_factory=list)
    history_used: list[str] = field(default_factory=list)  # states whose earlier values `history_sum` reads
    nets: list = field(default_factory=list)
    locals_types: dict[str, Type] = field(default_factory=dict)
    requires: list[Require] = field(default_factory=list)
    python_lets: set = field(default_factory=set)  # constant `let`s the plan keeps as Python numbers
    dim_minimums: dict = field(default_factory=dict)  # dim -> (least size, why): an index needs it (check/bounds.py)
    dim_relations: list = field(default_factory=list)  # (size terms, const, index terms, const, why): size > index
    noises: list = field(default_factory=list)  # Noise declarations
    until: Node | None = None  # `step until COND:`: the per-sample stopping condition
    loop_indices: list[str] = field(default_factory=list)  # the indices of `repeat N as j:` loops
    layers_dim: str | None = None  # `layers T` with T a dim: the depth is that size, known per call
    size_hypers: list[str] = field(default_factory=list)  # `int` hyperparameters used as sizes (`real[m, n]`)
    functions: list[tuple[str, int]] = field(default_factory=list)  # `fn` (name, line): inlined, listed by explain
    net_dims: dict = field(default_factory=dict)  # dim -> (functional net, weight group): bound at construction

    def line(self, number: int) -> str:
        lines = self.source_text.split("\n")
        return lines[number - 1].strip() if 1 <= number <= len(lines) else ""
