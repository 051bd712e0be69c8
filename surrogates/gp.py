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
``P`` = posterior mean, the tangent = the Jacobian of the mean by automatic
differentiation, and the variance = the mean predictive variance of the
components. For :class:`GPSurrogate` these are evaluated in closed form for
the Matérn-5/2 kernel from a per-fit cache (``alpha = A^-1 (y - c)`` and
``A^-1``), ``O(N (d + m))`` per point for stress and tangent plus
``O(N^2 m)`` for the exact variance (``with_variance=False`` skips it). With
``shared_lengthscale=True`` (one lengthscale vector for all outputs) the
kernel terms are computed once per training point for all ``m`` outputs,
about 3x faster for 9 stress components. The ICM model differentiates
through its BoTorch posterior.
"""

from __future__ import annotations

import copy
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gpytorch
import numpy as np
import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import MultiTaskGP, SingleTaskGP
from botorch.models.transforms.input import Normalize
from botorch.models.transforms.outcome import Standardize
from botorch.optim.closures import get_loss_closure_with_grads
from gpytorch.constraints import GreaterThan
from gpytorch.kernels import MaternKernel, ScaleKernel
from gpytorch.likelihoods import GaussianLikelihood
from gpytorch.likelihoods.hadamard_gaussian_likelihood import HadamardGaussianLikelihood
from gpytorch.mlls import ExactMarginalLogLikelihood
from gpytorch.priors import GammaPrior, LogNormalPrior
from threadpoolctl import threadpool_limits
from torch import Tensor

from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse
from surrogates.base import SurrogateMixin, register_surrogate
from surrogates.dataset import DTYPE, Dataset, floor_yvar
from surrogates.native import gp_matern

__all__ = ["GPSurrogate", "ICMGPSurrogate", "fit_with_restarts"]

#: lengthscales below this (in unit-cube input units) are not allowed
_MIN_LENGTHSCALE = 2.5e-2


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
    # threaded OpenBLAS only adds synchronisation (10x slower fits measured on
    # a loaded 2-core machine), so the fit runs with single-threaded BLAS.
    with threadpool_limits(limits=1, user_api="blas"):
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
    if b.shape != (2, d) or not (b[1] > b[0]).all():
        raise ValueError(f"bounds must be a 2 x {d} tensor with lower < upper, got {b.tolist()}")
    return b


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
        b = _bounds_tensor(cfg["bounds"], dataset.d)
        cfg["bounds"] = None if b is None else b.tolist()
        if cfg.get("dim_F") is None:
            cfg["dim_F"] = _infer_dim_F(dataset.d, dataset.m)
        return cfg

    @classmethod
    def from_dataset(cls, dataset: Dataset, **options: Any):
        """Build and fit on ``dataset`` (options: see the class's ``_defaults``)."""
        if not isinstance(dataset, Dataset):
            raise TypeError(f"expected a surrogates.Dataset, got {type(dataset).__name__}")
        _check_single_fidelity(dataset, cls.__name__)
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
        self, F: Tensor, chunk_size: int = 2048, with_variance: bool = True
    ) -> MaterialResponse:
        """Stress, tangent and variance at deformation gradients ``F``.

        Args:
            F: ``n x k x k`` (or ``k x k``) deformation gradients.
            chunk_size: points per evaluation (bounds the memory).
            with_variance: also compute the variances (for the exact GP this
                is the ``O(N^2)``-per-point part; skip it when not needed and
                ``variance`` is None).

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
        F = torch.as_tensor(F, dtype=DTYPE)
        if F.dim() == 2:
            F = F.unsqueeze(0)
        if F.dim() != 3 or F.shape[-2:] != (k, k):
            raise InvalidInput(f"F must be n x {k} x {k}, got shape {tuple(F.shape)}")
        if not torch.isfinite(F).all():
            raise InvalidInput("F contains nan or inf entries")
        n = F.shape[0]
        H = (F - torch.eye(k, dtype=DTYPE)).reshape(n, k * k)
        self.eval()
        if not with_variance:
            fast = self._native_mean_jac(H)
            if fast is not None:
                # one fused pass over all points, no chunking needed
                return MaterialResponse(P=fast[0].reshape(n, k, k),
                                        tangent=fast[1].reshape(n, k, k, k, k), variance=None)
        Ps, Js, Vs = [], [], []
        for start in range(0, n, chunk_size):
            mean, jac, var = self._mean_jac_var(H[start : start + chunk_size], with_variance)
            Ps.append(mean)
            Js.append(jac)
            if var is not None:
                Vs.append(var.mean(-1))
        P = torch.cat(Ps).reshape(n, k, k)
        tangent = torch.cat(Js).reshape(n, k, k, k, k)
        return MaterialResponse(P=P, tangent=tangent, variance=torch.cat(Vs) if Vs else None)

    def _native_mean_jac(self, X: Tensor) -> tuple[Tensor, Tensor] | None:
        """Posterior mean ``n x m`` and Jacobian ``n x m x d`` at ``X`` (``n x d``) by a
        fused native kernel, or None where the model has none (the caller then
        uses :meth:`_mean_jac_var`)."""
        return None

    def _mean_jac_var(self, X: Tensor, with_variance: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        """Posterior mean (``c x m``), its Jacobian (``c x m x d``) and the
        marginal variances (``c x m``) at ``X`` (``c x d``), by autograd
        through :meth:`posterior`. The mean comes from one joint call without
        the ``c x c`` covariance (``skip_posterior_variances``); the variances
        from a second call with each point as its own batch."""
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
            with torch.no_grad():
                var = self.posterior(X.unsqueeze(-2)).variance.squeeze(-2)
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
            the output variance (default 1e-8) to keep the Cholesky stable
            for noise-free data.
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
        "min_noise_rel": 1e-8,
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
            Yvar = floor_yvar(dataset.Yvar, Y, cfg["min_noise_rel"])
        else:
            likelihood = GaussianLikelihood(
                batch_shape=batch_shape,
                noise_prior=LogNormalPrior(loc=-4.0, scale=1.0),
                noise_constraint=GreaterThan(cfg["min_noise"], transform=None, initial_value=1e-2),
            )
        bounds = _bounds_tensor(cfg["bounds"], d)
        model = cls(
            train_X=X,
            train_Y=Y,
            train_Yvar=Yvar,
            likelihood=likelihood,
            covar_module=covar,
            outcome_transform=Standardize(m=m),
            input_transform=Normalize(d=d, bounds=bounds),
        )
        model.train_dataset = dataset
        model._sb_config = copy.deepcopy(cfg)
        return model

    # ----------------------------------------------------------- fast path
    _fast_cache: dict[str, Tensor] | None = None

    def train(self, mode: bool = True):
        # hyperparameters may change while training: drop the prediction cache
        if mode:
            self._fast_cache = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._fast_cache = None
        return super().load_state_dict(*args, **kwargs)

    def _fast_terms(self) -> dict[str, Tensor]:
        """Per-output quantities of the exact predictor, computed once per fit.

        With ``A = K + Sigma_noise`` (standardized units), ``L`` its Cholesky
        factor, ``s`` the output scale and ``w = sqrt(5) / l`` the scaled
        inverse lengthscales: the centred, scaled training inputs
        ``Zt = w (Xt - mu)`` (``m x N x d``) and their squared norms, the
        mean weights ``s alpha = s A^-1 (y - c)`` and ``L`` (for variances).
        Everything that depends only on the training data is here, so a
        prediction costs GEMMs against these plus ``O(N)`` elementwise work
        per point and output.
        """
        # a conditioned/fantasy copy shares the attribute but not the data
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
            prior = self.forward(Xt)
            A = self.likelihood(prior, Xt).covariance_matrix  # (m x) N x N
            y = self.train_targets  # (m x) N, standardized
            L = torch.linalg.cholesky(A.reshape(m, *A.shape[-2:]))  # m x N x N
            r = (y - prior.mean).reshape(m, -1, 1)
            alpha = torch.cholesky_solve(r, L).squeeze(-1)  # m x N
            scale = self.covar_module.outputscale.reshape(m, 1, 1)
            alpha_s = scale.reshape(m, 1) * alpha  # m x N
            ls = self.covar_module.base_kernel.lengthscale  # (m x) 1 x d, or 1 x d shared
            w = (math.sqrt(5.0) / ls).reshape(-1, 1, ls.shape[-1]).expand(m, 1, -1)  # m x 1 x d
            # centring on the training mean keeps |z|^2 + |z'|^2 - 2 z.z' accurate
            mu = Xt.mean(0)
            Zt = (Xt - mu) * w  # m x N x d
            d = Xt.shape[-1]
            x_off = tf_in._offset.reshape(-1) if tf_in is not None else Xt.new_zeros(d)
            x_coef = tf_in._coefficient.reshape(-1) if tf_in is not None else Xt.new_ones(d)
            y_mean = tf_out.means.reshape(m) if tf_out is not None else Xt.new_zeros(m)
            y_std = tf_out.stdvs.reshape(m) if tf_out is not None else Xt.new_ones(m)
            cache = {
                "key": key,
                "L": L,
                "scale": scale,
                "w": w,
                # [-2 z', 1, |z'|^2]^T, so that rho^2 is one GEMM with [z, |z|^2, 1]
                "ZtaugT": torch.cat(
                    [-2.0 * Zt, torch.ones_like(Zt[..., :1]), Zt.pow(2).sum(-1, keepdim=True)], -1
                ).transpose(-1, -2).contiguous(),  # m x (d + 2) x N
                # one GEMM of (1 + rho) e^-rho against [s alpha, s alpha Zt]
                # gives the kernel sum and the tangent's two terms
                "BT": torch.cat([alpha_s.unsqueeze(-1), alpha_s.unsqueeze(-1) * Zt], -1)
                .transpose(-1, -2).contiguous(),  # m x (1 + d) x N
                "alpha3": (alpha_s / 3.0).unsqueeze(-2),  # m x 1 x N
                "const": self.mean_module.constant.reshape(m, 1),
                "y_mean": y_mean,
                "y_std": y_std,
                # x (original units) -> z: z = (x - off) / coef * w - mu * w
                "x_mul": (w / x_coef),  # m x 1 x d
                "x_shift": ((x_off / x_coef + mu) * w),  # m x 1 x d
                # dP/dx = y_std * dm/dz * w / coef, with dm/dz = (T - S z) / 3
                "jac_mul": (y_std.reshape(m, 1, 1) / 3.0) * (w / x_coef),  # m x 1 x d
            }
            if gp_matern.available() and d <= 16:
                cache["native"] = gp_matern.prepare(
                    Zt, alpha_s, cache["x_mul"], cache["x_shift"], cache["jac_mul"],
                    cache["const"], y_mean, y_std, shared=bool(self._sb_config.get("shared_lengthscale")))
        self._fast_cache = cache
        return cache

    def _conditioned(self) -> bool:
        # conditioned on extra (fantasy) data: the closed forms are written
        # for the fitted training set
        n_train = self.train_dataset.n if self.train_dataset is not None else -1
        return self.train_targets.shape[-1] != n_train or self.train_targets.dim() > (
            2 if self.num_outputs > 1 else 1)

    def _native_mean_jac(self, X: Tensor) -> tuple[Tensor, Tensor] | None:
        """The closed-form mean and Jacobian of :meth:`_mean_jac_var` fused in one
        C loop (:mod:`surrogates.native.gp_matern`): per point and output one
        pass over the training points, nothing stored, vectorized over training
        points. ``torch.get_num_threads()`` threads share the points. None when
        the kernel is unavailable (no C compiler) or the model is conditioned
        on fantasy data."""
        if self._conditioned():
            return None
        c = self._fast_terms()
        if "native" not in c:
            return None
        return gp_matern.mean_jacobian(c["native"], X, workers=torch.get_num_threads())

    def _mean_jac_var(self, X: Tensor, with_variance: bool = True) -> tuple[Tensor, Tensor, Tensor | None]:
        """Exact posterior mean, its Jacobian and marginal variances at ``X``
        (``c x d``) in closed form for the ARD Matérn-5/2 kernel.

        In scaled coordinates ``z = sqrt(5) x / l`` with ``rho = |z - z'|`` and
        output scale ``s``: ``k = s (1 + rho + rho^2 / 3) e^-rho`` and
        ``dk/dz = -s/3 (1 + rho) e^-rho (z - z')`` (no singularity at
        ``rho = 0``). With ``p = (1 + rho) e^-rho`` (``c x N`` per output) the
        mean is ``c + p (s alpha) + (rho^2 e^-rho) (s alpha) / 3`` and the
        Jacobian ``(T - S z) / 3`` with ``[S, T] = p [s alpha, s alpha Zt]``:
        one GEMM, no ``c x N x d`` difference tensor. The input and output
        transforms enter the Jacobian as diagonal factors. Cost
        ``O(c N d m)`` for the mean and tangent plus ``O(c N^2 m)`` for the
        variances (a triangular solve with the Cholesky factor). The points
        are processed in blocks of ``_FAST_BLOCK`` so the ``m x block x N``
        work arrays stay in cache and are reused; with
        ``torch.get_num_threads() > 1`` the blocks are shared among that many
        Python threads, each running single-threaded ops (torch and numpy
        release the GIL).
        """
        if self._conditioned():
            # the closed form below is written for the fitted training set
            return super()._mean_jac_var(X, with_variance)
        c = self._fast_terms()
        m, N = c["BT"].shape[0], c["BT"].shape[-1]
        n, d = X.shape
        mean = torch.empty(m, n, dtype=DTYPE)
        jac = torch.empty(m, n, d, dtype=DTYPE)
        var = torch.empty(m, n, dtype=DTYPE) if with_variance else None
        b = min(n, self._FAST_BLOCK)
        X = X.to(DTYPE)

        def run(starts) -> None:
            work = [torch.empty(m, b, N, dtype=DTYPE) for _ in range(3)]
            with torch.no_grad():
                for i in starts:
                    sl = slice(i, min(i + b, n))
                    self._fast_block(c, X[sl], mean[:, sl], jac[:, sl], None if var is None else var[:, sl],
                                     [w[:, : sl.stop - sl.start] for w in work])

        starts = list(range(0, n, b))
        workers = min(torch.get_num_threads(), len(starts))
        if workers > 1:
            # block-level parallelism with single-threaded ops: per-operation
            # intra-op threading synchronizes cores at every elementwise pass
            # and was measured ~10x slower on a loaded 2-core machine
            prev = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                with ThreadPoolExecutor(workers) as pool:
                    list(pool.map(run, [starts[k::workers] for k in range(workers)]))
            finally:
                torch.set_num_threads(prev)
        else:
            run(starts)
        mean = (c["y_mean"].unsqueeze(-1) + c["y_std"].unsqueeze(-1) * mean).T  # n x m
        if var is not None:
            var = (c["y_std"].pow(2).unsqueeze(-1) * var.clamp_min_(0)).T  # n x m
        return mean, jac.transpose(0, 1), var

    #: points per block of the closed-form predictor: the three m x block x N
    #: work arrays stay in cache (64 measured 1.3-1.5x faster than 256)
    _FAST_BLOCK = 64

    @staticmethod
    def _fast_block(c, X, mean_out, jac_out, var_out, work) -> None:
        """One block of :meth:`_mean_jac_var`, written into the ``*_out`` views
        (standardized mean ``m x b``, original-unit Jacobian ``m x b x d``,
        standardized variance ``m x b``). ``work``: three ``m x b x N`` buffers."""
        R, P, E = work
        Z = torch.addcmul(c["x_shift"].neg(), X.unsqueeze(0), c["x_mul"])  # m x b x d
        # |z - z'|^2 = [z, |z|^2, 1] . [-2 z', 1, |z'|^2]: one GEMM
        Zaug = torch.cat([Z, Z.pow(2).sum(-1, keepdim=True), torch.ones_like(Z[..., :1])], -1)
        torch.bmm(Zaug, c["ZtaugT"], out=R)  # rho^2, m x b x N
        # the transcendental passes dominate: numpy's SIMD sqrt/exp are about
        # 2x faster than torch's on the measured CPU; same memory, no copies
        Rn, Pn, En = R.numpy(), P.numpy(), E.numpy()
        R.clamp_min_(0.0)
        np.sqrt(Rn, out=Pn)  # rho
        np.negative(Pn, out=En)
        np.exp(En, out=En)  # e^-rho
        torch.addcmul(E, P, E, out=P)  # p = (1 + rho) e^-rho
        R.mul_(E)  # q = rho^2 e^-rho
        # [S; T] = [s alpha, s alpha Zt]^T p^T: this orientation of the skinny
        # GEMM measured ~2x faster than p [s alpha, s alpha Zt]
        ST = torch.bmm(c["BT"], P.transpose(-1, -2)).transpose(-1, -2)  # m x b x (1 + d)
        S = ST[..., :1]
        # a multiply-and-sum beats a one-column batched GEMM here
        torch.add(S.squeeze(-1), (R * c["alpha3"]).sum(-1), out=mean_out).add_(c["const"])
        torch.addcmul(ST[..., 1:], S, Z, value=-1.0, out=jac_out).mul_(c["jac_mul"])
        if var_out is not None:
            # K = s (p + q / 3); v = L^-1 K^T; var = s - |v|^2
            K = R.div_(3.0).add_(P).mul_(c["scale"])  # m x b x N
            V = torch.linalg.solve_triangular(c["L"], K.transpose(-1, -2), upper=False)  # m x N x b
            torch.sub(c["scale"].reshape(-1, 1), V.pow(2).sum(-2), out=var_out)


@register_surrogate
class ICMGPSurrogate(MultiTaskGP, _GPCommon):
    """Correlated multi-output GP (intrinsic coregionalization model).

    ``cov(f_i(x), f_j(x')) = B_ij k(x, x')`` with ``B = W W^T + diag(v)``
    (rank ``rank``) and ``k`` an ARD Matérn-5/2 kernel, fitted on the
    long-format data (one row per observed output), so outputs may be observed
    at different points: set ``Dataset.observed``. ``posterior(X)`` takes
    ``batch x q x d`` inputs (no task column) and returns all ``m`` outputs,
    ``batch x q x m``, with the cross-output covariance.

    Options: ``bounds``, ``n_restarts``, ``seed``, ``maxiter``, ``dim_F`` as
    :class:`GPSurrogate`, and ``rank`` (of ``W``; default ``m``). Noise: known
    ``Yvar`` (fixed) or one inferred level per output.
    """

    _defaults = {
        "bounds": None,
        "n_restarts": 4,
        "seed": 0,
        "maxiter": 200,
        "rank": None,
        "min_noise_rel": 1e-8,
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
            [Y[obs[:, j], j].std() if counts[j] > 1 else Y.new_tensor(1.0) for j in range(m)]
        )
        sd = torch.where(sd > 1e-8 * mu.abs().clamp_min(1.0), sd, torch.ones_like(sd))
        X_long = torch.cat([X[rows], tasks.to(DTYPE).unsqueeze(-1)], dim=-1)  # N x (d + 1)
        Y_long = ((Y[rows, tasks] - mu[tasks]) / sd[tasks]).unsqueeze(-1)  # N x 1
        Yvar_long = None
        if dataset.Yvar is not None:
            Yvar_std = dataset.Yvar / sd**2
            Yvar_long = Yvar_std.clamp_min(cfg["min_noise_rel"])[rows, tasks].unsqueeze(-1)
        bounds = _bounds_tensor(cfg["bounds"], d)
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
        std = Standardize(m=m)
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
        ``batch x q x m`` on the original output scale.
        """
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
