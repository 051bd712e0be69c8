"""FFT homogenization of periodic RVEs: phase laws, microstructures, solver, oracle."""

from oracles.rve.laws import (
    CubicElastic,
    FiniteStrainLaw,
    IsotropicElastic,
    NeoHookean,
    SmallStrainLaw,
    StVenantKirchhoff,
    lame_from,
)
from oracles.rve.microstructure import (
    RSA_JAMMING_FRACTION,
    CubeInclusion,
    Inclusion,
    Laminate,
    Microstructure,
    PhaseMap,
    RandomFibres,
    VoronoiPolycrystal,
    check_grid,
)
from oracles.rve.oracle import RVEOracle, load_phase_map
from oracles.rve.solver import (
    FFTSolver,
    HomogenizationResult,
    IndefiniteOperator,
    batched_cg,
    mandel_basis,
)

__all__ = [
    "CubeInclusion",
    "CubicElastic",
    "FFTSolver",
    "FiniteStrainLaw",
    "HomogenizationResult",
    "IndefiniteOperator",
    "Inclusion",
    "IsotropicElastic",
    "Laminate",
    "Microstructure",
    "NeoHookean",
    "PhaseMap",
    "RSA_JAMMING_FRACTION",
    "RVEOracle",
    "RandomFibres",
    "SmallStrainLaw",
    "StVenantKirchhoff",
    "VoronoiPolycrystal",
    "batched_cg",
    "check_grid",
    "lame_from",
    "load_phase_map",
    "mandel_basis",
]
