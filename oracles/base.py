r"""The Oracle contract.

An oracle maps a batch of inputs ``n x d`` (torch, float64) inside ``bounds``
(``2 x d``) to outputs ``n x m``. It has input and output names, ordered
fidelity levels and a cost model kept apart from the physics, so acquisitions
can weigh information against price.

Subclasses implement :meth:`Oracle.evaluate_one` (one point, may raise
:class:`~oracles.exceptions.OracleError`) or, when they vectorize,
:meth:`Oracle.evaluate_batch` (``_evaluate_one`` and ``_evaluate_batch`` are
accepted as the same methods). :meth:`Oracle.evaluate` validates the input,
times each point, turns an :class:`OracleError` into a failed point with its
reason, checks every number the subclass returns (``Y`` and ``Yvar`` real and finite,
``Yvar >= 0``, shapes ``n x m``) and never returns plausible numbers for a
failed point (its row of ``Y`` is NaN). A plain Python function becomes an
oracle with :class:`oracles.function.FunctionOracle`.

Oracles hold only plain data (tensors, numbers, strings) so they pickle and can
be shipped to worker processes; ``evaluate`` has no side effects.
"""

from __future__ import annotations

import math
import time
from abc import ABC
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, OracleError

DTYPE = torch.float64


@dataclass
class PointResult:
    """What one successful evaluation returns.

    Attributes:
        y: ``m`` outputs.
        yvar: ``m`` variances of the outputs (noisy oracles), or None.
        metadata: JSON-serializable details (iterations, residual, ...).
    """

    y: Tensor
    yvar: Tensor | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class OracleResult:
    """A batch of oracle answers.

    Attributes:
        X: ``n x d`` inputs as evaluated.
        Y: ``n x m`` outputs; rows of failed points are NaN.
        failed: ``n`` bool.
        reasons: ``n`` strings, ``None`` where the point succeeded.
        cost: ``n`` cost of each point in the oracle's cost units.
        fidelity: the fidelity level evaluated.
        Yvar: ``n x m`` output variances (noisy oracles) or None.
        metadata: ``n`` dicts (iterations, residual, ``wall_time`` in s, ...).
    """

    X: Tensor
    Y: Tensor
    failed: Tensor
    reasons: list[str | None]
    cost: Tensor
    fidelity: int
    Yvar: Tensor | None = None
    metadata: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> Tensor:
        """``n`` bool, the points that succeeded."""
        return ~self.failed

    def __len__(self) -> int:
        return self.X.shape[0]

    def to_records(self) -> list[dict[str, Any]]:
        """One JSON-serializable dict per point (for stores and logs)."""
        recs = []
        for i in range(len(self)):
            recs.append(
                {
                    "x": self.X[i].tolist(),
                    "y": None if self.failed[i] else self.Y[i].tolist(),
                    "yvar": None
                    if (self.Yvar is None or self.failed[i])
                    else self.Yvar[i].tolist(),
                    "fidelity": self.fidelity,
                    "failed": bool(self.failed[i]),
                    "reason": self.reasons[i],
                    "cost": float(self.cost[i]),
                    "metadata": self.metadata[i] if self.metadata else {},
                }
            )
        return recs


class CostModel:
    """Cost of evaluating points, by fidelity: ``cost(X, fidelity) -> n``.

    The default charges a fixed amount per point and fidelity level
    (``costs[k]`` for level ``k``); subclasses may depend on ``X``.
    """

    def __init__(self, costs: Sequence[float] = (1.0,)):
        given = costs
        try:
            if isinstance(costs, (str, bytes)):
                raise TypeError
            costs = [float(c) for c in costs]
        except (TypeError, ValueError):
            raise InvalidInput(f"costs must be a sequence of positive numbers (one per level), got {given!r}") from None
        if not costs or any(not math.isfinite(c) or c <= 0 for c in costs):
            raise InvalidInput(f"costs must be positive and finite, got {costs}")
        self.costs = tuple(costs)

    def __call__(self, X: Tensor, fidelity: int) -> Tensor:
        return torch.full((X.shape[0],), self.costs[fidelity], dtype=DTYPE)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(costs={self.costs})"


class Oracle(ABC):
    """Base class of all oracles.

    Class or instance attributes a subclass sets:
        input_names: ``d`` names of the inputs.
        output_names: ``m`` names of the outputs.
        bounds: ``2 x d`` float64 tensor of lower and upper bounds.
        num_fidelities: number of ordered fidelity levels (0 = cheapest).
        cost_model: a :class:`CostModel`.
        noisy: whether outputs carry noise (then ``Yvar`` is reported).
        seeded_by_point: a noisy oracle whose noise is drawn from a seed of
            the point (and the oracle's seed): asking the same point again
            returns the same answer, so a repeat adds no information and
            campaigns do not ask one (as for a deterministic oracle).

    and one method: :meth:`evaluate_one` (one point ``d`` -> :class:`PointResult`)
    or, for oracles that vectorize, :meth:`evaluate_batch` (``n x d`` ->
    :class:`OracleResult`). Callers use :meth:`evaluate`.

    Example:
        >>> class Paraboloid(Oracle):
        ...     input_names, output_names = ("x",), ("y",)
        ...     bounds = make_bounds([-1.0], [1.0])
        ...     def evaluate_one(self, x, fidelity):
        ...         return PointResult(y=x**2)
        >>> Paraboloid().evaluate([[0.5]]).Y
        tensor([[0.2500]], dtype=torch.float64)
    """

    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    bounds: Tensor
    num_fidelities: int = 1
    cost_model: CostModel = CostModel()
    noisy: bool = False
    seeded_by_point: bool = False
    #: relative slack on the bounds check, for round-off of callers
    bounds_rtol: float = 1e-9

    @property
    def dim(self) -> int:
        return len(self.input_names)

    @property
    def num_outputs(self) -> int:
        return len(self.output_names)

    @property
    def highest_fidelity(self) -> int:
        return self.num_fidelities - 1

    # ---------------------------------------------------------------- checks
    def validate_inputs(self, X: Tensor | Sequence) -> Tensor:
        """Return ``X`` as an ``n x d`` float64 tensor inside ``bounds``.

        A 1-d input of length ``d`` is taken as one point. Raises
        :class:`InvalidInput` naming the offending value otherwise.
        """
        if not isinstance(X, Tensor):
            try:
                X = torch.as_tensor(X, dtype=DTYPE)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"inputs must be numeric, got {X!r}") from e
        if X.is_complex() or not (X.is_floating_point() or X.dtype in (torch.int32, torch.int64)):
            raise InvalidInput(f"inputs must be real numbers, got dtype {X.dtype}")
        # a bound given in a lower precision (0.15 as float32 is 0.15000000596) is the bound
        eps = 4 * torch.finfo(X.dtype).eps if X.is_floating_point() else 0.0
        X = X.to(DTYPE)
        if X.dim() == 1 and X.shape[0] == self.dim:
            X = X.unsqueeze(0)
        if X.dim() != 2 or X.shape[-1] != self.dim:
            raise InvalidInput(
                f"inputs must have shape n x {self.dim} ({', '.join(self.input_names)}), "
                f"got shape {tuple(X.shape)}"
            )
        bad = ~torch.isfinite(X)
        if bad.any():
            i, j = (int(v) for v in bad.nonzero()[0])
            raise InvalidInput(f"input {self.input_names[j]} of point {i} is {X[i, j].item()}")
        lo, hi = self.bounds[0].to(X), self.bounds[1].to(X)
        slack = self.bounds_rtol * (hi - lo).abs().clamp_min(1.0) + eps * torch.maximum(lo.abs(), hi.abs())
        out = (X < lo - slack) | (X > hi + slack)
        if out.any():
            i, j = (int(v) for v in out.nonzero()[0])
            raise InvalidInput(
                f"input {self.input_names[j]} = {X[i, j].item()!r} of point {i} is outside "
                f"its bounds [{lo[j].item()!r}, {hi[j].item()!r}]"
            )
        # within the slack: the bound itself (an oracle sees inputs inside its box)
        return torch.minimum(torch.maximum(X, lo), hi)

    def validate_fidelity(self, fidelity: int | None) -> int:
        """``None`` means the highest fidelity; otherwise an int in range."""
        if fidelity is None:
            return self.highest_fidelity
        if isinstance(fidelity, Tensor) and fidelity.numel() == 1:
            fidelity = fidelity.item()
        if isinstance(fidelity, (float, np.floating)) and float(fidelity).is_integer():
            fidelity = int(fidelity)
        if isinstance(fidelity, np.integer):
            fidelity = int(fidelity)
        if (not isinstance(fidelity, int) or isinstance(fidelity, bool)
                or not 0 <= fidelity < self.num_fidelities):
            raise InvalidInput(
                f"fidelity must be an integer in [0, {self.num_fidelities - 1}], got {fidelity!r}"
            )
        return fidelity

    # -------------------------------------------------------------- evaluate
    def evaluate(self, X: Tensor | Sequence, fidelity: int | None = None) -> OracleResult:
        """Evaluate a batch.

        Args:
            X: ``n x d`` inputs (or one point of length ``d``).
            fidelity: level in ``[0, num_fidelities)``; None for the highest.

        Returns:
            An :class:`OracleResult`. Points whose evaluation raised an
            :class:`OracleError`, or returned a non-finite ``Y``, a non-finite
            or negative ``Yvar`` or a wrongly shaped answer, are flagged failed
            with the reason.

        Raises:
            InvalidInput: when the batch itself is malformed (shape, bounds,
                fidelity). Per-point physical failures do not raise.
        """
        X = self.validate_inputs(X)
        fidelity = self.validate_fidelity(fidelity)
        if X.shape[0] == 0:  # nothing to evaluate: an empty answer, whatever the oracle's batch code needs
            m = self.num_outputs
            return OracleResult(X=X, Y=X.new_zeros(0, m), failed=torch.zeros(0, dtype=torch.bool), reasons=[],
                                cost=X.new_zeros(0), fidelity=fidelity, Yvar=X.new_zeros(0, m) if self.noisy else None)
        if _overrides(type(self), "_evaluate_batch"):
            res = self._evaluate_batch(X, fidelity)
        else:
            res = self.evaluate_batch(X, fidelity)
        return self._check_result(res, X)

    def _check_result(self, res: OracleResult, X: Tensor) -> OracleResult:
        """Fail (with the reason) every point whose numbers cannot be used."""
        n, m = X.shape[0], self.num_outputs
        if not isinstance(res, OracleResult):
            raise TypeError(f"{type(self).__name__}.evaluate_batch must return an OracleResult, got {type(res).__name__}")
        if tuple(res.Y.shape) != (n, m):
            raise TypeError(
                f"{type(self).__name__} returned Y of shape {tuple(res.Y.shape)} for {n} points; "
                f"expected {n} x {m} ({', '.join(self.output_names)})"
            )
        res.failed = res.failed.to(torch.bool).clone()
        for what, v in (("outputs", res.Y), ("output variances", res.Yvar)):
            kind = None if v is None else not_real_kind(v)
            if kind is not None:  # no number to keep: float64 would drop the imaginary part or take True as 1
                for i in (~res.failed).nonzero().flatten().tolist():
                    res.reasons[i] = f"{kind} {what}; expected real numbers"
                res.failed[:] = True
                res.Y = torch.full((n, m), float("nan"), dtype=DTYPE)
                if res.Yvar is not None:
                    res.Yvar = torch.full(tuple(res.Yvar.shape), float("nan"), dtype=DTYPE)
        res.Y = res.Y.to(DTYPE)
        bad = ~res.failed & ~torch.isfinite(res.Y).all(dim=-1)
        for i in bad.nonzero().flatten().tolist():
            res.reasons[i] = "non-finite output"
        res.failed = res.failed | bad
        if res.Yvar is not None:
            if tuple(res.Yvar.shape) != (n, m):
                raise TypeError(
                    f"{type(self).__name__} returned Yvar of shape {tuple(res.Yvar.shape)}; expected {n} x {m}"
                )
            res.Yvar = res.Yvar.to(DTYPE)
            ok = ~res.failed
            for i in (ok & ~torch.isfinite(res.Yvar).all(dim=-1)).nonzero().flatten().tolist():
                res.reasons[i] = f"non-finite output variance {res.Yvar[i].tolist()}"
                res.failed[i] = True
            for i in (~res.failed & (res.Yvar < 0).any(dim=-1)).nonzero().flatten().tolist():
                res.reasons[i] = f"negative output variance {res.Yvar[i].tolist()}"
                res.failed[i] = True
            res.Yvar[res.failed] = float("nan")
        res.Y[res.failed] = float("nan")
        return res

    def evaluate_true(self, X: Tensor | Sequence, fidelity: int | None = None) -> Tensor:
        """Noise-free outputs ``n x m`` where the oracle can give them.

        For deterministic oracles this is ``evaluate(X, fidelity).Y``.
        """
        return self.evaluate(X, fidelity).Y

    def evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        """Evaluate ``n x d`` checked inputs at one fidelity.

        Override this when the oracle vectorizes over points. The default
        loops over :meth:`evaluate_one`, times each point (``wall_time`` in s
        in its metadata) and records an :class:`OracleError` as a failed point
        with ``"ErrorType: message"`` as its reason; any other exception is a
        bug and propagates.

        Args:
            X: ``n x d`` float64 inputs, already inside ``bounds``.
            fidelity: a valid level.
        """
        n, m = X.shape[0], self.num_outputs
        Y = torch.full((n, m), float("nan"), dtype=DTYPE)
        Yvar = torch.full((n, m), float("nan"), dtype=DTYPE) if self.noisy else None
        failed = torch.zeros(n, dtype=torch.bool)
        reasons: list[str | None] = [None] * n
        metadata: list[dict[str, Any]] = [{} for _ in range(n)]
        for i in range(n):
            t0 = time.perf_counter()
            try:
                # a copy: a function that edits its argument must not change the recorded inputs
                pr = self.evaluate_one(X[i].clone(), fidelity)
                Y[i] = _as_vector(pr.y, m, "outputs")
                if Yvar is not None and pr.yvar is not None:
                    Yvar[i] = _as_vector(pr.yvar, m, "output variances")
                metadata[i] = dict(pr.metadata)
            except OracleError as e:
                failed[i] = True
                reasons[i] = f"{type(e).__name__}: {e}"
                metadata[i] = {}
            metadata[i]["wall_time"] = time.perf_counter() - t0
        return OracleResult(
            X=X.clone(),
            Y=Y,
            failed=failed,
            reasons=reasons,
            cost=self.cost_model(X, fidelity),
            fidelity=fidelity,
            Yvar=Yvar,
            metadata=metadata,
        )

    def evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        """Evaluate one point: the method a subclass implements.

        Args:
            x: ``d`` float64 input, already inside ``bounds``.
            fidelity: a valid level in ``[0, num_fidelities)``.

        Returns:
            A :class:`PointResult` with ``m`` outputs (and ``m`` variances
            when the oracle is noisy).

        Raises:
            OracleError: (or a subclass: :class:`NotConverged`,
                :class:`CalculationFailed`, :class:`InvalidInput`) when this
                point has no answer; the point is then recorded as failed.
        """
        if _overrides(type(self), "_evaluate_one"):
            return self._evaluate_one(x, fidelity)
        raise NotImplementedError(
            f"{type(self).__name__} must implement evaluate_one or evaluate_batch"
        )

    # the earlier private names, kept as aliases of the public methods
    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        """Alias of :meth:`evaluate_one`."""
        return self.evaluate_one(x, fidelity)

    def _evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        """Alias of :meth:`evaluate_batch`."""
        return self.evaluate_batch(X, fidelity)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(inputs={list(self.input_names)}, "
            f"outputs={list(self.output_names)}, fidelities={self.num_fidelities})"
        )


def _overrides(cls: type, name: str) -> bool:
    """Whether ``cls`` defines ``name`` below :class:`Oracle`."""
    return getattr(cls, name) is not getattr(Oracle, name)


def not_real_kind(v: Any) -> str | None:
    """``"complex"`` or ``"bool"`` when ``v`` (a tensor, array, scalar or nested sequence of
    them) holds such values, which a float64 conversion would turn into numbers silently
    (dropping the imaginary part, or True as 1.0); None otherwise."""
    dt = getattr(v, "dtype", None)
    if isinstance(dt, torch.dtype):
        return "complex" if dt.is_complex else "bool" if dt == torch.bool else None
    if isinstance(dt, np.dtype):
        return {"c": "complex", "b": "bool"}.get(dt.kind)
    if isinstance(v, (bool, complex)):
        return type(v).__name__
    if isinstance(v, (list, tuple)):
        for e in v:
            kind = not_real_kind(e)
            if kind is not None:
                return kind
    return None


def _as_vector(v: Any, m: int, what: str) -> Tensor:
    """``v`` as an ``m`` float64 vector; a wrong size, or complex or bool values, are an
    :class:`OracleError` of the point."""
    kind = not_real_kind(v)
    if kind is not None:
        raise OracleError(f"the oracle returned {kind} {what} {str(v)[:60]}; expected real numbers")
    t = torch.as_tensor(v, dtype=DTYPE).reshape(-1)
    if t.numel() != m:
        raise OracleError(f"the oracle returned {t.numel()} {what} for a point, expected {m}")
    return t


def make_bounds(lower: Sequence[float], upper: Sequence[float]) -> Tensor:
    """A ``2 x d`` float64 bounds tensor, checked for ``lower < upper``."""
    try:
        b = torch.tensor([list(lower), list(upper)], dtype=DTYPE)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"bounds need two rows of numbers, got lower={lower!r}, upper={upper!r} ({e})") from None
    if b.shape[0] != 2 or not torch.isfinite(b).all() or (b[0] >= b[1]).any():
        raise InvalidInput(f"bounds need finite lower < upper, got lower={list(lower)}, upper={list(upper)}")
    return b
