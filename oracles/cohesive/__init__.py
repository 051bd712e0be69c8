"""Cohesive (traction–separation) laws and the oracle that calibrates them.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
    from oracles.cohesive.laws import (
        LAWS,
        BilinearLaw,
        CohesiveLaw,
        ExponentialLaw,
        PPRLaw,
        make_law,
    )
    from oracles.cohesive.oracle import VRH, CohesiveOracle, k_ic, vrh_cubic

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(
        ("LAWS", "BilinearLaw", "CohesiveLaw", "ExponentialLaw", "PPRLaw", "make_law"), "oracles.cohesive.laws"
    ),
    **dict.fromkeys(("VRH", "CohesiveOracle", "k_ic", "vrh_cubic"), "oracles.cohesive.oracle"),
}

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

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
