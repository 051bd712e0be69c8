"""RVEOracle: the Oracle contract, material response, bad inputs."""

import pickle

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.material import MaterialModel
from oracles.rve import (
    CubeInclusion,
    Inclusion,
    IsotropicElastic,
    NeoHookean,
    StVenantKirchhoff,
)
from oracles.rve.oracle import RVEOracle
from oracles.testing import DeterministicOracleTests, FailingInputsTests, OracleContractTests

DT = torch.float64


def small_laws():
    return [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)]


class TestSmallStrainOracleWithMicroParameter(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
    def make_oracle(self):
        return RVEOracle(
            small_laws(),
            Inclusion(radius_fraction=0.25),
            grid=(15, 14),
            micro_params={"radius_fraction": (0.005, 0.4)},
        )

    def failing_inputs(self, oracle):
        # radius 0.14 voxel around the cell centre (7.5, 7) covers no voxel
        # centre on 15 x 14: the microstructure refuses it, the point fails
        return torch.tensor([[0.01, 0.0, 0.0, 0.01]], dtype=DT)

    def sample_inputs(self, oracle, n, seed=0):
        X = super().sample_inputs(oracle, n, seed)
        X[:, -1] = 0.1 + 0.3 * X[:, -1] / 0.4  # inclusions of at least a few voxels
        return X

    def test_names(self, oracle):
        assert oracle.input_names == ("eps11", "eps22", "eps12", "radius_fraction")
        assert oracle.output_names == ("sig11", "sig22", "sig12")


class TestFiniteStrainOracle(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
    def make_oracle(self):
        laws = [NeoHookean(K=0.833, mu=0.386), NeoHookean(K=8.33, mu=3.86)]
        lo = [-1.0, -0.05, -0.05, -0.05]
        hi = [0.05, 0.05, 0.05, 0.05]
        return RVEOracle(laws, CubeInclusion(size=3, centred=False), grid=(9, 9), strain_bounds=[lo, hi])

    def sample_inputs(self, oracle, n, seed=0):
        # the box reaches H11 = -1 (det F = 0) to have failing points; sample
        # the admissible part
        g = torch.Generator().manual_seed(seed)
        return 0.05 * (2 * torch.rand(n, oracle.dim, generator=g, dtype=DT) - 1)

    def failing_inputs(self, oracle):
        return torch.tensor([[-1.0, 0.0, 0.0, 0.0]], dtype=DT)

    def test_names(self, oracle):
        assert oracle.input_names == ("H11", "H12", "H21", "H22")
        assert oracle.output_names == ("P11", "P12", "P21", "P22")


def test_outputs_match_solver_and_tangent_is_consistent_3d():
    o = RVEOracle(small_laws(), Inclusion(radius_fraction=0.25), grid=9, dim=3, cg_tol=1e-10)
    assert o.input_names == ("eps11", "eps22", "eps33", "eps23", "eps13", "eps12")
    x = torch.tensor([0.01, -0.002, 0.003, 0.001, 0.0, -0.004], dtype=DT)
    y = o.evaluate(x).Y[0]
    eps = torch.tensor([[0.01, -0.004, 0.0], [-0.004, -0.002, 0.001], [0.0, 0.001, 0.003]], dtype=DT)
    s, C = o.stress_tangent(eps)
    torch.testing.assert_close(y, torch.stack([s[0, 0, 0], s[0, 1, 1], s[0, 2, 2], s[0, 1, 2], s[0, 0, 2], s[0, 0, 1]]))
    torch.testing.assert_close(s[0], torch.einsum("ijkl,kl->ij", C[0], eps))


def test_material_response_finite_strain_and_protocol():
    laws = [StVenantKirchhoff(K=0.833, mu=0.386), StVenantKirchhoff(K=8.33, mu=3.86)]
    o = RVEOracle(laws, CubeInclusion(size=3), grid=(9, 9), cg_tol=1e-10, newton_tol=1e-10)
    assert isinstance(o, MaterialModel)
    F = torch.eye(2, dtype=DT) + torch.tensor([[[0.02, 0.01], [0.0, -0.01]], [[0.0, 0.03], [0.01, 0.0]]], dtype=DT)
    r = o.material_response(F)
    assert r.P.shape == (2, 2, 2) and r.tangent.shape == (2, 2, 2, 2, 2) and r.variance is None
    y = o.evaluate(F.reshape(2, 4) - torch.eye(2, dtype=DT).reshape(1, 4)).Y
    torch.testing.assert_close(y, r.P.reshape(2, 4), rtol=1e-8, atol=1e-10)
    with pytest.raises(InvalidInput, match="det F"):
        o.material_response(torch.tensor([[[-1.0, 0.0], [0.0, 1.0]]], dtype=DT))
    with pytest.raises(InvalidInput, match="shape"):
        o.material_response(torch.eye(3, dtype=DT)[None])


def test_small_strain_material_response_is_geometrically_linear():
    o = RVEOracle(small_laws(), Inclusion(), grid=11, dim=2)
    H = torch.tensor([[[0.01, 0.004], [-0.002, 0.0]]], dtype=DT)
    r = o.material_response(torch.eye(2, dtype=DT) + H)
    s, C = o.stress_tangent(0.5 * (H + H.transpose(-1, -2)))
    torch.testing.assert_close(r.P, s)
    torch.testing.assert_close(r.tangent, C)
    # rotations (antisymmetric H) carry no stress
    W = torch.tensor([[[0.0, 0.01], [-0.01, 0.0]]], dtype=DT)
    assert o.material_response(torch.eye(2, dtype=DT) + W).P.abs().max() < 1e-15


def test_raw_and_npy_phase_maps(tmp_path):
    pm = Inclusion(radius_fraction=0.3).phase_map((11, 11))
    np.save(tmp_path / "pm.npy", pm)
    a = RVEOracle(small_laws(), pm)
    b = RVEOracle(small_laws(), str(tmp_path / "pm.npy"))
    c = RVEOracle(small_laws(), Inclusion(radius_fraction=0.3), grid=(11, 11))
    x = torch.tensor([[0.01, 0.0, 0.002]], dtype=DT)
    torch.testing.assert_close(a.evaluate(x).Y, c.evaluate(x).Y)
    torch.testing.assert_close(b.evaluate(x).Y, c.evaluate(x).Y)
    clone = pickle.loads(pickle.dumps(a))
    torch.testing.assert_close(clone.evaluate(x).Y, a.evaluate(x).Y)
    # a segmented image of the same map (grey levels 0 and 200) gives the same answer
    from PIL import Image

    Image.fromarray((200 * pm).astype(np.uint8)).save(tmp_path / "pm.png")
    d = RVEOracle(small_laws(), str(tmp_path / "pm.png"))
    torch.testing.assert_close(d.evaluate(x).Y, c.evaluate(x).Y)


def test_bad_configuration_raises_invalid_input(tmp_path):
    pm = np.zeros((11, 11), dtype=int)
    with pytest.raises(InvalidInput, match=r"does not match grid \(13, 13\)"):
        RVEOracle(small_laws(), pm, grid=13, dim=2)
    pm[0, 0] = 5
    with pytest.raises(InvalidInput, match=r"unknown phase ids \[5\]"):
        RVEOracle(small_laws(), pm)
    with pytest.raises(InvalidInput, match="E must be positive"):
        RVEOracle([IsotropicElastic(-1.0, 0.3)], np.zeros((5, 5), dtype=int))
    with pytest.raises(InvalidInput, match="not a field"):
        RVEOracle(small_laws(), Inclusion(), grid=11, dim=2, micro_params={"radius": (0.1, 0.2)})
    with pytest.raises(InvalidInput, match=".npy"):
        RVEOracle(small_laws(), str(tmp_path / "missing.npy"))
    with pytest.raises(InvalidInput, match="strain_bounds"):
        RVEOracle(small_laws(), Inclusion(), grid=11, dim=2, strain_bounds=[[0.0], [1.0]])
    with pytest.raises(InvalidInput, match="dim"):
        RVEOracle(small_laws(), Inclusion(), grid=11)
    # each bad value named, none truncated or ignored
    with pytest.raises(InvalidInput, match="finite lower < upper"):  # a NaN bound disabled the check
        RVEOracle(small_laws(), Inclusion(), grid=9, dim=2, strain_bounds=[[float("nan")] * 3, [0.01] * 3])
    with pytest.raises(InvalidInput, match=r"grid must be an int or a tuple of ints, got \(9.5, 9.7\)"):
        RVEOracle(small_laws(), Inclusion(), grid=(9.5, 9.7))
    for shape in ((5,), (3, 3, 3, 3), (0, 5)):
        with pytest.raises(InvalidInput, match=r"phase map must be a non-empty 2D or 3D array, got shape"):
            RVEOracle(small_laws(), np.zeros(shape, dtype=int))
    with pytest.raises(InvalidInput, match="strain_range must be positive, got 'x'"):
        RVEOracle(small_laws(), Inclusion(), grid=9, dim=2, strain_range="x")
    with pytest.raises(InvalidInput, match="micro_params must map field names to"):
        RVEOracle(small_laws(), Inclusion(), grid=9, dim=2, micro_params={"radius_fraction": (0.3,)})
    with pytest.raises(InvalidInput, match="device must be a torch device .* got 'bogus'"):
        RVEOracle(small_laws(), Inclusion(), grid=9, dim=2, device="bogus")


def test_a_micro_parameter_reaches_the_microstructure():
    """An input named in ``micro_params`` builds the microstructure it names: the oracle's
    stress at ``radius_fraction = 0.3`` is the solver's on the phase map of that radius
    (and not of the oracle's own 0.25)."""
    from oracles.rve.solver import FFTSolver

    laws = [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)]
    o = RVEOracle(laws, Inclusion(radius_fraction=0.25), grid=(15, 14),
                  micro_params={"radius_fraction": (0.005, 0.4)})
    assert o.input_names[-1] == "radius_fraction"
    y = o.evaluate(torch.tensor([[0.01, -0.002, 0.003, 0.3]], dtype=torch.float64)).Y[0]
    eps = torch.tensor([[0.01, 0.003], [0.003, -0.002]], dtype=torch.float64)
    for r, same in ((0.3, True), (0.25, False)):
        s = FFTSolver(Inclusion(radius_fraction=r).phase_map((15, 14)), laws).homogenize(eps).stress[0]
        ref = torch.stack([s[0, 0], s[1, 1], s[0, 1]])
        assert torch.allclose(y, ref, rtol=1e-10, atol=1e-14) == same, (r, y, ref)


def test_linear_oracle_reports_the_cg_iterations_of_its_effective_tensor():
    """A linear RVE's points are ``C : eps`` from one solve for the effective tensor: the first
    evaluation reports that solve's CG iterations (it had reported 0), one that reuses the
    cached tensor reports none."""
    o = RVEOracle(small_laws(), Inclusion(radius_fraction=0.25), grid=9, dim=2, cg_tol=1e-8)
    x = torch.tensor([[0.01, 0.0, 0.0], [0.0, 0.01, 0.0]], dtype=DT)
    first = o.evaluate(x).metadata
    assert all(m["cg_iterations"] > 0 for m in first)
    again = o.evaluate(x[:1]).metadata
    assert again[0]["cg_iterations"] == 0
