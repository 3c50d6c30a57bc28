"""Names: what a spec may call its symbols, how each kind of symbol is named in messages, and the
symbol table entry (`Symbol`) the checker keeps for every declared name."""

from __future__ import annotations

import builtins
import keyword
import re
from dataclasses import dataclass

from ..diagnostics import Span
from ..operators import INTERNAL_OPERATORS, OPERATORS, SPECIAL_FORMS
from ..types import Type

USER_OPERATORS = {name for name in OPERATORS if name not in INTERNAL_OPERATORS}

# Names the generated Python uses itself; a spec may not declare them.
GENERATED_NAMES = {"self", "torch", "rt", "layer", "dtype", "cdtype", "device", "batch", "record", "states",
                   "unbatched", "batch_info", "dims"}
# Python builtins the generated code calls: a spec name may not shadow them (other builtins are fine)
USED_BUILTINS = {"range", "int", "float", "dict", "super", "min", "max", "len", "isinstance", "tuple", "list",
                 "type", "object", "print", "None", "True", "False", "TypeError", "ValueError"}
# Attributes of the generated module (torch.nn.Module and runtime.UnrolledModule, plus the class attributes
# the emitter writes): data, hyperparameters, constants and parameters become `self.<name>`, so a spec
# name may not shadow them.  Kept as a literal list: the compiler does not import torch.
MODULE_ATTRIBUTES = {
    "T_destination", "add_module", "apply", "bfloat16", "buffers", "call_super_init", "children", "compile", "cpu",
    "cuda", "double", "dump_patches", "eval", "extra_repr", "float", "forward", "get_buffer", "get_extra_state",
    "get_parameter", "get_submodule", "half", "input_names", "ipu", "load_state_dict", "modules", "mtia",
    "monitor", "named_buffers", "named_children", "named_modules", "named_parameters", "num_layers", "output_names",
    "parameter_table", "parameter_values", "parameters", "register_backward_hook", "register_buffer",
    "register_forward_hook", "register_forward_pre_hook", "register_full_backward_hook",
    "register_full_backward_pre_hook", "register_load_state_dict_post_hook", "register_load_state_dict_pre_hook",
    "register_module", "register_parameter", "register_state_dict_post_hook", "register_state_dict_pre_hook",
    "report", "requires_grad_", "set_extra_state", "set_submodule", "share_memory", "spec_name", "state_dict",
    "state_names", "to", "to_empty", "trace", "train", "training", "type", "xpu", "zero_grad",
    "spec_sha256", "compiler_version", "hyper_defaults", "python_constants", "state_batched", "gram_form",
    "dim_minimums", "dim_relations", "early_exit", "min_layers", "noise_names", "noise_seed", "reseed",
    "transposed_buffers", "layer_split",
}
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

# How each kind of symbol is named in messages.
KIND_NOUN = {"dim": "dimension", "data": "data operator", "hyper": "hyperparameter", "input": "input",
             "let": "`let` constant", "param": "parameter", "state": "state", "local": "`let` value",
             "net": "sub-network", "noise": "noise", "depth": "depth output", "index": "loop index"}


def with_article(noun: str) -> str:
    """`noun` with its indefinite article."""
    return ("an " if noun.lstrip("`")[:1] in "aeiou" else "a ") + noun


def kind_noun(kind: str) -> str:
    """How a symbol kind is named in messages (`hyper` -> `hyperparameter`)."""
    return KIND_NOUN.get(kind, kind)


# Spec operator symbols -> registry operator names; the registry operators that compute a Python number
# when all their operands are Python numbers.
BINARY_OPS = {"+": "add", "-": "sub", "*": "mul", "/": "div", "@": "matmul", "^": "pow",
              "<": "lt", ">": "gt", "<=": "le", ">=": "ge", "==": "eq", "!=": "ne", "%": "mod", "//": "floordiv"}
PY_OPS = {"add", "sub", "mul", "div", "pow", "neg", "lt", "gt", "le", "ge", "eq", "ne", "mod", "floordiv"}

FLAGS_TRAIN = ("learned", "fixed")
FLAGS_TYING = ("shared", "per_layer")
FLAGS_CONSTRAINT = ("positive", "nonnegative", "range", "unit_columns", "zero_mean", "unit_norm")
ALL_FLAGS = FLAGS_TRAIN + FLAGS_TYING + FLAGS_CONSTRAINT


@dataclass
class Symbol:
    name: str
    kind: str  # dim | data | hyper | input | let | param | state | local | net | index (a loop index)
    type: Type
    level: int
    span: Span
    version: int = 0
    py: bool = False
    per_layer: bool = False
    static: object = None
    broken: bool = False  # its declaration had an error (already reported): uses stay silent


def name_problem(name: str, kind: str) -> tuple[str, str] | None:
    """Why `name` cannot name a spec symbol (message, hint), or None if it can."""
    what = kind_noun(kind)
    fix = f"rename it, e.g. `{name.strip('_') or 'v'}_`"
    if name.startswith("__") and name.endswith("__") and len(name) > 4:
        return (f"`{name}` cannot name {with_article(what)}: dunder names are reserved for Python",
                f"names start with a letter; {fix}")
    if not IDENTIFIER.match(name):
        return (f"invalid name `{name}`: names start with a letter",
                f"a leading `_` is reserved for the generated code; {fix}")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return f"`{name}` is a Python keyword and cannot name {with_article(what)}", fix
    if name in USER_OPERATORS or name in SPECIAL_FORMS:
        return f"`{name}` is an operator of the language and cannot name {with_article(what)}", fix
    if name in GENERATED_NAMES:
        return (f"`{name}` is reserved and cannot name {with_article(what)}",
                f"the generated PyTorch code uses `{name}` itself; {fix}")
    if name in USED_BUILTINS or (name.startswith("__") and hasattr(builtins, name)):
        return (f"`{name}` is reserved and cannot name {with_article(what)}",
                f"the generated code calls the Python builtin `{name}`; {fix}")
    if name in MODULE_ATTRIBUTES:
        return (f"`{name}` is reserved and cannot name {with_article(what)}",
                f"the generated torch module has its own attribute `{name}`; {fix}")
    return None
