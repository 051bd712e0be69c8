"""Analytic hyperelastic laws for the tests, differentiated by torch.func.

Written directly as ``W(F)`` (no invariant machinery of the package), so they
are an independent reference for stress and tangent.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.func import hessian, jacrev, vmap


def _embed(F: Tensor) -> Tensor:
    """Plane strain: 2x2 in-plane block -> 3x3 with F33 = 1."""
    if F.shape[-1] == 3:
        return F
    # out of place (vmap-friendly)
    F = torch.nn.functional.pad(F, (0, 1, 0, 1))
    e33 = torch.zeros(3, 3, dtype=F.dtype)
    e33[2, 2] = 1.0
    return F + e33


def _det3(F: Tensor) -> Tensor:
    # explicit triple product: twice differentiable everywhere (no LU in the graph)
    return torch.dot(F[0], torch.linalg.cross(F[1], F[2]))


def neo_hookean_energy(F: Tensor, mu: float = 1.0, lam: float = 2.0) -> Tensor:
    """Compressible Neo-Hooke ``mu/2 (I1 - 3) - mu ln J + lam/2 ln^2 J`` of one ``k x k`` F."""
    F3 = _embed(F)
    J = _det3(F3)
    return 0.5 * mu * ((F3 * F3).sum() - 3) - mu * torch.log(J) + 0.5 * lam * torch.log(J) ** 2


def mooney_rivlin_energy(F: Tensor, c1: float = 0.4, c2: float = 0.1, kappa: float = 3.0) -> Tensor:
    """Compressible Mooney-Rivlin ``c1 (I1 - 3) + c2 (I2 - 3) - 2 (c1 + 2 c2) ln J + kappa/2 (J - 1)^2``."""
    F3 = _embed(F)
    C = F3.T @ F3
    I1 = torch.trace(C)
    I2 = 0.5 * (I1**2 - torch.trace(C @ C))
    J = _det3(F3)
    return (c1 * (I1 - 3) + c2 * (I2 - 3) - 2 * (c1 + 2 * c2) * torch.log(J)
            + 0.5 * kappa * (J - 1) ** 2)


def stress_tangent(energy, F: Tensor):
    """``P`` (``n x k x k``) and ``dP/dF`` (``n x k x k x k x k``) of ``energy`` at ``F``."""
    P = vmap(jacrev(energy))(F)
    A = vmap(hessian(energy))(F)
    return P, A


def random_F(n: int, dim: int, amplitude: float, generator: torch.Generator) -> Tensor:
    """``n x k x k``: identity plus uniform perturbations in ``[-amplitude, amplitude]``."""
    return torch.eye(dim, dtype=torch.float64) + amplitude * (
        2 * torch.rand(n, dim, dim, generator=generator, dtype=torch.float64) - 1
    )


def random_rotation(dim: int, generator: torch.Generator) -> Tensor:
    """A uniformly random rotation (det +1) of dimension ``dim``."""
    Q, R = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    Q = Q * torch.sign(torch.diagonal(R))
    if torch.linalg.det(Q) < 0:
        Q[:, 0] = -Q[:, 0]
    return Q
