"""The adaptive switch, FE² with a homogeneous RVE, on-the-fly learning with a GP and the tolerance derivation."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from loops.fe2.mesh import plate_with_hole
from loops.fe2.providers import NeoHookean, OracleProvider, sobol_gradients
from loops.fe2.solver import DirichletBC, MacroSolver
from loops.fe2.switch import AdaptiveSwitch, ConditionUpdater, tolerance_for_reaction
from oracles.material import MaterialResponse
from surrogates.dataset import Dataset
from surrogates.gp import GPSurrogate

LAW = NeoHookean.from_young(10.0, 0.3)
I2 = torch.eye(2, dtype=torch.float64)


def fit_gp(F, law=LAW):
    """A GPSurrogate of H -> P on the law's exact answers at F (a short fit)."""
    n = F.shape[0]
    Y = law.material_response(F).P.reshape(n, 4)
    ds = Dataset(X=(F - I2).reshape(n, 4), Y=Y, Yvar=torch.zeros_like(Y))
    return GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=60)


class BiasedSurrogate:
    """A stand-in surrogate: the law plus an error growing like |H|^2, with a calibrated variance.

    ``P_s = P(F) + c |H|^2 M`` with a fixed ``2 x 2`` matrix ``M``; its tangent is
    exact for that formula and its variance is the true mean squared error of
    the 4 stress components (what a perfectly calibrated surrogate reports).
    """

    def __init__(self, c=2.0, M=((1.0, 0.3), (-0.2, 0.5))):
        self.c = c
        self.M = torch.tensor(M, dtype=torch.float64)
        self.updates = []

    def material_response(self, F):
        r = LAW.material_response(F)
        H = F - I2
        h2 = H.pow(2).sum((-1, -2))
        dP = self.c * h2[:, None, None] * self.M
        dA = 2 * self.c * torch.einsum("ij,nkl->nijkl", self.M, H)
        var = dP.pow(2).mean((-1, -2))
        return MaterialResponse(r.P + dP, r.tangent + dA, var)

    def update(self, F, P):
        self.updates.append(F.shape[0])


def _plate(material, stretch=0.12, n=4):
    mesh = plate_with_hole(n_theta=n, n_radial=n, grading=2.0)
    bcs = [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, stretch)]
    return MacroSolver(mesh, material, bcs)


def test_tolerance_zero_is_full_fe2_and_infinite_is_surrogate_only():
    sur = BiasedSurrogate()
    full = _plate(LAW).solve(n_steps=3)
    only = _plate(sur).solve(n_steps=3)
    sw0 = AdaptiveSwitch(sur, LAW, 0.0)
    r0 = _plate(sw0).solve(n_steps=3)
    swi = AdaptiveSwitch(sur, LAW, float("inf"), learn=False)
    ri = _plate(swi).solve(n_steps=3)
    assert sw0.n_surrogate == 0 and sw0.n_oracle > 0
    assert swi.n_oracle == 0 and swi.n_surrogate > 0
    np.testing.assert_allclose(r0.final.u, full.final.u, rtol=0, atol=1e-13)
    np.testing.assert_allclose(ri.final.u, only.final.u, rtol=0, atol=1e-13)
    # the stand-in is wrong enough that the two limits differ visibly
    R = [r.final.reactions["right"][0] for r in (full, only)]
    assert abs(R[1] - R[0]) > 1e-3 * abs(R[0])
    # per-step counts add up to every Gauss-point evaluation
    n_evals = r0.n_material_calls * r0.n_gauss
    assert sw0.n_oracle == n_evals and sw0.oracle_calls.sum() == n_evals


def test_intermediate_tolerance_routes_large_strains_to_the_oracle():
    sur = BiasedSurrogate()
    only = _plate(sur).solve(n_steps=3)
    tol = float(np.median(sur.material_response(torch.as_tensor(only.final.F)).variance))
    sw = AdaptiveSwitch(sur, LAW, tol)
    s = _plate(sw)
    res = s.solve(n_steps=3)
    mask = res.final.provider["oracle_mask"]
    assert 0 < mask.sum() < s.n_gauss
    # where the oracle was used the surrogate was unsure at the final state, and vice versa
    var = sur.material_response(torch.as_tensor(res.final.F)).variance.numpy()
    assert np.all(var[~mask] < tol)
    # the oracle points are the most strained ones (near the hole)
    h = np.linalg.norm(res.final.F - np.eye(2), axis=(1, 2))
    assert h[mask].mean() > h[~mask].mean()
    # learning: only accepted steps' final oracle answers, capped by max_learn
    assert len(sur.updates) >= 1 and max(sur.updates) <= sw.max_learn
    log = sw.step_log
    assert [r["load_factor"] for r in log] == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert sum(r["n_oracle"] + r["n_surrogate"] for r in log) == sw.n_oracle + sw.n_surrogate


def test_tolerance_from_reaction_target_meets_the_target():
    """The derived tolerance keeps the reaction error below the target (calibrated surrogate)."""
    sur = BiasedSurrogate(c=5.0)
    full = _plate(LAW, stretch=0.15).solve(n_steps=3)
    R_full = full.final.reactions["right"][0]
    only = _plate(sur, stretch=0.15).solve(n_steps=3)
    err_only = abs(only.final.reactions["right"][0] - R_full) / abs(R_full)
    target = err_only / 10
    # influence from the linear tangent at the undeformed state, R from the surrogate alone
    s = _plate(sur, stretch=0.15)
    A0 = sur.material_response(
        torch.as_tensor(np.broadcast_to(np.eye(2), (s.n_gauss, 2, 2)).copy())
    ).tangent
    infl = s.reaction_influence(np.zeros(s.basis.N), A0.numpy(), "right", 0)
    tol = tolerance_for_reaction(infl, only.final.reactions["right"][0], target)
    sw = AdaptiveSwitch(sur, LAW, tol, learn=False)
    res = _plate(sw, stretch=0.15).solve(n_steps=3)
    err = abs(res.final.reactions["right"][0] - R_full) / abs(R_full)
    assert err <= target
    assert sw.n_surrogate > 0  # the target did not force full FE²
    with pytest.raises(ValueError, match="rel_error"):
        tolerance_for_reaction(infl, 1.0, -0.1)


def test_reaction_influence_predicts_the_first_order_change():
    """dR = sum_g w_g dP_g : grad z_g for a small stress perturbation (adjoint check)."""
    s = _plate(LAW, stretch=0.05)
    base = s.solve(n_steps=1)

    class Shifted:
        def __init__(self, eps):
            self.eps = eps

        def material_response(self, F):
            r = LAW.material_response(F)
            return r._replace(P=r.P + self.eps * torch.tensor([[1.0, 0.0], [0.0, 0.0]]))

    eps = 1e-6
    pert = _plate(Shifted(eps), stretch=0.05).solve(n_steps=1)
    dR = pert.final.reactions["right"][0] - base.final.reactions["right"][0]
    A = LAW.material_response(torch.as_tensor(base.final.F)).tangent.numpy()
    infl = s.reaction_influence(base.final.u, A, "right", 0)
    # bound: |dR| <= sum_g w_g |grad z|_F |dP|_F with |dP|_F = eps
    assert abs(dR) <= eps * infl.sum() * (1 + 1e-6)
    assert abs(dR) > 0.05 * eps * infl.sum()  # and the bound is not vacuous


def test_fe2_with_homogeneous_rve_equals_single_scale():
    from oracles.rve import laws
    from oracles.rve import oracle as rve

    oracle = rve.RVEOracle(
        [laws.NeoHookean(E=10.0, nu=0.3)], np.zeros((5, 5), dtype=np.int64), grid=(5, 5)
    )
    with ThreadPoolExecutor(2) as ex:
        provider = OracleProvider(oracle, executor=ex, chunk_size=16)
        fe2 = _plate(provider, n=2).solve(n_steps=2)
    single = _plate(LAW, n=2).solve(n_steps=2)
    scale = np.abs(single.final.u).max()
    assert np.abs(fe2.final.u - single.final.u).max() < 1e-9 * scale
    R1, R2 = (r.final.reactions["right"][0] for r in (fe2, single))
    assert abs(R1 - R2) < 1e-9 * abs(R2)
    assert provider.n_evaluations == fe2.n_material_calls * fe2.n_gauss


def test_oracle_provider_chunks_in_a_process_pool_match_serial():
    from concurrent.futures import ProcessPoolExecutor

    F = sobol_gradients(37, 0.1, seed=1)
    serial = OracleProvider(LAW).material_response(F)
    with ProcessPoolExecutor(2) as ex:
        par = OracleProvider(LAW, executor=ex, chunk_size=5).material_response(F)
    assert torch.equal(serial.P, par.P) and torch.equal(serial.tangent, par.tangent)


def test_gp_learns_between_steps_by_conditioning():
    F = sobol_gradients(24, 0.12, seed=0)
    gp = fit_gp(F)
    # interpolates its training data, and is unsure far away
    assert (gp.material_response(F).P - LAW.material_response(F).P).abs().max() < 1e-3
    far = I2 + 0.5 * torch.ones(1, 2, 2, dtype=torch.float64)
    assert gp.material_response(far).variance[0] > 100 * gp.material_response(F).variance.max()
    # an update at a new point makes the GP sure there, hyperparameters kept
    Fn = I2[None] + torch.tensor([[[0.2, 0.05], [0.0, -0.1]]], dtype=torch.float64)
    v0 = gp.material_response(Fn).variance[0]
    r = LAW.material_response(Fn)
    new = ConditionUpdater()(gp, Fn, r.P, r.tangent)
    assert new.train_dataset.n == 25 and gp.train_dataset.n == 24
    assert torch.equal(new.covar_module.base_kernel.lengthscale, gp.covar_module.base_kernel.lengthscale)
    assert new.material_response(Fn).variance[0] < 1e-2 * v0
    # every refit_every-th update refits the hyperparameters on all the data
    up = ConditionUpdater(refit_every=2)
    g1 = up(gp, Fn, r.P, r.tangent)
    g2 = up(g1, Fn * 1.01, LAW.material_response(Fn * 1.01).P, r.tangent)
    assert g2.train_dataset.n == 26 and g2.prediction_strategy is None
    with pytest.raises(ValueError, match="refit_every"):
        ConditionUpdater(-1)


def test_switch_rejects_bad_arguments():
    with pytest.raises(ValueError, match="tolerance"):
        AdaptiveSwitch(BiasedSurrogate(), LAW, -1.0)
    with pytest.raises(TypeError, match="update"):
        AdaptiveSwitch(LAW, LAW, 1.0)  # learn=True needs an updater
    with pytest.raises(TypeError, match="material_response"):
        AdaptiveSwitch(BiasedSurrogate(), object(), 1.0)
    sw = AdaptiveSwitch(LAW, LAW, 1.0, learn=False)
    with pytest.raises(TypeError, match="variance"):
        sw.material_response(I2[None])


@pytest.mark.slow  # starting a Dask cluster takes seconds
def test_oracle_provider_on_a_dask_executor_matches_serial():
    distributed = pytest.importorskip("distributed")
    F = sobol_gradients(23, 0.1, seed=2)
    serial = OracleProvider(LAW).material_response(F)
    with distributed.Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as client:
        par = OracleProvider(
            LAW, executor=client.get_executor(pure=False), chunk_size=6
        ).material_response(F)
    assert torch.equal(serial.P, par.P) and torch.equal(serial.tangent, par.tangent)


def test_select_batch_brings_every_point_below_the_tolerance():
    """The greedy batch is chosen from the posterior covariance alone; after the
    oracle's answers at those points are added, every point is below the tolerance,
    and no smaller prefix of the batch would have sufficed."""
    F = sobol_gradients(20, 0.05, seed=0)
    gp = fit_gp(F)
    Ft = sobol_gradients(40, 0.15, seed=3)
    var = gp.material_response(Ft).variance
    tol = float(var.median())
    pick = gp.select_batch(Ft, tol, max_points=40)
    assert 0 < pick.numel() < 40 and pick.unique().numel() == pick.numel()
    up = ConditionUpdater()
    g2 = up(gp, Ft[pick], LAW.material_response(Ft[pick]).P, None)
    assert (g2.material_response(Ft).variance < tol).all()
    g3 = up(gp, Ft[pick[:-1]], LAW.material_response(Ft[pick[:-1]]).P, None)
    assert (g3.material_response(Ft).variance >= tol).any()
    # nothing to do below the tolerance; min_points pads the batch
    assert gp.select_batch(Ft, float(var.max()) * 2).numel() == 0
    assert gp.select_batch(Ft, tol, min_points=pick.numel() + 3).numel() == pick.numel() + 3


def test_on_the_fly_switch_meets_the_tolerance_with_few_oracle_calls():
    """On-the-fly learning: each provider call ends with every surrogate point below the
    tolerance, answers computed by the oracle where it was asked, and the result matches
    full FE² to the accuracy the tolerance implies."""
    F = sobol_gradients(24, 0.04, seed=0)
    gp = fit_gp(F)
    full = _plate(LAW).solve(n_steps=3)
    sw = AdaptiveSwitch(gp, LAW, 1e-5, learn=True, max_learn=32)
    assert sw.on_the_fly
    res = _plate(sw).solve(n_steps=3)
    assert sw.n_oracle > 0 and sw.n_surrogate > 0
    # batched calls, not one per point
    assert sw.n_oracle_calls < sw.n_oracle
    R, R0 = res.final.reactions["right"][0], full.final.reactions["right"][0]
    assert abs(R - R0) / abs(R0) < 1e-3
    # learning happens at the first call of each step only (Newton then sees a fixed law)
    assert all(r["accepted"] for r in sw.step_log) and len(sw.step_log) == 3
    assert sw.surrogate is not gp and sw.surrogate.train_dataset.n == 24 + sum(r["n_learned"] for r in sw.step_log)
    off = AdaptiveSwitch(gp, LAW, 1e-5, learn=True, on_the_fly=False, max_learn=32)
    _plate(off).solve(n_steps=3)
    assert not off.on_the_fly
    with pytest.raises(TypeError, match="on_the_fly"):
        AdaptiveSwitch(BiasedSurrogate(), LAW, 1.0, on_the_fly=True)


def test_gp_variance_is_accurate_on_an_ill_conditioned_fit():
    """A near-linear law gives long lengthscales and a large outputscale (K
    ill-conditioned). The latent variance at a training point is at most the
    noise variance, and the closed-form variance matches the same GP's
    posterior in GPyTorch."""
    import gpytorch

    from surrogates.gp import _GPCommon

    law = NeoHookean.from_young(1.0, 0.3)
    F = sobol_gradients(48, 0.03, seed=0)
    gp = fit_gp(F, law)
    var_tr = gp.material_response(F).variance
    std2 = gp.outcome_transform.stdvs.reshape(-1, 1).pow(2)
    bound = (gp.likelihood.noise.detach().reshape(4, -1).clamp_min(1e-6) * std2).mean(0).max()
    assert (var_tr <= bound * 1.01).all(), (var_tr.max(), bound)
    Ft = sobol_gradients(50, 0.03, seed=4)
    got = gp.material_response(Ft).variance
    # GPyTorch clamps variances at 1e-10 by default: these are of that size
    with gpytorch.settings.min_variance(double_value=1e-30):
        want = _GPCommon._mean_jac_var(gp, (Ft - I2).reshape(-1, 4))[2].mean(-1)
    assert torch.allclose(got, want, rtol=1e-6, atol=float(bound) * 1e-3), (got[:4], want[:4])


class CountingOracle:
    """The exact law, recording the number of points of every call; ``workers`` as an OracleProvider says it."""

    def __init__(self, workers):
        self.workers = workers
        self.sizes = []

    def material_response(self, F):
        self.sizes.append(F.shape[0])
        return LAW.material_response(F)


def test_on_the_fly_batches_fill_the_oracle_workers():
    """More points in one parallel oracle call cost no extra time: an on-the-fly
    batch holds at least the oracle's worker count (the default ``min_batch``)."""
    Ftr = sobol_gradients(24, 0.04, seed=0)
    gp = fit_gp(Ftr)
    # the training states (certain) and one far state (the only uncertain one)
    far = I2[None] + torch.tensor([[[0.06, 0.0], [0.01, -0.05]]], dtype=torch.float64)
    F = torch.cat([Ftr, far])
    var = gp.material_response(F).variance
    tol = float(var[:-1].max()) * 10
    assert var[-1] > tol
    sizes = {}
    for w in (1, 3):
        oracle = CountingOracle(w)
        sw = AdaptiveSwitch(gp, oracle, tol, learn=True, max_learn=32)
        assert sw.min_batch == w
        sw.begin_step(1.0)
        r = sw.material_response(F)
        sizes[w] = oracle.sizes
        assert (r.variance < tol).all()
    assert sizes == {1: [1], 3: [3]}
    assert AdaptiveSwitch(gp, CountingOracle(3), tol, min_batch=2).min_batch == 2
    assert OracleProvider(LAW).workers == 1
    with ThreadPoolExecutor(4) as ex:
        assert OracleProvider(LAW, executor=ex).workers == 4


def test_tolerance_inf_from_a_config_and_a_bad_tolerance_named():
    """``tolerance = inf`` (always the surrogate, as AdaptiveSwitch documents) is accepted from
    a config file (it had been refused as not finite; NaN and negative values still are), and
    a tolerance that is not a number is refused naming ``tolerance`` (it had been a bare
    ``could not convert string to float``)."""
    import copy
    import json
    import tomllib
    from pathlib import Path

    from loops.config import ConfigError
    from loops.fe2.config import parse_config

    base = tomllib.loads((Path(__file__).parents[3] / "experiments/configs/fe2_plate_hole.toml").read_text())
    for tol, ok in ((float("inf"), True), (float("nan"), False), (-1.0, False), (1e-6, True)):
        d = copy.deepcopy(base)
        d["material"]["adaptive"].pop("target_rel_error", None)
        d["material"]["adaptive"]["tolerance"] = tol
        if ok:
            cfg = parse_config(d, "x.toml")
            assert cfg.material.adaptive.tolerance == tol
            # the run's config.json (strict JSON) reads back to the same config (inf had been
            # written as null, and config.json then named neither tolerance nor target)
            back = parse_config(json.loads(cfg.model_dump_json()), "config.json")
            assert back.material.adaptive.tolerance == tol and back == cfg
        else:
            with pytest.raises(ConfigError, match="tolerance"):
                parse_config(d, "x.toml")
    for bad in ("abc", None, True):
        with pytest.raises(ValueError, match="tolerance must be a variance"):
            AdaptiveSwitch._check_tol(bad)
