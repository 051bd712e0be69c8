"""The surrogates in a BoTorch user's own code: gradients BoTorch's optimizer follows,
``posterior(..., output_indices=...)``, ``subset_output`` and the refusals of models that
cannot be conditioned. Numbers are checked against central finite differences and an
exact GP written out here at the fitted hyperparameters."""

from __future__ import annotations

import math

import pytest
import torch
from botorch.acquisition.active_learning import qNegIntegratedPosteriorVariance
from botorch.acquisition.knowledge_gradient import qKnowledgeGradient
from botorch.acquisition.objective import ScalarizedPosteriorTransform
from botorch.models import ModelListGP
from botorch.sampling.normal import SobolQMCNormalSampler

from surrogates.base import conditions_on_observations
from surrogates.dataset import DTYPE, Dataset
from surrogates.gp import GPSurrogate
from surrogates.multifidelity import AR1CoKriging
from surrogates.neural import CubicElasticEnsemble


def _data(m: int, n: int = 8, seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=DTYPE)
    Y = torch.stack([torch.sin(6 * X[:, 0]), 100 + 10 * X[:, 1] ** 2, -5 + X[:, 0] * X[:, 1]], -1)[:, :m]
    return X, Y + 0.01 * torch.randn(n, m, generator=g, dtype=DTYPE), g


def _fd_relative_error(acq, Xq: torch.Tensor, h: float = 1e-5) -> float:
    """Largest difference between autograd's gradient of ``acq(Xq).sum()`` and central
    finite differences, relative to the largest finite-difference component."""
    x = Xq.clone().requires_grad_(True)
    grad = torch.autograd.grad(acq(x).sum(), x)[0]
    fd = torch.zeros_like(Xq)
    with torch.no_grad():
        for i in range(Xq.numel()):
            e = torch.zeros(Xq.numel(), dtype=DTYPE)
            e[i] = h
            e = e.reshape(Xq.shape)
            fd.view(-1)[i] = (acq(Xq + e).sum() - acq(Xq - e).sum()) / (2 * h)
    return float((grad - fd).abs().max() / fd.abs().max())


@pytest.mark.parametrize("m, known", [(1, False), (2, True)])
def test_qnipv_gradient_is_the_finite_difference(m, known):
    # GPyTorch detached the fantasy model's covariance cache from the fantasy inputs, so
    # qNIPV's autograd gradient (what optimize_acqf follows) missed most of its value:
    # 0.30 against a finite difference of 0.049 (BoTorch's SingleTaskGP has the same fault)
    X, Y, g = _data(m)
    Yvar = torch.full_like(Y, 1e-4) if known else None
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y, Yvar=Yvar), n_restarts=1)
    kw = {"posterior_transform": ScalarizedPosteriorTransform(torch.tensor([1.0, 0.5], dtype=DTYPE))} if m > 1 else {}
    acq = qNegIntegratedPosteriorVariance(gp, mc_points=torch.rand(32, 2, generator=g, dtype=DTYPE), **kw)
    assert _fd_relative_error(acq, torch.rand(2, 3, 2, generator=g, dtype=DTYPE)) < 1e-5
    # the knowledge gradient (fantasy means) was right and stays so
    kg = qKnowledgeGradient(gp, num_fantasies=3, sampler=SobolQMCNormalSampler(torch.Size([3]), seed=0), **kw)
    assert _fd_relative_error(kg, torch.rand(2, 4, 2, generator=g, dtype=DTYPE)) < 1e-5


def _matern52(A, B, ls, s):
    r = math.sqrt(5) * ((A.unsqueeze(-2) - B.unsqueeze(-3)) / ls).pow(2).sum(-1).clamp_min(0).sqrt()
    return s * (1 + r + r * r / 3) * torch.exp(-r)


def _exact(gp: GPSurrogate, j: int, Xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance (output units) of output ``j`` at ``Xs``: the GP written out
    with the fitted hyperparameters of that output (its own batch element)."""
    ds = gp.train_dataset
    ls = gp.covar_module.base_kernel.lengthscale.detach()[j].reshape(-1)
    s = gp.covar_module.outputscale.detach()[j]
    c = gp.mean_module.constant.detach()[j]
    mu, sd = gp.outcome_transform.means.reshape(-1)[j], gp.outcome_transform.stdvs.reshape(-1)[j]
    noise = gp.likelihood.noise.detach().reshape(-1)[j]
    tf = gp.input_transform
    u = lambda x: (x - tf.offset.reshape(-1)) / tf.coefficient.reshape(-1)  # noqa: E731
    K = _matern52(u(ds.X), u(ds.X), ls, s) + noise * torch.eye(ds.n, dtype=DTYPE)
    Ks, Kss = _matern52(u(Xs), u(ds.X), ls, s), _matern52(u(Xs), u(Xs), ls, s)
    mean = c + Ks @ torch.linalg.solve(K, (ds.Y[:, j] - mu) / sd - c)
    cov = Kss - Ks @ torch.linalg.solve(K, Ks.T)
    return mu + sd * mean, sd * sd * cov


def test_output_indices_give_those_outputs_posterior():
    # posterior(X, output_indices=[j]) crashed ("Must provide at least 2 MVNs"), and any
    # subset of m >= 3 outputs too (the outcome transform's m scales against fewer outputs)
    X, Y, g = _data(3, n=10)
    gp = GPSurrogate.from_dataset(Dataset(X=X, Y=Y), n_restarts=1)
    Xs = torch.rand(4, 2, generator=g, dtype=DTYPE)
    exact = [_exact(gp, j, Xs) for j in range(3)]
    for idcs in ([1], [2], [2, 0], [1, 2]):
        post = gp.posterior(Xs, output_indices=idcs)
        assert post.mean.shape == (4, len(idcs))
        C = post.distribution.covariance_matrix
        for k, j in enumerate(idcs):
            torch.testing.assert_close(post.mean[:, k], exact[j][0], rtol=0, atol=1e-8)
            torch.testing.assert_close(C[k * 4:(k + 1) * 4, k * 4:(k + 1) * 4], exact[j][1], rtol=0, atol=1e-10)
        # independent outputs: no cross-covariance
        if len(idcs) > 1:
            assert float(C[:4, 4:].detach().abs().max()) == 0.0
    # a noise tensor is for the selected outputs, in output units
    noise = torch.tensor([0.5, 0.25], dtype=DTYPE).expand(4, 2)
    post = gp.posterior(Xs, output_indices=[2, 0], observation_noise=noise)
    torch.testing.assert_close(post.variance, torch.stack([exact[2][1].diagonal(), exact[0][1].diagonal()], -1) + noise,
                               rtol=0, atol=1e-10)
    # batched inputs, and BoTorch's ModelListGP, which passes output_indices on to its models
    assert gp.posterior(Xs.expand(3, 4, 2), output_indices=[1]).mean.shape == (3, 4, 1)
    ml = ModelListGP(gp, gp)
    torch.testing.assert_close(ml.posterior(Xs, output_indices=[1, 3]).mean,
                               torch.stack([exact[1][0], exact[0][0]], -1), rtol=0, atol=1e-8)
    with pytest.raises(ValueError, match="output_indices"):
        gp.posterior(Xs, output_indices=[3])


def test_multi_fidelity_subset_output_of_its_one_output():
    # BoTorch's subset_output raised a NotImplementedError with no message
    g = torch.Generator().manual_seed(1)
    X = torch.rand(12, 1, generator=g, dtype=DTYPE)
    fid = torch.cat([torch.zeros(8), torch.ones(4)])
    Y = (torch.sin(6 * X) + 0.2 * fid.unsqueeze(-1)).to(DTYPE)
    model = AR1CoKriging.from_dataset(Dataset(X=X, Y=Y, fidelity=fid), restarts=1, kernel="matern52")
    Xs = torch.tensor([[0.3, 1.0], [0.7, 0.0]], dtype=DTYPE)
    sub = model.subset_output([0])
    assert sub is not model
    torch.testing.assert_close(sub.posterior(Xs).mean, model.posterior(Xs).mean, rtol=0, atol=0)
    with pytest.raises(ValueError, match="one output"):
        model.subset_output([1])


def test_ensembles_refuse_conditioning_by_name():
    # an ensemble fantasized as "'CubicElasticEnsemble' object has no attribute 'fantasize'",
    # and conditions_on_observations said it conditioned (BoTorch's Model has the method,
    # which raises), so FE²'s switch picked the conditioning updater for it
    ens = CubicElasticEnsemble(in_dim=1, num_members=2)
    assert not conditions_on_observations(ens)
    X = torch.rand(2, 1, dtype=DTYPE)
    with pytest.raises(NotImplementedError, match="does not fantasize"):
        ens.fantasize(X, SobolQMCNormalSampler(torch.Size([2])))
    with pytest.raises(NotImplementedError, match="refit"):
        ens.condition_on_observations(X, torch.zeros(2, 3, dtype=DTYPE))
    with pytest.raises(NotImplementedError, match="output_indices"):
        ens.subset_output([0])
