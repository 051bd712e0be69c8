"""Component storage of tensor fields and the tangent operators on it."""

import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve.fields import ComponentBasis, DenseTangent, IsotropicTangent, mandel_basis
from oracles.rve.laws import CubicElastic, IsotropicElastic

DT = torch.float64


def sym(A):
    return 0.5 * (A + A.transpose(-1, -2))


@pytest.mark.parametrize("kind", ["small", "finite"])
@pytest.mark.parametrize("k", [2, 3])
def test_vec_ten_round_trip_and_inner_product(kind, k):
    """Components keep the tensor inner product: ``vec(A) . vec(B) = A : B``
    (Mandel weights for symmetric tensors)."""
    g = torch.Generator().manual_seed(k)
    basis = ComponentBasis(kind, k)
    A = torch.randn(4, k, k, generator=g, dtype=DT)
    B = torch.randn(4, k, k, generator=g, dtype=DT)
    if kind == "small":
        A, B = sym(A), sym(B)
    assert basis.m == (k * (k + 1) // 2 if kind == "small" else k * k)
    torch.testing.assert_close(basis.ten(basis.vec(A)), A)
    torch.testing.assert_close((basis.vec(A) * basis.vec(B)).sum(-1), (A * B).sum((-1, -2)))


@pytest.mark.parametrize("k", [2, 3])
def test_mat_represents_the_stiffness_on_components(k):
    """``mat(C) vec(eps) = vec(C : eps)`` and ``ten4(mat(C)) = C`` for a
    minor- and major-symmetric anisotropic stiffness."""
    g = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=DT))
    if torch.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    C = CubicElastic(3.0, 1.0, 2.0, Q).stiffness(k, DT, "cpu")
    basis = ComponentBasis("small", k)
    eps = sym(torch.randn(5, k, k, generator=g, dtype=DT))
    sig = torch.einsum("ijkl,nkl->nij", C, eps)
    torch.testing.assert_close(basis.vec(eps) @ basis.mat(C).T, basis.vec(sig))
    torch.testing.assert_close(basis.ten4(basis.mat(C)), C)


@pytest.mark.parametrize("k", [2, 3])
def test_isotropic_tangent_equals_the_dense_tangent_of_its_stiffness(k):
    basis = ComponentBasis("small", k)
    laws = [IsotropicElastic(1.0, 0.25), IsotropicElastic(7.0, 0.4)]
    shape = (4,) * k
    pm = torch.randint(0, 2, shape, generator=torch.Generator().manual_seed(2))
    lam = torch.tensor([law.lam for law in laws], dtype=DT)[pm]
    mu = torch.tensor([law.mu for law in laws], dtype=DT)[pm]
    iso = IsotropicTangent(lam, 2.0 * mu, k)
    Cm = torch.stack([basis.mat(law.stiffness(k, DT, "cpu")) for law in laws])[pm]  # *grid x m x m
    dense = DenseTangent(Cm.movedim(-1, 0).movedim(-1, 0).unsqueeze(0))  # 1 x m x m x *grid
    x = torch.randn(1, 3, basis.m, *shape, generator=torch.Generator().manual_seed(3), dtype=DT)
    torch.testing.assert_close(iso(x), dense(x))


def test_mandel_basis_order_and_bad_dimension():
    idx, w = mandel_basis(3)
    assert idx == [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    assert w[:3] == [1.0] * 3 and all(abs(v * v - 2.0) < 1e-15 for v in w[3:])
    with pytest.raises(InvalidInput, match="dimension must be 2 or 3"):
        mandel_basis(4)
