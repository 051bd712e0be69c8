"""Cohesive (traction–separation) laws and the oracle that calibrates them."""

from oracles.cohesive.laws import LAWS, BilinearLaw, CohesiveLaw, ExponentialLaw, PPRLaw, make_law
from oracles.cohesive.oracle import VRH, CohesiveOracle, k_ic, vrh_cubic

__all__ = [
    "LAWS",
    "VRH",
    "BilinearLaw",
    "CohesiveLaw",
    "CohesiveOracle",
    "ExponentialLaw",
    "PPRLaw",
    "k_ic",
    "make_law",
    "vrh_cubic",
]
