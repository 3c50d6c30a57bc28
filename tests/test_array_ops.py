"""sqdist, diag, trace, diff / diff_adj and shift as compiled (on a batch, unbatched operands mixed in),
against numpy written from the definitions (scipy's cdist for the distances); gradients in float64;
the linear ones (diag both ways, trace, diff, shift) pass the adjoint dot-product test, and
`diff_adj` is exactly the transpose of the difference matrix."""

import types

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from torch.autograd import gradcheck
from unroll import runtime as rt
from unroll.compiler.diagnostics import CompileError
from unroll.compiler.driver import compile_source, make_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPEC = """spec arrays "the array operators"
dims n, m, d
data Y : real[m, d]
input X : real[n, d]
input v : real[n]
input M : real[n, n]
state s : real = 0
layers 1
step:
    s = s
final:
    let D = sqdist(X, Y)
    let E = sqdist(v, v)
    let F = sqdist(Y, X)
    let dg = diag(v)
    let dm = diag(M)
    let tr = trace(M)
    let dv = diff(v)
    let dX0 = diff(X, axis=0)
    let dX1 = diff(X, 1)
    let adj1 = diff_adj(dX1, axis=1)
    let adjv = diff_adj(v)
    let sh = shift(v, 2)
    let shX = shift(X, -1, axis=1)
    let shY = shift(Y, 1, 0)
output D, E, F, dg, dm, tr, dv, dX0, dX1, adj1, adjv, sh, shX, shY
"""
NAMES = ["D", "E", "F", "dg", "dm", "tr", "dv", "dX0", "dX1", "adj1", "adjv", "sh", "shX", "shY"]
N, MM, DD, BATCH = 5, 4, 3, 2


def _module(source):
    code = compile_source(source, "arrays.unroll", make_options())
    namespace = types.ModuleType("unroll_arrays_generated")
    exec(compile(code, "<generated>", "exec"), namespace.__dict__)  # noqa: S102 - importing compiler output
    (cls,) = [v for v in vars(namespace).values()
              if isinstance(v, type) and issubclass(v, rt.UnrolledModule) and v is not rt.UnrolledModule]
    return cls


NET = _module(SPEC)


def _data(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((MM, DD)), rng.standard_normal((BATCH, N, DD)), rng.standard_normal((BATCH, N)),
            rng.standard_normal((BATCH, N, N)))


def _diff_matrix(s):
    """The forward difference as an (s-1) x s matrix: row i is e_{i+1} - e_i."""
    return np.eye(s)[1:] - np.eye(s)[:-1]


def numpy_forms(Y, X, v, M):
    """One sample, from the definitions."""
    Ds = _diff_matrix(N)
    return [cdist(X, Y, "sqeuclidean"), (v[:, None] - v[None, :]) ** 2, cdist(Y, X, "sqeuclidean"),
            np.diag(v), np.array([M[i, i] for i in range(N)]), sum(M[i, i] for i in range(N)), Ds @ v, Ds @ X,
            X @ _diff_matrix(DD).T, (X @ _diff_matrix(DD).T) @ _diff_matrix(DD), _diff_matrix(N + 1).T @ v,
            np.array([v[(i - 2) % N] for i in range(N)]),
            np.array([[X[i, (j + 1) % DD] for j in range(DD)] for i in range(N)]),
            np.array([Y[(i - 1) % MM] for i in range(MM)])]


def test_every_form_matches_numpy():
    Y, X, v, M = _data()
    net = NET(Y=torch.tensor(Y))
    outs = [o.numpy() for o in net(torch.tensor(X), torch.tensor(v), torch.tensor(M))]
    for b in range(BATCH):
        for name, got, want in zip(NAMES, outs, numpy_forms(Y, X[b], v[b], M[b])):
            sample = got if name == "shY" else got[b]  # shift(Y) depends on data only: unbatched
            np.testing.assert_allclose(sample, want, rtol=1e-12, atol=1e-13, err_msg=name)


def test_sqdist_is_zero_on_the_diagonal_and_never_negative():
    Y, X, v, M = _data(1)
    net = NET(Y=torch.tensor(Y))
    X = np.repeat(X[:, :1] * 1e4, N, axis=1) + np.random.default_rng(2).standard_normal((BATCH, N, DD)) * 1e-9
    E = net(torch.tensor(X), torch.tensor(v), torch.tensor(M))[1]  # sqdist(v, v): exactly 0 on the diagonal
    assert (E >= 0).all() and (torch.diagonal(E, dim1=-2, dim2=-1) == 0).all()


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_gradients_in_float64(index):
    Y, X, v, M = _data(3)
    net = NET(Y=torch.tensor(Y))
    inputs = tuple(torch.tensor(a, requires_grad=True) for a in (X, v, M))
    assert gradcheck(lambda *a: net(*a)[index], inputs)


def _dot(a, b):
    return float(np.sum(np.asarray(a) * np.asarray(b)))


def test_adjoint_dot_products():
    rng = np.random.default_rng(4)
    t = torch.tensor
    v, w = rng.standard_normal(N), rng.standard_normal((N, N))
    # diag: vector -> matrix and matrix -> vector are each other's adjoint
    assert abs(_dot(torch.diag_embed(t(v)), w) - _dot(v, torch.diagonal(t(w), dim1=-2, dim2=-1))) < 1e-12
    # trace: <tr(W), s> = <W, s I>
    s = 0.7
    assert abs(float(torch.diagonal(t(w), dim1=-2, dim2=-1).sum(-1)) * s - _dot(w, s * np.eye(N))) < 1e-12
    # diff along each axis of a stack, and its adjoint kernel
    x = rng.standard_normal((2, N, DD))
    for axis in (0, 1, 2):
        y = rng.standard_normal(np.diff(x, axis=axis).shape)
        left = _dot(torch.diff(t(x), dim=axis), y)
        right = _dot(x, rt.diff_adj(t(y), axis))
        assert abs(left - right) < 1e-12 * (1 + abs(left)), axis
    # shift by k: its adjoint is the shift by -k
    for k in (1, -2, 7):
        y = rng.standard_normal(x.shape)
        assert abs(_dot(torch.roll(t(x), k, dims=1), y) - _dot(x, torch.roll(t(y), -k, dims=1))) < 1e-12


def test_diff_adj_is_the_transpose_of_the_difference_matrix():
    for s in (2, 3, 6):
        columns = [rt.diff_adj(torch.tensor(e), 0).numpy() for e in np.eye(s - 1)]
        np.testing.assert_array_equal(np.stack(columns, axis=1), _diff_matrix(s).T)


def _compile_error(line: str) -> str:
    source = f"""spec bad
dims n, m, d
input X : real[n, d]
input v : real[n]
input Z : real[n, m]
state s : real[n, n] = 0
layers 1
step:
    {line}
output s
"""
    with pytest.raises(CompileError) as err:
        compile_source(source, "bad.unroll")
    return str(err.value)


@pytest.mark.parametrize("line, message", [
    ("s = sqdist(X, Z)", "`sqdist` needs points of the same dimension, got [n, d] and [n, m]"),
    ("s = sqdist(X, v)", "`sqdist` needs points of the same dimension"),
    ("s = s + diag(Z)[0]", "`diag` takes a vector (→ a diagonal matrix) or square matrices"),
    ("s = s + trace(Z)", "`trace` needs square matrices, got real[n, m]"),
    ("s = s + sum(diff(X))", "`diff` of real[n, d] needs an axis"),
    ("s = s + sum(diff(X, axis=2))", "axis 2 is out of range for real[n, d]"),
    ("s = s + sum(shift(X, layer, 0))", "argument 2 of `shift` must be an integer literal"),
    ("s = s + sum(shift(X, 1, dim=0))", "`shift` has no keyword argument `dim`"),
])
def test_misuse_is_a_located_error(line, message):
    text = _compile_error(line)
    assert "bad.unroll:9:" in text and message in text, text
