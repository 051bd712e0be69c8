"""Dataset: bad inputs are refused naming the row and the value."""

import math

import pytest
import torch

from surrogates.dataset import DTYPE, Dataset


def test_a_negative_variance_is_refused_naming_its_row_and_value():
    X = torch.rand(4, 2, dtype=DTYPE)
    Y = torch.rand(4, 2, dtype=DTYPE)
    Yvar = torch.full((4, 2), 1e-3, dtype=DTYPE)
    Yvar[2, 1] = -0.5
    with pytest.raises(ValueError, match=r"Dataset.Yvar must be non-negative .*got -0.5 at row 2, output 1"):
        Dataset(X=X, Y=Y, Yvar=Yvar)


@pytest.mark.parametrize(("where", "value"), [("X", math.nan), ("Y", math.inf)])
def test_a_non_finite_row_is_refused_naming_the_first_one(where, value):
    X = torch.rand(5, 2, dtype=DTYPE)
    Y = torch.rand(5, 1, dtype=DTYPE)
    (X if where == "X" else Y)[3, 0] = value
    (X if where == "X" else Y)[4, 0] = value
    with pytest.raises(ValueError, match=r"must be finite \(drop failed points first\); 2 row\(s\) are not, the first is "
                                         r"row 3: X = \[.*\], Y = \[.*\]"):
        Dataset(X=X, Y=Y)


def test_names_must_match_the_columns_and_levels_be_non_negative():
    """input_names of the wrong length had been accepted and broke the pyfunc model later; a
    negative level had passed."""
    X, Y = torch.zeros(4, 2, dtype=torch.float64), torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input_names has 1 names \('a',\) for 2 columns"):
        Dataset(X=X, Y=Y, input_names=("a",))
    with pytest.raises(ValueError, match="output_names has 2 names"):
        Dataset(X=X, Y=Y, output_names=("u", "v"))
    with pytest.raises(ValueError, match="levels >= 0.*got -1"):
        Dataset(X=X, Y=Y, fidelity=[0, -1, 0, 1])


def test_observed_must_be_a_mask_and_unreadable_levels_or_masks_name_the_field():
    """A mask value of 2 or 0.5 had been read as True (observed); strings gave torch's bare
    'too many dimensions'. A 0/1 integer mask is a mask."""
    assert Dataset(X=[[0.0], [1.0]], Y=[[1.0, 2.0], [3.0, 4.0]], observed=[[1, 0], [1, 1]]).observed.tolist() == [
        [True, False], [True, True]]
    for bad, shown in (([[1, 2], [1, 1]], "2"), ([[1.0, 0.5], [1.0, 1.0]], "0.5")):
        with pytest.raises(ValueError, match=rf"Dataset.observed must be a boolean mask .*got {shown}"):
            Dataset(X=[[0.0], [1.0]], Y=[[1.0, 2.0], [3.0, 4.0]], observed=bad)
    with pytest.raises(ValueError, match=r"Dataset.observed must hold a boolean mask .*got list"):
        Dataset(X=[[0.0]], Y=[[1.0]], observed=[["x"]])
    with pytest.raises(ValueError, match=r"Dataset.fidelity must hold integer levels .*got list"):
        Dataset(X=[[0.0]], Y=[[1.0]], fidelity=["a"])


def test_from_oracle_results_of_nothing_is_named():
    with pytest.raises(ValueError, match="needs at least one OracleResult, got none"):
        Dataset.from_oracle_results([])
