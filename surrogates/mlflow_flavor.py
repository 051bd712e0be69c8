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
  training data's ``input_names`` when it has them, else in column order), an
  ``n x d`` array, or ``{"X": n x d}``: returns
  ``{"mean": n x m, "variance": n x m}`` numpy arrays (posterior of the latent
  function; ``params={"observation_noise": True}`` adds the noise variance
  where the model can).
* ``model_input`` = ``{"F": n x k x k}`` or an ``n x k x k`` array of
  deformation gradients, for constitutive surrogates: returns
  ``{"P": n x k x k, "tangent": n x k x k x k x k, "variance": n}`` numpy arrays
  (``tangent[a, i, J, k, L] = dP_iJ / dF_kL``).

Example::

    with mlflow.start_run():
        info = log_model(gp, name="rve_gp", registered_model_name="rve_gp")
    pyfunc = mlflow.pyfunc.load_model("models:/rve_gp/1")
    out = pyfunc.predict({"F": F})                      # P, tangent, variance
    gp = pyfunc.unwrap_python_model().surrogate         # native BoTorch model
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.models import Model
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.tracking.artifact_utils import _download_artifact_from_uri

from surrogates.base import FORMAT_VERSION, load_surrogate, save_surrogate
from surrogates.dataset import DTYPE

__all__ = ["FLAVOR_NAME", "SurrogatePythonModel", "load_model", "log_model", "save_model"]

FLAVOR_NAME = "scalebridge"
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
            if "F" in model_input:
                return "F", torch.as_tensor(np.asarray(model_input["F"]), dtype=DTYPE)
            if "X" in model_input:
                return "X", torch.as_tensor(np.asarray(model_input["X"]), dtype=DTYPE)
            raise ValueError(f"dict input needs key 'X' or 'F', got keys {sorted(model_input)}")
        if isinstance(model_input, pd.DataFrame):
            ds = getattr(self.surrogate, "train_dataset", None)
            names = list(ds.input_names) if ds is not None and ds.input_names else None
            if names is not None and set(names) <= set(model_input.columns):
                model_input = model_input[names]
            return "X", torch.tensor(model_input.to_numpy(dtype=np.float64), dtype=DTYPE)
        arr = torch.as_tensor(np.asarray(model_input), dtype=DTYPE)
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
        with torch.no_grad():
            post = self.surrogate.posterior(t, observation_noise=noise)
            return {"mean": post.mean.numpy(), "variance": post.variance.numpy()}


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
        # "models from code": the pyfunc wrapper is this two-line script, not
        # a cloudpickle of an object, so nothing in the model is unpickled
        code = Path(tmp) / "scalebridge_pyfunc.py"
        code.write_text(_PYFUNC_CODE)
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
    """Log ``surrogate`` to the active run (one is started if none is active).

    Args:
        surrogate: the fitted surrogate.
        name: the model's name in the run (MLflow 3 ``name``).
        registered_model_name: also register a new version under this name.
        artifact_path: deprecated MLflow 2 spelling of ``name``.
        **kwargs: passed to :meth:`mlflow.models.Model.log` / :func:`save_model`.

    Returns:
        The :class:`mlflow.models.model.ModelInfo` (``model_uri``,
        ``registered_model_version`` ...).
    """
    if name is None and artifact_path is None:
        name = "surrogate"
    return Model.log(
        artifact_path=artifact_path,
        name=name,
        flavor=sys.modules[__name__],
        registered_model_name=registered_model_name,
        surrogate=surrogate,
        **kwargs,
    )


def load_model(model_uri: str, dst_path: str | None = None):
    """Load the native surrogate from ``model_uri`` (``runs:/...``,
    ``models:/<name>/<version>``, a local path ...)."""
    local = Path(_download_artifact_from_uri(artifact_uri=model_uri, output_path=dst_path))
    conf = Model.load(local / MLMODEL_FILE_NAME).flavors.get(FLAVOR_NAME)
    if conf is None:
        raise ValueError(f"{model_uri} has no {FLAVOR_NAME!r} flavor (not a scalebridge surrogate)")
    return load_surrogate(local / conf["data"])
