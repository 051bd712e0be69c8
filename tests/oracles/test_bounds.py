"""Bounds and Mori–Tanaka against closed forms written independently, orderings
and an Eshelby-tensor computation of Mori–Tanaka."""

from __future__ import annotations

import pytest
import torch

from oracles.analytic.bounds import (
    HashinShtrikmanOracle,
    MoriTanakaOracle,
    ReussOracle,
    VoigtOracle,
    hashin_shtrikman_bounds,
    isotropic_moduli,
    isotropic_stiffness,
    moduli_to_E_nu,
    mori_tanaka,
    plane_strain_bulk,
    reuss_bound,
    reuss_moduli,
    voigt_bound,
    voigt_moduli,
)
from oracles.base import DTYPE
from oracles.exceptions import InvalidInput
from oracles.testing import DeterministicOracleTests, OracleContractTests

D = DTYPE


def random_phases(seed: int, n: int = 50):
    g = torch.Generator().manual_seed(seed)
    K = 10 ** (2 * torch.rand(n, 2, generator=g, dtype=D) - 1)
    nu = 0.45 * torch.rand(n, 2, generator=g, dtype=D) + 0.02  # nu in (0.02, 0.47)
    G = 3 * K * (1 - 2 * nu) / (2 * (1 + nu))
    f2 = torch.rand(n, generator=g, dtype=D)
    return K, G, f2


def hs_classical(K1, G1, K2, G2, f2, dim):
    """Hashin–Shtrikman (1963) / Hashin (1965) in their original form, phase 1 softer."""
    f1 = 1 - f2
    if dim == 3:
        K = K1 + f2 / (1 / (K2 - K1) + 3 * f1 / (3 * K1 + 4 * G1))
        G = G1 + f2 / (1 / (G2 - G1) + 6 * f1 * (K1 + 2 * G1) / (5 * G1 * (3 * K1 + 4 * G1)))
        return K, G
    k1, k2 = K1 + G1 / 3, K2 + G2 / 3
    k = k1 + f2 / (1 / (k2 - k1) + f1 / (k1 + G1))
    G = G1 + f2 / (1 / (G2 - G1) + f1 * (k1 + 2 * G1) / (2 * G1 * (k1 + G1)))
    return k, G


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("seed", [0, 1])
def test_hs_matches_classical_form_for_well_ordered_phases(dim, seed):
    K, G, f2 = random_phases(seed)
    # make phase 2 stiffer in both moduli (well ordered)
    K2, G2 = K[:, 0] * (1 + 10 * K[:, 1]), G[:, 0] * (1 + 10 * K[:, 1])
    K1, G1 = K[:, 0], G[:, 0]
    b = hashin_shtrikman_bounds(K1, G1, K2, G2, f2, dim=dim)
    KL, GL = hs_classical(K1, G1, K2, G2, f2, dim)
    KU, GU = hs_classical(K2, G2, K1, G1, 1 - f2, dim)
    torch.testing.assert_close(b.K_lower, KL, rtol=1e-12, atol=0)
    torch.testing.assert_close(b.G_lower, GL, rtol=1e-12, atol=0)
    torch.testing.assert_close(b.K_upper, KU, rtol=1e-12, atol=0)
    torch.testing.assert_close(b.G_upper, GU, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_orderings_reuss_hs_mt_voigt(dim, seed):
    K, G, f2 = random_phases(seed)  # not necessarily well ordered
    f = torch.stack([1 - f2, f2], -1)
    KR, GR = reuss_moduli(K, G, f, dim)
    KV, GV = voigt_moduli(K, G, f, dim)
    b = hashin_shtrikman_bounds(K[:, 0], G[:, 0], K[:, 1], G[:, 1], f2, dim)
    Km, Gm = mori_tanaka(K[:, 0], G[:, 0], K[:, 1], G[:, 1], f2, dim)
    eps = 1e-12
    for lo, hi in [(KR, b.K_lower), (b.K_lower, b.K_upper), (b.K_upper, KV),
                   (GR, b.G_lower), (b.G_lower, b.G_upper), (b.G_upper, GV),
                   (b.K_lower, Km), (Km, b.K_upper), (b.G_lower, Gm), (Gm, b.G_upper)]:
        assert (lo <= hi * (1 + eps)).all()


@pytest.mark.parametrize("dim", [2, 3])
def test_mt_is_hs_lower_for_soft_matrix_and_upper_for_stiff_matrix(dim):
    K, G, f2 = random_phases(3)
    Ks, Gs = K[:, 0], G[:, 0]
    Kh, Gh = Ks * 7.0, Gs * 5.0
    b = hashin_shtrikman_bounds(Ks, Gs, Kh, Gh, f2, dim)
    Km, Gm = mori_tanaka(Ks, Gs, Kh, Gh, f2, dim)
    torch.testing.assert_close(Km, b.K_lower, rtol=1e-12, atol=0)
    torch.testing.assert_close(Gm, b.G_lower, rtol=1e-12, atol=0)
    Km, Gm = mori_tanaka(Kh, Gh, Ks, Gs, 1 - f2, dim)
    torch.testing.assert_close(Km, b.K_upper, rtol=1e-12, atol=0)
    torch.testing.assert_close(Gm, b.G_upper, rtol=1e-12, atol=0)


def eshelby_mandel(K, G, dim):
    """Eshelby tensor of a sphere (3D) or a circular cylinder in plane strain (2D)."""
    nu = (3 * K - 2 * G) / (2 * (3 * K + G))
    if dim == 3:
        one = torch.tensor([1.0, 1, 1, 0, 0, 0], dtype=D)
        J = torch.outer(one, one) / 3
        a = 3 * K / (3 * K + 4 * G)
        b = 6 * (K + 2 * G) / (5 * (3 * K + 4 * G))
        return a * J + b * (torch.eye(6, dtype=D) - J)
    s11 = (5 - 4 * nu) / (8 * (1 - nu))
    s12 = (4 * nu - 1) / (8 * (1 - nu))
    s66 = (3 - 4 * nu) / (8 * (1 - nu))
    return torch.tensor([[s11, s12, 0], [s12, s11, 0], [0, 0, 2 * s66]], dtype=D)


@pytest.mark.parametrize("dim", [2, 3])
def test_mori_tanaka_matches_eshelby_tensor_computation(dim):
    Km, Gm, Ki, Gi, fi = 2.0, 0.9, 15.0, 4.0, 0.35
    Cm = isotropic_stiffness(Km, Gm, dim)
    Ci = isotropic_stiffness(Ki, Gi, dim)
    n = Cm.shape[-1]
    I = torch.eye(n, dtype=D)
    S = eshelby_mandel(torch.tensor(Km, dtype=D), torch.tensor(Gm, dtype=D), dim)
    A_dil = torch.linalg.inv(I + S @ torch.linalg.solve(Cm, Ci - Cm))
    A = A_dil @ torch.linalg.inv((1 - fi) * I + fi * A_dil)
    C = Cm + fi * (Ci - Cm) @ A
    K_ref, G_ref = isotropic_moduli(C)
    K, G = mori_tanaka(Km, Gm, Ki, Gi, fi, dim)
    torch.testing.assert_close(K, K_ref, rtol=1e-12, atol=0)
    torch.testing.assert_close(G, G_ref, rtol=1e-12, atol=0)


@pytest.mark.parametrize("dim", [2, 3])
def test_tensor_bounds_of_isotropic_phases_reduce_to_moduli(dim):
    K = torch.tensor([1.0, 8.0], dtype=D)
    G = torch.tensor([0.4, 5.0], dtype=D)
    f = torch.tensor([0.6, 0.4], dtype=D)
    C = isotropic_stiffness(K, G, dim)
    for tensor_fn, moduli_fn in [(voigt_bound, voigt_moduli), (reuss_bound, reuss_moduli)]:
        Kt, Gt = isotropic_moduli(tensor_fn(C, f))
        Km, Gm = moduli_fn(K, G, f, dim)
        torch.testing.assert_close(Kt, Km, rtol=1e-12, atol=0)
        torch.testing.assert_close(Gt, Gm, rtol=1e-12, atol=0)
    # isotropic_moduli recovers the phase moduli (2D: the plane-strain bulk)
    Kr, Gr = isotropic_moduli(C)
    torch.testing.assert_close(Kr, K if dim == 3 else plane_strain_bulk(K, G))
    torch.testing.assert_close(Gr, G)


def test_mandel_notation_energy_matches_tensor_energy():
    # eps : C : eps computed with full 4th-order tensors equals the Mandel product
    K, G = 3.0, 1.2
    lam = K - 2 * G / 3
    d = torch.eye(3, dtype=D)
    C4 = lam * torch.einsum("ij,kl->ijkl", d, d) + G * (
        torch.einsum("ik,jl->ijkl", d, d) + torch.einsum("il,jk->ijkl", d, d)
    )
    g = torch.Generator().manual_seed(0)
    e = torch.randn(3, 3, generator=g, dtype=D)
    e = 0.5 * (e + e.T)
    r2 = 2**0.5
    em = torch.stack([e[0, 0], e[1, 1], e[2, 2], r2 * e[1, 2], r2 * e[0, 2], r2 * e[0, 1]])
    W4 = torch.einsum("ij,ijkl,kl->", e, C4, e)
    Wm = em @ isotropic_stiffness(K, G, 3) @ em
    torch.testing.assert_close(W4, Wm, rtol=1e-13, atol=0)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("n", [3, 6])
def test_voigt_minus_reuss_is_positive_semidefinite_for_anisotropic_phases(seed, n):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(4, n, n, generator=g, dtype=D)
    C = A @ A.transpose(-1, -2) + 0.1 * torch.eye(n, dtype=D)
    f = torch.rand(4, generator=g, dtype=D)
    f = f / f.sum()
    diff = voigt_bound(C, f) - reuss_bound(C, f)
    assert torch.linalg.eigvalsh(diff).min() > -1e-10
    # the Reuss bound of one phase is that phase
    one = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=D)
    torch.testing.assert_close(reuss_bound(C, one), C[1])
    torch.testing.assert_close(voigt_bound(C, one), C[1])


@pytest.mark.parametrize("dim", [2, 3])
def test_fraction_limits(dim):
    b0 = hashin_shtrikman_bounds(1.0, 0.5, 10.0, 4.0, 0.0, dim)
    b1 = hashin_shtrikman_bounds(1.0, 0.5, 10.0, 4.0, 1.0, dim)
    k1 = 1.0 if dim == 3 else 1.0 + 0.5 / 3
    k2 = 10.0 if dim == 3 else 10.0 + 4.0 / 3
    for v in (b0.K_lower, b0.K_upper):
        torch.testing.assert_close(v, torch.tensor(k1, dtype=D))
    for v in (b1.K_lower, b1.K_upper):
        torch.testing.assert_close(v, torch.tensor(k2, dtype=D))
    torch.testing.assert_close(b0.G_upper, torch.tensor(0.5, dtype=D))


def test_E_nu_conversion():
    E, nu = moduli_to_E_nu(torch.tensor(5.0 / 3.0, dtype=D), torch.tensor(10 / 13 * 1.0, dtype=D))
    # E = 2, nu = 0.3 gives K = E/(3(1-2nu)) = 5/3, G = E/(2(1+nu)) = 10/13
    torch.testing.assert_close(E, torch.tensor(2.0, dtype=D))
    torch.testing.assert_close(nu, torch.tensor(0.3, dtype=D))
    # 2D: the plane-strain elasticity tensor's constants, E/(1-nu^2) and nu/(1-nu)
    E2, nu2 = moduli_to_E_nu(plane_strain_bulk(5 / 3, 10 / 13), torch.tensor(10 / 13, dtype=D), dim=2)
    torch.testing.assert_close(E2, torch.tensor(2.0 / (1 - 0.09), dtype=D))
    torch.testing.assert_close(nu2, torch.tensor(0.3 / 0.7, dtype=D))


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="K1 must be positive"):
        hashin_shtrikman_bounds(-1.0, 0.5, 10.0, 4.0, 0.3)
    with pytest.raises(InvalidInput, match=r"f2 must lie in \[0, 1\]"):
        hashin_shtrikman_bounds(1.0, 0.5, 10.0, 4.0, 1.3)
    with pytest.raises(InvalidInput, match="dim must be 2 or 3"):
        mori_tanaka(1.0, 0.5, 10.0, 4.0, 0.3, dim=4)
    with pytest.raises(InvalidInput, match="sum to 1"):
        voigt_moduli([1.0, 2.0], [1.0, 1.0], [0.5, 0.6])
    with pytest.raises(InvalidInput, match="length 2"):
        voigt_moduli([1.0, 2.0], [1.0, 1.0], [0.2, 0.3, 0.5])
    with pytest.raises(InvalidInput, match="Mandel"):
        voigt_bound(torch.ones(2, 4, 4), [0.5, 0.5])
    with pytest.raises(InvalidInput, match="positive definite"):
        reuss_bound(torch.zeros(2, 3, 3, dtype=D), [0.5, 0.5])
    with pytest.raises(InvalidInput, match="finite"):
        mori_tanaka(float("nan"), 0.5, 10.0, 4.0, 0.3)
    with pytest.raises(InvalidInput, match="bound must be"):
        HashinShtrikmanOracle(bound="middle")
    with pytest.raises(InvalidInput, match="G2 must be a positive number"):
        VoigtOracle(G2=-1.0)


# ------------------------------------------------------------------ oracles
class TestHashinShtrikmanOracle(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return HashinShtrikmanOracle(1.0, 0.5, 10.0, 5.0, dim=3, bound="upper")

    def test_values_match_function(self, oracle):
        X = torch.tensor([[0.1], [0.5]], dtype=D)
        b = hashin_shtrikman_bounds(1.0, 0.5, 10.0, 5.0, X[:, 0])
        torch.testing.assert_close(oracle.evaluate(X).Y, torch.stack([b.K_upper, b.G_upper], -1))


class TestMoriTanakaOracleVaryingModuli(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return MoriTanakaOracle(1.0, 0.5, 10.0, 5.0, dim=2, vary_moduli=True, outputs="Enu")

    def test_inputs_are_moduli(self, oracle):
        assert oracle.input_names == ("f2", "K1", "G1", "K2", "G2")
        x = torch.tensor([[0.3, 1.2, 0.6, 9.0, 4.0]], dtype=D)
        k, G = mori_tanaka(1.2, 0.6, 9.0, 4.0, 0.3, dim=2)
        E, nu = moduli_to_E_nu(k, G, dim=2)
        torch.testing.assert_close(oracle.evaluate(x).Y[0], torch.stack([E, nu]))


class TestVoigtOracle(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return VoigtOracle(2.0, 1.0, 20.0, 9.0, fraction_bounds=(0.1, 0.6), cost=0.5)

    def test_cost(self, oracle):
        assert (oracle.evaluate([[0.2]]).cost == 0.5).all()


class TestReussOracle(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return ReussOracle(2.0, 1.0, 20.0, 9.0, dim=2)


@pytest.mark.parametrize("dim", [2, 3])
def test_multiphase_hs_reduces_to_two_phase_and_is_ordered(dim):
    from oracles.analytic.bounds import hashin_shtrikman_multiphase

    K, G, f2 = random_phases(4)
    f = torch.stack([1 - f2, f2], -1)
    two = hashin_shtrikman_bounds(K[:, 0], G[:, 0], K[:, 1], G[:, 1], f2, dim)
    many = hashin_shtrikman_multiphase(K, G, f, dim)
    for a, b in zip(two, many, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
    # a phase with zero fraction changes nothing
    K3 = torch.cat([K, 50 * K[:, :1]], -1)
    G3 = torch.cat([G, 50 * G[:, :1]], -1)
    f3 = torch.cat([f, torch.zeros_like(f2)[:, None]], -1)
    for a, b in zip(two, hashin_shtrikman_multiphase(K3, G3, f3, dim), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-13, atol=0)
    # three phases: Reuss <= HS- <= HS+ <= Voigt
    g = torch.Generator().manual_seed(9)
    w = torch.rand(50, 3, generator=g, dtype=D)
    w = w / w.sum(-1, keepdim=True)
    b = hashin_shtrikman_multiphase(K3, G3, w, dim)
    KR, GR = reuss_moduli(K3, G3, w, dim)
    KV, GV = voigt_moduli(K3, G3, w, dim)
    eps = 1e-12
    assert (KR <= b.K_lower * (1 + eps)).all() and (b.K_lower <= b.K_upper * (1 + eps)).all()
    assert (b.K_upper <= KV * (1 + eps)).all() and (GR <= b.G_lower * (1 + eps)).all()
    assert (b.G_lower <= b.G_upper * (1 + eps)).all() and (b.G_upper <= GV * (1 + eps)).all()


def test_E_nu_to_moduli_round_trip():
    from oracles.analytic.bounds import E_nu_to_moduli

    K, G = E_nu_to_moduli(torch.tensor([1.0, 10.0], dtype=D), 0.3)
    E, nu = moduli_to_E_nu(K, G)
    torch.testing.assert_close(E, torch.tensor([1.0, 10.0], dtype=D))
    torch.testing.assert_close(nu, torch.full((2,), 0.3, dtype=D))
    with pytest.raises(InvalidInput, match="nu must lie"):
        E_nu_to_moduli(1.0, 0.5)



def test_bad_inputs_are_named_not_passed_through():
    """Each had been a bare torch/Python error or a silently wrong number."""
    from oracles.analytic.bounds import E_nu_to_moduli

    # shapes that do not broadcast: torch's "The size of tensor a (2) must match ..."
    with pytest.raises(InvalidInput, match=r"do not broadcast: K1 \(2,\).*K2 \(3,\)"):
        hashin_shtrikman_bounds([1.0, 2.0], 0.5, [10.0, 11.0, 12.0], 4.0, 0.3)
    with pytest.raises(InvalidInput, match="do not broadcast"):
        voigt_bound(isotropic_stiffness(1.0, 0.5).expand(2, 2, 6, 6), torch.full((3, 2), 0.5, dtype=D))
    # a non-symmetric "stiffness" had given a non-symmetric Reuss and Voigt bound
    C = isotropic_stiffness(torch.tensor([1.0, 2.0], dtype=D), 0.5).clone()
    C[1, 0, 1] += 0.3
    for fn in (voigt_bound, reuss_bound):
        with pytest.raises(InvalidInput, match="symmetric"):
            fn(C, [0.5, 0.5])
    # negative or zero moduli had given E = 4.5, nu = 1.25 (K = -1, G = 1) and NaN (0, 0)
    for K, G in ((-1.0, 1.0), (0.0, 0.0), (1.0, -0.5)):
        with pytest.raises(InvalidInput, match="must be positive"):
            moduli_to_E_nu(K, G)
    # an indefinite "isotropic stiffness" had been returned; zero (a void) stays allowed
    with pytest.raises(InvalidInput, match="K must be nonnegative"):
        isotropic_stiffness(-1.0, 1.0)
    with pytest.raises(InvalidInput, match="G must be nonnegative"):
        plane_strain_bulk(1.0, -1.0)
    assert (isotropic_stiffness(0.0, 0.0) == 0).all()
    # bools had been read as 1
    with pytest.raises(InvalidInput, match="K1 must be numeric, got True"):
        hashin_shtrikman_bounds(True, 0.5, 10.0, 4.0, 0.3)
    with pytest.raises(InvalidInput, match="E must be numeric"):
        E_nu_to_moduli(True, 0.3)
    # oracle settings: an infinite modulus had been accepted (every output inf),
    # a string of fraction bounds had raised a bare ValueError
    with pytest.raises(InvalidInput, match="K1 must be a positive number"):
        VoigtOracle(K1=float("inf"))
    with pytest.raises(InvalidInput, match="G1 must be a positive number"):
        VoigtOracle(G1=True)
    with pytest.raises(InvalidInput, match="fraction_bounds must be two numbers"):
        VoigtOracle(fraction_bounds="ab")
