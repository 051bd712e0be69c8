r"""Joint posterior function samples of a constitutive surrogate, as batched materials.

Epistemic uncertainty of a surrogate ``P(F)`` reaches a macro quantity only
through *function* samples: one sample path of the surrogate answers every
Gauss point at every Newton iteration of one macro run, so the stresses of
neighbouring points are as correlated as the posterior says. Independent
draws per point would average out in the reaction force and understate its
spread.

:class:`GPFunctionSamples` draws ``S`` paths of an exact GP (a BoTorch
``SingleTaskGP`` such as :class:`surrogates.gp.GPSurrogate`: Matérn-5/2 ARD
kernel, ``m`` outputs as independent GPs) exactly at a set of ``M`` anchor
inputs ``Z`` (the states a macro run visits, for example the Gauss points of
the posterior-mean run) and extends each sample to any input by its
conditional mean given those values:

.. math:: f_s(x) = \mu(x) + c(x, Z)\, C_{ZZ}^{-1} \big(f_s(Z) - \mu(Z)\big),
          \qquad f_s(Z) \sim N(\mu(Z), C_{ZZ}),

with :math:`\mu` and :math:`c` the posterior mean and covariance. Each path is
a kernel expansion over the training inputs and the anchors,
:math:`f_s(x) = k(x, X)(\alpha - q_s) + k(x, Z) u_s`, so stress and its exact
derivative (the consistent tangent) are closed-form at any point and all
``S`` paths are evaluated in one batched call (:meth:`batch_response`). The
paths have the joint posterior at the anchors up to the jitter (covariance
:math:`C (C + jI)^{-1} C` for the anchors' posterior covariance :math:`C`: a
direction of variance :math:`\lambda` keeps :math:`\lambda^2 / (\lambda + j)`,
exact well above :math:`j`, under-sampled below it) and the Nyström
(kriging) approximation between them, whose variance is at most the exact one
and approaches it as anchors fill the visited region. Random Fourier
feature priors (``botorch.sampling.pathwise``) are the usual alternative;
for a surrogate trained to a posterior variance far below its prior variance
their relative covariance error (about ``sqrt(2/L)`` of the *prior*) swamps
the posterior variance, which the anchored construction avoids.

The GP's inputs are the displacement gradient ``H = F - I`` (``k*k``,
row-major) followed by ``p`` microstructure descriptors ``theta`` (the
aleatory inputs); its outputs are the ``k*k`` components of ``P``.
:class:`EnsembleMembers` does the same for an ensemble: one member per path.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput, is_finite_real, is_integer
from oracles.material import MaterialModel, MaterialResponse

DTYPE = torch.float64
_NU = 2.5  # Matérn smoothness of surrogates.gp


def _as_theta(theta, S: int, p: int) -> Tensor:
    """``S x p`` descriptors from ``None`` (p = 0), a ``p`` vector or an ``S x p`` array."""
    if p == 0:
        if theta is not None and torch.as_tensor(theta).numel() > 0:
            raise InvalidInput(f"this surrogate takes no descriptors, got theta={theta!r}")
        return torch.zeros(S, 0, dtype=DTYPE)
    if theta is None:
        raise InvalidInput(f"this surrogate needs {p} microstructure descriptor(s) theta")
    t = torch.as_tensor(theta, dtype=DTYPE)
    if t.dim() == 1:
        t = t.expand(S, -1)
    if t.shape != (S, p):
        raise InvalidInput(f"theta must be a {p} vector or {S} x {p}, got shape {tuple(t.shape)}")
    return t


def farthest_points(X: Tensor, n: int, scale: Tensor | None = None) -> Tensor:
    """``min(n, len(X))`` rows of ``X`` (``N x d``) by greedy farthest-point selection.

    Distances are measured after dividing each column by ``scale`` (``d``;
    default: the column ranges). Starts from the row nearest the column means.
    """
    if not (is_integer(n) and n >= 1):
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    X = torch.as_tensor(X, dtype=DTYPE)
    if X.shape[0] <= n:
        return X.clone()
    sc = (
        (X.max(0).values - X.min(0).values)
        if scale is None
        else torch.as_tensor(scale, dtype=DTYPE)
    )
    Y = X / torch.where(sc > 0, sc, torch.ones_like(sc))
    first = int(((Y - Y.mean(0)) ** 2).sum(1).argmin())
    chosen = [first]
    dist = ((Y - Y[first]) ** 2).sum(1)
    for _ in range(n - 1):
        j = int(dist.argmax())
        chosen.append(j)
        dist = torch.minimum(dist, ((Y - Y[j]) ** 2).sum(1))
    return X[chosen]


class _MaternExpansion:
    """Hyperparameters and transforms of a fitted Matérn-5/2 ``SingleTaskGP``, and the
    closed-form evaluation of kernel expansions ``sum_c k(x, x_c) v_c`` with their gradients."""

    #: elements of the largest ``samples x outputs x points x centres`` temporary
    CHUNK_ELEMENTS = 2**22

    def _read_gp(self, gp, k: int | None) -> None:
        try:
            base = gp.covar_module.base_kernel
            nu = float(base.nu)
        except AttributeError as e:
            raise TypeError(
                f"{type(gp).__name__} is not a GP with a ScaleKernel(MaternKernel) covariance"
            ) from e
        if nu != _NU:
            raise ValueError(f"written for a Matérn-5/2 kernel, got nu = {nu}")
        gp.eval()
        Xtr = gp.train_inputs[0]
        d = Xtr.shape[-1]
        m = int(gp.num_outputs)
        k = int(round(math.sqrt(m))) if k is None else int(k)
        if k * k != m or k not in (2, 3):
            raise ValueError(f"a constitutive GP has k*k outputs with k in (2, 3); got m = {m}")
        if d < m:
            raise ValueError(
                f"the GP has {d} inputs; a constitutive GP needs k*k = {m} (H) plus descriptors"
            )
        self.k, self.m, self.d, self.p = k, m, d, d - m
        with torch.no_grad():
            tf_in = getattr(gp, "input_transform", None)
            tf_out = getattr(gp, "outcome_transform", None)
            self._off = (
                tf_in._offset.reshape(d) if tf_in is not None else torch.zeros(d, dtype=DTYPE)
            )
            self._coef = (
                tf_in._coefficient.reshape(d) if tf_in is not None else torch.ones(d, dtype=DTYPE)
            )
            self._ymean = (
                tf_out.means.reshape(m) if tf_out is not None else torch.zeros(m, dtype=DTYPE)
            )
            self._ystd = (
                tf_out.stdvs.reshape(m) if tf_out is not None else torch.ones(m, dtype=DTYPE)
            )
            self._Xn = Xtr.reshape(-1, Xtr.shape[-2], d)[0]  # N x d, normalized
            N = self._Xn.shape[0]
            A = gp.likelihood(gp.forward(self._Xn), self._Xn).covariance_matrix.reshape(m, N, N)
            y = gp.train_targets.reshape(m, N)  # standardized
            self._c = gp.mean_module.constant.reshape(-1).expand(m).clone()
            self._sigma2 = gp.covar_module.outputscale.reshape(-1).expand(m).clone()
            self._ls = base.lengthscale.reshape(-1, d).expand(m, d).clone()  # m x d
            self._LA = torch.linalg.cholesky(A)  # K + Sigma = LA LA^T
            self._alpha = torch.cholesky_solve((y - self._c[:, None])[..., None], self._LA)[..., 0]

    def _set_centres(self, centres: Tensor, v: Tensor) -> None:
        """Expansion centres (``C x d`` normalized) and weights (``s x m x C``)."""
        self._v = v.contiguous()
        self._Cs = centres[None] / self._ls[:, None, :]  # m x C x d
        self._Cs2 = (self._Cs * self._Cs).sum(-1)  # m x C

    def _kernel(self, A: Tensor, B: Tensor) -> Tensor:
        """``m x a x b`` Matérn-5/2 kernel (with output scale) between normalized inputs."""
        As, Bs = A[None] / self._ls[:, None, :], B[None] / self._ls[:, None, :]
        r2 = (
            (As * As).sum(-1)[..., None]
            + (Bs * Bs).sum(-1)[:, None, :]
            - 2 * As @ Bs.transpose(-1, -2)
        )
        s5r = torch.sqrt(5.0 * r2.clamp_min(0.0))
        return self._sigma2[:, None, None] * (1 + s5r + s5r * s5r / 3.0) * torch.exp(-s5r)

    def _eval(self, Xn: Tensor, v: Tensor, grad: bool):
        """Kernel expansions with weights ``v`` (``s x m x C``) at ``s x n x d`` normalized
        inputs: ``s x m x n`` values (and ``s x m x n x d`` gradients)."""
        xs = Xn[:, None, :, :] / self._ls[None, :, None, :]  # s x m x n x d
        r2 = (
            (xs * xs).sum(-1)[..., None]
            + self._Cs2[None, :, None, :]
            - 2.0 * torch.einsum("smnd,mCd->smnC", xs, self._Cs)
        )
        s5r = torch.sqrt(5.0 * r2.clamp_min(0.0))
        e = torch.exp(-s5r)
        sig = self._sigma2[None, :, None, None]
        f = torch.einsum("smnC,smC->smn", sig * (1 + s5r + s5r * s5r / 3.0) * e, v)
        if not grad:
            return f, None
        # dk/dx = -sigma^2 (5/3) (1 + sqrt5 r) e^{-sqrt5 r} (x - x') / l^2
        dkv = -sig * (5.0 / 3.0) * (1 + s5r) * e * v[:, :, None, :]  # s x m x n x C
        g = dkv.sum(-1)[..., None] * xs - torch.einsum("smnC,mCd->smnd", dkv, self._Cs)
        return f, g / self._ls[None, :, None, :]

    def _chunks(self, n: int) -> list[slice]:
        """Sample slices keeping ``s x m x n x C`` temporaries under ``CHUNK_ELEMENTS``."""
        per = self.m * max(n, 1) * self._Cs.shape[1]
        size = max(1, self.CHUNK_ELEMENTS // per)
        return [slice(i, min(i + size, self.n_samples)) for i in range(0, self.n_samples, size)]

    def paths(self, X: Tensor, with_grad: bool = True) -> tuple[Tensor, Tensor | None]:
        """Every path at its own inputs.

        Args:
            X: ``S x n x d`` raw inputs ``[H, theta]`` (row ``s`` goes to path ``s``).

        Returns:
            ``S x n x m`` outputs and, with ``with_grad``, their Jacobians
            ``S x n x m x d`` (raw units).
        """
        X = torch.as_tensor(X, dtype=DTYPE)
        if X.dim() != 3 or X.shape[0] != self.n_samples or X.shape[-1] != self.d:
            raise InvalidInput(
                f"X must be {self.n_samples} x n x {self.d}, got shape {tuple(X.shape)}"
            )
        Xn = (X - self._off) / self._coef
        parts = [self._eval(Xn[i], self._v[i], with_grad) for i in self._chunks(X.shape[1])]
        f = torch.cat([q[0] for q in parts])
        y = self._ymean[None, :, None] + self._ystd[None, :, None] * (f + self._c[None, :, None])
        if not with_grad:
            return y.transpose(1, 2), None
        g = torch.cat([q[1] for q in parts])
        J = (self._ystd[None, :, None, None] * g / self._coef).permute(0, 2, 1, 3)
        return y.transpose(1, 2), J

    def batch_response(self, F: Tensor, theta=None) -> tuple[Tensor, Tensor]:
        """Stress and tangent of every path at its own deformation gradients.

        Args:
            F: ``S x n x k x k`` deformation gradients (row ``s`` to path ``s``).
            theta: descriptors: ``p`` (the same for all paths) or ``S x p``.

        Returns:
            ``P`` (``S x n x k x k``) and ``dP/dF`` (``S x n x k x k x k x k``).
        """
        F = torch.as_tensor(F, dtype=DTYPE)
        k, S = self.k, self.n_samples
        if F.dim() != 4 or F.shape[0] != S or F.shape[-2:] != (k, k):
            raise InvalidInput(f"F must be {S} x n x {k} x {k}, got shape {tuple(F.shape)}")
        n = F.shape[1]
        H = (F - torch.eye(k, dtype=DTYPE)).reshape(S, n, k * k)
        th = _as_theta(theta, S, self.p)
        X = torch.cat([H, th[:, None, :].expand(S, n, self.p)], -1)
        y, J = self.paths(X)
        return y.reshape(S, n, k, k), J[..., : k * k].reshape(S, n, k, k, k, k)

    def member(self, s: int, theta=None) -> SampleMaterial:
        """Path ``s`` as a plain :class:`~oracles.material.MaterialModel` (one macro run)."""
        return SampleMaterial(self, s, theta)


class GPPosteriorMean(_MaternExpansion):
    """The posterior mean of a constitutive GP over ``[H, theta]`` at fixed descriptors ``theta``.

    A :class:`~oracles.material.MaterialModel`: ``P`` is the posterior mean and
    the tangent its exact derivative. ``gp`` as in :class:`GPFunctionSamples`.
    """

    n_samples = 1

    def __init__(self, gp, theta=None, k: int | None = None):
        self._read_gp(gp, k)
        self.theta = None if theta is None else torch.as_tensor(theta, dtype=DTYPE).reshape(-1)
        if self.theta is not None or self.p == 0:
            _as_theta(self.theta, 1, self.p)  # checks the count (None: set later by with_theta)
        self._set_centres(self._Xn, self._alpha[None])

    def with_theta(self, theta) -> GPPosteriorMean:
        """The same mean at other descriptors (shares the fitted state)."""
        other = object.__new__(GPPosteriorMean)
        other.__dict__.update(self.__dict__)
        other.theta = torch.as_tensor(theta, dtype=DTYPE).reshape(-1)
        _as_theta(other.theta, 1, self.p)
        return other

    def material_response(self, F: Tensor) -> MaterialResponse:
        F = torch.as_tensor(F, dtype=DTYPE)
        P, A = self.batch_response(F[None], self.theta)
        return MaterialResponse(P[0], A[0], None)


class GPFunctionSamples(_MaternExpansion):
    """``S`` joint posterior sample paths of a GP constitutive surrogate, anchored at ``Z``.

    Args:
        gp: a fitted BoTorch ``SingleTaskGP`` with a ``ScaleKernel(MaternKernel(nu=2.5))``
            covariance (ARD lengthscales, per output or shared), optional
            ``Normalize`` input and ``Standardize`` outcome transforms, and
            ``d = k*k + p`` inputs ``[H, theta]``, ``m = k*k`` outputs.
        n_samples: ``S``, the number of paths.
        anchors: ``M x d`` raw inputs where the paths are sampled exactly
            (typically the Gauss-point inputs of posterior-mean runs, thinned
            by :func:`farthest_points`).
        k: 2 or 3 (default: from ``m``).
        seed: seed of the paths (the same seed gives the same paths).
        jitter: ``j`` relative to the largest diagonal entry of the anchors'
            posterior covariance ``C``, added to it where the expansion weights
            are solved for. It bounds the weights, and with them the round-off
            of a path (about 1e-10 of the stress at the default); the paths'
            covariance at the anchors is then ``C (C + jI)^-1 C``: each direction
            of variance ``lambda`` keeps ``lambda^2 / (lambda + j)``, so anchors
            whose variance is below about ``j`` times the largest are
            under-sampled (variance ratio ``lambda / (lambda + j)``). Much smaller
            values make paths fail on round-off.

    Attributes:
        n_samples, k, m, d, p (descriptor count), n_anchors.
    """

    def __init__(
        self,
        gp,
        n_samples: int,
        anchors: Tensor,
        k: int | None = None,
        seed: int = 0,
        jitter: float = 1e-4,
    ):
        if not (is_integer(n_samples) and n_samples >= 1):
            raise ValueError(f"n_samples must be an integer >= 1, got {n_samples!r}")
        if not is_integer(seed):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not (is_finite_real(jitter) and jitter >= 0):
            raise ValueError(f"jitter must be a finite number >= 0, got {jitter!r}")
        self._read_gp(gp, k)
        d, m = self.d, self.m
        Z = torch.as_tensor(anchors, dtype=DTYPE)
        if Z.dim() != 2 or Z.shape[1] != d or Z.shape[0] < 1 or not torch.isfinite(Z).all():
            raise InvalidInput(
                f"anchors must be a finite M x {d} array, got shape {tuple(Z.shape)}"
            )
        self.n_samples, self.n_anchors = int(n_samples), int(Z.shape[0])
        gen = torch.Generator().manual_seed(int(seed))
        with torch.no_grad():
            Zn = (Z - self._off) / self._coef  # M x d
            M, LA = Zn.shape[0], self._LA
            # posterior covariance at the anchors: C = K_ZZ - K_ZX A^-1 K_XZ
            KXZ = self._kernel(self._Xn, Zn)  # m x N x M
            W = torch.linalg.solve_triangular(LA, KXZ, upper=False)
            C = self._kernel(Zn, Zn) - W.transpose(-1, -2) @ W  # m x M x M
            C = 0.5 * (C + C.transpose(-1, -2))
            dj = jitter * C.diagonal(dim1=-2, dim2=-1).amax(-1).clamp_min(1e-300)
            LC = torch.linalg.cholesky(C + dj[:, None, None] * torch.eye(M, dtype=DTYPE))
            # f_s(Z) - mu(Z) = LC z_s  =>  u_s = C^-1 (f_s(Z) - mu(Z)) = LC^-T z_s
            zs = torch.randn(m, M, self.n_samples, generator=gen, dtype=DTYPE)
            u = torch.linalg.solve_triangular(LC.transpose(-1, -2), zs, upper=True)  # m x M x S
            q = torch.cholesky_solve(KXZ @ u, LA)  # m x N x S: A^-1 K_XZ u_s
            v = torch.cat([self._alpha[..., None] - q, u], dim=1)  # m x (N + M) x S
            self._set_centres(torch.cat([self._Xn, Zn]), v.permute(2, 0, 1))


class SampleMaterial:
    """One path of a batched sampler (``GPFunctionSamples`` or ``EnsembleMembers``) as a material."""

    def __init__(self, sampler, s: int, theta=None):
        if not 0 <= s < sampler.n_samples:
            raise ValueError(f"sample index must be in 0..{sampler.n_samples - 1}, got {s}")
        self.sampler, self.s = sampler, int(s)
        self.theta = None if theta is None else torch.as_tensor(theta, dtype=DTYPE)

    def material_response(self, F: Tensor) -> MaterialResponse:
        F = torch.as_tensor(F, dtype=DTYPE)
        if isinstance(self.sampler, _MaternExpansion):
            # evaluate only this path: slice the sampler's per-sample state
            P, A = _single_path(self.sampler, self.s, F, self.theta)
        else:
            P = self.sampler.members[self.s].material_response(F)
            P, A = P.P, P.tangent
        return MaterialResponse(P, A, None)


def _single_path(sm: _MaternExpansion, s: int, F: Tensor, theta) -> tuple[Tensor, Tensor]:
    one = object.__new__(type(sm))
    one.__dict__.update(sm.__dict__)
    one.n_samples = 1
    one._v = sm._v[s : s + 1]
    th = None if theta is None else torch.as_tensor(theta, dtype=DTYPE).reshape(-1)
    P, A = one.batch_response(F[None], th)
    return P[0], A[0]


class EnsembleMembers:
    """An ensemble's members as function samples: path ``s`` is member ``s``.

    Args:
        members: materials (``material_response(F)``); descriptors, when used,
            are fixed inside each member.
    """

    def __init__(self, members: Sequence[MaterialModel]):
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one member")
        for i, mm in enumerate(members):
            if not isinstance(mm, MaterialModel):
                raise TypeError(f"member {i} ({type(mm).__name__}) has no material_response(F)")
        self.members = members
        self.n_samples = len(members)
        self.p = 0

    def batch_response(self, F: Tensor, theta=None) -> tuple[Tensor, Tensor]:
        """``S x n x k x k`` F (row ``s`` to member ``s``) -> ``P``, ``dP/dF``."""
        F = torch.as_tensor(F, dtype=DTYPE)
        if F.dim() != 4 or F.shape[0] != self.n_samples:
            raise InvalidInput(
                f"F must be {self.n_samples} x n x k x k, got shape {tuple(F.shape)}"
            )
        out = [mm.material_response(F[s]) for s, mm in enumerate(self.members)]
        P = torch.stack([torch.as_tensor(o.P, dtype=DTYPE) for o in out])
        A = torch.stack([torch.as_tensor(o.tangent, dtype=DTYPE) for o in out])
        return P, A

    def member(self, s: int, theta=None) -> MaterialModel:
        return self.members[s]
