"""The network derivative kernel (:func:`surrogates.neural.networks.network_derivatives`).

Value, input gradient and input Hessian against ``torch.func`` (autograd of the
value alone), for the MLP and the input-convex network at several depths, with
members stacked along a leading dimension; and the derivatives of the Hessian
w.r.t. the weights (what Sobolev training backpropagates) against finite
differences (``gradcheck``).
"""

from __future__ import annotations

import pytest
import torch

from surrogates.neural.icnn import ConvexMLP
from surrogates.neural.networks import NetworkLayers, ScalarMLP, network_derivatives

D = torch.float64


def _net(cls, p, hidden, seed):
    net = cls(p, hidden=hidden, generator=torch.Generator().manual_seed(seed))
    g = torch.Generator().manual_seed(seed + 50)
    with torch.no_grad():
        for b in net.biases:  # generic biases: no symmetric point at the origin
            b.copy_(torch.randn(b.shape, generator=g, dtype=D))
    return net


CASES = [(cls, hidden) for cls in (ScalarMLP, ConvexMLP) for hidden in ((7,), (8, 6), (5, 6, 4))]


@pytest.mark.parametrize(("cls", "hidden"), CASES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_value_gradient_hessian_match_autograd(cls, hidden):
    p = 4
    net = _net(cls, p, hidden, seed=len(hidden))
    x = torch.randn(9, p, generator=torch.Generator().manual_seed(3), dtype=D)
    val, g, H = net(x, order=2)

    def value(xi):  # order 0 alone: the value path, differentiated by torch.func
        return net(xi[None], order=0)[0][0]

    g_ref = torch.func.vmap(torch.func.grad(value))(x)
    H_ref = torch.func.vmap(torch.func.hessian(value))(x)
    torch.testing.assert_close(val, net(x, order=0)[0], rtol=0, atol=0)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(H, H_ref, rtol=1e-11, atol=1e-13)
    assert float(H.detach().abs().max()) > 1e-3  # not vacuous
    if cls is ConvexMLP:  # convex in the input: every Hessian is positive semi-definite
        assert float(torch.linalg.eigvalsh(H.detach()).min()) > -1e-12


def test_stacked_members_equal_each_member():
    nets = [_net(ConvexMLP, 3, (6, 5), seed=s) for s in range(3)]
    x = torch.randn(3, 11, generator=torch.Generator().manual_seed(1), dtype=D)  # p x n, batch last
    stacked = NetworkLayers.stack([n.layers() for n in nets])
    val, g, H = network_derivatives(stacked, x, order=2)
    assert val.shape == (3, 11) and g.shape == (3, 3, 11) and H.shape == (3, 3, 3, 11)
    for m, net in enumerate(nets):
        vm, gm, Hm = network_derivatives(net.layers(), x, order=2)
        torch.testing.assert_close(val[m], vm, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(g[m], gm, rtol=1e-14, atol=1e-14)
        torch.testing.assert_close(H[m], Hm, rtol=1e-14, atol=1e-14)
    # orders below 2 leave the rest out; value=False skips the value
    v1, g1, H1 = network_derivatives(stacked, x, order=1, value=False)
    assert v1 is None and H1 is None
    torch.testing.assert_close(g1, g, rtol=0, atol=0)


@pytest.mark.parametrize("cls", [ScalarMLP, ConvexMLP])
def test_hessian_is_differentiable_in_the_weights(cls):
    net = _net(cls, 3, (4, 3), seed=2)
    x = torch.randn(2, 3, generator=torch.Generator().manual_seed(4), dtype=D)
    names = [name for name, _ in net.named_parameters()]

    def f(*ws):
        return torch.func.functional_call(net, dict(zip(names, ws, strict=True)), (x,), {"order": 2})

    inputs = tuple(q.detach().clone().requires_grad_(True) for q in net.parameters())
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7)


def test_bad_order():
    net = ScalarMLP(2, hidden=(3,))
    with pytest.raises(ValueError, match="order must be 0, 1 or 2, got 3"):
        net(torch.zeros(1, 2, dtype=D), order=3)


def test_training_without_validation_keeps_the_lowest_loss_not_the_first():
    """Without a validation split the weights kept are those of the lowest training loss,
    measured after each step: a loss that falls by less than ``tol`` per step stops the
    run but keeps its last, lowest weights (they had been rolled back to the first step)."""
    from surrogates.neural.training import TrainingOptions, train_network

    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    lin = torch.nn.Linear(3, 1).double()

    def loss(mod, idx):
        return (mod(x[idx]).squeeze(-1) - y[idx]).pow(2).mean()

    idx = torch.arange(40)
    with torch.no_grad():
        start = float(loss(lin, idx))
    hist = train_network(lin, loss, idx, None, TrainingOptions(optimizer="adam", lr=1e-3, max_iter=6,
                                                                inner_iter=2, tol=0.5, patience=3))
    with torch.no_grad():
        end = float(loss(lin, idx))
    assert len(hist.val) == 4  # no step gains 50 %: stopped after patience
    assert end < start and end == pytest.approx(min(hist.val), rel=1e-12)
    assert hist.best_step == len(hist.val) - 1
