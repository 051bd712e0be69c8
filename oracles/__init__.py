"""Physics oracles: expensive (or cheap) sources of data with a price.

The names below are imported from their submodules on first use (:mod:`oracles._lazy`),
so ``import oracles`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oracles import _lazy

if TYPE_CHECKING:
    from oracles.base import DTYPE, CostModel, Oracle, OracleResult, PointResult, make_bounds
    from oracles.exceptions import CalculationFailed, InvalidInput, NotConverged, OracleError
    from oracles.function import FunctionOracle
    from oracles.material import MaterialModel, MaterialResponse

#: public name -> the submodule that defines it
_SOURCES = {
    **dict.fromkeys(("DTYPE", "CostModel", "Oracle", "OracleResult", "PointResult", "make_bounds"), "oracles.base"),
    **dict.fromkeys(("CalculationFailed", "InvalidInput", "NotConverged", "OracleError"), "oracles.exceptions"),
    "FunctionOracle": "oracles.function",
    **dict.fromkeys(("MaterialModel", "MaterialResponse"), "oracles.material"),
}

__all__ = [
    "DTYPE",
    "CalculationFailed",
    "CostModel",
    "FunctionOracle",
    "InvalidInput",
    "MaterialModel",
    "MaterialResponse",
    "NotConverged",
    "Oracle",
    "OracleError",
    "OracleResult",
    "PointResult",
    "make_bounds",
]

__getattr__, __dir__ = _lazy.attach(__name__, _SOURCES, __all__)
