r"""Fourier multipliers of vector fields on periodic voxel grids.

Both transport solvers work with ``k``-component vector fields on a periodic
grid ``n_1 x ... x n_k`` (``k = 2, 3``) and apply, per frequency, operators
built from one complex wave vector ``d(xi)``:

* the projection onto gradient fields ``P e = d (d^H e) / |d|^2`` (conduction:
  the unknown is the gradient of a periodic potential plus its mean);
* the Green operator of a reference conductivity ``K0``,
  ``Gamma0 e = d (d^H e) / (d^H K0 d)``;
* the periodic Stokes Green operator ``S f = (I - d d^H / |d|^2) f / (mu L)``
  with the Laplacian symbol ``L`` (velocity from a force density).

The wave vector fixes the discretization (``theta_j = 2 pi m_j / n_j`` the
angle of frequency ``m_j`` on axis ``j``):

* ``"staggered"``: ``d_j = exp(i theta_j) - 1``, the forward difference. The
  gradient component ``j`` lives on the voxel face between voxels ``x`` and
  ``x + e_j``; with harmonic-mean face conductivities this is the two-point
  finite-volume scheme (a resistor network between voxel centres).
* ``"spectral"``: ``d = xi`` (Moulinec and Suquet 1994, Fourier-Galerkin),
  fields at voxel centres, the Nyquist modes of an even axis with an
  ambiguous wave vector dropped (:func:`oracles.rve.projection.ambiguous_nyquist`).
* ``"rotated"``: ``d_j = (exp(i theta_j) - 1) prod_{l != j} (1 + exp(i theta_l)) / 2``
  (Willot 2015, CR Mecanique 343), the difference across a voxel averaged
  over its ``2^(k-1)`` edges: fields at voxel corners, pressure at voxel
  centres (the pairing of trilinear velocity and piecewise-constant pressure
  voxel finite elements).

The FFTs (pocketfft or FFTW plans) are those of the mechanical solver
(:class:`oracles.rve.fft.FourierOperator`); only the Fourier-space
multiplier differs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput
from oracles.rve.fft import FourierOperator
from oracles.rve.projection import ambiguous_nyquist

__all__ = ["VectorFourier", "wave_vectors", "DISCRETIZATIONS"]

DISCRETIZATIONS = ("staggered", "spectral", "rotated")


def wave_vectors(shape: tuple[int, ...], scheme: str, dtype=torch.float64) -> tuple[Tensor, Tensor]:
    """Wave vectors ``d`` (``k x *half``, complex) and their squared norms
    ``|d|^2`` (``*half``, real) on the real-FFT half spectrum of ``shape``.

    ``|d|^2`` is 0 where the mode carries no gradient (the mean; the dropped
    ambiguous Nyquist modes of ``"spectral"``; the checkerboard modes of ``"rotated"``).
    """
    if scheme not in DISCRETIZATIONS:
        raise InvalidInput(f"discretization must be one of {DISCRETIZATIONS}, got {scheme!r}")
    k = len(shape)
    cdt = torch.complex128 if dtype == torch.float64 else torch.complex64
    th = []
    for a, n in enumerate(shape):
        f = torch.fft.rfftfreq(n, 1.0 / n) if a == k - 1 else torch.fft.fftfreq(n, 1.0 / n)
        th.append(f.to(dtype))
    grids = torch.meshgrid(*th, indexing="ij")
    if scheme == "spectral":
        d = torch.stack([2.0 * math.pi * g / n for g, n in zip(grids, shape, strict=True)]).to(cdt)
        # every multiplier here is even in d (d d^H / |d|^2): a pure-axis Nyquist mode is kept
        d[:, ambiguous_nyquist(grids, shape)] = 0.0
    else:
        e = [
            torch.exp(1j * (2.0 * math.pi * g / n).to(cdt))
            for g, n in zip(grids, shape, strict=True)
        ]
        fwd = [ea - 1.0 for ea in e]
        if scheme == "staggered":
            d = torch.stack(fwd)
        else:
            avg = [(1.0 + ea) / 2.0 for ea in e]
            comps = []
            for j in range(k):
                c = fwd[j].clone()
                for l in range(k):
                    if l != j:
                        c = c * avg[l]
                comps.append(c)
            d = torch.stack(comps)
    d2 = (d.real.square() + d.imag.square()).sum(0)
    d2 = torch.where(d2 > 1e-14 * max(1.0, float(d2.max())), d2, torch.zeros_like(d2))
    d[:, d2 == 0] = 0.0
    return d, d2


class VectorFourier(FourierOperator):
    r"""Fourier multipliers of ``k``-component fields ``... x k x *grid``.

    Args:
        shape: grid ``n_1 x ... x n_k``.
        scheme: ``"staggered"``, ``"spectral"`` or ``"rotated"`` (see module).
        operator: ``"gradient"`` (projection ``P`` and reference Green
            operators ``Gamma0``) or ``"stokes"`` (Stokes Green operator).
        K0: ``k x k`` SPD reference conductivity for ``Gamma0`` (gradient only).
        laplacian: Stokes only; ``"fd"``: ``L = sum_j 4 sin^2(theta_j / 2)``
            (the ``2k+1``-point Laplacian, exact on quadratics) or ``"spectral"``
            (``|xi|^2``).
        fft: FFT back end as for :class:`oracles.rve.solver.FFTSolver`.

    ``self(x)`` applies ``P`` (gradient) or ``S`` with ``mu = 1`` (Stokes);
    ``self(x, "ref")`` applies ``Gamma0``; :meth:`apply` shares one forward
    FFT between several of them.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        scheme: str,
        operator: str = "gradient",
        K0: Tensor | None = None,
        laplacian: str = "fd",
        fft: str = "auto",
        dtype=torch.float64,
    ):
        k = len(shape)
        super().__init__(tuple(shape), fft, dtype)
        if operator not in ("gradient", "stokes"):
            raise InvalidInput(f"operator must be 'gradient' or 'stokes', got {operator!r}")
        self.scheme, self.operator = scheme, operator
        d, d2 = wave_vectors(self.shape, scheme, dtype)
        self.d = d  # k x *half
        self.dc = d.conj()
        zero = d2 == 0
        inv = torch.where(
            zero, torch.zeros_like(d2), 1.0 / torch.where(zero, torch.ones_like(d2), d2)
        )
        cdt = d.dtype
        self.inv_d2 = inv.to(cdt)
        if operator == "stokes":
            if laplacian not in ("fd", "spectral"):
                raise InvalidInput(f"laplacian must be 'fd' or 'spectral', got {laplacian!r}")
            th = []
            for a, n in enumerate(shape):
                f = torch.fft.rfftfreq(n, 1.0 / n) if a == k - 1 else torch.fft.fftfreq(n, 1.0 / n)
                th.append(2.0 * math.pi * f.to(dtype) / n)
            grids = torch.meshgrid(*th, indexing="ij")
            if laplacian == "fd":
                lap = sum(4.0 * torch.sin(g / 2.0).square() for g in grids)
            else:
                lap = sum(g.square() for g in grids)
            lap = torch.as_tensor(lap)
            keep = lap > 0
            self.inv_lap = torch.where(
                keep, 1.0 / torch.where(keep, lap, torch.ones_like(lap)), 0.0
            ).to(cdt)
            # the mean (zero frequency) carries no fluctuation
            self.inv_lap.reshape(-1)[0] = 0.0
        self.K0 = None
        if K0 is not None:
            self.set_reference(K0)

    def set_reference(self, K0: Tensor) -> None:
        """Set the ``k x k`` SPD reference conductivity of ``Gamma0``."""
        K0 = torch.as_tensor(K0, dtype=torch.float64)
        self.K0 = K0
        # d^H K0 d per frequency (real, > 0 where d != 0)
        q = torch.zeros(self.d.shape[1:], dtype=torch.float64)
        for i in range(self.k):
            for j in range(self.k):
                q = q + K0[i, j].item() * (self.dc[i] * self.d[j]).real
        zero = q <= 0
        self.inv_q = torch.where(zero, 0.0, 1.0 / torch.where(zero, torch.ones_like(q), q)).to(
            self.d.dtype
        )

    def fourier(self, xh: Tensor, coef=None, out: Tensor | None = None) -> Tensor:
        """The multiplier on complex coefficients ``... x k x *half``."""
        k, d, dc = self.k, self.d, self.dc
        ax = -k - 1
        if out is None:
            out = torch.empty_like(xh)
        s = torch.mul(xh.select(ax, 0), dc[0])
        for j in range(1, k):
            s.addcmul_(xh.select(ax, j), dc[j])  # d^H x
        if self.operator == "gradient":
            s.mul_(self.inv_q if coef == "ref" else self.inv_d2)
            for j in range(k):
                torch.mul(s, d[j], out=out.select(ax, j))
            return out
        # Stokes: (x - d (d^H x) / |d|^2) / L
        s.mul_(self.inv_d2)
        for j in range(k):
            o = out.select(ax, j)
            torch.addcmul(xh.select(ax, j), s, d[j], value=-1.0, out=o)  # out may be xh
            o.mul_(self.inv_lap)
        return out
