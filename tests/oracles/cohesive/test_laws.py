"""Cohesive laws: work of separation, tractions as potential gradients, tangents,
full separation, shared parameterization and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

from oracles.base import DTYPE
from oracles.cohesive.laws import BilinearLaw, ExponentialLaw, PPRLaw, make_law
from oracles.exceptions import InvalidInput

LAWS = {
    "bilinear": lambda: BilinearLaw(2.6, 10.0, tau_max=7.0, peak_ratio=0.2),
    "exponential": lambda: ExponentialLaw(2.6, 10.0, Gamma_t=1.5, tau_max=7.0),
    "exponential_r": lambda: ExponentialLaw(2.0, 8.0, Gamma_t=3.0, tau_max=5.0, r=0.3),
    "ppr_n_gt_t": lambda: PPRLaw(2.6, 10.0, Gamma_t=1.5, tau_max=7.0),
    "ppr_t_gt_n": lambda: PPRLaw(1.0, 10.0, Gamma_t=2.5, tau_max=7.0, alpha=4.0, beta=2.5, lambda_n=0.2),
    "ppr_equal": lambda: PPRLaw(2.0, 6.0, alpha=2.0, beta=2.0, lambda_n=0.05, lambda_t=0.05),
}


def pt(*v):
    return torch.tensor(v, dtype=DTYPE)


def tangential_scale(law):
    return getattr(law, "delta_tc", None) or law.delta_t


def work(law, mode):
    """int_0^inf T_mode d delta_mode along a pure-mode path, by adaptive quadrature."""
    if mode == 0:
        f = lambda s: law.traction(pt(s, 0.0))[0].item()  # noqa: E731
        L = law.critical_opening
    else:
        f = lambda s: law.traction(pt(0.0, s))[1].item()  # noqa: E731
        L = tangential_scale(law)
    # finite support for bilinear/PPR; beyond 60 L the exponential tail is < 1e-20
    kinks = sorted({law.peak_opening, L} if mode == 0 else {L})
    end = 60 * L if isinstance(law, ExponentialLaw) else 1.5 * L
    return quad(f, 0.0, end, points=kinks, limit=500, epsabs=1e-14, epsrel=1e-13)[0]


@pytest.mark.parametrize("name", LAWS)
def test_work_of_separation_equals_fracture_energy(name):
    law = LAWS[name]()
    Gn, Gt = law.fracture_energy
    assert abs(work(law, 0) - Gn) < 1e-6 * Gn
    assert abs(work(law, 1) - Gt) < 1e-6 * Gt


@pytest.mark.parametrize("name", ["bilinear", "exponential", "exponential_r", "ppr_equal"])
@pytest.mark.parametrize("theta", [0.3, 0.8, 1.2])
def test_line_integral_along_radial_path_equals_potential_change(name, theta):
    # conservative field: work along a mixed-mode path = potential difference
    law = LAWS[name]()
    scale = np.array([law.critical_opening, tangential_scale(law)])
    direc = pt(*(np.array([math.cos(theta), math.sin(theta)]) * scale))
    end = 0.8 if isinstance(law, PPRLaw) else 3.0
    f = lambda s: float(law.traction(s * direc) @ direc)  # noqa: E731
    w = quad(f, 0.0, end, limit=500, epsabs=1e-14, epsrel=1e-12)[0]
    dphi = (law.potential(end * direc) - law.potential(0 * direc)).item()
    assert abs(w - dphi) < 1e-6 * max(law.fracture_energy)


def interior_points(law, seed, n=30):
    """Random separations away from the kinks of each law (open, tension side)."""
    rng = np.random.default_rng(seed)
    dn_max, dt_max = law.critical_opening, tangential_scale(law)
    if isinstance(law, ExponentialLaw):
        dn_max, dt_max = 4 * law.delta_n, 3 * law.delta_t
    pts = []
    while len(pts) < n:
        x = rng.uniform([0.02 * dn_max, -0.95 * dt_max], [0.95 * dn_max, 0.95 * dt_max])
        if isinstance(law, BilinearLaw):
            lam = math.hypot(x[0] / law.delta_nc, x[1] / law.delta_tc)
            if abs(lam - law.peak_ratio) < 0.02 or lam > 0.98:
                continue
        if isinstance(law, PPRLaw) and (x[0] > 0.98 * law.conj_n or abs(x[1]) > 0.98 * law.conj_t):
            continue
        if abs(x[1]) < 0.02 * dt_max:
            continue
        pts.append(x)
    return torch.tensor(np.array(pts), dtype=DTYPE)


@pytest.mark.parametrize("name", LAWS)
@pytest.mark.parametrize("seed", [0, 1])
def test_traction_is_gradient_of_potential(name, seed):
    law = LAWS[name]()
    X = interior_points(law, seed)
    T = law.traction(X)
    for j, s in enumerate((law.critical_opening, tangential_scale(law))):
        h = 1e-6 * s
        e = torch.zeros(2, dtype=DTYPE)
        e[j] = h
        fd = (law.potential(X + e) - law.potential(X - e)) / (2 * h)
        torch.testing.assert_close(T[:, j], fd, rtol=1e-6, atol=1e-7 * max(law.peak_traction))


@pytest.mark.parametrize("name", LAWS)
def test_tangent_is_finite_difference_of_traction(name):
    law = LAWS[name]()
    X = interior_points(law, 5)
    K = law.tangent(X)
    assert K.shape == (len(X), 2, 2)
    for j, s in enumerate((law.critical_opening, tangential_scale(law))):
        h = 1e-6 * s
        e = torch.zeros(2, dtype=DTYPE)
        e[j] = h
        fd = (law.traction(X + e) - law.traction(X - e)) / (2 * h)
        scale = max(law.peak_traction) / min(law.critical_opening, tangential_scale(law))
        torch.testing.assert_close(K[:, :, j], fd, rtol=1e-5, atol=1e-6 * scale)
    # a potential-based law has a symmetric tangent
    torch.testing.assert_close(K, K.transpose(-1, -2), rtol=1e-9, atol=1e-9 * K.abs().max().item())


def test_zero_traction_after_full_separation():
    b = LAWS["bilinear"]()
    sep = torch.tensor([[1.0001 * b.delta_nc, 0.0], [0.0, -1.2 * b.delta_tc], [0.8 * b.delta_nc, 0.7 * b.delta_tc]], dtype=DTYPE)
    assert (b.traction(sep) == 0).all()
    assert torch.allclose(b.potential(sep), torch.full((3,), 2.6, dtype=DTYPE))
    for name in ("ppr_n_gt_t", "ppr_t_gt_n"):
        p = LAWS[name]()
        sep = torch.tensor([[1.01 * p.delta_n, 0.3 * p.delta_t], [0.2 * p.delta_n, 1.01 * p.delta_t],
                            [2 * p.delta_n, -2 * p.delta_t]], dtype=DTYPE)
        assert (p.traction(sep) == 0).all()
        # beyond a conjugate separation the other traction vanishes too
        if p.conj_n < p.delta_n:
            assert p.traction(pt(1.01 * p.conj_n, 0.3 * p.delta_t))[1] == 0
        if p.conj_t < p.delta_t:
            assert p.traction(pt(0.3 * p.delta_n, 1.01 * p.conj_t))[0] == 0
    e = LAWS["exponential"]()
    far = e.traction(pt(40 * e.delta_n, 0.0)).abs().max() / e.sigma_max
    assert far < 1e-15
    assert e.traction(pt(0.5 * e.delta_n, 10 * e.delta_t)).abs()[1] < 1e-30


@pytest.mark.parametrize("name", LAWS)
def test_peak_tractions(name):
    law = LAWS[name]()
    sn = torch.linspace(0, 3 * law.critical_opening, 20001, dtype=DTYPE)
    st = torch.linspace(0, 3 * tangential_scale(law), 20001, dtype=DTYPE)
    z = torch.zeros_like(sn)
    Tn = law.traction(torch.stack([sn, z], -1))[:, 0]
    Tt = law.traction(torch.stack([z, st], -1))[:, 1]
    smax, tmax = law.peak_traction
    assert Tn.max().item() <= smax * (1 + 1e-12) and Tn.max().item() > smax * (1 - 2e-3)  # grid spacing vs kink
    assert Tt.max().item() <= tmax * (1 + 1e-12) and Tt.max().item() > tmax * (1 - 2e-3)
    assert law.traction(pt(law.peak_opening, 0.0))[0].item() == pytest.approx(smax, rel=1e-12)


def test_bilinear_and_exponential_share_gamma_and_sigma_when_parameterized_to():
    G, s = 1.7, 4.0
    laws = [make_law("bilinear", G, s), make_law("exponential", G, s)]
    works = [work(law, 0) for law in laws]
    peaks = []
    for law in laws:
        d = torch.linspace(0, 2 * law.critical_opening, 40001, dtype=DTYPE)
        peaks.append(law.traction(torch.stack([d, torch.zeros_like(d)], -1))[:, 0].max().item())
    assert works[0] == pytest.approx(works[1], rel=1e-6) and works[0] == pytest.approx(G, rel=1e-6)
    assert peaks[0] == pytest.approx(peaks[1], rel=1e-5) and peaks[0] == pytest.approx(s, rel=1e-5)


def test_compression_penalty_and_batch_shapes():
    for name in ("bilinear", "ppr_n_gt_t"):
        law = LAWS[name]()
        T = law.traction(pt(-0.01 * law.critical_opening, 0.0))
        assert T[0] < 0 and T[1] == 0
    law = LAWS["exponential"]()
    X = torch.rand(4, 3, 2, dtype=DTYPE) * law.delta_n
    assert law.traction(X).shape == (4, 3, 2)
    assert law.potential(X).shape == (4, 3)
    assert law.tangent(X).shape == (4, 3, 2, 2)
    assert torch.isfinite(LAWS["bilinear"]().tangent(torch.zeros(2, dtype=DTYPE))).all()
    assert torch.isfinite(LAWS["ppr_equal"]().tangent(torch.zeros(2, dtype=DTYPE))).all()


def test_autograd_through_law_parameters():
    # d(peak traction at the peak opening)/d(opening scale) via autograd is finite, no NaN
    law = LAWS["ppr_equal"]()
    d = torch.tensor([[0.0, 0.0], [0.3 * law.delta_n, 0.1 * law.delta_t]], dtype=DTYPE, requires_grad=True)
    K = law.tangent(d, create_graph=True)
    K.sum().backward()
    assert torch.isfinite(d.grad).all()


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="Gamma must be a positive number"):
        BilinearLaw(-1.0, 3.0)
    with pytest.raises(InvalidInput, match="peak_ratio"):
        BilinearLaw(1.0, 3.0, peak_ratio=1.0)
    with pytest.raises(InvalidInput, match="r must be"):
        ExponentialLaw(1.0, 3.0, r=1.0)
    with pytest.raises(InvalidInput, match="lambda_n"):
        PPRLaw(1.0, 3.0, alpha=5.0, lambda_n=0.5)
    with pytest.raises(InvalidInput, match="alpha"):
        PPRLaw(1.0, 3.0, alpha=0.5)
    with pytest.raises(InvalidInput, match="law must be one of"):
        make_law("cubic", 1.0, 2.0)
    with pytest.raises(InvalidInput, match="single Gamma"):
        make_law("bilinear", 1.0, 2.0, Gamma_t=3.0)
    with pytest.raises(InvalidInput, match="shape"):
        BilinearLaw(1.0, 3.0).traction(torch.zeros(3, dtype=DTYPE))
    with pytest.raises(InvalidInput, match="finite"):
        BilinearLaw(1.0, 3.0).traction(pt(float("nan"), 0.0))


@pytest.mark.parametrize("name", LAWS)
def test_tangent_on_the_axes_is_the_opening_sides_slope(name):
    """Where a separation component is exactly zero (the closed interface every cohesive
    analysis starts from, pure mode I or II paths) the tangent is the one-sided finite
    difference on the opening side (dn >= 0) and the two-sided one in shear (the traction is
    smooth and odd in dt). PPR's shear stiffness had been 0 at dt = 0 (a singular interface
    stiffness at the origin) and both PPR's and the bilinear law's normal stiffness at dn = 0
    the sum of the opening and the contact-penalty slopes (bilinear: twice the elastic one)."""
    law = LAWS[name]()
    sn, st = law.critical_opening, tangential_scale(law)
    pts = [pt(0.0, 0.0), pt(0.2 * law.peak_opening, 0.0), pt(0.0, 0.05 * st)]
    for x in pts:
        K = law.tangent(x)
        h_n, h_t = 1e-6 * law.peak_opening, 1e-7 * st
        # second-order one-sided difference on the opening side
        fd_n = (4 * law.traction(x + pt(h_n, 0.0)) - 3 * law.traction(x) - law.traction(x + pt(2 * h_n, 0.0))) / (2 * h_n)
        fd_t = (law.traction(x + pt(0.0, h_t)) - law.traction(x - pt(0.0, h_t))) / (2 * h_t)
        scale = max(law.peak_traction) / min(sn, st)
        torch.testing.assert_close(K[:, 0], fd_n, rtol=1e-4, atol=1e-5 * scale)
        torch.testing.assert_close(K[:, 1], fd_t, rtol=1e-4, atol=1e-5 * scale)
    assert float(torch.linalg.det(law.tangent(pt(0.0, 0.0)))) > 0


def test_settings_of_the_wrong_type_are_named():
    """A setting of the wrong type is refused naming the setting (it had surfaced as a bare
    ``could not convert string to float``); complex or non-numeric separations are refused."""
    from oracles.cohesive import CohesiveOracle

    for make, name in ((lambda: BilinearLaw(1, 10, peak_ratio="abc"), "peak_ratio"),
                       (lambda: ExponentialLaw(1, 10, r=None), "r"),
                       (lambda: PPRLaw(1, 10, alpha="x"), "alpha"),
                       (lambda: PPRLaw(1, 10, lambda_n=None), "lambda_n"),
                       (lambda: CohesiveOracle(law_options={"peak_ratio": "abc"}), "peak_ratio")):
        with pytest.raises(InvalidInput, match=name):
            make()
    for bad in ("abc", [["a", 0.0]], torch.tensor([[0.01 + 0.5j, 0.0]])):
        with pytest.raises(InvalidInput, match="delta must be real numbers"):
            BilinearLaw(1, 10).traction(bad)
    assert CohesiveOracle(shear_strength_ratio=np.float32(0.5)).shear_strength_ratio == 0.5
