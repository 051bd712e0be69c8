"""Campaigns driven one step at a time (ask/tell), oracle objects, results a user can read."""

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from loops.config import parse_config
from loops.engine import Campaign
from loops.store import RunDirError, RunStore
from oracles import FunctionOracle

ROOT = Path(__file__).resolve().parents[2]
FAST_ACQ = {"num_restarts": 2, "raw_samples": 64, "maxiter": 50}
KEYS = ("id", "point", "attempt", "role", "iteration", "x", "fidelity", "status", "y", "yvar", "cost", "reason")


def _cfg(tmp_path, **over):
    base = {"name": "at", "oracle": {"name": "branin"}, "budget": {"calls": 20}, "initial": {"n": 5},
            "acquisition": dict(FAST_ACQ), "executor": {"kind": "serial"}, "tracking": {"enabled": False},
            "run_dir": str(tmp_path / "runs")}
    base.update(over)
    return parse_config(base)


def _rows(run_dir):
    s = RunStore(Path(run_dir) / "store.sqlite")
    try:
        return [{k: r[k] for k in KEYS} for r in s.rows()]
    finally:
        s.close()


def sphere(x):
    """A module-level function: picklable, so it can go to worker processes."""
    return ((x - 0.25) ** 2).sum()


def test_ask_tell_loop_gives_the_store_of_run(tmp_path):
    """20 ask/tell steps, evaluating the oracle by hand, leave the same store as run() with the seed."""
    cfg = _cfg(tmp_path, acquisition={"num_restarts": 1, "raw_samples": 32, "maxiter": 30})
    ref = Campaign(cfg, run_dir=tmp_path / "run")
    res = ref.run()
    camp = Campaign(cfg, run_dir=tmp_path / "asktell")
    oracle = camp.oracle
    steps = 0
    while not camp.finished():
        trial = camp.ask(1)
        assert len(trial) == 1 and trial.X.shape == (1, 2)
        Y = oracle.evaluate(trial.X, trial.fidelities[0]).Y
        camp.tell(trial.X, Y)  # matched to the asked point by its inputs
        steps += 1
    out = camp.finish()
    assert steps == 20 and len(camp.ask(1)) == 0  # the budget is spent
    assert _rows(tmp_path / "run") == _rows(tmp_path / "asktell")
    assert out.state.calls == res.state.calls == 20 and out.best.value == res.best.value
    camp.close()
    ref.close()


def test_tell_records_failures_and_checks_numbers(tmp_path):
    cfg = _cfg(tmp_path, budget={"calls": 6}, acquisition={"name": "sobol"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t = camp.ask(4)
    assert t.roles == ["initial"] * 4 and len(set(t.ids)) == 4
    # the whole initial design (5 points) is pending in the store from the first ask
    assert RunStore(tmp_path / "run" / "store.sqlite").counts()["pending"] == 5
    Y = torch.tensor([[1.0], [float("nan")], [3.0], [4.0]], dtype=torch.float64)
    Yvar = torch.tensor([[0.1], [0.1], [-1.0], [0.2]], dtype=torch.float64)
    camp.tell(t.X, Y, Yvar, ids=t.ids, reasons=[None, None, None, "robot dropped the sample"])
    rows = {r["id"]: r for r in _rows(tmp_path / "run")}
    got = [(rows[i]["status"], rows[i]["reason"]) for i in t.ids]
    assert got == [("done", None), ("failed", "non-finite output"), ("failed", "negative variance -1"),
                   ("failed", "robot dropped the sample")]
    with pytest.raises(ValueError, match="Y has 2 columns; expected m = 1"):
        camp.tell(t.X[:1], torch.zeros(1, 2))
    with pytest.raises(ValueError, match="is not a pending point"):
        camp.tell(t.X[:1], torch.zeros(1, 1), ids=[t.ids[0]])
    # a point never asked is added as a user observation
    rid = camp.tell([[0.0, 5.0]], [[17.5]])[0]
    assert _rows(tmp_path / "run")[-1]["id"] == rid and camp.state().calls == 5
    with pytest.raises(ValueError, match="ask"):
        camp.ask(0)
    camp.close()


def test_a_bad_tell_is_refused_whole_and_stores_nothing(tmp_path):
    """Levels that are not the oracle's, costs that are not costs, and rows that do not match the
    points are one-line errors raised before anything is stored: the run stays usable (before, a
    level of 5 was stored and broke state() and resume, a cost of -1000 undid the cost budget,
    and a fidelity list one short left a pending row that ask() then handed out)."""
    mf = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}
    cfg = _cfg(tmp_path, oracle=mf, budget={"cost": 60.0}, initial={"n": 3, "fidelities": [0, 1]},
               acquisition={"name": "qMFLogEI", **FAST_ACQ})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    before = _rows(tmp_path / "run")
    x = [[0.3, 4.0]]
    for kwargs, message in [
        ({"fidelity": 5}, r"tell: fidelity 5 is not a level of this oracle: levels are 0..1"),
        ({"fidelity": -1}, r"tell: fidelity -1 is not a level"),
        ({"fidelity": 0.5}, r"tell: fidelity 0.5 is not a level"),
        ({"fidelity": 0, "cost": [-1000.0]}, r"tell: cost -1000.0 is not a finite cost >= 0"),
        ({"fidelity": 0, "cost": [float("nan")]}, r"tell: cost nan is not a finite cost"),
    ]:
        with pytest.raises(ValueError, match=message):
            camp.tell(x, [[1.0]], **kwargs)
    with pytest.raises(ValueError, match=r"tell: fidelity has 1 entries for 2 points"):
        camp.tell([[0.45, 1.0], [0.46, 2.0]], [[1.0], [2.0]], fidelity=[0])
    with pytest.raises(ValueError, match=r"tell: Y must be n x m = 2 x 1 .* got shape \(3,\)"):
        camp.tell([[0.45, 1.0], [0.46, 2.0]], [1.0, 2.0, 3.0], fidelity=0)
    with pytest.raises(ValueError, match=r"tell: Y must be n x m = 2 x 1 .* got shape \(4, 1\)"):
        camp.tell([[0.45, 1.0], [0.46, 2.0]], torch.zeros(4, 1), fidelity=0)
    assert _rows(tmp_path / "run") == before
    st = camp.state()
    assert st.calls == 0 and st.cost == 0.0
    t = camp.ask(1)
    assert t.roles == ["initial"]  # the design, not a row left behind by a refused tell
    # a good tell after all that: n values for n points of one output, levels and costs as
    # numpy or torch scalars
    import numpy as np

    camp.tell([[0.45, 1.0], [0.46, 2.0]], [1.0, 2.0], fidelity=[np.int64(0), torch.tensor(1)],
              cost=[np.float64(1.0), torch.tensor(10.0)])
    assert camp.state().cost == 11.0
    camp.close()
    Campaign.resume(tmp_path / "run").close()


def test_told_inputs_must_be_the_asked_ones_and_inside_the_bounds(tmp_path):
    """tell(X, Y, ids=...) had stored Y against the asked x whatever X said, and a point
    outside the bounds had been stored and then reported by best()."""
    camp = Campaign(_cfg(tmp_path, budget={"calls": 8}), run_dir=tmp_path / "run")
    t = camp.ask(1)
    before = _rows(tmp_path / "run")
    moved = t.X.clone()
    moved[0, 0] += 0.5
    with pytest.raises(ValueError, match=rf"tell: X row 0 = .* is not the point asked as row {t.ids[0]}"):
        camp.tell(moved, [[1.0]], ids=t.ids)
    for far in ([[300.0, 300.0]], [[float("nan"), 1.0]]):
        with pytest.raises(ValueError, match=r"tell: X row 0 = .* lies outside the oracle's bounds"):
            camp.tell(far, [[-1.0]])
    assert _rows(tmp_path / "run") == before
    camp.tell(t.X, [[1.0]], ids=t.ids)  # the asked point itself is fine
    assert camp.best().x == t.X[0].tolist()
    camp.close()


def test_a_late_initial_result_holds_the_acquisition_instead_of_spending_budget_on_sobol(tmp_path):
    """Multi-fidelity (AR1 needs every level) with ``model.bootstrap = "none"``: while one cheap
    initial point is still out, ask() proposes nothing (no model to propose with) rather than a
    blind Sobol point at the expensive level; once it is told, the next point comes from the
    acquisition with the model's prediction. With nothing in flight and too few results (the
    initial points failed) it falls back to Sobol. With the default bootstrap, the points told so
    far fit BoTorch's multi-fidelity GP, which proposes (with its prediction) until AR1 can be fitted."""
    from botorch.models import SingleTaskMultiFidelityGP

    from surrogates.multifidelity import AR1CoKriging

    mf = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}
    acq = {"name": "qMFMES", "num_fantasies": 4, **FAST_ACQ}
    cfg = _cfg(tmp_path, oracle=mf, budget={"cost": 60.0}, initial={"n": 3, "fidelities": [0, 1]},
               acquisition=acq, model={"name": "ar1", "bootstrap": "none"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t = camp.ask(6)
    assert t.roles == ["initial"] * 6 and t.fidelities == [0, 0, 0, 1, 1, 1]
    late = 0  # the first level-0 point straggles
    for i in range(1, 6):
        camp.tell(t.X[i:i + 1], camp.oracle.evaluate(t.X[i:i + 1], t.fidelities[i]).Y, ids=[t.ids[i]])
        assert len(camp.ask(1)) == 0 and camp.model is None
    camp.tell(t.X[late:late + 1], camp.oracle.evaluate(t.X[late:late + 1], 0).Y, ids=[t.ids[late]])
    t2 = camp.ask(1)
    assert len(t2) == 1 and t2.roles == ["acquisition"] and camp.model is not None
    assert RunStore(tmp_path / "run" / "store.sqlite").rows()[-1]["prediction"] is not None
    camp.close()

    camp = Campaign(cfg, run_dir=tmp_path / "failed")
    t = camp.ask(6)
    camp.tell(t.X, torch.zeros(6, 1), ids=t.ids, reasons=["node lost"] * 6)
    t2 = camp.ask(2)  # nothing in flight: Sobol points, so that the campaign goes on
    assert len(t2) == 2 and t2.roles == ["acquisition"] * 2 and camp.model is None
    camp.close()

    cfg = _cfg(tmp_path, oracle=mf, budget={"cost": 60.0}, initial={"n": 3, "fidelities": [0, 1]},
               acquisition=acq, model={"name": "ar1"})
    camp = Campaign(cfg, run_dir=tmp_path / "bootstrap")
    t = camp.ask(6)
    for i in range(1, 6):
        camp.tell(t.X[i:i + 1], camp.oracle.evaluate(t.X[i:i + 1], t.fidelities[i]).Y, ids=[t.ids[i]])
    t2 = camp.ask(1)
    assert t2.roles == ["acquisition"] and isinstance(camp.model, SingleTaskMultiFidelityGP)
    assert RunStore(tmp_path / "bootstrap" / "store.sqlite").rows()[-1]["prediction"] is not None
    camp.tell(t.X[:1], camp.oracle.evaluate(t.X[:1], 0).Y, ids=[t.ids[0]])
    camp.ask(1)
    assert isinstance(camp.model, AR1CoKriging)
    camp.close()


def test_killed_ask_tell_loop_resumes(tmp_path):
    """A script driving ask/tell is SIGKILLed with points asked and not told: a new driver
    gets those points again first, under their row ids, and finishes the budget."""
    script = tmp_path / "drive.py"
    script.write_text(textwrap.dedent(f"""
        import os, signal
        from loops.config import parse_config
        from loops.engine import Campaign
        cfg = parse_config({{"name": "k", "oracle": {{"name": "branin"}}, "budget": {{"calls": 9}},
                            "initial": {{"n": 4}}, "acquisition": {{"name": "sobol"}},
                            "executor": {{"kind": "serial"}}, "tracking": {{"enabled": False}}}})
        camp = Campaign(cfg, run_dir={str(tmp_path / "run")!r})
        for _ in range(3):
            t = camp.ask(2)
            camp.tell(t.X[:1], camp.oracle.evaluate(t.X[:1]).Y, ids=t.ids[:1])  # the second stays out
        os.kill(os.getpid(), signal.SIGKILL)
    """))
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()
    before = _rows(tmp_path / "run")
    out = [r["id"] for r in before if r["status"] == "pending"]
    assert len(out) == 3 and sum(r["status"] == "done" for r in before) == 3
    camp = Campaign.resume(tmp_path / "run")
    t = camp.ask(5)
    assert t.ids[:3] == out  # the points of the dead driver come back first
    camp.tell(t.X, camp.oracle.evaluate(t.X).Y, ids=t.ids)
    while not camp.finished():
        t = camp.ask(1)
        camp.tell(t.X, camp.oracle.evaluate(t.X).Y, ids=t.ids)
    res = camp.finish()
    rows = _rows(tmp_path / "run")
    assert len(rows) == 9 and all(r["status"] == "done" for r in rows) and res.state.calls == 9
    for r in before:
        if r["status"] == "done":
            assert next(q for q in rows if q["id"] == r["id"]) == r
    assert len({tuple(r["x"]) for r in rows}) == 9
    camp.close()


def test_function_oracle_instance_serial_and_process(tmp_path):
    from oracles.exceptions import InvalidInput

    bounds = [[0.0, 0.0], [1.0, 1.0]]
    lam = FunctionOracle(lambda x: ((x - 0.25) ** 2).sum(), bounds)
    cfg = _cfg(tmp_path, budget={"calls": 6}, initial={"n": 4})
    res = Campaign(cfg, run_dir=tmp_path / "serial", oracle=lam).run()
    assert res.state.calls == 6 and res.state.failed == 0
    # a lambda cannot travel to worker processes: one clear line, before anything runs
    proc = parse_config({**cfg.model_dump(exclude={"oracle"}), "oracle": {"name": "branin"},
                         "executor": {"kind": "process", "workers": 2}})
    with pytest.raises(InvalidInput, match="cannot be pickled for executor.kind = 'process'"):
        Campaign(proc, run_dir=tmp_path / "proc", oracle=lam)
    # a module-level function goes to the workers by pickling
    fo = FunctionOracle(sphere, bounds)
    camp = Campaign(proc, run_dir=tmp_path / "proc2", oracle=fo)
    res = camp.run()
    rows = _rows(tmp_path / "proc2")
    assert len(rows) == 6 and all(r["status"] == "done" for r in rows)
    for r in rows:
        assert r["y"][0] == pytest.approx(sum((v - 0.25) ** 2 for v in r["x"]), rel=1e-12)
    # a resume takes the object again
    again = Campaign.resume(tmp_path / "proc2", oracle=fo)
    assert again.state().calls == 6
    again.close()
    camp.close()
    # an object defining another problem (another box, another cost) is refused by what differs
    for other, what in ((FunctionOracle(sphere, [[0.0, 0.0], [10.0, 10.0]]), "bounds"),
                        (FunctionOracle(sphere, bounds, cost=5.0), "costs")):
        with pytest.raises(RunDirError, match=rf"was run with another oracle: the object given differs in {what}"):
            Campaign.resume(tmp_path / "proc2", oracle=other)
    Campaign.resume(tmp_path / "proc2", oracle=fo).close()  # the lock was given back


def test_best_repr_dataframe_and_torch_threads(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = _cfg(tmp_path, budget={"calls": 12})
        camp = Campaign(cfg, run_dir=tmp_path / "run")
        res = camp.run()
        assert torch.get_num_threads() == 2  # restored
    finally:
        torch.set_num_threads(threads)
    rows = _rows(tmp_path / "run")
    ys = [r["y"][0] for r in rows if r["status"] == "done"]
    b = res.best
    assert b.value == min(ys)
    assert b.x == next(r["x"] for r in rows if r["status"] == "done" and r["y"][0] == b.value)
    # the model's best predicted point: inside the bounds, and its predicted value is no worse than
    # the model's mean at the best observed point (it maximizes the signed posterior mean)
    lo, hi = camp.problem.bounds
    px = torch.tensor(b.predicted_x, dtype=torch.float64)
    assert ((px >= lo) & (px <= hi)).all()
    with torch.no_grad():
        at_best = camp.model.posterior(torch.tensor([b.x], dtype=torch.float64)).mean.item()
    assert b.predicted_value <= at_best + 1e-6
    text = repr(res)
    assert len(text) < 300 and "calls=12" in text and f"best={b.value:.6g}" in text and "GP" not in text
    df = res.dataframe()
    assert list(df["id"]) == [r["id"] for r in rows] and len(df) == 12
    (x0, x1), (f,) = camp.oracle.input_names, camp.oracle.output_names
    assert {x0, x1, f, f"{f}_var", "status", "reason", "cost"} <= set(df.columns)
    assert df[f].min() == b.value and math.isnan(df[f"{f}_var"].iloc[0])
    assert df[[x0, x1]].to_numpy().tolist() == [r["x"] for r in rows]
    camp.close()


def test_finished_campaign_has_no_running_rows(tmp_path):
    """A campaign that stops on a condition with points in flight cancels them (with the reason)."""
    cfg = _cfg(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 0.2, "jitter": 0.4},
               budget={"calls": 40, "wall_time": 3.0},
               acquisition={"name": "sobol"}, executor={"kind": "thread", "workers": 2})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    assert res.stopped_by == "WallTimeBudget"
    rows = _rows(tmp_path / "run")
    assert not any(r["status"] == "pending" for r in rows)
    cancelled = [r for r in rows if r["status"] == "cancelled"]
    # the calls take different times (jitter), so the stop finds the other worker's call running
    assert cancelled
    assert all(r["reason"] == "cancelled: campaign stopped by WallTimeBudget" for r in cancelled)
    assert res.state.calls == sum(r["status"] in ("done", "failed") for r in rows)
    from loops.commands import cmd_status

    class A:
        run = str(tmp_path / "run")

    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cmd_status(A()) == 0
    text = buf.getvalue()
    assert "finished" in text and f"calls: {res.state.calls} / 40" in text, text


def test_a_prediction_that_fails_is_a_warning_and_the_point_still_runs(tmp_path, monkeypatch):
    import loops.engine as E

    cfg = _cfg(tmp_path, budget={"calls": 6}, initial={"n": 3})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t = camp.ask(3)
    camp.tell(t.X, camp.oracle.evaluate(t.X).Y, ids=t.ids)

    def broken(model, X):
        raise RuntimeError("cholesky failed")

    monkeypatch.setattr(E, "predict", broken)
    with pytest.warns(UserWarning, match=r"no prediction for the new point \(RuntimeError: cholesky failed\)"):
        t2 = camp.ask(1)
    assert len(t2) == 1 and RunStore(tmp_path / "run" / "store.sqlite").rows()[-1]["prediction"] is None
    camp.close()


def _two_level(x, fidelity):
    return ((x - 0.3) ** 2).sum() + (0.0 if fidelity == 2 else 0.1 * (2 - fidelity) * x.sum())


@pytest.mark.parametrize(
    ("acq", "fidelities", "levels"),
    [("qMFLogEI", None, [0, 1]),   # default of a multi-fidelity acquisition: every level below the target
     ("qMFMES", None, [0, 1]),
     ("max_variance", None, [0, 1]),  # learn mode's level-choosing acquisition
     ("qLogNEI", None, [2]),       # a single-fidelity acquisition works at the target
     ("qNIPV", None, [2]),
     ("qMFLogEI", [2], [2])],      # an explicit choice is kept
)
def test_the_initial_design_of_a_multi_fidelity_acquisition_starts_where_results_are_cheap(
        tmp_path, acq, fidelities, levels):
    """With ``initial.fidelities`` unset, a multi-fidelity acquisition's initial design is
    evaluated at every level below the target fidelity (what ``mf_campaigns.py`` measures); it
    had been the target level alone, which spent 50 of a budget of 60 on five expensive points
    at costs 1, 5, 10. The points are the same at every level."""
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    oracle = FunctionOracle(_two_level, bounds, names=["a", "b"], num_fidelities=3, cost=[1.0, 5.0, 10.0])
    initial = {"n": 4} if fidelities is None else {"n": 4, "fidelities": fidelities}
    mode = "learn" if acq in ("max_variance", "qNIPV") else "optimize"
    camp = Campaign(_cfg(tmp_path, oracle=oracle, budget={"cost": 60.0}, initial=initial, mode=mode,
                         acquisition={"name": acq, **FAST_ACQ}))
    trial = camp.ask(20)
    design = [i for i, r in enumerate(trial.roles) if r != "validation"]  # learn mode also asks its validation set
    trial_levels = [trial.fidelities[i] for i in design]
    assert trial_levels == [lev for lev in levels for _ in range(4)]
    assert {trial.roles[i] for i in design} == {"initial"}
    for lev in levels[1:]:
        same = [i for i in design if trial.fidelities[i] == lev]
        torch.testing.assert_close(trial.X[same], trial.X[design[:4]], rtol=0, atol=0)
    camp.close()


@pytest.mark.parametrize(
    ("budget", "initial", "message"),
    [(40.0, {"n": 5, "fidelities": [2]},
      r"the initial design costs 50 \(5 points at fidelities \[2\], level costs \[1.0, 5.0, 10.0\]\), "
      r"more than budget.cost = 40"),
     (3.0, {"n": 4}, r"the initial design costs 24 \(4 points at fidelities \[0, 1\].*more than budget.cost = 3"),
     (30.0, {"n": 4}, r"budget.cost = 30 leaves 6 after the initial design \(cost 24\), less than one evaluation "
                      r"at the target fidelity 2 \(cost 10\).*budget.cost >= 34")],
)
def test_a_cost_budget_the_initial_design_overspends_or_that_never_reaches_the_target_is_refused(
        tmp_path, budget, initial, message):
    """The initial design is charged to ``budget.cost`` like every other point: a design that
    costs more than the budget (it had run anyway: 500 of a budget of 60), or one that leaves
    less than one evaluation at the target fidelity (the campaign ended without ever observing
    its target and recommended from the cheap levels alone), is refused before anything runs."""
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    oracle = FunctionOracle(_two_level, bounds, names=["a", "b"], num_fidelities=3, cost=[1.0, 5.0, 10.0])
    with pytest.raises(ValueError, match=message):
        Campaign(_cfg(tmp_path, oracle=oracle, budget={"cost": budget}, initial=initial,
                      acquisition={"name": "qMFLogEI", **FAST_ACQ}))
    # nothing ran, and the same run directory takes the corrected config
    camp = Campaign(_cfg(tmp_path, oracle=oracle, budget={"cost": 100.0}, initial={"n": 2},
                         acquisition={"name": "qMFLogEI", **FAST_ACQ}))
    assert camp.state().calls == 0
    assert camp.ask(10).fidelities == [0, 0, 1, 1]
    camp.close()


@pytest.mark.parametrize(("acq", "mode", "spends_all"),
                         [("max_variance", "learn", True), ("qMFLogEI", "optimize", False),
                          ("qLogNEI", "optimize", False)])
def test_a_learn_campaign_spends_its_cost_budget_at_the_levels_it_can_still_afford(tmp_path, acq, mode, spends_all):
    """Costs 1, 5, 10 and a budget of 47: once the target (10) no longer fits, a learn campaign
    whose acquisition chooses levels goes on at the cheaper ones it can afford until none fits (it
    had stopped with up to 9 of its budget unspent). An optimize campaign stops there (cheap points
    after its last target evaluation could only move its recommendation), and so does an
    acquisition that works at the target alone. Every point fits the budget when it is asked."""
    bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    oracle = FunctionOracle(_two_level, bounds, names=["a", "b"], num_fidelities=3, cost=[1.0, 5.0, 10.0])
    camp = Campaign(_cfg(tmp_path, oracle=oracle, budget={"cost": 47.0, "calls": 40}, initial={"n": 3},
                         model={"name": "ar1"}, acquisition={"name": acq, **FAST_ACQ}, mode=mode))
    spent, levels = 0.0, []
    while not camp.finished():
        t = camp.ask(1)
        if not len(t):
            break
        if t.roles[0] == "validation":  # learn mode's validation set is not charged to the budget
            camp.tell(t.X, torch.stack([_two_level(x, 2) for x in t.X]).reshape(-1, 1), ids=t.ids)
            continue
        cost = [1.0, 5.0, 10.0][t.fidelities[0]]
        assert spent + cost <= 47.0 + 1e-9
        camp.tell(t.X, torch.stack([_two_level(x, t.fidelities[0]) for x in t.X]).reshape(-1, 1), ids=t.ids)
        spent += cost
        levels.append(t.fidelities[0])
    st = camp.state()
    assert st.cost == spent and 47.0 - spent < 10.0  # the target does not fit what is left
    if spends_all:
        assert 47.0 - spent < 1.0  # nor does the cheapest level
    else:  # it stopped once the target no longer fit: the target still fit before its last point
        assert 47.0 - (spent - [1.0, 5.0, 10.0][levels[-1]]) >= 10.0
    camp.finish()
    camp.close()


@pytest.mark.parametrize("multi_fidelity", [False, True])
def test_a_serial_campaign_repeats_bit_for_bit_with_its_seed(tmp_path, multi_fidelity):
    """What the README promises of ``seed``: the same config run twice (one worker) asks the same
    points at the same levels and records the same results, exactly; another seed asks other points."""
    over = {"budget": {"calls": 10}, "initial": {"n": 4}}
    if multi_fidelity:
        bounds = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
        oracle = FunctionOracle(_two_level, bounds, names=["a", "b"], num_fidelities=3, cost=[1.0, 5.0, 10.0])
        over.update(oracle=oracle, model={"name": "ar1"}, acquisition={"name": "qMFLogEI", **FAST_ACQ})
    runs = []
    for k, seed in enumerate((3, 3, 4)):
        res = Campaign(_cfg(tmp_path / str(k), seed=seed, **over)).run()
        runs.append([(r["x"], r["fidelity"], r["y"]) for r in _rows(res.run_dir)])
    assert runs[0] == runs[1] and len(runs[0]) == 10
    assert [x for x, _, _ in runs[0]] != [x for x, _, _ in runs[2]]


def test_tell_after_resume_matches_the_pending_rows_and_refuses_what_it_cannot_place(tmp_path):
    """After a resume, tell() without ids had added new rows beside the pending ones (each point
    then evaluated twice, 8 submitted for a budget of 6); a told level other than the asked one
    had been stored at the asked level; one id twice in a call kept the first value silently."""
    from loops.fakes import BraninMultiFidelity

    cfg = _cfg(tmp_path, budget={"calls": 6}, initial={"n": 4})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t = camp.ask(4)
    camp.close()
    camp = Campaign.resume(tmp_path / "run")
    Y = [[float(sphere(x))] for x in t.X]
    with pytest.raises(ValueError, match=r"told twice in one call"):
        camp.tell(t.X[:2].repeat(1, 1), Y[:2], ids=[t.ids[0], t.ids[0]])
    assert camp.tell(t.X, Y) == t.ids
    assert camp.state().submitted == 4 and camp.ask(4).roles == ["acquisition"] * 2
    camp.close()
    # multi-fidelity: a point asked at two levels needs its level; a told level must be the asked one
    mf = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}
    cfg = _cfg(tmp_path, oracle=mf, budget={"cost": 60.0}, initial={"n": 2, "fidelities": [0, 1]},
               acquisition={"name": "qMFLogEI", **FAST_ACQ})
    camp = Campaign(cfg, run_dir=tmp_path / "mf")
    t = camp.ask(4)
    x = t.X[:1]
    with pytest.raises(ValueError, match=r"was asked at levels \[0, 1\]"):
        camp.tell(x, [[1.0]])
    lev0 = [i for i, f in zip(t.ids, t.fidelities, strict=True) if f == 0][0]
    with pytest.raises(ValueError, match=rf"row {lev0} was asked at fidelity 0, told at fidelity 1"):
        camp.tell(t.X[t.ids.index(lev0)].unsqueeze(0), [[1.0]], fidelity=1, ids=[lev0])
    oracle = BraninMultiFidelity(fidelities=[0.5, 1.0], costs=[1.0, 10.0])
    top = [i for i, f in zip(t.ids, t.fidelities, strict=True) if f == 1]
    Xt = torch.stack([t.X[t.ids.index(i)] for i in top])
    assert camp.tell(Xt, oracle.evaluate(Xt, 1).Y, fidelity=1) == top
    camp.close()


def test_best_leaves_the_callers_random_state_alone(tmp_path):
    """best() had reseeded torch's global generator with the campaign seed, so a simulation
    drawing torch noise between peeks got the same numbers after each one."""
    camp = Campaign(_cfg(tmp_path, budget={"calls": 8}), run_dir=tmp_path / "run")
    for _ in range(2):
        t = camp.ask(3)
        camp.tell(t.X, [[float(sphere(x))] for x in t.X], ids=t.ids)
    torch.manual_seed(12345)
    draws = []
    for _ in range(3):
        camp.best()
        draws.append(torch.randn(2))
    torch.manual_seed(12345)
    assert torch.equal(torch.cat(draws), torch.randn(6))  # the caller's stream, untouched
    camp.close()


def _zero(x):
    return 0.0


def test_a_deterministic_oracle_is_not_asked_a_point_it_answered(tmp_path):
    """A flat (zero) objective had made the acquisition ask box corners twice."""
    o = FunctionOracle(_zero, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), names=["a", "b"])
    for seed in range(3):
        cfg = _cfg(tmp_path, oracle=o, seed=seed, budget={"calls": 12}, initial={"n": 4})
        res = Campaign(cfg, run_dir=tmp_path / f"run{seed}").run()
        xs = [tuple(round(v, 9) for v in x) for x in res.dataframe()[["a", "b"]].itertuples(index=False)]
        assert len(set(xs)) == len(xs) == 12, (seed, xs)


def _zero_noisy(x):
    return 0.0, 0.01


def test_a_noisy_oracle_seeded_by_the_point_is_not_asked_a_point_it_answered(tmp_path):
    """A noisy oracle whose noise comes from a seed of the point (the MD elastic-constant oracle)
    answers a repeat with the same value and variance: a repeat is not an independent replicate,
    so its answered points are excluded from the candidates as a deterministic oracle's are; an
    oracle with independent noise may repeat a point."""
    seen = {}
    for seeded in (False, True):
        o = FunctionOracle(_zero_noisy, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                           names=["a", "b"], noisy=True)
        o.seeded_by_point = seeded
        camp = Campaign(_cfg(tmp_path, oracle=o, seed=0, budget={"calls": 8}, initial={"n": 4}),
                        run_dir=tmp_path / f"run{seeded}")
        t = camp.ask(4)
        camp.tell(t.X, o.evaluate(t.X).Y, ids=t.ids)
        seen[seeded] = camp._done_deterministic()
        camp.close()
    assert seen[False] is None
    assert seen[True] is not None and seen[True].shape == (4, 2)


def test_an_optimize_campaign_keeps_room_for_one_target_evaluation(tmp_path):
    """qMFKG could spend a cost budget at the cheap level only and end with no target result
    (26 of 26 calls at level 0): until a target result exists, a cheap point is proposed only if
    one target evaluation still fits after it."""
    mf = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}
    cfg = _cfg(tmp_path, oracle=mf, budget={"cost": 16.0}, initial={"n": 3, "fidelities": [0]},
               acquisition={"name": "qMFKG", "num_restarts": 2, "raw_samples": 32}, model={"name": "mf_gp"})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    df = res.dataframe()
    assert (df["fidelity"] == 1).any() and df["cost"].sum() <= 16.0 + 1e-9, df[["fidelity", "cost"]]


def _named(x):
    return [float(x[0] + x[1]), 103.5]


def test_dataframe_keeps_inputs_and_outputs_named_like_its_own_columns(tmp_path):
    """An output called `cost` and an input called `fidelity` had been overwritten by the
    bookkeeping columns (every `cost` read 1.0 while the store held 103.5)."""
    o = FunctionOracle(_named, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                       names=["width", "fidelity"], outputs=["stress", "cost"])
    cfg = _cfg(tmp_path, oracle=o, outputs=["stress"], budget={"calls": 4}, initial={"n": 4},
               acquisition={"name": "sobol"})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    df = res.dataframe()
    assert (df["output.cost"] == 103.5).all() and (df["cost"] == 1.0).all()
    stored = torch.tensor([r["x"] for r in res.rows], dtype=torch.float64)
    assert df["input.fidelity"].tolist() == stored[:, 1].tolist() and (df["fidelity"] == 0).all()
    assert df["input.fidelity"].nunique() == len(df) and df["width"].tolist() == stored[:, 0].tolist()
    assert df["stress"].tolist() == pytest.approx((stored[:, 0] + stored[:, 1]).tolist(), rel=1e-12)


def test_tell_takes_ids_as_a_tensor_or_numpy_array(tmp_path):
    """ids from a tensor or a numpy array had been refused as "not a pending point"
    (a tensor) or raised a KeyError (numpy); non-integer ids are named."""
    import numpy as np

    camp = Campaign(_cfg(tmp_path), run_dir=tmp_path / "ids")
    t = camp.ask(3)
    Y = camp.oracle.evaluate(t.X).Y
    assert camp.tell(t.X[:1], Y[:1], ids=torch.tensor(t.ids[:1])) == t.ids[:1]
    assert camp.tell(t.X[1:2], Y[1:2], ids=np.array(t.ids[1:2])) == t.ids[1:2]
    with pytest.raises(ValueError, match=r"ids must be row ids \(ints, as ask\(\) returns\), got 2.5"):
        camp.tell(t.X[2:], Y[2:], ids=[2.5])
    assert camp.tell(t.X[2:], Y[2:], ids=[torch.tensor(t.ids[2])]) == t.ids[2:]
    camp.close()
    with pytest.raises(RuntimeError, match="this Campaign was closed; open the run directory again"):
        camp.finished()


def test_a_finished_campaign_taken_back_sees_what_another_driver_added(tmp_path):
    """finish() lets the directory go; a driver that resumed it may add results. The first
    object's later ask() had taken the lock back with its old view of the store and run
    past the budget (12 calls for 10); it now re-reads the store. finished() after finish()
    only reads, and an early finish() says it was the caller's."""
    cfg = _cfg(tmp_path, budget={"calls": 8})
    d = tmp_path / "shared"
    a = Campaign(cfg, run_dir=d)
    oracle = a.oracle
    for _ in range(3):
        t = a.ask(2)
        a.tell(t.X, oracle.evaluate(t.X).Y, ids=t.ids)
    assert a.finish().stopped_by == "caller"
    assert a.finished() is False  # reads only: the directory stays free
    b = Campaign.resume(d)
    while not b.finished():
        t = b.ask(2)
        b.tell(t.X, oracle.evaluate(t.X).Y, ids=t.ids)
    assert b.finish().stopped_by == "CallsBudget"
    banked = float(RunStore(d / "store.sqlite").get_meta("elapsed"))
    assert a.finished() is True
    # a read-only look neither runs a clock nor writes the store's elapsed time
    assert a.state().elapsed == pytest.approx(banked)
    assert float(RunStore(d / "store.sqlite").get_meta("elapsed")) == banked
    assert len(a.ask(2)) == 0
    res = a.finish()
    assert res.state.calls == 8 and len(_rows(d)) == 8
    a.close()


def test_a_campaign_dropped_without_close_lets_its_directory_go(tmp_path):
    import gc

    d = tmp_path / "dropped"
    c = Campaign(_cfg(tmp_path), run_dir=d)
    c.ask(2)
    del c
    gc.collect()
    again = Campaign.resume(d)  # had failed: "in use by another campaign of this process"
    assert len(again.ask(2)) == 2
    again.close()


def test_tell_charges_the_cost_model_at_the_point_and_learn_reports_its_validation_cost(tmp_path):
    """Without cost=, tell had charged the level's nominal cost while the budget admitted the
    point against the cost model at x. A learn campaign's validation set is evaluated outside
    the budgets; the result says what it cost."""
    from oracles.base import CostModel

    class XCost(CostModel):
        def __call__(self, X, fidelity):
            return (1.0 + X[:, 0]).to(torch.float64)

    oracle = FunctionOracle(sphere, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64), names=["a", "b"])
    oracle.cost_model = XCost((1.0,))
    cfg = _cfg(tmp_path, oracle=oracle, mode="learn", learn={"n_validation": 4}, initial={"n": 3},
               budget={"calls": 5}, acquisition={"name": "sobol"})
    camp = Campaign(cfg, run_dir=tmp_path / "xcost")
    while not camp.finished():
        t = camp.ask(2)
        camp.tell(t.X, oracle.evaluate(t.X).Y, ids=t.ids)
    res = camp.finish()
    rows = _rows(tmp_path / "xcost")
    for r in rows:
        assert r["cost"] == pytest.approx(1.0 + r["x"][0])
    val = [r for r in rows if r["role"] == "validation"]
    assert len(val) == 4 and res.state.calls == 5
    assert res.state.metrics["validation_cost"] == pytest.approx(sum(1.0 + r["x"][0] for r in val))
    camp.close()


def test_default_run_directories_are_claimed_exclusively(tmp_path):
    """Campaigns started in the same second had picked the same default name (checked, then
    created later) and one was refused as "in use"; each claim now creates its own."""
    from loops.engine import run_dir_for

    cfg = _cfg(tmp_path)
    dirs = [run_dir_for(cfg, base=tmp_path / "base", claim=True) for _ in range(3)]
    assert len(set(dirs)) == 3 and all(d.is_dir() for d in dirs)


def test_a_default_run_directory_that_cannot_be_made_is_one_line(tmp_path):
    """config.run_dir naming a file: the default directory under it cannot be created (it
    had ended in an AttributeError from the error message itself)."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(RunDirError, match="run directory .*afile.* cannot be used"):
        Campaign(_cfg(tmp_path, run_dir=str(tmp_path / "afile")))


def test_a_copied_run_lock_is_not_held(tmp_path):
    """Only the object that took the lock lets it go (a copy released on collection had
    unlinked the live lock and closed its file descriptor)."""
    import copy
    import pickle

    from loops.store import RunLock

    lock = RunLock(tmp_path)
    lock.acquire()
    for other in (copy.copy(lock), copy.deepcopy(lock), pickle.loads(pickle.dumps(lock))):
        assert other.held is False
        del other
    import gc

    gc.collect()
    assert lock.held and (tmp_path / "lock").exists()
    lock.release()


def test_a_resumed_campaign_numbers_its_iterations_on(tmp_path):
    """The rows' iteration (the model update a point was proposed after) had restarted at 0 on
    resume (0, 1, 2, 1, 2, ...)."""
    cfg = _cfg(tmp_path, budget={"calls": 9}, initial={"n": 3})
    d = tmp_path / "it"
    camp = Campaign(cfg, run_dir=d)
    for _ in range(5):
        t = camp.ask(1)
        camp.tell(t.X, camp.oracle.evaluate(t.X).Y, ids=t.ids)
    camp.close()
    before = max(r["iteration"] for r in _rows(d))
    again = Campaign.resume(d)
    t = again.ask(1)
    again.tell(t.X, again.oracle.evaluate(t.X).Y, ids=t.ids)
    again.close()
    rows = _rows(d)
    assert rows[-1]["iteration"] > before
    acq = [r["iteration"] for r in rows if r["role"] == "acquisition"]
    assert acq == sorted(acq)


def _smooth(x):
    return [math.sin(3.0 * x[0]) + 0.5 * x[1]]


def test_learn_campaign_stops_at_its_target_error(tmp_path):
    """``learn.target_nrmse``: the campaign stops at the first model update whose validated
    nRMSE is at or below the target, well before its calls budget, and says so."""
    oracle = FunctionOracle(_smooth, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                            names=["a", "b"])
    target = 0.05
    cfg = _cfg(tmp_path, oracle=oracle, mode="learn", learn={"n_validation": 8, "target_nrmse": target},
               initial={"n": 4}, budget={"calls": 40}, acquisition={"name": "sobol"})
    res = Campaign(cfg, run_dir=tmp_path / "target").run()
    assert res.stopped_by == "TargetError" and res.state.calls < 40
    assert res.state.metrics["nrmse"] <= target
    # independent of the engine's bookkeeping: the final model's error on the validation set
    s = RunStore(tmp_path / "target" / "store.sqlite")
    try:
        val = [r for r in s.rows() if r["role"] == "validation"]
        history = [m["value"] for m in s.metrics() if m["name"] == "nrmse"]
    finally:
        s.close()
    Xv = torch.tensor([r["x"] for r in val], dtype=torch.float64)
    yv = torch.tensor([r["y"][0] for r in val], dtype=torch.float64)
    with torch.no_grad():
        mu = res.model.posterior(Xv).mean.squeeze(-1)
    assert float((mu - yv).pow(2).mean().sqrt() / yv.std()) == pytest.approx(res.state.metrics["nrmse"], rel=1e-6)
    # it went on while the error was above the target and stopped at the first update below it
    assert len(history) >= 2 and history[-1] <= target and all(v > target for v in history[:-1]), history


def test_the_recommendation_is_not_a_design_that_failed(tmp_path):
    """The model is fitted to successful points only, so its posterior mean may peak where the
    oracle failed (a pore space that does not percolate): then the recommendation is the best
    predicted of the observed designs, not the failed point. (A noisy oracle: a deterministic
    one's recommendation is the posterior mean's maximizer only where the model is sure of it.)"""
    camp = Campaign(_cfg(tmp_path, budget={"calls": 12}, oracle={"name": "branin", "noise_std": 0.1}),
                    run_dir=tmp_path / "run")
    for _ in range(3):
        t = camp.ask(3)
        camp.tell(t.X, camp.oracle.evaluate_true(t.X), ids=t.ids)
    first = camp.best()
    camp.tell([first.predicted_x], [[float("nan")]], reasons=["simulation diverged"])
    again = camp.best()
    assert again.predicted_x != first.predicted_x
    X, _, _ = camp.data()
    assert any(torch.allclose(torch.tensor(again.predicted_x, dtype=X.dtype), x, rtol=0, atol=0) for x in X)
    with torch.no_grad():
        mean = camp.model.posterior(X).mean[:, 0]
    # branin is minimized: the best predicted observed design
    assert again.predicted_value == pytest.approx(float(mean.min()), rel=1e-9)
    camp.close()


def _told(tmp_path, fn, bounds, X):
    """A campaign on the deterministic ``fn`` told ``fn`` at ``X`` (``n x d``), its model fitted."""
    oracle = FunctionOracle(lambda x: fn(torch.as_tensor(x, dtype=torch.float64).unsqueeze(0)).reshape(1), bounds)
    cfg = parse_config({"name": "rec", "oracle": oracle, "budget": {"calls": 50}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs")})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    camp.tell(X, fn(X).reshape(-1, 1))
    camp.update_model()
    return camp


def test_a_deterministic_campaign_recommends_an_unobserved_point_only_where_its_model_is_sure(tmp_path):
    """A deterministic oracle's observations are exact: the posterior mean's maximizer is the
    recommendation only where it beats the best observation by 1.96 of its standard deviations.
    On 12 Sobol points of Powell (4D) the maximizer is an extrapolation into a corner (its
    posterior mean -2659, far below Powell's minimum of 0, true value 2513 against a best
    observation of 173); the best observation is recommended instead. On a 1D quadratic with
    points on both sides of its minimum the model is sure, and the recommendation is the
    minimizer between the points (x = 0.37 to 1e-2), better than any observation."""
    from botorch.acquisition import PosteriorMean
    from botorch.optim import optimize_acqf
    from botorch.test_functions.synthetic import Powell
    from scipy.stats import qmc

    powell = Powell(dim=4)
    b = powell.bounds.to(torch.float64)
    X = torch.as_tensor(qmc.scale(qmc.Sobol(4, seed=1).random_base2(4)[:12], b[0].numpy(), b[1].numpy()))
    camp = _told(tmp_path / "powell", powell, b.tolist(), X)
    xb, _ = optimize_acqf(PosteriorMean(camp.model, maximize=False), bounds=b, q=1, num_restarts=4, raw_samples=256)
    best = camp.best()
    assert float(powell(xb)) > 10 * best.value  # the maximizer: a guess, far worse than observed
    assert best.predicted_x == best.x and best.predicted_value == pytest.approx(best.value, rel=0.05)
    camp.close()

    quad = lambda x: (x[..., 0] - 0.37) ** 2  # noqa: E731
    X = torch.tensor([[0.0], [0.1], [0.2], [0.3], [0.45], [0.55], [0.7], [0.9], [1.0]], dtype=torch.float64)
    camp = _told(tmp_path / "quad", quad, [[0.0], [1.0]], X)
    best = camp.best()
    assert abs(best.predicted_x[0] - 0.37) < 1e-2
    assert float(quad(torch.tensor(best.predicted_x))) < best.value
    assert best.predicted_value + 1.96 * best.predicted_sd < best.value
    camp.close()


def test_results_told_with_a_variance_are_not_taken_as_exact(tmp_path):
    """A deterministic oracle's campaign told measured results with a variance (sd 0.05 on a
    quadratic with its minimum 0 at x = 0.37): the observations are not exact, so the best of
    them is not the answer by itself. The lucky observation (x = 0.1, observed -0.08, true
    0.0729) had been recommended; the posterior mean's maximizer lies near 0.37, where the true
    value is below 0.02."""
    quad = lambda x: (x[..., 0] - 0.37) ** 2  # noqa: E731
    oracle = FunctionOracle(lambda x: quad(torch.as_tensor(x, dtype=torch.float64)).reshape(1), [[0.0], [1.0]])
    cfg = parse_config({"name": "rec", "oracle": oracle, "budget": {"calls": 50}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs")})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    X = torch.linspace(0, 1, 11, dtype=torch.float64).reshape(-1, 1)
    noise = torch.tensor([0.05, -0.05] * 5 + [0.05], dtype=torch.float64)
    noise[1] = -0.08 - float(quad(X[1]))  # the lucky one: observed -0.08 at x = 0.1
    camp.tell(X, (quad(X) + noise).reshape(-1, 1), Yvar=torch.full((11, 1), 0.0025, dtype=torch.float64))
    camp.update_model()
    best = camp.best()
    assert best.x == [pytest.approx(0.1)] and best.value == pytest.approx(-0.08)  # the best observation
    assert float(quad(torch.tensor(best.predicted_x))) < 0.02, best  # not it: the model's answer
    camp.close()


def test_a_best_point_without_a_standard_deviation_prints():
    """BestPoint's predicted_sd defaults to None; the repr of one built with a predicted point and
    no sd had raised TypeError (None formatted with :.3g)."""
    from loops.engine import BestPoint

    b = BestPoint([1.0], 2.0, 3, predicted_x=[1.5], predicted_value=1.25)
    assert repr(b) == "BestPoint(value=2, x=[1], predicted_value=1.25, predicted_sd=None, predicted_x=[1.5])"
    b.predicted_sd = 0.5
    assert repr(b) == "BestPoint(value=2, x=[1], predicted_value=1.25, predicted_sd=0.5, predicted_x=[1.5])"


def test_replicates_of_a_new_point_told_in_one_call_are_each_recorded(tmp_path):
    """Two noisy replicates of a point never asked, told together without ids, are two rows
    with their own values (the second had been matched to the first's new row and lost)."""
    camp = Campaign(_cfg(tmp_path), run_dir=tmp_path / "run")
    x = [1.0, 2.0]
    ids = camp.tell([x, x, [3.0, 4.0]], [[10.0], [10.4], [7.0]])
    assert len(set(ids)) == 3
    rows = {r["id"]: r for r in _rows(tmp_path / "run")}
    assert [rows[i]["y"] for i in ids] == [[10.0], [10.4], [7.0]]
    assert all(rows[i]["status"] == "done" for i in ids)
    camp.close()


def test_results_told_with_and_without_known_variances(tmp_path):
    """One result told without Yvar had dropped every known variance: on a deterministic oracle
    the replicates told with Yvar were then fitted as exact (posterior sd 2e-4 where they differ
    by 0.4). A deterministic oracle's own answers are exact (variance 0) beside the ones told; a
    noisy oracle's unknown and known noise are not mixed in one fit, and that is said."""
    from loops.engine import NoiseWarning

    g = torch.Generator().manual_seed(0)
    X = torch.cat([torch.rand(8, 2, generator=g, dtype=torch.float64), torch.full((3, 2), 0.5, dtype=torch.float64)])
    Y = torch.cat([(X[:8] - 0.3).pow(2).sum(-1), torch.tensor([0.0, 0.2, 0.4], dtype=torch.float64)]).unsqueeze(-1)
    extra = torch.tensor([[0.9, 0.9]], dtype=torch.float64)
    for noisy in (False, True):
        o = FunctionOracle(_zero_noisy if noisy else _zero, torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64),
                           names=["a", "b"], noisy=noisy)
        camp = Campaign(_cfg(tmp_path, oracle=o, initial={"n": 4, "fidelities": []}, name=f"mix{noisy}"),
                        run_dir=tmp_path / f"mix{noisy}")
        camp.tell(X, Y, torch.full_like(Y, 0.01))
        camp.tell(extra, torch.tensor([[0.72]], dtype=torch.float64))
        if noisy:
            with pytest.warns(NoiseWarning, match="11 of 12 results have known variances"):
                _, _, Yvar = camp.data()
            assert Yvar is None
        else:
            _, _, Yvar = camp.data()
            assert Yvar is not None and Yvar[:-1].eq(0.01).all() and Yvar[-1].eq(0.0).all()
        camp.close()


def test_tell_refuses_a_string_of_reasons_and_unreadable_results_in_one_line(tmp_path):
    """reasons="ok" had been read letter by letter (two points failed with reasons "o" and "k");
    Y as a dict or of None had failed in torch; a 3-d X was said to have "2 columns; expected 2"."""
    camp = Campaign(_cfg(tmp_path), run_dir=tmp_path / "r")
    t = camp.ask(2)
    with pytest.raises(ValueError, match="reasons must be a list"):
        camp.tell(t.X, [0.0, 0.0], ids=t.ids, reasons="ok")
    with pytest.raises(ValueError, match="Y must be numbers"):
        camp.tell(t.X, {"y": [0.0, 0.0]}, ids=t.ids)
    with pytest.raises(ValueError, match=r"X must be n x d = n x 2, got shape \(1, 2, 2\)"):
        camp.tell(t.X[None], [0.0, 0.0], ids=t.ids)
    assert all(r["status"] == "pending" for r in _rows(tmp_path / "r"))
    camp.close()


def test_a_larger_budget_continues_a_python_oracle_campaign_and_a_function_is_named(tmp_path):
    """From Python, a campaign with a FunctionOracle could not be given a larger budget (config.json
    differed in budget.calls, and the hint pointed at `scalebridge resume`, which needs a config
    table); a plain function as oracle had raised a 4-line pydantic error."""
    o = FunctionOracle(sphere, [[-1.0, -1.0], [1.0, 1.0]])
    rd = tmp_path / "ext"
    Campaign(_cfg(tmp_path, oracle=o, budget={"calls": 6}), run_dir=rd).run()
    res = Campaign(_cfg(tmp_path, oracle=o, budget={"calls": 8}), run_dir=rd).run()
    assert res.state.calls == 8
    with pytest.raises(ValueError, match="wrapped by oracles.FunctionOracle"):
        Campaign(_cfg(tmp_path), oracle=sphere)
