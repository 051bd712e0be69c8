"""Newton-Krylov equilibrium and load-path continuation on small RVEs."""

import numpy as np
import pytest
import torch

from oracles.rve.laws import NeoHookean, StVenantKirchhoff
from oracles.rve.newton import continuation, newton, reference_load
from oracles.rve.projection import field_norm
from oracles.rve.solver import FFTSolver

DT = torch.float64


def two_phase(N=9, k=2):
    pm = np.zeros((N,) * k, dtype=int)
    pm[tuple(slice(2, 6) for _ in range(k))] = 1
    return pm


def test_newton_converges_quadratically_to_equilibrium():
    """The residual ``||G P|| / ||P||`` falls at least quadratically once it
    is small (an exact tangent), and the answer is in equilibrium."""
    s = FFTSolver(two_phase(), [NeoHookean(K=1.0, mu=0.5), NeoHookean(K=10.0, mu=5.0)], cg_tol=1e-12, newton_tol=1e-11)
    F = torch.tensor([[[1.08, 0.05], [0.02, 0.97]]], dtype=DT)
    X, S, Kt, rel, log = newton(s, s.basis.vec(F))
    res = log["residuals"]
    assert res[-1] <= 1e-11 and rel.item() == pytest.approx(res[-1])
    for r0, r1 in zip(res[1:-1], res[2:], strict=False):
        if r0 < 1e-2 and r1 > 1e-13:  # round-off floor aside
            assert r1 <= 10 * r0**2, res
    torch.testing.assert_close(X.mean((-2, -1)), s.basis.vec(F))  # mean is the macro load
    assert (field_norm(s.G(S), 2) <= 1e-11 * field_norm(S, 2)).all()


def test_newton_on_a_homogeneous_cell_is_the_homogeneous_field():
    law = StVenantKirchhoff(K=2.0, mu=1.0)
    s = FFTSolver(np.zeros((5, 5, 5), dtype=int), [law])
    F = torch.eye(3, dtype=DT) + 0.05 * torch.randn(3, 3, generator=torch.Generator().manual_seed(0), dtype=DT)
    X, S, _, _, log = newton(s, s.basis.vec(F.unsqueeze(0)))
    assert log["newton_iterations"] == 0
    P, _ = law.stress_tangent(F.unsqueeze(0))
    torch.testing.assert_close(s.basis.ten(S[0, :, 0, 0, 0]), P[0])


def test_reference_load_is_the_rotation_of_the_polar_decomposition():
    s = FFTSolver(two_phase(5, 3), [NeoHookean(K=1.0, mu=0.5), NeoHookean(K=3.0, mu=1.0)])
    g = torch.Generator().manual_seed(1)
    F = torch.eye(3, dtype=DT) + 0.4 * torch.randn(2, 3, 3, generator=g, dtype=DT)
    F = F * torch.sign(torch.linalg.det(F))[:, None, None]  # det F > 0 (3 x 3: sign flips det)
    R = s.basis.ten(reference_load(s, s.basis.vec(F)))
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3, dtype=DT).expand(2, 3, 3))
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(2, dtype=DT))
    U = R.transpose(1, 2) @ F  # symmetric positive definite stretch
    torch.testing.assert_close(U, U.transpose(1, 2))
    assert (torch.linalg.eigvalsh(U) > 0).all()


def test_continuation_reaches_the_same_equilibrium_as_direct_newton():
    s = FFTSolver(two_phase(), [NeoHookean(K=1.0, mu=0.5), NeoHookean(K=10.0, mu=5.0)], cg_tol=1e-12, newton_tol=1e-10)
    F = torch.tensor([[[1.1, 0.2], [0.0, 0.95]]], dtype=DT)
    vbar = s.basis.vec(F)
    X, S, _, _, _ = newton(s, vbar)
    from oracles.exceptions import NotConverged

    Xc, Sc, _, relc, log = continuation(s, vbar, NotConverged("direct Newton skipped for the test"))
    assert log["load_path"][-1] == pytest.approx(1.0) and relc.item() <= 1e-10
    torch.testing.assert_close(Sc.mean((-2, -1)), S.mean((-2, -1)), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(Xc, X, rtol=0, atol=1e-7)


@pytest.mark.parametrize("law", ["svk", "neo"])
def test_finite_strain_near_the_identity_converges_to_the_linear_response(law):
    """|F - I| of 1e-8 and 1e-9: the computed P has round-off ~ eps |K|, as large as
    newton_tol ||P||, so ||G P|| / ||P|| could not reach the tolerance (NotConverged after
    30 iterations and six halvings); the answer is the small-strain tangent's, C : sym(H)."""
    import torch

    from oracles.rve import Inclusion, IsotropicElastic, NeoHookean, RVEOracle, StVenantKirchhoff

    cls = StVenantKirchhoff if law == "svk" else NeoHookean
    phases = [dict(K=0.833, mu=0.386), dict(K=8.33, mu=3.86)]
    fin = RVEOracle([cls(**p) for p in phases], Inclusion(0.25), grid=15, dim=2)
    lin = RVEOracle([IsotropicElastic(**p) for p in phases], Inclusion(0.25), grid=15, dim=2)
    C = lin.homogenize(torch.zeros(1, 2, 2, dtype=torch.float64)).tangent[0]
    for h in (1e-8, 1e-9):
        H = h * torch.tensor([[1.0, 0.5], [0.0, -0.3]], dtype=torch.float64)
        r = fin.evaluate(H.reshape(1, 4))
        assert not bool(r.failed[0]), r.reasons[0]
        ref = torch.einsum("ijkl,kl->ij", C, 0.5 * (H + H.T)).flatten()
        torch.testing.assert_close(r.Y[0], ref, rtol=1e-5, atol=0)
