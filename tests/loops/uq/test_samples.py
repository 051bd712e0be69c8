"""Joint posterior function samples: moments against the GP posterior, exact tangents, members."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from loops.uq.samples import (
    EnsembleMembers,
    GPFunctionSamples,
    GPPosteriorMean,
    farthest_points,
)
from oracles.exceptions import InvalidInput
from tests.loops.uq.conftest import LAW

DT = torch.float64


def _cloud(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    H = 0.06 * (2 * torch.rand(n, 4, generator=g, dtype=DT) - 1)
    th = 1.3 + 0.4 * torch.rand(n, 1, generator=g, dtype=DT)
    return torch.cat([H, th], 1)


def test_moments_match_the_gp_posterior_at_and_between_anchors(descriptor_gp):
    gp, S = descriptor_gp, 2000
    cloud = _cloud(300)
    Z = farthest_points(cloud, 64)
    sm = GPFunctionSamples(gp, S, Z, seed=3)
    tol = 5 * math.sqrt(2.0 / S)  # five standard errors of a variance ratio
    for Xq, lo in ((Z[:4], 1 - tol), (cloud[-4:], 0.85)):
        y, _ = sm.paths(Xq.expand(S, -1, -1), with_grad=False)  # S x 4 x 4
        post = gp.posterior(Xq)
        mean, var = post.mean.detach(), post.variance.detach()
        assert ((y.mean(0) - mean).abs() / var.sqrt()).max() < 5 / math.sqrt(S) * 1.5
        ratio = y.var(0) / var
        assert ratio.min() > lo and ratio.max() < 1 + tol, ratio
    # joint: the correlation of one output between two anchors is the posterior's
    Xq = Z[:2]
    y, _ = sm.paths(Xq.expand(S, -1, -1), with_grad=False)
    cov = gp.posterior(Xq).mvn.covariance_matrix.detach()  # (2 points x 4 outputs), interleaved
    c_post = cov[0, 4] / torch.sqrt(cov[0, 0] * cov[4, 4])
    c_samp = torch.corrcoef(y[:, :, 0].T)[0, 1]
    assert abs(c_samp - c_post) < 5 * (1 - c_post**2) / math.sqrt(S) + 0.02


def test_tangent_is_the_derivative_of_the_path(descriptor_gp):
    sm = GPFunctionSamples(descriptor_gp, 3, farthest_points(_cloud(100), 32), seed=0)
    g = torch.Generator().manual_seed(5)
    F = torch.eye(2, dtype=DT) + 0.05 * torch.randn(3, 6, 2, 2, generator=g, dtype=DT)
    P, A = sm.batch_response(F, [1.5])
    assert P.shape == (3, 6, 2, 2) and A.shape == (3, 6, 2, 2, 2, 2)
    h = 1e-4
    for k in range(2):
        for l in range(2):
            dF = torch.zeros_like(F)
            dF[..., k, l] = h
            fd = (sm.batch_response(F + dF, [1.5])[0] - sm.batch_response(F - dF, [1.5])[0]) / (
                2 * h
            )
            assert (fd - A[..., k, l]).abs().max() < 1e-5 * A.abs().max()
    # the paths differ from each other (they are samples, not copies of the mean)
    assert (P[0] - P[1]).abs().max() > 1e-6


def test_posterior_mean_material_is_the_gp_mean(descriptor_gp):
    gp = descriptor_gp
    mean = GPPosteriorMean(gp, [1.4])
    F = torch.eye(2, dtype=DT) + 0.05 * torch.randn(
        5, 2, 2, generator=torch.Generator().manual_seed(2), dtype=DT
    )
    r = mean.material_response(F)
    X = torch.cat(
        [(F - torch.eye(2, dtype=DT)).reshape(5, 4), torch.full((5, 1), 1.4, dtype=DT)], 1
    )
    np.testing.assert_allclose(
        r.P.reshape(5, 4), gp.posterior(X).mean.detach(), rtol=1e-9, atol=1e-10
    )
    # and it approximates the law it was trained on (theta * P_NH)
    P_true = 1.4 * LAW.material_response(F).P
    assert (r.P - P_true).abs().max() < 0.05 * P_true.abs().max()
    # a single path as a material equals its row of the batch
    sm = GPFunctionSamples(gp, 4, farthest_points(_cloud(50), 16), seed=1)
    Pb, Ab = sm.batch_response(F.expand(4, -1, -1, -1), [1.4])
    one = sm.member(2, [1.4]).material_response(F)
    # equal up to the round-off of a path (about 1e-10 of the stress)
    np.testing.assert_allclose(one.P, Pb[2], rtol=0, atol=1e-9)
    np.testing.assert_allclose(one.tangent, Ab[2], rtol=0, atol=1e-7)


def test_ensemble_members_are_paths():
    from loops.fe2.providers import NeoHookean

    laws = [NeoHookean.from_young(E, 0.3) for E in (5.0, 10.0)]
    ens = EnsembleMembers(laws)
    F = torch.eye(2, dtype=DT).expand(2, 3, 2, 2) * 1.05
    P, A = ens.batch_response(F)
    np.testing.assert_allclose(P[1], laws[1].material_response(F[1]).P)
    assert ens.member(0) is laws[0]


def test_farthest_points_spread_and_keep_small_sets():
    X = torch.tensor([[0.0, 0.0], [0.01, 0.0], [1.0, 1.0], [0.0, 1.0]], dtype=DT)
    Z = farthest_points(X, 3)
    assert Z.shape == (3, 2)
    # the near-duplicate pair is not both chosen
    assert not ({0, 1} <= {int((X == z).all(1).nonzero()) for z in Z})
    assert farthest_points(X, 10).shape == (4, 2)


def test_bad_input_is_named(descriptor_gp):
    Z = farthest_points(_cloud(20), 8)
    with pytest.raises(InvalidInput, match="anchors"):
        GPFunctionSamples(descriptor_gp, 2, Z[:, :3])
    sm = GPFunctionSamples(descriptor_gp, 2, Z)
    with pytest.raises(InvalidInput, match="descriptor"):
        sm.batch_response(torch.eye(2, dtype=DT).expand(2, 1, 2, 2))
    with pytest.raises(InvalidInput, match=r"F must be 2 x n x 2 x 2"):
        sm.batch_response(torch.eye(2, dtype=DT).expand(3, 1, 2, 2), [1.5])
    with pytest.raises(ValueError, match="n_samples"):
        GPFunctionSamples(descriptor_gp, 0, Z)
    with pytest.raises(TypeError, match="ScaleKernel"):
        GPFunctionSamples(object(), 2, Z)
