"""Shared by the family A tests (tests/test_family_a.py, tests/test_family_a_training.py): tolerances, helpers
that build and trace the shipped specs, and the catalog's problems as module fixtures."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import reference as ref  # tests/ is on sys.path (conftest.py)
import torch
import unroll

LAM = 0.05          # catalog A1 test value
TOL = 1e-10         # float64 equivalence, relative to the largest reference entry
K_SPARSE = 4        # sparsity of the catalog A1 codes (also IHT's k here)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------

def rel(a, b):
    """max|a - b| / max|b| (b == 0 everywhere: plain max|a|)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    scale = np.abs(b).max()
    return float(np.abs(a - b).max() / (scale if scale > 0 else 1.0))


def to_np(t):
    return t.detach().cpu().numpy() if torch.is_tensor(t) else np.asarray(t)


@functools.cache
def net_class(spec, layers=None):
    return unroll.load(spec, layers=layers)


def make(spec, A, layers=None, **hyper):
    A = torch.from_numpy(A) if isinstance(A, np.ndarray) else A
    return net_class(spec, layers)(A=A, **hyper)


def trace_of(net, y, key):
    with torch.no_grad():
        tr = net.trace(torch.as_tensor(y))
    assert len(tr) == net.num_layers + 1
    return [to_np(step[key]) for step in tr]


def assert_trace_matches(got, want, tol=TOL, what=""):
    """Layer-by-layer comparison; layer 0 (the zero initial state) must match exactly."""
    assert len(got) == len(want), (len(got), len(want))
    np.testing.assert_array_equal(got[0], want[0])
    errs = [rel(g, w) for g, w in zip(got[1:], want[1:])]
    worst = int(np.argmax(errs))
    assert errs[worst] <= tol, f"{what}: layer {worst + 1}: relative error {errs[worst]:.3e} > {tol:g}"
    return max(errs)


def spectral_sq(A):
    return float(np.linalg.norm(A, 2) ** 2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny problems: threads only add overhead


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lasso():
    """Catalog A1 data: A 20x50 with unit-norm columns, 4-sparse codes, noise 0.01."""
    A, x_star, y = ref.lasso_problem(n=20, m=50, k=K_SPARSE, noise=0.01, batch=8, seed=0)
    return A, x_star, y


@pytest.fixture(scope="module")
def lasso_solution(lasso):
    """The exact lasso minimiser per sample (20,000 numpy ISTA steps, KKT-checked)."""
    A, _, y = lasso
    x = ref.ista(A, y, LAM, 20000)[-1]
    assert max(ref.lasso_kkt_residual(A, y, x, LAM)) < 1e-12
    return x


@pytest.fixture(scope="module")
def cs_problem():
    """Compressed sensing: A 250x500 with i.i.d. N(0, 1/250) entries (catalog A15),
    Bernoulli(0.1)-Gaussian codes, noise sigma = 0.01."""
    A, x, y = ref.bernoulli_gaussian_problem(n=250, m=500, pnz=0.1, batch=16, seed=0,
                                             normalize_columns=False)
    y = y + 0.01 * np.random.default_rng(1).standard_normal(y.shape)
    return A, x, y
