"""Input checks of the public energy networks, against independent references."""

from __future__ import annotations

import pytest
import torch

from oracles.exceptions import InvalidInput
from surrogates.neural import InvariantEnergy, SmallStrainEnsemble


def _F(k: int, n: int = 4) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.eye(k, dtype=torch.float64) + 0.1 * torch.randn(n, k, k, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("case", ["reflection", "zero", "nan", "inf"])
def test_invariant_energy_refuses_det_F_not_positive_or_non_finite(k, case):
    # before: W and P came back (finite for a reflection, NaN for the others) without a word
    F = _F(k)
    if case == "reflection":
        F[2] = torch.diag(torch.tensor([-1.0] + [1.0] * (k - 1), dtype=torch.float64))
        want = "det F = -1 at point 2"
    elif case == "zero":
        F[2] = 0.0
        want = "det F = 0 at point 2"
    else:
        F[2, 0, 1] = float(case)
        want = "at point 2"
    m = InvariantEnergy(dim=k)
    for order in (0, 1, 2):
        with pytest.raises(InvalidInput, match=want):
            m(F, order=order)


def test_invariant_energy_refuses_F_of_the_other_dimension():
    # before: a plane-strain (k = 2) network took 3 x 3 F and returned a 3 x 3 P with the
    # C33 = 1 term added on top of the 3-D trace: W(I) != 0 (the documented W(1) = 0 broken)
    m2 = InvariantEnergy(dim=2)
    with pytest.raises(InvalidInput, match=r"n x 2 x 2 .* got \(1, 3, 3\)"):
        m2(torch.eye(3, dtype=torch.float64)[None])
    with pytest.raises(InvalidInput, match=r"n x 3 x 3 .* got \(3, 3\)"):  # before: a bare permute error
        InvariantEnergy(dim=3)(torch.eye(3, dtype=torch.float64))


def test_invariant_energy_casts_float32_F():
    # before: RuntimeError "expected m1 and m2 to have the same dtype" from inside the network
    m = InvariantEnergy(dim=3, seed=1)
    F32 = _F(3).float()
    W, P, A = m(F32, order=2)
    W64, P64, A64 = m(F32.double(), order=2)
    assert W.dtype == P.dtype == A.dtype == torch.float64
    assert torch.equal(W, W64) and torch.equal(P, P64) and torch.equal(A, A64)


@pytest.mark.parametrize("k", [2, 3])
def test_invariant_energy_checks_keep_valid_results_and_fd_stress(k):
    # the checks do not touch valid inputs: P is still the central difference of W
    m = InvariantEnergy(dim=k, symmetry="cubic", seed=2)
    F = _F(k, 6)
    W, P, _ = m(F, order=1)
    h = 1e-6
    Pfd = torch.zeros_like(P)
    for i in range(k):
        for j in range(k):
            E = torch.zeros(k, k, dtype=F.dtype)
            E[i, j] = h
            Pfd[:, i, j] = (m(F + E, order=0)[0] - m(F - E, order=0)[0]) / (2 * h)
    assert torch.allclose(P, Pfd, rtol=1e-6, atol=1e-9 * float(P.abs().max()))


def test_small_strain_member_predictions_refuse_nan():
    # before: NaN stresses, silently (posterior checked, member_predictions did not)
    ens = SmallStrainEnsemble(dim=3, hidden=(4,), num_members=2)
    X = torch.zeros(2, 6, dtype=torch.float64)
    X[1, 3] = float("nan")
    with pytest.raises(InvalidInput, match=r"X must be finite, got nan at index \(1, 3\)"):
        ens.member_predictions(X)
