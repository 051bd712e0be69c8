"""Uncertainty propagation to macro quantities with the aleatory/epistemic split.

* :mod:`loops.uq.samples` -- :class:`GPFunctionSamples` (joint posterior
  function samples of a GP constitutive surrogate, batched),
  :class:`GPPosteriorMean`, :class:`EnsembleMembers`, :func:`farthest_points`;
* :mod:`loops.uq.propagate` -- :func:`propagate` (nested Monte Carlo over
  descriptor draws and function samples through batched FE² solves),
  :func:`total_variance_split`, the QoIs :class:`Reaction`, :class:`MaxStress`,
  :class:`Displacement`, :func:`sample_inputs`, :func:`split_histogram`;
* :mod:`loops.uq.sobol` -- :func:`sobol_indices` (first-order and total).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "GPFunctionSamples": "loops.uq.samples",
    "GPPosteriorMean": "loops.uq.samples",
    "EnsembleMembers": "loops.uq.samples",
    "SampleMaterial": "loops.uq.samples",
    "farthest_points": "loops.uq.samples",
    "propagate": "loops.uq.propagate",
    "Propagation": "loops.uq.propagate",
    "Split": "loops.uq.propagate",
    "total_variance_split": "loops.uq.propagate",
    "sample_inputs": "loops.uq.propagate",
    "split_histogram": "loops.uq.propagate",
    "Reaction": "loops.uq.propagate",
    "MaxStress": "loops.uq.propagate",
    "Displacement": "loops.uq.propagate",
    "sobol_indices": "loops.uq.sobol",
    "SobolIndices": "loops.uq.sobol",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loops.uq' has no attribute {name!r}")
