"""Findings of the long fuzz runs that are errors, not values (tests/fuzz_known_bugs.md, "Fixed on branch
fuzz2"): each is now a located diagnostic or a ValueError naming the argument or the statement; each test
failed before its fix (the comment says how).  The findings that are values are regression specs
(tests/regression_specs.py)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from regression_specs import REGRESSIONS
from unroll.compiler import CompileError, compile_source
from unroll.runtime.loader import load_text

SIZE_HYPER = """spec size_hyper
dims n
hyper m : int = {default}
input y : real[n]
state z : real[m] = 0
state x : real[n] = 0
layers 1
step:
    x = x + y * sum(ones(m)) + sum(z)
output x
"""


@pytest.mark.parametrize("default", ["1e300", "2^63", "-10^19"])
def test_int_hyperparameter_default_beyond_64_bits_is_located(default):
    # before: `zeros(): Overflow when unpacking long long` (a TypeError from torch) when the module ran
    with pytest.raises(CompileError) as info:
        compile_source(SIZE_HYPER.format(default=default), "t.unroll")
    lines = str(info.value).splitlines()
    assert re.match(r"t\.unroll:3:17: error: the default of the `int` hyperparameter `m` does not fit a 64-bit "
                    r"integer", lines[0]), lines[0]
    assert lines[2].endswith(" " + "^" * len(default)), lines  # the caret under the default


def test_int_hyperparameter_at_the_64_bit_limit_is_accepted():
    compile_source(SIZE_HYPER.format(default="2^63 - 1"), "t.unroll")


def test_int_hyperparameter_beyond_64_bits_given_to_the_constructor_is_named(one_torch_thread):
    # before: `zeros(): Overflow when unpacking long long` in forward
    SizeHyper = load_text(SIZE_HYPER.format(default=3), "size_hyper")
    for value in (1e300, 2**63, -(2**64)):
        with pytest.raises(ValueError, match=r"^m: expected a 64-bit integer"):
            SizeHyper(m=value)
    net = SizeHyper(m=4, dtype=torch.float64)
    y = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(net(y).numpy(), 4 * y)  # the constructor's m is the size, not the default


OPNORM_OF_OVERFLOW = """spec opnorm_overflow
dims n
data A : real[n, n]
input y : real[n]
let L = opnorm(A * 1e300 * 1e300 - A * 1e300 * 1e300)
state x : real[n] = 0
layers 1
step:
    x = x + y / L
output x
"""

SOLVE_SINGULAR = """spec solve_singular
dims n
data A : real[n, n]
data b : real[n]
let u = solve(A, b)
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = x + y * u
output x
"""


def test_svd_of_non_finite_constant_names_the_statement(one_torch_thread):
    # before: torch.linalg.LinAlgError "linalg.svd: The algorithm failed to converge because the input matrix
    # contained non-finite values" at construction (inf - inf of the data)
    Net = load_text(OPNORM_OF_OVERFLOW, "opnorm_overflow")
    with pytest.raises(ValueError, match=r"^L: computing `line 5: let L = opnorm\(.*\)`, a linear-algebra routine "
                                         r"failed: the matrix has NaN or infinite entries"):
        Net(A=np.eye(3))


def test_solve_of_singular_constant_names_the_statement(one_torch_thread):
    # before: torch.linalg.LinAlgError "The solver failed because the input matrix is singular" at construction
    Net = load_text(SOLVE_SINGULAR, "solve_singular")
    with pytest.raises(ValueError, match=r"^u: computing `line 5: let u = solve\(A, b\)`, a linear-algebra routine "
                                         r"failed: the matrix is singular"):
        Net(A=np.ones((3, 3)), b=np.ones(3))
    A, b, y = np.diag([2.0, 4.0, 5.0]), np.array([1.0, 2.0, 3.0]), np.ones((2, 3))
    np.testing.assert_allclose(Net(A=A, b=b)(y).numpy(), y * [0.5, 0.5, 0.6], rtol=1e-12)


COMPOSITE_DATA_AXIS = REGRESSIONS["composite_data_axis_bound_by_input"].spec  # tests/regression_specs.py


def test_composite_data_axis_bound_by_an_input_is_checked_when_bound(one_torch_thread):
    # before: KeyError: 'n' at construction, even with n given (the check came before the constructor's dims);
    # the values are tests/regression_specs.py `composite_data_axis_bound_by_input`
    Net = load_text(COMPOSITE_DATA_AXIS, "composite_data_axis")
    c = np.arange(8.0)
    net = Net(c)
    with pytest.raises(ValueError, match=r"^c: axis 0 must have size 2\*n = 6, got 8"):
        net(np.ones((2, 3)))  # n = 3 from y: checked at the call
    np.testing.assert_allclose(net(np.ones((2, 4))).numpy(), np.full((2, 4), 28.0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"^c: axis 0 must have size 2\*n = 6, got 8"):
        Net(c, n=3)  # n given to the constructor: checked there
    assert Net(c, n=4)(np.ones((2, 4))).shape == (2, 4)


def _svt_cases():
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float64, torch.complex128):
        for shape in ((4, 4), (5, 3), (2, 3, 5)):
            X = torch.randn(*shape, dtype=dtype, generator=gen)
            s = torch.linalg.svdvals(X)
            yield f"{dtype}-{shape}-generic", X, ((s[..., 1] + s[..., 2]) / 2)[..., None, None]  # as X: [..., 1, 1]
        u, v = torch.randn(4, 1, dtype=dtype, generator=gen), torch.randn(1, 5, dtype=dtype, generator=gen)
        X = u @ v  # rank 1: three equal (zero) singular values, where torch's SVD backward gives NaN or raises
        yield f"{dtype}-rank-one", X, torch.linalg.svdvals(X)[0] / 2


@pytest.mark.parametrize("name, X, tau", list(_svt_cases()), ids=[c[0] for c in _svt_cases()])
def test_svt_backward_matches_finite_differences(name, X, tau, one_torch_thread):
    # row 19 (complex_svt_backward): the closed-form backward of runtime/svt_grad.py against finite differences
    # (torch.autograd.gradcheck), for X and the threshold, real and complex, equal singular values included
    import unroll.runtime as rt

    X, tau = X.clone().requires_grad_(), tau.clone().requires_grad_()
    assert torch.autograd.gradcheck(rt.svt, (X, tau), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_svt_of_a_thresholded_to_zero_matrix_has_zero_gradient(dtype, one_torch_thread):
    # before: complex: RuntimeError "svd_backward: The singular vectors in the complex case are specified up to
    # multiplication by e^{i phi}"; real: NaN gradients (the second svt takes the SVD of the zero matrix)
    import unroll.runtime as rt

    X = torch.randn(3, 4, 5, dtype=dtype, requires_grad=True)
    Y = rt.svt(rt.svt(X, 100.0), 1.0)
    (grad,) = torch.autograd.grad(Y.real.sum(), X)
    assert torch.equal(grad, torch.zeros_like(grad))  # every singular value is below 100: locally constant


def test_repeat_count_hyperparameter_is_bounded(one_torch_thread):
    # before: accepted, and the module ran 10^9 inner iterations (a hang); a literal `repeat 10^9` was refused
    text = SIZE_HYPER.format(default="10^9").replace("state z : real[m] = 0\n", "").replace(
        "    x = x + y * sum(ones(m)) + sum(z)", "    repeat m:\n        x = x + y")
    with pytest.raises(CompileError) as info:
        compile_source(text, "t.unroll")
    assert re.match(r"t\.unroll:8:12: error: `repeat` count is at most 1,000,000, got `m` = 1e\+09 \(its default\)",
                    str(info.value)), str(info.value)
    Net = load_text(text.replace("10^9", "0"), "repeat_count")  # 0 inner steps is valid (ml_csc_layered's K)
    with pytest.raises(ValueError, match=r"^m: a `repeat` count is at most 1,000,000, got 1e\+09"):
        Net(m=10**9)  # before: accepted, then 10^9 inner iterations per layer
    y = np.ones((2, 3))
    np.testing.assert_array_equal(Net(m=3, dtype=torch.float64)(y).numpy(), 3 * y)


LOOP_INDEX = """spec loop_index
dims T, n
input y : real[T, n]
state X : real[T + 1, n] = 0
layers 1
step:
    repeat T as t:
        X[{write}] = X[{read}] + y[t]
output X
"""


@pytest.mark.parametrize("write, read, column, message", [
    # fuzz mutant msa_pmp~1325 (`X[t + 2] = ...`): an IndexError from torch on the loop's last pass
    ("t + 2", "t", 11, (r"index `t \+ 2` reaches T \+ 1 on the last pass of its `repeat` loop, out of range for an "
                      r"axis of size T \+ 1")),
    ("t + 1", "t + 2", 22, r"index `t \+ 2` reaches T \+ 1 on the last pass"),
    # `X[t - 1]` at t = 0 would silently read the last entry (a negative index wraps around in torch)
    ("t + 1", "t - 1", 22, r"index `t - 1` is -1 on the first pass of its `repeat` loop: negative"),
])
def test_loop_index_out_of_range_is_located(write, read, column, message):
    with pytest.raises(CompileError) as info:
        compile_source(LOOP_INDEX.format(write=write, read=read), "t.unroll")
    first = str(info.value).splitlines()[0]
    assert re.match(rf"t\.unroll:8:{column}: error: {message}", first), first


def test_loop_index_within_range_runs_like_numpy(one_torch_thread):
    Net = load_text(LOOP_INDEX.format(write="t + 1", read="T - 1 - t"), "t.unroll")
    y = torch.randn(4, 3, dtype=torch.float64)
    X = Net()(y=y).numpy()
    ref = np.zeros((5, 3))
    for t in range(4):  # X[t + 1] = X[T - 1 - t] + y[t]
        ref[t + 1] = ref[4 - 1 - t] + y[t].numpy()
    np.testing.assert_allclose(X, ref, rtol=1e-12)


FORWARD_POWER = """spec forward_power
dims n
hyper e = 2.0
input y : real[n]
state x : real[n] = 0
layers 2
step:
    let a = n^e / (1 + norm(x)^2)
    x = x + a * y
output x
"""


def test_python_number_overflow_in_forward_names_the_statement(tmp_path, one_torch_thread):
    # fuzz prox_linear_psse~1009983 (`M^1e300`, M a dim): OverflowError from Python's `**` in forward
    path = tmp_path / "forward_power.unroll"
    path.write_text(FORWARD_POWER)
    Net = load_text(FORWARD_POWER, str(path))
    y = torch.ones(2, 3, dtype=torch.float64)
    assert torch.allclose(Net()(y=y), torch.full((2, 3), 9.0 + 9.0 / (1 + 3 * 9.0**2), dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^a: computing `line 8: let a = n\^e / \(1 \+ norm\(x\)\^2\)`, "
                                         r"Python-number arithmetic overflowed .* with the hyperparameters e=1e\+300"):
        Net(e=1e300)(y=y)


SINGULAR_IN_FORWARD = """spec singular_in_forward
dims n
data A : real[n, n]
input y : real[n]
state x : real[n] = 0
layers 1
step:
    x = solve(A * sum(y), y)
output x
"""


def test_lapack_failure_in_forward_names_the_statement(tmp_path, one_torch_thread):
    path = tmp_path / "singular.unroll"
    path.write_text(SINGULAR_IN_FORWARD)
    net = load_text(SINGULAR_IN_FORWARD, str(path))(A=np.eye(3))
    with pytest.raises(ValueError, match=r"^SingularInForward: computing `line 8: .*solve\(A \* sum\(y\), y\)`, a linear-algebra "
                                         r"routine failed: the matrix is singular; check the inputs and the parameters"):
        net(y=torch.tensor([[1.0, -1.0, 0.0]], dtype=torch.float64))  # sum(y) = 0: a zero matrix


COMPARISON_CONSTANT = """spec comparison_constant
dims n
hyper k : int = 1
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = where(clamp(k, 0, 0.75) > y, y, x)
    x = where(clamp(k, 0, 0.75) >= 1.5^-1, x + y, y)
output x
"""


@pytest.mark.parametrize("k, expected", [(1, 2.0), (0, 1.0)])
def test_comparison_of_python_constants_is_a_buffer(k, expected, one_torch_thread):
    # fuzz statements 1007030 (the 100 000-case run): `clamp(i, 0, 0.75) >= 1.5^-1` is computed at construction
    # as a Python bool, and registering it as a buffer raised `TypeError: cannot assign 'bool' object to buffer`
    net = load_text(COMPARISON_CONSTANT, "comparison_constant")(k=k)
    y = torch.ones(2, 3, dtype=torch.float64)
    assert torch.equal(net(y=y), torch.full((2, 3), expected, dtype=torch.float64))


LOOP_CARRIED = """spec loop_carried
dims n
data A : real[n]
input y : real[n]
state x : real[n] = 0
layers 1
step:
    let u = {start}
    repeat 3:
        x = x + sum(u) * y
        u = {update}
output x
"""


@pytest.mark.parametrize("start, update, now", [
    # before: `u.sum()` on the second pass summed over the batch too (silently wrong values)
    ("A", "u + y", "per sample although it is the same for every sample"),
    # fuzz statements 1047665 (the 100 000-case run): the second pass read an unbatched value as batched
    ("y", "A", "the same for every sample although it is per sample"),
])
def test_a_loop_that_changes_whether_a_carried_let_is_per_sample_is_located(start, update, now):
    with pytest.raises(CompileError) as info:
        compile_source(LOOP_CARRIED.format(start=start, update=update), "t.unroll")
    first = str(info.value).splitlines()[0]
    assert first == f"t.unroll:9:5: error: `u` is carried to the next pass of this `repeat` loop, and the loop makes it {now} when the loop starts", first


def test_a_carried_let_that_stays_per_sample_runs_like_numpy(one_torch_thread):
    Net = load_text(LOOP_CARRIED.format(start="A * y", update="u + y"), "carried")
    A = np.array([1.0, 2.0, 3.0])
    y = torch.tensor([[1.0, 0.5, -1.0], [2.0, 0.0, 1.0]], dtype=torch.float64)
    out = Net(A=A)(y=y).numpy()
    for b in range(2):
        x, u = np.zeros(3), A * y[b].numpy()
        for _ in range(3):
            x = x + u.sum() * y[b].numpy()
            u = u + y[b].numpy()
        np.testing.assert_allclose(out[b], x, rtol=1e-12)


LITERAL_INTO_DIM_AXIS = """spec literal_into_dim_axis
dims T, n
input y : real[T, n]
state X : real[T + 1, n] = 0
layers 1
step:
    X[3] = y[0]
output X
"""


def test_a_literal_index_into_an_axis_sized_by_dims_is_checked_when_they_are_bound(one_torch_thread):
    # fuzz msa_pmp~1031683 (`X[100] = x0` with X : real[T + 1, ...]): IndexError in forward
    net = load_text(LITERAL_INTO_DIM_AXIS, "literal_into_dim_axis")()
    with pytest.raises(ValueError, match=r"^y: the spec needs `T \+ 1` > `3` for `X\[3\] = y\[0\]` at line 7, "
                                         r"got `T` = 2"):
        net(y=torch.ones(1, 2, 3, dtype=torch.float64))
    out = net(y=torch.ones(1, 3, 3, dtype=torch.float64))  # T = 3: X has 4 rows, X[3] is the last
    assert torch.equal(out[0, 3], torch.ones(3, dtype=torch.float64)) and not out[0, :3].any()


def test_a_diverging_iteration_refused_by_svt_is_not_a_failure_when_numpy_diverges_too(one_torch_thread):
    """Fuzz run 5, statements 2000586: `x = svt(normalize_columns(x), 2.)` thresholds x to zero in layer 1, so
    layer 2 normalises zero columns (0/0).  The runtime refuses the NaN matrix with a ValueError that says the
    iteration diverged; numpy's reference has no defined value either.  The harness counts that as agreement
    (before: a "forward" failure); the same refusal when numpy's values are finite stays a failure."""
    from specgen import statement_program
    from specgen_check import BATCH, _reference_diverges, check

    prog = statement_program(2000586, ())
    assert check(prog, 2000586).ok
    data, inputs, _ = prog.values(2000586, BATCH)
    assert _reference_diverges(prog, data, inputs)
    finite = statement_program(2000587, ())
    data, inputs, _ = finite.values(2000587, BATCH)
    assert not _reference_diverges(finite, data, inputs)
