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
from oracles.testing import OracleContractTests

mf = pytest.importorskip("emukit.test_functions.multi_fidelity")


def uniform(oracle: SyntheticOracle, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo, hi = oracle.bounds
    return lo + (hi - lo) * torch.rand(n, oracle.dim, generator=g, dtype=DTYPE)


def emukit_sources(name):
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


def test_park_matches_literature_and_emukit_where_they_agree():
    oracle = Park()
    X = uniform(oracle, 20, 0)
    x1, x2, x3, x4 = X.T.numpy()
    lit = x1 / 2 * (np.sqrt(1 + (x2 + x3**2) * x4 / x1**2) - 1) + (x1 + 3 * x4) * np.exp(1 + np.sin(x3))
    np.testing.assert_allclose(oracle.evaluate_true(X, 1)[:, 0].numpy(), lit, rtol=1e-12)
    low, high = emukit_sources("park")
    # Emukit writes x2 + x3 where Park has x2 + x3^2: they agree for x3 in {0, 1}
    Xe = X.clone()
    Xe[:10, 2], Xe[10:, 2] = 0.0, 1.0
    for fid, f in enumerate((low, high)):
        ref = torch.as_tensor(f(Xe.numpy()), dtype=DTYPE).reshape(-1, 1)
        torch.testing.assert_close(oracle.evaluate_true(Xe, fid), ref, rtol=1e-12, atol=1e-12)
    # finite at x1 = 0 (limit of the first term is sqrt((x2 + x3^2) x4) / 2)
    x0 = torch.tensor([[0.0, 0.5, 0.5, 0.5]], dtype=DTYPE)
    expected = math.sqrt(0.75 * 0.5) / 2 + 1.5 * math.exp(1 + math.sin(0.5))
    assert oracle.evaluate_true(x0, 1).item() == pytest.approx(expected, rel=1e-12)


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


def test_branin_optima_and_botorch():
    from botorch.test_functions import Branin as BBranin

    b = Branin()
    vals = b.evaluate_true(b.optimizers)
    torch.testing.assert_close(vals, torch.full((3, 1), 0.397887, dtype=DTYPE), atol=1e-6, rtol=0)
    X = uniform(b, 50, 3)
    assert (b.evaluate_true(X) >= b.optimal_value - 1e-12).all()
    torch.testing.assert_close(b.evaluate_true(X)[:, 0], BBranin().evaluate_true(X))
    # optimizers are stationary points (central differences of the gradient)
    h = 1e-6
    for x in b.optimizers:
        for j in range(2):
            e = torch.zeros(2, dtype=DTYPE)
            e[j] = h
            g = (b.evaluate_true(x + e) - b.evaluate_true(x - e)).item() / (2 * h)
            assert abs(g) < 1e-4


def test_hartmann6_optimum_and_botorch():
    from botorch.test_functions import Hartmann

    h6 = Hartmann6()
    assert h6.evaluate_true(h6.optimizers).item() == pytest.approx(-3.32237, abs=1e-5)
    X = uniform(h6, 100, 4)
    assert (h6.evaluate_true(X) > h6.optimal_value).all()
    torch.testing.assert_close(h6.evaluate_true(X)[:, 0], Hartmann(dim=6).evaluate_true(X))


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


class TestForrester(OracleContractTests):
    def make_oracle(self):
        return Forrester()


class TestCurrinNoisy(OracleContractTests):
    def make_oracle(self):
        return Currin(noise_std=0.1, seed=0)


class TestPark(OracleContractTests):
    def make_oracle(self):
        return Park()


class TestBorehole(OracleContractTests):
    def make_oracle(self):
        return Borehole()


class TestBranin(OracleContractTests):
    def make_oracle(self):
        return Branin()


class TestHartmann6(OracleContractTests):
    def make_oracle(self):
        return Hartmann6(negate=True)
