"""Surrogates: BoTorch models that respect physics and report honest uncertainty.

The MLflow flavor lives in :mod:`surrogates.mlflow_flavor` (not imported here:
importing MLflow takes seconds).
"""

from surrogates.base import (
    MaterialModel,
    MaterialResponse,
    SurrogateMixin,
    load_surrogate,
    register_surrogate,
    save_surrogate,
)
from surrogates.dataset import Dataset
from surrogates.gp import GPSurrogate, ICMGPSurrogate, fit_with_restarts
from surrogates.metrics import (
    calibration_curve,
    calibration_error,
    coverage,
    nlpd,
    nrmse,
    posterior_metrics,
    rmse,
)

__all__ = [
    "Dataset",
    "GPSurrogate",
    "ICMGPSurrogate",
    "MaterialModel",
    "MaterialResponse",
    "SurrogateMixin",
    "calibration_curve",
    "calibration_error",
    "coverage",
    "fit_with_restarts",
    "load_surrogate",
    "nlpd",
    "nrmse",
    "posterior_metrics",
    "register_surrogate",
    "rmse",
    "save_surrogate",
]
