"""Static (0 K) Cauchy–Born elastic constants against independent checks."""

import numpy as np
import pytest
from ase.units import GPa

from oracles.atomistic.crystal import (
    build_crystal,
    cubic_constants,
    equilibrium_lattice_parameter,
    static_elastic_constants,
    strained,
    stress_strain_matrix,
    voigt_to_tensor,
)
from oracles.atomistic.engines import attach_calculator, has_asap
from oracles.exceptions import CalculationFailed, InvalidInput

# a Lennard-Jones Cu-like model (Halicioglu–Pound parameters)
LJ = {"sigma": 2.338, "epsilon": 0.409}

# EMT Cu (Jacobsen, Stoltze, Norskov 1996): the "book" values of asap3/test/test_stress.py
EMT_CU = {"C11": 171.6, "C12": 114.8, "C44": 89.0, "B": 134.0}


def test_lennard_jones_cauchy_relation():
    """Pair potential + inversion centre + zero stress -> C12 = C44 exactly."""
    r = static_elastic_constants("Cu", engine="lj", engine_params=LJ)
    assert abs(r["pressure"]) < 1e-9
    assert r["C12"] == pytest.approx(r["C44"], rel=1e-6)
    # not a trivial pass: the lattice is stiff and anisotropic
    assert r["C11"] > 1.5 * r["C12"] > 0


@pytest.mark.skipif(not has_asap(), reason="asap3 EMT not installed")
@pytest.mark.parametrize("name", ["C11", "C12", "C44", "B"])
def test_emt_cu_within_one_percent_of_published(name):
    r = static_elastic_constants("Cu", engine="asap")
    assert r[name] == pytest.approx(EMT_CU[name], rel=0.01)


@pytest.mark.parametrize("engine", ["default", "lj"])
def test_lattice_parameter_is_the_energy_minimum(engine):
    params = LJ if engine == "lj" else {}
    a0 = equilibrium_lattice_parameter("Cu", engine=engine, engine_params=params)
    at = build_crystal("Cu", "fcc", a0)
    attach_calculator(at, engine, **params)
    cell1 = at.cell.array / a0

    def E(a):
        at.set_cell(cell1 * a, scale_atoms=True)
        return at.get_potential_energy()

    h = 1e-4 * a0
    dE = (E(a0 + h) - E(a0 - h)) / (2 * h)
    d2E = (E(a0 + h) - 2 * E(a0) + E(a0 - h)) / h**2
    assert abs(dE) < 1e-6 * d2E * a0  # stationary ...
    assert d2E > 0  # ... and a minimum
    # the energy minimum on a coarse grid brackets it
    grid = a0 * (1 + np.linspace(-0.02, 0.02, 41))
    assert abs(grid[np.argmin([E(a) for a in grid])] - a0) <= 0.001 * a0 + 1e-12


def test_stress_is_strain_derivative_of_energy():
    """sigma_ij = (1/V) dE/deps_ij at a generic, stressed state (finite differences)."""
    at = build_crystal("Cu", "fcc", 3.55, cubic=True)
    attach_calculator(at, "default")
    strained(at, [0.01, -0.004, 0.006, 0.012, -0.008, 0.005])
    cell0 = at.cell.array.copy()
    sigma = at.get_stress(voigt=True)
    V = at.get_volume()
    h = 1e-5
    for j in range(6):
        e = np.zeros(6)
        e[j] = h
        Ep = strained(at.copy(), e, cell0)
        Ep.calc = at.calc
        ep = Ep.get_potential_energy()
        Em = strained(at.copy(), -e, cell0)
        Em.calc = at.calc
        em = Em.get_potential_energy()
        # engineering shear: dE/dgamma_ij = V sigma_ij
        assert (ep - em) / (2 * h) / V == pytest.approx(sigma[j], rel=1e-5, abs=1e-7)


def test_internal_relaxation_path_matches_primitive_cell():
    """The 4-atom cubic cell (relaxed under strain) gives the 1-atom answers."""
    a0 = equilibrium_lattice_parameter("Cu")
    prim = static_elastic_constants("Cu", a=a0)
    conv = static_elastic_constants("Cu", a=a0, cubic_cell=True)
    for k in ("C11", "C12", "C44"):
        assert conv[k] == pytest.approx(prim[k], rel=1e-6)


def test_full_matrix_is_cubic_and_symmetric():
    at = build_crystal("Cu", "fcc", equilibrium_lattice_parameter("Cu"))
    attach_calculator(at, "default")
    C = stress_strain_matrix(at)
    np.testing.assert_allclose(C, C.T, atol=1e-6 * np.abs(C).max())
    C11, C12, C44 = cubic_constants(C)
    expected = np.zeros((6, 6))
    expected[:3, :3] = C12
    expected[np.arange(3), np.arange(3)] = C11
    expected[np.arange(3, 6), np.arange(3, 6)] = C44
    np.testing.assert_allclose(C, expected, atol=1e-6 * C11)


def test_bulk_modulus_from_energy_curvature():
    """B = V d2E/dV2 of the energy-volume curve agrees with (C11 + 2 C12)/3."""
    r = static_elastic_constants("Cu")
    at = build_crystal("Cu", "fcc", r["a0"])
    attach_calculator(at, "default")
    V0 = at.get_volume()
    cell0 = at.cell.array.copy()
    h = 1e-3

    def E(s):
        at.set_cell(cell0 * (1 + s) ** (1 / 3), scale_atoms=True)
        return at.get_potential_energy()

    B = (E(h) - 2 * E(0) + E(-h)) / (h**2 * V0) / GPa
    assert B == pytest.approx(r["B"], rel=1e-4)


def test_voigt_convention():
    t = voigt_to_tensor([1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(t, [[1, 3, 2.5], [3, 2, 2], [2.5, 2, 3]])
    with pytest.raises(InvalidInput, match="6 components"):
        voigt_to_tensor([1, 2, 3])


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="'Qq'"):
        static_elastic_constants("Qq")
    with pytest.raises(InvalidInput, match="cubic"):
        static_elastic_constants("Cu", structure="hcp")
    with pytest.raises(InvalidInput, match="Fe"):
        static_elastic_constants("Fe", a=3.6)
    with pytest.raises(CalculationFailed, match="unstable"):
        static_elastic_constants("Cu", hydrostatic_strain=0.15)


def test_hydrostatic_strain_scales_the_lattice_and_its_pressure_gives_the_bulk_modulus():
    """At ``a0 (1 + e)`` the pressure is the equation of state's: its central difference in
    ``e`` is ``-3 B`` (``B = -V dP/dV``, ``dV/V = 3 de``) to second order in ``e``, with ``B``
    from the elastic constants at ``a0``; expansion softens ``C11`` (anharmonicity)."""
    r0 = static_elastic_constants("Cu")
    e = 0.004
    plus, minus = (static_elastic_constants("Cu", hydrostatic_strain=s) for s in (e, -e))
    assert plus["a"] == pytest.approx(r0["a0"] * (1 + e), rel=1e-12)
    assert abs(r0["pressure"]) < 1e-6 * r0["B"]
    b_eos = -(plus["pressure"] - minus["pressure"]) / (2 * e) / 3
    assert b_eos == pytest.approx((r0["C11"] + 2 * r0["C12"]) / 3, rel=2e-3)
    assert plus["C11"] < r0["C11"] < minus["C11"]
