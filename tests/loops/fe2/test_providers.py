"""Material-point providers: the RVE laws as providers, plane strain, bad input, Sobol designs."""

from __future__ import annotations

import pytest
import torch

from loops.fe2.providers import LawProvider, NeoHookean, sobol_gradients
from oracles.exceptions import InvalidInput
from oracles.rve import laws

D = torch.float64


def test_neo_hookean_provider_is_the_rve_law():
    p = NeoHookean.from_young(10.0, 0.3)
    assert isinstance(p.law, laws.NeoHookean)
    lam, mu = laws.lame_from(E=10.0, nu=0.3)
    assert p.mu == pytest.approx(mu) and p.lam == pytest.approx(lam)
    F = sobol_gradients(7, 0.2, seed=1, k=3)
    r = p.material_response(F)
    P, A = laws.NeoHookean(E=10.0, nu=0.3).stress_tangent(F)
    torch.testing.assert_close(r.P, P, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.tangent, A, rtol=1e-12, atol=1e-12)


def test_plane_strain_is_the_in_plane_block_of_the_3d_law():
    p = NeoHookean(mu=1.3, lam=2.1)
    F2 = sobol_gradients(9, 0.15, seed=2)
    F3 = torch.eye(3, dtype=D).repeat(9, 1, 1)
    F3[:, :2, :2] = F2
    r2, r3 = p.material_response(F2), p.material_response(F3)
    torch.testing.assert_close(r2.P, r3.P[:, :2, :2], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r2.tangent, r3.tangent[:, :2, :2, :2, :2], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("law", [laws.NeoHookean(E=3.0, nu=0.2), laws.StVenantKirchhoff(E=3.0, nu=0.2)])
def test_law_provider_tangent_is_finite_difference_of_its_stress(law):
    p = LawProvider(law)
    F = sobol_gradients(5, 0.2, seed=3)
    A = p.material_response(F).tangent
    h = 1e-6
    for k in range(2):
        for L in range(2):
            dF = torch.zeros_like(F)
            dF[:, k, L] = h
            fd = (p.material_response(F + dF).P - p.material_response(F - dF).P) / (2 * h)
            torch.testing.assert_close(A[..., k, L], fd, rtol=1e-6, atol=1e-7)


def test_bad_input_is_named():
    with pytest.raises(InvalidInput, match="shear modulus mu must be positive, got -1.0"):
        NeoHookean(mu=-1.0, lam=1.0)
    with pytest.raises(InvalidInput, match="positive bulk modulus"):
        NeoHookean(mu=3.0, lam=-2.5)
    with pytest.raises(TypeError, match="stress_tangent"):
        LawProvider(object())
    with pytest.raises(InvalidInput, match="det F must be positive"):
        NeoHookean(1.0, 1.0).material_response(torch.diag(torch.tensor([1.0, -1.0], dtype=D))[None])
    with pytest.raises(ValueError, match="h_max"):
        sobol_gradients(4, 0.0)


def test_sobol_gradients_fill_the_box():
    F = sobol_gradients(64, 0.1, seed=0, k=3)
    H = (F - torch.eye(3, dtype=D)).reshape(64, 9)
    assert H.abs().max() <= 0.1 and H.min(0).values.max() < -0.08 and H.max(0).values.min() > 0.08
    assert torch.equal(F, sobol_gradients(64, 0.1, seed=0, k=3))
