"""FunctionOracle: the Oracle contract for plain Python functions, and what it refuses."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from oracles.base import DTYPE, Oracle, PointResult, make_bounds
from oracles.exceptions import InvalidInput
from oracles.function import FunctionOracle, check_picklable
from oracles.testing import DeterministicOracleTests, FailingInputsTests, OracleContractTests


def branin(x):
    """Branin (global minimum 0.397887 at (pi, 2.275), among others)."""
    x1, x2 = x[0], x[1]
    b, c, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * torch.cos(x1) + 10


def branin_or_fail(x):
    if x[0] > 9.0:
        raise RuntimeError(f"solver diverged at {float(x[0]):.3g}")
    return branin(x)


def noisy_pair(x, fidelity):
    """Two outputs with a variance that shrinks with the fidelity."""
    y = torch.stack([x.sum(), x.prod()]) * (1 + 0.1 * fidelity)
    return y, torch.full((2,), 0.1 / (1 + fidelity))


def sphere_batch(X):
    return (X**2).sum(-1, keepdim=True)


class TestFunctionOracleContract(OracleContractTests, DeterministicOracleTests, FailingInputsTests):
    def make_oracle(self):
        return FunctionOracle(branin_or_fail, [[-5.0, 0.0], [10.0, 15.0]], cost=2.0)

    def failing_inputs(self, oracle):
        return torch.tensor([[9.5, 3.0]], dtype=DTYPE)


class TestNoisyMultiFidelityFunctionOracle(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return FunctionOracle(noisy_pair, {"a": (0.0, 1.0), "b": (1.0, 2.0)}, outputs=("s", "p"),
                              noisy=True, cost=(1.0, 5.0), num_fidelities=2)


class TestVectorizedFunctionOracle(OracleContractTests, DeterministicOracleTests):
    def make_oracle(self):
        return FunctionOracle(sphere_batch, [[-1.0] * 3, [1.0] * 3], vectorized=True)


def test_values_match_the_function_and_bounds_name_the_inputs():
    o = FunctionOracle(branin, {"u": (-5.0, 10.0), "v": (0.0, 15.0)}, outputs="f")
    assert o.input_names == ("u", "v") and o.output_names == ("f",)
    # the three global minimizers of Branin, value 0.397887 (Dixon & Szego 1978)
    X = torch.tensor([[-math.pi, 12.275], [math.pi, 2.275], [9.42478, 2.475]], dtype=DTYPE)
    torch.testing.assert_close(o.evaluate(X).Y, torch.full((3, 1), 0.397887, dtype=DTYPE), atol=1e-5, rtol=0)
    assert isinstance(o, Oracle) and torch.equal(o.evaluate(X).cost, torch.ones(3, dtype=DTYPE))


def test_exceptions_become_failed_points_with_reasons():
    o = FunctionOracle(branin_or_fail, [[-5.0, 0.0], [10.0, 15.0]])
    r = o.evaluate(torch.tensor([[0.0, 1.0], [9.5, 1.0]], dtype=DTYPE))
    assert r.failed.tolist() == [False, True]
    assert "RuntimeError: solver diverged at 9.5" in r.reasons[1]
    assert torch.isnan(r.Y[1]).all() and torch.isfinite(r.Y[0]).all()


def test_bad_numbers_from_the_function_fail_the_point():
    o = FunctionOracle(lambda x: (x[0], x[0] - 1.0), [[0.0], [1.0]], noisy=True)
    r = o.evaluate(torch.tensor([[0.5], [0.2]], dtype=DTYPE))
    assert r.failed.all() and all("negative output variance" in s for s in r.reasons)
    o = FunctionOracle(lambda x: (x[0], float("nan")), [[0.0], [1.0]], noisy=True)
    assert "non-finite output variance" in o.evaluate([[0.5]]).reasons[0]
    o = FunctionOracle(lambda x: [1.0, 2.0], [[0.0], [1.0]])
    r = o.evaluate([[0.5]])
    assert r.failed[0] and "returned 2 outputs" in r.reasons[0] and "expected 1" in r.reasons[0]
    o = FunctionOracle(lambda x: float("inf"), [[0.0], [1.0]])
    assert o.evaluate([[0.5]]).reasons[0] == "non-finite output"


def test_lambda_cannot_be_pickled_but_runs_in_process():
    o = FunctionOracle(lambda x: x.sum(), [[0.0, 0.0], [1.0, 1.0]])
    assert o.evaluate([[0.25, 0.5]]).Y.item() == pytest.approx(0.75)
    with pytest.raises(InvalidInput) as e:
        check_picklable(o)
    msg = str(e.value)
    assert "\n" not in msg and "cannot be pickled" in msg and "module level" in msg and "'serial'" in msg
    check_picklable(FunctionOracle(branin, [[-5.0, 0.0], [10.0, 15.0]]))  # module-level: fine


def test_constructor_errors_are_one_line():
    cases = [
        (dict(fn=1, bounds=[[0.0], [1.0]]), "fn must be callable"),
        (dict(fn=branin, bounds=[[0.0, 1.0, 2.0]]), "2 x d"),
        (dict(fn=branin, bounds=[[1.0], [0.0]]), "lower < upper"),
        (dict(fn=branin, bounds=[[0.0], [math.inf]]), "finite"),
        (dict(fn=branin, bounds=[[0.0, 0.0], [1.0, 1.0]], names=["a"]), "2 distinct names"),
        (dict(fn=branin, bounds=[[0.0], [1.0]], cost=-1.0), "positive"),
        (dict(fn=branin, bounds=[[0.0], [1.0]], cost=(1.0, 2.0)), "one value per fidelity"),
        (dict(fn=branin, bounds=[[0.0], [1.0]], num_fidelities=0), "num_fidelities"),
    ]
    for kwargs, match in cases:
        with pytest.raises(InvalidInput, match=match) as e:
            FunctionOracle(**kwargs)
        assert "\n" not in str(e.value)


def test_public_method_and_the_old_private_name():
    """A subclass implements the public ``evaluate_one``; the old ``_evaluate_one`` still works."""

    class New(Oracle):
        input_names, output_names = ("x",), ("y",)
        bounds = make_bounds([0.0], [1.0])

        def evaluate_one(self, x, fidelity):
            return PointResult(y=2 * x)

    class Old(New):
        evaluate_one = Oracle.evaluate_one

        def _evaluate_one(self, x, fidelity):
            return PointResult(y=3 * x)

    assert New().evaluate([[0.5]]).Y.item() == 1.0
    assert Old().evaluate([[0.5]]).Y.item() == 1.5
    assert "evaluate_one" in (Oracle.__doc__ or "") and Oracle.evaluate_one.__doc__
    clone = pickle.loads(pickle.dumps(FunctionOracle(branin, [[-5.0, 0.0], [10.0, 15.0]])))
    assert clone.evaluate([[0.0, 0.0]]).Y.shape == (1, 1)


def test_answers_of_the_wrong_kind_or_shape_fail_the_point_naming_what_came_back():
    """A vectorized m x n answer (n != m) had been reshaped into the wrong rows, a None return had
    ended evaluate() in a bare TypeError, and a function editing its argument had changed the
    recorded inputs."""
    vec = FunctionOracle(lambda X: torch.stack([X[:, 0], 10 * X[:, 1]]), [[0, 0], [1, 1]], outputs=("a", "b"),
                         vectorized=True)
    r = vec.evaluate([[0.5, 0.1], [0.25, 0.2], [0.1, 0.3]])
    assert r.failed.all() and "shape (2, 3); expected n x m = 3 x 2" in r.reasons[0]
    none = FunctionOracle(lambda x: None, [[0.0], [1.0]]).evaluate([[0.5]])
    assert bool(none.failed[0]) and "NoneType" in none.reasons[0]

    def edits(x):
        x -= 0.3
        return float(x.sum())

    X = torch.tensor([[0.5, 0.5], [0.9, 0.1]], dtype=DTYPE)
    r = FunctionOracle(edits, [[0, 0], [1, 1]]).evaluate(X)
    assert r.X.tolist() == [[0.5, 0.5], [0.9, 0.1]] and r.Y[:, 0].tolist() == pytest.approx([0.4, 0.4])


def test_constructor_settings_are_checked_in_one_line():
    import numpy as np

    b = [[0.0], [1.0]]
    assert FunctionOracle(lambda x: 1.0, b, cost=np.float32(2)).cost_model.costs == (2.0,)
    assert FunctionOracle(lambda x: 1.0, b, cost=torch.tensor(2.0)).cost_model.costs == (2.0,)
    assert FunctionOracle(lambda x: 1.0, b, failures=ValueError).failures == (ValueError,)
    for kw, msg in (({"cost": "2"}, "cost"), ({"bounds": None}, "bounds must be 2 x d"),
                    ({"bounds": {"a": ("0", "1")}}, "numbers per input"), ({"names": "a"}, "the string"),
                    ({"bounds": {"y": (0, 1)}}, r"output names \['y'\] are also input names"),
                    ({"failures": (3,)}, "exception classes")):
        with pytest.raises(InvalidInput, match=msg):
            FunctionOracle(lambda x: 1.0, **{"bounds": b, **kw})


@pytest.mark.parametrize("answer, kind", [
    (lambda x: torch.complex(x.sum(), x.sum()), "complex"),   # a torch complex scalar had become its real part
    (lambda x: np.array([1.0 + 2.0j]), "complex"),             # a numpy complex array had too, without a warning
    (lambda x: x.sum() > 0.5, "bool"),                         # a flag had become 0.0 or 1.0
    (lambda x: np.bool_(True), "bool"),
])
def test_complex_or_bool_answers_fail_the_point_instead_of_becoming_numbers(answer, kind):
    for vectorized in (False, True):
        fn = (lambda X, a=answer: torch.stack([torch.as_tensor(a(x)) for x in X])) if vectorized else answer
        r = FunctionOracle(fn, [[0.0, 0.0], [1.0, 1.0]], vectorized=vectorized).evaluate([[0.5, 0.5], [0.2, 0.1]])
        assert r.failed.all() and torch.isnan(r.Y).all(), (vectorized, r.Y)
        assert all(f"output is {kind}" in s and "expected real numbers" in s for s in r.reasons), r.reasons
    noisy = FunctionOracle(lambda x: (x.sum(), torch.tensor(1j)), [[0.0], [1.0]], noisy=True).evaluate([[0.5]])
    assert bool(noisy.failed[0]) and "variance is complex" in noisy.reasons[0]


def test_flags_are_true_or_false_and_bounds_name_the_input_that_is_empty():
    """noisy='no' and vectorized='no' had been taken as True (bool('no')); bounds with lower >= upper
    had been refused without naming the input; failures='ValueError' had been read letter by letter."""
    b = {"length": (0.0, 1.0), "angle": (0.5, 0.5)}
    for kw in ({"noisy": "no"}, {"vectorized": "no"}, {"noisy": 1}):
        with pytest.raises(InvalidInput, match=f"{next(iter(kw))} must be True or False, got {next(iter(kw.values()))!r}"):
            FunctionOracle(lambda x: 1.0, [[0.0], [1.0]], **kw)
    assert FunctionOracle(lambda x: 1.0, [[0.0], [1.0]], noisy=np.bool_(False)).noisy is False
    with pytest.raises(InvalidInput, match=r"bounds of input 'angle' need lower < upper, got lower = 0.5, upper = 0.5 "
                                           r"\(an input held fixed"):
        FunctionOracle(lambda x: 1.0, b)
    with pytest.raises(InvalidInput, match=r"bounds of input 'x1' need lower < upper, got lower = 2.0, upper = 1.0$"):
        FunctionOracle(lambda x: 1.0, [[0.0, 2.0], [1.0, 1.0]])
    with pytest.raises(InvalidInput, match="exception classes, got the string 'ValueError'"):
        FunctionOracle(lambda x: 1.0, [[0.0], [1.0]], failures="ValueError")
