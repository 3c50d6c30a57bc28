"""Peak CPU memory of forward + backward in each backward mode (issue 10 §2).

Each configuration runs in its own process (one torch thread): it builds the module (float32,
LISTA-CP sizes n=250, m=500, batch 1000) and measures one forward + backward twice.

* **Tensor bytes** (exact, allocator-independent): the pass runs under
  `unroll.runtime.memory_profile.TensorMemory` (torch.profiler's allocation events), which gives the
  most bytes of tensors that the pass itself had allocated and not yet freed at one time.
  `fwd+bwd` = that peak: activations, boundary states, temporaries and the gradients (allocated by the
  backward pass), but not the resident parameters and inputs.  `all` = parameters + inputs +
  `fwd+bwd`: every tensor byte alive at the peak (parameters + gradients + activations).
* **Resident size** (what the operating system sees): after collecting garbage, the kernel's peak-RSS
  counter is reset (`/proc/self/clear_refs` = 5, Linux >= 4.0), the pass runs once, and the peak
  (`VmHWM`) is read.  `RSS fwd+bwd` = peak minus the resident size just before the pass (it also
  counts library code and allocator bookkeeping touched for the first time); `RSS total` = the
  process's peak (torch itself included).  glibc's mmap threshold is fixed at 128 KiB
  (`MALLOC_MMAP_THRESHOLD_`): every tensor buffer is then its own mapping, returned to the kernel when
  freed, so the resident size follows the live tensors (with glibc's default dynamic threshold, freed
  2 MB buffers stay in the heap and the peak counts them again).

Before both passes a 2-sample forward + backward runs once (`--cold` skips it): a process's first pass
also touches library code and one-time buffers (about 40 MB more resident size in `checkpoint` mode, 4 MB
in `unroll` mode), which is not memory that the pass needs each time.  The resident-size pass runs
first, then the gradients are dropped and the tensor pass runs.

    nice -n 15 python benchmarks/bench_memory.py            # all configurations (a few minutes alone)
    nice -n 15 python benchmarks/bench_memory.py --only lista_cp:256:checkpoint:16
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

N, M, BATCH = 250, 500, 1000

CONFIGS = [  # spec:layers:mode
    "lista_cp:16:unroll",
    "lista_cp:256:unroll",
    "lista_cp:256:checkpoint:8",
    "lista_cp:256:checkpoint:16",
    "lista_cp:256:checkpoint:32",
    "lista_cp:256:checkpoint:64",
    "lista_cp:256:checkpoint:1",
    "lista:50:unroll",
    "lista:200:unroll",
    "lista:50:implicit:1e-30",
    "lista:200:implicit:1e-30",
    "lista:800:implicit:1e-30",
]


def _status(field: str) -> float:
    with open("/proc/self/status") as f:
        text = f.read()
    return int(re.search(rf"{field}:\s+(\d+)", text).group(1)) / 1024  # MB (kB / 1024)


def measure(config: str, cold: bool = False) -> dict:
    import gc
    import warnings

    import numpy as np
    import torch
    import unroll

    torch.set_num_threads(1)
    spec, layers, mode = config.split(":", 2)
    Net = unroll.load(spec, layers=int(layers), backward=mode)
    rng = np.random.default_rng(0)
    A = rng.standard_normal((N, M)).astype(np.float32)
    A /= np.linalg.norm(A, axis=0)
    net = Net(A=torch.from_numpy(A), lam=0.05)
    y = torch.from_numpy(rng.standard_normal((BATCH, N)).astype(np.float32))
    if not cold:  # a 2-sample pass first: the first call also touches library code and one-time buffers
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net(y[:2]).square().sum().backward()
        net.zero_grad(set_to_none=True)
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit:1e-30 runs every iteration on purpose
        out = net(y)
        out.square().sum().backward()
    peak = _status("VmHWM")
    del out
    net.zero_grad(set_to_none=True)
    gc.collect()
    from unroll.runtime.memory_profile import TensorMemory

    with warnings.catch_warnings(), TensorMemory() as mem:
        warnings.simplefilter("ignore")
        net(y).square().sum().backward()
    mb = 2 ** 20
    params = sum(p.numel() * p.element_size() for p in net.parameters()) / mb
    inputs = (y.nbytes + sum(b.nbytes for b in net.buffers())) / mb
    return {"config": config, "fwd_bwd_mb": peak - before, "total_mb": peak, "params_mb": params,
            "tensor_fwd_bwd_mb": mem.peak / mb, "tensor_all_mb": params + inputs + mem.peak / mb,
            "iterations": getattr(net, "fixed_point_iterations", int(layers))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated configurations (spec:layers:mode)")
    ap.add_argument("--cold", action="store_true", help="no warm-up pass before the resident-size measurement")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, cold=args.cold)))
        return
    configs = args.only.split(",") if args.only else CONFIGS
    print(f"lista_cp / lista, n={N}, m={M}, batch {BATCH}, float32, 1 thread; MB = 2^20 bytes; "
          f"{'first call (cold)' if args.cold else 'after a 2-sample warm-up pass'}")
    print(f"{'':<28} {'':>10} {'':>8} {'tensors (exact)':>19} {'resident size':>19}")
    print(f"{'configuration':<28} {'layers run':>10} {'params':>8} {'fwd+bwd':>9} {'all':>9} {'fwd+bwd':>9} "
          f"{'total':>9}")
    for config in configs:
        command = [sys.executable, __file__, "--child", config] + ["--cold"] * args.cold
        done = subprocess.run(command, capture_output=True, text=True, check=False,
                              env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
        if done.returncode != 0:
            print(f"{config:<28} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{config:<28} {r['iterations']:>10} {r['params_mb']:>8.1f} {r['tensor_fwd_bwd_mb']:>9.1f} "
              f"{r['tensor_all_mb']:>9.1f} {r['fwd_bwd_mb']:>9.0f} {r['total_mb']:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
