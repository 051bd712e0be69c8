"""Preconditioned conjugate gradients on a batch of independent systems.

:func:`oracles.rve.krylov.batched_cg` takes a preconditioner only in the form
``M A`` with the inner product of ``M^-1``; the Stokes solver's preconditioner
(a restricted Laplacian) has no cheap inverse, so this is the textbook PCG
(Saad 2003, Alg. 9.1) with ``z = M r``, on the same batch layout and dot
products, stopping on the true residual.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from oracles.exceptions import NotConverged
from oracles.rve.krylov import IndefiniteOperator

__all__ = ["preconditioned_cg"]


def preconditioned_cg(
    apply_A: Callable[[Tensor], Tensor],
    b: Tensor,
    precond: Callable[[Tensor], Tensor],
    tol: float,
    maxiter: int,
    ndim_field: int,
    atol: Tensor | float = 0.0,
) -> tuple[Tensor, int, Tensor]:
    """Solve ``A x = b`` for ``*batch`` systems of fields with ``ndim_field`` dims.

    Args:
        apply_A: symmetric positive (semi)definite operator on ``*batch x *field``.
        b: ``*batch x *field`` right-hand sides (in the range of ``A``).
        precond: symmetric positive definite ``M ~ A^-1`` on the same fields.
        tol: relative tolerance, ``||b - A x|| <= tol ||b||`` per system.
        maxiter: iteration limit.
        ndim_field: trailing dims of one field.
        atol: ``*batch`` or scalar floor of the residual norm.

    Returns:
        ``(x, iterations, relative residuals *batch)``: ``||b - A x||`` over
        ``max(||b||, atol / tol)``, the scale the stopping test used.

    Raises:
        NotConverged: some system missed the tolerance in ``maxiter`` iterations.
        IndefiniteOperator: ``p^T A p <= 0`` for an unconverged system.
    """
    bshape = b.shape[: b.dim() - ndim_field]
    fshape = b.shape
    nb = math.prod(bshape)
    # the iteration works on flat ``nb x n`` views; the dot products are
    # torch.linalg.vecdot (one kernel, a temporary of one vector: the
    # solid-node vectors of the Stokes solver are small)
    dot = torch.linalg.vecdot

    def flat(t):
        return t.reshape(nb, -1)

    bf = flat(b)
    bn = dot(bf, bf).sqrt()
    floor = torch.as_tensor(atol, dtype=bn.dtype, device=bn.device).reshape(-1)
    thresh = torch.maximum(tol * bn, floor) ** 2
    zero = bn.new_zeros(())
    x = torch.zeros_like(bf)
    r = bf.clone()
    z = flat(precond(r.view(fshape)))
    p = z.clone()
    rz = dot(r, z)
    rr = dot(r, r)
    it = 0
    while True:
        active = rr > thresh
        if not bool(active.any()):
            break
        if it >= maxiter:
            rel = (rr.sqrt() / bn.clamp_min(1e-300)).max().item()
            raise NotConverged(
                f"CG did not reach tol {tol:g} in {maxiter} iterations (relative residual {rel:.3g})",
                iterations=it,
                residual=rel,
            )
        Ap = flat(apply_A(p.view(fshape)))
        pAp = dot(p, Ap)
        if bool((active & (pAp <= 0)).any()):
            q = (pAp / dot(p, p).clamp_min(1e-300))[active].min().item()
            raise IndefiniteOperator(
                f"CG met non-positive curvature at iteration {it} (p^T A p / p^T p = {q:.3g}); "
                "the operator must be positive definite",
                iterations=it,
                residual=(rr.sqrt() / bn.clamp_min(1e-300)).max().item(),
            )
        alpha = torch.where(active, rz / pAp, zero).unsqueeze(-1)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, Ap, value=-1.0)
        del Ap
        z = flat(precond(r.view(fshape)))
        rz_new = dot(r, z)
        rr = dot(r, r)
        beta = torch.where(active, rz_new / rz, zero).unsqueeze(-1)
        p.mul_(beta).add_(z)
        rz = rz_new
        it += 1
    # relative to what the stopping test asked: a system stopped by the absolute floor (a
    # right-hand side below atol / tol, e.g. the blocked direction of a slit) reports at most tol
    scale = torch.maximum(bn, floor / tol if tol > 0 else floor).clamp_min(1e-300)
    return x.view(fshape), it, (rr.sqrt() / scale).reshape(bshape)
