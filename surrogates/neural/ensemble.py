r"""Deep ensembles as BoTorch Models, with recalibrated epistemic variance.

``M`` networks trained from different seeds (and different train/validation
splits) disagree where data are missing; their spread is the epistemic
variance (Lakshminarayanan et al. 2017). Raw ensemble spread is usually
mis-scaled, so it is recalibrated on a held-out split that no member saw: per
output ``j`` the factor maximizing the held-out Gaussian likelihood of
``y ~ N(mu, s_j^2 sigma^2)`` is ``s_j^2 = mean_i(r_ij^2 / sigma_ij^2)``.
The model has no noise term: on noisy data the held-out residuals carry the
observation noise, and one factor per output spreads it in proportion to the
members' disagreement, so where the members agree the band is too narrow for
the noise and where they disagree too wide (95 % intervals covered 0.84 to
0.98 of noisy held-out points in a probe with constant noise). For noisy data
whose noise matters, a GP surrogate with known or inferred noise is the
calibrated choice.

:class:`NeuralEnsembleModel` is the shared BoTorch side: subclasses implement
:meth:`member_predictions` (``M x ... x n x m``, differentiable in ``X``), and
the base class gives ``posterior`` (a :class:`GPyTorchPosterior` over a
diagonal multitask normal, so analytic and MC acquisitions work and
gradients flow to ``X``), calibration and ``num_outputs``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from botorch.models.model import Model
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from linear_operator.operators import DiagLinearOperator
from torch import Tensor

from oracles.exceptions import InvalidInput
from surrogates.base import SurrogateMixin, with_output_scale
from surrogates.dataset import Dataset
from surrogates.dataset import real_tensor as dataset_real_tensor
from surrogates.neural.training import fraction, split_indices, training_options

#: relative variance floor (times the squared output scale): keeps the
#: covariance positive definite where all members agree exactly
VARIANCE_FLOOR = 1e-12


def fit_variance_scale(mean: Tensor, var: Tensor, y: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-output factor ``s^2 = mean(r^2 / sigma^2)`` (``m``) maximizing the Gaussian
    likelihood of held-out ``y`` (``n x m``) under ``N(mean, s^2 var)``; with ``mask``
    (``n x m`` booleans) the mean is over the entries it marks (NaN for an output with none)."""
    if not (mean.shape == var.shape == y.shape) or y.dim() != 2:
        raise ValueError(
            f"mean, var and y must all be n x m, got {tuple(mean.shape)}, {tuple(var.shape)}, "
            f"{tuple(y.shape)}"
        )
    if y.shape[0] < 1:
        raise ValueError("calibration needs at least one held-out point, got none")
    ratio = (y - mean) ** 2 / var.clamp_min(torch.finfo(var.dtype).tiny)
    if mask is None:
        return ratio.mean(0)
    return torch.where(mask, ratio, 0.0).sum(0) / mask.sum(0)


def diagonal_posterior(mean: Tensor, var: Tensor, scale: Tensor | None = None) -> GPyTorchPosterior:
    """A :class:`GPyTorchPosterior` with independent marginals.

    Args:
        mean, var: ``batch x q x m`` means and variances.
        scale: ``m`` output scales: the variances are then floored relative to
            them (:func:`~surrogates.base.with_output_scale`), not at GPyTorch's
            absolute ``1e-10``.
    """
    if mean.shape[-1] == 1:
        mvn = MultivariateNormal(mean[..., 0], DiagLinearOperator(var[..., 0]))
    else:
        # interleaved ordering: q-major, then outputs, i.e. row-major flattening
        cov = DiagLinearOperator(var.reshape(*var.shape[:-2], -1))
        mvn = MultitaskMultivariateNormal(mean, cov, interleaved=True)
    post = GPyTorchPosterior(mvn)
    return post if scale is None else with_output_scale(post, scale)


def real_tensor(name: str, x: Any) -> Tensor:
    """``x`` (tensor, array or nested list) as a float64 tensor; a complex ``x`` is refused
    (``TypeError``), not cut to its real part, and so is data that is not numbers (a string,
    None), with a ``TypeError`` naming ``name``."""
    try:
        complex_ = x.is_complex() if torch.is_tensor(x) else bool(np.iscomplexobj(x))
    except (TypeError, ValueError):  # a ragged list: dataset_real_tensor names it
        complex_ = False
    if complex_:
        raise TypeError(f"{name} must be real, got dtype {getattr(x, 'dtype', 'complex')}")
    return dataset_real_tensor(name, x, TypeError)


def check_finite(name: str, x: Tensor) -> None:
    """Raise :class:`~oracles.exceptions.InvalidInput` naming the first non-finite entry of ``x``."""
    bad = ~torch.isfinite(x.detach())
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise InvalidInput(f"{name} must be finite, got {x.detach()[idx].item()} at index {idx}")


class NeuralEnsembleModel(Model, SurrogateMixin):
    """Base of the ensemble surrogates: posterior and calibration.

    Subclasses set ``self._num_outputs`` and ``self._config`` (their JSON
    constructor arguments), register ``members`` and implement
    :meth:`member_predictions`.

    The members are fitted by unweighted least squares: a dataset's known
    observation variances (``Dataset.Yvar``) are not used, and positive ones
    raise a warning (:meth:`_warn_unused_yvar`); the predictive variance is
    the recalibrated spread of the members, which the held-out residuals
    (noise included) set.
    """

    _num_outputs: int = 1
    _config: dict[str, Any]

    def get_config(self) -> dict[str, Any]:
        return dict(self._config)

    @classmethod
    def from_config(cls, config: dict[str, Any], dataset: Dataset | None = None):
        model = cls(**config)
        model.train_dataset = dataset
        return model

    @classmethod
    def _warn_unused_yvar(cls, dataset: Dataset) -> None:
        """Warn that positive ``dataset.Yvar`` entries are not used by the fit."""
        if dataset.Yvar is not None and bool((dataset.Yvar > 0).any()):
            warnings.warn(
                f"{cls.__name__} does not use Dataset.Yvar (known observation variances): its members are "
                "fitted by unweighted least squares; use a GP surrogate to weight points by their noise",
                stacklevel=4,
            )

    @classmethod
    def _begin_fit(cls, dataset: Dataset, training, val_fraction: float, calibration_fraction: float,
                   options: dict[str, Any]):
        """The start every ensemble's ``from_dataset`` shares: the settings checked by name,
        the model built (``options``) on ``dataset``, and its rows split into fitting rows and
        held-out calibration rows (none for one member or ``calibration_fraction = 0``).

        Returns ``(model, training options, val_fraction, fit_idx, cal_idx)``.
        """
        cls._warn_unused_yvar(dataset)
        training = training_options(training)
        val_fraction = fraction("val_fraction", val_fraction)
        calibration_fraction = fraction("calibration_fraction", calibration_fraction)
        model = cls(**options)
        model.train_dataset = dataset
        if calibration_fraction > 0 and model.num_members > 1:
            if dataset.n < 2:
                raise ValueError(f"calibration_fraction = {calibration_fraction} needs at least 2 rows (one to fit, "
                                 f"one held out), got {dataset.n}; pass calibration_fraction=0 to skip calibration")
            fit_idx, cal_idx = split_indices(dataset.n, (calibration_fraction,), seed=model._config["seed"])
        else:
            fit_idx, cal_idx = torch.arange(dataset.n), None
        return model, training, val_fraction, fit_idx, cal_idx

    def _init_ensemble_buffers(self, m: int, dtype=torch.float64) -> None:
        self.register_buffer("variance_scale", torch.ones(m, dtype=dtype))
        self.register_buffer("output_scale", torch.ones(m, dtype=dtype))

    @property
    def num_outputs(self) -> int:
        return self._num_outputs

    @property
    def batch_shape(self) -> torch.Size:
        return torch.Size([])

    @property
    def num_members(self) -> int:
        return len(self.members)

    def member_predictions(self, X: Tensor) -> Tensor:
        """``M x batch x q x m`` predictions of each member at ``X`` (``batch x q x d``)."""
        raise NotImplementedError

    def raw_mean_variance(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Ensemble mean and (uncalibrated, unbiased) variance, each ``batch x q x m``."""
        Y = self.member_predictions(X)
        mean = Y.mean(0)
        if Y.shape[0] > 1:
            var = Y.var(0, unbiased=True)
        else:
            var = torch.zeros_like(mean)
        return mean, var

    def predict(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and calibrated variance, each ``batch x q x m``."""
        mean, var = self.raw_mean_variance(X)
        floor = VARIANCE_FLOOR * self.output_scale**2
        return mean, self.variance_scale * var + floor

    #: one variance factor per output (False: one for all, the outputs being the components of
    #: one tensor, so that a calibrated variance summed over them is frame-indifferent)
    calibrate_per_output: bool = True

    @torch.no_grad()
    def calibrate(self, X: Tensor, Y: Tensor) -> Tensor:
        """Fit and store the variance factors on held-out ``X`` (``n x d``), ``Y`` (``n x m``):
        per output, or one for all outputs (the maximum-likelihood factor over all of them)
        when :attr:`calibrate_per_output` is False. Entries where the members' spread is at
        most the variance floor do not count (their predictive variance is the floor's,
        whatever the factor); a factor with no entry left keeps its value."""
        mean, var = self.raw_mean_variance(X)
        if self.num_members < 2:
            return self.variance_scale  # one member: no spread to scale
        floor = VARIANCE_FLOOR * self.output_scale**2
        # entries where the members agree to the floor (F = 1, where every member's P is 0; a
        # stress component that symmetry makes 0) have the floor's predictive variance whatever
        # the factor: their likelihood does not depend on it, so they do not enter its fit
        spread = var > floor
        s2 = fit_variance_scale(mean, var.clamp_min(floor), Y, mask=spread)
        if not self.calibrate_per_output:  # the mean over every entry with a spread
            count = spread.sum(0)
            s2 = (torch.where(count > 0, s2 * count, 0.0).sum() / count.sum()).expand_as(s2)
        # no entry with a spread (every point at F = 1): nothing to fit, the factors are kept
        self.variance_scale.copy_(torch.where(torch.isnan(s2), self.variance_scale, s2))
        return self.variance_scale.clone()

    #: read by the campaign and FE² code (:func:`~surrogates.base.conditions_on_observations`):
    #: an ensemble learns new points by a refit, not by conditioning
    supports_conditioning = False

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} cannot be conditioned on new observations (a deep ensemble learns them by a "
            f"refit: {type(self).__name__}.from_dataset); for acquisitions that fantasize (qKG, qNIPV) use a GP "
            "surrogate")

    def fantasize(self, X: Tensor, *args, **kwargs):
        raise NotImplementedError(
            f"{type(self).__name__} does not fantasize (it cannot be conditioned without a refit); the acquisitions "
            "that fantasize (qKnowledgeGradient, qNegIntegratedPosteriorVariance) need a GP surrogate")

    def subset_output(self, idcs: list[int]):
        raise NotImplementedError(
            f"{type(self).__name__} does not subset its outputs; pass output_indices to posterior instead")

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False,
                  posterior_transform=None, **kwargs) -> GPyTorchPosterior:
        """Posterior at ``X`` (``batch x q x d``): diagonal normal over ``batch x q x m``.

        ``observation_noise`` is ignored: the ensemble predicts the noise-free
        response and its epistemic uncertainty.
        """
        if not torch.is_tensor(X):
            raise TypeError(f"X must be a torch.Tensor (batch x q x d), got {type(X).__name__}")
        if X.is_complex():
            raise TypeError(f"X must be real, got dtype {X.dtype}")
        X = X.to(torch.float64)  # the members are in double precision (an integer X is a point too)
        if X.dim() < 2:
            raise ValueError(f"X must be batch x q x d (at least q x d), got shape {tuple(X.shape)}")
        if not torch.isfinite(X.detach()).all():
            raise InvalidInput("X must be finite, got NaN or inf")
        mean, var = self.predict(X)
        scale = self.output_scale
        if output_indices is not None:
            mean, var, scale = mean[..., output_indices], var[..., output_indices], scale[output_indices]
        post = diagonal_posterior(mean, var, scale)
        if posterior_transform is not None:
            return posterior_transform(post)
        return post
