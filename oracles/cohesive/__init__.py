"""Cohesive (traction–separation) laws and the oracle that calibrates them."""

from oracles.cohesive.laws import LAWS, BilinearLaw, CohesiveLaw, ExponentialLaw, PPRLaw, make_law

__all__ = ["LAWS", "BilinearLaw", "CohesiveLaw", "ExponentialLaw", "PPRLaw", "make_law"]
