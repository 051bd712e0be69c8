r"""Generic invariant network: elastic constants with the crystal symmetry built in.

For oracles whose output is a material tensor as a function of a few scalars
(e.g. the cubic elastic constants of a crystal versus temperature), the
network predicts only the independent constants of the symmetry class, in a
parametrization that is stable by construction, and the stiffness tensor is
assembled from them, so the symmetry holds exactly:

* ``"cubic"``: the three eigenvalues of the Voigt stiffness
  ``lambda_1 = C11 + 2 C12`` (bulk, ``3K``), ``lambda_2 = C11 - C12``
  (tetragonal shear) and ``lambda_3 = C44`` are softplus outputs, hence
  positive: Born stability holds for every input;
* ``"isotropic"``: bulk ``K`` and shear ``G`` modulus as softplus outputs,
  ``C11 = K + 4G/3``, ``C12 = K - 2G/3``, ``C44 = G``.

The model's outputs are ``(C11, C12, C44)`` in the data's units; inputs are
scaled to the training box. :meth:`CubicElasticEnsemble.stiffness` returns the
``n x 6 x 6`` Voigt matrices.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as Fn

from surrogates.base import check_int, register_surrogate
from surrogates.dataset import Dataset
from surrogates.neural.ensemble import NeuralEnsembleModel, check_finite, real_tensor
from surrogates.neural.training import (
    TrainingOptions,
    data_scale,
    member_split,
    scaled_mse,
    train_network,
)


class ElasticConstantsNet(nn.Module):
    """``d`` scalars -> ``(C11, C12, C44)`` of a cubic or isotropic stiffness."""

    def __init__(self, in_dim: int, symmetry: str = "cubic", hidden=(16, 16), seed: int = 0):
        super().__init__()
        if symmetry not in ("cubic", "isotropic"):
            raise ValueError(f"symmetry must be 'cubic' or 'isotropic', got {symmetry!r}")
        self.symmetry = symmetry
        g = torch.Generator().manual_seed(seed)
        dims = [in_dim, *hidden, 3 if symmetry == "cubic" else 2]
        layers = []
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            lin = nn.Linear(a, b, dtype=torch.float64)
            lim = math.sqrt(6.0 / (a + b))
            with torch.no_grad():
                lin.weight.copy_((torch.rand(b, a, generator=g, dtype=torch.float64) * 2 - 1) * lim)
                lin.bias.zero_()
            layers += [lin, nn.Tanh()]
        self.mlp = nn.Sequential(*layers[:-1])
        self.register_buffer("x_lo", torch.zeros(in_dim, dtype=torch.float64))
        self.register_buffer("x_hi", torch.ones(in_dim, dtype=torch.float64))
        self.register_buffer("c_scale", torch.ones((), dtype=torch.float64))

    def forward(self, X: Tensor) -> Tensor:
        """``... x 3`` constants ``(C11, C12, C44)`` at ``... x d`` inputs."""
        z = 2 * (X - self.x_lo) / (self.x_hi - self.x_lo) - 1
        e = Fn.softplus(self.mlp(z)) * self.c_scale
        if self.symmetry == "cubic":
            l1, l2, l3 = e.unbind(-1)
            c11, c12, c44 = (l1 + 2 * l2) / 3, (l1 - l2) / 3, l3
        else:
            K, G = e.unbind(-1)
            c11, c12, c44 = K + 4 * G / 3, K - 2 * G / 3, G
        return torch.stack([c11, c12, c44], -1)


def cubic_voigt(c: Tensor) -> Tensor:
    """``... x 6 x 6`` Voigt stiffness from ``... x 3`` ``(C11, C12, C44)``."""
    c11, c12, c44 = c.unbind(-1)
    C = torch.zeros(*c.shape[:-1], 6, 6, dtype=c.dtype, device=c.device)
    for i in range(3):
        for j in range(3):
            C[..., i, j] = c11 if i == j else c12
        C[..., 3 + i, 3 + i] = c44
    return C


@register_surrogate
class CubicElasticEnsemble(NeuralEnsembleModel):
    """Deep ensemble for cubic (or isotropic) elastic constants versus scalars.

    ``X``: ``n x d`` (e.g. temperature); ``Y``: ``n x 3`` ``(C11, C12, C44)``.
    """

    def __init__(self, in_dim: int = 1, symmetry: str = "cubic", hidden=(16, 16),
                 num_members: int = 5, seed: int = 0):
        super().__init__()
        num_members, in_dim = check_int("num_members", num_members, 1), check_int("in_dim", in_dim, 1)
        seed, hidden = check_int("seed", seed), [check_int("hidden", h, 1) for h in hidden]
        self._config = {"in_dim": int(in_dim), "symmetry": symmetry,
                        "hidden": [int(h) for h in hidden], "num_members": int(num_members),
                        "seed": int(seed)}
        self.members = nn.ModuleList(
            ElasticConstantsNet(in_dim, symmetry, tuple(hidden), seed=seed + i)
            for i in range(int(num_members))
        )
        self._num_outputs = 3
        self._init_ensemble_buffers(3)

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, val_fraction: float = 0.15,
                     calibration_fraction: float = 0.15,
                     training: TrainingOptions | dict | None = None, **options: Any):
        """Fit on ``X`` (``n x d``) and ``Y = (C11, C12, C44)`` (``n x 3``)."""
        if dataset.m != 3:
            raise ValueError(f"Y must be n x 3 (C11, C12, C44), got n x {dataset.m}")
        options.setdefault("in_dim", dataset.d)
        model, training, val_fraction, fit_idx, cal_idx = cls._begin_fit(
            dataset, training, val_fraction, calibration_fraction, options)
        X, Y = dataset.X, dataset.Y
        seed = model._config["seed"]
        scale = data_scale(Y[fit_idx])
        model.output_scale.fill_(float(scale))
        lo, hi = X[fit_idx].amin(0), X[fit_idx].amax(0)
        hi = torch.where(hi > lo, hi, lo + 1.0)

        def loss(member, idx):
            return scaled_mse(member(X[idx]), Y[idx], scale)

        for i, member in enumerate(model.members):
            member.x_lo.copy_(lo)
            member.x_hi.copy_(hi)
            member.c_scale.fill_(float(scale))
            tr, va = member_split(fit_idx, val_fraction, seed + 1000 + i)
            train_network(member, loss, tr, va, training)
        model.eval()
        if cal_idx is not None:
            model.calibrate(X[cal_idx], Y[cal_idx])
        return model

    def member_predictions(self, X: Tensor) -> Tensor:
        if X.shape[-1] != self._config["in_dim"]:
            raise ValueError(f"X must be ... x {self._config['in_dim']}, got {tuple(X.shape)}")
        return torch.stack([m(X) for m in self.members], 0)

    def stiffness(self, X: Tensor) -> Tensor:
        """Ensemble-mean ``n x 6 x 6`` Voigt stiffness (exact cubic structure) at ``X``."""
        X = real_tensor("X", X)
        check_finite("X", X)
        mean, _ = self.raw_mean_variance(X)
        return cubic_voigt(mean)
