r"""Fourier-Galerkin (projection) FFT homogenization, solved by Newton-Krylov.

The unknown is a gradient field on a periodic voxel grid: the strain ``eps``
(small strain) or the deformation gradient ``F`` (finite strain). Its mean is
fixed by the macro load; its fluctuation lives in the space of compatible
(curl-free, zero-mean) fields, onto which the projection ``G`` maps.
Equilibrium is ``G(P(F)) = 0`` (Zeman et al. 2010; de Geus et al. 2017,
"Finite strain FFT-based non-linear solvers made simple", CMAME 318).
Newton linearizes it; each linear system ``G(K : dF) = -G(P)`` is solved by
conjugate gradients on the compatible subspace, where ``G K`` is symmetric.

Discretization and storage choices:

* ``G`` is applied as ``irfftn(Ghat * rfftn(.))`` with real FFTs. In Fourier
  space it needs only the unit wave vector ``n = xi / |xi|`` per frequency:
  finite strain ``(G A)_ij = (A n)_i n_j``; small strain (symmetric fields)
  ``G A = n (x) An + An (x) n - (n.A.n) n (x) n``. So the operator costs
  ``k`` numbers per half-spectrum frequency instead of a ``k^4`` tensor.
* Small-strain fields are stored as Mandel vectors (``k(k+1)/2`` components,
  shear scaled by ``sqrt 2`` so the Euclidean inner product is the tensor
  one): 6 FFTs per application in 3D instead of 9.
* For isotropic linear phases the tangent is two scalar fields
  (``lambda``, ``mu``); otherwise a per-voxel ``m x m`` matrix.
* The Nyquist frequency of an even axis is dropped (its projection set to 0),
  as usual for Fourier-Galerkin on even grids; odd grids avoid the issue.

Linear laws need no Newton loop: the fluctuations of the ``m`` unit macro
loads are solved at once (a batched CG over ``m`` right-hand sides), which
gives the exact effective tensor, and every macro strain's stress and field
follow by superposition. The consistent tangent of a nonlinear solve comes
from the converged linearization, one batched linear solve per macro
component: ``dP/dF_bar : E_J = <K : (E_J + dF_J)>`` with
``G(K : dF_J) = -G(K : E_J)``.

Field layout inside the solver: ``L x B x m x *grid`` (loads, right-hand
sides per load, components, voxels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.fft
import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, NotConverged
from oracles.rve.laws import FiniteStrainLaw, IsotropicElastic, SmallStrainLaw

DTYPE = torch.float64

__all__ = ["FFTSolver", "HomogenizationResult", "batched_cg", "mandel_basis"]


# --------------------------------------------------------------- component bases
def mandel_basis(k: int) -> tuple[list[tuple[int, int]], list[float]]:
    """Mandel components ``(i, j)`` and their weights for ``k = 2, 3``.

    Order: 2D ``11, 22, 12``; 3D ``11, 22, 33, 23, 13, 12`` (Voigt order).
    """
    if k == 2:
        idx = [(0, 0), (1, 1), (0, 1)]
    elif k == 3:
        idx = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    else:
        raise InvalidInput(f"dimension must be 2 or 3, got {k}")
    return idx, [1.0 if i == j else math.sqrt(2.0) for i, j in idx]


class _Basis:
    """Maps ``k x k`` tensors to ``m`` component vectors and back."""

    def __init__(self, kind: str, k: int):
        self.kind, self.k = kind, k
        if kind == "small":
            idx, w = mandel_basis(k)
        else:
            idx, w = [(i, j) for i in range(k) for j in range(k)], [1.0] * (k * k)
        self.idx, self.w = idx, w
        self.m = len(idx)
        self.ii = torch.tensor([i for i, _ in idx])
        self.jj = torch.tensor([j for _, j in idx])
        self.wt = torch.tensor(w, dtype=DTYPE)

    def vec(self, A: Tensor) -> Tensor:
        """``... x k x k`` -> ``... x m`` (symmetric part for Mandel)."""
        if self.kind == "finite":
            return A.reshape(*A.shape[:-2], self.m)
        As = 0.5 * (A + A.transpose(-1, -2))
        return As[..., self.ii, self.jj] * self.wt.to(A)

    def ten(self, v: Tensor) -> Tensor:
        """``... x m`` -> ``... x k x k``."""
        k = self.k
        if self.kind == "finite":
            return v.reshape(*v.shape[:-1], k, k)
        A = v.new_zeros(*v.shape[:-1], k, k)
        s = v / self.wt.to(v)
        A[..., self.ii, self.jj] = s
        A[..., self.jj, self.ii] = s
        return A

    def mat(self, C: Tensor) -> Tensor:
        """Tangent ``... x k x k x k x k`` -> ``... x m x m``."""
        if self.kind == "finite":
            return C.reshape(*C.shape[:-4], self.m, self.m)
        ii, jj, w = self.ii, self.jj, self.wt.to(C)
        M = C[..., ii[:, None], jj[:, None], ii[None, :], jj[None, :]]
        return M * (w[:, None] * w[None, :])

    def ten4(self, M: Tensor) -> Tensor:
        """``... x m x m`` -> ``... x k x k x k x k`` (minor-symmetric for Mandel)."""
        k = self.k
        if self.kind == "finite":
            return M.reshape(*M.shape[:-2], k, k, k, k)
        w = self.wt.to(M)
        Ms = M / (w[:, None] * w[None, :])
        C = M.new_zeros(*M.shape[:-2], k, k, k, k)
        for I, (a, b) in enumerate(self.idx):
            for J, (c, d) in enumerate(self.idx):
                v = Ms[..., I, J]
                for p, q in {(a, b), (b, a)}:
                    for r, s in {(c, d), (d, c)}:
                        C[..., p, q, r, s] = v
        return C


# ------------------------------------------------------------------- projection
class _Projection:
    """The compatibility projection ``G`` on a periodic grid, via real FFTs."""

    def __init__(self, shape: tuple[int, ...], basis: _Basis, device, dtype):
        self.shape, self.basis, self.k = shape, basis, len(shape)
        d = self.k
        self.dims = tuple(range(-d, 0))
        freqs = []
        for a, n in enumerate(shape):
            f = torch.fft.rfftfreq(n, 1.0 / n) if a == d - 1 else torch.fft.fftfreq(n, 1.0 / n)
            f = f.to(dtype)
            if n % 2 == 0:  # drop the Nyquist mode of an even axis
                f[f.abs() == n // 2] = float("nan")
            freqs.append(f)
        grids = torch.meshgrid(*freqs, indexing="ij")
        xi = torch.stack(grids)  # k x *half
        nrm = xi.norm(dim=0)
        nvec = xi / nrm
        # zero frequency (mean, fixed by the macro load) and Nyquist: G = 0
        nvec = torch.nan_to_num(nvec, nan=0.0, posinf=0.0, neginf=0.0)
        nvec[:, nrm == 0] = 0.0
        # stored complex (imaginary part 0): a complex x real product would
        # first convert the real factor, doubling the cost of every pass
        cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.n = nvec.to(device=device, dtype=cdt)  # k x *half
        if basis.kind == "small":
            self.n2 = 2.0 * self.n
            self.ns = math.sqrt(2.0) * self.n

    def fourier(self, xh: Tensor) -> Tensor:
        """Apply ``Ghat`` to ``... x m x *half`` complex coefficients."""
        k, n = self.k, self.n
        ax = -k - 1
        out = torch.empty_like(xh)
        if self.basis.kind == "finite":
            # (G A)_ij = (A n)_i n_j
            for i in range(k):
                vi = torch.mul(xh.select(ax, i * k), n[0])
                for j in range(1, k):
                    vi.addcmul_(xh.select(ax, i * k + j), n[j])
                for j in range(k):
                    torch.mul(vi, n[j], out=out.select(ax, i * k + j))
            return out
        # small strain, Mandel components: G A = sym(n (x) u) with
        # u = 2 A n - (n.A.n) n; fused multiply-adds with scalar weights keep
        # the number of passes over the spectrum (and temporaries) low
        idx = self.basis.idx
        comp = {}
        for I, (i, j) in enumerate(idx):
            comp[(i, j)] = comp[(j, i)] = xh.select(ax, I)
        r2 = 1.0 / math.sqrt(2.0)
        u = []
        for i in range(k):
            ui = torch.mul(comp[(i, i)], n[i])
            for j in range(k):
                if j != i:
                    ui.addcmul_(comp[(i, j)], n[j], value=r2)  # A_ij = a_ij / sqrt 2
            u.append(ui)  # (A n)_i
        s = u[0] * n[0]
        for i in range(1, k):
            s.addcmul_(u[i], n[i])
        for i in range(k):
            u[i].addcmul_(s, n[i], value=-0.5)  # u / 2
        for I, (i, j) in enumerate(idx):
            o = out.select(ax, I)
            if i == j:
                torch.mul(u[i], self.n2[i], out=o)
            else:
                torch.mul(u[j], self.ns[i], out=o)
                o.addcmul_(u[i], n[j], value=math.sqrt(2.0))
        return out

    def __call__(self, x: Tensor) -> Tensor:
        """``G x`` for real fields ``... x m x *grid``."""
        if x.device.type == "cpu" and not x.requires_grad:
            # on the CPU scipy's pocketfft is 10-30 % faster than torch's FFT
            # for these odd sizes (measured); the arrays are shared, not copied
            workers = torch.get_num_threads()
            xh = torch.from_numpy(scipy.fft.rfftn(x.contiguous().numpy(), axes=self.dims, workers=workers))
            y = self.fourier(xh).numpy()
            return torch.from_numpy(
                scipy.fft.irfftn(y, s=self.shape, axes=self.dims, workers=workers, overwrite_x=True)
            )
        xh = torch.fft.rfftn(x, dim=self.dims)
        return torch.fft.irfftn(self.fourier(xh), s=self.shape, dim=self.dims)


# -------------------------------------------------------------------- tangents
class _IsoTangent:
    """Isotropic linear tangent on Mandel fields: ``2 mu x + lambda tr(x) 1``."""

    def __init__(self, lam: Tensor, mu2: Tensor, k: int):
        self.lam, self.mu2, self.k = lam, mu2, k

    def __call__(self, x: Tensor) -> Tensor:
        k = self.k
        d = x.dim() - k - 1  # index of the component axis
        tr = x.narrow(d, 0, k).sum(d, keepdim=True)
        y = x * self.mu2
        y.narrow(d, 0, k).addcmul_(tr, self.lam)
        return y


class _DenseTangent:
    """Per-voxel tangent ``L x m x m x *grid`` applied to ``L x B x m x *grid``."""

    def __init__(self, K: Tensor):
        self.K = K

    def __call__(self, x: Tensor) -> Tensor:
        K = self.K
        m = K.shape[1]
        y = K[:, None, :, 0] * x[:, :, 0:1]
        for j in range(1, m):
            y.addcmul_(K[:, None, :, j], x[:, :, j : j + 1])
        return y


# -------------------------------------------------------------------------- CG
def batched_cg(
    apply_A,
    b: Tensor,
    tol: float,
    maxiter: int,
    ndim_field: int,
    atol: Tensor | float = 0.0,
) -> tuple[Tensor, int, Tensor]:
    """Conjugate gradients on a batch of independent systems ``A x = b``.

    Args:
        apply_A: symmetric positive (semi-)definite operator on fields
            ``*batch x *field``.
        b: ``*batch x *field`` right-hand sides.
        tol: relative tolerance, ``||r|| <= tol ||b||`` for every system.
        maxiter: iteration limit.
        ndim_field: number of trailing dims that make one field.
        atol: ``*batch`` (or scalar) absolute floor of the residual norm; an
            inexact Newton needs no more than its own tolerance.

    Returns:
        ``(x, iterations, relative residuals *batch)``.

    Raises:
        NotConverged: when some system misses the tolerance in ``maxiter``.
    """
    bshape = b.shape[: b.dim() - ndim_field]
    nb = int(np.prod(bshape)) if len(bshape) else 1
    ex = (...,) + (None,) * ndim_field

    def dot(u, v):
        # batched dot products through BLAS: no temporary field
        u2, v2 = u.reshape(nb, 1, -1), v.reshape(nb, -1, 1)
        return torch.bmm(u2, v2).reshape(bshape)

    bn = dot(b, b).sqrt()
    thresh = torch.maximum(tol * bn, torch.as_tensor(atol, dtype=bn.dtype, device=bn.device)) ** 2
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
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
        Ap = apply_A(p)
        pAp = dot(p, Ap)
        alpha = torch.where(active, rr / torch.where(active, pAp, torch.ones_like(pAp)), 0.0)
        x.addcmul_(alpha[ex], p)
        r.addcmul_(alpha[ex], Ap, value=-1.0)
        del Ap
        rr_new = dot(r, r)
        beta = torch.where(active, rr_new / torch.where(active, rr, torch.ones_like(rr)), 0.0)
        p.mul_(beta[ex]).add_(r)
        rr = rr_new
        it += 1
    rel = rr.sqrt() / bn.clamp_min(1e-300)
    return x, it, rel.reshape(bshape)


# ---------------------------------------------------------------------- result
@dataclass
class HomogenizationResult:
    """Answer of :meth:`FFTSolver.homogenize` for ``L`` macro loads.

    Attributes:
        stress: ``L x k x k`` mean stress (Cauchy for small strain, first
            Piola-Kirchhoff for finite strain).
        tangent: ``L x k x k x k x k`` consistent homogenized tangent
            (``d stress_iJ / d load_kL``), or None when not requested.
        newton_iterations: Newton iterations (0 for linear laws: no Newton).
        cg_iterations: CG iterations, summed over Newton steps and the tangent solve.
        residual: ``L`` final relative equilibrium residual ``||G P|| / ||P||``.
        fields: with ``fields=True``, ``{"strain" or "F": L x *grid x k x k,
            "stress" or "P": L x *grid x k x k}``.
        info: further details (CG iterations per solve, step norms).
    """

    stress: Tensor
    tangent: Tensor | None
    newton_iterations: int
    cg_iterations: int
    residual: Tensor
    fields: dict[str, Tensor] | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- solver
def _as_phase_map(phase_map, n_phases: int) -> Tensor:
    if isinstance(phase_map, Tensor):
        pm = phase_map.detach().cpu()
    else:
        try:
            pm = torch.as_tensor(np.asarray(phase_map))
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"phase map must be an integer array, got {phase_map!r}") from e
    if pm.dim() not in (2, 3):
        raise InvalidInput(f"phase map must be 2D or 3D, got shape {tuple(pm.shape)}")
    if pm.is_floating_point():
        if not torch.equal(pm, pm.round()):
            raise InvalidInput("phase map must hold integer phase ids, got non-integer values")
    elif pm.dtype == torch.bool or pm.is_complex():
        raise InvalidInput(f"phase map must hold integer phase ids, got dtype {pm.dtype}")
    pm = pm.to(torch.int64)
    bad = (pm < 0) | (pm >= n_phases)
    if bad.any():
        vals = sorted(set(pm[bad].tolist()))[:5]
        raise InvalidInput(
            f"phase map holds unknown phase ids {vals}; expected ids in [0, {n_phases - 1}] "
            f"(one law per phase)"
        )
    if min(pm.shape) < 1:
        raise InvalidInput(f"phase map must not be empty, got shape {tuple(pm.shape)}")
    return pm


class FFTSolver:
    """Periodic RVE homogenization by Fourier-Galerkin projection and Newton-CG.

    Args:
        phase_map: ``*grid`` integer array (2D or 3D), the phase id per voxel.
        phases: one law per phase id; all small-strain
            (:class:`~oracles.rve.laws.SmallStrainLaw`) or all finite-strain
            (:class:`~oracles.rve.laws.FiniteStrainLaw`).
        cg_tol: relative CG tolerance per linear solve.
        cg_maxiter: CG iteration limit per solve.
        newton_tol: relative equilibrium tolerance ``||G P|| / ||P||``.
        newton_maxiter: Newton iteration limit.
        device, dtype: where and in which precision to compute.

    Example:
        >>> from oracles.rve.laws import IsotropicElastic
        >>> pm = np.zeros((15, 15), dtype=int); pm[5:10, 5:10] = 1
        >>> s = FFTSolver(pm, [IsotropicElastic(1.0, 0.3), IsotropicElastic(10.0, 0.3)])
        >>> res = s.homogenize(torch.tensor([[[0.01, 0.0], [0.0, 0.0]]]))
        >>> res.tangent.shape
        torch.Size([1, 2, 2, 2, 2])
    """

    def __init__(
        self,
        phase_map,
        phases,
        *,
        cg_tol: float = 1e-8,
        cg_maxiter: int = 1000,
        newton_tol: float = 1e-8,
        newton_maxiter: int = 30,
        device: str | torch.device | None = None,
        dtype: torch.dtype = DTYPE,
    ):
        phases = list(phases)
        if not phases:
            raise InvalidInput("phases must hold at least one law, got an empty list")
        kinds = set()
        for i, law in enumerate(phases):
            if isinstance(law, SmallStrainLaw):
                kinds.add("small")
            elif isinstance(law, FiniteStrainLaw):
                kinds.add("finite")
            else:
                raise InvalidInput(
                    f"phase {i} must be a SmallStrainLaw or FiniteStrainLaw, got {law!r}"
                )
        if len(kinds) != 1:
            raise InvalidInput(
                f"phases mix small- and finite-strain laws: {[repr(p) for p in phases]}"
            )
        for name, v in (("cg_tol", cg_tol), ("newton_tol", newton_tol)):
            if not (isinstance(v, (int, float)) and 0 < v < 1):
                raise InvalidInput(f"{name} must lie in (0, 1), got {v!r}")
        for name, v in (("cg_maxiter", cg_maxiter), ("newton_maxiter", newton_maxiter)):
            if not (isinstance(v, int) and v >= 1):
                raise InvalidInput(f"{name} must be a positive integer, got {v!r}")
        self.kind = kinds.pop()
        self.phases = phases
        self.phase_map = _as_phase_map(phase_map, len(phases))
        self.shape = tuple(self.phase_map.shape)
        self.k = len(self.shape)
        self.cg_tol, self.cg_maxiter = float(cg_tol), cg_maxiter
        self.newton_tol, self.newton_maxiter = float(newton_tol), newton_maxiter
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.dtype = dtype
        self.basis = _Basis(self.kind, self.k)
        self.m = self.basis.m
        self.G = _Projection(self.shape, self.basis, self.device, dtype)
        self.linear = all(getattr(p, "linear", False) for p in phases)
        flat = self.phase_map.reshape(-1)
        self._voxels = [(flat == p).nonzero().flatten().to(self.device) for p in range(len(phases))]
        self._pm_dev = self.phase_map.to(self.device)
        self._lin_tangent = None  # built lazily for linear laws
        #: largest CG field (doubles) of a batched tangent solve; more RHS are chunked
        self.max_field_doubles = 2**18
        self._unit_cache: tuple | None = None

    # --------------------------------------------------------------- helpers
    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def _mean(self, x: Tensor) -> Tensor:
        return x.mean(dim=tuple(range(-self.k, 0)))

    def _norm(self, x: Tensor) -> Tensor:
        return x.square().sum(dim=tuple(range(-self.k - 1, 0))).sqrt()

    def _bcast(self, v: Tensor) -> Tensor:
        """``... x m`` -> ``... x m x 1 ... 1`` for broadcasting over the grid."""
        return v.reshape(*v.shape, *([1] * self.k))

    def _linear_tangent(self):
        if self._lin_tangent is None:
            k, pm = self.k, self._pm_dev
            if self.kind == "small" and all(type(p) is IsotropicElastic for p in self.phases):
                lam = torch.tensor(
                    [p.lam for p in self.phases], dtype=self.dtype, device=self.device
                )
                mu = torch.tensor([p.mu for p in self.phases], dtype=self.dtype, device=self.device)
                self._lin_tangent = _IsoTangent(lam[pm], 2.0 * mu[pm], k)
            else:
                Cm = torch.stack(
                    [self.basis.mat(p.stiffness(k, self.dtype, self.device)) for p in self.phases]
                )  # P x m x m
                K = Cm[pm]  # *grid x m x m
                K = K.permute(*range(k, k + 2), *range(k)).unsqueeze(0)
                self._lin_tangent = _DenseTangent(K.contiguous())
        return self._lin_tangent

    def _constitutive(self, X: Tensor, with_tangent: bool = True) -> tuple[Tensor, Tensor | None]:
        """Stress ``L x m x *grid`` and tangent ``L x m x m x *grid`` at fields ``L x m x *grid``."""
        k, m, L = self.k, self.m, X.shape[0]
        N = self.n_voxels
        Xv = X.reshape(L, m, N).transpose(1, 2)  # L x N x m
        T = self.basis.ten(Xv)  # L x N x k x k
        S = torch.empty_like(Xv)
        Kt = Xv.new_empty(L, N, m, m) if with_tangent else None
        for p, law in enumerate(self.phases):
            vox = self._voxels[p]
            if vox.numel() == 0:
                continue
            Tp = T[:, vox].reshape(-1, k, k)
            s, c = law.stress_tangent(Tp)
            S[:, vox] = self.basis.vec(s).reshape(L, -1, m)
            if with_tangent:
                Kt[:, vox] = self.basis.mat(c).reshape(L, -1, m, m)
        S = S.transpose(1, 2).reshape(L, m, *self.shape)
        if with_tangent:
            Kt = Kt.permute(0, 2, 3, 1).reshape(L, m, m, *self.shape)
        return S, Kt

    def _cg(self, Kop, b: Tensor, atol: Tensor | float = 0.0) -> tuple[Tensor, int, Tensor]:
        def apply_A(x):
            return self.G(Kop(x))

        return batched_cg(apply_A, b, self.cg_tol, self.cg_maxiter, ndim_field=self.k + 1, atol=atol)

    def _unit(self) -> Tensor:
        return torch.eye(self.m, dtype=self.dtype, device=self.device)

    # ---------------------------------------------------------- validation
    def _check_loads(self, load) -> Tensor:
        name = "strain" if self.kind == "small" else "F"
        if not isinstance(load, Tensor):
            try:
                load = torch.as_tensor(load, dtype=self.dtype)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"macro {name} must be numeric, got {load!r}") from e
        load = load.to(self.dtype).to(self.device)
        if load.dim() == 2:
            load = load.unsqueeze(0)
        k = self.k
        if load.dim() != 3 or load.shape[-2:] != (k, k):
            raise InvalidInput(
                f"macro {name} must have shape L x {k} x {k} for this {k}D grid, got {tuple(load.shape)}"
            )
        if not torch.isfinite(load).all():
            raise InvalidInput(f"macro {name} must be finite, got {load.tolist()}")
        if self.kind == "small":
            asym = (load - load.transpose(-1, -2)).abs().amax()
            if asym > 1e-12 * max(1.0, load.abs().amax().item()):
                raise InvalidInput(f"macro strain must be symmetric, got {load.tolist()}")
        else:
            det = torch.linalg.det(load)
            if (det <= 0).any():
                i = int((det <= 0).nonzero()[0])
                raise InvalidInput(
                    f"macro F must have det F > 0, got det F = {det[i].item():.6g} for load {i} "
                    f"(F = {load[i].tolist()})"
                )
        return load

    # ------------------------------------------------------------- homogenize
    def homogenize(self, load, tangent: bool = True, fields: bool = False) -> HomogenizationResult:
        """Solve the RVE at ``L`` macro loads.

        Args:
            load: ``L x k x k`` (or ``k x k``) macro strain (small strain,
                symmetric) or deformation gradient (finite strain, ``det F > 0``).
            tangent: also return the consistent homogenized tangent.
            fields: also return the full strain/F and stress fields.

        Returns:
            A :class:`HomogenizationResult`.

        Raises:
            InvalidInput: bad shape, non-finite or (finite strain) ``det F <= 0``.
            NotConverged: CG or Newton missed its tolerance.
        """
        load = self._check_loads(load)
        if self.linear and self.kind == "small":
            return self._homogenize_linear(load, tangent, fields)
        return self._homogenize_newton(load, tangent, fields)

    def _unit_columns(self, Kop, L: int) -> tuple[Tensor, int, Tensor]:
        """Columns ``<K : (E_J + dX_J)>`` of the homogenized tangent (``L x m x m``).

        The ``m`` unit loads per macro load are solved as one batched CG, in
        chunks whose fields stay below ``max_field_doubles`` (memory bound on
        big grids, where batching no longer pays)."""
        m, N = self.m, self.n_voxels
        chunk = max(1, min(m, self.max_field_doubles // max(1, L * m * N)))
        eye = self._unit()
        cols, its, rels = [], [], []
        for J0 in range(0, m, chunk):
            J1 = min(m, J0 + chunk)
            E = self._bcast(eye[J0:J1]).unsqueeze(0).expand(L, J1 - J0, m, *self.shape)
            KE = Kop(E.contiguous())
            dX, it, rel = self._cg(Kop, -self.G(KE))
            KE.add_(Kop(dX))
            del dX
            cols.append(self._mean(KE))  # L x c x m
            its.append(it)
            rels.append(rel)
        C = torch.cat(cols, 1).transpose(1, 2)  # L x m x m, C[:, :, J]
        self._last_chunks = [
            (J1 - J0, it)
            for J0, J1, it in zip(
                range(0, m, chunk),
                [min(m, J + chunk) for J in range(0, m, chunk)],
                its,
                strict=True,
            )
        ]
        return C, int(sum(its)), torch.cat(rels, 1).amax(1)

    def effective_tensor(self) -> tuple[Tensor, int]:
        """Linear laws: the effective tensor ``m x m`` in the solver basis and the
        CG iterations it took (computed once, then cached)."""
        if not self.linear:
            raise InvalidInput("effective_tensor needs linear phase laws; use homogenize")
        if self._unit_cache is None:
            C, it, rel = self._unit_columns(self._linear_tangent(), 1)
            self._unit_cache = (C[0], it, rel[0], self._last_chunks)
        return self._unit_cache[0], self._unit_cache[1]

    def _homogenize_linear(self, load: Tensor, tangent: bool, fields: bool) -> HomogenizationResult:
        L, k, m = load.shape[0], self.k, self.m
        v = self.basis.vec(load)  # L x m
        Kop = self._linear_tangent()
        it_total, Cm, X = 0, None, None
        info: dict[str, Any] = {}
        if tangent or L >= m or self._unit_cache is not None:
            had = self._unit_cache is not None
            Cm, it = self.effective_tensor()
            it_total += 0 if had else it
            if not had:
                info["cg_chunks"] = self._unit_cache[3]
            stress_v = v @ Cm.T
        if fields or Cm is None:
            # solve the loads themselves (fields, or fewer loads than components)
            E = self._bcast(v).unsqueeze(1).expand(L, 1, m, *self.shape).contiguous()
            KE = Kop(E)
            dX, it, _ = self._cg(Kop, -self.G(KE))
            it_total += it
            info["cg_load_solve"] = it
            X = (E + dX)[:, 0]
            del E, KE, dX
            if Cm is None:
                stress_v = self._mean(Kop(X.unsqueeze(1)))[:, 0]
        out_fields = None
        if fields:
            S = Kop(X.unsqueeze(1))[:, 0]
            stress_v = self._mean(S)  # consistent with the returned fields
            out_fields = {
                "strain": self.basis.ten(X.movedim(1, -1)),
                "stress": self.basis.ten(S.movedim(1, -1)),
            }
        res = torch.zeros(L, dtype=self.dtype, device=self.device)
        if self._unit_cache is not None:
            res = res + self._unit_cache[2].max()
        C = None
        if tangent:
            C = self.basis.ten4(Cm).unsqueeze(0).expand(L, k, k, k, k).clone()
        return HomogenizationResult(
            stress=self.basis.ten(stress_v),
            tangent=C,
            newton_iterations=0,
            cg_iterations=int(it_total),
            residual=res,
            fields=out_fields,
            info=info,
        )

    def _homogenize_newton(self, load: Tensor, tangent: bool, fields: bool) -> HomogenizationResult:
        L, m = load.shape[0], self.m
        vbar = self.basis.vec(load)  # L x m
        X = self._bcast(vbar).expand(L, m, *self.shape).clone()
        cg_its, steps, res_hist = [], [], []
        newton_it, X_prev, step, halvings = 0, None, None, 0
        while True:
            try:
                S, Kt = self._constitutive(X)
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
            r = self.G(S)
            rel = self._norm(r) / self._norm(S).clamp_min(1e-300)
            rel = torch.where(self._norm(S) > 0, rel, torch.zeros_like(rel))
            res_hist.append(rel.max().item())
            if not torch.isfinite(rel).all():
                raise NotConverged(
                    f"Newton diverged (non-finite residual) at iteration {newton_it}",
                    iterations=newton_it,
                )
            if bool((rel <= self.newton_tol).all()):
                break
            if newton_it >= self.newton_maxiter:
                raise NotConverged(
                    f"Newton did not reach tol {self.newton_tol:g} in {self.newton_maxiter} "
                    f"iterations (relative residual {rel.max().item():.3g})",
                    iterations=newton_it,
                    residual=rel.max().item(),
                )
            Kop = _DenseTangent(Kt)
            # inexact Newton: late steps need no more accuracy than the
            # Newton tolerance itself (round-off would stall CG there)
            atol = (0.01 * self.newton_tol * self._norm(S)).unsqueeze(1)
            dX, it, _ = self._cg(Kop, -r.unsqueeze(1), atol=atol)
            X_prev, step = X, dX[:, 0]
            X = X + step
            cg_its.append(it)
            steps.append(
                (self._norm(dX[:, 0]) / self._norm(self._bcast(vbar).expand_as(X))).max().item()
            )
            newton_it += 1
        Cout = None
        info: dict[str, Any] = {}
        if tangent:
            Cm, it, _ = self._unit_columns(_DenseTangent(Kt), L)
            cg_its.append(it)
            info["cg_chunks"] = self._last_chunks
            Cout = self.basis.ten4(Cm)
        out_fields = None
        if fields:
            name = ("strain", "stress") if self.kind == "small" else ("F", "P")
            out_fields = {
                name[0]: self.basis.ten(X.movedim(1, -1)),
                name[1]: self.basis.ten(S.movedim(1, -1)),
            }
        return HomogenizationResult(
            stress=self.basis.ten(self._mean(S)),
            tangent=Cout,
            newton_iterations=newton_it,
            cg_iterations=int(sum(cg_its)),
            residual=rel,
            fields=out_fields,
            info={
                "cg_iterations_per_solve": cg_its,
                "newton_steps": steps,
                "residuals": res_hist,
                **info,
            },
        )
