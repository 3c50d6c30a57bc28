"""Shared by the generated-module contract tests (tests/test_module_contract.py, tests/test_module_load.py):
shipped specs compiled and imported in memory, small sparse-coding data, a private unroll.load cache."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from unroll.compiler.driver import compile_source, make_options, shipped_specs
from unroll.runtime import UnrolledModule

F64, F32 = torch.float64, torch.float32
SHIPPED = shipped_specs()
N, M = 8, 12


@pytest.fixture(autouse=True, scope="module")
def _private_cache(tmp_path_factory):
    """unroll.load in this module never touches ~/.cache/unroll."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("UNROLL_CACHE", str(tmp_path_factory.mktemp("contract_cache")))
        yield


_CLASSES: dict = {}


def klass(spec: str, text: str | None = None, **options):
    """The generated class for a shipped spec (or spec text), compiled and imported in memory."""
    key = (spec, text, tuple(sorted((k, str(v)) for k, v in options.items())))
    if key not in _CLASSES:
        text = text if text is not None else SHIPPED[spec].read_text()
        src = compile_source(text, f"{spec}.unroll", make_options(**options))
        module = types.ModuleType(f"contract_{spec}_{len(_CLASSES)}")
        exec(compile(src, f"<{spec}>", "exec"), module.__dict__)  # noqa: S102 - importing compiler output
        (cls,) = [
            v
            for v in vars(module).values()
            if isinstance(v, type) and issubclass(v, UnrolledModule) and v is not UnrolledModule
        ]
        _CLASSES[key] = cls
    return _CLASSES[key]


def data(seed=0, n=N, m=M, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=F64)
    A = A / torch.linalg.vector_norm(A, dim=0, keepdim=True)
    y = torch.randn(5, n, generator=g, dtype=F64)
    return A.to(dtype), y.to(dtype)


def np_soft(v, t):
    return np.sign(v) * np.maximum(np.abs(v) - t, 0)
