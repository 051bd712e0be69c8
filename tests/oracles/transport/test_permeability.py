"""FFT Stokes permeability against exact and classical periodic-array solutions."""

import math

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.transport.closed_forms import (
    drummond_tahir_parallel,
    drummond_tahir_transverse,
    hasimoto_drag,
    slit_permeability,
    sphere_array_permeability,
)
from oracles.transport.permeability import DARCY, StokesSolver, permeability, solid_nodes
from oracles.transport.porous import CylinderArray, Slit, SphereArray
from oracles.transport.topology import NotPercolating


def _slit(n, h, k=2):
    s = np.zeros((6,) * (k - 1) + (n,), dtype=bool)
    s[..., h:] = True
    return s


@pytest.mark.parametrize("k", [2, 3])
def test_slit_poiseuille_discrete_exact_and_second_order(k):
    errs = []
    for n in (8, 16, 32):
        h = n // 2
        res = permeability(_slit(n, h, k), tol=1e-10)
        K = res.tensor
        # every direction is solved to the tolerance, the blocked one by the absolute floor
        # (its residual had been reported as 1.0)
        assert float(res.residual.max()) <= 1e-10, res.residual
        # the trapezoidal rule of the exact parabola: the discrete solution is exact on it
        assert abs(K[0, 0].item() - (h**3 - h) / (12 * n)) < 1e-7 * K[0, 0].item()
        assert abs(K[-1, -1].item()) < 1e-10 * K[0, 0].item()  # no flow across the walls
        errs.append(abs(K[0, 0].item() / slit_permeability(h, n) - 1))
    rates = [math.log2(errs[i] / errs[i + 1]) for i in range(2)]
    assert all(abs(r - 2.0) < 0.05 for r in rates), rates


def test_units_scale_with_voxel_size_squared():
    s = _slit(16, 8)
    a = permeability(s, 1.0).tensor
    b = permeability(s, 2e-6)
    torch.testing.assert_close(b.tensor, a * 4e-12)
    torch.testing.assert_close(b.darcy, b.tensor / DARCY)


@pytest.mark.parametrize("c", [0.05, 0.2])
def test_square_cylinder_arrays_drummond_tahir(c):
    n = 64
    cyl = CylinderArray(radius_fraction=math.sqrt(c / math.pi))
    a = cyl.radius_fraction
    Kt = permeability(cyl.solid((n, n)), 1.0 / n).tensor  # across, 2D
    Kp = permeability(cyl.solid((n, n, 2)), 1.0 / n).tensor  # along, 3D
    assert abs(Kt[0, 0].item() / a**2 / drummond_tahir_transverse(c) - 1) < 0.03
    assert abs(Kp[2, 2].item() / a**2 / drummond_tahir_parallel(c) - 1) < 0.03
    torch.testing.assert_close(Kt[0, 0], Kt[1, 1], rtol=1e-6, atol=0)
    assert Kp[2, 2] > Kp[0, 0]  # flow along cylinders is easier than across


def test_sphere_array_hasimoto_low_fraction():
    c, n = 0.03, 32
    sph = SphereArray(radius_fraction=(3 * c / (4 * math.pi)) ** (1 / 3))
    K = permeability(sph.solid((n,) * 3), 1.0 / n).tensor
    ref = sphere_array_permeability(c, source="hasimoto")
    # radius 6 voxels: the staircase surface costs a few per cent (first order)
    assert abs(K[0, 0].item() / ref - 1) < 0.08
    assert hasimoto_drag(c) > 1


@pytest.mark.slow
@pytest.mark.parametrize("c", [0.125, 0.216, 0.343])
def test_sphere_array_zick_homsy(c):
    n = 48
    sph = SphereArray(radius_fraction=(3 * c / (4 * math.pi)) ** (1 / 3))
    K = permeability(sph.solid((n,) * 3), 1.0 / n).tensor
    assert abs(K[0, 0].item() / sphere_array_permeability(c) - 1) < 0.06


@pytest.mark.slow
def test_cylinder_grid_convergence():
    c = 0.1
    cyl = CylinderArray(radius_fraction=math.sqrt(c / math.pi))
    errs = []
    for n in (32, 64, 128):
        K = permeability(cyl.solid((n, n)), 1.0 / n, tol=1e-8).tensor
        errs.append(abs(K[0, 0].item() / cyl.radius_fraction**2 / drummond_tahir_transverse(c) - 1))
    assert errs[2] < errs[0] / 2 and errs[2] < 0.01, errs


def test_random_medium_tensor_is_spd():
    rng = np.random.default_rng(4)
    n = 40
    X = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    solid = np.zeros((n, n), dtype=bool)
    for _ in range(14):
        c = rng.random(2) * n
        d2 = sum(np.minimum(abs(x - ci), n - abs(x - ci)) ** 2 for x, ci in zip(X, c, strict=True))
        solid |= d2 < rng.uniform(2.5, 5.0) ** 2
    r = permeability(solid, tol=1e-9)
    assert r.asymmetry < 1e-5
    ev = torch.linalg.eigvalsh(r.tensor)
    assert ev.min() > 0
    assert abs(r.tensor[0, 1]) > 1e-6 * ev.max()  # a genuinely anisotropic answer


def test_velocity_field_no_slip_and_mean():
    s = SphereArray(radius_fraction=0.3).solid((12, 12))
    solver = StokesSolver(s, tol=1e-10)
    r = solver.solve(fields=True)
    u = r.velocity  # forces x components x grid
    assert u[:, :, torch.from_numpy(solver.nodes)].abs().max() < 1e-7 * u.abs().max()
    torch.testing.assert_close(u.mean(dim=(-2, -1)).T, r.tensor, rtol=1e-8, atol=1e-12)


def test_closed_pore_space_zero_permeability_message():
    s = np.ones((12, 12, 12), dtype=bool)
    s[3:8, 3:8, 3:8] = False  # a closed cavity
    with pytest.raises(NotPercolating, match="closed pore space.*permeability is zero"):
        permeability(s)
    # a one-voxel channel carries no flow on the corner-node grid
    s = np.ones((10, 10), dtype=bool)
    s[4, :] = False
    with pytest.raises(NotPercolating):
        permeability(s)


def test_bad_inputs():
    with pytest.raises(InvalidInput, match="no solid voxel"):
        permeability(np.zeros((8, 8), dtype=bool))
    with pytest.raises(InvalidInput, match="voxel_size"):
        permeability(_slit(8, 4), voxel_size=-1.0)
    with pytest.raises(InvalidInput, match="boolean"):
        permeability(np.full((8, 8), 2))
    with pytest.raises(InvalidInput, match="wall"):
        solid_nodes(_slit(8, 4), wall="some")


def test_wall_rules():
    s = np.zeros((8, 8), dtype=bool)
    s[3, 3] = True  # a lone voxel: no node is half solid
    assert not solid_nodes(s).any() and solid_nodes(s, "any").sum() == 4
    with pytest.raises(InvalidInput, match="thinner than"):
        permeability(s)
    # flat walls are the same under both rules
    sl = Slit(fraction=0.5).solid((8, 8))
    assert (solid_nodes(sl) == solid_nodes(sl, "any")).all()


def test_chunked_forces_match_batched():
    s = SphereArray(radius_fraction=0.3).solid((12, 12, 12))[:10, :, :8]
    a = StokesSolver(s, tol=1e-10)
    b = StokesSolver(s, tol=1e-10)
    b.max_field_doubles = 3 * s.size  # one force per chunk
    ra, rb = a.solve(), b.solve()
    assert len(rb.info["iterations_per_chunk"]) == 3
    torch.testing.assert_close(ra.tensor, rb.tensor, rtol=1e-7, atol=1e-12)


def test_laplacian_preconditioner_same_answer_fewer_iterations():
    s = CylinderArray(radius_fraction=0.3).solid((48, 48))
    a = StokesSolver(s, tol=1e-9).solve()
    b = StokesSolver(s, tol=1e-9, preconditioner="none").solve()
    torch.testing.assert_close(
        a.tensor, b.tensor, rtol=1e-6, atol=1e-8 * a.tensor.abs().max().item()
    )
    assert a.iterations < b.iterations / 2
