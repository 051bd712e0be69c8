r"""Finite-temperature molecular dynamics for the elastic-constant oracle.

Protocol of :func:`finite_temperature_elastic_constants` (fidelity 1):

1. Lattice parameter at ``T``: Langevin NVT of a ``size^3`` conventional
   supercell; the mean pressure (virial plus kinetic) of each stage corrects
   the lattice parameter by ``da/a = p / (3 B)``, ``n_lattice_iter`` times:
   the first with the static bulk modulus, the next ones with the secant
   modulus of the latest two stages that resolve it, the static one otherwise (:func:`secant_bulk_modulus`: the
   isothermal modulus, smaller than the static one at high temperature, so
   the iteration converges like Newton's instead of under-correcting).
2. The equilibrated state is saved. For each of ``n_axes`` strain patterns
   ``eps * (e_k + e_yz + e_xz + e_xy)`` (a normal strain along axis ``k`` plus
   all three shears) two runs start from that same state, one under ``+eps``
   and one under ``-eps``, with the *same* Langevin noise (correlated seeds),
   so most thermal noise cancels in the difference.
3. ``C_ij(t) = (sigma_i^+(t) - sigma_i^-(t)) / (2 eps_j)`` sample by sample.
   For a cubic crystal the pattern's linear response is ``sigma_k = C11 eps``,
   the two other normal stresses ``C12 eps`` and the three shear stresses
   ``C44 eps``; even-order anharmonic terms cancel in the ``+-`` difference.
   The estimates are averaged over the equivalent components and axes
   (symmetry averaging). The standard error pools the block means of every
   axis's series (:func:`pooled_block_average`: cubic symmetry gives each axis
   the same expectation, so ``n_axes x n_blocks`` block means give
   ``n_axes n_blocks - 1`` degrees of freedom), widened to the variance of the
   Student t with those degrees of freedom, and is combined with the error of
   the lattice parameter (step 1) propagated through the static ``dC/d ln a``.
   A short run has few blocks: a standard error from 3 block means (2 degrees
   of freedom) is right on average but so noisy that precision weighting
   trusts the points whose error happens to come out small (mean z^2 of 1.7 to
   2.9 over 120 replicas at 200 steps, against 0.84 to 1.14 pooled).

These are isothermal stress–strain coefficients (fixed-strain NVT averages).
Units: K, fs, GPa, A.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import MaxwellBoltzmannDistribution, Stationary
from ase.md.verlet import VelocityVerlet

from oracles.atomistic.crystal import (
    born_stability,
    build_crystal,
    calc_call,
    static_elastic_constants,
    strained,
)
from oracles.atomistic.engines import EngineSpec, attach_calculator, engine_name
from oracles.exceptions import (
    CalculationFailed,
    InvalidInput,
    OracleError,
    is_finite_real,
    is_integer,
)


def block_average(x: np.ndarray, n_blocks: int = 20) -> tuple[float, float]:
    """Mean and its standard error from ``n_blocks`` contiguous block means.

    Args:
        x: ``n`` samples of a (correlated) time series; a tail of fewer than a
            block is dropped.
        n_blocks: number of blocks; each must be longer than the correlation
            time for the error to be honest.

    Returns:
        ``(mean, standard error)`` of the blocked samples.
    """
    x = np.asarray(x, dtype=float).ravel()
    if n_blocks < 2:
        raise InvalidInput(f"need at least 2 blocks and one sample per block, got {n_blocks} blocks for {x.size} samples")
    means = _block_means(x, n_blocks)
    return float(means.mean()), float(means.std(ddof=1) / math.sqrt(n_blocks))


def _block_means(x: np.ndarray, n_blocks: int) -> np.ndarray:
    """``n_blocks`` means of contiguous blocks of the samples ``x`` (a tail of fewer than a block dropped)."""
    x = np.asarray(x, dtype=float).ravel()
    if n_blocks < 1 or x.size < n_blocks:
        raise InvalidInput(f"need at least one block and one sample per block, got {n_blocks} blocks for {x.size} samples")
    m = x.size // n_blocks
    return x[: m * n_blocks].reshape(n_blocks, m).mean(axis=1)


#: fewest degrees of freedom of an MD standard error (the t variance factor d / (d - 2) is
#: infinite at 2 and 3 at 3)
MIN_SE_DOF = 4


#: blocks of the MD standard error when none are asked for (fewer on a short run)
DEFAULT_BLOCKS = 20


def resolve_blocks(n_steps: int, sample_every: int, n_blocks: int | None = None) -> int:
    """``n_blocks``, or ``min(DEFAULT_BLOCKS, n_steps // sample_every)`` for None.

    Raises:
        InvalidInput: fewer than 2 stress samples; ``n_blocks`` not an integer in
            ``[2, n_steps // sample_every]``.
    """
    samples = n_steps // sample_every
    if samples < 2:
        raise InvalidInput(f"n_steps = {n_steps} gives {samples} stress samples (one every sample_every = "
                           f"{sample_every} steps); the standard error needs at least 2")
    if n_blocks is None:
        return min(DEFAULT_BLOCKS, samples)
    if not isinstance(n_blocks, int) or isinstance(n_blocks, bool) or n_blocks < 2:
        raise InvalidInput(f"n_blocks must be an integer >= 2, got {n_blocks!r}")
    if n_blocks > samples:
        raise InvalidInput(f"n_blocks = {n_blocks} is more than the {samples} samples of n_steps / sample_every")
    return n_blocks


def _block_samples(sample_every: int, timestep: float, min_block_fs: float) -> int:
    """Stress samples in one block of at least ``min_block_fs`` fs."""
    return max(1, math.ceil(min_block_fs / (sample_every * timestep)))


def se_blocks(n_steps: int, sample_every: int, timestep: float, n_blocks: int, n_axes: int,
              min_block_fs: float = 250.0) -> int:
    """Blocks per axis of the MD standard error: at most ``n_blocks``, each at least
    ``min_block_fs`` long (longer than the stress correlation time, ~0.1 ps in metals).

    Raises:
        InvalidInput: fewer than 2 such blocks per axis, or fewer than
            :data:`MIN_SE_DOF` degrees of freedom over the ``n_axes`` axes; the
            settings are known before any MD runs, so an oracle checks them when built.
    """
    block_samples = _block_samples(sample_every, timestep, min_block_fs)
    fit = (n_steps // sample_every) // block_samples
    need_steps = 2 * block_samples * sample_every
    if fit < 2:
        raise InvalidInput(
            f"n_steps = {n_steps} samples {n_steps * timestep:g} fs per strained run; an honest standard error needs "
            f"at least 2 blocks of {min_block_fs:g} fs (longer than the stress correlation time): n_steps >= "
            f"{need_steps} at timestep {timestep:g} fs, sample_every {sample_every}")
    nb = min(n_blocks, fit)
    if n_axes * nb - 1 < MIN_SE_DOF:
        raise InvalidInput(
            f"the standard error would rest on {n_axes} axes x {nb} blocks = {n_axes * nb} block means, "
            f"{n_axes * nb - 1} degrees of freedom; at least {MIN_SE_DOF} are needed: run longer (n_steps), on more "
            "axes (n_axes) or with more blocks (n_blocks)")
    return nb


def lattice_blocks(lattice_steps: int, sample_every: int, timestep: float, n_blocks: int,
                   min_block_fs: float = 250.0) -> int:
    """Blocks of the pressure's standard error in each zero-pressure iteration: at most
    ``n_blocks`` (or ``MIN_SE_DOF + 1`` if more), each at least ``min_block_fs`` long, at
    least ``MIN_SE_DOF + 1`` of them
    (the error of the lattice parameter ``a`` is the pressure's, so it gets the same
    degrees of freedom as the elastic constants').

    Raises:
        InvalidInput: ``lattice_steps`` too short for that, naming its minimum.
    """
    if not isinstance(lattice_steps, int) or isinstance(lattice_steps, bool) or lattice_steps < 1:
        raise InvalidInput(f"lattice_steps must be a positive integer, got {lattice_steps!r}")
    block_samples = _block_samples(sample_every, timestep, min_block_fs)
    nb = min(max(n_blocks, MIN_SE_DOF + 1), (lattice_steps // sample_every) // block_samples)
    if nb - 1 < MIN_SE_DOF:
        need = (MIN_SE_DOF + 1) * block_samples * sample_every
        raise InvalidInput(
            f"lattice_steps = {lattice_steps} gives the pressure's standard error (and so a's) {nb} blocks of "
            f"{min_block_fs:g} fs, {max(nb - 1, 0)} degrees of freedom; at least {MIN_SE_DOF} are needed: "
            f"lattice_steps >= {need} at timestep {timestep:g} fs, sample_every {sample_every}")
    return nb


def pooled_block_average(series: list[np.ndarray], n_blocks: int) -> tuple[float, float, int]:
    """Mean, standard error and degrees of freedom from the block means of several
    series with one expectation (the cubic axes of one elastic constant).

    Each series (``n`` samples) is cut into ``n_blocks`` contiguous blocks (a tail
    of fewer than a block is dropped); the ``B = len(series) * n_blocks`` block
    means give the mean and ``s / sqrt(B)`` with ``d = B - 1`` degrees of freedom,
    times ``sqrt(d / (d - 2))``, the ratio of the Student t's standard deviation
    to the normal's, so that the variance handed on is that of the t the
    estimate follows (a known-variance consumer, precision weighting, takes it
    at face value).

    Raises:
        InvalidInput: fewer than :data:`MIN_SE_DOF` degrees of freedom.
    """
    B = np.concatenate([_block_means(x, n_blocks) for x in series])
    d = B.size - 1
    if d < MIN_SE_DOF:
        raise InvalidInput(
            f"the standard error would rest on {B.size} block means ({len(series)} series x {n_blocks} blocks), "
            f"{d} degrees of freedom; at least {MIN_SE_DOF} are needed")
    se = B.std(ddof=1) / math.sqrt(B.size) * math.sqrt(d / (d - 2))
    return float(B.mean()), float(se), int(d)


def stress_gpa(atoms: Atoms) -> np.ndarray:
    """``6`` instantaneous stress in GPa including the kinetic (ideal-gas) part."""
    return atoms.get_stress(voigt=True, include_ideal_gas=True) / units.GPa


def make_langevin(atoms: Atoms, temperature: float, timestep: float, friction: float, seed: int) -> Langevin:
    """ASE Langevin integrator; ``timestep`` in fs, ``friction`` in 1/fs."""
    return Langevin(
        atoms,
        timestep * units.fs,
        temperature_K=temperature,
        friction=friction / units.fs,
        fixcm=False,
        rng=np.random.default_rng(seed),
    )


def run_md(dyn, n_steps: int) -> None:
    """``dyn.run(n_steps)`` with an engine failure (a calculator that raises on a
    configuration it cannot handle) turned into one-line :class:`CalculationFailed`, so an
    oracle records the point as failed instead of crashing."""
    try:
        dyn.run(n_steps)
    except OracleError:
        raise
    except Exception as e:
        raise CalculationFailed(
            f"the engine failed during MD: {type(e).__name__}: {' '.join(str(e).split())}"
        ) from e


def sample_stress(dyn, atoms: Atoms, n_steps: int, sample_every: int) -> np.ndarray:
    """Run ``n_steps`` and return ``n_steps // sample_every x 6`` stresses (GPa)."""
    n = n_steps // sample_every
    out = np.empty((n, 6))
    for i in range(n):
        run_md(dyn, sample_every)
        out[i] = calc_call(lambda: stress_gpa(atoms), "compute the stress during MD")
    if not np.isfinite(out).all():
        raise CalculationFailed("non-finite stress during MD (atoms too close or engine failure)")
    return out


def nve_energy_trace(
    atoms: Atoms, temperature: float, timestep: float, n_steps: int, seed: int = 0, every: int = 10
) -> np.ndarray:
    """Total energy per atom (eV) every ``every`` steps of a velocity-Verlet NVE run.

    Velocities start from a Maxwell–Boltzmann distribution at ``temperature``
    without centre-of-mass motion; ``atoms`` needs a calculator.
    """
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep * units.fs)
    e = [atoms.get_total_energy() / len(atoms)]
    for _ in range(n_steps // every):
        dyn.run(every)
        e.append(atoms.get_total_energy() / len(atoms))
    return np.asarray(e)


def rms_displacement(atoms: Atoms, ref_scaled: np.ndarray) -> float:
    """RMS distance (A) of atoms from their lattice sites, drift removed."""
    d = atoms.get_scaled_positions(wrap=False) - ref_scaled
    d -= np.round(d)
    d -= d.mean(axis=0)
    cart = d @ atoms.cell.array
    return float(np.sqrt((cart**2).sum(axis=1).mean()))


def lattice_sensitivity(
    element: str,
    structure: str,
    a: float,
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    h: float = 1e-3,
) -> tuple[float, float, float]:
    """Static ``d(C11, C12, C44)/d ln a`` (GPa) at ``a`` by central differences.

    Zero when the static crystal is unstable at ``a (1 +- h)`` (no sensitivity
    to propagate then).
    """
    try:
        p = static_elastic_constants(element, structure, engine, engine_params, a=a, hydrostatic_strain=h)
        m = static_elastic_constants(element, structure, engine, engine_params, a=a, hydrostatic_strain=-h)
    except CalculationFailed:
        return (0.0, 0.0, 0.0)
    return tuple((p[k] - m[k]) / (math.log1p(h) - math.log1p(-h)) for k in ("C11", "C12", "C44"))


#: a secant bulk modulus is used when the pressure change between the last two
#: lattice stages exceeds this many of its standard errors
SECANT_MIN_Z = 4.0
#: and lies within these multiples of the static bulk modulus
SECANT_RANGE = (0.25, 1.5)


def secant_bulk_modulus(history: list[tuple[float, float, float]], static: float) -> float:
    """Bulk modulus (GPa) for the next zero-pressure correction ``da/a = p / (3 B)``.

    ``history``: ``(a, p, p_se)`` of the lattice stages so far (A, GPa, GPa).
    The secant of the latest two consecutive stages that resolve it,
    ``B = -(p_k - p_{k-1}) / (3 ln(a_k / a_{k-1}))``: the isothermal modulus
    near the current lattice (thermal softening makes it smaller than the
    static one: about 73 against 135 GPa for EMT Cu at 1200 K). A pair resolves it when the pressure change exceeds
    ``SECANT_MIN_Z`` standard errors and the secant lies in ``SECANT_RANGE``
    times ``static``; with no such pair (the first stage), ``static``.
    """
    for (a0, p0, s0), (a1, p1, s1) in reversed(list(zip(history, history[1:], strict=False))):
        dlna = math.log(a1 / a0)
        dp = p1 - p0
        if dlna == 0 or not abs(dp) > SECANT_MIN_Z * math.hypot(s0, s1):
            continue
        b = -dp / (3.0 * dlna)
        if SECANT_RANGE[0] * static <= b <= SECANT_RANGE[1] * static:
            return b
    return static


#: largest lattice correction ``|p| / (3 B)`` that the static pressure at ``a_static`` may
#: ask for: ``a_static`` is the static zero-pressure lattice parameter (pressure ~0 there);
#: 10 % is a wrong guess, not round-off
MAX_START_LATTICE_CORRECTION = 0.1


def _check_md_settings(*, a_static, hydrostatic_strain, size, timestep, n_steps, n_equil, n_lattice_iter,
                       strain, friction, sample_every, n_axes) -> None:
    """One-line :class:`InvalidInput` naming the first bad MD setting and what it must be
    (the checks :class:`~oracles.atomistic.elastic.ElasticConstantsOracle` makes when built)."""
    if not (is_finite_real(a_static) and a_static > 0):
        raise InvalidInput(f"a_static must be a positive, finite lattice parameter (A), got {a_static!r}")
    if not (is_finite_real(hydrostatic_strain) and hydrostatic_strain > -1):
        raise InvalidInput(f"hydrostatic_strain must be a finite strain > -1, got {hydrostatic_strain!r}")
    if not (is_integer(size) and size >= 1):
        raise InvalidInput(f"size (conventional cells per side of the supercell) must be an integer >= 1, got {size!r}")
    if not (is_finite_real(timestep) and 0 < timestep <= 10):
        raise InvalidInput(f"timestep must be in (0, 10] fs, got {timestep!r}")
    for name, v in (("n_steps", n_steps), ("sample_every", sample_every)):
        if not (is_integer(v) and v >= 1):
            raise InvalidInput(f"{name} must be a positive integer, got {v!r}")
    for name, v in (("n_equil", n_equil), ("n_lattice_iter", n_lattice_iter)):
        if not (is_integer(v) and v >= 0):
            raise InvalidInput(f"{name} must be an integer >= 0, got {v!r}")
    if not (is_finite_real(strain) and 0 < strain < 0.05):
        raise InvalidInput(f"strain (the +- MD strain amplitude) must be in (0, 0.05), got {strain!r}")
    if not (is_finite_real(friction) and friction > 0):
        raise InvalidInput(f"friction must be a positive Langevin friction (1/fs), got {friction!r}")
    if not (is_integer(n_axes) and 1 <= n_axes <= 3):
        raise InvalidInput(f"n_axes (strain patterns, one per cubic axis) must be 1, 2 or 3, got {n_axes!r}")


def finite_temperature_elastic_constants(
    element: str,
    structure: str,
    temperature: float,
    a_static: float,
    bulk_modulus: float,
    hydrostatic_strain: float = 0.0,
    engine: EngineSpec = "default",
    engine_params: dict[str, Any] | None = None,
    size: int = 5,
    timestep: float = 5.0,
    n_steps: int = 500,
    n_equil: int = 300,
    n_lattice_iter: int = 3,
    lattice_steps: int = 400,
    strain: float = 0.005,
    friction: float = 0.02,
    sample_every: int = 4,
    n_blocks: int = 20,
    n_axes: int = 3,
    seed: int = 0,
    lindemann: float = 0.2,
    correlated_noise: bool = True,
    min_block_fs: float = 250.0,
) -> dict[str, Any]:
    """Isothermal ``C11, C12, C44`` (GPa) and lattice parameter (A) at ``temperature``.

    See the module docstring for the protocol.

    Args:
        a_static: static zero-pressure lattice parameter (A), the starting guess.
        bulk_modulus: static bulk modulus (GPa): scales the first
            lattice-parameter correction, and the next ones where the secant
            modulus is not resolved (:func:`secant_bulk_modulus`).
        hydrostatic_strain: strain applied to the lattice parameter at ``T``.
        size: supercell of ``size^3`` conventional cubic cells.
        timestep: MD time step (fs); ``friction``: Langevin friction (1/fs).
        n_steps: sampled steps of each strained run (``2 n_axes`` runs);
            ``n_equil`` equilibration steps (half of it before each strained run).
        n_lattice_iter, lattice_steps: zero-pressure iterations and their steps.
        strain: amplitude of the ``+-`` strain patterns. The central difference
            has a bias of order ``strain**2`` (higher-order elastic constants)
            that the standard error leaves out: for Cu (EMT) near 0 K, C12 lies
            about 0.04 GPa above the static value at 0.005 and 0.2 GPa at 0.01,
            which matters only where the thermal noise is smaller (below ~10 K).
        sample_every: steps between stress samples; ``n_blocks``: blocks of
            the standard error; ``n_axes``: strain patterns (1 to 3).
        seed: seeds the velocities and all Langevin noise.
        lindemann: melting threshold on RMS displacement / nearest-neighbour distance.
        correlated_noise: give the ``+`` and ``-`` runs the same Langevin noise
            (default); False gives them independent noise (for comparison).
        min_block_fs: shortest block (fs); fewer than ``n_blocks`` blocks are
            used when the run is short, so blocks stay longer than the stress
            correlation time (~0.1 ps in metals) and the error stays honest.

    Returns:
        dict with ``C11, C12, C44, a`` and their standard errors ``*_se``
        (``*_se_md``: the block-average part alone, without the propagated
        lattice-parameter error; ``se_dof``: its degrees of freedom), the
        zero-pressure lattice parameter ``a_T``, the residual ``pressure`` and
        its ``pressure_se`` (GPa) of the last lattice stage, the modulus of the
        last correction ``bulk_modulus_lattice`` (GPa), ``n_atoms``, ``atom_steps``, ``md_time``
        (s) and the protocol settings.

    Raises:
        InvalidInput: non-positive temperature or bulk modulus; a protocol too short
            for the standard error (:func:`se_blocks`).
        CalculationFailed: the crystal melted (RMS displacement above
            ``lindemann`` x the nearest-neighbour distance) or is unstable.
    """
    if not (temperature > 0 and math.isfinite(temperature)):
        raise InvalidInput(f"temperature must be positive (K) for MD, got {temperature}")
    if not (bulk_modulus > 0 and math.isfinite(bulk_modulus)):
        raise InvalidInput(f"bulk_modulus must be positive and finite (GPa), got {bulk_modulus}")
    _check_md_settings(a_static=a_static, hydrostatic_strain=hydrostatic_strain, size=size, timestep=timestep,
                       n_steps=n_steps, n_equil=n_equil, n_lattice_iter=n_lattice_iter, strain=strain,
                       friction=friction, sample_every=sample_every, n_axes=n_axes)
    nb = se_blocks(n_steps, sample_every, timestep, n_blocks, n_axes, min_block_fs)  # before any MD
    nb_p = lattice_blocks(lattice_steps, sample_every, timestep, n_blocks, min_block_fs)
    t0 = time.perf_counter()
    ss = np.random.SeedSequence(seed)
    seeds = [int(s.generate_state(1)[0]) for s in ss.spawn(2 + 2 * n_axes)]

    unit = build_crystal(element, structure, 1.0, cubic=True)
    atoms = unit.repeat(size)
    ref_scaled = atoms.get_scaled_positions().copy()
    cell1 = atoms.cell.array.copy()  # for a = 1
    atoms.set_cell(cell1 * a_static, scale_atoms=True)
    attach_calculator(atoms, engine, **(engine_params or {}))
    # a starting lattice parameter far from the static zero-pressure one (a wrong
    # guess, not thermal expansion) is refused before any MD, naming the value
    try:
        s_static = calc_call(lambda: atoms.get_stress(voigt=True), "compute the stress")
    except CalculationFailed as e:
        raise InvalidInput(f"a_static = {a_static:g} A: the static {structure} {element} crystal there fails "
                           f"({e}); expected the equilibrium_lattice_parameter") from e
    p_static = -float(np.mean(s_static[:3])) / units.GPa
    if abs(p_static) / (3.0 * bulk_modulus) > MAX_START_LATTICE_CORRECTION:
        raise InvalidInput(
            f"a_static = {a_static:g} A is not near the static zero-pressure lattice parameter of {structure} "
            f"{element}: the static pressure there is {p_static:.4g} GPa, a lattice correction of "
            f"{p_static / (3.0 * bulk_modulus):+.1%}; expected the equilibrium_lattice_parameter (within "
            f"{MAX_START_LATTICE_CORRECTION:.0%})")
    nn = a_static * {"fcc": 1 / math.sqrt(2), "bcc": math.sqrt(3) / 2, "sc": 1.0, "diamond": math.sqrt(3) / 4}[structure]
    B = bulk_modulus
    atom_steps = 0

    # 1. zero-pressure lattice parameter at T
    MaxwellBoltzmannDistribution(atoms, temperature_K=temperature, rng=np.random.default_rng(seeds[0]))
    Stationary(atoms)
    dyn = make_langevin(atoms, temperature, timestep, friction, seeds[1])
    run_md(dyn, n_equil)
    atom_steps += n_equil * len(atoms)
    a = a_static
    p_mean = p_se = float("nan")
    p_history = []
    for _ in range(max(n_lattice_iter, 1)):
        S = sample_stress(dyn, atoms, lattice_steps, sample_every)
        atom_steps += lattice_steps * len(atoms)
        # Student-t widened for its degrees of freedom, as the elastic constants' errors
        p_mean, p_se, _ = pooled_block_average([-S[:, :3].mean(axis=1)], nb_p)
        p_history.append((a, p_mean, p_se))
        if n_lattice_iter == 0:
            break
        B = secant_bulk_modulus(p_history, bulk_modulus)
        a = a * (1.0 + p_mean / (3.0 * B))
        atoms.set_cell(cell1 * a, scale_atoms=True)
    a_T = a
    a_se = a_T * p_se / (3.0 * B)

    # 2. the state the strained runs branch from
    a_eff = a_T * (1.0 + hydrostatic_strain)
    atoms.set_cell(cell1 * a_eff, scale_atoms=True)
    run_md(dyn, n_equil)
    atom_steps += n_equil * len(atoms)
    u_rms = rms_displacement(atoms, ref_scaled)
    if u_rms > lindemann * nn * (1 + hydrostatic_strain):
        raise CalculationFailed(
            f"{element} {structure} is not crystalline at T = {temperature:g} K, hydrostatic strain "
            f"{hydrostatic_strain:+.4g}: RMS displacement {u_rms:.3f} A exceeds "
            f"{lindemann} x nearest-neighbour distance (melted or broken)"
        )
    cell_ref = atoms.cell.array.copy()
    pos0, mom0 = atoms.get_positions().copy(), atoms.get_momenta().copy()

    # 3. +- strain runs with shared noise, per axis
    c11, c12, c44 = [], [], []
    n_pre = n_equil // 2
    for k in range(n_axes):
        pattern = np.zeros(6)
        pattern[k] = 1.0
        pattern[3:] = 1.0
        S = {}
        for sign in (1, -1):
            atoms.set_cell(cell_ref, scale_atoms=False)
            atoms.set_positions(pos0)
            atoms.set_momenta(mom0)
            strained(atoms, sign * strain * pattern, cell_ref)
            noise = seeds[2 + k] if (correlated_noise or sign == 1) else seeds[2 + n_axes + k]
            d = make_langevin(atoms, temperature, timestep, friction, noise)
            run_md(d, n_pre)
            S[sign] = sample_stress(d, atoms, n_steps, sample_every)
            atom_steps += (n_pre + n_steps) * len(atoms)
        D = (S[1] - S[-1]) / (2.0 * strain)  # samples x 6, dsigma_i / deps
        others = [i for i in range(3) if i != k]
        c11.append(D[:, k])
        c12.append(D[:, others].mean(axis=1))
        c44.append(D[:, 3:].mean(axis=1))
    C11, C11_se, dof = pooled_block_average(c11, nb)
    C12, C12_se, _ = pooled_block_average(c12, nb)
    C44, C44_se, _ = pooled_block_average(c44, nb)
    bad = born_stability(C11, C12, C44)
    if bad is not None:
        raise CalculationFailed(
            f"{element} {structure} at T = {temperature:g} K, hydrostatic strain "
            f"{hydrostatic_strain:+.4g} is mechanically unstable: {bad}"
        )
    # The constants were measured at an estimated lattice parameter; its error
    # (a_se) moves them by dC/dln(a) * a_se/a. The static sensitivity at a_eff
    # (central difference in ln a) propagates it into the standard errors.
    sens = lattice_sensitivity(element, structure, a_eff, engine, engine_params)
    rel_a = a_se / a_T
    se_md = {"C11_se_md": C11_se, "C12_se_md": C12_se, "C44_se_md": C44_se}
    C11_se, C12_se, C44_se = (
        math.hypot(se, sens[k] * rel_a) for k, se in enumerate((C11_se, C12_se, C44_se))
    )
    md_time = time.perf_counter() - t0
    return {
        "C11": C11,
        "C12": C12,
        "C44": C44,
        "a": a_eff,
        "C11_se": C11_se,
        "C12_se": C12_se,
        "C44_se": C44_se,
        "a_se": a_se * (1.0 + hydrostatic_strain),
        "a_T": a_T,
        **se_md,
        "dC_dlna_static": list(sens),
        "pressure": p_mean,
        "pressure_se": p_se,
        "bulk_modulus_lattice": B,
        "lattice_iterations": [list(t) for t in p_history],
        "rms_displacement": u_rms,
        "n_atoms": len(atoms),
        "atom_steps": int(atom_steps),
        "md_time": md_time,
        "us_per_atom_step": md_time / atom_steps * 1e6,
        "temperature": temperature,
        "timestep_fs": timestep,
        "n_steps": n_steps,
        "strain": strain,
        "n_axes": n_axes,
        "n_blocks": nb,
        "se_dof": dof,
        "correlated_noise": bool(correlated_noise),
        "engine": engine_name(engine),
    }
