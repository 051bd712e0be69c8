"""Multi-objective and learn-mode settings that had been accepted silently."""

import pytest
import torch

from loops.config import ConfigError, parse_config

BASE = {"name": "mo", "oracle": {"name": "branin"}, "budget": {"calls": 5},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}}


@pytest.mark.parametrize("objective, match", [
    ({"outputs": ["y", "y"], "minimize": [True, False]}, r"objective\.outputs.*\['y'\] more than once"),
    ({"outputs": [], "minimize": []}, r"objective\.outputs.*at least one output"),
])
def test_objective_outputs_named_twice_or_none_are_refused(objective, match):
    """objective.outputs = ['f', 'f'] (minimize and maximize f) had run a two-objective campaign
    on one output, every point on its 'Pareto front'; [] had silently meant the first output."""
    with pytest.raises(ConfigError, match=match):
        parse_config({**BASE, "acquisition": {"name": "qLogNEHVI"}, "objective": objective})


def test_target_nrmse_in_optimize_mode_is_warned_about():
    """learn.target_nrmse stops learn-mode campaigns only; in optimize mode it had been ignored silently."""
    with pytest.warns(UserWarning, match="target_nrmse = 0.1 stops learn-mode campaigns only"):
        parse_config({**BASE, "learn": {"target_nrmse": 0.1}})


def test_constraint_on_an_unmodeled_output_names_the_outputs_setting(tmp_path):
    """A constraint on an oracle output left out of `outputs` had been said not to be an output of the oracle."""
    from loops.engine import Campaign
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(lambda x: torch.stack([x[0], x[0] + x[1]]), [[0.0, 0.0], [1.0, 1.0]],
                            names=["a", "b"], outputs=["f", "c"])
    cfg = parse_config({**BASE, "oracle": oracle, "outputs": ["f"], "run_dir": str(tmp_path),
                        "objective": {"outputs": ["f"], "constraints": [{"output": "c", "upper": 1.0}]}})
    with pytest.raises(ValueError, match=r"'c' is not among the modeled outputs = \['f'\]; add it to outputs"):
        Campaign(cfg, run_dir=tmp_path / "c")
