"""How many bytes of tensors a block of code keeps alive at once (the memory of a forward + backward
pass, measured by tensor allocations rather than by the process's resident size).

    with TensorMemory() as mem:
        net(y).square().sum().backward()
    mem.peak            # bytes: the most that the block's own allocations held at one time
    mem.allocations     # the sizes of every allocation the block made, in order

The block runs under torch.profiler with `profile_memory=True`: every allocation and free of a
tensor buffer is an event carrying the allocator's running total, so the peak is exact and does not
depend on the allocator's caching, glibc's heap or pages of library code.  Tensors that existed before
the block (parameters, inputs) are not counted; tensors the block allocates and keeps (gradients,
outputs) are.  Only the device given (default CPU) is counted.
"""

from __future__ import annotations

from typing import Self

import torch


class TensorMemory:
    """Context manager: `peak` (bytes above the level at entry), `allocations` (sizes, in order) and
    `retained` (bytes the block allocated and had not freed at its end) of the tensor allocations made
    on `device` inside the block."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.peak = 0
        self.retained = 0
        self.allocations: list[int] = []
        self._profiler = None

    def __enter__(self) -> Self:
        self._profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU],
                                                profile_memory=True)
        self._profiler.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._profiler.__exit__(*exc)
        from torch._C._profiler import _EventType

        events, pending = [], list(self._profiler.profiler.kineto_results.experimental_event_tree())
        while pending:
            event = pending.pop()
            pending.extend(event.children)
            if event.typed[0] == _EventType.Allocation:
                fields = event.extra_fields
                if torch.device(str(fields.device)) == self.device:
                    events.append((event.start_time_ns, fields.alloc_size, fields.total_allocated))
        events.sort(key=lambda e: e[0])
        if not events:
            return
        # the allocator's running total counts from before the block: subtract its level at entry
        _, size, total = events[0]
        base = total - size
        self.peak = max(total for _, _, total in events) - base
        self.retained = events[-1][2] - base
        self.allocations = [size for _, size, _ in events if size > 0]


__all__ = ["TensorMemory"]
