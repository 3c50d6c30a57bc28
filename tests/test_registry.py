"""The operator registry (compiler/operators/) is the single source of every operator:

* each entry's `runtime` kernel exists in unroll.runtime and is the one (and only) kernel its
  emission calls; unroll.runtime exports every kernel of runtime/ops.py without a list of its own;
* each entry carries the documentation the docs tables are generated from;
* the default batching rule (batched arguments of lower rank are lifted before the emission sees
  them) and the entries that opt out agree with per-sample evaluation: every table example, run on
  a batch, equals the same example run on each sample alone.
"""

from __future__ import annotations

import inspect
import re
import types

import numpy as np
import pytest
import torch
from unroll import runtime as rt
from unroll.compiler.ast import DimExpr
from unroll.compiler.driver import check_source, compile_source, make_options
from unroll.compiler.opdocs import EXAMPLE_ENV
from unroll.compiler.operators import OPERATORS, Arg, Operator
from unroll.runtime import ops

ENTRIES = sorted(OPERATORS)


def _find(node, name):
    """The first node of the operator `name` in an IR tree (depth first)."""
    if node.op == name:
        return node
    for a in node.args:
        found = _find(a, name)
        if found is not None:
            return found
    return None


def _emitted_for_example(op: Operator) -> str:
    """The entry's emission for the node of its docs example, with placeholder operand codes."""
    program = check_source(EXAMPLE_ENV.format(op.example), "examples.unroll")
    node = _find(program.step[0].value, op.name)
    assert node is not None, f"the example of `{op.name}` does not use it"
    statics = node.attrs.get("statics", ())
    args = []
    for i, a in enumerate(node.args):
        static = statics[i] if i < len(statics) else None
        code = static.python() if isinstance(static, DimExpr) else f"arg{i}"
        args.append(Arg(code, a.type, py=a.py or isinstance(static, DimExpr), static=static))
    return op.emit(args, node.type).code


@pytest.mark.parametrize("name", ENTRIES)
def test_the_kernel_an_entry_names_exists_and_is_what_its_emission_calls(name):
    op = OPERATORS[name]
    called = set(re.findall(r"\brt\.(\w+)\(", _emitted_for_example(op)))
    assert called == ({op.runtime} if op.runtime else set()), f"`{name}` calls {called}, names {op.runtime!r}"
    if op.runtime:
        assert callable(getattr(rt, op.runtime, None)), f"unroll.runtime has no kernel {op.runtime!r}"


def test_the_runtime_exports_every_kernel_of_ops_without_a_list_of_its_own():
    kernels = [name for name, f in vars(ops).items()
               if inspect.isfunction(f) and f.__module__ == ops.__name__ and not name.startswith("_")]
    assert sorted(kernels) == sorted(ops.__all__)
    assert len(kernels) >= 30
    for name in kernels:
        assert getattr(rt, name) is getattr(ops, name)
        assert name in rt.__all__
    source = inspect.getsource(rt)
    assert "soft," not in source and '"soft"' not in source  # no hand-maintained kernel list


@pytest.mark.parametrize("name", ENTRIES)
def test_every_entry_is_documented(name):
    op = OPERATORS[name]
    for field in ("doc", "shape", "dtype", "gradient", "example", "result"):
        assert getattr(op, field), f"`{name}` has no {field}"
    written = op.extra.get("keyword_form_of", op.name)  # `max(v, axis=k)` is the entry max_axis
    assert op.usage and all(written in form or "(" not in form for form in op.usage)
    assert op.reference is not None, f"`{name}` has no numpy reference"


def test_an_entry_needs_an_emission_or_a_kernel():
    with pytest.raises(ValueError, match="emission or a runtime kernel"):
        Operator("nothing", 1, 1, lambda t, a: t[0], None, lambda a: "", "no way to emit it")


# --------------------------------------------------------------------------- batching
_SHARED = """dims n, m, h, w, C, T, F, N
data A : real[n, m]
data Ac : complex[n, m]
data B : real[m, m]
data d : real[C, 3, 3]
data W : real[C, 9]
hyper lam = 0.1
hyper p = 0.5
hyper k : int = 2
input y : real[n]
input img : real[h, w]
input fine : real[2*h, 2*w]
input sig : real[T]
input S : complex[F, N]
"""

# x and z: constant states (unbatched, not zero), or inputs (batched)
CONSTANT_XZ = """spec batching "examples with unbatched x and z"
{shared}data x0 : real[m]
data z0 : complex[m]
state x : real[m] = x0
state z : complex[m] = z0
layers 1
step:
    x = x
final:
    let e = {example}
output e
"""
BATCHED_XZ = """spec batching "examples with batched x and z"
{shared}input x : real[m]
input z : complex[m]
state s : real = 0
layers 1
step:
    s = s
final:
    let e = {example}
output e
"""


def _module(template: str, example: str):
    src = compile_source(template.format(shared=_SHARED, example=example), "batching.unroll", make_options())
    namespace = types.ModuleType("unroll_batching_generated")
    exec(compile(src, "<generated>", "exec"), namespace.__dict__)  # noqa: S102 - importing compiler output
    (cls,) = [v for v in vars(namespace).values()
              if isinstance(v, type) and issubclass(v, rt.UnrolledModule) and v is not rt.UnrolledModule]
    return cls


# beyond the docs examples: batched arguments of lower rank than the result (the default rule lifts
# them), batched thresholds, and the entries that handle the batch axis themselves
BROADCASTING = [
    "x + B", "B * x - x", "x / (2 + B)", "abs(B) ^ x", "where(B < x, B, 0)", "clamp(B, -abs(x), abs(x))",
    "soft(B, abs(x))", "soft(B, abs(sum(x)))", "hard(B, abs(x))", "soft_nonneg(B, abs(x))",
    "ss_soft(B, abs(sum(x)), p)", "max(B, x)", "min(x, B)", "complex(B, x)", "svt(B, abs(sum(x)))",
    "row_shrink(B, abs(sum(x)))", "svt(B + outer(x, x), 0.1)", "conv2(d, img * sum(x))", "x @ (y @ A)",
    "dot(x, y @ A)", "B @ x + x @ B", "outer(x, y)", "onehot(argmax(x), m)", "patches(img, 3)", "grad2(img)",
    "reshape(img, h*w)", "dot(outer(x, x), B)", "norm(B * x, 1)", "sum(B + x, 0)",
    "chanmix(W, stack(img, img, img, img, img, img, img, img, img))", "cat(x, B)", "stack(x, y @ A)",
    "solve(B.T @ B + eye(m), x)",
]


def _values(batched_xz: bool):
    rng = np.random.default_rng(7)
    n, m, h, w, C, T, F, batch = 4, 3, 4, 6, 2, 128, 65, 2

    def real(*shape):
        return torch.tensor(rng.standard_normal(shape) + 0.1)  # away from the kinks at 0

    def cplx(*shape):
        return torch.complex(real(*shape), real(*shape))

    data = {"A": real(n, m), "Ac": cplx(n, m), "B": real(m, m), "d": real(C, 3, 3), "W": real(C, 9)}
    inputs = {"y": real(batch, n), "img": real(batch, h, w), "fine": real(batch, 2 * h, 2 * w),
              "sig": real(batch, T), "S": cplx(batch, F, 1 + T // 64)}
    if batched_xz:
        inputs.update(x=real(batch, m), z=cplx(batch, m))
    else:
        data.update(x0=real(m), z0=cplx(m))
    return data, inputs, batch


SIZES = {"n": 4, "m": 3, "h": 4, "w": 6, "C": 2, "T": 128, "F": 65, "N": 3}


def _size(d: DimExpr) -> int:
    return d.const + sum(c * int(np.prod([SIZES[f] for f in name.split("*")])) for name, c in d.terms)


def _logical_shape(template: str, example: str) -> tuple[int, ...]:
    program = check_source(template.format(shared=_SHARED, example=example), "batching.unroll")
    return tuple(_size(d) for d in program.final[0].value.type.shape)


@pytest.mark.parametrize("batched_xz", [False, True], ids=["x-z-constant", "x-z-batched"])
def test_every_example_on_a_batch_equals_the_example_on_each_sample(one_torch_thread, batched_xz):
    data, inputs, batch = _values(batched_xz)
    template = BATCHED_XZ if batched_xz else CONSTANT_XZ
    wrong = []
    for name, example in [(n, OPERATORS[n].example) for n in ENTRIES] + [("", e) for e in BROADCASTING]:
        shape = _logical_shape(template, example)
        try:
            net = _module(template, example)(**data)
            together = net(**inputs)
            for b in range(batch):
                alone = net(**{k: v[b] for k, v in inputs.items()})
                assert alone.shape == shape, f"shape {tuple(alone.shape)}, declared {shape}"
                got = together[b] if together.dim() > alone.dim() else together
                assert got.shape == shape, f"batched shape {tuple(together.shape)}, declared {shape}"
                assert torch.allclose(got, alone, rtol=1e-12, atol=1e-12), f"sample {b} differs"
        except (AssertionError, RuntimeError) as err:
            wrong.append(f"{name}: {example}: {str(err).splitlines()[0]}")
    assert not wrong, "\n".join(wrong)
