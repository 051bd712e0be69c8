r"""Nonlinear autoregressive multi-fidelity GP (NARGP, Perdikaris et al. 2017)."""

from __future__ import annotations

from typing import Any

import torch
from linear_operator.utils.cholesky import psd_safe_cholesky
from torch import Tensor

from surrogates.base import register_surrogate
from surrogates.dataset import DTYPE, Dataset
from surrogates.multifidelity.core import (
    KERNELS,
    LOG_LS_BOUNDS,
    LOG_NUGGET_BOUNDS,
    LOG_VAR_BOUNDS,
    Correlation,
    Kriging,
    fit_map,
    kriging_nll,
    log_lengthscale_prior,
    prior_lengthscale,
    random_starts,
)
from surrogates.multifidelity.model import (
    DeferredJoint,
    MultiFidelityModel,
    TooFewLevelPoints,
    check_flag,
    check_int,
)
from surrogates.multifidelity.recursive import LevelKriging

TRENDS = ("linear", "constant")


class _NonlinearLevel:
    """Level ``t >= 1`` of NARGP on ``z = [x, f]`` (``f``: the level below):
    ``k(z, z') = s_a r(x, x'; ls_a) r(f, f'; ls_f) + s_d r(x, x'; ls_d)`` plus noise
    ``v + g``. Parameters ``[log ls_a (k), log ls_f, log s_a, log ls_d (k), log s_d, (log g)]``."""

    def __init__(self, corr: Correlation, d: int, ard: bool, infer_nugget: bool):
        self.corr, self.d, self.k, self.infer_nugget = corr, d, d if ard else 1, infer_nugget
        self.size = 2 * self.k + 3 + int(infer_nugget)

    def unpack(self, th: Tensor):
        k = self.k
        g = th[2 * k + 3].exp() if self.infer_nugget else torch.zeros((), dtype=th.dtype)
        return th[:k].exp(), th[k].exp(), th[k + 1].exp(), th[k + 2 : 2 * k + 2].exp(), th[2 * k + 2].exp(), g

    def box(self) -> Tensor:
        k, n = self.k, int(self.infer_nugget)
        lo = [LOG_LS_BOUNDS[0]] * (k + 1) + [LOG_VAR_BOUNDS[0]] + [LOG_LS_BOUNDS[0]] * k + [LOG_VAR_BOUNDS[0]]
        hi = [LOG_LS_BOUNDS[1]] * (k + 1) + [LOG_VAR_BOUNDS[1]] + [LOG_LS_BOUNDS[1]] * k + [LOG_VAR_BOUNDS[1]]
        return torch.tensor([lo + [LOG_NUGGET_BOUNDS[0]] * n, hi + [LOG_NUGGET_BOUNDS[1]] * n], dtype=DTYPE)

    def start(self, s2: float) -> Tensor:
        ls = prior_lengthscale(self.d)
        th = [ls] * self.k + [1.0, max(s2, 1e-4)] + [ls] * self.k + [max(0.1 * s2, 1e-4)]
        return torch.tensor(th + [1e-3] * int(self.infer_nugget), dtype=DTYPE).log()

    def cov(self, th: Tensor, x1: Tensor, f1: Tensor, x2: Tensor, f2: Tensor, diag: bool = False) -> Tensor:
        """Covariance of ``(x1, f1)`` and ``(x2, f2)``: ``... x n x d``, ``... x n`` and
        ``... x q x d``, ``... x q``; the ``f`` may carry leading (sample) dimensions that
        the ``x`` lack, which broadcast."""
        ls_a, ls_f, s_a, ls_d, s_d, _ = self.unpack(th)
        c = self.corr
        return s_a * c(x1, x2, ls_a, diag) * c(f1.unsqueeze(-1), f2.unsqueeze(-1), ls_f.reshape(1), diag) + s_d * c(
            x1, x2, ls_d, diag
        )

    def log_prior(self, th: Tensor) -> Tensor:
        k = self.k
        return (
            log_lengthscale_prior(th[:k], self.d)
            + log_lengthscale_prior(th[k : k + 1], 1)
            + log_lengthscale_prior(th[k + 2 : 2 * k + 2], self.d)
        )

    def kriging(
        self, th: Tensor, x: Tensor, f: Tensor, F: Tensor, y: Tensor, v: Tensor, w: Tensor | None = None
    ) -> Kriging:
        return Kriging(self.noisy_cov(th, x, f, v), F, y, w)

    def noisy_cov(self, th: Tensor, x: Tensor, f: Tensor, v: Tensor) -> Tensor:
        """Covariance of the observations at ``x`` with lower-level means ``f``
        and known noise ``v``."""
        return self.cov(th, x, f, x, f) + torch.diag_embed(v + self.unpack(th)[-1])


@register_surrogate
class NARGP(MultiFidelityModel):
    r"""Nonlinear autoregressive multi-fidelity GP of Perdikaris et al. (2017).

    Level 0 is a kriging model; level ``t >= 1`` is a GP on ``[x, f_{t-1}(x)]``
    with the paper's kernel ``k_rho(x, x') k_f(f, f') + k_delta(x, x')``
    (GPyTorch correlations, one variance each) and a GLS trend: ``beta_0 +
    beta_1 f_{t-1}`` (``trend="linear"``, so the Kennedy--O'Hagan AR1 model is
    the special case ``k_rho = 0``) or a constant (``"constant"``); the ``f``
    column is dropped where the level below is constant at the level's points
    (:func:`~surrogates.multifidelity.core.independent_columns`). Training
    takes ``f_{t-1}`` at level ``t``'s inputs as the level below's posterior
    mean, as in the paper; the model is meant for nested designs (for
    non-nested ones the uncertainty of that mean is not propagated into the
    fit; :class:`AR1CoKriging` is the exact joint model).

    Predictions propagate ``num_samples`` joint samples of each level through
    the next (fixed antithetic base samples, so predictions are deterministic,
    differentiable and equivariant under a sign change of the outputs) and
    return the moments of the resulting mixture.

    Options: see :class:`MultiFidelityModel`; ``trend``, ``num_samples`` (64),
    ``reml`` (True).
    """

    def __init__(
        self, dataset: Dataset, trend: str = "linear", num_samples: int = 64, reml: bool = True, **options: Any
    ):
        if trend not in TRENDS:
            raise ValueError(f"trend must be one of {TRENDS}, got {trend!r}")
        n = check_int("num_samples", num_samples, 2)
        if n % 2:
            raise ValueError(f"num_samples must be an even number >= 2 (antithetic pairs), got {num_samples}")
        self.trend, self.num_samples, self.reml = trend, n, check_flag("reml", reml)
        super().__init__(dataset, **options)

    def _extra_config(self) -> dict[str, Any]:
        return {"trend": self.trend, "num_samples": self.num_samples, "reml": self.reml}

    def _build(self) -> None:
        corrs = [Correlation(k) for k in KERNELS]
        self._kinds = KERNELS if self.kernel == "auto" else (self.kernel,)
        self._lvl0s = [LevelKriging(c, self.d, self.ard, self.infer_nugget) for c in corrs]
        self._lvls = [_NonlinearLevel(c, self.d, self.ard, self.infer_nugget) for c in corrs]
        L = self.num_fidelities
        self.register_buffer("theta0", torch.zeros(self._lvl0s[0].size, dtype=DTYPE))
        self.register_buffer("theta", torch.zeros(L - 1, self._lvls[0].size, dtype=DTYPE))
        # index into KERNELS of each level's correlation family
        self.register_buffer("kernel_index", torch.full((L,), KERNELS.index(self._kinds[0]), dtype=torch.long))
        # per level t >= 1: which of the trend columns [1, f] are used (f is dropped
        # where the level below is constant at the level's points: no identifiable coefficient)
        self.register_buffer("basis_keep", torch.ones(L, 2, dtype=torch.bool))

    # saved before the trend-basis check: every column
    _FILLED_WHEN_MISSING = ("basis_keep",)

    #: a level above the first needs more points than its trend [1, f]
    min_level_points = 3

    @property
    def _lvl0(self) -> LevelKriging:
        return self._lvl0s[int(self.kernel_index[0])]

    def _lvl(self, t: int) -> _NonlinearLevel:
        return self._lvls[int(self.kernel_index[t])]

    def _basis(self, f: Tensor, t: int) -> Tensor:
        """Trend basis of level ``t``: ``[1, f]`` (``trend="linear"``) or ``[1]``, less the
        columns dropped at the fit (``basis_keep``)."""
        one = torch.ones_like(f).unsqueeze(-1)
        F = torch.cat([one, f.unsqueeze(-1)], -1) if self.trend == "linear" else one
        return self._kept_basis(t, F)

    def _fit(self) -> None:
        self._lv = self._levels()
        x, y, v = self._lv[0]
        F0 = torch.ones_like(y).unsqueeze(-1)
        fits = [(self._lvl0s[KERNELS.index(k)].fit(x, F0, y, v, self.reml, self.restarts, self.seed), k)
                for k in self._kinds]
        (th0, _), kind = min(fits, key=lambda a: a[0][1])
        self.kernel_index[0] = KERNELS.index(kind)
        self.theta0.copy_(th0.detach())
        self._krig = [self._lvl0.kriging(th0, x, F0, y, v)]
        self._f = [None]
        for t in range(1, self.num_fidelities):
            x, y, v = self._lv[t]
            f = self._lower_mean(x, t)
            self.basis_keep[t] = True
            F = self._basis(f, t)
            if F.shape[-1] >= len(y):
                raise TooFewLevelPoints(f"level {t} has {len(y)} points; NARGP needs more than {F.shape[-1]}")
            F = self._independent_basis(t, F)

            best = None
            for kind in self._kinds:
                lvl = self._lvls[KERNELS.index(kind)]

                def objective(th, lvl=lvl, x=x, f=f, F=F, y=y, v=v):
                    return kriging_nll(lvl.noisy_cov(th, x, f, v), F, y, reml=self.reml) - lvl.log_prior(th)

                box = lvl.box()
                base = lvl.start(float(y.var()) if y.numel() > 1 else 1.0)
                th, val = fit_map(objective, random_starts(base, box, 11, self.seed + t), box, restarts=self.restarts)
                if best is None or val < best[1]:
                    best = (th, val, KERNELS.index(kind))
            th, _, ki = best
            self.kernel_index[t] = ki
            self.theta[t - 1].copy_(th.detach())
            self._krig.append(self._lvl(t).kriging(th, x, f, F, y, v))
            self._f.append(f)

    def _condition(self) -> None:
        self._lv = self._levels()
        masks = self._level_masks()
        x, y, v = self._lv[0]
        self._krig = [self._lvl0.kriging(self.theta0, x, torch.ones_like(x[..., :1]), y, v, masks[0])]
        self._f = [None]
        for t in range(1, self.num_fidelities):
            x, y, v = self._lv[t]
            f = self._lower_mean(x, t)
            self._krig.append(self._lvl(t).kriging(self.theta[t - 1], x, f, self._basis(f, t), y, v, masks[t]))
            self._f.append(f)

    def _lower_mean(self, x: Tensor, t: int) -> Tensor:
        """Mixture mean of level ``t - 1`` at each of the ``B x n x d`` inputs
        of level ``t`` (``batch_shape x n``)."""
        return self._pointwise(lambda xb: (self._mixture(xb, t - 1)[0],), x)[0]

    def _nugget(self) -> Tensor:
        g = [self._lvl0.unpack(self.theta0)[2]] + [self._lvl(t + 1).unpack(th)[-1] for t, th in enumerate(self.theta)]
        return torch.stack(g)

    def _base_samples(self, T: int, q: int) -> Tensor:
        """``T x S x q`` antithetic standard normals (fixed by ``seed``), the
        same at every batch index: a point evaluated on its own (``q = 1``)
        gets the same draws in any batch and in any fantasy model."""
        gen = torch.Generator().manual_seed(self.seed)
        half = torch.randn(T, self.num_samples // 2, q, generator=gen, dtype=DTYPE)
        return torch.cat([half, -half], 1)

    def _paths(self, x: Tensor, T: int):
        """Per level ``0..T``: conditional means ``S x ... x q`` (level 0: ``... x q``),
        conditional covariances and the sampled values at ``x`` (``... x q x d``)."""
        m, C = self._lvl0.predict(self._krig[0], self.theta0, self._lv[0][0], x, torch.ones_like(x[..., :1]))
        m = m.expand(*torch.broadcast_shapes(m.shape, C.shape[:-1]))
        eps = self._base_samples(max(T, 1), x.shape[-2])
        means, covs, draws = [m], [C], []
        for t in range(1, T + 1):
            prev_m, prev_C = means[-1], covs[-1]
            scale = prev_C.diagonal(dim1=-2, dim2=-1).mean(-1)[..., None, None].clamp_min(1e-12)
            chol = psd_safe_cholesky(prev_C + 1e-10 * scale * torch.eye(prev_C.shape[-1], dtype=DTYPE))
            # one path per sample: from level 2 on, prev_m already has the sample dimension
            lead = prev_m.dim() - (1 if t == 1 else 2)
            e = eps[t - 1].reshape(self.num_samples, *([1] * lead), -1)
            f = prev_m + (chol @ e.unsqueeze(-1)).squeeze(-1)  # S x ... x q
            draws.append(f)
            th = self.theta[t - 1]
            X, fX = self._lv[t][0], self._f[t]
            # the input correlations do not depend on the sampled path: computed once, without
            # the sample dimension, and broadcast against the per-path correlations of f
            bx = torch.broadcast_shapes(f.shape[1:-1], X.shape[:-2], fX.shape[:-1], x.shape[:-2])
            f = f.reshape(f.shape[0], *[1] * (len(bx) + 2 - f.dim()), *f.shape[1:]).expand(f.shape[0], *bx, f.shape[-1])
            xs, Xb = x.expand(*bx, *x.shape[-2:]), X.expand(*bx, *X.shape[-2:])
            fb = fX.expand(f.shape[0], *bx, fX.shape[-1])
            Kx = self._lvl(t).cov(th, Xb, fb, xs, f)
            Kxx = self._lvl(t).cov(th, xs, f, xs, f)
            mt, Ct = self._krig[t].predict(Kx, Kxx, self._basis(f, t))
            means.append(mt)
            covs.append(Ct)
        return means, covs, draws

    def _mixture(self, x: Tensor, T: int, marginal_mean: bool = False):
        means, covs, _ = self._paths(x, T)
        if T == 0:
            return means[0].squeeze(-1) if marginal_mean else (means[0], covs[0])
        m = means[T].mean(0)
        if marginal_mean:
            return m.squeeze(-1)
        dm = means[T] - m
        cov = covs[T].mean(0) + (dm.unsqueeze(-1) * dm.unsqueeze(-2)).mean(0)
        return m, cov

    def _latent(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor | DeferredJoint]:
        """Marginal means and variances from each point propagated on its own
        (so they do not depend on the batch a point is in); correlations
        between the ``q`` points from their joint propagation, deferred until
        the joint matrix is used."""
        def one(xl: Tensor) -> tuple[Tensor, Tensor]:
            m, c = self._joint(xl[..., :-1], xl[..., -1].round().long())
            return m, c.squeeze(-1)

        # each level present on its own, so that a point's moments do not depend on
        # the highest level of the others (which sets how far the paths are propagated)
        mean = var = None
        for lv in level.unique().tolist():
            xl = torch.cat([x, torch.full_like(x[..., :1], float(lv))], -1)
            m_l, v_l = self._pointwise(one, xl)
            at = level == lv
            mean = m_l if mean is None else torch.where(at, m_l, mean)
            var = v_l if var is None else torch.where(at, v_l, var)
        if x.shape[-2] == 1:
            return mean, var.unsqueeze(-1)

        def full() -> Tensor:
            _, cov = self._joint(x, level)
            scale = (var / cov.diagonal(dim1=-2, dim2=-1).clamp_min(1e-300)).sqrt()
            return scale.unsqueeze(-1) * cov * scale.unsqueeze(-2)

        # the joint propagation of q points costs S q x q covariances per level: it runs
        # only when the matrix is used (sampling), not for variances (qNIPV's q = hundreds)
        return mean, DeferredJoint(var, full)

    def _joint(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        T = int(level.max())
        if bool((level == T).all()):
            return self._mixture(x, T)
        means, covs, draws = self._paths(x, T)
        # law of total covariance over the S sampled paths: given path k, a point
        # below level T is that path's sampled value of its level (draws[s], fixed)
        # and a point at level T is Gaussian with the conditional moments at level T;
        # so every block comes from one set of samples and the result is positive
        # semi-definite (a mean of covariances plus a sample covariance)
        top = (level == T).to(DTYPE)
        vals = means[T] * top
        for s in range(T):
            vals = vals + draws[s] * (level == s).to(DTYPE)
        mean = vals.mean(0)
        dv = vals - mean
        cov = covs[T].mean(0) * (top.unsqueeze(-1) * top.unsqueeze(-2))
        return mean, cov + (dv.unsqueeze(-1) * dv.unsqueeze(-2)).mean(0)

