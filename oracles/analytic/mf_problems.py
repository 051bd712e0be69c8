r"""Multi-fidelity benchmark functions from the literature, as oracles.

Levels are ordered from the cheapest (fidelity 0) to the truth
(``num_fidelities - 1``). Each class is a
:class:`~oracles.analytic.test_functions.SyntheticOracle` (noise, costs and
``evaluate_true`` from there); the formulas and their sources are in each
docstring. Costs default to ``10**t`` for level ``t``.

From Cutajar, Pullin, Damianou, Lawrence & González (2019), "Deep Gaussian
processes for multi-fidelity modeling" (NeurIPS workshop; the set Emukit's
``emukit.test_functions.multi_fidelity`` implements), besides the two-level
Forrester, Currin, Park and Borehole of :mod:`oracles.analytic.test_functions`:

* :class:`MFBranin` (2D, three levels), :class:`MFHartmann3` (3D, three levels).

From Mainini, Serani, Rumpfkeil, Minisci, Quagliarella, Pehlivan, Yildiz,
Ficini, Pellegrini, Di Fiore, Bryson, Nikbay, Diez & Beran (2022),
"Analytical benchmark problems for multifidelity optimization methods"
(NATO AVT-331, arXiv:2204.07867), the L1 problems:

* :class:`MultiLevelForrester` (1D, four levels),
* :class:`MFRosenbrock` (any dimension, three levels),
* :class:`MFRastrigin` (shifted-rotated, any dimension, three levels by
  resolution error),
* :class:`MFHeterogeneous` (1D, three levels).

The dictionary :data:`FUNCTIONS` maps short names to factories, including the
four two-level functions imported from :mod:`oracles.analytic.test_functions`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from oracles.analytic.test_functions import Borehole, Currin, Forrester, Park, SyntheticOracle
from oracles.exceptions import InvalidInput

__all__ = [
    "FUNCTIONS",
    "MFBranin",
    "MFHartmann3",
    "MFHeterogeneous",
    "MFRastrigin",
    "MFRosenbrock",
    "MultiLevelForrester",
]


class _Levels(SyntheticOracle):
    """Costs ``10**t`` by default for ``L`` levels."""

    def __init__(self, noise_std=None, costs: Sequence[float] | None = None, negate=False, seed=None):
        if costs is None:
            costs = tuple(10.0**t for t in range(self.num_fidelities))
        super().__init__(noise_std=noise_std, costs=costs, negate=negate, seed=seed)


def _branin(x1: Tensor, x2: Tensor) -> Tensor:
    b, c, r, s, t = 5.1 / (4 * math.pi**2), 5 / math.pi, 6.0, 10.0, 1 / (8 * math.pi)
    return (x2 - b * x1**2 + c * x1 - r) ** 2 + s * (1 - t) * torch.cos(x1) + s


class MFBranin(_Levels):
    r"""Three-level Branin of Cutajar et al. (2019), on ``[-5, 10] x [0, 15]``.

    With the Branin function ``B`` (Branin 1972; Dixon & Szegö 1978):

    .. math::
        f_2(x) = B(x) / 100,\quad
        f_1(x) = [10 \sqrt{B(x - 2)} + 2 (x_1 - 0.5) - 3 (3 x_2 - 1) - 1] / 100,\quad
        f_0(x) = f_1(1.2 (x + 2)) - (3 x_2 - 1) / 100.

    (Emukit 0.5.1's ``multi_fidelity_branin_function``, whose code these are.)
    """

    input_names = ("x1", "x2")
    _bounds = [(-5.0, 10.0), (0.0, 15.0)]
    num_fidelities = 3

    @staticmethod
    def _medium(X: Tensor) -> Tensor:
        x1, x2 = X[:, 0], X[:, 1]
        return (10 * torch.sqrt(_branin(x1 - 2, x2 - 2)) + 2 * (x1 - 0.5) - 3 * (3 * x2 - 1) - 1) / 100

    def _f(self, X, fidelity):
        if fidelity == 2:
            return _branin(X[:, 0], X[:, 1]) / 100
        if fidelity == 1:
            return self._medium(X)
        return self._medium(1.2 * (X + 2)) - (3 * X[:, 1] - 1) / 100


class MFHartmann3(_Levels):
    r"""Three-level Hartmann-3 of Cutajar et al. (2019), on ``[0, 1]^3``.

    .. math::
        f(x; \alpha) = -\sum_{i=1}^4 \alpha_i \exp\Big(-\sum_{j=1}^3 A_{ij} (x_j - P_{ij})^2\Big)

    with the Hartmann-3 ``A``, ``P`` (Dixon & Szegö 1978; VLSE ``hart3``), and
    ``alpha = (1, 1.2, 3, 3.2) + (2 - t) delta`` at level ``t``,
    ``delta = (0.01, -0.01, -0.1, 0.1)``.
    """

    input_names = ("x1", "x2", "x3")
    _bounds = [(0.0, 1.0)] * 3
    num_fidelities = 3
    _A = ((3.0, 10.0, 30.0), (0.1, 10.0, 35.0), (3.0, 10.0, 30.0), (0.1, 10.0, 35.0))
    _P = ((0.3689, 0.1170, 0.2673), (0.4699, 0.4387, 0.7470), (0.1091, 0.8732, 0.5547), (0.0381, 0.5743, 0.8828))

    def _f(self, X, fidelity):
        A, P = torch.tensor(self._A, dtype=X.dtype), torch.tensor(self._P, dtype=X.dtype)
        alpha = torch.tensor([1.0, 1.2, 3.0, 3.2], dtype=X.dtype)
        alpha = alpha + (2 - fidelity) * torch.tensor([0.01, -0.01, -0.1, 0.1], dtype=X.dtype)
        inner = (A * (X.unsqueeze(-2) - P).pow(2)).sum(-1)  # n x 4
        return -(alpha * torch.exp(-inner)).sum(-1)


def _check_dim(cls: str, dim, minimum: int) -> int:
    """``dim`` if it is an integer ``>= minimum`` (not a bool, a float or a string), else ``InvalidInput``."""
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < minimum:
        raise InvalidInput(f"{cls} needs an integer dim >= {minimum}, got {dim!r}")
    return int(dim)


class MultiLevelForrester(_Levels):
    r"""Forrester function with four fidelities (Mainini et al. 2022, L1 problem 1), on ``[0, 1]``.

    .. math::
        f_3(x) = (6x - 2)^2 \sin(12x - 4),\quad f_2(x) = (5.5x - 2.5)^2 \sin(12x - 4),

        f_1(x) = 0.75 f_3(x) + 5 (x - 0.5) - 2,\quad f_0(x) = 0.5 f_3(x) + 10 (x - 0.5) - 5.
    """

    input_names = ("x",)
    _bounds = [(0.0, 1.0)]
    num_fidelities = 4

    def _f(self, X, fidelity):
        x = X[:, 0]
        hi = (6 * x - 2) ** 2 * torch.sin(12 * x - 4)
        if fidelity == 3:
            return hi
        if fidelity == 2:
            return (5.5 * x - 2.5) ** 2 * torch.sin(12 * x - 4)
        if fidelity == 1:
            return 0.75 * hi + 5 * (x - 0.5) - 2
        return 0.5 * hi + 10 * (x - 0.5) - 5


class MFRosenbrock(_Levels):
    r"""Rosenbrock function with three fidelities (Mainini et al. 2022, L1 problem 3), on ``[-2, 2]^d``.

    .. math::
        f_2(x) = \sum_{i=1}^{d-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2,

        f_1(x) = \sum_{i=1}^{d-1} 50 (x_{i+1} - x_i^2)^2 + (-2 - x_i)^2 - \sum_{i=1}^{d} 0.5 x_i,

        f_0(x) = \frac{f_2(x) - 4 - \sum_{i=1}^d 0.5 x_i}{10 + \sum_{i=1}^d 0.25 x_i}.

    Args:
        dim: input dimension ``d >= 2``; other arguments as :class:`SyntheticOracle`.
    """

    num_fidelities = 3

    def __init__(self, dim: int = 2, **kwargs):
        self._dim = _check_dim("MFRosenbrock", dim, 2)
        self.input_names = tuple(f"x{i + 1}" for i in range(self._dim))
        self._bounds = [(-2.0, 2.0)] * self._dim
        super().__init__(**kwargs)

    def _f(self, X, fidelity):
        a, b = X[:, :-1], X[:, 1:]
        s = X.sum(-1)
        hi = (100 * (b - a**2) ** 2 + (1 - a) ** 2).sum(-1)
        if fidelity == 2:
            return hi
        if fidelity == 1:
            return (50 * (b - a**2) ** 2 + (-2 - a) ** 2).sum(-1) - 0.5 * s
        return (hi - 4 - 0.5 * s) / (10 + 0.25 * s)


class MFRastrigin(_Levels):
    r"""Shifted-rotated Rastrigin with resolution error (Mainini et al. 2022, L1
    problem 4, after Wang, Jin & Doherty 2018, "A generic test suite for
    evolutionary multifidelity optimization", IEEE TEVC 22), on ``[-0.1, 0.2]^d``.

    .. math::
        f(x, \phi) = \sum_{i=1}^d \big(z_i^2 + 1 - \cos(10\pi z_i)\big)
            + \sum_{i=1}^d \Theta(\phi) \cos^2\big(10\pi\Theta(\phi) z_i + 0.5\pi\Theta(\phi) + \pi\big),

    ``z = R (x - x^*)``, ``x^* = 0.1``, ``Theta(phi) = 1 - 10^-4 phi``;
    ``R`` rotates every consecutive coordinate pair by ``theta = 0.2``
    (the 2D rotation of the paper for ``d = 2``). Levels 0, 1, 2 are
    ``phi = 2500, 5000, 10000`` (the last has no error).
    """

    num_fidelities = 3
    PHI = (2500.0, 5000.0, 10000.0)

    def __init__(self, dim: int = 2, **kwargs):
        self._dim = _check_dim("MFRastrigin", dim, 1)
        self.input_names = tuple(f"x{i + 1}" for i in range(self._dim))
        self._bounds = [(-0.1, 0.2)] * self._dim
        super().__init__(**kwargs)

    def _rotation(self, dtype) -> Tensor:
        R = torch.eye(self._dim, dtype=dtype)
        c, s = math.cos(0.2), math.sin(0.2)
        for i in range(0, self._dim - 1, 2):
            R[i, i], R[i, i + 1], R[i + 1, i], R[i + 1, i + 1] = c, -s, s, c
        return R

    def _f(self, X, fidelity):
        z = (X - 0.1) @ self._rotation(X.dtype).T
        hi = (z**2 + 1 - torch.cos(10 * math.pi * z)).sum(-1)
        th = 1 - 1e-4 * self.PHI[fidelity]
        err = (th * torch.cos(10 * math.pi * th * z + 0.5 * math.pi * th + math.pi) ** 2).sum(-1)
        return hi + err


class MFHeterogeneous(_Levels):
    r"""Heterogeneous function with three fidelities (Mainini et al. 2022, L1 problem 5), on ``[0, 1]``.

    .. math::
        f_2(x) = \sin\big(30 (x - 0.9)^4\big) \cos\big(2 (x - 0.9)\big) + (x - 0.9) / 2,

        f_1(x) = \frac{f_2(x) - 1 + x}{1 + 0.25 x},

        f_0(x) = \sin\big(20 (x - 0.87)^4\big) \cos\big(2 (x - 0.87)\big) + (x - 0.87) / 2
            - \big(2.5 - (0.7 x - 0.14)^2\big) + 2x.
    """

    input_names = ("x",)
    _bounds = [(0.0, 1.0)]
    num_fidelities = 3

    def _f(self, X, fidelity):
        x = X[:, 0]
        hi = torch.sin(30 * (x - 0.9) ** 4) * torch.cos(2 * (x - 0.9)) + (x - 0.9) / 2
        if fidelity == 2:
            return hi
        if fidelity == 1:
            return (hi - 1 + x) / (1 + 0.25 * x)
        lo = torch.sin(20 * (x - 0.87) ** 4) * torch.cos(2 * (x - 0.87)) + (x - 0.87) / 2
        return lo - (2.5 - (0.7 * x - 0.14) ** 2) + 2 * x


#: short name -> factory of the oracle (keyword arguments go to the class)
FUNCTIONS: dict[str, Callable[..., SyntheticOracle]] = {
    "forrester": Forrester,
    "currin": Currin,
    "park": Park,
    "borehole": Borehole,
    "branin3": MFBranin,
    "hartmann3": MFHartmann3,
    "forrester4": MultiLevelForrester,
    "rosenbrock": MFRosenbrock,
    "rastrigin": MFRastrigin,
    "heterogeneous": MFHeterogeneous,
}
