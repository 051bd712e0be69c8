r"""The RVE oracle: macro strain in, homogenized stress out (FFT homogenization).

Inputs (``d``), in this order:

* small strain, 2D: ``eps11, eps22, eps12``; 3D: ``eps11, eps22, eps33, eps23,
  eps13, eps12`` (tensor components, Voigt order, no factor 2 on shears);
* finite strain: the displacement gradient ``H = F - I`` row-major,
  ``H11, H12, H21, H22`` (2D) or ``H11 ... H33`` (3D);
* then, optionally, microstructure parameters: names of dataclass fields of
  the microstructure (e.g. ``radius_fraction``), replaced per point with
  :func:`dataclasses.replace` (integer fields are rounded).

Outputs (``m``): the stress in the same component order, ``sig..`` (Cauchy,
small strain) or ``P..`` (first Piola-Kirchhoff, finite strain).

The tangent is available through :meth:`RVEOracle.material_response` (the
:class:`~oracles.material.MaterialModel` protocol used by FE²) and
:meth:`RVEOracle.stress_tangent`.
"""

from __future__ import annotations

import dataclasses
import math
import operator
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, OracleResult, make_bounds, not_real_kind
from oracles.exceptions import InvalidInput, OracleError, is_real
from oracles.material import MaterialResponse
from oracles.rve.laws import FiniteStrainLaw, SmallStrainLaw
from oracles.rve.microstructure import PhaseMap, check_grid_memory
from oracles.rve.solver import FFTSolver, HomogenizationResult, law_list

__all__ = ["RVEOracle", "load_phase_map"]

_SMALL = {
    2: [(0, 0), (1, 1), (0, 1)],
    3: [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)],
}


def load_phase_map(source) -> np.ndarray:
    """An integer phase map from an array, a ``.npy`` file or a segmented image
    (a multi-page TIFF is a 3D map, its pages along the first axis).

    Files are read by :class:`~oracles.rve.microstructure.PhaseMap` (which also
    checks that the ids are contiguous, ``0 .. p-1``).

    Raises:
        InvalidInput: unreadable file, or values that are not integer ids.
    """
    if isinstance(source, (str, Path)):
        return PhaseMap(source).phase_map()
    try:
        arr = np.asarray(source)
    except (TypeError, ValueError):
        raise InvalidInput(f"phase map must be a rectangular integer array, got {str(source)[:120]}") from None
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.array_equal(arr, np.round(arr)):
            raise InvalidInput("phase map must hold integer phase ids, got non-integer values")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"phase map must hold integer phase ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


class RVEOracle(Oracle):
    """FFT homogenization of a periodic RVE as an :class:`~oracles.base.Oracle`.

    Args:
        phases: one law per phase id (all small- or all finite-strain laws).
        microstructure: an object with ``phase_map(shape) -> int array``
            (e.g. :class:`~oracles.rve.microstructure.Inclusion`), or a raw
            integer array, or a ``.npy`` path.
        grid: ``int`` (cubic grid, then ``dim`` is needed unless the
            microstructure is an array) or a tuple of 2 or 3 sizes; None for an
            array, ``.npy`` path or :class:`~oracles.rve.microstructure.PhaseMap`,
            whose shape is the grid. An even size
            drops the Nyquist modes whose wave vector is ambiguous (see
            :func:`~oracles.rve.projection.ambiguous_nyquist`); odd sizes have none.
        dim: 2 or 3, with an ``int`` grid.
        strain_range: half-width of the box of each strain input (``eps`` or
            ``H``); default 0.01 (small) or 0.1 (finite). Or give ``strain_bounds``.
        strain_bounds: ``2 x d_strain`` explicit bounds of the strain inputs.
        micro_params: ``{field name: (low, high)}`` microstructure inputs.
        cg_tol, cg_maxiter, newton_tol, newton_maxiter: solver tolerances.
        device: torch device of the solver (``cpu`` here, ``cuda`` where present).
        cost_per_voxel: cost units per voxel and point (default ``1e-6``).

    Example:
        >>> from oracles.rve import Inclusion, IsotropicElastic
        >>> o = RVEOracle([IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)],
        ...               Inclusion(radius_fraction=0.25), grid=15, dim=2)
        >>> o.evaluate(torch.tensor([[0.01, 0.0, 0.0]])).Y.shape
        torch.Size([1, 3])
    """

    def __init__(
        self,
        phases: Sequence[SmallStrainLaw | FiniteStrainLaw],
        microstructure: Any,
        grid: int | Sequence[int] | None = None,
        *,
        dim: int | None = None,
        strain_range: float | None = None,
        strain_bounds: Tensor | Sequence | None = None,
        micro_params: Mapping[str, tuple[float, float]] | None = None,
        cg_tol: float = 1e-8,
        cg_maxiter: int = 1000,
        newton_tol: float = 1e-8,
        newton_maxiter: int = 30,
        device: str | None = None,
        cost_per_voxel: float = 1e-6,
    ):
        self.phases = law_list(phases)
        self.finite = isinstance(self.phases[0], FiniteStrainLaw)
        if isinstance(microstructure, (str, Path, np.ndarray, list, Tensor)):
            arr = load_phase_map(
                microstructure.cpu().numpy() if isinstance(microstructure, Tensor) else microstructure
            )
            if arr.ndim not in (2, 3) or arr.size == 0:
                raise InvalidInput(f"phase map must be a non-empty 2D or 3D array, got shape {tuple(arr.shape)}")
            self.microstructure = arr
        elif callable(getattr(microstructure, "phase_map", None)):
            arr = None
            self.microstructure = microstructure
            if grid is None and isinstance(microstructure, PhaseMap):
                grid = microstructure.shape  # a user phase map sets its own grid
        else:
            raise InvalidInput(
                "microstructure must have a phase_map(shape) method or be an integer array or "
                f".npy path, got {microstructure!r}"
            )
        self.grid = self._resolve_grid(grid, dim, arr)
        self.k = len(self.grid)
        # a grid whose solve cannot fit is refused here, before its phase map is built
        check_grid_memory(self.grid, finite=self.finite)
        if arr is not None and tuple(arr.shape) != self.grid:
            raise InvalidInput(
                f"phase map has shape {tuple(arr.shape)}, which does not match grid {self.grid}"
            )
        self.solver_options = dict(
            cg_tol=cg_tol,
            cg_maxiter=cg_maxiter,
            newton_tol=newton_tol,
            newton_maxiter=newton_maxiter,
        )
        if device is not None:
            try:
                torch.device(device)
            except (RuntimeError, TypeError):
                raise InvalidInput(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
        self.device = device
        try:
            self.micro_params = {str(n): (float(a), float(b)) for n, (a, b) in (micro_params or {}).items()}
        except (TypeError, ValueError, AttributeError):
            raise InvalidInput(f"micro_params must map field names to (low, high) number pairs, got {micro_params!r}") from None
        if self.micro_params:
            if not dataclasses.is_dataclass(self.microstructure):
                raise InvalidInput(
                    f"micro_params {list(self.micro_params)} need a dataclass microstructure, "
                    f"got {type(self.microstructure).__name__}"
                )
            names = {f.name for f in dataclasses.fields(self.microstructure)}
            for n in self.micro_params:
                if n not in names:
                    raise InvalidInput(
                        f"micro_params name {n!r} is not a field of {type(self.microstructure).__name__} "
                        f"(fields: {sorted(names)})"
                    )
                cur = getattr(self.microstructure, n)
                if not is_real(cur):
                    raise InvalidInput(
                        f"micro_params name {n!r} is a {type(cur).__name__} field of "
                        f"{type(self.microstructure).__name__} ({cur!r}); only number fields can vary"
                    )
        k = self.k
        if self.finite:
            comps = [(i, j) for i in range(k) for j in range(k)]
            strain_names = [f"H{i + 1}{j + 1}" for i, j in comps]
            self.output_names = tuple(f"P{i + 1}{j + 1}" for i, j in comps)
            default_range = 0.1
        else:
            comps = _SMALL[k]
            strain_names = [f"eps{i + 1}{j + 1}" for i, j in comps]
            self.output_names = tuple(f"sig{i + 1}{j + 1}" for i, j in comps)
            default_range = 0.01
        self._comps = comps
        self.input_names = tuple(strain_names) + tuple(self.micro_params)
        if strain_bounds is not None:
            try:
                sb = torch.as_tensor(strain_bounds, dtype=DTYPE)
            except (TypeError, ValueError, RuntimeError):
                raise InvalidInput(f"strain_bounds must be 2 x {len(strain_names)} numbers, got {strain_bounds!r}") from None
            if sb.shape != (2, len(strain_names)):
                raise InvalidInput(
                    f"strain_bounds must have shape 2 x {len(strain_names)} ({', '.join(strain_names)}), "
                    f"got {tuple(sb.shape)}"
                )
            lo, hi = sb[0].tolist(), sb[1].tolist()
        else:
            r = default_range if strain_range is None else float(strain_range) if is_real(strain_range) else math.nan
            if not (math.isfinite(r) and r > 0):
                raise InvalidInput(f"strain_range must be positive, got {strain_range!r}")
            lo, hi = [-r] * len(strain_names), [r] * len(strain_names)
        lo += [a for a, _ in self.micro_params.values()]
        hi += [b for _, b in self.micro_params.values()]
        self.bounds = make_bounds(lo, hi)
        if not is_real(cost_per_voxel):
            raise InvalidInput(f"cost_per_voxel must be a positive number, got {cost_per_voxel!r}")
        self.cost_model = CostModel((cost_per_voxel * float(np.prod(self.grid)),))
        self._solver_cache: FFTSolver | None = None
        if not self.micro_params:
            self._solver()  # validate phases and phase map now

    # ------------------------------------------------------------- plumbing
    @staticmethod
    def _resolve_grid(grid, dim, arr) -> tuple[int, ...]:
        if grid is None:
            if arr is None:
                raise InvalidInput("grid is required unless the microstructure is a phase-map array or PhaseMap")
            if dim is not None and dim != arr.ndim:
                raise InvalidInput(f"dim={dim!r} does not match the {arr.ndim}D phase map of shape {tuple(arr.shape)}")
            return tuple(int(n) for n in arr.shape)
        if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
            d = dim if dim is not None else (arr.ndim if arr is not None else None)
            if d not in (2, 3):
                raise InvalidInput(f"dim must be 2 or 3 with an int grid, got dim={dim!r}")
            grid = (int(grid),) * d
        given = grid
        try:
            grid = tuple(operator.index(n) if not isinstance(n, bool) else None for n in grid)
        except TypeError:
            grid = (None,)
        if None in grid:
            raise InvalidInput(f"grid must be an int or a tuple of ints, got {given!r}")
        if len(grid) not in (2, 3) or min(grid) < 1:
            raise InvalidInput(f"grid must be 2 or 3 positive sizes, got {grid}")
        if dim is not None and dim != len(grid):
            raise InvalidInput(f"dim={dim} does not match grid {grid}")
        return grid

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_solver_cache"] = None  # rebuilt on demand; keeps pickles small
        return state

    def _phase_map(self, micro) -> np.ndarray:
        if isinstance(micro, np.ndarray):
            pm = micro
        else:
            pm = load_phase_map(micro.phase_map(self.grid))
        if tuple(pm.shape) != self.grid:
            raise InvalidInput(f"phase map has shape {tuple(pm.shape)}, which does not match grid {self.grid}")
        return pm

    def _make_solver(self, micro) -> FFTSolver:
        return FFTSolver(self._phase_map(micro), self.phases, device=self.device, **self.solver_options)

    def _solver(self) -> FFTSolver:
        if self._solver_cache is None:
            self._solver_cache = self._make_solver(self.microstructure)
        return self._solver_cache

    def _micro_at(self, values: Tensor):
        changes = {}
        for (name, _), v in zip(self.micro_params.items(), values.tolist(), strict=True):
            cur = getattr(self.microstructure, name)
            changes[name] = int(round(v)) if isinstance(cur, (int, np.integer)) and not isinstance(cur, bool) else v
        return dataclasses.replace(self.microstructure, **changes)

    def _loads(self, S: Tensor) -> Tensor:
        """Strain inputs ``n x d_s`` -> macro strain or F ``n x k x k``."""
        n, k = S.shape[0], self.k
        A = torch.zeros(n, k, k, dtype=DTYPE)
        for c, (i, j) in enumerate(self._comps):
            A[:, i, j] = S[:, c]
            if not self.finite:
                A[:, j, i] = S[:, c]
        return A + torch.eye(k, dtype=DTYPE) if self.finite else A

    def _outputs(self, stress: Tensor) -> Tensor:
        return torch.stack([stress[..., i, j] for i, j in self._comps], -1)

    # ------------------------------------------------------------- evaluate
    def _evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        n, m = X.shape[0], self.num_outputs
        ns = len(self._comps)
        Y = torch.full((n, m), float("nan"), dtype=DTYPE)
        failed = torch.zeros(n, dtype=torch.bool)
        reasons: list[str | None] = [None] * n
        meta: list[dict[str, Any]] = [{} for _ in range(n)]
        loads = self._loads(X[:, :ns])

        def run(idx: list[int], solver_fn) -> None:
            t0 = time.perf_counter()
            try:
                solver = solver_fn()
                cg_tensor = 0
                if solver.linear:
                    # one batched solve gives the effective tensor; every point
                    # is then C : eps, identical whatever the batch (its CG
                    # iterations are this evaluation's, unless a cached tensor)
                    cached = solver._unit_cache is not None
                    _, it = solver.effective_tensor()
                    cg_tensor = 0 if cached else it
                res = solver.homogenize(loads[idx], tangent=False)
            except OracleError as e:
                if len(idx) > 1:  # isolate the failing points
                    for i in idx:
                        run([i], solver_fn)
                    return
                failed[idx[0]] = True
                reasons[idx[0]] = f"{type(e).__name__}: {e}"
                meta[idx[0]] = {"wall_time": time.perf_counter() - t0}
                return
            dt = (time.perf_counter() - t0) / len(idx)
            Y[idx] = self._outputs(res.stress.cpu())
            for a, i in enumerate(idx):
                meta[i] = {
                    "newton_iterations": res.newton_iterations,
                    "cg_iterations": res.cg_iterations + cg_tensor,
                    "residual": float(res.residual[a]),
                    "wall_time": dt,
                    "batch_size": len(idx),
                }

        if not self.micro_params:
            run(list(range(n)), self._solver)
        else:
            for i in range(n):
                run([i], lambda i=i: self._make_solver(self._micro_at(X[i, ns:])))
        return OracleResult(
            X=X.clone(),
            Y=Y,
            failed=failed,
            reasons=reasons,
            cost=self.cost_model(X, fidelity),
            fidelity=fidelity,
            metadata=meta,
        )

    # ----------------------------------------------------- stress + tangent
    def homogenize(self, load, tangent: bool = True, fields: bool = False) -> HomogenizationResult:
        """Solve at macro loads ``L x k x k`` (strain, or ``F`` for finite strain)
        on the configured microstructure; see :meth:`FFTSolver.homogenize`."""
        if self.micro_params:
            raise InvalidInput(
                "homogenize uses the configured microstructure; this oracle varies "
                f"{list(self.micro_params)} per point, use evaluate"
            )
        return self._solver().homogenize(load, tangent=tangent, fields=fields)

    def stress_tangent(self, strain: Tensor) -> tuple[Tensor, Tensor]:
        """Small strain: stress ``n x k x k`` and consistent tangent ``n x k x k x k x k``
        at macro strains ``n x k x k`` (finite strain: ``F`` in, ``P, dP/dF`` out)."""
        res = self.homogenize(strain, tangent=True)
        return res.stress, res.tangent

    def material_response(self, F: Tensor) -> MaterialResponse:
        """The :class:`~oracles.material.MaterialModel` answer at ``F`` ``n x k x k``.

        Finite strain: ``P(F)`` and ``dP/dF`` from one batched Newton solve.
        Small strain (geometrically linear): ``eps = sym(F - I)``,
        ``P = sigma(eps)`` and ``dP/dF = C`` (minor-symmetric).

        Raises:
            InvalidInput: wrong shape or ``det F <= 0``.
            NotConverged: the RVE solve did not converge.
        """
        kind = not_real_kind(F)
        if kind is not None:
            raise InvalidInput(f"F must hold real numbers, got {kind} values {str(F)[:120]}")
        if not isinstance(F, Tensor):
            try:
                F = torch.as_tensor(F, dtype=DTYPE)
            except (TypeError, ValueError, RuntimeError):
                raise InvalidInput(f"F must be an n x {self.k} x {self.k} array of numbers, got {F!r}") from None
        k = self.k
        if F.dim() != 3 or F.shape[1:] != (k, k):
            raise InvalidInput(f"F must have shape n x {k} x {k} for this {k}D RVE, got {tuple(F.shape)}")
        F = F.to(DTYPE)
        det = torch.linalg.det(F)
        if (det <= 0).any():
            i = int((det <= 0).nonzero()[0])
            raise InvalidInput(f"det F must be positive, got det F = {det[i].item():.6g} at point {i}")
        if self.finite:
            res = self.homogenize(F, tangent=True)
        else:
            H = F - torch.eye(k, dtype=DTYPE)
            res = self.homogenize(0.5 * (H + H.transpose(-1, -2)), tangent=True)
        return MaterialResponse(res.stress.cpu(), res.tangent.cpu(), None)
