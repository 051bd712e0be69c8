r"""Newton-Krylov solution of the periodic equilibrium ``G P(X) = 0``.

The unknown is a gradient field on the voxel grid (strain or deformation
gradient, ``L x m x *grid`` in component storage) whose mean is the macro load
``vbar`` (``L x m``). :func:`newton` linearizes the equilibrium at each
iterate and solves ``G (K dX) = -G P`` for the compatible correction by
preconditioned CG (inexact Newton: each linear solve is only as accurate as
the Newton tolerance needs). When Newton from the homogeneous guess fails,
:func:`continuation` follows the load path from the stress-free state with
the predictor of de Geus et al. (2017), "Finite strain FFT-based non-linear
solvers made simple", CMAME 318, halving failed increments.

Both work on any :class:`EquilibriumProblem`, for example
:class:`oracles.rve.solver.FFTSolver`.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, NotConverged
from oracles.rve.fields import ComponentBasis, DenseTangent
from oracles.rve.projection import Projection, ReferenceMedium, field_norm

#: equilibrium is also reached when ``||G P||`` falls below this many machine epsilons
#: times the tangent field's norm: the round-off of the computed stress, which near
#: ``F = I`` (``|F - I|`` of 1e-8) is as large as ``newton_tol ||P||``
NEWTON_ROUNDOFF = 100.0

__all__ = ["EquilibriumProblem", "continuation", "newton", "reference_load"]


class EquilibriumProblem(Protocol):
    """What Newton needs of a discretized RVE.

    Attributes:
        k, m, shape: dimension, components per voxel, grid.
        basis: the component basis (its ``kind`` is ``"small"`` or ``"finite"``).
        G: the compatibility projection.
        newton_tol: relative equilibrium tolerance ``||G P|| / ||P||``.
        newton_maxiter: Newton iteration limit.
    """

    k: int
    m: int
    shape: tuple[int, ...]
    basis: ComponentBasis
    G: Projection
    newton_tol: float
    newton_maxiter: int

    def constitutive(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Stress ``L x m x *grid`` and tangent ``L x m x m x *grid`` at ``X``."""
        ...

    def reference_for(self, K: Tensor) -> ReferenceMedium | None:
        """The preconditioner for tangent ``K`` (None: plain CG)."""
        ...

    def solve_fluctuation(
        self, Kop, s: Tensor, ref: ReferenceMedium | None, atol: Tensor | float = 0.0
    ) -> tuple[Tensor, int, Tensor]:
        """Compatible ``dX`` with ``G K dX = -G s``: ``(dX, iterations, residuals)``."""
        ...


def _bcast(v: Tensor, k: int) -> Tensor:
    """``... x m`` -> ``... x m x 1 ... 1`` for broadcasting over a ``k``-D grid."""
    return v.reshape(*v.shape, *([1] * k))


def _mean(x: Tensor, k: int) -> Tensor:
    """Mean over the last ``k`` (grid) axes."""
    return x.mean(dim=tuple(range(-k, 0)))


def reference_load(problem: EquilibriumProblem, vbar: Tensor) -> Tensor:
    """The stress-free start of the load path to ``vbar`` (``L x m``).

    Small strain: ``eps = 0``. Finite strain: the rotation ``R`` of the
    polar decomposition ``F = R U``, a rigid rotation of the stress-free
    reference. The path ``R + t (F - R) = R (I + t (U - I))`` then only
    stretches, whereas the straight path from ``I`` to a rotated ``F``
    would cross states of severe compression (``det`` near 0 halfway to
    a rotation by pi).
    """
    if problem.basis.kind == "small":
        return torch.zeros_like(vbar)
    W, _, Vh = torch.linalg.svd(problem.basis.ten(vbar))
    return problem.basis.vec(W @ Vh)  # det F > 0, so det(W Vh) = +1


def newton(problem: EquilibriumProblem, vbar: Tensor, start: tuple[Tensor, Tensor, Tensor] | None = None):
    """Newton-CG on ``G P(X) = 0`` with ``<X> = vbar`` (``L x m``).

    Args:
        vbar: ``L x m`` macro load in the solver basis.
        start: None to start from the homogeneous field ``vbar``; or
            ``(X_eq, S_eq, K_eq)``, an equilibrium at another macro load
            with its stress and tangent, from which the first iteration is
            the linearized increment (de Geus et al. 2017).

    Returns:
        ``(X, S, Kt, rel, log)``: converged field, stress and tangent
        (``L x m [x m] x *grid``), ``L`` relative residuals and a log of
        iteration counts, step norms and residuals.

    Raises:
        NotConverged: Newton or CG missed its tolerance, CG met negative
            curvature (:class:`IndefiniteOperator`), or the iterate left
            the admissible set.
    """
    L, m, k = vbar.shape[0], problem.m, problem.k
    Vbar = _bcast(vbar, k).expand(L, m, *problem.shape)
    cg_its, steps, res_hist = [], [], []
    newton_it, halvings = 0, 0
    X_prev, step = None, None
    if start is None:
        X = Vbar.clone()
    else:
        X_eq, S_eq, K_eq = start
        E = Vbar - _mean(X_eq, k).reshape(L, m, *([1] * k))
        Kop = DenseTangent(K_eq)
        KE = Kop(E.unsqueeze(1))[:, 0] + S_eq
        atol = (0.01 * problem.newton_tol * field_norm(KE, k)).unsqueeze(1)
        dX, it, _ = problem.solve_fluctuation(Kop, KE.unsqueeze(1), problem.reference_for(K_eq), atol=atol)
        X_prev, step = X_eq + E, dX[:, 0]
        X = X_prev + step
        cg_its.append(it)
        steps.append((field_norm(E + step, k) / field_norm(Vbar, k)).max().item())
        newton_it = 1
    while True:
        # the previous linearization is not needed any more: free it before the next one
        # (two tangents of L m^2 doubles per voxel would be alive at once otherwise)
        Kop = Kt = None
        try:
            S, Kt = problem.constitutive(X)
        except InvalidInput as e:
            if newton_it == 0:
                raise
            if halvings < 10:
                # a full step left the admissible set (det F <= 0 in
                # some voxel): backtrack along the Newton direction
                halvings += 1
                X = X_prev + 0.5**halvings * step
                continue
            raise NotConverged(
                f"Newton left the admissible set at iteration {newton_it}: {e}",
                iterations=newton_it,
            ) from e
        halvings = 0
        r = problem.G(S)
        nS = field_norm(S, k)
        rel = field_norm(r, k) / nS.clamp_min(1e-300)
        rel = torch.where(nS > 0, rel, torch.zeros_like(rel))
        res_hist.append(rel.max().item())
        if not torch.isfinite(rel).all():
            raise NotConverged(
                f"Newton diverged (non-finite residual) at iteration {newton_it}",
                iterations=newton_it,
            )
        # equilibrium to the tolerance, or to the round-off of the stress itself: near F = I
        # the computed P carries an error ~ eps |K| that ||G P|| / ||P|| cannot beat
        floor = NEWTON_ROUNDOFF * torch.finfo(S.dtype).eps * field_norm(Kt.flatten(1, 2), k)
        if bool(((rel <= problem.newton_tol) | (field_norm(r, k) <= floor)).all()):
            break
        if newton_it >= problem.newton_maxiter:
            raise NotConverged(
                f"Newton did not reach tol {problem.newton_tol:g} in {problem.newton_maxiter} "
                f"iterations (relative residual {rel.max().item():.3g})",
                iterations=newton_it,
                residual=rel.max().item(),
            )
        Kop = DenseTangent(Kt)
        # inexact Newton: late steps need no more accuracy than the
        # Newton tolerance itself (round-off would stall CG there)
        atol = (0.01 * problem.newton_tol * nS).unsqueeze(1)
        dX, it, _ = problem.solve_fluctuation(Kop, S.unsqueeze(1), problem.reference_for(Kt), atol=atol)
        X_prev, step = X, dX[:, 0]
        X = X + step
        cg_its.append(it)
        steps.append((field_norm(step, k) / field_norm(Vbar, k)).max().item())
        newton_it += 1
    log = {
        "newton_iterations": newton_it,
        "cg_iterations_per_solve": cg_its,
        "newton_steps": steps,
        "residuals": res_hist,
    }
    return X, S, Kt, rel, log


def continuation(problem: EquilibriumProblem, vbar: Tensor, cause: NotConverged, min_fraction: float = 1.0 / 64):
    """Newton along the straight load path from the reference state to ``vbar``.

    Each increment starts from the previous equilibrium with the
    predictor of de Geus et al. (2017): the macro increment is applied
    through the tangent of that equilibrium, which is positive definite on
    compatible fields while the equilibrium is stable (at the stress-free
    state by Korn's inequality). A failed increment is halved, down to
    ``min_fraction`` of the load.

    Returns:
        ``(X, S, Kt, rel, log)`` as :func:`newton`, ``log["load_path"]``
        listing the load fractions reached.
    """
    vref = reference_load(problem, vbar)
    X_eq = _bcast(vref, problem.k).expand(vbar.shape[0], problem.m, *problem.shape).clone()
    S_eq, K_eq = problem.constitutive(X_eq)
    total = {"newton_iterations": 0, "cg_iterations_per_solve": [], "newton_steps": [], "residuals": []}
    t, dt, path = 0.0, 0.5, []  # the full step already failed from the direct start
    while t < 1.0:
        dt = min(dt, 1.0 - t)
        v_t = vref + (t + dt) * (vbar - vref)
        try:
            X, S, Kt, rel, log = newton(problem, v_t, start=(X_eq, S_eq, K_eq))
        except NotConverged as e:
            dt *= 0.5
            if dt < min_fraction:
                raise NotConverged(
                    f"Newton did not converge from the homogeneous guess ({cause}) nor along "
                    f"the load path: an increment of {2 * dt:.3g} of the load at load fraction "
                    f"{t:.3g} failed ({e}); the RVE may lose stability on this path",
                    iterations=total["newton_iterations"],
                    residual=getattr(e, "residual", None),
                ) from e
            continue
        for key in ("cg_iterations_per_solve", "newton_steps", "residuals"):
            total[key] += log[key]
        total["newton_iterations"] += log["newton_iterations"]
        X_eq, S_eq, K_eq, t = X, S, Kt, t + dt
        path.append(t)
        dt *= 2.0
    total["load_path"] = path
    return X, S, Kt, rel, total
