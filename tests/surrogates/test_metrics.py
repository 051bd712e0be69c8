import math

import numpy as np
import pytest
import torch
from scipy import stats

from surrogates.metrics import (
    calibration_curve,
    calibration_error,
    coverage,
    evaluate,
    nlpd,
    nrmse,
    rmse,
)

D = torch.float64


def test_rmse_hand_computed():
    y = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]], dtype=D)
    mu = torch.tensor([[1.0, 1.0], [2.0, 1.0], [4.0, 5.0]], dtype=D)
    # errors: output 0 -> (1, 0, 0); output 1 -> (0, 2, 0)
    torch.testing.assert_close(rmse(y, mu), torch.tensor([math.sqrt(1 / 3), math.sqrt(4 / 3)], dtype=D))
    torch.testing.assert_close(
        rmse(y, mu, average=True), torch.tensor((math.sqrt(1 / 3) + math.sqrt(4 / 3)) / 2, dtype=D)
    )


def test_nrmse_std_and_range():
    y = torch.tensor([0.0, 2.0, 4.0], dtype=D)
    mu = torch.tensor([1.0, 2.0, 4.0], dtype=D)
    std = math.sqrt(8 / 3)  # population std of (0, 2, 4)
    torch.testing.assert_close(nrmse(y, mu), torch.tensor([math.sqrt(1 / 3) / std], dtype=D))
    torch.testing.assert_close(
        nrmse(y, mu, normalization="range"), torch.tensor([math.sqrt(1 / 3) / 4], dtype=D)
    )
    # predicting the test mean gives exactly 1 with the std normalization
    torch.testing.assert_close(nrmse(y, torch.full_like(y, 2.0)), torch.tensor([1.0], dtype=D))
    with pytest.raises(ValueError, match="normalization"):
        nrmse(y, mu, normalization="iqr")
    with pytest.raises(ValueError, match="constant"):
        nrmse(torch.ones(3, dtype=D), mu)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nlpd_matches_scipy(seed):
    rng = np.random.default_rng(seed)
    y, mu = rng.normal(size=(50, 3)), rng.normal(size=(50, 3))
    var = rng.uniform(0.1, 3.0, size=(50, 3))
    ref = -stats.norm.logpdf(y, loc=mu, scale=np.sqrt(var)).mean(0)
    got = nlpd(torch.tensor(y), torch.tensor(mu), torch.tensor(var))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
    assert nlpd(torch.tensor(y), torch.tensor(mu), torch.tensor(var), average=True).item() == pytest.approx(
        ref.mean(), rel=1e-12
    )


def test_coverage_hand_computed():
    mu = torch.zeros(4, dtype=D)
    var = torch.ones(4, dtype=D)
    z95 = stats.norm.ppf(0.975)
    y = torch.tensor([0.0, z95 - 1e-9, z95 + 1e-6, -3.0], dtype=D)
    assert coverage(y, mu, var).item() == pytest.approx(0.5)
    # a wider interval with sigma = 2 contains all but the -3 point? |-3| <= 1.96*2: yes, all
    assert coverage(y, mu, 4 * var).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="levels"):
        coverage(y, mu, var, level=1.5)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_calibration_of_exact_gaussian(seed):
    # targets drawn from exactly the predictive distribution: observed ~ expected
    g = torch.Generator().manual_seed(seed)
    n = 20000
    mu = torch.randn(n, 2, generator=g, dtype=D)
    sd = 0.1 + torch.rand(n, 2, generator=g, dtype=D)
    y = mu + sd * torch.randn(n, 2, generator=g, dtype=D)
    expected, observed = calibration_curve(y, mu, sd**2)
    assert observed.shape == (expected.numel(), 2)
    # binomial std at n = 20000 is <= 0.0036; allow 5 sigma
    assert (observed - expected.unsqueeze(-1)).abs().max() < 0.018
    assert calibration_error(y, mu, sd**2, average=True) < 0.01
    # an overconfident predictor (variance / 4) under-covers at every level
    _, obs_over = calibration_curve(y, mu, sd**2 / 4, average=True)
    assert (obs_over < expected).all()


def test_calibration_curve_agrees_with_coverage():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(200, 1, generator=g, dtype=D)
    mu, var = torch.zeros_like(y), torch.full_like(y, 1.3)
    expected, observed = calibration_curve(y, mu, var, levels=[0.5, 0.95])
    assert observed[1, 0] == coverage(y, mu, var, 0.95)[0]
    assert observed[0, 0] == coverage(y, mu, var, 0.5)[0]


def test_bad_inputs_name_the_problem():
    y = torch.zeros(3, 2, dtype=D)
    with pytest.raises(ValueError, match="mean shape"):
        rmse(y, torch.zeros(3, 1, dtype=D))
    with pytest.raises(ValueError, match="variances must be finite and > 0"):
        nlpd(y, y, torch.zeros(3, 2, dtype=D))
    inf_var = torch.ones(3, 2, dtype=D)
    inf_var[0, 0] = float("inf")  # it had given nlpd inf and counted the point as covered
    with pytest.raises(ValueError, match="finite and > 0, got inf"):
        coverage(y, y, inf_var)
    with pytest.raises(ValueError, match="at least one point"):
        rmse(torch.zeros(0, 1, dtype=D), torch.zeros(0, 1, dtype=D))
    # a NaN target or prediction is refused, not averaged to NaN or counted as a miss
    bad = y.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(ValueError, match=r"y\[1, 0\] = nan"):
        rmse(bad, y)
    with pytest.raises(ValueError, match=r"mean\[1, 0\] = nan"):
        coverage(y, bad, torch.ones_like(y))


def test_float32_targets_are_scored_against_float64_predictions_in_double_precision():
    """Targets made with ``torch.tensor([...])`` are float32; the metrics had cast the float64
    predictions and variances to it: an error of 1e-3 at 1e4 read as 9.77e-4, and a variance
    of 1e-50 (outputs in small units) as 0, refused. Complex values are refused, not cut."""
    y = torch.tensor([1e4])  # float32, exactly 10000
    mu = torch.tensor([1e4 + 1e-3], dtype=D)
    var = torch.tensor([1e-6], dtype=D)
    assert rmse(y, mu).dtype == D
    assert rmse(y, mu).item() == pytest.approx(1e-3, rel=1e-9)
    assert nlpd(y, mu, var).item() == pytest.approx(0.5 * math.log(2 * math.pi * 1e-6) + 0.5, rel=1e-9)
    tiny = nlpd(torch.tensor([1.0]), torch.tensor([1.0], dtype=D), torch.tensor([1e-50], dtype=D))
    assert tiny.item() == pytest.approx(0.5 * math.log(2 * math.pi * 1e-50), rel=1e-12)
    with pytest.raises(ValueError, match="y must hold real numbers, got dtype torch.complex64"):
        rmse(torch.tensor([1.0 + 1j]), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="var must hold real numbers"):
        nlpd(y, mu, var + 0j)


def test_evaluate_bundle():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(100, 2, generator=g, dtype=D)
    mu = y + 0.1 * torch.randn(100, 2, generator=g, dtype=D)
    var = torch.full_like(y, 0.01)
    out = evaluate(y, mu, var)
    for k in ("rmse", "nrmse", "nrmse_range", "nlpd", "coverage95", "calibration_error"):
        assert len(out[k]) == 2
        assert out[f"{k}_mean"] == pytest.approx(sum(out[k]) / 2)
    assert "nlpd" not in evaluate(y, mu)


def test_posterior_metrics_uses_the_marginal_posterior():
    from types import SimpleNamespace

    from surrogates.metrics import posterior_metrics

    class Diagonal:
        """A model whose posterior at x is N(2x, (x + 1)^2), per output."""

        def posterior(self, X, observation_noise=False):
            return SimpleNamespace(mean=2 * X, variance=(X + 1) ** 2 + (0.5 if observation_noise else 0.0))

    X = torch.linspace(0, 1, 7, dtype=D).unsqueeze(-1)
    y = 2 * X + 0.3
    out = posterior_metrics(Diagonal(), X, y)
    assert out == evaluate(y, 2 * X, (X + 1) ** 2)
    out_noise = posterior_metrics(Diagonal(), X, y, observation_noise=True)
    assert out_noise["nlpd"] == evaluate(y, 2 * X, (X + 1) ** 2 + 0.5)["nlpd"]
