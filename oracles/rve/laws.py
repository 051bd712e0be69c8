r"""Constitutive laws of the phases of an RVE.

Each law is a small class that maps a batch of voxel gradients to stress and
tangent:

* small-strain laws (``kind == "small"``) take the strain ``eps`` (``n x k x k``,
  symmetric) and return the Cauchy stress ``sigma`` and ``C = d sigma / d eps``;
* finite-strain laws (``kind == "finite"``) take the deformation gradient ``F``
  (``n x k x k``) and return the first Piola-Kirchhoff stress ``P`` and
  ``K = dP/dF`` (``K[a, i, J, k, L] = dP_iJ / dF_kL``).

``k = 2`` is plane strain (``eps33 = 0`` / ``F33 = 1``, only the in-plane block
is returned); ``k = 3`` is 3D. Moduli are the 3D moduli in both cases.

Linear laws set ``linear = True`` and expose the constant tangent
(:meth:`SmallStrainLaw.stiffness`), which lets the solver skip Newton and apply
the operator without storing a tangent per voxel.

Adding a law is one small class: subclass :class:`SmallStrainLaw` or
:class:`FiniteStrainLaw` and implement ``stress_tangent``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput

DTYPE = torch.float64

__all__ = [
    "CubicElastic",
    "FiniteStrainLaw",
    "IsotropicElastic",
    "NeoHookean",
    "SmallStrainLaw",
    "StVenantKirchhoff",
    "lame_from",
]


def _number(name: str, value: float) -> float:
    if isinstance(value, (bool, str, bytes)):
        raise InvalidInput(f"{name} must be a number, got {type(value).__name__} {value!r}")
    try:
        return float(value)
    except (TypeError, ValueError) as e:
        raise InvalidInput(f"{name} must be a number, got {value!r}") from e


def _positive(name: str, value: float) -> float:
    v = _number(name, value)
    if not math.isfinite(v) or v <= 0:
        raise InvalidInput(f"{name} must be positive and finite, got {value!r}")
    return v


def _finite(name: str, value: float) -> float:
    v = _number(name, value)
    if not math.isfinite(v):
        raise InvalidInput(f"{name} must be finite, got {value!r}")
    return v


def lame_from(
    E: float | None = None, nu: float | None = None, K: float | None = None, mu: float | None = None
) -> tuple[float, float]:
    """3D Lamé constants ``(lambda, mu)`` from ``(E, nu)`` or ``(K, mu)``.

    Raises:
        InvalidInput: a missing pair, a non-positive modulus, or ``nu`` outside
            ``(-1, 0.5)`` (the range where the isotropic tensor is positive definite).
    """
    if E is not None and nu is not None and K is None and mu is None:
        E = _positive("E", E)
        try:
            nu = _number("Poisson ratio nu", nu)
        except InvalidInput:
            raise InvalidInput(f"Poisson ratio nu must be a number in (-1, 0.5), got {nu!r}") from None
        if not (-1.0 < nu < 0.5):
            raise InvalidInput(f"Poisson ratio nu must lie in (-1, 0.5), got {nu!r}")
        return E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    if K is not None and mu is not None and E is None and nu is None:
        K, mu = _positive("K", K), _positive("mu", mu)
        return K - 2.0 * mu / 3.0, mu
    raise InvalidInput(
        f"give exactly one pair of moduli, (E, nu) or (K, mu); got E={E}, nu={nu}, K={K}, mu={mu}"
    )


def _eye(k: int, like: Tensor) -> Tensor:
    return torch.eye(k, dtype=like.dtype, device=like.device)


def _check_batch(name: str, A: Tensor, k: int | None = None) -> Tensor:
    if not isinstance(A, Tensor):
        A = torch.as_tensor(A, dtype=DTYPE)
    if A.dim() != 3 or A.shape[-1] != A.shape[-2] or A.shape[-1] not in (2, 3):
        raise InvalidInput(f"{name} must have shape n x k x k with k in (2, 3), got {tuple(A.shape)}")
    if k is not None and A.shape[-1] != k:
        raise InvalidInput(f"{name} must have k = {k}, got shape {tuple(A.shape)}")
    return A


class SmallStrainLaw:
    """Base class of small-strain laws: ``sigma(eps)`` and ``d sigma / d eps``."""

    kind = "small"
    linear = False

    def stress_tangent(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Stress ``n x k x k`` and tangent ``n x k x k x k x k`` at strains ``n x k x k``."""
        raise NotImplementedError

    def stress(self, eps: Tensor) -> Tensor:
        return self.stress_tangent(eps)[0]


class FiniteStrainLaw:
    """Base class of hyperelastic finite-strain laws: ``P(F)`` and ``dP/dF``."""

    kind = "finite"
    linear = False

    def stress_tangent(self, F: Tensor) -> tuple[Tensor, Tensor]:
        """``P`` ``n x k x k`` and ``K`` ``n x k x k x k x k`` at ``F`` ``n x k x k``."""
        raise NotImplementedError

    def stress(self, F: Tensor) -> Tensor:
        return self.stress_tangent(F)[0]


class _LinearSmallStrain(SmallStrainLaw):
    linear = True

    def stiffness(self, k: int, dtype=DTYPE, device=None) -> Tensor:
        """The constant tangent ``k x k x k x k`` (in-plane block for ``k = 2``)."""
        C = self._stiffness3().to(dtype=dtype, device=device)
        return C[:k, :k, :k, :k].clone()

    def _stiffness3(self) -> Tensor:
        raise NotImplementedError

    def stress_tangent(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        eps = _check_batch("strain", eps)
        k = eps.shape[-1]
        C = self.stiffness(k, eps.dtype, eps.device)
        sig = torch.einsum("ijkl,nkl->nij", C, eps)
        return sig, C.expand(eps.shape[0], k, k, k, k)


class _IsotropicModuli:
    """Lamé constants from ``E, nu`` or ``K, mu`` (3D values, also in plane strain)."""

    def __init__(
        self,
        E: float | None = None,
        nu: float | None = None,
        *,
        K: float | None = None,
        mu: float | None = None,
    ):
        self.lam, self.mu = lame_from(E=E, nu=nu, K=K, mu=mu)

    @property
    def bulk(self) -> float:
        return self.lam + 2.0 * self.mu / 3.0


class IsotropicElastic(_IsotropicModuli, _LinearSmallStrain):
    """Isotropic linear elasticity, ``sigma = lambda tr(eps) I + 2 mu eps``.

    Args:
        E, nu: Young's modulus and Poisson ratio, or
        K, mu: bulk and shear modulus (3D values, also in plane strain).
    """

    def _stiffness3(self) -> Tensor:
        I = torch.eye(3, dtype=DTYPE)
        return self.lam * torch.einsum("ij,kl->ijkl", I, I) + self.mu * (
            torch.einsum("ik,jl->ijkl", I, I) + torch.einsum("il,jk->ijkl", I, I)
        )

    def __repr__(self) -> str:
        return f"IsotropicElastic(K={self.bulk:.6g}, mu={self.mu:.6g})"


class CubicElastic(_LinearSmallStrain):
    """Cubic linear elasticity rotated into the sample frame.

    ``C_ijkl = R_ia R_jb R_kc R_ld C0_abcd`` where ``C0`` is the cubic tensor of
    ``C11, C12, C44`` in the crystal frame and ``R`` (``3 x 3``, proper
    rotation) maps crystal to sample axes. A polycrystal is one law per grain:
    see :meth:`grains`.

    Raises:
        InvalidInput: when ``C0`` is not positive definite
            (``C44 > 0``, ``C11 > |C12|``, ``C11 + 2 C12 > 0``) or ``R`` is not
            a rotation.
    """

    def __init__(self, C11: float, C12: float, C44: float, R: Tensor | Sequence | None = None):
        self.C11, self.C12 = _finite("C11", C11), _finite("C12", C12)
        self.C44 = _positive("C44", C44)
        if not (self.C11 > abs(self.C12) and self.C11 + 2 * self.C12 > 0):
            raise InvalidInput(
                f"cubic constants must satisfy C11 > |C12| and C11 + 2 C12 > 0, "
                f"got C11={C11}, C12={C12}"
            )
        try:
            R = torch.eye(3, dtype=DTYPE) if R is None else torch.as_tensor(R, dtype=DTYPE)
        except (TypeError, ValueError, RuntimeError):
            raise InvalidInput(f"rotation R must be a 3 x 3 array of numbers, got {R!r}") from None
        if R.shape != (3, 3):
            raise InvalidInput(f"rotation R must be 3 x 3, got shape {tuple(R.shape)}")
        if not torch.allclose(R @ R.T, torch.eye(3, dtype=DTYPE), atol=1e-8) or torch.det(R) < 0:
            raise InvalidInput(f"R must be a proper rotation (R R^T = I, det R = 1), got {R.tolist()}")
        self.R = R

    @classmethod
    def grains(cls, C11: float, C12: float, C44: float, rotations: Tensor) -> list[CubicElastic]:
        """One law per grain from ``g x 3 x 3`` rotations (phase id = grain id)."""
        rotations = torch.as_tensor(rotations, dtype=DTYPE)
        if rotations.dim() != 3 or rotations.shape[1:] != (3, 3):
            raise InvalidInput(f"rotations must be g x 3 x 3, got shape {tuple(rotations.shape)}")
        return [cls(C11, C12, C44, R) for R in rotations]

    def _stiffness3(self) -> Tensor:
        C0 = torch.zeros(3, 3, 3, 3, dtype=DTYPE)
        for i in range(3):
            for j in range(3):
                C0[i, i, j, j] = self.C11 if i == j else self.C12
                if i != j:
                    C0[i, j, i, j] = C0[i, j, j, i] = self.C44
        R = self.R
        return torch.einsum("ia,jb,kc,ld,abcd->ijkl", R, R, R, R, C0)

    def __repr__(self) -> str:
        return f"CubicElastic(C11={self.C11:.6g}, C12={self.C12:.6g}, C44={self.C44:.6g})"


class _HyperelasticIsotropic(_IsotropicModuli, FiniteStrainLaw):
    def small_strain_stiffness(self, k: int) -> Tensor:
        """The tangent at ``F = I`` (``k x k x k x k``): isotropic ``lambda, mu``."""
        return IsotropicElastic(K=self.bulk, mu=self.mu).stiffness(k)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(K={self.bulk:.6g}, mu={self.mu:.6g})"


class StVenantKirchhoff(_HyperelasticIsotropic):
    r"""St. Venant-Kirchhoff: ``S = lambda tr(E) I + 2 mu E``, ``E = (F^T F - I)/2``, ``P = F S``."""

    def stress_tangent(self, F: Tensor) -> tuple[Tensor, Tensor]:
        F = _check_batch("F", F)
        k = F.shape[-1]
        I = _eye(k, F)
        E = 0.5 * (F.transpose(-1, -2) @ F - I)
        S = self.lam * E.diagonal(dim1=-2, dim2=-1).sum(-1)[:, None, None] * I + 2 * self.mu * E
        P = F @ S
        FFt = F @ F.transpose(-1, -2)
        # K_iJkL = d_ik S_JL + lam F_iJ F_kL + mu ((F F^T)_ik d_JL + F_iL F_kJ), summed in
        # place in this order (one temporary of n k^4 doubles instead of three)
        K = torch.einsum("ik,nJL->niJkL", I, S)
        K += torch.einsum("niJ,nkL->niJkL", F, F).mul_(self.lam)
        K += torch.einsum("nik,JL->niJkL", FFt, I).mul_(self.mu)
        K += torch.einsum("niL,nkJ->niJkL", F, F).mul_(self.mu)
        return P, K


class NeoHookean(_HyperelasticIsotropic):
    r"""Compressible Neo-Hookean, ``psi = mu/2 (I1 - 3) - mu ln J + lambda/2 (ln J)^2``.

    ``P = mu (F - F^{-T}) + lambda ln(J) F^{-T}``. Raises InvalidInput for
    ``det F <= 0``.
    """

    def stress_tangent(self, F: Tensor) -> tuple[Tensor, Tensor]:
        F = _check_batch("F", F)
        k = F.shape[-1]
        J = torch.linalg.det(F)
        if (J <= 0).any():
            i = int((J <= 0).nonzero()[0])
            raise InvalidInput(f"det F must be positive, got det F = {J[i].item():.6g} at voxel {i}")
        I = _eye(k, F)
        FiT = torch.linalg.inv(F).transpose(-1, -2)
        lnJ = torch.log(J)[:, None, None]
        P = self.mu * (F - FiT) + self.lam * lnJ * FiT
        # mu I (x) I + lam FiT (x) FiT + (mu - lam ln J) FiT (x)' FiT, summed in place in this
        # order (one temporary of n k^4 doubles instead of three; + commutes exactly)
        K = torch.einsum("niJ,nkL->niJkL", FiT, FiT).mul_(self.lam)
        K += self.mu * torch.einsum("ik,JL->iJkL", I, I)
        K += torch.einsum("niL,nkJ->niJkL", FiT, FiT).mul_(self.mu - self.lam * lnJ[..., None, None])
        return P, K
