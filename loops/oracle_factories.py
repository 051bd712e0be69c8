"""Config-friendly builders of the physics oracles used by the experiments.

TOML holds plain numbers and tables, not law objects, so these functions turn
``{name = "rve", phases = [{law = "neo_hookean", E = 1, nu = 0.3}, ...],
microstructure = {kind = "inclusion", radius_fraction = 0.25}, grid = 15}``
into an :class:`oracles.rve.oracle.RVEOracle`, and wrap it into the derived
oracles of experiments (b) and (c).
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.exceptions import InvalidInput


def rve(**settings: Any):
    """An :class:`RVEOracle` from plain config values, checked by
    :class:`loops.oracle_settings.RVESettings` (see the module docstring)."""
    from loops.oracle_settings import RVESettings, format_errors

    try:
        cfg = RVESettings.model_validate(settings)
    except ValidationError as e:
        raise InvalidInput("; ".join(format_errors(e, RVESettings, settings))) from None
    return cfg.build()


class StiffnessToDensity(Oracle):
    """Directional stiffness per density of a 2D two-phase microstructure.

    Inputs: the microstructure parameters ``micro_params`` (e.g. fibre
    ``volume_fraction``, ``radius_fraction``) and the loading angle
    ``theta`` (rad). A uniaxial strain ``eps0 n (x) n`` with
    ``n = (cos theta, sin theta)`` is applied to the RVE; the stiffness along
    ``n`` is ``E_n = n . sigma . n / eps0`` and the density the voxel average of
    ``densities``. Outputs ``("stiffness_per_density", "stiffness", "density")``.

    Args:
        phases, microstructure, grid, micro_params: as :func:`rve` (small-strain laws).
        densities: density of each phase.
        eps0: strain amplitude.
        theta_bounds: range of the angle.
    """

    output_names = ("stiffness_per_density", "stiffness", "density")

    def __init__(self, phases, microstructure, micro_params, densities=(1.0, 2.5), grid: int = 15,
                 eps0: float = 1e-3, theta_bounds=(0.0, math.pi / 2), **options: Any):
        self.spec = dict(phases=phases, microstructure=microstructure, grid=grid, micro_params=micro_params,
                         **options)
        self._rve = rve(**self.spec)
        self.densities = tuple(float(r) for r in densities)
        self.eps0 = float(eps0)
        names = list(micro_params)
        self.input_names = (*names, "theta")
        lo = [float(micro_params[n][0]) for n in names] + [float(theta_bounds[0])]
        hi = [float(micro_params[n][1]) for n in names] + [float(theta_bounds[1])]
        self.bounds = make_bounds(lo, hi)
        self.cost_model = self._rve.cost_model

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        micro, theta = x[:-1], float(x[-1])
        c, s = math.cos(theta), math.sin(theta)
        eps = self.eps0 * torch.tensor([c * c, s * s, c * s], dtype=DTYPE)
        res = self._rve.evaluate(torch.cat([eps, micro]).unsqueeze(0))
        if res.failed[0]:
            raise InvalidInput(res.reasons[0] or "RVE failed")
        sig = res.Y[0]
        E = float(c * c * sig[0] + s * s * sig[1] + 2 * c * s * sig[2]) / self.eps0
        pm = self._phase_map(micro)
        fr = [float((pm == k).mean()) for k in range(len(self.densities))]
        rho = sum(f * r for f, r in zip(fr, self.densities, strict=True))
        return PointResult(y=torch.tensor([E / rho, E, rho], dtype=DTYPE),
                           metadata={"phase_fractions": fr})

    def _phase_map(self, micro: Tensor):
        import dataclasses

        ms = self._rve.microstructure
        repl = {}
        for name, v in zip(self._rve.micro_params, micro.tolist(), strict=True):
            f = next(f for f in dataclasses.fields(ms) if f.name == name)
            repl[name] = int(round(v)) if f.type in ("int", int) else v
        return dataclasses.replace(ms, **repl).phase_map(self._rve.grid)


class TwoGridStiffness(Oracle):
    """Two fidelities of the same homogenization: a coarse and a fine FFT grid.

    Inputs: ``micro_params`` of the microstructure. Outputs: the effective
    stiffness ``C1111`` (stress ``sig11`` per unit ``eps11`` at uniaxial
    strain) and ``misfit = (C1111 - target)^2`` (inverse design: which
    microstructure gives the target stiffness). Level 0 uses ``grids[0]`` voxels per side, level 1 ``grids[1]``;
    the cost of a level is its number of voxels (relative to the coarse grid),
    which is how the FFT solver's work scales.
    """

    output_names = ("C1111", "misfit")
    num_fidelities = 2

    def __init__(self, phases, microstructure, micro_params, grids=(9, 31), eps0: float = 1e-3,
                 target: float = 2.0, **options: Any):
        self.target = float(target)
        self._levels = [rve(phases=phases, microstructure=microstructure, grid=g, micro_params=micro_params,
                            **options) for g in grids]
        self.grids = tuple(int(g) for g in grids)
        self.eps0 = float(eps0)
        names = list(micro_params)
        self.input_names = tuple(names)
        self.bounds = make_bounds([float(micro_params[n][0]) for n in names],
                                  [float(micro_params[n][1]) for n in names])
        self.cost_model = CostModel(tuple((g / self.grids[0]) ** 2 for g in self.grids))

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        t0 = time.perf_counter()
        eps = torch.tensor([self.eps0, 0.0, 0.0], dtype=DTYPE)
        res = self._levels[fidelity].evaluate(torch.cat([eps, x]).unsqueeze(0))
        if res.failed[0]:
            raise InvalidInput(res.reasons[0] or "RVE failed")
        c = float(res.Y[0, 0]) / self.eps0
        return PointResult(y=torch.tensor([c, (c - self.target) ** 2], dtype=DTYPE),
                           metadata={"solve_time": time.perf_counter() - t0})
