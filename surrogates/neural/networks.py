r"""Small scalar networks that return their input gradient and Hessian.

A hyperelastic energy needs ``N(x)``, ``dN/dx`` and ``d^2N/dx^2`` for a handful
of inputs (the invariants). For such tiny networks, propagating the Jacobian
``n x H x p`` and Hessian ``n x H x p x p`` of each layer forward alongside the
activations is a few batched matrix products, cheaper than nested autograd or
``torch.func`` (no graph of the graph) and still differentiable w.r.t. the
weights for training. Activation: softplus, smooth, convex and non-decreasing,
so the same code serves the input-convex network of :mod:`.icnn`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as Fn


def softplus_derivs(a: Tensor, order: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """softplus(a) and its first and second derivatives (those up to ``order``)."""
    h = Fn.softplus(a)
    if order == 0:
        return h, None, None
    s = torch.sigmoid(a)
    if order == 1:
        return h, s, None
    return h, s, s * (1.0 - s)


def propagate(
    h: Tensor, dh: Tensor | None, ddh: Tensor | None, order: int
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """Apply softplus to pre-activation ``h`` (``n x H``) carrying ``dh`` (``n x H x p``)
    and ``ddh`` (``n x H x p x p``, None means zero)."""
    z, s1, s2 = softplus_derivs(h, order)
    dz = ddz = None
    if order >= 1:
        dz = s1.unsqueeze(-1) * dh
    if order >= 2:
        ddz = s2[..., None, None] * dh.unsqueeze(-1) * dh.unsqueeze(-2)
        if ddh is not None:
            ddz = ddz + s1[..., None, None] * ddh
    return z, dz, ddz


def linear_derivs(
    weight: Tensor, dz: Tensor | None, ddz: Tensor | None
) -> tuple[Tensor | None, Tensor | None]:
    """Push ``dz`` (``n x H x p``) and ``ddz`` (``n x H x p x p``) through ``z -> weight @ z``."""
    da = None if dz is None else torch.einsum("oh,nhp->nop", weight, dz)
    dda = None if ddz is None else torch.einsum("oh,nhpq->nopq", weight, ddz)
    return da, dda


class ScalarMLP(nn.Module):
    """``R^p -> R`` softplus MLP returning value, gradient and Hessian w.r.t. its input.

    Args:
        in_dim: ``p``.
        hidden: widths of the hidden layers.
        generator: torch Generator for the initial weights (ensembles use
            different seeds).
    """

    def __init__(self, in_dim: int, hidden=(16, 16), generator: torch.Generator | None = None,
                 dtype=torch.float64):
        super().__init__()
        if in_dim < 1 or len(hidden) < 1 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"need in_dim >= 1 and positive hidden widths, got {in_dim}, {hidden}")
        dims = [in_dim, *[int(h) for h in hidden]]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            # Glorot-uniform keeps the softplus pre-activations O(1)
            lim = math.sqrt(6.0 / (a + b))
            w = (torch.rand(b, a, generator=generator, dtype=dtype) * 2 - 1) * lim
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(b, dtype=dtype)))
        lim = math.sqrt(6.0 / (dims[-1] + 1))
        self.out = nn.Parameter((torch.rand(dims[-1], generator=generator, dtype=dtype) * 2 - 1) * lim)

    def forward(self, x: Tensor, order: int = 0):
        """Value ``n``, gradient ``n x p``, Hessian ``n x p x p`` (None above ``order``)."""
        W0 = self.weights[0]
        a = x @ W0.T + self.biases[0]
        n = x.shape[0]
        da = W0.unsqueeze(0).expand(n, -1, -1) if order >= 1 else None
        z, dz, ddz = propagate(a, da, None, order)
        for W, b in zip(list(self.weights)[1:], list(self.biases)[1:], strict=True):
            a = z @ W.T + b
            da, dda = linear_derivs(W, dz, ddz)
            z, dz, ddz = propagate(a, da, dda, order)
        val = z @ self.out
        g = None if dz is None else torch.einsum("h,nhp->np", self.out, dz)
        H = None if ddz is None else torch.einsum("h,nhpq->npq", self.out, ddz)
        return val, g, H
