r"""Elastic constants of cubic crystals from any ASE calculator, as an oracle.

Fidelity 0 is static Cauchy–Born at 0 K (:mod:`oracles.atomistic.crystal`):
the zero-pressure lattice parameter, then central differences of the stress
under small strains with internal relaxation. Fidelity 1 is finite-temperature
Langevin MD (:mod:`oracles.atomistic.md`).

Conventions: Voigt order ``xx, yy, zz, yz, xz, xy`` with engineering shear
strains, ASE's stress sign (tension positive), GPa, A, K.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from oracles.atomistic.crystal import (
    CUBIC_STRUCTURES,
    build_crystal,
    check_element,
    equilibrium_lattice_parameter,
    static_elastic_constants,
)
from oracles.atomistic.engines import EngineSpec, engine_name
from oracles.atomistic.md import (
    finite_temperature_elastic_constants,
    lattice_blocks,
    resolve_blocks,
    se_blocks,
)
from oracles.base import DTYPE, CostModel, Oracle, PointResult, make_bounds
from oracles.exceptions import InvalidInput

__all__ = ["ElasticConstantsOracle", "static_elastic_constants"]

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
            protocol of fidelity 1 (see :mod:`oracles.atomistic.md`); ``n_blocks``
            None: ``min(20, n_steps // sample_every)``.
        seed: seeds fidelity 1 (combined with the input point).
        us_per_atom_step, us_per_step: the cost model's engine speed (one core).

    Example:
        >>> oracle = ElasticConstantsOracle("Cu", size=3, n_steps=1000)
        >>> res = oracle.evaluate([[300.0, 0.0]], fidelity=1)
    """

    output_names = ("C11", "C12", "C44", "a")
    #: units of the inputs and outputs (plot labels, the command line's JSON)
    units = {"temperature": "K", "hydrostatic_strain": "1", "C11": "GPa", "C12": "GPa", "C44": "GPa", "a": "A"}
    num_fidelities = 2
    noisy = True
    #: the MD seed is drawn from the oracle's seed and the point (:meth:`_point_seed`)
    seeded_by_point = True

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
        n_blocks: int | None = None,
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
        n_blocks = resolve_blocks(n_steps, sample_every, n_blocks)
        if n_axes not in (1, 2, 3):
            raise InvalidInput(f"n_axes must be 1, 2 or 3, got {n_axes!r}")
        if not (0 < md_strain < 0.05):
            raise InvalidInput(f"md_strain must be in (0, 0.05), got {md_strain}")
        if not (0 < timestep <= 10):
            raise InvalidInput(f"timestep must be in (0, 10] fs, got {timestep}")
        se_blocks(n_steps, sample_every, float(timestep), n_blocks, n_axes)  # the MD protocol's error bar, now
        lattice_blocks(lattice_steps, sample_every, float(timestep), n_blocks)  # a's error bar, now
        for name, v in (("n_equil", n_equil), ("n_lattice_iter", n_lattice_iter)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise InvalidInput(f"{name} must be an integer >= 0, got {v!r}")
        if not (0 < friction < math.inf):
            raise InvalidInput(f"friction must be a positive Langevin friction (1/fs), got {friction}")
        if not (0 < delta < 0.05):
            raise InvalidInput(f"delta (the finite-difference strain) must be in (0, 0.05), got {delta}")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise InvalidInput(f"seed must be an integer >= 0, got {seed!r}")
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
