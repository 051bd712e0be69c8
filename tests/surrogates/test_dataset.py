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
