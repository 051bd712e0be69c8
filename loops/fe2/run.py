"""Run an FE² simulation from an :class:`~loops.fe2.config.FE2Config`.

:func:`run_fe2` builds the mesh, the micro scale (RVE oracle on an executor),
the provider (analytic law, oracle, surrogate or adaptive switch), solves the
load path and writes into a new run directory ``<output_dir>/<name>-<time>``
(:func:`fe2_run_dir`; ``output_dir`` defaults to ``runs/fe2``), so a second run
never overwrites the first:

* ``config.json``: the validated config, written before anything is solved;
* ``steps.jsonl``: one line per converged load step as it converges (load
  factor, Newton iterations, reaction, wall time, material calls), so a run
  that stops converging or is stopped (SIGTERM, Ctrl-C) keeps them;
  ``failed.json`` then says why and how many steps converged;

* ``results.npz``: per step ``u`` (``n_steps x N``), ``P`` and ``F``
  (``n_steps x n_gauss x k x k``, ``k`` = 2 or 3), Gauss points, and the
  switch's per-point counts of oracle and surrogate evaluations;
* ``summary.json``: reaction force–displacement curve, per-step counts of
  surrogate and oracle evaluations (every attempt of a cut-back step counted),
  Newton iterations, wall times;
* PNGs: in 2D the deformed mesh coloured by stress, the oracle map and the
  force–displacement curve; in 3D the stress and the oracle map on the
  surface (the curve is in ``summary.json``).

The run is tracked in MLflow like a campaign (one run, the config as params,
metrics per load step, the PNGs and summary as artifacts) under the short
timeouts of :mod:`loops.tracking`: an unreachable server costs one connection
probe and one warning line, and the simulation's outputs stay in the run
directory. ``tracking.enabled = false`` (``--no-mlflow``) touches no tracking
store.
"""

from __future__ import annotations

import json
import math
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from loops.fe2 import mesh as meshes
from loops.fe2.config import FE2Config
from loops.fe2.providers import NeoHookean, OracleProvider, load_material, sobol_gradients
from loops.fe2.solver import DirichletBC, MacroSolver, SolveResult, TractionBC
from loops.fe2.switch import AdaptiveSwitch, ConditionUpdater, refit_updater, tolerance_for_reaction
from loops.store import write_atomic
from oracles.exceptions import NotConverged
from surrogates.base import conditions_on_observations


@dataclass
class FE2Run:
    """What :func:`run_fe2` returns."""

    config: FE2Config
    solver: MacroSolver
    result: SolveResult
    summary: dict[str, Any]
    out_dir: Path
    artifacts: list[Path] = field(default_factory=list)


def fe2_run_dir(cfg: FE2Config) -> Path:
    """A new directory ``<output_dir>/<name>-<YYYYmmdd-HHMMSS>`` (``-1``, ``-2`` ... appended
    if that exists), created here; ``output_dir`` defaults to ``runs/fe2``."""
    base = cfg.out_dir
    stamp = time.strftime("%Y%m%d-%H%M%S")
    d, k = base / f"{cfg.name}-{stamp}", 1
    while True:
        try:
            d.mkdir(parents=True, exist_ok=False)
            return d
        except FileExistsError:
            d, k = base / f"{cfg.name}-{stamp}-{k}", k + 1


def load_deployed(uri: str):
    """The deployed surrogate of ``material.surrogate.uri`` (see
    :func:`loops.fe2.providers.load_material`), every failure as one line.

    Raises:
        FileNotFoundError: nothing at the path; :class:`~surrogates.mlflow_flavor.ModelNotFoundError`
            (a subclass) for a ``models:/`` URI the tracking store lacks, naming the store.
        TypeError: the model is not a constitutive surrogate.
        ValueError: :class:`~surrogates.mlflow_flavor.SurrogateLoadError` for damaged or
            edited files, :class:`~surrogates.mlflow_flavor.UnsafeModelError` for a model
            that points outside its directory.
    """
    from loops.tracking import one_line
    from surrogates.mlflow_flavor import SurrogateLoadError, UnsafeModelError

    try:
        return load_material(uri)
    except (FileNotFoundError, TypeError, SurrogateLoadError, UnsafeModelError):
        raise
    except Exception as e:  # noqa: BLE001  (json, torch and rebuild errors of damaged files)
        raise SurrogateLoadError(
            f"material.surrogate.uri = {uri!r} cannot be loaded ({one_line(e)}); "
            "its files are damaged or were edited"
        ) from None


def build_mesh(cfg: FE2Config):
    m = cfg.mesh
    if m.kind == "plate_with_hole":
        return meshes.plate_with_hole(
            m.length, m.radius, m.n_theta, m.n_radial, m.grading, m.element
        )
    if m.kind == "rectangle":
        return meshes.rectangle(m.width, m.height, m.nx, m.ny, m.element)
    if m.kind == "box":
        return meshes.box(m.lengths, m.divisions, m.element)
    return meshes.load_mesh(m.path)


def build_rve(cfg: FE2Config):
    """The RVE oracle of ``material.rve`` (finite-strain phases, plane strain)."""
    return cfg.material.rve.build()


def build_executor(cfg: FE2Config):
    """An :class:`loops.executors.ExecutorHandle` (process pool, threads, serial or Dask)."""
    from loops.executors import ExecutorHandle

    e = cfg.executor
    ns = SimpleNamespace(
        kind=e.kind,
        workers=e.workers,
        address=e.address,
        cluster=None,
        cluster_options={},
        local_processes=True,
    )
    return ExecutorHandle(ns)


def _boundary_conditions(cfg: FE2Config):
    dirichlet = [DirichletBC(d.boundary, d.component, d.value) for d in cfg.dirichlet]
    tractions = [TractionBC(t.boundary, tuple(t.traction)) for t in cfg.traction]
    return dirichlet, tractions


def make_solver(cfg: FE2Config, material, mesh=None) -> MacroSolver:
    dirichlet, tractions = _boundary_conditions(cfg)
    return MacroSolver(
        build_mesh(cfg) if mesh is None else mesh,
        material,
        dirichlet,
        tractions,
        element=cfg.mesh.element,
        intorder=cfg.mesh.intorder,
    )


def train_learner(oracle_provider, n: int, h_max: float, seed: int, k: int = 2):
    """A :class:`~surrogates.gp.GPSurrogate` of ``H -> P`` fitted on ``n`` oracle
    answers at a Sobol design of ``H`` in ``[-h_max, h_max]^(k*k)`` (noise-free:
    known zero noise, floored by the GP; ``k`` = 2 plane strain or 3)."""
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    F = sobol_gradients(n, h_max, seed=seed, k=k)
    P = oracle_provider.material_response(F).P
    H = (F - torch.eye(k, dtype=torch.float64)).reshape(n, k * k)
    Y = P.reshape(n, k * k)
    return GPSurrogate.from_dataset(Dataset(X=H, Y=Y, Yvar=torch.zeros_like(Y)), seed=seed)


def _updater_for(surrogate, refit_every: int = 0):
    if callable(getattr(surrogate, "update", None)):
        return None  # the switch's default: surrogate.update(F, P)
    if conditions_on_observations(surrogate) and getattr(surrogate, "dim_F", None):
        return ConditionUpdater(refit_every)  # a GP: condition, refit every refit_every updates
    if getattr(surrogate, "train_dataset", None) is not None and hasattr(surrogate, "from_dataset"):
        return refit_updater
    return False


def _solve_kwargs(cfg: FE2Config) -> dict[str, Any]:
    L = cfg.load
    return dict(n_steps=L.n_steps, max_iter=L.max_iter, rtol=L.rtol, max_cutbacks=L.max_cutbacks)


def derive_tolerance(cfg: FE2Config, surrogate, mesh) -> tuple[float, dict[str, float]]:
    """Variance tolerance for ``material.adaptive.target_rel_error`` (see :mod:`loops.fe2.switch`).

    A surrogate-only solve gives the reaction estimate and the state at which
    the reaction's influence field is linearized. Where that solve fails (a
    surrogate extrapolating far outside its data can invert elements), the
    estimate comes from the Neo-Hookean law with the surrogate's tangent at
    ``F = I``, where it has its data (``"estimate_from"`` in the returned info
    says which was used).
    """
    a = cfg.material.adaptive
    L = cfg.load
    law, source = surrogate, "surrogate"
    try:
        s = make_solver(cfg, surrogate, mesh)
        res = s.solve(**_solve_kwargs(cfg))
    except NotConverged:
        law, source = linearized_law(surrogate, mesh.dim()), "linearized_surrogate"
        s = make_solver(cfg, law, mesh)
        res = s.solve(**_solve_kwargs(cfg))
    A = law.material_response(torch.as_tensor(res.final.F)).tangent.numpy()
    infl = s.reaction_influence(res.final.u, A, L.reaction_boundary, L.reaction_component)
    R = res.final.reactions[L.reaction_boundary][L.reaction_component]
    tol = tolerance_for_reaction(infl, R, a.target_rel_error, a.kappa)
    return tol, {
        "reaction_estimate": float(R),
        "influence_sum": float(infl.sum()),
        "tolerance": tol,
        "estimate_from": source,
    }


def linearized_law(material, k: int = 2) -> NeoHookean:
    """The Neo-Hookean law with ``material``'s tangent at ``F = I`` in ``k`` dimensions
    (2: plane strain, 3).

    ``mu`` is the mean of the shear terms ``A_ijij`` and ``lam`` the mean of
    ``A_iijj`` over ``i != j`` (an isotropic fit: exact for an isotropic
    material, the mean for a square- or cubic-symmetric one).
    """
    if k not in (2, 3):
        raise ValueError(f"linearized_law: k must be 2 or 3, got {k!r}")
    A0 = torch.as_tensor(material.material_response(torch.eye(k, dtype=torch.float64)[None]).tangent)[0]
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    mu = sum(float(A0[i, j, i, j]) for i, j in pairs) / len(pairs)
    lam = sum(float(A0[i, i, j, j]) for i, j in pairs) / len(pairs)
    return NeoHookean(mu=mu, lam=lam)


def _prescribed_displacement(cfg: FE2Config, result: SolveResult) -> tuple[np.ndarray, str]:
    L = cfg.load
    for d in cfg.dirichlet:
        if (
            d.boundary == L.reaction_boundary
            and d.component == L.reaction_component
            and d.value != 0
        ):
            return result.load_factors * d.value, f"u{'xy'[d.component]} on {d.boundary}"
    return result.load_factors, "load factor"


def run_fe2(cfg: FE2Config, progress=None) -> FE2Run:
    """Solve the configured FE² problem, write outputs, plots and MLflow tracking."""
    threads = torch.get_num_threads()
    try:
        return _run(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _check_boundaries(cfg: FE2Config, mesh) -> None:
    """Every boundary the config names (Dirichlet, traction, reaction) is one of the mesh's:
    checked before anything is trained or solved."""
    names = sorted(mesh.boundaries or {}, key=str)
    named = [(f"dirichlet[{i}].boundary", d.boundary) for i, d in enumerate(cfg.dirichlet)]
    named += [(f"traction[{i}].boundary", t.boundary) for i, t in enumerate(cfg.traction)]
    named.append(("load.reaction_boundary", cfg.load.reaction_boundary))
    for key, b in named:
        if b not in names:
            raise ValueError(f"{key} = {b!r} is not a boundary of the mesh; known: {names}")
        if len(mesh.boundaries[b]) == 0:
            raise ValueError(f"{key} = {b!r} names a boundary of the mesh with no facets")


def _check_points(cfg: FE2Config, mesh) -> None:
    """Every displacement QoI point of ``uncertainty`` lies in an element of the mesh (not
    only in its bounding box: a hole is outside): checked before anything is solved."""
    if cfg.uncertainty is None:
        return
    find = mesh.element_finder()
    for d in cfg.uncertainty.displacement:
        x = np.asarray(d.point, dtype=float).reshape(-1, 1)
        try:
            find(*x)
        except ValueError:
            raise ValueError(f"uncertainty.displacement {d.name!r}: point = {list(d.point)} is not inside the "
                             f"mesh (in no element: a hole, or outside it)") from None


def json_text(obj, indent: int | None = 2) -> str:
    """Strict JSON (``indent``; None: one line): non-finite floats (a standard error of one
    replicate, a failed run's value) as null."""

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(obj), indent=indent, allow_nan=False, default=float)


def _why(e: BaseException) -> str:
    """What stopped a run, in words: the exception, or the signal that ended it (Ctrl-C, or
    the ``SystemExit(128 + signal)`` of the CLI's SIGTERM handler)."""
    if isinstance(e, KeyboardInterrupt):
        return "stopped by SIGINT (Ctrl-C)"
    if isinstance(e, SystemExit) and isinstance(e.code, int) and e.code > 128:
        try:
            return f"stopped by {signal.Signals(e.code - 128).name}"
        except ValueError:
            pass
    return f"{type(e).__name__}: {e}"


def _record_failure(out: Path, e: BaseException, converged_steps: int, wall_time, **extra) -> None:
    """``failed.json`` of a run that stopped (why, how far it got), and the run directory on the
    exception, for the message."""
    write_atomic(out / "failed.json", json_text(
        {"error": _why(e), **extra, "converged_steps": converged_steps, "wall_time": wall_time}))
    e.fe2_run_dir = out  # where the converged steps are


def _load_checked(uri: str, cfg: FE2Config, k: int):
    """The deployed surrogate of ``uri``, checked to answer ``k x k`` deformation gradients
    (its ``dim_F``, and one evaluation at ``F = I``)."""
    surrogate = load_deployed(uri)
    dim = getattr(surrogate, "dim_F", None)
    if dim is not None and int(dim) != k:
        raise ValueError(
            f"material.surrogate.uri = {uri!r} is a {int(dim)}D constitutive surrogate "
            f"(F {int(dim)} x {int(dim)}); the mesh ({cfg.mesh.kind}) is {k}D")
    surrogate.material_response(torch.eye(k, dtype=torch.float64)[None])  # a plain GP: TypeError, one line
    return surrogate


def _run(cfg: FE2Config, progress) -> FE2Run:
    torch.set_num_threads(cfg.threads)
    t_start = time.perf_counter()
    mesh = build_mesh(cfg)
    _check_boundaries(cfg, mesh)
    _check_points(cfg, mesh)
    make_solver(cfg, NeoHookean(1.0, 1.0), mesh).check_supports()  # a rigid motion left free, before any training
    mat = cfg.material
    handle = None
    info: dict[str, Any] = {"provider": mat.provider}
    # a deployed surrogate is loaded and checked before the run directory is made: a URI
    # without a model, or a model that is not a constitutive surrogate of the mesh's
    # dimension, leaves no run directory behind
    deployed = None
    if mat.provider in ("surrogate", "adaptive") and mat.surrogate.uri:
        deployed = _load_checked(mat.surrogate.uri, cfg, mesh.dim())
    # the run directory exists from the start: a run that fails or is stopped keeps its
    # config and the converged steps (steps.jsonl, one line per step as it converges)
    out = fe2_run_dir(cfg)
    write_atomic(out / "config.json", cfg.model_dump_json(indent=2))
    L = cfg.load

    def on_step(rec) -> None:
        with (out / "steps.jsonl").open("a") as f:
            f.write(json.dumps({
                "load_factor": float(rec.load_factor), "iterations": int(rec.iterations),
                "reaction": float(rec.reactions[L.reaction_boundary][L.reaction_component]),
                "wall_time": float(rec.wall_time), "material_calls": int(rec.material_calls),
            }) + "\n")
        if progress is not None:
            progress(rec)

    try:
        oracle = None
        if mat.rve is not None and mat.provider != "analytic":
            handle = build_executor(cfg)
            oracle = OracleProvider(
                build_rve(cfg), executor=handle.executor, chunk_size=cfg.executor.chunk_size
            )
        surrogate = None
        if mat.provider in ("surrogate", "adaptive"):
            if mat.surrogate.uri:
                surrogate = deployed
                info["surrogate"] = mat.surrogate.uri
            else:
                t0 = time.perf_counter()
                sc = mat.surrogate
                surrogate = train_learner(oracle, sc.train_points, sc.h_max, sc.seed, k=mesh.dim())
                info["surrogate"] = (
                    f"GPSurrogate trained on {mat.surrogate.train_points} RVE answers"
                )
                info["surrogate_train_time"] = time.perf_counter() - t0
        if mat.provider == "analytic":
            material = NeoHookean.from_young(mat.analytic.E, mat.analytic.nu)
        elif mat.provider == "oracle":
            material = oracle
        elif mat.provider == "surrogate":
            material = surrogate
        else:
            a = mat.adaptive
            if a.tolerance is not None:
                tol = a.tolerance
            else:
                tol, tinfo = derive_tolerance(cfg, surrogate, mesh)
                info.update({f"derived_{k}": v for k, v in tinfo.items()})
            updater = _updater_for(surrogate, mat.surrogate.refit_every) if a.learn else False
            if a.learn and updater is False:
                warnings.warn(
                    f"{type(surrogate).__name__} cannot learn on the fly (no update and no training data); "
                    "the switch runs without learning",
                    stacklevel=2,
                )
            material = AdaptiveSwitch(
                surrogate,
                oracle,
                tol,
                learn=updater is not False,
                max_learn=a.max_learn,
                updater=updater or None,
            )
            info["tolerance"] = tol
        solver = make_solver(cfg, material, mesh)
        t0 = time.perf_counter()
        result = solver.solve(**_solve_kwargs(cfg), callback=on_step)
        info["solve_time"] = time.perf_counter() - t0
    except BaseException as e:
        done = (out / "steps.jsonl").read_text().count("\n") if (out / "steps.jsonl").exists() else 0
        _record_failure(out, e, done, time.perf_counter() - t_start)
        raise
    finally:
        if handle is not None:
            handle.shutdown()
    info["wall_time"] = time.perf_counter() - t_start
    return _finish(cfg, solver, result, material, info, out)


def _finish(cfg, solver, result, material, info, out: Path) -> FE2Run:
    L = cfg.load
    disp, xlabel = _prescribed_displacement(cfg, result)
    force = result.reaction(L.reaction_boundary, L.reaction_component)
    n_g = solver.n_gauss
    steps = []
    for s, d in zip(result.steps, disp, strict=True):
        evals = s.material_calls * n_g
        steps.append(
            {
                "load_factor": float(s.load_factor),
                "displacement": float(d),
                "reaction": float(s.reactions[L.reaction_boundary][L.reaction_component]),
                "newton_iterations": s.iterations,
                "cutbacks": s.cutbacks,
                "wall_time": s.wall_time,
                "n_surrogate": int(
                    s.provider.get(
                        "n_surrogate", evals if cfg.material.provider == "surrogate" else 0
                    )
                ),
                "n_oracle": int(
                    s.provider.get("n_oracle", evals if cfg.material.provider == "oracle" else 0)
                ),
                "n_learned": int(s.provider.get("n_learned", 0)),
            }
        )
    is_switch = isinstance(material, AdaptiveSwitch)
    n_sur = material.n_surrogate if is_switch else sum(s["n_surrogate"] for s in steps)
    n_orc = material.n_oracle if is_switch else sum(s["n_oracle"] for s in steps)
    summary = {
        "name": cfg.name,
        **{
            k: (v if not isinstance(v, float) or math.isfinite(v) else str(v))
            for k, v in info.items()
        },
        "n_gauss": n_g,
        "n_dofs": int(solver.basis.N),
        "n_material_calls": result.n_material_calls,
        "n_surrogate_evaluations": int(n_sur),
        "n_oracle_evaluations": int(n_orc),
        "surrogate_fraction": n_sur / max(n_sur + n_orc, 1),
        "steps": steps,
    }
    write_atomic(out / "summary.json", json_text(summary))
    arrays = {
        "u": np.stack([s.u for s in result.steps]),
        "P": np.stack([s.P for s in result.steps]),
        "F": np.stack([s.F for s in result.steps]),
        "load_factors": result.load_factors,
        "reaction": force,
        "gauss_points": solver.gauss_points(),
        "gauss_weights": solver.gauss_weights(),
    }
    if is_switch and material.oracle_calls is not None:
        arrays["oracle_calls"] = material.oracle_calls
        arrays["surrogate_calls"] = material.surrogate_calls
    np.savez_compressed(out / "results.npz", **arrays)
    artifacts = [out / "config.json", out / "summary.json", out / "results.npz"]
    if cfg.plots and solver.dim == 3:  # 3D: the deformed surface coloured by |P| and oracle calls
        from loops.fe2 import plots

        try:
            artifacts.append(
                plots.surface_stress_plot(solver, result.final, out / "surface_stress.png", None)
            )
            if is_switch and material.oracle_calls is not None:
                artifacts.append(
                    plots.surface_stress_plot(
                        solver, result.final, out / "oracle_map.png", values=material.oracle_calls,
                        label="oracle calls per Gauss point", title="oracle calls (element mean)",
                    )
                )
        except Exception as e:  # noqa: BLE001  (plots must not lose a finished simulation)
            from loops.plots import PlotWarning
            from loops.tracking import one_line

            warnings.warn(f"FE² plot failed: {one_line(e)}", PlotWarning, stacklevel=2)
    if cfg.plots and solver.dim == 2:  # the plots draw the 2D mesh
        from loops.fe2 import plots

        try:
            artifacts.append(
                plots.deformed_stress_plot(solver, result.final, out / "deformed_stress.png")
            )
            artifacts.append(
                plots.force_displacement_plot(
                    {cfg.material.provider: (disp, force)},
                    out / "force_displacement.png",
                    xlabel=xlabel,
                )
            )
            if is_switch and material.oracle_calls is not None:
                artifacts.append(
                    plots.oracle_map_plot(
                        solver,
                        material.oracle_calls,
                        material.surrogate_calls,
                        out / "oracle_map.png",
                    )
                )
        except Exception as e:  # noqa: BLE001  (plots must not lose a finished simulation)
            from loops.plots import PlotWarning
            from loops.tracking import one_line

            warnings.warn(f"FE² plot failed: {one_line(e)}", PlotWarning, stacklevel=2)
    if cfg.uncertainty is not None:  # propagation after the deterministic run (loops.uq)
        from loops.uq.fe2 import run_uncertainty

        try:
            summary["uncertainty"], uq_files = run_uncertainty(cfg, solver, material, out)
        except BaseException as e:  # the deterministic results above are kept; the failure is recorded
            _record_failure(out, e, len(result.steps), info.get("wall_time"), stage="uncertainty")
            raise
        artifacts += uq_files
        write_atomic(out / "summary.json", json_text(summary))
    run = FE2Run(cfg, solver, result, summary, out, artifacts)
    if cfg.tracking.enabled:
        track_mlflow(run)
    return run


def track_mlflow(run: FE2Run) -> str | None:
    """One MLflow run: config params, per-step metrics, artifacts; returns the run id.

    Never raises and never waits long: an HTTP server that does not accept a
    connection within :data:`loops.tracking.PROBE_TIMEOUT` is skipped, and every
    call runs under :func:`loops.tracking.short_http_timeouts`. A failure is one
    warning line (:class:`loops.tracking.TrackingWarning`); the outputs stay in
    the run directory.
    """
    from loops.tracking import (
        TrackingWarning,
        one_line,
        reachable,
        short_http_timeouts,
        tracking_uri,
    )

    cfg = run.config
    uri = tracking_uri(cfg)
    try:
        if not reachable(uri):
            raise ConnectionError(f"nothing answers at {uri}")
        with short_http_timeouts():
            rid = _log_run(run, uri)
        run.summary["mlflow_run_id"] = rid
        return rid
    except Exception as e:  # noqa: BLE001  (tracking must not lose a finished simulation)
        warnings.warn(
            f"MLflow tracking at {uri} failed ({one_line(e)}); the outputs are in {run.out_dir}",
            TrackingWarning,
            stacklevel=2,
        )
        return None


def _log_run(run: FE2Run, uri: str) -> str:
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from loops.tracking import flatten_params

    cfg = run.config
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(cfg.tracking.experiment)
    exp_id = (
        exp.experiment_id if exp is not None else client.create_experiment(cfg.tracking.experiment)
    )
    mlrun = client.create_run(
        exp_id,
        run_name=cfg.name,
        tags={"scalebridge.kind": "fe2", "scalebridge.run_dir": str(run.out_dir.resolve())},
    )
    rid = mlrun.info.run_id
    flat = flatten_params(cfg.model_dump(mode="json"))
    params = [Param(k, v[:6000]) for k, v in flat.items()]
    for i in range(0, len(params), 100):
        client.log_batch(rid, params=params[i : i + 100])
    now = int(time.time() * 1000)
    metrics = []
    for i, s in enumerate(run.summary["steps"]):
        for key in (
            "reaction",
            "displacement",
            "load_factor",
            "n_surrogate",
            "n_oracle",
            "newton_iterations",
            "wall_time",
        ):
            metrics.append(Metric(key, float(s[key]), now, i))
    for key in (
        "surrogate_fraction",
        "wall_time",
        "n_oracle_evaluations",
        "n_surrogate_evaluations",
    ):
        v = run.summary.get(key)
        if isinstance(v, (int, float)):
            metrics.append(Metric(f"total_{key}", float(v), now, 0))
    for q, split in run.summary.get("uncertainty", {}).get("qoi", {}).items():
        for key in ("mean", "std", "epistemic", "aleatory"):
            if isinstance(split.get(key), (int, float)) and math.isfinite(split[key]):
                metrics.append(Metric(f"uq_{q}_{key}", float(split[key]), now, 0))
    for i in range(0, len(metrics), 500):
        client.log_batch(rid, metrics=metrics[i : i + 500])
    for path in run.artifacts:
        client.log_artifact(rid, str(path))
    client.set_terminated(rid, status="FINISHED")
    return rid
