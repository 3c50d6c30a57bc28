"""unroll.train metrics and losses against numpy formulas written from their definitions (catalog §6.12)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from unroll.train import metrics as M


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 6, 7))
    x_hat = x + 0.3 * rng.standard_normal((5, 6, 7))
    return x_hat, x


def test_nmse_db_psnr_nrmse_sq_error_match_numpy(pair):
    x_hat, x = pair
    t = torch.from_numpy
    assert float(M.nmse_db(t(x_hat), t(x))) == pytest.approx(10 * np.log10(((x_hat - x) ** 2).sum() / (x ** 2).sum()),
                                                             rel=1e-12)
    per = [10 * np.log10(np.abs(b).max() ** 2 / ((a - b) ** 2).mean()) for a, b in zip(x_hat, x)]
    assert float(M.psnr(t(x_hat), t(x))) == pytest.approx(np.mean(per), rel=1e-12)
    per1 = [10 * np.log10(1.0 / ((a - b) ** 2).mean()) for a, b in zip(x_hat, x)]
    assert float(M.psnr(t(x_hat), t(x), peak=1.0)) == pytest.approx(np.mean(per1), rel=1e-12)
    nr = [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(x_hat, x)]
    assert float(M.nrmse(t(x_hat), t(x))) == pytest.approx(np.mean(nr), rel=1e-12)
    assert float(M.sq_error(t(x_hat), t(x))) == pytest.approx(((x_hat - x) ** 2).reshape(5, -1).sum(1).mean(),
                                                              rel=1e-12)
    assert float(M.mse(t(x_hat), t(x))) == pytest.approx(((x_hat - x) ** 2).mean(), rel=1e-12)


def test_nmse_of_complex_values():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4))
    x_hat = x + 0.1 * (rng.standard_normal((3, 4)) + 1j * rng.standard_normal((3, 4)))
    expected = 10 * np.log10((np.abs(x_hat - x) ** 2).sum() / (np.abs(x) ** 2).sum())
    assert float(M.nmse_db(torch.from_numpy(x_hat), torch.from_numpy(x))) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("beta", [0.0, 1.0, 2.0, 0.5, 1.5])
def test_beta_divergence_matches_numpy(beta):
    rng = np.random.default_rng(2)
    a = rng.uniform(0.1, 2.0, (4, 3, 5))
    b = rng.uniform(0.1, 2.0, (4, 3, 5))
    if beta == 1:
        d = a * np.log(a / b) - a + b
    elif beta == 0:
        d = a / b - np.log(a / b) - 1
    else:
        d = (a ** beta + (beta - 1) * b ** beta - beta * a * b ** (beta - 1)) / (beta * (beta - 1))
    expected = d.reshape(4, -1).sum(1).mean()
    got = float(M.beta_divergence(torch.from_numpy(a), torch.from_numpy(b), beta, eps=0.0))
    assert got == pytest.approx(expected, rel=1e-12)
    if beta == 2:  # d_2(a|b) = (a - b)^2 / 2
        assert got == pytest.approx(((a - b) ** 2 / 2).reshape(4, -1).sum(1).mean(), rel=1e-12)


def test_translation_invariant_mse_matches_numpy_and_ignores_small_shifts():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 9))
    x_hat = np.roll(x, (-2, -2), axis=(-2, -1)) + 0.01 * rng.standard_normal((2, 8, 9))
    best = [min(((np.roll(p, (dy, dx), axis=(-2, -1)) - q) ** 2).mean() for dy in range(-2, 3) for dx in range(-2, 3))
            for p, q in zip(x_hat, x)]
    got = float(M.ti_mse(torch.from_numpy(x_hat), torch.from_numpy(x), shift=2))
    assert got == pytest.approx(np.mean(best), rel=1e-12)
    assert got < 1e-3 < float(M.mse(torch.from_numpy(x_hat), torch.from_numpy(x)))


def test_unknown_loss_and_metric_are_named():
    with pytest.raises(ValueError, match="unknown loss 'l3'.*known losses"):
        M.resolve_loss("l3")
    with pytest.raises(ValueError, match="unknown metric 'ssim'"):
        M.resolve_metric("ssim")
