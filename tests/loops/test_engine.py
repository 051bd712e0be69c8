"""Campaign engine: failures, asynchronous evaluation, persistence, stopping."""

import pytest
import torch

from loops.config import parse_config
from loops.engine import CallsBudget, Campaign, LoopState, TargetError
from loops.store import RunStore

FAST_ACQ = {"num_restarts": 2, "raw_samples": 64, "maxiter": 50}


def _config(tmp_path, **over):
    base = {
        "name": "t",
        "oracle": {"name": "branin"},
        "budget": {"calls": 12},
        "initial": {"n": 5},
        "acquisition": dict(FAST_ACQ),
        "executor": {"kind": "thread", "workers": 2},
        "tracking": {"enabled": False},
        "run_dir": str(tmp_path / "runs"),
    }
    for k, v in over.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return parse_config(base)


def test_failure_injection_recorded_and_excluded(tmp_path):
    # 30% of the calls fail: half raise, half return NaN; plus plain crashes
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:FlakyOracle", "fail_rate": 0.3, "crash_rate": 0.05, "seed": 3},
                  budget={"calls": 24}, initial={"n": 8}, executor={"kind": "serial"},
                  acquisition={"name": "sobol"})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    store = RunStore(tmp_path / "run" / "store.sqlite")
    rows = store.rows()
    assert len(rows) == 24 and all(r["status"] in ("done", "failed") for r in rows)
    failed = [r for r in rows if r["status"] == "failed"]
    assert res.state.failed == len(failed) >= 1
    for r in failed:
        assert r["y"] is None and r["reason"]
        assert ("injected" in r["reason"]) or r["reason"] == "non-finite output"
    reasons = {r["reason"].split(":")[0] for r in failed}
    # every failure kind the oracle can produce is named as such
    assert reasons <= {"CalculationFailed", "non-finite output", "RuntimeError"}
    # the model was trained on the successful points only
    X, Y, _ = Campaign.resume(tmp_path / "run", tracker=None).data()
    assert len(X) == 24 - len(failed) and torch.isfinite(Y).all()


def test_retries_reattempt_failed_points(tmp_path):
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:FlakyOracle", "fail_rate": 1.0, "seed": 0},
                  budget={"calls": 6}, initial={"n": 2},
                  executor={"kind": "serial", "retries": 2, "workers": 1, "prefetch": 0},
                  acquisition={"name": "sobol"})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert len(rows) == 6 and all(r["status"] == "failed" for r in rows)
    by_point = {}
    for r in rows:
        by_point.setdefault(r["point"], []).append(r["attempt"])
    # a failing point is attempted 1 + retries times (as long as the budget lasts)
    assert [0, 1, 2] in by_point.values()
    assert all(a == list(range(len(a))) and len(a) <= 3 for a in by_point.values())
    assert all(len({tuple(r["x"]) for r in rows if r["point"] == p}) == 1 for p in by_point)


def test_timeout_is_a_failed_point(tmp_path):
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 2.0}, budget={"calls": 2}, initial={"n": 2},
                  executor={"kind": "serial", "timeout": 0.2}, acquisition={"name": "sobol"})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert [r["status"] for r in rows] == ["failed", "failed"]
    assert all(r["reason"] == "timeout after 0.2 s" and r["wall_time"] < 1.0 for r in rows)


def test_async_keeps_workers_busy(tmp_path):
    # a worker that finishes starts the next queued point at once (prefetch), and the
    # driver proposes new points while the others run. Sobol proposals keep the driver's
    # own time out of the measurement (on a loaded machine a GP proposal can take longer
    # than this oracle; experiments/benchmarks/campaigns.py measures that case).
    delay, workers = 1.0, 3
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": delay}, budget={"calls": 12},
                  initial={"n": 3}, executor={"kind": "thread", "workers": workers},
                  acquisition={"name": "sobol"})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert len(rows) == 12 and all(r["status"] == "done" for r in rows)
    # overlap, not seconds: at some instant every worker runs a call (the
    # recorded finish lags the call's end, so neighbours may seem to overlap)
    events = sorted(
        [(r["finished"] - r["wall_time"], 1) for r in rows] + [(r["finished"], -1) for r in rows],
        key=lambda e: (e[0], e[1]),
    )
    running, peak = 0, 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    assert peak >= workers
    assert len({r["metadata"]["worker"] for r in rows}) == workers


def test_pending_points_are_not_proposed_again(tmp_path):
    # with GP proposals conditioned on X_pending, concurrent points are distinct
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 0.3}, budget={"calls": 9},
                  initial={"n": 3}, executor={"kind": "thread", "workers": 3})
    Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    xs = {tuple(round(v, 6) for v in r["x"]) for r in rows}
    assert len(rows) == 9 and len(xs) == 9


def test_budget_in_cost_and_stopping_conditions(tmp_path):
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:BraninMultiFidelity"}, budget={"calls": None, "cost": 45.0},
                  initial={"n": 3, "fidelities": [0, 2]}, acquisition={"name": "sobol"},
                  executor={"kind": "serial"})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    cost = sum(r["cost"] for r in rows)
    # initial design 3 x (1 + 10) = 33, then level-2 points of cost 10 while they fit
    assert cost == pytest.approx(43.0) and res.state.cost == pytest.approx(cost)
    st = LoopState(calls=5, metrics={"nrmse": 0.05})
    assert (CallsBudget(10) | TargetError(0.1)).should_stop(st)
    assert not (CallsBudget(10) | TargetError(0.01)).should_stop(st)


def test_co_kriging_without_every_level_in_the_initial_design_is_refused(tmp_path):
    """AR1 needs results at every level before its first fit: with ``model.bootstrap = "none"`` an
    initial design that leaves one out would run Sobol points for ever, so the campaign refuses at
    start-up and says what to change."""
    base = {"oracle": {"name": "loops.fakes:BraninMultiFidelity"}, "budget": {"calls": None, "cost": 45.0},
            "initial": {"n": 3, "fidelities": [0, 2]}, "acquisition": {"name": "qMFMES"},
            "model": {"name": "ar1", "bootstrap": "none"}, "executor": {"kind": "serial"}}
    with pytest.raises(ValueError, match=r"initial.fidelities = \[0, 2\] leaves out level\(s\) \[1\]: model 'ar1'"
                                         r".*use initial.fidelities = \[0, 1, 2\], model.bootstrap = 'mf_gp'"):
        Campaign(_config(tmp_path, **base), run_dir=tmp_path / "run")
    from loops.config import ConfigError

    with pytest.raises(ConfigError, match=r"model.bootstrap = 'gp': Input should be 'mf_gp' or 'none'"):
        _config(tmp_path, **{**base, "model": {"name": "ar1", "bootstrap": "gp"}})
    for k, ok in enumerate(({"model": {"name": "mf_gp"}}, {"initial": {"n": 3, "fidelities": [0, 1, 2]}},
                            {"model": {"name": "ar1"}})):
        Campaign(_config(tmp_path, **{**base, **ok}), run_dir=tmp_path / f"ok{k}").close()


@pytest.mark.parametrize("name, winsorize", [("ar1", None), ("recursive", None), ("ar1", True)])
def test_co_kriging_bootstraps_on_mf_gp_until_every_level_has_results(tmp_path, name, winsorize):
    """The default ``model.bootstrap = 'mf_gp'``: with an initial design at the cheap level only, the
    campaign starts on BoTorch's multi-fidelity GP and switches to the co-kriging model once every
    level has ``min(3, initial.n)`` results; the model it then holds is the one a direct fit on the
    same data gives: the data as observed (``model.winsorize`` None: off with a multi-fidelity
    oracle), or with ``winsorize = true`` each level clipped at its own fence."""
    from botorch.models import SingleTaskMultiFidelityGP

    from loops.models import fit_model, winsorize_objective
    from surrogates.multifidelity import MultiFidelityModel

    # a cost budget: the acquisition weighs the levels by their costs, so it reaches every level
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:BraninMultiFidelity"}, budget={"calls": 40, "cost": 1e4},
                  initial={"n": 3, "fidelities": [0]}, model={"name": name, "winsorize": winsorize},
                  acquisition={"name": "qMFLogEI", **FAST_ACQ}, executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    kinds = []
    while not camp.finished():
        X, _, _ = camp.data()
        counts = torch.bincount(X[:, -1].round().long(), minlength=3)
        t = camp.ask(1)  # fits the model on the results so far
        if not len(t):
            break
        if camp.model is not None:
            kinds.append((isinstance(camp.model, SingleTaskMultiFidelityGP), bool((counts >= 3).all())))
            if isinstance(camp.model, MultiFidelityModel):
                break
        r = camp.oracle.evaluate(t.X, t.fidelities[0])
        camp.tell(t.X, r.Y, ids=t.ids)
    # mf_gp exactly while a level lacks 3 results, then the co-kriging model
    assert kinds[0] == (True, False) and kinds[-1] == (False, True)
    assert all(is_mf == (not full) for is_mf, full in kinds)
    X, Y, Yvar = camp.data()
    p = camp.problem
    levels = X[:, -1].round().long()
    clipped = winsorize_objective(Y, p.objective_idx[0], p.signs[0], groups=levels)
    assert not torch.equal(clipped, Y)  # Branin's bad tail: winsorizing would change the fit
    ref = fit_model(name, X, clipped if winsorize else Y, p.model_bounds,
                    Yvar=None if camp.oracle.noisy else torch.zeros_like(Y), fidelity_dim=p.d,
                    options={"num_fidelities": 3, "costs": list(p.costs)})
    Xt = torch.rand(16, p.d, dtype=torch.float64) * (p.bounds[1, :p.d] - p.bounds[0, :p.d]) + p.bounds[0, :p.d]
    Xt = torch.cat([Xt, torch.full((16, 1), 2.0, dtype=torch.float64)], -1)
    with torch.no_grad():
        torch.testing.assert_close(camp.model.posterior(Xt).mean, ref.posterior(Xt).mean, rtol=1e-6, atol=1e-8)
    camp.close()


def test_optimize_improves_over_initial_design(tmp_path):
    cfg = _config(tmp_path, budget={"calls": 15}, executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    init = min(r["y"][0] for r in rows if r["role"] == "initial")
    assert res.state.best < init
    # every acquisition row holds the prediction made before the evaluation
    assert all(r["prediction"] is not None for r in rows if r["role"] == "acquisition")


def test_deterministic_oracle_is_fitted_noise_free(tmp_path):
    """Branin is deterministic: by default the GP interpolates (fixed noise at
    the floor, 2e-6 of the output variance), so the posterior mean at the
    observed points is the data; ``model.noise_free = false`` infers a noise
    level instead (BoTorch's default likelihood, its prior mode ~0.018)."""
    from gpytorch.likelihoods import FixedNoiseGaussianLikelihood

    from loops.models import NOISE_FLOOR_REL

    for noise_free in (None, False):
        model = {} if noise_free is None else {"noise_free": noise_free}
        cfg = _config(tmp_path, name=f"n{noise_free}", budget={"calls": 10}, executor={"kind": "serial"},
                      model=model, acquisition={"name": "qLogNEI", **FAST_ACQ})
        camp = Campaign(cfg, run_dir=tmp_path / f"n{noise_free}")
        camp.run()
        X, Y, _ = camp.data()
        lik = camp.model.likelihood
        if noise_free is None:
            assert isinstance(lik, FixedNoiseGaussianLikelihood)
            ot = camp.model.outcome_transform
            y_fit = ot.untransform(camp.model.train_targets.reshape(-1, 1))[0][:, 0]  # winsorized Y
            var = y_fit.var()
            noise = lik.noise.reshape(-1) * ot.stdvs.reshape(()) ** 2
            torch.testing.assert_close(noise, (NOISE_FLOOR_REL * var).expand_as(noise), rtol=1e-6, atol=0)
            with torch.no_grad():
                mean = camp.model.posterior(X).mean[:, 0]
            assert (mean - y_fit).abs().max() < 1e-2 * var.sqrt().item()
        else:
            assert not isinstance(lik, FixedNoiseGaussianLikelihood)
        camp.close()


def test_initial_design_can_start_at_the_centre(tmp_path):
    """``initial.center``: the centre of the bounds, then the first n - 1 points of the Sobol sequence."""
    from loops.acquisition import problem_seed, sobol_points

    cfg = _config(tmp_path, budget={"calls": 5}, initial={"n": 5, "center": True},
                  executor={"kind": "serial"}, acquisition={"name": "sobol"})
    camp = Campaign(cfg, run_dir=tmp_path / "c")
    camp.run()
    X = torch.tensor([r["x"] for r in camp.store.rows() if r["role"] == "initial"], dtype=torch.float64)
    b = camp.problem.bounds
    assert X.shape == (5, 2)
    torch.testing.assert_close(X[0], b.mean(0))
    torch.testing.assert_close(X[1:], sobol_points(b, 4, seed=problem_seed(cfg.seed)))
    camp.close()


def test_initial_design_is_the_centre_by_default_and_n1_is_the_centre_alone(tmp_path):
    """The default design starts at the centre; ``initial.n = 1`` is the centre
    alone (no Sobol point is drawn), and ``center = false`` is Sobol only."""
    from loops.acquisition import problem_seed, sobol_points

    for center, n in ((None, 1), (False, 3)):
        init = {"n": n} if center is None else {"n": n, "center": center}
        cfg = _config(tmp_path, name=f"c{n}", budget={"calls": n}, initial=init,
                      executor={"kind": "serial"}, acquisition={"name": "sobol"})
        camp = Campaign(cfg, run_dir=tmp_path / f"c{n}")
        camp.run()
        X = torch.tensor([r["x"] for r in camp.store.rows() if r["role"] == "initial"], dtype=torch.float64)
        b = camp.problem.bounds
        want = b.mean(0, keepdim=True) if center is None else sobol_points(b, n, seed=problem_seed(cfg.seed))
        torch.testing.assert_close(X, want)
        camp.close()


def test_co_kriging_waits_for_every_level_of_the_initial_design(tmp_path):
    # one worker returns the initial design level by level: the co-kriging
    # model (which needs data at every level) is first fitted once both levels
    # have results, instead of failing on the level-0 results alone
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]},
                  budget={"calls": 7}, initial={"n": 3, "fidelities": [0, 1]},
                  model={"name": "ar1", "options": {"restarts": 1}},
                  acquisition={"name": "qMFMES", "num_fantasies": 4, "num_restarts": 1, "raw_samples": 16},
                  executor={"kind": "thread", "workers": 1, "prefetch": 0})
    res = Campaign(cfg, run_dir=tmp_path / "run").run()
    rows = RunStore(tmp_path / "run" / "store.sqlite").rows()
    assert len(rows) == 7 and all(r["status"] == "done" for r in rows)
    assert rows[-1]["role"] == "acquisition"
    assert res.model is not None and res.model.num_fidelities == 2


def test_one_batch_never_repeats_a_point(tmp_path):
    """Candidates that repeat each other or a point still out are replaced by fresh Sobol points."""
    cfg = _config(tmp_path, budget={"calls": 12}, initial={"n": 3}, executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    first = camp.ask(3)  # the initial design: the first point left out (pending), two told (a model)
    camp.tell(first.X[1:], camp.oracle.evaluate(first.X[1:]).Y, ids=first.ids[1:])
    twin = first.X[:1].repeat(3, 1)

    def proposes_twins(name, X, Y, k, Xp, n_design):
        return twin[:k].clone()

    camp._propose = proposes_twins
    t = camp.ask(3)
    allx = torch.cat([first.X, t.X])
    assert len(t) == 3 and len({tuple(x.tolist()) for x in allx}) == 6
    b = camp.problem.bounds
    assert ((t.X >= b[0]) & (t.X <= b[1])).all()
    camp.close()


@pytest.mark.parametrize("fail_at", [1, 3])
def test_a_numerical_fault_of_a_model_fit_is_recorded_and_the_campaign_goes_on(tmp_path, monkeypatch, fail_at):
    """A fit whose Cholesky does not factor (injected at the ``fail_at``-th fit) is a model fault:
    recorded in the run store with its reason and what replaced the model (the previous update's
    model, or Sobol points before the first), warned about, counted in the metrics; the budget is
    spent and a resumed campaign sees the record."""
    from linear_operator.utils.errors import NotPSDError

    import loops.engine as engine
    from loops.engine import ModelFaultWarning

    real, calls = engine.fit_model, []

    def fit(*a, **k):
        calls.append(len(a[1]))
        if len(calls) == fail_at:
            raise NotPSDError("Matrix not positive definite after repeatedly adding jitter up to 1.0e-06.")
        return real(*a, **k)

    monkeypatch.setattr(engine, "fit_model", fit)
    cfg = _config(tmp_path, budget={"calls": 9}, initial={"n": 4}, executor={"kind": "serial"})
    with pytest.warns(ModelFaultWarning, match=r"fit failed \(model 'singletask_gp'.*NotPSDError: Matrix not"):
        res = Campaign(cfg, run_dir=tmp_path / "run").run()
    assert [r["status"] for r in res.rows] == ["done"] * 9
    assert len(calls) > fail_at  # later updates fit again
    (f,) = res.model_faults
    assert f["stage"] == "fit" and f["model"] == "singletask_gp" and f["results"] == calls[fail_at - 1]
    assert f["reason"].startswith("NotPSDError: Matrix not positive definite")
    assert f["fallback"] == ("no model: Sobol proposals" if fail_at == 1 else "kept the model of the previous update")
    store = RunStore(tmp_path / "run" / "store.sqlite")
    assert store.get_meta("model_faults") == res.model_faults
    assert max(m["value"] for m in store.metrics() if m["name"] == "model_faults") == 1
    store.close()
    assert Campaign.resume(tmp_path / "run", tracker=None).model_faults == res.model_faults
    import argparse
    import contextlib
    import io

    from loops.commands import cmd_status

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert cmd_status(argparse.Namespace(run=str(tmp_path / "run"))) == 0
    assert f"model fault (fit, singletask_gp, {f['results']} results): NotPSDError" in buf.getvalue()


def test_a_numerical_fault_of_the_acquisition_gives_sobol_points_for_that_batch(tmp_path, monkeypatch):
    """An acquisition whose optimizer meets a NaN posterior is a model fault: that batch comes
    from the Sobol proposal, and the following batches use the acquisition again."""
    from linear_operator.utils.errors import NanError

    import loops.engine as engine
    from loops.engine import ModelFaultWarning

    real, names = engine.propose, []

    def propose(name, *a, **k):
        names.append(name)
        if name == "qLogNEI" and names.count("qLogNEI") == 2:
            raise NanError("cholesky_cpu: 3 of 3 elements of the input tensor are NaN.")
        return real(name, *a, **k)

    monkeypatch.setattr(engine, "propose", propose)
    cfg = _config(tmp_path, budget={"calls": 8}, initial={"n": 4}, executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    with pytest.warns(ModelFaultWarning, match=r"acquisition failed .*NanError: cholesky_cpu"):
        res = camp.run()
    assert [r["status"] for r in res.rows] == ["done"] * 8
    assert names == ["qLogNEI", "qLogNEI", "sobol", "qLogNEI", "qLogNEI"]
    (f,) = res.model_faults
    assert f["stage"] == "acquisition" and f["fallback"] == "Sobol proposals for this batch"
    # that batch came from the Sobol proposal and lies in the box
    sixth = torch.tensor(res.rows[5]["x"], dtype=torch.float64)
    b = camp.problem.bounds
    assert bool(((sixth >= b[0]) & (sixth <= b[1])).all())


def test_a_noise_free_oracle_that_repeats_an_input_with_another_value_is_a_model_fault(tmp_path):
    """A co-kriging model told that the data are noise-free cannot interpolate two values at one
    input: the update that meets them is a model fault naming the rows, and the campaign goes on
    with the model it had."""
    from loops.engine import ModelFaultWarning
    from surrogates.multifidelity import MultiFidelityModel

    cfg = _config(tmp_path, oracle={"name": "loops.fakes:BraninMultiFidelity"}, budget={"calls": 30},
                  initial={"n": 3, "fidelities": [0, 1, 2]}, model={"name": "recursive"},
                  acquisition={"name": "qMFLogEI", **FAST_ACQ}, executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    assert not camp.oracle.noisy

    def evaluate(t):
        return torch.cat([camp.oracle.evaluate(t.X[i:i + 1], t.fidelities[i]).Y for i in range(len(t))])

    t = camp.ask(9)
    camp.tell(t.X, evaluate(t), ids=t.ids)
    t = camp.ask(1)
    first = camp.model
    assert isinstance(first, MultiFidelityModel)
    camp.tell(t.X, evaluate(t), ids=t.ids)
    # the first initial point again at its level, with another value (a "noise-free" oracle that is not)
    X0, Y0, _ = camp.data()
    camp.tell(X0[:1, :-1], Y0[:1] + 1.0, fidelity=int(X0[0, -1]))
    with pytest.warns(ModelFaultWarning, match=r"fit failed .*NoiseFreeConflict: rows 0 and 10 are noise-free"):
        t = camp.ask(1)
    assert len(t) == 1 and camp.model is first
    (f,) = camp.model_faults
    assert f["stage"] == "fit" and f["fallback"] == "kept the model of the previous update"
    camp.close()


@pytest.mark.parametrize(("model", "message"), [
    ({"name": "gp", "options": {"n_restart": 3}},
     r"model.options \['n_restart'\] are not options of 'gp' \(GPSurrogate\); allowed: \[.*'n_restarts'"),
    ({"name": "surrogates.neural:SmallStrainEnsemble", "options": {"members": 3}},
     r"model.options \['members'\] are not options of .*SmallStrainEnsemble.*'num_members'"),
])
def test_a_single_fidelity_model_option_that_does_not_exist_is_refused_before_any_oracle_call(
        tmp_path, monkeypatch, model, message):
    from oracles.base import Oracle

    calls = []
    real = Oracle.evaluate
    monkeypatch.setattr(Oracle, "evaluate", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    cfg = _config(tmp_path, oracle={"name": "branin"}, budget={"calls": 10}, initial={"n": 3}, model=model,
                  acquisition={"name": "qLogNEI", **FAST_ACQ}, executor={"kind": "serial"})
    with pytest.raises(ValueError, match=message):
        Campaign(cfg, run_dir=tmp_path / "run").run()
    assert calls == []


@pytest.mark.parametrize(("over", "message"), [
    ({"model": {"name": "ar2"}}, r"model.name = 'ar2'; allowed: \['ar1', 'gp', 'mf_gp', 'nargp', 'recursive'"),
    ({"model": {"name": "recursive", "options": {"trend": "cubic"}}},
     r"model.options of 'recursive': trend must be one of \('constant', 'linear', 'auto'\), got 'cubic'"),
    ({"model": {"name": "ar1", "options": {"nois": "none"}}}, r"model.options \['nois'\] are not options of 'ar1' \(AR1CoKriging\); allowed: \[.*'noise'.*'restarts'"),
    ({"model": {"name": "mf_gp", "options": {"lin_truncated": True}}},
     r"model.options \['lin_truncated'\] are not arguments of SingleTaskMultiFidelityGP"),
    ({"model": {"name": "pkg_that_is_not_there:Model"}}, r"model 'pkg_that_is_not_there:Model' is not available"),
    ({"fidelity": {"target": 3}}, r"fidelity.target = 3 is not a level of oracle BraninMultiFidelity: levels are 0..2"),
    ({"fidelity": {"target": -1}}, r"fidelity.target = -1 is not a level"),
    ({"initial": {"n": 3, "fidelities": [0, 5]}}, r"initial.fidelities = \[0, 5\] holds \[5\], not levels"),
    ({"initial": {"n": 3, "fidelities": [-1]}}, r"initial.fidelities = \[-1\] holds \[-1\], not levels"),
    ({"acquisition": {"name": "qLogNEHVI"}}, r"'qLogNEHVI' optimizes several objectives .* names \['y'\]"),
])
def test_a_setting_that_could_never_work_is_refused_before_any_oracle_call(tmp_path, monkeypatch, over, message):
    """A wrong model name or option, a level the oracle does not have, or a multi-objective
    acquisition for one objective: one error when the campaign is built, not a traceback after
    the initial design (with the co-kriging bootstrap, after most of the budget)."""
    from oracles.base import Oracle

    calls = []
    real = Oracle.evaluate
    monkeypatch.setattr(Oracle, "evaluate", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    base = {"oracle": {"name": "loops.fakes:BraninMultiFidelity"}, "budget": {"calls": 30},
            "initial": {"n": 3, "fidelities": [0, 1]}, "model": {"name": "ar1"},
            "acquisition": {"name": "qMFLogEI", **FAST_ACQ}, "executor": {"kind": "serial"}}
    for k, v in over.items():
        base[k] = {**base[k], **v} if k in ("model", "initial") and k in base else v
    if over.get("acquisition", {}).get("name") == "qLogNEHVI":
        base["oracle"] = {"name": "branin"}
        base["model"] = {"name": "singletask_gp"}
        base["initial"] = {"n": 3}
    with pytest.raises(ValueError, match=message):
        Campaign(_config(tmp_path, **base), run_dir=tmp_path / "run").run()
    assert calls == []


def _two_outputs(x):
    """f = |x - (0.7, 0.2)|^2 (unconstrained optimum where g = 0.9) and g = x0 + x1."""
    return torch.stack([(x[0] - 0.7) ** 2 + (x[1] - 0.2) ** 2, x[0] + x[1]])


@pytest.mark.parametrize("minimize", [True, False])
def test_the_recommendation_of_a_constrained_campaign_is_predicted_feasible(tmp_path, minimize):
    """With an outcome constraint (g >= 1.2), the recommendation is the best point by posterior
    mean among those predicted feasible; before, it was the unconstrained maximizer of the
    objective's mean (g = 0.91), infeasible."""
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(_two_outputs, [[0.0, 0.0], [1.0, 1.0]], outputs=("f", "g"))
    cfg = parse_config({"name": "c", "oracle": oracle, "budget": {"calls": 16}, "initial": {"n": 6},
                        "executor": {"kind": "serial"}, "tracking": {"enabled": False},
                        "run_dir": str(tmp_path / "runs"), "acquisition": dict(FAST_ACQ),
                        "objective": {"outputs": ["f"], "minimize": minimize,
                                      "constraints": [{"output": "g", "lower": 1.2}]}})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    x = torch.tensor(res.recommendation["x"], dtype=torch.float64)
    f, g = _two_outputs(x).tolist()
    # the oracle is deterministic: a point the model is not sure of (one on the active
    # constraint) is not recommended, so the recommendation is feasible, not within a tolerance
    assert g >= 1.2, (x, g)
    # and it is no worse than the best feasible observation by more than the model's error
    assert (f <= res.best.value + 1e-2) if minimize else (f >= res.best.value - 1e-2), (f, res.best.value)
    camp.close()


def test_a_ref_point_with_the_wrong_length_is_refused_before_any_oracle_call(tmp_path):
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(_two_outputs, [[0.0, 0.0], [1.0, 1.0]], outputs=("f", "g"))
    for acq, outs, ref in (("qLogNEHVI", ["f", "g"], [0.0]), ("qLogNEI", ["f"], [0.0, 1.0, 2.0])):
        cfg = parse_config({"name": "c", "oracle": oracle, "budget": {"calls": 8}, "executor": {"kind": "serial"},
                            "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs"),
                            "acquisition": {"name": acq, **FAST_ACQ},
                            "objective": {"outputs": outs, "ref_point": ref}})
        with pytest.raises(ValueError, match=rf"objective.ref_point has {len(ref)} values for the {len(outs)} "
                                             r"objective outputs"):
            Campaign(cfg, run_dir=tmp_path / f"run-{acq}")


def test_two_objectives_need_a_multi_objective_acquisition(tmp_path):
    """qLogNEI with two objective outputs had optimized their signed sum in raw units (Branin's
    range swamped Currin's), and a reference point without qLogNEHVI had been ignored: both are
    refused when the campaign is built, naming what to use."""
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(_two_outputs, [[0.0, 0.0], [1.0, 1.0]], outputs=("f", "g"))
    for acq, obj, match in (
        ("qLogNEI", {"outputs": ["f", "g"]}, r"names 2 objectives \['f', 'g'\] and acquisition.name = 'qLogNEI' "
                                             r"optimizes one; use 'qLogNEHVI'"),
        ("qLogNEI", {"outputs": ["f"], "ref_point": [1.0]}, r"objective.ref_point is the reference point of "
                                                            r"qLogNEHVI's hypervolume"),
    ):
        cfg = parse_config({"name": "c", "oracle": oracle, "budget": {"calls": 8}, "executor": {"kind": "serial"},
                            "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs"),
                            "acquisition": {"name": acq, **FAST_ACQ}, "objective": obj})
        with pytest.raises(ValueError, match=match):
            Campaign(cfg, run_dir=tmp_path / f"run-{len(obj)}")


def test_the_wall_time_of_a_driver_that_dies_counts_after_resume(tmp_path):
    """``budget.wall_time`` is summed over resumes: the time spent is banked as results
    arrive, so a driver that is killed (nothing runs at its end) still counts what it spent."""
    import time

    from loops.store import RunStore

    cfg = _config(tmp_path, oracle={"name": "loops.fakes:SlowOracle", "delay": 0.2},
                  budget={"calls": None, "wall_time": 30.0}, acquisition={"name": "sobol"},
                  executor={"kind": "serial"})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t0 = time.time()
    for _ in range(4):
        t = camp.ask(1)
        camp.tell(t.X, camp.oracle.evaluate(t.X).Y, ids=t.ids)
    spent = time.time() - t0
    # no close() and no finish(): what a kill -9 leaves
    store = RunStore(tmp_path / "run" / "store.sqlite")
    banked = float(store.get_meta("elapsed"))
    store.close()
    assert 0.8 * spent <= banked <= spent + 0.5, (banked, spent)


def test_an_error_of_the_settings_in_a_fit_still_stops_the_campaign(tmp_path):
    """Only numerical failures are model faults: a model option with a wrong value stops the
    campaign with the model's own message (now when the campaign is built)."""
    cfg = _config(tmp_path, oracle={"name": "loops.fakes:BraninMultiFidelity"}, budget={"calls": 30},
                  initial={"n": 3, "fidelities": [0, 1, 2]}, model={"name": "recursive", "options": {"rho": "cubic"}},
                  acquisition={"name": "qMFLogEI", **FAST_ACQ}, executor={"kind": "serial"})
    with pytest.raises(ValueError, match=r"rho must be one of \('constant', 'linear'\), got 'cubic'"):
        Campaign(cfg, run_dir=tmp_path / "run").run()


def _scaled_branin(a: float):
    """``a`` times BoTorch's Branin as a :class:`FunctionOracle` on the unit square."""
    from botorch.test_functions import Branin

    from oracles.function import FunctionOracle

    f = Branin()
    return FunctionOracle(lambda x: a * f(torch.stack([15 * x[0] - 5, 15 * x[1]]).unsqueeze(0))[0],
                          [[0.0, 0.0], [1.0, 1.0]])


@pytest.mark.parametrize("acq", ["qNIPV", "max_variance"])
def test_a_learn_campaign_is_the_same_in_any_output_units(tmp_path, acq):
    """Learn mode (qNIPV, max_variance) on outputs in small units (1e-12 of Branin, a permeability in m²) asks
    for the same points as on the O(1) outputs, and its held-out NLPD is shifted by ``log 1e-12``
    (the density of ``a y``): no absolute variance floor or optimizer tolerance in output units
    decides anything (max_variance's jitter is relative to the output's variance)."""
    import math

    runs = {}
    for a in (1.0, 1e-12):
        o = _scaled_branin(a)
        cfg = parse_config({"name": "t", "oracle": o, "mode": "learn", "budget": {"calls": 10}, "initial": {"n": 5},
                            "learn": {"n_validation": 32}, "acquisition": {"name": acq, **FAST_ACQ, "q": 2},
                            "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
        runs[a] = Campaign(cfg, run_dir=tmp_path / f"run{a}").run()
    X1, X2 = (torch.tensor([r["x"] for r in runs[a].rows if r["role"] != "validation"]) for a in (1.0, 1e-12))
    torch.testing.assert_close(X2, X1, rtol=0, atol=1e-6)
    m1, m2 = runs[1.0].state.metrics, runs[1e-12].state.metrics
    assert m2["nlpd"] == pytest.approx(m1["nlpd"] + math.log(1e-12), abs=1e-4)
    assert m2["nrmse"] == pytest.approx(m1["nrmse"], rel=1e-5)


def test_an_objective_with_a_spread_below_qlognei_temperature_is_warned_about_once(tmp_path):
    """qLogNEI smooths with BoTorch's absolute temperature ``tau_max = 1e-2`` (output units):
    an objective in units where its spread is far below it (1e-12 of Branin) gets one
    ``UnitsWarning`` naming the spread; the same objective in O(1) units gets none."""
    import warnings

    from loops.engine import UnitsWarning

    for a in (1.0, 1e-12):
        o = _scaled_branin(a)
        cfg = parse_config({"name": "t", "oracle": o, "budget": {"calls": 8}, "initial": {"n": 5},
                            "acquisition": FAST_ACQ, "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            Campaign(cfg, run_dir=tmp_path / f"run{a}").run()
        got = [str(x.message) for x in w if issubclass(x.category, UnitsWarning)]
        if a == 1.0:
            assert got == []
        else:
            assert len(got) == 1 and "observed standard deviation (" in got[0] and "tau_max = 0.01" in got[0]
            sd = float(got[0].split("deviation (")[1].split(")")[0])
            assert 1e-12 < sd < 1e-10


def test_a_recommendation_with_no_result_at_the_target_fidelity_is_warned_about(tmp_path):
    """Every target-level evaluation fails (a fine solver that diverges): the campaign spends its
    budget, records each failure with its reason, and the recommendation it returns (the
    bootstrap model's extrapolation) comes with a warning naming the first failure."""
    import warnings

    from oracles.function import FunctionOracle

    def f(x, fidelity):
        if fidelity == 1:
            raise RuntimeError("solver diverged")
        return torch.sin(6 * x[0]) + x[1]

    o = FunctionOracle(f, [[0.0, 0.0], [1.0, 1.0]], num_fidelities=2, cost=[1.0, 10.0])
    cfg = parse_config({"name": "t", "oracle": o, "budget": {"cost": 50.0}, "initial": {"n": 3, "fidelities": [0, 1]},
                        "model": {"name": "ar1"}, "acquisition": {"name": "qMFLogEI", **FAST_ACQ},
                        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        res = Campaign(cfg, run_dir=tmp_path / "run").run()
    top = [r for r in res.rows if r["fidelity"] == 1]
    assert top and all(r["status"] == "failed" and "solver diverged" in r["reason"] for r in top)
    assert res.best.value is None and res.recommendation is not None
    got = [str(x.message) for x in w if "no successful result at the target fidelity 1" in str(x.message)]
    assert len(got) == 1 and f"all {len(top)} asked there failed" in got[0] and "solver diverged" in got[0]


def test_a_points_wall_time_does_not_include_building_the_oracle():
    """cost_source = "wall_time" reads each point's wall time: an oracle's set-up (once per worker)
    must not be charged to the first point, whichever level it is at."""
    import time

    from loops.executors import evaluate_point

    spec = {"name": "loops.fakes:SlowOracle", "delay": 0.05, "setup": 0.6}
    t0 = time.perf_counter()
    rec = evaluate_point(spec, [0.0, 5.0], 0)
    assert time.perf_counter() - t0 >= 0.6 and not rec["failed"]
    assert 0.05 <= rec["wall_time"] < 0.3


def test_a_batch_size_without_a_synchronous_executor_is_said_to_have_no_effect(tmp_path):
    """acquisition.q had been ignored without a word when the executor is asynchronous."""
    cfg = parse_config({"name": "q", "oracle": {"name": "branin"}, "budget": {"calls": 6},
                        "acquisition": {"name": "qLogNEI", "q": 4, **FAST_ACQ}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs")})
    with pytest.warns(UserWarning, match=r"acquisition.q = 4 applies when executor.synchronous = true"):
        Campaign(cfg, run_dir=tmp_path / "run").close()
