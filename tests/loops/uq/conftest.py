"""A small constitutive GP over ``[H, theta]`` (plane strain, one descriptor) shared by the UQ tests."""

from __future__ import annotations

import pytest
import torch

from loops.fe2.providers import NeoHookean

LAW = NeoHookean.from_young(10.0, 0.3)


def scaled_law_data(n: int, seed: int = 0, h: float = 0.12):
    """``n`` points of ``P = theta * P_NH(F)`` with ``H`` in ``[-h, h]^4`` and ``theta`` in ``[1, 2]``."""
    g = torch.Generator().manual_seed(seed)
    H = h * (2 * torch.rand(n, 4, generator=g, dtype=torch.float64) - 1)
    th = 1 + torch.rand(n, 1, generator=g, dtype=torch.float64)
    F = torch.eye(2, dtype=torch.float64) + H.reshape(n, 2, 2)
    P = th * LAW.material_response(F).P.reshape(n, 4)
    return torch.cat([H, th], 1), P


@pytest.fixture(scope="session")
def descriptor_gp():
    from surrogates.dataset import Dataset
    from surrogates.gp import GPSurrogate

    X, Y = scaled_law_data(30)
    return GPSurrogate.from_dataset(Dataset(X, Y), n_restarts=1, maxiter=60, dim_F=2)
