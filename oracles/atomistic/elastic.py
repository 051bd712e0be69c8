r"""Elastic constants of cubic crystals from any ASE calculator.

Fidelity 0 is static Cauchy–Born at 0 K: the lattice parameter is found where
the pressure vanishes (a root of :math:`p(a) = -\mathrm{tr}\,\sigma/3`, which is
the energy minimum since :math:`p = -dE/dV`), then the stress–strain
coefficients :math:`C_{ij} = \partial\sigma_i/\partial\varepsilon_j` come from
central differences of the stress under small homogeneous strains, with the
internal coordinates relaxed under each strain when the cell has more than one
atom (a lattice with a basis). Fidelity 1 is finite-temperature Langevin MD
(:mod:`oracles.atomistic.md`).

Conventions: Voigt order ``xx, yy, zz, yz, xz, xy`` with engineering shear
strains (``eps_4 = 2 eps_yz``), ASE's stress sign (tension positive), GPa.
A strain ``eps`` deforms the reference cell by ``F = I + eps`` (symmetric).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk
from ase.data import atomic_numbers, reference_states
from ase.units import GPa
from scipy.optimize import brentq

from oracles.atomistic.engines import EngineSpec, attach_calculator, engine_name
from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.exceptions import CalculationFailed, InvalidInput

CUBIC_STRUCTURES = ("fcc", "bcc", "sc", "diamond")

# Voigt index -> tensor index pair
VOIGT = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


# ------------------------------------------------------------------ crystals
def check_element(element: str) -> str:
    if not isinstance(element, str) or element not in atomic_numbers or element == "X":
        raise InvalidInput(f"element must be a chemical symbol such as 'Cu', got {element!r}")
    return element


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


def _calc_call(fn, what: str):
    try:
        out = fn()
    except (NotImplementedError, KeyError) as e:
        # ASE's EMT raises these for elements it has no parameters for
        raise InvalidInput(f"the engine cannot {what}: {type(e).__name__}: {e}") from e
    except Exception as e:  # an engine failure for this configuration
        raise CalculationFailed(f"the engine failed to {what}: {type(e).__name__}: {e}") from e
    if not np.all(np.isfinite(out)):
        raise CalculationFailed(f"the engine returned non-finite values when asked to {what}")
    return out


def relax_positions(atoms: Atoms, fmax: float = 1e-6, steps: int = 500) -> int:
    """Relax atomic positions at fixed cell (internal relaxation); returns steps taken.

    A one-atom cell has no internal coordinates and is left alone.
    """
    if len(atoms) < 2:
        return 0
    from ase.optimize import BFGS

    opt = BFGS(atoms, logfile=None)
    try:
        converged = opt.run(fmax=fmax, steps=steps)
    except Exception as e:
        raise CalculationFailed(f"internal relaxation failed: {type(e).__name__}: {e}") from e
    if not converged:
        from oracles.exceptions import NotConverged

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
    return _calc_call(lambda: atoms.get_stress(voigt=True), "compute the stress")


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
    if a_guess is None:
        a_guess = reference_lattice_parameter(element, structure)
        if a_guess is None:
            raise InvalidInput(
                f"no tabulated {structure} lattice parameter for {element}; pass a_guess (A)"
            )
    atoms = build_crystal(element, structure, a_guess)
    attach_calculator(atoms, engine, **(engine_params or {}))
    cell1 = atoms.cell.array / a_guess

    def p_of(a: float) -> float:
        atoms.set_cell(cell1 * a, scale_atoms=True)
        return pressure(atoms, relax=True, fmax=fmax)

    # bracket: compressed (p > 0) at a_lo, stretched (p < 0) at a_hi
    p0 = p_of(a_guess)
    step = 0.02 * a_guess
    lo = hi = a_guess
    plo = phi = p0
    for _ in range(40):
        if plo > 0 > phi:
            break
        if p0 <= 0:
            lo, plo = lo - step, p_of(lo - step)
            if plo <= 0:
                hi, phi = lo, plo
        else:
            hi, phi = hi + step, p_of(hi + step)
            if phi >= 0:
                lo, plo = hi, phi
        if lo <= 0.3 * a_guess or hi >= 2.0 * a_guess:
            break
    if not (plo > 0 > phi):
        raise CalculationFailed(
            f"no zero-pressure {structure} {element} lattice found between "
            f"{lo:.4g} and {hi:.4g} A (pressure {plo:.3g} .. {phi:.3g} eV/A^3)"
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
    a0 = (
        equilibrium_lattice_parameter(element, structure, engine, engine_params)
        if a is None
        else float(a)
    )
    a_eff = a0 * (1.0 + hydrostatic_strain)
    atoms = build_crystal(element, structure, a_eff, cubic=cubic_cell)
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


# --------------------------------------------------------------------- oracle
class ElasticConstantsOracle(Oracle):
    r"""Elastic constants ``C11, C12, C44`` (GPa) and lattice parameter ``a`` (A).

    Inputs ``temperature`` (K) and, with ``with_strain=True``, a
    ``hydrostatic_strain`` applied to the equilibrium lattice parameter of that
    temperature. Fidelity 0: static Cauchy–Born at 0 K (ignores the
    temperature; deterministic, ``Yvar = 0``). Fidelity 1: Langevin NVT MD of a
    ``size^3`` conventional supercell at the zero-pressure lattice parameter of
    that temperature, stresses averaged under ``+-strain`` with correlated
    noise; ``Yvar`` is the squared block-average standard error
    (:func:`oracles.atomistic.md.finite_temperature_elastic_constants`).

    The oracle holds only plain data (names, numbers, the engine name) and
    builds its calculator per evaluation, so it pickles. Randomness comes from
    ``seed`` and the input point, so an evaluation is reproducible.

    Args:
        element, structure: the crystal (cubic structures only).
        engine, engine_params: see :func:`oracles.atomistic.engines.make_calculator`.
        a_guess: starting lattice parameter (A) when ASE has no tabulated one.
        with_strain: whether ``hydrostatic_strain`` is an input.
        max_temperature, strain_bounds: the input box.
        delta: finite-difference strain of fidelity 0.
        size, timestep (fs), n_steps, n_equil, n_lattice_iter, lattice_steps,
        md_strain, friction (1/fs), sample_every, n_blocks, n_axes: the MD
            protocol of fidelity 1 (see :mod:`oracles.atomistic.md`).
        seed: seeds fidelity 1 (combined with the input point).
        us_per_atom_step, us_per_step: the cost model's engine speed (one core).

    Example:
        >>> oracle = ElasticConstantsOracle("Cu", size=3, n_steps=1000)
        >>> res = oracle.evaluate([[300.0, 0.0]], fidelity=1)
    """

    output_names = ("C11", "C12", "C44", "a")
    num_fidelities = 2
    noisy = True

    def __init__(
        self,
        element: str = "Cu",
        structure: str = "fcc",
        engine: EngineSpec = "default",
        engine_params: dict[str, Any] | None = None,
        a_guess: float | None = None,
        with_strain: bool = True,
        max_temperature: float = 1500.0,
        strain_bounds: tuple[float, float] = (-0.05, 0.15),
        delta: float = 1e-4,
        size: int = 5,
        timestep: float = 5.0,
        n_steps: int = 500,
        n_equil: int = 300,
        n_lattice_iter: int = 3,
        lattice_steps: int = 400,
        md_strain: float = 0.005,
        friction: float = 0.02,
        sample_every: int = 4,
        n_blocks: int = 20,
        n_axes: int = 3,
        seed: int = 0,
        us_per_atom_step: float = 3.5,
        us_per_step: float = 60.0,
    ):
        check_element(element)
        if structure not in CUBIC_STRUCTURES:
            raise InvalidInput(f"structure must be one of {CUBIC_STRUCTURES} (cubic), got {structure!r}")
        if not (max_temperature > 0 and math.isfinite(max_temperature)):
            raise InvalidInput(f"max_temperature must be positive (K), got {max_temperature}")
        for name, v in (("size", size), ("n_steps", n_steps), ("sample_every", sample_every)):
            if not isinstance(v, int) or v < 1:
                raise InvalidInput(f"{name} must be a positive integer, got {v!r}")
        if not isinstance(n_blocks, int) or n_blocks < 2 or n_blocks > n_steps // sample_every:
            raise InvalidInput(
                f"n_blocks must be an integer in [2, n_steps/sample_every = {n_steps // sample_every}], got {n_blocks!r}"
            )
        if n_axes not in (1, 2, 3):
            raise InvalidInput(f"n_axes must be 1, 2 or 3, got {n_axes!r}")
        if not (0 < md_strain < 0.05):
            raise InvalidInput(f"md_strain must be in (0, 0.05), got {md_strain}")
        if not (0 < timestep <= 10):
            raise InvalidInput(f"timestep must be in (0, 10] fs, got {timestep}")
        self.element = element
        self.structure = structure
        self.engine = engine
        self.engine_params = dict(engine_params or {})
        self.a_guess = a_guess
        self.with_strain = bool(with_strain)
        self.delta = float(delta)
        self.size = size
        self.timestep = float(timestep)
        self.n_steps = n_steps
        self.n_equil = int(n_equil)
        self.n_lattice_iter = int(n_lattice_iter)
        self.lattice_steps = int(lattice_steps)
        self.md_strain = float(md_strain)
        self.friction = float(friction)
        self.sample_every = sample_every
        self.n_blocks = n_blocks
        self.n_axes = n_axes
        self.seed = int(seed)
        if self.with_strain:
            self.input_names = ("temperature", "hydrostatic_strain")
            self.bounds = make_bounds([0.0, strain_bounds[0]], [max_temperature, strain_bounds[1]])
        else:
            self.input_names = ("temperature",)
            self.bounds = make_bounds([0.0], [max_temperature])
        # cost in estimated seconds on one core: a static run is ~100 stress
        # calls of a tiny cell; MD is atoms x steps at the engine's speed plus
        # the Python overhead of each step (dominant for small cells)
        self.us_per_atom_step = float(us_per_atom_step)
        self.us_per_step = float(us_per_step)
        md_cost = (self.md_atom_steps * us_per_atom_step + self.md_steps * us_per_step) * 1e-6
        self.cost_model = CostModel((0.02, 0.02 + md_cost))
        # the zero-pressure static lattice parameter; checks element/engine now
        self._a0: float | None = None
        self._a0 = self.static_lattice_parameter()

    @property
    def n_atoms(self) -> int:
        per_cell = len(build_crystal(self.element, self.structure, 1.0, cubic=True))
        return per_cell * self.size**3

    @property
    def md_steps(self) -> int:
        """MD steps of one fidelity-1 evaluation."""
        lattice = self.n_lattice_iter * self.lattice_steps + 2 * self.n_equil
        return lattice + 2 * self.n_axes * (self.n_steps + self.n_equil // 2)

    @property
    def md_atom_steps(self) -> int:
        """Atom-steps of one fidelity-1 evaluation (the cost model's basis)."""
        return self.n_atoms * self.md_steps

    def static_lattice_parameter(self) -> float:
        if self._a0 is None:
            self._a0 = equilibrium_lattice_parameter(
                self.element, self.structure, self.engine, self.engine_params, self.a_guess
            )
        return self._a0

    def _point_seed(self, x: torch.Tensor) -> int:
        # a seed from the oracle seed and the point, so the same point gives the
        # same answer and different points get independent streams
        words = np.frombuffer(x.detach().cpu().numpy().astype(np.float64).tobytes(), dtype=np.uint32)
        ss = np.random.SeedSequence([self.seed, *words.tolist()])
        return int(ss.generate_state(1)[0])

    def _evaluate_one(self, x: torch.Tensor, fidelity: int) -> PointResult:
        T = float(x[0])
        eh = float(x[1]) if self.with_strain else 0.0
        t0 = time.perf_counter()
        a0 = self.static_lattice_parameter()
        if fidelity == 0 or T < 1.0:
            r = static_elastic_constants(
                self.element, self.structure, self.engine, self.engine_params, a=a0,
                hydrostatic_strain=eh, delta=self.delta,
            )
            y = torch.tensor([r["C11"], r["C12"], r["C44"], r["a"]], dtype=DTYPE)
            meta = {
                "method": "static Cauchy-Born, 0 K" + (" (T < 1 K at fidelity 1)" if fidelity else ""),
                "engine": engine_name(self.engine),
                "B": r["B"],
                "pressure_GPa": r["pressure"],
                "a0_static": a0,
                "n_atoms": r["n_atoms"],
                "compute_time": time.perf_counter() - t0,
            }
            return PointResult(y=y, yvar=torch.zeros(4, dtype=DTYPE), metadata=meta)

        from oracles.atomistic.md import finite_temperature_elastic_constants

        static = static_elastic_constants(
            self.element, self.structure, self.engine, self.engine_params, a=a0, delta=self.delta
        )
        r = finite_temperature_elastic_constants(
            self.element,
            self.structure,
            temperature=T,
            a_static=a0,
            bulk_modulus=static["B"],
            hydrostatic_strain=eh,
            engine=self.engine,
            engine_params=self.engine_params,
            size=self.size,
            timestep=self.timestep,
            n_steps=self.n_steps,
            n_equil=self.n_equil,
            n_lattice_iter=self.n_lattice_iter,
            lattice_steps=self.lattice_steps,
            strain=self.md_strain,
            friction=self.friction,
            sample_every=self.sample_every,
            n_blocks=self.n_blocks,
            n_axes=self.n_axes,
            seed=self._point_seed(x),
        )
        y = torch.tensor([r["C11"], r["C12"], r["C44"], r["a"]], dtype=DTYPE)
        yvar = torch.tensor(
            [r["C11_se"] ** 2, r["C12_se"] ** 2, r["C44_se"] ** 2, r["a_se"] ** 2], dtype=DTYPE
        )
        meta = {k: v for k, v in r.items() if k not in ("C11", "C12", "C44", "a")}
        meta.update(method="Langevin NVT, +-strain differences", engine=engine_name(self.engine))
        meta["compute_time"] = time.perf_counter() - t0
        return PointResult(y=y, yvar=yvar, metadata=meta)
