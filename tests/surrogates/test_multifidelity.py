"""Tests of the multi-fidelity co-kriging surrogates: structure and contract.

Statistics checks against known truths: the AR1 scale factor and bias of a
synthetic pair built with them, NARGP versus AR1 on the nonlinear pair of
Perdikaris et al. (2017), recursive close to joint AR1 on nested designs,
interval coverage on a smooth pair, the shared GP core against GPyTorch, plus
the shared surrogate contract. Noise, equivariance and persistence:
``test_multifidelity_noise.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from botorch.models.cost import AffineFidelityCostModel
from botorch.sampling import SobolQMCNormalSampler
from scipy.stats import qmc

from surrogates.dataset import DTYPE, Dataset
from surrogates.metrics import coverage, nrmse
from surrogates.multifidelity import NARGP, AR1CoKriging, RecursiveCoKriging
from surrogates.testing import SurrogateContractTests

MODELS = (AR1CoKriging, RecursiveCoKriging, NARGP)


def _lhs(n: int, d: int, seed: int) -> torch.Tensor:
    return torch.as_tensor(qmc.LatinHypercube(d=d, seed=seed).random(n), dtype=DTYPE)


def _nested(fs, ns, d, seed):
    """Nested design: level t uses the first ns[t] points of level t-1."""
    x = _lhs(ns[0], d, seed)
    perm = torch.randperm(ns[0], generator=torch.Generator().manual_seed(seed))
    Xs, Ys, Fs = [], [], []
    for t, (f, n) in enumerate(zip(fs, ns, strict=True)):
        xt = x if t == 0 else x[perm[:n]]
        Xs.append(xt)
        Ys.append(f(xt).reshape(-1, 1))
        Fs.append(torch.full((n,), t))
    return Dataset(X=torch.cat(Xs), Y=torch.cat(Ys), fidelity=torch.cat(Fs))


def _with_level(x: torch.Tensor, level: int) -> torch.Tensor:
    return torch.cat([x, torch.full_like(x[..., :1], float(level))], -1)


# smooth pair with a known AR1 structure: f_H = 1.5 f_L + delta, delta linear
RHO = 1.5


def f_low_smooth(x):
    return torch.sin(2 * math.pi * x[..., 0]) + 0.5 * torch.cos(3 * x[..., 0])


def delta_true(x):
    return 0.8 * x[..., 0] - 0.3


def f_high_smooth(x):
    return RHO * f_low_smooth(x) + delta_true(x)


# ------------------------------------------------------------ contract
class _MFContract(SurrogateContractTests):
    cls = None

    def make_dataset(self):
        return _nested([f_low_smooth, f_high_smooth], [12, 5], 1, seed=0)

    def fit(self, dataset):
        return self.cls.from_dataset(dataset)

    def sample_inputs(self, model, dataset, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        x = torch.rand(n, dataset.d, generator=g, dtype=DTYPE)
        lev = torch.randint(0, 2, (n, 1), generator=g).to(DTYPE)
        return torch.cat([x, lev], -1)


class TestAR1Contract(_MFContract):
    cls = AR1CoKriging


class TestRecursiveContract(_MFContract):
    cls = RecursiveCoKriging


class TestNARGPContract(_MFContract):
    cls = NARGP


# ------------------------------------------------------------ physics
@pytest.fixture(scope="module")
def smooth_ds():
    return _nested([f_low_smooth, f_high_smooth], [20, 8], 1, seed=3)


@pytest.fixture(scope="module")
def ar1_smooth(smooth_ds):
    return AR1CoKriging.from_dataset(smooth_ds, restarts=1)


def test_ar1_recovers_rho_and_bias(ar1_smooth):
    rho = ar1_smooth.rho.item()
    assert abs(rho - RHO) / RHO < 0.1, rho
    # bias function: mean_H - rho * mean_L against the true delta on a grid
    x = torch.linspace(0.05, 0.95, 50, dtype=DTYPE).unsqueeze(-1)
    m_h, _ = ar1_smooth.predict(x, fidelity=1)
    m_l, _ = ar1_smooth.predict(x, fidelity=0)
    bias = m_h - rho * m_l
    err = (bias - delta_true(x)).abs().max().item()
    spread = (delta_true(x).max() - delta_true(x).min()).item()
    assert err < 0.1 * spread, err


@pytest.mark.parametrize("n_low", [1, 2])
def test_ar1_fits_with_one_or_two_level_0_points(n_low):
    """AR1 is one joint GP: it needs no minimum of points per level. With one or two level-0
    points (too few for the recursive model that gives AR1 its starting point) it starts from
    its own default and interpolates its noise-free top-level data; one level-0 point had
    raised TooFewLevelPoints, naming AR1CoKriging as the remedy."""
    x_low = torch.linspace(0.1, 0.9, n_low, dtype=DTYPE).unsqueeze(-1)
    x_high = torch.tensor([[0.0], [0.3], [0.6], [1.0]], dtype=DTYPE)
    X = torch.cat([x_low, x_high])
    Y = torch.cat([f_low_smooth(x_low), f_high_smooth(x_high)]).reshape(-1, 1)
    ds = Dataset(X=X, Y=Y, Yvar=torch.zeros_like(Y), fidelity=torch.tensor([0] * n_low + [1] * 4))
    m = AR1CoKriging.from_dataset(ds, restarts=1)
    mean, var = m.predict(x_high)
    spread = float(Y[n_low:].var())
    torch.testing.assert_close(mean, f_high_smooth(x_high).reshape(-1), rtol=0, atol=1e-3 * spread**0.5)
    assert float(var.max()) < 1e-4 * spread


def test_recursive_recovers_rho(smooth_ds):
    m = RecursiveCoKriging.from_dataset(smooth_ds, restarts=1)
    assert abs(m.rho[0].item() - RHO) / RHO < 0.1, m.rho


def test_recursive_close_to_ar1_on_nested(ar1_smooth, smooth_ds):
    rec = RecursiveCoKriging.from_dataset(smooth_ds, restarts=1)
    x = torch.linspace(0, 1, 101, dtype=DTYPE).unsqueeze(-1)
    y = f_high_smooth(x)
    m_a, v_a = ar1_smooth.predict(x)
    m_r, v_r = rec.predict(x)
    scale = y.std().item()
    assert (m_a - m_r).abs().max().item() < 0.05 * scale
    # both accurate, and uncertainties of the same order
    assert nrmse(y, m_a).item() < 0.05 and nrmse(y, m_r).item() < 0.05
    assert v_a.sqrt().mean() / v_r.sqrt().mean() < 10 and v_r.sqrt().mean() / v_a.sqrt().mean() < 10


@pytest.mark.slow
def test_nargp_beats_ar1_on_nonlinear_pair():
    def f_l(x):
        return torch.sin(8 * math.pi * x[..., 0])

    def f_h(x):
        return (x[..., 0] - math.sqrt(2)) * f_l(x) ** 2

    ds = _nested([f_l, f_h], [50, 14], 1, seed=1)
    x = torch.linspace(0, 1, 200, dtype=DTYPE).unsqueeze(-1)
    y = f_h(x)
    nargp = NARGP.from_dataset(ds, restarts=1)
    ar1 = AR1CoKriging.from_dataset(ds, restarts=1)
    e_nargp = nrmse(y, nargp.predict(x)[0]).item()
    e_ar1 = nrmse(y, ar1.predict(x)[0]).item()
    assert e_nargp < 0.5 * e_ar1, (e_nargp, e_ar1)
    assert e_nargp < 0.15, e_nargp


@pytest.mark.slow
def test_coverage_smooth_two_fidelity():
    # 2-d smooth pair (Currin-like in spirit); held-out 95% coverage sane
    def f_l(x):
        return torch.sin(3 * x[..., 0]) * torch.cos(2 * x[..., 1]) + x[..., 1]

    def f_h(x):
        return 1.3 * f_l(x) + 0.4 * x[..., 0] * x[..., 1] - 0.2

    ds = _nested([f_l, f_h], [40, 12], 2, seed=2)
    xt = _lhs(400, 2, seed=99)
    y = f_h(xt)
    for cls in (AR1CoKriging, RecursiveCoKriging):
        m = cls.from_dataset(ds, restarts=1)
        mean, var = m.predict(xt)
        cov = coverage(y, mean, var).item()
        assert 0.8 <= cov <= 1.0, (cls.__name__, cov)
        assert nrmse(y, mean).item() < 0.1


# ------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def small_models():
    ds = _nested([f_low_smooth, f_high_smooth], [10, 4], 1, seed=5)
    return {cls.__name__: cls.from_dataset(ds) for cls in MODELS}


@pytest.mark.parametrize("name", [c.__name__ for c in MODELS])
def test_posterior_shapes_and_levels(small_models, name):
    m = small_models[name]
    x = torch.rand(2, 3, 1, generator=torch.Generator().manual_seed(0), dtype=DTYPE)
    lev = torch.tensor([[0.0, 1.0, 1.0], [1.0, 0.0, 0.0]], dtype=DTYPE).unsqueeze(-1)
    X = torch.cat([x, lev], -1)
    with torch.no_grad():
        post = m.posterior(X)
        assert post.mean.shape == (2, 3, 1) and post.variance.shape == (2, 3, 1)
        assert post.rsample(torch.Size([5])).shape == (5, 2, 3, 1)
        # mixed-level batches give the same marginals as one point at a time
        single = m.posterior(X.reshape(6, 1, 2))
    torch.testing.assert_close(post.mean.reshape(-1), single.mean.reshape(-1), atol=1e-8, rtol=1e-8)
    torch.testing.assert_close(post.variance.reshape(-1), single.variance.reshape(-1), atol=1e-8, rtol=1e-6)
    # the fidelity column selects the level: at training inputs the level-0
    # mean interpolates the low-fidelity data, the level-1 mean the high
    ds = m.train_dataset
    for t in (0, 1):
        pts = ds.X[ds.fidelity == t]
        mean, _ = m.predict(pts, fidelity=t)
        truth = ds.Y[ds.fidelity == t, 0]
        assert (mean - truth).abs().max() < 0.05 * ds.Y.std(), (t, mean, truth)


@pytest.mark.parametrize("name", [c.__name__ for c in MODELS])
def test_bad_inputs_raise(small_models, name):
    m = small_models[name]
    with pytest.raises(ValueError, match="fidelity column .* got 2"):
        m.posterior(torch.tensor([[0.5, 2.0]], dtype=DTYPE))
    with pytest.raises(ValueError, match="got 0.5"):
        m.posterior(torch.tensor([[0.5, 0.5]], dtype=DTYPE))
    with pytest.raises(ValueError, match="got -1"):
        m.posterior(torch.tensor([[0.5, -1.0]], dtype=DTYPE))
    with pytest.raises(ValueError, match=r"\.\.\. x q x 2"):
        m.posterior(torch.tensor([[0.5]], dtype=DTYPE))
    # predict takes n x d design inputs and a level; errors name what the user passed
    with pytest.raises(ValueError, match=r"n x d inputs with d = 1, got shape \(3, 2\)"):
        m.predict(torch.rand(3, 2, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"n x d inputs with d = 1, got shape \(3,\)"):
        m.predict(torch.rand(3, dtype=DTYPE))
    for bad in (2, -1, 0.5, True, "1"):
        with pytest.raises(ValueError, match=rf"fidelity must be an integer level in \[0, 1\], got {bad!r}"):
            m.predict(torch.rand(3, 1, dtype=DTYPE), fidelity=bad)
    # numpy and torch integers are levels too
    a = m.predict(torch.rand(3, 1, dtype=DTYPE, generator=torch.Generator().manual_seed(0)), fidelity=0)[0]
    for level in (np.int64(0), torch.tensor(0)):
        b = m.predict(torch.rand(3, 1, dtype=DTYPE, generator=torch.Generator().manual_seed(0)), fidelity=level)[0]
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_bad_datasets_raise():
    X = torch.rand(6, 1, dtype=DTYPE)
    Y = X.sin()
    with pytest.raises(ValueError, match="needs Dataset.fidelity"):
        AR1CoKriging(Dataset(X=X, Y=Y))
    with pytest.raises(ValueError, match="got an empty Dataset"):
        AR1CoKriging.from_dataset(Dataset(X=X[:0], Y=Y[:0], fidelity=torch.zeros(0)))
    with pytest.raises(ValueError, match="levels \\[1\\] have none"):
        AR1CoKriging(Dataset(X=X, Y=Y, fidelity=torch.tensor([0, 0, 2, 2, 2, 0])))
    with pytest.raises(ValueError, match="at least 2 levels"):
        RecursiveCoKriging(Dataset(X=X, Y=Y, fidelity=torch.zeros(6)))
    # a fractional level is refused by value, not truncated to an integer
    with pytest.raises(ValueError, match="Dataset.fidelity must hold integer levels .* got 0.5"):
        Dataset(X=X, Y=Y, fidelity=[0, 0, 0, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="Dataset.fidelity must hold integer levels .* got nan"):
        Dataset(X=X, Y=Y, fidelity=[0, 0, 0, 1, 1, float("nan")])
    # integer-valued floats are levels
    assert Dataset(X=X, Y=Y, fidelity=[0.0, 0.0, 0.0, 1.0, 1.0, 1.0]).fidelity.tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="m = 2"):
        NARGP(Dataset(X=X, Y=torch.cat([Y, Y], -1), fidelity=torch.tensor([0, 0, 0, 1, 1, 1])))
    with pytest.raises(ValueError, match="rho must be"):
        RecursiveCoKriging(Dataset(X=X, Y=Y, fidelity=torch.tensor([0, 0, 0, 1, 1, 1])), rho="quadratic")
    # levels beyond an integer's range, and complex ones, are refused (before: 1e20 wrapped to -2**63)
    with pytest.raises(ValueError, match="Dataset.fidelity must hold integer levels .* got 1.*e\\+20"):
        Dataset(X=X, Y=Y, fidelity=[0, 0, 0, 1, 1, 1e20])
    with pytest.raises(ValueError, match="Dataset.fidelity must hold integer levels .* got dtype torch.complex64"):
        Dataset(X=X, Y=Y, fidelity=torch.tensor([0, 0, 0, 1, 1, 1], dtype=torch.complex64))
    # a row marked unobserved is not data: refused, not fitted as if its placeholder were measured
    fid = torch.tensor([0, 0, 0, 1, 1, 1])
    for cls in MODELS:
        with pytest.raises(ValueError, match=r"needs every row observed, got Dataset.observed False at rows \[4\]"):
            cls(Dataset(X=X, Y=Y, fidelity=fid, observed=torch.tensor([1, 1, 1, 1, 0, 1], dtype=torch.bool)))


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging, NARGP])
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [("reml", "no", r"reml must be True or False, got 'no'"),  # bool("no") is True
     ("restarts", "many", r"restarts must be an integer >= 1, got 'many'"),
     ("restarts", 0, r"restarts must be an integer >= 1, got 0"),
     ("seed", None, r"seed must be an integer, got None"),
     ("bounds", [[1.0], [0.0]], r"bounds must be finite with lower < upper in every input, got \[\[1.0\], \[0.0\]\]"),
     ("bounds", [[0.0], [0.0]], r"lower < upper .* got \[\[0.0\], \[0.0\]\]"),
     ("bounds", "0,1", r"bounds must be 2 x 1 numbers .* got '0,1'"),
     # finite ends whose width is not: scaled inputs of NaN (before: RuntimeError "the likelihood
     # could not be evaluated at any starting point" from the fitter)
     ("bounds", [[-1e308], [1e308]], r"input 0 spans \[-1e\+308, 1e\+308\] \(bounds\), a width beyond double"),
     ("num_fidelities", 2.7, r"num_fidelities must be an integer >= 2, got 2.7"),
     ("num_fidelities", 1, r"num_fidelities must be an integer >= 2, got 1"),
     ("costs", "12", r"costs must be 2 positive finite numbers .* got '12'"),
     ("costs", 3.0, r"costs must be 2 positive finite numbers .* got 3.0"),
     ("costs", [1.0, None], r"costs must be 2 positive finite numbers .* got \[1.0, None\]"),
     ("costs", [1.0, float("inf")], r"costs must be 2 positive finite numbers .* got \[1.0, inf\]")],
)
def test_a_setting_of_the_wrong_type_or_value_is_refused_by_name(cls, option, value, message):
    """Settings are checked where they are given, each error naming the setting and the bad
    value (before: ``reml="no"`` meant True, inverted bounds rescaled the inputs silently, and
    ``restarts="many"`` failed inside ``int()``)."""
    X = torch.rand(6, 1, dtype=DTYPE)
    ds = Dataset(X=X, Y=X.sin(), fidelity=torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match=message):
        cls(ds, **{option: value})


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging, NARGP])
def test_inputs_without_a_finite_box_are_refused_by_name(cls):
    """Data whose range in an input is wider than a float64 (``-1e308`` to ``1e308``) and data
    with no inputs (``d = 0``) are refused where the model is built, naming the input and its
    range or the shape. Before: the first reached the fitter as NaN scaled inputs ("the
    likelihood could not be evaluated at any starting point"), the second a bare "math domain
    error" from the lengthscale prior's ``log(d)``."""
    Y = torch.tensor([1.0, 2.0, 3.0, 4.0, 1.1, 2.1, 3.3], dtype=DTYPE)
    fid = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    X = torch.tensor([[-1e308], [1e308], [0.0], [0.5], [-1e308], [1e308], [3.0]], dtype=DTYPE)
    with pytest.raises(ValueError, match=r"input 0 spans \[-1e\+308, 1e\+308\] \(the data\), a width beyond double"):
        cls(Dataset(X=X, Y=Y, fidelity=fid))
    with pytest.raises(ValueError, match=r"needs at least one input .* got X of shape \(7, 0\)"):
        cls(Dataset(X=torch.zeros(7, 0, dtype=DTYPE), Y=Y, fidelity=fid))


# ------------------------------------------------------------ three levels
@pytest.mark.slow
def test_three_levels():
    def f0(x):
        return torch.sin(2 * math.pi * x[..., 0]) + x[..., 1]

    def f1(x):
        return 1.2 * f0(x) + 0.3 * x[..., 0]

    def f2(x):
        return 0.8 * f1(x) + 0.2 * torch.cos(2 * x[..., 1])

    ds = _nested([f0, f1, f2], [40, 16, 6], 2, seed=4)
    xt = _lhs(200, 2, seed=7)
    y2 = f2(xt)
    for cls in MODELS:
        m = cls.from_dataset(ds)
        assert m.num_fidelities == 3
        mean, var = m.predict(xt, fidelity=2)
        assert (var > 0).all()
        # 6 top-level points alone cannot resolve sin(2 pi x): the lower levels
        # must be used. The linear models fit this linear chain well; NARGP
        # (more hyperparameters per level) is looser here.
        bar = 0.5 if cls is NARGP else 0.2
        assert nrmse(y2, mean).item() < bar, cls.__name__
        post = m.posterior(_with_level(xt[:4], 2).reshape(2, 2, 3))
        assert post.mean.shape == (2, 2, 1)
        if cls is AR1CoKriging:
            assert m.rho.shape == (2,)
            # f2 = 0.8 f1 + ...: the top-level rho is known
            assert abs(m.rho[1].item() - 0.8) < 0.15, m.rho


# ------------------------------------------------------------ cost
def test_cost_models(small_models):
    from botorch.acquisition.cost_aware import InverseCostWeightedUtility

    m = small_models["AR1CoKriging"]
    X = torch.tensor([[[0.2, 0.0]], [[0.7, 1.0]]], dtype=DTYPE)  # 2 x 1 x 2
    cm = m.cost_model()  # default costs 1, 2: affine in the level
    assert isinstance(cm, AffineFidelityCostModel)
    torch.testing.assert_close(cm(X).reshape(-1), torch.tensor([1.0, 2.0], dtype=DTYPE))
    cm2 = m.cost_model([1.0, 25.0])
    torch.testing.assert_close(cm2(X).reshape(-1), torch.tensor([1.0, 25.0], dtype=DTYPE))
    ds3 = _nested([f_low_smooth, f_low_smooth, f_high_smooth], [6, 4, 3], 1, seed=0)
    m3 = RecursiveCoKriging(ds3, costs=[1.0, 3.0, 30.0])
    cm3 = m3.cost_model()
    assert not isinstance(cm3, AffineFidelityCostModel)
    X3 = torch.tensor([[0.1, 0.0], [0.2, 1.0], [0.3, 2.0]], dtype=DTYPE).unsqueeze(-2)
    torch.testing.assert_close(cm3(X3).reshape(-1), torch.tensor([1.0, 3.0, 30.0], dtype=DTYPE))
    # a cost-aware utility divides the information gain by these costs
    util = InverseCostWeightedUtility(cost_model=cm2, use_mean=True)
    gains = torch.tensor([1.0, 1.0], dtype=DTYPE)
    val = util(X, gains)
    torch.testing.assert_close(val, torch.tensor([1.0, 1.0 / 25.0], dtype=DTYPE))
    with pytest.raises(ValueError, match="2 positive finite numbers"):
        m.cost_model([1.0])
    with pytest.raises(ValueError, match=r"2 positive finite numbers .* got \[1.0, nan\]"):
        m.cost_model([1.0, float("nan")])


# ------------------------------------------------------------ core
@pytest.mark.parametrize("kind", ["matern52", "rbf"])
def test_correlation_is_gpytorchs_kernel(kind):
    from gpytorch.kernels import MaternKernel, RBFKernel

    from surrogates.multifidelity.core import Correlation

    g = torch.Generator().manual_seed(0)
    x1, x2 = torch.rand(5, 3, generator=g, dtype=DTYPE), torch.rand(4, 3, generator=g, dtype=DTYPE)
    ls = torch.tensor([0.3, 1.2, 0.05], dtype=DTYPE)
    ref = (MaternKernel(nu=2.5, ard_num_dims=3) if kind == "matern52" else RBFKernel(ard_num_dims=3)).to(DTYPE)
    ref.lengthscale = ls
    with torch.no_grad():
        torch.testing.assert_close(Correlation(kind)(x1, x2, ls), ref(x1, x2).to_dense())


@pytest.mark.parametrize("kind", ["matern52", "rbf"])
def test_one_lengthscale_correlation_and_its_gradient_are_gpytorchs(kind):
    """One lengthscale and inputs without gradients take GPyTorch's closed-form
    path; its values and lengthscale gradient are those of GPyTorch's kernel
    (differentiated by autograd through its operations) and of a central
    finite difference."""
    from gpytorch.kernels import MaternKernel, RBFKernel

    from surrogates.multifidelity.core import Correlation

    g = torch.Generator().manual_seed(1)
    x1, x2 = torch.rand(6, 2, generator=g, dtype=DTYPE), torch.rand(4, 2, generator=g, dtype=DTYPE)
    w = torch.randn(6, 4, generator=g, dtype=DTYPE)
    corr = Correlation(kind)
    ref = (MaternKernel(nu=2.5) if kind == "matern52" else RBFKernel()).to(DTYPE)
    ref.lengthscale = 1.0
    for ls0 in (0.07, 0.4, 3.0):
        ls = torch.tensor([ls0], dtype=DTYPE, requires_grad=True)
        value = (corr(x1, x2, ls) * w).sum()
        (grad,) = torch.autograd.grad(value, ls)
        # GPyTorch's general path: the lengthscale applied to inputs that carry a gradient
        ls_ref = torch.tensor([ls0], dtype=DTYPE, requires_grad=True)
        value_ref = (ref.forward(x1 / ls_ref, x2 / ls_ref) * w).sum()
        (grad_ref,) = torch.autograd.grad(value_ref, ls_ref)
        torch.testing.assert_close(value, value_ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-10, atol=1e-12)
        h = 1e-6 * ls0
        with torch.no_grad():
            fd = ((corr(x1, x2, ls + h) - corr(x1, x2, ls - h)) * w).sum() / (2 * h)
        torch.testing.assert_close(grad, fd.reshape(1), rtol=1e-6, atol=1e-8)


def test_kriging_mean_is_the_gls_estimate_and_its_variance():
    """With a flat trend prior, the universal-kriging mean at a training
    input with no noise is the datum, and far from the data it reverts to the
    GLS trend with variance ``s2 + Var(beta)``."""
    from surrogates.multifidelity.core import Correlation, Kriging

    g = torch.Generator().manual_seed(1)
    x = torch.rand(8, 1, generator=g, dtype=DTYPE)
    y = torch.sin(5 * x[:, 0])
    corr, ls = Correlation("rbf"), torch.tensor([0.1], dtype=DTYPE)
    K = corr(x, x, ls) + 1e-10 * torch.eye(8, dtype=DTYPE)
    F = torch.ones(8, 1, dtype=DTYPE)
    k = Kriging(K, F, y)
    Kinv = torch.linalg.inv(K)
    beta = (F.T @ Kinv @ y) / (F.T @ Kinv @ F)
    torch.testing.assert_close(k.beta, beta.reshape(1))
    far = torch.tensor([[50.0]], dtype=DTYPE)
    m, v = k.predict(corr(x, far, ls), corr(far, far, ls), torch.ones(1, 1, dtype=DTYPE))
    torch.testing.assert_close(m.reshape(()), beta.reshape(()))
    torch.testing.assert_close(v.reshape(()), 1 + 1 / (F.T @ Kinv @ F).reshape(()))
    m, _ = k.predict(corr(x, x[:3], ls), corr(x[:3], x[:3], ls), torch.ones(3, 1, dtype=DTYPE))
    torch.testing.assert_close(m, y[:3], atol=1e-6, rtol=0)


@pytest.mark.parametrize("reml", [True, False])
@pytest.mark.parametrize("p", [1, 3])
def test_kriging_nll_value_and_gradients_match_the_dense_formula(reml, p):
    """The closed-form gradients of the profiled (restricted) likelihood in
    ``K``, ``F`` and ``y`` equal autograd through the textbook formula with a
    dense inverse and log-determinants; masked rows change nothing."""
    from surrogates.multifidelity.core import kriging_nll

    g = torch.Generator().manual_seed(p + 10 * reml)
    n = 9
    M = torch.randn(n, n, generator=g, dtype=DTYPE)
    K0, F0 = M @ M.T + 0.5 * torch.eye(n, dtype=DTYPE), torch.randn(n, p, generator=g, dtype=DTYPE)
    y0 = torch.randn(n, generator=g, dtype=DTYPE)

    def dense(K, F, y):
        Ki = torch.linalg.inv(K)
        A = F.T @ Ki @ F
        r = y - F @ torch.linalg.solve(A, F.T @ Ki @ y)
        return 0.5 * r @ Ki @ r + 0.5 * torch.logdet(K) + (0.5 * torch.logdet(A) if reml else 0.0)

    out = []
    for fn in (lambda K, F, y: kriging_nll(K, F, y, reml=reml), dense):
        args = [a.clone().requires_grad_(True) for a in (K0, F0, y0)]
        v = fn(*args)
        out.append((v.detach(), *torch.autograd.grad(v, args)))
    (v, gK, gF, gy), (v_ref, gK_ref, gF_ref, gy_ref) = out
    torch.testing.assert_close(v, v_ref)
    torch.testing.assert_close(gK + gK.T, gK_ref + gK_ref.T)  # K is symmetric
    torch.testing.assert_close(gF, gF_ref)
    torch.testing.assert_close(gy, gy_ref)
    # a masked row (w = 0) is the same as leaving it out
    w = torch.ones(n, dtype=DTYPE)
    w[4] = 0.0
    keep = torch.arange(n) != 4
    torch.testing.assert_close(
        kriging_nll(K0, F0, y0, w, reml=reml), kriging_nll(K0[keep][:, keep], F0[keep], y0[keep], reml=reml)
    )


def test_non_nested_recursive_carries_the_lower_variance():
    """Recursive co-kriging on a non-nested design adds rho^2 Var f_0 at the
    upper level's inputs to their noise; on a nested noise-free design the
    lower level interpolates there and nothing is carried."""
    g = torch.Generator().manual_seed(3)
    xl, xh = _lhs(8, 1, seed=3), torch.rand(5, 1, generator=g, dtype=DTYPE)
    X = torch.cat([xl, xh])
    Y = torch.cat([f_low_smooth(xl), f_high_smooth(xh)]).reshape(-1, 1)
    fid = torch.tensor([0] * 8 + [1] * 5)
    m = RecursiveCoKriging.from_dataset(Dataset(X=X, Y=Y, Yvar=torch.zeros_like(Y), fidelity=fid))
    # the carried rho is the first pass's estimate, close to the final one
    assert m.carry_coef[1, 0] != 0
    carried = m.carry_coef[1, 0] * m._level_ratio(1)  # carry_coef is in the levels' standardized units
    assert abs(carried - m.rho[0][0]) < 0.05 * abs(m.rho[0][0])
    nested = _nested([f_low_smooth, f_high_smooth], [8, 4], 1, seed=3)
    m2 = RecursiveCoKriging.from_dataset(
        Dataset(X=nested.X, Y=nested.Y, Yvar=torch.zeros_like(nested.Y), fidelity=nested.fidelity)
    )
    assert (m2.carry_coef == 0).all()


@pytest.mark.parametrize("cls", MODELS)
def test_no_overflow_warnings_in_fits(cls):
    import warnings

    ds = _nested([f_low_smooth, f_high_smooth], [10, 4], 1, seed=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        cls.from_dataset(ds).predict(torch.rand(5, 1, dtype=DTYPE))


def test_t_scale_widens_a_scale_free_level_by_the_student_t_interval():
    """Level 0 of a noise-free recursive model, ``n`` points, constant trend:
    with ``t_scale`` its variance is the plug-in one times
    ``(t_{n-1}(0.975) / z_{0.975})^2`` (the fit itself does not change); a
    level with known positive noise keeps the plug-in variance."""
    from scipy.stats import norm
    from scipy.stats import t as student_t

    ds = _nested([f_low_smooth, f_high_smooth], [7, 4], 1, seed=2)
    ds0 = Dataset(X=ds.X, Y=ds.Y, Yvar=torch.zeros_like(ds.Y), fidelity=ds.fidelity)
    a = RecursiveCoKriging.from_dataset(ds0, restarts=1, trend="constant")
    b = RecursiveCoKriging.from_dataset(ds0, restarts=1, trend="constant", t_scale=False)
    torch.testing.assert_close(a.theta, b.theta)
    x = torch.linspace(0, 1, 9, dtype=DTYPE).unsqueeze(-1)
    factor = (student_t.ppf(0.975, 7 - 1) / norm.ppf(0.975)) ** 2
    torch.testing.assert_close(a.predict(x, fidelity=0)[1], factor * b.predict(x, fidelity=0)[1], rtol=1e-9, atol=0)
    # a few points in the level: a heavier tail than many points
    assert factor > (student_t.ppf(0.975, 30) / norm.ppf(0.975)) ** 2 > 1
    yvar = torch.full_like(ds.Y, 1e-4)
    c = RecursiveCoKriging.from_dataset(Dataset(X=ds.X, Y=ds.Y, Yvar=yvar, fidelity=ds.fidelity), restarts=1)
    d = RecursiveCoKriging.from_dataset(
        Dataset(X=ds.X, Y=ds.Y, Yvar=yvar, fidelity=ds.fidelity), restarts=1, t_scale=False
    )
    torch.testing.assert_close(c.predict(x)[1], d.predict(x)[1], rtol=1e-12, atol=0)


@pytest.mark.parametrize("levels", [[0.0, 1.0], [0.0, 1.0, 2.0, 1.0, 0.0, 2.0]])
def test_nargp_joint_covariance_over_levels_is_a_covariance(levels):
    """Points at mixed levels (the same input at two levels among them) get one
    covariance from the same sampled paths: positive semi-definite, correlations
    at most 1, the marginal variances those of each point alone (before, the
    exact level-0 block beside Monte Carlo cross blocks gave a correlation of 1.06)."""
    def f0(x):
        return 0.5 * torch.sin(8 * x[..., 0]) + x[..., 0] - 0.3

    def f1(x):
        return 1.3 * f0(x) + 0.2 * x.sum(-1) ** 2

    def f2(x):
        return f1(x).pow(2) - 0.5 * x[..., 1]

    L = int(max(levels)) + 1
    ds = _nested([f0, f1, f2][:L], [16, 9, 6][:L], 2, seed=3)
    m = NARGP.from_dataset(ds)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(len(levels), 2, generator=g, dtype=DTYPE)
    x[1] = x[0]  # one input at two levels
    X = torch.cat([x, torch.tensor(levels, dtype=DTYPE).unsqueeze(-1)], -1)
    with torch.no_grad():
        C = m.posterior(X).mvn.covariance_matrix
        single = m.posterior(X.unsqueeze(-2)).variance.reshape(-1)
    eig = torch.linalg.eigvalsh(C)
    assert float(eig.min()) >= -1e-10 * float(eig.max()), eig
    corr = C / (C.diagonal().sqrt().unsqueeze(-1) * C.diagonal().sqrt().unsqueeze(-2))
    assert float(corr.abs().max()) <= 1.0 + 1e-9
    torch.testing.assert_close(C.diagonal(), single, rtol=1e-6, atol=1e-12)


def test_three_level_nargp_shapes_and_interpolation():
    """NARGP propagates one sample path per draw through two levels: shapes
    of the marginals and the joint posterior, and the top level interpolates
    its noise-free data."""

    def f0(x):
        return torch.sin(2 * math.pi * x[..., 0])

    def f1(x):
        return 1.3 * f0(x) + 0.2 * x[..., 0]

    def f2(x):
        return f1(x) ** 2 + 0.1

    ds = _nested([f0, f1, f2], [14, 8, 5], 1, seed=1)
    ds = Dataset(X=ds.X, Y=ds.Y, Yvar=torch.zeros_like(ds.Y), fidelity=ds.fidelity)
    m = NARGP.from_dataset(ds, restarts=1)
    x = torch.linspace(0, 1, 7, dtype=DTYPE).unsqueeze(-1)
    mean, var = m.predict(x, fidelity=2)
    assert mean.shape == (7,) and var.shape == (7,) and (var > 0).all()
    post = m.posterior(_with_level(x[:6], 2).reshape(2, 3, 2))
    assert post.mean.shape == (2, 3, 1) and post.mvn.covariance_matrix.shape == (2, 3, 3)
    top = ds.fidelity == 2
    m_top, v_top = m.predict(ds.X[top], fidelity=2)
    torch.testing.assert_close(m_top, ds.Y[top, 0], atol=1e-3 * float(ds.Y[top].std()), rtol=0)


def test_linear_trend_fits_a_linear_discrepancy_exactly():
    """``f_H = 1.5 f_L + (0.8 x - 0.3)`` on a nested noise-free design: with the
    linear trend the discrepancy lies in the trend's span, so the top-level
    mean is ``1.5`` times the level-0 mean plus that line at every input
    (GLS recovers ``rho = 1.5`` exactly)."""
    ds = _nested([f_low_smooth, f_high_smooth], [14, 7], 1, seed=4)
    ds0 = Dataset(X=ds.X, Y=ds.Y, Yvar=torch.zeros_like(ds.Y), fidelity=ds.fidelity)
    x = torch.linspace(0, 1, 41, dtype=DTYPE).unsqueeze(-1)
    scale = float(ds.Y[ds.fidelity == 1].std())
    gaps = {}
    for trend in ("linear", "auto"):
        m = RecursiveCoKriging.from_dataset(ds0, trend=trend)
        expected = RHO * m.predict(x, fidelity=0)[0] + delta_true(x)
        gaps[trend] = float((m.predict(x)[0] - expected).abs().max()) / scale
        assert m.trend_linear.tolist() == [True, True]
        assert m.rho[0].item() == pytest.approx(RHO, rel=1e-6)
    assert max(gaps.values()) < 1e-6, gaps


@pytest.mark.parametrize(("counts", "expected"), [((12, 4), [True, False]), ((12, 6), [True, True]),
                                                  ((4, 3), [False, False])])
def test_auto_trend_is_linear_where_a_level_keeps_three_degrees_of_freedom(counts, expected):
    """``trend="auto"``, ``d = 1``: level 0 has ``p = 2`` linear terms, level 1
    ``p = 3`` (with ``rho``); linear needs ``n_t >= p_t + 3``. A model
    conditioned on more points keeps the fitted choice."""
    ds = _nested([f_low_smooth, f_high_smooth], counts, 1, seed=1)
    m = RecursiveCoKriging.from_dataset(ds)
    assert m.trend_linear.tolist() == expected
    x_new = torch.tensor([[[0.31, 1.0], [0.77, 1.0], [0.12, 1.0]]], dtype=DTYPE)
    fm = m.condition_on_observations(x_new, f_high_smooth(x_new[..., :1]).unsqueeze(-1))
    assert fm.trend_linear.tolist() == expected


def test_recursive_trend_setting_is_checked():
    ds = _nested([f_low_smooth, f_high_smooth], [8, 4], 1, seed=0)
    with pytest.raises(ValueError, match=r"trend must be one of \('constant', 'linear', 'auto'\), got 'quadratic'"):
        RecursiveCoKriging(ds, trend="quadratic")
    with pytest.raises(ValueError, match="level 1 has 2 points.*trend='linear' needs more than 3"):
        RecursiveCoKriging.from_dataset(_nested([f_low_smooth, f_high_smooth], [8, 2], 1, seed=0), trend="linear")


def test_linear_rho_and_linear_trend_recover_both_exactly():
    """``f_H = (1.5 + 0.5 x) f_L + 0.8 x - 0.3`` (nested, noise-free): with
    ``rho="linear"`` and ``trend="linear"`` both lie in the GLS basis
    ``[1, f, f x, x]``, so ``rho`` is recovered as ``[1.5, 0.5]`` (its slope
    is in the unit-cube input, here ``x`` itself) and the top-level mean is
    ``rho(x)`` times the level-0 mean plus the line."""

    def f_high(x):
        return (1.5 + 0.5 * x[..., 0]) * f_low_smooth(x) + delta_true(x)

    ds = _nested([f_low_smooth, f_high], [16, 9], 1, seed=5)
    ds0 = Dataset(X=ds.X, Y=ds.Y, Yvar=torch.zeros_like(ds.Y), fidelity=ds.fidelity)
    m = RecursiveCoKriging.from_dataset(ds0, rho="linear", trend="linear", bounds=[[0.0], [1.0]])
    torch.testing.assert_close(m.rho[0], torch.tensor([1.5, 0.5], dtype=DTYPE), rtol=1e-6, atol=1e-6)
    x = torch.linspace(0, 1, 21, dtype=DTYPE).unsqueeze(-1)
    expected = (1.5 + 0.5 * x[:, 0]) * m.predict(x, fidelity=0)[0] + delta_true(x)
    scale = float(ds.Y[ds.fidelity == 1].std())
    assert float((m.predict(x)[0] - expected).abs().max()) < 1e-6 * scale


@pytest.mark.parametrize("rho", ["constant", "linear"])
def test_an_input_held_at_one_value_leaves_the_linear_trend_full_rank(rho):
    """An input that does not vary among a level's points (a parameter held fixed) is left out
    of that level's linear trend (and of a linear ``rho``'s ``f x``): the basis stays full rank,
    so the fit needs no jitter, and the noise-free model of a nested design interpolates its top-level data."""
    import warnings

    from gpytorch.utils.warnings import NumericalWarning

    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(11, 1, generator=g, dtype=DTYPE)
    x = torch.cat([x0, x0[:5]])  # nested: the top level's points are among level 0's
    fid = torch.tensor([0] * 11 + [1] * 5)
    y = torch.where(fid[:, None] == 1, torch.sin(6 * x), 0.8 * torch.sin(6 * x) + 0.2 * x)
    x2 = torch.cat([x, torch.full_like(x, 0.3)], -1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)
        m = RecursiveCoKriging.from_dataset(
            Dataset(X=x2, Y=y, Yvar=torch.zeros_like(y), fidelity=fid), trend="linear", rho=rho
        )
        top = fid == 1
        mean, var = m.predict(x2[top])
    assert m.trend_inputs.tolist() == [[True, False], [True, False]]
    assert m.trend_linear.all()
    # rho_t(x) = c_0 + x c_1: the held input's coefficient is zero (not in the basis)
    assert m.rho[0].shape == ((3,) if rho == "linear" else (1,))
    if rho == "linear":
        assert m.rho[0][2] == 0.0
    torch.testing.assert_close(mean, y[top, 0], rtol=0, atol=1e-5 * float(y.std()))


def test_a_repeated_observation_does_not_change_the_trend_choice():
    """``trend="auto"`` counts each distinct input once: observing a top-level point a second
    time (a campaign re-evaluating its incumbent) adds no evidence about the trend's shape, so the
    level keeps the trend of the data without the repeat (5 distinct points: constant; a count
    of raw rows would give 6 and a linear trend), and the Student-t interval keeps its degrees of
    freedom."""
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(11, 1, generator=g, dtype=DTYPE)
    x = torch.cat([x0, x0[:5]])
    fid = torch.tensor([0] * 11 + [1] * 5)
    y = torch.where(fid[:, None] == 1, torch.sin(6 * x), 0.8 * torch.sin(6 * x) + 0.2 * x)
    m = RecursiveCoKriging.from_dataset(Dataset(X=x, Y=y, fidelity=fid))
    rep = RecursiveCoKriging.from_dataset(
        Dataset(X=torch.cat([x, x[-1:]]), Y=torch.cat([y, y[-1:]]), fidelity=torch.cat([fid, fid[-1:]]))
    )
    assert m.trend_linear.tolist() == [True, False]
    assert rep.trend_linear.tolist() == m.trend_linear.tolist()
    # nor the degrees of freedom of the Student-t widening (distinct inputs minus trend terms)
    m.posterior(torch.tensor([[0.5, 1.0]], dtype=DTYPE))
    rep.posterior(torch.tensor([[0.5, 1.0]], dtype=DTYPE))
    for t in (0, 1):
        torch.testing.assert_close(rep._krig[t].t_factor(), m._krig[t].t_factor(), rtol=0, atol=0)
    # a fantasy at an observed input adds no degree of freedom, one at a new input adds one
    for xq, added in ((x[-1:], 0), (torch.tensor([[0.123]], dtype=DTYPE), 1)):
        Xq = torch.cat([xq, torch.ones(1, 1, dtype=DTYPE)], -1)
        fm = m.condition_on_observations(Xq, torch.zeros(1, 1, dtype=DTYPE))
        fm.posterior(torch.tensor([[0.5, 1.0]], dtype=DTYPE))
        assert int(fm._krig[1].distinct) == int(m._krig[1].distinct) + added


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging, NARGP])
def test_a_constant_output_is_predicted_in_its_own_units(cls):
    """Outputs that take one value everywhere (a property the inputs do not move) have no
    spread to standardize by; their magnitude is the scale, so the mean is the value and the
    variance of ``a y`` is ``a^2`` times that of ``y`` (it had been fixed in absolute units:
    a standard deviation of 5e-5 around a constant 2e-12)."""
    import warnings

    from gpytorch.utils.warnings import NumericalWarning

    g = torch.Generator().manual_seed(5)
    X = torch.rand(16, 1, generator=g, dtype=DTYPE)
    fid = torch.tensor([0] * 11 + [1] * 5)
    xt = torch.linspace(0, 1, 5, dtype=DTYPE).reshape(-1, 1)
    out = {}
    for c in (2.0, 2e-12, -3e6):
        with warnings.catch_warnings():
            # the level below is constant too: its column leaves the trend, which needs no jitter
            warnings.simplefilter("error", NumericalWarning)
            m = cls.from_dataset(Dataset(X=X, Y=torch.full((16, 1), c, dtype=DTYPE), fidelity=fid))
            out[c] = m.predict(xt)
        torch.testing.assert_close(out[c][0], torch.full((5,), c, dtype=DTYPE), rtol=1e-12, atol=0)
    for c in (2e-12, -3e6):
        torch.testing.assert_close(out[c][1], out[2.0][1] * (c / 2.0) ** 2, rtol=1e-9, atol=0)


def test_a_large_batch_of_posteriors_is_solved_as_one_system():
    """Batched one-point posteriors (BoTorch's raw samples) against many training points are
    solved with the batch folded into the right-hand side (``core.solve_lower``) once the
    broadcast copies of the factor would pass ``FOLD_ELEMENTS``; the answers are those of the
    broadcast solve to round-off, for every model (AR1 is one joint factor, the recursive model
    one per level, NARGP's sample propagation another batch)."""
    from surrogates.multifidelity import core

    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(150, 2, generator=g, dtype=DTYPE)
    X = torch.cat([x0, x0[:20]])
    fid = torch.tensor([0] * 150 + [1] * 20)
    f = torch.sin(5 * X[:, 0]) * torch.cos(3 * X[:, 1])
    Y = torch.where(fid == 1, f, 0.7 * f + 0.2 * X[:, 0]).unsqueeze(-1)
    xb = torch.cat([torch.rand(600, 1, 2, generator=g, dtype=DTYPE), torch.ones(600, 1, 1, dtype=DTYPE)], -1)
    assert 600 * 150**2 > core.FOLD_ELEMENTS
    for cls in (AR1CoKriging, RecursiveCoKriging, NARGP):
        m = cls.from_dataset(Dataset(X=X, Y=Y, fidelity=fid))
        post = m.posterior(xb)
        mean, var = post.mean.reshape(-1), post.variance.reshape(-1)
        old = core.FOLD_ELEMENTS
        try:
            core.FOLD_ELEMENTS = 10**15  # the broadcast solve
            m._conditioned = False
            ref = m.posterior(xb)
        finally:
            core.FOLD_ELEMENTS = old
        # both solves are backward stable; the near-interpolating factors (condition numbers
        # up to ~1e9) amplify their round-off, a misplaced column would not be small
        s2 = float(Y.var())
        torch.testing.assert_close(mean, ref.mean.reshape(-1), rtol=0, atol=1e-6 * s2**0.5)
        torch.testing.assert_close(var, ref.variance.reshape(-1), rtol=1e-4, atol=1e-9 * s2)


def test_solve_lower_folds_the_batch_into_one_solve():
    from surrogates.multifidelity.core import solve_lower

    g = torch.Generator().manual_seed(7)
    A = torch.randn(40, 40, generator=g, dtype=DTYPE)
    L = torch.linalg.cholesky(A @ A.T + 40 * torch.eye(40, dtype=DTYPE))
    B = torch.randn(3, 5000, 40, 2, generator=g, dtype=DTYPE)  # 15000 x 40^2 > FOLD_ELEMENTS
    X = solve_lower(L, B)
    assert X.shape == B.shape
    torch.testing.assert_close(L @ X, B, rtol=0, atol=1e-10)
    torch.testing.assert_close(X[1, 17], torch.linalg.solve_triangular(L, B[1, 17], upper=False), rtol=1e-12, atol=1e-14)


def test_solve_lower_folds_the_leading_batch_against_a_batched_factor():
    """A fantasy model's factor (``4 x n x n``) against one-point batches (``600 x 1 x n x k``,
    broadcast over the fantasies): the same values and gradients as the broadcast solve."""
    from surrogates.multifidelity import core

    g = torch.Generator().manual_seed(3)
    A = torch.randn(4, 60, 60, generator=g, dtype=DTYPE)
    L = torch.linalg.cholesky(A @ A.transpose(-1, -2) + 60 * torch.eye(60, dtype=DTYPE)).requires_grad_(True)
    B = torch.randn(600, 1, 60, 2, generator=g, dtype=DTYPE).requires_grad_(True)
    assert 600 * 4 * 60**2 > core.FOLD_ELEMENTS
    W = torch.randn(600, 4, 60, 2, generator=g, dtype=DTYPE)
    X = core.solve_lower(L, B)
    (gL, gB) = torch.autograd.grad((X * W).sum(), (L, B))
    ref = torch.linalg.solve_triangular(L, B, upper=False)
    (rL, rB) = torch.autograd.grad((ref * W).sum(), (L, B))
    assert X.shape == ref.shape == (600, 4, 60, 2)
    torch.testing.assert_close(X, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(gL, rL, rtol=1e-9, atol=1e-10)
    torch.testing.assert_close(gB, rB, rtol=1e-9, atol=1e-10)


def test_distinct_rows_counts_present_rows_once_and_only_equal_rows_as_repeats():
    from surrogates.multifidelity.core import distinct_rows

    x = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.5, 0.5], [1.0, 0.0]], dtype=DTYPE)
    assert int(distinct_rows(x)) == 3
    # an absent row (mask 0) is not counted, and does not make a later equal row a repeat
    assert int(distinct_rows(x, torch.tensor([0.0, 1.0, 1.0, 1.0, 1.0], dtype=DTYPE))) == 3
    assert int(distinct_rows(x, torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0], dtype=DTYPE))) == 3
    # batches, with a mask broadcast over them
    xb = torch.stack([x, torch.arange(10, dtype=DTYPE).reshape(5, 2)])
    assert distinct_rows(xb).tolist() == [3, 5]
    assert distinct_rows(xb, torch.ones(5, dtype=DTYPE)).tolist() == [3, 5]
    # rows whose projections coincide but that differ are distinct
    r = torch.linspace(1.0, 2.0, 2, dtype=DTYPE).sqrt()
    pair = torch.tensor([[1.0, 0.0], [0.0, float(r[0] / r[1])]], dtype=DTYPE)
    assert float(pair[0] @ r) == float(pair[1] @ r)
    assert int(distinct_rows(pair)) == 2


def _lower_level_repeats_the_trend(kind: str, wiggle: float = 0.0):
    """Two-level nested design in 2D (12 cheap, 6 expensive points) whose cheap level is
    constant at the expensive points (``"constant"``: a cheap model that saturates there) or
    linear in the inputs (``"linear"``: its mean repeats a linear trend's columns), up to
    ``wiggle`` times a unit-size function that is neither."""
    g = torch.Generator().manual_seed(7)
    x0 = torch.rand(12, 2, generator=g, dtype=DTYPE)
    X = torch.cat([x0, x0[:6]])
    fid = torch.tensor([0] * 12 + [1] * 6)
    top = torch.sin(6 * X[:, 0]) + X[:, 1]
    if kind == "constant":
        low = torch.where(torch.arange(18) % 12 < 6, torch.ones(18, dtype=DTYPE), torch.sin(6 * X[:, 0]) + X[:, 1])
    else:
        low = 2 * X[:, 0] - X[:, 1] + 1
    low = low + wiggle * torch.cos(5 * X[:, 0] * X[:, 1] + 3 * X[:, 1])
    Y = torch.where(fid == 1, top, low).unsqueeze(-1)
    return Dataset(X=X, Y=Y, Yvar=torch.zeros_like(Y), fidelity=fid), top[fid == 1]


@pytest.mark.parametrize("wiggle", [0.0, 1e-5])
@pytest.mark.parametrize(("cls", "opts", "kind"), [
    (RecursiveCoKriging, {}, "constant"),
    (RecursiveCoKriging, {"trend": "linear"}, "constant"),
    (RecursiveCoKriging, {"trend": "linear"}, "linear"),
    (NARGP, {}, "constant"),
])
def test_a_trend_column_that_repeats_the_others_is_dropped(cls, opts, kind, wiggle):
    """Where the level below is constant at the upper level's points, ``f`` repeats the trend's
    constant column (and a linear level below repeats a linear trend's ``x`` columns): its GLS
    coefficient is not identifiable and, kept, was set by round-off (rho = 2.4e5, predicted
    means up to 2e6 for outputs of order 1, standard deviations of 400 at noise-free training
    points). The column is dropped at the fit; the model interpolates its noise-free top-level
    data, its predictions stay on the data's scale, and without the ``f`` column rho is zero.
    So is a column that repeats the others up to 1e-5 of its size (``wiggle``): its coefficient
    is then set by that remainder (predictive variances of 1e11 for outputs of order 10 had
    followed from a level below linear to 5e-5 of its size)."""
    import warnings

    from gpytorch.utils.warnings import NumericalWarning

    ds, y_top = _lower_level_repeats_the_trend(kind, wiggle)
    with warnings.catch_warnings():
        warnings.simplefilter("error", NumericalWarning)  # the GLS needs no jitter (it had needed 10-55)
        m = cls.from_dataset(ds, **opts)
        top = ds.fidelity == 1
        mean, var = m.predict(ds.X[top])
    torch.testing.assert_close(mean, y_top, rtol=0, atol=1e-4)
    assert float(var.max().sqrt()) < 1e-3
    assert not m.basis_keep[1].all()
    xt = torch.rand(200, 2, generator=torch.Generator().manual_seed(8), dtype=DTYPE)
    mean, var = m.predict(xt)
    assert float(mean.abs().max()) < 10.0 and float(var.max().sqrt()) < 10.0
    if cls is RecursiveCoKriging and kind == "constant":
        assert m.rho[0].abs().max() == 0.0


@pytest.mark.parametrize("cls", [AR1CoKriging, RecursiveCoKriging, NARGP])
def test_outputs_whose_variances_leave_double_precision_are_refused_by_name(cls):
    """Outputs of scale 1e200 (or 1e-200) have variances of 1e400 (1e-400), which no double holds:
    the model says so and how to rescale, instead of an OverflowError from inside the prediction
    (or "the likelihood could not be evaluated at any starting point"); 1e140 and 1e-140 fit and
    predict the same standardized answer."""
    g = torch.Generator().manual_seed(9)
    X = torch.rand(15, 1, generator=g, dtype=DTYPE)
    fid = torch.tensor([0] * 10 + [1] * 5)
    Y = torch.sin(6 * X) + torch.where(fid[:, None] == 1, 0.0, 0.3)
    for s in (1e200, 1e-200):
        with pytest.raises(ValueError, match=r"the outputs. scale is .*e[+-]\d\d\d, outside \[1e-150, 1e\+150\].*multiply the outputs"):
            cls.from_dataset(Dataset(X=X, Y=s * Y, fidelity=fid))
    xt = torch.linspace(0, 1, 4, dtype=DTYPE).reshape(-1, 1)
    ref = cls.from_dataset(Dataset(X=X, Y=Y, fidelity=fid)).predict(xt)[0]
    for s in (1e140, 1e-140):
        torch.testing.assert_close(cls.from_dataset(Dataset(X=X, Y=s * Y, fidelity=fid)).predict(xt)[0] / s, ref,
                                   rtol=1e-6, atol=1e-6)


# ------------------------------------------------ each level in its own units
def _scaled_top(ds: Dataset, c: float) -> Dataset:
    Y = ds.Y.clone()
    Y[ds.fidelity == ds.fidelity.max()] *= c
    return Dataset(X=ds.X, Y=Y, Yvar=None if ds.Yvar is None else ds.Yvar.clone(), fidelity=ds.fidelity)


@pytest.mark.parametrize("c", [30.0, 1e-3, 1e4])
def test_recursive_level_zero_does_not_depend_on_the_top_levels_units(c):
    """Recursive co-kriging fits level 0 on level 0's data alone, so its level-0
    predictions cannot depend on the top level's data: rescaling the top level by c
    (its spread 1e-3 to 1e4 times level 0's, as a campaign's top points clustered
    near an optimum make it) leaves them unchanged, and the top level's predictions
    scale by c exactly (each level is standardized in its own units; in the top
    level's units, level 0's signal variance had hit its bound and its fit moved)."""
    g = torch.Generator().manual_seed(0)
    xl = torch.rand(12, 1, generator=g).to(DTYPE)
    X = torch.cat([xl, xl[:5]])
    Y = (torch.sin(8 * X[:, 0]) + X[:, 0]).unsqueeze(-1)
    ds = Dataset(X=X, Y=Y, fidelity=torch.tensor([0] * 12 + [1] * 5))
    x = torch.linspace(0, 1, 23, dtype=DTYPE).unsqueeze(-1)
    ref = RecursiveCoKriging.from_dataset(ds, noise="infer")
    m = RecursiveCoKriging.from_dataset(_scaled_top(ds, c), noise="infer")
    for lev, k in ((0, 1.0), (1, c)):
        p0, p1 = ref.posterior(_with_level(x, lev)), m.posterior(_with_level(x, lev))
        torch.testing.assert_close(p1.mean, k * p0.mean, rtol=1e-6, atol=1e-9 * k)
        torch.testing.assert_close(p1.variance, k**2 * p0.variance, rtol=1e-5, atol=1e-12 * k**2)


def test_ar1_scale_factor_is_in_output_units_whatever_the_levels_spreads():
    """Exact f_H = c f_L on a nested design: the AR1 fit is the same in the levels'
    own units whatever c, so its rho (output units) is c times the one for c = 1
    (it had been clamped at the bound 10 for c = 30), its level-0 predictions are
    unchanged and its top-level ones scale by c."""
    ds = _nested([f_low_smooth, f_low_smooth], [12, 6], 1, seed=4)
    x = torch.linspace(0, 1, 19, dtype=DTYPE).unsqueeze(-1)
    ref = AR1CoKriging.from_dataset(ds, noise="none")
    m = AR1CoKriging.from_dataset(_scaled_top(ds, 30.0), noise="none")
    torch.testing.assert_close(m.rho, 30.0 * ref.rho, rtol=1e-6, atol=0)
    assert abs(float(ref.rho[0]) - 1.0) < 0.05
    for lev, k in ((0, 1.0), (1, 30.0)):
        p0, p1 = ref.posterior(_with_level(x, lev)), m.posterior(_with_level(x, lev))
        torch.testing.assert_close(p1.mean, k * p0.mean, rtol=1e-6, atol=1e-9 * k)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_a_level_constant_to_round_off_is_a_constant_level(cls):
    """A top level whose values are one number, one of them 1 ulp off, is the same
    data as the exactly constant one to the model: the same level-0 predictions
    (its spread of 4e-16 had been taken as the outputs' scale, and level-0 fits at
    their own noise-free points missed the data by 1e11 reported standard deviations)."""
    xl = _lhs(10, 1, seed=5)
    X = torch.cat([xl, xl[:4]])
    Y = torch.cat([f_low_smooth(xl), torch.full((4,), 2.0, dtype=DTYPE)]).reshape(-1, 1)
    fid = torch.tensor([0] * 10 + [1] * 4)
    Y2 = Y.clone()
    Y2[-1, 0] = torch.nextafter(torch.tensor(2.0, dtype=DTYPE), torch.tensor(3.0, dtype=DTYPE))
    a = cls.from_dataset(Dataset(X=X, Y=Y, fidelity=fid))
    b = cls.from_dataset(Dataset(X=X, Y=Y2, fidelity=fid))
    pa, pb = a.posterior(_with_level(xl, 0)), b.posterior(_with_level(xl, 0))
    # the two fits are separate optimizations of 1-ulp-apart data: they agree to the
    # optimizer's tolerance (1e-6 of the level's spread), not to round-off
    torch.testing.assert_close(pb.mean, pa.mean, rtol=1e-6, atol=1e-6 * float(Y[:10].std()))
    z = (pb.mean.squeeze(-1) - Y[:10, 0]) / pb.variance.squeeze(-1).sqrt().clamp_min(1e-300)
    assert float(z.abs().max()) < 5.0


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_observation_noise_broadcasts_as_botorch_documents(cls):
    """``observation_noise`` of shape ``batch x 1 x 1`` (or ``1``, or a scalar) is broadcast
    over the q points, as BoTorch's models do (it had raised a reshape error); a shape that
    does not broadcast is refused by name."""
    m = cls.from_dataset(_nested([f_low_smooth, f_high_smooth], [12, 5], 1, seed=0))
    X = _with_level(torch.tensor([[0.2], [0.5], [0.9]], dtype=DTYPE), 1)
    full = m.posterior(X, observation_noise=torch.full((3, 1), 0.01, dtype=DTYPE))
    for noise in (torch.full((1, 1), 0.01, dtype=DTYPE), torch.tensor([0.01], dtype=DTYPE), torch.tensor(0.01)):
        p = m.posterior(X, observation_noise=noise)
        torch.testing.assert_close(p.variance, full.variance)
    torch.testing.assert_close(full.variance, m.posterior(X).variance + 0.01, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="observation_noise must broadcast"):
        m.posterior(X, observation_noise=torch.full((2, 1), 0.01, dtype=DTYPE))
    fm = m.fantasize(X, SobolQMCNormalSampler(torch.Size([2]), seed=0),
                     observation_noise=torch.full((1, 1), 0.01, dtype=DTYPE))
    assert fm.posterior(X).mean.shape == (2, 3, 1)


def test_nargp_marginals_do_not_depend_on_the_batch():
    """NARGP propagates each point on its own for its marginal moments: a point's
    mean and variance are the same alone and beside points of higher levels (a level-0
    point beside a level-2 one had taken a 64-path Monte Carlo variance, 4 % off;
    13 % in mixed batches)."""
    g = torch.Generator().manual_seed(5)
    X = torch.rand(30, 2, generator=g, dtype=DTYPE)
    fid = torch.tensor([0] * 14 + [1] * 10 + [2] * 6)
    Y = (torch.sin(4 * X[:, 0]) * (1 + 0.3 * fid) + X[:, 1] ** 2).unsqueeze(-1)
    m = NARGP.from_dataset(Dataset(X=X, Y=Y, fidelity=fid))
    pts = torch.tensor([[0.4, 0.6, 0.0], [0.4, 0.6, 1.0], [0.9, 0.1, 2.0], [0.2, 0.3, 0.0]], dtype=DTYPE)
    both = m.posterior(pts)
    for i in range(len(pts)):
        alone = m.posterior(pts[i : i + 1])
        torch.testing.assert_close(both.mean[i], alone.mean[0], rtol=1e-9, atol=1e-12)
        # (the posterior jitter, 1e-9 of the batch's mean variance, is the only difference)
        torch.testing.assert_close(both.variance[i], alone.variance[0], rtol=1e-7, atol=1e-14)


def _lognormal_two_level(seed: int = 0):
    """Level 0 the exponential of a smooth function (25 points in 2D), level 1 a multiple of
    it plus a linear term at 8 of those points."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(25, 2, generator=g, dtype=DTYPE)
    f0 = lambda x: torch.exp(2 * x[:, 0] - x[:, 1] + 0.5 * torch.sin(5 * x[:, 0]))  # noqa: E731
    f1 = lambda x: 1.5 * f0(x) + 0.3 * x[:, 1]  # noqa: E731
    X = torch.cat([x0, x0[:8]])
    fid = torch.tensor([0] * 25 + [1] * 8)
    Y = torch.where(fid == 0, f0(X), f1(X)).unsqueeze(-1)
    return Dataset(X=X, Y=Y, fidelity=fid), f0, f1


def test_log_warp_is_an_explicit_option_equivariant_under_positive_scaling(tmp_path):
    """``warp="log"`` krigs log y_0: noise-free level-0 data are interpolated (the log-normal
    mean at zero variance is exp of the log-space mean), predictions scale with y -> a y
    (a > 0), a save/load round trip predicts the same, a non-positive level 0 is refused by
    value, and the default leaves the data unwarped."""
    from surrogates.base import load_surrogate, save_surrogate

    ds, f0, f1 = _lognormal_two_level()
    b = [[0.0, 0.0], [1.0, 1.0]]
    m = RecursiveCoKriging.from_dataset(ds, warp="log", noise="none", bounds=b)
    assert RecursiveCoKriging.from_dataset(ds, noise="none", bounds=b).get_config()["warp"] == "none"
    x0 = ds.X[ds.fidelity == 0]
    mu0, var0 = m.predict(x0, 0)
    torch.testing.assert_close(mu0, f0(x0), rtol=1e-6, atol=0)
    assert float(var0.max()) < 1e-8 * float(f0(x0).var())
    Xt = torch.rand(200, 2, generator=torch.Generator().manual_seed(5), dtype=DTYPE)
    mu, var = m.predict(Xt, 1)
    assert (var > 0).all()
    for a in (3.7, 1e-3):
        ma = RecursiveCoKriging.from_dataset(Dataset(X=ds.X, Y=a * ds.Y, fidelity=ds.fidelity), warp="log",
                                             noise="none", bounds=b)
        mua, vara = ma.predict(Xt, 1)
        torch.testing.assert_close(mua / a, mu, rtol=1e-9, atol=1e-12 * float(mu.abs().max()))
        torch.testing.assert_close(vara / a**2, var, rtol=1e-7, atol=1e-12 * float(var.max()))
    save_surrogate(m, tmp_path / "m")
    back = load_surrogate(tmp_path / "m")
    torch.testing.assert_close(back.predict(Xt, 1)[0], mu, rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match=r"warp='log' needs positive level-0 outputs, got min -1\.0"):
        RecursiveCoKriging.from_dataset(Dataset(X=ds.X, Y=ds.Y - 2.0, fidelity=ds.fidelity), warp="log")
    with pytest.raises(ValueError, match=r"warp must be one of \('none', 'log'\), got 'auto'"):
        RecursiveCoKriging.from_dataset(ds, warp="auto")


def test_log_warp_fits_an_exponential_level_better_and_fantasizes():
    """On a level 0 that is the exponential of a smooth function, the log warp predicts both
    levels more accurately than the unwarped default; a fantasy model conditioned through the
    warp has finite posteriors."""
    ds, f0, f1 = _lognormal_two_level()
    Xt = torch.rand(500, 2, generator=torch.Generator().manual_seed(6), dtype=DTYPE)
    err = {}
    for w in ("none", "log"):
        m = RecursiveCoKriging.from_dataset(ds, warp=w, noise="none", bounds=[[0, 0], [1, 1]])
        err[w] = [float(nrmse(f(Xt), m.predict(Xt, t)[0])) for t, f in ((0, f0), (1, f1))]
    assert all(e_log < 0.5 * e_none for e_log, e_none in zip(err["log"], err["none"], strict=True)), err
    fm = m.fantasize(torch.tensor([[[0.3, 0.6, 0.0]]], dtype=DTYPE), SobolQMCNormalSampler(torch.Size([4])))
    post = fm.posterior(torch.tensor([[0.2, 0.2, 1.0], [0.7, 0.1, 1.0]], dtype=DTYPE))
    assert torch.isfinite(post.mean).all() and (post.variance > 0).all()
    # the gradient through a level-0 fantasy value (the rounding of the log targets passes it)
    Xf, Xq = torch.tensor([[[0.3, 0.6, 0.0]]], dtype=DTYPE), torch.tensor([[0.3, 0.6, 1.0]], dtype=DTYPE)
    noise = torch.full((1, 1, 1), 1e-4, dtype=DTYPE)

    def top_mean(y):
        return m.condition_on_observations(Xf, y.reshape(1, 1, 1), noise=noise).posterior(Xq).mean.sum()

    y = torch.tensor(2.0, dtype=DTYPE, requires_grad=True)
    (grad,) = torch.autograd.grad(top_mean(y), y)
    with torch.no_grad():
        fd = (top_mean(torch.tensor(2.001, dtype=DTYPE)) - top_mean(torch.tensor(1.999, dtype=DTYPE))) / 0.002
    assert abs(float(grad)) > 1e-4 and float(grad) == pytest.approx(float(fd), rel=1e-4)
