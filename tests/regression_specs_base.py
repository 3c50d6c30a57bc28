"""The shared pieces of the regression specs (tests/regression_specs.py, tests/regression_specs_fuzz.py): the
`Regression` record, the batch size and the seeded random data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

B = 3  # batch
RNG = np.random.default_rng(7)


def _real(*shape):
    return RNG.standard_normal(shape)


def _complex(*shape):
    return RNG.standard_normal(shape) + 1j * RNG.standard_normal(shape)


@dataclass
class Regression:
    spec: str
    data: dict  # constructor arguments
    inputs: dict  # forward inputs, batched
    expected: Callable[[dict, dict], tuple]  # (data, inputs) -> outputs, batched where the spec's are
    options: dict = field(default_factory=dict)  # extra constructor keywords (dims, dtype)
