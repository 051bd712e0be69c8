"""Transport oracles against independent references where a user meets them: blocked
axes and enclosed conductors (exact zeros from flux conservation, not round-off), periodic
percolation against a voxel-by-voxel search, and bad input named."""

import itertools
import json
from collections import deque

import numpy as np
import pytest
import torch

from loops.cli import main
from oracles.exceptions import InvalidInput
from oracles.transport import (
    ConductivityOracle,
    NotPercolating,
    OverlappingSpheres,
    effective_conductivity,
    percolating_axes,
    permeability,
    tortuosity,
)
from oracles.transport.conductivity import phase_tensor

# ------------------------------------------------------------------ percolation


def _wraps_by_voxel_search(mask: np.ndarray, full: bool) -> tuple[bool, ...]:
    """Reference: breadth-first search over voxels with periodic neighbours, carrying
    each voxel's unwrapped position; a cluster wraps along ``a`` when one voxel is reached
    at two positions differing along ``a``."""
    k, shape = mask.ndim, mask.shape
    if full:
        steps = [d for d in itertools.product((-1, 0, 1), repeat=k) if any(d)]
    else:
        steps = [tuple(s if b == a else 0 for b in range(k)) for a in range(k) for s in (-1, 1)]
    wraps = [False] * k
    seen: dict[tuple[int, ...], tuple[int, ...]] = {}
    for start in zip(*np.nonzero(mask), strict=True):
        start = tuple(int(i) for i in start)
        if start in seen:
            continue
        seen[start] = start
        queue = deque([start])
        while queue:
            x = queue.popleft()
            ux = seen[x]
            for d in steps:
                uy = tuple(u + s for u, s in zip(ux, d, strict=True))
                y = tuple(u % n for u, n in zip(uy, shape, strict=True))
                if not mask[y]:
                    continue
                if y not in seen:
                    seen[y] = uy
                    queue.append(y)
                else:
                    for a in range(k):
                        if seen[y][a] != uy[a]:
                            wraps[a] = True
    return tuple(wraps)


def test_percolation_matches_a_voxel_search_for_both_connectivities():
    rng = np.random.default_rng(0)
    for _ in range(60):
        shape = tuple(int(n) for n in rng.integers(2, 7, size=int(rng.integers(2, 4))))
        m = rng.random(shape) < rng.uniform(0.15, 0.6)
        for connectivity in ("face", "full"):
            assert percolating_axes(m, connectivity) == _wraps_by_voxel_search(m, connectivity == "full"), (
                shape, connectivity)


def test_a_diagonal_line_wraps_only_through_corners():
    d = np.eye(8, dtype=bool)
    assert percolating_axes(d) == (False, False)
    assert percolating_axes(d, connectivity="full") == (True, True)
    body = np.zeros((5, 5, 5), dtype=bool)
    for i in range(5):
        body[i, i, i] = True  # voxels touching at corners only
    assert percolating_axes(body, connectivity="full") == (True, True, True)
    with pytest.raises(InvalidInput, match="connectivity"):
        percolating_axes(d, connectivity="edge")


# ------------------------------------------------------------------ conductivity


@pytest.mark.parametrize("discretization", ["staggered", "spectral"])
def test_conductors_enclosed_by_an_insulator_are_refused_not_a_round_off_tensor(discretization):
    """A conducting block in an insulating matrix carries no net current (its flux is
    divergence free and the block does not wrap): K_eff = 0. It had been returned as noise,
    [[5.6e-18, 7.4e-18], [9.2e-19, 3.0e-18]] (staggered) and K11 = -3.7e-14 (spectral)."""
    pm = np.zeros((16, 16), dtype=int)
    pm[4:10, 5:12] = 1
    with pytest.raises(NotPercolating, match="along no axis.*effective conductivity is zero"):
        effective_conductivity(pm, [0.0, 1.0], discretization=discretization)


@pytest.mark.parametrize("discretization", ["staggered", "spectral"])
def test_rods_in_an_insulator_conduct_along_themselves_only(discretization):
    """Straight conducting rods: along them the parallel (Voigt) mean f * sigma, across them
    exactly zero (rows and columns of the blocked axes had held +-1e-17)."""
    pm = np.zeros((8, 8, 8), dtype=int)
    pm[2:5, 2:5, :] = 1
    r = effective_conductivity(pm, [0.0, 2.0], discretization=discretization)
    expected = torch.zeros(3, 3, dtype=torch.float64)
    expected[2, 2] = 2.0 * 9 / 64
    torch.testing.assert_close(r.tensor[2, 2], expected[2, 2], rtol=1e-10, atol=0)
    assert torch.equal(r.tensor[:2], expected[:2]) and torch.equal(r.tensor[:, :2], expected[:, :2])
    assert r.info["percolating_axes"] == [False, False, True]
    # with a conducting matrix nothing is blocked
    r = effective_conductivity(pm, [0.5, 2.0], discretization=discretization)
    assert r.info["percolating_axes"] == [True, True, True] and r.tensor[0, 0] > 0.5


def test_tortuosity_of_a_straight_channel_and_its_blocked_axis():
    m = np.zeros((16, 16), dtype=bool)
    m[:, 4:9] = True
    t = tortuosity(m, axes=[0])
    assert abs(t.tau[0].item() - 1.0) < 1e-12 and torch.isinf(t.tau[1])
    assert t.tensor[1, 1].item() == 0.0 and t.tensor[0, 1].item() == 0.0  # was 5.6e-17


@pytest.mark.parametrize("axes", [[0.7], [True], ["0"], [], 0, "0"])
def test_tortuosity_axes_must_be_axis_indices(axes):
    """[0.7] had been read as axis 0, [True] as 1, [] returned tau = inf everywhere, and a bare
    0 raised TypeError: 'int' object is not iterable."""
    m = np.ones((8, 8), dtype=bool)
    with pytest.raises(InvalidInput, match="axes must be"):
        tortuosity(m, axes=axes)
    assert tortuosity(m, axes=(np.int64(1),)).tau[1].item() == pytest.approx(1.0)


@pytest.mark.parametrize("value", [torch.tensor([1.0 + 1.0j, 2.0]), np.array([2.0 + 0.5j]), np.complex128(3.0)])
def test_a_complex_conductivity_is_refused(value):
    """A complex torch tensor had lost its imaginary part with only numpy's ComplexWarning."""
    with pytest.raises(InvalidInput, match="complex"):
        phase_tensor(value, 2)


def test_log10_contrast_is_relative_to_a_tensor_pore_conductivity():
    """Pore conductivity 2 I given as a matrix and log10_contrast = 0: a homogeneous cell,
    K = 2 I. The solid had been set to the mean of all four matrix entries (1.0): K11 1.633."""
    o = ConductivityOracle(
        "cylinders", levels=(16,), dim=2,
        micro_params={"radius_fraction": (0.1, 0.4), "log10_contrast": (-1.0, 1.0)},
        conductivities=([[2.0, 0.0], [0.0, 2.0]], 1.0),
    )
    r = o.evaluate(torch.tensor([[0.3, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(r.Y[0], torch.tensor([2.0, 2.0, 0.0], dtype=torch.float64), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ permeability


def test_slit_normal_permeability_is_exactly_zero():
    """A slit of h = 8 voxels in a 16-voxel cell: K along it (h^3 - h) / (12 n) (discrete
    Poiseuille); across it no flow, exactly (it had been -6.8e-18 in voxel units)."""
    s = np.ones((16, 16), dtype=bool)
    s[:, :8] = False
    K = permeability(s).tensor
    assert abs(K[0, 0].item() - (8**3 - 8) / (12 * 16)) < 1e-9
    assert K[1, 1].item() == 0.0 and K[0, 1].item() == 0.0


def test_a_wandering_channel_has_no_flow_across_itself():
    """A channel percolating along axis 0 only: the fluid nodes' clusters do not wrap along
    axis 1, so their net flow along it vanishes (K22 had been 4.0e-11, K12 -2.1e-8)."""
    rng = np.random.default_rng(1)
    n, c = 32, 10
    s = np.ones((n, n), dtype=bool)
    for i in range(n):
        c = int(np.clip(c + rng.integers(-1, 2), 6, 20))
        s[i, c - 3:c + 3] = False
    s[-1] = s[0]
    K = permeability(s).tensor
    assert K[0, 0].item() > 0.1
    assert K[1, 1].item() == 0.0 and K[0, 1].item() == 0.0 and K[1, 0].item() == 0.0


# ------------------------------------------------------------------ CLI and seeds


def _run(capsys, argv):
    rc = main(argv)
    out = capsys.readouterr()
    return rc, (json.loads(out.out) if rc == 0 else out.err)


def test_cli_refuses_dim_and_grid_that_do_not_describe_the_image(tmp_path, capsys):
    """--dim 2 and --grid 5 with a 6^3 image had been ignored without a word."""
    s = np.zeros((6, 6, 6), dtype=bool)
    s[:, :, :3] = True
    path = tmp_path / "slit.npy"
    np.save(path, s)
    for command in ("conductivity", "permeability"):
        rc, err = _run(capsys, [command, "--dim", "2", "--microstructure", str(path)])
        assert rc == 2 and "--dim 2 does not apply" in err and "3D" in err
        rc, err = _run(capsys, [command, "--grid", "5", "--microstructure", str(path)])
        assert rc == 2 and "--grid 5 does not apply" in err and "(6, 6, 6)" in err
    rc, out = _run(capsys, ["permeability", "--dim", "3", "--grid", "6", "--microstructure", str(path)])
    assert rc == 0 and out["grid"] == [6, 6, 6]
    # slit of 3 voxels in 6, voxel 1e-6 m: (27 - 3) / 72 um^2 along it, zero across
    assert abs(out["tensor"][0][0] - 24 / 72 * 1e-12) < 1e-9 * 1e-12 and out["tensor"][2][2] == 0.0


def test_cli_refuses_an_infinite_viscosity(capsys):
    """--viscosity inf had printed a mobility of zero."""
    rc, err = _run(capsys, ["permeability", "--dim", "2", "--grid", "8", "--microstructure", "slit",
                            "--viscosity", "inf"])
    assert rc == 2 and "--viscosity" in err and "inf" in err


@pytest.mark.parametrize("seed", [-1, 1.5, True, 2**32, float("nan")])
def test_a_seed_porespy_cannot_take_is_named(seed):
    """-1 had reached the user as numpy's 'Seed must be between 0 and 2**32 - 1', and 1.5 had
    been truncated to 1."""
    with pytest.raises(InvalidInput, match="seed must be None or a whole number"):
        OverlappingSpheres(seed=seed).solid((8, 8))


@pytest.mark.parametrize("dtype", [np.complex128, object, "U1"])
def test_a_pore_image_that_is_not_numbers_is_refused(tmp_path, dtype):
    """A complex image of 0 and 1 had been read as solid/pore (its real part), as conductivity
    refuses; an object or string array is not an image either."""
    from oracles.transport.porous import PoreImage

    arr = np.zeros((6, 6), dtype=dtype)
    arr[:, 3:] = 1 if dtype != "U1" else "1"
    path = tmp_path / "im.npy"
    np.save(path, arr, allow_pickle=True)
    with pytest.raises(InvalidInput, match=r"pore image|\.npy"):
        PoreImage(str(path)).load()
