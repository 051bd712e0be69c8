"""Bad physical input on the command line: one line naming the value and what is allowed, exit 2,
nothing computed; the inputs that used to slip through now give the right answer or refuse."""

from __future__ import annotations

import json

import numpy as np
import pytest

from loops.cli import main


def _err(capsys, argv):
    """Run ``scalebridge argv``; (exit code, stderr lines, stdout)."""
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse-level errors
        rc = e.code
    cap = capsys.readouterr()
    return rc, cap.err.strip().splitlines(), cap.out


def _one_line(capsys, argv, *must):
    rc, err, _ = _err(capsys, argv)
    assert rc == 2, (rc, err)
    assert len(err) == 1, err
    for s in must:
        assert s in err[0], (s, err[0])
    return err[0]


@pytest.mark.parametrize(
    "argv, must",
    [
        (["--grid", "1"], ["grid (1, 1) is too coarse", "phase 0 gets no voxel"]),
        (["--dim", "3", "--grid", "600"], ["--grid 600^3 needs about", "GB", "this machine has"]),
        (["--microstructure", "fibres"], ["'fibres' is now spelled 'random_fibres'"]),
        (["--microstructure", "cube"], ["'cube_inclusion'"]),
        (["--radius", "0.2"], ["--radius is now spelled --radius-fraction"]),
        (["--grains", "4"], ["--grains is now spelled --n-grains"]),
        (["--law", "svk", "--finite"], ["'svk' is now spelled 'st_venant_kirchhoff'"]),
        (["--law", "neo_hookean"], ["does not fit small strain"]),
        (["--radius-fraction", "0.7"], ["--radius-fraction = 0.7", "less than 0.5"]),
        (["--microstructure", "laminate", "--radius-fraction", "0.2"], ["does not apply", "--fraction"]),
        (["--E", "1", "10", "--nu", "0.3", "0.6"], ["--nu (phase 1) = 0.6", "less than 0.5"]),
        (["--microstructure", "random_fibres", "--volume-fraction", "0.7"], ["0.7", "jamming"]),
        (["--microstructure", "voronoi_polycrystal", "--E", "1", "2"], ["8 phases", "gives 2"]),
        (["--grid", "x"], ["invalid int value: 'x'"]),
        # options that do not apply to the law, the load or the microstructure asked for are refused,
        # not ignored (each had run with rc 0 computing something else)
        (["--finite", "--strain", "0.02", "0", "0"], ["--strain is the small-strain load", "--F"]),
        (["--F", "1.1", "0", "0", "1"], ["--F is the finite-strain load", "--strain"]),
        (["--cubic", "168", "121", "75"], ["--cubic applies to --law cubic_elastic only"]),
        (["--law", "cubic_elastic", "--E", "1", "10"], ["--E does not apply to --law cubic_elastic", "--cubic"]),
        (["--E", "1", "10", "--K", "1", "2", "--mu", "1", "1"], ["--E/--nu or as --K/--mu, not both"]),
    ],
)
def test_rve_bad_options_one_line_exit_2(capsys, argv, must):
    line = _one_line(capsys, ["rve", *argv], *must)
    assert line.startswith("scalebridge rve: error:")


def test_rve_fibres_with_their_default_radius(capsys):
    rc, err, out = _err(capsys, ["rve", "--grid", "31", "--microstructure", "random_fibres", "--no-tangent"])
    assert rc == 0, err
    res = json.loads(out)
    assert "RandomFibres(volume_fraction=0.3, radius_fraction=0.1" in res["microstructure"]
    # stiff fibres (E = 10) in a soft matrix (E = 1): between the Reuss and Voigt bounds of 30 % fibres
    s11 = res["stress"][0][0] / 0.01
    from oracles.rve.laws import IsotropicElastic

    c = [IsotropicElastic(E, 0.3) for E in (1.0, 10.0)]
    c1111 = [law.lam + 2 * law.mu for law in c]
    assert 1 / (0.7 / c1111[0] + 0.3 / c1111[1]) < s11 < 0.7 * c1111[0] + 0.3 * c1111[1]


def _image(tmp_path, colours, name="img.png"):
    from PIL import Image

    a = np.zeros((12, 12, 3), np.uint8)
    for i, c in enumerate(colours):
        a[4 * i: 4 * i + 4] = c
    Image.fromarray(a).save(tmp_path / name)
    return str(tmp_path / name)


def test_rgb_image_keeps_every_colour(capsys, tmp_path):
    # red and a green of the same grey level (76): a grey conversion would merge them
    path = _image(tmp_path, [(255, 0, 0), (0, 130, 0), (0, 0, 0)])
    from oracles.rve.microstructure import PhaseMap

    pm = PhaseMap(path)
    assert pm.num_phases == 3 and sorted(np.bincount(pm.phase_map().ravel()).tolist()) == [48, 48, 48]
    _one_line(capsys, ["rve", "--microstructure", path], "has 3 colours (phases)", "gives 2")
    rc, err, out = _err(capsys, ["rve", "--microstructure", path, "--E", "1", "2", "3", "--no-tangent"])
    assert rc == 0, err
    # layers normal to axis 0, strain e along them (axis 1): exact laminate solution (plane strain):
    # eps22 = e in every layer, sigma11 = S continuous across layers, mean eps11 = 0
    rc, err, out = _err(capsys, ["rve", "--microstructure", path, "--E", "1", "2", "3", "--no-tangent",
                                 "--strain", "0", "0.01", "0"])
    from oracles.rve.laws import IsotropicElastic

    e = 0.01
    lam = np.array([IsotropicElastic(E, 0.3).lam for E in (1.0, 2.0, 3.0)])
    M = lam + 2 * np.array([IsotropicElastic(E, 0.3).mu for E in (1.0, 2.0, 3.0)])
    S = e * np.mean(lam / M) / np.mean(1 / M)
    eps11 = (S - lam * e) / M
    s22 = np.mean(lam * eps11 + M * e)
    got = json.loads(out)["stress"]
    assert got[0][0] == pytest.approx(S, rel=1e-6) and got[1][1] == pytest.approx(s22, rel=1e-6)


def test_an_image_sets_its_own_grid(capsys, tmp_path):
    """--grid with an image microstructure had been ignored (the run used the image's grid)."""
    path = _image(tmp_path, [(255, 0, 0), (0, 0, 0)])
    _one_line(capsys, ["rve", "--microstructure", path, "--grid", "16"], "--grid does not apply to an image",
              "(12x12)")


def test_unreadable_image_and_npy(capsys, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    _one_line(capsys, ["rve", "--microstructure", str(tmp_path / "bad.png")], "cannot be read")
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    _one_line(capsys, ["rve", "--microstructure", str(tmp_path / "bad.npy")], "not a readable .npy")


@pytest.mark.parametrize(
    "argv, must",
    [
        (["surface", "--thickness", "-1"], ["--thickness = -1.0", "greater than 0"]),
        (["surface", "--thickness", "0"], ["--thickness = 0.0"]),
        (["surface", "--thickness", "2"], ["--thickness = 2 A is too thin", "at least 7.22 A"]),
        (["surface", "--miller", "0", "0", "0"], ["--miller"]),
        (["elastic", "--a-guess", "1e6"], ["--a-guess = 1e+06 A", "expected 2.41 to 5.42 A"]),
        (["surface", "--a-guess", "0.01"], ["--a-guess = 0.01 A"]),
        (["elastic", "--size", "0"], ["--size = 0", "greater than or equal to 2"]),
        (["elastic", "--size", "400"], ["--size = 400", "less than or equal to 40"]),
        (["elastic", "--engine", "lj", "--lj-sigma", "-2", "--lj-epsilon", "0.4"], ["sigma = -2.0 must be positive"]),
        (["elastic", "--engine", "lj", "--lj-sigma", "2.3"], ["--engine lj needs --lj-sigma (A) and --lj-epsilon"]),
        (["elastic", "--engine", "lj"], ["--engine lj needs"]),
        (["surface", "--engine", "emt", "--lj-sigma", "2"], ["--lj-sigma apply only with --engine lj"]),
        (["elastic", "--temperature", "300", "--fidelity", "1", "--seed", "-4"], ["--seed = -4", "greater than or equal to 0"]),
        (["elastic", "--fidelity", "1", "--steps", "50", "--blocks", "13"], ["--blocks = 13 is more than the 12 samples"]),
        (["elastic", "--fidelity", "1", "--steps", "50"], ["--steps = 50 samples 250 fs per strained run", ">= 104"]),
        (["elastic", "--fidelity", "1", "--steps", "4"], ["--steps = 4 gives 1 stress samples"]),
    ],
)
def test_atomistic_bad_options_one_line_exit_2(capsys, argv, must):
    rc, err, out = _err(capsys, argv)
    assert rc == 2 and len(err) == 1, err
    for s in must:
        assert s in err[0], (s, err[0])
    assert json.loads(out)["failed"] is True  # the JSON record says so too


def test_surface_openings_short_of_the_plateau_fail_the_point_by_name(capsys):
    rc, err, out = _err(capsys, ["surface", "--max-opening", "1"])
    rec = json.loads(out)
    assert rc == 1 and rec["failed"] is True and "max_opening = 1 A stops before the decohesion plateau" in rec["reason"]


@pytest.mark.parametrize(
    "patch, must",
    [
        ("[budget]\ncost = inf\n", "budget.cost = inf"),
        ("[budget]\ncalls = true\n", "budget.calls = True"),
        ("[budget]\ncalls = 5\n[initial]\nn = 1e8\n", "initial.n = 100000000.0"),
        ("[budget]\ncalls = 5\n[oracle.x]\n", "unknown key 'oracle.x'"),
    ],
)
def test_campaign_config_errors_one_line(capsys, tmp_path, patch, must):
    f = tmp_path / "c.toml"
    f.write_text('name = "t"\n[oracle]\nname = "branin"\n' + patch.replace("[oracle.x]\n", "") +
                 ("[oracle.x]\n" if "[oracle.x]" in patch else ""))
    rc, err, _ = _err(capsys, ["run", str(f)])
    assert rc == 2 and len(err) == 1 and must in err[0], err


def test_non_oracle_class_is_refused_and_nothing_runs(capsys, tmp_path):
    marker = tmp_path / "ran"
    f = tmp_path / "c.toml"
    f.write_text(f'name = "t"\noracle = {{name = "subprocess:Popen", args = ["touch", "{marker}"]}}\n'
                 "[budget]\ncalls = 3\n")
    rc, err, _ = _err(capsys, ["run", str(f), "--run-dir", str(tmp_path / "run")])
    assert rc == 2 and len(err) == 1 and "not an Oracle subclass" in err[0], err
    assert not marker.exists()


COHESIVE = ["cohesive", "--gamma", "1.3", "--sigma-max", "10", "--C11", "168.4", "--C12", "121.4", "--C44", "75.4"]


@pytest.mark.parametrize(
    "patch, must",
    [
        (["--gamma", "inf"], "--gamma must be a finite number, got inf"),
        (["--sigma-max", "nan"], "--sigma-max must be a finite number"),
        (["--curve", "1000000000"], "--curve must be a number of points in [0, 100000]"),
        (["--C11", "100"], "not mechanically stable"),
        (["--gamma", "x"], "invalid float value: 'x'"),
        (["--gamma", "1e-300"], "--gamma = 1e-300 is out of range"),
        (["--C11", "1e308", "--C44", "1e308"], "--C11 = 1e+308 is out of range"),
        (["--law", "bilinear", "--gamma-t", "2"], "--gamma-t does not apply to the bilinear law"),
    ],
)
def test_cohesive_bad_options_one_line_exit_2(capsys, patch, must):
    _one_line(capsys, COHESIVE + patch, must)


def test_cohesive_curve_and_k_ic(capsys):
    rc, err, out = _err(capsys, COHESIVE + ["--curve", "5"])
    assert rc == 0, err
    res = json.loads(out)
    # Griffith-Irwin: K_Ic = sqrt(E' Gamma) with E' in Pa and Gamma in J/m^2, reported in MPa m^0.5
    o = res["outputs"]
    assert o["K_Ic"] == pytest.approx((o["E_prime"] * 1e9 * o["Gamma"]) ** 0.5 / 1e6, rel=1e-9)
    assert len(res["curve"]["opening_nm"]) == 5


def test_atomistic_argparse_errors_are_one_line(capsys):
    _one_line(capsys, ["surface", "--thickness", "abc"], "invalid float value: 'abc'")
    _one_line(capsys, ["elastic", "--size", "2.5"], "invalid int value: '2.5'")


@pytest.mark.parametrize("where", ["a_file", "a_file/sub"])
def test_run_dir_that_cannot_be_a_directory_is_one_line(capsys, tmp_path, where):
    (tmp_path / "a_file").write_text("x")
    f = tmp_path / "c.toml"
    f.write_text('name = "t"\n[oracle]\nname = "branin"\n[budget]\ncalls = 3\n')
    rc, err, _ = _err(capsys, ["run", str(f), "--run-dir", str(tmp_path / where)])
    assert rc == 2 and len(err) == 1 and "cannot be used" in err[0] and where in err[0], err
    assert (tmp_path / "a_file").read_text() == "x"


@pytest.mark.parametrize("argv", [
    ["conductivity", "--dim", "2", "--grid", "200000", "--microstructure", "cylinders", "--radius", "0.3"],
    ["permeability", "--dim", "3", "--grid", "3000", "--microstructure", "spheres", "--radius", "0.3"],
])
def test_transport_grid_too_large_for_the_machine_is_one_line(capsys, argv):
    """It had ended in numpy's allocation traceback (298 GiB asked for)."""
    _one_line(capsys, argv, "--grid", "needs about", "GB; this machine has", "use a coarser grid")


def test_unreadable_npy_files_and_mismatched_options_are_named(tmp_path, capsys):
    """A pickled .npy is named with what it holds (numpy's message suggested loading it unsafely,
    and `conductivity` passed it through unwrapped); --dim against an image's own dimension, and
    --n-grains 0 and an unstable --cubic name the option."""
    obj = tmp_path / "obj.npy"
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for argv in (["rve", "--microstructure", str(obj)],
                 ["conductivity", "--dim", "2", "--microstructure", str(obj), "--conductivity", "1", "10"],
                 ["permeability", "--dim", "2", "--microstructure", str(obj)]):
        line = _one_line(capsys, argv, "obj.npy", "is not a readable .npy array")
        assert "allow_pickle" not in line and "unsafely" not in line
    img = tmp_path / "pm.npy"
    np.save(img, (np.arange(64).reshape(8, 8) % 2).astype(np.int64))
    _one_line(capsys, ["rve", "--microstructure", str(img), "--dim", "3"], "--dim 3 does not apply", "2D (8x8)")
    _one_line(capsys, ["rve", "--grid", "15", "--microstructure", "voronoi_polycrystal", "--n-grains", "0"],
              "--n-grains must be >= 1, got 0")
    line = _one_line(capsys, ["rve", "--grid", "15", "--law", "cubic_elastic", "--cubic", "1", "2", "1"],
                     "--cubic: C11 = 1.0, C12 = 2.0 are not mechanically stable")
    assert line.count("mechanically stable") == 1
    line = _one_line(capsys, ["rve", "--grid", "9", "--law", "cubic_elastic", "--cubic", "inf", "1", "1"],
                     "--cubic (C11) = inf")
    assert "--C11" not in line and line.count("--cubic") == 1
