"""Campaigns configured from Python and TOML: settings that had been ignored silently or
refused in pydantic's own words."""

import warnings

import pytest
import torch

from loops.config import ConfigError, parse_config

BASE = {"name": "lib", "oracle": {"name": "branin"}, "budget": {"calls": 10},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}}


def _said(data):
    """The config of ``data`` and the messages of the UserWarnings it gave."""
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        cfg = parse_config(data)
    return cfg, [str(w.message) for w in got if issubclass(w.category, UserWarning)]


def _line(data):
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    assert len(e.value.lines) == 1, e.value.lines
    return e.value.lines[0]


def test_learn_mode_names_the_objective_settings_it_ignores():
    """Learn mode models the outputs over the whole bounds: objective senses, constraints and
    objective outputs had been accepted and ignored without a word."""
    objective = {"outputs": ["y"], "minimize": False, "constraints": [{"output": "y", "upper": 50.0}]}
    _, said = _said({**BASE, "mode": "learn", "objective": objective})
    assert len(said) == 1, said
    for part in ("mode = 'learn'", "objective.outputs = ['y']", "objective.minimize = False",
                 "objective.constraints on ['y']", "mode = 'optimize'"):
        assert part in said[0], (part, said[0])
    # a learn config without them, and its dump read again (a resume), say nothing
    cfg, said = _said({**BASE, "mode": "learn"})
    assert said == []
    assert _said(cfg.model_dump(mode="json"))[1] == []
    # optimize mode uses them
    assert _said({**BASE, "objective": objective})[1] == []


def test_cost_source_with_a_budget_of_calls_alone_is_said_to_have_no_effect():
    """A calls-only budget counts every level's call as one (Campaign.level_costs), so
    fidelity.cost_source had been ignored silently."""
    _, said = _said({**BASE, "fidelity": {"cost_source": "oracle"}})
    assert len(said) == 1 and "fidelity.cost_source = 'oracle' has no effect with a budget of calls alone" in said[0]
    for budget in ({"calls": 10, "cost": 50.0}, {"calls": 10, "wall_time": 60.0}):
        assert _said({**BASE, "budget": budget, "fidelity": {"cost_source": "wall_time"}})[1] == []
    cfg, said = _said(BASE)  # the default, and a dump read again
    assert said == [] and _said(cfg.model_dump(mode="json"))[1] == []


@pytest.mark.parametrize("outputs, must", [
    ([], "config: outputs: name at least one output"),
    (["y", "y"], "config: outputs: names ['y'] more than once"),
])
def test_modeled_outputs_named_twice_or_none_are_refused(outputs, must):
    """outputs = [] had silently meant every output, and an output named twice had been modeled twice."""
    assert must in _line({**BASE, "outputs": outputs})


@pytest.mark.parametrize("value", ["many", 1.5, True])
def test_prefetch_of_the_wrong_kind_is_one_line(value):
    """A prefetch that is neither an integer nor 'auto' had given two lines naming pydantic's
    internal validators (``executor.prefetch.function-before[_plain_int(), int]``)."""
    line = _line({**BASE, "executor": {"prefetch": value}})
    assert line == f"config: executor.prefetch = {value!r}: expected an integer >= 0 or 'auto'"


def test_an_initial_design_that_fills_the_calls_budget_is_warned_about():
    """initial.n above budget.calls had been cut to the budget without a word (a cost budget it
    overspends is refused): no point was ever proposed by the acquisition."""
    _, said = _said({**BASE, "budget": {"calls": 3}, "initial": {"n": 5}})
    assert len(said) == 1 and "initial design (5 points: initial.n = 5) is cut to its first 3" in said[0]
    _, said = _said({**BASE, "budget": {"calls": 6}, "initial": {"n": 3, "fidelities": [0, 0]}})
    assert len(said) == 1 and "(6 points: initial.n = 3 at levels [0, 0]) takes all of them" in said[0]
    for ok in ({"budget": {"calls": 6}, "initial": {"n": 5}},
               {"budget": {"calls": 3}, "initial": {"n": 5}, "acquisition": {"name": "sobol"}},
               {"budget": {"calls": 3}, "initial": {"n": 5, "fidelities": []}}):
        assert _said({**BASE, **ok})[1] == [], ok


def test_a_negative_noise_seed_is_refused_by_the_schema():
    """oracle.seed = -1 of an analytic function had passed the config and ended the campaign's
    construction in NumPy's 'expected non-negative integer'."""
    line = _line({**BASE, "oracle": {"name": "branin", "noise_std": 0.1, "seed": -1}})
    assert line == "config: oracle.seed = -1: Input should be greater than or equal to 0"


def test_an_oracle_class_that_refuses_a_setting_is_named_with_it(tmp_path):
    """A 'module:Class' oracle has no schema: a constructor that refused a value had ended the
    campaign's construction in its bare ValueError (``could not convert string to float: 'x'``)."""
    from loops.engine import Campaign
    from oracles.exceptions import InvalidInput

    cfg = parse_config({**BASE, "oracle": {"name": "loops.fakes:SlowOracle", "delay": "x"}})
    with pytest.raises(InvalidInput, match=r"^oracle 'loops.fakes:SlowOracle' could not be built from its settings "
                                           r"\(delay='x'\): ValueError: could not convert string to float: 'x'$"):
        Campaign(cfg, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "config.json").exists()


def test_settings_objects_built_in_python_report_like_toml():
    """RVESettings(grid="31", ...) in a notebook had raised pydantic's report, naming internal
    validators (``grid.`function-after[functools.partial(<function greater_than_or_equal_validator
    ...``); TOML and model_validate keep their keyed errors."""
    from pydantic import ValidationError

    from loops.oracle_settings import SCHEMAS, OracleSettingsError, RVESettings

    phases = [{"law": "neo_hookean", "E": 1.0, "nu": 0.3}] * 2
    with pytest.raises(OracleSettingsError) as e:
        RVESettings(phases=phases, microstructure={"kind": "inclusion"}, grid="31", gird=3)
    assert e.value.lines == ["grid = '31': Input should be a valid integer or a valid list",
                             "unknown key 'gird'; allowed keys: " + str(sorted(RVESettings.model_fields))]
    with pytest.raises(OracleSettingsError, match=r"^noise_std = '0.1': Input should be a valid number"):
        SCHEMAS["branin"](noise_std="0.1")
    with pytest.raises(ValidationError):
        RVESettings.model_validate({"phases": phases, "microstructure": {"kind": "inclusion"}, "grid": "31"})
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "oracle": {"name": "rve", "phases": phases, "microstructure": {"kind": "inclusion"},
                                         "grid": "31", "cg_tol": 2.0}})
    assert sorted(e.value.lines) == ["config: oracle.cg_tol = 2.0: Input should be less than 1",
                                     "config: oracle.grid = '31': Input should be a valid integer or a valid list"]
    good = RVESettings(phases=phases, microstructure={"kind": "inclusion"}, grid=9)
    assert parse_config({**BASE, "oracle": good}).oracle.spec()["grid"] == 9


def test_a_notebook_campaign_around_a_function_with_failures_runs_to_its_budget(tmp_path):
    """A FunctionOracle that raises, returns NaN or returns a complex number at some points:
    each such point is a failed row with its reason, the campaign spends its budget and
    recommends a point where the function answered."""
    from loops.engine import Campaign
    from oracles import FunctionOracle

    def f(x):
        if x[0] > 0.8:
            raise RuntimeError("solver diverged")
        if x[1] > 0.85:
            return float("nan")
        if x[1] < 0.05:
            return torch.complex(x.sum(), x[0])
        return ((x - 0.3) ** 2).sum()

    o = FunctionOracle(f, {"a": (0.0, 1.0), "b": (0.0, 1.0)})
    cfg = parse_config({**BASE, "oracle": o, "budget": {"calls": 12}, "initial": {"n": 6},
                        "acquisition": {"num_restarts": 2, "raw_samples": 32, "maxiter": 30},
                        "run_dir": str(tmp_path)})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    rows = [r for r in res.rows if r["role"] != "validation"]
    assert res.state.calls == 12 and res.stopped_by == "CallsBudget"
    seen = set()
    for r in rows:
        a, b = r["x"]
        why = ("solver diverged" if a > 0.8 else "non-finite output" if b > 0.85 else
               "output is complex" if b < 0.05 else None)
        assert (r["status"] == "failed") == (why is not None), r
        assert why is None or why in r["reason"], r
        seen.add(why)
    assert seen >= {"solver diverged", "non-finite output", "output is complex"}  # the initial design hits each
    a, b = res.recommendation["x"]
    assert a <= 0.8 and 0.05 <= b <= 0.85
    camp.close()


@pytest.mark.parametrize("X, Y, says", [
    ("abc", [[1.0]], "X must be numbers"),
    (torch.tensor([[0.1, 0.2]]) + 0j, [[1.0]], "X must be real numbers, n x d = n x 2, got complex"),
    ([[0.1, 0.2]], [[1 + 1j]], "Y must be real numbers.*got complex"),
    ([[0.1, 0.2]], [[True]], "Y must be real numbers.*got bool"),
    ([[0.1, 0.2]], torch.tensor([[2.0]]) > 1, "Y must be real numbers.*got bool"),
])
def test_tell_refuses_strings_complex_and_bool_naming_them(tmp_path, X, Y, says):
    """tell had given torch's bare 'new(): invalid data type' for a string X, and stored a
    complex Y as its real part and True as 1.0. Nothing is stored by a refused call."""
    from loops.engine import Campaign

    c = Campaign({**BASE, "run_dir": str(tmp_path / "r")})
    with pytest.raises(ValueError, match=says):
        c.tell(X, Y)
    assert len(c.tell([[0.1, 0.2]], [[3.0]])) == 1
    X_stored, Y_stored = c.data()[:2]
    assert X_stored.shape[0] == 1 and Y_stored.tolist() == [[3.0]]


def test_a_campaign_takes_a_dict_or_a_toml_path_and_names_anything_else(tmp_path):
    """Campaign({...}) had raised AttributeError: 'dict' object has no attribute 'run_dir'."""
    from loops.engine import Campaign
    from oracles import FunctionOracle

    c = Campaign({**BASE, "run_dir": str(tmp_path / "a"), "budget": {"calls": 8}})
    assert c.config.oracle.name == "branin" and c.run().best is not None
    f = FunctionOracle(lambda x: float((x ** 2).sum()), [[0.0, 0.0], [1.0, 1.0]])
    data = {k: v for k, v in BASE.items() if k != "oracle"}
    c = Campaign({**data, "run_dir": str(tmp_path / "b"), "budget": {"calls": 8}}, oracle=f)
    best = c.run().best
    assert best.value == min(r for r in c.data()[1][:, 0].tolist())
    toml = tmp_path / "c.toml"
    toml.write_text(f'name = "t"\nrun_dir = "{tmp_path / "c"}"\n[oracle]\nname = "branin"\n[budget]\ncalls = 8\n'
                    '[executor]\nkind = "serial"\n[tracking]\nenabled = false\n')
    assert Campaign(toml).config.budget.calls == 8
    with pytest.raises(TypeError, match="config must be a CampaignConfig, a dict of its settings or the path"):
        Campaign(42)
    with pytest.raises(ConfigError, match="budget.calls = 'x'"):
        Campaign({**BASE, "budget": {"calls": "x"}})


def test_learn_metrics_leave_out_outputs_without_spread(tmp_path):
    """A learn campaign on an output that is constant over the validation set had reported
    nivar = 7.9e293 (its variance clamped to 1e-300 in the denominator). The normalized
    metrics now average over the outputs that vary and are absent when none does; rmse and
    coverage are still reported (a constant is learned exactly: rmse below 1e-6)."""
    from loops.engine import Campaign
    from oracles import FunctionOracle

    f = FunctionOracle(lambda x: 2.5, [[0.0, 0.0], [1.0, 1.0]])
    data = {k: v for k, v in BASE.items() if k != "oracle"}
    res = Campaign({**data, "budget": {"calls": 6}, "mode": "learn", "learn": {"n_validation": 8}, "run_dir": str(tmp_path / "k")},
                   oracle=f).run()
    m = res.state.metrics
    assert "nrmse" not in m and "nivar" not in m and m["rmse"] < 1e-6 and m["coverage95"] == 1.0

    # two outputs, one constant: the normalized metrics are those of the varying one alone
    g = FunctionOracle(lambda x: [float(x[0]) ** 2, 2.5], [[0.0, 0.0], [1.0, 1.0]], outputs=["q", "k"])
    c = Campaign({**data, "budget": {"calls": 6}, "mode": "learn", "learn": {"n_validation": 8}, "run_dir": str(tmp_path / "g")}, oracle=g)
    c.run()
    m = c.validation_metrics()
    Xv, Yv, _ = c.data(role="validation")
    from loops.models import predict

    mu, var = predict(c.model, Xv)
    rmse_q = float((mu[:, 0] - Yv[:, 0]).pow(2).mean().sqrt())
    assert abs(m["nrmse"] - rmse_q / float(Yv[:, 0].std())) < 1e-9
    assert abs(m["nivar"] - float(var[:, 0].mean() / Yv[:, 0].var())) < 1e-9
