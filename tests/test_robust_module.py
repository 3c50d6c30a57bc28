"""Generated modules on bad data and odd use (issue 11 §3): every bad argument is a TypeError/ValueError that
names the argument and says what was expected, never a torch or LAPACK internal.  Each test failed before its
fix (the comment says how)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from specgen_check import build_class
from unroll.compiler import compile_source
from unroll.compiler.driver import make_options
from unroll.runtime import UnrolledModule

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load(name: str, layers: int):
    """The class of a shipped spec at `layers` (compiled and executed here, as tests/specgen_check.py does)."""
    source = compile_source((ROOT / "dsl_specs" / f"{name}.unroll").read_text(), f"{name}.unroll",
                            make_options(layers=layers))
    namespace: dict = {}
    exec(compile(source, f"<{name}>", "exec"), namespace)  # noqa: S102 - compiler output
    return next(v for v in namespace.values() if isinstance(v, type) and issubclass(v, UnrolledModule)
                and v is not UnrolledModule)


@pytest.fixture(scope="module")
def Lista():
    return _load("lista", 3)


def _dictionary(n=5, m=8, seed=0):
    A = np.random.default_rng(seed).standard_normal((n, m))
    return A / np.linalg.norm(A, axis=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_data_is_named(Lista, bad):
    # before: torch.linalg.matrix_norm raised a LAPACK error that does not name A (NaN), or `theta: a positive
    # parameter needs a positive default` blamed a parameter (Inf)
    A = _dictionary()
    A[2, 3] = bad
    with pytest.raises(ValueError, match=r"^A: 1 of 40 entries are NaN or infinite; the data must be finite"):
        Lista(A=A)


def test_non_finite_hyperparameter_is_named(Lista):
    with pytest.raises(ValueError, match=r"^lam: expected a finite number, got nan"):
        Lista(A=_dictionary(), lam=float("nan"))


def test_empty_data_and_empty_inputs_are_named(Lista):
    with pytest.raises(ValueError, match=r"^A: axis 1 \(`m`\) has size 0"):
        Lista(A=np.zeros((5, 0)))
    net = Lista(A=_dictionary())
    with pytest.raises(ValueError, match=r"^y: a batch of 0 samples"):
        net(torch.zeros(0, 5, dtype=torch.float64))


@pytest.mark.parametrize("convert", [lambda A: A.tolist(), lambda A: (A * 100).astype(np.int64),
                                     lambda A: torch.as_tensor((A * 100).astype(np.int32))],
                         ids=["list", "int64 array", "int32 tensor"])
def test_lists_and_integer_data_give_float64_modules(Lista, convert):
    # before: float32 modules (torch's default dtype), silently losing precision
    net = Lista(A=convert(_dictionary()))
    assert net.We.dtype == torch.float64
    assert net(torch.zeros(2, 5, dtype=torch.float64)).dtype == torch.float64


STREAMING = """spec streaming "One element of an input sequence per layer"
dims n, m, T
data A : real[n, m]
input ys : real[T, n]
state x : real[m] = 0
layers 8
step:
    x = x + 0.1 * A.T @ (ys[layer] - A @ x)
output x
"""


def test_input_sequence_shorter_than_the_depth_is_named():
    # before: IndexError: index 5 is out of bounds for dimension 1 with size 5
    net = build_class(STREAMING, "streaming")(A=_dictionary())
    assert net(torch.randn(2, 8, 5, dtype=torch.float64)).shape == (2, 8)
    with pytest.raises(ValueError, match=r"^ys: axis 1 is `T` = 5, but the spec needs `T` >= 8 for `ys\[layer\]`"):
        net(torch.randn(2, 5, 5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"^ys: axis 0 is `T` = 7"):  # one unbatched sample
        net(torch.randn(7, 5, dtype=torch.float64))


COMPLEX = """spec cplx
dims n
data Z : complex[n]
input z : complex[n]
param w : complex[n] = Z learned
state x : complex[n] = 0
layers 2
step:
    x = x + w * z
output x
"""


def test_complex_input_dtype_hint_keeps_the_imaginary_part():
    # before: "convert the input (`z.to(torch.float64)`)", which drops the imaginary part
    net = build_class(COMPLEX, "cplx")(Z=np.ones(3) + 1j)
    with pytest.raises(TypeError, match=r"convert the input \(`z\.to\(torch\.complex128\)`\)"):
        net(torch.ones(2, 3, dtype=torch.complex64))


def test_half_and_to_float16_agree_for_complex_parameters():
    # before: .half() left the complex parameter complex128, .to(torch.float16) made it complex32
    cls = build_class(COMPLEX, "cplx")
    a = cls(Z=np.ones(3) + 1j).half()
    b = cls(Z=np.ones(3) + 1j).to(torch.float16)
    assert a.w.dtype == b.w.dtype == torch.complex32


def test_trace_is_thread_safe(Lista):
    # before: trace() read a flag that every concurrent forward overwrote (4 wrong shapes in 300 calls)
    net = Lista(A=_dictionary())
    wrong = []

    def run(batched: bool):
        for _ in range(150):
            y = torch.randn(4, 5, dtype=torch.float64) if batched else torch.randn(5, dtype=torch.float64)
            states = net.trace(y)
            expected = (4, 8) if batched else (8,)
            wrong.extend(s["x"].shape for s in states if tuple(s["x"].shape) != expected)

    threads = [threading.Thread(target=run, args=(flag,)) for flag in (True, False)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong


class Blur(torch.nn.Module):
    """A user operator that is a torch module with a buffer and a trainable parameter."""

    def __init__(self, size: int):
        super().__init__()
        self.register_buffer("kernel", torch.eye(size) * 2)
        self.gain = torch.nn.Parameter(torch.ones(()))

    def forward(self, v):
        return self.gain * v @ self.kernel

    def adjoint(self, v):
        return self.gain * v @ self.kernel.T


OPERATOR = """spec with_operator
dims n
data K : operator[n <- n]
input y : real[n]
state x : real[n] = 0
layers 2
step:
    x = x + K.H(y - K(x))
output x
"""


@pytest.mark.parametrize("wrap", [lambda m: m, lambda m: (m.forward, m.adjoint)], ids=["module", "bound methods"])
def test_torch_module_operator_is_a_submodule(wrap):
    # before: not registered: `.to()` left its buffer float32 and `state_dict` had no entry for it
    blur = Blur(3)
    net = build_class(OPERATOR, "with_operator")(K=wrap(blur), n=3, dtype=torch.float64).to(torch.float64)
    assert blur.kernel.dtype == torch.float64
    assert any(k.endswith("kernel") for k in net.state_dict())
    assert any(p is blur.gain for p in net.parameters())
    y = torch.randn(2, 3, dtype=torch.float64)
    x1 = 2 * y  # K = K^H = 2 I: x1 = K^H (y - K 0), x2 = x1 + K^H (y - K x1)
    expected = x1 + 2 * (y - 2 * x1)
    torch.testing.assert_close(net(y), expected, rtol=1e-12, atol=1e-12)


def test_repr_shows_the_spec_depth_and_parameters(Lista):
    # before: `Lista(\n  (theta): Positive()\n)`
    text = repr(Lista(A=_dictionary()))
    assert "spec='lista', layers=3, inputs=(y), outputs=(x)" in text
    assert "dims: n=5, m=8" in text
    assert "param Wt: [8, 8] float64, shared, learned (default eye(m) - A.T @ A / L)" in text
    assert "param theta: [] float64, shared, learned, positive (default lam / L)" in text
    untied = repr(_load("lista_untied", 3)(A=_dictionary()))
    assert "param theta: [3] float64, per_layer, learned" in untied


def test_kernel_larger_than_the_image_is_named():
    # found by the mutation fuzzer on the shipped dublid/admm_csnet: torch "expanded size" RuntimeError before
    Net = _load("admm_csnet", 2)
    mask = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"^pad_kernel: a 3 x 3 kernel does not fit in a 2 x 3 image"):
        Net(mask=mask, d0=np.random.default_rng(0).standard_normal((2, 3, 3)))


def test_zero_hop_length_is_named():
    # found by the mutation fuzzer (misi with `hyper hop : int = 0`): ZeroDivisionError inside rt.stft before
    import unroll.runtime as rt

    with pytest.raises(ValueError, match=r"^stft: the hop length must be a positive integer, got 0"):
        rt.stft(torch.zeros(1, 16, dtype=torch.float64), 5, 3, 0)
    with pytest.raises(ValueError, match=r"^istft: the hop length must be a positive integer, got 0"):
        rt.istft(torch.zeros(1, 5, 3, dtype=torch.complex128), 16, 0)


def test_svt_of_a_diverged_iterate_is_named():
    # found by the mutation fuzzer (the manual's low-rank example with a 1e300 step): LAPACK's "failed to converge"
    import unroll.runtime as rt

    X = torch.ones(2, 3, 3, dtype=torch.float64)
    X[1, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^svt: the matrix has NaN or infinite entries"):
        rt.svt(X, 0.1)


# the open findings of the 100 000-case mutation run (tests/fuzz_known_bugs.md, "Fixed after the long run")
def test_overflowing_per_layer_default_names_the_parameter():
    # before: OverflowError: (34, 'Numerical result out of range') from `decay ** layer` at construction
    text = (ROOT / "dsl_specs" / "hqs_generic.unroll").read_text().replace("layers 50", "layers 4")
    HqsGeneric = build_class(text, "hqs_generic")
    with pytest.raises(ValueError, match=r"^zeta: its per-layer default at layer 2 overflowed"):
        HqsGeneric(A=_dictionary(), decay=1e300)
    assert torch.isfinite(HqsGeneric(A=_dictionary(), decay=0.5).zeta).all()


UNDERFLOWING_CONSTANT = """spec underflow
dims n, m
data A : real[n, m]
hyper lam = 0.1
hyper power = 2.0
input y : real[n]
let L = (0.5 * opnorm(A))^power
let t = lam / L
let g = lam ** power
state x : real[m] = 0
layers 2
step:
    x = soft(x - g * t * (A.T @ (A @ x - y)), t)
output x
"""


def test_constant_that_underflows_to_zero_names_the_statement():
    # before: ZeroDivisionError: float division by zero at construction (L = 0.0 as a Python float)
    from unroll.runtime.loader import load_text

    Underflow = load_text(UNDERFLOWING_CONSTANT, "underflow")  # imported from a file: the statement is named
    A = _dictionary()
    with pytest.raises(ValueError, match=r"^t: computing `line 8: let t = lam / L`, Python-number arithmetic "
                                         r"divided by zero .* with the hyperparameters lam=0.1, power=1e\+300"):
        Underflow(A=A, power=1e300)
    with pytest.raises(ValueError, match=r"^g: computing `line 9: let g = lam \*\* power`, Python-number arithmetic "
                                         r"overflowed \(\(34, 'Numerical result out of range'\)\) with the "
                                         r"hyperparameters lam=10.0, power=400.0"):
        Underflow(A=A, lam=10.0, power=400.0)
    # compiled without a file (exec of a string): the class is named instead of the statement
    with pytest.raises(ValueError, match=r"^Underflow: computing the constants, Python-number arithmetic divided"):
        build_class(UNDERFLOWING_CONSTANT, "underflow")(A=A, power=1e300)
    net = Underflow(A=A)
    assert net.t == pytest.approx(0.1 / (0.5 * np.linalg.norm(A, 2)) ** 2, rel=1e-12)


KALMAN_LIKE = """spec dim_index
dims T, k, n
data B : real[n, k]
input ys : real[T, k]
state x : real[k] = 0
layers 2
step:
    x = x + ys[n] + B[0]
output x
"""


def test_index_that_is_another_dim_is_checked_when_the_dims_are_bound():
    # before: IndexError: index 3 is out of bounds for dimension 1 with size 3 in forward
    net = build_class(KALMAN_LIKE, "dim_index")(B=np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"^ys: the spec needs `T` > `n` for `ys\[n\]` at line 8, got `T` = 3, "
                                         r"`n` = 3 \(shape \[1, 3, 2\]\)"):
        net(torch.zeros(1, 3, 2, dtype=torch.float64))
    ys = torch.arange(8, dtype=torch.float64).reshape(1, 4, 2)
    assert torch.equal(net(ys), 2 * (ys[:, 3] + 1))  # T = 4 > n = 3: ys[n] is the last row


MIN_OF_DATA_CONSTANT = """spec min_const
dims n, m
data A : real[n, m]
hyper p = 0.5
hyper pmax = 2.0
let L = opnorm(A)^2
param t : real = min(p * (L + 1), pmax)
param s : real = max(p / L, 0.25)
input y : real[n]
state x : real[m] = 0
layers 2
step:
    x = x - t * s * (A.T @ (A @ x - y))
output x
"""


def test_min_and_max_of_a_constant_kept_as_a_python_number():
    # before: TypeError: clamp_max() received an invalid combination of arguments - got (float, float)
    A = _dictionary()
    net = build_class(MIN_OF_DATA_CONSTANT, "min_const")(A=A)
    L = np.linalg.norm(A, 2) ** 2
    assert float(net.t.detach()) == pytest.approx(min(0.5 * (L + 1), 2.0), rel=1e-12)
    assert float(net.s.detach()) == pytest.approx(max(0.5 / L, 0.25), rel=1e-12)
