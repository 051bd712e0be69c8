"""Convergence and parity plots of a campaign (matplotlib, Agg backend).

* :func:`convergence_plot`: optimize mode, best-so-far step plots of each
  objective against oracle calls and against cumulative cost, with the
  oracle's known optimum as the target line where it has one; learn mode,
  held-out errors against calls and cost, with ``learn.target_nrmse`` and the
  95 % coverage line.
* :func:`parity_plot`: surrogate against oracle for each modelled output (one
  panel each, labelled with the output's name and units): the held-out
  validation set in learn mode, each point's prediction made before it was
  evaluated in optimize mode (at the target fidelity).

Both read the run store (:class:`~loops.store.RunStore`) and the campaign's
problem, so they work on a finished or resumed campaign alike. A plot that
cannot be drawn raises; :class:`~loops.tracking.Tracker` turns that into a
:class:`PlotWarning` (an error under the test suite's warning filter).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


class PlotWarning(UserWarning):
    """A campaign plot could not be drawn (the campaign itself is kept)."""


def output_label(oracle, name: str) -> str:
    """``"name [unit]"`` when the oracle declares units (``output_units`` as a dict or a
    tuple in output order, or a ``units`` dict), else ``name``."""
    units = getattr(oracle, "output_units", None) or getattr(oracle, "units", None)
    unit = None
    if isinstance(units, dict):
        unit = units.get(name)
    elif isinstance(units, (tuple, list)) and name in tuple(oracle.output_names):
        i = tuple(oracle.output_names).index(name)
        unit = units[i] if i < len(units) else None
    return f"{name} [{unit}]" if unit else name


def _design_rows(campaign) -> list[dict]:
    """Finished design rows (not validation), in the order they finished."""
    rows = [r for r in campaign.store.rows() if r["status"] in ("done", "failed") and r["role"] != "validation"]
    return sorted(rows, key=lambda r: (r.get("finished") or math.inf, r["id"]))


def best_so_far(campaign) -> dict[str, tuple[list[float], list[float], list[float | None]]]:
    """Per objective output: ``(calls, cumulative cost, best feasible value so far)``.

    One entry per finished design call (failed ones count as calls and cost);
    the best is over successful feasible points at the target fidelity, in the
    objective's own sense (lowest when minimized), None before the first one.
    """
    p = campaign.problem
    names = list(campaign.model_output_names)
    out_idx = list(campaign.out_idx)
    series: dict[str, tuple[list[float], list[float], list[float | None]]] = {}
    for k, sign in zip(p.objective_idx, p.signs, strict=True):
        calls, costs, best = [], [], []
        total, cur = 0.0, None
        for n, r in enumerate(_design_rows(campaign), start=1):
            total += float(r["cost"] or 0.0)
            if r["status"] == "done" and r["y"] is not None and r["fidelity"] == p.target_fidelity:
                y = [r["y"][i] for i in out_idx]
                feasible = all(
                    (lo is None or y[j] >= lo) and (hi is None or y[j] <= hi) for j, lo, hi in p.constraints
                )
                if feasible and math.isfinite(y[k]) and (cur is None or sign * y[k] > sign * cur):
                    cur = y[k]
            calls.append(n)
            costs.append(total)
            best.append(cur)
        series[names[k]] = (calls, costs, best)
    return series


def _target_value(campaign) -> float | None:
    v = getattr(campaign.oracle, "optimal_value", None)
    v = v() if callable(v) else v
    try:
        return None if v is None else float(v)
    except (TypeError, ValueError):
        return None


def _step_panel(ax, x, y, xlabel, ylabel, target=None, target_label="target", empty="no feasible point yet"):
    pts = [(a, b) for a, b in zip(x, y, strict=True) if b is not None]
    if pts:
        ax.step([a for a, _ in pts], [b for _, b in pts], where="post", lw=1.4)
        ax.plot([a for a, _ in pts], [b for _, b in pts], "o", ms=2.5, alpha=0.6)
    else:
        ax.text(0.5, 0.5, empty, ha="center", va="center", transform=ax.transAxes)
    if target is not None:
        ax.axhline(target, color="k", lw=0.8, ls="--", label=target_label)
        ax.legend(loc="best", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def convergence_plot(campaign, path: str | Path) -> Path:
    """Best-so-far (optimize) or held-out errors (learn) against calls and cost: step plots, target lines."""
    c = campaign.config
    if c.mode == "optimize":
        series = best_so_far(campaign)
        target = _target_value(campaign) if len(series) == 1 else None
        fig, axes = plt.subplots(len(series), 2, figsize=(9.5, 3.5 * len(series)), squeeze=False)
        for row, (name, (calls, costs, best)) in zip(axes, series.items(), strict=True):
            label = f"best {output_label(campaign.oracle, name)}"
            _step_panel(row[0], calls, best, "oracle calls", label, target, "known optimum")
            _step_panel(row[1], costs, best, "cumulative cost", label, target, "known optimum")
        title = "best so far"
    else:
        by_name: dict[str, dict[int, float]] = {}
        for r in campaign.store.metrics():
            by_name.setdefault(r["name"], {})[r["step"]] = r["value"]
        cost_at = by_name.get("cost", {})
        keys = ["nrmse", "nlpd", "coverage95"]
        targets = {"nrmse": c.learn.target_nrmse, "coverage95": 0.95}
        fig, axes = plt.subplots(len(keys), 2, figsize=(9.5, 3.2 * len(keys)), squeeze=False)
        for row, k in zip(axes, keys, strict=True):
            steps = sorted(by_name.get(k, {}))
            vals = [by_name[k][s] for s in steps]
            empty = "no held-out errors yet"
            _step_panel(row[0], steps, vals, "oracle calls", k, targets.get(k), empty=empty)
            _step_panel(row[1], [cost_at.get(s, math.nan) for s in steps], vals, "cumulative cost", k,
                        targets.get(k), empty=empty)
        title = "held-out errors"
    fig.suptitle(f"{c.name}: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def parity_data(campaign) -> tuple[str, dict[str, tuple[list[float], list[float], list[float]]]]:
    """``(title, {output name: (observed, predicted mean, 1.96 predicted std)})`` for the modelled outputs."""
    names = list(campaign.model_output_names)
    data: dict[str, tuple[list[float], list[float], list[float]]] = {n: ([], [], []) for n in names}
    if campaign.config.mode == "learn":
        from loops.models import predict

        if campaign.model is not None:
            Xv, Yv, _ = campaign.data(role="validation")
            if len(Xv):
                if campaign.problem.multi_fidelity:
                    Xv = Xv.clone()
                    Xv[:, -1] = float(campaign.problem.target_fidelity)
                mu, var = predict(campaign.model, Xv)
                for j, n in enumerate(names):
                    data[n] = (Yv[:, j].tolist(), mu[:, j].tolist(), (1.96 * var[:, j].sqrt()).tolist())
        return "held-out validation set", data
    out_idx = list(campaign.out_idx)
    target = campaign.problem.target_fidelity
    for r in campaign.store.rows(status="done"):
        pred = r.get("prediction")
        if not pred or r["y"] is None or r["role"] == "validation" or r["fidelity"] != target:
            continue
        if len(pred["mean"]) != len(names):
            continue
        for j, n in enumerate(names):
            obs, mu, err = data[n]
            obs.append(r["y"][out_idx[j]])
            mu.append(pred["mean"][j])
            err.append(1.96 * pred["std"][j])
    return "prediction before evaluation", data


def parity_plot(campaign, path: str | Path) -> Path:
    """Surrogate against oracle, one panel per modelled output (name and units on the axes)."""
    title, data = parity_data(campaign)
    n = len(data)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(max(4.2 * cols, 6.0), 4.0 * rows), squeeze=False)
    for ax, (name, (obs, mu, err)) in zip(axes.flat, data.items(), strict=False):
        label = output_label(campaign.oracle, name)
        if obs:
            ax.errorbar(obs, mu, yerr=err, fmt="o", ms=3, alpha=0.6, lw=0.8)
            lo, hi = min(obs + mu), max(obs + mu)
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        else:
            ax.text(0.5, 0.5, "no predicted point evaluated yet", ha="center", va="center",
                    transform=ax.transAxes)
        ax.set_xlabel(f"oracle {label}")
        ax.set_ylabel(f"surrogate {label} (95% interval)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle(f"{campaign.config.name}: {title}", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
