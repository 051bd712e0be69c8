r"""Stress-and-tangent evaluation of hyperelastic energy networks for FE².

:func:`ensemble_response` is the one evaluation of an ensemble of
:class:`~surrogates.neural.energy.InvariantEnergy` members at a batch of
deformation gradients: the invariant derivatives
(:meth:`~surrogates.neural.invariants.InvariantSet.derivatives`), every
member's energy gradient and Hessian w.r.t. the invariants in one batched
network evaluation (members stacked along a leading dimension,
:func:`~surrogates.neural.energy.energy_derivatives`), and the stress and
tangent of the mean (linear in the members' ``dW/dI`` and ``d^2W/dI^2``, so
the mean's derivatives are exact) assembled once
(:meth:`~surrogates.neural.invariants.InvariantSet.tangent`). It is plain
differentiable torch: :meth:`HyperelasticEnsemble._response
<surrogates.neural.hyperelastic.HyperelasticEnsemble>` calls it on the live
weights.

:class:`FastHyperelastic` calls it on detached weights for throughput: every
tensor carries the batch as its last, contiguous dimension (``F`` is
``k x k x n``), so each operation is a long vectorized loop and the network
layers are plain GEMMs; the points are evaluated in chunks that keep the
working set in cache, optionally in float32 (deployment: about 1e-6 relative
round-off), on several Python threads, or fused by ``torch.compile``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse
from surrogates.base import check_int
from surrogates.neural.energy import EnergyParams, energy_derivatives
from surrogates.neural.ensemble import real_tensor
from surrogates.neural.invariants import InvariantSet


def ensemble_response(invariants: InvariantSet, params: EnergyParams, F: Tensor,
                      variance_scale: Tensor | None = None, variance_floor: float = 0.0,
                      out: tuple[Tensor, Tensor] | None = None):
    """Ensemble-mean stress and tangent, and the stress variance, at ``F``.

    Args:
        invariants: the members' invariant set.
        params: the members' :class:`EnergyParams` stacked along a leading ``M``.
        F: ``k x k x n`` deformation gradients (batch last).
        variance_scale: ``k^2`` calibration factors of the member spread of
            ``P`` (row-major components), or None for no variance.
        variance_floor: added to the variance.
        out: optional storage ``(P, A)`` (``k x k x n``, ``k x k x k x k x n``)
            to write the stress and tangent into (no autograd).

    Returns:
        ``(P, A, var, J)``: ``k x k x n``, ``k x k x k x k x n``, ``n`` (or
        None) and ``det F`` (``n``).
    """
    inv = invariants.derivatives(F, order=1)
    _, gs, Hs = energy_derivatives(params, inv.I, order=2, value=False)  # M x p x n, M x p x p x n
    g, H = gs.mean(0), Hs.mean(0)
    P = invariants.stress(inv, g, out=None if out is None else out[0])
    A = invariants.tangent(inv, g, H, out=None if out is None else out[1])
    var = None
    if variance_scale is not None:
        Pm = invariants.stress(inv, gs).flatten(-3, -2)  # M x k^2 x n
        dev = Pm - Pm.mean(0)  # unbiased member variance; torch.var over a leading dim is far slower
        var = ((dev * dev).sum(0) * variance_scale[:, None]).mean(0) / (Pm.shape[0] - 1) + variance_floor
    return P, A, var, inv.J




class FastHyperelastic:
    """Stress and tangent of one :class:`InvariantEnergy` or an ensemble of them
    (a frozen copy of the current weights).

    Args:
        members: the energies (same dim, symmetry, fibre and architecture).
        dtype: evaluation dtype (float64, or float32 for deployment).
        variance_scale: ``k^2`` calibration factors of the stress variance
            (ensembles), or None for no variance.
        chunk: points per chunk (bounds the memory, keeps the working set in cache).
        workers: chunks evaluated concurrently by this many Python threads (each
            op single-threaded: use with ``torch.set_num_threads(1)``); scales
            across cores without the per-operation synchronization of torch's
            intra-op threads, which hurts badly on a shared machine.
        compile: fuse the per-chunk computation with ``torch.compile`` (inductor,
            needs a C++ compiler; the first call compiles, which takes tens of
            seconds; the last partial chunk is padded so one static shape serves).
    """

    def __init__(self, members, dtype: torch.dtype = torch.float64,
                 variance_scale: Tensor | None = None, chunk: int = 4096,
                 compile: bool = False, workers: int = 1):
        members = list(members)
        workers, chunk = check_int("workers", workers, 1), check_int("chunk", chunk, 1)
        if dtype not in (torch.float64, torch.float32):
            raise ValueError(f"dtype must be torch.float64 or torch.float32, got {dtype!r}")
        self.workers = int(workers)
        if not members:
            raise ValueError("need at least one member")
        inv = members[0].invariants
        for m in members[1:]:
            if (m.invariants.symmetry, m.invariants.dim, m.invariants.fibre) != (
                inv.symmetry, inv.dim, inv.fibre
            ):
                raise ValueError("all members must share dim, symmetry and fibre")
        with torch.no_grad():
            params = [m.params() for m in members]
            shapes = {tuple(tuple(t.shape) for t in (*q.layers.W, *q.layers.b)) + (q.layers.Wx is None,)
                      for q in params}
            if len(shapes) != 1:
                raise ValueError("all members must share the network architecture")
            self.params = EnergyParams.stack(params).map(lambda t: t.detach().to(dtype).contiguous())
        self.inv = inv
        self.dtype = dtype
        self.chunk = int(chunk)
        self.variance_scale = (None if variance_scale is None or len(members) < 2
                               else variance_scale.detach().to(dtype))
        #: added to the variance (keeps it positive where members agree exactly)
        self.variance_floor = 0.0
        self.eye = torch.eye(inv.dim, dtype=dtype)
        self.compiled = bool(compile)
        self._run = torch.compile(self._chunk, dynamic=False) if compile else self._chunk

    @torch.no_grad()
    def __call__(self, F: Tensor) -> MaterialResponse:
        """``P`` (``n x k x k``), tangent (``n x k x k x k x k``), variance (``n`` or None).

        Raises :class:`~oracles.exceptions.InvalidInput` for a wrong shape or a
        point with ``det F <= 0`` (or NaN). ``P`` and the tangent are views of
        batch-last storage (index them as usual; ``.contiguous()`` if needed).
        """
        k = self.inv.dim
        if not torch.is_tensor(F) or F.is_complex():
            F = real_tensor("F", F)
        if F.dim() != 3 or F.shape[1:] != (k, k):
            raise InvalidInput(f"F must be n x {k} x {k}, got shape {tuple(F.shape)}")
        n = F.shape[0]
        # batch-last storage; the returned P and tangent are n-first views of it
        # (same values and indexing, no transposing copy)
        P = torch.empty(k, k, n, dtype=self.dtype)
        A = torch.empty(k, k, k, k, n, dtype=self.dtype)
        var = torch.empty(n, dtype=self.dtype) if self.variance_scale is not None else None
        Ft = F.to(self.dtype).permute(1, 2, 0).contiguous()

        def work(start: int) -> None:
            stop = min(n, start + self.chunk)
            sl = slice(start, stop)
            Fc = Ft[..., sl]
            if self.compiled and stop - start < self.chunk:
                # pad with identities: one static shape, no recompilation
                pad = self.eye[..., None].expand(k, k, self.chunk - stop + start)
                Fc = torch.cat([Fc, pad], -1)
            if self.compiled:
                Pc, Ac, vc, Jc = self._run(Fc.contiguous())
            else:  # written straight into the result (no chunk-sized temporaries to copy)
                Pc, Ac, vc, Jc = self._chunk(Fc.contiguous(), out=(P[..., sl], A[..., sl]))
            m = stop - start
            bad = ~(Jc[:m] > 0) | ~torch.isfinite(Jc[:m])  # also catches NaN and inf entries of F
            if bad.any():
                i = start + int(bad.nonzero()[0])
                raise InvalidInput(
                    f"F must be finite with det F > 0, got det F = {Jc[i - start].item():.6g} "
                    f"at point {i}"
                )
            if self.compiled:
                P[..., sl] = Pc[..., :m]
                A[..., sl] = Ac[..., :m]
            if var is not None:
                var[sl] = vc[:m]

        starts = range(0, n, self.chunk)
        if self.workers > 1 and len(starts) > 1:
            # chunk-level parallelism: torch ops release the GIL, so each worker
            # runs whole chunks; no per-operation synchronization between cores
            with ThreadPoolExecutor(self.workers) as pool:
                for fut in [pool.submit(work, s0) for s0 in starts]:
                    fut.result()
        else:
            for s0 in starts:
                work(s0)
        return MaterialResponse(P.permute(2, 0, 1), A.permute(4, 0, 1, 2, 3), var)

    def _chunk(self, F: Tensor, out: tuple[Tensor, Tensor] | None = None):
        return ensemble_response(self.inv, self.params, F, self.variance_scale, self.variance_floor, out)
