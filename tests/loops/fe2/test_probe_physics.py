"""Macro solver and switch probed as a new user would: exact answers on distorted meshes,
boundary data and Newton settings checked before a single material call, faults named."""

from __future__ import annotations

import math

import numpy as np
import pytest
import skfem
import torch

from loops.fe2.mesh import _name_bbox_boundaries, box, plate_with_hole, rectangle
from loops.fe2.providers import NeoHookean
from loops.fe2.solver import DirichletBC, MacroSolver, TractionBC
from loops.fe2.switch import AdaptiveSwitch
from oracles.exceptions import NotConverged
from oracles.material import MaterialResponse

LAW = NeoHookean.from_young(10.0, 0.3)
H0 = np.array([[0.05, 0.02, 0.01], [-0.01, -0.03, 0.02], [0.015, 0.0, 0.04]])


class Counting:
    """The Neo-Hookean law, counting its calls."""

    def __init__(self):
        self.calls = 0

    def material_response(self, F):
        self.calls += 1
        return LAW.material_response(F)


def _distorted(mesh, seed=0):
    """``mesh`` with its interior vertices moved by up to 15 % of a cell, faces renamed."""
    p = mesh.p.copy()
    lo, hi = p.min(1, keepdims=True), p.max(1, keepdims=True)
    inner = np.all((p > lo + 1e-9) & (p < hi - 1e-9), axis=0)
    p[:, inner] += 0.05 * np.random.default_rng(seed).uniform(-1, 1, (p.shape[0], inner.sum()))
    return _name_bbox_boundaries(type(mesh)(p, mesh.t))


@pytest.mark.parametrize("element", ["quad1", "quad2", "tri1", "tri2", "hex1", "hex2", "tet1", "tet2"])
def test_affine_boundary_data_give_the_affine_field_on_a_distorted_mesh(element):
    """u = H X on the whole boundary of a mesh with distorted interior: the free interior dofs
    take the affine field to round-off and every Gauss point carries P(I + H) (finite strain)."""
    k = 3 if element[:3] in ("hex", "tet") else 2
    axes = [np.linspace(0, 1, 4), np.linspace(0, 2, 4), np.linspace(0, 1.5, 4)][:k]
    mesh = (skfem.MeshQuad if k == 2 else skfem.MeshHex).init_tensor(*axes)
    if element.startswith("tri"):
        mesh = mesh.to_meshtri()
    if element.startswith("tet"):
        mesh = mesh.to_meshtet()
    mesh = _distorted(mesh)
    H = H0[:k, :k]
    faces = ["left", "right", "bottom", "top", "back", "front"][: 2 * k]
    bcs = [DirichletBC(f, c, lambda X, c=c: (H @ X)[c]) for f in faces for c in range(k)]
    s = MacroSolver(mesh, LAW, bcs, element=element)
    assert s.free.size > 0
    r = s.solve(n_steps=2)
    X = s.basis.doflocs
    for c, dofs in enumerate(s.basis.split_indices()):
        assert np.abs(r.final.u[dofs] - (H @ X[:, dofs])[c]).max() < 1e-14
    P0 = LAW.material_response(torch.as_tensor(np.eye(k) + H)[None]).P[0].numpy()
    assert np.abs(r.final.P - P0).max() < 1e-12 * np.abs(P0).max()


def _bar(**kw):
    base = [DirichletBC("left", 0), DirichletBC("left", 1)]
    return dict(dirichlet=base + kw.pop("extra", [DirichletBC("right", 0, 0.05)]), **kw)


@pytest.mark.parametrize(
    "kw, match",
    [
        (_bar(extra=[DirichletBC("right", 0, float("nan"))]), r"Dirichlet value on 'right'.*nan"),
        (_bar(extra=[DirichletBC("right", 0, math.inf)]), r"Dirichlet value on 'right'.*inf"),
        (_bar(extra=[DirichletBC("right", 0, "0.1")]), r"Dirichlet value on 'right'.*'0.1'"),
        (_bar(extra=[DirichletBC("right", 0, 0.1 + 1j)]), r"Dirichlet value on 'right'.*0.1\+1j"),
        (_bar(extra=[DirichletBC("right", 0, lambda X: np.full(X.shape[1], np.nan))]),
         r"'right' \(component 0\) returned nan at \[1.0, 0.0\]"),
        (_bar(tractions=[TractionBC("right", (float("nan"), 0.0))]), r"traction on 'right'.*nan"),
        (_bar(tractions=[TractionBC("right", ("a", 0.0))]), r"traction on 'right'.*'a'"),
        (_bar(extra=[DirichletBC("right", 1.0, 0.05)]), r"component must be in 0..1 \(an integer\).*1.0"),
        (_bar(extra=[DirichletBC("right", True, 0.05)]), r"component .* got True"),
        (_bar(thickness=-1.0), r"thickness must be a positive finite number, got -1.0"),
        (_bar(thickness=0.0), r"thickness .* got 0.0"),
        (_bar(thickness=float("nan")), r"thickness .* got nan"),
    ],
)
def test_bad_boundary_data_is_named_before_any_material_call(kw, match):
    """Before: a component 1.0 matched no dofs and the prescribed stretch was dropped (reaction 0);
    True was taken as y; a negative thickness flipped the reactions' sign; NaN or inf data ran 8
    cut-backs and ended in 'an element inverted'."""
    law = Counting()
    with pytest.raises(ValueError, match=match):
        MacroSolver(rectangle(1, 1, 2, 2), law, **kw).solve(n_steps=2)
    assert law.calls == 0


def test_numpy_integer_components_and_thickness_scale_the_reaction():
    """A numpy integer component is a component; the reaction is proportional to the thickness."""
    bcs = [DirichletBC("left", np.int64(0)), DirichletBC("left", 1), DirichletBC("right", np.int32(0), 0.05)]
    R1 = MacroSolver(rectangle(1, 1, 2, 2), LAW, bcs).solve(n_steps=1).final.reactions["right"][0]
    R2 = MacroSolver(rectangle(1, 1, 2, 2), LAW, bcs, thickness=2.5).solve(n_steps=1).final.reactions["right"][0]
    assert R1 > 0 and R2 == pytest.approx(2.5 * R1, rel=1e-12)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(load_factors=[0.5, float("nan")]), r"load_factors must be finite .*nan"),
        (dict(load_factors=[0.5, math.inf]), r"load_factors must be finite"),
        (dict(n_steps=2.5), r"n_steps must be an integer >= 1, got 2.5"),
        (dict(n_steps="3"), r"n_steps must be an integer >= 1, got '3'"),
        (dict(rtol=float("nan")), r"rtol must be a finite number >= 0, got nan"),
        (dict(rtol=-1e-6), r"rtol .* got -1e-06"),
        (dict(atol=float("inf")), r"atol .* got inf"),
        (dict(max_iter=0), r"max_iter must be an integer >= 1, got 0"),
        (dict(max_cutbacks=-1), r"max_cutbacks must be an integer >= 0, got -1"),
    ],
)
def test_newton_settings_are_named_before_any_material_call(kw, match):
    """Before: a NaN load factor repeated the last step under the same load factor; a NaN rtol
    ran 8 cut-backs of converged Newton solves and reported 'did not converge'."""
    law = Counting()
    s = MacroSolver(rectangle(1, 1, 2, 2), law, **_bar())
    with pytest.raises(ValueError, match=match):
        s.solve(**kw)
    with pytest.raises(ValueError, match=match):
        s.solve_batch(lambda F: None, 2, **kw)
    assert law.calls == 0


def test_a_non_finite_material_answer_names_the_gauss_point():
    """A surrogate that answers NaN at one Gauss point: the failure names the point, where it is
    and its F (before: 'the material returned non-finite stress or tangent', nothing more)."""

    class NaNAt:
        def material_response(self, F):
            r = LAW.material_response(F)
            P = r.P.clone()
            P[5] = float("nan")
            return MaterialResponse(P, r.tangent, None)

    s = MacroSolver(rectangle(1, 1, 2, 2), NaNAt(), **_bar())
    X5 = s.gauss_points()[5]
    with pytest.raises(NotConverged, match=r"at 1 of 16 Gauss points \(first: point 5 at X = ") as e:
        s.solve(n_steps=1, max_cutbacks=1)
    assert str(np.round(X5, 6).tolist()) in str(e.value)


class VarianceSurrogate:
    """The law scaled by 1.01, variance |H|^2 per point, NaN stress where H_00 > 0.03."""

    def __init__(self, per_component=False):
        self.per_component = per_component

    def material_response(self, F):
        r = LAW.material_response(F)
        H = F - torch.eye(F.shape[-1], dtype=F.dtype)
        v = (H**2).sum((1, 2))
        P = 1.01 * r.P
        P[H[:, 0, 0] > 0.03] = float("nan")
        return MaterialResponse(P, 1.01 * r.tangent, v[:, None].expand(-1, 4) if self.per_component else v)


class RecordingOracle:
    def __init__(self):
        self.asked = []

    def material_response(self, F):
        self.asked.append(F.clone())
        return LAW.material_response(F)


def test_the_switch_asks_the_oracle_exactly_where_the_surrogate_is_unsure_or_fails():
    """The oracle sees the points with variance >= tolerance or a non-finite answer, and only
    those; elsewhere the surrogate's answer is kept, and oracle points carry variance 0."""
    rng = np.random.default_rng(0)
    F = torch.eye(2, dtype=torch.float64) + torch.as_tensor(rng.uniform(-0.05, 0.05, (60, 2, 2)))
    H = F - torch.eye(2, dtype=torch.float64)
    expect = ((H**2).sum((1, 2)) >= 2e-3) | (H[:, 0, 0] > 0.03)
    assert 0 < int(expect.sum()) < 60
    oracle = RecordingOracle()
    sw = AdaptiveSwitch(VarianceSurrogate(), oracle, tolerance=2e-3, learn=False)
    r = sw.material_response(F)
    assert len(oracle.asked) == 1 and torch.equal(oracle.asked[0], F[expect])
    exact = LAW.material_response(F).P
    assert torch.equal(r.P[expect], exact[expect]) and torch.equal(r.P[~expect], 1.01 * exact[~expect])
    assert bool((r.variance[expect] == 0).all()) and np.array_equal(sw.last_oracle_mask, expect.numpy())


def test_a_variance_per_stress_component_is_named():
    """Before: torch's "shape '[60]' is invalid for input of size 240"."""
    F = torch.eye(2, dtype=torch.float64).expand(60, 2, 2).clone()
    sw = AdaptiveSwitch(VarianceSurrogate(per_component=True), RecordingOracle(), tolerance=1e-3, learn=False)
    with pytest.raises(ValueError, match=r"variance of shape \(60, 4\) for 60 points.*\(60,\)"):
        sw.material_response(F)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: rectangle(width=float("nan")), r"width must be a positive finite number, got nan"),
        (lambda: rectangle(height=math.inf), r"height must be a positive finite number, got inf"),
        (lambda: rectangle(nx=2.5), r"nx must be an integer >= 1, got 2.5"),
        (lambda: rectangle(ny=True), r"ny must be an integer >= 1, got True"),
        (lambda: plate_with_hole(length=float("nan")), r"length must be a positive finite number, got nan"),
        (lambda: plate_with_hole(grading=math.inf), r"grading must be a positive finite number, got inf"),
        (lambda: plate_with_hole(n_theta=2.5), r"n_theta must be an integer >= 1, got 2.5"),
        (lambda: box((float("nan"), 1.0, 1.0)), r"box lengths must be 3 positive finite numbers"),
        (lambda: box(n=(2.5, 1, 1)), r"box divisions must be 3 integers >= 1, got \(2.5, 1, 1\)"),
    ],
)
def test_bad_mesh_sizes_are_named(make, match):
    """Before: a NaN or infinite size made a mesh of NaN coordinates, reported later as 'the
    Dirichlet conditions leave a rigid motion free'; grading = inf was skfem's bare 'Zero Jacobian
    determinant'; box(n=(2.5, 1, 1)) silently made 2 cells."""
    with pytest.raises(ValueError, match=match):
        make()


def test_a_failed_oracle_batch_cancels_its_chunks_not_yet_started():
    """One RVE chunk fails: the chunks still queued are cancelled instead of occupying the workers
    ahead of the solver's cut-back retry (before: all 8 ran after the failure was raised)."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    from loops.fe2.providers import OracleProvider

    class Flaky:
        def __init__(self):
            self.n = 0

        def material_response(self, F):
            self.n += 1
            time.sleep(0.02)
            if F[0, 0, 0] > 1.05:
                raise NotConverged("RVE did not converge")
            return LAW.material_response(F)

    model = Flaky()
    F = torch.eye(2, dtype=torch.float64).repeat(8, 1, 1)
    F[0, 0, 0] = 1.1
    with ThreadPoolExecutor(max_workers=1) as ex:
        with pytest.raises(NotConverged, match="RVE did not converge"):
            OracleProvider(model, executor=ex, chunk_size=1).material_response(F)
    assert model.n <= 2


def test_a_material_answer_of_the_wrong_shape_is_not_retried_by_cut_backs():
    """A material whose P has a component too few breaks the contract at every load: the solve
    stops at its first call (before: the error counted as an oracle failure and the step was
    cut back 8 times, 9 calls, before the same message was reported)."""

    class Flat(Counting):
        def material_response(self, F):
            r = super().material_response(F)
            return MaterialResponse(r.P[:, :, :1], r.tangent, None)

    m = Flat()
    s = MacroSolver(rectangle(1, 1, 2, 2), m, **_bar())
    with pytest.raises(ValueError, match=r"the material returned P \(16, 2, 1\).*expected \(16, 2, 2\)"):
        s.solve(n_steps=1)
    assert m.calls == 1
