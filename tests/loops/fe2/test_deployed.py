"""FE² with deployed scalebridge surrogates: from a directory and from the MLflow registry."""

from __future__ import annotations

import numpy as np
import pytest

import surrogates.base as base
import surrogates.gp as gp_mod
from loops.fe2.mesh import plate_with_hole
from loops.fe2.providers import NeoHookean, load_material, sobol_gradients
from loops.fe2.solver import DirichletBC, MacroSolver
from loops.fe2.switch import AdaptiveSwitch, refit_updater
from surrogates.dataset import Dataset

LAW = NeoHookean.from_young(10.0, 0.3)


def _fit_gp(n=24, h_max=0.06):
    F = sobol_gradients(n, h_max, seed=1)
    P = LAW.material_response(F).P
    ds = Dataset(X=(F - np.eye(2)).reshape(n, 4), Y=P.reshape(n, 4))
    return gp_mod.GPSurrogate.from_dataset(ds, n_restarts=1, maxiter=60)


def _solve(material):
    mesh = plate_with_hole(n_theta=2, n_radial=2, grading=2.0)
    bcs = [DirichletBC("left", 0), DirichletBC("bottom", 1), DirichletBC("right", 0, 0.04)]
    return MacroSolver(mesh, material, bcs).solve(n_steps=2, rtol=1e-7)


def test_surrogate_from_a_directory_drives_fe2(tmp_path):
    gp = _fit_gp()
    base.save_surrogate(gp, tmp_path / "gp")
    model = load_material(tmp_path / "gp")
    ref = _solve(LAW).final.reactions["right"][0]
    R = _solve(model).final.reactions["right"][0]
    R_mem = _solve(gp).final.reactions["right"][0]
    assert abs(R - ref) < 0.02 * abs(ref)
    assert abs(R - R_mem) < 1e-10 * abs(R_mem)  # the round trip keeps the model
    with pytest.raises(FileNotFoundError):
        load_material(tmp_path / "missing")
    # refit_updater: the model refitted on its data plus oracle answers is sure there
    Fn = sobol_gradients(3, 0.15, seed=9)
    v0 = model.material_response(Fn).variance
    new = refit_updater(model, Fn, LAW.material_response(Fn).P, None)
    assert new.train_dataset.n == 27 and type(new) is type(model)
    v1 = new.material_response(Fn).variance
    assert (v1 <= v0).all() and v1.max() < 0.1 * v0.max()


@pytest.mark.slow
def test_switch_learns_into_a_scalebridge_gp():
    model = _fit_gp()
    ref = _solve(LAW).final.reactions["right"][0]
    sw = AdaptiveSwitch(model, LAW, 1e-12, updater=refit_updater, max_learn=4)
    res = _solve(sw)
    assert sw.n_oracle > 0
    n_learned = sum(r["n_learned"] for r in sw.step_log)
    assert sw.surrogate is not model and sw.surrogate.train_dataset.n == 24 + n_learned
    assert abs(res.final.reactions["right"][0] - ref) < 1e-6 * abs(ref)


@pytest.mark.slow  # the sqlite MLflow registry takes tens of seconds to create on a busy machine
def test_surrogate_from_the_mlflow_registry(tmp_path):
    import mlflow

    import surrogates.mlflow_flavor as flavor

    gp = _fit_gp()
    with mlflow.start_run():
        flavor.log_model(gp, name="gp", registered_model_name="fe2_test_gp")
    model = load_material("models:/fe2_test_gp/1")
    R = _solve(model).final.reactions["right"][0]
    R_dir = _solve(gp).final.reactions["right"][0]
    assert abs(R - R_dir) < 1e-10 * abs(R_dir)
