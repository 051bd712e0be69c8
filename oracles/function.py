r"""Oracles from plain Python functions.

:class:`FunctionOracle` wraps a function (or any callable object, e.g. an
interface to an existing simulation code) into an :class:`~oracles.base.Oracle`
with one call::

    def beam(x):                       # x: d float64 tensor
        return x[0] ** 2 + torch.sin(3 * x[1])

    oracle = FunctionOracle(beam, {"length": (0.0, 1.0), "angle": (0.0, 3.14)})
    oracle.evaluate([[0.5, 1.0]]).Y    # 1 x 1

The wrapped function keeps the :class:`~oracles.base.Oracle` contract:
inputs are checked against the bounds, every returned number is checked,
and an exception raised by the function marks its point failed with the
reason instead of ending a campaign.

A process pool ships the oracle to its workers by pickling, which needs the
function to be importable (defined at module level, not a lambda or a
closure); :func:`check_picklable` says so in one line before any work starts.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oracles.base import (
    DTYPE,
    CostModel,
    Oracle,
    OracleResult,
    PointResult,
    make_bounds,
    not_real_kind,
)
from oracles.exceptions import InvalidInput, OracleError, is_real

__all__ = ["FunctionOracle", "check_picklable"]


def _real(what: str, v: Any) -> float:
    """``v`` as a float: a real number (Python, numpy, or a 0-d array or tensor), not a bool or a
    string; else a ``TypeError``."""
    if getattr(v, "ndim", None) == 0 and hasattr(v, "item"):
        v = v.item()
    if not is_real(v):
        raise TypeError(f"{what} must hold numbers, got {v!r}")
    return float(v)


def _numbers(what: str, v: Any, m: int) -> Tensor:
    """One point's answer as a float64 tensor, or an :class:`OracleError` saying what came back."""
    kind = not_real_kind(v)
    if kind is not None:
        raise OracleError(f"{what} is {kind} {str(v)[:60]!r}; expected real numbers ({m} output(s))")
    try:
        t = torch.as_tensor(v, dtype=DTYPE) if not torch.is_tensor(v) else v.detach().to(DTYPE)
    except (TypeError, ValueError, RuntimeError):
        raise OracleError(f"{what} is {type(v).__name__} {str(v)[:60]!r}; expected a number, a sequence or a "
                          f"tensor of {m} output(s)") from None
    return t


def _batch(what: str, v: Any, n: int, m: int) -> Tensor:
    """A vectorized answer as ``n x m`` (``n`` accepted when ``m == 1``; a scalar variance is
    every point's), or an :class:`OracleError` naming the shape received and the one expected."""
    t = _numbers(what, v, m)
    if t.dim() == 0 and "variance" in what:
        return t.expand(n, m).clone()
    if t.shape == (n, m):
        return t
    if m == 1 and t.shape == (n,):
        return t.reshape(n, 1)
    raise OracleError(f"{what} has shape {tuple(t.shape)}; expected n x m = {n} x {m} (one row per point)")


class FunctionOracle(Oracle):
    """An oracle around a Python callable.

    Args:
        fn: the function. Called as ``fn(x)`` with one point, a ``d`` float64
            tensor (``fn(x, fidelity)`` when ``num_fidelities > 1``); returns
            the ``m`` outputs (a number, a sequence or a tensor), or
            ``(y, yvar)`` when ``noisy``. With ``vectorized=True`` it gets the
            ``n x d`` batch and returns ``n x m`` (and ``n x m`` variances).
        bounds: ``2 x d`` lower and upper bounds (tensor or nested sequence),
            or a mapping ``{input name: (low, high)}`` that also names the inputs.
        names: ``d`` input names (default ``x0, x1, ...``; taken from
            ``bounds`` when it is a mapping).
        outputs: ``m`` output names (default ``("y",)``).
        noisy: ``fn`` returns ``(y, yvar)`` with ``m`` variances of ``y``.
        cost: cost of one point: a positive number, one per fidelity, or a
            :class:`~oracles.base.CostModel` (cost units are the caller's,
            e.g. CPU seconds).
        num_fidelities: number of ordered fidelity levels (0 = cheapest).
        vectorized: ``fn`` takes the whole batch (``n x d``) and returns ``n x m``
            (``n`` values when ``m = 1``; a noisy one a variance of that shape or a scalar).
        failures: exception types of ``fn`` recorded as a failed point with
            their message (default: any :class:`Exception`); other exceptions
            propagate.

    Example:
        >>> o = FunctionOracle(lambda x: (x**2).sum(), [[-1.0, -1.0], [1.0, 1.0]])
        >>> o.evaluate([[0.5, 0.5]]).Y
        tensor([[0.5000]], dtype=torch.float64)
    """

    def __init__(
        self,
        fn: Callable[..., Any],
        bounds: Tensor | Sequence[Sequence[float]] | Mapping[str, Sequence[float]],
        names: Sequence[str] | None = None,
        outputs: Sequence[str] = ("y",),
        noisy: bool = False,
        cost: float | Sequence[float] | CostModel = 1.0,
        num_fidelities: int = 1,
        vectorized: bool = False,
        failures: tuple[type[BaseException], ...] = (Exception,),
    ):
        if not callable(fn):
            raise InvalidInput(f"fn must be callable, got {fn!r}")
        self.fn = fn
        if isinstance(num_fidelities, bool) or not isinstance(num_fidelities, int) or num_fidelities < 1:
            raise InvalidInput(f"num_fidelities must be a positive integer, got {num_fidelities!r}")
        self.num_fidelities = num_fidelities
        if isinstance(bounds, Mapping):
            if names is not None and list(names) != list(bounds):
                raise InvalidInput(f"names {list(names)} differ from the keys of bounds {list(bounds)}")
            names = list(bounds)
            try:
                lo, hi = zip(*(tuple(v) for v in bounds.values()), strict=True)
                lo, hi = [_real("bounds", v) for v in lo], [_real("bounds", v) for v in hi]
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"bounds mapping needs (low, high) numbers per input, got {dict(bounds)!r}") from e
        else:
            try:
                b = torch.as_tensor(bounds, dtype=DTYPE) if not isinstance(bounds, Tensor) else bounds.to(DTYPE)
            except (TypeError, ValueError, RuntimeError) as e:
                raise InvalidInput(f"bounds must be 2 x d numbers (lower row, upper row) or {{name: (low, high)}}, "
                                   f"got {bounds!r}") from e
            if b.dim() != 2 or b.shape[0] != 2 or b.shape[1] < 1:
                raise InvalidInput(
                    f"bounds must be 2 x d (lower row, upper row) or {{name: (low, high)}}, got shape {tuple(b.shape)}"
                )
            lo, hi = b[0].tolist(), b[1].tolist()
        if not all(math.isfinite(v) for v in (*lo, *hi)):
            raise InvalidInput(f"bounds must be finite, got lower={list(lo)}, upper={list(hi)}")
        d = len(lo)
        if isinstance(names, str):
            raise InvalidInput(f"names must be a sequence of {d} names, got the string {names!r}")
        names = tuple(str(n) for n in names) if names is not None else tuple(f"x{i}" for i in range(d))
        if len(names) != d or len(set(names)) != d:
            raise InvalidInput(f"names must be {d} distinct names (one per input), got {list(names)}")
        for n, a, b in zip(names, lo, hi, strict=True):
            if not a < b:
                fixed = (" (an input held fixed is not an input: leave it out of the bounds and set it in the "
                         "function)") if a == b else ""
                raise InvalidInput(f"bounds of input {n!r} need lower < upper, got lower = {a!r}, upper = {b!r}{fixed}")
        self.bounds = make_bounds(lo, hi)
        self.input_names = names
        outputs = (outputs,) if isinstance(outputs, str) else tuple(str(n) for n in outputs)
        if not outputs or len(set(outputs)) != len(outputs):
            raise InvalidInput(f"outputs must be distinct names, at least one, got {list(outputs)}")
        clash = sorted(set(outputs) & set(self.input_names))
        if clash:
            raise InvalidInput(f"output names {clash} are also input names; give inputs and outputs distinct names")
        self.output_names = outputs
        for flag, v in (("noisy", noisy), ("vectorized", vectorized)):
            if not isinstance(v, (bool, np.bool_)):
                raise InvalidInput(f"{flag} must be True or False, got {v!r}")
        self.noisy = bool(noisy)
        if isinstance(cost, CostModel):
            self.cost_model = cost
        else:
            try:
                try:
                    costs = [_real("cost", cost)] * num_fidelities
                except TypeError:  # not one number: one per fidelity
                    costs = [_real("cost", c) for c in cost]
            except TypeError:
                raise InvalidInput(f"cost must be a positive number, one per fidelity, or a CostModel, "
                                   f"got {cost!r}") from None
            if len(costs) != num_fidelities:
                raise InvalidInput(f"cost needs one value per fidelity ({num_fidelities}), got {cost!r}")
            self.cost_model = CostModel(costs)
        self.vectorized = bool(vectorized)
        if isinstance(failures, str):
            raise InvalidInput(f"failures must be exception classes, got the string {failures!r}")
        failures = (failures,) if isinstance(failures, type) else tuple(failures)
        if not all(isinstance(f, type) and issubclass(f, BaseException) for f in failures):
            raise InvalidInput(f"failures must be exception classes, got {failures!r}")
        self.failures = failures

    def _call(self, x: Tensor, fidelity: int) -> Any:
        return self.fn(x, fidelity) if self.num_fidelities > 1 else self.fn(x)

    def _split(self, out: Any) -> tuple[Any, Any]:
        if not self.noisy:
            return out, None
        if not (isinstance(out, (tuple, list)) and len(out) == 2):
            raise OracleError(f"a noisy function must return (y, yvar), got {type(out).__name__}")
        return out[0], out[1]

    def evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        """``fn`` at one point; its exceptions in ``failures`` fail the point."""
        try:
            out = self._call(x, fidelity)
        except OracleError:
            raise
        except self.failures as e:
            raise OracleError(f"{type(e).__name__}: {e}") from e
        y, yvar = self._split(out)
        return PointResult(y=_numbers("the function's output", y, self.num_outputs),
                           yvar=None if yvar is None else _numbers("the function's variance", yvar, self.num_outputs))

    def evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        """The whole batch in one call when ``vectorized``, else point by point."""
        if not self.vectorized:
            return super().evaluate_batch(X, fidelity)
        n, m = X.shape[0], self.num_outputs
        failed = torch.zeros(n, dtype=torch.bool)
        reasons: list[str | None] = [None] * n
        Y = torch.full((n, m), float("nan"), dtype=DTYPE)
        Yvar = torch.full((n, m), float("nan"), dtype=DTYPE) if self.noisy else None
        try:
            y, yvar = self._split(self._call(X.clone(), fidelity))
            Y = _batch("the function's output", y, n, m)
            if Yvar is not None:
                Yvar = _batch("the function's variance", yvar, n, m)
        except (OracleError, *self.failures) as e:
            failed[:] = True
            msg = str(e) if isinstance(e, OracleError) else f"{type(e).__name__}: {e}"
            reasons = [f"OracleError: {msg}"] * n
        return OracleResult(
            X=X.clone(), Y=Y, failed=failed, reasons=reasons, cost=self.cost_model(X, fidelity),
            fidelity=fidelity, Yvar=Yvar, metadata=[{} for _ in range(n)],
        )

    def __repr__(self) -> str:
        name = getattr(self.fn, "__qualname__", type(self.fn).__name__)
        return (
            f"FunctionOracle({name}, inputs={list(self.input_names)}, outputs={list(self.output_names)}, "
            f"fidelities={self.num_fidelities})"
        )


def check_picklable(oracle: Oracle, where: str = "a process pool") -> None:
    """Raise :class:`InvalidInput` (one line) when ``oracle`` cannot be pickled.

    Worker processes receive the oracle by pickling; a lambda, a closure or a
    function defined in ``__main__`` of an interactive session cannot travel.
    """
    try:
        pickle.dumps(oracle)
    except Exception as e:  # pickle raises PicklingError, AttributeError or TypeError
        raise InvalidInput(
            f"oracle {oracle!r} cannot be pickled for {where} ({type(e).__name__}: {e}); define its "
            "function at module level, or use executor.kind = 'serial' or 'thread'"
        ) from None
