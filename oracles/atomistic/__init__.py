"""Atomistic oracles through ASE: elastic constants of cubic crystals (static
Cauchy–Born and finite-temperature MD), surface energy and UBER decohesion.

The engine (asap3 EMT, ASE EMT, Lennard-Jones, LAMMPS, any ASE calculator) is
chosen in one place, :func:`oracles.atomistic.engines.make_calculator`.
"""

from oracles.atomistic.elastic import ElasticConstantsOracle, static_elastic_constants
from oracles.atomistic.engines import make_calculator
from oracles.atomistic.surface import (
    SurfaceOracle,
    UBERFit,
    decohesion_curve,
    fit_uber,
    surface_energy,
)

__all__ = [
    "ElasticConstantsOracle",
    "SurfaceOracle",
    "UBERFit",
    "decohesion_curve",
    "fit_uber",
    "make_calculator",
    "static_elastic_constants",
    "surface_energy",
]
