"""Regressions in the registry's emissions and their runtime kernels: small specs compiled with
compile_source, run in float64 and compared with numpy written from the definitions.

* precedence: an operand pasted to the right of `*`/`@` must keep its parentheses
  (`dot(a, u @ B)` once computed `(a * u) @ B`);
* user operators given as a matrix map images to images in both directions (`K.H(y)` once
  returned [batch, h*w] for `operator[m <- h, w]`);
* mixed real/complex operands of matmul, solve and chanmix are promoted (torch refuses them);
* `svt` with one threshold per sample; `dot` of per-sample scalars.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from unroll.compiler.driver import compile_source, make_options

pytestmark = pytest.mark.usefixtures("one_torch_thread")
F64 = torch.float64


def build(text: str):
    """Compile spec text and import the generated class (no disk cache involved)."""
    src = compile_source(text, "t.unroll", make_options())
    module = types.ModuleType("unroll_test_generated")
    exec(compile(src, "<generated>", "exec"), module.__dict__)  # noqa: S102 - importing compiler output
    from unroll.runtime import UnrolledModule

    (cls,) = [v for v in vars(module).values()
              if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule]
    return cls


def close(got, want, what="", tol=1e-12):
    got = got.detach().numpy() if torch.is_tensor(got) else np.asarray(got)
    assert got.shape == np.shape(want), (what, got.shape, np.shape(want))
    error = np.abs(got - want).max() / max(1.0, np.abs(want).max())
    assert error <= tol, (what, error)


def crandn(rng, *shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# --------------------------------------------------------------------------- precedence
PRECEDENCE = """spec right_operands "parenthesised right operands"
dims n, m
data B : real[n, m]
data a : real[m]
input u : real[n]
input x : real[m]
input X : real[m, m]
state s1 : real = 0
state s2 : real = 0
state s3 : real = 0
state s4 : real = 0
state v : real[m] = 0
layers 1
step:
    s1 = dot(a, u @ B)
    s2 = x @ (u @ B)
    s3 = a @ (u @ B - x)
    s4 = dot(x, u @ B) / dot(u @ B, a)
    v = X @ (u @ B) - x * (u @ B)
output s1, s2, s3, s4, v
"""


def test_right_operands_of_products_keep_their_parentheses():
    rng = np.random.default_rng(0)
    # n == m: `(a * u) @ B` is then computable, and wrong
    B, a = rng.standard_normal((3, 3)), rng.standard_normal(3)
    u, x, X = rng.standard_normal((2, 3)), rng.standard_normal((2, 3)), rng.standard_normal((2, 3, 3))
    outs = build(PRECEDENCE)(B=torch.tensor(B), a=torch.tensor(a))(torch.tensor(u), torch.tensor(x), torch.tensor(X))
    uB = u @ B  # one row per sample
    want = [uB @ a, np.sum(x * uB, axis=1), (uB - x) @ a, np.sum(x * uB, axis=1) / (uB @ a),
            np.einsum("bij,bj->bi", X, uB) - x * uB]
    for i, (got, expected) in enumerate(zip(outs, want)):
        close(got, expected, f"output {i}")


# --------------------------------------------------------------------------- user operators given as a matrix
IMAGE_OPERATOR = """spec image_operator "a matrix operator between images and measurements"
dims m, h, w
data K : operator[m <- h, w]
data P : operator[h, w <- m]
input y : real[m]
input v : real[h, w]
state back : real[h, w] = 0
state fwd : real[m] = 0
state image : real[h, w] = 0
state meas : real[m] = 0
layers 1
step:
    back = K.H(y)
    fwd = K(v)
    image = P(y)
    meas = P.H(v)
output back, fwd, image, meas
"""


def test_matrix_operator_maps_images_in_both_directions():
    rng = np.random.default_rng(1)
    m, h, w = 5, 3, 4
    M, Q = rng.standard_normal((m, h * w)), rng.standard_normal((h * w, m))  # K and P as matrices
    net = build(IMAGE_OPERATOR)(torch.tensor(M), torch.tensor(Q), m=m, h=h, w=w)
    y, v = rng.standard_normal((2, m)), rng.standard_normal((2, h, w))
    back, fwd, image, meas = net(torch.tensor(y), torch.tensor(v))
    close(back, (y @ M).reshape(2, h, w), "K.H(y)")
    close(fwd, v.reshape(2, h * w) @ M.T, "K(v)")
    close(image, (y @ Q.T).reshape(2, h, w), "P(y)")
    close(meas, v.reshape(2, h * w) @ Q, "P.H(v)")
    back1, fwd1, image1, meas1 = net(torch.tensor(y[0]), torch.tensor(v[0]))  # one unbatched sample
    close(back1, (M.T @ y[0]).reshape(h, w), "K.H(y), unbatched")
    close(fwd1, M @ v[0].reshape(-1), "K(v), unbatched")
    close(image1, (Q @ y[0]).reshape(h, w), "P(y), unbatched")
    close(meas1, Q.T @ v[0].reshape(-1), "P.H(v), unbatched")


# --------------------------------------------------------------------------- mixed real/complex operands
MIXED = """spec mixed "real matrices on complex values"
dims n, m, c, h, w
data A : real[n, m]
data G : real[n, n]
data Ac : complex[n, m]
data zc : complex[n]
data Wm : real[m, c]
input z : complex[n]
input Z : complex[n, 2]
input y : real[m]
input im : complex[c, h, w]
state r1 : complex[m] = 0
state r2 : complex[n] = 0
state r3 : complex[m] = 0
state r4 : complex[n] = 0
state r5 : complex[m, 2] = 0
state r6 : complex[n, 2] = 0
state r7 : complex[m] = 0
state r8 : complex[n] = 0
state r9 : complex[m, h, w] = 0
layers 1
step:
    r1 = A.T @ z
    r2 = A @ (A.H @ z)
    r3 = z @ A + A.T @ zc
    r4 = solve(G, z) + solve(G, zc)
    r5 = A.T @ Z
    r6 = solve(G, Z)
    r7 = adjoint(A) @ zc
    r8 = Ac @ y
    r9 = chanmix(Wm, im)
output r1, r2, r3, r4, r5, r6, r7, r8, r9
"""


def test_real_operands_of_complex_linear_algebra_are_promoted():
    rng = np.random.default_rng(2)
    n, m, c, h, w, batch = 4, 3, 2, 3, 2, 2
    A, G = rng.standard_normal((n, m)), rng.standard_normal((n, n)) + 4 * np.eye(n)
    Ac, zc, Wm = crandn(rng, n, m), crandn(rng, n), rng.standard_normal((m, c))
    z, Z = crandn(rng, batch, n), crandn(rng, batch, n, 2)
    y, im = rng.standard_normal((batch, m)), crandn(rng, batch, c, h, w)
    net = build(MIXED)(A=torch.tensor(A), G=torch.tensor(G), Ac=torch.tensor(Ac), zc=torch.tensor(zc),
                       Wm=torch.tensor(Wm))
    outs = net(*(torch.tensor(t) for t in (z, Z, y, im)))
    want = [
        z @ A,
        z @ A @ A.T,
        z @ A + A.T @ zc,
        np.linalg.solve(G, z.T).T + np.linalg.solve(G, zc),
        np.einsum("nm,bnk->bmk", A, Z),
        np.stack([np.linalg.solve(G, Zb) for Zb in Z]),
        A.T @ zc,  # no input involved: an unbatched state
        y @ Ac.T,
        np.einsum("mc,bchw->bmhw", Wm, im),
    ]
    for i, (got, expected) in enumerate(zip(outs, want), start=1):
        assert got.dtype == torch.complex128, f"r{i}"
        close(got, expected, f"r{i}")


# --------------------------------------------------------------------------- per-sample thresholds of svt
SVT = """spec svt_per_sample "singular value thresholding with one threshold per sample"
dims p, q
input X : real[p, q]
input t : real
state Y : real[p, q] = 0
layers 1
step:
    Y = svt(X, 0.5 * t)
output Y
"""


def test_svt_with_one_threshold_per_sample():
    rng = np.random.default_rng(3)
    X, t = rng.standard_normal((3, 4, 3)), rng.uniform(0.5, 2.0, size=3)
    got = build(SVT)()(torch.tensor(X), torch.tensor(t))
    want = []
    for Xb, tb in zip(X, t):
        U, s, Vh = np.linalg.svd(Xb, full_matrices=False)
        want.append((U * np.maximum(s - 0.5 * tb, 0)) @ Vh)
    close(got, np.stack(want))


# --------------------------------------------------------------------------- dot of per-sample scalars
DOT_SCALARS = """spec dot_scalars "the inner product of two scalars of each sample"
input t : real
state s : real = 0
layers 1
step:
    s = dot(t, 2 * t)
output s
"""


def test_dot_of_scalars_stays_per_sample():
    t = np.array([1.0, 2.0, -3.0])
    close(build(DOT_SCALARS)()(torch.tensor(t)), 2 * t * t)  # once `.sum(dim=())`: a sum over the batch
