r"""Small scalar softplus networks with their input gradient and Hessian.

A hyperelastic energy needs ``N(x)``, ``dN/dx`` and ``d^2N/dx^2`` for a handful
of inputs (the invariants). :func:`network_derivatives` computes them in
closed form for any softplus network whose pre-activations are affine in the
previous layer and in the input (the MLP of :class:`ScalarMLP` and the
input-convex network of :mod:`.icnn`):

* gradient by one backward sweep of the adjoints ``e_l = dN/da_l``:
  ``dN/dx = sum_l Wx_l^T e_l`` (``Wx_0 = W_0``);
* Hessian from the forward Jacobians ``J_l = da_l/dx`` (``J_0 = W_0``,
  ``J_l = W_l diag(s_{l-1}) J_{l-1} + Wx_l``):
  ``d^2N/dx^2 = sum_l J_l^T diag(dN/dz_l * softplus''(a_l)) J_l``, exact
  because every pre-activation is affine in what feeds it.

This is a few batched matrix products, cheaper than nested autograd or
``torch.func`` (no graph of the graph), and it is ordinary differentiable
torch, so training (including Sobolev training on the Hessian) backpropagates
through it to the weights. The batch is the last, contiguous dimension, and
the weights may carry leading batch dimensions (an ensemble's members stacked
along ``M``), so the same code serves training, the differentiable reference
and the FE² evaluator (:mod:`.fast`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.nn import functional as Fn


class NetworkLayers(NamedTuple):
    """Effective weights of a softplus network ``R^p -> R``.

    ``a_0 = W_0 x + b_0``, ``a_l = W_l z_{l-1} + Wx_l x + b_l`` (``l >= 1``),
    ``z_l = softplus(a_l)``, ``N = w . z_{L-1}``. Every tensor may carry the
    same leading batch dimensions ``...`` (ensemble members).

    Attributes:
        W: ``L`` weight matrices, ``... x H_0 x p``, then ``... x H_l x H_{l-1}``.
        b: ``L`` biases ``... x H_l``.
        Wx: None, or ``L`` input skip matrices ``... x H_l x p`` (entry 0
            unused, None; input-convex networks).
        w: output weights ``... x H_{L-1}``.
    """

    W: list[Tensor]
    b: list[Tensor]
    Wx: list[Tensor | None] | None
    w: Tensor

    def map(self, fn) -> NetworkLayers:
        """The same layers with ``fn`` applied to every tensor (``detach``, ``to``...)."""
        return NetworkLayers([fn(t) for t in self.W], [fn(t) for t in self.b],
                             None if self.Wx is None else [None if t is None else fn(t) for t in self.Wx],
                             fn(self.w))

    @staticmethod
    def stack(layers: list[NetworkLayers]) -> NetworkLayers:
        """Layers of equal shapes stacked along a new leading dimension."""
        first = layers[0]
        Wx = None
        if first.Wx is not None:
            Wx = [None if t is None else torch.stack([ly.Wx[i] for ly in layers]) for i, t in enumerate(first.Wx)]
        return NetworkLayers([torch.stack([ly.W[i] for ly in layers]) for i in range(len(first.W))],
                             [torch.stack([ly.b[i] for ly in layers]) for i in range(len(first.b))],
                             Wx, torch.stack([ly.w for ly in layers]))


def network_derivatives(layers: NetworkLayers, x: Tensor, order: int = 2, value: bool = True):
    """Value, input gradient and input Hessian of a softplus network.

    Args:
        layers: the network (:class:`NetworkLayers`, leading dims ``...``).
        x: ``p x n`` or ``... x p x n`` inputs, batch last.
        order: 0 (value), 1 (and gradient) or 2 (and Hessian).
        value: compute the value (skip it when only derivatives are needed).

    Returns:
        ``(N, g, H)``: ``... x n``, ``... x p x n``, ``... x p x p x n``; None
        where not asked for.
    """
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    W, b, Wx, w = layers
    L = len(W)
    p = x.shape[-2]
    sig = []
    z = None
    for layer in range(L):
        a = (W[0] @ x if layer == 0 else W[layer] @ z).add_(b[layer][..., None])
        if layer > 0 and Wx is not None:
            a = a + Wx[layer] @ x
        last = layer == L - 1
        if not last or value:
            z = Fn.softplus(a)
        if order >= 1:
            sig.append(torch.sigmoid(a))
    val = (w[..., None] * z).sum(-2) if value else None
    if order == 0:
        return val, None, None
    # backward sweep: d_l = dN/dz_l (H_l x 1 for the last layer), e_l = d_l * s_l
    d = [None] * L
    d[L - 1] = w[..., None]
    e = [None] * L
    for layer in range(L - 1, -1, -1):
        e[layer] = d[layer] * sig[layer]
        if layer > 0:
            d[layer - 1] = W[layer].transpose(-1, -2) @ e[layer]
    g = W[0].transpose(-1, -2) @ e[0]
    if Wx is not None:
        for layer in range(1, L):
            g = g + Wx[layer].transpose(-1, -2) @ e[layer]
    if order == 1:
        return val, g, None
    # first layer: J_0 = W_0 is the same at every point, one GEMM for all p^2 entries
    W0 = W[0]
    c0 = e[0] - e[0] * sig[0]  # d_0 * softplus''(a_0) = e_0 (1 - s_0)
    W0W0 = (W0[..., :, :, None] * W0[..., :, None, :]).flatten(-2)  # ... x H_0 x p^2
    H = (W0W0.transpose(-1, -2) @ c0).unflatten(-2, (p, p))  # ... x p x p x n
    J = None
    for layer in range(1, L):
        # J_l = W_l diag(s_{l-1}) J_{l-1} + Wx_l, ... x H_l x p x n
        s = sig[layer - 1]
        prev = (s[..., :, None, :] * W0[..., :, :, None]) if J is None else s[..., :, None, :] * J
        J = (W[layer] @ prev.flatten(-2)).unflatten(-1, (p, -1))
        if Wx is not None:
            J = J + Wx[layer][..., None]
        c = e[layer] - e[layer] * sig[layer]
        cJ = c[..., :, None, :] * J
        for i in range(p):  # the symmetric p x p block from its upper triangle
            for j in range(i, p):
                v = (cJ[..., i, :] * J[..., j, :]).sum(-2)
                H[..., i, j, :] += v
                if j != i:
                    H[..., j, i, :] += v
    return val, g, H


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

    def layers(self) -> NetworkLayers:
        """The network's weights as :class:`NetworkLayers` (differentiable)."""
        return NetworkLayers(list(self.weights), list(self.biases), None, self.out)

    def forward(self, x: Tensor, order: int = 0):
        """Value ``n``, gradient ``n x p``, Hessian ``n x p x p`` (None above ``order``)
        at ``x`` (``n x p``), by :func:`network_derivatives`."""
        return batch_first(network_derivatives(self.layers(), x.T, order))


def batch_first(out):
    """``(N, g, H)`` of :func:`network_derivatives` (batch last) as ``n``, ``n x p``, ``n x p x p`` views."""
    val, g, H = out
    return (val, None if g is None else g.movedim(-1, -2),
            None if H is None else H.movedim(-1, -3))
