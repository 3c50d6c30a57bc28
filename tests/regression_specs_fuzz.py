"""Minimal specs of the compiler bugs the long fuzz runs found (tests/fuzz_known_bugs.md), each with its outputs
computed in numpy from the mathematics of the spec; merged into tests/regression_specs.py's REGRESSIONS and run by
tests/test_generated_specs.py."""

from __future__ import annotations

import numpy as np
from regression_specs_base import B, Regression, _complex, _real

REGRESSIONS: dict[str, Regression] = {}

REGRESSIONS["operator_and_adjoint_of_one_value"] = Regression(  # fuzz expressions 1079809: K.H(x) computed as K(x)
    """spec operator_and_adjoint
dims n
data K : operator[n <- n]
input y : real[n]
state a : real[n] = 0
state b : real[n] = 0
layers 1
step:
    a = K(y)
    b = K.H(y)
output a, b
""", {"K": _real(4, 4)}, {"y": _real(B, 4)}, lambda d, i: (i["y"] @ d["K"].T, i["y"] @ d["K"]), {"dtype": "float64", "n": 4})

REGRESSIONS["python_number_let_read_as_tensor"] = Regression(  # fuzz statements 1064891
    # `c^1.5` of real scalar data is a constant kept as a Python number; the `let` holding it is read by `tanh`,
    # a torch function (TypeError: tanh(): argument 'input' must be Tensor, not float)
    """spec python_number_let
data c : real
input y : real
state x : real = 0
layers 2
step:
    let u = c^1.5
    x = tanh(u) + y
    u = x
output x
""", {"c": np.array(0.7)}, {"y": _real(B)}, lambda d, i: (np.tanh(0.7 ** 1.5) + i["y"],))

REGRESSIONS["python_bool_hoisted_before_repeat"] = Regression(  # fuzz statements 1079873
    # `layer >= mean(a)` does not change inside the `repeat`: computed once before it, as a Python bool (`mean(a)`
    # of scalar data is a constant kept as a Python number), and `torch.where` takes only a tensor condition
    """spec python_bool_before_repeat
data a : real
input y : real
state x : real = 0
layers 3
step:
    repeat 2:
        x = where(layer >= mean(a), y + x, x + 1)
output x
""", {"a": np.array(1.5)}, {"y": _real(B)}, lambda d, i: (2 * i["y"] + 4,))

def _layer_condition(d, i):
    x = i["y"].copy()
    for layer in range(3):
        x = np.full_like(x, d["v"]) if layer <= d["A"] @ d["A"] else x + i["y"]
    return (x,)


REGRESSIONS["comparison_of_python_numbers"] = Regression(  # statement seeds 20920, 39670; expression seed 35733
    """spec layer_condition
dims m
data A : real[m]
data v : real
input y : real
state x : real = y
layers 3
step:
    x = where(layer <= A @ A, v, x + y)
output x
""", {"A": np.array([0.6, 1.0]), "v": np.array(-2.5)}, {"y": _real(B)}, _layer_condition)  # A @ A = 1.36: layers 0, 1

v3c = _complex(3)
REGRESSIONS["stack_of_python_numbers"] = Regression(  # expression seed 13332, statement seeds 19414, 20821
    """spec stack_numbers
dims n
data a : real
data v : complex[n]
hyper h = 0.75
input y : real[n]
param Q : real[2] = stack(a, .5)  fixed per_layer
state s : complex = h
state x : real[n] = y
layers 2
step:
    x = Q[0] * x + Q[1] * y
final:
    let o = outer(stack(s, 2), v)
    let c = cat(y, 4)
output x, o, c
""", {"a": np.array(2.0), "v": v3c}, {"y": _real(B, 3)},
    lambda d, i: (2.0 * (2.0 * i["y"] + 0.5 * i["y"]) + 0.5 * i["y"],
                  np.stack([0.75 * d["v"], 2 * d["v"]]),
                  np.concatenate([i["y"], np.full((B, 1), 4.0)], axis=1)))

REGRESSIONS["integer_literal_beyond_64_bits"] = Regression(
    """spec huge_integer_literal
dims n
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = x + y * 10^30 - 2^70 * y
output x
""", {}, {"y": _real(B, 4)}, lambda d, i: (i["y"] * (1e30 - 2.0**70),), {"dtype": "float64"})

REGRESSIONS["size_hyperparameter_in_size_argument"] = Regression(
    """spec size_argument
dims n
hyper m : int = 3
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = x + y * sum(ones(m)) + y * sum(zeros(m, n))
output x
""", {}, {"y": _real(B, 4)}, lambda d, i: (5 * i["y"],), {"dtype": "float64", "m": 5})  # the constructor's m


def _state_chain(d, i):
    y = i["y"]
    x1 = x2 = x3 = x4 = np.zeros_like(y)
    for _ in range(5):
        x1 = x2 + np.sum(x1, axis=-1, keepdims=True) * x1
        x2 = x3
        x3 = x4
        x4 = y
    return (x1, np.linalg.norm(x1, axis=-1))


REGRESSIONS["batched_state_chain"] = Regression(  # the checker stopped after 3 passes: x1 typed unbatched when read
    """spec batched_state_chain
dims n
input y : real[n]
state x1 : real[n] = 0
state x2 : real[n] = 0
state x3 : real[n] = 0
state x4 : real[n] = 0
layers 5
step:
    x1 = x2 + sum(x1) * x1
    x2 = x3
    x3 = x4
    x4 = y
final:
    let r = norm(x1)
output x1, r
""", {}, {"y": _real(B, 4)}, _state_chain, {"dtype": "float64"})

REGRESSIONS["batched_state_chain_output"] = Regression(  # the same: the output `s` had no batch axis (shape [])
    """spec batched_state_chain_output
dims n
input y : real[n]
state s : real = 0
state x1 : real[n] = 0
state x2 : real[n] = 0
state x3 : real[n] = 0
layers 4
step:
    s = sum(x1)
    x1 = x2
    x2 = x3
    x3 = y
output s
""", {}, {"y": _real(B, 4)}, lambda d, i: (i["y"].sum(-1),), {"dtype": "float64"})


a3 = _real(3)
REGRESSIONS["python_number_temporary_into_state"] = Regression(  # fuzz statements 1048916
    # `(layer + 1) * dot(a, a)` of constants kept as Python numbers, computed once for both statements (a
    # temporary), broadcast into the per-sample state x ('float' object has no attribute 'expand')
    """spec scalar_temporary_into_state
data a : real[3]
input y : real[4]
state x : real[4] = y
state z : real[4] = 0
layers 3
step:
    x = (layer + 1) * dot(a, a)
    z = z + (layer + 1) * dot(a, a) + y
output x, z
""", {"a": a3}, {"y": _real(B, 4)},
    lambda d, i: (np.full((B, 4), 3 * d["a"] @ d["a"]), 6 * (d["a"] @ d["a"]) + 3 * i["y"]))


FUZZ_REGRESSIONS = REGRESSIONS
