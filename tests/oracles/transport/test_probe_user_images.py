"""A porous-media user's own segmented images: file types, pore labels, voxel sizes and units,
non-periodic crops, bad input; and the numbers against independent references (Poiseuille slit
and square duct, Drummond-Tahir cylinder array, laminate means, voxel-size scaling, axis
permutation)."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from loops.cli import main
from oracles.exceptions import InvalidInput
from oracles.transport import (
    DARCY,
    NonPeriodicWarning,
    NotPercolating,
    PoreImage,
    effective_conductivity,
    face_mismatch,
    mirror,
    permeability,
    solid_from_labels,
    tortuosity,
)
from oracles.transport.cli import voxel_size


def _cli(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    try:
        return rc, json.loads(cap.out), cap.err
    except json.JSONDecodeError:
        return rc, None, cap.err


def _slit(h: int = 12, n: int = 16, m: int = 8) -> np.ndarray:
    """Solid rows 0..n-h-1, a channel of h voxels along axis 1 (periodic along both axes)."""
    s = np.zeros((n, m), dtype=bool)
    s[: n - h] = True
    return s


def _tilted_channel(n: int = 32, w: int = 6, rise: int = 12) -> np.ndarray:
    """A channel along axis 0 that climbs ``rise`` voxels across the image: open on both faces,
    but its outlet does not meet its inlet across the periodic boundary (a crop)."""
    s = np.ones((n, n), dtype=bool)
    for i in range(n):
        c = 4 + i * rise // n
        s[i, c : c + w] = False
    return s


# ------------------------------------------------------------------ file types and labels
def test_png_8_and_16_bit_and_tiff_stack_with_pore_label(tmp_path, capsys):
    from PIL import Image

    s = _slit()
    Image.fromarray((s * 255).astype(np.uint8)).save(tmp_path / "s8.png")
    Image.fromarray((s * 65535).astype(np.uint16)).save(tmp_path / "s16.png")
    pages = [Image.fromarray((s * 255).astype(np.uint8)) for _ in range(3)]
    pages[0].save(tmp_path / "stack.tif", save_all=True, append_images=pages[1:])
    for name in ("s8.png", "s16.png"):
        np.testing.assert_array_equal(PoreImage(str(tmp_path / name), pore_label=0).load(), s)
    stack = PoreImage(str(tmp_path / "stack.tif"), pore_label=0).load()
    assert stack.shape == (3, 16, 8) and (stack == s).all()
    # the CLI: 12-voxel slit, 1 um voxels: (h^3 - h) / 12 / 16 um^2
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / "s16.png"),
                                 "--pore-label", "0", "--voxel-size", "1um"])
    assert rc == 0, err
    k = (12**3 - 12) / 12 / 16 * 1e-12
    assert out["tensor"][1][1] == pytest.approx(k, rel=1e-9)
    assert out["tensor_darcy"][1][1] == pytest.approx(k / DARCY, rel=1e-9)
    # without --pore-label a 0/255 image is refused on one line naming the values and the option
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / "s8.png")])
    assert rc == 2 and out is None and len(err.strip().splitlines()) == 1
    assert "[0, 255]" in err and "--pore-label" in err


@pytest.mark.parametrize("make,label", [
    (lambda s: s.astype(np.uint8) * 255, 0),           # 0/255
    (lambda s: np.where(s, 7, 2).astype(np.int32), 2),  # labels, pore 2
    (lambda s: (~s).astype(np.uint8), 1),               # pores 1, solid 0
])
def test_pore_label_names_the_pores(tmp_path, make, label):
    s = _slit()
    np.save(tmp_path / "img.npy", make(s))
    got = PoreImage(str(tmp_path / "img.npy"), pore_label=label).load()
    np.testing.assert_array_equal(got, s)


def test_label_errors_are_one_line():
    with pytest.raises(InvalidInput, match=r"values \[0, 3\].*--pore-label"):
        solid_from_labels(np.array([[0, 3], [3, 0]]))
    with pytest.raises(InvalidInput, match="no voxel equal to the pore label 5"):
        solid_from_labels(np.array([[0, 3], [3, 0]]), pore_label=5)
    f = np.zeros((4, 4))
    f[0, 0] = np.nan
    with pytest.raises(InvalidInput, match="1 non-finite"):
        solid_from_labels(f)


def test_cli_bad_files_are_one_line(tmp_path, capsys):
    np.save(tmp_path / "four.npy", np.zeros((3, 3, 3, 3), dtype=bool))
    np.save(tmp_path / "thin.npy", np.zeros((1, 8, 8), dtype=bool))
    np.save(tmp_path / "free.npy", np.zeros((8, 8), dtype=bool))
    cases = [
        ("missing.npy", "does not exist"),
        ("four.npy", "2D or 3D, got shape (3, 3, 3, 3)"),
        ("thin.npy", "at least 2 voxels per axis, got shape (1, 8, 8)"),
        ("free.npy", "no solid voxel"),
    ]
    for name, text in cases:
        rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / name)])
        assert rc == 2 and out is None, (name, err)
        assert len(err.strip().splitlines()) == 1 and text in err, (name, err)


def test_all_solid_image_names_porosity_zero():
    with pytest.raises(NotPercolating, match="no pore voxel"):
        permeability(np.ones((8, 8), dtype=bool))


# ------------------------------------------------------------------ voxel size and units
def test_voxel_size_units_and_anisotropic_voxels():
    assert voxel_size(["2.5um"]) == pytest.approx(2.5e-6)
    assert voxel_size(["2.5µm"]) == pytest.approx(2.5e-6)
    assert voxel_size(["0.0025mm"]) == pytest.approx(2.5e-6)
    assert voxel_size(["2.5e-6"]) == pytest.approx(2.5e-6)
    assert voxel_size(["1um", "1um", "1um"]) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="anisotropic voxels are not supported"):
        voxel_size(["1um", "1um", "2um"])
    with pytest.raises(ValueError, match="furlong"):
        voxel_size(["2furlong"])
    with pytest.raises(InvalidInput, match="anisotropic voxels are not supported"):
        permeability(_slit(), voxel_size=(1e-6, 2e-6))


def test_voxel_size_scales_permeability_by_its_square_only():
    rng = np.random.default_rng(0)
    s = rng.random((20, 18, 16)) < 0.12
    r1 = permeability(s, voxel_size=1e-6, tol=1e-8)
    r2 = permeability(s, voxel_size=3.7e-6, tol=1e-8)
    np.testing.assert_allclose(r2.tensor.numpy(), 3.7**2 * r1.tensor.numpy(), rtol=1e-12, atol=0)


def test_transposed_image_permutes_the_tensors():
    rng = np.random.default_rng(0)
    s = rng.random((20, 18, 16)) < 0.12
    P = [2, 0, 1]
    r = permeability(s, tol=1e-8).tensor.numpy()
    rt = permeability(np.transpose(s, P), tol=1e-8).tensor.numpy()
    np.testing.assert_allclose(rt, r[np.ix_(P, P)], rtol=1e-9, atol=1e-12 * abs(r).max())
    t = tortuosity(~s).tau.numpy()
    tt = tortuosity(np.transpose(~s, P)).tau.numpy()
    np.testing.assert_allclose(tt, t[P], rtol=1e-6)


# ------------------------------------------------------------------ references
@pytest.mark.parametrize("h", [4, 8, 16, 32])
def test_slit_poiseuille_converges_to_h2_over_12(h):
    """Channel of width 1 (h voxels) in a period of 2: k = phi h^2 / 12 = 1 / 24 in the limit,
    (h^3 - h) / 12 per cell width on h voxels."""
    s = np.zeros((2 * h, 4), dtype=bool)
    s[h:] = True
    k = permeability(s, voxel_size=1.0 / h).tensor.numpy()
    assert k[1, 1] == pytest.approx((h**3 - h) / 12 / (2 * h) / h**2, rel=1e-8)
    assert abs(k[1, 1] - 1 / 24) <= 1.1 / 24 / h**2
    assert k[0, 0] == 0.0


def test_square_duct_bundle():
    """Square tubes of side a, one per cell of side 2a: k = (1/4) C a^2 with the series
    C = (1 - 192/pi^5 sum tanh(n pi/2)/n^5) / 12 = 0.035144; second order in the voxel."""
    C = (1 - 192 / math.pi**5 * sum(math.tanh(n * math.pi / 2) / n**5 for n in range(1, 200, 2))) / 12
    errs = []
    for a in (8, 12):
        s = np.ones((2 * a, 2 * a, 4), dtype=bool)
        s[:a, :a] = False
        k = permeability(s, voxel_size=1.0 / a).tensor.numpy()
        errs.append(abs(k[2, 2] / (0.25 * C) - 1))
        assert k[0, 0] == 0.0 and k[1, 1] == 0.0
    assert errs[1] < 0.025 and errs[0] / errs[1] > 1.8


@pytest.mark.slow
def test_cylinder_array_drummond_tahir():
    """Transverse flow through a square array of cylinders at solid fraction ~0.126 against
    Drummond & Tahir (1984): k/R^2 = (-ln c - 1.476 + 2c - 1.774c^2 + 4.076c^3) / (8c)."""
    n, R = 128, 0.2
    x = (np.arange(n) + 0.5) / n - 0.5
    X, Y = np.meshgrid(x, x, indexing="ij")
    s = X**2 + Y**2 < R**2
    c = math.pi * R**2
    ref = (-math.log(c) - 1.476 + 2 * c - 1.774 * c**2 + 4.076 * c**3) / (8 * c) * R**2
    k = permeability(s, voxel_size=1.0 / n).tensor.numpy()
    assert k[0, 0] == pytest.approx(ref, rel=0.01) and k[1, 1] == pytest.approx(ref, rel=0.01)


def test_laminate_conductivity_means():
    pm = np.zeros((16, 8), dtype=np.int64)
    pm[::2] = 1
    pm[:3] = 1
    f = pm.mean()
    for disc in ("staggered", "spectral"):
        K = effective_conductivity(pm, [1.0, 10.0], discretization=disc).tensor.numpy()
        assert K[0, 0] == pytest.approx(1 / ((1 - f) + f / 10), rel=1e-7)
        assert K[1, 1] == pytest.approx((1 - f) + 10 * f, rel=1e-7)


# ------------------------------------------------------------------ non-periodic crops
def test_crop_whose_faces_do_not_match_warns_and_mirror_fixes_it():
    s = _tilted_channel()
    (b0, i0), (b1, _) = face_mismatch(s)
    assert b0 == pytest.approx(0.375) and i0 < 0.03 and b1 == 0.0
    with pytest.warns(NonPeriodicWarning, match=r"axis 0: 37.5%.*from face to face.*--mirror 0"), \
            pytest.raises(NotPercolating):
        permeability(s)  # the periodic cell is blocked: outlet meets solid at the inlet
    m = mirror(s, [0])
    assert m.shape == (64, 32) and face_mismatch(m)[0][0] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonPeriodicWarning)
        k = permeability(m).tensor.numpy()
    # flow from face to face, a little below the straight channel of the same width
    straight = (6**3 - 6) / 12 / 32
    assert 0.5 * straight < k[0, 0] < straight


def test_periodic_images_do_not_warn(tmp_path, capsys):
    s = _slit()  # its boundary along axis 0 is a wall, crossed by no flow either way
    cell = np.roll(_slit(12, 16, 16), 5, axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonPeriodicWarning)
        permeability(s)
        permeability(cell)
        tortuosity(~s, axes=[1])
    np.save(tmp_path / "slit.npy", s)
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / "slit.npy")])
    assert rc == 0 and out["periodicity_warning"] is None and err == ""


def test_cli_warns_and_mirrors(tmp_path, capsys):
    np.save(tmp_path / "tilt.npy", _tilted_channel())
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / "tilt.npy")])
    assert rc == 0 and out["percolates"] is False
    assert "warning:" in err and "37.5%" in err and "--mirror 0" in err
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", str(tmp_path / "tilt.npy"),
                                 "--mirror", "0"])
    assert rc == 0 and out["percolates"] is True and out["grid"] == [64, 32] and err == ""
    assert out["tensor"][0][0] > 0
    rc, out, err = _cli(capsys, ["permeability", "--microstructure", "slit", "--dim", "2", "--mirror", "0"])
    assert rc == 2 and "--mirror applies to an image file" in err


def test_crop_percolating_only_through_the_wrap_is_named():
    """A crop of a smooth random medium: along axis 1 its pores cross the periodic cell only by
    joining mismatched faces (through the wrap of axis 0 too); sealed and mirrored, the sample
    has no flow there. The warning names both axes and says so."""
    from scipy.ndimage import gaussian_filter

    big = gaussian_filter(np.random.default_rng(1).random((96, 96)), 3, mode="wrap")
    crop = (big < np.quantile(big, 0.35))[10:58, 20:68]
    with pytest.warns(NonPeriodicWarning, match=r"axis 0: .*axis 1: .*periodic boundary only.*--mirror 0 1"):
        k = permeability(crop).tensor.numpy()
    assert k[1, 1] > 0.3
    km = permeability(mirror(crop)).tensor.numpy()
    assert km[1, 1] == 0.0 and km[0, 0] > 1.2 * k[0, 0]
