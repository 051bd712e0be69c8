r"""The compatibility projection, the reference-medium preconditioner, and the
linear solve for a compatible fluctuation field.

Fourier-Galerkin homogenization (Zeman et al. 2010, "Accelerating a FFT-based
solver for numerical homogenization of periodic media by conjugate
gradients", J. Comput. Phys. 229; de Geus et al. 2017, "Finite strain
FFT-based non-linear solvers made simple", CMAME 318) seeks the fluctuation
``dX`` of a gradient field in the space of compatible (curl-free, zero-mean)
fields onto which :class:`Projection` ``G`` maps. A linearized equilibrium
``G (K dX) = -G s`` is symmetric on that space and solved by CG
(:func:`solve_fluctuation`), preconditioned by the Green operator of an
isotropic reference medium (:class:`ReferenceMedium`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from oracles.rve.fft import FourierOperator
from oracles.rve.krylov import batched_cg, bdot, gram

__all__ = ["Projection", "ReferenceMedium", "ambiguous_nyquist", "field_norm", "solve_fluctuation"]

DTYPE = torch.float64


def ambiguous_nyquist(grids: tuple[Tensor, ...], shape: tuple[int, ...]) -> Tensor:
    """Frequencies (``*half`` booleans) at the Nyquist frequency of an even axis with
    another nonzero component: ``-N/2`` and ``+N/2`` are one frequency there, the two give
    wave vectors that are not opposite (``(N/2, m)`` and ``(-N/2, m)``), so an operator of
    ``n`` has no value that keeps real fields real. A frequency whose only nonzero
    component is a Nyquist one has ``n = +-e_i`` and is not ambiguous for operators even in
    ``n`` (projections, Green operators)."""
    nyq = torch.zeros(grids[0].shape, dtype=torch.bool)
    nonzero = torch.zeros(grids[0].shape, dtype=torch.long)
    for g, n in zip(grids, shape, strict=True):
        if n % 2 == 0:
            nyq |= g.abs() == n // 2
        nonzero += (g != 0).long()
    return nyq & (nonzero > 1)


class Projection(FourierOperator):
    r"""The compatibility projection ``G`` on a periodic grid, and the Green
    operators ``Gamma0`` of isotropic reference media, via real FFTs.

    ``G`` maps a field of ``k x k`` tensors (``... x m x *grid`` in the
    components of ``basis``) onto the compatible fields: the zero-mean
    gradients (finite strain) or symmetrized gradients (small strain) of
    periodic displacements, on a cell of unit (square, cubic) voxels. In
    Fourier space it needs only the unit wave vector ``n = xi / |xi|`` per
    frequency (``xi_a = m_a / N_a`` for frequency index ``m_a`` on an axis of
    ``N_a`` voxels): finite strain
    ``(G A)_ij = (A n)_i n_j``; small strain
    ``G A = n (x) An + An (x) n - (n.A.n) n (x) n``. The zero frequency (the
    mean, fixed by the macro load) maps to 0, and so do the modes of an even
    axis's Nyquist frequency whose wave vector is ambiguous
    (:func:`ambiguous_nyquist`); a pure-axis Nyquist mode ``(N/2, 0, ...)``
    is kept (``n = +-e_i``, and ``G`` is even in ``n``), so a laminate with
    an odd number of voxel layers on an even grid is exact too.

    Args:
        shape: the grid ``n_1 x ... x n_k``.
        basis: the component basis of the fields (its ``kind``, ``k`` and,
            for small strain, ``idx``).
        device: where the wave vectors live.
        dtype: real dtype of the fields.
        fft: the FFT back end (see :class:`~oracles.rve.fft.RealFFT`).

    ``self(x)`` applies ``G``; ``self(x, coef)`` applies ``Gamma0`` (see
    :meth:`fourier`); :meth:`apply` applies several of them sharing one
    forward FFT.
    """

    def __init__(self, shape: tuple[int, ...], basis, device=None, dtype=DTYPE, fft: str = "auto"):
        super().__init__(tuple(shape), fft, dtype)
        self.basis = basis
        shape, d = self.shape, self.k
        freqs = [
            (torch.fft.rfftfreq(n, 1.0 / n) if a == d - 1 else torch.fft.fftfreq(n, 1.0 / n)).to(dtype)
            for a, n in enumerate(shape)
        ]
        grids = torch.meshgrid(*freqs, indexing="ij")
        # wave vectors of a cell of n_1 x ... x n_k unit voxels: xi_a = m_a / n_a (the
        # integer indices m_a alone would stretch the voxels of a non-square grid)
        xi = torch.stack([g / n for g, n in zip(grids, shape, strict=True)])  # k x *half
        nrm = xi.norm(dim=0)
        nvec = xi / nrm
        # zero frequency (mean, fixed by the macro load): G = 0
        nvec[:, nrm == 0] = 0.0
        nvec[:, ambiguous_nyquist(grids, shape)] = 0.0
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
        ``Gamma0`` is applied (see :class:`ReferenceMedium`): with ``t = A n`` and
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


def _trace(u: Tensor, d: int, k: int) -> Tensor:
    """Sum of the first ``k`` components along dim ``d`` (the trace of Mandel
    fields): ``k - 1`` adds, cheaper than a reduction over a narrowed axis."""
    t = u.select(d, 0) + u.select(d, 1)
    for i in range(2, k):
        t.add_(u.select(d, i))
    return t


class ReferenceMedium:
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
    def from_moduli(cls, kind: str, k: int, lam: Tensor, mu: Tensor) -> ReferenceMedium:
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
    def fit(cls, kind: str, k: int, K: Tensor) -> ReferenceMedium:
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

        Small strain: ``<u, v> + (rho / 2) <tr u, tr v>``, two dot products.
        Finite strain: from the ``m x m`` Gram matrix of the components, one
        batched product whose transpose and trace terms need no copies of the
        fields."""
        k, d = self.k, u.dim() - nd
        if self.kind == "small":
            tu = _trace(u, d, k)
            tv = tu if v is u else _trace(v, d, k)
            return bdot(u, v, nd).add_(bdot(tu, tv, nd - 1), alpha=self.rho / 2.0)
        m = u.shape[d]
        W = getattr(self, "_W", None)
        if W is None or W.shape[0] != m or W.dtype != u.dtype or W.device != u.device:
            W = self._W = self._finite_weights(m, u.dtype, u.device)
        return (gram(u, v, nd) * W).sum((-1, -2))

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


def solve_fluctuation(
    G: Projection,
    Kop,
    s: Tensor,
    ref: ReferenceMedium | None,
    tol: float,
    maxiter: int,
    atol: Tensor | float = 0.0,
) -> tuple[Tensor, int, Tensor]:
    """The compatible fluctuation ``dX`` with ``G K dX = -G s``, by CG.

    Args:
        G: the projection of the grid.
        Kop: the tangent ``K``, a callable on fields ``*batch x m x *grid``.
        s: ``*batch x m x *grid`` stress-like field (``K : E`` of a macro load,
            or the stress at a Newton iterate).
        ref: the reference medium preconditioning CG (:class:`ReferenceMedium`),
            or None for plain CG on ``G K``.
        tol: relative tolerance ``||G K dX + G s|| <= tol ||G s||``, met with
            or without a preconditioner.
        maxiter: CG iteration limit.
        atol: ``*batch`` (or scalar) absolute floor of the residual norm.

    Returns:
        ``(dX, iterations, relative residuals *batch)``, see
        :func:`~oracles.rve.krylov.batched_cg`.
    """
    nd = G.k + 1
    # round-off floor: G s carries errors of order eps ||s||, so a residual
    # below that is noise (a homogeneous cell has G s = 0 exactly, computed as
    # 1e-17 ||s||); without the floor CG would chase it
    floor = 1e-14 * field_norm(s, G.k)
    atol = torch.maximum(torch.as_tensor(atol, dtype=floor.dtype, device=floor.device), floor)
    if ref is None:
        return batched_cg(lambda x: G(Kop(x)), -G(s), tol, maxiter, ndim_field=nd, atol=atol)
    coef = ref.coef
    Gs, Zs = G.apply(s, (None, coef))
    bn = field_norm(Gs, G.k)
    del Gs

    def apply_A(x):
        w = Kop(x)
        # <x, C0 Gamma0 K x> = <x, K x> for compatible x
        return G(w, coef), bdot(x, w, nd)

    return batched_cg(
        apply_A,
        Zs.neg_(),
        tol,
        maxiter,
        ndim_field=nd,
        atol=atol,
        inner=lambda u, v: ref.inner(u, v, nd),
        bnorm=bn,
        factor=ref.factor,
    )


def field_norm(x: Tensor, k: int) -> Tensor:
    """Euclidean norms ``*batch`` of fields ``*batch x m x *grid`` on a ``k``-D grid."""
    return x.square().sum(dim=tuple(range(-k - 1, 0))).sqrt()
