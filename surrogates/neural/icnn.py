r"""Input-convex neural network (ICNN) with input derivatives.

``N(x)`` is convex and non-decreasing in every input ``x_a`` when all weights
acting on hidden units and on inputs are non-negative and the activation is
convex and non-decreasing (softplus) (Amos et al. 2017). Fed with convex
functions of ``(F, cof F, det F)`` (``|F|^2``, ``|cof F|^2``, ``sum |F e_A|^4``
...) and with both ``J - 1`` and ``1 - J`` (affine in ``det F``, so either
sign is allowed), the energy is polyconvex (Ball 1977) and therefore
rank-one convex: the acoustic tensor is positive semi-definite for every F,
and positive definite because ``dN/dI1 > 0`` strictly (softplus of
positive-weighted inputs has a strictly positive slope) and ``I1 = |F|^2`` is
strictly convex along rank-one directions.

Non-negativity is enforced by a softplus re-parametrization of the raw
weights, so it holds before, during and after training.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as Fn

from surrogates.neural.networks import NetworkLayers, batch_first, network_derivatives


class ConvexMLP(nn.Module):
    """``R^p -> R`` ICNN: convex and non-decreasing in each input.

    ``z1 = softplus(W0+ x + b0)``, ``z_{l+1} = softplus(Wz+ z_l + Wx+ x + b_l)``,
    ``N = w+ . z_L`` with every ``+`` weight non-negative.
    """

    def __init__(self, in_dim: int, hidden=(16, 16), generator: torch.Generator | None = None,
                 dtype=torch.float64):
        super().__init__()
        if in_dim < 1 or len(hidden) < 1 or any(int(h) < 1 for h in hidden):
            raise ValueError(f"need in_dim >= 1 and positive hidden widths, got {in_dim}, {hidden}")
        hidden = [int(h) for h in hidden]

        def raw(*shape, scale):
            # softplus(raw) ~ U(0, 2*scale)-like spread of positive weights
            u = torch.rand(*shape, generator=generator, dtype=dtype)
            return nn.Parameter(torch.log(torch.expm1(scale * (0.1 + 1.9 * u))))

        self.wx = nn.ParameterList([raw(h, in_dim, scale=1.0 / in_dim) for h in hidden])
        self.wz = nn.ParameterList(
            [raw(b, a, scale=1.0 / a) for a, b in zip(hidden[:-1], hidden[1:], strict=True)]
        )
        self.biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(h, dtype=dtype)) for h in hidden]
        )
        self.out = raw(hidden[-1], scale=1.0 / hidden[-1])

    def layers(self) -> NetworkLayers:
        """The network's effective (non-negative) weights as :class:`NetworkLayers`."""
        Wx = [Fn.softplus(w) for w in self.wx]
        W = [Wx[0], *[Fn.softplus(w) for w in self.wz]]
        return NetworkLayers(W, list(self.biases), [None, *Wx[1:]], Fn.softplus(self.out))

    def forward(self, x: Tensor, order: int = 0):
        """Value ``n``, gradient ``n x p``, Hessian ``n x p x p`` (None above ``order``)
        at ``x`` (``n x p``), by :func:`~surrogates.neural.networks.network_derivatives`."""
        return batch_first(network_derivatives(self.layers(), x.T, order))
