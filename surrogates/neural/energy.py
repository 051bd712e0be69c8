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

``P = dW/dF`` and ``dP/dF`` come from the closed-form invariant derivatives
(:class:`~surrogates.neural.invariants.InvariantSet`) and the network's
gradient and Hessian w.r.t. the few invariants
(:func:`~surrogates.neural.networks.network_derivatives`, with the input
scaling and shift folded into the first layer); they are exact derivatives of
``W`` (symmetric tangent, thermodynamically consistent). The same functions
serve training (autograd to the weights), the differentiable reference and the
FE² evaluator (:mod:`.fast`, members stacked along a leading dimension).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from oracles.exceptions import InvalidInput, is_real
from surrogates.base import check_flag
from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.invariants import InvariantSet
from surrogates.neural.networks import NetworkLayers, ScalarMLP, network_derivatives
from surrogates.neural.training import data_scale


class EnergyParams(NamedTuple):
    """Everything :func:`energy_derivatives` needs; fields may carry leading
    member dimensions ``...`` (except ``I0``).

    Attributes:
        layers: the network acting on the raw invariants (input scaling and
            shift folded into the first layer and the input skips).
        v0: ``...`` network value at ``F = 1``.
        corr: ``... x p`` stress-normalization coefficients (``k_J`` at the
            ``J`` entry, ``k_4`` at ``I4``, zero elsewhere).
        I0: ``p`` invariants at ``F = 1``.
        scale: ``...`` energy scale ``s``.
        growth: ``...`` growth coefficient ``gamma``.
    """

    layers: NetworkLayers
    v0: Tensor
    corr: Tensor
    I0: Tensor
    scale: Tensor
    growth: Tensor

    def map(self, fn) -> EnergyParams:
        """The same parameters with ``fn`` applied to every tensor."""
        return EnergyParams(self.layers.map(fn), fn(self.v0), fn(self.corr), fn(self.I0),
                            fn(self.scale), fn(self.growth))

    @staticmethod
    def stack(params: list[EnergyParams]) -> EnergyParams:
        """Members' parameters stacked along a new leading dimension ``M``."""
        return EnergyParams(NetworkLayers.stack([q.layers for q in params]),
                            *(torch.stack([getattr(q, f) for q in params]) for f in ("v0", "corr")),
                            params[0].I0,
                            *(torch.stack([getattr(q, f) for q in params]) for f in ("scale", "growth")))


class EnergyDerivatives(NamedTuple):
    """Energy ``... x n``, gradient ``... x p x n`` and Hessian ``... x p x p x n`` w.r.t. the invariants."""

    W: Tensor | None
    g: Tensor | None
    H: Tensor | None


def energy_derivatives(params: EnergyParams, I: Tensor, order: int = 1, value: bool = True) -> EnergyDerivatives:
    """The energy ``W(I)`` and its derivatives w.r.t. the invariants.

    Args:
        params: :class:`EnergyParams` (one energy, or members stacked along ``...``).
        I: ``p x n`` invariants (batch last).
        order: 0, 1 (and gradient) or 2 (and Hessian).
        value: compute ``W`` (skip it when only derivatives are needed).
    """
    val, gN, HN = network_derivatives(params.layers, I, order, value=value)
    s = params.scale[..., None]  # ... x 1
    gro = params.growth[..., None]
    J = I[2]
    r = J + 1.0 / J - 2.0  # growth term gamma r^2: zero value and slope at J = 1
    W = g = H = None
    if value:
        shift = (params.corr[..., None] * (I - params.I0[:, None])).sum(-2)
        W = s * (val - params.v0[..., None] - shift) + gro * r * r
    if order >= 1:
        dr = 1.0 - 1.0 / J**2
        g = s[..., None] * (gN - params.corr[..., None])
        g[..., 2, :] += gro * 2.0 * r * dr
        if order >= 2:
            H = s[..., None, None] * HN
            H[..., 2, 2, :] += gro * 2.0 * (dr * dr + r * 2.0 / J**3)
    return EnergyDerivatives(W, g, H)


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
        polyconvex = check_flag("polyconvex", polyconvex)
        if isinstance(growth, bool) or not is_real(growth):
            raise ValueError(f"growth must be a number >= 0 (a convex growth term), got {growth!r}")
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
        self.energy_scale.copy_(data_scale(P.to(self.I0)))

    def transform(self) -> Tensor:
        """``q x p`` map from shifted invariants to network inputs."""
        T = torch.diag(1.0 / self.inv_scale)
        if self.polyconvex:
            # both J - 1 and 1 - J: the energy may decrease in J yet stay convex in det F
            T = torch.cat([T, -T[2:3]], 0)
        return T

    # ------------------------------------------------------------- derivatives
    def params(self) -> EnergyParams:
        """The current weights as :class:`EnergyParams` (differentiable)."""
        W, b, Wx, w = self.net.layers()
        T, I0 = self.transform(), self.I0
        # x = T (I - I0): fold T and the shift into the layers acting on x
        W0 = W[0] @ T
        b = [b[0] - W0 @ I0, *b[1:]]
        if Wx is not None:
            Wx = [None, *(m @ T for m in Wx[1:])]
            b = [b[0], *(bl - m @ I0 for bl, m in zip(b[1:], Wx[1:], strict=True))]
        layers = NetworkLayers([W0, *W[1:]], b, Wx, w)
        v0, g0, _ = network_derivatives(layers, I0[:, None], order=1)
        g0 = g0[:, 0]  # dN/dI at F = 1
        entries = [g0.new_zeros(())] * g0.shape[0]
        entries[2] = (g0 * self.alpha).sum()  # k_J (alpha_J = 1)
        if self.invariants.symmetry == "transverse":
            entries[3] = (g0 * self.beta).sum() / 2.0  # k_4
        return EnergyParams(layers, v0[0], torch.stack(entries), I0, self.energy_scale, self.growth)

    def energy_derivatives(self, I: Tensor, order: int = 1) -> EnergyDerivatives:
        """Energy ``n`` and its derivatives (``p x n``, ``p x p x n``) w.r.t. the
        invariants ``I`` (``p x n``, batch last)."""
        return energy_derivatives(self.params(), I, order)

    def forward(self, F: Tensor, order: int = 1):
        """Energy ``n``, stress ``n x k x k`` (order >= 1), tangent ``n x k x k x k x k`` (order 2).

        Args:
            F: ``n x k x k`` deformation gradients (``det F > 0``; another
                floating dtype is cast to the weights' dtype).
            order: 0 energy only, 1 with ``P = dW/dF``, 2 also ``dP/dF``.

        Raises:
            InvalidInput: ``F`` not ``n x k x k`` for this model's ``k``, or a
                point with ``det F <= 0`` or non-finite entries.
        """
        if order not in (0, 1, 2) or isinstance(order, bool):
            raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
        k = self.dim
        if not torch.is_tensor(F) or F.dim() != 3 or F.shape[1:] != (k, k):
            shape = tuple(F.shape) if torch.is_tensor(F) else type(F).__name__
            raise InvalidInput(f"F must be an n x {k} x {k} tensor for this dim={k} model, got {shape}")
        if F.is_complex() or not F.is_floating_point():
            raise InvalidInput(f"F must be a real floating-point tensor, got dtype {F.dtype}")
        F = F.to(self.I0.dtype)
        inv = self.invariants.derivatives(F.permute(1, 2, 0), order=min(order, 1))
        # det F comes with the invariants: NaN and inf entries of F make it non-finite too
        bad = ~(inv.J > 0) | ~torch.isfinite(inv.J)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            raise InvalidInput(f"F must be finite with det F > 0, got det F = {inv.J[i].item():.6g} at point {i}")
        e = self.energy_derivatives(inv.I, order=order)
        if order == 0:
            return e.W, None, None
        P = self.invariants.stress(inv, e.g).permute(2, 0, 1)
        A = None if order < 2 else self.invariants.tangent(inv, e.g, e.H).permute(4, 0, 1, 2, 3)
        return e.W, P, A
