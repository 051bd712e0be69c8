"""Candidate generators: BoTorch acquisitions optimized with ``optimize_acqf``.

:func:`propose` returns ``q x D`` candidates (``D = d`` plus a trailing
fidelity column for multi-fidelity oracles) given the fitted model, the data
and the points still running (``X_pending``: they are conditioned on, so the
new points go elsewhere and no worker waits for the model).

* optimize: ``qLogNEI`` (constraints through the sample-space constraint
  callables), ``qLogNEHVI`` (multi-objective), ``qMFKG`` (multi-fidelity
  knowledge gradient weighted by each fidelity level's cost, through BoTorch's
  ``InverseCostWeightedUtility``),
  ``qMFMES`` (multi-fidelity max-value entropy search, cost weighted),
  ``qMFLogEI`` (the design by qLogNEI at the target level, the level by
  variance reduction per unit cost: :func:`mf_log_ei`); qMFKG and qMFMES
  condition on pending points with any model that
  has BoTorch's ``fantasize`` (:func:`mf_acquisition`), and weigh the level
  costs of :attr:`Problem.acquisition_costs` (the campaign may update them from
  measured costs);
* learn: ``qNIPV`` (integrated posterior variance over Sobol points) and
  ``max_variance`` (greedy maximum posterior variance given pending points,
  and for multi-fidelity the variance reduction at the target fidelity per
  unit cost);
* ``sobol``: the continuation of a scrambled Sobol sequence (the baseline).

With a multi-fidelity oracle, the acquisitions without a cost model
(``qLogNEI``, ``qLogNEHVI``, ``qNIPV``) choose the design at the target
fidelity: they are optimized over the ``d`` design inputs with the fidelity
column held at the target level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gpytorch
import torch
from botorch.acquisition import (
    AcquisitionFunction,
    FixedFeatureAcquisitionFunction,
    PosteriorMean,
    qLogNoisyExpectedImprovement,
)
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
from botorch.acquisition.logei import qLogProbabilityOfFeasibility
from botorch.acquisition.multi_objective.logei import qLogNoisyExpectedHypervolumeImprovement
from botorch.acquisition.multi_objective.objective import WeightedMCMultiOutputObjective
from botorch.acquisition.objective import LinearMCObjective, ScalarizedPosteriorTransform
from botorch.acquisition.utils import project_to_target_fidelity
from botorch.models.deterministic import DeterministicModel
from botorch.models.model import Model
from botorch.optim import optimize_acqf, optimize_acqf_mixed
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.transforms import t_batch_mode_transform
from torch import Tensor
from torch.quasirandom import SobolEngine

from loops.models import MAX_CHOLESKY
from surrogates.base import conditions_on_observations, variance_in_output_units

#: observations above which predictive covariances use LOVE (fast_pred_var)
FAST_PRED_N = 200


@dataclass
class Problem:
    """What the candidate generator needs to know about the campaign.

    Attributes:
        bounds: ``2 x d`` design bounds (no fidelity column).
        objective_idx: model outputs that are objectives.
        signs: ``+1`` to maximize, ``-1`` to minimize, per objective.
        constraints: ``(output index, lower, upper)`` triples.
        num_fidelities: levels of the oracle (1: single fidelity).
        target_fidelity: level the design is for.
        costs: cost per level (the oracle's cost model; what budgets count).
        output_scale: ``m`` typical output variances (weights of learn mode).
        ref_point: qLogNEHVI's reference, one value per objective in the
            output's own units (see :func:`hypervolume_reference`); None: inferred.
        level_costs: cost per level the cost-aware acquisitions weigh, when it
            differs from ``costs`` (e.g. updated from measured costs); None: ``costs``.
        levels: the levels an acquisition that chooses levels (qMFKG, qMFMES,
            qMFLogEI, multi-fidelity max_variance) may choose, e.g. those the
            remaining cost budget affords; None: every level.
    """

    bounds: Tensor
    objective_idx: list[int]
    signs: list[float]
    constraints: list[tuple[int, float | None, float | None]]
    num_fidelities: int = 1
    target_fidelity: int = 0
    costs: tuple[float, ...] = (1.0,)
    output_scale: Tensor | None = None
    ref_point: list[float] | None = None
    level_costs: tuple[float, ...] | None = None
    levels: tuple[int, ...] | None = None

    @property
    def d(self) -> int:
        return self.bounds.shape[-1]

    @property
    def multi_fidelity(self) -> bool:
        return self.num_fidelities > 1

    @property
    def acquisition_costs(self) -> tuple[float, ...]:
        """Cost per level weighed by the cost-aware acquisitions (``level_costs`` or ``costs``)."""
        return tuple(self.level_costs) if self.level_costs is not None else tuple(self.costs)

    @property
    def choosable_levels(self) -> tuple[int, ...]:
        """Levels a level-choosing acquisition may choose (:attr:`levels`, or every level)."""
        if self.levels is None:
            return tuple(range(self.num_fidelities))
        out = tuple(sorted({int(k) for k in self.levels}))
        if not out or out[0] < 0 or out[-1] >= self.num_fidelities:
            raise ValueError(f"Problem.levels = {self.levels!r}; expected a non-empty subset of the levels "
                             f"0..{self.num_fidelities - 1}")
        return out

    @property
    def model_bounds(self) -> Tensor:
        """``2 x D`` bounds including the fidelity column."""
        if not self.multi_fidelity:
            return self.bounds
        fb = torch.tensor([[0.0], [float(self.num_fidelities - 1)]], dtype=self.bounds.dtype)
        return torch.cat([self.bounds, fb], dim=-1)


class LevelCostModel(DeterministicModel):
    """Cost of a point from its fidelity level (last column), linear between levels.

    ``forward(X)``: ``batch x q x D -> batch x q x 1``.
    """

    def __init__(self, costs: tuple[float, ...]):
        super().__init__()
        self.register_buffer("costs", torch.tensor(costs, dtype=torch.float64))
        self._num_outputs = 1

    def forward(self, X: Tensor) -> Tensor:
        s = X[..., -1].clamp(0, len(self.costs) - 1)
        lo = s.floor().long().clamp(max=len(self.costs) - 1)
        hi = (lo + 1).clamp(max=len(self.costs) - 1)
        w = s - lo.to(s)
        return ((1 - w) * self.costs[lo] + w * self.costs[hi]).unsqueeze(-1)


def _constraint_callables(problem: Problem) -> list[Callable[[Tensor], Tensor]]:
    cons = []
    for j, lo, hi in problem.constraints:
        if hi is not None:
            cons.append(lambda Z, j=j, hi=hi: Z[..., j] - hi)
        if lo is not None:
            cons.append(lambda Z, j=j, lo=lo: lo - Z[..., j])
    return cons


#: BoTorch's default sigmoid temperature of a constraint (``eta``), in units of the constraint
#: output's spread: absolute, 1e-3 had made a constraint given in small units (spread 1e-3 or less)
#: a coin toss to the acquisition (feasibility 0.5 everywhere, infeasible proposals)
CONSTRAINT_ETA = 1e-3


def _constraint_eta(problem: Problem) -> Tensor | float:
    """Per constraint of :func:`_constraint_callables`, :data:`CONSTRAINT_ETA` times the
    constrained output's observed standard deviation (``Problem.output_scale``; the plain
    value where it is not known)."""
    if problem.output_scale is None:
        return CONSTRAINT_ETA
    sd = problem.output_scale.sqrt()
    etas = []
    for j, lo, hi in problem.constraints:
        etas += [CONSTRAINT_ETA * float(sd[j])] * ((hi is not None) + (lo is not None))
    return torch.tensor(etas, dtype=torch.float64) if etas else CONSTRAINT_ETA


def satisfies_constraints(problem: Problem, Y: Tensor) -> Tensor:
    """``n`` booleans: rows of ``Y`` (``n x m`` model outputs, observed or predicted) that satisfy
    every constraint of ``problem``."""
    ok = torch.ones(Y.shape[0], dtype=torch.bool)
    for j, lo, hi in problem.constraints:
        if lo is not None:
            ok &= Y[:, j] >= lo
        if hi is not None:
            ok &= Y[:, j] <= hi
    return ok


def hypervolume_reference(problem: Problem, train_Y: Tensor) -> Tensor:
    """qLogNEHVI's reference point in BoTorch's maximization sense (one value per objective).

    ``problem.ref_point`` is given in each objective output's own units: the
    worst acceptable value of each (an upper bound for a minimized output, a
    lower bound for a maximized one), as Ax's objective thresholds are; it is
    multiplied by the signs here. None: BoTorch's ``infer_reference_point``
    from the observed objectives ``train_Y[:, objective_idx]`` (``n x m``).
    """
    signs = torch.tensor(problem.signs, dtype=torch.float64)
    if problem.ref_point is not None:
        ref = torch.tensor(problem.ref_point, dtype=torch.float64) * signs
        obs = train_Y[:, problem.objective_idx] * signs
        if len(obs) and not bool((obs > ref).all(-1).any()):
            # the hypervolume is then zero wherever the model is sure, and the acquisition flat there
            import warnings

            warnings.warn(
                f"objective.ref_point = {list(problem.ref_point)}: no observation is better than it in every "
                "objective, so the hypervolume it bounds is still empty (it is the worst acceptable value of each "
                "output: an upper bound for a minimized one, a lower bound for a maximized one)", UserWarning,
                stacklevel=2)
        return ref
    return infer_reference_point(train_Y[:, problem.objective_idx] * signs)


def _weights(problem: Problem, m: int) -> Tensor:
    w = torch.zeros(m, dtype=torch.float64)
    for j, s in zip(problem.objective_idx, problem.signs, strict=True):
        w[j] = s
    return w


#: jitter of MaxVariance's solves, relative to the mean diagonal of the
#: matrix solved (so a repeated pending point adds a reduction of order 1e-8
#: of the first one's, in any output units) ...
JITTER = 1e-8
#: ... plus this fraction of the output's typical variance
#: (:attr:`Problem.output_scale`): the round-off of posterior covariances that
#: are far below the prior's
JITTER_FLOOR = 1e-14


class MaxVariance(AcquisitionFunction):
    """Posterior variance at ``x`` given that the pending points will be observed.

    For a GP the variance after observing ``P`` does not depend on the values
    observed, so it is the Schur complement of the joint posterior covariance
    of ``[P, x]`` (plus the observation noise on ``P``). With ``target`` set,
    the candidate carries a fidelity column and the utility is the reduction
    of the variance at ``(x, target)`` per unit cost of observing ``(x, level)``.
    Outputs are summed with ``weights`` (``m``); ``noise``: ``m`` observation
    noise variances of the pending points; the solves add ``JITTER`` times
    the mean of their diagonal plus ``JITTER_FLOOR`` times ``scale`` (``m``
    typical output variances, :attr:`Problem.output_scale`; default 1) to
    their diagonal, so the choice does not depend on the output units.
    """

    def __init__(self, model: Model, weights: Tensor, noise: Tensor, X_pending: Tensor | None = None,
                 target: int | None = None, cost_model: LevelCostModel | None = None,
                 scale: Tensor | None = None):
        super().__init__(model)
        self.register_buffer("w", weights)
        self.register_buffer("noise", noise)
        scale = torch.ones_like(noise) if scale is None else scale.to(noise)
        self.register_buffer("floor", JITTER_FLOOR * scale.reshape(-1, 1, 1))  # m x 1 x 1
        self.target = target
        self.cost_model = cost_model
        self.set_X_pending(X_pending)

    def _cond_var(self, Xj: Tensor, n_pend: int, extra_noise: Tensor) -> Tensor:
        """``b x m`` variance of the last point(s) given observations of the first ``n_pend + extra``."""
        post = self.model.posterior(Xj)
        cov = post.distribution.covariance_matrix if self.model.num_outputs == 1 else None
        if cov is None:
            # multi-output: b x (n m) x (n m) interleaved -> per output blocks
            mvn = post.distribution
            full = mvn.covariance_matrix
            n = Xj.shape[-2]
            m = self.model.num_outputs
            full = full.reshape(*full.shape[:-2], n, m, n, m)
            cov = torch.stack([full[..., :, k, :, k] for k in range(m)], dim=-3)  # b x m x n x n
        else:
            cov = cov.unsqueeze(-3)  # b x 1 x n x n
        return cov, extra_noise

    def _observed(self, C: Tensor) -> Tensor:
        """Covariance of observations of points with latent covariance ``C``
        (``b x m x n x n``): plus the noise and the jitter (:data:`JITTER`,
        :data:`JITTER_FLOOR`) on the diagonal."""
        eye = torch.eye(C.shape[-1], dtype=C.dtype)
        K = C + self.noise.view(-1, 1, 1) * eye
        eps = JITTER * K.diagonal(dim1=-2, dim2=-1).mean(-1, keepdim=True).detach().unsqueeze(-1) + self.floor
        return K + eps * eye

    @t_batch_mode_transform(expected_q=1)
    def forward(self, X: Tensor) -> Tensor:
        b = X.shape[0]
        if self.target is None:
            P = self.X_pending
            parts = [X] if P is None else [P.expand(b, *P.shape), X]
            Xj = torch.cat(parts, dim=-2)
            cov, _ = self._cond_var(Xj, 0, None)
            nP = Xj.shape[-2] - 1
            v = cov[..., -1, -1]
            if nP > 0:
                K = self._observed(cov[..., :nP, :nP])
                k = cov[..., :nP, -1:]
                v = v - (k.transpose(-1, -2) @ torch.linalg.solve(K, k)).squeeze(-1).squeeze(-1)
            return (v.clamp_min(0) * self.w).sum(-1)
        # multi-fidelity: reduction of variance at (x, target) by observing (x, level) (+ pending)
        xt = X.clone()
        xt[..., -1] = float(self.target)
        P = self.X_pending
        parts = ([] if P is None else [P.expand(b, *P.shape)]) + [X, xt]
        Xj = torch.cat(parts, dim=-2)
        cov, _ = self._cond_var(Xj, 0, None)
        n_obs = Xj.shape[-2] - 1
        K = self._observed(cov[..., :n_obs, :n_obs])
        k = cov[..., :n_obs, -1:]
        red_all = (k.transpose(-1, -2) @ torch.linalg.solve(K, k)).squeeze(-1).squeeze(-1)
        if n_obs > 1:
            Kp, kp = K[..., :-1, :-1], k[..., :-1, :]
            red_pend = (kp.transpose(-1, -2) @ torch.linalg.solve(Kp, kp)).squeeze(-1).squeeze(-1)
        else:
            red_pend = torch.zeros_like(red_all)
        gain = ((red_all - red_pend).clamp_min(0) * self.w).sum(-1)
        cost = self.cost_model(X).reshape(b)
        return gain / cost


#: qLogNEI baseline: at most this many observed points (those with the best posterior means)
MAX_BASELINE = 128


def _top_baseline(model: Model, train_X: Tensor, w: Tensor, problem: Problem) -> Tensor:
    """The observed points that can be the incumbent, ``k x D`` with ``k <= MAX_BASELINE``.

    qLogNEI's ``prune_baseline`` samples the joint posterior at every observed
    point (a dense ``n x n`` covariance and its Cholesky factor: ~3 s of CPU at
    1000 points) to drop the points that are never the best in any sample.
    A point whose posterior mean is outside the best ``MAX_BASELINE`` is never
    the best in practice, so the ranking by posterior mean (``O(n^2)`` with the
    cached solve) comes first and the sampled pruning sees at most
    ``MAX_BASELINE`` points. With outcome constraints the full set is kept (an
    infeasible point can have the best objective mean).
    """
    n = train_X.shape[0]
    if n <= MAX_BASELINE or problem.constraints or problem.multi_fidelity:
        return train_X
    with torch.no_grad():
        mean = model.posterior(train_X).mean @ w.to(train_X)
    return train_X[mean.topk(MAX_BASELINE).indices]


def _log_nei(model: Model, problem: Problem, train_X: Tensor, m: int, X_pending: Tensor | None) -> AcquisitionFunction:
    """BoTorch's qLogNEI of the (signed, weighted) objective with the problem's constraints.

    Multi-fidelity: the candidates are at the target level, and so are the
    incumbents: the observed designs (``train_X``, ``n x D``) and the pending
    ones, projected to the target level. A campaign's answer is the
    maximizer of the posterior mean at the target level
    (:meth:`loops.engine.Campaign.best`), which need not have been evaluated
    there, so every observed design is a candidate answer with its
    target-level value as the model knows it. A pending point at a lower level
    is counted as if its design will be known at the target (conservative: it
    keeps new points away); a lower level's value is never taken as the
    target level's.
    """
    w = _weights(problem, m)
    if problem.multi_fidelity:
        d, T = problem.d, problem.target_fidelity
        X_base = torch.unique(_with_level(train_X[:, :d], T), dim=0)
        if X_pending is not None and len(X_pending):
            X_pending = torch.unique(_with_level(X_pending[:, :d], T), dim=0)
    else:
        X_base = _top_baseline(model, train_X, w, problem)
    return qLogNoisyExpectedImprovement(
        model, X_baseline=X_base, objective=LinearMCObjective(w),
        constraints=_constraint_callables(problem) or None, X_pending=X_pending, prune_baseline=True,
        cache_root=not problem.multi_fidelity, eta=_constraint_eta(problem),
    )


def sobol_points(bounds: Tensor, n: int, seed: int, skip: int = 0) -> Tensor:
    """Points ``skip .. skip + n`` of a scrambled Sobol sequence, ``n x d`` in ``bounds``."""
    d = bounds.shape[-1]
    if n == 0:  # torch's engine refuses to draw 0 points
        return bounds.new_empty(0, d)
    eng = SobolEngine(d, scramble=True, seed=seed)
    if skip:
        eng.fast_forward(skip)
    u = eng.draw(n, dtype=torch.float64)
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _at_target(acqf, problem: Problem) -> AcquisitionFunction:
    """``acqf`` over the ``d`` design inputs, the fidelity column held at the target level."""
    return FixedFeatureAcquisitionFunction(acqf, problem.d + 1, [problem.d], [float(problem.target_fidelity)])


def _optimize_at_target(acqf, problem: Problem, q: int, cfg, sequential: bool = False) -> Tensor:
    """``q x D`` candidates at the target fidelity: optimize over the ``d`` design bounds, then append the level."""
    cand, _ = optimize_acqf(
        _at_target(acqf, problem), bounds=problem.bounds, q=q, num_restarts=cfg.num_restarts,
        raw_samples=cfg.raw_samples, options={"batch_limit": 8, "maxiter": cfg.maxiter}, sequential=sequential,
    )
    cand = cand.detach()
    return torch.cat([cand, torch.full((q, 1), float(problem.target_fidelity), dtype=cand.dtype)], -1)


def _optimize(acqf, problem: Problem, q: int, cfg, fixed_levels: bool, sequential: bool = False) -> Tensor:
    if problem.multi_fidelity and not fixed_levels:
        # acquisitions without a cost model choose the design at the target fidelity
        return _optimize_at_target(acqf, problem, q, cfg, sequential=sequential)
    opts = {"batch_limit": 8, "maxiter": cfg.maxiter}
    if fixed_levels and problem.multi_fidelity:
        fl = [{problem.d: float(k)} for k in problem.choosable_levels]
        cand, _ = optimize_acqf_mixed(
            acqf, bounds=problem.model_bounds, q=q, num_restarts=cfg.num_restarts,
            raw_samples=cfg.raw_samples, fixed_features_list=fl, options=opts,
        )
        return cand.detach()
    cand, _ = optimize_acqf(
        acqf, bounds=problem.bounds, q=q,
        num_restarts=cfg.num_restarts, raw_samples=cfg.raw_samples, options=opts, sequential=sequential,
    )
    return cand.detach()


def propose(
    name: str,
    model: Model | None,
    problem: Problem,
    train_X: Tensor,
    train_Y: Tensor,
    q: int,
    cfg,
    X_pending: Tensor | None = None,
    noise: Tensor | None = None,
    seed: int = 0,
    sobol_skip: int = 0,
) -> Tensor:
    """Next ``q x D`` points to evaluate.

    Args:
        name: acquisition name (config ``acquisition.name``).
        model: fitted model over ``D`` columns (None for ``sobol``).
        problem: bounds, objectives, constraints, fidelities.
        train_X: ``n x D`` observed inputs; train_Y: ``n x m`` outputs.
        q: number of points.
        cfg: the ``acquisition`` config table.
        X_pending: ``p x D`` points being evaluated.
        noise: ``m`` observation noise variances (for ``max_variance``).
        seed: seeds the optimizer's random restarts and MC samplers.
        sobol_skip: how many Sobol points the campaign has used.
    """
    torch.manual_seed(seed)
    # LOVE predictive covariances above FAST_PRED_N points: much cheaper acquisition on
    # large data sets, same candidates (experiments/benchmarks/campaigns.py measures it)
    fast = train_X.shape[0] > FAST_PRED_N
    # variances as the model says them, also for outputs in small units (GPyTorch
    # would round every variance below 1e-10 up to it: qNIPV and MES read them)
    with gpytorch.settings.max_cholesky_size(MAX_CHOLESKY), gpytorch.settings.fast_pred_var(fast), \
            variance_in_output_units():
        return _propose(name, model, problem, train_X, train_Y, q, cfg, X_pending, noise, seed, sobol_skip)


def _propose(name, model, problem, train_X, train_Y, q, cfg, X_pending, noise, seed, sobol_skip):
    if name == "sobol":
        X = sobol_points(problem.bounds, q, seed=problem_seed(seed), skip=sobol_skip)
        if problem.multi_fidelity:
            # the target level, or (a fallback for a level-choosing acquisition that can
            # no longer afford the target) the highest level it may choose
            levels = problem.choosable_levels
            lev = problem.target_fidelity if problem.target_fidelity in levels else levels[-1]
            X = torch.cat([X, torch.full((q, 1), float(lev), dtype=X.dtype)], -1)
        return X
    assert model is not None
    m = train_Y.shape[-1]
    if name == "qLogNEI":
        if problem.constraints and not problem.multi_fidelity and not bool(satisfies_constraints(problem, train_Y).any()):
            # no observed point is feasible yet: qLogNEI's incumbent is then an infeasible one and its
            # improvement pulls away from the feasible region; seek feasibility first (the usual
            # fallback of constrained BO), by the models' probability that all constraints hold
            acqf = qLogProbabilityOfFeasibility(model, constraints=_constraint_callables(problem),
                                                X_pending=X_pending, eta=_constraint_eta(problem))
            return _optimize(acqf, problem, q, cfg, fixed_levels=False)
        return _optimize(_log_nei(model, problem, train_X, m, X_pending), problem, q, cfg, fixed_levels=False)
    if name == "qLogNEHVI":
        idx = problem.objective_idx
        signs = torch.tensor(problem.signs, dtype=torch.float64)
        obj = WeightedMCMultiOutputObjective(weights=signs, outcomes=idx, num_outcomes=m)
        ref = hypervolume_reference(problem, train_Y)
        acqf = qLogNoisyExpectedHypervolumeImprovement(
            model, ref_point=ref, X_baseline=train_X, objective=obj,
            constraints=_constraint_callables(problem) or None, X_pending=X_pending, prune_baseline=True,
            cache_root=False, eta=_constraint_eta(problem),
        )
        return _optimize(acqf, problem, q, cfg, fixed_levels=False, sequential=q > 1)
    if name == "qMFLogEI":
        return mf_log_ei(model, problem, train_X, m, q, cfg, X_pending, noise)
    if name in ("qMFKG", "qMFMES"):
        # one point at a time (qMFMES takes q = 1 only): each next point's acquisition
        # is conditioned on the points chosen before it, as pending points (sequential greedy)
        out, pending = [], X_pending
        for _ in range(q):
            acqf = mf_acquisition(name, model, problem, m, cfg, X_pending=pending, seed=seed)
            out.append(_optimize(acqf, problem, 1, cfg, fixed_levels=True))
            pending = out[-1] if pending is None else torch.cat([pending, out[-1]], -2)
        return torch.cat(out, -2)
    weights = _learn_weights(problem, m)
    if name == "qNIPV":
        mc = sobol_points(problem.bounds, cfg.mc_points, seed=seed + 7)
        if problem.multi_fidelity:
            mc = torch.cat([mc, torch.full((mc.shape[0], 1), float(problem.target_fidelity), dtype=mc.dtype)], -1)
        acqf = qNegIntegratedPosteriorVariance(
            model, mc_points=mc, X_pending=X_pending,
            # outputs weighed by 1 / their variance, so that the integrated variance is
            # O(1) in any units (L-BFGS-B's tolerances are absolute for values below 1)
            posterior_transform=ScalarizedPosteriorTransform(weights=weights.sqrt()),
        )
        # qNIPV's fantasy model is built outside BoTorch's propagate_grads, and GPyTorch then
        # detaches its covariance cache from the candidates: with the LOVE variances used above
        # FAST_PRED_N points the value is right and its gradient is not (-0.068 against a
        # finite difference's -0.024 on a SingleTaskGP), and L-BFGS-B follows the gradient
        with gpytorch.settings.detach_test_caches(False):
            return _optimize(acqf, problem, q, cfg, fixed_levels=False)
    if name == "max_variance":
        noise = noise if noise is not None else torch.zeros(m, dtype=torch.float64)
        chosen: list[Tensor] = []
        for _ in range(q):
            pend = [X_pending] if X_pending is not None else []
            P = torch.cat(pend + chosen, dim=-2) if (pend or chosen) else None
            if problem.multi_fidelity:
                acqf = MaxVariance(model, weights, noise, P, target=problem.target_fidelity,
                                   cost_model=LevelCostModel(problem.acquisition_costs), scale=problem.output_scale)
                c = _optimize(acqf, problem, 1, cfg, fixed_levels=True)
            else:
                acqf = MaxVariance(model, weights, noise, P, scale=problem.output_scale)
                c = _optimize(acqf, problem, 1, cfg, fixed_levels=False)
            chosen.append(c.reshape(1, -1))
        return torch.cat(chosen, dim=-2)
    raise ValueError(f"acquisition.name = {name!r} is not known")


def supports_pending(model: Model) -> bool:
    """Whether ``model`` can be conditioned on pending points (it has BoTorch's ``fantasize``
    and :func:`~surrogates.base.conditions_on_observations`)."""
    return callable(getattr(model, "fantasize", None)) and conditions_on_observations(model)


def _with_level(X: Tensor, level: int) -> Tensor:
    """``n x d`` design points with a fidelity column at ``level`` (``n x (d + 1)``)."""
    return torch.cat([X, torch.full((X.shape[0], 1), float(level), dtype=X.dtype)], -1)


def value_given_pending(model: Model, X_pending: Tensor, problem: Problem, weights: Tensor, x_best: Tensor,
                        num_fantasies: int, seed: int, n_set: int = 256) -> Tensor:
    """``E[max_x mu(x, target) | pending observed]``: the incumbent value once the pending points return.

    The pending points ``p x D`` are fantasized (``num_fantasies`` joint
    posterior samples) and the maximum of the fantasy models' (signed,
    weighted) posterior mean at the target level is taken over a set of
    ``n_set`` scrambled Sobol points, the current maximizer ``x_best`` (``d``)
    and the pending points' inputs. The knowledge gradient of a candidate given
    pending points is then its expected gain over this value, not over the
    value before the pending points, so the gain the pending points bring is
    not credited to the candidate. A scalar.
    """
    from botorch.sampling.normal import SobolQMCNormalSampler

    cand = torch.cat([sobol_points(problem.bounds, n_set, seed=seed + 13), x_best.reshape(1, -1),
                      X_pending[:, : problem.d]])
    cand = _with_level(cand, problem.target_fidelity)
    sampler = SobolQMCNormalSampler(sample_shape=torch.Size([num_fantasies]), seed=seed + 17)
    with torch.no_grad():
        fm = model.fantasize(X_pending, sampler=sampler)
        mean = fm.posterior(cand).mean @ weights.to(cand)  # num_fantasies x n_set
    return mean.max(dim=-1).values.mean()


def mf_acquisition(name: str, model: Model, problem: Problem, m: int, cfg, X_pending: Tensor | None = None,
                   seed: int = 0) -> AcquisitionFunction:
    """A cost-aware multi-fidelity acquisition (``qMFKG`` or ``qMFMES``) over ``D = d + 1`` columns.

    Both weigh the value of observing ``(x, level)`` by the level's cost
    (:attr:`Problem.acquisition_costs`, linear between levels) through BoTorch's
    ``InverseCostWeightedUtility``, and project to the target fidelity, as
    BoTorch's multi-fidelity tutorials do. That utility divides a positive gain
    by the cost and multiplies a negative one by it, per fantasy before their
    mean (BoTorch discussion #2914), so where fantasies disagree an expensive
    level's value falls faster than the inverse of its cost.
    Pending points ``X_pending`` (``p x D``) are conditioned on through the
    model's ``fantasize``: qMFMES fantasizes them into its model; qMFKG
    evaluates each candidate jointly with them (BoTorch charges the cost of the
    candidate only) and measures its gain from the value expected once they
    are observed (:func:`value_given_pending`), so the gain the pending points
    bring is not credited to the candidate.

    Raises:
        ValueError: the oracle has one fidelity; qMFMES with several modeled
            outputs; qMFKG with a model that has no ``fantasize``.
    """
    if not problem.multi_fidelity:
        raise ValueError(f"acquisition.name = {name!r} needs an oracle with several fidelities")
    D = problem.d + 1
    target = {problem.d: float(problem.target_fidelity)}

    def project(X: Tensor) -> Tensor:
        return project_to_target_fidelity(X=X, target_fidelities=target, d=D)

    cost_model = LevelCostModel(problem.acquisition_costs)
    pending = X_pending if X_pending is not None and len(X_pending) and supports_pending(model) else None
    if name == "qMFKG":
        if not supports_pending(model):
            raise ValueError(f"acquisition.name = 'qMFKG' needs a model with fantasize(); {type(model).__name__} "
                             "has none (use 'qMFMES' or a model with fantasize, e.g. model.name = 'mf_gp')")
        w = _weights(problem, m)
        post_tf = ScalarizedPosteriorTransform(weights=w)
        cur = _at_target(PosteriorMean(model, posterior_transform=post_tf), problem)
        x_best, current_value = optimize_acqf(
            cur, bounds=problem.bounds, q=1, num_restarts=cfg.num_restarts, raw_samples=cfg.raw_samples,
            options={"batch_limit": 8, "maxiter": cfg.maxiter},
        )
        current_value = current_value.detach()
        if pending is not None:
            current_value = torch.maximum(current_value, value_given_pending(
                model, pending, problem, w, x_best.detach().reshape(-1), cfg.num_fantasies, seed))
        return qMultiFidelityKnowledgeGradient(
            model, num_fantasies=cfg.num_fantasies, current_value=current_value,
            cost_aware_utility=InverseCostWeightedUtility(cost_model=cost_model),
            project=project, posterior_transform=post_tf, X_pending=pending,
        )
    if name == "qMFMES":
        from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy

        if m != 1 or len(problem.objective_idx) != 1:
            raise ValueError("qMFMES needs one modeled output (set outputs = [objective])")
        cs = _with_level(sobol_points(problem.bounds, 512, seed=seed + 11), problem.target_fidelity)
        return qMultiFidelityMaxValueEntropy(
            model, candidate_set=cs, num_fantasies=cfg.num_fantasies, maximize=problem.signs[0] > 0,
            cost_aware_utility=InverseCostWeightedUtility(cost_model=cost_model), project=project,
            X_pending=pending,
        )
    raise ValueError(f"mf_acquisition: {name!r} is not 'qMFKG' or 'qMFMES'")


def mf_log_ei(model: Model, problem: Problem, train_X: Tensor, m: int, q: int, cfg,
              X_pending: Tensor | None = None, noise: Tensor | None = None) -> Tensor:
    """``q x D`` points by two-stage multi-fidelity expected improvement (``qMFLogEI``).

    Stage 1 chooses the design ``x`` as the single-fidelity campaign does:
    BoTorch's qLogNEI of the target level (:func:`_log_nei`: incumbents and
    pending points projected to the target level). Stage 2 chooses the level
    to observe at ``x``: the one that removes the most posterior variance of
    the target level at ``x`` per unit cost
    (:class:`MaxVariance` with ``target``: exact for a GP, given the pending
    points), with the level costs of :attr:`Problem.acquisition_costs`. A
    noise-free target observation removes all of that variance, so a lower
    level is chosen when it explains more than its cost ratio of it.
    ``x`` chosen by improvement and the level by information per cost is the
    structure of MF-GP-UCB and BOCA (Kandasamy et al., NeurIPS 2016 and ICML
    2017) with expected improvement in place of the UCB; the level rule is
    parameter-free. The level is chosen among :attr:`Problem.choosable_levels`.
    For ``q > 1`` the points are chosen one at a time, each
    with the ones before it as pending (sequential greedy).

    Args:
        model: fitted multi-fidelity model over ``D = d + 1`` columns.
        train_X: ``n x D`` observed inputs (last column: level).
        m: modeled outputs; q: points to return.
        X_pending: ``p x D`` points being evaluated.
        noise: ``m`` observation noise variances (original units).
    """
    if not problem.multi_fidelity:
        raise ValueError("acquisition.name = 'qMFLogEI' needs an oracle with several fidelities")
    d = problem.d
    out: list[Tensor] = []
    pending = X_pending if X_pending is not None and len(X_pending) else None
    for _ in range(q):
        acqf = _log_nei(model, problem, train_X, m, pending)
        x = _optimize_at_target(acqf, problem, 1, cfg)  # 1 x D at the target level
        gains = level_gains(model, x[0, :d], problem, m, noise, pending)
        allowed = torch.tensor(problem.choosable_levels)
        x[:, -1] = float(int(allowed[gains[allowed].argmax()]))
        out.append(x)
        pending = x if pending is None else torch.cat([pending, x], -2)
    return torch.cat(out, -2)


def level_gains(model: Model, x: Tensor, problem: Problem, m: int, noise: Tensor | None = None,
                X_pending: Tensor | None = None) -> Tensor:
    """Variance of the target level at ``x`` removed per unit cost by observing each level at ``x``.

    For level ``l``: ``(Var[f_T(x) | P] - Var[f_T(x) | P, y_l(x)]) / c_l``, with
    ``P`` the pending points ``p x D`` (observed with noise ``noise``, ``m``
    variances in original units), ``c_l`` the level costs of
    :attr:`Problem.acquisition_costs`, and the variance summed over the
    objective outputs. ``x``: ``d`` design inputs. Returns ``L`` gains.
    """
    noise = noise if noise is not None else torch.zeros(m, dtype=torch.float64)
    var_w = (_weights(problem, m) != 0).to(torch.float64)
    levels = torch.cat([_with_level(x.reshape(1, -1), k) for k in range(problem.num_fidelities)])
    per_cost = MaxVariance(model, var_w, noise, X_pending, target=problem.target_fidelity,
                           cost_model=LevelCostModel(problem.acquisition_costs), scale=problem.output_scale)
    with torch.no_grad():
        return per_cost(levels.unsqueeze(-2))


def _learn_weights(problem: Problem, m: int) -> Tensor:
    """Weights making the outputs' variances comparable (1 / typical variance)."""
    if problem.output_scale is None:
        return torch.ones(m, dtype=torch.float64) / m
    return 1.0 / problem.output_scale.clamp_min(1e-300) / m


def problem_seed(seed: int) -> int:
    """The Sobol seed of a campaign (shared by initial design and the baseline)."""
    return int(seed) % (2**31)
