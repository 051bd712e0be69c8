"""qMFLogEI: the design by qLogNEI at the target level, the level by variance removed per unit cost."""

import pytest
import torch

from loops.acquisition import level_gains, propose
from loops.config import Acquisition, parse_config
from loops.engine import Campaign
from tests.loops.test_mf_campaigns import MF_ORACLE, _branin_data, _model, _run_initial_design

D = torch.float64
FAST = Acquisition(num_restarts=2, raw_samples=64, maxiter=50)


@pytest.fixture(scope="module")
def fitted():
    torch.manual_seed(0)
    _, X, Y, prob = _branin_data(16, 6)
    return X, Y, prob, _model("mf_gp", X, Y, prob)


def _closed_form_gains(model, x, prob, noise):
    """Per level: cov(f_T(x), f_l(x))^2 / (var f_l(x) + noise) / c_l, from the model's joint posterior."""
    L, T = prob.num_fidelities, prob.target_fidelity
    pts = torch.cat([torch.cat([x, torch.tensor([float(k)], dtype=D)]).reshape(1, -1) for k in range(L)])
    with torch.no_grad():
        S = model.posterior(pts).distribution.covariance_matrix
    return torch.tensor([S[T, k] ** 2 / (S[k, k] + noise) / prob.acquisition_costs[k] for k in range(L)])


def test_level_gains_are_the_variance_removed_per_unit_cost(fitted):
    X, Y, prob, model = fitted
    noise = torch.tensor([1e-3], dtype=D)
    for x in torch.tensor([[2.0, 5.0], [-3.0, 12.0], [9.0, 1.0]], dtype=D):
        g = level_gains(model, x, prob, 1, noise)
        assert torch.allclose(g, _closed_form_gains(model, x, prob, noise), rtol=1e-4)


def test_equal_costs_choose_the_target_and_a_costly_target_the_cheap_level(fitted):
    """With equal costs observing the target itself removes the most of its variance (cov^2 <= var var);
    with the target 1000x dearer a correlated cheap level wins."""
    X, Y, prob, model = fitted
    x = torch.tensor([0.5, 7.0], dtype=D)
    prob.level_costs = (1.0, 1.0)
    assert int(level_gains(model, x, prob, 1).argmax()) == 1
    prob.level_costs = (1.0, 1000.0)
    assert int(level_gains(model, x, prob, 1).argmax()) == 0
    prob.level_costs = None


def test_a_pending_cheap_observation_leaves_only_the_target_worth_buying(fitted):
    """Once (x, 0) is pending (noise-free), observing level 0 at x again removes nothing: the target wins."""
    X, Y, prob, model = fitted
    x = torch.tensor([0.5, 7.0], dtype=D)
    prob.level_costs = (1.0, 10.0)
    noise = torch.tensor([1e-9], dtype=D)
    before = level_gains(model, x, prob, 1, noise)
    after = level_gains(model, x, prob, 1, noise, X_pending=torch.tensor([[0.5, 7.0, 0.0]], dtype=D))
    assert before[0] > before[1] and after[0] < 1e-3 * before[0] and int(after.argmax()) == 1
    prob.level_costs = None


def test_proposal_is_the_qlognei_design_at_the_target_with_the_level_of_most_gain(fitted):
    """Stage 1 proposes the design single-fidelity qLogNEI (with the observed designs projected to the
    target level as its incumbents) proposes; stage 2 only sets the fidelity column."""
    X, Y, prob, model = fitted
    prob.level_costs = (1.0, 10.0)
    c = propose("qMFLogEI", model, prob, X, Y, 1, FAST, seed=3)
    assert c.shape == (1, 3)
    g = level_gains(model, c[0, :2], prob, 1)
    assert c[0, 2].item() == float(int(g.argmax()))
    from botorch.acquisition import qLogNoisyExpectedImprovement
    from botorch.acquisition.objective import LinearMCObjective

    from loops.acquisition import _at_target, _with_level

    acqf = _at_target(qLogNoisyExpectedImprovement(
        model, X_baseline=torch.unique(_with_level(X[:, :2], 1), dim=0),
        objective=LinearMCObjective(torch.tensor([-1.0], dtype=D)), cache_root=False), prob)
    grid = torch.stack(torch.meshgrid(torch.linspace(-5, 10, 31, dtype=D), torch.linspace(0, 15, 31, dtype=D),
                                      indexing="ij"), -1).reshape(-1, 1, 2)
    with torch.no_grad():
        torch.manual_seed(0)
        best_grid = acqf(grid).max()
        torch.manual_seed(0)
        at_c = acqf(c[:, :2].unsqueeze(0))
    assert at_c >= best_grid - 0.05  # the optimizer's design is at least as good as a 31 x 31 grid
    prob.level_costs = None


def _cfg(tmp_path, **over):
    base = {"name": "mfei", "oracle": MF_ORACLE, "budget": {"calls": 9},
            "initial": {"n": 3, "fidelities": [0, 1]}, "executor": {"kind": "serial"},
            "acquisition": {"name": "qMFLogEI", "num_restarts": 1, "raw_samples": 32, "maxiter": 20},
            "model": {"name": "mf_gp", "options": {"maxiter": 50}},
            "tracking": {"enabled": False}, "run_dir": str(tmp_path)}
    base.update(over)
    return parse_config(base)


def test_two_points_asked_at_once_differ_and_stay_in_bounds(tmp_path):
    camp = Campaign(_cfg(tmp_path), run_dir=tmp_path / "run")
    _run_initial_design(camp)
    t = camp.ask(2)
    assert len(t) == 2 and t.roles == ["acquisition"] * 2 and not torch.allclose(t.X[0], t.X[1])
    b = camp.problem.bounds
    assert ((t.X >= b[0]) & (t.X <= b[1])).all() and set(t.fidelities) <= {0, 1}
    camp.close()


def test_campaign_runs_to_its_budget_and_recommends_at_the_target(tmp_path):
    camp = Campaign(_cfg(tmp_path, budget={"calls": 10}), run_dir=tmp_path / "run")
    camp.run()
    rows = [r for r in camp.store.rows() if r["status"] == "done"]
    assert len(rows) == 10 and {r["fidelity"] for r in rows} <= {0, 1}
    b = camp.best()
    assert b is not None and b.predicted_x is not None and len(b.predicted_x) == 2
    # both refer to the target level: the best observation is the smallest level-1 result
    top = [r for r in rows if r["fidelity"] == 1]
    assert b.fidelity == 1 and top
    best_row = min(top, key=lambda r: r["y"][0])
    assert b.value == best_row["y"][0] and b.x == best_row["x"][:2]
    # and the recommendation is no worse, by the model's target-level mean, than that observation
    with torch.no_grad():
        mu = camp.model.posterior(torch.tensor([[*b.x, 1.0], [*b.predicted_x, 1.0]], dtype=D)).mean.squeeze(-1)
    assert b.predicted_value == pytest.approx(mu[1].item(), rel=1e-6, abs=1e-9) and mu[1] <= mu[0] + 1e-6
    camp.close()


def test_refused_in_learn_mode_and_with_a_single_fidelity_oracle(tmp_path):
    with pytest.raises(ValueError, match="optimize-mode acquisition"):
        _cfg(tmp_path, mode="learn")
    cfg = _cfg(tmp_path, oracle={"name": "branin"}, initial={"n": 3})
    with pytest.raises(ValueError, match="'qMFLogEI' is a multi-fidelity acquisition .* has one fidelity"):
        Campaign(cfg, run_dir=tmp_path / "sf")


def test_qlognei_incumbent_and_pending_are_at_the_target_level(fitted):
    """A lower level's value is never the target level's incumbent: the baseline qLogNEI improves on
    is the observed designs at the target level, and pending points at lower levels are held there too."""
    from loops.acquisition import _log_nei

    X, Y, prob, model = fitted
    pend = torch.tensor([[1.0, 2.0, 0.0]], dtype=D)
    acqf = _log_nei(model, prob, X, 1, pend)
    # BoTorch adds the pending points to the baseline (incremental qLogNEI) and prunes the designs
    # that are never the best: a subset of the observed and pending designs, all at the target level
    assert (acqf.X_baseline[:, -1] == 1.0).all()
    designs = torch.cat([X[:, :2], pend[:, :2]])
    assert all(any(torch.equal(b, x) for x in designs) for b in acqf.X_baseline[:, :2])
    assert [1.0, 2.0, 1.0] in acqf.X_baseline.tolist()


@pytest.mark.parametrize("name", ["ar1", "recursive", "nargp"])
def test_co_kriging_models_drive_it_too(name):
    """Both stages need only the model's posterior: each co-kriging model gives two distinct points in
    the bounds, each at the level of most gain given the ones before it."""
    _, X, Y, prob = _branin_data(16, 6)
    model = _model(name, X, Y, prob)
    prob.level_costs = (1.0, 10.0)
    c = propose("qMFLogEI", model, prob, X, Y, 2, FAST, seed=0)
    b = prob.bounds
    assert c.shape == (2, 3) and ((c[:, :2] >= b[0]) & (c[:, :2] <= b[1])).all()
    assert not torch.allclose(c[0], c[1])
    assert c[0, 2].item() == float(int(level_gains(model, c[0, :2], prob, 1).argmax()))
    assert c[1, 2].item() == float(int(level_gains(model, c[1, :2], prob, 1, X_pending=c[:1]).argmax()))


@pytest.mark.parametrize("a", [1e-12, 1e6])
def test_level_gains_are_the_same_in_any_output_units(a):
    """AR1 fitted to ``a y`` (a compliance in 1/Pa, a modulus in Pa) gives level gains ``a^2`` times those
    of ``y``, with and without a pending cheap observation, so the same level is chosen: the jitter of
    the solves is relative to the matrix solved (plus a floor relative to ``Problem.output_scale``), not
    an absolute floor."""
    _, X, Y, prob = _branin_data(10, 4)
    prob.level_costs = (1.0, 10.0)
    x = torch.tensor([0.5, 7.0], dtype=D)
    pend = torch.tensor([[0.5, 7.0, 0.0]], dtype=D)
    gains = {}
    for s in (1.0, a):
        model = _model("ar1", X, s * Y, prob)
        prob.output_scale = (s * Y).var(0)
        gains[s] = (level_gains(model, x, prob, 1), level_gains(model, x, prob, 1, X_pending=pend))
    for g1, ga in zip(gains[1.0], gains[a], strict=True):
        torch.testing.assert_close(ga / a**2, g1, rtol=1e-6, atol=0)
    assert int(gains[a][1].argmax()) == int(gains[1.0][1].argmax()) == 1  # a pending (x, 0) leaves the target
    prob.level_costs, prob.output_scale = None, None


def test_the_level_is_chosen_among_the_levels_the_problem_allows(fitted):
    """With the target 1000x dearer, level 0 removes the most variance per cost; restricted to the
    target (``Problem.levels``, what the engine sets when only the target fits the budget), the
    target is proposed at the same design, and a level outside the oracle is refused."""
    X, Y, prob, model = fitted
    prob.level_costs = (1.0, 1000.0)
    free = propose("qMFLogEI", model, prob, X, Y, 1, FAST, seed=3)
    prob.levels = (1,)
    only_target = propose("qMFLogEI", model, prob, X, Y, 1, FAST, seed=3)
    assert free[0, 2].item() == 0.0 and only_target[0, 2].item() == 1.0
    torch.testing.assert_close(free[:, :2], only_target[:, :2], rtol=0, atol=0)
    prob.levels = (0, 2)
    with pytest.raises(ValueError, match=r"Problem.levels = \(0, 2\); expected a non-empty subset of the levels 0..1"):
        propose("qMFLogEI", model, prob, X, Y, 1, FAST, seed=3)
    prob.levels, prob.level_costs = None, None
