"""Peak CPU memory of forward + backward in each backward mode (issue 10 §2).

Each configuration runs in its own process (one torch thread): it builds the module (float32,
LISTA-CP sizes n=250, m=500, batch 1000), collects garbage, resets the kernel's peak-RSS counter
(`/proc/self/clear_refs` = 5, Linux >= 4.0), runs forward + backward once, and reads the peak
(`VmHWM`).  Reported: `fwd+bwd` = peak minus the resident size just before the forward pass (what
the forward and backward passes add: activations, gradients, temporaries; the parameters are
already resident), and `total` = the process's peak (torch itself and the parameters included).  glibc's mmap threshold is
fixed at 128 KiB (`MALLOC_MMAP_THRESHOLD_`): every tensor buffer is then its own mapping, returned to
the kernel when freed, so the resident size follows the live tensors (with glibc's default dynamic
threshold, freed 2 MB buffers stay in the heap and the peak counts them again).

    python benchmarks/bench_memory.py            # all configurations (~1 min)
    python benchmarks/bench_memory.py --only lista_cp:256:checkpoint:16
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
    "lista_cp:256:checkpoint:16",
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


def measure(config: str) -> dict:
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
    gc.collect()
    before = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit:1e-30 runs every iteration on purpose
        out = net(y)
        out.square().sum().backward()
    peak = _status("VmHWM")
    params = sum(p.numel() * p.element_size() for p in net.parameters()) / 2 ** 20
    return {"config": config, "fwd_bwd_mb": peak - before, "total_mb": peak, "params_mb": params,
            "iterations": getattr(net, "fixed_point_iterations", int(layers))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated configurations (spec:layers:mode)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    configs = args.only.split(",") if args.only else CONFIGS
    print(f"lista_cp / lista, n={N}, m={M}, batch {BATCH}, float32, 1 thread; MB = 2^20 bytes")
    print(f"{'configuration':<28} {'layers run':>10} {'params':>8} {'fwd+bwd':>9} {'total':>8}")
    for config in configs:
        done = subprocess.run([sys.executable, __file__, "--child", config], capture_output=True, text=True, check=False,
                              env=dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072"))
        if done.returncode != 0:
            print(f"{config:<28} failed: {done.stderr.strip().splitlines()[-1]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{config:<28} {r['iterations']:>10} {r['params_mb']:>8.0f} {r['fwd_bwd_mb']:>9.0f} "
              f"{r['total_mb']:>8.0f}")


if __name__ == "__main__":
    main()
