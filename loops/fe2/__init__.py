"""FE²: finite-strain macro FE whose Gauss points ask a material provider.

* :mod:`loops.fe2.solver` -- :class:`MacroSolver`, total-Lagrangian plane-strain or 3D
  FE on scikit-fem with Newton–Raphson, load stepping and cut-back;
* :mod:`loops.fe2.providers` -- :class:`LawProvider` and :class:`NeoHookean`
  (the laws of :mod:`oracles.rve.laws`), :class:`OracleProvider` (the RVE
  oracle over an executor), :func:`load_material` (a deployed surrogate:
  directory or ``models:/...``);
* :mod:`loops.fe2.switch` -- :class:`AdaptiveSwitch` (surrogate or oracle per
  Gauss point, on-the-fly learning with a GP such as
  :class:`surrogates.gp.GPSurrogate`) and :func:`tolerance_for_reaction`;
* :mod:`loops.fe2.run` / :mod:`loops.fe2.cli` -- ``scalebridge fe2 CONFIG``.

Imports are lazy so ``import loops.fe2`` stays cheap.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "MacroSolver": "loops.fe2.solver",
    "DirichletBC": "loops.fe2.solver",
    "TractionBC": "loops.fe2.solver",
    "SolveResult": "loops.fe2.solver",
    "NeoHookean": "loops.fe2.providers",
    "OracleProvider": "loops.fe2.providers",
    "LawProvider": "loops.fe2.providers",
    "load_material": "loops.fe2.providers",
    "AdaptiveSwitch": "loops.fe2.switch",
    "tolerance_for_reaction": "loops.fe2.switch",
    "refit_updater": "loops.fe2.switch",
    "ConditionUpdater": "loops.fe2.switch",
    "sobol_gradients": "loops.fe2.providers",
    "plate_with_hole": "loops.fe2.mesh",
    "rectangle": "loops.fe2.mesh",
    "box": "loops.fe2.mesh",
    "load_mesh": "loops.fe2.mesh",
    "run_fe2": "loops.fe2.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'loops.fe2' has no attribute {name!r}")
