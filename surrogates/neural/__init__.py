"""Invariance-constrained neural surrogates (hyperelastic, small-strain, generic)."""

from surrogates.neural.energy import InvariantEnergy
from surrogates.neural.ensemble import NeuralEnsembleModel, fit_variance_scale
from surrogates.neural.fast import FastHyperelastic
from surrogates.neural.generic import CubicElasticEnsemble, ElasticConstantsNet, cubic_voigt
from surrogates.neural.hyperelastic import HyperelasticEnsemble
from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.invariants import InvariantSet
from surrogates.neural.networks import ScalarMLP
from surrogates.neural.small_strain import SmallStrainEnergy, SmallStrainEnsemble
from surrogates.neural.training import TrainingOptions, train_network

__all__ = [
    "ConvexMLP",
    "CubicElasticEnsemble",
    "ElasticConstantsNet",
    "FastHyperelastic",
    "HyperelasticEnsemble",
    "InvariantEnergy",
    "InvariantSet",
    "NeuralEnsembleModel",
    "ScalarMLP",
    "SmallStrainEnergy",
    "SmallStrainEnsemble",
    "TrainingOptions",
    "cubic_voigt",
    "fit_variance_scale",
    "train_network",
]
