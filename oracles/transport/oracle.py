r"""Transport oracles: microstructure parameters in, effective tensors out.

:class:`ConductivityOracle` and :class:`PermeabilityOracle` evaluate a porous
microstructure (:mod:`oracles.transport.porous`) whose parameters are the
inputs (``micro_params``: dataclass field names with bounds, e.g.
``porosity``, ``radius_fraction``), on one voxel grid per fidelity level.

Outputs (``k = 2`` or ``3``; tensor components in the order ``11, 22, 33,
23, 13, 12``, 2D ``11, 22, 12``):

* conductivity: ``K11 ...`` in the units of the phase conductivities;
* permeability: ``log10_k`` (log10 of the mean diagonal permeability in m²),
  then ``k11 ...`` in m².

Fidelity levels (``levels``): grid sizes, cheapest first; the permeability
oracle also takes ``"kozeny-carman"``, the closed form
``phi^3 d^2 / (180 (1 - phi)^2)`` with ``d`` twice the microstructure's
``radius_fraction`` times ``cell_size`` (an isotropic tensor). A point whose
pore space does not percolate, or whose solve does not converge, fails with
its reason.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.exceptions import InvalidInput, is_finite_real, is_real
from oracles.transport.closed_forms import kozeny_carman
from oracles.transport.conductivity import ConductivitySolver, phase_tensor
from oracles.transport.permeability import StokesSolver
from oracles.transport.porous import PoreImage
from oracles.transport.porous import microstructure as make_microstructure
from oracles.transport.topology import warn_if_not_periodic

__all__ = ["ConductivityOracle", "PermeabilityOracle", "tensor_components"]

_IDX = {2: [(0, 0), (1, 1), (0, 1)], 3: [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]}


def tensor_components(T: Tensor) -> Tensor:
    """``k x k`` symmetric tensor -> its ``k(k+1)/2`` components (``11, 22, [33, 23, 13,] 12``)."""
    k = T.shape[-1]
    return torch.stack([T[..., i, j] for i, j in _IDX[k]], -1)


def _names(prefix: str, k: int) -> tuple[str, ...]:
    return tuple(f"{prefix}{i + 1}{j + 1}" for i, j in _IDX[k])


class _VoxelOracle(Oracle):
    """Shared set-up: microstructure, inputs, grids per fidelity, costs."""

    level_names: tuple[str, ...] = ()

    def __init__(
        self,
        microstructure: Any,
        levels: Sequence,
        dim: int,
        micro_params: Mapping[str, tuple[float, float]] | None,
        cost_per_voxel: float,
        closed_form_cost: float = 1e-4,
    ):
        if isinstance(microstructure, str):
            microstructure = make_microstructure(microstructure)
        if not hasattr(microstructure, "solid"):
            raise InvalidInput(
                f"microstructure must have solid(shape) or be a name/.npy path, got {microstructure!r}"
            )
        self.microstructure = microstructure
        if dim not in (2, 3):
            raise InvalidInput(f"dim must be 2 or 3, got {dim!r}")
        if isinstance(microstructure, PoreImage):
            img = microstructure.load()
            warn_if_not_periodic(img, f"pore image {microstructure.path!r}")
            dim = img.ndim
            levels = [tuple(img.shape)]
        self.k = dim
        levels = list(levels) if isinstance(levels, (list, tuple)) else [levels]
        if not levels:
            raise InvalidInput("levels must name at least one grid")
        self.levels = []
        for lv in levels:
            if isinstance(lv, str):
                if lv not in self.level_names:
                    raise InvalidInput(
                        f"level {lv!r} is not available; use grid sizes or {list(self.level_names)}"
                    )
                self.levels.append(lv)
                continue
            try:
                if isinstance(lv, (int, np.integer)) and not isinstance(lv, bool):
                    g = (int(lv),) * dim
                else:
                    g = tuple(operator.index(n) for n in lv if not isinstance(n, bool))
            except TypeError:
                g = ()
            if len(g) != dim or min(g) < 4:
                raise InvalidInput(
                    f"grid level {lv!r} must be an int or {dim} sizes of at least 4 voxels"
                )
            if len(set(g)) > 1:
                raise InvalidInput(
                    f"grid level {lv!r} must be square (cubic): the cell is one edge long on every axis, "
                    f"in voxels of one size")
            self.levels.append(g)
        self.num_fidelities = len(self.levels)
        micro_params = dict(micro_params or {})
        fields = (
            {f.name: f for f in dataclasses.fields(microstructure)}
            if dataclasses.is_dataclass(microstructure)
            else {}
        )
        extra = self._extra_inputs()
        for name in micro_params:
            if name not in fields and name not in extra:
                raise InvalidInput(
                    f"micro_params name {name!r} is neither a field of {type(microstructure).__name__} "
                    f"({sorted(fields)}) nor one of {sorted(extra)}"
                )
        self.micro_params = micro_params
        self.input_names = tuple(micro_params)
        if not self.input_names:
            raise InvalidInput(
                "micro_params must name at least one input, e.g. {'porosity': (0.3, 0.7)}"
            )
        self.bounds = make_bounds(
            [lo for lo, _ in micro_params.values()], [hi for _, hi in micro_params.values()]
        )
        costs = [
            closed_form_cost if isinstance(lv, str) else cost_per_voxel * math.prod(lv)
            for lv in self.levels
        ]
        self.cost_model = CostModel(costs)

    def _extra_inputs(self) -> tuple[str, ...]:
        return ()

    def _micro_at(self, x: Tensor):
        m = self.microstructure
        if not dataclasses.is_dataclass(m):
            return m
        fields = {f.name: f for f in dataclasses.fields(m)}
        upd = {}
        for name, v in zip(self.input_names, x.tolist(), strict=True):
            if name in fields:
                upd[name] = int(round(v)) if fields[name].type in (int, "int") else float(v)
        return dataclasses.replace(m, **upd) if upd else m

    def _solid(self, micro, grid) -> np.ndarray:
        return micro.solid(grid)


class ConductivityOracle(_VoxelOracle):
    """Effective conductivity of a porous microstructure (pores phase 0, solid phase 1).

    Args:
        microstructure: a name of :data:`oracles.transport.porous.MICROSTRUCTURES`,
            a microstructure object or a ``.npy`` path (True/1 on solid).
        levels: grid size(s) per fidelity, cheapest first (default ``(32,)``).
        dim: 2 or 3.
        micro_params: ``{input name: (low, high)}``: microstructure fields and
            ``log10_contrast`` (``log10`` of solid over pore conductivity; the
            solid is then isotropic, ``10^log10_contrast`` times the mean of the
            pore tensor's diagonal).
        conductivities: ``(pore, solid)`` conductivities (numbers, ``k``
            numbers or ``k x k``) when the contrast is not an input.
        discretization, cg_tol: solver options (:class:`ConductivitySolver`).
        cost_per_voxel: cost units per voxel.
    """

    def __init__(
        self,
        microstructure: Any = "overlapping",
        levels: Sequence | int = (32,),
        *,
        dim: int = 3,
        micro_params: Mapping[str, tuple[float, float]] | None = None,
        conductivities: Sequence = (1.0, 0.1),
        discretization: str = "staggered",
        cg_tol: float = 1e-6,
        cost_per_voxel: float = 1e-6,
    ):
        if micro_params is None:
            micro_params = {"porosity": (0.3, 0.8), "log10_contrast": (-2.0, 2.0)}
        super().__init__(microstructure, levels, dim, micro_params, cost_per_voxel)
        self.conductivities = tuple(conductivities)
        if len(self.conductivities) != 2:
            raise InvalidInput(f"conductivities must be (pore, solid), got {conductivities!r}")
        for name, c in zip(("pore", "solid"), self.conductivities, strict=True):
            phase_tensor(c, self.k, f"{name} conductivity")
        if discretization not in ("staggered", "spectral"):
            raise InvalidInput(f"discretization must be 'staggered' or 'spectral', got {discretization!r}")
        if not (is_real(cg_tol) and 0 < cg_tol < 1):
            raise InvalidInput(f"cg_tol must lie in (0, 1), got {cg_tol!r}")
        self.discretization, self.cg_tol = discretization, float(cg_tol)
        self.output_names = _names("K", self.k)

    def _extra_inputs(self) -> tuple[str, ...]:
        return ("log10_contrast",)

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        grid = self.levels[fidelity]
        solid = self._solid(self._micro_at(x), grid)
        pore, sol = self.conductivities
        if "log10_contrast" in self.input_names:
            sol = (
                float(torch.diagonal(phase_tensor(pore, self.k)).mean())
                * 10.0 ** x[self.input_names.index("log10_contrast")].item()
            )
        res = ConductivitySolver(
            solid.astype(np.int64),
            [pore, sol],
            discretization=self.discretization,
            cg_tol=self.cg_tol,
        ).solve()
        return PointResult(
            y=tensor_components(res.tensor),
            metadata={
                "iterations": res.iterations,
                "porosity": float(1.0 - solid.mean()),
                "grid": list(grid),
            },
        )


class PermeabilityOracle(_VoxelOracle):
    """Darcy permeability (m²) of a porous microstructure.

    Args:
        microstructure: as for :class:`ConductivityOracle`.
        levels: per fidelity, cheapest first: grid sizes and/or
            ``"kozeny-carman"`` (default ``("kozeny-carman", 16, 32)``).
        dim: 2 or 3.
        micro_params: ``{field: (low, high)}`` microstructure inputs (default
            ``porosity`` in ``(0.35, 0.8)``, ``radius_fraction`` in ``(0.06, 0.15)``).
        cell_size: edge of the periodic cell in m (voxel size = cell / grid).
        tol, wall: solver options (:class:`StokesSolver`).
        target_log10_k: when given, a last output ``misfit = (log10_k -
            target)^2`` for inverse design (the microstructures whose mean
            permeability is ``10^target`` m²).
        cost_per_voxel: cost units per voxel.
        closed_form_cost: cost units of a Kozeny-Carman point.
    """

    level_names = ("kozeny-carman",)

    def __init__(
        self,
        microstructure: Any = "overlapping",
        levels: Sequence | int = ("kozeny-carman", 16, 32),
        *,
        dim: int = 3,
        micro_params: Mapping[str, tuple[float, float]] | None = None,
        cell_size: float = 1e-4,
        tol: float = 1e-5,
        wall: str = "half",
        target_log10_k: float | None = None,
        cost_per_voxel: float = 1e-6,
        closed_form_cost: float = 1e-4,
    ):
        if micro_params is None:
            micro_params = {"porosity": (0.35, 0.8), "radius_fraction": (0.06, 0.15)}
        super().__init__(
            microstructure, levels, dim, micro_params, cost_per_voxel, closed_form_cost
        )
        if not (is_finite_real(cell_size) and cell_size > 0):
            raise InvalidInput(f"cell_size must be a positive finite length in m, got {cell_size!r}")
        if not (is_real(tol) and 0 < tol < 1):
            raise InvalidInput(f"tol must lie in (0, 1), got {tol!r}")
        if wall not in ("half", "any"):
            raise InvalidInput(f"wall must be one of ('half', 'any'), got {wall!r}")
        self.cell_size, self.tol, self.wall = float(cell_size), tol, wall
        if "kozeny-carman" in self.levels:
            m = self.microstructure
            if not (hasattr(m, "porosity") and hasattr(m, "radius_fraction")):
                raise InvalidInput(
                    f"the kozeny-carman level needs a microstructure with porosity and radius_fraction, got {m!r}"
                )
        if target_log10_k is not None and not (
            is_real(target_log10_k) and math.isfinite(target_log10_k)
        ):
            raise InvalidInput(f"target_log10_k must be a finite number, got {target_log10_k!r}")
        self.target = None if target_log10_k is None else float(target_log10_k)
        self.output_names = ("log10_k", *_names("k", self.k)) + (
            ("misfit",) if self.target is not None else ()
        )

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        level = self.levels[fidelity]
        micro = self._micro_at(x)
        if level == "kozeny-carman":
            kc = float(kozeny_carman(micro.porosity, 2.0 * micro.radius_fraction * self.cell_size))
            T = kc * torch.eye(self.k, dtype=DTYPE)
            meta: dict[str, Any] = {"level": "kozeny-carman"}
        else:
            solid = self._solid(micro, level)
            h = self.cell_size / max(level)
            res = StokesSolver(solid, h, tol=self.tol, wall=self.wall).solve()
            T = res.tensor
            meta = {
                "iterations": res.iterations,
                "porosity": res.porosity,
                "grid": list(level),
                "asymmetry": res.asymmetry,
            }
        kmean = float(torch.diagonal(T).mean())
        if not kmean > 0:
            raise InvalidInput(f"permeability is {kmean:.3g} m²: no flow path")
        y = torch.cat([torch.tensor([math.log10(kmean)], dtype=DTYPE), tensor_components(T)])
        if self.target is not None:
            y = torch.cat([y, torch.tensor([(math.log10(kmean) - self.target) ** 2], dtype=DTYPE)])
        return PointResult(y=y, metadata=meta)
