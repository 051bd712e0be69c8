r"""Static (0 K) cubic crystals through any ASE calculator: building, straining,
relaxing, stress, the zero-pressure lattice parameter and Cauchy–Born elastic
constants.

The lattice parameter is found where the pressure vanishes (a root of
:math:`p(a) = -\mathrm{tr}\,\sigma/3`, which is the energy minimum since
:math:`p = -dE/dV`); the stress–strain coefficients
:math:`C_{ij} = \partial\sigma_i/\partial\varepsilon_j` come from central
differences of the stress under small homogeneous strains, with the internal
coordinates relaxed under each strain when the cell has more than one atom (a
lattice with a basis).

Both the static elastic-constant oracle (:mod:`oracles.atomistic.elastic`)
and the finite-temperature protocol (:mod:`oracles.atomistic.md`) build on
these helpers; neither imports the other's module for them.

Conventions: Voigt order ``xx, yy, zz, yz, xz, xy`` with engineering shear
strains (``eps_4 = 2 eps_yz``), ASE's stress sign (tension positive), GPa for
elastic constants, A for lengths, eV/A^3 for raw stresses. A strain ``eps``
deforms the reference cell by ``F = I + eps`` (symmetric).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from ase import Atoms
from ase.build import bulk
from ase.calculators.calculator import PropertyNotImplementedError
from ase.data import atomic_numbers, covalent_radii, reference_states
from ase.optimize import BFGS
from ase.units import GPa
from scipy.optimize import brentq

from oracles.atomistic.engines import EngineSpec, attach_calculator
from oracles.exceptions import (
    CalculationFailed,
    InvalidInput,
    NotConverged,
    is_finite_real,
    is_real,
)

__all__ = [
    "CUBIC_STRUCTURES",
    "born_stability",
    "build_crystal",
    "calc_call",
    "check_element",
    "check_not_crushed",
    "cubic_constants",
    "equilibrium_lattice_parameter",
    "pressure",
    "reference_lattice_parameter",
    "relax_positions",
    "static_elastic_constants",
    "strained",
    "stress_strain_matrix",
    "stress_voigt",
    "voigt_to_tensor",
]

#: the cubic structures ASE's ``bulk`` builds
CUBIC_STRUCTURES = ("fcc", "bcc", "sc", "diamond")
#: nearest-neighbour distance in lattice parameters
NEAREST_NEIGHBOUR = {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "sc": 1.0, "diamond": math.sqrt(3) / 4}
#: a lattice guess whose neighbours sit closer than this fraction of twice the covalent
#: radius, with the engine reporting tension there, is refused at once
MIN_NEIGHBOUR_FRACTION = 0.5


def check_element(element: str) -> str:
    """``element`` if it is a chemical symbol, else :class:`InvalidInput`."""
    if not isinstance(element, str) or element not in atomic_numbers or element == "X":
        raise InvalidInput(f"element must be a chemical symbol such as 'Cu', got {element!r}")
    return element


def check_not_crushed(element: str, structure: str, a: float, name: str = "a") -> float:
    """``a`` (A), or a one-line :class:`InvalidInput` when its nearest neighbours sit closer
    than ``MIN_NEIGHBOUR_FRACTION`` x twice the covalent radius: a length in the wrong unit
    (nm for A) or a typo, where an engine returns a huge pressure, overruns its neighbour list
    or runs for minutes."""
    nn = a * NEAREST_NEIGHBOUR[structure]
    least = 2 * covalent_radii[atomic_numbers[element]] * MIN_NEIGHBOUR_FRACTION
    if nn < least:
        ref = reference_lattice_parameter(element, structure)
        near = f" (ASE tabulates {ref:.4g} A)" if ref is not None else ""
        raise InvalidInput(
            f"{name} = {a:g} A puts {structure} {element} neighbours {nn:.3g} A apart, under {least:.3g} A "
            f"({MIN_NEIGHBOUR_FRACTION:g} x twice the covalent radius); expected a lattice parameter in A{near}"
        )
    return a


def reference_lattice_parameter(element: str, structure: str) -> float | None:
    """ASE's tabulated cubic lattice parameter when its structure matches, else None."""
    check_element(element)
    ref = reference_states[atomic_numbers[element]]
    if ref is not None and ref.get("symmetry") == structure and "a" in ref:
        return float(ref["a"])
    return None


def build_crystal(element: str, structure: str = "fcc", a: float = 1.0, cubic: bool = False) -> Atoms:
    """A periodic cubic crystal: the primitive cell, or the conventional cubic one.

    Raises:
        InvalidInput: unknown element, a structure that is not cubic, ``a <= 0``.
    """
    check_element(element)
    if structure not in CUBIC_STRUCTURES:
        raise InvalidInput(f"structure must be one of {CUBIC_STRUCTURES} (cubic), got {structure!r}")
    if not (math.isfinite(a) and a > 0):
        raise InvalidInput(f"lattice parameter must be positive and finite, got {a}")
    return bulk(element, structure, a=a, cubic=cubic)


def voigt_to_tensor(eps: Sequence[float]) -> np.ndarray:
    """``6`` Voigt strains (engineering shears) -> symmetric ``3 x 3`` tensor."""
    e = np.asarray(eps, dtype=float)
    if e.shape != (6,):
        raise InvalidInput(f"a Voigt strain has 6 components, got shape {e.shape}")
    return np.array(
        [[e[0], e[5] / 2, e[4] / 2], [e[5] / 2, e[1], e[3] / 2], [e[4] / 2, e[3] / 2, e[2]]]
    )


def strained(atoms: Atoms, eps: Sequence[float], ref_cell: np.ndarray | None = None) -> Atoms:
    """Deform ``atoms`` in place by ``F = I + eps`` (Voigt ``eps``) of ``ref_cell``.

    Atoms move affinely with the cell (scaled positions kept).
    """
    cell = atoms.cell.array.copy() if ref_cell is None else np.asarray(ref_cell)
    F = np.eye(3) + voigt_to_tensor(eps)
    atoms.set_cell(cell @ F.T, scale_atoms=True)
    return atoms


def _one_line(e: BaseException) -> str:
    """An engine's message on one line (asap3's span several)."""
    return " ".join(str(e).split())


def calc_call(fn, what: str):
    """``fn()`` with engine errors turned into :class:`InvalidInput` (the engine
    lacks parameters for the element) or :class:`CalculationFailed`, and
    non-finite results refused."""
    try:
        out = fn()
    except PropertyNotImplementedError as e:
        # a calculator without this property (energy-only or energy-and-forces models)
        raise InvalidInput(
            f"the engine cannot {what}: its calculator does not implement it ({_one_line(e)}); expected a "
            "calculator whose implemented_properties include 'stress' (the elastic constants and the "
            "zero-pressure lattice parameter need the stress)"
            if "stress" in what else f"the engine cannot {what}: {type(e).__name__}: {_one_line(e)}"
        ) from e
    except (NotImplementedError, KeyError) as e:
        # ASE's EMT raises these for elements it has no parameters for
        raise InvalidInput(f"the engine cannot {what}: {type(e).__name__}: {_one_line(e)}") from e
    except Exception as e:  # an engine failure for this configuration
        raise CalculationFailed(f"the engine failed to {what}: {type(e).__name__}: {_one_line(e)}") from e
    if not np.all(np.isfinite(out)):
        raise CalculationFailed(f"the engine returned non-finite values when asked to {what}")
    return out


def relax_positions(atoms: Atoms, fmax: float = 1e-6, steps: int = 500) -> int:
    """Relax atomic positions at fixed cell (internal relaxation); returns steps taken.

    A one-atom cell has no internal coordinates and is left alone.
    """
    if len(atoms) < 2:
        return 0
    opt = BFGS(atoms, logfile=None)
    try:
        converged = opt.run(fmax=fmax, steps=steps)
    except Exception as e:
        raise CalculationFailed(f"internal relaxation failed: {type(e).__name__}: {e}") from e
    if not converged:
        f = float(np.abs(atoms.get_forces()).max())
        raise NotConverged(
            f"internal relaxation did not reach fmax={fmax} eV/A in {steps} steps (max force {f:.3g})",
            iterations=steps,
            residual=f,
        )
    return opt.nsteps


def stress_voigt(atoms: Atoms, relax: bool = True, fmax: float = 1e-6) -> np.ndarray:
    """``6`` stress of ``atoms`` in eV/A^3 after internal relaxation."""
    if relax:
        relax_positions(atoms, fmax=fmax)
    return calc_call(lambda: atoms.get_stress(voigt=True), "compute the stress")


def pressure(atoms: Atoms, relax: bool = True, fmax: float = 1e-6) -> float:
    """Pressure ``-tr(sigma)/3`` in eV/A^3 (positive when compressed)."""
    return -float(np.mean(stress_voigt(atoms, relax, fmax)[:3]))


def equilibrium_lattice_parameter(
    element: str,
    structure: str = "fcc",
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    a_guess: float | None = None,
    xtol: float = 1e-13,
    fmax: float = 1e-6,
) -> float:
    """Lattice parameter (A) of the static crystal at zero pressure.

    The root of ``p(a)`` is bracketed by stepping outward from ``a_guess`` (ASE's
    tabulated value when None) and refined with Brent's method; at the root
    ``dE/dV = -p = 0``, the energy minimum along the volume.

    Raises:
        InvalidInput: no guess and no tabulated lattice parameter.
        CalculationFailed: no pressure zero near the guess (no stable lattice).
    """
    check_element(element)
    if structure not in CUBIC_STRUCTURES:
        raise InvalidInput(f"structure must be one of {CUBIC_STRUCTURES} (cubic), got {structure!r}")
    tabulated = reference_lattice_parameter(element, structure)
    if a_guess is None:
        a_guess = tabulated
        if a_guess is None:
            raise InvalidInput(
                f"no tabulated {structure} lattice parameter for {element}; pass a_guess (A)"
            )
    if not is_real(a_guess):
        raise InvalidInput(f"a_guess must be a lattice parameter in A (a number), got {a_guess!r}")
    atoms = build_crystal(element, structure, a_guess)
    attach_calculator(atoms, engine, **(engine_params or {}))
    cell1 = atoms.cell.array / a_guess

    def p_of(a: float) -> float:
        atoms.set_cell(cell1 * a, scale_atoms=True)
        return pressure(atoms, relax=True, fmax=fmax)

    expected = (f"expected a guess near the tabulated {tabulated:.4g} A" if tabulated is not None
                else "expected a guess near the engine's lattice parameter")

    def p_search(a: float) -> float:
        # an engine failure while bracketing the zero: no lattice found from this guess
        try:
            return p_of(a)
        except CalculationFailed as e:
            raise CalculationFailed(
                f"no zero-pressure {structure} {element} lattice found from a_guess = {a_guess:g} A: {e}; {expected}"
            ) from e

    # compressed (p > 0) at a_lo, stretched (p < 0) at a_hi
    p0 = p_search(a_guess)
    nn = a_guess * NEAREST_NEIGHBOUR[structure]
    if p0 <= 0 and nn < 2 * covalent_radii[atomic_numbers[element]] * MIN_NEIGHBOUR_FRACTION:
        # tension at a crushed lattice: the engine is outside its range and
        # compressing further never finds a zero (and grows its neighbour lists)
        raise CalculationFailed(
            f"no zero-pressure {structure} {element} lattice found from a_guess = {a_guess:g} A: neighbours "
            f"{nn:.3g} A apart (under {MIN_NEIGHBOUR_FRACTION:g} x twice the covalent radius) yet pressure "
            f"{p0:.3g} eV/A^3 <= 0; {expected}"
        )
    step = 0.02 * a_guess
    lo = hi = a_guess
    plo = phi = p0
    searched = [a_guess, a_guess]
    for _ in range(40):
        if plo > 0 > phi:
            break
        if p0 <= 0:
            lo, plo = lo - step, p_search(lo - step)
            if plo <= 0:
                hi, phi = lo, plo
        else:
            hi, phi = hi + step, p_search(hi + step)
            if phi >= 0:
                lo, plo = hi, phi
        searched = [min(searched[0], lo), max(searched[1], hi)]
        if lo <= 0.3 * a_guess or hi >= 2.0 * a_guess:
            break
    if not (plo > 0 > phi):
        raise CalculationFailed(
            f"no zero-pressure {structure} {element} lattice found from a_guess = {a_guess:g} A "
            f"(searched {searched[0]:.4g} to {searched[1]:.4g} A, pressure {p0:.3g} eV/A^3 at a_guess); {expected}"
        )
    return float(brentq(p_of, lo, hi, xtol=xtol, rtol=4 * np.finfo(float).eps))


def stress_strain_matrix(
    atoms: Atoms, delta: float = 1e-4, relax: bool = True, fmax: float = 1e-6, stencil: int = 4
) -> np.ndarray:
    """``6 x 6`` stress–strain coefficients ``dsigma_i/deps_j`` (GPa) of ``atoms``.

    Central differences of the stress; ``stencil=4`` uses ``+-delta, +-2 delta``
    (error ``O(delta^4)``), ``stencil=2`` only ``+-delta`` (``O(delta^2)``).
    ``atoms`` (with its calculator) is restored to its cell and positions.
    """
    if stencil not in (2, 4):
        raise InvalidInput(f"stencil must be 2 or 4, got {stencil}")
    if not (0 < delta < 0.05):
        raise InvalidInput(f"finite-difference strain must be in (0, 0.05), got {delta}")
    cell0 = atoms.cell.array.copy()
    pos0 = atoms.get_scaled_positions().copy()
    C = np.zeros((6, 6))
    weights = {1: 0.5, 2: 0.0} if stencil == 2 else {1: 2.0 / 3.0, 2: -1.0 / 12.0}
    for j in range(6):
        col = np.zeros(6)
        for k, w in weights.items():
            if w == 0.0:
                continue
            for sign in (1, -1):
                e = np.zeros(6)
                e[j] = sign * k * delta
                atoms.set_scaled_positions(pos0)
                strained(atoms, e, cell0)
                col += sign * w * stress_voigt(atoms, relax, fmax)
        C[:, j] = col / delta / GPa
    atoms.set_cell(cell0, scale_atoms=False)
    atoms.set_scaled_positions(pos0)
    return C


def cubic_constants(C: np.ndarray) -> tuple[float, float, float]:
    """``(C11, C12, C44)`` averaged over the cubic-equivalent entries of ``C`` (``6 x 6``)."""
    C11 = float(np.mean([C[i, i] for i in range(3)]))
    C12 = float(np.mean([C[i, j] for i in range(3) for j in range(3) if i != j]))
    C44 = float(np.mean([C[i, i] for i in range(3, 6)]))
    return C11, C12, C44


def born_stability(C11: float, C12: float, C44: float) -> str | None:
    """None when the cubic Born criteria hold, else which one fails."""
    if C11 - C12 <= 0:
        return f"C11 - C12 = {C11 - C12:.4g} GPa <= 0 (tetragonal shear instability)"
    if C11 + 2 * C12 <= 0:
        return f"C11 + 2 C12 = {C11 + 2 * C12:.4g} GPa <= 0 (spinodal: no bulk stiffness)"
    if C44 <= 0:
        return f"C44 = {C44:.4g} GPa <= 0 (shear instability)"
    return None


def static_elastic_constants(
    element: str = "Cu",
    structure: str = "fcc",
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    a: float | None = None,
    hydrostatic_strain: float = 0.0,
    delta: float = 1e-4,
    cubic_cell: bool = False,
    fmax: float = 1e-6,
) -> dict[str, Any]:
    """Static (0 K) Cauchy–Born elastic constants of a cubic crystal.

    Args:
        a: the reference lattice parameter; None to find the zero-pressure one.
        hydrostatic_strain: the crystal is evaluated at ``a (1 + hydrostatic_strain)``;
            away from zero the result is the stress–strain coefficient under pressure.
        cubic_cell: use the conventional cubic cell instead of the primitive one.

    Returns:
        dict with ``C11, C12, C44, B`` (GPa), ``a0`` (zero-pressure) and ``a`` (A),
        ``pressure`` (GPa) and the full ``C`` (``6 x 6`` list).

    Raises:
        CalculationFailed: the strained crystal violates the Born criteria.
    """
    if not (is_finite_real(hydrostatic_strain) and hydrostatic_strain > -1):
        raise InvalidInput(f"hydrostatic_strain must be a finite strain > -1, got {hydrostatic_strain!r}")
    if a is not None and not (is_finite_real(a) and a > 0):
        raise InvalidInput(f"a must be a positive lattice parameter in A (or None for the zero-pressure one), got {a!r}")
    a0 = (
        equilibrium_lattice_parameter(element, structure, engine, engine_params)
        if a is None
        else float(a)
    )
    a_eff = a0 * (1.0 + hydrostatic_strain)
    atoms = build_crystal(element, structure, a_eff, cubic=cubic_cell)
    check_not_crushed(element, structure, a_eff, "a" if hydrostatic_strain == 0 else "a (1 + hydrostatic_strain)")
    attach_calculator(atoms, engine, **(engine_params or {}))
    p = pressure(atoms, relax=True, fmax=fmax) / GPa
    C = stress_strain_matrix(atoms, delta=delta, relax=True, fmax=fmax)
    C11, C12, C44 = cubic_constants(C)
    bad = born_stability(C11, C12, C44)
    if bad is not None:
        raise CalculationFailed(
            f"{element} {structure} at hydrostatic strain {hydrostatic_strain:+.4g} "
            f"(a = {a_eff:.4f} A) is mechanically unstable: {bad}"
        )
    return {
        "C11": C11,
        "C12": C12,
        "C44": C44,
        "B": (C11 + 2 * C12) / 3,
        "a0": a0,
        "a": a_eff,
        "pressure": p,
        "C": C.tolist(),
        "n_atoms": len(atoms),
    }
