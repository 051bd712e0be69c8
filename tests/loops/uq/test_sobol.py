"""Sobol indices against the Ishigami function's closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats as st

from loops.uq.sobol import sobol_indices

A, B = 7.0, 0.1


def ishigami(X):
    return np.sin(X[:, 0]) + A * np.sin(X[:, 1]) ** 2 + B * X[:, 2] ** 4 * np.sin(X[:, 0])


def ishigami_exact():
    """First-order and total indices (Ishigami and Homma 1990; Sobol' and Levitan 1999)."""
    V1 = 0.5 * (1 + B * math.pi**4 / 5) ** 2
    V2 = A**2 / 8
    V13 = B**2 * math.pi**8 * (1 / 18 - 1 / 50)
    V = V1 + V2 + V13
    return np.array([V1, V2, 0.0]) / V, np.array([V1 + V13, V2, V13]) / V


@pytest.mark.parametrize("seed", [0, 1])
def test_ishigami_indices(seed):
    U = st.uniform(-math.pi, 2 * math.pi)
    res = sobol_indices(ishigami, {"x1": U, "x2": U, "x3": U}, n=4096, seed=seed)
    S1, ST = ishigami_exact()
    assert np.all(np.abs(res.S1 - S1) < 4 * res.S1_se + 0.01), (res.S1, S1, res.S1_se)
    assert np.all(np.abs(res.ST - ST) < 4 * res.ST_se + 0.01), (res.ST, ST, res.ST_se)
    assert res.n_evaluations == 4096 * 5
    assert set(res.as_dict()) == {"x1", "x2", "x3", "n_evaluations", "replicates", "failed_rows"}


def test_standard_errors_are_calibrated():
    """Over 40 seeds the errors against the closed form, in units of the stated standard
    errors, spread like a t with R - 1 = 7 degrees of freedom (sd 1.18): neither the
    bootstrap's overstatement of a scrambled net's error (sd 0.14 to 0.32 of the stated)
    nor an understatement."""
    U = st.uniform(-math.pi, 2 * math.pi)
    S1, ST = ishigami_exact()
    z = []
    for seed in range(40):
        r = sobol_indices(ishigami, {"x1": U, "x2": U, "x3": U}, n=1024, seed=seed)
        assert r.replicates == 8
        z.append(np.concatenate([(r.S1 - S1) / r.S1_se, (r.ST - ST) / r.ST_se]))
    sd = np.std(z, axis=0)
    assert np.all((sd > 0.6) & (sd < 1.8)), sd


def test_replicates_are_capped_by_the_sample_size():
    U = st.uniform()
    r = sobol_indices(lambda X: X[:, 0] + 0.1 * X[:, 1], {"a": U, "b": U}, n=12)
    assert r.replicates == 1 and np.isnan(r.S1_se).all() and r.n_evaluations == 12 * 4
    r = sobol_indices(lambda X: X[:, 0] + 0.1 * X[:, 1], {"a": U, "b": U}, n=100, replicates=3)
    assert r.replicates == 3 and np.isfinite(r.ST_se).all()
    with pytest.raises(ValueError, match="replicates must be an integer >= 1, got 0"):
        sobol_indices(ishigami, {"a": U}, n=16, replicates=0)


def test_indices_do_not_depend_on_the_outputs_offset():
    """Linear model with Gaussian inputs: S1 = ST = a_i^2 var_i / sum. Saltelli's first-order
    estimator f(B)(f(A_B) - f(A)) had a variance growing with mean^2 / variance: at an offset of
    1e4 spreads it gave S1 = [2.39, -2.47, 14.85] at n = 256 (a reaction force of 0.5 varying by
    1 % is such an output). Centred, the indices of f + c are those of f."""
    a = np.array([1.0, 1.0, 6.0])
    d = {f"x{i}": st.norm(0, 1) for i in range(3)}
    exact = a**2 / (a**2).sum()
    ref = sobol_indices(lambda X: X @ a, d, n=1024, seed=3)
    for c in (1e2, 1e4 * math.sqrt((a**2).sum())):
        r = sobol_indices(lambda X, c=c: c + X @ a, d, n=1024, seed=3)
        np.testing.assert_allclose(r.S1, ref.S1, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(r.ST, ref.ST, rtol=1e-6, atol=1e-9)
        assert np.all(np.abs(r.S1 - exact) < 4 * r.S1_se + 0.01), (r.S1, exact, r.S1_se)


def test_failed_evaluations_drop_their_rows():
    """A non-finite value removes its base row (its A, B and A_B evaluations); one NaN had made
    every index NaN. With rows failing at random the indices stay on the closed form."""
    U = st.uniform(-math.pi, 2 * math.pi)
    S1, ST = ishigami_exact()
    rng = np.random.default_rng(0)

    def failing(X):
        y = ishigami(X)
        y[rng.random(len(y)) < 0.01] = np.nan
        return y

    r = sobol_indices(failing, {"x1": U, "x2": U, "x3": U}, n=2048, seed=0)
    assert 0 < r.failed_rows < 2048 * 0.1 and r.as_dict()["failed_rows"] == r.failed_rows
    assert np.all(np.isfinite(r.S1)) and np.all(np.isfinite(r.S1_se))
    assert np.all(np.abs(r.S1 - S1) < 4 * r.S1_se + 0.02), (r.S1, S1, r.S1_se)
    assert np.all(np.abs(r.ST - ST) < 4 * r.ST_se + 0.02), (r.ST, ST, r.ST_se)
    with pytest.raises(ValueError, match="failed"):
        sobol_indices(lambda X: np.full(len(X), np.nan), {"a": st.uniform()}, n=16)


def test_bad_input():
    with pytest.raises(ValueError, match="random input"):
        sobol_indices(ishigami, {})
    with pytest.raises(ValueError, match="returned"):
        sobol_indices(lambda X: X[:3, 0], {"a": st.uniform()}, n=16)


def test_sobol_unit_is_scipys_sequence_without_the_power_of_two_warning():
    import warnings

    import numpy as np
    from scipy.stats import qmc

    from loops.uq.sobol import sobol_unit

    for n in (1, 10, 16, 100):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = qmc.Sobol(d=3, scramble=True, seed=4).random(n)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = sobol_unit(3, n, 4)
        np.testing.assert_array_equal(got, ref)
