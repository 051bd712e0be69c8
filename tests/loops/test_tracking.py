"""MLflow: one run per campaign with metrics, plots and a registered surrogate."""

import os
from pathlib import Path

import mlflow
import pytest
import torch
from mlflow.tracking import MlflowClient

from loops.config import parse_config
from loops.engine import CallsBudget, Campaign
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
    # the registered version says what made it: description, tags, signature
    from loops.tracking import settings_digest

    mv = client.get_model_version("branin-gp", "1")
    assert "learn-branin" in mv.description and "full" in mv.description
    assert mv.tags["scalebridge.campaign"] == "learn-branin" and mv.tags["scalebridge.size"] == "full"
    assert mv.tags["scalebridge.oracle"] == "branin"
    assert mv.tags["scalebridge.oracle_digest"] == settings_digest(camp.config.oracle.model_dump(mode="json"))
    assert mv.tags["scalebridge.calls"] == "12"
    # the tags score the registered model (the final surrogate refitted on all data), on the
    # campaign's validation set: they had carried the campaign's last model's errors
    own = camp.validation_metrics(camp.final_model)
    assert float(mv.tags["metric.nrmse"]) == pytest.approx(own["nrmse"], rel=1e-5)
    assert f"nrmse {mv.tags['metric.nrmse']}" in mv.description
    sig = mlflow.models.get_model_info("models:/branin-gp/1").signature
    assert sig.inputs.input_names() == list(Branin().input_names)
    assert [t.name for t in sig.outputs.inputs] == ["mean", "variance"]
    # the registered surrogate loads and predicts like the final model, and like Branin
    from surrogates.mlflow_flavor import load_model

    model = load_model("models:/branin-gp/1")
    X = Branin().bounds[0] + (Branin().bounds[1] - Branin().bounds[0]) * torch.rand(50, 2, dtype=torch.float64)
    mu = model.posterior(X).mean.detach()
    assert torch.allclose(mu, camp.final_model.posterior(X).mean.detach(), rtol=1e-6, atol=1e-6)
    truth = Branin().evaluate(X).Y
    # a 12-point GP of Branin: error well below the function's spread
    assert (mu - truth).pow(2).mean().sqrt() < 0.5 * truth.std()
    # Branin is deterministic: the final surrogate is fitted noise-free and interpolates its data
    # (it had been fitted with an inferred noise of 9.7, missing its points by 0.5)
    Xd, Yd, _ = camp.data()
    post = model.posterior(Xd)
    spread = float(Yd.std())
    assert float((post.mean.detach() - Yd).abs().max()) < 1e-3 * spread
    assert float(post.variance.detach().max().sqrt()) < 1e-2 * spread


@pytest.mark.slow
def test_unreachable_tracking_server_then_catch_up(tmp_path, monkeypatch):
    good_uri = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    cfg = _config(tmp_path, budget={"calls": 8}, tracking={"registered_model_name": None})
    with pytest.warns(UserWarning, match="MLflow"):
        res = Campaign(cfg, run_dir=tmp_path / "run").run()
    assert res.state.calls == 8  # the campaign went on
    camp = Campaign.resume(tmp_path / "run")
    assert camp.store.get_meta("mlflow_behind") is True
    stored = {(r["name"], r["step"]) for r in camp.store.metrics()}
    assert stored and len(camp.store.metrics(unlogged_only=True)) == len(camp.store.metrics())
    camp.close()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", good_uri)
    Campaign.resume(tmp_path / "run").run()  # nothing left to evaluate: only MLflow catches up
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("scalebridge").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    rid = runs[0].info.run_id
    logged = {(k, h.step) for k in runs[0].data.metrics for h in client.get_metric_history(rid, k)}
    assert stored <= logged  # every metric the store held while MLflow was away reached it


@pytest.mark.slow
def test_resume_registers_a_model_version_only_for_new_data(tmp_path):
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    cfg = _config(tmp_path, budget={"calls": 8}, learn={"n_validation": 8})

    def versions():
        return sorted(int(v.version) for v in client.search_model_versions("name='branin-gp'"))

    # a session stopped early (after 6 calls) registers the model of its data ...
    Campaign(cfg, run_dir=tmp_path / "run", stopping=CallsBudget(6)).run()
    assert versions() == [1]
    for _ in range(2):  # ... resumed with that early stop again: nothing new, nothing registered
        Campaign.resume(tmp_path / "run", stopping=CallsBudget(6)).run()
    assert versions() == [1]
    # resumed to its budget: new data, one new version
    Campaign.resume(tmp_path / "run").run()
    assert versions() == [1, 2]
    Campaign.resume(tmp_path / "run").run()
    assert versions() == [1, 2]
    runs = client.search_runs([client.get_experiment_by_name("scalebridge").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"


# ----------------------------------------------------------------- tracking never blocks


class _Cfg:
    """The parts of a campaign config the tracker reads."""

    def __init__(self, uri=None):
        self.name = "t"
        self.tracking = parse_config(
            {"oracle": {"name": "branin"}, "budget": {"calls": 1}, "tracking": {"tracking_uri": uri}}
        ).tracking

    def model_dump(self, mode="json"):
        return {"name": self.name}


def test_unreachable_server_costs_one_probe_then_catches_up_when_it_returns(tmp_path, monkeypatch):
    import time

    from loops.store import RunStore
    from loops.tracking import Tracker, TrackingWarning

    good = os.environ["MLFLOW_TRACKING_URI"]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    store = RunStore(tmp_path / "store.sqlite")
    tr = Tracker(_Cfg(), store, tmp_path)
    tr.retry_interval = 3600.0
    t0 = time.perf_counter()
    with pytest.warns(TrackingWarning) as rec:
        tr.start()
        for step in range(1, 6):  # checkpoints while down: no probe before retry_interval
            store.log_metrics(step, {"calls": step, "best_value": -step})
            tr.catch_up()
    assert time.perf_counter() - t0 < 5.0
    assert len(rec) == 1 and "\n" not in str(rec[0].message) and "127.0.0.1:9" in str(rec[0].message)
    assert not tr.ok and tr._probe is None and store.get_meta("mlflow_behind") is True
    # the server is back (here: the store the environment names now); a probe in the
    # background finds it, the next checkpoint reconnects and sends everything
    monkeypatch.setenv("MLFLOW_TRACKING_URI", good)
    tr.retry_interval = 0.0
    tr.catch_up()
    deadline = time.time() + 10
    while tr._probe is not None and tr._probe.result is None and time.time() < deadline:
        time.sleep(0.01)
    store.log_metrics(6, {"calls": 6, "best_value": -6})
    tr.catch_up()
    assert tr.ok and store.get_meta("mlflow_behind") is False
    assert store.metrics(unlogged_only=True) == []
    hist = MlflowClient(good).get_metric_history(tr.run_id, "best_value")
    assert sorted((h.step, h.value) for h in hist) == [(s, -float(s)) for s in range(1, 7)]
    store.close()


def test_short_http_settings_apply_only_inside_and_respect_the_user(monkeypatch):
    from loops.tracking import SHORT_HTTP, short_http_timeouts

    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")
    from mlflow.environment_variables import (
        MLFLOW_HTTP_REQUEST_MAX_RETRIES,
        MLFLOW_HTTP_REQUEST_TIMEOUT,
    )

    with short_http_timeouts():
        assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == int(SHORT_HTTP["MLFLOW_HTTP_REQUEST_TIMEOUT"]) <= 10
        assert MLFLOW_HTTP_REQUEST_MAX_RETRIES.get() == 3  # the user's setting wins
    assert "MLFLOW_HTTP_REQUEST_TIMEOUT" not in os.environ
    assert MLFLOW_HTTP_REQUEST_TIMEOUT.get() == 120  # MLflow's default outside


def test_reachable_probe():
    """Up means an HTTP answer (any status) within the probe's timeout: a server that accepts
    connections and never answers is down (before, the TCP connection alone counted, and every
    MLflow call then waited out its own timeout: 20 s stalls in the loop)."""
    import socket
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from loops.tracking import reachable

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(404)
            self.end_headers()

        def log_message(self, *a):
            pass

    http_srv = HTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=http_srv.serve_forever, daemon=True).start()
    assert reachable(f"http://127.0.0.1:{http_srv.server_address[1]}/prefix")
    http_srv.shutdown()
    http_srv.server_close()

    silent = socket.socket()  # listens, never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    port = silent.getsockname()[1]
    t0 = time.perf_counter()
    assert not reachable(f"http://127.0.0.1:{port}", timeout=0.5)
    assert time.perf_counter() - t0 < 3.0
    silent.close()
    assert not reachable(f"http://127.0.0.1:{port}")  # nothing listens
    assert reachable("sqlite:///x.db") and reachable("/some/path")



def test_resume_from_another_directory_finds_the_run_in_its_store(tmp_path):
    """The default store `sqlite:///mlflow.db` is relative to the working directory: a killed
    campaign resumed from another directory had looked for its run in a new empty mlflow.db
    there ("Run ... not found"), leaving the MLflow run detached. The store's absolute URI is
    recorded when the run is created, and a resume uses it."""
    import subprocess
    import sys
    import time

    from loops.store import RunStore

    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=str(root), OMP_NUM_THREADS="1")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "c.toml").write_text(
        'name = "cwd"\noracle = {name = "loops.fakes:SlowOracle", delay = 0.4}\n[budget]\ncalls = 10\n'
        '[initial]\nn = 3\n[acquisition]\nname = "sobol"\n[executor]\nkind = "serial"\n'
    )
    run = tmp_path / "run"
    p = subprocess.Popen([sys.executable, "-m", "loops.cli", "run", "c.toml", "--run-dir", str(run), "--no-progress"],
                         cwd=a, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rid, t0 = None, time.time()
    while time.time() - t0 < 120:
        try:
            store = RunStore(run / "store.sqlite", readonly=True)
            n = sum(r["status"] == "done" for r in store.rows())
            rid = store.get_meta("mlflow_run_id")
            store.close()
        except Exception:  # noqa: BLE001  (not created yet)
            n = 0
        if n >= 3 and rid:
            break
        time.sleep(0.2)
    p.kill()
    p.communicate(timeout=60)
    assert rid is not None
    r = subprocess.run([sys.executable, "-m", "loops.cli", "resume", str(run), "--no-progress"], cwd=b, env=env,
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0 and "MLflow" not in r.stderr, r.stderr
    assert not (b / "mlflow.db").exists()
    assert MlflowClient(f"sqlite:///{a / 'mlflow.db'}").get_run(rid).info.status == "FINISHED"


def test_an_interrupted_campaign_marks_its_mlflow_run_killed_until_resumed(tmp_path):
    """Ctrl-C left the MLflow run RUNNING until a resume."""
    import signal

    cfg = _config(tmp_path, budget={"calls": 10}, tracking={"registered_model_name": None})

    def interrupt(camp, st):
        if st.calls >= 7:
            os.kill(os.getpid(), signal.SIGINT)

    camp = Campaign(cfg, run_dir=tmp_path / "run", callbacks=[interrupt])
    res = camp.run()
    assert res.stopped_by == "SIGINT"
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    rid = _run_id(tmp_path / "run")
    assert client.get_run(rid).info.status == "KILLED"
    Campaign.resume(tmp_path / "run").run()
    assert client.get_run(rid).info.status == "FINISHED"


def _run_id(run):
    from loops.store import RunStore

    s = RunStore(run / "store.sqlite", readonly=True)
    try:
        return s.get_meta("mlflow_run_id")
    finally:
        s.close()


def test_the_recommendation_is_logged_with_the_run(tmp_path):
    """An optimize campaign logs its answer, the model's posterior-mean optimum, with the MLflow
    run (metric ``recommended_predicted_value``, tags ``recommendation.<input>``, artifact
    ``recommendation.json``): only the best observation had been logged, which for a noisy
    oracle is the luckiest draw (a probe's ``best_value`` -0.108 below the true minimum 0)."""
    import json

    cfg = _config(tmp_path, name="opt-branin", mode="optimize", learn={},
                  acquisition={"name": "qLogNEI", "num_restarts": 2, "raw_samples": 32, "maxiter": 30},
                  tracking={}, budget={"calls": 9})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    rec = res.recommendation
    assert rec is not None
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    run = client.search_runs([client.get_experiment_by_name("scalebridge").experiment_id])[0]
    assert run.data.metrics["recommended_predicted_value"] == pytest.approx(rec["predicted_value"], rel=1e-9)
    assert float(run.data.tags["recommendation.x1"]) == pytest.approx(rec["x"][0], rel=1e-9)
    saved = json.loads((tmp_path / "run" / "artifacts" / "recommendation.json").read_text())
    assert saved["x"]["x1"] == pytest.approx(rec["x"][0]) and saved["predicted_value"] == pytest.approx(
        rec["predicted_value"])


def test_a_sqlite_store_keeps_new_experiments_artifacts_beside_the_database(tmp_path):
    """MLflow's default put them under ./mlruns of whatever directory the process ran in."""
    from loops.tracking import artifact_location

    db = tmp_path / "sub" / "mlflow.db"
    assert artifact_location(f"sqlite:///{db}") == (tmp_path / "sub" / "mlruns").as_uri()
    assert artifact_location("http://localhost:5000") is None


def test_one_line_names_the_database_error_not_sqlalchemys_autoflush_note():
    from loops.tracking import one_line

    e = RuntimeError("(raised as a result of Query-invoked autoflush; consider using a session.no_autoflush block)\n"
                     "(sqlite3.OperationalError) database or disk is full\n[SQL: INSERT INTO metrics ...]")
    assert one_line(e) == "RuntimeError: (sqlite3.OperationalError) database or disk is full"
    assert one_line(RuntimeError("plain\nsecond")) == "RuntimeError: plain"
    assert one_line(RuntimeError("")) == "RuntimeError"
