"""FFT homogenization of periodic RVEs: phase laws, microstructures, solver, oracle.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`),
so ``import oracles.rve`` (and ``scalebridge rve --help``) does not import torch or scipy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
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

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(
        ("CubicElastic", "FiniteStrainLaw", "IsotropicElastic", "NeoHookean", "SmallStrainLaw",
         "StVenantKirchhoff", "lame_from"),
        "oracles.rve.laws",
    ),
    **dict.fromkeys(
        ("RSA_JAMMING_FRACTION", "CubeInclusion", "Inclusion", "Laminate", "Microstructure", "PhaseMap",
         "RandomFibres", "VoronoiPolycrystal", "check_grid"),
        "oracles.rve.microstructure",
    ),
    **dict.fromkeys(("RVEOracle", "load_phase_map"), "oracles.rve.oracle"),
    **dict.fromkeys(
        ("FFTSolver", "HomogenizationResult", "IndefiniteOperator", "batched_cg", "mandel_basis"),
        "oracles.rve.solver",
    ),
}

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

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
