"""Memory of backward mode `checkpoint:k` (runtime/backward.py), counted in tensor bytes with
runtime/memory_profile.TensorMemory (exact: every allocation and free of a tensor buffer).

What a checkpointed forward + backward may hold at once: the gradient of each stacked per-layer
parameter (one [layers, ...] tensor, assembled once), one state per segment boundary, and what an
unrolled network of one segment (k layers) needs.  The tests fail when a segment's backward allocates
a full-depth gradient (a zero-filled [layers, ...] tensor per segment or per layer), when a segment keeps
all layers' parameter slices as leaves, or when one segment's values outlive it into the next.
"""

import pytest
import torch
import unroll
from unroll.runtime.memory_profile import TensorMemory

N, M, BATCH = 16, 64, 8  # We is [layers, 64, 16]: one layer's weights (8 KiB) = 2 states (4 KiB each)


def _measure(layers: int, mode: str):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(N, M, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0)
    y = torch.randn(BATCH, N, generator=g, dtype=torch.float64)
    net = unroll.load("lista_cp", layers=layers, backward=mode)(A=A, lam=0.05)
    with TensorMemory() as mem:
        net(y).square().sum().backward()
    assert net.We.grad is not None and net.We.grad.abs().max() > 0
    return mem, net


STATE = BATCH * M * 8  # bytes of the state x
LAYER = M * N * 8  # bytes of one layer's We


def test_tensor_memory_counts_a_known_block():
    with TensorMemory() as mem:
        a = torch.zeros(1000, dtype=torch.float64)  # 8000 bytes, kept
        b = torch.ones(3000, dtype=torch.float64)  # 24000 bytes, freed below
        del b
        c = torch.zeros(500, dtype=torch.float64)  # 4000 bytes, kept
    assert mem.peak == 8000 + 24000 and mem.retained == 8000 + 4000
    assert mem.allocations == [8000, 24000, 4000]
    del a, c


@pytest.mark.parametrize("segment", [1, 4, 5])
def test_segments_allocate_no_full_depth_gradient(one_torch_thread, segment):
    """The only allocation as large as the stacked We is its gradient, allocated once."""
    mem, net = _measure(24, f"checkpoint:{segment}")
    full = [size for size in mem.allocations if size >= net.We.nbytes]
    assert full == [net.We.nbytes]


def test_peak_grows_with_depth_by_the_gradient_and_boundary_states_only(one_torch_thread):
    """Twice the layers (same segment length): the peak grows by the 24 more rows of We's gradient and
    the 6 more boundary states, plus the 24 more entries of theta (its reparametrisation and gradient)."""
    small, _ = _measure(24, "checkpoint:4")
    large, _ = _measure(48, "checkpoint:4")
    expected = 24 * LAYER + 6 * STATE
    assert expected <= large.peak - small.peak <= expected + 24 * 8 * 4


@pytest.mark.parametrize("layers,segment", [(24, 4), (26, 4), (30, 6)])
def test_peak_is_gradient_boundaries_and_one_unrolled_segment(one_torch_thread, layers, segment):
    """At most: the full gradient of We, one state per boundary, and the peak of an unrolled network of
    `segment` layers (which holds its own gradient as well).  Keeping one segment's per-layer gradients
    or its boundary state into the next segment's recomputation exceeds it."""
    mem, net = _measure(layers, f"checkpoint:{segment}")
    unrolled, _ = _measure(segment, "unroll")
    boundaries = -(-layers // segment)
    bound = net.We.nbytes + boundaries * STATE + unrolled.peak
    assert mem.peak <= bound, (mem.peak, bound)
    # and the saving is real: far below the unrolled network of the same depth
    full, _ = _measure(layers, "unroll")
    assert mem.peak < 0.8 * full.peak
