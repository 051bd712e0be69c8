"""Nested Monte Carlo: the variance split against a known decomposition, batched solves
against single solves, propagation through FE² against the law the surrogate learned."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats as st
import torch

from loops.fe2.mesh import box, rectangle
from loops.fe2.providers import NeoHookean
from loops.fe2.solver import DirichletBC, MacroSolver
from loops.uq.propagate import (
    Displacement,
    MaxStress,
    Reaction,
    propagate,
    sample_inputs,
    split_histogram,
    total_variance_split,
)
from loops.uq.samples import EnsembleMembers
from tests.loops.uq.conftest import LAW


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_recovers_a_known_decomposition(seed):
    """Q = 2 theta + e with theta ~ N(0, 1), e ~ N(0, 0.5^2): aleatory 4, epistemic 0.25."""
    rng = np.random.default_rng(seed)
    n_out, n_in = 200, 20
    theta = rng.standard_normal(n_out)
    Q = 2 * theta[:, None] + 0.5 * rng.standard_normal((n_out, n_in))
    s = total_variance_split(Q)
    assert abs(s.epistemic - 0.25) < 4 * s.epistemic_se
    assert abs(s.aleatory - 4.0) < 4 * s.aleatory_se
    assert abs(s.mean) < 4 * s.mean_se
    # the standard errors are of the right size (not inflated to pass): binomial-free checks
    assert 0.3 < s.aleatory_se / (4.0 * np.sqrt(2 / n_out)) < 3
    assert s.quantiles[0.025] < s.quantiles[0.5] < s.quantiles[0.975]
    assert s.total_variance == pytest.approx(s.epistemic + s.aleatory)


def test_split_standard_errors_with_two_outer_draws():
    """With n_outer = 2 the stated squared standard errors are unbiased for the sampling
    variances of the mean and the two terms, measured over 4000 replicate nested samples
    (Q = theta + e, theta ~ N(1, 2), e ~ N(0, 0.5), 2 x 30)."""
    rng = np.random.default_rng(0)
    reps = []
    for _ in range(4000):
        Q = rng.normal(1.0, np.sqrt(2.0), 2)[:, None] + rng.normal(0.0, np.sqrt(0.5), (2, 30))
        s = total_variance_split(Q)
        reps.append([s.mean, s.mean_se, s.epistemic, s.epistemic_se, s.aleatory, s.aleatory_se])
    m, m_se, ve, ve_se, va, va_se = np.array(reps).T
    assert np.isfinite(va_se).all()
    # the spread of the pooled mean is that of the two outer draws' means (sd ~ 1), not of
    # the 60 pooled values as if independent (sd ~ 0.2)
    assert (m_se**2).mean() / m.var() == pytest.approx(1.0, abs=0.1)
    assert (ve_se**2).mean() / ve.var() == pytest.approx(1.0, abs=0.15)
    assert (va_se**2).mean() / va.var() == pytest.approx(1.0, abs=0.2)


def test_split_leaves_failed_runs_out():
    Q = np.arange(12.0).reshape(3, 4)
    Q[1, 2] = np.nan
    s = total_variance_split(Q)
    assert s.n_failed == 1 and np.isfinite(s.epistemic)
    with pytest.raises(ValueError, match="n_outer x n_inner"):
        total_variance_split(np.ones(4))


def test_a_split_the_sample_cannot_estimate_is_nan_and_a_failed_draw_is_left_out():
    """One finite inner value per outer draw leaves the spread within a draw unknown: the two
    terms are NaN (the epistemic term had been reported as 0 with a standard error of 0); their
    sum is still the pooled variance's business. An outer draw whose every run failed is left
    out: the mean's standard error is that of the other draws (it had divided by all of them,
    with numpy's 'Mean of empty slice' warning)."""
    import warnings

    one = np.array([[1.0, np.nan], [2.0, np.nan], [4.0, np.nan]])
    s = total_variance_split(one)
    assert np.isnan(s.epistemic) and np.isnan(s.aleatory) and s.std == pytest.approx(np.std([1, 2, 4], ddof=1))
    Q = np.array([[1.0, 2.0], [3.0, 5.0], [np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        s = total_variance_split(Q)
    means = np.array([1.5, 4.0])
    assert s.mean_se == pytest.approx(np.std(means, ddof=1) / np.sqrt(2))
    ref = total_variance_split(Q[:2])
    assert (s.epistemic, s.aleatory) == pytest.approx((ref.epistemic, ref.aleatory))
    assert s.n_outer == 3 and s.n_failed == 2


def test_split_is_unbiased_when_many_inner_runs_failed():
    """Q_ij = theta_i + 3 e_ij (aleatory 1, epistemic 9) with 60 % of three of the four inner runs
    failed: the row means' within-row noise is removed with each row's own count (it had been
    removed with the full count, so the aleatory term came out at 3.7 +- 0.4). Over 200 replicate
    samples the mean of each term is within 4 standard errors of the exact one."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(200):
        Q = rng.normal(size=(400, 1)) + 3.0 * rng.normal(size=(400, 4))
        Q[:, 1:][rng.random((400, 3)) < 0.6] = np.nan
        s = total_variance_split(Q)
        out.append([s.aleatory, s.epistemic])
    out = np.array(out)
    mean, se = out.mean(0), out.std(0, ddof=1) / np.sqrt(len(out))
    assert abs(mean[0] - 1.0) < 4 * se[0], (mean, se)
    assert abs(mean[1] - 9.0) < 4 * se[1], (mean, se)


def _bar(material, three_d=False):
    if three_d:
        bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, 0.05)]
        return MacroSolver(box((1.0, 0.5, 0.5), (2, 1, 1), "hex1"), material, bcs)
    bcs = [DirichletBC("left", 0), DirichletBC("left", 1), DirichletBC("right", 0, 0.05)]
    return MacroSolver(rectangle(1.0, 1.0, 3, 3), material, bcs)


@pytest.mark.parametrize(("three_d", "dense"), [(False, True), (True, True), (False, False)])
def test_batched_solve_equals_one_solve_per_member(three_d, dense, monkeypatch):
    if not dense:  # the sparse (CSC, one factorization per member) Newton system
        monkeypatch.setattr(MacroSolver, "DENSE_MAX_DOFS", 0)
    laws = [NeoHookean.from_young(E, nu) for E, nu in ((5.0, 0.3), (10.0, 0.2), (20.0, 0.35))]
    ens = EnsembleMembers(laws)
    s = _bar(laws[0], three_d)
    assert s._dense == dense
    batch = s.solve_batch(ens.batch_response, 3, n_steps=2)
    for law, rb in zip(laws, batch, strict=True):
        r1 = _bar(law, three_d).solve(n_steps=2)
        np.testing.assert_allclose(rb.final.u, r1.final.u, rtol=0, atol=1e-12)
        np.testing.assert_allclose(rb.reaction("right", 0), r1.reaction("right", 0), rtol=1e-10)
    # reactions scale with the modulus (the members really differ)
    R = [r.final.reactions["right"][0] for r in batch]
    assert R[0] < R[1] < R[2]


def test_dense_batched_solve_in_chunks_gives_the_same_bits(monkeypatch):
    """Dense Newton systems of a large batch are solved a block of members at a time (1000 draws
    at 400 free dofs had held 1.3 GB at once); each member's answer is the same to the bit."""
    laws = [NeoHookean.from_young(E, nu) for E, nu in ((5.0, 0.3), (10.0, 0.2), (20.0, 0.35))]
    whole = _bar(laws[0]).solve_batch(EnsembleMembers(laws).batch_response, 3, n_steps=2)
    s = _bar(laws[0])
    nf = s.free.size
    monkeypatch.setattr(MacroSolver, "DENSE_BATCH_BYTES", 8 * nf * nf)  # one member per block
    calls = []
    solve = np.linalg.solve
    monkeypatch.setattr(np.linalg, "solve", lambda K, b: calls.append(K.shape[0]) or solve(K, b))
    chunked = s.solve_batch(EnsembleMembers(laws).batch_response, 3, n_steps=2)
    assert calls and set(calls) == {1}
    for a, b in zip(whole, chunked, strict=True):
        assert np.array_equal(a.final.u, b.final.u)


def test_propagation_brackets_the_law_and_splits_the_variance(descriptor_gp, tmp_path):
    """The GP learned P = theta P_NH(F): the propagated 95 % band of each draw's reaction
    contains the law's reaction, and the aleatory part matches Var(theta) R_NH^2."""
    R_nh = _bar(LAW).solve(n_steps=2).final.reactions["right"][0]
    theta = sample_inputs({"theta": st.uniform(1.2, 0.6)}, 5, seed=4)
    qois = {"R": Reaction("right", 0), "smax": MaxStress(), "uy": Displacement((1.0, 0.5), 1)}
    prop = propagate(
        _bar, descriptor_gp, qois, theta, n_inner=30, seed=0, solve_kwargs={"n_steps": 2}
    )
    assert not prop.failures
    Q = prop.Q["R"]
    lo, hi = np.quantile(Q, [0.005, 0.995], axis=1)
    truth = theta[:, 0] * R_nh  # P scales with theta, so does the reaction
    assert np.all((lo < truth) & (truth < hi)), (lo, truth, hi)
    s = prop.splits["R"]
    assert s.epistemic > 0 and s.n_outer == 5 and s.n_inner == 30
    # aleatory part: Var over the 5 draws of theta R_nh (the sample variance of the truth)
    va = np.var(truth, ddof=1)
    assert abs(s.aleatory - va) < 4 * s.aleatory_se + 0.1 * va
    # the posterior-mean runs sit inside their draws' sample clouds
    assert np.all(np.abs(prop.mean_Q["R"] - Q.mean(1)) < 4 * Q.std(1) / np.sqrt(30) + 1e-9)
    path = split_histogram(prop, "R", tmp_path / "R.png")
    assert path.stat().st_size > 1000


def test_propagation_without_descriptors_is_epistemic_only():
    """A GP of H alone: one outer draw, no aleatory part."""
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    H = 0.1 * (2 * torch.rand(20, 4, generator=g, dtype=torch.float64) - 1)
    P = LAW.material_response(torch.eye(2, dtype=torch.float64) + H.reshape(-1, 2, 2)).P
    gp = GPSurrogate.from_dataset(Dataset(H, P.reshape(-1, 4)), n_restarts=1, maxiter=60)
    prop = propagate(
        _bar, gp, {"R": Reaction("right", 0)}, None, n_inner=30, solve_kwargs={"n_steps": 1}
    )
    s = prop.splits["R"]
    assert s.n_outer == 1 and s.aleatory == 0.0 and s.epistemic > 0
    R_nh = _bar(LAW).solve(n_steps=1).final.reactions["right"][0]
    assert s.quantiles[0.025] - 3 * s.std < R_nh < s.quantiles[0.975] + 3 * s.std
    with pytest.raises(ValueError, match="columns"):
        propagate(_bar, gp, {"R": Reaction("right", 0)}, np.ones((2, 1)), n_inner=2)


def test_qois_read_the_solved_state():
    s = _bar(LAW)
    r = s.solve(n_steps=1)
    # (1, 1/3) is a node of the 3 x 3 mesh: the interpolated displacement is the nodal value
    X = s.basis.doflocs
    dof = np.flatnonzero((np.abs(X[0] - 1.0) < 1e-12) & (np.abs(X[1] - 1 / 3) < 1e-12))
    uy = r.final.u[dof[1]]  # the y dof of that node (x first, then y)
    assert Displacement((1.0, 1 / 3), 1)(s, r) == pytest.approx(uy, abs=1e-14)
    assert Displacement((1.0, 1 / 3), 0)(s, r) == pytest.approx(0.05, abs=1e-14)
    assert Reaction("right", 0)(s, r) == r.final.reactions["right"][0]
    P = r.final.P.reshape(s.n_gauss, 4)
    assert MaxStress()(s, r) == pytest.approx(np.linalg.norm(P, axis=1).max())
    with pytest.raises(ValueError, match="coordinates"):
        Displacement((1.0, 0.5, 0.0), 0)(s, r)


@pytest.mark.slow
def test_propagation_in_3d_brackets_the_law():
    """A 9 -> 9 GP of the 3D Neo-Hookean law on 64 points; a clamped bar of hexahedra."""
    from loops.fe2.providers import sobol_gradients
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    F = sobol_gradients(64, 0.04, seed=0, k=3)
    H = (F - torch.eye(3, dtype=torch.float64)).reshape(-1, 9)
    gp = GPSurrogate.from_dataset(
        Dataset(H, LAW.material_response(F).P.reshape(-1, 9)), n_restarts=1
    )

    def bar(m):
        bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, 0.03)]
        return MacroSolver(box((2.0, 1.0, 1.0), (2, 1, 1)), m, bcs)

    prop = propagate(
        bar, gp, {"R": Reaction("right", 0)}, None, n_inner=30, solve_kwargs={"n_steps": 1}
    )
    s = prop.splits["R"]
    R = bar(LAW).solve(n_steps=1).final.reactions["right"][0]
    assert not prop.failures and s.epistemic > 0
    assert s.quantiles[0.025] < R < s.quantiles[0.975]


@pytest.mark.parametrize("spread", [0.0, 3.7e-18])
def test_the_histogram_of_a_quantity_without_spread_is_drawn(tmp_path, spread):
    """A QoI that is one value to round-off (a displacement where it is prescribed: 0.02 with a
    spread of 3.7e-18) has no finite-size bins over its range; its histogram is drawn around the
    value (it had ended the FE2 run's uncertainty stage with numpy's 'Too many bins')."""
    from types import SimpleNamespace

    Q = 0.02 + spread * np.random.default_rng(0).standard_normal((3, 10))
    split = SimpleNamespace(mean=float(Q.mean()), epistemic=0.0, aleatory=0.0, quantiles={0.025: 0.02, 0.975: 0.02},
                            n_outer=3, n_inner=10)
    prop = SimpleNamespace(Q={"ux": Q}, splits={"ux": split})
    path = split_histogram(prop, "ux", tmp_path / "ux.png")
    assert path.stat().st_size > 1000
