"""The experiment scripts' own reports and the campaign plots on unhappy runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import loops.plots as plots
from loops.config import parse_config
from loops.engine import Campaign
from loops.experiment import experiment_parser, run_experiment
from oracles.exceptions import CalculationFailed
from oracles.function import FunctionOracle

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
BOUNDS = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"experiment_{name}", EXPERIMENTS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stopped_b(tmp_path, old, new, *flags):
    """Experiment (b) run on its config with ``old`` replaced by ``new``: the ``SystemExit`` message
    (one line) and the run directory."""
    text = (EXPERIMENTS / "configs" / "b_microstructure_bo.toml").read_text()
    bad = text.replace(old, new)
    assert bad != text
    cfg = tmp_path / "b_edited.toml"
    cfg.write_text(bad)
    run = tmp_path / "run"
    args = experiment_parser("t").parse_args([*flags, "--run-dir", str(run), "--no-progress"])
    with pytest.raises(SystemExit) as stop:
        run_experiment(cfg, {}, args)
    msg = stop.value.code
    assert isinstance(msg, str) and "\n" not in msg
    return msg, cfg, run


def test_a_config_the_campaign_refuses_ends_an_experiment_script_in_one_line(tmp_path):
    """An output name the oracle lacks had ended the script in a traceback from engine._problem
    (``scalebridge run`` of the same config says one line)."""
    msg, cfg, run = _stopped_b(tmp_path, 'outputs = ["stiffness_per_density", "stiffness"]',
                               'outputs = ["stiffness_per_density", "stifness"]')
    assert msg.startswith(str(cfg)) and "'stifness' is not an output of the oracle" in msg and "'stiffness'" in msg
    assert not run.exists()  # nothing left behind


def test_an_unreachable_dask_scheduler_ends_an_experiment_script_in_one_line(tmp_path):
    """An executor that cannot start had ended the script in a traceback from loops/executors.py
    (``scalebridge run`` of the same config says one line); the run directory stays for a rerun."""
    msg, _, run = _stopped_b(tmp_path, '[executor]\nkind = "process"',
                             '[executor]\nkind = "dask"\naddress = "tcp://127.0.0.1:9"', "--smoke")
    assert msg.startswith("executor.address = 'tcp://127.0.0.1:9': no Dask scheduler answered")
    assert (run / "config.json").exists()


def _composite(x):
    """Stiffness rises with x1, stiffness per density falls with it: the best design sits on the constraint."""
    E = 10.0 * float(x[0])
    rho = 1.0 + float(x[1])
    return [(12.0 - E) / rho, E, rho]


def test_b_reports_the_best_design_under_the_configs_constraint_not_a_fixed_one(tmp_path, capsys):
    """Script (b) had picked its "best feasible design" with stiffness >= 3 written into it, whatever
    the config's constraint: with ``stiffness >= 6`` it printed a design the campaign calls infeasible."""
    oracle = FunctionOracle(_composite, BOUNDS, names=("volume_fraction", "radius_fraction"),
                            outputs=("stiffness_per_density", "stiffness", "density"))
    cfg = parse_config({
        "name": "b-probe", "mode": "optimize", "oracle": {"name": "branin"},
        "outputs": ["stiffness_per_density", "stiffness"],
        "objective": {"outputs": ["stiffness_per_density"], "minimize": False,
                      "constraints": [{"output": "stiffness", "lower": 6.0}]},
        "budget": {"calls": 9}, "initial": {"n": 8},
        "acquisition": {"num_restarts": 2, "raw_samples": 32, "maxiter": 20},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs"),
    })
    camp = Campaign(cfg, run_dir=tmp_path / "run", oracle=oracle)
    try:
        camp.run()
        rows = [r for r in camp.store.rows(status="done") if r["role"] != "validation"]
        # the design holds a point between the old fixed threshold and the config's, better than any feasible one
        assert any(3.0 <= r["y"][1] < 6.0 for r in rows)
        best = max((r for r in rows if r["y"][1] >= 6.0), key=lambda r: r["y"][0])
        assert max(r["y"][0] for r in rows if r["y"][1] >= 3.0) > best["y"][0]
        capsys.readouterr()
        _script("b_microstructure_bo").report_best(camp)
        out = capsys.readouterr().out.strip()
        assert out.startswith("best feasible design: ")
        assert f"-> stiffness/density {best['y'][0]:.4g} (stiffness {best['y'][1]:.4g}, density {best['y'][2]:.4g})" in out
        assert f"volume_fraction={best['x'][0]:.4g}" in out
    finally:
        camp.close()


def test_a_names_the_model_version_its_run_registered(capsys):
    """Script (a) had printed ``models:/<name>/latest``, which is another run's model once a later run
    registered under the same name; the run store records the version this run registered."""

    class Model:
        def material_response(self, F):
            n = F.shape[0]
            return SimpleNamespace(P=F - torch.eye(2, dtype=F.dtype), tangent=torch.zeros(n, 2, 2, 2, 2))

    class Oracle:
        bounds = torch.tensor([[-0.1] * 4, [0.1] * 4], dtype=torch.float64)

        def evaluate(self, H):
            return SimpleNamespace(Y=H.clone())

    meta = {"registered_model_name": "rve-fibre-neohookean-P-smoke", "registered_model_version": "3"}
    camp = SimpleNamespace(final_model=Model(), oracle=Oracle(), store=SimpleNamespace(get_meta=meta.get),
                           config=SimpleNamespace(tracking=SimpleNamespace(registered_model_name="other")))
    _script("a_rve_active_learning").check_material_model(camp)
    out = capsys.readouterr().out
    assert "registered model: models:/rve-fibre-neohookean-P-smoke/3 " in out and "/latest" not in out


def _always_fails(x):
    raise CalculationFailed("solver diverged")


def test_learn_convergence_plot_without_held_out_errors_says_so(tmp_path, figures):
    """A learn campaign whose every point failed had its held-out error panels labelled
    "no feasible point yet" (an optimize-mode phrase; learn mode has no feasibility)."""
    oracle = FunctionOracle(_always_fails, BOUNDS, names=("x1", "x2"), outputs=("f",))
    cfg = parse_config({
        "name": "learn-failed", "mode": "learn", "oracle": {"name": "branin"},
        "budget": {"calls": 3}, "initial": {"n": 2}, "learn": {"n_validation": 2},
        "acquisition": {"num_restarts": 2, "raw_samples": 32, "maxiter": 20},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs"),
    })
    camp = Campaign(cfg, run_dir=tmp_path / "run", oracle=oracle)
    try:
        camp.run()
        rows = camp.store.rows()
        assert rows and all(r["status"] == "failed" for r in rows)
        assert not [m for m in camp.store.metrics() if m["name"] == "nrmse"]
        figures.clear()
        plots.convergence_plot(camp, tmp_path / "conv.png")
        (fig,) = figures
        texts = [t.get_text() for ax in fig.axes for t in ax.texts]
        assert texts == ["no held-out errors yet"] * 6
    finally:
        camp.close()
