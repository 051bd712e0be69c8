r"""The adaptive surrogate-or-oracle switch, with on-the-fly learning.

Per Gauss point, the surrogate answers where its predictive variance is below
a tolerance and the oracle (the RVE) everywhere else, in the spirit of Rocha,
Kerfriden and van der Meer (2021) and FLARE. Oracle answers are collected
during a load step and join the surrogate's training data between load steps
(the surrogate is not changed inside a Newton solve, which would break the
consistency of the tangent and the quadratic convergence).

Tolerance from a target on the reaction force
---------------------------------------------
With displacement control, a stress error :math:`\delta P_g` at the Gauss
points changes the reaction :math:`R` on the loaded boundary by, to first
order, :math:`\delta R = \sum_g w_g\, \delta P_g : \nabla z_g`, where ``z`` is
the linearized displacement response to a unit motion of the loaded boundary
(see :meth:`loops.fe2.solver.MacroSolver.reaction_influence`). Hence

.. math:: |\delta R| \le \sum_g w_g |\nabla z_g|_F\, |\delta P_g|_F .

Taking :math:`|\delta P_g|_F \le \kappa\, \sigma_g` with
:math:`\sigma_g = \sqrt{4 v_g}` the Frobenius predictive standard deviation
(``v_g`` is the mean variance over the 4 stress components) and ``kappa`` a
coverage factor (2: about 95 % per point for a calibrated Gaussian), and
spreading the budget evenly over the points, the relative target
:math:`|\delta R| \le \varepsilon |R|` is met when every surrogate point has

.. math:: v_g \le \Big(\frac{\varepsilon |R|}{2 \kappa \sum_g w_g |\nabla z_g|_F}\Big)^2 ,

which :func:`tolerance_for_reaction` returns. The bound is conservative
(the triangle inequality ignores cancellation) and first order in the error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from loops.fe2.providers import check_F
from oracles.material import MaterialModel, MaterialResponse

DTYPE = torch.float64


def tolerance_for_reaction(
    influence: np.ndarray, reaction: float, rel_error: float, kappa: float = 2.0
) -> float:
    """Variance tolerance meeting a relative reaction-force error (see module docstring).

    Args:
        influence: ``n_gauss`` weights ``w_g |grad z_g|`` from
            :meth:`MacroSolver.reaction_influence`.
        reaction: an estimate of the reaction force ``R`` (e.g. from a
            surrogate-only solve).
        rel_error: target ``|dR| / |R|``.
        kappa: coverage factor on the predictive standard deviation.
    """
    if not (rel_error > 0 and math.isfinite(rel_error)):
        raise ValueError(f"rel_error must be positive and finite, got {rel_error}")
    if not kappa > 0:
        raise ValueError(f"kappa must be positive, got {kappa}")
    total = float(np.sum(influence))
    if not total > 0:
        raise ValueError(f"the reaction influence must be positive, got sum {total}")
    return (rel_error * abs(float(reaction)) / (2.0 * kappa * total)) ** 2


def _default_updater(surrogate, F: Tensor, P: Tensor, A: Tensor):
    surrogate.update(F, P)
    return surrogate


def refit_updater(surrogate, F: Tensor, P: Tensor, A: Tensor):
    """Updater for scalebridge constitutive surrogates (``SurrogateMixin``, inputs ``H = F - I``).

    Appends ``(H, P)`` (row-major, ``n x k*k``) to the surrogate's training
    :class:`~surrogates.dataset.Dataset` and refits the same class with the same
    options (``from_dataset(dataset, **get_config())``); returns the new model.
    """
    from surrogates.dataset import Dataset

    ds = getattr(surrogate, "train_dataset", None)
    if ds is None:
        raise TypeError(f"{type(surrogate).__name__} keeps no train_dataset to append to")
    n, k = F.shape[0], F.shape[-1]
    H = (F - torch.eye(k, dtype=DTYPE)).reshape(n, k * k)
    if ds.d != k * k or ds.m != k * k:
        raise TypeError(
            f"refit_updater needs a surrogate of H -> P ({k * k} inputs and outputs), "
            f"got d={ds.d}, m={ds.m}"
        )
    new = Dataset(
        X=torch.cat([ds.X, H]),
        Y=torch.cat([ds.Y, P.reshape(n, k * k)]),
        input_names=ds.input_names,
        output_names=ds.output_names,
    )
    return type(surrogate).from_dataset(new, **surrogate.get_config())


class AdaptiveSwitch:
    """Surrogate where it is sure, oracle where it is not; learns between load steps.

    Within a load step the choice is sticky: once a Gauss point has used the
    oracle it keeps using it until the step ends, so the material law seen by
    Newton stops changing after a few iterations and convergence is restored.

    Args:
        surrogate: a provider whose response carries ``variance`` (``n``).
        oracle: the exact provider (e.g. :class:`loops.fe2.providers.OracleProvider`
            around the RVE oracle).
        tolerance: variance below which the surrogate is trusted (``0``: always
            the oracle, full FE²; ``inf``: always the surrogate).
        learn: add oracle answers to the surrogate between load steps. Only the
            answers of the last call of an accepted step (the converged state)
            are learned: intermediate Newton iterates are transient.
        max_learn: at most this many new points per step, those where the
            surrogate was least sure (largest variance) first.
        updater: ``updater(surrogate, F, P, A) -> surrogate`` performing that
            update and returning the model to use from then on; the default
            calls ``surrogate.update(F, P)``; :func:`refit_updater` refits a
            scalebridge ``SurrogateMixin`` model on its data plus the new points.

    Attributes:
        step_log: one dict per attempted load step (``load_factor``,
            ``n_surrogate``, ``n_oracle``, ``accepted``, ``n_learned``).
        oracle_calls: ``n_gauss`` number of oracle evaluations at each Gauss point.
        surrogate_calls: ``n_gauss`` number of surrogate answers used there.
        last_oracle_mask: ``n_gauss`` bool, who used the oracle in the last call.
    """

    def __init__(
        self,
        surrogate: MaterialModel,
        oracle: MaterialModel,
        tolerance: float,
        learn: bool = True,
        max_learn: int = 64,
        updater: Callable[[Any, Tensor, Tensor, Tensor], Any] | None = None,
    ):
        for name, m in (("surrogate", surrogate), ("oracle", oracle)):
            if not isinstance(m, MaterialModel):
                raise TypeError(f"{name} must have material_response(F), got {type(m).__name__}")
        self.surrogate = surrogate
        self.oracle = oracle
        self.tolerance = self._check_tol(tolerance)
        self.learn = bool(learn)
        if max_learn < 1:
            raise ValueError(f"max_learn must be >= 1, got {max_learn}")
        self.max_learn = int(max_learn)
        if self.learn and updater is None and not callable(getattr(surrogate, "update", None)):
            raise TypeError(
                f"learn=True needs an updater or a surrogate with update(F, P); "
                f"{type(surrogate).__name__} has neither"
            )
        self.updater = updater or _default_updater
        self.step_log: list[dict[str, Any]] = []
        self.oracle_calls: np.ndarray | None = None
        self.surrogate_calls: np.ndarray | None = None
        self.last_oracle_mask: np.ndarray | None = None
        self._pending: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._step = {"n_surrogate": 0, "n_oracle": 0}
        self._load_factor = float("nan")
        self._sticky: Tensor | None = None

    @staticmethod
    def _check_tol(tolerance: float) -> float:
        tolerance = float(tolerance)
        if math.isnan(tolerance) or tolerance < 0:
            raise ValueError(f"tolerance must be a variance >= 0 (inf allowed), got {tolerance}")
        return tolerance

    def set_tolerance(self, tolerance: float) -> None:
        self.tolerance = self._check_tol(tolerance)

    @property
    def n_surrogate(self) -> int:
        return int(sum(s["n_surrogate"] for s in self.step_log)) + self._step["n_surrogate"]

    @property
    def n_oracle(self) -> int:
        return int(sum(s["n_oracle"] for s in self.step_log)) + self._step["n_oracle"]

    def material_response(self, F: Tensor) -> MaterialResponse:
        F = check_F(F)
        n = F.shape[0]
        if self.tolerance > 0:
            r = self.surrogate.material_response(F)
            if r.variance is None:
                raise TypeError(
                    f"the surrogate {type(self.surrogate).__name__} reports no variance; "
                    "the switch needs one"
                )
            var = torch.as_tensor(r.variance, dtype=DTYPE).reshape(n)
            P = torch.as_tensor(r.P, dtype=DTYPE).clone()
            A = torch.as_tensor(r.tangent, dtype=DTYPE).clone()
            finite = torch.isfinite(P).flatten(1).all(1) & torch.isfinite(A).flatten(1).all(1)
            use_oracle = ~(var < self.tolerance) | ~finite
            # sticky within a load step: a point that switches back and forth
            # between two slightly different laws would stall Newton
            if self._sticky is not None and self._sticky.shape[0] == n:
                use_oracle |= self._sticky
        else:
            # tolerance 0 trusts nothing: skip the surrogate, this is full FE²
            P = torch.empty(n, *F.shape[1:], dtype=DTYPE)
            A = torch.empty(n, *F.shape[1:] * 2, dtype=DTYPE)
            var = torch.zeros(n, dtype=DTYPE)
            use_oracle = torch.ones(n, dtype=torch.bool)
        self._sticky = use_oracle.clone()
        k = int(use_oracle.sum())
        self._pending = None
        if k:
            ro = self.oracle.material_response(F[use_oracle])
            P[use_oracle] = torch.as_tensor(ro.P, dtype=DTYPE)
            A[use_oracle] = torch.as_tensor(ro.tangent, dtype=DTYPE)
            if self.learn:
                self._pending = (F[use_oracle], P[use_oracle], A[use_oracle], var[use_oracle])
            var = var.clone()
            var[use_oracle] = 0.0
        self._step["n_surrogate"] += n - k
        self._step["n_oracle"] += k
        mask = use_oracle.numpy()
        if self.oracle_calls is None or self.oracle_calls.shape[0] != n:
            self.oracle_calls = np.zeros(n, dtype=np.int64)
            self.surrogate_calls = np.zeros(n, dtype=np.int64)
        self.oracle_calls += mask
        self.surrogate_calls += ~mask
        self.last_oracle_mask = mask
        return MaterialResponse(P, A, var)

    # ---------------------------------------------------------- solver hooks
    def begin_step(self, load_factor: float) -> None:
        self._load_factor = float(load_factor)
        self._step = {"n_surrogate": 0, "n_oracle": 0}
        self._sticky = None

    def end_step(self, accepted: bool) -> dict[str, Any]:
        """Record the step and, when learning, add its oracle answers to the surrogate."""
        n_learned = 0
        if self.learn and accepted and self._pending is not None:
            F, P, A, var = self._pending
            if F.shape[0] > self.max_learn:
                keep = torch.argsort(var, descending=True)[: self.max_learn]
                F, P, A = F[keep], P[keep], A[keep]
            new = self.updater(self.surrogate, F, P, A)
            if new is not None:
                self.surrogate = new
            n_learned = F.shape[0]
        self._pending = None
        rec = {
            "load_factor": self._load_factor,
            "accepted": bool(accepted),
            "n_learned": n_learned,
            **self._step,
        }
        self.step_log.append(rec)
        self._step = {"n_surrogate": 0, "n_oracle": 0}
        return {
            **rec,
            "oracle_mask": None if self.last_oracle_mask is None else self.last_oracle_mask.copy(),
        }
