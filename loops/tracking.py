"""MLflow tracking of a campaign: one MLflow run per campaign.

The run store is the source of truth; MLflow is a view of it. Metrics go to
the store first and are copied to MLflow (``logged`` flag per row), so when the
tracking server is unreachable the campaign goes on, and the next session
(``scalebridge resume``) brings the MLflow run up to date. The MLflow run id
is kept in the store, so a resumed campaign writes to the same run.

Default tracking store: ``$MLFLOW_TRACKING_URI`` or else ``sqlite:///mlflow.db``
in the working directory.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any


def tracking_uri(config) -> str:
    return config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def flatten_params(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config dict -> flat ``{"a.b": "value"}`` MLflow params (non-strings as JSON)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_params(v, key + "."))
        else:
            out[key] = json.dumps(v) if not isinstance(v, str) else v
    return out


class Tracker:
    """Copies a campaign's store into an MLflow run; never raises into the loop."""

    def __init__(self, config, store, run_dir: str | Path):
        self.config = config
        self.store = store
        self.run_dir = Path(run_dir)
        self.enabled = config.tracking.enabled
        self.client = None
        self.run_id: str | None = store.get_meta("mlflow_run_id")
        self.ok = False

    def _warn(self, what: str, e: Exception) -> None:
        self.ok = False
        warnings.warn(f"MLflow {what} failed ({type(e).__name__}: {e}); the run store keeps everything "
                      "and `scalebridge resume` brings MLflow up to date", stacklevel=2)
        self.store.set_meta("mlflow_behind", True)

    def start(self) -> None:
        if not self.enabled:
            return
        try:
            from mlflow.tracking import MlflowClient

            self.client = MlflowClient(tracking_uri=tracking_uri(self.config))
            if self.run_id is None:
                exp = self.client.get_experiment_by_name(self.config.tracking.experiment)
                exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(self.config.tracking.experiment)
                run = self.client.create_run(exp_id, run_name=self.config.name,
                                             tags={"scalebridge.run_dir": str(self.run_dir.resolve())})
                self.run_id = run.info.run_id
                self.store.set_meta("mlflow_run_id", self.run_id)
                params = flatten_params(self.config.model_dump(mode="json"))
                from mlflow.entities import Param

                items = [Param(k, v[:6000]) for k, v in params.items()]
                for i in range(0, len(items), 100):
                    self.client.log_batch(self.run_id, params=items[i : i + 100])
            else:
                self.client.update_run(self.run_id, status="RUNNING")
            self.ok = True
        except Exception as e:  # noqa: BLE001
            self._warn("start", e)

    def catch_up(self) -> None:
        """Send every metric row not yet in MLflow."""
        if not self.enabled:
            return
        if not self.ok:
            self.start()
            if not self.ok:
                return
        try:
            from mlflow.entities import Metric

            rows = self.store.metrics(unlogged_only=True)
            ms = [Metric(r["name"], r["value"], int(r["time"] * 1000), r["step"]) for r in rows]
            for i in range(0, len(ms), 500):
                self.client.log_batch(self.run_id, metrics=ms[i : i + 500])
            if rows:
                self.store.mark_logged(max(r["step"] for r in rows))
            self.store.set_meta("mlflow_behind", False)
        except Exception as e:  # noqa: BLE001
            self._warn("metric logging", e)

    log_pending = catch_up

    def finish(self, campaign, state) -> None:
        """Artifacts (config, dataset, plots), final surrogate, run status."""
        from loops.plots import convergence_plot, parity_plot

        art = self.run_dir / "artifacts"
        art.mkdir(exist_ok=True)
        (art / "config.json").write_text(self.config.model_dump_json(indent=2))
        rows = campaign.store.rows()
        (art / "evaluations.json").write_text(json.dumps(rows, default=str))
        try:
            convergence_plot(campaign, art / "convergence.png")
            parity_plot(campaign, art / "parity.png")
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"plotting failed: {type(e).__name__}: {e}", stacklevel=2)
        surrogate = None
        try:
            surrogate = final_surrogate(campaign)
            if surrogate is not None and hasattr(surrogate, "get_config"):
                from surrogates.base import save_surrogate

                save_surrogate(surrogate, art / "surrogate")
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"final surrogate failed: {type(e).__name__}: {e}", stacklevel=2)
            surrogate = None
        campaign.final_model = surrogate
        if not self.enabled:
            return
        self.catch_up()
        if not self.ok:
            return
        try:
            self.client.log_artifacts(self.run_id, str(art), artifact_path=None)
            # log (and register) the surrogate once per data set: a resume that evaluated
            # nothing new must not add a model version to the registry
            data_key = _data_key(campaign.store)
            logged = self.store.get_meta("model_uri") is not None and self.store.get_meta("model_data_key") == data_key
            if surrogate is not None and hasattr(surrogate, "get_config") and not logged:
                self._log_surrogate(surrogate)
                self.store.set_meta("model_data_key", data_key)
            self.client.set_terminated(self.run_id, status="FINISHED", end_time=int(time.time() * 1000))
            self.store.set_meta("mlflow_finished", True)
        except Exception as e:  # noqa: BLE001
            self._warn("artifact logging", e)

    def _log_surrogate(self, model) -> None:
        import mlflow

        name = self.config.tracking.registered_model_name
        try:
            from surrogates.mlflow_flavor import log_model
        except ImportError:
            warnings.warn("surrogates.mlflow_flavor is not available: surrogate saved as an artifact only",
                          stacklevel=2)
            return
        # mlflow.set_tracking_uri also writes $MLFLOW_TRACKING_URI: put both back afterwards
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(tracking_uri(self.config))
        try:
            with mlflow.start_run(run_id=self.run_id):
                info = log_model(model, "surrogate", registered_model_name=name)
        finally:
            mlflow.set_tracking_uri(previous)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env
        self.store.set_meta("model_uri", getattr(info, "model_uri", None))
        if name:
            self.store.set_meta("registered_model_name", name)


def _data_key(store) -> str:
    """Fingerprint of the finished evaluations: ``"done:failed:last finished row id"``."""
    rows = [r for r in store.rows() if r["status"] != "pending"]
    done = sum(r["status"] == "done" for r in rows)
    return f"{done}:{len(rows) - done}:{max((r['id'] for r in rows), default=0)}"


def final_surrogate(campaign):
    """The model to hand over: refit with the configured project surrogate on all data."""
    from loops.models import fit_model

    c = campaign.config
    name = c.tracking.final_surrogate
    if name is None:
        return campaign.model
    X, Y, Yvar = campaign.data()
    if len(X) < 2:
        return None
    p = campaign.problem
    return fit_model(
        name, X, Y, p.model_bounds, Yvar=Yvar, fidelity_dim=p.d if p.multi_fidelity else None,
        options=c.tracking.final_surrogate_options,
        names=(tuple(campaign.oracle.input_names), campaign.model_output_names),
    )
