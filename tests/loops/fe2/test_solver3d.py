"""3D macro solver: patch tests, Newton's rate, h-convergence against an exact solution,
plane strain recovered from a slab, meshes from files."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import skfem
import torch

from loops.fe2.mesh import box, element_for, load_mesh, rectangle
from loops.fe2.providers import NeoHookean
from loops.fe2.solver import DirichletBC, MacroSolver, TractionBC
from oracles.material import MaterialResponse

LAW = NeoHookean.from_young(10.0, 0.3)
FACES = ("left", "right", "bottom", "top", "back", "front")


class LinearElastic:
    """Small-strain isotropic elasticity written as ``P = lam tr(H) I + mu (H + H^T)``, ``H = F - I``.

    With a constant tangent the macro problem is linear elasticity, whose exact
    solutions serve the convergence test.
    """

    def __init__(self, mu: float, lam: float):
        I = torch.eye(3, dtype=torch.float64)
        self.C = lam * torch.einsum("ij,kl->ijkl", I, I) + mu * (
            torch.einsum("ik,jl->ijkl", I, I) + torch.einsum("il,jk->ijkl", I, I)
        )

    def material_response(self, F):
        H = F - torch.eye(3, dtype=torch.float64)
        P = torch.einsum("ijkl,nkl->nij", self.C, H)
        return MaterialResponse(P, self.C.expand(F.shape[0], 3, 3, 3, 3).clone(), None)


def _affine_bcs(F0):
    """Dirichlet conditions ``u = (F0 - I) X`` on every face, every component."""
    H = F0 - np.eye(3)
    return [DirichletBC(f, c, (lambda X, c=c: H[c] @ X)) for f in FACES for c in range(3)]


@pytest.mark.parametrize("element", ["hex1", "tet1", "hex2", "tet2"])
def test_patch_dirichlet_homogeneous_deformation(element):
    """u = (F0 - I) X on the boundary of a distorted mesh: every Gauss point sees F0 and P(F0)."""
    F0 = np.array([[1.06, 0.04, -0.02], [-0.03, 0.95, 0.05], [0.02, -0.01, 1.03]])
    mesh = box((1.0, 0.7, 0.5), (2, 2, 2), element)
    # move the interior node so the patch is not a regular grid
    p = mesh.p.copy()
    inner = np.all((p > 1e-9) & (p < np.array([[1.0], [0.7], [0.5]]) - 1e-9), axis=0)
    p[:, inner] += np.array([[0.07], [-0.05], [0.04]])
    mesh = type(mesh)(p, mesh.t).with_boundaries({f: mesh.boundaries[f] for f in FACES})
    s = MacroSolver(mesh, LAW, _affine_bcs(F0), element=element)
    res = s.solve(n_steps=2)
    assert np.abs(res.final.F - F0).max() < 1e-10
    P_law = LAW.material_response(torch.as_tensor(F0)[None]).P[0].numpy()
    assert np.abs(res.final.P - P_law).max() < 1e-10 * np.abs(P_law).max()
    u_exact = (F0 - np.eye(3)) @ s.basis.doflocs  # 3 x N, the dof's own component below
    comp = np.zeros(s.basis.N, dtype=int)
    b = s.basis
    for dofs in (b.nodal_dofs, b.facet_dofs, b.edge_dofs, b.interior_dofs):
        for c in range(3):
            comp[dofs[c::3].ravel()] = c  # vector dofs cycle through x, y, z
    assert np.abs(res.final.u - u_exact[comp, np.arange(s.basis.N)]).max() < 1e-12


def test_patch_traction_uniaxial():
    """Symmetry planes plus a nominal traction p on x = Lx: a uniform uniaxial state with P11 = p."""
    p = 1.5
    mesh = box((1.0, 0.5, 0.4), (3, 2, 2), "hex1")
    s = MacroSolver(
        mesh,
        LAW,
        [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("back", 2)],
        [TractionBC("right", (p, 0.0, 0.0))],
    )
    res = s.solve(n_steps=3)
    F, P = res.final.F, res.final.P
    assert np.abs(F - F[0]).max() < 1e-10
    expected = np.zeros((3, 3))
    expected[0, 0] = p
    assert np.abs(P - expected).max() < 1e-9 * p
    # transverse contraction is the same in y and z (isotropy), and F stays diagonal
    assert abs(F[0, 1, 1] - F[0, 2, 2]) < 1e-10 and F[0, 1, 1] < 1
    # the support reacts with the applied force: -p * area on the left
    assert res.final.reactions["left"][0] == pytest.approx(-p * 0.5 * 0.4, rel=1e-9)


def _asymptotic_ratios(r):
    scale = max(r)
    keep = [(r[k], r[k + 1]) for k in range(1, len(r) - 1) if r[k + 1] > 1e-11 * scale]
    return [b / a**2 for a, b in keep]


class _WrongTangent:
    def material_response(self, F):
        r = LAW.material_response(F)
        return r._replace(tangent=1.2 * r.tangent)


def _clamped_bar(material, element="hex1", stretch=0.25):
    mesh = box((1.0, 0.4, 0.4), (4, 2, 2), element)
    bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, stretch)]
    bcs += [DirichletBC("right", c) for c in (1, 2)]
    return MacroSolver(mesh, material, bcs, element=element)


@pytest.mark.parametrize("element", ["hex1", "tet2"])
def test_newton_converges_quadratically_with_the_consistent_tangent(element):
    res = _clamped_bar(LAW, element).solve(n_steps=1)
    r = res.final.residuals
    assert r[-1] < 1e-9 * max(r)
    ratios = _asymptotic_ratios(r)
    assert len(ratios) >= 2
    assert max(ratios) < 50.0, (r, ratios)
    assert r[-1] / r[-2] < 1e-3
    # the F of a clamped, stretched bar is not uniform (the test is not a patch test)
    assert np.ptp(res.final.F[:, 1, 1]) > 1e-3


def test_the_rate_check_fails_for_an_inconsistent_tangent():
    res = _clamped_bar(_WrongTangent()).solve(n_steps=1, max_iter=80)
    assert max(_asymptotic_ratios(res.final.residuals)) > 1e3


# exact solution of linear elasticity without body force: u = eps grad(phi) with phi harmonic
# (div u = lap phi = 0 and lap u = grad lap phi = 0 solve Navier's equation for any moduli)
_EPS, _S2 = 1e-2, math.sqrt(2.0)


def _u_exact(X):
    x, y, z = X
    e = _EPS * np.exp(_S2 * x)
    return np.stack(
        [_S2 * e * np.sin(y) * np.cos(z), e * np.cos(y) * np.cos(z), -e * np.sin(y) * np.sin(z)]
    )


def _grad_exact(X):
    """``3 x 3 x ...`` du_i/dX_j = eps * Hessian(phi)."""
    x, y, z = X
    e = _EPS * np.exp(_S2 * x)
    sy, cy, sz, cz = np.sin(y), np.cos(y), np.sin(z), np.cos(z)
    return np.array(
        [
            [2 * e * sy * cz, _S2 * e * cy * cz, -_S2 * e * sy * sz],
            [_S2 * e * cy * cz, -e * sy * cz, -e * cy * sz],
            [-_S2 * e * sy * sz, -e * cy * sz, -e * sy * cz],
        ]
    )


def _errors(element, n):
    """(L2 error of u, H1-seminorm error) of the FE solution on an ``n^3`` box."""
    mesh = box((1.0, 1.0, 1.0), (n, n, n), element)
    bcs = [DirichletBC(f, c, (lambda X, c=c: _u_exact(X)[c])) for f in FACES for c in range(3)]
    s = MacroSolver(mesh, LinearElastic(mu=1.0, lam=1.5), bcs, element=element)
    u = s.solve(n_steps=1).final.u
    # errors on an independent, higher-order quadrature
    hb = skfem.Basis(mesh, element_for(mesh, element), intorder=6)
    uh = hb.interpolate(u)
    X = hb.global_coordinates().value
    e0 = np.sum((uh.value - _u_exact(X)) ** 2, axis=0)
    e1 = np.sum((uh.grad - _grad_exact(X)) ** 2, axis=(0, 1))
    return math.sqrt(float(np.sum(e0 * hb.dx))), math.sqrt(float(np.sum(e1 * hb.dx)))


@pytest.mark.parametrize(
    ("element", "sizes", "p"),
    [
        ("tet1", (2, 4, 8), 1),
        ("hex1", (2, 4, 8), 1),
        ("tet2", (1, 2, 4), 2),
        ("hex2", (1, 2, 4), 2),
    ],
)
def test_h_convergence_rates_against_an_exact_solution(element, sizes, p):
    """Degree-p elements: L2 error O(h^(p+1)), H1-seminorm error O(h^p)."""
    errs = np.array([_errors(element, n) for n in sizes])
    rates = np.log2(errs[:-1] / errs[1:])  # h halves each time
    assert np.all(rates[-1] > np.array([p + 1, p]) - 0.25), (errs, rates)
    assert np.all(rates[-1] < np.array([p + 1, p]) + 0.6), (errs, rates)


@pytest.mark.parametrize(("el3", "el2"), [("hex1", "quad1"), ("hex2", "quad2")])
def test_plane_strain_is_a_slab_with_the_out_of_plane_displacement_held(el3, el2):
    """A one-element-thick slab with u_z = 0 on both faces gives the 2D plane-strain answer x t."""
    t, stretch = 0.3, 0.12
    bcs2 = [DirichletBC("left", 0), DirichletBC("left", 1), DirichletBC("right", 0, stretch)]
    s2 = MacroSolver(rectangle(1.0, 0.5, 4, 2, el2), LAW, bcs2, element=el2)
    r2 = s2.solve(n_steps=2).final
    bcs3 = bcs2 + [DirichletBC("back", 2), DirichletBC("front", 2)]
    s3 = MacroSolver(box((1.0, 0.5, t), (4, 2, 1), el3), LAW, bcs3, element=el3)
    r3 = s3.solve(n_steps=2).final
    # the 2D clamp makes the field non-uniform, so this compares a real 2D solution
    assert np.ptp(r2.F[:, 1, 1]) > 1e-3
    np.testing.assert_allclose(
        r3.reactions["right"][:2], t * r2.reactions["right"], rtol=1e-9, atol=1e-12
    )
    assert abs(r3.reactions["right"][2]) < 1e-12
    np.testing.assert_allclose(r3.F[:, 2, 2], 1.0, atol=1e-13)
    # the out-of-plane stress is the plane-strain P33 of the in-plane state
    F2 = torch.as_tensor(r3.F)
    assert np.abs(r3.P - LAW.material_response(F2).P.numpy()).max() < 1e-12


def test_gauss_points_and_weights_fill_the_box():
    s = MacroSolver(
        box((2.0, 1.0, 0.5), (2, 3, 2), "tet2"), LAW, [DirichletBC("left", 0)], element="tet2"
    )
    assert s.gauss_weights().sum() == pytest.approx(1.0, rel=1e-12)
    X = s.gauss_points()
    assert X.shape == (s.n_gauss, 3) and X.min() > 0 and np.all(X.max(axis=0) < [2.0, 1.0, 0.5])


def test_mesh_from_a_file_through_meshio(tmp_path):
    path = tmp_path / "box.vtk"
    box((1.0, 0.5, 0.5), (3, 2, 2), "tet1").save(str(path))
    mesh = load_mesh(path)
    assert set(FACES) <= set(mesh.boundaries)
    bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, 0.05)]
    R_file = MacroSolver(mesh, LAW, bcs, element="tet1").solve(n_steps=1).final.reactions["right"]
    R_mem = MacroSolver(box((1.0, 0.5, 0.5), (3, 2, 2), "tet1"), LAW, bcs, element="tet1")
    R_mem = R_mem.solve(n_steps=1).final.reactions["right"]
    np.testing.assert_allclose(R_file, R_mem, rtol=1e-10, atol=1e-12)
    bad = tmp_path / "bad.msh"
    bad.write_text("not a mesh\n")
    with pytest.raises(ValueError, match="cannot read mesh file .*bad.msh"):
        load_mesh(bad)


def test_bad_3d_input_is_named():
    mesh = box()
    with pytest.raises(ValueError, match="component must be in 0..2"):
        MacroSolver(mesh, LAW, [DirichletBC("left", 3)], element="hex1")
    with pytest.raises(ValueError, match="3 components"):
        MacroSolver(
            mesh, LAW, [DirichletBC("left", 0)], [TractionBC("right", (1.0, 0.0))], element="hex1"
        )
    with pytest.raises(ValueError, match="thickness"):
        MacroSolver(mesh, LAW, [DirichletBC("left", 0)], element="hex1", thickness=2.0)
    with pytest.raises(ValueError, match="element"):
        box(element="quad1")
    with pytest.raises(ValueError, match="element"):
        rectangle(element="hex1")
    with pytest.raises(ValueError, match="MeshHex"):
        MacroSolver(mesh, LAW, [DirichletBC("left", 0)], element="tet1")
    with pytest.raises(ValueError, match=r"returned shape"):
        MacroSolver(mesh, LAW, [DirichletBC("left", 0, lambda X: 0.0)], element="hex1")


def test_a_3d_config_runs_through_run_fe2(tmp_path):
    """``mesh.kind = 'box'`` with hexahedra: the run's reaction is the direct solve's."""
    from loops.config import ConfigError
    from loops.fe2.config import load_config, parse_config
    from loops.fe2.run import run_fe2

    cfg = load_config(Path(__file__).resolve().parents[3] / "experiments/configs/fe2_box3d.toml")
    assert cfg.mesh.dim == 3 and len(cfg.material.rve.grid) == 3
    data = cfg.model_dump(mode="json")
    data.update(output_dir=str(tmp_path), uncertainty=None, plots=True)
    data["material"] = {"provider": "analytic", "analytic": {"E": 10.0, "nu": 0.3}}
    data["tracking"] = {"enabled": False}
    data["load"]["rtol"] = 1e-9
    run = run_fe2(parse_config(data))
    bcs = [DirichletBC("left", c) for c in range(3)] + [DirichletBC("right", 0, 0.04)]
    direct = MacroSolver(box((2.0, 1.0, 1.0), (2, 1, 1)), LAW, bcs).solve(n_steps=2)
    assert run.summary["steps"][-1]["reaction"] == pytest.approx(
        direct.final.reactions["right"][0], rel=1e-9
    )
    assert np.load(run.out_dir / "results.npz")["F"].shape[-2:] == (3, 3)
    assert (run.out_dir / "surface_stress.png").stat().st_size > 1000
    bad = dict(data, traction=[{"boundary": "right", "traction": [1.0, 0.0]}])
    with pytest.raises(ConfigError, match="3 components"):
        parse_config(bad)
    bad = dict(data, mesh=dict(data["mesh"], element="quad1"))
    with pytest.raises(ConfigError, match="does not fit"):
        parse_config(bad)
