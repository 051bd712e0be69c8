"""BoTorch problems by name (:func:`oracles.analytic.shifted.botorch_problem`) and on shifted boxes:
bad dimensions, problems that are not continuous, and boxes without their optimum are refused."""

import re

import pytest
import torch

from oracles.analytic.shifted import ShiftedTestFunction, botorch_problem
from oracles.exceptions import InvalidInput


@pytest.mark.parametrize("dim", [0, -2, 2.5, "3", True])
def test_a_dim_that_is_not_a_positive_integer_is_refused_by_name(dim):
    """dim = 0 had raised torch's bare IndexError, -2 BoTorch's InputDataError; 2.5 had been cut
    to 2 and True taken as 1."""
    with pytest.raises(InvalidInput, match=re.escape(f"dim must be a positive integer, got {dim!r}")):
        ShiftedTestFunction("Ackley", dim)
    assert ShiftedTestFunction("Ackley", 3.0).dim == 3  # an integral float is its integer


@pytest.mark.parametrize(("name", "dim", "idle"), [("Powell", 7, "['x5', 'x6', 'x7']"), ("Powell", 2, "['x1', 'x2']"),
                                                   ("Rosenbrock", 1, "['x1']")])
def test_a_dim_where_the_formula_leaves_inputs_out_is_refused(name, dim, idle):
    """BoTorch's Powell sums over whole groups of 4 inputs: in 7 inputs x5..x7 change nothing, in
    2 it is 0 everywhere (as Rosenbrock in 1); such a problem had been accepted, a campaign on
    it searching inputs without effect."""
    p = botorch_problem(name, 8 if name == "Powell" else 2)
    assert p.dim == (8 if name == "Powell" else 2)
    with pytest.raises(InvalidInput, match=re.escape(f"{name} in {dim} inputs does not depend on input(s) {idle}")):
        ShiftedTestFunction(name, dim)


@pytest.mark.parametrize(("name", "dim"), [("Labs", 10), ("AckleyMixed", 7)])
def test_problems_with_discrete_inputs_are_refused(name, dim):
    """Labs is defined on {0, 1}^d: between its levels it exceeds its optimal value (Labs in
    10 inputs at x = 0.5 has energy 0, merit factor inf against BoTorch's optimum 3.846), so
    the optimum and regret of a continuous campaign on it were wrong."""
    from botorch.test_functions.synthetic import Labs

    assert torch.isinf(Labs(dim=10)._evaluate_true(torch.full((1, 10), 0.5, dtype=torch.float64))).all()
    with pytest.raises(InvalidInput, match=rf"{name} \(dim {dim}\) has \d+ discrete or categorical input"):
        ShiftedTestFunction(name, dim)


def test_a_shift_that_moves_the_box_off_the_minimizer_is_refused():
    """Ackley's minimizer is 0 on [-32.768, 32.768]^2; a shift of 0.6 of the width puts the box at
    [6.55, 72.1] x [-32.8, 32.8], where the optimal value 0 is never reached: it had been
    accepted, with optimal_value 0 and no optimizers inside."""
    ok = ShiftedTestFunction("Ackley", 2, shift=[0.1, 0.1])
    assert ok.optimal_value == 0.0 and ok.optimizers.tolist() == [[0.0, 0.0]]
    for shift in ([0.6, 0.0], [5.0, 5.0]):
        with pytest.raises(InvalidInput, match=r"moves the box of Ackley \(dim 2\) off every known minimizer"):
            ShiftedTestFunction("Ackley", 2, shift=shift)
