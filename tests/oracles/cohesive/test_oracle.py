"""CohesiveOracle: VRH against independent averages, Gamma = 2 gamma, K_Ic units, CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from loops.cli import main as cli_main
from oracles.analytic.bounds import isotropic_moduli
from oracles.base import DTYPE
from oracles.cohesive.laws import BilinearLaw, ExponentialLaw, PPRLaw
from oracles.cohesive.oracle import CohesiveOracle, k_ic, vrh_cubic
from oracles.exceptions import InvalidInput
from oracles.testing import DeterministicOracleTests, FailingInputsTests, OracleContractTests


def cubic_voigt_matrix(C11, C12, C44):
    C = np.zeros((6, 6))
    C[:3, :3] = C12
    C[range(3), range(3)] = C11
    C[range(3, 6), range(3, 6)] = C44
    return C


def hill_general(C):
    """Hill (1952) averages of any 6x6 Voigt stiffness (engineering shear strains)."""
    S = np.linalg.inv(C)
    KV = (C[0, 0] + C[1, 1] + C[2, 2] + 2 * (C[0, 1] + C[1, 2] + C[0, 2])) / 9
    GV = (C[0, 0] + C[1, 1] + C[2, 2] - (C[0, 1] + C[1, 2] + C[0, 2]) + 3 * (C[3, 3] + C[4, 4] + C[5, 5])) / 15
    KR = 1 / (S[0, 0] + S[1, 1] + S[2, 2] + 2 * (S[0, 1] + S[1, 2] + S[0, 2]))
    GR = 15 / (4 * (S[0, 0] + S[1, 1] + S[2, 2]) - 4 * (S[0, 1] + S[1, 2] + S[0, 2]) + 3 * (S[3, 3] + S[4, 4] + S[5, 5]))
    return KV, KR, GV, GR


@pytest.mark.parametrize("consts", [(168.4, 121.4, 75.4), (246.5, 147.3, 127.4), (108.2, 61.3, 28.5), (300.0, 80.0, 110.0)])
def test_vrh_matches_general_hill_averages_and_mandel_projection(consts):
    v = vrh_cubic(*consts)
    C = cubic_voigt_matrix(*consts)
    KV, KR, GV, GR = hill_general(C)
    np.testing.assert_allclose([v.K_V, v.K_R, v.G_V, v.G_R], [KV, KR, GV, GR], rtol=1e-12)
    # isotropic projection (= orientation average) of the Mandel stiffness and compliance
    Cm = C.copy()
    Cm[3:, 3:] *= 2  # Mandel shear entries are 2 C44
    Kp, Gp = isotropic_moduli(torch.tensor(Cm, dtype=DTYPE))
    Ks, Gs = isotropic_moduli(torch.tensor(np.linalg.inv(Cm), dtype=DTYPE))
    np.testing.assert_allclose([v.K_V, v.G_V, v.K_R, v.G_R], [Kp, Gp, 1 / (9 * Ks), 1 / (4 * Gs)], rtol=1e-12)
    K, G = 0.5 * (KV + KR), 0.5 * (GV + GR)
    assert v.E == pytest.approx(9 * K * G / (3 * K + G), rel=1e-12)
    assert v.nu == pytest.approx(E_nu_from_lame(K, G)[1], rel=1e-12)


def E_nu_from_lame(K, G):
    lam = K - 2 * G / 3
    return G * (3 * lam + 2 * G) / (lam + G), lam / (2 * (lam + G))


def test_vrh_isotropic_crystal_is_exact():
    E, nu = 200.0, 0.28
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    v = vrh_cubic(lam + 2 * mu, lam, mu)
    assert v.G_V == pytest.approx(v.G_R, rel=1e-13)
    assert v.E == pytest.approx(E, rel=1e-13) and v.nu == pytest.approx(nu, rel=1e-13)


def test_vrh_copper_polycrystal_is_physical():
    # Cu single crystal -> polycrystal E ~ 128 GPa, nu ~ 0.34 (handbook values, loose)
    v = vrh_cubic(168.4, 121.4, 75.4)
    assert 120 < v.E < 135 and 0.33 < v.nu < 0.36
    assert v.G_R < v.G < v.G_V


def test_k_ic_units():
    # sqrt(100e9 Pa * 1 J/m^2) = 316227.77 Pa sqrt(m) = 0.31623 MPa sqrt(m)
    assert k_ic(100.0, 1.0) == pytest.approx(math.sqrt(1e11) / 1e6, rel=1e-14)
    assert k_ic(100.0, 1.0) == pytest.approx(0.316227766, rel=1e-8)


@pytest.mark.parametrize("law", ["bilinear", "exponential", "ppr"])
@pytest.mark.parametrize("plane", ["strain", "stress"])
def test_outputs(law, plane):
    o = CohesiveOracle(law=law, plane=plane)
    x = torch.tensor([1.3, 10.0, 168.4, 121.4, 75.4], dtype=DTYPE)
    r = o.evaluate(x)
    y = dict(zip(o.output_names, r.Y[0].tolist(), strict=True))
    v = vrh_cubic(168.4, 121.4, 75.4)
    assert y["Gamma"] == pytest.approx(2.6, rel=1e-14)
    Ep = v.E / (1 - v.nu**2) if plane == "strain" else v.E
    assert y["E_prime"] == pytest.approx(Ep, rel=1e-13)
    assert y["K_Ic"] == pytest.approx(math.sqrt(Ep * 1e9 * 2.6) / 1e6, rel=1e-13)
    law_obj = o.make_law(x)
    assert type(law_obj) is {"bilinear": BilinearLaw, "exponential": ExponentialLaw, "ppr": PPRLaw}[law]
    assert law_obj.fracture_energy[0] == pytest.approx(2.6)
    assert law_obj.peak_traction[0] == pytest.approx(10.0)
    if law == "bilinear":  # 2 Gamma / sigma_max: 5.2 J/m^2 / 10 GPa = 0.52 nm
        assert y["delta_c"] == pytest.approx(0.52, rel=1e-14)
    if law == "exponential":  # Gamma / (e sigma_max)
        assert y["delta_c"] == pytest.approx(2.6 / (math.e * 10.0), rel=1e-14)
    # the traction really peaks at delta_peak with sigma_max (GPa, nm)
    assert law_obj.traction(torch.tensor([y["delta_peak"], 0.0], dtype=DTYPE))[0].item() == pytest.approx(10.0)
    assert r.metadata[0]["vrh"]["G"] == pytest.approx(v.G)


def test_oracle_bad_configuration():
    with pytest.raises(InvalidInput, match="law must be one of"):
        CohesiveOracle(law="trilinear")
    with pytest.raises(InvalidInput, match="plane"):
        CohesiveOracle(plane="axisymmetric")
    with pytest.raises(InvalidInput, match="shear_energy_ratio"):
        CohesiveOracle(law="bilinear", shear_energy_ratio=2.0)
    with pytest.raises(InvalidInput, match="unknown input"):
        CohesiveOracle(bounds={"C13": (1.0, 2.0)})
    with pytest.raises(InvalidInput, match="peak_ratio"):
        CohesiveOracle(law_options={"peak_ratio": 2.0})
    with pytest.raises(InvalidInput, match="not mechanically stable"):
        vrh_cubic(100.0, 150.0, 50.0)
    with pytest.raises(InvalidInput, match=r"law_options \['foo'\] do not fit law 'bilinear'"):
        CohesiveOracle(law_options={"foo": 1})
    with pytest.raises(InvalidInput, match=r"bounds\['gamma'\] must be a \(low, high\) pair"):
        CohesiveOracle(bounds={"gamma": (1.0,)})
    with pytest.raises(InvalidInput, match="k_ic: E_prime_GPa must be a finite number >= 0, got -1"):
        k_ic(-1, 1.0)
    with pytest.raises(InvalidInput, match="elastic constants must be numbers"):
        vrh_cubic("a", 1.0, 1.0)


class TestCohesiveOracle(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
    def make_oracle(self):
        return CohesiveOracle(law="ppr", shear_energy_ratio=0.6, shear_strength_ratio=0.8)

    def sample_inputs(self, oracle, n, seed=0):
        # mechanically stable constants: C12 < C11
        X = super().sample_inputs(oracle, n, seed)
        X[:, 3] = 0.9 * X[:, 2] * torch.rand(n, generator=torch.Generator().manual_seed(seed), dtype=DTYPE)
        return X

    def failing_inputs(self, oracle):
        # C12 > C11 (violates Born stability) and C11 + 2 C12 <= 0 is outside the box
        return torch.tensor([[1.0, 5.0, 100.0, 150.0, 50.0], [2.0, 8.0, 300.0, 700.0, 20.0]], dtype=DTYPE)


# ------------------------------------------------------------------- CLI
def run_cli(capsys, *argv):
    rc = cli_main(["cohesive", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_prints_json(capsys):
    rc, out, _ = run_cli(capsys, "--law", "bilinear", "--gamma", "1.3", "--sigma-max", "10",
                         "--C11", "168.4", "--C12", "121.4", "--C44", "75.4", "--curve", "7")
    assert rc == 0
    d = json.loads(out)
    assert d["outputs"]["Gamma"] == pytest.approx(2.6)
    assert d["outputs"]["delta_c"] == pytest.approx(0.52)
    assert d["units"]["K_Ic"] == "MPa m^0.5"
    assert len(d["curve"]["opening_nm"]) == 7 and d["curve"]["traction_GPa"][-1] == 0.0
    v = vrh_cubic(168.4, 121.4, 75.4)
    assert d["outputs"]["K_Ic"] == pytest.approx(k_ic(v.E / (1 - v.nu**2), 2.6))


def test_cli_ppr_mixed_mode(capsys):
    rc, out, _ = run_cli(capsys, "--law", "ppr", "--gamma", "1.0", "--sigma-max", "5", "--gamma-t", "2.0",
                         "--tau-max", "4", "--C11", "200", "--C12", "100", "--C44", "80", "--alpha", "4")
    assert rc == 0
    p = json.loads(out)["law_parameters"]
    assert p["phi_t"] == pytest.approx(4.0) and p["tau_max"] == pytest.approx(4.0) and p["alpha"] == 4.0


@pytest.mark.parametrize("argv, msg", [
    (["--C11", "100", "--C12", "150", "--C44", "50"], "not mechanically stable"),
    (["--C11", "200", "--C12", "100", "--C44", "50", "--r", "0.2"], "do not apply"),
    (["--C11", "200", "--C12", "100", "--C44", "50", "--curve", "-3"], "curve"),
])
def test_cli_bad_input(capsys, argv, msg):
    rc, out, err = run_cli(capsys, "--gamma", "1.0", "--sigma-max", "5", *argv)
    assert rc == 2 and msg in err and out == ""


def test_cli_negative_gamma(capsys):
    rc, _, err = run_cli(capsys, "--gamma=-1", "--sigma-max", "5", "--C11", "200", "--C12", "100", "--C44", "50")
    assert rc == 2 and "--gamma must be positive" in err


@pytest.mark.parametrize("law", ["exponential", "ppr"])
def test_shear_ratios_reach_the_law(law):
    """``shear_energy_ratio`` and ``shear_strength_ratio`` set the law's mode-II work and
    peak: measured along a pure-shear opening, the largest tangential traction is
    ``ratio x sigma_max`` and the work of separation (trapezoid rule out to 20 nm) is
    ``ratio x 2 gamma``."""
    o = CohesiveOracle(law=law, shear_energy_ratio=1.7, shear_strength_ratio=0.6)
    law_obj = o.make_law(torch.tensor([1.3, 10.0, 168.4, 121.4, 75.4], dtype=DTYPE))
    d = torch.linspace(0.0, 20.0, 8001, dtype=DTYPE)
    T = law_obj.traction(torch.stack([torch.zeros_like(d), d], -1))[:, 1]
    assert T.max().item() == pytest.approx(0.6 * 10.0, rel=2e-5)
    assert torch.trapezoid(T, d).item() == pytest.approx(1.7 * 2.6, rel=1e-4)


@pytest.mark.parametrize("law", ["bilinear", "exponential", "ppr"])
def test_cli_curve_has_the_area_of_the_fracture_energy(capsys, law):
    """The printed mode-I curve holds the whole law: its area (trapezoid rule) is Gamma_n. The
    exponential law's curve had stopped at 3 peak openings, at 41 % of the peak traction (area 80 %)."""
    rc, out, _ = run_cli(capsys, "--law", law, "--gamma", "1.3", "--sigma-max", "10",
                         "--C11", "168.4", "--C12", "121.4", "--C44", "75.4", "--curve", "4001")
    assert rc == 0
    d = json.loads(out)
    x, t = np.array(d["curve"]["opening_nm"]), np.array(d["curve"]["traction_GPa"])
    area = float(np.sum(0.5 * (t[1:] + t[:-1]) * np.diff(x)))
    assert area == pytest.approx(d["outputs"]["Gamma"], rel=1e-3)


def test_gamma_is_named_and_string_or_bool_parameters_are_refused():
    """A negative gamma had been reported as the derived Gamma = 2 gamma; BilinearLaw("2.0", 10) and
    BilinearLaw(True, 10) had been accepted."""
    o = CohesiveOracle(bounds={"gamma": (-1.0, 2.0)})
    res = o.evaluate(torch.tensor([[-0.5, 10.0, 168.0, 121.0, 75.0]], dtype=DTYPE))
    assert bool(res.failed[0]) and "gamma (surface energy" in res.reasons[0] and "-0.5" in res.reasons[0]
    for bad in ("2.0", True):
        with pytest.raises(InvalidInput, match="positive number"):
            BilinearLaw(bad, 10.0)
