"""Phase laws: tangents against finite differences, symmetries, bad moduli."""

import math

import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve.laws import (
    CubicElastic,
    IsotropicElastic,
    NeoHookean,
    StVenantKirchhoff,
    lame_from,
)

DT = torch.float64


def random_rotation(g: torch.Generator) -> torch.Tensor:
    Q, R = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DT))
    Q = Q * torch.sign(torch.diagonal(R))
    if torch.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q


def fd_tangent(law, X, h=1e-6):
    """Central finite difference ``dS_ij / dX_kl``, ``n x k x k x k x k``."""
    n, k = X.shape[0], X.shape[-1]
    T = torch.zeros(n, k, k, k, k, dtype=DT)
    for a in range(k):
        for b in range(k):
            E = torch.zeros(k, k, dtype=DT)
            E[a, b] = h
            T[..., a, b] = (law.stress(X + E) - law.stress(X - E)) / (2 * h)
    return T


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("cls", [StVenantKirchhoff, NeoHookean])
def test_finite_tangent_is_derivative_and_major_symmetric(cls, k):
    g = torch.Generator().manual_seed(0)
    law = cls(K=2.0, mu=0.7)
    F = torch.eye(k, dtype=DT) + 0.2 * torch.randn(5, k, k, generator=g, dtype=DT)
    P, K = law.stress_tangent(F)
    torch.testing.assert_close(K, fd_tangent(law, F), rtol=1e-7, atol=1e-8)
    torch.testing.assert_close(K, K.permute(0, 3, 4, 1, 2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("cls", [StVenantKirchhoff, NeoHookean])
def test_finite_laws_stress_free_objective_and_linearize_to_hooke(cls, k):
    law = cls(E=3.0, nu=0.25)
    I = torch.eye(k, dtype=DT).expand(1, k, k)
    P, K = law.stress_tangent(I)
    assert P.abs().max() < 1e-14
    torch.testing.assert_close(K[0], IsotropicElastic(E=3.0, nu=0.25).stiffness(k))
    g = torch.Generator().manual_seed(1)
    F = torch.eye(k, dtype=DT) + 0.1 * torch.randn(4, k, k, generator=g, dtype=DT)
    Q = random_rotation(g)[:k, :k] if k == 3 else _rot2(0.7)
    torch.testing.assert_close(law.stress(Q @ F), Q @ law.stress(F), rtol=1e-12, atol=1e-13)


def _rot2(t):
    return torch.tensor([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]], dtype=DT)


def test_small_strain_laws_hooke_and_fd():
    g = torch.Generator().manual_seed(2)
    R = random_rotation(g)
    for law in (IsotropicElastic(E=2.0, nu=0.3), CubicElastic(3.0, 1.5, 1.2, R)):
        for k in (2, 3):
            e = 0.01 * torch.randn(3, k, k, generator=g, dtype=DT)
            e = 0.5 * (e + e.transpose(-1, -2))
            s, C = law.stress_tangent(e)
            torch.testing.assert_close(C, fd_tangent(law, e), rtol=1e-8, atol=1e-10)
            # major and minor symmetry
            C0 = C[0]
            torch.testing.assert_close(C0, C0.permute(2, 3, 0, 1))
            torch.testing.assert_close(C0, C0.permute(1, 0, 2, 3))


def test_isotropic_moduli_conversions():
    lam, mu = lame_from(E=1.0, nu=0.3)
    assert math.isclose(mu, 1.0 / 2.6) and math.isclose(lam, 0.3 / (1.3 * 0.4))
    law = IsotropicElastic(K=lam + 2 * mu / 3, mu=mu)
    assert math.isclose(law.lam, lam) and math.isclose(law.mu, mu)


def test_cubic_is_invariant_under_cube_rotations_and_isotropic_when_zener_is_one():
    c = CubicElastic(3.0, 1.2, 0.9)
    R90 = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=DT)
    torch.testing.assert_close(CubicElastic(3.0, 1.2, 0.9, R90).stiffness(3), c.stiffness(3))
    g = torch.Generator().manual_seed(3)
    # Zener ratio 2 C44 / (C11 - C12) = 1: isotropic, any rotation gives the same tensor
    iso = CubicElastic(3.0, 1.2, 0.9, random_rotation(g))
    torch.testing.assert_close(iso.stiffness(3), CubicElastic(3.0, 1.2, 0.9).stiffness(3))
    aniso = CubicElastic(3.0, 1.2, 2.0, random_rotation(g))
    assert (aniso.stiffness(3) - CubicElastic(3.0, 1.2, 2.0).stiffness(3)).abs().max() > 1e-3
    assert len(CubicElastic.grains(3.0, 1.2, 2.0, torch.stack([R90, R90]))) == 2


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: IsotropicElastic(E=-1.0, nu=0.3), "E"),
        (lambda: IsotropicElastic(E=1.0, nu=0.5), "nu"),
        (lambda: IsotropicElastic(K=1.0, mu=-0.2), "mu"),
        (lambda: IsotropicElastic(E=1.0), "pair"),
        (lambda: IsotropicElastic(1.0, "a"), "nu must be a number"),
        (lambda: StVenantKirchhoff(K=-1.0, mu=1.0), "K"),
        (lambda: NeoHookean(E=float("nan"), nu=0.2), "E"),
        (lambda: CubicElastic(1.0, 2.0, 0.5), "C11"),
        (lambda: CubicElastic(1.0, 0.5, -0.5), "C44"),
        (lambda: CubicElastic(1.0, 0.5, 0.5, torch.diag(torch.tensor([1.0, 1.0, -1.0]))), "rotation"),
    ],
)
def test_bad_moduli_raise_invalid_input(make, match):
    with pytest.raises(InvalidInput, match=match):
        make()


def test_neo_hookean_rejects_inverted_voxels_and_bad_shapes():
    law = NeoHookean(K=1.0, mu=1.0)
    F = torch.eye(3, dtype=DT).repeat(2, 1, 1)
    F[1, 0, 0] = -1.0
    with pytest.raises(InvalidInput, match="det F"):
        law.stress_tangent(F)
    with pytest.raises(InvalidInput, match="shape"):
        law.stress_tangent(torch.zeros(2, 3, 2, dtype=DT))


@pytest.mark.parametrize("c11, c12, msg", [(math.inf, 1.0, "C11 must be finite"), (2.0, math.nan, "C12 must be finite"),
                                           ("abc", 1.0, "C11 must be a number")])
def test_cubic_constants_must_be_finite_numbers(c11, c12, msg):
    """C11 = inf passed the stability check and gave NaN stresses; a string raised a bare ValueError."""
    with pytest.raises(InvalidInput, match=msg):
        CubicElastic(c11, c12, 1.0)
