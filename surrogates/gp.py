"""Exact Gaussian-process surrogates on BoTorch/GPyTorch.

Two models, both BoTorch :class:`~botorch.models.model.Model` s with the
:class:`~surrogates.base.SurrogateMixin` contract:

* :class:`GPSurrogate` -- a :class:`~botorch.models.SingleTaskGP` with an ARD
  Matérn-5/2 kernel (times an output scale). With ``m`` outputs it is a batch
  of ``m`` independent GPs, each with its own hyperparameters. Known
  heteroskedastic noise (``Dataset.Yvar``) goes into a fixed-noise likelihood;
  without it a homoskedastic noise level is inferred.
* :class:`ICMGPSurrogate` -- the intrinsic coregionalization model
  ``k((x, i), (x', j)) = B_ij k_Matérn(x, x')`` as a
  :class:`~botorch.models.MultiTaskGP` on long-format data, so outputs share
  information and may be observed at different points
  (``Dataset.observed``). Note: BoTorch's task kernel keeps task covariances
  non-negative, so it transfers information between positively correlated
  outputs (flip the sign of an output that is anti-correlated).

Both normalize inputs to the unit cube (with the oracle's bounds when given,
otherwise the training data's box) and standardize each output. The
hyperparameters are the MAP of the marginal likelihood (the priors are weak)
over ``n_restarts`` starting points; each start is optimized by
:func:`botorch.fit.fit_gpytorch_mll` and the one with the highest objective is
kept.

A GP whose inputs are the ``k*k`` displacement-gradient components
``H = F - I`` (row-major) and outputs the ``k*k`` stress components ``P``
(row-major) is a constitutive surrogate: :meth:`material_response` returns
``P`` = posterior mean, the tangent = the Jacobian of the mean, and the
variance = the mean predictive variance of the components. For
:class:`GPSurrogate` these are evaluated in closed form for the Matérn-5/2
kernel in torch from a per-fit cache (the Cholesky factor of the training
covariance and ``s A^-1 (y - c)``): ``O(N (d + m))`` per point for stress and
tangent plus ``O(N^2 m)`` for the exact variance (``with_variance=False``
skips it). With ``shared_lengthscale=True`` (one lengthscale vector for all
outputs) the kernel is evaluated once per training point for all ``m``
outputs. The ICM model differentiates through its BoTorch posterior by
autograd.

For learning on the fly (FE²), :meth:`GPSurrogate.select_batch` picks the
candidates whose observation brings every candidate's predictive variance
below a tolerance (greedy variance reduction, no evaluation needed), and
:meth:`GPSurrogate.condition_on_observations` returns the GP conditioned on
new answers with its hyperparameters kept (BoTorch's fantasy update).
"""

from __future__ import annotations

import contextlib
import copy
import math
import operator
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gpytorch
import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP, SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.utils.assorted import fantasize as fantasize_flag
from botorch.optim.closures import get_loss_closure_with_grads
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.constraints import GreaterThan
from gpytorch.distributions import MultitaskMultivariateNormal, MultivariateNormal
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.likelihoods.hadamard_gaussian_likelihood import HadamardGaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from threadpoolctl import threadpool_limits
from torch import Tensor

from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse
from surrogates.base import (
    SurrogateMixin,
    UnitStandardize,
    check_int,
    register_surrogate,
    variance_in_output_units,
    with_output_scale,
)
from surrogates.dataset import DTYPE, Dataset, floor_yvar, output_scales, real_tensor

__all__ = ["GPSurrogate", "ICMGPSurrogate", "fit_with_restarts"]

#: lengthscales below this (in unit-cube input units) are not allowed
_MIN_LENGTHSCALE = 2.5e-2
#: the smallest known noise variance, as a fraction of the output variance: just above GPyTorch's
#: smallest fixed noise in double precision (``gpytorch.settings.min_fixed_noise``, 1e-6 of the
#: standardized output), which GPyTorch would otherwise round up to with a NumericalWarning
_MIN_NOISE_REL = gpytorch.settings.min_fixed_noise.value(torch.float64) * (1 + 1e-9)


def _noise_rel(cfg: dict[str, Any]) -> float:
    """The fraction of the output variance known noise is floored at: ``min_noise_rel``, and
    never below :data:`_MIN_NOISE_REL` (a model saved with a smaller ``min_noise_rel`` had
    GPyTorch's floor, and keeps it)."""
    return max(float(cfg["min_noise_rel"]), _MIN_NOISE_REL)


def _matern(d: int, batch_shape: torch.Size, active_dims=None) -> MaternKernel:
    # log-normal lengthscale prior scaled with sqrt(d) (Hvarfner et al. 2024,
    # BoTorch's default since 0.12): weak, and keeps high-d problems smooth
    return MaternKernel(
        nu=2.5,
        ard_num_dims=d,
        batch_shape=batch_shape,
        active_dims=active_dims,
        lengthscale_prior=LogNormalPrior(loc=math.sqrt(2) + 0.5 * math.log(d), scale=math.sqrt(3)),
        lengthscale_constraint=GreaterThan(_MIN_LENGTHSCALE, transform=None, initial_value=1.0),
    )


def _index_prior_covar(module):
    """GPyTorch ``IndexKernel``'s task prior argument (its own closure is a lambda)."""
    return module._eval_covar_matrix()


def _positive_index_prior_corr(module):
    """BoTorch ``PositiveIndexKernel``'s task prior argument (its own closure is a lambda)."""
    return module._lower_triangle_corr


def _positive_index_prior_set(module, value) -> None:
    """BoTorch ``PositiveIndexKernel``'s task prior setting closure (its own is a lambda)."""
    module._set_lower_triangle_corr(value)


#: (qualified name of a library's prior closure that is a lambda, position in the prior's entry:
#: 1 closure, 2 setting closure) -> a module-level function that does the same and pickles
_PICKLABLE_PRIOR_CLOSURES = {
    ("IndexKernel.__init__.<locals>.<lambda>", 1): _index_prior_covar,
    ("PositiveIndexKernel.__init__.<locals>.<lambda>", 1): _positive_index_prior_corr,
    ("PositiveIndexKernel.__init__.<locals>.<lambda>", 2): _positive_index_prior_set,
}


def _picklable_priors(model: torch.nn.Module) -> None:
    """Replace the task kernel's prior closures, lambdas registered by GPyTorch's ``IndexKernel``
    and BoTorch's ``PositiveIndexKernel`` that ``pickle`` cannot store, by the module-level
    functions above, which do the same: a multi-task model then pickles (process pools, Dask)."""
    for mod in model.modules():
        priors = getattr(mod, "_priors", None)
        if not priors:
            continue
        for name, entry in list(priors.items()):
            new = list(entry)
            for pos in (1, 2):
                fn = _PICKLABLE_PRIOR_CLOSURES.get((getattr(entry[pos], "__qualname__", None), pos))
                if fn is not None:
                    new[pos] = fn
            priors[name] = tuple(new)


def _mll_value(mll: ExactMarginalLogLikelihood) -> float:
    """Objective maximized by the fit (log marginal likelihood + log priors, / n)."""
    model = mll.model
    model.train()
    with torch.no_grad():
        out = model(*model.train_inputs)
        val = mll(out, model.train_targets, *model.train_inputs)
    return float(val.sum())


def _randomize(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random starting point: log-uniform lengthscales, output scales, noise."""

    def logu(lo: float, hi: float, shape) -> Tensor:
        u = torch.rand(shape, generator=gen, dtype=DTYPE)
        return torch.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))

    for mod in model.modules():
        if isinstance(mod, MaternKernel):
            mod.lengthscale = logu(0.05, 5.0, mod.lengthscale.shape)
        elif isinstance(mod, ScaleKernel):
            mod.outputscale = logu(0.3, 3.0, mod.outputscale.shape)
        elif isinstance(mod, GaussianLikelihood | HadamardGaussianLikelihood):
            lo = float(mod.noise_covar.raw_noise_constraint.lower_bound.max())
            mod.noise = logu(max(1e-4, 2 * lo), 1e-1, mod.noise.shape)


def fit_with_restarts(
    model, n_restarts: int = 4, seed: int = 0, maxiter: int = 200
) -> float:
    """Fit GP hyperparameters by marginal likelihood from several starts.

    Start 0 is the model's current initialization, starts ``1..n_restarts-1``
    are random (:func:`_randomize`). Each is optimized with
    :func:`botorch.fit.fit_gpytorch_mll` (L-BFGS-B); the best objective wins.

    Args:
        model: an exact GPyTorch/BoTorch GP.
        n_restarts: number of starting points (>= 1).
        seed: seed of the random starting points.
        maxiter: L-BFGS-B iterations per start.

    Returns:
        The best objective (log marginal likelihood plus log priors, divided
        by the number of training points, summed over batched outputs).
    """
    if n_restarts < 1:
        raise ValueError(f"n_restarts must be >= 1, got {n_restarts}")
    # L-BFGS-B's BLAS calls act on vectors of a few dozen hyperparameters:
    # threaded OpenBLAS only adds synchronisation (worst on a loaded machine),
    # so the fit runs with single-threaded BLAS.
    # fitting needs gradients even when the caller is inside torch.no_grad()
    with threadpool_limits(limits=1, user_api="blas"), torch.enable_grad():
        return _fit_with_restarts(model, n_restarts, seed, maxiter)


def _joint_closure(mll):
    """A loss closure over all parameters jointly where some parameters of a
    batched multi-output model are shared by its outputs (BoTorch would fit
    each output on its own, which needs every parameter batched); None
    (BoTorch's default) otherwise."""
    model = mll.model
    batch = getattr(model, "_aug_batch_shape", torch.Size())
    if batch.numel() <= 1:
        return None
    params = {n: p for n, p in mll.named_parameters() if p.requires_grad}
    if all(p.shape[: len(batch)] == batch for p in params.values()):
        return None
    return get_loss_closure_with_grads(mll, params)


def _fit_with_restarts(model, n_restarts: int, seed: int, maxiter: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    init = copy.deepcopy(model.state_dict())
    best_val, best_state = -math.inf, None
    for r in range(n_restarts):
        model.load_state_dict(init)
        if r > 0:
            _randomize(model, gen)
        model.train()
        try:
            # one attempt per start: the restarts are ours. Hitting maxiter is
            # fine (we compare objectives), numerical failures raise.
            fit_gpytorch_mll(
                mll,
                closure=_joint_closure(mll),
                optimizer_kwargs={"options": {"maxiter": maxiter}},
                max_attempts=1,
                warning_handler=lambda w: True,
            )
            val = _mll_value(mll)
        except Exception as err:  # a bad start (Cholesky failure): try the next one
            warnings.warn(f"GP restart {r} failed: {err}", stacklevel=2)
            continue
        if math.isfinite(val) and val > best_val:
            best_val, best_state = val, copy.deepcopy(model.state_dict())
    if best_state is None:
        raise RuntimeError(f"all {n_restarts} GP fits failed")
    model.load_state_dict(best_state)
    model.eval()
    return best_val


def _bounds_tensor(bounds, d: int) -> Tensor | None:
    if bounds is None:
        return None
    b = torch.as_tensor(bounds, dtype=DTYPE)
    if b.shape != (2, d) or not (b[1] > b[0]).all() or not torch.isfinite(b).all():
        raise ValueError(f"bounds must be a finite 2 x {d} tensor with lower < upper, got {b.tolist()}")
    return b


def _input_box(bounds: Tensor | None, X: Tensor) -> Tensor:
    """The box the inputs are normalized to: ``bounds``, else the training data's box (an input
    held at one value gets width 1). Given to BoTorch's ``Normalize`` as fixed bounds: its learned
    bounds leave an input whose data range is below an absolute 1e-8 unscaled (lengths of 1e-9 m
    then never reach the kernel)."""
    if bounds is not None:
        return bounds
    lo, hi = X.min(0).values, X.max(0).values
    return torch.stack([lo, torch.where(hi > lo, hi, lo + 1.0)])


def _infer_dim_F(d: int, m: int) -> int | None:
    for k in (2, 3):
        if d == m == k * k:
            return k
    return None


def _check_single_fidelity(dataset: Dataset, cls_name: str) -> None:
    if dataset.fidelity is not None and dataset.fidelity.unique().numel() > 1:
        raise ValueError(
            f"{cls_name} is a single-fidelity model but the dataset has fidelity levels "
            f"{dataset.fidelity.unique().tolist()}; pass dataset.at_fidelity(level) or use "
            "a model from surrogates.multifidelity"
        )


def _check_options(cfg: dict[str, Any]) -> None:
    """One-line errors for options of the wrong type or range (``n_restarts = "4"``,
    ``seed = 0.5``, ``min_noise = -1``), before any fitting."""
    for name, minimum in (("n_restarts", 1), ("seed", None), ("maxiter", 1)):
        if name in cfg:
            cfg[name] = check_int(name, cfg[name], minimum)
    for name in ("rank", "dim_F"):
        if cfg.get(name) is not None:
            cfg[name] = check_int(name, cfg[name], 1)
    for name, positive in (("min_noise", True), ("min_noise_rel", False)):
        if name in cfg:
            v = cfg[name]
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (
                v > 0 if positive else v >= 0)
            if not ok:
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
            cfg[name] = float(v)


def _real(name: str, value: Any) -> Tensor:
    """``value`` (tensor, array or nested list) as a float64 tensor; complex or non-numeric
    data is an :class:`InvalidInput` naming ``name``."""
    return real_tensor(name, value, InvalidInput)


def _check_finite(name: str, X: Tensor) -> None:
    """An :class:`InvalidInput` naming the first NaN or inf entry of ``X``, if it has one."""
    bad = ~torch.isfinite(X.detach())
    if bool(bad.any()):
        idx = tuple(int(i) for i in bad.nonzero()[0])
        raise InvalidInput(f"{name} contains nan or inf entries (shape {tuple(X.shape)}): the first is "
                           f"{name}[{', '.join(map(str, idx))}] = {X.detach()[idx].item()}")


def _model_dtype(X: Tensor) -> Tensor:
    """``X`` in the models' float64. BoTorch's ``Normalize`` casts its stored bounds to the
    dtype of the inputs it sees, so one integer or float32 query would have rounded them
    for good (integer bounds of 0: NaN predictions from then on, saved with the model)."""
    if X.is_complex():
        raise TypeError(f"X must be real, got dtype {X.dtype}")
    return X if X.dtype == DTYPE else X.to(DTYPE)


class _GPCommon(SurrogateMixin):
    """Shared configuration, persistence and material response."""

    _defaults: dict[str, Any] = {}
    _sb_config: dict[str, Any]

    @classmethod
    def _make_config(cls, dataset: Dataset, options: dict[str, Any]) -> dict[str, Any]:
        unknown = set(options) - set(cls._defaults)
        if unknown:
            raise TypeError(
                f"unknown option(s) {sorted(unknown)} for {cls.__name__}; known: {sorted(cls._defaults)}"
            )
        cfg = {**cls._defaults, **options}
        _check_options(cfg)
        b = _bounds_tensor(cfg["bounds"], dataset.d)
        cfg["bounds"] = None if b is None else b.tolist()
        if cfg.get("dim_F") is None:
            cfg["dim_F"] = _infer_dim_F(dataset.d, dataset.m)
        elif not (dataset.m == cfg["dim_F"] ** 2 <= dataset.d):
            # inputs H = F - I first, then any descriptors (a GP over [H, theta], loops.uq)
            k = cfg["dim_F"]
            raise ValueError(
                f"dim_F = {k} needs m = {k * k} outputs P and at least {k * k} inputs (H = F - I first, then "
                f"any descriptors; row-major), got d = {dataset.d} inputs and m = {dataset.m} outputs")
        return cfg

    @classmethod
    def from_dataset(cls, dataset: Dataset, **options: Any):
        """Build and fit on ``dataset`` (options: see the class's ``_defaults``)."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"expected a surrogates.Dataset, got {type(dataset).__name__}")
        _check_single_fidelity(dataset, cls.__name__)
        if dataset.n == 0:
            raise ValueError(f"{cls.__name__} needs at least one training point, got an empty Dataset")
        if dataset.d == 0 or dataset.m == 0:
            raise ValueError(f"{cls.__name__} needs at least one input and one output column, got a Dataset "
                             f"with d = {dataset.d} inputs and m = {dataset.m} outputs")
        cfg = cls._make_config(dataset, options)
        model = cls._build(dataset, cfg)
        fit_with_restarts(model, n_restarts=cfg["n_restarts"], seed=cfg["seed"], maxiter=cfg["maxiter"])
        return model

    def get_config(self) -> dict[str, Any]:
        return copy.deepcopy(self._sb_config)

    @classmethod
    def from_config(cls, config: dict[str, Any], dataset: Dataset):
        if dataset is None:
            raise ValueError(f"{cls.__name__} needs its training data (dataset.json) to be rebuilt")
        cfg = {**cls._defaults, **config}
        return cls._build(dataset, cfg)

    @property
    def dim_F(self) -> int | None:
        """``k`` when this is a constitutive surrogate of ``k x k`` F, else None."""
        return self._sb_config.get("dim_F")

    def material_response(
        self, F: Tensor, chunk_size: int = 2048, with_variance: bool = True,
        dtype: torch.dtype = DTYPE,
    ) -> MaterialResponse:
        """Stress, tangent and variance at deformation gradients ``F``.

        Args:
            F: ``n x k x k`` (or ``k x k``) deformation gradients.
            chunk_size: points per evaluation (bounds the memory).
            with_variance: also compute the variances (for the exact GP this
                is the ``O(N^2)``-per-point part; skip it when not needed and
                ``variance`` is None).
            dtype: evaluation dtype of the stress and tangent: float64, or
                float32 for deployment (:class:`GPSurrogate` only; the kernel
                sums in single precision, the variance's triangular solve in
                double; results returned in ``dtype``).

        Returns:
            :class:`MaterialResponse` with ``P`` (``n x k x k``) the posterior
            mean, ``tangent`` (``n x k x k x k x k``, ``dP_iJ / dF_kL``) the
            Jacobian of the mean, ``variance`` (``n``) the mean predictive
            variance over the ``k*k`` stress components.
        """
        k = self.dim_F
        if k is None:
            raise TypeError(
                f"{type(self).__name__} is not a constitutive surrogate: it needs d = m = 4 or 9 "
                "inputs H = F - I and outputs P (row-major), or dim_F set in its options"
            )
        F = _real("F", F)
        if F.dim() == 2:
            F = F.unsqueeze(0)
        if F.dim() != 3 or F.shape[-2:] != (k, k):
            raise InvalidInput(f"F must be n x {k} x {k}, got shape {tuple(F.shape)}")
        _check_finite("F", F)
        n = F.shape[0]
        H = (F - torch.eye(k, dtype=DTYPE)).reshape(n, k * k)
        self.eval()
        Ps, Js, Vs = [], [], []
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        kw = {} if dtype == DTYPE else {"dtype": dtype}
        if n == 0:  # no points: empty answers of the documented shapes
            z = F.new_zeros(0, k, k).to(dtype)
            return MaterialResponse(P=z, tangent=F.new_zeros(0, k, k, k, k).to(dtype),
                                    variance=F.new_zeros(0).to(dtype) if with_variance else None)
        for start in range(0, n, chunk_size):
            mean, jac, var = self._mean_jac_var(H[start : start + chunk_size], with_variance, **kw)
            Ps.append(mean)
            Js.append(jac)
            if var is not None:
                Vs.append(var.mean(-1))
        P = torch.cat(Ps).reshape(n, k, k)
        tangent = torch.cat(Js).reshape(n, k, k, k, k)
        return MaterialResponse(P=P, tangent=tangent, variance=torch.cat(Vs).to(dtype) if Vs else None)

    #: points per joint posterior of the autograd path of :meth:`_mean_jac_var`: a joint
    #: call still builds the ``(c m) x (c m)`` test covariance of a multi-task GP, so
    #: its cost grows with ``c^2`` (ICM, 1024 points at once: 2.1 s and 1.1 GB; in
    #: blocks of 64: 0.3 s)
    _AUTOGRAD_BLOCK = 128

    def _mean_jac_var(self, X: Tensor, with_variance: bool = True,
                      dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor, Tensor | None]:
        """Posterior mean (``c x m``), its Jacobian (``c x m x d``) and the
        marginal variances (``c x m``) at ``X`` (``c x d``), by autograd
        through :meth:`posterior`, in blocks of :data:`_AUTOGRAD_BLOCK` points.
        The mean comes from one joint call per block without the variances
        (``skip_posterior_variances``); the variances from a second call (each
        point its own batch for a multi-task GP, one joint call for independent
        outputs, whose one-point batches would copy the ``m x N x N`` cache per point)."""
        if dtype != DTYPE:
            raise ValueError(
                f"{type(self).__name__} evaluates the stress and tangent in float64 only "
                f"(float32 is the closed form of an unconditioned GPSurrogate), got dtype={dtype}"
            )
        parts = [_GPCommon._autograd_block(self, X[i : i + self._AUTOGRAD_BLOCK], with_variance)
                 for i in range(0, len(X), self._AUTOGRAD_BLOCK)] or [_GPCommon._autograd_block(self, X, with_variance)]
        mean, jac, var = (torch.cat(t) if t[0] is not None else None for t in zip(*parts, strict=True))
        return mean, jac, var

    def _autograd_block(self, X: Tensor, with_variance: bool) -> tuple[Tensor, Tensor, Tensor | None]:
        m = self.num_outputs
        with torch.enable_grad(), gpytorch.settings.skip_posterior_variances():
            Xg = X.detach().requires_grad_(True)  # c x d
            mean = self.posterior(Xg).mean  # c x m
            # the mean at point a depends only on X[a], so the gradient of
            # sum_a mean[a, j] is row a of the Jacobian of output j
            rows = [
                torch.autograd.grad(mean[:, j].sum(), Xg, retain_graph=j < m - 1)[0]
                for j in range(m)
            ]
        var = None
        if with_variance:
            with torch.no_grad(), variance_in_output_units():
                if isinstance(self, MultiTaskGP):
                    var = self.posterior(X.unsqueeze(-2)).variance.squeeze(-2)
                else:
                    var = self.posterior(X).variance
        return mean.detach(), torch.stack(rows, dim=1), var


@register_surrogate
class GPSurrogate(SingleTaskGP, _GPCommon):
    """Exact GP with an ARD Matérn-5/2 kernel; ``m`` outputs as independent GPs.

    Build with :meth:`from_dataset`::

        gp = GPSurrogate.from_dataset(dataset, bounds=oracle.bounds)
        post = gp.posterior(X)          # X: batch x q x d -> mean batch x q x m

    Options (``from_dataset(dataset, **options)``):
        bounds: ``2 x d`` input bounds for normalization (default: the
            training inputs' box).
        n_restarts: starting points of the hyperparameter fit (default 4).
        seed: seed of the random restarts (default 0).
        maxiter: L-BFGS-B iterations per start (default 200).
        min_noise: lower bound of the inferred noise variance, in
            standardized units (default 1e-6; used when ``Yvar`` is None).
        min_noise_rel: known noise variances are floored at this fraction of
            the output variance (default 1e-6, and never below GPyTorch's
            smallest fixed noise, 1e-6 of the standardized output) to keep the
            Cholesky stable for noise-free data.
        dim_F: ``k`` for a constitutive surrogate (inferred when d = m = k*k).
        shared_lengthscale: one ARD lengthscale vector for all ``m`` outputs
            (each keeps its own output scale, mean and noise), as
            scikit-learn's multi-output ``GaussianProcessRegressor`` shares
            its kernel (default False: each output has its own). The kernel
            row at a point is then the same for every output, so stress and
            tangent cost one kernel evaluation per training point instead of
            ``m``.
    """

    _defaults = {
        "bounds": None,
        "n_restarts": 4,
        "seed": 0,
        "maxiter": 200,
        "min_noise": 1e-6,
        "min_noise_rel": 1e-6,
        "dim_F": None,
        "shared_lengthscale": False,
    }

    @classmethod
    def _build(cls, dataset: Dataset, cfg: dict[str, Any]) -> GPSurrogate:
        if dataset.observed is not None:
            raise ValueError(
                "GPSurrogate needs every output observed at every point; "
                "use ICMGPSurrogate for datasets with missing outputs (Dataset.observed)"
            )
        X, Y, d, m = dataset.X, dataset.Y, dataset.d, dataset.m
        batch_shape = torch.Size([m]) if m > 1 else torch.Size()
        if not isinstance(cfg["shared_lengthscale"], bool):
            raise TypeError(f"shared_lengthscale must be True or False, got {cfg['shared_lengthscale']!r}")
        covar = ScaleKernel(
            _matern(d, torch.Size() if cfg["shared_lengthscale"] else batch_shape),
            batch_shape=batch_shape,
            outputscale_prior=GammaPrior(2.0, 0.15),
        )
        Yvar, likelihood = None, None
        if dataset.Yvar is not None:
            Yvar = floor_yvar(dataset.Yvar, Y, _noise_rel(cfg))
        else:
            likelihood = GaussianLikelihood(
                batch_shape=batch_shape,
                noise_prior=LogNormalPrior(loc=-4.0, scale=1.0),
                noise_constraint=GreaterThan(cfg["min_noise"], transform=None, initial_value=1e-2),
            )
        bounds = _input_box(_bounds_tensor(cfg["bounds"], d), X)
        model = cls(
            train_X=X,
            train_Y=Y,
            train_Yvar=Yvar,
            likelihood=likelihood,
            covar_module=covar,
            outcome_transform=UnitStandardize(m),
            input_transform=Normalize(d=d, bounds=bounds),
        )
        model.train_dataset = dataset
        model._sb_config = copy.deepcopy(cfg)
        if m > 1:
            # the batch dimension of each output's parameters, for BoTorch's subset_output
            model._subset_batch_dict = {
                "mean_module.raw_constant": -1,
                "covar_module.raw_outputscale": -1,
                **({} if cfg["shared_lengthscale"] else {"covar_module.base_kernel.raw_lengthscale": -3}),
                **({"likelihood.noise_covar.raw_noise": -2} if Yvar is None else {}),
            }
        return model

    def subset_output(self, idcs: list[int]) -> GPSurrogate:
        """This GP restricted to the outputs ``idcs`` (BoTorch's ``Model.subset_output``).

        Each kept output keeps its hyperparameters, standardization and noise,
        so its posterior is the full model's for that output; ``train_dataset``
        keeps those columns. A shared lengthscale stays shared. The subset is a
        plain GP of ``len(idcs)`` outputs (``dim_F`` None unless every output
        is kept in order).
        """
        m = self.num_outputs
        if isinstance(idcs, (int, torch.Tensor)) or not all(isinstance(i, int) for i in idcs):
            raise TypeError(f"idcs must be a list of output indices (ints), got {idcs!r}")
        idcs = list(idcs)
        if not idcs or any(not -m <= i < m for i in idcs):
            raise ValueError(f"idcs must be a non-empty list of output indices in [-{m}, {m - 1}], got {idcs}")
        idcs = [i % m for i in idcs]
        if len(set(idcs)) != len(idcs):
            raise ValueError(f"idcs must not repeat an output, got {idcs}")
        if idcs == list(range(m)):
            return copy.deepcopy(self)
        ds = self.train_dataset
        new = super().subset_output(idcs)
        orig = getattr(new, "_original_train_inputs", None)
        if orig is not None and orig.dim() > 2:
            # BoTorch subsets train_inputs but not the untransformed copy (m x n x d) it concatenates
            # new points to when conditioning
            new._original_train_inputs = orig[..., idcs if len(idcs) > 1 else idcs[0], :, :]
        new.train_dataset = Dataset(
            X=ds.X, Y=ds.Y[:, idcs], Yvar=None if ds.Yvar is None else ds.Yvar[:, idcs],
            input_names=ds.input_names,
            output_names=None if ds.output_names is None else tuple(ds.output_names[i] for i in idcs),
        )
        new._sb_config = {**copy.deepcopy(self._sb_config), "dim_F": None}
        new._fast_cache = None
        if len(idcs) > 1:
            new._subset_batch_dict = self._subset_batch_dict
        else:
            del new._subset_batch_dict
        return new

    # ----------------------------------------------------------- fast path
    _fast_cache: dict[str, Tensor] | None = None

    def train(self, mode: bool = True):
        # hyperparameters may change while training: drop the prediction cache
        if mode:
            self._fast_cache = None
        return super().train(mode)

    def load_state_dict(self, state_dict, *args, **kwargs):
        self._fast_cache = None
        out = super().load_state_dict(state_dict, *args, **kwargs)
        self._restandardize_targets()
        return out

    def _output_scale(self) -> Tensor:
        """The ``m`` output scales of the fit (the outcome transform's), kept by conditioning:
        known noise is floored relative to them (``min_noise_rel``), so a conditioned model and
        the same model saved and loaded floor every point alike."""
        return self.outcome_transform.stdvs.reshape(-1)

    def _restandardize_targets(self) -> None:
        """Training targets standardized with the current output transform.

        A model conditioned on new points keeps the standardization of its fit;
        rebuilt from its data (``from_config``) it would standardize with the
        statistics of all its data, so the loaded transform is applied again."""
        tf = getattr(self, "outcome_transform", None)
        ds = getattr(self, "train_dataset", None)
        if tf is None or ds is None or ds.n != self.train_targets.shape[-1]:
            return
        Yvar = None if ds.Yvar is None else floor_yvar(ds.Yvar, None, _noise_rel(self._sb_config),
                                                        scale=self._output_scale())
        was_training = tf.training
        tf.eval()
        try:
            with torch.no_grad():
                # N x m, standardized with the stored means and scales
                Ys, Yvs = tf(ds.Y, Yvar)
        finally:
            tf.train(was_training)
        m = self.num_outputs
        targets = Ys.T.contiguous() if m > 1 else Ys.squeeze(-1)
        self.set_train_data(targets=targets, strict=False)
        if Yvs is not None:
            self.likelihood.noise_covar.noise = Yvs.T.contiguous() if m > 1 else Yvs.squeeze(-1)

    def _fast_terms(self, dtype: torch.dtype = DTYPE) -> dict[str, Tensor]:
        """Quantities of the exact predictor that depend only on the training data.

        With ``A = K + Sigma_noise`` (standardized units), ``L`` its Cholesky
        factor (``m x N x N``), ``s`` the output scales and ``w = sqrt(5) / l``
        the scaled inverse lengthscales: the centred, scaled training inputs
        ``Zt = w (Xt - mu)`` (``G x N x d``, ``G = 1`` kernel group with a shared
        lengthscale, else ``G = m``) and the mean weights
        ``a = s A^-1 (y - c)`` arranged per group (``G x N x r``, ``r = m / G``
        outputs per group). A prediction then costs GEMMs against these plus
        ``O(G N)`` elementwise work per point. Computed once per fit (or
        conditioning) and cached; ``dtype`` other than float64 gives a copy of
        the terms of the kernel sums in that dtype (the Cholesky factor and
        output scales of the variance stay float64).
        """
        if dtype != DTYPE:
            base = self._fast_terms()
            if dtype not in base["as_dtype"]:
                keep = ("key", "G", "r", "L", "scale", "as_dtype")
                # detached: a cache entry must not be a graph node (deepcopy, which BoTorch's
                # fantasies use, refuses non-leaf tensors)
                base["as_dtype"][dtype] = {k: v if k in keep else v.detach().to(dtype) for k, v in base.items()}
            return base["as_dtype"][dtype]
        key = (self.train_targets.data_ptr(), tuple(self.train_targets.shape))
        if self._fast_cache is not None and self._fast_cache["key"] == key:
            return self._fast_cache
        m = self.num_outputs
        with torch.no_grad():
            # a model built without transforms maps identically
            tf_in = getattr(self, "input_transform", None)
            tf_out = getattr(self, "outcome_transform", None)
            X_train = self.train_dataset.X
            Xt = tf_in(X_train) if tf_in is not None else X_train  # N x d, unit cube
            N, d = Xt.shape
            prior = self.forward(Xt)
            A = self.likelihood(prior, Xt).covariance_matrix  # (m x) N x N
            y = self.train_targets  # (m x) N, standardized
            L = torch.linalg.cholesky(A.reshape(m, N, N))  # m x N x N
            r_ = (y - prior.mean).reshape(m, N, 1)
            alpha = torch.cholesky_solve(r_, L).squeeze(-1)  # m x N
            scale = self.covar_module.outputscale.reshape(m)
            a = scale.unsqueeze(-1) * alpha  # m x N
            ls = self.covar_module.base_kernel.lengthscale  # (m x) 1 x d
            G = 1 if ls.numel() == d else m
            r = m // G
            w = (math.sqrt(5.0) / ls).reshape(G, 1, d)
            # centring on the training mean keeps |z|^2 + |z'|^2 - 2 z.z' accurate
            mu = Xt.mean(0)
            Zt = (Xt - mu) * w  # G x N x d
            aG = a.reshape(G, r, N).transpose(1, 2)  # G x N x r
            x_off = tf_in._offset.reshape(-1) if tf_in is not None else Xt.new_zeros(d)
            x_coef = tf_in._coefficient.reshape(-1) if tf_in is not None else Xt.new_ones(d)
            y_mean = tf_out.means.reshape(m) if tf_out is not None else Xt.new_zeros(m)
            y_std = tf_out.stdvs.reshape(m) if tf_out is not None else Xt.new_ones(m)
            cache = {
                "key": key,
                "as_dtype": {},  # copies in other dtypes (float32 evaluation)
                "G": G,
                "r": r,
                "L": L,
                "scale": scale,
                # [-2 z', 1, |z'|^2]^T, so that rho^2 is one GEMM with [z, |z|^2, 1]
                "ZtaugT": torch.cat(
                    [-2.0 * Zt, torch.ones_like(Zt[..., :1]), Zt.pow(2).sum(-1, keepdim=True)], -1
                ).transpose(-1, -2).contiguous(),  # G x (d + 2) x N
                # p [a, a (x) Zt] gives the kernel sums S and T of every output in the group
                "WT": torch.cat([aG, (aG.unsqueeze(-1) * Zt.unsqueeze(-2)).reshape(G, N, r * d)], -1)
                .transpose(-1, -2).contiguous(),  # G x (r + r d) x N
                "a3": (aG / 3.0).contiguous(),  # G x N x r
                "const": self.mean_module.constant.reshape(G, 1, r),
                "y_mean": y_mean,
                "y_std": y_std,
                # x (original units) -> z: z = (x - off) / coef * w - mu * w
                "x_mul": w / x_coef,  # G x 1 x d
                "x_shift": (x_off / x_coef + mu) * w,  # G x 1 x d
                # dP/dx = y_std * dm/dz * w / coef, with dm/dz = (T - S z) / 3
                "jac_mul": (y_std.reshape(G, r, 1) / 3.0) * (w / x_coef),  # G x r x d
            }
        self._fast_cache = cache
        return cache

    def _conditioned(self) -> bool:
        # a BoTorch fantasy (batched or without train_dataset) is predicted by
        # the generic path: the closed forms read the training set from train_dataset
        n_train = self.train_dataset.n if self.train_dataset is not None else -1
        return self.train_targets.shape[-1] != n_train or self.train_targets.dim() > (
            2 if self.num_outputs > 1 else 1)

    def _mean_jac_var(self, X: Tensor, with_variance: bool = True,
                      dtype: torch.dtype = DTYPE) -> tuple[Tensor, Tensor, Tensor | None]:
        """Exact posterior mean, its Jacobian and marginal variances at ``X``
        (``c x d``) in closed form for the ARD Matérn-5/2 kernel.

        In scaled coordinates ``z = sqrt(5) x / l`` with ``rho = |z - z'|`` and
        output scale ``s``: ``k = s (1 + rho + rho^2 / 3) e^-rho`` and
        ``dk/dz = -s/3 (1 + rho) e^-rho (z - z')`` (no singularity at
        ``rho = 0``). With ``p = (1 + rho) e^-rho`` and ``q = rho^2 e^-rho``
        (``c x N`` per kernel group) the mean is ``c + p a + q a / 3`` and the
        Jacobian ``(T - S z) / 3`` with ``[S, T] = p [a, a (x) Zt]``: one GEMM
        per group for all its outputs, no ``c x N x d`` difference tensor. The
        input and output transforms enter the Jacobian as diagonal factors.
        Cost ``O(c N (d + m))`` for the mean and Jacobian plus ``O(c N^2 m)``
        for the variances (a triangular solve with the Cholesky factor). The
        points are processed in blocks of ``_FAST_BLOCK`` so the
        ``G x block x N`` work arrays stay in cache; with
        ``torch.get_num_threads() > 1`` the blocks are shared among that many
        Python threads, each running single-threaded ops (torch and numpy
        release the GIL), and the thread setting is restored afterwards.
        With ``dtype=torch.float32`` the kernel sums run in single precision
        (the variance's triangular solve stays in double).
        """
        if self._conditioned():
            return super()._mean_jac_var(X, with_variance, dtype)
        c = self._fast_terms(dtype)
        G, r, N = c["G"], c["r"], c["ZtaugT"].shape[-1]
        m = G * r
        n, d = X.shape
        mean = torch.empty(G, r, n, dtype=dtype)
        jac = torch.empty(G, r, n, d, dtype=dtype)
        var = torch.empty(m, n, dtype=DTYPE) if with_variance else None
        # one kernel group (shared lengthscale) takes longer blocks for the same working set
        b = min(n, max(self._FAST_BLOCK, 4 * self._FAST_BLOCK // G))
        X = X.to(dtype)

        def run(starts) -> None:
            work = [torch.empty(G, b, N, dtype=dtype) for _ in range(3)]
            with torch.no_grad():
                for i in starts:
                    sl = slice(i, min(i + b, n))
                    self._fast_block(c, X[sl], mean[:, :, sl], jac[:, :, sl], None if var is None else var[:, sl],
                                     [w[:, : sl.stop - sl.start] for w in work])

        starts = list(range(0, n, b))
        workers = min(torch.get_num_threads(), len(starts))
        if workers > 1:
            # block-level parallelism with single-threaded ops: per-operation
            # intra-op threading synchronizes cores at every elementwise pass
            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(run, [starts[k::workers] for k in range(workers)]))
            finally:
                torch.set_num_threads(prev)
        else:
            run(starts)
        mean = (c["y_mean"].unsqueeze(-1) + c["y_std"].unsqueeze(-1) * mean.reshape(m, n)).T  # n x m
        if var is not None:
            var = (c["y_std"].pow(2).to(DTYPE).unsqueeze(-1) * var.clamp_min_(0)).T  # n x m
        return mean, jac.reshape(m, n, d).transpose(0, 1), var

    #: points per block of the closed-form predictor (four times as many with
    #: one kernel group): the three ``G x block x N`` work arrays stay in cache
    _FAST_BLOCK = 64

    @staticmethod
    def _fast_block(c, X, mean_out, jac_out, var_out, work) -> None:
        """One block of :meth:`_mean_jac_var`, written into the ``*_out`` views
        (standardized mean ``G x r x b``, original-unit Jacobian ``G x r x b x d``,
        standardized variance ``m x b``). ``work``: three ``G x b x N`` buffers."""
        R, P, E = work
        G, r = c["G"], c["r"]
        b, d = X.shape
        Z = torch.addcmul(c["x_shift"].neg(), X.unsqueeze(0), c["x_mul"])  # G x b x d
        # |z - z'|^2 = [z, |z|^2, 1] . [-2 z', 1, |z'|^2]: one GEMM
        Zaug = torch.cat([Z, Z.pow(2).sum(-1, keepdim=True), torch.ones_like(Z[..., :1])], -1)
        torch.bmm(Zaug, c["ZtaugT"], out=R)  # rho^2, G x b x N
        R.clamp_min_(0.0)
        # numpy's sqrt and torch's exp (each the faster of the two here), in place
        np.sqrt(R.numpy(), out=P.numpy())  # rho
        torch.neg(P, out=E)
        torch.exp(E, out=E)  # e^-rho
        torch.addcmul(E, P, E, out=P)  # p = (1 + rho) e^-rho
        R.mul_(E)  # q = rho^2 e^-rho
        ST = torch.bmm(c["WT"], P.transpose(-1, -2)).transpose(-1, -2)  # G x b x (r + r d)
        S = ST[..., :r]  # G x b x r
        T = ST[..., r:].reshape(G, b, r, d)
        mean_out.copy_((S + torch.bmm(R, c["a3"]) + c["const"]).transpose(-1, -2))
        jac = torch.addcmul(T, S.unsqueeze(-1), Z.unsqueeze(-2), value=-1.0).mul_(c["jac_mul"].unsqueeze(1))
        jac_out.copy_(jac.transpose(1, 2))
        if var_out is not None:
            # K_j = s_j (p + q / 3); v = L_j^-1 K_j^T; var_j = s_j - |v|^2
            K0 = R.div_(3.0).add_(P)  # G x b x N
            m = G * r
            K = K0.to(DTYPE).unsqueeze(1).expand(G, r, b, K0.shape[-1]).reshape(m, b, -1) * c["scale"].reshape(m, 1, 1)
            V = torch.linalg.solve_triangular(c["L"], K.transpose(-1, -2), upper=False)  # m x N x b
            torch.sub(c["scale"].reshape(-1, 1), V.pow(2).sum(-2), out=var_out)

    # ------------------------------------------------- learning on the fly
    def _inputs(self, X: Tensor) -> Tensor:
        """``n x d`` inputs from ``X`` (``n x d``) or, for a constitutive surrogate, ``F`` (``n x k x k``)."""
        X = _real("X", X)
        k = self.dim_F
        if X.dim() == 3 and k is not None:
            if X.shape[-2:] != (k, k):
                raise InvalidInput(f"F must be n x {k} x {k}, got shape {tuple(X.shape)}")
            X = (X - torch.eye(k, dtype=DTYPE)).reshape(X.shape[0], k * k)
        d = self.train_dataset.d
        if X.dim() != 2 or X.shape[-1] != d:
            raise InvalidInput(
                f"expected inputs n x {d}" + (f" or F n x {k} x {k}" if k else "") + f", got shape {tuple(X.shape)}"
            )
        _check_finite("X", X)
        return X

    def posterior(self, X: Tensor, output_indices=None, observation_noise: bool | Tensor = False,
                  posterior_transform=None, **kwargs):
        """BoTorch's posterior at ``X`` (``batch x q x d``), mean ``batch x q x m``.

        ``observation_noise``: False (the latent function), True (plus the
        fitted or known noise), or a ``batch x q x m`` tensor of noise
        variances in output units, as every scalebridge surrogate reads it
        (BoTorch reads such a tensor in the model's standardized units, and so
        does this method inside BoTorch's ``fantasize``, which passes the
        likelihood's standardized noise).
        ``X`` must be a finite tensor.
        """
        if not torch.is_tensor(X):
            raise TypeError(f"X must be a torch.Tensor (batch x q x {self.train_dataset.d}), got {type(X).__name__}")
        X = _model_dtype(X)
        _check_finite("X", X)
        m = self.num_outputs
        idcs = self._output_indices(output_indices)
        # inside BoTorch's fantasize the tensor is the likelihood's own noise, standardized
        if torch.is_tensor(observation_noise) and not fantasize_flag.on():
            self._check_noise(observation_noise, X, None if idcs is None else len(idcs))
            observation_noise = observation_noise.to(X)
            if idcs is not None:  # the selected outputs' columns, the others' noise-free
                full = observation_noise.new_zeros(torch.broadcast_shapes(
                    observation_noise.shape, (*X.shape[:-1], len(idcs)))[:-1] + (m,))
                full[..., idcs] = observation_noise
                observation_noise = full
            observation_noise = observation_noise / self.outcome_transform.stdvs.to(X).pow(2)
        if idcs is None:
            return super().posterior(X, observation_noise=observation_noise,
                                     posterior_transform=posterior_transform, **kwargs)
        # BoTorch's own selection fails on this model (one output: "at least 2 MVNs"; more: the
        # outcome transform's m scales against fewer outputs): the full posterior's block of them
        post = with_output_scale(
            self._select_outputs(super().posterior(X, observation_noise=observation_noise, **kwargs), idcs),
            self.outcome_transform.stdvs.reshape(-1)[idcs])
        return post if posterior_transform is None else posterior_transform(post)

    def _output_indices(self, output_indices) -> list[int] | None:
        """``output_indices`` as a list of distinct indices in ``[0, m)``, None for all outputs in order."""
        if output_indices is None:
            return None
        m = self.num_outputs
        try:
            idcs = [operator.index(i) for i in output_indices]
        except TypeError:
            raise TypeError(f"output_indices must be a list of output indices (ints), got {output_indices!r}") from None
        if not idcs or any(not -m <= i < m for i in idcs) or len({i % m for i in idcs}) != len(idcs):
            raise ValueError(f"output_indices must be distinct output indices in [-{m}, {m - 1}], got {output_indices}")
        idcs = [i % m for i in idcs]
        return None if idcs == list(range(m)) else idcs

    @staticmethod
    def _select_outputs(post, idcs: list[int]) -> GPyTorchPosterior:
        """The joint posterior of the outputs ``idcs`` (in that order) from ``post`` over all
        ``m`` outputs (a multi-task normal, ``m > 1``)."""
        d = post.distribution
        mean = d.mean  # batch x q x m
        q, m = mean.shape[-2], mean.shape[-1]
        pts = torch.arange(q, device=mean.device)
        # position of (point i, output j) in the flattened covariance
        pos = torch.stack([pts * m + j if d._interleaved else j * q + pts for j in idcs]).reshape(-1)
        cov = d.lazy_covariance_matrix[..., pos, :][..., :, pos]
        if len(idcs) == 1:
            return GPyTorchPosterior(MultivariateNormal(mean[..., idcs[0]], cov))
        return GPyTorchPosterior(MultitaskMultivariateNormal(mean[..., idcs], cov, interleaved=False))

    def _check_noise(self, noise: Tensor, X: Tensor, k: int | None = None) -> None:
        """A one-line :class:`InvalidInput` unless ``noise`` is ``batch x q x k`` (batch broadcast
        against ``X``'s; ``k`` the selected outputs, default all ``m``) finite variances >= 0, as
        :meth:`posterior` reads a tensor of them."""
        m, q = (self.num_outputs if k is None else k), (X.shape[-2] if X.dim() > 1 else 1)
        shape = tuple(noise.shape)
        target = torch.Size((*X.shape[:-1], m))
        try:
            # one output: BoTorch also reads a q vector
            ok = torch.broadcast_shapes(shape + ((1,) if m == 1 and len(shape) == 1 else ()), target) == target
        except RuntimeError:
            ok = False
        if not ok:
            raise InvalidInput(f"observation_noise must be a batch x q x m = ... x {q} x {m} tensor of noise "
                               f"variances (output units) for X of shape {tuple(X.shape)}, got shape {shape}")
        if noise.is_complex() or not torch.isfinite(noise).all() or (noise < 0).any():
            bad = noise[~(torch.isfinite(noise) & (noise >= 0))].flatten()[:3].tolist() if not noise.is_complex() \
                else noise.dtype
            raise InvalidInput(f"observation_noise must hold finite variances >= 0 (output units), got {bad}")

    def condition_on_observations(self, X: Tensor, Y: Tensor, noise: Tensor | None = None, **kwargs):
        """A copy of this GP conditioned on new observations, hyperparameters kept.

        The exact posterior given the training data and ``(X, Y)``, through
        BoTorch's :meth:`~botorch.models.model.Model.condition_on_observations`
        (GPyTorch's fantasy update of the prediction caches); the copy's
        ``train_dataset`` holds all points, so its stress and tangent keep the
        closed-form path and a refit (``from_dataset``) sees every point. The
        input normalization and output standardization of the fit are kept.

        Batched inputs (``batch x n x d``, as BoTorch's ``fantasize`` passes
        them) go to BoTorch's conditioning; ``noise`` is in output units there
        too (inside ``fantasize`` it is the likelihood's own, already standardized).

        Args:
            X: ``n x d`` inputs in original units (for a constitutive surrogate
                also ``n x k x k`` deformation gradients ``F``).
            Y: ``n x m`` outputs in original units (``n x k x k`` stresses ``P``
                with ``F``).
            noise: ``n x m`` observation variances of the new points
                (original units; floored like ``Yvar``); required when the
                model was fitted with known noise (``Yvar``). For a model with
                inferred homoskedastic noise, None gives the new points that
                noise; a tensor (e.g. zeros for exact answers) turns the copy
                into a known-noise GP whose old points keep the inferred
                noise (:meth:`with_known_noise`).

        Returns:
            A new :class:`GPSurrogate`; this one is unchanged.
        """
        Xa, Ya = _real("X", X), _real("Y", Y)
        k = self.dim_F
        given_F = k is not None and Xa.dim() == 3 and Xa.shape[-2:] == (k, k)
        if fantasize_flag.on() or (not given_F and (Xa.dim() != 2 or Ya.dim() > 2)):
            # batched conditioning (BoTorch's fantasize, e.g. inside qNIPV): the
            # library's fantasy model, predicted by the generic path. BoTorch reads
            # ``noise`` in standardized units: fantasize passes the likelihood's own,
            # a caller's tensor is in output units like the n x d path's
            if noise is not None and not fantasize_flag.on():
                nz = torch.as_tensor(noise, dtype=DTYPE)
                if not torch.isfinite(nz).all() or (nz < 0).any():
                    raise InvalidInput(f"noise must be finite variances >= 0 (output units), got "
                                       f"{nz.flatten().tolist()[:6]}")
                noise = nz / self.outcome_transform.stdvs.to(nz).pow(2)
            # GPyTorch detaches the fantasy model's covariance cache from the new inputs
            # (``detach_test_caches``, on outside BoTorch's posterior calls), so the fantasy
            # posterior variance would miss its gradient through them and qNIPV's gradient
            # would be wrong (SingleTaskGP's too); values are the same either way
            keep = torch.is_grad_enabled() and torch.is_tensor(X) and X.requires_grad
            with gpytorch.settings.detach_test_caches(False) if keep else contextlib.nullcontext():
                return super().condition_on_observations(
                    X, Y, **({} if noise is None else {"noise": noise}), **kwargs)
        X = self._inputs(X)
        n = X.shape[0]
        m = self.num_outputs
        if Ya.numel() != n * m:
            raise InvalidInput(f"Y must be a finite n x {m} tensor with n = {n}, got shape {tuple(Ya.shape)}")
        Y = Ya.reshape(n, -1) if n else torch.zeros(0, m, dtype=DTYPE)
        if Y.shape != (n, m) or not torch.isfinite(Y).all():
            raise InvalidInput(f"Y must be a finite n x {m} tensor with n = {n}, got shape {tuple(Y.shape)}")
        ds = self.train_dataset
        if noise is not None:
            nz = _real("noise", noise)
            if nz.numel() != n * m or not torch.isfinite(nz).all() or (nz < 0).any():
                raise InvalidInput(
                    f"noise must be n x m = {n} x {m} finite variances >= 0 (output units), got "
                    f"{'shape ' + str(tuple(nz.shape)) if nz.numel() != n * m else nz.flatten().tolist()[:6]}"
                )
        if noise is None and ds.Yvar is not None:
            raise ValueError(
                "noise (n x m known variances) is required when the GP was fitted with known noise (Yvar)"
            )
        if noise is not None and ds.Yvar is None:
            return self.with_known_noise().condition_on_observations(X, Y, noise=noise, **kwargs)
        Yvar = None
        if noise is not None:
            Yvar = floor_yvar(torch.as_tensor(noise, dtype=DTYPE).reshape(n, m), None, _noise_rel(self._sb_config),
                              scale=self._output_scale())
        self.eval()
        if self.prediction_strategy is None:
            with torch.no_grad():  # GPyTorch's fantasy update needs the prediction caches
                self.posterior(X[:1] if n else ds.X[:1])
        if n == 0:
            return copy.deepcopy(self)
        kw = {}
        if Yvar is not None:
            std2 = self.outcome_transform.stdvs.reshape(1, m).pow(2)
            kw["noise"] = Yvar / std2  # BoTorch takes it outcome-transformed
        # GPyTorch's fantasy likelihood would round every fixed noise variance
        # below 1e-6 (standardized) up to it, old points included; the known
        # variances are floored already (``min_noise_rel``), so conditioning
        # keeps them as they are and never adds noise
        with torch.no_grad(), gpytorch.settings.min_fixed_noise(float_value=0.0, double_value=0.0):
            new = super().condition_on_observations(X, Y, **kw, **kwargs)
        new.train_dataset = Dataset(
            X=torch.cat([ds.X, X]),
            Y=torch.cat([ds.Y, Y]),
            Yvar=None if Yvar is None else torch.cat([ds.Yvar, Yvar]),
            input_names=ds.input_names,
            output_names=ds.output_names,
        )
        new._fast_cache = None
        return new

    def with_known_noise(self) -> GPSurrogate:
        """This GP as a known-noise GP: each training point's ``Yvar`` is the
        inferred noise variance (original units), every hyperparameter kept,
        so the posterior is the same. New points can then carry their own
        noise (:meth:`condition_on_observations`)."""
        ds = self.train_dataset
        if ds.Yvar is not None:
            return copy.deepcopy(self)
        m = self.num_outputs
        std2 = self.outcome_transform.stdvs.reshape(1, m).pow(2)
        Yvar = (self._noise_std().reshape(1, m) * std2).expand(ds.n, m).clone()
        new = type(self)._build(
            Dataset(X=ds.X, Y=ds.Y, Yvar=Yvar, input_names=ds.input_names, output_names=ds.output_names),
            copy.deepcopy(self._sb_config),
        )
        state = {k: v for k, v in self.state_dict().items() if not k.startswith("likelihood.")}
        new.load_state_dict(state, strict=False)
        new.eval()
        return new

    def _noise_std(self) -> Tensor:
        """``m`` observation-noise variances (standardized units) of a new point."""
        lik = self.likelihood
        if isinstance(lik, GaussianLikelihood):
            return lik.noise.detach().reshape(-1).expand(self.num_outputs)
        return lik.noise.detach().reshape(self.num_outputs, -1).median(-1).values

    def select_batch(
        self, X: Tensor, tolerance: float, min_points: int = 1, max_points: int | None = None,
        noise: float | None = None,
    ) -> Tensor:
        """Indices of candidates whose observation brings every candidate's variance below ``tolerance``.

        Greedy variance reduction: the candidate of largest predictive variance
        (the mean over the ``m`` outputs, original units, as
        :meth:`material_response` reports it) is picked, the posterior is
        conditioned on observing it (the posterior covariance does not depend on
        the observed value, so no evaluation is needed), and so on until all
        variances are below ``tolerance`` or ``max_points`` are picked; then
        more up to ``min_points`` in total (e.g. one per oracle worker; none
        when every variance is below ``tolerance`` from the start). The
        conditioning is a pivoted partial Cholesky factorization of the
        candidates' posterior covariance, ``O(n N m)`` memory and work per
        pick, never the ``n x n`` matrix.

        Args:
            X: ``n x d`` candidate inputs (for a constitutive surrogate also
                ``n x k x k`` deformation gradients ``F``).
            tolerance: the variance to reach (output units squared, >= 0).
            min_points: pick at least this many (as ``n`` allows).
            max_points: pick at most this many (default ``n``).
            noise: the variance (original units) the picked points will be
                observed with, e.g. 0 for exact answers (floored as in
                :meth:`condition_on_observations`); None: the model's noise.

        Returns:
            ``k`` distinct indices into ``X`` in the order picked (``k = 0``
            when every variance is already below ``tolerance``).
        """
        tolerance = float(tolerance)
        if math.isnan(tolerance) or tolerance < 0:
            raise ValueError(f"tolerance must be a variance >= 0, got {tolerance}")
        if min_points < 0 or (max_points is not None and max_points < 0):
            raise ValueError(f"min_points and max_points must be >= 0, got {min_points}, {max_points}")
        X = self._inputs(X)
        n, m = X.shape[0], self.num_outputs
        max_points = n if max_points is None else min(int(max_points), n)
        if n == 0 or max_points == 0:
            return torch.zeros(0, dtype=torch.long)
        self.eval()
        c = self._fast_terms() if not self._conditioned() else None
        if c is None:
            raise RuntimeError("select_batch needs a GPSurrogate with its training set in train_dataset")
        with torch.no_grad():
            Xt = self.input_transform(X) if getattr(self, "input_transform", None) is not None else X
            Xtr = self.input_transform(self.train_dataset.X) if getattr(self, "input_transform", None) is not None \
                else self.train_dataset.X
            Ks = self.covar_module(Xt, Xtr).to_dense().expand(m, n, -1)  # m x n x N
            V = torch.linalg.solve_triangular(c["L"], Ks.transpose(-1, -2), upper=False)  # m x N x n
            prior = self.covar_module.outputscale.detach().reshape(m, 1).expand(m, n)
            diag = (prior - V.pow(2).sum(-2)).clamp_min(0)  # m x n, standardized
            scale = c["y_std"].pow(2).reshape(m, 1)
            if noise is None:
                noise = self._noise_std().reshape(m, 1)
            else:
                # as conditioning stores it: floored (at least GPyTorch's 1e-6), standardized
                noise = (floor_yvar(torch.full((1, m), float(noise), dtype=DTYPE), None,
                                    _noise_rel(self._sb_config), scale=self._output_scale())
                         / scale.reshape(1, m)).reshape(m, 1)
            U: list[Tensor] = []  # pivoted partial Cholesky columns, m x n each
            picks: list[int] = []
            taken = torch.zeros(n, dtype=torch.bool)
            if not ((diag * scale).mean(0) >= tolerance).any():
                return torch.zeros(0, dtype=torch.long)
            while len(picks) < max_points:
                v = (diag * scale).mean(0)
                v[taken] = -1.0
                if not (v >= tolerance).any() and len(picks) >= min_points:
                    break
                j = int(torch.argmax(v))
                kj = self.covar_module(Xt, Xt[j : j + 1]).to_dense().expand(m, n, 1).squeeze(-1)  # m x n
                col = kj - (V * V[:, :, j : j + 1]).sum(-2)
                for u in U:
                    col = col - u * u[:, j : j + 1]
                u = col / (col[:, j : j + 1].clamp_min(0) + noise).sqrt()
                U.append(u)
                diag = (diag - u.pow(2)).clamp_min(0)
                picks.append(j)
                taken[j] = True
        return torch.tensor(picks, dtype=torch.long)


@register_surrogate
class ICMGPSurrogate(MultiTaskGP, _GPCommon):
    """Correlated multi-output GP (intrinsic coregionalization model).

    ``cov(f_i(x), f_j(x')) = B_ij k(x, x')`` with ``B = W W^T + diag(v)``
    (rank ``rank``) and ``k`` an ARD Matérn-5/2 kernel, fitted on the
    long-format data (one row per observed output), so outputs may be observed
    at different points: set ``Dataset.observed``. ``posterior(X)`` takes
    ``batch x q x d`` inputs (no task column) and returns all ``m`` outputs,
    ``batch x q x m``, with the cross-output covariance.

    Options: ``bounds``, ``n_restarts``, ``seed``, ``maxiter``, ``min_noise_rel``, ``dim_F`` as
    :class:`GPSurrogate`, and ``rank`` (of ``W``; default ``m``). Noise: known
    ``Yvar`` (fixed) or one inferred level per output.

    It is not conditioned on new observations without a refit:
    :meth:`condition_on_observations` and :meth:`fantasize` raise, so the
    acquisitions that fantasize (qKnowledgeGradient, qNegIntegratedPosteriorVariance)
    need :class:`GPSurrogate`; qLogNoisyExpectedImprovement with pending points works.
    """

    #: read by the campaign and FE² code before they condition or fantasize a model
    supports_conditioning = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # the task kernel's prior closures are lambdas: swapped for functions that pickle
        _picklable_priors(self)

    def condition_on_observations(self, X: Tensor, Y: Tensor, **kwargs):
        raise NotImplementedError(
            "ICMGPSurrogate cannot be conditioned on new observations without a refit; refit with "
            "ICMGPSurrogate.from_dataset, or use GPSurrogate for fantasy-based acquisitions (qKG, qNIPV)")

    def fantasize(self, X: Tensor, *args, **kwargs):
        raise NotImplementedError(
            "ICMGPSurrogate does not fantasize (it cannot be conditioned without a refit); use GPSurrogate "
            "for fantasy-based acquisitions (qKG, qNIPV)")

    _defaults = {
        "bounds": None,
        "n_restarts": 4,
        "seed": 0,
        "maxiter": 200,
        "rank": None,
        "min_noise_rel": 1e-6,
        "dim_F": None,
    }

    @classmethod
    def _build(cls, dataset: Dataset, cfg: dict[str, Any]) -> ICMGPSurrogate:
        X, Y, d, m = dataset.X, dataset.Y, dataset.d, dataset.m
        if m < 2:
            raise ValueError(f"ICMGPSurrogate needs m >= 2 outputs, got m = {m}; use GPSurrogate")
        obs = dataset.observed if dataset.observed is not None else torch.ones_like(Y, dtype=torch.bool)
        counts = obs.sum(0)
        if (counts < 1).any():
            raise ValueError(f"every output needs at least one observation, got counts {counts.tolist()}")
        rows, tasks = obs.nonzero(as_tuple=True)
        # standardize each output on its own observed values (BoTorch's
        # StratifiedStandardize cannot untransform an all-outputs posterior)
        mu = torch.stack([Y[obs[:, j], j].mean() for j in range(m)])
        sd = torch.stack(
            [Y[obs[:, j], j].std() if counts[j] > 1 else Y.new_tensor(0.0) for j in range(m)]
        )
        # scales in the outputs' own units (a constant output by its magnitude), so that
        # outputs in small units (m², 1/Pa) are standardized like any other
        sd = output_scales(mu, sd, counts)
        X_long = torch.cat([X[rows], tasks.to(DTYPE).unsqueeze(-1)], dim=-1)  # N x (d + 1)
        Y_long = ((Y[rows, tasks] - mu[tasks]) / sd[tasks]).unsqueeze(-1)  # N x 1
        Yvar_long = None
        if dataset.Yvar is not None:
            Yvar_std = dataset.Yvar / sd**2
            Yvar_long = Yvar_std.clamp_min(_noise_rel(cfg))[rows, tasks].unsqueeze(-1)
        bounds = _input_box(_bounds_tensor(cfg["bounds"], d), X)
        # the task kernel's parameters start from torch.randn: draw them from
        # ``seed`` so that a fit does not depend on the global random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg["seed"])
            model = cls(
                train_X=X_long,
                train_Y=Y_long,
                task_feature=d,
                train_Yvar=Yvar_long,
                covar_module=_matern(d, torch.Size()),
                rank=cfg["rank"],
                all_tasks=list(range(m)),
                outcome_transform=None,
                input_transform=Normalize(d=d + 1, indices=list(range(d)), bounds=bounds),
            )
        std = UnitStandardize(m)
        std.means = mu.view(1, m).clone()
        std.stdvs = sd.view(1, m).clone()
        std._stdvs_sq = sd.view(1, m).pow(2)
        std._is_trained = torch.tensor(True)
        std.eval()
        model.task_standardize = std
        model.train_dataset = dataset
        model._sb_config = copy.deepcopy(cfg)
        return model

    def posterior(self, X: Tensor, output_indices=None, observation_noise=False, posterior_transform=None, **kwargs):
        """Joint posterior of all ``m`` outputs at ``X`` (``batch x q x d``, no task column).

        Returns a :class:`~botorch.posteriors.GPyTorchPosterior` with mean
        ``batch x q x m`` on the original output scale. ``observation_noise``:
        False or True (BoTorch's ``MultiTaskGP`` takes no tensor of noise variances).
        """
        if not torch.is_tensor(X):
            raise TypeError(f"X must be a torch.Tensor (batch x q x {self.num_non_task_features}), "
                            f"got {type(X).__name__}")
        X = _model_dtype(X)
        _check_finite("X", X)  # a NaN row makes every point of the joint posterior NaN
        if torch.is_tensor(observation_noise):
            raise NotImplementedError(
                "ICMGPSurrogate.posterior takes observation_noise True or False, not a tensor of noise "
                "variances (BoTorch's MultiTaskGP does not support one)")
        if output_indices is not None or X.shape[-1] != self.num_non_task_features:
            raise ValueError(
                f"ICMGPSurrogate.posterior takes X of shape batch x q x {self.num_non_task_features} "
                f"(no task column) and returns all outputs; got shape {tuple(X.shape)}"
                + (f" and output_indices={output_indices}" if output_indices is not None else "")
            )
        post = super().posterior(X, observation_noise=observation_noise, **kwargs)
        post = self.task_standardize.untransform_posterior(post)
        if posterior_transform is not None:
            post = posterior_transform(post)
        return post

    def task_correlation(self) -> Tensor:
        """``m x m`` correlation matrix of the fitted coregionalization ``B``."""
        from gpytorch.kernels import IndexKernel

        task_kernel = next(
            mod for mod in self.covar_module.modules() if isinstance(mod, IndexKernel) or hasattr(mod, "covar_matrix")
        )
        with torch.no_grad():
            B = task_kernel.covar_matrix
            B = B.to_dense() if hasattr(B, "to_dense") else B
        s = B.diagonal().sqrt()
        return B / (s.unsqueeze(-1) * s.unsqueeze(-2))
