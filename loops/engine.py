"""The campaign engine: ask/tell over a run store, and a loop built on it.

A :class:`Campaign` can be driven one step at a time::

    camp = Campaign(config)                 # or Campaign(config, oracle=my_oracle)
    while not camp.finished():
        trial = camp.ask(2)                 # 2 x d inputs, their fidelities, row ids
        Y = my_lab(trial.X)                 # anything: a robot, an HPC job array, ...
        camp.tell(trial.X, Y, ids=trial.ids)
    res = camp.finish()

``ask(n)`` returns points already pending in the store first (the initial
design, points in flight when a previous driver died, retries), then new
candidates from the acquisition (``X_pending``: the points asked and not yet
told); every asked point is a ``pending`` row of the run store. ``tell``
records results (failures with their reasons) in the store before the model
sees them. :meth:`Campaign.run` is this loop over an executor: it fills the
free workers with ``ask``, and hands each worker's answer to the same
recording path as ``tell``. The parts:

* state: :class:`LoopState` (counts, cost, time, best value, metrics);
* candidate generator: :func:`loops.acquisition.propose`;
* model updater: :func:`loops.models.fit_model` (refit before a proposal when
  results arrived since the last fit);
* stopping conditions: :class:`StoppingCondition` objects combined with ``|``;
* callbacks: ``callback(campaign, state)`` after each model update.

A campaign lives in a run directory (``config.json``, ``store.sqlite``,
``progress.json``, ``lock``) owned by one driver at a time, and can be
resumed from it after any kind of death. Worker faults (a dead worker, a
timeout that had to kill its worker) are retried on a fresh worker up to
``executor.retries`` times, then recorded as failed with the reason.
SIGTERM and SIGINT stop :meth:`Campaign.run` cleanly: points in flight stay
pending for a resume, workers are stopped and the store is closed.
"""

from __future__ import annotations

import json
import math
import operator
import signal
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from botorch.acquisition.logei import TAU_MAX
from botorch.exceptions.errors import ModelFittingError
from botorch.exceptions.warnings import OptimizationWarning
from torch import Tensor

from loops.acquisition import Problem, problem_seed, propose, satisfies_constraints, sobol_points
from loops.config import LEVEL_CHOOSING_ACQUISITIONS, MULTI_FIDELITY_ACQUISITIONS, CampaignConfig
from loops.executors import ExecutorLost, PickledOracle, PointRunner, check_record
from loops.models import _HYPER as WARM_KEYS  # the hyperparameters a warm start keeps
from loops.models import (
    BUILTIN,
    check_model_spec,
    fit_model,
    model_class,
    noise_variance,
    predict,
    winsorize_objective,
)
from loops.registry import build_oracle
from loops.store import RunDirError, RunLock, RunStore, read_progress, write_atomic, write_progress
from oracles.base import not_real_kind
from surrogates.multifidelity.model import NoiseFreeConflict, TooFewLevelPoints

# ------------------------------------------------------------------ state


@contextmanager
def _one_torch_thread():
    """Torch on one thread inside the block (restored after): model updates, proposals and the
    recommendation then round alike whatever the caller's thread count (``OMP_NUM_THREADS``,
    the machine's cores), so ``ask``/``tell`` repeats bit for bit and matches :meth:`Campaign.run`,
    which runs on one thread too."""
    n = torch.get_num_threads()
    if n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _repeats_identical(oracle) -> bool:
    """Whether asking ``oracle`` a point again returns the same answer: deterministic, or noise
    drawn from a seed of the point (:attr:`oracles.base.Oracle.seeded_by_point`)."""
    return not getattr(oracle, "noisy", False) or bool(getattr(oracle, "seeded_by_point", False))


#: standard deviations by which the posterior mean's maximizer must beat the best observation of a
#: deterministic single-fidelity oracle to be recommended (:meth:`Campaign.best`): a one-sided 97.5 % bound.
#: One (Huang et al.'s effective best solution) admits extrapolations: on 12 Sobol points of Powell,
#: Rosenbrock and Beale it recommends corners 15 to 8000 times worse than the best observation
RECOMMEND_Z = 1.96

#: executor kinds that run the oracle inside the driver's process
IN_PROCESS_KINDS = ("serial", "thread")
#: deaths of the driver while a point was evaluated in it (serial or thread executor) after which
#: the point is recorded as failed on resume: the first may be its user's kill; a second on the
#: same point is taken as the oracle crashing the process
IN_PROCESS_DEATHS = 2

#: failed points of a deterministic oracle the acquisition takes as in flight (the latest ones)
MAX_FAILED_PENDING = 64


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


#: numerical failures of a model fit or of the acquisition's optimizer (a
#: Cholesky that does not factor, a likelihood that cannot be evaluated at any
#: start, a NaN in a posterior): recorded as a model fault, and the campaign
#: goes on, as does data that contradicts the oracle's word (``NoiseFreeConflict``: an
#: oracle said to be noise-free gave two values at one input; ``TooFewLevelPoints``: a
#: level with fewer points than the model's trend, with options that need more than
#: its model's ``min_level_points``). Errors of the settings (``ValueError``, ``TypeError``) still stop it.
MODEL_FAULTS = (RuntimeError, ArithmeticError, np.linalg.LinAlgError, ModelFittingError, NoiseFreeConflict,
                TooFewLevelPoints)


#: input ranges over which BoTorch's acquisition optimizer works as in the unit box
#: (:meth:`Campaign._check_input_spans`)
INPUT_SPAN_RANGE = (1e-4, 1e4)


class UnitsWarning(UserWarning):
    """The outputs' units defeat a setting that is absolute in output units."""


class BootstrapModelWarning(UserWarning):
    """A multi-fidelity campaign ended with its bootstrap model instead of the configured one."""


class ModelFaultWarning(UserWarning):
    """A model fit or an acquisition failed numerically and the campaign went on
    (the fault and what replaced the model's proposal: :attr:`Campaign.model_faults`)."""


class NoiseWarning(UserWarning):
    """Known noise variances that a fit cannot use as given."""


class CampaignInterrupted(BaseException):
    """SIGTERM or SIGINT reached :meth:`Campaign.run` (a ``BaseException``, so no ``except Exception`` eats it)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# ----------------------------------------------------------------- helpers


def initial_levels(config: CampaignConfig, target: int) -> list[int]:
    """Fidelity levels of the initial design: ``initial.fidelities`` when given;
    otherwise every level below ``target`` for an acquisition that chooses the
    levels by their cost (:data:`~loops.config.LEVEL_CHOOSING_ACQUISITIONS`; the
    campaign then spends its first results where they are cheap, as
    ``experiments/benchmarks/mf_campaigns.py`` measures it in both modes), else ``[target]``."""
    if config.initial.fidelities is not None:
        return list(config.initial.fidelities)
    if config.acquisition.name in LEVEL_CHOOSING_ACQUISITIONS and target > 0:
        return list(range(target))
    return [target]


def initial_plan(config: CampaignConfig, target: int) -> list[tuple[int, int]]:
    """The initial design's evaluations in order, ``(point, level)``: each of the
    ``initial.n`` points at each level of :func:`initial_levels`, level by level,
    cut at ``budget.calls``."""
    plan = [(i, lev) for lev in initial_levels(config, target) for i in range(config.initial.n)]
    return plan if config.budget.calls is None else plan[: config.budget.calls]


def _told_rows(name: str, v: Any, n: int, m: int, outputs: list[str]) -> Tensor:
    """``v`` as ``n x m`` (``n`` values when ``m = 1``), else a ``ValueError`` naming the shape."""
    kind = not_real_kind(v)
    if kind is not None:  # a float64 cast would keep the real part only, or read True as 1.0
        raise ValueError(f"tell: {name} must be real numbers, n x m = {n} x {m} (one column per output {outputs}), "
                         f"got {kind} values")
    try:
        t = torch.as_tensor(v, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"tell: {name} must be numbers, n x m = {n} x {m} (one column per output {outputs}), "
                         f"got {type(v).__name__} {str(v)[:60]}") from None
    if t.dim() <= 1 and t.numel() == n * m:
        return t.reshape(n, m)
    if t.dim() == 2 and t.shape[0] == n and t.shape[1] != m:
        raise ValueError(f"tell: {name} has {t.shape[1]} columns; expected m = {m} ({outputs})")
    if t.dim() != 2 or t.shape != (n, m):
        raise ValueError(f"tell: {name} must be n x m = {n} x {m} (one row per point, one column per output "
                         f"{outputs}), got shape {tuple(t.shape)}")
    return t


def _told_level(f: Any, L: int) -> int | None:
    """A told point's level as an ``int`` in ``0..L-1`` (or None: the default), else a ``ValueError``."""
    if f is None:
        return None
    try:
        lev = None if isinstance(f, bool) else operator.index(f)
    except TypeError:
        lev = None
    if lev is None or not 0 <= lev < L:
        raise ValueError(f"tell: fidelity {f!r} is not a level of this oracle: levels are 0..{L - 1}")
    return lev


def _told_cost(c: Any) -> float:
    """A told point's cost as a float if it is a finite number >= 0, else a ``ValueError``."""
    try:
        v = None if isinstance(c, (bool, str)) else float(c)
    except (TypeError, ValueError):
        v = None
    if v is None or not math.isfinite(v) or v < 0:
        raise ValueError(f"tell: cost {c!r} is not a finite cost >= 0 (in the oracle's cost units)")
    return v


def _told_list(v: Any) -> Any:
    """A per-point argument of ``tell`` (``fidelity``, ``cost``) given as a numpy array or torch
    tensor, as a list (a 0-d one as its number); anything else as given."""
    if v is not None and hasattr(v, "tolist") and not isinstance(v, (list, tuple)):
        return v.tolist()
    return v


def _told_ids(ids: Any) -> list[int] | None:
    """Row ids given to ``tell`` as a list of ints: a list, tuple, numpy array or
    torch tensor of integers (``ask``'s ``ids``), else a ``ValueError`` naming the value."""
    if ids is None:
        return None
    if hasattr(ids, "tolist") and not isinstance(ids, (list, tuple)):  # numpy array, torch tensor
        ids = ids.tolist()
        ids = [ids] if not isinstance(ids, list) else ids
    if not isinstance(ids, (list, tuple)):
        raise ValueError(f"tell: ids must be a list of row ids (ints, as ask() returns), got {ids!r}")
    out = []
    for v in ids:
        ok = isinstance(v, int) and not isinstance(v, bool)
        if not ok and hasattr(v, "item") and getattr(v, "ndim", 0) == 0:  # a numpy or torch integer scalar
            v = v.item()
            ok = isinstance(v, int) and not isinstance(v, bool)
        if not ok:
            raise ValueError(f"tell: ids must be row ids (ints, as ask() returns), got {v!r} in {list(ids)!r}")
        out.append(v)
    return out


def check_cost_budget(config: CampaignConfig, costs: tuple[float, ...], target: int) -> None:
    """Refuse a ``budget.cost`` that the initial design overspends, or that leaves
    less than one evaluation at the ``target`` fidelity when the initial design
    has none there (the campaign could never observe its target). ``costs``: the
    oracle's cost per point of each level, the ones the budget is charged."""
    b = config.budget
    if b.cost is None:
        return
    levels = initial_levels(config, target)
    spent = float(sum(costs[lev] for _, lev in initial_plan(config, target)))
    if spent > b.cost + 1e-9:
        raise ValueError(
            f"the initial design costs {spent:g} ({config.initial.n} points at fidelities {levels}, level costs "
            f"{[float(x) for x in costs]}), more than budget.cost = {b.cost:g}; use fewer points (initial.n), "
            f"cheaper levels (initial.fidelities) or a larger budget.cost")
    if target not in levels and spent + costs[target] > b.cost + 1e-9:
        raise ValueError(
            f"budget.cost = {b.cost:g} leaves {b.cost - spent:g} after the initial design (cost {spent:g}), less than "
            f"one evaluation at the target fidelity {target} (cost {costs[target]:g}), so the campaign could never "
            f"observe its target; use budget.cost >= {spent + costs[target]:g}")


def run_dir_for(config: CampaignConfig, base: str | Path | None = None, claim: bool = False) -> Path:
    """A new run directory ``<base>/<name>-<time>`` (``-1``, ``-2``, ... when taken).

    ``claim``: create it, exclusively, so that campaigns started at the same second
    each get their own (checking that it exists and creating it later would race)."""
    base = Path(base if base is not None else config.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d = base / f"{config.name}-{stamp}"
    k = 1
    while True:
        if not claim and not d.exists():
            return d
        if claim:
            base.mkdir(parents=True, exist_ok=True)
            try:
                d.mkdir()
                return d
            except FileExistsError:
                pass
        d = base / f"{config.name}-{stamp}-{k}"
        k += 1


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict) and d:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_differences(a: dict[str, Any], b: dict[str, Any], ignore: tuple[str, ...] = ("run_dir",)) -> list[str]:
    """Dotted keys whose values differ between two config dicts."""
    fa, fb = _flat(a), _flat(b)
    return sorted(k for k in set(fa) | set(fb) if k.split(".")[0] not in ignore and fa.get(k) != fb.get(k))


def _as_current(config: CampaignConfig, recorded: dict[str, Any]) -> dict[str, Any]:
    """A config dict written by an earlier run, with the settings added since at their defaults
    (as written where it no longer validates: the comparison then names the keys that differ)."""
    try:
        return type(config).model_validate(recorded).model_dump(mode="json")
    except Exception:  # noqa: BLE001
        return recorded


@dataclass
class Trial:
    """Points handed out by :meth:`Campaign.ask`.

    Attributes:
        X: ``n x d`` inputs (no fidelity column).
        fidelities: ``n`` levels.
        ids: ``n`` run-store row ids (pass them back to :meth:`Campaign.tell`).
        roles: ``n`` roles (``initial``, ``acquisition``, ``validation``).
    """

    X: Tensor
    fidelities: list[int]
    ids: list[int]
    roles: list[str]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class BestPoint:
    """Best observed point (feasible, at the target fidelity) and the recommendation: the model's best predicted point.

    Attributes:
        x: ``d`` inputs of the best observation; value: its objective; row: its store row id.
        predicted_x: ``d`` inputs maximizing the model's (signed) posterior mean of the
            objective at the target fidelity (the recommendation), or None. Where the
            oracle failed at that maximizer (and with outcome constraints, where it is not
            predicted feasible), the best predicted of the observed designs instead. With
            a deterministic oracle at one fidelity, the maximizer only where the model is
            sure it beats the observed designs (see :meth:`Campaign.best`).
        predicted_value: the posterior mean of the objective there.
        predicted_sd: the posterior standard deviation of the objective there.
        fidelity: the level both refer to (the target fidelity).
    """

    x: list[float] | None
    value: float | None
    row: int | None
    predicted_x: list[float] | None = None
    predicted_value: float | None = None
    fidelity: int = 0
    predicted_sd: float | None = None

    def __repr__(self) -> str:
        xs = "None" if self.x is None else "[" + ", ".join(f"{v:.4g}" for v in self.x) + "]"
        out = f"BestPoint(value={self.value if self.value is None else f'{self.value:.6g}'}, x={xs}"
        if self.predicted_x is not None:
            px = "[" + ", ".join(f"{v:.4g}" for v in self.predicted_x) + "]"
            pv = "None" if self.predicted_value is None else f"{self.predicted_value:.6g}"
            sd = "None" if self.predicted_sd is None else f"{self.predicted_sd:.3g}"
            out += f", predicted_value={pv}, predicted_sd={sd}, predicted_x={px}"
        return out + ")"


#: the bookkeeping columns of :func:`evaluations_frame`
FRAME_COLUMNS = ("id", "point", "attempt", "role", "iteration", "status", "fidelity",
                 "cost", "reason", "wall_time", "submitted", "finished")


def evaluations_frame(rows: list[dict[str, Any]], input_names, output_names):
    """A pandas ``DataFrame`` of store rows: one column per input, output and output variance,
    and the bookkeeping columns :data:`FRAME_COLUMNS`. An input or output whose name is one
    of those (an output called ``cost``) is given as ``input.<name>`` / ``output.<name>``, so
    neither is overwritten."""
    import pandas as pd

    def col(name: str, kind: str) -> str:
        return f"{kind}.{name}" if name in FRAME_COLUMNS else name

    recs = []
    for r in rows:
        d = {k: r.get(k) for k in FRAME_COLUMNS[:7]}
        for n, v in zip(input_names, r["x"], strict=False):
            d[col(n, "input")] = v
        for i, n in enumerate(output_names):
            d[col(n, "output")] = r["y"][i] if r.get("y") is not None else float("nan")
        for i, n in enumerate(output_names):
            d[f"{col(n, 'output')}_var"] = r["yvar"][i] if r.get("yvar") is not None else float("nan")
        for k in FRAME_COLUMNS[7:]:
            d[k] = r.get(k)
        recs.append(d)
    return pd.DataFrame.from_records(recs)


@dataclass(repr=False)
class CampaignResult:
    """What :meth:`Campaign.run` and :meth:`Campaign.finish` return.

    Attributes:
        run_dir: the run directory; state: the final :class:`LoopState`;
        stopped_by: the condition (``CallsBudget``, ``budget``, ``SIGTERM``, ...;
            ``caller``: :meth:`Campaign.finish` called before any held);
        model: the last fitted model; best: a :class:`BestPoint` (optimize mode, one objective);
        pareto: the observed Pareto front (optimize mode, several objectives; :meth:`Campaign.pareto_front`);
        model_faults: the model fits and acquisitions that failed numerically
        (:attr:`Campaign.model_faults`).
    """

    run_dir: Path
    state: LoopState
    stopped_by: str
    model: Any = None
    best: BestPoint | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    model_faults: list[dict[str, Any]] = field(default_factory=list)
    pareto: list[dict[str, Any]] | None = None

    def dataframe(self):
        """All evaluations as a pandas ``DataFrame`` (one row per store row)."""
        return evaluations_frame(self.rows, self.input_names, self.output_names)

    @property
    def recommendation(self) -> dict[str, Any] | None:
        """The point to use: ``{"x", "predicted_value", "predicted_sd", "fidelity"}`` from the model's
        posterior at the target fidelity (:attr:`BestPoint.predicted_x`), or None without a model
        (optimize mode)."""
        b = self.best
        if b is None or b.predicted_x is None:
            return None
        return {"x": list(b.predicted_x), "predicted_value": b.predicted_value, "predicted_sd": b.predicted_sd,
                "fidelity": b.fidelity}

    def __repr__(self) -> str:
        st = self.state
        out = (f"CampaignResult(stopped_by={self.stopped_by!r}, calls={st.calls}, failed={st.failed}, "
               f"cost={st.cost:g}")
        if self.best is not None and self.best.value is not None:
            out += f", best={self.best.value:.6g} at [" + ", ".join(f"{v:.4g}" for v in self.best.x) + "]"
        if st.metrics and self.best is None:
            out += "".join(f", {k}={v:.4g}" for k, v in st.metrics.items())
        return out + f", run_dir='{self.run_dir}')"


class Campaign:
    """One campaign over one oracle, stored in ``run_dir``.

    Args:
        config: the validated config, or a dict of its settings or the path of a
            TOML file (validated by :func:`loops.config.parse_config` /
            :func:`~loops.config.load_config`).
        run_dir: the run directory (created; an existing one is resumed when its
            ``config.json`` equals ``config``, else refused naming the keys that differ).
        executor: an ``Executor`` to use instead of the configured one.
        callbacks: ``callback(campaign, state)`` after each model update.
        stopping: extra stopping conditions (ORed with the budget).
        tracker: a :class:`loops.tracking.Tracker` or None to build from the config.
        progress: show a progress bar.
        oracle: an ``Oracle`` instance to use instead of building ``config.oracle``
            (sent to process workers by pickling: it must pickle).

    Raises:
        RunDirError: the run directory cannot be created (a file in the way, no
            permission), is owned by a live driver, holds another campaign, or
            its store lost rows that ``progress.json`` recorded.
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
        oracle=None,
    ):
        if isinstance(config, dict | str | Path):
            from loops.config import load_config, parse_config

            if isinstance(config, dict):
                # an oracle object given beside the settings stands for their [oracle] table
                config = parse_config(config if oracle is None else {**config, "oracle": oracle})
            else:
                config = load_config(config)
        elif not isinstance(config, CampaignConfig):
            raise TypeError(f"config must be a CampaignConfig, a dict of its settings or the path of a TOML file, "
                            f"got {type(config).__name__}")
        if oracle is not None:
            from pydantic import ValidationError

            from loops.config import format_validation_error

            try:
                config = CampaignConfig.model_validate({**config.model_dump(exclude={"oracle"}), "oracle": oracle})
            except ValidationError as e:
                lines = format_validation_error(e)
                if callable(oracle) and not hasattr(oracle, "evaluate"):
                    lines.append("a plain function is wrapped by oracles.FunctionOracle(fn, bounds)")
                raise ValueError("; ".join(lines)) from None
        self.config = config
        if run_dir is not None and not str(run_dir).strip():
            # Path("") is the working directory: an unset shell variable must not make it the store
            raise RunDirError(f"run_dir = {str(run_dir)!r} is empty; give a directory (for the working "
                              "directory, '.')")
        where = Path(run_dir) if run_dir is not None else Path(config.run_dir)
        try:
            if run_dir is None:
                self.run_dir, created = run_dir_for(config, claim=True), True
            else:
                self.run_dir = Path(run_dir)
                created = not self.run_dir.exists()
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a file in the way, a read-only or missing mount, no permission
            raise RunDirError(f"run directory {str(where)!r} cannot be used: {e.strerror or e}") from None
        self._lock = RunLock(self.run_dir)
        try:
            self._lock.acquire()
        except RunDirError:
            self._remove_fresh(created)  # a directory this call made, still empty: not left behind
            raise
        try:
            self._open(config)
        except BaseException as e:
            self._lock.release()
            self._remove_fresh(created)
            if isinstance(e, (OSError, sqlite3.Error)):  # a full disk, a file system gone read-only
                raise RunDirError(f"{self.run_dir}: the run directory could not be written ({type(e).__name__}: "
                                  f"{e}); free space or restore write access, then try again") from None
            raise
        self.store: RunStore
        self._executor_arg = executor
        self.callbacks = list(callbacks or [])
        self.extra_stopping = stopping
        self.progress = progress
        try:
            self._build(config, tracker)
        except BaseException:
            self._abandon(created)
            raise

    def _check_same_instance(self, oracle) -> None:
        """An oracle object given to a campaign is recorded by what defines its problem (names,
        bounds, levels and their costs, noise); a resume with an object that differs in any of
        them is refused, naming them (``config.json`` holds only the object's repr, which
        does not show another box or cost)."""
        costs = getattr(getattr(oracle, "cost_model", None), "costs", None)
        facts = {
            "input_names": list(oracle.input_names), "output_names": list(oracle.output_names),
            "bounds": torch.as_tensor(oracle.bounds, dtype=torch.float64).tolist(),
            "num_fidelities": int(oracle.num_fidelities), "noisy": bool(getattr(oracle, "noisy", False)),
            "costs": None if costs is None else [float(c) for c in costs],
        }
        stored = self.store.get_meta("oracle_instance")
        if stored is None:
            self.store.set_meta("oracle_instance", facts)
            return
        diff = [k for k in facts if stored.get(k) != facts[k]]
        if diff:
            raise RunDirError(
                f"{self.run_dir} was run with another oracle: the object given differs in {', '.join(diff)} "
                f"(recorded {', '.join(f'{k} = {stored.get(k)}' for k in diff)}); resume with the same oracle, "
                "or start a new run directory"
            )

    def _abandon(self, created: bool) -> None:
        """Undo a construction that failed (a bad output name, an oracle that cannot be
        built): the store closed, the lock released, the files this call created removed,
        and the run directory too if this call created it: a config error leaves nothing
        to resume, and a directory that was there keeps what it held."""
        self.store.close()
        self._lock.release()
        self._remove_fresh(created)

    def _remove_fresh(self, created: bool) -> None:
        """Remove the files this construction wrote first (:meth:`_open`), and the run
        directory if this call created it and it is left empty."""
        for f in getattr(self, "_fresh", []):
            f.unlink(missing_ok=True)
        if created:
            try:
                self.run_dir.rmdir()
            except OSError:
                pass

    def _build(self, config: CampaignConfig, tracker) -> None:
        instance = config.oracle.instance
        if instance is not None:
            self.oracle = self.spec = instance
            self._check_same_instance(instance)
            if self._executor_arg is None and config.executor.kind == "process":
                self.spec = PickledOracle(instance)  # raises the one-line error when it cannot be pickled
        else:
            self.spec = config.oracle.spec()
            self.oracle = build_oracle(self.spec)
        self.tracker = tracker
        self.model = None
        self._warm = None
        self._warm_name: str | None = None  # the factory name of the model _warm comes from
        self._updates = 0
        self.problem = self._problem()
        self.stopping = self._stopping()
        self._rows: dict[int, dict[str, Any]] = {r["id"]: r for r in self.store.rows()}
        # a resumed campaign numbers its model updates on from the store's (the rows' iteration)
        self._updates = max((int(r["iteration"]) for r in self._rows.values() if r.get("iteration") is not None),
                            default=0)
        self._restore_warm()
        self._handed: set[int] = set()  # pending rows asked for (or submitted) and not yet told
        self._infra: dict[int, int] = {}  # worker faults per row since this driver started
        self._stale = True  # results since the last model update
        self._version = 0  # changes of finished rows (data)
        self._added = 0  # pending rows added or cancelled (state)
        self._data_cache: dict[Any, Any] = {}
        self._started = False
        self._closed = False
        self._elapsed: float | None = None  # the store's ``elapsed`` as last banked (one owner: the lock's)
        self._t_start = time.time()
        self._acq_time = 0.0
        self._fit_time = 0.0
        #: model fits and acquisitions that failed numerically, oldest first, kept
        #: in the run store (``model_faults``): ``stage`` (``"fit"`` or
        #: ``"acquisition"``), ``model``, ``acquisition``, ``results`` (successful
        #: results then), ``update``, ``reason`` and ``fallback`` (what was used instead)
        self.model_faults: list[dict[str, Any]] = list(self.store.get_meta("model_faults", []) or [])
        self._spread_warned = False
        self._mixed_noise_warned = False
        self._cost_refused = False
        self.exec: PointRunner | None = None

    def _open(self, config: CampaignConfig) -> None:
        cfg_file = self.run_dir / "config.json"
        store_file = self.run_dir / "store.sqlite"
        # the files this construction writes first (removed again if it fails: :meth:`_abandon`)
        self._fresh = [f for f in (cfg_file,) if not f.exists()]
        if not store_file.exists():
            self._fresh += [store_file, store_file.with_name("store.sqlite-wal"), store_file.with_name("store.sqlite-shm")]
        new = config.model_dump(mode="json")
        if cfg_file.exists():
            try:
                old = json.loads(cfg_file.read_text())
            except ValueError as e:
                raise RunDirError(f"{cfg_file}: not valid JSON ({e}); the file is damaged or truncated") from None
            diff = config_differences(_as_current(config, old), new)
            # the budget, where the points run and where they are tracked are not what the
            # campaign is: a larger budget, or a scheduler restarted at another address (a new
            # batch job), continues the campaign, and config.json (written under the run
            # directory's lock, held here) takes them for later resumes
            fixed = self._fixed(diff)
            moved = len(fixed) < len(diff)
            diff = fixed
            if diff:
                raise RunDirError(
                    f"{self.run_dir} holds another campaign: its config.json differs in {', '.join(diff)}; "
                    "choose a new run directory, or resume this one (`scalebridge resume`; with an oracle object, "
                    "Campaign.resume(run_dir, oracle=...))"
                )
            if moved:
                write_atomic(cfg_file, config.model_dump_json(indent=2))
        prog = read_progress(self.run_dir)
        if prog.get("finished", 0) > 0 and not store_file.exists():
            raise RunDirError(f"{store_file} is missing but progress.json records {prog['finished']} "
                              "finished evaluations; restore the store (with its -wal file) or start a new run")
        self.store = RunStore(store_file, check=store_file.exists())
        n_fin = sum(v for k, v in self.store.counts().items() if k != "pending")
        if n_fin < prog.get("finished", 0):
            self.store.close()
            raise RunDirError(
                f"{store_file} holds {n_fin} finished evaluations but progress.json records "
                f"{prog['finished']}: the store was emptied or lost its write-ahead log (store.sqlite-wal); "
                "restore them, or start a new run directory"
            )
        if not cfg_file.exists():
            write_atomic(cfg_file, config.model_dump_json(indent=2))
        recorded = self.store.get_meta("config")
        if recorded is None:
            self.store.set_meta("config", new)
            self.store.set_meta("status", "created")
            self.store.set_meta("elapsed", 0.0)
        else:
            self._check_recorded_config(recorded, new, config)

    #: settings a resumed campaign may change (how long it runs, where, how it is tracked); any
    #: other difference from the config its store recorded would mix results of two campaigns
    RESUMABLE_CHANGES = ("budget", "executor", "tracking")

    @classmethod
    def _fixed(cls, diff: list[str]) -> list[str]:
        """The differing config keys (dotted) that a resume may not change."""
        return [k for k in diff if k.split(".")[0] not in cls.RESUMABLE_CHANGES]

    def _check_recorded_config(self, recorded: dict, new: dict, config: CampaignConfig) -> None:
        """Refuse a config (``config.json`` edited by hand, or given again) that differs from the one
        the run store recorded other than in :data:`RESUMABLE_CHANGES`; record it when it differs there
        (``status`` reads it), so that results of two oracles are never fitted together."""
        diff = [k for k in config_differences(_as_current(config, recorded), new)
                if not k.startswith("oracle.instance")]
        fixed = self._fixed(diff)
        if fixed:
            self.store.close()
            raise RunDirError(
                f"{self.run_dir}: config.json differs from the config its run store recorded in {', '.join(fixed)} "
                "(edited by hand?); the results there were computed with the recorded settings: restore "
                "config.json (only budget, executor and tracking may change on a resume), or start a new run directory")
        if diff:
            self.store.set_meta("config", new)
        self._budget_changed = any(k.startswith("budget.") for k in diff)

    _budget_changed = False  # the budget differs from the one the run store recorded

    def _trim_to_budget(self) -> None:
        """A budget lowered on a resume: cancel the pending design points (newest first) that
        it no longer pays for, so that points in flight when the earlier driver stopped, or
        an initial design written under the larger budget, are not evaluated beyond it."""
        b = self.config.budget
        if not self._budget_changed or (b.calls is None and b.cost is None):
            return
        self._budget_changed = False
        pending = sorted((rid for rid, r in self._rows.items()
                          if r["status"] == "pending" and r["role"] != "validation"), reverse=True)
        for rid in pending:
            st = self.state()
            over_calls = b.calls is not None and st.submitted > b.calls
            over_cost = b.cost is not None and st.committed_cost > b.cost + 1e-9
            if not (over_calls or over_cost):
                break
            which = f"budget.calls = {b.calls}" if over_calls else f"budget.cost = {b.cost:g}"
            self.store.cancel(rid, f"cancelled: beyond {which}, lowered on resume")
            self._rows[rid] = self.store.row(rid)
            self._added += 1

    # -------------------------------------------------------------- set-up
    @classmethod
    def resume(cls, run_dir: str | Path, oracle=None, **kwargs) -> Campaign:
        """Reopen a campaign from its run directory.

        Args:
            oracle: the ``Oracle`` instance again, when the campaign was started with one
                (a Python object is not stored in ``config.json``).
        """
        from pydantic import ValidationError

        run_dir = Path(run_dir)
        f = run_dir / "config.json"
        if not f.exists():
            raise RunDirError(f"{run_dir} is not a campaign run directory (no config.json)")
        try:
            text = f.read_text()
        except OSError as e:
            raise RunDirError(f"{f}: cannot be read ({e.strerror or e})") from None
        try:
            if oracle is not None:
                try:
                    data = json.loads(text)
                except ValueError:
                    data = None
                if isinstance(data, dict):
                    data["oracle"] = oracle
                    return cls(CampaignConfig.model_validate(data), run_dir=run_dir, **kwargs)
            config = CampaignConfig.model_validate_json(text)
        except ValidationError as e:
            first = e.errors()[0]
            what = "truncated or not JSON" if first["type"] == "json_invalid" else \
                f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
            raise RunDirError(f"{f}: not a valid campaign config ({what})") from None
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
                if name in all_names:  # an oracle output the campaign does not model (config outputs)
                    raise ValueError(f"objective output {name!r} is not among the modeled outputs = {names}; "
                                     f"add it to outputs")
                raise ValueError(f"objective output {name!r} is not an output of the oracle; outputs: {names}")
            return names.index(name)

        outs = c.objective.outputs or [names[0]]
        mins = c.objective.minimize
        mins = [mins] * len(outs) if isinstance(mins, bool) else list(mins)
        if len(mins) != len(outs):
            raise ValueError(f"objective.minimize has {len(mins)} entries for {len(outs)} outputs")
        target = c.fidelity.target if c.fidelity.target is not None else o.num_fidelities - 1
        L = o.num_fidelities
        if not 0 <= target < L:
            raise ValueError(f"fidelity.target = {target} is not a level of oracle {type(o).__name__}: "
                             f"levels are 0..{L - 1}")
        bad = [f for f in c.initial.fidelities or [] if not 0 <= f < L]
        if bad:
            raise ValueError(f"initial.fidelities = {c.initial.fidelities} holds {bad}, not levels of oracle "
                             f"{type(o).__name__}: levels are 0..{L - 1}")
        rp = c.objective.ref_point
        if rp is not None and len(rp) != len(outs):
            raise ValueError(f"objective.ref_point has {len(rp)} values for the {len(outs)} objective outputs "
                             f"{outs}; give one per objective output")
        if c.acquisition.name == "qLogNEHVI" and len(outs) < 2:
            raise ValueError(f"acquisition.name = 'qLogNEHVI' optimizes several objectives and objective.outputs "
                             f"names {outs}; name two or more outputs, or use 'qLogNEI' for one")
        if c.mode == "optimize" and len(outs) > 1 and c.acquisition.name in ("qLogNEI", *MULTI_FIDELITY_ACQUISITIONS):
            # it would optimize the signed sum of the outputs in their raw units, a scalarization nothing asks for
            raise ValueError(f"objective.outputs names {len(outs)} objectives {outs} and acquisition.name = "
                             f"{c.acquisition.name!r} optimizes one; use 'qLogNEHVI' for their Pareto front, or name "
                             "one objective (the others can be objective.constraints)")
        if c.acquisition.q > 1 and not c.executor.synchronous:
            warnings.warn(f"acquisition.q = {c.acquisition.q} applies when executor.synchronous = true; this "
                          "asynchronous campaign proposes one point per free worker", UserWarning, stacklevel=3)
        if rp is not None and c.acquisition.name != "qLogNEHVI":
            raise ValueError(f"objective.ref_point is the reference point of qLogNEHVI's hypervolume; acquisition.name "
                             f"= {c.acquisition.name!r} does not use it (remove it)")
        if L == 1 and c.acquisition.name in MULTI_FIDELITY_ACQUISITIONS:
            raise ValueError(f"acquisition.name = {c.acquisition.name!r} is a multi-fidelity acquisition and "
                             f"oracle {type(o).__name__} has one fidelity; use 'qLogNEI'")
        if L > 1 and c.model.name not in BUILTIN and c.model.bootstrap == "none" and c.acquisition.name != "sobol":
            levels = initial_levels(c, target)
            missing = sorted(set(range(L)) - set(levels))
            if missing:
                raise ValueError(
                    f"initial.fidelities = {levels} leaves out level(s) {missing}: model {c.model.name!r} needs "
                    f"results at every level before its first fit, so the acquisition could never start; "
                    f"use initial.fidelities = {list(range(L))}, model.bootstrap = 'mf_gp' (the default) or model 'mf_gp'")
        check_model_spec(c.model.name, c.model.options, o.dim, L)
        if L > 1 and c.model.name not in BUILTIN and c.model.bootstrap not in ("none", c.model.name) \
                and c.acquisition.name != "sobol":
            # levels the campaign asks by itself: the initial design's, the target, and (for an
            # acquisition that chooses levels by cost) the cheaper ones; a level above the target
            # costs more than the target and is asked only if named in the initial design
            first = sorted(initial_levels(c, target))
            asked = set(first) | {target}
            if c.acquisition.name in LEVEL_CHOOSING_ACQUISITIONS:
                asked |= set(range(target))
            unasked = sorted(set(range(L)) - asked)
            if unasked:
                # a resumed campaign: a level already told its results is no longer missing
                need = self._level_results_needed()
                have = [0] * L
                for r in self.store.rows():
                    if r["status"] == "done" and r["role"] != "validation" and 0 <= r["fidelity"] < L:
                        have[r["fidelity"]] += 1
                unasked = [k for k in unasked if have[k] < need]
            if unasked:
                warnings.warn(
                    f"model.name = {c.model.name!r} is fitted once every level has {need} "
                    f"results, and this campaign does not ask level(s) {unasked} (fidelity.target = {target}, "
                    f"acquisition {c.acquisition.name!r}, initial design at {first}): "
                    f"unless their results are told, it runs on the bootstrap model {c.model.bootstrap!r}; add them "
                    f"to initial.fidelities to fit {c.model.name!r}", BootstrapModelWarning, stacklevel=3)
        if L > 1 and c.model.name not in BUILTIN and c.model.bootstrap == "none" and c.acquisition.name != "sobol":
            need = self._level_results_needed()
            if c.initial.n < need:
                raise ValueError(
                    f"initial.n = {c.initial.n}: model {c.model.name!r} needs {need} results at every level before "
                    f"its first fit, so with model.bootstrap = 'none' the acquisition could never start; use "
                    f"initial.n >= {need}, model.bootstrap = 'mf_gp' (the default) or model 'mf_gp'")
        init_levels = initial_levels(c, target)
        if _repeats_identical(o) and len(set(init_levels)) < len(init_levels):
            raise ValueError(
                f"initial.fidelities = {c.initial.fidelities} names a level twice and oracle {type(o).__name__} "
                f"{'is deterministic' if not o.noisy else 'draws its noise from a seed of the point'}: the same "
                f"points would be evaluated again with the same answers; name each level once")
        self._check_output_counts(names, outs)
        costs = tuple(o.cost_model.costs) if hasattr(o.cost_model, "costs") else (1.0,) * o.num_fidelities
        if len(costs) != o.num_fidelities:
            raise ValueError(f"oracle {type(o).__name__}'s cost model has {len(costs)} costs {list(costs)} for "
                             f"{o.num_fidelities} fidelity levels; give one cost per level")
        if not self.store.get_meta("initialized"):  # a campaign that started keeps its design
            check_cost_budget(c, costs, target)
        return Problem(
            bounds=o.bounds.to(torch.float64),
            objective_idx=[idx(n) for n in outs],
            signs=[-1.0 if mn else 1.0 for mn in mins],
            constraints=[(idx(k.output), k.lower, k.upper) for k in c.objective.constraints],
            num_fidelities=o.num_fidelities,
            target_fidelity=target,
            costs=costs,
            ref_point=c.objective.ref_point,
        )

    def _level_results_needed(self) -> int:
        """Results every level needs before a co-kriging model is fitted: ``min(3, initial.n)``,
        at least the model's ``min_level_points`` (3 for recursive co-kriging and NARGP)."""
        cls = model_class(self.config.model.name)
        return max(min(3, self.config.initial.n), int(getattr(cls, "min_level_points", 1)))

    def _check_output_counts(self, names: list[str], objectives: list[str]) -> None:
        """Refuse, before any oracle call, settings that need one modeled output with several:
        the co-kriging models (one output each) and BoTorch's multi-fidelity knowledge gradient
        and max-value entropy (one output, no outcome constraints)."""
        from surrogates.multifidelity import MultiFidelityModel

        c = self.config
        acq = c.acquisition.name
        if acq in ("qMFKG", "qMFMES") and c.objective.constraints:
            raise ValueError(
                f"acquisition.name = {acq!r} takes no outcome constraints (BoTorch's multi-fidelity "
                f"{'knowledge gradient' if acq == 'qMFKG' else 'max-value entropy'} has none) and objective.constraints "
                f"names {[k.output for k in c.objective.constraints]}; use 'qMFLogEI', which weighs improvement by "
                f"the probability of feasibility"
            )
        why = None
        if acq in ("qMFKG", "qMFMES"):
            why = f"acquisition.name = {acq!r} takes one modeled output"
        elif c.model.name not in BUILTIN:
            cls = model_class(c.model.name)
            if isinstance(cls, type) and issubclass(cls, MultiFidelityModel):
                why = f"model.name = {c.model.name!r} models one output (use 'mf_gp' for several)"
        if why is not None and len(names) != 1:
            raise ValueError(f"{why} and the campaign models {len(names)}: {names}; set outputs = {objectives[:1]}")

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
        """Successful points: ``X`` (``n x D``, with fidelity column if multi-fidelity), ``Y`` (``n x m``), ``Yvar``.

        Read from the rows this campaign holds in memory (it is the store's only writer).
        """
        key = (role, fidelity, self._version)
        hit = self._data_cache.get(key)
        if hit is not None:
            return hit
        rows = [r for r in self._rows.values() if r["status"] == "done"
                and ((role is None and r["role"] != "validation") or r["role"] == role)]
        if fidelity is not None:
            rows = [r for r in rows if r["fidelity"] == fidelity]
        D = self.problem.d + (1 if self.problem.multi_fidelity else 0)
        m = len(self.out_idx)
        if not rows:
            out = torch.zeros(0, D, dtype=torch.float64), torch.zeros(0, m, dtype=torch.float64), None
        else:
            X = torch.tensor([r["x"] for r in rows], dtype=torch.float64)
            if self.problem.multi_fidelity:
                X = torch.cat([X, torch.tensor([[float(r["fidelity"])] for r in rows], dtype=torch.float64)], -1)
            Y = torch.tensor([r["y"] for r in rows], dtype=torch.float64)[:, self.out_idx]
            Yvar = None
            known = [r["yvar"] is not None for r in rows]
            if all(known):
                Yvar = torch.tensor([r["yvar"] for r in rows], dtype=torch.float64)[:, self.out_idx].clamp_min(0.0)
            elif any(known) and not getattr(self.oracle, "noisy", False):
                # a deterministic oracle's own answers are exact: variance 0 beside the ones told
                Yvar = torch.tensor([r["yvar"] if r["yvar"] is not None else [0.0] * len(r["y"]) for r in rows],
                                    dtype=torch.float64)[:, self.out_idx].clamp_min(0.0)
            elif any(known) and not self._mixed_noise_warned:
                self._mixed_noise_warned = True
                warnings.warn(f"{sum(known)} of {len(rows)} results have known variances (Yvar) and the others not: "
                              "the model infers one noise level for all of them (known and unknown noise are not "
                              "mixed in one fit); tell every result of this noisy oracle with its Yvar, or none",
                              NoiseWarning, stacklevel=3)
            out = X, Y, Yvar
        self._data_cache = {k: v for k, v in self._data_cache.items() if k[2] == self._version}
        self._data_cache[key] = out
        return out

    def best_value(self) -> float | None:
        """Best objective among feasible successful design points at the target fidelity."""
        b = self._best_observed()
        return None if b is None else b[1]

    def _best_observed(self) -> tuple[int, float] | None:
        """``(index into data(), value)`` of the best feasible point at the target fidelity."""
        X, Y, _ = self.data()
        idx = torch.arange(len(Y))
        if self.problem.multi_fidelity and len(X):
            keep = X[:, -1] == self.problem.target_fidelity
            Y, idx = Y[keep], idx[keep]
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
        k = int((Y[feas, j] * s).argmax())
        return int(idx[feas][k]), float(Y[feas, j][k])

    def pareto_front(self) -> list[dict[str, Any]] | None:
        """Optimize mode with several objectives: the observed Pareto front, one dict per point
        ``{"id", "x": {input: value}, "y": {objective: value}}``, over the design points done at
        the target fidelity whose observed values satisfy the constraints, non-dominated in each
        objective's sense (:func:`botorch.utils.multi_objective.pareto.is_non_dominated`; ties
        kept). None with one objective or in learn mode."""
        from botorch.utils.multi_objective.pareto import is_non_dominated

        p = self.problem
        if self.config.mode != "optimize" or len(p.objective_idx) < 2:
            return None
        rows = [r for r in self._rows.values() if r["status"] == "done" and r["role"] != "validation"
                and r["fidelity"] == p.target_fidelity]
        if not rows:
            return []
        Y = torch.tensor([[r["y"][k] for k in self.out_idx] for r in rows], dtype=torch.float64)
        ok = satisfies_constraints(p, Y)
        rows, Y = [r for r, k in zip(rows, ok.tolist(), strict=True) if k], Y[ok]
        if not rows:
            return []
        signs = torch.tensor(p.signs, dtype=torch.float64)
        front = is_non_dominated(Y[:, p.objective_idx] * signs, deduplicate=False)
        names = self.model_output_names
        return [{"id": r["id"], "x": dict(zip(self.oracle.input_names, r["x"], strict=True)),
                 "y": {names[j]: float(Y[i, j]) for j in p.objective_idx}}
                for i, r in enumerate(rows) if bool(front[i])]

    def best(self, predicted: bool = True) -> BestPoint | None:
        """The best observed point and value, and (``predicted``) the model's best predicted point.

        Optimize mode with one objective; the best is over feasible points at the
        target fidelity. The predicted point (the recommendation) maximizes the
        signed posterior mean of the objective over the bounds with the fidelity
        fixed at the target level (``PosteriorMean`` in a
        ``FixedFeatureAcquisitionFunction``, as BoTorch's multi-fidelity tutorials
        recommend); with a multi-fidelity oracle it exists even before any point
        was observed at the target level. With outcome constraints it is the best
        by posterior mean among that maximizer and the observed designs at the
        target level whose constraint outputs' posterior means satisfy the
        constraints (none, with a warning, when no such point exists). Where the
        maximizer is a design that failed at the target level, it is the best by
        posterior mean of the designs observed there (none, with a warning, when
        no design has succeeded there). None in learn mode.

        With a deterministic oracle at one fidelity the observed values are exact
        (unless results were told with a variance above 0), and the maximizer is
        recommended only where its signed posterior mean less
        :data:`RECOMMEND_Z` posterior standard deviations (a one-sided 97.5 %
        bound; Huang et al.'s 2006 effective best solution, J. Global Optim. 34: 441,
        takes one) beats every observed value, and (with outcome constraints) where
        each constraint output holds by that many of its standard deviations; else
        the best observed design (by its observed values: feasible, and best) is. Where the maximizer is a guess (a
        posterior mean extrapolated into a corner, below the function's minimum,
        with a standard deviation of the same size), the best observation is the answer.
        """
        if self.config.mode != "optimize" or len(self.problem.objective_idx) != 1:
            return None
        b = self._best_observed()
        X, _, _ = self.data()
        done = [r for r in self._rows.values() if r["status"] == "done" and r["role"] != "validation"]
        lev = self.problem.target_fidelity
        if b is None:
            out = BestPoint(None, None, None, fidelity=lev)
        else:
            x = X[b[0], : self.problem.d].tolist()
            out = BestPoint(x, b[1], done[b[0]]["id"], fidelity=lev)
        if predicted and self.model is not None:
            try:
                with _one_torch_thread():
                    out.predicted_x, out.predicted_value, out.predicted_sd = self._predicted_best()
            except Exception as e:  # noqa: BLE001  (a model that cannot be optimized has no prediction)
                warnings.warn(f"best(): no predicted best point ({type(e).__name__}: {e})", stacklevel=2)
        return out

    def _predicted_best(self) -> tuple[list[float], float, float]:
        from botorch.acquisition import FixedFeatureAcquisitionFunction, PosteriorMean
        from botorch.acquisition.objective import ScalarizedPosteriorTransform
        from botorch.optim import optimize_acqf

        p = self.problem
        j, sgn = p.objective_idx[0], p.signs[0]
        w = torch.zeros(len(self.out_idx), dtype=torch.float64)
        w[j] = sgn
        acqf = PosteriorMean(self.model, posterior_transform=ScalarizedPosteriorTransform(weights=w))
        if p.multi_fidelity:
            acqf = FixedFeatureAcquisitionFunction(acqf, p.d + 1, [p.d], [float(p.target_fidelity)])
        # seeded in a forked RNG: a peek at best() leaves the caller's torch random state alone
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            warnings.simplefilter("ignore", OptimizationWarning)
            # a restart that stops early (L-BFGS-B "ABNORMAL") leaves the others: not the user's concern
            warnings.filterwarnings("ignore", message="Optimization failed", category=RuntimeWarning)
            xb, _ = optimize_acqf(acqf, bounds=p.bounds, q=1, num_restarts=4, raw_samples=256,
                                  options={"maxiter": 200})
        failed_there = self._failed_at(xb[0])
        # a deterministic oracle at one fidelity: its observations are exact, and the
        # maximizer must beat them by RECOMMEND_Z of its own standard deviations; results
        # told with a variance above 0 (of the objective or a constraint output) are not exact
        X, Y, Yvar = self.data()
        cols = [j] + [c for c, _, _ in p.constraints]
        told_noisy = Yvar is not None and bool((Yvar[:, cols] > 0).any())
        exact = not p.multi_fidelity and not getattr(self.oracle, "noisy", False) and not told_noisy
        # outcome constraints, a maximizer where the oracle failed (the model, fitted to
        # the successful points only, knows nothing of failures), or exact observations:
        # the best point among the box's maximizer (unless it failed) and the observed
        # designs (at the target level) that satisfy the constraints: by posterior mean, or
        # for exact observations as said below
        if p.multi_fidelity:
            at = X[:, -1] == p.target_fidelity
            X, Y = X[at], Y[at]
            xb = torch.cat([xb, torch.full_like(xb[:, :1], float(p.target_fidelity))], -1)
        if not (p.constraints or failed_there or exact):
            X, Y = X[:0], Y[:0]
        if failed_there and not len(X):
            raise ValueError("the posterior mean's maximizer at the target level is a design that failed there, "
                             "and no design has succeeded at the target level")
        cands = X if failed_there else torch.cat([xb, X])
        with torch.no_grad():
            post = self.model.posterior(cands)
            mean = post.mean.reshape(len(cands), -1)
            sd = post.variance.reshape(len(cands), -1).clamp_min(0).sqrt()
        feas = satisfies_constraints(p, mean) if p.constraints else torch.ones(len(cands), dtype=torch.bool)
        merit = sgn * mean[:, j]
        if exact:
            # the observed designs by their observed values; the maximizer (row 0) by
            # RECOMMEND_Z standard deviations: of its objective, and of each constraint output
            obs = 0 if failed_there else 1  # the first observed row
            merit[obs:] = sgn * Y[:, j]
            if p.constraints:
                feas[obs:] = satisfies_constraints(p, Y)
            if not failed_there:
                merit[0] = merit[0] - RECOMMEND_Z * sd[0, j]
                if p.constraints:
                    z = RECOMMEND_Z * sd[:1]
                    feas[0] &= bool(satisfies_constraints(p, mean[:1] - z)[0] & satisfies_constraints(p, mean[:1] + z)[0])
        if not feas.any():
            raise ValueError("no candidate (the posterior mean's maximizer or an observed design) is predicted "
                             "to satisfy the constraints")
        score = torch.where(feas, merit, torch.full_like(mean[:, j], -math.inf))
        k = int(score.argmax())
        return cands[k, : p.d].tolist(), float(mean[k, j]), float(sd[k, j])

    def _failed_at(self, x: Tensor) -> bool:
        """Whether a design point ``x`` (``d``) failed at the target level (within 1e-6
        of the box in every input) and never succeeded there."""
        p = self.problem
        span = (p.bounds[1] - p.bounds[0]).clamp_min(1e-300)

        def near(r) -> bool:
            return bool((((torch.tensor(r["x"], dtype=torch.float64) - x) / span).abs() <= 1e-6).all())

        at = [r for r in self._rows.values() if r["role"] != "validation" and r["x"] is not None
              and (not p.multi_fidelity or r["fidelity"] == p.target_fidelity) and near(r)]
        return any(r["status"] == "failed" for r in at) and not any(r["status"] == "done" for r in at)

    def dataframe(self):
        """All evaluations as a pandas ``DataFrame`` (inputs, outputs and variances by name)."""
        rows = [self._rows[k] for k in sorted(self._rows)]
        return evaluations_frame(rows, tuple(self.oracle.input_names), tuple(self.oracle.output_names))

    # -------------------------------------------------------------- model
    def _save_warm(self, name: str) -> None:
        """Store what the next update of a BoTorch model starts from (meta ``warm``: its
        hyperparameters, the update they belong to and the data size of the last full refit),
        keeping the one before as ``warm_prev``. A resumed driver takes the entry of the update
        its rows say it is at (:meth:`_restore_warm`), so its next update is the one the driver
        that died would have made: at and above ``model.refit_all_below`` observations the
        updates are warm-started (and between refits reuse the hyperparameters), and a resume
        that started them afresh had proposed other points than the uninterrupted run."""
        if name not in BUILTIN or self._warm is None:
            return
        kept = {k: v for k, v in self._warm.items() if k.startswith(WARM_KEYS) and v.is_floating_point()}
        dtype = str(next(iter(kept.values())).dtype).removeprefix("torch.") if kept else "float64"
        rec = {"update": self._updates, "name": name, "n_at_refit": getattr(self, "_n_at_refit", None),
               "dtype": dtype, "state": {k: v.tolist() for k, v in kept.items()}}
        prev = self.store.get_meta("warm")
        # two writes, the older entry first: a driver killed between them leaves valid entries
        if isinstance(prev, dict) and prev.get("update") != self._updates:
            self.store.set_meta("warm_prev", prev)
        self.store.set_meta("warm", rec)

    def _restore_warm(self) -> None:
        """Take back the warm start of the update this campaign's rows are at (see :meth:`_save_warm`)."""
        for key in ("warm", "warm_prev"):
            rec = self.store.get_meta(key)
            if not isinstance(rec, dict) or rec.get("update") != self._updates or not self._updates:
                continue
            try:
                dtype = getattr(torch, str(rec.get("dtype") or "float64"))
                self._warm = {k: torch.tensor(v, dtype=dtype) for k, v in rec["state"].items()}
            except (TypeError, ValueError, AttributeError, KeyError):
                self._warm = None  # an entry this code cannot read: the next update refits from scratch
                return
            self._warm_name = rec.get("name")
            if rec.get("n_at_refit") is not None:
                self._n_at_refit = int(rec["n_at_refit"])
            return

    def update_model(self) -> Any:
        X, Y, Yvar = self.data()
        if len(X) < 2:
            return None
        if self.config.acquisition.name == "sobol" and self.config.mode == "optimize":
            return None  # the baseline needs no model
        c = self.config.model
        name, options = c.name, dict(c.options)
        levels = X[:, -1].round().long() if self.problem.multi_fidelity else None
        if self.problem.multi_fidelity and c.name not in BUILTIN:
            # the co-kriging models need data at every level (a recursive or NARGP
            # level above the first more points than its trend terms [1, f]): until
            # every level has _level_results_needed(), fit the bootstrap model
            # (BoTorch's multi-fidelity GP, which shares one kernel over the levels),
            # or keep the last model while the initial design's results come in
            need = self._level_results_needed()
            counts = torch.bincount(levels, minlength=self.problem.num_fidelities)
            if bool((counts < need).any()):
                if c.bootstrap == "none":
                    return self.model
                name, options = c.bootstrap, {}
        n = len(X)
        last = getattr(self, "_n_at_refit", None)
        refit = (
            self._warm is None
            or self._warm_name != name
            or last is None
            or (self._updates % c.refit_every == 0
                and (n < c.refit_all_below or n - last >= max(1.0, c.refit_growth * last)))
        )
        if self.problem.multi_fidelity and name not in BUILTIN:
            options.setdefault("num_fidelities", self.problem.num_fidelities)
            options.setdefault("costs", list(self.problem.costs))
        Yvar = self.fit_noise(Y, Yvar)
        Yfit = Y
        winsorize = c.winsorize if c.winsorize is not None else not self.problem.multi_fidelity
        if winsorize and self.config.mode == "optimize" and len(self.problem.objective_idx) == 1:
            Yfit = winsorize_objective(Y, self.problem.objective_idx[0], self.problem.signs[0], groups=levels)
        # small data: every update is a full fit from the default initialization (the
        # marginal likelihood moves a lot with each point, and a warm start can keep a poor
        # local optimum); large data: warm-started short refits on the schedule above
        warm = self._warm if n >= c.refit_all_below and self._warm_name == name else None
        t0 = time.perf_counter()
        try:
            model = fit_model(
                name, X, Yfit, self.problem.model_bounds, Yvar=Yvar,
                fidelity_dim=self.problem.d if self.problem.multi_fidelity else None,
                options=options, warm=warm, refit=refit,
                names=(tuple(self.oracle.input_names), self.model_output_names),
            )
        except MODEL_FAULTS as e:
            self._fit_time = time.perf_counter() - t0
            kept = "kept the model of the previous update" if self.model is not None else "no model: Sobol proposals"
            self._model_fault("fit", name, n, e, kept)
            return self.model
        self.model = model
        if refit:
            self._n_at_refit = n
        self._fit_time = time.perf_counter() - t0
        self._updates += 1
        try:
            self._warm = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self._warm_name = name
        except Exception:  # noqa: BLE001
            self._warm = None
        self._save_warm(name)
        if len(Y) > 1:
            var = Y.var(dim=0)  # an output without spread (yet) weighs as one of unit variance
            self.problem.output_scale = torch.where(var > 0, var, torch.ones_like(var))
        else:
            self.problem.output_scale = None
        return self.model

    def fit_noise(self, Y: Tensor, Yvar: Tensor | None) -> Tensor | None:
        """The known noise a model of this campaign's data ``Y`` (``n x m``) is fitted with:
        zeros for a deterministic oracle's data without ``Yvar`` (fitted noise-free: the
        model interpolates; ``model.noise_free`` overrides), else ``Yvar``."""
        c = self.config.model
        noise_free = c.noise_free if c.noise_free is not None else not self.oracle.noisy
        return torch.zeros_like(Y) if noise_free and Yvar is None else Yvar

    def validation_metrics(self, model=None) -> dict[str, float]:
        """Held-out accuracy at the target fidelity (learn mode) of ``model`` (default:
        the campaign's model; the final surrogate handed over is scored the same way).

        ``rmse``, ``nrmse`` (RMSE over the validation outputs' std, averaged over
        outputs), ``nlpd``, ``coverage95`` (of the observations: the latent
        variance plus each validation result's own known variance where the
        oracle reports one, else the target level's noise), and ``nivar``: the integrated
        posterior variance of the latent target level over the validation
        inputs (a Sobol set), divided by the outputs' variance and averaged over
        outputs. The normalized ``nrmse`` and ``nivar`` average over the outputs that
        vary on the validation set, and are absent when none does. Empty until every
        validation point has its result.
        """
        model = self.model if model is None else model
        if model is None:
            return {}
        if any(r["role"] == "validation" and r["status"] == "pending" for r in self._rows.values()):
            return {}  # the whole validation set or nothing: a part of it would misstate the error
        Xv, Yv, Yvv = self.data(role="validation")
        if len(Xv) < 2:
            return {}
        if self.problem.multi_fidelity:
            Xv = Xv.clone()
            Xv[:, -1] = float(self.problem.target_fidelity)
        mu, var_latent = predict(model, Xv)
        # each result's own error bar where the oracle gives one, else the level's noise
        var = var_latent + (Yvv if Yvv is not None and bool(Yvv.gt(0).any())
                            else self._target_noise(Yv.shape[-1], model))
        err = mu - Yv
        rmse = err.pow(2).mean(0).sqrt()
        nlpd = (0.5 * torch.log(2 * math.pi * var) + 0.5 * err.pow(2) / var).mean()
        cover = (err.abs() <= 1.959964 * var.sqrt()).double().mean()
        # the normalized metrics over the outputs that vary on the validation set: a constant
        # output has no spread to normalize by (dividing by a clamp had given nivar = 1e293)
        spread = Yv.var(0) > 0
        varies = bool(spread.any())
        out = {"rmse": float(rmse.mean())}
        if varies:
            out["nrmse"] = float((rmse[spread] / Yv.std(0)[spread]).mean())
        out.update(nlpd=float(nlpd), coverage95=float(cover))
        if varies:
            out["nivar"] = float((var_latent.mean(0)[spread] / Yv.var(0)[spread]).mean())
        return out

    def _target_noise(self, m: int, model=None) -> Tensor:
        """``m`` observation noise variances at the target level (original units): the model's
        noise for a single-fidelity oracle; with several levels, that of the target level (a
        co-kriging model's own per-level noise, else the mean known variance of the target
        level's results), not a mean over the levels, whose cheap levels may be far noisier."""
        model = self.model if model is None else model
        noise = noise_variance(model, m)
        if not self.problem.multi_fidelity:
            return noise
        from surrogates.multifidelity import MultiFidelityModel

        t = self.problem.target_fidelity
        if isinstance(model, MultiFidelityModel) and m == 1:
            return model.noise_variance()[t].detach().reshape(1).to(torch.float64)
        X, _, Yvar = self.data()
        top = X[:, -1] == t if len(X) else torch.zeros(0, dtype=torch.bool)
        if Yvar is not None and bool(top.any()):
            return Yvar[top].mean(0).to(torch.float64)
        return noise

    # -------------------------------------------------------------- state
    def state(self, running: list[dict] | None = None) -> LoopState:
        """Counts, cost and time of the design calls (from the rows held in memory, once per change)."""
        cached = getattr(self, "_state_cache", None)
        if cached is not None and cached[0] == (self._version, self._added):
            calls, submitted, failed, pend, cost, pend_cost, best = cached[1]
        else:
            calls = failed = submitted = pend = 0
            cost = pend_cost = 0.0
            for r in self._rows.values():
                if r["role"] == "validation" or r["status"] == "cancelled":
                    continue
                submitted += 1
                if r["status"] == "pending":
                    pend += 1
                    pend_cost += self.expected_cost(r["x"], r["fidelity"])
                else:
                    calls += 1
                    cost += r["cost"] or 0.0
                    failed += r["status"] == "failed"
            best = self.best_value()
            self._state_cache = ((self._version, self._added), (calls, submitted, failed, pend, cost, pend_cost, best))
        return LoopState(
            iteration=self._updates,
            calls=calls,
            submitted=submitted,
            failed=failed,
            running=pend,
            cost=cost,
            committed_cost=cost + pend_cost,
            elapsed=self._banked() + (time.time() - self._t_start if self._lock.held else 0.0),
            best=best,
            metrics=dict(getattr(self, "_last_metrics", {})),
        )

    def _cost_ratios(self) -> tuple[float, ...]:
        """Per level, the ratio of the costs the oracle reported to its cost model's at the
        same points, averaged over the finished design points with the model's own value
        counted as one more record (1 before any result): an oracle that reports measured
        costs 1.5 times its model's is charged so ahead of submission."""
        cached = getattr(self, "_ratio_cache", None)
        if cached is not None and cached[0] == self._version:
            return cached[1]
        L = self.problem.num_fidelities
        out = []
        for k in range(L):
            rows = [r for r in self._rows.values()
                    if r["fidelity"] == k and r["status"] in ("done", "failed") and r["role"] != "validation"
                    and r.get("cost") is not None and math.isfinite(r["cost"]) and r["cost"] > 0]
            # one cost-model call per level (this runs after every result)
            nominal = self._model_costs([r["x"] for r in rows], k) if rows else []
            ratios = [float(r["cost"]) / c for r, c in zip(rows, nominal, strict=True)]
            out.append((1.0 + sum(ratios)) / (1 + len(ratios)))
        out = tuple(out)
        self._ratio_cache = (self._version, out)
        return out

    def _model_costs(self, xs: list, fidelity: int) -> list[float]:
        """The oracle's cost model at points ``xs`` (each ``d`` numbers) of one level; the
        level's cost where the model fails or gives no positive finite cost."""
        level = float(self.problem.costs[fidelity])
        try:
            c = self.oracle.cost_model(torch.as_tensor(xs, dtype=torch.float64), int(fidelity)).reshape(-1).tolist()
        except Exception:  # noqa: BLE001  (a cost model that cannot price these points: the level's cost)
            c = [math.nan] * len(xs)
        return [v if math.isfinite(v) and v > 0 else level for v in c]

    def expected_cost(self, x, fidelity: int) -> float:
        """What evaluating ``x`` (``d`` numbers, or None: a typical point) at ``fidelity`` is
        expected to cost, in the units of ``budget.cost``: the oracle's cost model there
        (its per-level cost for ``x = None``) times the level's ratio of reported to modelled
        costs so far (:meth:`_cost_ratios`). The cost budget admits a point against it, so
        costs that depend on ``x`` or that the oracle measures above its model do not overrun
        the budget by a whole evaluation."""
        base = float(self.problem.costs[fidelity]) if x is None else self._model_costs([x], fidelity)[0]
        return base * self._cost_ratios()[fidelity]

    def _may_submit(self, st: LoopState, fidelity: int, x=None) -> bool:
        b = self.config.budget
        if b.calls is not None and st.submitted >= b.calls:
            return False
        if b.cost is not None and st.committed_cost + self.expected_cost(x, fidelity) > b.cost + 1e-9:
            if x is not None:  # a proposed point the cost budget could not afford: finish() says "budget"
                self._cost_refused = True
            return False
        if b.wall_time is not None and st.elapsed >= b.wall_time:
            return False
        return True

    def _affordable_levels(self, st: LoopState) -> tuple[int, ...]:
        """The levels the acquisition may propose at, given the budget left in ``st``.

        While the target level fits the budget: every level that fits for an
        acquisition that chooses levels by their cost
        (:data:`~loops.config.LEVEL_CHOOSING_ACQUISITIONS` on a multi-fidelity
        oracle), else the target alone. Once the target no longer fits, a learn
        campaign with such an acquisition goes on at the cheaper levels that still
        fit (they sharpen the target level's model, its goal); an optimize
        campaign stops: points at cheaper levels after its last target
        evaluation can only move its recommendation, which no target
        evaluation would then check. Until an optimize campaign has a target-level
        result (or one in flight), a cheaper level is proposed only where the
        budget left after it (cost, and calls) still pays for one target
        evaluation."""
        target = self.problem.target_fidelity
        if not (self.problem.multi_fidelity and self.config.acquisition.name in LEVEL_CHOOSING_ACQUISITIONS):
            return (target,) if self._may_submit(st, target) else ()
        levels = tuple(k for k in range(self.problem.num_fidelities) if self._may_submit(st, k))
        if target not in levels and self.config.mode != "learn":
            return ()
        b = self.config.budget.cost
        if self.config.mode == "optimize" and b is not None and not self._has_target_result():
            # keep room for one target evaluation: an optimize campaign that spent its budget
            # at cheaper levels had ended with no target result to check its answer by
            reserve = self.expected_cost(None, target)
            levels = tuple(k for k in levels
                           if k == target or st.committed_cost + self.expected_cost(None, k) + reserve <= b + 1e-9)
        calls = self.config.budget.calls
        if self.config.mode == "optimize" and calls is not None and calls - st.submitted < 2 \
                and not self._has_target_result():
            # the last call is the target's (a calls budget prices every level alike)
            levels = tuple(k for k in levels if k == target)
        return levels

    def _has_target_result(self) -> bool:
        """A design point at the target level that has its result or is being evaluated."""
        t = self.problem.target_fidelity
        return any(r["fidelity"] == t and r["role"] != "validation" and r["status"] in ("done", "pending")
                   for r in self._rows.values())

    def _add_pending(self, x, fidelity, role, iteration, **kw) -> int:
        rid = self.store.add_pending(x, fidelity, role, iteration, **kw)
        self._rows[rid] = self.store.row(rid)
        self._added += 1  # the state changes, the data (successful rows) do not
        return rid

    def _initial_design(self) -> None:
        """Insert the initial design (centre and Sobol points) and the validation set as pending rows.

        All of them and the ``initialized`` mark are one transaction: a driver
        stopped while writing them (Ctrl-C, kill -9) leaves none, and its
        resume writes the design once, not a second copy beside a part of it."""
        c = self.config
        if self.store.get_meta("initialized"):
            return
        seed = problem_seed(c.seed)
        b = self.problem.bounds
        if c.initial.center:
            X0 = torch.cat([b.mean(0, keepdim=True), sobol_points(b, c.initial.n - 1, seed=seed)])
        else:
            X0 = sobol_points(b, c.initial.n, seed=seed)
        Xv = sobol_points(b, c.learn.n_validation, seed=seed + 104729) if c.mode == "learn" else b[:0]
        added = []
        try:
            with self.store.transaction():
                for i, lev in initial_plan(c, self.problem.target_fidelity):
                    added.append(self._add_pending(X0[i].tolist(), lev, "initial", 0))
                for x in Xv:
                    added.append(self._add_pending(x.tolist(), self.problem.target_fidelity, "validation", 0))
                self.store.set_meta("initialized", True)
        except BaseException:
            for rid in added:  # rolled back: not rows of this campaign
                self._rows.pop(rid, None)
            raise

    def _awaits_first_model(self, ids: list[int]) -> bool:
        """No model yet while design points are in flight: wait for their results.

        The acquisition needs a model; without one it falls back to Sobol
        points, which is right when the initial design failed but a waste of
        budget when its results are merely late (a slow worker, a straggling
        cheap level): then :meth:`ask` hands out no new point until a result
        arrives, as Ax waits for the data its generation step requires.
        """
        if self.model is not None or self.config.acquisition.name == "sobol":
            return False
        busy = [*ids, *self._handed]
        return any(self._rows[i]["role"] != "validation" and self._rows[i]["status"] == "pending" for i in busy)

    def _candidates(self, k: int, st: LoopState) -> list[tuple[list[float], int, dict | None]]:
        c = self.config
        X, Y, _ = self.data()
        pend = [self._rows[rid] for rid in sorted(self._handed) if self._rows[rid]["role"] != "validation"]
        pend += self._failed_deterministic()
        Xp = None
        if pend:
            Xp = torch.tensor([r["x"] for r in pend], dtype=torch.float64)
            if self.problem.multi_fidelity:
                Xp = torch.cat([Xp, torch.tensor([[float(r["fidelity"])] for r in pend], dtype=torch.float64)], -1)
        name = c.acquisition.name
        if self.model is None and name != "sobol":
            name = "sobol"  # not enough data and none in flight (the initial points failed)
        if name in ("qLogNEI", "qMFLogEI", "qLogNEHVI"):
            self._check_objective_spread()
        n_design = st.submitted
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            # restarts that stop early are reported by BoTorch; the best restart is still used
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", OptimizationWarning)
            try:
                cand = self._propose(name, X, Y, k, Xp, n_design)
            except MODEL_FAULTS as e:
                if name == "sobol":
                    raise
                self._model_fault("acquisition", c.model.name, len(X), e, "Sobol proposals for this batch")
                cand = self._propose("sobol", X, Y, k, Xp, n_design)
        seen = [t for t in (Xp, self._done_deterministic()) if t is not None]
        cand = self._distinct(cand, torch.cat(seen) if seen else None, n_design)
        self._acq_time = time.perf_counter() - t0
        return self._with_predictions(cand)

    def _done_deterministic(self) -> Tensor | None:
        """Inputs (with the level column on a multi-fidelity oracle) of the design points a
        deterministic oracle has answered: asking one again returns the same answer, so a
        candidate that repeats one is replaced (:meth:`_distinct`). None for a noisy oracle whose repeats are
        independent (not :attr:`~oracles.base.Oracle.seeded_by_point`) or no such point."""
        if not _repeats_identical(self.oracle):
            return None
        done = [r for r in self._rows.values() if r["status"] == "done" and r["role"] != "validation"]
        if not done:
            return None
        X = torch.tensor([r["x"] for r in done], dtype=torch.float64)
        if self.problem.multi_fidelity:
            X = torch.cat([X, torch.tensor([[float(r["fidelity"])] for r in done], dtype=torch.float64)], -1)
        return X

    def _failed_deterministic(self) -> list[dict]:
        """The latest :data:`MAX_FAILED_PENDING` failed points (done retrying) of a
        deterministic oracle, other than worker deaths. Their answer will not come
        however often they are asked, so the acquisition takes them as points in
        flight (``X_pending``) and a candidate that repeats one is replaced
        (:meth:`_distinct`), and no budget goes on asking a failing point again."""
        if not _repeats_identical(self.oracle):
            return []
        failed = [r for r in self._rows.values()
                  if r["status"] == "failed" and r["role"] != "validation"
                  and not str(r.get("reason") or "").startswith("worker died")]
        return sorted(failed, key=lambda r: r["id"])[-MAX_FAILED_PENDING:]

    def _check_input_spans(self) -> None:
        """Warn when an input's range lies outside ``INPUT_SPAN_RANGE``: BoTorch's L-BFGS-B
        optimizes the acquisitions in input units and stops on an absolute gradient tolerance
        (1e-5), so over a range of 1e6 or 1e-6 it stops at its starting points and the campaign
        proposes the best of its raw samples (a Branin campaign in a [1e-9, 2e-9] box ended
        with regrets 0.22-0.76 against 0.01-0.05 in the unit box)."""
        if self.config.acquisition.name == "sobol":
            return
        b = self.problem.bounds
        span = (b[1] - b[0]).tolist()
        lo, hi = INPUT_SPAN_RANGE
        bad = [(n, w) for n, w in zip(self.oracle.input_names, span, strict=True) if not lo <= w <= hi]
        if bad:
            warnings.warn(
                f"inputs {', '.join(f'{n!r} (range {w:.3g})' for n, w in bad)} span outside [{lo:g}, {hi:g}]: the "
                f"acquisition optimizer's gradient tolerance is absolute in input units, so it barely moves from its "
                f"starting points; give these inputs in units where their ranges are of order 1",
                UnitsWarning, stacklevel=4,
            )

    def _check_objective_spread(self) -> None:
        """Warn once when an objective's observed spread is below qLogNEI's smoothing
        temperature (BoTorch's ``TAU_MAX``, in output units): the acquisition is then
        nearly flat, and its proposals say little."""
        sc = self.problem.output_scale
        if self._spread_warned or sc is None:
            return
        names = self.model_output_names
        for j in self.problem.objective_idx:
            sd = float(sc[j].sqrt())
            if sd < TAU_MAX:
                self._spread_warned = True
                warnings.warn(
                    f"the objective {names[j]!r} has an observed standard deviation ({sd:.3g}) below the smoothing "
                    f"temperature of {self.config.acquisition.name} (BoTorch's tau_max = {TAU_MAX:g} or less, in "
                    f"output units), so the acquisition is nearly flat; give the objective in units where its "
                    f"spread is of order 1 or larger",
                    UnitsWarning, stacklevel=4,
                )
                return

    def _model_fault(self, stage: str, model: str, n: int, err: BaseException, fallback: str) -> None:
        """Record a numerical failure of a model fit or an acquisition (run store
        ``model_faults``, the ``model_faults`` metric) and warn; the campaign goes on."""
        rec = {
            "stage": stage, "model": model, "acquisition": self.config.acquisition.name, "results": int(n),
            "update": self._updates, "reason": f"{type(err).__name__}: {err}", "fallback": fallback,
        }
        self.model_faults.append(rec)
        self.store.set_meta("model_faults", self.model_faults)
        warnings.warn(
            f"{stage} failed (model {model!r}, acquisition {rec['acquisition']!r}, {n} results): "
            f"{rec['reason']}; {fallback}", ModelFaultWarning, stacklevel=3,
        )

    def _distinct(self, cand: Tensor, Xp: Tensor | None, n_design: int) -> Tensor:
        """Replace candidates that repeat another candidate or a pending point by fresh Sobol points."""
        b = self.problem.bounds
        span = (b[1] - b[0]).clamp_min(1e-300)
        d = self.problem.d

        def keys(X: Tensor) -> list[tuple]:
            """One key per row of ``X`` (``n x D``): the inputs rounded to 1e-8 of the box, then
            the trailing columns (fidelity); all rows in one tensor pass."""
            grid = torch.round((X[:, :d] - b[0]) / span * 1e8).long().tolist()
            rest = X[:, d:].tolist()
            return [tuple(g) + tuple(r) for g, r in zip(grid, rest, strict=True)]

        def key(x: Tensor) -> tuple:
            return keys(x.unsqueeze(0))[0]

        seen = set(keys(Xp)) if Xp is not None and len(Xp) else set()
        out, skip = [], n_design + 7919
        for x in cand:
            while key(x) in seen:
                s = sobol_points(b, 1, seed=problem_seed(self.config.seed) + 1, skip=skip)[0]
                skip += 1
                x = torch.cat([s, x[d:]])
            seen.add(key(x))
            out.append(x)
        return torch.stack(out) if out else cand

    def level_costs(self) -> tuple[float, ...]:
        """Cost per level the cost-aware acquisitions weigh (``fidelity.cost_source``).

        ``"oracle"``: the oracle's cost model. ``"recorded"``: per level, the mean
        of the ``cost`` of the finished design points at that level (failed ones
        included: they were paid for) with the oracle's cost counted as one more
        record. ``"wall_time"``: per level, the mean measured ``wall_time`` of a
        call; a level without measurements takes the oracle's cost times the
        geometric mean ratio of measured to oracle cost of the measured levels
        (the oracle's costs when nothing is measured yet).

        A budget of calls alone (no ``cost``, no ``wall_time``) counts every level's call
        as one: the levels then weigh alike, whatever ``cost_source`` says (weighed by
        the oracle's costs, such a campaign spends its calls below the target level,
        where each is cheap in a cost nobody counts).
        """
        static = tuple(float(v) for v in self.problem.costs)
        b = self.config.budget
        if b.cost is None and b.wall_time is None:
            return (1.0,) * len(static)
        src = self.config.fidelity.cost_source
        if src == "oracle":
            return static
        L = len(static)
        key = "cost" if src == "recorded" else "wall_time"
        sums, counts = [0.0] * L, [0] * L
        for r in self._rows.values():
            v = r.get(key)
            if r["status"] in ("done", "failed") and r["role"] != "validation" and v is not None \
                    and math.isfinite(v) and v > 0 and 0 <= r["fidelity"] < L:
                sums[r["fidelity"]] += float(v)
                counts[r["fidelity"]] += 1
        if src == "recorded":
            return tuple((static[k] + sums[k]) / (1 + counts[k]) for k in range(L))
        measured = [k for k in range(L) if counts[k]]
        if not measured:
            return static
        ratio = math.exp(sum(math.log(sums[k] / counts[k] / static[k]) for k in measured) / len(measured))
        return tuple(sums[k] / counts[k] if counts[k] else static[k] * ratio for k in range(L))

    def _propose(self, name, X, Y, k, Xp, n_design):
        c = self.config
        if self.problem.multi_fidelity:
            self.problem.level_costs = self.level_costs()
            self.problem.levels = self._affordable_levels(self.state()) or None
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
                except Exception as e:  # noqa: BLE001  (the point still runs; the row has no prediction)
                    warnings.warn(f"ask(): no prediction for the new point ({type(e).__name__}: {e})",
                                  stacklevel=3)
                    pred = None
            if self.problem.multi_fidelity:
                out.append((x[:-1].tolist(), int(round(float(x[-1]))), pred))
            else:
                out.append((x.tolist(), self.problem.target_fidelity, pred))
        return out

    # ------------------------------------------------------------ ask/tell
    def _refresh_rows(self) -> None:
        """Re-read the store's rows after the lock was let go (:meth:`finish`): another driver
        may have resumed the run directory and added results since."""
        fresh = {r["id"]: r for r in self.store.rows()}
        if fresh == self._rows:
            return
        self._rows = fresh
        self._handed &= {i for i, r in fresh.items() if r["status"] == "pending"}
        self._stale = True
        self._version += 1
        self._added += 1
        self._data_cache.clear()

    def _start(self) -> None:
        """The run directory's lock; tracking, initial design and clocks once, before the first ask."""
        if not self._lock.held:
            if self._closed:
                raise RuntimeError("this Campaign was closed; open the run directory again with Campaign.resume")
            self._lock.acquire()
            if self._started:  # taken back after finish(): see what others wrote meanwhile
                self._refresh_rows()
                self._elapsed, self._t_start = None, time.time()  # the clock as the store has it
                self.model_faults = list(self.store.get_meta("model_faults", []) or [])
        if self._started:
            return
        from loops.tracking import Tracker

        self._started = True
        self._t_start = time.time()
        self._check_input_spans()
        self.store.set_meta("status", "running")
        if self.tracker is None:
            self.tracker = Tracker(self.config, self.store, self.run_dir)
        self.tracker.start()
        self.tracker.catch_up()
        self._initial_design()
        self._trim_to_budget()
        # pending rows of a driver that died are handed out again; cancelled rows stay closed

    def ask(self, n: int = 1) -> Trial:
        """Up to ``n`` points to evaluate next, each a ``pending`` row of the store.

        Points already pending and not handed out come first (the initial
        design, the validation set, points in flight when an earlier driver
        died, retries of failed points); then new candidates from the
        acquisition, conditioned on the points asked and not yet told, while
        the budget and the stopping conditions allow. The model is refit first
        when results arrived since the last fit. Fewer than ``n`` (or none)
        when the budget is spent, or when there is no model yet and design
        points are still in flight (tell their results, then ask again).

        The fit and the proposal run with torch on one thread (its process-wide
        setting is put back on return), as :meth:`run` does, so that the points
        repeat bit for bit on any core count.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"ask(n): n = {n!r}; expected an integer >= 1")
        self._start()
        self._cost_refused = False  # whether this ask's proposals met the cost budget
        ids = [rid for rid, r in sorted(self._rows.items()) if r["status"] == "pending" and rid not in self._handed][:n]
        k = n - len(ids)
        if k > 0:
            st = self.state()
            if self.config.budget.calls is not None:
                k = min(k, self.config.budget.calls - st.submitted)
            if k > 0 and self._affordable_levels(st):
                with _one_torch_thread():  # the fit and the proposal round alike on any thread count
                    if self._stale:
                        self._update_and_log()
                    st = self.state()
                    if not self.stopping.should_stop(st) and not self._awaits_first_model(ids):
                        self._handed.update(ids)  # the ones above are pending for this proposal too
                        for x, lev, pred in self._candidates(k, st):
                            # each point against the budget left after the ones before it in this
                            # batch: their cost, and the room kept for a first target evaluation
                            now = self.state()
                            if not self._may_submit(now, lev, x) or lev not in self._affordable_levels(now):
                                break
                            ids.append(self._add_pending(x, lev, "acquisition", self._updates, prediction=pred))
        self._handed.update(ids)
        rows = [self._rows[i] for i in ids]
        X = torch.tensor([r["x"] for r in rows], dtype=torch.float64).reshape(len(rows), self.problem.d)
        return Trial(X, [r["fidelity"] for r in rows], ids, [r["role"] for r in rows])

    def tell(
        self,
        X: Tensor | Any,
        Y: Tensor | Any,
        Yvar: Tensor | Any | None = None,
        fidelity: int | list[int] | None = None,
        *,
        ids: list[int] | None = None,
        reasons: list[str | None] | None = None,
        cost: list[float] | None = None,
    ) -> list[int]:
        """Record results: ``X`` ``n x d``, ``Y`` ``n x m`` (all oracle outputs), ``Yvar`` ``n x m`` or None.

        Args:
            fidelity: the level of every point, or one per point (default: the
                level each asked point was asked at, else the target fidelity).
            ids: the row ids from :meth:`ask`; without them each ``x`` is matched
                to an asked point with the same inputs and level, and a point never
                asked is added as a new row (role ``told``).
            reasons: per point, None for success or why it failed (its ``Y`` row is ignored).
            cost: per point cost (default: the oracle's cost model at the point, what
                the oracle's own evaluation reports and the budget admitted it against).

        A row whose outputs are not finite, or whose variances are not finite or
        negative, is recorded as failed with that reason. Shapes, levels
        (``0..L-1``) and costs (finite, ``>= 0``) are checked before anything is
        stored: a call that raises changes nothing. Returns the row ids.
        """
        d = self.problem.d
        kind = not_real_kind(X)
        if kind is not None:
            raise ValueError(f"tell: X must be real numbers, n x d = n x {d}, got {kind} values")
        try:
            X = torch.as_tensor(X, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(f"tell: X must be numbers, n x d = n x {d} ({list(self.oracle.input_names)}), "
                             f"got {type(X).__name__} {str(X)[:60]}") from None
        if X.dim() == 1:
            X = X.unsqueeze(0)
        n, m = X.shape[0], self.oracle.num_outputs
        if X.dim() != 2:
            raise ValueError(f"tell: X must be n x d = n x {d}, got shape {tuple(X.shape)}")
        if X.shape[-1] != d:
            raise ValueError(f"tell: X has {X.shape[-1]} columns; expected d = {d} ({list(self.oracle.input_names)})")
        outs = list(self.oracle.output_names)
        Yt = None if Y is None else _told_rows("Y", Y, n, m, outs)
        Vt = None if Yvar is None else _told_rows("Yvar", Yvar, n, m, outs)
        ids = _told_ids(ids)
        if reasons is not None and (isinstance(reasons, (str, bytes)) or not isinstance(reasons, (list, tuple))):
            raise ValueError(f"tell: reasons must be a list with one entry per point (None for a success, else why "
                             f"it failed), got {reasons!r}")
        fidelity, cost = _told_list(fidelity), _told_list(cost)
        if cost is not None and not isinstance(cost, (list, tuple)):
            raise ValueError(f"tell: cost must be a list with one cost per point ({n} points), got {cost!r}")
        for name, v in (("ids", ids), ("reasons", reasons), ("cost", cost), ("fidelity", fidelity)):
            if isinstance(v, (list, tuple)) and len(v) != n:
                raise ValueError(f"tell: {name} has {len(v)} entries for {n} points")
        fids = [_told_level(f, self.problem.num_fidelities) for f in
                (fidelity if isinstance(fidelity, (list, tuple)) else [fidelity] * n)]
        cost = None if cost is None else [_told_cost(c) for c in cost]
        self._check_told_inputs(X, ids, fids)
        self._start()
        out = []
        pairs = []
        taken: set[int] = set()
        for i in range(n):
            rid = ids[i] if ids is not None else self._match(X[i], fids[i], taken)
            if rid is None:
                lev = self.problem.target_fidelity if fids[i] is None else int(fids[i])
                rid = self._add_pending(X[i].tolist(), lev, "told", self._updates)
            # a row is answered once per call: a replicate of a point told in the same
            # call is its own new row, not a second answer to the first
            taken.add(rid)
            row = self._rows.get(rid)
            if row is None or row["status"] != "pending":
                raise ValueError(f"tell: row {rid} is not a pending point of this campaign")
            lev = row["fidelity"]
            failed = reasons is not None and reasons[i] is not None
            rec = {
                "failed": failed,
                "reason": reasons[i] if failed else None,
                "y": None if failed or Yt is None else Yt[i].tolist(),
                "yvar": None if failed or Vt is None else Vt[i].tolist(),
                "cost": float(cost[i]) if cost is not None else self._model_costs([row["x"]], lev)[0],
                "metadata": {"told": True},
            }
            if not failed and Yt is None:
                rec.update(failed=True, reason="no output given")
            pairs.append((rid, rec))
            out.append(rid)
        self._record_all(pairs)
        return out

    def _check_told_inputs(self, X: Tensor, ids: list[int] | None, fids: list[int | None]) -> None:
        """``tell``'s inputs: finite and inside the oracle's bounds; with ``ids``, each the
        inputs that row was asked at."""
        b = self.problem.bounds
        tol = 1e-9 * (b[1] - b[0]).abs().clamp_min(1e-300)
        names = list(self.oracle.input_names)
        for i, x in enumerate(X):
            if not bool(torch.isfinite(x).all()) or bool(((x < b[0] - tol) | (x > b[1] + tol)).any()):
                raise ValueError(
                    f"tell: X row {i} = {x.tolist()} lies outside the oracle's bounds "
                    f"{names} in [{b[0].tolist()}, {b[1].tolist()}]"
                )
            if ids is None:
                continue
            if ids[i] in ids[:i]:
                raise ValueError(f"tell: row {ids[i]} is told twice in one call (X rows {ids.index(ids[i])} and {i})")
            row = self._rows.get(ids[i])
            if row is None or row["status"] != "pending":
                raise ValueError(f"tell: row {ids[i]} is not a pending point of this campaign")
            if fids[i] is not None and int(fids[i]) != row["fidelity"]:
                raise ValueError(
                    f"tell: row {ids[i]} was asked at fidelity {row['fidelity']}, told at fidelity {int(fids[i])}; "
                    "tell the asked level, or leave out ids to record a new point at that level"
                )
            asked = torch.tensor(row["x"], dtype=torch.float64)
            if not torch.allclose(asked, x, rtol=1e-9, atol=0.0) and bool(((asked - x).abs() > tol).any()):
                raise ValueError(
                    f"tell: X row {i} = {x.tolist()} is not the point asked as row {ids[i]} ({row['x']}); "
                    "tell the asked inputs, or leave out ids to record a new point"
                )

    def _match(self, x: Tensor, fidelity: int | None, taken: set[int]) -> int | None:
        """The pending design row asked at ``x`` (and ``fidelity`` when given), or None.

        Every pending row counts, those asked by an earlier driver of a resumed
        campaign included (a resumed ``tell`` without ids adds no second copies). Rows at several levels with
        these inputs and no ``fidelity`` are ambiguous: refused, naming them."""
        hits = [rid for rid, r in sorted(self._rows.items())
                if r["status"] == "pending" and r["role"] != "validation" and rid not in taken
                and (fidelity is None or r["fidelity"] == int(fidelity))
                and torch.allclose(torch.tensor(r["x"], dtype=torch.float64), x, rtol=1e-9, atol=1e-12)]
        levels = {self._rows[rid]["fidelity"] for rid in hits}
        if len(levels) > 1:
            raise ValueError(
                f"tell: x = {x.tolist()} was asked at levels {sorted(levels)} (rows {hits}); "
                "give fidelity= or ids= to say which result this is"
            )
        return hits[0] if hits else None

    def _record_all(self, pairs: list[tuple[int, dict[str, Any]]]) -> None:
        """Write answers to the store (one committed row each), then retries; the model refits lazily."""
        if not pairs:
            return
        with self._uninterrupted():
            c = self.config
            m = self.oracle.num_outputs
            for rid, rec in pairs:
                row = self._rows[rid]
                if row["status"] != "pending":
                    continue  # answered already (a duplicate answer of a resubmitted point)
                if rec.get("infra"):
                    # the worker died or was killed at its timeout: the point itself may be fine
                    k = self._infra.get(rid, 0)
                    if k < c.executor.retries and self.exec is not None:
                        self._infra[rid] = k + 1
                        self._submit(rid)
                        continue
                    # a call killed at its timeout was paid for: what the budget admitted it against
                    # (the cost model at its point); a worker that died is charged nothing
                    rec = {**rec, "cost": self.expected_cost(row["x"], row["fidelity"])
                           if "timeout" in rec["reason"] else 0.0}
                check_record(rec, m)
                self._record_one(rid, row, rec)
                self._handed.discard(rid)
                self._stale = True
                if self._bar is not None and row["role"] != "validation":
                    self._bar.update(1)
            fin = sum(r["status"] not in ("pending",) for r in self._rows.values())
            write_progress(self.run_dir, fin, max(self._rows, default=0))
            self._bank_elapsed()  # a driver killed later keeps the time it spent (budget.wall_time)

    def _record_one(self, rid: int, row: dict[str, Any], rec: dict[str, Any]) -> None:
        """Write the answer of pending row ``rid`` and, for a failed point with attempts left,
        its retry's pending row, in one transaction: a driver killed between the two would
        leave the failure without its retry, and the resumed campaign would never retry it."""
        c = self.config
        added: list[int] = []
        try:
            with self.store.transaction():
                self.store.record(rid, rec)
                self._rows[rid] = self.store.row(rid)
                self._version += 1
                if (rec.get("failed") and not rec.get("infra") and row["attempt"] < c.executor.retries
                        and row["role"] != "validation"
                        and self._may_submit(self.state(), row["fidelity"], row["x"])):
                    added.append(self._add_pending(row["x"], row["fidelity"], row["role"], row["iteration"],
                                                   point=row["point"], attempt=row["attempt"] + 1))
        except BaseException:
            # rolled back: the row is pending again, and the retry is no row of this campaign
            self._rows[rid] = row
            for new in added:
                self._rows.pop(new, None)
            self._version += 1
            self._added += 1
            raise

    @contextmanager
    def _uninterrupted(self):
        """A block that SIGTERM and SIGINT do not cut in two (recording results received from
        the workers): the campaign's signal handler records a signal that arrives inside it, and
        the outermost such block raises it as :class:`CampaignInterrupted` when it ends normally."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._deferred_signal is not None:
            signum, self._deferred_signal = self._deferred_signal, None
            raise CampaignInterrupted(signum)

    def _banked(self) -> float:
        """Seconds banked in the store's ``elapsed`` (read once, then kept as written)."""
        if self._elapsed is None:
            self._elapsed = float(self.store.get_meta("elapsed", 0.0))
        return self._elapsed

    def _bank_elapsed(self) -> None:
        """Add the time since the last call (or the start) to the store's ``elapsed``."""
        now = time.time()
        self._elapsed = self._banked() + now - self._t_start
        self.store.set_meta("elapsed", self._elapsed)
        self._t_start = now

    _bar = None
    _critical = 0  # depth of _uninterrupted blocks
    _deferred_signal: int | None = None  # a signal that arrived inside one

    def finished(self) -> bool:
        """Whether a stopping condition holds and no asked point is still out.

        After :meth:`finish` this only reads the store: it does not take the run
        directory back from a driver that resumed it."""
        if self._closed:
            raise RuntimeError("this Campaign was closed; open the run directory again with Campaign.resume")
        if self._started and not self._lock.held:
            self._refresh_rows()
            self._elapsed = None  # the time banked in the store; no clock runs while the directory is let go
        else:
            self._start()
        if self._handed:
            return False
        st = self.state()
        if self.stopping.should_stop(st):
            return True
        has_pending = any(r["status"] == "pending" for r in self._rows.values())
        return not has_pending and not self._affordable_levels(st)

    def _warn_if_bootstrap_model(self) -> None:
        """A :class:`BootstrapModelWarning` when a multi-fidelity campaign ends with its
        bootstrap model (``model.bootstrap``) in place of the configured co-kriging model,
        because a level never got the results that model needs: the recommendation and the
        final surrogate then come from the bootstrap model. With ``model.bootstrap = "none"``, when
        no model was ever fitted for that reason (a level whose calls all failed): the proposals
        were Sobol points, and there is no recommendation or surrogate."""
        c = self.config.model
        if not (self.problem.multi_fidelity and c.name not in BUILTIN):
            return
        never = (self.model is None and c.bootstrap == "none" and self.config.acquisition.name != "sobol"
                 and self.state().calls > 0)
        if not never and not (self.model is not None and getattr(self, "_warm_name", None) == c.bootstrap
                              and c.bootstrap != c.name):
            return
        X, _, _ = self.data()
        need = self._level_results_needed()
        counts = torch.bincount(X[:, -1].round().long(), minlength=self.problem.num_fidelities).tolist()
        short = {k: n for k, n in enumerate(counts) if n < need}
        if never:
            if short:
                failed = [sum(r["status"] == "failed" and r["fidelity"] == k and r["role"] != "validation"
                              for r in self._rows.values()) for k in sorted(short)]
                warnings.warn(
                    f"model.name = {c.name!r} was never fitted: it needs {need} results at every level and levels "
                    f"{sorted(short)} have {list(short.values())} ({failed} failed there), and model.bootstrap = "
                    f"'none' fits no model meanwhile: the campaign proposed Sobol points and gives no "
                    f"{'recommendation or surrogate' if self.config.mode == 'optimize' else 'surrogate or validation metrics'} "
                    f"(model.bootstrap = 'mf_gp' fits BoTorch's multi-fidelity GP until then)",
                    BootstrapModelWarning, stacklevel=3)
            return
        warnings.warn(
            f"model.name = {c.name!r} was not fitted: it needs {need} results at every level and levels "
            f"{sorted(short)} have {list(short.values())}; the final surrogate"
            f"{' and the recommendation come' if self.config.mode == 'optimize' else ' and the validation metrics come'} "
            f"from the bootstrap model {c.bootstrap!r} (give the initial design points at every level, "
            f"initial.fidelities, to fit {c.name!r})",
            BootstrapModelWarning, stacklevel=3)

    def finish(self, stopped_by: str | None = None) -> CampaignResult:
        """Close the campaign: final model update, pending points cancelled, tracking finished."""
        self._start()
        c = self.config
        st = self.state()
        if stopped_by is None:
            hit = [type(k).__name__ for k in self.stopping.conds if k.should_stop(st)]
            # nothing hit: the cost budget affords no further point, or the caller finished early
            spent = self._cost_refused or not self._affordable_levels(st)
            stopped_by = hit[0] if hit else ("budget" if spent else "caller")
        for rid, r in list(self._rows.items()):
            if r["status"] == "pending":
                self.store.cancel(rid, f"cancelled: campaign stopped by {stopped_by}")
                self._rows[rid] = self.store.row(rid)
                self._added += 1
        self._handed.clear()
        if self._stale:
            with _one_torch_thread():
                self._update_and_log()
        self._bank_elapsed()
        self._warn_if_bootstrap_model()
        st = self.state()
        st.metrics = self.validation_metrics() if c.mode == "learn" else {}
        if c.mode == "learn":
            st.best = None
            # the validation set is evaluated outside the budgets: say what it cost
            st.metrics["validation_cost"] = float(sum(r["cost"] or 0.0 for r in self._rows.values()
                                                      if r["role"] == "validation" and r["status"] != "pending"))
        self.store.set_meta("status", "finished")
        self.store.set_meta("stopped_by", stopped_by)
        fin = sum(r["status"] != "pending" for r in self._rows.values())
        write_progress(self.run_dir, fin, max(self._rows, default=0))
        res = self._result(st, stopped_by)
        if res.recommendation is not None:
            # before tracking finishes, which logs it with the run
            self.store.set_meta("recommendation", res.recommendation)
        if res.pareto is not None:
            self.store.set_meta("pareto_front", res.pareto)
        self.tracker.finish(self, st)
        if res.recommendation is not None:
            self._warn_if_extrapolated(res)
        self._lock.release()  # a finished campaign leaves its directory to others (a later ask takes it back)
        return res

    def _warn_if_extrapolated(self, res: CampaignResult) -> None:
        """Warn when a multi-fidelity campaign recommends a point with no successful
        result at the target fidelity: its predicted value is the model's
        extrapolation from the lower levels."""
        T = self.problem.target_fidelity
        if not self.problem.multi_fidelity or res.best is None or res.best.value is not None:
            return
        at = [r for r in self._rows.values() if r["fidelity"] == T and r["role"] != "validation"]
        if any(r["status"] == "done" for r in at):
            return
        failed = [r for r in at if r["status"] == "failed"]
        why = f"; all {len(failed)} asked there failed (first: {failed[0]['reason']})" if failed else ""
        warnings.warn(
            f"no successful result at the target fidelity {T}{why}: the recommendation's predicted value "
            f"{res.recommendation['predicted_value']:.6g} is the model's extrapolation from the lower levels",
            UserWarning, stacklevel=3,
        )

    def _result(self, st: LoopState, stopped_by: str) -> CampaignResult:
        return CampaignResult(
            self.run_dir, st, stopped_by, self.model, best=self.best(), pareto=self.pareto_front(),
            rows=[self._rows[k] for k in sorted(self._rows)],
            input_names=tuple(self.oracle.input_names), output_names=tuple(self.oracle.output_names),
            model_faults=list(self.model_faults),
        )

    # ---------------------------------------------------------------- run
    def _in_process(self) -> bool:
        """Whether the configured executor runs the oracle inside this driver (serial, threads):
        an oracle that crashes its process then ends the driver with it."""
        return self._executor_arg is None and self.config.executor.kind in IN_PROCESS_KINDS

    def _mark_in_flight(self, rid: int | None = None) -> None:
        """Store the rows in flight inside this driver (meta ``in_process``), ``rid`` added, before
        it is handed over: a resume tells from them the points that were running when it died."""
        # the rows handed to this driver and not yet answered (an earlier driver's list was
        # settled before this one started): derived, not read back from the store
        flight = {i for i in self._handed if self._rows[i]["status"] == "pending"}
        if rid is not None:
            flight.add(rid)
        self.store.set_meta("in_process", sorted(flight))

    def _settle_in_process_deaths(self) -> None:
        """Count, for each point that was in flight inside an earlier driver that died, one death
        (meta ``in_process_deaths``); a point in flight at :data:`IN_PROCESS_DEATHS` deaths is
        recorded as failed with the reason, as a worker fault would be, so that an oracle that
        crashes the driver (a segfault under ``executor.kind = "serial"``) does not end every
        resume. One death is not charged: a driver killed by its user re-runs its points."""
        flight = [int(i) for i in self.store.get_meta("in_process", []) or []]
        if not flight:
            return
        deaths = {int(k): int(v) for k, v in (self.store.get_meta("in_process_deaths", {}) or {}).items()}
        failed = []
        for rid in flight:
            row = self._rows.get(rid)
            if row is None or row["status"] != "pending":
                continue
            deaths[rid] = deaths.get(rid, 0) + 1
            if deaths[rid] >= IN_PROCESS_DEATHS and self._in_process():
                failed.append(rid)
        self.store.set_meta("in_process_deaths", {str(k): v for k, v in sorted(deaths.items())})
        self.store.set_meta("in_process", [])
        kind = self.config.executor.kind
        self._record_all([(rid, {"failed": True, "cost": 0.0, "reason": (
            f"the driver process died {deaths[rid]} times while this point was evaluated in it "
            f"(executor.kind = {kind!r}); an oracle that crashes its process ends the driver with it: "
            "executor.kind = 'process' isolates such crashes")}) for rid in failed])

    def _submit(self, rid: int) -> None:
        r = self._rows[rid]
        self._handed.add(rid)
        if self._in_process():
            self._mark_in_flight(rid)
        self.exec.submit(rid, self.spec, r["x"], r["fidelity"], self.config.executor.timeout)

    def run(self) -> CampaignResult:
        """Run (or continue) the campaign until a stopping condition holds.

        SIGTERM and SIGINT end it early and cleanly (``stopped_by`` names the
        signal): points in flight stay pending for a resume, the workers are
        stopped and the store is closed. Torch runs on one thread inside (small GPs on
        few shared cores: see experiments/benchmarks); its thread count is restored on return.
        """
        with _one_torch_thread():
            return self._run()

    def _run(self) -> CampaignResult:
        c = self.config
        self._critical, self._deferred_signal = 0, None
        old_handlers = self._install_signal_handlers()
        stopped_by = None
        interrupted = lost = None
        try:
            self._start()
            self._settle_in_process_deaths()
            self._t_start = time.time()
            # the workers start first: they come up while the first model is fitted
            self.exec = PointRunner(c.executor, self._executor_arg, preload=self._oracle_modules(),
                                    grace=max(2.0, 0.25 * (c.executor.timeout or 0.0)))
            self._handed.clear()
            if self.progress:
                from tqdm import tqdm

                self._bar = tqdm(total=c.budget.calls, desc=c.name, unit="call", initial=self.state().calls)
            sync = c.executor.synchronous
            prefetch = self.exec.workers if c.executor.prefetch == "auto" else c.executor.prefetch
            slots = self.exec.workers + (0 if sync or not self.exec.queues else prefetch)
            while True:
                n_running = len(self._handed)
                free = slots - n_running
                if free > 0 and (not sync or n_running == 0):
                    trial = self.ask(c.acquisition.q if sync and n_running == 0 else free)
                    for rid in trial.ids:
                        self._submit(rid)
                    if len(trial):
                        continue
                if not self._handed:
                    break
                self._record_all(self.exec.poll(self._wait_timeout()))
                if self._stopped_by_condition():
                    break
        except CampaignInterrupted as e:
            interrupted = e
            stopped_by = e.args[0]
            if self.exec is not None:
                # answers that reached the driver while it was busy (fitting, proposing) are
                # computed results: stored before the workers stop, not computed again on resume
                self._record_all(self.exec.drain())
        except ExecutorLost as e:
            lost = e
        finally:
            self._restore_signal_handlers(old_handlers)
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            if self.exec is not None:
                self.exec.shutdown()
            self._handed.clear()
            if self._in_process():
                self._mark_in_flight()  # a driver that stops by itself did not die on its points
            self._bank_elapsed()
        if lost is not None:
            # as a signal: in-flight points stay pending; the caller hears why (one line)
            self.store.set_meta("status", "stopped")
            self.store.set_meta("stopped_by", "executor lost")
            self._tracker_stopped()
            self.close()
            raise lost
        if interrupted is not None:
            # in-flight points stay pending; `scalebridge resume` re-runs them
            self.store.set_meta("status", "stopped")
            self.store.set_meta("stopped_by", stopped_by)
            self._tracker_stopped()
            res = self._result(self.state(), stopped_by)
            self.close()
            return res
        return self.finish()

    def _tracker_stopped(self) -> None:
        """Tell the tracker that the campaign stopped early (a tracker passed in may not listen)."""
        stop = getattr(self.tracker, "stopped", None)
        if stop is not None:
            stop()

    def _stopped_by_condition(self) -> bool:
        """A non-budget condition (target error, wall time, a user's) holds: stop without waiting."""
        st = self.state()
        for k in self.stopping.conds:
            if not isinstance(k, (CallsBudget, CostBudget)) and k.should_stop(st):
                return True
        return False

    def _install_signal_handlers(self):
        if threading.current_thread() is not threading.main_thread():
            return None
        fired = []

        def handler(signum, frame):
            if fired:
                return  # already stopping
            fired.append(signum)
            if self._critical:  # recording results: stop once they are stored
                self._deferred_signal = signum
                return
            raise CampaignInterrupted(signum)

        return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    @staticmethod
    def _restore_signal_handlers(old) -> None:
        if old:
            for s, h in old.items():
                signal.signal(s, h)

    def _oracle_modules(self) -> tuple[str, ...]:
        """The module of the oracle class (what a worker imports to build it)."""
        mod = type(self.oracle).__module__
        return (mod,) if mod and mod != "__main__" else ()

    def _wait_timeout(self) -> float | None:
        t = self.config.executor.timeout
        w = self.config.budget.wall_time
        cands = [v for v in (t, w) if v is not None]
        return min(cands) / 4 if cands else 5.0

    def _update_and_log(self) -> None:
        """Refit the model on every recorded result, then log the iteration's metrics."""
        self.update_model()
        self._stale = False
        self._after_update()

    def _after_update(self) -> None:
        st = self.state()
        metrics: dict[str, float] = {
            "calls": st.calls, "failed": st.failed, "cost": st.cost,
            "acq_time": self._acq_time, "fit_time": self._fit_time, "model_faults": len(self.model_faults),
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
        """Close the store and give up the run directory's lock."""
        try:
            if self._started and not self._closed and self._lock.held:
                self._bank_elapsed()
            self._closed = True
            self.store.close()
        finally:
            self._lock.release()


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
    "TargetError", "StoppingCondition", "Trial", "BestPoint", "CampaignInterrupted", "load_rows",
]
