"""Shared pytest setup (kept minimal and generic).

* tests/ is put on sys.path, so test modules can `import reference`.
* Every test session compiles into its own fresh `UNROLL_CACHE` directory, so
  results never depend on (or pollute) the user's ~/.cache/unroll.
"""

import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(scope="session", autouse=True)
def _private_unroll_cache(tmp_path_factory):
    old = os.environ.get("UNROLL_CACHE")
    os.environ["UNROLL_CACHE"] = str(tmp_path_factory.mktemp("unroll_cache"))
    yield
    if old is None:
        os.environ.pop("UNROLL_CACHE", None)
    else:
        os.environ["UNROLL_CACHE"] = old


@pytest.fixture
def one_torch_thread():
    """Run a test with one intra-op thread (tiny tensors: threads only add overhead, ~10x on a busy
    2-core machine); the previous setting is restored.  torch is imported only when a test asks."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="session", autouse=True)
def _one_blas_thread():
    """numpy/scipy references use one BLAS thread: the test problems are small, and on a busy 2-core
    machine threads only add overhead (a dense SPARCOM reference: 6.2 s with default threads, 0.35 s
    with one)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # threadpoolctl comes with scikit-learn (the dev extra); without it, do nothing
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield
