"""Contract tests every surrogate's tests subclass.

Example::

    class TestMyGP(SurrogateContractTests):
        def make_dataset(self):
            return Dataset(X=..., Y=...)

        def fit(self, dataset):
            return MyGP.from_dataset(dataset)

        def sample_inputs(self, model, dataset, n, seed=0):   # optional
            ...   # e.g. append a fidelity column for multi-fidelity models

pytest collects the ``test_*`` methods of the subclass; the base class itself
is not collected (its name does not start with ``Test``). The fitted model is
built once per class (class-scoped fixture), so keep ``make_dataset`` small.

What is checked: ``num_outputs``, posterior shapes ``batch x q x m`` for
inputs with and without a batch shape, finite means and positive variances,
JSON-serializable config, save -> load round trip with identical predictions
(``weights_only=True`` state, no pickle), BoTorch acquisitions
(``PosteriorMean`` and ``qLogNoisyExpectedImprovement``) run and give finite
gradients with respect to the candidates. Constitutive surrogates
(``material_response``) also subclass :class:`ConstitutiveSurrogateTests`
(stress/tangent shapes).
"""

from __future__ import annotations

import json

import pytest
import torch
from torch import Tensor

from surrogates.base import load_surrogate, save_surrogate
from surrogates.dataset import DTYPE, Dataset


class SurrogateContractTests:
    """Shapes, variances, persistence, BoTorch acquisitions, batch shapes."""

    #: number of query points per test batch
    q: int = 3
    #: tolerance of the save -> load round trip (identical up to round-off)
    roundtrip_atol: float = 1e-10

    def make_dataset(self) -> Dataset:
        raise NotImplementedError

    def fit(self, dataset: Dataset):
        raise NotImplementedError

    def sample_inputs(self, model, dataset: Dataset, n: int, seed: int = 0) -> Tensor:
        """``n x d_model`` query points: uniform in the box spanned by the
        training inputs. Override when the model's inputs are not the
        dataset's ``X`` (e.g. a multi-fidelity model's fidelity column)."""
        g = torch.Generator().manual_seed(seed)
        lo, hi = dataset.X.amin(0), dataset.X.amax(0)
        return lo + (hi - lo) * torch.rand(n, dataset.d, generator=g, dtype=DTYPE)

    def deformation_gradients(self, model, n: int, seed: int = 0) -> Tensor:
        """``n x k x k`` deformation gradients for constitutive surrogates
        (small perturbations of the identity; override for other ranges)."""
        k = getattr(model, "dim_F", None) or 3
        g = torch.Generator().manual_seed(seed)
        return torch.eye(k, dtype=DTYPE) + 0.02 * torch.randn(n, k, k, generator=g, dtype=DTYPE)

    # ------------------------------------------------------------------ fixtures
    # class-scoped fixtures are classmethods (pytest >= 9 deprecates instance-method ones);
    # the hooks above are called on a fresh instance (test classes take no arguments)
    @pytest.fixture(scope="class")
    @classmethod
    def dataset(cls) -> Dataset:
        return cls().make_dataset()

    @pytest.fixture(scope="class")
    @classmethod
    def model(cls, dataset):
        m = cls().fit(dataset)
        m.eval()
        return m

    # --------------------------------------------------------------------- tests
    def test_num_outputs(self, model, dataset):
        assert model.num_outputs == dataset.m

    def test_posterior_shapes(self, model, dataset):
        X = self.sample_inputs(model, dataset, self.q, seed=1)
        with torch.no_grad():
            post = model.posterior(X)
        m = model.num_outputs
        assert post.mean.shape == (self.q, m)
        assert post.variance.shape == (self.q, m)
        assert post.mean.dtype == DTYPE
        assert torch.isfinite(post.mean).all()
        assert (post.variance > 0).all(), post.variance

    def test_batch_shape(self, model, dataset):
        b = 2
        X = self.sample_inputs(model, dataset, b * self.q, seed=2)
        Xb = X.reshape(b, self.q, -1)
        with torch.no_grad():
            post_b = model.posterior(Xb)
            post_1 = model.posterior(X)
        m = model.num_outputs
        assert post_b.mean.shape == (b, self.q, m)
        assert post_b.variance.shape == (b, self.q, m)
        # the marginals do not depend on how the points are batched
        torch.testing.assert_close(
            post_b.mean.reshape(-1, m), post_1.mean, atol=1e-6, rtol=1e-6
        )
        torch.testing.assert_close(
            post_b.variance.reshape(-1, m), post_1.variance, atol=1e-6, rtol=1e-5
        )

    def test_predictions_deterministic(self, model, dataset):
        X = self.sample_inputs(model, dataset, self.q, seed=3)
        with torch.no_grad():
            a = model.posterior(X)
            b = model.posterior(X)
        torch.testing.assert_close(a.mean, b.mean)
        torch.testing.assert_close(a.variance, b.variance)

    def test_config_is_json(self, model):
        json.dumps(model.get_config())

    def test_save_load_roundtrip(self, model, dataset, tmp_path):
        X = self.sample_inputs(model, dataset, self.q, seed=4)
        save_surrogate(model, tmp_path / "m")
        clone = load_surrogate(tmp_path / "m")
        assert type(clone) is type(model)
        assert clone.num_outputs == model.num_outputs
        with torch.no_grad():
            a, b = model.posterior(X), clone.posterior(X)
        torch.testing.assert_close(b.mean, a.mean, atol=self.roundtrip_atol, rtol=0)
        torch.testing.assert_close(b.variance, a.variance, atol=self.roundtrip_atol, rtol=0)
        if dataset is not None and getattr(clone, "train_dataset", None) is not None:
            torch.testing.assert_close(clone.train_dataset.X, model.train_dataset.X)
            torch.testing.assert_close(clone.train_dataset.Y, model.train_dataset.Y)

    def _objective_kwargs(self, model) -> dict:
        # acquisitions need a single objective; take the first output
        if model.num_outputs == 1:
            return {}
        from botorch.acquisition.objective import (
            GenericMCObjective,
            ScalarizedPosteriorTransform,
        )

        w = torch.zeros(model.num_outputs, dtype=DTYPE)
        w[0] = 1.0
        return {
            "analytic": {"posterior_transform": ScalarizedPosteriorTransform(weights=w)},
            "mc": {"objective": GenericMCObjective(lambda Y, X=None: Y[..., 0])},
        }

    def test_posterior_mean_acquisition_gradients(self, model, dataset):
        from botorch.acquisition import PosteriorMean

        kw = self._objective_kwargs(model)
        acqf = PosteriorMean(model, **(kw["analytic"] if kw else {}))
        X = self.sample_inputs(model, dataset, 2, seed=5).unsqueeze(1)  # 2 x 1 x d
        X.requires_grad_(True)
        val = acqf(X)
        assert val.shape == (2,)
        val.sum().backward()
        assert X.grad is not None and torch.isfinite(X.grad).all()

    def test_qlognei_gradients(self, model, dataset):
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.sampling import SobolQMCNormalSampler

        kw = self._objective_kwargs(model)
        X_base = self.sample_inputs(model, dataset, 4, seed=6)
        acqf = qLogNoisyExpectedImprovement(
            model,
            X_baseline=X_base,
            sampler=SobolQMCNormalSampler(torch.Size([16]), seed=0),
            prune_baseline=False,
            cache_root=False,
            **(kw["mc"] if kw else {}),
        )
        X = self.sample_inputs(model, dataset, 2 * 2, seed=7).reshape(2, 2, -1)
        X.requires_grad_(True)
        val = acqf(X)
        assert val.shape == (2,)
        assert torch.isfinite(val).all()
        val.sum().backward()
        assert X.grad is not None and torch.isfinite(X.grad).all()


class ConstitutiveSurrogateTests:
    """Opt-in mixin for constitutive surrogates (``material_response(F)``): stress and tangent shapes.

    Example::

        class TestMyLaw(SurrogateContractTests, ConstitutiveSurrogateTests): ...
    """

    def test_material_response(self, model):
        assert hasattr(model, "material_response") and getattr(model, "dim_F", 3) is not None, (
            "ConstitutiveSurrogateTests needs a constitutive surrogate (material_response, dim_F)"
        )
        n = 4
        F = self.deformation_gradients(model, n, seed=8)
        k = F.shape[-1]
        r = model.material_response(F)
        assert r.P.shape == (n, k, k)
        assert r.tangent.shape == (n, k, k, k, k)
        assert torch.isfinite(r.P).all() and torch.isfinite(r.tangent).all()
        if r.variance is not None:
            assert r.variance.shape == (n,) and (r.variance >= 0).all()
