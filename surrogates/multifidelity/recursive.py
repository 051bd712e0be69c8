r"""Recursive co-kriging (Le Gratiet & Garnier 2014), one kriging model per level."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from surrogates.base import register_surrogate
from surrogates.dataset import DTYPE, Dataset
from surrogates.multifidelity.core import (
    KERNELS,
    LOG_LS_BOUNDS,
    LOG_NUGGET_BOUNDS,
    LOG_VAR_BOUNDS,
    NOISE_FLOOR,
    Correlation,
    Kriging,
    distinct_rows,
    equal_rows,
    expand_train,
    fit_map,
    kriging_nll,
    log_lengthscale_prior,
    prior_lengthscale,
    random_starts,
)
from surrogates.multifidelity.model import (
    MultiFidelityModel,
    TooFewLevelPoints,
    assemble_levels,
    check_flag,
    round_significand,
)

RHO_FORMS = ("constant", "linear")
TREND_FORMS = ("constant", "linear", "auto")
#: output warps of level 0 (:class:`RecursiveCoKriging`'s ``warp``)
WARPS = ("none", "log")
#: residual degrees of freedom a level must keep for ``trend="auto"`` to give it a linear trend
AUTO_TREND_DOF = 3


class LevelKriging:
    """One level's stationary kriging model ``y = F beta + Z(x) + eps`` with
    ``Cov Z = s2 r(x, x'; ls)`` and ``Var eps = v + g`` (known ``v``, inferred
    nugget ``g``).

    The parameter vector is ``[log ls (k), log s2, (log g)]``; this is the
    layout :class:`RecursiveCoKriging` and :class:`NARGP`'s level 0 fit.
    """

    def __init__(self, corr: Correlation, d: int, ard: bool, infer_nugget: bool):
        self.corr, self.d, self.k, self.infer_nugget = corr, d, d if ard else 1, infer_nugget
        self.size = self.k + 1 + int(infer_nugget)

    def unpack(self, th: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        g = th[self.k + 1].exp() if self.infer_nugget else torch.zeros((), dtype=th.dtype)
        return th[: self.k].exp(), th[self.k].exp(), g

    def box(self) -> Tensor:
        lo = [LOG_LS_BOUNDS[0]] * self.k + [LOG_VAR_BOUNDS[0]] + [LOG_NUGGET_BOUNDS[0]] * int(self.infer_nugget)
        hi = [LOG_LS_BOUNDS[1]] * self.k + [LOG_VAR_BOUNDS[1]] + [LOG_NUGGET_BOUNDS[1]] * int(self.infer_nugget)
        return torch.tensor([lo, hi], dtype=DTYPE)

    def start(self, s2: float) -> Tensor:
        th = [prior_lengthscale(self.d)] * self.k + [max(s2, 1e-4)] + [1e-3] * int(self.infer_nugget)
        return torch.tensor(th, dtype=DTYPE).log()

    def cov(self, th: Tensor, x: Tensor, v: Tensor, shared: Tensor | None = None) -> Tensor:
        """Covariance of the observations at ``x`` (``n x d``) with known noise ``v``
        (``n``) and, where given, ``shared`` (``n x n``): covariance between rows that
        is not the signal's (the variance carried from the level below, shared by
        replicates of one input)."""
        ls, s2, g = self.unpack(th)
        K = s2 * self.corr(x, x, ls) + torch.diag_embed(v + g)
        return K if shared is None else K + shared

    def kriging(self, th: Tensor, x: Tensor, F: Tensor, y: Tensor, v: Tensor, w: Tensor | None = None,
                shared: Tensor | None = None) -> Kriging:
        return Kriging(self.cov(th, x, v, shared), F, y, w, distinct=distinct_rows(x, w))

    def objective(self, x: Tensor, F: Tensor, y: Tensor, v: Tensor, reml: bool, shared: Tensor | None = None):
        def f(th: Tensor) -> Tensor:
            return (kriging_nll(self.cov(th, x, v, shared), F, y, reml=reml)
                    - log_lengthscale_prior(th[: self.k], self.d))

        return f

    def fit(self, x, F, y, v, reml: bool, restarts: int, seed: int, warm: Tensor | None = None,
            shared: Tensor | None = None):
        """MAP parameters (``size``) and the objective there."""
        box = self.box()
        base = self.start(float(y.var()) if y.numel() > 1 else 1.0) if warm is None else warm
        starts = random_starts(base, box, 3, seed)
        return fit_map(self.objective(x, F, y, v, reml, shared), starts, box, restarts=restarts)

    def predict(
        self, krig: Kriging, th: Tensor, X: Tensor, x: Tensor, Fx: Tensor, diag: bool = False, t_scale: bool = False
    ):
        """Mean and covariance at ``x`` (``... x q x d``) given the training
        inputs ``X`` (``n x d``); ``t_scale``: widened by
        :meth:`Kriging.t_factor` for the uncertainty of ``s2``."""
        ls, s2, _ = self.unpack(th)
        Xb = expand_train(X, x)
        Kx = s2 * self.corr(Xb, x, ls)
        Kxx = s2 * (self.corr(x, x, ls, diag=True) if diag else self.corr(x, x, ls))
        mean, cov = krig.predict(Kx, Kxx, Fx, diag=diag)
        if t_scale:
            f = krig.t_factor().unsqueeze(-1)
            cov = cov * (f if diag else f.unsqueeze(-1))
        return mean, cov


@register_surrogate
class RecursiveCoKriging(MultiFidelityModel):
    r"""Recursive co-kriging of Le Gratiet & Garnier (2014).

    Level 0 is a kriging model with a trend ``h(x)^T beta_0``; level ``t >= 1`` is
    ``f_t(x) = rho_t(x) f_{t-1}(x) + delta_t(x)`` with ``f_{t-1}`` the
    posterior mean of the level below, ``rho_t`` constant (``rho="constant"``)
    or linear in ``x`` (``"linear"``), and ``delta_t`` a kriging model with
    trend ``h(x)^T beta_t``; ``rho_t`` and ``beta_t`` are estimated together by
    GLS and the correlation parameters by restricted maximum likelihood times
    the lengthscale prior.

    Trend ``h(x)``: ``1`` (``trend="constant"``), ``[1, x]`` (``"linear"``,
    the regression functions of Le Gratiet & Garnier's model; a discrepancy
    linear in the scaled inputs is then fitted exactly), or ``"auto"``
    (default): linear at the levels whose ``n_t`` points leave at least
    :data:`AUTO_TREND_DOF` degrees of freedom to the ``p_t`` trend terms,
    constant at the others. The choice is made once per fit and stored
    (``trend_linear``). Predictions add ``rho_t^2`` times the level below's
    variance to the universal-kriging variance of ``delta_t`` (which carries
    the uncertainty of ``rho_t``). A column of ``[1, f_{t-1}, (f_{t-1} x), (x)]``
    that repeats the ones before it at level ``t``'s points (the level below
    constant there, or linear in the inputs of a linear trend) has no
    identifiable coefficient and is dropped at the fit
    (:func:`~surrogates.multifidelity.core.independent_columns`, stored in
    ``basis_keep``); without its ``f_{t-1}`` column, ``rho_t`` is zero.

    Non-nested designs: where ``X_t`` is not inside ``X_{t-1}`` the level
    below is uncertain at ``X_t``; its predictive variance there, times
    ``rho_t^2``, is added to the noise of level ``t``'s rows (a second fit
    with ``rho_t`` from the first). The errors of that plug-in are treated
    as independent between rows, an approximation; :class:`AR1CoKriging`
    is the exact joint model.

    Each level's correlation family is ``kernel`` or, for ``"auto"``, the
    one whose fit has the larger restricted likelihood times prior.

    Variance of each level's scale: ``delta_t``'s process variance is
    estimated from ``n_t`` points with ``p_t`` trend terms; with
    ``t_scale=True`` (default) its predictive variance is widened to the
    Student t with ``n_t - p_t`` degrees of freedom that follows from a
    Jeffreys prior on that scale when the level's covariance is a scale
    family (:meth:`~surrogates.multifidelity.core.Kriging.t_factor`;
    Santner, Williams & Notz 2003, sec. 4.1.3), so a level with a handful
    of points is not reported as if its variance were known. A level whose
    data have known positive noise variances keeps the plug-in Gaussian (a
    known noise fixes the scale). The variance carried from the level below
    (non-nested or noisy designs) is not counted as known noise: such a
    level's covariance is a scale family only approximately, and it keeps
    the widening (without it, the median NLPD of the surrogate benchmark's
    development problems was worse on 4 of the 5 problems it changes).

    Output warp (``warp``, default ``"none"``; never chosen from the data):
    ``"log"`` krigs ``log y_0`` at level 0 (its outputs must be positive; a
    warped GP with a fixed warp, Snelson et al. 2004), and the log-normal
    mean and covariance of ``y_0`` enter the recursion and level 0's
    predictions (``E = exp(M + S/2)``, ``cov = E E^T (exp(S) - 1)``: a
    Gaussian with the log-normal's first two moments). Known noise enters
    the log space by the delta method (``Var log y = v / y^2``); predictions
    are then equivariant under ``y -> a y`` for ``a > 0`` only.

    Options: see :class:`MultiFidelityModel`; ``rho`` (``"constant"``),
    ``trend`` (``"auto"``), ``reml`` (True), ``t_scale`` (True; False: the plug-in Gaussian),
    ``warp`` (``"none"``).

    Example:
        >>> model = RecursiveCoKriging.from_dataset(ds)
        >>> mean, var = model.predict(torch.rand(5, ds.d))  # top level
    """

    def __init__(
        self,
        dataset: Dataset,
        rho: str = "constant",
        trend: str = "auto",
        reml: bool = True,
        t_scale: bool = True,
        warp: str = "none",
        **options: Any,
    ):
        if warp not in WARPS:
            raise ValueError(f"warp must be one of {WARPS}, got {warp!r}")
        self.warp = warp
        if rho not in RHO_FORMS:
            raise ValueError(f"rho must be one of {RHO_FORMS}, got {rho!r}")
        if trend not in TREND_FORMS:
            raise ValueError(f"trend must be one of {TREND_FORMS}, got {trend!r}")
        self.rho_form, self.trend, self.reml = rho, trend, check_flag("reml", reml)
        self.t_scale = check_flag("t_scale", t_scale)
        super().__init__(dataset, **options)

    def _extra_config(self) -> dict[str, Any]:
        return {"rho": self.rho_form, "trend": self.trend, "reml": self.reml, "t_scale": self.t_scale,
                "warp": self.warp}

    def _build(self) -> None:
        self._kinds = KERNELS if self.kernel == "auto" else (self.kernel,)
        self._levelk = [LevelKriging(Correlation(k), self.d, self.ard, self.infer_nugget) for k in KERNELS]
        L = self.num_fidelities
        self.register_buffer("theta", torch.zeros(L, self._levelk[0].size, dtype=DTYPE))
        # index into KERNELS of each level's correlation family
        self.register_buffer("kernel_index", torch.full((L,), KERNELS.index(self._kinds[0]), dtype=torch.long))
        # rho_t(x) = c_0 + x c_1: of the carried lower-level variance (0: not carried)
        self.register_buffer("carry_coef", torch.zeros(L, 1 + self.d, dtype=DTYPE))
        # per level: trend linear in x (1) or constant (0)
        self.register_buffer("trend_linear", torch.zeros(L, dtype=torch.bool))
        # per level: the inputs of its linear trend and of a linear rho's f x (those that vary among its points)
        self.register_buffer("trend_inputs", torch.ones(L, self.d, dtype=torch.bool))
        # per level: which columns of its trend basis [1, f, (f x), (x)] are used (the others
        # repeat earlier ones at the level's points and have no identifiable coefficient)
        self.register_buffer("basis_keep", torch.ones(L, 2 + 2 * self.d, dtype=torch.bool))

    @classmethod
    def from_config(cls, config: dict[str, Any], dataset: Dataset):
        # saved before the trend option: those models have constant trends
        return super().from_config({"trend": "constant", "warp": "none", **config}, dataset)

    # saved before the constant-input check (every input) and the trend-basis check (every column)
    _FILLED_WHEN_MISSING = ("trend_inputs", "basis_keep")

    #: a level above the first needs more points than its trend [1, f]
    min_level_points = 3

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        if "trend_linear" not in state_dict and self.trend == "constant":
            state_dict = {**state_dict, "trend_linear": torch.zeros_like(self.trend_linear)}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @staticmethod
    def _carry(coef: Tensor, x: Tensor, lower_var: Tensor) -> Tensor:
        """Variance ``rho_t(x)^2 Var f_{t-1}(x)`` added to level ``t``'s rows (``n``)."""
        return (coef[0] + x @ coef[1:]).pow(2) * lower_var

    @staticmethod
    def _with_carry(x: Tensor, v: Tensor, extra: Tensor) -> tuple[Tensor, Tensor | None]:
        """Known noise ``v`` (``... x n``) with the carried variance ``extra`` added:
        ``(v + extra, None)``, or, where some rows repeat an input, ``(v, S)`` with
        ``S`` (``... x n x n``) the carried covariance, ``extra`` on the diagonal and
        ``sqrt(extra_i extra_j)`` between replicates: they share one value of the level
        below, so its uncertainty is not averaged down over them (as independent
        rows it had been, and replicates fused by precision had lost that equivalence)."""
        off = equal_rows(x) & ~torch.eye(x.shape[-2], dtype=torch.bool)
        if not bool(off.any()):
            return v + extra, None
        r = extra.clamp_min(0).sqrt()
        S = torch.where(off, r.unsqueeze(-1) * r.unsqueeze(-2), torch.zeros((), dtype=extra.dtype)) \
            + torch.diag_embed(extra)
        return v, S

    def _basis(self, t: int, x: Tensor, lower: Tensor | None) -> Tensor:
        one = torch.ones_like(x[..., :1])
        lin = [x[..., self.trend_inputs[t]]] if self._linear[t] else []
        if t == 0:
            F = torch.cat([one, *lin], -1) if lin else one
        else:
            f = lower.unsqueeze(-1)
            cols = [one, f, f * x[..., self.trend_inputs[t]]] if self.rho_form == "linear" else [one, f]
            cols += lin
            batch = torch.broadcast_shapes(*(c.shape[:-1] for c in cols))
            F = torch.cat([c.expand(*batch, c.shape[-1]) for c in cols], -1)
        return self._kept_basis(t, F)

    def _full_beta(self, beta: Tensor, t: int) -> Tensor:
        """GLS coefficients ``beta`` (``... x p``, the kept columns of level ``t``'s
        basis) placed in the full basis ``[1, f, (f x), (x)]``, zero for the dropped columns."""
        p = 1 + (self._rho_terms(t) if t else 0) + (int(self.trend_inputs[t].sum()) if self._linear[t] else 0)
        keep = self.basis_keep[t, :p]
        if bool(keep.all()):
            return beta
        full = beta.new_zeros(*beta.shape[:-1], p)
        full[..., keep] = beta
        return full

    def _rho_terms(self, t: int) -> int:
        """Number of GLS coefficients of ``rho_t``: ``1``, or ``1 + k_t`` for
        ``rho="linear"`` with the ``k_t`` inputs of ``trend_inputs``."""
        return 1 + int(self.trend_inputs[t].sum()) if self.rho_form == "linear" else 1

    def _rho_coefs(self, beta: Tensor, t: int) -> Tensor:
        """The ``rho_t`` coefficients among the GLS coefficients ``beta`` of the
        basis ``[1, f, (f x), (x)]``: ``... x 1`` (constant) or ``... x (1 + d)``
        (linear; zero for the inputs held at one value at level ``t``), zero for
        the columns of :func:`independent_columns` dropped."""
        c = self._full_beta(beta, t)[..., 1 : 1 + self._rho_terms(t)]
        if self.rho_form != "linear":
            return c
        full = c.new_zeros(*c.shape[:-1], 1 + self.d)
        full[..., 0] = c[..., 0]
        full[..., 1 + self.trend_inputs[t].nonzero().flatten()] = c[..., 1:]
        return full

    def _rho_at(self, t: int, x: Tensor) -> Tensor:
        c = self._rho_coefs(self._krig[t].beta, t)  # ... x (1 or 1 + d)
        if self.rho_form == "linear":
            return c[..., :1] + (x @ c[..., 1:].unsqueeze(-1)).squeeze(-1)
        return c.expand(*torch.broadcast_shapes(c.shape[:-1] + (1,), x.shape[:-1]))

    def _lower_at(self, t: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and variance of level ``t - 1`` at each of the ``B x n x d`` inputs."""

        def at(xb: Tensor) -> tuple[Tensor, Tensor]:
            means, covs, _ = self._moments(xb, t - 1, diag=True)
            return means[-1], covs[-1]

        return self._pointwise(at, x)

    # ------------------------------------------------------- log warp
    def _set_warp(self) -> None:
        """With ``warp="log"``: the mean and standard deviation of ``log y`` over
        level 0's training outputs (``_warp_loc``, ``_warp_scale``), which standardize
        its kriging targets; level 0's outputs must be positive."""
        if self.warp == "none":
            return
        _, y, _ = self._levels(fantasy=False)[0]
        raw = self.level_mean[0] + self.level_std[0] * y
        if not bool((raw > 0).all()):
            raise ValueError(
                f"warp='log' needs positive level-0 outputs, got min {float(raw.min()):.6g} "
                f"(shift them, or use warp='none')")
        lg = raw.log()
        self._warp_loc = lg.mean()
        self._warp_scale = lg.std().clamp_min(1e-12) if lg.numel() > 1 else torch.ones((), dtype=DTYPE)
        self._warp_floor = 1e-12 * raw.max()

    def _warped(self, y: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Level 0's kriging targets and known noise from its standardized outputs
        ``y`` and noise ``v``: ``(log y_raw - loc) / scale`` and, by the delta method,
        ``v_raw / (y_raw scale)^2``, rounded as the other levels' targets
        (:func:`~surrogates.multifidelity.model.round_significand`). A fantasy value
        below ``1e-12`` of the largest training output is taken at that floor."""
        raw = (self.level_mean[0] + self.level_std[0] * y).clamp_min(self._warp_floor)
        z = (raw.log() - self._warp_loc) / self._warp_scale
        vz = v * self.level_std[0] ** 2 / (raw * self._warp_scale) ** 2
        # rounded values, identity gradient: a fantasy value's gradient passes through
        z = z + (round_significand(z.detach()) - z.detach())
        vz = vz + (round_significand(vz.detach()) - vz.detach())
        return z, vz.clamp_min(NOISE_FLOOR)

    def _unwarped(self, m: Tensor, c: Tensor, diag: bool) -> tuple[Tensor, Tensor]:
        """Level 0's log-space kriging moments (``m``, covariance or variances ``c``,
        standardized log units) to the log-normal moments of ``y_0`` in level 0's
        standardized units: ``E_i = exp(M_i + S_ii / 2)``, ``cov_ij = E_i E_j
        (exp(S_ij) - 1)`` with ``M = loc + scale m``, ``S = scale^2 c``."""
        M, S = self._warp_loc + self._warp_scale * m, self._warp_scale**2 * c
        var = S if diag else S.diagonal(dim1=-2, dim2=-1)
        E = torch.exp(M + 0.5 * var)
        cov = E.pow(2) * torch.expm1(S) if diag else E.unsqueeze(-1) * E.unsqueeze(-2) * torch.expm1(S)
        return (E - self.level_mean[0]) / self.level_std[0], cov / self.level_std[0] ** 2

    def _nugget(self) -> Tensor:
        g = torch.stack([self._lk(t).unpack(self.theta[t])[2] for t in range(self.num_fidelities)])
        if self.warp == "log":
            if not hasattr(self, "_warp_loc"):
                self._set_warp()
            # level 0's nugget is in standardized log units: at the geometric mean of its outputs
            typical = torch.exp(self._warp_loc) / self.level_std[0]
            g = torch.cat([(g[0] * (self._warp_scale * typical) ** 2).reshape(1), g[1:]])
        return g

    def _level_data(self, t: int, coef: Tensor | None):
        x, y, v = self._lv[t]
        if t == 0:
            if self.warp == "log":
                y, v = self._warped(y, v)
            return x, self._basis(0, x, None), y, (v, None), None
        m, var = self._lower_at(t, x)
        F = self._basis(t, x, m)
        shared = None
        if coef is not None:
            v, shared = self._with_carry(x, v, self._carry(coef, x, var))
        return x, F, y, (v, shared), var

    def _set_scale_free(self) -> None:
        """Per level: no known positive noise variance in its data, so that
        its covariance is a scale family (the condition of ``t_scale``; the
        variance carried from the level below does not count, see the class
        docstring)."""
        self._scale_free = [bool((v <= NOISE_FLOOR).all()) for _, _, v in self._levels(fantasy=False)]

    def _choose_trends(self) -> None:
        """Per level, whether its trend is linear in ``x`` (``trend_linear``):
        always (``"linear"``), never (``"constant"``), or (``"auto"``) where
        the level's points leave at least :data:`AUTO_TREND_DOF` residual
        degrees of freedom to the linear trend's ``p_t`` terms. Fixed at the
        fit, like the kernel, so a model conditioned on more points keeps it.
        The linear trend takes the inputs that vary among the level's points
        (``trend_inputs``): an input held at one value would repeat the constant
        column; a level where none varies keeps the constant trend. Points
        are counted once per distinct input: a repeated observation says
        nothing more about the trend's shape."""
        for t, (x, _, _) in enumerate(self._levels(fantasy=False)):
            varying = x.amax(0) > x.amin(0)
            self.trend_inputs[t] = varying
            k, n = int(varying.sum()), int(distinct_rows(x))
            p = 1 + k + (self._rho_terms(t) if t else 0)
            wanted = self.trend == "linear" or (self.trend == "auto" and n >= p + AUTO_TREND_DOF)
            self.trend_linear[t] = wanted and k > 0

    @property
    def _linear(self) -> list[bool]:
        return [bool(b) for b in self.trend_linear]

    def _fit(self) -> None:
        self._set_warp()
        self._set_scale_free()
        self._choose_trends()
        self._krig: list[Kriging] = []
        self._lv = self._levels()
        L = self.num_fidelities
        for t in range(L):
            self.basis_keep[t] = True
            x, F, y, (v, _), lower_var = self._level_data(t, None)
            if F.shape[-1] >= len(y):
                raise TooFewLevelPoints(
                    f"level {t} has {len(y)} points; recursive co-kriging with rho={self.rho_form!r} and "
                    f"trend={self.trend!r} needs "
                    f"more than {F.shape[-1]} (use AR1CoKriging)"
                )
            F = self._independent_basis(t, F)
            best = None
            for kind in self._kinds:
                lk = self._levelk[KERNELS.index(kind)]
                th, val = lk.fit(x, F, y, v, self.reml, self.restarts, self.seed + t)
                if best is None or val < best[1]:
                    best = (th, val, KERNELS.index(kind))
            th, _, ki = best
            self.kernel_index[t] = ki
            lk = self._levelk[ki]
            krig = lk.kriging(th, x, F, y, v)
            coef = torch.zeros(1 + self.d, dtype=DTYPE)
            if lower_var is not None:
                rc = self._rho_coefs(krig.beta, t)
                coef[: rc.shape[-1]] = rc
                extra = self._carry(coef, x, lower_var)
                _, s2, _ = lk.unpack(th)
                if float(extra.max()) > 1e-6 * float(s2):
                    v2, shared = self._with_carry(x, v, extra)
                    th, _ = lk.fit(x, F, y, v2, self.reml, self.restarts, self.seed + t, warm=th, shared=shared)
                    krig = lk.kriging(th, x, F, y, v2, shared=shared)
                else:
                    coef.zero_()
            self.theta[t].copy_(th.detach())
            self.carry_coef[t] = coef
            self._krig.append(krig)

    def _condition(self) -> None:
        self._set_warp()
        self._set_scale_free()
        self._krig = []
        self._lv = self._levels()
        masks = self._level_masks()
        for t in range(self.num_fidelities):
            x, F, y, (v, shared), _ = self._level_data(t, self.carry_coef[t] if t > 0 else None)
            self._krig.append(self._lk(t).kriging(self.theta[t], x, F, y, v, masks[t], shared=shared))

    def _lk(self, t: int) -> LevelKriging:
        return self._levelk[int(self.kernel_index[t])]

    @property
    def kernels(self) -> list[str]:
        """Correlation family of each level."""
        return [KERNELS[int(i)] for i in self.kernel_index]

    def _moments(self, x: Tensor, T: int, diag: bool = False):
        """Means ``... x q`` and covariances ``... x q x q`` (variances if ``diag``)
        of levels ``0..T`` at ``x`` (``... x q x d``), and the ``rho_t(x)``."""
        means, covs, gains = [], [], []
        for t in range(T + 1):
            X = self._lv[t][0]
            F = self._basis(t, x, means[-1] if t else None)
            m, c = self._lk(t).predict(
                self._krig[t], self.theta[t], X, x, F, diag=diag, t_scale=self.t_scale and self._scale_free[t]
            )
            if t == 0 and self.warp == "log":
                m, c = self._unwarped(m, c, diag)
            if t:
                r = self._rho_at(t, x)
                gains.append(r)
                c = c + (r.pow(2) * covs[-1] if diag else r.unsqueeze(-1) * covs[-1] * r.unsqueeze(-2))
            means.append(m)
            covs.append(c)
        return means, covs, gains

    @property
    def rho(self) -> list[Tensor]:
        """Per level ``t >= 1``, the GLS trend coefficients of ``f_{t-1}`` in output units
        (``rho_t``; constant: one value, linear: ``1 + d``, on inputs scaled to the bounds)."""
        self._ensure_conditioned()
        return [self._rho_coefs(k.beta, t).detach().clone() * self._level_ratio(t)
                for t, k in enumerate(self._krig) if t]

    def _latent(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        means, covs, gains = self._moments(x, int(level.max()))
        return assemble_levels(means, covs, gains, level)
