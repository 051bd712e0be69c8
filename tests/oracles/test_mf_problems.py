"""Multi-fidelity literature problems (``oracles.analytic.mf_problems``): top levels against BoTorch's
test functions, level relations of the published formulas, and their settings."""

import math

import numpy as np
import pytest
import torch
from botorch.test_functions import Branin, Hartmann, Rosenbrock

from oracles.analytic.mf_problems import (
    MFBranin,
    MFHartmann3,
    MFRastrigin,
    MFRosenbrock,
    MultiLevelForrester,
)
from oracles.exceptions import InvalidInput

D = torch.float64


def _in(oracle, n=64, seed=0):
    lo, hi = oracle.bounds
    return lo + (hi - lo) * torch.rand(n, len(lo), generator=torch.Generator().manual_seed(seed), dtype=D)


@pytest.mark.parametrize("oracle, peer", [
    (MFRosenbrock(dim=4), Rosenbrock(dim=4, dtype=D)),
    (MFHartmann3(), Hartmann(dim=3, dtype=D)),
])
def test_top_levels_are_botorchs_functions(oracle, peer):
    X = _in(oracle)
    # BoTorch keeps Hartmann's constants in single precision (agreement to 1e-7)
    torch.testing.assert_close(oracle.evaluate_true(X, oracle.num_fidelities - 1).reshape(-1),
                               peer.evaluate_true(X), rtol=1e-6, atol=1e-12)


def test_branin_and_rastrigin_top_levels():
    b = MFBranin()
    X = _in(b)
    torch.testing.assert_close(b.evaluate_true(X, 2).reshape(-1), Branin(dtype=D).evaluate_true(X) / 100,
                               rtol=1e-12, atol=1e-12)
    r = MFRastrigin(dim=2)
    X = _in(r).numpy()
    # Wang, Jin & Doherty (2018): no resolution error at phi = 10^4; z = R (x - 0.1), theta = 0.2
    c, s = math.cos(0.2), math.sin(0.2)
    z = (X - 0.1) @ np.array([[c, -s], [s, c]]).T
    want = (z**2 + 1 - np.cos(10 * np.pi * z)).sum(-1)
    np.testing.assert_allclose(r.evaluate_true(torch.as_tensor(X), 2).reshape(-1).numpy(), want, rtol=1e-12)
    assert float(r.evaluate_true(torch.full((1, 2), 0.1, dtype=D), 2)) == pytest.approx(0.0, abs=1e-15)


def test_forrester_levels_are_the_published_affine_maps_of_the_top():
    o = MultiLevelForrester()
    x = torch.linspace(0, 1, 101, dtype=D).unsqueeze(-1)
    f = [o.evaluate_true(x, t).reshape(-1) for t in range(4)]
    xs = x[:, 0]
    torch.testing.assert_close(f[1], 0.75 * f[3] + 5 * (xs - 0.5) - 2, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(f[0], 0.5 * f[3] + 10 * (xs - 0.5) - 5, rtol=1e-12, atol=1e-12)
    # Forrester et al. (2008): minimum -6.0207 at x = 0.7572 at the top level
    assert float(o.evaluate_true(torch.tensor([[0.75725]], dtype=D), 3)) == pytest.approx(-6.0207, abs=1e-4)


@pytest.mark.parametrize("cls, bad", [(MFRosenbrock, 2.5), (MFRosenbrock, "3"), (MFRosenbrock, True),
                                      (MFRosenbrock, 1), (MFRastrigin, 0), (MFRastrigin, 1.0)])
def test_dim_must_be_an_integer_in_range(cls, bad):
    with pytest.raises(InvalidInput, match=f"{cls.__name__} needs an integer dim >= .*got {bad!r}"):
        cls(dim=bad)
    assert cls(dim=np.int64(3)).dim == 3
