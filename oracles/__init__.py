"""Physics oracles: expensive (or cheap) sources of data with a price."""

from oracles.base import DTYPE, CostModel, Oracle, OracleResult, PointResult, make_bounds
from oracles.exceptions import CalculationFailed, InvalidInput, NotConverged, OracleError
from oracles.function import FunctionOracle
from oracles.material import MaterialModel, MaterialResponse

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
