"""Multi-fidelity models: explicit noise, affine equivariance and persistence.

Checks against closed forms and exact properties: replicated observations
with known variances give the precision-weighted mean and variance; the
posterior variance at training points grows with the given noise; a row or
level with a huge known variance contributes almost nothing; predictions are
equivariant under ``y -> a y + b`` (negative ``a`` included) for every
default; saved models of the earlier format fail with a one-line refit
message.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from surrogates.base import load_surrogate, save_surrogate
from surrogates.dataset import DTYPE, Dataset
from surrogates.multifidelity import NARGP, AR1CoKriging, RecursiveCoKriging

MODELS = (AR1CoKriging, RecursiveCoKriging, NARGP)


def f_low(x):
    return torch.sin(2 * math.pi * x[..., 0]) + 0.5 * torch.cos(3 * x[..., 0])


def f_high(x):
    return 1.5 * f_low(x) + 0.8 * x[..., 0] - 0.3


def _data(n_low=10, n_high=5, seed=0, yvar: float | None = None) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    xl = (torch.arange(n_low, dtype=DTYPE) + torch.rand(n_low, generator=g, dtype=DTYPE)).unsqueeze(-1) / n_low
    xh = xl[torch.randperm(n_low, generator=g)[:n_high]]
    X = torch.cat([xl, xh])
    Y = torch.cat([f_low(xl), f_high(xh)]).reshape(-1, 1)
    fid = torch.tensor([0] * n_low + [1] * n_high)
    Yvar = None if yvar is None else torch.full_like(Y, yvar)
    if yvar:
        Y = Y + math.sqrt(yvar) * torch.randn(Y.shape, generator=g, dtype=DTYPE)
    return Dataset(X=X, Y=Y, Yvar=Yvar, fidelity=fid)


def _refit_with(model, ds: Dataset):
    """The same class and fitted hyperparameters, conditioned on ``ds``."""
    other = type(model)(ds, **{k: v for k, v in model.get_config().items() if k != "format"})
    other.load_state_dict(model.state_dict())
    return other.eval()


# ------------------------------------------------------------ closed forms
@pytest.mark.parametrize("cls", MODELS)
def test_replicates_with_known_variances_give_the_precision_weighted_mean(cls):
    """All level-0 data at one input, with known variances ``v_i``: with a flat
    prior on the trend, the level-0 posterior there is
    ``N(sum(y_i / v_i) / sum(1 / v_i), 1 / sum(1 / v_i))`` whatever the kernel."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.full((6, 1), 0.4, dtype=DTYPE)
    v0 = torch.tensor([0.5, 1.0, 2.0, 0.25, 4.0, 1.5], dtype=DTYPE)
    y0 = 3.0 + v0.sqrt() * torch.randn(6, generator=g, dtype=DTYPE)
    xh = torch.linspace(0, 1, 5, dtype=DTYPE).unsqueeze(-1)
    yh = 2.0 * torch.sin(3 * xh[:, 0])
    ds = Dataset(
        X=torch.cat([x0, xh]), Y=torch.cat([y0, yh]).reshape(-1, 1),
        Yvar=torch.cat([v0, torch.full((5,), 1e-4, dtype=DTYPE)]).reshape(-1, 1),
        fidelity=torch.tensor([0] * 6 + [1] * 5),
    )
    m = cls.from_dataset(ds, noise="known")
    mean, var = m.predict(x0[:1], fidelity=0)
    w = 1 / v0
    torch.testing.assert_close(mean, ((w * y0).sum() / w.sum()).reshape(1), rtol=1e-6, atol=0)
    torch.testing.assert_close(var, (1 / w.sum()).reshape(1), rtol=1e-5, atol=0)


def test_replicates_at_the_top_level_give_the_precision_weighted_mean():
    """AR1 with the top level's data replicated at one input: its own constant
    mean (flat prior) makes the lower level uninformative there, so the
    top-level posterior is the precision-weighted closed form."""
    g = torch.Generator().manual_seed(5)
    xl = torch.linspace(0, 1, 8, dtype=DTYPE).unsqueeze(-1)
    xh = torch.full((5, 1), 0.3, dtype=DTYPE)
    vh = torch.tensor([0.1, 0.4, 0.2, 1.0, 0.05], dtype=DTYPE)
    yh = -1.0 + vh.sqrt() * torch.randn(5, generator=g, dtype=DTYPE)
    ds = Dataset(
        X=torch.cat([xl, xh]), Y=torch.cat([f_low(xl), yh]).reshape(-1, 1),
        Yvar=torch.cat([torch.zeros(8, dtype=DTYPE), vh]).reshape(-1, 1), fidelity=torch.tensor([0] * 8 + [1] * 5),
    )
    m = AR1CoKriging.from_dataset(ds)
    mean, var = m.predict(xh[:1])
    w = 1 / vh
    torch.testing.assert_close(mean, ((w * yh).sum() / w.sum()).reshape(1), rtol=1e-6, atol=0)
    torch.testing.assert_close(var, (1 / w.sum()).reshape(1), rtol=1e-5, atol=0)


@pytest.mark.parametrize("cls", MODELS)
def test_posterior_variance_at_training_points_grows_with_the_given_noise(cls):
    ds = _data(yvar=1e-3)
    m = cls.from_dataset(ds)
    top = ds.fidelity == 1
    variances = []
    for scale in (0.01, 1.0, 100.0):
        other = _refit_with(m, Dataset(X=ds.X, Y=ds.Y, Yvar=scale * ds.Yvar, fidelity=ds.fidelity))
        variances.append(other.predict(ds.X[top])[1])
    assert (variances[0] < variances[1]).all() and (variances[1] < variances[2]).all(), variances


@pytest.mark.parametrize("cls", MODELS)
def test_a_row_with_huge_known_noise_contributes_almost_nothing(cls):
    ds = _data(yvar=1e-4)
    m = cls.from_dataset(ds)
    xt = torch.linspace(0, 1, 30, dtype=DTYPE).unsqueeze(-1)
    ref_m, ref_v = m.predict(xt)
    for t in (0, 1):  # a wild extra row at either level, with a huge variance
        X = torch.cat([ds.X, torch.tensor([[0.55]], dtype=DTYPE)])
        Y = torch.cat([ds.Y, torch.tensor([[1e3]], dtype=DTYPE)])
        Yvar = torch.cat([ds.Yvar, torch.tensor([[1e14]], dtype=DTYPE)])
        fid = torch.cat([ds.fidelity, torch.tensor([t])])
        other = _refit_with(m, Dataset(X=X, Y=Y, Yvar=Yvar, fidelity=fid))
        mean, var = other.predict(xt)
        scale = ds.Y[ds.fidelity == 1].std()
        assert (mean - ref_m).abs().max() < 1e-4 * scale, (t, (mean - ref_m).abs().max())
        torch.testing.assert_close(var, ref_v, rtol=1e-4, atol=1e-10)


def test_a_level_with_huge_known_noise_contributes_almost_nothing():
    """AR1: level 0 with a huge known variance; replacing its values by others
    leaves the top-level prediction unchanged."""
    ds = _data(yvar=1e-4)
    Yvar = torch.where(ds.fidelity.unsqueeze(-1) == 0, torch.full_like(ds.Yvar, 1e12), ds.Yvar)
    m = AR1CoKriging.from_dataset(Dataset(X=ds.X, Y=ds.Y, Yvar=Yvar, fidelity=ds.fidelity))
    g = torch.Generator().manual_seed(9)
    Y2 = torch.where(ds.fidelity.unsqueeze(-1) == 0, 5 * torch.randn(ds.Y.shape, generator=g, dtype=DTYPE), ds.Y)
    other = _refit_with(m, Dataset(X=ds.X, Y=Y2, Yvar=Yvar, fidelity=ds.fidelity))
    xt = torch.linspace(0, 1, 30, dtype=DTYPE).unsqueeze(-1)
    (m1, v1), (m2, v2) = m.predict(xt), other.predict(xt)
    assert (m1 - m2).abs().max() < 1e-3 * ds.Y[ds.fidelity == 1].std()
    torch.testing.assert_close(v1, v2, rtol=1e-4, atol=0)


# ------------------------------------------------------------ noise modes
def test_noise_modes_and_their_errors():
    ds = _data()
    assert AR1CoKriging(ds).noise == "infer"
    dsv = _data(yvar=1e-3)
    assert AR1CoKriging(dsv).noise == "known"
    assert AR1CoKriging(dsv, noise="known+infer").infer_nugget
    with pytest.raises(ValueError, match="noise must be one of"):
        AR1CoKriging(ds, noise="fixed")
    with pytest.raises(ValueError, match="needs Dataset.Yvar"):
        RecursiveCoKriging(ds, noise="known")
    with pytest.raises(ValueError, match="noise='none' says the data are noise-free"):
        NARGP(dsv, noise="none")
    with pytest.raises(ValueError, match="Yvar must be finite"):
        AR1CoKriging(Dataset(X=dsv.X, Y=dsv.Y, Yvar=torch.full_like(dsv.Y, float("nan")), fidelity=dsv.fidelity))


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("noise", ["none", "known"])
def test_noise_free_rows_with_two_values_at_one_input_are_refused(cls, noise):
    """No function interpolates two values at one input: said noise-free, such rows are an
    error naming them (before, every model put a value between them with a standard
    deviation 1e4 times smaller than their gap); with noise inferred they are data."""
    from surrogates.multifidelity.model import NoiseFreeConflict

    ds = _data(yvar=0.0 if noise == "known" else None)
    top = (ds.fidelity == 1).nonzero().flatten()
    X = torch.cat([ds.X, ds.X[top[:1]]])
    Y = torch.cat([ds.Y, ds.Y[top[:1]] + 0.5])
    fid = torch.cat([ds.fidelity, torch.ones(1, dtype=torch.long)])
    Yvar = None if ds.Yvar is None else torch.zeros_like(Y)
    bad = Dataset(X=X, Y=Y, Yvar=Yvar, fidelity=fid)
    with pytest.raises(NoiseFreeConflict, match=rf"rows {int(top[0])} and {len(Y) - 1} are noise-free .* level 1"):
        cls(bad, noise=noise)
    cls(bad, noise="infer")  # a nugget explains them
    # the same value twice, or twice to a solver's round-off (1e-6 of the spread, below the
    # models' noise floor), is one noise-free observation, not a conflict
    for gap in (0.0, 1e-6 * float(ds.Y.std())):
        cls(Dataset(X=X, Y=torch.cat([ds.Y, ds.Y[top[:1]] + gap]), Yvar=Yvar, fidelity=fid), noise=noise)
    # and a positive known variance on one of them lets them differ
    if noise == "known":
        cls(Dataset(X=X, Y=Y, Yvar=torch.cat([Yvar[:-1], torch.full((1, 1), 0.1, dtype=DTYPE)]), fidelity=fid),
            noise="known")
    # an input 1e-9 of the box away is the same input to the models (their correlation differs
    # from 1 by less than the noise floor at any allowed lengthscale); 1e-3 away it is another
    span = ds.X.amax(0) - ds.X.amin(0)
    near = torch.cat([ds.X, ds.X[top[:1]] + 1e-9 * span])
    with pytest.raises(NoiseFreeConflict, match=rf"rows {int(top[0])} and {len(Y) - 1} .* level 1 at inputs "
                                                r"[0-9.]+e-09 apart in the unit box"):
        cls(Dataset(X=near, Y=Y, Yvar=Yvar, fidelity=fid), noise=noise)
    far = torch.cat([ds.X, (ds.X[top[:1]] + 1e-3 * span).clamp(max=ds.X.amax(0))])
    cls(Dataset(X=far, Y=Y, Yvar=Yvar, fidelity=fid), noise=noise)


@pytest.mark.parametrize("cls", MODELS)
def test_zero_known_noise_interpolates(cls):
    ds = _data(yvar=0.0)
    m = cls.from_dataset(ds)
    top = ds.fidelity == 1
    mean, var = m.predict(ds.X[top])
    spread = ds.Y[top].var()
    assert (mean - ds.Y[top, 0]).abs().max() < 1e-3 * spread.sqrt()
    assert var.max() < 1e-4 * spread


# ------------------------------------------------------------ equivariance
@pytest.mark.parametrize(
    "cls", [AR1CoKriging, RecursiveCoKriging, pytest.param(NARGP, marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("yvar", [None, 1e-3])
def test_predictions_are_affine_equivariant(cls, yvar):
    ds = _data(n_low=9, n_high=5, yvar=yvar)
    xt = torch.cat([torch.linspace(0, 1, 7, dtype=DTYPE).unsqueeze(-1), torch.zeros(7, 1, dtype=DTYPE)], -1)
    xt = torch.cat([xt, xt + torch.tensor([0.0, 1.0], dtype=DTYPE)])  # both levels, joint posterior
    m_ref = cls.from_dataset(ds)
    ref = m_ref.posterior(xt)
    var_y = ds.Y[ds.fidelity == 1].var()
    # differences relative to the output's spread (variances of interpolated
    # points are near zero, so elementwise relative errors mean nothing there)
    # units from m² to GPa: the standardized targets the fit sees are rounded to 32
    # significant bits, so round-off cannot move the fit along a flat optimum
    for a, b in ((-3.7, 1e4), (2.5e3, -7.0), (1e-9, 3e-9), (-1e-12, 0.0), (1e8, -1e9)):
        ds2 = Dataset(X=ds.X, Y=a * ds.Y + b, Yvar=None if yvar is None else a * a * ds.Yvar, fidelity=ds.fidelity)
        m2 = cls.from_dataset(ds2)
        if cls is not NARGP:  # the same fit, not one nearby
            assert torch.equal(m2.theta, m_ref.theta)
        post = m2.posterior(xt)
        torch.testing.assert_close(post.mean, a * ref.mean + b, rtol=0, atol=1e-6 * abs(a) * var_y.sqrt())
        cov, cov_ref = post.distribution.covariance_matrix, ref.distribution.covariance_matrix
        torch.testing.assert_close(cov, a * a * cov_ref, rtol=0, atol=1e-6 * a * a * var_y)


def test_ar1_fit_is_the_same_in_any_units_when_the_levels_spreads_differ():
    """AR1's box on ``rho`` is widened by the ratio of the levels' spreads; that
    ratio of ``a y + b`` differs from that of ``y`` in the last bits, and L-BFGS-B's
    steps depend on the bounds: a bound 3e-13 away had ended the fit of
    ``1e-3 y + 5`` at another local optimum (top-level variances 3x apart).
    Forrester-like levels, 12 and 6 nested noise-free points."""
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(12, 1, generator=g, dtype=DTYPE)
    x1 = x0[torch.randperm(12, generator=g)[:6]]

    def hi(x):
        return (6 * x - 2) ** 2 * torch.sin(12 * x - 4) + 0.3 * torch.cos(5 * x)

    y = torch.cat([0.5 * hi(x0) + 10 * (x0 - 0.5) - 5, hi(x1)])
    ds = Dataset(X=torch.cat([x0, x1]), Y=y, fidelity=torch.tensor([0] * 12 + [1] * 6))
    ref = AR1CoKriging.from_dataset(ds, noise="none")
    xt = torch.tensor([[0.1, 1.0], [0.5, 1.0], [0.93, 1.0], [0.3, 0.0]], dtype=DTYPE)
    post = ref.posterior(xt)
    for a, b in ((1e-3, 5.0), (250.0, -1e4), (-3.7, 12.0)):
        m = AR1CoKriging.from_dataset(Dataset(X=ds.X, Y=a * ds.Y + b, fidelity=ds.fidelity), noise="none")
        assert torch.equal(m.theta, ref.theta)
        torch.testing.assert_close(m.posterior(xt).variance, a * a * post.variance, rtol=1e-6, atol=0)


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging])
def test_variances_of_outputs_in_small_units_are_not_floored(cls):
    """Outputs in small units (a permeability in m², a compliance in 1/Pa): the
    marginal variances ``predict`` and ``posterior(...).variance`` report scale
    with ``a**2``; GPyTorch's absolute floor (1e-10 in float64) would replace
    every one of them at ``a = 1e-9``."""
    ds = _data(n_low=9, n_high=5, yvar=None)
    xt = torch.linspace(0, 1, 9, dtype=DTYPE).unsqueeze(-1)
    mean, var = cls.from_dataset(ds).predict(xt)
    var_y = ds.Y[ds.fidelity == 1].var()
    for a in (1e-9, -1e-12):
        m2 = cls.from_dataset(Dataset(X=ds.X, Y=a * ds.Y, fidelity=ds.fidelity))
        mean2, var2 = m2.predict(xt)
        torch.testing.assert_close(mean2 / a, mean, rtol=0, atol=1e-5 * var_y.sqrt())
        torch.testing.assert_close(var2 / a**2, var, rtol=0, atol=1e-5 * var_y)
        post = m2.posterior(torch.cat([xt, torch.ones_like(xt)], -1))
        torch.testing.assert_close(post.variance.reshape(-1) / a**2, var, rtol=0, atol=1e-5 * var_y)


# ------------------------------------------------------------ persistence
@pytest.mark.parametrize("cls", MODELS)
def test_save_and_load_round_trip(cls, tmp_path):
    ds = _data(yvar=1e-3)
    m = cls.from_dataset(ds)
    save_surrogate(m, tmp_path / "m")
    m2 = load_surrogate(tmp_path / "m")
    xt = torch.rand(6, 1, dtype=DTYPE)
    torch.testing.assert_close(m2.predict(xt), m.predict(xt), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", MODELS)
def test_a_model_saved_in_the_earlier_format_fails_with_a_refit_message(cls, tmp_path):
    """The earlier layout (no ``format`` in config.json, other parameters in
    state.pt) is refused with one line that says how to refit."""
    ds = _data()
    m = cls.from_dataset(ds)
    path = save_surrogate(m, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    old = {k: v for k, v in cfg["config"].items() if k not in ("format", "noise")}
    old["warp"] = "auto"
    cfg["config"] = old
    (path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=f"refit it with {cls.__name__}.from_dataset") as err:
        load_surrogate(path)
    assert "\n" not in str(err.value)
    # a config of this format with a state of another layout fails the same way
    cfg["config"] = m.get_config()
    (path / "config.json").write_text(json.dumps(cfg))
    torch.save({"gp.covar_module.raw_rho": torch.zeros(1, dtype=DTYPE)}, path / "state.pt")
    with pytest.raises(ValueError, match="refit it with"):
        load_surrogate(path)


def test_a_recursive_model_saved_before_the_trend_option_loads_with_constant_trends(tmp_path):
    """A format-2 save without ``trend`` in its config and ``trend_linear`` in
    its state (written before the option existed) is the constant-trend model
    it was fitted as: it loads and predicts as that model."""
    ds = _data(n_low=12, n_high=6, yvar=1e-3)
    m = RecursiveCoKriging.from_dataset(ds, trend="constant")
    path = save_surrogate(m, tmp_path / "m")
    cfg = json.loads((path / "config.json").read_text())
    cfg["config"].pop("trend")
    (path / "config.json").write_text(json.dumps(cfg))
    state = torch.load(path / "state.pt")
    state.pop("trend_linear")
    state.pop("trend_inputs")
    torch.save(state, path / "state.pt")
    m2 = load_surrogate(path)
    assert m2.trend == "constant" and not m2.trend_linear.any()
    xt = torch.rand(6, 1, dtype=DTYPE)
    torch.testing.assert_close(m2.predict(xt), m.predict(xt), rtol=1e-10, atol=1e-12)


def test_a_recursive_model_saved_before_the_constant_input_check_loads_with_every_input(tmp_path):
    """A save without ``trend_inputs`` (written before inputs held at one value were left out of
    the linear trend) had every input in its trends: it loads as that model and predicts as
    it did."""
    ds = _data(n_low=12, n_high=6, yvar=1e-3)
    m = RecursiveCoKriging.from_dataset(ds, trend="linear", rho="linear")
    path = save_surrogate(m, tmp_path / "m")
    state = torch.load(path / "state.pt")
    state.pop("trend_inputs")
    torch.save(state, path / "state.pt")
    m2 = load_surrogate(path)
    assert m2.trend_inputs.all() and m2.trend_linear.all()
    xt = torch.rand(6, 1, dtype=DTYPE)
    torch.testing.assert_close(m2.predict(xt), m.predict(xt), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [RecursiveCoKriging, NARGP])
def test_a_model_saved_before_the_trend_basis_check_loads_with_every_column(tmp_path, cls):
    """A save without ``basis_keep`` (written before trend columns that repeat the others were
    dropped) used every column: it loads as that model and predicts as it did."""
    ds = _data(n_low=12, n_high=6, yvar=1e-3)
    m = cls.from_dataset(ds)
    assert m.basis_keep.all()
    path = save_surrogate(m, tmp_path / "m")
    state = torch.load(path / "state.pt")
    state.pop("basis_keep")
    torch.save(state, path / "state.pt")
    m2 = load_surrogate(path)
    assert m2.basis_keep.all()
    xt = torch.rand(6, 1, dtype=DTYPE)
    torch.testing.assert_close(m2.predict(xt), m.predict(xt), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging])
def test_outputs_with_an_offset_of_3e8_spreads_are_not_constant(cls):
    """A supercell's total energy, -3.5e5 eV varying by meV: the spread is 3e-9 of the magnitude,
    far above float64's round-off, and had been taken for a constant (variances 1e5 spreads).
    Predictions follow y -> a y + b up to the round-off of subtracting the offset (3e8 ulps)."""
    ds = _data(n_low=9, n_high=5)
    xt = torch.cat([torch.linspace(0, 1, 7, dtype=DTYPE).unsqueeze(-1), torch.ones(7, 1, dtype=DTYPE)], -1)
    a, b = 1e-3, -3.5e5
    ref = cls.from_dataset(ds).posterior(xt)
    post = cls.from_dataset(Dataset(X=ds.X, Y=a * ds.Y + b, Yvar=ds.Yvar, fidelity=ds.fidelity)).posterior(xt)
    sd = float(ds.Y[ds.fidelity == 1].std())
    torch.testing.assert_close((post.mean - b) / a, ref.mean, rtol=0, atol=1e-3 * sd)
    torch.testing.assert_close(post.variance / a**2, ref.variance, rtol=0, atol=1e-3 * sd**2)


def test_replicates_share_the_variance_carried_from_the_level_below():
    """Recursive co-kriging, non-nested design (the level-0 variance at the top level's inputs is
    carried into its rows): replicates (y_i, v_i) at one input are one row of the precision-weighted
    mean and variance, as for any Gaussian model. The carried variance had been added to each
    replicate independently and averaged down (mean 0.1 sd, variance 15 % apart); the fits here
    share their hyperparameters, so the two posteriors must agree to round-off."""
    g = torch.Generator().manual_seed(4)
    xl = torch.linspace(0.02, 0.98, 7, dtype=DTYPE).unsqueeze(-1)
    xh = torch.tensor([[0.13], [0.41], [0.66], [0.9]], dtype=DTYPE)
    v = torch.tensor([0.02, 0.05, 0.01], dtype=DTYPE)
    rep = xh[1:2].expand(3, 1)
    y_rep = f_high(rep) + v.sqrt() * torch.randn(3, generator=g, dtype=DTYPE)
    others = torch.cat([xh[:1], xh[2:]])
    X = torch.cat([xl, others, rep])
    Y = torch.cat([f_low(xl), f_high(others), y_rep]).reshape(-1, 1)
    Yvar = torch.cat([torch.full((7,), 1e-4, dtype=DTYPE), torch.full((3,), 1e-3, dtype=DTYPE), v]).reshape(-1, 1)
    fid = torch.tensor([0] * 7 + [1] * 6)
    m = RecursiveCoKriging.from_dataset(Dataset(X=X, Y=Y, Yvar=Yvar, fidelity=fid))
    assert float(m.carry_coef[1].abs().max()) > 0  # the carried variance is in play
    w = 1 / v
    fused = Dataset(X=torch.cat([xl, others, rep[:1]]),
                    Y=torch.cat([Y[:10, 0], ((w * y_rep).sum() / w.sum()).reshape(1)]).reshape(-1, 1),
                    Yvar=torch.cat([Yvar[:10, 0], (1 / w.sum()).reshape(1)]).reshape(-1, 1),
                    fidelity=torch.tensor([0] * 7 + [1] * 4))
    other = _refit_with(m, fused)
    xt = torch.linspace(0, 1, 25, dtype=DTYPE).unsqueeze(-1)
    (m1, v1), (m2, v2) = m.predict(xt), other.predict(xt)
    torch.testing.assert_close(m2, m1, rtol=0, atol=1e-8 * float(v1.max().sqrt()))
    torch.testing.assert_close(v2, v1, rtol=1e-8, atol=0)


def test_a_trend_column_constant_in_standardized_units_is_dropped():
    """A column whose residual is 1e-12 of a unit column is unidentifiable, however small its own
    norm (a level below with a posterior mean of -4e-11 everywhere had kept its column and a GLS
    coefficient of -4e12); relative to its own norm alone it looked independent."""
    from surrogates.multifidelity.core import independent_columns

    g = torch.Generator().manual_seed(0)
    one = torch.ones(6, dtype=DTYPE)
    f = -4.15e-11 + 1e-12 * torch.randn(6, generator=g, dtype=DTYPE)
    F = torch.stack([one, f], -1)
    assert independent_columns(F).tolist() == [True, True]
    assert independent_columns(F, floor=math.sqrt(6)).tolist() == [True, False]
    # a column of unit size that varies is kept either way
    F2 = torch.stack([one, torch.linspace(-1, 1, 6, dtype=DTYPE)], -1)
    assert independent_columns(F2, floor=math.sqrt(6)).tolist() == [True, True]
