"""Checks against independent ASE computations, and bad inputs of the public API
refused as one-line named errors (each test takes seconds)."""

import numpy as np
import pytest
from ase.build import bulk, fcc100, fcc111
from ase.calculators.emt import EMT
from ase.data import atomic_numbers, reference_states
from ase.units import GPa, J, m

from oracles.atomistic.crystal import equilibrium_lattice_parameter, static_elastic_constants
from oracles.atomistic.md import finite_temperature_elastic_constants
from oracles.atomistic.surface import surface_energy
from oracles.exceptions import CalculationFailed, InvalidInput

A_CU_ASAP = 3.592786493035862  # static zero-pressure a of asap3 EMT Cu (A)
B_CU_ASAP = 134.77559293260637  # its (C11 + 2 C12) / 3 (GPa)
TINY = dict(engine="asap", size=2, n_steps=104, lattice_steps=260, n_lattice_iter=1, n_equil=20, seed=0)


def _stress_strain_reference(el, a):
    """C11, C12, C44 (GPa) by central differences of ASE's stress, engineering shear."""
    c = bulk(el, "fcc", a=a, cubic=True)
    c.calc = EMT()
    cell0, h = c.cell.array.copy(), 1e-4

    def sig(eps):
        c.set_cell(cell0 @ (np.eye(3) + eps).T, scale_atoms=True)
        return c.get_stress(voigt=True)

    e = np.zeros((3, 3))
    e[0, 0] = h
    d_normal = (sig(e) - sig(-e)) / (2 * h) / GPa
    e = np.zeros((3, 3))
    e[1, 2] = e[2, 1] = h / 2  # engineering gamma_yz = h
    d_shear = (sig(e) - sig(-e)) / (2 * h) / GPa
    return d_normal[0], d_normal[1], d_shear[3]


def test_static_constants_and_surface_energy_match_independent_ase_computation():
    a = equilibrium_lattice_parameter("Cu", engine="emt")
    r = static_elastic_constants("Cu", engine="emt", a=a)
    ref = _stress_strain_reference("Cu", a)
    assert np.allclose([r["C11"], r["C12"], r["C44"]], ref, rtol=1e-6)
    b = bulk("Cu", "fcc", a=a)
    b.calc = EMT()
    eb = b.get_potential_energy()
    for fn, hkl in ((fcc111, (1, 1, 1)), (fcc100, (1, 0, 0))):
        s = fn("Cu", (1, 1, 9), a=a, vacuum=10, periodic=True)
        s.calc = EMT()
        area = np.linalg.norm(np.cross(s.cell[0], s.cell[1]))
        g_ref = (s.get_potential_energy() - len(s) * eb) / (2 * area)  # eV/A^2
        g = surface_energy("Cu", hkl, a=a, engine="emt")
        assert g["gamma_eV_A2"] == pytest.approx(g_ref, rel=1e-8)
        assert g["gamma"] == pytest.approx(g_ref / (J / m**2), rel=1e-8)  # J/m^2


@pytest.mark.parametrize(
    "kw, name",
    [
        (dict(n_axes=4), "n_axes"),  # was accepted: axis 3 is a shear, C11 came out ~152 GPa (C44 ~ 89)
        (dict(strain=0.0), "strain"),  # was accepted: 0/0, C = nan
        (dict(strain=-0.005), "strain"),
        (dict(size=0), "size"),  # was "engine 'asap' cannot handle elements []"
        (dict(size=2.5), "size"),  # was a bare TypeError
        (dict(timestep=0.0), "timestep"),  # was a bare ZeroDivisionError
        (dict(timestep=-5.0), "timestep"),  # was a bare numpy UFuncTypeError
        (dict(sample_every=0), "sample_every"),  # was a bare ZeroDivisionError
        (dict(friction=0.0), "friction"),  # was accepted (NVE, not Langevin)
        (dict(n_equil=-5), "n_equil"),  # was accepted
        (dict(hydrostatic_strain=-1.0), "hydrostatic_strain"),  # was a bare AsapError
        (dict(bulk_modulus=float("inf")), "bulk_modulus"),  # was accepted: no lattice correction
        (dict(a_static=-1.0), "a_static"),  # was a bare AsapError
        (dict(a_static=1.0), "a_static"),  # was a bare, multi-line AsapError (neighbour-list overrun)
        (dict(a_static=3.3), "a_static"),  # 8 % compressed: a wrong start, not thermal expansion
    ],
)
def test_md_bad_settings_are_one_line_errors_naming_the_value(kw, name):
    args = dict(TINY, a_static=A_CU_ASAP, bulk_modulus=B_CU_ASAP) | kw
    with pytest.raises(InvalidInput, match=name) as e:
        finite_temperature_elastic_constants("Cu", "fcc", 10.0, **args)
    assert "\n" not in str(e.value)
    assert repr(kw[name])[:3] in str(e.value) or f"{kw[name]:g}" in str(e.value)


def test_far_off_lattice_guess_names_the_guess_and_the_expected_value():
    tabulated = reference_states[atomic_numbers["Cu"]]["a"]
    for engine, guess in (("emt", 1.0), ("emt", 20.0), ("asap", 1.0)):
        with pytest.raises(CalculationFailed) as e:
            equilibrium_lattice_parameter("Cu", engine=engine, a_guess=guess)
        msg = str(e.value)
        assert "\n" not in msg
        assert f"a_guess = {guess:g} A" in msg and f"{tabulated:.4g}" in msg, msg
    with pytest.raises(InvalidInput, match="a_guess"):
        equilibrium_lattice_parameter("Cu", engine="emt", a_guess="3.6")  # was a bare TypeError


def test_static_hydrostatic_strain_is_named():
    # was "lattice parameter must be positive and finite, got 0.0"
    for bad in (-1.0, float("nan")):
        with pytest.raises(InvalidInput, match="hydrostatic_strain"):
            static_elastic_constants("Cu", engine="emt", a=3.59, hydrostatic_strain=bad)


def test_engine_failures_are_one_line():
    # a = 1 A had reached asap3, which overran its neighbour list (AsapError); the crushed
    # lattice is now named before any engine runs (engine failures: test_probe_user_calculators)
    with pytest.raises(InvalidInput, match="a = 1 A puts") as e:
        static_elastic_constants("Cu", engine="asap", a=1.0)
    assert "\n" not in str(e.value)
