"""The shared Oracle contract itself: validation messages, failed points, cost, records."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from oracles.base import DTYPE, CostModel, Oracle, OracleResult, PointResult, make_bounds
from oracles.exceptions import CalculationFailed, InvalidInput, NotConverged, OracleError
from oracles.testing import DeterministicOracleTests, FailingInputsTests, OracleContractTests


class ToyOracle(Oracle):
    """y = (x0 + x1, x0 * x1); fails (NotConverged) for x0 > 0.9, claims success with
    inf for x1 > 0.95, raises a non-oracle error for x0 < -0.99 (a bug must surface)."""

    input_names = ("a", "b")
    output_names = ("sum", "prod")
    num_fidelities = 2
    noisy = True

    def __init__(self):
        self.bounds = make_bounds([-1.0, 0.0], [1.0, 1.0])
        self.cost_model = CostModel((0.5, 4.0))

    def _evaluate_one(self, x, fidelity):
        if x[0] > 0.9:
            raise NotConverged("residual 1e-2 after 50 iterations", iterations=50, residual=1e-2)
        if x[0] < -0.99:
            raise RuntimeError("a bug")
        if x[1] > 0.95:
            return PointResult(y=torch.tensor([float("inf"), 0.0]), yvar=torch.zeros(2))
        y = torch.stack([x[0] + x[1], x[0] * x[1]]) * (1 + fidelity)
        return PointResult(y=y, yvar=torch.full((2,), 0.01), metadata={"iterations": 3})


def test_validation_messages():
    o = ToyOracle()
    X = o.validate_inputs([[0.1, 0.2], [0.3, 0.4]])
    assert X.dtype == DTYPE and X.shape == (2, 2)
    assert o.validate_inputs(torch.tensor([0.1, 0.2])).shape == (1, 2)
    assert o.validate_inputs(torch.tensor([[0, 1]])).dtype == DTYPE  # ints accepted
    with pytest.raises(InvalidInput, match=r"shape n x 2 \(a, b\), got shape \(3,\)"):
        o.validate_inputs([0.1, 0.2, 0.3])
    with pytest.raises(InvalidInput, match=r"input b of point 1 is nan"):
        o.validate_inputs([[0.1, 0.2], [0.1, float("nan")]])
    with pytest.raises(InvalidInput, match=r"input a = 1.5 of point 0 is outside its bounds \[-1.0, 1.0\]"):
        o.validate_inputs([[1.5, 0.2]])
    # the value is printed with the digits that show the excess (".6g" had printed "1 ... [-1, 1]")
    with pytest.raises(InvalidInput, match=r"input a = 1.00000001 of point 0"):
        o.validate_inputs([[1.00000001, 0.2]])
    with pytest.raises(InvalidInput, match="numeric"):
        o.validate_inputs([["x", "y"]])
    with pytest.raises(InvalidInput, match="real numbers"):
        o.validate_inputs(torch.zeros(1, 2, dtype=torch.complex128))
    # round-off slack on the bounds; an input within it is the bound
    assert o.validate_inputs([[1.0 + 1e-12, 0.0]])[0, 0].item() == 1.0
    # a bound given in float32 (torch's default dtype): 0.15 is 0.15000000596 there
    o.bounds = torch.tensor([[-1.0, 0.06], [1.0, 0.15]], dtype=DTYPE)
    X32 = o.validate_inputs(torch.tensor([[0.5, 0.15]]))
    assert X32.dtype == DTYPE and X32[0, 1].item() == 0.15
    with pytest.raises(InvalidInput, match="outside"):
        o.validate_inputs(torch.tensor([[0.5, 0.1501]]))


def test_fidelity_validation():
    o = ToyOracle()
    assert o.validate_fidelity(None) == 1 == o.highest_fidelity
    assert o.validate_fidelity(0.0) == 0
    assert o.validate_fidelity(torch.tensor(1)) == 1
    for bad in (2, -1, 0.5, "1"):
        with pytest.raises(InvalidInput, match=r"fidelity must be an integer in \[0, 1\]"):
            o.validate_fidelity(bad)


def test_failed_points_are_nan_with_reasons():
    o = ToyOracle()
    X = torch.tensor([[0.1, 0.2], [0.95, 0.5], [0.2, 0.99]], dtype=DTYPE)
    r = o.evaluate(X, fidelity=0)
    assert r.failed.tolist() == [False, True, True]
    assert r.ok.tolist() == [True, False, False]
    torch.testing.assert_close(r.Y[0], torch.tensor([0.3, 0.02], dtype=DTYPE))
    assert torch.isnan(r.Y[1:]).all() and torch.isnan(r.Yvar[1:]).all()
    assert r.reasons[0] is None
    assert r.reasons[1].startswith("NotConverged: residual 1e-2")
    assert r.reasons[2] == "non-finite output"
    assert all(m["wall_time"] >= 0 for m in r.metadata)
    assert r.metadata[0]["iterations"] == 3 and len(r) == 3
    # higher fidelity really evaluates the other level
    torch.testing.assert_close(o.evaluate(X[:1]).Y[0], 2 * r.Y[0])


def test_non_oracle_errors_propagate():
    with pytest.raises(RuntimeError, match="a bug"):
        ToyOracle().evaluate([[-0.995, 0.5]])


def test_cost_per_fidelity_and_cost_model_checks():
    o = ToyOracle()
    X = torch.tensor([[0.1, 0.2], [0.95, 0.5]], dtype=DTYPE)
    assert o.evaluate(X, 0).cost.tolist() == [0.5, 0.5]
    assert o.evaluate(X, 1).cost.tolist() == [4.0, 4.0]  # failed points still cost
    with pytest.raises(InvalidInput, match="positive and finite"):
        CostModel((1.0, 0.0))
    with pytest.raises(InvalidInput, match="positive and finite"):
        CostModel((float("inf"),))
    with pytest.raises(InvalidInput, match="costs must be a sequence of positive numbers .* got 'ab'"):
        CostModel("ab")
    with pytest.raises(InvalidInput, match="costs must be a sequence .* got 3.0"):
        CostModel(3.0)


def test_to_records_is_json_serializable():
    o = ToyOracle()
    r = o.evaluate(torch.tensor([[0.1, 0.2], [0.95, 0.5]], dtype=DTYPE), fidelity=1)
    recs = r.to_records()
    back = json.loads(json.dumps(recs))
    assert back[0]["y"] == pytest.approx([0.6, 0.04]) and back[0]["yvar"] == pytest.approx([0.01, 0.01])
    assert back[0]["failed"] is False and back[0]["reason"] is None and back[0]["fidelity"] == 1
    assert back[1]["y"] is None and back[1]["yvar"] is None and back[1]["failed"] is True
    assert "NotConverged" in back[1]["reason"] and back[1]["cost"] == 4.0
    assert back[1]["x"] == [0.95, 0.5]


def test_make_bounds_and_exceptions():
    with pytest.raises(InvalidInput, match="lower < upper"):
        make_bounds([0.0, 1.0], [1.0, 1.0])
    # a NaN bound would switch off the bounds check of its input (every comparison with it is
    # False), an infinite one leaves no box to sample: both are refused
    for lo, hi in (([float("nan"), 0.0], [1.0, 1.0]), ([0.0, 0.0], [float("inf"), 1.0])):
        with pytest.raises(InvalidInput, match="finite lower < upper"):
            make_bounds(lo, hi)
    with pytest.raises(InvalidInput, match="bounds need two rows of numbers"):
        make_bounds(["a"], [1.0])
    assert issubclass(InvalidInput, OracleError) and issubclass(InvalidInput, ValueError)
    assert issubclass(NotConverged, OracleError) and issubclass(CalculationFailed, OracleError)
    e = NotConverged("x", iterations=3, residual=0.1)
    assert e.iterations == 3 and e.residual == 0.1


def test_missing_implementation_is_reported():
    class Empty(Oracle):
        input_names = ("x",)
        output_names = ("y",)
        bounds = make_bounds([0.0], [1.0])

    with pytest.raises(NotImplementedError, match="Empty must implement"):
        Empty().evaluate([[0.5]])


def test_result_pickles():
    r = ToyOracle().evaluate([[0.1, 0.2]])
    r2 = pickle.loads(pickle.dumps(r))
    assert isinstance(r2, OracleResult) and torch.equal(r2.Y, r.Y)


class TestToyOracleContract(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
    def make_oracle(self):
        return ToyOracle()

    def sample_inputs(self, oracle, n, seed=0):
        g = torch.Generator().manual_seed(seed)
        return torch.rand(n, 2, generator=g, dtype=DTYPE) * 0.8  # feasible part

    def failing_inputs(self, oracle):
        return torch.tensor([[0.95, 0.1], [0.5, 0.99]], dtype=DTYPE)


def test_complex_or_bool_numbers_of_a_subclass_fail_the_point():
    """A subclass returning complex outputs (from an FFT or an eigenvalue solve) had had them cast
    to float64, the imaginary part dropped; from evaluate_batch, too."""

    class Complex(Oracle):
        input_names, output_names = ("x",), ("y",)
        bounds = make_bounds([0.0], [1.0])

        def evaluate_one(self, x, fidelity):
            return PointResult(y=torch.complex(x, x))

    class ComplexBatch(Complex):
        def evaluate_batch(self, X, fidelity):
            n = X.shape[0]
            return OracleResult(X=X, Y=torch.complex(X, X), failed=torch.zeros(n, dtype=torch.bool),
                                reasons=[None] * n, cost=torch.ones(n, dtype=DTYPE), fidelity=fidelity)

    class BoolBatch(ComplexBatch):
        def evaluate_batch(self, X, fidelity):
            res = super().evaluate_batch(X, fidelity)
            res.Y = X > 0.4
            return res

    r = Complex().evaluate([[0.5]])
    assert bool(r.failed[0]) and torch.isnan(r.Y).all() and "returned complex outputs" in r.reasons[0]
    for o, kind in ((ComplexBatch(), "complex"), (BoolBatch(), "bool")):
        r = o.evaluate([[0.5], [0.25]])
        assert r.failed.all() and torch.isnan(r.Y).all() and r.Y.dtype == DTYPE
        assert r.reasons == [f"{kind} outputs; expected real numbers"] * 2
