r"""Fast stress-and-tangent evaluation of hyperelastic networks for FE².

Same mathematics as :class:`~surrogates.neural.energy.InvariantEnergy`
(tested equal to it), laid out for throughput:

* "structure of arrays": every tensor carries the batch as its *last*,
  contiguous dimension (``F`` is ``k x k x n``), so each of the few dozen
  torch operations is a long vectorized loop and the network layers are plain
  GEMMs;
* the gradient and Hessian of a two-hidden-layer network w.r.t. its ``p``
  inputs in closed form (``M = W1 diag(s1) W0`` is the Jacobian of the second
  pre-activation; ``H = M^T diag(w s2') M + W0^T diag(s1'' W1^T(w s2')) W0``),
  with the input scaling ``T`` and the shift folded into the first-layer
  weights once;
* the second derivatives of the invariants merged into a handful of outer
  products (e.g. ``2F (x) Q_1 + 4 g_2 F (x) F = 2F (x) (Q_1 + 2 g_2 F)``);
* an ensemble shares the invariant derivatives and the tangent assembly (the
  mean tangent is linear in the members' ``dW/dI`` and ``d^2W/dI^2``);
* evaluation in chunks that keep the working set in cache, optionally in
  float32 (deployment: about 1e-6 relative round-off, double throughput).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor
from torch.nn import functional as Fn

from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse
from surrogates.neural.energy import InvariantEnergy
from surrogates.neural.icnn import ConvexMLP


def _cof(F: Tensor) -> Tensor:
    """Cofactor of ``k x k x n`` (``cof F = det F * F^{-T}``)."""
    if F.shape[0] == 2:
        return torch.stack([torch.stack([F[1, 1], -F[1, 0]]), torch.stack([-F[0, 1], F[0, 0]])])
    F1 = F.roll((-1, -1), (0, 1))
    F2 = F.roll((-2, -2), (0, 1))
    F12 = F.roll((-1, -2), (0, 1))
    F21 = F.roll((-2, -1), (0, 1))
    return F1 * F2 - F12 * F21


def _mm(X: Tensor, Y: Tensor) -> Tensor:
    """Per-point product of ``k x k x n`` matrices (k fused multiply-adds, no reduction)."""
    out = X[:, 0, None, :] * Y[None, 0]
    for j in range(1, X.shape[1]):
        out.addcmul_(X[:, j, None, :], Y[None, j])
    return out


def _member_tensors(member: InvariantEnergy) -> dict:
    """One member's network with the input transform and shift folded in."""
    net = member.net
    T = member.transform()
    if isinstance(net, ConvexMLP):
        if len(net.wx) != 2:
            raise ValueError(f"the fast path needs two hidden layers, got {len(net.wx)}")
        W0, W1 = Fn.softplus(net.wx[0]), Fn.softplus(net.wz[0])
        Wx, w = Fn.softplus(net.wx[1]) @ T, Fn.softplus(net.out)
    else:
        if len(net.weights) != 2:
            raise ValueError(f"the fast path needs two hidden layers, got {len(net.weights)}")
        W0, W1, w, Wx = net.weights[0], net.weights[1], net.out, None
    W0 = W0 @ T  # acts on the raw invariants
    b0 = net.biases[0] - W0 @ member.I0
    b1 = net.biases[1] if Wx is None else net.biases[1] - Wx @ member.I0
    # gradient at F = 1 (x = 0) for the exact stress normalization
    _, g0, _ = net(torch.zeros(1, T.shape[0], dtype=T.dtype), order=1)
    g0 = (g0 @ T)[0]
    corr = torch.zeros_like(g0)
    corr[2] = (g0 * member.alpha).sum()
    if member.invariants.symmetry == "transverse":
        corr[3] = (g0 * member.beta).sum() / 2.0
    p = W0.shape[1]
    return dict(W0=W0, b0=b0, W1=W1, b1=b1, Wx=Wx, w=w, corr=corr, s=member.energy_scale,
                W0W0=(W0[:, :, None] * W0[:, None, :]).reshape(W0.shape[0], p * p),
                growth=member.growth)


class _StackedParams:
    """All members' networks stacked along a leading ``M`` dimension (batched GEMMs)."""

    def __init__(self, members, dtype: torch.dtype):
        ts = [_member_tensors(m) for m in members]
        shapes = {tuple(t["W0"].shape) + tuple(t["W1"].shape) + (t["Wx"] is None,) for t in ts}
        if len(shapes) != 1:
            raise ValueError("all members must share the network architecture")
        for key in ts[0]:
            val = None if ts[0][key] is None else torch.stack([t[key] for t in ts])
            setattr(self, key, None if val is None else val.detach().to(dtype))
        self.W0T = self.W0.transpose(1, 2).contiguous()
        self.W1T = self.W1.transpose(1, 2).contiguous()
        self.W0W0T = self.W0W0.transpose(1, 2).contiguous()
        self.WxT = None if self.Wx is None else self.Wx.transpose(1, 2).contiguous()
        self.has_growth = bool((self.growth != 0).any())

    def derivs(self, I: Tensor) -> tuple[Tensor, Tensor]:
        """``dW/dI`` (``M x p x n``) and ``d^2W/dI^2`` (``M x p x p x n``) at ``I`` (``p x n``)."""
        p, n = I.shape
        M = self.W0.shape[0]
        Ib = I.expand(M, p, n)
        a1 = torch.baddbmm(self.b0[:, :, None], self.W0, Ib)
        s1 = torch.sigmoid(a1)
        a2 = torch.baddbmm(self.b1[:, :, None], self.W1, Fn.softplus(a1))
        if self.Wx is not None:
            a2 = a2 + torch.bmm(self.Wx, Ib)
        t1 = torch.sigmoid(a2)
        wt1 = self.w[:, :, None] * t1
        c = wt1 * (1.0 - t1)  # w * softplus''(a2)
        u = torch.bmm(self.W1T, wt1)
        s1u = s1 * u
        # g = W0^T (s1 * W1^T (w t1)) (+ Wx^T (w t1)): no Jacobian needed for the gradient
        g = torch.bmm(self.W0T, s1u)
        if self.WxT is not None:
            g = g + torch.bmm(self.WxT, wt1)
        H = torch.bmm(self.W0W0T, s1u - s1 * s1u).reshape(M, p, p, n)
        # Jacobian of the second pre-activation, M x H2 x p x n
        Jm = torch.bmm(self.W1, (s1[:, :, None, :] * self.W0[:, :, :, None]).reshape(M, -1, p * n))
        Jm = Jm.reshape(M, -1, p, n)
        if self.Wx is not None:
            Jm = Jm + self.Wx[:, :, :, None]
        cJ = c[:, :, None, :] * Jm
        for a in range(p):
            for b in range(a, p):
                v = (cJ[:, :, a] * Jm[:, :, b]).sum(1)
                H[:, a, b] += v
                if b != a:
                    H[:, b, a] += v
        s = self.s[:, None, None]
        g = s * (g - self.corr[:, :, None])
        H = s[..., None] * H
        if self.has_growth:
            J = I[2]
            r = J + 1.0 / J - 2.0
            d = 1.0 - 1.0 / J**2
            gro = self.growth[:, None]
            g[:, 2] += gro * 2.0 * r * d
            H[:, 2, 2] += gro * 2.0 * (d * d + r * 2.0 / J**3)
        return g, H


class FastHyperelastic:
    """Stress and tangent of one :class:`InvariantEnergy` or an ensemble of them.

    Args:
        members: the energies (same dim, symmetry and fibre; two hidden layers).
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
        if int(workers) < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.workers = int(workers)
        if not members:
            raise ValueError("need at least one member")
        inv = members[0].invariants
        for m in members[1:]:
            if (m.invariants.symmetry, m.invariants.dim, m.invariants.fibre) != (
                inv.symmetry, inv.dim, inv.fibre
            ):
                raise ValueError("all members must share dim, symmetry and fibre")
        self.inv = inv
        self.dtype = dtype
        self.chunk = int(chunk)
        with torch.no_grad():
            self.params = _StackedParams(members, dtype)
        self.a = None if inv.fibre is None else torch.tensor(inv.fibre, dtype=dtype)
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
            Pc, Ac, vc, Jc = self._run(Fc.contiguous())
            m = stop - start
            bad = ~(Jc[:m] > 0) | ~torch.isfinite(Jc[:m])  # also catches NaN and inf entries of F
            if bad.any():
                i = start + int(bad.nonzero()[0])
                raise InvalidInput(
                    f"F must be finite with det F > 0, got det F = {Jc[i - start].item():.6g} "
                    f"at point {i}"
                )
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

    def _chunk(self, F: Tensor):
        k, n = F.shape[0], F.shape[-1]
        sym = self.inv.symmetry
        extra = 3.0 - k
        eye = self.eye
        C = _mm(F.transpose(0, 1), F)
        trC = C.diagonal(0, 0, 1).sum(-1)
        I1 = trC + extra
        I2 = 0.5 * (I1 * I1 - (C * C).sum((0, 1)) - extra)
        cof = _cof(F)
        J = (F[0] * cof[0]).sum(0)
        FiT = cof / J
        FC = _mm(F, C)
        vals = [I1, I2, J]
        dI = [2.0 * F, 2.0 * (I1 * F - FC), cof]
        if sym == "transverse":
            a = self.a
            Ca = (C * a[None, :, None]).sum(1)  # k x n
            Fa = (F * a[None, :, None]).sum(1)
            FCa = (F * Ca[None, :, :]).sum(1)
            vals += [(a[:, None] * Ca).sum(0), (Ca * Ca).sum(0)]
            dI += [2.0 * Fa[:, None, :] * a[None, :, None],
                   2.0 * (Fa[:, None, :] * Ca[None, :, :] + FCa[:, None, :] * a[None, :, None])]
        elif sym == "cubic":
            d = C.diagonal(0, 0, 1).T  # k x n
            vals += [(d * d).sum(0) + extra, (d * d * d).sum(0) + extra]
            dI += [4.0 * F * d[None], 6.0 * F * (d * d)[None]]
        I = torch.stack(vals)
        dI = torch.stack(dI)  # p x k x k x n
        p = I.shape[0]
        gs, Hs = self.params.derivs(I)
        g, H = gs.mean(0), Hs.mean(0)
        dIf = dI.reshape(p, k * k, n)
        P = g[0, None, :] * dIf[0]
        for ai in range(1, p):
            P.addcmul_(g[ai, None, :], dIf[ai])
        P = P.reshape(k, k, n)
        var = None
        if self.variance_scale is not None:
            Pm = (gs[:, :, None, :] * dIf[None]).sum(1)  # M x k^2 x n
            var = (Pm.var(0, unbiased=True) * self.variance_scale[:, None]).mean(0)
            var = var + self.variance_floor
        # Q_a = sum_b H_ab dI_b, with the rank-one parts of the invariant Hessians merged in
        Q = H[:, 0, None, :] * dIf[0][None]
        for b in range(1, p):
            Q.addcmul_(H[:, b, None, :], dIf[b][None])
        Q = Q.reshape(p, k, k, n)
        g2, gJ = g[1], g[2]
        Q[0] += (2.0 * g2) * F
        Q[2] += gJ * FiT
        A = torch.empty(k, k, k, k, n, dtype=F.dtype)
        torch.mul(dI[0][:, :, None, None], Q[0][None, None], out=A)
        for i in range(1, p):
            A.addcmul_(dI[i][:, :, None, None], Q[i][None, None])
        # "swapped" terms X_iL Y_kJ, built in (i, L, k, J) order
        Tsw = torch.mul(F[:, :, None, None], (-2.0 * g2) * F[None, None])
        Tsw.addcmul_(cof[:, :, None, None], (-gJ) * FiT[None, None])
        # delta_ik S_JL and delta_JL D_ik parts
        S = (2.0 * g[0] + 2.0 * g2 * I1) * eye[:, :, None] - (2.0 * g2) * C
        D = (-2.0 * g2) * _mm(F, F.transpose(0, 1))
        if sym == "transverse":
            g4, g5 = g[3], g[4]
            aa = a[:, None] * a[None, :]
            S = S + (2.0 * g4) * aa[:, :, None] + (2.0 * g5) * (
                a[:, None, None] * Ca[None] + Ca[:, None] * a[None, :, None]
            )
            D = D + (2.0 * g5) * Fa[:, None] * Fa[None]
            b = _mm(F, F.transpose(0, 1))
            A.addcmul_(((2.0 * g5) * b)[:, None, :, None], aa[None, :, None, :, None])
            V = (2.0 * g5) * Fa[:, None, :] * a[None, :, None]  # V_iL = 2 g5 (Fa)_i a_L
            Tsw.addcmul_(V[:, :, None, None], F[None, None])
            Tsw.addcmul_(F[:, :, None, None], V[None, None])
        elif sym == "cubic":
            d = C.diagonal(0, 0, 1).T
            S = S + torch.diag_embed((4.0 * g[3] * d + 6.0 * g[4] * d * d).T, dim1=0, dim2=1)
            w = 8.0 * g[3] + 24.0 * g[4] * d  # k x n
            for Jx in range(k):
                A[:, Jx, :, Jx] += (w[Jx] * F[:, Jx])[:, None] * F[None, :, Jx]
        A += Tsw.permute(0, 3, 2, 1, 4)
        for i in range(k):
            A[i, :, i, :] += S
            A[:, i, :, i] += D
        return P, A, var, J
