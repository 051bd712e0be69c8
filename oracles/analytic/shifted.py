r"""BoTorch test problems on shifted bounds: optima away from the centre of the box.

A benchmark whose optimum lies at the centre of the search box rewards any
design that starts there (the centre-first initial design of Ax and of this
project's engine solves Ackley, Griewank or Cosine8 at its first point). The
bounds of a problem are therefore translated by a fixed fraction of their
width, ``lo' = lo + s w``, ``hi' = hi + s w`` with ``w = hi - lo``, so that the
global minimizer stays inside the box but no longer at its centre
(:func:`draw_shift` draws ``s`` from a seed). The function itself is BoTorch's
and unchanged, so the optimal value stays BoTorch's ``optimal_value`` where
that optimum is global over the translated box; a shift whose box holds a
lower value (sampled at 4096 Sobol points) is refused.

Constrained problems (BoTorch's
:class:`~botorch.test_functions.base.ConstrainedBaseTestProblem`) report
their slacks as extra outputs ``slack1, ..., slackk``; a point is feasible
when every slack is ``>= 0``.

Maximization problems of BoTorch (``Cosine8``) are negated, so every problem
here is a minimization with optimum :attr:`ShiftedTestFunction.optimal_value`.

Reference for the translated-box practice: N. Hansen, A. Auger, R. Ros, O.
Mersmann, T. Tušar, D. Brockhoff (2021), "COCO: a platform for comparing
continuous optimizers in a black-box setting", Optim. Methods Softw. 36,
114-144 (random optimum positions of the BBOB functions).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import numpy as np
import torch
from botorch.test_functions import synthetic as botorch_synthetic
from botorch.test_functions.base import ConstrainedBaseTestProblem
from torch import Tensor

from oracles.analytic.test_functions import SyntheticOracle
from oracles.base import DTYPE, OracleResult
from oracles.exceptions import InvalidInput

__all__ = ["ShiftedTestFunction", "draw_shift", "botorch_problem"]

def botorch_problem(name: str, dim: int | None = None):
    """BoTorch's synthetic test problem ``name`` (a class name of :mod:`botorch.test_functions.synthetic`).

    ``dim`` goes to the problems whose constructor takes one (as read from its signature:
    Ackley, KeaneBumpFunction, ConstrainedHartmannSmooth, ...); a problem of fixed dimension
    must be asked for its own, or for none.

    Raises:
        InvalidInput: unknown name, a ``dim`` that is not a positive integer, a problem that
            needs ``dim`` without one, a ``dim`` the problem does not take, a problem with
            discrete or categorical inputs (Labs, AckleyMixed: their values and optimum are
            those of the discrete points only), or one whose formula leaves an input out at
            that ``dim`` (Powell's inputs come in groups of 4, Rosenbrock's in pairs).
    """
    cls = getattr(botorch_synthetic, name, None)
    if not (isinstance(cls, type) and issubclass(cls, botorch_synthetic.SyntheticTestFunction)):
        raise InvalidInput(f"unknown BoTorch test problem {name!r}; expected a class of botorch.test_functions.synthetic")
    if dim is not None:
        ok = isinstance(dim, int | float | np.integer | np.floating) and not isinstance(dim, bool | np.bool_) \
            and math.isfinite(dim) and float(dim).is_integer() and dim >= 1
        if not ok:
            raise InvalidInput(f"dim must be a positive integer, got {dim!r}")
        dim = int(dim)
    param = inspect.signature(cls.__init__).parameters.get("dim")
    if param is None:
        p = cls(dtype=DTYPE)
        if dim is not None and p.dim != dim:
            raise InvalidInput(f"{name} has dimension {p.dim}, got dim={dim}")
    elif dim is None and param.default is inspect.Parameter.empty:
        raise InvalidInput(f"{name} needs its dimension: give dim (a positive integer)")
    else:
        try:
            p = cls(dtype=DTYPE) if dim is None else cls(dim=dim, dtype=DTYPE)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"{name} does not take dim={dim}: {e}") from None
    discrete = list(getattr(p, "discrete_inds", None) or []) + list(getattr(p, "categorical_inds", None) or [])
    if discrete:
        raise InvalidInput(f"{name} (dim {p.dim}) has {len(discrete)} discrete or categorical input(s): its values "
                           f"between their levels and its optimal value are not those of a continuous problem; "
                           f"expected a problem with continuous inputs only")
    _check_every_input_counts(p, name)
    return p


def _check_every_input_counts(problem, name: str, n: int = 16) -> None:
    """Refuse a problem whose outputs (objective and slacks) do not change with some input
    at ``n`` Sobol points (BoTorch's Powell sums over groups of 4 inputs and drops the rest;
    Rosenbrock in one input is 0 everywhere)."""
    from scipy.stats import qmc

    d = problem.dim
    lo, hi = problem.bounds.numpy()
    X = torch.as_tensor(qmc.scale(qmc.Sobol(d, seed=0).random(n), lo, hi), dtype=DTYPE)
    X2 = torch.as_tensor(qmc.scale(qmc.Sobol(d, seed=1).random(n), lo, hi), dtype=DTYPE)

    def outputs(Z):
        y = problem._evaluate_true(Z).reshape(n, -1)
        if isinstance(problem, ConstrainedBaseTestProblem):
            y = torch.cat([y, problem._evaluate_slack_true(Z).reshape(n, -1)], -1)
        return y

    with torch.no_grad():
        Y = outputs(X)
        idle = []
        for j in range(d):
            Z = X.clone()
            Z[:, j] = X2[:, j]
            if bool((outputs(Z) == Y).all()):
                idle.append(j + 1)
    if idle:
        raise InvalidInput(f"{name} in {d} inputs does not depend on input(s) {['x' + str(j) for j in idle]} "
                           f"(BoTorch's formula leaves them out at dim={d}); expected a dim where every input counts")


#: a constraint slack below minus this (in the slack's units) is a violation of BoTorch's optimizer
OPTIMUM_SLACK_TOL = 1e-6


def _infeasible_optimum(problem) -> bool:
    """Whether BoTorch's minimizers of a constrained problem all violate a constraint: then
    its ``optimal_value`` is the unconstrained function's (ConstrainedHartmann in 3 inputs
    reports Hartmann3's minimum, where its slack is -0.024), not the problem's optimum."""
    if not isinstance(problem, ConstrainedBaseTestProblem) or getattr(problem, "_optimizers", None) is None:
        return False
    X = torch.as_tensor(problem._optimizers, dtype=DTYPE).reshape(-1, problem.dim)
    slack = problem._evaluate_slack_true(X).reshape(len(X), -1)
    return not bool((slack >= -OPTIMUM_SLACK_TOL).all(-1).any())


def _minimizers(problem) -> Tensor:
    """``k x d`` global minimizers of BoTorch's problem (on its own bounds)."""
    if getattr(problem, "_optimizers", None) is None or getattr(problem, "_optimal_value", None) is None:
        raise InvalidInput(f"BoTorch gives no known optimum (value and minimizers) for {type(problem).__name__} "
                           f"(dim {problem.dim}): a shifted box needs one to keep it global; use it unshifted")
    if _infeasible_optimum(problem):
        raise InvalidInput(f"BoTorch's optimum of {type(problem).__name__} (dim {problem.dim}) violates its "
                           f"constraints, so the problem's optimum is not known: a shifted box needs one to keep it "
                           f"global; use it unshifted")
    return torch.as_tensor(problem._optimizers, dtype=DTYPE).reshape(-1, problem.dim)


def _check_optimum_is_global(oracle, n: int = 4096) -> None:
    """Refuse a translated box that holds a (feasible) value below BoTorch's optimal value
    (4096 Sobol points): a minimizer on the edge of BoTorch's box, as EggHolder's and
    HolderTable's, has lower values beyond it."""
    from scipy.stats import qmc

    lo, hi = oracle.bounds.numpy()
    X = torch.as_tensor(qmc.scale(qmc.Sobol(len(lo), seed=0).random(n), lo, hi), dtype=DTYPE)
    Y = oracle._true(X, 0)
    ok = (Y[:, 1:] >= 0).all(-1) if Y.shape[1] > 1 else torch.ones(n, dtype=torch.bool)
    opt = oracle.optimal_value
    y = Y[ok, 0]
    if y.numel() and float(y.min()) < opt - 1e-9 * max(1.0, abs(opt)):
        i = int(y.argmin())
        raise InvalidInput(
            f"the shifted box of {oracle.problem_name} holds y = {float(y[i]):.6g} at {X[ok][i].tolist()}, below "
            f"BoTorch's optimal value {opt:.6g}: its minimizer is not global there; use another shift or problem")


def draw_shift(
    name: str,
    dim: int | None = None,
    seed: int = 0,
    max_shift: float = 0.25,
    min_offset: float = 0.15,
    margin: float = 0.05,
    tries: int = 10_000,
) -> list[float]:
    """Fractions ``s`` (one per input) that translate a problem's bounds by ``s * width``.

    ``s`` is drawn uniformly from ``[-max_shift, max_shift]^d`` (NumPy generator
    seeded with ``seed``) until, in the translated box, some global minimizer
    lies at least ``margin`` (fraction of each width) inside every face and
    away from the centre: its largest normalized coordinate offset
    ``max_j |x_j - c_j| / w_j`` is at least ``min_offset`` (0.5 is a face).

    Returns:
        ``d`` fractions of the widths.

    Raises:
        InvalidInput: no shift found in ``tries`` draws.
    """
    p = botorch_problem(name, dim)
    lo, hi = p.bounds[0], p.bounds[1]
    w = hi - lo
    opt = _minimizers(p)
    rng = np.random.default_rng(seed)
    for _ in range(tries):
        s = torch.as_tensor(rng.uniform(-max_shift, max_shift, p.dim), dtype=DTYPE)
        u = (opt - (lo + s * w)) / w  # minimizers in the unit coordinates of the translated box
        inside = ((u >= margin) & (u <= 1 - margin)).all(-1)
        off = (u - 0.5).abs().amax(-1) >= min_offset
        if (inside & off).any():
            return s.tolist()
    raise InvalidInput(f"no shift of {name} (dim {p.dim}) keeps a minimizer inside and off-centre in {tries} draws")


class ShiftedTestFunction(SyntheticOracle):
    """A BoTorch synthetic test problem on translated bounds, as a minimization oracle.

    Args:
        problem: class name in :mod:`botorch.test_functions.synthetic`
            (``"Ackley"``, ``"Hartmann"``, ``"ConstrainedGramacy"``, ...).
        dim: input dimension for problems that take one (default BoTorch's).
        shift: ``d`` fractions of the bound widths to translate the bounds by
            (:func:`draw_shift`); default no shift. A shifted box must hold one of
            BoTorch's known minimizers (else its optimal value is not reached there).
        noise_std: sd of Gaussian noise added to the objective ``y`` (not to
            the slacks), in the objective's units.
        seed: seed of the noise stream.

    Outputs ``y`` (the objective, minimized) and, for a constrained problem,
    ``slack1..slackk`` (feasible where all are ``>= 0``).
    """

    def __init__(
        self,
        problem: str,
        dim: int | None = None,
        shift: Sequence[float] | None = None,
        noise_std: float | None = None,
        seed: int | None = None,
    ):
        self.problem_name = problem
        self.problem = botorch_problem(problem, dim)
        self._optimum_infeasible = _infeasible_optimum(self.problem)
        d = self.problem.dim
        shift = [0.0] * d if shift is None else [float(v) for v in shift]
        if len(shift) != d or not all(math.isfinite(v) for v in shift):
            raise InvalidInput(f"shift must be {d} finite fractions of the bound widths, got {shift!r}")
        self.shift = tuple(shift)
        lo, hi = self.problem.bounds[0], self.problem.bounds[1]
        s = torch.tensor(shift, dtype=DTYPE)
        self._bounds = [(float(a), float(b)) for a, b in zip(lo + s * (hi - lo), hi + s * (hi - lo), strict=True)]
        self.input_names = tuple(f"x{i}" for i in range(1, d + 1))
        self.constrained = isinstance(self.problem, ConstrainedBaseTestProblem)
        k = self.problem.num_constraints if self.constrained else 0
        self.output_names = ("y",) + tuple(f"slack{i}" for i in range(1, k + 1))
        self._sign = 1.0 if getattr(self.problem, "_is_minimization_by_default", True) else -1.0
        super().__init__(noise_std=noise_std, seed=seed)
        if any(v != 0.0 for v in shift):
            _minimizers(self.problem)  # a known optimum: a shifted box must keep it global
            if not len(self.optimizers):
                raise InvalidInput(
                    f"shift {list(self.shift)} moves the box of {problem} (dim {d}) off every known minimizer "
                    f"({_minimizers(self.problem).tolist()}): its optimal value {self.optimal_value:.6g} is not "
                    f"reached in the box; expected a shift that keeps one inside (draw_shift)")
            _check_optimum_is_global(self)

    @property
    def optimal_value(self) -> float | None:
        """Global minimum of ``y`` (BoTorch's optimal value, negated for a maximization problem);
        None where BoTorch gives none (PressureVessel, Michalewicz in 5 or 10 inputs, ...) and
        where BoTorch's minimizers violate the problem's constraints (ConstrainedHartmann in 3
        inputs: its value is the unconstrained minimum)."""
        v = getattr(self.problem, "_optimal_value", None)
        if v is None or self._optimum_infeasible:
            return None
        return self._sign * float(v)

    @property
    def optimizers(self) -> Tensor:
        """``k x d`` BoTorch's global minimizers that lie inside the translated bounds (none
        where BoTorch gives none, or where they violate the constraints)."""
        if getattr(self.problem, "_optimizers", None) is None or self._optimum_infeasible:
            return torch.zeros(0, self.problem.dim, dtype=DTYPE)
        opt = _minimizers(self.problem)
        inside = ((opt >= self.bounds[0]) & (opt <= self.bounds[1])).all(-1)
        return opt[inside]

    def _true(self, X: Tensor, fidelity: int) -> Tensor:
        # BoTorch's public evaluate_true refuses points outside its own (unshifted) bounds
        y = self._sign * self.problem._evaluate_true(X).reshape(-1, 1)
        if self.constrained:
            y = torch.cat([y, self.problem._evaluate_slack_true(X).reshape(len(X), -1)], -1)
        return y

    def _f(self, X, fidelity):
        return self._true(X, fidelity)[:, 0]

    def evaluate_true(self, X, fidelity: int | None = None) -> Tensor:
        """Noise-free outputs ``n x m`` (``y`` then the slacks)."""
        X = self.validate_inputs(X)
        return self._true(X, self.validate_fidelity(fidelity))

    def feasible(self, X) -> Tensor:
        """``n`` booleans: all slacks ``>= 0`` at ``n x d`` inputs (all true if unconstrained)."""
        Y = self.evaluate_true(X)
        return (Y[:, 1:] >= 0).all(-1)

    def _evaluate_batch(self, X: Tensor, fidelity: int) -> OracleResult:
        n, m = X.shape[0], len(self.output_names)
        Y = self._true(X, fidelity).clone()
        Yvar = None
        sd = self.noise_std[fidelity]
        if self.noisy:
            if self._rng is not None:
                eps = torch.from_numpy(self._rng.standard_normal((n,)))
            else:
                eps = torch.randn(n, dtype=DTYPE)
            Y[:, 0] = Y[:, 0] + sd * eps.to(DTYPE)
            Yvar = torch.zeros(n, m, dtype=DTYPE)
            Yvar[:, 0] = sd * sd
        return OracleResult(
            X=X.clone(), Y=Y, failed=torch.zeros(n, dtype=torch.bool), reasons=[None] * n,
            cost=self.cost_model(X, fidelity), fidelity=fidelity, Yvar=Yvar, metadata=[{} for _ in range(n)],
        )

    def __repr__(self) -> str:
        return (f"ShiftedTestFunction(problem={self.problem_name!r}, dim={self.dim}, "
                f"shift={[round(v, 6) for v in self.shift]}, noise_std={self.noise_std[0]})")
