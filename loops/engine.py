"""The campaign engine: an outer loop of small replaceable parts.

``Campaign.run`` repeats: fill the free workers with candidates (the initial
Sobol design first, then the acquisition with the running points as
``X_pending``), wait for any result, write it to the run store, then update
the model, log metrics and ask the stopping conditions. The parts:

* state: :class:`LoopState` (counts, cost, time, best value, metrics);
* candidate generator: :func:`loops.acquisition.propose`;
* model updater: :func:`loops.models.fit_model` (warm-started hyperparameters;
  a deterministic oracle's data are interpolated, ``model.noise_free``);
* stopping conditions: :class:`StoppingCondition` objects combined with ``|``;
* callbacks: ``callback(campaign, state)`` after each model update.

A campaign lives in a run directory (``config.json``, ``store.sqlite``) and
can be resumed from it after any kind of death.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from botorch.exceptions.warnings import OptimizationWarning
from torch import Tensor

from loops.acquisition import Problem, problem_seed, propose, sobol_points
from loops.config import CampaignConfig
from loops.executors import ExecutorHandle
from loops.models import fit_model, noise_variance, predict, winsorize_objective
from loops.registry import build_oracle
from loops.store import RunStore

# ------------------------------------------------------------------ state


@dataclass
class LoopState:
    """What stopping conditions and callbacks see after each model update."""

    iteration: int = 0
    calls: int = 0  # finished design calls (done + failed, retries included)
    submitted: int = 0  # design calls ever submitted (finished + running)
    failed: int = 0
    running: int = 0
    cost: float = 0.0
    committed_cost: float = 0.0  # cost + cost of running calls
    elapsed: float = 0.0
    best: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class StoppingCondition(Protocol):
    def should_stop(self, state: LoopState) -> bool: ...


class _Any:
    def __init__(self, *conds):
        self.conds = conds

    def should_stop(self, state: LoopState) -> bool:
        return any(c.should_stop(state) for c in self.conds)

    def __or__(self, other):
        return _Any(*self.conds, other)


class _Cond:
    def __or__(self, other):
        return _Any(self, other)


class CallsBudget(_Cond):
    """Stop when ``calls`` design calls have finished."""

    def __init__(self, calls: int):
        self.calls = calls

    def should_stop(self, state: LoopState) -> bool:
        return state.calls >= self.calls


class CostBudget(_Cond):
    """Stop when the finished calls have cost ``cost``."""

    def __init__(self, cost: float):
        self.cost = cost

    def should_stop(self, state: LoopState) -> bool:
        return state.cost >= self.cost


class WallTimeBudget(_Cond):
    """Stop after ``seconds`` of campaign wall time (summed over resumes)."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def should_stop(self, state: LoopState) -> bool:
        return state.elapsed >= self.seconds


class TargetError(_Cond):
    """Stop when the validated normalized RMSE falls below ``target``."""

    def __init__(self, target: float):
        self.target = target

    def should_stop(self, state: LoopState) -> bool:
        v = state.metrics.get("nrmse")
        return v is not None and v <= self.target


# ----------------------------------------------------------------- helpers


def run_dir_for(config: CampaignConfig, base: str | Path | None = None) -> Path:
    base = Path(base if base is not None else config.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = base / f"{config.name}-{stamp}"
    k = 1
    while d.exists():
        d = base / f"{config.name}-{stamp}-{k}"
        k += 1
    return d


@dataclass
class CampaignResult:
    run_dir: Path
    state: LoopState
    stopped_by: str
    model: Any = None


class Campaign:
    """One campaign over one oracle, stored in ``run_dir``.

    Args:
        config: the validated config.
        run_dir: the run directory (created; an existing one is resumed).
        executor: an ``Executor`` to use instead of the configured one.
        callbacks: ``callback(campaign, state)`` after each model update.
        stopping: extra stopping conditions (ORed with the budget).
        tracker: a :class:`loops.tracking.Tracker` or None to build from the config.
        progress: show a progress bar.
    """

    def __init__(
        self,
        config: CampaignConfig,
        run_dir: str | Path | None = None,
        executor=None,
        callbacks: list[Callable] | None = None,
        stopping: StoppingCondition | None = None,
        tracker=None,
        progress: bool = False,
    ):
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else run_dir_for(config)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg_file = self.run_dir / "config.json"
        if not cfg_file.exists():
            cfg_file.write_text(config.model_dump_json(indent=2))
        self.store = RunStore(self.run_dir / "store.sqlite")
        if self.store.get_meta("config") is None:
            self.store.set_meta("config", config.model_dump(mode="json"))
            self.store.set_meta("status", "created")
            self.store.set_meta("elapsed", 0.0)
        self._executor_arg = executor
        self.callbacks = list(callbacks or [])
        self.extra_stopping = stopping
        self.progress = progress
        self.oracle = build_oracle(config.oracle.spec())
        self.spec = config.oracle.spec()
        self.tracker = tracker
        self.model = None
        self._warm = None
        self._updates = 0
        self.problem = self._problem()
        self.stopping = self._stopping()

    # -------------------------------------------------------------- set-up
    @classmethod
    def resume(cls, run_dir: str | Path, **kwargs) -> Campaign:
        """Reopen a campaign from its run directory."""
        run_dir = Path(run_dir)
        f = run_dir / "config.json"
        if not f.exists():
            raise FileNotFoundError(f"{run_dir} is not a campaign run directory (no config.json)")
        config = CampaignConfig.model_validate_json(f.read_text())
        return cls(config, run_dir=run_dir, **kwargs)

    def _problem(self) -> Problem:
        o, c = self.oracle, self.config
        all_names = list(o.output_names)
        for n in c.outputs or []:
            if n not in all_names:
                raise ValueError(f"outputs: {n!r} is not an output of the oracle; outputs: {all_names}")
        names = list(c.outputs or all_names)
        self.out_idx = [all_names.index(n) for n in names]
        self.model_output_names = tuple(names)

        def idx(name: str) -> int:
            if name not in names:
                raise ValueError(f"objective output {name!r} is not an output of the oracle; outputs: {names}")
            return names.index(name)

        outs = c.objective.outputs or [names[0]]
        mins = c.objective.minimize
        mins = [mins] * len(outs) if isinstance(mins, bool) else list(mins)
        if len(mins) != len(outs):
            raise ValueError(f"objective.minimize has {len(mins)} entries for {len(outs)} outputs")
        target = c.fidelity.target if c.fidelity.target is not None else o.num_fidelities - 1
        return Problem(
            bounds=o.bounds.to(torch.float64),
            objective_idx=[idx(n) for n in outs],
            signs=[-1.0 if mn else 1.0 for mn in mins],
            constraints=[(idx(k.output), k.lower, k.upper) for k in c.objective.constraints],
            num_fidelities=o.num_fidelities,
            target_fidelity=target,
            costs=tuple(o.cost_model.costs) if hasattr(o.cost_model, "costs") else (1.0,) * o.num_fidelities,
            ref_point=c.objective.ref_point,
        )

    def _stopping(self):
        b = self.config.budget
        conds: list = []
        if b.calls is not None:
            conds.append(CallsBudget(b.calls))
        if b.cost is not None:
            conds.append(CostBudget(b.cost))
        if b.wall_time is not None:
            conds.append(WallTimeBudget(b.wall_time))
        if self.config.mode == "learn" and self.config.learn.target_nrmse is not None:
            conds.append(TargetError(self.config.learn.target_nrmse))
        if self.extra_stopping is not None:
            conds.append(self.extra_stopping)
        return _Any(*conds)

    # --------------------------------------------------------------- data
    def data(self, role: str | None = None, fidelity: int | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """Successful points: ``X`` (with fidelity column if multi-fidelity), ``Y``, ``Yvar``."""
        rows = [r for r in self.store.rows(status="done") if (role is None and r["role"] != "validation") or r["role"] == role]
        if fidelity is not None:
            rows = [r for r in rows if r["fidelity"] == fidelity]
        D = self.problem.d + (1 if self.problem.multi_fidelity else 0)
        m = len(self.out_idx)
        if not rows:
            return torch.zeros(0, D, dtype=torch.float64), torch.zeros(0, m, dtype=torch.float64), None
        X = torch.tensor([r["x"] for r in rows], dtype=torch.float64)
        if self.problem.multi_fidelity:
            X = torch.cat([X, torch.tensor([[float(r["fidelity"])] for r in rows], dtype=torch.float64)], -1)
        Y = torch.tensor([r["y"] for r in rows], dtype=torch.float64)[:, self.out_idx]
        Yvar = None
        if all(r["yvar"] is not None for r in rows):
            Yvar = torch.tensor([r["yvar"] for r in rows], dtype=torch.float64)[:, self.out_idx].clamp_min(1e-12)
        return X, Y, Yvar

    def best_value(self) -> float | None:
        """Best objective among feasible successful design points at the target fidelity."""
        X, Y, _ = self.data()
        if self.problem.multi_fidelity and len(X):
            keep = X[:, -1] == self.problem.target_fidelity
            Y = Y[keep]
        if len(Y) == 0 or len(self.problem.objective_idx) != 1:
            return None
        feas = torch.ones(len(Y), dtype=torch.bool)
        for j, lo, hi in self.problem.constraints:
            if lo is not None:
                feas &= Y[:, j] >= lo
            if hi is not None:
                feas &= Y[:, j] <= hi
        if not feas.any():
            return None
        j, s = self.problem.objective_idx[0], self.problem.signs[0]
        v = (Y[feas, j] * s).max().item() * s
        return float(v)

    # -------------------------------------------------------------- model
    def update_model(self) -> Any:
        X, Y, Yvar = self.data()
        if len(X) < 2:
            return None
        if self.config.acquisition.name == "sobol" and self.config.mode == "optimize":
            return None  # the baseline needs no model
        c = self.config.model
        if self.problem.multi_fidelity and c.name not in ("singletask_gp", "mf_gp"):
            # the co-kriging models need data at every level, and a recursive
            # level above the first more points than its trend terms [1, f]
            # (AR1 starts from that fit): while the initial design's results
            # come in level by level, keep the last model until every level
            # has min(3, initial.n) of them
            need = min(3, self.config.initial.n)
            counts = torch.bincount(X[:, -1].round().long(), minlength=self.problem.num_fidelities)
            if bool((counts < need).any()):
                return self.model
        n = len(X)
        last = getattr(self, "_n_at_refit", None)
        refit = (
            self._warm is None
            or last is None
            or (self._updates % c.refit_every == 0
                and (n < c.refit_all_below or n - last >= max(1.0, c.refit_growth * last)))
        )
        if refit:
            self._n_at_refit = n
        options = dict(c.options)
        if self.problem.multi_fidelity and c.name not in ("singletask_gp", "mf_gp"):
            options.setdefault("num_fidelities", self.problem.num_fidelities)
            options.setdefault("costs", list(self.problem.costs))
        noise_free = c.noise_free if c.noise_free is not None else not self.oracle.noisy
        if noise_free and Yvar is None:
            Yvar = torch.zeros_like(Y)
        Yfit = Y
        if c.winsorize and self.config.mode == "optimize" and len(self.problem.objective_idx) == 1:
            Yfit = winsorize_objective(Y, self.problem.objective_idx[0], self.problem.signs[0])
        # small data: every update is a full fit from the default initialization (the
        # marginal likelihood moves a lot with each point, and a warm start can keep a poor
        # local optimum); large data: warm-started short refits on the schedule above
        warm = self._warm if n >= c.refit_all_below else None
        t0 = time.perf_counter()
        self.model = fit_model(
            c.name, X, Yfit, self.problem.model_bounds, Yvar=Yvar,
            fidelity_dim=self.problem.d if self.problem.multi_fidelity else None,
            options=options, warm=warm, refit=refit,
            names=(tuple(self.oracle.input_names), self.model_output_names),
        )
        self._fit_time = time.perf_counter() - t0
        self._updates += 1
        try:
            self._warm = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        except Exception:  # noqa: BLE001
            self._warm = None
        self.problem.output_scale = Y.var(dim=0).clamp_min(1e-12) if len(Y) > 1 else None
        return self.model

    def validation_metrics(self) -> dict[str, float]:
        """Held-out RMSE, normalized RMSE, NLPD and 95% coverage (learn mode)."""
        if self.model is None:
            return {}
        Xv, Yv, _ = self.data(role="validation")
        if len(Xv) < 2:
            return {}
        if self.problem.multi_fidelity:
            Xv = Xv.clone()
            Xv[:, -1] = float(self.problem.target_fidelity)
        mu, var = predict(self.model, Xv)
        var = var + noise_variance(self.model, Yv.shape[-1])
        err = mu - Yv
        rmse = err.pow(2).mean(0).sqrt()
        nrmse = (rmse / Yv.std(0).clamp_min(1e-300)).mean()
        nlpd = (0.5 * torch.log(2 * math.pi * var) + 0.5 * err.pow(2) / var).mean()
        cover = (err.abs() <= 1.959964 * var.sqrt()).double().mean()
        return {"rmse": float(rmse.mean()), "nrmse": float(nrmse), "nlpd": float(nlpd), "coverage95": float(cover)}

    # -------------------------------------------------------------- state
    def state(self, running: list[dict] | None = None) -> LoopState:
        rows = [r for r in self.store.rows() if r["role"] != "validation"]
        fin = [r for r in rows if r["status"] != "pending"]
        cost = sum(r["cost"] or 0.0 for r in fin)
        pend = [r for r in rows if r["status"] == "pending"]
        pend_cost = sum(self.problem.costs[r["fidelity"]] for r in pend)
        return LoopState(
            iteration=self._updates,
            calls=len(fin),
            submitted=len(rows),
            failed=sum(r["status"] == "failed" for r in fin),
            running=len(pend),
            cost=cost,
            committed_cost=cost + pend_cost,
            elapsed=float(self.store.get_meta("elapsed", 0.0)) + (time.time() - self._t_start),
            best=self.best_value(),
            metrics=dict(getattr(self, "_last_metrics", {})),
        )

    def _may_submit(self, st: LoopState, fidelity: int) -> bool:
        b = self.config.budget
        if b.calls is not None and st.submitted >= b.calls:
            return False
        if b.cost is not None and st.committed_cost + self.problem.costs[fidelity] > b.cost + 1e-9:
            return False
        if b.wall_time is not None and st.elapsed >= b.wall_time:
            return False
        return True

    # ---------------------------------------------------------------- run
    def _submit(self, rid: int, x: list[float], fidelity: int) -> None:
        fut = self.exec.submit(self.spec, x, fidelity, self.config.executor.timeout)
        self.running[fut] = (rid, time.time())

    def _initial_design(self) -> None:
        """Insert the initial design (centre and Sobol points) and the validation set as pending rows."""
        c = self.config
        if self.store.get_meta("initialized"):
            return
        seed = problem_seed(c.seed)
        levels = c.initial.fidelities if c.initial.fidelities is not None else [self.problem.target_fidelity]
        b = self.problem.bounds
        if c.initial.center:
            X0 = torch.cat([b.mean(0, keepdim=True), sobol_points(b, c.initial.n - 1, seed=seed)])
        else:
            X0 = sobol_points(b, c.initial.n, seed=seed)
        n_budget = c.budget.calls if c.budget.calls is not None else 10**9
        k = 0
        for lev in levels:
            for x in X0:
                if k >= n_budget:
                    break
                self.store.add_pending(x.tolist(), lev, "initial", 0)
                k += 1
        if c.mode == "learn":
            Xv = sobol_points(self.problem.bounds, c.learn.n_validation, seed=seed + 104729)
            for x in Xv:
                self.store.add_pending(x.tolist(), self.problem.target_fidelity, "validation", 0)
        self.store.set_meta("initialized", True)

    def _candidates(self, k: int, st: LoopState) -> list[tuple[list[float], int, dict | None]]:
        c = self.config
        X, Y, _ = self.data()
        pend = [self.rows_by_id[rid] for rid, _ in self.running.values() if self.rows_by_id[rid]["role"] != "validation"]
        Xp = None
        if pend:
            Xp = torch.tensor([r["x"] for r in pend], dtype=torch.float64)
            if self.problem.multi_fidelity:
                Xp = torch.cat([Xp, torch.tensor([[float(r["fidelity"])] for r in pend], dtype=torch.float64)], -1)
        name = c.acquisition.name
        if self.model is None and name != "sobol":
            name = "sobol"  # not enough data yet (all initial points failed)
        n_design = st.submitted
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # restarts that stop early are reported by BoTorch; the best restart is still used
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", OptimizationWarning)
            cand = self._propose(name, X, Y, k, Xp, n_design)
        self._acq_time = time.perf_counter() - t0
        return self._with_predictions(cand)

    def _propose(self, name, X, Y, k, Xp, n_design):
        c = self.config
        return propose(
            name, self.model, self.problem, X, Y, k, c.acquisition, X_pending=Xp,
            noise=None if self.model is None else noise_variance(self.model, Y.shape[-1]),
            seed=(c.seed * 1_000_003 + n_design) % (2**31), sobol_skip=n_design,
        )

    def _with_predictions(self, cand: Tensor) -> list[tuple[list[float], int, dict | None]]:
        out = []
        pred = None
        for x in cand:
            if self.model is not None:
                try:
                    mu, var = predict(self.model, x.unsqueeze(0) if not self.problem.multi_fidelity else
                                      torch.cat([x[:-1], torch.tensor([float(self.problem.target_fidelity)])]).unsqueeze(0))
                    pred = {"mean": mu[0].tolist(), "std": var[0].sqrt().tolist()}
                except Exception:  # noqa: BLE001
                    pred = None
            if self.problem.multi_fidelity:
                out.append((x[:-1].tolist(), int(round(float(x[-1]))), pred))
            else:
                out.append((x.tolist(), self.problem.target_fidelity, pred))
        return out

    def run(self) -> CampaignResult:
        """Run (or continue) the campaign until a stopping condition holds."""
        from loops.tracking import Tracker

        c = self.config
        torch.set_num_threads(1)  # small GPs on few shared cores: see experiments/benchmarks
        self._t_start = time.time()
        self._acq_time = 0.0
        self._fit_time = 0.0
        self.store.set_meta("status", "running")
        if self.tracker is None:
            self.tracker = Tracker(c, self.store, self.run_dir)
        # the pool starts first: its workers come up while MLflow and the store are set up
        self.exec = ExecutorHandle(c.executor, self._executor_arg, preload=self._oracle_modules())
        self.tracker.start()
        self.tracker.catch_up()
        self._initial_design()
        self.running: dict[Future, tuple[int, float]] = {}
        self.rows_by_id = {r["id"]: r for r in self.store.rows()}
        # resubmit what was in flight when the last session died
        for r in self.store.rows(status="pending"):
            self._submit(r["id"], r["x"], r["fidelity"])
        if self.store.counts()["done"] >= 2:
            self.update_model()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=c.budget.calls, desc=c.name, unit="call", initial=self.state().calls)
        stopped_by = "budget"
        infra_failures = 0
        stale = False  # results recorded since the last model update
        try:
            while True:
                st = self.state()
                if self.stopping.should_stop(st):
                    stopped_by = next(type(k).__name__ for k in self.stopping.conds if k.should_stop(st))
                    break
                # fill free workers
                sync = c.executor.synchronous
                # a serial executor evaluates at submission: one point at a time, no prefetch
                # (it used to take workers + prefetch = 3 points per proposal, a q = 3 batch)
                prefetch = self.exec.workers if c.executor.prefetch == "auto" else c.executor.prefetch
                slots = self.exec.workers + (0 if sync or not self.exec.queues else prefetch)
                free = slots - len(self.running)
                if free > 0 and (not sync or not self.running) and self._may_submit(st, self.problem.target_fidelity):
                    # async: one joint proposal for all free workers (conditioned on the running ones)
                    k = c.acquisition.q if sync else free
                    if c.budget.calls is not None:
                        k = min(k, c.budget.calls - st.submitted)
                    if k > 0:
                        if stale:
                            self._update_and_log()
                            stale = False
                        for x, lev, pred in self._candidates(k, st):
                            if not self._may_submit(self.state(), lev):
                                break
                            rid = self.store.add_pending(x, lev, "acquisition", self._updates, prediction=pred)
                            self.rows_by_id[rid] = self.store.row(rid)
                            self._submit(rid, x, lev)
                        continue
                if not self.running:
                    stopped_by = "budget"
                    break
                done, _ = wait(list(self.running), timeout=self._wait_timeout(), return_when=FIRST_COMPLETED)
                self._check_timeouts()
                if not done:
                    continue
                got = 0
                for fut in done:
                    if fut not in self.running:  # resubmitted after a pool rebuild
                        continue
                    rid, _t = self.running.pop(fut)
                    row = self.rows_by_id[rid]
                    try:
                        rec = fut.result()
                    except Exception as e:  # noqa: BLE001  (a worker died: re-run the point)
                        infra_failures += 1
                        if infra_failures > 20 * max(1, self.exec.workers):
                            raise RuntimeError(f"too many worker failures, last: {type(e).__name__}: {e}") from e
                        if "Broken" in type(e).__name__:
                            self._rebuild()  # resubmits the other running points
                        self._submit(rid, row["x"], row["fidelity"])
                        continue
                    self.store.record(rid, rec)  # persisted before the model sees it
                    got += 1
                    if (rec.get("failed") and row["attempt"] < c.executor.retries
                            and row["role"] != "validation" and self._may_submit(self.state(), row["fidelity"])):
                        nid = self.store.add_pending(row["x"], row["fidelity"], row["role"], row["iteration"],
                                                     point=row["point"], attempt=row["attempt"] + 1)
                        self.rows_by_id[nid] = self.store.row(nid)
                        self._submit(nid, row["x"], row["fidelity"])
                    if bar is not None and row["role"] != "validation":
                        bar.update(1)
                if got:
                    if sync and self.running:
                        continue
                    if self.running and not self._may_submit(self.state(), self.problem.target_fidelity):
                        # nothing left to propose: record the last results the moment they come
                        # and update the model once, at the end
                        stale = True
                        continue
                    self._update_and_log()
                    stale = False
            if stale:
                self._update_and_log()
        finally:
            self.store.set_meta("elapsed", float(self.store.get_meta("elapsed", 0.0)) + time.time() - self._t_start)
            self._t_start = time.time()
            if bar is not None:
                bar.close()
            # in-flight points stay pending in the store; a resume re-runs them
            self.exec.shutdown()
        st = self.state()
        st.metrics = self.validation_metrics() if c.mode == "learn" else {}
        if c.mode == "learn":
            st.best = None
        self.store.set_meta("status", "finished")
        self.store.set_meta("stopped_by", stopped_by)
        self.tracker.finish(self, st)
        return CampaignResult(self.run_dir, st, stopped_by, self.model)

    def _oracle_modules(self) -> tuple[str, ...]:
        """The module of the oracle class (what a worker imports to build it)."""
        mod = type(self.oracle).__module__
        return (mod,) if mod and mod != "__main__" else ()

    def _rebuild(self) -> None:
        # every future of a broken pool fails; resubmit them all on a new pool
        old = list(self.running.items())
        self.exec.rebuild()
        self.running.clear()
        for _fut, (rid, _t) in old:
            r = self.rows_by_id[rid]
            self._submit(rid, r["x"], r["fidelity"])

    def _wait_timeout(self) -> float | None:
        t = self.config.executor.timeout
        w = self.config.budget.wall_time
        cands = [v for v in (t, w) if v is not None]
        return min(cands) / 4 if cands else 5.0

    def _check_timeouts(self) -> None:
        """Driver-side timeout (workers that cannot use alarms, e.g. Dask threads)."""
        t = self.config.executor.timeout
        if t is None:
            return
        now = time.time()
        for fut, (rid, t0) in list(self.running.items()):
            if now - t0 > t + 5.0 + t * 0.5 and not fut.done():
                fut.cancel()
                self.running.pop(fut)
                self.store.record(rid, {"failed": True, "reason": f"timeout after {t:g} s (driver)",
                                        "cost": self.problem.costs[self.rows_by_id[rid]["fidelity"]]})

    def _update_and_log(self) -> None:
        """Refit the model on every recorded result, then log the iteration's metrics."""
        self.update_model()
        self._after_update()

    def _after_update(self) -> None:
        st = self.state()
        metrics: dict[str, float] = {
            "calls": st.calls, "failed": st.failed, "cost": st.cost,
            "acq_time": self._acq_time, "fit_time": self._fit_time,
        }
        if st.best is not None and self.config.mode == "optimize":
            metrics["best_value"] = st.best
        if self.config.mode == "learn":
            metrics.update(self.validation_metrics())
        st.metrics = metrics
        self._last_metrics = metrics
        self.store.log_metrics(st.calls, metrics)
        self.tracker.log_pending()
        for cb in self.callbacks:
            cb(self, st)
        self._stop_metrics = metrics

    def close(self) -> None:
        self.store.close()


def load_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """All evaluation rows of a run directory."""
    s = RunStore(Path(run_dir) / "store.sqlite")
    try:
        return s.rows()
    finally:
        s.close()


def dump_dataset(campaign: Campaign) -> dict[str, Any]:
    X, Y, Yvar = campaign.data()
    return {"X": X.tolist(), "Y": Y.tolist(), "input_names": list(campaign.oracle.input_names),
            "output_names": list(campaign.oracle.output_names)}


__all__ = [
    "Campaign", "CampaignResult", "LoopState", "CallsBudget", "CostBudget", "WallTimeBudget",
    "TargetError", "StoppingCondition", "load_rows", "json",
]
