"""Atomistic oracles through ASE: elastic constants of cubic crystals (static
Cauchy–Born and finite-temperature MD), surface energy and UBER decohesion.

The engine (asap3 EMT, ASE EMT, Lennard-Jones, LAMMPS, any ASE calculator) is
chosen in one place, :func:`oracles.atomistic.engines.make_calculator`.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`),
so ``import oracles.atomistic`` does not import ASE.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
    from oracles.atomistic.elastic import ElasticConstantsOracle, static_elastic_constants
    from oracles.atomistic.engines import make_calculator
    from oracles.atomistic.surface import (
        SurfaceOracle,
        UBERFit,
        decohesion_curve,
        fit_uber,
        surface_energy,
    )

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(("ElasticConstantsOracle", "static_elastic_constants"), "oracles.atomistic.elastic"),
    "make_calculator": "oracles.atomistic.engines",
    **dict.fromkeys(
        ("SurfaceOracle", "UBERFit", "decohesion_curve", "fit_uber", "surface_energy"), "oracles.atomistic.surface"
    ),
}

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

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
