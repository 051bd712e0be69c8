r"""The Gaussian-process core shared by every multi-fidelity model.

Three pieces, each in one place:

* :class:`Correlation` -- a stationary correlation from GPyTorch
  (:class:`~gpytorch.kernels.MaternKernel` with ``nu = 2.5`` or
  :class:`~gpytorch.kernels.RBFKernel`) held at unit lengthscale; lengthscales
  are applied by dividing the inputs, so they stay plain tensors that autograd
  differentiates and the optimizer moves in log space.
* :class:`Kriging` and :func:`kriging_nll` -- universal kriging with a GLS
  trend: covariance ``K`` (``n x n``, signal plus noise), trend basis ``F``
  (``n x p``) and targets ``y`` (``n``); the trend coefficients ``beta`` are
  profiled out and :func:`kriging_nll` gives the negative log restricted
  likelihood (REML, Harville 1974; Patterson & Thompson 1971) or plain
  likelihood with closed-form gradients; :class:`Kriging` gives the
  universal-kriging mean and covariance, which include the uncertainty of
  ``beta`` (Santner, Williams & Notz 2003, sec. 3.3).
* :func:`fit_map` -- the one fitter: a maximum a-posteriori estimate of an
  unconstrained, box-bounded parameter vector by L-BFGS-B (SciPy) with
  autograd gradients, started from the best few of a set of candidate starts.

Priors: :func:`log_lengthscale_prior` is the dimension-scaled log-normal
lengthscale prior of Hvarfner, Hellsten & Nardi (2024, "Vanilla Bayesian
optimization performs great in high dimensions"), BoTorch's default for inputs
scaled to the unit cube.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch
from gpytorch.functions import MaternCovariance, RBFCovariance
from gpytorch.kernels import MaternKernel, RBFKernel
from linear_operator.utils.cholesky import psd_safe_cholesky
from scipy.optimize import minimize
from scipy.stats import norm
from scipy.stats import t as student_t
from torch import Tensor

from surrogates.dataset import DTYPE

#: correlation families (GPyTorch kernels) by name
KERNELS = ("matern52", "rbf")

#: box of the log lengthscales (inputs scaled to the unit cube); the lower end
#: is BoTorch's 0.025 constraint
LOG_LS_BOUNDS = (math.log(0.025), math.log(1e3))
#: box of the log signal variances (outputs standardized)
LOG_VAR_BOUNDS = (math.log(1e-6), math.log(1e3))
#: box of the log inferred nuggets (standardized outputs)
LOG_NUGGET_BOUNDS = (math.log(1e-8), math.log(10.0))
#: smallest noise variance on the diagonal (standardized outputs): keeps the
#: Cholesky of interpolating (noise-free) models well defined
NOISE_FLOOR = 1e-9
#: L-BFGS-B stopping tolerances (SciPy's defaults: relative decrease of the
#: objective, largest projected gradient component); fits of ``y`` and
#: ``a y + b`` see the same rounded standardized data
#: (:func:`~surrogates.multifidelity.model.round_significand`), so they take
#: the same steps and stop at the same point
FTOL, GTOL = 2.220446049250313e-09, 1e-5


class Correlation:
    """Unit-variance stationary correlation ``r(x / ls, x' / ls)`` from GPyTorch.

    Args:
        kind: ``"matern52"`` or ``"rbf"``.
    """

    def __init__(self, kind: str = "matern52"):
        if kind not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kind!r}")
        self.kind = kind
        k = MaternKernel(nu=2.5) if kind == "matern52" else RBFKernel()
        k = k.to(DTYPE)
        k.lengthscale = 1.0
        k.requires_grad_(False)
        self._k = k

    def __call__(self, x1: Tensor, x2: Tensor, ls: Tensor, diag: bool = False) -> Tensor:
        """Correlation of ``... x n x d`` and ``... x q x d`` inputs with
        lengthscales ``ls`` (``d`` or 1); ``... x n x q`` (``... x n`` if ``diag``).

        One lengthscale and inputs without gradients (the likelihood during a
        fit) take GPyTorch's own path for that case
        (:class:`~gpytorch.functions.MaternCovariance`,
        :class:`~gpytorch.functions.RBFCovariance`: the lengthscale gradient
        in closed form rather than by autograd through the kernel's
        operations); the values agree to round-off."""
        if ls.numel() == 1 and not diag and not (x1.requires_grad or x2.requires_grad):
            ls = ls.reshape(1, 1)
            if self.kind == "matern52":
                return MaternCovariance.apply(x1, x2, ls, 2.5, self._k.covar_dist)
            return RBFCovariance.apply(x1, x2, ls, self._sq_dist)
        return self._k.forward(x1 / ls, x2 / ls, diag=diag)

    def _sq_dist(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self._k.covar_dist(x1, x2, square_dist=True)


def log_lengthscale_prior(log_ls: Tensor, d: int) -> Tensor:
    """Log density (up to a constant) of the dimension-scaled lengthscale prior:
    ``log ls ~ Normal(sqrt(2) + log(d) / 2, sqrt(3))`` for ``d`` input dimensions."""
    loc, scale = math.sqrt(2.0) + 0.5 * math.log(d), math.sqrt(3.0)
    return -0.5 * ((log_ls - loc) / scale).pow(2).sum()


def prior_lengthscale(d: int) -> float:
    """Mode of the lengthscale prior (a starting point): ``exp(loc - scale^2)``."""
    return math.exp(math.sqrt(2.0) + 0.5 * math.log(d) - 3.0)


def masked(K: Tensor, F: Tensor, y: Tensor, w: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    """``K``, ``F``, ``y`` with the rows absent under the mask ``w`` (``... x n``,
    0: absent) replaced by uncorrelated unit-variance rows with zero target and
    trend (see :class:`Kriging`); unchanged if ``w`` is None."""
    if w is None:
        return K, F, y
    return K * (w.unsqueeze(-1) * w.unsqueeze(-2)) + torch.diag_embed(1.0 - w), F * w.unsqueeze(-1), y * w


@functools.lru_cache(maxsize=256)
def _t_widening(nu: float) -> float:
    """``(t_nu^{-1}(0.975) / Phi^{-1}(0.975))^2`` (cached: SciPy's quantile
    costs more than the kriging algebra of a small level)."""
    return float((student_t.ppf(0.975, nu) / norm.ppf(0.975)) ** 2)


#: right-hand sides ``E x ... x n x k`` whose leading batch ``E`` (the dimensions the
#: factor does not have) would broadcast more than this many float64 elements of
#: copies of the factor are solved as one system with ``E`` folded into the columns
#: (:func:`solve_lower`): 2**23 float64 elements are 64 MiB
FOLD_ELEMENTS = 2**23


def solve_lower(L: Tensor, B: Tensor) -> Tensor:
    """``L^-1 B`` for a lower-triangular ``L`` (``... x n x n``) and ``B``
    (``E x ... x n x k``, where ``...`` broadcasts to ``L``'s batch). torch
    broadcasts ``L`` over the leading batch ``E`` of ``B`` as one copy of ``L``
    per element, and its gradient likewise (2 GB and 0.8 s for 256 one-point
    posteriors on 1000 training points; a fantasy model's batched factor
    against the one-point batches of an acquisition); past :data:`FOLD_ELEMENTS`
    ``E`` is folded into the columns of one solve instead (4 ms there)."""
    lb, batch = L.shape[:-2], B.shape[:-2]
    n, k = L.shape[-1], B.shape[-1]
    extra = len(batch) - len(lb)
    if extra > 0 and torch.broadcast_shapes(batch[extra:], lb) == lb:
        E = batch[:extra]
        if E.numel() > 1 and E.numel() * lb.numel() * n * n > FOLD_ELEMENTS:
            Bx = B.expand(*E, *lb, n, k).reshape(E.numel(), *lb, n, k)
            cols = Bx.movedim(0, -1).reshape(*lb, n, k * E.numel())
            out = torch.linalg.solve_triangular(L, cols, upper=False)
            return out.reshape(*lb, n, k, E.numel()).movedim(-1, 0).reshape(*E, *lb, n, k)
    return torch.linalg.solve_triangular(L, B, upper=False)


class Kriging:
    """Universal kriging on one set of training points.

    Every argument may carry leading batch dimensions, which broadcast:

    Args:
        K: ``... x n x n`` covariance of the observations (signal plus noise).
        F: ``... x n x p`` trend basis (``p <= n``, full column rank).
        y: ``... x n`` targets.
        w: optional ``... x n`` row mask (1: the row is data, 0: it is absent).
            An absent row is replaced by an uncorrelated unit-variance row with
            zero target and trend and zero covariance to new points, so it
            changes nothing: a batch of training sets of different sizes is
            padded to one size exactly.
        distinct: optional number of distinct training inputs among the
            present rows (batch shape; :func:`distinct_rows`), the ``n`` of
            :meth:`t_factor` (default: the number of present rows).
    """

    def __init__(self, K: Tensor, F: Tensor, y: Tensor, w: Tensor | None = None, distinct: Tensor | None = None):
        K, F, y = masked(K, F, y, w)
        self.w, self.distinct = w, distinct
        self.L = psd_safe_cholesky(K)
        self.Fi = torch.linalg.solve_triangular(self.L, F, upper=False)
        yi = torch.linalg.solve_triangular(self.L, y.unsqueeze(-1), upper=False)
        A = self.Fi.transpose(-1, -2) @ self.Fi
        self.La = psd_safe_cholesky(A)
        beta = torch.cholesky_solve(self.Fi.transpose(-1, -2) @ yi, self.La)
        self.beta = beta.squeeze(-1)
        self.ri = (yi - self.Fi @ beta).squeeze(-1)  # L^-1 (y - F beta)
        self.n, self.p = F.shape[-2], F.shape[-1]

    def t_factor(self) -> Tensor:
        """Variance factor (batch shape) for the uncertainty of a common scale of ``K``.

        With ``K = s2 C`` and the Jeffreys prior on ``s2`` (at its restricted
        likelihood estimate), the predictive law is a Student t with
        ``n - p`` degrees of freedom (``n``: the distinct training inputs when
        given, as a repeated noise-free observation adds none; Santner, Williams & Notz 2003, sec.
        4.1.3); the factor widens the Gaussian to that t's central 95 %
        interval: ``(t_{n-p}^{-1}(0.975) / Phi^{-1}(0.975))^2``.
        """
        if self.distinct is not None:
            n = self.distinct.to(DTYPE)
        else:
            n = self.w.sum(-1) if self.w is not None else torch.tensor(float(self.n), dtype=DTYPE)
        nu = (n - self.p).clamp_min(1.0).detach().numpy()
        return torch.as_tensor(np.vectorize(_t_widening, otypes=[float])(nu), dtype=DTYPE)

    def predict(self, Kx: Tensor, Kxx: Tensor, Fx: Tensor, diag: bool = False) -> tuple[Tensor, Tensor]:
        """Mean and covariance of the latent process at new points.

        Args:
            Kx: ``... x n x q`` covariance between training and new points.
            Kxx: ``... x q x q`` prior covariance of the new points (``... x q``
                variances if ``diag``).
            Fx: ``... x q x p`` trend basis at the new points.

        Returns:
            Mean ``... x q`` and covariance ``... x q x q`` (``... x q`` if ``diag``).
        """
        if self.w is not None:
            Kx = Kx * self.w.unsqueeze(-1)
        V = solve_lower(self.L, Kx)
        mean = (Fx @ self.beta.unsqueeze(-1) + V.transpose(-1, -2) @ self.ri.unsqueeze(-1)).squeeze(-1)
        U = Fx.transpose(-1, -2) - self.Fi.transpose(-1, -2) @ V
        W = torch.linalg.solve_triangular(self.La, U, upper=False)
        if diag:
            return mean, (Kxx - V.pow(2).sum(-2) + W.pow(2).sum(-2)).clamp_min(0.0)
        cov = Kxx - V.transpose(-1, -2) @ V + W.transpose(-1, -2) @ W
        return mean, cov


class _KrigingNLL(torch.autograd.Function):
    """Negative log (restricted) likelihood of universal kriging with its
    gradients in closed form.

    With ``r = y - F beta`` (GLS residual), ``a = K^-1 r``,
    ``A = F^T K^-1 F`` and ``P = K^-1 - K^-1 F A^-1 F^T K^-1``:

    * ``nll = r^T K^-1 r / 2 + log|K| / 2 (+ log|A| / 2 for REML)``;
    * ``d nll / dK = (K^-1 - a a^T) / 2`` (ML) or ``(P - a a^T) / 2`` (REML);
    * ``d nll / dF = -a beta^T (+ K^-1 F A^-1 for REML)``; ``d nll / dy = a``

    (``beta`` minimizes the quadratic, so it does not vary to first order;
    Harville 1974; Rasmussen & Williams 2006, eq. 5.9). One Cholesky
    factorization serves the value and all three gradients, in place of
    differentiating through the factorization and the triangular solves.
    """

    @staticmethod
    def forward(ctx, K: Tensor, F: Tensor, y: Tensor, reml: bool) -> Tensor:
        L = psd_safe_cholesky(K)
        p = F.shape[-1]
        Z = torch.linalg.solve_triangular(L, torch.cat([F, y.unsqueeze(-1)], -1), upper=False)
        Fi, yi = Z[..., :p], Z[..., p:]
        La = psd_safe_cholesky(Fi.transpose(-1, -2) @ Fi)
        beta = torch.cholesky_solve(Fi.transpose(-1, -2) @ yi, La)
        ri = yi - Fi @ beta
        out = 0.5 * ri.pow(2).sum() + L.diagonal(dim1=-2, dim2=-1).log().sum()
        if reml:
            out = out + La.diagonal(dim1=-2, dim2=-1).log().sum()
        ctx.reml = reml
        ctx.save_for_backward(L, La, Fi, ri, beta)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        L, La, Fi, ri, beta = ctx.saved_tensors
        Lt = L.transpose(-1, -2)
        a = torch.linalg.solve_triangular(Lt, ri, upper=True)  # K^-1 r, n x 1
        KiF = torch.linalg.solve_triangular(Lt, Fi, upper=True)  # K^-1 F, n x p
        B = torch.cholesky_solve(KiF.transpose(-1, -2), La).transpose(-1, -2)  # K^-1 F A^-1
        G = torch.cholesky_inverse(L)
        if ctx.reml:
            G = G - B @ KiF.transpose(-1, -2)
        gK = 0.5 * (G - a @ a.transpose(-1, -2))
        gF = -a @ beta.transpose(-1, -2) + (B if ctx.reml else 0.0)
        return g * gK, g * gF, g * a.squeeze(-1), None


def kriging_nll(K: Tensor, F: Tensor, y: Tensor, w: Tensor | None = None, reml: bool = True) -> Tensor:
    """Negative log restricted (``reml``) or plain likelihood, up to a
    constant, of universal kriging on ``n x n`` covariance ``K``, ``n x p``
    trend basis ``F`` and targets ``y`` (``n``), the trend coefficients
    profiled out; differentiable in all three (closed-form gradients,
    :class:`_KrigingNLL`). ``w``: the row mask of :class:`Kriging`."""
    return _KrigingNLL.apply(*masked(K, F, y, w), bool(reml))


def equal_rows(x: Tensor) -> Tensor:
    """``... x n x n`` booleans: rows ``i`` and ``j`` of ``x`` (``... x n x d``) are equal.
    Rows are compared through one projection (``... x n x n`` numbers, not
    ``... x n x n x d``), and the pairs whose projections agree are then compared exactly."""
    key = x @ torch.linspace(1.0, 2.0, x.shape[-1], dtype=x.dtype).sqrt()
    same = key.unsqueeze(-1) == key.unsqueeze(-2)
    idx = same.nonzero()  # (batch..., i, j)
    if len(idx):
        b, i, j = idx[:, :-2].unbind(-1), idx[:, -2], idx[:, -1]
        differ = ~(x[(*b, i)] == x[(*b, j)]).all(-1)
        same[(*tuple(t[differ] for t in b), i[differ], j[differ])] = False
    return same


def distinct_rows(x: Tensor, w: Tensor | None = None) -> Tensor:
    """Number of distinct rows among the present rows of ``x`` (``... x n x d``;
    ``w``: the ``... x n`` row mask of :class:`Kriging`), batch shape ``...``."""
    present = torch.ones(x.shape[:-1], dtype=torch.bool) if w is None else w > 0
    present = present.expand(torch.broadcast_shapes(present.shape, x.shape[:-1]))
    x = x.expand(*present.shape, x.shape[-1])
    n = x.shape[-2]
    earlier = torch.ones(n, n, dtype=torch.bool).tril(-1)
    repeat = (equal_rows(x) & earlier & present.unsqueeze(-1) & present.unsqueeze(-2)).any(-1)
    return (present & ~repeat).sum(-1)


#: a trend column whose part outside the span of the columns before it is below
#: this fraction of its norm is dropped (:func:`independent_columns`): its GLS
#: coefficient would have a standard error more than 1e3 times that of an orthogonal
#: column of the same size (a variance inflation factor above 1e6), so that it is set
#: by that small remainder (the level below's round-off, or the few-percent wiggle of a
#: level-below mean that is linear in the inputs but for it) rather than by the data
BASIS_RTOL = 1e-3


def independent_columns(F: Tensor, rtol: float = BASIS_RTOL, floor: float = 0.0) -> Tensor:
    """Which columns of a trend basis ``F`` (``n x p``) to keep so that the kept
    ones are linearly independent: column ``j`` is kept when its residual after
    least squares on the kept columns before it exceeds ``rtol`` times the larger
    of its norm and ``floor`` (Gram--Schmidt in column order, reorthogonalized).
    A column that repeats earlier ones at these points (the level below constant
    there, or linear in the inputs like a linear trend) has no identifiable GLS
    coefficient; kept, its coefficient is set by round-off and can be huge.
    ``floor``: the norm of a column of unit size at these points (``sqrt(n)``
    for columns in standardized units), so that a column constant up to 1e-14
    of that size is dropped even when its own norm is small (a level below
    whose posterior mean is 4e-11 throughout had kept its column, with a GLS
    coefficient of -4e12). Returns ``p`` booleans."""
    keep = torch.zeros(F.shape[-1], dtype=torch.bool)
    Q = F.new_zeros(F.shape[0], 0)
    for j in range(F.shape[-1]):
        c = F[:, j]
        norm = float(c.norm())
        r = c - Q @ (Q.T @ c)
        r = r - Q @ (Q.T @ r)
        rn = float(r.norm())
        if norm > 0 and rn > rtol * max(norm, floor):
            keep[j] = True
            Q = torch.cat([Q, (r / rn).unsqueeze(-1)], -1)
    return keep


def expand_train(X: Tensor, x: Tensor) -> Tensor:
    """Training inputs ``B x n x d`` (or levels ``B x n``, ``event = 1``)
    expanded to the batch shape broadcast from theirs and that of new inputs
    ``... x q x d``."""
    return X.expand(*torch.broadcast_shapes(X.shape[:-2], x.shape[:-2]), *X.shape[-2:])


def fit_map(
    objective: Callable[[Tensor], Tensor],
    starts: Tensor,
    bounds: Tensor,
    restarts: int = 3,
    maxiter: int = 200,
) -> tuple[Tensor, float]:
    """Minimize ``objective`` (negative log posterior of a ``P`` vector) in a box.

    Every row of ``starts`` (``S x P``) is scored; L-BFGS-B runs from the
    ``restarts`` best, with gradients by autograd. A point where the objective
    fails (a Cholesky that does not factor) scores ``+inf`` and is skipped.

    Args:
        objective: ``P`` tensor -> scalar tensor.
        starts: ``S x P`` candidate starting points.
        bounds: ``2 x P`` box.
        restarts: number of local optimizations.
        maxiter: L-BFGS-B iterations per optimization.

    Returns:
        The best parameter vector (``P``) and its objective value.
    """
    lo, hi = bounds[0].numpy(), bounds[1].numpy()
    starts = torch.maximum(torch.minimum(starts, bounds[1]), bounds[0])

    def value(t: Tensor) -> float:
        try:
            with torch.no_grad():
                v = float(objective(t))
        except (RuntimeError, ValueError):
            return math.inf
        return v if math.isfinite(v) else math.inf

    scores = [value(s) for s in starts]
    order = np.argsort(scores)[: max(1, int(restarts))]
    best_v, best_t = math.inf, starts[int(order[0])].clone()
    penalty = 1e10

    def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
        t = torch.tensor(v, dtype=DTYPE, requires_grad=True)
        try:
            f = objective(t)
            (g,) = torch.autograd.grad(f, t)
            fv, gv = float(f.detach()), g.numpy()
        except (RuntimeError, ValueError):
            return penalty, np.zeros_like(v)
        if not math.isfinite(fv) or not np.isfinite(gv).all():
            return penalty, np.zeros_like(v)
        return fv, gv

    for i in order:
        if not math.isfinite(scores[int(i)]):
            continue
        res = minimize(
            fun, starts[int(i)].numpy(), jac=True, method="L-BFGS-B",
            bounds=list(zip(lo, hi, strict=True)), options={"maxiter": maxiter, "ftol": FTOL, "gtol": GTOL},
        )
        t = torch.as_tensor(res.x, dtype=DTYPE)
        v = value(t)
        if v < best_v:
            best_v, best_t = v, t
    if not math.isfinite(best_v):
        raise RuntimeError("the likelihood could not be evaluated at any starting point")
    return best_t, best_v


def random_starts(base: Tensor, bounds: Tensor, n: int, seed: int, spread: Tensor | None = None) -> Tensor:
    """``1 + n`` starts: ``base`` (``P``) and ``n`` draws around it
    (normal with standard deviation ``spread``, default 1, in the unconstrained
    coordinates), clipped to the box ``bounds`` (``2 x P``)."""
    gen = torch.Generator().manual_seed(int(seed))
    s = torch.ones_like(base) if spread is None else spread
    draws = base + s * torch.randn(n, base.numel(), generator=gen, dtype=DTYPE)
    out = torch.cat([base.unsqueeze(0), draws])
    return torch.maximum(torch.minimum(out, bounds[1]), bounds[0])
