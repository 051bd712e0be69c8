"""Surface energy, rigid decohesion and the UBER fit."""

import math
import re

import numpy as np
import pytest
from ase.build import fcc100, fcc110, fcc111

from oracles.atomistic.crystal import build_crystal, equilibrium_lattice_parameter
from oracles.atomistic.engines import attach_calculator
from oracles.atomistic.surface import (
    EV_PER_A2_TO_J_PER_M2,
    decohesion_curve,
    fit_uber,
    surface_energy,
    uber_energy,
    uber_traction,
)
from oracles.exceptions import InvalidInput


@pytest.fixture(scope="module")
def a0():
    return equilibrium_lattice_parameter("Cu")


def _ase_slab_gamma(builder, a, layers=9):
    """γ (J/m²) from ASE's own slab builder, a construction independent of ours."""
    slab = builder("Cu", size=(1, 1, layers), a=a, vacuum=10.0)
    attach_calculator(slab, "default")
    bulk = build_crystal("Cu", "fcc", a)
    attach_calculator(bulk, "default")
    e_b = bulk.get_potential_energy() / len(bulk)
    cell = slab.cell.array
    area = np.linalg.norm(np.cross(cell[0], cell[1]))
    return (slab.get_potential_energy() - len(slab) * e_b) / (2 * area) * EV_PER_A2_TO_J_PER_M2


@pytest.mark.parametrize(
    "miller,builder", [((1, 1, 1), fcc111), ((1, 0, 0), fcc100), ((1, 1, 0), fcc110)]
)
def test_cleavage_energy_is_twice_slab_surface_energy(a0, miller, builder):
    d, E = decohesion_curve("Cu", miller, np.linspace(0, 12, 25), a=a0)
    gamma_slab = _ase_slab_gamma(builder, a0)
    assert E[-1] == pytest.approx(2 * gamma_slab, rel=1e-6)
    assert surface_energy("Cu", miller, a=a0)["gamma"] == pytest.approx(gamma_slab, rel=1e-6)
    # the curve is flat beyond the engine's cut-off and rises from 0 monotonically
    assert E[0] == 0 and np.all(np.diff(E) >= -1e-12)


def test_close_packed_surface_has_lowest_energy(a0):
    g = {m: surface_energy("Cu", m, a=a0)["gamma"] for m in [(1, 1, 1), (1, 0, 0), (1, 1, 0)]}
    assert 0 < g[(1, 1, 1)] < g[(1, 0, 0)] < g[(1, 1, 0)]


def test_relaxation_lowers_surface_energy(a0):
    un = surface_energy("Cu", (1, 1, 0), a=a0)
    rel = surface_energy("Cu", (1, 1, 0), a=a0, relax=True, fmax=1e-4)
    assert rel["relax_steps"] > 0
    assert 0.9 * un["gamma"] < rel["gamma"] < un["gamma"]


def test_uber_fit_recovers_synthetic_parameters():
    rng = np.random.default_rng(7)  # seeded: a failure is reproducible
    G, l = rng.uniform(1.0, 5.0), rng.uniform(0.3, 1.5)
    d = np.linspace(0, 10 * l, 60)
    fit = fit_uber(d, uber_energy(d, G, l))
    assert fit.two_gamma == pytest.approx(G, rel=1e-8)
    assert fit.l == pytest.approx(l, rel=1e-8)
    assert fit.sigma_max == pytest.approx(10 * G / (math.e * l), rel=1e-8)
    assert fit.r2 == pytest.approx(1.0, abs=1e-12)


def test_uber_traction_is_energy_gradient_and_peaks_at_l():
    G, l = 2.1, 0.4
    d = np.linspace(0.01, 4, 400)
    h = 1e-6
    fd = (uber_energy(d + h, G, l) - uber_energy(d - h, G, l)) / (2 * h) * 10  # (J/m^2)/A -> GPa
    np.testing.assert_allclose(uber_traction(d, G, l), fd, rtol=1e-6)
    dense = np.linspace(0, 4, 400_001)
    t = uber_traction(dense, G, l)
    assert dense[np.argmax(t)] == pytest.approx(l, abs=1e-4)
    assert t.max() == pytest.approx(10 * G / (math.e * l), rel=1e-9)


def test_emt_decohesion_curve_fits_uber_well(a0):
    d, E = decohesion_curve("Cu", (1, 1, 1), a=a0)
    fit = fit_uber(d, E)
    assert fit.r2 > 0.999
    assert fit.two_gamma == pytest.approx(E[-1], rel=0.02)
    # the peak of the numerical traction of the EMT curve is near the fit's
    t_num = np.gradient(E, d) * 10
    assert fit.sigma_max == pytest.approx(t_num.max(), rel=0.1)
    assert d[np.argmax(t_num)] == pytest.approx(fit.l, abs=0.25)


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="miller"):
        surface_energy("Cu", (0, 0, 0))
    with pytest.raises(InvalidInput, match="miller"):
        surface_energy("Cu", (1, 1))
    with pytest.raises(InvalidInput, match="'Xy'"):
        decohesion_curve("Xy", (1, 1, 1))
    with pytest.raises(InvalidInput, match="openings"):
        decohesion_curve("Cu", (1, 1, 1), [0.0, -1.0, 2.0], a=3.6)
    with pytest.raises(InvalidInput, match="rise"):
        fit_uber([0, 1, 2], [0, 0, 0])


def test_surface_oracle_checks_the_slab_thickness_from_python():
    """The thickness rule of the TOML/CLI settings holds for ``SurfaceOracle(...)`` too."""
    from oracles.atomistic.surface import MIN_SLAB_LATTICE_PARAMETERS, SurfaceOracle

    ok = SurfaceOracle("Cu", engine="emt")
    assert ok.min_thickness == 12.0
    t_min = MIN_SLAB_LATTICE_PARAMETERS * float(ok.a0)
    assert SurfaceOracle("Cu", engine="emt", min_thickness=t_min).min_thickness == t_min
    with pytest.raises(InvalidInput, match=rf"min_thickness = {re.escape(repr(0.5 * t_min))} A is too thin.*{t_min:.3g} A"):
        SurfaceOracle("Cu", engine="emt", min_thickness=0.5 * t_min)
    with pytest.raises(InvalidInput, match="min_thickness must be a length"):
        SurfaceOracle("Cu", engine="emt", min_thickness="thick")
    with pytest.raises(InvalidInput, match="too thin"):  # a cut-off longer than the slab
        SurfaceOracle("Cu", engine="emt", min_thickness=12.0, engine_params={"rc": 13.0})


def _slab_gamma_vacuum(builder, layers, a, **kw):
    """γ (J/m²) of an ASE-built slab with vacuum (independent of ``oriented_crystal``)."""
    slab = builder(kw.pop("symbol", "Cu"), size=(1, 1, layers), a=a, vacuum=10.0, **kw)
    attach_calculator(slab, "default")
    bulk = build_crystal("Cu", "fcc", a)
    attach_calculator(bulk, "default")
    cell = slab.cell.array
    area = np.linalg.norm(np.cross(cell[0], cell[1]))
    e_b = bulk.get_potential_energy() / len(bulk)
    return (slab.get_potential_energy() - len(slab) * e_b) / (2 * area) * EV_PER_A2_TO_J_PER_M2


@pytest.mark.parametrize("thickness", [8.0, 10.0, 14.0])
def test_decohesion_cell_is_a_perfect_crystal_at_any_thickness(a0, thickness):
    """fcc (111) planes stack ABC: the closed periodic cell must hold whole periods, so that
    E(0) is the bulk energy and the plateau is exactly 2 gamma (4 or 7 planes had a fault)."""
    from oracles.atomistic.surface import oriented_crystal

    atoms = oriented_crystal("Cu", "fcc", a0, (1, 1, 1), thickness)
    n = atoms.cell.array[2] @ np.cross(atoms.cell.array[0], atoms.cell.array[1])
    d111 = a0 / math.sqrt(3)
    planes = round(abs(n) / np.linalg.norm(np.cross(atoms.cell.array[0], atoms.cell.array[1])) / d111)
    assert planes % 3 == 0 and planes * d111 >= thickness - 1e-9
    attach_calculator(atoms, "default")
    bulk = build_crystal("Cu", "fcc", a0)
    attach_calculator(bulk, "default")
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(
        bulk.get_potential_energy() / len(bulk), abs=1e-9)
    d, E = decohesion_curve("Cu", (1, 1, 1), np.linspace(0, 10, 21), a=a0, min_thickness=thickness)
    assert E[-1] == pytest.approx(2 * _slab_gamma_vacuum(fcc111, 9, a0), rel=1e-6)


@pytest.mark.parametrize("miller", [(3, 1, 1), (2, 1, 0), (3, 2, 1)])
def test_high_index_cleavage_energy_is_twice_the_slab_surface_energy(a0, miller):
    """For any (hkl), rigid cleavage of the perfect crystal costs exactly 2 gamma of the
    unrelaxed slab (the same planes, cut at the same place); E(0) is the bulk energy."""
    d, E = decohesion_curve("Cu", miller, np.linspace(0, 10, 21), a=a0)
    g = surface_energy("Cu", miller, a=a0)["gamma"]
    assert g > 1.0 and E[-1] == pytest.approx(2 * g, rel=1e-6)


def test_common_factor_in_miller_indices_names_the_same_planes(a0):
    ref = surface_energy("Cu", (1, 1, 1), a=a0)
    for m in [(2, 2, 2), (3, 3, 3), (-2, -2, -2)]:
        s = surface_energy("Cu", m, a=a0)
        assert s["gamma"] == pytest.approx(ref["gamma"], rel=1e-9) and s["n_atoms"] == ref["n_atoms"]
    assert surface_energy("Cu", (2, 2, 0), a=a0)["miller"] == [1, 1, 0]


def test_bcc_111_decohesion_plateau_is_twice_gamma():
    a = 2.84
    d, E = decohesion_curve("Cu", (1, 1, 1), np.linspace(0, 10, 21), structure="bcc", a=a)
    g = surface_energy("Cu", (1, 1, 1), structure="bcc", a=a)["gamma"]
    assert E[0] == 0 and E[-1] == pytest.approx(2 * g, rel=1e-6)


def test_surface_oracle_refuses_openings_too_short_for_the_uber_fit():
    """Openings up to 1 A stop before the curve's plateau: the fitted 2 gamma was off by
    6-30 %; the point fails naming max_opening instead of returning it."""
    import torch

    from oracles.atomistic.surface import SurfaceOracle
    from oracles.exceptions import CalculationFailed

    short = SurfaceOracle("Cu", max_opening=1.0)
    with pytest.raises(CalculationFailed, match=r"max_opening = 1 A"):
        short._evaluate_one(torch.zeros(1, dtype=torch.float64), 0)
    ok = SurfaceOracle("Cu").evaluate(torch.zeros(1, 1, dtype=torch.float64), 0)
    gamma, two_gamma = float(ok.Y[0, 0]), float(ok.Y[0, 1])
    assert two_gamma == pytest.approx(2 * gamma, rel=0.01)


def _bulk_energy_per_atom(structure, a):
    bulk = build_crystal("Cu", structure, a, cubic=True)
    attach_calculator(bulk, "default")
    return bulk.get_potential_energy() / len(bulk)


@pytest.mark.parametrize("structure,miller", [("fcc", (1, 1, 1)), ("fcc", (2, 1, 0)), ("fcc", (3, 1, 1)),
                                              ("bcc", (1, 1, 0)), ("bcc", (2, 1, 1)), ("bcc", (3, 1, 0))])
def test_stacking_period_is_the_fewest_cells_that_make_a_crystal(a0, structure, miller):
    """Reference: ASE's periodic (hkl) cell of p repeats for every p from 1, the first whose
    EMT energy per atom is the bulk's (a stacking fault or overlap at the boundary raises it);
    the oriented cell holds that many repeats and is a crystal."""
    from ase.build import surface as ase_surface

    from oracles.atomistic.surface import oriented_crystal

    conv = build_crystal("Cu", structure, a0, cubic=True)
    e_bulk = _bulk_energy_per_atom(structure, a0)
    for p in range(1, sum(v * v for v in miller) + 1):
        cell = ase_surface(conv, miller, p, vacuum=None, periodic=True)
        cell.pbc = True
        attach_calculator(cell, "default")
        if abs(cell.get_potential_energy() / len(cell) - e_bulk) < 1e-9:
            break
    atoms = oriented_crystal("Cu", structure, a0, miller, min_thickness=1e-3)
    assert len(atoms) == p * len(conv)
    attach_calculator(atoms, "default")
    assert atoms.get_potential_energy() / len(atoms) == pytest.approx(e_bulk, abs=1e-9)


def test_planes_that_repeat_too_rarely_are_refused_at_once(a0):
    """fcc (9 9 7): h^2 + k^2 + l^2 = 211 is odd and prime, so the planes repeat every 211 cells
    (the search over every period up to the cap took minutes before refusing)."""
    from oracles.atomistic.surface import oriented_crystal

    with pytest.raises(InvalidInput, match=r"\(9 9 7\) planes do not repeat within 64 cells \(their period is at least 211"):
        oriented_crystal("Cu", "fcc", a0, (9, 9, 7))
