"""Invariance-constrained neural surrogates (hyperelastic, small-strain, generic)."""

from surrogates.neural.energy import EnergyParams, InvariantEnergy, energy_derivatives
from surrogates.neural.ensemble import NeuralEnsembleModel, fit_variance_scale
from surrogates.neural.fast import FastHyperelastic, ensemble_response
from surrogates.neural.generic import CubicElasticEnsemble, ElasticConstantsNet, cubic_voigt
from surrogates.neural.hyperelastic import HyperelasticEnsemble
from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.invariants import InvariantSet
from surrogates.neural.networks import NetworkLayers, ScalarMLP, network_derivatives
from surrogates.neural.small_strain import SmallStrainEnergy, SmallStrainEnsemble
from surrogates.neural.training import TrainingOptions, train_network

__all__ = [
    "ConvexMLP",
    "CubicElasticEnsemble",
    "ElasticConstantsNet",
    "EnergyParams",
    "FastHyperelastic",
    "HyperelasticEnsemble",
    "InvariantEnergy",
    "InvariantSet",
    "NetworkLayers",
    "NeuralEnsembleModel",
    "ScalarMLP",
    "SmallStrainEnergy",
    "SmallStrainEnsemble",
    "TrainingOptions",
    "cubic_voigt",
    "energy_derivatives",
    "ensemble_response",
    "fit_variance_scale",
    "network_derivatives",
    "train_network",
]
