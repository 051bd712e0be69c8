"""Probes of the single-fidelity surrogates' public API: degenerate data, tiny data sets."""

from __future__ import annotations

import pytest
import torch

from surrogates.dataset import Dataset
from surrogates.neural import HyperelasticEnsemble, SmallStrainEnsemble
from surrogates.neural.ensemble import VARIANCE_FLOOR

DT = torch.float64


def _ratios_by_hand(model, X, Y):
    """r^2 / sigma^2 of every held-out entry, and whether the members disagree there."""
    Yp = model.member_predictions(X).detach()  # M x n x m
    mean, var = Yp.mean(0), Yp.var(0, unbiased=True)
    return (Y - mean).pow(2) / var.clamp_min(1e-300), var > VARIANCE_FLOOR * model.output_scale.pow(2)


def test_calibration_ignores_entries_where_the_members_agree_exactly():
    """F = 1 (every member's P is 0) and, for diagonal F of an isotropic energy, the shear
    stresses (0 by symmetry in every member) have no spread: their predictive variance is the
    floor whatever the factor, so they must not pull the calibrated factor down."""
    g = torch.Generator().manual_seed(0)
    model = HyperelasticEnsemble(dim=2, hidden=(4,), num_members=3, seed=1)
    model.eval()
    X = 0.2 * (2 * torch.rand(4, 4, generator=g, dtype=DT) - 1)
    Y = model.member_predictions(X).mean(0).detach() + 0.01 * torch.randn(4, 4, generator=g, dtype=DT)
    s_plain = model.calibrate(X, Y)
    ratio, spread = _ratios_by_hand(model, X, Y)
    assert spread.all()
    torch.testing.assert_close(s_plain, ratio.mean().expand(4), rtol=1e-12, atol=0)
    # the reference state among the held-out rows: the same factor
    Xi, Yi = torch.cat([X, torch.zeros(1, 4, dtype=DT)]), torch.cat([Y, torch.zeros(1, 4, dtype=DT)])
    torch.testing.assert_close(model.calibrate(Xi, Yi), s_plain, rtol=1e-12, atol=0)
    # diagonal F: the factor of the two normal stresses alone
    Xd = torch.zeros(4, 4, dtype=DT)
    Xd[:, [0, 3]] = X[:, [0, 3]]
    Yd = model.member_predictions(Xd).mean(0).detach()
    Yd[:, [0, 3]] += 0.01 * torch.randn(4, 2, generator=g, dtype=DT)
    ratio, spread = _ratios_by_hand(model, Xd, Yd)
    assert not spread[:, [1, 2]].any() and spread[:, [0, 3]].all()
    torch.testing.assert_close(model.calibrate(Xd, Yd), ratio[:, [0, 3]].mean().expand(4), rtol=1e-12, atol=0)


def test_calibration_on_the_reference_state_alone_keeps_the_factor():
    """Held-out rows all at F = 1 say nothing of the spread's scale: the factor is kept
    (it had become 0, a variance of the floor everywhere)."""
    model = HyperelasticEnsemble(dim=2, hidden=(4,), num_members=3, seed=1)
    model.eval()
    before = model.variance_scale.clone()
    model.calibrate(torch.zeros(2, 4, dtype=DT), torch.zeros(2, 4, dtype=DT))
    torch.testing.assert_close(model.variance_scale, before, rtol=0, atol=0)
    F = torch.eye(2, dtype=DT) * 1.1
    r = model.material_response(F[None])
    assert float(r.variance) > 1e3 * VARIANCE_FLOOR * float(model.output_scale.pow(2).mean())


@pytest.mark.parametrize("cls, d", [(HyperelasticEnsemble, 4), (SmallStrainEnsemble, 3)])
def test_too_few_rows_to_split_name_the_option_to_change(cls, d):
    tiny = dict(hidden=(4,), training=dict(max_iter=1, inner_iter=2))
    one = Dataset(X=0.01 * torch.ones(1, d, dtype=DT), Y=0.01 * torch.ones(1, d, dtype=DT))
    with pytest.raises(ValueError, match=r"val_fraction = 0.15 needs at least 2 fitting rows.*val_fraction=0"):
        cls.from_dataset(one, num_members=1, **tiny)
    with pytest.raises(ValueError, match=r"calibration_fraction = 0.15 needs at least 2 rows.*calibration_fraction=0"):
        cls.from_dataset(one, num_members=2, **tiny)
    two = Dataset(X=0.01 * torch.rand(2, d, dtype=DT), Y=0.01 * torch.rand(2, d, dtype=DT))
    with pytest.raises(ValueError, match=r"val_fraction = 0.15 needs at least 2 fitting rows.*got 1;"):
        cls.from_dataset(two, num_members=2, **tiny)
    # as the messages say: one row fits without the splits
    model = cls.from_dataset(one, num_members=1, val_fraction=0, **tiny)
    assert torch.isfinite(model.posterior(one.X).mean).all()


@pytest.fixture(scope="module")
def constitutive_gp():
    from surrogates.gp import GPSurrogate

    g = torch.Generator().manual_seed(0)
    H = 0.1 * (2 * torch.rand(15, 4, generator=g, dtype=DT) - 1)
    return GPSurrogate.from_dataset(Dataset(H, 2 * H + H**2), n_restarts=1)


def test_gp_refuses_complex_and_non_numeric_material_points_and_observations(constitutive_gp):
    """A complex F, Y or noise had been cut to its real part with only a torch warning, and
    a string gave a bare torch TypeError; each is a one-line InvalidInput naming the argument."""
    from oracles.exceptions import InvalidInput

    gp = constitutive_gp
    F = torch.eye(2, dtype=DT)[None] * 1.01
    P = gp.material_response(F).P
    with pytest.raises(InvalidInput, match=r"F must hold real numbers, got dtype torch.complex128"):
        gp.material_response(F + 0j)
    with pytest.raises(InvalidInput, match=r"X must hold real numbers, got dtype complex128"):
        gp.select_batch((F + 0j).numpy(), tolerance=0.0)
    with pytest.raises(InvalidInput, match=r"X must hold real numbers"):
        gp.condition_on_observations(F + 0j, P)
    with pytest.raises(InvalidInput, match=r"Y must hold real numbers"):
        gp.condition_on_observations(F, P + 0j)
    with pytest.raises(InvalidInput, match=r"noise must hold real numbers"):
        gp.condition_on_observations(F, P, noise=torch.zeros(1, 4, dtype=torch.complex128))
    with pytest.raises(InvalidInput, match=r"F must be an array of real numbers, got str"):
        gp.material_response("abc")
    with pytest.raises(InvalidInput, match=r"Y must be an array of real numbers, got list"):
        gp.condition_on_observations(F, [[1.0, 2.0, 3.0, "x"]])
    # real arrays and lists still go through, as float64
    torch.testing.assert_close(gp.material_response(F.tolist()).P, P, rtol=0, atol=0)


def test_gp_names_the_first_non_finite_query_entry(constitutive_gp):
    from oracles.exceptions import InvalidInput

    X = torch.zeros(3, 4, dtype=DT)
    X[2, 1] = float("inf")
    with pytest.raises(InvalidInput, match=r"X contains nan or inf entries \(shape \(3, 4\)\): the first is X\[2, 1\] = inf"):
        constitutive_gp.posterior(X)
    F = torch.eye(2, dtype=DT).repeat(2, 1, 1)
    F[1, 0, 1] = float("nan")
    with pytest.raises(InvalidInput, match=r"the first is F\[1, 0, 1\] = nan"):
        constitutive_gp.material_response(F)
    with pytest.raises(InvalidInput, match=r"the first is X\[1, 1\] = nan"):
        constitutive_gp.select_batch(F, tolerance=0.0)


def test_icm_refuses_a_non_finite_query_naming_it():
    """One NaN row had made every point of the ICM's joint posterior NaN, silently."""
    from oracles.exceptions import InvalidInput
    from surrogates.gp import ICMGPSurrogate

    g = torch.Generator().manual_seed(0)
    X = torch.rand(8, 2, generator=g, dtype=DT)
    icm = ICMGPSurrogate.from_dataset(Dataset(X, torch.cat([torch.sin(3 * X[:, :1]), X[:, 1:]], 1)), n_restarts=1)
    q = torch.tensor([[0.3, 0.3], [float("nan"), 0.0]], dtype=DT)
    with pytest.raises(InvalidInput, match=r"the first is X\[1, 0\] = nan"):
        icm.posterior(q)
    with pytest.raises(InvalidInput, match=r"the first is X\[0, 0, 1\] = inf"):
        icm.posterior(torch.tensor([[[0.1, float("inf")]]], dtype=DT))
    assert torch.isfinite(icm.posterior(q[:1]).mean).all()


def test_fibre_direction_is_checked_entrywise_and_normalized_without_overflow():
    """An infinite fibre entry had passed (norm inf > 0) and become a NaN direction, so NaN
    energies; (1e200, 1e200, 0) overflowed its norm and (1e-200, 0, 0) underflowed it to 0."""
    from surrogates.neural import InvariantEnergy

    for bad in ((float("inf"), 0.0, 0.0), (float("nan"), 1.0, 0.0), (0.0, 0.0, 0.0)):
        with pytest.raises(ValueError, match=r"fibre direction must be finite and non-zero"):
            InvariantEnergy(dim=3, symmetry="transverse", fibre=bad, hidden=(3,))
    F = torch.eye(3, dtype=DT)[None] + 0.1
    for big, unit in (((1e200, 1e200, 0.0), (1.0, 1.0, 0.0)), ((1e-200, 0.0, 0.0), (1.0, 0.0, 0.0))):
        a, b = (InvariantEnergy(dim=3, symmetry="transverse", fibre=f, hidden=(3,), seed=2) for f in (big, unit))
        torch.testing.assert_close(a(F)[1], b(F)[1], rtol=1e-14, atol=0)
