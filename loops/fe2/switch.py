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
(the adjoint of the reaction; see
:meth:`loops.fe2.solver.MacroSolver.reaction_influence`).

Treat the surrogate's error at a point as the GP does: zero-mean, the 4
components independent (one GP per component) with variance ``v_g`` (the
switch sees the mean over the components). Then
:math:`\delta P_g : \nabla z_g` has standard deviation
:math:`\sqrt{v_g}\, |\nabla z_g|_F` (not the Cauchy--Schwarz worst case
:math:`2\sqrt{v_g}|\nabla z_g|_F` of an error aligned with
:math:`\nabla z_g`). Errors at different points
are correlated (one GP predicts them all), but whatever the correlation, the
standard deviation of a sum is at most the sum of the standard deviations:

.. math:: \mathrm{sd}(\delta R) \le \sum_g w_g |\nabla z_g|_F \sqrt{v_g} .

Asking :math:`\kappa\, \mathrm{sd}(\delta R) \le \varepsilon |R|` (``kappa``
a coverage factor, 2: about 95 % for a Gaussian) with every surrogate point
below the same tolerance gives

.. math:: v_g \le \Big(\frac{\varepsilon |R|}{\kappa \sum_g w_g |\nabla z_g|_F}\Big)^2 ,

which :func:`tolerance_for_reaction` returns. What stays conservative:
the fully correlated sum, every point taken at the tolerance (most are far
below after on-the-fly learning), and whatever miscalibration the surrogate's
variance has (a GP with long lengthscales is typically underconfident).
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
from surrogates.base import conditions_on_observations

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
    return (rel_error * abs(float(reaction)) / (kappa * total)) ** 2


def _default_updater(surrogate, F: Tensor, P: Tensor, A: Tensor):
    surrogate.update(F, P)
    return surrogate


def _flat(F: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
    """``H = F - I`` and ``P`` as ``n x k*k`` rows (row-major)."""
    n, k = F.shape[0], F.shape[-1]
    return (F - torch.eye(k, dtype=DTYPE)).reshape(n, k * k), P.reshape(n, k * k)


class ConditionUpdater:
    """Updater for GP surrogates of ``H -> P`` that condition on new answers.

    Each update returns ``surrogate.condition_on_observations(H, P)`` (the
    exact posterior given the new answers with the hyperparameters kept,
    e.g. :meth:`surrogates.gp.GPSurrogate.condition_on_observations`:
    milliseconds); every ``refit_every``-th update instead refits the
    hyperparameters on all the data (:func:`refit_updater`; 0: never).
    The new answers are observed with noise variance ``noise`` (default 0:
    the oracle's answers are exact; the GP floors it to keep its Cholesky
    factor stable), also by a GP whose noise was inferred from its training
    data (its old points keep that noise); ``noise=None`` gives the new
    answers the GP's own noise model.
    """

    def __init__(self, refit_every: int = 0, noise: float | None = 0.0):
        if int(refit_every) < 0:
            raise ValueError(f"refit_every must be >= 0, got {refit_every}")
        if noise is not None and not (float(noise) >= 0 and math.isfinite(noise)):
            raise ValueError(f"noise must be a finite variance >= 0 or None, got {noise}")
        self.refit_every = int(refit_every)
        self.noise = None if noise is None else float(noise)
        self.n_updates = 0

    def __call__(self, surrogate, F: Tensor, P: Tensor, A: Tensor):
        self.n_updates += 1
        if self.refit_every and self.n_updates % self.refit_every == 0:
            return refit_updater(surrogate, F, P, A)
        H, Y = _flat(F, P)
        if self.noise is None:
            return surrogate.condition_on_observations(H, Y)
        return surrogate.condition_on_observations(H, Y, noise=torch.full_like(Y, self.noise))


def condition_updater(surrogate, F: Tensor, P: Tensor, A: Tensor):
    """``surrogate.condition_on_observations(H, P)`` with ``H = F - I`` (``n x k*k`` rows)."""
    return ConditionUpdater()(surrogate, F, P, A)


def default_updater(surrogate):
    """The updater the switch uses for ``surrogate``: ``surrogate.update(F, P)``
    where it has one, :class:`ConditionUpdater` for a model that conditions on
    new observations (a constitutive GP), else None (it cannot learn)."""
    if callable(getattr(surrogate, "update", None)):
        return _default_updater
    if conditions_on_observations(surrogate) and getattr(surrogate, "dim_F", None):
        return ConditionUpdater()
    return None


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
    k = F.shape[-1]
    H, Y = _flat(F, P)
    if ds.d != k * k or ds.m != k * k:
        raise TypeError(
            f"refit_updater needs a surrogate of H -> P ({k * k} inputs and outputs), "
            f"got d={ds.d}, m={ds.m}"
        )
    new = Dataset(
        X=torch.cat([ds.X, H]),
        Y=torch.cat([ds.Y, Y]),
        Yvar=None if ds.Yvar is None else torch.cat([ds.Yvar, torch.zeros_like(Y)]),
        input_names=ds.input_names,
        output_names=ds.output_names,
    )
    return type(surrogate).from_dataset(new, **surrogate.get_config())


class AdaptiveSwitch:
    """Surrogate where it is sure, oracle where it is not; learns between load steps.

    Within a load step the choice is sticky: once a Gauss point has used the
    oracle it keeps using it until the step ends, so the material law seen by
    Newton stops changing after a few iterations and convergence is restored.

    **On-the-fly learning** (Rocha, Kerfriden & van der Meer 2021), used when
    the surrogate can pick its own batch (``select_batch(F, tolerance,
    min_points, max_points)``, as :class:`~surrogates.gp.GPSurrogate` does)
    and learning is on: when some points are too uncertain, only the
    batch whose answers bring *every* point below the tolerance (chosen from
    the posterior covariance before any oracle call) goes to the oracle, in one
    call; the answers are added at once (the GP is re-conditioned, hyperparameters
    kept) and all points are predicted again; up to ``max_rounds`` such rounds,
    then whatever is still uncertain is answered by the oracle directly (sticky,
    as above). Nearby Gauss points have nearly equal ``F``, so one answer
    clears many. Learning happens at the first ``learn_calls`` provider calls of
    a load step only (the predicted state, where the solver starts from the
    previous converged state, and the first Newton iterate, already close to
    the converged state of the step); the later Newton iterations see a fixed
    surrogate (and the sticky oracle points), so Newton converges. The
    oracle's answers are used at the points it was asked about.

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
            (:func:`default_updater`) calls ``surrogate.update(F, P)`` where
            it exists and conditions a GP (:class:`ConditionUpdater`)
            otherwise; :func:`refit_updater` refits a scalebridge
            ``SurrogateMixin`` model on its data plus the new points.
        on_the_fly: learn inside the step as described above (``None``: when
            ``learn`` is on and the surrogate has ``select_batch``).
        min_batch: on-the-fly batches have at least this many points; default
            the oracle's ``workers`` (1 when it has none): more points in one
            parallel call cost no extra time.
        max_rounds: on-the-fly rounds (oracle call + update) per provider call.
        learn_calls: on-the-fly learning at the first this many provider calls
            of a load step (the predicted state and the first Newton iterates,
            which are near the converged state); the later calls see a fixed
            surrogate.

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
        on_the_fly: bool | None = None,
        min_batch: int | None = None,
        max_rounds: int = 3,
        learn_calls: int = 2,
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
        updater = updater or default_updater(surrogate)
        if self.learn and updater is None:
            raise TypeError(
                f"learn=True needs an updater, or a surrogate with update(F, P) or "
                f"condition_on_observations(H, P); {type(surrogate).__name__} has none"
            )
        self.updater = updater
        can_select = callable(getattr(surrogate, "select_batch", None))
        if on_the_fly is None:
            on_the_fly = self.learn and can_select
        if on_the_fly and not (self.learn and can_select):
            raise TypeError(
                f"on_the_fly=True needs learn=True and a surrogate with select_batch; "
                f"got learn={self.learn} and {type(surrogate).__name__}"
            )
        self.on_the_fly = bool(on_the_fly)
        if min_batch is None:
            min_batch = int(getattr(oracle, "workers", 1))
        if min_batch < 1 or max_rounds < 1 or learn_calls < 1:
            raise ValueError(
                f"min_batch, max_rounds and learn_calls must be >= 1, got {min_batch}, {max_rounds}, {learn_calls}"
            )
        self.learn_calls = int(learn_calls)
        self.min_batch = int(min_batch)
        self.max_rounds = int(max_rounds)
        #: oracle calls made (batched calls, not points)
        self.n_oracle_calls = 0
        self.step_log: list[dict[str, Any]] = []
        self.oracle_calls: np.ndarray | None = None
        self.surrogate_calls: np.ndarray | None = None
        self.last_oracle_mask: np.ndarray | None = None
        self._pending: tuple[Tensor, Tensor, Tensor, Tensor] | None = None
        self._step = {"n_surrogate": 0, "n_oracle": 0}
        self._load_factor = float("nan")
        self._sticky: Tensor | None = None
        self._calls = 0

    @staticmethod
    def _check_tol(tolerance: float) -> float:
        try:
            if isinstance(tolerance, (bool, str, bytes)) or tolerance is None:
                raise TypeError
            tolerance = float(tolerance)
        except (TypeError, ValueError):
            raise ValueError(f"tolerance must be a variance >= 0 (inf allowed), got {tolerance!r}") from None
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
            var = torch.as_tensor(r.variance, dtype=DTYPE)
            if var.numel() != n:
                raise ValueError(
                    f"the surrogate {type(self.surrogate).__name__} returned a variance of shape "
                    f"{tuple(var.shape)} for {n} points; the switch needs one number per point ({n},) "
                    "(for example the mean over the stress components)"
                )
            var = var.reshape(n)
            P = torch.as_tensor(r.P, dtype=DTYPE).clone()
            A = torch.as_tensor(r.tangent, dtype=DTYPE).clone()
            finite = torch.isfinite(P).flatten(1).all(1) & torch.isfinite(A).flatten(1).all(1)
            use_oracle = ~(var < self.tolerance) | ~finite
            # on the fly only at the first learn_calls calls of a step: learning at every
            # Newton iteration would change the law under Newton and never converge
            if self.on_the_fly and self._calls < self.learn_calls and use_oracle.any():
                P, A, var, asked = self._learn_on_the_fly(F, P, A, var, finite)
                use_oracle = ~(var < self.tolerance) | ~finite
            else:
                asked = torch.zeros(n, dtype=torch.bool)
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
            asked = torch.zeros(n, dtype=torch.bool)
        self._calls += 1
        # the points asked on the fly are known exactly now; only the rest is sticky
        use_oracle &= ~asked
        self._sticky = use_oracle.clone()
        k = int(use_oracle.sum())
        self._pending = None
        if k:
            self.n_oracle_calls += 1
            ro = self.oracle.material_response(F[use_oracle])
            P[use_oracle] = torch.as_tensor(ro.P, dtype=DTYPE)
            A[use_oracle] = torch.as_tensor(ro.tangent, dtype=DTYPE)
            if self.learn:
                self._pending = (F[use_oracle], P[use_oracle], A[use_oracle], var[use_oracle])
            var = var.clone()
            var[use_oracle] = 0.0
        use_oracle |= asked
        k = int(use_oracle.sum())
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

    def _learn_on_the_fly(self, F, P, A, var, finite):
        """Rounds of (batch selection, one oracle call, update, prediction); see the class docstring."""
        n = F.shape[0]
        asked = torch.zeros(n, dtype=torch.bool)
        ok = finite.nonzero().squeeze(-1)
        P_o, A_o = P.clone(), A.clone()
        for _ in range(self.max_rounds):
            pending = ~(var < self.tolerance) & finite & ~asked
            if not pending.any():
                break
            cand = ok[~asked[ok]]
            # the batch is chosen for the noise the updater will observe the answers with
            kw = {}
            if isinstance(self.updater, ConditionUpdater) and self.updater.noise is not None:
                kw["noise"] = self.updater.noise
            pick = self.surrogate.select_batch(
                F[cand], self.tolerance, min_points=self.min_batch, max_points=self.max_learn, **kw
            )
            if pick.numel() == 0:
                break
            idx = cand[pick]
            self.n_oracle_calls += 1
            ro = self.oracle.material_response(F[idx])
            Pi, Ai = torch.as_tensor(ro.P, dtype=DTYPE), torch.as_tensor(ro.tangent, dtype=DTYPE)
            new = self.updater(self.surrogate, F[idx], Pi, Ai)
            if new is not None:
                self.surrogate = new
            self._step["n_learned"] = self._step.get("n_learned", 0) + int(idx.numel())
            asked[idx] = True
            P_o[idx], A_o[idx] = Pi, Ai
            r = self.surrogate.material_response(F)
            var = torch.as_tensor(r.variance, dtype=DTYPE).reshape(n).clone()
            P = torch.as_tensor(r.P, dtype=DTYPE).clone()
            A = torch.as_tensor(r.tangent, dtype=DTYPE).clone()
            var[asked] = 0.0
        P[asked], A[asked] = P_o[asked], A_o[asked]
        return P, A, var, asked

    # ---------------------------------------------------------- solver hooks
    def begin_step(self, load_factor: float) -> None:
        self._load_factor = float(load_factor)
        self._step = {"n_surrogate": 0, "n_oracle": 0}
        self._sticky = None
        self._calls = 0

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
        # answers learned on the fly stay learned even when the step is cut back:
        # they are oracle answers, true whatever the macro state
        n_learned += self._step.pop("n_learned", 0)
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
