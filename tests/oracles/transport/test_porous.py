"""Porous microstructures: closed-form geometries, PoreSpy generators, user images."""

import math

import numpy as np
import pytest

from oracles.exceptions import InvalidInput
from oracles.transport.porous import (
    Blobs,
    CylinderArray,
    Fibres,
    OverlappingSpheres,
    PolydisperseSpheres,
    PoreImage,
    Slit,
    SphereArray,
    microstructure,
)


def test_closed_form_geometries():
    assert Slit(fraction=0.25).solid((4, 16)).mean() == 0.75
    c = CylinderArray(radius_fraction=0.3)
    s = c.solid((64, 64, 3))
    assert abs(s.mean() - c.solid_fraction()) < 0.01 and (s[:, :, 0] == s[:, :, 2]).all()
    sph = SphereArray(radius_fraction=0.3).solid((40, 40, 40))
    assert abs(sph.mean() - 4 / 3 * math.pi * 0.027) < 0.01
    with pytest.raises(InvalidInput, match="fraction"):
        Slit(fraction=1.5).solid((8, 8))
    with pytest.raises(InvalidInput, match="grid"):
        SphereArray().solid((8,))


@pytest.mark.slow  # importing PoreSpy (numba) takes 15-60 s on a shared machine
def test_porespy_generators_hit_their_porosity():
    # PoreSpy images are True on pores; ours are True on solid
    for micro, shape in [
        (Blobs(porosity=0.6, blobiness=1.5, seed=1), (48, 48)),
        (OverlappingSpheres(porosity=0.6, radius_fraction=0.1, seed=1), (24, 24, 24)),
        (PolydisperseSpheres(porosity=0.6, radius_fraction=0.12, seed=1), (24, 24, 24)),
        (Fibres(porosity=0.8, radius_fraction=0.08, seed=1), (24, 24, 24)),
    ]:
        s = micro.solid(shape)
        assert s.shape == shape and s.dtype == bool
        assert abs((1 - s.mean()) - micro.porosity) < 0.08, (micro, 1 - s.mean())
    a = OverlappingSpheres(porosity=0.5, seed=3).solid((16, 16, 16))
    b = OverlappingSpheres(porosity=0.5, seed=3).solid((16, 16, 16))
    assert (a == b).all()  # seeded


def test_user_image_and_names(tmp_path):
    img = np.zeros((6, 7, 8), dtype=np.uint8)
    img[:, :3] = 1
    p = tmp_path / "rock.npy"
    np.save(p, img)
    m = microstructure(str(p))
    assert isinstance(m, PoreImage) and (m.solid() == img.astype(bool)).all()
    with pytest.raises(InvalidInput, match="shape"):
        m.solid((6, 7, 9))
    np.save(tmp_path / "bad.npy", img * 3)
    with pytest.raises(InvalidInput, match="0/1"):
        PoreImage(str(tmp_path / "bad.npy")).solid()
    with pytest.raises(InvalidInput, match="microstructure must be one of"):
        microstructure("sandstone")
    with pytest.raises(InvalidInput, match="no parameters"):
        microstructure("blobs", radius_fraction=0.1)


def test_overlapping_sphere_radius_is_not_rounded_to_whole_voxels():
    """radius_fraction 0.06 and 0.075 on 32^3 are 1.92 and 2.4 voxels: both had become
    2 voxels, the same image; a voxel is now solid within the continuous radius of a centre,
    so the images differ, at the requested porosity, and 16^3 and 32^3 model the same radius."""
    from oracles.transport.porous import OverlappingSpheres

    a = OverlappingSpheres(0.5, 0.06, seed=1).solid((32, 32, 32))
    b = OverlappingSpheres(0.5, 0.075, seed=1).solid((32, 32, 32))
    assert not np.array_equal(a, b)
    for s in (a, b):
        assert abs(s.mean() - 0.5) < 0.02


@pytest.mark.parametrize("seed", [0, 3, 6, 7])
def test_fibres_with_seeds_whose_first_porespy_draw_fails(seed):
    """PoreSpy 3.2's cylinders raised OverflowError for these seeds at 32^3 (its first batch of
    fibres missed the grid); the default seed 0 failed on 6 of 9 settings. A failed draw is made
    again with a seed derived from this one, as is a draw whose porosity misses the target by more
    than 0.1 (seed 6 had given 0.16 for 0.8; the closest of 8 draws is kept): every setting here
    gives an image, near its porosity, and one seed gives one image."""
    for por, rf in ((0.8, 0.06), (0.6, 0.06), (0.8, 0.1), (0.5, 0.06), (0.6, 0.1)):
        f = Fibres(porosity=por, radius_fraction=rf, seed=seed)
        solid = f.solid((32, 32, 32))
        # PoreSpy's own porosity control is loose at 32^3 (one fibre is a few per cent of the
        # cell, and most of its fibres miss the grid): within 0.2 here, 0.1 where a draw allows
        assert abs((1 - solid.mean()) - por) <= 0.2, (por, rf, 1 - solid.mean())
        assert np.array_equal(solid, f.solid((32, 32, 32)))
