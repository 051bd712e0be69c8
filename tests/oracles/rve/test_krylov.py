"""Batched conjugate gradients against dense linear algebra."""

import pytest
import torch

from oracles.exceptions import NotConverged
from oracles.rve.krylov import IndefiniteOperator, batched_cg, bdot, gram

DT = torch.float64


def spd_batch(n_sys: int, n: int, cond: float, seed: int) -> torch.Tensor:
    """``n_sys x n x n`` SPD matrices with eigenvalues spread over ``[1, cond]``."""
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(n_sys, n, n, generator=g, dtype=DT))
    lam = torch.logspace(0, torch.log10(torch.tensor(cond)).item(), n, dtype=DT)
    return Q @ torch.diag_embed(lam.expand(n_sys, n)) @ Q.transpose(1, 2)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_solves_a_batch_of_spd_systems(seed):
    A = spd_batch(4, 30, 1e3, seed)
    b = torch.randn(4, 30, generator=torch.Generator().manual_seed(seed + 10), dtype=DT)
    x, it, rel = batched_cg(lambda p: (A @ p.unsqueeze(-1)).squeeze(-1), b, 1e-10, 200, ndim_field=1)
    ref = torch.linalg.solve(A, b)
    torch.testing.assert_close(x, ref, rtol=1e-6, atol=1e-9)
    true_rel = (b - (A @ x.unsqueeze(-1)).squeeze(-1)).norm(dim=-1) / b.norm(dim=-1)
    assert (true_rel <= 1e-10 * (1 + 1e-6)).all()
    assert rel.shape == (4,) and (rel <= 1e-10).all() and it >= 1


def test_a_system_stopped_by_the_absolute_floor_reports_a_residual_within_tol():
    """A right-hand side that is zero to round-off (a unit shear load on a cell
    whose phases share the shear modulus) stops on ``atol``; its residual
    relative to ``||b||`` is meaningless (the RVE CLI had printed 1.18 for a
    converged solve). The reported one is relative to ``max(||b||, atol / tol)``."""
    A = spd_batch(2, 20, 10.0, 4)
    b = torch.randn(2, 20, generator=torch.Generator().manual_seed(5), dtype=DT)
    b[1] *= 1e-17
    atol = torch.tensor([0.0, 1e-14], dtype=DT)
    x, _, rel = batched_cg(lambda p: (A @ p.unsqueeze(-1)).squeeze(-1), b, 1e-8, 100, ndim_field=1, atol=atol)
    r = (b - (A @ x.unsqueeze(-1)).squeeze(-1)).norm(dim=-1)
    assert (rel <= 1e-8).all()
    assert r[1] <= 1e-14 and rel[1] == pytest.approx(float(r[1] / (1e-14 / 1e-8)))


def test_few_distinct_eigenvalues_converge_in_as_many_iterations():
    """CG's Krylov space holds the solution after k steps when A has k distinct eigenvalues."""
    g = torch.Generator().manual_seed(3)
    Q, _ = torch.linalg.qr(torch.randn(40, 40, generator=g, dtype=DT))
    lam = torch.tensor([1.0, 5.0, 20.0], dtype=DT).repeat_interleave(torch.tensor([10, 20, 10]))
    A = Q @ torch.diag(lam) @ Q.T
    b = torch.randn(1, 40, generator=g, dtype=DT)
    _, it, _ = batched_cg(lambda p: p @ A, b, 1e-12, 100, ndim_field=1)
    assert it <= 4


def test_absolute_floor_and_iteration_limit():
    A = spd_batch(1, 50, 1e6, 4)
    b = torch.randn(1, 50, generator=torch.Generator().manual_seed(5), dtype=DT)
    op = lambda p: (A @ p.unsqueeze(-1)).squeeze(-1)  # noqa: E731
    _, it_loose, _ = batched_cg(op, b, 1e-12, 500, ndim_field=1, atol=1e-3 * b.norm())
    _, it_tight, _ = batched_cg(op, b, 1e-12, 500, ndim_field=1)
    assert it_loose < it_tight
    with pytest.raises(NotConverged, match="did not reach tol"):
        batched_cg(op, b, 1e-12, 5, ndim_field=1)


def test_detects_an_indefinite_operator():
    d = torch.tensor([3.0, 1.0, -0.5, 2.0], dtype=DT)
    b = torch.ones(1, 4, dtype=DT)
    with pytest.raises(IndefiniteOperator, match="non-positive curvature"):
        batched_cg(lambda x: d * x, b, 1e-10, 50, ndim_field=1)
    x, _, _ = batched_cg(lambda x: d.abs() * x, b, 1e-12, 50, ndim_field=1)
    torch.testing.assert_close(x[0], 1.0 / d.abs())


def test_preconditioned_form_in_a_weighted_inner_product():
    """With ``M = W^-1`` diagonal, CG on ``M A x = M b`` in the inner product
    ``<u, W v>`` (where ``M A`` is self-adjoint) solves ``A x = b``."""
    A = spd_batch(2, 25, 1e2, 6)
    w = torch.linspace(1.0, 50.0, 25, dtype=DT)
    Aw = torch.diag(w.sqrt()) @ A @ torch.diag(w.sqrt())  # badly scaled SPD
    b = torch.randn(2, 25, generator=torch.Generator().manual_seed(7), dtype=DT)
    x, _, _ = batched_cg(
        lambda p: (Aw @ p.unsqueeze(-1)).squeeze(-1) / w,
        b / w,
        1e-11,
        200,
        ndim_field=1,
        inner=lambda u, v: (u * w * v).sum(-1),
    )
    torch.testing.assert_close(x, torch.linalg.solve(Aw, b), rtol=1e-7, atol=1e-10)


def test_bdot_and_gram_match_einsum():
    g = torch.Generator().manual_seed(8)
    u = torch.randn(2, 3, 4, 5, 6, generator=g, dtype=DT)
    v = torch.randn(2, 3, 4, 5, 6, generator=g, dtype=DT)
    torch.testing.assert_close(bdot(u, v, 3), torch.einsum("abijk,abijk->ab", u, v))
    torch.testing.assert_close(gram(u, v, 3), torch.einsum("abIjk,abJjk->abIJ", u, v))
