"""Transport homogenization of periodic voxel microstructures: effective
conductivity and tortuosity, Darcy permeability, porous microstructures and
their oracles."""

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
