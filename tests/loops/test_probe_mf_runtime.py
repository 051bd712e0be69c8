"""Multi-fidelity campaigns at run time: ``tell`` with per-point levels and costs as arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from loops.config import parse_config
from loops.engine import Campaign
from oracles.analytic.test_functions import Forrester

D = torch.float64


def _camp(tmp_path):
    cfg = parse_config({"name": "mf-tell", "oracle": Forrester(), "budget": {"cost": 200.0},
                        "initial": {"n": 3, "fidelities": []}, "executor": {"kind": "serial"},
                        "acquisition": {"name": "qMFLogEI"}, "model": {"name": "ar1"},
                        "tracking": {"enabled": False}})
    return Campaign(cfg, run_dir=tmp_path / "run")


X = torch.tensor([[0.1], [0.5], [0.9]], dtype=D)


@pytest.mark.parametrize("cost, match", [
    (5.0, r"cost must be a list with one cost per point \(3 points\), got 5.0"),
    (np.array([1.0, 2.0]), "cost has 2 entries for 3 points"),
    (torch.tensor([1.0, 2.0]), "cost has 2 entries for 3 points"),
])
def test_a_bad_cost_is_named_and_nothing_is_stored(tmp_path, cost, match):
    """A scalar cost, or an array of costs of the wrong length, is refused naming it, before
    anything is stored (an array had raised an IndexError after adding the points as pending rows,
    which a later ask or run would have handed out to be evaluated)."""
    camp = _camp(tmp_path)
    Y = camp.oracle.evaluate(X, 0).Y
    with pytest.raises(ValueError, match=match):
        camp.tell(X, Y, fidelity=0, cost=cost)
    assert camp.store.rows() == [] and camp._rows == {}
    camp.close()


@pytest.mark.parametrize("as_array", [np.array, torch.tensor])
def test_levels_and_costs_as_arrays_are_one_per_point(tmp_path, as_array):
    """``fidelity`` and ``cost`` as a numpy array or a torch tensor give one level and one cost per
    point, as lists do (an array of levels had been refused as 'not a level of this oracle')."""
    camp = _camp(tmp_path)
    levels = [0, 0, 1]
    Y = torch.cat([camp.oracle.evaluate(X[i:i + 1], lev).Y for i, lev in enumerate(levels)])
    ids = camp.tell(X, Y, fidelity=as_array(levels), cost=as_array([1.5, 2.5, 12.0]))
    rows = [camp.store.row(i) for i in ids]
    assert [r["fidelity"] for r in rows] == levels
    assert [r["cost"] for r in rows] == [1.5, 2.5, 12.0]
    assert camp.state().cost == pytest.approx(16.0)
    camp.close()


def test_a_co_kriging_model_never_fitted_because_a_level_always_fails_is_said(tmp_path):
    """AR1 with ``model.bootstrap = "none"`` on an oracle whose cheap level fails at every point:
    the model is never fitted, the campaign proposes Sobol points and ends with no recommendation.
    It finishes (the failures recorded with their reason) and says why at the end (before, it ended
    silently, its whole budget spent on Sobol points)."""
    from loops.engine import BootstrapModelWarning
    from oracles.base import CostModel, Oracle, OracleResult, make_bounds

    class CheapLevelFails(Oracle):
        input_names, output_names, num_fidelities = ("x",), ("y",), 2

        def __init__(self):
            self.bounds = make_bounds([0.0], [1.0])
            self.cost_model = CostModel((1.0, 10.0))

        def evaluate_batch(self, X, fidelity):
            n = X.shape[0]
            y = ((6 * X[:, :1] - 2) ** 2 * torch.sin(12 * X[:, :1] - 4)).clone()
            bad = fidelity == 0
            if bad:
                y[:] = float("nan")
            return OracleResult(X=X.clone(), Y=y, failed=torch.full((n,), bad), cost=self.cost_model(X, fidelity),
                                reasons=["coarse solver diverged" if bad else None] * n, fidelity=fidelity,
                                metadata=[{} for _ in range(n)])

    cfg = parse_config({"name": "never", "oracle": CheapLevelFails(), "budget": {"cost": 70.0},
                        "initial": {"n": 3, "fidelities": [0, 1]}, "executor": {"kind": "serial"},
                        "acquisition": {"name": "qMFLogEI", "num_restarts": 1, "raw_samples": 16, "maxiter": 10},
                        "model": {"name": "ar1", "bootstrap": "none"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    with pytest.warns(BootstrapModelWarning, match=r"'ar1' was never fitted: .* levels \[0\] have \[0\] \(\[3\] "
                                                   r"failed there\).* Sobol points"):
        res = camp.run()
    assert res.stopped_by == "budget" and res.recommendation is None
    failed = [r for r in res.rows if r["status"] == "failed"]
    assert len(failed) == 3 and {r["reason"] for r in failed} == {"coarse solver diverged"}
    assert res.state.cost == pytest.approx(sum(r["cost"] for r in res.rows if r["status"] != "pending"))
    assert res.state.cost <= 70.0
    camp.close()


def test_a_call_killed_at_its_timeout_is_charged_the_cost_model_at_its_point(tmp_path):
    """A timed-out call had been charged its level's nominal cost, not the oracle's cost model
    at the point, which the cost budget had admitted it against."""
    import torch

    from loops.config import parse_config
    from loops.engine import Campaign
    from oracles import FunctionOracle
    from oracles.base import CostModel

    class XCost(CostModel):
        def __call__(self, X, fidelity=0):
            return 1.0 + 10.0 * torch.as_tensor(X, dtype=torch.float64).reshape(-1, 2)[:, 0]

    f = FunctionOracle(lambda x: float(x.sum()), [[0.0, 0.0], [1.0, 1.0]], cost=XCost())
    cfg = parse_config({"name": "t", "oracle": f, "budget": {"cost": 500.0}, "initial": {"n": 3},
                        "executor": {"kind": "serial", "retries": 0}, "tracking": {"enabled": False},
                        "run_dir": str(tmp_path / "r")})
    camp = Campaign(cfg)
    trial = camp.ask(1)
    x0 = float(trial.X[0, 0])
    camp._record_all([(trial.ids[0], {"failed": True, "infra": True, "reason": "timeout after 1 s (worker killed)",
                                      "y": None, "yvar": None, "cost": 0.0, "metadata": {}})])
    row = camp.store.row(trial.ids[0])
    assert row["status"] == "failed" and abs(row["cost"] - (1.0 + 10.0 * x0)) < 1e-12
