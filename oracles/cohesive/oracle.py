r"""From atomistic outputs to cohesive-law parameters and fracture toughness.

:class:`CohesiveOracle` maps a surface energy ``gamma`` (J/m²), a peak
(decohesion) traction ``sigma_max`` (GPa) and cubic elastic constants
``C11, C12, C44`` (GPa) — the outputs of the atomistic oracles, or user
values — to

* the fracture energy ``Gamma = 2 gamma`` (two surfaces are created) and the
  parameters of a cohesive law (:mod:`oracles.cohesive.laws`), with
  separations in nm (in GPa and nm the law's energies are in J/m²);
* isotropic moduli ``E, nu`` of the polycrystal from the **Voigt–Reuss–Hill**
  average of the cubic constants (Hill 1952), :func:`vrh_cubic`;
* the Griffith–Irwin toughness ``K_Ic = sqrt(E' Gamma)`` in MPa·sqrt(m), with
  ``E' = E / (1 - nu^2)`` in plane strain (default) or ``E' = E`` in plane stress.

R. Hill (1952), "The elastic behaviour of a crystalline aggregate",
Proc. Phys. Soc. A 65, 349-354.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.cohesive.laws import LAWS, CohesiveLaw, make_law
from oracles.exceptions import InvalidInput

__all__ = ["VRH", "vrh_cubic", "k_ic", "CohesiveOracle"]

#: sqrt(GPa * J/m^2) in MPa sqrt(m): sqrt(1e9) Pa sqrt(m) = 1e9**0.5 / 1e6 MPa sqrt(m)
_KIC_UNIT = math.sqrt(1e9) / 1e6


class VRH(NamedTuple):
    """Voigt, Reuss and Hill moduli of a cubic crystal aggregate (same units as the C_ij)."""

    K_V: float
    K_R: float
    G_V: float
    G_R: float
    K: float
    G: float
    E: float
    nu: float


def vrh_cubic(C11: float, C12: float, C44: float) -> VRH:
    """Voigt–Reuss–Hill isotropic average of cubic elastic constants.

    ``K_V = K_R = (C11 + 2 C12)/3``, ``G_V = (C11 - C12 + 3 C44)/5``,
    ``G_R = 5 (C11 - C12) C44 / (4 C44 + 3 (C11 - C12))``; Hill takes the
    arithmetic means, then ``E = 9KG/(3K+G)``, ``nu = (3K-2G)/(2(3K+G))``.

    Raises:
        InvalidInput: when the constants violate cubic Born stability
            (``C44 > 0``, ``C11 > C12``, ``C11 + 2 C12 > 0``).
    """
    try:
        C11, C12, C44 = float(C11), float(C12), float(C44)
    except (TypeError, ValueError):
        raise InvalidInput(f"elastic constants must be numbers in GPa, got C11={C11!r}, C12={C12!r}, C44={C44!r}") from None
    if not all(math.isfinite(c) for c in (C11, C12, C44)):
        raise InvalidInput(f"elastic constants must be finite, got C11={C11}, C12={C12}, C44={C44}")
    if not (C44 > 0 and C11 - C12 > 0 and C11 + 2 * C12 > 0):
        raise InvalidInput(
            f"cubic elastic constants C11={C11:.6g}, C12={C12:.6g}, C44={C44:.6g} GPa are not "
            f"mechanically stable; expected C44 > 0, C11 > C12 and C11 + 2 C12 > 0"
        )
    K = (C11 + 2 * C12) / 3
    Cp = C11 - C12
    G_V = (Cp + 3 * C44) / 5
    G_R = 5 * Cp * C44 / (4 * C44 + 3 * Cp)
    G = 0.5 * (G_V + G_R)
    E = 9 * K * G / (3 * K + G)
    nu = (3 * K - 2 * G) / (2 * (3 * K + G))
    return VRH(K, K, G_V, G_R, K, G, E, nu)


def k_ic(E_prime_GPa: float, Gamma_J_m2: float) -> float:
    """``K_Ic = sqrt(E' Gamma)`` in MPa·sqrt(m) from ``E'`` in GPa and ``Gamma`` in J/m²."""
    for name, v in (("E_prime_GPa", E_prime_GPa), ("Gamma_J_m2", Gamma_J_m2)):
        try:
            ok = not isinstance(v, (bool, str)) and math.isfinite(float(v)) and float(v) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InvalidInput(f"k_ic: {name} must be a finite number >= 0, got {v!r}")
    return math.sqrt(E_prime_GPa * Gamma_J_m2) * _KIC_UNIT


class CohesiveOracle(Oracle):
    """Cohesive-law parameters and ``K_Ic`` from surface energy, strength and elastic constants.

    Inputs (``n x 5``): ``gamma`` [J/m²], ``sigma_max`` [GPa], ``C11, C12, C44`` [GPa].

    Outputs (``n x 7``):

    * ``Gamma`` [J/m²] = ``2 gamma``, the mode-I fracture energy;
    * ``delta_c`` [nm], the law's characteristic opening
      (:attr:`CohesiveLaw.critical_opening`: final opening ``2 Gamma/sigma_max``
      for bilinear and PPR's ``delta_n``, ``Gamma/(e sigma_max)`` for exponential);
    * ``delta_peak`` [nm], the opening at peak traction;
    * ``E`` [GPa], ``nu``: Voigt–Reuss–Hill isotropic moduli;
    * ``E_prime`` [GPa]: ``E/(1-nu^2)`` (plane strain) or ``E`` (plane stress);
    * ``K_Ic`` [MPa·sqrt(m)] = ``sqrt(E' Gamma)``.

    Unstable elastic constants (inside the box but violating Born stability)
    make the point fail with its reason.

    Args:
        law: ``"bilinear"``, ``"exponential"`` or ``"ppr"``.
        plane: ``"strain"`` or ``"stress"`` for ``E'``.
        shear_energy_ratio: ``Gamma_t / Gamma_n`` (exponential and PPR only).
        shear_strength_ratio: ``tau_max / sigma_max``.
        law_options: extra constructor arguments of the law (``peak_ratio``,
            ``r``, ``alpha``, ``beta``, ``lambda_n``, ``lambda_t``).
        bounds: ``{input name: (lo, hi)}`` overriding the default box.
        cost: cost per point (default 1, negligible next to the atomistic oracles).
    """

    input_names = ("gamma", "sigma_max", "C11", "C12", "C44")
    output_names = ("Gamma", "delta_c", "delta_peak", "E", "nu", "E_prime", "K_Ic")
    units = {
        "gamma": "J/m^2", "sigma_max": "GPa", "C11": "GPa", "C12": "GPa", "C44": "GPa",
        "Gamma": "J/m^2", "delta_c": "nm", "delta_peak": "nm", "E": "GPa", "nu": "1",
        "E_prime": "GPa", "K_Ic": "MPa m^0.5",
    }  # fmt: skip
    default_bounds = {
        "gamma": (0.05, 10.0),
        "sigma_max": (0.1, 100.0),
        "C11": (1.0, 1000.0),
        "C12": (0.0, 800.0),
        "C44": (0.5, 800.0),
    }

    def __init__(
        self,
        law: str = "bilinear",
        plane: str = "strain",
        shear_energy_ratio: float = 1.0,
        shear_strength_ratio: float = 1.0,
        law_options: Mapping[str, Any] | None = None,
        bounds: Mapping[str, tuple[float, float]] | None = None,
        cost: float = 1.0,
    ):
        if law not in LAWS:
            raise InvalidInput(f"law must be one of {sorted(LAWS)}, got {law!r}")
        if plane not in ("strain", "stress"):
            raise InvalidInput(f"plane must be 'strain' or 'stress', got {plane!r}")
        for nm, v in (("shear_energy_ratio", shear_energy_ratio), ("shear_strength_ratio", shear_strength_ratio)):
            ok = isinstance(v, numbers.Real) and not isinstance(v, bool)  # numpy scalars included
            if not (ok and math.isfinite(v) and v > 0):
                raise InvalidInput(f"{nm} must be a positive number, got {v!r}")
        if law == "bilinear" and shear_energy_ratio != 1.0:
            raise InvalidInput(
                f"the bilinear law has one Gamma for all modes; shear_energy_ratio must be 1, got {shear_energy_ratio}"
            )
        self.law = law
        self.plane = plane
        self.shear_energy_ratio = float(shear_energy_ratio)
        self.shear_strength_ratio = float(shear_strength_ratio)
        self.law_options = dict(law_options or {})
        box = dict(self.default_bounds)
        for k, v in (bounds or {}).items():
            if k not in box:
                raise InvalidInput(f"unknown input {k!r} in bounds; inputs are {list(self.input_names)}")
            try:
                lo, hi = v
                box[k] = (float(lo), float(hi))
            except (TypeError, ValueError):
                raise InvalidInput(f"bounds[{k!r}] must be a (low, high) pair of numbers, got {v!r}") from None
        self.bounds = make_bounds([box[k][0] for k in self.input_names], [box[k][1] for k in self.input_names])
        self.cost_model = CostModel((cost,))
        # fail early on bad law options rather than at every point
        try:
            self.make_law(self.bounds.mean(0))
        except TypeError as e:
            raise InvalidInput(f"law_options {sorted(self.law_options)} do not fit law {law!r}: {e}") from None

    def make_law(self, x: Tensor) -> CohesiveLaw:
        """The cohesive law (tractions in GPa, separations in nm) at one input point ``d``."""
        gamma, sigma = float(x[0]), float(x[1])
        if not (math.isfinite(gamma) and gamma > 0):
            raise InvalidInput(f"gamma (surface energy, J/m^2) must be a positive number, got {gamma!r}")
        Gamma = 2.0 * gamma
        Gamma_t = None if self.law == "bilinear" else Gamma * self.shear_energy_ratio
        return make_law(
            self.law, Gamma, sigma, Gamma_t, sigma * self.shear_strength_ratio, **self.law_options
        )

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        law = self.make_law(x)
        v = vrh_cubic(float(x[2]), float(x[3]), float(x[4]))
        E_prime = v.E / (1 - v.nu**2) if self.plane == "strain" else v.E
        Gamma = law.fracture_energy[0]
        y = [Gamma, law.critical_opening, law.peak_opening, v.E, v.nu, E_prime, k_ic(E_prime, Gamma)]
        meta = {"law": self.law, "plane": self.plane, "law_parameters": law.params(), "vrh": v._asdict()}
        return PointResult(y=torch.tensor(y, dtype=DTYPE), metadata=meta)

    def __repr__(self) -> str:
        return f"CohesiveOracle(law={self.law!r}, plane={self.plane!r})"
