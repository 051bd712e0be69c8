"""Exact physics of the invariant energy networks (untrained and trained).

Objectivity, material symmetry and the normalization are structural, so they
are checked on randomly initialized networks with random scalings (any seed);
the tangent against finite differences of P and P against autograd of W.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from oracles.exceptions import InvalidInput
from surrogates.neural.energy import InvariantEnergy
from surrogates.neural.invariants import InvariantSet, check_deformation_gradient
from tests.surrogates.neural.laws import random_F, random_rotation

DT = torch.float64

CONFIGS = [
    (dim, sym, pc)
    for dim in (2, 3)
    for sym in ("isotropic", "transverse", "cubic")
    for pc in (False, True)
    if not (pc and sym == "transverse")
]
FIBRE = {2: (1.0, 0.6), 3: (0.3, -1.0, 0.5)}


def make_energy(dim, sym, pc, seed, growth=0.05):
    e = InvariantEnergy(dim=dim, symmetry=sym, fibre=FIBRE[dim] if sym == "transverse" else None,
                        hidden=(8, 8), polyconvex=pc, growth=growth, seed=seed)
    g = torch.Generator().manual_seed(seed + 7)
    # random, non-trivial scalings: the exact constraints must not depend on them
    with torch.no_grad():
        e.inv_scale.copy_(0.05 + torch.rand(e.inv_scale.shape, generator=g, dtype=DT))
        e.energy_scale.fill_(0.5 + float(torch.rand(1, generator=g, dtype=DT)))
    return e


def ids(c):
    return f"{c[0]}d-{c[1]}-{'poly' if c[2] else 'mlp'}"


@pytest.fixture(params=[0, 1], ids=lambda s: f"seed{s}")
def seed(request):
    return request.param


def symmetry_group(sym, dim, fibre, g):
    """Proper (det +1) elements R of the material symmetry group; ``F -> F R^T`` leaves W
    unchanged. Improper elements would flip ``det F``, outside the domain ``det F > 0``."""
    if sym == "isotropic":
        return [random_rotation(dim, g), random_rotation(dim, g)]
    if sym == "transverse":
        a = torch.tensor(fibre, dtype=DT)
        a = a / a.norm()
        out = []
        if dim == 2:
            # in 2-D the proper group of a fibre is {1, -1}
            return [-torch.eye(2, dtype=DT)]
        for _ in range(2):
            th = float(2 * math.pi * torch.rand(1, generator=g, dtype=DT))
            K = torch.tensor([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]], dtype=DT)
            out.append(torch.matrix_exp(th * K))  # rotation about a0
        out.append(2 * torch.outer(a, a) - torch.eye(3, dtype=DT))  # rotation by pi about a0
        return out
    # cubic / square: signed permutation matrices
    out = []
    perms = list(itertools.permutations(range(dim)))
    while len(out) < 3:
        p = perms[int(torch.randint(len(perms), (1,), generator=g))]
        s = torch.randint(0, 2, (dim,), generator=g).to(DT) * 2 - 1
        R = torch.eye(dim, dtype=DT)[list(p)] * s[:, None]
        if torch.linalg.det(R) > 0 and not torch.equal(R, torch.eye(dim, dtype=DT)):
            out.append(R)
    return out


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_objectivity(cfg, seed):
    dim, sym, pc = cfg
    e = make_energy(dim, sym, pc, seed)
    g = torch.Generator().manual_seed(seed)
    F = random_F(6, dim, 0.3, g)
    W, P, A = e(F, order=2)
    for _ in range(3):
        Q = random_rotation(dim, g)
        W2, P2, A2 = e(Q @ F, order=2)
        torch.testing.assert_close(W2, W, atol=1e-10, rtol=0)
        torch.testing.assert_close(P2, Q @ P, atol=1e-10, rtol=0)
        torch.testing.assert_close(
            A2, torch.einsum("ia,kb,naJbL->niJkL", Q, Q, A), atol=1e-10, rtol=0
        )


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_material_symmetry(cfg, seed):
    dim, sym, pc = cfg
    e = make_energy(dim, sym, pc, seed)
    g = torch.Generator().manual_seed(100 + seed)
    F = random_F(6, dim, 0.3, g)
    W, P, A = e(F, order=2)
    for R in symmetry_group(sym, dim, FIBRE[dim], g):
        W2, P2, A2 = e(F @ R.T, order=2)
        torch.testing.assert_close(W2, W, atol=1e-10, rtol=0)
        torch.testing.assert_close(P2, P @ R.T, atol=1e-10, rtol=0)
        torch.testing.assert_close(
            A2, torch.einsum("Ja,Lb,niakb->niJkL", R, R, A), atol=1e-10, rtol=0
        )


def test_symmetry_is_not_vacuous():
    """A transversely isotropic energy must change under a rotation that moves the fibre,
    and a cubic one under a rotation by 45 degrees (else the symmetry tests prove nothing)."""
    g = torch.Generator().manual_seed(3)
    for dim, sym in ((3, "transverse"), (3, "cubic"), (2, "cubic"), (2, "transverse")):
        e = make_energy(dim, sym, False, 3)
        F = random_F(4, dim, 0.3, g)
        c, s = math.cos(math.pi / 4), math.sin(math.pi / 4)
        R = torch.eye(dim, dtype=DT)
        R[:2, :2] = torch.tensor([[c, -s], [s, c]], dtype=DT)
        W = e(F, order=0)[0]
        W2 = e(F @ R.T, order=0)[0]
        assert (W2 - W).abs().max() > 1e-6, (dim, sym)


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_normalization_exact(cfg, seed):
    dim, sym, pc = cfg
    e = make_energy(dim, sym, pc, seed)
    eye = torch.eye(dim, dtype=DT).unsqueeze(0)
    W, P, A = e(eye, order=2)
    assert abs(float(W.detach())) <= 1e-12
    assert float(P.detach().abs().max()) <= 1e-12
    # and the stress is not trivially zero elsewhere
    g = torch.Generator().manual_seed(seed)
    _, P1, _ = e(random_F(3, dim, 0.2, g), order=1)
    assert float(P1.detach().abs().max()) > 1e-4


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_stress_is_autograd_of_energy(cfg, seed):
    dim, sym, pc = cfg
    e = make_energy(dim, sym, pc, seed)
    g = torch.Generator().manual_seed(seed + 11)
    F = random_F(5, dim, 0.3, g).requires_grad_(True)
    W, P, _ = e(F, order=1)
    (Pa,) = torch.autograd.grad(W.sum(), F)
    torch.testing.assert_close(P, Pa, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("cfg", CONFIGS, ids=ids)
def test_tangent_matches_finite_differences(cfg, seed):
    dim, sym, pc = cfg
    e = make_energy(dim, sym, pc, seed)
    g = torch.Generator().manual_seed(seed + 21)
    F = random_F(4, dim, 0.3, g)
    _, _, A = e(F, order=2)
    A = A.detach()
    h = 1e-6
    fd = torch.empty_like(A)
    for k in range(dim):
        for L in range(dim):
            dF = torch.zeros(dim, dim, dtype=DT)
            dF[k, L] = h
            fd[:, :, :, k, L] = (e(F + dF, order=1)[1] - e(F - dF, order=1)[1]).detach() / (2 * h)
    scale = A.abs().max()
    assert float((A - fd).abs().max() / scale) < 1e-7
    # major symmetry of an energy's tangent
    torch.testing.assert_close(A, A.permute(0, 3, 4, 1, 2), atol=1e-12, rtol=1e-12)


def acoustic_min_eig(A: torch.Tensor, g: torch.Generator, num_dirs: int = 20) -> float:
    """Smallest eigenvalue of ``Q_ik = A_iJkL N_J N_L`` over random unit ``N``."""
    A = A.detach()
    dim = A.shape[-1]
    worst = math.inf
    for _ in range(num_dirs):
        N = torch.randn(dim, generator=g, dtype=DT)
        N = N / N.norm()
        Q = torch.einsum("niJkL,J,L->nik", A, N, N)
        worst = min(worst, float(torch.linalg.eigvalsh(Q).min()))
    return worst


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("sym", ["isotropic", "cubic"])
def test_polyconvex_acoustic_tensor_positive_untrained(dim, sym, seed):
    e = make_energy(dim, sym, True, seed, growth=0.0)
    g = torch.Generator().manual_seed(seed + 31)
    # large, far-from-identity deformations (det F > 0 kept)
    F = random_F(400, dim, 0.6, g)
    F = F[torch.linalg.det(F) > 0.05]
    _, _, A = e(F, order=2)
    assert acoustic_min_eig(A, g) > 0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="symmetry"):
        InvariantSet(symmetry="hexagonal")
    with pytest.raises(ValueError, match="fibre"):
        InvariantSet(symmetry="transverse", dim=3, fibre=(1.0, 0.0))
    with pytest.raises(ValueError, match="polyconvex"):
        InvariantEnergy(dim=3, symmetry="transverse", fibre=(1, 0, 0), polyconvex=True)
    with pytest.raises(InvalidInput, match="det F"):
        check_deformation_gradient(-torch.eye(3, dtype=DT).unsqueeze(0))
    with pytest.raises(ValueError, match="n x k x k"):
        check_deformation_gradient(torch.eye(4, dtype=DT).unsqueeze(0))
    with pytest.raises(ValueError, match="growth"):
        InvariantEnergy(growth=-1.0)
