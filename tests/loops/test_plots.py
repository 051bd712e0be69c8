"""Campaign plots: best-so-far step plots against calls and cost, parity of the modelled outputs only."""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
import torch

import loops.plots as plots
from loops.config import parse_config
from loops.engine import Campaign
from oracles.analytic.test_functions import Branin
from oracles.function import FunctionOracle

BRANIN = Branin()


def _two_outputs(x):
    """Branin (``f``) and an unmodelled second output (``g``)."""
    return [float(BRANIN.evaluate(torch.as_tensor(x, dtype=torch.float64)[None]).Y[0, 0]), float(x[0] + x[1])]


@pytest.fixture(scope="module")
def campaign(tmp_path_factory):
    """An optimize campaign that models one of two outputs (the parity plot once failed on this)."""
    tmp = tmp_path_factory.mktemp("plots")
    oracle = FunctionOracle(_two_outputs, BRANIN.bounds, names=("x1", "x2"), outputs=("f", "g"), cost=2.0)
    oracle.output_units = {"f": "MPa"}
    oracle.optimal_value = 0.397887  # Branin's minimum
    cfg = parse_config({
        "name": "plots", "mode": "optimize", "oracle": {"name": "branin"}, "outputs": ["f"],
        "budget": {"calls": 9}, "initial": {"n": 5},
        "acquisition": {"num_restarts": 2, "raw_samples": 64, "maxiter": 50},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": str(tmp / "runs"),
    })
    camp = Campaign(cfg, run_dir=tmp / "run", oracle=oracle)
    camp.run()
    yield camp
    camp.close()


def test_best_so_far_is_the_running_minimum_against_calls_and_cost(campaign):
    rows = sorted((r for r in campaign.store.rows() if r["status"] == "done" and r["role"] != "validation"),
                  key=lambda r: (r["finished"], r["id"]))
    series = plots.best_so_far(campaign)
    assert list(series) == ["f"]
    calls, costs, best = series["f"]
    assert calls == list(range(1, len(rows) + 1)) and len(rows) == 9
    assert costs == pytest.approx([2.0 * k for k in calls])
    running = [min(r["y"][0] for r in rows[: k + 1]) for k in range(len(rows))]
    assert best == pytest.approx(running)
    assert all(b2 <= b1 for b1, b2 in zip(best, best[1:], strict=False))


def test_convergence_plot_is_a_step_plot_with_the_target_line(campaign, tmp_path, figures):
    path = plots.convergence_plot(campaign, tmp_path / "conv.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    (fig,) = figures
    by_calls, by_cost = fig.axes[:2]
    assert by_calls.get_xlabel() == "oracle calls" and by_cost.get_xlabel() == "cumulative cost"
    for ax in (by_calls, by_cost):
        assert ax.get_ylabel() == "best f [MPa]"
        steps = [ln for ln in ax.lines if ln.get_drawstyle() == "steps-post"]
        assert len(steps) == 1
        target = [ln for ln in ax.lines if list(ln.get_ydata()) == [0.397887, 0.397887]]
        assert len(target) == 1
    _, _, best = plots.best_so_far(campaign)["f"]
    assert list(by_cost.lines[0].get_xdata()) == pytest.approx(plots.best_so_far(campaign)["f"][1])
    assert list(by_calls.lines[0].get_ydata()) == pytest.approx(best)


def test_parity_plot_in_optimize_mode_shows_modelled_outputs_with_units(campaign, tmp_path, figures):
    title, data = plots.parity_data(campaign)
    assert list(data) == ["f"]  # g is not modelled
    obs, mu, err = data["f"]
    predicted = [r for r in campaign.store.rows(status="done") if r.get("prediction")]
    assert len(obs) == len(predicted) >= 3  # every point proposed by the model
    assert sorted(obs) == pytest.approx(sorted(r["y"][0] for r in predicted))
    assert all(math.isfinite(v) for v in mu) and all(e >= 0 for e in err)
    plots.parity_plot(campaign, tmp_path / "parity.png")
    assert (tmp_path / "parity.png").read_bytes()[:4] == b"\x89PNG"
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == "oracle f [MPa]" and ax.get_ylabel().startswith("surrogate f [MPa]")


def test_output_label_units_forms():
    class Named:
        output_names = ("a", "b")

    o = Named()
    assert plots.output_label(o, "a") == "a"
    o.output_units = ("GPa", None)
    assert plots.output_label(o, "a") == "a [GPa]" and plots.output_label(o, "b") == "b"
    del o.output_units
    o.units = {"b": "J/m^2"}
    assert plots.output_label(o, "b") == "b [J/m^2]"


def test_a_failing_plot_warns_with_plotwarning_and_the_suite_makes_it_an_error(campaign, monkeypatch):
    from loops.tracking import Tracker

    def broken(campaign, path):
        raise ValueError("'x' and 'y' must have the same size")

    monkeypatch.setattr(plots, "parity_plot", broken)
    with pytest.warns(plots.PlotWarning, match="parity.png failed: ValueError"):
        Tracker(campaign.config, campaign.store, campaign.run_dir).finish(campaign, campaign.state())
    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "error::loops.plots.PlotWarning" in pyproject["tool"]["pytest"]["ini_options"]["filterwarnings"]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["b_microstructure_bo", "c_multifidelity_rve"])
def test_parity_plot_is_produced_for_the_smoke_runs_of_b_and_c(script, tmp_path):
    """Optimize mode on the RVE oracles (c: two fidelities): both plots drawn, the parity plot with the
    points the model predicted before they were run (a PlotWarning would be an error here)."""
    import importlib.util

    path = Path(__file__).parents[2] / "experiments" / f"{script}.py"
    spec = importlib.util.spec_from_file_location(f"experiment_{script}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    camp = mod.main(["--smoke", "--run-dir", str(tmp_path / "run"), "--no-progress"])
    art = tmp_path / "run" / "artifacts"
    for png in ("parity.png", "convergence.png"):
        assert (art / png).read_bytes()[:4] == b"\x89PNG"
    _, data = plots.parity_data(camp)
    assert list(data) == list(camp.model_output_names)
    assert sum(len(obs) for obs, _, _ in data.values()) >= 1
    assert camp.store.get_meta("size") == "smoke"
    camp.close()
