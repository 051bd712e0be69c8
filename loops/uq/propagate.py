r"""Uncertainty propagation through FE² with the aleatory/epistemic split.

A macro quantity of interest ``Q`` (a reaction force, the largest stress, a
displacement, or any callable of the solved load path) depends on the random
microstructure descriptors :math:`\theta` (aleatory: fibre volume fraction,
phase stiffness, ...; not reducible) and on the surrogate's function
:math:`f` (epistemic: what the surrogate has not learned; reducible by more
oracle calls). The law of total variance splits

.. math:: \mathrm{Var}[Q] = \underbrace{E_\theta[\mathrm{Var}_f(Q \mid \theta)]}_{\text{epistemic}}
          + \underbrace{\mathrm{Var}_\theta(E_f[Q \mid \theta])}_{\text{aleatory}},

estimated by nested Monte Carlo (:func:`total_variance_split`): ``n_outer``
descriptor draws :math:`\theta_i`, and for each ``n_inner`` independent joint
posterior function samples :math:`f_{is}` (:class:`loops.uq.samples.GPFunctionSamples`,
one path per macro run), giving ``Q_is``. With :math:`\bar Q_i` and
:math:`s_i^2` the inner means and (unbiased) variances,

* epistemic :math:`\hat V_E = \frac{1}{n_o}\sum_i s_i^2` (unbiased),
* aleatory :math:`\hat V_A = \widehat{\mathrm{Var}}_i(\bar Q_i) - \hat V_E / n_i`
  (unbiased: the spread of inner means contains :math:`V_E / n_i` of inner
  sampling noise),

with standard errors by the delete-one jackknife over the outer draws (the
aleatory term's by normal theory when ``n_outer = 2``; with one outer draw the
epistemic term's by normal theory and the aleatory term has none). The
``n_inner`` paths of one outer draw are solved side by side
(:meth:`loops.fe2.solver.MacroSolver.solve_batch`): one material call per
Newton iteration serves all of them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from loops.fe2.solver import MacroSolver, SolveResult
from loops.uq.samples import GPFunctionSamples, GPPosteriorMean, farthest_points
from loops.uq.sobol import spawn_seeds
from oracles.exceptions import OracleError, is_integer

DTYPE = torch.float64

#: a quantity of interest: (solver, solved load path) -> number
QoI = Callable[[MacroSolver, SolveResult], float]


# --------------------------------------------------------------------- QoIs
def _check_component(qoi, component) -> None:
    """A ``ValueError`` naming ``qoi`` unless ``component`` is an integer >= 0."""
    if not is_integer(component) or component < 0:
        raise ValueError(f"{qoi}: component must be an integer >= 0 (0: x, 1: y, 2: z), got {component!r}")


def _component_of(qoi, component: int, k: int) -> int:
    """``component`` checked against the mesh dimension ``k``."""
    if component >= k:
        raise ValueError(f"{qoi}: component {component} does not exist on a {k}D mesh (0..{k - 1})")
    return component


@dataclass(frozen=True)
class Reaction:
    """Reaction force component on a boundary at the end of the load path."""

    boundary: str
    component: int = 0

    def __post_init__(self):
        _check_component(self, self.component)

    def __call__(self, solver: MacroSolver, result: SolveResult) -> float:
        reactions = result.final.reactions
        if self.boundary not in reactions:
            raise ValueError(f"{self}: {self.boundary!r} is not a boundary of the mesh; known: {sorted(reactions)}")
        return float(reactions[self.boundary][_component_of(self, self.component, solver.dim)])


@dataclass(frozen=True)
class MaxStress:
    """Largest Frobenius norm of the first Piola-Kirchhoff stress over the Gauss points (final step)."""

    def __call__(self, solver: MacroSolver, result: SolveResult) -> float:
        P = result.final.P
        return float(np.sqrt((P.reshape(P.shape[0], -1) ** 2).sum(1)).max())


@dataclass(frozen=True)
class Displacement:
    """Displacement component at a reference point (interpolated with the FE basis, final step)."""

    point: tuple[float, ...]
    component: int = 0

    def __post_init__(self):
        _check_component(self, self.component)

    def __call__(self, solver: MacroSolver, result: SolveResult) -> float:
        x = np.asarray(self.point, dtype=float).reshape(-1, 1)
        if x.shape[0] != solver.dim:
            raise ValueError(f"point must have {solver.dim} coordinates, got {self.point}")
        c = _component_of(self, self.component, solver.dim)
        try:
            probe = solver.basis.probes(x)
        except ValueError:
            raise ValueError(f"{self}: the point is in no element of the mesh (a hole, or outside it)") from None
        u = probe @ result.final.u  # k components of the vector field at x
        return float(np.asarray(u).reshape(-1)[c])


# --------------------------------------------------------------- estimators
@dataclass
class Split:
    """Moments of one QoI from an ``n_outer x n_inner`` nested sample (see the module docstring).

    Attributes:
        mean, std: of all samples (pooled); ``mean_se`` its standard error.
        epistemic, aleatory: the two variance terms; ``*_se`` their standard errors. NaN where
            the sample cannot estimate one: no outer draw with two inner values (epistemic,
            and with it the aleatory term), or fewer than two outer draws with a value
            (aleatory). Outer draws whose every run failed are left out of the estimates.
            The aleatory term is unbiased, so it can come out negative where it is small
            against ``aleatory_se`` (a QoI the random inputs barely move).
        quantiles: probability -> pooled sample quantile.
        n_outer, n_inner: sample counts; ``n_failed``: runs that gave no value.
    """

    mean: float
    std: float
    mean_se: float
    epistemic: float
    epistemic_se: float
    aleatory: float
    aleatory_se: float
    quantiles: dict[float, float]
    n_outer: int
    n_inner: int
    n_failed: int = 0

    @property
    def total_variance(self) -> float:
        """``epistemic + aleatory`` (the law of total variance)."""
        return self.epistemic + self.aleatory

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "quantiles"}
        d["quantiles"] = {f"{p:g}": q for p, q in self.quantiles.items()}
        d["total_variance"] = self.total_variance
        return d


def _split_terms(Q: np.ndarray) -> tuple[float, float]:
    """``(E[Var(Q | outer)], Var(E[Q | outer]))`` from ``n_outer x n_inner`` values, NaN left out.

    The first is the mean of the rows' sample variances (rows with 2 or more
    values); the second the variance of the row means less their mean sampling
    variance ``s_i^2 / n_i`` (``n_i`` the row's own count of values, and the
    pooled term for a row of one value), which removes the within-row noise
    from it without bias when some runs failed."""
    ok = np.isfinite(Q)
    n = ok.sum(1)
    rows = n >= 1
    Qr, nr = np.where(ok, Q, 0.0)[rows], n[rows]
    means = Qr.sum(1) / nr
    dev2 = np.where(ok[rows], (np.where(ok, Q, 0.0)[rows] - means[:, None]) ** 2, 0.0).sum(1)
    multi = nr >= 2
    s2 = dev2[multi] / (nr[multi] - 1)
    # no row with two values: the spread within a row, and with it the split, is not estimable
    VE = float(s2.mean()) if s2.size else float("nan")
    if means.size < 2:
        return VE, 0.0
    within = np.where(multi, 0.0, VE)
    within[multi] = s2
    VA = float(np.var(means, ddof=1)) - float(np.mean(within / nr))
    return VE, VA


def total_variance_split(
    Q: np.ndarray, probs: Sequence[float] = (0.025, 0.05, 0.5, 0.95, 0.975)
) -> Split:
    """Nested Monte Carlo estimate of the law-of-total-variance split.

    Args:
        Q: ``n_outer x n_inner`` values (row ``i``: inner samples at the outer
            draw ``i``); NaN marks failed runs and is left out.
        probs: probabilities of the reported quantiles.
    """
    if np.iscomplexobj(Q):
        raise ValueError("Q must hold real numbers, got complex values")
    Q = np.asarray(Q, dtype=float)
    if Q.ndim != 2 or Q.shape[0] < 1 or Q.shape[1] < 1:
        raise ValueError(f"Q must be n_outer x n_inner, got shape {Q.shape}")
    n_out, n_in = Q.shape
    ok = np.isfinite(Q)
    if ok.sum() < 2:
        raise ValueError(f"need at least 2 finite values, got {int(ok.sum())}")
    pooled = Q[ok]
    # an outer draw whose every run failed says nothing: the estimates use the others
    live = ok.any(1)
    Qv, k = Q[live], int(live.sum())
    VE, VA = _split_terms(Qv)
    if n_out >= 2 and k < 2:
        VA = float("nan")  # one outer draw left: no spread between draws to estimate
    if k >= 2:
        okv = ok[live]
        means = np.where(okv, Qv, 0.0).sum(1) / okv.sum(1)
        # the outer draws are the independent units: the pooled mean's error is their spread's
        mean_se = float(np.std(means, ddof=1) / math.sqrt(k))
        jack = np.array([_split_terms(np.delete(Qv, i, axis=0)) for i in range(k)])
        se = np.sqrt((k - 1) / k * ((jack - jack.mean(0)) ** 2).sum(0))
        if k == 2:
            # one row left out leaves no spread of row means to jackknife: the aleatory term's
            # error is the normal-theory one of a sample variance s^2 of 2 values,
            # Var(s^2) = 2 sigma^4 / (n - 1), estimated without bias by 2 s^4 / (n + 1)
            se[1] = math.sqrt(2.0 / 3.0) * float(np.var(means, ddof=1))
    else:
        # one outer draw: the epistemic term is a sample variance (normal-theory error)
        se = np.array([VE * math.sqrt(2.0 / max(n_in - 1, 1)), float("nan")])
        mean_se = float(np.nanstd(pooled, ddof=1) / math.sqrt(pooled.size))
    return Split(
        mean=float(pooled.mean()),
        std=float(pooled.std(ddof=1)),
        mean_se=mean_se,
        epistemic=VE,
        epistemic_se=float(se[0]),
        aleatory=VA,
        aleatory_se=float(se[1]),
        quantiles={float(p): float(np.quantile(pooled, p)) for p in probs},
        n_outer=n_out,
        n_inner=n_in,
        n_failed=int((~ok).sum()),
    )


# ---------------------------------------------------------------- propagation
@dataclass
class Propagation:
    """What :func:`propagate` returns.

    Attributes:
        theta: ``n_outer x p`` descriptor draws (``p`` may be 0).
        Q: QoI name -> ``n_outer x n_inner`` values (NaN: failed run).
        splits: QoI name -> :class:`Split`.
        mean_Q: QoI name -> ``n_outer`` values of the posterior-mean surrogate run at each draw.
        failures: ``(outer, inner, reason)`` of runs that gave no value.
        wall_time: seconds in total; ``solve_time``: in the batched solves.
        n_anchors: anchors per sampler.
    """

    theta: np.ndarray
    Q: dict[str, np.ndarray]
    splits: dict[str, Split]
    mean_Q: dict[str, np.ndarray]
    failures: list[tuple[int, int, str]] = field(default_factory=list)
    wall_time: float = 0.0
    solve_time: float = 0.0
    n_anchors: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "n_outer": int(self.theta.shape[0]),
            "n_inner": int(next(iter(self.Q.values())).shape[1]),
            "n_anchors": self.n_anchors,
            "wall_time": self.wall_time,
            "solve_time": self.solve_time,
            "qoi": {k: s.as_dict() for k, s in self.splits.items()},
            "failures": [{"outer": i, "inner": j, "reason": r} for i, j, r in self.failures],
        }


def sample_inputs(distributions: Mapping[str, Any], n: int, seed: int = 0) -> np.ndarray:
    """``n x p`` independent draws of ``p`` random inputs (scipy.stats frozen distributions)."""
    if not (is_integer(n) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    cols = [
        np.asarray(dist.rvs(size=n, random_state=rng), dtype=float)
        for dist in distributions.values()
    ]
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def _qoi_values(qois: Mapping[str, QoI], solver, result) -> dict[str, float]:
    return {name: float(q(solver, result)) for name, q in qois.items()}


#: Newton tolerance of the propagation's solves unless the caller sets one
#: (a function sample is smooth to about 1e-10 of the stress, and 1e-7 of a
#: QoI is far below any Monte Carlo error)
UQ_RTOL = 1e-7


def propagate(
    make_solver: Callable[[Any], MacroSolver],
    gp,
    qois: Mapping[str, QoI],
    theta: np.ndarray | None = None,
    n_inner: int = 100,
    n_anchors: int = 64,
    seed: int = 0,
    solve_kwargs: Mapping[str, Any] | None = None,
    on_draw: Callable[[dict[str, Any]], None] | None = None,
) -> Propagation:
    """Nested Monte Carlo of ``qois`` over descriptor draws and posterior function samples.

    Args:
        make_solver: ``material -> MacroSolver`` (mesh, boundary conditions, elements).
        gp: the constitutive GP over ``[H, theta]`` (see :class:`GPFunctionSamples`).
        qois: name -> callable ``(solver, SolveResult) -> float``.
        theta: ``n_outer x p`` descriptor draws (:func:`sample_inputs`); None
            for a surrogate without descriptors (one outer draw: epistemic only).
        n_inner: function samples per outer draw (``S``).
        n_anchors: anchors of the samplers (Gauss-point inputs of the
            posterior-mean run at each draw, thinned by farthest points).
        seed: a non-negative integer; the function samplers of the draws use independent
            streams derived from it (:func:`~loops.uq.sobol.spawn_seeds`).
        solve_kwargs: passed to :meth:`MacroSolver.solve` / ``solve_batch``
            (default ``rtol`` :data:`UQ_RTOL`: a function sample is smooth to about
            1e-10 of the stress, see :class:`GPFunctionSamples`, and 1e-7 of
            a QoI is far below any Monte Carlo error).
        on_draw: called after each outer draw with ``{"outer": i, "theta": p values,
            "mean": {qoi: value of the posterior-mean run}, "values": {qoi: n_inner
            values, NaN where a run failed}, "failures": [[j, reason], ...]}``, so a
            caller can keep the finished draws of a propagation that is stopped.

    A batch that does not converge is solved again path by path; a path that
    still fails is recorded in ``failures`` with its reason and its value is NaN.
    """
    t_start = time.perf_counter()
    kw = {"rtol": UQ_RTOL, **dict(solve_kwargs or {})}
    if not qois:
        raise ValueError("qois is empty: give at least one quantity of interest")
    if not (is_integer(seed) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    for name, value in (("n_inner", n_inner), ("n_anchors", n_anchors)):
        if not (is_integer(value) and value >= 1):
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    mean_law = GPPosteriorMean(gp)
    try:
        th = np.zeros((1, 0)) if theta is None else np.atleast_2d(np.asarray(theta, dtype=float))
    except (TypeError, ValueError) as e:
        raise ValueError(f"theta must be an n_outer x p array of numbers, got {theta!r} ({e})") from None
    if th.ndim != 2 or th.shape[1] != mean_law.p:
        raise ValueError(
            f"theta must have {mean_law.p} columns (the GP's descriptors), got shape {th.shape}"
        )
    if th.shape[0] < 1 or not np.isfinite(th).all():
        bad = np.flatnonzero(~np.isfinite(th).all(1)).tolist()
        raise ValueError(f"theta must have at least one row, all finite; got shape {th.shape}"
                         + (f", non-finite rows {bad[:10]}" if bad else ""))
    if th.shape[0] * n_inner < 2:
        raise ValueError(f"one outer draw needs n_inner >= 2 (the epistemic variance), got n_inner = {n_inner}")
    n_out, k = th.shape[0], mean_law.k
    draw_seeds = spawn_seeds(seed, n_out)
    Q = {name: np.full((n_out, n_inner), np.nan) for name in qois}
    mean_Q = {name: np.full(n_out, np.nan) for name in qois}
    failures: list[tuple[int, int, str]] = []
    solve_time = 0.0
    n_anch = 0
    for i in range(n_out):
        ti = th[i] if th.shape[1] else None
        law = mean_law.with_theta(ti) if ti is not None else mean_law
        solver = make_solver(law)
        # the posterior-mean run: its visited states anchor the function samples
        try:
            res = solver.solve(**kw)
        except OracleError as e:
            failures.extend((i, j, f"posterior-mean run failed: {e}") for j in range(n_inner))
            _report_draw(on_draw, i, th[i], mean_Q, Q, failures)
            continue
        for name, v in _qoi_values(qois, solver, res).items():
            mean_Q[name][i] = v
        H = np.concatenate([s.F.reshape(-1, k * k) for s in res.steps]) - np.eye(k).ravel()
        X = np.concatenate([H, np.broadcast_to(th[i], (H.shape[0], th.shape[1]))], axis=1)
        Z = farthest_points(torch.as_tensor(X), n_anchors)
        n_anch = int(Z.shape[0])
        sampler = GPFunctionSamples(gp, n_inner, Z, k=k, seed=draw_seeds[i])
        t0 = time.perf_counter()
        try:
            results = solver.solve_batch(
                lambda F, s=sampler, t=ti: s.batch_response(F, t), n_inner, **kw
            )
        except OracleError:
            results = []
            for j in range(n_inner):
                single = make_solver(sampler.member(j, ti))
                try:
                    results.append(single.solve(**kw))
                except OracleError as e:
                    results.append(None)
                    failures.append((i, j, f"{type(e).__name__}: {e}"))
        solve_time += time.perf_counter() - t0
        for j, r in enumerate(results):
            if r is None:
                continue
            for name, v in _qoi_values(qois, solver, r).items():
                Q[name][i, j] = v
        _report_draw(on_draw, i, th[i], mean_Q, Q, failures)
    for name, q in Q.items():
        if np.isfinite(q).sum() < 2:
            first = f"; first (outer {failures[0][0]}, inner {failures[0][1]}): {failures[0][2]}" if failures else ""
            raise ValueError(
                f"QoI {name!r}: {int(np.isfinite(q).sum())} of {q.size} runs gave a value, fewer than 2 "
                f"for any moment; {len(failures)} runs failed{first}"
            )
    splits = {name: total_variance_split(q) for name, q in Q.items()}
    return Propagation(
        theta=th,
        Q=Q,
        splits=splits,
        mean_Q=mean_Q,
        failures=failures,
        wall_time=time.perf_counter() - t_start,
        solve_time=solve_time,
        n_anchors=n_anch,
    )


def _report_draw(on_draw, i: int, theta: np.ndarray, mean_Q, Q, failures) -> None:
    """Outer draw ``i`` as :func:`propagate` gives it to ``on_draw`` (nothing without one)."""
    if on_draw is None:
        return
    on_draw({
        "outer": i,
        "theta": [float(v) for v in theta],
        "mean": {name: float(m[i]) for name, m in mean_Q.items()},
        "values": {name: [float(v) for v in q[i]] for name, q in Q.items()},
        "failures": [[j, why] for o, j, why in failures if o == i],
    })


def split_histogram(prop: Propagation, name: str, path, xlabel: str | None = None):
    """Histogram of a QoI with its two contributions; returns ``path``.

    Bars: all samples. Lines: the aleatory part (the inner means
    :math:`\\bar Q_i`) and the epistemic part (:math:`Q_{is} - \\bar Q_i` shifted
    to the overall mean), each as a step histogram on the same bins.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    Qm = prop.Q[name]
    ok = np.isfinite(Qm)
    sp = prop.splits[name]
    inner_mean = np.nanmean(Qm, axis=1, keepdims=True)
    epi = (Qm - inner_mean + sp.mean)[ok]
    ale = inner_mean[:, 0][np.isfinite(inner_mean[:, 0])]
    data = np.concatenate([Qm[ok], epi, ale])
    lo, hi = float(data.min()), float(data.max())
    scale = max(abs(lo), abs(hi), np.finfo(float).tiny)
    if hi - lo > 1e-9 * scale:
        bins = np.histogram_bin_edges(data, bins=30)
    else:  # one value to round-off (a prescribed displacement): 30 bins around it
        mid, half = 0.5 * (lo + hi), 1e-6 * scale
        bins = np.linspace(mid - half, mid + half, 31)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(Qm[ok], bins=bins, density=True, alpha=0.35, color="0.4", label="total")
    ax.hist(
        epi,
        bins=bins,
        density=True,
        histtype="step",
        lw=2,
        label=f"epistemic (var {sp.epistemic:.3g})",
    )
    if ale.size > 1:
        ax.hist(
            ale,
            bins=bins,
            density=True,
            histtype="step",
            lw=2,
            label=f"aleatory (var {max(sp.aleatory, 0.0):.3g})",
        )
    for p in (0.025, 0.975):
        if p in sp.quantiles:
            ax.axvline(sp.quantiles[p], color="k", ls=":", lw=1)
    ax.set_xlabel(xlabel or name)
    ax.set_ylabel("density")
    ax.set_title(f"{name}: {sp.n_outer} x {sp.n_inner} samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
