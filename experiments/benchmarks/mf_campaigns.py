"""Multi-fidelity campaigns against single-fidelity ones: regret against cumulative cost.

    python experiments/benchmarks/mf_campaigns.py --seeds 10
    python experiments/benchmarks/mf_campaigns.py --problems forrester --seeds 2 --out /tmp/a.json

Writes ``experiments/benchmarks/results/mf_campaigns.json`` after every
(problem, seed), so a run that is stopped leaves what it finished.

Problems (``PROBLEMS``, all minimized, noise-free): eight literature functions
of the multi-fidelity surrogate benchmark (:mod:`oracles.analytic.mf_problems`;
two levels at cost ratios 1:10 and 1:100, three levels at 1:10:100) and two
physics problems, both the inverse design of experiment (c) (the inclusion
radius of a 2D disc-inclusion RVE whose effective ``C1111`` equals a target,
``misfit = (C1111 - target)^2``): ``rve_two_grid``, the FFT RVE on a coarse
(9^2) and a fine (31^2) grid (cost = voxels), and ``mt_rve``, the Mori–Tanaka
estimate (cylindrical inclusions, plane strain) below the fine FFT RVE at cost
1:100. The optimum of each problem is found once by a dense search of the top
level (Sobol points polished by L-BFGS-B; a grid for the piecewise
constant voxelized RVE: 201 points).

Budgets are in top-level evaluations (cost / cost of the top level). Methods,
in the same run and with the same seeds:

* ``ours_mf``: :class:`loops.engine.Campaign` driven by ask/tell, model
  ``ar1`` (AR1 co-kriging; ``mf_gp`` until the top level has 3 results) fitted
  on the objective as observed (the engine does not winsorize multi-fidelity data),
  acquisition ``qMFLogEI`` (the design by qLogNEI at the top
  level, the level by variance removed per unit of the oracle's level costs),
  an initial design of ``d + 2`` points (centre + Sobol) at every level below
  the top; stops at the cost budget or after ``CALL_CAP["ours_mf"] x budget``
  calls. Its answer at a cost is the recommendation (the maximizer of the
  posterior mean at the top level) of the model fitted on the data paid for so
  far.
* ``ours_sf``: the engine's default single-fidelity campaign (qLogNEI) on the
  top level alone, ``d + 2`` initial points.
* ``ax_sf``: Ax's default generation strategy (Client API), the same
  initialization budget, on the top level.
* ``botorch_mfkg``: BoTorch's multi-fidelity knowledge gradient as in its
  discrete-fidelity tutorial, written with BoTorch directly:
  ``SingleTaskMultiFidelityGP`` on the unit cube with the fidelity in
  ``[0, 1]``, ``qMultiFidelityKnowledgeGradient`` with an
  ``InverseCostWeightedUtility`` of the level costs, ``optimize_acqf_mixed``
  over the levels, the recommendation by ``PosteriorMean`` at fidelity 1; the
  same initial design and stopping as ``ours_mf``. ``KG_FANTASIES`` fantasies
  and ``RESTARTS``/``RAW_SAMPLES`` (the tutorial's 128 fantasies, 10 restarts
  and 512 raw samples cost more than this benchmark's compute allows).
* ``sobol_sf``: scrambled Sobol points at the top level.

The answer of a single-fidelity method at a cost is its best observation. The
simple regret of an answer is its true top-level value minus the optimum.

Reported per problem: median regret over seeds at fractions of the budget;
the cost each method needs to reach Ax's final result (the median over seeds
of ``ax_sf``'s regret at the full budget), per seed the first cumulative cost
at which the method's answer is at least as good, median over seeds (``inf``
when it does not get there in at least half of them: the median of 10 is then
``inf``). A multi-fidelity method's answer is computed at every
``CHECKPOINTS`` fraction of the budget (the reported ``FRACTIONS`` among them),
so its answer at a fraction is the one bought with that cost.

Targets (issue 18), computed on the held-out ``test`` problems and on all:
``ours_mf`` reaches Ax's final single-fidelity result at <= 0.5x Ax's cost
(the budget) on at least two thirds of the problems; and ``ours_mf``'s median
regret is never above 1.1x ``ours_sf``'s at equal cost (at every cost fraction
where ``ours_sf`` has an answer).

Split: the choice of ``ours_mf`` (model and acquisition) may only use the
``dev`` problems; the ``test`` problems are reported as they come out.

Learn mode (``--learn``, written to ``mf_campaigns_learn.json``; report only,
no target and no default chosen on it): on ``LEARN_PROBLEMS``, the top
level's nRMSE (posterior mean on ``N_TEST`` Sobol points over their standard
deviation) against cumulative cost, for ``ours_mf`` in learn mode
(``max_variance``: the design and level that remove the most top-level
variance per unit cost), ``ours_sf`` (``qNIPV`` on the top level) and Sobol
points at the top level; see :func:`run_learn`.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from oracles.base import DTYPE, CostModel, Oracle, PointResult  # noqa: E402

OUT = ROOT / "experiments" / "benchmarks" / "results" / "mf_campaigns.json"
METHODS = ("ours_mf", "ours_sf", "ax_sf", "botorch_mfkg", "sobol_sf")
#: multi-fidelity methods stop after this many calls per budget unit (cheap levels are cheap; the
#: cap bounds the benchmark's run time). ours_mf: 10, set on the dev problem park_1to100 (1:100), where
#: at 10 the campaign spends most of its budget (13.5 of 16 units, seed 0) while at 2 it stopped at a
#: median 0.8 of 16; botorch_mfkg keeps 2 (its knowledge-gradient steps take 2-10 s each)
CALL_CAP = {"ours_mf": 10, "botorch_mfkg": 2}
CALL_CAP_RULE = ("calls <= cap x budget (in top-level evaluations); ours_mf's cap set on the dev problem "
                 "park_1to100 so that the campaign can spend its cost budget; botorch_mfkg capped for run time, "
                 "so it stops well short of its budget (see spent_median)")
#: cost fractions of the budget at which regrets are reported
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
KG_FANTASIES = 4
RESTARTS = 1
RAW_SAMPLES = 32
MAXITER = 50
#: the multi-fidelity methods' answers (recommendations) are computed at these fractions of the budget
CHECKPOINTS = tuple(sorted({k / 10 for k in range(1, 11)} | set(FRACTIONS)))
#: settings of ours_mf's acquisition optimizer (the engine's defaults otherwise)
OURS_MF_ACQ = {"name": "qMFLogEI", "num_restarts": RESTARTS, "raw_samples": RAW_SAMPLES, "maxiter": MAXITER}
OURS_MF_MODEL = "ar1"
#: when the choice of ours_mf (OURS_MF_ACQ, OURS_MF_MODEL) was last changed, and on what
DEFAULTS = {"fixed": "2026-12-06T18:02Z",
            "how": "qMFLogEI replaced qMFMES after 10 seeds on the two dev problems only: median regret at "
                   "every cost fraction <= qMFMES's (forrester 0.0081 vs 0.197 at half the budget, "
                   "7.4e-5 vs 1.5e-4 at the end; park_1to100 0 for both) in less run time (mean per run "
                   "11 vs 15 s, 19 vs 122 s); rule fixed before the test runs: adopt if no worse than qMFMES "
                   "at any dev fraction. The change was prompted by qMFMES's test-split misses (branin3), "
                   "which is said here; the test problems were not used to choose. Confirmed when the dev split grew to 4 problems (rosenbrock2, "
                   "rastrigin2), by a rule written before their results: dev problems meeting both targets "
                   "2 (qMFLogEI) vs 1 (qMFMES), then median wins by >10 % 9 vs 2. Model ar1 (AR1 co-kriging, "
                   "with model.bootstrap = mf_gp until the top level has 3 results) replaced mf_gp "
                   "(2026-12-05T11:13Z) by a rule written before its dev runs: dev problems meeting both "
                   "targets 2 vs 2, then (problem, fraction) median wins by >10 % 6 vs 2 (forrester at half "
                   "the budget 2.7e-5 vs 0.0081; rastrigin2 final 0.0015 vs 0.017; rosenbrock2 final 2.5 vs "
                   "1.4 and no longer reaching Ax's final result). The engine stopped winsorizing the objective "
                   "with a multi-fidelity oracle (model.winsorize None; before: one Tukey fence over all levels "
                   "pooled) (2026-12-06T04:24Z), by a rule written before its dev runs (the rule that chose ar1; "
                   "candidates: pooled, each level at its own fence, none; all three re-run on the 4 dev problems "
                   "in one session): dev problems meeting both targets 3 (none) vs 2 (pooled) vs 2 (per level); "
                   "(problem, fraction) median wins by >10 % against pooled 8 vs 3 (per level 6 vs 4). "
                   "Rosenbrock2's recommendation had jumped to box corners (regret up to 1.9e3) when a cheap "
                   "level's large values were clipped and the top level's were not. AR1CoKriging's default "
                   "restarts 1 -> 3 (2026-12-06T18:02Z), by the same rule written before its dev runs "
                   "(2026-12-06T15:49Z): dev problems meeting both targets 2 vs 2, (problem, fraction) median "
                   "wins by >10 % 3 vs 2 (forrester at half the budget 3.2e-5 vs 5.6e-5; rosenbrock2 final "
                   "0.0015 vs 0.0037; losses rosenbrock2 at half the budget 0.95 vs 0.49, rastrigin2 final "
                   "0.037 vs 0.023), a thin margin, said here"}

PHASES = [{"law": "isotropic_elastic", "E": 1.0, "nu": 0.3}, {"law": "isotropic_elastic", "E": 20.0, "nu": 0.25}]
RVE_SPEC = {"phases": PHASES, "microstructure": {"kind": "inclusion", "radius_fraction": 0.2},
            "micro_params": {"radius_fraction": [0.05, 0.45]}, "target": 2.0}


def _p(fn=None, budget=10, split="test", costs=None, kind="analytic", **kw):
    return {"fn": fn, "budget": budget, "split": split, "costs": costs, "kind": kind, **kw}


PROBLEMS = {
    # held-out test split (in the order the run takes them)
    "currin_1to100": _p("currin", 12, costs=(1.0, 100.0)),
    "branin3": _p("branin3", 12, costs=(1.0, 10.0, 100.0)),
    "rve_two_grid": _p(budget=10, kind="rve_two_grid"),
    "mt_rve": _p(budget=10, kind="mt_rve"),
    "heterogeneous3": _p("heterogeneous", 10, costs=(1.0, 10.0, 100.0)),
    "hartmann3": _p("hartmann3", 16, costs=(1.0, 10.0, 100.0)),
    # development split
    "forrester": _p("forrester", 10, "dev", (1.0, 10.0)),
    "park_1to100": _p("park", 16, "dev", (1.0, 100.0)),
    "rosenbrock2": _p("rosenbrock", 12, "dev", (1.0, 10.0, 100.0), kwargs={"dim": 2}),
    "rastrigin2": _p("rastrigin", 12, "dev", (1.0, 10.0, 100.0), kwargs={"dim": 2}),
}


# ------------------------------------------------------------ oracles
class MoriTanakaBelowRVE(Oracle):
    """Two levels of the inverse design of experiment (c): Mori–Tanaka (0) below the fine FFT RVE (1).

    Input: the disc's ``radius_fraction`` r (radius over cell side); the
    inclusion area fraction is ``pi r^2``. Outputs ``("C1111", "misfit")`` as
    :class:`loops.oracle_factories.TwoGridStiffness`: level 0 is the
    plane-strain ``C1111 = k + G`` of the Mori–Tanaka estimate for aligned
    cylinders (:func:`oracles.analytic.bounds.mori_tanaka`, ``dim=2``), level
    1 the FFT RVE on ``grid`` voxels per side. Costs ``costs`` per level.
    """

    output_names = ("C1111", "misfit")
    num_fidelities = 2

    def __init__(self, grid: int = 31, costs=(1.0, 100.0), **spec):
        from loops.oracle_factories import TwoGridStiffness

        self._rve = TwoGridStiffness(grids=(grid, grid), **spec)
        self.target = self._rve.target
        self.input_names = self._rve.input_names
        self.bounds = self._rve.bounds
        self.cost_model = CostModel(costs)
        (m, i) = spec["phases"]
        self._moduli = [(p["E"] / (3 * (1 - 2 * p["nu"])), p["E"] / (2 * (1 + p["nu"]))) for p in (m, i)]

    def _evaluate_one(self, x, fidelity: int) -> PointResult:
        if fidelity == 1:
            return self._rve._evaluate_one(x, 1)
        from oracles.analytic.bounds import mori_tanaka

        (Km, Gm), (Ki, Gi) = self._moduli
        f = math.pi * float(x[0]) ** 2
        k, G = mori_tanaka(Km, Gm, Ki, Gi, f, dim=2)
        c = float(k) + float(G)
        return PointResult(y=torch.tensor([c, (c - self.target) ** 2], dtype=DTYPE))


class TopLevel(Oracle):
    """The top level of a multi-fidelity oracle as a single-fidelity oracle (same cost)."""

    num_fidelities = 1

    def __init__(self, oracle: Oracle):
        self.inner = oracle
        self.input_names = oracle.input_names
        self.output_names = oracle.output_names
        self.bounds = oracle.bounds
        self.cost_model = CostModel((oracle.cost_model.costs[-1],))

    def _evaluate_one(self, x, fidelity: int) -> PointResult:
        r = self.inner.evaluate(x.unsqueeze(0), self.inner.num_fidelities - 1)
        return PointResult(y=r.Y[0])


def make_oracle(prob) -> Oracle:
    if prob["kind"] == "analytic":
        from oracles.analytic.mf_problems import FUNCTIONS

        return FUNCTIONS[prob["fn"]](costs=prob["costs"], **prob.get("kwargs", {}))
    if prob["kind"] == "rve_two_grid":
        from loops.oracle_factories import TwoGridStiffness

        return TwoGridStiffness(grids=(9, 31), **RVE_SPEC)
    if prob["kind"] == "mt_rve":
        return MoriTanakaBelowRVE(grid=31, costs=(1.0, 100.0), **RVE_SPEC)
    raise ValueError(f"problem kind {prob['kind']!r}")


def objective_index(oracle: Oracle) -> int:
    return oracle.output_names.index("misfit") if "misfit" in oracle.output_names else 0


def true_top(oracle: Oracle, X: torch.Tensor) -> torch.Tensor:
    """Noise-free top-level objective at ``n x d`` inputs (``n``)."""
    top = oracle.num_fidelities - 1
    if hasattr(oracle, "evaluate_true"):
        return oracle.evaluate_true(X, top)[:, objective_index(oracle)]
    return oracle.evaluate(X, top).Y[:, objective_index(oracle)]


def find_optimum(oracle: Oracle, kind: str) -> dict:
    """The top level's minimum by dense search (see the module docstring)."""
    from scipy.optimize import minimize

    from loops.acquisition import sobol_points

    b = oracle.bounds
    if kind != "analytic":
        X = torch.linspace(float(b[0, 0]), float(b[1, 0]), 201, dtype=DTYPE).unsqueeze(-1)
        y = true_top(oracle, X)
        k = int(y.argmin())
        return {"value": float(y[k]), "x": X[k].tolist(), "method": "grid of 201 points"}
    X = sobol_points(b, 8192, seed=123)
    y = true_top(oracle, X)
    best_v, best_x = float(y.min()), X[int(y.argmin())]
    for k in y.argsort()[:8]:
        def f(x):
            return float(true_top(oracle, torch.tensor(x, dtype=DTYPE).reshape(1, -1))[0])

        r = minimize(f, X[k].numpy(), method="L-BFGS-B", bounds=list(zip(b[0].tolist(), b[1].tolist(), strict=True)))
        if r.fun < best_v:
            best_v, best_x = float(r.fun), torch.tensor(r.x, dtype=DTYPE)
    return {"value": best_v, "x": best_x.tolist(), "method": "8192 Sobol points, 8 best polished by L-BFGS-B"}


# ------------------------------------------------------------ methods
def _init_n(oracle) -> int:
    return oracle.dim + 2


def run_ours_mf(prob, oracle, seed: int, tmp: str) -> list[tuple[float, float | None]]:
    """``[(cumulative cost in top units, true value of the answer)]``."""
    from loops.config import parse_config
    from loops.engine import Campaign

    L = oracle.num_fidelities
    top_cost = oracle.cost_model.costs[-1]
    B = prob["budget"]
    j = objective_index(oracle)
    cfg = parse_config({
        "name": f"mf-{seed}", "seed": seed, "budget": {"cost": B * top_cost, "calls": CALL_CAP["ours_mf"] * B},
        "oracle": oracle, "outputs": [oracle.output_names[j]],
        "initial": {"n": _init_n(oracle), "fidelities": list(range(L - 1))}, "acquisition": dict(OURS_MF_ACQ),
        "model": {"name": OURS_MF_MODEL}, "executor": {"kind": "serial"}, "tracking": {"enabled": False},
        "run_dir": tmp,
    })
    camp = Campaign(cfg, run_dir=Path(tmp) / cfg.name)
    trace: list[tuple[float, float | None]] = []
    spent = 0.0

    def answer():
        b = camp.best()
        if b is None or b.predicted_x is None:
            return None
        return float(true_top(oracle, torch.tensor([b.predicted_x], dtype=DTYPE))[0])

    marks = [f * B for f in CHECKPOINTS]
    while not camp.finished():
        t = camp.ask(1)
        if not len(t):
            break
        r = oracle.evaluate(t.X, t.fidelities[0])
        c = float(r.cost.sum()) / top_cost
        if camp.model is not None and marks and spent / top_cost + c > marks[0] + 1e-9:
            # the next point crosses a checkpoint: the answer bought so far (the model is fitted on it)
            trace.append((spent / top_cost, answer()))
            marks = [m for m in marks if m > spent / top_cost + c + 1e-9]
        camp.tell(t.X, r.Y, ids=t.ids, cost=r.cost.tolist())
        spent += float(r.cost.sum())
    camp.finish()
    trace.append((spent / top_cost, answer()))
    camp.close()
    return trace


def run_ours_sf(prob, oracle, seed: int, tmp: str) -> list[tuple[float, float | None]]:
    from loops.config import parse_config
    from loops.engine import Campaign

    top = TopLevel(oracle)
    j = objective_index(oracle)
    cfg = parse_config({
        "name": f"sf-{seed}", "seed": seed, "budget": {"calls": prob["budget"]}, "oracle": top,
        "outputs": [oracle.output_names[j]], "initial": {"n": _init_n(oracle)},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": tmp,
    })
    camp = Campaign(cfg, run_dir=Path(tmp) / cfg.name)
    camp.run()
    rows = [r for r in camp.store.rows() if r["status"] == "done"]
    camp.close()
    X = torch.tensor([r["x"] for r in rows], dtype=DTYPE)
    return _best_trace(true_top(oracle, X).tolist())


def _best_trace(values: list[float]) -> list[tuple[float, float]]:
    out, best = [], math.inf
    for k, v in enumerate(values):
        best = min(best, v)
        out.append((k + 1.0, best))
    return out


def run_ax_sf(prob, oracle, seed: int, tmp: str) -> list[tuple[float, float | None]]:
    from ax import Client, RangeParameterConfig
    from ax.utils.common.logger import set_stderr_log_level

    set_stderr_log_level(logging.WARNING)  # Ax logs every trial at INFO on its own handler

    lo, hi = oracle.bounds.tolist()
    names = [f"x{i}" for i in range(oracle.dim)]
    client = Client(random_seed=seed)
    client.configure_experiment(parameters=[
        RangeParameterConfig(name=n, parameter_type="float", bounds=(a, b)) for n, a, b in zip(names, lo, hi, strict=True)
    ])
    client.configure_optimization(objective="-f")
    client.configure_generation_strategy(initialization_budget=_init_n(oracle))
    vals = []
    for _ in range(prob["budget"]):
        for idx, params in client.get_next_trials(max_trials=1).items():
            x = torch.tensor([[params[n] for n in names]], dtype=DTYPE)
            y = float(true_top(oracle, x)[0])
            client.complete_trial(trial_index=idx, raw_data={"f": y})
            vals.append(y)
    return _best_trace(vals)


def run_sobol_sf(prob, oracle, seed: int, tmp: str) -> list[tuple[float, float | None]]:
    from loops.acquisition import problem_seed, sobol_points

    X = sobol_points(oracle.bounds, prob["budget"], seed=problem_seed(seed))
    return _best_trace(true_top(oracle, X).tolist())


def run_botorch_mfkg(prob, oracle, seed: int, tmp: str) -> list[tuple[float, float | None]]:
    """BoTorch's discrete-fidelity MFKG tutorial loop on the unit cube, fidelity s = level / (L - 1)."""
    from botorch.acquisition import PosteriorMean
    from botorch.acquisition.cost_aware import InverseCostWeightedUtility
    from botorch.acquisition.fixed_feature import FixedFeatureAcquisitionFunction
    from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
    from botorch.acquisition.utils import project_to_target_fidelity
    from botorch.fit import fit_gpytorch_mll
    from botorch.models import SingleTaskMultiFidelityGP
    from botorch.models.deterministic import GenericDeterministicModel
    from botorch.models.transforms.outcome import Standardize
    from botorch.optim import optimize_acqf, optimize_acqf_mixed
    from gpytorch.mlls import ExactMarginalLogLikelihood

    from loops.acquisition import sobol_points

    torch.manual_seed(seed)
    d, L = oracle.dim, oracle.num_fidelities
    costs = torch.tensor(oracle.cost_model.costs, dtype=DTYPE)
    top_cost = float(costs[-1])
    lo, hi = oracle.bounds
    j = objective_index(oracle)
    levels = [k / (L - 1) for k in range(L)]

    def evaluate(U: torch.Tensor) -> torch.Tensor:  # q x (d + 1) in the unit cube -> q x 1, maximized
        out = []
        for u in U:
            lev = int(round(float(u[-1]) * (L - 1)))
            x = lo + (hi - lo) * u[:d]
            out.append(-float(oracle.evaluate(x.unsqueeze(0), lev).Y[0, j]))
        return torch.tensor(out, dtype=DTYPE).unsqueeze(-1)

    def cost_of(U):  # batch x q x (d + 1) -> batch x q x 1
        return costs[(U[..., -1] * (L - 1)).round().long().clamp(0, L - 1)].unsqueeze(-1)

    cost_model = GenericDeterministicModel(cost_of, num_outputs=1)
    utility = InverseCostWeightedUtility(cost_model=cost_model)
    bounds = torch.tensor([[0.0] * (d + 1), [1.0] * (d + 1)], dtype=DTYPE)
    target = {d: 1.0}

    def project(X):
        return project_to_target_fidelity(X=X, target_fidelities=target, d=d + 1)

    # the same initial design as ours_mf: the centre and Sobol points, at every level below the top
    u0 = torch.cat([torch.full((1, d), 0.5, dtype=DTYPE),
                    (sobol_points(oracle.bounds, _init_n(oracle) - 1, seed=seed) - lo) / (hi - lo)])
    train_x = torch.cat([torch.cat([u0, torch.full((len(u0), 1), s, dtype=DTYPE)], -1) for s in levels[:-1]])
    train_y = evaluate(train_x)
    spent = float(cost_of(train_x).sum())
    B = prob["budget"] * top_cost
    trace = []

    def recommend(model):
        acqf = FixedFeatureAcquisitionFunction(PosteriorMean(model), d + 1, [d], [1.0])
        x, v = optimize_acqf(acqf, bounds=bounds[:, :-1], q=1, num_restarts=RESTARTS, raw_samples=RAW_SAMPLES,
                             options={"batch_limit": 10, "maxiter": MAXITER})
        return float(true_top(oracle, (lo + (hi - lo) * x).reshape(1, -1))[0]), acqf, v.detach()

    calls = len(train_x)
    while True:
        model = SingleTaskMultiFidelityGP(train_x, train_y, outcome_transform=Standardize(m=1), data_fidelities=[d])
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        val, cur_acqf, current_value = recommend(model)
        done = calls >= CALL_CAP["botorch_mfkg"] * prob["budget"] or spent + float(costs.min()) > B + 1e-9
        trace.append((spent / top_cost, val))  # the recommendation is needed for KG's current value anyway
        if done:
            break
        acqf = qMultiFidelityKnowledgeGradient(model=model, num_fantasies=KG_FANTASIES, current_value=current_value,
                                               cost_aware_utility=utility, project=project)
        affordable = [{d: s} for s, c in zip(levels, costs.tolist(), strict=True) if spent + c <= B + 1e-9]
        cand, _v = optimize_acqf_mixed(acqf, bounds=bounds, fixed_features_list=affordable, q=1,
                                       num_restarts=RESTARTS, raw_samples=RAW_SAMPLES,
                                       options={"batch_limit": 5, "maxiter": MAXITER})
        cand = cand.detach()
        train_x = torch.cat([train_x, cand])
        train_y = torch.cat([train_y, evaluate(cand)])
        spent += float(cost_of(cand).sum())
        calls += 1
    return trace


RUNNERS = {"ours_mf": run_ours_mf, "ours_sf": run_ours_sf, "ax_sf": run_ax_sf, "botorch_mfkg": run_botorch_mfkg,
           "sobol_sf": run_sobol_sf}


# ------------------------------------------------------------ learn mode (report only)
LEARN_OUT = ROOT / "experiments" / "benchmarks" / "results" / "mf_campaigns_learn.json"
#: learn mode runs on these problems (report only: no target, no default chosen on them)
LEARN_PROBLEMS = ("forrester", "currin_1to100", "park_1to100", "hartmann3", "mt_rve")
LEARN_METHODS = ("ours_mf", "ours_sf", "sobol_sf")
#: size of the Sobol test set on which the top level's nRMSE is measured
N_TEST = 512


def learn_test_set(oracle: Oracle) -> tuple[torch.Tensor, torch.Tensor]:
    """``N_TEST x d`` Sobol inputs (seed 321) and their noise-free top-level objective values."""
    from loops.acquisition import sobol_points

    X = sobol_points(oracle.bounds.to(DTYPE), N_TEST, seed=321)
    return X, true_top(oracle, X)


def run_learn(method: str, prob, oracle, seed: int, tmp: str, test) -> list[tuple[float, float | None]]:
    """``[(cumulative cost in top units, top-level nRMSE of the model fitted on the data bought)]``.

    ``ours_mf``: learn mode with ``max_variance`` (the design and level that remove the most
    top-level variance per unit cost), model ``OURS_MF_MODEL``, ``d + 2`` initial points at every
    level below the top, the cost budget and call cap of ``ours_mf``; ``ours_sf``: learn mode on
    the top level alone with ``qNIPV`` (integrated posterior variance) and the engine's GP, ``d + 2``
    initial points; ``sobol_sf``: the same GP on scrambled Sobol points at the top level. nRMSE is
    the RMSE of the posterior mean at the top level on ``test`` over the test values' standard
    deviation.
    """
    from loops.config import parse_config
    from loops.engine import Campaign
    from loops.models import predict

    Xt, yt = test
    L = oracle.num_fidelities
    top_cost = oracle.cost_model.costs[-1]
    B = prob["budget"]
    j = objective_index(oracle)
    acq = {k: v for k, v in OURS_MF_ACQ.items() if k != "name"}
    common = {"seed": seed, "mode": "learn", "outputs": [oracle.output_names[j]], "learn": {"n_validation": 2},
              "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": tmp}
    if method == "ours_mf":
        cfg = parse_config({**common, "name": f"learn-mf-{seed}", "oracle": oracle,
                            "budget": {"cost": B * top_cost, "calls": CALL_CAP["ours_mf"] * B},
                            "initial": {"n": _init_n(oracle), "fidelities": list(range(L - 1))},
                            "acquisition": {"name": "max_variance", **acq}, "model": {"name": OURS_MF_MODEL}})
    else:
        name = "qNIPV" if method == "ours_sf" else "sobol"
        cfg = parse_config({**common, "name": f"learn-{method}-{seed}", "oracle": TopLevel(oracle),
                            "budget": {"calls": B}, "initial": {"n": _init_n(oracle)},
                            "acquisition": {"name": name, **acq}})
    camp = Campaign(cfg, run_dir=Path(tmp) / cfg.name)
    Xq = torch.cat([Xt, torch.full((len(Xt), 1), float(L - 1), dtype=DTYPE)], -1) if method == "ours_mf" else Xt

    def nrmse():
        if camp.model is None:
            return None
        mu = predict(camp.model, Xq)[0][:, 0]
        return float((mu - yt).pow(2).mean().sqrt() / yt.std())

    trace: list[tuple[float, float | None]] = []
    spent, marks = 0.0, [f * B for f in CHECKPOINTS]
    while not camp.finished():
        t = camp.ask(1)  # fits the model on the results bought so far
        if not len(t):
            break
        r = camp.oracle.evaluate(t.X, t.fidelities[0])
        # the campaign's own validation points (learn.n_validation, 2) are not part of the design
        c = 0.0 if t.roles[0] == "validation" else float(r.cost.sum()) / top_cost
        if c and marks and spent / top_cost + c > marks[0] + 1e-9:
            trace.append((spent / top_cost, nrmse()))
            marks = [m for m in marks if m > spent / top_cost + c + 1e-9]
        camp.tell(t.X, r.Y, ids=t.ids, cost=r.cost.tolist())
        spent += c * top_cost
    camp.finish()
    trace.append((spent / top_cost, nrmse()))
    camp.close()
    return trace


def summarize_learn(entry: dict, budget: float) -> dict:
    """Median top-level nRMSE at the cost fractions; the cost for each method to reach ``ours_sf``'s
    final median nRMSE (per seed the first cost at which it is at least as low, median over seeds)."""
    runs = entry["runs"]
    seeds = sorted(set.intersection(*[set(runs.get(m, {})) for m in LEARN_METHODS]), key=int)
    out = {"seeds_complete": len(seeds), "nrmse_median": {}, "cost_to_reach_ours_sf_final": {}}
    if not seeds:
        return out
    for m in LEARN_METHODS:
        out["nrmse_median"][m] = {str(f): _median([value_at(runs[m][s]["trace"], f * budget) for s in seeds])
                                  for f in FRACTIONS}
    level = out["nrmse_median"]["ours_sf"]["1.0"]
    out["ours_sf_final_nrmse_median"] = level
    for m in LEARN_METHODS:
        med = _median([cost_to_reach(runs[m][s]["trace"], level) for s in seeds])
        out["cost_to_reach_ours_sf_final"][m] = {"median": med, "fraction_of_budget": med / budget}
    out["mean_time_s"] = {m: statistics.mean(runs[m][s]["time_s"] for s in seeds) for m in LEARN_METHODS}
    # cost spent by the end of each run (below the budget: ours_mf stopped by its call cap)
    out["spent_median"] = {m: statistics.median(runs[m][s]["trace"][-1][0] if runs[m][s]["trace"] else 0.0
                                                for s in seeds) for m in LEARN_METHODS}
    return out


def write_learn(path: Path, data: dict) -> None:
    report = []
    for name, e in data["problems"].items():
        e["summary"] = s = summarize_learn(e, PROBLEMS[name]["budget"])
        if s["seeds_complete"]:
            frac = s["cost_to_reach_ours_sf_final"]["ours_mf"]["fraction_of_budget"]
            med = s["nrmse_median"]
            report.append({
                "case": f"learn mode, {name}: top-level nRMSE at half / all of the budget, ours_mf vs ours_sf "
                        f"(report only)", "target": None,
                "measured": f"{_fmt(med['ours_mf']['0.5'])} / {_fmt(med['ours_mf']['1.0'])} vs "
                            f"{_fmt(med['ours_sf']['0.5'])} / {_fmt(med['ours_sf']['1.0'])}; ours_mf reaches "
                            f"ours_sf's final nRMSE at {_fmt(frac)}x the budget; ours_mf spent "
                            f"{_fmt(s['spent_median']['ours_mf'] / PROBLEMS[name]['budget'])}x the budget "
                            f"(median)", "met": None})
    data["report"] = report
    data["split"] = {"report_only": list(data["problems"])}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=lambda v: None if v is None else str(v)))
    tmp.replace(path)


def _fmt(v) -> str:
    return "inf" if v is None or (isinstance(v, float) and math.isinf(v)) else f"{v:.3g}"


def main_learn(args) -> int:
    data = _load(args.out) if args.resume else {}
    data.update({
        "benchmark": "mf_campaigns_learn", "script": "experiments/benchmarks/mf_campaigns.py --learn", "issue": 18,
        "python": platform.python_version(), "torch": torch.__version__, "methods": list(LEARN_METHODS),
        "ours_mf": {"model": OURS_MF_MODEL, "acquisition": "max_variance"}, "fractions": list(FRACTIONS),
        "n_test": N_TEST, "call_cap_per_budget_unit": CALL_CAP["ours_mf"],
        "what": "learn mode: nRMSE of the top level (posterior mean on 512 Sobol points, over their std) against "
                "cumulative cost in top-level evaluations; report only (no target, no default chosen here)",
    })
    data.setdefault("problems", {})
    data.setdefault("started", time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))
    names = [p for p in args.problems.split(",") if p] if args.problems != ",".join(PROBLEMS) else LEARN_PROBLEMS
    for name in names:
        prob = PROBLEMS[name]
        oracle = make_oracle(prob)
        test = learn_test_set(oracle)
        entry = data["problems"].setdefault(name, {"budget_top_evals": prob["budget"], "levels": oracle.num_fidelities,
                                                   "d": oracle.dim, "costs": list(oracle.cost_model.costs)})
        runs = entry.setdefault("runs", {})
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for m in args.methods:
                if str(seed) in runs.get(m, {}):
                    continue
                runs.setdefault(m, {})[str(seed)] = _timed_run(
                    functools.partial(run_learn, m), prob, seed, f"learn {name} seed {seed} {m}", test=test)
            write_learn(args.out, data)
    data["finished"] = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    write_learn(args.out, data)
    return 0


# ------------------------------------------------------------ summaries
def value_at(trace, cost: float) -> float | None:
    """The answer bought with at most ``cost`` (None before the first answer)."""
    v = None
    for c, val in trace:
        if c <= cost + 1e-9 and val is not None:
            v = val
    return v


#: values within this relative distance of a level count as reaching it: the same design
#: evaluated on another CPU (an FFT RVE solve) agrees only to round-off (5e-14 relative seen)
REACH_RTOL = 1e-9


def cost_to_reach(trace, level: float) -> float:
    """The cost at which ``trace`` first reaches ``level`` (to :data:`REACH_RTOL`), or inf."""
    for c, val in trace:
        if val is not None and val <= level + REACH_RTOL * abs(level):
            return c
    return math.inf


def _median(vals):
    vals = [math.inf if v is None else v for v in vals]
    return statistics.median(vals) if vals else None


def summarize(name: str, entry: dict) -> dict:
    prob, opt = PROBLEMS[name], entry["optimum"]["value"]
    B = prob["budget"]
    runs = entry["runs"]
    seeds = sorted(set.intersection(*[set(int(s) for s in runs.get(m, {})) for m in METHODS]) if runs else set())
    out = {"seeds_complete": len(seeds), "regret_median": {}, "cost_to_reach_ax_final": {}}
    if not seeds:
        return out

    def regret(m, s, c):
        v = value_at(runs[m][str(s)]["trace"], c)
        return None if v is None else v - opt

    for m in METHODS:
        out["regret_median"][m] = {str(f): _median([regret(m, s, f * B) for s in seeds]) for f in FRACTIONS}
    ax_final = _median([regret("ax_sf", s, B) for s in seeds])
    out["ax_final_regret_median"] = ax_final
    for m in METHODS:
        costs = [cost_to_reach(runs[m][str(s)]["trace"], opt + ax_final) for s in seeds]
        med = _median(costs)
        out["cost_to_reach_ax_final"][m] = {"median": med, "fraction_of_ax_cost": med / B,
                                            "per_seed": costs}
    frac = out["cost_to_reach_ax_final"]["ours_mf"]["fraction_of_ax_cost"]
    out["ours_mf_reaches_ax_at_half_cost"] = frac <= 0.5
    checks = {}
    for f in FRACTIONS:
        sf = out["regret_median"]["ours_sf"][str(f)]
        mf = out["regret_median"]["ours_mf"][str(f)]
        if sf is None or math.isinf(sf):
            continue  # ours_sf has no answer at this cost yet
        checks[str(f)] = {"ours_mf": mf, "ours_sf": sf, "ok": mf <= 1.1 * sf + 1e-12}
    out["ours_mf_vs_ours_sf_at_equal_cost"] = checks
    out["ours_mf_within_10pct_of_ours_sf"] = all(c["ok"] for c in checks.values())
    out["mean_time_s"] = {m: statistics.mean(runs[m][str(s)]["time_s"] for s in seeds) for m in METHODS}
    # cost spent by the end of each run, in top-level evaluations (below the budget: stopped by the call cap)
    out["spent_median"] = {m: statistics.median(runs[m][str(s)]["trace"][-1][0] if runs[m][str(s)]["trace"]
                                                else 0.0 for s in seeds) for m in METHODS}
    return out


def overall(problems: dict) -> tuple[dict, list[dict]]:
    res, report = {}, []
    for split in ("test", "all"):
        names = [n for n, e in problems.items() if e["summary"].get("seeds_complete")
                 and (split == "all" or PROBLEMS[n]["split"] == split)]
        if not names:
            continue
        half = [n for n in names if problems[n]["summary"]["ours_mf_reaches_ax_at_half_cost"]]
        never = [n for n in names if not problems[n]["summary"]["ours_mf_within_10pct_of_ours_sf"]]
        t1 = len(half) >= math.ceil(2 * len(names) / 3)
        t2 = not never
        res[split] = {
            "problems": names, "seeds_min": min(problems[n]["summary"]["seeds_complete"] for n in names),
            "reach_ax_final_at_half_cost": {"problems": half, "count": len(half), "of": len(names),
                                            "target": ">= 2/3 of the problems", "meets_target": t1},
            "within_10pct_of_ours_sf_at_equal_cost": {"failing": never, "target": "every problem",
                                                     "meets_target": t2},
        }
        label = "test split" if split == "test" else "all problems (dev and test)"
        report.append({"case": f"{label}: ours_mf reaches Ax's final single-fidelity regret at <= 0.5x its cost",
                       "target": ">= 2/3 of problems", "measured": f"{len(half)} of {len(names)}", "met": t1})
        report.append({"case": f"{label}: ours_mf median regret <= 1.1x ours_sf's at equal cost",
                       "target": "every problem", "measured": f"{len(names) - len(never)} of {len(names)}"
                       + (f" (not: {', '.join(never)})" if never else ""), "met": t2})
    return res, report


# ------------------------------------------------------------ main
def _timed_run(runner, prob, seed: int, label: str, **kw) -> dict:
    """``{"trace", "time_s"}`` of ``runner(prob, oracle, seed, tmp, **kw)`` with a fresh oracle and
    temporary directory, printed under ``label``; a failed run is a record with its reason
    (``error``, ``traceback``) and an empty trace."""
    t0 = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rec = {"trace": runner(prob, make_oracle(prob), seed, tmp, **kw)}
    except Exception as e:  # noqa: BLE001  (a failed run is data with its reason)
        rec = {"trace": [], "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-2000:]}
    rec["time_s"] = time.perf_counter() - t0
    last = rec["trace"][-1] if rec["trace"] else None
    print(f"{label}: final {last} ({rec['time_s']:.1f} s)" + (f" ERROR {rec['error']}" if "error" in rec else ""),
          flush=True)
    return rec


def _load(path: Path) -> dict:
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            pass
    return {}


def write(path: Path, data: dict, running: bool = True) -> None:
    """Summaries and overall results of ``data`` into ``path``; ``running``: the
    machine's load average is recorded (not when only re-summarizing)."""
    for name, e in data["problems"].items():
        e["summary"] = summarize(name, e)
    # the split of the problems in the file, from each problem's own record
    data["split"] = {s: [n for n, e in data["problems"].items() if e["split"] == s] for s in ("dev", "test")}
    data["overall"], data["report"] = overall(data["problems"])
    if running:
        try:
            data["load_average"] = list(os.getloadavg())
        except OSError:
            pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=lambda v: None if v is None else str(v)))
    tmp.replace(path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--methods", default=None, help="comma-separated (default: every method of the mode)")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--resume", action="store_true", help="keep finished (problem, method, seed) runs of --out")
    ap.add_argument("--summarize", action="store_true", help="only recompute the summaries of --out")
    ap.add_argument("--learn", action="store_true",
                    help=f"learn mode (LEARN_PROBLEMS unless --problems; --out defaults to {LEARN_OUT.name})")
    args = ap.parse_args(argv)
    known = LEARN_METHODS if args.learn else METHODS
    args.methods = [m for m in args.methods.split(",") if m] if args.methods else list(known)
    bad = [m for m in args.methods if m not in known]
    if bad:
        ap.error(f"--methods: unknown {bad}; known{' in learn mode' if args.learn else ''}: {','.join(known)}")
    bad = [p for p in args.problems.split(",") if p and p not in PROBLEMS]
    if bad:
        ap.error(f"--problems: unknown {bad}; known: {','.join(PROBLEMS)}")
    if args.seeds < 1:
        ap.error(f"--seeds must be >= 1, got {args.seeds}")
    if args.learn and args.out == OUT:
        args.out = LEARN_OUT
    if args.summarize and not args.out.is_file():
        ap.error(f"--summarize: no results at {args.out}")
    if args.summarize:
        if args.learn:
            write_learn(args.out, _load(args.out))
        else:
            write(args.out, _load(args.out), running=False)
        return 0
    logging.getLogger("ax").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.learn:
        return main_learn(args)
    data = _load(args.out) if args.resume else {}
    data.update({
        "benchmark": "mf_campaigns", "script": "experiments/benchmarks/mf_campaigns.py",
        "issue": 18, "python": platform.python_version(), "torch": torch.__version__,
        "methods": list(METHODS), "ours_mf": {"model": OURS_MF_MODEL, "acquisition": OURS_MF_ACQ},
        "defaults": DEFAULTS, "fractions": list(FRACTIONS), "call_cap_per_budget_unit": CALL_CAP,
        "call_cap_rule": CALL_CAP_RULE,
        "kg_fantasies": KG_FANTASIES, "restarts": RESTARTS, "raw_samples": RAW_SAMPLES,
        "targets": {
            "reach_ax": "ours_mf reaches the median final regret of ax_sf at <= 0.5x the budget on >= 2/3 of "
                        "the problems",
            "vs_ours_sf": "ours_mf median regret <= 1.1x ours_sf median regret at every reported cost fraction",
        },
    })
    data.setdefault("problems", {})
    data.setdefault("started", time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime()))
    try:
        import ax

        data["ax"] = ax.__version__
    except Exception:  # noqa: BLE001
        pass
    for name in [p for p in args.problems.split(",") if p]:
        prob = PROBLEMS[name]
        oracle = make_oracle(prob)
        entry = data["problems"].setdefault(name, {})
        entry.update({"split": prob["split"], "budget_top_evals": prob["budget"], "levels": oracle.num_fidelities,
                      "d": oracle.dim, "costs": list(oracle.cost_model.costs), "kind": prob["kind"],
                      "initial_per_level": _init_n(oracle)})
        if "optimum" not in entry:
            t0 = time.perf_counter()
            entry["optimum"] = find_optimum(oracle, prob["kind"])
            entry["optimum"]["time_s"] = time.perf_counter() - t0
        runs = entry.setdefault("runs", {})
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for m in args.methods:
                if str(seed) in runs.get(m, {}):
                    continue
                runs.setdefault(m, {})[str(seed)] = _timed_run(RUNNERS[m], prob, seed, f"{name} seed {seed} {m}")
            write(args.out, data)
    data["finished"] = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime())
    write(args.out, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
