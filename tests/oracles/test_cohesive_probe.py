"""Cohesive-law input checks and closed-form references."""

from __future__ import annotations

import pytest

from oracles.cohesive import make_law
from oracles.exceptions import InvalidInput


@pytest.mark.parametrize("bad", ["a", [1.0, 2.0], {}])
def test_make_law_bilinear_names_a_non_numeric_gamma_t(bad):
    # before: "could not convert string to float: 'a'" (ValueError) or a TypeError, naming no parameter
    with pytest.raises(InvalidInput, match="Gamma_t must be a number"):
        make_law("bilinear", 1.0, 10.0, Gamma_t=bad)


def test_make_law_bilinear_names_a_non_numeric_gamma_n():
    with pytest.raises(InvalidInput, match="Gamma_n must be a number"):
        make_law("bilinear", "a", 10.0, Gamma_t=1.0)


def test_make_law_bilinear_equal_gammas_still_accepted():
    law = make_law("bilinear", 1.3, 10.0, Gamma_t=1.3)
    assert law.fracture_energy == (1.3, 1.3)
    assert law.critical_opening == pytest.approx(2 * 1.3 / 10.0, rel=1e-15)
