"""Fused C kernels of the stress-and-tangent paths against independent answers.

* the inlined vector ``exp`` against ``torch.exp``;
* the GP kernel against GPyTorch's posterior mean and autograd through it, and
  against central finite differences of its own mean;
* the hyperelastic kernel against the reference energy-network path
  (:meth:`HyperelasticEnsemble._response`, autograd-free closed forms), the
  torch fast path, and finite differences of its own stress.

Skipped where no C compiler can build the kernels (the torch paths then serve).
"""

from __future__ import annotations

import ctypes

import pytest
import torch

from oracles.exceptions import InvalidInput
from surrogates.native import gp_matern, load, ptr
from surrogates.native import hyperelastic as native_hyper

D = torch.float64

pytestmark = pytest.mark.skipif(
    not (gp_matern.available() and native_hyper.available()),
    reason="native kernels unavailable (no C compiler or SCALEBRIDGE_NATIVE=0)")


def test_inlined_exp_matches_torch_to_a_few_ulp():
    lib = load("gp_matern", gp_matern._SOURCE)
    fn = lib.sb_exp_test
    fn.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.linspace(-700.0, 700.0, 40_000, dtype=D),
                   torch.randn(40_000, generator=g, dtype=D) * 3,
                   torch.tensor([0.0, -0.0, 1e-300, -1e-300, 0.5 * 0.6931471805599453] * 8, dtype=D)])
    x = x[: len(x) // 8 * 8].contiguous()
    y = torch.empty_like(x)
    fn(len(x), ptr(x), ptr(y))
    ref = torch.exp(x)
    assert float(((y - ref) / ref).abs().max()) < 1e-15
    assert torch.equal(y[x == 0], torch.ones_like(y[x == 0]))


# ------------------------------------------------------------------------ GP
def _gp(dim, seed=3, shared=False):
    from tests.surrogates.test_gp import _random_hyper_gp

    return _random_hyper_gp(dim, 70, seed=seed, shared=shared)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("shared", [False, True])
def test_gp_kernel_equals_gpytorch_posterior_and_autograd(dim, shared):
    from surrogates.gp import _GPCommon

    gp = _gp(dim, shared=shared)
    assert gp._fast_terms()["native"]["shared"] is shared
    g = torch.Generator().manual_seed(dim)
    X = 0.25 * (2 * torch.rand(37, dim * dim, generator=g, dtype=D) - 1)
    mean, jac = gp._native_mean_jac(X)
    mean_ref, jac_ref, _ = _GPCommon._mean_jac_var(gp, X, with_variance=False)
    assert mean.shape == (37, dim * dim) and jac.shape == (37, dim * dim, dim * dim)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-10, atol=1e-10 * mean_ref.abs().max().item())
    torch.testing.assert_close(jac, jac_ref, rtol=1e-10, atol=1e-10 * jac_ref.abs().max().item())
    # material_response without variance takes the kernel; same numbers
    F = torch.eye(dim, dtype=D) + X.reshape(37, dim, dim)
    r = gp.material_response(F, with_variance=False)
    torch.testing.assert_close(r.P.reshape(37, -1), mean, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(r.tangent.reshape(37, dim * dim, -1), jac, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shared", [False, True])
def test_gp_kernel_jacobian_is_finite_difference_of_its_mean(shared):
    gp = _gp(3, seed=8, shared=shared)
    g = torch.Generator().manual_seed(9)
    X = 0.2 * (2 * torch.rand(5, 9, generator=g, dtype=D) - 1)
    _, jac = gp._native_mean_jac(X)
    h = 1e-5
    for a in range(9):
        dX = torch.zeros_like(X)
        dX[:, a] = h
        fd = (gp._native_mean_jac(X + dX)[0] - gp._native_mean_jac(X - dX)[0]) / (2 * h)
        torch.testing.assert_close(jac[:, :, a], fd, rtol=1e-6, atol=1e-7 * jac.abs().max().item())


def test_gp_kernel_threads_give_identical_numbers():
    gp = _gp(2, seed=5)
    g = torch.Generator().manual_seed(6)
    X = 0.2 * (2 * torch.rand(3000, 4, generator=g, dtype=D) - 1)
    one = gp_matern.mean_jacobian(gp._fast_terms()["native"], X, workers=1)
    two = gp_matern.mean_jacobian(gp._fast_terms()["native"], X, workers=2)
    assert torch.equal(one[0], two[0]) and torch.equal(one[1], two[1])


def test_gp_without_kernel_uses_torch_path(monkeypatch):
    gp = _gp(2, seed=11)
    F = torch.eye(2, dtype=D) + 0.1 * torch.ones(4, 2, 2, dtype=D)
    fast = gp.material_response(F, with_variance=False)
    monkeypatch.setattr(type(gp), "_native_mean_jac", lambda self, X: None)
    slow = gp.material_response(F, with_variance=False)
    torch.testing.assert_close(fast.P, slow.P, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast.tangent, slow.tangent, rtol=1e-11, atol=1e-11)


# -------------------------------------------------------------- hyperelastic
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


@pytest.mark.parametrize(("dim", "symmetry", "options"), CASES)
def test_hyperelastic_kernel_equals_reference(dim, symmetry, options):
    model = _ensemble(dim, symmetry, seed=dim, **options)
    F = _random_F(203, dim, 0.3, seed=dim)  # not a multiple of the vector length
    ev = model.fast_evaluator()
    assert ev.native is not None
    out = ev(F)
    ref = model._response(F)
    assert out.P.is_contiguous() and out.tangent.is_contiguous()
    for a, b in ((out.P, ref.P), (out.tangent, ref.tangent), (out.variance, ref.variance)):
        torch.testing.assert_close(a, b.detach(), rtol=1e-12, atol=1e-12 * float(b.detach().abs().max()))
    # the torch fast path computes the same
    ev.native = None
    try:
        tor = ev(F)
    finally:
        model._fast_cache = None
    torch.testing.assert_close(out.tangent, tor.tangent, rtol=1e-12, atol=1e-12 * float(tor.tangent.abs().max()))


def test_hyperelastic_kernel_tangent_is_finite_difference_of_its_stress():
    model = _ensemble(3, "transverse", seed=4)
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


def test_hyperelastic_kernel_threads_and_bad_points():
    model = _ensemble(2, "isotropic", seed=7)
    ev = model.fast_evaluator()
    F = _random_F(5001, 2, 0.3, seed=8)
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ev(F)
        torch.set_num_threads(2)
        two = ev(F)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(one.tangent, two.tangent) and torch.equal(one.variance, two.variance)
    for i, bad in ((4990, torch.diag(torch.tensor([1.0, -2.0], dtype=D))),
                   (17, torch.tensor([[float("nan"), 0.0], [0.0, 1.0]], dtype=D)),
                   (3, torch.tensor([[float("inf"), 0.0], [0.0, 1.0]], dtype=D))):
        Fb = F.clone()
        Fb[i] = bad
        Fb[i + 2] = bad  # the first bad point is named
        with pytest.raises(InvalidInput, match=f"point {i}$"):
            ev(Fb)


def test_hyperelastic_single_member_has_no_variance_and_fallback_matches(monkeypatch):
    from surrogates.neural import HyperelasticEnsemble

    model = HyperelasticEnsemble(dim=3, num_members=1, seed=2).eval()
    F = _random_F(20, 3, 0.2, seed=3)
    out = model.material_response(F)
    assert out.variance is None
    monkeypatch.setattr(native_hyper, "available", lambda: False)
    model._fast_cache = None
    ev = model.fast_evaluator()
    assert ev.native is None
    torch.testing.assert_close(ev(F).tangent, out.tangent, rtol=1e-12, atol=1e-12)


def test_inlined_log1p_on_the_unit_interval_matches_torch():
    """The softplus helper ``log(1 + e)``, ``e`` in ``[0, 1]`` (both branches and their seam)."""
    lib = load("hyperelastic", native_hyper._SOURCE)
    fn = lib.sb_log1p_test
    fn.argtypes = [ctypes.c_int64, ctypes.POINTER(ctypes.c_double), ctypes.POINTER(ctypes.c_double)]
    g = torch.Generator().manual_seed(1)
    seam = 0.41421356237309503
    x = torch.cat([torch.linspace(0.0, 1.0, 40_001, dtype=D), torch.rand(40_000, generator=g, dtype=D),
                   torch.tensor([0.0, 1e-300, 1e-17, 1.0, seam, seam * (1 - 1e-16), seam * (1 + 1e-16)] * 8,
                                dtype=D)])
    x = x[: len(x) // 8 * 8].contiguous()
    y = torch.empty_like(x)
    fn(len(x), ptr(x), ptr(y))
    ref = torch.log1p(x)
    nz = ref > 0
    assert float(((y[nz] - ref[nz]) / ref[nz]).abs().max()) < 4e-16
    assert torch.equal(y[~nz], ref[~nz])
