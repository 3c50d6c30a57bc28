"""Minimal specs of the compiler bugs named in specgen.KNOWN_BUG_CONSTRUCTS (tests/fuzz_known_bugs.md).

One `Regression` per construct name: the spec, its constructor arguments and inputs, and the
outputs it must give, computed here in numpy from the mathematics of the spec (not by the
compiler, not by the generator).  tests/test_generated_specs.py runs each one: compile, import,
construct, forward (batch 3), compare shapes, dtypes and values, backward.  While the construct
is in KNOWN_BUG_CONSTRUCTS the test is a strict xfail.  The long fuzz runs' findings are in
tests/regression_specs_fuzz.py, merged here.
"""

from __future__ import annotations

import numpy as np
from regression_specs_base import B, Regression, _complex, _real
from regression_specs_fuzz import FUZZ_REGRESSIONS
from unroll.compiler.operators import OPERATORS

a5, S5, B55, u5 = _real(5), _real(5, 5), _real(5, 5), _real(B, 5)
REGRESSIONS: dict[str, Regression] = {}

REGRESSIONS["matmul_right_of_vector_product"] = Regression(
    """spec vector_product_of_matmul
dims m
data a : real[m]
data S : real[m, m]
data C : real[m, m]
input u : real[m]
input y : real[m]
let s = y @ (u @ C)
state x : real[m] = 0
layers 1
step:
    x = y * dot(a, S @ a)
output x, s
""", {"a": a5, "S": S5, "C": B55}, {"u": u5, "y": _real(B, 5)},
    lambda d, i: (i["y"] * (d["a"] @ d["S"] @ d["a"]), np.einsum("bi,bi->b", i["y"], i["u"] @ d["C"])))

REGRESSIONS["operator_matrix_multiaxis"] = Regression(
    """spec operator_on_images
dims m, h, w
data K : operator[m <- h, w]
input z : real[m]
input f : real[h, w]
let p = K(f)
state x : real[h, w] = 0
layers 1
step:
    x = x + K.H(z)
output x, p
""", {"K": _real(5, 6)}, {"z": _real(B, 5), "f": _real(B, 2, 3)},
    lambda d, i: ((i["z"] @ d["K"]).reshape(B, 2, 3), i["f"].reshape(B, 6) @ d["K"].T), {"h": 2, "w": 3, "m": 5})

REGRESSIONS["net_named_like_temporary"] = Regression(
    """spec net_name_capture
dims n
data A : real[n, n]
input y : real[n]
net A_y : mlp(in=n, out=n, width=4, depth=2, init=zero)
state x : real[n] = 0
layers 2
step:
    x = A_y(x) + A @ y
output x
""", {"A": _real(4, 4)}, {"y": _real(B, 4)}, lambda d, i: (i["y"] @ d["A"].T,))

REGRESSIONS["repeat_of_invariant_lets"] = Regression(
    """spec repeat_of_invariants
dims n
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = x + y
    repeat 3:
        let t = x * 2
output x
""", {}, {"y": _real(B, 4)}, lambda d, i: (2 * i["y"],), {"dtype": "float64"})

REGRESSIONS["reassigned_invariant_local"] = Regression(
    """spec reassigned_local
dims n
data c : real[n]
input y : real[n]
state x : real[n] = 0
layers 2
step:
    let u = 2 * c
    u = x + u * 2
    x = u + y
output x
""", {"c": _real(4)}, {"y": _real(B, 4)}, lambda d, i: (8 * d["c"] + 2 * i["y"],))

REGRESSIONS["unused_constant_let_output"] = Regression(
    """spec constant_output
dims n
data A : real[n]
input y : real[n]
let L = 2 * A
state x : real[n] = 0
layers 1
step:
    x = x + y
output x, L
""", {"A": _real(4)}, {"y": _real(B, 4)}, lambda d, i: (i["y"], 2 * d["A"]))

REGRESSIONS["step_let_python_number"] = Regression(
    """spec step_literal_let
dims n
input y : real[n]
state x : real[n] = 0
layers 2
step:
    let t = 2
    x = x * t + y
output x
""", {}, {"y": _real(B, 4)}, lambda d, i: (3 * i["y"],), {"dtype": "float64"})

REGRESSIONS["complex_data_before_real"] = Regression(
    """spec complex_data_first
dims n
data Z : complex[n]
data A : real[n]
input y : real[n]
let r = A * y
state x : real[n] = 0
layers 1
step:
    x = relu(A) * y + real(Z)
output x, r
""", {"Z": _complex(4), "A": _real(4)}, {"y": _real(B, 4)},
    lambda d, i: (np.maximum(d["A"], 0) * i["y"] + d["Z"].real, d["A"] * i["y"]))

M5 = 3 * np.eye(5) + 0.3 * _real(5, 5)
REGRESSIONS["mixed_dtype_matmul_solve"] = Regression(
    """spec real_matrix_on_complex
dims n, m
data A : real[n, m]
data M : real[m, m]
input z : complex[n]
let r = A.T @ z
state x : complex[m] = 0
layers 1
step:
    x = x + solve(M, r)
output x, r
""", {"A": _real(4, 5), "M": M5}, {"z": _complex(B, 4)},
    lambda d, i: (np.linalg.solve(d["M"], (i["z"] @ d["A"]).T).T, i["z"] @ d["A"]))

REGRESSIONS["operator_of_python_number"] = Regression(
    """spec python_number_operands
dims n
hyper lam = 0.5
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = y * soft(1.5, lam) + clamp(2, 0, 1)
output x
""", {}, {"y": _real(B, 4)}, lambda d, i: (i["y"] + 1.0,), {"dtype": "float64"})

REGRESSIONS["where_real_and_complex_branches"] = Regression(
    """spec where_real_or_complex
dims n
data Z : complex[n]
input y : real[n]
param w : real[n] = 1.0  learned
state x : complex[n] = 0
layers 1
step:
    x = where(y > 0, w * y, Z)
output x
""", {"Z": _complex(4)}, {"y": _real(B, 4)}, lambda d, i: (np.where(i["y"] > 0, i["y"], d["Z"]),))

REGRESSIONS["mixed_dtype_chanmix"] = Regression(
    """spec chanmix_real_on_complex
dims c, h, w
data W : real[c, c]
input v : complex[c, h, w]
let r = chanmix(W, v)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {"W": _real(2, 2)}, {"v": _complex(B, 2, 4, 5)},
    lambda d, i: (np.einsum("oc,bchw->bohw", d["W"], i["v"]),))

REGRESSIONS["reshape_three_dims"] = Regression(
    """spec reshape_three_dims
dims n, m, k
input v : real[m, k, n]
let r = reshape(v, n, k, m)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {}, {"v": _real(B, 5, 2, 4)}, lambda d, i: (i["v"].reshape(B, 4, 2, 5),), {"dtype": "float64"})

REGRESSIONS["python_number_output"] = Regression(
    """spec literal_output
dims n
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = x + y
final:
    let f = 2
output x, f
""", {}, {"y": _real(B, 4)}, lambda d, i: (i["y"], np.array(2.0)), {"dtype": "float64"})

REGRESSIONS["dot_of_scalars"] = Regression(
    """spec dot_of_scalars
input a : real
input b : real
let r = dot(a, b)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {}, {"a": _real(B), "b": _real(B)}, lambda d, i: (i["a"] * i["b"],), {"dtype": "float64"})

REGRESSIONS["dtype_without_tensors"] = Regression(
    """spec no_tensors
state x : real = 2
layers 1
step:
    x = x * 1.5
output x
""", {}, {}, lambda d, i: (np.array(3.0),), {"dtype": "float64"})

REGRESSIONS["istft_of_real"] = Regression(
    """spec istft_of_real
dims T, F, N
input x : real[T]
input X : real[F, N]
let r = istft(X, T, 2)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {}, {"x": _real(B, 8), "X": _real(B, 3, 5)},
    lambda d, i: (np.stack([OPERATORS["istft"].reference(X.astype(complex), 8, 2) for X in i["X"]]),),
    {"dtype": "float64"})

c8 = _real(8)
REGRESSIONS["composite_data_axis_bound_by_input"] = Regression(
    """spec composite_data_axis
dims n
data c : real[2*n]
input y : real[n]
let r = y * sum(c)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {"c": c8}, {"y": _real(B, 4)}, lambda d, i: (i["y"] * d["c"].sum(),))

REGRESSIONS["complex_svt_backward"] = Regression(
    """spec svt_to_zero
dims n, m
input Z : complex[n, m]
state X : complex[n, m] = Z
layers 2
step:
    X = svt(X, 100.0)
output X
""", {}, {"Z": _complex(B, 4, 5)}, lambda d, i: (np.zeros((B, 4, 5), complex),), {"dtype": "float64"})


def _svt(X, tau):
    U, s, Vh = np.linalg.svd(X, full_matrices=False)
    return (U * np.maximum(s - tau, 0)) @ Vh


REGRESSIONS["matrix_threshold_batched_tau"] = Regression(
    """spec svt_per_sample_threshold
dims n, m
data A : real[n, m]
input tau : real
let r = svt(A, tau)
state s : real = 0
layers 1
step:
    s = s + 1
output r
""", {"A": _real(4, 5)}, {"tau": np.array([0.5, 1.0, 1.5])},
    lambda d, i: (np.stack([_svt(d["A"], t) for t in i["tau"]]),))

# regressions found on main 61495b0 (after e221d77)
Zc = _complex(5, 4)
REGRESSIONS["operator_of_constant_scalar"] = Regression(
    """spec constant_scalar_operand
dims n, m
data Z : complex[m, n]
input y : real
let t = hard(opnorm(Z), y)
state s : real = 0
layers 1
step:
    s = s + 1
output t
""", {"Z": Zc}, {"y": np.array([0.5, 100.0, 1.0])},
    lambda d, i: (np.where(np.linalg.norm(d["Z"], 2) > i["y"], np.linalg.norm(d["Z"], 2), 0.0),))

REGRESSIONS["dtype_of_pruned_data"] = Regression(
    """spec dead_let_of_data
dims n
data A : real[n]
state x : real[n] = 0
layers 1
step:
    let u = A
output x
""", {"A": _real(4)}, {}, lambda d, i: (np.zeros(4),))

v4 = _real(4)
REGRESSIONS["invariant_reassignment_in_repeat"] = Regression(
    """spec reassigned_in_repeat
dims n
data v : real[n]
input y : real[n]
state x : real[n] = 0
layers 1
step:
    let u = x + y
    repeat 2:
        u = v
    x = u
output x
""", {"v": v4}, {"y": _real(B, 4)}, lambda d, i: (d["v"],))  # x = v depends on no input: unbatched

# open findings of the second long fuzz run (tests/fuzz_known_bugs.md, "Fixed on branch fuzz2"); each failed before


REGRESSIONS.update(FUZZ_REGRESSIONS)
