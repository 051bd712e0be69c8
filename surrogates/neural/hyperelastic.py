r"""Hyperelastic deep-ensemble surrogate: a BoTorch Model and an FE² material.

Inputs are displacement gradients ``H = F - 1`` flattened row-major
(``n x 4`` in plane strain, ``n x 9`` in 3-D); outputs the first
Piola-Kirchhoff stress ``P`` flattened the same way. Each ensemble member is an
:class:`~surrogates.neural.energy.InvariantEnergy`, so every member (and the
mean) is objective, has the chosen material symmetry, ``W(1) = 0`` and
``P(1) = 0`` exactly; the polyconvex option guarantees ellipticity.

:meth:`HyperelasticEnsemble.material_response` gives the ensemble-mean stress
and tangent (the mean of exact energy derivatives, hence itself the exact
derivative of the mean energy) and the calibrated stress variance.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse
from surrogates.base import check_int, register_surrogate
from surrogates.dataset import Dataset
from surrogates.neural.energy import EnergyParams, InvariantEnergy, energy_derivatives
from surrogates.neural.ensemble import (
    VARIANCE_FLOOR,
    NeuralEnsembleModel,
    check_finite,
    real_tensor,
)
from surrogates.neural.fast import FastHyperelastic, ensemble_response
from surrogates.neural.invariants import InvariantSet, check_deformation_gradient
from surrogates.neural.training import (
    TrainingOptions,
    data_scale,
    member_split,
    nonnegative,
    scaled_mse,
    train_network,
)


def H_to_F(X: Tensor, dim: int) -> Tensor:
    """``... x k^2`` row-major displacement gradients to ``(prod ...) x k x k`` ``F``."""
    if X.shape[-1] != dim * dim:
        raise ValueError(
            f"inputs must be displacement gradients H = F - I with {dim * dim} entries "
            f"(row-major), got last dimension {X.shape[-1]}"
        )
    return X.reshape(-1, dim, dim) + torch.eye(dim, dtype=X.dtype, device=X.device)


@register_surrogate
class HyperelasticEnsemble(NeuralEnsembleModel):
    """Deep ensemble of invariant-based hyperelastic energy networks.

    Args:
        dim: 2 (plane strain) or 3.
        symmetry: ``"isotropic"``, ``"transverse"`` or ``"cubic"`` (square in 2-D).
        fibre: fibre direction (``dim`` entries) for ``"transverse"``.
        hidden: hidden widths of each member.
        polyconvex: input-convex members (guaranteed ellipticity).
        growth: volumetric growth coefficient (see :class:`InvariantEnergy`).
        num_members: ensemble size ``M``.
        seed: base seed; member ``i`` uses ``seed + i``.

    The calibration fits one variance factor for all ``k^2`` stress components
    (:attr:`~surrogates.neural.ensemble.NeuralEnsembleModel.calibrate_per_output`):
    a factor per lab-frame component made the calibrated variance change under
    a rigid rotation ``F -> QF``, and with it the adaptive switch's decision.
    """

    calibrate_per_output = False

    def __init__(self, dim: int = 3, symmetry: str = "isotropic", fibre=None, hidden=(16, 16),
                 polyconvex: bool = False, growth: float = 0.0, num_members: int = 5,
                 seed: int = 0):
        super().__init__()
        if isinstance(dim, bool) or dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        dim = int(dim)
        num_members, seed = check_int("num_members", num_members, 1), check_int("seed", seed)
        hidden = [check_int("hidden", h, 1) for h in hidden]
        try:
            g = None if isinstance(growth, (bool, str)) else float(growth)
        except (TypeError, ValueError):
            g = None
        if g is None or not math.isfinite(g) or g < 0:
            raise ValueError(f"growth must be a finite number >= 0, got {growth!r}")
        self._config = {
            "dim": int(dim), "symmetry": symmetry,
            "fibre": None if fibre is None else [float(v) for v in fibre],
            "hidden": [int(h) for h in hidden], "polyconvex": bool(polyconvex),
            "growth": float(growth), "num_members": int(num_members), "seed": int(seed),
        }
        self.members = nn.ModuleList(
            InvariantEnergy(dim=dim, symmetry=symmetry, fibre=fibre, hidden=tuple(hidden),
                            polyconvex=polyconvex, growth=growth, seed=seed + i)
            for i in range(int(num_members))
        )
        self._num_outputs = dim * dim
        self._init_ensemble_buffers(dim * dim)

    @property
    def dim_F(self) -> int:
        return self._config["dim"]

    # ----------------------------------------------------------------- contract
    @classmethod
    def from_dataset(cls, dataset: Dataset, *, tangent: Tensor | None = None,
                     tangent_weight: float = 1.0, val_fraction: float = 0.15,
                     calibration_fraction: float = 0.15,
                     training: TrainingOptions | dict | None = None, **options: Any):
        """Build and fit on ``dataset`` (``X = H`` ``n x k^2``, ``Y = P`` ``n x k^2``).

        Args:
            tangent: optional ``n x k x k x k x k`` tangents ``dP/dF`` of the
                training points (Sobolev training).
            tangent_weight: weight (a finite number >= 0) of the (normalized) tangent loss.
            val_fraction: per-member early-stopping split of the training rows (0: none, every
                fitting row trains and the weights of the lowest training loss are kept).
            calibration_fraction: held-out rows (seen by no member) for the
                variance recalibration; 0 skips calibration.
            training: :class:`TrainingOptions` (or its fields as a dict).
            **options: constructor arguments (``symmetry``, ``num_members``, ...).
        """
        k2 = dataset.d
        if k2 not in (4, 9) or dataset.m != k2:
            raise ValueError(
                f"HyperelasticEnsemble needs X = H (n x 4 or n x 9) and Y = P of the same "
                f"width, got X n x {dataset.d}, Y n x {dataset.m}"
            )
        dim = 2 if k2 == 4 else 3
        tangent_weight = nonnegative("tangent_weight", tangent_weight)
        if options.setdefault("dim", dim) != dim:
            raise ValueError(f"dim={options['dim']} does not match inputs of width {k2}")
        model, training, val_fraction, fit_idx, cal_idx = cls._begin_fit(
            dataset, training, val_fraction, calibration_fraction, options)
        F = H_to_F(dataset.X, dim)
        check_deformation_gradient(F)
        P = dataset.Y.reshape(-1, dim, dim)
        A = None
        if tangent is not None:
            A = real_tensor("tangent", tangent)
            if A.shape != (dataset.n, dim, dim, dim, dim):
                raise ValueError(
                    f"tangent must be n x {dim} x {dim} x {dim} x {dim} with n = {dataset.n}, "
                    f"got {tuple(A.shape)}"
                )
            check_finite("tangent", A)
        seed = model._config["seed"]
        p_scale = data_scale(P[fit_idx])
        a_scale = None if A is None else data_scale(A[fit_idx])
        model.output_scale.fill_(float(p_scale))

        def loss(member, idx):
            order = 2 if A is not None else 1
            _, Pp, Ap = member(F[idx], order=order)
            val = scaled_mse(Pp, P[idx], p_scale)
            if A is not None:
                val = val + tangent_weight * scaled_mse(Ap, A[idx], a_scale)
            return val

        model.histories = []
        for i, member in enumerate(model.members):
            member.set_scales(F[fit_idx], P[fit_idx])
            tr, va = member_split(fit_idx, val_fraction, seed + 1000 + i)
            model.histories.append(train_network(member, loss, tr, va, training))
        model.eval()
        if cal_idx is not None:
            model.calibrate(dataset.X[cal_idx], dataset.Y[cal_idx])
        return model

    # -------------------------------------------------------------- prediction
    def member_predictions(self, X: Tensor) -> Tensor:
        d = self._config["dim"]
        if X.shape[-1] != d * d:
            raise InvalidInput(f"X must be ... x {d * d} displacement gradients H = F - I (row-major), got shape {tuple(X.shape)}")
        X = X.to(torch.float64)  # the energies are in double precision (a float32 X is promoted)
        F = H_to_F(X, d)
        check_deformation_gradient(F.detach().reshape(-1, d, d), dim=d)  # finite, det F > 0
        inv = self.members[0].invariants.derivatives(F.permute(1, 2, 0), order=1)
        _, gs, _ = energy_derivatives(self._stacked_params(), inv.I, order=1, value=False)
        P = InvariantSet.stress(inv, gs)  # M x k x k x n
        return P.flatten(1, 2).transpose(1, 2).reshape(len(self.members), *X.shape[:-1], d * d)

    def _stacked_params(self) -> EnergyParams:
        return EnergyParams.stack([m.params() for m in self.members])

    def material_response(self, F: Tensor) -> MaterialResponse:
        """Ensemble-mean ``P`` (``n x k x k``), tangent (``n x k x k x k x k``) and the
        calibrated stress variance averaged over the ``k^2`` components (``n``).

        Without autograd on ``F`` this uses the fast evaluator
        (:meth:`fast_evaluator`, float64); with ``F.requires_grad`` the same
        evaluation on the live weights, differentiable.
        """
        d = self._config["dim"]
        if not torch.is_tensor(F) or F.is_complex():
            F = real_tensor("F", F)
        if F.requires_grad:
            F = check_deformation_gradient(F, dim=d)
            return self._response(F.to(torch.float64))  # the weights are float64 (a float32 F is cast)
        # the fast evaluator checks shape and det F > 0 itself (no extra pass)
        return self.fast_evaluator()(torch.as_tensor(F, dtype=torch.float64))

    def fast_evaluator(self, dtype: torch.dtype = torch.float64, chunk: int = 4096,
                       compile: bool = False, workers: int = 1):
        """A :class:`~surrogates.neural.fast.FastHyperelastic` of the current weights
        (cached until a parameter or buffer changes). ``dtype=torch.float32`` for
        deployment: about twice the throughput at ~1e-6 relative round-off;
        ``compile=True`` fuses the evaluation with ``torch.compile``; ``workers``
        evaluates chunks concurrently (see :class:`FastHyperelastic`)."""
        key = (dtype, chunk, bool(compile), workers, tuple(t._version for t in self.parameters()),
               tuple(t._version for t in self.buffers()))
        cached = getattr(self, "_fast_cache", None)
        # an edit through ``.data`` does not move ``_version``: the values are compared too
        if cached is None or cached[0] != key or not all(
                torch.equal(a, b) for a, b in zip(cached[2], (*self.parameters(), *self.buffers()), strict=True)):
            fast = FastHyperelastic(self.members, dtype=dtype, chunk=chunk,
                                    variance_scale=self.variance_scale + 0.0, compile=compile,
                                    workers=workers)
            fast.variance_floor = VARIANCE_FLOOR * float(self.output_scale.pow(2).mean())
            self._fast_cache = (key, fast, [t.detach().clone() for t in (*self.parameters(), *self.buffers())])
        return self._fast_cache[1]

    def _response(self, F: Tensor) -> MaterialResponse:
        """:func:`~surrogates.neural.fast.ensemble_response` on the live weights
        (differentiable in ``F`` and the weights), ``F`` ``n x k x k``."""
        vs = self.variance_scale if len(self.members) > 1 else None
        floor = VARIANCE_FLOOR * float(self.output_scale.pow(2).mean())
        P, A, var, _ = ensemble_response(self.members[0].invariants, self._stacked_params(),
                                         F.permute(1, 2, 0), vs, floor)
        return MaterialResponse(P.permute(2, 0, 1), A.permute(4, 0, 1, 2, 3), var)
