"""Multi-fidelity campaigns: pending points, costs from measurements, the recommendation, learn mode."""

import math

import numpy as np
import pytest
import torch

from loops.acquisition import (
    Problem,
    mf_acquisition,
    propose,
    sobol_points,
    supports_pending,
)
from loops.config import Acquisition, parse_config
from loops.engine import Campaign
from loops.models import fit_model
from oracles.analytic.test_functions import Forrester

D = torch.float64
FAST = Acquisition(num_restarts=2, raw_samples=64, maxiter=50, num_fantasies=8)
MF_ORACLE = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}


def _branin_data(n_low=10, n_high=4, seed=0):
    from loops.registry import build_oracle

    oracle = build_oracle(MF_ORACLE)
    Xs = sobol_points(oracle.bounds, n_low, seed=seed)
    X = torch.cat([torch.cat([Xs, torch.zeros(n_low, 1, dtype=D)], -1),
                   torch.cat([Xs[:n_high], torch.ones(n_high, 1, dtype=D)], -1)])
    Y = torch.cat([oracle.evaluate(Xs, 0).Y, oracle.evaluate(Xs[:n_high], 1).Y])
    prob = Problem(bounds=oracle.bounds, objective_idx=[0], signs=[-1.0], constraints=[], num_fidelities=2,
                   target_fidelity=1, costs=(1.0, 10.0))
    return oracle, X, Y, prob


def _model(name, X, Y, prob):
    opts = {"maxiter": 50} if name == "mf_gp" else {"restarts": 1, "num_fidelities": 2, "costs": [1.0, 10.0]}
    return fit_model(name, X, Y, prob.model_bounds, Yvar=torch.zeros_like(Y), fidelity_dim=prob.d, options=opts)


def _with_fantasize(name):
    """Models that can condition on pending points: mf_gp always, co-kriging once it has fantasize()."""
    from loops.models import model_class

    if name == "mf_gp":
        return name
    return pytest.param(name, marks=pytest.mark.skipif(
        not callable(getattr(model_class(name), "fantasize", None)), reason=f"{name} has no fantasize()"))


MODELS = [_with_fantasize(n) for n in ("mf_gp", "ar1", "recursive")]


@pytest.mark.parametrize("model_name", MODELS)
def test_pending_point_loses_its_value_mes(model_name):
    """qMFMES: a point already pending (noise-free data) is worth much less once the acquisition
    conditions on it, while other points keep information. The recursive model learns a top-level
    point fully only where the level below is observed too (nested designs), so it gets the
    point pending at both levels."""
    torch.manual_seed(0)
    _, X, Y, prob = _branin_data(20, 8)
    model = _model(model_name, X, Y, prob)
    assert supports_pending(model)
    base = mf_acquisition("qMFMES", model, prob, 1, FAST, seed=3)
    S = torch.cat([sobol_points(prob.bounds, 256, seed=5), torch.ones(256, 1, dtype=D)], -1)
    with torch.no_grad():
        a = base(S.unsqueeze(1))
    p = S[a.argmax()].unsqueeze(0)  # the most informative target-level point of the set
    P = torch.cat([p, p * torch.tensor([1.0, 1.0, 0.0], dtype=D)]) if model_name == "recursive" else p
    cond = mf_acquisition("qMFMES", model, prob, 1, FAST, X_pending=P, seed=3)
    with torch.no_grad():
        v0, v1 = base(p.unsqueeze(0)).item(), cond(p.unsqueeze(0)).item()
        a2 = cond(S.unsqueeze(1))
    assert v0 > 0 and v1 < 0.25 * v0
    # other points keep information: the best of the set is now elsewhere
    assert a2.argmax() != a.argmax() and a2.max().item() > max(0.05 * v0, 4 * v1)


@pytest.mark.parametrize("model_name", MODELS)
def test_value_given_pending_is_the_expected_incumbent(model_name):
    """qMFKG's incumbent with pending points, E[max mean | pending observed], against an
    independent Monte Carlo estimate: condition the model on joint posterior samples at the
    pending points one by one and take the max of the mean over the same set; and it is at
    least the value before (Jensen: E max >= max E)."""
    from loops.acquisition import _weights, value_given_pending

    torch.manual_seed(0)
    _, X, Y, prob = _branin_data()
    model = _model(model_name, X, Y, prob)
    P = torch.tensor([[2.5, 7.5, 1.0], [8.0, 3.0, 0.0]], dtype=D)
    w = _weights(prob, 1)
    xb = torch.tensor([3.0, 2.0], dtype=D)
    v = value_given_pending(model, P, prob, w, xb, num_fantasies=64, seed=4).item()
    cand = torch.cat([sobol_points(prob.bounds, 256, seed=4 + 13), xb.reshape(1, -1), P[:, :2]])
    cand = torch.cat([cand, torch.ones(len(cand), 1, dtype=D)], -1)
    with torch.no_grad():
        before = (model.posterior(cand).mean.squeeze(-1) * w).max().item()
        g = torch.Generator().manual_seed(9)
        post = model.posterior(P)
        L = torch.linalg.cholesky(post.distribution.covariance_matrix + 1e-9 * torch.eye(2, dtype=D))
        ys = post.mean.squeeze(-1) + torch.randn(200, 2, generator=g, dtype=D) @ L.T  # 200 joint samples
        fm = model.fantasize(P, sampler=_FixedSamples(ys))
        maxes = (fm.posterior(cand).mean.squeeze(-1) * w).max(dim=-1).values.reshape(-1)
    mc, se = maxes.mean().item(), maxes.std().item() / math.sqrt(len(maxes))
    assert v >= before - 1e-9
    # both are Monte Carlo estimates (v from 64 quasi-random fantasies): 4 combined standard errors
    assert abs(v - mc) < 4 * se * math.sqrt(1 + 200 / 64) + 1e-3 * abs(mc)


class _FixedSamples:
    """A sampler that returns given samples ``ys`` (``k x p``) for fantasize()."""

    def __init__(self, ys):
        self.ys = ys
        self.sample_shape = torch.Size([ys.shape[0]])

    def __call__(self, posterior):
        return self.ys.unsqueeze(-1)


def test_qmfkg_refuses_a_model_without_fantasize():
    class NoFantasy:
        pass

    _, _, _, prob = _branin_data()
    with pytest.raises(ValueError, match="needs a model with fantasize"):
        mf_acquisition("qMFKG", NoFantasy(), prob, 1, FAST)


def test_cheap_target_level_is_chosen_when_costs_say_so():
    """The level chosen follows the acquisition costs: with the target level 1000x the cheap one,
    qMFMES samples the cheap level; with equal costs, the target level (the same information and more)."""
    torch.manual_seed(1)
    _, X, Y, prob = _branin_data(20, 8)
    model = _model("mf_gp", X, Y, prob)
    prob.level_costs = (1.0, 1000.0)
    assert propose("qMFMES", model, prob, X, Y, 1, FAST, seed=0)[0, -1].item() == 0.0
    prob.level_costs = (1.0, 1.0)
    assert propose("qMFMES", model, prob, X, Y, 1, FAST, seed=0)[0, -1].item() == 1.0


def _cfg(tmp_path, **over):
    base = {"name": "mf", "oracle": MF_ORACLE, "budget": {"calls": 9},
            "initial": {"n": 3, "fidelities": [0, 1]}, "executor": {"kind": "serial"},
            "acquisition": {"name": "qMFMES", "num_restarts": 1, "raw_samples": 32, "maxiter": 20,
                            "num_fantasies": 4},
            "model": {"name": "mf_gp", "options": {"maxiter": 50}},
            "tracking": {"enabled": False}, "run_dir": str(tmp_path)}
    base.update(over)
    return parse_config(base)


def _spy_pending(monkeypatch) -> list:
    """Record the X_pending each multi-fidelity acquisition is built with (None or a clone)."""
    import loops.acquisition as A

    seen = []
    real = A.mf_acquisition

    def spy(name, model, problem, m, cfg, X_pending=None, seed=0):
        seen.append(None if X_pending is None else X_pending.clone())
        return real(name, model, problem, m, cfg, X_pending=X_pending, seed=seed)

    monkeypatch.setattr(A, "mf_acquisition", spy)
    return seen


def _run_initial_design(camp) -> None:
    """Ask the 3 + 3 initial points of :func:`_cfg` (levels 0 and 1) and tell their results."""
    init = camp.ask(6)
    camp.tell(init.X, camp.oracle.evaluate(init.X[:3], 0).Y.tolist() + camp.oracle.evaluate(init.X[3:], 1).Y.tolist(),
              ids=init.ids)


@pytest.mark.parametrize("acq,model", [pytest.param("qMFKG", "mf_gp", marks=pytest.mark.slow), ("qMFMES", "mf_gp"),
                                       ("qMFMES", "ar1")])
def test_two_workers_condition_on_each_others_points(tmp_path, monkeypatch, acq, model):
    """With two points out at once (two workers), the second proposal conditions on the first:
    the acquisition receives it as X_pending, with its fidelity column, and proposes another point."""
    seen = _spy_pending(monkeypatch)
    opts = {"maxiter": 50} if model == "mf_gp" else {"restarts": 1}
    camp = Campaign(_cfg(tmp_path, acquisition={"name": acq, "num_restarts": 1, "raw_samples": 32, "maxiter": 20,
                                                "num_fantasies": 4}, model={"name": model, "options": opts}),
                    run_dir=tmp_path / "run")
    _run_initial_design(camp)
    first = camp.ask(1)
    second = camp.ask(1)
    assert seen[0] is None and seen[1] is not None and seen[1].shape == (1, 3)
    assert torch.allclose(seen[1][0, :2], first.X[0]) and seen[1][0, 2].item() == first.fidelities[0]
    assert not torch.allclose(first.X[0], second.X[0])
    camp.close()


def test_two_free_workers_get_two_points_one_conditioned_on_the_other(tmp_path, monkeypatch):
    """ask(2) with qMFMES (a q = 1 acquisition): sequential greedy, the second point's acquisition
    conditioned on the first as a pending point; two distinct points within the bounds."""
    seen = _spy_pending(monkeypatch)
    camp = Campaign(_cfg(tmp_path, model={"name": "ar1", "options": {"restarts": 1}}), run_dir=tmp_path / "run")
    _run_initial_design(camp)
    t = camp.ask(2)
    assert len(t) == 2 and t.roles == ["acquisition"] * 2 and not torch.allclose(t.X[0], t.X[1])
    b = camp.problem.bounds
    assert ((t.X >= b[0]) & (t.X <= b[1])).all() and set(t.fidelities) <= {0, 1}
    assert seen[0] is None and seen[1].shape == (1, 3) and torch.allclose(seen[1][0, :2], t.X[0])
    assert seen[1][0, 2].item() == t.fidelities[0]
    camp.close()


def test_level_costs_follow_recorded_and_measured_costs(tmp_path):
    # a budget of calls alone: every call costs one call of it, whatever the oracle's costs
    camp = Campaign(_cfg(tmp_path), run_dir=tmp_path / "calls")
    assert camp.level_costs() == (1.0, 1.0)
    camp.close()
    budget = {"calls": 9, "cost": 500.0}
    # recorded: the mean of the told costs with the oracle's cost as one more record
    camp = Campaign(_cfg(tmp_path, budget=budget), run_dir=tmp_path / "rec")
    t = camp.ask(6)
    Y = torch.zeros(6, 1, dtype=D)
    camp.tell(t.X, Y, ids=t.ids, cost=[2.0, 3.0, 4.0, 1.0, 2.0, 3.0])  # levels 0, 0, 0, 1, 1, 1
    assert camp.level_costs() == pytest.approx(((1.0 + 9.0) / 4, (10.0 + 6.0) / 4))
    camp.close()
    # oracle: the static cost model whatever was recorded
    camp = Campaign(_cfg(tmp_path, budget=budget, fidelity={"cost_source": "oracle"}), run_dir=tmp_path / "ora")
    t = camp.ask(6)
    camp.tell(t.X, Y, ids=t.ids, cost=[5.0] * 6)
    assert camp.level_costs() == (1.0, 10.0)
    camp.close()
    # wall time: per-level mean; an unmeasured level scales the oracle's cost by the measured ratio
    camp = Campaign(_cfg(tmp_path, budget=budget, fidelity={"cost_source": "wall_time"}), run_dir=tmp_path / "wall")
    assert camp.level_costs() == (1.0, 10.0)  # nothing measured yet
    t = camp.ask(6)
    camp.tell(t.X[:3], Y[:3], ids=t.ids[:3])
    for rid, w in zip(t.ids[:3], (0.2, 0.4, 0.6), strict=True):
        camp._rows[rid]["wall_time"] = w
    assert camp.level_costs() == pytest.approx((0.4, 10.0 * 0.4 / 1.0))
    for rid in t.ids[3:]:
        camp._rows[rid].update(status="done", wall_time=1.2)
    assert camp.level_costs() == pytest.approx((0.4, 1.2))
    camp.close()


def test_a_budget_of_calls_alone_spends_them_where_they_inform_the_target(tmp_path):
    """With calls the only limit, a call at the cheap level costs as much budget as one at the
    target: after the initial design (3 points at each level) the acquisitions query the
    target level. Weighed by the oracle's costs (1:10) they had spent every call but the last
    one kept for the target at the cheap level."""
    cfg = _cfg(tmp_path, budget={"calls": 10}, acquisition={"name": "qMFLogEI", "num_restarts": 1,
                                                            "raw_samples": 32, "maxiter": 20})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    camp.run()
    rows = [r for r in camp.store.rows() if r["role"] == "acquisition"]
    assert len(rows) == 4 and sum(r["fidelity"] == 1 for r in rows) >= 3, [r["fidelity"] for r in rows]
    camp.close()


def test_acquisition_sees_the_updated_costs(tmp_path, monkeypatch):
    """Before each proposal the engine hands the measured level costs to the acquisition."""
    import loops.acquisition as A

    seen = []
    real = A.mf_acquisition

    def spy(name, model, problem, m, cfg, X_pending=None, seed=0):
        seen.append(problem.acquisition_costs)
        return real(name, model, problem, m, cfg, X_pending=X_pending, seed=seed)

    monkeypatch.setattr(A, "mf_acquisition", spy)
    camp = Campaign(_cfg(tmp_path, budget={"calls": 9, "cost": 500.0}), run_dir=tmp_path / "run")
    t = camp.ask(6)
    Y = camp.oracle.evaluate(t.X[:3], 0).Y.tolist() + camp.oracle.evaluate(t.X[3:], 1).Y.tolist()
    camp.tell(t.X, Y, ids=t.ids, cost=[3.0] * 6)
    camp.ask(1)
    assert seen == [pytest.approx(((1.0 + 9.0) / 4, (10.0 + 9.0) / 4))]
    camp.close()


def test_recommendation_at_target_fidelity_matches_a_grid(tmp_path):
    """Forrester (1D, two levels): the recommendation is at the target level and maximizes the
    model's signed posterior mean there, as a brute-force grid of 4001 points finds it."""
    cfg = parse_config({
        "name": "rec", "oracle": {"name": "forrester"}, "budget": {"calls": 16},
        "initial": {"n": 5, "fidelities": [0, 1]}, "executor": {"kind": "serial"},
        "acquisition": {"name": "qMFMES", "num_restarts": 1, "raw_samples": 32, "maxiter": 20, "num_fantasies": 4},
        "model": {"name": "mf_gp", "options": {"maxiter": 50}}, "tracking": {"enabled": False},
        "run_dir": str(tmp_path),
    })
    camp = Campaign(cfg, oracle=Forrester(), run_dir=tmp_path / "run")
    res = camp.run()
    rec = res.recommendation
    assert rec is not None and rec["fidelity"] == 1 == res.best.fidelity
    grid = torch.linspace(0, 1, 4001, dtype=D).unsqueeze(-1)
    with torch.no_grad():
        mean = camp.model.posterior(torch.cat([grid, torch.ones_like(grid)], -1)).mean.squeeze(-1)
    k = int(mean.argmin())  # minimize
    assert rec["predicted_value"] <= mean[k].item() + 1e-6
    assert abs(rec["x"][0] - grid[k, 0].item()) < 2e-3 or rec["predicted_value"] < mean[k].item() - 1e-9
    # recorded with the run
    assert camp.store.get_meta("recommendation") == rec
    # and it is a good point of the truth: Forrester's minimum -6.0207 at x = 0.7572
    assert Forrester().evaluate_true(torch.tensor([rec["x"]], dtype=D)).item() < -5.0
    camp.close()


def test_learn_mode_reports_top_level_accuracy_and_integrated_variance(tmp_path):
    cfg = _cfg(tmp_path, mode="learn", acquisition={"name": "max_variance", "num_restarts": 1, "raw_samples": 32,
                                                    "maxiter": 20}, learn={"n_validation": 16})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    met = res.state.metrics
    assert {"nrmse", "nivar"} <= set(met) and math.isfinite(met["nrmse"]) and met["nivar"] >= 0
    # independent: posterior variance of the latent top level at the validation inputs
    Xv, Yv, _ = camp.data(role="validation")
    assert (Xv[:, -1] == 1).all()
    with torch.no_grad():
        var = camp.model.posterior(Xv).variance.squeeze(-1)
    assert met["nivar"] == pytest.approx((var.mean() / Yv.var()).item(), rel=1e-6)
    with torch.no_grad():
        mu = camp.model.posterior(Xv).mean.squeeze(-1).numpy()
    yv = Yv.squeeze(-1).numpy()
    assert met["nrmse"] == pytest.approx(float(np.sqrt(np.mean((mu - yv) ** 2)) / np.std(yv, ddof=1)), rel=1e-6)
    rows = [r for r in camp.store.rows() if r["role"] == "acquisition"]
    assert rows and all(r["fidelity"] in (0, 1) for r in rows)
    camp.close()


def _bench():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "experiments" / "benchmarks" / "mf_campaigns.py"
    spec = importlib.util.spec_from_file_location("mf_campaigns_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_benchmark_mori_tanaka_level_is_the_hashin_shtrikman_lower_bound():
    """The benchmark's cheap physics level: with the softer matrix, Mori–Tanaka equals the HS lower
    bound (plane strain C1111 = k + G of aligned cylinders at area fraction pi r^2)."""
    from oracles.analytic.bounds import hashin_shtrikman_bounds

    bench = _bench()
    o = bench.make_oracle(bench.PROBLEMS["mt_rve"])
    r = torch.tensor([[0.1], [0.25], [0.4]], dtype=D)
    c = o.evaluate(r, 0).Y[:, 0]
    (Km, Gm), (Ki, Gi) = o._moduli
    hs = hashin_shtrikman_bounds(Km, Gm, Ki, Gi, math.pi * r[:, 0] ** 2, dim=2)
    assert torch.allclose(c, hs.K_lower + hs.G_lower, rtol=1e-10)
    assert torch.allclose(o.evaluate(r, 0).Y[:, 1], (c - 2.0) ** 2)
    assert o.cost_model.costs == (1.0, 100.0)


def test_benchmark_answer_at_cost_and_cost_to_reach():
    bench = _bench()
    trace = [(0.3, None), (1.0, 5.0), (2.5, 3.0), (4.0, 3.5), (6.0, 1.0)]
    assert bench.value_at(trace, 0.5) is None and bench.value_at(trace, 2.5) == 3.0
    assert bench.value_at(trace, 5.9) == 3.5  # the answer bought last, not the best seen
    assert bench.cost_to_reach(trace, 3.0) == 2.5 and bench.cost_to_reach(trace, 0.5) == math.inf
    assert bench._best_trace([3.0, 5.0, 1.0]) == [(1.0, 3.0), (2.0, 3.0), (3.0, 1.0)]


def test_benchmark_problems_build_with_their_settings():
    """Every benchmark problem builds its oracle with its levels, costs and settings (``kwargs``); the
    2D Rosenbrock's top level is the Rosenbrock function (0 at (1, 1), 1 at the centre)."""
    bench = _bench()
    for name, prob in bench.PROBLEMS.items():
        if prob["kind"] != "analytic":
            continue
        o = bench.make_oracle(prob)
        assert o.cost_model.costs == tuple(prob["costs"]) and o.num_fidelities == len(prob["costs"]), name
    o = bench.make_oracle(bench.PROBLEMS["rosenbrock2"])
    assert o.dim == 2
    y = o.evaluate(torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=D), 2).Y[:, 0]
    assert torch.allclose(y, torch.tensor([0.0, 1.0], dtype=D))


def test_benchmark_learn_summary_medians_and_cost_to_reach():
    """Learn-mode summary: the median nRMSE at a cost fraction is over the answers bought by then, and
    the cost to reach ``ours_sf``'s final median nRMSE is the first cost at which a run is as low."""
    bench = _bench()
    B = bench.PROBLEMS["forrester"]["budget"]  # 10
    runs = {
        "ours_mf": {"0": {"trace": [(1.0, 0.5), (4.0, 0.1), (9.0, 0.01)], "time_s": 1.0},
                    "1": {"trace": [(2.0, 0.4), (6.0, 0.3), (9.5, 0.05)], "time_s": 3.0}},
        "ours_sf": {"0": {"trace": [(3.0, 0.9), (10.0, 0.2)], "time_s": 1.0},
                    "1": {"trace": [(3.0, 0.8), (10.0, 0.1)], "time_s": 1.0}},
        "sobol_sf": {"0": {"trace": [(10.0, 0.6)], "time_s": 0.1}, "1": {"trace": [(10.0, 0.7)], "time_s": 0.1}},
    }
    s = bench.summarize_learn({"runs": runs}, B)
    assert s["seeds_complete"] == 2
    assert s["nrmse_median"]["ours_mf"]["0.5"] == pytest.approx((0.1 + 0.4) / 2)
    assert s["nrmse_median"]["ours_sf"]["1.0"] == pytest.approx(0.15)
    assert s["nrmse_median"]["sobol_sf"]["0.25"] == math.inf  # no answer yet
    # ours_sf's final median 0.15: seed 0 reaches it at 4.0, seed 1 at 9.5
    assert s["cost_to_reach_ours_sf_final"]["ours_mf"]["median"] == pytest.approx((4.0 + 9.5) / 2)
    assert s["cost_to_reach_ours_sf_final"]["sobol_sf"]["fraction_of_budget"] == math.inf


def test_benchmark_learn_runner_charges_the_design_only(tmp_path):
    """A learn-mode run of the benchmark: ``ours_sf`` spends exactly its budget of top-level calls
    (the campaign's two validation points are not charged), ``ours_mf`` stays within its cost budget,
    costs grow along the trace and the top-level nRMSE of the final model is finite; with its cheap
    level, ``ours_mf`` ends below the nRMSE of predicting the test set's mean (1)."""
    bench = _bench()
    prob = dict(bench.PROBLEMS["forrester"], budget=5)
    oracle = bench.make_oracle(prob)
    test = bench.learn_test_set(oracle)
    assert test[0].shape == (bench.N_TEST, 1)
    for m, spent in (("ours_sf", 5.0), ("ours_mf", None)):
        trace = bench.run_learn(m, prob, bench.make_oracle(prob), 0, str(tmp_path / m), test)
        costs = [c for c, _ in trace]
        assert costs == sorted(costs) and costs[-1] <= 5.0 + 1e-9
        if spent is not None:
            assert costs[-1] == pytest.approx(spent)
        assert math.isfinite(trace[-1][1]) and trace[-1][1] > 0
    assert trace[-1][1] < 1


def test_learn_metrics_use_the_target_levels_noise_and_the_whole_validation_set(tmp_path):
    """Learn mode on a multi-fidelity oracle whose cheap level is far noisier than the target:
    NLPD and coverage are of the target level's observations (its noise, not a mean over the
    levels: before, 6.4 instead of 1e-4, coverage 1.0 and NLPD +1.8 against a hand value of
    -2.7); and no metric is reported, nor a target met, before every validation point has its
    result (before, 3 of 16 points 'met' an nRMSE target the whole set missed)."""
    import math

    from loops.config import parse_config
    from loops.engine import Campaign
    from loops.models import predict
    from oracles.analytic.test_functions import Forrester

    fast = {"num_restarts": 2, "raw_samples": 64, "maxiter": 50}
    oracle = Forrester(noise_std=(3.0, 0.01), seed=1)
    cfg = parse_config({"name": "t", "oracle": oracle, "mode": "learn", "budget": {"cost": 120.0},
                        "initial": {"n": 4}, "learn": {"n_validation": 16}, "run_dir": str(tmp_path / "runs"),
                        "acquisition": {"name": "max_variance", **fast}, "executor": {"kind": "serial"},
                        "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    t = camp.ask(200)  # the initial design and the validation set
    val = [i for i, r in enumerate(t.roles) if r == "validation"]
    rest = [i for i in range(len(t)) if i not in val]

    def tell(idx):
        for i in idx:
            r = oracle.evaluate(t.X[i : i + 1], t.fidelities[i])
            camp.tell(t.X[i : i + 1], r.Y, r.Yvar, fidelity=t.fidelities[i], ids=[t.ids[i]])

    tell(rest + val[:3])
    # two results at the target level (the initial design is at the cheap level only)
    xs = torch.tensor([[0.3], [0.8]], dtype=torch.float64)
    r = oracle.evaluate(xs, 1)
    camp.tell(xs, r.Y, r.Yvar, fidelity=1)
    camp.update_model()
    assert camp.model is not None and camp.validation_metrics() == {}  # 3 of 16 validation results
    tell(val[3:])
    camp.update_model()
    got = camp.validation_metrics()
    Xv, Yv, _ = camp.data(role="validation")
    Xv = Xv.clone()
    Xv[:, -1] = 1.0
    mu, var = predict(camp.model, Xv)
    var = var + 0.01**2  # the target level's noise
    err = mu - Yv
    nlpd = float((0.5 * torch.log(2 * math.pi * var) + 0.5 * err.pow(2) / var).mean())
    cover = float((err.abs() <= 1.959964 * var.sqrt()).double().mean())
    assert got["nlpd"] == pytest.approx(nlpd, rel=1e-6) and got["coverage95"] == pytest.approx(cover, abs=1e-12)
    camp.close()


class _XCost:
    """Cost model whose cost grows with x: ``costs[k] (1 + 2 x_0)`` (x in [0, 1])."""

    def __init__(self, costs):
        self.costs = tuple(costs)

    def __call__(self, X, fidelity):
        return self.costs[fidelity] * (1 + 2 * X[:, 0])


def _forrester_mf(cost_model=None, factor=(1.0, 1.0)):
    from oracles.base import CostModel, Oracle, OracleResult, make_bounds

    class ForresterCosts(Oracle):
        input_names, output_names, num_fidelities = ("x",), ("y",), 2

        def __init__(self):
            self.bounds = make_bounds([0.0], [1.0])
            self.cost_model = cost_model or CostModel((1.0, 10.0))

        def evaluate_batch(self, X, fidelity):
            hi = (6 * X[:, 0] - 2) ** 2 * torch.sin(12 * X[:, 0] - 4)
            y = hi if fidelity == 1 else 0.5 * hi + 10 * (X[:, 0] - 0.5) - 5
            n = X.shape[0]
            # the cost the oracle measured: its model's times a factor per level
            cost = self.cost_model(X, fidelity) * factor[fidelity]
            return OracleResult(X=X.clone(), Y=y.unsqueeze(-1), failed=torch.zeros(n, dtype=torch.bool),
                                reasons=[None] * n, cost=cost, fidelity=fidelity, metadata=[{} for _ in range(n)])

    return ForresterCosts()


@pytest.mark.parametrize("case", ["x-dependent", "measured-above-model"])
def test_cost_budget_is_not_overrun_by_costs_other_than_the_levels(tmp_path, case):
    """The cost budget admits a point against what it is expected to cost: the cost model at
    that x (a model that depends on x, as CostModel allows), times the level's ratio of
    reported to modelled costs so far. Before, every admission charged the level's nominal
    cost: an x-dependent model ended at 37.9 of a budget of 36, an oracle reporting 1.5x its
    model at 63 of 60."""
    from oracles.base import CostModel

    if case == "x-dependent":
        oracle, budget = _forrester_mf(cost_model=_XCost((1.0, 10.0))), 100.0
    else:
        oracle, budget = _forrester_mf(cost_model=CostModel((1.0, 10.0)), factor=(1.0, 1.5)), 100.0
    cfg = parse_config({"name": "cb", "seed": 0, "oracle": oracle, "budget": {"cost": budget},
                        "initial": {"n": 2}, "acquisition": {"name": "sobol"},
                        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "cb")
    res = camp.run()
    df = res.dataframe()
    spent = float(df[df.status.isin(["done", "failed"])].cost.sum())
    assert spent <= budget + 1e-9, spent
    # and the budget is used: what is left does not pay for another target evaluation
    # (the dearest one: 10 (1 + 2 x) <= 30 with the x-dependent model, 10 x 1.5 measured)
    dearest_top = 30.0 if case == "x-dependent" else 15.0
    assert budget - spent < dearest_top, (budget, spent)
    if case != "x-dependent":
        # the expected cost of a target evaluation has learned the oracle's factor
        n_top = int((df.fidelity == 1).sum())
        assert camp.expected_cost([0.5], 1) == pytest.approx(10.0 * (1 + 1.5 * n_top) / (1 + n_top))


def test_predict_gives_marginals_without_a_dense_covariance():
    """``loops.models.predict`` (validation metrics, plots, the prediction stored with each
    asked point) takes each point on its own: for NARGP on 4096 points it equals the model's
    own marginal predictions, where the joint posterior (64 sampled paths x 4096 x 4096) had
    needed about 8 GB."""
    import resource

    from loops.models import predict
    from surrogates.dataset import Dataset
    from surrogates.multifidelity import NARGP

    g = torch.Generator().manual_seed(0)
    X0 = torch.rand(20, 1, generator=g, dtype=D)
    X = torch.cat([X0, X0[:6]])
    fid = torch.tensor([0] * 20 + [1] * 6)
    hi = (6 * X[:, 0] - 2) ** 2 * torch.sin(12 * X[:, 0] - 4)
    Y = torch.where(fid == 1, hi, 0.5 * hi + 10 * (X[:, 0] - 0.5) - 5).unsqueeze(-1)
    m = NARGP.from_dataset(Dataset(X=X, Y=Y, fidelity=fid), noise="none")
    G = torch.rand(4096, 1, generator=g, dtype=D)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mu, var = predict(m, torch.cat([G, torch.ones(4096, 1, dtype=D)], -1))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    ref_mu, ref_var = m.predict(G, 1)
    assert mu.shape == var.shape == (4096, 1)
    torch.testing.assert_close(mu[:, 0], ref_mu, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(var[:, 0], ref_var, rtol=1e-7, atol=1e-14)
    assert grown_mb < 1000, grown_mb


@pytest.mark.parametrize(("acq", "target", "initial", "unasked"), [
    ("qLogNEI", None, None, "[0]"),  # asks the target level only
    ("qMFLogEI", 0, None, "[1]"),  # never asks a level above its target
    ("qMFLogEI", 0, [0, 1], None),  # ... unless the initial design does
    ("qMFLogEI", None, None, None),  # the default: initial design below the target, the target by acquisition
])
def test_a_co_kriging_model_the_campaign_can_never_fit_is_said_before_it_runs(tmp_path, acq, target, initial,
                                                                              unasked):
    """model 'ar1' is fitted once every level has results; a campaign that asks only its target
    (qLogNEI) or never a level above a lower target ran on the bootstrap model (mf_gp) from start
    to end, with a warning only at its close. The campaign now says so when it is built."""
    import warnings

    from loops.engine import BootstrapModelWarning

    cfg = parse_config({
        "name": "never", "oracle": MF_ORACLE, "budget": {"calls": 6}, "model": {"name": "ar1"},
        "acquisition": {"name": acq}, "executor": {"kind": "serial"}, "tracking": {"enabled": False},
        **({"fidelity": {"target": target}} if target is not None else {}),
        **({"initial": {"n": 3, "fidelities": initial}} if initial is not None else {})})
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        Campaign(cfg, run_dir=tmp_path / "run").close()
    said = [str(w.message) for w in got if issubclass(w.category, BootstrapModelWarning)]
    if unasked is None:
        assert not said, said
    else:
        assert len(said) == 1 and f"does not ask level(s) {unasked}" in said[0] and "'mf_gp'" in said[0], said


def test_a_resumed_campaign_whose_unasked_level_was_told_says_no_bootstrap_warning(tmp_path):
    """A qLogNEI campaign with model 'ar1' never asks level 0 and says so when built; a driver
    that told 4 results at level 0 (and 3 at the top) gets AR1 fitted. Resuming it had warned
    again that the campaign 'runs on the bootstrap model', with level 0 already holding 4 of
    the 3 results it needs."""
    import warnings

    from loops.engine import BootstrapModelWarning

    cfg = parse_config({
        "name": "told", "oracle": MF_ORACLE, "budget": {"calls": 12}, "model": {"name": "ar1"},
        "acquisition": {"name": "qLogNEI", "num_restarts": 1, "raw_samples": 32, "maxiter": 20},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}, "run_dir": str(tmp_path / "runs")})

    def said(fn):
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            out = fn()
        return out, [str(w.message) for w in got if issubclass(w.category, BootstrapModelWarning)]

    camp, first = said(lambda: Campaign(cfg, run_dir=tmp_path / "run"))
    assert len(first) == 1 and "does not ask level(s) [0]" in first[0]
    o = camp.oracle
    X = sobol_points(o.bounds, 4, seed=3)
    camp.tell(X, o.evaluate(X, 0).Y, fidelity=0)
    t = camp.ask(3)
    camp.tell(t.X, o.evaluate(t.X, 1).Y, ids=t.ids)
    camp.update_model()
    assert type(camp.model).__name__ == "AR1CoKriging"
    camp.close()
    again, later = said(lambda: Campaign.resume(tmp_path / "run"))
    assert later == []
    again.close()


def test_a_campaign_that_ends_on_its_bootstrap_model_says_so(tmp_path):
    """model.name = 'ar1' needs 3 results at every level; a campaign whose top level never
    got them ends with the bootstrap model (mf_gp) as its surrogate and recommendation, and
    now warns by name (it had been silent)."""
    from loops.engine import BootstrapModelWarning

    cfg = parse_config({
        "name": "boot", "seed": 0, "oracle": MF_ORACLE, "budget": {"calls": 6},
        "initial": {"n": 4, "fidelities": [0]}, "model": {"name": "ar1"},
        "acquisition": {"name": "qMFLogEI", "num_restarts": 2, "raw_samples": 32, "maxiter": 30},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "boot")
    with pytest.warns(BootstrapModelWarning, match=r"'ar1' was not fitted.*levels \[1\].*'mf_gp'"):
        camp.run()
    assert type(camp.model).__name__ == "SingleTaskMultiFidelityGP"
    # with a registered model name, that nothing is registered is said too (it had been silent,
    # and a later models:/ URI failed with no hint)
    from loops.tracking import TrackingWarning

    reg = parse_config({**cfg.model_dump(mode="json", exclude={"oracle"}), "oracle": MF_ORACLE, "name": "boot-reg",
                        "tracking": {"registered_model_name": "boot-reg"}})
    camp = Campaign(reg, run_dir=tmp_path / "boot-reg")
    with pytest.warns(TrackingWarning, match=r"nothing is saved or registered as 'boot-reg'"):
        camp.run()


def test_predict_of_a_multi_output_gp_equals_its_one_point_posteriors():
    """For a BoTorch GP with independent outputs, ``predict`` takes chunks as joint
    posteriors (one-point batches broadcast its ``m x N x N`` cache per point): the
    marginals equal the one-point posteriors' and the growth of the peak memory stays
    far below the ~3 GB that the broadcast needed for these 4096 points."""
    import resource

    from loops.models import fit_model, predict
    from surrogates.base import variance_in_output_units

    g = torch.Generator().manual_seed(1)
    X = torch.rand(300, 3, generator=g, dtype=D)
    Y = torch.stack([torch.sin(6 * X[:, 0] + j) + X[:, 1] ** 2 for j in range(3)], -1)
    m = fit_model("singletask_gp", X, Y, torch.tensor([[0.0] * 3, [1.0] * 3], dtype=D))
    Xt = torch.rand(4096, 3, generator=g, dtype=D)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    mu, var = predict(m, Xt)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    with torch.no_grad(), variance_in_output_units():
        ref = m.posterior(Xt[:64].unsqueeze(-2))
    assert mu.shape == var.shape == (4096, 3)
    torch.testing.assert_close(mu[:64], ref.mean.squeeze(-2), rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(var[:64], ref.variance.squeeze(-2), rtol=1e-6, atol=1e-12)
    assert grown_mb < 800, grown_mb


def test_no_recommendation_of_a_design_that_failed_at_the_target_level(tmp_path):
    """With no success at the target level, a posterior-mean maximizer where the oracle failed there
    is not recommended: best() warns and gives no predicted point (the observed best stays None)."""
    camp = Campaign(_cfg(tmp_path, model={"name": "ar1", "options": {"restarts": 1}}), run_dir=tmp_path / "run")
    init = camp.ask(6)
    X0 = init.X[:3]
    camp.tell(X0, camp.oracle.evaluate(X0, 0).Y.tolist(), ids=init.ids[:3])
    camp.tell(init.X[3:], [[float("nan")]] * 3, ids=init.ids[3:], reasons=["diverged"] * 3)
    camp.update_model()
    first = camp.best()
    assert first.x is None and first.predicted_x is not None
    camp.tell([first.predicted_x], [[float("nan")]], fidelity=1, reasons=["diverged"])
    camp.update_model()
    with pytest.warns(UserWarning, match="failed there"):
        again = camp.best()
    assert again.predicted_x is None and again.x is None
    camp.close()


def test_a_batch_keeps_room_for_the_first_target_evaluation(tmp_path):
    """Optimize mode, cost budget: until a target-level result exists a cheaper level is proposed only
    where the budget left still pays for one target evaluation, checked point by point within a batch
    (two workers asking together had spent the reserve at the cheap level and ended with no target result)."""
    import warnings

    cfg = parse_config({
        "name": "rsv", "oracle": {"name": "forrester"}, "budget": {"cost": 17.0}, "initial": {"n": 3},
        "acquisition": {"name": "qMFKG", "num_restarts": 2, "raw_samples": 32, "maxiter": 20, "num_fantasies": 4},
        "model": {"name": "mf_gp", "options": {"maxiter": 50}}, "executor": {"kind": "serial"},
        "tracking": {"enabled": False}, "run_dir": str(tmp_path),
    })
    o = Forrester()
    camp = Campaign(cfg, oracle=o, run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        while not camp.finished():
            t = camp.ask(2)
            if not len(t.ids):
                break
            Y = torch.cat([o.evaluate(x.unsqueeze(0), f).Y for x, f in zip(t.X, t.fidelities, strict=True)])
            camp.tell(t.X, Y, fidelity=t.fidelities, ids=t.ids)
        res = camp.finish()
    assert res.state.cost <= 17.0 + 1e-9
    assert any(r["fidelity"] == 1 and r["status"] == "done" for r in res.rows)


@pytest.mark.parametrize("model, fitted", [("ar1", "AR1CoKriging"), ("recursive", "SingleTaskMultiFidelityGP"),
                                           ("nargp", "SingleTaskMultiFidelityGP")])
def test_an_initial_design_of_two_points_per_level(tmp_path, model, fitted):
    """With initial.n = 2 at both levels AR1 is fitted after the design; recursive co-kriging and NARGP,
    which need more points at a level than its trend [1, f] has terms, propose from the bootstrap model
    (mf_gp) until every level has 3 results (their fit had raised out of ask() after the design was paid
    for). With model.bootstrap = 'none' such a design is refused before any call."""
    import warnings

    spec = {
        "name": "sm", "oracle": {"name": "forrester"}, "budget": {"calls": 6},
        "initial": {"n": 2, "fidelities": [0, 1]},
        "acquisition": {"name": "qMFKG", "num_restarts": 1, "raw_samples": 32, "maxiter": 20, "num_fantasies": 4},
        "model": {"name": model, "options": {"restarts": 1}}, "executor": {"kind": "serial"},
        "tracking": {"enabled": False}, "run_dir": str(tmp_path),
    }
    o = Forrester()
    camp = Campaign(parse_config(spec), oracle=o, run_dir=tmp_path / "run")
    t = camp.ask(4)
    camp.tell(t.X, torch.cat([o.evaluate(x.unsqueeze(0), f).Y for x, f in zip(t.X, t.fidelities, strict=True)]),
              ids=t.ids)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nxt = camp.ask(1)
    assert len(nxt.ids) == 1 and type(camp.model).__name__ == fitted
    assert camp.model_faults == []
    camp.close()
    none = parse_config({**spec, "model": {**spec["model"], "bootstrap": "none"}})
    if fitted == "AR1CoKriging":
        Campaign(none, oracle=o, run_dir=tmp_path / "none").close()
    else:
        with pytest.raises(ValueError, match=f"initial.n = 2: model '{model}' needs 3 results at every level"):
            Campaign(none, oracle=o, run_dir=tmp_path / "none")


def test_a_level_named_twice_in_the_initial_design_needs_a_noisy_oracle(tmp_path):
    spec = {"name": "dup", "budget": {"calls": 12}, "initial": {"n": 3, "fidelities": [0, 0]},
            "acquisition": {"name": "qMFLogEI"}, "model": {"name": "mf_gp"}, "executor": {"kind": "serial"},
            "tracking": {"enabled": False}, "run_dir": str(tmp_path)}
    with pytest.raises(ValueError, match="names a level twice and oracle Forrester is deterministic"):
        Campaign(parse_config({**spec, "oracle": {"name": "forrester"}}), run_dir=tmp_path / "det")
    camp = Campaign(parse_config({**spec, "oracle": {"name": "forrester", "noise_std": 0.1}}),
                    run_dir=tmp_path / "noisy")
    t = camp.ask(6)
    assert t.fidelities == [0] * 6 and torch.equal(t.X[:3], t.X[3:])  # replicates of the design
    camp.close()

    class SeededForrester(Forrester):
        """Noisy, with the noise drawn from a seed of the point (as the MD elastic-constant oracle):
        a replicate returns the same answer."""

        seeded_by_point = True

    with pytest.raises(ValueError, match="names a level twice .* draws its noise from a seed of the point"):
        Campaign(parse_config({**spec, "oracle": SeededForrester(noise_std=0.1)}), run_dir=tmp_path / "seeded")


@pytest.mark.parametrize("model, acq, extra, match", [
    ("ar1", "qMFLogEI", {}, "model.name = 'ar1' models one output .* models 2: \\['f', 'g'\\]; set outputs = \\['f'\\]"),
    ("mf_gp", "qMFMES", {}, "'qMFMES' takes one modeled output"),
    ("mf_gp", "qMFKG", {}, "'qMFKG' takes one modeled output"),
    ("mf_gp", "qMFKG", {"objective": {"outputs": ["f"], "constraints": [{"output": "g", "upper": 0.5}]}},
     "'qMFKG' takes no outcome constraints .* \\['g'\\]; use 'qMFLogEI'"),
])
def test_settings_that_need_one_output_are_refused_before_any_call(tmp_path, model, acq, extra, match):
    """A two-output multi-fidelity oracle with a one-output model or acquisition, or qMFKG with an
    outcome constraint (which it would ignore), is refused when the campaign is built (it had failed
    at the first fit, after the initial design was paid for, or run with the constraint ignored)."""
    from loops.fakes import TwoOutputMultiFidelity

    o = TwoOutputMultiFidelity()
    cfg = parse_config({"name": "two", "oracle": o, "budget": {"cost": 100.0},
                        "initial": {"n": 3, "fidelities": [0, 1]}, "acquisition": {"name": acq},
                        "model": {"name": model}, "executor": {"kind": "serial"}, "tracking": {"enabled": False},
                        "run_dir": str(tmp_path), **extra})
    with pytest.raises(ValueError, match=match):
        Campaign(cfg, oracle=o, run_dir=tmp_path / "run")
    ok = parse_config({**cfg.model_dump(exclude={"oracle"}), "oracle": o, "outputs": ["f"], "objective": {}})
    Campaign(ok, oracle=o, run_dir=tmp_path / "ok").close()


def test_a_calls_budget_keeps_its_last_call_for_the_first_target_evaluation(tmp_path):
    """Optimize mode, calls budget only: qMFKG weighs value by cost and may prefer the cheap level at
    every step; the last call is kept for the target level when no target result exists, so the
    campaign ends with one to check its recommendation by."""
    import warnings

    cfg = parse_config({
        "name": "calls", "oracle": {"name": "forrester"}, "budget": {"calls": 6},
        "initial": {"n": 3, "fidelities": [0]},
        "acquisition": {"name": "qMFKG", "num_restarts": 1, "raw_samples": 32, "maxiter": 20, "num_fantasies": 4},
        "model": {"name": "mf_gp", "options": {"maxiter": 50}}, "executor": {"kind": "serial"},
        "tracking": {"enabled": False}, "run_dir": str(tmp_path),
    })
    o = Forrester(costs=(1.0, 1000.0))
    camp = Campaign(cfg, oracle=o, run_dir=tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = camp.run()
    levels = [r["fidelity"] for r in res.rows if r["status"] == "done"]
    assert len(levels) == 6 and levels[-1] == 1, levels
    assert levels.count(1) >= 1


def _hetero(x):
    """A noisy 1-D function whose known error bar grows with x (value, variance)."""
    return math.sin(6 * float(x[0])), (0.02 + 0.5 * float(x[0])) ** 2


def test_learn_metrics_score_each_validation_result_with_its_own_error_bar(tmp_path):
    """An oracle reporting each result's variance (the MD oracle's standard errors): held-out NLPD
    and coverage use each validation result's own variance. They had used the level's average,
    so an MD point with a large error bar was counted a miss it is not, and a precise one scored
    with a wide interval."""
    from loops.models import predict
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(_hetero, [[0.0], [1.0]], noisy=True)
    cfg = parse_config({"name": "h", "oracle": oracle, "mode": "learn", "budget": {"calls": 10},
                        "initial": {"n": 6}, "learn": {"n_validation": 12}, "run_dir": str(tmp_path / "runs"),
                        "acquisition": {"name": "max_variance", "num_restarts": 2, "raw_samples": 32, "maxiter": 30},
                        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    camp.run()
    got = camp.validation_metrics()
    Xv, Yv, Yvv = camp.data(role="validation")
    assert Yvv is not None and float(Yvv.max() / Yvv.min()) > 10  # the error bars differ
    mu, var = predict(camp.model, Xv)
    var = var + Yvv
    err = mu - Yv
    nlpd = float((0.5 * torch.log(2 * math.pi * var) + 0.5 * err.pow(2) / var).mean())
    cover = float((err.abs() <= 1.959964 * var.sqrt()).double().mean())
    assert got["nlpd"] == pytest.approx(nlpd, rel=1e-6) and got["coverage95"] == pytest.approx(cover, abs=1e-12)
    camp.close()


@pytest.mark.parametrize("costs", [(1.0,), (1.0, 10.0, 100.0)])
def test_an_oracle_cost_model_with_the_wrong_number_of_levels_is_named(tmp_path, costs):
    """One cost for two levels had ended in a bare IndexError; three were accepted silently."""
    from oracles.base import CostModel

    o = Forrester()
    o.cost_model = CostModel(costs)
    with pytest.raises(ValueError, match=rf"cost model has {len(costs)} costs .* for 2 fidelity levels"):
        Campaign(_cfg(tmp_path, oracle=o, budget={"cost": 30.0}))
