"""Component storage of tensor fields and the linear tangent operators on them.

The solver stores a field of ``k x k`` tensors as ``m`` component fields,
``... x m x *grid``: Mandel components for small strain (symmetric tensors),
all ``k^2`` components for finite strain (see :class:`ComponentBasis`). A
tangent is a linear map of such fields, voxel by voxel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from oracles.exceptions import InvalidInput

__all__ = ["ComponentBasis", "DenseTangent", "IsotropicTangent", "mandel_basis"]

DTYPE = torch.float64


def mandel_basis(k: int) -> tuple[list[tuple[int, int]], list[float]]:
    """Mandel components ``(i, j)`` and their weights for ``k = 2, 3``.

    Order: 2D ``11, 22, 12``; 3D ``11, 22, 33, 23, 13, 12`` (Voigt order).
    """
    if k == 2:
        idx = [(0, 0), (1, 1), (0, 1)]
    elif k == 3:
        idx = [(0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1)]
    else:
        raise InvalidInput(f"dimension must be 2 or 3, got {k}")
    return idx, [1.0 if i == j else math.sqrt(2.0) for i, j in idx]


class ComponentBasis:
    """Maps ``k x k`` tensors to ``m`` component vectors and back.

    Args:
        kind: ``"small"``: symmetric tensors as ``m = k (k + 1) / 2`` Mandel
            components (shear scaled by ``sqrt 2``, so the Euclidean inner
            product of components is the tensor one); ``"finite"``: all
            ``m = k^2`` components, row-major.
        k: dimension, 2 or 3.

    Attributes:
        idx, w: the component index pairs ``(i, j)`` and their weights.
        m: the number of components.
    """

    def __init__(self, kind: str, k: int):
        self.kind, self.k = kind, k
        if kind == "small":
            idx, w = mandel_basis(k)
        else:
            idx, w = [(i, j) for i in range(k) for j in range(k)], [1.0] * (k * k)
        self.idx, self.w = idx, w
        self.m = len(idx)
        self.ii = torch.tensor([i for i, _ in idx])
        self.jj = torch.tensor([j for _, j in idx])
        self.wt = torch.tensor(w, dtype=DTYPE)

    def vec(self, A: Tensor) -> Tensor:
        """``... x k x k`` -> ``... x m`` (symmetric part for Mandel)."""
        if self.kind == "finite":
            return A.reshape(*A.shape[:-2], self.m)
        As = 0.5 * (A + A.transpose(-1, -2))
        return As[..., self.ii, self.jj] * self.wt.to(A)

    def ten(self, v: Tensor) -> Tensor:
        """``... x m`` -> ``... x k x k``."""
        k = self.k
        if self.kind == "finite":
            return v.reshape(*v.shape[:-1], k, k)
        A = v.new_zeros(*v.shape[:-1], k, k)
        s = v / self.wt.to(v)
        A[..., self.ii, self.jj] = s
        A[..., self.jj, self.ii] = s
        return A

    def mat(self, C: Tensor) -> Tensor:
        """Tangent ``... x k x k x k x k`` -> ``... x m x m``."""
        if self.kind == "finite":
            return C.reshape(*C.shape[:-4], self.m, self.m)
        ii, jj, w = self.ii, self.jj, self.wt.to(C)
        M = C[..., ii[:, None], jj[:, None], ii[None, :], jj[None, :]]
        return M * (w[:, None] * w[None, :])

    def ten4(self, M: Tensor) -> Tensor:
        """``... x m x m`` -> ``... x k x k x k x k`` (minor-symmetric for Mandel)."""
        k = self.k
        if self.kind == "finite":
            return M.reshape(*M.shape[:-2], k, k, k, k)
        w = self.wt.to(M)
        Ms = M / (w[:, None] * w[None, :])
        C = M.new_zeros(*M.shape[:-2], k, k, k, k)
        for I, (a, b) in enumerate(self.idx):
            for J, (c, d) in enumerate(self.idx):
                v = Ms[..., I, J]
                for p, q in {(a, b), (b, a)}:
                    for r, s in {(c, d), (d, c)}:
                        C[..., p, q, r, s] = v
        return C


class IsotropicTangent:
    """Isotropic linear tangent on Mandel fields: ``x -> 2 mu x + lambda tr(x) 1``.

    Args:
        lam: ``*grid`` first Lame parameter per voxel.
        mu2: ``*grid`` twice the shear modulus per voxel.
        k: dimension.

    ``self(x)`` maps ``... x m x *grid`` to the same shape.
    """

    def __init__(self, lam: Tensor, mu2: Tensor, k: int):
        self.lam, self.mu2, self.k = lam, mu2, k

    def __call__(self, x: Tensor) -> Tensor:
        k = self.k
        d = x.dim() - k - 1  # index of the component axis
        tr = x.narrow(d, 0, k).sum(d, keepdim=True)
        y = x * self.mu2
        y.narrow(d, 0, k).addcmul_(tr, self.lam)
        return y


class DenseTangent:
    """Per-voxel tangent ``K``, ``L x m x m x *grid``, applied to fields
    ``L x B x m x *grid`` (``B`` right-hand sides per load):
    ``(K x)_I = sum_J K_IJ x_J`` voxel by voxel."""

    def __init__(self, K: Tensor):
        # component-major storage, so that each K[:, :, j] runs contiguously
        # over the voxels; the laws return K voxel-major, whose slices would
        # stride m^2 doubles per voxel (one copy per linearization is cheaper)
        self.K = K.contiguous()

    def __call__(self, x: Tensor) -> Tensor:
        K = self.K
        m = K.shape[1]
        y = K[:, None, :, 0] * x[:, :, 0:1]
        for j in range(1, m):
            y.addcmul_(K[:, None, :, j], x[:, :, j : j + 1])
        return y
