r"""Kennedy--O'Hagan AR1 co-kriging as one joint Gaussian process."""

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
    Correlation,
    Kriging,
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
    check_flag,
    round_significand,
)

#: box of the scale factors rho (standardized outputs)
RHO_BOUND = 10.0


def nearest_slope(x_lo: Tensor, y_lo: Tensor, x_hi: Tensor, y_hi: Tensor) -> float:
    """Least-squares slope of ``y_hi`` on the lower level's value at the nearest
    lower-level input (a starting value of ``rho``; exact pairs when nested)."""
    idx = torch.cdist(x_hi, x_lo).argmin(-1)
    a = y_lo[idx] - y_lo[idx].mean()
    b = y_hi - y_hi.mean()
    den = float(a.pow(2).sum())
    return float((a * b).sum()) / den if den > 0 else 1.0


@register_surrogate
class AR1CoKriging(MultiFidelityModel):
    r"""Kennedy & O'Hagan (2000) autoregressive co-kriging, fitted jointly.

    ``f_t(x) = rho_{t-1} f_{t-1}(x) + delta_t(x)`` with independent Gaussian
    processes ``delta_t`` (``delta_0 = f_0``), each with its own lengthscales
    and variance and a constant mean (GLS). All levels' data are one exact GP
    over ``(x, level)``, so non-nested designs are handled exactly, and every
    row's noise is its known variance and/or its level's nugget (``noise``).
    The lengthscales, variances, ``rho`` and nuggets are the maximum of the
    restricted likelihood times the lengthscale prior
    (:func:`~surrogates.multifidelity.core.log_lengthscale_prior`), started
    from the level-by-level :class:`RecursiveCoKriging` estimates (whose
    per-level correlation family it keeps for ``kernel="auto"``); the means
    are profiled out, so predictions carry their estimation variance
    (universal kriging). Options: see :class:`MultiFidelityModel`; ``reml``
    (default True) uses the restricted likelihood, False the plain one;
    ``kernel`` defaults to ``"auto"`` (each level's family as the recursive
    fit chooses it by restricted likelihood: the joint likelihood alone
    leaves long-lengthscale Matérn ridges on small levels poorly determined);
    ``restarts`` defaults to 3 (the joint likelihood of a few top-level
    points has several local optima; one local optimization from the best
    start often stops at a worse one); ``restarts=1`` fits several times
    faster on large data (``experiments/benchmarks/results/mf_scaling.json``).

    The predictive variance treats the estimated parameters as known (a
    plug-in), so with a handful of points at the top level it is narrower
    than the errors: the surrogate benchmark's 95 % coverage is the measure
    (:class:`RecursiveCoKriging` with ``t_scale=True`` widens each level for
    its estimated scale).

    Example:
        >>> model = AR1CoKriging.from_dataset(ds)
        >>> post = model.posterior(torch.tensor([[0.3, 1.0]]))  # x = 0.3, level 1
    """

    def __init__(
        self, dataset: Dataset, reml: bool = True, kernel: str = "auto", restarts: int = 3, **options: Any
    ):
        self.reml = check_flag("reml", reml)
        super().__init__(dataset, kernel=kernel, restarts=restarts, **options)

    def _extra_config(self) -> dict[str, Any]:
        return {"reml": self.reml}

    # ------------------------------------------------------------ layout
    def _build(self) -> None:
        L = self.num_fidelities
        self._nls = self.d if self.ard else 1
        self._corrs = [Correlation(k) for k in KERNELS]
        # index into KERNELS of each delta_t's correlation family
        first = KERNELS.index("matern52" if self.kernel == "auto" else self.kernel)
        self.register_buffer("kernel_index", torch.full((L,), first, dtype=torch.long))
        size = L * (self._nls + 1) + (L if self.infer_nugget else 0) + (L - 1)
        self.register_buffer("theta", torch.zeros(size, dtype=DTYPE))

    def _unpack(self, th: Tensor):
        L, k = self.num_fidelities, self._nls
        per = th[: L * (k + 1)].reshape(L, k + 1)
        ls, var = per[:, :k].exp(), per[:, k].exp()
        off = L * (k + 1)
        if self.infer_nugget:
            nug, off = th[off : off + L].exp(), off + L
        else:
            nug = torch.zeros(L, dtype=th.dtype)
        return ls, var, nug, th[off : off + L - 1]

    def _box(self) -> Tensor:
        L, k = self.num_fidelities, self._nls
        lo = [*LOG_LS_BOUNDS[:1] * k, LOG_VAR_BOUNDS[0]] * L
        hi = [*LOG_LS_BOUNDS[1:] * k, LOG_VAR_BOUNDS[1]] * L
        if self.infer_nugget:
            lo, hi = lo + [LOG_NUGGET_BOUNDS[0]] * L, hi + [LOG_NUGGET_BOUNDS[1]] * L
        rb = [self._rho_bound(t) for t in range(1, L)]
        lo, hi = lo + [-b for b in rb], hi + rb
        return torch.tensor([lo, hi], dtype=DTYPE)

    def _rho_bound(self, t: int) -> float:
        """Bound on ``|rho_{t-1}|`` in the levels' standardized units: :data:`RHO_BOUND`,
        widened by the ratio of level ``t - 1``'s spread to level ``t``'s where that is
        above 1 (the top level's points of a campaign cluster near an optimum, so its
        spread can be far below the level under it while the two agree). The ratio's
        significand is rounded (:func:`~surrogates.multifidelity.model.round_significand`)
        so that the box, like the standardized data, is the same for ``y`` and
        ``a y + b``: L-BFGS-B's steps depend on the bounds, and a bound 1 ulp
        away had led a fit to another local optimum."""
        ratio = round_significand(1.0 / self._level_ratio(t).abs())
        return RHO_BOUND * max(1.0, float(ratio))

    @staticmethod
    def _coef(rho: Tensor, L: int) -> Tensor:
        """``L x L`` matrix ``c[i, t] = prod_{j=i}^{t-1} rho_j`` (0 for ``i > t``):
        the weight of ``delta_i`` in ``f_t``."""
        rows = []
        for i in range(L):
            col, acc = [], None
            for t in range(L):
                if t < i:
                    col.append(torch.zeros((), dtype=rho.dtype))
                elif t == i:
                    acc = torch.ones((), dtype=rho.dtype)
                    col.append(acc)
                else:
                    acc = acc * rho[t - 1]
                    col.append(acc)
            rows.append(torch.stack(col))
        return torch.stack(rows)

    def _cov(self, th: Tensor, x1: Tensor, l1: Tensor, x2: Tensor, l2: Tensor) -> Tensor:
        """Signal covariance between ``... x n x d`` inputs at levels ``... x n``
        and ``... x q x d`` at ``... x q`` (``... x n x q``)."""
        ls, var, _, rho = self._unpack(th)
        c = self._coef(rho, self.num_fidelities)
        out = 0.0
        for i in range(self.num_fidelities):
            w1, w2 = c[i][l1], c[i][l2]
            if not bool((w1 != 0).any()) or not bool((w2 != 0).any()):
                continue
            corr = self._corrs[int(self.kernel_index[i])]
            out = out + var[i] * w1.unsqueeze(-1) * w2.unsqueeze(-2) * corr(x1, x2, ls[i])
        return out if torch.is_tensor(out) else torch.zeros(*x1.shape[:-1], x2.shape[-2], dtype=DTYPE)

    def _system(self, th: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Covariance, trend basis, targets and row mask of all training rows."""
        x, lev, y, v, w = self._train_all()
        _, _, nug, rho = self._unpack(th)
        K = self._cov(th, x, lev, x, lev) + torch.diag_embed(v + nug[lev])
        F = self._coef(rho, self.num_fidelities)[:, lev].movedim(0, -1)
        return K, F, y, w

    def _kriging(self, th: Tensor) -> Kriging:
        return Kriging(*self._system(th))

    # --------------------------------------------------------------- fit
    def _objective(self, th: Tensor) -> Tensor:
        ls, _, _, _ = self._unpack(th)
        return kriging_nll(*self._system(th), reml=self.reml) - log_lengthscale_prior(ls.log(), self.d)

    def _start(self) -> Tensor:
        L, k = self.num_fidelities, self._nls
        lv = self._levels()
        parts = []
        rhos = [nearest_slope(lv[t][0], lv[t][1], lv[t + 1][0], lv[t + 1][1]) for t in range(L - 1)]
        rhos = [max(-self._rho_bound(t + 1) + 0.1, min(self._rho_bound(t + 1) - 0.1, r)) for t, r in enumerate(rhos)]
        ls0 = prior_lengthscale(self.d)
        for t in range(L):
            y = lv[t][1]
            if t == 0:
                s2 = float(y.var()) if y.numel() > 1 else 1.0
            else:
                s2 = 0.1 * (float(y.var()) if y.numel() > 1 else 1.0)
            parts += [torch.full((k,), ls0, dtype=DTYPE).log(), torch.tensor([max(s2, 1e-4)], dtype=DTYPE).log()]
        if self.infer_nugget:
            parts.append(torch.full((L,), 1e-3, dtype=DTYPE).log())
        parts.append(torch.tensor(rhos, dtype=DTYPE))
        return torch.cat(parts)

    def _from_recursive(self) -> Tensor | None:
        """Starting point from a :class:`RecursiveCoKriging` fit with the same
        options and constant trends (its estimates map one-to-one onto the AR1 parameters and are
        the joint ones for nested noise-free designs, Le Gratiet & Garnier
        2014); also sets each level's correlation family. None if the
        recursive model cannot be fitted (too few points at a level: one at
        level 0, fewer than 3 above)."""
        from surrogates.multifidelity.recursive import RecursiveCoKriging

        opts = {k: v for k, v in self.get_config().items() if k not in ("format", "reml")}
        # constant trends: the AR1 levels' means are constants
        rec = RecursiveCoKriging(self.train_dataset, reml=self.reml, trend="constant", **opts)
        try:
            rec.fit()
        except TooFewLevelPoints:
            return None
        self.kernel_index.copy_(rec.kernel_index)
        L = self.num_fidelities
        parts = []
        for t in range(L):
            ls, s2, _ = rec._lk(t).unpack(rec.theta[t])
            parts += [ls.log(), s2.log().reshape(1)]
        if self.infer_nugget:
            parts.append(torch.stack([rec._lk(t).unpack(rec.theta[t])[2] for t in range(L)]).log())
        # rho in the levels' standardized units (the two models standardize alike)
        parts.append(torch.stack([rec._rho_coefs(k.beta, t)[0].detach() for t, k in enumerate(rec._krig) if t]))
        return torch.cat(parts).clamp(*self._box())

    def _fit(self) -> None:
        box = self._box()
        base = self._from_recursive()
        spread = 0.5
        if base is None:
            base, spread = self._start(), 1.0
        starts = random_starts(base, box, 7, self.seed, spread=torch.full_like(base, spread))
        th, _ = fit_map(self._objective, starts, box, restarts=self.restarts)
        self.theta.copy_(th)

    # ----------------------------------------------------------- predict
    def _condition(self) -> None:
        self._krig = self._kriging(self.theta)
        x, lev, _, _, _ = self._train_all()
        self._x, self._lev = x, lev

    def _nugget(self) -> Tensor:
        return self._unpack(self.theta)[2]

    @property
    def rho(self) -> Tensor:
        """``L - 1`` scale factors ``rho_t`` in output units (``f_{t+1} = rho_t f_t + delta``)."""
        r = self._unpack(self.theta)[3].detach().clone()
        return torch.stack([r[t - 1] * self._level_ratio(t) for t in range(1, self.num_fidelities)])

    def _latent(self, x: Tensor, level: Tensor) -> tuple[Tensor, Tensor]:
        th = self.theta
        Kx = self._cov(th, expand_train(self._x, x), self._lev, x, level)
        Kxx = self._cov(th, x, level, x, level)
        _, _, _, rho = self._unpack(th)
        Fx = self._coef(rho, self.num_fidelities)[:, level].movedim(0, -1)
        return self._krig.predict(Kx, Kxx, Fx)
