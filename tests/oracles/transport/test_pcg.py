"""Preconditioned CG of the transport solvers and the Stokes solver's restricted Laplacian."""

import numpy as np
import pytest
import torch

from oracles.exceptions import NotConverged
from oracles.rve.krylov import IndefiniteOperator
from oracles.transport.pcg import preconditioned_cg
from oracles.transport.permeability import StokesSolver
from oracles.transport.porous import CylinderArray, SphereArray

D = torch.float64


def _spd(n, seed, cond=100.0):
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=D))
    return Q @ torch.diag(torch.logspace(0, np.log10(cond), n, dtype=D)) @ Q.T


def test_pcg_matches_a_direct_solve_for_a_batch_of_fields():
    # 3 systems of 2 x 5 fields (n = 10), one matrix each, Jacobi preconditioner
    A = torch.stack([_spd(10, s) for s in range(3)])
    b = torch.randn(3, 2, 5, generator=torch.Generator().manual_seed(7), dtype=D)

    def apply_A(v):
        return (A @ v.reshape(3, 10, 1)).reshape(v.shape)

    dinv = 1.0 / torch.diagonal(A, dim1=-2, dim2=-1)

    def precond(v):
        return (dinv * v.reshape(3, 10)).reshape(v.shape)

    x, it, rel = preconditioned_cg(apply_A, b, precond, tol=1e-12, maxiter=100, ndim_field=2)
    ref = torch.linalg.solve(A, b.reshape(3, 10, 1)).reshape(3, 2, 5)
    torch.testing.assert_close(x, ref, rtol=1e-9, atol=1e-11)
    assert x.shape == b.shape and rel.shape == (3,) and (rel <= 1e-12).all()
    assert it <= 10 + 2  # n steps in exact arithmetic


def test_pcg_refuses_an_indefinite_operator_and_reports_non_convergence():
    A = torch.diag(torch.tensor([1.0, 2.0, -3.0], dtype=D))
    b = torch.ones(1, 3, dtype=D)
    with pytest.raises(IndefiniteOperator, match="non-positive curvature"):
        preconditioned_cg(lambda v: v @ A, b, lambda v: v, tol=1e-10, maxiter=50, ndim_field=1)
    with pytest.raises(NotConverged, match="did not reach tol"):
        preconditioned_cg(lambda v: v @ _spd(3, 0, 1e6), b, lambda v: v, tol=1e-14, maxiter=1, ndim_field=1)


@pytest.mark.parametrize(
    "solid",
    [
        CylinderArray(radius_fraction=0.3).solid((12, 12))[:9],  # a non-square mask
        SphereArray(radius_fraction=0.35).solid((7, 7, 7))[:6, :5],
        np.repeat([[True], [True], [False], [False], [False], [False]], 2, axis=1),  # an axis of 2 voxels
    ],
    ids=["2d", "3d", "two-voxel axis"],
)
def test_restricted_laplacian_is_the_periodic_stencil_on_the_solid_nodes(solid):
    s = StokesSolver(solid)
    shape, k = s.shape, s.k
    N = int(np.prod(shape))
    # the dense periodic 2k+1-point Laplacian, column by column with np.roll
    L = np.zeros((N, N))
    for j in range(N):
        e = np.zeros(N)
        e[j] = 1.0
        e = e.reshape(shape)
        col = 2.0 * k * e
        for a in range(k):
            col -= np.roll(e, 1, axis=a) + np.roll(e, -1, axis=a)
        L[:, j] = col.ravel()
    idx = s.idx.numpy()
    np.testing.assert_array_equal(s.lap_solid.to_dense().numpy(), L[np.ix_(idx, idx)])
