"""Config validation: every bad key or value gives one line naming it."""

import pytest

from loops.cli import main
from loops.config import ConfigError, load_config, parse_config

GOOD = {"name": "t", "oracle": {"name": "branin"}, "budget": {"calls": 10}}


def _lines(data):
    with pytest.raises(ConfigError) as e:
        parse_config(data)
    return e.value.lines


def test_good_config_and_oracle_kwargs():
    cfg = parse_config({**GOOD, "oracle": {"name": "loops.fakes:SlowOracle", "delay": 0.5}})
    assert cfg.oracle.spec() == {"name": "loops.fakes:SlowOracle", "delay": 0.5}
    assert cfg.acquisition.name == "qLogNEI" and cfg.executor.kind == "process"


@pytest.mark.parametrize(
    "patch, must_contain",
    [
        ({"budgett": {"calls": 3}}, ["budgett", "allowed keys", "budget"]),
        ({"acquisition": {"name": "EI"}}, ["acquisition.name", "'EI'", "qLogNEI"]),
        ({"acquisition": {"q": 0}}, ["acquisition.q", "0", "greater than or equal to 1"]),
        ({"executor": {"kind": "mpi"}}, ["executor.kind", "'mpi'", "dask"]),
        ({"executor": {"wrokers": 2}}, ["executor.wrokers", "workers"]),
        ({"oracle": {"name": "nope"}}, ["oracle.name", "'nope'", "branin"]),
        ({"budget": {}}, ["budget", "calls, cost, wall_time"]),
        ({"mode": "learn", "acquisition": {"name": "qLogNEI"}}, ["qLogNEI", "learn mode allows"]),
        ({"mode": "explore"}, ["mode", "'explore'", "optimize"]),
        # flags are true or false, numbers are numbers: no "yes" -> True, 0 -> False, "1.5" -> 1.5
        ({"objective": {"minimize": "yes"}}, ["objective.minimize", "'yes'"]),
        ({"objective": {"minimize": 0}}, ["objective.minimize", "0"]),
        ({"tracking": {"enabled": "off"}}, ["tracking.enabled", "'off'"]),
        ({"executor": {"synchronous": "true"}}, ["executor.synchronous", "'true'"]),
        ({"objective": {"constraints": [{"output": "y", "lower": "1.5"}]}}, ["constraints.0.lower", "'1.5'"]),
        ({"objective": {"constraints": [{"output": "y", "lower": True}]}}, ["constraints.0.lower", "True"]),
        ({"objective": {"constraints": [{"output": "y", "upper": float("inf")}]}}, ["constraints.0.upper", "inf"]),
        ({"objective": {"constraints": [{"output": "y", "lower": 1.5, "upper": 0.5}]}},
         ["constraint on 'y' needs lower < upper, got lower = 1.5, upper = 0.5"]),
        ({"objective": {"ref_point": [1.0, "3"]}}, ["objective.ref_point.1", "'3'"]),
        ({"objective": {"minimize": [True, "false"]}}, ["objective.minimize", "a list of them"]),
        # MLflow's model-name rule and a model that can be registered, before any oracle call
        ({"tracking": {"registered_model_name": "bad/name", "final_surrogate": "gp"}},
         ["tracking.registered_model_name = 'bad/name'", "without '/' or ':'"]),
        ({"tracking": {"registered_model_name": "branin-gp"}},
         ["'singletask_gp' is a BoTorch model", "tracking.final_surrogate"]),
        # an unknown key inside a list of tables lists that table's keys
        ({"objective": {"constraints": [{"output": "y", "lowr": 1.0}]}},
         ["objective.constraints.0.lowr", "['lower', 'output', 'upper']"]),
    ],
)
def test_bad_config_one_line(patch, must_contain):
    lines = _lines({**GOOD, **patch})
    assert len(lines) == 1, lines
    for s in must_contain:
        assert s in lines[0], (s, lines[0])


def test_the_default_acquisition_follows_the_mode():
    """Learn mode without an acquisition name had been refused for optimize mode's default."""
    assert parse_config({**GOOD, "mode": "learn"}).acquisition.name == "qNIPV"
    learn = parse_config({**GOOD, "mode": "learn", "acquisition": {"num_restarts": 2}})
    assert learn.acquisition.name == "qNIPV" and learn.acquisition.num_restarts == 2
    assert parse_config(GOOD).acquisition.name == "qLogNEI"


def test_two_errors_two_lines():
    lines = _lines({**GOOD, "seed": "x", "executor": {"workers": -1}})
    assert len(lines) == 2
    assert any(line.startswith("config: seed = 'x'") for line in lines)
    assert any("executor.workers = -1" in line for line in lines)


def test_cli_prints_one_line_and_exits_2(tmp_path, capsys):
    f = tmp_path / "c.toml"
    f.write_text('name = "t"\noracle = {name = "branin"}\n[budget]\ncalls = 5\n[acquisition]\nname = "UCB"\n')
    assert main(["run", str(f)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "acquisition.name = 'UCB'" in err[0] and str(f) in err[0]


def test_bad_toml_and_missing_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text("name = \n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(f)
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "missing.toml")


def test_config_in_another_encoding_is_named(tmp_path):
    """TOML is UTF-8: non-ASCII text reads as written, and a file in another encoding is named
    as such (it had been a bare UnicodeDecodeError)."""
    f = tmp_path / "c.toml"
    f.write_bytes('# FE² plate, σ in MPa\nname = "t²"\noracle = {name = "branin"}\n[budget]\ncalls = 5\n'.encode())
    assert load_config(f).name == "t²"
    f.write_bytes('# plaque trouée\nname = "t"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe9"):
        load_config(f)


def test_unknown_oracle_lists_only_real_oracles_and_test_doubles_name_their_path():
    (line,) = _lines({**GOOD, "oracle": {"name": "nope"}})
    for fake in ("slow", "flaky", "die_once", "branin_mf", "fakes"):
        assert fake not in line, line
    (line,) = _lines({**GOOD, "oracle": {"name": "die_once"}})
    assert "loops.fakes:DieOnceOracle" in line


def test_oracle_instance_is_accepted_and_anything_else_is_one_line():
    from oracles.function import FunctionOracle
    from tests.oracles.test_function_oracle import branin

    o = FunctionOracle(branin, [[-5.0, 0.0], [10.0, 15.0]])
    cfg = parse_config({**GOOD, "oracle": o})
    assert cfg.oracle.instance is o and cfg.oracle.spec() is o
    assert cfg.oracle.name == "oracles.function:FunctionOracle"
    dumped = cfg.model_dump(mode="json")["oracle"]
    assert dumped["instance"].startswith("FunctionOracle(branin")
    # a dumped instance cannot be rebuilt from text: the message says to pass the object again
    (line,) = _lines({**GOOD, "oracle": dumped})
    assert "pass the object again" in line
    (line,) = _lines({**GOOD, "oracle": 3})
    assert "oracle must be a table" in line and "Oracle instance" in line and "model_type" not in line


@pytest.mark.parametrize(
    "patch, must",
    [
        ({"budget": {"calls": True}}, "budget.calls = True: Input should be a valid integer"),
        ({"budget": {"cost": float("inf")}}, "budget.cost = inf: Input should be a finite number"),
        ({"initial": {"n": 1e8}}, "initial.n = 100000000.0: Input should be a valid integer"),
        ({"initial": {"n": 10**8}}, "less than or equal to 100000"),
        ({"oracle": {"name": "branin", "noise_std": "0.1"}}, "oracle.noise_std = '0.1'"),
        ({"oracle": {"name": "loops.fakes:SlowOracle", "dely": 1.0}}, "allowed keys: ['delay', 'jitter', 'setup']"),
        ({"oracle": {"name": "os:system"}}, "not an Oracle subclass"),
        ({"model": {"refit_growth": True}}, "model.refit_growth = True: Input should be a valid number"),
        ({"model": {"refit_growth": "0.5"}}, "model.refit_growth = '0.5'"),
        ({"model": {"refit_growth": float("inf")}}, "model.refit_growth = inf: Input should be a finite number"),
    ],
)
def test_numbers_are_what_they_say(patch, must):
    (line,) = _lines({**GOOD, **patch})
    assert must in line, line


def test_numpy_integers_are_integers_but_bools_are_not():
    import numpy as np

    cfg = parse_config({**GOOD, "seed": np.int64(3), "budget": {"calls": np.int32(7), "cost": np.float64(2.5)}})
    assert cfg.seed == 3 and type(cfg.seed) is int and cfg.budget.calls == 7
    (line,) = _lines({**GOOD, "budget": {"calls": np.bool_(True)}})
    assert "budget.calls" in line


def test_a_timeout_with_threads_warns_that_a_thread_cannot_be_stopped():
    with pytest.warns(UserWarning, match="a thread cannot be stopped"):
        parse_config({**GOOD, "executor": {"kind": "thread", "timeout": 1.0}})
