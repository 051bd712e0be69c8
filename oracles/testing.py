"""Contract tests for oracles: a core every oracle's tests subclass, and
opt-in mixins for the properties only some oracles have.

* :class:`OracleContractTests`: metadata, shapes and dtype, every fidelity, a
  single point, bounds and input validation, pickling. Applies to every oracle.
* :class:`DeterministicOracleTests`: repeated evaluations (and a pickled
  copy) give identical outputs. For noise-free oracles, and for noisy ones
  that seed their noise per point.
* :class:`FailingInputsTests`: points inside the bounds that the oracle
  cannot evaluate come back flagged, with NaN outputs and a reason. The
  subclass names such points in :meth:`FailingInputsTests.failing_inputs`.

Example::

    class TestMyOracle(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
        def make_oracle(self):
            return MyOracle(...)

        def failing_inputs(self, oracle):
            return torch.tensor([[...]])     # k x d points expected to fail

pytest collects the ``test_*`` methods of the subclass. The classes here are
not collected themselves (their names do not start with ``Test``); a mixin
reaches its oracle through the ``oracle`` fixture of :class:`OracleContractTests`.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import Tensor

from oracles.base import DTYPE, Oracle, OracleResult
from oracles.exceptions import InvalidInput

__all__ = ["DeterministicOracleTests", "FailingInputsTests", "OracleContractTests"]


class OracleContractTests:
    """The contract every oracle meets: metadata, shapes and dtype, each
    fidelity, one point as a vector, bounds and value checks, pickling.

    Subclasses define :meth:`make_oracle` and may override
    :meth:`sample_inputs` (for oracles whose feasible set is smaller than
    their box) and ``n_points``.
    """

    #: number of points in the test batch
    n_points: int = 3

    def make_oracle(self) -> Oracle:
        """The oracle under test (built once per test class)."""
        raise NotImplementedError(f"{type(self).__name__} must define make_oracle")

    def sample_inputs(self, oracle: Oracle, n: int, seed: int = 0) -> Tensor:
        """``n x d`` points uniformly inside the bounds (override for oracles
        whose feasible set is smaller than their box)."""
        g = torch.Generator().manual_seed(seed)
        u = torch.rand(n, oracle.dim, generator=g, dtype=DTYPE)
        lo, hi = oracle.bounds
        return lo + (hi - lo) * u

    # class-scoped fixtures are classmethods (pytest >= 9 deprecates instance-method ones);
    # the hooks above are called on a fresh instance (test classes take no arguments)
    @pytest.fixture(scope="class")
    @classmethod
    def oracle(cls) -> Oracle:
        return cls().make_oracle()

    @pytest.fixture(scope="class")
    @classmethod
    def result(cls, oracle) -> OracleResult:
        return oracle.evaluate(cls().sample_inputs(oracle, cls.n_points))

    def test_metadata(self, oracle):
        assert oracle.bounds.shape == (2, oracle.dim)
        assert oracle.bounds.dtype == DTYPE
        assert (oracle.bounds[0] < oracle.bounds[1]).all()
        assert len(oracle.output_names) == oracle.num_outputs >= 1
        assert oracle.num_fidelities >= 1

    def test_shapes_and_dtype(self, oracle, result):
        n, m = self.n_points, oracle.num_outputs
        assert result.Y.shape == (n, m) and result.Y.dtype == DTYPE
        assert result.failed.shape == (n,) and result.failed.dtype == torch.bool
        assert result.cost.shape == (n,) and (result.cost > 0).all()
        assert len(result.reasons) == n and len(result.metadata) == n
        assert result.fidelity == oracle.highest_fidelity
        if oracle.noisy:
            assert result.Yvar is not None and result.Yvar.shape == (n, m)
        ok = ~result.failed
        assert torch.isfinite(result.Y[ok]).all()
        assert all(r is None for r, f in zip(result.reasons, result.failed, strict=True) if not f)

    def test_each_fidelity(self, oracle):
        X = self.sample_inputs(oracle, 2, seed=1)
        for k in range(oracle.num_fidelities):
            r = oracle.evaluate(X, fidelity=k)
            assert r.fidelity == k and r.Y.shape == (2, oracle.num_outputs)
        with pytest.raises(InvalidInput, match="fidelity"):
            oracle.evaluate(X, fidelity=oracle.num_fidelities)
        with pytest.raises(InvalidInput, match="fidelity"):
            oracle.evaluate(X, fidelity=True)  # a bool is not a level
        # numpy and torch integers are levels
        top = oracle.num_fidelities - 1
        for level in (np.int64(top), torch.tensor(top)):
            assert oracle.evaluate(X, fidelity=level).fidelity == top

    def test_empty_batch(self, oracle):
        """No points: an empty answer of the right shapes, whatever the oracle's batch code."""
        r = oracle.evaluate(torch.zeros(0, oracle.dim, dtype=DTYPE))
        assert r.Y.shape == (0, oracle.num_outputs) and r.failed.shape == (0,) and r.cost.shape == (0,)
        assert r.reasons == [] and (r.Yvar is None) == (not oracle.noisy)

    def test_one_point_as_vector(self, oracle):
        x = self.sample_inputs(oracle, 1, seed=2)[0]
        assert oracle.evaluate(x).Y.shape == (1, oracle.num_outputs)

    def test_bounds_are_enforced(self, oracle):
        X = self.sample_inputs(oracle, 2, seed=3)
        lo, hi = oracle.bounds
        X[1, 0] = hi[0] + 0.5 * (hi[0] - lo[0]) + 1.0
        with pytest.raises(InvalidInput, match=oracle.input_names[0]):
            oracle.evaluate(X)

    def test_bad_shapes_and_values(self, oracle):
        with pytest.raises(InvalidInput, match="shape"):
            oracle.evaluate(torch.zeros(2, oracle.dim + 1, dtype=DTYPE))
        X = self.sample_inputs(oracle, 1, seed=4)
        X[0, -1] = float("nan")
        with pytest.raises(InvalidInput, match="nan"):
            oracle.evaluate(X)

    def test_picklable(self, oracle):
        clone = pickle.loads(pickle.dumps(oracle))
        X = self.sample_inputs(oracle, 1, seed=6)
        assert clone.evaluate(X).Y.shape == (1, oracle.num_outputs)


class DeterministicOracleTests:
    """Opt-in: the same inputs give the same outputs, also after pickling."""

    def test_deterministic(self, oracle):
        X = self.sample_inputs(oracle, 2, seed=5)
        a, b = oracle.evaluate(X), oracle.evaluate(X)
        torch.testing.assert_close(a.Y, b.Y, equal_nan=True)

    def test_pickled_copy_agrees(self, oracle):
        clone = pickle.loads(pickle.dumps(oracle))
        X = self.sample_inputs(oracle, 1, seed=6)
        torch.testing.assert_close(clone.evaluate(X).Y, oracle.evaluate(X).Y, equal_nan=True)


class FailingInputsTests:
    """Opt-in: inside-bounds points the oracle cannot evaluate are flagged,
    with NaN outputs and a reason, beside a point that succeeds."""

    def failing_inputs(self, oracle: Oracle) -> Tensor:
        """``k x d`` inside-bounds points expected to fail."""
        raise NotImplementedError(f"{type(self).__name__} must define failing_inputs")

    def test_failed_points_flagged(self, oracle):
        Xf = self.failing_inputs(oracle)
        X = torch.cat([self.sample_inputs(oracle, 1, seed=7), Xf])
        r = oracle.evaluate(X)
        assert not r.failed[0], r.reasons[0]
        assert r.failed[1:].all(), r.reasons
        assert torch.isnan(r.Y[1:]).all()
        assert all(isinstance(s, str) and s for s in r.reasons[1:])
