r"""Invariants of the right Cauchy-Green tensor and their closed-form derivatives.

An energy written in invariants of :math:`C = F^T F` is objective by
construction (``C`` does not see a rotation ``Q F``), and it has the material
symmetry of its invariant set exactly. The constitutive derivatives then follow
from the chain rule

.. math::

    P = \sum_a W_a \frac{\partial I_a}{\partial F}, \qquad
    \frac{\partial P}{\partial F} = \sum_{ab} W_{ab}
        \frac{\partial I_a}{\partial F} \otimes \frac{\partial I_b}{\partial F}
        + \sum_a W_a \frac{\partial^2 I_a}{\partial F \partial F},

with ``W_a``, ``W_ab`` the gradient and Hessian of the energy with respect to
the few invariants. The invariant derivatives below are closed-form tensor
expressions; this is far cheaper than differentiating the whole
``F -> W`` graph twice with autograd. Every tensor carries the batch as its
last, contiguous dimension (``F`` is ``k x k x n``), so each operation is one
long vectorized loop; the tangent merges the rank-one parts of the invariant
Hessians into the first sum (:meth:`InvariantSet.tangent`). The code is plain
differentiable torch (training backpropagates through it).

Plane strain (``k = 2``): ``F`` is the in-plane block with ``F33 = 1``, and
every invariant is that of the embedded 3-D ``C = diag(C_2d, 1)``. Since the
embedding is block-diagonal, the in-plane derivatives take the same form as in
3-D with ``k = 2`` indices; only the scalar invariants carry the ``C33 = 1``
contribution.

Invariant sets (``symmetry``):

* ``"isotropic"``: ``I1 = tr C``, ``I2 = tr cof C = (I1^2 - tr C^2) / 2``,
  ``J = det F``.
* ``"transverse"``: isotropic plus ``I4 = a0 . C a0`` and ``I5 = a0 . C^2 a0``
  for the unit fibre direction ``a0`` (``k`` entries, in plane for ``k = 2``).
* ``"cubic"``: isotropic plus ``K1 = sum_A C_AA^2`` and ``K2 = sum_A C_AA^3``
  over the cube axes (in 2-D, the square axes plus ``C33 = 1``). ``K1`` adds
  the third independent elastic constant of cubic crystals at small strain,
  ``K2`` a cubic-symmetric anisotropic term at third order. This is a subset of
  the full cubic integrity basis; it is invariant under the whole cubic (or
  square) group, so symmetry holds exactly.

All invariants used by the polyconvex networks (``I1 = |F|^2``,
``I2 = |cof F|^2``, ``J``, ``K1 = sum |F e_A|^4``, ``K2 = sum |F e_A|^6``) are
convex functions of ``(F, cof F, det F)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput

SYMMETRIES = ("isotropic", "transverse", "cubic")

#: names of the invariants of each symmetry, in order
INVARIANT_NAMES = {
    "isotropic": ("I1", "I2", "J"),
    "transverse": ("I1", "I2", "J", "I4", "I5"),
    "cubic": ("I1", "I2", "J", "K1", "K2"),
}

#: stress of each invariant at F = I, ``dI_a/dF (I) = alpha_a * 1 + beta_a * a0 (x) a0``
#: (used by the stress-normalization terms)
IDENTITY_STRESS_ALPHA = {"I1": 2.0, "I2": 4.0, "J": 1.0, "I4": 0.0, "I5": 0.0, "K1": 4.0, "K2": 6.0}
IDENTITY_STRESS_BETA = {"I1": 0.0, "I2": 0.0, "J": 0.0, "I4": 2.0, "I5": 4.0, "K1": 0.0, "K2": 0.0}


def check_symmetry(symmetry: str) -> str:
    if symmetry not in SYMMETRIES:
        raise ValueError(f"symmetry must be one of {SYMMETRIES}, got {symmetry!r}")
    return symmetry


def check_deformation_gradient(F: Tensor, dim: int | None = None) -> Tensor:
    """Validate ``F``: ``n x k x k`` with ``k`` in (2, 3), finite, ``det F > 0``.

    Raises :class:`~oracles.exceptions.InvalidInput` (a ``ValueError``), as the
    other material models do.
    """
    if not isinstance(F, Tensor):
        F = torch.as_tensor(F, dtype=torch.float64)
    if F.dim() != 3 or F.shape[-1] != F.shape[-2] or F.shape[-1] not in (2, 3):
        raise InvalidInput(f"F must be n x k x k with k in (2, 3), got shape {tuple(F.shape)}")
    if dim is not None and F.shape[-1] != dim:
        raise InvalidInput(f"F must be n x {dim} x {dim} for this model, got shape {tuple(F.shape)}")
    if not torch.isfinite(F).all():
        raise InvalidInput("F must be finite, got NaN or inf entries")
    J = torch.linalg.det(F)
    if (J <= 0).any():
        i = int((J <= 0).nonzero()[0])
        raise InvalidInput(f"det F must be positive, got det F = {J[i].item():.6g} at point {i}")
    return F


def _cof(F: Tensor) -> Tensor:
    """Cofactor ``det F * F^{-T}`` of ``k x k x n`` (batch last), without a division."""
    if F.shape[0] == 2:
        return torch.stack([torch.stack([F[1, 1], -F[1, 0]]), torch.stack([-F[0, 1], F[0, 0]])])
    F1 = F.roll((-1, -1), (0, 1))
    F2 = F.roll((-2, -2), (0, 1))
    F12 = F.roll((-1, -2), (0, 1))
    F21 = F.roll((-2, -1), (0, 1))
    return F1 * F2 - F12 * F21


def _mm(X: Tensor, Y: Tensor) -> Tensor:
    """Per-point product of ``k x k x n`` matrices (``k`` multiply-adds, no reduction)."""
    out = X[:, 0, None, :] * Y[None, 0]
    for j in range(1, X.shape[1]):
        out.addcmul_(X[:, j, None, :], Y[None, j])
    return out


class InvariantDerivatives(NamedTuple):
    """Invariants of a batch of ``F`` and what the stress and tangent need; batch last.

    Attributes:
        F: ``k x k x n``.
        I: ``p x n`` invariants.
        dI: ``p x k x k x n`` derivatives ``dI_a/dF`` (None for order 0).
        C: ``k x k x n`` right Cauchy-Green tensor.
        I1: ``n``.
        J: ``n`` ``det F``.
        cof: ``k x k x n`` ``cof F``.
        extra: symmetry-specific intermediates (``Ca``, ``Fa``: ``k x n``;
            ``d``: ``k x n`` diagonal of ``C``).
    """

    F: Tensor
    I: Tensor
    dI: Tensor | None
    C: Tensor
    I1: Tensor
    J: Tensor
    cof: Tensor
    extra: dict


@dataclass
class InvariantSet:
    """Invariants of ``C = F^T F`` with first and second derivatives w.r.t. ``F``.

    Args:
        symmetry: ``"isotropic"``, ``"transverse"`` or ``"cubic"``.
        dim: ``k``, 2 (plane strain) or 3.
        fibre: ``k`` fibre direction ``a0`` (transverse only; normalized here).
    """

    symmetry: str = "isotropic"
    dim: int = 3
    fibre: tuple[float, ...] | None = None

    def __post_init__(self):
        check_symmetry(self.symmetry)
        if isinstance(self.dim, bool) or self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        self.dim = int(self.dim)  # 3.0 or numpy's 3 index and size tensors as 3
        if self.symmetry != "transverse" and self.fibre is not None:
            raise ValueError(f"a fibre direction is used only with symmetry='transverse', got fibre={self.fibre!r} "
                             f"with symmetry={self.symmetry!r}")
        if self.symmetry == "transverse":
            if self.fibre is None or len(self.fibre) != self.dim:
                raise ValueError(
                    f"symmetry='transverse' needs a fibre direction of {self.dim} entries, "
                    f"got {self.fibre!r}"
                )
            # hypot: the norm of (1e200, 1e200, 0) or (1e-200, 0, 0) without overflow or underflow
            nrm = math.hypot(*(float(v) for v in self.fibre))
            if not (all(math.isfinite(float(v)) for v in self.fibre) and nrm > 0):
                raise ValueError(f"fibre direction must be finite and non-zero, got {self.fibre!r}")
            self.fibre = tuple(float(v) / nrm for v in self.fibre)

    @property
    def names(self) -> tuple[str, ...]:
        return INVARIANT_NAMES[self.symmetry]

    @property
    def num(self) -> int:
        return len(self.names)

    def alpha_beta(self) -> tuple[list[float], list[float]]:
        """Coefficients of ``dI_a/dF`` at ``F = I`` on ``1`` and on ``a0 (x) a0``."""
        return (
            [IDENTITY_STRESS_ALPHA[n] for n in self.names],
            [IDENTITY_STRESS_BETA[n] for n in self.names],
        )

    def _a0(self, F: Tensor) -> Tensor:
        return torch.tensor(self.fibre, dtype=F.dtype, device=F.device)

    def values(self, F: Tensor) -> Tensor:
        """``n x p`` invariants of ``F`` (``n x k x k``)."""
        return self.derivatives(F.permute(1, 2, 0), order=0).I.T

    def identity_values(self, dtype=torch.float64, device=None) -> Tensor:
        """``p`` invariants at ``F = I`` (computed by the same code path)."""
        eye = torch.eye(self.dim, dtype=dtype, device=device).unsqueeze(0)
        return self.values(eye)[0]

    def derivatives(self, F: Tensor, order: int = 1) -> InvariantDerivatives:
        """Invariants and their first derivatives at ``F`` (``k x k x n``, batch last).

        ``order`` 0 gives the values only (``dI`` None). Differentiable (autograd
        flows to ``F``).
        """
        k = self.dim
        extra = 3.0 - k  # C33 = 1 contribution of plane strain
        C = _mm(F.transpose(0, 1), F)
        I1 = C.diagonal(0, 0, 1).sum(-1) + extra
        I2 = 0.5 * (I1 * I1 - (C * C).sum((0, 1)) - extra)
        cof = _cof(F)
        J = (F[0] * cof[0]).sum(0)
        vals = [I1, I2, J]
        more: dict = {}
        if self.symmetry == "transverse":
            a = self._a0(F)
            Ca = (C * a[None, :, None]).sum(1)  # k x n
            Fa = (F * a[None, :, None]).sum(1)
            vals += [(a[:, None] * Ca).sum(0), (Ca * Ca).sum(0)]
            more.update(a=a, Ca=Ca, Fa=Fa)
        elif self.symmetry == "cubic":
            d = C.diagonal(0, 0, 1).T  # k x n
            vals += [(d * d).sum(0) + extra, (d * d * d).sum(0) + extra]
            more.update(d=d)
        I = torch.stack(vals)
        dI = None
        if order >= 1:
            dI = [2.0 * F, 2.0 * (I1 * F - _mm(F, C)), cof]
            if self.symmetry == "transverse":
                a, Ca, Fa = more["a"], more["Ca"], more["Fa"]
                FCa = (F * Ca[None, :, :]).sum(1)
                dI += [2.0 * Fa[:, None, :] * a[None, :, None],
                       2.0 * (Fa[:, None, :] * Ca[None, :, :] + FCa[:, None, :] * a[None, :, None])]
            elif self.symmetry == "cubic":
                d = more["d"]
                dI += [4.0 * F * d[None], 6.0 * F * (d * d)[None]]
            dI = torch.stack(dI)  # p x k x k x n
        return InvariantDerivatives(F, I, dI, C, I1, J, cof, more)

    @staticmethod
    def stress(inv: InvariantDerivatives, g: Tensor, out: Tensor | None = None) -> Tensor:
        """``P = sum_a g_a dI_a/dF``: ``... x k x k x n`` for weights ``g`` (``... x p x n``).

        ``out``: optional ``k x k x n`` storage to write ``P`` into (no autograd).
        """
        p, k, _, n = inv.dI.shape
        dIf = inv.dI.reshape(p, k * k, n)
        if out is None:
            P = g[..., 0, None, :] * dIf[0]
        else:
            P = torch.mul(g[..., 0, None, :], dIf[0], out=out.view(k * k, n))
        for a in range(1, p):
            P.addcmul_(g[..., a, None, :], dIf[a])
        return P.unflatten(-2, (k, k))

    def tangent(self, inv: InvariantDerivatives, g: Tensor, H: Tensor, out: Tensor | None = None) -> Tensor:
        r"""``dP/dF`` (``k x k x k x k x n``, index ``iJkL``) of ``P = sum_a g_a dI_a/dF``.

        ``sum_ab H_ab dI_a (x) dI_b + sum_a g_a d^2 I_a/dF^2`` with the rank-one
        parts of the invariant Hessians merged into the first sum
        (``Q_a = sum_b H_ab dI_b``, plus ``2 g_2 F`` for ``I1`` and
        ``g_J F^-T`` for ``J``), the "swapped" parts ``X_iL Y_kJ`` collected
        in one tensor and the ``delta_ik S_JL`` and ``delta_JL D_ik`` parts
        added on the diagonals.

        Args:
            inv: from :meth:`derivatives` (order 1).
            g: ``p x n`` energy gradient w.r.t. the invariants.
            H: ``p x p x n`` energy Hessian w.r.t. the invariants.
            out: optional ``k x k x k x k x n`` storage to write the tangent
                into (its last dimension of stride 1; no autograd).
        """
        F, dI, C, I1, J, cof = inv.F, inv.dI, inv.C, inv.I1, inv.J, inv.cof
        p, k, _, n = dI.shape
        eye = torch.eye(k, dtype=F.dtype, device=F.device)
        FiT = cof / J
        dIf = dI.reshape(p, k * k, n)
        Q = H[:, 0, None, :] * dIf[0][None]
        for b in range(1, p):
            Q.addcmul_(H[:, b, None, :], dIf[b][None])
        Q = Q.reshape(p, k, k, n)
        g2, gJ = g[1], g[2]
        Q[0] += (2.0 * g2) * F
        Q[2] += gJ * FiT
        if out is None:
            A = dI[0][:, :, None, None] * Q[0][None, None]
        else:
            A = torch.mul(dI[0][:, :, None, None], Q[0][None, None], out=out)
        for i in range(1, p):
            A.addcmul_(dI[i][:, :, None, None], Q[i][None, None])
        # "swapped" terms X_iL Y_kJ, added in (i, L, k, J) order through a permuted view
        Tsw = A.permute(0, 3, 2, 1, 4)
        Tsw.addcmul_(F[:, :, None, None], (-2.0 * g2) * F[None, None])
        Tsw.addcmul_(cof[:, :, None, None], (-gJ) * FiT[None, None])
        # delta_ik S_JL and delta_JL D_ik parts
        S = (2.0 * g[0] + 2.0 * g2 * I1) * eye[:, :, None] - (2.0 * g2) * C
        D = (-2.0 * g2) * _mm(F, F.transpose(0, 1))
        if self.symmetry == "transverse":
            a, Ca, Fa = inv.extra["a"], inv.extra["Ca"], inv.extra["Fa"]
            g4, g5 = g[3], g[4]
            aa = a[:, None] * a[None, :]
            S = S + (2.0 * g4) * aa[:, :, None] + (2.0 * g5) * (
                a[:, None, None] * Ca[None] + Ca[:, None] * a[None, :, None]
            )
            D = D + (2.0 * g5) * Fa[:, None] * Fa[None]
            b = _mm(F, F.transpose(0, 1))
            A.addcmul_(((2.0 * g5) * b)[:, None, :, None], aa[None, :, None, :, None])
            V = (2.0 * g5) * Fa[:, None, :] * a[None, :, None]  # V_iL = 2 g5 (Fa)_i a_L
            Tsw.addcmul_(V[:, :, None, None], F[None, None])
            Tsw.addcmul_(F[:, :, None, None], V[None, None])
        elif self.symmetry == "cubic":
            d = inv.extra["d"]
            S = S + torch.diag_embed((4.0 * g[3] * d + 6.0 * g[4] * d * d).T, dim1=0, dim2=1)
            w = 8.0 * g[3] + 24.0 * g[4] * d  # k x n
            for Jx in range(k):  # w_J delta_JL F_iJ F_kJ
                A[:, Jx, :, Jx] += (w[Jx] * F[:, Jx])[:, None] * F[None, :, Jx]
        for i in range(k):
            A[i, :, i, :] += S
            A[:, i, :, i] += D
        return A
