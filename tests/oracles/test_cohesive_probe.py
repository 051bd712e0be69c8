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


def test_exponential_law_overflow_in_deep_compression_is_named():
    """Xu-Needleman's compressive response grows as exp(-dn/delta_n); past about 700 delta_n of
    interpenetration it overflowed float64 and returned -inf tractions and inf or nan energies
    without a word. It is now an InvalidInput naming the opening; 600 delta_n still evaluates,
    and matches the closed form Tn = (Gamma_n / delta_n) a e^{-a} at zero slip (a = dn/delta_n)."""
    import math

    import torch

    from oracles.cohesive.laws import ExponentialLaw
    from oracles.exceptions import InvalidInput

    law = ExponentialLaw(Gamma_n=100.0, sigma_max=1e6)
    dn = law.delta_n
    a = -600.0
    t = law.traction(torch.tensor([a * dn, 0.0], dtype=torch.float64))
    assert math.isclose(float(t[0]), law.Gamma_n / dn * a * math.exp(-a), rel_tol=1e-12)
    for bad in ([-800 * dn, 0.0], [[dn, 0.0], [-720 * dn, 0.1 * law.delta_t]]):
        with pytest.raises(InvalidInput, match=r"overflows float64 at normal opening dn = .*delta_n"):
            law.traction(bad)
        with pytest.raises(InvalidInput, match="overflows float64"):
            law.potential(bad)
