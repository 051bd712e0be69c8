"""A 3D phase map saved as a multi-page TIFF (a micro-CT segmentation): read as 3D by PhaseMap,
homogenized as the same array saved as .npy, a laminate of pages has the lamination tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oracles.exceptions import InvalidInput
from oracles.rve.laws import IsotropicElastic
from oracles.rve.microstructure import PhaseMap
from oracles.rve.oracle import RVEOracle
from tests.oracles.rve.test_solver_small_strain import laminate_exact

Image = pytest.importorskip("PIL.Image")
DT = torch.float64
LAWS = [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.2)]


def _save_stack(path, pages) -> str:
    ims = [Image.fromarray(p) for p in pages]
    ims[0].save(path, save_all=True, append_images=ims[1:])
    return str(path)


def test_phase_map_of_a_three_page_tiff_is_the_3d_array(tmp_path):
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 3, size=(3, 6, 5))
    ids[0, 0, :3] = [0, 1, 2]
    ids[1:, :, :] = np.minimum(ids[1:], 1)  # phase 2 only on the first page
    colours = np.array([(10, 10, 10), (0, 160, 0), (250, 250, 0)], dtype=np.uint8)  # luma order = id order
    pm = PhaseMap(_save_stack(tmp_path / "s.tif", list(colours[ids])))
    assert pm.shape == (3, 6, 5) and pm.num_phases == 3
    np.testing.assert_array_equal(pm.phase_map((3, 6, 5)), ids)
    with pytest.raises(InvalidInput, match=r"phase map has shape \(3, 6, 5\) but the grid is \(6, 5\)"):
        pm.phase_map((6, 5))


def test_pages_of_unequal_shape_are_refused(tmp_path):
    a, b = np.zeros((6, 5), np.uint8), np.full((5, 6), 200, np.uint8)
    path = _save_stack(tmp_path / "rag.tif", [a, b, a])
    with pytest.raises(InvalidInput, match=r"image '.*rag\.tif': the pages of the stack differ in shape "
                                           r"\[\(5, 6\), \(6, 5\)\]"):
        PhaseMap(path)
    with pytest.raises(InvalidInput, match="differ in shape"):
        RVEOracle(LAWS, path)


def test_a_laminate_of_pages_has_the_lamination_tensor_and_the_npy_answer(tmp_path):
    # phase 1 on pages 0 and 3 of 6: layers normal to axis 0, fraction 1/3
    pm = np.zeros((6, 3, 5), dtype=np.int64)
    pm[[0, 3]] = 1
    tif = _save_stack(tmp_path / "lam.tif", list((255 * pm).astype(np.uint8)))
    np.save(tmp_path / "lam.npy", pm)
    a = RVEOracle(LAWS, tif, cg_tol=1e-12)
    b = RVEOracle(LAWS, str(tmp_path / "lam.npy"), cg_tol=1e-12)
    eps = 0.01 * torch.tensor([[[1.0, 0.2, -0.3], [0.2, -0.5, 0.4], [-0.3, 0.4, 0.7]]], dtype=DT)
    sa, Ca = a.stress_tangent(eps)
    sb, Cb = b.stress_tangent(eps)
    assert torch.equal(sa, sb) and torch.equal(Ca, Cb)
    exact = laminate_exact([law.stiffness(3).numpy() for law in LAWS], [2 / 3, 1 / 3], 0)
    assert np.abs(Ca[0].numpy() - exact).max() <= 1e-8 * np.abs(exact).max()
    x = torch.tensor([[0.01, -0.002, 0.003, 0.001, -0.004, 0.002]], dtype=DT)
    assert torch.equal(a.evaluate(x).Y, b.evaluate(x).Y)


def test_cli_takes_a_stack_as_a_3d_microstructure(tmp_path, capsys):
    from loops.cli import main

    pm = np.zeros((6, 3, 5), dtype=np.int64)
    pm[[0, 3]] = 1
    tif = _save_stack(tmp_path / "lam.tif", list((255 * pm).astype(np.uint8)))
    rc = main(["rve", "--microstructure", tif, "--E", "1", "10", "--nu", "0.3", "0.2", "--no-tangent",
               "--strain", "0.01", "0", "0", "0", "0", "0", "--cg-tol", "1e-12"])
    out = capsys.readouterr().out
    assert rc == 0
    stress = np.array(json.loads(out)["stress"])
    exact = laminate_exact([law.stiffness(3).numpy() for law in LAWS], [2 / 3, 1 / 3], 0)
    np.testing.assert_allclose(stress, 0.01 * exact[:, :, 0, 0], rtol=1e-8, atol=1e-14)
    # --dim 2 does not describe the stack
    rc = main(["rve", "--microstructure", tif, "--dim", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "the image is 3D (6x3x5)" in err[0], err
