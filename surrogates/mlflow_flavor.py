"""MLflow model flavor for scalebridge surrogates.

A logged surrogate is an MLflow model with two flavors:

* ``scalebridge``: the directory written by :func:`~surrogates.base.save_surrogate`
  (``config.json``, tensors-only ``state.pt``, ``dataset.json``: architecture,
  fitted hyperparameters and training data) stored under ``artifacts/surrogate``.
  :func:`load_model` returns the native surrogate (a BoTorch ``Model``).
* ``python_function``: :class:`SurrogatePythonModel`, whose ``load_context``
  calls :func:`~surrogates.base.load_surrogate` on that directory, so
  ``mlflow.pyfunc.load_model("models:/<name>/<version>")`` works anywhere
  scalebridge is importable. ``.unwrap_python_model()`` gives the
  :class:`SurrogatePythonModel`, which exposes ``surrogate``,
  ``posterior`` and (for constitutive surrogates) ``material_response``.

``pyfunc`` input and output (``predict(model_input, params=None)``):

* ``model_input`` = a ``pandas.DataFrame`` with the ``d`` input columns (by the
  training data's ``input_names`` when it has them, else in column order; a
  multi-fidelity model's table has a last column ``fidelity``, the level), an
  ``n x d`` array (``n x (d + 1)``, the level last), or ``{"X": ...}``: returns
  ``{"mean": n x m, "variance": n x m}`` numpy arrays (posterior of the latent
  function; ``params={"observation_noise": True}`` adds the noise variance
  where the model can).
* ``model_input`` = ``{"F": n x k x k}`` or an ``n x k x k`` array of
  deformation gradients, for constitutive surrogates: returns
  ``{"P": n x k x k, "tangent": n x k x k x k x k, "variance": n}`` numpy arrays
  (``tangent[a, i, J, k, L] = dP_iJ / dF_kL``).

A model logged with a signature (:func:`surrogate_signature`; campaigns register
theirs with one) has its input checked by MLflow in ``predict``: a table with
the named input columns, or ``{"F": n x k x k}`` for a constitutive surrogate.

Example::

    with mlflow.start_run():
        info = log_model(gp, name="rve_gp", registered_model_name="rve_gp")
    pyfunc = mlflow.pyfunc.load_model("models:/rve_gp/1")
    out = pyfunc.predict({"F": F})                      # P, tangent, variance
    gp = pyfunc.unwrap_python_model().surrogate         # native BoTorch model

What loading executes:

* :func:`load_model` (the native flavor) runs no code from the model
  directory: it reads ``MLmodel`` (YAML, ``yaml.safe_load``), the surrogate's
  ``config.json`` and ``dataset.json`` (JSON) and ``state.pt`` with
  ``torch.load(weights_only=True)`` (tensors only), and rebuilds the class by
  name from scalebridge's own surrogate registry. The ``data`` path in
  ``MLmodel`` and every file it reads must lie inside the model directory
  (symbolic links are resolved first); anything else is refused with
  :class:`UnsafeModelError`. A damaged or edited surrogate directory gives a
  one-line :class:`SurrogateLoadError`.
* ``mlflow.pyfunc.load_model`` **imports and runs Python code from the model
  directory**: the ``python_function`` flavor is a "model from code", whose
  file (``scalebridge_pyfunc.py``, four lines that import
  :class:`SurrogatePythonModel` from the installed scalebridge) MLflow
  executes with ``importlib``; an edited ``MLmodel`` can as well name a
  cloudpickle file, which MLflow unpickles. Whoever can write to the model
  directory or the artifact store can therefore run code in the process that
  loads it through pyfunc. Use pyfunc only on stores you trust; use
  :func:`load_model` otherwise.

A ``models:/name/version`` that the tracking store does not hold gives
:class:`ModelNotFoundError`, a one-line message naming the store searched and
how to choose another (``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import ssl
import sys
import tempfile
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import mlflow.pyfunc  # imported here: its own import-time notices are MLflow's
import numpy as np
import torch
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.tracking.artifact_utils import _download_artifact_from_uri

from surrogates.base import FORMAT_VERSION, load_surrogate, save_surrogate, variance_in_output_units
from surrogates.dataset import DTYPE

__all__ = [
    "FLAVOR_NAME",
    "ModelNotFoundError",
    "TrackingServerUnreachable",
    "SurrogateLoadError",
    "SurrogatePythonModel",
    "UnsafeModelError",
    "load_model",
    "log_model",
    "save_model",
    "surrogate_input_names",
    "surrogate_signature",
]

FLAVOR_NAME = "scalebridge"
log = logging.getLogger(__name__)
_ARTIFACT_KEY = "surrogate"


def _default_pip_requirements() -> list[str]:
    import botorch
    import gpytorch
    import pandas

    return [
        f"torch=={torch.__version__.split('+')[0]}",
        f"gpytorch=={gpytorch.__version__}",
        f"botorch=={botorch.__version__}",
        f"mlflow=={mlflow.__version__}",
        f"pandas=={pandas.__version__}",
        "scalebridge",
    ]


class ModelNotFoundError(FileNotFoundError):
    """The tracking store holds no model at the URI (one-line message naming the store)."""


class TrackingServerUnreachable(ModelNotFoundError):
    """The tracking server named by the store URI did not answer, so whether it holds the
    model is unknown (one-line message naming the server and the connection error)."""


#: phrases of requests/urllib3 connection failures inside MLflow's exceptions, the most
#: specific first (urllib3 wraps each cause in "Max retries exceeded")
_CONNECTION_FAILURES = ("Connection refused", "Read timed out", "Name or service not known",
                        "Temporary failure in name resolution", "No route to host",
                        "Failed to establish a new connection", "Max retries exceeded")


def _connection_failure(err: Exception) -> str | None:
    """The connection failure an MLflow exception reports, or None."""
    text = str(err)
    return next((p for p in _CONNECTION_FAILURES if p in text), None)


#: seconds an HTTP tracking server has to answer the probe of :func:`server_silence`
PROBE_TIMEOUT = 2.0


def server_silence(uri: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """Why the server of an ``http(s)://`` tracking URI did not answer an HTTP request
    (``GET <path>/health``, any status) within ``timeout`` s (``"Connection refused"``,
    ``"timed out after 2 s"`` ...), or None where it answered.

    A server that accepts connections but never answers counts as silent: a TCP
    connection alone would let every MLflow call then wait out its own timeout
    (minutes for an upload). A TLS failure counts as an answer (the MLflow call
    reports it). Other URIs (``sqlite:``, ``file:``, local paths, ``databricks`` ...)
    and a server reached through a proxy (``HTTP_PROXY``...), which this direct
    request would bypass, are not probed and give None: their failures show in the
    MLflow call itself.
    """
    u = urlparse(uri)
    if u.scheme not in ("http", "https"):
        return None
    if u.scheme in urllib.request.getproxies() and not urllib.request.proxy_bypass(u.hostname or ""):
        return None
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
        cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
        conn = cls(u.hostname or "localhost", port, timeout=timeout)
        try:
            conn.request("GET", u.path.rstrip("/") + "/health")
            conn.getresponse()
        finally:
            conn.close()
        return None
    except ssl.SSLError:
        return None
    except TimeoutError:
        return f"timed out after {timeout:g} s"
    except OSError as e:
        return e.strerror or str(e) or type(e).__name__
    except (ValueError, http.client.HTTPException) as e:
        return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


class UnsafeModelError(ValueError):
    """A model directory points outside itself (``data`` in ``MLmodel``, or a linked file)."""


class SurrogateLoadError(ValueError):
    """A surrogate directory that cannot be read back (damaged or edited files)."""


_env_lock = threading.Lock()


def default_signature():
    """The signature :func:`save_model` gives a surrogate saved without one: the
    ``observation_noise`` parameter alone (inputs are not enforced: arrays, dicts, tables and
    a constitutive surrogate's ``F`` stay accepted; :func:`surrogate_signature` declares them too)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    return ModelSignature(inputs=None, outputs=None,
                          params=ParamSchema([ParamSpec("observation_noise", "boolean", False)]))


@contextlib.contextmanager
def env_defaults(values: dict[str, str]) -> Iterator[None]:
    """Set the environment variables in ``values`` that are not set, for the body only
    (thread-safe; a variable the user has set wins)."""
    with _env_lock:
        added = [k for k in values if k not in os.environ]
        for k in added:
            os.environ[k] = values[k]
    try:
        yield
    finally:
        with _env_lock:
            for k in added:
                os.environ.pop(k, None)


# no artifact download progress bars; short HTTP timeouts (MLflow's defaults retry for minutes)
_QUIET_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
}


def surrogate_input_names(surrogate) -> tuple[str, ...]:
    """The pyfunc table's input columns of ``surrogate``: its training data's
    ``input_names``, followed by ``"fidelity"`` for a multi-fidelity model (whose
    posterior takes the level as a trailing column); empty without names."""
    from surrogates.multifidelity import MultiFidelityModel

    ds = getattr(surrogate, "train_dataset", None)
    names = tuple(ds.input_names) if ds is not None and ds.input_names else ()
    if names and isinstance(surrogate, MultiFidelityModel) and "fidelity" not in names:
        names += ("fidelity",)
    return names


def surrogate_signature(input_names, output_names, dim_F: int | None = None):
    """The MLflow signature of a surrogate's pyfunc ``predict``.

    Args:
        input_names: the ``d`` input names.
        output_names: the ``m`` output names.
        dim_F: ``k`` for a constitutive surrogate (``material_response``): its
            pyfunc face then takes ``{"F": n x k x k}`` and returns ``P``
            (``n x k x k``), ``tangent`` (``n x k x k x k x k``) and ``variance``
            (``n``), and the signature says so.

    Returns:
        A :class:`mlflow.models.ModelSignature`: inputs one ``double`` column
        per input name (or the tensor ``F``); outputs tensors ``mean`` and
        ``variance`` of shape ``n x m`` (or ``P``, ``tangent``, ``variance``);
        the parameter ``observation_noise`` (boolean, default False) of a
        table-input model. MLflow enforces the input part in ``pyfunc.predict``
        and passes on only the parameters the signature declares.
    """
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema, TensorSpec

    f64 = np.dtype(np.float64)
    if dim_F is not None:
        k = int(dim_F)
        return ModelSignature(
            inputs=Schema([TensorSpec(f64, (-1, k, k), "F")]),
            outputs=Schema(
                [
                    TensorSpec(f64, (-1, k, k), "P"),
                    TensorSpec(f64, (-1, k, k, k, k), "tangent"),
                    TensorSpec(f64, (-1,), "variance"),
                ]
            ),
        )
    m = len(tuple(output_names))
    return ModelSignature(
        inputs=Schema([ColSpec("double", str(n)) for n in input_names]),
        outputs=Schema([TensorSpec(f64, (-1, m), "mean"), TensorSpec(f64, (-1, m), "variance")]),
        params=ParamSchema([ParamSpec("observation_noise", "boolean", False)]),
    )


@contextlib.contextmanager
def _notices_to_debug(pattern: str) -> Iterator[None]:
    """Warnings whose message matches ``pattern`` go to this module's log at debug level.

    Replaces :func:`warnings.showwarning` for the body: MLflow wraps its checks in
    its own ``catch_warnings``, which overrides filters set from outside.
    """
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if re.search(pattern, str(message)):
            log.debug("%s: %s", category.__name__, message)
            return
        original(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


# MLflow notes at class creation that predict has no type hints; predict takes
# tables, arrays and dicts of arrays, which its type-hint validation cannot describe
with _notices_to_debug("Add type hints to the `predict` method"):

    class SurrogatePythonModel(mlflow.pyfunc.PythonModel):
        """The ``python_function`` face of a scalebridge surrogate (see module docs)."""

        surrogate = None

        def load_context(self, context) -> None:
            self.surrogate = load_surrogate(context.artifacts[_ARTIFACT_KEY])

        # --- native access through unwrap_python_model()
        def posterior(self, X, **kwargs):
            return self.surrogate.posterior(X, **kwargs)

        def material_response(self, F):
            if not hasattr(self.surrogate, "material_response"):
                raise TypeError(f"{type(self.surrogate).__name__} is not a constitutive surrogate")
            return self.surrogate.material_response(F)

        # --- pyfunc predict
        def _inputs(self, model_input) -> tuple[str, torch.Tensor]:
            import pandas as pd

            if isinstance(model_input, dict):
                for key in ("F", "X"):
                    if key in model_input:
                        return key, _real_array(f"model_input[{key!r}]", model_input[key])
                raise ValueError(f"dict input needs key 'X' or 'F', got keys {sorted(model_input)}")
            if isinstance(model_input, pd.DataFrame):
                return "X", _table_inputs(model_input, list(surrogate_input_names(self.surrogate)))
            arr = _real_array("model_input", model_input)
            return ("F" if arr.dim() == 3 else "X"), arr

        def predict(self, context, model_input, params: dict[str, Any] | None = None):
            kind, t = self._inputs(model_input)
            if kind == "F":
                r = self.material_response(t)
                return {
                    "P": r.P.numpy(),
                    "tangent": r.tangent.numpy(),
                    "variance": None if r.variance is None else r.variance.numpy(),
                }
            if t.dim() == 1:
                t = t.unsqueeze(0)
            noise = bool((params or {}).get("observation_noise", False))
            with torch.no_grad(), variance_in_output_units():
                post = self.surrogate.posterior(t, observation_noise=noise)
                return {"mean": post.mean.numpy(), "variance": post.variance.numpy()}


def _real_array(name: str, value: Any) -> torch.Tensor:
    """``value`` (array, tensor or nested list) as a float64 tensor; complex or non-numeric
    data is a one-line ``ValueError`` naming ``name`` (numpy's cast to float64 would drop an
    imaginary part with only a warning)."""
    try:
        if not np.iscomplexobj(value):
            return torch.as_tensor(np.ascontiguousarray(value, dtype=np.float64), dtype=DTYPE)
    except (TypeError, ValueError) as err:
        why = str(err).splitlines()[0][:120] if str(err) else type(err).__name__
        raise ValueError(f"{name} must be an array of real numbers, got {type(value).__name__} ({why})") from None
    raise ValueError(f"{name} must hold real numbers, got complex values")


def _table_inputs(frame, names: list[str]) -> torch.Tensor:
    """The ``n x d`` inputs of a pyfunc table: the columns ``names`` in that order (a table
    with other named columns is refused, naming the missing ones; one with unnamed columns
    0..d-1 is read in column order), each of a real-number dtype."""
    import numbers

    import pandas as pd
    from pandas.api import types as pdt

    cols = list(frame.columns)
    if names:
        missing = [n for n in names if n not in cols]
        unnamed = isinstance(frame.columns, pd.RangeIndex) and len(cols) == len(names)
        if missing and not unnamed:
            raise ValueError(f"the input table lacks column(s) {missing}: expected the columns {names}, "
                             f"got {[str(c) for c in cols]}")
        if not missing:
            frame = frame[names]
    for c in frame.columns:
        col = frame[c]
        dt = col.dtype
        if pdt.is_bool_dtype(dt) or not (pdt.is_numeric_dtype(dt) or pdt.is_object_dtype(dt)) \
                or pdt.is_complex_dtype(dt):
            raise ValueError(f"input column {c!r} has dtype {dt}: expected real numbers (float64)")
        if pdt.is_object_dtype(dt):
            bad = [v for v in col if isinstance(v, bool) or not isinstance(v, numbers.Real)]
            if bad:
                raise ValueError(f"input column {c!r} holds {bad[0]!r} ({type(bad[0]).__name__}, dtype object): "
                                 "expected real numbers (float64)")
    return torch.tensor(np.ascontiguousarray(frame.to_numpy(dtype=np.float64)), dtype=DTYPE)


_PYFUNC_CODE = """\
import mlflow

from surrogates.mlflow_flavor import SurrogatePythonModel

mlflow.models.set_model(SurrogatePythonModel())
"""


def save_model(
    surrogate,
    path: str | Path,
    mlflow_model: Model | None = None,
    pip_requirements: list[str] | None = None,
    **pyfunc_kwargs: Any,
) -> None:
    """Save ``surrogate`` as a local MLflow model directory at ``path``.

    Args:
        surrogate: a scalebridge surrogate (``get_config`` / ``state_dict``).
        path: the directory to create (must not exist).
        mlflow_model: the :class:`mlflow.models.Model` to add the flavors to
            (set by :meth:`Model.log`).
        pip_requirements: defaults to pinned torch/gpytorch/botorch/mlflow/pandas
            plus ``scalebridge`` (explicit, so MLflow does not load the model
            in a subprocess to infer them).
        **pyfunc_kwargs: passed to :func:`mlflow.pyfunc.save_model` (e.g.
            ``metadata``, ``code_paths``).
    """
    if mlflow_model is None:
        mlflow_model = Model()
    if "signature" not in pyfunc_kwargs and getattr(mlflow_model, "signature", None) is None:
        # MLflow passes predict only the parameters a signature declares: without one,
        # params={"observation_noise": True} would be dropped with a log line
        pyfunc_kwargs["signature"] = default_signature()
    with tempfile.TemporaryDirectory() as tmp:
        src = save_surrogate(surrogate, Path(tmp) / _ARTIFACT_KEY)
        mlflow_model.add_flavor(
            FLAVOR_NAME,
            data=f"artifacts/{_ARTIFACT_KEY}",
            surrogate_class=type(surrogate).__name__,
            format_version=FORMAT_VERSION,
            num_outputs=int(surrogate.num_outputs),
            dim_F=getattr(surrogate, "dim_F", None),
            torch_version=str(torch.__version__),
        )
        # "models from code": the pyfunc wrapper is this short script (run by
        # mlflow.pyfunc.load_model), not a cloudpickle of an object
        code = Path(tmp) / "scalebridge_pyfunc.py"
        code.write_text(_PYFUNC_CODE)
        # MLflow copies the artifacts in with its download code: no progress bar for a local copy
        with _notices_to_debug("An input example was not provided"), \
                env_defaults({"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}):
            mlflow.pyfunc.save_model(
                path,
                python_model=str(code),
                artifacts={_ARTIFACT_KEY: str(src)},
                mlflow_model=mlflow_model,
                pip_requirements=pip_requirements or _default_pip_requirements(),
                **pyfunc_kwargs,
            )


def log_model(
    surrogate,
    name: str | None = None,
    registered_model_name: str | None = None,
    artifact_path: str | None = None,
    **kwargs: Any,
):
    """Log ``surrogate`` to the run ``run_id`` (a keyword of ``kwargs``), else to the active
    run; with neither, MLflow 3 logs it as a model of no run (``info.run_id`` None, no
    ``runs:/`` URI; ``info.model_uri`` and the registered version load it).

    Args:
        surrogate: the fitted surrogate.
        name: the model's name in the run (MLflow 3 ``name``).
        registered_model_name: also register a new version under this name.
        artifact_path: deprecated MLflow 2 spelling of ``name``.
        **kwargs: passed to :meth:`mlflow.models.Model.log` (``run_id``, ``metadata`` ...) /
            :func:`save_model`.

    Returns:
        The :class:`mlflow.models.model.ModelInfo` (``model_uri``,
        ``registered_model_version`` ...).

    Raises:
        TrackingServerUnreachable: the tracking (or registry) server did not answer a probe
            request within :data:`PROBE_TIMEOUT` s (:func:`server_silence`), or failed later
            (after one retry, :data:`_QUIET_ENV`, where the environment sets no retries of its own).
    """
    from mlflow.exceptions import MlflowException

    if name is None and artifact_path is None:
        name = "surrogate"
    stores = [mlflow.get_tracking_uri(), *([mlflow.get_registry_uri()] if registered_model_name else [])]
    for store in dict.fromkeys(stores):
        # one short request first: a server that accepts connections and never answers
        # had held the upload's 120 s timeout, retried, for 4 minutes
        down = server_silence(store)
        if down:
            raise TrackingServerUnreachable(_server_down_message(store, down))
    try:
        # MLflow's own defaults retry a refused connection for minutes; an upload keeps
        # MLflow's default request timeout (a model's artifacts can be large)
        with env_defaults({**_QUIET_ENV, "MLFLOW_HTTP_REQUEST_TIMEOUT": "120"}):
            return Model.log(
                artifact_path=artifact_path,
                name=name,
                flavor=sys.modules[__name__],
                registered_model_name=registered_model_name,
                surrogate=surrogate,
                **kwargs,
            )
    except MlflowException as e:
        down = _connection_failure(e)
        if not down:
            raise
        raise TrackingServerUnreachable(_server_down_message(mlflow.get_tracking_uri(), down)) from None


def _server_down_message(store: str, why: str) -> str:
    return (f"logging the surrogate failed: the tracking server at {store} did not answer ({why}); start it, "
            "or set MLFLOW_TRACKING_URI to a reachable store (for example MLFLOW_TRACKING_URI=sqlite:///path/to/mlflow.db)")


def _model_not_found(model_uri: str, err: Exception | None = None) -> ModelNotFoundError:
    uri = (
        mlflow.get_registry_uri() if model_uri.startswith("models:/") else mlflow.get_tracking_uri()
    )
    why = "" if err is None else f" ({str(err).strip().splitlines()[0][:160]})"
    return ModelNotFoundError(
        f"{model_uri} not found in the tracking store {uri}{why}; choose the store the model was "
        "registered in with MLFLOW_TRACKING_URI (for example MLFLOW_TRACKING_URI=sqlite:///path/to/mlflow.db)"
    )


def _server_unreachable(model_uri: str, store: str, why: str) -> TrackingServerUnreachable:
    return TrackingServerUnreachable(
        f"{model_uri}: the tracking server at {store} did not answer ({why}); start it, "
        "or set MLFLOW_TRACKING_URI to the store the model was registered in"
    )


def _missing_sqlite_store(uri: str) -> bool:
    """True for a ``sqlite:///`` store whose database file does not exist (MLflow would create it)."""
    if not uri.startswith("sqlite:///"):
        return False
    path = uri.removeprefix("sqlite:///")
    return path not in ("", ":memory:") and not Path(path).exists()


def _inside(root: Path, path: Path, what: str) -> Path:
    """``path`` resolved (links followed), refused unless it lies inside ``root``."""
    real = path.resolve()
    if not real.is_relative_to(root):
        raise UnsafeModelError(
            f"{what} resolves to {real}, outside the model directory {root}; refused"
        )
    return real


def load_model(model_uri: str, dst_path: str | None = None):
    """Load the native surrogate from ``model_uri`` (``runs:/...``,
    ``models:/<name>/<version>``, a local path ...) without running code from it.

    Raises:
        ModelNotFoundError: the tracking store has no such model (names the store);
            :class:`TrackingServerUnreachable` where the server did not answer.
        UnsafeModelError: ``MLmodel`` points outside the model directory.
        SurrogateLoadError: the surrogate files are damaged or were edited.
        ValueError: the model has no scalebridge flavor.
    """
    from mlflow.exceptions import MlflowException

    model_uri = str(model_uri)
    remote = model_uri.startswith(("models:/", "runs:/"))
    if remote:
        store = (
            mlflow.get_registry_uri()
            if model_uri.startswith("models:/")
            else mlflow.get_tracking_uri()
        )
        if _missing_sqlite_store(store):
            raise _model_not_found(model_uri, FileNotFoundError(f"no database file at {store}"))
        down = server_silence(store)
        if down:
            raise _server_unreachable(model_uri, store, down)
    try:
        with env_defaults(_QUIET_ENV):
            local = Path(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))
    except MlflowException as e:
        if remote:
            down = _connection_failure(e)
            if down:
                raise _server_unreachable(model_uri, store, down) from None
            raise _model_not_found(model_uri, e) from None
        if not Path(model_uri.removeprefix("file://")).exists():
            raise ModelNotFoundError(f"no MLflow model at {model_uri} (no such file or directory)") from None
        raise
    except OSError as e:
        raise ModelNotFoundError(f"no MLflow model at {model_uri} ({e})") from None
    root = local.resolve()
    mlmodel = local / MLMODEL_FILE_NAME
    if not mlmodel.is_file():
        raise ModelNotFoundError(f"no MLflow model at {model_uri} ({MLMODEL_FILE_NAME} missing)")
    try:
        conf = Model.load(_inside(root, mlmodel, MLMODEL_FILE_NAME)).flavors.get(FLAVOR_NAME)
    except UnsafeModelError:
        raise
    except Exception as e:  # noqa: BLE001  (yaml errors, bad structure)
        raise SurrogateLoadError(
            f"{MLMODEL_FILE_NAME} of {model_uri} cannot be read: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        ) from None
    if conf is None:
        raise ValueError(f"{model_uri} has no {FLAVOR_NAME!r} flavor (not a scalebridge surrogate)")
    data = conf.get("data")
    if not isinstance(data, str) or not data:
        raise SurrogateLoadError(
            f"{MLMODEL_FILE_NAME} of {model_uri}: flavor {FLAVOR_NAME!r} has no 'data' path"
        )
    if Path(data).is_absolute():
        raise UnsafeModelError(
            f"{MLMODEL_FILE_NAME} of {model_uri}: data = {data!r} is an absolute path; "
            "it must be a path inside the model directory"
        )
    surrogate_dir = _inside(root, local / data, f"data = {data!r} in {MLMODEL_FILE_NAME}")
    return load_surrogate_dir(surrogate_dir, root=root)


def load_surrogate_dir(path: str | Path, root: str | Path | None = None):
    """:func:`~surrogates.base.load_surrogate` with its files checked to lie inside ``root``
    (default: ``path``) and every failure as one :class:`SurrogateLoadError` line."""
    path = Path(path)
    root = Path(root if root is not None else path).resolve()
    if not (path / "config.json").exists():
        raise SurrogateLoadError(f"no surrogate at {path} (config.json missing)")
    for f in path.iterdir():
        _inside(root, f, f"{f.name} of the surrogate")
    try:
        return load_surrogate(path)
    except Exception as e:  # noqa: BLE001  (json, torch and rebuild errors of a damaged directory)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise SurrogateLoadError(
            f"the surrogate at {path} cannot be loaded ({type(e).__name__}: {msg[:200]}); "
            "its files are damaged or were edited"
        ) from None
