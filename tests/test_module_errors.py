"""Wrong arguments to a generated module give a clear TypeError/ValueError that
names the argument and, for shapes, the expected shape (runtime/module.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import unroll

F64 = torch.float64
N, M = 4, 6


@pytest.fixture(scope="module")
def lista():
    return unroll.load("lista", layers=3)


@pytest.fixture(scope="module")
def net(lista):
    torch.manual_seed(0)
    return lista(torch.randn(N, M, dtype=F64))


TWO_INPUTS = '''spec two_inputs "Two inputs"
dims  n, m
data  A : real[n, m]
input y : real[n]
input w : real[m]
state x : real[m] = 0
layers 2
step:
    x = soft(x + A.T @ (y - A @ x) + w, 0.1)
output x
'''


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    path = tmp_path_factory.mktemp("specs") / "two_inputs.unroll"
    path.write_text(TWO_INPUTS)
    return unroll.load(str(path), layers=2)(torch.randn(N, M, dtype=F64))


# ------------------------------------------------------------------ constructor (data)
def test_missing_data_is_a_type_error_naming_it(lista):
    with pytest.raises(TypeError, match=r"\bA\b"):
        lista()
    with pytest.raises(TypeError, match=r"missing data `A` of shape \[n, m\]"):
        lista(None)


@pytest.mark.parametrize("shape", [(N,), (2, N, M)])
def test_data_of_the_wrong_rank(lista, shape):
    with pytest.raises(ValueError) as info:
        lista(torch.randn(*shape, dtype=F64))
    message = str(info.value)
    assert message.startswith("A: ") and "[n, m]" in message and str(list(shape)) in message, message


def test_data_that_is_not_a_tensor(lista):
    with pytest.raises(TypeError, match=r"^A: expected a tensor or array, got str"):
        lista("matrix")


def test_complex_data_for_a_real_spec(lista):
    with pytest.raises(TypeError, match=r"^A: expected a real tensor"):
        lista(torch.randn(N, M, dtype=torch.complex128))


def test_bad_hyperparameter(lista):
    with pytest.raises(TypeError, match=r"^lam: expected a number, got str"):
        lista(torch.randn(N, M, dtype=F64), lam="big")


# ------------------------------------------------------------------ forward (inputs)
def test_missing_input(net):
    with pytest.raises(TypeError, match=r"\by\b"):
        net()
    with pytest.raises(TypeError, match=r"^y: expected a tensor of shape \[batch, n\] = \[batch, 4\], got NoneType"):
        net(None)


@pytest.mark.parametrize("shape, axis", [((N + 1,), 0), ((3, N + 1), 1)])
def test_input_of_the_wrong_length(net, shape, axis):
    with pytest.raises(ValueError) as info:
        net(torch.randn(*shape, dtype=F64))
    message = str(info.value)
    assert message.startswith("y: expected shape "), message
    assert "= 4" in message and f"= [{'batch, ' if len(shape) == 2 else ''}4]" in message, message
    assert f"got {list(shape)}" in message and f"axis {axis} is `n` = 4 (set by `A`), not {N + 1}" in message


def test_input_of_the_wrong_rank(net):
    with pytest.raises(ValueError) as info:
        net(torch.randn(2, 3, N, dtype=F64))
    message = str(info.value)
    assert message == ("y: expected shape [batch, n] = [batch, 4] (a batch) or [n] = [4] (one sample), "
                       "got [2, 3, 4]"), message


def test_complex_input_for_a_real_spec(net):
    with pytest.raises(TypeError, match=r"^y: expected a real tensor, got torch.complex128"):
        net(torch.randn(N, dtype=torch.complex128))


def test_float32_input_into_a_float64_module(net):
    with pytest.raises(TypeError) as info:
        net(torch.randn(N, dtype=torch.float32))
    message = str(info.value)
    assert message.startswith("y: dtype torch.float32 does not match the module's torch.float64"), message
    assert "y.to(torch.float64)" in message


def test_integer_input(net):
    with pytest.raises(TypeError, match=r"^y: expected a floating-point tensor, got torch.int64"):
        net(torch.arange(N))


def test_plain_python_list_takes_the_module_dtype(net):
    """A list has no dtype of its own: it is not a float32-vs-float64 mistake."""
    out = net([1.0, 2.0, 3.0, 4.0])
    assert out.dtype == F64 and out.shape == (M,)
    assert torch.equal(out, net(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=F64)))


def test_numpy_float32_input_into_a_float64_module(net):
    with pytest.raises(TypeError, match="torch.float32 does not match the module's torch.float64"):
        net(np.zeros(N, dtype=np.float32))


def test_unknown_or_repeated_input_names(net):
    y = torch.randn(N, dtype=F64)
    with pytest.raises(TypeError, match="unknown input `z`"):
        net.trace(z=y)
    with pytest.raises(TypeError, match="input `y` given twice"):
        net.trace(y, y=y)


# ------------------------------------------------------------------ several inputs
def test_inputs_with_different_batch_sizes(two):
    with pytest.raises(ValueError) as info:
        two(torch.randn(2, N, dtype=F64), torch.randn(3, M, dtype=F64))
    assert str(info.value) == ("w: batch size 3 does not match the batch size 2 of `y`; the inputs of one call "
                               "share the leading batch axis")


def test_batched_and_unbatched_inputs_mixed(two):
    with pytest.raises(ValueError, match=r"^w: got one sample \(shape \[6\]\), but `y` is a batch of 2"):
        two(torch.randn(2, N, dtype=F64), torch.randn(M, dtype=F64))
    with pytest.raises(ValueError, match=r"^w: got a batch of 2, but `y` is one sample"):
        two(torch.randn(N, dtype=F64), torch.randn(2, M, dtype=F64))


def test_second_input_of_the_wrong_length(two):
    with pytest.raises(ValueError, match=r"^w: expected shape \[batch, m\] = \[batch, 6\], got \[2, 5\]"):
        two(torch.randn(2, N, dtype=F64), torch.randn(2, M - 1, dtype=F64))


def test_consistent_inputs_still_work(two):
    out = two(torch.randn(2, N, dtype=F64), torch.randn(2, M, dtype=F64))
    assert out.shape == (2, M)
    out = two(w=torch.randn(M, dtype=F64), y=torch.randn(N, dtype=F64))
    assert out.shape == (M,)


def test_shape_errors_name_this_modules_own_argument(lista):
    """Which argument bound a dim is remembered per module instance, not shared between modules."""
    src = TWO_INPUTS.replace("spec two_inputs", "spec other").replace("data  A", "data  D").replace("A.T", "D.T")
    src = src.replace("A @", "D @")
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "other.unroll"
        path.write_text(src)
        unroll.load(str(path), layers=1)(torch.randn(N, M, dtype=F64))   # binds n and m through `D`
    net = lista(torch.randn(N, M, dtype=F64))
    with pytest.raises(ValueError) as info:
        net(torch.randn(2, N + 1, dtype=F64))
    assert "(set by `A`)" in str(info.value) and "`D`" not in str(info.value)


def test_per_layer_default_indexing_data_past_its_end_names_the_parameter():
    M = unroll.load("ml_csc_layered", layers=4)
    # the data is checked when it binds `n` (an index `Dk[layer]` needs n >= layers; compiler/check/bounds.py)
    with pytest.raises(ValueError, match=r"Dk: axis 0 is `n` = 2, but the spec needs `n` >= 4 for `Dk\[layer\]`"):
        M(D1=torch.randn(3, 2, 3, 3, dtype=torch.float64), Dk=torch.randn(2, 3, 3, 3, 3, dtype=torch.float64))


REQUIRE_SPEC = """spec req "preconditions"
dims n, m
data A : real[n, m]
hyper lam = 0.1
let G = A.T @ A
require max(abs(sum(A^2, 0) - 1)) < 1e-6, "the columns of A must have unit norm"
require lam >= 0
require min(sum(G, 0)) > -1, "A.T @ A has no column sum below -1"
input y : real[n]
state x : real[m] = 0
layers 2
step:
    x = soft(x + A.T @ (y - A @ x), lam)
output x
"""


def test_require_is_checked_at_construction_and_names_the_data(tmp_path):
    path = tmp_path / "req.unroll"
    path.write_text(REQUIRE_SPEC)
    Net = unroll.load(str(path))
    rng = np.random.default_rng(0)
    A = rng.standard_normal((4, 6))
    A /= np.linalg.norm(A, axis=0)
    Net(A=A)  # every requirement holds
    with pytest.raises(ValueError, match=r"Req: `A`: the columns of A must have unit norm \(spec line 6: require"):
        Net(A=2 * A)
    with pytest.raises(ValueError, match=r"Req: `lam`: requirement `lam >= 0` does not hold \(spec line 7"):
        Net(A=A, lam=-0.5)
    a = A[:, :1]  # unit columns a, -a, -a, -a: the Gram matrix's first column sums to 1 - 3 = -2
    with pytest.raises(ValueError, match=r"Req: `A`: A.T @ A has no column sum below -1 \(spec line 8"):
        Net(A=np.hstack([a, -a, -a, -a]))
