"""Surrogates: BoTorch models that respect physics and report honest uncertainty."""

from surrogates.base import (
    MaterialModel,
    MaterialResponse,
    SurrogateMixin,
    load_surrogate,
    register_surrogate,
    save_surrogate,
)
from surrogates.dataset import Dataset

__all__ = [
    "Dataset",
    "MaterialModel",
    "MaterialResponse",
    "SurrogateMixin",
    "load_surrogate",
    "register_surrogate",
    "save_surrogate",
]
