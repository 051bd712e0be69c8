"""The stress-and-tangent evaluation of the neural surrogates (:mod:`surrogates.neural.fast`).

Against autograd of the members' energies alone (first and second derivatives
w.r.t. ``F`` of the value path, no closed form involved), against central
finite differences of its own stress, and for its chunking, threads and bad
points.
"""

from __future__ import annotations

import pytest
import torch

from oracles.exceptions import InvalidInput

D = torch.float64


def _ensemble(dim, symmetry, seed, **options):
    from surrogates.neural import HyperelasticEnsemble

    fibre = [1.0, 0.4, -0.3][:dim] if symmetry == "transverse" else None
    model = HyperelasticEnsemble(dim=dim, symmetry=symmetry, fibre=fibre, hidden=(16, 12),
                                 num_members=4, seed=seed, **options)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        # generic weights: non-zero biases, scales and calibration factors
        for member in model.members:
            for b in member.net.biases:
                b.copy_(0.5 * torch.randn(b.shape, generator=g, dtype=D))
            member.inv_scale.copy_(0.5 + torch.rand(member.inv_scale.shape, generator=g, dtype=D))
            member.energy_scale.fill_(0.5 + float(torch.rand(1, generator=g, dtype=D)))
        model.variance_scale.copy_(0.5 + torch.rand(dim * dim, generator=g, dtype=D))
        model.output_scale.fill_(2.0)
    return model.eval()


def _random_F(n, dim, amp, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.eye(dim, dtype=D) + amp * (2 * torch.rand(n, dim, dim, generator=g, dtype=D) - 1)


CASES = [(dim, sym, opts) for dim in (2, 3) for sym, opts in (
    ("isotropic", {}), ("transverse", {}), ("cubic", {}),
    ("isotropic", {"polyconvex": True, "growth": 0.3}), ("cubic", {"polyconvex": True}))]


def _autograd_reference(model, F):
    """Mean stress and tangent, and the calibrated variance, by autograd of each member's energy."""
    k = F.shape[-1]
    Fg = F.detach().clone().requires_grad_(True)
    Ps = []
    for member in model.members:
        W = member(Fg, order=0)[0]
        (P,) = torch.autograd.grad(W.sum(), Fg, create_graph=True)
        Ps.append(P)
    Pm = torch.stack(Ps)
    P = Pm.mean(0)
    A = torch.empty(F.shape[0], k, k, k, k, dtype=D)
    for i in range(k):
        for J in range(k):
            # points are independent: row (i, J) of every point's tangent at once
            (A[:, i, J],) = torch.autograd.grad(P[:, i, J].sum(), Fg, retain_graph=True)
    var = None
    if len(Ps) > 1:
        var = (Pm.detach().flatten(2).var(0) * model.variance_scale).mean(-1) + 1e-12 * float(
            model.output_scale.pow(2).mean())
    return P.detach(), A, var


@pytest.mark.parametrize(("dim", "symmetry", "options"), CASES)
def test_evaluator_equals_autograd_of_the_energies(dim, symmetry, options):
    model = _ensemble(dim, symmetry, seed=dim, **options)
    F = _random_F(203, dim, 0.3, seed=dim)
    out = model.fast_evaluator(chunk=64)(F)  # several chunks and a partial one
    P, A, var = _autograd_reference(model, F)
    for a, b in ((out.P, P), (out.tangent, A), (out.variance, var)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-11 * float(b.abs().max()))
    # the differentiable path (F.requires_grad) is the same evaluation on the live weights
    ref = model.material_response(F.clone().requires_grad_(True))
    torch.testing.assert_close(ref.tangent.detach(), out.tangent, rtol=1e-12, atol=1e-12 * float(A.abs().max()))
    assert ref.P.requires_grad


@pytest.mark.parametrize("hidden", [(9,), (8, 7, 6)])
def test_evaluator_any_depth(hidden):
    from surrogates.neural import HyperelasticEnsemble

    model = HyperelasticEnsemble(dim=3, symmetry="cubic", hidden=hidden, polyconvex=len(hidden) > 1,
                                 num_members=2, seed=6).eval()
    F = _random_F(30, 3, 0.3, seed=6)
    out = model.material_response(F)
    P, A, var = _autograd_reference(model, F)
    torch.testing.assert_close(out.P, P, rtol=1e-10, atol=1e-11 * float(P.abs().max()))
    torch.testing.assert_close(out.tangent, A, rtol=1e-10, atol=1e-11 * float(A.abs().max()))


@pytest.mark.parametrize("symmetry", ["transverse", "cubic"])
def test_fast_tangent_is_finite_difference_of_its_stress(symmetry):
    model = _ensemble(3, symmetry, seed=4)
    ev = model.fast_evaluator()
    F = _random_F(6, 3, 0.25, seed=5)
    A = ev(F).tangent
    h = 1e-6
    for k in range(3):
        for L in range(3):
            dF = torch.zeros_like(F)
            dF[:, k, L] = h
            fd = (ev(F + dF).P - ev(F - dF).P) / (2 * h)
            torch.testing.assert_close(A[..., k, L], fd, rtol=1e-6, atol=1e-7 * float(A.abs().max()))


def test_fast_path_threads_workers_and_bad_points():
    model = _ensemble(2, "isotropic", seed=7)
    ev = model.fast_evaluator(chunk=512)
    F = _random_F(2001, 2, 0.3, seed=8)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ev(F)
        torch.set_num_threads(2)
        two = ev(F)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(prev)
    torch.testing.assert_close(one.tangent, two.tangent, rtol=1e-13, atol=1e-13)
    par = model.fast_evaluator(chunk=512, workers=2)(F)
    assert torch.equal(one.tangent, par.tangent) and torch.equal(one.variance, par.variance)
    for i, bad in ((1990, torch.diag(torch.tensor([1.0, -2.0], dtype=D))),
                   (17, torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=D)),
                   (3, torch.tensor([[float("inf"), 0.0], [0.0, 1.0]], dtype=D))):
        Fb = F.clone()
        Fb[i] = bad
        Fb[i + 2] = bad  # the first bad point is named
        with pytest.raises(InvalidInput, match=f"point {i}$"):
            ev(Fb)


def test_single_member_has_no_variance():
    from surrogates.neural import HyperelasticEnsemble

    model = HyperelasticEnsemble(dim=3, num_members=1, seed=2).eval()
    F = _random_F(20, 3, 0.2, seed=3)
    out = model.material_response(F)
    assert out.variance is None
    _, A, _ = _autograd_reference(model, F)
    torch.testing.assert_close(out.tangent, A, rtol=1e-10, atol=1e-11 * float(A.abs().max()))


def test_evaluator_follows_weights_edited_through_data_and_refuses_bad_settings():
    """``material_response`` uses the cached fast evaluator; an edit of the weights through
    ``.data`` (which leaves ``_version`` alone) had kept the old weights' stress (0.45 off the
    posterior's). Chunk sizes below 1 had returned uninitialised memory as stress; a float32 F
    with ``requires_grad`` had raised a dtype error from inside torch."""
    from surrogates.neural import HyperelasticEnsemble

    torch.manual_seed(0)
    ens = HyperelasticEnsemble(dim=3, num_members=2, hidden=(4,))
    ens.eval()
    F = torch.eye(3, dtype=torch.float64) + 0.1 * torch.randn(4, 3, 3, dtype=torch.float64)
    X = (F - torch.eye(3, dtype=torch.float64)).reshape(-1, 9)
    before = ens.material_response(F).P.clone()
    with torch.no_grad():
        for p in ens.parameters():
            p.data.mul_(2.0)
    after = ens.material_response(F).P
    assert float((after - before).abs().max()) > 1e-3
    torch.testing.assert_close(after, ens.posterior(X).mean.reshape(-1, 3, 3), rtol=1e-10, atol=1e-12)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="chunk"):
            ens.fast_evaluator(chunk=bad)
    with pytest.raises(ValueError, match="dtype"):
        ens.fast_evaluator(dtype=torch.float16)
    F32 = F.to(torch.float32).requires_grad_()
    r = ens.material_response(F32)
    torch.testing.assert_close(r.P, after, rtol=1e-5, atol=1e-6)
    r.P.sum().backward()
    assert F32.grad is not None and F32.grad.dtype == torch.float32


def test_growth_and_non_finite_strains_are_refused():
    """growth = inf (NaN stress everywhere) and NaN strains given to a small-strain
    ensemble's posterior (NaN returned silently) are refused by name."""
    from surrogates.neural import HyperelasticEnsemble, SmallStrainEnsemble

    for bad in (float("inf"), -1.0, "x"):
        with pytest.raises(ValueError, match="growth"):
            HyperelasticEnsemble(dim=3, num_members=1, hidden=(4,), growth=bad)
    ens = SmallStrainEnsemble(dim=3, num_members=1, hidden=(4,))
    X = torch.zeros(2, 6, dtype=D)
    X[0, 0] = float("nan")
    with pytest.raises(ValueError, match="finite"):
        ens.posterior(X)
