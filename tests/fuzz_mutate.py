"""Token-level mutation fuzzing of the compiler and the modules it generates (tests/test_fuzz.py,
benchmarks/fuzz.py), next to the well-typed generators of tests/specgen.py.

* Seeds: the shipped specs (dsl_specs/*.unroll) and the manual's examples (the ```unroll blocks of
  docs/language.md).
* `mutant(seed)`: one seed spec with 1 to 3 token-level mutations (a name for another name of the spec, a
  number for another number, delete, duplicate, swap neighbours, replace by a token of the corpus or a
  hostile token, insert), deterministic in `seed`.
* `HOSTILE`: a corpus of hostile specs (huge literals, literal arithmetic that overflows or divides by zero,
  deep nesting, unicode and control characters, reserved names, bad indices, masks where numbers are needed).
* `run_case(text)`: the rule every case must keep.  Compiling (and `unrollc explain`'s and `unrollc graph`'s
  rendering of an accepted spec) either succeeds or raises a CompileError whose report starts
  `path:line:col: error: ` (or `path: error: ` for a spec without lines to point at); never another
  exception or a hang.  An accepted spec is built on random data of its declared shapes (small dims,
  float64) and run on a batch of 2: construction and forward either work or raise a TypeError/ValueError that
  starts by naming the argument (`A: ...`, `Net: ...`); never another exception.

Each failure is an `Outcome` whose `signature` groups cases by stage and message without numbers and names.
"""

from __future__ import annotations

import inspect
import linecache
import math
import random
import re
import signal
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from unroll.compiler import CompileError
from unroll.compiler.driver import VERSION, check_source
from unroll.compiler.emitter import emit
from unroll.compiler.explain import explain
from unroll.compiler.graph import build_graph, to_dot
from unroll.runtime import UnrolledModule

ROOT = Path(__file__).resolve().parent.parent
TOKEN = re.compile(r"#[^\n]*|\"[^\"\n]*\"|[0-9]+\.?[0-9]*(?:e[+-]?[0-9]+)?|[A-Za-z_][A-Za-z0-9_]*|<-|<=|>=|==|!="
                   r"|\n|[ \t]+|.", re.DOTALL)
HOSTILE_TOKENS = [
    "2^2^40", "10^400", "1e308*10", "1/0", "0^-1", "(-1)^0.5", "2.0^1024", "9" * 400, "1e-400", "-0", "0",
    "((((((((((x))))))))))", "state_batched", "TypeError", "self", "torch", "rt", "__init__", "_x", "dims",
    "layer", "num_layers", "x[-1]", "x[99]", "onehot(n, n)", "y > 0", "imag(y)", "é", "λ", "\u200b", "\x00",
    "\x1b[31m", "\t", "\r", "\ufeff", "'", '"', "`", "\\", ";", ":", "->", "<-", "@@", "^^", "[", "]", "(", ")",
]
SIZES = (2, 3)
LAYERS_CAP = 64  # an accepted mutant with more layers is built at this depth (`num_layers` shapes change)


@lru_cache(maxsize=1)
def seeds() -> tuple[tuple[str, str], ...]:
    """(name, text) of the shipped specs and of the manual's ```unroll examples."""
    out = [(p.stem, p.read_text()) for p in sorted((ROOT / "dsl_specs").glob("*.unroll"))]
    manual = (ROOT / "docs" / "language.md").read_text()
    for i, block in enumerate(re.findall(r"```unroll\n(.*?)```", manual, re.DOTALL)):
        out.append((f"language.md#{i}", block))
    return tuple(out)


@lru_cache(maxsize=1)
def vocabulary() -> tuple[str, ...]:
    words = set()
    for _, text in seeds():
        words.update(t for t in TOKEN.findall(text) if t.strip() and not t.startswith("#"))
    return tuple(sorted(words))


NUMBERS = ("0", "1", "2", "3", "0.5", "1e-3", "100", "-1", "1e300", "2^2^40", "1/0", "num_layers")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def mutate(text: str, rng: random.Random, count: int) -> str:
    """`count` token-level mutations; most keep the spec close to valid (a name for another name of the same
    spec, a number for another number) so that accepted mutants reach the generated module."""
    tokens = TOKEN.findall(text)
    solid = [i for i, t in enumerate(tokens) if t.strip() and not t.startswith("#")]
    names = sorted({t for t in tokens if NAME.match(t)})
    for _ in range(count):
        if not solid:
            break
        i = rng.choice(solid)
        kind = rng.choices(range(8), weights=(3, 2, 1, 1, 1, 1, 1, 1))[0]
        if kind == 0 and NAME.match(tokens[i]):
            tokens[i] = rng.choice(names)
        elif kind == 1 and tokens[i][:1].isdigit():
            tokens[i] = rng.choice(NUMBERS)
        elif kind == 2:
            tokens[i] = ""
        elif kind == 3:
            tokens[i] = tokens[i] + " " + tokens[i]
        elif kind == 4:
            j = min(solid, key=lambda k: (k <= i, abs(k - i)))
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == 5:
            tokens[i] = rng.choice(vocabulary())
        elif kind == 6:
            tokens[i] = rng.choice(HOSTILE_TOKENS)
        else:
            tokens[i] = tokens[i] + " " + rng.choice(vocabulary() + tuple(HOSTILE_TOKENS))
    return "".join(tokens)


def renumber(text: str, rng: random.Random, count: int) -> str:
    """`count` numbers of the spec replaced by others (0, -1, 1e300, `2^2^40`, ...): the spec still parses, and
    is often accepted, so that the module is built with extreme constants."""
    tokens = TOKEN.findall(text)
    numbers = [i for i, t in enumerate(tokens) if t[:1].isdigit()]
    for i in rng.sample(numbers, min(count, len(numbers))):
        tokens[i] = rng.choice(NUMBERS)
    return "".join(tokens)


def mutant(seed: int) -> tuple[str, str]:
    """(label, text): a seed spec with 1-3 token mutations (one case in three: only numbers replaced)."""
    rng = random.Random(seed)
    name, text = rng.choice(seeds())
    if rng.random() < 1 / 3:
        return f"{name}~{seed}", renumber(text, rng, rng.choice((1, 1, 2)))
    return f"{name}~{seed}", mutate(text, rng, rng.choice((1, 1, 1, 2, 3)))


BASE = """spec hostile
dims n
hyper lam = 0.1
input y : real[n]
{decls}
state x : real[n] = 0
layers {layers}
step:
    x = {step}
output x
"""


def _hostile(step="x + y", layers="2", decls="", replace=()):
    text = BASE.format(step=step, layers=layers, decls=decls)
    for old, new in replace:
        text = text.replace(old, new)
    return text


HOSTILE = {
    "layers_tower": _hostile(layers="2^2^40"),
    "layers_tower_20": _hostile(layers="2^2^20"),
    "layers_huge": _hostile(layers="10^300"),
    "layers_float": _hostile(layers="2.5"),
    "layers_negative": _hostile(layers="-3"),
    "step_tower": _hostile(step="x + y * 2^2^40"),
    "hyper_huge": _hostile(replace=[("hyper lam = 0.1", "hyper k = 10^400")]),
    "hyper_tower": _hostile(replace=[("hyper lam = 0.1", "hyper k = 2^2^40")]),
    "hyper_int_huge": _hostile(replace=[("hyper lam = 0.1", "hyper k : int = 1e300")]),
    "range_huge": _hostile(decls="param p : real = 1 learned range(0, 10^400)", step="x + p * y"),
    "range_infinite": _hostile(decls="param p : real = 1 learned range(0, 1e200*1e200)", step="x + p * y"),
    "range_complex": _hostile(decls="param p : real = 1 learned range(0, (-1)^0.5)", step="x + p * y"),
    "range_unknown": _hostile(decls="param p : real = 1 learned range(foo, 1)", step="x + p * y"),
    "repeat_tower": _hostile(step="x + y\n    repeat 2^2^40:\n        x = x + y"),
    "repeat_huge": _hostile(step="x + y\n    repeat 10^9:\n        x = x + y"),
    "big_integer": _hostile(step="x + y * " + "9" * 5000),
    "big_float": _hostile(step="x + y * 1" + "0" * 400 + ".0"),
    "division_by_zero": _hostile(step="x + y * (1/0)"),
    "zero_negative_power": _hostile(step="x + y * 0^-1"),
    "float_overflow": _hostile(step="x + y * 2.0^1024"),
    "negative_sqrt": _hostile(step="x + y * (-1)^0.5"),
    "deep_parentheses": _hostile(step="x + " + "(" * 3000 + "y" + ")" * 3000),
    "deep_unary": _hostile(step="x + " + "-" * 3000 + "y"),
    "long_sum": _hostile(step="x" + " + y" * 20000),
    "many_dims": _hostile(replace=[("dims n", "dims n, " + ", ".join(f"d{i}" for i in range(5000)))]),
    "many_lines": _hostile(decls="\n".join(f"let c{i} = {i}" for i in range(1000))),
    "mask_soft": _hostile(step="soft(y > 0, lam)"),
    "mask_expj": _hostile(step="x + real(expj(y > 0))"),
    "imag_of_real": _hostile(step="x + imag(y)"),
    "index_negative": _hostile(decls="data c : real[3]", step="x + y * c[-1]"),
    "index_layer_past": _hostile(decls="data c : real[3]", step="x + y * c[layer + 2]"),
    "onehot_n_n": _hostile(step="x + onehot(n, n)"),
    "onehot_argmax": _hostile(decls="input v : real[k]", step="x + onehot(argmax(v), n)",
                              replace=[("dims n", "dims n, k")]),
    "reserved_state_batched": _hostile(replace=[("hyper lam", "hyper state_batched")]),
    "reserved_typeerror": _hostile(replace=[("hyper lam", "hyper TypeError")]),
    "spec_typeerror": _hostile(replace=[("spec hostile", "spec TypeError")]),
    "spec_object": _hostile(replace=[("spec hostile", "spec object")]),
    "reserved_self": _hostile(replace=[("hyper lam", "hyper self")]),
    "dunder": _hostile(replace=[("hyper lam", "hyper __class__")]),
    "unicode_name": _hostile(replace=[("hyper lam", "hyper λ")]),
    "zero_width": _hostile(replace=[("hyper lam", "hyper la\u200bm")]),
    "nul_byte": _hostile(replace=[("x + y", "x + \x00y")]),
    "escape_sequence": _hostile(replace=[("x + y", "x + y # \x1b[2J\x1b[31m")]),
    "bom": "\ufeff" + _hostile(),
    "crlf": _hostile().replace("\n", "\r\n"),
    "tab_indent": _hostile().replace("    x =", "\tx ="),
    "title_injection": _hostile(replace=[("spec hostile", 'spec hostile "\\"\\"\\" + __import__(\'os\')"')]),
    "empty": "",
    "only_comment": "# nothing\n",
    "spec_only": "spec s\n",
    "no_layers": _hostile().replace("layers 2\n", ""),
    "no_output": _hostile().replace("output x\n", ""),
    "duplicate_step": _hostile() + "step:\n    x = x\n",
    "output_unknown": _hostile().replace("output x", "output zz"),
    # the second long run's findings (tests/fuzz_known_bugs.md, fixed on branch fuzz2)
    "int_hyper_size_huge": _hostile(replace=[("hyper lam = 0.1", "hyper k : int = 1e300")], decls="state z : real[k] = 0",
                                    step="x + y * sum(z)"),
    "int_literal_beyond_64_bits": _hostile(step="x + y * 10^30"),
    "where_python_bool": _hostile(decls="data c : real[n]", step="where(layer <= dot(c, c), x, y)"),
    "stack_python_number": _hostile(step="x + y * stack(lam, 2)[1]"),
    "svd_of_overflow": _hostile(decls="data A : real[n, n]\nlet L = opnorm(A * 1e300 * 1e300 - A * 1e300 * 1e300)",
                                step="x + y / L"),
}


@dataclass
class Outcome:
    stage: str  # rejected, ok, refused (a clean constructor/forward error), slow (an accepted network that takes
    # long to build or run) -- or a finding: crash, hang (compiling), unlocated, import, construct, forward
    message: str = ""

    @property
    def finding(self) -> bool:
        return self.stage not in ("rejected", "ok", "refused", "slow")

    @property
    def signature(self) -> str:
        first = (self.message.strip().splitlines() or [""])[0]
        first = re.sub(r"^.*?error: ", "", first)
        first = re.sub(r"`[^`]*`", "`NAME`", first)
        return f"{self.stage}: {re.sub(r'[0-9]+', '#', first)[:140]}"


# Findings listed as open in tests/fuzz_known_bugs.md ("Open (found, not fixed)"): tests/test_fuzz.py does not
# fail on them (benchmarks/fuzz.py still reports them).  Delete a pattern when its bug is fixed.
KNOWN_OPEN: tuple = ()


def known_open(outcome: Outcome) -> bool:
    return outcome.stage in ("construct", "forward") and any(p.search(outcome.message) for p in KNOWN_OPEN)


class _Hang(Exception):
    pass


def _alarm(*_):
    raise _Hang()


LOCATED = re.compile(r"^[^\n]*?:\d+:\d+: error: ")
UNLOCATED_OK = re.compile(r"^[^\n]*?: error: (the spec is empty|missing `spec NAME` line)")
CLEAN_ERROR = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(\[[0-9]+\])?: ")


def run_case(text: str, seed: int = 0, timeout: int = 10, build: bool = True, build_timeout: int | None = None
             ) -> Outcome:
    """Compile `text` and, if accepted, build and run the module; see the module docstring for the rule.
    Compiling has `timeout` seconds (longer is a `hang`); building and running the module `build_timeout`
    (default: the same; longer is `slow`, not a finding: an accepted spec may ask for a wide CNN)."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(timeout)
    progress: list = [build_timeout]
    try:
        try:
            return _run(text, seed, build, progress)
        finally:
            signal.alarm(0)  # the alarm may still fire before this line: the handler below classifies it
    except _Hang:
        if len(progress) > 1:  # compiled: building or running a large accepted network (wide CNNs) is slow
            return Outcome("slow", f"built or ran for more than {progress[0] or timeout} s")
        return Outcome("hang", f"did not finish in {timeout} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _run(text: str, seed: int, build: bool, progress: list) -> Outcome:
    try:
        program = check_source(text, "fuzz.unroll")
        if program.layers > LAYERS_CAP:
            return Outcome("ok", "accepted (too deep to build)")
        source = emit(program, "", VERSION)
        explain(program)  # `unrollc explain` and `unrollc graph` print the same program: they must not fail
        to_dot(build_graph(program))
    except CompileError as err:
        report = str(err)
        if LOCATED.match(report) or UNLOCATED_OK.match(report):
            return Outcome("rejected", report)
        return Outcome("unlocated", report)
    except _Hang:
        raise
    except Exception as err:  # noqa: BLE001 - the finding
        return Outcome("crash", f"{type(err).__name__}: {err}")
    progress.append("compiled")
    if progress[0] is not None:
        signal.alarm(progress[0])
    if not build:
        return Outcome("ok")
    try:
        module = types.ModuleType("unroll_fuzz_mutant")
        linecache.cache["<mutant>"] = (len(source), None, source.splitlines(True), "<mutant>")  # for error messages
        exec(compile(source, "<mutant>", "exec"), module.__dict__)  # noqa: S102 - compiler output
        cls = next(v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule)
    except Exception as err:  # noqa: BLE001 - generated code that does not import is a finding
        return Outcome("import", f"{type(err).__name__}: {err}")
    return _build_and_run(cls, program, seed)


def _size(dim, sizes: dict) -> int:
    total = dim.const
    for name, coef in dim.terms:
        total += coef * math.prod(sizes[n] for n in name.split("*"))
    return total


def _build_and_run(cls, program, seed: int) -> Outcome:
    rng = np.random.default_rng(seed)
    sizes = {d: SIZES[i % len(SIZES)] for i, d in enumerate(program.dims)}
    sizes["num_layers"] = program.layers

    def random(shape, dtype):
        shape = tuple(max(_size(d, sizes), 0) for d in shape)
        values = rng.standard_normal(shape)
        return values + 1j * rng.standard_normal(shape) if dtype == "complex" else values

    kwargs = {}
    try:
        for d in program.data:
            if d.type.dtype == "operator":
                out = math.prod(_size(x, sizes) for x in (d.type.out_shape or ()))
                kwargs[d.name] = rng.standard_normal((out, math.prod(_size(x, sizes) for x in d.type.shape)))
            else:
                kwargs[d.name] = random(d.type.shape, d.type.dtype)
        parameters = inspect.signature(cls.__init__).parameters
        for name, size in sizes.items():
            if name in parameters and name not in kwargs:
                kwargs[name] = size
        if "dtype" in parameters:
            kwargs["dtype"] = torch.float64
        inputs = {i.name: torch.as_tensor(_batch(random, i)) for i in program.inputs}
    except (KeyError, ValueError, OverflowError) as err:  # shapes this harness cannot size: not the compiler's
        return Outcome("refused", f"harness: {type(err).__name__}: {err}")
    stage = "construct"
    try:
        net = cls(**kwargs)
        stage = "forward"
        with torch.no_grad():
            net(**inputs)
    except (TypeError, ValueError) as err:
        if CLEAN_ERROR.match(str(err)) or str(err).startswith(cls.__name__ + ":"):
            return Outcome("refused", str(err))
        return Outcome(stage, f"{type(err).__name__}: {err}")
    except _Hang:
        raise
    except Exception as err:  # noqa: BLE001 - the finding
        return Outcome(stage, f"{type(err).__name__}: {err}")
    return Outcome("ok")


def _batch(random, decl):
    values = np.stack([random(decl.type.shape, decl.type.dtype) for _ in range(2)])
    return values.astype(np.complex128 if decl.type.dtype == "complex" else np.float64)


def corpus_case(index: int) -> tuple[str, str]:
    """Case `index` of the mutation fuzzer: the hostile corpus first, then mutants of the seeds."""
    names = list(HOSTILE)
    if index < len(names):
        return f"hostile:{names[index]}", HOSTILE[names[index]]
    return mutant(index - len(names))

