"""Fantasies of the multi-fidelity co-kriging models (BoTorch's
``condition_on_observations`` / ``fantasize`` contract).

The independent check is a refit: a model built on the augmented data with
the base model's hyperparameters and scaling loaded must give the fantasy
model's posterior, batch element by batch element.
"""

from __future__ import annotations

import pytest
import torch
from botorch.acquisition.cost_aware import InverseCostWeightedUtility
from botorch.acquisition.knowledge_gradient import qMultiFidelityKnowledgeGradient
from botorch.acquisition.max_value_entropy_search import qMultiFidelityMaxValueEntropy
from botorch.acquisition.utils import project_to_target_fidelity
from botorch.sampling.normal import SobolQMCNormalSampler

from surrogates.dataset import DTYPE, Dataset
from surrogates.multifidelity import NARGP, AR1CoKriging, RecursiveCoKriging
from surrogates.multifidelity.core import NOISE_FLOOR

MODELS = (AR1CoKriging, RecursiveCoKriging, NARGP)


def f_low(x):
    return torch.sin(6 * x[..., 0]) + 0.3 * x[..., 1]


def f_high(x):
    return 1.4 * f_low(x) + 0.5 * x[..., 0] - 0.2 * x[..., 1] ** 2


def _data(seed: int, noise: str) -> Dataset:
    """Non-nested two-level design in 2D with noisy outputs (standard deviation
    0.02 at level 0, 0.01 at level 1); with ``noise="known"`` the variances are given."""
    g = torch.Generator().manual_seed(seed)
    xl = torch.rand(14, 2, generator=g, dtype=DTYPE)
    xh = torch.rand(6, 2, generator=g, dtype=DTYPE)
    X = torch.cat([xl, xh])
    Y = torch.cat([f_low(xl), f_high(xh)]).unsqueeze(-1)
    fid = torch.cat([torch.zeros(14), torch.ones(6)])
    var = torch.cat([torch.full((14, 1), 4e-4), torch.full((6, 1), 1e-4)]).to(DTYPE)
    Y = Y + var.sqrt() * torch.randn(Y.shape, generator=g, dtype=DTYPE)
    Yvar = var if noise == "known" else None
    return Dataset(X=X, Y=Y, fidelity=fid, Yvar=Yvar)


def _with_level(x, level):
    return torch.cat([x, torch.as_tensor(level, dtype=DTYPE).expand(*x.shape[:-1], 1)], -1)


def _refit(model, X: torch.Tensor, Y: torch.Tensor, noise: torch.Tensor | None):
    """``model`` rebuilt on its data plus rows ``X`` (``q x (d + 1)``), ``Y``
    (``q x 1``), known variances ``noise`` (``q x 1``), with its fitted
    hyperparameters and scaling loaded (no new fit)."""
    ds = model.train_dataset
    Yvar = None if ds.Yvar is None else torch.cat([ds.Yvar, noise])
    aug = Dataset(
        X=torch.cat([ds.X, X[:, :-1]]), Y=torch.cat([ds.Y, Y]),
        fidelity=torch.cat([ds.fidelity, X[:, -1]]), Yvar=Yvar,
    )
    cfg = {k: v for k, v in model.get_config().items() if k != "format"}
    new = type(model)(aug, **cfg)
    new.load_state_dict(model.state_dict())
    return new


@pytest.fixture(scope="module")
def fitted():
    out = {}
    for cls in MODELS:
        for noise in ("infer", "known"):
            out[cls.__name__, noise] = cls.from_dataset(_data(3, noise), noise=noise, restarts=1)
    return out


@pytest.mark.parametrize("noise", ["infer", "known"])
@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_fantasy_model_equals_a_refit_on_the_augmented_data(fitted, cls, noise):
    model = fitted[cls.__name__, noise]
    g = torch.Generator().manual_seed(11)
    # batch of 2 sets of q = 3 new rows at mixed levels, 2 fantasy draws each
    X = _with_level(torch.rand(2, 3, 2, generator=g, dtype=DTYPE), 0.0)
    X[0, :, -1] = torch.tensor([1.0, 0.0, 1.0])
    X[1, :, -1] = torch.tensor([0.0, 0.0, 1.0])
    Y = 0.5 * torch.randn(2, 2, 3, 1, generator=g, dtype=DTYPE)
    nv = torch.full((2, 3, 1), 2e-3, dtype=DTYPE) if noise == "known" else None
    fm = model.condition_on_observations(X, Y, noise=nv)
    assert fm.batch_shape == torch.Size([2, 2])
    xt = torch.rand(5, 2, generator=g, dtype=DTYPE)
    Xt = torch.cat([_with_level(xt[:3], 1.0), _with_level(xt[3:], 0.0)])
    post = fm.posterior(Xt)
    assert post.mean.shape == (2, 2, 5, 1)
    for f in range(2):
        for b in range(2):
            ref = _refit(model, X[b], Y[f, b], None if nv is None else nv[b]).posterior(Xt)
            torch.testing.assert_close(post.mean[f, b], ref.mean, rtol=0, atol=1e-8)
            torch.testing.assert_close(
                post.mvn.covariance_matrix[f, b], ref.mvn.covariance_matrix, rtol=0, atol=1e-8
            )


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_predict_of_a_fantasy_model_gives_each_batch_element(fitted, cls):
    """``predict`` of a fantasy model (batch ``fantasy_batch x batch``) returns ``batch_shape x n``
    marginals, element ``[f, b]`` those of a refit on the data plus that element's rows. Before:
    each point was paired with one batch element (n points against a batch of n: ``n`` values,
    silently mixed) or a RuntimeError from inside the kriging solve (any other n)."""
    model = fitted[cls.__name__, "infer"]
    g = torch.Generator().manual_seed(5)
    X = _with_level(torch.rand(2, 1, 2, generator=g, dtype=DTYPE), 1.0)
    Y = 0.5 * torch.randn(3, 2, 1, 1, generator=g, dtype=DTYPE)
    fm = model.condition_on_observations(X, Y)
    assert fm.batch_shape == torch.Size([3, 2])
    for n in (3, 2, 0):  # 2: as many points as the batch's last dimension
        xt = torch.rand(n, 2, generator=g, dtype=DTYPE)
        for level in (0, 1):
            mean, var = fm.predict(xt, fidelity=level)
            assert mean.shape == var.shape == (3, 2, n)
            for f in range(3):
                for b in range(2):
                    rm, rv = _refit(model, X[b], Y[f, b], None).predict(xt, fidelity=level)
                    torch.testing.assert_close(mean[f, b], rm, rtol=0, atol=1e-8)
                    torch.testing.assert_close(var[f, b], rv, rtol=0, atol=1e-8)
    # a base model's predict keeps its n values
    assert model.predict(torch.rand(3, 2, dtype=DTYPE))[0].shape == (3,)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_variance_drops_where_a_fantasy_is_observed(fitted, cls):
    model = fitted[cls.__name__, "infer"]
    x0 = _with_level(torch.tensor([[0.37, 0.61]], dtype=DTYPE), 1.0)
    var0 = model.posterior(x0).variance.squeeze()
    fm = model.fantasize(x0, SobolQMCNormalSampler(torch.Size([4]), seed=0))
    var1 = fm.posterior(x0).variance.squeeze(-1).squeeze(-1)
    assert var1.shape == (4,)
    # noise of the fantasy observation: the level's nugget plus the diagonal floor
    nug = float(model.noise_variance()[1]) + NOISE_FLOOR * float(model.level_std[1]) ** 2
    # conditioning on y = f + e: the variance of a GP falls to the harmonic
    # combination of the prior variance and the noise
    bound = 1.0 / (1.0 / float(var0) + 1.0 / nug)
    assert (var1 < var0).all()
    # no model may fall below the exact GP's: one observation with this noise cannot say more
    assert (var1 >= bound * (1 - 1e-6)).all(), (var1, bound)
    if cls is AR1CoKriging:
        # a joint GP: the bound is attained (the other models keep the level
        # below's variance, which a top-level observation does not reduce)
        torch.testing.assert_close(var1, torch.full_like(var1, bound), rtol=1e-5, atol=0)
    # the fantasy means are the posterior draws' spread around the base mean
    m1 = fm.posterior(x0).mean.reshape(-1)
    assert float(m1.std()) > 0


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_fantasize_has_botorch_shapes(fitted, cls):
    model = fitted[cls.__name__, "known"]
    g = torch.Generator().manual_seed(2)
    X = _with_level(torch.rand(3, 2, 2, generator=g, dtype=DTYPE), 1.0)  # batch 3, q 2
    fm = model.fantasize(X, SobolQMCNormalSampler(torch.Size([5]), seed=1))
    assert fm.batch_shape == torch.Size([5, 3])
    Xq = _with_level(torch.rand(5, 3, 4, 2, generator=g, dtype=DTYPE), 1.0)  # num_fantasies x batch x q x d
    post = fm.posterior(Xq)
    assert post.mean.shape == (5, 3, 4, 1)
    assert post.mvn.covariance_matrix.shape == (5, 3, 4, 4)
    # X_pending style: fantasize at m x d and evaluate a batch of single points
    fm2 = model.fantasize(X[0], SobolQMCNormalSampler(torch.Size([5]), seed=1))
    assert fm2.batch_shape == torch.Size([5])
    post2 = fm2.posterior(_with_level(torch.rand(7, 1, 1, 2, generator=g, dtype=DTYPE), 1.0))
    assert post2.mean.shape == (7, 5, 1, 1)


def test_fantasy_inputs_must_be_levels():
    model = AR1CoKriging.from_dataset(_data(4, "infer"), restarts=1)
    X = _with_level(torch.rand(2, 2, dtype=DTYPE), 1.5)
    with pytest.raises(ValueError, match="fidelity column"):
        model.condition_on_observations(X, torch.zeros(2, 1, dtype=DTYPE))
    X = _with_level(torch.rand(2, 2, dtype=DTYPE), 1.0)
    with pytest.raises(ValueError, match="Y must be"):
        model.condition_on_observations(X, torch.zeros(3, 1, dtype=DTYPE))
    with pytest.raises(ValueError, match="keeps its hyperparameters"):
        model.condition_on_observations(X, torch.zeros(2, 1, dtype=DTYPE)).fit()
    with pytest.raises(ValueError, match=r"noise must be broadcastable to batch x q x 1 = \(2, 1\), got shape \(3, 1\)"):
        model.condition_on_observations(X, torch.zeros(2, 1, dtype=DTYPE), noise=torch.ones(3, 1, dtype=DTYPE))
    with pytest.raises(ValueError, match=r"Y's batch shape \(4,\) does not broadcast with X's \(3,\)"):
        model.condition_on_observations(X.expand(3, 2, 3), torch.zeros(4, 2, 1, dtype=DTYPE))


@pytest.mark.parametrize("bad", [-1e-3, float("nan")])
def test_posterior_refuses_a_negative_or_nan_observation_noise(bad):
    model = AR1CoKriging.from_dataset(_data(4, "infer"), restarts=1)
    X = _with_level(torch.rand(2, 2, dtype=DTYPE), 1.0)
    with pytest.raises(ValueError, match="observation_noise must hold finite variances >= 0"):
        model.posterior(X, observation_noise=torch.full((2, 1), bad, dtype=DTYPE))


def test_a_fantasy_model_has_its_own_parameters():
    """Loading a state into the fantasy model, or casting it, leaves the model it came from alone."""
    model = AR1CoKriging.from_dataset(_data(4, "infer"), restarts=1)
    other = AR1CoKriging.from_dataset(_data(5, "infer"), restarts=1)
    Xt = _with_level(torch.rand(3, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE), 1.0)
    before = model.posterior(Xt).variance.clone()
    theta = model.theta.clone()
    fm = model.condition_on_observations(_with_level(torch.tensor([[0.5, 0.5]], dtype=DTYPE), 1.0),
                                         torch.zeros(1, 1, dtype=DTYPE))
    fm.load_state_dict(other.state_dict())
    fm.float()
    assert torch.equal(model.theta, theta) and model.theta.dtype == DTYPE
    torch.testing.assert_close(model.posterior(Xt).variance, before, rtol=0, atol=0)


@pytest.mark.parametrize("noise", [1e-3, torch.tensor(1e-3, dtype=DTYPE), torch.full((2, 1), 1e-3, dtype=DTYPE)],
                         ids=["float", "0-d", "q x 1"])
def test_fantasy_noise_may_be_a_scalar(noise):
    """A noise "broadcastable to batch x q x 1" may be one number: the same fantasy as the full tensor."""
    model = AR1CoKriging.from_dataset(_data(4, "known"), restarts=1)
    X = _with_level(torch.tensor([[0.3, 0.2], [0.6, 0.9]], dtype=DTYPE), 1.0)
    Y = torch.tensor([[0.2], [-0.1]], dtype=DTYPE)
    Xt = _with_level(torch.rand(5, 2, generator=torch.Generator().manual_seed(0), dtype=DTYPE), 1.0)
    want = model.condition_on_observations(X, Y, noise=torch.full((2, 1), 1e-3, dtype=DTYPE)).posterior(Xt)
    got = model.condition_on_observations(X, Y, noise=noise).posterior(Xt)
    torch.testing.assert_close(got.mean, want.mean, rtol=0, atol=0)
    torch.testing.assert_close(got.variance, want.variance, rtol=0, atol=0)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_a_fantasy_model_is_not_saved_without_its_rows(fitted, cls, tmp_path):
    """Its added rows are not in ``train_dataset``: saving it would write the base model."""
    from surrogates.base import save_surrogate

    model = fitted[cls.__name__, "infer"]
    X = _with_level(torch.tensor([[0.5, 0.5]], dtype=DTYPE), 1.0)
    fantasy = model.condition_on_observations(X, torch.tensor([[5.0]], dtype=DTYPE))
    with pytest.raises(ValueError, match="a fantasy model .* cannot be saved"):
        save_surrogate(fantasy, tmp_path / "f")


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_no_points_give_empty_moments(fitted, cls):
    model = fitted[cls.__name__, "infer"]
    for shape in [(0, 3), (2, 0, 3)]:
        post = model.posterior(torch.zeros(shape, dtype=DTYPE))
        assert post.mean.shape == (*shape[:-1], 1) and post.variance.shape == (*shape[:-1], 1)
    mean, var = model.predict(torch.zeros(0, 2, dtype=DTYPE))
    assert mean.shape == (0,) and var.shape == (0,)
    fantasy = model.condition_on_observations(_with_level(torch.rand(1, 2, dtype=DTYPE), 1.0),
                                              torch.zeros(3, 1, 1, dtype=DTYPE))
    assert fantasy.posterior(torch.zeros(0, 3, dtype=DTYPE)).mean.shape == (3, 0, 1)


def _acq_parts(model):
    d = model.d
    target = {d: float(model.num_fidelities - 1)}
    utility = InverseCostWeightedUtility(cost_model=model.cost_model())

    def project(X):
        return project_to_target_fidelity(X=X, target_fidelities=target, d=d + 1)

    return utility, project


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_mf_knowledge_gradient_with_pending_points(fitted, cls):
    model = fitted[cls.__name__, "infer"]
    utility, project = _acq_parts(model)
    g = torch.Generator().manual_seed(5)
    pending = _with_level(torch.rand(2, 2, generator=g, dtype=DTYPE), 0.0)
    acq = qMultiFidelityKnowledgeGradient(
        model, num_fantasies=4, current_value=model.posterior(project(pending)).mean.max().detach(),
        cost_aware_utility=utility, project=project, X_pending=pending,
    )
    q_aug = acq.get_augmented_q_batch_size(1)
    X = _with_level(torch.rand(3, q_aug, 2, generator=g, dtype=DTYPE), 1.0)
    X[:, 0, -1] = 0.0  # the candidate at the cheap level, the fantasy solutions at the top
    X.requires_grad_(True)
    val = acq(X)
    assert val.shape == (3,) and torch.isfinite(val).all()
    val.sum().backward()
    assert torch.isfinite(X.grad).all() and float(X.grad[..., :-1].abs().sum()) > 0


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.__name__)
def test_mf_max_value_entropy_with_pending_points(fitted, cls):
    torch.manual_seed(0)  # BoTorch's fantasy and max-value samplers draw from the global generator
    model = fitted[cls.__name__, "infer"]
    utility, project = _acq_parts(model)
    g = torch.Generator().manual_seed(6)
    cand = _with_level(torch.rand(256, 2, generator=g, dtype=DTYPE), 1.0)
    pending = _with_level(torch.rand(2, 2, generator=g, dtype=DTYPE), 1.0)
    acq = qMultiFidelityMaxValueEntropy(
        model, candidate_set=cand, num_fantasies=8, num_mv_samples=16,
        cost_aware_utility=utility, project=project, X_pending=pending,
    )
    # the acquisition works on the fantasy model: batch of 8, and less
    # uncertain where the pending points are (NARGP: on average over the
    # fantasies, since a fantasy value can spread its mixture of paths)
    assert acq.model.batch_shape == torch.Size([8])
    var0 = model.posterior(pending.unsqueeze(-2)).variance.reshape(2, 1)
    var1 = acq.model.posterior(pending.reshape(2, 1, 1, 3)).variance.reshape(2, 8)
    assert (var1.mean(-1, keepdim=True) < var0).all()
    if cls is not NARGP:
        assert (var1 < var0).all()
    X = _with_level(torch.rand(5, 1, 2, generator=g, dtype=DTYPE), 0.0)
    X[2:, 0, -1] = 1.0
    val = acq(X)
    assert val.shape == (5,) and torch.isfinite(val).all()


@pytest.mark.parametrize("rel", [0.1, 10.0])
def test_ar1_conditioning_is_exact_gaussian_conditioning_for_any_noise(rel):
    """AR1 is one joint GP, so its fantasy posterior must be the Gaussian
    conditioning of its current joint posterior on the new rows with the noise
    given, ``m_t + S_tn (S_nn + N)^-1 (y - m_n)``, whether that noise is below
    the level's inferred nugget (it had been raised to the nugget) or above."""
    g = torch.Generator().manual_seed(5)
    xl, xh = torch.rand(20, 2, generator=g, dtype=DTYPE), torch.rand(12, 2, generator=g, dtype=DTYPE)
    Y = torch.cat([f_low(xl), f_high(xh)]).unsqueeze(-1)
    Y = Y + 0.05 * torch.randn(Y.shape, generator=g, dtype=DTYPE)
    ds = Dataset(X=torch.cat([xl, xh]), Y=Y, fidelity=torch.cat([torch.zeros(20), torch.ones(12)]))
    model = AR1CoKriging.from_dataset(ds, noise="infer", restarts=1)
    nug = float(model.noise_variance()[1])
    assert nug > 1e-4  # the nugget is inferred (noise variance 2.5e-3)
    X = _with_level(torch.tensor([[0.3, 0.2], [0.7, 0.6]], dtype=DTYPE), 1.0)
    Xt = _with_level(torch.rand(4, 2, generator=torch.Generator().manual_seed(1), dtype=DTYPE), 1.0)
    noise = torch.full((2, 1), rel * nug, dtype=DTYPE)
    Y = torch.tensor([[0.5], [-0.4]], dtype=DTYPE)
    with torch.no_grad():
        joint = model.posterior(torch.cat([Xt, X]))
        m, S = joint.mean[:, 0], joint.distribution.covariance_matrix
        Stn, Snn = S[:4, 4:], S[4:, 4:] + torch.diag(noise[:, 0])
        want_m = m[:4] + Stn @ torch.linalg.solve(Snn, Y[:, 0] - m[4:])
        want_S = S[:4, :4] - Stn @ torch.linalg.solve(Snn, Stn.T)
        got = model.condition_on_observations(X, Y, noise=noise).posterior(Xt)
    scale = float(S.diagonal().max())
    torch.testing.assert_close(got.mean[:, 0], want_m, rtol=0, atol=1e-6 * scale**0.5)
    torch.testing.assert_close(got.distribution.covariance_matrix, want_S, rtol=0, atol=1e-6 * scale)


def test_nargp_variances_do_not_build_the_joint_covariance(fitted, monkeypatch):
    """Variances of q points (qNIPV integrates them over hundreds) come from each point's own
    propagation; the q x q joint propagation runs only when the matrix is used, once."""
    from botorch.acquisition.objective import ScalarizedPosteriorTransform

    model = fitted["NARGP", "infer"]
    calls = []
    joint = model._joint
    # a joint propagation is one of more than one point (the per-point ones have q = 1)
    monkeypatch.setattr(model, "_joint", lambda x, lv: (x.shape[-2] > 1 and calls.append(1)) or joint(x, lv))
    g = torch.Generator().manual_seed(11)
    X = _with_level(torch.rand(2, 5, 2, generator=g, dtype=DTYPE), 1.0)
    X[:, :2, -1] = 0.0
    post = model.posterior(X, observation_noise=True)
    var = post.variance
    assert calls == []  # the per-point propagations only
    singles = torch.cat([model.posterior(X[:, i : i + 1], observation_noise=True).variance for i in range(5)], -2)
    torch.testing.assert_close(var, singles, rtol=1e-7, atol=0)  # up to the jitter (1e-9 of the mean)
    scaled = ScalarizedPosteriorTransform(weights=torch.tensor([3.0], dtype=DTYPE))(post)
    torch.testing.assert_close(scaled.variance, 9 * var, rtol=1e-12, atol=0)
    assert calls == []
    cov = post.distribution.covariance_matrix
    torch.testing.assert_close(post.distribution.covariance_matrix, cov, rtol=0, atol=0)  # computed once
    assert len(calls) == 1
    torch.testing.assert_close(cov.diagonal(dim1=-2, dim2=-1), var[..., 0], rtol=1e-12, atol=0)
    assert bool((torch.linalg.eigvalsh(cov) > 0).all())
    y = post.mean[..., 0] + 0.1
    ref = torch.distributions.MultivariateNormal(post.mean[..., 0], cov).log_prob(y)
    torch.testing.assert_close(post.distribution.log_prob(y), ref, rtol=1e-10, atol=0)


def test_nargp_deferred_covariance_copies_like_a_matrix(fitted):
    """detach, dtype conversion, clone and pickling act on the joint matrix (a copy rebuilt from
    the diagonal alone had kept the graph, the dtype, or a closure that does not pickle)."""
    import pickle

    model = fitted["NARGP", "infer"]
    X = _with_level(torch.rand(4, 2, generator=torch.Generator().manual_seed(13), dtype=DTYPE), 1.0)
    X.requires_grad_(True)
    post = model.posterior(X)
    op = post.distribution.lazy_covariance_matrix
    dense = op.to_dense()
    assert dense.requires_grad and not op.detach().to_dense().requires_grad
    f32 = op.to(torch.float32)
    assert f32.dtype == f32.to_dense().dtype == torch.float32
    torch.testing.assert_close((f32 @ torch.ones(4, 1)).squeeze(-1), dense.sum(-1).float())
    torch.testing.assert_close(op.clone().to_dense(), dense, rtol=0, atol=0)
    back = pickle.loads(pickle.dumps(post.distribution.lazy_covariance_matrix.detach()))
    torch.testing.assert_close(back.to_dense(), dense.detach(), rtol=0, atol=0)
    again = pickle.loads(pickle.dumps(model.posterior(X.detach())))
    # (inputs without gradients take GPyTorch's closed-form kernel path: equal to round-off)
    torch.testing.assert_close(again.distribution.covariance_matrix, dense.detach(), rtol=1e-9, atol=1e-18)


def test_nargp_deferred_joint_samples_have_the_gradient_of_a_finite_difference(fitted):
    model = fitted["NARGP", "infer"]
    g = torch.Generator().manual_seed(12)
    x0 = _with_level(torch.rand(3, 2, generator=g, dtype=DTYPE), 1.0)
    x0[0, -1] = 0.0
    base = torch.randn(4, *model.posterior(x0).base_sample_shape, generator=g, dtype=DTYPE)

    def f(x):
        return model.posterior(x).rsample_from_base_samples(torch.Size([4]), base).pow(2).sum()

    x = x0.clone().requires_grad_(True)
    f(x).backward()
    h = 1e-5
    for i, j in [(0, 0), (1, 1), (2, 0)]:
        e = torch.zeros_like(x0)
        e[i, j] = h
        fd = (f(x0 + e) - f(x0 - e)) / (2 * h)
        torch.testing.assert_close(x.grad[i, j], fd.detach(), rtol=1e-4, atol=1e-6)
