r"""Synthetic test functions as oracles: two-fidelity benchmarks and classic optima.

Two-fidelity functions (``num_fidelities=2``; fidelity 0 is the cheap
approximation, 1 the truth), each with its literature definition:

* :class:`Forrester` (1D), :class:`Currin` (2D), :class:`Park` (4D),
  :class:`Borehole` (8D).

Single-fidelity functions with known global minima, for campaign benchmarks,
are BoTorch's own problems wrapped as oracles (:class:`BoTorchOracle`):

* :class:`Branin` (2D), :class:`Hartmann6` (6D).

The two-fidelity functions are not in BoTorch (its ``BoreholeMultiFidelity``
is another variant, with other bounds and low fidelities). All follow
BoTorch's synthetic test problems (``botorch.test_functions``):
``bounds`` is ``2 x d``; :meth:`SyntheticOracle.evaluate` adds Gaussian noise of
``noise_std`` (per fidelity if a sequence) and reports ``Yvar = noise_std**2``;
:meth:`SyntheticOracle.evaluate_true` is noise-free; ``negate=True`` flips the
sign (for maximizers). Costs default to 1 (low) and 10 (high) per point.

The formulas were cross-checked against Emukit's
``emukit.test_functions.multi_fidelity`` and the Virtual Library of Simulation
Experiments (S. Surjanovic, D. Bingham, https://www.sfu.ca/~ssurjano/). Emukit
0.5.1's Park high fidelity uses ``x2 + x3`` where Park (1991) and its own
docstring have ``x2 + x3**2``; we follow the literature.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from botorch.test_functions import synthetic as botorch_synthetic
from botorch.test_functions.synthetic import SyntheticTestFunction
from torch import Tensor

from oracles.base import DTYPE, CostModel, Oracle, OracleResult, PointResult, make_bounds
from oracles.exceptions import InvalidInput, is_real

__all__ = [
    "SyntheticOracle",
    "Forrester",
    "Currin",
    "Park",
    "Borehole",
    "BoTorchOracle",
    "Branin",
    "Hartmann6",
]


class SyntheticOracle(Oracle):
    """Base of the analytic test functions.

    Subclasses set ``input_names``, ``_bounds`` (list of ``(lo, hi)``),
    ``num_fidelities`` and implement :meth:`_f` on an ``n x d`` tensor.

    Args:
        noise_std: standard deviation of additive Gaussian noise, a number or
            one per fidelity; ``None`` or 0 for a deterministic oracle.
        costs: cost per point of each fidelity (default ``(1, 10)`` for two
            fidelities, ``(1,)`` for one).
        negate: return ``-f`` (for maximization).
        seed: seed of the oracle's own noise stream (a NumPy generator that
            each noisy evaluation advances); ``None`` draws from torch's global
            generator, as BoTorch does.
    """

    output_names = ("y",)
    _bounds: Sequence[tuple[float, float]] = ()
    #: global minimum value of the highest fidelity, where known
    optimal_value: float | None = None

    def __init__(
        self,
        noise_std: float | Sequence[float] | None = None,
        costs: Sequence[float] | None = None,
        negate: bool = False,
        seed: int | None = None,
    ):
        self.bounds = make_bounds([b[0] for b in self._bounds], [b[1] for b in self._bounds])
        bad_noise = InvalidInput(
            f"noise_std must be a non-negative number or {self.num_fidelities} of them, got {noise_std!r}")
        if noise_std is None:
            noise = [0.0] * self.num_fidelities
        elif torch.is_tensor(noise_std) or isinstance(noise_std, np.ndarray):
            arr = np.asarray(noise_std.detach().cpu() if torch.is_tensor(noise_std) else noise_std, dtype=float)
            noise = [float(arr)] * self.num_fidelities if arr.ndim == 0 else [float(v) for v in arr.ravel()]
        elif is_real(noise_std):
            noise = [float(noise_std)] * self.num_fidelities
        elif isinstance(noise_std, (str, bytes)) or not isinstance(noise_std, Sequence):
            raise bad_noise
        else:
            if not all(is_real(v) for v in noise_std):
                raise bad_noise
            noise = [float(v) for v in noise_std]
        if len(noise) != self.num_fidelities or any(not math.isfinite(s) or s < 0 for s in noise):
            raise bad_noise
        self.noise_std = tuple(noise)
        self.noisy = any(s > 0 for s in noise)
        if costs is None:
            costs = (1.0, 10.0) if self.num_fidelities == 2 else (1.0,) * self.num_fidelities
        if isinstance(costs, (str, bytes)) or not isinstance(costs, Sequence) or len(costs) != self.num_fidelities:
            raise InvalidInput(f"costs needs {self.num_fidelities} entries (one per fidelity), got {costs!r}")
        self.cost_model = CostModel(costs)
        self.negate = bool(negate)
        self.seed = seed
        self._rng = np.random.default_rng(seed) if seed is not None else None

    def _f(self, X: Tensor, fidelity: int) -> Tensor:
        """``n`` noise-free values at ``n x d`` inputs."""
        raise NotImplementedError

    def _true(self, X: Tensor, fidelity: int) -> Tensor:
        y = self._f(X, fidelity).reshape(-1, 1)
        return -y if self.negate else y

    def evaluate_true(self, X, fidelity: int | None = None) -> Tensor:
        """Noise-free outputs ``n x 1``."""
        X = self.validate_inputs(X)
        return self._true(X, self.validate_fidelity(fidelity))

    def _evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        n = X.shape[0]
        Y = self._true(X, fidelity).clone()
        Yvar = None
        sd = self.noise_std[fidelity]
        if self.noisy:
            if sd > 0:
                if self._rng is not None:
                    eps = torch.from_numpy(self._rng.standard_normal((n, 1)))
                else:
                    eps = torch.randn(n, 1, dtype=DTYPE)
                Y = Y + sd * eps.to(DTYPE)
            Yvar = torch.full((n, 1), sd * sd, dtype=DTYPE)
        return OracleResult(
            X=X.clone(),
            Y=Y,
            failed=torch.zeros(n, dtype=torch.bool),
            reasons=[None] * n,
            cost=self.cost_model(X, fidelity),
            fidelity=fidelity,
            Yvar=Yvar,
            metadata=[{} for _ in range(n)],
        )

    def _evaluate_one(self, x: Tensor, fidelity: int) -> PointResult:
        r = self._evaluate_batch(x.unsqueeze(0), fidelity)
        return PointResult(y=r.Y[0], yvar=None if r.Yvar is None else r.Yvar[0])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(noise_std={self.noise_std}, costs={self.cost_model.costs}, "
            f"negate={self.negate})"
        )


# ------------------------------------------------------- two-fidelity
class Forrester(SyntheticOracle):
    r"""Forrester function, 1D, two fidelities, on ``[0, 1]``.

    .. math::
        f_1(x) = (6x - 2)^2 \sin(12x - 4), \qquad
        f_0(x) = A f_1(x) + B (x - 0.5) + C,\ A = 0.5,\ B = 10,\ C = 5.

    Reference: A. I. J. Forrester, A. Sóbester, A. J. Keane (2007), "Multi-fidelity
    optimization via surrogate modelling", Proc. R. Soc. A 463, 3251-3269;
    and (2008) "Engineering Design via Surrogate Modelling", Wiley, §8.
    The high fidelity has its global minimum ``f_1 = -6.02074`` at ``x = 0.757249``.
    """

    input_names = ("x",)
    _bounds = [(0.0, 1.0)]
    num_fidelities = 2

    def _f(self, X, fidelity):
        x = X[:, 0]
        hi = (6 * x - 2) ** 2 * torch.sin(12 * x - 4)
        return hi if fidelity == 1 else 0.5 * hi + 10 * (x - 0.5) + 5


def _currin_high(x1: Tensor, x2: Tensor) -> Tensor:
    # exp(-1/(2 x2)) -> 0 as x2 -> 0+, which torch gives from -inf at x2 = 0
    damp = 1 - torch.exp(-0.5 / x2)
    return damp * (2300 * x1**3 + 1900 * x1**2 + 2092 * x1 + 60) / (
        100 * x1**3 + 500 * x1**2 + 4 * x1 + 20
    )


class Currin(SyntheticOracle):
    r"""Currin exponential function, 2D, two fidelities, on ``[0, 1]^2``.

    .. math::
        f_1(x) = \Big[1 - e^{-1/(2 x_2)}\Big]
            \frac{2300 x_1^3 + 1900 x_1^2 + 2092 x_1 + 60}{100 x_1^3 + 500 x_1^2 + 4 x_1 + 20},

        f_0(x) = \tfrac14\big[f_1(x_1 + h, x_2 + h) + f_1(x_1 + h, \max(0, x_2 - h))
            + f_1(x_1 - h, x_2 + h) + f_1(x_1 - h, \max(0, x_2 - h))\big],\ h = 0.05.

    References: C. Currin, T. Mitchell, M. Morris, D. Ylvisaker (1988), "A Bayesian
    approach to the design and analysis of computer experiments", ORNL-6498;
    low fidelity from S. Xiong, P. Z. G. Qian, C. F. J. Wu (2013), "Sequential design
    and analysis of high-accuracy and low-accuracy computer codes", Technometrics 55, 37-46.
    """

    input_names = ("x1", "x2")
    _bounds = [(0.0, 1.0), (0.0, 1.0)]
    num_fidelities = 2

    def _f(self, X, fidelity):
        x1, x2 = X[:, 0], X[:, 1]
        if fidelity == 1:
            return _currin_high(x1, x2)
        h = 0.05
        lo2 = torch.clamp(x2 - h, min=0.0)
        return 0.25 * (
            _currin_high(x1 + h, x2 + h)
            + _currin_high(x1 + h, lo2)
            + _currin_high(x1 - h, x2 + h)
            + _currin_high(x1 - h, lo2)
        )


class Park(SyntheticOracle):
    r"""Park (1991) function, 4D, two fidelities, on ``[0, 1]^4``.

    .. math::
        f_1(x) = \frac{x_1}{2}\Big[\sqrt{1 + (x_2 + x_3^2)\frac{x_4}{x_1^2}} - 1\Big]
            + (x_1 + 3 x_4)\, e^{1 + \sin x_3},

        f_0(x) = \Big[1 + \frac{\sin x_1}{10}\Big] f_1(x) - 2 x_1 + x_2^2 + x_3^2 + 0.5.

    The first term is evaluated as ``a x4 / (2 (sqrt(x1^2 + a x4) + x1))``
    (``a = x2 + x3^2``), algebraically equal and finite at ``x1 = 0``.

    References: J.-S. Park (1991), "Tuning complex computer codes to data and
    optimal designs", PhD thesis, University of Illinois; low fidelity from
    Xiong, Qian, Wu (2013), Technometrics 55, 37-46.
    """

    input_names = ("x1", "x2", "x3", "x4")
    _bounds = [(0.0, 1.0)] * 4
    num_fidelities = 2

    @staticmethod
    def _high(X):
        x1, x2, x3, x4 = X.unbind(-1)
        b = (x2 + x3**2) * x4
        den = 2 * (torch.sqrt(x1**2 + b) + x1)
        first = torch.where(den > 0, b / torch.where(den > 0, den, 1.0), 0.0)
        return first + (x1 + 3 * x4) * torch.exp(1 + torch.sin(x3))

    def _f(self, X, fidelity):
        hi = self._high(X)
        if fidelity == 1:
            return hi
        x1, x2, x3 = X[:, 0], X[:, 1], X[:, 2]
        return (1 + torch.sin(x1) / 10) * hi - 2 * x1 + x2**2 + x3**2 + 0.5


class Borehole(SyntheticOracle):
    r"""Borehole water-flow function, 8D, two fidelities.

    .. math::
        f_1 = \frac{2\pi T_u (H_u - H_l)}{\ln(r/r_w)\big[1 + \frac{2 L T_u}{\ln(r/r_w) r_w^2 K_w}
            + \frac{T_u}{T_l}\big]},\qquad
        f_0 = \frac{5 T_u (H_u - H_l)}{\ln(r/r_w)\big[1.5 + \frac{2 L T_u}{\ln(r/r_w) r_w^2 K_w}
            + \frac{T_u}{T_l}\big]}

    in m³/yr, with ``r_w in [0.05, 0.15]`` m, ``r in [100, 50000]`` m,
    ``T_u in [63070, 115600]`` m²/yr, ``H_u in [990, 1110]`` m,
    ``T_l in [63.1, 116]`` m²/yr, ``H_l in [700, 820]`` m,
    ``L in [1120, 1680]`` m, ``K_w in [9855, 12045]`` m/yr.

    References: M. D. Morris, T. J. Mitchell, D. Ylvisaker (1993), "Bayesian design
    and analysis of computer experiments: use of derivatives in surface
    prediction", Technometrics 35, 243-255; low fidelity from Xiong, Qian, Wu
    (2013), Technometrics 55, 37-46.
    """

    input_names = ("rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw")
    _bounds = [
        (0.05, 0.15),
        (100.0, 50000.0),
        (63070.0, 115600.0),
        (990.0, 1110.0),
        (63.1, 116.0),
        (700.0, 820.0),
        (1120.0, 1680.0),
        (9855.0, 12045.0),
    ]
    num_fidelities = 2

    def _f(self, X, fidelity):
        rw, r, Tu, Hu, Tl, Hl, L, Kw = X.unbind(-1)
        lnr = torch.log(r / rw)
        c, a = (2 * math.pi, 1.0) if fidelity == 1 else (5.0, 1.5)
        return c * Tu * (Hu - Hl) / (lnr * (a + 2 * L * Tu / (lnr * rw**2 * Kw) + Tu / Tl))


# ------------------------------------------------------- single fidelity
class BoTorchOracle(SyntheticOracle):
    """A single-fidelity BoTorch synthetic test problem as an oracle.

    Subclasses set ``problem_class`` (a
    :class:`botorch.test_functions.synthetic.SyntheticTestFunction`),
    ``problem_kwargs`` and ``input_names``; the bounds, the optimal value and
    the optimizers are BoTorch's, and the values are BoTorch's noise-free
    ``evaluate_true``. Noise, costs, sign and seed are handled by
    :class:`SyntheticOracle`.
    """

    problem_class: type[SyntheticTestFunction]
    problem_kwargs: dict = {}

    def __init__(
        self,
        noise_std: float | Sequence[float] | None = None,
        costs: Sequence[float] | None = None,
        negate: bool = False,
        seed: int | None = None,
    ):
        self.problem = self.problem_class(dtype=DTYPE, **self.problem_kwargs)
        self._bounds = [tuple(b) for b in self.problem.bounds.T.tolist()]
        super().__init__(noise_std=noise_std, costs=costs, negate=negate, seed=seed)

    @property
    def minimizes(self) -> bool:
        """Whether :attr:`optimal_value` is the outputs' minimum (BoTorch's problems are
        minimized but for a few it maximizes, as Cosine8; ``negate`` turns either around)."""
        return bool(getattr(self.problem, "_is_minimization_by_default", True)) != bool(self.negate)

    @property
    def optimal_value(self) -> float:
        """BoTorch's ``optimal_value``, negated with ``negate`` as the outputs are: the outputs'
        global minimum, or their maximum where :attr:`minimizes` is False (Cosine8's 0.8)."""
        v = float(self.problem.optimal_value)
        return -v if self.negate else v

    @property
    def optimizers(self) -> Tensor:
        """``k x d`` known global optimizers (BoTorch's ``optimizers``; maximizers where
        :attr:`minimizes` is False)."""
        return self.problem.optimizers.to(DTYPE)

    def _f(self, X, fidelity):
        return self.problem.evaluate_true(X)


class Branin(BoTorchOracle):
    r"""Branin–Hoo function on ``[-5, 10] x [0, 15]``:
    :class:`botorch.test_functions.Branin`.

    .. math::
        f(x) = \Big(x_2 - \frac{5.1}{4\pi^2} x_1^2 + \frac{5}{\pi} x_1 - 6\Big)^2
            + 10\Big(1 - \frac{1}{8\pi}\Big)\cos x_1 + 10.

    Global minimum ``0.397887`` at ``(-pi, 12.275)``, ``(pi, 2.275)`` and
    ``(9.42478, 2.475)``. Reference: L. C. W. Dixon, G. P. Szegö (1978),
    "The global optimization problem: an introduction", in Towards Global
    Optimization 2, North-Holland.
    """

    input_names = ("x1", "x2")
    problem_class = botorch_synthetic.Branin


class Hartmann6(BoTorchOracle):
    r"""Six-dimensional Hartmann function on ``[0, 1]^6``:
    :class:`botorch.test_functions.Hartmann` with ``dim=6``.

    .. math::
        f(x) = -\sum_{i=1}^4 \alpha_i \exp\Big(-\sum_{j=1}^6 A_{ij}(x_j - P_{ij})^2\Big),
        \quad \alpha = (1, 1.2, 3, 3.2).

    Global minimum ``-3.32237`` at
    ``(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)``.
    BoTorch holds ``A`` and ``alpha`` as float32 numbers, so values match the
    formula to about ``1e-7`` relative. Reference: Dixon & Szegö (1978).
    """

    input_names = tuple(f"x{i}" for i in range(1, 7))
    problem_class = botorch_synthetic.Hartmann
    problem_kwargs = {"dim": 6}
