r"""A GP constitutive learner for on-the-fly learning inside FE².

Independent GPs (RBF kernel with one lengthscale per input, BoTorch
``SingleTaskGP`` fitted with ``fit_gpytorch_mll``) map the displacement
gradient ``H = F - I`` (4 inputs, plane strain) to the 4 components of ``P``.
Mean, its exact derivative (the tangent ``dP/dF``) and the predictive variance
are evaluated in closed form from the fitted hyperparameters, so one call for
all Gauss points is a few small matrix products.

:meth:`GPStressLearner.update` adds oracle answers and re-conditions the GP
(exact, hyperparameters kept) and, every ``refit_every`` updates, refits the
hyperparameters: the cheap update the adaptive switch performs between load
steps. It is used when the deployed surrogate cannot learn on its own (has no
``update``), and by the tests and benchmark as a small stand-in surrogate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from loops.fe2.providers import check_F
from oracles.exceptions import InvalidInput
from oracles.material import MaterialResponse

DTYPE = torch.float64


class GPStressLearner:
    """GP surrogate ``H -> P`` with tangent and variance, updatable with new data.

    Args:
        noise_floor: lower bound on the (standardized) noise variance; keeps the
            Cholesky factor well conditioned when points nearly repeat.
        refit_every: refit hyperparameters on every ``refit_every``-th update
            (0, the default: never refit, only re-condition the GP on the new
            data with the hyperparameters of the first fit, which costs
            milliseconds instead of seconds).
    """

    def __init__(self, noise_floor: float = 1e-6, refit_every: int = 0):
        if noise_floor <= 0:
            raise ValueError(f"noise_floor must be positive, got {noise_floor}")
        self.noise_floor = float(noise_floor)
        self.refit_every = int(refit_every)
        self.n_updates_ = 0

    # --------------------------------------------------------------- fitting
    @staticmethod
    def _flatten(F: Tensor, P: Tensor) -> tuple[Tensor, Tensor]:
        F = check_F(F, k=2)
        P = torch.as_tensor(P, dtype=DTYPE)
        if P.shape != F.shape:
            raise InvalidInput(f"P must have the shape of F {tuple(F.shape)}, got {tuple(P.shape)}")
        if not torch.isfinite(P).all():
            raise InvalidInput("P contains non-finite entries")
        H = (F - torch.eye(2, dtype=DTYPE)).reshape(-1, 4)
        return H, P.reshape(-1, 4)

    def fit(self, F: Tensor, P: Tensor) -> GPStressLearner:
        """Fit on ``n x 2 x 2`` gradients ``F`` and stresses ``P``; returns self."""
        H, Y = self._flatten(F, P)
        if H.shape[0] < 2:
            raise InvalidInput(f"need at least 2 training points, got {H.shape[0]}")
        self.X_, self.Y_ = H, Y
        self._fit_hyperparameters()
        self._condition()
        return self

    def _fit_hyperparameters(self) -> None:
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from gpytorch.constraints import GreaterThan
        from gpytorch.kernels import RBFKernel, ScaleKernel
        from gpytorch.likelihoods import GaussianLikelihood
        from gpytorch.mlls import ExactMarginalLogLikelihood

        # fixed input scaling so lengthscales are O(1) and stay meaningful after updates
        self.x_scale_ = self.X_.abs().amax(0).clamp_min(1e-3)
        self.y_mean_ = self.Y_.mean(0)
        self.y_std_ = self.Y_.std(0).clamp_min(1e-12)
        Xn = self.X_ / self.x_scale_
        Yn = (self.Y_ - self.y_mean_) / self.y_std_
        m = Yn.shape[-1]
        batch = torch.Size([m])
        likelihood = GaussianLikelihood(
            batch_shape=batch, noise_constraint=GreaterThan(self.noise_floor)
        )
        covar = ScaleKernel(RBFKernel(ard_num_dims=4, batch_shape=batch), batch_shape=batch)
        model = SingleTaskGP(
            Xn, Yn, likelihood=likelihood, covar_module=covar, outcome_transform=None
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        self.lengthscale_ = covar.base_kernel.lengthscale.detach().reshape(m, 4).clone()
        self.outputscale_ = covar.outputscale.detach().reshape(m).clone()
        self.noise_ = model.likelihood.noise.detach().reshape(m).clone()
        self.constant_ = model.mean_module.constant.detach().reshape(m).clone()

    def _kernel(self, A: Tensor, B: Tensor) -> Tensor:
        """``m x a x b`` scaled RBF kernel between normalized inputs."""
        a = A[None] / self.lengthscale_[:, None, :]
        b = B[None] / self.lengthscale_[:, None, :]
        d2 = (
            a.pow(2).sum(-1)[..., :, None] + b.pow(2).sum(-1)[..., None, :]
        ) - 2 * a @ b.transpose(-1, -2)
        return self.outputscale_[:, None, None] * torch.exp(-0.5 * d2.clamp_min(0))

    def _kernel_to_train(self, Xs: Tensor) -> Tensor:
        """``m x n x N`` :meth:`_kernel` between normalized inputs ``Xs`` and the training
        inputs, from the scaled training inputs cached by :meth:`_condition`."""
        a = Xs[None] / self.lengthscale_[:, None, :]  # m x n x 4
        d2 = a.pow(2).sum(-1)[..., None] + self._Xl2[:, None, :] - 2 * a @ self._Xl.transpose(-1, -2)
        return self.outputscale_[:, None, None] * torch.exp(-0.5 * d2.clamp_min(0))

    def _condition(self) -> None:
        Xn = self.X_ / self.x_scale_
        Yn = (self.Y_ - self.y_mean_) / self.y_std_
        K = self._kernel(Xn, Xn)
        K = K + self.noise_[:, None, None] * torch.eye(Xn.shape[0], dtype=DTYPE)
        self.L_ = torch.linalg.cholesky(K)
        r = (Yn - self.constant_).T.unsqueeze(-1)  # m x n x 1
        self.alpha_ = torch.cholesky_solve(r, self.L_).squeeze(-1)  # m x n
        # prediction caches: inputs scaled per output and their squared norms. The
        # variance goes through L (a triangular solve), never an explicit K^-1: with the
        # long lengthscales and large outputscales these near-linear fits get, K is
        # ill-conditioned and k^T K^-1 k from the inverse was off by ~1e-3 where the
        # variance is ~1e-10 (measured), which sent every point to the oracle
        self._Xn = Xn
        self._Xl = Xn[None] / self.lengthscale_[:, None, :]  # m x N x 4
        self._Xl2 = self._Xl.pow(2).sum(-1)  # m x N

    def update(self, F: Tensor, P: Tensor) -> GPStressLearner:
        """Add ``n x 2 x 2`` oracle answers; re-condition, refitting every ``refit_every``."""
        H, Y = self._flatten(F, P)
        if H.shape[0] == 0:
            return self
        self.X_ = torch.cat([self.X_, H])
        self.Y_ = torch.cat([self.Y_, Y])
        self.n_updates_ += 1
        if self.refit_every and self.n_updates_ % self.refit_every == 0:
            self._fit_hyperparameters()
        self._condition()
        return self

    def select_batch(
        self, F: Tensor, tolerance: float, min_points: int = 1, max_points: int | None = None
    ) -> Tensor:
        """Indices of the points of ``F`` whose oracle answers bring every point's variance below ``tolerance``.

        Greedy: the point of largest predictive variance is picked, the GP is
        conditioned on it (the posterior covariance does not depend on the
        answer, so no oracle call is needed to know its effect), and so on until
        all variances are below ``tolerance`` or ``max_points`` are picked;
        then up to ``min_points`` in total (e.g. one per oracle worker, which
        costs no extra wall time). Nearby Gauss points have nearly equal ``F``,
        so one pick clears a whole neighbourhood.

        Args:
            F: ``n x 2 x 2`` deformation gradients.
            tolerance: the variance (mean over the 4 components of ``P``) to reach.
            min_points: pick at least this many (when ``n`` allows).
            max_points: pick at most this many (default ``n``).

        Returns:
            ``k`` indices into ``F`` (``k = 0`` when all are already below ``tolerance``).
        """
        if not hasattr(self, "L_"):
            raise RuntimeError("GPStressLearner is not fitted; call fit(F, P) first")
        F = check_F(F, k=2)
        n = F.shape[0]
        max_points = n if max_points is None else min(int(max_points), n)
        Xs = (F - torch.eye(2, dtype=DTYPE)).reshape(n, 4) / self.x_scale_
        Ks = self._kernel_to_train(Xs)  # m x n x N
        V = torch.linalg.solve_triangular(self.L_, Ks.transpose(-1, -2), upper=False)  # m x N x n
        C = self._kernel(Xs, Xs) - V.transpose(-1, -2) @ V  # m x n x n
        scale = self.y_std_.pow(2)[:, None]  # standardized -> P units
        picks: list[int] = []
        if not ((torch.diagonal(C, dim1=-2, dim2=-1).clamp_min(0) * scale).mean(0) >= tolerance).any():
            return torch.zeros(0, dtype=torch.long)
        while len(picks) < max_points:
            var = (torch.diagonal(C, dim1=-2, dim2=-1).clamp_min(0) * scale).mean(0)  # n
            if picks:
                var[picks] = -1.0
            if not (var >= tolerance).any() and len(picks) >= min_points:
                break
            j = int(torch.argmax(var))
            picks.append(j)
            cj = C[:, :, j : j + 1]  # m x n x 1
            C = C - cj @ cj.transpose(-1, -2) / (C[:, j, j] + self.noise_)[:, None, None]
        return torch.tensor(picks, dtype=torch.long)

    @property
    def n_train(self) -> int:
        return self.X_.shape[0]

    # ------------------------------------------------------------ prediction
    def material_response(self, F: Tensor) -> MaterialResponse:
        """``P`` (``n x 2 x 2``), ``dP/dF`` (``n x 2 x 2 x 2 x 2``) and the mean variance of P (``n``)."""
        if not hasattr(self, "L_"):
            raise RuntimeError("GPStressLearner is not fitted; call fit(F, P) first")
        F = check_F(F, k=2)
        n = F.shape[0]
        Xs = (F - torch.eye(2, dtype=DTYPE)).reshape(n, 4) / self.x_scale_
        Ks = self._kernel_to_train(Xs)  # m x n x N
        # d k(x, x_j)/dx = -k (x - x_j) / l^2, summed against alpha
        w = Ks * self.alpha_[:, None, :]  # m x n x N
        wsum = w.sum(-1)  # m x n
        mean = self.constant_[:, None] + wsum
        l2 = self.lengthscale_.pow(2)[:, None, :]  # m x 1 x 4
        dmean = -(wsum[..., None] * Xs[None] - w @ self._Xn) / l2  # m x n x 4
        v = torch.linalg.solve_triangular(self.L_, Ks.transpose(-1, -2), upper=False)  # m x N x n
        var = (self.outputscale_[:, None] - v.pow(2).sum(-2)).clamp_min(0)  # m x n
        P = (mean.T * self.y_std_ + self.y_mean_).reshape(n, 2, 2)
        # dP_o/dF_d = dmean_o/dXn_d * y_std_o / x_scale_d
        A = dmean.permute(1, 0, 2) * self.y_std_[None, :, None] / self.x_scale_[None, None, :]
        variance = (var.T * self.y_std_.pow(2)).mean(-1)
        return MaterialResponse(P, A.reshape(n, 2, 2, 2, 2), variance)

    def __repr__(self) -> str:
        n = self.n_train if hasattr(self, "X_") else 0
        return f"GPStressLearner(n_train={n}, refit_every={self.refit_every})"


def sobol_gradients(n: int, h_max: float, seed: int = 0) -> Tensor:
    """``n x 2 x 2`` deformation gradients ``I + H`` with ``H`` from a scrambled Sobol design in ``[-h_max, h_max]^4``."""
    if n < 1 or not (h_max > 0 and math.isfinite(h_max)):
        raise ValueError(f"need n >= 1 and a positive finite h_max, got n={n}, h_max={h_max}")
    sob = torch.quasirandom.SobolEngine(4, scramble=True, seed=seed)
    H = (2 * sob.draw(n, dtype=DTYPE) - 1) * h_max
    return torch.eye(2, dtype=DTYPE) + H.reshape(n, 2, 2)
