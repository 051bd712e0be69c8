"""Uncertainty propagation probed as a new user would: the epistemic spread against the GP's own
posterior, bad inputs named before any solve, and a stopped Sobol stage keeping the propagation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats as st
import torch

from loops.config import ConfigError
from loops.fe2.mesh import rectangle
from loops.fe2.solver import DirichletBC, MacroSolver
from loops.uq.propagate import (
    Displacement,
    Reaction,
    propagate,
    sample_inputs,
    total_variance_split,
)
from loops.uq.sobol import sobol_indices
from tests.loops.uq.conftest import LAW

HB = np.array([[0.06, 0.02], [-0.01, -0.03]])


def _patch(material):
    """One 1 x 0.5 element with u = HB X on its whole boundary: every Gauss point at F = I + HB."""
    bcs = [DirichletBC(b, c, lambda X, c=c: (HB @ X)[c]) for b in ("left", "right", "bottom", "top") for c in (0, 1)]
    return MacroSolver(rectangle(1.0, 0.5, 1, 1), material, bcs)


def _bar(material):
    bcs = [DirichletBC("left", 0), DirichletBC("left", 1), DirichletBC("right", 0, 0.05)]
    return MacroSolver(rectangle(1.0, 1.0, 2, 2), material, bcs)


def test_epistemic_spread_of_a_homogeneous_patch_is_the_gp_posterior():
    """With F = I + HB at every Gauss point the reaction on the right edge is 0.5 P_00(HB), so
    its function-sample mean and variance are 0.5 and 0.25 times the GP's posterior mean and
    variance of P_00 there (BoTorch's posterior, computed independently of the samplers)."""
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    H = 0.1 * (2 * torch.rand(12, 4, generator=g, dtype=torch.float64) - 1)
    P = LAW.material_response(torch.eye(2, dtype=torch.float64) + H.reshape(-1, 2, 2)).P
    gp = GPSurrogate.from_dataset(Dataset(H, P.reshape(-1, 4)), n_restarts=1, maxiter=60)
    S = 800
    prop = propagate(_patch, gp, {"R": Reaction("right", 0)}, None, n_inner=S, solve_kwargs={"n_steps": 1})
    Q = prop.Q["R"][0]
    with torch.no_grad():
        post = gp.posterior(torch.as_tensor(HB.reshape(1, 4)))
    mu, var = float(post.mean.reshape(-1)[0]), float(post.variance.reshape(-1)[0])
    assert abs(Q.mean() - 0.5 * mu) < 4 * Q.std() / np.sqrt(S)
    assert abs(Q.var(ddof=1) / (0.25 * var) - 1) < 4 * np.sqrt(2 / (S - 1))
    assert prop.mean_Q["R"][0] == pytest.approx(0.5 * mu, rel=1e-8)


class NoSolver:
    """A ``make_solver`` that fails the test if any solver is built."""

    def __call__(self, material):
        pytest.fail("a solver was built for bad input")


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(theta=np.array([[1.5], [np.nan]])), r"theta must have at least one row, all finite.*non-finite rows \[1\]"),
        (dict(theta=np.array([[np.inf]])), r"all finite"),
        (dict(theta=[["a"]]), r"theta must be an n_outer x p array of numbers"),
        (dict(theta=np.zeros((0, 1))), r"at least one row"),
        (dict(theta=np.array([[1.5]]), n_inner=1), r"one outer draw needs n_inner >= 2"),
        (dict(theta=np.array([[1.5]]), n_inner=2.5), r"n_inner must be an integer >= 1, got 2.5"),
        (dict(theta=np.array([[1.5]]), n_anchors=0), r"n_anchors must be an integer >= 1, got 0"),
        (dict(theta=np.array([[1.5]]), qois={}), r"qois is empty"),
    ],
)
def test_bad_propagation_input_is_named_before_any_solve(descriptor_gp, kw, match):
    """Before: a NaN draw ran 8 cut-backs and was filed as 'posterior-mean run failed'; n_inner = 1
    with one draw failed only after every solve; n_anchors = 0 silently used one anchor; no QoIs
    solved everything for nothing."""
    kw = {"qois": {"R": Reaction("right", 0)}, "n_inner": 4, **kw}
    with pytest.raises(ValueError, match=match):
        propagate(NoSolver(), descriptor_gp, **kw)


def test_qoi_components_and_boundaries_are_checked():
    """Before: component -1 read the last component (u_y, or the y reaction) without a word, and an
    unknown boundary was a bare KeyError."""
    with pytest.raises(ValueError, match=r"component must be an integer >= 0.*got -1"):
        Reaction("right", -1)
    with pytest.raises(ValueError, match=r"component must be an integer >= 0.*got 0.0"):
        Displacement((0.5, 0.5), 0.0)
    s = _bar(LAW)
    r = s.solve(n_steps=1)
    with pytest.raises(ValueError, match=r"component 2 does not exist on a 2D mesh"):
        Reaction("right", 2)(s, r)
    with pytest.raises(ValueError, match=r"'rigth' is not a boundary of the mesh; known: \['bottom'"):
        Reaction("rigth", 0)(s, r)
    with pytest.raises(ValueError, match=r"point=\(5.0, 0.5\).*in no element"):
        Displacement((5.0, 0.5), 0)(s, r)
    # the right edge is held at u_x = 0.05: the interpolated displacement there is that value
    assert Displacement((1.0, 0.3), 0)(s, r) == pytest.approx(0.05, abs=1e-14)


def test_sobol_and_split_input_is_named():
    """Before: a float n was 'slice indices must be integers', a negative seed numpy's 'expected
    non-negative integer', a number for a distribution an AttributeError, and complex outputs
    lost their imaginary part with only a ComplexWarning."""
    D = {"a": st.uniform(0, 1), "b": st.norm(0, 1)}

    def f(X):
        return X[:, 0] + 2 * X[:, 1]

    with pytest.raises(ValueError, match=r"n must be an integer >= 8, got 1024.0"):
        sobol_indices(f, D, n=1024.0)
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got -1"):
        sobol_indices(f, D, n=64, seed=-1)
    with pytest.raises(TypeError, match=r"distribution of 'a' must be a scipy.stats frozen distribution"):
        sobol_indices(f, {"a": 3.0}, n=64)
    with pytest.raises(ValueError, match=r"f must return real numbers, got dtype complex128"):
        sobol_indices(lambda X: X[:, 0] + 1j, D, n=64)
    with pytest.raises(ValueError, match=r"Q must hold real numbers"):
        total_variance_split(np.ones((2, 2)) * (1 + 1j))
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 0"):
        sample_inputs(D, 0)
    # an additive model: S1 = ST = c_i^2 Var(X_i) / Var(Y) (1/12 and 4 of 4 + 1/12)
    r = sobol_indices(f, D, n=1024, seed=3)
    exact = np.array([1 / 12, 4.0]) / (4 + 1 / 12)
    assert np.all(np.abs(r.S1 - exact) < 4 * r.S1_se + 1e-3)
    assert np.all(np.abs(r.ST - exact) < 4 * r.ST_se + 1e-3)


def _uq_config(tmp_path, **uq):
    from loops.fe2.config import parse_config

    return parse_config({
        "name": "uq-probe",
        "output_dir": str(tmp_path),
        "mesh": {"kind": "rectangle", "nx": 2, "ny": 2},
        "dirichlet": [
            {"boundary": "left", "component": 0},
            {"boundary": "left", "component": 1},
            {"boundary": "right", "component": 0, "value": 0.05},
        ],
        "load": {"n_steps": 1},
        "material": {
            "provider": "analytic",
            "rve": {"phases": [{"E": 1.0, "nu": 0.35}, {"E": 10.0, "nu": 0.25}],
                    "microstructure": {"kind": "inclusion", "radius_fraction": 0.3}, "grid": [9, 9]},
        },
        "tracking": {"enabled": False},
        "plots": False,
        "uncertainty": {"n_outer": 3, "n_inner": 4, "n_anchors": 8, "sobol_n": 8,
                        "random": [{"name": "phases.1.E", "low": 1.2, "high": 1.8}], **uq},
    })


def test_a_negative_uncertainty_seed_is_a_config_error(tmp_path):
    """Before: accepted, and the run failed after its deterministic solve with numpy's
    'expected non-negative integer', naming no key."""
    with pytest.raises(ConfigError, match=r"uncertainty.seed = -1"):
        _uq_config(tmp_path, seed=-1)


@pytest.mark.parametrize("stop", [KeyboardInterrupt, "all_rows_fail"])
def test_the_propagation_is_kept_when_the_sobol_stage_stops(descriptor_gp, tmp_path, monkeypatch, stop):
    """uncertainty.json holds the finished propagation before the Sobol solves start: Ctrl-C there
    keeps it (before: nothing was written), and a QoI whose Sobol rows all fail records why
    instead of failing the whole [uncertainty] step."""
    import loops.uq.fe2 as uq_fe2
    import loops.uq.sobol as sobol

    cfg = _uq_config(tmp_path)
    monkeypatch.setattr(uq_fe2, "train_descriptor_gp", lambda cfg, dists: descriptor_gp)
    solver = _bar(LAW)
    out = tmp_path / "run"
    out.mkdir()
    if stop is KeyboardInterrupt:
        def stopped(*a, **kw):
            raise KeyboardInterrupt

        monkeypatch.setattr(sobol, "sobol_indices", stopped)
        with pytest.raises(KeyboardInterrupt):
            uq_fe2.run_uncertainty(cfg, solver, LAW, out)
        summary = json.loads((out / "uncertainty.json").read_text())
    else:
        import loops.uq.samples as samples

        class Failing(samples.GPPosteriorMean):
            def with_theta(self, theta):
                raise RuntimeError("mean unavailable")

        monkeypatch.setattr(samples, "GPPosteriorMean", Failing)
        with pytest.warns(UserWarning, match=r"no Sobol indices of reaction.*RuntimeError: mean unavailable"):
            summary, _ = uq_fe2.run_uncertainty(cfg, solver, LAW, out)
        assert "mean unavailable" in summary["sobol"]["qoi"]["reaction"]["error"]
        assert json.loads((out / "uncertainty.json").read_text())["sobol"] == summary["sobol"]
    s = summary["qoi"]["reaction"]
    assert s["n_outer"] == 3 and s["n_inner"] == 4 and s["n_failed"] == 0
    assert (out / "uq_reaction.png").is_file()


def test_a_propagation_where_every_run_fails_says_why(descriptor_gp):
    """A bar pushed 1.5 lengths into its clamp: every posterior-mean run inverts an element.
    Before: 'need at least 2 finite values, got 0', with the runs' reasons lost."""

    def crushed(material):
        bcs = [DirichletBC("left", 0), DirichletBC("left", 1), DirichletBC("right", 0, -1.5)]
        return MacroSolver(rectangle(1.0, 1.0, 2, 2), material, bcs)

    with pytest.raises(ValueError, match=r"QoI 'R': 0 of 8 runs gave a value.*8 runs failed; first \(outer 0, "
                                         r"inner 0\): posterior-mean run failed: .*element inverted"):
        propagate(crushed, descriptor_gp, {"R": Reaction("right", 0)}, np.array([[1.3], [1.7]]), n_inner=4,
                  solve_kwargs={"n_steps": 1, "max_cutbacks": 2})


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(n_samples=2.5), r"n_samples must be an integer >= 1, got 2.5"),
        (dict(n_samples=4, seed=0.5), r"seed must be an integer, got 0.5"),
        (dict(n_samples=4, jitter=float("nan")), r"jitter must be a finite number >= 0, got nan"),
        (dict(n_samples=4, jitter=-1e-4), r"jitter must be a finite number >= 0, got -0.0001"),
    ],
)
def test_function_sampler_settings_are_named(descriptor_gp, kw, match):
    """Before: n_samples = 2.5 silently drew 2 paths, seed = 0.5 used seed 0, and a NaN jitter
    failed inside torch's Cholesky factorization ('not positive-definite')."""
    from loops.uq.samples import GPFunctionSamples
    from tests.loops.uq.conftest import scaled_law_data

    X, _ = scaled_law_data(5, seed=1)
    with pytest.raises(ValueError, match=match):
        GPFunctionSamples(descriptor_gp, anchors=X, **kw)


def test_farthest_points_wants_at_least_one_point():
    """Before: n = 0 returned one point."""
    from loops.uq.samples import farthest_points

    X = torch.rand(10, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"n must be an integer >= 1, got 0"):
        farthest_points(X, 0)
    assert farthest_points(X, 3).shape == (3, 3)


def test_runs_with_neighbouring_seeds_share_no_function_samples(descriptor_gp):
    """Replicating a run with the next seed gauges its Monte Carlo error only if the two draw
    independent function samples. With the sampler of draw i seeded by ``seed + i``, draw 1 of
    seed 0 and draw 0 of seed 1 (same descriptor) were the same paths, so their QoI values were
    equal; independent paths give values whose correlation is within sampling error of 0."""
    S = 48
    kw = dict(qois={"R": Reaction("right", 0)}, theta=np.array([[1.5], [1.5]]), n_inner=S,
              solve_kwargs={"n_steps": 1})
    a = propagate(_bar, descriptor_gp, seed=0, **kw).Q["R"]
    b = propagate(_bar, descriptor_gp, seed=1, **kw).Q["R"]
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert not np.allclose(a[1], b[0])
    r = np.corrcoef(a[1], b[0])[0, 1]
    assert abs(r) < 4 / np.sqrt(S)
    # the same seed reproduces every value
    np.testing.assert_array_equal(propagate(_bar, descriptor_gp, seed=0, **kw).Q["R"], a)


def test_a_stopped_propagation_keeps_its_finished_draws(descriptor_gp, tmp_path, monkeypatch):
    """uq_draws.jsonl gets one line per outer draw as it finishes: a complete run's lines are the
    propagation's own rows, and Ctrl-C during the third draw keeps the first two (before: the
    nested Monte Carlo kept nothing until it had finished)."""
    import loops.uq.fe2 as uq_fe2
    import loops.uq.propagate as propagate_mod

    cfg = _uq_config(tmp_path, sobol_n=0)
    monkeypatch.setattr(uq_fe2, "train_descriptor_gp", lambda cfg, dists: descriptor_gp)
    solver = _bar(LAW)
    full = tmp_path / "full"
    full.mkdir()
    summary, _ = uq_fe2.run_uncertainty(cfg, solver, LAW, full)
    lines = [json.loads(s) for s in (full / "uq_draws.jsonl").read_text().splitlines()]
    assert [r["outer"] for r in lines] == [0, 1, 2]
    assert summary["qoi"]["reaction"]["n_outer"] == 3
    pooled = np.concatenate([r["values"]["reaction"] for r in lines])
    assert pooled.mean() == pytest.approx(summary["qoi"]["reaction"]["mean"], rel=1e-12)
    # the same draws again, stopped while the third draw's function samples are built
    built = []
    real = propagate_mod.GPFunctionSamples

    def stop_at_third(*a, **kw):
        built.append(1)
        if len(built) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(propagate_mod, "GPFunctionSamples", stop_at_third)
    stopped = tmp_path / "stopped"
    stopped.mkdir()
    with pytest.raises(KeyboardInterrupt):
        uq_fe2.run_uncertainty(cfg, solver, LAW, stopped)
    kept = [json.loads(s) for s in (stopped / "uq_draws.jsonl").read_text().splitlines()]
    assert kept == lines[:2]
    assert all(len(r["values"]["reaction"]) == 4 and r["failures"] == [] for r in kept)
