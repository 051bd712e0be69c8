"""Cheap analytic oracles: composite bounds and estimates, multi-fidelity test functions.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
    from oracles.analytic.bounds import (
        E_nu_to_moduli,
        HashinShtrikmanOracle,
        HSBounds,
        MoriTanakaOracle,
        ReussOracle,
        TwoPhaseModuliOracle,
        VoigtOracle,
        hashin_shtrikman_bounds,
        hashin_shtrikman_multiphase,
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
    from oracles.analytic.shifted import ShiftedTestFunction, draw_shift
    from oracles.analytic.test_functions import (
        Borehole,
        Branin,
        Currin,
        Forrester,
        Hartmann6,
        Park,
        SyntheticOracle,
    )

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(
        (
            "E_nu_to_moduli", "HashinShtrikmanOracle", "HSBounds", "MoriTanakaOracle", "ReussOracle",
            "TwoPhaseModuliOracle", "VoigtOracle", "hashin_shtrikman_bounds", "hashin_shtrikman_multiphase",
            "isotropic_moduli", "isotropic_stiffness", "moduli_to_E_nu", "mori_tanaka", "plane_strain_bulk",
            "reuss_bound", "reuss_moduli", "voigt_bound", "voigt_moduli",
        ),
        "oracles.analytic.bounds",
    ),
    **dict.fromkeys(("ShiftedTestFunction", "draw_shift"), "oracles.analytic.shifted"),
    **dict.fromkeys(
        ("Borehole", "Branin", "Currin", "Forrester", "Hartmann6", "Park", "SyntheticOracle"),
        "oracles.analytic.test_functions",
    ),
}

__all__ = [
    "Borehole",
    "Branin",
    "Currin",
    "Forrester",
    "Hartmann6",
    "Park",
    "ShiftedTestFunction",
    "SyntheticOracle",
    "draw_shift",
    "E_nu_to_moduli",
    "HSBounds",
    "HashinShtrikmanOracle",
    "MoriTanakaOracle",
    "ReussOracle",
    "TwoPhaseModuliOracle",
    "VoigtOracle",
    "hashin_shtrikman_bounds",
    "hashin_shtrikman_multiphase",
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

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
