"""``[uncertainty]`` in ``scalebridge fe2`` configs: the split written to the run directory."""

from __future__ import annotations

import json

import pytest

from loops.config import ConfigError
from loops.fe2.config import parse_config


def _config(tmp_path, **uq):
    return {
        "name": "uq-smoke",
        "output_dir": str(tmp_path),
        "mesh": {"kind": "rectangle", "nx": 1, "ny": 1},
        "dirichlet": [
            {"boundary": "left", "component": 0},
            {"boundary": "left", "component": 1},
            {"boundary": "right", "component": 0, "value": 0.03},
        ],
        "load": {"n_steps": 1, "rtol": 1e-6},
        "material": {
            "provider": "surrogate",
            "rve": {
                "phases": [{"E": 1.0, "nu": 0.35}, {"E": 10.0, "nu": 0.25}],
                "microstructure": {"kind": "inclusion", "radius_fraction": 0.3},
                "grid": [9, 9],
            },
            "surrogate": {"train_points": 8, "h_max": 0.05},
        },
        "executor": {"kind": "serial"},
        "tracking": {"enabled": False},
        "plots": False,
        "uncertainty": {
            "n_outer": 3,
            "n_inner": 6,
            "n_anchors": 16,
            "train_points": 16,
            "h_max": 0.05,
            **uq,
        },
    }


@pytest.mark.slow
def test_random_inputs_give_the_split_in_the_run_directory(tmp_path):
    from loops.fe2.run import run_fe2

    cfg = parse_config(
        _config(
            tmp_path,
            random=[{"name": "phases.1.E", "low": 6.0, "high": 14.0}],
            sobol_n=64,
            displacement=[{"name": "uy_corner", "point": [1.0, 1.0], "component": 1}],
        )
    )
    run = run_fe2(cfg)
    uq = json.loads((run.out_dir / "uncertainty.json").read_text())
    # stretched along x with the left edge held, the free top-right corner moves down (Poisson)
    uy = uq["qoi"]["uy_corner"]
    assert uy["quantiles"]["0.975"] < 0 and uy["std"] > 0
    assert (run.out_dir / "uq_uy_corner.png").stat().st_size > 1000
    s = uq["qoi"]["reaction"]
    assert s["n_outer"] == 3 and s["n_inner"] == 6 and not uq["failures"]
    assert s["epistemic"] >= 0 and s["quantiles"]["0.025"] <= s["mean"] <= s["quantiles"]["0.975"]
    # the only random input carries all of the variance of every QoI (the indices had been
    # computed for the first QoI only): S1 = ST = 1, within the stated errors
    assert sorted(uq["sobol"]["qoi"]) == sorted(["reaction", "max_stress", "uy_corner"])
    for name, by_qoi in uq["sobol"]["qoi"].items():
        sob = by_qoi["phases.1.E"]
        assert by_qoi["replicates"] == 8 and by_qoi["failed_rows"] == 0, name
        assert abs(sob["S1"] - 1) < 4 * sob["S1_se"] and abs(sob["ST"] - 1) < 4 * sob["ST_se"], (name, sob)
    assert (run.out_dir / "uq_reaction.png").stat().st_size > 1000
    assert run.summary["uncertainty"]["random_inputs"] == ["phases.1.E"]
    # the deterministic reaction lies in the propagated range at the 99.9 % level of the draws
    R = run.summary["steps"][-1]["reaction"]
    assert abs(R - s["mean"]) < 6 * s["std"]


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(ConfigError, match="sobol_n must be 0 .* or >= 8, got 4"):
        parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "low": 6.0, "high": 14.0}], sobol_n=4))
    data = _config(tmp_path, random=[{"name": "phases.1.E", "low": 14.0, "high": 6.0}])
    with pytest.raises(ConfigError, match="low < high"):
        parse_config(data)
    data = _config(tmp_path)
    data["material"]["provider"] = "oracle"
    with pytest.raises(ConfigError, match="surrogate"):
        parse_config(data)
    # a path that is not a number of [material.rve], or a range it does not allow, is a config
    # error when the file is read, not after the deterministic solve
    with pytest.raises(ConfigError, match=r"uncertainty.random name 'phases.7.E' is not a number of \[material.rve\]"):
        parse_config(_config(tmp_path, random=[{"name": "phases.7.E", "low": 1.0, "high": 2.0}]))
    with pytest.raises(ConfigError, match=r"uncertainty.random phases.1.nu = 0.7: material.rve.phases.1.nu input should "
                                          r"be less than 0.5"):
        parse_config(_config(tmp_path, random=[{"name": "phases.1.nu", "low": 0.3, "high": 0.7}]))
    from loops.uq.fe2 import rve_with

    cfg = parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "low": 1.0, "high": 2.0}]))
    with pytest.raises(ValueError, match="phases.7.E"):
        rve_with(cfg, {"phases.7.E": 1.5})
    # a normal input is checked where its draws go, not at its centre only: normal(2, 1) for a
    # modulus reaches E < 0 (it had been found after the deterministic solve, at E = -0.43)
    with pytest.raises(ConfigError, match=r"phases.1.E = -2.7\d*: .*greater than 0 \(the 1e-06 quantile of its normal "
                                          r"distribution.*lognormal"):
        parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "distribution": "normal", "mean": 2.0,
                                                "std": 1.0}]))
    parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "distribution": "lognormal", "mean": 0.7,
                                            "std": 1.0}]))
    # one distribution per input, one spelling of a phase, and no settings a distribution ignores
    twice = [{"name": "phases.1.E", "low": 5.0, "high": 15.0},
             {"name": "phases.1.E", "distribution": "normal", "mean": 10.0, "std": 0.1}]
    with pytest.raises(ConfigError, match=r"names \['phases.1.E'\] more than once"):
        parse_config(_config(tmp_path, random=twice))
    with pytest.raises(ConfigError, match=r"'phases.-1.E' is not a number of \[material.rve\]"):
        parse_config(_config(tmp_path, random=[{"name": "phases.-1.E", "low": 5.0, "high": 15.0}]))
    with pytest.raises(ConfigError, match=r"uniform input 'phases.1.E' does not use \['mean'\]"):
        parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "low": 5.0, "high": 15.0, "mean": 10.0}]))


def test_a_target_rel_error_needs_a_reaction_the_material_moves(tmp_path):
    """material.adaptive.target_rel_error derives the switch's tolerance from the reaction at
    load.reaction_boundary; where no dirichlet condition holds that boundary in that component
    (a traction-loaded edge) the reaction does not depend on the material, and the run had
    trained the surrogate and then failed ('the reaction influence must be positive'). It is
    refused when the config is read."""
    data = _config(tmp_path)
    data.pop("uncertainty", None)
    data["material"]["provider"] = "adaptive"
    data["material"]["adaptive"] = {"target_rel_error": 0.01}
    parse_config(data)  # the default reaction boundary (right) is displacement-controlled here
    data["load"] = {**data.get("load", {}), "reaction_boundary": "top"}
    with pytest.raises(ConfigError, match=r"target_rel_error .* load.reaction_boundary = 'top' \(component 0\), and no "
                                          r"\[\[dirichlet\]\] prescribes"):
        parse_config(data)


def test_displacement_qois_are_checked_against_the_mesh(tmp_path):
    bad = [
        ({"name": "u", "point": [1.0, 1.0, 0.0]}, "2 coordinates"),
        ({"name": "u", "point": [1.0, 1.0], "component": 2}, "component below 2"),
        ({"name": "reaction", "point": [1.0, 1.0]}, "repeated: \\['reaction'\\]"),
        ({"name": "u y", "point": [1.0, 1.0]}, "name"),
    ]
    for d, msg in bad:
        with pytest.raises(ConfigError, match=msg):
            parse_config(_config(tmp_path, displacement=[d]))
    cfg = parse_config(_config(tmp_path, displacement=[{"name": "u_far", "point": [3.0, 0.5]}]))
    assert cfg.uncertainty.qoi_names == ["reaction", "max_stress", "u_far"]
    from loops.fe2.run import build_mesh
    from loops.uq.fe2 import run_uncertainty

    class _Solver:  # only the mesh is read before the point is checked
        mesh = build_mesh(cfg)

    with pytest.raises(ValueError, match=r"u_far.*point = \[3.0, 0.5\] lies outside the mesh"):
        run_uncertainty(cfg, _Solver(), None, tmp_path)


def test_random_input_parameters_are_numbers(tmp_path):
    """low = "8" had been read as 8.0 (campaign configs refuse a string for a number)."""
    with pytest.raises(ConfigError, match="low"):
        parse_config(_config(tmp_path, random=[{"name": "phases.1.E", "low": "6", "high": 14.0}]))


def test_a_qoi_point_in_a_hole_is_refused_before_anything_is_solved(tmp_path):
    """A point inside the plate's hole (inside the bounding box) had passed, and the run stopped
    after the deterministic solve and the descriptor GP's training with skfem's "Point is outside
    of the mesh." naming nothing."""
    import loops.fe2.run as run_mod

    data = _config(tmp_path, displacement=[{"name": "u_hole", "point": [0.1, 0.1], "component": 1}])
    data["mesh"] = {"kind": "plate_with_hole", "n_theta": 1, "n_radial": 1}
    data["dirichlet"] = [{"boundary": "left", "component": 0}, {"boundary": "bottom", "component": 1},
                         {"boundary": "right", "component": 0, "value": 0.03}]
    cfg = parse_config(data)
    with pytest.raises(ValueError, match=r"u_hole.*point = \[0.1, 0.1\] is not inside the mesh"):
        run_mod.run_fe2(cfg)
    assert not list(tmp_path.iterdir())  # refused before the run directory (and any training)


def test_summaries_are_strict_json():
    """A standard error of one replicate (NaN) is written as null, not as a bare NaN."""
    from loops.fe2.run import json_text

    text = json_text({"S1_se": float("nan"), "a": [1.0, float("inf")], "b": {"c": 2}})
    assert json.loads(text, parse_constant=lambda c: pytest.fail(c)) == {"S1_se": None, "a": [1.0, None],
                                                                          "b": {"c": 2}}


@pytest.mark.parametrize("rtol", [None, 1e-5])
def test_the_propagation_solves_at_the_configs_tolerance(tmp_path, monkeypatch, rtol):
    """``load.rtol`` set in the config is the tolerance of every uncertainty solve (posterior-mean runs
    and function-sample batches); unset, the propagation's own ``UQ_RTOL``."""
    import loops.uq.fe2 as uq_fe2
    from loops.fe2.run import run_fe2
    from loops.fe2.solver import MacroSolver
    from loops.uq.propagate import UQ_RTOL

    seen: list[tuple[str, float]] = []
    solve, batch, run_uq = MacroSolver.solve, MacroSolver.solve_batch, uq_fe2.run_uncertainty

    def spy(kind, f):
        def g(self, *a, **kw):
            seen.append((kind, kw.get("rtol")))
            return f(self, *a, **kw)
        return g

    def spied_run_uncertainty(*a, **kw):  # the deterministic run's solves are not spied on
        monkeypatch.setattr(MacroSolver, "solve", spy("solve", solve))
        monkeypatch.setattr(MacroSolver, "solve_batch", spy("batch", batch))
        return run_uq(*a, **kw)

    monkeypatch.setattr(uq_fe2, "run_uncertainty", spied_run_uncertainty)
    cfg = _config(tmp_path, n_outer=2, n_inner=2, n_anchors=4)
    cfg["load"] = {"n_steps": 1} if rtol is None else {"n_steps": 1, "rtol": rtol}
    run_fe2(parse_config(cfg))
    assert {k for k, _ in seen} == {"solve", "batch"}
    assert {r for _, r in seen} == {UQ_RTOL if rtol is None else rtol}
