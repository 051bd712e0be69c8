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

from surrogates.neural.networks import linear_derivs, propagate


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

    def forward(self, x: Tensor, order: int = 0):
        """Value ``n``, gradient ``n x p``, Hessian ``n x p x p`` (None above ``order``)."""
        n = x.shape[0]
        Wx = [Fn.softplus(w) for w in self.wx]
        a = x @ Wx[0].T + self.biases[0]
        da = Wx[0].unsqueeze(0).expand(n, -1, -1) if order >= 1 else None
        z, dz, ddz = propagate(a, da, None, order)
        for l, Wz_raw in enumerate(self.wz):
            Wz = Fn.softplus(Wz_raw)
            a = z @ Wz.T + x @ Wx[l + 1].T + self.biases[l + 1]
            da, dda = linear_derivs(Wz, dz, ddz)
            if da is not None:
                da = da + Wx[l + 1]  # the input skip is linear: no Hessian
            z, dz, ddz = propagate(a, da, dda, order)
        w = Fn.softplus(self.out)
        val = z @ w
        g = None if dz is None else torch.einsum("h,nhp->np", w, dz)
        H = None if ddz is None else torch.einsum("h,nhpq->npq", w, ddz)
        return val, g, H
