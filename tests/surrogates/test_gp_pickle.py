"""The GP surrogates go through pickle (multiprocessing, Dask) and copy.deepcopy unchanged."""

import copy
import pickle

import pytest
import torch
from gpytorch.mlls import ExactMarginalLogLikelihood

from surrogates import Dataset
from surrogates.gp import GPSurrogate, ICMGPSurrogate

D = torch.float64


def _data(n=14, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 2, generator=g, dtype=D)
    Y = torch.stack([torch.sin(3 * X).sum(-1), torch.cos(2 * X).prod(-1) + 0.3 * X[:, 0]], -1)
    return Dataset(X=X, Y=Y)


def _priors_value(model):
    """Sum of the log priors at the current hyperparameters (every registered prior's closure)."""
    total = torch.zeros((), dtype=D)
    for _, mod, prior, closure, _ in model.named_priors():
        total = total + prior.log_prob(closure(mod)).sum()
    return total


@pytest.mark.parametrize("cls", [GPSurrogate, ICMGPSurrogate])
@pytest.mark.parametrize("copier", ["pickle", "deepcopy"])
def test_round_trip_keeps_the_posterior_bit_for_bit(cls, copier):
    """ICMGPSurrogate had failed ``pickle.dumps`` (BoTorch's task kernel registers its prior with
    lambdas), so it could not go to a process pool or a Dask worker."""
    gp = cls.from_dataset(_data(), n_restarts=1, maxiter=30)
    Xq = torch.rand(7, 2, generator=torch.Generator().manual_seed(1), dtype=D)
    before = gp.posterior(Xq)  # the prediction caches exist: they travel too
    back = pickle.loads(pickle.dumps(gp)) if copier == "pickle" else copy.deepcopy(gp)
    after = back.posterior(Xq)
    assert torch.equal(after.mean, before.mean)
    assert torch.equal(after.variance, before.variance)
    assert torch.equal(after.distribution.covariance_matrix, before.distribution.covariance_matrix)
    # a fresh model (no cache) predicts the same
    fresh = pickle.loads(pickle.dumps(cls.from_dataset(_data(), n_restarts=1, maxiter=30)))
    assert torch.equal(fresh.posterior(Xq).mean, before.mean)
    # the priors still evaluate (their closures came through), and so does the fit objective
    assert torch.equal(_priors_value(back), _priors_value(gp))
    for m in (gp, back):
        m.train()
    mll = [ExactMarginalLogLikelihood(m.likelihood, m) for m in (gp, back)]
    with torch.no_grad():
        vals = [float(ml(m(*m.train_inputs), m.train_targets, *m.train_inputs).sum())
                for ml, m in zip(mll, (gp, back), strict=True)]
    assert vals[0] == vals[1]


def test_the_task_prior_closures_that_pickle_do_what_the_libraries_lambdas_do():
    """The lambdas of BoTorch's PositiveIndexKernel and GPyTorch's IndexKernel are replaced by
    module-level functions: the same prior argument, the same parameters set."""
    from botorch.models.kernels.positive_index import PositiveIndexKernel
    from botorch.models.utils.priors import BetaPrior
    from gpytorch.kernels import IndexKernel
    from gpytorch.priors import LKJCovariancePrior, SmoothedBoxPrior

    from surrogates.gp import _picklable_priors

    torch.manual_seed(0)
    kernels = [PositiveIndexKernel(3, rank=2, task_prior=BetaPrior(2.0, 2.0)).to(D),
               IndexKernel(3, rank=2, prior=LKJCovariancePrior(3, 1.0, SmoothedBoxPrior(0.1, 2.0))).to(D)]
    for lib in kernels:
        ours = copy.deepcopy(lib)
        _picklable_priors(ours)
        with pytest.raises(Exception, match="pickle"):
            pickle.dumps(lib)
        ours = pickle.loads(pickle.dumps(ours))
        (_, a_get, a_set), (_, b_get, b_set) = lib._priors["IndexKernelPrior"], ours._priors["IndexKernelPrior"]
        with torch.no_grad():
            assert torch.equal(a_get(lib), b_get(ours))
            if a_set is not None:
                v = torch.tensor([0.3, 0.5, 0.2], dtype=D)
                a_set(lib, v)
                b_set(ours, v)
                assert torch.equal(lib.raw_covar_factor, ours.raw_covar_factor)
                assert torch.equal(a_get(lib), b_get(ours))
