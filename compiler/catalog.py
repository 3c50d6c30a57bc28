"""The algorithm catalog's index of ids and which of them ship as specs.

The index is `dsl_specs/catalog_ids.md`, a verbatim copy of the catalog's §4 table (ALGORITHMS.md, the
project's research notes, which a clean clone does not have); it is package data, so `unrollc list`
shows every spec's family in an installed copy too. The shipped specs are the index's ids, minus the
entries that are test references rather than iterations (`NOT_SPECS`), plus the extras shipped beside
them (`EXTRAS`); `tests/test_catalog.py` checks that equality.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

FAMILIES = {
    "A": "sparse coding and proximal gradient",
    "B": "splitting and primal-dual methods",
    "C": "imaging and audio methods built on convolution, FFT or STFT",
    "D": "matrix decompositions",
    "E": "probabilistic inference and message passing",
    "F": "optimal transport",
    "G": "differential equations and dynamics",
    "H": "optimizers and training algorithms",
    "I": "plug-in network hybrids",
    "J": "generic templates (conventional networks read as iterations)",
    "K": "baselines that appear only as comparison points",
}

# Catalog ids that are not specs: the catalog lists them as baselines that are not iterative (§5 K).
NOT_SPECS = {
    "hungarian": "an exact assignment (scipy.optimize.linear_sum_assignment), not an iteration: the test "
                 "reference for the Sinkhorn specs",
    "sdr_detector": "a semidefinite relaxation solved by a convex solver (cvxpy) plus Gaussian randomisation, "
                    "not unrolled: the test reference for DetNet",
}

# Shipped specs that are not ids of the index: id -> (family, why it ships).
EXTRAS = {
    "sinkhorn_log": ("F", "log-domain Sinkhorn (logsumexp), stable for small epsilon where `sinkhorn` underflows"),
    "bm3d_amp": ("K", ("BM3D-AMP, D-AMP with the BM3D denoiser: the Table II baseline of ADMM-CSNet (catalog "
                       "I1 and K; issue 9 names it as a spec)")),
}


@dataclass(frozen=True)
class Entry:
    id: str
    name: str
    ref: str
    family: str
    where: str
    src: str


def _index_path() -> Path:
    try:  # installed: unroll.dsl_specs is a package next to unroll.compiler
        from importlib import resources

        path = Path(str(resources.files("unroll.dsl_specs"))) / "catalog_ids.md"
        if path.is_file():
            return path
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "dsl_specs" / "catalog_ids.md"


ROW = re.compile(r"^\|\s*([a-z][a-z0-9_]*)\s*\|(.*)\|\s*$")


def catalog_index(text: str | None = None) -> list[Entry]:
    """The rows of the index table, in the catalog's order (the table of `text`, default the shipped copy)."""
    if text is None:
        text = _index_path().read_text(encoding="utf-8")
    entries = []
    for line in text.splitlines():
        match = ROW.match(line)
        if match is None or match.group(1) == "id":
            continue
        cells = [c.strip() for c in match.group(2).split("|")]
        if len(cells) != 5:
            raise ValueError(f"catalog index: a row of {len(cells) + 1} cells, expected 6: {line!r}")
        name, ref, family, where, src = cells
        if family not in FAMILIES:
            raise ValueError(f"catalog index: unknown family {family!r} in {line!r}")
        entries.append(Entry(match.group(1), name, ref, family, where, src))
    return entries


def expected_specs() -> dict[str, str]:
    """Every id that should ship as a spec, with its family letter."""
    specs = {e.id: e.family for e in catalog_index() if e.id not in NOT_SPECS}
    specs.update({name: family for name, (family, _why) in EXTRAS.items()})
    return specs


def family_of(name: str) -> str | None:
    """The family letter of a spec id (None for a spec outside the catalog)."""
    return expected_specs().get(name)
