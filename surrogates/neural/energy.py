r"""Hyperelastic energy networks ``W(F) = W(I(C))`` with exact physics.

:class:`InvariantEnergy` is one network: a small MLP (or, with
``polyconvex=True``, an input-convex network) of scaled invariants of
``C = F^T F`` (see :mod:`.invariants`), with the normalization terms of Linden
et al. (2023, J. Mech. Phys. Solids 179, 105363):

.. math::

    W(F) = s \left[ N(\tilde x(F)) - N(0) - k_J (J - 1) - k_4 (I_4 - I_4(1)) \right]
           + \gamma (J + 1/J - 2)^2,

where ``x~ = T (I - I(1))`` are the shifted, scaled invariants (exactly zero at
``F = 1``), ``k_J`` and ``k_4`` are read off ``dN/dx`` at ``x~ = 0`` so that
``P(1) = 0`` exactly (``k_4`` only for the fibre invariants, whose stress at
``F = 1`` is ``a0 (x) a0`` rather than isotropic), ``s > 0`` scales the energy
to the data (the invariants are only shifted and scaled, which keeps
``W(1) = 0``, ``P(1) = 0``, objectivity, symmetry and convexity), and the
optional growth term ``gamma >= 0`` (zero value and slope at ``J = 1``, convex)
makes ``W -> inf`` as ``J -> 0``.

``k_J (J - 1)`` is affine in ``det F``, so it keeps polyconvexity; the fibre
term ``k_4 (I4 - 1)`` would not, which is why the polyconvex option is offered
for the isotropic and cubic sets only.

``P = dW/dF`` and ``dP/dF`` come from the closed-form invariant derivatives and
the network's gradient and Hessian w.r.t. the few invariants; they are exact
derivatives of ``W`` (symmetric tangent, thermodynamically consistent).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.invariants import InvariantSet
from surrogates.neural.networks import ScalarMLP


class InvariantDerivatives(NamedTuple):
    """Invariants of a batch of ``F`` (``n x k x k``) and their derivatives.

    Attributes:
        F: ``n x k x k``.
        I: ``n x p`` invariants.
        dI: ``n x p x k x k`` derivatives ``dI_a/dF``.
        cache: intermediates for the second derivatives.
    """

    F: Tensor
    I: Tensor
    dI: Tensor | None
    cache: dict


class EnergyDerivatives(NamedTuple):
    """Energy ``n``, gradient ``n x p`` and Hessian ``n x p x p`` w.r.t. the invariants."""

    W: Tensor
    g: Tensor | None
    H: Tensor | None


class InvariantEnergy(nn.Module):
    """One hyperelastic energy network on invariants of ``C``.

    Args:
        dim: 2 (plane strain, ``F`` is the in-plane ``2 x 2`` block) or 3.
        symmetry: ``"isotropic"``, ``"transverse"`` (needs ``fibre``) or ``"cubic"``
            (square symmetry in 2-D).
        fibre: fibre direction ``a0`` (``dim`` entries) for ``"transverse"``.
        hidden: hidden-layer widths.
        polyconvex: use the input-convex network (isotropic and cubic only).
        growth: coefficient ``gamma >= 0`` of the volumetric growth term.
        seed: seed of the initial weights.
    """

    def __init__(self, dim: int = 3, symmetry: str = "isotropic", fibre=None, hidden=(16, 16),
                 polyconvex: bool = False, growth: float = 0.0, seed: int = 0,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.invariants = InvariantSet(symmetry=symmetry, dim=dim,
                                       fibre=None if fibre is None else tuple(fibre))
        if polyconvex and symmetry == "transverse":
            raise ValueError(
                "polyconvex=True is available for symmetry 'isotropic' and 'cubic'; the fibre "
                "stress-normalization term k4 (I4 - 1) is not polyconvex (got symmetry='transverse')"
            )
        if not growth >= 0:
            raise ValueError(f"growth must be >= 0 (a convex growth term), got {growth!r}")
        self.polyconvex = bool(polyconvex)
        p = self.invariants.num
        gen = torch.Generator().manual_seed(int(seed))
        q = p + 1 if polyconvex else p
        net_cls = ConvexMLP if polyconvex else ScalarMLP
        self.net = net_cls(q, hidden=hidden, generator=gen, dtype=dtype)
        self.register_buffer("I0", self.invariants.identity_values(dtype=dtype))
        self.register_buffer("inv_scale", torch.ones(p, dtype=dtype))
        self.register_buffer("energy_scale", torch.ones((), dtype=dtype))
        self.register_buffer("growth", torch.tensor(float(growth), dtype=dtype))
        alpha, beta = self.invariants.alpha_beta()
        self.register_buffer("alpha", torch.tensor(alpha, dtype=dtype))
        self.register_buffer("beta", torch.tensor(beta, dtype=dtype))

    @property
    def dim(self) -> int:
        return self.invariants.dim

    # ------------------------------------------------------------- scaling
    @torch.no_grad()
    def set_scales(self, F: Tensor, P: Tensor) -> None:
        """Scale invariants and energy to training data ``F`` (``n x k x k``), ``P``."""
        I = self.invariants.values(F.to(self.I0))
        c = (I - self.I0).pow(2).mean(0).sqrt()
        # a constant invariant (e.g. no shear in the data) keeps unit scale
        self.inv_scale.copy_(torch.where(c > 1e-8, c, torch.ones_like(c)))
        s = P.to(self.I0).pow(2).mean().sqrt()
        self.energy_scale.copy_(s if s > 0 else torch.ones_like(s))

    def transform(self) -> Tensor:
        """``q x p`` map from shifted invariants to network inputs."""
        T = torch.diag(1.0 / self.inv_scale)
        if self.polyconvex:
            # both J - 1 and 1 - J: the energy may decrease in J yet stay convex in det F
            T = torch.cat([T, -T[2:3]], 0)
        return T

    # ------------------------------------------------------------- derivatives
    def invariant_derivatives(self, F: Tensor, order: int = 1) -> InvariantDerivatives:
        I, dI, cache = self.invariants.derivatives(F, order=order)
        return InvariantDerivatives(F, I, dI, cache)

    def energy_derivatives(self, I: Tensor, order: int = 1) -> EnergyDerivatives:
        """Energy and its derivatives w.r.t. the invariants ``I`` (``n x p``)."""
        T = self.transform()
        x = (I - self.I0) @ T.T
        val, gN, HN = self.net(x, order=order)
        v0, g0, _ = self.net(torch.zeros(1, T.shape[0], dtype=x.dtype, device=x.device), order=1)
        g0 = (g0 @ T)[0]  # dN/dI at F = 1
        kJ = (g0 * self.alpha).sum()  # alpha_J = 1
        k4 = (g0 * self.beta).sum() / 2.0 if self.invariants.symmetry == "transverse" else None
        s = self.energy_scale
        dJ = I[:, 2] - self.I0[2]
        W = val - v0[0] - kJ * dJ
        if k4 is not None:
            W = W - k4 * (I[:, 3] - self.I0[3])
        W = s * W
        J = I[:, 2]
        gro = self.growth
        W = W + gro * (J + 1.0 / J - 2.0) ** 2
        g = H = None
        if order >= 1:
            corr = torch.zeros_like(g0)
            corr = corr.index_put((torch.tensor(2),), kJ)
            if k4 is not None:
                corr = corr.index_put((torch.tensor(3),), k4)
            g = s * (gN @ T - corr)
            gJ = gro * 2.0 * (J + 1.0 / J - 2.0) * (1.0 - 1.0 / J**2)
            g = g + torch.nn.functional.pad(gJ[:, None], (2, g.shape[1] - 3))
        if order >= 2:
            H = s * (T.T @ HN @ T)
            hJ = gro * 2.0 * ((1.0 - 1.0 / J**2) ** 2 + (J + 1.0 / J - 2.0) * 2.0 / J**3)
            H = H.clone()
            H[:, 2, 2] = H[:, 2, 2] + hJ
        return EnergyDerivatives(W, g, H)

    def assemble(self, inv: InvariantDerivatives, g: Tensor, H: Tensor | None):
        """``P`` (``n x k x k``) and, with ``H``, the tangent (``n x k x k x k x k``)."""
        n, p, k, _ = inv.dI.shape
        dIf = inv.dI.reshape(n, p, k * k)
        P = torch.einsum("np,npi->ni", g, dIf).reshape(n, k, k)
        if H is None:
            return P, None
        A = dIf.transpose(1, 2) @ (H @ dIf)
        A = A.reshape(n, k, k, k, k) + self.invariants.hessian_contract(inv.F, g, inv.cache)
        return P, A

    def forward(self, F: Tensor, order: int = 1):
        """Energy ``n``, stress ``n x k x k`` (order >= 1), tangent ``n x k^4`` (order 2).

        Args:
            F: ``n x k x k`` deformation gradients (``det F > 0``).
            order: 0 energy only, 1 with ``P = dW/dF``, 2 also ``dP/dF``.
        """
        inv = self.invariant_derivatives(F, order=min(order, 1) if order else 0)
        e = self.energy_derivatives(inv.I, order=order)
        if order == 0:
            return e.W, None, None
        P, A = self.assemble(inv, e.g, e.H)
        return e.W, P, A
