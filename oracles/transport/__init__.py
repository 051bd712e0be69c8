"""Transport homogenization of periodic voxel microstructures: effective
conductivity and tortuosity, Darcy permeability, porous microstructures and
their oracles.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`),
so ``import oracles.transport`` does not import torch or scipy. ``permeability`` is the
function, as before, also once the submodule of that name is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
    from oracles.transport.conductivity import (
        ConductivityResult,
        ConductivitySolver,
        TortuosityResult,
        effective_conductivity,
        phase_tensor,
        tortuosity,
    )
    from oracles.transport.oracle import ConductivityOracle, PermeabilityOracle, tensor_components
    from oracles.transport.permeability import (
        DARCY,
        PermeabilityResult,
        StokesSolver,
        permeability,
        solid_nodes,
    )
    from oracles.transport.porous import (
        MICROSTRUCTURES,
        Blobs,
        CylinderArray,
        Fibres,
        OverlappingSpheres,
        PolydisperseSpheres,
        PoreImage,
        Slit,
        SphereArray,
        microstructure,
        mirror,
        solid_from_labels,
    )
    from oracles.transport.topology import (
        NonPeriodicWarning,
        NotPercolating,
        face_mismatch,
        percolating_axes,
    )

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(
        ("ConductivityResult", "ConductivitySolver", "TortuosityResult", "effective_conductivity",
         "phase_tensor", "tortuosity"),
        "oracles.transport.conductivity",
    ),
    **dict.fromkeys(("ConductivityOracle", "PermeabilityOracle", "tensor_components"), "oracles.transport.oracle"),
    **dict.fromkeys(
        ("DARCY", "PermeabilityResult", "StokesSolver", "permeability", "solid_nodes"),
        "oracles.transport.permeability",
    ),
    **dict.fromkeys(
        ("MICROSTRUCTURES", "Blobs", "CylinderArray", "Fibres", "OverlappingSpheres", "PolydisperseSpheres",
         "PoreImage", "Slit", "SphereArray", "microstructure", "mirror", "solid_from_labels"),
        "oracles.transport.porous",
    ),
    **dict.fromkeys(
        ("NonPeriodicWarning", "NotPercolating", "face_mismatch", "percolating_axes"), "oracles.transport.topology"
    ),
}

__all__ = [
    "DARCY",
    "MICROSTRUCTURES",
    "Blobs",
    "ConductivityOracle",
    "ConductivityResult",
    "ConductivitySolver",
    "CylinderArray",
    "Fibres",
    "NonPeriodicWarning",
    "NotPercolating",
    "OverlappingSpheres",
    "PermeabilityOracle",
    "PermeabilityResult",
    "PolydisperseSpheres",
    "PoreImage",
    "Slit",
    "SphereArray",
    "StokesSolver",
    "TortuosityResult",
    "effective_conductivity",
    "face_mismatch",
    "microstructure",
    "mirror",
    "percolating_axes",
    "permeability",
    "phase_tensor",
    "solid_from_labels",
    "solid_nodes",
    "tensor_components",
    "tortuosity",
]

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
