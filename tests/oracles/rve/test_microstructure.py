"""Microstructure generators: fractions, periodicity, no overlap, symmetry, seeds, bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve.laws import CubicElastic, IsotropicElastic
from oracles.rve.microstructure import (
    RSA_JAMMING_FRACTION,
    CubeInclusion,
    Inclusion,
    Laminate,
    PhaseMap,
    RandomFibres,
    VoronoiPolycrystal,
)
from oracles.rve.solver import FFTSolver


# ------------------------------------------------------------------ laminate
@pytest.mark.parametrize("shape", [(16, 12), (8, 6, 4)])
@pytest.mark.parametrize("axis", [0, 1])
def test_laminate_fraction_and_layers(shape, axis):
    N = shape[axis]
    for k in range(N + 1):
        pm = Laminate(k / N, normal_axis=axis).phase_map(shape)
        assert pm.dtype == np.int64 and pm.shape == shape
        assert pm.sum() == k * pm.size // N
        # constant on planes normal to the axis
        assert (np.diff(pm, axis=1 - axis) == 0).all()


def test_laminate_rounds_to_nearest_layer_and_replace():
    lam = Laminate(0.3, normal_axis=1)
    assert lam.phase_map((10, 10)).mean() == 0.3
    assert Laminate(0.33).phase_map((10, 4)).mean() == 0.3
    lam2 = dataclasses.replace(lam, fraction=0.5)
    assert lam2.phase_map((10, 10)).mean() == 0.5 and lam2.normal_axis == 1


# ----------------------------------------------------------------- inclusion
@pytest.mark.parametrize("shape", [(32, 32), (15, 15, 15), (16, 16, 16)])
def test_inclusion_symmetry_and_fraction(shape):
    inc = Inclusion(0.25)
    pm = inc.phase_map(shape)
    d = len(shape)
    for a in range(d):
        for b in range(a + 1, d):
            assert (np.rot90(pm, 1, axes=(a, b)) == pm).all()
        assert (np.flip(pm, a) == pm).all()
    # voxel fraction converges to the disc/sphere fraction
    exact = math.pi * 0.25**2 if d == 2 else 4 / 3 * math.pi * 0.25**3
    assert abs(pm.mean() - exact) < 0.03
    fine = inc.phase_map((256, 256)).mean() if d == 2 else inc.phase_map((64,) * 3).mean()
    assert abs(fine - exact) < abs(pm.mean() - exact) + 1e-12


def test_cube_inclusion_de_geus_layout():
    pm = CubeInclusion(9).phase_map((31, 31, 31))
    assert pm.sum() == 9**3
    idx = np.argwhere(pm == 1)
    assert (idx.min(0) == 11).all() and (idx.max(0) == 19).all()
    corner = CubeInclusion(9, centred=False).phase_map((33, 33, 33))
    assert corner[:9, :9, :9].all() and corner.sum() == 729
    assert (np.flip(pm, 0) == pm).all()


# ------------------------------------------------------------ random fibres
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(128, 128), (40, 40, 40)])
def test_random_fibres_fraction_no_overlap_and_periodic(seed, shape):
    vf = 0.3 if len(shape) == 2 else 0.2
    rf = RandomFibres(volume_fraction=vf, radius_fraction=0.08, seed=seed, min_gap=0.01)
    c = rf.centres(shape)
    N = min(shape)
    r, gap = 0.08 * N, 0.01 * N
    L = np.asarray(shape, float)
    dx = c[:, None, :] - c[None, :, :]
    dx -= L * np.round(dx / L)
    dist = np.sqrt((dx**2).sum(-1)) + np.eye(len(c)) * 1e9
    assert dist.min() >= 2 * r + gap - 1e-9
    # continuum fraction of the placed particles is the closest one to the target
    v1 = math.pi * r**2 if len(shape) == 2 else 4 / 3 * math.pi * r**3
    assert abs(len(c) * v1 / L.prod() - vf) <= v1 / L.prod() / 2 + 1e-12
    # periodic voxelization: each particle has exactly the voxels of an unwrapped ball
    lab = rf.labels(shape)
    counts = np.bincount(lab[lab >= 0], minlength=len(c))
    for k, ck in enumerate(c):
        R = int(math.ceil(r)) + 2
        axes = [np.arange(math.floor(x) - R, math.floor(x) + R + 1) + 0.5 for x in ck]
        g = np.meshgrid(*axes, indexing="ij")
        expected = (sum((gi - xi) ** 2 for gi, xi in zip(g, ck, strict=True)) <= r * r).sum()
        assert counts[k] == expected
    pm = rf.phase_map(shape)
    assert abs(rf.achieved_fraction(shape) - vf) < 0.03
    assert pm.mean() == rf.achieved_fraction(shape)


def test_random_fibres_seed_reproducible_and_distinct():
    a = RandomFibres(0.25, 0.06, seed=7).phase_map((64, 64))
    b = RandomFibres(0.25, 0.06, seed=7).phase_map((64, 64))
    c = RandomFibres(0.25, 0.06, seed=8).phase_map((64, 64))
    assert (a == b).all() and (a != c).any()


def test_random_fibres_above_jamming_raises():
    with pytest.raises(InvalidInput, match="jamming"):
        RandomFibres(0.6, 0.05).phase_map((64, 64))
    assert RSA_JAMMING_FRACTION[3] < 0.4
    with pytest.raises(InvalidInput, match="jamming"):
        RandomFibres(0.42, 0.1).centres((20, 20, 20))
    with pytest.raises(InvalidInput, match="attempts"):
        RandomFibres(0.5, 0.05, max_attempts=50).centres((64, 64))


# -------------------------------------------------------------- polycrystal
@pytest.mark.parametrize("shape", [(48, 48), (20, 20, 20)])
def test_voronoi_nearest_periodic_seed(shape):
    vp = VoronoiPolycrystal(6, seed=3)
    pm = vp.phase_map(shape)
    assert pm.dtype == np.int64 and set(np.unique(pm)) == set(range(6))
    # brute force minimum-image nearest seed on a sample of voxels
    rng = np.random.default_rng(0)
    s = vp.seeds(shape)
    L = np.asarray(shape, float)
    for idx in rng.integers(0, shape, size=(50, len(shape))):
        dx = (idx + 0.5) - s
        dx -= L * np.round(dx / L)
        d2 = (dx**2).sum(-1)
        assert d2[pm[tuple(idx)]] <= d2.min() + 1e-9


def test_voronoi_orientations_are_proper_rotations_and_seeded():
    R = VoronoiPolycrystal(20, seed=5).orientations()
    assert R.shape == (20, 3, 3)
    np.testing.assert_allclose(R @ R.transpose(0, 2, 1), np.broadcast_to(np.eye(3), R.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-12)
    np.testing.assert_array_equal(R, VoronoiPolycrystal(20, seed=5).orientations())
    assert not np.allclose(R, VoronoiPolycrystal(20, seed=6).orientations())


def test_voronoi_too_coarse_grid_raises():
    with pytest.raises(InvalidInput, match="no voxel"):
        VoronoiPolycrystal(200, seed=0).phase_map((4, 4))


# ------------------------------------------------------------- user maps
def test_phase_map_from_npy_and_png(tmp_path):
    arr = np.zeros((6, 8), dtype=np.int32)
    arr[2:4, 3:6] = 1
    arr[0, 0] = 2
    np.save(tmp_path / "m.npy", arr)
    pm = PhaseMap(tmp_path / "m.npy")
    assert pm.num_phases == 3 and (pm.phase_map((6, 8)) == arr).all()
    assert pm.phase_map((6, 8)).dtype == np.int64

    from PIL import Image

    grey = np.choose(arr, [30, 200, 90]).astype(np.uint8)  # grey levels not in id order
    Image.fromarray(grey).save(tmp_path / "m.png")
    img = PhaseMap(str(tmp_path / "m.png")).phase_map((6, 8))
    # increasing grey level -> ids: 30 -> 0, 90 -> 1, 200 -> 2
    np.testing.assert_array_equal(img, np.choose(arr, [0, 2, 1]))


def test_phase_map_bad_inputs(tmp_path):
    with pytest.raises(InvalidInput, match="grid is"):
        PhaseMap(np.zeros((4, 4), dtype=int)).phase_map((4, 5))
    with pytest.raises(InvalidInput, match="contiguous"):
        PhaseMap(np.array([[0, 2], [2, 0]]))
    with pytest.raises(InvalidInput, match="contiguous"):
        PhaseMap(np.array([[1, 1], [1, 2]]))
    with pytest.raises(InvalidInput, match="non-integer"):
        PhaseMap(np.array([[0.0, 0.5], [1.0, 0.0]]))
    with pytest.raises(InvalidInput, match="2D or 3D"):
        PhaseMap(np.zeros(5, dtype=int))
    with pytest.raises(InvalidInput, match="does not exist$"):
        PhaseMap(tmp_path / "nope.npy")
    # a relative path is read from the working directory, and the message says where it looked
    import os

    with pytest.raises(InvalidInput, match=rf"'nope.npy' does not exist \(looked for {os.getcwd()}/nope.npy: a "
                                           r"relative path is read from the working directory\)"):
        PhaseMap("nope.npy")
    (tmp_path / "x.txt").write_text("0 1")
    with pytest.raises(InvalidInput, match="suffix"):
        PhaseMap(tmp_path / "x.txt")


def test_bad_parameters():
    with pytest.raises(InvalidInput, match="fraction"):
        Laminate(1.5)
    with pytest.raises(InvalidInput, match="normal_axis"):
        Laminate(0.5, normal_axis=2).phase_map((4, 4))
    with pytest.raises(InvalidInput, match="radius_fraction"):
        Inclusion(0.6)
    with pytest.raises(InvalidInput, match="size"):
        CubeInclusion(40).phase_map((31, 31, 31))
    with pytest.raises(InvalidInput, match="size"):
        CubeInclusion(0)
    with pytest.raises(InvalidInput, match="volume_fraction"):
        RandomFibres(0.0, 0.1)
    with pytest.raises(InvalidInput, match="n_grains"):
        VoronoiPolycrystal(0)
    with pytest.raises(InvalidInput, match="grid shape"):
        Inclusion().phase_map((8,))
    with pytest.raises(InvalidInput, match="grid shape"):
        Inclusion().phase_map((8, -2))


# ------------------------------------------- integration with the FFT solver
def _mandel(T):
    k = T.shape[0]
    idx = [(0, 0), (1, 1), (0, 1)] if k == 2 else [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    w = [1.0 if i == j else math.sqrt(2) for i, j in idx]
    return np.array([[w[a] * w[b] * float(T[i, j, p, q]) for b, (p, q) in enumerate(idx)]
                     for a, (i, j) in enumerate(idx)])


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_random_fibres_fft_moduli_inside_hashin_shtrikman(seed):
    from oracles.analytic.bounds import E_nu_to_moduli, hashin_shtrikman_bounds, isotropic_moduli

    pm = RandomFibres(0.3, 0.05, seed=seed, min_gap=0.005).phase_map((128, 128))
    s = FFTSolver(pm, [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)])
    C = _mandel(s.homogenize(torch.zeros(1, 2, 2, dtype=torch.float64)).tangent[0])
    k, G = isotropic_moduli(torch.tensor(C))
    K1, G1 = E_nu_to_moduli(1.0, 0.3)
    K2, G2 = E_nu_to_moduli(10.0, 0.3)
    b = hashin_shtrikman_bounds(K1, G1, K2, G2, pm.mean(), dim=2)
    assert b.K_lower <= k <= b.K_upper and b.G_lower <= G <= b.G_upper


@pytest.mark.slow
def test_voronoi_cubic_polycrystal_between_voigt_and_reuss():
    from oracles.analytic.bounds import isotropic_moduli
    from oracles.cohesive.oracle import vrh_cubic

    vp = VoronoiPolycrystal(20, seed=0)
    R = torch.tensor(vp.orientations())
    phases = [CubicElastic(168.4, 121.4, 75.4, R=R[i]) for i in range(20)]
    s = FFTSolver(vp.phase_map((24, 24, 24)), phases)
    C = _mandel(s.homogenize(torch.zeros(1, 3, 3, dtype=torch.float64)).tangent[0])
    K, G = (float(v) for v in isotropic_moduli(torch.tensor(C)))
    v = vrh_cubic(168.4, 121.4, 75.4)
    # cubic crystals: the bulk modulus is orientation independent, exact for any aggregate
    assert K == pytest.approx(v.K, rel=1e-6)
    assert v.G_R < G < v.G_V
