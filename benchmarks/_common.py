"""Helpers shared by the benchmarks (timing, tables, machine description).  Not part of the package."""

from __future__ import annotations

import math
import os
import platform
import statistics
import time

try:
    import resource
except ImportError:  # not on Windows
    resource = None


def timed(fn) -> float:
    """Wall time of one call of `fn` in seconds (time.perf_counter)."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt if resource else 0


def timed_faults(fn) -> tuple[float, int]:
    """(wall seconds, minor page faults) of one call of `fn`.  Page faults show allocator churn:
    glibc hands large temporaries (>= 128 KiB by default, here 2-4 MB) back to the kernel and
    every fresh one is faulted in again, page by page."""
    f0 = _minflt()
    t0 = time.perf_counter()
    fn()
    dt = time.perf_counter() - t0
    return dt, _minflt() - f0


def _others_cpu_ticks():
    """CPU time (clock ticks) used by *other* processes since boot: /proc/stat busy time minus ours.
    None where /proc is unavailable (non-Linux): then no round is ever discarded."""
    try:
        with open("/proc/stat") as f:
            vals = [int(v) for v in f.readline().split()[1:]]
        with open("/proc/self/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        ours = int(fields[11]) + int(fields[12])  # utime + stime, all threads
        return sum(vals) - vals[3] - vals[4] - ours  # minus idle, iowait
    except (OSError, ValueError, IndexError):
        return None


_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class Stats:
    """What `alternate` saw: rounds kept, rounds discarded because other processes were busy."""

    kept = 0
    discarded = 0
    contaminated_kept = 0
    short = 0  # measurements stopped before `reps` rounds by the deadline


def default_max_other_cpu() -> float:
    """How busy other processes may be during a kept round: the cores this process leaves free
    (+0.1), or 0.25 CPU when it uses them all (torch's default on a 2-core machine)."""
    import torch

    free = (os.cpu_count() or 1) - torch.get_num_threads()
    return free + 0.1 if free >= 1 else 0.25


def alternate(fns: dict, reps: int, warmup: int, max_other_cpu: float | None = None,
              stats: Stats | None = None, max_rounds: int | None = None, budget_s: float | None = None,
              faults: dict | None = None) -> dict:
    """Time every function of `fns` once per round, interleaved, for `reps` rounds.

    The order inside a round rotates (A B C, B C A, ...) so that no implementation always
    runs first.  Noise control: a round during which other processes used more than
    `max_other_cpu` CPUs on average (from /proc/stat; other engineers' jobs share this
    machine; default `default_max_other_cpu()`) is discarded and run again, up to `max_rounds`
    rounds in all (default 4 x reps) and while less than `budget_s` seconds have passed; after that, contaminated rounds are
    kept (counted in `stats.contaminated_kept`).  Past 2 x `budget_s`, the measurement stops
    with the rounds it has (at least 5; counted in `stats.short`), so that a busy machine
    cannot make a benchmark run for ever.
    Returns {name: [seconds per kept round]} (warm-up calls not included); when `faults` is a
    dict, it receives {name: [minor page faults per kept call]}.
    """
    if max_other_cpu is None:
        max_other_cpu = default_max_other_cpu()
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    stats = stats if stats is not None else Stats()
    max_rounds = max_rounds or 4 * reps
    times = {name: [] for name in names}
    rounds = 0
    start = time.perf_counter()
    while len(times[names[0]]) < reps:
        if budget_s is not None and len(times[names[0]]) >= 5 and time.perf_counter() - start > 2 * budget_s:
            stats.short += 1
            break
        k = rounds % len(names)
        rounds += 1
        o0, w0 = _others_cpu_ticks(), time.perf_counter()
        got = {name: timed_faults(fns[name]) for name in names[k:] + names[:k]}
        o1, wall = _others_cpu_ticks(), time.perf_counter() - w0
        busy = (o1 - o0) / _HZ / wall if o0 is not None and o1 is not None else 0.0
        if busy > max_other_cpu:
            if rounds < max_rounds and (budget_s is None or time.perf_counter() - start < budget_s):
                stats.discarded += 1
                continue
            stats.contaminated_kept += 1
        stats.kept += 1
        for name in names:
            times[name].append(got[name][0])
            if faults is not None:
                faults.setdefault(name, []).append(got[name][1])
    return times


def sparse_coding_problem(n: int, m: int, batch: int, dtype, seed: int = 0):
    """(A, y): a Gaussian n x m dictionary with unit columns, and `batch` measurements y = A x + 1 % noise
    of 10 %-sparse Gaussian codes x (rows of y: batch-first).  Drawn in float64, then cast."""
    import torch

    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, m, generator=g, dtype=torch.float64)
    A /= A.norm(dim=0, keepdim=True)
    x = torch.randn(batch, m, generator=g, dtype=torch.float64) * (torch.rand(batch, m, generator=g) < 0.1)
    y = x @ A.T + 0.01 * torch.randn(batch, n, generator=g, dtype=torch.float64)
    return A.to(dtype), y.to(dtype)


def median_ratio(num: list, den: list) -> float:
    """Median over repetitions of the per-repetition ratio num[i] / den[i]."""
    return statistics.median(a / b for a, b in zip(num, den))


def median_ratio_interval(num: list, den: list, level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of the per-repetition ratios: the order statistics
    r_(j) <= median <= r_(n+1-j) with the largest j such that P(Binomial(n, 1/2) < j) <= (1 - level) / 2 (exact
    coverage >= level for independent repetitions; no assumption on the ratios' distribution)."""
    ratios = sorted(a / b for a, b in zip(num, den))
    n = len(ratios)
    tail, j = 0.0, 0
    while j < n // 2:
        nxt = tail + math.comb(n, j) / 2 ** n  # P(Binomial(n, 1/2) <= j)
        if nxt > (1 - level) / 2:
            break
        tail, j = nxt, j + 1
    if j == 0:  # too few repetitions for that level: the whole range
        return ratios[0], ratios[-1]
    return ratios[j - 1], ratios[n - j]


def spread(ts: list) -> float:
    """Noise level: interquartile range relative to the median (0.05 = 5 %)."""
    q = statistics.quantiles(ts, n=4)
    return (q[2] - q[0]) / statistics.median(ts)


def table(rows: list, header: tuple) -> str:
    rows = [tuple(str(c) for c in header)] + [tuple(str(c) for c in r) for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def machine() -> str:
    import torch

    try:
        load = "load avg {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        load = "load avg n/a"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
            f"torch {torch.__version__} ({torch.get_num_threads()} intra-op threads), "
            f"Python {platform.python_version()}, {load}")
