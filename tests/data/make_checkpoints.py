"""Write tests/data/checkpoints/: checkpoints saved by this version of unroll, which later versions must load
(tests/test_persistence.py).  Run once per deliberate format change, from the repository root:

    python tests/data/make_checkpoints.py

Each `<spec>.pt` holds the constructor arguments, the compile options, a trained state_dict, an input batch
and the outputs of the trained network (loadable with `torch.load(..., weights_only=True)`);
`lista_module.pt` is a whole pickled module (`torch.save(net)`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import export_cases
import unroll

SPECS = ("lista", "fista", "lista_untied", "deep_nmf", "rpca_ista", "misi_unfolded")
LAYERS = 3


def trained(name: str):
    """The spec built by export_cases on seed 1, a few Adam steps on its outputs' energy."""
    case = export_cases.build(name, seed=1, layers=LAYERS)
    net = case.net
    params = [p for p in net.parameters() if p.requires_grad]
    if params:
        opt = torch.optim.Adam(params, lr=1e-2)
        for _ in range(3):
            opt.zero_grad()
            out = net(*case.inputs)
            outs = out if isinstance(out, tuple) else (out,)
            sum(o.abs().square().sum() for o in outs).backward()
            opt.step()
    return case, net


def main() -> None:
    torch.set_num_threads(1)
    out_dir = HERE / "checkpoints"
    out_dir.mkdir(exist_ok=True)
    for name in SPECS:
        case, net = trained(name)
        kwargs = {k: v if isinstance(v, (int, float)) else torch.as_tensor(v)
                  for k, v in case.arguments.items() if k != "dtype"}
        with torch.no_grad():
            out = net(*case.inputs)
        torch.save({"spec": name, "layers": LAYERS, "unroll_version": unroll.__version__,
                    "arguments": kwargs, "dtype": str(net._default_dtype_device()[0]),
                    "state_dict": net.state_dict(), "inputs": list(case.inputs),
                    "outputs": list(out) if isinstance(out, tuple) else [out]}, out_dir / f"{name}.pt")
    saved = torch.load(out_dir / "lista.pt", weights_only=True)
    lista = unroll.load("lista", layers=LAYERS)(**saved["arguments"])
    lista.load_state_dict(saved["state_dict"])
    torch.save(lista, out_dir / "lista_module.pt")


if __name__ == "__main__":
    main()
