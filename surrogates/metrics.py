"""Accuracy and uncertainty metrics for surrogate predictions.

All functions take torch tensors and work per output:

* ``y``: ``n x m`` (or ``n``) held-out targets,
* ``mean``: ``n x m`` predictive means,
* ``var``: ``n x m`` predictive variances (of the quantity ``y`` is drawn from:
  for noisy targets that is the posterior variance *plus* the observation
  noise, e.g. ``model.posterior(X, observation_noise=True)``).

Every metric returns an ``m`` tensor (one value per output) or, with
``average=True``, the scalar mean over outputs. :func:`evaluate` bundles them
and :func:`posterior_metrics` evaluates a BoTorch model directly.

Conventions (stated because papers differ):

* :func:`nrmse` divides the RMSE by the standard deviation of the *test*
  targets (``normalization="std"``, population std, ``ddof=0``), so 1.0 means
  "no better than predicting the test mean"; ``normalization="range"`` divides
  by ``max(y) - min(y)`` instead.
* :func:`nlpd` is the mean Gaussian negative log predictive density in nats,
  ``0.5 log(2 pi var) + (y - mean)^2 / (2 var)`` averaged over points.
* :func:`coverage` is the fraction of targets inside the central
  ``level`` interval ``mean +- z sigma`` with ``z = Phi^-1((1 + level) / 2)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from surrogates.base import variance_in_output_units

__all__ = [
    "calibration_curve",
    "calibration_error",
    "coverage",
    "evaluate",
    "nlpd",
    "nrmse",
    "posterior_metrics",
    "rmse",
]

_DEFAULT_LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))  # 0.05 ... 0.95


def _as_2d(name: str, t: Tensor) -> Tensor:
    """``t`` as an ``n x m`` float64 tensor, whatever its dtype: float64 predictions of float32
    targets keep their precision (cast to float32, an error of 1e-3 at 1e4 reads 9.8e-4 and a
    variance below 1e-45 reads 0); complex values are refused."""
    t = torch.as_tensor(t)
    if t.is_complex():
        raise ValueError(f"{name} must hold real numbers, got dtype {t.dtype}")
    t = t.to(torch.float64)
    if t.dim() == 1:
        t = t.unsqueeze(-1)
    if t.dim() != 2:
        raise ValueError(f"{name} must be n x m (or n), got shape {tuple(t.shape)}")
    return t


def _check(y: Tensor, mean: Tensor, var: Tensor | None = None):
    y = _as_2d("y", y)
    mean = _as_2d("mean", mean).to(y.device)
    if mean.shape != y.shape:
        raise ValueError(f"mean shape {tuple(mean.shape)} does not match y shape {tuple(y.shape)}")
    if y.shape[0] == 0:
        raise ValueError("metrics need at least one point, got n = 0")
    for name, t in (("y", y), ("mean", mean)):
        if not torch.isfinite(t).all():
            i, j = (int(v) for v in (~torch.isfinite(t)).nonzero()[0])
            raise ValueError(f"{name}[{i}, {j}] = {t[i, j].item()}: metrics need finite targets and predictions")
    if var is None:
        return y, mean, None
    var = _as_2d("var", var).to(y.device)
    if var.shape != y.shape:
        raise ValueError(f"var shape {tuple(var.shape)} does not match y shape {tuple(y.shape)}")
    ok = (var > 0) & torch.isfinite(var)
    if not ok.all():
        bad = var[~ok].flatten()[0].item()
        raise ValueError(f"predictive variances must be finite and > 0, got {bad}")
    return y, mean, var


def _reduce(per_output: Tensor, average: bool) -> Tensor:
    return per_output.mean() if average else per_output


def rmse(y: Tensor, mean: Tensor, average: bool = False) -> Tensor:
    """Root-mean-square error.

    Args:
        y: ``n x m`` targets.
        mean: ``n x m`` predictions.
        average: return the mean over outputs instead of one value per output.

    Returns:
        ``m`` tensor (or a scalar with ``average=True``).
    """
    y, mean, _ = _check(y, mean)
    return _reduce((y - mean).pow(2).mean(0).sqrt(), average)


def nrmse(
    y: Tensor, mean: Tensor, normalization: str = "std", average: bool = False
) -> Tensor:
    """RMSE divided by the spread of the *test* targets.

    Args:
        y: ``n x m`` targets.
        mean: ``n x m`` predictions.
        normalization: ``"std"`` (population standard deviation of ``y``; 1.0
            means no better than the test mean) or ``"range"`` (``max - min``).
        average: mean over outputs.
    """
    y, mean, _ = _check(y, mean)
    if normalization == "std":
        scale = y.std(0, correction=0)
    elif normalization == "range":
        scale = y.amax(0) - y.amin(0)
    else:
        raise ValueError(f"normalization must be 'std' or 'range', got {normalization!r}")
    if not (scale > 0).all():
        raise ValueError(
            f"cannot normalize by the {normalization} of constant test targets (scale {scale.tolist()})"
        )
    return _reduce((y - mean).pow(2).mean(0).sqrt() / scale, average)


def nlpd(y: Tensor, mean: Tensor, var: Tensor, average: bool = False) -> Tensor:
    """Mean Gaussian negative log predictive density (nats per point).

    Args:
        y: ``n x m`` targets.
        mean: ``n x m`` predictive means.
        var: ``n x m`` predictive variances (> 0).
        average: mean over outputs.
    """
    y, mean, var = _check(y, mean, var)
    per_point = 0.5 * (torch.log(2 * math.pi * var) + (y - mean).pow(2) / var)
    return _reduce(per_point.mean(0), average)


def _z(level: float | Tensor) -> Tensor:
    level = torch.as_tensor(level, dtype=torch.float64)
    if not ((level > 0) & (level < 1)).all():
        raise ValueError(f"interval levels must lie in (0, 1), got {level.tolist()}")
    # Phi^-1((1 + level) / 2) = sqrt(2) erfinv(level)
    return math.sqrt(2.0) * torch.special.erfinv(level)


def coverage(
    y: Tensor, mean: Tensor, var: Tensor, level: float = 0.95, average: bool = False
) -> Tensor:
    """Fraction of targets inside the central ``level`` predictive interval.

    Args:
        y, mean, var: ``n x m`` targets, means and variances.
        level: nominal coverage of the interval, in (0, 1).
        average: mean over outputs.
    """
    y, mean, var = _check(y, mean, var)
    z = _z(level).to(y)
    inside = (y - mean).abs() <= z * var.sqrt()
    return _reduce(inside.to(y).mean(0), average)


def calibration_curve(
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    levels: Sequence[float] | Tensor | None = None,
    average: bool = False,
) -> tuple[Tensor, Tensor]:
    """Observed versus expected coverage of central intervals.

    A calibrated model has ``observed ~= expected`` at every level; observed
    below expected means overconfidence.

    Args:
        y, mean, var: ``n x m`` targets, means and variances.
        levels: expected coverages in (0, 1); default 0.05, 0.10, ..., 0.95.
        average: average the observed coverage over outputs.

    Returns:
        ``(expected, observed)``: ``L`` levels and ``L x m`` (or ``L`` with
        ``average=True``) observed coverages.
    """
    y, mean, var = _check(y, mean, var)
    expected = torch.as_tensor(_DEFAULT_LEVELS if levels is None else levels, dtype=y.dtype)
    if expected.dim() != 1 or expected.numel() == 0:
        raise ValueError(f"levels must be a non-empty 1-d sequence, got shape {tuple(expected.shape)}")
    z = _z(expected).to(y)  # L
    zscore = ((y - mean).abs() / var.sqrt()).unsqueeze(0)  # 1 x n x m
    observed = (zscore <= z.view(-1, 1, 1)).to(y).mean(1)  # L x m
    return expected, observed.mean(-1) if average else observed


def calibration_error(
    y: Tensor,
    mean: Tensor,
    var: Tensor,
    levels: Sequence[float] | Tensor | None = None,
    average: bool = False,
) -> Tensor:
    """Mean absolute gap between observed and expected coverage over ``levels``."""
    expected, observed = calibration_curve(y, mean, var, levels)
    return _reduce((observed - expected.unsqueeze(-1)).abs().mean(0), average)


def evaluate(y: Tensor, mean: Tensor, var: Tensor | None = None) -> dict[str, object]:
    """All metrics at once, per output (lists) and averaged (``*_mean`` floats).

    Uncertainty metrics are included only when ``var`` is given.
    """
    y, mean, var = _check(y, mean, var)
    out: dict[str, object] = {}

    def put(name: str, per_output: Tensor):
        out[name] = per_output.tolist()
        out[f"{name}_mean"] = per_output.mean().item()

    put("rmse", rmse(y, mean))
    if (y.std(0, correction=0) > 0).all():
        put("nrmse", nrmse(y, mean))
        put("nrmse_range", nrmse(y, mean, normalization="range"))
    if var is not None:
        put("nlpd", nlpd(y, mean, var))
        put("coverage95", coverage(y, mean, var, 0.95))
        put("calibration_error", calibration_error(y, mean, var))
    return out


def posterior_metrics(
    model, X: Tensor, y: Tensor, observation_noise: bool | Tensor = False
) -> dict[str, object]:
    """:func:`evaluate` on a BoTorch model's marginal posterior at ``X`` (``n x d``).

    Set ``observation_noise=True`` when ``y`` are noisy observations, so the
    predictive variance includes the noise the targets carry (for a BoTorch
    model with known heteroskedastic noise that is the mean training noise;
    pass ``observation_noise=`` an ``n x m`` tensor of noise variances to be exact:
    in output units for scalebridge's surrogates, in the standardized units of
    a plain BoTorch model with an outcome transform).

    Returns:
        The dict of :func:`evaluate`.
    """
    with torch.no_grad(), variance_in_output_units():
        post = model.posterior(X, observation_noise=observation_noise)
        mean, var = post.mean, post.variance
    return evaluate(y, mean.reshape(y.shape[0], -1), var.reshape(y.shape[0], -1))
