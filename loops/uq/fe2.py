"""The ``[uncertainty]`` step of ``scalebridge fe2``: propagation after the deterministic run.

Without random inputs the run's GP surrogate (the ``surrogate`` provider, or
the adaptive switch's surrogate after its on-the-fly learning) is propagated:
epistemic only. With ``[[uncertainty.random]]`` inputs (numbers of
``[material.rve]`` such as ``phases.1.E``), a GP over ``[H, inputs]`` is
trained on RVE answers at a Sobol design and the nested Monte Carlo gives the
aleatory/epistemic split (:mod:`loops.uq.propagate`); with ``sobol_n`` also
the Sobol indices of the random inputs for every QoI, of the GP's posterior
mean (``"sobol": {"of": ..., "qoi": {name: SobolIndices.as_dict()}}``), all
QoIs from one set of solves. Writes ``uq_draws.jsonl`` (one line per outer
draw as it finishes, :func:`~loops.uq.propagate.propagate`'s ``on_draw``: a
stopped propagation keeps its finished draws), ``uncertainty.json`` and one
histogram per QoI (``uq_<qoi>.png``) to the run directory; the caller logs them to MLflow
with the run's other artifacts.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats as st
import torch
from scipy.stats import qmc

from loops.fe2.solver import MacroSolver
from loops.store import write_atomic
from loops.uq.propagate import (
    UQ_RTOL,
    Displacement,
    MaxStress,
    Reaction,
    propagate,
    sample_inputs,
    split_histogram,
)
from loops.uq.sobol import sobol_unit

DTYPE = torch.float64


def distributions(cfg) -> dict[str, Any]:
    """Name -> scipy.stats frozen distribution of each ``[[uncertainty.random]]`` input."""
    out = {}
    for r in cfg.uncertainty.random:
        if r.distribution == "uniform":
            out[r.name] = st.uniform(r.low, r.high - r.low)
        elif r.distribution == "normal":
            out[r.name] = st.norm(r.mean, r.std)
        else:
            out[r.name] = st.lognorm(s=r.std, scale=float(np.exp(r.mean)))
    return out


def rve_with(cfg, values: dict[str, float]):
    """The RVE oracle of ``[material.rve]`` with the numbers at dotted paths replaced."""
    return rve_config_with(cfg, values).build()


def _index(key: str) -> int:
    """A list index of a dotted path: digits only (``"-1"`` would name the last phase twice)."""
    if not key.isdigit():
        raise KeyError(key)
    return int(key)


def rve_config_with(cfg, values: dict[str, float]):
    """The validated ``[material.rve]`` config with the numbers at dotted paths replaced; a
    one-line ``ValueError`` for a path that is not a number there or a value it does not allow."""
    from pydantic import ValidationError

    from loops.fe2.config import RVEConfig

    data = cfg.material.rve.model_dump()
    for path, value in values.items():
        node = data
        keys = path.split(".")
        try:
            for key in keys[:-1]:
                node = node[_index(key)] if isinstance(node, list) else node[key]
            last = _index(keys[-1]) if isinstance(node, list) else keys[-1]
            if not isinstance(node[last], (int, float)):
                raise KeyError(last)
            node[last] = float(value)
        except (KeyError, IndexError, ValueError, TypeError):
            raise ValueError(
                f"uncertainty.random name {path!r} is not a number of [material.rve]"
            ) from None
    try:
        return RVEConfig.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        given = ", ".join(f"{k} = {v:g}" for k, v in values.items())
        raise ValueError(f"uncertainty.random {given}: material.rve.{where} {first['msg'][0].lower()}{first['msg'][1:]}") from None


def train_descriptor_gp(cfg, dists: dict[str, Any]):
    """GP over ``[H, inputs]`` (``k*k + p`` inputs, ``k`` the mesh dimension) on RVE answers
    at a scrambled Sobol design (inputs over their central 99 % range)."""
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    u = cfg.uncertainty
    k = cfg.mesh.dim
    kk = k * k
    names = list(dists)
    lo = np.r_[-u.h_max * np.ones(kk), [dists[n].ppf(0.005) for n in names]]
    hi = np.r_[u.h_max * np.ones(kk), [dists[n].ppf(0.995) for n in names]]
    X = qmc.scale(sobol_unit(kk + len(names), u.train_points, u.seed), lo, hi)
    P = []
    for x in X:
        F = torch.eye(k, dtype=DTYPE) + torch.as_tensor(x[:kk]).reshape(1, k, k)
        rve = rve_with(cfg, dict(zip(names, x[kk:], strict=True)))
        P.append(rve.material_response(F).P.reshape(kk))
    Y = torch.stack(P)
    ds = Dataset(torch.as_tensor(X), Y, Yvar=torch.zeros_like(Y))
    bounds = torch.as_tensor(np.stack([lo, hi]))
    return GPSurrogate.from_dataset(ds, bounds=bounds, dim_F=k, seed=u.seed)


def run_uncertainty(
    cfg, solver: MacroSolver, material, out: Path
) -> tuple[dict[str, Any], list[Path]]:
    """Propagate per ``cfg.uncertainty``; returns (summary, written files)."""
    u = cfg.uncertainty
    t0 = time.perf_counter()
    L = cfg.load
    qois = {
        "reaction": Reaction(L.reaction_boundary, L.reaction_component),
        "max_stress": MaxStress(),
    }
    qois = {k: qois[k] for k in u.qoi}
    lo, hi = np.asarray(solver.mesh.p).min(axis=1), np.asarray(solver.mesh.p).max(axis=1)
    for d in u.displacement:
        x = np.asarray(d.point, dtype=float)
        if np.any(x < lo - 1e-12 * (hi - lo).max()) or np.any(x > hi + 1e-12 * (hi - lo).max()):
            raise ValueError(
                f"uncertainty.displacement {d.name!r}: point = {d.point} lies outside the mesh "
                f"(bounding box {lo.tolist()} to {hi.tolist()})"
            )
        qois[d.name] = Displacement(tuple(d.point), d.component)

    def make_solver(m):
        return MacroSolver(
            solver.mesh,
            m,
            solver.dirichlet,
            solver.tractions,
            element=solver.element,
            intorder=solver.intorder,
            thickness=solver.thickness,
        )

    # load.rtol when the config sets it, else the propagation's own tolerance (UQ_RTOL)
    rtol = L.rtol if "rtol" in L.model_fields_set else UQ_RTOL
    kw = {"n_steps": L.n_steps, "max_iter": L.max_iter, "max_cutbacks": L.max_cutbacks, "rtol": rtol}
    info: dict[str, Any] = {}
    if u.random:
        dists = distributions(cfg)
        gp = train_descriptor_gp(cfg, dists)
        info["surrogate"] = (
            f"GPSurrogate over [H, {', '.join(dists)}] on {u.train_points} RVE answers"
        )
        theta = sample_inputs(dists, u.n_outer, seed=u.seed)
    else:
        gp = getattr(material, "surrogate", material)
        if not hasattr(gp, "covar_module"):
            raise ValueError(
                f"[uncertainty] propagates a GP surrogate's posterior; the run's surrogate is a "
                f"{type(gp).__name__}"
            )
        info["surrogate"] = "the run's surrogate"
        dists, theta = {}, None
    from loops.fe2.run import json_text

    # one line per outer draw as it finishes: a propagation that is stopped keeps them
    with (out / "uq_draws.jsonl").open("a") as draws:

        def on_draw(rec: dict[str, Any]) -> None:
            draws.write(json_text(rec, indent=None) + "\n")
            draws.flush()

        prop = propagate(
            make_solver,
            gp,
            qois,
            theta,
            n_inner=u.n_inner,
            n_anchors=u.n_anchors,
            seed=u.seed,
            solve_kwargs=kw,
            on_draw=on_draw,
        )
    summary = {**info, **prop.summary(), "random_inputs": list(dists)}

    # the propagation is written before the Sobol solves: a failed or stopped Sobol stage keeps it
    path = out / "uncertainty.json"
    summary["wall_time"] = time.perf_counter() - t0
    write_atomic(path, json_text(summary))
    files: list[Path] = [path]
    for name in qois:
        files.append(split_histogram(prop, name, out / f"uq_{name}.png"))
    if u.sobol_n and dists:
        from loops.uq.samples import GPPosteriorMean
        from loops.uq.sobol import sobol_indices

        mean = GPPosteriorMean(gp)
        names = list(qois)
        solved: dict[str, np.ndarray] = {}

        def solve_all(Theta) -> np.ndarray:
            """``m x Q`` values of every QoI (a failed run: a row of NaN, counted as failed)."""
            vals = np.full((len(Theta), len(names)), np.nan)
            for i, t in enumerate(Theta):
                try:
                    s = make_solver(mean.with_theta(t))
                    res = s.solve(**kw)
                except Exception as e:  # noqa: BLE001  (a failed run is a NaN, counted below)
                    solved.setdefault("why", f"{type(e).__name__}: {e}")
                    continue
                for j, nm in enumerate(names):
                    try:
                        vals[i, j] = qois[nm](s, res)
                    except Exception as e:  # noqa: BLE001
                        solved.setdefault("why", f"{type(e).__name__}: {e}")
            return vals

        def column(j: int):
            def f(Theta):
                # every QoI's indices come from the same pick-freeze rows (same n and seed),
                # so one set of solves serves them all
                if "Theta" not in solved or not np.array_equal(solved["Theta"], Theta):
                    solved["Theta"], solved["values"] = np.array(Theta, copy=True), solve_all(Theta)
                return solved["values"][:, j]

            return f

        def indices(j: int, nm: str) -> dict[str, Any]:
            try:
                d = sobol_indices(column(j), dists, n=u.sobol_n, seed=u.seed).as_dict()
            except ValueError as e:  # every row of this QoI failed: the other QoIs keep theirs
                why = f" (first failure: {solved['why']})" if "why" in solved else ""
                warnings.warn(f"no Sobol indices of {nm}: {e}{why}", stacklevel=2)
                return {"error": f"{e}{why}"}
            if d["failed_rows"] and "why" in solved:
                d["first_failure"] = solved["why"]
            return d

        summary["sobol"] = {
            "of": "posterior-mean surrogate",
            "qoi": {nm: indices(j, nm) for j, nm in enumerate(names)},
        }
        summary["wall_time"] = time.perf_counter() - t0
        write_atomic(path, json_text(summary))
    return summary, files
