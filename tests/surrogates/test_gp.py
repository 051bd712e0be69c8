"""GP surrogates: contract, exactness against hand-computed GP algebra,
likelihood gradients, calibration, known noise, ICM transfer, material response."""

import functools
import math
import re
import warnings

import gpytorch
import numpy as np
import pytest
import torch
from gpytorch.mlls import ExactMarginalLogLikelihood

from oracles.exceptions import InvalidInput
from surrogates import Dataset
from surrogates.gp import GPSurrogate, ICMGPSurrogate
from surrogates.metrics import coverage, rmse
from surrogates.testing import ConstitutiveSurrogateTests, SurrogateContractTests

D = torch.float64


def branin01(X):
    """Branin on [0, 1]^2, scaled to O(1)."""
    x1, x2 = 15 * X[:, 0] - 5, 15 * X[:, 1]
    return ((x2 - 5.1 / (4 * math.pi**2) * x1**2 + 5 / math.pi * x1 - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * torch.cos(x1) + 10) / 50


def smooth(X):
    return torch.sin(2 * math.pi * X[:, 0]) + 0.5 * torch.cos(3 * X[:, 1])


def lhs(n, d, seed):
    """Latin hypercube in [0, 1]^d."""
    g = torch.Generator().manual_seed(seed)
    cols = [(torch.randperm(n, generator=g).to(D) + torch.rand(n, generator=g, dtype=D)) / n for _ in range(d)]
    return torch.stack(cols, -1)


def linear_elastic_P(F, lam=1.0, mu=0.5):
    """Small-strain-like law P = lam tr(H) I + mu (H + H^T), H = F - I."""
    k = F.shape[-1]
    H = F - torch.eye(k, dtype=D)
    tr = H.diagonal(dim1=-2, dim2=-1).sum(-1)
    return lam * tr[:, None, None] * torch.eye(k, dtype=D) + mu * (H + H.transpose(-1, -2))


# --------------------------------------------------------------------- contract
class TestGPSingleOutputContract(SurrogateContractTests):
    def make_dataset(self):
        X = lhs(12, 2, 0)
        return Dataset(X=X, Y=branin01(X))

    def fit(self, dataset):
        return GPSurrogate.from_dataset(dataset, n_restarts=2, bounds=[[0, 0], [1, 1]])


class TestGPMultiOutputKnownNoiseContract(SurrogateContractTests):
    def make_dataset(self):
        X = lhs(12, 2, 1)
        Y = torch.stack([branin01(X), smooth(X)], -1)
        return Dataset(X=X, Y=Y, Yvar=torch.full_like(Y, 1e-4))

    def fit(self, dataset):
        return GPSurrogate.from_dataset(dataset, n_restarts=2)


class TestICMContract(SurrogateContractTests):
    def make_dataset(self):
        X = lhs(10, 2, 2)
        Y = torch.stack([smooth(X), smooth(X) + 0.3 * X[:, 1]], -1)
        observed = torch.ones_like(Y, dtype=torch.bool)
        observed[::2, 1] = False
        return Dataset(X=X, Y=Y, observed=observed)

    def fit(self, dataset):
        return ICMGPSurrogate.from_dataset(dataset, n_restarts=1, maxiter=100)


@functools.lru_cache(maxsize=1)
def _constitutive_gp():
    """GP from H = F - I (9 components) to P (9 components) of a linear law, fitted once."""
    g = torch.Generator().manual_seed(11)
    F = torch.eye(3, dtype=D) + 0.04 * (2 * torch.rand(24, 3, 3, generator=g, dtype=D) - 1)
    ds = Dataset(X=(F - torch.eye(3, dtype=D)).reshape(24, 9), Y=linear_elastic_P(F).reshape(24, 9))
    return GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=80)


class TestConstitutiveGPContract(SurrogateContractTests, ConstitutiveSurrogateTests):
    def make_dataset(self):
        return _constitutive_gp().train_dataset

    def fit(self, dataset):
        return _constitutive_gp()


# ------------------------------------------------------------ exactness checks
@pytest.fixture(scope="module")
def noise_free_gp():
    X = lhs(15, 2, 4)
    ds = Dataset(X=X, Y=branin01(X), Yvar=torch.zeros(15, 1, dtype=D))
    return GPSurrogate.from_dataset(ds, n_restarts=2, bounds=[[0, 0], [1, 1]])


def test_interpolates_noise_free_data(noise_free_gp):
    ds = noise_free_gp.train_dataset
    with torch.no_grad():
        post = noise_free_gp.posterior(ds.X)
    scale = ds.Y.std()
    assert (post.mean - ds.Y).abs().max() < 1e-5 * scale
    # and the predictive variance collapses at the data
    assert post.variance.max().sqrt() < 1e-3 * scale


def test_inferred_noise_is_small_on_noise_free_data():
    # without Yvar the noise is inferred (MAP, weak prior): it must come out
    # small on noise-free data, so the GP nearly interpolates
    X = lhs(15, 2, 5)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=branin01(X)), n_restarts=1)
    with torch.no_grad():
        err = (gp.posterior(X).mean.squeeze(-1) - branin01(X)).abs().max()
    assert gp.likelihood.noise.item() < 1e-2  # standardized units: < 1% of Var(Y)
    assert err < 5e-2 * branin01(X).std()


def _hand_posterior(gp, Xq):
    """Exact GP algebra, written out: mean c + k*^T A^-1 (y - c), cov k** - k*^T A^-1 k*."""
    with torch.no_grad():
        tf = gp.input_transform
        Xn, Xqn = tf(gp.train_dataset.X), tf(Xq)
        K = gp.covar_module(Xn).to_dense()
        Ks = gp.covar_module(Xn, Xqn).to_dense()
        Kss = gp.covar_module(Xqn).to_dense()
        y = gp.train_targets  # standardized
        c = gp.mean_module.constant
        noise = gp.likelihood.noise.reshape(-1)
        A = K + torch.diag(noise.expand(K.shape[-1]))
        L = torch.linalg.cholesky(A)
        mean = c + Ks.T @ torch.cholesky_solve((y - c).unsqueeze(-1), L).squeeze(-1)
        cov = Kss - Ks.T @ torch.cholesky_solve(Ks, L)
        mu, sd = gp.outcome_transform.means.squeeze(), gp.outcome_transform.stdvs.squeeze()
    return mu + sd * mean, sd**2 * cov


@pytest.mark.parametrize("noisy", [False, True])
def test_posterior_matches_hand_computed_gp(noisy):
    X = lhs(14, 2, 6)
    Y = branin01(X)
    if noisy:
        Y = Y + 0.05 * torch.randn(14, generator=torch.Generator().manual_seed(0), dtype=D)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y), n_restarts=1)
    Xq = lhs(7, 2, 7)
    mean_ref, cov_ref = _hand_posterior(gp, Xq)
    with torch.no_grad():
        post = gp.posterior(Xq)
        cov = post.distribution.covariance_matrix
    torch.testing.assert_close(post.mean.squeeze(-1), mean_ref, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(cov, cov_ref, rtol=1e-6, atol=1e-10)
    # predictive std = sqrt of the covariance diagonal
    torch.testing.assert_close(post.variance.squeeze(-1).sqrt(), cov_ref.diagonal().sqrt(), rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("known_noise", [False, True])
def test_mll_gradients_match_finite_differences(known_noise):
    X = lhs(10, 2, 8)
    Y = torch.stack([branin01(X), smooth(X)], -1)
    Yvar = torch.full_like(Y, 1e-3) if known_noise else None
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=Yvar), n_restarts=1, maxiter=20)
    gp.train()
    mll = ExactMarginalLogLikelihood(gp.likelihood, gp)

    def objective():
        out = gp(*gp.train_inputs)
        return mll(out, gp.train_targets, *gp.train_inputs).sum()

    params = [(n, p) for n, p in gp.named_parameters() if p.requires_grad]
    assert len(params) >= 3
    grads = torch.autograd.grad(objective(), [p for _, p in params])
    h = 1e-6
    for (name, p), g in zip(params, grads, strict=True):
        flat = p.data.view(-1)
        for i in range(flat.numel()):
            old = flat[i].item()
            with torch.no_grad():
                flat[i] = old + h
                fp = objective().item()
                flat[i] = old - h
                fm = objective().item()
                flat[i] = old
            fd = (fp - fm) / (2 * h)
            assert g.view(-1)[i].item() == pytest.approx(fd, rel=1e-4, abs=1e-6), name


def test_restarts_never_worse_than_single_start():
    X = lhs(12, 2, 9)
    ds = Dataset(X=X, Y=branin01(X) + 0.02 * torch.randn(12, generator=torch.Generator().manual_seed(1), dtype=D))
    from surrogates.gp import fit_with_restarts

    one = GPSurrogate._build(ds, {**GPSurrogate._defaults})
    v1 = fit_with_restarts(one, n_restarts=1, maxiter=60)
    many = GPSurrogate._build(ds, {**GPSurrogate._defaults})
    v4 = fit_with_restarts(many, n_restarts=3, maxiter=60)
    assert v4 >= v1 - 1e-9


# -------------------------------------------------------------- calibration
@pytest.mark.parametrize("seeds", [(0, 1, 2)])
def test_coverage_95_on_held_out_noisy_data(seeds):
    covs = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        X = lhs(40, 2, 100 + seed)
        Y = smooth(X) + 0.1 * torch.randn(40, generator=g, dtype=D)
        gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y), n_restarts=1, seed=seed)
        Xt = torch.rand(300, 2, generator=g, dtype=D)
        Yt = smooth(Xt) + 0.1 * torch.randn(300, generator=g, dtype=D)
        with torch.no_grad():
            post = gp.posterior(Xt, observation_noise=True)
        covs.append(coverage(Yt, post.mean.squeeze(-1), post.variance.squeeze(-1)).item())
    avg = sum(covs) / len(covs)
    assert 0.85 <= avg <= 0.99, covs


# ----------------------------------------------------------- known noise
def test_known_heteroskedastic_noise_is_used():
    X = torch.linspace(0, 1, 15, dtype=D).unsqueeze(-1)
    f = lambda x: torch.sin(4 * x).squeeze(-1)  # noqa: E731
    Y = f(X)
    X_out = torch.tensor([[0.5]], dtype=D)  # off the design grid
    X_all = torch.cat([X, X_out])
    Y_all = torch.cat([Y, f(X_out) + 3.0])  # a gross outlier at x = 0.5
    small = torch.full((16, 1), 1e-6, dtype=D)

    huge = small.clone()
    huge[-1] = 1e4
    gp_huge = GPSurrogate.from_dataset(Dataset(X=X_all, Y=Y_all, Yvar=huge), n_restarts=1)
    gp_small = GPSurrogate.from_dataset(Dataset(X=X_all, Y=Y_all, Yvar=small), n_restarts=1)
    with torch.no_grad():
        m_huge = gp_huge.posterior(X_out).mean.item()
        m_small = gp_small.posterior(X_out).mean.item()
        # and the noise the likelihood uses is the one we gave (standardized)
        sd = gp_huge.outcome_transform.stdvs.item()
    truth = f(X_out).item()
    assert abs(m_huge - truth) < 0.01  # the noisy point has no pull
    assert abs(m_small - truth) > 1.0  # the same point with small noise is followed
    torch.testing.assert_close(gp_huge.likelihood.noise[-1].item() * sd**2, 1e4, rtol=1e-10, atol=0)


# ------------------------------------------------------------------ ICM
def test_icm_transfers_from_densely_observed_output():
    f1 = lambda X: torch.sin(6 * X[:, 0])  # noqa: E731
    f2 = lambda X: 2.0 * torch.sin(6 * X[:, 0]) + 0.3  # noqa: E731  (correlation 1 with f1)
    X = torch.linspace(0, 1, 20, dtype=D).unsqueeze(-1)
    Y = torch.stack([f1(X), f2(X)], -1)
    observed = torch.zeros_like(Y, dtype=torch.bool)
    observed[:, 0] = True
    observed[[1, 8, 13, 18], 1] = True  # output 2 seen at 4 points only
    ds = Dataset(X=X, Y=Y * observed, observed=observed)
    icm = ICMGPSurrogate.from_dataset(ds, n_restarts=2, maxiter=100)
    ind = GPSurrogate.from_dataset(Dataset(X=X[observed[:, 1]], Y=Y[observed[:, 1], 1]), n_restarts=2)
    Xt = torch.rand(200, 1, generator=torch.Generator().manual_seed(0), dtype=D)
    with torch.no_grad():
        post = icm.posterior(Xt)
        e_icm = rmse(f2(Xt), post.mean[:, 1]).item()
        e_ind = rmse(f2(Xt), ind.posterior(Xt).mean.squeeze(-1)).item()
        corr = icm.task_correlation()[0, 1].item()
        # the posterior of the two outputs at one point is strongly correlated
    assert corr > 0.9, corr  # the truth is 1; independent GPs have 0 by construction
    assert e_icm < 0.3 * e_ind, (e_icm, e_ind)


def test_icm_fit_is_reproducible_whatever_the_global_random_state():
    # the task kernel starts from torch.randn: the fit must draw it from ``seed``
    X = torch.linspace(0, 1, 12, dtype=D).unsqueeze(-1)
    Y = torch.cat([torch.sin(6 * X), torch.cos(4 * X)], -1)
    ds = Dataset(X=X, Y=Y)
    corrs = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        corrs.append(ICMGPSurrogate.from_dataset(ds, n_restarts=1, maxiter=50).task_correlation()[0, 1].item())
    assert corrs[0] == corrs[1], corrs


def test_a_fit_inside_no_grad_still_optimises_the_hyperparameters():
    X = torch.linspace(0, 1, 12, dtype=D).unsqueeze(-1)
    ds = Dataset(X=X, Y=torch.sin(6 * X))
    free = GPSurrogate.from_dataset(ds, n_restarts=1)
    with torch.no_grad():
        inside = GPSurrogate.from_dataset(ds, n_restarts=1)
    torch.testing.assert_close(inside.state_dict(), free.state_dict())


def test_noise_free_data_get_one_noise_floor_without_gpytorch_rounding_it():
    """Exact answers (``Yvar = 0``), fitted or conditioned on, get the same fixed noise:
    ``min_noise_rel`` of the output variance, which GPyTorch takes as it is (no
    NumericalWarning, no rounding up); a saved model with a smaller ``min_noise_rel``
    keeps the floor it had, GPyTorch's."""
    g = torch.Generator().manual_seed(3)
    X = torch.rand(10, 2, generator=g, dtype=D)
    Y = 50.0 + 20.0 * smooth(X).reshape(-1, 1)
    ds = Dataset(X=X, Y=Y, Yvar=torch.zeros_like(Y))
    with warnings.catch_warnings():
        warnings.simplefilter("error", gpytorch.utils.warnings.NumericalWarning)
        gp = GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=30)
        new = gp.condition_on_observations(X[:2] + 0.01, Y[:2], noise=torch.zeros(2, 1, dtype=D))
        old = GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=30, min_noise_rel=1e-10)
    for model, n in ((gp, 10), (new, 12), (old, 10)):
        noise = model.likelihood.noise.reshape(-1)  # standardized
        assert noise.shape == (n,)
        torch.testing.assert_close(noise, torch.full((n,), 1e-6, dtype=D), rtol=1e-8, atol=0.0)
        assert (noise >= 1e-6).all()


@pytest.mark.parametrize("m", [1, 3])
def test_conditioning_a_near_noise_free_gp_never_raises_its_variance(m):
    # exact answers (Yvar = 0) are floored at min_noise_rel (1e-6 of the output
    # variance): conditioning must keep that floor for old and new points alike, so
    # the variance drops where the new point informs and stays put elsewhere, and
    # the closed-form predictor agrees with the generic posterior
    g = torch.Generator().manual_seed(4)
    X = torch.rand(15, 2, generator=g, dtype=D)
    Y = torch.cat([torch.sin(3 * X[:, :1] + k) * X[:, 1:] for k in range(m)], -1)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=torch.zeros_like(Y)), n_restarts=1, maxiter=60)
    Xn = torch.tensor([[0.97, 0.03]], dtype=D)
    new = gp.condition_on_observations(Xn, Y[:1] * 0 + 0.5, noise=torch.zeros(1, m, dtype=D))
    Xt = torch.cat([X, Xn, torch.rand(30, 2, generator=g, dtype=D)])
    with torch.no_grad():
        v0, v1 = gp.posterior(Xt).variance, new.posterior(Xt).variance
    # up to round-off: a variance k** - k*' K^-1 k* carries absolute errors of order eps times
    # the prior variance (about v0's largest), which at the noise floor (1e-9) is 1e-6 relative
    assert (v1 <= v0 * (1 + 1e-6) + 1e-12 * v0.max(0).values).all()
    assert (v1[15] < 1e-3 * v0[15]).all()  # the new point
    torch.testing.assert_close(v1[:15], v0[:15], rtol=0.05, atol=0.0)  # the old points keep their noise floor
    torch.testing.assert_close(new._mean_jac_var(Xt)[2], v1.reshape(-1, m), rtol=1e-6, atol=1e-12)


# ---------------------------------------------------------- material response
@pytest.fixture(scope="module")
def constitutive_gp():
    return _constitutive_gp()


def test_material_response_tangent_is_finite_difference_of_P(constitutive_gp):
    g = torch.Generator().manual_seed(12)
    F = torch.eye(3, dtype=D) + 0.03 * torch.randn(5, 3, 3, generator=g, dtype=D)
    r = constitutive_gp.material_response(F)
    assert r.P.shape == (5, 3, 3) and r.tangent.shape == (5, 3, 3, 3, 3) and r.variance.shape == (5,)
    assert (r.variance > 0).all()
    h = 1e-6
    fd = torch.empty(5, 3, 3, 3, 3, dtype=D)
    for k in range(3):
        for L in range(3):
            dF = torch.zeros(3, 3, dtype=D)
            dF[k, L] = h
            fd[..., k, L] = (constitutive_gp.material_response(F + dF).P - constitutive_gp.material_response(F - dF).P) / (2 * h)
    torch.testing.assert_close(r.tangent, fd, rtol=1e-5, atol=1e-7)
    # P is the posterior mean; chunking gives the same answer
    with torch.no_grad():
        mean = constitutive_gp.posterior((F - torch.eye(3, dtype=D)).reshape(5, 9)).mean
    torch.testing.assert_close(r.P.reshape(5, 9), mean, rtol=1e-9, atol=1e-12)
    r2 = constitutive_gp.material_response(F, chunk_size=2)
    torch.testing.assert_close(r2.tangent, r.tangent)


def test_material_response_learns_the_law(constitutive_gp):
    # inside the training range the linear law is reproduced, tangent included
    F = torch.eye(3, dtype=D) + 0.02 * torch.randn(20, 3, 3, generator=torch.Generator().manual_seed(13), dtype=D)
    r = constitutive_gp.material_response(F)
    P = linear_elastic_P(F)
    assert (r.P - P).norm() / P.norm() < 0.05
    lam, mu = 1.0, 0.5
    I = torch.eye(3, dtype=D)
    C = lam * torch.einsum("ij,kl->ijkl", I, I) + mu * (torch.einsum("ik,jl->ijkl", I, I) + torch.einsum("il,jk->ijkl", I, I))
    assert (r.tangent.mean(0) - C).norm() / C.norm() < 0.1


def test_material_response_bad_input(constitutive_gp, noise_free_gp):
    with pytest.raises(InvalidInput, match="shape"):
        constitutive_gp.material_response(torch.eye(2, dtype=D).expand(3, 2, 2))
    F = torch.eye(3, dtype=D).repeat(2, 1, 1)
    F[1, 0, 0] = float("nan")
    with pytest.raises(InvalidInput, match="nan"):
        constitutive_gp.material_response(F)
    with pytest.raises(TypeError, match="not a constitutive surrogate"):
        noise_free_gp.material_response(torch.eye(3, dtype=D).unsqueeze(0))


def test_posterior_noise_tensor_is_in_output_units_and_bad_inputs_are_refused(noise_free_gp):
    """A tensor ``observation_noise`` adds its variances in output units (branin01 spans
    about 300), as the co-kriging models read it; NaN and numpy inputs get one-line errors."""
    Xq = lhs(4, 2, 9)
    with torch.no_grad():
        latent = noise_free_gp.posterior(Xq).variance
        noisy = noise_free_gp.posterior(Xq, observation_noise=torch.full((4, 1), 2.5, dtype=D)).variance
    torch.testing.assert_close(noisy - latent, torch.full_like(latent, 2.5), rtol=1e-9, atol=1e-9)
    Xq[1, 0] = float("nan")
    with pytest.raises(InvalidInput, match="X contains nan or inf entries"):
        noise_free_gp.posterior(Xq)
    with pytest.raises(TypeError, match="X must be a torch.Tensor .* got ndarray"):
        noise_free_gp.posterior(np.zeros((2, 2)))


def test_bad_options_and_data():
    X = lhs(6, 2, 14)
    ds = Dataset(X=X, Y=branin01(X))
    with pytest.raises(TypeError, match="n_restart"):
        GPSurrogate.from_dataset(ds, n_restart=3)
    with pytest.raises(ValueError, match="bounds"):
        GPSurrogate.from_dataset(ds, bounds=[[0, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="n_restarts"):
        GPSurrogate.from_dataset(ds, n_restarts=0)
    # wrong types and ranges, each named in one line before any fit
    for opts, match in (({"n_restarts": "4"}, "n_restarts must be an integer >= 1, got '4'"),
                        ({"seed": 0.5}, "seed must be an integer, got 0.5"),
                        ({"min_noise": -1.0}, "min_noise must be a finite number > 0, got -1.0"),
                        ({"min_noise_rel": float("nan")}, "min_noise_rel must be a finite number >= 0"),
                        ({"maxiter": True}, "maxiter must be an integer >= 1, got True")):
        with pytest.raises(ValueError, match=re.escape(match)):
            GPSurrogate.from_dataset(ds, **opts)
    obs = torch.ones(6, 2, dtype=torch.bool)
    obs[0, 1] = False
    ds2 = Dataset(X=X, Y=torch.stack([branin01(X), smooth(X)], -1), observed=obs)
    with pytest.raises(ValueError, match="ICMGPSurrogate"):
        GPSurrogate.from_dataset(ds2)
    with pytest.raises(ValueError, match="m >= 2"):
        ICMGPSurrogate.from_dataset(ds)


def test_shared_lengthscale_fit_is_the_joint_optimum():
    # outputs that are affine images of one another standardize to the same
    # data: the shared objective is m copies of the single-output one, so its
    # optimum is the single-output GP's lengthscales (same start, no restarts)
    X = lhs(24, 2, 5)
    y = branin01(X)
    one = GPSurrogate.from_dataset(Dataset(X=X, Y=y.unsqueeze(-1)), n_restarts=1, min_noise=1e-4)
    both = GPSurrogate.from_dataset(Dataset(X=X, Y=torch.stack([y, 3.0 * y - 2.0], -1)), n_restarts=1,
                                    min_noise=1e-4, shared_lengthscale=True)
    ls_one = one.covar_module.base_kernel.lengthscale.reshape(-1)
    ls_both = both.covar_module.base_kernel.lengthscale
    assert ls_both.shape == (1, 2)
    torch.testing.assert_close(ls_both.reshape(-1), ls_one, rtol=2e-3, atol=0)
    # and an independent second output still gets its own lengthscales otherwise
    indep = GPSurrogate.from_dataset(Dataset(X=X, Y=torch.stack([y, smooth(X)], -1)), n_restarts=1)
    assert indep.covar_module.base_kernel.lengthscale.shape == (2, 1, 2)
    with pytest.raises(TypeError, match="shared_lengthscale must be True or False, got 'yes'"):
        GPSurrogate.from_dataset(Dataset(X=X, Y=y.unsqueeze(-1)), shared_lengthscale="yes")


@pytest.mark.parametrize("known_noise", [False, True])
def test_closed_form_predictor_matches_gpytorch_posterior(known_noise):
    # the fast Matérn-5/2 path of material_response against GPyTorch's posterior
    # and autograd through it (the generic path the ICM model uses)
    from surrogates.gp import _GPCommon

    g = torch.Generator().manual_seed(15)
    X = 0.05 * torch.randn(15, 4, generator=g, dtype=D)
    Y = torch.stack([X[:, 0] + X[:, 3], torch.sin(10 * X[:, 1]), X[:, 2] ** 2, X.sum(-1)], -1)
    Yvar = torch.full_like(Y, 1e-5) if known_noise else None
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=Yvar), n_restarts=1, maxiter=40)
    Xq = 0.05 * torch.randn(6, 4, generator=g, dtype=D)
    mean, jac, var = gp._mean_jac_var(Xq)
    mean_ref, jac_ref, var_ref = _GPCommon._mean_jac_var(gp, Xq)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(jac, jac_ref, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(var, var_ref, rtol=1e-6, atol=1e-12)


def test_icm_material_response_tangent_is_finite_difference():
    # the ICM model takes the generic (autograd through posterior) path
    g = torch.Generator().manual_seed(16)
    F = torch.eye(2, dtype=D) + 0.04 * (2 * torch.rand(10, 2, 2, generator=g, dtype=D) - 1)
    ds = Dataset(X=(F - torch.eye(2, dtype=D)).reshape(10, 4), Y=linear_elastic_P(F).reshape(10, 4))
    icm = ICMGPSurrogate.from_dataset(ds, n_restarts=1, maxiter=30)
    Fq = torch.eye(2, dtype=D) + 0.02 * torch.randn(3, 2, 2, generator=g, dtype=D)
    r = icm.material_response(Fq)
    assert r.P.shape == (3, 2, 2) and r.tangent.shape == (3, 2, 2, 2, 2) and (r.variance > 0).all()
    h = 1e-6
    for k in range(2):
        for L in range(2):
            dF = torch.zeros(2, 2, dtype=D)
            dF[k, L] = h
            fd = (icm.material_response(Fq + dF).P - icm.material_response(Fq - dF).P) / (2 * h)
            torch.testing.assert_close(r.tangent[..., k, L], fd, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        post = icm.posterior((Fq - torch.eye(2, dtype=D)).reshape(3, 4))
    torch.testing.assert_close(r.variance, post.variance.mean(-1), rtol=1e-8, atol=1e-12)


def test_multi_fidelity_dataset_is_refused():
    X = lhs(6, 2, 17)
    ds = Dataset(X=X, Y=branin01(X), fidelity=torch.tensor([0, 0, 0, 1, 1, 1]))
    with pytest.raises(ValueError, match="fidelity levels"):
        GPSurrogate.from_dataset(ds)


# ------------------------------------------- closed-form fast path, exactness
def _random_hyper_gp(dim, n_train, seed, transforms=True, known_noise=False, shared=False):
    """Constitutive GP (k*k -> k*k) with random hyperparameters, no fit: the
    fast path must equal GPyTorch for any hyperparameters. ``shared``: one
    lengthscale vector for all outputs (``shared_lengthscale=True``)."""
    from botorch.models.transforms.input import Normalize
    from botorch.models.transforms.outcome import Standardize
    from gpytorch.kernels import MaternKernel, ScaleKernel

    g = torch.Generator().manual_seed(seed)
    k = dim * dim
    F = torch.eye(dim, dtype=D) + 0.2 * (2 * torch.rand(n_train, dim, dim, generator=g, dtype=D) - 1)
    X = (F - torch.eye(dim, dtype=D)).reshape(n_train, k)
    Y = 3.0 * linear_elastic_P(F).reshape(n_train, k) + 0.5 * X.pow(2) + 2.0
    Yvar = torch.full_like(Y, 1e-4) if known_noise else None
    covar = ScaleKernel(MaternKernel(nu=2.5, ard_num_dims=k,
                                     batch_shape=torch.Size() if shared else torch.Size([k])),
                        batch_shape=torch.Size([k]))
    bounds = torch.stack([X.min(0).values - 0.1, X.max(0).values + 0.3])
    gp = GPSurrogate(
        train_X=X, train_Y=Y, train_Yvar=Yvar, covar_module=covar,
        outcome_transform=Standardize(m=k) if transforms else None,
        input_transform=Normalize(d=k, bounds=bounds) if transforms else None,
    )
    gp.train_dataset = Dataset(X=X, Y=Y, Yvar=Yvar)
    gp._sb_config = {**GPSurrogate._defaults, "dim_F": dim, "shared_lengthscale": shared}
    gp.covar_module.base_kernel.lengthscale = 0.2 + 1.5 * torch.rand(
        *(() if shared else (k,)), 1, k, generator=g, dtype=D)
    gp.covar_module.outputscale = 0.5 + torch.rand(k, generator=g, dtype=D)
    gp.mean_module.constant.data = torch.randn(k, generator=g, dtype=D) * 0.3
    if not known_noise:
        gp.likelihood.noise = 1e-3 * (1 + torch.rand(k, 1, generator=g, dtype=D))
    gp.eval()
    return gp


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("transforms", [True, False])
@pytest.mark.parametrize("known_noise", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_fast_path_equals_gpytorch_posterior_and_autograd(dim, transforms, known_noise, shared):
    # mean, Jacobian of the mean and marginal variances against GPyTorch's
    # posterior and autograd through it, random hyperparameters and inputs
    from surrogates.gp import _GPCommon

    gp = _random_hyper_gp(dim, 60, seed=20 + dim, transforms=transforms, known_noise=known_noise,
                          shared=shared)
    g = torch.Generator().manual_seed(21)
    Xq = 0.25 * (2 * torch.rand(40, dim * dim, generator=g, dtype=D) - 1)
    mean, jac, var = gp._mean_jac_var(Xq)
    mean_ref, jac_ref, var_ref = _GPCommon._mean_jac_var(gp, Xq)
    assert jac.shape == (40, dim * dim, dim * dim)
    torch.testing.assert_close(mean, mean_ref, rtol=1e-9, atol=1e-9 * mean_ref.abs().max().item())
    torch.testing.assert_close(jac, jac_ref, rtol=1e-9, atol=1e-9 * jac_ref.abs().max().item())
    torch.testing.assert_close(var, var_ref, rtol=1e-9, atol=1e-9 * var_ref.abs().max().item())
    # also independent of how the points are chunked and blocked
    F = torch.eye(dim, dtype=D) + Xq.reshape(40, dim, dim)
    r = gp.material_response(F, chunk_size=7)
    torch.testing.assert_close(r.P.reshape(40, -1), mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r.variance, var.mean(-1), rtol=1e-12, atol=1e-14)


def test_fast_path_blocks_and_finite_differences_2d():
    gp = _random_hyper_gp(2, 80, seed=30)
    g = torch.Generator().manual_seed(31)
    n = GPSurrogate._FAST_BLOCK + 37  # more than one block in a chunk
    F = torch.eye(2, dtype=D) + 0.2 * (2 * torch.rand(n, 2, 2, generator=g, dtype=D) - 1)
    r = gp.material_response(F, chunk_size=4096, with_variance=False)
    assert r.variance is None
    r_small = gp.material_response(F, chunk_size=5, with_variance=False)
    torch.testing.assert_close(r.tangent, r_small.tangent, rtol=1e-12, atol=1e-12)
    # blocks shared among 2 worker threads: same numbers, thread setting restored
    prev = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        r2 = gp.material_response(F, chunk_size=4096)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(prev)
    # one thread against blocks shared among two: same numbers up to round-off
    torch.testing.assert_close(r2.tangent, r.tangent, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r2.P, r.P, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(r2.variance, gp.material_response(F, chunk_size=4096).variance, rtol=0, atol=0)
    h = 1e-6
    Fs = F[:6]
    for k in range(2):
        for L in range(2):
            dF = torch.zeros(2, 2, dtype=D)
            dF[k, L] = h
            fd = (gp.material_response(Fs + dF).P - gp.material_response(Fs - dF).P) / (2 * h)
            torch.testing.assert_close(r.tangent[:6, ..., k, L], fd, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shared", [False, True])
def test_float32_evaluation_is_float64_up_to_single_precision_round_off(shared):
    gp = _random_hyper_gp(3, 60, seed=35, shared=shared)
    g = torch.Generator().manual_seed(36)
    F = torch.eye(3, dtype=D) + 0.2 * (2 * torch.rand(150, 3, 3, generator=g, dtype=D) - 1)
    r64 = gp.material_response(F)
    r32 = gp.material_response(F, dtype=torch.float32)
    assert r32.P.dtype == r32.tangent.dtype == r32.variance.dtype == torch.float32
    # kernel values carry eps32 ~ 6e-8 relative error, amplified by the cancellation
    # in the sum over training points: |a| |k| summed against the result
    c = gp._fast_terms()
    amplification = float(c["a3"].abs().sum() * 3 / c["scale"].min())
    for a, b in ((r32.P, r64.P), (r32.tangent, r64.tangent), (r32.variance, r64.variance)):
        err = float((a.double() - b).abs().max() / b.abs().max())
        assert 0 < err < torch.finfo(torch.float32).eps * max(1.0, amplification), (err, amplification)
    from surrogates.gp import ICMGPSurrogate

    with pytest.raises(ValueError, match="dtype must be torch.float64 or torch.float32"):
        gp.material_response(F, dtype=torch.float16)
    icm = ICMGPSurrogate.from_dataset(gp.train_dataset, n_restarts=1, maxiter=5)
    with pytest.raises(ValueError, match="float64 only"):
        icm.material_response(F[:3], dtype=torch.float32)
    # the float32 cache leaves the model as it was: it can still be copied and conditioned
    # (before, a non-leaf cache entry made deepcopy, and so GPyTorch's fantasy update, fail)
    import copy

    copy.deepcopy(gp)
    new = gp.condition_on_observations(F[:2], r64.P[:2] + 0.01)
    assert new.train_dataset.n == gp.train_dataset.n + 2


def test_fast_cache_follows_load_state_dict():
    # new hyperparameters must not be served from the old cache
    from surrogates.gp import _GPCommon

    gp = _random_hyper_gp(2, 30, seed=40)
    Xq = 0.1 * torch.randn(5, 4, generator=torch.Generator().manual_seed(41), dtype=D)
    before = gp._mean_jac_var(Xq)[0]
    state = gp.state_dict()
    state["covar_module.base_kernel.raw_lengthscale"] = state["covar_module.base_kernel.raw_lengthscale"] * 1.5
    gp.load_state_dict(state)
    gp.eval()
    after = gp._mean_jac_var(Xq)[0]
    torch.testing.assert_close(after, _GPCommon._mean_jac_var(gp, Xq)[0], rtol=1e-9, atol=1e-12)
    assert (after - before).abs().max() > 1e-6


# ------------------------------------------- conditioning and batch selection
def _fitted_constitutive(dim, n, seed, shared=False, known_noise=False):
    g = torch.Generator().manual_seed(seed)
    F = torch.eye(dim, dtype=D) + 0.15 * (2 * torch.rand(n, dim, dim, generator=g, dtype=D) - 1)
    X = (F - torch.eye(dim, dtype=D)).reshape(n, -1)
    Y = linear_elastic_P(F).reshape(n, -1) + 0.3 * X.pow(2)
    Yvar = torch.full_like(Y, 1e-4) if known_noise else None
    return GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=Yvar), n_restarts=1, maxiter=40,
                                    shared_lengthscale=shared)


def _new_points(dim, n, seed):
    g = torch.Generator().manual_seed(seed)
    F = torch.eye(dim, dtype=D) + 0.2 * (2 * torch.rand(n, dim, dim, generator=g, dtype=D) - 1)
    X = (F - torch.eye(dim, dtype=D)).reshape(n, -1)
    return F, X, linear_elastic_P(F).reshape(n, -1) + 0.3 * X.pow(2)


@pytest.mark.parametrize(("dim", "shared", "known_noise"),
                         [(2, False, False), (2, True, True), (3, True, False)])
def test_conditioning_equals_a_refit_with_fixed_hyperparameters(dim, shared, known_noise, tmp_path):
    from surrogates import load_surrogate, save_surrogate
    from surrogates.gp import _GPCommon

    gp = _fitted_constitutive(dim, 30, seed=50 + dim, shared=shared, known_noise=known_noise)
    F_new, X_new, Y_new = _new_points(dim, 6, seed=51)
    kw = {"noise": torch.full_like(Y_new, 1e-4)} if known_noise else {}
    cond = gp.condition_on_observations(F_new, Y_new.reshape(6, dim, dim), **kw)
    assert cond is not gp and gp.train_dataset.n == 30 and cond.train_dataset.n == 36
    # the same model built on all 36 points with the fit's hyperparameters and transforms
    ds = Dataset(X=torch.cat([gp.train_dataset.X, X_new]), Y=torch.cat([gp.train_dataset.Y, Y_new]),
                 Yvar=None if not known_noise else torch.full((36, dim * dim), 1e-4, dtype=D))
    ref = GPSurrogate.from_config(gp.get_config(), ds)
    state = {k: v for k, v in gp.state_dict().items() if "noise_covar.noise" not in k}
    ref.load_state_dict(state, strict=False)
    ref.eval()
    Xq = _new_points(dim, 25, seed=52)[1]
    for got in (cond._mean_jac_var(Xq), _GPCommon._mean_jac_var(cond, Xq)):
        want = _GPCommon._mean_jac_var(ref, Xq)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * float(b.abs().max()))
    # conditioning changed the posterior: sure at the new points
    v_before = gp.material_response(F_new).variance
    v_after = cond.material_response(F_new).variance
    assert (v_after < v_before).all()
    # observed with noise variance 1e-4: the latent variance there is at most that
    assert v_after.max() < (1e-4 if known_noise else 0.1 * float(v_before.max()))
    # a conditioned model saved and loaded predicts the same
    save_surrogate(cond, tmp_path / "c")
    back = load_surrogate(tmp_path / "c")
    r0, r1 = cond.material_response(F_new), back.material_response(F_new)
    torch.testing.assert_close(r1.P, r0.P, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(r1.variance, r0.variance, rtol=1e-7, atol=1e-14)


def test_conditioning_bad_input():
    gp = _fitted_constitutive(2, 12, seed=60)
    F_new, X_new, Y_new = _new_points(2, 3, seed=61)
    with pytest.raises(InvalidInput, match="Y must be a finite n x 4"):
        gp.condition_on_observations(X_new, Y_new[:, :3])
    with pytest.raises(InvalidInput, match="inputs n x 4"):
        gp.condition_on_observations(X_new[:, :3], Y_new)
    with pytest.raises(InvalidInput, match=r"Y must be a finite n x 4 tensor with n = 2, got shape \(3, 4\)"):
        gp.condition_on_observations(X_new[:2], Y_new)  # had failed inside a reshape
    known = _fitted_constitutive(2, 12, seed=60, known_noise=True)
    with pytest.raises(ValueError, match="noise"):
        known.condition_on_observations(X_new, Y_new)
    for bad in (float("nan"), -1.0):  # a NaN reached the Cholesky, a negative one was floored silently
        with pytest.raises(InvalidInput, match=r"noise must be n x m = 3 x 4 finite variances >= 0"):
            known.condition_on_observations(X_new, Y_new, noise=torch.full((3, 4), bad, dtype=D))
    with pytest.raises(InvalidInput, match=r"noise must be n x m = 3 x 4 .* got shape \(2, 4\)"):
        known.condition_on_observations(X_new, Y_new, noise=torch.zeros(2, 4, dtype=D))
    with pytest.raises(ValueError, match="tolerance"):
        gp.select_batch(F_new, -1.0)


@pytest.mark.parametrize("shared", [False, True])
def test_select_batch_picks_the_max_variance_points(shared):
    """Each pick is the candidate of largest predictive variance of the GP
    conditioned on the picks before it (the observed values do not matter)."""
    gp = _fitted_constitutive(2, 20, seed=70, shared=shared)
    F, X, _ = _new_points(2, 30, seed=71)
    picks = gp.select_batch(F, 0.0, max_points=4)
    assert picks.numel() == 4 and picks.unique().numel() == 4
    model = gp
    for j in picks.tolist():
        var = model.material_response(F).variance
        var[picks[: picks.tolist().index(j)]] = -1.0
        assert j == int(torch.argmax(var))
        # any value: the posterior variance does not depend on it
        model = model.condition_on_observations(X[j : j + 1], torch.zeros(1, 4, dtype=D))
    # every candidate below a tolerance after its batch is observed; none picked when all are below
    tol = float(gp.material_response(F).variance.median())
    batch = gp.select_batch(F, tol)
    after = gp.condition_on_observations(X[batch], torch.zeros(batch.numel(), 4, dtype=D))
    assert (after.material_response(F).variance < tol).all()
    assert gp.select_batch(F, 2 * float(gp.material_response(F).variance.max())).numel() == 0
    assert gp.select_batch(F, tol, min_points=batch.numel() + 2).numel() == batch.numel() + 2


def test_exact_answers_condition_a_gp_with_inferred_noise():
    """The known-noise copy of a GP with inferred noise has the same posterior;
    exact new answers (noise 0) then make it sure at those points, while its
    old points keep their inferred noise."""
    from surrogates.gp import _GPCommon

    gp = _fitted_constitutive(2, 20, seed=80)
    Xq = _new_points(2, 15, seed=81)[1]
    known = gp.with_known_noise()
    assert known.train_dataset.Yvar is not None and gp.train_dataset.Yvar is None
    for a, b in zip(known._mean_jac_var(Xq), _GPCommon._mean_jac_var(gp, Xq), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * float(b.abs().max()))
    F_new, X_new, Y_new = _new_points(2, 4, seed=82)
    noisy = gp.condition_on_observations(X_new, Y_new)  # the GP's own noise for the new points
    exact = gp.condition_on_observations(X_new, Y_new, noise=torch.zeros_like(Y_new))
    v_noisy, v_exact = noisy.material_response(F_new).variance, exact.material_response(F_new).variance
    assert (v_exact < v_noisy).all()
    # noise floored at 1e-6 of each output's variance (GPyTorch's smallest fixed noise)
    assert (v_exact <= 1.01e-6 * exact.outcome_transform.stdvs.pow(2).mean()).all()
    # select_batch plans for the noise the answers will have
    tol = float(gp.material_response(F_new).variance.min()) * 0.5
    assert gp.select_batch(F_new, tol, noise=0.0).numel() <= gp.select_batch(F_new, tol).numel()


@pytest.mark.parametrize("known_noise", [False, True])
def test_batched_conditioning_is_botorchs_fantasize(known_noise):
    """BoTorch's fantasize (used by qNIPV and knowledge-gradient acquisitions)
    passes batched inputs: they reach BoTorch's fantasy update unchanged."""
    from botorch.sampling import SobolQMCNormalSampler

    g = torch.Generator().manual_seed(90)
    X = torch.rand(15, 3, generator=g, dtype=D)
    Y = smooth(X).reshape(15, 1)
    ds = Dataset(X=X, Y=Y, Yvar=torch.full_like(Y, 1e-4) if known_noise else None)
    gp = GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=30)
    Xf = torch.rand(2, 3, generator=g, dtype=D)
    fant = gp.fantasize(Xf, sampler=SobolQMCNormalSampler(torch.Size([4])))
    assert fant.train_targets.shape == (4, 17)
    v0 = gp.posterior(Xf).variance
    v1 = fant.posterior(Xf).variance  # 4 x 2 x 1
    assert v1.shape == (4, 2, 1) and (v1 < v0).all()


def test_batched_conditioning_reads_noise_in_output_units():
    """``noise`` is in output units whatever the rank of ``X``/``Y``: a batched call
    (``1 x n x d``, or ``Y`` with a batch of fantasies) equals the ``n x d`` call and a
    GP rebuilt on the augmented data with the hyperparameters held (the new rows'
    ``Yvar`` = ``noise``). Outputs of spread ~10 make a unit slip a gross error."""
    g = torch.Generator().manual_seed(7)
    X = torch.rand(14, 2, generator=g, dtype=D)
    Y = 10 * smooth(X).reshape(-1, 1)
    Yv = 1e-2 * (0.5 + torch.rand(14, 1, generator=g, dtype=D))
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=Yv), bounds=[[0, 0], [1, 1]], n_restarts=1, maxiter=30)
    assert float(gp.outcome_transform.stdvs.pow(2)) > 5
    Xn, Yn = torch.rand(3, 2, generator=g, dtype=D), 10 * torch.randn(3, 1, generator=g, dtype=D)
    nz = torch.full((3, 1), 0.5, dtype=D)
    ref = GPSurrogate._build(Dataset(X=torch.cat([X, Xn]), Y=torch.cat([Y, Yn]), Yvar=torch.cat([Yv, nz])),
                             dict(gp._sb_config))
    ref.load_state_dict(gp.state_dict())
    ref.eval()
    xt = torch.rand(4, 2, generator=g, dtype=D)
    want = ref.posterior(xt)
    for cond in (gp.condition_on_observations(Xn, Yn, noise=nz),
                 gp.condition_on_observations(Xn[None], Yn[None], noise=nz[None]),
                 gp.condition_on_observations(Xn, Yn.expand(2, 3, 1), noise=nz)):
        got = cond.posterior(xt)
        torch.testing.assert_close(got.mean, want.mean.expand_as(got.mean), rtol=0, atol=1e-8)
        torch.testing.assert_close(got.variance, want.variance.expand_as(got.variance), rtol=0, atol=1e-8)
    with pytest.raises(InvalidInput, match="noise"):
        gp.condition_on_observations(Xn[None], Yn[None], noise=-nz[None])


def test_outputs_in_small_units_give_the_same_gp_up_to_the_unit():
    """A GP of outputs in small units (a permeability in m², ~1e-12) is the GP of the same
    outputs in O(1) units, rescaled: BoTorch's ``Standardize`` would leave outputs with a
    spread below 1e-8 unscaled, and GPyTorch would floor their variances at 1e-10. The mean
    scales with ``a``, the marginal variances with ``a**2``, and the NLPD of held-out data
    shifts by ``log |a|`` (the density of ``a y``), coverage and nRMSE unchanged."""
    from surrogates.metrics import posterior_metrics

    g = torch.Generator().manual_seed(3)
    X, Xt = torch.rand(20, 2, generator=g, dtype=D), torch.rand(64, 2, generator=g, dtype=D)
    Y, Yt = smooth(X).unsqueeze(-1), smooth(Xt).unsqueeze(-1)
    ref = GPSurrogate.from_dataset(Dataset(X=X, Y=Y))
    m_ref = posterior_metrics(ref, Xt, Yt)
    for a in (1e-12, -3e-9):
        gp = GPSurrogate.from_dataset(Dataset(X=X, Y=a * Y))
        with torch.no_grad():
            torch.testing.assert_close(gp.posterior(Xt).mean / a, ref.posterior(Xt).mean, rtol=0, atol=1e-5)
        m = posterior_metrics(gp, Xt, a * Yt)
        assert m["nlpd"][0] == pytest.approx(m_ref["nlpd"][0] + math.log(abs(a)), abs=1e-3)
        assert m["coverage95"][0] == pytest.approx(m_ref["coverage95"][0], abs=1e-9)
        assert m["nrmse"][0] == pytest.approx(m_ref["nrmse"][0], rel=1e-4)


def test_icm_outputs_in_small_units_give_the_same_gp_up_to_the_unit():
    """ICM standardizes each output by its own spread, however small its units (before, a
    spread below 1e-8 was left unscaled: at a = 1e-12 the means were off by a factor of 6)."""
    from surrogates.gp import ICMGPSurrogate

    g = torch.Generator().manual_seed(5)
    X, Xt = torch.rand(16, 2, generator=g, dtype=D), torch.rand(32, 2, generator=g, dtype=D)
    Y = torch.stack([smooth(X), smooth(X) + 0.3 * X[:, 0]], -1)
    ref = ICMGPSurrogate.from_dataset(Dataset(X=X, Y=Y), n_restarts=1)
    a = 1e-12
    gp = ICMGPSurrogate.from_dataset(Dataset(X=X, Y=a * Y), n_restarts=1)
    from surrogates.base import variance_in_output_units

    with torch.no_grad(), variance_in_output_units():
        p, q = gp.posterior(Xt), ref.posterior(Xt)
        torch.testing.assert_close(p.mean / a, q.mean, rtol=0, atol=1e-4)
        torch.testing.assert_close(p.variance / a**2, q.variance, rtol=1e-2, atol=1e-8)


def test_no_points_and_no_data():
    gp = _fitted_constitutive(2, 12, seed=60)
    r = gp.material_response(torch.zeros(0, 2, 2, dtype=D))
    assert r.P.shape == (0, 2, 2) and r.tangent.shape == (0, 2, 2, 2, 2) and r.variance.shape == (0,)
    with pytest.raises(ValueError, match="GPSurrogate needs at least one training point"):
        GPSurrogate.from_dataset(Dataset(X=torch.zeros(0, 2, dtype=D), Y=torch.zeros(0, 1, dtype=D)))
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError, match="Dataset.Yvar must be finite .* at row 1, output 0"):
            Dataset(X=torch.zeros(3, 2, dtype=D), Y=torch.zeros(3, 1, dtype=D),
                    Yvar=torch.tensor([[0.1], [bad], [0.1]], dtype=D))


def test_constant_zero_and_single_outputs_scale_with_the_units():
    """An output that is zero throughout (a shear stress of biaxial data), constant, or
    observed once was standardized by 1 (BoTorch's fallback), so its variance depended on the
    units by a^2: a GP in GPa gave the zero shear components a variance 5e4 times too large.
    The scale now comes from the data (the magnitude, or the other outputs' spread for a zero
    output): mean / a and variance / a^2 do not depend on a."""
    from surrogates.base import variance_in_output_units

    g = torch.Generator().manual_seed(11)
    X, Xt = torch.rand(14, 2, generator=g, dtype=D), torch.rand(9, 2, generator=g, dtype=D)
    Y = torch.stack([smooth(X), torch.zeros(14, dtype=D), torch.full((14,), 2.5, dtype=D)], -1)
    fits = {}
    for a in (1.0, 1e-3, 1e4):
        gp = GPSurrogate.from_dataset(Dataset(X=X, Y=a * Y), n_restarts=1)
        with torch.no_grad():
            post = gp.posterior(Xt)
            mean, var = post.mean / a, post.variance / a**2
        with torch.no_grad(), variance_in_output_units():
            torch.testing.assert_close(gp.posterior(Xt).variance / a**2, var)  # no absolute floor
        fits[a] = (mean, var)
    for a in (1e-3, 1e4):
        torch.testing.assert_close(fits[a][0], fits[1.0][0], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(fits[a][1], fits[1.0][1], rtol=1e-3, atol=1e-12)
    # one training point: the far-field standard deviation is in the output's units
    one = {a: GPSurrogate.from_dataset(Dataset(X=X[:1], Y=a * Y[:1, :1]), n_restarts=1) for a in (1.0, 1e-6)}
    with torch.no_grad():
        sd = {a: m.posterior(Xt).variance.sqrt() / a for a, m in one.items()}
    torch.testing.assert_close(sd[1e-6], sd[1.0], rtol=1e-5, atol=0)


def test_conditioned_known_noise_gp_saved_and_loaded_predicts_the_same(tmp_path):
    """Loading floored the known noise of every point relative to the variance of all the data
    (conditioned points included), the fit relative to its own data: P moved by 2e-5."""
    from surrogates import load_surrogate, save_surrogate

    gp = _fitted_constitutive(2, 25, seed=70, known_noise=True)
    F_new, _, Y_new = _new_points(2, 5, seed=71)
    cond = gp.condition_on_observations(F_new, Y_new.reshape(5, 2, 2), noise=torch.zeros_like(Y_new))
    save_surrogate(cond, tmp_path / "c")
    back = load_surrogate(tmp_path / "c")
    Fq = _new_points(2, 12, seed=72)[0]
    r0, r1 = cond.material_response(Fq), back.material_response(Fq)
    torch.testing.assert_close(r1.P, r0.P, rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(r1.variance, r0.variance, rtol=1e-9, atol=1e-16)


def test_icm_refuses_conditioning_and_fantasies_in_one_line():
    X = lhs(10, 2, 3)
    ds = Dataset(X=X, Y=torch.stack([branin01(X).reshape(-1), smooth(X).reshape(-1)], -1))
    icm = ICMGPSurrogate.from_dataset(ds, n_restarts=1)
    with pytest.raises(NotImplementedError, match="cannot be conditioned on new observations without a refit"):
        icm.condition_on_observations(X[:2], ds.Y[:2])
    from botorch.sampling import SobolQMCNormalSampler

    with pytest.raises(NotImplementedError, match="does not fantasize"):
        icm.fantasize(X[:2], SobolQMCNormalSampler(torch.Size([4])))
    with pytest.raises(NotImplementedError, match="not a tensor of noise variances"):
        icm.posterior(X[:2], observation_noise=torch.ones(2, 2, dtype=D))
    # the campaign and FE² code ask before conditioning: no pending-point fantasies, a refit in FE²
    from loops.acquisition import supports_pending
    from loops.fe2.switch import default_updater

    assert not supports_pending(icm) and default_updater(icm) is None


def test_fantasies_of_a_known_noise_gp_are_drawn_with_its_noise(monkeypatch):
    """BoTorch's fantasize passes the likelihood's (standardized) noise to posterior: the
    fantasy values are drawn from the latent variance plus the known noise in output units
    (100 here, on outputs of scale ~400), as posterior(observation_noise=True) gives."""
    from botorch.sampling import SobolQMCNormalSampler

    g = torch.Generator().manual_seed(90)
    X = torch.rand(15, 3, generator=g, dtype=D)
    Y = 1000 * X.sin().sum(-1, keepdim=True)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=torch.full_like(Y, 100.0)), n_restarts=1, maxiter=30)
    Xf = torch.rand(2, 3, generator=g, dtype=D)
    drawn = {}
    real = GPSurrogate.posterior

    def spy(self, X, *args, **kwargs):
        post = real(self, X, *args, **kwargs)
        if torch.is_tensor(kwargs.get("observation_noise")):
            drawn["var"] = post.variance.detach()
        return post

    monkeypatch.setattr(GPSurrogate, "posterior", spy)
    gp.fantasize(Xf, sampler=SobolQMCNormalSampler(torch.Size([4])))
    monkeypatch.setattr(GPSurrogate, "posterior", real)
    with torch.no_grad():
        latent = gp.posterior(Xf).variance
        noisy = gp.posterior(Xf, observation_noise=True).variance
    torch.testing.assert_close(noisy - latent, torch.full_like(latent, 100.0), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(drawn["var"].reshape(-1), noisy.reshape(-1), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("known_noise", [False, True])
@pytest.mark.parametrize("shared", [False, True])
def test_subset_output_is_the_full_posterior_of_those_outputs(known_noise, shared, tmp_path):
    """BoTorch's ``Model.subset_output``: each kept output's posterior (mean,
    latent and noisy variance, fast-path mean and Jacobian) is the full
    model's, in the order asked; conditioning the subset equals conditioning
    the full model; the subset saves and loads."""
    from surrogates import load_surrogate, save_surrogate

    g = torch.Generator().manual_seed(3)
    X = torch.rand(20, 2, generator=g, dtype=torch.float64)

    def f(x):
        return torch.stack([x.sum(-1), 10 * x.prod(-1), torch.sin(5 * x[:, 0])], -1)

    Y = f(X)
    ds = Dataset(X=X, Y=Y, Yvar=torch.full_like(Y, 1e-3) if known_noise else None)
    full = GPSurrogate.from_dataset(ds, shared_lengthscale=shared, n_restarts=1)
    Xt = torch.rand(9, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        p_full = full.posterior(Xt, observation_noise=True)
        for idcs in ([2], [2, 0], [-1]):
            j = [i % 3 for i in idcs]
            sub = full.subset_output(idcs)
            assert sub.num_outputs == len(idcs) and sub.train_dataset.m == len(idcs)
            p = sub.posterior(Xt, observation_noise=True)
            torch.testing.assert_close(p.mean, p_full.mean[:, j], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(p.variance, p_full.variance[:, j], rtol=1e-10, atol=1e-12)
            mu, jac, var = sub._mean_jac_var(Xt)
            mu0, jac0, var0 = full._mean_jac_var(Xt)
            torch.testing.assert_close(mu, mu0[:, j], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(jac, jac0[:, j], rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(var, var0[:, j], rtol=1e-10, atol=1e-12)
    assert full.num_outputs == 3 and full.train_dataset.m == 3  # the full model is untouched
    Xn = torch.rand(3, 2, generator=g, dtype=torch.float64)
    Yn = f(Xn)
    noise = torch.full_like(Yn, 1e-3) if known_noise else None
    sub = full.subset_output([2, 0])
    cs = sub.condition_on_observations(Xn, Yn[:, [2, 0]], noise=None if noise is None else noise[:, [2, 0]])
    cf = full.condition_on_observations(Xn, Yn, noise=noise)
    save_surrogate(sub, tmp_path / "sub")
    back = load_surrogate(tmp_path / "sub")
    with torch.no_grad():
        torch.testing.assert_close(cs.posterior(Xt).mean, cf.posterior(Xt).mean[:, [2, 0]], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(back.posterior(Xt).mean, sub.posterior(Xt).mean, rtol=1e-10, atol=1e-10)
    for bad, err in ((5, TypeError), ([3], ValueError), ([], ValueError), ([0, 0], ValueError), ([0.5], TypeError)):
        with pytest.raises(err, match="idcs"):
            full.subset_output(bad)


@pytest.mark.parametrize("cls", [GPSurrogate, ICMGPSurrogate])
def test_integer_and_float32_queries_are_answered_in_float64_and_leave_the_model_unchanged(cls):
    """BoTorch's Normalize casts its stored bounds to the dtype of the inputs it sees: one integer
    query had turned them to 0 (NaN predictions from then on, saved with the model) and a float32
    one had rounded them. The answer equals the float64 query's; later answers are unchanged."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(12, 2, generator=g, dtype=torch.float64)
    Y = torch.sin(3 * X[:, :1]) + X[:, 1:] ** 2
    gp = cls.from_dataset(Dataset(X=X, Y=Y if cls is GPSurrogate else torch.cat([Y, Y.cos()], -1)), n_restarts=1)
    Xt = torch.rand(5, 2, generator=g, dtype=torch.float64)
    with torch.no_grad():
        before = gp.posterior(Xt).mean
        ref = gp.posterior(torch.tensor([[0.0, 1.0]], dtype=torch.float64)).mean
        torch.testing.assert_close(gp.posterior(torch.tensor([[0, 1]])).mean, ref, rtol=0, atol=0)
        gp.posterior(torch.tensor([[0.25, 0.5]], dtype=torch.float32))
        torch.testing.assert_close(gp.posterior(Xt).mean, before, rtol=0, atol=0)
    assert gp.input_transform.offset.dtype == torch.float64
    with pytest.raises(TypeError, match="real"):
        gp.posterior(torch.zeros(1, 2, dtype=torch.complex128))


def test_outputs_with_an_offset_of_3e8_spreads_are_not_constant():
    """-3.5e5 eV varying by meV (spread 3e-9 of the magnitude) had been standardized as a constant:
    the GP's standard deviations were 7e5 times the signal's. The fit is that of the unshifted data
    up to the round-off of subtracting the offset."""
    g = torch.Generator().manual_seed(0)
    X = torch.rand(15, 1, generator=g, dtype=torch.float64)
    f = torch.sin(6 * X)
    Xt = torch.linspace(0.05, 0.95, 4, dtype=torch.float64).unsqueeze(-1)
    a, b = 1e-3, -3.5e5
    with torch.no_grad():
        ref = GPSurrogate.from_dataset(Dataset(X=X, Y=f), n_restarts=1).posterior(Xt)
        p = GPSurrogate.from_dataset(Dataset(X=X, Y=a * f + b), n_restarts=1).posterior(Xt)
    torch.testing.assert_close((p.mean - b) / a, ref.mean, rtol=0, atol=1e-3)
    torch.testing.assert_close(p.variance / a**2, ref.variance, rtol=0, atol=1e-4)


@pytest.mark.parametrize("cls", [GPSurrogate, ICMGPSurrogate])
def test_predictions_do_not_depend_on_the_input_units(cls):
    """An input whose data range is below 1e-8 (lengths in m) had been left unnormalized by
    BoTorch's learned bounds (absolute min_range): the GP never saw it (RMSE 0.72 vs 0.03). The
    same data in units 1e-9 smaller now give the same predictions."""
    g = torch.Generator().manual_seed(5)
    X = torch.rand(20, 2, generator=g, dtype=D)
    Y = torch.stack([smooth(X), X[:, 0] - X[:, 1] ** 2], -1)
    Xt = torch.rand(50, 2, generator=g, dtype=D)
    s = torch.tensor([1e-9, 1.0], dtype=D)
    a = cls.from_dataset(Dataset(X=X, Y=Y), n_restarts=1)
    b = cls.from_dataset(Dataset(X=X * s, Y=Y), n_restarts=1)
    with torch.no_grad():
        pa, pb = a.posterior(Xt), b.posterior(Xt * s)
    # the two fits agree to the optimizer's tolerance (the failure had been differences of order 1);
    # the likelihood is flat along the constant means, where L-BFGS-B stops at places that move with
    # round-off and with the SciPy release (ICM: 2.7e-3 in the mean with SciPy 1.17)
    torch.testing.assert_close(pb.mean, pa.mean, rtol=0, atol=1e-2)
    torch.testing.assert_close(pb.variance, pa.variance, rtol=5e-2, atol=1e-5)
    # at the same hyperparameters the two unit systems give the same predictions to round-off
    b.load_state_dict({k: v for k, v in a.state_dict().items() if not k.startswith("input_transform")},
                      strict=False)
    b.train()
    b.eval()
    with torch.no_grad():
        pb = b.posterior(Xt * s)
    torch.testing.assert_close(pb.mean, pa.mean, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(pb.variance, pa.variance, rtol=1e-7, atol=1e-10)
