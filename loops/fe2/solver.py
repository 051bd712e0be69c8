r"""Quasi-static finite-strain total-Lagrangian FE in 2D plane strain and in 3D.

The macro problem: find the displacement ``u`` with

.. math:: R(u) = \int_{\Omega_0} P(F) : \nabla_0 v \, dV
          - \lambda \int_{\Gamma_t} \bar t \cdot v \, dA = 0, \quad F = I + \nabla_0 u,

for every admissible ``v``, solved by Newton–Raphson with the consistent
tangent :math:`\int \nabla_0 \delta u : A : \nabla_0 v` (``A = dP/dF``),
the load factor :math:`\lambda` stepped from 0 to 1 with cut-back on failure.

Mesh, finite elements, quadrature and boundary dofs come from scikit-fem; the
element arrays are contracted with numpy directly because in a total-Lagrangian
formulation the reference shape-function gradients never change, so they are
computed once and every Newton iteration is two einsums and one sparse solve.

At every Newton iteration **all** Gauss points of the mesh go to the material
provider in one batch: ``F`` (``n_gauss x k x k``, ``k`` = 2 in plane strain
or 3) -> ``P`` and ``A`` (:class:`oracles.material.MaterialModel`), so a
surrogate answers with one vectorized call and an oracle can spread the batch
over workers. The dimension is the mesh's: a 2D mesh (quads, triangles) is
solved in plane strain, a 3D mesh (hexahedra, tetrahedra) in 3D, with the same
code.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import skfem
import torch
from scipy.sparse.linalg import spsolve
from skfem.quadrature import get_quadrature

from loops.fe2.mesh import check_jacobians, default_element, element_for
from oracles.exceptions import NotConverged, OracleError, is_integer
from oracles.material import MaterialModel, MaterialResponse

DTYPE = torch.float64


class ReducedIntegrationWarning(UserWarning):
    """A quadrature order below the element's full order (``DEFAULT_INTORDER``)."""


#: default quadrature order per element family (all weights positive): the full order
DEFAULT_INTORDER = {
    "quad1": 2,
    "quad2": 4,
    "tri1": 1,
    "tri2": 2,
    "hex1": 2,
    "hex2": 4,
    "tet1": 1,
    "tet2": 2,
}


def _add_counts(counts: dict[str, int], info: Any) -> None:
    """Add a provider's ``end_step`` counts (its integer ``n_*`` entries) to ``counts``: a
    step's record counts every attempt of it, the cut-back ones and the sub-increments too."""
    if isinstance(info, dict):
        for k, v in info.items():
            if k.startswith("n_") and isinstance(v, int) and not isinstance(v, bool):
                counts[k] = counts.get(k, 0) + v


@dataclass(frozen=True)
class DirichletBC:
    """Prescribed displacement ``value * load_factor`` of one component on a boundary.

    Attributes:
        boundary: name of a mesh boundary.
        component: 0 (x), 1 (y) or, in 3D, 2 (z).
        value: displacement at load factor 1: a number, or a function of the
            reference coordinates of the boundary's dofs (``k x n`` array) that
            returns their ``n`` values (a non-uniform prescribed field).
    """

    boundary: str
    component: int
    value: float | Callable[[np.ndarray], np.ndarray] = 0.0


@dataclass(frozen=True)
class TractionBC:
    """Nominal (reference-configuration) traction ``traction * load_factor`` on a boundary (``k`` components)."""

    boundary: str
    traction: tuple[float, ...]


@dataclass
class StepRecord:
    """One converged load step.

    Attributes:
        load_factor: the load factor reached.
        u: ``N`` nodal displacements (scikit-fem dof order).
        F: ``n_gauss x k x k`` deformation gradients.
        P: ``n_gauss x k x k`` first Piola-Kirchhoff stress.
        reactions: boundary name -> ``k`` net force of the support on the body
            (internal minus external nodal forces summed over the boundary dofs).
        residuals: the free-dof residual norm at each Newton iteration.
        iterations: Newton iterations taken.
        cutbacks: how often the increment to this step was halved.
        wall_time: seconds spent on this step (failed attempts included).
        material_calls: batched provider calls made for this step (failed attempts included).
        provider: what the provider reported for this step (maps of its last accepted
            sub-increment; its ``n_*`` counts summed over every attempt of the step,
            cut-back ones included), if anything.
    """

    load_factor: float
    u: np.ndarray
    F: np.ndarray
    P: np.ndarray
    reactions: dict[str, np.ndarray]
    residuals: list[float]
    iterations: int
    cutbacks: int
    wall_time: float
    material_calls: int = 0
    provider: dict[str, Any] = field(default_factory=dict)


@dataclass
class SolveResult:
    """The load path of one macro solve."""

    steps: list[StepRecord]
    wall_time: float
    n_material_calls: int
    n_gauss: int

    @property
    def load_factors(self) -> np.ndarray:
        return np.array([s.load_factor for s in self.steps])

    def reaction(self, boundary: str, component: int) -> np.ndarray:
        """``n_steps`` reaction force component on ``boundary`` along the path."""
        return np.array([s.reactions[boundary][component] for s in self.steps])

    @property
    def final(self) -> StepRecord:
        return self.steps[-1]


def _finite(value) -> bool:
    """``value`` is one finite real number: a Python, numpy or 0-d array/tensor value, not a
    ``bool``, string or complex number."""
    if isinstance(value, (bool, str, bytes, complex, np.bool_)) or np.iscomplexobj(value):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _check_rigid_motions(basis, constrained: list[tuple[int, np.ndarray]], k: int) -> None:
    """Raise a ``ValueError`` when the Dirichlet conditions leave a rigid motion free.

    ``constrained``: per condition, its component and dofs. A rigid motion (``k``
    translations and ``k (k - 1) / 2`` infinitesimal rotations ``w x x``) that vanishes at
    every constrained dof makes every tangent singular (there are no springs and
    tractions do not hold a body): linear algebra would fail, or converge on round-off
    with an arbitrary translation. Checked through the rank of the rigid modes at the
    constrained dofs (coordinates centred and scaled by the mesh size)."""
    x = basis.doflocs
    centre = x.mean(axis=1, keepdims=True)
    scale = float(np.ptp(x, axis=1).max()) or 1.0
    names = [f"translation along {'xyz'[i]}" for i in range(k)]
    names += ["rotation in the plane"] if k == 2 else [f"rotation about {'xyz'[i]}" for i in range(3)]
    rows = []
    for c, dofs in constrained:
        p = (x[:, dofs] - centre) / scale  # k x m
        m = dofs.size
        cols = [np.full(m, 1.0 if j == c else 0.0) for j in range(k)]
        if k == 2:  # u = w (-y, x)
            cols.append(-p[1] if c == 0 else p[0])
        else:  # u = e_a x p, component c
            for a in range(3):
                e = np.zeros(3)
                e[a] = 1.0
                cols.append(np.cross(e, p.T)[:, c])
        rows.append(np.stack(cols, -1))
    M = np.concatenate(rows) if rows else np.zeros((0, len(names)))
    _, sv, Vt = np.linalg.svd(M, full_matrices=True)
    sv = np.concatenate([sv, np.zeros(len(names) - sv.size)])
    free = [Vt[i] for i in range(len(names)) if sv[i] <= 1e-8 * max(float(sv.max(initial=0.0)), 1.0)]
    if free:
        v = free[0] / np.abs(free[0]).max()
        what = " + ".join(n for n, a in zip(names, v, strict=True) if abs(a) > 0.3)
        raise ValueError(f"the Dirichlet conditions leave a rigid motion free ({what}): every tangent would be "
                         f"singular; constrain that motion (a component on another boundary or point)")


class MacroSolver:
    """Total-Lagrangian solver on a scikit-fem mesh: plane strain in 2D, or 3D.

    Args:
        mesh: a 2D or 3D scikit-fem mesh with named boundaries.
        material: anything with ``material_response(F) -> MaterialResponse``
            for ``F`` of ``n x k x k`` (``k`` the mesh dimension).
        dirichlet: prescribed displacement components.
        tractions: nominal tractions (``k`` components each).
        element: ``quad1``, ``quad2``, ``tri1``, ``tri2`` (2D) or ``hex1``,
            ``hex2``, ``tet1``, ``tet2`` (3D); default: the mesh's linear element.
        intorder: quadrature order (default per element, see ``DEFAULT_INTORDER``).
        thickness: out-of-plane thickness multiplying forces (2D only).
    """

    def __init__(
        self,
        mesh,
        material: MaterialModel,
        dirichlet: Sequence[DirichletBC],
        tractions: Sequence[TractionBC] = (),
        element: str | None = None,
        intorder: int | None = None,
        thickness: float = 1.0,
    ):
        if not isinstance(material, MaterialModel):
            raise TypeError(
                f"material must have material_response(F), got {type(material).__name__}"
            )
        if mesh.dim() not in (2, 3):
            raise ValueError(f"the macro solver needs a 2D or 3D mesh; got a {mesh.dim()}D mesh")
        k = self.dim = int(mesh.dim())
        if not (_finite(thickness) and float(thickness) > 0):
            raise ValueError(f"thickness must be a positive finite number, got {thickness!r}")
        if k == 3 and float(thickness) != 1.0:
            raise ValueError(f"thickness applies to 2D (plane strain) only; got {thickness} in 3D")
        self.mesh = mesh
        self.material = material
        element = default_element(mesh) if element is None else element
        self.element = element
        self.intorder = DEFAULT_INTORDER[element] if intorder is None else int(intorder)
        self.thickness = float(thickness)
        with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate element: check_jacobians below
            self.basis = skfem.Basis(mesh, element_for(mesh, element), intorder=self.intorder)
        full = get_quadrature(self.basis.elem.refdom, DEFAULT_INTORDER[element])[1].size
        if self.basis.X.shape[-1] < full:
            warnings.warn(
                f"intorder = {self.intorder} under-integrates {element}: {self.basis.X.shape[-1]} "
                f"quadrature points per element against {full} at the full order "
                f"{DEFAULT_INTORDER[element]}; without hourglass control the stiffness can have "
                "zero-energy modes, and the Newton solve may stall or return spurious displacements",
                ReducedIntegrationWarning,
                stacklevel=2,
            )
        # a degenerate element (zero area or volume) would put inf/nan into every gradient and
        # surface as 'an element inverted' from the Newton solve
        check_jacobians(self.basis.mapping.detDF(self.basis.X), "the mesh")
        names = set(mesh.boundaries or {})
        for bc in [*dirichlet, *tractions]:
            if bc.boundary not in names:
                raise ValueError(
                    f"boundary {bc.boundary!r} is not a boundary of the mesh; known: {sorted(names, key=str)}"
                )
            if len(mesh.boundaries[bc.boundary]) == 0:
                raise ValueError(f"boundary {bc.boundary!r} of the mesh has no facets: a condition on it "
                                 "would hold nothing")
        for bc in dirichlet:
            if not (is_integer(bc.component) and bc.component in range(k)):
                raise ValueError(
                    f"Dirichlet component must be in 0..{k - 1} (an integer) for a {k}D mesh, "
                    f"got {bc.component!r}"
                )
            if not callable(bc.value) and not _finite(bc.value):
                raise ValueError(
                    f"Dirichlet value on {bc.boundary!r} (component {bc.component}) must be a finite "
                    f"number or a function of the coordinates, got {bc.value!r}"
                )
        for tb in tractions:
            if len(tb.traction) != k:
                raise ValueError(
                    f"traction on {tb.boundary!r} must have {k} components, got {tuple(tb.traction)}"
                )
            if not all(_finite(c) for c in tb.traction):
                raise ValueError(
                    f"traction on {tb.boundary!r} must have finite real components, got {tuple(tb.traction)}"
                )
        if not dirichlet:
            raise ValueError("at least one Dirichlet condition is needed to remove rigid motions")
        self.dirichlet = list(dirichlet)
        self.tractions = list(tractions)

        b = self.basis
        self.nelems, self.nqp = b.nelems, b.X.shape[-1]
        self.n_gauss = self.nelems * self.nqp
        # reference gradients of the vector shape functions: Nbfun x k x k x nel x nqp
        G = np.stack([b.basis[a][0].grad for a in range(b.Nbfun)])
        self._dx = b.dx * self.thickness  # nel x nqp
        self._edofs = b.element_dofs  # Nbfun x nel
        nb = b.Nbfun
        # global (row, col) of each element-stiffness entry, ordered (element, a, b)
        self._rows = np.broadcast_to(self._edofs.T[:, :, None], (self.nelems, nb, nb)).ravel()
        self._cols = np.broadcast_to(self._edofs.T[:, None, :], (self.nelems, nb, nb)).ravel()
        # the same gradients per Gauss point as B matrices (n_gauss x Nbfun x k*k, row-major ij),
        # so F, f_int and the element stiffnesses are batched matmuls with no einsum planning
        self._B = np.ascontiguousarray(G.transpose(3, 4, 0, 1, 2).reshape(self.n_gauss, nb, k * k))
        self._Bw = self._B * self._dx.reshape(self.n_gauss)[:, None, None]
        self._gdofs = np.repeat(self._edofs.T, self.nqp, axis=0)  # n_gauss x Nbfun

        # Dirichlet dofs and their values at load factor 1
        self._bc_dofs: dict[str, np.ndarray] = {}
        D, vals = [], []
        for bc in self.dirichlet:
            # nodal, and for quadratic elements facet and edge dofs too
            dofs = b.get_dofs(bc.boundary).all(f"u^{bc.component + 1}")
            D.append(dofs)
            if callable(bc.value):
                v = np.asarray(bc.value(b.doflocs[:, dofs]), dtype=float)
                if v.shape != (dofs.size,):
                    raise ValueError(
                        f"Dirichlet value on {bc.boundary!r} returned shape {v.shape}; "
                        f"expected ({dofs.size},) for {dofs.size} dofs"
                    )
                if not np.isfinite(v).all():
                    bad = np.flatnonzero(~np.isfinite(v))
                    raise ValueError(
                        f"Dirichlet value on {bc.boundary!r} (component {bc.component}) returned "
                        f"{v[bad[0]]} at {b.doflocs[:, dofs[bad[0]]].tolist()} ({bad.size} of "
                        f"{dofs.size} dofs not finite)"
                    )
                vals.append(v)
            else:
                vals.append(np.full(dofs.size, float(bc.value)))
        self._constrained = [(bc.component, d) for bc, d in zip(self.dirichlet, D, strict=True)]
        D = np.concatenate(D)
        vals = np.concatenate(vals)
        # a dof named twice keeps its last value, as in a list of assignments
        self.D, first = np.unique(D[::-1], return_index=True)
        self.uD = vals[::-1][first]
        self.free = np.setdiff1d(np.arange(b.N), self.D)
        self._setup_reduced_assembly()

        # external load vector at load factor 1
        self.f_ext = np.zeros(b.N)
        for tb in self.tractions:
            fb = skfem.FacetBasis(
                mesh, b.elem, facets=mesh.boundaries[tb.boundary], intorder=self.intorder + 1
            )
            t = tuple(float(c) for c in tb.traction)

            @skfem.LinearForm
            def load(v, w, t=t):
                return sum(tc * v.value[i] for i, tc in enumerate(t))

            self.f_ext += self.thickness * load.assemble(fb)

        # every named boundary can report its reaction
        self._reaction_dofs = {}
        for name in mesh.boundaries:
            dofs = b.get_dofs(name)
            comps = [np.unique(dofs.all(f"u^{c + 1}")) for c in range(k)]
            self._reaction_dofs[name] = comps
        self.n_material_calls = 0

    #: free-dof count up to which the Newton system is assembled and factorized
    #: dense (LAPACK beats SuperLU's per-call overhead on a few hundred dofs)
    DENSE_MAX_DOFS = 400
    #: largest block of dense Newton systems (bytes) a batched solve (:meth:`solve_batch`) builds at once
    DENSE_BATCH_BYTES = 2**27

    def _setup_reduced_assembly(self) -> None:
        """Index maps from element-stiffness entries to the free-free system and the free-Dirichlet block.

        Entries are ordered ``(element, a, b)`` as produced by :meth:`_element_stiffness`.
        """
        N, rows, cols = self.basis.N, self._rows, self._cols
        fidx = np.full(N, -1, dtype=np.int64)
        fidx[self.free] = np.arange(self.free.size)
        didx = np.full(N, -1, dtype=np.int64)
        didx[self.D] = np.arange(self.D.size)
        fr, fc, dc = fidx[rows], fidx[cols], didx[cols]
        nf = self.free.size
        self._ff = np.flatnonzero((fr >= 0) & (fc >= 0))
        self._fd = np.flatnonzero((fr >= 0) & (dc >= 0))
        self._fd_rows, self._fd_cols = fr[self._fd], dc[self._fd]
        self._dense = nf <= self.DENSE_MAX_DOFS
        if self._dense:
            self._ff_flat = fr[self._ff] * nf + fc[self._ff]
        else:
            # CSC pattern of K_ff: unique (col, row) keys in column-major order
            keys = fc[self._ff] * nf + fr[self._ff]
            ukeys, self._ff_inv = np.unique(keys, return_inverse=True)
            self._csc_indices = (ukeys % nf).astype(np.int32)
            counts = np.bincount(ukeys // nf, minlength=nf)
            self._csc_indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)

    def _element_stiffness(self, A: np.ndarray) -> np.ndarray:
        """``nel x Nbfun x Nbfun`` element tangents of Gauss-point tangents ``A``."""
        kk = self.dim * self.dim
        Ke = self._Bw @ A.reshape(self.n_gauss, kk, kk) @ self._B.transpose(0, 2, 1)
        nb = self._B.shape[1]
        return Ke.reshape(self.nelems, self.nqp, nb, nb).sum(1)

    def check_supports(self) -> None:
        """Raise a ``ValueError`` when the Dirichlet conditions leave a rigid motion free
        (see :func:`_check_rigid_motions`); :meth:`solve` and :meth:`solve_batch` check first."""
        _check_rigid_motions(self.basis, self._constrained, self.dim)

    def _newton_increment(self, A: np.ndarray, R: np.ndarray, dD: np.ndarray | None) -> np.ndarray:
        """Free-dof increment solving ``K_ff du_f = -R_f - K_fD du_D`` (``dD``: ``du_D`` or None)."""
        Ke = self._element_stiffness(A).ravel()
        nf = self.free.size
        rhs = -R[self.free]
        if dD is not None and np.any(dD):
            rhs -= np.bincount(
                self._fd_rows, weights=Ke[self._fd] * dD[self._fd_cols], minlength=nf
            )
        if self._dense:
            K = np.bincount(self._ff_flat, weights=Ke[self._ff], minlength=nf * nf)
            try:
                return np.linalg.solve(K.reshape(nf, nf), rhs)
            except np.linalg.LinAlgError:
                # a singular tangent: the non-finite step makes Newton fail and cut back
                return np.full(nf, np.nan)
        data = np.bincount(self._ff_inv, weights=Ke[self._ff], minlength=self._csc_indices.size)
        K = sp.csc_matrix((data, self._csc_indices, self._csc_indptr), shape=(nf, nf))
        return spsolve(K, rhs)

    # ------------------------------------------------------------ kinematics
    def deformation_gradient(self, u: np.ndarray) -> np.ndarray:
        """``n_gauss x k x k`` deformation gradients of nodal displacements ``u`` (``N``)."""
        k = self.dim
        grad = (u[self._gdofs][:, None, :] @ self._B)[:, 0, :]
        return (grad + np.eye(k).ravel()).reshape(self.n_gauss, k, k)

    def gauss_points(self) -> np.ndarray:
        """``n_gauss x k`` reference coordinates of the Gauss points (same order as ``F``)."""
        X = self.basis.mapping.F(self.basis.X)  # k x nel x nqp
        return X.transpose(1, 2, 0).reshape(self.n_gauss, self.dim)

    def gauss_weights(self) -> np.ndarray:
        """``n_gauss`` reference volume of each Gauss point (weight x Jacobian x thickness in 2D)."""
        return self._dx.reshape(self.n_gauss)

    def evaluate_material(self, F: np.ndarray) -> MaterialResponse:
        """One batched provider call, with its answer checked."""
        Ft = torch.as_tensor(F, dtype=DTYPE)
        self.n_material_calls += 1
        resp = self.material.material_response(Ft)
        n, k = F.shape[0], self.dim
        P = torch.as_tensor(resp.P, dtype=DTYPE)
        A = torch.as_tensor(resp.tangent, dtype=DTYPE)
        if P.shape != (n, k, k) or A.shape != (n, k, k, k, k):
            # a broken contract, not a state a smaller load step avoids: no cut-back retries it
            raise ValueError(
                f"the material returned P {tuple(P.shape)} and tangent {tuple(A.shape)}; "
                f"expected ({n}, {k}, {k}) and ({n}, {k}, {k}, {k}, {k})"
            )
        ok = torch.isfinite(P).flatten(1).all(1) & torch.isfinite(A).flatten(1).all(1)
        if not ok.all():
            bad = (~ok).nonzero().flatten()
            g = int(bad[0])
            X = self.gauss_points()[g] if n == self.n_gauss else None
            where = f" at X = {np.round(X, 6).tolist()}" if X is not None else ""
            raise OracleError(
                f"the material returned non-finite stress or tangent at {bad.numel()} of {n} Gauss points "
                f"(first: point {g}{where}, F = {np.round(np.asarray(F[g]), 6).tolist()})"
            )
        return MaterialResponse(P, A, resp.variance)

    # -------------------------------------------------------------- assembly
    def internal_force(self, P: np.ndarray) -> np.ndarray:
        """``N`` nodal internal forces of Gauss-point stresses ``P`` (``n_gauss x k x k``)."""
        fg = (self._Bw @ P.reshape(self.n_gauss, self.dim**2, 1))[..., 0]  # n_gauss x Nbfun
        return np.bincount(self._gdofs.ravel(), weights=fg.ravel(), minlength=self.basis.N)

    def stiffness(self, A: np.ndarray) -> sp.csr_matrix:
        """``N x N`` consistent tangent of Gauss-point tangents ``A`` (``n_gauss x k x k x k x k``)."""
        N = self.basis.N
        Ke = self._element_stiffness(A).ravel()
        return sp.coo_matrix((Ke, (self._rows, self._cols)), shape=(N, N)).tocsr()

    def reactions(self, f_int: np.ndarray, load_factor: float) -> dict[str, np.ndarray]:
        """Boundary name -> ``k`` net support force (internal minus applied nodal force)."""
        r = f_int - load_factor * self.f_ext
        return {
            name: np.array([r[d].sum() for d in comps])
            for name, comps in self._reaction_dofs.items()
        }

    # --------------------------------------------------------------- solving
    def _newton(self, u0, lam, max_iter, rtol, atol, start=None):
        """Equilibrium at load factor ``lam`` from ``u0``; returns (u, F, resp, f_int, residuals).

        ``start`` = ``(F, resp)`` already evaluated at ``u0`` (the last converged
        state) saves the first provider call of the step: with an RVE oracle
        that is one full FE² sweep per load step.
        """
        u = u0.copy()
        target = lam * self.uD
        residuals: list[float] = []
        for k in range(max_iter + 1):
            if k == 0 and start is not None:
                F, resp = start
            else:
                F = self.deformation_gradient(u)
                if not np.all(np.linalg.det(F) > 0):
                    raise NotConverged(f"an element inverted at load factor {lam:.4g}", k)
                resp = self.evaluate_material(F)
            P, A = resp.P.numpy(), resp.tangent.numpy()
            f_int = self.internal_force(P)
            R = f_int - lam * self.f_ext
            rnorm = float(np.linalg.norm(R[self.free]))
            residuals.append(rnorm)
            # the largest residual of the step keeps the scale from vanishing at
            # tiny loads, where round-off of a surrogate would set the floor
            scale = max(
                float(np.linalg.norm(f_int)),
                float(np.linalg.norm(lam * self.f_ext)),
                max(residuals),
            )
            dirichlet_done = np.allclose(u[self.D], target, rtol=0, atol=1e-15)
            if dirichlet_done and rnorm <= max(rtol * scale, atol):
                return u, F, resp, f_int, residuals
            if not math.isfinite(rnorm):
                raise NotConverged(f"non-finite residual at load factor {lam:.4g}", k, rnorm)
            if k == max_iter:
                break
            du = np.zeros_like(u)
            du[self.D] = target - u[self.D]
            du[self.free] = self._newton_increment(A, R, du[self.D])
            u += du
        raise NotConverged(
            f"Newton did not converge at load factor {lam:.4g} in {max_iter} iterations "
            f"(residual {residuals[-1]:.3e})",
            max_iter,
            residuals[-1],
        )

    def solve(
        self,
        n_steps: int = 10,
        max_iter: int = 20,
        rtol: float = 1e-9,
        atol: float = 1e-12,
        max_cutbacks: int = 8,
        load_factors: Sequence[float] | None = None,
        callback=None,
    ) -> SolveResult:
        """Step the load factor from 0 to 1.

        Args:
            n_steps: equal increments (ignored when ``load_factors`` is given).
            max_iter: Newton iterations per step before a cut-back.
            rtol: convergence when the free-dof residual norm is below ``rtol``
                times the larger of the internal force norm and the largest
                residual of the step (or below ``atol``).
            atol: absolute residual floor.
            max_cutbacks: total halvings of the increment allowed.
            load_factors: explicit increasing target load factors (ending at 1
                or wherever the path should end); steps are recorded at these.
            callback: called with each accepted :class:`StepRecord`.

        A step fails when Newton does not converge, an element inverts or the
        provider raises an :class:`~oracles.exceptions.OracleError`; the
        increment is then halved and retried from the last accepted state.
        Providers with ``begin_step(load_factor)`` / ``end_step(accepted)``
        hooks are told about each attempt (the adaptive switch learns there).

        Raises:
            NotConverged: when ``max_cutbacks`` halvings were not enough.
        """
        targets = _load_targets(n_steps, load_factors)
        _check_newton(max_iter, rtol, atol, max_cutbacks)
        self.check_supports()
        t_start = time.perf_counter()
        calls0 = self.n_material_calls
        u = np.zeros(self.basis.N)
        lam = 0.0
        steps: list[StepRecord] = []
        cutbacks_total = 0
        begin = getattr(self.material, "begin_step", None)
        end = getattr(self.material, "end_step", None)
        start = None  # (F, response) at the last converged state
        for target in targets:
            t0 = time.perf_counter()
            calls_before = self.n_material_calls
            cut_here = 0
            counts: dict[str, int] = {}  # the provider's counts over every attempt of this step
            # sub-increments towards the target after a cut-back
            sub = target
            while lam < target - 1e-14:
                if begin is not None:
                    begin(sub)
                try:
                    u_new, F, resp, f_int, res = self._newton(u, sub, max_iter, rtol, atol, start)
                except OracleError as e:
                    if end is not None:
                        _add_counts(counts, end(False))
                    cutbacks_total += 1
                    cut_here += 1
                    if cutbacks_total > max_cutbacks:
                        raise NotConverged(
                            f"gave up at load factor {lam:.4g} after {cutbacks_total - 1} "
                            f"cut-backs; last failure: {e}"
                        ) from e
                    sub = lam + 0.5 * (sub - lam)
                    continue
                info = end(True) if end is not None else None
                _add_counts(counts, info)
                u, lam = u_new, sub
                start = (F, resp)
                sub = target
            rec = StepRecord(
                load_factor=lam,
                u=u.copy(),
                F=F,
                P=resp.P.numpy().copy(),
                reactions=self.reactions(f_int, lam),
                residuals=res,
                iterations=len(res) - 1,
                cutbacks=cut_here,
                wall_time=time.perf_counter() - t0,
                material_calls=self.n_material_calls - calls_before,
                provider={**info, **counts} if isinstance(info, dict) else {},
            )
            steps.append(rec)
            if callback is not None:
                callback(rec)
        return SolveResult(
            steps=steps,
            wall_time=time.perf_counter() - t_start,
            n_material_calls=self.n_material_calls - calls0,
            n_gauss=self.n_gauss,
        )

    # ----------------------------------------------------- batched solving
    def _batch_setup(self) -> None:
        """Sparse scatter maps for batched assembly (built on first use)."""
        if getattr(self, "_scatter_f", None) is not None:
            return
        nb = self._B.shape[1]
        cols = np.arange(self.n_gauss * nb)
        self._scatter_f = sp.csr_matrix(
            (np.ones(cols.size), (self._gdofs.ravel(), cols)), shape=(self.basis.N, cols.size)
        )
        if self._dense:
            nf, nnz = self.free.size, self._ff.size
            self._scatter_ff = sp.csr_matrix(
                (np.ones(nnz), (self._ff_flat, np.arange(nnz))), shape=(nf * nf, nnz)
            )
        nfd = self._fd.size
        self._scatter_fd = sp.csr_matrix(
            (np.ones(nfd), (self._fd_rows, np.arange(nfd))), shape=(self.free.size, nfd)
        )

    def _batch_deformation_gradient(self, u: np.ndarray) -> np.ndarray:
        """``B x n_gauss x k x k`` deformation gradients of ``B x N`` displacements."""
        k = self.dim
        grad = (u[:, self._gdofs][:, :, None, :] @ self._B)[:, :, 0, :]
        return (grad + np.eye(k).ravel()).reshape(u.shape[0], self.n_gauss, k, k)

    def _batch_internal_force(self, P: np.ndarray) -> np.ndarray:
        """``B x N`` internal forces of ``B x n_gauss x k x k`` stresses."""
        self._batch_setup()
        Bn = P.shape[0]
        fg = (self._Bw @ P.reshape(Bn, self.n_gauss, self.dim**2, 1))[..., 0]  # B x n x Nbfun
        return np.asarray((self._scatter_f @ fg.reshape(Bn, -1).T).T)

    def _batch_increments(self, A: np.ndarray, R: np.ndarray, dD: np.ndarray) -> np.ndarray:
        """``B x n_free`` Newton increments of ``B`` members (batched LAPACK when dense)."""
        self._batch_setup()
        Bn, kk, nb = A.shape[0], self.dim**2, self._B.shape[1]
        Ke = self._Bw @ A.reshape(Bn, self.n_gauss, kk, kk) @ self._B.transpose(0, 2, 1)
        Ke = Ke.reshape(Bn, self.nelems, self.nqp, nb, nb).sum(2).reshape(Bn, -1)
        rhs = -R[:, self.free] - np.asarray(
            (self._scatter_fd @ (Ke[:, self._fd] * dD[:, self._fd_cols]).T).T
        )
        if not self._dense:
            out = np.empty_like(rhs)
            for b in range(Bn):
                data = np.bincount(
                    self._ff_inv, weights=Ke[b, self._ff], minlength=self._csc_indices.size
                )
                K = sp.csc_matrix(
                    (data, self._csc_indices, self._csc_indptr), shape=(nf := self.free.size, nf)
                )
                out[b] = spsolve(K, rhs[b])
            return out
        nf = self.free.size
        # the dense systems of at most DENSE_BATCH_BYTES at once (1000 members at 400 free dofs
        # would hold 1.3 GB); each member's solve is the same LAPACK call whatever the chunk
        step = max(1, int(self.DENSE_BATCH_BYTES // max(1, 8 * nf * nf)))  # nf = 0: every dof prescribed
        out = np.empty_like(rhs)
        for lo in range(0, Bn, step):
            sl = slice(lo, min(Bn, lo + step))
            K = np.asarray((self._scatter_ff @ Ke[sl, self._ff].T).T).reshape(sl.stop - lo, nf, nf)
            try:
                out[sl] = np.linalg.solve(K, rhs[sl, :, None])[..., 0]
            except np.linalg.LinAlgError:
                out[sl] = np.nan
        return out

    def solve_batch(
        self,
        response,
        n_batch: int,
        n_steps: int = 10,
        max_iter: int = 20,
        rtol: float = 1e-9,
        atol: float = 1e-12,
        max_cutbacks: int = 8,
        load_factors: Sequence[float] | None = None,
    ) -> list[SolveResult]:
        """``B`` macro problems that differ only in their material, solved side by side.

        Member ``b`` has the mesh, boundary conditions and load path of this
        solver and its own material; every Newton iteration evaluates all
        members' Gauss points in one call ``response(F) -> (P, A)`` with ``F``
        ``B x n_gauss x k x k``, ``P`` ``B x n_gauss x k x k`` and ``A``
        ``B x n_gauss x k x k x k x k`` (for example all posterior function
        samples of a surrogate at once). Each member iterates until its own
        residual meets the criterion of :meth:`solve`; load steps and
        cut-backs are shared.

        Returns:
            one :class:`SolveResult` per member (``material_calls`` counts the
            batched calls, ``wall_time`` is the batch's).

        Raises:
            NotConverged: when ``max_cutbacks`` halvings were not enough for
                every member (the message names the failing members).
        """
        B = int(n_batch)
        if B < 1:
            raise ValueError(f"n_batch must be >= 1, got {n_batch}")
        targets = _load_targets(n_steps, load_factors)
        _check_newton(max_iter, rtol, atol, max_cutbacks)
        self.check_supports()
        k, n = self.dim, self.n_gauss
        t_start = time.perf_counter()
        calls = [0]

        def evaluate(u):
            F = self._batch_deformation_gradient(u)
            if not np.all(np.linalg.det(F) > 0):
                bad = np.flatnonzero(~np.all(np.linalg.det(F) > 0, axis=1))
                raise NotConverged(f"an element inverted in batch members {bad.tolist()[:10]}")
            calls[0] += 1
            P, A = response(torch.as_tensor(F, dtype=DTYPE))
            P = torch.as_tensor(P, dtype=DTYPE).numpy()
            A = torch.as_tensor(A, dtype=DTYPE).numpy()
            if P.shape != (B, n, k, k) or A.shape != (B, n, k, k, k, k):
                raise ValueError(
                    f"the batched material returned P {P.shape} and tangent {A.shape}; "
                    f"expected {(B, n, k, k)} and {(B, n, k, k, k, k)}"
                )
            if not (np.isfinite(P).all() and np.isfinite(A).all()):
                bad = np.flatnonzero(
                    ~(np.isfinite(P).all((1, 2, 3)) & np.isfinite(A).all((1, 2, 3, 4, 5)))
                )
                raise NotConverged(
                    f"non-finite stress or tangent in batch members {bad.tolist()[:10]}"
                )
            return F, P, A

        def newton(u0, lam, start):
            u = u0.copy()
            target = lam * self.uD
            res = [[] for _ in range(B)]
            done = np.zeros(B, dtype=bool)
            for it in range(max_iter + 1):
                F, P, A = start if (it == 0 and start is not None) else evaluate(u)
                f_int = self._batch_internal_force(P)
                R = f_int - lam * self.f_ext
                for b in range(B):
                    if done[b]:
                        continue
                    rnorm = float(np.linalg.norm(R[b, self.free]))
                    res[b].append(rnorm)
                    scale = max(
                        float(np.linalg.norm(f_int[b])),
                        float(np.linalg.norm(lam * self.f_ext)),
                        max(res[b]),
                    )
                    ok_d = np.allclose(u[b, self.D], target, rtol=0, atol=1e-15)
                    if not math.isfinite(rnorm):
                        raise NotConverged(f"non-finite residual in batch member {b} at {lam:.4g}")
                    done[b] = ok_d and rnorm <= max(rtol * scale, atol)
                if done.all():
                    return u, (F, P, A), f_int, res
                if it == max_iter:
                    break
                act = np.flatnonzero(~done)
                du = np.zeros((act.size, self.basis.N))
                du[:, self.D] = target - u[act][:, self.D]
                du[:, self.free] = self._batch_increments(A[act], R[act], du[:, self.D])
                u[act] += du
            raise NotConverged(
                f"Newton did not converge at load factor {lam:.4g} in {max_iter} iterations "
                f"for batch members {np.flatnonzero(~done).tolist()[:10]}"
            )

        u = np.zeros((B, self.basis.N))
        lam, cut_total, start = 0.0, 0, None
        history: list[list[StepRecord]] = [[] for _ in range(B)]
        for target in targets:
            t0, calls0, cut_here, sub = time.perf_counter(), calls[0], 0, target
            while lam < target - 1e-14:
                try:
                    u_new, state, f_int, res = newton(u, sub, start)
                except (OracleError, np.linalg.LinAlgError) as e:
                    cut_total += 1
                    cut_here += 1
                    if cut_total > max_cutbacks:
                        raise NotConverged(
                            f"gave up at load factor {lam:.4g} after {cut_total - 1} cut-backs; "
                            f"last failure: {e}"
                        ) from e
                    sub = lam + 0.5 * (sub - lam)
                    continue
                u, lam, start, sub = u_new, sub, state, target
            F, P, _ = start
            for b in range(B):
                history[b].append(
                    StepRecord(
                        load_factor=lam,
                        u=u[b].copy(),
                        F=F[b],
                        P=P[b].copy(),
                        reactions=self.reactions(f_int[b], lam),
                        residuals=res[b],
                        iterations=len(res[b]) - 1,
                        cutbacks=cut_here,
                        wall_time=time.perf_counter() - t0,
                        material_calls=calls[0] - calls0,
                    )
                )
        wall = time.perf_counter() - t_start
        return [
            SolveResult(steps=h, wall_time=wall, n_material_calls=calls[0], n_gauss=n)
            for h in history
        ]

    # ------------------------------------------------------- sensitivities
    def reaction_influence(self, u: np.ndarray, A: np.ndarray, boundary: str, component: int):
        r"""``n_gauss`` weights ``w_g |\nabla z_g|`` bounding a reaction's sensitivity to stress errors.

        With displacement control, a stress error :math:`\delta P` at the Gauss
        points changes the reaction :math:`R = e \cdot \sum f_{int}` on
        ``boundary`` by :math:`\delta R = \int \delta P : \nabla z` to first
        order, where ``z`` is the linearized response (tangent ``A`` at state
        ``u``) to a unit prescribed displacement of ``boundary`` in
        ``component`` with the other Dirichlet dofs held (the adjoint of the
        reaction functional). Hence
        :math:`|\delta R| \le \sum_g w_g |\nabla z_g|_F |\delta P_g|_F`, the bound
        :func:`loops.fe2.switch.tolerance_for_reaction` inverts.
        """
        K = self.stiffness(A)
        z = np.zeros(self.basis.N)
        loaded = self._reaction_dofs[boundary][component]
        z[np.intersect1d(loaded, self.D)] = 1.0
        rhs = -K[self.free][:, self.D] @ z[self.D]
        z[self.free] = spsolve(K[self.free][:, self.free].tocsc(), rhs)
        gz = self.deformation_gradient(z) - np.eye(self.dim)
        return self.gauss_weights() * np.linalg.norm(gz.reshape(self.n_gauss, -1), axis=1)


def _check_newton(max_iter, rtol, atol, max_cutbacks) -> None:
    """A ``ValueError`` naming a Newton setting of :meth:`MacroSolver.solve` that is not usable."""
    if not (is_integer(max_iter) and max_iter >= 1):
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    if not (is_integer(max_cutbacks) and max_cutbacks >= 0):
        raise ValueError(f"max_cutbacks must be an integer >= 0, got {max_cutbacks!r}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (_finite(v) and float(v) >= 0):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def _load_targets(n_steps: int, load_factors) -> list[float]:
    """The increasing target load factors of a solve: ``load_factors`` checked, or ``n_steps`` equal steps to 1."""
    if load_factors is None:
        if not (is_integer(n_steps) and n_steps >= 1):
            raise ValueError(f"n_steps must be an integer >= 1, got {n_steps!r}")
        return list(np.linspace(0, 1, n_steps + 1)[1:])
    targets = [float(x) for x in load_factors]
    if not targets or not all(math.isfinite(b) and b > a for a, b in zip([0.0, *targets], targets, strict=False)):
        raise ValueError(f"load_factors must be finite and increase from above 0, got {targets}")
    return targets
