"""Oracle settings schemas: every registered oracle refuses a wrong type, an unknown key and an
out-of-range value with one line; one spelling everywhere; the physical bounds hold physically."""

from __future__ import annotations

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from loops.config import ConfigError, load_config, parse_config
from loops.fe2.config import parse_config as parse_fe2
from loops.oracle_settings import (
    SCHEMAS,
    OracleSettingsError,
    expected_lattice_parameter,
    validate_settings,
)
from loops.registry import ORACLES, build_oracle, oracle_class

ROOT = Path(__file__).resolve().parents[2]
PHASES = [{"law": "isotropic_elastic", "E": 1.0, "nu": 0.3}, {"law": "isotropic_elastic", "E": 20.0, "nu": 0.25}]
RVE = {"phases": PHASES, "microstructure": {"kind": "inclusion", "radius_fraction": 0.2}, "grid": 9}
MICRO = {"microstructure": {"kind": "inclusion", "radius_fraction": 0.2}, "micro_params": {"radius_fraction": [0.1, 0.3]}}

# name -> (valid settings, (key, wrong-type value), (key, out-of-range value))
CASES = {
    "branin": ({}, ("negate", "yes"), ("noise_std", -1.0)),
    "hartmann6": ({"seed": 1}, ("seed", 1.5), ("costs", [0.0])),
    "forrester": ({"costs": [1.0, 10.0]}, ("costs", "cheap"), ("noise_std", [0.1, -0.1])),
    "currin": ({}, ("noise_std", True), ("costs", [1.0, -2.0])),
    "park": ({}, ("negate", 1), ("noise_std", math.inf)),
    "borehole": ({}, ("seed", "0"), ("costs", [1.0, math.nan])),
    "rve": (RVE, ("grid", "31"), ("grid", 0)),
    "stiffness_density": ({"phases": PHASES, **MICRO}, ("densities", "heavy"), ("eps0", 0.5)),
    "two_grid_stiffness": ({"phases": PHASES, **MICRO}, ("grids", [9, 31.0]), ("target", math.inf)),
    "elastic": ({"size": 3}, ("size", 4.0), ("size", 400)),
    "surface": ({"miller": [1, 0, 0]}, ("min_thickness", "12"), ("min_thickness", -1.0)),
}


def _lines(name, kwargs):
    with pytest.raises(OracleSettingsError) as e:
        validate_settings(name, kwargs)
    return e.value.lines


def test_every_registered_oracle_with_a_schema_is_covered():
    assert set(CASES) == set(SCHEMAS)
    assert set(SCHEMAS) <= set(ORACLES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_refuses_wrong_type_unknown_key_and_out_of_range(name):
    good, (tkey, tval), (rkey, rval) = CASES[name]
    assert validate_settings(name, dict(good)) is not None
    for patch, must in (
        ({tkey: tval}, [f"oracle.{tkey}", repr(tval) if not isinstance(tval, list) else ""]),
        ({rkey: rval}, [f"oracle.{rkey}"]),
        ({"radius_fracton": 0.3}, ["unknown key 'oracle.radius_fracton'", "allowed keys", f"'{tkey}'"]),
    ):
        lines = _lines(name, {**good, **patch})
        assert len(lines) == 1 and "\n" not in lines[0], lines
        for s in must:
            assert s in lines[0], (s, lines[0])


@pytest.mark.parametrize("name", sorted(CASES))
def test_schema_keys_are_constructor_parameters(name):
    """A schema never lets through a key its oracle's constructor does not take."""
    params = inspect.signature(oracle_class(name)).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    fields = set(SCHEMAS[name].model_fields)
    assert takes_any or fields <= set(params), fields - set(params)


def test_grid_string_is_refused_in_a_campaign_config():
    with pytest.raises(ConfigError) as e:
        parse_config({"name": "t", "oracle": {"name": "rve", **RVE, "grid": "31"}, "budget": {"calls": 3}})
    assert e.value.lines == ["config: oracle.grid = '31': Input should be a valid integer or a valid list"]


def test_inverted_strain_bounds_are_named_when_the_config_is_read():
    """They had been refused only when the oracle was built, without the key's name."""
    with pytest.raises(ConfigError, match=r"oracle: strain_bounds: need lower < upper in every column, got lower = "
                                          r"0.01, upper = -0.01 in column 0"):
        parse_config({"name": "t", "oracle": {"name": "rve", **RVE, "strain_bounds": [[0.01] * 3, [-0.01] * 3]},
                      "budget": {"calls": 3}})


def test_typo_names_the_key_and_lists_the_allowed_ones():
    micro = {"kind": "random_fibres", "radius_fracton": 0.1}
    lines = _lines("rve", {**RVE, "microstructure": micro})
    assert lines == [
        "unknown key 'oracle.microstructure.radius_fracton'; allowed keys: "
        "['kind', 'max_attempts', 'min_gap', 'radius_fraction', 'seed', 'volume_fraction']"
    ]


@pytest.mark.parametrize(
    "patch, new",
    [
        ({"phases": [{"law": "isotropic", "E": 1.0, "nu": 0.3}, PHASES[1]]}, "'isotropic_elastic'"),
        ({"phases": [PHASES[0], {"law": "NeoHookean", "E": 1.0, "nu": 0.3}]}, "'neo_hookean'"),
        ({"phases": [{"law": "svk", "E": 1.0, "nu": 0.3}, PHASES[1]]}, "'st_venant_kirchhoff'"),
        ({"microstructure": {"type": "inclusion"}}, "'kind'"),
        ({"microstructure": {"kind": "RandomFibres"}}, "'random_fibres'"),
        ({"microstructure": {"kind": "fibres"}}, "'random_fibres'"),
        ({"microstructure": {"kind": "cube"}}, "'cube_inclusion'"),
        ({"microstructure": {"kind": "voronoi"}}, "'voronoi_polycrystal'"),
    ],
)
def test_old_spellings_name_the_new_one(patch, new):
    lines = _lines("rve", {**RVE, **patch})
    assert len(lines) == 1 and "now spelled" in lines[0] and new in lines[0], lines


def test_fe2_config_uses_the_same_spellings():
    base = {
        "name": "t", "dirichlet": [{"boundary": "left", "component": 0}],
        "material": {"provider": "oracle", "rve": {
            "phases": [{"law": "neo_hookean", "E": 1.0, "nu": 0.3}] * 2,
            "microstructure": {"kind": "inclusion", "radius_fraction": 0.2}, "grid": [5, 5]}},
    }
    cfg = parse_fe2(base)
    assert type(cfg.material.rve.build().microstructure).__name__ == "Inclusion"
    for rve, new in (
        ({"phases": [{"law": "NeoHookean", "E": 1.0, "nu": 0.3}, {"E": 1.0, "nu": 0.3}]}, "'neo_hookean'"),
        ({"microstructure": {"kind": "Inclusion", "radius_fraction": 0.2}}, "'inclusion'"),
    ):
        data = json.loads(json.dumps(base))
        data["material"]["rve"].update(rve)
        with pytest.raises(ConfigError) as e:
            parse_fe2(data)
        assert len(e.value.lines) == 1 and "now spelled" in e.value.lines[0] and new in e.value.lines[0]


def test_experiment_configs_validate_and_build():
    for f in sorted((ROOT / "experiments" / "configs").glob("*.toml")):
        if f.name.startswith("fe2"):
            parse_fe2(__import__("loops.config", fromlist=["read_toml"]).read_toml(f))
            continue
        cfg = load_config(f)
        if cfg.oracle.name in ("stiffness_density", "two_grid_stiffness", "rve"):
            o = build_oracle(cfg.oracle.spec())
            assert o.bounds.shape[0] == 2


def test_build_oracle_checks_settings_before_constructing():
    with pytest.raises(Exception, match=r"oracle\.grid = '31'"):
        build_oracle({"name": "rve", **RVE, "grid": "31"})
    o = build_oracle({"name": "rve", **RVE})
    assert o.grid == (9, 9)


def test_memory_refusal_names_the_estimate_and_the_machine():
    lines = _lines("rve", {**RVE, "grid": 600, "dim": 3})
    assert len(lines) == 1 and "600^3 needs about" in lines[0] and "GB" in lines[0] and "this machine has" in lines[0]


@pytest.mark.slow
def test_memory_estimate_matches_a_measured_solve():
    """The per-voxel estimate is within a factor 2 of the peak-memory growth of a real 2D solve."""
    n = 511
    code = f"""
import json, torch
torch.set_num_threads(1)
from oracles.rve import RVEOracle, Inclusion, IsotropicElastic
def hwm():  # peak resident set of this process (bytes)
    line = next(s for s in open('/proc/self/status') if s.startswith('VmHWM'))
    return int(line.split()[1]) * 1024
base = hwm()
o = RVEOracle([IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)], Inclusion(0.25), grid={n}, dim=2)
o.homogenize(torch.diag(torch.tensor([0.01, 0.0], dtype=torch.float64)), tangent=True)
print(json.dumps(hwm() - base))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300,
                         env={"OMP_NUM_THREADS": "1"})
    measured = float(out.stdout.strip().splitlines()[-1])
    from oracles.rve.microstructure import grid_memory_estimate

    est = grid_memory_estimate((n, n), finite=False)
    assert 0.5 * est <= measured <= 2.0 * est, (measured, est)


def test_lattice_guess_bounds_scale_with_the_element():
    a_cu = expected_lattice_parameter("Cu", "fcc")
    assert a_cu == pytest.approx(3.61, abs=0.01)  # ASE's tabulated fcc Cu
    # bcc Fe from the tabulated value; fcc Fe from covalent radii (2 r / (1/sqrt 2))
    assert expected_lattice_parameter("Fe", "bcc") == pytest.approx(2.87, abs=0.01)
    assert 3.3 < expected_lattice_parameter("Fe", "fcc") < 4.0  # fcc Fe (gamma) is about 3.6 A
    assert validate_settings("elastic", {"a_guess": 1.4 * a_cu}) is not None
    lines = _lines("elastic", {"a_guess": 1e6})
    assert "a_guess = 1e+06 A" in lines[0] and "expected 2.41 to 5.42 A" in lines[0]


def test_lattice_guess_at_the_bounds_finds_the_same_lattice():
    """Guesses at the edges of the accepted range still bracket the same zero-pressure lattice."""
    from loops.oracle_settings import A_GUESS_FACTOR
    from oracles.atomistic import elastic

    a = expected_lattice_parameter("Cu", "fcc")
    ref = elastic.equilibrium_lattice_parameter("Cu", "fcc", "emt")
    for guess in (a / A_GUESS_FACTOR, a * A_GUESS_FACTOR):
        assert elastic.equilibrium_lattice_parameter("Cu", "fcc", "emt", a_guess=guess) == pytest.approx(ref, rel=1e-8)


def test_thinnest_allowed_slab_gives_the_thick_slab_surface_energy():
    """At the minimum thickness (2 lattice parameters) gamma equals a 16 A slab's; half of it is refused."""
    from oracles.atomistic.surface import MIN_SLAB_LATTICE_PARAMETERS, surface_energy

    a = expected_lattice_parameter("Cu", "fcc")
    t_min = MIN_SLAB_LATTICE_PARAMETERS * a
    for miller in ((1, 1, 1), (1, 0, 0), (1, 1, 0)):
        thick = surface_energy("Cu", miller, engine="emt", min_thickness=16.0)["gamma"]
        thin = surface_energy("Cu", miller, engine="emt", min_thickness=t_min)["gamma"]
        assert thin == pytest.approx(thick, rel=1e-6), miller
    # half of it is refused by the function too (it had returned a gamma 50 % off)
    with pytest.raises(ValueError, match="too thin"):
        surface_energy("Cu", (1, 1, 1), engine="emt", min_thickness=0.5 * t_min)
    lines = _lines("surface", {"min_thickness": 0.9 * t_min})
    assert "too thin" in lines[0] and f"{t_min:.3g} A" in lines[0]


def test_settings_object_from_python_and_a_default_thickness_that_follows_the_lattice():
    from loops.oracle_settings import RVESettings, settings_kwargs

    st = RVESettings(phases=PHASES, microstructure={"kind": "inclusion"}, grid=9)
    cfg = parse_config({"name": "t", "oracle": st, "budget": {"calls": 3}})
    assert cfg.oracle.spec() == {"name": "rve", "phases": PHASES, "microstructure": {"kind": "inclusion"}, "grid": 9}
    # bcc Cs (a = 6.05 A): the 12 A default slab is thinner than two lattice parameters
    kw = settings_kwargs(validate_settings("surface", {"element": "Cs", "structure": "bcc"}))
    assert kw["min_thickness"] >= 2 * expected_lattice_parameter("Cs", "bcc")
    assert "min_thickness" not in settings_kwargs(validate_settings("surface", {}))


def test_phase_map_file_sets_the_grid(tmp_path):
    import numpy as np

    # a laminate of two layers per three voxels along axis 0: the exact Reuss (series) stiffness
    pm = np.zeros((9, 6), dtype=np.int64)
    pm[::3] = 1
    np.save(tmp_path / "pm.npy", pm)
    spec = {"name": "rve", "phases": PHASES, "microstructure": {"kind": "phase_map", "source": str(tmp_path / "pm.npy")}}
    o = build_oracle(spec)
    assert o.grid == (9, 6)
    from oracles.rve.laws import IsotropicElastic

    M = np.array([(lambda law: law.lam + 2 * law.mu)(IsotropicElastic(p["E"], p["nu"])) for p in PHASES])
    reuss = 1 / (2 / 3 / M[0] + 1 / 3 / M[1])  # sigma11 / eps11 with eps22 = 0 across the layers
    assert o.evaluate([[0.01, 0.0, 0.0]]).Y[0, 0].item() / 0.01 == pytest.approx(reuss, rel=1e-6)
    lines = _lines("rve", {"phases": PHASES, "microstructure": {"kind": "phase_map", "source": str(tmp_path / "no.npy")}})
    assert len(lines) == 1 and "does not exist" in lines[0]


@pytest.mark.parametrize(
    "rve, load, must",
    [
        ({"grid": ["15", "15"]}, {}, "config: material.rve.grid.0 = '15': Input should be a valid integer"),
        ({}, {"n_steps": 5.0}, "config: load.n_steps = 5.0: Input should be a valid integer"),
        ({"phases": [{"E": True, "nu": 0.3}, {"E": 1.0, "nu": 0.3}]}, {}, "material.rve.phases.0.E = True"),
        ({"grid": [15, 15, 15, 15]}, {}, "at most 3 items"),
    ],
)
def test_fe2_numbers_are_what_they_say(rve, load, must):
    data = {
        "name": "t", "dirichlet": [{"boundary": "left", "component": 0}], "load": load,
        "material": {"provider": "oracle", "rve": {
            "phases": [{"E": 1.0, "nu": 0.3}] * 2, "microstructure": {"kind": "inclusion"}, "grid": [15, 15], **rve}},
    }
    with pytest.raises(ConfigError) as e:
        parse_fe2(data)
    assert len(e.value.lines) == 1 and must in e.value.lines[0], e.value.lines


@pytest.mark.parametrize("key, value", [("E", math.nan), ("nu", math.nan)])
def test_nan_is_named_as_not_finite_not_as_out_of_range(key, value):
    """NaN fails every bound (NaN > 0 is false); the line must name what is wrong with it."""
    phases = [{**PHASES[0], key: value}, PHASES[1]]
    lines = _lines("rve", {**RVE, "phases": phases})
    assert len(lines) == 1 and "finite number" in lines[0] and repr(value) in lines[0], lines
