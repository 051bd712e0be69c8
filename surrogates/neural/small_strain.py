r"""Small-strain energy networks ``psi(eps)`` with isotropic or cubic symmetry.

``psi`` is a network of invariants of the symmetric strain
(isotropic: ``tr eps``, ``tr eps^2``, ``tr eps^3``; cubic adds
``sum eps_ii^2`` and ``sum eps_ii^3`` over the cube axes), so
``sigma = d psi / d eps`` and the tangent ``C = d^2 psi / d eps^2`` (by
autograd, symmetric in both index pairs) have the symmetry exactly, and

.. math:: \psi = s\,[N(x) - N(0) - N_{,1}(0)\, x_1]

gives ``psi(0) = 0`` and ``sigma(0) = 0`` exactly (only ``tr eps`` has a
non-zero derivative at ``eps = 0``).

Inputs are strains in Voigt order with *tensor* shear components
(2-D plane strain: ``eps11, eps22, eps12``; 3-D:
``eps11, eps22, eps33, eps23, eps13, eps12``); outputs the stresses in the
same order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from surrogates.base import check_int, register_surrogate
from surrogates.dataset import Dataset
from surrogates.neural.ensemble import NeuralEnsembleModel, check_finite, real_tensor
from surrogates.neural.networks import ScalarMLP
from surrogates.neural.training import (
    TrainingOptions,
    data_scale,
    member_split,
    nonnegative,
    scaled_mse,
    train_network,
)

VOIGT = {2: ((0, 0), (1, 1), (0, 1)), 3: ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))}


def voigt_to_tensor(v: Tensor, dim: int) -> Tensor:
    """``n x (3|6)`` Voigt (tensor shear) to ``n x k x k`` symmetric tensors."""
    idx = VOIGT[dim]
    if v.shape[-1] != len(idx):
        raise ValueError(
            f"strains must have {len(idx)} Voigt components {idx} for dim={dim}, "
            f"got last dimension {v.shape[-1]}"
        )
    rows = []
    for i in range(dim):
        row = []
        for j in range(dim):
            a = idx.index((min(i, j), max(i, j)))
            row.append(v[..., a])
        rows.append(torch.stack(row, -1))
    return torch.stack(rows, -2)


def tensor_to_voigt(t: Tensor, dim: int) -> Tensor:
    """``n x k x k`` to ``n x (3|6)`` (tensor components, no factor 2)."""
    return torch.stack([t[..., i, j] for i, j in VOIGT[dim]], -1)


class SmallStrainEnergy(nn.Module):
    """One small-strain energy network ``psi(eps)``.

    Args:
        dim: 2 (plane strain) or 3.
        symmetry: ``"isotropic"`` or ``"cubic"``.
        hidden: hidden widths.
        seed: initial-weight seed.
    """

    def __init__(self, dim: int = 3, symmetry: str = "isotropic", hidden=(16, 16), seed: int = 0):
        super().__init__()
        if isinstance(dim, bool) or dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim!r}")
        if symmetry not in ("isotropic", "cubic"):
            raise ValueError(f"symmetry must be 'isotropic' or 'cubic', got {symmetry!r}")
        self.dim, self.symmetry = int(dim), symmetry
        p = 3 if symmetry == "isotropic" else 5
        self.net = ScalarMLP(p, hidden=hidden, generator=torch.Generator().manual_seed(seed))
        self.register_buffer("inv_scale", torch.ones(p, dtype=torch.float64))
        self.register_buffer("energy_scale", torch.ones((), dtype=torch.float64))

    def invariants(self, eps: Tensor) -> Tensor:
        """``n x p`` invariants of ``n x k x k`` strains (symmetrized first)."""
        e = 0.5 * (eps + eps.transpose(-1, -2))
        e2 = e @ e
        vals = [e.diagonal(dim1=-2, dim2=-1).sum(-1), e2.diagonal(dim1=-2, dim2=-1).sum(-1),
                (e2 * e.transpose(-1, -2)).sum((-2, -1))]
        if self.symmetry == "cubic":
            d = e.diagonal(dim1=-2, dim2=-1)
            vals += [(d * d).sum(-1), (d * d * d).sum(-1)]
        return torch.stack(vals, -1)

    @torch.no_grad()
    def set_scales(self, eps: Tensor, sigma: Tensor) -> None:
        c = self.invariants(eps).pow(2).mean(0).sqrt()
        self.inv_scale.copy_(torch.where(c > 1e-12, c, torch.ones_like(c)))
        self.energy_scale.copy_(data_scale(sigma))

    def energy(self, eps: Tensor) -> Tensor:
        """``n`` energies of ``n x k x k`` strains."""
        x = self.invariants(eps) / self.inv_scale
        val, _, _ = self.net(x)
        v0, g0, _ = self.net(torch.zeros(1, x.shape[1], dtype=x.dtype), order=1)
        return self.energy_scale * (val - v0[0] - g0[0, 0] * x[:, 0])

    def forward(self, eps: Tensor, order: int = 1):
        """Energy ``n``, stress ``n x k x k``, tangent ``n x k x k x k x k`` (order 2)."""
        # a graph is kept where the caller differentiates further: through strains
        # that carry a gradient (built from X) or through trainable weights
        wants_grad = torch.is_grad_enabled() and (
            eps.requires_grad or any(p.requires_grad for p in self.parameters()))
        with torch.enable_grad():
            if not eps.requires_grad:
                eps = eps.detach().requires_grad_(True)
            psi = self.energy(eps)
            if order == 0:
                return psi, None, None
            need_graph = order >= 2 or wants_grad
            (sig,) = torch.autograd.grad(psi.sum(), eps, create_graph=need_graph)
            if order == 1:
                return psi, sig, None
            k = self.dim
            rows = [
                torch.autograd.grad(sig[:, i, j].sum(), eps, create_graph=True)[0]
                for i in range(k) for j in range(k)
            ]
            C = torch.stack(rows, 1).reshape(-1, k, k, k, k)
        return psi, sig, C


@register_surrogate
class SmallStrainEnsemble(NeuralEnsembleModel):
    """Deep ensemble of :class:`SmallStrainEnergy` networks as a BoTorch Model.

    ``X``: ``n x 3`` (2-D) or ``n x 6`` (3-D) Voigt strains (tensor shear);
    posterior over the stresses in the same order. One variance factor for all
    stress components, frame-indifferent as
    :class:`~surrogates.neural.hyperelastic.HyperelasticEnsemble`'s.
    """

    calibrate_per_output = False

    def __init__(self, dim: int = 3, symmetry: str = "isotropic", hidden=(16, 16),
                 num_members: int = 5, seed: int = 0):
        super().__init__()
        num_members, seed = check_int("num_members", num_members, 1), check_int("seed", seed)
        hidden = [check_int("hidden", h, 1) for h in hidden]
        self._config = {"dim": int(dim), "symmetry": symmetry, "hidden": [int(h) for h in hidden],
                        "num_members": int(num_members), "seed": int(seed)}
        self.members = nn.ModuleList(
            SmallStrainEnergy(dim, symmetry, tuple(hidden), seed=seed + i)
            for i in range(int(num_members))
        )
        self._num_outputs = len(VOIGT[dim])
        self._init_ensemble_buffers(self._num_outputs)

    @classmethod
    def from_dataset(cls, dataset: Dataset, *, tangent: Tensor | None = None,
                     tangent_weight: float = 1.0, val_fraction: float = 0.15,
                     calibration_fraction: float = 0.15,
                     training: TrainingOptions | dict | None = None, **options: Any):
        """Fit on Voigt strains ``X`` and stresses ``Y`` (optional tangents ``n x k^4``)."""
        if dataset.d not in (3, 6) or dataset.m != dataset.d:
            raise ValueError(
                f"SmallStrainEnsemble needs Voigt strains X (n x 3 or n x 6) and stresses Y of "
                f"the same width, got X n x {dataset.d}, Y n x {dataset.m}"
            )
        dim = 2 if dataset.d == 3 else 3
        options.setdefault("dim", dim)
        model, training, val_fraction, fit_idx, cal_idx = cls._begin_fit(
            dataset, training, val_fraction, calibration_fraction, options)
        eps = voigt_to_tensor(dataset.X, dim)
        sig = voigt_to_tensor(dataset.Y, dim)
        tangent_weight = nonnegative("tangent_weight", tangent_weight)
        A = None if tangent is None else real_tensor("tangent", tangent)
        if A is not None and A.shape != (dataset.n, dim, dim, dim, dim):
            raise ValueError(f"tangent must be n x {dim} x {dim} x {dim} x {dim}, got {tuple(A.shape)}")
        if A is not None:
            check_finite("tangent", A)
        seed = model._config["seed"]
        s_scale = data_scale(sig[fit_idx])
        a_scale = None if A is None else data_scale(A[fit_idx])
        model.output_scale.fill_(float(s_scale))

        def loss(member, idx):
            _, s, C = member(eps[idx], order=2 if A is not None else 1)
            val = scaled_mse(s, sig[idx], s_scale)
            if A is not None:
                val = val + tangent_weight * scaled_mse(C, A[idx], a_scale)
            return val

        for i, member in enumerate(model.members):
            member.set_scales(eps[fit_idx], sig[fit_idx])
            tr, va = member_split(fit_idx, val_fraction, seed + 1000 + i)
            train_network(member, loss, tr, va, training)
        model.eval()
        if cal_idx is not None:
            model.calibrate(dataset.X[cal_idx], dataset.Y[cal_idx])
        return model

    def member_predictions(self, X: Tensor) -> Tensor:
        d = self._config["dim"]
        check_finite("X", X)  # a NaN strain had given NaN stresses silently
        eps = voigt_to_tensor(X.reshape(-1, X.shape[-1]), d)
        out = [tensor_to_voigt(m(eps, order=1)[1], d).reshape(*X.shape[:-1], -1)
               for m in self.members]
        return torch.stack(out, 0)

    def stress_tangent(self, eps: Tensor) -> tuple[Tensor, Tensor]:
        """Ensemble-mean stress ``n x k x k`` and tangent ``n x k x k x k x k`` at
        strains ``eps`` (``n x k x k``, symmetric)."""
        d = self._config["dim"]
        eps = real_tensor("eps", eps)
        if eps.dim() != 3 or eps.shape[1:] != (d, d):
            raise ValueError(f"eps must be n x {d} x {d}, got shape {tuple(eps.shape)}")
        check_finite("eps", eps)
        outs = [m(eps, order=2) for m in self.members]
        sig = torch.stack([o[1] for o in outs]).mean(0)
        C = torch.stack([o[2] for o in outs]).mean(0)
        return sig.detach(), C.detach()
