"""Cheap analytic oracles: composite bounds and estimates, multi-fidelity test functions."""

from oracles.analytic.bounds import (
    HashinShtrikmanOracle,
    HSBounds,
    MoriTanakaOracle,
    ReussOracle,
    VoigtOracle,
    hashin_shtrikman_bounds,
    isotropic_moduli,
    isotropic_stiffness,
    moduli_to_E_nu,
    mori_tanaka,
    plane_strain_bulk,
    reuss_bound,
    reuss_moduli,
    voigt_bound,
    voigt_moduli,
)

__all__ = [
    "HSBounds",
    "HashinShtrikmanOracle",
    "MoriTanakaOracle",
    "ReussOracle",
    "VoigtOracle",
    "hashin_shtrikman_bounds",
    "isotropic_moduli",
    "isotropic_stiffness",
    "moduli_to_E_nu",
    "mori_tanaka",
    "plane_strain_bulk",
    "reuss_bound",
    "reuss_moduli",
    "voigt_bound",
    "voigt_moduli",
]
