"""Top-level declarations: hyperparameters, parameters (with their annotations), sub-networks, states,
`require` conditions and the `layers N` line.  Parameters and sub-networks are checked as annotated;
the compile-time options (`--tie`, `--freeze`, ...) are applied later by the schedule pass."""

from __future__ import annotations

import math

from .. import ast, ir
from ..ast import DimExpr
from ..diagnostics import Diagnostic, did_you_mean
from ..types import BOOL, COMPLEX, INT, REAL, Type, broadcast, shape_str
from .expressions import constant_value
from .literals import INT64_MAX, MAX_COUNT
from .names import ALL_FLAGS, FLAGS_CONSTRAINT, FLAGS_TRAIN, FLAGS_TYING, Symbol

# The two filter constraints that may be combined (`zero_mean unit_norm`: TNRD's filters)
FILTER_PAIR = {"zero_mean", "unit_norm"}

# The options of each sub-network kind: spec keyword -> constructor keyword (runtime.make_net).
NET_OPTIONS = {"cnn": {"in": "in_channels", "out": "out_channels", "width": "width", "depth": "depth",
                       "kernel": "kernel", "init": "init"},
               "mlp": {"in": "in_features", "out": "out_features", "width": "width", "depth": "depth",
                       "init": "init"},
               "convgru": {"in": "in_channels", "out": "hidden_channels", "kernel": "kernel", "init": "init"},
               "dncnn": {"in": "in_channels", "out": "out_channels", "width": "width", "depth": "depth",
                         "kernel": "kernel", "init": "init", "lipschitz": "lipschitz", "sigma": "sigma"},
               "unet": {"in": "in_channels", "out": "out_channels", "width": "width", "levels": "levels",
                        "kernel": "kernel", "init": "init"}}


class DeclarationMixin:
    """Checking declarations (a part of `Checker`)."""

    def _require(self, d: ast.Decl) -> ir.Require | None:
        """`require COND, "message"`: a condition on data and hyperparameters, checked at construction."""
        self.context = "require"
        node = self.expr(d.value)
        self.context = "top"
        if node is None:
            return None
        if node.type.dtype != BOOL:
            self.error("a `require` condition must be a comparison", d.value.span,
                       "compare a value with a bound, e.g. `require max(abs(A)) < 10, \"entries of A are bounded\"`")
            return None
        if node.level > ir.CONST:
            self.error("a `require` condition must be known at construction", d.value.span,
                       "use only data, hyperparameters, dims and top-level `let` constants that depend on them")
            return None
        names: list[str] = []

        def collect(n: ir.Node):  # the data and hyperparameters read, through constant `let`s
            for m in n.walk():
                if m.op != "var" or m.attrs["name"] in names:
                    continue
                if m.attrs.get("kind") in ("data", "hyper"):
                    names.append(m.attrs["name"])
                elif m.attrs.get("kind") == "let" and m.attrs["name"] in self._let_values:
                    collect(self._let_values[m.attrs["name"]])

        collect(node)
        message = d.message if d.message is not None else f"requirement `{self._text(d.value.span)}` does not hold"
        return ir.Require(node, message, names, d.line_span, d.line_span.line)

    def _hyper(self, d: ast.Decl):
        dtype = REAL
        if d.type is not None:
            if d.type.base not in (REAL, INT) or d.type.dims:
                self.error("a hyperparameter is a `real` or `int` scalar", d.type.span,
                           "for a tensor that is not trained, declare a parameter with `fixed`, e.g. "
                           f"`param {d.name} : {d.type.base}[...] = ... fixed`" if d.type.dims else
                           "write `hyper NAME = 0.1` (real) or `hyper NAME : int = 3`")
                return None
            dtype = d.type.base
        self.context = "hyper"
        node = self.expr(d.value)
        self.context = "top"
        if node is None:
            return None
        value = constant_value(node)
        if value is None:
            self.error("a hyperparameter default must be a number", d.value.span,
                       f"hyperparameters are plain numbers given to the constructor (`hyper {d.name} = 0.1`); "
                       f"for a value computed from data write `let {d.name} = {self._text(d.value.span)}`")
            return None
        if isinstance(value, complex) or (isinstance(value, float) and not math.isfinite(value)):
            self.error(f"the default of `{d.name}` is not a finite number ({value})", d.value.span,
                       "give a finite real number")
            return None
        if d.type is None and isinstance(value, int) and not isinstance(value, bool):
            dtype = INT
        if dtype == INT and not float(value).is_integer():
            self.error(f"`{d.name}` is an `int` hyperparameter but its default is {value}", d.value.span,
                       f"give a whole number (`hyper {d.name} : int = {int(value)}`) or declare it `real`")
            return None
        value = int(value) if dtype == INT else float(value)
        if dtype == INT and abs(value) > INT64_MAX:  # a size, a count, an index: torch's integers are 64-bit
            self.error(f"the default of the `int` hyperparameter `{d.name}` does not fit a 64-bit integer ({value:.3g})",
                       d.value.span, "an `int` hyperparameter is at most 2^63 - 1 (about 9.2e18) in magnitude; for a "
                       f"large real number declare it `real` (`hyper {d.name} = ...`)")
            return None
        t = Type(dtype)
        if self._declare(Symbol(d.name, "hyper", t, ir.CONST, d.span, py=True,
                                static=value if dtype == INT else None)):
            return ir.Hyper(d.name, dtype, value, d.span, d.line_span.line)
        return None

    def _param(self, d: ast.Decl):
        t = self._type(d.type, "parameter")
        if t is None:
            return None
        learned, per_layer, constraint, cargs = True, False, None, ()
        seen: dict[str, ast.Annotation] = {}
        ok = True
        for a in d.annotations:
            if a.name not in ALL_FLAGS:
                self.error(f"unknown annotation `{a.name}`", a.span,
                           did_you_mean(a.name, ALL_FLAGS) or "annotations: " + ", ".join(ALL_FLAGS))
                ok = False
                continue
            group = next(g for g in (FLAGS_TRAIN, FLAGS_TYING, FLAGS_CONSTRAINT) if a.name in g)
            clash = next((seen[n] for n in group if n in seen and {n, a.name} != FILTER_PAIR), None)
            if clash is not None:
                hint = (f"keep one: a parameter is either {' or '.join(f'`{g}`' for g in group)}"
                        if group is not FLAGS_CONSTRAINT else "a parameter has at most one constraint (the one pair "
                                                              "allowed is `zero_mean unit_norm`); keep one")
                if clash.name == a.name:
                    hint = f"`{a.name}` is given twice; remove one"
                diag = Diagnostic(f"conflicting annotations `{clash.name}` and `{a.name}`", a.span, hint)
                diag.notes.append((f"`{clash.name}` given here", clash.span))
                self.sink.items.append(diag)
                ok = False
                continue
            seen[a.name] = a
            if a.name == "range":
                nodes = [self._const_arg(x) for x in a.args]
                if any(n is None for n in nodes):  # reported already
                    ok = False
                    continue
                vals = [constant_value(n) for n in nodes]
                if len(a.args) != 2 or any(v is None or isinstance(v, complex) for v in vals):
                    self.error("`range` takes two numbers: `range(lo, hi)`", a.span,
                               "the bounds are numbers or arithmetic on numbers, e.g. `range(0, 1)`")
                    ok = False
                    continue
                if not vals[0] < vals[1]:
                    self.error(f"empty range: the lower bound {vals[0]} is not below the upper bound {vals[1]}",
                               a.span, f"write the lower bound first: `range({vals[1]}, {vals[0]})`"
                               if vals[0] > vals[1] else "the bounds must differ")
                    ok = False
                    continue
                constraint, cargs = "range", (float(vals[0]), float(vals[1]))
            elif a.args:
                self.error(f"`{a.name}` takes no arguments", a.span, f"write `{a.name}` without parentheses")
                ok = False
            elif a.name in FLAGS_CONSTRAINT:
                constraint = "zero_mean unit_norm" if constraint in FILTER_PAIR else a.name
            elif a.name == "fixed":
                learned = False
            elif a.name == "per_layer":
                per_layer = True
        if constraint is not None and t.dtype == COMPLEX:
            self.error(f"the constraint `{constraint}` needs a real parameter", d.type.span,
                       "declare the parameter `real[...]`, or drop the constraint")
            ok = False
        if constraint == "unit_columns" and t.rank != 2:
            self.error(f"`unit_columns` needs a matrix parameter, but `{d.name}` is {t}", d.type.span,
                       "it normalises each column to unit norm: declare a `real[p, q]` matrix, or drop it")
            ok = False
        if constraint in FILTER_PAIR | {"zero_mean unit_norm"}:
            if t.rank == 0:
                self.error(f"`{constraint}` needs a vector or a stack of filters, but `{d.name}` is {t}", d.type.span,
                           "it acts on each `p[i]` of a filter bank `real[F, s, s]` (on the whole of a vector)")
                ok = False
            cargs = (max(t.rank - 1, 1),)  # the trailing axes each filter (each p[i]) spans
        self.context = "param"
        self.allow_layer = per_layer
        init = self.expr(d.value)
        self.allow_layer = False
        self.context = "top"
        if init is None:
            return None
        uses_layer = any(n.op == "var" and n.attrs.get("kind") == "layer" for n in init.walk())
        if broadcast(t.shape, init.type.shape) != t.shape:
            hint = "the default must have the declared shape (or broadcast to it)"
            if t.rank == 2 and init.type.shape == tuple(reversed(t.shape)):
                hint = f"the default is the transpose of the declared shape: take `({self._text(d.value.span)}).T`"
            self.error(f"default value of `{d.name}` has shape {shape_str(init.type.shape)}, but the parameter is "
                       f"{t}", d.value.span, hint)
            ok = False
        if init.type.dtype == COMPLEX and t.dtype == REAL:
            self.error(f"complex default for the real parameter `{d.name}`", d.value.span,
                       "declare it `complex[...]` or take `real(...)`")
            ok = False
        if init.type.dtype == BOOL:
            self.error("a parameter default cannot be a comparison", d.value.span,
                       "use the comparison inside `where(cond, a, b)`")
            ok = False
        if not ok:
            return None
        level = ir.LAYER if per_layer else ir.FORWARD
        if self._declare(Symbol(d.name, "param", t, level, d.span, per_layer=per_layer)):
            text = " ".join(a.name if not a.args else self._text(a.span) for a in d.annotations)
            return ir.Param(d.name, t, init, learned, per_layer, constraint, cargs, d.span, d.line_span.line,
                            uses_layer, text)
        return None

    def _net(self, d: ast.Decl):
        """`net NAME : cnn(in=.., out=.., width=32, depth=3, kernel=3, init=zero) learned per_layer`."""
        kinds = NET_OPTIONS
        if d.net_kind not in kinds:
            self.error(f"unknown sub-network kind `{d.net_kind}`", d.value.span,
                       did_you_mean(d.net_kind, kinds) or "kinds: " + ", ".join(f"`{k}`" for k in kinds))
            return None
        allowed = kinds[d.net_kind]
        options: dict[str, DimExpr | str] = {}  # constructor keyword -> a size, or the `init` mode
        sizes: dict[str, DimExpr] = {}
        for arg in d.net_args:
            if not isinstance(arg, ast.Keyword):
                self.error("sub-network options are given by name, e.g. `cnn(in=3, out=5, width=32, depth=3)`",
                           arg.span)
                return None
            if arg.name not in allowed:
                hint = did_you_mean(arg.name, allowed) or "options: " + ", ".join(f"`{k}`" for k in allowed)
                if arg.name in ("lipschitz", "sigma"):
                    hint = f"`{arg.name}=` is an option of the residual denoiser `dncnn` ({hint})"
                self.error(f"`{d.net_kind}` has no option `{arg.name}`", arg.span, hint)
                return None
            if arg.name in ("lipschitz", "sigma"):
                value = self._denoiser_option(arg)
                if value is None:
                    return None
                options[allowed[arg.name]] = value
                continue
            if arg.name == "init":
                if not (isinstance(arg.value, ast.Name) and arg.value.name in ("zero", "default")):
                    self.error("`init` is `zero` (the sub-network starts as the zero map) or `default`",
                               arg.value.span)
                    return None
                options["init"] = arg.value.name
                continue
            value = arg.value
            if isinstance(value, ast.Number) and isinstance(value.value, int) and value.value > 0:
                dim = DimExpr.of(value.value)
            elif isinstance(value, ast.Name) and value.name in self.scope and self.scope[value.name].kind == "dim":
                dim = DimExpr.of(value.name)  # a dim not bound by data is then a constructor argument
            elif isinstance(value, ast.Name) and arg.name not in ("in", "out") and _int_hyper(self.scope, value.name):
                dim = DimExpr.of(value.name)  # `width=w` with `hyper w : int = 64`: read in the constructor
            elif isinstance(value, ast.Binary) and value.op in ("+", "*"):
                # a size expression of data-bound dims and integers, e.g. `in=C+1`
                node = self.expr(value)
                if node is None:
                    return None
                if not isinstance(node.static, (int, DimExpr)) or isinstance(node.static, bool):
                    self.error(f"`{arg.name}` must be a positive integer, a dimension or a sum/product of them",
                               value.span)
                    return None
                dim = DimExpr.of(node.static)
            else:
                extra = "" if arg.name in ("in", "out") else ", a dimension or an `int` hyperparameter"
                hint = "sizes may be sums and products of dims and integers, e.g. `in=C+1`"
                if extra and isinstance(value, ast.Name):
                    hint = f"declare it as an integer: `hyper {value.name} : int = 8`"
                self.error(f"`{arg.name}` must be a positive integer{extra or ' or a dimension'}", value.span, hint)
                return None
            if arg.name == "kernel" and not (dim.is_int and dim.const % 2 == 1):
                self.error(f"a `{d.net_kind}` kernel size must be an odd integer, got `{self._text(value.span)}`",
                           value.span, "the convolutions keep the image size ('same' padding) only with odd "
                           "kernels: use 3, 5 or 7")
                return None
            sizes[arg.name] = dim
            options[allowed[arg.name]] = dim
        if d.net_kind == "dncnn":
            sizes.setdefault("out", sizes.get("in"))
            if "in" in sizes and sizes["out"] != sizes["in"]:
                out_arg = next(a for a in d.net_args if a.name == "out")
                self.error("a `dncnn` gives x - R(x): `out` must equal `in`", out_arg.value.span,
                           "leave `out` out (it is `in`), or use a `cnn` for a map between different channels")
                return None
            options.pop("out_channels", None)
        for required in ("in", "out"):
            if required not in sizes:
                self.error(f"`{d.net_kind}` needs `{required}=`", d.value.span,
                           f"for example `{d.net_kind}(in=3, out=5)`")
                return None
        learned, per_layer, functional = True, False, None
        for a in d.annotations:
            if a.name == "functional":  # weights as a value (check/functional.py)
                functional = a
            elif a.name in ("learned", "fixed"):
                learned = a.name == "learned"
            elif a.name in ("shared", "per_layer"):
                per_layer = a.name == "per_layer"
            else:
                self.error(f"a sub-network takes `learned`/`fixed` and `shared`/`per_layer`, not `{a.name}`", a.span)
                return None
        weight_dims = ()
        if functional is not None:
            weight_dims = self._functional_dims(d, functional, sizes, per_layer)
            if weight_dims is None:
                return None
            learned = False  # no parameters: the weights are a value of the algorithm
        level = ir.LAYER if per_layer else ir.FORWARD
        if self._declare(Symbol(d.name, "net", Type("net"), level, d.span, per_layer=per_layer)):
            net = ir.Net(d.name, d.net_kind, options, sizes["in"], sizes["out"], per_layer, learned, d.span,
                         d.line_span.line, weight_dims)
            self._net_info[d.name] = net
            for group, dim in enumerate(weight_dims):
                self.net_dims[dim] = (d.name, group)
            return net
        return None

    def _denoiser_option(self, arg: ast.Keyword):
        """`lipschitz=L` (a positive number or a real hyperparameter: the constructor keyword's value) and
        `sigma=input` (the noise level is a second argument of the call) of a `dncnn`; None after an error."""
        value = arg.value
        if arg.name == "sigma":
            if isinstance(value, ast.Name) and value.name == "input":
                return "input"
            self.error("`sigma` is `input`: the denoiser is conditioned on the noise level, called `D(x, sigma)`",
                       value.span)
            return None
        if isinstance(value, ast.Number) and not isinstance(value.value, bool) and value.value > 0:
            return float(value.value)
        sym = self.scope.get(value.name) if isinstance(value, ast.Name) else None
        if sym is not None and sym.kind == "hyper" and sym.type is not None and sym.type.dtype in (REAL, INT):
            return DimExpr.of(value.name)  # read in the constructor, which checks that it is positive
        self.error("`lipschitz` must be a positive number or a real hyperparameter", value.span,
                   "the bound on the Lipschitz constant of R in D(x) = x - R(x), e.g. `lipschitz=0.9`")
        return None

    def _const_arg(self, e: ast.Expr):
        saved = self.context
        self.context = "hyper"
        node = self.expr(e)
        self.context = saved
        return node

    def _state(self, d: ast.Decl):
        t = self._type(d.type, "state", allow_int=True)
        if t is None:
            return None
        self.context = "state"
        init = self.expr(d.value)
        self.context = "top"
        if init is None:
            return None
        if broadcast(t.shape, init.type.shape) != t.shape:
            self.error(f"initial value of `{d.name}` has shape {shape_str(init.type.shape)}, but the state is {t}",
                       d.value.span, "the initial value must have the state's shape (or broadcast to it, like `0`)")
            return None
        if init.type.dtype == COMPLEX and t.dtype == REAL:
            self.error(f"complex initial value for the real state `{d.name}`", d.value.span,
                       "declare the state `complex[...]`, or take `real(...)`/`abs(...)`")
            return None
        if init.type.batched:
            self.batched_states.add(d.name)
        if self._declare(Symbol(d.name, "state", t, max(init.level, ir.FORWARD), d.span)):
            return ir.State(d.name, t, init, d.span, d.line_span.line)
        return None

    def _layers(self) -> int:
        spec = self.spec
        if self._layers_option() is not None:
            return self._layers_option()
        if spec.layers is None:
            if spec.step is not None:
                where = self._code_line(spec.step_span.line)
                hint = "add the default depth on a line before `step:`, e.g. `layers 10` (`--layers N` overrides it)"
            else:
                where = self._code_line()
                hint = "give the default depth, e.g. `layers 10` (`--layers N` overrides it)"
            self.error("missing `layers N` line", where, hint)
            return 1
        if "num_layers" in _names_in(spec.layers):
            self.error("`layers` cannot use `num_layers`: `num_layers` is the depth this line defines",
                       spec.layers.span, "write the number of layers, e.g. `layers 10`")
            return 1
        node = self.expr(spec.layers)
        if node is None:
            return 1
        self.layers_dim = self._layers_from_dim(node, spec.layers.span)
        if self.layers_dim is not None:
            return 1  # the depth is a size known per call (`layers T`); 1 stands for it in `num_layers`
        value = constant_value(node)
        if value is None or isinstance(value, bool) or not isinstance(value, int):
            got = f", got {value}" if value is not None else ""
            self.error(f"`layers` needs a positive integer{got}", spec.layers.span,
                       "the number of layers is a whole number written in the spec, e.g. `layers 10`, or a dim "
                       "(`layers T`: the size of an input axis); `--layers N` overrides it when compiling")
            return 1
        if value <= 0:
            self.error(f"`layers` must be positive, got {value}", spec.layers.span,
                       "an unrolled network has at least one layer, e.g. `layers 10`")
            return 1
        if value > MAX_COUNT:
            self.error(f"`layers` is at most {MAX_COUNT:,}, got {value:.3g}", spec.layers.span,
                       "for more iterations run the network on its own output (or `monitor` a long run)")
            return 1
        return value


def net_size_names(d: ast.Decl) -> set[str]:
    """The names the size options of a `net` declaration use (its dims are needed at construction)."""
    return {n for arg in d.net_args if isinstance(arg, ast.Keyword) and arg.name != "init"
            for n in _names_in(arg.value)}


def _names_in(e: ast.Expr) -> list[str]:
    """The names a size expression (`C + 1`, `2*n`) uses."""
    if isinstance(e, ast.Name):
        return [e.name]
    if isinstance(e, ast.Binary):
        return _names_in(e.left) + _names_in(e.right)
    if isinstance(e, ast.Unary):
        return _names_in(e.operand)
    return []


def _int_hyper(scope: dict, name: str) -> bool:
    """`name` is an `int` hyperparameter (a sub-network's width, depth or kernel may be one)."""
    sym = scope.get(name)
    return sym is not None and sym.kind == "hyper" and sym.type is not None and sym.type.dtype == INT
