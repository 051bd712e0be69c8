"""Conjugate gradients on batches of independent linear systems of fields.

:func:`batched_cg` solves ``A x = b`` for a batch of right-hand sides at once
(one operator application per iteration for the whole batch), optionally in
a non-Euclidean inner product (preconditioned CG), and refuses an operator
that is not positive definite (:class:`IndefiniteOperator`). :func:`bdot`
and :func:`gram` are the batched inner products it and its callers use.

Reference: J. R. Shewchuk (1994), "An introduction to the conjugate gradient
method without the agonizing pain", CMU-CS-94-125.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from oracles.exceptions import NotConverged

__all__ = ["IndefiniteOperator", "batched_cg", "bdot", "gram"]


class IndefiniteOperator(NotConverged):
    """CG met a direction of non-positive curvature (``p^T A p <= 0``): the
    operator is not positive definite, so CG's answer would be meaningless.
    In Newton it means the linearization is indefinite on compatible fields."""


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product ``nb x p x n`` by ``nb x n x q``; numpy's matmul
    on the CPU, which is several times faster than torch's ``bmm`` on the
    ``nb x 1 x n`` by ``nb x n x 1`` shapes of CG's dot products."""
    if a.device.type == "cpu" and not (a.requires_grad or b.requires_grad):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return torch.bmm(a, b)


def bdot(u: Tensor, v: Tensor, nd: int) -> Tensor:
    """Dot products ``*batch`` of fields ``*batch x *field`` with ``nd``
    trailing field dims, through BLAS (no temporary field)."""
    bshape = u.shape[: u.dim() - nd]
    nb = math.prod(bshape)
    return _bmm(u.reshape(nb, 1, -1), v.reshape(nb, -1, 1)).reshape(bshape)


def gram(u: Tensor, v: Tensor, nd: int) -> Tensor:
    """Gram matrices ``*batch x m x m`` of the components, ``<u_I, v_J>``, of
    fields with ``nd`` trailing dims (the first the ``m`` components)."""
    bshape = u.shape[: u.dim() - nd]
    nb, m = math.prod(bshape), u.shape[u.dim() - nd]
    return _bmm(u.reshape(nb, m, -1), v.reshape(nb, m, -1).transpose(1, 2)).reshape(*bshape, m, m)


def batched_cg(
    apply_A,
    b: Tensor,
    tol: float,
    maxiter: int,
    ndim_field: int,
    atol: Tensor | float = 0.0,
    inner=None,
    bnorm: Tensor | None = None,
    factor: float = 1.0,
) -> tuple[Tensor, int, Tensor]:
    """Conjugate gradients on a batch of independent systems ``A x = b``.

    Args:
        apply_A: operator on fields ``*batch x *field``, self-adjoint and
            positive definite in the inner product ``inner``; it may return
            ``(A p, inner(p, A p))`` when it has the latter cheaper.
        b: ``*batch x *field`` right-hand sides.
        tol: relative tolerance, ``||r|| <= tol ||b||`` for every system.
        maxiter: iteration limit.
        ndim_field: number of trailing dims that make one field.
        atol: ``*batch`` (or scalar) absolute floor of the residual norm; an
            inexact Newton needs no more than its own tolerance.
        inner: ``inner(u, v) -> *batch``; None for the Euclidean dot product.
            Preconditioned CG passes ``b = M b_0``, ``apply_A = M A_0`` and
            the inner product in which ``M A_0`` is self-adjoint.
        bnorm: ``*batch`` norm of the original right-hand side (default
            ``||b||``); the tolerance refers to it.
        factor: bound ``||r_0||^2 <= factor * inner(r, r)`` of the original
            residual by the one iterated, so stopping on it is safe.

    Returns:
        ``(x, iterations, relative residuals *batch)`` (bounds, when
        preconditioned): ``||r||`` over the norm the stopping rule refers to,
        ``max(||b||, atol / tol)``, so a converged system reports at most
        ``tol`` also where the absolute floor stopped it (a right-hand side
        that is zero to round-off).

    Raises:
        NotConverged: when some system misses the tolerance in ``maxiter``.
        IndefiniteOperator: when ``p^T A p <= 0`` for an unconverged system.
    """
    bshape = b.shape[: b.dim() - ndim_field]
    ex = (...,) + (None,) * ndim_field

    def dot(u, v):
        return bdot(u, v, ndim_field)

    if inner is None:
        inner = dot
    bn = dot(b, b).sqrt() if bnorm is None else bnorm.reshape(bshape)
    floor = torch.as_tensor(atol, dtype=bn.dtype, device=bn.device)
    thresh = torch.maximum(tol * bn, floor) ** 2 / factor
    ref = torch.maximum(bn, floor / tol) if tol > 0 else bn  # what "relative" refers to
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rr = inner(r, r)
    it = 0
    while True:
        active = rr > thresh
        if not bool(active.any()):
            break
        if it >= maxiter:
            rel = ((factor * rr).sqrt() / ref.clamp_min(1e-300)).max().item()
            raise NotConverged(
                f"CG did not reach tol {tol:g} in {maxiter} iterations (relative residual {rel:.3g})",
                iterations=it,
                residual=rel,
            )
        Ap = apply_A(p)
        if isinstance(Ap, tuple):  # the operator also gave p^T A p
            Ap, pAp = Ap
        else:
            pAp = inner(p, Ap)
        if bool((active & (pAp <= 0)).any()):
            q = (pAp / inner(p, p).clamp_min(1e-300))[active].min().item()
            raise IndefiniteOperator(
                f"CG met non-positive curvature at iteration {it} (p^T A p / p^T p = {q:.3g}); "
                "the operator must be positive definite",
                iterations=it,
                residual=((factor * rr).sqrt() / ref.clamp_min(1e-300)).max().item(),
            )
        # inactive systems may divide 0 by 0: where() discards those lanes
        alpha = torch.where(active, rr / pAp, 0.0)
        x.addcmul_(alpha[ex], p)
        r.addcmul_(alpha[ex], Ap, value=-1.0)
        del Ap
        rr_new = inner(r, r)
        beta = torch.where(active, rr_new / rr, 0.0)
        p.mul_(beta[ex]).add_(r)
        rr = rr_new
        it += 1
    rel = (factor * rr).sqrt() / ref.clamp_min(1e-300)
    return x, it, rel.reshape(bshape)
