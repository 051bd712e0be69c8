"""Exception types of the oracles.

A loop catches :class:`OracleError` around an evaluation, records the reason and
goes on; the subclasses say why a point has no answer.
"""

from __future__ import annotations


class OracleError(Exception):
    """Base class of every error an oracle raises on purpose."""


class InvalidInput(OracleError, ValueError):
    """The input is outside what the oracle accepts (shape, bounds, physics).

    The message names the bad value and what was expected.
    """


class NotConverged(OracleError, RuntimeError):
    """An iterative solver stopped before reaching its tolerance.

    Attributes:
        iterations: iterations taken when it stopped.
        residual: the residual when it stopped.
    """

    def __init__(self, message: str, iterations: int | None = None, residual: float | None = None):
        super().__init__(message)
        self.iterations = iterations
        self.residual = residual


class CalculationFailed(OracleError, RuntimeError):
    """An external engine (an ASE calculator, MD run) failed for this point."""


def is_real(value) -> bool:
    """``value`` is a real number (Python or numpy scalar, not a ``bool``)."""
    import numbers

    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def is_finite_real(value) -> bool:
    """``value`` is a finite real number (:func:`is_real`, not NaN or infinite)."""
    import math

    return is_real(value) and math.isfinite(value)


def is_integer(value) -> bool:
    """``value`` is an integer (Python or numpy scalar, not a ``bool``)."""
    import numbers

    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
