"""Invariance-constrained neural surrogates (hyperelastic, small-strain, generic)."""

from surrogates.neural.energy import InvariantEnergy
from surrogates.neural.ensemble import NeuralEnsembleModel, fit_variance_scale
from surrogates.neural.fast import FastHyperelastic
from surrogates.neural.hyperelastic import HyperelasticEnsemble
from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.invariants import InvariantSet
from surrogates.neural.networks import ScalarMLP
from surrogates.neural.training import TrainingOptions, train_network

__all__ = [
    "ConvexMLP",
    "FastHyperelastic",
    "HyperelasticEnsemble",
    "InvariantEnergy",
    "InvariantSet",
    "NeuralEnsembleModel",
    "ScalarMLP",
    "TrainingOptions",
    "fit_variance_scale",
    "train_network",
]
