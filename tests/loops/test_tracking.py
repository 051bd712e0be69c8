"""MLflow: one run per campaign with metrics, plots and a registered surrogate."""

import os

import pytest
import torch
from mlflow.tracking import MlflowClient

from loops.config import parse_config
from loops.engine import Campaign
from oracles.analytic.test_functions import Branin


def _config(tmp_path, **over):
    base = {
        "name": "learn-branin",
        "mode": "learn",
        "oracle": {"name": "branin"},
        "budget": {"calls": 12},
        "initial": {"n": 6},
        "acquisition": {"name": "max_variance", "num_restarts": 2, "raw_samples": 64, "maxiter": 50},
        "executor": {"kind": "serial"},
        "learn": {"n_validation": 24},
        "tracking": {"registered_model_name": "branin-gp", "final_surrogate": "gp",
                     "final_surrogate_options": {"n_restarts": 1}},
        "run_dir": str(tmp_path / "runs"),
    }
    base.update(over)
    return parse_config(base)


def test_mlflow_run_metrics_plots_registered_model(tmp_path):
    camp = Campaign(_config(tmp_path), run_dir=tmp_path / "run")
    camp.run()
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    exp = client.get_experiment_by_name("scalebridge")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["mode"] == "learn" and run.data.params["oracle.name"] == "branin"
    hist = client.get_metric_history(run.info.run_id, "nrmse")
    assert len(hist) >= 3 and [h.step for h in hist] == sorted(h.step for h in hist)
    for key in ("calls", "cost", "acq_time", "nlpd", "coverage95"):
        assert key in run.data.metrics
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"convergence.png", "parity.png", "config.json", "evaluations.json"} <= arts
    # the registered surrogate loads and predicts like the final model, and like Branin
    from surrogates.mlflow_flavor import load_model

    model = load_model("models:/branin-gp/1")
    X = Branin().bounds[0] + (Branin().bounds[1] - Branin().bounds[0]) * torch.rand(50, 2, dtype=torch.float64)
    mu = model.posterior(X).mean.detach()
    assert torch.allclose(mu, camp.final_model.posterior(X).mean.detach(), rtol=1e-6, atol=1e-6)
    truth = Branin().evaluate(X).Y
    # a 12-point GP of Branin: error well below the function's spread
    assert (mu - truth).pow(2).mean().sqrt() < 0.5 * truth.std()


@pytest.mark.slow
def test_unreachable_tracking_server_then_catch_up(tmp_path, monkeypatch):
    good_uri = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = _config(tmp_path, budget={"calls": 8}, tracking={"registered_model_name": None})
    with pytest.warns(UserWarning, match="MLflow"):
        res = Campaign(cfg, run_dir=tmp_path / "run").run()
    assert res.state.calls == 8  # the campaign went on
    camp = Campaign.resume(tmp_path / "run")
    assert camp.store.get_meta("mlflow_behind") is True
    n_metrics = len(camp.store.metrics())
    assert n_metrics > 0 and len(camp.store.metrics(unlogged_only=True)) == n_metrics
    camp.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", good_uri)
    Campaign.resume(tmp_path / "run").run()  # nothing left to evaluate: only MLflow catches up
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("scalebridge").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    logged = sum(len(client.get_metric_history(runs[0].info.run_id, k)) for k in runs[0].data.metrics)
    hist = {k: [(h.step, h.value) for h in client.get_metric_history(runs[0].info.run_id, k)] for k in runs[0].data.metrics}
    assert logged == n_metrics, hist


def test_resume_registers_a_model_version_only_for_new_data(tmp_path):
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    cfg = _config(tmp_path, budget={"calls": 8}, learn={"n_validation": 8})

    def versions():
        return sorted(int(v.version) for v in client.search_model_versions("name='branin-gp'"))

    Campaign(cfg, run_dir=tmp_path / "run").run()
    assert versions() == [1]
    for _ in range(2):  # a finished campaign resumed: nothing new, nothing registered
        Campaign.resume(tmp_path / "run").run()
    assert versions() == [1]
    # the same campaign with a larger budget produces new data: one new version
    Campaign(cfg.model_copy(update={"budget": cfg.budget.model_copy(update={"calls": 10})}),
             run_dir=tmp_path / "run").run()
    assert versions() == [1, 2]
    Campaign.resume(tmp_path / "run").run()
    assert versions() == [1, 2]
    runs = client.search_runs([client.get_experiment_by_name("scalebridge").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
