"""RVE oracle probes: an exact finite-strain laminate, and bad input refused by name."""

import numpy as np
import pytest
import scipy.optimize
import torch

from oracles.exceptions import InvalidInput
from oracles.rve import (
    CubeInclusion,
    CubicElastic,
    FFTSolver,
    Inclusion,
    IsotropicElastic,
    Laminate,
    NeoHookean,
    PhaseMap,
    RandomFibres,
    RVEOracle,
    VoronoiPolycrystal,
    check_grid,
)

DT = torch.float64
LAWS = [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)]


def neo_hookean_P(F: np.ndarray, E: float, nu: float) -> np.ndarray:
    """``P = mu (F - F^-T) + lambda ln(J) F^-T`` from ``E, nu`` (written out here, not the law's code)."""
    lam, mu = E * nu / ((1 + nu) * (1 - 2 * nu)), E / (2 * (1 + nu))
    FiT = np.linalg.inv(F).T
    return mu * (F - FiT) + lam * np.log(np.linalg.det(F)) * FiT


@pytest.mark.parametrize("shape, normal", [((12, 12), 0), ((9, 10), 1), ((6, 5, 7), 2)])
def test_finite_strain_laminate_matches_the_rank_one_solution(shape, normal):
    # layers normal to N: F_p = Fbar + a_p (x) N with sum f_p a_p = 0 and P_p N continuous;
    # a grid-aligned laminate is represented exactly, so the FFT answer must match to solver tolerance
    k = len(shape)
    pm = np.zeros(shape, dtype=int)
    n1 = shape[normal] // 3 + 1
    sl = [slice(None)] * k
    sl[normal] = slice(0, n1)
    pm[tuple(sl)] = 1
    f = [1 - n1 / shape[normal], n1 / shape[normal]]
    moduli = [(1.0, 0.3), (10.0, 0.2)]
    N = np.eye(k)[normal]
    Fbar = np.eye(k) + 0.15 * np.random.default_rng(1).standard_normal((k, k))

    def layers(a0):
        a1 = -f[0] * a0 / f[1]
        return Fbar + np.outer(a0, N), Fbar + np.outer(a1, N)

    def traction_jump(a0):
        F0, F1 = layers(a0)
        return neo_hookean_P(F0, *moduli[0]) @ N - neo_hookean_P(F1, *moduli[1]) @ N

    sol = scipy.optimize.root(traction_jump, np.zeros(k), method="lm", tol=1e-14)
    assert np.abs(traction_jump(sol.x)).max() < 1e-13
    F0, F1 = layers(sol.x)
    exact = f[0] * neo_hookean_P(F0, *moduli[0]) + f[1] * neo_hookean_P(F1, *moduli[1])
    solver = FFTSolver(pm, [NeoHookean(*m) for m in moduli], cg_tol=1e-12, newton_tol=1e-12)
    P = solver.homogenize(torch.tensor(Fbar), tangent=False).stress[0].numpy()
    assert np.abs(P - exact).max() <= 1e-10 * np.abs(exact).max()


def test_complex_macro_loads_are_refused_not_truncated():
    # a cast to float64 had dropped the imaginary part with only a warning
    o = RVEOracle(LAWS, Inclusion(0.3), grid=9, dim=2)
    eps = torch.tensor([[0.01, 0.0], [0.0, 0.0]], dtype=torch.complex128) * (1 + 1j)
    with pytest.raises(InvalidInput, match="macro strain must hold real numbers, got complex"):
        o.homogenize(eps)
    with pytest.raises(InvalidInput, match="macro strain must hold real numbers, got bool"):
        o.homogenize(torch.eye(2, dtype=torch.bool))
    with pytest.raises(InvalidInput, match="F must hold real numbers, got complex"):
        o.material_response(torch.eye(2, dtype=torch.complex128)[None])
    with pytest.raises(InvalidInput, match="F must be an n x 2 x 2 array of numbers"):
        o.material_response([[["a", 0], [0, 1]]])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Inclusion("0.25"), "radius_fraction must be a number, got str '0.25'"),
        (lambda: Inclusion(True), "radius_fraction must be a number, got bool True"),
        (lambda: Laminate("0.5"), "fraction must be a number, got str"),
        (lambda: Laminate(0.5, True), "normal_axis must be 0, 1 or 2, got True"),
        (lambda: Laminate(0.5, 1.0), "normal_axis must be 0, 1 or 2, got 1.0"),
        (lambda: RandomFibres(seed=-1), "seed must be a non-negative int, got int -1"),
        (lambda: RandomFibres(seed=1.5), "seed must be a non-negative int, got float 1.5"),
        (lambda: RandomFibres(max_attempts=10.5), "max_attempts must be a positive int, got 10.5"),
        (lambda: VoronoiPolycrystal(4, seed="x"), "seed must be a non-negative int, got str 'x'"),
    ],
)
def test_microstructure_parameters_of_the_wrong_type_are_named(make, match):
    # these had been stored as given and failed later inside numpy (TypeError, ValueError)
    with pytest.raises(InvalidInput, match=match):
        make()


def test_a_bad_seed_fails_its_own_point_and_keeps_the_others():
    # a negative seed had raised numpy's ValueError out of evaluate, losing the whole batch
    o = RVEOracle(LAWS, RandomFibres(0.2, 0.1), grid=24, dim=2, micro_params={"seed": (-3, 3)})
    X = torch.tensor([[0.01, 0.0, 0.0, 2.0], [0.01, 0.0, 0.0, -2.0]], dtype=DT)
    res = o.evaluate(X)
    assert res.failed.tolist() == [False, True]
    assert "seed must be a non-negative int" in res.reasons[1]
    direct = FFTSolver(RandomFibres(0.2, 0.1, seed=2).phase_map((24, 24)), LAWS).homogenize(
        torch.tensor([[0.01, 0.0], [0.0, 0.0]], dtype=DT), tangent=False
    )
    s = direct.stress[0]
    torch.testing.assert_close(res.Y[0], torch.stack([s[0, 0], s[1, 1], s[0, 1]]), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("shape", ["44", (True, 4), (4, np.bool_(True))])
def test_check_grid_refuses_strings_and_bools(shape):
    # '44' had been read as the grid (4, 4) and True as 1 voxel
    with pytest.raises(InvalidInput, match="grid shape must be a tuple of 2 or 3 ints"):
        check_grid(shape)


def test_a_phase_map_object_sets_its_grid_and_bad_arrays_are_named():
    arr = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 1], [1, 1, 0]])
    eps = torch.tensor([[0.01, 0.002], [0.002, -0.003]], dtype=DT)
    # a PhaseMap had been refused with "grid is required unless the microstructure is a phase-map array"
    o = RVEOracle(LAWS, PhaseMap(arr))
    assert o.grid == (4, 3)
    torch.testing.assert_close(o.homogenize(eps).stress, RVEOracle(LAWS, arr).homogenize(eps).stress)
    # a 3D map with dim=2 had been taken as 3D without a word
    with pytest.raises(InvalidInput, match=r"dim=2 does not match the 3D phase map of shape \(2, 2, 2\)"):
        RVEOracle(LAWS, np.zeros((2, 2, 2), dtype=int), dim=2)
    with pytest.raises(InvalidInput, match="phase map must be a rectangular integer array"):
        RVEOracle(LAWS, [[0, 1], [1]])
    with pytest.raises(InvalidInput, match=r"non-empty 2D or 3D array, got shape \(0, 3\)"):
        PhaseMap(np.zeros((0, 3), dtype=int))


def test_scalar_options_of_the_wrong_type_are_named():
    with pytest.raises(InvalidInput, match="strain_range must be positive, got True"):
        RVEOracle(LAWS, Inclusion(0.3), grid=9, dim=2, strain_range=True)
    with pytest.raises(InvalidInput, match="cost_per_voxel must be a positive number, got 'a'"):
        RVEOracle(LAWS, Inclusion(0.3), grid=9, dim=2, cost_per_voxel="a")
    with pytest.raises(InvalidInput, match="rotation R must be a 3 x 3 array of numbers, got 'eye'"):
        CubicElastic(3.0, 1.5, 1.2, "eye")


def test_a_bool_field_cannot_be_a_micro_parameter():
    # centred=0.3 had been accepted (truthy: a centred cube), so the input did nothing below 1
    with pytest.raises(InvalidInput, match="micro_params name 'centred' is a bool field of CubeInclusion"):
        RVEOracle(LAWS, CubeInclusion(3), grid=9, dim=2, micro_params={"centred": (0.0, 1.0)})


def test_float_and_big_endian_grey_images_keep_every_phase(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    ids = np.arange(48).reshape(6, 8) % 3  # three phases, 16 pixels each
    # a float TIFF of grey levels 0.25, 0.5, 0.75 had been truncated to integers: one phase
    Image.fromarray((0.25 * (ids + 1)).astype(np.float32)).save(tmp_path / "f.tif")
    # a big-endian 16-bit TIFF had been squeezed to 8-bit RGB: levels 1000 and 2000 became one phase
    Image.frombytes("I;16B", (8, 6), (1000 * ids).astype(">u2").tobytes()).save(tmp_path / "b.tif")
    for name in ("f.tif", "b.tif"):
        np.testing.assert_array_equal(PhaseMap(tmp_path / name).phase_map(), ids)
    # a NaN pixel had been taken as one more colour
    Image.fromarray(np.array([[0.1, np.nan], [0.2, 0.1]], dtype=np.float32)).save(tmp_path / "nan.tif")
    with pytest.raises(InvalidInput, match="non-finite"):
        PhaseMap(tmp_path / "nan.tif")


@pytest.mark.parametrize("phases", [IsotropicElastic(1.0, 0.3), None, "ab"])
def test_phases_that_are_not_a_list_of_laws_are_named(phases):
    # one law (not in a list) and None had raised TypeError "... is not iterable"; a string had
    # been split into characters ("phase 0 must be a SmallStrainLaw ..., got 'a'")
    for make in (lambda: FFTSolver(Inclusion(0.3).phase_map((9, 9)), phases),
                 lambda: RVEOracle(phases, Inclusion(0.3), grid=9, dim=2)):
        with pytest.raises(InvalidInput, match="phases must be a list of laws, one per phase id"):
            make()


def test_a_scalar_tensor_fraction_gives_the_same_microstructure_as_the_float():
    # a BoTorch candidate entry (0-d tensor) had been stored as given: phase_map then
    # raised TypeError "'<=' not supported between ... 'numpy.ndarray' and 'Tensor'"
    v = torch.tensor(0.3, dtype=DT)
    np.testing.assert_array_equal(Inclusion(v).phase_map((9, 9)), Inclusion(0.3).phase_map((9, 9)))
    assert Inclusion(v) == Inclusion(0.3)
