"""Config validation, the ``scalebridge fe2`` command, outputs, plots and MLflow tracking."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from loops.cli import main as scalebridge
from loops.fe2.config import ConfigError, load_config, parse_config

BASE = """
name = "t"
[mesh]
kind = "rectangle"
width = 2.0
height = 1.0
nx = 4
ny = 2
[[dirichlet]]
boundary = "left"
component = 0
[[dirichlet]]
boundary = "bottom"
component = 1
[[dirichlet]]
boundary = "right"
component = 0
value = 0.1
[[dirichlet]]
boundary = "top"
component = 1
[load]
n_steps = 2
[material]
provider = "analytic"
[material.analytic]
E = 10.0
nu = 0.3
"""


def _write(tmp_path, text, name="c.toml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def _run_cli(tmp_path, capsys, *extra):
    # output_dir is a top-level key: it goes before the first table
    cfg = _write(
        tmp_path, BASE.replace('name = "t"', f'name = "t"\noutput_dir = "{tmp_path / "out"}"', 1)
    )
    assert scalebridge(["fe2", str(cfg), "--quiet", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_cli_analytic_run_writes_outputs(tmp_path, capsys):
    out = _run_cli(tmp_path, capsys, "--no-mlflow")
    assert out["mlflow_run_id"] is None
    d = Path(out["output_dir"])
    assert d.parent == tmp_path / "out" and d.name.startswith("t-")
    assert parse_config(json.loads((d / "config.json").read_text())).name == "t"
    summary = json.loads((d / "summary.json").read_text())
    assert [s["load_factor"] for s in summary["steps"]] == pytest.approx([0.5, 1.0])
    for png in ("deformed_stress.png", "force_displacement.png"):
        assert (d / png).read_bytes()[:4] == b"\x89PNG"
    res = np.load(d / "results.npz")
    assert res["P"].shape == (2, summary["n_gauss"], 2, 2)
    # uniaxial strain F = diag(1.05, 1): the reaction is P11 times the height
    import torch

    from loops.fe2.providers import NeoHookean

    law = NeoHookean.from_young(10.0, 0.3)
    F = torch.tensor([[[1.05, 0.0], [0.0, 1.0]]], dtype=torch.float64)
    np.testing.assert_allclose(
        out["final_reaction"], float(law.material_response(F).P[0, 0, 0]) * 1.0, rtol=1e-9
    )


@pytest.mark.slow  # creating the sqlite MLflow store takes tens of seconds on a busy machine
def test_cli_tracks_the_run_in_mlflow(tmp_path, capsys):
    out = _run_cli(tmp_path, capsys)
    # one MLflow run with per-step metrics and the PNGs as artifacts
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    run = client.get_run(out["mlflow_run_id"])
    hist = client.get_metric_history(run.info.run_id, "reaction")
    assert [m.step for m in hist] == [0, 1]
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"deformed_stress.png", "force_displacement.png", "summary.json"} <= names
    assert run.data.params["material.provider"] == "analytic"


def test_config_errors_are_one_line_and_name_the_key(tmp_path, capsys):
    bad = _write(tmp_path, BASE.replace("n_steps = 2", "n_steps = 2\nn_stepz = 3"))
    assert scalebridge(["fe2", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "load.n_stepz" in err[0] and "n_steps" in err[0]
    with pytest.raises(ConfigError, match="needs a \\[material.rve\\]"):
        parse_config(
            {
                "name": "x",
                "dirichlet": [{"boundary": "left", "component": 0}],
                "material": {"provider": "oracle"},
            }
        )
    with pytest.raises(ConfigError, match="exactly one"):
        parse_config(
            {
                "name": "x",
                "dirichlet": [{"boundary": "left", "component": 0}],
                "material": {
                    "provider": "adaptive",
                    "rve": {"phases": [{"E": 1.0, "nu": 0.3}]},
                    "adaptive": {"tolerance": 1e-6, "target_rel_error": 0.01},
                },
            }
        )
    with pytest.raises(ConfigError, match="component"):
        parse_config({"name": "x", "dirichlet": [{"boundary": "left", "component": 3}]})
    # a traction with too few components says so (before: a "missing key traction.0.traction.2")
    with pytest.raises(ConfigError, match=r"traction.0.traction: expected 2 \(2D\) or 3 \(3D\) components, got 1"):
        parse_config({"name": "x", "dirichlet": [{"boundary": "left", "component": 0}],
                      "traction": [{"boundary": "right", "traction": [0.1]}]})
    with pytest.raises(ConfigError, match=r"traction\[0\] must have 2 components for a 2D mesh"):
        parse_config({"name": "x", "dirichlet": [{"boundary": "left", "component": 0}],
                      "traction": [{"boundary": "right", "traction": [0.1, 0.0, 0.0]}]})
    with pytest.raises(ConfigError, match="no such config"):
        load_config(tmp_path / "missing.toml")


def test_unknown_boundary_fails_cleanly(tmp_path, capsys):
    bad = _write(tmp_path, BASE.replace('boundary = "bottom"', 'boundary = "bottm"'))
    assert scalebridge(["fe2", str(bad), "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "'bottm'" in err and "Traceback" not in err


def test_a_reaction_on_a_boundary_or_component_the_mesh_lacks_fails_before_solving(tmp_path, capsys, monkeypatch):
    """Checked against the mesh before anything is solved (before, after the whole load path)."""
    import loops.fe2.run as run

    def no_solve(*a, **k):
        raise AssertionError("solved before the config was checked")

    monkeypatch.setattr(run, "make_solver", no_solve)
    bad = _write(tmp_path, BASE.replace("[load]", '[load]\nreaction_boundary = "hole"'))
    assert scalebridge(["fe2", str(bad), "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "load.reaction_boundary = 'hole' is not a boundary of the mesh; known: ['bottom', 'left', 'right', 'top']" in err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
    bad = _write(tmp_path, BASE.replace("[load]", "[load]\nreaction_component = 2"))
    with pytest.raises(ConfigError, match=r"load.reaction_component = 2 \(z\) needs a 3D mesh"):
        load_config(bad)


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".hidden", ""])
def test_a_run_name_is_a_plain_name(tmp_path, name):
    """The run directory is <output_dir>/<name>-<time>: a name with a path would write elsewhere."""
    with pytest.raises(ConfigError, match="name"):
        load_config(_write(tmp_path, BASE.replace('name = "t"', f'name = "{name}"')))


def test_a_run_that_stops_converging_keeps_its_converged_steps(tmp_path, capsys):
    """A load path that inverts elements part way: the converged steps and the reason stay in the
    run directory, and the one-line error says where."""
    text = BASE.replace("value = 0.1", "value = -2.5").replace("n_steps = 2", "n_steps = 4")
    bad = _write(tmp_path, text)
    assert scalebridge(["fe2", str(bad), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    (out,) = (tmp_path / "o").iterdir()
    assert "fe2: NotConverged" in err and f"converged steps in {out}/steps.jsonl" in err
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    failed = json.loads((out / "failed.json").read_text())
    assert steps and failed["converged_steps"] == len(steps) and failed["error"].startswith("NotConverged")
    assert all(0 < s["load_factor"] < 1 for s in steps) and (out / "config.json").exists()
    # a finished run's steps.jsonl holds every step, with the summary's reactions
    good = _write(tmp_path, BASE, name="good.toml")
    assert scalebridge(["fe2", str(good), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "g")]) == 0
    (out,) = (tmp_path / "g").iterdir()
    summary = json.loads((out / "summary.json").read_text())
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["reaction"] for s in steps] == pytest.approx([s["reaction"] for s in summary["steps"]], rel=1e-12)
    assert not (out / "failed.json").exists()


def test_an_output_directory_that_is_a_file_is_one_line(tmp_path, capsys):
    """--output-dir naming an existing file: one line and exit status 2, a bad setting like a bad
    config (it had ended in a NotADirectoryError traceback)."""
    good = _write(tmp_path, BASE, name="good.toml")
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    assert scalebridge(["fe2", str(good), "--quiet", "--no-mlflow", "--output-dir", str(afile)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fe2: ") and "Error" in err[0] and str(afile) in err[0], err


@pytest.mark.parametrize("k", [2, 3])
def test_linearized_law_recovers_an_isotropic_laws_constants(k):
    """The fallback of the tolerance derivation in 2D and 3D: a Neo-Hookean law's tangent at
    F = I gives back its own Lame constants (before, 3D failed on a 2 x 2 F)."""
    from loops.fe2.providers import NeoHookean
    from loops.fe2.run import linearized_law

    law = NeoHookean(mu=3.0, lam=7.0)
    lin = linearized_law(law, k)
    assert (lin.mu, lin.lam) == pytest.approx((3.0, 7.0), rel=1e-12)


def test_experiment_config_validates():
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    for path in sorted((root / "experiments" / "configs").glob("fe2_*.toml")):
        cfg = load_config(path)
        # the campaign's fibre composite: two phases, stiff fibre in a soft matrix
        phases = cfg.material.rve.phases
        assert len(phases) == 2 and phases[1].E > phases[0].E


def test_adaptive_run_with_a_homogeneous_rve_end_to_end(tmp_path):
    """Surrogate trained on the RVE, target-derived tolerance, on-the-fly learning, oracle map."""
    from loops.fe2.run import run_fe2

    data = {
        "name": "adaptive",
        "output_dir": str(tmp_path / "o"),
        "mesh": {"kind": "plate_with_hole", "n_theta": 2, "n_radial": 2},
        "dirichlet": [
            {"boundary": "left", "component": 0},
            {"boundary": "bottom", "component": 1},
            {"boundary": "right", "component": 0, "value": 0.08},
        ],
        "load": {"n_steps": 3},
        "material": {
            "provider": "adaptive",
            "rve": {
                # two identical phases: a homogeneous RVE
                "phases": [{"E": 10.0, "nu": 0.3}, {"E": 10.0, "nu": 0.3}],
                "microstructure": {"kind": "inclusion", "radius_fraction": 0.2},
                "grid": [5, 5],
            },
            "surrogate": {"train_points": 12, "h_max": 0.02},
            "adaptive": {"target_rel_error": 0.005, "max_learn": 8},
        },
        "executor": {"kind": "serial"},
        "tracking": {"enabled": False},
    }
    run = run_fe2(parse_config(data))
    s = run.summary
    assert s["n_oracle_evaluations"] > 0 and s["n_surrogate_evaluations"] > 0
    assert sum(st["n_learned"] for st in s["steps"]) > 0
    assert (run.out_dir / "oracle_map.png").exists() and run.out_dir.parent == tmp_path / "o"
    # one phase: the RVE is the Neo-Hookean law, so compare with single scale
    from loops.fe2.providers import NeoHookean
    from loops.fe2.run import make_solver

    cfg = parse_config(data)
    ref = make_solver(cfg, NeoHookean.from_young(10.0, 0.3)).solve(n_steps=3)
    R, R_ref = s["steps"][-1]["reaction"], ref.final.reactions["right"][0]
    assert abs(R - R_ref) <= 0.005 * abs(R_ref)


# ----------------------------------------------------------------- run directories, tracking, errors


def test_a_second_run_never_overwrites_the_first(tmp_path, capsys):
    first = _run_cli(tmp_path, capsys, "--no-mlflow")["output_dir"]
    stamp = (Path(first) / "summary.json").stat().st_mtime_ns
    second = _run_cli(tmp_path, capsys, "--no-mlflow")["output_dir"]
    assert first != second and Path(second).parent == Path(first).parent
    assert (Path(first) / "summary.json").stat().st_mtime_ns == stamp
    assert (Path(second) / "summary.json").exists()


def test_no_mlflow_touches_no_tracking_store(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = _write(tmp_path, BASE)
    assert scalebridge(["fe2", str(cfg), "--quiet", "--no-mlflow"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert Path(out["output_dir"]).parent == Path("runs/fe2")
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "mlruns").exists()


def test_unreachable_tracking_server_costs_seconds_not_minutes(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # nothing listens there
    cfg = _write(
        tmp_path, BASE.replace('name = "t"', f'name = "t"\noutput_dir = "{tmp_path / "out"}"', 1)
    )
    t0 = time.perf_counter()
    assert scalebridge(["fe2", str(cfg), "--quiet"]) == 0
    assert time.perf_counter() - t0 < 60  # MLflow's own defaults retry for minutes
    cap = capsys.readouterr()
    out = json.loads(cap.out)
    assert out["mlflow_run_id"] is None and (Path(out["output_dir"]) / "summary.json").exists()
    # one warning line on stderr that names the server and where the outputs are
    lines = [ln for ln in cap.err.splitlines() if "127.0.0.1:9" in ln]
    assert len(lines) == 1 and lines[0].startswith("TrackingWarning: ") and out["output_dir"] in lines[0]


def _surrogate_config(tmp_path, uri):
    text = BASE.replace('provider = "analytic"', 'provider = "surrogate"')
    text = text.replace("[material.analytic]\nE = 10.0\nnu = 0.3\n", f'[material.surrogate]\nuri = "{uri}"\n')
    return _write(tmp_path, text, "s.toml")


def test_missing_registered_model_is_one_line_naming_the_store(tmp_path, capsys, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'absent.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    cfg = _surrogate_config(tmp_path, "models:/rve_gp/7")
    assert scalebridge(["fe2", str(cfg), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "models:/rve_gp/7" in err[0] and uri in err[0] and "MLFLOW_TRACKING_URI" in err[0]
    assert not (tmp_path / "absent.db").exists()


def test_tampered_surrogate_directory_is_one_line(tmp_path, capsys):
    import torch

    from surrogates import Dataset
    from surrogates.base import save_surrogate
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    H = 0.02 * (2 * torch.rand(8, 4, generator=g, dtype=torch.float64) - 1)
    gp = GPSurrogate.from_dataset(Dataset(X=H, Y=10 * H), n_restarts=1, maxiter=20)
    d = save_surrogate(gp, tmp_path / "gp")
    (d / "state.pt").write_bytes((d / "state.pt").read_bytes()[:64])
    cfg = _surrogate_config(tmp_path, str(d))
    assert scalebridge(["fe2", str(cfg), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert str(d) in err[0] and "damaged or were edited" in err[0]


def test_a_config_for_the_other_command_is_one_line_naming_it(tmp_path):
    from loops.config import parse_config as parse_campaign

    with pytest.raises(ConfigError) as err:
        parse_campaign({"name": "x", "mesh": {"kind": "box"}, "load": {}}, source="c.toml")
    assert err.value.lines == ["c.toml: keys ['mesh', 'load'] belong to an FE² config; run it with `scalebridge fe2`"]
    with pytest.raises(ConfigError) as err:
        parse_config({"name": "x", "oracle": {"name": "branin"}, "budget": {"calls": 5}}, source="f.toml")
    assert err.value.lines == ["f.toml: keys ['oracle', 'budget'] belong to a campaign config; run it with "
                               "`scalebridge run`"]


def test_a_surrogate_of_another_dimension_is_refused_in_one_line(tmp_path, capsys):
    """A 3D constitutive surrogate (F 3 x 3) on a 2D mesh had failed at the first material call
    with 'F must be n x 3 x 3, got shape (1, 2, 2)', which names neither the model nor the mesh."""
    import torch

    from surrogates import Dataset
    from surrogates.base import save_surrogate
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    H = 0.02 * (2 * torch.rand(12, 9, generator=g, dtype=torch.float64) - 1)
    gp = GPSurrogate.from_dataset(Dataset(X=H, Y=10 * H), n_restarts=1, maxiter=20)
    d = save_surrogate(gp, tmp_path / "gp3d")
    cfg = _surrogate_config(tmp_path, str(d))
    assert scalebridge(["fe2", str(cfg), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert f"material.surrogate.uri = '{d}' is a 3D constitutive surrogate (F 3 x 3); the mesh (rectangle) is 2D" in err[0]


def test_a_run_that_fails_at_its_first_step_says_no_step_converged(tmp_path, capsys):
    """The message had pointed at a steps.jsonl that is not written when no load step completed (sub-increments of the first step may have converged)."""
    bad = _write(tmp_path, BASE.replace("value = 0.1", "value = -2.5").replace("n_steps = 2", "n_steps = 1"))
    assert scalebridge(["fe2", str(bad), "--quiet", "--no-mlflow", "--output-dir", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    (out,) = (tmp_path / "o").iterdir()
    assert not (out / "steps.jsonl").exists() and (out / "failed.json").exists()
    assert f"no load step completed; config and failure in {out}" in err and "steps.jsonl" not in err


@pytest.mark.parametrize("line", ["n_theta = 50", "divisions = [9, 9, 9]", 'path = "m.msh"'])
def test_a_mesh_key_of_another_mesh_kind_is_refused(tmp_path, line):
    """They had been accepted and ignored (the rest of the FE2 schema refuses unknown keys)."""
    key = line.split()[0]
    with pytest.raises(ConfigError, match=rf"mesh.{key} does not apply to mesh.kind = 'rectangle'; it takes "
                                          r"width, height, nx, ny"):
        load_config(_write(tmp_path, BASE.replace("ny = 2", f"ny = 2\n{line}")))


@pytest.mark.parametrize("line, key", [
    ('plots = "off"', "plots"), ("plots = 0", "plots"),
    ('[tracking]\nenabled = 0', "tracking.enabled"),
])
def test_switches_are_true_or_false(tmp_path, line, key):
    """As in campaign configs, a switch is a TOML boolean: "off" and 0 had run with plots and
    tracking on (pydantic's lax bool reads "off" as False but 0/1 and "yes" too)."""
    text = BASE.replace('name = "t"', f'name = "t"\n{line}' if not line.startswith("[") else 'name = "t"') + (
        f"\n{line}\n" if line.startswith("[") else "")
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(_write(tmp_path, text))


@pytest.mark.parametrize("kind", ["tri", "tet"])
def test_a_mesh_file_sets_its_own_element(tmp_path, kind):
    """A mesh file without mesh.element takes the linear element of its cells: a triangle file
    had been read as quad1 ('element quad1 needs a MeshQuad1'), and a tet file as a 2D mesh that
    refused its own z condition. A file that is not there is a config error."""
    import skfem

    mesh = (skfem.MeshTri() if kind == "tri" else skfem.MeshTet()).refined(1)
    path = tmp_path / f"{kind}.vtk"
    mesh.save(str(path))
    extra = "\n[[dirichlet]]\nboundary = \"back\"\ncomponent = 2\n" if kind == "tet" else ""
    text = (BASE.replace('kind = "rectangle"\nwidth = 2.0\nheight = 1.0\nnx = 4\nny = 2',
                         f'kind = "file"\npath = "{path}"') + extra)
    cfg = load_config(_write(tmp_path, text))
    assert cfg.mesh.element == f"{kind}1" and cfg.mesh.dim == (3 if kind == "tet" else 2)
    with pytest.raises(ConfigError, match=r"mesh file .*nope.vtk does not exist"):
        load_config(_write(tmp_path, text.replace(str(path), str(tmp_path / "nope.vtk")), name="nope.toml"))


def test_a_stopped_run_records_the_signal_that_stopped_it():
    """failed.json says what stopped a run: the CLI's SIGTERM handler raises SystemExit(143),
    which had been recorded as 'SystemExit: 143'."""
    from loops.fe2.run import _why

    assert _why(SystemExit(143)) == "stopped by SIGTERM"
    assert _why(KeyboardInterrupt()) == "stopped by SIGINT (Ctrl-C)"
    assert _why(ValueError("det F must be positive")) == "ValueError: det F must be positive"
    assert _why(SystemExit(1)) == "SystemExit: 1"


@pytest.mark.parametrize(("edit", "msg"), [
    (("h_max = 0.05", "h_max = 0.6"), r"material.surrogate.h_max = 0.6 must be below 1/2 = 0.5 for a 2D mesh"),
    (("h_max = 0.05", "h_max = 0.49"), None),
])
def test_a_training_box_with_inverted_deformations_is_refused(tmp_path, edit, msg):
    """With every entry of H within h_max, det(I + H) > 0 over the whole box exactly when
    k h_max < 1 (Gershgorin); h_max = 0.9 had been accepted and failed in training with
    'det F must be positive' without naming h_max. Just below 1/k, the box's corners are
    checked: det stays positive at every vertex of [-h, h]^4."""
    import itertools

    text = BASE.replace('provider = "analytic"', 'provider = "surrogate"') + textwrap.dedent("""
        [material.rve]
        phases = [{E = 1.0, nu = 0.3}, {E = 10.0, nu = 0.3}]
        microstructure = {kind = "inclusion", radius_fraction = 0.3}
        grid = [9, 9]
        [material.surrogate]
        train_points = 8
        h_max = 0.05
        """)
    text = text.replace(*edit)
    if msg is None:
        cfg = load_config(_write(tmp_path, text))
        h = cfg.material.surrogate.h_max
        dets = [np.linalg.det(np.eye(2) + h * np.array(v).reshape(2, 2)) for v in itertools.product((-1, 1), repeat=4)]
        assert min(dets) > 0
    else:
        with pytest.raises(ConfigError, match=msg):
            load_config(_write(tmp_path, text))


def test_a_box_mesh_has_at_most_the_rectangles_element_count(tmp_path):
    """mesh.divisions had no bound ([1000, 1000, 1000] was accepted, 1e9 hexes); nx and ny stop at 500."""
    from loops.fe2.config import MeshConfig

    with pytest.raises(ValueError, match=r"makes 1000000 elements, more than 250000"):
        MeshConfig(kind="box", element="hex1", divisions=(100, 100, 100))
    assert MeshConfig(kind="box", element="hex1", divisions=(100, 50, 50)).divisions == (100, 50, 50)


def test_a_relative_mesh_path_is_read_beside_the_config(tmp_path, monkeypatch):
    """A relative mesh.path names the file next to the config, whatever the working directory
    (it had been looked up from the working directory: a config and its mesh moved together
    into a folder failed with 'does not exist' unless run from that folder); the stored path is
    absolute, so the run's recorded config finds the mesh from anywhere."""
    import skfem

    case = tmp_path / "case"
    case.mkdir()
    skfem.MeshTri().refined(1).save(str(case / "plate.vtk"))
    text = BASE.replace('kind = "rectangle"\nwidth = 2.0\nheight = 1.0\nnx = 4\nny = 2',
                        'kind = "file"\npath = "plate.vtk"')
    cfg_path = _write(case, text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(cfg_path)
    assert Path(cfg.mesh.path) == (case / "plate.vtk").resolve() and cfg.mesh.element == "tri1"
    # the config's file name relative to the working directory works the same
    monkeypatch.chdir(tmp_path)
    assert Path(load_config(Path("case") / cfg_path.name).mesh.path) == (case / "plate.vtk").resolve()
    # a path relative to the working directory only (no such file beside the config) still reads
    monkeypatch.chdir(case)
    other = tmp_path / "configs"
    other.mkdir()
    assert Path(load_config(_write(other, text)).mesh.path) == (case / "plate.vtk").resolve()
