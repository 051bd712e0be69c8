"""Synthetic test functions against Emukit / BoTorch / literature values and known optima."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from oracles.analytic.test_functions import (
    Borehole,
    Branin,
    Currin,
    Forrester,
    Hartmann6,
    Park,
    SyntheticOracle,
)
from oracles.base import DTYPE
from oracles.exceptions import InvalidInput
from oracles.testing import DeterministicOracleTests, OracleContractTests


def uniform(oracle: SyntheticOracle, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = oracle.bounds
    return lo + (hi - lo) * torch.rand(n, oracle.dim, generator=g, dtype=DTYPE)


def emukit_sources(name):
    """Emukit's ``[low, high]`` functions; the comparison tests alone skip without Emukit."""
    mf = pytest.importorskip("emukit.test_functions.multi_fidelity")
    if name == "forrester":
        from emukit.test_functions.forrester import multi_fidelity_forrester_function

        fn, _ = multi_fidelity_forrester_function()
    else:
        fn, _ = getattr(mf, f"multi_fidelity_{name}_function")()
    return fn.f  # [low, high]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "cls, name", [(Forrester, "forrester"), (Currin, "currin"), (Borehole, "borehole")]
)
def test_two_fidelity_values_match_emukit(cls, name, seed):
    oracle = cls()
    X = uniform(oracle, 20, seed)
    for fid, f in enumerate(emukit_sources(name)):
        ref = torch.as_tensor(f(X.numpy()), dtype=DTYPE).reshape(-1, 1)
        torch.testing.assert_close(oracle.evaluate_true(X, fid), ref, rtol=1e-12, atol=1e-12)


def test_park_matches_literature():
    oracle = Park()
    X = uniform(oracle, 20, 0)
    x1, x2, x3, x4 = X.T.numpy()
    lit = x1 / 2 * (np.sqrt(1 + (x2 + x3**2) * x4 / x1**2) - 1) + (x1 + 3 * x4) * np.exp(1 + np.sin(x3))
    np.testing.assert_allclose(oracle.evaluate_true(X, 1)[:, 0].numpy(), lit, rtol=1e-12)
    low = (1 + np.sin(x1) / 10) * lit - 2 * x1 + x2**2 + x3**2 + 0.5
    np.testing.assert_allclose(oracle.evaluate_true(X, 0)[:, 0].numpy(), low, rtol=1e-12)
    # finite at x1 = 0 (limit of the first term is sqrt((x2 + x3^2) x4) / 2)
    x0 = torch.tensor([[0.0, 0.5, 0.5, 0.5]], dtype=DTYPE)
    expected = math.sqrt(0.75 * 0.5) / 2 + 1.5 * math.exp(1 + math.sin(0.5))
    assert oracle.evaluate_true(x0, 1).item() == pytest.approx(expected, rel=1e-12)


def test_park_matches_emukit_where_they_agree():
    low, high = emukit_sources("park")
    oracle = Park()
    # Emukit writes x2 + x3 where Park has x2 + x3^2: they agree for x3 in {0, 1}
    Xe = uniform(oracle, 20, 0)
    Xe[:10, 2], Xe[10:, 2] = 0.0, 1.0
    for fid, f in enumerate((low, high)):
        ref = torch.as_tensor(f(Xe.numpy()), dtype=DTYPE).reshape(-1, 1)
        torch.testing.assert_close(oracle.evaluate_true(Xe, fid), ref, rtol=1e-12, atol=1e-12)


def test_borehole_hand_value_at_centre():
    # literature formula evaluated by hand at the centre of the domain
    rw, r, Tu, Hu, Tl, Hl, L, Kw = 0.1, 25050, 89335, 1050, 89.55, 760, 1400, 10950
    ln = math.log(r / rw)
    hi = 2 * math.pi * Tu * (Hu - Hl) / (ln * (1 + 2 * L * Tu / (ln * rw**2 * Kw) + Tu / Tl))
    x = torch.tensor([rw, r, Tu, Hu, Tl, Hl, L, Kw], dtype=DTYPE)
    assert Borehole().evaluate_true(x, 1).item() == pytest.approx(hi, rel=1e-13)


def test_forrester_minimum():
    f = Forrester()
    res = minimize_scalar(
        lambda x: f.evaluate_true([[x]], 1).item(), bounds=(0.6, 0.9), method="bounded",
        options={"xatol": 1e-10},
    )
    assert res.x == pytest.approx(0.757249, abs=1e-5)
    assert res.fun == pytest.approx(-6.02074, abs=1e-5)


def test_branin_formula_and_optima():
    b = Branin()
    assert b.input_names == ("x1", "x2")
    torch.testing.assert_close(b.bounds, torch.tensor([[-5.0, 0.0], [10.0, 15.0]], dtype=DTYPE))
    X = uniform(b, 50, 3)
    x1, x2 = X.T.numpy()
    # Dixon & Szego (1978), written out independently of BoTorch
    lit = (x2 - 5.1 / (4 * np.pi**2) * x1**2 + 5 / np.pi * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * np.pi)) * np.cos(x1) + 10
    np.testing.assert_allclose(b.evaluate_true(X)[:, 0].numpy(), lit, rtol=1e-12)
    vals = b.evaluate_true(b.optimizers)
    torch.testing.assert_close(vals, torch.full((3, 1), 5 / (4 * math.pi), dtype=DTYPE), atol=1e-6, rtol=0)
    assert b.optimal_value == pytest.approx(5 / (4 * math.pi), abs=1e-6)
    assert (b.evaluate_true(X) >= b.optimal_value - 1e-6).all()
    # optimizers are stationary points (central differences of the gradient)
    h = 1e-6
    for x in b.optimizers:
        for j in range(2):
            e = torch.zeros(2, dtype=DTYPE)
            e[j] = h
            g = (b.evaluate_true(x + e) - b.evaluate_true(x - e)).item() / (2 * h)
            assert abs(g) < 1e-4


def test_hartmann6_formula_and_optimum():
    h6 = Hartmann6()
    assert h6.dim == 6 and h6.optimizers.shape == (1, 6)
    alpha = np.array([1.0, 1.2, 3.0, 3.2])
    A = np.array(
        [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
    )
    P = 1e-4 * np.array(
        [
            [1312, 1696, 5569, 124, 8283, 5886],
            [2329, 4135, 8307, 3736, 1004, 9991],
            [2348, 1451, 3522, 2883, 3047, 6650],
            [4047, 8828, 8732, 5743, 1091, 381],
        ]
    )
    X = uniform(h6, 100, 4)
    lit = -(alpha * np.exp(-(A * (X.numpy()[:, None, :] - P) ** 2).sum(-1))).sum(-1)
    # BoTorch stores A and alpha as float32 numbers: agreement to ~1e-7
    np.testing.assert_allclose(h6.evaluate_true(X)[:, 0].numpy(), lit, rtol=1e-6)
    assert h6.evaluate_true(h6.optimizers).item() == pytest.approx(-3.32237, abs=1e-5)
    assert (h6.evaluate_true(X) > h6.optimal_value).all()
    torch.testing.assert_close(Hartmann6(negate=True).evaluate_true(X), -h6.evaluate_true(X))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noise_statistics_and_yvar(seed):
    sd = (0.5, 0.1)
    f = Currin(noise_std=sd, seed=seed)
    X = uniform(f, 4000, seed)
    for fid in (0, 1):
        r = f.evaluate(X, fid)
        eps = (r.Y - f.evaluate_true(X, fid))[:, 0]
        # sample mean and std of 4000 normal draws: 5-sigma bands hold for any seed
        assert abs(eps.mean().item()) < 5 * sd[fid] / math.sqrt(4000)
        assert abs(eps.std().item() / sd[fid] - 1) < 5 / math.sqrt(2 * 4000)
        torch.testing.assert_close(r.Yvar, torch.full((4000, 1), sd[fid] ** 2, dtype=DTYPE))


def test_seeded_noise_reproducible_negate_and_costs():
    X = torch.rand(5, 4, dtype=DTYPE)
    a, b = Park(noise_std=0.3, seed=11), Park(noise_std=0.3, seed=11)
    torch.testing.assert_close(a.evaluate(X).Y, b.evaluate(X).Y)
    torch.testing.assert_close(Park(negate=True).evaluate_true(X), -Park().evaluate_true(X))
    f = Park(costs=(2.0, 30.0))
    assert f.evaluate(X, 0).cost.tolist() == [2.0] * 5 and f.evaluate(X, 1).cost.tolist() == [30.0] * 5
    assert Park().evaluate(X, 0).cost.sum() * 10 == Park().evaluate(X, 1).cost.sum()
    assert not Park().noisy and Park().evaluate(X).Yvar is None


def test_bad_arguments():
    with pytest.raises(InvalidInput, match="noise_std"):
        Forrester(noise_std=-1.0)
    with pytest.raises(InvalidInput, match="noise_std"):
        Forrester(noise_std=(0.1, 0.2, 0.3))
    with pytest.raises(InvalidInput, match="costs"):
        Forrester(costs=(1.0,))
    with pytest.raises(InvalidInput, match="costs must be positive"):
        Forrester(costs=(1.0, -2.0))
    with pytest.raises(InvalidInput, match="rw"):
        Borehole().evaluate(torch.tensor([[1.0, 200, 7e4, 1000, 70, 750, 1200, 1e4]]))


class TestForrester(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return Forrester()


class TestCurrinNoisy(OracleContractTests):
    def make_oracle(self):
        return Currin(noise_std=0.1, seed=0)


class TestPark(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return Park()


class TestBorehole(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return Borehole()


class TestBranin(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return Branin()


class TestHartmann6(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return Hartmann6(negate=True)
