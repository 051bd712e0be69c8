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
``F -> W`` graph twice with autograd.

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

from dataclasses import dataclass

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


def _det_inv(F: Tensor) -> tuple[Tensor, Tensor]:
    """Closed-form determinant and inverse of ``n x k x k`` (k = 2, 3); faster than LAPACK for tiny k."""
    k = F.shape[-1]
    if k == 2:
        a, b, c, d = F[:, 0, 0], F[:, 0, 1], F[:, 1, 0], F[:, 1, 1]
        J = a * d - b * c
        adj = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
        return J, adj / J[:, None, None]
    # 3x3: inverse = adjugate / det; adj = cof^T
    c0 = torch.linalg.cross(F[:, 1], F[:, 2], dim=-1)
    c1 = torch.linalg.cross(F[:, 2], F[:, 0], dim=-1)
    c2 = torch.linalg.cross(F[:, 0], F[:, 1], dim=-1)
    cof = torch.stack([c0, c1, c2], -2)  # rows of cof F
    J = (F[:, 0] * c0).sum(-1)
    return J, cof.transpose(-1, -2) / J[:, None, None]


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
        if self.dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {self.dim!r}")
        if self.symmetry == "transverse":
            if self.fibre is None or len(self.fibre) != self.dim:
                raise ValueError(
                    f"symmetry='transverse' needs a fibre direction of {self.dim} entries, "
                    f"got {self.fibre!r}"
                )
            nrm = sum(v * v for v in self.fibre) ** 0.5
            if not nrm > 0:
                raise ValueError(f"fibre direction must be non-zero, got {self.fibre!r}")
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
        return self.derivatives(F, order=0)[0]

    def identity_values(self, dtype=torch.float64, device=None) -> Tensor:
        """``p`` invariants at ``F = I`` (computed by the same code path)."""
        eye = torch.eye(self.dim, dtype=dtype, device=device).unsqueeze(0)
        return self.values(eye)[0]

    def derivatives(self, F: Tensor, order: int = 1):
        """Invariants and their first derivative.

        Args:
            F: ``n x k x k`` deformation gradients.
            order: 0 (values only) or >= 1 (also ``dI/dF``).

        Returns:
            ``(x, dx, cache)``: ``x`` ``n x p``; ``dx`` ``n x p x k x k`` (None
            for order 0); ``cache`` holds intermediates for :meth:`hessian_contract`.
        """
        k = self.dim
        extra = 3.0 - k  # C33 = 1 contribution of plane strain
        C = F.transpose(-1, -2) @ F
        trC = C.diagonal(dim1=-2, dim2=-1).sum(-1)
        I1 = trC + extra
        trC2 = (C * C).sum((-2, -1)) + extra
        I2 = 0.5 * (I1 * I1 - trC2)
        J, Finv = _det_inv(F)
        vals = [I1, I2, J]
        cache = {"C": C, "I1": I1, "J": J, "Finv": Finv}
        if self.symmetry == "transverse":
            a = self._a0(F)
            Ca = C @ a  # n x k
            Fa = F @ a
            vals += [(a * Ca).sum(-1), (Ca * Ca).sum(-1)]
            cache.update(a=a, Ca=Ca, Fa=Fa)
        elif self.symmetry == "cubic":
            d = C.diagonal(dim1=-2, dim2=-1)
            vals += [(d * d).sum(-1) + extra, (d * d * d).sum(-1) + extra]
            cache.update(d=d)
        x = torch.stack(vals, -1)
        if order == 0:
            return x, None, cache
        FC = F @ C
        cof = J[:, None, None] * Finv.transpose(-1, -2)
        dx = [2.0 * F, 2.0 * (I1[:, None, None] * F - FC), cof]
        if self.symmetry == "transverse":
            a, Ca, Fa = cache["a"], cache["Ca"], cache["Fa"]
            dx.append(2.0 * Fa[:, :, None] * a)
            FCa = F @ Ca[..., None]  # n x k x 1
            dx.append(2.0 * (Fa[:, :, None] * Ca[:, None, :] + FCa * a))
        elif self.symmetry == "cubic":
            d = cache["d"]
            dx.append(4.0 * F * d[:, None, :])
            dx.append(6.0 * F * (d * d)[:, None, :])
        return x, torch.stack(dx, 1), cache

    def hessian_contract(self, F: Tensor, g: Tensor, cache: dict) -> Tensor:
        r"""``sum_a g_a d^2 I_a / dF dF``: ``n x k x k x k x k`` (index ``iJkL``).

        Args:
            F: ``n x k x k``.
            g: ``n x p`` weights (the energy's gradient w.r.t. the invariants).
            cache: from :meth:`derivatives`.
        """
        k = self.dim
        n = F.shape[0]
        eye = torch.eye(k, dtype=F.dtype, device=F.device)
        C, I1, J, Finv = cache["C"], cache["I1"], cache["J"], cache["Finv"]
        g1, g2, gJ = g[:, 0], g[:, 1], g[:, 2]
        b = F @ F.transpose(-1, -2)
        # delta_ik (x) S_JL part, collected from all invariants: S = (2 g1 + 2 g2 I1) 1 - 2 g2 C + ...
        S = (2.0 * g1 + 2.0 * g2 * I1)[:, None, None] * eye - 2.0 * g2[:, None, None] * C
        # F_iJ F_kL part (I2) and F_iL F_kJ part (I2, J)
        FF = F[:, :, :, None, None] * F[:, None, None, :, :]  # iJkL = F_iJ F_kL
        out = (4.0 * g2)[:, None, None, None, None] * FF
        # -2 F_iL F_kJ (I2)
        out = out - (2.0 * g2)[:, None, None, None, None] * FF.permute(0, 1, 4, 3, 2)
        # -2 b_ik delta_JL (I2)
        out = out - (2.0 * g2)[:, None, None, None, None] * (
            b[:, :, None, :, None] * eye[None, None, :, None, :]
        )
        # J: J (Finv_Ji Finv_Lk - Finv_Jk Finv_Li)
        FiT = Finv.transpose(-1, -2)  # FiT_iJ = Finv_Ji
        A1 = FiT[:, :, :, None, None] * FiT[:, None, None, :, :]  # Finv_Ji Finv_Lk
        out = out + (gJ * J)[:, None, None, None, None] * (A1 - A1.permute(0, 3, 2, 1, 4))
        if self.symmetry == "transverse":
            g4, g5 = g[:, 3], g[:, 4]
            a, Ca, Fa = cache["a"], cache["Ca"], cache["Fa"]
            aa = a[:, None] * a[None, :]
            S = S + 2.0 * g4[:, None, None] * aa
            S = S + 2.0 * g5[:, None, None] * (a[None, :, None] * Ca[:, None, :] + Ca[:, :, None] * a)
            # I5: 2[(Fa)_i F_kJ a_L + (Fa)_i (Fa)_k d_JL + b_ik a_J a_L + F_iL (Fa)_k a_J]
            t1 = Fa[:, :, None, None, None] * F.transpose(-1, -2)[:, None, :, :, None] * a
            t2 = (Fa[:, :, None] * Fa[:, None, :])[:, :, None, :, None] * eye[None, None, :, None, :]
            t3 = b[:, :, None, :, None] * aa[None, None, :, None, :]
            t4 = t1.permute(0, 3, 4, 1, 2)  # F_kL (Fa)_i a_J  -> swap (iJ)<->(kL)
            out = out + (2.0 * g5)[:, None, None, None, None] * (t1 + t2 + t3 + t4)
        elif self.symmetry == "cubic":
            gk1, gk2 = g[:, 3], g[:, 4]
            d = cache["d"]
            S = S + torch.diag_embed(4.0 * gk1[:, None] * d + 6.0 * gk2[:, None] * d * d)
            w = 8.0 * gk1[:, None] + 24.0 * gk2[:, None] * d  # n x k, weight per axis J
            # w_J delta_JL F_iJ F_kJ
            FwF = (F * w[:, None, :])[:, :, :, None] * F.transpose(-1, -2)[:, None, :, :]
            # FwF[n, i, J, k] = w_J F_iJ F_kJ
            out = out + FwF[:, :, :, :, None] * eye[None, None, :, None, :]
        out = out + eye[None, :, None, :, None] * S[:, None, :, None, :]
        return out.reshape(n, k, k, k, k)
