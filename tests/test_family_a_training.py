"""Family A, continued (tests/test_family_a.py): L = 5 trained layers beat 5 classical iterations; float32 modules
track float64 ones; an unbatched sample equals its batched row."""

# ruff: noqa: F811 - the fixtures imported from family_a_helpers are the arguments of the tests
from __future__ import annotations

import math

import numpy as np
import pytest
import reference as ref  # tests/ is on sys.path (conftest.py)
import torch
from family_a_helpers import (  # noqa: F401 (fixtures)
    K_SPARSE,
    LAM,
    TOL,
    assert_trace_matches,
    cs_problem,
    lasso,
    lasso_solution,
    make,
    net_class,
    rel,
    spectral_sq,
    to_np,
    trace_of,
)

# ----------------------------------------------------------------------------
# Training: L = 5 learned layers beat 5 classical iterations (float32)
# ----------------------------------------------------------------------------

TRAIN_LAYERS = 5
N_TRAIN, N_TEST = 4000, 1000
MARGIN_DB = 3.0


@pytest.fixture(scope="module")
def training_data():
    """Catalog A3 (b) setting: n = 20, m = 50, 4-sparse N(0,1) codes, noise 0.01; the
    targets are the ground-truth codes x*.  The baselines are ISTA and FISTA with
    L = 5 iterations at their *best* lambda on a grid (on the held-out set)."""
    A, X, Y = ref.lasso_problem(n=20, m=50, k=K_SPARSE, noise=0.01, batch=N_TRAIN + N_TEST, seed=1)
    Xte, Yte = X[N_TRAIN:], Y[N_TRAIN:]
    grid = np.geomspace(1e-3, 1.0, 31)
    ista5 = min((ref.nmse_db(ref.ista(A, Yte, lam, TRAIN_LAYERS)[-1], Xte), lam) for lam in grid)
    fista5 = min((ref.nmse_db(ref.fista(A, Yte, lam, TRAIN_LAYERS)[-1], Xte), lam) for lam in grid)
    return {"A": A, "Xtr": X[:N_TRAIN], "Ytr": Y[:N_TRAIN], "Xte": Xte, "Yte": Yte,
            "ista5_db": ista5[0], "fista5_db": fista5[0], "lam": float(ista5[1])}


TRAIN_SETTINGS = {  # spec: (Adam steps, learning rate); batch 128 throughout
    "lista": (500, 3e-3),
    "lista_untied": (500, 3e-3),
    "lista_cp": (500, 3e-3),
    "lista_cpss": (400, 3e-3),
    "alista": (300, 3e-2),
}


def _train(spec, data, steps, lr, batch=128, seed=0):
    A32 = torch.tensor(data["A"], dtype=torch.float32)
    net = make(spec, A32, layers=TRAIN_LAYERS, lam=data["lam"])
    assert all(p.dtype == torch.float32 for p in net.parameters())
    ytr = torch.tensor(data["Ytr"], dtype=torch.float32)
    xtr = torch.tensor(data["Xtr"], dtype=torch.float32)
    rng = np.random.default_rng(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(steps):
        idx = torch.from_numpy(rng.integers(0, len(ytr), batch))
        loss = (net(ytr[idx]) - xtr[idx]).square().sum(dim=1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = net(torch.tensor(data["Yte"], dtype=torch.float32))
    assert torch.isfinite(out).all()
    return ref.nmse_db(out.double().numpy(), data["Xte"])


@pytest.mark.parametrize("spec", list(TRAIN_SETTINGS))
def test_training_beats_classical(spec, training_data, record_property):
    steps, lr = TRAIN_SETTINGS[spec]
    learned = _train(spec, training_data, steps, lr)
    ista5, fista5 = training_data["ista5_db"], training_data["fista5_db"]
    record_property("nmse_db", learned)
    record_property("margin_vs_ista5_db", ista5 - learned)
    print(f"\n{spec}: NMSE {learned:.2f} dB after {steps} steps; ISTA_5 {ista5:.2f} dB, FISTA_5 {fista5:.2f} dB "
          f"(margin {ista5 - learned:.2f} dB vs ISTA, {fista5 - learned:.2f} dB vs FISTA)")
    assert learned < ista5 - MARGIN_DB
    assert learned < fista5 - MARGIN_DB


# ----------------------------------------------------------------------------
# float32 modules and unbatched samples
# ----------------------------------------------------------------------------

ALL_SPECS = ["ista", "fista", "lista", "lista_untied", "lista_cp", "lista_cpss", "alista",
             "iht", "lista_iht", "lcod", "amp"]


def _setup(spec, lasso, cs_problem):
    if spec == "amp":
        A, _, y = cs_problem
        return A, y, {"alpha": 1.5}
    A, _, y = lasso
    return A, y, ({"k": K_SPARSE} if spec in ("iht", "lista_iht") else {"lam": LAM})


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_float32_matches_float64(spec, lasso, cs_problem):
    A, y, hyper = _setup(spec, lasso, cs_problem)
    net64 = make(spec, A, **hyper)
    net32 = make(spec, torch.tensor(A, dtype=torch.float32), **hyper)
    assert all(t.dtype == torch.float32 for t in list(net32.parameters()) + list(net32.buffers())
               if t.is_floating_point())
    with torch.no_grad():
        out32 = net32(torch.tensor(y, dtype=torch.float32))
        out64 = net64(torch.from_numpy(y))
    assert out32.dtype == torch.float32 and out64.dtype == torch.float64
    assert rel(out32.double().numpy(), out64.numpy()) < 1e-5


@pytest.mark.parametrize("spec", ["lista_cpss", "alista"])
def test_float32_support_selection_count_m500(spec, cs_problem):
    """float32 and float64 modules keep the same number of entries at every layer
    (ceil(p m) is computed with a tolerance, so float32(p) does not round it up).
    The outputs themselves may differ slightly: top-k selection is discontinuous."""

    from unroll.runtime import ss_soft

    A, _, _ = cs_problem
    m = A.shape[1]
    net64 = make(spec, A, lam=LAM)
    net32 = make(spec, torch.tensor(A, dtype=torch.float32), lam=LAM)
    p64, p32 = net64.p_l, net32.p_l
    assert p32.dtype == torch.float32
    v = torch.linspace(1.0, 2.0, m, dtype=torch.float64).flip(0).unsqueeze(0)  # distinct magnitudes
    for layer in range(len(p64)):
        want = ref.ss_count(float(p64[layer]), m)
        assert want == math.ceil(min(0.012 * (layer + 1), 0.13) * m * (1 - 1e-6))
        for p, dt in ((p64[layer], torch.float64), (p32[layer], torch.float32)):
            out = ss_soft(v.to(dt), 0.5, float(p))
            kept = int((out == v.to(dt)).sum())  # entries that bypassed the shrinkage
            assert kept == want, (layer, dt, kept, want)


@pytest.mark.parametrize("spec", ALL_SPECS)
def test_unbatched_sample_equals_batched_row(spec, lasso, cs_problem):
    A, y, hyper = _setup(spec, lasso, cs_problem)
    net = make(spec, A, layers=10, **hyper)
    yt = torch.from_numpy(y)
    with torch.no_grad():
        batched = to_np(net(yt))
        for b in (0, y.shape[0] - 1):
            single = net(yt[b])
            assert tuple(single.shape) == (A.shape[1],)
            assert rel(to_np(single), batched[b]) <= 1e-13
        tr = net.trace(yt[0])
    assert len(tr) == 11
    for state, value in tr[-1].items():
        v = to_np(value)
        assert v.ndim == 0 or v.shape[0] != 1, (state, v.shape)  # no stray batch axis
    assert rel(to_np(tr[-1][net.state_names[0]]), to_np(net.trace(yt)[-1][net.state_names[0]])[0]) <= 1e-13
