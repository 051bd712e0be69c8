r"""Fourier-Galerkin (projection) FFT homogenization of periodic RVEs, solved by
Newton-Krylov: :class:`FFTSolver`.

The unknown is a gradient field on a periodic voxel grid: the strain ``eps``
(small strain) or the deformation gradient ``F`` (finite strain). Its mean is
fixed by the macro load; its fluctuation lives in the space of compatible
(curl-free, zero-mean) fields, onto which the projection ``G`` maps.
Equilibrium is ``G(P(F)) = 0`` (Zeman et al. 2010; de Geus et al. 2017,
"Finite strain FFT-based non-linear solvers made simple", CMAME 318).

The parts, each in its own module:

* :mod:`oracles.rve.fft`: real FFT back ends (pocketfft, FFTW through pyFFTW,
  torch) and the base of Fourier-space operators;
* :mod:`oracles.rve.fields`: component storage of tensor fields (Mandel
  vectors for small strain, all ``k^2`` components for finite strain) and the
  tangent operators on them;
* :mod:`oracles.rve.projection`: the projection ``G``, the reference-medium
  preconditioner and the preconditioned CG solve for a compatible fluctuation;
* :mod:`oracles.rve.krylov`: batched conjugate gradients;
* :mod:`oracles.rve.newton`: Newton and load-path continuation.

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

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from oracles.base import not_real_kind
from oracles.exceptions import InvalidInput, NotConverged, is_integer, is_real
from oracles.rve.fields import ComponentBasis, DenseTangent, IsotropicTangent, mandel_basis
from oracles.rve.krylov import IndefiniteOperator, batched_cg
from oracles.rve.laws import FiniteStrainLaw, IsotropicElastic, SmallStrainLaw
from oracles.rve.newton import continuation, newton
from oracles.rve.projection import Projection, ReferenceMedium, solve_fluctuation

DTYPE = torch.float64

__all__ = ["FFTSolver", "HomogenizationResult", "IndefiniteOperator", "batched_cg", "mandel_basis"]


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
def law_list(phases) -> list:
    """``phases`` (a sequence of laws, one per phase id) as a non-empty list, else InvalidInput."""
    if isinstance(phases, (SmallStrainLaw, FiniteStrainLaw, str, bytes)) or not hasattr(phases, "__iter__"):
        raise InvalidInput(f"phases must be a list of laws, one per phase id, got {phases!r}")
    phases = list(phases)
    if not phases:
        raise InvalidInput("phases must hold at least one law, got an empty list")
    return phases


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
        if not bool(torch.isfinite(pm).all()):
            raise InvalidInput("phase map must hold integer phase ids, got non-finite values (NaN or inf)")
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
            :class:`~oracles.rve.projection.ReferenceMedium`); ``"none"``:
            plain CG on ``G K``.
        fft: CPU FFT back end: ``"auto"`` (FFTW via pyFFTW when installed,
            else scipy's pocketfft), ``"scipy"``, ``"fftw"``
            (``FFTW_ESTIMATE`` plans) or ``"fftw-measure"`` (``FFTW_MEASURE``:
            slow to plan, for long runs on one grid); see
            :class:`~oracles.rve.fft.RealFFT`.
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
        phases = law_list(phases)
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
            if not (is_real(v) and 0 < v < 1):
                raise InvalidInput(f"{name} must lie in (0, 1), got {v!r}")
        for name, v in (("cg_maxiter", cg_maxiter), ("newton_maxiter", newton_maxiter)):
            if not (is_integer(v) and v >= 1):
                raise InvalidInput(f"{name} must be a positive integer, got {v!r}")
        cg_maxiter, newton_maxiter = int(cg_maxiter), int(newton_maxiter)
        self.kind = kinds.pop()
        self.phases = phases
        self.phase_map = _as_phase_map(phase_map, len(phases))
        self.shape = tuple(self.phase_map.shape)
        self.k = len(self.shape)
        self.cg_tol, self.cg_maxiter = float(cg_tol), cg_maxiter
        self.newton_tol, self.newton_maxiter = float(newton_tol), newton_maxiter
        try:
            self.device = torch.device(device) if device is not None else torch.device("cpu")
        except (RuntimeError, TypeError):
            raise InvalidInput(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise InvalidInput(f"device {device!r} is not available here: this torch {torch.__version__} sees no CUDA GPU")
        self.dtype = dtype
        self.basis = ComponentBasis(self.kind, self.k)
        self.m = self.basis.m
        self.G = Projection(self.shape, self.basis, self.device, dtype, fft)
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
        self._lin_ref: ReferenceMedium | None = None
        #: largest CG field (doubles) of a batched tangent solve; more RHS are chunked
        self.max_field_doubles = 2**18
        #: Newton solves of this many bytes (estimated) or fewer run whole without asking the
        #: machine for its available memory; larger batches of loads are cut to what is available
        self.memory_budget = 2**30
        self._unit_cache: tuple | None = None

    # --------------------------------------------------------------- helpers
    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    def _mean(self, x: Tensor) -> Tensor:
        return x.mean(dim=tuple(range(-self.k, 0)))

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
                self._lin_tangent = IsotropicTangent(lam[pm], 2.0 * mu[pm], k)
                present = torch.tensor([v.numel() > 0 for v in self._voxels])
                self._lin_ref = ReferenceMedium.from_moduli(
                    self.kind, k, lam[present.to(lam.device)], mu[present.to(mu.device)]
                )
            else:
                Cm = torch.stack(
                    [self.basis.mat(p.stiffness(k, self.dtype, self.device)) for p in self.phases]
                )  # P x m x m
                present = [i for i, v in enumerate(self._voxels) if v.numel() > 0]
                self._lin_ref = ReferenceMedium.fit(self.kind, k, Cm[present])
                K = Cm[pm]  # *grid x m x m
                K = K.permute(*range(k, k + 2), *range(k)).unsqueeze(0)
                self._lin_tangent = DenseTangent(K.contiguous())
            if self.preconditioner == "none":
                self._lin_ref = None
        return self._lin_tangent

    def constitutive(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Stress ``L x m x *grid`` and tangent ``L x m x m x *grid`` at fields ``L x m x *grid``."""
        k, m, L = self.k, self.m, X.shape[0]
        N = self.n_voxels
        Xv = X.reshape(L, m, N).transpose(1, 2)  # L x N x m
        T = self.basis.ten(Xv)  # L x N x k x k
        S = torch.empty_like(Xv)
        Kt = Xv.new_empty(L, N, m, m)
        for p, law in enumerate(self.phases):
            vox = self._voxels[p]
            if vox.numel() == 0:
                continue
            s, c = law.stress_tangent(T[:, vox].reshape(-1, k, k))
            S[:, vox] = self.basis.vec(s).reshape(L, -1, m)
            Kt[:, vox] = self.basis.mat(c).reshape(L, -1, m, m)
        S = S.transpose(1, 2).reshape(L, m, *self.shape)
        Kt = Kt.permute(0, 2, 3, 1).reshape(L, m, m, *self.shape)
        return S, Kt

    def solve_fluctuation(
        self, Kop, s: Tensor, ref: ReferenceMedium | None, atol: Tensor | float = 0.0
    ) -> tuple[Tensor, int, Tensor]:
        """The compatible fluctuation ``dX`` with ``G K dX = -G s`` at this
        solver's CG tolerance (see :func:`~oracles.rve.projection.solve_fluctuation`)."""
        return solve_fluctuation(self.G, Kop, s, ref, self.cg_tol, self.cg_maxiter, atol)

    def reference_for(self, K: Tensor) -> ReferenceMedium | None:
        """The reference medium fitted to tangent ``K`` (``L x m x m x *grid``),
        or None without preconditioner."""
        if self.preconditioner == "none":
            return None
        return ReferenceMedium.fit(self.kind, self.k, K)

    def _unit(self) -> Tensor:
        return torch.eye(self.m, dtype=self.dtype, device=self.device)

    # ---------------------------------------------------------- validation
    def _check_loads(self, load) -> Tensor:
        name = "strain" if self.kind == "small" else "F"
        kind = not_real_kind(load)
        if kind is not None:
            raise InvalidInput(f"macro {name} must hold real numbers, got {kind} values {str(load)[:120]}")
        if not isinstance(load, Tensor):
            try:
                load = torch.as_tensor(load, dtype=self.dtype)
            except (TypeError, ValueError) as e:
                raise InvalidInput(f"macro {name} must be numeric, got {load!r}") from e
        load = load.to(self.dtype).to(self.device)
        if load.dim() == 2:
            load = load.unsqueeze(0)
        k = self.k
        if load.dim() != 3 or load.shape[-2:] != (k, k) or load.shape[0] == 0:
            raise InvalidInput(
                f"macro {name} must have shape L x {k} x {k} (L >= 1) for this {k}D grid, got {tuple(load.shape)}"
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

    def _unit_columns(self, Kop, L: int, ref: ReferenceMedium | None = None) -> tuple[Tensor, int, Tensor]:
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
            dX, it, rel = self.solve_fluctuation(Kop, KE, ref)
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
            dX, it, _ = self.solve_fluctuation(Kop, KE, self._lin_ref)
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

    def _load_chunk(self, L: int) -> int:
        """Loads per Newton solve: all ``L`` when they fit in the memory available, else as many
        as fit (InvalidInput when not even one does). A nonlinear solve holds every load's
        fields, so a batch of many Gauss points (FE²) would need ``L`` times one load's memory;
        batches that fit are solved whole, as before."""
        from oracles import memory as mem
        from oracles.rve.microstructure import BYTES_PER_VOXEL, check_grid_memory

        per_load = self.n_voxels * BYTES_PER_VOXEL[(self.k, self.kind == "finite")]
        if L * per_load <= self.memory_budget:
            return L
        have = mem.available_memory()
        if L * per_load <= have:
            return L
        check_grid_memory(self.shape, finite=self.kind == "finite", memory=have)
        return max(1, int(have // per_load))

    def _homogenize_newton(self, load: Tensor, tangent: bool, fields: bool) -> HomogenizationResult:
        L = load.shape[0]
        chunk = self._load_chunk(L)
        if chunk < L:
            parts = [self._homogenize_newton(load[i:i + chunk], tangent, fields) for i in range(0, L, chunk)]
            info: dict[str, Any] = {"load_chunks": [p.stress.shape[0] for p in parts]}
            for key in ("cg_iterations_per_solve", "newton_steps", "residuals"):
                info[key] = [v for p in parts for v in p.info[key]]
            return HomogenizationResult(
                stress=torch.cat([p.stress for p in parts]),
                tangent=torch.cat([p.tangent for p in parts]) if tangent else None,
                newton_iterations=max(p.newton_iterations for p in parts),
                cg_iterations=sum(p.cg_iterations for p in parts),
                residual=torch.cat([p.residual for p in parts]),
                fields={key: torch.cat([p.fields[key] for p in parts]) for key in parts[0].fields}
                if fields else None,
                info=info,
            )
        vbar = self.basis.vec(load)  # L x m
        info: dict[str, Any] = {}
        try:
            X, S, Kt, rel, log = newton(self, vbar)
        except NotConverged as direct:
            # Newton from the homogeneous guess failed, typically because the
            # linearization there is indefinite (CG met negative curvature):
            # with heterogeneous moduli, the null-Lagrangian part of a
            # hyperelastic tangent makes G K G indefinite at states far from
            # equilibrium, and the "Newton step" jumps to a saddle. Follow the
            # load path from the stress-free state instead, each load alone.
            parts = [continuation(self, vbar[i : i + 1], direct) for i in range(L)]
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
            Cm, it, _ = self._unit_columns(DenseTangent(Kt), L, self.reference_for(Kt))
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
