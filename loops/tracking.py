"""MLflow tracking of a campaign: one MLflow run per campaign.

The run store is the source of truth; MLflow is a view of it. Metrics go to
the store first and are copied to MLflow (``logged`` flag per row), so when the
tracking server is unreachable the campaign goes on, and the next session
(``scalebridge resume``) brings the MLflow run up to date. The MLflow run id
is kept in the store, so a resumed campaign writes to the same run.

Tracking never holds up the campaign:

* every MLflow call runs under short HTTP settings (:data:`SHORT_HTTP`:
  ``MLFLOW_HTTP_REQUEST_TIMEOUT`` 10 s, ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` 1
  instead of MLflow's 120 s and 7 retries with exponential backoff, which add
  up to about four minutes per failed call); values the user set in the
  environment are kept;
* an HTTP tracking server is first probed with one HTTP request
  (:func:`reachable`, 2 s), so an unreachable server, or one that accepts
  connections and never answers, costs one probe, not a timed-out request;
* after a failure the tracker is *down*: one warning line, then at most one
  reconnection probe at a time, in a background thread, started at most every
  :attr:`Tracker.retry_interval` seconds from the loop's checkpoints (model
  updates); when a probe succeeds, the next checkpoint reconnects and sends
  every metric the store holds that MLflow lacks;
* :meth:`Tracker.finish` makes a last attempt (one probe) and otherwise says in
  one line that ``scalebridge resume`` will send the rest.

Each registered model version carries a description, tags (campaign name,
``smoke`` or ``full``, oracle and its settings digest, final metrics) and an
input/output signature (:func:`registry_tags`, :func:`model_description`).

Default tracking store: ``$MLFLOW_TRACKING_URI`` or else ``sqlite:///mlflow.db``
in the working directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: MLflow HTTP client settings for tracking calls (environment variables read by
#: ``mlflow.utils.rest_utils.http_request`` at each call); a variable already set
#: in the environment wins.
SHORT_HTTP: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    # artifact uploads and downloads without a progress bar on the terminal
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}

#: seconds a TCP connection to an HTTP tracking server may take in :func:`reachable`
PROBE_TIMEOUT = 2.0


def short_http_timeouts() -> contextlib.AbstractContextManager[None]:
    """Context manager: :data:`SHORT_HTTP` in ``os.environ`` for its body, then put back.

    Only variables the user has not set are touched.
    """
    from surrogates.mlflow_flavor import env_defaults

    return env_defaults(SHORT_HTTP)


def reachable(uri: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether the server of an ``http(s)://`` tracking URI answers an HTTP request
    (``GET <path>/health``, any status) within ``timeout`` s
    (:func:`surrogates.mlflow_flavor.server_silence`).

    A server that accepts connections but never answers counts as down: a TCP
    connection alone would let every MLflow call then wait out its own timeout.
    A TLS failure counts as an answer (the MLflow call reports it). Other URIs
    (``sqlite:``, ``file:``, local paths, ``databricks`` ...) and a server reached
    through a proxy are not probed and give True: their failures show in the MLflow
    call itself.
    """
    from surrogates.mlflow_flavor import server_silence

    return server_silence(uri, timeout) is None


def one_line(e: BaseException, limit: int = 200) -> str:
    """``Type: first line of the message``, cut to ``limit`` characters (SQLAlchemy's note that
    opens some messages, ``(raised as a result of Query-invoked autoflush; ...)``, is skipped for
    the line that says what failed)."""
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.startswith("(raised as a result of")]
    msg = (said or lines or [""])[0]
    s = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    return s if len(s) <= limit else s[: limit - 3] + "..."


def tracking_uri(config) -> str:
    """The tracking URI of a campaign or FE² config: ``tracking.tracking_uri``, ``$MLFLOW_TRACKING_URI``
    or ``sqlite:///mlflow.db``."""
    return config.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


def absolute_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute (``sqlite:///mlflow.db`` names a
    file in the working directory, a different one for a resume started elsewhere)."""
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = uri.removeprefix("sqlite:///")
        if path and path != ":memory:":
            return "sqlite:///" + str(Path(path).resolve())
    return uri


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


def settings_digest(settings: Any) -> str:
    """First 16 hex digits of the SHA-256 of ``settings`` as canonical JSON (sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class _Probe:
    """One background reachability probe (a daemon thread); ``result`` is None while it runs."""

    def __init__(self, uri: str, timeout: float):
        self.result: bool | None = None
        self._thread = threading.Thread(target=self._run, args=(uri, timeout), daemon=True,
                                        name="scalebridge-mlflow-probe")
        self._thread.start()

    def _run(self, uri: str, timeout: float) -> None:
        self.result = reachable(uri, timeout)


class TrackingWarning(UserWarning):
    """The tracking store did not answer; the campaign goes on (one warning per outage)."""


class Tracker:
    """Copies a campaign's store into an MLflow run; never raises into the loop, never waits long.

    Args:
        config: the campaign config (``tracking`` section, ``name``, ``oracle``).
        store: the campaign's :class:`~loops.store.RunStore`.
        run_dir: the run directory (its path is a tag of the MLflow run).

    Attributes:
        ok: True while connected with the MLflow run started.
        retry_interval: seconds between reconnection probes while the server is down.
        uri: the tracking URI in use.
    """

    retry_interval: float = 30.0

    def __init__(self, config, store, run_dir: str | Path):
        self.config = config
        self.store = store
        self.run_dir = Path(run_dir)
        self.enabled = config.tracking.enabled
        self.client = None
        self.run_id: str | None = store.get_meta("mlflow_run_id")
        self.ok = False
        self.uri = self._target_uri()
        self._warned = False
        self._probe: _Probe | None = None
        self._last_try = float("-inf")

    # ------------------------------------------------------------ connection
    def _target_uri(self) -> str:
        """The store of this campaign's MLflow run: the one it was created in (recorded,
        absolute), so that a resume from another directory or with another default finds
        it; before the run exists, the configured URI made absolute."""
        recorded = self.store.get_meta("mlflow_uri")
        if recorded and self.run_id:
            return recorded
        return absolute_uri(tracking_uri(self.config))

    def _down(self, what: str, e: BaseException) -> None:
        self.ok = False
        self._last_try = time.monotonic()
        self.store.set_meta("mlflow_behind", True)
        if not self._warned:
            self._warned = True
            warnings.warn(
                f"MLflow {what} at {self.uri} failed ({one_line(e)}); the campaign goes on, the run store "
                "keeps everything and MLflow catches up when the server answers (or at `scalebridge resume`)",
                TrackingWarning, stacklevel=3,
            )

    def start(self) -> None:
        """Connect and create (or reopen) the MLflow run: one probe, then short-timeout calls."""
        if not self.enabled:
            return
        self.uri = self._target_uri()
        self._last_try = time.monotonic()
        if not reachable(self.uri):
            self._down("connection", ConnectionError(f"nothing answers at {self.uri}"))
            return
        self._connect()

    def _connect(self) -> None:
        try:
            with short_http_timeouts():
                self._open_run()
        except Exception as e:  # noqa: BLE001
            self._down("start", e)
            return
        if self._warned:
            log.warning("MLflow at %s answers again: sending what the run store holds", self.uri)
        self._warned = False
        self.ok = True

    def _open_run(self) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(tracking_uri=self.uri)
        if self.run_id is None:
            name = self.config.tracking.experiment
            exp = self.client.get_experiment_by_name(name)
            exp_id = (exp.experiment_id if exp is not None
                      else self.client.create_experiment(name, artifact_location=artifact_location(self.uri)))
            run = self.client.create_run(exp_id, run_name=self.config.name,
                                         tags={"scalebridge.run_dir": str(self.run_dir.resolve())})
            self.run_id = run.info.run_id
            self.store.set_meta("mlflow_run_id", self.run_id)
            self.store.set_meta("mlflow_uri", self.uri)
            params = flatten_params(self.config.model_dump(mode="json"))
            items = [Param(k, v[:6000]) for k, v in params.items()]
            for i in range(0, len(items), 100):
                self.client.log_batch(self.run_id, params=items[i : i + 100])
        else:
            self.client.update_run(self.run_id, status="RUNNING")

    def stopped(self) -> None:
        """The campaign stopped before its end (a signal, a lost executor): its MLflow run is
        marked KILLED (it had stayed RUNNING until a resume); a resume sets it RUNNING again."""
        if not (self.enabled and self.ok and self.run_id):
            return
        try:
            self.catch_up()
            with short_http_timeouts():
                self.client.set_terminated(self.run_id, status="KILLED", end_time=int(time.time() * 1000))
        except Exception as e:  # noqa: BLE001
            self._down("stop", e)

    def _server_back(self) -> bool:
        """Non-blocking: True once a background probe found the server; starts one when due."""
        if self._probe is not None:
            if self._probe.result is None:
                return False
            up, self._probe = self._probe.result, None
            if up:
                return True
            self._last_try = time.monotonic()
        if time.monotonic() - self._last_try >= self.retry_interval:
            self._probe = _Probe(self._target_uri(), PROBE_TIMEOUT)
        return False

    # ------------------------------------------------------------ metrics
    def catch_up(self) -> None:
        """Checkpoint: send every metric row not yet in MLflow (reconnecting first if the server is back)."""
        if not self.enabled:
            return
        if not self.ok:
            if not self._server_back():
                return
            self.uri = self._target_uri()
            self._connect()
            if not self.ok:
                return
        self._send_metrics()

    log_pending = catch_up

    def _send_metrics(self) -> None:
        try:
            from mlflow.entities import Metric

            rows = self.store.metrics(unlogged_only=True)
            ms = [Metric(r["name"], r["value"], int(r["time"] * 1000), r["step"]) for r in rows]
            with short_http_timeouts():
                for i in range(0, len(ms), 500):
                    self.client.log_batch(self.run_id, metrics=ms[i : i + 500])
            if rows:
                self.store.mark_logged(max(r["step"] for r in rows))
            self.store.set_meta("mlflow_behind", False)
        except Exception as e:  # noqa: BLE001
            self._down("metric logging", e)

    # ------------------------------------------------------------ end of a run
    def finish(self, campaign, state) -> None:
        """Artifacts (config, dataset, plots), final surrogate (registered with tags), run status."""
        from loops.plots import PlotWarning, convergence_plot, parity_plot

        art = self.run_dir / "artifacts"
        art.mkdir(exist_ok=True)
        (art / "config.json").write_text(self.config.model_dump_json(indent=2))
        rows = campaign.store.rows()
        (art / "evaluations.json").write_text(json.dumps(rows, default=str))
        rec = campaign.store.get_meta("recommendation")
        if rec is not None:  # the campaign's answer (Campaign.best's predicted point), not the best observation
            named = {"x": dict(zip(campaign.oracle.input_names, rec["x"], strict=True)),
                     "predicted_value": rec.get("predicted_value"), "predicted_sd": rec.get("predicted_sd"),
                     "fidelity": rec.get("fidelity")}
            (art / "recommendation.json").write_text(json.dumps(named, indent=2))
        front = campaign.store.get_meta("pareto_front")
        if front is not None:  # several objectives: the observed Pareto front
            (art / "pareto_front.json").write_text(json.dumps(front, indent=2))
        for plot, file in ((convergence_plot, "convergence.png"), (parity_plot, "parity.png")):
            try:
                plot(campaign, art / file)
            except Exception as e:  # noqa: BLE001  (a plot must not lose a finished campaign)
                warnings.warn(f"{file} failed: {one_line(e)}", PlotWarning, stacklevel=2)
        surrogate = None
        try:
            surrogate = final_surrogate(campaign)
            if surrogate is not None and hasattr(surrogate, "get_config"):
                from surrogates.base import save_surrogate

                save_surrogate(surrogate, art / "surrogate")
        except Exception as e:  # noqa: BLE001
            warnings.warn(f"final surrogate failed: {one_line(e)}", stacklevel=2)
            surrogate = None
        name = self.config.tracking.registered_model_name
        if surrogate is not None and not hasattr(surrogate, "get_config") and name:
            # a campaign that ended on its bootstrap model (BoTorch's) had registered nothing, silently
            warnings.warn(
                f"the final model is a {type(surrogate).__name__}, not a scalebridge surrogate: nothing is saved "
                f"or registered as {name!r}: the campaign ended on its bootstrap model, before "
                f"model.name = {self.config.model.name!r} could be fitted (see the BootstrapModelWarning)",
                TrackingWarning,
                stacklevel=2)
        campaign.final_model = surrogate
        if not self.enabled:
            return
        if not self.ok:  # the last attempt of this run: one probe
            self.start()
        self.catch_up()
        if not self.ok:
            log.info("MLflow at %s unreachable: `scalebridge resume %s` sends the rest", self.uri, self.run_dir)
            return
        try:
            with short_http_timeouts():
                self.client.log_artifacts(self.run_id, str(art), artifact_path=None)
                if rec is not None and rec.get("predicted_value") is not None:
                    self.client.log_metric(self.run_id, "recommended_predicted_value", float(rec["predicted_value"]))
                    for n, v in zip(campaign.oracle.input_names, rec["x"], strict=True):
                        self.client.set_tag(self.run_id, f"recommendation.{n}", f"{float(v):.10g}")
                # log (and register) the surrogate once per data set: a resume that evaluated
                # nothing new must not add a model version to the registry
                data_key = _data_key(campaign.store)
                logged = (self.store.get_meta("model_uri") is not None
                          and self.store.get_meta("model_data_key") == data_key)
                if surrogate is not None and hasattr(surrogate, "get_config") and not logged:
                    self._log_surrogate(surrogate, campaign, state, data_key)
                elif logged and surrogate is not None and self.store.get_meta("model_description_pending"):
                    # registered before a failure, not yet described: described now, no new version
                    self._describe_version(surrogate, campaign, state)
                self.client.set_terminated(self.run_id, status="FINISHED", end_time=int(time.time() * 1000))
            self.store.set_meta("mlflow_finished", True)
        except Exception as e:  # noqa: BLE001
            self._down("artifact logging", e)

    def _log_surrogate(self, model, campaign, state, data_key: str) -> None:
        """Log (and register) ``model`` to the campaign's run, recorded in the run store as the
        model of the data ``data_key`` (:func:`_data_key`) as soon as it is logged, then describe
        the registered version (:meth:`_describe_version`)."""
        import mlflow

        from surrogates.mlflow_flavor import log_model, surrogate_signature

        name = self.config.tracking.registered_model_name
        in_names, out_names = model_io_names(model, campaign)
        # mlflow.set_tracking_uri also writes $MLFLOW_TRACKING_URI: put both back afterwards
        previous_env = os.environ.get("MLFLOW_TRACKING_URI")
        previous = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.uri)
        try:
            # MLflow prints "Successfully registered model ..." to stderr itself; the campaign's
            # own output names the registered version: its lines go to the debug log
            said = io.StringIO()
            # to the campaign's run by id, not by making it the active run: a campaign run
            # inside the caller's own active run had failed there ("Run ... is already active")
            with contextlib.redirect_stderr(said):
                info = log_model(model, "surrogate", registered_model_name=name, run_id=self.run_id,
                                 signature=surrogate_signature(in_names, out_names,
                                                               getattr(model, "dim_F", None)),
                                 metadata={"input_names": list(in_names), "output_names": list(out_names)})
            if said.getvalue().strip():
                log.debug("MLflow: %s", said.getvalue().strip())
        finally:
            mlflow.set_tracking_uri(previous)
            if previous_env is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = previous_env
        self.store.set_meta("model_uri", getattr(info, "model_uri", None))
        # logged for this data: a failure below had made the next resume register a second
        # version of the same data (and left the first without description and tags)
        self.store.set_meta("model_data_key", data_key)
        version = getattr(info, "registered_model_version", None)
        if name and version is not None:
            self.store.set_meta("registered_model_name", name)
            self.store.set_meta("registered_model_version", str(version))
            self.store.set_meta("model_description_pending", True)
            self._describe_version(model, campaign, state)

    def _describe_version(self, model, campaign, state) -> None:
        """Description and tags (:func:`model_description`, :func:`registry_tags`) of the
        registered version the run store records, scored on ``model``."""
        name = self.store.get_meta("registered_model_name")
        version = self.store.get_meta("registered_model_version")
        # the held-out errors of the model registered (a final surrogate refitted on all the
        # data is not the campaign's last model, whose errors the campaign's metrics are)
        own = campaign.validation_metrics(model) if model is not campaign.model else None
        tags = registry_tags(campaign, state, metrics=own or None)
        self.client.update_model_version(name, version, description=model_description(model, campaign, state, tags))
        for k, v in tags.items():
            self.client.set_model_version_tag(name, version, k, v)
        self.store.set_meta("model_description_pending", False)


def artifact_location(uri: str) -> str | None:
    """Where a new experiment's artifacts go: for a SQLite store, ``mlruns/`` beside the database
    file (MLflow's own default is ``./mlruns`` in whatever directory the process runs in); for a
    server, None (the server decides)."""
    rest = uri[len("sqlite:"):] if uri.startswith("sqlite:") else ""
    path = rest[3:].split("?", 1)[0] if rest.startswith("///") else ""  # sqlite:///rel, sqlite:////abs
    if not path or path == ":memory:":
        return None
    return (Path(path).resolve().parent / "mlruns").as_uri()


def model_io_names(model, campaign) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(input names, output names)`` of a campaign's surrogate: its training data's, else the
    oracle's; a multi-fidelity surrogate's inputs end with ``"fidelity"``."""
    from surrogates.mlflow_flavor import surrogate_input_names

    ds = getattr(model, "train_dataset", None)
    ins = surrogate_input_names(model)
    outs = tuple(getattr(ds, "output_names", None) or ())
    if not ins:
        ins = tuple(campaign.oracle.input_names)
        if campaign.problem.multi_fidelity:
            ins += ("fidelity",)
    if not outs:
        outs = tuple(campaign.model_output_names)
    return ins, outs


def campaign_size(campaign) -> str:
    """``"smoke"`` or ``"full"``: the store's ``size`` meta (set by :mod:`loops.experiment`), else full."""
    return str(campaign.store.get_meta("size") or "full")


def registry_tags(campaign, state, metrics: dict[str, float] | None = None) -> dict[str, str]:
    """Tags of a registered model version: what made it, at which size, and how well it did.

    ``scalebridge.campaign`` (config name), ``scalebridge.size`` (``smoke`` or
    ``full``), ``scalebridge.mode``, ``scalebridge.oracle`` (its name),
    ``scalebridge.oracle_digest`` (:func:`settings_digest` of the ``[oracle]``
    section), ``scalebridge.run_dir``, ``scalebridge.calls`` and
    ``scalebridge.cost``, and ``metric.<name>`` for each final metric
    (``best_value`` in optimize mode, held-out errors in learn mode): ``metrics``
    when given (those of the registered model), else the campaign's last ones.
    """
    c = campaign.config
    oracle = c.oracle.model_dump(mode="json") if hasattr(c.oracle, "model_dump") else dict(c.oracle)
    tags = {
        "scalebridge.campaign": c.name,
        "scalebridge.size": campaign_size(campaign),
        "scalebridge.mode": c.mode,
        "scalebridge.oracle": str(oracle.get("name", type(campaign.oracle).__name__)),
        "scalebridge.oracle_digest": settings_digest(oracle),
        "scalebridge.run_dir": str(Path(campaign.run_dir).resolve()),
        "scalebridge.calls": str(state.calls),
        "scalebridge.cost": f"{state.cost:.6g}",
    }
    metrics = dict(state.metrics or {}) if metrics is None else dict(metrics)
    if state.best is not None:
        metrics.setdefault("best_value", state.best)
    for k, v in metrics.items():
        tags[f"metric.{k}"] = f"{float(v):.6g}"
    return tags


def model_description(model, campaign, state, tags: dict[str, str] | None = None) -> str:
    """One paragraph for the registry: model, campaign, size, oracle settings, data and final metrics."""
    tags = tags or registry_tags(campaign, state)
    ins, outs = model_io_names(model, campaign)
    metrics = ", ".join(f"{k.removeprefix('metric.')} {v}" for k, v in tags.items() if k.startswith("metric."))
    return (
        f"{type(model).__name__} from the {tags['scalebridge.size']} {campaign.config.mode} campaign "
        f"{campaign.config.name!r} on oracle {tags['scalebridge.oracle']!r} (settings digest "
        f"{tags['scalebridge.oracle_digest']}), {state.calls} calls, cost {tags['scalebridge.cost']}. "
        f"Inputs: {', '.join(ins)}; outputs: {', '.join(outs)}."
        + (f" Final metrics: {metrics}." if metrics else "")
        + f" Run directory: {tags['scalebridge.run_dir']}."
    )


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
    # fitted as the campaign's model is: a deterministic oracle's data noise-free (the README's
    # "the GP interpolates"; the registered GP had inferred a noise of 9.7 on Branin)
    return fit_model(
        name, X, Y, p.model_bounds, Yvar=campaign.fit_noise(Y, Yvar), fidelity_dim=p.d if p.multi_fidelity else None,
        options=c.tracking.final_surrogate_options,
        names=(tuple(campaign.oracle.input_names), campaign.model_output_names),
    )
