"""Candidate generators against independent computations."""

import pytest
import torch
from botorch.models import SingleTaskGP
from botorch.models.transforms import Normalize
from gpytorch.kernels import MaternKernel, ScaleKernel

from loops.acquisition import LevelCostModel, MaxVariance, Problem, propose, sobol_points
from loops.config import Acquisition
from loops.models import fit_model

D = torch.float64
FAST = Acquisition(num_restarts=2, raw_samples=64, maxiter=50, mc_points=64, num_fantasies=4)


def _gp(X, Y, bounds):
    return fit_model("singletask_gp", X, Y, bounds, options={"maxiter": 50})


def test_sobol_continuation_is_one_sequence():
    b = torch.tensor([[0.0, -1.0], [2.0, 1.0]], dtype=D)
    full = sobol_points(b, 12, seed=5)
    assert torch.equal(torch.cat([sobol_points(b, 5, seed=5), sobol_points(b, 7, seed=5, skip=5)]), full)
    assert ((full >= b[0]) & (full <= b[1])).all()


def test_level_cost_model_interpolates_costs():
    cm = LevelCostModel((1.0, 3.0, 10.0))
    X = torch.tensor([[[0.3, 0.0]], [[0.3, 1.0]], [[0.3, 1.5]], [[0.3, 2.0]]], dtype=D)
    assert cm(X).flatten().tolist() == pytest.approx([1.0, 3.0, 6.5, 10.0])


def test_max_variance_equals_gp_conditioned_on_pending():
    torch.manual_seed(0)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    X = torch.rand(8, 2, dtype=D)
    Y = torch.sin(6 * X[:, :1]) + X[:, 1:]
    m1 = SingleTaskGP(X, Y, input_transform=Normalize(2, bounds=b), outcome_transform=None)
    m1.likelihood.noise = torch.tensor([1e-3], dtype=D)
    m1.eval()
    P = torch.rand(2, 2, dtype=D)
    x = torch.rand(5, 1, 2, dtype=D)
    acq = MaxVariance(m1, torch.ones(1, dtype=D), m1.likelihood.noise.detach().reshape(1), X_pending=P)
    # independent: a GP with the same hyperparameters trained on X and P (values do not matter)
    m2 = SingleTaskGP(torch.cat([X, P]), torch.cat([Y, torch.zeros(2, 1, dtype=D)]),
                      input_transform=Normalize(2, bounds=b), outcome_transform=None)
    m2.load_state_dict(m1.state_dict(), strict=False)
    m2.eval()
    expected = m2.posterior(x).variance.reshape(-1)
    assert torch.allclose(acq(x), expected, rtol=1e-5, atol=1e-9)
    # and pending points lower the variance
    assert (acq(x) <= m1.posterior(x).variance.reshape(-1) + 1e-12).all()


@pytest.mark.parametrize("a", [1e-12, 1e6])
def test_max_variance_is_the_same_in_any_output_units(a):
    """Outputs in small or large units (``a y``: a permeability in m², a modulus in Pa) scale the
    conditioned variances by ``a^2`` and nothing else: the jitter of the solves is relative to
    the output's variance (``scale``), not an absolute floor that would swamp ``1e-24``-sized
    variances and make a pending point look uninformative."""
    torch.manual_seed(0)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    X = torch.rand(8, 2, dtype=D)
    Y = torch.sin(6 * X[:, :1]) + X[:, 1:]
    P = torch.rand(2, 2, dtype=D)
    x = torch.cat([P.unsqueeze(-2), torch.rand(5, 1, 2, dtype=D)])  # the pending points and others
    vals = {}
    for s in (1.0, a):
        m = SingleTaskGP(X, s * Y, covar_module=ScaleKernel(MaternKernel(nu=2.5)),
                         input_transform=Normalize(2, bounds=b), outcome_transform=None)
        m.covar_module.base_kernel.lengthscale = 0.3
        m.covar_module.outputscale = s**2
        m.likelihood.noise = torch.tensor([1e-6 * s**2], dtype=D)
        m.eval()
        scale = (s * Y).var(0)
        acq = MaxVariance(m, 1 / scale, m.likelihood.noise.detach().reshape(1), X_pending=P, scale=scale)
        vals[s] = acq(x).detach()
    torch.testing.assert_close(vals[a], vals[1.0], rtol=1e-6, atol=1e-12)
    assert (vals[1.0][:2] < 1e-4 * vals[1.0][2:].max()).all()  # observing a point removes its variance


def test_constrained_qlognei_respects_outcome_constraint():
    # maximize y0 = x with y1 = x <= 0.5: the best feasible point is x = 0.5
    X = torch.linspace(0, 1, 9, dtype=D).unsqueeze(-1)
    Y = torch.cat([X, X], -1)
    b = torch.tensor([[0.0], [1.0]], dtype=D)
    prob = Problem(bounds=b, objective_idx=[0], signs=[1.0], constraints=[(1, None, 0.5)])
    cand = propose("qLogNEI", _gp(X, Y, b), prob, X, Y, 1, FAST, seed=1)
    assert cand.shape == (1, 1) and 0.3 <= cand.item() <= 0.62
    free = Problem(bounds=b, objective_idx=[0], signs=[1.0], constraints=[])
    assert propose("qLogNEI", _gp(X, Y, b), free, X, Y, 1, FAST, seed=1).item() > 0.8


def test_qlognehvi_batch_in_bounds_and_distinct():
    torch.manual_seed(1)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    X = torch.rand(10, 2, dtype=D)
    Y = torch.stack([X[:, 0], 1 - X[:, 0] ** 2 + 0.1 * X[:, 1]], -1)
    prob = Problem(bounds=b, objective_idx=[0, 1], signs=[1.0, 1.0], constraints=[])
    cand = propose("qLogNEHVI", _gp(X, Y, b), prob, X, Y, 2, FAST, seed=0)
    assert cand.shape == (2, 2) and ((cand >= 0) & (cand <= 1)).all()
    assert (cand[0] - cand[1]).norm() > 1e-4


def test_hypervolume_reference_is_given_in_the_outputs_own_units():
    """A worst acceptable value of 10 for a minimized output is -10 in BoTorch's
    maximization sense (Ax's objective thresholds); a maximized one keeps its sign.
    Points that meet both thresholds then dominate the reference."""
    from loops.acquisition import hypervolume_reference

    b = torch.tensor([[0.0], [1.0]], dtype=D)
    Y = torch.tensor([[3.0, 2.0], [8.0, 0.5]], dtype=D)  # f minimized (<= 10 acceptable), g maximized (>= 0.1)
    prob = Problem(bounds=b, objective_idx=[0, 1], signs=[-1.0, 1.0], constraints=[], ref_point=[10.0, 0.1])
    ref = hypervolume_reference(prob, Y)
    assert torch.equal(ref, torch.tensor([-10.0, 0.1], dtype=D))
    assert ((Y * torch.tensor([-1.0, 1.0], dtype=D)) > ref).all()
    inferred = hypervolume_reference(Problem(bounds=b, objective_idx=[0, 1], signs=[-1.0, 1.0], constraints=[]), Y)
    assert (inferred <= torch.tensor([-8.0, 0.5], dtype=D)).all()  # BoTorch's: below the worst observed
    # a reference no observation betters in every objective (here f <= 1 for a minimized f the data
    # never reach) leaves the hypervolume empty and the acquisition flat: said, not silent
    import warnings

    with pytest.warns(UserWarning, match=r"no observation is better than it in every objective"):
        hypervolume_reference(Problem(bounds=b, objective_idx=[0, 1], signs=[-1.0, 1.0], constraints=[],
                                      ref_point=[1.0, 0.1]), Y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hypervolume_reference(prob, Y)


@pytest.mark.slow
@pytest.mark.parametrize("name,model", [("qMFKG", "mf_gp"), ("qMFMES", "ar1"), ("max_variance", "mf_gp")])
def test_multi_fidelity_candidates(name, model):
    from loops.registry import build_oracle

    oracle = build_oracle({"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]})
    Xs = sobol_points(oracle.bounds, 8, seed=0)
    X = torch.cat([torch.cat([Xs, torch.zeros(8, 1, dtype=D)], -1), torch.cat([Xs[:4], torch.ones(4, 1, dtype=D)], -1)])
    Y = torch.cat([oracle.evaluate(Xs, 0).Y, oracle.evaluate(Xs[:4], 1).Y])
    prob = Problem(bounds=oracle.bounds, objective_idx=[0], signs=[-1.0], constraints=[], num_fidelities=2,
                   target_fidelity=1, costs=(1.0, 10.0))
    opts = {"restarts": 1} if model == "ar1" else {"maxiter": 50}
    if model == "ar1":
        opts.update(num_fidelities=2, costs=[1.0, 10.0])
    gp = fit_model(model, X, Y, prob.model_bounds, fidelity_dim=2, options=opts)
    cand = propose(name, gp, prob, X, Y, 1, FAST, seed=0)
    assert cand.shape == (1, 3)
    assert cand[0, 2].item() in (0.0, 1.0)
    assert ((cand[0, :2] >= oracle.bounds[0]) & (cand[0, :2] <= oracle.bounds[1])).all()


def test_top_baseline_keeps_the_best_posterior_means():
    """Above MAX_BASELINE observations qLogNEI's baseline is the MAX_BASELINE points with the
    best posterior mean of the (signed) objective; the incumbent is among them."""
    from loops.acquisition import MAX_BASELINE, _top_baseline, _weights

    torch.manual_seed(1)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    n = MAX_BASELINE + 60
    X = torch.rand(n, 2, dtype=D)
    Y = -((X - 0.3) ** 2).sum(-1, keepdim=True)
    for sign in (1.0, -1.0):
        prob = Problem(bounds=b, objective_idx=[0], signs=[sign], constraints=[])
        model = _gp(X, sign * Y, b)
        base = _top_baseline(model, X, _weights(prob, 1), prob)
        assert base.shape == (MAX_BASELINE, 2)
        with torch.no_grad():
            mean = sign * model.posterior(X).mean.squeeze(-1)
        kth = mean.topk(MAX_BASELINE).values[-1]
        kept = (X[:, None, :] == base[None]).all(-1).any(-1)
        assert (mean[kept] >= kth - 1e-12).all() and kept[mean.argmax()]
    small = Problem(bounds=b, objective_idx=[0], signs=[1.0], constraints=[])
    assert torch.equal(_top_baseline(model, X[:50], _weights(small, 1), small), X[:50])


def test_winsorize_clips_only_the_bad_tail():
    from loops.models import winsorize_objective

    g = torch.Generator().manual_seed(0)
    y = torch.cat([torch.rand(40, generator=g, dtype=D), torch.tensor([50.0, 80.0, 300.0], dtype=D)])
    Y = torch.stack([y, torch.arange(43, dtype=D)], -1)
    lo = winsorize_objective(Y, 0, -1.0)  # minimize: large values are bad
    q1, q3 = torch.quantile(y, 0.25, interpolation="lower"), torch.quantile(y, 0.75, interpolation="higher")
    fence = q3 + 1.5 * (q3 - q1)
    assert torch.equal(lo[:, 1], Y[:, 1])  # other columns untouched
    assert torch.equal(lo[y <= fence, 0], y[y <= fence])  # good values unchanged, the best included
    assert torch.allclose(lo[y > fence, 0], fence.expand(int((y > fence).sum())))
    hi = winsorize_objective(-Y, 0, 1.0)  # the same problem as maximization
    assert torch.allclose(hi[:, 0], -lo[:, 0])
    assert torch.equal(winsorize_objective(Y[:3], 0, 1.0), Y[:3])


def test_winsorize_clips_each_fidelity_level_at_its_own_fence():
    """Levels of one multi-fidelity oracle differ in scale and offset: with ``groups`` each level is
    clipped as if it were alone, so rescaling one level (by any a > 0 and offset) moves its clipped
    values by the same map and leaves the other level's untouched; one pooled fence does neither."""
    from loops.models import winsorize_objective

    g = torch.Generator().manual_seed(1)
    y0 = torch.cat([torch.rand(30, generator=g, dtype=D), torch.tensor([9.0, 20.0], dtype=D)])
    y1 = torch.cat([torch.rand(8, generator=g, dtype=D), torch.tensor([6.0], dtype=D)])
    lev = torch.cat([torch.zeros(32), torch.ones(9)]).long()
    Y = torch.cat([y0, y1]).unsqueeze(-1)
    out = winsorize_objective(Y, 0, -1.0, groups=lev)
    assert torch.equal(out[:32], winsorize_objective(Y[:32], 0, -1.0))
    assert torch.equal(out[32:], winsorize_objective(Y[32:], 0, -1.0))
    assert out[:32, 0].max() < 9.0 and out[32:, 0].max() < 6.0  # each level's outliers clipped
    for a, b in ((1e3, -50.0), (1e-3, 7.0)):
        Ys = Y.clone()
        Ys[32:] = a * Y[32:] + b
        per = winsorize_objective(Ys, 0, -1.0, groups=lev)
        torch.testing.assert_close(per[32:], a * out[32:] + b, rtol=1e-12, atol=1e-12)
        assert torch.equal(per[:32], out[:32])
        pooled = winsorize_objective(Ys, 0, -1.0)
        assert not (torch.allclose(pooled[32:], a * out[32:] + b) and torch.equal(pooled[:32], out[:32]))
    with pytest.raises(ValueError, match="one label per row"):
        winsorize_objective(Y, 0, -1.0, groups=lev[:-1])


MF_ORACLE = {"name": "loops.fakes:BraninMultiFidelity", "fidelities": [0.5, 1.0], "costs": [1.0, 10.0]}
MF_CASES = [
    ("optimize", "qLogNEI", MF_ORACLE, {}),
    pytest.param("optimize", "qLogNEHVI", {"name": "loops.fakes:TwoOutputMultiFidelity"}, {"outputs": ["f", "g"]},
                 marks=pytest.mark.slow),
    pytest.param("optimize", "qMFKG", MF_ORACLE, {}, marks=pytest.mark.slow),
    pytest.param("optimize", "qMFMES", MF_ORACLE, {}, marks=pytest.mark.slow),
    ("optimize", "sobol", MF_ORACLE, {}),
    ("learn", "qNIPV", MF_ORACLE, {}),
    ("learn", "max_variance", MF_ORACLE, {}),
    ("learn", "sobol", MF_ORACLE, {}),
]


@pytest.mark.parametrize("mode,name,oracle,objective", MF_CASES)
def test_every_allowed_acquisition_runs_a_multi_fidelity_campaign(tmp_path, mode, name, oracle, objective):
    """Each acquisition the config allows runs a two-level campaign past its first model fit:
    candidates inside the design bounds, at a level of the oracle (the target level for the
    acquisitions without a cost model)."""
    from loops.config import parse_config
    from loops.engine import Campaign
    from loops.registry import build_oracle

    cfg = parse_config({
        "name": name, "mode": mode, "oracle": oracle, "budget": {"calls": 9},
        "initial": {"n": 3, "fidelities": [0, 1]}, "executor": {"kind": "serial"},
        "acquisition": {"name": name, "num_restarts": 1, "raw_samples": 16, "maxiter": 20, "mc_points": 16,
                        "num_fantasies": 4},
        "objective": objective, "learn": {"n_validation": 8}, "tracking": {"enabled": False},
        "run_dir": str(tmp_path),
    })
    camp = Campaign(cfg, run_dir=tmp_path / "run")
    res = camp.run()
    rows = [r for r in camp.store.rows() if r["role"] == "acquisition"]
    assert res.state.calls == 9 and res.state.failed == 0 and len(rows) == 3
    b = build_oracle(oracle).bounds
    for r in rows:
        x = torch.tensor(r["x"], dtype=D)
        assert ((x >= b[0] - 1e-9) & (x <= b[1] + 1e-9)).all()
        assert r["fidelity"] in (0, 1)
        if name in ("qLogNEI", "qLogNEHVI", "qNIPV", "sobol"):
            assert r["fidelity"] == 1
    assert name == "sobol" and mode == "optimize" or res.model is not None
    camp.close()


@pytest.mark.parametrize("name", ["singletask_gp", "mf_gp"])
def test_campaign_models_of_outputs_in_small_units_scale_with_the_unit(name):
    """The campaign's models and ``loops.models.predict`` on outputs in small units (1e-12):
    mean times ``a`` and variance times ``a**2`` of the same fit in O(1) units (BoTorch's
    ``Standardize`` default leaves a spread below 1e-8 unscaled; GPyTorch floors variances
    at 1e-10)."""
    from loops.models import predict

    g = torch.Generator().manual_seed(0)
    X = torch.rand(14, 2, generator=g, dtype=D)
    fid = None
    if name == "mf_gp":
        X[:, 1] = (torch.arange(14) % 2).to(D)
        fid = 1
    Y = (torch.sin(5 * X[:, :1]) + 0.3 * X[:, 1:]).to(D)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    Xt = torch.rand(9, 2, generator=g, dtype=D)
    if fid is not None:
        Xt[:, 1] = 1.0
    out = []
    for a in (1.0, 1e-12):
        m = fit_model(name, X, a * Y, b, fidelity_dim=fid, options={"maxiter": 100})
        mu, var = predict(m, Xt)
        out.append((mu / a, var / a**2))
    torch.testing.assert_close(out[1][0], out[0][0], rtol=0, atol=1e-5)
    # the two fits stop at slightly different points of a flat likelihood (the optimizer's
    # tolerance; 1.8e-3 relative in the variance on one machine): the unit errors this guards
    # against are orders of magnitude
    torch.testing.assert_close(out[1][1], out[0][1], rtol=1e-2, atol=1e-8)


def test_constraint_in_small_units_is_the_same_constraint():
    """qLogNEI's sigmoid temperature of a constraint is relative to the constraint output's
    spread: the same data with the constraint given in units of 1, 1e-6 and 1e-9 (its bound
    scaled alike) give the same proposal, a feasible one. With BoTorch's absolute eta = 1e-3
    the feasibility weights had been 0.5 everywhere below 1e-6 units and the proposal the
    infeasible corner (0, 0)."""
    from loops.acquisition import Problem, propose
    from loops.config import Acquisition
    from loops.models import fit_model

    cfg = Acquisition(num_restarts=4, raw_samples=128, maxiter=100)
    g = torch.Generator().manual_seed(0)
    U = torch.rand(14, 2, generator=g, dtype=torch.float64)
    Y0 = torch.stack([U[:, 0] + U[:, 1], U[:, 0] ** 2 + U[:, 1] ** 2], -1)  # min f s.t. c >= 0.5
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    cands = []
    for cs in (1.0, 1e-6, 1e-9):
        Y = Y0 * torch.tensor([1.0, cs], dtype=torch.float64)
        model = fit_model("singletask_gp", U, Y, b, Yvar=torch.zeros_like(Y))
        prob = Problem(bounds=b, objective_idx=[0], signs=[-1.0], constraints=[(1, 0.5 * cs, None)])
        prob.output_scale = Y.var(0)
        cands.append(propose("qLogNEI", model, prob, U, Y, 1, cfg, seed=3)[0])
    for c in cands:
        assert float(c.pow(2).sum()) >= 0.5 - 1e-3  # feasible
        torch.testing.assert_close(c, cands[0], rtol=0, atol=1e-3)


def test_inputs_and_objectives_in_extreme_units_are_warned_about(tmp_path):
    """An input range of 1e-9 (the acquisition optimizer's absolute gradient tolerance
    then stops it at its starting points) and a multi-objective campaign whose objectives
    have spreads of 1e-9 (qLogNEHVI's smoothing constants are absolute) each get a
    UnitsWarning naming the input or objective (both had run silently)."""
    from loops.config import parse_config
    from loops.engine import Campaign, UnitsWarning
    from oracles.function import FunctionOracle

    def f(x):
        u = (x[0] - 1e-9) * 1e9  # in [0, 1]
        return torch.stack([1e-9 * (u - 0.5) ** 2, 1e-9 * (u - 0.2) ** 2])

    oracle = FunctionOracle(f, bounds=[[1e-9], [2e-9]], names=["x"], outputs=["a", "b"])
    cfg = parse_config({"name": "u", "seed": 0, "oracle": oracle, "budget": {"calls": 6},
                        "initial": {"n": 4}, "objective": {"outputs": ["a", "b"], "minimize": [True, True]},
                        "acquisition": {"name": "qLogNEHVI", "num_restarts": 2, "raw_samples": 32, "maxiter": 20},
                        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    with pytest.warns(UnitsWarning) as rec:
        Campaign(cfg, run_dir=tmp_path / "u").run()
    msgs = " | ".join(str(w.message) for w in rec)
    assert "'x' (range 1e-09)" in msgs
    assert "objective 'a'" in msgs or "objective 'b'" in msgs


def test_with_no_feasible_point_the_campaign_seeks_feasibility_first(tmp_path):
    """Minimize x0 + x1 subject to x0^2 + x1^2 >= 1.9 (feasible only near the (1, 1) corner),
    from an initial design with no feasible point: the first proposal is feasible. qLogNEI's
    incumbent had been an infeasible point and its improvement pulled towards (0, 0): 4 of 5
    seeds ended 20 calls with no feasible point (BoTorch's own advice when all training
    points are infeasible is the probability of feasibility, which is now used until one is)."""
    from loops.config import parse_config
    from loops.engine import Campaign
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(lambda x: torch.stack([x[0] + x[1], x[0] ** 2 + x[1] ** 2]),
                            [[0.0, 0.0], [1.0, 1.0]], names=["a", "b"], outputs=["f", "c"])
    cfg = parse_config({
        "name": "nofeas", "seed": 0, "oracle": oracle, "budget": {"calls": 7}, "initial": {"n": 5},
        "objective": {"outputs": ["f"], "minimize": True, "constraints": [{"output": "c", "lower": 1.9}]},
        "acquisition": {"name": "qLogNEI", "num_restarts": 4, "raw_samples": 64, "maxiter": 50},
        "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "nf")
    camp.run()
    rows = sorted(camp._rows.values(), key=lambda r: r["id"])
    c = [r["y"][1] for r in rows]
    assert max(c[:5]) < 1.9  # the initial design has no feasible point
    assert c[5] >= 1.9 - 1e-6, c


def test_multi_objective_campaign_reports_its_pareto_front(tmp_path):
    """A campaign with two objectives (one minimized, one maximized) and a constraint returns
    the observed Pareto front of its feasible points, equal to a brute-force non-dominated
    filter, and writes it as an artifact (``best`` and ``recommendation`` are None there: it
    had returned nothing at all)."""
    import json

    from loops.config import parse_config
    from loops.engine import Campaign
    from oracles.function import FunctionOracle

    oracle = FunctionOracle(
        lambda x: torch.stack([(x[0] - 0.2) ** 2 + x[1], -((x[0] - 0.8) ** 2) + x[1], x[0] + x[1]]),
        [[0.0, 0.0], [1.0, 1.0]], names=["a", "b"], outputs=["f1", "f2", "g"])
    cfg = parse_config({
        "name": "mo", "seed": 0, "oracle": oracle, "budget": {"calls": 24}, "initial": {"n": 24},
        "objective": {"outputs": ["f1", "f2"], "minimize": [True, False],
                      "constraints": [{"output": "g", "upper": 1.2}]},
        "acquisition": {"name": "sobol"}, "executor": {"kind": "serial"}, "tracking": {"enabled": False}})
    camp = Campaign(cfg, run_dir=tmp_path / "mo")
    res = camp.run()
    assert res.best is None and res.pareto
    rows = [r for r in camp._rows.values() if r["status"] == "done" and r["y"][2] <= 1.2]
    pts = [(r["id"], -r["y"][0], r["y"][1]) for r in rows]  # both as "higher is better"
    brute = {i for i, a, b in pts
             if not any((a2 >= a and b2 >= b) and (a2 > a or b2 > b) for _, a2, b2 in pts)}
    assert {p["id"] for p in res.pareto} == brute
    assert all(set(p["y"]) == {"f1", "f2"} and set(p["x"]) == {"a", "b"} for p in res.pareto)
    saved = json.loads((tmp_path / "mo" / "artifacts" / "pareto_front.json").read_text())
    assert {p["id"] for p in saved} == brute


def test_qnipv_gradient_that_the_optimizer_follows_matches_finite_differences(monkeypatch):
    """qNIPV's fantasy model is built outside BoTorch's propagate_grads and GPyTorch detaches
    its covariance cache from the candidates: on a plain SingleTaskGP its autograd gradient
    had been -0.068 where a central difference gives -0.024 (GPyTorch's default solves, and
    the LOVE predictive variances that propose() uses above FAST_PRED_N points). The gradient
    L-BFGS-B sees inside propose() is checked against a central difference of the same
    acquisition, with more than FAST_PRED_N points."""
    import loops.acquisition as acq_mod

    torch.manual_seed(0)
    b = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=D)
    X = torch.rand(acq_mod.FAST_PRED_N + 10, 2, dtype=D)
    Y = X.sin().sum(-1, keepdim=True)
    prob = Problem(bounds=b, objective_idx=[0], signs=[-1.0], constraints=[])
    seen = {}

    def check(acqf, problem, q, cfg, fixed_levels, sequential=False):
        x = torch.tensor([[[0.3, 0.6]]], dtype=D, requires_grad=True)
        acqf(x).sum().backward()
        h, fd = 1e-5, []
        for i in range(2):
            e = torch.zeros(1, 1, 2, dtype=D)
            e[..., i] = h
            with torch.no_grad():
                fd.append(((acqf(x + e) - acqf(x - e)) / (2 * h)).item())
        seen["grad"], seen["fd"] = x.grad.flatten().tolist(), fd
        return x.detach().reshape(1, 2)

    monkeypatch.setattr(acq_mod, "_optimize", check)
    propose("qNIPV", SingleTaskGP(X, Y), prob, X, Y, 1, FAST, seed=0)
    assert seen["grad"] == pytest.approx(seen["fd"], rel=1e-5, abs=1e-9)
