"""Transport oracles on the Oracle contract, fidelity levels and the CLI."""

import json
import math

import numpy as np
import pytest
import torch

from loops.cli import main
from oracles.base import DTYPE
from oracles.exceptions import InvalidInput
from oracles.testing import FailingInputsTests, OracleContractTests
from oracles.transport import ConductivityOracle, PermeabilityOracle
from oracles.transport.closed_forms import (
    kozeny_carman,
    perrins_square_cylinders,
    sphere_array_permeability,
)
from oracles.transport.permeability import permeability
from oracles.transport.porous import OverlappingSpheres, SphereArray


class TestConductivityOracle(OracleContractTests):
    def make_oracle(self):
        return ConductivityOracle(
            SphereArray(radius_fraction=0.2),
            levels=(8, 16),
            dim=2,
            micro_params={"radius_fraction": (0.1, 0.4), "log10_contrast": (-2.0, 2.0)},
        )


class TestPermeabilityOracle(OracleContractTests, FailingInputsTests):
    def make_oracle(self):
        return PermeabilityOracle(
            SphereArray(radius_fraction=0.2),
            levels=(10, 16),
            dim=2,
            micro_params={"radius_fraction": (0.15, 0.6)},
            cell_size=1e-4,
        )

    def failing_inputs(self, oracle):
        return torch.tensor([[0.58]], dtype=DTYPE)  # disks overlap: closed pores


def test_conductivity_oracle_matches_perrins():
    o = ConductivityOracle(
        SphereArray(),
        levels=64,
        dim=2,
        micro_params={"radius_fraction": (0.1, 0.45), "log10_contrast": (-1, 1)},
    )
    r = 0.35
    Y = o.evaluate(torch.tensor([[r, 1.0]], dtype=DTYPE)).Y[0]
    ref = perrins_square_cylinders(1.0, 10.0, math.pi * r * r)
    assert abs(Y[0].item() / ref - 1) < 0.01 and abs(Y[2].item()) < 1e-10
    assert o.output_names == ("K11", "K22", "K12")


def test_permeability_levels_kozeny_carman_and_target():
    micro = OverlappingSpheres(porosity=0.5, radius_fraction=0.1)
    o = PermeabilityOracle(
        micro, levels=("kozeny-carman", 16), cell_size=2e-4, target_log10_k=-11.0
    )
    X = torch.tensor([[0.4, 0.08], [0.7, 0.12]], dtype=DTYPE)
    r = o.evaluate(X, fidelity=0)
    kc = kozeny_carman(X[:, 0].numpy(), 2 * X[:, 1].numpy() * 2e-4)
    torch.testing.assert_close(r.Y[:, 0], torch.tensor(np.log10(kc)))
    torch.testing.assert_close(r.Y[:, -1], (r.Y[:, 0] + 11.0) ** 2)
    assert o.output_names[0] == "log10_k" and o.output_names[-1] == "misfit"
    assert o.cost_model.costs[0] < o.cost_model.costs[1]
    with pytest.raises(InvalidInput, match="kozeny-carman level needs"):
        PermeabilityOracle(
            SphereArray(), levels=("kozeny-carman", 8), micro_params={"radius_fraction": (0.1, 0.3)}
        )


def test_permeability_oracle_sphere_array_scale():
    # the tensor scales with the cell size squared and matches the solver on the image
    o1 = PermeabilityOracle(
        SphereArray(), levels=16, dim=3, micro_params={"radius_fraction": (0.2, 0.4)}, cell_size=1.0
    )
    o2 = PermeabilityOracle(
        SphereArray(),
        levels=16,
        dim=3,
        micro_params={"radius_fraction": (0.2, 0.4)},
        cell_size=1e-3,
    )
    x = torch.tensor([[0.3]], dtype=DTYPE)
    y1, y2 = o1.evaluate(x).Y[0], o2.evaluate(x).Y[0]
    torch.testing.assert_close(y2[1:], y1[1:] * 1e-6)
    assert abs(y1[0].item() - y2[0].item() - 6.0) < 1e-9
    # the oracle's tensor is the solver's on the same image (voxel = cell / grid; CG tolerance) ...
    k = permeability(SphereArray(radius_fraction=0.3).solid((16,) * 3), 1e-3 / 16).tensor
    torch.testing.assert_close(y2[1:4], torch.as_tensor(np.diag(np.asarray(k)), dtype=DTYPE), rtol=1e-6, atol=0)
    # ... and near Zick & Homsy's (1982) simple cubic array at this solid fraction (16^3 voxels: 8 %)
    ref = sphere_array_permeability(4.0 / 3.0 * math.pi * 0.3**3, cell=1e-3)
    assert abs(y2[1].item() / ref - 1) < 0.08, (y2[1].item(), ref)


def test_bad_settings():
    with pytest.raises(InvalidInput, match="micro_params name"):
        ConductivityOracle(SphereArray(), levels=8, dim=2, micro_params={"nope": (0, 1)})
    with pytest.raises(InvalidInput, match="level"):
        PermeabilityOracle(
            SphereArray(), levels=("darcy",), micro_params={"radius_fraction": (0.1, 0.3)}
        )
    with pytest.raises(InvalidInput, match="microstructure must be one of"):
        PermeabilityOracle("sand")
    for level in (8.5, (8.5, 8), (True, 8)):  # not truncated to a grid, not a bare TypeError
        with pytest.raises(InvalidInput, match=r"grid level .* must be an int or 2 sizes"):
            ConductivityOracle("overlapping", levels=(level,), dim=2)


def _json(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else out.err)


def test_cli_conductivity_and_tortuosity(capsys):
    rc, out = _json(
        capsys,
        [
            "conductivity",
            "--dim",
            "2",
            "--grid",
            "48",
            "--microstructure",
            "cylinders",
            "--radius",
            "0.3",
            "--conductivity",
            "1",
            "10",
            "--tortuosity",
        ],
    )
    assert rc == 0
    K = np.array(out["tensor"])
    assert (
        K.shape == (2, 2)
        and abs(K[0, 0] / perrins_square_cylinders(1, 10, math.pi * 0.09) - 1) < 0.01
    )
    assert all(t > 1 for t in out["tortuosity"])


@pytest.mark.parametrize("command", ["conductivity", "permeability"])
def test_cli_missing_file_and_bad_threads_are_one_line(capsys, tmp_path, command):
    rc, err = _json(capsys, [command, "--dim", "2", "--grid", "16", "--microstructure", str(tmp_path / "nothere.npy")])
    assert rc == 2 and "nothere.npy" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    rc, err = _json(capsys, [command, "--dim", "2", "--grid", "16", "--threads", "-3"])
    assert rc == 2 and "--threads must be a positive integer, got -3" in err


def test_cli_permeability_units_file_and_closed(capsys, tmp_path):
    rc, out = _json(
        capsys,
        [
            "permeability",
            "--dim",
            "2",
            "--grid",
            "16",
            "--microstructure",
            "slit",
            "--fraction",
            "0.5",
            "--voxel-size",
            "1e-6",
        ],
    )
    assert rc == 0
    k = (8**3 - 8) / (12 * 16) * 1e-12
    assert abs(out["tensor"][0][0] - k) < 1e-5 * k and abs(out["tensor"][1][1]) < 1e-10 * k
    np.testing.assert_allclose(
        np.array(out["tensor_darcy"]), np.array(out["tensor"]) / 9.869233e-13
    )
    # a user image with a closed cavity
    s = np.ones((10, 10, 10), dtype=bool)
    s[3:7, 3:7, 3:7] = False
    path = tmp_path / "cavity.npy"
    np.save(path, s)
    rc, out = _json(capsys, ["permeability", "--microstructure", str(path)])
    assert rc == 0 and out["percolates"] is False and out["tensor"] == [[0.0] * 3] * 3
    assert "closed pore space" in out["message"]
    rc, err = _json(capsys, ["permeability", "--dim", "2", "--grid", "3", "5", "7"])
    assert rc == 2 and "--grid" in err


def test_non_square_grids_and_bad_solver_options_are_refused_when_built():
    """A 32 x 64 level had turned cylinders into ellipses (K11 1.33 vs K22 1.46 for an isotropic
    array); bad solver options had made every point of a campaign fail later."""
    from oracles.transport.oracle import ConductivityOracle, PermeabilityOracle
    from oracles.transport.porous import CylinderArray, Slit

    mp = {"radius_fraction": (0.1, 0.4)}
    with pytest.raises(InvalidInput, match="must be square"):
        ConductivityOracle("cylinders", levels=[(32, 64)], dim=2, micro_params=mp, conductivities=(1.0, 10.0))
    with pytest.raises(InvalidInput, match="square"):
        CylinderArray(0.25).solid((32, 64))
    assert Slit(0.5).solid((8, 12)).shape == (8, 12)  # layers are the same medium on any grid
    assert CylinderArray(0.25).solid((8, 8, 3)).shape == (8, 8, 3)  # extruded along the last axis
    for kw, msg in (({"discretization": "foo"}, "discretization"), ({"cg_tol": 3.0}, "cg_tol"),
                    ({"conductivities": (1.0, -1.0)}, "positive semidefinite")):
        with pytest.raises(InvalidInput, match=msg):
            ConductivityOracle("cylinders", levels=[16], dim=2, micro_params=mp, **kw)
    for kw, msg in (({"wall": "all"}, "wall"), ({"tol": 5.0}, "tol"), ({"cell_size": float("inf")}, "cell_size")):
        with pytest.raises(InvalidInput, match=msg):
            PermeabilityOracle("cylinders", levels=[16], dim=2, micro_params=mp, **kw)
