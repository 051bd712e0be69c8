"""The ``scalebridge`` command line as a new user meets it: usage and input errors are one line
naming the option and its value, with exit status 2, for every subcommand; Ctrl-C is one line
whenever it comes; paths that are directories (or files) where the other is expected are named
before any work; the JSON says its units."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import loops.cli
from tests.oracles.test_cli_inputs import _err as _run
from tests.oracles.test_cli_inputs import _one_line


@pytest.mark.parametrize("argv, must", [
    (["conductivity", "--grid", "abc"], ["scalebridge conductivity: error:", "--grid", "'abc'"]),
    (["permeability", "--wall", "foo"], ["scalebridge permeability: error:", "--wall", "'foo'"]),
    (["run"], ["scalebridge run: error:", "config"]),
    (["status", "a", "b"], ["scalebridge status: error:", "unrecognized arguments: b"]),
    (["resume"], ["scalebridge resume: error:", "run"]),
    (["fe2", "x.toml", "--provider", "bogus"], ["scalebridge fe2: error:", "--provider", "'bogus'"]),
    (["demo", "--bogus"], ["scalebridge demo: error:", "--bogus"]),
    (["bogus"], ["scalebridge: error:", "'bogus'"]),
])
def test_usage_errors_are_one_line_for_every_command(capsys, argv, must):
    """Before: argparse's usage block and then the error (up to 10 lines) for transport, run,
    resume, status, fe2 and demo; ``demo --bogus`` was blamed on ``scalebridge``."""
    _one_line(capsys, argv, *must)


def test_ctrl_c_while_the_command_imports_is_one_line(capsys, monkeypatch):
    """Ctrl-C in the seconds that ``scalebridge rve`` spends importing torch: before, a
    KeyboardInterrupt traceback of 50 lines and death by SIGINT; now ``interrupted``, 130."""
    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(loops.cli.importlib, "import_module", interrupted)
    rc, err, out = _run(capsys, ["rve", "--grid", "9"])
    assert rc == 130 and err == ["interrupted"] and out == ""


@pytest.mark.parametrize("argv, must", [
    (["conductivity", "--dim", "2", "--grid", "8", "--radius", "inf"], ["--radius must", "inf"]),
    (["conductivity", "--dim", "2", "--grid", "8", "--cg-tol", "0"], ["--cg-tol must", "0.0"]),
    (["conductivity", "--grid", "0"], ["--grid must", "(0, 0, 0)"]),
    (["conductivity", "--dim", "2", "--grid", "8", "--conductivity", "nan", "1"], ["--conductivity", "[nan, 1.0]"]),
    (["conductivity", "--dim", "2", "--grid", "8", "--conductivity", "-1", "1"], ["--conductivity", "[-1.0, 1.0]"]),
    (["conductivity", "--dim", "2", "--grid", "8", "--conductivity", "1"], ["--conductivity needs 2 values", "[1.0]"]),
    (["permeability", "--dim", "2", "--grid", "8", "--voxel-size", "nan"], ["--voxel-size must", "nan"]),
    (["permeability", "--dim", "2", "--grid", "8", "--tol", "2"], ["--tol must", "2.0"]),
    (["permeability", "--dim", "2", "--grid", "8", "--seed", "-1"], ["--seed must", "-1"]),
])
def test_transport_errors_name_the_option(capsys, argv, must):
    """Before: ``error: radius_fraction must lie in (0.0, 0.5), got inf`` (the library's name, not
    the option); ``--conductivity nan 1`` printed a tensor of NaNs and ``--conductivity 1`` blamed
    the phase map."""
    line = _one_line(capsys, argv, *must)
    assert line.startswith(f"scalebridge {argv[0]}: error: "), line


def test_permeability_of_an_empty_image_is_one_line(capsys, tmp_path, monkeypatch):
    """Before: two numpy RuntimeWarnings (``Mean of empty slice``) ahead of the error."""
    monkeypatch.chdir(tmp_path)
    np.save("e.npy", np.zeros((0, 4)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _one_line(capsys, ["permeability", "--microstructure", "e.npy"], "'e.npy'", "(0, 4)")


def test_rve_directory_and_overflowing_load(capsys, tmp_path, monkeypatch):
    """A folder named like an image is not "missing"; a load whose stress overflows float64 is an
    input error naming the load (before: ``error: non-finite stress``, exit 1)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "ms.npy").mkdir()
    (tmp_path / "inclusion").mkdir()  # a folder named like a kind does not shadow the kind
    _one_line(capsys, ["rve", "--microstructure", "ms.npy"], "--microstructure 'ms.npy' is a directory")
    _one_line(capsys, ["rve", "--grid", "9", "--strain", "1e308", "0", "0"],
              "scalebridge rve: error:", "--strain 1e+308 0 0", "not finite")
    rc, err, out = _run(capsys, ["rve", "--grid", "9", "--microstructure", "inclusion"])
    assert rc == 0, err


@pytest.mark.parametrize("argv, must, never", [
    (["elastic", "--temperature", "nan"], "--temperature must be a finite number, got nan", "point 0"),
    (["surface", "--strain", "nan"], "--strain must be a finite number, got nan", "hydrostatic_strain"),
    (["elastic", "--strain", "0.9"], "--strain = 0.9 is outside its bounds", "hydrostatic_strain"),
    (["elastic", "--structure", "bcc"], "pass --a-guess", "a_guess"),
])
def test_atomistic_errors_name_the_option(capsys, argv, must, never):
    """Before: ``input temperature of point 0 is nan``, ``pass a_guess (A)``."""
    line = _one_line(capsys, argv, must)
    assert never not in line


def test_lj_sigma_error_once(capsys):
    """``--lj-sigma`` sets the LJ sigma and its cutoff: before, its error was printed twice."""
    line = _one_line(capsys, ["elastic", "--engine", "lj", "--lj-sigma", "nan", "--lj-epsilon", "0.4"], "--lj-sigma")
    assert line.count("--lj-sigma") == 1, line


COHESIVE = ["cohesive", "--gamma", "1.3", "--sigma-max", "10", "--C11", "168.4", "--C12", "121.4", "--C44", "75.4"]


@pytest.mark.parametrize("extra, must", [
    (["--peak-ratio", "1.5"], "scalebridge cohesive: error: --peak-ratio must lie in (0, 1), got 1.5"),
    (["--r", "3"], "scalebridge cohesive: error: options --r do not apply to the bilinear law; it takes --peak-ratio"),
    (["--law", "ppr", "--lambda-n", "2"], "scalebridge cohesive: error: --lambda-n must lie in (0, 1)"),
    (["--gamma", "-1"], "scalebridge cohesive: error: --gamma must be positive"),
])
def test_cohesive_errors_name_the_option(capsys, extra, must):
    """Before: ``peak_ratio must lie ...`` and ``options ['r'] do not apply ...`` without ``error:``."""
    _one_line(capsys, [*COHESIVE, *extra], must)


def test_directories_where_files_are_expected(capsys, tmp_path, monkeypatch):
    """``run``/``fe2`` of a folder said ``no such config file``; ``status`` of a folder named
    store.sqlite said ``disk I/O error``; an empty store (a campaign starting) said it is no store."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg").mkdir()
    _one_line(capsys, ["run", "cfg"], "cfg: is a directory")
    _one_line(capsys, ["fe2", "cfg"], "cfg: is a directory")
    (tmp_path / "r1" / "store.sqlite").mkdir(parents=True)
    _one_line(capsys, ["status", "r1"], "a directory, not a file")
    (tmp_path / "r2").mkdir()
    (tmp_path / "r2" / "store.sqlite").touch()
    _one_line(capsys, ["status", "r2"], "the run store is empty")


def test_fe2_output_dir_that_is_a_file_is_refused_before_any_work(capsys, tmp_path, monkeypatch):
    """Before: ``fe2: NotADirectoryError: ...`` after the surrogate was trained (seconds to minutes);
    now before any work, naming the option and the file in the way (exit status 2, a bad setting)."""
    from pathlib import Path

    import loops.fe2.run

    def no_work(*a, **kw):
        pytest.fail("the run started (training, solve) before the output directory was checked")

    monkeypatch.setattr(loops.fe2.run, "run_fe2", no_work)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    cfg = str(Path(loops.cli.__file__).resolve().parents[1] / "experiments" / "configs" / "fe2_plate_hole.toml")
    rc, err, _ = _run(capsys, ["fe2", cfg, "--no-mlflow", "--quiet", "--output-dir", "afile/sub"])
    assert rc == 2 and len(err) == 1 and "--output-dir 'afile/sub' cannot be made: 'afile' is a file" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_permeability_json_has_units(capsys):
    """The tensor is in m² and ``tensor_darcy`` in darcy (1 D = 9.869233e-13 m²); the JSON says so."""
    rc, err, out = _run(capsys, ["permeability", "--dim", "2", "--grid", "16", "--microstructure", "spheres",
                                 "--radius", "0.3", "--voxel-size", "2e-6"])
    assert rc == 0, err
    d = json.loads(out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert d["units"]["tensor"] == "m^2" and d["units"]["tensor_darcy"] == "darcy"
    np.testing.assert_allclose(np.array(d["tensor_darcy"]) * 9.869233e-13, d["tensor"], rtol=1e-6, atol=0)
    rc, err, out = _run(capsys, ["conductivity", "--dim", "2", "--grid", "8"])
    assert rc == 0 and json.loads(out)["units"]["wall_time"] == "s"
