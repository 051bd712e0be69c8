"""Cheap oracles for testing and benchmarking the loops.

They wrap BoTorch's synthetic test functions (independent reference values)
and add what a campaign must survive: slowness, failures, fidelities.
"""

from __future__ import annotations

import hashlib
import time

import torch
from botorch.test_functions import AugmentedBranin, Branin, Hartmann
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, PointResult
from oracles.exceptions import CalculationFailed


class _BoTorchFunction(Oracle):
    """An :class:`Oracle` around a BoTorch ``SyntheticTestFunction`` (noise-free)."""

    _fn: object

    def __init__(self):
        self.bounds = self._fn.bounds.to(DTYPE).clone()
        self.input_names = tuple(f"x{i}" for i in range(self._fn.dim))
        self.output_names = ("f",)

    @property
    def optimal_value(self) -> float:
        return float(self._fn.optimal_value)

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))


class BoTorchBranin(_BoTorchFunction):
    """Branin on ``[-5, 10] x [0, 15]``, minimum 0.397887."""

    _fn = Branin(dtype=DTYPE)


class BoTorchHartmann6(_BoTorchFunction):
    """Hartmann-6 on ``[0, 1]^6``, minimum -3.32237."""

    _fn = Hartmann(dim=6, dtype=DTYPE)


class SlowOracle(Oracle):
    """Branin that sleeps ``delay`` seconds per call (``jitter`` adds x-dependent spread)
    and ``setup`` seconds when built.

    The sleep is deterministic in ``x`` so runs are reproducible.
    """

    output_names = ("f",)
    input_names = ("x0", "x1")

    def __init__(self, delay: float = 0.2, jitter: float = 0.0, setup: float = 0.0):
        time.sleep(float(setup))
        self.delay = float(delay)
        self.jitter = float(jitter)
        self.bounds = Branin(dtype=DTYPE).bounds.clone()
        self._fn = Branin(dtype=DTYPE)

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        time.sleep(self.delay + self.jitter * _unit_hash(x, 0))
        return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))


def _unit_hash(x: Tensor, salt: int) -> float:
    """A number in [0, 1) fixed by the bits of ``x`` (stable across processes)."""
    h = hashlib.sha256(x.detach().cpu().numpy().tobytes() + salt.to_bytes(8, "little"))
    return int.from_bytes(h.digest()[:8], "little") / 2**64


class FlakyOracle(Oracle):
    """Branin that fails on a fraction ``fail_rate`` of its points.

    Half of the failures raise :class:`CalculationFailed`, the other half return
    NaN (which :meth:`Oracle.evaluate` turns into a failed point). Which points
    fail is fixed by the bits of ``x`` and ``seed``, so reruns are reproducible.
    ``crash_rate`` of the points raise a plain ``RuntimeError`` (a bug, not an
    :class:`OracleError`), which the loop's worker must also record.
    """

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self, fail_rate: float = 0.3, crash_rate: float = 0.0, seed: int = 0, delay: float = 0.0):
        self.fail_rate = float(fail_rate)
        self.crash_rate = float(crash_rate)
        self.seed = int(seed)
        self.delay = float(delay)
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        if self.delay:
            time.sleep(self.delay)
        u = _unit_hash(x, self.seed)
        if u < self.crash_rate:
            raise RuntimeError("injected crash")
        if u < self.crash_rate + self.fail_rate / 2:
            raise CalculationFailed(f"injected failure (u={u:.3f})")
        if u < self.crash_rate + self.fail_rate:
            return PointResult(y=torch.tensor([float("nan")], dtype=DTYPE))
        return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))


class BraninMultiFidelity(Oracle):
    """BoTorch's AugmentedBranin at fidelity levels ``s = fidelities[k]``.

    Level ``k`` costs ``costs[k]``; the highest level (s = 1) is Branin itself.
    """

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self, fidelities=(0.5, 0.75, 1.0), costs=(1.0, 3.0, 10.0)):
        if len(fidelities) != len(costs):
            raise ValueError(f"fidelities {fidelities} and costs {costs} differ in length")
        self.levels = tuple(float(s) for s in fidelities)
        self.num_fidelities = len(self.levels)
        self.cost_model = CostModel(costs)
        self._fn = AugmentedBranin(dtype=DTYPE)
        self.bounds = self._fn.bounds[:, :2].clone()

    @property
    def optimal_value(self) -> float:
        return 0.397887

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        xs = torch.cat([x, torch.tensor([self.levels[fidelity]], dtype=DTYPE)]).unsqueeze(0)
        return PointResult(y=self._fn.evaluate_true(xs).reshape(1))


class DieOnceOracle(Oracle):
    """Branin whose worker process dies (``os._exit``) on its first call.

    ``marker`` is a file path: the first call anywhere creates it and kills its
    process, later calls evaluate normally. For testing worker-death recovery.
    """

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self, marker: str, delay: float = 0.0):
        self.marker = str(marker)
        self.delay = float(delay)
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        import os

        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            if self.delay:
                time.sleep(self.delay)
            return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))
        os.close(fd)
        os._exit(1)


class SegfaultOracle(Oracle):
    """Branin whose worker process dies of SIGSEGV on a fraction ``crash_rate`` of the points.

    Which points crash is fixed by the bits of ``x`` and ``seed`` (the same
    point crashes every time it is retried). For worker-fault tests.
    """

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self, crash_rate: float = 0.2, seed: int = 0, delay: float = 0.0):
        self.crash_rate = float(crash_rate)
        self.seed = int(seed)
        self.delay = float(delay)
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def crashes(self, x: Tensor) -> bool:
        """Whether the point ``x`` (``d``) kills its worker."""
        return _unit_hash(x.to(DTYPE), self.seed) < self.crash_rate

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        import os
        import signal

        if self.delay:
            time.sleep(self.delay)
        if self.crashes(x):
            os.kill(os.getpid(), signal.SIGSEGV)
        return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))


class HangingOracle(Oracle):
    """Branin that blocks SIGALRM and hangs (sleeps ``hang`` s) on a fraction ``hang_rate`` of the points.

    An in-process alarm cannot interrupt it: only killing its worker ends it.
    Which points hang is fixed by the bits of ``x`` and ``seed``.
    """

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self, hang_rate: float = 0.3, seed: int = 0, hang: float = 3600.0, delay: float = 0.0):
        self.hang_rate = float(hang_rate)
        self.seed = int(seed)
        self.hang = float(hang)
        self.delay = float(delay)
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def hangs(self, x: Tensor) -> bool:
        """Whether the point ``x`` (``d``) hangs."""
        return _unit_hash(x.to(DTYPE), self.seed) < self.hang_rate

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        import signal

        if self.delay:
            time.sleep(self.delay)
        if self.hangs(x):
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
            time.sleep(self.hang)
        return PointResult(y=self._fn.evaluate_true(x.unsqueeze(0)).reshape(1))


class BadVarianceOracle(Oracle):
    """Noisy Branin (variance 0.01) that reports a NaN variance on a fraction ``nan_rate`` of the points
    and a negative one on a fraction ``negative_rate`` (fixed by the bits of ``x`` and ``seed``)."""

    input_names = ("x0", "x1")
    output_names = ("f",)
    noisy = True

    def __init__(self, nan_rate: float = 0.2, negative_rate: float = 0.2, seed: int = 0):
        self.nan_rate = float(nan_rate)
        self.negative_rate = float(negative_rate)
        self.seed = int(seed)
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def kind(self, x: Tensor) -> str:
        """``"nan"``, ``"negative"`` or ``"ok"``: what the variance at ``x`` will be."""
        u = _unit_hash(x.to(DTYPE), self.seed)
        return "nan" if u < self.nan_rate else "negative" if u < self.nan_rate + self.negative_rate else "ok"

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        var = {"nan": float("nan"), "negative": -0.01, "ok": 0.01}[self.kind(x)]
        y = self._fn.evaluate_true(x.unsqueeze(0)).reshape(1)
        return PointResult(y=y, yvar=torch.tensor([var], dtype=DTYPE))


class LockMetadataOracle(Oracle):
    """Branin whose results carry a value that does not pickle (a lock) in their metadata,
    as an oracle that hands back a handle to its engine would."""

    input_names = ("x0", "x1")
    output_names = ("f",)

    def __init__(self):
        self._fn = Branin(dtype=DTYPE)
        self.bounds = self._fn.bounds.clone()

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        import threading

        y = self._fn.evaluate_true(x.unsqueeze(0)).reshape(1)
        return PointResult(y=y, metadata={"handle": threading.Lock()})


class TwoOutputMultiFidelity(Oracle):
    """Two outputs at two or more fidelity levels: AugmentedBranin ``f`` and a shifted
    sphere ``g = |x - c|^2 / 100 + (1 - s)`` at level ``s = fidelities[k]`` (for
    multi-objective, multi-fidelity campaigns)."""

    input_names = ("x0", "x1")
    output_names = ("f", "g")

    def __init__(self, fidelities=(0.5, 1.0), costs=(1.0, 10.0)):
        if len(fidelities) != len(costs):
            raise ValueError(f"fidelities {fidelities} and costs {costs} differ in length")
        self.levels = tuple(float(s) for s in fidelities)
        self.num_fidelities = len(self.levels)
        self.cost_model = CostModel(costs)
        self._fn = AugmentedBranin(dtype=DTYPE)
        self.bounds = self._fn.bounds[:, :2].clone()

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        s = self.levels[fidelity]
        f = self._fn.evaluate_true(torch.cat([x, torch.tensor([s], dtype=DTYPE)]).unsqueeze(0)).reshape(1)
        g = ((x - torch.tensor([2.5, 7.5], dtype=DTYPE)) ** 2).sum().reshape(1) / 100 + (1 - s)
        return PointResult(y=torch.cat([f, g]))
