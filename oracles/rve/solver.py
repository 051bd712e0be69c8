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

import functools
import importlib.machinery
import importlib.util
import math
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.fft
import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, NotConverged
from oracles.rve.laws import FiniteStrainLaw, IsotropicElastic, SmallStrainLaw

DTYPE = torch.float64

__all__ = ["FFTSolver", "HomogenizationResult", "IndefiniteOperator", "batched_cg", "mandel_basis"]


class IndefiniteOperator(NotConverged):
    """CG met a direction of non-positive curvature (``p^T A p <= 0``): the
    operator is not positive definite, so CG's answer would be meaningless.
    In Newton it means the linearization is indefinite on compatible fields."""


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
@functools.cache
def _fftw():
    """pyFFTW's compiled core (``FFTW``, ``empty_aligned``); None when absent.
    Loaded when this module is imported (3-4 ms and ~6 MB resident, once per
    process), as muSpectre loads its FFT library on import, rather than inside
    the first 2D solve, where it was a tenth of a 63^2 solve.

    Loaded directly: ``import pyfftw`` runs the package's ``__init__``, which
    imports its numpy/scipy/dask interfaces (about 2 s with dask installed);
    the core extension alone loads in about 10 ms.
    """
    try:
        spec = importlib.util.find_spec("pyfftw")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    if "pyfftw.pyfftw" in sys.modules:
        return sys.modules["pyfftw.pyfftw"]
    for d in spec.submodule_search_locations:
        for f in sorted(Path(d).glob("pyfftw.*.so")) + sorted(Path(d).glob("pyfftw.*.pyd")):
            try:
                loader = importlib.machinery.ExtensionFileLoader("pyfftw.pyfftw", str(f))
                mspec = importlib.util.spec_from_file_location("pyfftw.pyfftw", f, loader=loader)
                mod = importlib.util.module_from_spec(mspec)
                loader.exec_module(mod)
            except Exception:  # a broken install: use scipy's FFT
                return None
            return mod
    return None


_fftw()


def _fft_backend(fft: str, dtype) -> tuple[str, str]:
    """``(backend, FFTW planner flag)`` for the CPU FFTs of a grid.

    ``"auto"``: FFTW (pyFFTW, ``FFTW_ESTIMATE``: no planning time), whose
    plans of one or a few fields (see :meth:`_Projection._chunk`) measured
    0.4-0.9x pocketfft's time per transform pair on 2D grids (63^2-729^2)
    and 0.75-0.9x on 3D grids (27^3-63^3, per field, against pocketfft on
    the 6 components at once; measured plans cost seconds to make). Falls
    back to scipy when pyFFTW is absent or the dtype is not float64.
    """
    choices = ("auto", "scipy", "fftw", "fftw-measure")
    if fft not in choices:
        raise InvalidInput(f"fft must be one of {choices}, got {fft!r}")
    if fft == "scipy":
        return "scipy", ""
    if dtype != torch.float64 or _fftw() is None:
        return "scipy", ""
    return "fftw", "FFTW_MEASURE" if fft == "fftw-measure" else "FFTW_ESTIMATE"


class _Projection:
    """The compatibility projection ``G`` on a periodic grid, via real FFTs."""

    def __init__(self, shape: tuple[int, ...], basis: _Basis, device, dtype, fft: str = "auto"):
        self.shape, self.basis, self.k = shape, basis, len(shape)
        self.backend, self.fftw_flag = _fft_backend(fft, dtype)
        self._local = threading.local()
        d = self.k
        self.dims = tuple(range(-d, 0))
        self.half = (*shape[:-1], shape[-1] // 2 + 1)  # real-FFT spectrum
        self.n_voxels = math.prod(shape)
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

    def fourier(self, xh: Tensor, coef: float | None = None, out: Tensor | None = None) -> Tensor:
        """Apply ``Ghat`` (or a reference Green operator) to ``... x m x *half``
        complex coefficients.

        ``coef`` selects the isotropic reference medium whose Green operator
        ``Gamma0`` is applied (see :class:`_Reference`): with ``t = A n`` and
        ``u = t + coef (n.t) n``, finite strain ``Gamma0 A = u (x) n``, small
        strain ``Gamma0 A = n (x) u + u (x) n``. ``coef = None`` is the
        projection ``G`` itself (``coef = 0`` finite, ``-1/2`` small).
        """
        k, n = self.k, self.n
        ax = -k - 1
        if out is None:
            out = torch.empty_like(xh)
        if self.basis.kind == "finite":
            # (G A)_ij = (A n)_i n_j
            u = []
            for i in range(k):
                vi = torch.mul(xh.select(ax, i * k), n[0])
                for j in range(1, k):
                    vi.addcmul_(xh.select(ax, i * k + j), n[j])
                u.append(vi)
            if coef:
                s = u[0] * n[0]
                for i in range(1, k):
                    s.addcmul_(u[i], n[i])
                for i in range(k):
                    u[i].addcmul_(s, n[i], value=coef)
            for i in range(k):
                for j in range(k):
                    torch.mul(u[i], n[j], out=out.select(ax, i * k + j))
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
        c = -0.5 if coef is None else coef
        for i in range(k):
            u[i].addcmul_(s, n[i], value=c)  # u / 2 for G
        for I, (i, j) in enumerate(idx):
            o = out.select(ax, I)
            if i == j:
                torch.mul(u[i], self.n2[i], out=o)
            else:
                torch.mul(u[j], self.ns[i], out=o)
                o.addcmul_(u[i], n[j], value=math.sqrt(2.0))
        return out

    def __call__(self, x: Tensor, coef: float | None = None) -> Tensor:
        """``G x`` (or ``Gamma0 x``, see :meth:`fourier`) for real fields ``... x m x *grid``."""
        return self.apply(x, (coef,))[0]

    def apply(self, x: Tensor, coefs: tuple) -> tuple[Tensor, ...]:
        """Several Fourier multipliers of one field, sharing its forward FFT."""
        if x.device.type == "cpu" and not x.requires_grad:
            if self.backend == "fftw":
                return self._apply_fftw(x, coefs)
            # scipy's pocketfft is 10-30 % faster than torch's FFT for these
            # odd sizes (measured); the arrays are shared, not copied
            workers = torch.get_num_threads()
            xh = torch.from_numpy(scipy.fft.rfftn(x.contiguous().numpy(), axes=self.dims, workers=workers))
            outs = []
            for i, c in enumerate(coefs):
                y = self.fourier(xh, c, out=xh if i == len(coefs) - 1 else None).numpy()
                outs.append(
                    torch.from_numpy(
                        scipy.fft.irfftn(y, s=self.shape, axes=self.dims, workers=workers, overwrite_x=True)
                    )
                )
            return tuple(outs)
        xh = torch.fft.rfftn(x, dim=self.dims)
        return tuple(torch.fft.irfftn(self.fourier(xh, c), s=self.shape, dim=self.dims) for c in coefs)

    # FFTW through pyFFTW: plans made once per chunk shape (and thread) and
    # reused by every CG iteration. A plan transforms a chunk of ``c`` fields
    # and is executed on each chunk of the batch in turn (new-array execution,
    # hence FFTW_UNALIGNED: chunks start at any offset). FFTW_ESTIMATE's plans
    # for many fields at once were measured 10-30 % slower per field than
    # those for a few (1 thread: 63^2, 53.6 us with 9 fields vs 40.9 us with
    # 3; 243^2, 962 vs 875 us with 1; 729^2, 10.7 ms vs 9.5 ms with 1), while
    # each extra execution costs ~8 us, so small grids take the m components
    # of a field per chunk and large grids one component.
    def _chunk(self, m: int) -> int:
        c = max(1, min(m, 16384 // self.n_voxels))
        while m % c:
            c -= 1
        return c

    def _plans(self, c: int):
        cache = self._local.__dict__.setdefault("plans", {})
        threads = torch.get_num_threads()
        key = (c, threads)
        if key not in cache:
            pyfftw = _fftw()
            a = pyfftw.empty_aligned((c, *self.shape), dtype="float64")
            b = pyfftw.empty_aligned((c, *self.half), dtype="complex128")
            flags = (self.fftw_flag, "FFTW_UNALIGNED")
            fw = pyfftw.FFTW(a, b, axes=self.dims, flags=flags, threads=threads)
            bw = pyfftw.FFTW(
                b, a, axes=self.dims, direction="FFTW_BACKWARD", flags=(*flags, "FFTW_DESTROY_INPUT"), threads=threads
            )
            cache[key] = (fw, bw, a, b)
        return cache[key]

    def _apply_fftw(self, x: Tensor, coefs: tuple) -> tuple[Tensor, ...]:
        x = x.contiguous()
        c = self._chunk(x.shape[-self.k - 1] if x.dim() > self.k else 1)
        fw, bw, a, b = self._plans(c)
        n_chunks = x.numel() // (c * self.n_voxels)
        xh = torch.empty((*x.shape[: -self.k], *self.half), dtype=torch.complex128)
        xs = x.numpy().reshape(n_chunks, c, *self.shape)
        hs = xh.numpy().reshape(n_chunks, c, *self.half)
        for j in range(n_chunks):
            fw.update_arrays(xs[j], hs[j])
            fw.execute()
        xh.mul_(1.0 / self.n_voxels)  # FFTW's backward transform is unnormalized
        outs = []
        for i, coef in enumerate(coefs):
            # c2r destroys its input: y is xh itself (last) or a temporary
            y = self.fourier(xh, coef, out=xh if i == len(coefs) - 1 else None)
            res = torch.empty(x.shape, dtype=torch.float64)
            ys = y.numpy().reshape(n_chunks, c, *self.half)
            rs = res.numpy().reshape(n_chunks, c, *self.shape)
            for j in range(n_chunks):
                bw.update_arrays(ys[j], rs[j])
                bw.execute()
            outs.append(res)
        # back to the plans' own chunk buffers: they must not keep this
        # call's fields alive until the next call
        fw.update_arrays(a, b)
        bw.update_arrays(b, a)
        return tuple(outs)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_local"] = None  # FFTW plans are not picklable; remade on demand
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._local = threading.local()


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
        # component-major storage: the phase laws return K voxel-major (strides
        # m^2, m, 1 over the components), whose K[:, :, j] slices then jump m^2
        # doubles per voxel: 6x slower per application (13.8 vs 2.2 ms, 31^3, m = 9)
        # than the one copy made here per linearization
        self.K = K.contiguous()

    def __call__(self, x: Tensor) -> Tensor:
        K = self.K
        m = K.shape[1]
        y = K[:, None, :, 0] * x[:, :, 0:1]
        for j in range(1, m):
            y.addcmul_(K[:, None, :, j], x[:, :, j : j + 1])
        return y


def _bmm(a: Tensor, b: Tensor) -> Tensor:
    """Batched matrix product; numpy's matmul on the CPU: torch's ``bmm`` on the
    ``nb x 1 x n`` by ``nb x n x 1`` shapes of CG's dot products measured 5x
    slower (53 us vs 10 us for 3 fields of 3 x 63^2 doubles)."""
    if a.device.type == "cpu" and not (a.requires_grad or b.requires_grad):
        return torch.from_numpy(np.matmul(a.numpy(), b.numpy()))
    return torch.bmm(a, b)


def _bdot(u: Tensor, v: Tensor, nd: int) -> Tensor:
    """Dot products of fields with ``nd`` trailing dims, through BLAS (no
    temporary; CG takes three per iteration)."""
    bshape = u.shape[: u.dim() - nd]
    nb = math.prod(bshape)
    return _bmm(u.reshape(nb, 1, -1), v.reshape(nb, -1, 1)).reshape(bshape)


def _trace(u: Tensor, d: int, k: int) -> Tensor:
    """Sum of the first ``k`` components along dim ``d`` (the trace of Mandel
    fields): ``k - 1`` adds, cheaper than a reduction over a narrowed axis."""
    t = u.select(d, 0) + u.select(d, 1)
    for i in range(2, k):
        t.add_(u.select(d, i))
    return t


def _gram(u: Tensor, v: Tensor, nd: int) -> Tensor:
    """Gram matrices ``*batch x m x m`` of the components, ``<u_I, v_J>``, of
    fields with ``nd`` trailing dims (the first the ``m`` components)."""
    bshape = u.shape[: u.dim() - nd]
    nb, m = math.prod(bshape), u.shape[u.dim() - nd]
    return _bmm(u.reshape(nb, m, -1), v.reshape(nb, m, -1).transpose(1, 2)).reshape(*bshape, m, m)


# ------------------------------------------------------------ reference medium
class _Reference:
    r"""Isotropic reference medium that preconditions CG (Zeman et al. 2010).

    CG on ``G K dX = b`` converges at the rate set by the spread of the
    eigenvalues of ``K`` over the cell. Preconditioning by the Green operator
    ``Gamma0 = (G C0 G)^+`` of an isotropic reference ``C0`` (``lambda0 =
    rho mu0``) replaces that spread by the spread of ``K`` relative to ``C0``:
    for phases with one Poisson ratio and a stiffness contrast ``c`` the
    condition number drops from ``c (lambda + 2 mu) / mu`` (3D, plain ``G``)
    to ``c``. ``Gamma0`` costs what ``G`` costs (same FFTs, another scalar in
    Fourier space; ``G`` itself is ``Gamma0`` of ``lambda0 = 0``, ``mu0 =
    1/2`` in small strain and of ``A0 = I`` in finite strain). CG then runs on
    ``Gamma0 K``, self-adjoint in the inner product ``<x, C0 y>`` on
    compatible fields, with one FFT pair per iteration as before.

    The true residual ``r = b - G K dX`` is bounded by the preconditioned one
    ``z``: ``||r||^2 <= factor <z, C0 z>`` (per frequency ``r n = A0 z n``
    with the acoustic tensor ``A0``), so stopping on the bound meets the same
    tolerance ``||r|| <= tol ||b||`` as unpreconditioned CG.

    Scaling: ``mu0 = 1/2`` (small strain, Mandel components) or ``mu0 = 1``
    (finite strain, ``C0_iJkL = lambda0 d_iJ d_kL + mu0 (d_ik d_JL + d_iL d_kJ)``).
    """

    def __init__(self, kind: str, k: int, rho: float):
        self.kind, self.k, self.rho = kind, k, float(rho)
        # A0 = mu0 I + (lambda0 + mu0) n n; Gamma0 uses A0^{-1} scaled by mu0
        self.coef = 1.0 / (self.rho + 2.0) - 1.0
        if kind == "small":
            self.factor = max(self.rho / 2.0 + 1.0, 1.0)
        else:
            self.factor = max(self.rho + 2.0, 1.0)
            self.perm = [j * k + i for i in range(k) for j in range(k)]  # transpose

    @classmethod
    def from_moduli(cls, kind: str, k: int, lam: Tensor, mu: Tensor) -> _Reference:
        """Reference balanced between the extreme bulk-like (``lambda + 2 mu / k``)
        and shear moduli of a set of (fitted) isotropic moduli."""
        B = lam + 2.0 * mu / k
        Bmax, mmax = B.max(), mu.max()
        Bmin = torch.clamp(B.min(), min=1e-6 * Bmax)
        mmin = torch.clamp(mu.min(), min=1e-6 * mmax)
        if not (bool(Bmax > 0) and bool(mmax > 0)):
            return cls(kind, k, 0.0 if kind == "small" else -1.0)  # plain G
        ratio = torch.sqrt(Bmax * Bmin / (mmax * mmin)).item()  # B0 / mu0
        return cls(kind, k, ratio - 2.0 / k)

    @classmethod
    def fit(cls, kind: str, k: int, K: Tensor) -> _Reference:
        """Reference for a per-voxel tangent ``L x m x m x *grid``: isotropic
        ``lambda, mu`` per voxel from its trace and its normal-normal block
        (exact for isotropic tangents), then :meth:`from_moduli`."""
        m = K.shape[1]
        T1 = K.diagonal(dim1=1, dim2=2).sum(-1)  # trace
        if kind == "small":
            T2 = K[:, :k, :k].sum((1, 2))  # 2 mu k + lam k^2
            mu = (k * T1 - T2) / (2.0 * k * (m - 1))  # trace: 2 mu m + lam k
        else:
            ii = [i * k + i for i in range(k)]
            T2 = K[:, ii][:, :, ii].sum((1, 2))  # lam k^2 + 2 mu k
            mu = (k * T1 - T2) / (k * (k * k + k - 2))  # trace: lam k + mu k (k + 1)
        lam = (T2 - 2.0 * mu * k) / (k * k)
        return cls.from_moduli(kind, k, lam, mu)

    def _finite_weights(self, m: int, dtype, device) -> Tensor:
        """Finite strain: ``C0`` (up to the scale ``mu0``) as an ``m x m`` matrix
        on the solver's components, ``<u, C0 v> = sum_IJ W_IJ <u_I, v_J>``."""
        k = self.k
        W = torch.eye(m, dtype=dtype, device=device)
        W[torch.arange(m), torch.tensor(self.perm)] += 1.0  # + u : v^T
        ii = torch.tensor([i * k + i for i in range(k)])
        W[ii.unsqueeze(1), ii] += self.rho  # + rho tr u tr v
        return W

    def inner(self, u: Tensor, v: Tensor, nd: int) -> Tensor:
        """``<u, C0 v>`` per system for fields ``*batch x m x *grid`` (``nd``
        trailing dims per field).

        Small strain: ``<u, v> + (rho / 2) <tr u, tr v>``. Finite strain: from
        the ``m x m`` Gram matrix of the components, one batched product
        whose transpose and trace terms need no copies of the fields (half
        the time of gathering ``v^T`` and the traces at 31^3); in small strain
        the Gram matrix's ``m^2`` products cost more than the two dots
        (3.5x at 27^3)."""
        k, d = self.k, u.dim() - nd
        if self.kind == "small":
            tu = _trace(u, d, k)
            tv = tu if v is u else _trace(v, d, k)
            return _bdot(u, v, nd).add_(_bdot(tu, tv, nd - 1), alpha=self.rho / 2.0)
        m = u.shape[d]
        W = getattr(self, "_W", None)
        if W is None or W.shape[0] != m or W.dtype != u.dtype or W.device != u.device:
            W = self._W = self._finite_weights(m, u.dtype, u.device)
        return (_gram(u, v, nd) * W).sum((-1, -2))

    def apply_C0(self, v: Tensor) -> Tensor:
        """``C0 v`` (up to the scale ``mu0``) for fields ``... x m x *grid``."""
        k = self.k
        d = v.dim() - k - 1
        if self.kind == "small":
            tr = v.narrow(d, 0, k).sum(d, keepdim=True)
            w = v.clone()
            w.narrow(d, 0, k).add_(tr, alpha=self.rho / 2.0)
            return w
        ii = [i * k + i for i in range(k)]
        tr = v.index_select(d, torch.tensor(ii, device=v.device)).sum(d, keepdim=True)
        w = v + v.index_select(d, torch.tensor(self.perm, device=v.device))
        for i in ii:
            w.narrow(d, i, 1).add_(tr, alpha=self.rho)
        return w


# -------------------------------------------------------------------------- CG
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
        preconditioned).

    Raises:
        NotConverged: when some system misses the tolerance in ``maxiter``.
        IndefiniteOperator: when ``p^T A p <= 0`` for an unconverged system.
    """
    bshape = b.shape[: b.dim() - ndim_field]
    ex = (...,) + (None,) * ndim_field

    def dot(u, v):
        return _bdot(u, v, ndim_field)

    if inner is None:
        inner = dot
    bn = dot(b, b).sqrt() if bnorm is None else bnorm.reshape(bshape)
    floor = torch.as_tensor(atol, dtype=bn.dtype, device=bn.device)
    thresh = torch.maximum(tol * bn, floor) ** 2 / factor
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
            rel = ((factor * rr).sqrt() / bn.clamp_min(1e-300)).max().item()
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
                residual=((factor * rr).sqrt() / bn.clamp_min(1e-300)).max().item(),
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
    rel = (factor * rr).sqrt() / bn.clamp_min(1e-300)
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
        preconditioner: ``"reference"`` (default): CG preconditioned by the
            Green operator of an isotropic reference medium fitted to the
            tangent (same FFTs per iteration, fewer iterations; see
            :class:`_Reference`); ``"none"``: plain CG on ``G K``.
        fft: CPU FFT backend: ``"auto"`` (FFTW via pyFFTW when installed,
            else scipy's pocketfft, see :func:`_fft_backend`), ``"scipy"``,
            ``"fftw"`` (``FFTW_ESTIMATE`` plans) or ``"fftw-measure"``
            (``FFTW_MEASURE``: slow to plan, for long runs on one grid).
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
        preconditioner: str = "reference",
        fft: str = "auto",
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
        self.G = _Projection(self.shape, self.basis, self.device, dtype, fft)
        self.linear = all(getattr(p, "linear", False) for p in phases)
        flat = self.phase_map.reshape(-1)
        self._voxels = [(flat == p).nonzero().flatten().to(self.device) for p in range(len(phases))]
        self._pm_dev = self.phase_map.to(self.device)
        if preconditioner not in ("reference", "none"):
            raise InvalidInput(
                f"preconditioner must be 'reference' or 'none', got {preconditioner!r}"
            )
        self.preconditioner = preconditioner
        self._lin_tangent = None  # built lazily for linear laws
        self._lin_ref: _Reference | None = None
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
                present = torch.tensor([v.numel() > 0 for v in self._voxels])
                self._lin_ref = _Reference.from_moduli(
                    self.kind, k, lam[present.to(lam.device)], mu[present.to(mu.device)]
                )
            else:
                Cm = torch.stack(
                    [self.basis.mat(p.stiffness(k, self.dtype, self.device)) for p in self.phases]
                )  # P x m x m
                present = [i for i, v in enumerate(self._voxels) if v.numel() > 0]
                self._lin_ref = _Reference.fit(self.kind, k, Cm[present])
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
        """Plain CG on ``G K dX = b`` (``b`` compatible)."""

        def apply_A(x):
            return self.G(Kop(x))

        return batched_cg(apply_A, b, self.cg_tol, self.cg_maxiter, ndim_field=self.k + 1, atol=atol)

    def _solve(
        self, Kop, s: Tensor, ref: _Reference | None, atol: Tensor | float = 0.0
    ) -> tuple[Tensor, int, Tensor]:
        """The compatible fluctuation ``dX`` with ``G K dX = -G s``.

        ``s`` (``*batch x m x *grid``) is a stress-like field (``K : E`` of a
        macro load, or the stress at a Newton iterate). With a reference
        medium, CG runs on ``Gamma0 K`` (see :class:`_Reference`), stopping on
        the same tolerance ``||G K dX + G s|| <= tol ||G s||``.
        """
        # round-off floor: G s carries errors of order eps ||s||, so a
        # residual below that is noise (a homogeneous cell has G s = 0 exactly,
        # computed as 1e-17 ||s||); without the floor CG would chase it
        floor = 1e-14 * self._norm(s)
        atol = torch.maximum(torch.as_tensor(atol, dtype=floor.dtype, device=floor.device), floor)
        if ref is None or self.preconditioner == "none":
            return self._cg(Kop, -self.G(s), atol)
        nd, coef = self.k + 1, ref.coef
        Gs, Zs = self.G.apply(s, (None, coef))
        bn = self._norm(Gs)
        del Gs

        def apply_A(x):
            w = Kop(x)
            # <x, C0 Gamma0 K x> = <x, K x> for compatible x
            return self.G(w, coef), _bdot(x, w, nd)

        return batched_cg(
            apply_A,
            Zs.neg_(),
            self.cg_tol,
            self.cg_maxiter,
            ndim_field=nd,
            atol=atol,
            inner=lambda u, v: ref.inner(u, v, nd),
            bnorm=bn,
            factor=ref.factor,
        )

    def _reference_for(self, K: Tensor) -> _Reference:
        return _Reference.fit(self.kind, self.k, K)

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

    def _unit_columns(self, Kop, L: int, ref: _Reference | None = None) -> tuple[Tensor, int, Tensor]:
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
            dX, it, rel = self._solve(Kop, KE, ref)
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
            Kop = self._linear_tangent()
            C, it, rel = self._unit_columns(Kop, 1, self._lin_ref)
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
            dX, it, _ = self._solve(Kop, KE, self._lin_ref)
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
        L = load.shape[0]
        vbar = self.basis.vec(load)  # L x m
        info: dict[str, Any] = {}
        try:
            X, S, Kt, rel, log = self._newton(vbar)
        except NotConverged as direct:
            # Newton from the homogeneous guess failed, typically because the
            # linearization there is indefinite (CG met negative curvature):
            # with heterogeneous moduli, the null-Lagrangian part of a
            # hyperelastic tangent makes G K G indefinite at states far from
            # equilibrium, and the "Newton step" jumps to a saddle. Follow the
            # load path from the stress-free state instead, each load alone.
            parts = [self._continuation(vbar[i : i + 1], direct) for i in range(L)]
            X, S, Kt, rel = (torch.cat([p[j] for p in parts]) for j in range(4))
            log = {
                "newton_iterations": sum(p[4]["newton_iterations"] for p in parts),
                "cg_iterations_per_solve": [c for p in parts for c in p[4]["cg_iterations_per_solve"]],
                "newton_steps": [c for p in parts for c in p[4]["newton_steps"]],
                "residuals": [c for p in parts for c in p[4]["residuals"]],
            }
            info["load_path"] = [p[4]["load_path"] for p in parts]
            info["direct_newton_failure"] = str(direct)
        cg_its = log["cg_iterations_per_solve"]
        Cout = None
        if tangent:
            Cm, it, _ = self._unit_columns(_DenseTangent(Kt), L, self._reference_for(Kt))
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
            newton_iterations=log["newton_iterations"],
            cg_iterations=int(sum(cg_its)),
            residual=rel,
            fields=out_fields,
            info={
                "cg_iterations_per_solve": cg_its,
                "newton_steps": log["newton_steps"],
                "residuals": log["residuals"],
                **info,
            },
        )

    def _reference_vec(self, vbar: Tensor) -> Tensor:
        """The stress-free start of the load path to ``vbar`` (``L x m``).

        Small strain: ``eps = 0``. Finite strain: the rotation ``R`` of the
        polar decomposition ``F = R U``, a rigid rotation of the stress-free
        reference. The path ``R + t (F - R) = R (I + t (U - I))`` then only
        stretches, whereas the straight path from ``I`` to a rotated ``F``
        would cross states of severe compression (``det`` near 0 halfway to
        a rotation by pi).
        """
        if self.kind == "small":
            return torch.zeros_like(vbar)
        W, _, Vh = torch.linalg.svd(self.basis.ten(vbar))
        return self.basis.vec(W @ Vh)  # det F > 0, so det(W Vh) = +1

    def _continuation(self, vbar: Tensor, cause: NotConverged, min_fraction: float = 1.0 / 64):
        """Newton along the straight load path from the reference state to ``vbar``.

        Each increment starts from the previous equilibrium with the
        predictor of de Geus et al. (2017): the macro increment is applied
        through the tangent of that equilibrium, which is positive definite on
        compatible fields while the equilibrium is stable (at the stress-free
        state by Korn's inequality). A failed increment is halved, down to
        ``min_fraction`` of the load.

        Returns:
            ``(X, S, Kt, rel, log)`` as :meth:`_newton`, ``log["load_path"]``
            listing the load fractions reached.
        """
        vref = self._reference_vec(vbar)
        X_eq = self._bcast(vref).expand(vbar.shape[0], self.m, *self.shape).clone()
        S_eq, K_eq = self._constitutive(X_eq)
        total = {"newton_iterations": 0, "cg_iterations_per_solve": [], "newton_steps": [], "residuals": []}
        t, dt, path = 0.0, 0.5, []  # the full step already failed from the direct start
        while t < 1.0:
            dt = min(dt, 1.0 - t)
            v_t = vref + (t + dt) * (vbar - vref)
            try:
                X, S, Kt, rel, log = self._newton(v_t, start=(X_eq, S_eq, K_eq))
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

    def _newton(self, vbar: Tensor, start: tuple[Tensor, Tensor, Tensor] | None = None):
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
        L, m = vbar.shape[0], self.m
        Vbar = self._bcast(vbar).expand(L, m, *self.shape)
        cg_its, steps, res_hist = [], [], []
        newton_it, halvings = 0, 0
        X_prev, step = None, None
        if start is None:
            X = Vbar.clone()
        else:
            X_eq, S_eq, K_eq = start
            E = Vbar - self._mean(X_eq).reshape(L, m, *([1] * self.k))
            Kop = _DenseTangent(K_eq)
            KE = Kop(E.unsqueeze(1))[:, 0] + S_eq
            atol = (0.01 * self.newton_tol * self._norm(KE)).unsqueeze(1)
            dX, it, _ = self._solve(Kop, KE.unsqueeze(1), self._reference_for(K_eq), atol=atol)
            X_prev, step = X_eq + E, dX[:, 0]
            X = X_prev + step
            cg_its.append(it)
            steps.append((self._norm(E + step) / self._norm(Vbar)).max().item())
            newton_it = 1
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
            nS = self._norm(S)
            rel = self._norm(r) / nS.clamp_min(1e-300)
            rel = torch.where(nS > 0, rel, torch.zeros_like(rel))
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
            atol = (0.01 * self.newton_tol * nS).unsqueeze(1)
            dX, it, _ = self._solve(Kop, S.unsqueeze(1), self._reference_for(Kt), atol=atol)
            X_prev, step = X, dX[:, 0]
            X = X + step
            cg_its.append(it)
            steps.append((self._norm(step) / self._norm(Vbar)).max().item())
            newton_it += 1
        log = {
            "newton_iterations": newton_it,
            "cg_iterations_per_solve": cg_its,
            "newton_steps": steps,
            "residuals": res_hist,
        }
        return X, S, Kt, rel, log
