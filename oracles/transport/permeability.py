r"""Darcy permeability of periodic voxel images by an FFT-based Stokes solver.

Steady Stokes flow ``-mu lap u + grad p = f + lambda``, ``div u = 0`` in the
periodic cell, driven by a uniform body force ``f`` (the macroscopic pressure
gradient, ``f = -grad <p>``) and held at rest on the solid by a force
density ``lambda`` that lives on the solid only: a fictitious-domain
formulation whose unknown is the solid's force on the fluid, as in the
periodic force-distribution method of Hasimoto (1959) and Sangani and
Acrivos (1982). The mean of the total force vanishes in a periodic steady
state, so ``sum lambda = -N f``; the velocity is ``u = U + S lambda`` with
the periodic Stokes Green operator ``S`` (:class:`~oracles.transport.fourier.VectorFourier`)
and the Darcy velocity ``U = <u>``. The no-slip condition ``u = 0`` on the
solid becomes, after removing the unknown constant ``U`` (the projection
``Q`` subtracts the mean over the solid nodes),

    ``Q S Q g = -Q S lambda_0``,  ``lambda = lambda_0 + g``,  ``lambda_0 = -(N / N_s) f``,

a symmetric positive semidefinite system on the solid nodes solved by
preconditioned CG (:func:`oracles.transport.pcg.preconditioned_cg`, the
preconditioner the Laplacian restricted to the solid nodes, a sparse matrix),
one right-hand side per axis, with one FFT pair of the force field per
iteration. The CG vectors hold the solid nodes only (``Q`` is then the
removal of their mean); the force field is assembled on the grid for the FFT. Then ``U = -<S lambda>_solid``
and the permeability column is ``K e_J = mu U`` for ``f = e_J``.

Discretization: velocity at voxel corners (``2^k`` voxels meet at a node; a
node is solid when half of them are, see :func:`solid_nodes`), pressure at
voxel centres, the rotated difference operators of Willot (2015, C. R.
Mecanique 343) and the ``2k+1``-point Laplacian; flat walls then lie on voxel
faces, as in voxel finite-element Stokes solvers with velocity at the voxel
corners. A pore channel must be at least 2 voxels wide to carry flow: the
solver refuses (:class:`~oracles.transport.topology.NotPercolating`) a pore
space whose nodes cross the cell along no axis through shared faces. The
divergence at a voxel centre joins all ``2^k`` corners of the voxel, so fluid
nodes that share only an edge or a corner of a voxel exchange some flow too;
along an axis that the fluid nodes do not cross even so
(:func:`~oracles.transport.topology.percolating_axes` with
``connectivity="full"``) the net flow of every cluster vanishes with its
divergence, and the permeability's row and column are zero. For plane Poiseuille
flow in a slit of ``h`` voxels the discrete permeability is
``(h^3 - h) / 12`` per unit cell width (the trapezoidal rule on the exact
parabola): second order in the voxel size.

Convergence criterion: CG stops when the slip velocity on the solid (its
part that is not the uniform ``-U``) is below ``tol`` times that of the
unconstrained flow, ``||Q S lambda|| <= tol ||Q S lambda_0||``.

Units: the solver works in voxel units with ``mu = 1``; the permeability
(independent of the viscosity) is returned in the units of
``voxel_size^2`` (m² for a voxel size in m).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, is_integer, is_real
from oracles.rve.krylov import batched_cg
from oracles.transport.conductivity import _as_array
from oracles.transport.fourier import VectorFourier
from oracles.transport.pcg import preconditioned_cg
from oracles.transport.topology import NotPercolating, percolating_axes, warn_if_not_periodic

DTYPE = torch.float64
#: one darcy in m² (9.869233e-13 m²)
DARCY = 9.869233e-13

__all__ = ["DARCY", "PermeabilityResult", "StokesSolver", "permeability", "solid_nodes"]


WALLS = ("half", "any")


def solid_nodes(solid, wall: str = "half") -> np.ndarray:
    """No-slip velocity nodes (voxel corners) of a solid mask (``*grid`` bool).

    Node ``i`` is the corner shared by the ``2^k`` voxels ``i + s``, ``s`` in
    ``{0, 1}^k``. ``wall="half"``: the node is solid when at least half of
    them are (nodes on a flat face are solid, the outer corners of a
    staircase are not: a voxelized curved surface is followed to first order
    in the voxel size; solid features thinner than a voxel face, such as a
    lone voxel or a one-voxel fibre, carry no node and vanish).
    ``wall="any"``: solid when any of them is (every solid voxel a no-slip
    box, as in voxel finite elements; a staircase adds drag).
    """
    if wall not in WALLS:
        raise InvalidInput(f"wall must be one of {WALLS}, got {wall!r}")
    solid = np.asarray(solid, dtype=bool)
    k = solid.ndim
    count = np.zeros(solid.shape, dtype=np.int16)
    for bits in range(2**k):
        shift = tuple(-((bits >> a) & 1) for a in range(k))
        count += np.roll(solid, shift, axis=tuple(range(k)))
    return count * 2 >= 2**k if wall == "half" else count > 0


@dataclass
class PermeabilityResult:
    """Darcy permeability of a periodic cell.

    Attributes:
        tensor: ``k x k`` permeability in ``voxel_size^2`` units (m²),
            symmetrized; zero in the rows and columns of axes the fluid nodes
            do not cross through faces, edges or corners.
        porosity: volume fraction of pore voxels.
        iterations: CG iterations (all ``k`` driving forces together).
        residual: ``k`` final relative slip residuals.
        asymmetry: ``||K - K^T|| / ||K||`` before symmetrization (a check of
            convergence and discretization).
        velocity: with ``fields=True``, ``k x k x *grid`` velocity at the nodes
            for unit forces along each axis, in voxel units (``mu = 1``).
        info: further details.
    """

    tensor: Tensor
    porosity: float
    iterations: int
    residual: Tensor
    asymmetry: float
    velocity: Tensor | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def darcy(self) -> Tensor:
        """The tensor in darcy (``voxel_size`` in m)."""
        return self.tensor / DARCY


class StokesSolver:
    """Permeability of a periodic voxel image (see the module docstring).

    Args:
        solid: ``*grid`` bool (2D or 3D), True on solid voxels.
        voxel_size: edge of a voxel (m); the tensor scales with its square.
        tol: relative CG tolerance of the slip velocity on the solid.
        maxiter: CG iteration limit.
        laplacian: ``"fd"`` (default, ``2k+1`` points) or ``"spectral"``.
        wall: which nodes are no-slip, ``"half"`` (default) or ``"any"``
            (see :func:`solid_nodes`).
        preconditioner: ``"laplacian"`` (default): PCG with the ``2k+1``-point
            Laplacian restricted to the solid nodes (``S`` is the inverse
            Laplacian up to the pressure projection, so this undoes most of
            its spread of scales); ``"none"``: plain CG.
        fft: FFT back end as for :class:`oracles.rve.solver.FFTSolver`.

    Raises:
        InvalidInput: no solid voxel (unbounded permeability) or a bad image.
        NotPercolating: the pore space (its nodes) crosses the cell along no
            axis; the permeability is zero.
    """

    def __init__(
        self,
        solid,
        voxel_size: float = 1.0,
        *,
        tol: float = 1e-6,
        maxiter: int = 20000,
        laplacian: str = "fd",
        wall: str = "half",
        preconditioner: str = "laplacian",
        fft: str = "auto",
    ):
        s = _as_array(solid, "solid mask")
        if s.ndim not in (2, 3):
            raise InvalidInput(f"solid mask must be 2D or 3D, got shape {s.shape}")
        if s.dtype != bool:
            if not np.isin(s, (0, 1)).all():
                raise InvalidInput(
                    "solid mask must be boolean (True on solid voxels), got other values"
                )
            s = s.astype(bool)
        if min(s.shape) < 2:
            raise InvalidInput(f"grid needs at least 2 voxels per axis, got {s.shape}")
        if isinstance(voxel_size, (list, tuple)) or getattr(voxel_size, "ndim", 0) >= 1:
            raise InvalidInput(f"voxel_size must be one positive length in m (voxels are cubes), got "
                               f"{voxel_size!r}: anisotropic voxels are not supported, resample the image "
                               "to cubic voxels first")
        if not (
            is_real(voxel_size) and np.isfinite(voxel_size) and voxel_size > 0
        ):
            raise InvalidInput(f"voxel_size must be a positive length in m, got {voxel_size!r}")
        if not (is_real(tol) and 0 < tol < 1):
            raise InvalidInput(f"tol must lie in (0, 1), got {tol!r}")
        if not (is_integer(maxiter) and maxiter >= 1):
            raise InvalidInput(f"maxiter must be a positive integer, got {maxiter!r}")
        if preconditioner not in ("laplacian", "none"):
            raise InvalidInput(
                f"preconditioner must be 'laplacian' or 'none', got {preconditioner!r}"
            )
        self.preconditioner = preconditioner
        if not s.any():
            raise InvalidInput(
                "the image has no solid voxel: the permeability of free space is unbounded"
            )
        if s.all():
            raise NotPercolating(
                "closed pore space: the image has no pore voxel (porosity 0, all solid), so the permeability "
                "is zero", (False,) * s.ndim)
        self.solid = s
        self.shape = tuple(s.shape)
        self.k = len(self.shape)
        self.voxel_size = float(voxel_size)
        self.tol, self.maxiter = float(tol), maxiter
        self.nodes = solid_nodes(s, wall)
        self.wall = wall
        self.porosity = float(1.0 - s.mean())
        if not self.nodes.any():
            raise InvalidInput(
                f"no no-slip node: the solid features (solid fraction {s.mean():.4g}) are all thinner than "
                "a voxel face (use wall='any' to make every solid voxel no-slip)"
            )
        perc = percolating_axes(~self.nodes)
        self.percolating = perc
        if not any(perc):
            raise NotPercolating(
                f"closed pore space: the pores (porosity {self.porosity:.4g}) connect across the periodic "
                "cell along no axis (channels narrower than 2 voxels carry no flow), so the permeability is zero",
                perc,
            )
        self.fourier = VectorFourier(self.shape, "rotated", "stokes", laplacian=laplacian, fft=fft)
        self.chi = torch.from_numpy(self.nodes).to(DTYPE)
        self.n_solid = int(self.nodes.sum())
        #: flat grid indices of the solid nodes: the CG vectors live on them only
        self.idx = torch.from_numpy(np.flatnonzero(self.nodes.ravel()))
        self.lap_solid = self._restricted_laplacian() if preconditioner == "laplacian" else None
        #: largest CG field (doubles) of one batched solve; more forces are chunked
        self.max_field_doubles = 2**25

    def _restricted_laplacian(self) -> Tensor:
        """The ``2k+1``-point periodic Laplacian restricted to the solid nodes,
        ``n_solid x n_solid`` sparse (CSR), in the order of ``self.idx``."""
        shape, k, ns = self.shape, self.k, self.n_solid
        flat = self.idx.numpy()
        local = np.full(int(np.prod(shape)), -1, dtype=np.int64)
        local[flat] = np.arange(ns)
        coords = np.unravel_index(flat, shape)
        rows, cols, vals = [np.arange(ns)], [np.arange(ns)], [np.full(ns, 2.0 * k)]
        for a in range(k):
            for step in (1, -1):
                c = list(coords)
                c[a] = (c[a] + step) % shape[a]
                j = local[np.ravel_multi_index(c, shape)]
                keep = j >= 0  # neighbours off the solid are zero in the range of Q
                rows.append(np.arange(ns)[keep])
                cols.append(j[keep])
                vals.append(-np.ones(int(keep.sum())))
        # duplicates (an axis of 2 voxels: both neighbours are one node) are summed
        L = scipy.sparse.coo_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(ns, ns)
        ).tocsr()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            return torch.sparse_csr_tensor(
                torch.from_numpy(L.indptr), torch.from_numpy(L.indices), torch.from_numpy(L.data),
                size=(ns, ns), dtype=DTYPE,
            )

    def _precondition(self, r: Tensor) -> Tensor:
        """``Q L Q r`` on solid-node vectors ``... x n_solid`` (``r`` already in
        the range of ``Q``): the ``2k+1``-point Laplacian restricted to the
        solid nodes, an approximate inverse of ``Q S Q`` (``S ~ L^-1``)."""
        z = self.lap_solid @ r.reshape(-1, self.n_solid).T  # n_solid x fields
        return z.sub_(z.mean(0)).T.reshape(r.shape)

    def _to_grid(self, v: Tensor, out: Tensor) -> Tensor:
        """Solid-node vectors ``... x n_solid`` into ``out`` (``... x *grid``,
        zero off the solid nodes, which are never written)."""
        out.view(*v.shape[:-1], -1).index_copy_(-1, self.idx, v)
        return out

    def _from_grid(self, x: Tensor) -> Tensor:
        """``Q`` of fields ``... x *grid`` as solid-node vectors ``... x n_solid``."""
        v = x.reshape(*x.shape[: x.dim() - self.k], -1).index_select(-1, self.idx)
        return v.sub_(v.mean(-1, keepdim=True))

    def solve(self, fields: bool = False) -> PermeabilityResult:
        """The permeability tensor from unit body forces along each axis.

        The forces are solved as one batched CG, in chunks whose fields stay
        below ``max_field_doubles`` (memory on large grids).

        Raises:
            NotConverged: CG missed ``tol`` in ``maxiter`` iterations.
        """
        k = self.k
        N = int(np.prod(self.shape))
        chunk = max(1, min(k, self.max_field_doubles // (k * N)))
        Us, its, rels, vels = [], [], [], []
        for J0 in range(0, k, chunk):
            U, u, it, rel = self._solve_forces(J0, min(k, J0 + chunk), fields)
            Us.append(U)
            its.append(it)
            rels.append(rel)
            if fields:
                vels.append(u)
        Kv = torch.cat(Us).T  # K[i, J] = U_i for f = e_J (mu = 1)
        # full connectivity joins more nodes than faces: it percolates wherever they do
        crossed = self.percolating if all(self.percolating) else percolating_axes(~self.nodes, connectivity="full")
        blocked = torch.tensor([not p for p in crossed])
        Kv[blocked, :] = 0.0  # no net flow along an axis the fluid nodes do not cross
        Kv[:, blocked] = 0.0
        nrm = Kv.norm()
        asym = float((Kv - Kv.T).norm() / nrm) if nrm > 0 else 0.0
        Ksym = 0.5 * (Kv + Kv.T) * self.voxel_size**2
        return PermeabilityResult(
            tensor=Ksym,
            porosity=self.porosity,
            iterations=int(sum(its)),
            residual=torch.cat(rels),
            asymmetry=asym,
            velocity=torch.cat(vels) if fields else None,
            info={
                "percolating_axes": list(self.percolating),
                "solid_node_fraction": self.n_solid / N,
                "voxel_size": self.voxel_size,
                "wall": self.wall,
                "iterations_per_chunk": its,
            },
        )

    def _solve_forces(self, J0: int, J1: int, fields: bool):
        """Darcy velocities ``c x k`` (and node velocities ``c x k x *grid``
        with ``fields``) for unit forces ``J0 .. J1 - 1``."""
        k = self.k
        N = int(np.prod(self.shape))
        nd = k + 1
        S = self.fourier
        eye = torch.eye(k, dtype=DTYPE)[J0:J1].reshape(J1 - J0, k, *([1] * k))
        lam0 = -(N / self.n_solid) * eye * self.chi  # c (forces) x k x *grid
        b = self._from_grid(S(lam0)).neg_()  # c x k x n_solid
        # round-off floor: ||b|| <= ||S|| ||lambda_0||, and a force along a
        # direction the pores do not cross (a slit's normal) gives b = 0 up to
        # round-off of that bound
        smax = float(S.inv_lap.real.max())
        floor = 1e-13 * smax * lam0.square().sum(dim=tuple(range(-nd, 0))).sqrt()
        grid = torch.zeros_like(lam0)  # written on the solid nodes only

        def apply_A(p):
            return self._from_grid(S(self._to_grid(p, grid)))

        if self.preconditioner == "laplacian":
            g, it, rel = preconditioned_cg(
                apply_A, b, self._precondition, self.tol, self.maxiter, ndim_field=2, atol=floor
            )
        else:
            g, it, rel = batched_cg(apply_A, b, self.tol, self.maxiter, ndim_field=2, atol=floor)
        del b
        lam = self._to_grid(g, grid).add_(lam0)
        del lam0
        u = S(lam)
        del lam
        U = -(u * self.chi).sum(dim=tuple(range(-k, 0))) / self.n_solid  # c x k
        vel = u.add_(U.reshape(J1 - J0, k, *([1] * k))).mul_(1.0 - self.chi) if fields else None
        return U, vel, int(it), rel


def permeability(solid, voxel_size: float = 1.0, **kwargs) -> PermeabilityResult:
    """Darcy permeability tensor (``voxel_size^2`` units) of a periodic image.

    Args:
        solid: ``*grid`` bool, True on solid voxels.
        voxel_size: voxel edge in m.
        **kwargs: options of :class:`StokesSolver`.

    Warns:
        NonPeriodicWarning: the image's opposite faces do not match along an axis (a crop of a
            larger sample; see :func:`oracles.transport.topology.periodicity_message`).
    """
    arr = _as_array(solid, "solid mask")
    if arr.ndim in (2, 3) and arr.dtype.kind in "biuf" and np.isin(arr, (0, 1)).all():
        wall = kwargs.get("wall", "half")
        warn_if_not_periodic(arr, "solid mask", pores=lambda im: ~solid_nodes(im, wall) if wall in WALLS else im == 0)
    return StokesSolver(solid, voxel_size, **kwargs).solve()
