"""The atomistic oracles driven by a user's own ASE calculator (instances, factories,
calculators that lack stress, raise or carry their own cut-off), checked against
independent ASE computations: central differences of the calculator's stress, cell
relaxation with FrechetCellFilter and slab energies."""

import functools

import numpy as np
import pytest
from ase.build import bulk, fcc111
from ase.calculators.calculator import all_changes
from ase.calculators.emt import EMT
from ase.calculators.lj import LennardJones
from ase.calculators.tersoff import Tersoff, TersoffParameters
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS
from ase.units import GPa

from oracles.atomistic import (
    ElasticConstantsOracle,
    SurfaceOracle,
    static_elastic_constants,
    surface_energy,
)
from oracles.atomistic.crystal import equilibrium_lattice_parameter
from oracles.atomistic.engines import has_asap
from oracles.atomistic.md import finite_temperature_elastic_constants
from oracles.exceptions import InvalidInput

# Tersoff (1988) Si parameters, as in LAMMPS' Si.tersoff
SI = TersoffParameters(m=3.0, gamma=1.0, lambda3=0.0, c=100390.0, d=16.217, h=-0.59825, n=0.78734,
                       beta=1.1e-6, lambda2=1.7322, B=471.18, R=2.85, D=0.15, lambda1=2.4799, A=1830.8)


def tersoff_si():
    return Tersoff({("Si", "Si", "Si"): SI})


def lj_rc20():
    """A factory whose calculator carries a 20 A cut-off that engine_params do not show."""
    return LennardJones(sigma=2.338, epsilon=0.409, rc=20.0, smooth=False)


class EnergyForcesOnly(EMT):
    """EMT that, like many ML potentials, computes no stress."""

    implemented_properties = ["energy", "free_energy", "energies", "forces"]


class FailsAfter(EMT):
    """EMT that raises after a number of calls (a model leaving its domain during MD)."""

    calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        type(self).calls += 1
        if type(self).calls > 150:
            raise RuntimeError("configuration outside the model's domain")
        super().calculate(atoms, properties, system_changes)


def _fd_constants(atoms, h=1e-4, relax=False):
    """6 x 6 dsigma_i/deps_j (GPa) by central differences of the calculator's stress."""
    cell0, pos0 = atoms.cell.array.copy(), atoms.get_scaled_positions()
    C = np.zeros((6, 6))
    pairs = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    for j, (p, q) in enumerate(pairs):
        s = []
        for sign in (1, -1):
            e = np.zeros((3, 3))
            e[p, q] = e[q, p] = sign * (h if p == q else h / 2)  # engineering shear
            atoms.set_cell(cell0 @ (np.eye(3) + e).T, scale_atoms=False)
            atoms.set_scaled_positions(pos0)
            if relax:
                BFGS(atoms, logfile=None).run(fmax=1e-6, steps=1000)
            s.append(atoms.get_stress(voigt=True))
        C[:, j] = (s[0] - s[1]) / (2 * h) / GPa
    return C


def _relaxed_a(element, structure, calc, a_start):
    at = bulk(element, structure, a=a_start, cubic=True)
    at.calc = calc
    BFGS(FrechetCellFilter(at, hydrostatic_strain=True), logfile=None).run(fmax=1e-7, steps=500)
    return float(at.cell[0, 0])


def test_calculator_instance_is_accepted_as_a_template_and_matches_independent_references():
    """An ASE calculator instance was refused ('engine must be one of (...) or a callable');
    it is now copied for each crystal (never attached itself) and gives the constants of
    central differences of its own stress and the lattice parameter of a cell relaxation."""
    template = EMT()
    r = static_elastic_constants("Cu", engine=template)
    assert template.atoms is None  # the instance itself was not used
    assert r["a0"] == pytest.approx(_relaxed_a("Cu", "fcc", EMT(), 3.7), rel=1e-7)  # 3.58983 A
    c = bulk("Cu", "fcc", a=r["a0"], cubic=True)
    c.calc = EMT()
    ref = _fd_constants(c)
    got = np.array([r["C11"], r["C12"], r["C44"]])  # 172.59, 115.43, 89.90 GPa
    assert got == pytest.approx([ref[0, 0], ref[0, 1], ref[3, 3]], rel=1e-6)
    # the oracle takes it too and names it
    res = ElasticConstantsOracle("Cu", engine=EMT()).evaluate([[0.0, 0.0]], fidelity=0)
    assert not res.failed.any() and res.metadata[0]["engine"] == "EMT"
    assert res.Y[0, :3].numpy() == pytest.approx(got, rel=1e-9)
    # surface energy with the instance equals the one with the class as factory
    g = surface_energy("Cu", (1, 0, 0), a=r["a0"], engine=EMT())
    assert g["gamma"] == pytest.approx(surface_energy("Cu", (1, 0, 0), a=r["a0"], engine=EMT)["gamma"], rel=1e-12)


def test_diamond_tersoff_factory_matches_relaxed_finite_differences():
    """Diamond Si through ASE's Tersoff: C44 needs the internal relaxation (69.0 GPa relaxed)."""
    r = static_elastic_constants("Si", "diamond", engine=tersoff_si)
    assert r["a0"] == pytest.approx(_relaxed_a("Si", "diamond", tersoff_si(), 5.5), rel=1e-7)  # 5.4320 A
    c = bulk("Si", "diamond", a=r["a0"], cubic=True)
    c.calc = tersoff_si()
    ref = _fd_constants(c, relax=True)
    got = [r["C11"], r["C12"], r["C44"]]  # 142.54, 75.38, 69.03 GPa
    assert got == pytest.approx([ref[0, 0], ref[0, 1], ref[3, 3]], rel=1e-5)


def _boom():
    return 1 / 0


@pytest.mark.parametrize(
    "engine, params, match",
    [
        (_boom, None, r"engine factory '_boom' failed .*ZeroDivisionError.*expected a callable"),  # was bare
        (np.sin, None, r"engine factory 'sin' failed .*TypeError"),  # was a bare TypeError
        (EMT, {"no_such": 1}, None),  # EMT ignores unknown keywords: fine
        (lambda: EMT(), {"rc": 3.0}, r"failed when called with engine_params \{'rc': 3.0\}"),  # was bare
        (lambda: "EMT", None, r"returned str, expected an ASE calculator"),
        (lambda: EMT, None, r"returned ABCMeta, expected an ASE calculator"),  # a class, not a calculator
        (EMT(), {"rc": 3.0}, r"engine_params \['rc'\] cannot apply to the calculator instance EMT"),
        (3, None, r"engine must be one of .*an ASE calculator or a callable returning one, got 3"),
    ],
)
def test_engines_that_are_not_calculators_are_one_line_errors(engine, params, match):
    if match is None:
        assert static_elastic_constants("Cu", engine=engine, engine_params=params)["C11"] > 0
        return
    with pytest.raises(InvalidInput, match=match) as e:
        static_elastic_constants("Cu", engine=engine, engine_params=params)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(not has_asap(), reason="asap3 not installed")
def test_uncopyable_instance_names_the_factory_to_pass():
    import asap3

    with pytest.raises(InvalidInput, match=r"cannot be copied.*engine=EMT \(its class\)"):
        static_elastic_constants("Cu", engine=asap3.EMT())
    assert static_elastic_constants("Cu", engine=asap3.EMT)["C11"] == pytest.approx(
        static_elastic_constants("Cu", engine="asap")["C11"], rel=1e-12)


def test_calculator_without_stress_is_named_and_still_gives_surface_energy():
    with pytest.raises(InvalidInput, match=r"implemented_properties include 'stress'") as e:
        static_elastic_constants("Cu", engine=EnergyForcesOnly)
    assert "\n" not in str(e.value)
    # energies suffice for the surface energy at a given lattice parameter
    a = equilibrium_lattice_parameter("Cu", engine="emt")
    g = surface_energy("Cu", (1, 1, 1), a=a, engine=EnergyForcesOnly)
    assert g["gamma"] == pytest.approx(surface_energy("Cu", (1, 1, 1), a=a, engine="emt")["gamma"], rel=1e-12)


def test_engine_raising_during_md_is_a_failed_point_not_a_crash():
    """A calculator raising mid-MD escaped the oracle as a bare RuntimeError."""
    o = ElasticConstantsOracle("Cu", engine=FailsAfter, size=2, n_steps=104, lattice_steps=260,
                               n_lattice_iter=1, n_equil=20)
    FailsAfter.calls = 0
    res = o.evaluate([[300.0, 0.0]], fidelity=1)
    assert res.failed.all()
    assert res.reasons[0] == ("CalculationFailed: the engine failed during MD: RuntimeError: "
                              "configuration outside the model's domain")


@pytest.mark.parametrize("fn", [
    lambda a: static_elastic_constants("Cu", engine="emt", a=a),  # was 'mechanically unstable: -4.9e9 GPa'
    lambda a: surface_energy("Cu", a=a, engine="emt"),  # was a neighbour-list overrun, or minutes of EMT
])
def test_lattice_parameter_in_nm_is_refused_naming_the_unit(fn):
    with pytest.raises(InvalidInput, match=r"a = 0.3615 A puts fcc Cu neighbours 0.256 A apart.*"
                                           r"expected a lattice parameter in A \(ASE tabulates 3.61 A\)"):
        fn(0.3615)


def test_cutoff_inside_a_factory_is_honoured_by_the_slab_checks():
    """A factory's own 20 A cut-off was invisible to the thickness and vacuum checks: the
    default 12 A slab in 15 A of vacuum gave gamma 0.22793 eV/A^2 against 0.22806 of a thick
    slab, silently. It is now read from the calculator's parameters."""
    a = equilibrium_lattice_parameter("Cu", engine=lj_rc20)
    with pytest.raises(InvalidInput, match=r"min_thickness = 12.0 A is too thin.*at least 20 A"):
        surface_energy("Cu", (1, 1, 1), a=a, engine=lj_rc20)
    with pytest.raises(InvalidInput, match=r"vacuum = 15.0 A is too small.*at least 20 A"):
        surface_energy("Cu", (1, 1, 1), a=a, engine=lj_rc20, min_thickness=24.0)
    g = surface_energy("Cu", (1, 1, 1), a=a, engine=lj_rc20, min_thickness=24.0, vacuum=24.0)
    b = bulk("Cu", "fcc", a=a)
    b.calc = lj_rc20()
    s = fcc111("Cu", (1, 1, 30), a=a, vacuum=25.0, periodic=True)
    s.calc = lj_rc20()
    area = np.linalg.norm(np.cross(s.cell[0], s.cell[1]))
    ref = (s.get_potential_energy() - len(s) * b.get_potential_energy()) / (2 * area)
    assert g["gamma_eV_A2"] == pytest.approx(ref, rel=1e-9)
    # the oracle raises its slab and vacuum to the cut-off
    o = SurfaceOracle("Cu", engine=functools.partial(LennardJones, sigma=2.338, epsilon=0.409, rc=20.0))
    assert o.min_thickness >= 20.0 and o.vacuum >= 20.0
    # the default engine keeps its slab and vacuum
    d = SurfaceOracle("Cu", engine="emt")
    assert (d.min_thickness, d.vacuum) == (12.0, 15.0)


@pytest.mark.skipif(not has_asap(), reason="asap3 not installed")
def test_md_uses_the_factory_and_the_seed():
    import asap3

    s = static_elastic_constants("Cu", engine="asap")
    kw = dict(a_static=s["a0"], bulk_modulus=s["B"], size=2, n_steps=104, lattice_steps=260,
              n_lattice_iter=1, n_equil=20)
    keys = ("C11", "C12", "C44", "a")
    r1 = finite_temperature_elastic_constants("Cu", "fcc", 300.0, engine=asap3.EMT, seed=3, **kw)
    r2 = finite_temperature_elastic_constants("Cu", "fcc", 300.0, engine="asap", seed=3, **kw)
    r3 = finite_temperature_elastic_constants("Cu", "fcc", 300.0, engine=asap3.EMT, seed=4, **kw)
    assert [r1[k] for k in keys] == [r2[k] for k in keys]
    assert all(r1[k] != r3[k] for k in keys)


@pytest.mark.slow
@pytest.mark.skipif(not has_asap(), reason="asap3 not installed")
def test_md_standard_errors_match_the_spread_over_seeds():
    """8 seeds, 300 K, 108 atoms: the spread of C over seeds against the mean reported
    s.e. (measured 0.42/0.31, 0.21/0.23, 0.16/0.16 GPa for C11, C12, C44)."""
    import asap3

    s = static_elastic_constants("Cu", engine=asap3.EMT)
    kw = dict(a_static=s["a0"], bulk_modulus=s["B"], size=3, n_steps=400, lattice_steps=400,
              n_lattice_iter=2, n_equil=100)
    rows = []
    for seed in range(8):
        r = finite_temperature_elastic_constants("Cu", "fcc", 300.0, engine=asap3.EMT, seed=seed, **kw)
        rows.append([r["C11"], r["C12"], r["C44"], r["C11_se"], r["C12_se"], r["C44_se"]])
    rows = np.array(rows)
    ratio = rows[:, :3].std(axis=0, ddof=1) / rows[:, 3:].mean(axis=0)
    assert np.all((ratio > 0.4) & (ratio < 2.5)), ratio  # 7 degrees of freedom: wide band
