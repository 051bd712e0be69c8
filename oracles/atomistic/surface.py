r"""Surface energy and rigid decohesion of cubic crystals, with a UBER fit.

* :func:`surface_energy`: :math:`\gamma = (E_\mathrm{slab} - N e_\mathrm{bulk}) / 2A`
  for the ``(hkl)`` surface (cubic Miller indices), unrelaxed or with the slab
  positions relaxed.
* :func:`decohesion_curve`: a periodic ``(hkl)``-oriented crystal is cut at one
  plane and the two halves are pulled apart rigidly by ``delta`` along the
  surface normal; :math:`E(\delta) - E(0)` per area rises to the cleavage
  energy :math:`2\gamma` (unrelaxed).
* :func:`fit_uber`: the universal binding-energy relation of Rose, Smith and
  Ferrante, :math:`E(\delta) = 2\gamma\,[1 - (1 + \delta/l)\,e^{-\delta/l}]`
  (the binding energy :math:`-2\gamma(1+\delta/l)e^{-\delta/l}` shifted to
  vanish at contact), fitted by least squares; its traction
  :math:`dE/d\delta = 2\gamma\,\delta\,e^{-\delta/l}/l^2` peaks at
  :math:`\delta = l` with :math:`\sigma_\max = 2\gamma/(e\,l)`.

Units of results: γ and 2γ in J/m², l and δ in Å, σ_max in GPa.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import surface as ase_surface
from scipy.optimize import least_squares

from oracles.atomistic.crystal import (
    CUBIC_STRUCTURES,
    build_crystal,
    check_element,
    check_not_crushed,
    equilibrium_lattice_parameter,
    relax_positions,
)
from oracles.atomistic.crystal import calc_call as _calc_call
from oracles.atomistic.engines import EngineSpec, attach_calculator, engine_name, make_calculator
from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.exceptions import CalculationFailed, InvalidInput, is_finite_real

#: 1 eV/A^2 in J/m^2
EV_PER_A2_TO_J_PER_M2 = 16.021766339999996
#: (J/m^2) / A in GPa
J_PER_M2_PER_A_TO_GPA = 10.0
#: thinnest slab, in lattice parameters: the two surfaces of a thinner slab
#: interact through the potential (EMT's cut-off lies between the third and
#: fourth neighbour shells, 1.1-1.3 a), so gamma is wrong
MIN_SLAB_LATTICE_PARAMETERS = 2.0
#: openings must reach this many UBER lengths l, where the UBER energy is
#: 1 - 7 exp(-6) = 98 % of its plateau 2 gamma, for the fit to determine 2 gamma
UBER_PLATEAU_LENGTHS = 6.0
#: default slab thickness (A) when the lattice allows it
DEFAULT_MIN_THICKNESS = 12.0


def thinnest_slab(a: float, engine_params: dict[str, Any] | None = None) -> float:
    """Thinnest allowed slab (A): ``MIN_SLAB_LATTICE_PARAMETERS`` lattice
    parameters ``a`` (A), or the potential's cut-off ``rc`` if larger."""
    rc = float((engine_params or {}).get("rc", 0.0))
    return max(MIN_SLAB_LATTICE_PARAMETERS * a, rc)


def _length(name: str, value, least: float, too_small: str) -> float:
    """``value`` (A) as a float, or a one-line error naming ``name`` when it is not a number,
    not finite, or below ``least`` (``too_small`` says why that matters)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be a length in A, got {value!r}") from None
    if not math.isfinite(v) or v < least:
        raise InvalidInput(f"{name} = {value!r} A is {too_small}")
    return v


#: parameter names under which ASE calculators keep their cut-off radius (A): LennardJones
#: ``rc``, MorsePotential ``rcut2``, EAM ``cutoff``
CUTOFF_PARAMETERS = ("rc", "rcut2", "cutoff")


def cutoff_params(engine: EngineSpec, engine_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """``engine_params`` with ``rc`` set to the calculator's own cut-off radius (A) when
    ``engine`` is a factory or an instance whose calculator names one
    (:data:`CUTOFF_PARAMETERS`) and ``engine_params`` does not: the slab-thickness and
    vacuum checks then see a cut-off set inside a user's calculator. Named engines are
    left alone (``lj`` takes ``rc`` from ``engine_params``)."""
    params = dict(engine_params or {})
    if isinstance(engine, str) or params.get("rc") is not None:
        return params
    calc = make_calculator(engine, **params)
    found = dict(getattr(calc, "parameters", None) or {})
    for key in CUTOFF_PARAMETERS:
        v = found.get(key, getattr(calc, key, None))
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            params["rc"] = float(v)
            break
    return params


def check_min_thickness(min_thickness: float, a: float, engine_params: dict[str, Any] | None = None) -> float:
    """``min_thickness`` (A) as a float, or a one-line error when the slab
    would be thinner than :func:`thinnest_slab`."""
    thinnest = thinnest_slab(a, engine_params)
    rc = " or the cut-off rc" if (engine_params or {}).get("rc") else ""
    return _length("min_thickness", min_thickness, thinnest,
                   f"too thin: the two surfaces of the slab would interact; use at least {thinnest:.3g} A "
                   f"({MIN_SLAB_LATTICE_PARAMETERS:g} lattice parameters{rc})")


def check_vacuum(vacuum: float, a: float, engine_params: dict[str, Any] | None = None) -> float:
    """``vacuum`` (A) as a float, or a one-line error when the gap is too small for the
    slab to stop seeing its periodic images (the same length as :func:`thinnest_slab`)."""
    least = thinnest_slab(a, engine_params)
    return _length("vacuum", vacuum, least,
                   f"too small: the slab would interact with its periodic images; use at least {least:.3g} A")


def check_miller(miller: Sequence[int]) -> tuple[int, int, int]:
    """Miller indices as three integers in lowest terms: ``(2, 2, 2)`` is the
    ``(111)`` plane family (a common factor names the same planes; the cell
    built for it would not be a crystal cell)."""
    try:
        hkl = tuple(int(v) for v in miller)
        ok = len(hkl) == 3 and all(float(v) == int(v) for v in miller) and any(hkl)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise InvalidInput(f"miller indices must be three integers, not all zero, got {miller!r}")
    g = math.gcd(*hkl)
    return tuple(v // g for v in hkl)  # type: ignore[return-value]


def surface_normal(cell: np.ndarray) -> np.ndarray:
    """Unit normal to the first two cell vectors (the surface plane)."""
    n = np.cross(cell[0], cell[1])
    return n / np.linalg.norm(n)


#: most (hkl) cells stacked before their periodic repeat is a crystal cell
MAX_STACKING_PERIOD = 64


def stacking_period_candidates(hkl: Sequence[int]) -> list[int]:
    """The numbers of ASE ``(hkl)`` cells that can make a periodic crystal cell:
    the divisors of ``N = h^2 + k^2 + l^2`` (``hkl`` in lowest terms), smallest first.

    ASE's cell vectors ``c1, c2, c3`` are a unimodular integer basis of the
    conventional cubic lattice with ``c1, c2`` in the plane, so ``c3 . (h, k, l) = +-1``;
    its periodic cell replaces ``p c3`` by its normal projection, which differs from
    ``p c3`` by ``p / N (h, k, l)`` up to in-plane lattice vectors. That is a lattice
    translation of the cubic cell exactly when ``N`` divides ``p``, and the ``p`` whose
    projection is a translation of the crystal form a subgroup of the integers that
    contains ``N``: the stacking period divides ``N`` (fcc: ``N`` if odd, else ``N / 2``;
    (111): 3)."""
    n = sum(int(v) ** 2 for v in hkl)
    return [p for p in range(1, n + 1) if n % p == 0]


def _environments(atoms: Atoms, cutoff: float) -> list[np.ndarray]:
    """Each atom's sorted neighbour distances (A) within ``cutoff`` (periodic images included)."""
    from ase.neighborlist import neighbor_list

    i, d = neighbor_list("id", atoms, cutoff)
    return [np.sort(d[i == k]) for k in range(len(atoms))]


def _is_crystal_cell(atoms: Atoms, reference: list[np.ndarray], cutoff: float, tol: float) -> bool:
    """Whether every atom of the periodic ``atoms`` sees one of the bulk
    environments ``reference`` out to ``cutoff``."""
    for env in _environments(atoms, cutoff):
        if not any(env.shape == r.shape and np.allclose(env, r, rtol=0, atol=tol) for r in reference):
            return False
    return True


def oriented_crystal(
    element: str, structure: str, a: float, miller: Sequence[int], min_thickness: float = 12.0
) -> Atoms:
    """A periodic crystal cell whose first two cell vectors span the ``(hkl)`` plane.

    The third cell vector is normal to the plane. ASE's ``surface`` cell of
    one repeat is a crystal cell only when its normal height is a lattice
    translation; otherwise (e.g. fcc (111), whose planes stack ABC) the
    periodic repeat carries a stacking fault or overlapping atoms at the
    boundary. The number of repeats is therefore a multiple of the stacking
    period (the fewest repeats, among the divisors of ``h^2 + k^2 + l^2``
    (:func:`stacking_period_candidates`), whose periodic cell gives every atom a bulk
    environment out to 2.5 lattice parameters: 3 for fcc (111)), the fewest
    that make the cell at least ``min_thickness`` A thick normal to the
    plane. The cell boundary is then a cut between two atomic planes of a
    perfect crystal.
    """
    hkl = check_miller(miller)
    conv = build_crystal(element, structure, a, cubic=True)
    cutoff, tol = 2.5 * a, 1e-6 * a
    reference = []
    for env in _environments(conv, cutoff):
        if not any(env.shape == r.shape and np.allclose(env, r, rtol=0, atol=tol) for r in reference):
            reference.append(env)
    for period in stacking_period_candidates(hkl):
        if period > MAX_STACKING_PERIOD:
            raise InvalidInput(
                f"the {structure} ({' '.join(map(str, hkl))}) planes do not repeat within {MAX_STACKING_PERIOD} "
                f"cells (their period is at least {period} cells); use lower Miller indices"
            )
        cell = ase_surface(conv, hkl, period, vacuum=None, periodic=True)
        if _is_crystal_cell(cell, reference, cutoff, tol):
            break
    else:  # pragma: no cover - N cells always repeat (see stacking_period_candidates)
        raise RuntimeError(f"no stacking period found for the {structure} ({' '.join(map(str, hkl))}) planes")
    height = abs(cell.cell[2] @ surface_normal(cell.cell.array))
    repeats = max(1, math.ceil(min_thickness / height))
    atoms = ase_surface(conv, hkl, period * repeats, vacuum=None, periodic=True)
    atoms.pbc = True
    return atoms


def _open(atoms: Atoms, cell0: np.ndarray, delta: float) -> None:
    """Open a gap of ``delta`` A at the cell boundary, atoms fixed (rigid halves)."""
    cell = cell0.copy()
    cell[2] = cell0[2] + delta * surface_normal(cell0)
    atoms.set_cell(cell, scale_atoms=False)


def _area(cell: np.ndarray) -> float:
    return float(np.linalg.norm(np.cross(cell[0], cell[1])))


def _lattice_parameter(element: str, structure: str, a, engine, engine_params) -> float:
    """``a`` (A) checked (a positive number whose neighbours are not crushed together:
    not nm for A), or the static zero-pressure one for None."""
    if structure not in CUBIC_STRUCTURES:
        raise InvalidInput(f"structure must be one of {CUBIC_STRUCTURES} (cubic), got {structure!r}")
    if a is None:
        return equilibrium_lattice_parameter(element, structure, engine, engine_params)
    if not (is_finite_real(a) and a > 0):
        raise InvalidInput(f"a must be a positive lattice parameter in A (or None for the zero-pressure one), got {a!r}")
    return check_not_crushed(element, structure, float(a))


def _bulk_energy_per_atom(element: str, structure: str, a: float, engine, engine_params) -> float:
    b = build_crystal(element, structure, a)
    attach_calculator(b, engine, **(engine_params or {}))
    return _calc_call(b.get_potential_energy, "compute the bulk energy") / len(b)


def surface_energy(
    element: str = "Cu",
    miller: Sequence[int] = (1, 1, 1),
    structure: str = "fcc",
    a: float | None = None,
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    min_thickness: float = 12.0,
    vacuum: float = 15.0,
    relax: bool = False,
    fmax: float = 1e-4,
) -> dict[str, Any]:
    """Surface energy of ``(hkl)`` from a slab and the bulk at lattice parameter ``a``.

    Args:
        a: lattice parameter (A); None for the static zero-pressure one.
        min_thickness: slab thickness (A) at least; should exceed twice the
            engine's cut-off so the two surfaces do not see each other.
        vacuum: gap (A) between periodic images of the slab.
        relax: relax the slab positions (BFGS to ``fmax`` eV/A).

    Returns:
        dict with ``gamma`` (J/m²), ``gamma_eV_A2``, ``area`` (A²), ``n_atoms``,
        ``a`` and ``relax_steps``.
    """
    check_element(element)
    a = _lattice_parameter(element, structure, a, engine, engine_params)
    checked = cutoff_params(engine, engine_params)
    min_thickness = check_min_thickness(min_thickness, a, checked)
    vacuum = check_vacuum(vacuum, a, checked)
    e_bulk = _bulk_energy_per_atom(element, structure, a, engine, engine_params)
    slab = oriented_crystal(element, structure, a, miller, min_thickness)
    attach_calculator(slab, engine, **(engine_params or {}))
    _open(slab, slab.cell.array.copy(), vacuum)
    steps = relax_positions(slab, fmax=fmax, steps=2000) if relax else 0
    e_slab = _calc_call(slab.get_potential_energy, "compute the slab energy")
    A = _area(slab.cell.array)
    g = (e_slab - len(slab) * e_bulk) / (2 * A)
    return {
        "gamma": g * EV_PER_A2_TO_J_PER_M2,
        "gamma_eV_A2": g,
        "area": A,
        "n_atoms": len(slab),
        "a": a,
        "miller": list(check_miller(miller)),
        "relaxed": bool(relax),
        "relax_steps": steps,
    }


def decohesion_curve(
    element: str = "Cu",
    miller: Sequence[int] = (1, 1, 1),
    openings: Sequence[float] | np.ndarray | None = None,
    structure: str = "fcc",
    a: float | None = None,
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    min_thickness: float = 12.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Rigid decohesion energy per area ``E(delta) - E(0)`` (J/m²) of ``(hkl)``.

    ``openings`` (A) defaults to 41 points on ``[0, 8]``.

    Returns:
        ``(delta, energy)``, both ``k`` arrays (A, J/m²).
    """
    check_element(element)
    if openings is None:
        openings = np.linspace(0.0, 8.0, 41)
    d = np.asarray(openings, dtype=float).ravel()
    if d.size < 3 or not np.isfinite(d).all() or (d < 0).any():
        raise InvalidInput(f"openings must be at least 3 finite values >= 0 (A), got {openings!r}")
    a = _lattice_parameter(element, structure, a, engine, engine_params)
    min_thickness = check_min_thickness(min_thickness, a, cutoff_params(engine, engine_params))
    atoms = oriented_crystal(element, structure, a, miller, min_thickness)
    attach_calculator(atoms, engine, **(engine_params or {}))
    cell0 = atoms.cell.array.copy()
    e0 = _calc_call(atoms.get_potential_energy, "compute the energy")
    A = _area(cell0)
    E = np.empty_like(d)
    for i, delta in enumerate(d):
        _open(atoms, cell0, float(delta))
        E[i] = _calc_call(atoms.get_potential_energy, "compute the energy") - e0
    return d, E / A * EV_PER_A2_TO_J_PER_M2


def uber_energy(delta: np.ndarray, two_gamma: float, l: float) -> np.ndarray:
    """UBER decohesion energy ``2γ [1 - (1 + δ/l) exp(-δ/l)]`` (same units as 2γ)."""
    x = np.asarray(delta, dtype=float) / l
    return two_gamma * (1.0 - (1.0 + x) * np.exp(-x))


def uber_traction(delta: np.ndarray, two_gamma: float, l: float) -> np.ndarray:
    """``dE/dδ = 2γ δ exp(-δ/l) / l²`` in GPa for 2γ in J/m² and δ, l in A."""
    d = np.asarray(delta, dtype=float)
    return two_gamma * d * np.exp(-d / l) / l**2 * J_PER_M2_PER_A_TO_GPA


@dataclass
class UBERFit:
    """A fitted UBER curve.

    Attributes:
        two_gamma: cleavage energy 2γ (J/m²).
        l: characteristic length (A).
        sigma_max: peak traction 2γ/(e l) (GPa).
        rmse: root-mean-square misfit of the energies (J/m²).
        r2: coefficient of determination of the fit.
    """

    two_gamma: float
    l: float
    sigma_max: float
    rmse: float
    r2: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def fit_uber(delta: Sequence[float] | np.ndarray, energy: Sequence[float] | np.ndarray) -> UBERFit:
    """Least-squares UBER fit of a decohesion curve ``E(δ) - E(0)``.

    Args:
        delta: ``k`` openings (A), including points beyond the peak traction.
        energy: ``k`` energies per area relative to contact (J/m²).

    Raises:
        InvalidInput: mismatched or too few points, or a curve that does not rise.
    """
    d = np.asarray(delta, dtype=float).ravel()
    E = np.asarray(energy, dtype=float).ravel()
    if d.shape != E.shape or d.size < 3 or not (np.isfinite(d).all() and np.isfinite(E).all()):
        raise InvalidInput(
            f"delta and energy must be finite with the same length >= 3, got {d.size} and {E.size}"
        )
    G0 = float(E.max())
    if G0 <= 0:
        raise InvalidInput(f"a decohesion curve must rise above its contact energy, max is {G0:.4g}")
    # at delta = l the UBER energy is (1 - 2/e) of its plateau: a start for l
    target = (1 - 2 / math.e) * G0
    order = np.argsort(d)
    above = np.nonzero(E[order] >= target)[0]
    l0 = float(d[order][above[0]]) if above.size and d[order][above[0]] > 0 else float(np.ptp(d)) / 4
    # fit in log-parameters so both stay positive
    res = least_squares(
        lambda p: uber_energy(d, math.exp(p[0]), math.exp(p[1])) - E,
        x0=[math.log(G0), math.log(max(l0, 1e-3))],
        xtol=1e-15,
        ftol=1e-15,
        gtol=1e-15,
        method="lm",
    )
    G, l = math.exp(res.x[0]), math.exp(res.x[1])
    resid = res.fun
    ss_tot = float(((E - E.mean()) ** 2).sum())
    return UBERFit(
        two_gamma=G,
        l=l,
        sigma_max=G / (math.e * l) * J_PER_M2_PER_A_TO_GPA,
        rmse=float(np.sqrt(np.mean(resid**2))),
        r2=1.0 - float((resid**2).sum()) / ss_tot if ss_tot > 0 else float("nan"),
    )


class SurfaceOracle(Oracle):
    r"""Surface energy and UBER decohesion parameters of a ``(hkl)`` surface.

    Input ``hydrostatic_strain`` of the static zero-pressure lattice. Outputs
    ``gamma`` (J/m²), ``two_gamma`` (the UBER fit's cleavage energy, J/m²),
    ``l`` (A) and ``sigma_max`` (GPa), the inputs of the cohesive laws.
    Fidelity 0: unrelaxed surface energy; fidelity 1: surface positions
    relaxed. Decohesion is rigid (unrelaxed halves) at both fidelities, as in
    the UBER construction. Deterministic.
    """

    input_names = ("hydrostatic_strain",)
    output_names = ("gamma", "two_gamma", "l", "sigma_max")
    #: units of the inputs and outputs (plot labels, the command line's JSON)
    units = {"hydrostatic_strain": "1", "gamma": "J/m^2", "two_gamma": "J/m^2", "l": "A", "sigma_max": "GPa"}
    num_fidelities = 2
    noisy = False

    def __init__(
        self,
        element: str = "Cu",
        miller: Sequence[int] = (1, 1, 1),
        structure: str = "fcc",
        engine: EngineSpec = "default",
        engine_params: dict[str, Any] | None = None,
        a_guess: float | None = None,
        strain_bounds: tuple[float, float] = (-0.03, 0.03),
        min_thickness: float | None = None,
        max_opening: float = 8.0,
        n_openings: int = 41,
        fmax: float = 1e-3,
    ):
        check_element(element)
        if structure not in CUBIC_STRUCTURES:
            raise InvalidInput(f"structure must be one of {CUBIC_STRUCTURES} (cubic), got {structure!r}")
        self.miller = check_miller(miller)
        if not (max_opening > 0 and n_openings >= 5):
            raise InvalidInput(f"need max_opening > 0 A and n_openings >= 5, got {max_opening}, {n_openings}")
        self.element = element
        self.structure = structure
        self.engine = engine
        self.engine_params = dict(engine_params or {})
        self.openings = tuple(np.linspace(0.0, max_opening, n_openings).tolist())
        self.fmax = float(fmax)
        self.bounds = make_bounds([strain_bounds[0]], [strain_bounds[1]])
        # estimated seconds on one core (asap3 EMT): ~50 energy calls of a
        # slab of tens of atoms; relaxation adds ~20 BFGS steps
        self.cost_model = CostModel((0.05, 0.2))
        self.a0 = equilibrium_lattice_parameter(element, structure, engine, self.engine_params, a_guess)
        checked = cutoff_params(engine, self.engine_params)
        if min_thickness is None:  # the default, raised to the thinnest slab this lattice allows
            min_thickness = max(DEFAULT_MIN_THICKNESS, math.ceil(thinnest_slab(self.a0, checked)))
        self.min_thickness = check_min_thickness(min_thickness, self.a0, checked)
        # the gap between slab images: 15 A, or the cut-off when longer (a user's calculator)
        self.vacuum = max(15.0, math.ceil(thinnest_slab(self.a0 * (1 + max(strain_bounds)), checked)))

    def _evaluate_one(self, x: torch.Tensor, fidelity: int) -> PointResult:
        t0 = time.perf_counter()
        a = self.a0 * (1.0 + float(x[0]))
        s = surface_energy(
            self.element, self.miller, self.structure, a, self.engine, self.engine_params,
            self.min_thickness, vacuum=self.vacuum, relax=fidelity == 1, fmax=self.fmax,
        )
        d, E = decohesion_curve(
            self.element, self.miller, self.openings, self.structure, a, self.engine,
            self.engine_params, self.min_thickness,
        )
        if s["gamma"] <= 0 or E[-1] <= 0:
            raise CalculationFailed(
                f"non-positive surface energy ({s['gamma']:.4g} J/m^2) for {self.element}{self.miller} at a = {a:.4f} A"
            )
        fit = fit_uber(d, E)
        if float(d.max()) < UBER_PLATEAU_LENGTHS * fit.l:
            raise CalculationFailed(
                f"max_opening = {float(d.max()):g} A stops before the decohesion plateau: the UBER fit needs "
                f"openings to {UBER_PLATEAU_LENGTHS:g} l = {UBER_PLATEAU_LENGTHS * fit.l:.3g} A (l = {fit.l:.3g} A), "
                "where the energy is within 2 % of 2 gamma"
            )
        y = torch.tensor([s["gamma"], fit.two_gamma, fit.l, fit.sigma_max], dtype=DTYPE)
        meta = {
            "a": a,
            "engine": engine_name(self.engine),
            "gamma_unit": "J/m^2",
            "two_gamma_plateau": float(E[-1]),
            "uber_rmse": fit.rmse,
            "uber_r2": fit.r2,
            "traction_max_numeric_GPa": float(np.max(np.gradient(E, d)) * J_PER_M2_PER_A_TO_GPA),
            "n_atoms": s["n_atoms"],
            "relax_steps": s["relax_steps"],
            "compute_time": time.perf_counter() - t0,
        }
        return PointResult(y=y, metadata=meta)
